-- Replies, mentions and forwarding (`store::replies`). Columns of the
-- message, NULL for a plain one. `mentions` is JSON text: an array of user
-- ids or the string "all"; `forwarded_from` a JSON object. A reply's quote
-- is read from its target when the reply is read, so a recall shows at once.
ALTER TABLE messages ADD COLUMN reply_to bigint;
ALTER TABLE messages ADD COLUMN mentions text;
ALTER TABLE messages ADD COLUMN forwarded_from text;
-- Who may mention "all" in a group: 'admins' (owner and admins) or 'members'.
ALTER TABLE groups ADD COLUMN mention_all text NOT NULL DEFAULT 'admins'
    CHECK (mention_all IN ('admins', 'members'));

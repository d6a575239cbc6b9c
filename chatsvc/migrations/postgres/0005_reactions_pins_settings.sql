-- Reactions, pins and per-user conversation settings (issue 25;
-- `store::reactions`, `store::pins`, `store::settings`).

-- One row per user per emoji per message; the emoji in its fully-qualified
-- form, so two spellings of one emoji are one reaction.
CREATE TABLE reactions (
    message_id  bigint NOT NULL REFERENCES messages (id),
    emoji       text   NOT NULL,
    user_id     bigint NOT NULL REFERENCES users (id),
    created_at  bigint NOT NULL,
    PRIMARY KEY (message_id, emoji, user_id)
);

CREATE TABLE pins (
    conversation_id bigint NOT NULL REFERENCES conversations (id),
    message_id      bigint NOT NULL REFERENCES messages (id),
    pinned_by       bigint NOT NULL REFERENCES users (id),
    pinned_at       bigint NOT NULL,
    PRIMARY KEY (conversation_id, message_id)
);

-- Who may pin in a group: 'admins' (owner and admins) or 'members'.
ALTER TABLE groups ADD COLUMN pin_policy text NOT NULL DEFAULT 'admins';

-- A user's own settings of a conversation. muted_until: ms (the largest
-- bigint: forever); pinned_at: when the user pinned it to the top of their
-- list; archived_seq: archived while the conversation's last_seq is at most
-- this (a new message ends it, with no write on the send path).
CREATE TABLE conversation_settings (
    user_id         bigint NOT NULL,
    conversation_id bigint NOT NULL,
    muted_until     bigint,
    pinned_at       bigint,
    archived_seq    bigint,
    PRIMARY KEY (user_id, conversation_id)
);

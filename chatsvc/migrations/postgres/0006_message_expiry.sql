-- Disappearing messages and retention (issue 25, `store::expiry`).

-- A conversation's message TTL, seconds (NULL: off).
ALTER TABLE conversations ADD COLUMN message_ttl_seconds bigint;
-- When a message disappears (sent while its conversation had a TTL), and
-- when a sweep removed its content (TTL or retention).
ALTER TABLE messages ADD COLUMN expires_at bigint;
ALTER TABLE messages ADD COLUMN expired_at bigint;
-- The sweep's work list: only messages still to remove, soonest first.
CREATE INDEX messages_expiring ON messages (expires_at)
    WHERE expires_at IS NOT NULL AND expired_at IS NULL;
-- A removed message's files are unlinked from it by its id.
CREATE INDEX message_files_by_message ON message_files (message_id);
-- Retention walks messages by id; the newest id it has looked at.
CREATE TABLE retention_mark (
    id       integer PRIMARY KEY CHECK (id = 1),
    through  bigint  NOT NULL
);
INSERT INTO retention_mark (id, through) VALUES (1, 0);

-- mqchat on PostgreSQL, schema version 1: the SQLite schema as of its
-- version 10 (chatsvc/src/store/migrations.rs), in PostgreSQL's terms.
--
-- Counters are columns here. SQLite has one writer, so it reads the next
-- conversation seq and the next inbox cursor from the newest rows (the
-- `(conversation_id, seq)` index, the inbox's primary key). Here several
-- chatd processes write at once, and two transactions reading the same
-- MAX would hand out the same number. So `conversations.last_seq` and
-- `users.inbox_cursor` hold the last number handed out, and a send
-- allocates with `UPDATE ... SET last_seq = last_seq + n ... RETURNING`
-- inside its transaction, which keeps the numbers gap-free (a rolled-back
-- transaction rolls its increment back too). Each chatd writes in groups
-- of jobs per transaction (chatsvc/src/store/postgres/writer.rs), and
-- transactions of several chatd run at once, so they lock rows in one
-- fixed order, which no two of them can turn into a cycle (no deadlock):
--   1. the advisory lock 0x6d71_6368_6174_3a77 ("mqchat:w"): shared by a
--      transaction of sends only, exclusive for any other write (which so
--      runs alone and locks nothing else up front);
--   2. a transaction of sends then locks its `conversations` rows, by
--      ascending id (FOR NO KEY UPDATE: `last_seq`);
--   3. then the `users` rows whose `inbox_cursor` it bumps (the members of
--      those conversations, and the senders), by ascending id;
-- and only then writes, updating only rows it locked. Memberships change
-- only under the exclusive lock, so they hold still meanwhile; a sender's
-- row is locked by the transaction that inserts their messages, so two
-- transactions never insert the same (sender_id, client_msg_id) at once.
-- Sends to unrelated conversations (no conversation and no user in
-- common) so never wait for each other.
--
-- Conventions: ids are `bigint` identities (SQLite's rowids); times are
-- `bigint` milliseconds as in SQLite (the domain owns the clock); secrets'
-- hashes are `bytea`; message bodies are `text`, not `jsonb`, because
-- they are returned byte for byte as the client sent them (jsonb would
-- reorder keys and drop duplicates). Unique constraints, CHECKs and
-- foreign keys are SQLite's, with the indexes its queries rely on.

CREATE TABLE users (
    id               bigint  GENERATED ALWAYS AS IDENTITY PRIMARY KEY,
    -- The domain stores usernames lower-cased ASCII already; the unique
    -- index below is on lower() anyway, as SQLite's was NOCASE, so no
    -- writer can add a second spelling of a name. Under the "C" collation,
    -- because NOCASE folds ASCII letters only: lower() under the
    -- database's locale would fold other letters too (and a Turkish
    -- locale folds `I` to a dotless `ı`). Lookups compare this expression.
    username         text    NOT NULL,
    password_hash    text    NOT NULL,
    display_name     text,
    created_at       bigint  NOT NULL,
    -- when the user's last connection closed
    last_seen_at     bigint,
    is_bot           boolean NOT NULL DEFAULT false,
    -- who may add the user to groups directly (NULL: the server's default)
    group_add_policy text,
    -- the last inbox cursor handed out; the next event gets inbox_cursor + 1
    inbox_cursor     bigint  NOT NULL DEFAULT 0 CHECK (inbox_cursor >= 0)
);
CREATE UNIQUE INDEX users_username_lower ON users (lower(username COLLATE "C"));

-- A login session: one refresh token at a time (rotated on use).
CREATE TABLE sessions (
    id           bigint GENERATED ALWAYS AS IDENTITY PRIMARY KEY,
    user_id      bigint NOT NULL REFERENCES users (id),
    refresh_hash bytea  NOT NULL UNIQUE,
    created_at   bigint NOT NULL,
    expires_at   bigint NOT NULL,
    revoked_at   bigint
);
CREATE INDEX sessions_by_user ON sessions (user_id);

-- Refresh tokens already rotated away; presenting one again means the
-- token leaked, and the whole session is revoked.
CREATE TABLE used_refresh_tokens (
    refresh_hash bytea  PRIMARY KEY,
    session_id   bigint NOT NULL REFERENCES sessions (id)
);

CREATE TABLE conversations (
    id         bigint GENERATED ALWAYS AS IDENTITY PRIMARY KEY,
    kind       text   NOT NULL CHECK (kind IN ('direct', 'group')),
    -- direct: the two users, lower id first (equal for notes-to-self)
    user_lo    bigint REFERENCES users (id),
    user_hi    bigint REFERENCES users (id),
    -- group: the group (set right after the group row is inserted)
    group_id   bigint,
    -- the last seq handed out; the next message gets last_seq + 1
    last_seq   bigint NOT NULL DEFAULT 0 CHECK (last_seq >= 0),
    created_at bigint NOT NULL,
    UNIQUE (kind, user_lo, user_hi)
);

CREATE TABLE conversation_members (
    user_id         bigint NOT NULL REFERENCES users (id),
    conversation_id bigint NOT NULL REFERENCES conversations (id),
    joined_at       bigint NOT NULL,
    -- owner / admin / member (direct conversations: member)
    role            text   NOT NULL DEFAULT 'member',
    -- the conversation's last seq when the user joined; history and
    -- search show only what came after
    joined_seq      bigint NOT NULL DEFAULT 0,
    -- the read marker; it never moves backwards
    read_seq        bigint NOT NULL DEFAULT 0,
    PRIMARY KEY (user_id, conversation_id)
);
CREATE INDEX conversation_members_by_conversation
    ON conversation_members (conversation_id, user_id);

CREATE TABLE messages (
    id              bigint GENERATED ALWAYS AS IDENTITY PRIMARY KEY,
    conversation_id bigint NOT NULL REFERENCES conversations (id),
    seq             bigint NOT NULL,
    sender_id       bigint NOT NULL REFERENCES users (id),
    client_msg_id   text   NOT NULL,
    -- a JSON object, as sent (`{}` once recalled)
    body            text   NOT NULL,
    sent_at         bigint NOT NULL,
    kind            text   NOT NULL DEFAULT 'user' CHECK (kind IN ('user', 'system')),
    edited_at       bigint,
    recalled_at     bigint,
    -- Full-text index of `body.text` when it is a string. Generated, so an
    -- edit re-indexes and a recall (body `{}`) un-indexes in the same
    -- statement, with no staging: PostgreSQL's GIN index takes new entries
    -- in its pending list (fastupdate), which is what SQLite's staging
    -- table did for FTS5 by hand.
    --
    -- The `simple` configuration, because messages come in any language:
    -- like FTS5's unicode61 tokenizer it lower-cases and neither stems nor
    -- drops stop words. It differs in that PostgreSQL's parser keeps some
    -- compounds as tokens of their own beside their parts (`foo-bar` gives
    -- `foo-bar`, `foo` and `bar`; e-mail addresses, URLs, host names and
    -- numbers like `1.5` stay whole), does not strip diacritics (`café`
    -- does not match `cafe`, which unicode61 folds by default), and splits
    -- words at other characters in places (an apostrophe splits `don't`).
    -- Neither segments CJK text into words. Queries are tsquery
    -- (`to_tsquery('simple', ...)`, prefix `word:*`), not FTS5 expressions.
    text_tsv        tsvector GENERATED ALWAYS AS (
        CASE WHEN jsonb_typeof(body::jsonb -> 'text') = 'string'
             THEN to_tsvector('simple'::regconfig, body::jsonb ->> 'text')
        END
    ) STORED,
    UNIQUE (conversation_id, seq),
    UNIQUE (sender_id, client_msg_id)
);
CREATE INDEX messages_text ON messages USING gin (text_tsv);

-- Each user's event log: sync is one range scan on the primary key. No
-- foreign key to users, as in SQLite: the user's row is locked by the
-- cursor allocation in the same transaction, and this is the table every
-- delivery writes.
CREATE TABLE inbox (
    user_id    bigint NOT NULL,
    cursor     bigint NOT NULL,
    kind       text   NOT NULL,
    message_id bigint REFERENCES messages (id),
    -- events that are not about one message carry their JSON here
    payload    text,
    PRIMARY KEY (user_id, cursor)
);

-- What each device has acknowledged having (POST /v1/sync/ack).
CREATE TABLE device_cursors (
    user_id    bigint NOT NULL REFERENCES users (id),
    device_id  text   NOT NULL,
    cursor     bigint NOT NULL,
    updated_at bigint NOT NULL,
    PRIMARY KEY (user_id, device_id)
);

CREATE TABLE groups (
    id              bigint GENERATED ALWAYS AS IDENTITY PRIMARY KEY,
    conversation_id bigint NOT NULL UNIQUE REFERENCES conversations (id),
    name            text   NOT NULL,
    owner_id        bigint NOT NULL REFERENCES users (id),
    created_at      bigint NOT NULL,
    dissolved_at    bigint
);
-- SQLite could not add this one (groups came in a later migration); a
-- group's conversation row is inserted first, then the group, then the
-- conversation is pointed at it, so it holds without being deferred.
ALTER TABLE conversations
    ADD CONSTRAINT conversations_group_id_fkey FOREIGN KEY (group_id) REFERENCES groups (id);

-- Symmetric: one row per direction.
CREATE TABLE friends (
    user_id   bigint NOT NULL REFERENCES users (id),
    friend_id bigint NOT NULL REFERENCES users (id),
    since     bigint NOT NULL,
    PRIMARY KEY (user_id, friend_id)
);

CREATE TABLE friend_requests (
    id         bigint GENERATED ALWAYS AS IDENTITY PRIMARY KEY,
    from_id    bigint NOT NULL REFERENCES users (id),
    to_id      bigint NOT NULL REFERENCES users (id),
    note       text,
    status     text   NOT NULL CHECK (status IN ('pending', 'accepted', 'rejected', 'cancelled')),
    created_at bigint NOT NULL,
    expires_at bigint NOT NULL,
    decided_at bigint
);
CREATE UNIQUE INDEX friend_requests_one_pending
    ON friend_requests (from_id, to_id) WHERE status = 'pending';
CREATE INDEX friend_requests_to ON friend_requests (to_id, status);

CREATE TABLE blocks (
    user_id    bigint NOT NULL REFERENCES users (id),
    blocked_id bigint NOT NULL REFERENCES users (id),
    created_at bigint NOT NULL,
    PRIMARY KEY (user_id, blocked_id)
);

-- Delete-for-me.
CREATE TABLE hidden_messages (
    user_id    bigint NOT NULL REFERENCES users (id),
    message_id bigint NOT NULL REFERENCES messages (id),
    PRIMARY KEY (user_id, message_id)
);

CREATE TABLE webhooks (
    id          bigint GENERATED ALWAYS AS IDENTITY PRIMARY KEY,
    url         text   NOT NULL,
    secret      text   NOT NULL,
    -- comma-separated event types, or '*'
    events      text   NOT NULL,
    created_at  bigint NOT NULL,
    disabled_at bigint
);

-- Written in the same transaction as what they report, so a committed
-- message always has its webhook deliveries queued.
CREATE TABLE webhook_deliveries (
    id              bigint  GENERATED ALWAYS AS IDENTITY PRIMARY KEY,
    webhook_id      bigint  NOT NULL REFERENCES webhooks (id),
    event           text    NOT NULL,
    payload         text    NOT NULL,
    created_at      bigint  NOT NULL,
    attempts        integer NOT NULL DEFAULT 0,
    next_attempt_at bigint  NOT NULL,
    delivered_at    bigint,
    last_error      text,
    -- bumped by a replay, so an attempt in flight during the replay can't
    -- mark the replayed delivery as done
    generation      bigint  NOT NULL DEFAULT 0
);
CREATE INDEX webhook_deliveries_due
    ON webhook_deliveries (next_attempt_at) WHERE delivered_at IS NULL;

-- Attachments. Blobs live on storage every node reads, named by SHA-256;
-- rows here say who uploaded what and which messages reference it.
CREATE TABLE files (
    id           text    PRIMARY KEY,
    sha256       text    NOT NULL,
    size         bigint  NOT NULL,
    content_type text    NOT NULL,
    name         text,
    uploader_id  bigint  NOT NULL REFERENCES users (id),
    created_at   bigint  NOT NULL,
    -- images: the thumbnail's file id
    thumbnail_id text,
    width        integer,
    height       integer
);
CREATE INDEX files_by_sha ON files (sha256);
-- Upload quotas sum a user's uploads, in total and over the last day: one
-- range of this index, which covers the query.
CREATE INDEX files_by_uploader ON files (uploader_id, created_at) INCLUDE (size);

CREATE TABLE message_files (
    message_id bigint NOT NULL REFERENCES messages (id),
    file_id    text   NOT NULL REFERENCES files (id),
    PRIMARY KEY (file_id, message_id)
);

-- Service accounts' API keys (hashes only), scopes and rate limits.
CREATE TABLE service_keys (
    id           bigint  GENERATED ALWAYS AS IDENTITY PRIMARY KEY,
    user_id      bigint  NOT NULL REFERENCES users (id),
    key_hash     bytea   NOT NULL UNIQUE,
    -- comma-separated
    scopes       text    NOT NULL,
    -- bigint: any u32 the API takes (integer stops at 2^31 - 1)
    rate_per_sec bigint  NOT NULL,
    created_at   bigint  NOT NULL,
    revoked_at   bigint
);

-- Consent to be added to groups: invitations for those who did not allow
-- being added directly.
CREATE TABLE group_invitations (
    id         bigint GENERATED ALWAYS AS IDENTITY PRIMARY KEY,
    group_id   bigint NOT NULL REFERENCES groups (id),
    inviter_id bigint NOT NULL REFERENCES users (id),
    invitee_id bigint NOT NULL REFERENCES users (id),
    status     text   NOT NULL,
    created_at bigint NOT NULL,
    decided_at bigint
);
CREATE UNIQUE INDEX group_invitations_pending
    ON group_invitations (group_id, invitee_id) WHERE status = 'pending';
CREATE INDEX group_invitations_invitee ON group_invitations (invitee_id, status);

-- A member who left a group, was removed, or whose group was dissolved.
-- They keep their inbox rows; edits made after they left are not theirs
-- to see.
CREATE TABLE departures (
    user_id         bigint NOT NULL,
    conversation_id bigint NOT NULL,
    -- they saw the messages with joined_seq < seq <= left_seq
    joined_seq      bigint NOT NULL,
    left_seq        bigint NOT NULL,
    -- the newest message_versions id when they left (0: none)
    versions_seen   bigint NOT NULL,
    PRIMARY KEY (user_id, conversation_id, left_seq)
);
CREATE INDEX departures_by_conversation ON departures (conversation_id, left_seq);

-- A message's body before an edit, kept only when someone who left its
-- conversation holds it. An identity never hands an id out twice (a
-- recall deletes the message's versions, and departures compare against
-- these ids), like SQLite's AUTOINCREMENT. Unlike SQLite's, they are
-- handed out at insert, not in commit order: an edit and a departure in
-- one conversation must not interleave, so that every version made after
-- a departure gets an id above the one it recorded. The write lock (see
-- the top) orders them today; without it, both would have to hold that
-- conversation's row lock.
CREATE TABLE message_versions (
    id         bigint GENERATED ALWAYS AS IDENTITY PRIMARY KEY,
    message_id bigint NOT NULL REFERENCES messages (id),
    body       text   NOT NULL,
    edited_at  bigint
);
CREATE INDEX message_versions_by_message ON message_versions (message_id, id);

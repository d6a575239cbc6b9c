//! Versioned schema migrations, tracked in `PRAGMA user_version`.

use rusqlite::Connection;

use crate::store::StoreError;

/// Each entry moves the schema from version `i` to `i + 1`. Never edit a
/// released entry; append a new one.
const MIGRATIONS: &[&str] = &[
    // 1: accounts, login sessions, direct conversations, messages, inboxes.
    r#"
    CREATE TABLE users (
        id            INTEGER PRIMARY KEY,
        username      TEXT    NOT NULL UNIQUE COLLATE NOCASE,
        password_hash TEXT    NOT NULL,
        display_name  TEXT,
        created_at    INTEGER NOT NULL,
        -- last inbox cursor handed out; the next event gets inbox_cursor + 1
        inbox_cursor  INTEGER NOT NULL DEFAULT 0
    );

    -- A login session: one refresh token at a time (rotated on use).
    CREATE TABLE sessions (
        id           INTEGER PRIMARY KEY,
        user_id      INTEGER NOT NULL REFERENCES users(id),
        refresh_hash BLOB    NOT NULL UNIQUE,
        created_at   INTEGER NOT NULL,
        expires_at   INTEGER NOT NULL,
        revoked_at   INTEGER
    );
    CREATE INDEX sessions_by_user ON sessions(user_id);

    -- Refresh tokens already rotated away; presenting one again means the
    -- token leaked, and the whole session is revoked.
    CREATE TABLE used_refresh_tokens (
        refresh_hash BLOB    PRIMARY KEY,
        session_id   INTEGER NOT NULL REFERENCES sessions(id)
    ) WITHOUT ROWID;

    CREATE TABLE conversations (
        id              INTEGER PRIMARY KEY,
        kind            TEXT    NOT NULL CHECK (kind IN ('direct', 'group')),
        -- direct: the two users, lower id first (equal for notes-to-self)
        user_lo         INTEGER REFERENCES users(id),
        user_hi         INTEGER REFERENCES users(id),
        -- group: the group (groups are created by migration 2)
        group_id        INTEGER,
        last_seq        INTEGER NOT NULL DEFAULT 0,
        last_message_id INTEGER,
        created_at      INTEGER NOT NULL,
        UNIQUE (kind, user_lo, user_hi)
    );

    CREATE TABLE conversation_members (
        user_id         INTEGER NOT NULL REFERENCES users(id),
        conversation_id INTEGER NOT NULL REFERENCES conversations(id),
        joined_at       INTEGER NOT NULL,
        PRIMARY KEY (user_id, conversation_id)
    ) WITHOUT ROWID;

    CREATE TABLE messages (
        id              INTEGER PRIMARY KEY,
        conversation_id INTEGER NOT NULL REFERENCES conversations(id),
        seq             INTEGER NOT NULL,
        sender_id       INTEGER NOT NULL REFERENCES users(id),
        client_msg_id   TEXT    NOT NULL,
        body            TEXT    NOT NULL,
        sent_at         INTEGER NOT NULL,
        UNIQUE (conversation_id, seq),
        UNIQUE (sender_id, client_msg_id)
    );

    -- Each user's event log: sync is one range scan on the primary key.
    CREATE TABLE inbox (
        user_id    INTEGER NOT NULL,
        cursor     INTEGER NOT NULL,
        kind       TEXT    NOT NULL,
        message_id INTEGER REFERENCES messages(id),
        PRIMARY KEY (user_id, cursor)
    ) WITHOUT ROWID;

    -- What each device has acknowledged having (POST /v1/sync/ack).
    CREATE TABLE device_cursors (
        user_id    INTEGER NOT NULL REFERENCES users(id),
        device_id  TEXT    NOT NULL,
        cursor     INTEGER NOT NULL,
        updated_at INTEGER NOT NULL,
        PRIMARY KEY (user_id, device_id)
    ) WITHOUT ROWID;
    "#,
    // 2: the social layer: friends, blocks, groups, read markers, edits and
    // recalls, delete-for-me, full-text search, last-seen times.
    r#"
    ALTER TABLE messages ADD COLUMN kind TEXT NOT NULL DEFAULT 'user' CHECK (kind IN ('user', 'system'));
    ALTER TABLE messages ADD COLUMN edited_at INTEGER;
    ALTER TABLE messages ADD COLUMN recalled_at INTEGER;

    -- role: owner / admin / member (direct conversations: member).
    -- joined_seq: the conversation's last seq when the user joined; history
    -- and search show only what came after.
    -- read_seq: the read marker; it never moves backwards.
    ALTER TABLE conversation_members ADD COLUMN role TEXT NOT NULL DEFAULT 'member';
    ALTER TABLE conversation_members ADD COLUMN joined_seq INTEGER NOT NULL DEFAULT 0;
    ALTER TABLE conversation_members ADD COLUMN read_seq INTEGER NOT NULL DEFAULT 0;
    CREATE INDEX conversation_members_by_conversation ON conversation_members(conversation_id, user_id);

    -- Events that are not about one message carry their JSON here.
    ALTER TABLE inbox ADD COLUMN payload TEXT;

    CREATE TABLE groups (
        id              INTEGER PRIMARY KEY,
        conversation_id INTEGER NOT NULL UNIQUE REFERENCES conversations(id),
        name            TEXT    NOT NULL,
        owner_id        INTEGER NOT NULL REFERENCES users(id),
        created_at      INTEGER NOT NULL,
        dissolved_at    INTEGER
    );

    -- Symmetric: one row per direction.
    CREATE TABLE friends (
        user_id   INTEGER NOT NULL REFERENCES users(id),
        friend_id INTEGER NOT NULL REFERENCES users(id),
        since     INTEGER NOT NULL,
        PRIMARY KEY (user_id, friend_id)
    ) WITHOUT ROWID;

    CREATE TABLE friend_requests (
        id         INTEGER PRIMARY KEY,
        from_id    INTEGER NOT NULL REFERENCES users(id),
        to_id      INTEGER NOT NULL REFERENCES users(id),
        note       TEXT,
        status     TEXT    NOT NULL CHECK (status IN ('pending', 'accepted', 'rejected', 'cancelled')),
        created_at INTEGER NOT NULL,
        expires_at INTEGER NOT NULL,
        decided_at INTEGER
    );
    CREATE UNIQUE INDEX friend_requests_one_pending ON friend_requests(from_id, to_id) WHERE status = 'pending';
    CREATE INDEX friend_requests_to ON friend_requests(to_id, status);

    CREATE TABLE blocks (
        user_id    INTEGER NOT NULL REFERENCES users(id),
        blocked_id INTEGER NOT NULL REFERENCES users(id),
        created_at INTEGER NOT NULL,
        PRIMARY KEY (user_id, blocked_id)
    ) WITHOUT ROWID;

    -- Delete-for-me.
    CREATE TABLE hidden_messages (
        user_id    INTEGER NOT NULL REFERENCES users(id),
        message_id INTEGER NOT NULL REFERENCES messages(id),
        PRIMARY KEY (user_id, message_id)
    ) WITHOUT ROWID;

    -- When each user's last connection closed.
    ALTER TABLE users ADD COLUMN last_seen_at INTEGER;

    -- Full-text index of message text; rowid = messages.id. Contentless: the
    -- text lives in messages only, and a recall deletes it from both.
    CREATE VIRTUAL TABLE message_text USING fts5(text, content = '', contentless_delete = 1);
    INSERT INTO message_text (rowid, text)
        SELECT id, json_extract(body, '$.text') FROM messages
        WHERE json_type(body, '$.text') = 'text';
    "#,
    // 3: outgoing webhooks and their durable delivery queue.
    r#"
    CREATE TABLE webhooks (
        id          INTEGER PRIMARY KEY,
        url         TEXT    NOT NULL,
        secret      TEXT    NOT NULL,
        -- comma-separated event types, or '*'
        events      TEXT    NOT NULL,
        created_at  INTEGER NOT NULL,
        disabled_at INTEGER
    );

    -- Written in the same transaction as what they report, so a committed
    -- message always has its webhook deliveries queued.
    CREATE TABLE webhook_deliveries (
        id              INTEGER PRIMARY KEY,
        webhook_id      INTEGER NOT NULL REFERENCES webhooks(id),
        event           TEXT    NOT NULL,
        payload         TEXT    NOT NULL,
        created_at      INTEGER NOT NULL,
        attempts        INTEGER NOT NULL DEFAULT 0,
        next_attempt_at INTEGER NOT NULL,
        delivered_at    INTEGER,
        last_error      TEXT,
        -- bumped by a replay, so an attempt in flight during the replay
        -- can't mark the replayed delivery as done
        generation      INTEGER NOT NULL DEFAULT 0
    );
    CREATE INDEX webhook_deliveries_due ON webhook_deliveries(next_attempt_at) WHERE delivered_at IS NULL;
    "#,
    // 4: attachments. Blobs live on disk under files/, named by SHA-256;
    // rows here say who uploaded what and which messages reference it.
    r#"
    CREATE TABLE files (
        id           TEXT    PRIMARY KEY,
        sha256       TEXT    NOT NULL,
        size         INTEGER NOT NULL,
        content_type TEXT    NOT NULL,
        name         TEXT,
        uploader_id  INTEGER NOT NULL REFERENCES users(id),
        created_at   INTEGER NOT NULL,
        -- images: the thumbnail's file id
        thumbnail_id TEXT,
        width        INTEGER,
        height       INTEGER
    );
    CREATE INDEX files_by_sha ON files(sha256);

    CREATE TABLE message_files (
        message_id INTEGER NOT NULL REFERENCES messages(id),
        file_id    TEXT    NOT NULL REFERENCES files(id),
        PRIMARY KEY (file_id, message_id)
    ) WITHOUT ROWID;
    "#,
    // 5: service accounts: bot users that third-party services send as,
    // with API keys (stored hashed), scopes and per-key rate limits.
    r#"
    ALTER TABLE users ADD COLUMN is_bot INTEGER NOT NULL DEFAULT 0;
    CREATE TABLE service_keys (
        id           INTEGER PRIMARY KEY,
        user_id      INTEGER NOT NULL REFERENCES users(id),
        key_hash     BLOB    NOT NULL UNIQUE,
        scopes       TEXT    NOT NULL,
        rate_per_sec INTEGER NOT NULL,
        created_at   INTEGER NOT NULL,
        revoked_at   INTEGER
    );
    "#,
    // 6: fewer writes per message (`store::messages::insert`, `fan_out`):
    // who sent each conversation's last message, so a send can tell without
    // another read whether the sender's read marker has to move; no copy of
    // each user's last inbox cursor.
    r#"
    ALTER TABLE conversations ADD COLUMN last_sender_id INTEGER;
    UPDATE conversations
        SET last_sender_id = (SELECT sender_id FROM messages WHERE id = last_message_id)
        WHERE last_message_id IS NOT NULL;
    -- A user's last cursor is the last in their inbox (its primary key
    -- gives it); the copy kept here cost a write per delivery.
    ALTER TABLE users DROP COLUMN inbox_cursor;
    "#,
    // 7: a conversation's last seq, message and sender are read from its
    // newest message (the `(conversation_id, seq)` index), not kept in
    // `conversations`: updating them dirtied a page per message that no
    // other message of a group commit shared.
    r#"
    ALTER TABLE conversations DROP COLUMN last_seq;
    ALTER TABLE conversations DROP COLUMN last_message_id;
    ALTER TABLE conversations DROP COLUMN last_sender_id;
    "#,
    // 8: consent to be added to groups: who may add a user directly (NULL:
    // the server's default), and invitations for everyone else.
    r#"
    ALTER TABLE users ADD COLUMN group_add_policy TEXT;
    CREATE TABLE group_invitations (
        id          INTEGER PRIMARY KEY,
        group_id    INTEGER NOT NULL REFERENCES groups(id),
        inviter_id  INTEGER NOT NULL REFERENCES users(id),
        invitee_id  INTEGER NOT NULL REFERENCES users(id),
        status      TEXT    NOT NULL,
        created_at  INTEGER NOT NULL,
        decided_at  INTEGER
    );
    CREATE UNIQUE INDEX group_invitations_pending
        ON group_invitations (group_id, invitee_id) WHERE status = 'pending';
    CREATE INDEX group_invitations_invitee ON group_invitations (invitee_id, status);
    "#,
    // 9: upload quotas sum a user's uploads, in total and over the last
    // day (`store::files::usage`): one range of this index, which covers
    // the query.
    r#"
    CREATE INDEX files_by_uploader ON files(uploader_id, created_at, size);
    "#,
    // 10: search reads recent text without the writer; former members see
    // messages as they were when they left.
    r#"
    -- Every text message with id <= indexed_through is in message_text
    -- (recalled ones excepted); newer ones wait in the writer's staging
    -- table, and a search reads their text from messages.
    CREATE TABLE text_index (
        id               INTEGER PRIMARY KEY CHECK (id = 1),
        indexed_through  INTEGER NOT NULL
    );
    INSERT INTO text_index (id, indexed_through)
        SELECT 1, COALESCE(MAX(id), 0) FROM message_text_docsize;

    -- A member who left a group, was removed, or whose group was
    -- dissolved. They keep their inbox rows; edits made after they left
    -- are not theirs to see.
    CREATE TABLE departures (
        user_id         INTEGER NOT NULL,
        conversation_id INTEGER NOT NULL,
        -- they saw the messages with joined_seq < seq <= left_seq
        joined_seq      INTEGER NOT NULL,
        left_seq        INTEGER NOT NULL,
        -- the newest message_versions id when they left (0: none)
        versions_seen   INTEGER NOT NULL,
        PRIMARY KEY (user_id, conversation_id, left_seq)
    ) WITHOUT ROWID;
    CREATE INDEX departures_by_conversation ON departures(conversation_id, left_seq);

    -- A message's body before an edit, kept only when someone who left
    -- its conversation holds it. AUTOINCREMENT: ids are never reused
    -- (a recall deletes the message's versions), as departures compare
    -- against them.
    CREATE TABLE message_versions (
        id         INTEGER PRIMARY KEY AUTOINCREMENT,
        message_id INTEGER NOT NULL REFERENCES messages(id),
        body       TEXT    NOT NULL,
        edited_at  INTEGER
    );
    CREATE INDEX message_versions_by_message ON message_versions(message_id, id);
    "#,
    // 11: persistent MQTT sessions, kept in the store so they survive a
    // restart and are served from the inbox (`store::mqtt`).
    r#"
    CREATE TABLE mqtt_sessions (
        user_id        INTEGER NOT NULL,
        client_id      TEXT    NOT NULL,
        subscriptions  TEXT    NOT NULL,
        acked          INTEGER NOT NULL,
        sent           INTEGER NOT NULL,
        seen_at        INTEGER NOT NULL,
        expires_at     INTEGER NOT NULL,
        PRIMARY KEY (user_id, client_id)
    ) WITHOUT ROWID;
    CREATE INDEX mqtt_sessions_by_expiry ON mqtt_sessions(expires_at);
    "#,
    // 12: reactions, pins, per-user conversation settings (`store::reactions`,
    // `store::pins`, `store::settings`).
    r#"
    -- One row per user per emoji per message. The emoji is stored in its
    -- fully-qualified form, so two spellings of one emoji are one reaction.
    CREATE TABLE reactions (
        message_id  INTEGER NOT NULL REFERENCES messages(id),
        emoji       TEXT    NOT NULL,
        user_id     INTEGER NOT NULL REFERENCES users(id),
        created_at  INTEGER NOT NULL,
        PRIMARY KEY (message_id, emoji, user_id)
    ) WITHOUT ROWID;

    CREATE TABLE pins (
        conversation_id INTEGER NOT NULL REFERENCES conversations(id),
        message_id      INTEGER NOT NULL REFERENCES messages(id),
        pinned_by       INTEGER NOT NULL REFERENCES users(id),
        pinned_at       INTEGER NOT NULL,
        PRIMARY KEY (conversation_id, message_id)
    ) WITHOUT ROWID;

    -- Who may pin in a group: 'admins' (owner and admins) or 'members'.
    ALTER TABLE groups ADD COLUMN pin_policy TEXT NOT NULL DEFAULT 'admins';

    -- A user's own settings of a conversation. muted_until: ms (the
    -- largest integer: forever); pinned_at: when the user pinned it to the
    -- top of their list; archived_seq: archived while the conversation's
    -- newest seq is at most this (a new message ends it, with no write on
    -- the send path).
    CREATE TABLE conversation_settings (
        user_id         INTEGER NOT NULL,
        conversation_id INTEGER NOT NULL,
        muted_until     INTEGER,
        pinned_at       INTEGER,
        archived_seq    INTEGER,
        PRIMARY KEY (user_id, conversation_id)
    ) WITHOUT ROWID;
    "#,
    // 13: disappearing messages and retention (`store::expiry`).
    r#"
    -- A conversation's message TTL, seconds (NULL: off).
    ALTER TABLE conversations ADD COLUMN message_ttl_seconds INTEGER;
    -- When a message disappears (sent while its conversation had a TTL),
    -- and when a sweep removed its content (TTL or retention).
    ALTER TABLE messages ADD COLUMN expires_at INTEGER;
    ALTER TABLE messages ADD COLUMN expired_at INTEGER;
    -- The sweep's work list: only messages still to remove, soonest first.
    CREATE INDEX messages_expiring ON messages(expires_at)
        WHERE expires_at IS NOT NULL AND expired_at IS NULL;
    -- A removed message's files are unlinked from it by its id.
    CREATE INDEX message_files_by_message ON message_files(message_id);
    -- Retention walks messages by id; the newest id it has looked at.
    CREATE TABLE retention_mark (
        id       INTEGER PRIMARY KEY CHECK (id = 1),
        through  INTEGER NOT NULL
    );
    INSERT INTO retention_mark (id, through) VALUES (1, 0);
    "#,
    // 14: replies, mentions and forwarding (`store::replies`). Columns of
    // the message, NULL for a plain one: a plain send writes nothing more.
    // `mentions` is JSON, an array of user ids or the string "all";
    // `forwarded_from` a JSON object. The quote of a reply is read from its
    // target when the reply is read, so a recall shows at once.
    r#"
    ALTER TABLE messages ADD COLUMN reply_to INTEGER;
    ALTER TABLE messages ADD COLUMN mentions TEXT;
    ALTER TABLE messages ADD COLUMN forwarded_from TEXT;
    ALTER TABLE groups ADD COLUMN mention_all TEXT NOT NULL DEFAULT 'admins';
    "#,
];

/// Brings the database to the latest version, one transaction per step.
pub(super) fn migrate(conn: &mut Connection) -> Result<(), StoreError> {
    let current: usize = conn.pragma_query_value(None, "user_version", |r| r.get(0))?;
    if current > MIGRATIONS.len() {
        return Err(StoreError::Migration(format!(
            "database is at schema version {current}, newer than this chatd ({}); refusing to run",
            MIGRATIONS.len()
        )));
    }
    for (i, sql) in MIGRATIONS.iter().enumerate().skip(current) {
        let tx = conn.transaction()?;
        tx.execute_batch(sql)
            .map_err(|e| StoreError::Migration(format!("step {}: {e}", i + 1)))?;
        tx.pragma_update(None, "user_version", i + 1)?;
        tx.commit()?;
        tracing::info!(version = i + 1, "schema migrated");
    }
    Ok(())
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn migrates_fresh_and_is_idempotent() -> Result<(), StoreError> {
        let mut conn = Connection::open_in_memory()?;
        migrate(&mut conn)?;
        migrate(&mut conn)?;
        let v: usize = conn.pragma_query_value(None, "user_version", |r| r.get(0))?;
        assert_eq!(v, MIGRATIONS.len());
        Ok(())
    }

    /// Step 8 on a database whose newest texts were staged when chatd
    /// stopped: the index is caught up through what it held, so the start
    /// indexes the rest (and a search reads nothing twice meanwhile).
    #[test]
    fn step_8_starts_the_index_where_it_stopped() -> Result<(), StoreError> {
        let mut conn = Connection::open_in_memory()?;
        for sql in &MIGRATIONS[..7] {
            conn.execute_batch(sql)?;
        }
        conn.pragma_update(None, "user_version", 7)?;
        conn.execute_batch(
            r#"INSERT INTO users (id, username, password_hash, created_at) VALUES (1, 'a', '!', 0);
             INSERT INTO conversations (id, kind, user_lo, user_hi, created_at) VALUES (1, 'direct', 1, 1, 0);
             INSERT INTO messages (id, conversation_id, seq, sender_id, client_msg_id, body, sent_at)
                 VALUES (1, 1, 1, 1, 'x', '{"text":"indexed"}', 0),
                        (2, 1, 2, 1, 'y', '{"text":"staged"}', 0);
             INSERT INTO message_text (rowid, text) VALUES (1, 'indexed');"#,
        )?;
        migrate(&mut conn)?;
        let through: i64 =
            conn.query_row("SELECT indexed_through FROM text_index", [], |r| r.get(0))?;
        assert_eq!(through, 1);
        assert_eq!(super::super::fulltext::index_unindexed_text(&conn)?, 1);
        let through: i64 =
            conn.query_row("SELECT indexed_through FROM text_index", [], |r| r.get(0))?;
        assert_eq!(through, 2);
        Ok(())
    }

    /// Step 6 on a database with messages: who sent each conversation's
    /// last message is filled in, and cursors carry on from the inbox.
    #[test]
    fn step_6_keeps_last_senders_and_cursors() -> Result<(), StoreError> {
        let conn = Connection::open_in_memory()?;
        for sql in &MIGRATIONS[..5] {
            conn.execute_batch(sql)?;
        }
        conn.pragma_update(None, "user_version", 5)?;
        conn.execute_batch(
            "INSERT INTO users (id, username, password_hash, created_at, inbox_cursor)
                 VALUES (1, 'a', '!', 0, 2), (2, 'b', '!', 0, 1), (3, 'c', '!', 0, 0);
             INSERT INTO conversations (id, kind, user_lo, user_hi, last_seq, last_message_id, created_at)
                 VALUES (1, 'direct', 1, 2, 2, 11, 0), (2, 'direct', 1, 3, 0, NULL, 0);
             INSERT INTO messages (id, conversation_id, seq, sender_id, client_msg_id, body, sent_at)
                 VALUES (10, 1, 1, 1, 'x', '{}', 0), (11, 1, 2, 2, 'y', '{}', 0);
             INSERT INTO inbox (user_id, cursor, kind, message_id)
                 VALUES (1, 1, 'message.created', 10), (1, 2, 'message.created', 11),
                        (2, 1, 'message.created', 11);",
        )?;
        // Only step 6: step 7 drops what it filled in.
        conn.execute_batch(MIGRATIONS[5])?;
        let last: Vec<Option<u64>> = conn
            .prepare("SELECT last_sender_id FROM conversations ORDER BY id")?
            .query_map([], |r| r.get(0))?
            .collect::<Result<_, _>>()?;
        assert_eq!(last, vec![Some(2), None]);
        let next: Vec<u64> = (1..=3)
            .map(|u| super::super::users::next_cursor(&conn, u))
            .collect::<Result<_, _>>()?;
        assert_eq!(next, vec![3, 2, 1]);
        Ok(())
    }

    /// Step 7 drops the conversation's copies of its last seq, message and
    /// sender: they are read from its messages, and a send carries on from
    /// the newest one.
    #[test]
    fn step_7_carries_seqs_on_from_the_messages() -> Result<(), StoreError> {
        use super::super::messages;
        let mut conn = Connection::open_in_memory()?;
        for sql in &MIGRATIONS[..6] {
            conn.execute_batch(sql)?;
        }
        conn.pragma_update(None, "user_version", 6)?;
        conn.execute_batch(
            "INSERT INTO users (id, username, password_hash, created_at)
                 VALUES (1, 'a', '!', 0), (2, 'b', '!', 0), (3, 'c', '!', 0);
             INSERT INTO conversations (id, kind, user_lo, user_hi, last_seq, last_message_id, last_sender_id, created_at)
                 VALUES (1, 'direct', 1, 2, 2, 11, 2, 0), (2, 'direct', 1, 3, 0, NULL, NULL, 0);
             INSERT INTO conversation_members (user_id, conversation_id, joined_at)
                 VALUES (1, 1, 0), (2, 1, 0), (1, 2, 0), (3, 2, 0);
             INSERT INTO messages (id, conversation_id, seq, sender_id, client_msg_id, body, sent_at)
                 VALUES (10, 1, 1, 1, 'x', '{}', 0), (11, 1, 2, 2, 'y', '{}', 0);",
        )?;
        migrate(&mut conn)?;
        let listed = messages::conversations(&conn, 1, false, 10)?;
        let summary: Vec<_> = listed
            .iter()
            .map(|c| (c.id, c.last_seq, c.last_message.as_ref().map(|m| m.id)))
            .collect();
        assert_eq!(summary, vec![(1, 2, Some(11)), (2, 0, None)]);
        let writer = super::super::Conn::new(&conn);
        let new = |conversation_id, sender, client_msg_id| crate::store::messages::NewRow {
            conversation_id,
            sender,
            client_msg_id,
            body: "{}",
            text: None,
            kind: "user",
            now: 1,
            extras: None,
        };
        let next = messages::insert(&writer, &new(1, 1, "z"))?.expect("stored");
        assert_eq!((next.seq, next.to_user), (3, Some(2)));
        let first = messages::insert(&writer, &new(2, 3, "w"))?.expect("stored");
        assert_eq!((first.seq, first.to_user), (1, Some(1)));
        let listed: Vec<_> = messages::conversations(&conn, 1, false, 10)?
            .iter()
            .map(|c| (c.id, c.last_seq))
            .collect();
        assert_eq!(listed, vec![(2, 1), (1, 3)], "newest activity first");
        Ok(())
    }

    #[test]
    fn refuses_a_newer_schema() -> Result<(), StoreError> {
        let mut conn = Connection::open_in_memory()?;
        conn.pragma_update(None, "user_version", 999)?;
        assert!(matches!(migrate(&mut conn), Err(StoreError::Migration(_))));
        Ok(())
    }
}

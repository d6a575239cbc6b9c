//! Versioned schema migrations, tracked in `PRAGMA user_version`.

use rusqlite::Connection;

use super::StoreError;

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
        kind            TEXT    NOT NULL CHECK (kind IN ('direct')),
        -- direct: the two users, lower id first (equal for notes-to-self)
        user_lo         INTEGER REFERENCES users(id),
        user_hi         INTEGER REFERENCES users(id),
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

    #[test]
    fn refuses_a_newer_schema() -> Result<(), StoreError> {
        let mut conn = Connection::open_in_memory()?;
        conn.pragma_update(None, "user_version", 999)?;
        assert!(matches!(migrate(&mut conn), Err(StoreError::Migration(_))));
        Ok(())
    }
}

//! The full-text index of message text: sends stage their text on the
//! writer, the writer moves it into the index in batches, and a search
//! reads what is not indexed yet itself, on a reader.

use rusqlite::{params, Connection};

use super::messages::{message, MESSAGE_COLUMNS};
use crate::store::messages::MessageRow;
use crate::store::StoreError;

/// The writer's staging table for the full-text index. FTS5 writes a new
/// index segment for every transaction (and at every SAVEPOINT) that adds
/// text, and merges them later: a few pages per flush, as many as a direct
/// message's own rows when groups are small. So sends stage their text here
/// (a temp table: in memory, on the writer's connection, undone with the
/// job's savepoint or the group's rollback), and [`index_staged_text`]
/// moves it into the index in one statement: before a group commits once
/// [`INDEX_TEXT_AFTER`] messages came since the last time, before every
/// edit and at close. Searches never wait for it: they read the text of
/// the messages not indexed yet from `messages` ([`search`]). A crash
/// loses what was staged, never the messages: [`index_unindexed_text`]
/// indexes those at the next start.
pub(super) fn prepare_text_staging(c: &Connection) -> Result<(), StoreError> {
    c.execute_batch(
        "CREATE TEMP TABLE IF NOT EXISTS staged_text (id INTEGER PRIMARY KEY, text TEXT NOT NULL)",
    )?;
    Ok(())
}

/// Staged texts are moved into the index when a group commits with at
/// least this many messages (of any kind) stored since the last time (at
/// 10,000 direct messages/s, every ~25 ms). It also bounds what a search
/// reads outside the index: fewer than this many messages.
pub(super) const INDEX_TEXT_AFTER: i64 = 256;

/// The writer's before-commit step: [`index_staged_text`] once
/// [`INDEX_TEXT_AFTER`] messages came since the index last caught up.
pub(super) fn index_staged_text_if_many(c: &Connection) -> rusqlite::Result<()> {
    let behind: i64 = c
        .prepare_cached(
            "SELECT (SELECT COALESCE(MAX(id), 0) FROM messages) - indexed_through FROM text_index",
        )?
        .query_row([], |r| r.get(0))?;
    if behind >= INDEX_TEXT_AFTER {
        index_staged_text(c)?;
    }
    Ok(())
}

/// Moves every staged text into the full-text index (on the writer's
/// connection, inside its transaction), and records that the index holds
/// every message's text up to the newest message (`text_index`).
///
/// Staged ids are new messages, all above `indexed_through`, and an edit
/// of an older message flushes the staged ones before indexing its own;
/// so the index holds the text of every message up to `indexed_through`
/// (recalled ones excepted) and of no message above it.
/// [`index_unindexed_text`] and [`search`] rely on that.
pub(super) fn index_staged_text(c: &Connection) -> rusqlite::Result<()> {
    let staged = c
        .prepare_cached(
            "INSERT INTO message_text (rowid, text) SELECT id, text FROM temp.staged_text",
        )?
        .execute([])?;
    if staged > 0 {
        c.prepare_cached("DELETE FROM temp.staged_text")?
            .execute([])?;
    }
    c.prepare_cached(INDEXED_THROUGH_NEWEST)?.execute([])?;
    Ok(())
}

/// Moves `text_index.indexed_through` up to the newest message.
const INDEXED_THROUGH_NEWEST: &str = "UPDATE text_index
     SET indexed_through = (SELECT COALESCE(MAX(id), 0) FROM messages)
     WHERE indexed_through < (SELECT COALESCE(MAX(id), 0) FROM messages)";

/// At start: indexes the text of messages above `indexed_through`, the
/// ones that were staged when chatd stopped.
pub(super) fn index_unindexed_text(c: &Connection) -> Result<usize, StoreError> {
    let indexed = c.execute(
        "INSERT OR REPLACE INTO message_text (rowid, text)
         SELECT id, json_extract(body, '$.text') FROM messages
         WHERE id > (SELECT indexed_through FROM text_index)
           AND json_type(body, '$.text') = 'text'",
        [],
    )?;
    c.execute(INDEXED_THROUGH_NEWEST, [])?;
    Ok(indexed)
}

/// The text of a message, if it has one.
pub(super) fn text_of(body: &str) -> Option<String> {
    serde_json::from_str::<serde_json::Value>(body)
        .ok()
        .and_then(|v| v.get("text").and_then(|t| t.as_str()).map(str::to_owned))
}

/// Stages a message's text for the full-text index (see
/// [`prepare_text_staging`]).
pub(super) const STAGE_TEXT: &str =
    "INSERT OR REPLACE INTO temp.staged_text (id, text) VALUES (?1, ?2)";

pub(super) fn unindex_text(c: &Connection, id: u64) -> Result<(), StoreError> {
    c.prepare_cached("DELETE FROM message_text WHERE rowid = ?1")?
        .execute([id])?;
    c.prepare_cached("DELETE FROM temp.staged_text WHERE id = ?1")?
        .execute([id])?;
    Ok(())
}

/// Full-text search over what the user can see: conversations they are in
/// (after joining), not recalled, not hidden by them, not from users they
/// block, not expired at `now` (swept or not). `query` is an FTS5
/// expression the caller has made safe.
///
/// Runs on a reader, never on the writer: the text of the messages the
/// index does not hold yet (fewer than [`INDEX_TEXT_AFTER`], see
/// [`index_staged_text`]) in the caller's conversations is copied into an
/// index of this connection's own, in the same read transaction as the
/// query, so a search finds every message committed before it began and
/// none twice.
pub fn search(
    c: &Connection,
    user_id: u64,
    query: &str,
    limit: usize,
    now: i64,
) -> Result<Vec<MessageRow>, StoreError> {
    let snapshot = c.unchecked_transaction()?;
    // Most searchers have no text newer than the index (it catches up every
    // INDEX_TEXT_AFTER messages): they search the index alone, and only the
    // others pay for an index of their own.
    let recent: bool = c
        .prepare_cached(&format!("SELECT EXISTS (SELECT 1 {RECENT_TEXT})"))?
        .query_row([user_id], |r| r.get(0))?;
    if recent {
        c.execute_batch("CREATE VIRTUAL TABLE IF NOT EXISTS temp.recent_text USING fts5(text)")?;
        c.prepare_cached("DELETE FROM temp.recent_text")?
            .execute([])?;
        c.prepare_cached(&format!(
            "INSERT INTO temp.recent_text (rowid, text)
             SELECT m.id, json_extract(m.body, '$.text') {RECENT_TEXT}"
        ))?
        .execute([user_id])?;
    }
    let matches = if recent {
        "SELECT rowid AS id FROM message_text WHERE message_text MATCH ?2
         UNION ALL
         SELECT rowid FROM temp.recent_text WHERE recent_text MATCH ?2"
    } else {
        "SELECT rowid AS id FROM message_text WHERE message_text MATCH ?2"
    };
    let sql = format!(
        "SELECT {MESSAGE_COLUMNS}
         FROM ({matches}) t
         JOIN messages m ON m.id = t.id
         JOIN conversations c ON c.id = m.conversation_id
         JOIN conversation_members cm ON cm.conversation_id = m.conversation_id AND cm.user_id = ?1
         WHERE m.seq > cm.joined_seq
           AND m.recalled_at IS NULL
           AND (m.expires_at IS NULL OR m.expires_at > ?4)
           AND NOT EXISTS (SELECT 1 FROM hidden_messages h WHERE h.user_id = ?1 AND h.message_id = m.id)
           AND NOT EXISTS (SELECT 1 FROM blocks b WHERE b.user_id = ?1 AND b.blocked_id = m.sender_id)
         ORDER BY m.id DESC
         LIMIT ?3"
    );
    let rows = c
        .prepare_cached(&sql)?
        .query_map(params![user_id, query, limit as i64, now], |r| {
            message(r, 0)
        })?
        .collect::<Result<Vec<_>, _>>()?;
    if recent {
        // Nothing of the connection's own index need outlive the search.
        c.prepare_cached("DELETE FROM temp.recent_text")?
            .execute([])?;
    }
    snapshot.commit()?;
    Ok(rows)
}

/// The caller's (`?1`) text messages newer than the index: only the
/// caller's own, since tokenizing every recent text made each search cost
/// as much as the other users' sends were many. CROSS JOIN keeps the
/// newest messages (a rowid range of fewer than INDEX_TEXT_AFTER) as the
/// outer loop: left to itself, SQLite walked each of the caller's
/// conversations from `joined_seq` on, its whole history, on every search.
const RECENT_TEXT: &str = "FROM messages m
    CROSS JOIN conversation_members cm
      ON cm.conversation_id = m.conversation_id AND cm.user_id = ?1
    WHERE m.id > (SELECT indexed_through FROM text_index)
      AND m.seq > cm.joined_seq AND json_type(m.body, '$.text') = 'text'";

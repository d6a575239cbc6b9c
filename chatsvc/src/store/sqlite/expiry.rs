//! SQLite: [`crate::store::expiry`].

use rusqlite::{params, Connection, OptionalExtension};

use super::fulltext::unindex_text;
use super::messages::by_id;
use crate::store::expiry::{ConversationTtl, Removed};
use crate::store::StoreError;

/// Sets or clears a conversation's message TTL.
pub fn set_message_ttl(
    c: &Connection,
    conversation_id: u64,
    ttl_seconds: Option<u64>,
) -> Result<(), StoreError> {
    let changed = c
        .prepare_cached("UPDATE conversations SET message_ttl_seconds = ?2 WHERE id = ?1")?
        .execute(params![conversation_id, ttl_seconds])?;
    if changed == 0 {
        return Err(StoreError::NotFound("conversation"));
    }
    Ok(())
}

/// A conversation's kind, group and message TTL.
pub fn message_ttl(
    c: &Connection,
    conversation_id: u64,
) -> Result<Option<ConversationTtl>, StoreError> {
    Ok(c.prepare_cached(
        "SELECT kind, group_id, message_ttl_seconds FROM conversations WHERE id = ?1",
    )?
    .query_row([conversation_id], |r| {
        Ok(ConversationTtl {
            kind: r.get(0)?,
            group_id: r.get(1)?,
            ttl_seconds: r.get(2)?,
        })
    })
    .optional()?)
}

/// Messages due at `now`, soonest first, from the `messages_expiring`
/// partial index (which holds only those not removed yet), then removed.
/// The writer is the only one that writes, so no other sweep takes them.
pub fn expire_due(c: &Connection, now: i64, limit: usize) -> Result<Vec<Removed>, StoreError> {
    let ids = c
        .prepare_cached(
            "SELECT id FROM messages
             WHERE expires_at IS NOT NULL AND expired_at IS NULL AND expires_at <= ?1
             ORDER BY expires_at LIMIT ?2",
        )?
        .query_map(params![now, limit as i64], |r| r.get(0))?
        .collect::<Result<Vec<u64>, _>>()?;
    remove(c, &ids, now)
}

/// The next `limit` messages after the retention mark, as far as they
/// were sent before `before`: ids grow with time, so the first one sent
/// later ends the walk, and the mark moves past what was looked at.
pub fn retire_before(
    c: &Connection,
    before: i64,
    now: i64,
    limit: usize,
) -> Result<Vec<Removed>, StoreError> {
    let through: u64 = c
        .prepare_cached("SELECT through FROM retention_mark WHERE id = 1")?
        .query_row([], |r| r.get(0))?;
    let rows = c
        .prepare_cached(
            "SELECT id, sent_at, expired_at IS NOT NULL FROM messages
             WHERE id > ?1 ORDER BY id LIMIT ?2",
        )?
        .query_map(params![through, limit as i64], |r| {
            Ok((
                r.get::<_, u64>(0)?,
                r.get::<_, i64>(1)?,
                r.get::<_, bool>(2)?,
            ))
        })?
        .collect::<Result<Vec<_>, _>>()?;
    let old: Vec<_> = rows
        .into_iter()
        .take_while(|&(_, sent_at, _)| sent_at < before)
        .collect();
    let Some(&(last, _, _)) = old.last() else {
        return Ok(Vec::new());
    };
    c.prepare_cached("UPDATE retention_mark SET through = ?1 WHERE id = 1")?
        .execute([last])?;
    let ids: Vec<u64> = old
        .into_iter()
        .filter(|&(_, _, removed)| !removed)
        .map(|(id, _, _)| id)
        .collect();
    remove(c, &ids, now)
}

/// Removes each message's content as a recall does, unlinks its files,
/// and marks it removed at `now` (its `expires_at` at `now` at the latest).
fn remove(c: &Connection, ids: &[u64], now: i64) -> Result<Vec<Removed>, StoreError> {
    let mut removed = Vec::with_capacity(ids.len());
    for &id in ids {
        let changed = c
            .prepare_cached(
                "UPDATE messages SET body = '{}', expired_at = ?2,
                     expires_at = MIN(COALESCE(expires_at, ?2), ?2)
                 WHERE id = ?1 AND expired_at IS NULL",
            )?
            .execute(params![id, now])?;
        if changed == 0 {
            continue;
        }
        c.prepare_cached("DELETE FROM message_versions WHERE message_id = ?1")?
            .execute([id])?;
        unindex_text(c, id)?;
        let files = c
            .prepare_cached("DELETE FROM message_files WHERE message_id = ?1 RETURNING file_id")?
            .query_map([id], |r| r.get(0))?
            .collect::<Result<Vec<String>, _>>()?;
        let row = by_id(c, id)?.ok_or(StoreError::NotFound("message"))?;
        removed.push(Removed { row, files });
    }
    Ok(removed)
}

/// Deletes the rows of those files no message references any more.
pub fn delete_unreferenced_files(
    c: &Connection,
    ids: &[String],
) -> Result<Vec<(String, String)>, StoreError> {
    let mut stmt = c.prepare_cached(
        "DELETE FROM files WHERE id = ?1
           AND NOT EXISTS (SELECT 1 FROM message_files mf WHERE mf.file_id = files.id)
         RETURNING id, sha256",
    )?;
    let mut deleted = Vec::new();
    for id in ids {
        if let Some(row) = stmt
            .query_row([id], |r| Ok((r.get(0)?, r.get(1)?)))
            .optional()?
        {
            deleted.push(row);
        }
    }
    Ok(deleted)
}

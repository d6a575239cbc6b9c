//! SQLite: [`crate::store::reactions`].

use rusqlite::{params, Connection};

use crate::store::reactions::{Added, ReactionCount};
use crate::store::StoreError;

pub fn add(
    c: &Connection,
    message_id: u64,
    user_id: u64,
    emoji: &str,
    max_emoji: usize,
    now: i64,
) -> Result<Added, StoreError> {
    // One writer: nothing adds an emoji between this count and the insert.
    let (distinct, known, mine): (usize, bool, bool) = c
        .prepare_cached(
            "SELECT COUNT(DISTINCT emoji), COALESCE(MAX(emoji = ?2), 0),
                    COALESCE(MAX(emoji = ?2 AND user_id = ?3), 0)
             FROM reactions WHERE message_id = ?1",
        )?
        .query_row(params![message_id, emoji, user_id], |r| {
            Ok((r.get(0)?, r.get(1)?, r.get(2)?))
        })?;
    if mine {
        return Ok(Added::Already);
    }
    if !known && distinct >= max_emoji {
        return Ok(Added::TooMany);
    }
    c.prepare_cached(
        "INSERT INTO reactions (message_id, emoji, user_id, created_at) VALUES (?1, ?2, ?3, ?4)",
    )?
    .execute(params![message_id, emoji, user_id, now])?;
    Ok(Added::Added)
}

pub fn remove(
    c: &Connection,
    message_id: u64,
    user_id: u64,
    emoji: &str,
) -> Result<bool, StoreError> {
    let n = c
        .prepare_cached(
            "DELETE FROM reactions WHERE message_id = ?1 AND emoji = ?2 AND user_id = ?3",
        )?
        .execute(params![message_id, emoji, user_id])?;
    Ok(n > 0)
}

pub fn counts(
    c: &Connection,
    reader: u64,
    message_ids: &[u64],
) -> Result<Vec<ReactionCount>, StoreError> {
    if message_ids.is_empty() {
        return Ok(Vec::new());
    }
    // The ids as a JSON array: one statement (and one cached plan) for any
    // number of them.
    let ids = serde_json::to_string(message_ids)?;
    let mut stmt = c.prepare_cached(
        "SELECT message_id, emoji, COUNT(*), MAX(user_id = ?2), MIN(created_at) AS first
         FROM reactions WHERE message_id IN (SELECT value FROM json_each(?1))
         GROUP BY message_id, emoji
         ORDER BY message_id, first, emoji",
    )?;
    let rows = stmt
        .query_map(params![ids, reader], |r| {
            Ok(ReactionCount {
                message_id: r.get(0)?,
                emoji: r.get(1)?,
                count: r.get(2)?,
                mine: r.get(3)?,
            })
        })?
        .collect::<Result<Vec<_>, _>>()?;
    Ok(rows)
}

pub fn audience(c: &Connection, conversation_id: u64, seq: u64) -> Result<Vec<u64>, StoreError> {
    let mut stmt = c.prepare_cached(
        "SELECT user_id FROM conversation_members
         WHERE conversation_id = ?1 AND joined_seq < ?2 ORDER BY user_id",
    )?;
    let ids = stmt
        .query_map(params![conversation_id, seq], |r| r.get(0))?
        .collect::<Result<Vec<u64>, _>>()?;
    Ok(ids)
}

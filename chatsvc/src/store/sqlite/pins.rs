//! SQLite: [`crate::store::pins`].

use rusqlite::{params, Connection, OptionalExtension};

use super::messages::{message, MESSAGE_COLUMNS, MESSAGE_WIDTH};
use crate::store::pins::{PinRow, Pinned};
use crate::store::StoreError;

pub fn add(
    c: &Connection,
    conversation_id: u64,
    message_id: u64,
    user_id: u64,
    max: usize,
    now: i64,
) -> Result<Pinned, StoreError> {
    let (count, already): (usize, bool) = c
        .prepare_cached(
            "SELECT COUNT(*), COALESCE(MAX(message_id = ?2), 0) FROM pins WHERE conversation_id = ?1",
        )?
        .query_row(params![conversation_id, message_id], |r| {
            Ok((r.get(0)?, r.get(1)?))
        })?;
    if already {
        return Ok(Pinned::Already);
    }
    if count >= max {
        return Ok(Pinned::Full);
    }
    c.prepare_cached(
        "INSERT INTO pins (conversation_id, message_id, pinned_by, pinned_at) VALUES (?1, ?2, ?3, ?4)",
    )?
    .execute(params![conversation_id, message_id, user_id, now])?;
    Ok(Pinned::Added)
}

pub fn remove(c: &Connection, conversation_id: u64, message_id: u64) -> Result<bool, StoreError> {
    let n = c
        .prepare_cached("DELETE FROM pins WHERE conversation_id = ?1 AND message_id = ?2")?
        .execute(params![conversation_id, message_id])?;
    Ok(n > 0)
}

pub fn list(
    c: &Connection,
    conversation_id: u64,
    after_seq: u64,
) -> Result<Vec<PinRow>, StoreError> {
    let sql = format!(
        "SELECT {MESSAGE_COLUMNS}, p.pinned_by, p.pinned_at
         FROM pins p JOIN messages m ON m.id = p.message_id
         JOIN conversations c ON c.id = m.conversation_id
         WHERE p.conversation_id = ?1 AND m.seq > ?2
         ORDER BY p.pinned_at DESC, p.message_id DESC"
    );
    let mut stmt = c.prepare_cached(&sql)?;
    let rows = stmt
        .query_map(params![conversation_id, after_seq], |r| {
            Ok(PinRow {
                message: message(r, 0)?,
                pinned_by: r.get(MESSAGE_WIDTH)?,
                pinned_at: r.get(MESSAGE_WIDTH + 1)?,
            })
        })?
        .collect::<Result<Vec<_>, _>>()?;
    Ok(rows)
}

pub fn policy(c: &Connection, conversation_id: u64) -> Result<Option<String>, StoreError> {
    Ok(
        c.prepare_cached("SELECT pin_policy FROM groups WHERE conversation_id = ?1")?
            .query_row([conversation_id], |r| r.get(0))
            .optional()?,
    )
}

pub fn set_policy(c: &Connection, group_id: u64, policy: &str) -> Result<(), StoreError> {
    c.prepare_cached("UPDATE groups SET pin_policy = ?2 WHERE id = ?1")?
        .execute(params![group_id, policy])?;
    Ok(())
}

//! PostgreSQL: [`crate::store::pins`]. Pins are written under the
//! cluster-wide write lock held exclusively (`writer.rs`), so a count and
//! the insert after it see no other pin come between.

use super::messages::{message, message_columns, uint, MESSAGE_WIDTH};
use super::Session;
use crate::store::pins::{PinRow, Pinned};
use crate::store::StoreError;

pub fn add(
    c: &Session<'_>,
    conversation_id: u64,
    message_id: u64,
    user_id: u64,
    max: usize,
    now: i64,
) -> Result<Pinned, StoreError> {
    let r = c.query_one(
        "SELECT COUNT(*), COALESCE(bool_or(message_id = $2), false) FROM pins WHERE conversation_id = $1",
        &[&(conversation_id as i64), &(message_id as i64)],
    )?;
    if r.try_get::<_, bool>(1)? {
        return Ok(Pinned::Already);
    }
    if uint(&r, 0)? as usize >= max {
        return Ok(Pinned::Full);
    }
    let n = c.execute(
        "INSERT INTO pins (conversation_id, message_id, pinned_by, pinned_at) VALUES ($1, $2, $3, $4)
         ON CONFLICT DO NOTHING",
        &[
            &(conversation_id as i64),
            &(message_id as i64),
            &(user_id as i64),
            &now,
        ],
    )?;
    Ok(if n > 0 {
        Pinned::Added
    } else {
        Pinned::Already
    })
}

pub fn remove(c: &Session<'_>, conversation_id: u64, message_id: u64) -> Result<bool, StoreError> {
    let n = c.execute(
        "DELETE FROM pins WHERE conversation_id = $1 AND message_id = $2",
        &[&(conversation_id as i64), &(message_id as i64)],
    )?;
    Ok(n > 0)
}

pub fn list(
    c: &Session<'_>,
    conversation_id: u64,
    after_seq: u64,
) -> Result<Vec<PinRow>, StoreError> {
    c.query(
        concat!(
            "SELECT ",
            message_columns!(),
            ", p.pinned_by, p.pinned_at
             FROM pins p JOIN messages m ON m.id = p.message_id
             JOIN conversations c ON c.id = m.conversation_id
             WHERE p.conversation_id = $1 AND m.seq > $2
             ORDER BY p.pinned_at DESC, p.message_id DESC"
        ),
        &[
            &(conversation_id as i64),
            &i64::try_from(after_seq).unwrap_or(i64::MAX),
        ],
    )?
    .iter()
    .map(|r| {
        Ok(PinRow {
            message: message(r, 0)?,
            pinned_by: uint(r, MESSAGE_WIDTH)?,
            pinned_at: r.try_get(MESSAGE_WIDTH + 1)?,
        })
    })
    .collect()
}

pub fn policy(c: &Session<'_>, conversation_id: u64) -> Result<Option<String>, StoreError> {
    Ok(c.query_opt(
        "SELECT pin_policy FROM groups WHERE conversation_id = $1",
        &[&(conversation_id as i64)],
    )?
    .map(|r| r.try_get(0))
    .transpose()?)
}

pub fn set_policy(c: &Session<'_>, group_id: u64, policy: &str) -> Result<(), StoreError> {
    c.execute(
        "UPDATE groups SET pin_policy = $2 WHERE id = $1",
        &[&(group_id as i64), &policy],
    )?;
    Ok(())
}

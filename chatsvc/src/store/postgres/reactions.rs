//! PostgreSQL: [`crate::store::reactions`]. These writes run under the
//! cluster-wide write lock held exclusively (they are not sends,
//! `writer.rs`), so nothing adds an emoji between a count and its insert.

use super::messages::uint;
use super::Session;
use crate::store::reactions::{Added, ReactionCount};
use crate::store::StoreError;

pub fn add(
    c: &Session<'_>,
    message_id: u64,
    user_id: u64,
    emoji: &str,
    max_emoji: usize,
    now: i64,
) -> Result<Added, StoreError> {
    let r = c.query_one(
        "SELECT COUNT(DISTINCT emoji), COALESCE(bool_or(emoji = $2), false),
                COALESCE(bool_or(emoji = $2 AND user_id = $3), false)
         FROM reactions WHERE message_id = $1",
        &[&(message_id as i64), &emoji, &(user_id as i64)],
    )?;
    let (distinct, known, mine): (i64, bool, bool) = (r.try_get(0)?, r.try_get(1)?, r.try_get(2)?);
    if mine {
        return Ok(Added::Already);
    }
    if !known && distinct as usize >= max_emoji {
        return Ok(Added::TooMany);
    }
    let n = c.execute(
        "INSERT INTO reactions (message_id, emoji, user_id, created_at) VALUES ($1, $2, $3, $4)
         ON CONFLICT DO NOTHING",
        &[&(message_id as i64), &emoji, &(user_id as i64), &now],
    )?;
    Ok(if n > 0 { Added::Added } else { Added::Already })
}

pub fn remove(
    c: &Session<'_>,
    message_id: u64,
    user_id: u64,
    emoji: &str,
) -> Result<bool, StoreError> {
    let n = c.execute(
        "DELETE FROM reactions WHERE message_id = $1 AND emoji = $2 AND user_id = $3",
        &[&(message_id as i64), &emoji, &(user_id as i64)],
    )?;
    Ok(n > 0)
}

pub fn counts(
    c: &Session<'_>,
    reader: u64,
    message_ids: &[u64],
) -> Result<Vec<ReactionCount>, StoreError> {
    if message_ids.is_empty() {
        return Ok(Vec::new());
    }
    let ids: Vec<i64> = message_ids.iter().map(|&id| id as i64).collect();
    c.query(
        "SELECT message_id, emoji, COUNT(*), bool_or(user_id = $2), MIN(created_at) AS first
         FROM reactions WHERE message_id = ANY($1)
         GROUP BY message_id, emoji
         ORDER BY message_id, first, emoji",
        &[&ids, &(reader as i64)],
    )?
    .iter()
    .map(|r| {
        Ok(ReactionCount {
            message_id: uint(r, 0)?,
            emoji: r.try_get(1)?,
            count: uint(r, 2)?,
            mine: r.try_get(3)?,
        })
    })
    .collect()
}

pub fn audience(c: &Session<'_>, conversation_id: u64, seq: u64) -> Result<Vec<u64>, StoreError> {
    c.query(
        "SELECT user_id FROM conversation_members
         WHERE conversation_id = $1 AND joined_seq < $2 ORDER BY user_id",
        &[
            &(conversation_id as i64),
            &i64::try_from(seq).unwrap_or(i64::MAX),
        ],
    )?
    .iter()
    .map(|r| uint(r, 0))
    .collect()
}

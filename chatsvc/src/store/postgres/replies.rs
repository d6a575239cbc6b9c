//! PostgreSQL: [`crate::store::replies`].

use super::messages::uint;
use super::Session;
use crate::store::replies::ReplyTarget;
use crate::store::StoreError;

/// A reply's quote from its target `r`, as JSON text (SQLite's `QUOTE`,
/// the same shape): who sent it, whether its content is gone, and at most
/// 100 characters of its text. A target past its `expires_at` is removed
/// as soon as the quote is read, as history and sync hide it before the
/// sweeper takes its content (by the database server's clock).
macro_rules! quote {
    () => {
        "json_build_object('sender_id', r.sender_id,
            'removed', r.recalled_at IS NOT NULL OR r.body = '{}'
                OR COALESCE(r.expires_at <= (extract(epoch FROM statement_timestamp()) * 1000)::bigint, false),
            'snippet', CASE WHEN r.recalled_at IS NULL
                AND NOT COALESCE(r.expires_at <= (extract(epoch FROM statement_timestamp()) * 1000)::bigint, false)
                THEN left(r.body::json->>'text', 100) END)::text"
    };
}
pub(super) use quote;

pub fn reply_target(
    c: &Session<'_>,
    id: u64,
    reader: u64,
) -> Result<Option<ReplyTarget>, StoreError> {
    c.query_opt(
        concat!(
            "SELECT r.conversation_id, COALESCE(r.seq > cm.joined_seq, false), ",
            quote!(),
            " FROM messages r
             LEFT JOIN conversation_members cm ON cm.conversation_id = r.conversation_id AND cm.user_id = $2
             WHERE r.id = $1"
        ),
        &[&(id as i64), &(reader as i64)],
    )?
    .map(|r| {
        Ok(ReplyTarget {
            conversation_id: uint(&r, 0)?,
            visible: r.try_get(1)?,
            quote: r.try_get(2)?,
        })
    })
    .transpose()
}

pub fn members_among(
    c: &Session<'_>,
    conversation_id: u64,
    users: &[u64],
) -> Result<usize, StoreError> {
    let users: Vec<i64> = users.iter().map(|&u| u as i64).collect();
    let r = c.query_one(
        "SELECT COUNT(*) FROM conversation_members
         WHERE conversation_id = $1 AND user_id = ANY($2::bigint[])",
        &[&(conversation_id as i64), &users],
    )?;
    Ok(uint(&r, 0)? as usize)
}

pub fn mention_all(c: &Session<'_>, group_id: u64) -> Result<Option<String>, StoreError> {
    c.query_opt(
        "SELECT mention_all FROM groups WHERE id = $1 AND dissolved_at IS NULL",
        &[&(group_id as i64)],
    )?
    .map(|r| Ok(r.try_get(0)?))
    .transpose()
}

pub fn set_mention_all(c: &Session<'_>, group_id: u64, policy: &str) -> Result<(), StoreError> {
    c.execute(
        "UPDATE groups SET mention_all = $2 WHERE id = $1",
        &[&(group_id as i64), &policy],
    )?;
    Ok(())
}

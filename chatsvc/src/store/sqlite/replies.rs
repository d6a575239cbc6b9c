//! SQLite: [`crate::store::replies`].

use rusqlite::{params, Connection, OptionalExtension};

use super::conn::{Conn, Hot};

use crate::store::replies::ReplyTarget;
use crate::store::StoreError;

/// A reply's quote from its target `r`, as JSON text: who sent it, whether
/// its content is gone (recalled, or emptied by expiry), and at most 100
/// characters of its text. The one definition of a snippet, read with the
/// reply (`messages::MESSAGE_COLUMNS`) and by [`reply_target`] (a macro,
/// so statements stay `&'static str`s). A target past its `expires_at` is
/// removed as soon as the quote is read, as history and sync hide it before
/// the sweeper takes its content (by the database's clock, which is this
/// process's).
macro_rules! quote {
    () => {
        "json_object('sender_id', r.sender_id,
            'removed', json(CASE WHEN r.recalled_at IS NOT NULL OR r.body = '{}'
                OR r.expires_at <= CAST(unixepoch('subsec') * 1000 AS INTEGER) THEN 'true' ELSE 'false' END),
            'snippet', CASE WHEN r.recalled_at IS NULL
                AND NOT coalesce(r.expires_at <= CAST(unixepoch('subsec') * 1000 AS INTEGER), 0)
                THEN substr(json_extract(r.body, '$.text'), 1, 100) END)"
    };
}
pub(super) use quote;

pub fn reply_target(c: &Conn<'_>, id: u64, reader: u64) -> Result<Option<ReplyTarget>, StoreError> {
    Ok(c.hot(Hot::ReplyTarget)?
        .query_row(params![id, reader], |r| {
            Ok(ReplyTarget {
                conversation_id: r.get(0)?,
                visible: r.get(1)?,
                quote: r.get(2)?,
            })
        })
        .optional()?)
}

/// A reply's target for [`reply_target`] (held prepared: every reply asks).
pub(super) const REPLY_TARGET: &str = concat!(
    "SELECT r.conversation_id, COALESCE(r.seq > cm.joined_seq, 0), ",
    quote!(),
    " FROM messages r
     LEFT JOIN conversation_members cm ON cm.conversation_id = r.conversation_id AND cm.user_id = ?2
     WHERE r.id = ?1"
);

pub fn members_among(
    c: &Connection,
    conversation_id: u64,
    users: &[u64],
) -> Result<usize, StoreError> {
    let list = format!(
        "[{}]",
        users
            .iter()
            .map(u64::to_string)
            .collect::<Vec<_>>()
            .join(",")
    );
    Ok(c.prepare_cached(
        "SELECT COUNT(*) FROM conversation_members
         WHERE conversation_id = ?1 AND user_id IN (SELECT DISTINCT value FROM json_each(?2))",
    )?
    .query_row(params![conversation_id, list], |r| r.get(0))?)
}

pub fn mention_all(c: &Connection, group_id: u64) -> Result<Option<String>, StoreError> {
    Ok(
        c.prepare_cached("SELECT mention_all FROM groups WHERE id = ?1 AND dissolved_at IS NULL")?
            .query_row([group_id], |r| r.get(0))
            .optional()?,
    )
}

pub fn set_mention_all(c: &Connection, group_id: u64, policy: &str) -> Result<(), StoreError> {
    c.prepare_cached("UPDATE groups SET mention_all = ?2 WHERE id = ?1")?
        .execute(params![group_id, policy])?;
    Ok(())
}

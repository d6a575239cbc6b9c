//! SQLite: conversations and who is in them (direct conversations and
//! their route checks, members, roles, departures), for
//! [`crate::store::messages`].

use rusqlite::{params, Connection, OptionalExtension};

use super::conn::{Conn, Hot};
use crate::store::messages::{DirectRoute, GroupRoute, Membership, SendRoute, SendTo};
use crate::store::StoreError;

/// The direct conversation of two users, created (with both as members) if needed.
pub fn direct_conversation(c: &Connection, a: u64, b: u64, now: i64) -> Result<u64, StoreError> {
    let (lo, hi) = (a.min(b), a.max(b));
    let existing: Option<u64> = c
        .prepare_cached(DIRECT_CONVERSATION)?
        .query_row(params![lo, hi], |r| r.get(0))
        .optional()?;
    if let Some(id) = existing {
        return Ok(id);
    }
    c.prepare_cached("INSERT INTO conversations (kind, user_lo, user_hi, created_at) VALUES ('direct', ?1, ?2, ?3)")?
        .execute(params![lo, hi, now])?;
    let id = c.last_insert_rowid() as u64;
    add_member(c, id, lo, "member", now)?;
    add_member(c, id, hi, "member", now)?;
    Ok(id)
}

const DIRECT_CONVERSATION: &str =
    "SELECT id FROM conversations WHERE kind = 'direct' AND user_lo = ?1 AND user_hi = ?2";

/// What the checks of each send need, one send after another (a statement
/// here costs no round trip): the writer's hot statements for a direct
/// message, the group and the membership for a group's.
pub fn routes(c: &Conn<'_>, sends: &[SendTo]) -> Result<Vec<SendRoute>, StoreError> {
    sends
        .iter()
        .map(|&to| match to {
            SendTo::User {
                sender,
                peer,
                friends,
            } => {
                let route = direct_route(c, sender, peer)?;
                let open = route.is_some_and(|r| !r.peer_blocked_sender && !r.sender_blocked_peer);
                let friends = if friends && open {
                    Some(super::social::are_friends_to_send(c, sender, peer)?)
                } else {
                    None
                };
                Ok(SendRoute::User { route, friends })
            }
            SendTo::Group { sender, group } => {
                let Some(group) = super::groups::by_id(c, group)? else {
                    return Ok(SendRoute::Group(None));
                };
                let conversation = group.conversation_id;
                let member = membership(c, sender, conversation)?.is_some();
                Ok(SendRoute::Group(Some(GroupRoute {
                    conversation,
                    member,
                })))
            }
        })
        .collect()
}

/// Whether a direct message from `sender` to `peer` may go, and where, in
/// one statement: `None` if `peer` does not exist.
fn direct_route(c: &Conn<'_>, sender: u64, peer: u64) -> Result<Option<DirectRoute>, StoreError> {
    let (lo, hi) = (sender.min(peer), sender.max(peer));
    Ok(c.hot(Hot::DirectRoute)?
        .query_row(params![sender, peer, lo, hi], |r| {
            Ok(DirectRoute {
                peer_blocked_sender: r.get(0)?,
                sender_blocked_peer: r.get(1)?,
                conversation: r.get(2)?,
            })
        })
        .optional()?)
}

pub(super) const DIRECT_ROUTE: &str =
    "SELECT EXISTS(SELECT 1 FROM blocks WHERE user_id = ?2 AND blocked_id = ?1),
            EXISTS(SELECT 1 FROM blocks WHERE user_id = ?1 AND blocked_id = ?2),
            (SELECT id FROM conversations WHERE kind = 'direct' AND user_lo = ?3 AND user_hi = ?4)
     FROM users WHERE id = ?2";

/// Adds a member who sees what comes after the conversation's current seq.
pub fn add_member(
    c: &Connection,
    conversation_id: u64,
    user_id: u64,
    role: &str,
    now: i64,
) -> Result<(), StoreError> {
    c.prepare_cached(
        "INSERT OR IGNORE INTO conversation_members (user_id, conversation_id, joined_at, role, joined_seq, read_seq)
         SELECT ?1, c.id, ?3, ?4, l.seq, l.seq
         FROM conversations c, (SELECT COALESCE(MAX(seq), 0) AS seq FROM messages WHERE conversation_id = ?2) l
         WHERE c.id = ?2",
    )?
    .execute(params![user_id, conversation_id, now, role])?;
    Ok(())
}

/// Removes a member, recording their departure (see [`record_departures`]).
pub fn remove_member(
    c: &Connection,
    conversation_id: u64,
    user_id: u64,
) -> Result<bool, StoreError> {
    record_departures(c, conversation_id, Some(user_id))?;
    Ok(c.prepare_cached(
        "DELETE FROM conversation_members WHERE conversation_id = ?1 AND user_id = ?2",
    )?
    .execute(params![conversation_id, user_id])?
        > 0)
}

/// Records that `user` (every member, if `None`) is about to stop being a
/// member: they keep the inbox rows of what they saw, and [`sync`] serves
/// them those messages as they were now, whatever edits come later
/// ([`edit`] keeps the body it replaces while a departure needs it).
pub(super) fn record_departures(
    c: &Connection,
    conversation_id: u64,
    user: Option<u64>,
) -> Result<(), StoreError> {
    c.prepare_cached(
        "INSERT OR IGNORE INTO departures (user_id, conversation_id, joined_seq, left_seq, versions_seen)
         SELECT cm.user_id, cm.conversation_id, cm.joined_seq,
                (SELECT COALESCE(MAX(seq), 0) FROM messages WHERE conversation_id = ?1),
                COALESCE((SELECT seq FROM sqlite_sequence WHERE name = 'message_versions'), 0)
         FROM conversation_members cm
         WHERE cm.conversation_id = ?1 AND (?2 IS NULL OR cm.user_id = ?2)",
    )?
    .execute(params![conversation_id, user])?;
    Ok(())
}

pub fn set_role(
    c: &Connection,
    conversation_id: u64,
    user_id: u64,
    role: &str,
) -> Result<(), StoreError> {
    c.prepare_cached(
        "UPDATE conversation_members SET role = ?3 WHERE conversation_id = ?1 AND user_id = ?2",
    )?
    .execute(params![conversation_id, user_id, role])?;
    Ok(())
}

pub fn membership(
    c: &Connection,
    user_id: u64,
    conversation_id: u64,
) -> Result<Option<Membership>, StoreError> {
    Ok(c
        .prepare_cached(
            "SELECT role, joined_seq, read_seq FROM conversation_members WHERE user_id = ?1 AND conversation_id = ?2",
        )?
        .query_row(params![user_id, conversation_id], |r| {
            Ok(Membership {
                role: r.get(0)?,
                joined_seq: r.get(1)?,
                read_seq: r.get(2)?,
            })
        })
        .optional()?)
}

/// How many members a conversation has.
pub fn member_count(c: &Connection, conversation_id: u64) -> Result<usize, StoreError> {
    Ok(
        c.prepare_cached("SELECT COUNT(*) FROM conversation_members WHERE conversation_id = ?1")?
            .query_row([conversation_id], |r| r.get::<_, i64>(0))? as usize,
    )
}

/// Member ids of a conversation, ascending.
pub fn members(c: &Connection, conversation_id: u64) -> Result<Vec<u64>, StoreError> {
    let mut stmt = c.prepare_cached(
        "SELECT user_id FROM conversation_members WHERE conversation_id = ?1 ORDER BY user_id",
    )?;
    let ids = stmt
        .query_map([conversation_id], |r| r.get(0))?
        .collect::<Result<Vec<u64>, _>>()?;
    Ok(ids)
}

/// Members with their roles, owner first, then admins, then by id.
pub fn members_with_roles(
    c: &Connection,
    conversation_id: u64,
) -> Result<Vec<(u64, String)>, StoreError> {
    let mut stmt = c.prepare_cached(
        "SELECT user_id, role FROM conversation_members WHERE conversation_id = ?1
         ORDER BY CASE role WHEN 'owner' THEN 0 WHEN 'admin' THEN 1 ELSE 2 END, user_id",
    )?;
    let rows = stmt
        .query_map([conversation_id], |r| Ok((r.get(0)?, r.get(1)?)))?
        .collect::<Result<Vec<_>, _>>()?;
    Ok(rows)
}

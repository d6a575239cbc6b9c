//! SQLite: [`crate::store::groups`].

use rusqlite::{params, Connection, OptionalExtension};

use super::messages;
use crate::store::groups::{GroupRow, InvitationRow};
use crate::store::StoreError;

/// Creates a group and its conversation; the owner is its first member.
pub fn create(c: &Connection, name: &str, owner: u64, now: i64) -> Result<GroupRow, StoreError> {
    c.prepare_cached("INSERT INTO conversations (kind, created_at) VALUES ('group', ?1)")?
        .execute([now])?;
    let conversation_id = c.last_insert_rowid() as u64;
    c.prepare_cached(
        "INSERT INTO groups (conversation_id, name, owner_id, created_at) VALUES (?1, ?2, ?3, ?4)",
    )?
    .execute(params![conversation_id, name, owner, now])?;
    let id = c.last_insert_rowid() as u64;
    c.prepare_cached("UPDATE conversations SET group_id = ?2 WHERE id = ?1")?
        .execute(params![conversation_id, id])?;
    messages::add_member(c, conversation_id, owner, "owner", now)?;
    Ok(GroupRow {
        id,
        conversation_id,
        name: name.to_owned(),
        owner_id: owner,
        created_at: now,
    })
}

/// A live (not dissolved) group.
pub fn by_id(c: &Connection, id: u64) -> Result<Option<GroupRow>, StoreError> {
    Ok(c
        .prepare_cached(
            "SELECT id, conversation_id, name, owner_id, created_at FROM groups WHERE id = ?1 AND dissolved_at IS NULL",
        )?
        .query_row([id], |r| {
            Ok(GroupRow {
                id: r.get(0)?,
                conversation_id: r.get(1)?,
                name: r.get(2)?,
                owner_id: r.get(3)?,
                created_at: r.get(4)?,
            })
        })
        .optional()?)
}

/// Live groups the user is a member of.
pub fn of_user(c: &Connection, user: u64) -> Result<Vec<GroupRow>, StoreError> {
    let mut stmt = c.prepare_cached(
        "SELECT g.id, g.conversation_id, g.name, g.owner_id, g.created_at
         FROM conversation_members cm JOIN groups g ON g.conversation_id = cm.conversation_id
         WHERE cm.user_id = ?1 AND g.dissolved_at IS NULL ORDER BY g.id",
    )?;
    let rows = stmt
        .query_map([user], |r| {
            Ok(GroupRow {
                id: r.get(0)?,
                conversation_id: r.get(1)?,
                name: r.get(2)?,
                owner_id: r.get(3)?,
                created_at: r.get(4)?,
            })
        })?
        .collect::<Result<Vec<_>, _>>()?;
    Ok(rows)
}

pub fn rename(c: &Connection, id: u64, name: &str) -> Result<(), StoreError> {
    c.prepare_cached("UPDATE groups SET name = ?2 WHERE id = ?1")?
        .execute(params![id, name])?;
    Ok(())
}

pub fn set_owner(c: &Connection, id: u64, owner: u64) -> Result<(), StoreError> {
    c.prepare_cached("UPDATE groups SET owner_id = ?2 WHERE id = ?1")?
        .execute(params![id, owner])?;
    Ok(())
}

/// Marks the group dissolved and removes every member (each a departure,
/// see [`messages::record_departures`]).
pub fn dissolve(c: &Connection, group: &GroupRow, now: i64) -> Result<(), StoreError> {
    c.prepare_cached("UPDATE groups SET dissolved_at = ?2 WHERE id = ?1")?
        .execute(params![group.id, now])?;
    messages::record_departures(c, group.conversation_id, None)?;
    c.prepare_cached("DELETE FROM conversation_members WHERE conversation_id = ?1")?
        .execute([group.conversation_id])?;
    c.prepare_cached(
        "UPDATE group_invitations SET status = 'cancelled', decided_at = ?2
         WHERE group_id = ?1 AND status = 'pending'",
    )?
    .execute(params![group.id, now])?;
    Ok(())
}

pub fn member_count(c: &Connection, group: &GroupRow) -> Result<usize, StoreError> {
    super::messages::member_count(c, group.conversation_id)
}

const INVITATION: &str =
    "SELECT i.id, i.group_id, g.name, i.inviter_id, i.invitee_id, i.status, i.created_at
    FROM group_invitations i JOIN groups g ON g.id = i.group_id";

fn invitation(r: &rusqlite::Row<'_>) -> rusqlite::Result<InvitationRow> {
    Ok(InvitationRow {
        id: r.get(0)?,
        group_id: r.get(1)?,
        group_name: r.get(2)?,
        inviter_id: r.get(3)?,
        invitee_id: r.get(4)?,
        status: r.get(5)?,
        created_at: r.get(6)?,
    })
}

/// Invites `invitee`; an invitation already pending is returned as is.
pub fn invite(
    c: &Connection,
    group_id: u64,
    inviter: u64,
    invitee: u64,
    now: i64,
) -> Result<(InvitationRow, bool), StoreError> {
    let n = c
        .prepare_cached(
            "INSERT INTO group_invitations (group_id, inviter_id, invitee_id, status, created_at)
             VALUES (?1, ?2, ?3, 'pending', ?4) ON CONFLICT DO NOTHING",
        )?
        .execute(rusqlite::params![group_id, inviter, invitee, now])?;
    let sql = format!(
        "{INVITATION} WHERE i.group_id = ?1 AND i.invitee_id = ?2 AND i.status = 'pending'"
    );
    let row = c
        .prepare_cached(&sql)?
        .query_row(rusqlite::params![group_id, invitee], invitation)?;
    Ok((row, n > 0))
}

pub fn invitation_by_id(c: &Connection, id: u64) -> Result<Option<InvitationRow>, StoreError> {
    let sql = format!("{INVITATION} WHERE i.id = ?1");
    Ok(c.prepare_cached(&sql)?
        .query_row([id], invitation)
        .optional()?)
}

/// Closes a pending invitation with `status`; returns the updated row.
pub fn decide_invitation(
    c: &Connection,
    id: u64,
    status: &str,
    now: i64,
) -> Result<InvitationRow, StoreError> {
    c.prepare_cached(
        "UPDATE group_invitations SET status = ?2, decided_at = ?3 WHERE id = ?1 AND status = 'pending'",
    )?
    .execute(rusqlite::params![id, status, now])?;
    invitation_by_id(c, id)?.ok_or(StoreError::NotFound("invitation"))
}

/// Pending invitations to the user, newest first (at most 500).
pub fn pending_invitations(c: &Connection, invitee: u64) -> Result<Vec<InvitationRow>, StoreError> {
    let sql = format!(
        "{INVITATION} WHERE i.invitee_id = ?1 AND i.status = 'pending' ORDER BY i.id DESC LIMIT 500"
    );
    let mut stmt = c.prepare_cached(&sql)?;
    let rows = stmt
        .query_map([invitee], invitation)?
        .collect::<Result<Vec<_>, _>>()?;
    Ok(rows)
}

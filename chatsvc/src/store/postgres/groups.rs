//! PostgreSQL: [`crate::store::groups`].

use tokio_postgres::Row;

use super::{messages, Session};
use crate::store::groups::{GroupRow, InvitationRow};
use crate::store::StoreError;

const GROUP_COLUMNS: &str = "g.id, g.conversation_id, g.name, g.owner_id, g.created_at";

fn group(r: &Row) -> Result<GroupRow, StoreError> {
    Ok(GroupRow {
        id: r.try_get::<_, i64>(0)? as u64,
        conversation_id: r.try_get::<_, i64>(1)? as u64,
        name: r.try_get(2)?,
        owner_id: r.try_get::<_, i64>(3)? as u64,
        created_at: r.try_get(4)?,
    })
}

pub fn create(c: &Session<'_>, name: &str, owner: u64, now: i64) -> Result<GroupRow, StoreError> {
    // The conversation and the group in one round trip (the group's insert
    // reads the conversation's id from RETURNING). Pointing the
    // conversation at the group takes a statement of its own: a statement
    // does not see rows its own WITH inserted. The casts type parameters
    // that only a SELECT list would otherwise leave untyped.
    let row = c.query_one(
        "WITH conversation AS (
             INSERT INTO conversations (kind, created_at) VALUES ('group', $1) RETURNING id
         )
         INSERT INTO groups (conversation_id, name, owner_id, created_at)
         SELECT id, $2::text, $3::bigint, $1::bigint FROM conversation
         RETURNING id, conversation_id",
        &[&now, &name, &(owner as i64)],
    )?;
    let id = row.try_get::<_, i64>(0)?;
    let conversation_id = row.try_get::<_, i64>(1)?;
    c.execute(
        "UPDATE conversations SET group_id = $2 WHERE id = $1",
        &[&conversation_id, &id],
    )?;
    let conversation_id = conversation_id as u64;
    messages::add_member(c, conversation_id, owner, "owner", now)?;
    Ok(GroupRow {
        id: id as u64,
        conversation_id,
        name: name.to_owned(),
        owner_id: owner,
        created_at: now,
    })
}

pub fn by_id(c: &Session<'_>, id: u64) -> Result<Option<GroupRow>, StoreError> {
    let sql =
        format!("SELECT {GROUP_COLUMNS} FROM groups g WHERE g.id = $1 AND g.dissolved_at IS NULL");
    c.query_opt(&sql, &[&(id as i64)])?
        .as_ref()
        .map(group)
        .transpose()
}

pub fn of_user(c: &Session<'_>, user: u64) -> Result<Vec<GroupRow>, StoreError> {
    let sql = format!(
        "SELECT {GROUP_COLUMNS}
         FROM conversation_members cm JOIN groups g ON g.conversation_id = cm.conversation_id
         WHERE cm.user_id = $1 AND g.dissolved_at IS NULL ORDER BY g.id"
    );
    c.query(&sql, &[&(user as i64)])?
        .iter()
        .map(group)
        .collect()
}

pub fn rename(c: &Session<'_>, id: u64, name: &str) -> Result<(), StoreError> {
    c.execute(
        "UPDATE groups SET name = $2 WHERE id = $1",
        &[&(id as i64), &name],
    )?;
    Ok(())
}

pub fn set_owner(c: &Session<'_>, id: u64, owner: u64) -> Result<(), StoreError> {
    c.execute(
        "UPDATE groups SET owner_id = $2 WHERE id = $1",
        &[&(id as i64), &(owner as i64)],
    )?;
    Ok(())
}

pub fn dissolve(c: &Session<'_>, group: &GroupRow, now: i64) -> Result<(), StoreError> {
    // The departures read the members, so they go first; the rest is one
    // round trip (each data-modifying WITH runs, and the three statements
    // touch different tables).
    messages::record_departures(c, group.conversation_id, None)?;
    c.execute(
        "WITH dissolved AS (
             UPDATE groups SET dissolved_at = $2 WHERE id = $1
         ), cancelled AS (
             UPDATE group_invitations SET status = 'cancelled', decided_at = $2
             WHERE group_id = $1 AND status = 'pending'
         )
         DELETE FROM conversation_members WHERE conversation_id = $3",
        &[&(group.id as i64), &now, &(group.conversation_id as i64)],
    )?;
    Ok(())
}

pub fn member_count(c: &Session<'_>, group: &GroupRow) -> Result<usize, StoreError> {
    messages::member_count(c, group.conversation_id)
}

const INVITATION_COLUMNS: &str =
    "i.id, i.group_id, g.name, i.inviter_id, i.invitee_id, i.status, i.created_at";

fn invitation(r: &Row) -> Result<InvitationRow, StoreError> {
    Ok(InvitationRow {
        id: r.try_get::<_, i64>(0)? as u64,
        group_id: r.try_get::<_, i64>(1)? as u64,
        group_name: r.try_get(2)?,
        inviter_id: r.try_get::<_, i64>(3)? as u64,
        invitee_id: r.try_get::<_, i64>(4)? as u64,
        status: r.try_get(5)?,
        created_at: r.try_get(6)?,
    })
}

pub fn invite(
    c: &Session<'_>,
    group_id: u64,
    inviter: u64,
    invitee: u64,
    now: i64,
) -> Result<(InvitationRow, bool), StoreError> {
    let (group_id, invitee) = (group_id as i64, invitee as i64);
    // A pending invitation already (the partial unique index) inserts
    // nothing, and the new row comes back with its group's name in the
    // same round trip.
    let sql = format!(
        "WITH i AS (
             INSERT INTO group_invitations (group_id, inviter_id, invitee_id, status, created_at)
             VALUES ($1, $2, $3, 'pending', $4) ON CONFLICT DO NOTHING
             RETURNING id, group_id, inviter_id, invitee_id, status, created_at
         )
         SELECT {INVITATION_COLUMNS} FROM i JOIN groups g ON g.id = i.group_id"
    );
    if let Some(r) = c.query_opt(&sql, &[&group_id, &(inviter as i64), &invitee, &now])? {
        return Ok((invitation(&r)?, true));
    }
    let sql = format!(
        "SELECT {INVITATION_COLUMNS} FROM group_invitations i JOIN groups g ON g.id = i.group_id
         WHERE i.group_id = $1 AND i.invitee_id = $2 AND i.status = 'pending'"
    );
    Ok((
        invitation(&c.query_one(&sql, &[&group_id, &invitee])?)?,
        false,
    ))
}

pub fn invitation_by_id(c: &Session<'_>, id: u64) -> Result<Option<InvitationRow>, StoreError> {
    let sql = format!(
        "SELECT {INVITATION_COLUMNS} FROM group_invitations i JOIN groups g ON g.id = i.group_id
         WHERE i.id = $1"
    );
    c.query_opt(&sql, &[&(id as i64)])?
        .as_ref()
        .map(invitation)
        .transpose()
}

pub fn decide_invitation(
    c: &Session<'_>,
    id: u64,
    status: &str,
    now: i64,
) -> Result<InvitationRow, StoreError> {
    let sql = format!(
        "UPDATE group_invitations i SET status = $2, decided_at = $3 FROM groups g
         WHERE g.id = i.group_id AND i.id = $1 AND i.status = 'pending'
         RETURNING {INVITATION_COLUMNS}"
    );
    match c.query_opt(&sql, &[&(id as i64), &status, &now])? {
        Some(r) => invitation(&r),
        // Not pending (or no such invitation): the row as it is.
        None => invitation_by_id(c, id)?.ok_or(StoreError::NotFound("invitation")),
    }
}

pub fn pending_invitations(
    c: &Session<'_>,
    invitee: u64,
) -> Result<Vec<InvitationRow>, StoreError> {
    let sql = format!(
        "SELECT {INVITATION_COLUMNS} FROM group_invitations i JOIN groups g ON g.id = i.group_id
         WHERE i.invitee_id = $1 AND i.status = 'pending' ORDER BY i.id DESC LIMIT 500"
    );
    c.query(&sql, &[&(invitee as i64)])?
        .iter()
        .map(invitation)
        .collect()
}

//! Groups: a named group conversation with an owner.

use rusqlite::{params, Connection, OptionalExtension};

use super::{messages, StoreError};

#[derive(Debug, Clone, PartialEq, Eq)]
pub struct GroupRow {
    pub id: u64,
    pub conversation_id: u64,
    pub name: String,
    pub owner_id: u64,
    pub created_at: i64,
}

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
    Ok(())
}

pub fn member_count(c: &Connection, group: &GroupRow) -> Result<usize, StoreError> {
    Ok(
        c.prepare_cached("SELECT COUNT(*) FROM conversation_members WHERE conversation_id = ?1")?
            .query_row([group.conversation_id], |r| r.get::<_, i64>(0))? as usize,
    )
}

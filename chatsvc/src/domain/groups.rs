//! Groups: create, membership and roles, rename, transfer, dissolve.
//!
//! Every change is a `system` message in the group's timeline, in the same
//! seq order as user messages, sent to every member at that moment (so a
//! removed member's last event is its removal, and a new member's first is
//! its addition).

use serde_json::json;

use super::messages::post;
use super::model::Group;
use super::outbox::Outbox;
use super::tokens::Caller;
use super::{now_ms, Chat, DomainError};
use crate::store::groups::{self as store, GroupRow};
use crate::store::messages;
use crate::store::{social, users, Conn};

/// Roles, most powerful first.
const OWNER: &str = "owner";
const ADMIN: &str = "admin";
const MEMBER: &str = "member";

fn check_name(name: &str) -> Result<String, DomainError> {
    super::names::check("group name", name, 64)
}

/// The live group and the actor's role in it; non-members get "not found".
fn load(
    c: &rusqlite::Connection,
    group_id: u64,
    actor: u64,
) -> Result<(GroupRow, String), DomainError> {
    let group = store::by_id(c, group_id)?.ok_or(DomainError::NotFound("group"))?;
    let m = messages::membership(c, actor, group.conversation_id)?
        .ok_or(DomainError::NotFound("group"))?;
    Ok((group, m.role))
}

fn require(role: &str, allowed: &[&str], what: &str) -> Result<(), DomainError> {
    if allowed.contains(&role) {
        Ok(())
    } else {
        Err(DomainError::Forbidden(format!(
            "only the group's {} may {what}",
            allowed.join(" or ")
        )))
    }
}

/// Posts a system event to the group's current members.
fn system(
    c: &Conn<'_>,
    out: &mut Outbox,
    group: &GroupRow,
    actor: u64,
    event: serde_json::Value,
    now: i64,
) -> Result<(), DomainError> {
    let body = json!({"system": event}).to_string();
    let client_msg_id = format!("system-{:016x}", rand::random::<u64>());
    let new = messages::NewRow {
        conversation_id: group.conversation_id,
        sender: actor,
        client_msg_id: &client_msg_id,
        body: &body,
        text: None,
        kind: "system",
        now,
    };
    post(c, out, &new, &[])?;
    Ok(())
}

/// Checks that each user exists and has not blocked the actor (the same
/// answer for both, so a block is not revealed).
fn check_invitees(c: &rusqlite::Connection, actor: u64, ids: &[u64]) -> Result<(), DomainError> {
    for &id in ids {
        if !users::exists(c, id)? || social::has_blocked(c, id, actor)? {
            return Err(DomainError::NotFound("user"));
        }
    }
    Ok(())
}

impl Chat {
    /// Runs a group change in one transaction and pushes its events after commit.
    async fn group_write<T, F>(&self, f: F) -> Result<T, DomainError>
    where
        T: Send + 'static,
        F: FnOnce(&Conn<'_>, &mut Outbox, i64) -> Result<T, DomainError> + Send + 'static,
    {
        let downlink = self.downlink.clone();
        let presence = self.downlink.clone();
        let now = now_ms();
        let (v, _) = self
            .store
            .write_then(
                move |c| {
                    let mut out = Outbox::with_presence(presence);
                    let v = f(c, &mut out, now)?;
                    Ok::<_, DomainError>((v, out))
                },
                move |(_, out): &(T, Outbox)| out.push(&*downlink),
            )
            .await?;
        Ok(v)
    }

    async fn group_view(&self, caller: Caller, group_id: u64) -> Result<Group, DomainError> {
        let me = caller.user_id;
        self.store
            .read(move |c| {
                let (group, _) = load(c, group_id, me)?;
                let members = messages::members_with_roles(c, group.conversation_id)?;
                Ok(Group::from_row(group, members))
            })
            .await
    }

    /// Creates a group owned by the caller with the given initial members.
    pub async fn create_group(
        &self,
        caller: Caller,
        name: &str,
        members: Vec<u64>,
    ) -> Result<Group, DomainError> {
        let name = check_name(name)?;
        let owner = caller.user_id;
        let mut members: Vec<u64> = members.into_iter().filter(|&m| m != owner).collect();
        members.sort_unstable();
        members.dedup();
        if members.len() + 1 > self.limits.max_group_size {
            return Err(DomainError::Invalid(format!(
                "a group has at most {} members",
                self.limits.max_group_size
            )));
        }
        let id = self
            .group_write(move |c, out, now| {
                check_invitees(c, owner, &members)?;
                let group = store::create(c, &name, owner, now)?;
                for &m in &members {
                    messages::add_member(c, group.conversation_id, m, MEMBER, now)?;
                }
                let mut all = members.clone();
                all.insert(0, owner);
                system(
                    c,
                    out,
                    &group,
                    owner,
                    json!({"event": "created", "actor": owner, "name": name, "users": all}),
                    now,
                )?;
                Ok(group.id)
            })
            .await?;
        self.group_view(caller, id).await
    }

    pub async fn group(&self, caller: Caller, group_id: u64) -> Result<Group, DomainError> {
        self.group_view(caller, group_id).await
    }

    pub async fn my_groups(&self, caller: Caller) -> Result<Vec<Group>, DomainError> {
        let me = caller.user_id;
        self.store
            .read(move |c| {
                let mut out = Vec::new();
                for g in store::of_user(c, me)? {
                    let members = messages::members_with_roles(c, g.conversation_id)?;
                    out.push(Group::from_row(g, members));
                }
                Ok::<_, DomainError>(out)
            })
            .await
    }

    /// Adds members (owner or admin). New members see what comes after.
    pub async fn add_group_members(
        &self,
        caller: Caller,
        group_id: u64,
        ids: Vec<u64>,
    ) -> Result<Group, DomainError> {
        let actor = caller.user_id;
        let max = self.limits.max_group_size;
        self.group_write(move |c, out, now| {
            let (group, role) = load(c, group_id, actor)?;
            require(&role, &[OWNER, ADMIN], "add members")?;
            let mut new = Vec::new();
            for id in ids {
                if messages::membership(c, id, group.conversation_id)?.is_none()
                    && !new.contains(&id)
                {
                    new.push(id);
                }
            }
            if new.is_empty() {
                return Ok(());
            }
            check_invitees(c, actor, &new)?;
            if store::member_count(c, &group)? + new.len() > max {
                return Err(DomainError::Conflict(format!(
                    "a group has at most {max} members"
                )));
            }
            for &id in &new {
                messages::add_member(c, group.conversation_id, id, MEMBER, now)?;
            }
            system(
                c,
                out,
                &group,
                actor,
                json!({"event": "member_added", "actor": actor, "users": new}),
                now,
            )
        })
        .await?;
        self.group_view(caller, group_id).await
    }

    /// Removes a member (owner: anyone but themself; admin: plain members).
    /// The removed member gets the removal event and nothing after it.
    pub async fn remove_group_member(
        &self,
        caller: Caller,
        group_id: u64,
        user: u64,
    ) -> Result<(), DomainError> {
        let actor = caller.user_id;
        if user == actor {
            return self.leave_group(caller, group_id).await;
        }
        self.group_write(move |c, out, now| {
            let (group, role) = load(c, group_id, actor)?;
            let target = messages::membership(c, user, group.conversation_id)?
                .ok_or(DomainError::NotFound("member"))?;
            match (role.as_str(), target.role.as_str()) {
                (OWNER, _) | (ADMIN, MEMBER) => {}
                _ => {
                    return Err(DomainError::Forbidden(
                        "you may not remove this member".into(),
                    ))
                }
            }
            system(
                c,
                out,
                &group,
                actor,
                json!({"event": "member_removed", "actor": actor, "users": [user]}),
                now,
            )?;
            messages::remove_member(c, group.conversation_id, user)?;
            Ok(())
        })
        .await
    }

    /// Leaves a group. The owner must hand the group over first, unless they
    /// are its last member, in which case it is dissolved.
    pub async fn leave_group(&self, caller: Caller, group_id: u64) -> Result<(), DomainError> {
        let actor = caller.user_id;
        self.group_write(move |c, out, now| {
            let (group, role) = load(c, group_id, actor)?;
            let count = store::member_count(c, &group)?;
            if role == OWNER && count > 1 {
                return Err(DomainError::Conflict(
                    "the owner must transfer ownership before leaving".into(),
                ));
            }
            if count == 1 {
                store::dissolve(c, &group, now)?;
                return Ok(());
            }
            system(
                c,
                out,
                &group,
                actor,
                json!({"event": "member_left", "actor": actor, "users": [actor]}),
                now,
            )?;
            messages::remove_member(c, group.conversation_id, actor)?;
            Ok(())
        })
        .await
    }

    pub async fn rename_group(
        &self,
        caller: Caller,
        group_id: u64,
        name: &str,
    ) -> Result<Group, DomainError> {
        let name = check_name(name)?;
        let actor = caller.user_id;
        self.group_write(move |c, out, now| {
            let (group, role) = load(c, group_id, actor)?;
            require(&role, &[OWNER, ADMIN], "rename the group")?;
            if group.name == name {
                return Ok(());
            }
            store::rename(c, group.id, &name)?;
            system(
                c,
                out,
                &group,
                actor,
                json!({"event": "renamed", "actor": actor, "name": name}),
                now,
            )
        })
        .await?;
        self.group_view(caller, group_id).await
    }

    /// Hands the group to another member; the old owner becomes an admin.
    pub async fn transfer_group(
        &self,
        caller: Caller,
        group_id: u64,
        to: u64,
    ) -> Result<Group, DomainError> {
        let actor = caller.user_id;
        self.group_write(move |c, out, now| {
            let (group, role) = load(c, group_id, actor)?;
            require(&role, &[OWNER], "transfer ownership")?;
            if to == actor {
                return Ok(());
            }
            messages::membership(c, to, group.conversation_id)?
                .ok_or(DomainError::NotFound("member"))?;
            messages::set_role(c, group.conversation_id, to, OWNER)?;
            messages::set_role(c, group.conversation_id, actor, ADMIN)?;
            store::set_owner(c, group.id, to)?;
            system(
                c,
                out,
                &group,
                actor,
                json!({"event": "owner_changed", "actor": actor, "users": [to]}),
                now,
            )
        })
        .await?;
        self.group_view(caller, group_id).await
    }

    /// Makes a member an admin or back (owner only).
    pub async fn set_group_role(
        &self,
        caller: Caller,
        group_id: u64,
        user: u64,
        new_role: &str,
    ) -> Result<Group, DomainError> {
        if new_role != ADMIN && new_role != MEMBER {
            return Err(DomainError::Invalid(
                "role must be admin or member (use transfer for owner)".into(),
            ));
        }
        let new_role = new_role.to_owned();
        let actor = caller.user_id;
        self.group_write(move |c, out, now| {
            let (group, role) = load(c, group_id, actor)?;
            require(&role, &[OWNER], "change roles")?;
            let target = messages::membership(c, user, group.conversation_id)?
                .ok_or(DomainError::NotFound("member"))?;
            if target.role == OWNER {
                return Err(DomainError::Conflict(
                    "use transfer to change the owner".into(),
                ));
            }
            if target.role == new_role {
                return Ok(());
            }
            messages::set_role(c, group.conversation_id, user, &new_role)?;
            system(
                c,
                out,
                &group,
                actor,
                json!({"event": "role_changed", "actor": actor, "users": [user], "role": new_role}),
                now,
            )
        })
        .await?;
        self.group_view(caller, group_id).await
    }

    /// Ends the group (owner only): every member gets the event, then nobody
    /// is a member any more.
    pub async fn dissolve_group(&self, caller: Caller, group_id: u64) -> Result<(), DomainError> {
        let actor = caller.user_id;
        self.group_write(move |c, out, now| {
            let (group, role) = load(c, group_id, actor)?;
            require(&role, &[OWNER], "dissolve the group")?;
            system(
                c,
                out,
                &group,
                actor,
                json!({"event": "dissolved", "actor": actor}),
                now,
            )?;
            store::dissolve(c, &group, now)?;
            Ok(())
        })
        .await
    }
}

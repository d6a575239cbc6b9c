//! Groups: create, membership and roles, rename, transfer, dissolve.
//!
//! Every change is a `system` message in the group's timeline, in the same
//! seq order as user messages, sent to every member at that moment (so a
//! removed member's last event is its removal, and a new member's first is
//! its addition).

use serde_json::json;

use super::events::Stored;
use super::messages::post;
use super::model::{Group, GroupAddPolicy, GroupInvitation};
use super::outbox::Outbox;
use super::tokens::Caller;
use super::{now_ms, Chat, DmPolicy, DomainError};
use crate::store::groups::{self as store, GroupRow};
use crate::store::messages;
use crate::store::{social, users, Read, Tx};

/// Roles, most powerful first.
pub(super) const OWNER: &str = "owner";
pub(super) const ADMIN: &str = "admin";
const MEMBER: &str = "member";

fn check_name(name: &str) -> Result<String, DomainError> {
    super::names::check("group name", name, 64)
}

/// The live group and the actor's role in it; non-members get "not found".
pub(super) fn load(
    c: &impl Read,
    group_id: u64,
    actor: u64,
) -> Result<(GroupRow, String), DomainError> {
    let group = store::by_id(c, group_id)?.ok_or(DomainError::NotFound("group"))?;
    let m = messages::membership(c, actor, group.conversation_id)?
        .ok_or(DomainError::NotFound("group"))?;
    Ok((group, m.role))
}

pub(super) fn require(role: &str, allowed: &[&str], what: &str) -> Result<(), DomainError> {
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
pub(super) fn system(
    c: &Tx<'_>,
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
        extras: None,
    };
    post(c, out, &new)?;
    Ok(())
}

/// Checks that each user exists and has not blocked the actor (the same
/// answer for both, so a block is not revealed).
fn check_invitees(c: &impl Read, actor: u64, ids: &[u64]) -> Result<(), DomainError> {
    for &id in ids {
        if !users::exists(c, id)? || social::has_blocked(c, id, actor)? {
            return Err(DomainError::NotFound("user"));
        }
    }
    Ok(())
}

/// Splits new members into those the actor may add directly and those
/// who are invited instead, by each one's [`GroupAddPolicy`].
fn admit(
    c: &impl Read,
    actor: u64,
    ids: &[u64],
    default: GroupAddPolicy,
) -> Result<(Vec<u64>, Vec<u64>), DomainError> {
    let (mut direct, mut invited) = (Vec::new(), Vec::new());
    for &id in ids {
        let policy = users::group_add_policy(c, id)?.map_or(default, |p| GroupAddPolicy::parse(&p));
        let allowed = match policy {
            GroupAddPolicy::Anyone => true,
            GroupAddPolicy::Friends => social::are_friends(c, id, actor)?,
            GroupAddPolicy::Nobody => false,
        };
        if allowed {
            direct.push(id);
        } else {
            invited.push(id);
        }
    }
    Ok((direct, invited))
}

/// Invites each user to the group; the invitee and the inviter get
/// `group.invitation`. Nothing else of the group reaches the invitee until
/// they accept.
fn invite(
    c: &Tx<'_>,
    out: &mut Outbox,
    group: &GroupRow,
    actor: u64,
    ids: &[u64],
    now: i64,
) -> Result<(), DomainError> {
    for &id in ids {
        let (row, new) = store::invite(c, group.id, actor, id, now)?;
        if new {
            let invitation = GroupInvitation::from(row);
            let event = Stored::GroupInvitation {
                invitation: &invitation,
            };
            out.emit(c, id, &event)?;
            out.emit(c, actor, &event)?;
        }
    }
    Ok(())
}

impl Chat {
    /// Who may add a user to groups when they haven't chosen: friends when
    /// direct messages are for friends (a group must not bypass that),
    /// else anyone.
    pub(crate) fn default_group_add_policy(&self) -> GroupAddPolicy {
        match self.limits.dm_policy {
            DmPolicy::Friends => GroupAddPolicy::Friends,
            DmPolicy::Open => GroupAddPolicy::Anyone,
        }
    }

    /// Runs a group change in one transaction and pushes its events after commit.
    pub(super) async fn group_write<T, F>(&self, f: F) -> Result<T, DomainError>
    where
        T: Send + 'static,
        F: FnOnce(&Tx<'_>, &mut Outbox, i64) -> Result<T, DomainError> + Send + 'static,
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

    /// Charges a change to a group: every member gets its system event
    /// (and `extra` users are joining). An unknown group costs 1 and is
    /// then answered 404 by the change itself.
    pub(super) async fn charge_group(
        &self,
        actor: u64,
        group_id: u64,
        extra: usize,
    ) -> Result<(), DomainError> {
        let members = self
            .store
            .read(move |c| match store::by_id(c, group_id)? {
                Some(g) => store::member_count(c, &g),
                None => Ok(0),
            })
            .await?;
        self.charge(actor, members + extra)
    }

    pub(super) async fn group_view(
        &self,
        caller: Caller,
        group_id: u64,
    ) -> Result<Group, DomainError> {
        let me = caller.user_id;
        self.store
            .read(move |c| {
                let (group, _) = load(c, group_id, me)?;
                let members = messages::members_with_roles(c, group.conversation_id)?;
                let who_can_pin = super::pins::policy_of(c, group.conversation_id)?;
                let mention_all = super::replies::MentionAll::read(c, group.id)?;
                let mut group = Group::from_row(group, members, who_can_pin);
                group.mention_all = mention_all;
                Ok(group)
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
        self.charge(owner, members.len() + 1)?;
        let default = self.default_group_add_policy();
        let (id, invited) = self
            .group_write(move |c, out, now| {
                check_invitees(c, owner, &members)?;
                let (members, invited) = admit(c, owner, &members, default)?;
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
                invite(c, out, &group, owner, &invited, now)?;
                Ok((group.id, invited))
            })
            .await?;
        let mut group = self.group_view(caller, id).await?;
        group.invited = invited;
        Ok(group)
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
                    let who_can_pin = super::pins::policy_of(c, g.conversation_id)?;
                    let mention_all = super::replies::MentionAll::read(c, g.id)?;
                    let mut group = Group::from_row(g, members, who_can_pin);
                    group.mention_all = mention_all;
                    out.push(group);
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
        self.charge_group(actor, group_id, ids.len()).await?;
        let max = self.limits.max_group_size;
        let default = self.default_group_add_policy();
        let invited = self
            .group_write(move |c, out, now| {
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
                    return Ok(Vec::new());
                }
                check_invitees(c, actor, &new)?;
                let (new, invited) = admit(c, actor, &new, default)?;
                invite(c, out, &group, actor, &invited, now)?;
                if new.is_empty() {
                    return Ok(invited);
                }
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
                )?;
                Ok(invited)
            })
            .await?;
        let mut group = self.group_view(caller, group_id).await?;
        group.invited = invited;
        Ok(group)
    }

    /// The caller's pending group invitations, newest first.
    pub async fn group_invitations(
        &self,
        caller: Caller,
    ) -> Result<Vec<GroupInvitation>, DomainError> {
        let me = caller.user_id;
        let rows = self
            .store
            .read(move |c| store::pending_invitations(c, me))
            .await?;
        Ok(rows.into_iter().map(GroupInvitation::from).collect())
    }

    /// Accepts (joining the group, whose members get `member_added`) or
    /// declines an invitation; the invitee and the inviter get
    /// `group.invitation` with the new status.
    pub async fn decide_group_invitation(
        &self,
        caller: Caller,
        id: u64,
        accept: bool,
    ) -> Result<GroupInvitation, DomainError> {
        let me = caller.user_id;
        let max = self.limits.max_group_size;
        self.charge(me, 1)?;
        self.group_write(move |c, out, now| {
            let row = store::invitation_by_id(c, id)?
                .filter(|r| r.invitee_id == me)
                .ok_or(DomainError::NotFound("invitation"))?;
            if row.status != "pending" {
                return Err(DomainError::Conflict(format!(
                    "the invitation is {}",
                    row.status
                )));
            }
            let group = store::by_id(c, row.group_id)?.ok_or(DomainError::NotFound("group"))?;
            if accept && messages::membership(c, me, group.conversation_id)?.is_none() {
                if store::member_count(c, &group)? + 1 > max {
                    return Err(DomainError::Conflict(format!(
                        "a group has at most {max} members"
                    )));
                }
                messages::add_member(c, group.conversation_id, me, MEMBER, now)?;
                system(
                    c,
                    out,
                    &group,
                    row.inviter_id,
                    json!({"event": "member_added", "actor": row.inviter_id, "users": [me]}),
                    now,
                )?;
            }
            let status = if accept { "accepted" } else { "declined" };
            let row = store::decide_invitation(c, id, status, now)?;
            let invitation = GroupInvitation::from(row);
            let event = Stored::GroupInvitation {
                invitation: &invitation,
            };
            out.emit(c, me, &event)?;
            out.emit(c, invitation.inviter_id, &event)?;
            Ok(invitation)
        })
        .await
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
        self.charge_group(actor, group_id, 0).await?;
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
        self.charge_group(actor, group_id, 0).await?;
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
        self.charge_group(actor, group_id, 0).await?;
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
        self.charge_group(actor, group_id, 0).await?;
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
        self.charge_group(actor, group_id, 0).await?;
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
        self.charge_group(actor, group_id, 0).await?;
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

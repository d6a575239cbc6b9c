//! Friends, friend requests, blocks and presence visibility.

use super::events::Stored;
use super::model::{Friend, FriendRequest, Presence, User};
use super::outbox::Outbox;
use super::tokens::Caller;
use super::{now_ms, Chat, DomainError};
use crate::store::social as store;
use crate::store::users;
use crate::store::Tx;

/// How a friend request is answered.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Decision {
    Accept,
    Reject,
    /// By the sender.
    Cancel,
}

/// Makes two users friends and tells both.
fn befriend(c: &Tx<'_>, out: &mut Outbox, a: u64, b: u64, now: i64) -> Result<(), DomainError> {
    store::add_friends(c, a, b, now)?;
    for (me, other) in [(a, b), (b, a)] {
        let user = users::by_id(c, other)?
            .map(User::from)
            .ok_or(DomainError::NotFound("user"))?;
        out.emit(
            c,
            me,
            &Stored::FriendAdded {
                user: &user,
                since: now,
            },
        )?;
    }
    Ok(())
}

impl Chat {
    /// Sends a friend request. A request to someone who already asked you
    /// accepts theirs. Unknown users and users who blocked you get the same
    /// 404, so a block is not revealed.
    pub async fn request_friend(
        &self,
        caller: Caller,
        to: u64,
        note: Option<String>,
    ) -> Result<FriendRequest, DomainError> {
        let from = caller.user_id;
        if to == from {
            return Err(DomainError::Invalid("you can't befriend yourself".into()));
        }
        if let Some(n) = &note {
            if n.chars().count() > 200 || n.chars().any(char::is_control) {
                return Err(DomainError::Invalid(
                    "note must be at most 200 characters".into(),
                ));
            }
        }
        self.charge(from, 1)?;
        let now = now_ms();
        let expires = now + self.limits.friend_request_ttl.as_millis() as i64;
        let downlink = self.downlink.clone();
        let (request, _) = self
            .store
            .write_then(
                move |c| {
                    if !users::exists(c, to)? || store::has_blocked(c, to, from)? {
                        return Err(DomainError::NotFound("user"));
                    }
                    if store::has_blocked(c, from, to)? {
                        return Err(DomainError::Forbidden(
                            "you have blocked this user; unblock them first".into(),
                        ));
                    }
                    if store::are_friends(c, from, to)? {
                        return Err(DomainError::Conflict("already friends".into()));
                    }
                    let mut out = Outbox::default();
                    if let Some(theirs) = store::pending_request(c, to, from, now)? {
                        let row = store::decide_request(c, theirs.id, "accepted", now)?;
                        let request = FriendRequest::from_row(row, now);
                        for u in [from, to] {
                            out.emit(c, u, &Stored::FriendRequest { request: &request })?;
                        }
                        befriend(c, &mut out, from, to, now)?;
                        return Ok((request, out));
                    }
                    if store::pending_request(c, from, to, now)?.is_some() {
                        return Err(DomainError::Conflict(
                            "a request to this user is already pending".into(),
                        ));
                    }
                    let row = store::create_request(c, from, to, note.as_deref(), now, expires)?;
                    let request = FriendRequest::from_row(row, now);
                    for u in [to, from] {
                        out.emit(c, u, &Stored::FriendRequest { request: &request })?;
                    }
                    Ok((request, out))
                },
                move |(_, out): &(FriendRequest, Outbox)| out.push(&*downlink),
            )
            .await?;
        Ok(request)
    }

    /// Accepts, rejects (the recipient) or cancels (the sender) a pending
    /// request. Both parties get the updated request; accepting makes them
    /// friends.
    pub async fn decide_friend_request(
        &self,
        caller: Caller,
        id: u64,
        decision: Decision,
    ) -> Result<FriendRequest, DomainError> {
        let me = caller.user_id;
        self.charge(me, 1)?;
        let now = now_ms();
        let downlink = self.downlink.clone();
        let (request, _) = self
            .store
            .write_then(
                move |c| {
                    let row = store::request_by_id(c, id)?
                        .ok_or(DomainError::NotFound("friend request"))?;
                    // A request from someone the recipient blocks is
                    // hidden from them; it stays pending for its sender.
                    let allowed = match decision {
                        Decision::Accept | Decision::Reject => {
                            row.to_id == me && !store::has_blocked(c, me, row.from_id)?
                        }
                        Decision::Cancel => row.from_id == me,
                    };
                    if !allowed || (row.to_id != me && row.from_id != me) {
                        return Err(DomainError::NotFound("friend request"));
                    }
                    if row.status != "pending" || row.expires_at <= now {
                        return Err(DomainError::Conflict(format!(
                            "the request is {}",
                            FriendRequest::from_row(row, now).status
                        )));
                    }
                    let status = match decision {
                        Decision::Accept => "accepted",
                        Decision::Reject => "rejected",
                        Decision::Cancel => "cancelled",
                    };
                    let row = store::decide_request(c, id, status, now)?;
                    let request = FriendRequest::from_row(row.clone(), now);
                    let mut out = Outbox::default();
                    let hidden = store::has_blocked(c, row.to_id, row.from_id)?;
                    for u in [row.from_id, row.to_id] {
                        if hidden && u == row.to_id {
                            continue;
                        }
                        out.emit(c, u, &Stored::FriendRequest { request: &request })?;
                    }
                    if decision == Decision::Accept {
                        befriend(c, &mut out, row.from_id, row.to_id, now)?;
                    }
                    Ok((request, out))
                },
                move |(_, out): &(FriendRequest, Outbox)| out.push(&*downlink),
            )
            .await?;
        Ok(request)
    }

    pub async fn friend_requests(
        &self,
        caller: Caller,
        incoming: bool,
    ) -> Result<Vec<FriendRequest>, DomainError> {
        let me = caller.user_id;
        let now = now_ms();
        let rows = self
            .store
            .read(move |c| store::list_requests(c, me, incoming, now))
            .await?;
        Ok(rows
            .into_iter()
            .map(|r| FriendRequest::from_row(r, now))
            .collect())
    }

    /// Ends a friendship; both sides get `friend.removed`.
    pub async fn remove_friend(&self, caller: Caller, other: u64) -> Result<(), DomainError> {
        let me = caller.user_id;
        self.charge(me, 1)?;
        let downlink = self.downlink.clone();
        self.store
            .write_then(
                move |c| {
                    if !store::remove_friends(c, me, other)? {
                        return Err(DomainError::NotFound("friend"));
                    }
                    let mut out = Outbox::default();
                    out.emit(c, me, &Stored::FriendRemoved { user_id: other })?;
                    out.emit(c, other, &Stored::FriendRemoved { user_id: me })?;
                    Ok(out)
                },
                move |out: &Outbox| out.push(&*downlink),
            )
            .await?;
        Ok(())
    }

    /// Friends with their presence, by username.
    pub async fn friends(&self, caller: Caller) -> Result<Vec<Friend>, DomainError> {
        let me = caller.user_id;
        let rows = self.store.read(move |c| store::friends(c, me)).await?;
        Ok(rows
            .into_iter()
            .map(|(user, since, last_seen)| {
                let online = self.presence.is_online(user.id);
                Friend {
                    user: user.into(),
                    since,
                    online,
                    last_seen,
                }
            })
            .collect())
    }

    /// Blocks a user: they can no longer message you, friend-request you,
    /// see your profile or presence, or add you to groups, and any
    /// friendship ends. Only the blocker is told; to the blocked user you
    /// look like a user who doesn't exist (their pending request to you
    /// stays pending, unseen by you, until it expires).
    pub async fn block(&self, caller: Caller, other: u64) -> Result<(), DomainError> {
        let me = caller.user_id;
        if other == me {
            return Err(DomainError::Invalid("you can't block yourself".into()));
        }
        self.charge(me, 1)?;
        let downlink = self.downlink.clone();
        self.store
            .write_then(
                move |c| {
                    if !users::exists(c, other)? {
                        return Err(DomainError::NotFound("user"));
                    }
                    let were_friends = store::are_friends(c, me, other)?;
                    let new = store::block(c, me, other, now_ms())?;
                    let mut out = Outbox::default();
                    if !new {
                        return Ok(out);
                    }
                    if were_friends {
                        out.emit(c, me, &Stored::FriendRemoved { user_id: other })?;
                        out.emit(c, other, &Stored::FriendRemoved { user_id: me })?;
                    }
                    out.emit(
                        c,
                        me,
                        &Stored::BlockUpdated {
                            user_id: other,
                            blocked: true,
                        },
                    )?;
                    Ok(out)
                },
                move |out: &Outbox| out.push(&*downlink),
            )
            .await?;
        Ok(())
    }

    pub async fn unblock(&self, caller: Caller, other: u64) -> Result<(), DomainError> {
        let me = caller.user_id;
        self.charge(me, 0)?;
        let downlink = self.downlink.clone();
        self.store
            .write_then(
                move |c| {
                    if !store::unblock(c, me, other)? {
                        return Err(DomainError::NotFound("block"));
                    }
                    let mut out = Outbox::default();
                    out.emit(
                        c,
                        me,
                        &Stored::BlockUpdated {
                            user_id: other,
                            blocked: false,
                        },
                    )?;
                    Ok(out)
                },
                move |out: &Outbox| out.push(&*downlink),
            )
            .await?;
        Ok(())
    }

    pub async fn blocked(&self, caller: Caller) -> Result<Vec<u64>, DomainError> {
        let me = caller.user_id;
        Ok(self.store.read(move |c| store::blocked_ids(c, me)).await?)
    }

    /// Presence of the given users, for those who are the caller's friends
    /// (others are left out: presence is for friends only).
    pub async fn presence_of(
        &self,
        caller: Caller,
        ids: Vec<u64>,
    ) -> Result<Vec<Presence>, DomainError> {
        let me = caller.user_id;
        let rows = self
            .store
            .read(move |c| {
                let mut out = Vec::new();
                for id in ids {
                    if id == me || store::are_friends(c, me, id)? {
                        out.push((id, store::last_seen(c, id)?));
                    }
                }
                Ok::<_, DomainError>(out)
            })
            .await?;
        Ok(rows
            .into_iter()
            .map(|(user_id, last_seen)| Presence {
                user_id,
                online: self.presence.is_online(user_id),
                last_seen,
            })
            .collect())
    }
}

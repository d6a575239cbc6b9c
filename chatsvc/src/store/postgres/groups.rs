//! PostgreSQL: [`crate::store::groups`].

// SKELETON: every function below is still to write (todo!).
#![allow(unused_variables)]

use super::Session;
use crate::store::groups::GroupRow;
use crate::store::groups::InvitationRow;
use crate::store::StoreError;

pub fn create(c: &Session<'_>, name: &str, owner: u64, now: i64) -> Result<GroupRow, StoreError> {
    todo!("groups::create")
}

pub fn by_id(c: &Session<'_>, id: u64) -> Result<Option<GroupRow>, StoreError> {
    todo!("groups::by_id")
}

pub fn of_user(c: &Session<'_>, user: u64) -> Result<Vec<GroupRow>, StoreError> {
    todo!("groups::of_user")
}

pub fn rename(c: &Session<'_>, id: u64, name: &str) -> Result<(), StoreError> {
    todo!("groups::rename")
}

pub fn set_owner(c: &Session<'_>, id: u64, owner: u64) -> Result<(), StoreError> {
    todo!("groups::set_owner")
}

pub fn dissolve(c: &Session<'_>, group: &GroupRow, now: i64) -> Result<(), StoreError> {
    todo!("groups::dissolve")
}

pub fn member_count(c: &Session<'_>, group: &GroupRow) -> Result<usize, StoreError> {
    todo!("groups::member_count")
}

pub fn invite(
    c: &Session<'_>,
    group_id: u64,
    inviter: u64,
    invitee: u64,
    now: i64,
) -> Result<(InvitationRow, bool), StoreError> {
    todo!("groups::invite")
}

pub fn invitation_by_id(c: &Session<'_>, id: u64) -> Result<Option<InvitationRow>, StoreError> {
    todo!("groups::invitation_by_id")
}

pub fn decide_invitation(
    c: &Session<'_>,
    id: u64,
    status: &str,
    now: i64,
) -> Result<InvitationRow, StoreError> {
    todo!("groups::decide_invitation")
}

pub fn pending_invitations(
    c: &Session<'_>,
    invitee: u64,
) -> Result<Vec<InvitationRow>, StoreError> {
    todo!("groups::pending_invitations")
}

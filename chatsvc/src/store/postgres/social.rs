//! PostgreSQL: [`crate::store::social`].

// SKELETON: every function below is still to write (todo!).
#![allow(unused_variables)]

use super::Session;
use crate::store::social::FriendRequestRow;
use crate::store::users::UserRow;
use crate::store::StoreError;

pub fn are_friends(c: &Session<'_>, a: u64, b: u64) -> Result<bool, StoreError> {
    todo!("social::are_friends")
}

pub fn are_friends_to_send(c: &Session<'_>, a: u64, b: u64) -> Result<bool, StoreError> {
    todo!("social::are_friends_to_send")
}

pub fn has_blocked(c: &Session<'_>, user: u64, other: u64) -> Result<bool, StoreError> {
    todo!("social::has_blocked")
}

pub fn pending_request(
    c: &Session<'_>,
    from: u64,
    to: u64,
    now: i64,
) -> Result<Option<FriendRequestRow>, StoreError> {
    todo!("social::pending_request")
}

pub fn request_by_id(c: &Session<'_>, id: u64) -> Result<Option<FriendRequestRow>, StoreError> {
    todo!("social::request_by_id")
}

pub fn create_request(
    c: &Session<'_>,
    from: u64,
    to: u64,
    note: Option<&str>,
    now: i64,
    expires_at: i64,
) -> Result<FriendRequestRow, StoreError> {
    todo!("social::create_request")
}

pub fn decide_request(
    c: &Session<'_>,
    id: u64,
    status: &str,
    now: i64,
) -> Result<FriendRequestRow, StoreError> {
    todo!("social::decide_request")
}

pub fn list_requests(
    c: &Session<'_>,
    user: u64,
    incoming: bool,
    now: i64,
) -> Result<Vec<FriendRequestRow>, StoreError> {
    todo!("social::list_requests")
}

pub fn add_friends(c: &Session<'_>, a: u64, b: u64, now: i64) -> Result<(), StoreError> {
    todo!("social::add_friends")
}

pub fn remove_friends(c: &Session<'_>, a: u64, b: u64) -> Result<bool, StoreError> {
    todo!("social::remove_friends")
}

pub fn friend_ids(c: &Session<'_>, user: u64) -> Result<Vec<u64>, StoreError> {
    todo!("social::friend_ids")
}

pub fn friends(c: &Session<'_>, user: u64) -> Result<Vec<(UserRow, i64, Option<i64>)>, StoreError> {
    todo!("social::friends")
}

pub fn block(c: &Session<'_>, user: u64, other: u64, now: i64) -> Result<bool, StoreError> {
    todo!("social::block")
}

pub fn unblock(c: &Session<'_>, user: u64, other: u64) -> Result<bool, StoreError> {
    todo!("social::unblock")
}

pub fn blocked_ids(c: &Session<'_>, user: u64) -> Result<Vec<u64>, StoreError> {
    todo!("social::blocked_ids")
}

pub fn set_last_seen(c: &Session<'_>, user: u64, at: i64) -> Result<(), StoreError> {
    todo!("social::set_last_seen")
}

pub fn last_seen(c: &Session<'_>, user: u64) -> Result<Option<i64>, StoreError> {
    todo!("social::last_seen")
}

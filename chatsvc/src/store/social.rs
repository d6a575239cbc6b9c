//! Friends, friend requests and blocks.

use super::users::UserRow;

/// A friend request as stored. `status` is `pending`, `accepted`,
/// `rejected` or `cancelled`; a pending request past `expires_at` is expired.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct FriendRequestRow {
    pub id: u64,
    pub from_id: u64,
    pub to_id: u64,
    pub note: Option<String>,
    pub status: String,
    pub created_at: i64,
    pub expires_at: i64,
}

super::operations! {
    social;
    read fn are_friends(a: u64, b: u64) -> bool;
    /// Has `user` blocked `other`?
    read fn has_blocked(user: u64, other: u64) -> bool;
    /// The pending, unexpired request from `from` to `to`, if any.
    read fn pending_request(from: u64, to: u64, now: i64) -> Option<FriendRequestRow>;
    read fn request_by_id(id: u64) -> Option<FriendRequestRow>;
    /// Creates a pending request. An expired pending request between the same
    /// pair is closed first, so it does not block a new one.
    write fn create_request(from: u64, to: u64, note: Option<&str>, now: i64, expires_at: i64) -> FriendRequestRow;
    /// Closes a pending request with `status`; returns the updated row.
    write fn decide_request(id: u64, status: &str, now: i64) -> FriendRequestRow;
    /// Pending, unexpired requests to (`incoming`) or from the user, newest
    /// first; incoming ones from users the user blocks are left out.
    read fn list_requests(user: u64, incoming: bool, now: i64) -> Vec<FriendRequestRow>;
    write fn add_friends(a: u64, b: u64, now: i64) -> ();
    /// Ends a friendship; true if there was one.
    write fn remove_friends(a: u64, b: u64) -> bool;
    /// Friend ids of a user, ascending.
    read fn friend_ids(user: u64) -> Vec<u64>;
    /// Friends with profile, friendship start and last-seen time.
    read fn friends(user: u64) -> Vec<(UserRow, i64, Option<i64>)>;
    /// Blocks `other`: also ends the friendship and cancels the blocker's own
    /// pending request. The blocked user's request to the blocker stays
    /// pending, as it would for anyone, so the block does not show in their
    /// outgoing list; [`list_requests`] hides it from the blocker. Returns true
    /// if this is a new block.
    write fn block(user: u64, other: u64, now: i64) -> bool;
    write fn unblock(user: u64, other: u64) -> bool;
    read fn blocked_ids(user: u64) -> Vec<u64>;
    write fn set_last_seen(user: u64, at: i64) -> ();
    read fn last_seen(user: u64) -> Option<i64>;
}

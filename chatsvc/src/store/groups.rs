//! Groups: a named group conversation with an owner.

#[derive(Debug, Clone, PartialEq, Eq)]
pub struct GroupRow {
    pub id: u64,
    pub conversation_id: u64,
    pub name: String,
    pub owner_id: u64,
    pub created_at: i64,
}

/// An invitation to a group as stored. `status` is `pending`, `accepted`,
/// `declined` or `cancelled` (the group was dissolved, or the invitee
/// joined otherwise).
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct InvitationRow {
    pub id: u64,
    pub group_id: u64,
    pub group_name: String,
    pub inviter_id: u64,
    pub invitee_id: u64,
    pub status: String,
    pub created_at: i64,
}

super::operations! {
    groups;
    /// Creates a group and its conversation; the owner is its first member.
    write fn create(name: &str, owner: u64, now: i64) -> GroupRow;
    /// A live (not dissolved) group.
    read fn by_id(id: u64) -> Option<GroupRow>;
    /// Live groups the user is a member of.
    read fn of_user(user: u64) -> Vec<GroupRow>;
    write fn rename(id: u64, name: &str) -> ();
    write fn set_owner(id: u64, owner: u64) -> ();
    /// Marks the group dissolved and removes every member (each a departure,
    /// as [`crate::store::messages::remove_member`] records one).
    write fn dissolve(group: &GroupRow, now: i64) -> ();
    read fn member_count(group: &GroupRow) -> usize;
    /// Invites `invitee`; an invitation already pending is returned as is.
    write fn invite(group_id: u64, inviter: u64, invitee: u64, now: i64) -> (InvitationRow, bool);
    read fn invitation_by_id(id: u64) -> Option<InvitationRow>;
    /// Closes a pending invitation with `status`; returns the updated row.
    write fn decide_invitation(id: u64, status: &str, now: i64) -> InvitationRow;
    /// Pending invitations to the user, newest first (at most 500).
    read fn pending_invitations(invitee: u64) -> Vec<InvitationRow>;
}

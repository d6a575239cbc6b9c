//! Pinned messages of a conversation, and who may pin in a group.

use super::messages::MessageRow;

/// A pinned message.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct PinRow {
    pub message: MessageRow,
    pub pinned_by: u64,
    pub pinned_at: i64,
}

/// What [`add`] did.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Pinned {
    Added,
    /// Pinned already: nothing written.
    Already,
    /// The conversation has `max` pins already: nothing written.
    Full,
}

super::operations! {
    pins;
    /// Pins a message of its conversation, unless it is pinned already or
    /// the conversation has `max` pins.
    write fn add(conversation_id: u64, message_id: u64, user_id: u64, max: usize, now: i64) -> Pinned;
    /// Unpins; whether it was pinned.
    write fn remove(conversation_id: u64, message_id: u64) -> bool;
    /// The conversation's pins of messages with seq above `after_seq` (what
    /// a member who joined then may see), newest pin first.
    read fn list(conversation_id: u64, after_seq: u64) -> Vec<PinRow>;
    /// A group conversation's pin policy (`admins` or `members`); `None`
    /// for a direct conversation.
    read fn policy(conversation_id: u64) -> Option<String>;
    /// Sets a group's pin policy.
    write fn set_policy(group_id: u64, policy: &str) -> ();
}

//! Reactions: one row per user per emoji per message.

/// One emoji's reactions to one message, as a reader sees them.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct ReactionCount {
    pub message_id: u64,
    /// Fully qualified (the domain normalizes it before storing).
    pub emoji: String,
    pub count: u64,
    /// Whether the reader is one of them.
    pub mine: bool,
}

/// What [`add`] did.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Added {
    /// Stored.
    Added,
    /// The user had reacted so already: nothing written.
    Already,
    /// The message already has `max_emoji` different emoji and this is
    /// another: nothing written.
    TooMany,
}

super::operations! {
    reactions;
    /// Adds `user`'s `emoji` to a message, unless they reacted so already,
    /// or the message has `max_emoji` different emoji and this is not one
    /// of them.
    write fn add(message_id: u64, user_id: u64, emoji: &str, max_emoji: usize, now: i64) -> Added;
    /// Removes `user`'s `emoji` from a message; whether there was one.
    write fn remove(message_id: u64, user_id: u64, emoji: &str) -> bool;
    /// The reactions to each of `message_ids`, counted per emoji, with
    /// whether `reader` is among them: by message, then by when each emoji
    /// was first used on it.
    read fn counts(reader: u64, message_ids: &[u64]) -> Vec<ReactionCount>;
    /// The members of a conversation who can see its message `seq` (they
    /// joined before it), ascending: who hears of its reactions and pins.
    read fn audience(conversation_id: u64, seq: u64) -> Vec<u64>;
}

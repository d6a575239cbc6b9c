//! Replies, mentions and forwarding: the checks a send with `reply_to` or
//! `mentions` makes, and a group's `mention_all` setting. The columns
//! themselves are written with the message ([`super::messages::NewRow`]'s
//! `extras`) and read back with it ([`super::messages::MessageExtras`]).

/// A reply's target as the sender's checks need it.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct ReplyTarget {
    pub conversation_id: u64,
    /// Whether the reader asked about may see it: a member who joined
    /// before it.
    pub visible: bool,
    /// Its quote as it reads now (see [`super::messages::MessageExtras`]).
    pub quote: String,
}

super::operations! {
    replies;
    /// The message `id` as a reply to it from `reader` needs it (asked on
    /// the writer, by the send's checks).
    write fn reply_target(id: u64, reader: u64) -> Option<ReplyTarget>;
    /// How many of `users` (distinct) are members of the conversation.
    read fn members_among(conversation_id: u64, users: &[u64]) -> usize;
    /// Who may mention `"all"` in a live group: `admins` or `members`.
    read fn mention_all(group_id: u64) -> Option<String>;
    write fn set_mention_all(group_id: u64, policy: &str) -> ();
}

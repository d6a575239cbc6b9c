//! Conversations, messages, inboxes, read markers, search and device cursors.

/// A stored message. For a direct conversation `to_user` is the other member
/// as seen from the sender; for a group `to_group` is the group.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct MessageRow {
    pub id: u64,
    pub conversation_id: u64,
    pub seq: u64,
    pub sender_id: u64,
    pub to_user: Option<u64>,
    pub to_group: Option<u64>,
    pub client_msg_id: String,
    /// The body as JSON text (`{}` once recalled).
    pub body: String,
    pub sent_at: i64,
    /// `user` or `system` (group membership changes).
    pub kind: String,
    pub edited_at: Option<i64>,
    pub recalled_at: Option<i64>,
    /// When the message disappears (its conversation had a TTL when it
    /// was sent), or did (a sweep removed it; see `store::expiry`).
    pub expires_at: Option<i64>,
    /// What a reply, a mention or a forward adds; `None` for a plain
    /// message (boxed: most messages have none).
    pub extras: Option<Box<MessageExtras>>,
}

/// The columns a reply, a mention or a forward fills ([`crate::store::replies`]).
#[derive(Debug, Clone, Default, PartialEq, Eq)]
pub struct MessageExtras {
    /// The message this one replies to.
    pub reply_to: Option<u64>,
    /// The quote of `reply_to` as it reads now, JSON
    /// `{"sender_id", "removed", "snippet"}` (`None`: the target is gone,
    /// or, on a row just stored, not read back).
    pub quote: Option<String>,
    /// JSON: an array of user ids, or `"all"`.
    pub mentions: Option<String>,
    /// JSON object: where a forwarded copy came from.
    pub forwarded_from: Option<String>,
}

impl MessageExtras {
    /// `Some` when any column is set.
    pub fn from_columns(
        reply_to: Option<u64>,
        quote: Option<String>,
        mentions: Option<String>,
        forwarded_from: Option<String>,
    ) -> Option<Box<Self>> {
        (reply_to.is_some() || mentions.is_some() || forwarded_from.is_some()).then(|| {
            Box::new(MessageExtras {
                reply_to,
                quote,
                mentions,
                forwarded_from,
            })
        })
    }
}

/// One entry of a user's inbox.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct InboxRow {
    pub cursor: u64,
    pub kind: String,
    /// The message the event is about, as the user may see it (see [`sync`]).
    pub message: Option<MessageRow>,
    /// The event's own fields, as a JSON object, for events not about a message.
    pub payload: Option<String>,
}

/// A member's standing in a conversation.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Membership {
    pub role: String,
    pub joined_seq: u64,
    pub read_seq: u64,
}

/// Where a send goes, as [`routes`] is asked about it.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum SendTo {
    /// A direct message from `sender` to `peer`; `friends`: whether to
    /// say if the two are friends.
    User {
        sender: u64,
        peer: u64,
        friends: bool,
    },
    /// A message from `sender` to the group `group`.
    Group { sender: u64, group: u64 },
}

/// What a send's checks need to know, from [`routes`]: one per [`SendTo`].
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum SendRoute {
    User {
        /// `None` if the peer does not exist.
        route: Option<DirectRoute>,
        /// Whether the two are friends, if asked and the route is not
        /// refused anyway (no such peer, a block either way); `None`
        /// otherwise.
        friends: Option<bool>,
    },
    /// `None` if the group does not exist (or was dissolved).
    Group(Option<GroupRoute>),
}

/// What a direct message from one user to another needs to know before it
/// may go.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct DirectRoute {
    pub peer_blocked_sender: bool,
    pub sender_blocked_peer: bool,
    /// Their direct conversation, if it exists yet.
    pub conversation: Option<u64>,
}

/// What a message to a group needs to know before it may go.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct GroupRoute {
    /// The group's conversation.
    pub conversation: u64,
    /// Whether the sender is a member of it.
    pub member: bool,
}

/// A message [`post_many`] stored, and its inbox rows: `(user, cursor)`
/// pairs, by user id.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Posted {
    pub row: MessageRow,
    pub deliveries: Vec<(u64, u64)>,
}

/// A message to store, for [`post_many`].
#[derive(Debug, Clone, Copy)]
pub struct NewRow<'a> {
    pub conversation_id: u64,
    pub sender: u64,
    pub client_msg_id: &'a str,
    /// JSON object text.
    pub body: &'a str,
    /// `body.text`, for the full-text index (the caller has parsed the
    /// body already; the writer does not parse it again).
    pub text: Option<&'a str>,
    /// `user` or `system`.
    pub kind: &'a str,
    pub now: i64,
    /// A reply's target, mentions, a forward's origin (`quote` unused).
    pub extras: Option<&'a MessageExtras>,
}

/// A conversation in a user's list.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct ConversationRow {
    pub id: u64,
    pub kind: String,
    /// Direct conversations: the other user (the user itself for notes-to-self).
    pub peer_id: Option<u64>,
    pub group_id: Option<u64>,
    pub group_name: Option<String>,
    pub last_seq: u64,
    pub read_seq: u64,
    pub unread: u64,
    /// Others' unread messages that mention the user (by id or `"all"`).
    pub mentions: u64,
    pub last_message: Option<MessageRow>,
    /// The user's own settings of it.
    pub settings: super::settings::SettingsRow,
    /// The conversation's message TTL, seconds (`None`: off).
    pub message_ttl_seconds: Option<u64>,
}

/// Records a device's acknowledged cursor; it never moves backwards.
/// Returns `(previous, stored)`.
/// Device cursors kept per user; acking from one more evicts the least
/// recently acked.
pub const MAX_DEVICES_PER_USER: usize = 16;

super::operations! {
    messages;
    /// Appends an event to a user's inbox; returns its cursor.
    write fn append(user_id: u64, kind: &str, message_id: Option<u64>, payload: Option<&str>) -> u64;
    write fn by_client_id(sender: u64, client_msg_id: &str) -> Option<MessageRow>;
    read fn by_id(id: u64) -> Option<MessageRow>;
    /// The direct conversation of two users, created (with both as members) if needed.
    write fn direct_conversation(a: u64, b: u64, now: i64) -> u64;
    /// What the checks of many sends need to know, in their order: on
    /// PostgreSQL one statement for all, on SQLite a few per send.
    write fn routes(sends: &[SendTo]) -> Vec<SendRoute>;
    /// Adds a member who sees what comes after the conversation's current seq.
    write fn add_member(conversation_id: u64, user_id: u64, role: &str, now: i64) -> ();
    /// Removes a member, recording their departure in `departures`: the
    /// seqs they saw, so that later edits never reach them.
    write fn remove_member(conversation_id: u64, user_id: u64) -> bool;
    write fn set_role(conversation_id: u64, user_id: u64, role: &str) -> ();
    read fn membership(user_id: u64, conversation_id: u64) -> Option<Membership>;
    /// How many members a conversation has.
    read fn member_count(conversation_id: u64) -> usize;
    /// Member ids of a conversation, ascending.
    read fn members(conversation_id: u64) -> Vec<u64>;
    /// Members with their roles, owner first, then admins, then by id.
    read fn members_with_roles(conversation_id: u64) -> Vec<(u64, String)>;
    /// Stores messages in their order, each as its conversation's next seq,
    /// and appends `kind` about each to the inbox of every member of its
    /// conversation; one answer per row, in order. A row whose sender
    /// already sent a message with its `client_msg_id` (before, or earlier
    /// in `rows`) writes nothing: `None` (the caller answers with the
    /// original, [`by_client_id`]). A send need not look for its
    /// `client_msg_id` before: the insert's own probe of that unique index
    /// tells, and a lookup first would cost every send a statement of its
    /// own. On PostgreSQL one statement for all the rows.
    write fn post_many(rows: &[NewRow<'_>], kind: &str) -> Vec<Option<Posted>>;
    /// Appends `kind` about `message` to the inbox of every member of its
    /// conversation; returns the `(user, cursor)` pairs, by user id.
    write fn fan_out(message: &MessageRow, kind: &str) -> Vec<(u64, u64)>;
    /// Replaces a message's body (edit). The body it replaces is kept if
    /// someone who left the conversation holds the message (see
    /// [`remove_member`]).
    write fn edit(id: u64, body: &str, now: i64) -> ();
    /// Removes a message's content, earlier versions included, leaving a
    /// tombstone (for former members too).
    write fn recall(id: u64, now: i64) -> ();
    /// Hides a message from one user's history (delete for me).
    write fn hide(user_id: u64, id: u64) -> ();
    /// The user's inbox after `after`, at most `limit` entries, in cursor
    /// order, each as of `now` ([`InboxRow::as_of`]: a message that has
    /// disappeared reads as `message.expired`, without its content).
    read fn sync(user_id: u64, after: u64, limit: usize, now: i64) -> Vec<InboxRow>;
    /// The user's newest inbox cursor.
    read fn inbox_head(user_id: u64) -> u64;
    /// Up to `limit` messages with `seq < before_seq`, oldest first, that the
    /// user may see: after they joined, not hidden by them, not expired at
    /// `now`. `None` when the user is not a member (indistinguishable from
    /// "no such conversation").
    read fn history(user_id: u64, conversation_id: u64, before_seq: Option<u64>, limit: usize, now: i64) -> Option<Vec<MessageRow>>;
    /// The user's conversations, those they pinned first, then most recent
    /// activity first, with unread counts (others' user messages after the
    /// read marker) and their settings: the archived ones (archived, and no
    /// message since) if `archived`, else the others.
    read fn conversations(user_id: u64, archived: bool, limit: usize) -> Vec<ConversationRow>;
    /// Moves the read marker forward (never back, never past the last seq).
    /// Returns `(old, new)`; equal when nothing moved.
    write fn mark_read(user_id: u64, conversation_id: u64, seq: u64) -> (u64, u64);
    /// Distinct senders (other than `reader`) of user messages with seq in
    /// `(from, to]`.
    read fn senders_between(conversation_id: u64, reader: u64, from: u64, to: u64) -> Vec<u64>;
    write fn ack(user_id: u64, device_id: &str, cursor: u64, now: i64) -> (u64, u64);
    /// Message events in the user's inbox with cursor in `(from, to]`: for
    /// delivery receipts, the newest seq per (conversation, sender).
    read fn delivered_between(user_id: u64, from: u64, to: u64) -> Vec<(u64, u64, u64)>;
    /// Others' unread user messages in one conversation for `user` (as in the
    /// conversation list).
    /// The caller's messages matching `query`, newest first: only what they
    /// may see (conversations they are in, from when they joined), never
    /// recalled, hidden or expired (at `now`, swept or not) ones.
    read fn search(user_id: u64, query: &str, limit: usize, now: i64) -> Vec<MessageRow>;
    read fn unread(user_id: u64, conversation_id: u64) -> u64;
}

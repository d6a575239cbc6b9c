//! Disappearing messages and retention: a conversation's message
//! time-to-live, and the sweeps that remove messages whose time has come.
//!
//! A message sent while its conversation has a TTL is stored with
//! `expires_at` (`sent_at` plus the TTL; user messages only, never a
//! group's system messages). Reads filter by it, so nothing past its
//! `expires_at` is shown even before a sweep reaches it; the sweeps
//! ([`expire_due`], [`retire_before`]) then remove the content as a recall
//! does and mark the row `expired_at`. A removed message stays a tombstone
//! row (its id, conversation, seq, sender, `client_msg_id` and times), so
//! seqs and inbox cursors stay gap-free; its `expires_at` is its removal
//! time at the latest, which is how every read tells it apart.

use super::messages::{InboxRow, MessageRow};

/// Shortest TTL a conversation may have, in seconds.
pub const MIN_TTL_SECONDS: u64 = 5;
/// Longest TTL a conversation may have, in seconds (a year).
pub const MAX_TTL_SECONDS: u64 = 365 * 86_400;

/// The event type of a message that disappeared (see [`InboxRow::as_of`]).
pub const MESSAGE_EXPIRED: &str = "message.expired";

/// A conversation as a TTL change needs it.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct ConversationTtl {
    /// `direct` or `group`.
    pub kind: String,
    pub group_id: Option<u64>,
    /// Seconds; `None`: off.
    pub ttl_seconds: Option<u64>,
}

/// A message a sweep removed, as it is now (a tombstone), and the files
/// its body referenced, unlinked from it.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Removed {
    pub row: MessageRow,
    pub files: Vec<String>,
}

/// Has the message disappeared at `now` (by its TTL, or removed by
/// retention)?
pub fn is_expired(row: &MessageRow, now: i64) -> bool {
    row.expires_at.is_some_and(|at| at <= now)
}

impl MessageRow {
    /// The message as a reader may see it at `now`: past its `expires_at`,
    /// a tombstone (body `{}`), whether or not a sweep has removed the
    /// content yet.
    pub fn as_of(mut self, now: i64) -> Self {
        if is_expired(&self, now) {
            self.body = "{}".to_owned();
        }
        self
    }
}

impl InboxRow {
    /// The event as a reader may see it at `now`: every event about a
    /// message that has disappeared reads as `message.expired` with the
    /// tombstone, so a device that syncs late never sees its content, and
    /// learns it is gone whichever event it reads first.
    pub fn as_of(mut self, now: i64) -> Self {
        if let Some(m) = self.message.take() {
            if is_expired(&m, now) {
                self.kind = MESSAGE_EXPIRED.to_owned();
            }
            self.message = Some(m.as_of(now));
        }
        self
    }
}

super::operations! {
    expiry;
    /// Sets (`Some`, seconds) or clears a conversation's message TTL;
    /// messages sent afterwards get `expires_at`, earlier ones keep theirs.
    write fn set_message_ttl(conversation_id: u64, ttl_seconds: Option<u64>) -> ();
    /// A conversation's kind, group and message TTL; `None` if there is no
    /// such conversation.
    read fn message_ttl(conversation_id: u64) -> Option<ConversationTtl>;
    /// Removes up to `limit` messages whose `expires_at` is at or before
    /// `now`, soonest first, as [`crate::store::messages::recall`] removes
    /// content (body `{}`, earlier versions, the text index), unlinks the
    /// files they referenced and marks them `expired_at`. Each message is
    /// returned once, whichever of several nodes sweeps at the same time
    /// (a message another transaction holds is skipped, and a removed one
    /// is never taken again).
    write fn expire_due(now: i64, limit: usize) -> Vec<Removed>;
    /// Retention: removes up to `limit` messages sent before `before`, as
    /// [`expire_due`] does (their `expires_at` becomes `now` if it was
    /// later). Walks messages in id order from where the last call stopped
    /// (a mark kept in the store), so each call reads at most `limit`
    /// rows, however many it removed before.
    write fn retire_before(before: i64, now: i64, limit: usize) -> Vec<Removed>;
    /// Deletes the rows of those of `ids` (and their thumbnails) that no
    /// message references any more; returns `(id, sha256)` of each deleted.
    write fn delete_unreferenced_files(ids: &[String]) -> Vec<(String, String)>;
}

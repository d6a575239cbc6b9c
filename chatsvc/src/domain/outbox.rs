//! Events collected during a write, pushed after it commits.

use crate::store::Tx;
use bytes::Bytes;

use super::events::{Ephemeral, Stored};
use super::model::Message;
use super::{DomainError, Downlink};
use crate::store::messages::MessageRow;
use crate::store::{messages, StoreError};

/// Subtopic of stored events (they carry a cursor and are returned by sync).
pub const EVENTS: &str = "events";
/// Subtopic of presence changes (ephemeral).
pub const PRESENCE: &str = "presence";
/// Subtopic of typing indicators (ephemeral).
pub const TYPING: &str = "typing";

/// One push, or one message event for several users.
enum Item {
    Ready(u64, &'static str, Bytes),
    /// Serialized when pushed (after the commit, off the writer thread):
    /// once for every recipient, each with their own cursor.
    Message {
        kind: &'static str,
        row: MessageRow,
        deliveries: Vec<(u64, u64)>,
    },
}

/// Pushes to make once the write that produced them has committed.
#[derive(Default)]
pub struct Outbox {
    items: Vec<Item>,
    /// Who is connected, for decisions taken during the write (offline push).
    online: Option<std::sync::Arc<dyn Downlink>>,
}

impl std::fmt::Debug for Outbox {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("Outbox")
            .field("items", &self.items.len())
            .finish()
    }
}

/// `{"message":{...}}`, the fields of an event about a stored message:
/// serialized once, for every recipient's push and every webhook.
pub(crate) fn message_fields(row: &MessageRow) -> Result<String, DomainError> {
    let decoding = |e| DomainError::internal_from("decoding a stored message", e);
    let message = Message::try_from(row.clone()).map_err(decoding)?;
    let json = serde_json::to_string(&message).map_err(decoding)?;
    Ok(format!(r#"{{"message":{json}}}"#))
}

/// A message event's fields with `"mentioned":true` added.
fn mentioned_fields(fields: &str) -> String {
    match fields.trim_end().strip_suffix('}') {
        Some(open) => format!(r#"{open},"mentioned":true}}"#),
        None => fields.to_owned(),
    }
}

/// `{"type":KIND,"cursor":N,...fields}` from a fields object's JSON text.
/// `kind` is one of our own constants, so it needs no escaping.
fn compose(kind: &str, cursor: u64, fields: &str) -> String {
    let inner = fields
        .trim()
        .strip_prefix('{')
        .and_then(|f| f.strip_suffix('}'))
        .unwrap_or("")
        .trim();
    if inner.is_empty() {
        format!(r#"{{"type":"{kind}","cursor":{cursor}}}"#)
    } else {
        format!(r#"{{"type":"{kind}","cursor":{cursor},{inner}}}"#)
    }
}

impl Outbox {
    /// An outbox that can tell who is online while the write runs.
    pub fn with_presence(downlink: std::sync::Arc<dyn Downlink>) -> Self {
        Outbox {
            online: Some(downlink),
            ..Default::default()
        }
    }

    /// Does the user have a live connection? (False when unknown.)
    pub fn is_online(&self, user: u64) -> bool {
        self.online.as_ref().is_some_and(|d| d.is_online(user))
    }

    /// Stores `event` in `user`'s inbox and queues its push.
    pub fn emit(&mut self, c: &Tx<'_>, user: u64, event: &Stored<'_>) -> Result<u64, StoreError> {
        let (kind, json) = event.split()?;
        let cursor = messages::append(c, user, &kind, None, Some(&json))?;
        self.items.push(Item::Ready(
            user,
            EVENTS,
            Bytes::from(compose(&kind, cursor, &json)),
        ));
        Ok(cursor)
    }

    /// Queues the pushes of a message event already appended to the
    /// recipients' inboxes at `deliveries` (user, cursor).
    pub fn message(&mut self, kind: &'static str, row: &MessageRow, deliveries: Vec<(u64, u64)>) {
        if !deliveries.is_empty() {
            self.items.push(Item::Message {
                kind,
                row: row.clone(),
                deliveries,
            });
        }
    }

    /// Queues an ephemeral push (not stored, no cursor) to each of `users`.
    pub fn ephemeral(&mut self, users: impl IntoIterator<Item = u64>, event: &Ephemeral) {
        let payload = match event.to_json() {
            Ok(json) => Bytes::from(json),
            Err(e) => {
                tracing::error!(error = %e, ?event, "ephemeral event not pushed");
                return;
            }
        };
        for user in users {
            self.items
                .push(Item::Ready(user, event.subtopic(), payload.clone()));
        }
    }

    pub fn is_empty(&self) -> bool {
        self.items.is_empty()
    }

    /// Hands everything to the downlink, in order, as one batch.
    pub fn push(&self, downlink: &dyn Downlink) {
        if self.items.is_empty() {
            return;
        }
        let mut batch = Vec::with_capacity(self.items.len());
        for item in &self.items {
            match item {
                Item::Ready(user, subtopic, bytes) => batch.push((*user, *subtopic, bytes.clone())),
                Item::Message {
                    kind,
                    row,
                    deliveries,
                } => {
                    let fields = match message_fields(row) {
                        Ok(fields) => fields,
                        // Stored but not pushable: the recipients get it by sync.
                        Err(e) => {
                            tracing::error!(message = row.id, error = %e, "message not pushed");
                            continue;
                        }
                    };
                    // The users it mentions get `"mentioned": true` beside it.
                    let flagged = (*kind == super::messages::MESSAGE_CREATED
                        && row.extras.as_ref().is_some_and(|x| x.mentions.is_some()))
                    .then(|| mentioned_fields(&fields));
                    for &(user, cursor) in deliveries {
                        let fields = match &flagged {
                            Some(flagged) if super::replies::mentions_user(row, user) => flagged,
                            _ => &fields,
                        };
                        batch.push((user, EVENTS, Bytes::from(compose(kind, cursor, fields))));
                    }
                }
            }
        }
        let sent = downlink.push_batch(&batch);
        metrics::counter!(crate::metrics::EVENTS_PUSHED_TOTAL).increment(sent as u64);
    }
}

#[cfg(test)]
mod tests {
    use super::compose;

    #[test]
    fn composes_events() {
        assert_eq!(compose("a.b", 3, "{}"), r#"{"type":"a.b","cursor":3}"#);
        assert_eq!(
            compose("a.b", 3, r#"{"x":1}"#),
            r#"{"type":"a.b","cursor":3,"x":1}"#
        );
        let v: serde_json::Value =
            serde_json::from_str(&compose("k", 1, r#"{"m":{"y":[1,2]}}"#)).unwrap_or_default();
        assert_eq!(v["m"]["y"][1], 2);
    }
}

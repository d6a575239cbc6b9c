//! `Event`: one entry of a user's inbox, as sync returns it and MQTT pushes it,
//! and the ephemeral pushes (presence, typing) that share the stream.

use serde::{Deserialize, Deserializer, Serialize, Serializer};
use serde_json::{json, Value};

use crate::model::{FriendRequest, GroupInvitation, Message, Presence, User};
use crate::reactions::{PinEvent, ReactionEvent, SettingsEvent};

const MESSAGE_CREATED: &str = "message.created";
const MESSAGE_EDITED: &str = "message.edited";
const MESSAGE_RECALLED: &str = "message.recalled";
const MESSAGE_EXPIRED: &str = "message.expired";
const MESSAGE_HIDDEN: &str = "message.hidden";
const RECEIPT_READ: &str = "receipt.read";
const RECEIPT_DELIVERED: &str = "receipt.delivered";
const CONVERSATION_READ: &str = "conversation.read";
const FRIEND_REQUEST: &str = "friend.request";
const FRIEND_ADDED: &str = "friend.added";
const FRIEND_REMOVED: &str = "friend.removed";
const BLOCK_UPDATED: &str = "block.updated";
const GROUP_INVITATION: &str = "group.invitation";
const CONVERSATION_MESSAGE_TTL: &str = "conversation.message_ttl";
const PRESENCE: &str = "presence";
const TYPING: &str = "typing";
const REACTION_ADDED: &str = "reaction.added";
const REACTION_REMOVED: &str = "reaction.removed";
const PIN_ADDED: &str = "pin.added";
const PIN_REMOVED: &str = "pin.removed";
const CONVERSATION_SETTINGS: &str = "conversation.settings";

/// Every `type` this SDK parses into a typed variant.
const KNOWN: [&str; 21] = [
    REACTION_ADDED,
    REACTION_REMOVED,
    PIN_ADDED,
    PIN_REMOVED,
    CONVERSATION_SETTINGS,
    MESSAGE_CREATED,
    MESSAGE_EDITED,
    MESSAGE_RECALLED,
    MESSAGE_EXPIRED,
    CONVERSATION_MESSAGE_TTL,
    MESSAGE_HIDDEN,
    RECEIPT_READ,
    RECEIPT_DELIVERED,
    CONVERSATION_READ,
    FRIEND_REQUEST,
    FRIEND_ADDED,
    FRIEND_REMOVED,
    BLOCK_UPDATED,
    GROUP_INVITATION,
    PRESENCE,
    TYPING,
];

/// An event of the user's stream.
///
/// Two families share it:
/// - **inbox events** carry the user's gap-free inbox `cursor` (1, 2, 3,
///   ...). They are stored, returned by sync, and delivered by
///   [`EventStream`](crate::EventStream) exactly once, in cursor order;
/// - **ephemeral pushes** ([`Presence`](Event::Presence),
///   [`Typing`](Event::Typing)) have no cursor, are never stored or synced,
///   and are delivered as they arrive. One missed while offline is gone; ask
///   [`Client::presence`](crate::Client::presence) for the current state.
///
/// Event types this SDK does not know arrive as [`Event::Other`] with the raw
/// JSON, so an older SDK keeps working (and keeps its cursor moving) when the
/// server starts sending new kinds of events.
#[derive(Debug, Clone, PartialEq)]
#[non_exhaustive]
pub enum Event {
    /// `message.created`: a new message, user or system, in one of the
    /// user's conversations (the user's own sends included). `mentioned`:
    /// the message mentions this user (by id or `"all"`), which a client
    /// may notify for even in a muted conversation.
    MessageCreated {
        cursor: u64,
        message: Message,
        mentioned: bool,
    },
    /// `message.edited`: `message` is the edited message as it is now (new
    /// body, `edited_at` set). Replace the stored copy by `message.id`.
    MessageEdited { cursor: u64, message: Message },
    /// `message.recalled`: `message` is the tombstone (`body` is `{}`,
    /// `recalled_at` set). Replace the stored copy by `message.id`.
    MessageRecalled { cursor: u64, message: Message },
    /// `message.expired`: the message disappeared (its conversation's
    /// `message_ttl_seconds` passed since it was sent); `message` is the
    /// tombstone (`body` is `{}`). Drop it from the local history. Sync
    /// also shows earlier events about such a message this way.
    MessageExpired { cursor: u64, message: Message },
    /// `conversation.message_ttl`: `user_id` set the disappearing-messages
    /// timer of `conversation_id` (`None`: off); messages sent from now on
    /// disappear that many seconds after they are sent.
    ConversationMessageTtl {
        cursor: u64,
        conversation_id: u64,
        user_id: u64,
        message_ttl_seconds: Option<u64>,
    },
    /// `message.hidden`: this user deleted the message for themself (on this
    /// device or another); drop it from the local history.
    MessageHidden {
        cursor: u64,
        message_id: u64,
        conversation_id: u64,
    },
    /// `receipt.read`: `user_id` has read `conversation_id` up to `seq`.
    /// Sent to the senders of the newly read messages.
    ReceiptRead {
        cursor: u64,
        conversation_id: u64,
        user_id: u64,
        seq: u64,
    },
    /// `receipt.delivered`: a device of `user_id` has received
    /// `conversation_id` up to `seq`.
    ReceiptDelivered {
        cursor: u64,
        conversation_id: u64,
        user_id: u64,
        seq: u64,
    },
    /// `conversation.read`: this user's read marker in `conversation_id`
    /// moved to `read_seq` (on some device), so unread counts agree across
    /// devices.
    ConversationRead {
        cursor: u64,
        conversation_id: u64,
        read_seq: u64,
    },
    /// `friend.request`: a request to or from this user was made or changed
    /// status; `request` is its new state.
    FriendRequest { cursor: u64, request: FriendRequest },
    /// `friend.added`: this user and `user` became friends at `since` (Unix ms).
    FriendAdded { cursor: u64, user: User, since: i64 },
    /// `friend.removed`: the friendship with `user_id` ended (either side
    /// removed it, or one blocked the other).
    FriendRemoved { cursor: u64, user_id: u64 },
    /// `block.updated`: this user blocked (`blocked: true`) or unblocked
    /// `user_id`, on this device or another.
    BlockUpdated {
        cursor: u64,
        user_id: u64,
        blocked: bool,
    },
    /// `group.invitation`: an invitation to or from this user was made,
    /// accepted or declined, or cancelled by the group's dissolution;
    /// `invitation` is its new state.
    GroupInvitation {
        cursor: u64,
        invitation: GroupInvitation,
    },
    /// `reaction.added`: someone reacted to a message this user can see.
    ReactionAdded(ReactionEvent),
    /// `reaction.removed`: someone took their reaction back.
    ReactionRemoved(ReactionEvent),
    /// `pin.added`: a message of the conversation was pinned.
    PinAdded(PinEvent),
    /// `pin.removed`: a message was unpinned.
    PinRemoved(PinEvent),
    /// `conversation.settings`: this user's own settings of a conversation
    /// changed (mute, pinned, archived), on this device or another.
    ConversationSettings(SettingsEvent),
    /// Ephemeral, pushed on `users/{id}/presence`: a friend came online or
    /// went offline.
    Presence(Presence),
    /// Ephemeral, pushed on `users/{id}/typing`: `user_id` is typing in
    /// `conversation_id`. There is no "stopped" push: hide the indicator
    /// after a few seconds without a new one.
    Typing { conversation_id: u64, user_id: u64 },
    /// Any other event, as received. A known `type` whose payload does not
    /// parse also lands here, rather than stopping the stream.
    Other(Value),
}

/// The typed events as they are on the wire; converted into [`Event`].
#[derive(Deserialize)]
#[serde(tag = "type")]
enum Known {
    #[serde(rename = "message.created")]
    MessageCreated {
        cursor: u64,
        message: Message,
        #[serde(default)]
        mentioned: bool,
    },
    #[serde(rename = "message.edited")]
    MessageEdited { cursor: u64, message: Message },
    #[serde(rename = "message.recalled")]
    MessageRecalled { cursor: u64, message: Message },
    #[serde(rename = "message.expired")]
    MessageExpired { cursor: u64, message: Message },
    #[serde(rename = "conversation.message_ttl")]
    ConversationMessageTtl {
        cursor: u64,
        conversation_id: u64,
        user_id: u64,
        message_ttl_seconds: Option<u64>,
    },
    #[serde(rename = "message.hidden")]
    MessageHidden {
        cursor: u64,
        message_id: u64,
        conversation_id: u64,
    },
    #[serde(rename = "receipt.read")]
    ReceiptRead {
        cursor: u64,
        conversation_id: u64,
        user_id: u64,
        seq: u64,
    },
    #[serde(rename = "receipt.delivered")]
    ReceiptDelivered {
        cursor: u64,
        conversation_id: u64,
        user_id: u64,
        seq: u64,
    },
    #[serde(rename = "conversation.read")]
    ConversationRead {
        cursor: u64,
        conversation_id: u64,
        read_seq: u64,
    },
    #[serde(rename = "friend.request")]
    FriendRequest { cursor: u64, request: FriendRequest },
    #[serde(rename = "friend.added")]
    FriendAdded { cursor: u64, user: User, since: i64 },
    #[serde(rename = "friend.removed")]
    FriendRemoved { cursor: u64, user_id: u64 },
    #[serde(rename = "block.updated")]
    BlockUpdated {
        cursor: u64,
        user_id: u64,
        blocked: bool,
    },
    #[serde(rename = "group.invitation")]
    GroupInvitation {
        cursor: u64,
        invitation: GroupInvitation,
    },
    #[serde(rename = "reaction.added")]
    ReactionAdded(ReactionEvent),
    #[serde(rename = "reaction.removed")]
    ReactionRemoved(ReactionEvent),
    #[serde(rename = "pin.added")]
    PinAdded(PinEvent),
    #[serde(rename = "pin.removed")]
    PinRemoved(PinEvent),
    #[serde(rename = "conversation.settings")]
    ConversationSettings(SettingsEvent),
    #[serde(rename = "presence")]
    Presence(Presence),
    #[serde(rename = "typing")]
    Typing { conversation_id: u64, user_id: u64 },
}

impl From<Known> for Event {
    fn from(known: Known) -> Event {
        match known {
            Known::MessageCreated {
                cursor,
                message,
                mentioned,
            } => Event::MessageCreated {
                cursor,
                message,
                mentioned,
            },
            Known::MessageEdited { cursor, message } => Event::MessageEdited { cursor, message },
            Known::MessageRecalled { cursor, message } => {
                Event::MessageRecalled { cursor, message }
            }
            Known::MessageExpired { cursor, message } => Event::MessageExpired { cursor, message },
            Known::ConversationMessageTtl {
                cursor,
                conversation_id,
                user_id,
                message_ttl_seconds,
            } => Event::ConversationMessageTtl {
                cursor,
                conversation_id,
                user_id,
                message_ttl_seconds,
            },
            Known::MessageHidden {
                cursor,
                message_id,
                conversation_id,
            } => Event::MessageHidden {
                cursor,
                message_id,
                conversation_id,
            },
            Known::ReceiptRead {
                cursor,
                conversation_id,
                user_id,
                seq,
            } => Event::ReceiptRead {
                cursor,
                conversation_id,
                user_id,
                seq,
            },
            Known::ReceiptDelivered {
                cursor,
                conversation_id,
                user_id,
                seq,
            } => Event::ReceiptDelivered {
                cursor,
                conversation_id,
                user_id,
                seq,
            },
            Known::ConversationRead {
                cursor,
                conversation_id,
                read_seq,
            } => Event::ConversationRead {
                cursor,
                conversation_id,
                read_seq,
            },
            Known::FriendRequest { cursor, request } => Event::FriendRequest { cursor, request },
            Known::FriendAdded {
                cursor,
                user,
                since,
            } => Event::FriendAdded {
                cursor,
                user,
                since,
            },
            Known::FriendRemoved { cursor, user_id } => Event::FriendRemoved { cursor, user_id },
            Known::BlockUpdated {
                cursor,
                user_id,
                blocked,
            } => Event::BlockUpdated {
                cursor,
                user_id,
                blocked,
            },
            Known::GroupInvitation { cursor, invitation } => {
                Event::GroupInvitation { cursor, invitation }
            }
            Known::ReactionAdded(e) => Event::ReactionAdded(e),
            Known::ReactionRemoved(e) => Event::ReactionRemoved(e),
            Known::PinAdded(e) => Event::PinAdded(e),
            Known::PinRemoved(e) => Event::PinRemoved(e),
            Known::ConversationSettings(e) => Event::ConversationSettings(e),
            Known::Presence(presence) => Event::Presence(presence),
            Known::Typing {
                conversation_id,
                user_id,
            } => Event::Typing {
                conversation_id,
                user_id,
            },
        }
    }
}

impl Event {
    /// The inbox cursor, if the event has one. Events without a cursor are not
    /// part of the inbox (ephemeral pushes) and bypass ordering.
    pub fn cursor(&self) -> Option<u64> {
        match self {
            Event::MessageCreated { cursor, .. }
            | Event::MessageEdited { cursor, .. }
            | Event::MessageRecalled { cursor, .. }
            | Event::MessageExpired { cursor, .. }
            | Event::ConversationMessageTtl { cursor, .. }
            | Event::MessageHidden { cursor, .. }
            | Event::ReceiptRead { cursor, .. }
            | Event::ReceiptDelivered { cursor, .. }
            | Event::ConversationRead { cursor, .. }
            | Event::FriendRequest { cursor, .. }
            | Event::FriendAdded { cursor, .. }
            | Event::FriendRemoved { cursor, .. }
            | Event::BlockUpdated { cursor, .. }
            | Event::GroupInvitation { cursor, .. } => Some(*cursor),
            Event::ReactionAdded(e) | Event::ReactionRemoved(e) => Some(e.cursor),
            Event::PinAdded(e) | Event::PinRemoved(e) => Some(e.cursor),
            Event::ConversationSettings(e) => Some(e.cursor),
            Event::Presence(_) | Event::Typing { .. } => None,
            Event::Other(value) => value.get("cursor").and_then(Value::as_u64),
        }
    }

    /// Whether this is an ephemeral push ([`Presence`](Event::Presence),
    /// [`Typing`](Event::Typing)): never stored, never synced, no cursor.
    pub fn is_ephemeral(&self) -> bool {
        matches!(self, Event::Presence(_) | Event::Typing { .. })
    }

    /// The message an event carries in full (created, edited, recalled,
    /// expired).
    pub fn message(&self) -> Option<&Message> {
        match self {
            Event::MessageCreated { message, .. }
            | Event::MessageEdited { message, .. }
            | Event::MessageRecalled { message, .. }
            | Event::MessageExpired { message, .. } => Some(message),
            _ => None,
        }
    }

    /// The event's `type` string (`""` if an unknown event lacks one).
    pub fn kind(&self) -> &str {
        match self {
            Event::MessageCreated { .. } => MESSAGE_CREATED,
            Event::MessageEdited { .. } => MESSAGE_EDITED,
            Event::MessageRecalled { .. } => MESSAGE_RECALLED,
            Event::MessageExpired { .. } => MESSAGE_EXPIRED,
            Event::ConversationMessageTtl { .. } => CONVERSATION_MESSAGE_TTL,
            Event::MessageHidden { .. } => MESSAGE_HIDDEN,
            Event::ReceiptRead { .. } => RECEIPT_READ,
            Event::ReceiptDelivered { .. } => RECEIPT_DELIVERED,
            Event::ConversationRead { .. } => CONVERSATION_READ,
            Event::FriendRequest { .. } => FRIEND_REQUEST,
            Event::FriendAdded { .. } => FRIEND_ADDED,
            Event::FriendRemoved { .. } => FRIEND_REMOVED,
            Event::BlockUpdated { .. } => BLOCK_UPDATED,
            Event::GroupInvitation { .. } => GROUP_INVITATION,
            Event::ReactionAdded(_) => REACTION_ADDED,
            Event::ReactionRemoved(_) => REACTION_REMOVED,
            Event::PinAdded(_) => PIN_ADDED,
            Event::PinRemoved(_) => PIN_REMOVED,
            Event::ConversationSettings(_) => CONVERSATION_SETTINGS,
            Event::Presence(_) => PRESENCE,
            Event::Typing { .. } => TYPING,
            Event::Other(value) => value.get("type").and_then(Value::as_str).unwrap_or(""),
        }
    }

    /// Parses an event from JSON. Fails only when the input is not a JSON
    /// object; see [`Event::from_value`].
    pub fn from_slice(bytes: &[u8]) -> Result<Event, serde_json::Error> {
        let value: Value = serde_json::from_slice(bytes)?;
        Event::from_value(value).map_err(serde::de::Error::custom)
    }

    /// Types a JSON event. Fails only when `value` is not an object.
    pub fn from_value(value: Value) -> Result<Event, NotAnObject> {
        if !value.is_object() {
            return Err(NotAnObject);
        }
        let kind = value.get("type").and_then(Value::as_str).unwrap_or("");
        if !KNOWN.contains(&kind) {
            return Ok(Event::Other(value));
        }
        match Known::deserialize(&value) {
            Ok(known) => Ok(known.into()),
            Err(err) => {
                tracing::warn!(%err, kind, "malformed event passed through untyped");
                Ok(Event::Other(value))
            }
        }
    }

    /// The JSON form, as the server sends it.
    pub fn to_value(&self) -> Value {
        let kind = self.kind();
        match self {
            Event::MessageCreated {
                cursor,
                message,
                mentioned: true,
            } => {
                json!({"type": kind, "cursor": cursor, "message": message, "mentioned": true})
            }
            Event::MessageCreated {
                cursor, message, ..
            }
            | Event::MessageEdited { cursor, message }
            | Event::MessageRecalled { cursor, message }
            | Event::MessageExpired { cursor, message } => {
                json!({"type": kind, "cursor": cursor, "message": message})
            }
            Event::ConversationMessageTtl {
                cursor,
                conversation_id,
                user_id,
                message_ttl_seconds,
            } => json!({
                "type": kind, "cursor": cursor, "conversation_id": conversation_id,
                "user_id": user_id, "message_ttl_seconds": message_ttl_seconds,
            }),
            Event::MessageHidden {
                cursor,
                message_id,
                conversation_id,
            } => json!({
                "type": kind, "cursor": cursor,
                "message_id": message_id, "conversation_id": conversation_id,
            }),
            Event::ReceiptRead {
                cursor,
                conversation_id,
                user_id,
                seq,
            }
            | Event::ReceiptDelivered {
                cursor,
                conversation_id,
                user_id,
                seq,
            } => json!({
                "type": kind, "cursor": cursor,
                "conversation_id": conversation_id, "user_id": user_id, "seq": seq,
            }),
            Event::ConversationRead {
                cursor,
                conversation_id,
                read_seq,
            } => json!({
                "type": kind, "cursor": cursor,
                "conversation_id": conversation_id, "read_seq": read_seq,
            }),
            Event::FriendRequest { cursor, request } => {
                json!({"type": kind, "cursor": cursor, "request": request})
            }
            Event::FriendAdded {
                cursor,
                user,
                since,
            } => json!({"type": kind, "cursor": cursor, "user": user, "since": since}),
            Event::FriendRemoved { cursor, user_id } => {
                json!({"type": kind, "cursor": cursor, "user_id": user_id})
            }
            Event::BlockUpdated {
                cursor,
                user_id,
                blocked,
            } => json!({"type": kind, "cursor": cursor, "user_id": user_id, "blocked": blocked}),
            Event::GroupInvitation { cursor, invitation } => {
                json!({"type": kind, "cursor": cursor, "invitation": invitation})
            }
            Event::ReactionAdded(e) | Event::ReactionRemoved(e) => with_type(kind, e),
            Event::PinAdded(e) | Event::PinRemoved(e) => with_type(kind, e),
            Event::ConversationSettings(e) => with_type(kind, e),
            Event::Presence(presence) => json!({
                "type": kind, "user_id": presence.user_id,
                "online": presence.online, "last_seen": presence.last_seen,
            }),
            Event::Typing {
                conversation_id,
                user_id,
            } => json!({"type": kind, "conversation_id": conversation_id, "user_id": user_id}),
            Event::Other(value) => value.clone(),
        }
    }
}

/// `payload`'s fields with `"type": kind`.
fn with_type(kind: &str, payload: &impl Serialize) -> Value {
    let mut value = serde_json::to_value(payload).unwrap_or_else(|_| json!({}));
    if let Some(fields) = value.as_object_mut() {
        fields.insert("type".into(), kind.into());
    }
    value
}

/// An event payload that is not a JSON object.
#[derive(Debug, Clone, Copy, PartialEq, Eq, thiserror::Error)]
#[error("event is not a JSON object")]
pub struct NotAnObject;

impl<'de> Deserialize<'de> for Event {
    fn deserialize<D: Deserializer<'de>>(deserializer: D) -> Result<Self, D::Error> {
        let value = Value::deserialize(deserializer)?;
        Event::from_value(value).map_err(serde::de::Error::custom)
    }
}

impl Serialize for Event {
    fn serialize<S: Serializer>(&self, serializer: S) -> Result<S::Ok, S::Error> {
        self.to_value().serialize(serializer)
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::model::Recipient;

    /// A `Message` exactly as the schema describes it.
    fn message_json() -> Value {
        json!({
            "id": 10, "conversation_id": 2, "seq": 1, "sender_id": 4,
            "to": {"user": 5}, "kind": "user", "client_msg_id": "abc",
            "body": {"text": "hello"}, "sent_at": 1700000000000i64,
            "edited_at": null, "recalled_at": null
        })
    }

    fn user_json() -> Value {
        json!({"id": 9, "username": "bob", "display_name": "Bob", "created_at": 5})
    }

    fn request_json(status: &str) -> Value {
        json!({
            "id": 3, "from": 9, "to": 4, "note": "hi, it's bob", "status": status,
            "created_at": 1700000000000i64, "expires_at": 1702592000000i64
        })
    }

    /// Parses `raw`, checks the typed variant with `check`, and that the
    /// event survives the trip back to JSON unchanged.
    fn typed(raw: Value, check: impl FnOnce(&Event) -> bool) -> Result<Event, serde_json::Error> {
        let event = Event::from_slice(raw.to_string().as_bytes())?;
        assert!(check(&event), "unexpected parse of {raw}: {event:?}");
        assert_eq!(event.to_value(), raw, "round trip");
        assert_eq!(event.kind(), raw["type"].as_str().unwrap_or_default());
        assert_eq!(event.cursor(), raw["cursor"].as_u64());
        Ok(event)
    }

    #[test]
    fn parses_message_edits_recalls_and_hides() -> Result<(), serde_json::Error> {
        let mut edited = message_json();
        edited["body"] = json!({"text": "hello, edited"});
        edited["edited_at"] = json!(1700000001000i64);
        let event = typed(
            json!({"type": "message.edited", "cursor": 8, "message": edited}),
            |e| matches!(e, Event::MessageEdited { cursor: 8, message } if message.edited_at.is_some()),
        )?;
        assert_eq!(
            event.message().and_then(Message::text),
            Some("hello, edited")
        );

        let mut tombstone = message_json();
        tombstone["body"] = json!({});
        tombstone["recalled_at"] = json!(1700000002000i64);
        let event = typed(
            json!({"type": "message.recalled", "cursor": 9, "message": tombstone}),
            |e| matches!(e, Event::MessageRecalled { cursor: 9, .. }),
        )?;
        let message = event
            .message()
            .ok_or_else(|| serde::de::Error::custom("no message"))?;
        assert!(message.is_recalled());
        assert_eq!(message.text(), None);

        typed(
            json!({"type": "message.hidden", "cursor": 10, "message_id": 10, "conversation_id": 2}),
            |e| {
                *e == Event::MessageHidden {
                    cursor: 10,
                    message_id: 10,
                    conversation_id: 2,
                }
            },
        )?;
        Ok(())
    }

    #[test]
    fn parses_receipts_and_read_markers() -> Result<(), serde_json::Error> {
        typed(
            json!({"type": "receipt.read", "cursor": 11, "conversation_id": 2, "user_id": 5, "seq": 3}),
            |e| {
                *e == Event::ReceiptRead {
                    cursor: 11,
                    conversation_id: 2,
                    user_id: 5,
                    seq: 3,
                }
            },
        )?;
        typed(
            json!({"type": "receipt.delivered", "cursor": 12, "conversation_id": 2, "user_id": 5, "seq": 4}),
            |e| {
                *e == Event::ReceiptDelivered {
                    cursor: 12,
                    conversation_id: 2,
                    user_id: 5,
                    seq: 4,
                }
            },
        )?;
        typed(
            json!({"type": "conversation.read", "cursor": 13, "conversation_id": 2, "read_seq": 0}),
            |e| {
                *e == Event::ConversationRead {
                    cursor: 13,
                    conversation_id: 2,
                    read_seq: 0,
                }
            },
        )?;
        Ok(())
    }

    #[test]
    fn parses_friend_and_block_events() -> Result<(), serde_json::Error> {
        use crate::model::FriendRequestStatus;
        let event = typed(
            json!({"type": "friend.request", "cursor": 14, "request": request_json("pending")}),
            |e| matches!(e, Event::FriendRequest { cursor: 14, .. }),
        )?;
        if let Event::FriendRequest { request, .. } = event {
            assert_eq!(request.status, FriendRequestStatus::Pending);
            assert_eq!((request.from, request.to), (9, 4));
            assert_eq!(request.note.as_deref(), Some("hi, it's bob"));
        }
        typed(
            json!({"type": "friend.request", "cursor": 15, "request": request_json("accepted")}),
            |e| matches!(e, Event::FriendRequest { request, .. } if request.status == FriendRequestStatus::Accepted),
        )?;
        typed(
            json!({"type": "friend.added", "cursor": 16, "user": user_json(), "since": 1700000003000i64}),
            |e| matches!(e, Event::FriendAdded { cursor: 16, user, since: 1700000003000 } if user.username == "bob"),
        )?;
        typed(
            json!({"type": "friend.removed", "cursor": 17, "user_id": 9}),
            |e| {
                *e == Event::FriendRemoved {
                    cursor: 17,
                    user_id: 9,
                }
            },
        )?;
        typed(
            json!({"type": "block.updated", "cursor": 18, "user_id": 9, "blocked": true}),
            |e| {
                *e == Event::BlockUpdated {
                    cursor: 18,
                    user_id: 9,
                    blocked: true,
                }
            },
        )?;
        Ok(())
    }

    #[test]
    fn parses_ephemeral_pushes_without_cursor() -> Result<(), serde_json::Error> {
        let online = typed(
            json!({"type": "presence", "user_id": 9, "online": true, "last_seen": null}),
            |e| matches!(e, Event::Presence(p) if p.user_id == 9 && p.online && p.last_seen.is_none()),
        )?;
        assert!(online.is_ephemeral());
        typed(
            json!({"type": "presence", "user_id": 9, "online": false, "last_seen": 1700000004000i64}),
            |e| matches!(e, Event::Presence(p) if !p.online && p.last_seen == Some(1700000004000)),
        )?;
        let typing = typed(
            json!({"type": "typing", "conversation_id": 2, "user_id": 9}),
            |e| {
                *e == Event::Typing {
                    conversation_id: 2,
                    user_id: 9,
                }
            },
        )?;
        assert!(typing.is_ephemeral());
        assert_eq!(typing.cursor(), None);
        Ok(())
    }

    #[test]
    fn inbox_events_are_not_ephemeral() -> Result<(), serde_json::Error> {
        let event: Event =
            serde_json::from_value(json!({"type": "friend.removed", "cursor": 1, "user_id": 9}))?;
        assert!(!event.is_ephemeral());
        assert!(!Event::Other(json!({"type": "x"})).is_ephemeral());
        Ok(())
    }

    #[test]
    fn new_fields_from_a_newer_server_are_ignored() -> Result<(), serde_json::Error> {
        let raw = json!({
            "type": "receipt.read", "cursor": 5, "conversation_id": 2, "user_id": 5,
            "seq": 3, "device": "phone"
        });
        let event = Event::from_value(raw).map_err(serde::de::Error::custom)?;
        assert!(matches!(event, Event::ReceiptRead { seq: 3, .. }));
        Ok(())
    }

    #[test]
    fn every_malformed_known_type_degrades_to_other_keeping_its_cursor(
    ) -> Result<(), serde_json::Error> {
        for kind in KNOWN {
            let raw = json!({"type": kind, "cursor": 21, "user_id": "not a number"});
            let event = Event::from_slice(raw.to_string().as_bytes())?;
            assert_eq!(event, Event::Other(raw.clone()), "{kind}");
            assert_eq!(event.kind(), kind);
            assert_eq!(
                event.cursor(),
                Some(21),
                "{kind}: cursor still usable for ordering"
            );
        }
        Ok(())
    }

    #[test]
    fn parses_message_created() -> Result<(), serde_json::Error> {
        let raw = json!({"type": "message.created", "cursor": 7, "message": message_json()});
        let event = Event::from_slice(raw.to_string().as_bytes())?;
        match &event {
            Event::MessageCreated {
                cursor,
                message,
                mentioned,
            } => {
                assert!(!mentioned);
                assert_eq!(*cursor, 7);
                assert_eq!(message.text(), Some("hello"));
                assert_eq!(message.to, Recipient::User(5));
            }
            other => panic!("expected MessageCreated, got {other:?}"),
        }
        assert_eq!(event.cursor(), Some(7));
        assert_eq!(event.kind(), "message.created");
        assert_eq!(event.to_value(), raw);
        Ok(())
    }

    #[test]
    fn unknown_type_passes_through_with_cursor() -> Result<(), serde_json::Error> {
        let raw = json!({"type": "friend.requested", "cursor": 3, "from": 9});
        let event: Event = serde_json::from_value(raw.clone())?;
        assert_eq!(event, Event::Other(raw.clone()));
        assert_eq!(event.cursor(), Some(3));
        assert_eq!(event.kind(), "friend.requested");
        assert_eq!(serde_json::to_value(&event)?, raw);
        Ok(())
    }

    #[test]
    fn malformed_known_type_degrades_to_other() -> Result<(), serde_json::Error> {
        let raw = json!({"type": "message.created", "cursor": 4, "message": {"id": "x"}});
        let event = Event::from_slice(raw.to_string().as_bytes())?;
        assert_eq!(event, Event::Other(raw));
        assert_eq!(event.cursor(), Some(4), "cursor still usable for ordering");
        Ok(())
    }

    #[test]
    fn event_without_cursor_or_type() -> Result<(), serde_json::Error> {
        let event = Event::from_slice(br#"{"typing": true}"#)?;
        assert_eq!(event.cursor(), None);
        assert_eq!(event.kind(), "");
        Ok(())
    }

    #[test]
    fn rejects_non_objects() {
        assert!(Event::from_slice(b"[1,2]").is_err());
        assert!(Event::from_slice(b"not json").is_err());
        assert_eq!(Event::from_value(json!(5)), Err(NotAnObject));
    }

    #[test]
    fn sync_page_with_mixed_events() -> Result<(), serde_json::Error> {
        let page: crate::SyncPage = serde_json::from_value(json!({
            "events": [
                {"type": "message.created", "cursor": 1, "message": message_json()},
                {"type": "group.joined", "cursor": 2, "group": {"id": 1}}
            ],
            "cursor": 2,
            "has_more": false
        }))?;
        let cursors: Vec<_> = page.events.iter().map(Event::cursor).collect();
        assert_eq!(cursors, [Some(1), Some(2)]);
        assert!(matches!(page.events[0], Event::MessageCreated { .. }));
        assert!(matches!(page.events[1], Event::Other(_)));
        Ok(())
    }
}

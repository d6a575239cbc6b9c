//! Every event a user is pushed, as types. A [`Stored`] event goes into the
//! user's inbox (it gets a `cursor`, sync returns it, and it is pushed on
//! `users/{id}/events`); an [`Ephemeral`] one is pushed once and kept
//! nowhere (presence, typing); a [`Replay`] one is what the gateway
//! makes for a resumed persistent MQTT session. Each variant's `type` and fields are the
//! wire shape `schemas/mqchat.schema.json` publishes, and a test holds the
//! two together.
//!
//! The four message events (`message.created`, `message.edited`,
//! `message.recalled`, `message.expired`) are the exception: their one
//! field is the stored message, which `Outbox::message` serializes once for
//! every recipient (with `mentioned: true` beside it on a mentioned
//! reader's `message.created`, `domain::replies`); [`MESSAGE_EVENTS`] names
//! them.

use serde::Serialize;
use serde_json::{Map, Value};

use super::expiry::MESSAGE_EXPIRED;
use super::messages::{MESSAGE_CREATED, MESSAGE_EDITED, MESSAGE_RECALLED};
use super::model::{FriendRequest, GroupInvitation, User};
use super::outbox::{PRESENCE, TYPING};
use super::settings::ConversationSettings;

/// The events whose one field is a stored message, `{"message": {...}}`
/// (`message.expired`'s a tombstone, body `{}`).
pub const MESSAGE_EVENTS: [&str; 4] = [
    MESSAGE_CREATED,
    MESSAGE_EDITED,
    MESSAGE_RECALLED,
    MESSAGE_EXPIRED,
];

/// An event for a user's inbox, but for the message events.
#[derive(Debug, Serialize)]
#[serde(tag = "type")]
pub enum Stored<'a> {
    /// The user deleted a message for themself.
    #[serde(rename = "message.hidden")]
    MessageHidden {
        message_id: u64,
        conversation_id: u64,
    },
    /// `user_id` read the conversation up to `seq` (to the senders).
    #[serde(rename = "receipt.read")]
    ReceiptRead {
        conversation_id: u64,
        user_id: u64,
        seq: u64,
    },
    /// A device of `user_id` received the conversation up to `seq`.
    #[serde(rename = "receipt.delivered")]
    ReceiptDelivered {
        conversation_id: u64,
        user_id: u64,
        seq: u64,
    },
    /// The user's own read marker moved (to their other devices).
    #[serde(rename = "conversation.read")]
    ConversationRead { conversation_id: u64, read_seq: u64 },
    /// A friend request was made or answered.
    #[serde(rename = "friend.request")]
    FriendRequest { request: &'a FriendRequest },
    #[serde(rename = "friend.added")]
    FriendAdded { user: &'a User, since: i64 },
    #[serde(rename = "friend.removed")]
    FriendRemoved { user_id: u64 },
    #[serde(rename = "block.updated")]
    BlockUpdated { user_id: u64, blocked: bool },
    /// A group invitation was made or answered (to invitee and inviter).
    #[serde(rename = "group.invitation")]
    GroupInvitation { invitation: &'a GroupInvitation },
    /// `user_id` reacted to a message with `emoji`; `count`: how many
    /// have reacted so now (to the members who can see the message).
    #[serde(rename = "reaction.added")]
    ReactionAdded(ReactionChange<'a>),
    /// `user_id` took their `emoji` back; `count` as above.
    #[serde(rename = "reaction.removed")]
    ReactionRemoved(ReactionChange<'a>),
    /// `user_id` pinned a message of the conversation (to the members who
    /// can see it).
    #[serde(rename = "pin.added")]
    PinAdded(PinChange),
    #[serde(rename = "pin.removed")]
    PinRemoved(PinChange),
    /// The user's own settings of a conversation changed (to the user's
    /// devices only).
    #[serde(rename = "conversation.settings")]
    ConversationSettings {
        conversation_id: u64,
        settings: &'a ConversationSettings,
    },
    /// `user_id` set the conversation's message TTL (`null`: off); to
    /// every member.
    #[serde(rename = "conversation.message_ttl")]
    ConversationMessageTtl {
        conversation_id: u64,
        user_id: u64,
        message_ttl_seconds: Option<u64>,
    },
}

/// The fields of `reaction.added` and `reaction.removed`.
#[derive(Debug, Serialize)]
pub struct ReactionChange<'a> {
    pub conversation_id: u64,
    pub message_id: u64,
    pub user_id: u64,
    pub emoji: &'a str,
    pub count: u64,
}

/// The fields of `pin.added` and `pin.removed`: who pinned or unpinned.
#[derive(Debug, Serialize)]
pub struct PinChange {
    pub conversation_id: u64,
    pub message_id: u64,
    pub user_id: u64,
}

impl Stored<'_> {
    /// The event's `type`, and its other fields as a JSON object's text:
    /// how the inbox keeps it (the cursor is added when it is stored).
    pub fn split(&self) -> Result<(String, String), serde_json::Error> {
        let mut fields = object(self)?;
        let kind = match fields.remove("type") {
            Some(Value::String(kind)) => kind,
            _ => return Err(serde::ser::Error::custom("an event without a type")),
        };
        Ok((kind, Value::Object(fields).to_string()))
    }
}

/// A push that is not stored: no cursor, not in sync.
#[derive(Debug, Serialize)]
#[serde(tag = "type")]
pub enum Ephemeral {
    /// To friends, on `users/{id}/presence`.
    #[serde(rename = "presence")]
    Presence {
        user_id: u64,
        online: bool,
        last_seen: Option<i64>,
    },
    /// To the conversation's other members, on `users/{id}/typing`.
    #[serde(rename = "typing")]
    Typing { conversation_id: u64, user_id: u64 },
}

impl Ephemeral {
    /// The subtopic it is pushed on.
    pub fn subtopic(&self) -> &'static str {
        match self {
            Ephemeral::Presence { .. } => PRESENCE,
            Ephemeral::Typing { .. } => TYPING,
        }
    }

    /// The payload.
    pub fn to_json(&self) -> Result<String, serde_json::Error> {
        Ok(Value::Object(object(self)?).to_string())
    }
}

/// What the gateway sends a resumed persistent MQTT session, on
/// `users/{id}/events`, in place of stored events it does not replay.
#[derive(Debug, Serialize)]
#[serde(tag = "type")]
pub enum Replay<'a> {
    /// Events `after + 1 ..= until` are over the bound
    /// (`--mqtt-session-backlog`, `--mqtt-session-max-age`): only
    /// `GET /v1/sync?after=AFTER` has them.
    #[serde(rename = "sync.required")]
    SyncRequired {
        after: u64,
        until: u64,
        /// `backlog` or `age`.
        reason: &'a str,
    },
}

impl Replay<'_> {
    /// The payload.
    pub fn to_json(&self) -> Result<String, serde_json::Error> {
        Ok(Value::Object(object(self)?).to_string())
    }
}

/// An event as a JSON object, its keys in the order the pushes have always
/// had (serde_json's sorted map).
fn object(event: &impl Serialize) -> Result<Map<String, Value>, serde_json::Error> {
    match serde_json::to_value(event)? {
        Value::Object(map) => Ok(map),
        _ => Err(serde::ser::Error::custom("an event that is not an object")),
    }
}

#[cfg(test)]
mod tests {
    use std::collections::{BTreeMap, BTreeSet};

    use super::*;

    /// One of each variant. The match makes a new variant a compile error
    /// here until it has a sample.
    fn samples<'a>(
        user: &'a User,
        request: &'a FriendRequest,
        invitation: &'a GroupInvitation,
        settings: &'a ConversationSettings,
    ) -> (Vec<Stored<'a>>, Vec<Ephemeral>) {
        let reaction = || ReactionChange {
            conversation_id: 1,
            message_id: 2,
            user_id: 3,
            emoji: "👍",
            count: 1,
        };
        let pin = || PinChange {
            conversation_id: 1,
            message_id: 2,
            user_id: 3,
        };
        let stored = vec![
            Stored::MessageHidden {
                message_id: 1,
                conversation_id: 2,
            },
            Stored::ReceiptRead {
                conversation_id: 1,
                user_id: 2,
                seq: 3,
            },
            Stored::ReceiptDelivered {
                conversation_id: 1,
                user_id: 2,
                seq: 3,
            },
            Stored::ConversationRead {
                conversation_id: 1,
                read_seq: 2,
            },
            Stored::FriendRequest { request },
            Stored::FriendAdded { user, since: 5 },
            Stored::FriendRemoved { user_id: 1 },
            Stored::BlockUpdated {
                user_id: 1,
                blocked: true,
            },
            Stored::GroupInvitation { invitation },
            Stored::ReactionAdded(reaction()),
            Stored::ReactionRemoved(reaction()),
            Stored::PinAdded(pin()),
            Stored::PinRemoved(pin()),
            Stored::ConversationSettings {
                conversation_id: 1,
                settings,
            },
            Stored::ConversationMessageTtl {
                conversation_id: 1,
                user_id: 2,
                message_ttl_seconds: Some(60),
            },
        ];
        for event in &stored {
            match event {
                Stored::MessageHidden { .. }
                | Stored::ReceiptRead { .. }
                | Stored::ReceiptDelivered { .. }
                | Stored::ConversationRead { .. }
                | Stored::FriendRequest { .. }
                | Stored::FriendAdded { .. }
                | Stored::FriendRemoved { .. }
                | Stored::BlockUpdated { .. }
                | Stored::GroupInvitation { .. }
                | Stored::ReactionAdded(_)
                | Stored::ReactionRemoved(_)
                | Stored::PinAdded(_)
                | Stored::PinRemoved(_)
                | Stored::ConversationSettings { .. }
                | Stored::ConversationMessageTtl { .. } => {}
            }
        }
        let ephemeral = vec![
            Ephemeral::Presence {
                user_id: 1,
                online: true,
                last_seen: None,
            },
            Ephemeral::Typing {
                conversation_id: 1,
                user_id: 2,
            },
        ];
        for event in &ephemeral {
            match event {
                Ephemeral::Presence { .. } | Ephemeral::Typing { .. } => {}
            }
        }
        (stored, ephemeral)
    }

    /// The schema's property names of each event, by its `type` const.
    fn schema_events() -> Result<BTreeMap<String, BTreeSet<String>>, serde_json::Error> {
        let schema: Value =
            serde_json::from_str(include_str!("../../../schemas/mqchat.schema.json"))?;
        let mut events = BTreeMap::new();
        for def in schema["$defs"]
            .as_object()
            .into_iter()
            .flatten()
            .map(|(_, d)| d)
        {
            if let Some(kind) = def["properties"]["type"]["const"].as_str() {
                let keys = def["properties"].as_object().into_iter().flatten();
                events.insert(kind.to_owned(), keys.map(|(k, _)| k.clone()).collect());
            }
        }
        Ok(events)
    }

    #[test]
    fn the_event_types_are_the_schemas_both_ways() -> Result<(), serde_json::Error> {
        let user = User {
            id: 1,
            username: "amy".into(),
            display_name: None,
            created_at: 0,
            group_add_policy: None,
        };
        let request = FriendRequest {
            id: 1,
            from: 1,
            to: 2,
            note: None,
            status: "pending".into(),
            created_at: 0,
            expires_at: 1,
        };
        let invitation = GroupInvitation {
            id: 1,
            group_id: 2,
            group_name: "g".into(),
            inviter_id: 1,
            invitee_id: 2,
            status: "pending".into(),
            created_at: 0,
        };
        let settings = ConversationSettings::default();
        let (stored, ephemeral) = samples(&user, &request, &invitation, &settings);
        let schema = schema_events()?;

        let mut ours = BTreeMap::new();
        for event in &stored {
            let (kind, fields) = event.split()?;
            let fields: Map<String, Value> = serde_json::from_str(&fields)?;
            let keys = fields
                .keys()
                .cloned()
                .chain(["type".into(), "cursor".into()]);
            ours.insert(kind, keys.collect::<BTreeSet<String>>());
        }
        for kind in MESSAGE_EVENTS {
            let mut keys = BTreeSet::from(["type", "cursor", "message"].map(String::from));
            // `Outbox::push` and sync flag the mentioned reader's copy.
            if kind == MESSAGE_CREATED {
                keys.insert("mentioned".into());
            }
            ours.insert(kind.to_owned(), keys);
        }
        let replay = Replay::SyncRequired {
            after: 1,
            until: 2,
            reason: "backlog",
        };
        let json: Map<String, Value> = serde_json::from_str(&replay.to_json()?)?;
        ours.insert("sync.required".to_owned(), json.keys().cloned().collect());
        let replay = Replay::SyncRequired {
            after: 1,
            until: 2,
            reason: "backlog",
        };
        let json: Map<String, Value> = serde_json::from_str(&replay.to_json()?)?;
        ours.insert("sync.required".to_owned(), json.keys().cloned().collect());
        for event in &ephemeral {
            let json: Map<String, Value> = serde_json::from_str(&event.to_json()?)?;
            let kind = json["type"].as_str().unwrap_or_default().to_owned();
            assert_eq!(event.subtopic(), kind, "pushed on users/{{id}}/{kind}");
            ours.insert(kind, json.keys().cloned().collect());
        }
        assert_eq!(
            ours.keys().collect::<Vec<_>>(),
            schema.keys().collect::<Vec<_>>(),
            "event types here and in schemas/mqchat.schema.json"
        );
        for (kind, keys) in &ours {
            assert_eq!(Some(keys), schema.get(kind), "{kind}: fields");
        }
        Ok(())
    }

    /// The inbox keeps the fields without `type`, in the order pushes have
    /// always had (sorted), so stored and pushed bytes are unchanged.
    #[test]
    fn stored_events_split_into_type_and_fields() -> Result<(), serde_json::Error> {
        let receipt = Stored::ReceiptRead {
            conversation_id: 4,
            user_id: 2,
            seq: 9,
        };
        assert_eq!(
            receipt.split()?,
            (
                "receipt.read".to_owned(),
                r#"{"conversation_id":4,"seq":9,"user_id":2}"#.to_owned()
            )
        );
        let typing = Ephemeral::Typing {
            conversation_id: 4,
            user_id: 2,
        };
        assert_eq!(
            typing.to_json()?,
            r#"{"conversation_id":4,"type":"typing","user_id":2}"#
        );
        Ok(())
    }
}

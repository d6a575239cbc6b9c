//! Wire types of reactions, pins and a user's own conversation settings,
//! and the events about them.

use serde::{Deserialize, Deserializer, Serialize, Serializer};

use crate::model::Message;

/// One emoji on a message: how many reacted with it, and whether this user
/// did.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
#[non_exhaustive]
pub struct Reaction {
    /// Fully qualified (the server normalizes what it is sent).
    pub emoji: String,
    pub count: u64,
    pub mine: bool,
}

/// A message's reactions, as `PUT`/`DELETE /v1/messages/{id}/reactions/{emoji}`
/// answer.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
#[non_exhaustive]
pub struct MessageReactions {
    pub message_id: u64,
    pub reactions: Vec<Reaction>,
}

/// A pinned message.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
#[non_exhaustive]
pub struct Pin {
    pub message: Message,
    pub pinned_by: u64,
    /// Unix ms.
    pub pinned_at: i64,
}

#[derive(Deserialize)]
pub(crate) struct PinList {
    pub pins: Vec<Pin>,
}

/// Who may pin messages in a group.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize, Deserialize)]
#[serde(rename_all = "lowercase")]
#[non_exhaustive]
pub enum PinPolicy {
    /// The owner and admins (the default).
    Admins,
    /// Every member.
    Members,
    /// A value this SDK does not know.
    #[serde(other)]
    Other,
}

/// Until when a conversation is muted.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum MutedUntil {
    /// Unix ms.
    Time(i64),
    Forever,
}

impl Serialize for MutedUntil {
    fn serialize<S: Serializer>(&self, s: S) -> Result<S::Ok, S::Error> {
        match self {
            MutedUntil::Time(t) => s.serialize_i64(*t),
            MutedUntil::Forever => s.serialize_str("forever"),
        }
    }
}

impl<'de> Deserialize<'de> for MutedUntil {
    fn deserialize<D: Deserializer<'de>>(d: D) -> Result<Self, D::Error> {
        #[derive(Deserialize)]
        #[serde(untagged)]
        enum Wire {
            Time(i64),
            Word(String),
        }
        match Wire::deserialize(d)? {
            Wire::Time(t) => Ok(MutedUntil::Time(t)),
            Wire::Word(w) if w == "forever" => Ok(MutedUntil::Forever),
            Wire::Word(w) => Err(serde::de::Error::custom(format!(
                "muted_until: {w:?} is neither a time nor \"forever\""
            ))),
        }
    }
}

/// This user's own settings of a conversation.
#[derive(Debug, Clone, Copy, Default, PartialEq, Eq, Serialize, Deserialize)]
#[non_exhaustive]
pub struct ConversationSettings {
    /// `None` when not muted (or the mute has ended).
    #[serde(default)]
    pub muted_until: Option<MutedUntil>,
    /// Kept at the top of the conversation list.
    #[serde(default)]
    pub pinned: bool,
    /// Left out of the list until a new message arrives.
    #[serde(default)]
    pub archived: bool,
}

/// A change to [`ConversationSettings`]: fields left `None` stay as they
/// are. `muted_until: Some(None)` unmutes.
#[derive(Debug, Clone, Copy, Default, PartialEq, Eq)]
pub struct SettingsChange {
    pub muted_until: Option<Option<MutedUntil>>,
    pub pinned: Option<bool>,
    pub archived: Option<bool>,
}

impl SettingsChange {
    pub(crate) fn to_json(self) -> serde_json::Value {
        let mut body = serde_json::Map::new();
        if let Some(muted) = self.muted_until {
            body.insert("muted_until".into(), serde_json::json!(muted));
        }
        if let Some(pinned) = self.pinned {
            body.insert("pinned".into(), pinned.into());
        }
        if let Some(archived) = self.archived {
            body.insert("archived".into(), archived.into());
        }
        serde_json::Value::Object(body)
    }
}

/// `reaction.added` / `reaction.removed`: `user_id` put `emoji` on, or
/// took it off, a message; `count` is how many reacted so now.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
#[non_exhaustive]
pub struct ReactionEvent {
    pub cursor: u64,
    pub conversation_id: u64,
    pub message_id: u64,
    pub user_id: u64,
    pub emoji: String,
    pub count: u64,
}

/// `pin.added` / `pin.removed`: `user_id` pinned or unpinned a message.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
#[non_exhaustive]
pub struct PinEvent {
    pub cursor: u64,
    pub conversation_id: u64,
    pub message_id: u64,
    pub user_id: u64,
}

/// `conversation.settings`: this user's settings of a conversation changed
/// (on this device or another).
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
#[non_exhaustive]
pub struct SettingsEvent {
    pub cursor: u64,
    pub conversation_id: u64,
    pub settings: ConversationSettings,
}

#[cfg(test)]
mod tests {
    use super::*;
    use serde_json::json;

    #[test]
    fn settings_and_changes_match_the_wire() -> Result<(), serde_json::Error> {
        let s: ConversationSettings = serde_json::from_value(
            json!({"muted_until": "forever", "pinned": true, "archived": false}),
        )?;
        assert_eq!(s.muted_until, Some(MutedUntil::Forever));
        let s: ConversationSettings =
            serde_json::from_value(json!({"muted_until": 5, "pinned": false, "archived": true}))?;
        assert_eq!(
            (s.muted_until, s.archived),
            (Some(MutedUntil::Time(5)), true)
        );
        let unmute = SettingsChange {
            muted_until: Some(None),
            ..SettingsChange::default()
        };
        assert_eq!(unmute.to_json(), json!({"muted_until": null}));
        let pin = SettingsChange {
            pinned: Some(true),
            ..SettingsChange::default()
        };
        assert_eq!(pin.to_json(), json!({"pinned": true}));
        Ok(())
    }

    #[test]
    fn events_parse_typed_and_go_back_as_they_came() -> Result<(), serde_json::Error> {
        use crate::Event;
        let samples = [
            json!({"type": "reaction.added", "cursor": 3, "conversation_id": 1, "message_id": 2,
                   "user_id": 4, "emoji": "👍", "count": 2}),
            json!({"type": "reaction.removed", "cursor": 4, "conversation_id": 1, "message_id": 2,
                   "user_id": 4, "emoji": "👍", "count": 1}),
            json!({"type": "pin.added", "cursor": 5, "conversation_id": 1, "message_id": 2, "user_id": 4}),
            json!({"type": "pin.removed", "cursor": 6, "conversation_id": 1, "message_id": 2, "user_id": 4}),
            json!({"type": "conversation.settings", "cursor": 7, "conversation_id": 1,
                   "settings": {"muted_until": "forever", "pinned": true, "archived": false}}),
        ];
        for raw in samples {
            let event = Event::from_value(raw.clone()).map_err(serde::de::Error::custom)?;
            assert!(!matches!(event, Event::Other(_)), "{raw}");
            assert_eq!(event.cursor(), raw["cursor"].as_u64());
            assert_eq!(event.kind(), raw["type"]);
            assert_eq!(event.to_value(), raw);
        }
        Ok(())
    }
}

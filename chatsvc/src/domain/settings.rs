//! A user's own settings of a conversation: mute, pinned to the top of
//! their list, archived. Nobody else sees them; the user's other devices
//! learn of a change by `conversation.settings`.
//!
//! Muted means no offline-message webhook (so no mobile push) for the
//! conversation's messages; unread counts are unchanged, and a message that
//! mentions the user notifies anyway ([`notifies`]).

use serde::{Deserialize, Deserializer, Serialize, Serializer};
use utoipa::ToSchema;

use super::events::Stored;
use super::outbox::Outbox;
use super::tokens::Caller;
use super::{now_ms, Chat, DomainError};
use crate::store::settings::{self as store, SettingsRow, FOREVER};
use crate::store::{messages, Read};

/// Until when a conversation is muted: a time, or for good.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum MutedUntil {
    /// Unix ms.
    Time(i64),
    Forever,
}

impl MutedUntil {
    fn from_stored(until: i64) -> Self {
        if until == FOREVER {
            MutedUntil::Forever
        } else {
            MutedUntil::Time(until)
        }
    }

    fn stored(self) -> i64 {
        match self {
            MutedUntil::Time(t) => t,
            MutedUntil::Forever => FOREVER,
        }
    }
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
            Wire::Time(t) if t >= 0 => Ok(MutedUntil::from_stored(t)),
            Wire::Word(w) if w == "forever" => Ok(MutedUntil::Forever),
            _ => Err(serde::de::Error::custom(
                "muted_until must be a Unix time in milliseconds, \"forever\" or null",
            )),
        }
    }
}

/// A user's settings of one conversation, as they and their devices see
/// them.
#[derive(Debug, Clone, Copy, Default, PartialEq, Eq, Serialize, ToSchema)]
pub struct ConversationSettings {
    /// Unix ms or `"forever"`; null when not muted (a time passed reads as
    /// null).
    #[schema(schema_with = muted_until_schema, required = true)]
    pub muted_until: Option<MutedUntil>,
    /// Kept at the top of the conversation list.
    pub pinned: bool,
    /// Left out of the conversation list (`?archived=true` lists these)
    /// until a new message arrives.
    pub archived: bool,
}

impl ConversationSettings {
    pub(crate) fn from_row(row: &SettingsRow, now: i64) -> Self {
        ConversationSettings {
            muted_until: row
                .muted_until
                .filter(|&t| t > now)
                .map(MutedUntil::from_stored),
            pinned: row.pinned_at.is_some(),
            archived: row.archived,
        }
    }
}

/// A change to a user's settings: absent fields stay as they are;
/// `muted_until: null` unmutes.
#[derive(Debug, Clone, Copy, Default, Deserialize, ToSchema)]
#[serde(deny_unknown_fields)]
pub struct SettingsPatch {
    /// Unix ms, `"forever"`, or null to unmute.
    #[serde(default, deserialize_with = "present")]
    #[schema(schema_with = muted_until_schema)]
    pub muted_until: Option<Option<MutedUntil>>,
    pub pinned: Option<bool>,
    pub archived: Option<bool>,
}

/// `muted_until` in the OpenAPI document: a Unix time in ms, `"forever"`,
/// or null.
fn muted_until_schema() -> utoipa::openapi::schema::Schema {
    use utoipa::openapi::schema::{KnownFormat, ObjectBuilder, OneOfBuilder, SchemaFormat, Type};
    OneOfBuilder::new()
        .item(
            ObjectBuilder::new()
                .schema_type(Type::Integer)
                .format(Some(SchemaFormat::KnownFormat(KnownFormat::Int64)))
                .minimum(Some(0)),
        )
        .item(
            ObjectBuilder::new()
                .schema_type(Type::String)
                .enum_values(Some(["forever"])),
        )
        .item(ObjectBuilder::new().schema_type(Type::Null))
        .description(Some(
            "Unix ms or \"forever\" while muted; null when not (in a change: null unmutes).",
        ))
        .build()
        .into()
}

/// A field that is present (even as null) is `Some`.
fn present<'de, D: Deserializer<'de>>(d: D) -> Result<Option<Option<MutedUntil>>, D::Error> {
    Option::<MutedUntil>::deserialize(d).map(Some)
}

/// Whether a message in a conversation muted until `muted_until` notifies
/// its recipient at `now` (offline webhook, push): always when it mentions
/// them, else only when the mute is off or over.
pub fn notifies(muted_until: Option<i64>, now: i64, mentioned: bool) -> bool {
    mentioned || muted_until.is_none_or(|until| until <= now)
}

/// [`notifies`] for `user`'s settings of `conversation_id`, read in the
/// sending transaction.
pub(crate) fn recipient_notified(
    c: &impl Read,
    user: u64,
    conversation_id: u64,
    now: i64,
    mentioned: bool,
) -> Result<bool, DomainError> {
    if mentioned {
        return Ok(true);
    }
    let row = store::get(c, user, conversation_id)?;
    Ok(notifies(row.muted_until, now, mentioned))
}

impl Chat {
    /// Changes the caller's settings of a conversation they are in; their
    /// devices get `conversation.settings`. Returns the settings now.
    pub async fn update_settings(
        &self,
        caller: Caller,
        conversation_id: u64,
        patch: SettingsPatch,
    ) -> Result<ConversationSettings, DomainError> {
        let user = caller.user_id;
        self.charge(user, 0)?;
        let now = now_ms();
        let max = self.limits.max_pinned_conversations;
        let downlink = self.downlink.clone();
        let (settings, _) = self
            .store
            .write_then(
                move |c| {
                    if messages::membership(c, user, conversation_id)?.is_none() {
                        return Err(DomainError::NotFound("conversation"));
                    }
                    let mut row = store::get(c, user, conversation_id)?;
                    if let Some(muted) = patch.muted_until {
                        row.muted_until = muted.map(MutedUntil::stored);
                    }
                    match patch.pinned {
                        Some(true) if row.pinned_at.is_none() => {
                            if store::pinned_count(c, user)? >= max {
                                return Err(DomainError::Conflict(format!(
                                    "at most {max} conversations can be pinned"
                                )));
                            }
                            row.pinned_at = Some(now);
                        }
                        Some(false) => row.pinned_at = None,
                        _ => {}
                    }
                    if let Some(archived) = patch.archived {
                        row.archived = archived;
                    }
                    store::put(c, user, conversation_id, &row)?;
                    let settings = ConversationSettings::from_row(&row, now);
                    let mut out = Outbox::default();
                    out.emit(
                        c,
                        user,
                        &Stored::ConversationSettings {
                            conversation_id,
                            settings: &settings,
                        },
                    )?;
                    Ok::<_, DomainError>((settings, out))
                },
                move |(_, out): &(ConversationSettings, Outbox)| out.push(&*downlink),
            )
            .await?;
        Ok(settings)
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn a_mute_silences_until_it_ends_but_never_a_mention() {
        assert!(notifies(None, 10, false));
        assert!(!notifies(Some(11), 10, false));
        assert!(notifies(Some(10), 10, false), "over at its time");
        assert!(!notifies(Some(FOREVER), 10, false));
        assert!(notifies(Some(FOREVER), 10, true), "a mention notifies");
    }

    #[test]
    fn muted_until_is_a_time_or_forever() -> Result<(), serde_json::Error> {
        let patch: SettingsPatch = serde_json::from_str(r#"{"muted_until":"forever"}"#)?;
        assert_eq!(patch.muted_until, Some(Some(MutedUntil::Forever)));
        let patch: SettingsPatch = serde_json::from_str(r#"{"muted_until":null}"#)?;
        assert_eq!(patch.muted_until, Some(None));
        let patch: SettingsPatch = serde_json::from_str(r#"{"pinned":true}"#)?;
        assert_eq!(patch.muted_until, None);
        let patch: SettingsPatch = serde_json::from_str(r#"{"muted_until":5}"#)?;
        assert_eq!(patch.muted_until, Some(Some(MutedUntil::Time(5))));
        for bad in [r#""later""#, "-1", "1.5", "true"] {
            let json = format!(r#"{{"muted_until":{bad}}}"#);
            assert!(
                serde_json::from_str::<SettingsPatch>(&json).is_err(),
                "{bad}"
            );
        }
        let settings = ConversationSettings {
            muted_until: Some(MutedUntil::Forever),
            pinned: true,
            archived: false,
        };
        assert_eq!(
            serde_json::to_string(&settings)?,
            r#"{"muted_until":"forever","pinned":true,"archived":false}"#
        );
        Ok(())
    }
}

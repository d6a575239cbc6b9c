//! Reactions: a member puts an emoji on a message they can see, once per
//! emoji; history and sync show each message's reactions counted per emoji,
//! with whether the reader is among them.
//!
//! An emoji is one sequence from the Unicode emoji list (the `emojis`
//! crate's copy of it, skin tones and ZWJ sequences included), stored in
//! its fully-qualified form so that `❤` and `❤️` are one reaction. A
//! reaction is a send for the send rate limit, and each change is a stored
//! event (`reaction.added`, `reaction.removed`) for every member who can
//! see the message, so it reaches devices that were offline through sync
//! and persistent MQTT sessions like any other.

use serde::Serialize;
use serde_json::Value;
use utoipa::ToSchema;

use super::events::{ReactionChange, Stored};
use super::model::{Event, Message};
use super::outbox::Outbox;
use super::tokens::Caller;
use super::{now_ms, Chat, DomainError};
use crate::store::messages::{self as messages, MessageRow};
use crate::store::reactions::{self as store, Added, ReactionCount};
use crate::store::{Read, Tx};

/// Longest emoji accepted, in UTF-8 bytes: room for the longest sequence
/// in the list (a family or couple with skin tones, 35 bytes).
pub const MAX_EMOJI_BYTES: usize = 64;

/// One emoji on a message: how many reacted with it, and whether the
/// reader did.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, ToSchema)]
pub struct Reaction {
    pub emoji: String,
    pub count: u64,
    pub mine: bool,
}

/// A message's reactions after a change.
#[derive(Debug, Clone, Serialize, ToSchema)]
pub struct MessageReactions {
    pub message_id: u64,
    /// By when each emoji was first used on the message.
    pub reactions: Vec<Reaction>,
}

/// The fully-qualified form of `input`, if it is one emoji.
pub fn emoji(input: &str) -> Result<&'static str, DomainError> {
    if input.len() > MAX_EMOJI_BYTES {
        return Err(DomainError::InvalidEmoji);
    }
    emojis::get(input)
        .map(|e| e.as_str())
        .ok_or(DomainError::InvalidEmoji)
}

/// The reactions of each of `ids` as `reader` sees them, by message id.
pub(crate) fn read_counts(
    c: &impl Read,
    reader: u64,
    ids: &[u64],
) -> Result<Vec<ReactionCount>, DomainError> {
    Ok(store::counts(c, reader, ids)?)
}

fn of(counts: &[ReactionCount], message_id: u64) -> Vec<Reaction> {
    counts
        .iter()
        .filter(|r| r.message_id == message_id)
        .map(|r| Reaction {
            emoji: r.emoji.clone(),
            count: r.count,
            mine: r.mine,
        })
        .collect()
}

/// Puts each message's reactions on it.
pub(crate) fn attach(messages: &mut [Message], counts: &[ReactionCount]) {
    if counts.is_empty() {
        return;
    }
    for m in messages {
        m.reactions = of(counts, m.id);
    }
}

/// Puts each event's message's reactions on it.
pub(crate) fn attach_to_events(events: &mut [Event], counts: &[ReactionCount]) {
    if counts.is_empty() {
        return;
    }
    for event in events {
        let Some(Value::Object(message)) = event.data.get_mut("message") else {
            continue;
        };
        let Some(id) = message.get("id").and_then(Value::as_u64) else {
            continue;
        };
        let reactions = of(counts, id);
        if !reactions.is_empty() {
            if let Ok(value) = serde_json::to_value(reactions) {
                message.insert("reactions".into(), value);
            }
        }
    }
}

/// The message, if `user` is a member of its conversation who can see it
/// (joined before it).
fn visible(c: &Tx<'_>, user: u64, message_id: u64) -> Result<MessageRow, DomainError> {
    let row = messages::by_id(c, message_id)?.ok_or(DomainError::NotFound("message"))?;
    match messages::membership(c, user, row.conversation_id)? {
        Some(m) if row.seq > m.joined_seq => Ok(row),
        _ => Err(DomainError::NotFound("message")),
    }
}

impl Chat {
    /// Adds the caller's `emoji` to a message (again: nothing changes).
    pub async fn react(
        &self,
        caller: Caller,
        message_id: u64,
        emoji: &str,
    ) -> Result<MessageReactions, DomainError> {
        self.change_reaction(caller, message_id, emoji, true).await
    }

    /// Takes the caller's `emoji` off a message (none there: nothing
    /// changes).
    pub async fn unreact(
        &self,
        caller: Caller,
        message_id: u64,
        emoji: &str,
    ) -> Result<MessageReactions, DomainError> {
        self.change_reaction(caller, message_id, emoji, false).await
    }

    async fn change_reaction(
        &self,
        caller: Caller,
        message_id: u64,
        emoji: &str,
        add: bool,
    ) -> Result<MessageReactions, DomainError> {
        let emoji = self::emoji(emoji)?;
        let user = caller.user_id;
        self.rates.send(user).await?;
        let now = now_ms();
        let max = self.limits.max_reactions_per_message;
        let downlink = self.downlink.clone();
        let (reactions, _) = self
            .store
            .write_then(
                move |c| {
                    let row = visible(c, user, message_id)?;
                    let changed = if add {
                        if row.kind != "user" || row.recalled_at.is_some() {
                            return Err(DomainError::Conflict(
                                "only a message that is not recalled can get reactions".into(),
                            ));
                        }
                        match store::add(c, row.id, user, emoji, max, now)? {
                            Added::Added => true,
                            Added::Already => false,
                            Added::TooMany => {
                                return Err(DomainError::Conflict(format!(
                                    "a message has at most {max} different reactions"
                                )))
                            }
                        }
                    } else {
                        store::remove(c, row.id, user, emoji)?
                    };
                    let counts = store::counts(c, user, &[row.id])?;
                    let mut out = Outbox::default();
                    if changed {
                        let change = ReactionChange {
                            conversation_id: row.conversation_id,
                            message_id: row.id,
                            user_id: user,
                            emoji,
                            count: counts
                                .iter()
                                .find(|r| r.emoji == emoji)
                                .map_or(0, |r| r.count),
                        };
                        let event = if add {
                            Stored::ReactionAdded(change)
                        } else {
                            Stored::ReactionRemoved(change)
                        };
                        for member in store::audience(c, row.conversation_id, row.seq)? {
                            out.emit(c, member, &event)?;
                        }
                    }
                    let reactions = MessageReactions {
                        message_id: row.id,
                        reactions: of(&counts, row.id),
                    };
                    Ok::<_, DomainError>((reactions, out))
                },
                move |(_, out): &(MessageReactions, Outbox)| out.push(&*downlink),
            )
            .await?;
        Ok(reactions)
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn emoji_are_one_sequence_from_the_list_in_one_form() {
        assert_eq!(emoji("👍").ok(), Some("👍"));
        assert_eq!(emoji("👍🏽").ok(), Some("👍🏽"), "a skin tone");
        assert_eq!(emoji("❤").ok(), Some("❤️"), "fully qualified");
        assert_eq!(emoji("❤️").ok(), Some("❤️"));
        assert_eq!(emoji("👩‍👩‍👧‍👦").ok(), Some("👩‍👩‍👧‍👦"), "a ZWJ sequence");
        assert!(emoji("🇫🇷").is_ok(), "a flag");
        for bad in ["", "a", "lol", "👍👍", "👍 ", ":+1:", "\u{200d}", "1"] {
            assert!(
                matches!(emoji(bad), Err(DomainError::InvalidEmoji)),
                "{bad:?}"
            );
        }
        assert!(emoji(&"👍".repeat(40)).is_err());
    }
}

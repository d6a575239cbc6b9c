//! Lines about reactions, pins and the user's own conversation settings:
//! their events, and what `:history` and `:pins` add to a message.
//!
//! - `* bob reacted 👍 to message 42 in #team (2)`,
//!   `* you took back 👍 on message 42 in @bob (0)`;
//! - `* bob pinned message 42 in #team`;
//! - `* @bob: muted until 13:30, pinned to the top` (this user's settings,
//!   changed here or on another device).

use mqchat_sdk::{ConversationSettings, Message, MutedUntil, Pin, ReactionEvent};

use super::{clean_line, View};

impl View<'_> {
    /// `@bob`, `#team`, or `conversation#ID` while unknown.
    fn conversation_by_id(&self, conversation_id: u64) -> String {
        self.dir
            .conversation_label(conversation_id)
            .unwrap_or_else(|| format!("conversation#{conversation_id}"))
    }

    pub(in super::super) fn reaction(&self, event: &ReactionEvent, added: bool) -> String {
        let (verb, preposition) = if added {
            ("reacted", "to")
        } else {
            ("took back", "on")
        };
        format!(
            "* {} {verb} {} {preposition} message {} in {} ({})",
            self.you(event.user_id),
            clean_line(&event.emoji),
            event.message_id,
            self.conversation_by_id(event.conversation_id),
            event.count
        )
    }

    pub(in super::super) fn pin_event(
        &self,
        user_id: u64,
        conversation_id: u64,
        message_id: u64,
        added: bool,
    ) -> String {
        let verb = if added { "pinned" } else { "unpinned" };
        format!(
            "* {} {verb} message {message_id} in {}",
            self.you(user_id),
            self.conversation_by_id(conversation_id)
        )
    }

    pub(in super::super) fn settings(
        &self,
        conversation_id: u64,
        settings: &ConversationSettings,
    ) -> String {
        let mut parts = self.settings_flags(settings);
        if !matches!(parts.first(), Some(first) if first.starts_with("muted")) {
            parts.insert(0, "not muted".to_owned());
        }
        format!(
            "* {}: {}",
            self.conversation_by_id(conversation_id),
            parts.join(", ")
        )
    }

    /// What differs from the defaults: `muted` / `muted until 13:30`,
    /// `pinned to the top`, `archived`.
    pub(in super::super) fn settings_flags(&self, settings: &ConversationSettings) -> Vec<String> {
        let mut flags = Vec::new();
        match settings.muted_until {
            Some(MutedUntil::Forever) => flags.push("muted".to_owned()),
            Some(MutedUntil::Time(until)) if until > self.now_ms => {
                flags.push(format!("muted until {}", self.stamp(until)));
            }
            _ => {}
        }
        if settings.pinned {
            flags.push("pinned to the top".to_owned());
        }
        if settings.archived {
            flags.push("archived".to_owned());
        }
        flags
    }

    /// A message as `:history` shows it: with its id (what `:react` takes)
    /// and its reactions, `[12:30] @bob: hi  (id 42 · 👍 2 with you · 🎉 1)`.
    pub fn message_with_id(&self, message: &Message) -> String {
        let mut notes = vec![format!("id {}", message.id)];
        if !message.is_recalled() {
            notes.extend(message.reactions.iter().filter(|r| r.count > 0).map(|r| {
                let with_you = if r.mine { " with you" } else { "" };
                format!("{} {}{with_you}", clean_line(&r.emoji), r.count)
            }));
        }
        format!("{}  ({})", self.message(message), notes.join(" · "))
    }

    /// One line of `:pins`.
    pub fn pin(&self, pin: &Pin) -> String {
        format!(
            "  {}, pinned by {}",
            self.message_with_id(&pin.message),
            self.you(pin.pinned_by)
        )
    }
}

#[cfg(test)]
mod tests {
    use super::super::super::directory::{Directory, GroupEntry};
    use super::super::Clock;
    use super::*;
    use mqchat_sdk::{Event, User};
    use serde_json::json;

    const NOW: i64 = 1_714_566_600_000; // 2024-05-01 12:30 UTC

    fn directory() -> Directory {
        let mut dir = Directory::default();
        for (id, name) in [(1, "alice"), (2, "bob")] {
            let user: User =
                serde_json::from_value(json!({"id": id, "username": name, "created_at": 0}))
                    .unwrap();
            dir.add_user(&user);
        }
        dir.add_group(GroupEntry {
            id: 9,
            name: "team".into(),
            conversation_id: 20,
        });
        dir.add_direct(2, 21);
        dir
    }

    fn lines(event: serde_json::Value) -> Vec<String> {
        let dir = directory();
        let clock = Clock::default();
        let view = View {
            me: 1,
            dir: &dir,
            clock: &clock,
            now_ms: NOW,
        };
        view.event(&Event::from_value(event).unwrap())
    }

    #[test]
    fn events() {
        let reaction = |kind: &str, user: u64, conversation: u64, count: u64| {
            json!({"type": kind, "cursor": 3, "conversation_id": conversation,
                "message_id": 42, "user_id": user, "emoji": "👍", "count": count})
        };
        assert_eq!(
            lines(reaction("reaction.added", 2, 20, 2)),
            ["* bob reacted 👍 to message 42 in #team (2)"]
        );
        assert_eq!(
            lines(reaction("reaction.removed", 1, 21, 0)),
            ["* you took back 👍 on message 42 in @bob (0)"]
        );
        assert_eq!(
            lines(reaction("reaction.added", 7, 99, 1)),
            ["* user#7 reacted 👍 to message 42 in conversation#99 (1)"]
        );
        let pin = |kind: &str, user: u64| json!({"type": kind, "cursor": 4, "conversation_id": 20, "message_id": 42, "user_id": user});
        assert_eq!(
            lines(pin("pin.added", 2)),
            ["* bob pinned message 42 in #team"]
        );
        assert_eq!(
            lines(pin("pin.removed", 1)),
            ["* you unpinned message 42 in #team"]
        );
        let settings = |settings: serde_json::Value| json!({"type": "conversation.settings", "cursor": 5, "conversation_id": 21, "settings": settings});
        assert_eq!(
            lines(settings(
                json!({"muted_until": NOW + 3_600_000, "pinned": true, "archived": false})
            )),
            ["* @bob: muted until 13:30, pinned to the top"]
        );
        assert_eq!(
            lines(settings(
                json!({"muted_until": "forever", "pinned": false, "archived": true})
            )),
            ["* @bob: muted, archived"]
        );
        assert_eq!(
            lines(settings(
                json!({"muted_until": null, "pinned": false, "archived": false})
            )),
            ["* @bob: not muted"]
        );
    }

    #[test]
    fn history_lines_carry_ids_and_reactions() {
        let dir = directory();
        let clock = Clock::default();
        let view = View {
            me: 1,
            dir: &dir,
            clock: &clock,
            now_ms: NOW,
        };
        let message = |extra: serde_json::Value| -> Message {
            let mut base = json!({
                "id": 42, "conversation_id": 21, "seq": 1, "sender_id": 2,
                "to": {"user": 1}, "client_msg_id": "c", "body": {"text": "hi"},
                "sent_at": NOW
            });
            if let (Some(base), Some(extra)) = (base.as_object_mut(), extra.as_object()) {
                base.extend(extra.clone());
            }
            serde_json::from_value(base).unwrap()
        };
        assert_eq!(
            view.message_with_id(&message(json!({}))),
            "[12:30] @bob: hi  (id 42)"
        );
        let reacted = message(json!({"reactions": [
            {"emoji": "👍", "count": 2, "mine": true},
            {"emoji": "\u{1b}[2J", "count": 1, "mine": false}
        ]}));
        assert_eq!(
            view.message_with_id(&reacted),
            "[12:30] @bob: hi  (id 42 · 👍 2 with you · \u{FFFD}[2J 1)"
        );
        let pin: Pin = serde_json::from_value(json!({
            "message": serde_json::to_value(&reacted).unwrap(),
            "pinned_by": 1, "pinned_at": NOW
        }))
        .unwrap();
        assert_eq!(
            view.pin(&pin),
            "  [12:30] @bob: hi  (id 42 · 👍 2 with you · \u{FFFD}[2J 1), pinned by you"
        );
    }
}

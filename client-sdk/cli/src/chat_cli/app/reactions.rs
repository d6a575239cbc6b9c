//! `:react`, `:unreact`, `:mute` and `:pins`. Like sends, the changes print
//! nothing: their events (`reaction.*`, `conversation.settings`) show them
//! once the server has them.

use std::time::Duration;

use mqchat_sdk::{MutedUntil, SettingsChange};

use super::super::command::{self, MuteFor, ParseError, Scope};
use super::super::render::names_in_message;
use super::{now_ms, App, CliError, Resolved};

impl App {
    pub(super) async fn react(
        &self,
        message_id: u64,
        emoji: &str,
        remove: bool,
    ) -> Result<Vec<String>, CliError> {
        if remove {
            self.client.unreact(message_id, emoji).await?;
        } else {
            self.client.react(message_id, emoji).await?;
        }
        Ok(Vec::new())
    }

    pub(super) async fn mute(&self, scope: Scope) -> Result<Vec<String>, CliError> {
        let conversation = self.in_scope(scope).await?;
        let muted_until = match command::mute_for(&conversation.rest)? {
            MuteFor::Forever => Some(MutedUntil::Forever),
            MuteFor::Off => None,
            MuteFor::For(duration) => Some(MutedUntil::Time(now_ms().saturating_add(ms(duration)))),
        };
        let change = SettingsChange {
            muted_until: Some(muted_until),
            ..SettingsChange::default()
        };
        self.client
            .update_conversation_settings(conversation.conversation_id, change)
            .await?;
        Ok(Vec::new())
    }

    pub(super) async fn pins(&self, scope: Scope) -> Result<Vec<String>, CliError> {
        let conversation = self.in_scope(scope).await?;
        if !conversation.rest.is_empty() {
            return Err(ParseError::Usage(":pins [@user|#group]").into());
        }
        let pins = self.client.pins(conversation.conversation_id).await?;
        let label = conversation.label;
        if pins.is_empty() {
            return Ok(vec![format!("nothing pinned in {label}")]);
        }
        let (mut users, mut groups) = (Vec::new(), Vec::new());
        for pin in &pins {
            names_in_message(&pin.message, &mut users, &mut groups);
            users.push(pin.pinned_by);
        }
        users.sort_unstable();
        users.dedup();
        groups.dedup();
        self.ensure_names(&users, &groups).await;
        let dir = self.dir();
        let view = self.view(&dir);
        let mut lines = vec![format!("pinned in {label} ({}):", pins.len())];
        lines.extend(pins.iter().map(|pin| view.pin(pin)));
        Ok(lines)
    }

    /// The conversation named, or the current one.
    async fn in_scope(&self, scope: Scope) -> Result<Resolved, CliError> {
        match scope {
            Scope::Named(target) => self.resolve(target).await,
            Scope::Current { rest } => {
                let (conversation_id, label) = self.current().ok_or(CliError::NoCurrent)?;
                Ok(Resolved {
                    conversation_id,
                    label,
                    rest,
                })
            }
        }
    }
}

fn ms(duration: Duration) -> i64 {
    i64::try_from(duration.as_millis()).unwrap_or(i64::MAX)
}

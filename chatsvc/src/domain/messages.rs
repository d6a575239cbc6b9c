//! Sending, editing, recalling, history, conversations, read markers,
//! receipts, typing, search and sync.

use serde_json::value::RawValue;

use super::events::{self, Ephemeral};
use super::model::{Conversation, Event, Message, Recipient, SyncPage, User};
use super::outbox::Outbox;
use super::sends::{SendItem, Sends, Stored};
use super::tokens::Caller;
use super::{now_ms, Chat, DomainError};
use crate::store::messages::{self as store, MessageRow, Posted};
use crate::store::webhooks::WebhookRow;
use crate::store::{social, users, Tx};

/// A validated send request.
#[derive(Debug, Clone)]
pub struct NewMessage {
    pub to: Recipient,
    pub client_msg_id: String,
    pub body: Box<RawValue>,
    /// A reply's target, mentions, a forward's origin (empty: a plain send).
    pub extras: super::replies::SendExtras,
}

/// What a send returns: the stored message, and whether it was stored by
/// this request (false: an idempotent resend).
#[derive(Debug, Clone)]
pub struct Sent {
    pub message: Message,
    pub created: bool,
}

pub(crate) const MESSAGE_CREATED: &str = "message.created";
pub(crate) const MESSAGE_EDITED: &str = "message.edited";
pub(crate) const MESSAGE_RECALLED: &str = "message.recalled";

/// Stored data that does not read back as its type.
fn internal(e: impl Into<super::BoxError>) -> DomainError {
    DomainError::internal_from("decoding stored data", e)
}

/// A send queued for the store ([`Chat::queue_send`]).
pub struct PendingSend(crate::store::Queued<Stored, DomainError>);

impl std::fmt::Debug for PendingSend {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("PendingSend").finish_non_exhaustive()
    }
}

impl PendingSend {
    /// Waits for the commit; the stored message (or the original, for a
    /// resend).
    pub async fn sent(self) -> Result<Sent, DomainError> {
        let Stored { row, created, .. } = self.0.await?;
        metrics::counter!(crate::metrics::MESSAGES_ACCEPTED_TOTAL, "created" => if created { "true" } else { "false" }).increment(1);
        let message = Message::try_from(row).map_err(internal)?;
        Ok(Sent { message, created })
    }
}

/// Stores a message in a conversation (a group's system message), appends
/// it to every member's inbox and queues the pushes ([`announce`]). Makes
/// no check that bad input could fail: callers check first. `None`, with
/// nothing written: the sender already sent a message with this
/// `client_msg_id`. Sends go the same way, a run at a time
/// (`domain::sends`).
pub(crate) fn post(
    c: &Tx<'_>,
    out: &mut Outbox,
    new: &store::NewRow<'_>,
) -> Result<Option<MessageRow>, DomainError> {
    let posted = store::post_many(c, std::slice::from_ref(new), MESSAGE_CREATED)?;
    let Some(Posted { row, deliveries }) = posted.into_iter().next().flatten() else {
        return Ok(None);
    };
    let hooks = crate::store::webhooks::active_to_send(c)?;
    announce(c, out, &row, deliveries, &[], new.now, &hooks)?;
    Ok(Some(row))
}

/// What follows a message just stored with its inbox rows (`deliveries`),
/// in its transaction: the uploaded `files` its body references (already
/// checked, [`Chat::referenced_files`]) linked to it, the deliveries to the
/// active webhooks `hooks` queued, and its pushes.
pub(crate) fn announce(
    c: &Tx<'_>,
    out: &mut Outbox,
    row: &MessageRow,
    deliveries: Vec<(u64, u64)>,
    files: &[String],
    now: i64,
    hooks: &[WebhookRow],
) -> Result<(), DomainError> {
    for file in files {
        crate::store::files::link(c, row.id, file)?;
    }
    super::webhooks::on_message(c, out, row, &deliveries, now, hooks)?;
    out.message(MESSAGE_CREATED, row, deliveries);
    Ok(())
}

impl Chat {
    /// Every check a message body must pass, for a send and for an edit
    /// alike (one rule, so an edit can't carry what a send may not): the
    /// limits, the fields reserved for the server (`system`) and for
    /// services (`notice`, by the caller's grant). Returns the text, taken
    /// out so the writer need not parse the body again for the full-text
    /// index. The files a body references are checked on the writer
    /// ([`Chat::referenced_files`]), for both too.
    fn check_body(&self, caller: Caller, body: &RawValue) -> Result<Option<String>, DomainError> {
        let raw = body.get();
        if raw.len() > self.limits.max_body_bytes {
            return Err(DomainError::Invalid(format!(
                "body is larger than {} bytes",
                self.limits.max_body_bytes
            )));
        }
        let value: serde_json::Value =
            serde_json::from_str(raw).map_err(|e| DomainError::Invalid(format!("body: {e}")))?;
        let serde_json::Value::Object(mut fields) = value else {
            return Err(DomainError::Invalid("body must be a JSON object".into()));
        };
        if fields.is_empty() {
            return Err(DomainError::Invalid("body must not be empty".into()));
        }
        if fields.contains_key("system") {
            return Err(DomainError::Invalid(
                "body.system is reserved for the server".into(),
            ));
        }
        let has_notice = fields.contains_key("notice");
        match caller.service {
            Some(grant) if !(grant.send || (grant.notice && has_notice)) => {
                return Err(DomainError::Forbidden(
                    "this service key may not send messages".into(),
                ));
            }
            Some(grant) if has_notice && !grant.notice => {
                return Err(DomainError::Forbidden(
                    "this service key may not send notices".into(),
                ));
            }
            None if has_notice => {
                return Err(DomainError::Invalid(
                    "body.notice is reserved for services".into(),
                ));
            }
            _ => {}
        }
        match fields.remove("text") {
            None => Ok(None),
            Some(serde_json::Value::String(text))
                if (1..=self.limits.max_text_chars).contains(&text.chars().count()) =>
            {
                Ok(Some(text))
            }
            Some(_) => Err(DomainError::Invalid(format!(
                "body.text must be a string of 1-{} characters",
                self.limits.max_text_chars
            ))),
        }
    }

    /// Stores a message and, after commit, pushes it to every recipient and
    /// to the sender's other devices. Idempotent on `(sender, client_msg_id)`.
    pub async fn send(&self, caller: Caller, m: NewMessage) -> Result<Sent, DomainError> {
        self.queue_send(caller, m).await?.sent().await
    }

    /// [`Chat::send`] in two steps: checks the request and queues it for
    /// the store, then returns; the answer comes once it has committed.
    /// Sends queued one after another are stored (and get their seqs) in
    /// that order, so a connection can have several in flight and still
    /// keep them in order (the MQTT uplink does).
    pub async fn queue_send(
        &self,
        caller: Caller,
        m: NewMessage,
    ) -> Result<PendingSend, DomainError> {
        self.rates.send(caller.user_id).await?;
        let id_len = m.client_msg_id.chars().count();
        if !(1..=64).contains(&id_len) || m.client_msg_id.chars().any(char::is_control) {
            return Err(DomainError::Invalid(
                "client_msg_id must be 1-64 characters, no control characters".into(),
            ));
        }
        let text = self.check_body(caller, &m.body)?;
        let sender = caller.user_id;
        let scope = match m.to {
            Recipient::User(peer) => crate::store::Scope::Direct { sender, peer },
            Recipient::Group(group) => crate::store::Scope::Group { sender, group },
        };
        let extras = m.extras.columns(sender, m.to)?;
        let item = SendItem {
            sender,
            client_msg_id: m.client_msg_id,
            to: m.to,
            body: m.body.get().to_owned(),
            text,
            extras,
            now: now_ms(),
            dm_policy: self.limits.dm_policy,
            downlink: self.downlink.clone(),
        };
        let queued = self.store.queue_batch::<Sends>(scope, item).await?;
        Ok(PendingSend(queued))
    }

    /// Loads a message the caller can see (a current member, joined before
    /// it, and it has not disappeared).
    pub(super) async fn visible_message(
        &self,
        caller: Caller,
        message_id: u64,
    ) -> Result<MessageRow, DomainError> {
        let user = caller.user_id;
        self.store
            .read(move |c| {
                let row = store::by_id(c, message_id)?
                    .filter(|row| !crate::store::expiry::is_expired(row, now_ms()))
                    .ok_or(DomainError::NotFound("message"))?;
                match store::membership(c, user, row.conversation_id)? {
                    Some(m) if row.seq > m.joined_seq => Ok(row),
                    _ => Err(DomainError::NotFound("message")),
                }
            })
            .await
    }

    /// Replaces the text of one's own text message; every member gets
    /// `message.edited` and history shows the new text with `edited_at`.
    pub async fn edit(
        &self,
        caller: Caller,
        message_id: u64,
        body: Box<RawValue>,
    ) -> Result<Message, DomainError> {
        if self.check_body(caller, &body)?.is_none() {
            return Err(DomainError::Invalid("an edit must carry body.text".into()));
        }
        let row = self.visible_message(caller, message_id).await?;
        if row.sender_id != caller.user_id || row.kind != "user" {
            return Err(DomainError::Forbidden(
                "only the sender may edit a message".into(),
            ));
        }
        if row.recalled_at.is_some() {
            return Err(DomainError::Conflict(
                "a recalled message can't be edited".into(),
            ));
        }
        let old: serde_json::Value = serde_json::from_str(&row.body).map_err(internal)?;
        if old.get("text").is_none() {
            return Err(DomainError::Conflict(
                "only text messages can be edited".into(),
            ));
        }
        self.charge_conversation(caller.user_id, row.conversation_id)
            .await?;
        let now = now_ms();
        let body = body.get().to_owned();
        let sender = caller.user_id;
        self.rewrite(row, MESSAGE_EDITED, move |c, id| {
            // The files it references pass the checks a send's do.
            let files = Chat::referenced_files(c, sender, &body)?;
            store::edit(c, id, &body, now)?;
            for file in &files {
                crate::store::files::link(c, id, file)?;
            }
            Ok(())
        })
        .await
    }

    /// Takes back one's own message within the recall window: the content is
    /// removed from the store, every member gets `message.recalled`, and
    /// history and sync show a tombstone.
    pub async fn recall(&self, caller: Caller, message_id: u64) -> Result<Message, DomainError> {
        let row = self.visible_message(caller, message_id).await?;
        if row.sender_id != caller.user_id || row.kind != "user" {
            return Err(DomainError::Forbidden(
                "only the sender may recall a message".into(),
            ));
        }
        if row.recalled_at.is_some() {
            return Message::try_from(row).map_err(internal);
        }
        let now = now_ms();
        if now - row.sent_at > self.limits.recall_window.as_millis() as i64 {
            return Err(DomainError::RecallWindowPassed);
        }
        self.charge_conversation(caller.user_id, row.conversation_id)
            .await?;
        self.rewrite(row, MESSAGE_RECALLED, move |c, id| {
            Ok(store::recall(c, id, now)?)
        })
        .await
    }

    /// Applies `change` to a message and tells every member with `kind`.
    async fn rewrite<F>(
        &self,
        row: MessageRow,
        kind: &'static str,
        change: F,
    ) -> Result<Message, DomainError>
    where
        F: FnOnce(&Tx<'_>, u64) -> Result<(), DomainError> + Send + 'static,
    {
        let downlink = self.downlink.clone();
        let (updated, _) = self
            .store
            .write_then(
                move |c| {
                    change(c, row.id)?;
                    let updated =
                        store::by_id(c, row.id)?.ok_or(DomainError::NotFound("message"))?;
                    let deliveries = store::fan_out(c, &updated, kind)?;
                    let mut out = Outbox::default();
                    out.message(kind, &updated, deliveries);
                    Ok::<_, DomainError>((updated, out))
                },
                move |(_, out): &(MessageRow, Outbox)| out.push(&*downlink),
            )
            .await?;
        Message::try_from(updated).map_err(internal)
    }

    /// Delete for me: the message disappears from the caller's history and
    /// search; the caller's devices get `message.hidden`.
    pub async fn hide(&self, caller: Caller, message_id: u64) -> Result<(), DomainError> {
        let row = self.visible_message(caller, message_id).await?;
        let user = caller.user_id;
        self.charge(user, 0)?;
        let downlink = self.downlink.clone();
        self.store
            .write_then(
                move |c| {
                    store::hide(c, user, row.id)?;
                    let mut out = Outbox::default();
                    out.emit(
                        c,
                        user,
                        &events::Stored::MessageHidden {
                            message_id: row.id,
                            conversation_id: row.conversation_id,
                        },
                    )?;
                    Ok::<_, DomainError>(out)
                },
                move |out: &Outbox| out.push(&*downlink),
            )
            .await?;
        Ok(())
    }

    /// Events after `after`, at most `limit` (capped by the page limit).
    pub async fn sync(
        &self,
        caller: Caller,
        after: u64,
        limit: usize,
    ) -> Result<SyncPage, DomainError> {
        let limit = limit.clamp(1, self.limits.max_page);
        let user = caller.user_id;
        let (rows, counts) = self
            .store
            .read(move |c| {
                let rows = store::sync(c, user, after, limit + 1, now_ms())?;
                let ids: Vec<u64> = rows
                    .iter()
                    .filter_map(|r| r.message.as_ref().map(|m| m.id))
                    .collect();
                let counts = super::reactions::read_counts(c, user, &ids)?;
                Ok::<_, DomainError>((rows, counts))
            })
            .await?;
        let has_more = rows.len() > limit;
        let mut events = rows
            .into_iter()
            .take(limit)
            .map(|row| {
                let mentioned = row.kind == MESSAGE_CREATED
                    && row
                        .message
                        .as_ref()
                        .is_some_and(|m| super::replies::mentions_user(m, user));
                let mut event = Event::try_from(row)?;
                if mentioned {
                    event.data.insert("mentioned".into(), true.into());
                }
                Ok::<_, String>(event)
            })
            .collect::<Result<Vec<_>, _>>()
            .map_err(internal)?;
        super::reactions::attach_to_events(&mut events, &counts);
        let cursor = events.last().map_or(after, |e| e.cursor);
        metrics::counter!(crate::metrics::EVENTS_SYNCED_TOTAL).increment(events.len() as u64);
        Ok(SyncPage {
            events,
            cursor,
            has_more,
        })
    }

    /// Records the cursor a device has processed (never backwards). Newly
    /// delivered messages produce `receipt.delivered` for their senders.
    pub async fn ack(
        &self,
        caller: Caller,
        device_id: String,
        cursor: u64,
    ) -> Result<u64, DomainError> {
        if !(1..=64).contains(&device_id.chars().count()) || device_id.chars().any(char::is_control)
        {
            return Err(DomainError::Invalid(
                "device_id must be 1-64 characters".into(),
            ));
        }
        let user = caller.user_id;
        self.charge(user, 0)?;
        let now = now_ms();
        let downlink = self.downlink.clone();
        let (stored, _) = self
            .store
            .write_then(
                move |c| {
                    let head = store::inbox_head(c, user)?;
                    if cursor > head {
                        return Err(DomainError::Invalid(format!(
                            "cursor {cursor} is past the newest event ({head})"
                        )));
                    }
                    let (previous, stored) = store::ack(c, user, &device_id, cursor, now)?;
                    let mut out = Outbox::default();
                    if stored > previous {
                        for (conversation_id, sender, seq) in
                            store::delivered_between(c, user, previous, stored)?
                        {
                            out.emit(
                                c,
                                sender,
                                &events::Stored::ReceiptDelivered {
                                    conversation_id,
                                    user_id: user,
                                    seq,
                                },
                            )?;
                        }
                    }
                    Ok((stored, out))
                },
                move |(_, out): &(u64, Outbox)| out.push(&*downlink),
            )
            .await?;
        Ok(stored)
    }

    /// Moves the caller's read marker (never backwards). The other party (in
    /// groups: the senders of the newly read messages) gets `receipt.read`;
    /// the caller's own devices get `conversation.read`, so unread counts
    /// agree across devices.
    pub async fn mark_read(
        &self,
        caller: Caller,
        conversation_id: u64,
        seq: u64,
    ) -> Result<u64, DomainError> {
        let user = caller.user_id;
        self.charge_conversation(user, conversation_id).await?;
        let downlink = self.downlink.clone();
        let (new, _) = self
            .store
            .write_then(
                move |c| {
                    let (old, new) = store::mark_read(c, user, conversation_id, seq)?;
                    let mut out = Outbox::default();
                    if new > old {
                        let receipt = events::Stored::ReceiptRead {
                            conversation_id,
                            user_id: user,
                            seq: new,
                        };
                        for sender in store::senders_between(c, conversation_id, user, old, new)? {
                            out.emit(c, sender, &receipt)?;
                        }
                        out.emit(
                            c,
                            user,
                            &events::Stored::ConversationRead {
                                conversation_id,
                                read_seq: new,
                            },
                        )?;
                    }
                    Ok::<_, DomainError>((new, out))
                },
                move |(_, out): &(u64, Outbox)| out.push(&*downlink),
            )
            .await?;
        Ok(new)
    }

    /// Typing indicator: pushed to the other members now, never stored.
    pub async fn typing(&self, caller: Caller, conversation_id: u64) -> Result<(), DomainError> {
        let user = caller.user_id;
        let members = self
            .store
            .read(move |c| {
                if store::membership(c, user, conversation_id)?.is_none() {
                    return Err(DomainError::NotFound("conversation"));
                }
                let mut members = store::members(c, conversation_id)?;
                // Nobody who blocked the typist hears it.
                let mut keep = Vec::with_capacity(members.len());
                for m in members.drain(..) {
                    if m != user && !social::has_blocked(c, m, user)? {
                        keep.push(m);
                    }
                }
                Ok(keep)
            })
            .await?;
        // Answered 429 past the budget, like every other change: a client
        // that types faster than that is not a person typing.
        self.charge(user, members.len())?;
        let mut out = Outbox::default();
        out.ephemeral(
            members,
            &Ephemeral::Typing {
                conversation_id,
                user_id: user,
            },
        );
        let downlink = self.downlink.clone();
        tokio::task::spawn_blocking(move || out.push(&*downlink))
            .await
            .map_err(|e| DomainError::internal_from("pushing a typing indicator", e))?;
        Ok(())
    }

    pub async fn history(
        &self,
        caller: Caller,
        conversation_id: u64,
        before_seq: Option<u64>,
        limit: usize,
    ) -> Result<(Vec<Message>, bool), DomainError> {
        let limit = limit.clamp(1, self.limits.max_page);
        let user = caller.user_id;
        let (rows, counts) = self
            .store
            .read(move |c| {
                let Some(rows) =
                    store::history(c, user, conversation_id, before_seq, limit + 1, now_ms())?
                else {
                    return Err(DomainError::NotFound("conversation"));
                };
                let ids: Vec<u64> = rows.iter().map(|m| m.id).collect();
                let counts = super::reactions::read_counts(c, user, &ids)?;
                Ok((rows, counts))
            })
            .await?;
        let has_more = rows.len() > limit;
        let skip = rows.len().saturating_sub(limit);
        let mut messages = rows
            .into_iter()
            .skip(skip)
            .map(Message::try_from)
            .collect::<Result<Vec<_>, _>>()
            .map_err(internal)?;
        super::reactions::attach(&mut messages, &counts);
        Ok((messages, has_more))
    }

    /// The caller's conversations: those they pinned first, then by
    /// latest activity; the archived ones instead if `archived`.
    pub async fn conversations(
        &self,
        caller: Caller,
        archived: bool,
        limit: usize,
    ) -> Result<Vec<Conversation>, DomainError> {
        let limit = limit.clamp(1, self.limits.max_page);
        let user = caller.user_id;
        let now = now_ms();
        self.store
            .read(move |c| {
                let rows = store::conversations(c, user, archived, limit)?;
                let mut out = Vec::with_capacity(rows.len());
                for row in rows {
                    let peer = match row.peer_id {
                        Some(id) => users::by_id(c, id)?.map(User::from),
                        None => None,
                    };
                    out.push(Conversation::from_row(row, peer, now).map_err(internal)?);
                }
                Ok(out)
            })
            .await
    }

    /// Full-text search over the caller's own conversations.
    pub async fn search(
        &self,
        caller: Caller,
        query: &str,
        limit: usize,
    ) -> Result<Vec<Message>, DomainError> {
        let expr =
            fts_query(query).ok_or_else(|| DomainError::Invalid("q must contain a word".into()))?;
        let limit = limit.clamp(1, 100);
        let user = caller.user_id;
        // Searches are the one read whose cost users choose freely, and a
        // reader runs each on a core of its own: unbounded, a few users
        // searching in loops take every core from everyone's sends. They
        // take turns instead (half the cores by default); a search that
        // waits too long ends with the request's timeout.
        let waiting = std::time::Instant::now();
        let _turn = self
            .searches
            .acquire()
            .await
            .map_err(|_| DomainError::from(crate::store::StoreError::Closed))?;
        metrics::histogram!(crate::metrics::SEARCH_WAIT_SECONDS)
            .record(waiting.elapsed().as_secs_f64());
        // A reader alone: it also finds every send answered before it,
        // indexed or not yet (`store::search`).
        let rows = self
            .store
            .read(move |c| store::search(c, user, &expr, limit, now_ms()))
            .await?;
        rows.into_iter()
            .map(|r| Message::try_from(r).map_err(internal))
            .collect()
    }
}

/// Turns user input into a safe FTS5 expression: every word quoted (so
/// operators and syntax in the input are literal), all required; the last
/// word also matches as a prefix. `None` if there is no word.
fn fts_query(input: &str) -> Option<String> {
    let words: Vec<String> = input
        .split_whitespace()
        .take(16)
        .map(|w| format!("\"{}\"", w.replace('"', "\"\"")))
        .collect();
    let last = words.last()?.clone();
    let mut expr = words[..words.len() - 1].join(" ");
    if !expr.is_empty() {
        expr.push(' ');
    }
    expr.push_str(&last);
    expr.push('*');
    Some(expr)
}

#[cfg(test)]
mod tests {
    use super::fts_query;

    #[test]
    fn fts_queries_are_quoted() {
        assert_eq!(
            fts_query("hello world").as_deref(),
            Some("\"hello\" \"world\"*")
        );
        assert_eq!(fts_query("a\"b OR").as_deref(), Some("\"a\"\"b\" \"OR\"*"));
        assert_eq!(fts_query("   ").as_deref(), None);
    }
}

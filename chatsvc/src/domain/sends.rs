//! Sends as data: what [`Chat::queue_send`](super::Chat::queue_send) queues
//! once a request has passed the checks made before queueing, and the rule
//! that stores a run of them in one transaction ([`Sends`], a
//! [`Batch`]): every check of every send first (one statement for all on
//! PostgreSQL, [`store::routes`]), then every message that may go and its
//! inbox rows (one more, [`store::post_many`]). Each send gets the answer
//! it would get alone, in queue order: a resend (of a message stored
//! before, or earlier in the run) gets the original, a send that fails a
//! check fails alone and writes nothing.

use std::collections::HashMap;
use std::sync::Arc;

use super::messages::{announce, MESSAGE_CREATED};
use super::model::Recipient;
use super::outbox::Outbox;
use super::{Chat, DmPolicy, DomainError, Downlink};
use crate::store::messages::{
    self as store, MessageExtras, MessageRow, NewRow, Posted, SendRoute, SendTo,
};
use crate::store::webhooks::{self, WebhookRow};
use crate::store::{Answers, Batch, Tx};

/// A send queued for the writer.
pub(crate) struct SendItem {
    pub(crate) sender: u64,
    pub(crate) client_msg_id: String,
    pub(crate) to: Recipient,
    /// JSON object text, checked.
    pub(crate) body: String,
    /// `body.text`, for the full-text index.
    pub(crate) text: Option<String>,
    /// A reply's target, mentions, a forward's origin (`domain::replies`).
    pub(crate) extras: Option<MessageExtras>,
    pub(crate) now: i64,
    pub(crate) dm_policy: DmPolicy,
    /// Where the pushes go after the commit, and who is online meanwhile.
    pub(crate) downlink: Arc<dyn Downlink>,
}

impl SendItem {
    fn route_query(&self) -> SendTo {
        match self.to {
            Recipient::User(peer) => SendTo::User {
                sender: self.sender,
                peer,
                friends: self.asks_friendship(),
            },
            Recipient::Group(group) => SendTo::Group {
                sender: self.sender,
                group,
            },
        }
    }

    /// Under the `friends` policy only friends may message each other
    /// (notes to self aside).
    fn asks_friendship(&self) -> bool {
        self.dm_policy == DmPolicy::Friends && self.to != Recipient::User(self.sender)
    }

    /// The send's checks on what [`store::routes`] found: its
    /// conversation, `None` for a direct one not created yet, or why the
    /// send may not go.
    fn checked(&self, route: SendRoute) -> Result<Option<u64>, DomainError> {
        match route {
            SendRoute::User { route, friends } => {
                // Unknown and blocking users get the same answer, so a
                // block is not revealed.
                let route = route.ok_or(DomainError::NotFound("recipient"))?;
                if route.peer_blocked_sender {
                    return Err(DomainError::NotFound("recipient"));
                }
                if route.sender_blocked_peer {
                    return Err(DomainError::Forbidden(
                        "you have blocked this user; unblock them first".into(),
                    ));
                }
                if self.asks_friendship() && friends != Some(true) {
                    return Err(DomainError::Forbidden(
                        "only friends may message each other".into(),
                    ));
                }
                Ok(route.conversation)
            }
            SendRoute::Group(Some(group)) if group.member => Ok(Some(group.conversation)),
            SendRoute::Group(_) => Err(DomainError::NotFound("group")),
        }
    }
}

/// A send's answer once committed: the message (the original, for a
/// resend), whether this send stored it, and its pushes.
pub(crate) struct Stored {
    pub(crate) row: MessageRow,
    pub(crate) created: bool,
    out: Outbox,
    downlink: Arc<dyn Downlink>,
}

/// The kind of [`Batch`] sends are.
pub(crate) struct Sends;

impl Batch for Sends {
    type Item = SendItem;
    type Output = Stored;
    type Error = DomainError;

    fn run(c: &Tx<'_>, items: Vec<SendItem>) -> Answers<Stored, DomainError> {
        // Read once for the run: no send changes them.
        let hooks = webhooks::active_to_send(c)?;
        // An offline-message webhook tells each message's unread count as
        // it was just after that message: with webhooks on, one at a time.
        if items.len() > 1 && !hooks.is_empty() {
            let mut answers = Vec::with_capacity(items.len());
            for item in items {
                answers.extend(store_all(c, vec![item], &hooks)?);
            }
            return Ok(answers);
        }
        store_all(c, items, &hooks)
    }

    fn after_commit(stored: &Stored) {
        stored.out.push(&*stored.downlink);
    }
}

/// What becomes of a send once checked.
enum Step {
    /// The `at`-th row stored, with the uploaded files its body
    /// references and, for a reply, its target's quote.
    Post {
        at: usize,
        files: Vec<String>,
        quote: Option<String>,
    },
    /// A resend of the send stored as the `at`-th row of this run.
    Again(usize),
    /// Answered already: the original of a resend, or a check's failure.
    Done(Result<MessageRow, DomainError>),
}

/// Stores `items` at once (see the module doc).
fn store_all(
    c: &Tx<'_>,
    items: Vec<SendItem>,
    hooks: &[WebhookRow],
) -> Answers<Stored, DomainError> {
    let n = items.len();
    // The files each body references (statements only for bodies that
    // reference any), then every route of a send whose files passed.
    let files: Vec<Result<Vec<String>, DomainError>> = items
        .iter()
        .map(|item| Chat::referenced_files(c, item.sender, &item.body))
        .collect();
    let queries: Vec<SendTo> = items
        .iter()
        .zip(&files)
        .filter(|(_, files)| files.is_ok())
        .map(|(item, _)| item.route_query())
        .collect();
    let mut found = store::routes(c, &queries)?.into_iter();
    let routes: Vec<Option<SendRoute>> = files
        .iter()
        .map(|files| files.as_ref().ok().and_then(|_| found.next()))
        .collect();

    let mut steps = Vec::with_capacity(n);
    let mut rows: Vec<NewRow<'_>> = Vec::with_capacity(n);
    // The rows stored by (sender, client_msg_id), when several sends run.
    let mut posting: HashMap<(u64, &str), usize> = HashMap::new();
    for ((item, files), route) in items.iter().zip(files).zip(routes) {
        let key = (item.sender, item.client_msg_id.as_str());
        if let Some(&at) = posting.get(&key) {
            steps.push(Step::Again(at));
            continue;
        }
        let checked = files.and_then(|files| {
            let route = route.ok_or_else(|| DomainError::internal("a send without its route"))?;
            let conversation = item.checked(route)?;
            let quote = super::replies::check(c, item, conversation)?;
            Ok((conversation, (files, quote)))
        });
        // A send that fails its checks now, or would create a
        // conversation, may be a resend whose original went before (the
        // recipient blocked the sender since; the same id to someone
        // else): the original is looked up before answering or writing.
        let (conversation, files) = match checked {
            Ok((Some(conversation), files)) => (conversation, files),
            Ok((None, files)) => match store::by_client_id(c, item.sender, &item.client_msg_id)? {
                Some(original) => {
                    steps.push(Step::Done(Ok(original)));
                    continue;
                }
                None => {
                    let Recipient::User(peer) = item.to else {
                        return Err(DomainError::internal("a group without a conversation"));
                    };
                    let id = store::direct_conversation(c, item.sender, peer, item.now)?;
                    (id, files)
                }
            },
            Err(e) => {
                let original = store::by_client_id(c, item.sender, &item.client_msg_id)?;
                steps.push(Step::Done(original.ok_or(e)));
                continue;
            }
        };
        if n > 1 {
            posting.insert(key, rows.len());
        }
        let (files, quote) = files;
        steps.push(Step::Post {
            at: rows.len(),
            files,
            quote,
        });
        rows.push(NewRow {
            conversation_id: conversation,
            sender: item.sender,
            client_msg_id: &item.client_msg_id,
            body: &item.body,
            text: item.text.as_deref(),
            kind: "user",
            now: item.now,
            extras: item.extras.as_ref(),
        });
    }

    let mut posted = store::post_many(c, &rows, MESSAGE_CREATED)?;
    // Rows whose send was repeated in the run: the repeat's answer.
    let mut again: Vec<Option<MessageRow>> = Vec::new();
    for step in &steps {
        if let Step::Again(at) = *step {
            again.resize(rows.len(), None);
            again[at] = posted[at].as_ref().map(|p| p.row.clone());
        }
    }
    let original = |item: &SendItem| -> Result<MessageRow, DomainError> {
        store::by_client_id(c, item.sender, &item.client_msg_id)?
            .ok_or_else(|| DomainError::internal("a resend's original vanished"))
    };
    let mut answers = Vec::with_capacity(n);
    for (step, item) in steps.into_iter().zip(&items) {
        let mut out = Outbox::with_presence(item.downlink.clone());
        let (row, created) = match step {
            Step::Post { at, files, quote } => match posted[at].take() {
                Some(Posted {
                    mut row,
                    deliveries,
                }) => {
                    if let Some(extras) = row.extras.as_mut() {
                        extras.quote = quote;
                    }
                    announce(c, &mut out, &row, deliveries, &files, item.now, hooks)?;
                    (row, true)
                }
                // A resend: the insert's own probe found the original.
                None => (original(item)?, false),
            },
            Step::Again(at) => match again.get(at).cloned().flatten() {
                Some(row) => (row, false),
                None => (original(item)?, false),
            },
            Step::Done(Ok(row)) => (row, false),
            Step::Done(Err(e)) => {
                answers.push(Err(e));
                continue;
            }
        };
        answers.push(Ok(Stored {
            row,
            created,
            out,
            downlink: item.downlink.clone(),
        }));
    }
    Ok(answers)
}

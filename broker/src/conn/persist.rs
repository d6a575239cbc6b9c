//! A persistent session's connection: the replay of what it missed, read
//! from the store a page at a time, merged with live pushes by inbox
//! cursor; its acknowledged cursor, written in batches; and the will.
//!
//! Order of a resume: the connection registers (from then on every push
//! reaches its mailbox), then reads the store after the session's
//! acknowledged cursor, so an event is either in the store read or in the
//! mailbox (or both: the store's copy goes first, and the mailbox's is
//! dropped by its cursor). While the replay runs, the mailbox is not
//! taken from; once the replay has caught up, live events at or below the
//! last cursor sent are dropped, and one past a gap (a push lost between
//! cluster nodes) starts another replay: the store is the queue.

use super::deliver::{put, Put};
use super::*;
use crate::sessions::{OpenedSession, SessionCursors, SessionKey, SessionStore, StoredFilter};

/// Stored events read per replay page.
const REPLAY_PAGE: usize = 100;

/// Time the goodbye's store writes (last cursors, or the session's end)
/// may take.
const GOODBYE_TIMEOUT: Duration = Duration::from_secs(5);

/// A persistent session's delivery state.
pub(super) struct Persist {
    store: Arc<dyn SessionStore>,
    key: SessionKey,
    /// Seconds the session outlives its connection (0: it ends with it).
    pub(super) expiry_secs: u32,
    /// `users/{id}/events`: the topic whose pushes carry inbox cursors.
    events_topic: Bytes,
    /// Newest cursor written to the client.
    last: u64,
    /// Newest cursor acknowledged (every one up to it).
    acked: u64,
    /// Replayed events up to this cursor may have been sent before: DUP=1.
    dup_through: u64,
    replay: Option<Replay>,
    /// The live event past a gap may go: the replay it started found the
    /// store has nothing between.
    accept_gap: bool,
    /// No filter took stored events until now: the next live one sets where
    /// the session's cursor starts (it gets nothing from before it
    /// subscribed).
    restart_at_next: bool,
    /// SUBSCRIBE or UNSUBSCRIBE changed the filters: written before the
    /// answer goes out.
    pub(super) subs_dirty: bool,
    /// What the store said at CONNECT, used once the connection registers.
    opened: Option<OpenedSession>,
    /// `(acked, last)` as last handed to the batch writer.
    noted: (u64, u64),
    /// The session's turn (`Shared::session_turn`), held until the last
    /// cursors are written.
    _turn: Option<tokio::sync::OwnedMutexGuard<()>>,
}

/// Stored events being replayed: `(first, last, payload)`, where a stored
/// event covers its own cursor and a `sync.required` the range it skips.
struct Replay {
    page: VecDeque<(u64, u64, Bytes)>,
    exhausted: bool,
    /// Started by a live event past a gap.
    for_gap: bool,
    delivered: bool,
}

/// What to do with a live delivery.
pub(super) enum Admit {
    /// Write it; with its inbox cursor if it has one.
    Deliver(Option<u64>),
    /// Already sent (by the replay): drop it.
    Duplicate,
    /// Past a gap: replay from the store first.
    Gap,
}

/// A will, kept until the connection ends.
pub(super) struct Will {
    pub topic: String,
    pub payload: Bytes,
    pub properties: Option<protocol::PublishProperties>,
    pub delay: Duration,
    /// The will's own QoS: delivered at no more than this.
    pub qos: protocol::QoS,
}

impl Will {
    pub(super) fn new(
        will: protocol::LastWill,
        props: Option<protocol::LastWillProperties>,
    ) -> Option<Will> {
        let topic = String::from_utf8(will.topic.to_vec()).ok()?;
        let (delay, properties) = match props {
            Some(p) => (
                p.delay_interval.unwrap_or(0),
                Some(protocol::PublishProperties {
                    payload_format_indicator: p.payload_format_indicator,
                    message_expiry_interval: p.message_expiry_interval,
                    content_type: p.content_type,
                    response_topic: p.response_topic,
                    correlation_data: p.correlation_data,
                    user_properties: p.user_properties,
                    ..Default::default()
                }),
            ),
            None => (0, None),
        };
        Some(Will {
            topic,
            qos: will.qos,
            payload: will.message,
            properties,
            delay: Duration::from_secs(u64::from(delay)),
        })
    }
}

impl Persist {
    fn new(
        store: Arc<dyn SessionStore>,
        key: SessionKey,
        expiry_secs: u32,
        opened: OpenedSession,
        turn: Option<tokio::sync::OwnedMutexGuard<()>>,
    ) -> Persist {
        Persist {
            store,
            events_topic: Bytes::from(format!("users/{}/events", key.0)),
            key,
            expiry_secs,
            last: opened.acked,
            acked: opened.acked,
            dup_through: opened.sent,
            replay: None,
            accept_gap: false,
            restart_at_next: false,
            subs_dirty: false,
            noted: (opened.acked, opened.acked),
            opened: Some(opened),
            _turn: turn,
        }
    }

    /// Whether the store resumed a session (CONNACK session present).
    pub(super) fn present(&self) -> bool {
        self.opened.as_ref().is_some_and(|o| o.present)
    }

    /// The resumed session's filters, for the mailbox.
    pub(super) fn stored_filters(&self) -> Vec<Granted> {
        let Some(opened) = &self.opened else {
            return Vec::new();
        };
        opened
            .subscriptions
            .iter()
            .map(|f| Granted {
                filter: f.filter.clone(),
                qos: if f.qos == 0 {
                    QoS::AtMostOnce
                } else {
                    QoS::AtLeastOnce
                },
                id: f.id,
            })
            .collect()
    }

    /// Decides about a live delivery from the mailbox.
    pub(super) fn admit(&mut self, topic: &Bytes, payload: &Bytes) -> Admit {
        if *topic != self.events_topic {
            return Admit::Deliver(None);
        }
        let Some(cursor) = self.store.cursor_of(payload) else {
            return Admit::Deliver(None);
        };
        if std::mem::take(&mut self.restart_at_next) {
            let before = cursor.saturating_sub(1);
            self.last = self.last.max(before);
            self.acked = self.acked.max(before);
        }
        if cursor <= self.last {
            Admit::Duplicate
        } else if cursor > self.last + 1 && !self.accept_gap {
            Admit::Gap
        } else {
            Admit::Deliver(Some(cursor))
        }
    }

    /// A stored event (or what a `sync.required` skips, up to `cursor`) was
    /// written.
    pub(super) fn delivered(&mut self, cursor: u64) {
        self.last = self.last.max(cursor);
        self.accept_gap = false;
    }

    /// A live event came past a gap: read the store from the last sent.
    pub(super) fn replay_from_last(&mut self) {
        self.replay = Some(Replay {
            page: VecDeque::new(),
            exhausted: false,
            for_gap: true,
            delivered: false,
        });
    }

    /// The cursor every delivery up to which is acknowledged: just before
    /// the oldest one still in flight, else the last sent (QoS 0
    /// deliveries count once written).
    fn acked_now(&self, flight: &Flight) -> u64 {
        let oldest = flight
            .inflight
            .iter()
            .filter_map(|(_, range)| range.map(|(first, _)| first))
            .min();
        let acked = oldest.map_or(self.last, |first| first.saturating_sub(1));
        self.acked.max(acked)
    }

    fn cursors(&self, connected: bool) -> SessionCursors {
        SessionCursors {
            acked: self.acked,
            sent: self.last,
            expiry_secs: self.expiry_secs,
            connected,
        }
    }
}

impl<S> Connection<S>
where
    S: AsyncRead + AsyncWrite + Unpin + Send,
{
    /// Opens the connection's persistent session in the store: resumed or
    /// new. `None` without a store (the session then ends with the
    /// connection). A connection of this node that holds the session is
    /// taken over first, and its last cursors written, so the resume starts
    /// from them (a client that reconnects at once would otherwise be sent
    /// again what it had just acknowledged).
    pub(super) async fn open_session(
        shared: &Shared,
        user_id: u64,
        session_id: &Arc<str>,
        clean_start: bool,
        expiry_secs: u32,
    ) -> Result<Option<Box<Persist>>, crate::sessions::SessionStoreError> {
        let Some(store) = shared.sessions.get() else {
            return Ok(None);
        };
        shared.registry.kick_client(user_id, session_id);
        let turn = shared.session_turn(session_id).lock_owned();
        let turn = tokio::time::timeout(GOODBYE_TIMEOUT, turn).await.ok();
        let opened = store
            .open(
                user_id,
                session_id,
                clean_start,
                expiry_secs,
                shared.settings.max_sessions_per_user,
            )
            .await?;
        Ok(Some(Box::new(Persist::new(
            store.clone(),
            (user_id, session_id.clone()),
            expiry_secs,
            opened,
            turn,
        ))))
    }

    /// Called once registered: a resumed session with a backlog starts its
    /// replay, or gets `sync.required` when the backlog is over the bound.
    pub(super) fn start_replay(&mut self) {
        let settings = &self.shared.settings;
        let (max_backlog, max_age) = (
            settings.session_backlog,
            settings.session_backlog_age.as_secs(),
        );
        let Some(p) = self.persist.as_deref_mut() else {
            return;
        };
        let Some(opened) = p.opened.take() else {
            return;
        };
        let owner = Arc::as_ptr(&self.direct.mailbox) as usize;
        self.shared.dirty.note(&p.key, owner, p.cursors(true));
        if self.direct.mailbox.grant(&p.events_topic).is_none() {
            p.restart_at_next = true;
            return;
        }
        if !opened.present {
            return;
        }
        let backlog = opened.head.saturating_sub(p.acked);
        if backlog == 0 {
            return;
        }
        let mut replay = Replay {
            page: VecDeque::new(),
            exhausted: false,
            for_gap: false,
            delivered: false,
        };
        let reason = if backlog > max_backlog {
            Some("backlog")
        } else if opened.away_secs > max_age {
            Some("age")
        } else {
            None
        };
        if let Some(reason) = reason {
            metrics::counter!(crate::metrics::SESSION_SYNC_REQUIRED_TOTAL).increment(1);
            let payload = p.store.sync_required(p.acked, opened.head, reason);
            replay.page.push_back((p.acked + 1, opened.head, payload));
            replay.exhausted = true;
        }
        p.replay = Some(replay);
    }

    pub(super) fn replaying(&self) -> bool {
        self.persist.as_ref().is_some_and(|p| p.replay.is_some())
    }

    /// Writes replayed events while the window has room, reading the next
    /// page when one is used up. Returns whether the replay has caught up
    /// (the mailbox goes next); false when it waits for PUBACKs.
    pub(super) async fn pump_replay(&mut self) -> Result<bool, ConnError> {
        loop {
            if self.outbuf.len() >= 64 * 1024 {
                self.flush().await?;
            }
            let Connection {
                persist: Some(p),
                direct: Direct { mailbox, flight },
                outbuf,
                version,
                ..
            } = self
            else {
                return Ok(true);
            };
            let Some(replay) = p.replay.as_mut() else {
                return Ok(true);
            };
            if let Some((first, last, payload)) = replay.page.front().cloned() {
                if last <= p.last {
                    replay.page.pop_front();
                    continue;
                }
                let Some((qos, ids)) = mailbox.grant(&p.events_topic) else {
                    // Unsubscribed meanwhile.
                    p.replay = None;
                    p.restart_at_next = true;
                    return Ok(true);
                };
                if qos != QoS::AtMostOnce && flight.inflight.len() >= flight.window {
                    return Ok(false);
                }
                let properties = (!ids.is_empty()).then(|| protocol::PublishProperties {
                    subscription_identifiers: ids,
                    ..Default::default()
                });
                let written = put(
                    outbuf,
                    *version,
                    flight,
                    Put {
                        topic: &p.events_topic,
                        payload: &payload,
                        qos,
                        properties,
                        dup: first == last && last <= p.dup_through,
                        range: Some((first.min(p.last + 1), last)),
                    },
                )
                .map_err(ConnError::Protocol)?;
                replay.page.pop_front();
                replay.delivered = true;
                p.delivered(last);
                let (w, d) = if written { (1, 0) } else { (0, 1) };
                metrics::counter!(crate::metrics::SESSION_REPLAYED_TOTAL).increment(w);
                self.counted(w, d);
                continue;
            }
            if replay.exhausted {
                p.accept_gap = replay.for_gap && !replay.delivered;
                p.replay = None;
                return Ok(true);
            }
            let (store, user, after) = (p.store.clone(), p.key.0, p.last);
            let page = Box::pin(store.replay(user, after, REPLAY_PAGE))
                .await
                .map_err(|e| ConnError::Store(e.0))?;
            let Some(replay) = self.persist.as_mut().and_then(|p| p.replay.as_mut()) else {
                return Ok(true);
            };
            replay.exhausted = page.len() < REPLAY_PAGE;
            replay.page = page.into_iter().map(|(c, b)| (c, c, b)).collect();
        }
    }

    /// Hands the session's cursors to the batch writer when they moved.
    pub(super) fn note_progress(&mut self) {
        let Some(p) = self.persist.as_deref_mut() else {
            return;
        };
        p.acked = p.acked_now(&self.direct.flight);
        if (p.acked, p.last) != p.noted {
            p.noted = (p.acked, p.last);
            let owner = Arc::as_ptr(&self.direct.mailbox) as usize;
            self.shared.dirty.note(&p.key, owner, p.cursors(true));
        }
    }

    /// Writes the session's filters after a SUBSCRIBE or UNSUBSCRIBE changed
    /// them, before the answer goes out: a SUBACK means the filter is kept.
    pub(super) async fn save_subscriptions(&mut self) -> Result<(), ConnError> {
        let Some(p) = self.persist.as_deref_mut() else {
            return Ok(());
        };
        if !std::mem::take(&mut p.subs_dirty) {
            return Ok(());
        }
        let filters = self
            .direct
            .mailbox
            .filters()
            .into_iter()
            .map(|g| StoredFilter {
                filter: g.filter,
                qos: g.qos as u8,
                id: g.id,
            })
            .collect();
        let (store, key) = (p.store.clone(), p.key.clone());
        if let Err(e) = Box::pin(store.save_subscriptions(key.0, &key.1, filters)).await {
            // The answers must not claim what was not kept.
            self.outbuf.clear();
            return Err(ConnError::Store(e.0));
        }
        Ok(())
    }

    /// A SUBSCRIBE added the first filter that takes stored events: the
    /// session's cursor starts at the next live one.
    pub(super) fn subscribed(&mut self, took_events_before: bool) {
        if let Some(p) = self.persist.as_deref_mut() {
            p.subs_dirty = true;
            if !took_events_before && self.direct.mailbox.grant(&p.events_topic).is_some() {
                p.restart_at_next = true;
            }
        }
    }

    /// Whether the session's filters take stored events now.
    pub(super) fn takes_events(&self) -> bool {
        self.persist
            .as_ref()
            .is_some_and(|p| self.direct.mailbox.grant(&p.events_topic).is_some())
    }

    /// The connection ended: the session's last cursors are written, or the
    /// session ends with it (expiry 0), unless another connection took it
    /// over.
    pub(super) async fn end_session(&mut self, taken_over: bool) {
        let Some(mut p) = self.persist.take() else {
            return;
        };
        let owner = Arc::as_ptr(&self.direct.mailbox) as usize;
        self.shared.dirty.forget(&p.key, owner);
        p.acked = p.acked_now(&self.direct.flight);
        let (store, key) = (p.store.clone(), p.key.clone());
        let write = async {
            if p.expiry_secs == 0 && !taken_over {
                store.discard(key.0, &key.1).await
            } else {
                store
                    .save_cursors(vec![(key.clone(), p.cursors(taken_over))])
                    .await
            }
        };
        match tokio::time::timeout(GOODBYE_TIMEOUT, write).await {
            Ok(Ok(())) => {}
            Ok(Err(e)) => warn!(user_id = key.0, error = %e, "saving the MQTT session failed"),
            Err(_) => warn!(user_id = key.0, "saving the MQTT session timed out"),
        }
        // The next connection of the session may read it now.
        drop(p);
        self.shared.release_session_turn(&key.1);
    }

    /// Publishes the will to the user's connections whose filters match,
    /// after its delay (capped by the session's end), unless a connection
    /// resumes the session first.
    pub(super) fn publish_will(&self, will: Will) {
        let expiry = Duration::from_secs(
            self.persist
                .as_ref()
                .map_or(0, |p| u64::from(p.expiry_secs)),
        );
        let delay = will.delay.min(expiry);
        metrics::counter!(crate::metrics::WILLS_TOTAL).increment(1);
        if delay.is_zero() {
            self.shared.publish_will(
                self.principal.user_id,
                will.topic,
                will.payload,
                will.properties,
                will.qos,
            );
            return;
        }
        let cancel = tokio_util::sync::CancellationToken::new();
        {
            let mut wills = self.shared.wills.lock().unwrap_or_else(|e| e.into_inner());
            if let Some(previous) = wills.insert(self.session_id.clone(), cancel.clone()) {
                previous.cancel();
            }
        }
        let (shared, id) = (self.shared.clone(), self.session_id.clone());
        let user_id = self.principal.user_id;
        tokio::spawn(async move {
            tokio::select! {
                _ = cancel.cancelled() => return,
                _ = shared.shutdown.cancelled() => {}
                _ = tokio::time::sleep(delay) => {}
            }
            {
                // Under the lock that replaces and cancels wills: not
                // cancelled now, the entry is this will's own.
                let mut wills = shared.wills.lock().unwrap_or_else(|e| e.into_inner());
                if cancel.is_cancelled() {
                    return;
                }
                wills.remove(&id);
            }
            shared.publish_will(user_id, will.topic, will.payload, will.properties, will.qos);
        });
    }
}

/// A new connection resumes the session of `session_id`: a will waiting
/// out its delay is not published (MQTT 5 §3.1.3.2.2).
pub(super) fn cancel_will(shared: &Shared, session_id: &str) {
    let mut wills = shared.wills.lock().unwrap_or_else(|e| e.into_inner());
    if let Some(token) = wills.remove(session_id) {
        token.cancel();
    }
}

//! `EventStream`: the MQTT downlink plus sync, as one gap-free event stream.
//!
//! [`Client::connect`] spawns a driver task that owns the MQTT connection and
//! a [`Sequencer`]. Per connection it:
//! 1. connects (username = user id, password = access token, clean session);
//! 2. subscribes `users/{id}/#` at QoS 1 and waits for the SUBACK;
//! 3. syncs from the last delivered cursor, page by page, while pushes keep
//!    arriving; the sequencer merges both into cursor order;
//!    ephemeral pushes (`users/{id}/presence`, `users/{id}/typing`) have no
//!    cursor and nothing to catch up on, so they skip the sequencer and go
//!    out as they arrive;
//! 4. on any failure drops the connection, waits (exponential backoff with
//!    jitter) and starts over at 1, refreshing the token first when the
//!    broker refused the credentials.
//!
//! The MQTT event loop runs in its own task (a "pump") and hands packets over
//! a bounded channel, so the driver can wait on pushes and on sync answers at
//! once without cancelling `EventLoop::poll` halfway.
//!
//! Backpressure: a consumer that stops reading fills the stream's buffer, then
//! the pump's, then the socket; the broker may drop the connection and the
//! stream reconnects and syncs. Slow consumers cost a resync, never an event.

use std::future::Future;
use std::ops::ControlFlow;
use std::pin::Pin;
use std::sync::atomic::{AtomicU64, AtomicUsize, Ordering};
use std::sync::Arc;
use std::task::{Context, Poll};
use std::time::Duration;

use bytes::Bytes;
use futures_util::Stream;
use rumqttc::{
    AsyncClient, ConnectReturnCode, ConnectionError, EventLoop, MqttOptions, Packet, QoS,
    SubscribeReasonCode,
};
use tokio::sync::{mpsc, watch};
use tokio::task::JoinHandle;

use crate::client::{random_id, Client, MAX_SYNC_LIMIT};
use crate::error::SdkError;
use crate::event::Event;
use crate::model::SyncPage;
use crate::sequencer::{PushOutcome, Sequencer};
use crate::Result;

/// Longest device id accepted (it is the MQTT client id and the ack key).
pub const MAX_DEVICE_ID_LEN: usize = 64;
/// Packets the pump may hold for the driver.
const PUMP_CAPACITY: usize = 64;
/// Requests (subscribe, disconnect) the MQTT client may queue.
const MQTT_REQUEST_CAPACITY: usize = 8;
/// `users/{id}/events`: inbox events, with cursors.
const EVENTS_SUBTOPIC: &str = "events";
/// `users/{id}/presence`: ephemeral; the payload's `type` is the same word.
const PRESENCE_SUBTOPIC: &str = "presence";
/// `users/{id}/typing`: ephemeral; the payload's `type` is the same word.
const TYPING_SUBTOPIC: &str = "typing";

mod options;
use options::Endpoint;
pub use options::{StartFrom, StreamOptions, Transport};

/// What an [`EventStream`] is doing, for status displays and tests.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum StreamState {
    /// Opening the MQTT connection (or finding the start cursor).
    Connecting,
    /// Subscribed; reading missed events through sync.
    Syncing,
    /// Subscribed and caught up: new events arrive by push.
    Live,
    /// Connection lost; waiting before the next attempt.
    Waiting,
    /// Ended: the stream was closed or hit an error it cannot recover from.
    Closed,
}

/// The stream of a user's inbox events: gap-free, duplicate-free, in cursor
/// order, across disconnects. Made by [`Client::connect`].
///
/// Ephemeral pushes ([`Event::Presence`], [`Event::Typing`]) come interleaved,
/// as they arrive; they have no cursor, do not move
/// [`last_cursor`](Self::last_cursor), and those sent while the stream was
/// disconnected are gone.
///
/// Items are `Ok(event)`; an `Err` is final (the session ended, or the server
/// refuses the stream) and is followed by the end of the stream. Connection
/// trouble is not an error: the stream reconnects and catches up on its own.
///
/// Dropping the stream stops its background tasks.
pub struct EventStream {
    events: mpsc::Receiver<Result<Event>>,
    /// Cursor of the last event handed to the caller; read by the acker.
    delivered: Arc<AtomicU64>,
    state: watch::Receiver<StreamState>,
    device_id: String,
    tasks: Vec<JoinHandle<()>>,
}

impl std::fmt::Debug for EventStream {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("EventStream")
            .field("device_id", &self.device_id)
            .field("last_cursor", &self.last_cursor())
            .field("state", &self.state())
            .finish_non_exhaustive()
    }
}

impl EventStream {
    /// The next event; `None` once the stream has ended. Cancel-safe: an
    /// event is never lost by dropping this future (e.g. in `select!`).
    pub async fn recv(&mut self) -> Option<Result<Event>> {
        let item = self.events.recv().await;
        self.note(&item);
        item
    }

    fn note(&self, item: &Option<Result<Event>>) {
        if let Some(cursor) = item.as_ref().and_then(|r| r.as_ref().ok()?.cursor()) {
            self.delivered.fetch_max(cursor, Ordering::Relaxed);
        }
    }

    /// Cursor of the last event returned (or the start cursor). Save it and
    /// pass [`StartFrom::After`] to resume exactly here later.
    pub fn last_cursor(&self) -> u64 {
        self.delivered.load(Ordering::Relaxed)
    }

    /// The MQTT client id / ack device id in use.
    pub fn device_id(&self) -> &str {
        &self.device_id
    }

    /// What the stream is doing right now.
    pub fn state(&self) -> StreamState {
        *self.state.borrow()
    }

    /// A watch on [`state`](Self::state), e.g. to wait until the stream is
    /// live: `stream.state_changes().wait_for(|s| *s == StreamState::Live)`.
    pub fn state_changes(&self) -> watch::Receiver<StreamState> {
        self.state.clone()
    }
}

impl Stream for EventStream {
    type Item = Result<Event>;

    fn poll_next(self: Pin<&mut Self>, cx: &mut Context<'_>) -> Poll<Option<Self::Item>> {
        let this = self.get_mut();
        let polled = this.events.poll_recv(cx);
        if let Poll::Ready(item) = &polled {
            this.note(item);
        }
        polled
    }
}

impl Drop for EventStream {
    fn drop(&mut self) {
        for task in &self.tasks {
            task.abort();
        }
    }
}

impl Client {
    /// Opens the event stream: MQTT downlink over `transport`, with sync
    /// filling whatever the push missed. Must be called within a Tokio
    /// runtime; returns at once (the connection is made in the background).
    ///
    /// ```no_run
    /// # async fn example(client: mqchat_sdk::Client) -> Result<(), mqchat_sdk::SdkError> {
    /// use mqchat_sdk::{Event, StreamOptions, Transport};
    ///
    /// let transport = Transport::Tcp("127.0.0.1:1883".into());
    /// let mut events = client.connect(transport, StreamOptions::default())?;
    /// while let Some(event) = events.recv().await {
    ///     match event? {
    ///         Event::MessageCreated { message, .. } => {
    ///             println!("{}: {}", message.sender_id, message.text().unwrap_or("<non-text>"))
    ///         }
    ///         Event::Typing { conversation_id, user_id } => {
    ///             println!("{user_id} is typing in {conversation_id}")
    ///         }
    ///         other => println!("{} event", other.kind()),
    ///     }
    /// }
    /// # Ok(()) }
    /// ```
    pub fn connect(&self, transport: Transport, options: StreamOptions) -> Result<EventStream> {
        self.connect_any([transport], options)
    }

    /// [`Client::connect`] to the first of several servers (nodes of one
    /// cluster) that answers: when a connection fails or is lost, the
    /// stream moves on to the next (round robin, the whole round without
    /// a pause, then with the reconnect backoff) and syncs from its cursor
    /// there, so it stays gap-free and in order across the move.
    ///
    /// ```no_run
    /// # async fn example(client: mqchat_sdk::Client) -> Result<(), mqchat_sdk::SdkError> {
    /// use mqchat_sdk::{StreamOptions, Transport};
    ///
    /// let nodes = ["10.0.0.1:1883", "10.0.0.2:1883"].map(|a| Transport::Tcp(a.into()));
    /// let mut events = client.connect_any(nodes, StreamOptions::default())?;
    /// # Ok(()) }
    /// ```
    pub fn connect_any(
        &self,
        transports: impl IntoIterator<Item = Transport>,
        options: StreamOptions,
    ) -> Result<EventStream> {
        let endpoints = transports
            .into_iter()
            .map(|t| t.endpoint())
            .collect::<Result<Vec<_>>>()?;
        if endpoints.is_empty() {
            return Err(SdkError::InvalidInput {
                what: "MQTT servers",
                reason: "none given".into(),
            });
        }
        let runtime = tokio::runtime::Handle::try_current().map_err(|_| SdkError::NoRuntime)?;
        let device_id = match &options.device_id {
            Some(id) => id.clone(),
            None => format!("sdk-{}", random_id(16)),
        };
        let len = device_id.chars().count();
        if len == 0 || len > MAX_DEVICE_ID_LEN {
            return Err(SdkError::InvalidInput {
                what: "device id",
                reason: format!("{len} characters, expected 1..={MAX_DEVICE_ID_LEN}"),
            });
        }
        let start = match options.start {
            StartFrom::After(cursor) => cursor,
            StartFrom::Beginning | StartFrom::Now => 0,
        };
        let delivered = Arc::new(AtomicU64::new(start));
        let (events_tx, events_rx) = mpsc::channel(options.capacity);
        let (state_tx, state_rx) = watch::channel(StreamState::Connecting);

        let mut tasks = Vec::with_capacity(2);
        if let Some(every) = options.ack_interval {
            tasks.push(runtime.spawn(ack_loop(
                self.clone(),
                device_id.clone(),
                delivered.clone(),
                every,
            )));
        }
        let driver = Driver {
            client: self.clone(),
            endpoints,
            current: AtomicUsize::new(0),
            device_id: device_id.clone(),
            options,
            delivered: delivered.clone(),
            events: events_tx,
            state: state_tx,
        };
        tasks.push(runtime.spawn(driver.run()));
        Ok(EventStream {
            events: events_rx,
            delivered,
            state: state_rx,
            device_id,
            tasks,
        })
    }
}

/// Acks the delivered cursor every `every` when it moved. Failures are
/// retried on the next tick; the ack is advisory (the stream itself resumes
/// from its own cursor), so it never ends the stream.
async fn ack_loop(client: Client, device_id: String, delivered: Arc<AtomicU64>, every: Duration) {
    let mut acked = delivered.load(Ordering::Relaxed);
    let mut ticks = tokio::time::interval_at(tokio::time::Instant::now() + every, every);
    ticks.set_missed_tick_behavior(tokio::time::MissedTickBehavior::Delay);
    loop {
        ticks.tick().await;
        let cursor = delivered.load(Ordering::Relaxed);
        if cursor <= acked {
            continue;
        }
        match client.ack(&device_id, cursor).await {
            Ok(()) => acked = cursor,
            Err(err) if err.is_transient() => tracing::debug!(%err, "sync ack failed; retrying"),
            Err(err @ (SdkError::SessionExpired | SdkError::LoggedOut)) => {
                tracing::debug!(%err, "sync ack stopped");
                return;
            }
            Err(err) => tracing::warn!(%err, "sync ack failed"),
        }
    }
}

/// How one connection ended.
enum Ended {
    /// The [`EventStream`] was dropped.
    ReceiverGone,
    /// Nothing to retry: end the stream with this error.
    Fatal(SdkError),
    /// Try again after a backoff. `live`: the connection had caught up, so
    /// the backoff starts over.
    Lost { error: SdkError, live: bool },
    /// CONNACK refused the credentials given by token `generation`.
    Refused { generation: u64, error: SdkError },
}

/// What the pump hands the driver.
enum Incoming {
    ConnAck,
    SubAck { granted: bool },
    Publish { topic: String, payload: Bytes },
    Failed(ConnectionError),
}

type SyncFuture = Pin<Box<dyn Future<Output = Result<SyncPage>> + Send>>;

/// Aborts a task when dropped, so a connection's pump dies with it.
struct AbortOnDrop(JoinHandle<()>);

impl Drop for AbortOnDrop {
    fn drop(&mut self) {
        self.0.abort();
    }
}

struct Driver {
    client: Client,
    /// The servers to try, in order; `current` indexes the one in use.
    endpoints: Vec<Endpoint>,
    current: AtomicUsize,
    device_id: String,
    options: StreamOptions,
    delivered: Arc<AtomicU64>,
    events: mpsc::Sender<Result<Event>>,
    state: watch::Sender<StreamState>,
}

impl Driver {
    /// The server connected (or being connected) to.
    fn endpoint(&self) -> &Endpoint {
        let i = self.current.load(Ordering::Relaxed) % self.endpoints.len();
        &self.endpoints[i]
    }

    /// Moves on to the next server after a failure; true when that starts
    /// a new round through them (time to back off).
    fn next_endpoint(&self) -> bool {
        let next = self.current.fetch_add(1, Ordering::Relaxed) + 1;
        next.is_multiple_of(self.endpoints.len())
    }

    async fn run(self) {
        let result = self.run_until_fatal().await;
        self.state.send_replace(StreamState::Closed);
        if let Err(err) = result {
            tracing::warn!(%err, broker = %self.endpoint(), "event stream ended");
            // The receiver may be gone already; nothing left to tell then.
            let _ = self.events.send(Err(err)).await;
        }
    }

    /// Runs connections until the stream is dropped (`Ok`) or cannot go on.
    async fn run_until_fatal(&self) -> Result<()> {
        let Some(start) = self.start_cursor().await? else {
            return Ok(());
        };
        self.delivered.fetch_max(start, Ordering::Relaxed);
        let mut sequencer = Sequencer::new(start);
        let mut attempt = 0u32;
        loop {
            match self.connection(&mut sequencer).await {
                Ended::ReceiverGone => return Ok(()),
                Ended::Fatal(err) => return Err(err),
                Ended::Lost { error, live } => {
                    if live {
                        attempt = 0;
                    }
                    tracing::info!(%error, broker = %self.endpoint(), "event stream disconnected");
                    // Another server of the list, at once unless a whole
                    // round has failed since the last one that worked.
                    if self.endpoints.len() > 1 && !self.next_endpoint() {
                        self.state.send_replace(StreamState::Waiting);
                        continue;
                    }
                }
                Ended::Refused { generation, error } => {
                    tracing::info!(%error, broker = %self.endpoint(), "credentials refused; refreshing");
                    if let Err(err) = self.client.refresh(generation).await {
                        if !err.is_transient() {
                            return Err(err);
                        }
                    }
                }
            }
            self.state.send_replace(StreamState::Waiting);
            let delay = self.options.reconnect.delay(attempt);
            attempt = attempt.saturating_add(1);
            tokio::select! {
                () = tokio::time::sleep(delay) => {}
                () = self.events.closed() => return Ok(()),
            }
        }
    }

    /// The cursor to start after; `None` if the stream was dropped meanwhile.
    async fn start_cursor(&self) -> Result<Option<u64>> {
        let mut after = match self.options.start {
            StartFrom::Beginning => return Ok(Some(0)),
            StartFrom::After(cursor) => return Ok(Some(cursor)),
            StartFrom::Now => 0,
        };
        let mut attempt = 0u32;
        loop {
            let page = tokio::select! {
                page = self.client.sync(after, MAX_SYNC_LIMIT) => page,
                () = self.events.closed() => return Ok(None),
            };
            match page {
                Ok(page) => {
                    let next = after.max(page.cursor);
                    if !page.has_more || next == after {
                        return Ok(Some(next));
                    }
                    after = next;
                }
                Err(err) if err.is_transient() => {
                    let delay = self.options.reconnect.delay(attempt);
                    attempt = attempt.saturating_add(1);
                    tracing::info!(%err, ?delay, "finding the current cursor failed; retrying");
                    tokio::select! {
                        () = tokio::time::sleep(delay) => {}
                        () = self.events.closed() => return Ok(None),
                    }
                }
                Err(err) => return Err(err),
            }
        }
    }

    fn mqtt_options(&self, token: String) -> MqttOptions {
        let mut options = match self.endpoint() {
            Endpoint::Tcp { host, port } => MqttOptions::new(&self.device_id, host, *port),
            Endpoint::WebSocket { url } => {
                // For WebSocket rumqttc takes host and port from the URL.
                let mut options = MqttOptions::new(&self.device_id, url, 0);
                options.set_transport(rumqttc::Transport::Ws);
                options
            }
        };
        options
            .set_credentials(self.client.user_id().to_string(), token)
            .set_keep_alive(self.options.keep_alive)
            .set_clean_session(true)
            .set_max_packet_size(self.options.max_packet_size, self.options.max_packet_size);
        options
    }

    /// One MQTT connection, from CONNECT until it fails or the stream is
    /// dropped.
    async fn connection(&self, sequencer: &mut Sequencer) -> Ended {
        self.state.send_replace(StreamState::Connecting);
        let (token, generation) = match self.client.bearer().await {
            Ok(bearer) => bearer,
            Err(error) if error.is_transient() => return Ended::Lost { error, live: false },
            Err(error) => return Ended::Fatal(error),
        };
        let (mqtt, eventloop) = AsyncClient::new(self.mqtt_options(token), MQTT_REQUEST_CAPACITY);
        let (pump_tx, mut pump_rx) = mpsc::channel(PUMP_CAPACITY);
        let _pump = AbortOnDrop(tokio::spawn(pump(eventloop, pump_tx)));
        let user_id = self.client.user_id();
        let mut conn = Connection {
            driver: self,
            mqtt,
            generation,
            filter: format!("users/{user_id}/#"),
            prefix: format!("users/{user_id}/"),
            subscribed: false,
            live: false,
        };
        let mut sync: Option<SyncFuture> = None;

        loop {
            if conn.subscribed && sync.is_none() {
                if let Some(after) = sequencer.start_sync() {
                    let client = self.client.clone();
                    let limit = self.options.sync_page_size;
                    sync = Some(Box::pin(async move { client.sync(after, limit).await }));
                    self.set_state(StreamState::Syncing);
                } else if sequencer.is_synced() {
                    conn.live = true;
                    self.set_state(StreamState::Live);
                }
            }
            let step = tokio::select! {
                () = self.events.closed() => ControlFlow::Break(Ended::ReceiverGone),
                incoming = pump_rx.recv() => conn.on_incoming(sequencer, incoming).await,
                page = next_page(&mut sync) => {
                    sync = None;
                    conn.on_page(sequencer, page).await
                }
            };
            if let ControlFlow::Break(ended) = step {
                return ended;
            }
        }
    }

    /// Hands events to the reader, in order.
    async fn deliver(&self, events: impl IntoIterator<Item = Event>) -> ControlFlow<Ended> {
        for event in events {
            if self.events.send(Ok(event)).await.is_err() {
                return ControlFlow::Break(Ended::ReceiverGone);
            }
        }
        ControlFlow::Continue(())
    }

    /// Publishes a state change, without waking watchers when nothing changed.
    fn set_state(&self, state: StreamState) {
        self.state.send_if_modified(|current| {
            let changed = *current != state;
            *current = state;
            changed
        });
    }
}

/// The state of one MQTT connection.
struct Connection<'a> {
    driver: &'a Driver,
    mqtt: AsyncClient,
    /// Generation of the access token this connection logged in with.
    generation: u64,
    filter: String,
    /// `users/{id}/`: what every topic under `filter` starts with.
    prefix: String,
    /// SUBACK received: pushes flow, syncing may start.
    subscribed: bool,
    /// Caught up at least once: the reconnect backoff starts over.
    live: bool,
}

impl Connection<'_> {
    fn broker(&self) -> String {
        self.driver.endpoint().to_string()
    }

    fn lost(&self, error: SdkError) -> ControlFlow<Ended> {
        ControlFlow::Break(Ended::Lost {
            error,
            live: self.live,
        })
    }

    async fn on_incoming(
        &mut self,
        sequencer: &mut Sequencer,
        incoming: Option<Incoming>,
    ) -> ControlFlow<Ended> {
        match incoming {
            Some(Incoming::ConnAck) => {
                tracing::debug!(broker = %self.driver.endpoint(), filter = %self.filter, "connected; subscribing");
                match self
                    .mqtt
                    .subscribe(self.filter.as_str(), QoS::AtLeastOnce)
                    .await
                {
                    Ok(()) => ControlFlow::Continue(()),
                    Err(source) => self.lost(SdkError::MqttClient {
                        broker: self.broker(),
                        source: Box::new(source),
                    }),
                }
            }
            Some(Incoming::SubAck { granted: true }) => {
                self.subscribed = true;
                sequencer.on_connected();
                ControlFlow::Continue(())
            }
            Some(Incoming::SubAck { granted: false }) => self.lost(SdkError::SubscribeRefused {
                broker: self.broker(),
                filter: self.filter.clone(),
            }),
            Some(Incoming::Publish { topic, payload }) => {
                match topic.strip_prefix(self.prefix.as_str()) {
                    Some(EVENTS_SUBTOPIC) => self.on_event_push(sequencer, &payload).await,
                    Some(subtopic @ (PRESENCE_SUBTOPIC | TYPING_SUBTOPIC)) => {
                        self.on_ephemeral_push(subtopic, &payload).await
                    }
                    _ => {
                        tracing::debug!(topic, "ignoring push on a topic this SDK does not know");
                        ControlFlow::Continue(())
                    }
                }
            }
            Some(Incoming::Failed(source)) => {
                let refused = matches!(
                    source,
                    ConnectionError::ConnectionRefused(
                        ConnectReturnCode::BadUserNamePassword | ConnectReturnCode::NotAuthorized
                    )
                );
                let error = SdkError::Mqtt {
                    broker: self.broker(),
                    source: Box::new(source),
                };
                if refused {
                    ControlFlow::Break(Ended::Refused {
                        generation: self.generation,
                        error,
                    })
                } else {
                    self.lost(error)
                }
            }
            // The pump only stops after reporting a failure, or when aborted.
            None => self.lost(SdkError::MqttClosed {
                broker: self.broker(),
            }),
        }
    }

    /// An inbox event: ordered by the sequencer like every synced one.
    async fn on_event_push(&self, sequencer: &mut Sequencer, payload: &[u8]) -> ControlFlow<Ended> {
        let event = match Event::from_slice(payload) {
            Ok(event) => event,
            Err(err) => {
                // Sync reads the store, so a gap this leaves is filled there.
                tracing::warn!(%err, "undecodable push ignored");
                return ControlFlow::Continue(());
            }
        };
        match sequencer.on_push(event) {
            PushOutcome::Deliver(event) => self.driver.deliver([event]).await,
            PushOutcome::Duplicate => {
                tracing::trace!("duplicate push dropped");
                ControlFlow::Continue(())
            }
            PushOutcome::Deferred => {
                tracing::debug!(last = sequencer.last(), "push ahead of a gap; syncing");
                ControlFlow::Continue(())
            }
        }
    }

    /// A presence or typing push: delivered now, outside cursor order. Only
    /// the typed, cursorless event the topic promises goes out; anything else
    /// is dropped, because an untyped payload with a `cursor` field would
    /// move [`EventStream::last_cursor`] past inbox events never delivered.
    async fn on_ephemeral_push(&self, subtopic: &str, payload: &[u8]) -> ControlFlow<Ended> {
        match Event::from_slice(payload) {
            Ok(event) if event.is_ephemeral() && event.kind() == subtopic => {
                self.driver.deliver([event]).await
            }
            Ok(event) => {
                tracing::warn!(
                    subtopic,
                    kind = event.kind(),
                    "unexpected ephemeral push ignored"
                );
                ControlFlow::Continue(())
            }
            Err(err) => {
                tracing::warn!(%err, subtopic, "undecodable ephemeral push ignored");
                ControlFlow::Continue(())
            }
        }
    }

    async fn on_page(
        &mut self,
        sequencer: &mut Sequencer,
        page: Result<SyncPage>,
    ) -> ControlFlow<Ended> {
        match page {
            Ok(page) => self.driver.deliver(sequencer.on_sync_page(page)).await,
            Err(error) => {
                sequencer.on_sync_failed();
                if error.is_transient() {
                    self.lost(error)
                } else {
                    ControlFlow::Break(Ended::Fatal(error))
                }
            }
        }
    }
}

/// The sync page in flight, or never if none is.
async fn next_page(sync: &mut Option<SyncFuture>) -> Result<SyncPage> {
    match sync {
        Some(page) => page.await,
        None => std::future::pending().await,
    }
}

/// Drives the MQTT event loop and forwards what the driver needs. Ends after
/// the first connection error: the driver reconnects with a fresh token
/// rather than letting rumqttc reconnect with a stale one.
async fn pump(mut eventloop: EventLoop, tx: mpsc::Sender<Incoming>) {
    loop {
        let incoming = match eventloop.poll().await {
            Ok(rumqttc::Event::Incoming(Packet::ConnAck(_))) => Incoming::ConnAck,
            Ok(rumqttc::Event::Incoming(Packet::SubAck(ack))) => Incoming::SubAck {
                granted: ack
                    .return_codes
                    .iter()
                    .all(|code| matches!(code, SubscribeReasonCode::Success(_))),
            },
            Ok(rumqttc::Event::Incoming(Packet::Publish(publish))) => Incoming::Publish {
                topic: publish.topic,
                payload: publish.payload,
            },
            Ok(_) => continue,
            Err(err) => {
                let _ = tx.send(Incoming::Failed(err)).await;
                return;
            }
        };
        if tx.send(incoming).await.is_err() {
            return;
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn tcp(addr: &str) -> Result<String> {
        Transport::Tcp(addr.into())
            .endpoint()
            .map(|e| e.to_string())
    }

    #[test]
    fn parses_tcp_addresses() -> Result<()> {
        assert_eq!(tcp("127.0.0.1:1883")?, "127.0.0.1:1883");
        assert_eq!(tcp("mqtt://localhost:1884")?, "localhost:1884");
        assert_eq!(tcp("tcp://broker/")?, "broker:1883");
        assert_eq!(tcp("[::1]:2000")?, "[::1]:2000");
        assert_eq!(tcp("[::1]")?, "[::1]:1883");
        for bad in ["", ":1883", "host:port", "host:70000", "[::1"] {
            assert!(tcp(bad).is_err(), "{bad}");
        }
        Ok(())
    }

    #[test]
    fn parses_websocket_urls() -> Result<()> {
        let ws = |url: &str| Transport::WebSocket(url.into()).endpoint();
        assert_eq!(
            ws("ws://127.0.0.1:8080/mqtt")?.to_string(),
            "ws://127.0.0.1:8080/mqtt"
        );
        assert!(ws("ws://chat.example/mqtt").is_ok());
        for bad in [
            "wss://chat.example/mqtt",
            "http://x/mqtt",
            "ws:///mqtt",
            "ws://h:x/",
        ] {
            assert!(ws(bad).is_err(), "{bad}");
        }
        Ok(())
    }

    #[test]
    fn websocket_for_base_url() -> Result<()> {
        assert_eq!(
            Transport::websocket_for("http://127.0.0.1:8080/")?,
            Transport::WebSocket("ws://127.0.0.1:8080/mqtt".into())
        );
        assert!(Transport::websocket_for("https://chat.example").is_err());
        Ok(())
    }

    #[test]
    fn option_setters_keep_values_valid() {
        let options = StreamOptions::default()
            .keep_alive(Duration::from_millis(300))
            .sync_page_size(10_000)
            .capacity(0)
            .ack_every(Duration::ZERO);
        assert_eq!(options.keep_alive, Duration::from_secs(1));
        assert_eq!(options.sync_page_size, MAX_SYNC_LIMIT);
        assert_eq!(options.capacity, 1);
        assert_eq!(options.ack_interval, Some(Duration::from_millis(100)));
        assert_eq!(
            StreamOptions::default()
                .keep_alive(Duration::ZERO)
                .keep_alive,
            Duration::ZERO
        );
        assert_eq!(StreamOptions::default().sync_page_size(0).sync_page_size, 1);
    }
}

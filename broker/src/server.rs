//! The broker: rumqttd's router on its own thread, the TCP and WebSocket
//! listeners in front of it, and the handle chatsvc uses to push and to ask
//! who is online.

use std::collections::HashSet;
use std::net::SocketAddr;
use std::sync::{Arc, Mutex, OnceLock, Weak};
use std::time::Duration;

use bytes::Bytes;
use rumqttd::local::{LinkBuilder, LinkError, LinkRx, LinkTx};
use rumqttd::protocol::{
    Disconnect, DisconnectReasonCode, Filter, QoS, RetainForwardRule, Subscribe,
};
use rumqttd::protocol::{LastWill, LastWillProperties, Packet, Publish, PublishProperties};
use rumqttd::{Forward, Notification, Router, RouterConfig, SegmentConfig};
use tokio::net::TcpListener;
use tokio::sync::{broadcast, Semaphore};
use tokio_util::sync::CancellationToken;
use tokio_util::task::TaskTracker;
use tracing::{debug, error, info, warn};

use crate::acl::Acl;
use crate::auth::Authenticator;
use crate::conn;
use crate::registry::{KickReason, PresenceChange, Registry};
use crate::uplink::Uplink;

/// Broker settings. The defaults suit a single node with many small per-user
/// topics.
#[derive(Debug, Clone)]
pub struct Settings {
    /// Most concurrent client connections (TCP and WebSocket together).
    pub max_connections: usize,
    /// Largest MQTT packet accepted from a client, in bytes.
    pub max_packet_size: usize,
    /// Time a new connection has to send CONNECT.
    pub connect_timeout: Duration,
    /// Time a write to a client may block, or its QoS 1 deliveries may wait
    /// with no PUBACK at all, before the client is dropped.
    pub write_timeout: Duration,
    /// A persistent session's log in the router: segment size in bytes...
    pub segment_size: usize,
    /// ...and how many segments are kept. Pushes are also in the store, so
    /// this only bounds how far a slow persistent session may fall behind
    /// before it skips ahead (and has to sync).
    pub segment_count: usize,
    /// Bytes of deliveries a clean session's mailbox holds (topics and
    /// payloads) for a client that reads or acknowledges slowly; a client
    /// further behind is disconnected (MQTT 5: 0x97) and syncs.
    pub mailbox_size: usize,
    /// Unacknowledged QoS 1 deliveries per clean-session connection before
    /// the gateway waits for PUBACKs (an MQTT 5 client's receive maximum
    /// lowers it). A persistent session's link has rumqttd's own limit, 100.
    pub max_inflight: u64,
    /// Topic subtrees (under `users/{id}/`) where clients may publish; the
    /// publishes go to the [`Uplink`] handler, never to other clients.
    pub open_publish: Vec<String>,
    /// Uplink publishes a connection may have queued before the gateway stops
    /// reading from it.
    pub uplink_queue: usize,
    /// Filters honoured in one SUBSCRIBE; the rest are refused.
    pub max_filters_per_subscribe: usize,
    /// Filters one connection may hold.
    pub max_subscriptions: usize,
    /// Sustained packets per second a client may send (0: no limit)...
    pub max_packets_per_sec: u32,
    /// ...with bursts up to this many; beyond, the connection is closed.
    pub packet_burst: u32,
    /// Threads serving MQTT-over-TCP connections, each a single-threaded
    /// runtime of its own (connections are spread over them in turn).
    /// Keeping socket loops off the shared multi-threaded runtime saves the
    /// cross-worker wake-ups that cost ~10% of push throughput on 2 cores.
    pub io_threads: usize,
}

impl Default for Settings {
    fn default() -> Self {
        Settings {
            max_connections: 50_000,
            max_packet_size: 64 * 1024,
            connect_timeout: Duration::from_secs(10),
            write_timeout: Duration::from_secs(30),
            segment_size: 64 * 1024,
            segment_count: 2,
            mailbox_size: 1 << 20,
            max_inflight: 100,
            open_publish: vec!["up".to_owned()],
            uplink_queue: 32,
            max_filters_per_subscribe: 32,
            max_subscriptions: 64,
            max_packets_per_sec: 100,
            packet_burst: 1000,
            io_threads: 1,
        }
    }
}

/// What a connection needs to build its link into the router.
pub(crate) struct LinkSpec {
    pub client_id: String,
    pub clean_session: bool,
    pub will: Option<LastWill>,
    pub will_props: Option<LastWillProperties>,
    pub topic_alias_max: u16,
}

/// Builds links into the router. A closure because the router's sender type
/// is not nameable outside rumqttd.
/// Errors are rendered to text: `LinkError` carries whole router events.
pub(crate) type LinkFactory =
    Arc<dyn Fn(LinkSpec) -> Result<(LinkTx, LinkRx, Notification), String> + Send + Sync>;

type Built = Result<(LinkTx, LinkRx, Notification), String>;

/// Builds client links on one dedicated thread. Building waits for the
/// router's answer; thousands of connections arriving together would each
/// hold a blocking-pool thread (and its stack) while they wait.
pub(crate) struct Links {
    queue: std::sync::mpsc::Sender<(LinkSpec, tokio::sync::oneshot::Sender<Built>)>,
}

impl Links {
    fn start(factory: LinkFactory) -> std::io::Result<Links> {
        let (queue, requests) =
            std::sync::mpsc::channel::<(LinkSpec, tokio::sync::oneshot::Sender<Built>)>();
        std::thread::Builder::new()
            .name("mqtt-links".into())
            .spawn(move || {
                // Ends when the broker (every sender) is gone.
                while let Ok((spec, reply)) = requests.recv() {
                    let _ = reply.send(factory(spec));
                }
            })?;
        Ok(Links { queue })
    }

    /// A new link into the router, with the router's CONNACK.
    pub(crate) async fn build(&self, spec: LinkSpec) -> Built {
        let (reply, built) = tokio::sync::oneshot::channel();
        self.queue
            .send((spec, reply))
            .map_err(|_| "link builder stopped".to_string())?;
        built
            .await
            .map_err(|_| "link builder stopped".to_string())?
    }
}

/// The threads that run TCP connections: a current-thread runtime each,
/// and the connections it runs, so shutdown can wait for their goodbyes.
struct IoThread {
    handle: tokio::runtime::Handle,
    tasks: TaskTracker,
}

/// Starts `n` I/O threads. Each runs until `shutdown`, then until its
/// connections have ended (they are kicked on shutdown), at most 5 s more.
fn start_io_threads(n: usize, shutdown: &CancellationToken) -> std::io::Result<Vec<IoThread>> {
    (0..n.max(1))
        .map(|i| {
            let rt = tokio::runtime::Builder::new_current_thread()
                .enable_all()
                .build()?;
            let handle = rt.handle().clone();
            let tasks = TaskTracker::new();
            let (stop, tracked) = (shutdown.clone(), tasks.clone());
            std::thread::Builder::new()
                .name(format!("mqtt-io-{i}"))
                .spawn(move || {
                    rt.block_on(async move {
                        stop.cancelled().await;
                        tracked.close();
                        let _ = tokio::time::timeout(Duration::from_secs(5), tracked.wait()).await;
                    });
                })?;
            Ok(IoThread { handle, tasks })
        })
        .collect()
}

/// State shared by every connection task.
pub(crate) struct Shared {
    pub settings: Settings,
    pub acl: Acl,
    pub authenticator: Arc<dyn Authenticator>,
    pub registry: Registry,
    pub links: Links,
    pub connection_slots: Arc<Semaphore>,
    pub shutdown: CancellationToken,
    /// The broker's own link: every push and uplink reply goes through it.
    pub publisher: Mutex<LinkTx>,
    /// Handles client publishes to open subtrees (set once chatsvc is up).
    pub uplink: OnceLock<Arc<dyn Uplink>>,
    io: Vec<IoThread>,
    next_io: std::sync::atomic::AtomicUsize,
    /// The clock of every connection's packet-rate limiter. Made once: a
    /// new one calibrates itself with CPUID, which traps to the hypervisor
    /// on a VM and was a tenth of the connect path.
    pub clock: governor::clock::QuantaClock,
    /// Router client ids that connected with a persistent session: the
    /// router may hold their state, which a clean session with the same id
    /// must discard (see `Shared::discard_persistent`).
    persistent: Mutex<HashSet<String>>,
    /// What the dispatcher has yet to take from the router.
    backlog: Backlog,
}

impl Shared {
    /// Notes that the router may keep a session for `client_id`.
    pub(crate) fn note_persistent(&self, client_id: &str) {
        self.persistent
            .lock()
            .unwrap_or_else(|e| e.into_inner())
            .insert(client_id.to_owned());
    }

    /// A clean session starts with `client_id`: if the router may hold a
    /// persistent session of that id, it is taken over (a live connection
    /// that holds it is disconnected by the router) and discarded, by a link
    /// built with a clean session and closed at once.
    pub(crate) async fn discard_persistent(&self, client_id: &str) -> Result<(), String> {
        let known = self
            .persistent
            .lock()
            .unwrap_or_else(|e| e.into_inner())
            .remove(client_id);
        if !known {
            return Ok(());
        }
        let (mut tx, _rx, _) = self
            .links
            .build(LinkSpec {
                client_id: client_id.to_owned(),
                clean_session: true,
                will: None,
                will_props: None,
                topic_alias_max: 0,
            })
            .await?;
        let disconnect = Disconnect {
            reason_code: DisconnectReasonCode::NormalDisconnection,
        };
        futures_util::FutureExt::now_or_never(tx.send(Packet::Disconnect(disconnect, None)))
            .ok_or_else(|| "link send did not complete".to_owned())?
            .map(|_| ())
            .map_err(|e| e.to_string())
    }

    /// Publishes into the router. Synchronous: it may block briefly when the
    /// router's queue is full.
    pub(crate) fn publish(&self, topic: String, payload: Bytes, props: Option<PublishProperties>) {
        let publish = Publish::new(Bytes::from(topic), payload, false);
        self.publish_all(vec![(publish, props)]);
    }

    /// Publishes in order, one router wake-up per chunk. A chunk goes to
    /// the router once the dispatcher has room for it ([`Backlog`]), so a
    /// batch larger than the dispatcher's log (a group message of 16 KiB to
    /// 2,000 members is 32 MiB) goes in as the dispatcher takes it.
    fn publish_all(&self, publishes: Vec<(Publish, Option<PublishProperties>)>) {
        let total = publishes.len();
        let mut publishes = publishes.into_iter().peekable();
        while publishes.peek().is_some() {
            let mut chunk = Vec::new();
            let mut bytes = 0;
            while let Some((publish, _)) = publishes.peek() {
                let size = dispatched_bytes(publish);
                if !chunk.is_empty() && bytes + size > DISPATCH_CHUNK {
                    break;
                }
                bytes += size;
                if let Some((publish, props)) = publishes.next() {
                    chunk.push(Packet::Publish(publish, props));
                }
            }
            self.backlog.admit(bytes);
            let Some(last) = chunk.pop() else {
                break;
            };
            let mut tx = self.publisher.lock().unwrap_or_else(|e| e.into_inner());
            tx.buffer().extend(chunk);
            // `LinkTx::send` is an async fn that never awaits; it
            // completes on its first poll.
            match futures_util::FutureExt::now_or_never(tx.send(last)) {
                Some(Ok(_)) => {}
                Some(Err(e)) => error!(error = %e, "downlink publish failed"),
                None => error!("downlink publish did not complete"),
            }
        }
        metrics::counter!("mqtt_pushes_total").increment(total as u64);
    }
}

/// Bytes of topic and payload handed to the router and not yet taken by
/// the dispatcher. The router drops what a subscriber has not read once
/// newer publishes fill its log; the dispatcher's log keeps at least the
/// newest 4 MiB, so publishers wait while 2 MiB are pending (plus at most
/// one chunk of 1 MiB): the dispatcher loses no publish, however much
/// faster the publishers are.
#[derive(Default)]
struct Backlog {
    pending: Mutex<usize>,
    taken: std::sync::Condvar,
}

/// Pending bytes above which publishers wait for the dispatcher.
const DISPATCH_BACKLOG: usize = 2 << 20;
/// Most bytes handed to the router at once.
const DISPATCH_CHUNK: usize = 1 << 20;
/// A publisher waits this long at most for the dispatcher, then publishes
/// anyway (and the dispatcher's gap check makes clean sessions resync).
const BACKLOG_WAIT: Duration = Duration::from_secs(5);

impl Backlog {
    /// Waits until `bytes` more fit, then counts them in. A chunk is always
    /// let through when nothing is pending, whatever its size.
    fn admit(&self, bytes: usize) {
        let mut pending = self.pending.lock().unwrap_or_else(|e| e.into_inner());
        let deadline = std::time::Instant::now() + BACKLOG_WAIT;
        while *pending > 0 && *pending + bytes > DISPATCH_BACKLOG {
            let left = deadline.saturating_duration_since(std::time::Instant::now());
            if left.is_zero() {
                // A dispatcher that stalled this long, or a count gone
                // wrong: start counting afresh rather than make every
                // publish wait.
                error!(pending = *pending, "the dispatcher took nothing for 5 s");
                *pending = 0;
                break;
            }
            pending = self
                .taken
                .wait_timeout(pending, left)
                .unwrap_or_else(|e| e.into_inner())
                .0;
        }
        *pending += bytes;
    }

    /// The dispatcher took `bytes`.
    fn took(&self, bytes: usize) {
        let mut pending = self.pending.lock().unwrap_or_else(|e| e.into_inner());
        *pending = pending.saturating_sub(bytes);
        self.taken.notify_all();
    }

    /// Forgets everything pending (publishes were lost on the way).
    fn clear(&self) {
        *self.pending.lock().unwrap_or_else(|e| e.into_inner()) = 0;
        self.taken.notify_all();
    }
}

/// What a publish counts in the [`Backlog`]: its topic and payload if the
/// dispatcher's filter (`users/#`) takes it, else nothing.
fn dispatched_bytes(publish: &Publish) -> usize {
    let topic = &publish.topic[..];
    if topic == b"users" || topic.starts_with(b"users/") {
        topic.len() + publish.payload.len()
    } else {
        0
    }
}

/// The running broker. Cheap to clone; every clone is the same broker.
#[derive(Clone)]
pub struct Broker {
    shared: Arc<Shared>,
}

impl std::fmt::Debug for Broker {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("Broker")
            .field("connections", &self.shared.registry.connection_count())
            .finish()
    }
}

/// Errors starting the broker.
#[derive(Debug, thiserror::Error)]
pub enum BrokerError {
    #[error("router link: {0}")]
    Link(String),
}

impl Broker {
    /// Starts rumqttd's router on its own thread and the internal publisher link.
    pub fn start(
        settings: Settings,
        authenticator: Arc<dyn Authenticator>,
        shutdown: CancellationToken,
    ) -> Result<Broker, BrokerError> {
        // Every filter a client can hold is `users/{id}/...`, which matches
        // the custom entry and gets the per-subscriber log from the
        // settings; the dispatcher's `users/#` does not match it (the router
        // compares filters as topics, and `#` never matches `+`), so it gets
        // the default, sized for every publish that passes through.
        let mut custom = std::collections::HashMap::new();
        custom.insert(
            "users/+/#".to_owned(),
            SegmentConfig {
                max_segment_size: settings.segment_size.max(1024),
                max_segment_count: settings.segment_count.max(1),
            },
        );
        let config = RouterConfig {
            max_connections: settings.max_connections + 16,
            // What the router forwards to a QoS 0 subscriber per round: the
            // dispatcher's batch (QoS 1 links stop at 100 unacknowledged,
            // a constant in rumqttd).
            max_outgoing_packet_count: DISPATCH_READ,
            max_segment_size: DISPATCH_SEGMENT_SIZE,
            max_segment_count: DISPATCH_SEGMENT_COUNT,
            custom_segment: Some(custom),
            initialized_filters: None,
            shared_subscriptions_strategy: Default::default(),
        };
        let router_tx = Router::new(0, config).spawn();
        let links: LinkFactory = Arc::new(move |spec: LinkSpec| {
            let (tx, rx, ack) = LinkBuilder::new(&spec.client_id, router_tx.clone())
                .clean_session(spec.clean_session)
                .last_will(spec.will)
                .last_will_properties(spec.will_props)
                .topic_alias_max(spec.topic_alias_max)
                .build()
                .map_err(|e: LinkError| e.to_string())?;
            // rumqttd makes the link's input queue with room for 200 packets
            // (78 KiB). Given back before anything is written to it, its
            // pages are clean, and the next link's queue reuses them; an
            // empty queue grows only as the client sends (see
            // `Connection::release_link_queue` for the queues the router
            // trades back).
            drop(std::mem::take(&mut *tx.buffer()));
            Ok((tx, rx, ack))
        });

        // chatsvc's own link: it publishes every push. Its link_rx only ever
        // receives the router's bookkeeping, which we drain.
        let (publisher, mut publisher_rx, _) = links(LinkSpec {
            client_id: "$mqchat-downlink".replace('$', "_"),
            clean_session: true,
            will: None,
            will_props: None,
            topic_alias_max: 0,
        })
        .map_err(BrokerError::Link)?;
        tokio::spawn(async move {
            while let Ok(n) = publisher_rx.next().await {
                debug!(?n, "downlink link notification");
            }
        });

        // The dispatcher's link: every publish to a user's topics, for the
        // mailboxes of clean sessions (see `mailbox`).
        let (mut dispatch_tx, dispatch_rx, _) = links(LinkSpec {
            client_id: "_mqchat-dispatch".to_owned(),
            clean_session: true,
            will: None,
            will_props: None,
            topic_alias_max: 0,
        })
        .map_err(BrokerError::Link)?;
        let subscribe = Subscribe {
            pkid: 1,
            filters: vec![Filter {
                path: DISPATCH_FILTER.to_owned(),
                qos: QoS::AtMostOnce,
                nolocal: false,
                preserve_retain: false,
                retain_forward_rule: RetainForwardRule::Never,
            }],
        };
        futures_util::FutureExt::now_or_never(dispatch_tx.send(Packet::Subscribe(subscribe, None)))
            .ok_or_else(|| BrokerError::Link("dispatcher subscribe did not complete".into()))?
            .map_err(|e| BrokerError::Link(e.to_string()))?;

        let io = start_io_threads(settings.io_threads, &shutdown)
            .map_err(|e| BrokerError::Link(format!("start I/O threads: {e}")))?;
        let shared = Arc::new(Shared {
            acl: Acl::with_open_publish(settings.open_publish.clone()),
            connection_slots: Arc::new(Semaphore::new(settings.max_connections)),
            settings,
            authenticator,
            registry: Registry::new(),
            links: Links::start(links).map_err(|e| BrokerError::Link(e.to_string()))?,
            shutdown,
            publisher: Mutex::new(publisher),
            uplink: OnceLock::new(),
            io,
            next_io: std::sync::atomic::AtomicUsize::new(0),
            clock: governor::clock::QuantaClock::default(),
            persistent: Mutex::new(HashSet::new()),
            backlog: Backlog::default(),
        });
        let weak = Arc::downgrade(&shared);
        std::thread::Builder::new()
            .name("mqtt-dispatch".into())
            .spawn(move || dispatch(weak, dispatch_tx, dispatch_rx))
            .map_err(|e| BrokerError::Link(format!("start the dispatcher: {e}")))?;
        Ok(Broker { shared })
    }

    /// Accepts MQTT over TCP until shutdown.
    pub async fn serve_tcp(&self, listener: TcpListener) {
        let shutdown = self.shared.shutdown.clone();
        loop {
            let permit = tokio::select! {
                _ = shutdown.cancelled() => break,
                p = self.shared.connection_slots.clone().acquire_owned() => match p {
                    Ok(p) => p,
                    Err(_) => break,
                },
            };
            let (socket, peer) = tokio::select! {
                _ = shutdown.cancelled() => break,
                accepted = listener.accept() => match accepted {
                    Ok(v) => v,
                    Err(e) => {
                        // EMFILE and friends: back off instead of spinning.
                        warn!(error = %e, "accept failed");
                        tokio::time::sleep(Duration::from_millis(50)).await;
                        continue;
                    }
                },
            };
            let _ = socket.set_nodelay(true);
            // Handed over to an I/O thread: re-registered with its runtime.
            let socket = match socket.into_std() {
                Ok(s) => s,
                Err(e) => {
                    warn!(error = %e, "could not hand over a connection");
                    continue;
                }
            };
            let shared = self.shared.clone();
            let n = shared
                .next_io
                .fetch_add(1, std::sync::atomic::Ordering::Relaxed);
            let io = &self.shared.io[n % self.shared.io.len()];
            // Logged here: the task keeps what it captures for its whole life.
            debug!(%peer, "tcp connection");
            io.tasks.spawn_on(
                async move {
                    let _permit = permit;
                    let socket = match tokio::net::TcpStream::from_std(socket) {
                        Ok(s) => s,
                        Err(e) => {
                            warn!(error = %e, "could not register a connection");
                            return;
                        }
                    };
                    conn::serve(shared, socket, "tcp").await;
                },
                &io.handle,
            );
        }
        info!("mqtt tcp listener stopped");
    }

    /// Serves one already-upgraded WebSocket byte stream.
    pub(crate) async fn serve_stream<S>(&self, stream: S, transport: &'static str)
    where
        S: tokio::io::AsyncRead + tokio::io::AsyncWrite + Unpin + Send,
    {
        let Ok(_permit) = self.shared.connection_slots.clone().try_acquire_owned() else {
            warn!(transport, "connection limit reached");
            return;
        };
        conn::serve(self.shared.clone(), stream, transport).await;
    }

    /// Publishes `payload` to `users/{user_id}/{subtopic}`. Delivery is at
    /// the subscription's QoS (at most 1). Skips users with no live
    /// connection (they catch up by sync, and the router keeps no copy);
    /// returns whether it was published.
    ///
    /// Synchronous: it hands the packet to the router's queue and may block
    /// briefly when that queue is full, so call it from a blocking context
    /// (chatsvc calls it from its store writer thread, in commit order).
    pub fn push(&self, user_id: u64, subtopic: &str, payload: Bytes) -> bool {
        if !self.shared.registry.is_online(user_id) {
            return false;
        }
        self.publish(format!("users/{user_id}/{subtopic}"), payload);
        true
    }

    /// Pushes many `(user, subtopic, payload)` at once: one lock and one
    /// router wake-up for the whole batch (a group message to 1000 members
    /// is one batch; a batch over 1 MiB goes in chunks). Offline users are
    /// skipped; returns how many were sent.
    pub fn push_many<'a, I>(&self, items: I) -> usize
    where
        I: IntoIterator<Item = (u64, &'a str, Bytes)>,
    {
        let publishes: Vec<_> = items
            .into_iter()
            .filter(|(user, _, _)| self.shared.registry.is_online(*user))
            .map(|(user, subtopic, payload)| {
                let topic = Bytes::from(format!("users/{user}/{subtopic}"));
                (Publish::new(topic, payload, false), None)
            })
            .collect();
        let n = publishes.len();
        self.shared.publish_all(publishes);
        n
    }

    /// Publishes unconditionally. Same blocking note as [`Broker::push`].
    pub fn publish(&self, topic: String, payload: Bytes) {
        self.shared.publish(topic, payload, None);
    }

    /// Publishes with MQTT 5 properties (used by the fuzz targets; the
    /// uplink worker reaches [`Shared::publish`] directly).
    pub(crate) fn publish_with_properties(
        &self,
        topic: String,
        payload: Bytes,
        properties: PublishProperties,
    ) {
        self.shared.publish(topic, payload, Some(properties));
    }

    /// Installs the handler for client publishes to the open subtrees
    /// ([`Settings::open_publish`]). Only the first call takes effect.
    pub fn set_uplink(&self, uplink: Arc<dyn Uplink>) {
        let _ = self.shared.uplink.set(uplink);
    }

    pub(crate) fn max_packet_size(&self) -> usize {
        self.shared.settings.max_packet_size
    }

    /// Is at least one connection of this user live?
    pub fn is_online(&self, user_id: u64) -> bool {
        self.shared.registry.is_online(user_id)
    }

    /// Users with at least one live connection, ascending.
    pub fn online_users(&self) -> Vec<u64> {
        self.shared.registry.online_users()
    }

    /// Live connections, all users.
    pub fn connection_count(&self) -> usize {
        self.shared.registry.connection_count()
    }

    /// Presence changes (first connection opened / last one closed).
    pub fn presence_changes(&self) -> broadcast::Receiver<PresenceChange> {
        self.shared.registry.subscribe()
    }

    /// Closes every connection of `user_id`; of one login session only when
    /// `session_id` is given. Returns how many connections were closed.
    pub fn disconnect(&self, user_id: u64, session_id: Option<u64>) -> usize {
        self.shared
            .registry
            .kick(user_id, session_id, KickReason::SessionEnded)
    }

    /// Closes every client connection (server shutdown).
    pub fn disconnect_all(&self) {
        self.shared.registry.kick_all(KickReason::ServerShutdown);
    }
}

/// Publishes the router hands the dispatcher at a time. Large batches are
/// cheap for the dispatcher and give each connection several deliveries per
/// wake-up, so one write instead of several.
const DISPATCH_READ: u64 = 1024;

/// The dispatcher's filter: every user's topics.
const DISPATCH_FILTER: &str = "users/#";

/// The dispatcher's log in the router holds every publish to users until the
/// dispatcher has taken it. It may fall behind by at least 4 segments (4 MiB:
/// a group message to 2,000 members is ~1 MiB, handed to the router at
/// once) before the router drops what it has not taken; and the log keeps at
/// most 5 MiB of publishes already taken (their payloads stay in memory until
/// their segment is dropped).
const DISPATCH_SEGMENT_SIZE: usize = 1 << 20;
const DISPATCH_SEGMENT_COUNT: usize = 5;

/// The dispatcher thread: takes the router's forwards on the dispatcher's
/// link and hands them to the clean sessions' mailboxes. It never waits for
/// a connection (a mailbox that is full makes its connection end), so one
/// slow client can't hold up the others. Ends with the broker.
fn dispatch(shared: Weak<Shared>, _tx: LinkTx, mut rx: LinkRx) {
    let mut batch: Vec<Forward> = Vec::new();
    let mut last_offset: Option<u64> = None;
    loop {
        let mut next = match rx.recv() {
            Ok(n) => n,
            Err(e) => {
                debug!(error = %e, "dispatcher link closed");
                return;
            }
        };
        let mut unscheduled = false;
        loop {
            match next {
                Some(Notification::Forward(forward)) => batch.push(forward),
                Some(Notification::Unschedule) => unscheduled = true,
                Some(other) => debug!(?other, "dispatcher: router notification"),
                None => {}
            }
            if batch.len() >= 1024 {
                break;
            }
            match futures_util::FutureExt::now_or_never(rx.next()) {
                Some(Ok(n)) => next = n,
                Some(Err(_)) | None => break,
            }
        }
        let Some(shared) = shared.upgrade() else {
            return;
        };
        // The router numbers a filter's publishes one after another; a gap
        // means it dropped publishes the dispatcher had not taken yet (its
        // log overflowed, which the backlog's limit prevents unless the
        // dispatcher stalls for `BACKLOG_WAIT`). Nobody can tell which
        // clean sessions missed what, so all of them reconnect and catch up
        // by sync.
        let skipped = batch
            .iter()
            .filter_map(|f| f.cursor.map(|(_, offset)| offset))
            .fold(0, |skipped, offset| {
                let gap = last_offset.map_or(0, |last| offset.saturating_sub(last + 1));
                last_offset = Some(offset);
                skipped + gap
            });
        if skipped > 0 {
            error!(
                skipped,
                "dispatcher fell behind the router: clean sessions must resync"
            );
            metrics::counter!("mqtt_dispatch_skipped_total").increment(skipped);
            shared.registry.kick_mailboxes(KickReason::Overloaded);
            shared.backlog.clear();
        }
        shared.registry.deliver(
            batch
                .iter()
                .map(|f| (&f.publish.topic, &f.publish.payload, f.properties.as_ref())),
        );
        shared
            .backlog
            .took(batch.iter().map(|f| dispatched_bytes(&f.publish)).sum());
        batch.clear();
        if unscheduled {
            if let Err(e) = rx.ready() {
                debug!(error = %e, "dispatcher link closed");
                return;
            }
        }
    }
}

/// Connections the kernel may hold for a listener before it accepts them
/// (capped by `net.core.somaxconn`). The usual 128 overflows when thousands
/// of clients reconnect at once: the kernel drops their SYNs and they retry
/// only after a second.
pub const LISTEN_BACKLOG: u32 = 4096;

/// Binds a TCP listener (address reuse on, backlog [`LISTEN_BACKLOG`]);
/// port 0 picks a free port.
pub async fn bind(addr: SocketAddr) -> std::io::Result<TcpListener> {
    let socket = match addr {
        SocketAddr::V4(_) => tokio::net::TcpSocket::new_v4()?,
        SocketAddr::V6(_) => tokio::net::TcpSocket::new_v6()?,
    };
    socket.set_reuseaddr(true)?;
    socket.bind(addr)?;
    socket.listen(LISTEN_BACKLOG)
}

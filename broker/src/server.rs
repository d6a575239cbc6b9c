//! The broker: the TCP and WebSocket listeners, the connections' mailboxes
//! and registry, and the handle chatsvc uses to push and to ask who is
//! online.

use std::collections::HashMap;
use std::net::SocketAddr;
use std::sync::{Arc, Mutex, OnceLock};
use std::time::Duration;

use bytes::Bytes;
use rumqttd::protocol::{Publish, PublishProperties};
use tokio::net::TcpListener;
use tokio::sync::{broadcast, Semaphore};
use tokio_util::sync::CancellationToken;
use tokio_util::task::TaskTracker;
use tracing::{debug, info, warn};

use crate::acl::Acl;
use crate::auth::Authenticator;
use crate::conn;
use crate::limits::{PerKey, Unauthenticated};
use crate::registry::{KickReason, PresenceChange, Registry};
use crate::sessions::{Dirty, SessionStore};
use crate::uplink::Uplink;

/// Broker settings. The defaults suit a single node with many small per-user
/// topics.
#[derive(Debug, Clone)]
pub struct Settings {
    /// Most concurrent client connections (TCP and WebSocket together).
    pub max_connections: usize,
    /// Largest MQTT packet accepted from a client, in bytes.
    pub max_packet_size: usize,
    /// Time a new connection has to send CONNECT, from its accept (however
    /// slowly it dribbles the bytes in).
    pub connect_timeout: Duration,
    /// Most connections one user may hold (0: no cap). Past it, CONNECT is
    /// refused (3.1.1: 0x03 server unavailable; 5: 0x97 quota exceeded),
    /// except for a client id the user already has connected, which takes
    /// that connection over.
    pub max_connections_per_user: usize,
    /// Most connections of one client address that have not yet
    /// authenticated (0: no cap); past it, that address's oldest one is
    /// closed to make room (see `limits::Unauthenticated`).
    pub max_unauthenticated_per_address: usize,
    /// Time a write to a client may block, or its QoS 1 deliveries may wait
    /// with no PUBACK at all, before the client is dropped.
    pub write_timeout: Duration,
    /// How long an MQTT 3.1.1 persistent session (clean session 0) outlives
    /// its connection, and the most an MQTT 5 client's Session Expiry
    /// Interval may ask for (a larger one is lowered, and the CONNACK says so).
    pub session_expiry: Duration,
    /// Persistent sessions kept per user; making one more evicts the one
    /// seen least recently (0: no cap).
    pub max_sessions_per_user: usize,
    /// Most events a resumed persistent session is replayed; a larger
    /// backlog gets one `sync.required` event instead.
    pub session_backlog: u64,
    /// A persistent session away longer than this gets `sync.required`
    /// instead of its backlog (if it has one).
    pub session_backlog_age: Duration,
    /// How often live persistent sessions' acknowledged cursors are written
    /// (in one batch); a crash loses at most this much of them, which is
    /// delivered again.
    pub session_flush: Duration,
    /// Bytes of live deliveries a connection's mailbox holds (topics and
    /// payloads) for a client that reads or acknowledges slowly; a clean
    /// session further behind is disconnected (MQTT 5: 0x97) and syncs, a
    /// persistent one catches up from the store.
    pub mailbox_size: usize,
    /// Unacknowledged QoS 1 deliveries per clean-session connection before
    /// the gateway waits for PUBACKs (an MQTT 5 client's receive maximum
    /// lowers it).
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
    /// Keeping socket loops off the shared multi-threaded runtime saves a
    /// cross-worker wake-up on every push.
    pub io_threads: usize,
    /// Balancers whose PROXY headers are believed on MQTT over TCP (see
    /// [`crate::proxy`]); empty: none.
    pub trusted_proxies: crate::proxy::TrustedProxies,
}

impl Default for Settings {
    fn default() -> Self {
        Settings {
            max_connections: 50_000,
            max_packet_size: 64 * 1024,
            connect_timeout: Duration::from_secs(5),
            max_connections_per_user: 32,
            max_unauthenticated_per_address: 256,
            write_timeout: Duration::from_secs(30),
            session_expiry: Duration::from_secs(7 * 24 * 3600),
            max_sessions_per_user: 16,
            session_backlog: 10_000,
            session_backlog_age: Duration::from_secs(24 * 3600),
            session_flush: Duration::from_secs(1),
            mailbox_size: 1 << 20,
            max_inflight: 100,
            open_publish: vec!["up".to_owned()],
            uplink_queue: 32,
            max_filters_per_subscribe: 32,
            max_subscriptions: 64,
            max_packets_per_sec: 100,
            packet_burst: 1000,
            io_threads: 1,
            trusted_proxies: crate::proxy::TrustedProxies::default(),
        }
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
    pub connection_slots: Arc<Semaphore>,
    /// Connections per user (`Settings::max_connections_per_user`).
    pub user_slots: Arc<PerKey<u64>>,
    /// Connections per address still before their CONNACK.
    pub unauthenticated: Arc<Unauthenticated>,
    pub shutdown: CancellationToken,
    /// Handles client publishes to open subtrees (set once chatsvc is up).
    pub uplink: OnceLock<Arc<dyn Uplink>>,
    io: Vec<IoThread>,
    next_io: std::sync::atomic::AtomicUsize,
    /// The clock of every connection's packet-rate limiter. Made once: a
    /// new one calibrates itself with CPUID, which traps to the hypervisor
    /// on a VM, on every connect.
    pub clock: governor::clock::QuantaClock,
    /// Where persistent sessions are kept (set once chatsvc is up; without
    /// it, clean session 0 gets a session that ends with its connection).
    pub sessions: OnceLock<Arc<dyn SessionStore>>,
    /// Live persistent sessions' cursors, written in batches.
    pub dirty: Arc<Dirty>,
    /// Wills waiting out their delay, by namespaced client id: a new
    /// connection with that id cancels its will.
    pub wills: Mutex<HashMap<Arc<str>, CancellationToken>>,
    /// One turn at a time per persistent session (namespaced client id):
    /// a connection holds its session's turn until its last cursors are
    /// written, so one resuming the session reads them, not older ones.
    session_turns: Mutex<HashMap<Arc<str>, Arc<tokio::sync::Mutex<()>>>>,
}

impl Shared {
    /// The turn of the persistent session `id` (see `session_turns`).
    pub(crate) fn session_turn(&self, id: &Arc<str>) -> Arc<tokio::sync::Mutex<()>> {
        let mut turns = self.session_turns.lock().unwrap_or_else(|e| e.into_inner());
        turns.entry(id.clone()).or_default().clone()
    }

    /// Forgets the turn of session `id` when nobody holds or awaits it.
    pub(crate) fn release_session_turn(&self, id: &str) {
        let mut turns = self.session_turns.lock().unwrap_or_else(|e| e.into_inner());
        if turns.get(id).is_some_and(|t| Arc::strong_count(t) == 1) {
            turns.remove(id);
        }
    }

    /// Publishes one push or reply. Never waits for a client.
    pub(crate) fn publish(&self, topic: String, payload: Bytes, props: Option<PublishProperties>) {
        let publish = Publish::new(Bytes::from(topic), payload, false);
        self.publish_all(vec![(publish, props)]);
    }

    /// Publishes in order: each publish goes straight into the mailboxes
    /// of its user's connections (see `mailbox`), on the caller's thread,
    /// so a push costs no thread hand-off, and each connection sees its
    /// publishes in the order they were made.
    fn publish_all(&self, publishes: Vec<(Publish, Option<PublishProperties>)>) {
        let total = publishes.len();
        self.registry.deliver(
            publishes
                .iter()
                .map(|(p, props)| (&p.topic, &p.payload, props.as_ref())),
        );
        metrics::counter!(crate::metrics::PUSHES_TOTAL).increment(total as u64);
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
    #[error("start: {0}")]
    Start(String),
}

impl Broker {
    /// Starts the broker's I/O threads.
    pub fn start(
        settings: Settings,
        authenticator: Arc<dyn Authenticator>,
        shutdown: CancellationToken,
    ) -> Result<Broker, BrokerError> {
        let io = start_io_threads(settings.io_threads, &shutdown)
            .map_err(|e| BrokerError::Start(format!("I/O threads: {e}")))?;
        let shared = Arc::new(Shared {
            acl: Acl::with_open_publish(settings.open_publish.clone()),
            connection_slots: Arc::new(Semaphore::new(settings.max_connections)),
            user_slots: PerKey::new(settings.max_connections_per_user),
            unauthenticated: Unauthenticated::new(settings.max_unauthenticated_per_address),
            settings,
            authenticator,
            registry: Registry::new(),
            shutdown,
            uplink: OnceLock::new(),
            io,
            next_io: std::sync::atomic::AtomicUsize::new(0),
            clock: governor::clock::QuantaClock::default(),
            sessions: OnceLock::new(),
            dirty: Arc::default(),
            wills: Mutex::new(HashMap::new()),
            session_turns: Mutex::new(HashMap::new()),
        });
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
                accepted = accept(&listener, "mqtt") => match accepted {
                    Some(v) => v,
                    None => continue,
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
                    // Behind a trusted balancer, the client's address is
                    // the one its PROXY header carries.
                    let (socket, client) = match Box::pin(shared.settings.trusted_proxies.resolve(socket, peer)).await {
                        Ok(v) => v,
                        Err(e) => {
                            warn!(%peer, error = %e, "mqtt connection from a trusted proxy refused");
                            return;
                        }
                    };
                    conn::serve(
                        shared,
                        socket,
                        crate::metrics::TRANSPORT_TCP,
                        Some(client.ip()),
                    )
                    .await;
                },
                &io.handle,
            );
        }
        info!("mqtt tcp listener stopped");
    }

    /// Serves one already-upgraded WebSocket byte stream from `peer`.
    pub(crate) async fn serve_stream<S>(
        &self,
        stream: S,
        transport: &'static str,
        peer: Option<std::net::IpAddr>,
    ) where
        S: tokio::io::AsyncRead + tokio::io::AsyncWrite + Unpin + Send,
    {
        let Ok(_permit) = self.shared.connection_slots.clone().try_acquire_owned() else {
            warn!(transport, "connection limit reached");
            return;
        };
        conn::serve(self.shared.clone(), stream, transport, peer).await;
    }

    /// Publishes `payload` to `users/{user_id}/{subtopic}`. Delivery is at
    /// the subscription's QoS (at most 1). Skips users with no live
    /// connection (they catch up by sync, a persistent session by replay);
    /// returns whether it was published.
    ///
    /// Synchronous and never waits for a client: it queues the publish in the
    /// mailboxes of the user's connections, taking short locks only. chatsvc calls it
    /// from its store's notify thread, in commit order.
    pub fn push(&self, user_id: u64, subtopic: &str, payload: Bytes) -> bool {
        if !self.shared.registry.is_online(user_id) {
            return false;
        }
        self.publish(format!("users/{user_id}/{subtopic}"), payload);
        true
    }

    /// Pushes many `(user, subtopic, payload)` at once, in order: one lock
    /// of the registry for the whole batch (a
    /// group message to 1000 members is one batch). Offline users are
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

    /// Publishes whether or not anyone is online. Same note as [`Broker::push`].
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

    /// Installs the store of persistent sessions and starts the task that
    /// writes their cursors and purges expired ones. Only the first call
    /// takes effect; must be called from within a tokio runtime.
    pub fn set_sessions(&self, store: Arc<dyn SessionStore>) {
        if self.shared.sessions.set(store.clone()).is_ok() {
            let s = &self.shared;
            tokio::spawn(crate::sessions::run_flusher(
                store,
                s.dirty.clone(),
                s.settings.session_flush,
                SESSION_TOUCH,
                s.shutdown.clone(),
            ));
        }
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

    /// Connections accepted, with their client ids (for takeovers across
    /// the nodes of a cluster).
    pub fn accepted_clients(&self) -> broadcast::Receiver<crate::registry::ClientAccepted> {
        self.shared.registry.subscribe_accepted()
    }

    /// Closes the user's connections with this namespaced client id (as
    /// reported by [`Broker::accepted_clients`]): it was taken over
    /// elsewhere. Returns how many were closed.
    pub fn take_over(&self, user_id: u64, client_id: &str) -> usize {
        self.shared.registry.kick_client(user_id, client_id)
    }

    /// Closes every client connection (server shutdown).
    pub fn disconnect_all(&self) {
        self.shared.registry.kick_all(KickReason::ServerShutdown);
    }
}

/// How often every live persistent session is written (its expiry pushed
/// out) and expired ones purged. A connected session's row expires
/// [`crate::sessions::SESSION_GRACE_SECS`] after its last write plus its
/// expiry interval, so a crashed node's sessions still expire.
pub(crate) const SESSION_TOUCH: Duration = Duration::from_secs(60);

/// Connections the kernel may hold for a listener before it accepts them
/// (capped by `net.core.somaxconn`). The usual 128 overflows when thousands
/// of clients reconnect at once: the kernel drops their SYNs and they retry
/// only after a second.
pub const LISTEN_BACKLOG: u32 = 4096;

/// Accepts one connection on `listener` (`what` names it in the log). On
/// an error (out of file descriptors, and friends) backs off a moment
/// instead of spinning, and returns `None`.
pub async fn accept(
    listener: &TcpListener,
    what: &'static str,
) -> Option<(tokio::net::TcpStream, SocketAddr)> {
    match listener.accept().await {
        Ok(v) => Some(v),
        Err(e) => {
            warn!(listener = what, error = %e, "accept failed");
            tokio::time::sleep(Duration::from_millis(50)).await;
            None
        }
    }
}

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

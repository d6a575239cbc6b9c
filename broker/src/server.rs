//! The broker: rumqttd's router on its own thread, the TCP and WebSocket
//! listeners in front of it, and the handle chatsvc uses to push and to ask
//! who is online.

use std::collections::HashMap;
use std::net::SocketAddr;
use std::sync::{Arc, Mutex, OnceLock};
use std::time::Duration;

use bytes::Bytes;
use rumqttd::local::{LinkBuilder, LinkError, LinkRx, LinkTx};
use rumqttd::protocol::{Disconnect, DisconnectReasonCode};
use rumqttd::protocol::{LastWill, LastWillProperties, Packet, Publish, PublishProperties};
use rumqttd::{Notification, Router, RouterConfig};
use tokio::net::TcpListener;
use tokio::sync::{broadcast, Semaphore};
use tokio_util::sync::CancellationToken;
use tokio_util::task::TaskTracker;
use tracing::{debug, error, info, warn};

use crate::acl::Acl;
use crate::auth::Authenticator;
use crate::conn;
use crate::limits::{PerKey, Unauthenticated};
use crate::registry::{addressee, KickReason, PresenceChange, Registry};
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
            trusted_proxies: crate::proxy::TrustedProxies::default(),
        }
    }
}

impl Settings {
    /// rumqttd's router as the broker runs it. Only persistent sessions have
    /// links into it (QoS 1 links stop at 100 unacknowledged deliveries, a
    /// constant in rumqttd; QoS 0 ones get `max_inflight` per round), and
    /// every filter gets the log `segment_size` × `segment_count`.
    pub fn router_config(&self) -> RouterConfig {
        RouterConfig {
            max_connections: self.max_connections + 16,
            max_outgoing_packet_count: self.max_inflight,
            max_segment_size: self.segment_size.max(1024),
            max_segment_count: self.segment_count.max(1),
            custom_segment: None,
            initialized_filters: None,
            shared_subscriptions_strategy: Default::default(),
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
    /// Connections per user (`Settings::max_connections_per_user`).
    pub user_slots: Arc<PerKey<u64>>,
    /// Connections per address still before their CONNACK.
    pub unauthenticated: Arc<Unauthenticated>,
    pub shutdown: CancellationToken,
    /// The broker's own link into the router: pushes and uplink replies to
    /// users with a persistent session go through it.
    pub publisher: Mutex<LinkTx>,
    /// Handles client publishes to open subtrees (set once chatsvc is up).
    pub uplink: OnceLock<Arc<dyn Uplink>>,
    io: Vec<IoThread>,
    next_io: std::sync::atomic::AtomicUsize,
    /// The clock of every connection's packet-rate limiter. Made once: a
    /// new one calibrates itself with CPUID, which traps to the hypervisor
    /// on a VM, on every connect.
    pub clock: governor::clock::QuantaClock,
    /// The persistent sessions the router may hold.
    persistent: Mutex<Persistent>,
}

/// Router client ids that connected with a persistent session, and their
/// users. The router may hold their state, which a clean session with the
/// same id must discard (see `Shared::discard_persistent`); and pushes to
/// their users go through the router as well as to the mailboxes.
#[derive(Default)]
struct Persistent {
    users: HashMap<String, u64>,
    sessions: HashMap<u64, usize>,
}

impl Persistent {
    fn insert(&mut self, client_id: &str, user_id: u64) {
        if self.users.insert(client_id.to_owned(), user_id).is_none() {
            *self.sessions.entry(user_id).or_default() += 1;
        }
    }

    fn remove(&mut self, client_id: &str) -> bool {
        let Some(user_id) = self.users.remove(client_id) else {
            return false;
        };
        if let Some(n) = self.sessions.get_mut(&user_id) {
            *n -= 1;
            if *n == 0 {
                self.sessions.remove(&user_id);
            }
        }
        true
    }

    /// Whether a publish to `topic` may have a subscriber in the router: a
    /// persistent session of its user, or (not a user's topic) anyone.
    fn routes(&self, topic: &[u8]) -> bool {
        addressee(topic).is_none_or(|user| self.sessions.contains_key(&user))
    }
}

impl Shared {
    /// Notes that the router may keep a session for `client_id`, a client of
    /// `user_id`: from now on that user's pushes also go to the router.
    pub(crate) fn note_persistent(&self, client_id: &str, user_id: u64) {
        self.persistent
            .lock()
            .unwrap_or_else(|e| e.into_inner())
            .insert(client_id, user_id);
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

    /// Publishes one push or reply. Never waits for a client.
    pub(crate) fn publish(&self, topic: String, payload: Bytes, props: Option<PublishProperties>) {
        let publish = Publish::new(Bytes::from(topic), payload, false);
        self.publish_all(vec![(publish, props)]);
    }

    /// Publishes in order. Clean sessions have no router link: each publish
    /// goes straight into the mailboxes of its user's clean-session
    /// connections (see `mailbox`), on the caller's thread, so a push costs
    /// no router round and no thread hand-off. Only users with a persistent
    /// session also get their publishes through the router (one wake-up for
    /// the batch), which keeps those sessions' subscriptions and logs. Each
    /// connection is served by one of the two paths, so it sees its
    /// publishes in the order they were made.
    fn publish_all(&self, publishes: Vec<(Publish, Option<PublishProperties>)>) {
        let total = publishes.len();
        self.registry.deliver(
            publishes
                .iter()
                .map(|(p, props)| (&p.topic, &p.payload, props.as_ref())),
        );
        let mut routed: Vec<Packet> = {
            let persistent = self.persistent.lock().unwrap_or_else(|e| e.into_inner());
            publishes
                .into_iter()
                .filter(|(p, _)| persistent.routes(&p.topic))
                .map(|(p, props)| Packet::Publish(p, props))
                .collect()
        };
        if let Some(last) = routed.pop() {
            let mut tx = self.publisher.lock().unwrap_or_else(|e| e.into_inner());
            tx.buffer().extend(routed);
            // `LinkTx::send` is an async fn that never awaits; it
            // completes on its first poll.
            match futures_util::FutureExt::now_or_never(tx.send(last)) {
                Some(Ok(_)) => {}
                Some(Err(e)) => error!(error = %e, "downlink publish failed"),
                None => error!("downlink publish did not complete"),
            }
        }
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
        let config = settings.router_config();
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

        let io = start_io_threads(settings.io_threads, &shutdown)
            .map_err(|e| BrokerError::Link(format!("start I/O threads: {e}")))?;
        let shared = Arc::new(Shared {
            acl: Acl::with_open_publish(settings.open_publish.clone()),
            connection_slots: Arc::new(Semaphore::new(settings.max_connections)),
            user_slots: PerKey::new(settings.max_connections_per_user),
            unauthenticated: Unauthenticated::new(settings.max_unauthenticated_per_address),
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
            persistent: Mutex::new(Persistent::default()),
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
    /// connection (they catch up by sync, and the router keeps no copy);
    /// returns whether it was published.
    ///
    /// Synchronous and never waits for a client: it queues the publish in the
    /// mailboxes of the user's clean sessions (and in the router for a user
    /// with a persistent session), taking short locks only. chatsvc calls it
    /// from its store's notify thread, in commit order.
    pub fn push(&self, user_id: u64, subtopic: &str, payload: Bytes) -> bool {
        if !self.shared.registry.is_online(user_id) {
            return false;
        }
        self.publish(format!("users/{user_id}/{subtopic}"), payload);
        true
    }

    /// Pushes many `(user, subtopic, payload)` at once, in order: one lock
    /// of the registry and at most one router wake-up for the whole batch (a
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

#[cfg(test)]
mod tests {
    use super::Persistent;

    #[test]
    fn a_users_pushes_go_to_the_router_while_one_of_its_persistent_sessions_is_kept() {
        let mut p = Persistent::default();
        assert!(!p.routes(b"users/7/events"), "no persistent session yet");
        p.insert("7/phone", 7);
        p.insert("7/phone", 7); // reconnected: still one session
        p.insert("7/tablet", 7);
        assert!(p.routes(b"users/7/events"));
        assert!(!p.routes(b"users/8/events"), "another user's");
        assert!(!p.routes(b"users/70/events"));

        assert!(p.remove("7/phone"));
        assert!(!p.remove("7/phone"), "already discarded");
        assert!(p.routes(b"users/7/events"), "the tablet's is still kept");
        assert!(p.remove("7/tablet"));
        assert!(!p.routes(b"users/7/events"));
        // Not a user's topic (nobody can subscribe there but the router may
        // know): always handed to the router.
        assert!(p.routes(b"other/topic"));
        assert!(p.routes(b"users/007/events"));
    }
}

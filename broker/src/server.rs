//! The broker: the TCP and WebSocket listeners, the connections' mailboxes
//! and registry, and the handle chatsvc uses to push and to ask who is
//! online.

use std::net::SocketAddr;
use std::sync::Arc;
use std::time::Duration;

use bytes::Bytes;
use rumqttd::protocol::{Publish, PublishProperties};
use tokio::net::TcpListener;
use tokio::sync::broadcast;
use tokio_util::sync::CancellationToken;
use tracing::{debug, info, warn};

use crate::auth::Authenticator;
use crate::conn;
use crate::registry::{KickReason, PresenceChange};
use crate::sessions::SessionStore;
use crate::uplink::Uplink;

pub use crate::settings::Settings;
use crate::shared::Shared;

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
        let shared = Shared::new(settings, authenticator, shutdown)
            .map_err(|e| BrokerError::Start(format!("I/O threads: {e}")))?;
        let shared = Arc::new(shared);
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
            let io = self.shared.next_io_thread();
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

    /// Wills published on this node (for the other nodes of a cluster,
    /// which [`Broker::deliver_will`] them to the user's connections there).
    pub fn published_wills(&self) -> broadcast::Receiver<crate::shared::PublishedWill> {
        self.shared.published_wills.subscribe()
    }

    /// Delivers a will published on another node to the user's
    /// connections here whose filters match, at the lower of its QoS and
    /// theirs. Refused unless its topic is in that user's own space.
    pub fn deliver_will(
        &self,
        will: &crate::shared::PublishedWill,
    ) -> Result<(), crate::shared::WillError> {
        let (topic, payload, properties, qos) = will.decode(self.max_packet_size())?;
        self.shared
            .registry
            .deliver([(&topic, &payload, properties.as_ref(), qos)]);
        metrics::counter!(crate::metrics::PUSHES_TOTAL).increment(1);
        Ok(())
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

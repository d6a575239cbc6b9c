//! The cluster bus: several chatd nodes on one PostgreSQL database, NATS
//! between them (`--cluster nats://...`).
//!
//! The store stays the truth; the bus only carries what a node needs to
//! know about the others, and losing a bus message costs at most a delay
//! (clients heal by sync). ARCHITECTURE.md "Cluster" has the whole picture.
//!
//! # Layout
//! - this file: [`Settings`], [`Cluster::start`], the bus connection and its
//!   state, the bounded publish queue, and the subjects.
//! - [`downlink`]: [`ClusterDownlink`], the domain's `Downlink`: local
//!   delivery plus a publish to the user's subject.
//! - `sequencer`: per-user reordering by cursor of what a node delivers.
//! - [`presence`]: the cluster's user → nodes view, heartbeats, leases.
//! - `sessions`: session ends and client-id takeovers across nodes.
//! - `wire`: what the messages look like.

pub mod downlink;
pub mod presence;
mod sequencer;
mod sessions;
pub(crate) mod wire;

use std::collections::HashMap;
use std::sync::atomic::{AtomicBool, Ordering};
use std::sync::{Arc, Mutex};
use std::time::Duration;

use bytes::Bytes;
use tokio::sync::{mpsc, Notify};
use tokio_util::sync::CancellationToken;
use tracing::{info, warn};

pub use downlink::ClusterDownlink;

use crate::metrics;

/// Subject of one user's pushes and takeovers: only nodes holding a
/// connection of the user subscribe.
pub(crate) fn user_subject(user: u64) -> String {
    format!("mqchat.user.{user}")
}
/// Presence deltas, heartbeats and full states of every node.
pub(crate) const PRESENCE_SUBJECT: &str = "mqchat.presence";
/// Session ends (logout, password reset, revocation): every node, since it
/// also revokes access tokens everywhere.
pub(crate) const SESSIONS_SUBJECT: &str = "mqchat.sessions";

/// How a node joins the cluster.
#[derive(Debug, Clone)]
pub struct Settings {
    /// `nats://HOST:PORT`.
    pub url: String,
    /// Unique per running process.
    pub node_id: String,
    pub heartbeat: Duration,
    /// Silence after which a node counts as dead.
    pub lease: Duration,
    /// How long a node holds an event back while an earlier cursor is missing.
    pub reorder_wait: Duration,
    /// Publishes waiting for the bus at most; past it they are dropped
    /// (counted), never waited for.
    pub queue: usize,
    /// Events held back per user at most while waiting for a gap.
    pub max_held: usize,
}

impl Default for Settings {
    fn default() -> Self {
        Settings {
            url: "nats://127.0.0.1:4222".to_owned(),
            node_id: default_node_id(),
            heartbeat: Duration::from_secs(1),
            lease: Duration::from_secs(3),
            reorder_wait: Duration::from_millis(100),
            queue: 65_536,
            max_held: 256,
        }
    }
}

/// The host name and a random suffix: unique per process, readable in logs.
pub fn default_node_id() -> String {
    let host = std::fs::read_to_string("/etc/hostname")
        .ok()
        .or_else(|| std::env::var("HOSTNAME").ok())
        .map(|h| {
            h.trim()
                .chars()
                .filter(|c| c.is_ascii_alphanumeric() || *c == '-')
                .collect::<String>()
        })
        .filter(|h| !h.is_empty())
        .unwrap_or_else(|| "chatd".to_owned());
    format!("{host}-{:08x}", rand::random::<u32>())
}

/// Why the bus could not be set up.
#[derive(Debug, thiserror::Error)]
pub enum ClusterError {
    #[error("nats {url}: {source}")]
    Connect {
        url: String,
        source: async_nats::ConnectError,
    },
    #[error("nats subscribe {subject}: {source}")]
    Subscribe {
        subject: &'static str,
        source: async_nats::SubscribeError,
    },
}

/// One message for the bus.
pub(crate) struct Outgoing {
    pub subject: String,
    pub payload: Bytes,
}

/// This node's membership in the cluster. Cheap to clone.
#[derive(Clone)]
pub struct Cluster {
    pub(crate) inner: Arc<Inner>,
}

pub(crate) struct Inner {
    pub settings: Settings,
    pub node: Arc<str>,
    pub broker: mqchat_broker::Broker,
    pub client: async_nats::Client,
    /// Connected to NATS right now.
    pub up: AtomicBool,
    outgoing: mpsc::Sender<Outgoing>,
    pub sequencer: sequencer::Sequencer,
    pub view: presence::View,
    /// The user subscriptions this node holds, each ended by its token.
    pub user_subs: Mutex<HashMap<u64, CancellationToken>>,
    /// Rung when another node ended sessions: reload token revocations.
    pub revocations: Notify,
    /// Bumped after each reload.
    pub revocations_loaded: tokio::sync::watch::Sender<u64>,
    /// Rung when the bus (re)connects: resend this node's state.
    pub reconnected: Notify,
    pub shutdown: CancellationToken,
}

impl std::fmt::Debug for Cluster {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("Cluster")
            .field("node", &self.inner.node)
            .field("up", &self.is_up())
            .finish()
    }
}

impl Cluster {
    /// Connects to NATS (in the background: a node starts, and serves its
    /// own clients, even while NATS is down) and starts the bus tasks.
    /// Returns the cluster and the presence changes for the domain.
    pub async fn start(
        settings: Settings,
        broker: mqchat_broker::Broker,
        shutdown: CancellationToken,
    ) -> Result<(Cluster, mpsc::Receiver<crate::domain::presence::Seen>), ClusterError> {
        metrics::describe_cluster();
        let node: Arc<str> = Arc::from(settings.node_id.as_str());
        let (events_tx, mut events_rx) = mpsc::unbounded_channel();
        let client = async_nats::ConnectOptions::new()
            .name(format!("chatd {node}"))
            // A node never hears its own publishes: it delivered them
            // locally already.
            .no_echo()
            .retry_on_initial_connect()
            .max_reconnects(None)
            .connection_timeout(Duration::from_secs(2))
            .ping_interval(Duration::from_secs(5))
            .subscription_capacity(4096)
            .reconnect_delay_callback(|attempts| {
                Duration::from_millis((100 * attempts as u64).min(2000))
            })
            .event_callback(move |event| {
                let tx = events_tx.clone();
                async move {
                    let _ = tx.send(event);
                }
            })
            .connect(settings.url.as_str())
            .await
            .map_err(|source| ClusterError::Connect {
                url: settings.url.clone(),
                source,
            })?;
        let (outgoing, outgoing_rx) = mpsc::channel(settings.queue.max(1));
        let (seen_tx, seen_rx) = mpsc::channel(4096);
        let inner = Arc::new(Inner {
            node: node.clone(),
            broker,
            up: AtomicBool::new(false),
            outgoing,
            sequencer: sequencer::Sequencer::new(settings.reorder_wait, settings.max_held),
            view: presence::View::new(node.clone(), seen_tx),
            user_subs: Mutex::new(HashMap::new()),
            revocations: Notify::new(),
            revocations_loaded: tokio::sync::watch::channel(0).0,
            reconnected: Notify::new(),
            shutdown: shutdown.clone(),
            client,
            settings,
        });
        let cluster = Cluster { inner };
        if cluster.inner.client.connection_state() == async_nats::connection::State::Connected {
            cluster.set_up(true);
        }

        // The bus state, from the client's events.
        {
            let cluster = cluster.clone();
            let stop = shutdown.clone();
            tokio::spawn(async move {
                loop {
                    let event = tokio::select! {
                        _ = stop.cancelled() => return,
                        e = events_rx.recv() => match e { Some(e) => e, None => return },
                    };
                    match event {
                        async_nats::Event::Connected => cluster.set_up(true),
                        async_nats::Event::Disconnected | async_nats::Event::Closed => {
                            cluster.set_up(false)
                        }
                        async_nats::Event::SlowConsumer(_) => {
                            ::metrics::counter!(metrics::CLUSTER_SLOW_CONSUMER_TOTAL).increment(1)
                        }
                        // Repeated at every reconnect attempt while NATS is
                        // down; async-nats logs it too.
                        async_nats::Event::ClientError(e) => {
                            tracing::debug!(error = %e, "nats client error")
                        }
                        other => info!(event = %other, "nats"),
                    }
                }
            });
        }
        tokio::spawn(publisher(cluster.clone(), outgoing_rx));
        sessions::start(&cluster).await?;
        presence::start(&cluster).await?;
        sequencer::start(&cluster);
        info!(node = %node, url = %cluster.inner.settings.url, "cluster node started");
        Ok((cluster, seen_rx))
    }

    pub fn node_id(&self) -> &str {
        &self.inner.node
    }

    /// Nodes this node knows alive, itself included.
    pub fn nodes(&self) -> usize {
        self.inner.view.peers() + 1
    }

    /// Connected to NATS: pushes reach the other nodes.
    pub fn is_up(&self) -> bool {
        self.inner.up.load(Ordering::Relaxed)
    }

    /// Runs `reload` (reload token revocations from the store) whenever
    /// another node ended sessions, or the bus came back (some may have
    /// been missed), until shutdown.
    pub fn serve_revocations<F, Fut>(&self, reload: F)
    where
        F: Fn() -> Fut + Send + 'static,
        Fut: std::future::Future<Output = ()> + Send,
    {
        let cluster = self.clone();
        tokio::spawn(async move {
            let inner = &cluster.inner;
            loop {
                tokio::select! {
                    _ = inner.shutdown.cancelled() => return,
                    _ = inner.revocations.notified() => {}
                }
                reload().await;
                inner.revocations_loaded.send_modify(|n| *n += 1);
            }
        });
    }

    fn set_up(&self, up: bool) {
        let was = self.inner.up.swap(up, Ordering::Relaxed);
        ::metrics::gauge!(metrics::CLUSTER_BUS_UP).set(if up { 1.0 } else { 0.0 });
        if up && !was {
            info!(node = %self.inner.node, "bus up");
            self.inner.reconnected.notify_one();
            // Session ends published meanwhile were lost.
            self.inner.revocations.notify_one();
        } else if !up && was {
            warn!(node = %self.inner.node, "bus down: pushes to other nodes paused");
        }
    }

    /// Queues a publish; never waits. Dropped (and counted) when the queue
    /// is full or the bus is down: the store has it, clients heal by sync.
    pub(crate) fn publish(&self, subject: String, payload: Bytes) {
        if !self.is_up() {
            ::metrics::counter!(metrics::CLUSTER_DROPPED_TOTAL, "reason" => metrics::DROP_BUS_DOWN)
                .increment(1);
            return;
        }
        if self
            .inner
            .outgoing
            .try_send(Outgoing { subject, payload })
            .is_err()
        {
            ::metrics::counter!(metrics::CLUSTER_DROPPED_TOTAL, "reason" => metrics::DROP_QUEUE_FULL)
                .increment(1);
        }
    }
}

/// Sends queued publishes to NATS, in order.
async fn publisher(cluster: Cluster, mut rx: mpsc::Receiver<Outgoing>) {
    let stop = cluster.inner.shutdown.clone();
    let mut batch = Vec::with_capacity(256);
    loop {
        batch.clear();
        let n = tokio::select! {
            _ = stop.cancelled() => return,
            n = rx.recv_many(&mut batch, 256) => n,
        };
        if n == 0 {
            return;
        }
        for out in batch.drain(..) {
            if !cluster.is_up() {
                ::metrics::counter!(metrics::CLUSTER_DROPPED_TOTAL, "reason" => metrics::DROP_BUS_DOWN)
                    .increment(1);
                continue;
            }
            match cluster.inner.client.publish(out.subject, out.payload).await {
                Ok(()) => ::metrics::counter!(metrics::CLUSTER_PUBLISHED_TOTAL).increment(1),
                Err(e) => {
                    ::metrics::counter!(metrics::CLUSTER_DROPPED_TOTAL, "reason" => metrics::DROP_BUS_DOWN)
                        .increment(1);
                    warn!(error = %e, "bus publish failed");
                }
            }
        }
    }
}

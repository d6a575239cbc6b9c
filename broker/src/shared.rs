//! What every connection task shares: the settings, the registry of
//! connections, the limits, the authenticator and the stores chatsvc plugs
//! in, and the I/O threads TCP connections run on. Connections (`conn`),
//! the uplink and the broker's handle (`server`) all reach it here.

use std::collections::HashMap;
use std::sync::atomic::{AtomicUsize, Ordering};
use std::sync::{Arc, Mutex, OnceLock};
use std::time::Duration;

use bytes::Bytes;
use rumqttd::protocol::{Publish, PublishProperties, QoS};
use tokio::sync::Semaphore;
use tokio_util::sync::CancellationToken;
use tokio_util::task::TaskTracker;

use crate::acl::Acl;
use crate::auth::Authenticator;
use crate::limits::{PerKey, Unauthenticated};
use crate::registry::Registry;
use crate::sessions::{Dirty, SessionStore};
use crate::settings::Settings;
use crate::uplink::Uplink;

/// The threads that run TCP connections: a current-thread runtime each,
/// and the connections it runs, so shutdown can wait for their goodbyes.
pub(crate) struct IoThread {
    pub handle: tokio::runtime::Handle,
    pub tasks: TaskTracker,
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
    next_io: AtomicUsize,
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
    /// The state of a new broker, with its I/O threads started.
    pub(crate) fn new(
        settings: Settings,
        authenticator: Arc<dyn Authenticator>,
        shutdown: CancellationToken,
    ) -> std::io::Result<Shared> {
        let io = start_io_threads(settings.io_threads, &shutdown)?;
        Ok(Shared {
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
            next_io: AtomicUsize::new(0),
            clock: governor::clock::QuantaClock::default(),
            sessions: OnceLock::new(),
            dirty: Arc::default(),
            wills: Mutex::new(HashMap::new()),
            session_turns: Mutex::new(HashMap::new()),
        })
    }

    /// The I/O thread for the next TCP connection, in turn.
    pub(crate) fn next_io_thread(&self) -> &IoThread {
        let n = self.next_io.fetch_add(1, Ordering::Relaxed);
        &self.io[n % self.io.len()]
    }

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

    /// Publishes one will: delivered at the lower of its own QoS and each
    /// matching subscription's (published at the Will QoS, as any publish), never waiting for a client.
    pub(crate) fn publish_will(
        &self,
        topic: String,
        payload: Bytes,
        props: Option<PublishProperties>,
        qos: QoS,
    ) {
        let topic = Bytes::from(topic);
        self.registry
            .deliver([(&topic, &payload, props.as_ref(), qos)]);
        metrics::counter!(crate::metrics::PUSHES_TOTAL).increment(1);
    }

    /// Publishes in order: each publish goes straight into the mailboxes
    /// of its user's connections (see `mailbox`), on the caller's thread,
    /// so a push costs no thread hand-off, and each connection sees its
    /// publishes in the order they were made.
    pub(crate) fn publish_all(&self, publishes: Vec<(Publish, Option<PublishProperties>)>) {
        let total = publishes.len();
        self.registry.deliver(
            publishes
                .iter()
                .map(|(p, props)| (&p.topic, &p.payload, props.as_ref(), QoS::AtLeastOnce)),
        );
        metrics::counter!(crate::metrics::PUSHES_TOTAL).increment(total as u64);
    }
}

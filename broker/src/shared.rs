//! What every connection task shares: the settings, the registry of
//! connections, the limits, the authenticator and the stores chatsvc plugs
//! in, and the I/O threads TCP connections run on. Connections (`conn`),
//! the uplink and the broker's handle (`server`) all reach it here.

use std::collections::HashMap;
use std::sync::atomic::{AtomicUsize, Ordering};
use std::sync::{Arc, Mutex, OnceLock};
use std::time::Duration;

use bytes::{Bytes, BytesMut};
use rumqttd::protocol::{Packet, Publish, PublishProperties, QoS};
use tokio::sync::{broadcast, Semaphore};
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
    /// Wills published here, for the other nodes of a cluster.
    pub published_wills: broadcast::Sender<PublishedWill>,
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
            published_wills: broadcast::channel(WILLS_BUFFERED).0,
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

    /// Publishes one will of `user_id`'s: delivered at the lower of its
    /// own QoS and each matching subscription's (published at the Will
    /// QoS, as any publish), never waiting for a client. Then offered to
    /// the other nodes of a cluster, if anything listens
    /// ([`crate::Broker::published_wills`]).
    pub(crate) fn publish_will(
        &self,
        user_id: u64,
        topic: String,
        payload: Bytes,
        props: Option<PublishProperties>,
        qos: QoS,
    ) {
        let topic = Bytes::from(topic);
        self.registry
            .deliver([(&topic, &payload, props.as_ref(), qos)]);
        metrics::counter!(crate::metrics::PUSHES_TOTAL).increment(1);
        if self.published_wills.receiver_count() > 0 {
            match PublishedWill::encode(user_id, topic, payload, props, qos) {
                Ok(will) => {
                    let _ = self.published_wills.send(will);
                }
                Err(e) => {
                    tracing::warn!(user_id, error = ?e, "a will could not be encoded for the other nodes")
                }
            }
        }
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

/// Wills a slow cluster forwarder may fall behind by before it misses some.
const WILLS_BUFFERED: usize = 1024;

/// A will published on this node, as the other nodes of a cluster deliver
/// it to the user's connections there ([`crate::Broker::published_wills`],
/// [`crate::Broker::deliver_will`]): its QoS, and the will as an MQTT 5
/// PUBLISH packet (topic, payload and properties; MQTT's own encoding, so
/// nothing of it is lost or re-invented on the way).
#[derive(Debug, Clone)]
pub struct PublishedWill {
    pub user_id: u64,
    /// The Will QoS (0, 1 or 2): it is delivered at no more than this.
    pub qos: u8,
    /// A QoS 0 PUBLISH packet.
    pub packet: Bytes,
}

/// Why a will from another node was not delivered.
#[derive(Debug, thiserror::Error)]
pub enum WillError {
    #[error("not an MQTT 5 PUBLISH packet: {0:?}")]
    Malformed(rumqttd::protocol::Error),
    #[error("not a PUBLISH packet")]
    NotPublish,
    #[error("the topic is not in the user's own space")]
    NotTheUsers,
    #[error("QoS {0} is not a QoS")]
    BadQoS(u8),
}

impl PublishedWill {
    fn encode(
        user_id: u64,
        topic: Bytes,
        payload: Bytes,
        properties: Option<PublishProperties>,
        qos: QoS,
    ) -> Result<PublishedWill, WillError> {
        let mut out = BytesMut::new();
        crate::codec::Version::V5
            .write(
                Packet::Publish(Publish::new(topic, payload, false), properties),
                &mut out,
            )
            .map_err(WillError::Malformed)?;
        Ok(PublishedWill {
            user_id,
            qos: qos as u8,
            packet: out.freeze(),
        })
    }

    /// The will's topic, payload, properties and QoS, once its topic is
    /// known to be in the user's own space (`users/{id}/`).
    pub(crate) fn decode(
        &self,
        max_packet_size: usize,
    ) -> Result<(Bytes, Bytes, Option<PublishProperties>, QoS), WillError> {
        let mut buf = BytesMut::from(&self.packet[..]);
        let packet = crate::codec::Version::V5
            .read(&mut buf, max_packet_size)
            .map_err(WillError::Malformed)?;
        let Packet::Publish(publish, properties) = packet else {
            return Err(WillError::NotPublish);
        };
        let own = format!("users/{}/", self.user_id);
        if !publish.topic.starts_with(own.as_bytes()) {
            return Err(WillError::NotTheUsers);
        }
        let qos = match self.qos {
            0 => QoS::AtMostOnce,
            1 => QoS::AtLeastOnce,
            2 => QoS::ExactlyOnce,
            n => return Err(WillError::BadQoS(n)),
        };
        Ok((publish.topic, publish.payload, properties, qos))
    }
}

#[cfg(test)]
mod tests {
    #![allow(clippy::unwrap_used)]

    use super::*;

    #[test]
    fn a_will_crosses_as_its_mqtt_packet_and_only_into_its_users_space() {
        let props = PublishProperties {
            content_type: Some("application/json".into()),
            user_properties: vec![("device".into(), "car".into())],
            message_expiry_interval: Some(30),
            ..Default::default()
        };
        let will = PublishedWill::encode(
            7,
            Bytes::from_static(b"users/7/up/status"),
            Bytes::from_static(b"{\"gone\":true}"),
            Some(props.clone()),
            QoS::AtLeastOnce,
        )
        .unwrap();
        let (topic, payload, properties, qos) = will.decode(1 << 16).unwrap();
        assert_eq!(&topic[..], b"users/7/up/status");
        assert_eq!(&payload[..], b"{\"gone\":true}");
        assert_eq!(properties, Some(props));
        assert_eq!(qos, QoS::AtLeastOnce);

        // Claimed for another user: refused.
        let forged = PublishedWill {
            user_id: 8,
            ..will.clone()
        };
        assert!(matches!(
            forged.decode(1 << 16),
            Err(WillError::NotTheUsers)
        ));
        let junk = PublishedWill {
            user_id: 7,
            qos: 1,
            packet: Bytes::from_static(b"\x30\x7f"),
        };
        let bad_qos = PublishedWill { qos: 3, ..will };
        assert!(matches!(bad_qos.decode(1 << 16), Err(WillError::BadQoS(3))));
        assert!(junk.decode(1 << 16).is_err());
    }
}

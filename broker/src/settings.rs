//! The broker's settings, read by every part of it (chatsvc fills them from
//! its configuration).

use std::time::Duration;

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
    /// publishes go to the [`crate::Uplink`] handler, never to other clients.
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

//! One client connection: CONNECT checks, then a loop that moves authorized
//! packets between the socket and the connection's mailbox.
//!
//! Every connection's live deliveries come from its [`Mailbox`], which the
//! publishers fill (`mailbox`). A persistent session also has a
//! [`persist::Persist`]: its state is in the owner's store
//! ([`crate::SessionStore`]), and what it missed while away is replayed
//! from there before the mailbox's live deliveries (`persist`). PINGREQ,
//! refused PUBLISHes and the protocol-level checks are answered here, at
//! the edge.
//!
//! # Layout
//! - `handshake`: CONNECT to CONNACK.
//! - `input`: packets from the client.
//! - `subscribe`: SUBSCRIBE, authorized filter by filter.
//! - `deliver`: deliveries and acknowledgements to the client.
//! - `persist`: a persistent session's replay, cursors and will.

mod deliver;
mod handshake;
mod input;
mod persist;
mod subscribe;
mod uplink;

use std::collections::{HashMap, VecDeque};
use std::net::IpAddr;
use std::sync::Arc;
use std::time::Duration;

use bytes::{Bytes, BytesMut};
use futures_util::FutureExt;
use rumqttd::protocol::{
    self, ConnAck, ConnAckProperties, ConnectReturnCode, Disconnect, DisconnectReasonCode, Packet,
    PingResp, PubAck, PubAckReason, PubComp, PubCompReason, PubRec, PubRecReason, Publish, QoS,
    SubAck, SubscribeProperties, SubscribeReasonCode, UnsubAck, UnsubAckReason,
};
use tokio::io::{AsyncRead, AsyncReadExt, AsyncWrite, AsyncWriteExt};
use tokio::time::Instant;
use tracing::{debug, info, warn};

use crate::acl::{self, FilterDenied};
use crate::auth::{Principal, Refusal};
use crate::codec::{self, Sniff, Version};
use crate::limits::Slot;
use crate::mailbox::{Granted, Mailbox};
use crate::registry::KickReason;
use crate::shared::Shared;
use persist::{Persist, Will};
use tokio::sync::mpsc;

/// Why a connection ended. Logged, never sent to the client.
#[derive(Debug, thiserror::Error)]
pub(crate) enum ConnError {
    #[error("i/o: {0}")]
    Io(#[from] std::io::Error),
    #[error("malformed packet: {0}")]
    Protocol(protocol::Error),
    #[error("protocol violation: {0}")]
    Violation(&'static str),
    /// An MQTT 5 client used what the CONNACK said the server does not
    /// offer; `reason` is the DISCONNECT's reason code that names it.
    #[error("{what}, which the CONNACK did not offer")]
    NotOffered {
        what: &'static str,
        reason: DisconnectReasonCode,
    },
    #[error("no CONNECT within the connect timeout")]
    ConnectTimeout,
    #[error("closed before CONNECT: its address has too many connections waiting to authenticate")]
    Evicted,
    #[error("keep-alive timeout")]
    KeepAlive,
    #[error("sent packets faster than allowed")]
    RateLimited,
    #[error("uplink worker stopped")]
    UplinkStopped,
    #[error("session store: {0}")]
    Store(String),
    #[error("fell behind by more than {0} bytes of deliveries")]
    FellBehind(usize),
}

/// Serves one client on any byte stream (TCP, or WebSocket adapted to bytes).
///
/// Not an `async fn`: the handshake's future is made (and boxed) here, so the
/// returned future holds only that box, not also its own copies of `shared`
/// and `stream`, which an `async fn` keeps for its whole life. The handshake's
/// and the goodbye's states (a decoded CONNECT with its will and properties;
/// timed writes) are boxed for their duration: inline, they would size the
/// task that every idle connection keeps.
pub(crate) fn serve<S>(
    shared: Arc<Shared>,
    stream: S,
    transport: &'static str,
    peer: Option<IpAddr>,
) -> impl std::future::Future<Output = ()> + Send
where
    S: AsyncRead + AsyncWrite + Unpin + Send,
{
    let handshake = Box::pin(Connection::handshake(shared, stream, peer));
    async move {
        metrics::counter!(crate::metrics::CONNECTIONS_ACCEPTED_TOTAL, "transport" => transport)
            .increment(1);
        match handshake.await {
            Ok(Some(mut conn)) => {
                let result = conn.run().await;
                Box::pin(conn.finish(result)).await;
            }
            Ok(None) => {}
            Err(e) => debug!(transport, error = %e, "connection refused before CONNACK"),
        }
    }
}

struct Connection<S> {
    shared: Arc<Shared>,
    stream: S,
    version: Version,
    principal: Principal,
    client_id: String,
    keep_alive: Option<Duration>,
    inbuf: BytesMut,
    outbuf: BytesMut,
    /// The user-namespaced client id.
    session_id: Arc<str>,
    direct: Direct,
    /// A persistent session's state; `None` for a clean session. Boxed: a
    /// clean session's connection keeps one pointer.
    persist: Option<Box<Persist>>,
    /// The will, published if the connection ends without a DISCONNECT.
    will: Option<Box<Will>>,
    /// Uplink publishes decoded from the client, for the worker.
    to_uplink: Vec<uplink::Job>,
    /// The connection's uplink worker, started on its first uplink publish,
    /// and the acknowledgements it sends back, in PUBLISH order. Made only
    /// then: the channel allocates its first block (~13 KiB) up front, and
    /// most connections never publish to the uplink.
    uplink: Option<(mpsc::Sender<uplink::Job>, mpsc::Receiver<Packet>)>,
    /// Filters granted on this connection (bounded by `max_subscriptions`).
    subscriptions: std::collections::HashSet<String>,
    /// Inbound packets per second: a flood ends the connection.
    inbound: governor::DefaultDirectRateLimiter,
    /// SUBSCRIBEs being answered, by packet id: one slot per filter of the
    /// client's packet, `Some` for those the gateway already refused.
    pending_subacks: HashMap<u16, Vec<Option<SubscribeReasonCode>>>,
    /// QoS 1 deliveries written and not yet acknowledged, and since when
    /// none was. A client that stops reading may never block a write (the
    /// 100 deliveries in flight fit in the socket buffers), but it stops
    /// acknowledging: no PUBACK for `write_timeout` ends the connection.
    unacked: usize,
    ack_wait_since: Option<Instant>,
    /// Counts this connection against its user's cap while it lives.
    _user_slot: Slot<u64>,
}

/// A connection's delivery state.
struct Direct {
    mailbox: Arc<Mailbox>,
    flight: Flight,
}

/// A connection's QoS 1 deliveries in flight.
struct Flight {
    /// Packet ids of QoS 1 deliveries written and not yet acknowledged,
    /// oldest first, each with the inbox cursors it stands for (a
    /// persistent session's stored events: its own, or the range a
    /// `sync.required` skips).
    inflight: VecDeque<(u16, Option<(u64, u64)>)>,
    /// Most QoS 1 deliveries unacknowledged at once: the server's limit, or
    /// the client's receive maximum (MQTT 5) when that is lower.
    window: usize,
    last_pkid: u16,
    /// Largest packet the client accepts (MQTT 5); larger deliveries are
    /// dropped, as the spec says (§3.1.2.11.4).
    max_packet: Option<u32>,
    /// A PUBACK freed a slot since the mailbox was last drained: what waits
    /// there may go now.
    opened: bool,
}

impl Flight {
    fn next_pkid(&mut self) -> u16 {
        loop {
            self.last_pkid = self.last_pkid.checked_add(1).unwrap_or(1);
            if !self.inflight.iter().any(|(p, _)| *p == self.last_pkid) {
                return self.last_pkid;
            }
        }
    }
}

impl<S> Connection<S>
where
    S: AsyncRead + AsyncWrite + Unpin + Send,
{
    async fn run(&mut self) -> Result<Ended, ConnError> {
        let shared = self.shared.clone();
        let registration = shared.registry.register(
            self.principal.user_id,
            self.principal.session_id,
            self.session_id.clone(),
            Some(self.direct.mailbox.clone()),
        );
        let kick = registration.kick.clone();
        metrics::gauge!(crate::metrics::CONNECTIONS).increment(1.0);
        // Registered first: from now on every push reaches the mailbox, so
        // the replay, which reads the store after this, leaves no gap.
        self.start_replay();
        let result = self.event_loop(&kick).await;
        metrics::gauge!(crate::metrics::CONNECTIONS).decrement(1.0);
        metrics::gauge!(crate::metrics::SUBSCRIPTIONS).decrement(self.subscriptions.len() as f64);
        match (result, registration.kick_reason()) {
            (Ok(Ended::Kicked), Some(why)) => Ok(Ended::KickedFor(why)),
            (r, _) => r,
        }
    }

    async fn event_loop(
        &mut self,
        kick: &tokio_util::sync::CancellationToken,
    ) -> Result<Ended, ConnError> {
        // Packets that arrived together with CONNECT.
        let early = self.handle_input()?;
        self.save_subscriptions().await?;
        self.deliver().await?;
        self.forward_to_uplink().await?;
        self.flush().await?;
        if let Some(end) = early {
            return Ok(end);
        }
        let mut deadline = self.keep_alive.map(|k| Instant::now() + k);
        loop {
            let ack_deadline = self
                .ack_wait_since
                .map(|since| since + self.shared.settings.write_timeout);
            // One timer for both limits: each is a timer entry in the task
            // that every connection keeps.
            let timer = match (deadline, ack_deadline) {
                (Some(a), Some(b)) => Some(a.min(b)),
                (a, b) => a.or(b),
            };
            let expired = async {
                match timer {
                    Some(d) => tokio::time::sleep_until(d).await,
                    None => std::future::pending().await,
                }
            };
            // The branches only decide; what awaits (forwarding to the
            // uplink, flushing) comes after the `select!`, whose futures
            // would otherwise stay in the task's state alongside.
            let step = tokio::select! {
                _ = kick.cancelled() => return Ok(Ended::Kicked),
                _ = expired => {
                    let now = Instant::now();
                    if deadline.is_some_and(|d| d <= now) {
                        return Err(ConnError::KeepAlive);
                    }
                    return Err(ConnError::Violation("client stopped acknowledging"));
                }
                ack = uplink_ack(&mut self.uplink) => {
                    self.write(*ack)?;
                    Step::Wrote
                }
                read = self.stream.read_buf(&mut self.inbuf) => {
                    if read? == 0 {
                        return Ok(Ended::ClientClosed);
                    }
                    deadline = self.keep_alive.map(|k| Instant::now() + k);
                    Step::Read(self.handle_input()?)
                }
                _ = self.direct.mailbox.ready() => Step::Delivered,
            };
            match step {
                // The uplink worker put the reply in the mailbox just before
                // this PUBACK: both, and any other answer ready by now, go
                // out in one write.
                Step::Wrote | Step::Delivered => {
                    self.write_ready_acks()?;
                    self.deliver().await?;
                }
                Step::Read(end) => {
                    self.save_subscriptions().await?;
                    self.forward_to_uplink().await?;
                    if let Some(end) = end {
                        self.flush().await?;
                        return Ok(end);
                    }
                    // PUBACKs may have opened the window.
                    if std::mem::take(&mut self.direct.flight.opened) {
                        self.deliver().await?;
                    }
                }
            }
            self.note_progress();
            self.flush().await?;
        }
    }

    async fn finish(&mut self, result: Result<Ended, ConnError>) {
        let user_id = self.principal.user_id;
        let reason = match &result {
            Ok(Ended::KickedFor(KickReason::SessionEnded)) => {
                Some(DisconnectReasonCode::NotAuthorized)
            }
            Ok(Ended::KickedFor(KickReason::ServerShutdown)) => {
                Some(DisconnectReasonCode::ServerShuttingDown)
            }
            Ok(Ended::KickedFor(KickReason::TakenOver)) => {
                Some(DisconnectReasonCode::SessionTakenOver)
            }
            Err(ConnError::FellBehind(_)) => Some(DisconnectReasonCode::QuotaExceeded),
            Err(ConnError::KeepAlive) => Some(DisconnectReasonCode::KeepAliveTimeout),
            Err(ConnError::RateLimited) => Some(DisconnectReasonCode::MessageRateTooHigh),
            Err(ConnError::Protocol(_)) => Some(DisconnectReasonCode::MalformedPacket),
            Err(ConnError::Violation(_)) => Some(DisconnectReasonCode::ProtocolError),
            Err(ConnError::NotOffered { reason, .. }) => Some(*reason),
            _ => None,
        };
        if let (Version::V5, Some(reason_code)) = (self.version, reason) {
            let _ = self.write(Packet::Disconnect(Disconnect { reason_code }, None));
            let _ = tokio::time::timeout(Duration::from_millis(200), self.flush()).await;
        }
        let _ = tokio::time::timeout(Duration::from_millis(200), self.stream.shutdown()).await;
        let taken_over = matches!(result, Ok(Ended::KickedFor(KickReason::TakenOver)));
        // A normal DISCONNECT (not 0x04, "with will") discards the will
        // (MQTT-3.1.2-10); any other end publishes it.
        let will = self.will.take();
        if !matches!(result, Ok(Ended::ClientDisconnected)) {
            if let Some(will) = will {
                self.publish_will(*will);
            }
        }
        self.end_session(taken_over).await;
        match result {
            Ok(end) => info!(user_id, client_id = %self.client_id, ?end, "client disconnected"),
            Err(e) => info!(user_id, client_id = %self.client_id, error = %e, "client dropped"),
        }
    }
}

/// Highest QoS a client may publish at, as the MQTT 5 CONNACK says: a
/// client's publishes are never forwarded, so QoS 2's exchange buys nothing.
const MAX_QOS: u8 = 1;

/// Topic aliases the server accepts from an MQTT 5 client: none.
const TOPIC_ALIAS_MAX: u16 = 0;

/// Output buffer capacity a connection keeps after a flush.
const MAX_IDLE_OUTBUF: usize = 4 * 1024;

/// The next acknowledgement from the connection's uplink worker; never
/// when it has none. Boxed (a packet is 392 bytes): the results of a
/// `select!`'s branches share a slot in the task's state.
async fn uplink_ack(
    uplink: &mut Option<(mpsc::Sender<uplink::Job>, mpsc::Receiver<Packet>)>,
) -> Box<Packet> {
    if let Some((_, acks)) = uplink {
        if let Some(ack) = acks.recv().await {
            return Box::new(ack);
        }
    }
    std::future::pending().await
}

/// The per-connection inbound packet budget from the settings.
fn shared_packet_quota(shared: &Shared) -> governor::Quota {
    let per_sec = std::num::NonZeroU32::new(shared.settings.max_packets_per_sec.max(1))
        .unwrap_or(std::num::NonZeroU32::MIN);
    let burst = std::num::NonZeroU32::new(shared.settings.packet_burst.max(1))
        .unwrap_or(std::num::NonZeroU32::MIN);
    governor::Quota::per_second(per_sec).allow_burst(burst)
}

/// What a turn of the event loop did, for the part of it that awaits.
enum Step {
    /// An uplink acknowledgement was written.
    Wrote,
    /// Input was handled; the connection ends if it says so.
    Read(Option<Ended>),
    /// The mailbox has deliveries to write.
    Delivered,
}

/// How a connection ended without a protocol error.
#[derive(Debug, Clone, Copy)]
enum Ended {
    ClientClosed,
    /// A DISCONNECT that discards the will.
    ClientDisconnected,
    /// An MQTT 5 DISCONNECT 0x04: "disconnect with will message".
    ClientDisconnectedWithWill,
    Kicked,
    KickedFor(KickReason),
}

/// The session's id for a user's client id. Users share one broker (and
/// one store), so ids are namespaced by user: one user's "phone" can never
/// take over or resume another's. `+ $ # /` (and `%`, the escape) are
/// percent-encoded; the mapping is injective.
pub(crate) fn namespaced_client_id(user_id: u64, client_id: &str) -> String {
    let mut out = format!("{user_id}|");
    for c in client_id.chars() {
        match c {
            '+' | '$' | '#' | '/' | '%' => out.push_str(&format!("%{:02X}", c as u32)),
            c => out.push(c),
        }
    }
    out
}

#[cfg(test)]
mod tests {
    use super::namespaced_client_id;

    #[test]
    fn client_ids_are_namespaced_and_escaped() {
        assert_eq!(namespaced_client_id(7, "phone"), "7|phone");
        assert_eq!(namespaced_client_id(7, "a/b#c"), "7|a%2Fb%23c");
        assert_ne!(
            namespaced_client_id(1, "2|x"),
            namespaced_client_id(12, "x")
        );
    }
}

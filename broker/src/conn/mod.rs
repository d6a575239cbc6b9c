//! One client connection: CONNECT checks, then a loop that moves authorized
//! packets between the socket and where its deliveries come from
//! ([`Downlink`]): a clean session's mailbox, or a persistent session's own
//! link into rumqttd's router.
//!
//! What the router sees from a persistent session is only what this file
//! forwards: SUBSCRIBE (allowed filters only, QoS capped at 1), UNSUBSCRIBE
//! and the PUBACKs for the router's own deliveries. A clean session sends the
//! router nothing: its filters go to its mailbox, and the PUBACKs close the
//! window this file keeps. PINGREQ, refused PUBLISHes and the protocol-level
//! checks are answered here, at the edge.
//!
//! # Layout
//! - `handshake`: CONNECT to CONNACK.
//! - `input`: packets from the client.
//! - `subscribe`: SUBSCRIBE, authorized filter by filter.
//! - `deliver`: deliveries and acknowledgements to the client.

mod deliver;
mod handshake;
mod input;
mod subscribe;

use std::collections::{HashMap, VecDeque};
use std::net::IpAddr;
use std::sync::Arc;
use std::time::Duration;

use bytes::BytesMut;
use futures_util::FutureExt;
use rumqttd::local::{LinkRx, LinkTx};
use rumqttd::protocol::{
    self, ConnAck, ConnAckProperties, ConnectReturnCode, Disconnect, DisconnectReasonCode, Packet,
    PingResp, PubAck, PubAckReason, PubComp, PubCompReason, PubRec, PubRecReason, Publish, QoS,
    SubAck, SubscribeProperties, SubscribeReasonCode, UnsubAck, UnsubAckReason,
};
use rumqttd::Notification;
use tokio::io::{AsyncRead, AsyncReadExt, AsyncWrite, AsyncWriteExt};
use tokio::time::Instant;
use tracing::{debug, info, warn};

use crate::acl::{self, FilterDenied};
use crate::auth::{Principal, Refusal};
use crate::codec::{self, Sniff, Version};
use crate::limits::Slot;
use crate::mailbox::{Granted, Mailbox};
use crate::registry::KickReason;
use crate::server::{LinkSpec, Shared};
use crate::uplink;
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
    #[error("router: {0}")]
    Router(String),
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
    /// The router's (namespaced) client id.
    router_id: Arc<str>,
    downlink: Downlink,
    /// Packets decoded from the client that go on to the router.
    to_router: Vec<Packet>,
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
    /// SUBSCRIBEs forwarded to the router, by packet id: one slot per filter
    /// of the client's packet, `Some` for those the gateway already refused.
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

/// Where a connection's deliveries come from.
enum Downlink {
    /// A persistent session: a link of its own into the router, which keeps
    /// the session's subscriptions and what it misses while away.
    Link(LinkTx, LinkRx),
    /// A clean session: no router state; pushes go straight into its
    /// mailbox (see `mailbox`), and the connection numbers its QoS 1
    /// deliveries.
    Mailbox(Direct),
}

/// A clean session's delivery state.
struct Direct {
    mailbox: Arc<Mailbox>,
    flight: Flight,
}

/// A clean session's QoS 1 deliveries in flight.
struct Flight {
    /// Packet ids of QoS 1 deliveries written and not yet acknowledged,
    /// oldest first.
    inflight: VecDeque<u16>,
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
            if !self.inflight.contains(&self.last_pkid) {
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
        let mailbox = match &self.downlink {
            Downlink::Mailbox(direct) => Some(direct.mailbox.clone()),
            Downlink::Link(..) => None,
        };
        let registration = shared.registry.register(
            self.principal.user_id,
            self.principal.session_id,
            self.router_id.clone(),
            mailbox,
        );
        let kick = registration.kick.clone();
        metrics::gauge!(crate::metrics::CONNECTIONS).increment(1.0);
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
        self.forward_to_router()?;
        self.drain_mailbox()?;
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
            // uplink, flushing, waking the router) comes after the
            // `select!`, whose futures would otherwise stay in the task's
            // state alongside.
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
                    let end = self.handle_input()?;
                    self.forward_to_router()?;
                    Step::Read(end)
                }
                down = next_downlink(&mut self.downlink) => match down? {
                    Down::Router(notification) => {
                        let (end, unscheduled) = self.drain_notifications(notification)?;
                        Step::Notified(end, unscheduled)
                    }
                    Down::Mailbox => Step::Delivered,
                },
            };
            match step {
                // The uplink worker put the reply in the mailbox just before
                // this PUBACK: both, and any other answer ready by now, go
                // out in one write.
                Step::Wrote => {
                    self.write_ready_acks()?;
                    self.deliver_from_mailbox().await?;
                }
                Step::Read(end) => {
                    self.forward_to_uplink().await?;
                    if let Some(end) = end {
                        self.flush().await?;
                        return Ok(end);
                    }
                    // PUBACKs may have opened the window.
                    if let Downlink::Mailbox(Direct { flight, .. }) = &mut self.downlink {
                        if std::mem::take(&mut flight.opened) {
                            self.deliver_from_mailbox().await?;
                        }
                    }
                }
                Step::Delivered => {
                    self.write_ready_acks()?;
                    self.deliver_from_mailbox().await?;
                }
                Step::Notified(end, unscheduled) => {
                    if let Some(end) = end {
                        self.flush().await?;
                        return Ok(end);
                    }
                    if let (true, Downlink::Link(_, link_rx)) = (unscheduled, &self.downlink) {
                        // Rare (the client's deliveries in flight were at the
                        // limit), and the wake-up's future is 840 bytes:
                        // boxed, it does not size every connection's task.
                        Box::pin(link_rx.wake())
                            .await
                            .map_err(|e| ConnError::Router(e.to_string()))?;
                    }
                    self.release_link_queue();
                }
            }
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
        // Tell the router the link is gone, unless the router ended it. A
        // DISCONNECT through the link is how a local link leaves the router:
        // it drops the connection (and saves a persistent session's state).
        let router_ended = matches!(
            result,
            Ok(Ended::RouterDisconnected) | Err(ConnError::Router(_))
        );
        if let (false, Downlink::Link(link_tx, _)) = (router_ended, &mut self.downlink) {
            let disconnect = Disconnect {
                reason_code: DisconnectReasonCode::NormalDisconnection,
            };
            let _ = link_tx.send(Packet::Disconnect(disconnect, None)).await;
        }
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

/// The router's next notification. The link's error becomes text here: a
/// `LinkError` can hold a whole router event (800 bytes), and the results
/// of a `select!`'s branches share a slot in the task's state.
async fn next_notification(link_rx: &mut LinkRx) -> Result<Option<Notification>, ConnError> {
    link_rx
        .next()
        .await
        .map_err(|e| ConnError::Router(e.to_string()))
}

/// What woke a connection on its downlink.
#[expect(
    clippy::large_enum_variant,
    reason = "handed straight on; boxed, every router notification would be an allocation"
)]
enum Down {
    /// The router's next notification (a persistent session's link).
    Router(Option<Notification>),
    /// The mailbox has deliveries (a clean session).
    Mailbox,
}

async fn next_downlink(downlink: &mut Downlink) -> Result<Down, ConnError> {
    match downlink {
        Downlink::Link(_, link_rx) => next_notification(link_rx).await.map(Down::Router),
        Downlink::Mailbox(direct) => {
            direct.mailbox.ready().await;
            Ok(Down::Mailbox)
        }
    }
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
    /// Router notifications were handled; the connection ends if it says
    /// so, and the router must be woken if it unscheduled the link.
    Notified(Option<Ended>, bool),
    /// The mailbox has deliveries to write.
    Delivered,
}

/// How a connection ended without a protocol error.
#[derive(Debug, Clone, Copy)]
enum Ended {
    ClientClosed,
    ClientDisconnected,
    Kicked,
    KickedFor(KickReason),
    RouterDisconnected,
}

/// The router's client id for a user's client id. Users share one router, so
/// ids are namespaced by user: one user's "phone" can never take over
/// another's. The router refuses `+ $ # /` in ids, so those (and `%`, the
/// escape) are percent-encoded; the mapping is injective.
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

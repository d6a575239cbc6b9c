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
    /// Reads and checks CONNECT, answers CONNACK. `Ok(None)` when the
    /// connection was refused with a CONNACK.
    async fn handshake(
        shared: Arc<Shared>,
        mut stream: S,
        peer: Option<IpAddr>,
    ) -> Result<Option<Self>, ConnError> {
        let max = shared.settings.max_packet_size;
        let mut inbuf = BytesMut::with_capacity(512);
        let deadline = Instant::now() + shared.settings.connect_timeout;
        // Counted among its address's unauthenticated connections until the
        // CONNACK (this function's end).
        let waiting = peer.map(|addr| shared.unauthenticated.enter(addr));
        let evicted = async {
            match &waiting {
                Some(w) => w.evicted.cancelled().await,
                None => std::future::pending().await,
            }
        };
        tokio::pin!(evicted);
        let mut was_evicted = false;
        let version = loop {
            match codec::sniff(&inbuf, max) {
                Sniff::Incomplete => {}
                Sniff::Connect(v) => break v,
                Sniff::UnsupportedLevel(level) => {
                    // 3.1.1 §3.2.2.3: answer 0x01 and close.
                    let mut out = BytesMut::new();
                    let ack = ConnAck {
                        session_present: false,
                        code: ConnectReturnCode::RefusedProtocolVersion,
                    };
                    let _ = Version::V311.write(Packet::ConnAck(ack, None), &mut out);
                    stream.write_all(&out).await?;
                    stream.flush().await?;
                    debug!(level, "unsupported protocol level");
                    return Ok(None);
                }
                Sniff::NotConnect => {
                    return Err(ConnError::Violation("first packet is not CONNECT"))
                }
            }
            // Evicted (a newer connection from its address needed the
            // room), a connection goes on only while its bytes are already
            // there: each read gets one look, after the reactor has run
            // (`yield_now` defers until then). The CONNECTs of a reconnect
            // storm behind one address are there, waiting to be read; a
            // socket with nothing to say is closed.
            let n = if was_evicted {
                tokio::task::yield_now().await;
                match stream.read_buf(&mut inbuf).now_or_never() {
                    Some(read) => read?,
                    None => return Err(ConnError::Evicted),
                }
            } else {
                tokio::select! {
                    biased;
                    read = tokio::time::timeout_at(deadline, stream.read_buf(&mut inbuf)) => {
                        read.map_err(|_| ConnError::ConnectTimeout)??
                    }
                    _ = &mut evicted => {
                        was_evicted = true;
                        continue;
                    }
                }
            };
            if n == 0 {
                return Err(ConnError::Violation("closed before CONNECT"));
            }
        };
        let packet = version.read(&mut inbuf, max).map_err(ConnError::Protocol)?;
        let Packet::Connect(connect, props, will, will_props, login) = packet else {
            return Err(ConnError::Violation("first packet is not CONNECT"));
        };

        let refuse = |code: ConnectReturnCode| async move {
            let mut out = BytesMut::new();
            let ack = ConnAck {
                session_present: false,
                code,
            };
            let _ = version.write(Packet::ConnAck(ack, None), &mut out);
            (out, code)
        };

        // An MQTT 5 CONNECT asks what this server cannot honour: refused
        // before the credentials, as an authentication method changes what
        // they are (MQTT-4.12.0-1).
        if let Some(code) = props.as_ref().and_then(connect_refusal) {
            let (out, _) = refuse(code).await;
            stream.write_all(&out).await?;
            stream.flush().await?;
            info!(client_id = %connect.client_id, ?code, "CONNECT refused");
            return Ok(None);
        }

        let auth = match &login {
            Some(login) => shared
                .authenticator
                .authenticate(&login.username, login.password.as_bytes()),
            None => Err(Refusal::BadCredentials),
        };
        let principal = match auth {
            Ok(p) => p,
            Err(refusal) => {
                metrics::counter!(crate::metrics::AUTH_FAILURES_TOTAL).increment(1);
                let code = match refusal {
                    Refusal::BadCredentials => ConnectReturnCode::BadUserNamePassword,
                    Refusal::NotAuthorized => ConnectReturnCode::NotAuthorized,
                };
                let (out, _) = refuse(code).await;
                stream.write_all(&out).await?;
                stream.flush().await?;
                info!(client_id = %connect.client_id, %refusal, "CONNECT refused");
                return Ok(None);
            }
        };

        // A will is a publish made on the client's behalf, so it is held to
        // the same rule as any publish.
        if let Some(will) = &will {
            let allowed = acl::is_valid_topic_name(&will.topic)
                && std::str::from_utf8(&will.topic)
                    .is_ok_and(|t| shared.acl.may_publish(principal.user_id, t));
            if !allowed {
                let (out, _) = refuse(ConnectReturnCode::NotAuthorized).await;
                stream.write_all(&out).await?;
                stream.flush().await?;
                info!(
                    user_id = principal.user_id,
                    "CONNECT refused: will topic not allowed"
                );
                return Ok(None);
            }
        }

        let assigned = if connect.client_id.is_empty() {
            if !connect.clean_session {
                let (out, _) = refuse(ConnectReturnCode::ClientIdentifierNotValid).await;
                stream.write_all(&out).await?;
                stream.flush().await?;
                return Ok(None);
            }
            Some(format!("auto-{:016x}", rand::random::<u64>()))
        } else {
            None
        };
        let client_id = assigned.clone().unwrap_or(connect.client_id.clone());
        let router_client_id = namespaced_client_id(principal.user_id, &client_id);

        // A client id the user already has connected takes that connection
        // over (a phone back from a dead network): it may pass the cap, as
        // the one it replaces is about to go.
        let replaces = shared
            .registry
            .has_client(principal.user_id, &router_client_id);
        let Some(user_slot) = shared.user_slots.try_take(principal.user_id, replaces) else {
            metrics::counter!(crate::metrics::CONNECTIONS_REFUSED_TOTAL, "reason" => crate::metrics::REFUSED_USER_CAP)
                .increment(1);
            let (out, _) = refuse(version.quota_exceeded()).await;
            stream.write_all(&out).await?;
            stream.flush().await?;
            info!(
                user_id = principal.user_id,
                cap = shared.settings.max_connections_per_user,
                "CONNECT refused: the user has too many connections"
            );
            return Ok(None);
        };

        let topic_alias_max = props.as_ref().and_then(|p| p.topic_alias_max).unwrap_or(0);
        let clean = connect.clean_session;
        let built = if clean {
            // A will is accepted (its topic was checked above) and never
            // published, for clean and persistent sessions alike: a link
            // leaves the router by a DISCONNECT, which discards its will.
            drop((will, will_props));
            shared
                .discard_persistent(&router_client_id)
                .await
                .map(|()| None)
        } else {
            shared.note_persistent(&router_client_id, principal.user_id);
            shared
                .links
                .build(LinkSpec {
                    client_id: router_client_id.clone(),
                    clean_session: clean,
                    will,
                    will_props,
                    topic_alias_max,
                })
                .await
                .map(Some)
        };
        let built = match built {
            Ok(v) => v,
            Err(e) => {
                let (out, _) = refuse(version.unavailable()).await;
                stream.write_all(&out).await?;
                stream.flush().await?;
                return Err(ConnError::Router(e));
            }
        };
        let (downlink, session_present) = match built {
            Some((link_tx, link_rx, ack)) => {
                let present = matches!(
                    Option::<Packet>::from(ack),
                    Some(Packet::ConnAck(
                        ConnAck {
                            session_present: true,
                            ..
                        },
                        _
                    ))
                );
                (Downlink::Link(link_tx, link_rx), present)
            }
            None => {
                let settings = &shared.settings;
                let limit = usize::try_from(settings.max_inflight).unwrap_or(usize::MAX);
                let receive_max = props
                    .as_ref()
                    .and_then(|p| p.receive_maximum)
                    .filter(|&n| n > 0)
                    .map_or(limit, usize::from);
                let direct = Direct {
                    mailbox: Arc::new(Mailbox::new(settings.mailbox_size)),
                    flight: Flight {
                        inflight: VecDeque::new(),
                        window: limit.min(receive_max).max(1),
                        last_pkid: 0,
                        max_packet: props.as_ref().and_then(|p| p.max_packet_size),
                        opened: false,
                    },
                };
                (Downlink::Mailbox(direct), false)
            }
        };

        // Sized by what is written: an idle connection holds a few bytes.
        let mut outbuf = BytesMut::new();
        let props = (version == Version::V5).then(|| ConnAckProperties {
            assigned_client_identifier: assigned,
            max_qos: Some(MAX_QOS),
            retain_available: Some(0),
            shared_subscription_available: Some(0),
            wildcard_subscription_available: Some(1),
            subscription_identifiers_available: Some(1),
            topic_alias_max: Some(TOPIC_ALIAS_MAX),
            ..Default::default()
        });
        let ack = ConnAck {
            session_present,
            code: ConnectReturnCode::Success,
        };
        version
            .write(Packet::ConnAck(ack, props), &mut outbuf)
            .map_err(ConnError::Protocol)?;
        stream.write_all(&outbuf).await?;
        stream.flush().await?;
        outbuf.clear();

        let keep_alive = (connect.keep_alive > 0)
            .then(|| Duration::from_millis(u64::from(connect.keep_alive) * 1500));
        info!(
            user_id = principal.user_id,
            client_id = %client_id,
            ?version,
            keep_alive = connect.keep_alive,
            clean_session = clean,
            "client connected"
        );
        let quota = shared_packet_quota(&shared);
        let clock = shared.clock.clone();
        Ok(Some(Connection {
            shared,
            stream,
            version,
            principal,
            client_id,
            keep_alive,
            inbuf,
            outbuf,
            router_id: router_client_id.into(),
            downlink,
            to_router: Vec::new(),
            to_uplink: Vec::new(),
            subscriptions: std::collections::HashSet::new(),
            inbound: governor::RateLimiter::direct_with_clock(quota, clock),
            uplink: None,
            pending_subacks: HashMap::new(),
            unacked: 0,
            ack_wait_since: None,
            _user_slot: user_slot,
        }))
    }

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

    /// Handles `first` and whatever else the router has ready, so one flush
    /// carries a batch. Returns how the connection ends, if it does, and
    /// whether the router unscheduled it (it must be woken).
    fn drain_notifications(
        &mut self,
        first: Option<Notification>,
    ) -> Result<(Option<Ended>, bool), ConnError> {
        let mut unscheduled = false;
        let mut next = first;
        loop {
            if let Some(n) = next {
                if let Some(end) = self.handle_notification(n, &mut unscheduled)? {
                    return Ok((Some(end), unscheduled));
                }
            }
            if self.outbuf.len() > 64 * 1024 {
                break;
            }
            let Downlink::Link(_, link_rx) = &mut self.downlink else {
                break;
            };
            match link_rx.next().now_or_never() {
                Some(Ok(n)) => next = n,
                Some(Err(e)) => return Err(ConnError::Router(e.to_string())),
                None => break,
            }
        }
        Ok((None, unscheduled))
    }

    /// Writes what the mailbox holds, as far as the window of QoS 1
    /// deliveries allows, flushing every 64 KiB.
    async fn deliver_from_mailbox(&mut self) -> Result<(), ConnError> {
        while self.drain_mailbox()? {
            self.flush().await?;
        }
        Ok(())
    }

    /// Takes deliveries from a clean session's mailbox into the output
    /// buffer while the window of unacknowledged QoS 1 deliveries has room.
    /// Returns whether it stopped only because the buffer is full (there is
    /// more to take once it is flushed).
    fn drain_mailbox(&mut self) -> Result<bool, ConnError> {
        let Connection {
            downlink: Downlink::Mailbox(Direct { mailbox, flight }),
            outbuf,
            version,
            unacked,
            ack_wait_since,
            shared,
            ..
        } = self
        else {
            return Ok(false);
        };
        let (mut written, mut dropped, mut buffer_full) = (0u64, 0u64, false);
        let mut failed = None;
        let taken = mailbox.take(|d| {
            if outbuf.len() >= 64 * 1024 {
                buffer_full = true;
                return false;
            }
            let qos1 = d.qos != QoS::AtMostOnce;
            if qos1 && flight.inflight.len() >= flight.window {
                return false;
            }
            let publish = Publish::new(d.topic.clone(), d.payload.clone(), false);
            let pkid = qos1.then(|| flight.next_pkid());
            let start = outbuf.len();
            if let Err(e) = version.write_publish(publish, d.properties.clone(), pkid, outbuf) {
                failed = Some(e);
                return false;
            }
            let too_large = flight
                .max_packet
                .is_some_and(|max| outbuf.len() - start > max as usize);
            if too_large {
                outbuf.truncate(start);
                dropped += 1;
            } else {
                if qos1 {
                    flight.inflight.push_back(flight.last_pkid);
                }
                written += 1;
            }
            true
        });
        if let Some(e) = failed {
            return Err(ConnError::Protocol(e));
        }
        if taken.is_err() {
            return Err(ConnError::FellBehind(shared.settings.mailbox_size));
        }
        if dropped > 0 {
            debug!(
                dropped,
                "deliveries over the client's maximum packet size dropped"
            );
        }
        if written > 0 {
            metrics::counter!(crate::metrics::DELIVERIES_TOTAL).increment(written);
        }
        if flight.inflight.len() > *unacked {
            ack_wait_since.get_or_insert_with(Instant::now);
        }
        *unacked = flight.inflight.len();
        if flight.inflight.is_empty() && flight.inflight.capacity() > 0 {
            flight.inflight = VecDeque::new();
        }
        Ok(buffer_full)
    }

    /// Swaps the link's input queue for an unallocated one when the router
    /// has taken everything in it. The router trades the queue for its own
    /// on every batch, so a link would keep whichever queue it was handed
    /// last, written to: rumqttd's first ones have room for 200 packets
    /// (78 KiB, 4 KiB of it resident), later ones what a client's batch
    /// needed (1.8 KiB for a SUBSCRIBE). Called once the router has
    /// answered, which it does after taking the queue; costs an allocation
    /// per batch a client sends, from the thread's cache.
    fn release_link_queue(&self) {
        let Downlink::Link(link_tx, _) = &self.downlink else {
            return;
        };
        let idle = {
            let mut queue = link_tx.buffer();
            if !queue.is_empty() || queue.capacity() == 0 {
                return;
            }
            std::mem::take(&mut *queue)
        };
        // Freed outside the router's lock.
        drop(idle);
    }

    async fn flush(&mut self) -> Result<(), ConnError> {
        if !self.outbuf.is_empty() {
            let timeout = self.shared.settings.write_timeout;
            let write = async {
                self.stream.write_all(&self.outbuf).await?;
                // WebSocket streams send on flush.
                self.stream.flush().await
            };
            tokio::time::timeout(timeout, write)
                .await
                .map_err(|_| ConnError::Violation("client stopped reading"))??;
            if self.outbuf.capacity() > MAX_IDLE_OUTBUF {
                // A burst's buffer is not kept by a connection gone quiet.
                self.outbuf = BytesMut::new();
            } else {
                self.outbuf.clear();
            }
        }
        Ok(())
    }

    /// Writes the uplink acknowledgements already waiting, without waiting
    /// for more.
    fn write_ready_acks(&mut self) -> Result<(), ConnError> {
        while let Some(ack) = self
            .uplink
            .as_mut()
            .and_then(|(_, acks)| acks.try_recv().ok())
        {
            self.write(ack)?;
        }
        Ok(())
    }

    fn write(&mut self, packet: Packet) -> Result<(), ConnError> {
        self.version
            .write(packet, &mut self.outbuf)
            .map(|_| ())
            .map_err(ConnError::Protocol)
    }

    /// Decodes every complete packet in the input buffer and acts on it.
    fn handle_input(&mut self) -> Result<Option<Ended>, ConnError> {
        let max = self.shared.settings.max_packet_size;
        loop {
            let publish_ids = codec::peek_publish(&self.inbuf, max);
            let packet = match self.version.read(&mut self.inbuf, max) {
                Ok(p) => p,
                Err(protocol::Error::InsufficientBytes(_)) => break,
                Err(e) => return Err(ConnError::Protocol(e)),
            };
            // Acks answer our own deliveries and are bounded by them; only
            // what the client starts counts against its budget.
            let initiated = !matches!(
                packet,
                Packet::PubAck(..) | Packet::PubRec(..) | Packet::PubComp(..)
            );
            let limited = self.shared.settings.max_packets_per_sec > 0;
            if initiated && limited && self.inbound.check().is_err() {
                crate::metrics::rate_limited(crate::metrics::Limit::MqttPackets);
                return Err(ConnError::RateLimited);
            }
            match packet {
                Packet::PingReq(_) => self.write(Packet::PingResp(PingResp))?,
                Packet::Subscribe(sub, props) => {
                    if let Some(fwd) = self.authorize_subscribe(sub)? {
                        match self.downlink {
                            Downlink::Link(..) => {
                                self.to_router.push(Packet::Subscribe(fwd, props))
                            }
                            Downlink::Mailbox(_) => self.subscribe_mailbox(fwd, props)?,
                        }
                    }
                }
                Packet::Unsubscribe(unsub, props) => {
                    for f in &unsub.filters {
                        if self.subscriptions.remove(f) {
                            metrics::gauge!(crate::metrics::SUBSCRIPTIONS).decrement(1.0);
                        }
                    }
                    // The router answers only for filters it knew, one ack per
                    // filter; the client is owed exactly one UNSUBACK, so the
                    // gateway answers and drops the router's.
                    let reasons = vec![UnsubAckReason::Success; unsub.filters.len()];
                    let pkid = unsub.pkid;
                    match &self.downlink {
                        Downlink::Link(..) => {
                            self.to_router.push(Packet::Unsubscribe(unsub, props));
                        }
                        Downlink::Mailbox(direct) => {
                            for f in &unsub.filters {
                                direct.mailbox.unsubscribe(f);
                            }
                        }
                    }
                    self.write(Packet::UnsubAck(UnsubAck { pkid, reasons }, None))?;
                }
                Packet::Publish(publish, props) => {
                    let (qos, pkid) = publish_ids.unwrap_or((0, 0));
                    if self.version == Version::V5 {
                        not_offered(qos, publish.retain, props.as_ref())?;
                    }
                    if !acl::is_valid_topic_name(&publish.topic) {
                        return Err(ConnError::Violation("invalid topic name in PUBLISH"));
                    }
                    match self.uplink_subtopic(&publish.topic) {
                        Some(subtopic) => {
                            let props = props.unwrap_or_default();
                            self.to_uplink.push(uplink::Job {
                                subtopic,
                                payload: publish.payload,
                                qos,
                                pkid,
                                response_topic: props.response_topic,
                                correlation_data: props.correlation_data,
                            });
                        }
                        None => self.refuse_publish(qos, pkid, &publish.topic)?,
                    }
                }
                Packet::PubAck(ack, props) => match &mut self.downlink {
                    Downlink::Link(..) => {
                        self.unacked = self.unacked.saturating_sub(1);
                        self.ack_wait_since = (self.unacked > 0).then(Instant::now);
                        self.to_router.push(Packet::PubAck(ack, props));
                    }
                    Downlink::Mailbox(Direct { flight, .. }) => {
                        // An id not in flight (acknowledged twice) is ignored.
                        if let Some(i) = flight.inflight.iter().position(|&p| p == ack.pkid) {
                            flight.inflight.remove(i);
                            flight.opened = true;
                            self.unacked = flight.inflight.len();
                            self.ack_wait_since = (self.unacked > 0).then(Instant::now);
                        }
                    }
                },
                Packet::PubRel(rel, _) => {
                    // Ends a QoS 2 PUBLISH that was refused or handed to the uplink.
                    let comp = PubComp {
                        pkid: rel.pkid,
                        reason: PubCompReason::Success,
                    };
                    self.write(Packet::PubComp(comp, None))?;
                }
                Packet::Disconnect(..) => return Ok(Some(Ended::ClientDisconnected)),
                Packet::Connect(..) => {
                    // 3.1.1 §3.1.0-2: a second CONNECT is a protocol violation.
                    return Err(ConnError::Violation("second CONNECT"));
                }
                Packet::PubRec(..) | Packet::PubComp(..) => {
                    return Err(ConnError::Violation(
                        "QoS 2 ack for a delivery the server never sent at QoS 2",
                    ));
                }
                Packet::ConnAck(..)
                | Packet::SubAck(..)
                | Packet::UnsubAck(..)
                | Packet::PingResp(_) => {
                    return Err(ConnError::Violation(
                        "server-to-client packet sent by client",
                    ));
                }
            }
        }
        Ok(None)
    }

    /// The subtopic below `users/{id}/` when this publish goes to the uplink
    /// handler (an open subtree, and a handler installed).
    fn uplink_subtopic(&self, topic: &[u8]) -> Option<String> {
        self.shared.uplink.get()?;
        let topic = std::str::from_utf8(topic).ok()?;
        let user = self.principal.user_id;
        if !self.shared.acl.may_publish(user, topic) {
            return None;
        }
        topic
            .strip_prefix(&format!("users/{user}/"))
            .map(str::to_owned)
    }

    /// Queues uplink publishes for the connection's worker. Waiting here when
    /// the queue is full stops reading from this client: backpressure.
    async fn forward_to_uplink(&mut self) -> Result<(), ConnError> {
        if self.to_uplink.is_empty() {
            return Ok(());
        }
        // Only clients that publish get here: boxed, the wait's state does
        // not size the task of every connection.
        Box::pin(self.queue_uplink()).await
    }

    async fn queue_uplink(&mut self) -> Result<(), ConnError> {
        let worker = match &self.uplink {
            Some((w, _)) => w.clone(),
            None => {
                let (acks, acked) = mpsc::channel(64);
                let w = uplink::spawn_worker(self.shared.clone(), self.principal, acks);
                self.uplink = Some((w.clone(), acked));
                w
            }
        };
        for job in self.to_uplink.drain(..) {
            worker
                .send(job)
                .await
                .map_err(|_| ConnError::Router("uplink worker stopped".into()))?;
        }
        Ok(())
    }

    /// Hands the packets collected by `handle_input` to the router: all but
    /// the last go straight into the link's buffer, the last one is sent with
    /// the wake-up, so a batch costs one router event. The batch's vector is
    /// dropped with it (four packets are 1.5 KiB an idle connection would
    /// keep).
    ///
    /// Synchronous: `LinkTx::send` is an async fn that never awaits (its
    /// channel send blocks when the router's queue is full, as it always
    /// did), so it completes on its first poll; awaited, its 448-byte state
    /// would be part of every connection's task.
    fn forward_to_router(&mut self) -> Result<(), ConnError> {
        let mut batch = std::mem::take(&mut self.to_router);
        let Some(last) = batch.pop() else {
            return Ok(());
        };
        let Downlink::Link(link_tx, _) = &mut self.downlink else {
            // Nothing is queued for the router without a link.
            return Ok(());
        };
        link_tx.buffer().extend(batch);
        match link_tx.send(last).now_or_never() {
            Some(sent) => sent
                .map(|_| ())
                .map_err(|e| ConnError::Router(e.to_string())),
            None => Err(ConnError::Router("link send did not complete".into())),
        }
    }

    /// Checks each filter; returns the SUBSCRIBE to forward to the router
    /// (allowed filters only), or answers SUBACK directly when none is allowed.
    fn authorize_subscribe(
        &mut self,
        mut sub: protocol::Subscribe,
    ) -> Result<Option<protocol::Subscribe>, ConnError> {
        let user_id = self.principal.user_id;
        let mut slots = Vec::with_capacity(sub.filters.len());
        let mut allowed = Vec::with_capacity(sub.filters.len());
        let max_filters = self.shared.settings.max_filters_per_subscribe;
        let max_subscriptions = self.shared.settings.max_subscriptions;
        for (i, mut filter) in sub.filters.drain(..).enumerate() {
            let over_quota = i >= max_filters
                || (!self.subscriptions.contains(&filter.path)
                    && self.subscriptions.len() >= max_subscriptions);
            if over_quota {
                metrics::counter!(crate::metrics::SUBSCRIBE_QUOTA_TOTAL).increment(1);
                slots.push(Some(match self.version {
                    Version::V311 => SubscribeReasonCode::Failure,
                    Version::V5 => SubscribeReasonCode::QuotaExceeded,
                }));
                continue;
            }
            match self.shared.acl.check_subscribe(user_id, &filter.path) {
                Ok(()) => {
                    if self.subscriptions.insert(filter.path.clone()) {
                        metrics::gauge!(crate::metrics::SUBSCRIPTIONS).increment(1.0);
                    }
                    // Every push is published at QoS 1, so a QoS 2
                    // subscription is granted QoS 1: delivery QoS is
                    // min(publish, subscription) by construction.
                    if filter.qos == QoS::ExactlyOnce {
                        filter.qos = QoS::AtLeastOnce;
                    }
                    slots.push(None);
                    allowed.push(filter);
                }
                Err(denied) => {
                    metrics::counter!(crate::metrics::SUBSCRIBE_DENIED_TOTAL).increment(1);
                    warn!(user_id, filter = %filter.path, ?denied, "subscription refused");
                    slots.push(Some(self.refusal_code(denied)));
                }
            }
        }
        if allowed.is_empty() {
            let return_codes = slots.into_iter().flatten().collect();
            self.write(Packet::SubAck(
                SubAck {
                    pkid: sub.pkid,
                    return_codes,
                },
                None,
            ))?;
            return Ok(None);
        }
        self.pending_subacks.insert(sub.pkid, slots);
        sub.filters = allowed;
        Ok(Some(sub))
    }

    /// A clean session's SUBSCRIBE (the filters the gateway allowed): the
    /// mailbox takes the filters, and the gateway answers.
    fn subscribe_mailbox(
        &mut self,
        sub: protocol::Subscribe,
        props: Option<SubscribeProperties>,
    ) -> Result<(), ConnError> {
        let Downlink::Mailbox(direct) = &self.downlink else {
            return Ok(());
        };
        let id = props.as_ref().and_then(|p| p.id);
        if id == Some(0) {
            // MQTT 5 §3.8.2.1.2: 0 is not a subscription identifier.
            return Err(ConnError::Violation("subscription identifier 0"));
        }
        let granted = sub
            .filters
            .into_iter()
            .map(|f| {
                let code = match f.qos {
                    QoS::AtMostOnce => SubscribeReasonCode::QoS0,
                    _ => SubscribeReasonCode::QoS1,
                };
                direct.mailbox.subscribe(Granted {
                    filter: f.path,
                    qos: f.qos,
                    id,
                });
                code
            })
            .collect();
        self.answer_subscribe(sub.pkid, granted, None)
    }

    /// Writes the SUBACK of a SUBSCRIBE: the codes of the filters the gateway
    /// refused, in their places among those `granted` (in order) for the
    /// filters it allowed.
    fn answer_subscribe(
        &mut self,
        pkid: u16,
        granted: Vec<SubscribeReasonCode>,
        props: Option<protocol::SubAckProperties>,
    ) -> Result<(), ConnError> {
        let slots = self.pending_subacks.remove(&pkid);
        if self.pending_subacks.is_empty() {
            // Its table would otherwise stay allocated for good.
            self.pending_subacks = HashMap::new();
        }
        let return_codes = match slots {
            Some(slots) => {
                let mut granted = granted.into_iter();
                slots
                    .into_iter()
                    .map(|slot| {
                        slot.or_else(|| granted.next())
                            .unwrap_or(SubscribeReasonCode::Failure)
                    })
                    .collect()
            }
            None => granted,
        };
        self.write(Packet::SubAck(SubAck { pkid, return_codes }, props))
    }

    fn refusal_code(&self, denied: FilterDenied) -> SubscribeReasonCode {
        match (self.version, denied) {
            (Version::V311, _) => SubscribeReasonCode::Failure,
            (Version::V5, FilterDenied::Invalid) => SubscribeReasonCode::TopicFilterInvalid,
            (Version::V5, FilterDenied::NotAuthorized) => SubscribeReasonCode::NotAuthorized,
        }
    }

    /// No client publish reaches the router. MQTT 3.1.1 §3.3.5 lets a server
    /// either acknowledge an unauthorized PUBLISH normally or close the
    /// connection; we acknowledge (so a misbehaving app does not reconnect in
    /// a loop) and drop it. MQTT 5 gets the 0x87 "not authorized" reason.
    fn refuse_publish(&mut self, qos: u8, pkid: u16, topic: &[u8]) -> Result<(), ConnError> {
        metrics::counter!(crate::metrics::PUBLISH_DENIED_TOTAL).increment(1);
        debug!(
            user_id = self.principal.user_id,
            topic = %String::from_utf8_lossy(topic),
            qos,
            "publish refused"
        );
        let v5 = self.version == Version::V5;
        match qos {
            1 => self.write(Packet::PubAck(
                PubAck {
                    pkid,
                    reason: if v5 {
                        PubAckReason::NotAuthorized
                    } else {
                        PubAckReason::Success
                    },
                },
                None,
            )),
            2 => self.write(Packet::PubRec(
                PubRec {
                    pkid,
                    reason: if v5 {
                        PubRecReason::NotAuthorized
                    } else {
                        PubRecReason::Success
                    },
                },
                None,
            )),
            _ => Ok(()),
        }
    }

    fn handle_notification(
        &mut self,
        notification: Notification,
        unscheduled: &mut bool,
    ) -> Result<Option<Ended>, ConnError> {
        match notification {
            Notification::Forward(forward) => {
                metrics::counter!(crate::metrics::DELIVERIES_TOTAL).increment(1);
                let start = self.outbuf.len();
                self.write(Packet::Publish(forward.publish, forward.properties))?;
                // The delivery's QoS (set by the router) is in the fixed
                // header; rumqttd keeps the field private.
                if self.outbuf.get(start).is_some_and(|h| h & 0b0110 != 0) {
                    self.unacked += 1;
                    self.ack_wait_since.get_or_insert_with(Instant::now);
                }
            }
            Notification::DeviceAck(ack) => match Packet::from(ack) {
                Packet::SubAck(suback, props) => {
                    self.answer_subscribe(suback.pkid, suback.return_codes, props)?;
                }
                Packet::UnsubAck(..) | Packet::PingResp(_) | Packet::ConnAck(..) => {}
                other => self.write(other)?,
            },
            Notification::Unschedule => *unscheduled = true,
            Notification::Disconnect(disconnect, props) => {
                if self.version == Version::V5 {
                    self.write(Packet::Disconnect(disconnect, props))?;
                }
                return Ok(Some(Ended::RouterDisconnected));
            }
            other => debug!(?other, "ignored router notification"),
        }
        Ok(None)
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

/// Why an MQTT 5 CONNECT is refused before its credentials are looked at,
/// as the CONNACK code that says so; `None` when nothing is.
fn connect_refusal(props: &protocol::ConnectProperties) -> Option<ConnectReturnCode> {
    // No enhanced authentication: 0x8C, then close (MQTT-4.12.0-1).
    if props.authentication_method.is_some() {
        return Some(ConnectReturnCode::BadAuthenticationMethod);
    }
    // Authentication data without a method (§3.1.2.11.10), a Receive
    // Maximum or a Maximum Packet Size of 0 (§3.1.2.11.3, §3.1.2.11.4) are
    // protocol errors; 0x82 before closing (§4.13.2). A packet size of 0
    // would otherwise skip every delivery as too large.
    let zero = props.receive_maximum == Some(0) || props.max_packet_size == Some(0);
    if zero || props.authentication_data.is_some() {
        return Some(ConnectReturnCode::ProtocolError);
    }
    None
}

/// Refuses an MQTT 5 PUBLISH that uses what the CONNACK said the server
/// does not offer: a protocol error, with the reason code that names it
/// (MQTT-4.13.1-1, §3.2.2.3). Checked before the topic: with an alias, the
/// topic may be empty.
fn not_offered(
    qos: u8,
    retain: bool,
    props: Option<&protocol::PublishProperties>,
) -> Result<(), ConnError> {
    let refused = |what, reason| Err(ConnError::NotOffered { what, reason });
    // 0 is never an alias (§3.3.2.3.4); any other is above the maximum, 0.
    if props
        .and_then(|p| p.topic_alias)
        .is_some_and(|alias| alias == 0 || alias > TOPIC_ALIAS_MAX)
    {
        return refused("topic alias", DisconnectReasonCode::TopicAliasInvalid);
    }
    if qos > MAX_QOS {
        return refused(
            "QoS above Maximum QoS",
            DisconnectReasonCode::QoSNotSupported,
        );
    }
    if retain {
        return refused("RETAIN", DisconnectReasonCode::RetainNotSupported);
    }
    Ok(())
}

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

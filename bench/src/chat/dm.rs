//! **dm**: N senders over HTTP keep-alive (HTTP/1.1 one request at a time,
//! each one send or a batch of them, or HTTP/2 with a window of streams) or
//! over the MQTT uplink, M receivers
//! online over MQTT at QoS 1. Fixed rates, then saturation; every
//! acknowledged send must reach its recipient exactly once.

use std::collections::HashMap;
use std::sync::atomic::{AtomicBool, AtomicU64, Ordering};
use std::sync::{Arc, Mutex};
use std::time::{Duration, Instant};

use anyhow::{bail, Result};
use bytes::Bytes;
use serde::{Deserialize, Serialize};
use tokio::task::JoinSet;

use super::chatd::{BenchUser, Chatd};
use super::{http1, http2, mqtt, progress, Clock};
use crate::stats::Latency;

#[derive(Debug, Clone, Serialize)]
pub struct DmConfig {
    pub senders: usize,
    pub receivers: usize,
    pub rates: Vec<u64>,
    pub rate_secs: f64,
    pub saturation_secs: f64,
    pub text_bytes: usize,
    /// How the senders send.
    pub uplink: Uplink,
    /// MQTT uplink: sends in flight per sender.
    pub window: usize,
}

impl DmConfig {
    /// Sends a sender has in flight at saturation: one HTTP request at a
    /// time, or the uplink's window.
    pub fn in_flight_per_sender(&self) -> usize {
        match self.uplink {
            Uplink::Http => 1,
            Uplink::Mqtt | Uplink::Http2 | Uplink::Batch => self.window,
        }
    }
}

/// How senders reach chatd.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize)]
#[serde(rename_all = "lowercase")]
pub enum Uplink {
    /// `POST /v1/messages`, one after another on a keep-alive connection.
    Http,
    /// `POST /v1/messages` over HTTP/2 (cleartext, prior knowledge), each
    /// send a stream of its own, up to a window in flight per connection.
    Http2,
    /// `POST /v1/messages/batch` over HTTP/1.1, one request at a time:
    /// each holds every send that is due, up to a window (a full window at
    /// saturation).
    Batch,
    /// QoS 1 PUBLISHes to `users/{id}/up/messages`, pipelined up to a window,
    /// each answered on `users/{id}/replies` after its commit.
    Mqtt,
}

/// One phase: a fixed rate, or saturation (`target_rate` none).
#[derive(Debug, Clone, Serialize)]
pub struct DmPhase {
    pub name: String,
    pub target_rate: Option<u64>,
    pub seconds: f64,
    /// Sends answered 2xx.
    pub acked: u64,
    pub errors: u64,
    pub acked_per_s: f64,
    /// Acknowledged messages delivered to their recipient per second, from
    /// the phase's first send to its last delivery.
    pub delivered_per_s: f64,
    /// Acknowledged but never delivered (after a drain wait).
    pub lost: u64,
    /// Delivered more than once.
    pub duplicates: u64,
    /// From just before the HTTP request to the recipient's receipt.
    pub latency: Latency,
    /// The HTTP send alone (request to 2xx answer).
    pub send_latency: Latency,
    /// Worst lateness of a send against its schedule (fixed rates).
    pub max_schedule_lag_ms: f64,
    /// chatd's CPU µs per acknowledged message, by thread name (only for
    /// a chatd this tool started).
    pub chatd_cpu_us_per_msg: std::collections::BTreeMap<String, f64>,
    /// Each node's CPU µs per acknowledged message, all threads, in the
    /// order of [`Placement::nodes`] (one entry for a single chatd this
    /// tool started).
    pub node_cpu_us_per_msg: Vec<f64>,
    /// This tool's own CPU µs per acknowledged message (its HTTP senders and
    /// MQTT receivers), on the same cores.
    pub load_cpu_us_per_msg: f64,
    /// Messages/s the cores could carry at this phase's CPU cost per message
    /// (chatd's and this tool's) if the store cost nothing: the ceiling of
    /// this setup, whatever the store does (only for a chatd this tool started).
    pub ceiling_without_store_per_s: Option<f64>,
    /// The store writer's group commits and WAL restarts during the phase,
    /// from chatd's `/metrics`.
    pub store: Option<super::chatd::StoreActivity>,
    #[serde(skip)]
    pub samples: Vec<u64>,
}

#[derive(Debug, Clone, Serialize)]
pub struct DmReport {
    pub config: DmConfig,
    pub phases: Vec<DmPhase>,
}

#[derive(Deserialize)]
struct Event<'a> {
    #[serde(rename = "type", borrow)]
    kind: &'a str,
    message: Option<EventMessage>,
}

#[derive(Deserialize)]
struct EventMessage {
    id: u64,
}

#[derive(Deserialize)]
struct Sent {
    id: u64,
}

/// Message id → (deliveries, first receipt ns, last receipt ns).
pub type Receipts = Arc<Mutex<HashMap<u64, (u32, u64, u64)>>>;

/// What the receivers record, and a wake-up after every batch.
#[derive(Clone, Default)]
pub struct Inbox {
    pub receipts: Receipts,
    pub arrived: Arc<tokio::sync::Notify>,
}

/// Receives `users/{id}/#` for each receiver and records message receipts.
pub async fn receive_all(
    chatd: &Chatd,
    users: &[BenchUser],
    clock: &Clock,
    stop: &Arc<AtomicBool>,
    label: &str,
) -> Result<(Inbox, JoinSet<()>)> {
    let receipts = Inbox::default();
    let mut tasks = JoinSet::new();
    let bar = progress::bar(users.len() as u64, label);
    let mut connecting = JoinSet::new();
    for u in users {
        let (addr, u) = (chatd.mqtt, u.clone());
        connecting.spawn(async move { mqtt::subscribe(addr, None, &u).await });
        if connecting.len() >= 64 {
            if let Some(r) = connecting.join_next().await {
                spawn_receiver(&mut tasks, r??, &receipts, clock, stop);
                bar.inc(1);
            }
        }
    }
    while let Some(r) = connecting.join_next().await {
        spawn_receiver(&mut tasks, r??, &receipts, clock, stop);
        bar.inc(1);
    }
    bar.finish_and_clear();
    Ok((receipts, tasks))
}

pub(super) fn spawn_receiver(
    tasks: &mut JoinSet<()>,
    mut sub: mqtt::Subscriber,
    inbox: &Inbox,
    clock: &Clock,
    stop: &Arc<AtomicBool>,
) {
    let (inbox, clock, stop) = (inbox.clone(), clock.clone(), stop.clone());
    tasks.spawn(async move {
        let mut batch: Vec<Bytes> = Vec::new();
        while !stop.load(Ordering::Relaxed) {
            if sub.next_batch(&mut batch).await.is_err() {
                return;
            }
            let now = clock.ns();
            {
                let mut seen = inbox.receipts.lock().unwrap_or_else(|e| e.into_inner());
                for payload in batch.drain(..) {
                    let Ok(ev) = serde_json::from_slice::<Event<'_>>(&payload) else {
                        continue;
                    };
                    if let (true, Some(m)) = (ev.kind == "message.created", ev.message) {
                        let e = seen.entry(m.id).or_insert((0, now, now));
                        e.0 += 1;
                        e.2 = now;
                    }
                }
            }
            inbox.arrived.notify_waiters();
        }
    });
}

/// Where the load goes: the senders' node, the receivers' node (the same
/// chatd, or another node of a cluster), and every node whose CPU is read.
pub struct Placement<'a> {
    pub send: &'a Chatd,
    pub receive: &'a Chatd,
    pub nodes: Vec<&'a Chatd>,
}

impl<'a> Placement<'a> {
    /// Everything on one chatd.
    pub fn single(chatd: &'a Chatd) -> Placement<'a> {
        Placement {
            send: chatd,
            receive: chatd,
            nodes: vec![chatd],
        }
    }
}

pub async fn run(chatd: &Chatd, cfg: &DmConfig) -> Result<DmReport> {
    run_placed(&Placement::single(chatd), cfg).await
}

/// [`run`] with the senders and the receivers where `at` puts them. Users
/// are provisioned through the senders' node (nodes of a cluster share the
/// store and the token secret). A `saturation_secs` of 0 skips saturation.
pub async fn run_placed(at: &Placement<'_>, cfg: &DmConfig) -> Result<DmReport> {
    let senders = at.send.provision("dms", cfg.senders).await?;
    let receivers = at.send.provision("dmr", cfg.receivers).await?;
    let clock = Clock::new();
    let stop = Arc::new(AtomicBool::new(false));
    let (inbox, _rx_tasks) =
        receive_all(at.receive, &receivers, &clock, &stop, "receivers online").await?;
    let receipts = &inbox.receipts;
    let receivers: Arc<Vec<u64>> = Arc::new(receivers.iter().map(|u| u.id).collect());
    let text = "x".repeat(cfg.text_bytes);
    // Warm-up first (connections, caches, the allocator, SQLite's pages),
    // then the fixed rates, then saturation.
    let mut plan: Vec<(Option<u64>, f64, String)> = vec![(None, 1.0, "warm-up".into())];
    plan.extend(
        cfg.rates
            .iter()
            .map(|&r| (Some(r), cfg.rate_secs, format!("{r} msg/s"))),
    );
    if cfg.saturation_secs > 0.0 {
        plan.push((None, cfg.saturation_secs, "saturation".into()));
    }
    let mut phases = Vec::new();
    for (i, (rate, secs, name)) in plan.into_iter().enumerate() {
        if i > 0 {
            // Each phase starts from its own rate's steady state, not from
            // the end of the one before: after a saturation (the warm-up)
            // chatd's background checkpointer is still copying the burst's
            // WAL (~300 MB) into the database, and a phase that started at
            // once measured that in its first ~100 ms (up to 90 ms at 1,000
            // msg/s, the whole p99).
            tokio::time::sleep(SETTLE_BETWEEN_PHASES).await;
        }
        let p = phase(
            at, &senders, &receivers, &text, &clock, receipts, rate, secs, &name, cfg.uplink,
            cfg.window,
        )
        .await?;
        if name != "warm-up" {
            phases.push(p);
        }
    }
    stop.store(true, Ordering::Relaxed);
    Ok(DmReport {
        config: cfg.clone(),
        phases,
    })
}

/// The pause before each phase after the first (see [`run`]).
const SETTLE_BETWEEN_PHASES: Duration = Duration::from_secs(2);

#[derive(Default)]
struct SenderLog {
    /// (message id, ns just before the request, ns at the answer)
    acked: Vec<(u64, u64, u64)>,
    errors: u64,
    max_lag_ns: u64,
}

/// When sends are due: sender k's j-th at (j·n + k) / rate, or as fast as
/// they go (saturation) until the phase ends.
#[derive(Clone, Copy)]
pub(super) struct Schedule {
    pub started: Instant,
    pub until: Instant,
    pub rate: Option<u64>,
    pub senders: u64,
}

impl Schedule {
    /// When sender `k`'s `j`-th send is due; none once the phase is over.
    pub fn due(&self, k: u64, j: u64) -> Option<Instant> {
        let due = match self.rate {
            Some(rate) => {
                self.started + Duration::from_secs_f64((j * self.senders + k) as f64 / rate as f64)
            }
            None => Instant::now(),
        };
        (due < self.until).then_some(due)
    }
}

/// What one sender sends in a phase.
struct SenderJob {
    k: u64,
    receivers: Arc<Vec<u64>>,
    text: String,
    run_id: u64,
    clock: Clock,
    sent: Arc<AtomicU64>,
    schedule: Schedule,
}

impl SenderJob {
    /// The request body of send `j` (to the receivers in turn).
    fn body(&self, j: u64) -> String {
        let to = self.receivers[((self.k + j) % self.receivers.len() as u64) as usize];
        format!(
            r#"{{"to":{{"user":{to}}},"client_msg_id":"{}-{}-{j}","body":{{"text":"{}"}}}}"#,
            self.run_id, self.k, self.text
        )
    }
}

/// Sends one after another over one HTTP keep-alive connection.
async fn send_http(
    job: SenderJob,
    mut conn: http1::Connection,
    http: std::net::SocketAddr,
    token: &str,
) -> SenderLog {
    let mut log = SenderLog::default();
    let auth = format!("Bearer {token}");
    let mut j: u64 = 0;
    while let Some(due) = job.schedule.due(job.k, j) {
        let now = Instant::now();
        if due > now {
            tokio::time::sleep_until(due.into()).await;
        } else if job.schedule.rate.is_some() {
            log.max_lag_ns = log.max_lag_ns.max((now - due).as_nanos() as u64);
        }
        let t0 = job.clock.ns();
        let ok = match conn.post_json("/v1/messages", &auth, job.body(j)).await {
            Ok((201, answer)) => Some(answer),
            Ok(_) => None,
            // The connection is gone: count the send, open another.
            Err(_) => {
                if let Ok(fresh) = http1::Connection::open(http).await {
                    conn = fresh;
                }
                None
            }
        };
        match ok.and_then(|b| serde_json::from_slice::<Sent>(&b).ok()) {
            Some(s) => log.acked.push((s.id, t0, job.clock.ns())),
            None => log.errors += 1,
        }
        job.sent.fetch_add(1, Ordering::Relaxed);
        j += 1;
    }
    log
}

/// A windowed sender's place in its schedule.
struct Pacer {
    /// The next send's number.
    j: u64,
    /// When it is due; none once the phase is over.
    next_due: Option<Instant>,
}

impl Pacer {
    fn new(job: &SenderJob) -> Pacer {
        Pacer {
            j: 0,
            next_due: job.schedule.due(job.k, 0),
        }
    }

    /// The next send's number if it is due now (counted as sent, its
    /// lateness logged at fixed rates), moving on to the one after.
    fn take_due(&mut self, job: &SenderJob, log: &mut SenderLog) -> Option<u64> {
        let due = self.next_due?;
        let now = Instant::now();
        if due > now {
            return None;
        }
        if job.schedule.rate.is_some() {
            log.max_lag_ns = log.max_lag_ns.max((now - due).as_nanos() as u64);
        }
        job.sent.fetch_add(1, Ordering::Relaxed);
        let j = self.j;
        self.j += 1;
        self.next_due = job.schedule.due(job.k, self.j);
        Some(j)
    }
}

/// Sends over one HTTP/2 connection, up to `window` requests in flight as
/// streams of their own; each counts once answered 201.
async fn send_h2(
    job: SenderJob,
    mut conn: http2::Connection,
    http: std::net::SocketAddr,
    uri: &hyper::Uri,
    token: &str,
    window: usize,
) -> SenderLog {
    use futures_util::stream::{FuturesUnordered, StreamExt};

    let mut log = SenderLog::default();
    let auth = format!("Bearer {token}");
    let mut in_flight = FuturesUnordered::new();
    let mut pacer = Pacer::new(&job);
    loop {
        while in_flight.len() < window {
            let Some(j) = pacer.take_due(&job, &mut log) else {
                break;
            };
            let t0 = job.clock.ns();
            let answer = conn.post_json(uri, &auth, job.body(j));
            in_flight.push(async move { (t0, answer.await) });
        }
        if pacer.next_due.is_none() && in_flight.is_empty() {
            break;
        }
        let wake = pacer.next_due.filter(|_| in_flight.len() < window);
        tokio::select! {
            Some((t0, answer)) = in_flight.next(), if !in_flight.is_empty() => {
                let sent = match answer {
                    Ok((201, body)) => serde_json::from_slice::<Sent>(&body).ok(),
                    Ok(_) => None,
                    // The connection is gone: count the send, open another.
                    Err(_) => {
                        if conn.is_closed() {
                            if let Ok(fresh) = http2::Connection::open(http).await {
                                conn = fresh;
                            }
                        }
                        None
                    }
                };
                match sent {
                    Some(s) => log.acked.push((s.id, t0, job.clock.ns())),
                    None => log.errors += 1,
                }
            }
            _ = tokio::time::sleep_until(wake.unwrap_or(job.schedule.until).into()), if wake.is_some() => {}
        }
    }
    log
}

/// `POST /v1/messages/batch`'s answer.
#[derive(Deserialize)]
struct BatchAnswer {
    results: Vec<BatchResult>,
}

#[derive(Deserialize)]
struct BatchResult {
    status: u16,
    message: Option<Sent>,
}

/// Sends in batches over one HTTP/1.1 keep-alive connection, one request
/// at a time: each request carries every send that is due, up to `window`.
/// A send counts once its result says 201.
async fn send_batches(
    job: SenderJob,
    mut conn: http1::Connection,
    http: std::net::SocketAddr,
    token: &str,
    window: usize,
) -> SenderLog {
    let mut log = SenderLog::default();
    let auth = format!("Bearer {token}");
    let mut pacer = Pacer::new(&job);
    let mut batch = Vec::with_capacity(window);
    while let Some(due) = pacer.next_due {
        tokio::time::sleep_until(due.into()).await;
        while batch.len() < window {
            match pacer.take_due(&job, &mut log) {
                Some(j) => batch.push(j),
                None => break,
            }
        }
        let mut body = String::from(r#"{"messages":["#);
        for (i, &j) in batch.iter().enumerate() {
            if i > 0 {
                body.push(',');
            }
            body.push_str(&job.body(j));
        }
        body.push_str("]}");
        let t0 = job.clock.ns();
        let answer = match conn.post_json("/v1/messages/batch", &auth, body).await {
            Ok((200, answer)) => serde_json::from_slice::<BatchAnswer>(&answer).ok(),
            Ok(_) => None,
            // The connection is gone: count the sends, open another.
            Err(_) => {
                if let Ok(fresh) = http1::Connection::open(http).await {
                    conn = fresh;
                }
                None
            }
        };
        let now = job.clock.ns();
        let results = answer.map(|a| a.results).unwrap_or_default();
        log.errors += batch.len().saturating_sub(results.len()) as u64;
        for r in results {
            match (r.status, r.message) {
                (201, Some(m)) => log.acked.push((m.id, t0, now)),
                _ => log.errors += 1,
            }
        }
        batch.clear();
    }
    log
}

/// The uplink's answer on `users/{id}/replies`.
#[derive(Deserialize)]
struct Reply<'a> {
    status: u16,
    #[serde(borrow)]
    client_msg_id: Option<&'a str>,
    message: Option<Sent>,
}

/// How long a sender over MQTT waits for a reply when nothing else can move.
const REPLY_WAIT: Duration = Duration::from_secs(10);

/// Sends over the MQTT uplink: QoS 1 PUBLISHes to `users/{id}/up/messages`,
/// up to `window` unanswered; a send counts once its reply says 201 (chatd
/// answers only after the commit).
async fn send_mqtt(
    job: SenderJob,
    mut conn: mqtt::Subscriber,
    topic: &str,
    window: usize,
) -> SenderLog {
    let mut log = SenderLog::default();
    // Sends waiting for their reply, in the order sent: (j, t0).
    let mut waiting: std::collections::VecDeque<(u64, u64)> = Default::default();
    let mut replies: Vec<Bytes> = Vec::new();
    let mut pacer = Pacer::new(&job);
    let mut stalled: Option<Instant> = None;
    loop {
        // Queue every send that is due and fits the window.
        while waiting.len() < window {
            let Some(j) = pacer.take_due(&job, &mut log) else {
                break;
            };
            let t0 = job.clock.ns();
            // Packet ids 1..=65535; far more than the window apart.
            let pkid = (j % 65_535 + 1) as u16;
            if conn
                .queue_publish(topic, Bytes::from(job.body(j)), pkid)
                .is_err()
            {
                log.errors += 1;
            } else {
                waiting.push_back((j, t0));
            }
        }
        if conn.flush().await.is_err() {
            break;
        }
        if pacer.next_due.is_none() && waiting.is_empty() {
            break;
        }
        let room = waiting.len() < window;
        if !wait_to_move(&mut conn, pacer.next_due, room, &mut stalled, REPLY_WAIT).await {
            break;
        }
        if conn.take_publishes(&mut replies).is_err() {
            break;
        }
        if !replies.is_empty() {
            stalled = None;
        }
        let now = job.clock.ns();
        for payload in replies.drain(..) {
            let Ok(reply) = serde_json::from_slice::<Reply<'_>>(&payload) else {
                continue;
            };
            let Some(sent_j) = reply
                .client_msg_id
                .and_then(|id| id.rsplit('-').next())
                .and_then(|j| j.parse::<u64>().ok())
            else {
                continue;
            };
            // Replies come in order; anything before this one went unanswered.
            while let Some(&(first, t0)) = waiting.front() {
                waiting.pop_front();
                if first == sent_j {
                    match (reply.status, &reply.message) {
                        (201, Some(m)) => log.acked.push((m.id, t0, now)),
                        _ => log.errors += 1,
                    }
                    break;
                }
                log.errors += 1;
            }
        }
    }
    log.errors += waiting.len() as u64;
    log
}

/// Waits until a sender with a window of sends in flight can move on:
/// something from the server, or its next send falling due while the
/// window has `room`. When only an answer can move it on, it gives up
/// (false) after `patience` without one, counted from `stalled`, which the
/// caller clears when answers come; false too if the connection failed.
pub(super) async fn wait_to_move(
    conn: &mut mqtt::Subscriber,
    next_due: Option<Instant>,
    room: bool,
    stalled: &mut Option<Instant>,
    patience: Duration,
) -> bool {
    let wake = match next_due {
        Some(due) if room => due,
        _ => {
            let limit = *stalled.get_or_insert_with(|| Instant::now() + patience);
            if Instant::now() >= limit {
                return false;
            }
            limit
        }
    };
    tokio::select! {
        r = conn.read_more() => r.is_ok(),
        _ = tokio::time::sleep_until(wake.into()) => true,
    }
}

#[allow(clippy::too_many_arguments)]
async fn phase(
    at: &Placement<'_>,
    senders: &[BenchUser],
    receivers: &Arc<Vec<u64>>,
    text: &str,
    clock: &Clock,
    receipts: &Receipts,
    rate: Option<u64>,
    secs: f64,
    name: &str,
    uplink: Uplink,
    window: usize,
) -> Result<DmPhase> {
    let bar = progress::timed(secs, &format!("dm {name}"));
    let chatd = at.send;
    let n = senders.len() as u64;
    // Read before the clock starts: the request must not delay the senders.
    let store_before = chatd.store_counters().await;
    let started = Instant::now();
    let until = started + Duration::from_secs_f64(secs);
    let sent = Arc::new(AtomicU64::new(0));
    let mut tasks = JoinSet::new();
    let run_id = clock.ns();
    let cpu_before = chatd.pid().map(|p| crate::cpu::by_thread_name(Some(p)));
    let nodes_before: Vec<_> = at
        .nodes
        .iter()
        .map(|n| n.pid().map(|p| crate::cpu::by_thread_name(Some(p))))
        .collect();
    let load_before = crate::cpu::by_thread_name(None);
    let schedule = Schedule {
        started,
        until,
        rate,
        senders: n,
    };
    // Each sender's own connection, opened before the clock starts.
    for (k, sender) in senders.iter().enumerate() {
        let job = SenderJob {
            k: k as u64,
            receivers: receivers.clone(),
            text: text.to_string(),
            run_id,
            clock: clock.clone(),
            sent: sent.clone(),
            schedule,
        };
        match uplink {
            Uplink::Http => {
                let conn = http1::Connection::open(chatd.http).await?;
                let (http, token) = (chatd.http, sender.token.clone());
                tasks.spawn(async move { send_http(job, conn, http, &token).await });
            }
            Uplink::Http2 => {
                let conn = http2::Connection::open(chatd.http).await?;
                let (http, token) = (chatd.http, sender.token.clone());
                let uri: hyper::Uri = format!("http://{http}/v1/messages").parse()?;
                tasks.spawn(async move { send_h2(job, conn, http, &uri, &token, window).await });
            }
            Uplink::Batch => {
                let conn = http1::Connection::open(chatd.http).await?;
                let (http, token) = (chatd.http, sender.token.clone());
                tasks.spawn(async move { send_batches(job, conn, http, &token, window).await });
            }
            Uplink::Mqtt => {
                let replies = format!("users/{}/replies", sender.id);
                let conn = mqtt::subscribe_to(chatd.mqtt, None, sender, &replies, true).await?;
                let topic = format!("users/{}/up/messages", sender.id);
                tasks.spawn(async move { send_mqtt(job, conn, &topic, window).await });
            }
        }
    }
    let ticker = {
        let bar = bar.clone();
        let sent = sent.clone();
        tokio::spawn(async move {
            loop {
                tokio::time::sleep(Duration::from_millis(100)).await;
                bar.inc(1);
                bar.set_prefix(format!("{} sent", sent.load(Ordering::Relaxed)));
            }
        })
    };
    let mut acked = Vec::new();
    let (mut errors, mut max_lag) = (0, 0);
    while let Some(log) = tasks.join_next().await {
        let log = log?;
        acked.extend(log.acked);
        errors += log.errors;
        max_lag = max_lag.max(log.max_lag_ns);
    }
    let elapsed = started.elapsed().as_secs_f64();
    let store = match (store_before, chatd.store_counters().await) {
        (Some(before), Some(after)) => {
            Some(super::chatd::StoreActivity::between(before, after, elapsed))
        }
        _ => None,
    };
    let chatd_cpu = match (cpu_before, chatd.pid()) {
        (Some(before), Some(pid)) => crate::cpu::us_per(
            &before,
            &crate::cpu::by_thread_name(Some(pid)),
            acked.len() as u64,
        ),
        _ => Default::default(),
    };
    let node_cpu = at
        .nodes
        .iter()
        .zip(&nodes_before)
        .filter_map(|(node, before)| {
            let after = crate::cpu::by_thread_name(Some(node.pid()?));
            crate::cpu::us_per(before.as_ref()?, &after, acked.len() as u64)
                .get("all")
                .copied()
        })
        .collect();
    let load_cpu = crate::cpu::us_per(
        &load_before,
        &crate::cpu::by_thread_name(None),
        acked.len() as u64,
    )["all"];
    let ceiling = chatd_cpu.get("all").map(|all| {
        let store: f64 = chatd_cpu
            .iter()
            .filter(|(name, _)| name.starts_with("store-"))
            .map(|(_, us)| us)
            .sum();
        let cores = std::thread::available_parallelism().map_or(1, |n| n.get()) as f64;
        cores * 1e6 / (all - store + load_cpu)
    });
    ticker.abort();
    bar.finish_and_clear();

    let tally = tally(&acked, receipts).await;
    let p = DmPhase {
        name: name.to_string(),
        target_rate: rate,
        seconds: elapsed,
        acked: acked.len() as u64,
        errors,
        acked_per_s: acked.len() as f64 / elapsed,
        delivered_per_s: tally.delivered_per_s,
        lost: tally.lost,
        duplicates: tally.duplicates,
        latency: Latency::of_sorted(&tally.samples),
        send_latency: Latency::of_sorted(&tally.send_samples),
        max_schedule_lag_ms: max_lag as f64 / 1e6,
        chatd_cpu_us_per_msg: chatd_cpu,
        node_cpu_us_per_msg: node_cpu,
        load_cpu_us_per_msg: load_cpu,
        ceiling_without_store_per_s: ceiling,
        store,
        samples: tally.samples,
    };
    eprintln!(
        "dm {name}: {} acked ({:.0}/s), {} errors, {:.0} delivered/s, lost {}, duplicates {}, p50 {:.2} ms, p99 {:.2} ms; chatd CPU µs/msg {:?}, this tool's {:.1}",
        p.acked, p.acked_per_s, p.errors, p.delivered_per_s, p.lost, p.duplicates, p.latency.p50_ms, p.latency.p99_ms, p.chatd_cpu_us_per_msg, p.load_cpu_us_per_msg
    );
    if p.acked == 0 {
        bail!("dm {name}: no send was acknowledged ({errors} errors)");
    }
    Ok(p)
}

/// What became of a phase's acknowledged sends at their recipients.
pub(super) struct Tally {
    pub lost: u64,
    pub duplicates: u64,
    /// Send to first receipt, ns, sorted.
    pub samples: Vec<u64>,
    /// Send to acknowledgement, ns, sorted.
    pub send_samples: Vec<u64>,
    /// Delivered per second, from the first send to the last receipt.
    pub delivered_per_s: f64,
}

/// Waits until every acknowledged send `(message id, ns sent, ns
/// acknowledged)` has reached its recipient, or nothing has moved for 5 s,
/// then counts what was lost, what came twice, and how long each took.
pub(super) async fn tally(acked: &[(u64, u64, u64)], receipts: &Receipts) -> Tally {
    let mut last_missing = usize::MAX;
    let mut still = Instant::now();
    loop {
        let missing = {
            let seen = receipts.lock().unwrap_or_else(|e| e.into_inner());
            acked
                .iter()
                .filter(|(id, ..)| !seen.contains_key(id))
                .count()
        };
        if missing == 0 {
            break;
        }
        if missing < last_missing {
            last_missing = missing;
            still = Instant::now();
        } else if still.elapsed() > Duration::from_secs(5) {
            break;
        }
        tokio::time::sleep(Duration::from_millis(20)).await;
    }
    let seen = receipts.lock().unwrap_or_else(|e| e.into_inner());
    let (mut lost, mut duplicates) = (0, 0);
    let mut samples = Vec::with_capacity(acked.len());
    let mut send_samples = Vec::with_capacity(acked.len());
    let first_send = acked.iter().map(|a| a.1).min().unwrap_or(0);
    let mut last_rx = first_send;
    for &(id, t0, t1) in acked {
        send_samples.push(t1.saturating_sub(t0));
        match seen.get(&id) {
            None => lost += 1,
            Some(&(count, rx, _)) => {
                if count > 1 {
                    duplicates += 1;
                }
                samples.push(rx.saturating_sub(t0));
                last_rx = last_rx.max(rx);
            }
        }
    }
    drop(seen);
    samples.sort_unstable();
    send_samples.sort_unstable();
    let span_s = (last_rx.saturating_sub(first_send)) as f64 / 1e9;
    let delivered_per_s = if span_s > 0.0 {
        samples.len() as f64 / span_s
    } else {
        0.0
    };
    Tally {
        lost,
        duplicates,
        samples,
        send_samples,
        delivered_per_s,
    }
}

//! **baseline, the dm load on bare rumqttd**: the dm scenario's load with
//! nothing of chatd in its path. The same number of senders, each on its
//! own TCP connection, PUBLISH QoS 1; the same receivers, subscribed at QoS
//! 1 over TCP, get each message on their own topic with a payload the size
//! of chatd's `message.created` event, and acknowledge it. Saturation is
//! measured twice: with one send in flight per sender (as dm over HTTP,
//! one request after another) and with the window of dm over the MQTT
//! uplink, and each dm is compared with its own. No gateway, no
//! authentication, no store, no HTTP: what these cores carry of the
//! transport alone, which is what issue 5's "≥ 0.5× bare rumqttd QoS 1
//! throughput" compares dm with. (The other bare figure, `bare`, publishes
//! from inside the process: the router's ceiling for chatd's pushes.)
//!
//! rumqttd acknowledges a PUBLISH once its router has taken it, not once it
//! is delivered, so a send counts as acknowledged at its PUBACK and the
//! receipts are checked afterwards for loss and duplicates, as in dm.

use std::collections::{BTreeMap, VecDeque};
use std::net::SocketAddr;
use std::sync::atomic::{AtomicBool, AtomicU64, Ordering};
use std::sync::Arc;
use std::time::{Duration, Instant};

use anyhow::{bail, Result};
use bytes::Bytes;
use serde::Serialize;
use tokio::task::JoinSet;

use super::chatd::BenchUser;
use super::dm::{self, Inbox, Schedule};
use super::{mqtt, progress, Clock};
use crate::stats::Latency;

/// Client ids and usernames of the senders start here (the receivers'
/// are 1..=receivers), so that no two connections share a client id.
const SENDER_IDS: u64 = 1_000_000;

/// Seconds: rumqttd refuses connections without a keep-alive, and these
/// clients send no pings, so it outlasts the baseline.
const KEEP_ALIVE: u16 = 3600;

/// How long a sender waits for a PUBACK when nothing else can move.
const ACK_WAIT: Duration = Duration::from_secs(10);

#[derive(Debug, Clone, Serialize)]
pub struct BareDmBaseline {
    pub senders: usize,
    pub receivers: usize,
    /// Bytes of each message's payload.
    pub payload_bytes: usize,
    pub phases: Vec<BareDmPhase>,
}

impl BareDmBaseline {
    /// The saturation phase with `window` sends in flight per sender.
    pub fn saturation(&self, window: usize) -> Option<&BareDmPhase> {
        self.phases
            .iter()
            .find(|p| p.target_rate.is_none() && p.window == window)
    }
}

/// One phase: a fixed rate, or saturation (`target_rate` none).
#[derive(Debug, Clone, Serialize)]
pub struct BareDmPhase {
    pub name: String,
    pub target_rate: Option<u64>,
    /// Unacknowledged PUBLISHes allowed per sender.
    pub window: usize,
    pub seconds: f64,
    /// PUBLISHes acknowledged by rumqttd.
    pub acked: u64,
    /// PUBLISHes never acknowledged, or refused.
    pub errors: u64,
    pub acked_per_s: f64,
    /// Acknowledged messages delivered per second, from the phase's first
    /// send to its last delivery.
    pub delivered_per_s: f64,
    pub lost: u64,
    pub duplicates: u64,
    /// From just before the PUBLISH to the recipient's receipt.
    pub latency: Latency,
    /// From just before the PUBLISH to its PUBACK.
    pub ack_latency: Latency,
    /// CPU µs per acknowledged message of this whole process (bare
    /// rumqttd's threads and the load's), by thread name.
    pub cpu_us_per_msg: BTreeMap<String, f64>,
    #[serde(skip)]
    pub samples: Vec<u64>,
}

/// Starts bare rumqttd in this process, connects `receivers` subscribers
/// and `senders` publishers to it, then runs a warm-up, each of `rates` for
/// `rate_secs`, and saturation for `saturation_secs` with one send in
/// flight per sender, then with `window`.
pub async fn run(
    senders: usize,
    receivers: usize,
    window: usize,
    rates: &[u64],
    rate_secs: f64,
    saturation_secs: f64,
    text_bytes: usize,
) -> Result<BareDmBaseline> {
    // Its threads outlive the baseline (rumqttd has no stop); they are idle
    // once its clients are gone.
    let target = crate::target::start_bare()?;
    let addr = target.addr;
    listening(addr).await?;
    let clock = Clock::new();
    let stop = Arc::new(AtomicBool::new(false));
    let inbox = Inbox::default();
    let mut rx_tasks = JoinSet::new();
    let bar = progress::bar(receivers as u64, "bare rumqttd: receivers");
    for id in 1..=receivers as u64 {
        let user = any_user(id);
        let filter = format!("users/{id}/#");
        let sub = mqtt::subscribe_with(addr, None, &user, &filter, true, KEEP_ALIVE).await?;
        dm::spawn_receiver(&mut rx_tasks, sub, &inbox, &clock, &stop);
        bar.inc(1);
    }
    bar.finish_and_clear();
    let padding = "x".repeat(text_bytes);
    let mut plan: Vec<(Option<u64>, f64, String, usize)> =
        vec![(None, 1.0, "warm-up".into(), window)];
    plan.extend(
        rates
            .iter()
            .map(|&r| (Some(r), rate_secs, format!("{r} msg/s"), window)),
    );
    plan.push((None, saturation_secs, "saturation, 1 in flight".into(), 1));
    if window > 1 {
        let name = format!("saturation, {window} in flight");
        plan.push((None, saturation_secs, name, window));
    }
    let mut phases = Vec::new();
    for (n, (rate, secs, name, window)) in plan.into_iter().enumerate() {
        let load = Load {
            addr,
            senders,
            receivers: receivers as u64,
            window,
            padding: padding.clone(),
            // Message ids unique over the run: phase, sender, send.
            id_base: (n as u64) << 48,
        };
        let p = phase(&load, &clock, &inbox, rate, secs, &name).await?;
        if name != "warm-up" {
            phases.push(p);
        }
    }
    stop.store(true, Ordering::Relaxed);
    rx_tasks.abort_all();
    Ok(BareDmBaseline {
        senders,
        receivers,
        payload_bytes: payload(0, 0, &padding).len(),
        phases,
    })
}

/// Waits until rumqttd, which binds its listener on its own thread after
/// it starts, takes connections.
async fn listening(addr: SocketAddr) -> Result<()> {
    let give_up = Instant::now() + Duration::from_secs(10);
    loop {
        match tokio::net::TcpStream::connect(addr).await {
            Ok(_) => return Ok(()),
            Err(e) if Instant::now() >= give_up => bail!("bare rumqttd at {addr}: {e}"),
            Err(_) => tokio::time::sleep(Duration::from_millis(10)).await,
        }
    }
}

/// Bare rumqttd checks no password.
fn any_user(id: u64) -> BenchUser {
    BenchUser {
        id,
        token: String::new(),
    }
}

/// A `message.created` event shaped and sized like the one chatd pushes
/// for a direct message of `padding`'s length.
fn payload(id: u64, to: u64, padding: &str) -> String {
    format!(
        r#"{{"type":"message.created","cursor":{id},"message":{{"id":{id},"conversation_id":{to},"seq":{id},"sender_id":{to},"client_msg_id":"b-{id}","kind":"user","body":{{"text":"{padding}"}},"sent_at":1764720000000}}}}"#
    )
}

struct Load {
    addr: SocketAddr,
    senders: usize,
    receivers: u64,
    window: usize,
    padding: String,
    id_base: u64,
}

async fn phase(
    load: &Load,
    clock: &Clock,
    inbox: &Inbox,
    rate: Option<u64>,
    secs: f64,
    name: &str,
) -> Result<BareDmPhase> {
    let bar = progress::timed(secs, &format!("bare rumqttd dm {name}"));
    // Connections first, so that the clock starts with all of them open.
    let mut conns = Vec::with_capacity(load.senders);
    for k in 0..load.senders as u64 {
        let user = any_user(SENDER_IDS + k);
        // A filter nothing is published to: the senders only publish.
        let filter = format!("bench/{}/none", user.id);
        let conn = mqtt::subscribe_with(load.addr, None, &user, &filter, true, KEEP_ALIVE).await?;
        conns.push(conn);
    }
    let started = Instant::now();
    let schedule = Schedule {
        started,
        until: started + Duration::from_secs_f64(secs),
        rate,
        senders: load.senders as u64,
    };
    let sent = Arc::new(AtomicU64::new(0));
    let cpu_before = crate::cpu::by_thread_name(None);
    let mut tasks = JoinSet::new();
    for (k, conn) in conns.into_iter().enumerate() {
        let job = Sender {
            k: k as u64,
            receivers: load.receivers,
            padding: load.padding.clone(),
            id_base: load.id_base,
            clock: clock.clone(),
            sent: sent.clone(),
            schedule,
        };
        tasks.spawn(job.run(conn, load.window));
    }
    let ticker = {
        let (bar, sent) = (bar.clone(), sent.clone());
        tokio::spawn(async move {
            loop {
                tokio::time::sleep(Duration::from_millis(100)).await;
                bar.inc(1);
                bar.set_prefix(format!("{} sent", sent.load(Ordering::Relaxed)));
            }
        })
    };
    let (mut acked, mut errors) = (Vec::new(), 0);
    while let Some(log) = tasks.join_next().await {
        let (a, e) = log?;
        acked.extend(a);
        errors += e;
    }
    let seconds = started.elapsed().as_secs_f64();
    let cpu = crate::cpu::us_per(
        &cpu_before,
        &crate::cpu::by_thread_name(None),
        acked.len() as u64,
    );
    ticker.abort();
    bar.finish_and_clear();
    let tally = dm::tally(&acked, &inbox.receipts).await;
    let p = BareDmPhase {
        name: name.to_string(),
        target_rate: rate,
        window: load.window,
        seconds,
        acked: acked.len() as u64,
        errors,
        acked_per_s: acked.len() as f64 / seconds,
        delivered_per_s: tally.delivered_per_s,
        lost: tally.lost,
        duplicates: tally.duplicates,
        latency: Latency::of_sorted(&tally.samples),
        ack_latency: Latency::of_sorted(&tally.send_samples),
        cpu_us_per_msg: cpu,
        samples: tally.samples,
    };
    eprintln!(
        "baseline: bare rumqttd, dm load, {name}: {} acked ({:.0}/s), {} errors, {:.0} delivered/s, lost {}, duplicates {}, p50 {:.2} ms, p99 {:.2} ms; CPU µs/msg {:.1}",
        p.acked,
        p.acked_per_s,
        p.errors,
        p.delivered_per_s,
        p.lost,
        p.duplicates,
        p.latency.p50_ms,
        p.latency.p99_ms,
        p.cpu_us_per_msg.get("all").copied().unwrap_or(0.0)
    );
    if p.acked == 0 {
        bail!("bare rumqttd, dm load, {name}: no PUBLISH was acknowledged ({errors} errors)");
    }
    Ok(p)
}

/// One sender's part of a phase.
struct Sender {
    k: u64,
    receivers: u64,
    padding: String,
    id_base: u64,
    clock: Clock,
    sent: Arc<AtomicU64>,
    schedule: Schedule,
}

impl Sender {
    /// PUBLISHes to the receivers in turn, up to `window` unacknowledged,
    /// as they fall due. Returns `(message id, ns sent, ns acknowledged)`
    /// of each acknowledged one, and how many were not.
    async fn run(self, mut conn: mqtt::Subscriber, window: usize) -> (Vec<(u64, u64, u64)>, u64) {
        let mut acked = Vec::new();
        let mut errors = 0u64;
        // Sent, not yet acknowledged, in order: (packet id, message id, ns).
        let mut waiting: VecDeque<(u16, u64, u64)> = VecDeque::with_capacity(window);
        let mut acks: Vec<u16> = Vec::new();
        let mut j: u64 = 0;
        let mut next_due = self.schedule.due(self.k, 0);
        let mut stalled: Option<Instant> = None;
        loop {
            while waiting.len() < window {
                let Some(due) = next_due else { break };
                if due > Instant::now() {
                    break;
                }
                let to = 1 + (self.k + j) % self.receivers;
                let id = self.id_base | (self.k << 32) | j;
                let pkid = (j % 65_535 + 1) as u16;
                let topic = format!("users/{to}/events");
                let body = Bytes::from(payload(id, to, &self.padding));
                let t0 = self.clock.ns();
                match conn.queue_publish(&topic, body, pkid) {
                    Ok(()) => waiting.push_back((pkid, id, t0)),
                    Err(_) => errors += 1,
                }
                self.sent.fetch_add(1, Ordering::Relaxed);
                j += 1;
                next_due = self.schedule.due(self.k, j);
            }
            if conn.flush().await.is_err() || (next_due.is_none() && waiting.is_empty()) {
                break;
            }
            let room = waiting.len() < window;
            if !dm::wait_to_move(&mut conn, next_due, room, &mut stalled, ACK_WAIT).await {
                break;
            }
            if conn.take_acks(&mut acks).is_err() {
                break;
            }
            if !acks.is_empty() {
                stalled = None;
            }
            let now = self.clock.ns();
            for pkid in acks.drain(..) {
                // PUBACKs come in order; one skipped was never acknowledged.
                while let Some((first, id, t0)) = waiting.pop_front() {
                    if first == pkid {
                        acked.push((id, t0, now));
                        break;
                    }
                    errors += 1;
                }
            }
        }
        errors += waiting.len() as u64;
        (acked, errors)
    }
}

//! The load: the publisher side of one target and its two scenarios.
//!
//! - [`Bench::throughput`]: push as fast as the target takes it, with at most
//!   `window` unreceived pushes per subscriber, so the router's per-topic log
//!   (two 64 KiB segments, ~300 pushes of this size) is never overrun by a
//!   healthy subscriber. Any push that never arrives is counted as lost.
//! - [`Bench::latency`]: push at a fixed rate, round-robin over subscribers,
//!   and record send-to-receipt times.
//!
//! Both run on the calling thread (the `publisher` thread), which is where
//! chatsvc calls `Broker::push` from too: a plain thread, not the runtime.

use std::collections::BTreeMap;
use std::sync::atomic::Ordering;
use std::sync::Arc;
use std::time::{Duration, Instant};

use anyhow::{bail, Result};
use serde::Serialize;

use crate::cpu;
use crate::fleet::{Fleet, Signal};
use crate::payload::Template;
use crate::stats::Latency;
use crate::target::Target;

/// One saturation run.
#[derive(Debug, Clone, Serialize)]
pub struct Throughput {
    pub sent: u64,
    pub received: u64,
    pub lost: u64,
    pub duplicates: u64,
    /// Pushes the target refused (gateway: user not online).
    pub refused: u64,
    /// Seconds from the first push to the last receipt.
    pub elapsed_s: f64,
    /// Unique pushes received per second over `elapsed_s`.
    pub delivered_per_s: f64,
    /// Pushes handed to the router per second (publisher side).
    pub published_per_s: f64,
    /// Send-to-receipt time under saturation: mostly queueing in the window.
    pub latency: Latency,
    /// CPU milliseconds per thread role during the run.
    pub cpu_ms: BTreeMap<String, f64>,
    /// All CPU of the process per received push, microseconds.
    pub cpu_us_per_msg: f64,
    /// Machine load during the run; `other_cores` well above zero means
    /// something outside the benchmark competed for the CPU.
    pub host: cpu::HostLoad,
    /// False when the run hit its time limit or the drain timed out.
    pub completed: bool,
    pub connection_errors: u64,
    /// Receipts whose payload did not decode (should be 0).
    pub malformed: u64,
}

/// One fixed-rate run.
#[derive(Debug, Clone, Serialize)]
pub struct LatencyRun {
    pub target_rate: u64,
    pub achieved_rate: f64,
    pub sent: u64,
    pub received: u64,
    pub lost: u64,
    pub duplicates: u64,
    pub refused: u64,
    /// How far behind schedule the publisher fell at worst. Each push's
    /// timestamp is taken when it is actually sent, so this lag is not in
    /// the latencies; a large value means the publisher itself was starved.
    pub max_publish_lag_ms: f64,
    /// Pushes sent after the warm-up.
    pub latency: Latency,
    pub cpu_ms: BTreeMap<String, f64>,
    pub cpu_us_per_msg: f64,
    pub host: cpu::HostLoad,
    pub completed: bool,
    pub connection_errors: u64,
    /// Receipts whose payload did not decode (should be 0).
    pub malformed: u64,
}

/// Phase limits shared by every run.
#[derive(Debug, Clone, Copy)]
pub struct Limits {
    pub window: u64,
    pub drain_timeout: Duration,
    pub phase_timeout: Duration,
}

/// A target, its subscribers, and the publisher's per-subscriber counters.
pub struct Bench {
    pub target: Target,
    pub fleet: Fleet,
    signal: Arc<Signal>,
    template: Template,
    /// Pushes sent per subscriber; the next sequence number.
    sent: Vec<u64>,
    /// Round-robin cursor.
    next: usize,
}

impl Bench {
    pub fn new(target: Target, fleet: Fleet, signal: Arc<Signal>, template: Template) -> Bench {
        let n = fleet.subs.len();
        Bench {
            target,
            fleet,
            signal,
            template,
            sent: vec![0; n],
            next: 0,
        }
    }

    pub fn name(&self) -> &'static str {
        self.target.kind.name()
    }

    fn total_sent(&self) -> u64 {
        self.sent.iter().sum()
    }

    fn has_room(&self, j: usize, window: u64) -> bool {
        let seen = self.fleet.subs[j].progress.load(Ordering::SeqCst);
        self.sent[j].saturating_sub(seen) < window
    }

    /// The next subscriber in round-robin order whose window has room.
    fn next_open(&mut self, window: u64) -> Option<usize> {
        let n = self.sent.len();
        for _ in 0..n {
            let j = self.next;
            self.next = (j + 1) % n;
            if self.has_room(j, window) {
                return Some(j);
            }
        }
        None
    }

    /// Sends the next push to subscriber `j`; `false` if the target refused it.
    fn push(&mut self, j: usize) -> bool {
        let user_id = self.fleet.subs[j].user_id;
        let payload = self.template.stamp(self.sent[j], self.signal.now_ns());
        self.sent[j] += 1;
        self.target.publisher.publish(user_id, payload)
    }

    /// Waits until every subscriber saw its last push, or nothing arrived
    /// for `timeout`. `true` when everything sent was accounted for.
    fn drain(&self, timeout: Duration) -> bool {
        let mut last = self.fleet.received();
        let mut changed = Instant::now();
        loop {
            let done = self
                .fleet
                .subs
                .iter()
                .zip(&self.sent)
                .all(|(s, &sent)| s.progress.load(Ordering::SeqCst) >= sent);
            if done {
                return true;
            }
            let now = self.fleet.received();
            if now != last {
                last = now;
                changed = Instant::now();
            } else if changed.elapsed() > timeout {
                return false;
            }
            std::thread::sleep(Duration::from_millis(1));
        }
    }

    /// One push to every subscriber, all received: the path works end to end.
    pub fn probe(&mut self, timeout: Duration) -> Result<()> {
        for j in 0..self.sent.len() {
            if !self.push(j) {
                bail!("{}: probe push to subscriber {j} refused", self.name());
            }
        }
        if !self.drain(timeout) {
            bail!("{}: probe pushes not all received", self.name());
        }
        self.fleet.take_latencies();
        Ok(())
    }

    /// Saturation: `messages` pushes as fast as the window allows.
    pub fn throughput(&mut self, messages: u64, limits: Limits, label: &str) -> Throughput {
        let before = self.fleet.totals();
        let sent_before = self.total_sent();
        self.fleet.take_latencies();
        self.signal.record_from(0);
        let cpu0 = cpu::Snapshot::take();
        let host0 = cpu::Host::take();
        let mut progress = Progress::new(label);
        let start = Instant::now();
        let start_ns = self.signal.ns_at(start);
        let deadline = start + limits.phase_timeout;
        let (mut sent, mut refused, mut completed) = (0u64, 0u64, true);
        while sent < messages {
            match self.next_open(limits.window) {
                Some(j) => {
                    if !self.push(j) {
                        refused += 1;
                    }
                    sent += 1;
                    if sent % 512 != 0 {
                        continue;
                    }
                }
                None => {
                    let (fleet, sent_per_sub, window) = (&self.fleet, &self.sent, limits.window);
                    self.signal.park_unless(Duration::from_millis(1), || {
                        fleet.subs.iter().zip(sent_per_sub).any(|(s, &n)| {
                            n.saturating_sub(s.progress.load(Ordering::SeqCst)) < window
                        })
                    });
                }
            }
            progress.tick(sent, messages, start, || {
                self.fleet.received() - before.received
            });
            if Instant::now() > deadline {
                completed = false;
                break;
            }
        }
        let published = start.elapsed();
        completed &= self.drain(limits.drain_timeout);
        let cpu = cpu::Snapshot::take().since(&cpu0);
        let cpu_total: f64 = cpu.values().sum();
        let host = cpu::Host::take().since(&host0, cpu_total);
        let got = self.fleet.totals() - before;
        let sent = self.total_sent() - sent_before;
        let unique = got.received - got.duplicates;
        let end_ns = self.fleet.last_rx_ns().max(start_ns + 1);
        let elapsed_s = (end_ns - start_ns) as f64 / 1e9;
        let mut samples = self.fleet.take_latencies();
        samples.sort_unstable();
        let run = Throughput {
            sent,
            received: unique,
            lost: sent.saturating_sub(unique),
            duplicates: got.duplicates,
            refused,
            elapsed_s,
            delivered_per_s: unique as f64 / elapsed_s,
            published_per_s: sent as f64 / published.as_secs_f64(),
            latency: Latency::of_sorted(&samples),
            cpu_us_per_msg: cpu_total * 1e3 / unique.max(1) as f64,
            cpu_ms: cpu,
            host,
            completed,
            connection_errors: got.connection_errors,
            malformed: got.malformed,
        };
        progress.done(&format!(
            "{:.0} msg/s delivered, {} lost, p50 {:.2} ms under saturation, {:.1} µs CPU/msg{}{}",
            run.delivered_per_s,
            run.lost,
            run.latency.p50_ms,
            run.cpu_us_per_msg,
            other_load(&host),
            if completed { "" } else { " (INCOMPLETE)" }
        ));
        run
    }

    /// Fixed rate: `rate` pushes/s for `duration`, round-robin; pushes sent
    /// in the first `warmup` are delivered but not sampled. Returns the run
    /// and its sorted samples (ns).
    pub fn latency(
        &mut self,
        rate: u64,
        duration: Duration,
        warmup: Duration,
        limits: Limits,
        label: &str,
    ) -> (LatencyRun, Vec<u64>) {
        let total = (rate as f64 * duration.as_secs_f64()).round() as u64;
        let interval_ns = 1e9 / rate.max(1) as f64;
        let before = self.fleet.totals();
        let sent_before = self.total_sent();
        self.fleet.take_latencies();
        let cpu0 = cpu::Snapshot::take();
        let host0 = cpu::Host::take();
        let mut progress = Progress::new(label);
        let start = Instant::now();
        self.signal.record_from(self.signal.ns_at(start + warmup));
        let deadline = start + duration + limits.phase_timeout;
        let (mut k, mut refused, mut max_lag_ns, mut completed) = (0u64, 0u64, 0u64, true);
        while k < total {
            let elapsed = start.elapsed().as_nanos() as u64;
            let due = (k as f64 * interval_ns) as u64;
            if elapsed < due {
                // Sleep, never spin: the publisher shares two cores with
                // everything it measures.
                std::thread::sleep(Duration::from_nanos(due - elapsed));
                continue;
            }
            max_lag_ns = max_lag_ns.max(elapsed - due);
            match self.next_open(limits.window) {
                Some(j) => {
                    if !self.push(j) {
                        refused += 1;
                    }
                    k += 1;
                }
                None => {
                    let (fleet, sent_per_sub, window) = (&self.fleet, &self.sent, limits.window);
                    self.signal.park_unless(Duration::from_millis(1), || {
                        fleet.subs.iter().zip(sent_per_sub).any(|(s, &n)| {
                            n.saturating_sub(s.progress.load(Ordering::SeqCst)) < window
                        })
                    });
                }
            }
            progress.tick(k, total, start, || self.fleet.received() - before.received);
            if Instant::now() > deadline {
                completed = false;
                break;
            }
        }
        let published = start.elapsed();
        completed &= self.drain(limits.drain_timeout);
        let cpu = cpu::Snapshot::take().since(&cpu0);
        let cpu_total: f64 = cpu.values().sum();
        let host = cpu::Host::take().since(&host0, cpu_total);
        let got = self.fleet.totals() - before;
        let sent = self.total_sent() - sent_before;
        let unique = got.received - got.duplicates;
        let mut samples = self.fleet.take_latencies();
        samples.sort_unstable();
        let run = LatencyRun {
            target_rate: rate,
            achieved_rate: sent as f64 / published.as_secs_f64(),
            sent,
            received: unique,
            lost: sent.saturating_sub(unique),
            duplicates: got.duplicates,
            refused,
            max_publish_lag_ms: max_lag_ns as f64 / 1e6,
            latency: Latency::of_sorted(&samples),
            cpu_us_per_msg: cpu_total * 1e3 / unique.max(1) as f64,
            cpu_ms: cpu,
            host,
            completed,
            connection_errors: got.connection_errors,
            malformed: got.malformed,
        };
        progress.done(&format!(
            "{:.0} msg/s, p50 {:.3} ms, p99 {:.3} ms, p99.9 {:.3} ms, max {:.2} ms, {} lost{}{}",
            run.achieved_rate,
            run.latency.p50_ms,
            run.latency.p99_ms,
            run.latency.p999_ms,
            run.latency.max_ms,
            run.lost,
            other_load(&host),
            if completed { "" } else { " (INCOMPLETE)" }
        ));
        (run, samples)
    }
}

/// A warning for the progress line when the rest of the machine was busy.
fn other_load(host: &cpu::HostLoad) -> String {
    if host.other_cores >= 0.1 {
        format!(" [other processes: {:.2} cores]", host.other_cores)
    } else {
        String::new()
    }
}

/// A single overwritten status line on stderr.
struct Progress {
    label: String,
    shown: Instant,
}

impl Progress {
    fn new(label: &str) -> Progress {
        Progress {
            label: label.to_string(),
            shown: Instant::now(),
        }
    }

    fn tick(&mut self, sent: u64, total: u64, start: Instant, received: impl Fn() -> u64) {
        if self.shown.elapsed() < Duration::from_millis(250) {
            return;
        }
        self.shown = Instant::now();
        let received = received();
        let rate = received as f64 / start.elapsed().as_secs_f64();
        eprint!(
            "\r{}: sent {sent}/{total}, received {received} ({rate:.0} msg/s)   ",
            self.label
        );
    }

    fn done(&self, summary: &str) {
        eprintln!("\r{}: {summary}{:20}", self.label, "");
    }
}

//! The subscribers: one rumqttc client per user over TCP, subscribed at QoS 1
//! to `users/{id}/#`, and what each records about the pushes it receives.
//!
//! Receivers never block the publisher: they bump atomics and push latency
//! samples into their own (uncontended) vector. The publisher parks when a
//! subscriber's window is full; every receipt unparks it if it is waiting.

use std::net::SocketAddr;
use std::sync::atomic::{AtomicBool, AtomicU64, Ordering};
use std::sync::{Arc, Mutex};
use std::thread::Thread;
use std::time::{Duration, Instant};

use anyhow::{bail, Result};
use rumqttc::{AsyncClient, Event, MqttOptions, NetworkOptions, Packet, QoS, SubscribeReasonCode};
use tokio::runtime::Handle;
use tokio_util::sync::CancellationToken;

use crate::payload;

/// The clock every timestamp is taken on, and the publisher's wake-up line.
#[derive(Debug)]
pub struct Signal {
    epoch: Instant,
    publisher: Thread,
    waiting: AtomicBool,
    /// Pushes sent before this instant (ns since `epoch`) are not sampled.
    record_from_ns: AtomicU64,
}

impl Signal {
    /// Must be created on the thread that publishes (it is the one woken).
    pub fn new() -> Arc<Signal> {
        Arc::new(Signal {
            epoch: Instant::now(),
            publisher: std::thread::current(),
            waiting: AtomicBool::new(false),
            record_from_ns: AtomicU64::new(0),
        })
    }

    pub fn now_ns(&self) -> u64 {
        self.epoch.elapsed().as_nanos() as u64
    }

    pub fn ns_at(&self, at: Instant) -> u64 {
        at.saturating_duration_since(self.epoch).as_nanos() as u64
    }

    pub fn record_from(&self, ns: u64) {
        self.record_from_ns.store(ns, Ordering::SeqCst);
    }

    /// Parks the publisher until a receipt arrives or `timeout` passes;
    /// `ready` is re-checked after announcing the wait, so no wake-up is lost.
    pub fn park_unless(&self, timeout: Duration, ready: impl Fn() -> bool) {
        self.waiting.store(true, Ordering::SeqCst);
        if !ready() {
            std::thread::park_timeout(timeout);
        }
        self.waiting.store(false, Ordering::SeqCst);
    }

    fn wake(&self) {
        if self.waiting.load(Ordering::SeqCst) {
            self.publisher.unpark();
        }
    }
}

/// What one subscriber has seen. Sequence numbers are per subscriber and
/// never reset, so counters are read as deltas over a phase.
#[derive(Debug)]
pub struct Sub {
    pub user_id: u64,
    /// Highest sequence number seen + 1. A gap (a push the router dropped)
    /// still advances it, so the publisher's window never waits on a loss.
    pub progress: AtomicU64,
    pub received: AtomicU64,
    /// Pushes at or below a sequence number already seen (duplicates).
    pub duplicates: AtomicU64,
    pub malformed: AtomicU64,
    pub last_rx_ns: AtomicU64,
    pub subscribed: AtomicBool,
    pub connection_errors: AtomicU64,
    latencies: Mutex<Vec<u64>>,
}

impl Sub {
    fn new(user_id: u64) -> Sub {
        Sub {
            user_id,
            progress: AtomicU64::new(0),
            received: AtomicU64::new(0),
            duplicates: AtomicU64::new(0),
            malformed: AtomicU64::new(0),
            last_rx_ns: AtomicU64::new(0),
            subscribed: AtomicBool::new(false),
            connection_errors: AtomicU64::new(0),
            latencies: Mutex::new(Vec::new()),
        }
    }

    fn on_publish(&self, bytes: &[u8], signal: &Signal) {
        let now = signal.now_ns();
        let Some((seq, sent_ns)) = payload::decode(bytes) else {
            self.malformed.fetch_add(1, Ordering::Relaxed);
            return;
        };
        let before = self.progress.fetch_max(seq + 1, Ordering::SeqCst);
        if seq < before {
            self.duplicates.fetch_add(1, Ordering::Relaxed);
        }
        self.received.fetch_add(1, Ordering::SeqCst);
        self.last_rx_ns.fetch_max(now, Ordering::Relaxed);
        if sent_ns >= signal.record_from_ns.load(Ordering::Relaxed) {
            self.lock_latencies().push(now.saturating_sub(sent_ns));
        }
        signal.wake();
    }

    fn lock_latencies(&self) -> std::sync::MutexGuard<'_, Vec<u64>> {
        self.latencies.lock().unwrap_or_else(|e| e.into_inner())
    }
}

/// One target's subscribers.
#[derive(Debug)]
pub struct Fleet {
    pub subs: Vec<Arc<Sub>>,
    stop: CancellationToken,
}

impl Fleet {
    /// Connects `count` clients (user ids 1..=count) to `addr` and subscribes
    /// each to its own subtree. Returns once every SUBACK granted QoS 1.
    pub fn connect(
        rt: &Handle,
        label: &str,
        addr: SocketAddr,
        count: u64,
        signal: &Arc<Signal>,
        timeout: Duration,
    ) -> Result<Fleet> {
        let stop = CancellationToken::new();
        let mut subs = Vec::new();
        for user_id in 1..=count {
            let sub = Arc::new(Sub::new(user_id));
            let mut opts = MqttOptions::new(
                format!("bench-{label}-{user_id}"),
                addr.ip().to_string(),
                addr.port(),
            );
            opts.set_keep_alive(Duration::from_secs(60))
                .set_clean_session(true)
                .set_credentials(user_id.to_string(), "bench")
                .set_max_packet_size(64 * 1024, 64 * 1024);
            let (client, mut eventloop) = AsyncClient::new(opts, 64);
            let mut net = NetworkOptions::new();
            // PUBACKs are tiny writes: without NODELAY, Nagle would hold them
            // back and the router's inflight window would stall on it.
            net.set_tcp_nodelay(true);
            eventloop.set_network_options(net);
            let filter = format!("users/{user_id}/#");
            let (sub2, signal, stop2) = (sub.clone(), signal.clone(), stop.clone());
            rt.spawn(async move {
                loop {
                    let event = tokio::select! {
                        _ = stop2.cancelled() => break,
                        e = eventloop.poll() => e,
                    };
                    match event {
                        Ok(Event::Incoming(Packet::Publish(p))) => {
                            sub2.on_publish(&p.payload, &signal)
                        }
                        Ok(Event::Incoming(Packet::ConnAck(_))) => {
                            // Clean session: (re)subscribe on every connect.
                            if client
                                .try_subscribe(filter.clone(), QoS::AtLeastOnce)
                                .is_err()
                            {
                                sub2.connection_errors.fetch_add(1, Ordering::Relaxed);
                            }
                        }
                        Ok(Event::Incoming(Packet::SubAck(ack))) => {
                            let granted = ack.return_codes.iter().all(|c| {
                                matches!(c, SubscribeReasonCode::Success(QoS::AtLeastOnce))
                            });
                            sub2.subscribed.store(granted, Ordering::SeqCst);
                        }
                        Ok(_) => {}
                        Err(_) => {
                            sub2.subscribed.store(false, Ordering::SeqCst);
                            sub2.connection_errors.fetch_add(1, Ordering::Relaxed);
                            tokio::select! {
                                _ = stop2.cancelled() => break,
                                _ = tokio::time::sleep(Duration::from_millis(100)) => {}
                            }
                        }
                    }
                }
                let _ = client.try_disconnect();
            });
            subs.push(sub);
        }
        let fleet = Fleet { subs, stop };
        let deadline = Instant::now() + timeout;
        loop {
            let ready = fleet
                .subs
                .iter()
                .filter(|s| s.subscribed.load(Ordering::SeqCst))
                .count();
            if ready == fleet.subs.len() {
                return Ok(fleet);
            }
            if Instant::now() > deadline {
                fleet.stop.cancel();
                bail!(
                    "{label}: only {ready}/{} subscribers subscribed within {timeout:?}",
                    fleet.subs.len()
                );
            }
            std::thread::sleep(Duration::from_millis(10));
        }
    }

    pub fn received(&self) -> u64 {
        self.subs
            .iter()
            .map(|s| s.received.load(Ordering::SeqCst))
            .sum()
    }

    pub fn totals(&self) -> Totals {
        let sum = |f: fn(&Sub) -> &AtomicU64| {
            self.subs
                .iter()
                .map(|s| f(s).load(Ordering::SeqCst))
                .sum::<u64>()
        };
        Totals {
            received: sum(|s| &s.received),
            duplicates: sum(|s| &s.duplicates),
            malformed: sum(|s| &s.malformed),
            connection_errors: sum(|s| &s.connection_errors),
        }
    }

    /// Latest receipt of any subscriber, ns since the signal's epoch.
    pub fn last_rx_ns(&self) -> u64 {
        self.subs
            .iter()
            .map(|s| s.last_rx_ns.load(Ordering::SeqCst))
            .max()
            .unwrap_or(0)
    }

    /// Takes every latency sample recorded so far (ns), unsorted.
    pub fn take_latencies(&self) -> Vec<u64> {
        let mut all = Vec::new();
        for s in &self.subs {
            all.append(&mut s.lock_latencies());
        }
        all
    }

    pub fn stop(&self) {
        self.stop.cancel();
    }
}

impl Drop for Fleet {
    fn drop(&mut self) {
        self.stop.cancel();
    }
}

/// Counters summed over a fleet.
#[derive(Debug, Clone, Copy, Default)]
pub struct Totals {
    pub received: u64,
    pub duplicates: u64,
    pub malformed: u64,
    pub connection_errors: u64,
}

impl std::ops::Sub for Totals {
    type Output = Totals;
    fn sub(self, o: Totals) -> Totals {
        Totals {
            received: self.received - o.received,
            duplicates: self.duplicates - o.duplicates,
            malformed: self.malformed - o.malformed,
            connection_errors: self.connection_errors - o.connection_errors,
        }
    }
}

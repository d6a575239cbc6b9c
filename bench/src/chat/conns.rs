//! **connections**: K idle authenticated MQTT connections, each subscribed
//! to its user's topics: connect rate, chatd's resident memory per
//! connection, and whether a push still reaches a sample of them fast.

use std::net::IpAddr;
use std::sync::atomic::AtomicBool;
use std::sync::Arc;
use std::time::{Duration, Instant};

use anyhow::{anyhow, bail, Result};
use serde::Serialize;
use serde_json::json;
use tokio::task::JoinSet;

use super::chatd::Chatd;
use super::dm::{spawn_receiver, Inbox};
use super::{mqtt, progress, Clock};
use crate::stats::Latency;

#[derive(Debug, Clone, Serialize)]
pub struct ConnReport {
    pub connections: usize,
    /// Persistent sessions (clean session 0) rather than clean ones.
    pub persistent_sessions: bool,
    pub source_addresses: usize,
    pub concurrency: usize,
    pub failed: usize,
    pub connect_secs: f64,
    /// CONNECT to SUBACK for every connection, per second.
    pub connects_per_s: f64,
    /// TCP connect to SUBACK, per connection.
    pub connect_latency: Latency,
    pub rss_before_kib: u64,
    pub rss_connected_kib: u64,
    /// (RSS connected − RSS before) / connections.
    pub rss_per_connection_bytes: f64,
    /// RSS once pages freed while connecting could have been given back:
    /// `SETTLE` after the last connect (and after the sample's pushes; at
    /// once for fewer than 1,000 connections). chatd's allocator (jemalloc)
    /// returns freed pages over 10 s, when it is called.
    pub rss_settled_kib: u64,
    /// (RSS settled − RSS before) / connections.
    pub rss_settled_per_connection_bytes: f64,
    /// Send (HTTP) to receipt on a sampled idle connection.
    pub sample_push: Latency,
    pub sample_missing: usize,
    #[serde(skip)]
    pub samples: Vec<u64>,
}

/// How long after the last connect the settled RSS is read.
const SETTLE: Duration = Duration::from_secs(12);

pub async fn run(
    chatd: &Chatd,
    connections: usize,
    sources: usize,
    concurrency: usize,
    sample: usize,
    persistent: bool,
) -> Result<ConnReport> {
    let users = chatd.provision("conn", connections).await?;
    let sender = chatd
        .provision("connsender", 1)
        .await?
        .pop()
        .ok_or_else(|| anyhow!("no sender"))?;
    // Let chatd settle before the baseline reading.
    tokio::time::sleep(Duration::from_secs(1)).await;
    // A chatd at a given address: its RSS is not ours to read (0).
    let rss_before = chatd.rss_kib().unwrap_or(0);
    let sources: Vec<Option<IpAddr>> = match sources {
        0 | 1 => vec![None],
        n => (1..=n)
            .map(|i| Some(IpAddr::from([127, 0, 0, i as u8])))
            .collect(),
    };

    let clock = Clock::new();
    let stop = Arc::new(AtomicBool::new(false));
    let inbox = Inbox::default();
    let mut readers = JoinSet::new();
    let bar = progress::bar(connections as u64, "connections");
    let mut connecting = JoinSet::new();
    let mut failed = 0;
    let mut connect_ns = Vec::with_capacity(connections);
    let mut first_error = None;
    let started = Instant::now();
    type Attempt = (u64, Result<(mqtt::Subscriber, u64)>);
    let mut settle = |r: Attempt| {
        match r {
            (_, Ok((s, ns))) => {
                spawn_receiver(&mut readers, s, &inbox, &clock, &stop);
                connect_ns.push(ns);
            }
            (id, Err(e)) => {
                failed += 1;
                first_error.get_or_insert(format!("user {id}: {e}"));
            }
        }
        bar.inc(1);
    };
    for (i, u) in users.iter().enumerate() {
        let (addr, u, source) = (chatd.mqtt, u.clone(), sources[i % sources.len()]);
        connecting.spawn(async move {
            let t0 = Instant::now();
            let filter = format!("users/{}/#", u.id);
            let r = mqtt::subscribe_to(addr, source, &u, &filter, !persistent).await;
            (u.id, r.map(|s| (s, t0.elapsed().as_nanos() as u64)))
        });
        while connecting.len() >= concurrency {
            if let Some(r) = connecting.join_next().await {
                settle(r?);
            }
        }
    }
    while let Some(r) = connecting.join_next().await {
        settle(r?);
    }
    let connect_secs = started.elapsed().as_secs_f64();
    bar.finish_and_clear();
    if let Some(e) = &first_error {
        eprintln!("connections: {failed} failed, the first: {e}");
    }
    let connected = connections - failed;
    if connected == 0 {
        bail!("no connection succeeded");
    }
    let connected_at = Instant::now();
    tokio::time::sleep(Duration::from_secs(2)).await;
    let rss_connected = chatd.rss_kib().unwrap_or(0);

    // Pushes to a sample spread over the connections, one at a time.
    let step = (users.len() / sample.max(1)).max(1);
    let targets: Vec<u64> = users
        .iter()
        .step_by(step)
        .take(sample)
        .map(|u| u.id)
        .collect();
    let bar = progress::bar(targets.len() as u64, "pushes to a sample");
    let mut samples = Vec::new();
    let mut missing = 0;
    for (n, to) in targets.iter().enumerate() {
        let t0 = clock.ns();
        let (status, m) = chatd
            .post(
                &sender,
                "/v1/messages",
                &json!({"to": {"user": to}, "client_msg_id": format!("c-{n}"), "body": {"text": "ping"}}),
            )
            .await?;
        if status != 201 {
            bail!("send: {status} {m}");
        }
        let id = m["id"].as_u64().unwrap_or(0);
        let deadline = Instant::now() + Duration::from_secs(5);
        loop {
            let arrived = inbox.arrived.notified();
            tokio::pin!(arrived);
            arrived.as_mut().enable();
            let got = {
                let seen = inbox.receipts.lock().unwrap_or_else(|e| e.into_inner());
                seen.get(&id).map(|r| r.1)
            };
            if let Some(rx) = got {
                samples.push(rx.saturating_sub(t0));
                break;
            }
            if Instant::now() > deadline {
                missing += 1;
                break;
            }
            let _ = tokio::time::timeout(Duration::from_millis(50), arrived).await;
        }
        bar.inc(1);
    }
    bar.finish_and_clear();
    // Small runs (`--quick`) read it at once rather than wait.
    let settle = if connected >= 1_000 {
        SETTLE
    } else {
        Duration::ZERO
    };
    tokio::time::sleep_until((connected_at + settle).into()).await;
    let rss_settled = chatd.rss_kib().unwrap_or(0);
    stop.store(true, std::sync::atomic::Ordering::Relaxed);
    samples.sort_unstable();
    connect_ns.sort_unstable();
    let report = ConnReport {
        connect_latency: Latency::of_sorted(&connect_ns),
        connections: connected,
        persistent_sessions: persistent,
        source_addresses: sources.len(),
        concurrency,
        failed,
        connect_secs,
        connects_per_s: connected as f64 / connect_secs,
        rss_before_kib: rss_before,
        rss_connected_kib: rss_connected,
        rss_per_connection_bytes: (rss_connected.saturating_sub(rss_before) * 1024) as f64
            / connected as f64,
        rss_settled_kib: rss_settled,
        rss_settled_per_connection_bytes: (rss_settled.saturating_sub(rss_before) * 1024) as f64
            / connected as f64,
        sample_push: Latency::of_sorted(&samples),
        sample_missing: missing,
        samples,
    };
    eprintln!(
        "connections: {connected} in {connect_secs:.2} s ({:.0}/s; each p50 {:.2} ms, p99 {:.2} ms, max {:.0} ms), RSS {} → {} KiB ({:.0} B per connection; {:.0} B after {} s), sample push p50 {:.2} ms / max {:.2} ms",
        report.connects_per_s,
        report.connect_latency.p50_ms,
        report.connect_latency.p99_ms,
        report.connect_latency.max_ms,
        rss_before,
        rss_connected,
        report.rss_per_connection_bytes,
        report.rss_settled_per_connection_bytes,
        settle.as_secs(),
        report.sample_push.p50_ms,
        report.sample_push.max_ms
    );
    // Closing 20,000 sockets at once is fast; the readers end with them.
    readers.abort_all();
    Ok(report)
}

//! **sweep**: disappearing messages. A backlog of messages whose time has
//! come (written into the store while chatd is stopped, sent long enough
//! ago that every one is due) is swept when chatd starts, while senders
//! keep sending at a fixed rate: how long the sweep takes, and the sends'
//! latency while it runs against the same load once it is done (idle).

use std::sync::Arc;
use std::time::{Duration, Instant};

use anyhow::{anyhow, bail, Result};
use mqchat_chatsvc::store::{expiry, messages, Store, StoreError};
use serde::Serialize;
use tokio::task::JoinSet;

use super::chatd::{now_ms, BenchUser, Chatd};
use super::progress;
use crate::stats::Latency;

/// Conversations the backlog is spread over.
const CONVERSATIONS: usize = 64;
/// Messages per write transaction while filling.
const FILL_BATCH: usize = 1000;
/// Senders of the load.
const SENDERS: usize = 16;

#[derive(Debug, Clone, Serialize)]
pub struct SweepReport {
    /// Expired messages waiting when chatd started.
    pub backlog: usize,
    /// Sends per second during both phases.
    pub rate: u64,
    /// chatd's `--sweep-batch`, if set.
    pub batch: Option<u64>,
    /// Seconds from chatd answering to the last message swept.
    pub sweep_s: f64,
    /// Messages swept per second.
    pub swept_per_s: f64,
    /// Send latency (request to 201) while the sweep ran.
    pub during: Latency,
    /// The same load once the sweep is done.
    pub idle: Latency,
    /// `during.p99_ms / idle.p99_ms`.
    pub p99_ratio: f64,
}

pub async fn run(
    chatd: &mut Chatd,
    bin: &std::path::Path,
    backlog: usize,
    rate: u64,
    batch: Option<u64>,
) -> Result<SweepReport> {
    let data = chatd
        .sqlite_data_dir()
        .map(|d| d.to_owned())
        .ok_or_else(|| anyhow!("sweep: needs a chatd this tool started, on SQLite"))?;
    let owners = chatd.provision("sweepowner", CONVERSATIONS).await?;
    let peers = chatd.provision("sweeppeer", CONVERSATIONS).await?;
    let senders = chatd.provision("sweepsender", SENDERS).await?;
    let receivers = chatd.provision("sweepreceiver", SENDERS).await?;
    chatd.stop();

    let bar = progress::bar(backlog as u64, "sweep backlog");
    let store = Store::open(&data.join("chat.db"))?;
    let pairs: Vec<(u64, u64)> = owners
        .iter()
        .zip(&peers)
        .map(|(a, b)| (a.id, b.id))
        .collect();
    // Sent an hour ago with a 5 s timer: every message is due at start.
    let sent_at = now_ms() - 3_600_000;
    let conversations = store
        .write(move |c| {
            let mut ids = Vec::with_capacity(pairs.len());
            for &(a, b) in &pairs {
                let id = messages::direct_conversation(c, a, b, sent_at)?;
                expiry::set_message_ttl(c, id, Some(5))?;
                ids.push((id, a));
            }
            Ok::<_, StoreError>(ids)
        })
        .await?;
    let conversations = Arc::new(conversations);
    let mut written = 0;
    while written < backlog {
        let n = FILL_BATCH.min(backlog - written);
        let conversations = conversations.clone();
        let first = written;
        store
            .write(move |c| {
                let bodies: Vec<(u64, u64, String, String)> = (first..first + n)
                    .map(|i| {
                        let (conversation, sender) = conversations[i % conversations.len()];
                        let text =
                            format!("expiring message number {i}, about as long as a chat line");
                        (conversation, sender, format!("x-{i}"), text)
                    })
                    .collect();
                let json: Vec<String> = bodies
                    .iter()
                    .map(|(_, _, _, text)| serde_json::json!({ "text": text }).to_string())
                    .collect();
                let rows: Vec<messages::NewRow<'_>> = bodies
                    .iter()
                    .zip(&json)
                    .map(
                        |((conversation_id, sender, id, text), body)| messages::NewRow {
                            conversation_id: *conversation_id,
                            sender: *sender,
                            client_msg_id: id,
                            body,
                            text: Some(text),
                            kind: "user",
                            now: sent_at,
                            extras: None,
                        },
                    )
                    .collect();
                messages::post_many(c, &rows, "message.created")?;
                Ok::<_, StoreError>(())
            })
            .await?;
        written += n;
        bar.inc(n as u64);
    }
    store.close().await?;
    drop(store);
    bar.finish_and_clear();

    let flags: Vec<String> = batch
        .iter()
        .flat_map(|n| ["--sweep-batch".to_owned(), n.to_string()])
        .collect();
    chatd.restart(bin, &flags).await?;
    let started = Instant::now();
    let load = Load::start(chatd, senders, receivers, rate);
    let bar = progress::bar(backlog as u64, "sweeping");
    loop {
        let swept = swept(chatd).await?;
        bar.set_position(swept as u64);
        if swept >= backlog as f64 {
            break;
        }
        if started.elapsed() > Duration::from_secs(600) {
            bail!("sweep: {swept} of {backlog} swept after 10 minutes");
        }
        tokio::time::sleep(Duration::from_millis(50)).await;
    }
    let sweep_s = started.elapsed().as_secs_f64();
    bar.finish_and_clear();
    let during = load.cut().await;
    // As long again with nothing to sweep (at least 10 s).
    tokio::time::sleep(Duration::from_secs_f64(sweep_s.max(10.0))).await;
    let idle = load.finish().await?;
    let report = SweepReport {
        backlog,
        rate,
        batch,
        sweep_s,
        swept_per_s: backlog as f64 / sweep_s,
        p99_ratio: during.p99_ms / idle.p99_ms.max(f64::MIN_POSITIVE),
        during,
        idle,
    };
    eprintln!(
        "sweep: {} messages in {:.1} s ({:.0}/s); sends at {rate}/s p99 {:.2} ms during, {:.2} ms idle ({:.2}x)",
        backlog,
        report.sweep_s,
        report.swept_per_s,
        report.during.p99_ms,
        report.idle.p99_ms,
        report.p99_ratio
    );
    Ok(report)
}

/// `mqchat_messages_swept_total{reason="ttl"}` from chatd's `/metrics`.
async fn swept(chatd: &Chatd) -> Result<f64> {
    let text = chatd
        .client
        .get(chatd.url("/metrics"))
        .send()
        .await?
        .error_for_status()?
        .text()
        .await?;
    Ok(text
        .lines()
        .find_map(|l| l.strip_prefix("mqchat_messages_swept_total{reason=\"ttl\"} "))
        .and_then(|v| v.trim().parse().ok())
        .unwrap_or(0.0))
}

/// Senders sending direct messages (no timer) at a fixed total rate,
/// recording each send's latency; [`Load::cut`] takes what was recorded
/// so far, [`Load::finish`] stops them and takes the rest.
struct Load {
    samples: Arc<std::sync::Mutex<Vec<u64>>>,
    stop: tokio_util::sync::CancellationToken,
    tasks: JoinSet<Result<()>>,
}

impl Load {
    fn start(chatd: &Chatd, senders: Vec<BenchUser>, receivers: Vec<BenchUser>, rate: u64) -> Load {
        let samples = Arc::new(std::sync::Mutex::new(Vec::new()));
        let stop = tokio_util::sync::CancellationToken::new();
        let mut tasks = JoinSet::new();
        let n = senders.len() as u64;
        let every = Duration::from_secs_f64(n as f64 / rate.max(1) as f64);
        for (k, (from, to)) in senders.into_iter().zip(receivers).enumerate() {
            let (client, url, samples, stop) = (
                chatd.client.clone(),
                chatd.url("/v1/messages"),
                samples.clone(),
                stop.clone(),
            );
            tasks.spawn(async move {
                // Senders take turns, evenly spread over the period.
                tokio::time::sleep(every.mul_f64(k as f64 / n as f64)).await;
                let mut tick = tokio::time::interval(every);
                tick.set_missed_tick_behavior(tokio::time::MissedTickBehavior::Delay);
                let mut j = 0u64;
                loop {
                    tokio::select! {
                        _ = stop.cancelled() => return Ok(()),
                        _ = tick.tick() => {}
                    }
                    let body = format!(
                        r#"{{"to":{{"user":{}}},"client_msg_id":"l-{k}-{j}","body":{{"text":"a message sent while the sweeper runs, or not"}}}}"#,
                        to.id
                    );
                    j += 1;
                    let t = Instant::now();
                    let r = client
                        .post(&url)
                        .bearer_auth(&from.token)
                        .header("content-type", "application/json")
                        .body(body)
                        .send()
                        .await?;
                    if r.status().as_u16() != 201 {
                        bail!("send: {}", r.status());
                    }
                    let ns = t.elapsed().as_nanos() as u64;
                    samples.lock().map_err(|_| anyhow!("poisoned"))?.push(ns);
                }
            });
        }
        Load {
            samples,
            stop,
            tasks,
        }
    }

    /// The latency of the sends recorded since the last cut.
    async fn cut(&self) -> Latency {
        let mut taken = match self.samples.lock() {
            Ok(mut s) => std::mem::take(&mut *s),
            Err(_) => Vec::new(),
        };
        taken.sort_unstable();
        Latency::of_sorted(&taken)
    }

    async fn finish(mut self) -> Result<Latency> {
        self.stop.cancel();
        while let Some(r) = self.tasks.join_next().await {
            r??;
        }
        Ok(self.cut().await)
    }
}

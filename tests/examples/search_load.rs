//! Send latency under a search load (BENCHMARKS.md, "Search under load":
//! searches take turns"): 8 users each send one direct message every 20 ms (400 msg/s
//! in all) for `SECONDS`, first alone, then while 16 other users search in
//! closed loops (or, with `SEARCH_EVERY_MS=N`, each once every N ms);
//! prints p50/p99 of the send round trip for both phases and the searches'
//! rate.
//!
//! `cargo build --bin chatd && cargo run -p mqchat-e2e --example search_load`
//! (`CHATD_BIN` picks another chatd, e.g. an older build, to compare).

use std::sync::atomic::{AtomicBool, AtomicU64, Ordering};
use std::sync::Arc;
use std::time::{Duration, Instant};

use anyhow::{ensure, Result};
use mqchat_e2e::{TestServer, TestUser};

const SENDERS: usize = 8;
const SEARCHERS: usize = 16;
const SEND_EVERY: Duration = Duration::from_millis(20);
const SECONDS: u64 = 10;

/// Send round trips, in microseconds, sorted.
async fn send_phase(senders: &[TestUser], peer: u64, phase: &str) -> Result<Vec<u64>> {
    let mut tasks = tokio::task::JoinSet::new();
    for (i, s) in senders.iter().cloned().enumerate() {
        let phase = phase.to_owned();
        tasks.spawn(async move {
            let mut took = Vec::new();
            let mut tick = tokio::time::interval(SEND_EVERY);
            let end = Instant::now() + Duration::from_secs(SECONDS);
            let mut n = 0;
            while Instant::now() < end {
                tick.tick().await;
                let started = Instant::now();
                let (status, m) = s
                    .send_text(peer, &format!("{phase}-{i}-{n}"), "status update")
                    .await?;
                ensure!(status == 201, "{status} {m}");
                took.push(started.elapsed().as_micros() as u64);
                n += 1;
            }
            Ok::<_, anyhow::Error>(took)
        });
    }
    let mut all = Vec::new();
    while let Some(r) = tasks.join_next().await {
        all.extend(r??);
    }
    all.sort_unstable();
    Ok(all)
}

/// The writer's (jobs, commits) so far.
async fn writer(server: &TestServer) -> Result<(f64, f64)> {
    // Builds before the metrics were renamed (`CHATD_BIN` of an older
    // chatd) export the same histogram as `store_commit_batch_size`.
    let mut counts = (0.0, 0.0);
    for prefix in ["mqchat_store_commit_jobs", "store_commit_batch_size"] {
        counts = (
            server.metric(&format!("{prefix}_sum")).await?,
            server.metric(&format!("{prefix}_count")).await?,
        );
        if counts.1 > 0.0 {
            break;
        }
    }
    Ok(counts)
}

fn report(phase: &str, took: &[u64], writer: ((f64, f64), (f64, f64)), extra: &str) {
    let at = |q: f64| took[((took.len() as f64 * q) as usize).min(took.len() - 1)] as f64 / 1000.0;
    let ((jobs0, commits0), (jobs1, commits1)) = writer;
    println!(
        "{phase:>16}: {} sends, p50 {:.1} ms, p99 {:.1} ms; writer: {} jobs, {} commits{extra}",
        took.len(),
        at(0.50),
        at(0.99),
        jobs1 - jobs0,
        commits1 - commits0,
    );
}

#[tokio::main]
async fn main() -> Result<()> {
    let server = TestServer::start_with(&["--send-rate", "0", "--auth-ip-rate", "0"]).await?;
    let peer = server.user("peer").await?;
    let mut senders = Vec::new();
    for i in 0..SENDERS {
        senders.push(server.user(&format!("sender{i}")).await?);
    }
    let mut searchers = Vec::new();
    for i in 0..SEARCHERS {
        let s = server.user(&format!("searcher{i}")).await?;
        // Something to find in each searcher's own conversations.
        for n in 0..50 {
            senders[0]
                .send_text(s.id, &format!("seed-{i}-{n}"), "the quarterly report")
                .await?;
        }
        searchers.push(s);
    }

    let before = writer(&server).await?;
    let alone = send_phase(&senders, peer.id, "alone").await?;
    report("no search", &alone, (before, writer(&server).await?), "");

    let pace = std::env::var("SEARCH_EVERY_MS")
        .ok()
        .and_then(|v| v.parse().ok())
        .map(Duration::from_millis);
    let stop = Arc::new(AtomicBool::new(false));
    let searches = Arc::new(AtomicU64::new(0));
    let mut loops = tokio::task::JoinSet::new();
    for s in searchers {
        let (stop, searches) = (stop.clone(), searches.clone());
        loops.spawn(async move {
            let mut tick = pace.map(tokio::time::interval);
            while !stop.load(Ordering::Relaxed) {
                if let Some(tick) = tick.as_mut() {
                    tick.tick().await;
                }
                let (status, found) = s.get("/v1/search?q=quarterly").await?;
                ensure!(status == 200, "{status} {found}");
                searches.fetch_add(1, Ordering::Relaxed);
            }
            Ok::<_, anyhow::Error>(())
        });
    }
    let before = writer(&server).await?;
    let loaded = send_phase(&senders, peer.id, "loaded").await?;
    let after = writer(&server).await?;
    stop.store(true, Ordering::Relaxed);
    while let Some(r) = loops.join_next().await {
        r??;
    }
    let rate = searches.load(Ordering::Relaxed) as f64 / SECONDS as f64;
    report(
        "16 search loops",
        &loaded,
        (before, after),
        &format!("; {rate:.0} searches/s"),
    );
    Ok(())
}

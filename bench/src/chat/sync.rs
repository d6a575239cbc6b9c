//! **sync**: a user who was away comes back to a backlog of events and
//! catches up over `GET /v1/sync`, page after page.

use std::sync::Arc;
use std::time::Instant;

use anyhow::{anyhow, bail, Result};
use serde::Serialize;
use tokio::task::JoinSet;

use super::chatd::{BenchUser, Chatd};
use super::progress;
use crate::stats::median;

#[derive(Debug, Clone, Serialize)]
pub struct SyncRun {
    pub ms: f64,
    pub events: u64,
    pub pages: u64,
    pub bytes: u64,
}

#[derive(Debug, Clone, Serialize)]
pub struct SyncReport {
    pub backlog: usize,
    pub page: usize,
    /// Backlog written over HTTP (messages/s), for reference.
    pub fill_per_s: f64,
    pub runs: Vec<SyncRun>,
    pub median_ms: f64,
    pub min_ms: f64,
    pub bytes: u64,
}

pub async fn run(chatd: &Chatd, backlog: usize, page: usize, reps: usize) -> Result<SyncReport> {
    let reader = chatd
        .provision("syncreader", 1)
        .await?
        .pop()
        .ok_or_else(|| anyhow!("no reader"))?;
    let senders = Arc::new(chatd.provision("syncsender", 8).await?);
    let bar = progress::bar(backlog as u64, "sync backlog");
    let started = Instant::now();
    let mut tasks = JoinSet::new();
    let lanes = 16;
    for lane in 0..lanes {
        let (client, url, senders, to, bar) = (
            chatd.client.clone(),
            chatd.url("/v1/messages"),
            senders.clone(),
            reader.id,
            bar.clone(),
        );
        tasks.spawn(async move {
            let mut n = lane;
            while n < backlog {
                let from: &BenchUser = &senders[n % senders.len()];
                let body = format!(
                    r#"{{"to":{{"user":{to}}},"client_msg_id":"s-{n}","body":{{"text":"backlog message number {n}, about as long as a chat line"}}}}"#
                );
                let r = client
                    .post(&url)
                    .bearer_auth(&from.token)
                    .header("content-type", "application/json")
                    .body(body)
                    .send()
                    .await?;
                if r.status().as_u16() != 201 {
                    bail!("backlog send: {}", r.status());
                }
                bar.inc(1);
                n += lanes;
            }
            Ok::<_, anyhow::Error>(())
        });
    }
    while let Some(r) = tasks.join_next().await {
        r??;
    }
    let fill_per_s = backlog as f64 / started.elapsed().as_secs_f64();
    bar.finish_and_clear();

    let mut runs = Vec::new();
    let bar = progress::bar(reps as u64, "sync catch-up");
    for _ in 0..reps {
        runs.push(catch_up(chatd, &reader, page).await?);
        bar.inc(1);
    }
    bar.finish_and_clear();
    let events = runs.first().map_or(0, |r| r.events);
    // Every message, plus the reader's own events if any: at least the backlog.
    if events < backlog as u64 {
        bail!("sync returned {events} events, expected at least {backlog}");
    }
    let report = SyncReport {
        backlog,
        page,
        fill_per_s,
        median_ms: median(runs.iter().map(|r| r.ms)),
        min_ms: runs.iter().map(|r| r.ms).fold(f64::MAX, f64::min),
        bytes: runs.first().map_or(0, |r| r.bytes),
        runs,
    };
    eprintln!(
        "sync: {} events in {:.0} ms (median of {reps}), {} KiB",
        events,
        report.median_ms,
        report.bytes / 1024
    );
    Ok(report)
}

/// One full catch-up from cursor 0, as a client after a long absence does.
async fn catch_up(chatd: &Chatd, reader: &BenchUser, page: usize) -> Result<SyncRun> {
    #[derive(serde::Deserialize)]
    struct Page {
        events: Vec<serde::de::IgnoredAny>,
        cursor: u64,
        has_more: bool,
    }
    let started = Instant::now();
    let (mut after, mut events, mut pages, mut bytes) = (0u64, 0u64, 0u64, 0u64);
    loop {
        let body = chatd
            .client
            .get(chatd.url(&format!("/v1/sync?after={after}&limit={page}")))
            .bearer_auth(&reader.token)
            .send()
            .await?
            .error_for_status()?
            .bytes()
            .await?;
        let p: Page = serde_json::from_slice(&body)?;
        bytes += body.len() as u64;
        events += p.events.len() as u64;
        pages += 1;
        after = p.cursor;
        if !p.has_more {
            break;
        }
    }
    Ok(SyncRun {
        ms: started.elapsed().as_secs_f64() * 1000.0,
        events,
        pages,
        bytes,
    })
}

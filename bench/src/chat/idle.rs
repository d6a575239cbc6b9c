//! **idle**: a fresh chatd on an empty data dir: time from start to ready
//! (`/healthz` answers), and resident memory once it idles.

use std::path::Path;
use std::time::Duration;

use anyhow::{anyhow, Result};
use serde::Serialize;

use super::chatd::Chatd;
use super::progress;
use crate::stats::median;

#[derive(Debug, Clone, Serialize)]
pub struct IdleReport {
    pub starts: usize,
    pub start_to_ready_ms: Vec<f64>,
    pub median_start_ms: f64,
    pub max_start_ms: f64,
    /// After one second of idling, per start.
    pub rss_kib: Vec<u64>,
    pub median_rss_kib: f64,
}

pub async fn run(bin: &Path, starts: usize) -> Result<IdleReport> {
    let bar = progress::bar(starts as u64, "idle starts");
    let (mut ready, mut rss) = (Vec::new(), Vec::new());
    for _ in 0..starts {
        let chatd = Chatd::spawn(bin, &[], None).await?;
        ready.push(
            chatd
                .start_to_ready
                .ok_or_else(|| anyhow!("no start time"))?
                .as_secs_f64()
                * 1000.0,
        );
        tokio::time::sleep(Duration::from_secs(1)).await;
        rss.push(chatd.rss_kib().unwrap_or(0));
        bar.inc(1);
    }
    bar.finish_and_clear();
    let report = IdleReport {
        starts,
        median_start_ms: median(ready.iter().copied()),
        max_start_ms: ready.iter().copied().fold(0.0, f64::max),
        median_rss_kib: median(rss.iter().map(|&r| r as f64)),
        start_to_ready_ms: ready,
        rss_kib: rss,
    };
    eprintln!(
        "idle: start to ready {:.0} ms (median of {starts}), RSS {:.1} MiB",
        report.median_start_ms,
        report.median_rss_kib / 1024.0
    );
    Ok(report)
}

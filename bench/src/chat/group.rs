//! **group**: one group with every member online; messages sent one after
//! another, each timed until the last member has it.

use std::sync::atomic::AtomicBool;
use std::sync::Arc;
use std::time::{Duration, Instant};

use anyhow::{anyhow, bail, Result};
use serde::Serialize;
use serde_json::json;

use super::chatd::Chatd;
use super::dm::receive_all;
use super::{progress, Clock};
use crate::stats::Latency;

#[derive(Debug, Clone, Serialize)]
pub struct GroupReport {
    pub members: usize,
    pub messages: usize,
    /// HTTP send: request to the 201 (the commit that writes every inbox row).
    pub send: Latency,
    /// From the request to the last member's receipt.
    pub last_delivery: Latency,
    /// From the request to the first member's receipt.
    pub first_delivery: Latency,
    pub deliveries_per_s: f64,
    /// Deliveries missing after the wait (should be 0).
    pub missing: u64,
    #[serde(skip)]
    pub samples: Vec<u64>,
}

pub async fn run(chatd: &Chatd, members: usize, messages: usize) -> Result<GroupReport> {
    if members < 2 {
        bail!("a group needs at least 2 members");
    }
    let users = chatd.provision("grp", members).await?;
    let owner = users[0].clone();
    let others: Vec<u64> = users[1..].iter().map(|u| u.id).collect();
    let (status, group) = chatd
        .post(
            &owner,
            "/v1/groups",
            &json!({"name": "chat-bench", "members": others}),
        )
        .await?;
    if status != 201 {
        bail!("create group: {status} {group}");
    }
    let gid = group["id"]
        .as_u64()
        .ok_or_else(|| anyhow!("group without id: {group}"))?;
    let clock = Clock::new();
    let stop = Arc::new(AtomicBool::new(false));
    let (inbox, _tasks) = receive_all(chatd, &users, &clock, &stop, "members online").await?;

    let bar = progress::bar(messages as u64, "group messages");
    let (mut send, mut last, mut first) = (Vec::new(), Vec::new(), Vec::new());
    let mut missing = 0;
    let started = Instant::now();
    for n in 0..messages {
        let t0 = clock.ns();
        let (status, m) = chatd
            .post(
                &owner,
                "/v1/messages",
                &json!({"to": {"group": gid}, "client_msg_id": format!("g-{n}"), "body": {"text": format!("group message {n}")}}),
            )
            .await?;
        let t1 = clock.ns();
        if status != 201 {
            bail!("send to the group: {status} {m}");
        }
        let id = m["id"]
            .as_u64()
            .ok_or_else(|| anyhow!("message without id: {m}"))?;
        let deadline = Instant::now() + Duration::from_secs(10);
        let (count, rx_first, rx_last) = loop {
            let arrived = inbox.arrived.notified();
            tokio::pin!(arrived);
            arrived.as_mut().enable();
            let now = {
                let seen = inbox.receipts.lock().unwrap_or_else(|e| e.into_inner());
                seen.get(&id).copied().unwrap_or((0, 0, 0))
            };
            if now.0 as usize >= members || Instant::now() > deadline {
                break now;
            }
            let _ = tokio::time::timeout(Duration::from_millis(50), arrived).await;
        };
        missing += members.saturating_sub(count as usize) as u64;
        send.push(t1 - t0);
        if count > 0 {
            last.push(rx_last.saturating_sub(t0));
            first.push(rx_first.saturating_sub(t0));
        }
        bar.inc(1);
    }
    let elapsed = started.elapsed().as_secs_f64();
    bar.finish_and_clear();
    stop.store(true, std::sync::atomic::Ordering::Relaxed);
    send.sort_unstable();
    last.sort_unstable();
    first.sort_unstable();
    let report = GroupReport {
        members,
        messages,
        send: Latency::of_sorted(&send),
        last_delivery: Latency::of_sorted(&last),
        first_delivery: Latency::of_sorted(&first),
        deliveries_per_s: (messages * members) as f64 / elapsed,
        missing,
        samples: last,
    };
    eprintln!(
        "group of {members}: send p50 {:.1} ms, last delivery p50 {:.1} / p99 {:.1} ms, {:.0} deliveries/s, {missing} missing",
        report.send.p50_ms, report.last_delivery.p50_ms, report.last_delivery.p99_ms, report.deliveries_per_s
    );
    Ok(report)
}

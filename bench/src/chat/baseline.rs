//! **baseline**: the limits the end-to-end figures are read against,
//! measured in the same run: bare rumqttd's QoS 1 push throughput (no
//! gateway, no HTTP, no store), and chatsvc's send path on its SQLite writer
//! alone (domain rules + group commit, no HTTP, no MQTT).

use std::sync::Arc;
use std::time::{Duration, Instant};

use anyhow::Result;
use mqchat_chatsvc::domain::limits::RateConfig;
use mqchat_chatsvc::domain::messages::NewMessage;
use mqchat_chatsvc::domain::model::Recipient;
use mqchat_chatsvc::domain::tokens::Caller;
use mqchat_chatsvc::domain::{Chat, Limits, Tokens};
use mqchat_chatsvc::downlink::NoDownlink;
use mqchat_chatsvc::store::{users, Store, StoreError};
use serde::Serialize;
use serde_json::value::RawValue;
use tokio::task::JoinSet;

use super::progress;
use crate::stats::Latency;

#[derive(Debug, Clone, Serialize)]
pub struct StoreBaseline {
    pub senders: usize,
    pub seconds: f64,
    pub messages: u64,
    pub per_s: f64,
    /// One `Chat::send` call, from call to committed answer.
    pub send: Latency,
    /// CPU µs per message by thread (`store-writer` is the one writer).
    pub cpu_us_per_msg: std::collections::BTreeMap<String, f64>,
    /// What the store wrote per message (WAL frames, checkpoints into the
    /// database file), from `/proc/self/io`: unlike CPU time, this does not
    /// drift with the machine's speed, so it compares two versions of the
    /// write path within one hour or across days.
    pub written: Option<Written>,
}

/// Writes per message through the kernel (`/proc/self/io`'s `wchar` and
/// `syscw`).
#[derive(Debug, Clone, Copy, Serialize)]
pub struct Written {
    /// Bytes, e.g. a WAL frame is a 24-byte header and a 4 KiB page.
    pub bytes_per_msg: f64,
    /// Write calls: SQLite writes a frame's header and its page separately.
    pub calls_per_msg: f64,
}

/// `(wchar, syscw)` of this process so far.
fn io_written() -> Option<(u64, u64)> {
    let io = std::fs::read_to_string("/proc/self/io").ok()?;
    let field = |name: &str| {
        io.lines()
            .find_map(|l| l.strip_prefix(name)?.trim().parse::<u64>().ok())
    };
    Some((field("wchar:")?, field("syscw:")?))
}

#[derive(Debug, Clone, Serialize)]
pub struct BareBaseline {
    pub subscribers: u64,
    pub messages: u64,
    pub runs: usize,
    pub delivered_per_s: f64,
    pub lost: u64,
}

/// Runs bare rumqttd in this process (its own runtimes and threads). Call
/// it outside any tokio runtime.
pub fn bare(subscribers: u64, messages: u64, reps: usize) -> Result<BareBaseline> {
    eprintln!("baseline: bare rumqttd, {subscribers} subscribers, {reps} × {messages} pushes");
    let t = crate::bare_rumqttd_throughput(subscribers, messages, reps)?;
    eprintln!("baseline: bare rumqttd {:.0} pushes/s", t.delivered_per_s);
    Ok(BareBaseline {
        subscribers,
        messages,
        runs: t.runs,
        delivered_per_s: t.delivered_per_s,
        lost: t.lost_total,
    })
}

/// chatsvc's `Chat` on `store` with no send rate limit and no downlink,
/// and `senders` + `receivers` new users to send with: what the store-alone
/// figures (this baseline, `examples/writer_cost.rs`) send through.
/// Returns the chat, the senders' ids and the receivers'.
pub async fn unlimited_chat(
    store: &Store,
    senders: usize,
    receivers: usize,
) -> Result<(Chat, Vec<u64>, Vec<u64>)> {
    let now = super::chatd::now_ms();
    let total = senders + receivers;
    let mut ids: Vec<u64> = store
        .write(move |c| {
            (0..total)
                .map(|i| Ok(users::insert(c, &format!("base{i}"), "!", now)?.id))
                .collect::<Result<Vec<u64>, StoreError>>()
        })
        .await?;
    let receiver_ids = ids.split_off(senders);
    let limits = Limits {
        rates: RateConfig {
            sends_per_user_per_sec: 0,
            ..RateConfig::default()
        },
        ..Limits::default()
    };
    let tokens = Arc::new(Tokens::new(
        &[7u8; 64],
        Duration::from_secs(60),
        Duration::from_secs(60),
    ));
    let chat = Chat::new(store.clone(), tokens, Arc::new(NoDownlink), limits);
    Ok((chat, ids, receiver_ids))
}

/// `senders` tasks call `Chat::send` back to back for `secs`, to
/// `receivers` recipients in turn, on a fresh store in a temp dir.
pub async fn store(
    senders: usize,
    receivers: usize,
    secs: f64,
    text_bytes: usize,
) -> Result<StoreBaseline> {
    let dir = tempfile::Builder::new()
        .prefix("chat-bench-store-")
        .tempdir()?;
    let store = Store::open(&dir.path().join("chat.db"))?;
    let (chat, sender_ids, receiver_ids) = unlimited_chat(&store, senders, receivers).await?;
    let receiver_ids: Arc<Vec<u64>> = Arc::new(receiver_ids);
    let text = "x".repeat(text_bytes);
    let bar = progress::timed(secs, "baseline: store alone");
    let cpu_before = crate::cpu::by_thread_name(None);
    let io_before = io_written();
    let started = Instant::now();
    let until = started + Duration::from_secs_f64(secs);
    let mut tasks = JoinSet::new();
    for (k, &from) in sender_ids.iter().enumerate() {
        let (chat, receivers, text) = (chat.clone(), receiver_ids.clone(), text.clone());
        tasks.spawn(async move {
            let caller = Caller {
                user_id: from,
                session_id: 0,
                service: None,
            };
            let mut lat = Vec::new();
            let mut j = 0usize;
            while Instant::now() < until {
                let body = RawValue::from_string(format!(r#"{{"text":"{text}"}}"#))?;
                let m = NewMessage {
                    to: Recipient::User(receivers[(k + j) % receivers.len()]),
                    client_msg_id: format!("b-{k}-{j}"),
                    body,
                    extras: Default::default(),
                };
                let t0 = Instant::now();
                chat.send(caller, m).await?;
                lat.push(t0.elapsed().as_nanos() as u64);
                j += 1;
            }
            Ok::<_, anyhow::Error>(lat)
        });
    }
    let ticker = {
        let bar = bar.clone();
        tokio::spawn(async move {
            loop {
                tokio::time::sleep(Duration::from_millis(100)).await;
                bar.inc(1);
            }
        })
    };
    let mut samples = Vec::new();
    while let Some(r) = tasks.join_next().await {
        samples.extend(r??);
    }
    let seconds = started.elapsed().as_secs_f64();
    let cpu = crate::cpu::us_per(
        &cpu_before,
        &crate::cpu::by_thread_name(None),
        samples.len() as u64,
    );
    let written = io_written()
        .zip(io_before)
        .filter(|_| !samples.is_empty())
        .map(|((bytes, calls), (bytes0, calls0))| {
            let n = samples.len() as f64;
            Written {
                bytes_per_msg: bytes.saturating_sub(bytes0) as f64 / n,
                calls_per_msg: calls.saturating_sub(calls0) as f64 / n,
            }
        });
    ticker.abort();
    bar.finish_and_clear();
    samples.sort_unstable();
    let report = StoreBaseline {
        senders,
        seconds,
        messages: samples.len() as u64,
        per_s: samples.len() as f64 / seconds,
        send: Latency::of_sorted(&samples),
        cpu_us_per_msg: cpu,
        written,
    };
    eprintln!(
        "baseline: store alone {:.0} messages/s (send p50 {:.2} ms), CPU µs per message {:?}, written per message {:?}",
        report.per_s, report.send.p50_ms, report.cpu_us_per_msg, report.written
    );
    Ok(report)
}

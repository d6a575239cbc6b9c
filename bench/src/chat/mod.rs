//! `chat-bench`: what a whole chatd carries on this machine, end to end:
//! HTTP sends in, MQTT pushes out, SQLite underneath.
//!
//! Each scenario starts its own chatd (release build, fresh data dir,
//! loopback ports) as a separate process, or uses one at `--http`/`--mqtt`;
//! the load runs in this process. See BENCHMARKS.md for the scenarios, the
//! targets, and the figures.
//!
//! # Layout
//! - `chatd`: the process under test, users for the load, RSS.
//! - `mqtt`: a minimal subscriber (thousands of them stay cheap).
//! - `http1`, `http2`: a sender's own HTTP connection (no pool).
//! - `dm` (over HTTP/1.1, HTTP/2, or the MQTT uplink), `group`, `conns`, `sync`, `idle`,
//!   `sweep`, `baseline`, `bare_dm` (the dm load on bare rumqttd): the scenarios.
//! - `report`: targets and verdicts, JSON, Markdown, the latency plot.

mod bare_dm;
mod baseline;
mod chatd;
mod cluster;
mod conns;
mod dm;
mod group;
mod http1;
mod http2;
mod idle;
mod mqtt;
mod nats;
mod progress;
mod report;
mod sweep;
mod sync;

use std::net::SocketAddr;
use std::path::PathBuf;
use std::sync::Arc;
use std::time::Instant;

use anyhow::{bail, Result};
use clap::Parser;
use serde::Serialize;

pub use self::baseline::unlimited_chat;
use self::chatd::Chatd;
pub use self::report::ChatReport;

/// The scenarios.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize, clap::ValueEnum)]
#[serde(rename_all = "lowercase")]
pub enum Scenario {
    /// One-to-one messages: latency at fixed rates, saturation throughput.
    Dm,
    /// The same, with the senders on the MQTT uplink instead of HTTP.
    DmMqtt,
    /// The same over HTTP/2: each sender one connection with a window of
    /// sends in flight, as streams (what a service sending in bulk does).
    DmH2,
    /// The same over `POST /v1/messages/batch`: each sender one HTTP/1.1
    /// connection, each request a batch of the sends that are due.
    DmBatch,
    /// A large group, every member online: time to the last member.
    Group,
    /// Many idle connections: connect rate, RSS per connection.
    Connections,
    /// Catching up on a backlog over /v1/sync.
    Sync,
    /// Disappearing messages: a backlog of expired messages swept at start
    /// while senders send at a fixed rate (SQLite; not in the default set).
    Sweep,
    /// A fresh chatd: start to ready, idle RSS.
    Idle,
    /// Bare rumqttd (pushing from inside the process, and under the dm
    /// load over TCP) and the store alone, for ratios.
    Baseline,
    /// The dm load at one rate on 1, 2 and 3 nodes over NATS (receivers on
    /// another node than the senders) against one node without the bus.
    /// Needs `--store` (PostgreSQL) and nats-server; not in the default set.
    Cluster,
}

/// End-to-end benchmarks of chatd.
#[derive(Debug, Clone, Parser, Serialize)]
#[command(name = "chat-bench", version)]
pub struct Args {
    /// Scenarios to run, in this order.
    #[arg(
        long,
        value_enum,
        value_delimiter = ',',
        default_value = "baseline,idle,dm,dm-mqtt,dm-h2,dm-batch,group,sync,connections"
    )]
    pub scenarios: Vec<Scenario>,
    /// The chatd binary to start (default: the one next to this binary).
    #[arg(long)]
    pub chatd: Option<PathBuf>,
    /// Use the chatd serving HTTP here instead of starting one (with
    /// `--mqtt`). Its RSS is not read; users register over HTTP, so keep
    /// the counts small and its rate limits off.
    #[arg(long, requires = "mqtt")]
    pub http: Option<SocketAddr>,
    /// MQTT address of the chatd given by `--http`.
    #[arg(long, requires = "http")]
    pub mqtt: Option<SocketAddr>,
    /// Data dir of the chatd given by `--http`, if this tool may write to
    /// its store: users are then provisioned there instead of over HTTP.
    #[arg(long, requires = "http")]
    pub data_dir: Option<PathBuf>,
    /// Run the chatd processes this tool starts on PostgreSQL: a URL whose
    /// role may create databases (`postgres://USER@HOST:PORT/postgres`);
    /// each chatd gets a fresh database of its own, dropped at the end.
    /// Without it, SQLite in a temp data dir.
    #[arg(long, conflicts_with = "http")]
    pub store: Option<String>,

    /// dm: senders, each one HTTP keep-alive connection (sends in flight
    /// at saturation: the group commit batches that many).
    #[arg(long, default_value_t = 64)]
    pub senders: usize,
    /// dm: receivers online over MQTT (QoS 1).
    #[arg(long, default_value_t = 100)]
    pub receivers: usize,
    /// dm: fixed rates, messages/s.
    #[arg(long, value_delimiter = ',', default_value = "1000,10000")]
    pub rates: Vec<u64>,
    /// dm: seconds per fixed rate.
    #[arg(long, default_value_t = 5.0)]
    pub rate_secs: f64,
    /// dm: seconds at saturation.
    #[arg(long, default_value_t = 5.0)]
    pub saturation_secs: f64,
    /// dm: characters of text per message.
    #[arg(long, default_value_t = 64)]
    pub text_bytes: usize,
    /// dm-mqtt, dm-h2 and dm-batch: sends in flight per sender (chatd
    /// queues at most 32 per MQTT connection, serves up to 200 streams per
    /// HTTP/2 one, and takes up to 100 sends per batch).
    #[arg(long, default_value_t = 16)]
    pub uplink_window: usize,

    /// group: members, all online (the sender is one of them).
    #[arg(long, default_value_t = 1000)]
    pub members: usize,
    /// group: messages, one after another.
    #[arg(long, default_value_t = 100)]
    pub group_messages: usize,

    /// connections: idle authenticated connections to open.
    #[arg(long, default_value_t = 19_000)]
    pub connections: usize,
    /// connections: loopback source addresses to spread them over
    /// (127.0.0.1..=127.0.0.N). With one, the kernel's search for a free
    /// ephemeral port slows this side's connects past ~10,000 connections.
    #[arg(long, default_value_t = 8)]
    pub source_addrs: usize,
    /// connections: connection attempts in flight at once.
    #[arg(long, default_value_t = 256)]
    pub connect_concurrency: usize,
    /// connections: idle connections a push is sent to and timed.
    #[arg(long, default_value_t = 100)]
    pub push_sample: usize,
    /// connections: connect with persistent sessions (clean session 0),
    /// which chatd serves through a router link each, instead of clean ones.
    #[arg(long)]
    pub persistent_sessions: bool,

    /// cluster: node counts to run with the bus (one node without it
    /// always runs first, for comparison).
    #[arg(long, value_delimiter = ',', default_value = "1,2,3")]
    pub cluster_nodes: Vec<usize>,
    /// cluster: the fixed rate, messages/s (for `--rate-secs`).
    #[arg(long, default_value_t = 5000)]
    pub cluster_rate: u64,
    /// cluster: the nats-server binary (default: on PATH, or
    /// /usr/sbin/nats-server).
    #[arg(long)]
    pub nats_server: Option<PathBuf>,

    /// sync: events in the backlog.
    #[arg(long, default_value_t = 10_000)]
    pub backlog: usize,
    /// sync: events per page (chatd allows up to 500).
    #[arg(long, default_value_t = 500)]
    pub sync_page: usize,
    /// sync: catch-ups timed.
    #[arg(long, default_value_t = 5)]
    pub sync_reps: usize,

    /// sweep: expired messages waiting when chatd starts.
    #[arg(long, default_value_t = 100_000)]
    pub sweep_backlog: usize,
    /// sweep: sends per second while it sweeps, and after.
    #[arg(long, default_value_t = 500)]
    pub sweep_rate: u64,
    /// sweep: chatd's `--sweep-batch` (default: chatd's own).
    #[arg(long)]
    pub sweep_batch: Option<u64>,

    /// idle: fresh starts timed.
    #[arg(long, default_value_t = 5)]
    pub starts: usize,

    /// baseline: pushes per bare rumqttd run.
    #[arg(long, default_value_t = 200_000)]
    pub bare_messages: u64,
    /// baseline: bare rumqttd runs (the median is reported).
    #[arg(long, default_value_t = 3)]
    pub bare_reps: usize,

    /// Small sizes everywhere, to check the tool itself quickly.
    #[arg(long)]
    pub quick: bool,
    /// Write results.json, results.md and latency.svg here.
    #[arg(long)]
    pub out_dir: Option<PathBuf>,
}

impl Args {
    fn apply_quick(&mut self) {
        if self.quick {
            self.senders = self.senders.min(4);
            self.receivers = self.receivers.min(8);
            self.rates = vec![200];
            self.rate_secs = self.rate_secs.min(1.0);
            self.saturation_secs = self.saturation_secs.min(1.0);
            self.members = self.members.min(20);
            self.group_messages = self.group_messages.min(5);
            self.connections = self.connections.min(200);
            self.push_sample = self.push_sample.min(10);
            self.backlog = self.backlog.min(300);
            self.sync_reps = self.sync_reps.min(2);
            self.sweep_backlog = self.sweep_backlog.min(2_000);
            self.sweep_rate = self.sweep_rate.min(100);
            self.starts = self.starts.min(2);
            self.bare_messages = self.bare_messages.min(5_000);
            self.bare_reps = 1;
            self.cluster_rate = self.cluster_rate.min(200);
        }
    }
}

/// One clock for the whole run: nanoseconds since the run started.
#[derive(Debug, Clone)]
pub struct Clock(Arc<Instant>);

impl Clock {
    pub fn new() -> Clock {
        Clock(Arc::new(Instant::now()))
    }

    pub fn ns(&self) -> u64 {
        self.0.elapsed().as_nanos() as u64
    }
}

impl Default for Clock {
    fn default() -> Self {
        Clock::new()
    }
}

/// Runs the scenarios; prints the report (JSON on stdout, progress and a
/// Markdown summary on stderr) and writes it to `--out-dir`.
pub fn main(mut args: Args) -> Result<()> {
    args.apply_quick();
    if args.senders == 0
        || args.receivers == 0
        || args.connect_concurrency == 0
        || args.uplink_window == 0
    {
        bail!("--senders, --receivers, --connect-concurrency and --uplink-window must be positive");
    }
    let mut report = ChatReport::new(&args);
    eprintln!("machine: {}", report.machine.line());
    // Bare rumqttd runs its own runtimes: before ours exists.
    if args.scenarios.contains(&Scenario::Baseline) {
        report.bare = Some(baseline::bare(
            args.receivers as u64,
            args.bare_messages,
            args.bare_reps,
        )?);
    }
    let rt = tokio::runtime::Builder::new_multi_thread()
        .worker_threads(2)
        .thread_name("bench-rt")
        .enable_all()
        .build()?;
    rt.block_on(scenarios(&args, &mut report))?;
    rt.shutdown_timeout(std::time::Duration::from_secs(1));
    report.judge();
    let json = serde_json::to_string_pretty(&report)?;
    println!("{json}");
    let markdown = report.markdown();
    eprintln!("\n{markdown}");
    if let Some(dir) = &args.out_dir {
        std::fs::create_dir_all(dir)?;
        std::fs::write(dir.join("results.json"), &json)?;
        std::fs::write(dir.join("results.md"), &markdown)?;
        std::fs::write(dir.join("latency.svg"), report.latency_svg())?;
        eprintln!("wrote {}", dir.display());
    }
    if report.failed_checks() > 0 {
        bail!(
            "{} correctness checks failed (loss, duplicates, missing)",
            report.failed_checks()
        );
    }
    Ok(())
}

async fn scenarios(args: &Args, report: &mut ChatReport) -> Result<()> {
    let bin = match args.http {
        Some(_) => None,
        None => Some(chatd::locate(args.chatd.as_deref())?),
    };
    let databases = match &args.store {
        Some(url) => Some(tokio::sync::Mutex::new(
            chatd::Databases::connect(url).await?,
        )),
        None => None,
    };
    let result = run_scenarios(args, report, bin, databases.as_ref()).await;
    if let Some(d) = &databases {
        d.lock().await.drop_all().await;
    }
    result
}

async fn run_scenarios(
    args: &Args,
    report: &mut ChatReport,
    bin: Option<PathBuf>,
    databases: Option<&tokio::sync::Mutex<chatd::Databases>>,
) -> Result<()> {
    let start = |extra: Vec<String>| {
        let bin = bin.clone();
        async move {
            let store = match databases {
                Some(d) => Some(d.lock().await.create().await?),
                None => None,
            };
            match (bin, args.http, args.mqtt) {
                (Some(bin), _, _) => Chatd::spawn(&bin, &extra, store).await,
                (None, Some(http), Some(mqtt)) => Chatd::attach(http, mqtt, args.data_dir.clone()),
                _ => bail!("give both --http and --mqtt"),
            }
        }
    };
    for s in &args.scenarios {
        match s {
            Scenario::Baseline => {
                report.store = Some(
                    baseline::store(
                        args.senders,
                        args.receivers,
                        args.saturation_secs,
                        args.text_bytes,
                    )
                    .await?,
                );
                report.bare_dm = Some(
                    bare_dm::run(
                        args.senders,
                        args.receivers,
                        args.uplink_window,
                        &args.rates,
                        args.rate_secs,
                        args.saturation_secs,
                        args.text_bytes,
                    )
                    .await?,
                );
            }
            Scenario::Cluster => match (&bin, databases) {
                (Some(bin), Some(databases)) => {
                    report.cluster = Some(cluster::run(bin, databases, args).await?)
                }
                _ => bail!(
                    "cluster: needs --store (PostgreSQL) and chatd processes this tool starts"
                ),
            },
            Scenario::Idle => match &bin {
                Some(bin) => report.idle = Some(idle::run(bin, args.starts).await?),
                None => eprintln!("idle: needs a chatd started by this tool; skipped"),
            },
            Scenario::Dm | Scenario::DmMqtt | Scenario::DmH2 | Scenario::DmBatch => {
                let chatd = start(vec![]).await?;
                let cfg = dm::DmConfig {
                    senders: args.senders,
                    receivers: args.receivers,
                    rates: args.rates.clone(),
                    rate_secs: args.rate_secs,
                    saturation_secs: args.saturation_secs,
                    text_bytes: args.text_bytes,
                    uplink: match s {
                        Scenario::Dm => dm::Uplink::Http,
                        Scenario::DmMqtt => dm::Uplink::Mqtt,
                        Scenario::DmBatch => dm::Uplink::Batch,
                        _ => dm::Uplink::Http2,
                    },
                    window: args.uplink_window,
                };
                let run = dm::run(&chatd, &cfg).await?;
                match s {
                    Scenario::Dm => {
                        report.dm = Some(run);
                        report.dm_rss_kib = chatd.rss_kib();
                    }
                    Scenario::DmMqtt => report.dm_mqtt = Some(run),
                    Scenario::DmBatch => report.dm_batch = Some(run),
                    _ => report.dm_h2 = Some(run),
                }
            }
            Scenario::Group => {
                let chatd = start(vec![
                    "--max-group-size".into(),
                    args.members.max(2).to_string(),
                ])
                .await?;
                report.group = Some(group::run(&chatd, args.members, args.group_messages).await?);
            }
            Scenario::Sweep => match &bin {
                Some(bin) if databases.is_none() => {
                    let mut chatd = start(vec![]).await?;
                    report.sweep = Some(
                        sweep::run(
                            &mut chatd,
                            bin,
                            args.sweep_backlog,
                            args.sweep_rate,
                            args.sweep_batch,
                        )
                        .await?,
                    );
                }
                _ => eprintln!("sweep: needs a chatd on SQLite started by this tool; skipped"),
            },
            Scenario::Sync => {
                let chatd = start(vec![]).await?;
                report.sync =
                    Some(sync::run(&chatd, args.backlog, args.sync_page, args.sync_reps).await?);
            }
            Scenario::Connections => {
                let chatd = start(vec![
                    "--max-connections".into(),
                    (args.connections + 1000).to_string(),
                ])
                .await?;
                report.connections = Some(
                    conns::run(
                        &chatd,
                        args.connections,
                        args.source_addrs,
                        args.connect_concurrency,
                        args.push_sample,
                        args.persistent_sessions,
                    )
                    .await?,
                );
            }
        }
    }
    Ok(())
}

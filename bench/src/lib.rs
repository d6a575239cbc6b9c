//! `gateway-bench`: what mqchat's MQTT gateway (`mqchat-broker`) costs on the
//! push path, measured against bare rumqttd with the same router settings
//! and the same load, in one run, alternating between the two.
//!
//! The server publishes; S subscribers (rumqttc over loopback TCP, QoS 1,
//! one per user, each on `users/{id}/#`) receive. Everything runs in this
//! one process: the target (router thread + rumqttd's network thread, or
//! router thread + the gateway's runtime), the subscribers' runtime, and the
//! `publisher` thread. Each has its own named threads, so CPU time per role
//! is reported next to the figures.
//!
//! # Layout
//! - [`run`]: the whole benchmark: start targets, connect, alternate runs, report.
//! - `target`: the two systems under test and their publish side.
//! - `fleet`: the subscribers and what they record per receipt.
//! - `payload`: the pushed JSON, with a sequence number and a send timestamp.
//! - `scenario`: saturation throughput and fixed-rate latency.
//! - `cpu`: CPU time per thread role from `/proc`.
//! - `stats`: percentiles and medians.
//! - `report`: machine facts, JSON, Markdown, latency CDF as CSV and SVG.

pub mod chat;
mod cpu;
mod fleet;
mod payload;
pub mod plot;
mod report;
mod scenario;
pub mod stats;
mod target;

use std::path::PathBuf;
use std::time::Duration;

use anyhow::{anyhow, bail, Context, Result};
use clap::Parser;
use serde::Serialize;
use tokio::runtime::Runtime;

use crate::fleet::{Fleet, Signal};
use crate::payload::Template;
use crate::report::{Comparison, TargetReport};
pub use crate::report::{Machine, Report, ThroughputSummary};
use crate::scenario::{Bench, Limits};
pub use crate::target::Kind;

/// Which measurements to take.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize, clap::ValueEnum)]
#[serde(rename_all = "lowercase")]
pub enum Scenario {
    /// Push as fast as the target takes it; delivered msgs/s and losses.
    Throughput,
    /// Push at `--rate` for `--duration`; latency percentiles.
    Latency,
}

/// Push throughput and latency: mqchat's gateway against bare rumqttd.
#[derive(Debug, Clone, Parser, Serialize)]
#[command(name = "gateway-bench", version)]
pub struct Args {
    /// Subscribers per target, one rumqttc client (one user) each.
    #[arg(long, default_value_t = 100)]
    pub subscribers: u64,
    /// Unrecorded runs of each scenario per target before the measured ones
    /// (a latency warm-up run lasts one second).
    #[arg(long, default_value_t = 1)]
    pub warmup_runs: usize,
    /// Pushes per saturation run.
    #[arg(long, default_value_t = 200_000)]
    pub messages: u64,
    /// Most unreceived pushes per subscriber. Bare rumqttd's router keeps
    /// two 64 KiB segments per topic (~300 pushes of 200 B): a larger
    /// window lets the log roll over under a slow subscriber, and those
    /// pushes are lost.
    #[arg(long, default_value_t = 200)]
    pub window: u64,
    /// Pushes per second in the latency runs.
    #[arg(long, default_value_t = 10_000)]
    pub rate: u64,
    /// Seconds per latency run.
    #[arg(long, default_value_t = 5.0)]
    pub duration: f64,
    /// Milliseconds at the start of a latency run that are not sampled.
    #[arg(long, default_value_t = 500)]
    pub warmup_ms: u64,
    /// Runs of each scenario per target; the report gives medians.
    #[arg(long, default_value_t = 3)]
    pub reps: usize,
    /// Payload bytes per push (at least ~110, the layout's fixed part).
    #[arg(long, default_value_t = 200)]
    pub payload_size: usize,
    /// Worker threads of the gateway's tokio runtime (chatd's
    /// `#[tokio::main]` uses one per core).
    #[arg(long, default_value_t = 2)]
    pub gateway_threads: usize,
    /// Worker threads of the subscribers' tokio runtime.
    #[arg(long, default_value_t = 2)]
    pub client_threads: usize,
    /// Targets to measure, in the first run's order (alternated after).
    #[arg(
        long,
        value_enum,
        value_delimiter = ',',
        default_value = "bare,gateway"
    )]
    pub targets: Vec<Kind>,
    /// Scenarios to run.
    #[arg(
        long,
        value_enum,
        value_delimiter = ',',
        default_value = "throughput,latency"
    )]
    pub scenarios: Vec<Scenario>,
    /// Do not install the Prometheus metrics recorder. chatd installs one,
    /// so by default the gateway's per-push counters cost what they cost there.
    #[arg(long)]
    pub no_metrics_recorder: bool,
    /// Before each run, wait up to this many seconds for other processes
    /// to use less than 0.1 cores (0: don't wait). Their load during each
    /// run is reported either way.
    #[arg(long, default_value_t = 0)]
    pub wait_idle_secs: u64,
    /// Repeat a repetition in which other processes used more than this
    /// many cores (e.g. 0.1); off by default.
    #[arg(long)]
    pub max_other_load: Option<f64>,
    /// Most times one repetition is repeated for `--max-other-load`.
    #[arg(long, default_value_t = 3)]
    pub retries: usize,
    /// Milliseconds with no receipt after which a run stops waiting for
    /// the remaining pushes (they count as lost).
    #[arg(long, default_value_t = 3000)]
    pub drain_timeout_ms: u64,
    /// Seconds a single run may take before it is cut short.
    #[arg(long, default_value_t = 60)]
    pub phase_timeout_secs: u64,
    /// Also print the results as a Markdown table (after the JSON).
    #[arg(long)]
    pub markdown: bool,
    /// Write results.json, results.md, latency_cdf.csv and latency_cdf.svg here.
    #[arg(long)]
    pub out_dir: Option<PathBuf>,
}

/// Runs the benchmark and prints the report: JSON on stdout, then Markdown
/// with `--markdown`; progress on stderr.
pub fn run(args: Args) -> Result<()> {
    if !args.no_metrics_recorder {
        metrics_exporter_prometheus::PrometheusBuilder::new()
            .install_recorder()
            .context("metrics recorder")?;
    }
    let report = measure(&args)?;
    let json = serde_json::to_string_pretty(&report)?;
    println!("{json}");
    let markdown = report.markdown();
    if args.markdown {
        println!("\n{markdown}");
    }
    if let Some(dir) = &args.out_dir {
        std::fs::create_dir_all(dir)?;
        std::fs::write(dir.join("results.json"), &json)?;
        std::fs::write(dir.join("results.md"), &markdown)?;
        std::fs::write(dir.join("latency_cdf.csv"), report.cdf_csv())?;
        std::fs::write(dir.join("latency_cdf.svg"), report.cdf_svg())?;
        eprintln!("wrote {}", dir.display());
    }
    Ok(())
}

/// Runs the benchmark and returns its report. Blocks the calling thread;
/// call it outside any tokio runtime.
pub fn measure(args: &Args) -> Result<Report> {
    if args.subscribers == 0 || args.reps == 0 || args.rate == 0 || args.window == 0 {
        bail!("--subscribers, --reps, --rate and --window must be positive");
    }
    if args.targets.is_empty() || args.scenarios.is_empty() {
        bail!("nothing to measure");
    }
    let machine = Machine::probe();
    eprintln!("machine: {}", machine.line());
    let clients_rt = runtime("clients-rt", args.client_threads)?;
    let gateway_rt = runtime("gw-rt", args.gateway_threads)?;

    // The publisher gets its own named thread: receivers unpark it, and its
    // CPU time is reported apart from the main thread's.
    let report = std::thread::scope(|s| {
        std::thread::Builder::new()
            .name("publisher".into())
            .spawn_scoped(s, || drive(args, machine, &clients_rt, &gateway_rt))?
            .join()
            .map_err(|_| anyhow!("publisher thread panicked"))?
    })?;
    clients_rt.shutdown_timeout(Duration::from_millis(500));
    gateway_rt.shutdown_timeout(Duration::from_millis(500));
    Ok(report)
}

/// Bare rumqttd's QoS 1 push throughput to `subscribers` subscribers, the
/// median of `reps` saturation runs of `messages` pushes each (after one
/// warm-up run): the limit `chat-bench` reports its figures against.
pub fn bare_rumqttd_throughput(
    subscribers: u64,
    messages: u64,
    reps: usize,
) -> Result<ThroughputSummary> {
    let args = Args::parse_from([
        "gateway-bench".to_string(),
        "--targets=bare".into(),
        "--scenarios=throughput".into(),
        format!("--subscribers={subscribers}"),
        format!("--messages={messages}"),
        format!("--reps={reps}"),
        "--no-metrics-recorder".into(),
    ]);
    let report = measure(&args)?;
    report
        .targets
        .into_iter()
        .find_map(|t| t.throughput)
        .ok_or_else(|| anyhow!("the bare rumqttd run reported no throughput"))
}

fn runtime(name: &str, threads: usize) -> Result<Runtime> {
    Ok(tokio::runtime::Builder::new_multi_thread()
        .worker_threads(threads.max(1))
        .thread_name(name)
        .enable_all()
        .build()?)
}

/// Runs one repetition (a run of every target, back to back). With
/// `--max-other-load`, a repetition during which another process used more
/// than that many cores is thrown away and run again, up to `--retries`
/// times; the last attempt is kept whatever it saw.
fn repeat_while_disturbed<T>(
    args: &Args,
    discarded: &mut usize,
    mut rep: impl FnMut() -> Vec<(T, f64)>,
) -> Vec<T> {
    let mut attempt = 0;
    loop {
        let runs = rep();
        let worst = runs.iter().map(|(_, o)| *o).fold(0.0, f64::max);
        let disturbed = args.max_other_load.is_some_and(|max| worst > max);
        if !disturbed || attempt >= args.retries {
            return runs.into_iter().map(|(t, _)| t).collect();
        }
        attempt += 1;
        *discarded += 1;
        eprintln!("  other processes used {worst:.2} cores: repeating this repetition");
    }
}

/// Starts every target with its subscribers, then alternates runs.
fn drive(
    args: &Args,
    machine: Machine,
    clients_rt: &Runtime,
    gateway_rt: &Runtime,
) -> Result<Report> {
    let signal = Signal::new();
    let limits = Limits {
        window: args.window,
        drain_timeout: Duration::from_millis(args.drain_timeout_ms),
        phase_timeout: Duration::from_secs(args.phase_timeout_secs),
    };
    let mut benches = Vec::new();
    let mut seen = Vec::new();
    for &kind in &args.targets {
        if seen.contains(&kind) {
            continue;
        }
        seen.push(kind);
        let target = target::start(kind, gateway_rt)?;
        eprintln!(
            "{}: listening on {}, connecting {} subscribers",
            kind.name(),
            target.addr,
            args.subscribers
        );
        let fleet = Fleet::connect(
            clients_rt.handle(),
            kind.name(),
            target.addr,
            args.subscribers,
            &signal,
            Duration::from_secs(30),
        )?;
        let mut bench = Bench::new(
            target,
            fleet,
            signal.clone(),
            Template::new(args.payload_size),
        );
        bench.probe(Duration::from_secs(5))?;
        benches.push(bench);
    }
    let mut reports: Vec<TargetReport> = benches
        .iter()
        .map(|b| TargetReport::new(b.name()))
        .collect();
    let n = benches.len();
    let order = |rep: usize| -> Vec<usize> {
        let forward: Vec<usize> = (0..n).collect();
        match rep % 2 {
            0 => forward,
            _ => forward.into_iter().rev().collect(),
        }
    };
    let settle = || {
        std::thread::sleep(Duration::from_millis(300));
        if args.wait_idle_secs > 0 {
            cpu::wait_idle(Duration::from_secs(args.wait_idle_secs), 0.1);
        }
    };
    settle();

    let mut discarded = 0usize;
    if args.warmup_runs > 0 {
        // The first runs after connecting are unrepresentative (allocator,
        // router logs and socket buffers still growing): run and drop them.
        for _ in 0..args.warmup_runs {
            for bench in benches.iter_mut() {
                let label = format!("warm-up {}", bench.name());
                if args.scenarios.contains(&Scenario::Throughput) {
                    bench.throughput(args.messages, limits, &label);
                }
                if args.scenarios.contains(&Scenario::Latency) {
                    let second = Duration::from_secs(1);
                    bench.latency(args.rate, second, Duration::ZERO, limits, &label);
                }
            }
        }
        settle();
    }
    if args.scenarios.contains(&Scenario::Throughput) {
        for rep in 0..args.reps {
            let runs = repeat_while_disturbed(args, &mut discarded, || {
                order(rep)
                    .into_iter()
                    .map(|i| {
                        let label = format!(
                            "[{}/{}] saturation {}",
                            rep + 1,
                            args.reps,
                            benches[i].name()
                        );
                        let run = benches[i].throughput(args.messages, limits, &label);
                        settle();
                        let other = run.host.other_cores;
                        ((i, run), other)
                    })
                    .collect()
            });
            for (i, run) in runs {
                reports[i].throughput_runs.push(run);
            }
        }
    }
    if args.scenarios.contains(&Scenario::Latency) {
        for rep in 0..args.reps {
            let runs = repeat_while_disturbed(args, &mut discarded, || {
                order(rep)
                    .into_iter()
                    .map(|i| {
                        let label = format!(
                            "[{}/{}] {} msg/s {}",
                            rep + 1,
                            args.reps,
                            args.rate,
                            benches[i].name()
                        );
                        let (run, samples) = benches[i].latency(
                            args.rate,
                            Duration::from_secs_f64(args.duration),
                            Duration::from_millis(args.warmup_ms),
                            limits,
                            &label,
                        );
                        settle();
                        let other = run.host.other_cores;
                        ((i, (run, samples)), other)
                    })
                    .collect()
            });
            for (i, (run, samples)) in runs {
                reports[i].latency_runs.push(run);
                reports[i].latency_samples.extend(samples);
            }
        }
    }
    for b in &benches {
        b.fleet.stop();
    }
    for r in &mut reports {
        r.summarize();
    }
    let bare = reports.iter().find(|r| r.name == "bare");
    let gateway = reports.iter().find(|r| r.name == "gateway");
    let comparison = bare.zip(gateway).map(|(b, g)| Comparison::of(b, g));
    let settings = serde_json::json!({
        "args": args,
        "router": {
            "max_segment_size": target::BARE_SEGMENT_SIZE,
            "max_segment_count": target::BARE_SEGMENT_COUNT,
            "max_outgoing_packet_count": mqchat_broker::Settings::default().max_inflight,
        },
        "payload_bytes": Template::new(args.payload_size).len(),
        "source_revision": report::source_revision(),
        "metrics_recorder": !args.no_metrics_recorder,
        "discarded_repetitions": discarded,
        "process": "one process: target threads, subscriber runtime and publisher thread share all cores",
    });
    Ok(Report {
        machine,
        settings,
        targets: reports,
        comparison,
    })
}

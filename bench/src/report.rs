//! What a run prints: machine facts, every run's figures, medians, the
//! gateway-versus-bare comparison; as JSON, a Markdown table, and a latency
//! CDF as CSV and SVG.

use std::collections::BTreeMap;
use std::fmt::Write as _;
use std::fs;

use serde::Serialize;

use crate::plot::{self, cdf_points, thousands};
use crate::scenario::{LatencyRun, Throughput};
use crate::stats::{self, median, Latency};

/// The targets for the gateway.
pub const GOAL_THROUGHPUT_RATIO: f64 = 0.9;
pub const GOAL_ADDED_P50_MS: f64 = 0.2;

#[derive(Debug, Clone, Serialize)]
pub struct Machine {
    pub nproc: usize,
    pub cpu_model: String,
    pub kernel: String,
    pub mem_total_gib: f64,
}

impl Machine {
    pub fn probe() -> Machine {
        let cpuinfo = fs::read_to_string("/proc/cpuinfo").unwrap_or_default();
        let cpu_model = cpuinfo
            .lines()
            .find_map(|l| l.strip_prefix("model name"))
            .and_then(|l| l.split_once(':'))
            .map(|(_, v)| v.trim().to_string())
            .unwrap_or_else(|| "unknown".into());
        let kernel = fs::read_to_string("/proc/sys/kernel/osrelease")
            .map(|s| s.trim().to_string())
            .unwrap_or_else(|_| "unknown".into());
        let mem_total_gib = fs::read_to_string("/proc/meminfo")
            .ok()
            .and_then(|m| {
                m.lines()
                    .find_map(|l| l.strip_prefix("MemTotal:"))
                    .and_then(|v| v.trim().trim_end_matches("kB").trim().parse::<f64>().ok())
            })
            .map(|kb| (kb / 1024.0 / 1024.0 * 10.0).round() / 10.0)
            .unwrap_or(0.0);
        Machine {
            nproc: std::thread::available_parallelism().map_or(0, |n| n.get()),
            cpu_model,
            kernel,
            mem_total_gib,
        }
    }

    pub fn line(&self) -> String {
        format!(
            "{} × {}, {} GiB, Linux {}",
            self.nproc, self.cpu_model, self.mem_total_gib, self.kernel
        )
    }
}

/// The commit the benchmark was built from, and whether `broker/` had
/// uncommitted changes (recorded by `build.rs`); `None` outside a checkout.
pub fn source_revision() -> Option<String> {
    let revision = env!("MQCHAT_BENCH_REVISION");
    (!revision.is_empty()).then(|| revision.to_string())
}

/// Medians of a target's saturation runs.
#[derive(Debug, Clone, Serialize)]
pub struct ThroughputSummary {
    pub runs: usize,
    pub delivered_per_s: f64,
    pub published_per_s: f64,
    pub lost_total: u64,
    pub latency: Latency,
    pub cpu_us_per_msg: f64,
    /// Worst load from outside the benchmark during any run, in cores.
    pub max_other_cores: f64,
    /// Median CPU µs per received push, per thread role.
    pub cpu_us_per_msg_by_role: BTreeMap<String, f64>,
}

/// Medians of a target's fixed-rate runs.
#[derive(Debug, Clone, Serialize)]
pub struct LatencySummary {
    pub runs: usize,
    pub achieved_rate: f64,
    pub lost_total: u64,
    pub max_publish_lag_ms: f64,
    pub latency: Latency,
    pub cpu_us_per_msg: f64,
    pub max_other_cores: f64,
    pub cpu_us_per_msg_by_role: BTreeMap<String, f64>,
}

#[derive(Debug, Clone, Serialize)]
pub struct TargetReport {
    pub name: &'static str,
    pub throughput: Option<ThroughputSummary>,
    pub latency: Option<LatencySummary>,
    pub throughput_runs: Vec<Throughput>,
    pub latency_runs: Vec<LatencyRun>,
    /// Every sampled latency of the fixed-rate runs, sorted (ns); for the CDF.
    #[serde(skip)]
    pub latency_samples: Vec<u64>,
}

impl TargetReport {
    pub fn new(name: &'static str) -> TargetReport {
        TargetReport {
            name,
            throughput: None,
            latency: None,
            throughput_runs: Vec::new(),
            latency_runs: Vec::new(),
            latency_samples: Vec::new(),
        }
    }

    /// Fills the summaries from the runs.
    pub fn summarize(&mut self) {
        let t = &self.throughput_runs;
        if !t.is_empty() {
            self.throughput = Some(ThroughputSummary {
                runs: t.len(),
                delivered_per_s: median(t.iter().map(|r| r.delivered_per_s)),
                published_per_s: median(t.iter().map(|r| r.published_per_s)),
                lost_total: t.iter().map(|r| r.lost).sum(),
                latency: Latency::median_of(&t.iter().map(|r| r.latency).collect::<Vec<_>>()),
                cpu_us_per_msg: median(t.iter().map(|r| r.cpu_us_per_msg)),
                max_other_cores: t.iter().map(|r| r.host.other_cores).fold(0.0, f64::max),
                cpu_us_per_msg_by_role: per_role(t.iter().map(|r| (&r.cpu_ms, r.received))),
            });
        }
        let l = &self.latency_runs;
        if !l.is_empty() {
            self.latency = Some(LatencySummary {
                runs: l.len(),
                achieved_rate: median(l.iter().map(|r| r.achieved_rate)),
                lost_total: l.iter().map(|r| r.lost).sum(),
                max_publish_lag_ms: l.iter().map(|r| r.max_publish_lag_ms).fold(0.0, f64::max),
                latency: Latency::median_of(&l.iter().map(|r| r.latency).collect::<Vec<_>>()),
                cpu_us_per_msg: median(l.iter().map(|r| r.cpu_us_per_msg)),
                max_other_cores: l.iter().map(|r| r.host.other_cores).fold(0.0, f64::max),
                cpu_us_per_msg_by_role: per_role(l.iter().map(|r| (&r.cpu_ms, r.received))),
            });
        }
        self.latency_samples.sort_unstable();
    }
}

fn per_role<'a>(
    runs: impl Iterator<Item = (&'a BTreeMap<String, f64>, u64)>,
) -> BTreeMap<String, f64> {
    let mut by_role: BTreeMap<String, Vec<f64>> = BTreeMap::new();
    let runs: Vec<_> = runs.collect();
    for (cpu, _) in &runs {
        for role in cpu.keys() {
            by_role.entry(role.clone()).or_default();
        }
    }
    for (role, values) in by_role.iter_mut() {
        for (cpu, received) in &runs {
            let ms = cpu.get(role).copied().unwrap_or(0.0);
            values.push(ms * 1e3 / (*received).max(1) as f64);
        }
    }
    by_role
        .into_iter()
        .map(|(role, v)| (role, median(v.into_iter())))
        .collect()
}

/// Gateway against bare, from the medians.
#[derive(Debug, Clone, Serialize)]
pub struct Comparison {
    /// Gateway median over bare median, delivered msgs/s.
    pub throughput_ratio: Option<f64>,
    /// Gateway over bare for each repetition (the two runs are adjacent in
    /// time, so a slow patch of the machine hits both), and their median.
    pub throughput_ratio_per_rep: Vec<f64>,
    pub throughput_ratio_paired_median: Option<f64>,
    /// Gateway minus bare p50 for each repetition, ms.
    pub added_p50_ms_per_rep: Vec<f64>,
    pub added_p50_ms: Option<f64>,
    pub added_p99_ms: Option<f64>,
    pub added_p999_ms: Option<f64>,
    pub cpu_us_per_msg_added_saturation: Option<f64>,
    pub cpu_us_per_msg_added_fixed_rate: Option<f64>,
    pub goal_throughput_ratio: f64,
    pub goal_added_p50_ms: f64,
    pub meets_throughput_goal: Option<bool>,
    pub meets_latency_goal: Option<bool>,
}

impl Comparison {
    pub fn of(bare: &TargetReport, gateway: &TargetReport) -> Comparison {
        let tput = bare.throughput.as_ref().zip(gateway.throughput.as_ref());
        let lat = bare.latency.as_ref().zip(gateway.latency.as_ref());
        let throughput_ratio = tput.map(|(b, g)| g.delivered_per_s / b.delivered_per_s);
        let added_p50_ms = lat.map(|(b, g)| g.latency.p50_ms - b.latency.p50_ms);
        let throughput_ratio_per_rep: Vec<f64> = bare
            .throughput_runs
            .iter()
            .zip(&gateway.throughput_runs)
            .map(|(b, g)| g.delivered_per_s / b.delivered_per_s)
            .collect();
        let added_p50_ms_per_rep = bare
            .latency_runs
            .iter()
            .zip(&gateway.latency_runs)
            .map(|(b, g)| g.latency.p50_ms - b.latency.p50_ms)
            .collect();
        Comparison {
            throughput_ratio,
            throughput_ratio_paired_median: (!throughput_ratio_per_rep.is_empty())
                .then(|| median(throughput_ratio_per_rep.iter().copied())),
            throughput_ratio_per_rep,
            added_p50_ms_per_rep,
            added_p50_ms,
            added_p99_ms: lat.map(|(b, g)| g.latency.p99_ms - b.latency.p99_ms),
            added_p999_ms: lat.map(|(b, g)| g.latency.p999_ms - b.latency.p999_ms),
            cpu_us_per_msg_added_saturation: tput.map(|(b, g)| g.cpu_us_per_msg - b.cpu_us_per_msg),
            cpu_us_per_msg_added_fixed_rate: lat.map(|(b, g)| g.cpu_us_per_msg - b.cpu_us_per_msg),
            goal_throughput_ratio: GOAL_THROUGHPUT_RATIO,
            goal_added_p50_ms: GOAL_ADDED_P50_MS,
            meets_throughput_goal: throughput_ratio.map(|r| r >= GOAL_THROUGHPUT_RATIO),
            meets_latency_goal: added_p50_ms.map(|a| a < GOAL_ADDED_P50_MS),
        }
    }
}

#[derive(Debug, Clone, Serialize)]
pub struct Report {
    pub machine: Machine,
    pub settings: serde_json::Value,
    pub targets: Vec<TargetReport>,
    pub comparison: Option<Comparison>,
}

impl Report {
    fn target(&self, name: &str) -> Option<&TargetReport> {
        self.targets.iter().find(|t| t.name == name)
    }

    /// The results as Markdown: the headline table, then CPU per role.
    pub fn markdown(&self) -> String {
        let mut out = String::new();
        let bare = self.target("bare");
        let gw = self.target("gateway");
        let cmp = self.comparison.as_ref();
        let cell = |v: Option<String>| v.unwrap_or_else(|| "–".into());
        let tput = |t: Option<&TargetReport>, f: fn(&ThroughputSummary) -> String| {
            cell(t.and_then(|t| t.throughput.as_ref()).map(f))
        };
        let lat = |t: Option<&TargetReport>, f: fn(&LatencySummary) -> String| {
            cell(t.and_then(|t| t.latency.as_ref()).map(f))
        };
        let runs = |t: Option<&TargetReport>| {
            t.and_then(|t| {
                t.throughput
                    .as_ref()
                    .map(|s| s.runs)
                    .or(t.latency.as_ref().map(|s| s.runs))
            })
            .unwrap_or(0)
        };
        let _ = writeln!(
            out,
            "| push, QoS 1, median of {} runs | bare rumqttd | gateway | gateway vs bare | goal |",
            runs(bare).max(runs(gw))
        );
        let _ = writeln!(out, "| --- | ---: | ---: | ---: | --- |");
        let mut row = |name: &str, b: String, g: String, vs: String, goal: &str| {
            let _ = writeln!(out, "| {name} | {b} | {g} | {vs} | {goal} |");
        };
        row(
            "saturation: delivered msg/s",
            tput(bare, |s| thousands(s.delivered_per_s)),
            tput(gw, |s| thousands(s.delivered_per_s)),
            cell(
                cmp.and_then(|c| c.throughput_ratio)
                    .map(|r| format!("{r:.2}×")),
            ),
            "≥ 0.90×",
        );
        row(
            "saturation: gateway/bare per repetition",
            String::new(),
            String::new(),
            cell(
                cmp.filter(|c| !c.throughput_ratio_per_rep.is_empty())
                    .map(|c| {
                        let each: Vec<String> = c
                            .throughput_ratio_per_rep
                            .iter()
                            .map(|r| format!("{r:.2}"))
                            .collect();
                        format!(
                            "{} (median {:.2}×)",
                            each.join(", "),
                            c.throughput_ratio_paired_median.unwrap_or(0.0)
                        )
                    }),
            ),
            "",
        );
        row(
            "saturation: lost (all runs)",
            tput(bare, |s| s.lost_total.to_string()),
            tput(gw, |s| s.lost_total.to_string()),
            String::new(),
            "0",
        );
        row(
            "saturation: p50 / p99 ms (queueing)",
            tput(bare, |s| {
                format!("{:.2} / {:.2}", s.latency.p50_ms, s.latency.p99_ms)
            }),
            tput(gw, |s| {
                format!("{:.2} / {:.2}", s.latency.p50_ms, s.latency.p99_ms)
            }),
            String::new(),
            "",
        );
        row(
            "saturation: CPU µs per push (whole process)",
            tput(bare, |s| format!("{:.1}", s.cpu_us_per_msg)),
            tput(gw, |s| format!("{:.1}", s.cpu_us_per_msg)),
            cell(
                cmp.and_then(|c| c.cpu_us_per_msg_added_saturation)
                    .map(|d| format!("{d:+.1}")),
            ),
            "",
        );
        let rate = lat(gw.or(bare), |s| thousands(s.achieved_rate));
        row(
            &format!("fixed rate ({rate} msg/s): p50 ms"),
            lat(bare, |s| format!("{:.3}", s.latency.p50_ms)),
            lat(gw, |s| format!("{:.3}", s.latency.p50_ms)),
            cell(
                cmp.and_then(|c| c.added_p50_ms)
                    .map(|d| format!("{d:+.3} ms")),
            ),
            "< +0.2 ms",
        );
        row(
            "fixed rate: p99 ms",
            lat(bare, |s| format!("{:.3}", s.latency.p99_ms)),
            lat(gw, |s| format!("{:.3}", s.latency.p99_ms)),
            cell(
                cmp.and_then(|c| c.added_p99_ms)
                    .map(|d| format!("{d:+.3} ms")),
            ),
            "",
        );
        row(
            "fixed rate: p99.9 ms",
            lat(bare, |s| format!("{:.3}", s.latency.p999_ms)),
            lat(gw, |s| format!("{:.3}", s.latency.p999_ms)),
            cell(
                cmp.and_then(|c| c.added_p999_ms)
                    .map(|d| format!("{d:+.3} ms")),
            ),
            "",
        );
        row(
            "fixed rate: max ms",
            lat(bare, |s| format!("{:.2}", s.latency.max_ms)),
            lat(gw, |s| format!("{:.2}", s.latency.max_ms)),
            String::new(),
            "",
        );
        row(
            "fixed rate: lost (all runs)",
            lat(bare, |s| s.lost_total.to_string()),
            lat(gw, |s| s.lost_total.to_string()),
            String::new(),
            "0",
        );
        row(
            "fixed rate: CPU µs per push (whole process)",
            lat(bare, |s| format!("{:.1}", s.cpu_us_per_msg)),
            lat(gw, |s| format!("{:.1}", s.cpu_us_per_msg)),
            cell(
                cmp.and_then(|c| c.cpu_us_per_msg_added_fixed_rate)
                    .map(|d| format!("{d:+.1}")),
            ),
            "",
        );

        let _ = writeln!(
            out,
            "\nCPU µs per delivered push, by thread (median of runs):\n"
        );
        let _ = writeln!(out, "| target, scenario | thread role | µs/push |");
        let _ = writeln!(out, "| --- | --- | ---: |");
        for t in &self.targets {
            let scenarios = [
                (
                    "saturation",
                    t.throughput.as_ref().map(|s| &s.cpu_us_per_msg_by_role),
                ),
                (
                    "fixed rate",
                    t.latency.as_ref().map(|s| &s.cpu_us_per_msg_by_role),
                ),
            ];
            for (scenario, roles) in scenarios {
                for (role, us) in roles.into_iter().flatten() {
                    if *us >= 0.05 {
                        let _ = writeln!(out, "| {}, {scenario} | {role} | {us:.2} |", t.name);
                    }
                }
            }
        }
        out
    }

    /// Latency percentiles of every fixed-rate sample, one column per target.
    pub fn cdf_csv(&self) -> String {
        let mut out = String::from("percentile");
        for t in &self.targets {
            let _ = write!(out, ",{}_ms", t.name);
        }
        out.push('\n');
        for p in cdf_points() {
            let _ = write!(out, "{p}");
            for t in &self.targets {
                match t.latency_samples.is_empty() {
                    true => out.push(','),
                    false => {
                        let ns = stats::quantile(&t.latency_samples, p / 100.0);
                        let _ = write!(out, ",{:.4}", ns as f64 / 1e6);
                    }
                }
            }
            out.push('\n');
        }
        out
    }

    /// Latency by percentile, HdrHistogram style (see [`plot::cdf_svg`]).
    pub fn cdf_svg(&self) -> String {
        let curves: Vec<(&str, &[u64])> = self
            .targets
            .iter()
            .map(|t| (t.name, t.latency_samples.as_slice()))
            .collect();
        plot::cdf_svg(
            "Push latency by percentile at a fixed rate (all runs)",
            &curves,
        )
    }
}

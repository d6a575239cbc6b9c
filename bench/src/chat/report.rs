//! The targets of issue 5, what was measured against them, and the report
//! as JSON, Markdown and an SVG latency plot.

use std::fmt::Write as _;

use serde::Serialize;

use super::bare_dm::BareDmBaseline;
use super::baseline::{BareBaseline, StoreBaseline};
use super::cluster::ClusterReport;
use super::conns::ConnReport;
use super::dm::{DmPhase, DmReport, Uplink};
use super::group::GroupReport;
use super::idle::IdleReport;
use super::sweep::SweepReport;
use super::sync::SyncReport;
use super::Args;
use crate::plot::{self, thousands};
use crate::report::{source_revision, Machine};

/// One target and how the run did against it.
#[derive(Debug, Clone, Serialize)]
pub struct Verdict {
    pub scenario: &'static str,
    pub goal: String,
    pub measured: String,
    pub met: bool,
}

#[derive(Debug, Clone, Serialize)]
pub struct ChatReport {
    pub machine: Machine,
    pub source_revision: Option<String>,
    pub args: Args,
    /// Bare rumqttd pushing from inside this process: the router's ceiling.
    pub bare: Option<BareBaseline>,
    /// Bare rumqttd under the dm load over TCP: what dm is compared with.
    pub bare_dm: Option<BareDmBaseline>,
    pub store: Option<StoreBaseline>,
    pub idle: Option<IdleReport>,
    pub dm: Option<DmReport>,
    /// dm with the senders on the MQTT uplink.
    pub dm_mqtt: Option<DmReport>,
    /// dm with the senders on HTTP/2, a window of streams each.
    pub dm_h2: Option<DmReport>,
    /// dm with the senders on `POST /v1/messages/batch`.
    pub dm_batch: Option<DmReport>,
    /// chatd's RSS at the end of the dm scenario.
    pub dm_rss_kib: Option<u64>,
    pub group: Option<GroupReport>,
    pub sync: Option<SyncReport>,
    pub sweep: Option<SweepReport>,
    pub connections: Option<ConnReport>,
    pub cluster: Option<ClusterReport>,
    pub verdicts: Vec<Verdict>,
}

impl ChatReport {
    pub fn new(args: &Args) -> ChatReport {
        ChatReport {
            machine: Machine::probe(),
            source_revision: source_revision(),
            args: args.clone(),
            bare: None,
            bare_dm: None,
            store: None,
            idle: None,
            dm: None,
            dm_mqtt: None,
            dm_h2: None,
            dm_batch: None,
            dm_rss_kib: None,
            group: None,
            sync: None,
            sweep: None,
            connections: None,
            cluster: None,
            verdicts: Vec::new(),
        }
    }

    fn saturation(&self) -> Option<&DmPhase> {
        saturation(self.dm.as_ref()?)
    }

    /// The dm runs: (scenario's name in the verdicts, in the tables and
    /// plot, the run).
    fn dms(&self) -> [(&'static str, &'static str, Option<&DmReport>); 4] {
        [
            ("dm", "dm", self.dm.as_ref()),
            ("dm (MQTT uplink)", "dm-mqtt", self.dm_mqtt.as_ref()),
            ("dm (HTTP/2)", "dm-h2", self.dm_h2.as_ref()),
            ("dm (HTTP batches)", "dm-batch", self.dm_batch.as_ref()),
        ]
    }

    /// Loss, duplicates and missing deliveries: correctness, not speed.
    pub fn failed_checks(&self) -> usize {
        let dm: usize = self
            .dms()
            .into_iter()
            .filter_map(|(_, _, d)| d)
            .map(|d| {
                d.phases
                    .iter()
                    .filter(|p| p.lost > 0 || p.duplicates > 0)
                    .count()
            })
            .sum();
        let group = self
            .group
            .as_ref()
            .map_or(0, |g| usize::from(g.missing > 0));
        let conns = self
            .connections
            .as_ref()
            .map_or(0, |c| usize::from(c.sample_missing > 0));
        let cluster = self.cluster.as_ref().map_or(0, |c| {
            c.runs
                .iter()
                .filter(|r| r.phase.lost > 0 || r.phase.duplicates > 0)
                .count()
        });
        dm + group + conns + cluster
    }

    /// Fills `verdicts` from the figures.
    pub fn judge(&mut self) {
        let mut v = Vec::new();
        let mut add = |scenario, goal: &str, measured: String, met: bool| {
            v.push(Verdict {
                scenario,
                goal: goal.to_string(),
                measured,
                met,
            })
        };
        for (scenario, _, dm) in self.dms() {
            let Some(dm) = dm else { continue };
            if let Some(sat) = saturation(dm) {
                add(
                    scenario,
                    "≥ 40,000 durable messages/s end to end",
                    format!(
                        "{} msg/s delivered ({} acked/s)",
                        thousands(sat.delivered_per_s),
                        thousands(sat.acked_per_s)
                    ),
                    sat.delivered_per_s >= 40_000.0 && sat.lost == 0 && sat.duplicates == 0,
                );
                let window = dm.config.in_flight_per_sender();
                if let Some(bare) = self.bare_dm.as_ref().and_then(|b| b.saturation(window)) {
                    let ratio = sat.delivered_per_s / bare.delivered_per_s;
                    let ceiling = self.bare.as_ref().map_or(String::new(), |b| {
                        format!(
                            "; {:.2}× its in-process push ceiling ({})",
                            sat.delivered_per_s / b.delivered_per_s,
                            thousands(b.delivered_per_s)
                        )
                    });
                    add(
                        scenario,
                        "≥ 0.5× bare rumqttd QoS 1 throughput (same run)",
                        format!(
                            "{ratio:.2}× bare rumqttd under the same load, {window} in flight per sender ({} / {}){ceiling}",
                            thousands(sat.delivered_per_s),
                            thousands(bare.delivered_per_s)
                        ),
                        ratio >= 0.5 && bare.lost == 0,
                    );
                }
            }
            let (lost, dups): (u64, u64) = dm
                .phases
                .iter()
                .fold((0, 0), |(l, d), p| (l + p.lost, d + p.duplicates));
            let acked: u64 = dm.phases.iter().map(|p| p.acked).sum();
            add(
                scenario,
                "zero loss, zero duplicates",
                format!(
                    "{} acked: {lost} lost, {dups} duplicated",
                    thousands(acked as f64)
                ),
                lost == 0 && dups == 0,
            );
            if let Some(p) = dm.phases.iter().find(|p| p.target_rate == Some(10_000)) {
                add(
                    scenario,
                    "at 10,000 msg/s: p50 ≤ 2 ms, p99 ≤ 10 ms",
                    format!(
                        "p50 {:.2} ms, p99 {:.2} ms (achieved {} msg/s)",
                        p.latency.p50_ms,
                        p.latency.p99_ms,
                        thousands(p.acked_per_s)
                    ),
                    p.latency.p50_ms <= 2.0 && p.latency.p99_ms <= 10.0 && p.acked_per_s >= 9_500.0,
                );
            }
        }
        if let Some(g) = &self.group {
            add(
                "group",
                &format!("last of {} online members within 50 ms (p99)", g.members),
                format!(
                    "p99 {:.1} ms (p50 {:.1} ms) over {} messages, {} missing",
                    g.last_delivery.p99_ms, g.last_delivery.p50_ms, g.messages, g.missing
                ),
                g.last_delivery.p99_ms <= 50.0 && g.missing == 0,
            );
        }
        if let Some(c) = &self.connections {
            add(
                "connections",
                "≤ 16 KiB process RSS per connection",
                format!(
                    "{:.1} KiB ({} connections, RSS {:.0} → {:.0} MiB)",
                    c.rss_per_connection_bytes / 1024.0,
                    thousands(c.connections as f64),
                    c.rss_before_kib as f64 / 1024.0,
                    c.rss_connected_kib as f64 / 1024.0
                ),
                c.rss_per_connection_bytes <= 16.0 * 1024.0,
            );
            add(
                "connections",
                "connect rate ≥ 5,000/s",
                format!("{}/s", thousands(c.connects_per_s)),
                c.connects_per_s >= 5_000.0,
            );
            add(
                "connections",
                "pushes reach a sample of idle connections in < 10 ms",
                format!(
                    "p50 {:.2} ms, max {:.2} ms over {}, {} missing",
                    c.sample_push.p50_ms,
                    c.sample_push.max_ms,
                    c.sample_push.samples,
                    c.sample_missing
                ),
                c.sample_push.max_ms < 10.0 && c.sample_missing == 0,
            );
        }
        if let Some(s) = &self.sync {
            add(
                "sync",
                &format!("{}-event backlog in ≤ 300 ms", thousands(s.backlog as f64)),
                format!(
                    "{:.0} ms (median of {}), {} KiB",
                    s.median_ms,
                    s.runs.len(),
                    s.bytes / 1024
                ),
                s.median_ms <= 300.0,
            );
        }
        if let Some(s) = &self.sweep {
            add(
                "sweep",
                &format!(
                    "sends' p99 while {} expired messages are swept ≤ 2× idle",
                    thousands(s.backlog as f64)
                ),
                format!(
                    "{:.2} ms vs {:.2} ms ({:.2}×); swept in {:.1} s",
                    s.during.p99_ms, s.idle.p99_ms, s.p99_ratio, s.sweep_s
                ),
                s.p99_ratio <= 2.0,
            );
        }
        if let Some(c) = &self.cluster {
            for (nodes, p50, p99) in c.added() {
                add(
                    "cluster",
                    &format!(
                        "across {nodes} nodes at {} msg/s: ≤ 5 ms p50, ≤ 20 ms p99 added over one node",
                        thousands(c.rate as f64)
                    ),
                    format!("{p50:+.2} ms p50, {p99:+.2} ms p99"),
                    p50 <= 5.0 && p99 <= 20.0,
                );
            }
        }
        if let Some(i) = &self.idle {
            add(
                "idle",
                "idle RSS ≤ 40 MiB",
                format!("{:.1} MiB", i.median_rss_kib / 1024.0),
                i.median_rss_kib <= 40.0 * 1024.0,
            );
            add(
                "idle",
                "start to ready ≤ 200 ms",
                format!(
                    "{:.0} ms median, {:.0} ms max",
                    i.median_start_ms, i.max_start_ms
                ),
                i.median_start_ms <= 200.0,
            );
        }
        self.verdicts = v;
    }

    pub fn markdown(&self) -> String {
        let mut md = String::new();
        let _ = writeln!(md, "Machine: {}", self.machine.line());
        if let Some(rev) = &self.source_revision {
            let _ = writeln!(md, "Source: `{rev}`");
        }
        let _ = writeln!(
            md,
            "\n| scenario | target | measured | met |\n| --- | --- | --- | --- |"
        );
        for v in &self.verdicts {
            let _ = writeln!(
                md,
                "| {} | {} | {} | {} |",
                v.scenario,
                v.goal,
                v.measured,
                if v.met { "yes" } else { "**no**" }
            );
        }
        for (_, name, dm) in self.dms() {
            if let Some(dm) = dm {
                dm_table(&mut md, name, dm);
            }
        }
        if let Some(c) = &self.cluster {
            cluster_table(&mut md, c);
        }
        if let Some(g) = &self.group {
            let _ = writeln!(
                md,
                "\n**group** ({} members online, {} messages one after another)\n\n| send p50 / p99 | first member p50 | last member p50 / p99 / max | deliveries/s |\n| --- | --- | --- | --- |\n| {:.1} / {:.1} ms | {:.1} ms | {:.1} / {:.1} / {:.1} ms | {} |",
                g.members,
                g.messages,
                g.send.p50_ms,
                g.send.p99_ms,
                g.first_delivery.p50_ms,
                g.last_delivery.p50_ms,
                g.last_delivery.p99_ms,
                g.last_delivery.max_ms,
                thousands(g.deliveries_per_s)
            );
        }
        if let Some(c) = &self.connections {
            let _ = writeln!(
                md,
                "\n**connections** ({} sessions, {} source address(es), {} connects in flight)\n\n| connections | failed | connect time | connects/s | RSS before → after | per connection | sample push p50 / p99 / max |\n| --- | --- | --- | --- | --- | --- | --- |\n| {} | {} | {:.2} s | {} | {:.1} → {:.1} MiB | {:.1} KiB | {:.2} / {:.2} / {:.2} ms |",
                if c.persistent_sessions {
                    "persistent"
                } else {
                    "clean"
                },
                c.source_addresses,
                c.concurrency,
                thousands(c.connections as f64),
                c.failed,
                c.connect_secs,
                thousands(c.connects_per_s),
                c.rss_before_kib as f64 / 1024.0,
                c.rss_connected_kib as f64 / 1024.0,
                c.rss_per_connection_bytes / 1024.0,
                c.sample_push.p50_ms,
                c.sample_push.p99_ms,
                c.sample_push.max_ms
            );
        }
        if let Some(s) = &self.sync {
            let runs: Vec<String> = s.runs.iter().map(|r| format!("{:.0}", r.ms)).collect();
            let _ = writeln!(
                md,
                "\n**sync** ({} events, pages of {})\n\n| median | runs (ms) | pages | bytes |\n| --- | --- | --- | --- |\n| {:.0} ms | {} | {} | {} KiB |",
                thousands(s.backlog as f64),
                s.page,
                s.median_ms,
                runs.join(", "),
                s.runs.first().map_or(0, |r| r.pages),
                s.bytes / 1024
            );
        }
        if let Some(s) = &self.sweep {
            let _ = writeln!(
                md,
                "\n**sweep** ({} expired messages at start, sends at {}/s)\n\n| swept in | swept/s | send p50 / p99 during | p50 / p99 idle | p99 ratio |\n| --- | --- | --- | --- | --- |\n| {:.1} s | {:.0} | {:.2} / {:.2} ms | {:.2} / {:.2} ms | {:.2}× |",
                thousands(s.backlog as f64),
                s.rate,
                s.sweep_s,
                s.swept_per_s,
                s.during.p50_ms,
                s.during.p99_ms,
                s.idle.p50_ms,
                s.idle.p99_ms,
                s.p99_ratio
            );
        }
        if let Some(i) = &self.idle {
            let starts: Vec<String> = i
                .start_to_ready_ms
                .iter()
                .map(|ms| format!("{ms:.0}"))
                .collect();
            let _ = writeln!(
                md,
                "\n**idle** ({} fresh starts)\n\n| start to ready (ms) | idle RSS |\n| --- | --- |\n| {} | {:.1} MiB |",
                i.starts,
                starts.join(", "),
                i.median_rss_kib / 1024.0
            );
        }
        if self.bare.is_some() || self.bare_dm.is_some() || self.store.is_some() {
            let _ = writeln!(
                md,
                "\n**baselines** (same run)\n\n| limit | figure |\n| --- | --- |"
            );
            if let Some(b) = &self.bare {
                let _ = writeln!(
                    md,
                    "| bare rumqttd, QoS 1 pushes from inside the process to {} subscribers (median of {}) | {} /s |",
                    b.subscribers,
                    b.runs,
                    thousands(b.delivered_per_s)
                );
            }
            if let Some(b) = &self.bare_dm {
                for p in &b.phases {
                    let _ = writeln!(
                        md,
                        "| bare rumqttd under the dm load, {}: {} publishers over TCP (QoS 1) to {} subscribers, {}-byte payloads | {} delivered/s ({} lost, {} twice), p50 {:.2} ms, p99 {:.2} ms, {:.0} µs of CPU per message |",
                        p.name,
                        b.senders,
                        b.receivers,
                        b.payload_bytes,
                        thousands(p.delivered_per_s),
                        p.lost,
                        p.duplicates,
                        p.latency.p50_ms,
                        p.latency.p99_ms,
                        p.cpu_us_per_msg.get("all").copied().unwrap_or(0.0)
                    );
                }
            }
            if let Some(s) = &self.store {
                let _ = writeln!(
                    md,
                    "| chatsvc send path on the SQLite writer alone ({} senders, no HTTP, no MQTT) | {} /s (send p50 {:.2} ms) |",
                    s.senders,
                    thousands(s.per_s),
                    s.send.p50_ms
                );
                if let Some(w) = s.written {
                    let _ = writeln!(
                        md,
                        "| the store alone: written per message (WAL frames and checkpoints, `/proc/self/io`) | {:.0} bytes in {:.1} write calls |",
                        w.bytes_per_msg, w.calls_per_msg
                    );
                }
            }
            for (name, _, dm) in self.dms() {
                let Some(dm) = dm else { continue };
                let window = dm.config.in_flight_per_sender();
                let bare = self.bare_dm.as_ref().and_then(|b| b.saturation(window));
                if let (Some(sat), Some(bare)) = (saturation(dm), bare) {
                    let _ = writeln!(
                        md,
                        "| {name} saturation as a share of bare rumqttd under the dm load ({window} in flight per sender) | {:.2}× |",
                        sat.delivered_per_s / bare.delivered_per_s
                    );
                }
            }
            if let (Some(sat), Some(b)) = (self.saturation(), &self.bare) {
                let _ = writeln!(
                    md,
                    "| dm saturation as a share of bare rumqttd pushing from inside the process | {:.2}× |",
                    sat.delivered_per_s / b.delivered_per_s
                );
            }
            if let (Some(sat), Some(s)) = (self.saturation(), &self.store) {
                let _ = writeln!(
                    md,
                    "| dm saturation as a share of the store alone | {:.2}× |",
                    sat.delivered_per_s / s.per_s
                );
            }
        }
        md
    }

    /// End-to-end latency by percentile: dm phases, the group's last
    /// member, the connection sample.
    pub fn latency_svg(&self) -> String {
        let mut curves: Vec<(String, &[u64])> = Vec::new();
        for (_, name, dm) in self.dms() {
            for p in dm.iter().flat_map(|d| &d.phases) {
                curves.push((format!("{name} {}", p.name), &p.samples));
            }
        }
        for p in self.bare_dm.iter().flat_map(|b| &b.phases) {
            curves.push((format!("bare rumqttd, dm load, {}", p.name), &p.samples));
        }
        if let Some(g) = &self.group {
            curves.push((format!("group {} last member", g.members), &g.samples));
        }
        if let Some(c) = &self.connections {
            curves.push((
                format!("push to 1 of {} idle", thousands(c.connections as f64)),
                &c.samples,
            ));
        }
        let refs: Vec<(&str, &[u64])> = curves.iter().map(|(n, s)| (n.as_str(), *s)).collect();
        plot::cdf_svg(
            "chatd end-to-end latency by percentile (send to receipt)",
            &refs,
        )
    }
}

/// The saturation phase of a dm run.
fn saturation(dm: &DmReport) -> Option<&DmPhase> {
    dm.phases.iter().find(|p| p.target_rate.is_none())
}

/// A dm run's phases as a Markdown table, with the ceiling without store.
fn dm_table(md: &mut String, name: &str, dm: &DmReport) {
    let how = match dm.config.uplink {
        Uplink::Http => "senders over HTTP keep-alive, one request at a time".to_string(),
        Uplink::Mqtt => format!(
            "senders over the MQTT uplink, QoS 1, up to {} unanswered each",
            dm.config.window
        ),
        Uplink::Http2 => format!(
            "senders over HTTP/2 (h2c), one connection each with up to {} requests in flight",
            dm.config.window
        ),
        Uplink::Batch => format!(
            "senders over HTTP keep-alive, one `POST /v1/messages/batch` at a time with every send that is due, up to {}",
            dm.config.window
        ),
    };
    let _ = writeln!(
        md,
        "\n**{name}** ({} {how}, {} receivers over MQTT QoS 1, {} characters of text)\n\n| phase | sent/s | delivered/s | lost | dup | p50 | p99 | p99.9 | max | send answered p50 / p99 | CPU µs/msg: chatd (store) / this tool |\n| --- | --- | --- | --- | --- | --- | --- | --- | --- | --- | --- |",
        dm.config.senders, dm.config.receivers, dm.config.text_bytes
    );
    for p in &dm.phases {
        let _ = writeln!(
            md,
            "| {} | {} | {} | {} | {} | {:.2} ms | {:.2} ms | {:.2} ms | {:.1} ms | {:.2} / {:.2} ms | {} / {:.0} |",
            p.name,
            thousands(p.acked_per_s),
            thousands(p.delivered_per_s),
            p.lost,
            p.duplicates,
            p.latency.p50_ms,
            p.latency.p99_ms,
            p.latency.p999_ms,
            p.latency.max_ms,
            p.send_latency.p50_ms,
            p.send_latency.p99_ms,
            chatd_cpu(&p.chatd_cpu_us_per_msg),
            p.load_cpu_us_per_msg
        );
    }
    if dm.phases.iter().any(|p| p.store.is_some()) {
        let slow_ms = super::chatd::SLOW_SECONDS * 1e3;
        let _ = writeln!(
            md,
            "\nThe store writer in each phase (chatd's `/metrics`): a WAL restart stalls the writer, and every send queued meanwhile waits; so does a slow commit (over {} ms).\n\n| phase | group commits | jobs per commit | commit mean | commits over {} ms | writer busy committing | WAL restarts | restart mean | restarts over {} ms |\n| --- | --- | --- | --- | --- | --- | --- | --- | --- |",
            slow_ms,
            slow_ms,
            slow_ms
        );
        for p in &dm.phases {
            if let Some(st) = &p.store {
                let _ = writeln!(
                    md,
                    "| {} | {} | {:.1} | {:.2} ms | {} | {:.0}% | {} | {:.1} ms | {} |",
                    p.name,
                    thousands(st.commits as f64),
                    st.jobs_per_commit,
                    st.commit_mean_ms,
                    st.slow_commits,
                    st.commit_busy * 100.0,
                    st.wal_restarts,
                    st.wal_restart_mean_ms,
                    st.slow_wal_restarts
                );
            }
        }
    }
    if let Some(p) = saturation(dm) {
        if let Some(ceiling) = p.ceiling_without_store_per_s {
            let _ = writeln!(
                md,
                "\nAt saturation, chatd's uplink, MQTT and push work plus this tool's took {:.0} µs of CPU per message: these cores carry at most **{} msg/s** of this load even if the store cost nothing.",
                std::thread::available_parallelism().map_or(1, |n| n.get()) as f64 * 1e6 / ceiling,
                thousands(ceiling)
            );
        }
    }
}

/// chatd's CPU per message and its store threads' share, e.g. `107 (66)`.
fn chatd_cpu(by_thread: &std::collections::BTreeMap<String, f64>) -> String {
    let Some(all) = by_thread.get("all") else {
        return "–".into();
    };
    let store: f64 = by_thread
        .iter()
        .filter(|(name, _)| name.starts_with("store-"))
        .map(|(_, us)| us)
        .sum();
    format!("{all:.0} ({store:.0})")
}

/// One row per setup: rate achieved, latency, loss, and each node's CPU
/// per message.
fn cluster_table(md: &mut String, c: &ClusterReport) {
    let _ = writeln!(
        md,
        "\n**cluster** ({} senders on node 1, {} receivers on the last node, {} msg/s for {} s)\n\n| nodes | bus | acked/s | p50 / p99 | lost / dup | CPU µs/msg per node |\n| --- | --- | --- | --- | --- | --- |",
        c.senders, c.receivers, thousands(c.rate as f64), c.seconds
    );
    for r in &c.runs {
        let cpu: Vec<String> = r
            .phase
            .node_cpu_us_per_msg
            .iter()
            .map(|us| format!("{us:.0}"))
            .collect();
        let _ = writeln!(
            md,
            "| {} | {} | {} | {:.2} / {:.2} ms | {} / {} | {} |",
            r.nodes,
            if r.bus { "NATS" } else { "none" },
            thousands(r.phase.acked_per_s),
            r.phase.latency.p50_ms,
            r.phase.latency.p99_ms,
            r.phase.lost,
            r.phase.duplicates,
            cpu.join(" · ")
        );
    }
}

//! CPU time per thread role, from `/proc/self/task/*/`, so a report can say
//! where the time went: the router thread, rumqttd's network thread or the
//! gateway's runtime, the subscribers' runtime, the publisher.
//!
//! `schedstat` gives nanoseconds; where it reads zero (no scheduler
//! statistics in the kernel) `stat`'s utime + stime in 10 ms ticks is used.

use std::collections::BTreeMap;
use std::fs;

/// CPU nanoseconds per role at one instant.
#[derive(Debug, Clone, Default)]
pub struct Snapshot {
    ns: BTreeMap<&'static str, u64>,
}

/// Maps a thread name to its role. Names are set where the threads are made:
/// `router-0` is the gateway's router, `router-1` bare rumqttd's.
fn role(comm: &str) -> &'static str {
    match comm {
        "router-0" => "gateway router",
        "router-1" => "bare router",
        "bare-v4" => "bare rumqttd net",
        "gw-rt" => "gateway runtime",
        c if c.starts_with("mqtt-io") => "gateway conns",
        "clients-rt" => "subscribers",
        "publisher" => "publisher",
        _ => "other",
    }
}

impl Snapshot {
    pub fn take() -> Snapshot {
        let mut ns = BTreeMap::new();
        let Ok(tasks) = fs::read_dir("/proc/self/task") else {
            return Snapshot { ns };
        };
        for task in tasks.flatten() {
            let dir = task.path();
            let Ok(comm) = fs::read_to_string(dir.join("comm")) else {
                continue;
            };
            let Some(t) = thread_ns(&dir) else { continue };
            *ns.entry(role(comm.trim())).or_default() += t;
        }
        Snapshot { ns }
    }

    /// Milliseconds of CPU per role since `earlier`. Threads that ended in
    /// between are missing (only short-lived blocking-pool threads do).
    pub fn since(&self, earlier: &Snapshot) -> BTreeMap<String, f64> {
        self.ns
            .iter()
            .filter_map(|(role, &now)| {
                let before = earlier.ns.get(role).copied().unwrap_or(0);
                let ms = now.saturating_sub(before) as f64 / 1e6;
                (ms > 0.0).then(|| (role.to_string(), ms))
            })
            .collect()
    }
}

/// CPU nanoseconds by thread name (threads of one name summed) of a
/// process: `pid`, or this one.
pub fn by_thread_name(pid: Option<u32>) -> BTreeMap<String, u64> {
    let dir = match pid {
        Some(pid) => format!("/proc/{pid}/task"),
        None => "/proc/self/task".to_string(),
    };
    let mut ns = BTreeMap::new();
    let Ok(tasks) = fs::read_dir(dir) else {
        return ns;
    };
    for task in tasks.flatten() {
        let dir = task.path();
        let Ok(comm) = fs::read_to_string(dir.join("comm")) else {
            continue;
        };
        let Some(t) = thread_ns(&dir) else { continue };
        *ns.entry(comm.trim().to_string()).or_default() += t;
    }
    ns
}

/// CPU microseconds per unit of work, by thread name, between two
/// [`by_thread_name`] readings (threads under 0.5% of the total left out).
pub fn us_per(
    before: &BTreeMap<String, u64>,
    after: &BTreeMap<String, u64>,
    units: u64,
) -> BTreeMap<String, f64> {
    let deltas: Vec<(&String, u64)> = after
        .iter()
        .map(|(name, &t)| {
            (
                name,
                t.saturating_sub(before.get(name).copied().unwrap_or(0)),
            )
        })
        .collect();
    let total: u64 = deltas.iter().map(|(_, d)| d).sum();
    let mut out: BTreeMap<String, f64> = deltas
        .into_iter()
        .filter(|&(_, d)| d * 200 >= total && d > 0)
        .map(|(name, d)| (name.clone(), d as f64 / 1e3 / units.max(1) as f64))
        .collect();
    out.insert("all".into(), total as f64 / 1e3 / units.max(1) as f64);
    out
}

fn thread_ns(dir: &std::path::Path) -> Option<u64> {
    let sched = fs::read_to_string(dir.join("schedstat")).ok();
    if let Some(ns) = sched
        .as_deref()
        .and_then(|s| s.split_whitespace().next())
        .and_then(|v| v.parse::<u64>().ok())
        .filter(|&v| v > 0)
    {
        return Some(ns);
    }
    let stat = fs::read_to_string(dir.join("stat")).ok()?;
    // Fields after the parenthesised name: state is field 3, utime 14, stime 15.
    let rest = stat.rsplit_once(')')?.1;
    let fields: Vec<&str> = rest.split_whitespace().collect();
    let ticks = fields.get(11)?.parse::<u64>().ok()? + fields.get(12)?.parse::<u64>().ok()?;
    Some(ticks * 10_000_000)
}

/// Whole-machine CPU counters from `/proc/stat` (10 ms ticks), to tell how
/// much of the machine something outside this process used during a run.
#[derive(Debug, Clone, Copy, Default)]
pub struct Host {
    busy: u64,
    steal: u64,
    at: Option<std::time::Instant>,
}

/// Cores' worth of CPU during a run: all processes, the rest of the machine
/// (everything but this process), and time stolen by the hypervisor.
#[derive(Debug, Clone, Copy, Default, serde::Serialize)]
pub struct HostLoad {
    pub busy_cores: f64,
    pub other_cores: f64,
    pub steal_cores: f64,
}

impl Host {
    pub fn take() -> Host {
        let at = Some(std::time::Instant::now());
        let Some(line) = fs::read_to_string("/proc/stat")
            .ok()
            .and_then(|s| s.lines().next().map(str::to_string))
        else {
            return Host::default();
        };
        // cpu user nice system idle iowait irq softirq steal guest guest_nice
        let v: Vec<u64> = line
            .split_whitespace()
            .skip(1)
            .filter_map(|f| f.parse().ok())
            .collect();
        let get = |i: usize| v.get(i).copied().unwrap_or(0);
        let busy = get(0) + get(1) + get(2) + get(5) + get(6);
        Host {
            busy,
            steal: get(7),
            at,
        }
    }

    /// Load since `earlier`; `ours_ms` is this process's CPU in that time.
    pub fn since(&self, earlier: &Host, ours_ms: f64) -> HostLoad {
        let (Some(now), Some(then)) = (self.at, earlier.at) else {
            return HostLoad::default();
        };
        let secs = now.duration_since(then).as_secs_f64().max(1e-3);
        let busy = self.busy.saturating_sub(earlier.busy) as f64 / 100.0 / secs;
        let steal = self.steal.saturating_sub(earlier.steal) as f64 / 100.0 / secs;
        let ours = ours_ms / 1e3 / secs;
        HostLoad {
            busy_cores: busy,
            other_cores: (busy - ours).max(0.0),
            steal_cores: steal,
        }
    }
}

/// Waits (at most `max`) until processes other than this one use less than
/// `threshold` cores over a half-second sample. Returns the last sample.
pub fn wait_idle(max: std::time::Duration, threshold: f64) -> f64 {
    let start = std::time::Instant::now();
    let mut warned = false;
    loop {
        let (host0, ours0) = (Host::take(), Snapshot::take());
        std::thread::sleep(std::time::Duration::from_millis(500));
        let ours: f64 = Snapshot::take().since(&ours0).values().sum();
        let other = Host::take().since(&host0, ours).other_cores;
        if other < threshold || start.elapsed() >= max {
            if warned {
                eprintln!();
            }
            return other;
        }
        warned = true;
        eprint!(
            "\rwaiting for other processes to go idle: {other:.2} cores busy ({:.0}/{:.0} s)   ",
            start.elapsed().as_secs_f64(),
            max.as_secs_f64()
        );
    }
}

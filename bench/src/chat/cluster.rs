//! **cluster**: the dm load over HTTP at one fixed rate, on 1, 2 and 3
//! chatd nodes sharing one PostgreSQL database and one nats-server, with
//! the senders on node 1 and the receivers on the last node (so every push
//! crosses the bus), against one node without the bus. All on this
//! machine's cores: this measures what the bus costs per message and adds
//! to a push's latency, not how a cluster scales (BENCHMARKS.md has the
//! capacity model).

use std::path::Path;

use anyhow::{bail, Result};
use serde::Serialize;

use super::chatd::{Chatd, Databases};
use super::dm::{self, DmConfig, DmPhase, Placement, Uplink};
use super::nats::{self, NatsServer};
use super::Args;

/// One setup: how many nodes, with or without the bus.
#[derive(Debug, Clone, Serialize)]
pub struct ClusterRun {
    pub nodes: usize,
    pub bus: bool,
    pub phase: DmPhase,
}

#[derive(Debug, Clone, Serialize)]
pub struct ClusterReport {
    pub rate: u64,
    pub seconds: f64,
    pub senders: usize,
    pub receivers: usize,
    /// One node without `--cluster` first, then each node count with it.
    pub runs: Vec<ClusterRun>,
}

impl ClusterReport {
    /// The run without the bus, which the others are compared with.
    pub fn single(&self) -> Option<&ClusterRun> {
        self.runs.iter().find(|r| !r.bus)
    }

    /// Latency the bus adds: (nodes, added p50 ms, added p99 ms) of each
    /// run whose pushes crossed nodes.
    pub fn added(&self) -> Vec<(usize, f64, f64)> {
        let Some(single) = self.single() else {
            return Vec::new();
        };
        self.runs
            .iter()
            .filter(|r| r.bus && r.nodes > 1)
            .map(|r| {
                (
                    r.nodes,
                    r.phase.latency.p50_ms - single.phase.latency.p50_ms,
                    r.phase.latency.p99_ms - single.phase.latency.p99_ms,
                )
            })
            .collect()
    }
}

pub async fn run(
    bin: &Path,
    databases: &tokio::sync::Mutex<Databases>,
    args: &Args,
) -> Result<ClusterReport> {
    let nats_bin = nats::locate(args.nats_server.as_deref())?;
    let nats = NatsServer::start(&nats_bin).await?;
    let cfg = DmConfig {
        senders: args.senders,
        receivers: args.receivers,
        rates: vec![args.cluster_rate],
        rate_secs: args.rate_secs,
        saturation_secs: 0.0,
        text_bytes: args.text_bytes,
        uplink: Uplink::Http,
        window: 1,
    };
    let mut setups = vec![(1, false)];
    setups.extend(args.cluster_nodes.iter().map(|&n| (n, true)));
    let mut runs = Vec::new();
    for (n, bus) in setups {
        if n == 0 {
            bail!("--cluster-nodes: a cluster has at least one node");
        }
        eprintln!(
            "cluster: {n} node(s) {}",
            if bus {
                "with the bus"
            } else {
                "without the bus"
            }
        );
        let store = databases.lock().await.create().await?;
        let mut nodes: Vec<Chatd> = Vec::with_capacity(n);
        for i in 0..n {
            let extra = match bus {
                true => vec![
                    "--cluster".to_owned(),
                    nats.url.clone(),
                    "--node-id".to_owned(),
                    format!("bench-{}", i + 1),
                ],
                false => Vec::new(),
            };
            let node = Chatd::spawn_node(bin, &extra, Some(store.clone()), nodes.first()).await?;
            nodes.push(node);
        }
        let at = Placement {
            send: &nodes[0],
            receive: &nodes[n - 1],
            nodes: nodes.iter().collect(),
        };
        let report = dm::run_placed(&at, &cfg).await?;
        let Some(phase) = report.phases.into_iter().next() else {
            bail!("cluster: the dm run measured nothing");
        };
        runs.push(ClusterRun {
            nodes: n,
            bus,
            phase,
        });
    }
    Ok(ClusterReport {
        rate: args.cluster_rate,
        seconds: args.rate_secs,
        senders: args.senders,
        receivers: args.receivers,
        runs,
    })
}

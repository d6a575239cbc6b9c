//! A chatd cluster for tests: one [`crate::postgres::TestPostgres`], one [`crate::nats::TestNats`], and N
//! chatd nodes sharing the database, each with its own data dir and ports,
//! all with the same JWT secret and admin token (as a real cluster must).

use std::path::PathBuf;

use anyhow::{bail, Result};

use crate::nats::TestNats;
use crate::postgres::TestPostgres;
use crate::TestServer;

/// Timings short enough for tests: heartbeats every 100 ms, a node dead
/// after 600 ms of silence, friends told of an offline after 300 ms.
pub const FAST_TIMINGS: [&str; 8] = [
    "--cluster-heartbeat-ms",
    "100",
    "--cluster-lease-ms",
    "600",
    "--presence-debounce-ms",
    "300",
    "--cluster-reorder-ms",
    "100",
];

/// A running cluster; everything stops on drop.
pub struct TestCluster {
    pub nodes: Vec<TestServer>,
    pub nats: TestNats,
    pub pg: TestPostgres,
    dirs: Vec<PathBuf>,
    extra: Vec<String>,
    _tmp: tempfile::TempDir,
}

impl TestCluster {
    /// `n` nodes with [`FAST_TIMINGS`], no rate limits, and `extra` flags.
    /// `None` when PostgreSQL or nats-server is not installed outside CI.
    pub async fn start(n: usize, extra: &[&str]) -> Result<Option<TestCluster>> {
        let Some(pg) = TestPostgres::init().await? else {
            return Ok(None);
        };
        let Some(nats) = TestNats::start().await? else {
            return Ok(None);
        };
        let tmp = tempfile::tempdir()?;
        // Every node signs and checks the same tokens.
        let secret = random_hex();
        let admin = random_hex();
        let mut cluster = TestCluster {
            nodes: Vec::new(),
            nats,
            pg,
            dirs: Vec::new(),
            extra: extra.iter().map(|s| (*s).to_owned()).collect(),
            _tmp: tmp,
        };
        for i in 1..=n {
            let dir = cluster._tmp.path().join(format!("node{i}"));
            std::fs::create_dir_all(&dir)?;
            std::fs::write(dir.join("jwt.secret"), &secret)?;
            std::fs::write(dir.join("admin.token"), &admin)?;
            cluster.dirs.push(dir);
        }
        for i in 0..n {
            let node = cluster.start_node(i, "127.0.0.1:0", "127.0.0.1:0").await?;
            cluster.nodes.push(node);
        }
        Ok(Some(cluster))
    }

    /// Node `i` (0-based)'s flags. A rate limit given in the extra flags
    /// replaces the harness's 0.
    fn flags(&self, i: usize) -> Vec<String> {
        let mut flags: Vec<String> = [
            "--store".to_owned(),
            self.pg.url(),
            "--cluster".to_owned(),
            self.nats.url(),
            "--node-id".to_owned(),
            format!("node{}", i + 1),
        ]
        .into();
        for limit in ["--auth-ip-rate", "--login-rate", "--send-rate"] {
            if !self.extra.iter().any(|f| f == limit) {
                flags.extend([limit.to_owned(), "0".to_owned()]);
            }
        }
        flags.extend(FAST_TIMINGS.iter().map(|s| (*s).to_owned()));
        flags.extend(self.extra.iter().cloned());
        flags
    }

    async fn start_node(&self, i: usize, http: &str, mqtt: &str) -> Result<TestServer> {
        let flags = self.flags(i);
        let flags: Vec<&str> = flags.iter().map(String::as_str).collect();
        TestServer::start_at(&self.dirs[i], http, mqtt, &flags).await
    }

    /// SIGKILLs node `i` (0-based): no goodbye on the bus.
    pub async fn kill9(&mut self, i: usize) -> Result<()> {
        self.nodes[i].kill9().await
    }

    /// Starts node `i` again on its ports after [`TestCluster::kill9`].
    pub async fn restart(&mut self, i: usize) -> Result<()> {
        let (http, mqtt) = (
            self.nodes[i].http.to_string(),
            self.nodes[i].mqtt.to_string(),
        );
        let node = self.start_node(i, &http, &mqtt).await?;
        self.nodes[i] = node;
        Ok(())
    }

    /// Waits until every node is on the bus and knows all `n` nodes.
    pub async fn wait_formed(&self) -> Result<()> {
        let n = self.nodes.len();
        for node in &self.nodes {
            crate::eventually(std::time::Duration::from_secs(10), || async {
                let h = node.health().await?;
                Ok((h["cluster"]["bus"] == "up" && h["cluster"]["nodes"] == n).then_some(()))
            })
            .await
            .map_err(|e| anyhow::anyhow!("cluster not formed: {e}"))?;
        }
        Ok(())
    }
}

fn random_hex() -> String {
    use std::fmt::Write;
    let mut s = String::new();
    for _ in 0..48 {
        let _ = write!(s, "{:02x}", rand_byte());
    }
    s
}

/// Not for secrets outside tests: enough to keep two test runs apart.
fn rand_byte() -> u8 {
    use std::hash::{BuildHasher, Hasher};
    let mut h = std::collections::hash_map::RandomState::new().build_hasher();
    h.write_u64(u64::from(std::process::id()));
    (h.finish() & 0xff) as u8
}

/// Fails with the node's last log lines, for a clearer message.
pub fn node_log_tail(node: &TestServer, n: usize) -> String {
    let logs = node.logs();
    logs[logs.len().saturating_sub(n)..].join("\n")
}

/// Asserts a condition with the cluster's logs attached when it fails.
pub fn ensure_or_logs(ok: bool, what: &str, cluster: &TestCluster) -> Result<()> {
    if ok {
        return Ok(());
    }
    let logs: Vec<String> = cluster
        .nodes
        .iter()
        .enumerate()
        .map(|(i, n)| format!("--- node{}:\n{}", i + 1, node_log_tail(n, 20)))
        .collect();
    bail!("{what}\n{}", logs.join("\n"))
}

/// Waits until `user`'s node (see [`crate::TestUser::via`]) reports `id`
/// (the user, or a friend) online or offline: the node's view of the
/// cluster has caught up.
pub async fn wait_presence(user: &crate::TestUser, id: u64, online: bool) -> Result<()> {
    crate::eventually(std::time::Duration::from_secs(10), || async {
        let (s, body) = user.get(&format!("/v1/presence?users={id}")).await?;
        if s != 200 {
            bail!("presence: {s} {body}");
        }
        Ok((body["presence"][0]["online"] == online).then_some(()))
    })
    .await
    .map_err(|e| anyhow::anyhow!("user {id} never seen online={online}: {e}"))
}

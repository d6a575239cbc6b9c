//! `docker/haproxy.cfg`, the same file docker/compose.cluster.yaml uses, run
//! by Debian's haproxy on loopback: the addresses it reads from the
//! environment are set to free loopback ports for the balancer and to the
//! test's chatd nodes. Stopped on drop.

use std::net::SocketAddr;
use std::path::PathBuf;
use std::process::Stdio;
use std::time::Duration;

use anyhow::{anyhow, Context, Result};
use tokio::process::{Child, Command};

/// Servers the config names (`node1`..`node3`).
pub const NODES: usize = 3;

/// Where haproxy connects to the nodes from (`LB_SOURCE`): the address the
/// nodes trust for PROXY headers (`--trusted-proxies`). Not 127.0.0.1, so
/// that the test's own direct calls to a node (from 127.0.0.1) are not
/// taken for the balancer's.
pub const SOURCE: &str = "127.0.0.9";

/// A running haproxy in front of chatd nodes.
pub struct TestHaproxy {
    /// The balancer's HTTP (and WebSocket MQTT) address.
    pub http: SocketAddr,
    /// The balancer's MQTT over TCP address.
    pub mqtt: SocketAddr,
    dir: tempfile::TempDir,
    _child: Child,
}

impl TestHaproxy {
    /// haproxy with `docker/haproxy.cfg` in front of `nodes` (each its HTTP
    /// and MQTT address; up to [`NODES`], the rest left pointing at a closed
    /// port). Returns once the balancer answers `/healthz`. `None` when
    /// haproxy is not installed outside CI.
    pub async fn start(nodes: &[(SocketAddr, SocketAddr)]) -> Result<Option<TestHaproxy>> {
        let Some(bin) = haproxy_bin()? else {
            return Ok(None);
        };
        let config = PathBuf::from(env!("CARGO_MANIFEST_DIR")).join("../docker/haproxy.cfg");
        let dir = tempfile::Builder::new()
            .prefix("mqchat-haproxy-")
            .tempdir()?;
        let http = free_addr()?;
        let mqtt = free_addr()?;
        let mut command = Command::new(bin);
        // -db: foreground, logs to stdout (into the log file).
        command
            .arg("-db")
            .arg("-f")
            .arg(&config)
            .env("LB_HTTP", http.to_string())
            .env("LB_MQTT", mqtt.to_string())
            .env("LB_SOURCE", SOURCE);
        for i in 0..NODES {
            // Port 1 on loopback: nothing listens, the server stays down.
            let (node_http, node_mqtt) = nodes.get(i).map_or(
                ("127.0.0.1:1".to_owned(), "127.0.0.1:1".to_owned()),
                |(h, m)| (h.to_string(), m.to_string()),
            );
            command
                .env(format!("CHATD{}_HTTP", i + 1), node_http)
                .env(format!("CHATD{}_MQTT", i + 1), node_mqtt);
        }
        let log = std::fs::File::create(dir.path().join("haproxy.log"))?;
        let child = command
            .current_dir(dir.path())
            .stdin(Stdio::null())
            .stdout(log.try_clone()?)
            .stderr(log)
            .kill_on_drop(true)
            .spawn()
            .context("spawn haproxy")?;
        let lb = TestHaproxy {
            http,
            mqtt,
            dir,
            _child: child,
        };
        let client = reqwest::Client::builder()
            .timeout(Duration::from_secs(2))
            .build()?;
        let url = lb.url("/healthz");
        crate::eventually(Duration::from_secs(10), || async {
            Ok(client
                .get(&url)
                .send()
                .await
                .ok()
                .filter(|r| r.status().is_success())
                .map(|_| ()))
        })
        .await
        .map_err(|_| anyhow!("haproxy not serving on {http}: {}", lb.log()))?;
        Ok(Some(lb))
    }

    /// `http://{balancer}{path}`.
    pub fn url(&self, path: &str) -> String {
        format!("http://{}{path}", self.http)
    }

    /// What haproxy logged so far (requests, connections, health changes).
    pub fn log(&self) -> String {
        std::fs::read_to_string(self.dir.path().join("haproxy.log")).unwrap_or_default()
    }
}

/// haproxy from PATH or /usr/sbin (Debian's place, not always on a user's
/// PATH); `None` (skip) when missing outside CI.
fn haproxy_bin() -> Result<Option<PathBuf>> {
    for candidate in ["haproxy", "/usr/sbin/haproxy"] {
        if std::process::Command::new(candidate)
            .arg("-v")
            .output()
            .is_ok_and(|o| o.status.success())
        {
            return Ok(Some(PathBuf::from(candidate)));
        }
    }
    crate::tool_available("/usr/sbin/haproxy", "haproxy").map(|_| None)
}

fn free_addr() -> Result<SocketAddr> {
    Ok(std::net::TcpListener::bind("127.0.0.1:0")?.local_addr()?)
}

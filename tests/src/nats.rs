//! A throwaway NATS server for cluster tests: Debian's `nats-server` on a
//! free loopback port, its files in a temp dir, stopped on drop. It can be
//! stopped and started again on the same port to simulate an outage.

use std::process::Stdio;
use std::time::Duration;

use anyhow::{anyhow, bail, Context, Result};
use tokio::process::{Child, Command};

/// A nats-server of its own (core NATS: no JetStream).
pub struct TestNats {
    dir: tempfile::TempDir,
    port: u16,
    child: Option<Child>,
}

impl TestNats {
    /// Starts nats-server on a free port. `None` when it is not installed
    /// outside CI (the test then skips; see [`crate::tool_available`]).
    pub async fn start() -> Result<Option<TestNats>> {
        if !crate::tool_available("nats-server", "nats-server")? {
            return Ok(None);
        }
        let dir = tempfile::Builder::new().prefix("mqchat-nats-").tempdir()?;
        let mut nats = TestNats {
            dir,
            port: 0,
            child: None,
        };
        // A port free a moment ago may be taken when the server binds it.
        let mut attempts = 1;
        loop {
            nats.port = std::net::TcpListener::bind("127.0.0.1:0")?
                .local_addr()?
                .port();
            match nats.resume().await {
                Ok(()) => return Ok(Some(nats)),
                Err(_) if attempts < 3 => attempts += 1,
                Err(e) => return Err(e),
            }
        }
    }

    /// `nats://127.0.0.1:PORT`.
    pub fn url(&self) -> String {
        format!("nats://127.0.0.1:{}", self.port)
    }

    /// Starts the server again on its port (after [`TestNats::stop`]);
    /// returns once it accepts connections.
    pub async fn resume(&mut self) -> Result<()> {
        if self.child.is_some() {
            return Ok(());
        }
        let log = self.dir.path().join("nats.log");
        let child = Command::new("nats-server")
            .args(["-a", "127.0.0.1", "-p", &self.port.to_string(), "-l"])
            .arg(&log)
            .stdin(Stdio::null())
            .stdout(Stdio::null())
            .stderr(Stdio::null())
            .kill_on_drop(true)
            .spawn()
            .context("spawn nats-server")?;
        self.child = Some(child);
        let port = self.port;
        let ready = crate::eventually(Duration::from_secs(10), || async move {
            Ok(tokio::net::TcpStream::connect(("127.0.0.1", port))
                .await
                .ok()
                .map(|_| ()))
        })
        .await;
        if let Some(child) = self.child.as_mut() {
            if let Ok(Some(status)) = child.try_wait() {
                self.child = None;
                bail!("nats-server exited ({status}): {}", self.log());
            }
        }
        ready.map_err(|_| anyhow!("nats-server not accepting on {port}: {}", self.log()))
    }

    /// Kills the server (SIGKILL: no goodbye to its clients).
    pub async fn stop(&mut self) -> Result<()> {
        if let Some(mut child) = self.child.take() {
            child.start_kill()?;
            child.wait().await?;
        }
        Ok(())
    }

    /// The server's log so far.
    pub fn log(&self) -> String {
        std::fs::read_to_string(self.dir.path().join("nats.log")).unwrap_or_default()
    }
}

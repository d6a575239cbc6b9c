//! A nats-server this tool starts for `--scenarios cluster`: loopback, a
//! free port, a temp dir; killed when dropped.

use std::net::TcpListener;
use std::path::{Path, PathBuf};
use std::process::{Child, Command, Stdio};
use std::time::{Duration, Instant};

use anyhow::{bail, Context, Result};

pub struct NatsServer {
    child: Child,
    pub url: String,
    _dir: tempfile::TempDir,
}

impl Drop for NatsServer {
    fn drop(&mut self) {
        let _ = self.child.kill();
        let _ = self.child.wait();
    }
}

/// `--nats-server`, else `nats-server` on PATH, else Debian's
/// `/usr/sbin/nats-server` (not on a user's PATH).
pub fn locate(explicit: Option<&Path>) -> Result<PathBuf> {
    if let Some(p) = explicit {
        return Ok(p.to_owned());
    }
    let on_path = std::env::var_os("PATH")
        .into_iter()
        .flat_map(|p| std::env::split_paths(&p).collect::<Vec<_>>())
        .map(|d| d.join("nats-server"))
        .chain([PathBuf::from("/usr/sbin/nats-server")])
        .find(|p| p.is_file());
    match on_path {
        Some(p) => Ok(p),
        None => {
            bail!("nats-server not found: install it (Debian: nats-server) or pass --nats-server")
        }
    }
}

impl NatsServer {
    pub async fn start(bin: &Path) -> Result<NatsServer> {
        let dir = tempfile::Builder::new()
            .prefix("chat-bench-nats-")
            .tempdir()?;
        let port = TcpListener::bind("127.0.0.1:0")?.local_addr()?.port();
        let log = std::fs::File::create(dir.path().join("nats.log"))?;
        let child = Command::new(bin)
            .args(["-a", "127.0.0.1", "-p", &port.to_string()])
            .stdin(Stdio::null())
            .stdout(log.try_clone()?)
            .stderr(log)
            .spawn()
            .with_context(|| format!("start {}", bin.display()))?;
        let server = NatsServer {
            child,
            url: format!("nats://127.0.0.1:{port}"),
            _dir: dir,
        };
        let started = Instant::now();
        while tokio::net::TcpStream::connect(("127.0.0.1", port))
            .await
            .is_err()
        {
            if started.elapsed() > Duration::from_secs(10) {
                bail!("nats-server not listening on {port} after 10 s");
            }
            tokio::time::sleep(Duration::from_millis(10)).await;
        }
        Ok(server)
    }
}

//! The chatd under test: a process this tool starts (fresh data dir, free
//! loopback ports, the same flags as a default run but for rate limits), or
//! one already running at a given address. Also: users for the scenarios,
//! and the HTTP calls they make.

use std::net::{SocketAddr, TcpListener};
use std::path::{Path, PathBuf};
use std::process::{Child, Command, Stdio};
use std::time::{Duration, Instant};

use anyhow::{anyhow, bail, Context, Result};
use mqchat_chatsvc::domain::Tokens;
use mqchat_chatsvc::store::{sessions, users, StoreError};
use serde_json::{json, Value};

/// A user the load acts as: its id and a valid access token.
#[derive(Debug, Clone)]
pub struct BenchUser {
    pub id: u64,
    pub token: String,
}

/// How to reach (and, if this tool started it, observe) the chatd under test.
pub struct Chatd {
    pub http: SocketAddr,
    pub mqtt: SocketAddr,
    child: Option<Child>,
    /// chatd's data dir, when this tool can write to its store.
    data_dir: Option<PathBuf>,
    /// chatd's `--store` when it is PostgreSQL (users are provisioned
    /// there).
    store: Option<String>,
    /// Removes the data dir of a chatd this tool started.
    tmp: Option<tempfile::TempDir>,
    /// From spawning the process to the first `/healthz` answer.
    pub start_to_ready: Option<Duration>,
    pub client: reqwest::Client,
}

impl Drop for Chatd {
    fn drop(&mut self) {
        self.stop();
    }
}

/// Where `chatd` is: `--chatd`, or next to this executable.
pub fn locate(explicit: Option<&Path>) -> Result<PathBuf> {
    if let Some(p) = explicit {
        return Ok(p.to_owned());
    }
    let exe = std::env::current_exe()?;
    let path = exe.with_file_name("chatd");
    if !path.exists() {
        bail!(
            "{} not found: build it (`cargo build --release --bin chatd`) or pass --chatd",
            path.display()
        );
    }
    Ok(path)
}

fn free_port() -> Result<u16> {
    Ok(TcpListener::bind("127.0.0.1:0")?.local_addr()?.port())
}

pub fn http_client() -> Result<reqwest::Client> {
    Ok(reqwest::Client::builder()
        .tcp_nodelay(true)
        .pool_max_idle_per_host(4096)
        .timeout(Duration::from_secs(30))
        .build()?)
}

impl Chatd {
    /// Starts `bin` on a fresh data dir and waits until `/healthz` answers.
    /// Sends are not rate-limited (the load is many messages from few users).
    pub async fn spawn(bin: &Path, extra: &[String], store: Option<String>) -> Result<Chatd> {
        Chatd::spawn_node(bin, extra, store, None).await
    }

    /// [`Chatd::spawn`] for another node of a deployment: it gets the token
    /// secret of `peer` (nodes that share a store share the secret, so a
    /// token from one is valid on all).
    pub async fn spawn_node(
        bin: &Path,
        extra: &[String],
        store: Option<String>,
        peer: Option<&Chatd>,
    ) -> Result<Chatd> {
        let dir = tempfile::Builder::new().prefix("chat-bench-").tempdir()?;
        if let Some(from) = peer.and_then(|p| p.data_dir.as_ref()) {
            std::fs::create_dir_all(dir.path().join("data"))?;
            std::fs::copy(from.join("jwt.secret"), dir.path().join("data/jwt.secret"))
                .context("share jwt.secret")?;
        }
        let http: SocketAddr = format!("127.0.0.1:{}", free_port()?).parse()?;
        let mqtt: SocketAddr = format!("127.0.0.1:{}", free_port()?).parse()?;
        let started = Instant::now();
        let child = launch(bin, http, mqtt, dir.path(), extra, store.as_deref())?;
        let mut chatd = Chatd {
            http,
            mqtt,
            child: Some(child),
            data_dir: Some(dir.path().join("data")),
            store,
            tmp: Some(dir),
            start_to_ready: None,
            client: http_client()?,
        };
        let ready = chatd.wait_ready(started, Duration::from_secs(20)).await?;
        chatd.start_to_ready = Some(ready);
        Ok(chatd)
    }

    /// Stops this chatd (SIGKILL) and starts `bin` again on the same data
    /// dir and store, on fresh ports; waits until it answers.
    pub async fn restart(&mut self, bin: &Path, extra: &[String]) -> Result<()> {
        let dir = self
            .tmp
            .as_ref()
            .map(|d| d.path().to_owned())
            .ok_or_else(|| anyhow!("restart: not a chatd this tool started"))?;
        self.stop();
        self.http = format!("127.0.0.1:{}", free_port()?).parse()?;
        self.mqtt = format!("127.0.0.1:{}", free_port()?).parse()?;
        let started = Instant::now();
        self.child = Some(launch(
            bin,
            self.http,
            self.mqtt,
            &dir,
            extra,
            self.store.as_deref(),
        )?);
        self.start_to_ready = Some(self.wait_ready(started, Duration::from_secs(60)).await?);
        Ok(())
    }

    /// Stops this chatd (SIGKILL), if this tool started it.
    pub fn stop(&mut self) {
        if let Some(mut child) = self.child.take() {
            let _ = child.kill();
            let _ = child.wait();
        }
    }

    /// The data dir of a chatd this tool started, on SQLite.
    pub fn sqlite_data_dir(&self) -> Option<&Path> {
        match self.store {
            None => self.data_dir.as_deref(),
            Some(_) => None,
        }
    }

    /// A chatd already running (its rate limits are its own business).
    /// With its data dir, users are provisioned in its store.
    pub fn attach(http: SocketAddr, mqtt: SocketAddr, data_dir: Option<PathBuf>) -> Result<Chatd> {
        Ok(Chatd {
            http,
            mqtt,
            child: None,
            data_dir,
            store: None,
            tmp: None,
            start_to_ready: None,
            client: http_client()?,
        })
    }

    async fn wait_ready(&mut self, started: Instant, limit: Duration) -> Result<Duration> {
        // A plain client: the pooled one must not keep a refused attempt.
        let probe = reqwest::Client::builder()
            .timeout(Duration::from_millis(500))
            .build()?;
        let url = self.url("/healthz");
        loop {
            if let Ok(r) = probe.get(&url).send().await {
                if r.status().is_success() {
                    return Ok(started.elapsed());
                }
            }
            if let Some(child) = &mut self.child {
                if let Some(status) = child.try_wait()? {
                    bail!("chatd exited with {status}; log: {}", self.log_tail());
                }
            }
            if started.elapsed() > limit {
                bail!("chatd not ready after {limit:?}; log: {}", self.log_tail());
            }
            tokio::time::sleep(Duration::from_millis(1)).await;
        }
    }

    fn log_tail(&self) -> String {
        self.tmp
            .as_ref()
            .and_then(|d| std::fs::read_to_string(d.path().join("chatd.log")).ok())
            .map(|s| s.lines().rev().take(20).collect::<Vec<_>>().join("\n"))
            .unwrap_or_default()
    }

    pub fn url(&self, path: &str) -> String {
        format!("http://{}{path}", self.http)
    }

    /// The store's counters from chatd's `/metrics`; `None` if it can't be
    /// read (any chatd serves it, started here or not).
    pub async fn store_counters(&self) -> Option<StoreCounters> {
        let text = self
            .client
            .get(self.url("/metrics"))
            .send()
            .await
            .ok()?
            .text()
            .await
            .ok()?;
        let value = |name: &str| {
            text.lines().find_map(|l| {
                let (key, v) = l.split_once(' ')?;
                (key == name).then(|| v.trim().parse::<f64>().ok())?
            })
        };
        let commits = value("mqchat_store_commit_seconds_count")?;
        let wal_restarts = value("mqchat_store_wal_rewind_seconds_count").unwrap_or(0.0);
        // Histogram buckets count what took at most `le` seconds.
        let over = |histogram: &str, total: f64| {
            value(&format!("{histogram}_bucket{{le=\"{SLOW_SECONDS}\"}}"))
                .map(|within| total - within)
        };
        Some(StoreCounters {
            commits,
            commit_seconds: value("mqchat_store_commit_seconds_sum")?,
            slow_commits: over("mqchat_store_commit_seconds", commits).unwrap_or(0.0),
            jobs: value("mqchat_store_commit_jobs_sum")?,
            wal_restarts,
            wal_restart_seconds: value("mqchat_store_wal_rewind_seconds_sum").unwrap_or(0.0),
            slow_wal_restarts: over("mqchat_store_wal_rewind_seconds", wal_restarts).unwrap_or(0.0),
        })
    }

    pub fn pid(&self) -> Option<u32> {
        self.child.as_ref().map(Child::id)
    }

    /// chatd's resident memory, KiB (only for a chatd this tool started).
    pub fn rss_kib(&self) -> Option<u64> {
        rss_kib(self.pid()?)
    }

    /// Creates `n` users named `{prefix}{i}` and returns them with access
    /// tokens valid for an hour.
    ///
    /// For a chatd this tool started (or given with `--data-dir`), users are written straight into its
    /// store with the same code chatd uses, and tokens are signed with its
    /// key: registering 20,000 users over HTTP would spend ~20 minutes in
    /// argon2, which is not what any scenario measures. These users have no
    /// password (they can't log in); their sessions are real. For a chatd at
    /// a given address, users register and log in over HTTP.
    pub async fn provision(&self, prefix: &str, n: usize) -> Result<Vec<BenchUser>> {
        match &self.data_dir {
            Some(dir) => provision_in_store(dir, self.store.as_deref(), prefix, n).await,
            None => self.provision_over_http(prefix, n).await,
        }
    }

    async fn provision_over_http(&self, prefix: &str, n: usize) -> Result<Vec<BenchUser>> {
        let bar = super::progress::bar(n as u64, &format!("register {prefix}*"));
        let run = format!("{:x}", std::process::id());
        let mut out = Vec::with_capacity(n);
        for i in 0..n {
            let username = format!("{prefix}{run}x{i}");
            let password = "chat-bench-password";
            let creds = json!({"username": username, "password": password});
            let r = self
                .client
                .post(self.url("/v1/auth/register"))
                .json(&creds)
                .send()
                .await?;
            if r.status().as_u16() != 201 {
                bail!("register {username}: {} {}", r.status(), r.text().await?);
            }
            let grant: Value = self
                .client
                .post(self.url("/v1/auth/login"))
                .json(&creds)
                .send()
                .await?
                .error_for_status()?
                .json()
                .await?;
            out.push(BenchUser {
                id: grant["user"]["id"]
                    .as_u64()
                    .ok_or_else(|| anyhow!("login answer without user.id: {grant}"))?,
                token: grant["access_token"]
                    .as_str()
                    .ok_or_else(|| anyhow!("login answer without access_token"))?
                    .to_string(),
            });
            bar.inc(1);
        }
        bar.finish_and_clear();
        Ok(out)
    }

    /// `POST path` with a user's token; the status and the JSON answer.
    pub async fn post(&self, user: &BenchUser, path: &str, body: &Value) -> Result<(u16, Value)> {
        let r = self
            .client
            .post(self.url(path))
            .bearer_auth(&user.token)
            .json(body)
            .send()
            .await?;
        let status = r.status().as_u16();
        let body = r.json().await.unwrap_or(Value::Null);
        Ok((status, body))
    }
}

async fn provision_in_store(
    data: &Path,
    store: Option<&str>,
    prefix: &str,
    n: usize,
) -> Result<Vec<BenchUser>> {
    let secret = std::fs::read_to_string(data.join("jwt.secret")).context("read jwt.secret")?;
    let tokens = Tokens::new(
        secret.trim().as_bytes(),
        Duration::from_secs(3600),
        Duration::from_secs(86_400),
    );
    let store = match store {
        Some(url) => {
            let options = mqchat_chatsvc::store::postgres::Options::default();
            mqchat_chatsvc::store::Store::connect_postgres(url, &options).await?
        }
        None => mqchat_chatsvc::store::Store::open(&data.join("chat.db"))?,
    };
    let prefix = prefix.to_string();
    let now = now_ms();
    let ids: Vec<(u64, u64)> = store
        .write(move |c| {
            let mut ids = Vec::with_capacity(n);
            for i in 0..n {
                let name = format!("{prefix}{i}");
                // Not a password hash: these accounts can't log in.
                let user = users::insert(c, &name, "!chat-bench", now)?;
                let refresh = format!("chat-bench refresh {name}");
                let sid = sessions::create(c, user.id, refresh.as_bytes(), now, now + 86_400_000)?;
                ids.push((user.id, sid));
            }
            Ok::<_, StoreError>(ids)
        })
        .await?;
    ids.into_iter()
        .map(|(id, sid)| {
            Ok(BenchUser {
                id,
                token: tokens.issue(id, sid)?,
            })
        })
        .collect()
}

/// Starts `bin` on `dir` (its `data/`; the log appended to `chatd.log`)
/// with the flags every run here uses (no rate limits), then `extra`.
fn launch(
    bin: &Path,
    http: SocketAddr,
    mqtt: SocketAddr,
    dir: &Path,
    extra: &[String],
    store: Option<&str>,
) -> Result<Child> {
    let log = std::fs::OpenOptions::new()
        .create(true)
        .append(true)
        .open(dir.join("chatd.log"))?;
    Command::new(bin)
        .arg("--http")
        .arg(http.to_string())
        .arg("--mqtt")
        .arg(mqtt.to_string())
        .arg("--data-dir")
        .arg(dir.join("data"))
        .args([
            "--send-rate",
            "0",
            "--login-rate",
            "0",
            "--auth-ip-rate",
            "0",
            "--mqtt-packet-rate",
            "0",
        ])
        .args(extra)
        .args(store.iter().flat_map(|url| ["--store", url]))
        .env("RUST_LOG", "warn")
        .stdin(Stdio::null())
        .stdout(log.try_clone()?)
        .stderr(log)
        .spawn()
        .with_context(|| format!("start {}", bin.display()))
}

pub fn now_ms() -> i64 {
    std::time::SystemTime::now()
        .duration_since(std::time::UNIX_EPOCH)
        .map_or(0, |d| d.as_millis() as i64)
}

/// A process's resident memory, KiB.
pub fn rss_kib(pid: u32) -> Option<u64> {
    let status = std::fs::read_to_string(format!("/proc/{pid}/status")).ok()?;
    status
        .lines()
        .find_map(|l| l.strip_prefix("VmRSS:"))?
        .trim()
        .trim_end_matches("kB")
        .trim()
        .parse()
        .ok()
}

/// What counts as a slow commit or WAL restart, in seconds: the p99
/// latency target, and one of the bounds of chatd's histogram buckets
/// (written the way Prometheus labels it: `le="0.01"`).
pub const SLOW_SECONDS: f64 = 0.01;

/// Running totals from chatd's `/metrics` about its store writer.
#[derive(Debug, Clone, Copy, Default)]
pub struct StoreCounters {
    pub commits: f64,
    pub commit_seconds: f64,
    /// Commits that took longer than [`SLOW_SECONDS`].
    pub slow_commits: f64,
    /// Jobs (sends among them) committed.
    pub jobs: f64,
    /// Times the writer made the WAL start over (`mqchat_store_wal_rewind_seconds`).
    pub wal_restarts: f64,
    pub wal_restart_seconds: f64,
    /// WAL restarts that took longer than [`SLOW_SECONDS`].
    pub slow_wal_restarts: f64,
}

/// What the store writer did during a phase, from two [`StoreCounters`].
#[derive(Debug, Clone, Copy, serde::Serialize)]
pub struct StoreActivity {
    pub commits: u64,
    pub jobs_per_commit: f64,
    pub commit_mean_ms: f64,
    /// The writer's time in group commits, as a share of the phase.
    pub commit_busy: f64,
    pub wal_restarts: u64,
    pub wal_restart_mean_ms: f64,
    /// Commits and WAL restarts longer than [`SLOW_SECONDS`]: each holds
    /// up every send queued behind it, so they make the latency's tail.
    pub slow_commits: u64,
    pub slow_wal_restarts: u64,
}

impl StoreActivity {
    pub fn between(before: StoreCounters, after: StoreCounters, seconds: f64) -> StoreActivity {
        let commits = after.commits - before.commits;
        let commit_s = after.commit_seconds - before.commit_seconds;
        let restarts = after.wal_restarts - before.wal_restarts;
        let per = |x: f64, n: f64| if n > 0.0 { x / n } else { 0.0 };
        StoreActivity {
            commits: commits as u64,
            jobs_per_commit: per(after.jobs - before.jobs, commits),
            commit_mean_ms: per(commit_s, commits) * 1e3,
            commit_busy: per(commit_s, seconds),
            wal_restarts: restarts as u64,
            wal_restart_mean_ms: per(
                after.wal_restart_seconds - before.wal_restart_seconds,
                restarts,
            ) * 1e3,
            slow_commits: (after.slow_commits - before.slow_commits) as u64,
            slow_wal_restarts: (after.slow_wal_restarts - before.slow_wal_restarts) as u64,
        }
    }
}

/// Fresh PostgreSQL databases for the chatd processes a run starts (each
/// scenario its own), made through `--store URL`, whose role may create
/// databases; dropped at the end of the run.
pub struct Databases {
    admin: tokio_postgres::Client,
    base: tokio_postgres::Config,
    made: Vec<String>,
}

impl Databases {
    pub async fn connect(url: &str) -> Result<Databases> {
        let base: tokio_postgres::Config = url.parse().context("--store URL")?;
        let (admin, connection) = base
            .connect(tokio_postgres::NoTls)
            .await
            .context("connect to --store")?;
        tokio::spawn(connection);
        Ok(Databases {
            admin,
            base,
            made: Vec::new(),
        })
    }

    /// A new empty database; its URL.
    pub async fn create(&mut self) -> Result<String> {
        let name = format!("chat_bench_{}_{}", std::process::id(), self.made.len());
        self.admin
            .batch_execute(&format!("CREATE DATABASE {name}"))
            .await
            .with_context(|| format!("CREATE DATABASE {name}"))?;
        self.made.push(name.clone());
        let host = match self.base.get_hosts().first() {
            Some(tokio_postgres::config::Host::Tcp(h)) => h.clone(),
            Some(tokio_postgres::config::Host::Unix(p)) => p.display().to_string(),
            None => "localhost".to_owned(),
        };
        let port = self.base.get_ports().first().copied().unwrap_or(5432);
        let user = self.base.get_user().unwrap_or("postgres");
        let password = self
            .base
            .get_password()
            .map(|p| format!(":{}", String::from_utf8_lossy(p)))
            .unwrap_or_default();
        Ok(format!("postgres://{user}{password}@{host}:{port}/{name}"))
    }

    /// Drops every database this run made.
    pub async fn drop_all(&mut self) {
        for name in self.made.drain(..) {
            let sql = format!("DROP DATABASE IF EXISTS {name} WITH (FORCE)");
            if let Err(e) = self.admin.batch_execute(&sql).await {
                eprintln!("drop {name}: {e}");
            }
        }
    }
}

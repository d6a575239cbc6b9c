//! Test harness: start a real `chatd` process on loopback port 0 with a
//! temporary data dir, and talk to it with real HTTP and MQTT clients.
//!
//! # Layout
//! - [`TestServer`]: spawns `chatd`, finds its bound ports in its log, kills
//!   or restarts it on the same data dir.
//! - [`TestUser`]: a registered, logged-in user and HTTP helpers.
//! - [`Mqtt`]: a rumqttc client whose incoming publishes and connection
//!   outcome are collected for assertions.
//! - [`eventually`]: poll an async condition instead of sleeping a guess.
//! - [`raw`]: hand-built MQTT packets for clients no library would be.
//! - [`postgres`], [`nats`], [`cluster`]: throwaway PostgreSQL and NATS
//!   servers, and N chatd nodes on them.
//! - [`webhooks::Receiver`]: an HTTP endpoint for chatd's webhooks.

#![allow(clippy::unwrap_used, clippy::expect_used)]

use std::net::SocketAddr;
use std::path::{Path, PathBuf};
use std::process::Stdio;
use std::sync::{Arc, Mutex};
use std::time::Duration;

use anyhow::{anyhow, bail, Context, Result};
use rumqttc::{MqttOptions, QoS};
use serde_json::{json, Value};
use tokio::io::{AsyncBufReadExt, BufReader};
use tokio::process::{Child, Command};
use tokio::sync::mpsc;

/// [`cluster::TestCluster`]: N chatd nodes on one PostgreSQL and one NATS.
pub mod cluster;
/// [`haproxy::TestHaproxy`]: `docker/haproxy.cfg` on loopback.
pub mod haproxy;
mod mqtt;
/// [`nats::TestNats`]: a throwaway nats-server.
pub mod nats;
/// [`postgres::TestPostgres`]: a throwaway PostgreSQL cluster.
pub mod postgres;
pub mod raw;
/// [`sdk::take`]: message events off an SDK stream, checked gap-free.
pub mod sdk;
/// [`webhooks::Receiver`]: a webhook endpoint on loopback.
pub mod webhooks;

pub use mqtt::{Mqtt, Seen};

/// Path of a workspace binary: `$ENV_VAR` if set, else next to the test
/// binary's directory (`target/<profile>/NAME`, built by `cargo test
/// --workspace`).
pub fn workspace_bin(name: &str, env_var: &str) -> Result<PathBuf> {
    if let Ok(p) = std::env::var(env_var) {
        return Ok(PathBuf::from(p));
    }
    let exe = std::env::current_exe()?;
    let profile_dir = exe
        .parent()
        .and_then(Path::parent)
        .ok_or_else(|| anyhow!("unexpected test binary location {}", exe.display()))?;
    let bin = profile_dir.join(name);
    if !bin.exists() {
        bail!(
            "{} not found: run `cargo test --workspace` (which builds it) or set {env_var}",
            bin.display()
        );
    }
    Ok(bin)
}

/// Path of the chatd binary (`$CHATD_BIN` or next to the test binary).
pub fn chatd_bin() -> Result<PathBuf> {
    workspace_bin("chatd", "CHATD_BIN")
}

/// Whether an external tool the test needs is installed. Outside CI a
/// missing tool skips the test (returns false, with a note); in CI
/// (`CI=true`) it is an error, because `.ci/run` installs it.
pub fn tool_available(tool: &str, package: &str) -> Result<bool> {
    if std::process::Command::new(tool)
        .arg("--help")
        .output()
        .is_ok()
    {
        return Ok(true);
    }
    if std::env::var("CI").is_ok_and(|v| v == "true") {
        bail!("{tool} is required in CI (apt-get install {package})");
    }
    eprintln!("SKIPPED: {tool} not installed");
    Ok(false)
}

/// A running chatd process.
pub struct TestServer {
    child: Option<Child>,
    pub http: SocketAddr,
    pub mqtt: SocketAddr,
    data_dir: PathBuf,
    /// `--store URL` when the harness chose PostgreSQL, else empty.
    store: Vec<String>,
    _tmp: Option<Arc<tempfile::TempDir>>,
    logs: Arc<Mutex<Vec<String>>>,
    pub http_client: reqwest::Client,
}

impl TestServer {
    /// Starts chatd on fresh ports with a fresh data dir.
    pub async fn start() -> Result<TestServer> {
        Self::start_with(&[]).await
    }

    /// Starts chatd with extra flags on fresh ports and a fresh data dir.
    pub async fn start_with(extra: &[&str]) -> Result<TestServer> {
        let tmp = Arc::new(tempfile::tempdir()?);
        let dir = tmp.path().join("data");
        let mut s = Self::start_in(&dir, extra).await?;
        s._tmp = Some(tmp);
        Ok(s)
    }

    /// Starts chatd on fresh ports with `data_dir` (kept by the caller) and
    /// extra flags.
    pub async fn start_in(data_dir: &Path, extra: &[&str]) -> Result<TestServer> {
        Self::start_at(data_dir, "127.0.0.1:0", "127.0.0.1:0", extra).await
    }

    /// Starts chatd on the given addresses (to restart on the same ports).
    pub async fn start_at(
        data_dir: &Path,
        http: &str,
        mqtt: &str,
        extra: &[&str],
    ) -> Result<TestServer> {
        let mut store = Vec::new();
        if postgres::suite_on_postgres() && !extra.iter().any(|a| a.starts_with("--store")) {
            store = vec![
                "--store".to_owned(),
                postgres::database_for(data_dir).await?,
            ];
        }
        let mut child = Command::new(chatd_bin()?)
            .args(["--http", http, "--mqtt", mqtt, "--data-dir"])
            .arg(data_dir)
            .args(&store)
            .args(extra)
            .env("RUST_LOG", "info,rumqttd=warn")
            .env("CHAT_LOG_FORMAT", "text")
            .stdout(Stdio::piped())
            .stderr(Stdio::piped())
            .kill_on_drop(true)
            .spawn()
            .context("spawn chatd")?;
        let logs = Arc::new(Mutex::new(Vec::new()));
        let (tx, mut rx) = mpsc::unbounded_channel::<String>();
        for stream in [
            child
                .stdout
                .take()
                .map(|s| Box::new(s) as Box<dyn tokio::io::AsyncRead + Unpin + Send>),
            child
                .stderr
                .take()
                .map(|s| Box::new(s) as Box<dyn tokio::io::AsyncRead + Unpin + Send>),
        ]
        .into_iter()
        .flatten()
        {
            let logs = logs.clone();
            let tx = tx.clone();
            tokio::spawn(async move {
                let mut lines = BufReader::new(stream).lines();
                while let Ok(Some(line)) = lines.next_line().await {
                    if std::env::var_os("CHATD_LOG").is_some() {
                        eprintln!("chatd| {line}");
                    }
                    let _ = tx.send(line.clone());
                    logs.lock().unwrap().push(line);
                }
            });
        }
        drop(tx);
        let ready = tokio::time::timeout(patient(Duration::from_secs(20)), async {
            while let Some(line) = rx.recv().await {
                if line.contains("chatd listening") {
                    return Ok(line);
                }
            }
            Err(anyhow!("chatd exited before listening"))
        })
        .await
        .map_err(|_| anyhow!("chatd did not report listening within 20 s"))??;
        let field = |name: &str| -> Result<SocketAddr> {
            let start = ready
                .find(&format!("{name}="))
                .ok_or_else(|| anyhow!("no {name}= in {ready}"))?
                + name.len()
                + 1;
            let rest = &ready[start..];
            let end = rest.find(' ').unwrap_or(rest.len());
            Ok(rest[..end].parse()?)
        };
        Ok(TestServer {
            http: field("http")?,
            mqtt: field("mqtt")?,
            child: Some(child),
            data_dir: data_dir.to_owned(),
            store,
            _tmp: None,
            logs,
            http_client: reqwest::Client::builder()
                .timeout(Duration::from_secs(20))
                .build()?,
        })
    }

    pub fn data_dir(&self) -> &Path {
        &self.data_dir
    }

    /// The `--store` flag the harness gave this chatd (PostgreSQL under
    /// `MQCHAT_TEST_STORE=postgres`), for `chatd admin` commands on the
    /// same store; empty on SQLite.
    pub fn store_args(&self) -> &[String] {
        &self.store
    }

    /// The chatd process id, while it runs.
    pub fn pid(&self) -> Option<u32> {
        self.child.as_ref().and_then(Child::id)
    }

    /// chatd's resident memory (`VmRSS` in `/proc/<pid>/status`), in bytes.
    pub fn rss_bytes(&self) -> Result<u64> {
        self.memory_status("VmRSS")
    }

    /// chatd's peak resident memory so far (`VmHWM`), in bytes.
    pub fn peak_rss_bytes(&self) -> Result<u64> {
        self.memory_status("VmHWM")
    }

    /// A `kB` field of `/proc/<pid>/status`, in bytes.
    fn memory_status(&self, field: &str) -> Result<u64> {
        let pid = self.pid().ok_or_else(|| anyhow!("chatd is not running"))?;
        let status = std::fs::read_to_string(format!("/proc/{pid}/status"))?;
        let kib: u64 = status
            .lines()
            .find_map(|l| l.strip_prefix(field)?.strip_prefix(':'))
            .and_then(|v| v.trim().strip_suffix("kB"))
            .ok_or_else(|| anyhow!("no {field} for pid {pid}"))?
            .trim()
            .parse()?;
        Ok(kib * 1024)
    }

    pub fn url(&self, path: &str) -> String {
        format!("http://{}{}", self.http, path)
    }

    pub fn ws_url(&self) -> String {
        format!("ws://{}/mqtt", self.http)
    }

    /// Everything chatd has logged so far.
    pub fn logs(&self) -> Vec<String> {
        self.logs.lock().unwrap().clone()
    }

    /// SIGKILL: no shutdown code runs.
    pub async fn kill9(&mut self) -> Result<()> {
        if let Some(mut child) = self.child.take() {
            child.start_kill()?;
            child.wait().await?;
        }
        Ok(())
    }

    /// SIGTERM, then wait for exit; returns the exit status.
    pub async fn terminate(&mut self) -> Result<std::process::ExitStatus> {
        let mut child = self.child.take().ok_or_else(|| anyhow!("not running"))?;
        let pid = child.id().ok_or_else(|| anyhow!("no pid"))?;
        let status = std::process::Command::new("kill")
            .args(["-TERM", &pid.to_string()])
            .status()?;
        if !status.success() {
            bail!("kill -TERM failed");
        }
        Ok(tokio::time::timeout(patient(Duration::from_secs(15)), child.wait()).await??)
    }

    /// `GET /healthz`: the JSON body of a 200, an error otherwise.
    pub async fn health(&self) -> Result<Value> {
        let res = self.http_client.get(self.url("/healthz")).send().await?;
        if res.status() != 200 {
            bail!("/healthz: {}", res.status());
        }
        Ok(res.json().await?)
    }

    /// The body of `GET /metrics` (Prometheus text); an error unless 200.
    pub async fn scrape_metrics(&self) -> Result<String> {
        Ok(self
            .http_client
            .get(self.url("/metrics"))
            .send()
            .await?
            .error_for_status()?
            .text()
            .await?)
    }

    /// One value of `GET /metrics` (a counter, a gauge, or a histogram's
    /// `_sum` or `_count`; labels as in the scrape, e.g.
    /// `name{limit="login"}`); 0 when absent.
    pub async fn metric(&self, name: &str) -> Result<f64> {
        let text = self.scrape_metrics().await?;
        Ok(text
            .lines()
            .find_map(|l| l.strip_prefix(name).and_then(|rest| rest.strip_prefix(' ')))
            .and_then(|v| v.trim().parse().ok())
            .unwrap_or(0.0))
    }

    /// POST to the `/admin` API with the admin token from the data dir.
    pub async fn admin_post(&self, path: &str, body: Value) -> Result<(u16, Value)> {
        let token = std::fs::read_to_string(self.data_dir().join("admin.token"))?;
        let res = self
            .http_client
            .post(self.url(path))
            .bearer_auth(token.trim())
            .json(&body)
            .send()
            .await?;
        let status = res.status().as_u16();
        Ok((status, res.json().await.unwrap_or(Value::Null)))
    }

    /// Registers `name` (password `password-{name}`) and logs in.
    pub async fn user(&self, name: &str) -> Result<TestUser> {
        self.accounts().user(name).await
    }

    pub async fn login(&self, name: &str, password: &str) -> Result<TestUser> {
        self.accounts().login(name, password).await
    }

    /// A cheap, `'static` handle for registering and logging in users from
    /// spawned tasks (many users at once).
    pub fn accounts(&self) -> Accounts {
        Accounts {
            base: self.url(""),
            http: self.http_client.clone(),
        }
    }

    /// A rumqttc (MQTT 3.1.1) client over TCP for `user`, subscribed to its
    /// own topic space at QoS 1.
    pub async fn mqtt(&self, user: &TestUser) -> Result<Mqtt> {
        Mqtt::own_space_tcp(self.mqtt, user).await
    }

    /// Same over WebSocket at `/mqtt`.
    pub async fn mqtt_ws(&self, user: &TestUser) -> Result<Mqtt> {
        Mqtt::own_space_ws(self.http, user).await
    }

    /// Connects over TCP with these credentials, expecting a refusal;
    /// returns the refusal (e.g. "refused: BadUserNamePassword").
    pub async fn mqtt_refusal(&self, username: &str, password: &str) -> Result<String> {
        let mut opts = MqttOptions::new(
            format!("r-{}", rand_suffix()),
            "127.0.0.1",
            self.mqtt.port(),
        );
        opts.set_credentials(username, password);
        opts.set_keep_alive(Duration::from_secs(30));
        match Mqtt::connect(opts).await {
            Ok(_) => bail!("CONNECT as {username} was accepted"),
            Err(e) => Ok(e.to_string()),
        }
    }
}

/// Registers and logs in users; see [`TestServer::accounts`].
#[derive(Clone)]
pub struct Accounts {
    base: String,
    http: reqwest::Client,
}

impl Accounts {
    /// Accounts on the chatd (or balancer) whose HTTP root is `base`.
    pub fn at(base: &str) -> Accounts {
        Accounts {
            base: base.trim_end_matches('/').to_owned(),
            http: reqwest::Client::builder()
                .timeout(Duration::from_secs(20))
                .build()
                .unwrap_or_default(),
        }
    }

    /// Registers `name` (password `password-{name}`) and logs in.
    pub async fn user(&self, name: &str) -> Result<TestUser> {
        let password = format!("password-{name}");
        let res = self
            .http
            .post(format!("{}/v1/auth/register", self.base))
            .json(&json!({"username": name, "password": password}))
            .send()
            .await?;
        if res.status() != 201 {
            bail!("register {name}: {} {}", res.status(), res.text().await?);
        }
        self.login(name, &password).await
    }

    pub async fn login(&self, name: &str, password: &str) -> Result<TestUser> {
        let res = self
            .http
            .post(format!("{}/v1/auth/login", self.base))
            .json(&json!({"username": name, "password": password}))
            .send()
            .await?;
        if res.status() != 200 {
            bail!("login {name}: {} {}", res.status(), res.text().await?);
        }
        let grant: Value = res.json().await?;
        Ok(TestUser {
            id: grant["user"]["id"]
                .as_u64()
                .ok_or_else(|| anyhow!("no user id"))?,
            name: name.to_owned(),
            access_token: grant["access_token"]
                .as_str()
                .unwrap_or_default()
                .to_owned(),
            refresh_token: grant["refresh_token"]
                .as_str()
                .unwrap_or_default()
                .to_owned(),
            base: self.base.clone(),
            http: self.http.clone(),
        })
    }

    /// Registers and logs in every name, `concurrency` at a time; users in
    /// the order of `names`.
    pub async fn users(&self, names: &[String], concurrency: usize) -> Result<Vec<TestUser>> {
        let slots = Arc::new(tokio::sync::Semaphore::new(concurrency.max(1)));
        let tasks: Vec<_> = names
            .iter()
            .map(|name| {
                let (this, slots, name) = (self.clone(), slots.clone(), name.clone());
                tokio::spawn(async move {
                    let _slot = slots.acquire().await?;
                    this.user(&name).await
                })
            })
            .collect();
        let mut users = Vec::with_capacity(tasks.len());
        for t in tasks {
            users.push(t.await??);
        }
        Ok(users)
    }
}

async fn subscribed_to_own_space(mut opts: MqttOptions, user: &TestUser) -> Result<Mqtt> {
    opts.set_credentials(user.id.to_string(), user.access_token.clone());
    opts.set_keep_alive(Duration::from_secs(30));
    let mut m = Mqtt::connect(opts).await?;
    let codes = m
        .subscribe_ack(&format!("users/{}/#", user.id), QoS::AtLeastOnce)
        .await?;
    if codes != [rumqttc::SubscribeReasonCode::Success(QoS::AtLeastOnce)] {
        bail!("own-topic subscription refused: {codes:?}");
    }
    Ok(m)
}

/// Two loopback addresses with ports that were free a moment ago, for a
/// server that must come back on the same ports after a restart.
pub fn free_ports() -> Result<(String, String)> {
    let a = std::net::TcpListener::bind("127.0.0.1:0")?;
    let b = std::net::TcpListener::bind("127.0.0.1:0")?;
    Ok((a.local_addr()?.to_string(), b.local_addr()?.to_string()))
}

fn rand_suffix() -> u64 {
    use std::sync::atomic::{AtomicU64, Ordering};
    static N: AtomicU64 = AtomicU64::new(0);
    u64::from(std::process::id()) * 1_000_000 + N.fetch_add(1, Ordering::Relaxed)
}

/// A registered, logged-in user.
#[derive(Clone)]
pub struct TestUser {
    pub id: u64,
    pub name: String,
    pub access_token: String,
    pub refresh_token: String,
    base: String,
    http: reqwest::Client,
}

impl TestUser {
    /// The same user (same tokens) calling another chatd, e.g. another
    /// node of a cluster on the same database.
    pub fn via(&self, server: &TestServer) -> TestUser {
        TestUser {
            base: server.url(""),
            ..self.clone()
        }
    }

    pub fn request(&self, method: reqwest::Method, path: &str) -> reqwest::RequestBuilder {
        self.http
            .request(method, format!("{}{}", self.base, path))
            .bearer_auth(&self.access_token)
    }

    pub async fn get(&self, path: &str) -> Result<(u16, Value)> {
        let res = self.request(reqwest::Method::GET, path).send().await?;
        let status = res.status().as_u16();
        let text = res.text().await?;
        Ok((
            status,
            serde_json::from_str(&text).unwrap_or(Value::String(text)),
        ))
    }

    pub async fn post(&self, path: &str, body: &Value) -> Result<(u16, Value)> {
        let res = self
            .request(reqwest::Method::POST, path)
            .json(body)
            .send()
            .await?;
        let status = res.status().as_u16();
        let text = res.text().await?;
        Ok((
            status,
            serde_json::from_str(&text).unwrap_or(Value::String(text)),
        ))
    }

    /// Any method with an optional JSON body; returns (status, body or Null).
    pub async fn call(
        &self,
        method: reqwest::Method,
        path: &str,
        body: Option<&Value>,
    ) -> Result<(u16, Value)> {
        let mut req = self.request(method, path);
        if let Some(b) = body {
            req = req.json(b);
        }
        let res = req.send().await?;
        let status = res.status().as_u16();
        let text = res.text().await?;
        Ok((status, serde_json::from_str(&text).unwrap_or(Value::Null)))
    }

    pub async fn delete(&self, path: &str) -> Result<(u16, Value)> {
        self.call(reqwest::Method::DELETE, path, None).await
    }

    pub async fn patch(&self, path: &str, body: &Value) -> Result<(u16, Value)> {
        self.call(reqwest::Method::PATCH, path, Some(body)).await
    }

    pub async fn put(&self, path: &str, body: &Value) -> Result<(u16, Value)> {
        self.call(reqwest::Method::PUT, path, Some(body)).await
    }

    /// Sends to a group; returns (status, body).
    pub async fn send_group(
        &self,
        group: u64,
        client_msg_id: &str,
        text: &str,
    ) -> Result<(u16, Value)> {
        self.post(
            "/v1/messages",
            &json!({"to": {"group": group}, "client_msg_id": client_msg_id, "body": {"text": text}}),
        )
        .await
    }

    /// Makes `self` and `other` friends (request + accept); returns once done.
    pub async fn befriend(&self, other: &TestUser) -> Result<()> {
        let (s, req) = self
            .post("/v1/friends/requests", &json!({"user_id": other.id}))
            .await?;
        if s != 201 {
            bail!("friend request: {s} {req}");
        }
        let id = req["id"].as_u64().unwrap_or(0);
        let (s, acc) = other
            .post(&format!("/v1/friends/requests/{id}/accept"), &json!({}))
            .await?;
        if s != 200 {
            bail!("accept: {s} {acc}");
        }
        Ok(())
    }

    /// Sends a text message to a user; returns (status, body).
    pub async fn send_text(
        &self,
        to: u64,
        client_msg_id: &str,
        text: &str,
    ) -> Result<(u16, Value)> {
        self.post(
            "/v1/messages",
            &json!({"to": {"user": to}, "client_msg_id": client_msg_id, "body": {"text": text}}),
        )
        .await
    }

    /// Every event after `after`, following pages.
    pub async fn sync_all(&self, mut after: u64) -> Result<Vec<Value>> {
        let mut events = Vec::new();
        loop {
            let (status, page) = self
                .get(&format!("/v1/sync?after={after}&limit=200"))
                .await?;
            if status != 200 {
                bail!("sync: {status} {page}");
            }
            events.extend(page["events"].as_array().cloned().unwrap_or_default());
            after = page["cursor"]
                .as_u64()
                .ok_or_else(|| anyhow!("no cursor in {page}"))?;
            if !page["has_more"].as_bool().unwrap_or(false) {
                return Ok(events);
            }
        }
    }

    /// The ids of every `message.created` event in this user's inbox, in
    /// cursor order.
    pub async fn synced_message_ids(&self) -> Result<Vec<u64>> {
        self.synced_message_ids_where(|_| true).await
    }

    /// Like [`TestUser::synced_message_ids`], users' messages only (not the
    /// groups' system messages).
    pub async fn synced_user_message_ids(&self) -> Result<Vec<u64>> {
        self.synced_message_ids_where(|m| m["kind"] == "user").await
    }

    async fn synced_message_ids_where(&self, keep: impl Fn(&Value) -> bool) -> Result<Vec<u64>> {
        Ok(self
            .sync_all(0)
            .await?
            .iter()
            .filter(|e| e["type"] == "message.created" && keep(&e["message"]))
            .filter_map(|e| e["message"]["id"].as_u64())
            .collect())
    }
}

/// A valid 1x1 PNG (RGBA), for upload tests.
pub const PNG_1X1: &[u8] = &[
    0x89, 0x50, 0x4E, 0x47, 0x0D, 0x0A, 0x1A, 0x0A, 0x00, 0x00, 0x00, 0x0D, 0x49, 0x48, 0x44, 0x52,
    0x00, 0x00, 0x00, 0x01, 0x00, 0x00, 0x00, 0x01, 0x08, 0x06, 0x00, 0x00, 0x00, 0x1F, 0x15, 0xC4,
    0x89, 0x00, 0x00, 0x00, 0x0D, 0x49, 0x44, 0x41, 0x54, 0x78, 0x9C, 0x63, 0xF8, 0xCF, 0xC0, 0xF0,
    0x1F, 0x00, 0x05, 0x00, 0x01, 0xFF, 0x89, 0x99, 0x3D, 0x1D, 0x00, 0x00, 0x00, 0x00, 0x49, 0x45,
    0x4E, 0x44, 0xAE, 0x42, 0x60, 0x82,
];

/// Every file under `dir`, recursively (none if it doesn't exist).
pub fn files_under(dir: &Path) -> Vec<PathBuf> {
    let mut out = Vec::new();
    if let Ok(entries) = std::fs::read_dir(dir) {
        for e in entries.flatten() {
            let p = e.path();
            if p.is_dir() {
                out.extend(files_under(&p));
            } else {
                out.push(p);
            }
        }
    }
    out
}

/// How long to wait for something that should happen within `wait` on an
/// idle machine: `wait` times `MQCHAT_TEST_PATIENCE` (a factor, default 1),
/// for slow or loaded machines. Every harness wait goes through it; a
/// duration a test asserts (something took less than X) never does.
pub fn patient(wait: Duration) -> Duration {
    static FACTOR: std::sync::OnceLock<f64> = std::sync::OnceLock::new();
    let factor = *FACTOR.get_or_init(|| {
        std::env::var("MQCHAT_TEST_PATIENCE")
            .ok()
            .and_then(|v| v.parse::<f64>().ok())
            .filter(|f| f.is_finite() && *f >= 1.0)
            .unwrap_or(1.0)
    });
    wait.mul_f64(factor)
}

/// Polls `check` until it returns `Ok(Some(v))`, or fails after `within`
/// ([`patient`]).
pub async fn eventually<T, F, Fut>(within: Duration, mut check: F) -> Result<T>
where
    F: FnMut() -> Fut,
    Fut: std::future::Future<Output = Result<Option<T>>>,
{
    let within = patient(within);
    let deadline = tokio::time::Instant::now() + within;
    let mut last_err = None;
    loop {
        match check().await {
            Ok(Some(v)) => return Ok(v),
            Ok(None) => {}
            Err(e) => last_err = Some(e),
        }
        if tokio::time::Instant::now() >= deadline {
            return Err(last_err.unwrap_or_else(|| anyhow!("condition not met within {within:?}")));
        }
        tokio::time::sleep(Duration::from_millis(20)).await;
    }
}

// Hostile clients at the edge (tests/tests/hardening/edge.rs).

impl TestServer {
    /// Lowers chatd's open-files limit (soft and hard) while it runs, so a
    /// test can reach it with a few hundred sockets (`prlimit`, util-linux).
    pub fn limit_open_files(&self, n: u64) -> Result<()> {
        let pid = self.pid().ok_or_else(|| anyhow!("chatd is not running"))?;
        let status = std::process::Command::new("prlimit")
            .arg(format!("--pid={pid}"))
            .arg(format!("--nofile={n}:{n}"))
            .status()
            .context("prlimit (util-linux)")?;
        if !status.success() {
            bail!("prlimit --nofile={n} failed for chatd");
        }
        Ok(())
    }
}

/// A TCP connection to `to` from the loopback address `from` (any of
/// 127.0.0.0/8 on Linux): a stranger with an address of its own.
pub async fn connect_from(from: std::net::IpAddr, to: SocketAddr) -> Result<tokio::net::TcpStream> {
    let socket = match from {
        std::net::IpAddr::V4(_) => tokio::net::TcpSocket::new_v4()?,
        std::net::IpAddr::V6(_) => tokio::net::TcpSocket::new_v6()?,
    };
    socket.bind(SocketAddr::new(from, 0))?;
    Ok(socket.connect(to).await?)
}

//! Reconnect storm: thousands of MQTT clients lose their connections at
//! once (chatd restarted gracefully on the same ports and data dir), stay
//! away while messages are sent to them, then all reconnect together.
//! `/healthz` must keep answering fast throughout, and every client must
//! catch up by sync: its events gap-free, none missing, none twice.
//!
//! Size: `MQCHAT_STORM_CLIENTS` connections (default 2,000), spread over
//! users with `MQCHAT_STORM_DEVICES` devices each (default 8: registering
//! users costs two argon2 hashes each, which a CI run can't afford by the
//! thousand). Each device is its own client: its own connection, cursor and
//! catch-up. A bigger documented run:
//! `MQCHAT_STORM_CLIENTS=10000 MQCHAT_STORM_DEVICES=4 cargo test --release -p mqchat-e2e --test e2e storm:: -- --nocapture`.

use std::collections::BTreeSet;
use std::sync::{Arc, Mutex};
use std::time::{Duration, Instant};

use anyhow::{anyhow, bail, Context, Result};
use mqchat_e2e::{eventually, free_ports, TestServer, TestUser};
use rumqttc::{AsyncClient, Event, MqttOptions, Packet, QoS};
use serde_json::Value;
use tokio::sync::{watch, Semaphore};

const FLAGS: &[&str] = &[
    "--send-rate",
    "0",
    "--auth-ip-rate",
    "0",
    "--login-rate",
    "0",
];
/// Each `/healthz` probe during a storm must answer within this. Measured
/// on 2 cores: worst 0.06-0.25 s in release builds, 0.3-0.6 s in debug
/// builds (where chatd and 2,000 clients in this process share the CPU); a
/// server that stalls under the storm takes seconds.
const HEALTHZ_BOUND: Duration = if cfg!(debug_assertions) {
    Duration::from_secs(2)
} else {
    Duration::from_secs(1)
};
/// Concurrent sync requests from the whole test process: bounds its sockets,
/// not the server's work (every client still syncs on every connect).
const SYNC_CONCURRENCY: usize = 256;
const SENDERS: usize = 4;

fn env_usize(name: &str, default: usize) -> Result<usize> {
    match std::env::var(name) {
        Ok(v) => v.parse().with_context(|| format!("{name}={v}")),
        Err(_) => Ok(default),
    }
}

/// Raises this process's open-file soft limit to the hard limit when
/// `needed` is more than the soft one (chatd, started later, inherits it).
fn ensure_open_files(needed: u64) -> Result<()> {
    let limits = std::fs::read_to_string("/proc/self/limits")?;
    let line = limits
        .lines()
        .find(|l| l.starts_with("Max open files"))
        .ok_or_else(|| anyhow!("no open-files limit in /proc/self/limits"))?;
    let mut fields = line.split_whitespace().skip(3);
    let soft: u64 = fields.next().unwrap_or("0").parse().unwrap_or(0);
    let hard: u64 = fields.next().unwrap_or("0").parse().unwrap_or(u64::MAX);
    if soft >= needed {
        return Ok(());
    }
    if hard < needed {
        bail!("the storm needs {needed} open files, the hard limit is {hard}; lower MQCHAT_STORM_CLIENTS");
    }
    let status = std::process::Command::new("prlimit")
        .arg(format!("--pid={}", std::process::id()))
        .arg(format!("--nofile={hard}:{hard}"))
        .status()
        .context("prlimit (util-linux) to raise the open-files limit")?;
    if !status.success() {
        bail!("prlimit failed to raise the open-files limit to {hard}");
    }
    Ok(())
}

/// One device: an MQTT connection of a user, with its own cursor.
#[derive(Default)]
struct DeviceState {
    /// Cursor of the last event taken, in order.
    last: u64,
    /// Highest cursor seen in a push (known to exist).
    known: u64,
    /// Message ids taken, in cursor order.
    taken: Vec<u64>,
    by_push: usize,
    by_sync: usize,
    duplicate_pushes: usize,
    /// A sync page that skipped a cursor: the server broke its promise.
    broken: Vec<String>,
    connected: bool,
    connects: usize,
    failed_attempts: usize,
    syncing: bool,
    /// When the current connection's SUBACK came.
    subscribed_at: Option<Instant>,
}

impl DeviceState {
    fn caught_up(&self, expected: usize) -> bool {
        self.connected && !self.syncing && self.taken.len() == expected
    }

    /// Takes an event if it is the next in order; returns whether it was.
    fn take(&mut self, cursor: u64, message_id: u64) -> bool {
        if cursor != self.last + 1 {
            return false;
        }
        self.last = cursor;
        self.taken.push(message_id);
        true
    }
}

fn message_id(event: &Value) -> u64 {
    event["message"]["id"].as_u64().unwrap_or(0)
}

struct Device {
    user_id: u64,
    token: String,
    client_id: String,
    state: Mutex<DeviceState>,
}

impl Device {
    fn state(&self) -> std::sync::MutexGuard<'_, DeviceState> {
        self.state.lock().unwrap_or_else(|e| e.into_inner())
    }
}

struct Env {
    mqtt_port: u16,
    base: String,
    http: reqwest::Client,
    sync_slots: Arc<Semaphore>,
}

/// One sync page for `after`, retried until it answers 200.
async fn sync_page(env: &Env, token: &str, after: u64) -> Value {
    loop {
        let res = {
            let _slot = env.sync_slots.acquire().await;
            env.http
                .get(format!("{}/v1/sync?after={after}&limit=200", env.base))
                .bearer_auth(token)
                .send()
                .await
        };
        if let Ok(res) = res {
            if res.status() == 200 {
                if let Ok(page) = res.json::<Value>().await {
                    return page;
                }
            }
        }
        tokio::time::sleep(Duration::from_millis(200)).await;
    }
}

/// A client as a phone app would be: connect, subscribe, sync from its last
/// cursor, take pushes in cursor order (a jump means something was missed:
/// sync), reconnect when the connection drops, but only while `gate` is
/// open (the test keeps devices away while it sends to them).
async fn run_device(dev: Arc<Device>, env: Arc<Env>, mut gate: watch::Receiver<bool>) {
    let filter = format!("users/{}/#", dev.user_id);
    loop {
        if gate.wait_for(|open| *open).await.is_err() {
            return;
        }
        let mut opts = MqttOptions::new(dev.client_id.clone(), "127.0.0.1", env.mqtt_port);
        opts.set_credentials(dev.user_id.to_string(), dev.token.clone());
        opts.set_keep_alive(Duration::from_secs(30));
        opts.set_clean_session(true);
        let (client, mut eventloop) = AsyncClient::new(opts, 16);
        let mut net = eventloop.network_options();
        net.set_connection_timeout(20);
        eventloop.set_network_options(net);
        let (pages_tx, mut pages) = tokio::sync::mpsc::channel::<Value>(4);
        let mut subscribed = false;
        loop {
            tokio::select! {
                ev = eventloop.poll() => match ev {
                    Ok(Event::Incoming(Packet::ConnAck(_))) => {
                        if client.try_subscribe(filter.clone(), QoS::AtLeastOnce).is_err() {
                            break;
                        }
                    }
                    Ok(Event::Incoming(Packet::SubAck(_))) if !subscribed => {
                        subscribed = true;
                        let after = {
                            let mut st = dev.state();
                            st.connected = true;
                            st.connects += 1;
                            st.subscribed_at = Some(Instant::now());
                            // Anything pushed while away is lost: sync.
                            st.syncing = true;
                            st.last
                        };
                        spawn_sync(&dev, &env, after, pages_tx.clone());
                    }
                    Ok(Event::Incoming(Packet::Publish(p))) => {
                        let Ok(event) = serde_json::from_slice::<Value>(&p.payload) else { continue };
                        let Some(cursor) = event["cursor"].as_u64() else { continue };
                        let mut st = dev.state();
                        st.known = st.known.max(cursor);
                        if cursor <= st.last {
                            st.duplicate_pushes += 1;
                        } else if st.take(cursor, message_id(&event)) {
                            st.by_push += 1;
                        } else if !st.syncing {
                            st.syncing = true;
                            let after = st.last;
                            drop(st);
                            spawn_sync(&dev, &env, after, pages_tx.clone());
                        }
                    }
                    Ok(_) => {}
                    Err(_) => break,
                },
                Some(page) = pages.recv() => {
                    let mut st = dev.state();
                    for e in page["events"].as_array().into_iter().flatten() {
                        let cursor = e["cursor"].as_u64().unwrap_or(0);
                        if cursor <= st.last {
                            continue;
                        }
                        if st.take(cursor, message_id(e)) {
                            st.by_sync += 1;
                        } else {
                            let msg = format!("sync page jumped from {} to {cursor}", st.last);
                            st.broken.push(msg);
                            break;
                        }
                    }
                    let more = page["has_more"].as_bool().unwrap_or(false) || st.known > st.last;
                    if more {
                        let after = st.last;
                        drop(st);
                        spawn_sync(&dev, &env, after, pages_tx.clone());
                    } else {
                        st.syncing = false;
                    }
                }
            }
        }
        {
            let mut st = dev.state();
            if st.connected {
                st.connected = false;
            } else {
                st.failed_attempts += 1;
            }
            st.syncing = false;
            st.subscribed_at = None;
        }
        drop(client);
        // Real clients back off a little, with jitter, and come back together.
        let jitter = rand_ms(dev.user_id ^ dev.client_id.len() as u64, 300);
        tokio::time::sleep(Duration::from_millis(100 + jitter)).await;
    }
}

fn spawn_sync(
    dev: &Arc<Device>,
    env: &Arc<Env>,
    after: u64,
    pages: tokio::sync::mpsc::Sender<Value>,
) {
    let env = env.clone();
    let token = dev.token.clone();
    tokio::spawn(async move {
        let page = sync_page(&env, &token, after).await;
        let _ = pages.send(page).await;
    });
}

/// A cheap pseudo-random delay in `0..max` without a rand dependency.
fn rand_ms(seed: u64, max: u64) -> u64 {
    let nanos = u64::from(
        std::time::SystemTime::now()
            .duration_since(std::time::UNIX_EPOCH)
            .map(|d| d.subsec_nanos())
            .unwrap_or(0),
    );
    (nanos ^ seed.wrapping_mul(0x9E37_79B9_7F4A_7C15)) % max
}

/// Probes `/healthz` on fresh connections every 50 ms until stopped;
/// returns each probe's latency (an error or a timeout fails the probe).
/// It runs on its own thread and runtime, so the thousands of client tasks
/// in this process can't delay it: what it measures is the server.
fn probe_healthz(
    url: String,
    mut stop: watch::Receiver<bool>,
) -> std::thread::JoinHandle<Result<Vec<Duration>>> {
    std::thread::spawn(move || {
        let rt = tokio::runtime::Builder::new_current_thread()
            .enable_all()
            .build()?;
        rt.block_on(async move {
            let http = reqwest::Client::builder()
                .pool_max_idle_per_host(0)
                .timeout(Duration::from_secs(10))
                .build()?;
            let mut latencies = Vec::new();
            loop {
                let started = Instant::now();
                let res = http.get(&url).send().await;
                let took = started.elapsed();
                match res {
                    Ok(r) if r.status() == 200 => latencies.push(took),
                    Ok(r) => bail!("/healthz answered {} during the storm", r.status()),
                    Err(e) => bail!("/healthz failed after {took:?} during the storm: {e}"),
                }
                tokio::select! {
                    _ = stop.changed() => return Ok(latencies),
                    _ = tokio::time::sleep(Duration::from_millis(50)) => {}
                }
            }
        })
    })
}

struct Probe {
    stop: watch::Sender<bool>,
    task: std::thread::JoinHandle<Result<Vec<Duration>>>,
}

impl Probe {
    fn start(server: &TestServer) -> Probe {
        let (stop, rx) = watch::channel(false);
        Probe {
            stop,
            task: probe_healthz(server.url("/healthz"), rx),
        }
    }

    /// Stops probing; returns (probes, worst, p99).
    async fn finish(self, phase: &str) -> Result<(usize, Duration, Duration)> {
        let _ = self.stop.send(true);
        let task = self.task;
        let mut latencies = tokio::task::spawn_blocking(move || task.join())
            .await?
            .map_err(|_| anyhow!("the /healthz prober panicked"))??;
        latencies.sort();
        let n = latencies.len();
        let worst = latencies.last().copied().unwrap_or_default();
        let p99 = latencies
            .get((n * 99 / 100).min(n.saturating_sub(1)))
            .copied()
            .unwrap_or_default();
        assert!(n > 0, "{phase}: no /healthz probe finished");
        assert!(
            worst < HEALTHZ_BOUND,
            "{phase}: /healthz took {worst:?} (bound {HEALTHZ_BOUND:?}; p99 {p99:?}, {n} probes)"
        );
        Ok((n, worst, p99))
    }
}

/// Sends one message from a sender to each user; returns the acknowledged
/// message ids per user index.
async fn send_round(senders: &[TestUser], users: &[TestUser], round: &str) -> Result<Vec<u64>> {
    let slots = Arc::new(Semaphore::new(8));
    let mut tasks = Vec::new();
    for (i, to) in users.iter().enumerate() {
        let sender = senders[i % senders.len()].clone();
        let to = to.id;
        let slots = slots.clone();
        let cid = format!("{round}-{i}");
        tasks.push(tokio::spawn(async move {
            let _slot = slots.acquire().await?;
            let (s, m) = sender.send_text(to, &cid, &cid).await?;
            if s != 201 {
                bail!("send {cid}: {s} {m}");
            }
            m["id"].as_u64().ok_or_else(|| anyhow!("no id in {m}"))
        }));
    }
    let mut ids = Vec::with_capacity(tasks.len());
    for t in tasks {
        ids.push(t.await??);
    }
    Ok(ids)
}

/// Polls the devices until `done` holds for all; returns the time taken.
async fn wait_all(
    devices: &[Arc<Device>],
    within: Duration,
    what: &str,
    done: impl Fn(&DeviceState) -> bool,
) -> Result<Duration> {
    let started = Instant::now();
    eventually(within, || async {
        let pending = devices.iter().filter(|d| !done(&d.state())).count();
        if pending == 0 {
            Ok(Some(()))
        } else {
            Err(anyhow!(
                "{what}: {pending} of {} devices not there",
                devices.len()
            ))
        }
    })
    .await?;
    Ok(started.elapsed())
}

/// Time from `since` to each device's SUBACK: (median, 90th percentile,
/// last), how long the fleet took to be back.
fn subscribed(devices: &[Arc<Device>], since: Instant) -> (Duration, Duration, Duration) {
    let mut times: Vec<Duration> = devices
        .iter()
        .filter_map(|d| d.state().subscribed_at)
        .map(|t| t.saturating_duration_since(since))
        .collect();
    times.sort();
    let at = |q: usize| {
        times
            .get((times.len() * q / 100).min(times.len().saturating_sub(1)))
            .copied()
            .unwrap_or_default()
    };
    (at(50), at(90), times.last().copied().unwrap_or_default())
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn thousands_of_clients_reconnect_together_and_catch_up_by_sync() -> Result<()> {
    let clients = env_usize("MQCHAT_STORM_CLIENTS", 2000)?.max(1);
    let per_user = env_usize("MQCHAT_STORM_DEVICES", 8)?.clamp(1, clients);
    let user_count = clients.div_ceil(per_user);
    // Test side: one socket per client, plus HTTP; chatd: the same again.
    ensure_open_files(clients as u64 + SYNC_CONCURRENCY as u64 + 512)?;

    let tmp = tempfile::tempdir()?;
    let dir = tmp.path().join("data");
    let (http_addr, mqtt_addr) = free_ports()?;
    let mut server = TestServer::start_at(&dir, &http_addr, &mqtt_addr, FLAGS).await?;

    let setup = Instant::now();
    let names: Vec<String> = (0..user_count + SENDERS)
        .map(|i| format!("storm{i:05}"))
        .collect();
    let mut users = server.accounts().users(&names, 4).await?;
    let senders = users.split_off(user_count);
    eprintln!(
        "storm: {user_count} users + {SENDERS} senders registered in {:?}",
        setup.elapsed()
    );

    let env = Arc::new(Env {
        mqtt_port: server.mqtt.port(),
        base: server.url(""),
        http: reqwest::Client::builder()
            .timeout(Duration::from_secs(30))
            .build()?,
        sync_slots: Arc::new(Semaphore::new(SYNC_CONCURRENCY)),
    });
    let devices: Vec<Arc<Device>> = (0..clients)
        .map(|i| {
            let user = &users[i / per_user];
            Arc::new(Device {
                user_id: user.id,
                token: user.access_token.clone(),
                client_id: format!("storm-{}-{}", user.name, i % per_user),
                state: Mutex::default(),
            })
        })
        .collect();
    let expected_for = |i: usize| i / per_user;

    // Everyone connects (the first storm: from nothing).
    let (gate, gate_rx) = watch::channel(true);
    let probe = Probe::start(&server);
    let connect_started = Instant::now();
    let tasks: Vec<_> = devices
        .iter()
        .map(|d| tokio::spawn(run_device(d.clone(), env.clone(), gate_rx.clone())))
        .collect();
    wait_all(&devices, Duration::from_secs(180), "first connect", |s| {
        s.caught_up(0)
    })
    .await?;
    let (_, _, first_connect) = subscribed(&devices, connect_started);
    let (first_probes, first_worst, first_p99) = probe.finish("first connect").await?;
    eprintln!(
        "storm: {clients} clients connected and subscribed in {first_connect:?} ({:.0}/s); /healthz {first_probes} probes, worst {first_worst:?}, p99 {first_p99:?}",
        clients as f64 / first_connect.as_secs_f64().max(0.001)
    );

    // A message to every user while everyone is online.
    let mut sent: Vec<Vec<u64>> = vec![Vec::new(); user_count];
    for (u, id) in send_round(&senders, &users, "online")
        .await?
        .into_iter()
        .enumerate()
    {
        sent[u].push(id);
    }
    wait_all(&devices, Duration::from_secs(120), "online round", |s| {
        s.taken.len() == 1
    })
    .await?;

    // Everyone is dropped at once: graceful restart. The devices stay away
    // (gate closed) while more is sent to them.
    gate.send_replace(false);
    let stopping = Instant::now();
    let status = server.terminate().await?;
    assert!(status.success(), "chatd exit status {status}");
    wait_all(&devices, Duration::from_secs(60), "drop", |s| !s.connected).await?;
    let dropped = stopping.elapsed();
    server = TestServer::start_at(&dir, &http_addr, &mqtt_addr, FLAGS).await?;
    for round in ["away-1", "away-2"] {
        for (u, id) in send_round(&senders, &users, round)
            .await?
            .into_iter()
            .enumerate()
        {
            sent[u].push(id);
        }
    }

    // They all come back together, while one more message goes to each.
    let probe = Probe::start(&server);
    let storm_started = Instant::now();
    gate.send_replace(true);
    for (u, id) in send_round(&senders, &users, "storm")
        .await?
        .into_iter()
        .enumerate()
    {
        sent[u].push(id);
    }
    let per_user_events = sent[0].len();
    wait_all(&devices, Duration::from_secs(180), "catch-up", |s| {
        s.caught_up(per_user_events)
    })
    .await?;
    let caught_up = storm_started.elapsed();
    let (p50, p90, reconnected) = subscribed(&devices, storm_started);
    let (probes, worst, p99) = probe.finish("reconnect storm").await?;

    let mut by_push = 0;
    let mut by_sync = 0;
    let mut duplicates = 0;
    let mut retries = 0;
    for (i, d) in devices.iter().enumerate() {
        let st = d.state();
        assert!(st.broken.is_empty(), "{}: {:?}", d.client_id, st.broken);
        // Everything sent to its user, in send order per user (cursor
        // order), nothing twice, nothing else.
        assert_eq!(
            st.taken,
            sent[expected_for(i)],
            "{}: events taken differ from the messages sent",
            d.client_id
        );
        assert_eq!(st.last, per_user_events as u64, "{}", d.client_id);
        let unique: BTreeSet<_> = st.taken.iter().collect();
        assert_eq!(
            unique.len(),
            st.taken.len(),
            "{}: a message twice",
            d.client_id
        );
        by_push += st.by_push;
        by_sync += st.by_sync;
        duplicates += st.duplicate_pushes;
        retries += st.failed_attempts;
        // Connected once at the start and once after the restart: no other
        // connection was lost along the way.
        assert_eq!(st.connects, 2, "{}: connections", d.client_id);
    }
    // And the server's own record agrees, for a sample of users.
    for u in users.iter().step_by((user_count / 10).max(1)) {
        let events = u.sync_all(0).await?;
        let cursors: Vec<u64> = events.iter().filter_map(|e| e["cursor"].as_u64()).collect();
        let want: Vec<u64> = (1..=per_user_events as u64).collect();
        assert_eq!(cursors, want, "{}: inbox cursors", u.name);
    }
    eprintln!(
        "storm: {clients} clients ({user_count} users x {per_user} devices) all dropped {dropped:?} after SIGTERM; \
         reconnected together: half in {p50:?}, 90% in {p90:?}, all in {reconnected:?} ({:.0} connects/s, {retries} failed attempts retried); \
         all caught up {caught_up:?} after the gate opened; /healthz {probes} probes, worst {worst:?}, p99 {p99:?}; \
         events: {by_push} by push, {by_sync} by sync, {duplicates} duplicate pushes dropped",
        clients as f64 / reconnected.as_secs_f64().max(0.001)
    );
    for t in tasks {
        t.abort();
    }
    drop(server);
    Ok(())
}

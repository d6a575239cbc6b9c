//! Startup and shutdown: data dir, store, tokens, broker, listeners.

use std::io::Write;
use std::net::SocketAddr;
use std::path::Path;
use std::sync::Arc;
use std::time::Duration;

use tokio::task::JoinHandle;
use tokio_util::sync::CancellationToken;
use tracing::{info, warn};

use crate::api::{self, AppState};
use crate::config::Config;
use crate::domain::{Chat, Tokens};
use crate::downlink::BrokerDownlink;
use crate::store::StoreError;

/// Why chatd could not start.
#[derive(Debug, thiserror::Error)]
pub enum StartError {
    #[error("data dir {path}: {source}")]
    DataDir {
        path: String,
        source: std::io::Error,
    },
    #[error("store: {0}")]
    Store(#[from] StoreError),
    #[error("bind {what} {addr}: {source}")]
    Bind {
        what: &'static str,
        addr: SocketAddr,
        source: std::io::Error,
    },
    #[error("broker: {0}")]
    Broker(#[from] mqchat_broker::BrokerError),
    #[error("{0}")]
    Config(String),
    #[error("cluster: {0}")]
    Cluster(#[from] crate::cluster::ClusterError),
    #[error("loading revocations: {0}")]
    Domain(#[from] crate::domain::DomainError),
}

/// A running chatd.
pub struct Running {
    pub http_addr: SocketAddr,
    pub mqtt_addr: SocketAddr,
    shutdown: CancellationToken,
    task: JoinHandle<()>,
}

impl std::fmt::Debug for Running {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("Running")
            .field("http_addr", &self.http_addr)
            .field("mqtt_addr", &self.mqtt_addr)
            .finish()
    }
}

impl Running {
    /// Stops accepting, lets in-flight requests finish, closes MQTT clients,
    /// checkpoints the database; returns when done.
    pub async fn shutdown(self) {
        self.shutdown.cancel();
        let _ = self.task.await;
    }

    /// Waits until the server stops by itself or is told to.
    pub async fn wait(self) {
        let _ = self.task.await;
    }

    pub fn shutdown_token(&self) -> CancellationToken {
        self.shutdown.clone()
    }
}

/// Starts everything and returns once both listeners are bound.
pub async fn start(config: Config) -> Result<Running, StartError> {
    // Checked before anything is opened: a cluster on SQLite is refused.
    let cluster_settings = config.cluster_settings().map_err(StartError::Config)?;
    let data_dir = &config.data_dir;
    std::fs::create_dir_all(data_dir).map_err(|source| StartError::DataDir {
        path: data_dir.display().to_string(),
        source,
    })?;
    check_writable(data_dir).map_err(|source| StartError::DataDir {
        path: data_dir.display().to_string(),
        source,
    })?;
    let secret = load_or_create_secret(&data_dir.join("jwt.secret")).map_err(|source| {
        StartError::DataDir {
            path: data_dir.join("jwt.secret").display().to_string(),
            source,
        }
    })?;
    let admin_token = load_or_create_secret(&data_dir.join("admin.token")).map_err(|source| {
        StartError::DataDir {
            path: data_dir.join("admin.token").display().to_string(),
            source,
        }
    })?;
    // Before anything counts: the broker's and the cluster's metrics are
    // described as they start.
    let metrics = crate::metrics::install();
    let store = config.open_store().await?;
    let tokens = Arc::new(Tokens::new(
        &secret,
        config.access_ttl(),
        config.refresh_ttl(),
    ));

    let shutdown = CancellationToken::new();
    let settings = mqchat_broker::Settings {
        max_connections: config.max_connections,
        write_timeout: Duration::from_secs(config.mqtt_write_timeout.max(1)),
        max_packets_per_sec: config.mqtt_packet_rate,
        mailbox_size: config.mqtt_queue_kib.max(1).saturating_mul(1024),
        io_threads: config.mqtt_io_threads(),
        connect_timeout: Duration::from_secs(config.mqtt_connect_timeout.max(1)),
        max_connections_per_user: config.mqtt_connections_per_user,
        session_expiry: Duration::from_secs(config.mqtt_session_expiry),
        max_sessions_per_user: config.mqtt_sessions_per_user,
        session_backlog: config.mqtt_session_backlog,
        session_backlog_age: Duration::from_secs(config.mqtt_session_max_age),
        session_flush: Duration::from_millis(config.mqtt_session_flush_ms),
        max_unauthenticated_per_address: config.mqtt_unauthenticated_per_address,
        trusted_proxies: config.trusted_proxies.clone(),
        ..Default::default()
    };
    let broker = mqchat_broker::Broker::start(settings, tokens.clone(), shutdown.child_token())?;
    let (cluster, downlink, cluster_presence) = match cluster_settings {
        Some(settings) => {
            let (cluster, seen) =
                crate::cluster::Cluster::start(settings, broker.clone(), shutdown.clone()).await?;
            let downlink: Arc<dyn crate::domain::Downlink> =
                Arc::new(crate::cluster::ClusterDownlink(cluster.clone()));
            (Some(cluster), downlink, Some(seen))
        }
        None => (
            None,
            Arc::new(BrokerDownlink(broker.clone())) as Arc<dyn crate::domain::Downlink>,
            None,
        ),
    };
    let chat = Chat::new(store.clone(), tokens, downlink, config.limits())
        .with_files_dir(config.files_dir());
    chat.load_token_state().await?;
    if let Some(cluster) = &cluster {
        let chat = chat.clone();
        cluster.serve_revocations(move || {
            let chat = chat.clone();
            async move {
                if let Err(e) = chat.load_token_state().await {
                    warn!(error = %e, "reloading token revocations");
                }
            }
        });
    }
    // No upload of this process is in flight yet: in its own directory,
    // every temporary file is a leftover. A directory given with
    // `--files-dir` may be shared with other nodes, whose uploads in
    // flight must stay: there, only stale ones go.
    let leftover = match config.files_dir {
        None => Duration::ZERO,
        Some(_) => crate::domain::files::STALE_UPLOAD_AGE,
    };
    match chat.sweep_stale_uploads(leftover).await {
        Ok(0) => {}
        Ok(n) => info!(files = n, "deleted leftover partial uploads"),
        Err(e) => warn!(error = %e, "sweeping partial uploads"),
    }
    broker.set_uplink(Arc::new(api::uplink::MqttUplink::new(chat.clone())));
    broker.set_sessions(Arc::new(crate::mqtt_sessions::StoreSessions::new(
        store.clone(),
    )));
    match cluster_presence {
        // The cluster's view feeds presence: changes anywhere in the cluster.
        Some(seen) => {
            tokio::spawn(chat.clone().run_presence(seen, shutdown.clone()));
        }
        None => spawn_presence(&chat, &broker, shutdown.clone()),
    }
    tokio::spawn(chat.clone().run_webhooks(shutdown.clone()));
    tokio::spawn(chat.clone().run_sweeper(shutdown.clone()));
    {
        let chat = chat.clone();
        let stop = shutdown.clone();
        let age = config.unreferenced_file_ttl();
        tokio::spawn(async move {
            let mut tick = tokio::time::interval(Duration::from_secs(600));
            loop {
                tokio::select! {
                    _ = stop.cancelled() => return,
                    _ = tick.tick() => {
                        match chat.clean_unreferenced_files(age).await {
                            Ok(0) => {}
                            Ok(n) => info!(files = n, "deleted unreferenced uploads"),
                            Err(e) => warn!(error = %e, "cleaning uploads"),
                        }
                        let stale = crate::domain::files::STALE_UPLOAD_AGE;
                        match chat.sweep_stale_uploads(stale).await {
                            Ok(0) => {}
                            Ok(n) => info!(files = n, "deleted stale partial uploads"),
                            Err(e) => warn!(error = %e, "sweeping partial uploads"),
                        }
                    }
                }
            }
        });
    }
    {
        let chat = chat.clone();
        let stop = shutdown.clone();
        tokio::spawn(async move {
            let mut tick = tokio::time::interval(Duration::from_secs(60));
            loop {
                tokio::select! {
                    _ = stop.cancelled() => return,
                    _ = tick.tick() => chat.forget_idle_rate_limits().await,
                }
            }
        });
    }

    let mqtt_listener =
        mqchat_broker::bind(config.mqtt)
            .await
            .map_err(|source| StartError::Bind {
                what: "mqtt",
                addr: config.mqtt,
                source,
            })?;
    let http_listener =
        mqchat_broker::bind(config.http)
            .await
            .map_err(|source| StartError::Bind {
                what: "http",
                addr: config.http,
                source,
            })?;
    let mqtt_addr = mqtt_listener
        .local_addr()
        .map_err(|source| StartError::Bind {
            what: "mqtt",
            addr: config.mqtt,
            source,
        })?;
    let http_addr = http_listener
        .local_addr()
        .map_err(|source| StartError::Bind {
            what: "http",
            addr: config.http,
            source,
        })?;

    let state = AppState {
        chat,
        broker: broker.clone(),
        metrics,
        admin_token: Arc::from(String::from_utf8_lossy(&admin_token).as_ref()),
        web: Arc::new(api::web::WebConfig {
            dir: config.web_dir.clone(),
            vendor_dir: config.web_vendor_dir.clone(),
        }),
        cluster,
    };
    let app = api::router(state);

    let mqtt_task = {
        let broker = broker.clone();
        tokio::spawn(async move { broker.serve_tcp(mqtt_listener).await })
    };
    let token = shutdown.clone();
    let http_limits = config.http_limits();
    let task = tokio::spawn(async move {
        crate::http_server::serve(http_listener, app, http_limits, token.clone()).await;
        token.cancel();
        let _ = mqtt_task.await;
        broker.disconnect_all();
        // Give clients a moment to receive their DISCONNECT.
        for _ in 0..40 {
            if broker.connection_count() == 0 {
                break;
            }
            tokio::time::sleep(Duration::from_millis(50)).await;
        }
        if let Err(e) = store.close().await {
            warn!(error = %e, "closing store");
        }
        info!("chatd stopped");
    });

    info!(
        http = %http_addr,
        mqtt = %mqtt_addr,
        ws = %format!("ws://{http_addr}/mqtt"),
        data_dir = %config.data_dir.display(),
        "chatd listening"
    );
    Ok(Running {
        http_addr,
        mqtt_addr,
        shutdown,
        task,
    })
}

/// Fails unless a file can be created in `dir`. A read-only data dir would
/// otherwise start a server that refuses every write (SQLite quietly opens
/// the database read-only); better to say so and exit.
fn check_writable(dir: &Path) -> std::io::Result<()> {
    let probe = dir.join(".write-probe");
    let written = std::fs::write(&probe, b"");
    let _ = std::fs::remove_file(&probe);
    written.map_err(|e| std::io::Error::new(e.kind(), format!("not writable: {e}")))
}

/// Reads a secret (JWT signing key, admin token), or creates a random one
/// readable only by the owner (mode 0600).
pub(crate) fn load_or_create_secret(path: &Path) -> std::io::Result<Vec<u8>> {
    match std::fs::read_to_string(path) {
        Ok(s) if s.trim().len() >= 64 => return Ok(s.trim().as_bytes().to_vec()),
        Ok(_) => {
            return Err(std::io::Error::new(
                std::io::ErrorKind::InvalidData,
                "secret is shorter than 64 characters",
            ))
        }
        Err(e) if e.kind() == std::io::ErrorKind::NotFound => {}
        Err(e) => return Err(e),
    }
    let mut bytes = [0u8; 48];
    rand::RngCore::fill_bytes(&mut rand::thread_rng(), &mut bytes);
    let hex: String = bytes.iter().map(|b| format!("{b:02x}")).collect();
    let mut options = std::fs::OpenOptions::new();
    options.write(true).create_new(true);
    #[cfg(unix)]
    std::os::unix::fs::OpenOptionsExt::mode(&mut options, 0o600);
    let mut file = options.open(path)?;
    file.write_all(hex.as_bytes())?;
    file.sync_all()?;
    info!(path = %path.display(), "generated a new secret");
    Ok(hex.into_bytes())
}

/// Feeds the broker's connection changes to the domain's presence logic.
fn spawn_presence(chat: &Chat, broker: &mqchat_broker::Broker, shutdown: CancellationToken) {
    let (tx, rx) = tokio::sync::mpsc::channel(4096);
    let mut changes = broker.presence_changes();
    let stop = shutdown.clone();
    tokio::spawn(async move {
        loop {
            let change = tokio::select! {
                _ = stop.cancelled() => return,
                c = changes.recv() => c,
            };
            match change {
                Ok(c) => {
                    let seen = crate::domain::presence::Seen {
                        user: c.user_id,
                        online: c.online,
                        announce: true,
                    };
                    if tx.send(seen).await.is_err() {
                        return;
                    }
                }
                Err(tokio::sync::broadcast::error::RecvError::Lagged(n)) => {
                    warn!(missed = n, "presence changes dropped");
                }
                Err(tokio::sync::broadcast::error::RecvError::Closed) => return,
            }
        }
    });
    tokio::spawn(chat.clone().run_presence(rx, shutdown));
}

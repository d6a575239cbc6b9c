//! chatd's configuration: flags, each with an environment variable.

use std::net::SocketAddr;
use std::path::PathBuf;
use std::time::Duration;

/// mqchat server: HTTP API, MQTT over TCP and MQTT over WebSocket in one process.
#[derive(Debug, Clone, clap::Parser)]
#[command(name = "chatd", version, about)]
pub struct Cli {
    #[command(flatten)]
    pub config: Config,
    #[command(subcommand)]
    pub command: Option<Command>,
}

/// What to run; the server when none is given.
#[derive(Debug, Clone, clap::Subcommand)]
pub enum Command {
    /// Operator commands on the data dir (and the running server).
    #[command(subcommand)]
    Admin(crate::admin::AdminCommand),
}

/// The server's settings.
#[derive(Debug, Clone, clap::Args)]
pub struct Config {
    /// A TOML file with any of these settings (keys are the flag names with
    /// `_` for `-`, e.g. `http = "0.0.0.0:8080"`, `max_group_size = 500`).
    /// Flags and environment variables win over the file.
    #[arg(long, env = "CHAT_CONFIG", global = true)]
    pub config: Option<PathBuf>,

    /// HTTP listen address (API, /healthz, /metrics, and MQTT over WebSocket
    /// at /mqtt). Port 0 picks a free port; the bound address is logged.
    #[arg(
        long = "http",
        env = "CHAT_HTTP_ADDR",
        default_value = "127.0.0.1:8080",
        global = true
    )]
    pub http: SocketAddr,

    /// MQTT over TCP listen address. Port 0 picks a free port.
    #[arg(
        long = "mqtt",
        env = "CHAT_MQTT_ADDR",
        default_value = "127.0.0.1:1883"
    )]
    pub mqtt: SocketAddr,

    /// Data directory: SQLite database and JWT secret. Created on first run.
    #[arg(
        long = "data-dir",
        env = "CHAT_DATA_DIR",
        default_value = "./data",
        global = true
    )]
    pub data_dir: PathBuf,

    /// Attachments directory (default: `files` in the data dir). Nodes of a
    /// cluster give it one directory they all mount (NFS, EFS, any shared
    /// file system), so an upload made through one node downloads through
    /// every other.
    #[arg(long = "files-dir", env = "CHAT_FILES_DIR")]
    pub files_dir: Option<PathBuf>,

    /// Lifetime of access tokens, in seconds.
    #[arg(long, env = "CHAT_ACCESS_TOKEN_TTL", default_value_t = 900)]
    pub access_token_ttl: u64,

    /// Lifetime of refresh tokens (login sessions), in days.
    #[arg(long, env = "CHAT_REFRESH_TOKEN_TTL_DAYS", default_value_t = 30)]
    pub refresh_token_ttl_days: u64,

    /// Most concurrent MQTT connections (TCP and WebSocket together).
    #[arg(long, env = "CHAT_MAX_CONNECTIONS", default_value_t = 50_000)]
    pub max_connections: usize,

    /// Seconds an MQTT client that stopped reading may hold the server up
    /// before it is disconnected: a write that blocks (its socket buffers
    /// are full), or QoS 1 deliveries with no PUBACK at all. It catches up
    /// by sync when it comes back.
    #[arg(long, env = "CHAT_MQTT_WRITE_TIMEOUT", default_value_t = 30)]
    pub mqtt_write_timeout: u64,

    /// Packets per second an MQTT client may send, sustained (bursts of
    /// 1,000); past that its connection is closed (0: no limit).
    #[arg(long, env = "CHAT_MQTT_PACKET_RATE", default_value_t = 100)]
    pub mqtt_packet_rate: u32,

    /// KiB of live deliveries an MQTT client may have waiting while it
    /// reads or acknowledges slowly; a clean session further behind is
    /// disconnected (MQTT 5: 0x97) and catches up by sync, a persistent one
    /// catches up from the store.
    #[arg(long, env = "CHAT_MQTT_QUEUE_KIB", default_value_t = 1024)]
    pub mqtt_queue_kib: usize,

    /// Threads serving MQTT-over-TCP connections (each connection stays on
    /// one; new ones are spread over them in turn). 0: half the machine's
    /// cores, at least one, leaving the rest to HTTP and the store. At most
    /// 256.
    #[arg(
        long,
        env = "CHAT_MQTT_IO_THREADS",
        default_value_t = 0,
        value_parser = clap::value_parser!(u16).range(0..=256)
    )]
    pub mqtt_io_threads: u16,

    /// Seconds a new MQTT connection has to send its CONNECT (from the TCP
    /// or WebSocket accept, however slowly the bytes come).
    #[arg(long, env = "CHAT_MQTT_CONNECT_TIMEOUT", default_value_t = 5)]
    pub mqtt_connect_timeout: u64,
    /// MQTT connections one user may hold at once, all devices and tabs
    /// together (0: no cap). Past it CONNECT is refused (3.1.1: 0x03, 5:
    /// 0x97), unless the client id is one the user already has connected.
    #[arg(long, env = "CHAT_MQTT_CONNECTIONS_PER_USER", default_value_t = 32)]
    pub mqtt_connections_per_user: usize,
    /// Seconds a persistent MQTT session outlives its connection: MQTT
    /// 3.1.1 clean session 0 gets this; an MQTT 5 Session Expiry Interval
    /// above it is lowered to it (1 to 31,536,000; default 7 days).
    #[arg(long, env = "CHAT_MQTT_SESSION_EXPIRY", default_value_t = 7 * 24 * 3600,
          value_parser = clap::value_parser!(u64).range(1..=31_536_000))]
    pub mqtt_session_expiry: u64,
    /// Persistent MQTT sessions kept per user (0: no cap); a new one past
    /// it evicts the user's session seen least recently.
    #[arg(long, env = "CHAT_MQTT_SESSIONS_PER_USER", default_value_t = 16)]
    pub mqtt_sessions_per_user: usize,
    /// Most stored events a resumed persistent MQTT session is replayed; a
    /// larger backlog gets one `sync.required` event instead.
    #[arg(long, env = "CHAT_MQTT_SESSION_BACKLOG", default_value_t = 10_000,
          value_parser = clap::value_parser!(u64).range(1..))]
    pub mqtt_session_backlog: u64,
    /// Seconds a persistent MQTT session may stay away and still be
    /// replayed its backlog; away longer, it gets `sync.required` instead.
    #[arg(long, env = "CHAT_MQTT_SESSION_MAX_AGE", default_value_t = 24 * 3600,
          value_parser = clap::value_parser!(u64).range(1..))]
    pub mqtt_session_max_age: u64,
    /// Milliseconds between the batched writes of persistent MQTT
    /// sessions' acknowledged cursors (10 to 60,000). A crash loses at most
    /// this much of them: those events are delivered again, with DUP=1.
    #[arg(long, env = "CHAT_MQTT_SESSION_FLUSH_MS", default_value_t = 1000,
          value_parser = clap::value_parser!(u64).range(10..=60_000))]
    pub mqtt_session_flush_ms: u64,
    /// MQTT connections (TCP and WebSocket) of one client address that have
    /// not yet authenticated (0: no cap). Past it, a new connection closes
    /// that address's oldest unauthenticated one.
    #[arg(
        long,
        env = "CHAT_MQTT_UNAUTHENTICATED_PER_ADDRESS",
        default_value_t = 256
    )]
    pub mqtt_unauthenticated_per_address: usize,
    /// Seconds a client has to send a request's head (a new connection's
    /// first, or the next one once it sends its first byte) before the
    /// connection is closed.
    #[arg(long, env = "CHAT_HTTP_HEADER_TIMEOUT", default_value_t = 10)]
    pub http_header_timeout: u64,
    /// Seconds an HTTP connection may stay open with no request in flight
    /// before it is closed (keep-alive).
    #[arg(long, env = "CHAT_HTTP_IDLE_TIMEOUT", default_value_t = 60)]
    pub http_idle_timeout: u64,
    /// Concurrent HTTP connections from one client address (0: no cap);
    /// past it new ones are closed at once. Behind a balancer, set
    /// `--trusted-proxies` so that this counts each client's own address.
    #[arg(long, env = "CHAT_HTTP_CONNECTIONS_PER_ADDRESS", default_value_t = 512)]
    pub http_connections_per_address: usize,
    /// Balancers in front of chatd, as `CIDR[,CIDR...]` (a bare address is
    /// a range of one). A connection from one of them, on the HTTP and the
    /// MQTT port alike, must open with a PROXY protocol header (v1 or v2)
    /// or is closed; the client address in it replaces the balancer's for
    /// every per-address limit and in the logs. Nobody else's PROXY header
    /// is believed, and `X-Forwarded-For` never is. Empty: none.
    #[arg(
        long,
        env = "CHAT_TRUSTED_PROXIES",
        default_value = "",
        value_parser = clap::value_parser!(mqchat_broker::TrustedProxies)
    )]
    pub trusted_proxies: mqchat_broker::TrustedProxies,
    /// Who may start a direct conversation: `open` (anyone not blocked) or
    /// `friends` (friends only).
    #[arg(long, env = "CHAT_DM_POLICY", default_value = "open")]
    pub dm_policy: DmPolicyArg,

    /// Most members in a group.
    #[arg(long, env = "CHAT_MAX_GROUP_SIZE", default_value_t = 2000)]
    pub max_group_size: usize,

    /// Most different emoji on one message (1-100).
    #[arg(long, env = "CHAT_MAX_REACTIONS_PER_MESSAGE", default_value_t = 20)]
    pub max_reactions_per_message: usize,

    /// Most pinned messages in one conversation (1-500).
    #[arg(long, env = "CHAT_MAX_PINS_PER_CONVERSATION", default_value_t = 50)]
    pub max_pins_per_conversation: usize,

    /// Most conversations a user may pin to the top of their list (1-500).
    #[arg(long, env = "CHAT_MAX_PINNED_CONVERSATIONS", default_value_t = 20)]
    pub max_pinned_conversations: usize,

    /// Days a friend request stays pending before it expires.
    #[arg(long, env = "CHAT_FRIEND_REQUEST_TTL_DAYS", default_value_t = 30)]
    pub friend_request_ttl_days: u64,

    /// Seconds after sending during which a message may be recalled.
    #[arg(long, env = "CHAT_RECALL_WINDOW", default_value_t = 120)]
    pub recall_window: u64,

    /// Milliseconds a user must stay offline before friends are told
    /// (a flapping mobile link does not spam them).
    #[arg(long, env = "CHAT_PRESENCE_DEBOUNCE_MS", default_value_t = 5000)]
    pub presence_debounce_ms: u64,

    /// Seconds a node holds a webhook delivery it is attempting, on a
    /// store several nodes share: no other node attempts it meanwhile, and
    /// once it passes (the node died or hung) another node takes it over.
    /// Each attempt's HTTP timeout is at most half of it (and 10 s).
    #[arg(long, env = "CHAT_WEBHOOK_LEASE", default_value_t = 60)]
    pub webhook_lease: u64,

    /// Login attempts per account from one address prefix (/24 for IPv4,
    /// /64 for IPv6) per minute (0: no limit). Attempts from elsewhere have
    /// their own budget, so nobody can lock the owner out.
    #[arg(long, env = "CHAT_LOGIN_RATE", default_value_t = 10)]
    pub login_rate: u32,

    /// Login and registration attempts per client address prefix (/24 for
    /// IPv4, /64 for IPv6) per minute (0: no limit).
    #[arg(long, env = "CHAT_AUTH_IP_RATE", default_value_t = 60)]
    pub auth_ip_rate: u32,

    /// Messages a user may send per second, with bursts of 10 s worth (0: no limit).
    #[arg(long, env = "CHAT_SEND_RATE", default_value_t = 50)]
    pub send_rate: u32,

    /// Action units a user may spend per second on state changes other
    /// than sends (edits, recalls, friend requests, blocks, typing, group
    /// changes, acks, read markers, profile changes), with bursts of 30 s
    /// worth. A change costs 1 unit plus 1 per 50 users it reaches
    /// (0: no limit).
    #[arg(long, env = "CHAT_ACTION_RATE", default_value_t = 20)]
    pub action_rate: u32,

    /// Serve the web client (`index.html`, `mqchat.js`) from this directory
    /// instead of the copies built into chatd.
    #[arg(long, env = "CHAT_WEB_DIR")]
    pub web_dir: Option<PathBuf>,

    /// Directory with MQTT.js's browser bundle `mqtt.min.js`, served at
    /// `/vendor/mqtt.min.js` for the web client (`npm install mqtt`, then
    /// `node_modules/mqtt/dist`).
    #[arg(long, env = "CHAT_WEB_VENDOR_DIR")]
    pub web_vendor_dir: Option<PathBuf>,

    /// Largest file upload, in MiB.
    #[arg(long, env = "CHAT_MAX_UPLOAD_MB", default_value_t = 20)]
    pub max_upload_mb: u64,

    /// MiB a user may upload in 24 hours (thumbnails included); past it,
    /// uploads get 429 `upload_quota_exceeded` with a Retry-After (0: no
    /// quota).
    #[arg(long, env = "CHAT_UPLOAD_QUOTA_DAILY_MB", default_value_t = 1024)]
    pub upload_quota_daily_mb: u64,

    /// MiB of uploads a user may have stored (uploads no message
    /// references expire and free their room); past it, uploads get 413
    /// `upload_quota_exceeded` (0: no quota).
    #[arg(long, env = "CHAT_UPLOAD_QUOTA_TOTAL_MB", default_value_t = 10_240)]
    pub upload_quota_total_mb: u64,

    /// MiB that image decoding for thumbnails may use at once, all uploads
    /// together (an image's decoded size is width × height × bytes per
    /// pixel). Images larger than this get no thumbnail; others wait for
    /// room (at most 10 s, then go without). 0: no thumbnails.
    #[arg(long, env = "CHAT_THUMBNAIL_MEMORY_MB", default_value_t = 192)]
    pub thumbnail_memory_mb: u64,

    /// Searches that may run at once; more wait their turn. 0: half the
    /// cores, at least 1 (searches may not take every core from sends).
    #[arg(long, env = "CHAT_SEARCH_CONCURRENCY", default_value_t = 0)]
    pub search_concurrency: usize,

    /// Hours after which an upload no message references is deleted.
    #[arg(long, env = "CHAT_UNREFERENCED_FILE_HOURS", default_value_t = 24)]
    pub unreferenced_file_hours: u64,

    /// Days messages are kept: older ones are removed (their content, as a
    /// recall removes it) with the attachments nothing else references, a
    /// bounded batch a second. Fractions are allowed (`0.5`: 12 hours);
    /// from one second up to 36,500 days. Unset: kept for ever.
    #[arg(long, env = "CHAT_RETENTION_DAYS", value_parser = retention_days)]
    pub retention_days: Option<f64>,

    /// Most messages one pass of the sweeper removes (disappearing
    /// messages and retention, each), in one write: a send that shares a
    /// group commit with a pass waits for it. Passes follow each other
    /// 10 ms apart while a backlog drains.
    #[arg(long, env = "CHAT_SWEEP_BATCH", default_value_t = crate::domain::expiry::DEFAULT_SWEEP_BATCH as u64,
          value_parser = clap::value_parser!(u64).range(1..=10_000))]
    pub sweep_batch: u64,

    /// Where messages and accounts are stored: `sqlite` (the default: one
    /// file, `chat.db`, in the data dir) or a PostgreSQL URL,
    /// `postgres://USER:PASS@HOST:PORT/DB`, for several chatd nodes on one
    /// database (README: Storage backends).
    #[arg(
        long,
        env = "CHAT_STORE",
        default_value = "sqlite",
        hide_env_values = true,
        hide_default_value = false,
        global = true
    )]
    pub store: String,

    /// PostgreSQL only: connections each chatd keeps to the database at
    /// most (reads run on them in parallel; writes use one at a time).
    #[arg(
        long,
        env = "CHAT_STORE_CONNECTIONS",
        default_value_t = 16,
        global = true
    )]
    pub store_connections: usize,

    /// PostgreSQL only: seconds a statement may run before the server
    /// cancels it (the request then fails as unavailable, nothing half
    /// written).
    #[arg(
        long,
        env = "CHAT_STORE_STATEMENT_TIMEOUT",
        default_value_t = 10,
        global = true
    )]
    pub store_statement_timeout: u64,

    /// PostgreSQL only: group-commit writers each chatd runs, each on a
    /// connection of its own; a conversation's sends always go to the same
    /// one, so they keep their order.
    #[arg(
        long,
        env = "CHAT_STORE_WRITER_LANES",
        default_value_t = crate::store::postgres::DEFAULT_WRITER_LANES,
        global = true
    )]
    pub store_writer_lanes: usize,

    /// The store writer's page cache, in MiB, filled as pages are used.
    /// Smaller than the newest index pages of the conversations in use, each
    /// send reads pages back from disk and large group commits write pages
    /// twice.
    #[arg(long, env = "CHAT_STORE_CACHE_MIB", default_value_t = crate::store::DEFAULT_WRITER_CACHE_MIB)]
    pub store_cache_mib: u64,

    /// Runs this chatd as one node of a cluster: the NATS server
    /// (`nats://HOST:PORT`) that carries what crosses nodes (pushes,
    /// presence, session ends). Needs a PostgreSQL `--store` shared by every
    /// node (README: Running a cluster). Unset: a single node.
    #[arg(long, env = "CHAT_CLUSTER", hide_env_values = true)]
    pub cluster: Option<String>,

    /// This node's name in the cluster, unique per running process
    /// (default: the host name and a random suffix).
    #[arg(long, env = "CHAT_NODE_ID")]
    pub node_id: Option<String>,

    /// Cluster only: milliseconds between this node's heartbeats on the bus.
    #[arg(long, env = "CHAT_CLUSTER_HEARTBEAT_MS", default_value_t = 1000)]
    pub cluster_heartbeat_ms: u64,

    /// Cluster only: milliseconds without a heartbeat after which a node is
    /// taken for dead and its users for offline (then the presence debounce
    /// applies).
    #[arg(long, env = "CHAT_CLUSTER_LEASE_MS", default_value_t = 3000)]
    pub cluster_lease_ms: u64,

    /// Cluster only: milliseconds a node holds a user's event back while an
    /// earlier cursor is missing (committed on another node, not yet here);
    /// then it delivers and the client heals the gap by sync.
    #[arg(long, env = "CHAT_CLUSTER_REORDER_MS", default_value_t = 100)]
    pub cluster_reorder_ms: u64,

    /// Log format: `text` or `json`.
    #[arg(long, env = "CHAT_LOG_FORMAT", default_value = "text")]
    pub log_format: LogFormat,
}

/// The store `--store` selects.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum StoreChoice {
    /// `chat.db` in the data dir.
    Sqlite,
    /// A PostgreSQL database at this URL.
    Postgres(String),
}

impl Config {
    /// What `--store` names, or why it names nothing usable.
    pub fn store_choice(&self) -> Result<StoreChoice, String> {
        let s = self.store.trim();
        if s.eq_ignore_ascii_case("sqlite") {
            Ok(StoreChoice::Sqlite)
        } else if s.starts_with("postgres://") || s.starts_with("postgresql://") {
            Ok(StoreChoice::Postgres(s.to_owned()))
        } else {
            Err("--store must be `sqlite` or a postgres://USER:PASS@HOST:PORT/DB URL".to_owned())
        }
    }

    /// The cluster settings, when `--cluster` is given; refused with a
    /// reason when the store can't be shared between nodes.
    pub fn cluster_settings(&self) -> Result<Option<crate::cluster::Settings>, String> {
        let Some(url) = self.cluster.as_deref().map(str::trim) else {
            return Ok(None);
        };
        if !url.starts_with("nats://") {
            return Err("--cluster must be a nats://HOST:PORT URL".to_owned());
        }
        if !matches!(self.store_choice()?, StoreChoice::Postgres(_)) {
            return Err(
                "--cluster needs a PostgreSQL --store shared by every node: SQLite is one node's file"
                    .to_owned(),
            );
        }
        let node_id = match self.node_id.as_deref().map(str::trim) {
            Some("") => return Err("--node-id must not be empty".to_owned()),
            Some(id)
                if !id
                    .chars()
                    .all(|c| c.is_ascii_alphanumeric() || "-_".contains(c)) =>
            {
                return Err("--node-id may hold only letters, digits, `-` and `_`".to_owned())
            }
            Some(id) => id.to_owned(),
            None => crate::cluster::default_node_id(),
        };
        Ok(Some(crate::cluster::Settings {
            url: url.to_owned(),
            node_id,
            heartbeat: Duration::from_millis(self.cluster_heartbeat_ms.max(10)),
            lease: Duration::from_millis(
                self.cluster_lease_ms
                    .max(self.cluster_heartbeat_ms * 2)
                    .max(20),
            ),
            reorder_wait: Duration::from_millis(self.cluster_reorder_ms),
            ..crate::cluster::Settings::default()
        }))
    }

    /// The PostgreSQL backend's options from the flags.
    pub fn postgres_options(&self) -> crate::store::postgres::Options {
        crate::store::postgres::Options {
            max_connections: self.store_connections.max(1),
            statement_timeout: std::time::Duration::from_secs(self.store_statement_timeout.max(1)),
            writer_lanes: self.store_writer_lanes.max(1),
            ..crate::store::postgres::Options::default()
        }
    }

    /// Opens the store `--store` selects (migrating it to this build's
    /// schema).
    pub async fn open_store(&self) -> Result<crate::store::Store, crate::store::StoreError> {
        match self
            .store_choice()
            .map_err(crate::store::StoreError::Config)?
        {
            StoreChoice::Sqlite => crate::store::Store::open_with_cache(
                &self.data_dir.join("chat.db"),
                self.store_cache_mib,
            ),
            StoreChoice::Postgres(url) => {
                crate::store::Store::connect_postgres(&url, &self.postgres_options()).await
            }
        }
    }
}

#[derive(Debug, Clone, Copy, PartialEq, Eq, clap::ValueEnum)]
pub enum DmPolicyArg {
    Open,
    Friends,
}

#[derive(Debug, Clone, Copy, PartialEq, Eq, clap::ValueEnum)]
pub enum LogFormat {
    Text,
    Json,
}

impl Config {
    /// `--mqtt-io-threads` resolved: 0 means half the cores, at least one.
    pub fn mqtt_io_threads(&self) -> usize {
        match self.mqtt_io_threads {
            0 => std::thread::available_parallelism().map_or(1, |n| (n.get() / 2).max(1)),
            n => usize::from(n),
        }
    }

    /// The HTTP server's connection limits from the flags.
    pub fn http_limits(&self) -> crate::http_server::Limits {
        crate::http_server::Limits {
            header_timeout: Duration::from_secs(self.http_header_timeout.max(1)),
            idle_timeout: Duration::from_secs(self.http_idle_timeout.max(1)),
            connections_per_address: self.http_connections_per_address,
            trusted_proxies: self.trusted_proxies.clone(),
        }
    }

    pub fn access_ttl(&self) -> Duration {
        Duration::from_secs(self.access_token_ttl.max(1))
    }

    pub fn refresh_ttl(&self) -> Duration {
        Duration::from_secs(self.refresh_token_ttl_days.max(1) * 86_400)
    }

    pub fn unreferenced_file_ttl(&self) -> Duration {
        Duration::from_secs(self.unreferenced_file_hours * 3600)
    }

    /// Where attachments are kept: `--files-dir`, or `files` in the data
    /// dir.
    pub fn files_dir(&self) -> PathBuf {
        self.files_dir
            .clone()
            .unwrap_or_else(|| self.data_dir.join("files"))
    }

    /// How long messages are kept (`--retention-days`); `None`: for ever.
    pub fn retention(&self) -> Option<Duration> {
        self.retention_days
            .map(|days| Duration::from_secs_f64(days * 86_400.0))
    }

    /// The domain's rules from the flags.
    pub fn limits(&self) -> crate::domain::Limits {
        crate::domain::Limits {
            dm_policy: match self.dm_policy {
                DmPolicyArg::Open => crate::domain::DmPolicy::Open,
                DmPolicyArg::Friends => crate::domain::DmPolicy::Friends,
            },
            max_group_size: self.max_group_size.max(2),
            max_reactions_per_message: self.max_reactions_per_message.clamp(1, 100),
            max_pins_per_conversation: self.max_pins_per_conversation.clamp(1, 500),
            max_pinned_conversations: self.max_pinned_conversations.clamp(1, 500),
            friend_request_ttl: Duration::from_secs(self.friend_request_ttl_days.max(1) * 86_400),
            recall_window: Duration::from_secs(self.recall_window),
            presence_debounce: Duration::from_millis(self.presence_debounce_ms),
            webhook_lease: Duration::from_secs(self.webhook_lease.max(1)),
            rates: crate::domain::limits::RateConfig {
                login_per_account_per_min: self.login_rate,
                auth_per_ip_per_min: self.auth_ip_rate,
                sends_per_user_per_sec: self.send_rate,
                actions_per_user_per_sec: self.action_rate,
            },
            max_upload_bytes: self.max_upload_mb.max(1) * 1024 * 1024,
            upload_quota_daily_bytes: self.upload_quota_daily_mb.saturating_mul(1024 * 1024),
            upload_quota_total_bytes: self.upload_quota_total_mb.saturating_mul(1024 * 1024),
            thumbnail_memory_bytes: self.thumbnail_memory_mb.saturating_mul(1024 * 1024),
            search_concurrency: match self.search_concurrency {
                0 => crate::domain::default_search_concurrency(),
                n => n,
            },
            retention: self.retention(),
            sweep_batch: self.sweep_batch as usize,
            ..Default::default()
        }
    }
}

/// `--retention-days`: a number of days, at least a second's worth and at
/// most 36,500.
fn retention_days(s: &str) -> Result<f64, String> {
    let days: f64 = s.parse().map_err(|e| format!("{s}: {e}"))?;
    if !(days.is_finite() && days * 86_400.0 >= 1.0 && days <= 36_500.0) {
        return Err(format!(
            "{s}: retention must be from one second (0.0000116 days) to 36500 days"
        ));
    }
    Ok(days)
}

/// Why the configuration could not be loaded.
#[derive(Debug, thiserror::Error)]
pub enum ConfigError {
    #[error("config file {path}: {message}")]
    File { path: String, message: String },
    #[error("{0}")]
    Args(#[from] clap::Error),
}

/// Parses flags and environment, then fills every setting not given there
/// from the `--config` TOML file, if any.
pub fn load() -> Result<Cli, ConfigError> {
    use clap::{CommandFactory, FromArgMatches};
    let args: Vec<std::ffi::OsString> = std::env::args_os().collect();
    let matches = Cli::command().try_get_matches_from(&args)?;
    let Some(path) = matches.get_one::<PathBuf>("config").cloned() else {
        return Ok(Cli::from_arg_matches(&matches)?);
    };
    let file_error = |message: String| ConfigError::File {
        path: path.display().to_string(),
        message,
    };
    let text = std::fs::read_to_string(&path).map_err(|e| file_error(e.to_string()))?;
    let table: toml::Table = text
        .parse()
        .map_err(|e: toml::de::Error| file_error(e.to_string()))?;
    let command = Cli::command();
    let mut extra: Vec<std::ffi::OsString> = Vec::new();
    for (key, value) in table {
        let id = key.replace('-', "_");
        let Some(arg) = command
            .get_arguments()
            .find(|a| a.get_id().as_str() == id && a.get_long().is_some())
        else {
            return Err(file_error(format!("unknown setting `{key}`")));
        };
        if id == "config" {
            return Err(file_error(
                "`config` can't be set in the config file".into(),
            ));
        }
        let given = matches!(
            matches.value_source(&id),
            Some(clap::parser::ValueSource::CommandLine | clap::parser::ValueSource::EnvVariable)
        );
        if given {
            continue;
        }
        let value = match value {
            toml::Value::String(s) => s,
            toml::Value::Integer(i) => i.to_string(),
            toml::Value::Float(f) => f.to_string(),
            toml::Value::Boolean(b) => b.to_string(),
            other => return Err(file_error(format!("`{key}`: unsupported value {other}"))),
        };
        extra.push(format!("--{}", arg.get_long().unwrap_or(&id)).into());
        extra.push(value.into());
    }
    let mut argv = vec![args.first().cloned().unwrap_or_else(|| "chatd".into())];
    argv.extend(extra);
    argv.extend(args.into_iter().skip(1));
    Ok(Cli::from_arg_matches(
        &Cli::command().try_get_matches_from(argv)?,
    )?)
}

#[cfg(test)]
mod tests {
    use super::*;
    use clap::Parser;

    fn parse(args: &[&str]) -> Config {
        let mut argv = vec!["chatd"];
        argv.extend_from_slice(args);
        match Cli::try_parse_from(argv) {
            Ok(cli) => cli.config,
            Err(e) => panic!("{e}"),
        }
    }

    /// docs/configuration.md's table and the flags chatd accepts, both
    /// ways: each flag's row names its environment variable, its TOML key
    /// (what [`load`] looks up) and, when it has one, its default.
    #[test]
    fn docs_configuration_md_lists_every_flag_and_no_other() {
        use clap::CommandFactory;
        use std::collections::BTreeMap;

        type Row = [Option<String>; 3];
        let code = |cell: &str| {
            let cell = cell.trim();
            cell.strip_prefix('`')
                .and_then(|c| c.strip_suffix('`'))
                .map(str::to_owned)
        };
        let doc = include_str!("../../docs/configuration.md");
        let documented: BTreeMap<String, Row> = doc
            .lines()
            .filter(|line| line.starts_with("| `--"))
            .map(|line| {
                let cells: Vec<&str> = line.split('|').skip(1).take(4).collect();
                let cell = |i: usize| cells.get(i).copied().unwrap_or_default();
                let flag = code(cell(0)).unwrap_or_default();
                (flag, [code(cell(1)), code(cell(2)), code(cell(3))])
            })
            .collect();

        let command = Cli::command();
        let mut accepted: BTreeMap<String, Row> = BTreeMap::new();
        for arg in command.get_arguments() {
            let Some(long) = arg.get_long() else { continue };
            if matches!(long, "help" | "version") {
                continue;
            }
            let env = arg.get_env().and_then(|e| e.to_str()).map(str::to_owned);
            assert!(env.is_some(), "--{long} has no environment variable");
            // `config` names the file; it can't be set in it.
            let key = (arg.get_id() != "config").then(|| arg.get_id().to_string());
            let defaults: Vec<String> = arg
                .get_default_values()
                .iter()
                .map(|v| v.to_string_lossy().into_owned())
                .collect();
            // An empty default (`--trusted-proxies`: nobody) reads as "none".
            let default = Some(defaults.join(",")).filter(|d| !d.is_empty());
            accepted.insert(format!("--{long}"), [env, key, default]);
        }

        let undocumented: Vec<_> = accepted
            .keys()
            .filter(|f| !documented.contains_key(*f))
            .collect();
        let unknown: Vec<_> = documented
            .keys()
            .filter(|f| !accepted.contains_key(*f))
            .collect();
        assert!(
            undocumented.is_empty() && unknown.is_empty(),
            "flags missing from docs/configuration.md: {undocumented:?}; \
             rows for flags chatd doesn't accept: {unknown:?}"
        );
        for (flag, [env, key, default]) in &accepted {
            let [doc_env, doc_key, doc_default] = &documented[flag];
            assert_eq!(doc_env, env, "{flag}: environment variable");
            assert_eq!(doc_key, key, "{flag}: TOML key");
            if default.is_some() {
                assert_eq!(doc_default, default, "{flag}: default");
            }
        }
    }

    #[test]
    fn persistent_session_flags_have_safe_defaults_and_bounds() {
        let c = parse(&[]);
        assert_eq!(c.mqtt_session_expiry, 7 * 24 * 3600);
        assert_eq!(c.mqtt_sessions_per_user, 16);
        assert_eq!(c.mqtt_session_backlog, 10_000);
        assert_eq!(c.mqtt_session_max_age, 24 * 3600);
        assert_eq!(c.mqtt_session_flush_ms, 1000);
        let c = parse(&[
            "--mqtt-session-expiry",
            "60",
            "--mqtt-sessions-per-user",
            "2",
            "--mqtt-session-backlog",
            "5",
            "--mqtt-session-max-age",
            "30",
            "--mqtt-session-flush-ms",
            "50",
        ]);
        assert_eq!(
            (
                c.mqtt_session_expiry,
                c.mqtt_sessions_per_user,
                c.mqtt_session_backlog,
                c.mqtt_session_max_age,
                c.mqtt_session_flush_ms
            ),
            (60, 2, 5, 30, 50)
        );
        for bad in [
            ["--mqtt-session-expiry", "0"],
            ["--mqtt-session-expiry", "31536001"],
            ["--mqtt-session-backlog", "0"],
            ["--mqtt-session-flush-ms", "5"],
        ] {
            assert!(
                Cli::try_parse_from(["chatd", bad[0], bad[1]]).is_err(),
                "{bad:?}"
            );
        }
    }

    #[test]
    fn trusted_proxies_parse_as_a_cidr_list() {
        assert!(parse(&[]).trusted_proxies.is_empty(), "nobody by default");
        let t = parse(&["--trusted-proxies", "10.0.0.0/8,192.0.2.7"]).trusted_proxies;
        assert!(t.trusts([10, 2, 3, 4].into()));
        assert!(t.trusts([192, 0, 2, 7].into()));
        assert!(!t.trusts([192, 0, 2, 8].into()));
        let bad = Cli::try_parse_from(["chatd", "--trusted-proxies", "10.0.0.0/40"]);
        assert!(bad.is_err());
    }

    #[test]
    fn a_cluster_needs_a_shared_postgres_store() {
        assert!(
            matches!(parse(&[]).cluster_settings(), Ok(None)),
            "single node"
        );
        let on_sqlite = parse(&["--cluster", "nats://127.0.0.1:4222"]).cluster_settings();
        assert!(
            on_sqlite.as_ref().is_err_and(|e| e.contains("PostgreSQL")),
            "{on_sqlite:?}"
        );
        let pg = ["--store", "postgres://u@127.0.0.1:5432/chat"];
        let bad_url = parse(&[pg[0], pg[1], "--cluster", "127.0.0.1:4222"]).cluster_settings();
        assert!(bad_url.is_err());
        let bad_id = parse(&[pg[0], pg[1], "--cluster", "nats://h:1", "--node-id", "a.b"]);
        assert!(
            bad_id.cluster_settings().is_err(),
            "a dot would split a subject"
        );
        let ok = parse(&[pg[0], pg[1], "--cluster", "nats://h:1", "--node-id", "n-1"]);
        let settings = ok.cluster_settings().ok().flatten();
        assert_eq!(settings.map(|s| s.node_id), Some("n-1".to_owned()));
        let a = parse(&[pg[0], pg[1], "--cluster", "nats://h:1"]).cluster_settings();
        let b = parse(&[pg[0], pg[1], "--cluster", "nats://h:1"]).cluster_settings();
        let ids = |s: Result<Option<crate::cluster::Settings>, String>| {
            s.ok().flatten().map(|s| s.node_id)
        };
        assert_ne!(
            ids(a),
            ids(b),
            "default node ids are unique per process start"
        );
    }
}

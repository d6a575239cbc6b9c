//! chatd's configuration: flags, each with an environment variable.

use std::net::SocketAddr;
use std::path::PathBuf;
use std::time::Duration;

/// mqchat server: HTTP API, MQTT over TCP and MQTT over WebSocket in one process.
#[derive(Debug, Clone, clap::Parser)]
#[command(name = "chatd", version, about)]
pub struct Config {
    /// HTTP listen address (API, /healthz, /metrics, and MQTT over WebSocket
    /// at /mqtt). Port 0 picks a free port; the bound address is logged.
    #[arg(
        long = "http",
        env = "CHAT_HTTP_ADDR",
        default_value = "127.0.0.1:8080"
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
    #[arg(long = "data-dir", env = "CHAT_DATA_DIR", default_value = "./data")]
    pub data_dir: PathBuf,

    /// Lifetime of access tokens, in seconds.
    #[arg(long, env = "CHAT_ACCESS_TOKEN_TTL", default_value_t = 900)]
    pub access_token_ttl: u64,

    /// Lifetime of refresh tokens (login sessions), in days.
    #[arg(long, env = "CHAT_REFRESH_TOKEN_TTL_DAYS", default_value_t = 30)]
    pub refresh_token_ttl_days: u64,

    /// Most concurrent MQTT connections (TCP and WebSocket together).
    #[arg(long, env = "CHAT_MAX_CONNECTIONS", default_value_t = 50_000)]
    pub max_connections: usize,

    /// Log format: `text` or `json`.
    #[arg(long, env = "CHAT_LOG_FORMAT", default_value = "text")]
    pub log_format: LogFormat,
}

#[derive(Debug, Clone, Copy, PartialEq, Eq, clap::ValueEnum)]
pub enum LogFormat {
    Text,
    Json,
}

impl Config {
    pub fn access_ttl(&self) -> Duration {
        Duration::from_secs(self.access_token_ttl.max(1))
    }

    pub fn refresh_ttl(&self) -> Duration {
        Duration::from_secs(self.refresh_token_ttl_days.max(1) * 86_400)
    }
}

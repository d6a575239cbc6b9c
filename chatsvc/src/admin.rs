//! `chatd admin ...`: operator commands on a data dir, or on a running
//! server through its `/admin` API.

use std::io::BufRead;
use std::net::SocketAddr;
use std::path::{Path, PathBuf};
use std::sync::Arc;
use std::time::Duration;

use crate::config::StoreChoice;
use crate::domain::{Chat, DomainError, Limits, Tokens};
use crate::downlink::NoDownlink;
use crate::store::{Store, StoreError};
use crate::Config;

/// Operator commands.
#[derive(Debug, Clone, clap::Subcommand)]
pub enum AdminCommand {
    /// Creates a user in the data dir.
    CreateUser {
        username: String,
        /// The password; else `CHAT_ADMIN_PASSWORD`, else one line on stdin.
        #[arg(long, env = "CHAT_ADMIN_PASSWORD", hide_env_values = true)]
        password: Option<String>,
    },
    /// Sets a user's password and ends all of their sessions. With `--live`,
    /// through the running server's admin API, which also closes their MQTT
    /// connections at once; otherwise in the data dir (access tokens already
    /// issued then stay valid until they expire).
    ResetPassword {
        username: String,
        #[arg(long, env = "CHAT_ADMIN_PASSWORD", hide_env_values = true)]
        password: Option<String>,
        #[arg(long)]
        live: bool,
    },
    /// Copies the database to FILE while the server runs (SQLite online
    /// backup: one consistent snapshot). Restore by putting the file in an
    /// empty data dir as `chat.db`, with the same `jwt.secret`. On
    /// PostgreSQL, says how to back up with `pg_dump` instead.
    Backup { file: PathBuf },
    /// Brings the store's schema to this build's version and exits (chatd
    /// also does at start; on PostgreSQL, under an advisory lock).
    Migrate,
    /// Lists the users with a live MQTT connection (asks the running server).
    Online,
    /// Creates a service: a bot user and an API key (printed once).
    CreateService {
        username: String,
        /// Comma-separated: send, notice.
        #[arg(long, default_value = "send")]
        scopes: String,
        /// Requests per second for the key (0 = unlimited).
        #[arg(long, default_value_t = 10)]
        rate: u32,
    },
    /// Revokes a service key by id.
    RevokeServiceKey { key_id: u64 },
}

/// Why an admin command failed.
#[derive(Debug, thiserror::Error)]
pub enum AdminError {
    #[error("store: {0}")]
    Store(#[from] StoreError),
    #[error("{0}")]
    Domain(#[from] DomainError),
    #[error("reading the password: {0}")]
    Password(std::io::Error),
    #[error("admin token: {0}")]
    Token(std::io::Error),
    #[error("no chatd data in {0} (start chatd once, or check --data-dir)")]
    NoDataDir(PathBuf),
    #[error("server at {addr}: {message}")]
    Server { addr: SocketAddr, message: String },
    #[error("{0}")]
    Unsupported(&'static str),
}

/// What `chatd admin backup` says on PostgreSQL.
const POSTGRES_BACKUP: &str = "the store is PostgreSQL: back it up with its own tools, e.g. \
`pg_dump --format=custom --file=chat.dump \"$CHAT_STORE\"` (one consistent snapshot while chatd runs), \
and restore into an empty database with `pg_restore --dbname=\"$CHAT_STORE\" chat.dump`; \
keep the data dir's jwt.secret with it (README: Storage backends)";

/// Runs one command against the store `config` names and its data dir
/// (and the server on `config.http` for live commands). Returns what to
/// print.
pub async fn run(command: AdminCommand, config: &Config) -> Result<String, AdminError> {
    let data_dir = config.data_dir.as_path();
    let http = config.http;
    match command {
        AdminCommand::CreateUser { username, password } => {
            // Like the server, create the data dir on first use.
            std::fs::create_dir_all(data_dir).map_err(|e| {
                AdminError::Store(StoreError::Migration(format!(
                    "{}: {e}",
                    data_dir.display()
                )))
            })?;
            let chat = offline(config).await?;
            let user = chat
                .register(&username, &password_or_stdin(password)?, None)
                .await?;
            Ok(format!("created user {} (id {})", user.username, user.id))
        }
        AdminCommand::ResetPassword {
            username,
            password,
            live,
        } => {
            let password = password_or_stdin(password)?;
            let chat = offline(config).await?;
            let id = chat.user_id_by_name(&username).await?;
            if live {
                let body = serde_json::json!({"password": password});
                api(
                    data_dir,
                    http,
                    reqwest::Method::POST,
                    &format!("/admin/users/{id}/password"),
                    Some(body),
                )
                .await?;
            } else {
                chat.reset_password(id, &password).await?;
            }
            Ok(format!(
                "password of {username} (id {id}) reset; sessions ended"
            ))
        }
        AdminCommand::Backup { file } => {
            if let StoreChoice::Postgres(_) = config.store_choice().map_err(StoreError::Config)? {
                return Err(AdminError::Unsupported(POSTGRES_BACKUP));
            }
            let source = data_dir.join("chat.db");
            if !source.is_file() {
                return Err(AdminError::NoDataDir(data_dir.to_owned()));
            }
            let dest = file.clone();
            tokio::task::spawn_blocking(move || Store::backup(&source, &dest))
                .await
                .map_err(|e| AdminError::Store(StoreError::Migration(e.to_string())))??;
            Ok(format!("backed up to {}", file.display()))
        }
        AdminCommand::CreateService {
            username,
            scopes,
            rate,
        } => {
            let chat = offline(config).await?;
            let scopes = scopes
                .split(',')
                .map(|s| s.trim().to_owned())
                .filter(|s| !s.is_empty())
                .collect();
            let service = chat.create_service(&username, scopes, rate).await?;
            Ok(format!(
                "created service {} (user id {}, key id {})\nkey: {}\n(the key is not stored; keep it now)",
                service.user.username,
                service.user.id,
                service.key_id,
                service.key.unwrap_or_default()
            ))
        }
        AdminCommand::RevokeServiceKey { key_id } => {
            offline(config).await?.revoke_service_key(key_id).await?;
            Ok(format!("revoked service key {key_id}"))
        }
        AdminCommand::Migrate => {
            if config.store_choice().map_err(StoreError::Config)? == StoreChoice::Sqlite {
                std::fs::create_dir_all(data_dir).map_err(|e| {
                    AdminError::Store(StoreError::Migration(format!(
                        "{}: {e}",
                        data_dir.display()
                    )))
                })?;
            }
            config.open_store().await?.close().await?;
            Ok("the store's schema is up to date".to_owned())
        }
        AdminCommand::Online => {
            let v = api(data_dir, http, reqwest::Method::GET, "/admin/online", None).await?;
            Ok(v.to_string())
        }
    }
}

/// A Chat over the store with nobody connected.
async fn offline(config: &Config) -> Result<Chat, AdminError> {
    let sqlite = config.store_choice().map_err(StoreError::Config)? == StoreChoice::Sqlite;
    if sqlite && !config.data_dir.is_dir() {
        return Err(AdminError::NoDataDir(config.data_dir.clone()));
    }
    let store = config.open_store().await?;
    // Offline commands never issue or check tokens.
    let tokens = Arc::new(Tokens::new(
        &[0u8; 32],
        Duration::from_secs(1),
        Duration::from_secs(1),
    ));
    let limits = Limits {
        rates: crate::domain::limits::RateConfig {
            login_per_account_per_min: 0,
            auth_per_ip_per_min: 0,
            sends_per_user_per_sec: 0,
            actions_per_user_per_sec: 0,
        },
        ..Limits::default()
    };
    Ok(Chat::new(store, tokens, Arc::new(NoDownlink), limits))
}

fn password_or_stdin(password: Option<String>) -> Result<String, AdminError> {
    if let Some(p) = password {
        return Ok(p);
    }
    let mut line = String::new();
    std::io::stdin()
        .lock()
        .read_line(&mut line)
        .map_err(AdminError::Password)?;
    Ok(line.trim_end_matches(['\n', '\r']).to_owned())
}

async fn api(
    data_dir: &Path,
    addr: SocketAddr,
    method: reqwest::Method,
    path: &str,
    body: Option<serde_json::Value>,
) -> Result<serde_json::Value, AdminError> {
    let token = std::fs::read_to_string(data_dir.join("admin.token")).map_err(AdminError::Token)?;
    let server = |message: String| AdminError::Server { addr, message };
    let client = reqwest::Client::builder()
        .timeout(Duration::from_secs(10))
        .build()
        .map_err(|e| server(e.to_string()))?;
    let mut req = client
        .request(method, format!("http://{addr}{path}"))
        .bearer_auth(token.trim());
    if let Some(b) = body {
        req = req.json(&b);
    }
    let res = req.send().await.map_err(|e| server(e.to_string()))?;
    let status = res.status();
    let text = res.text().await.map_err(|e| server(e.to_string()))?;
    if !status.is_success() {
        return Err(server(format!("{status}: {text}")));
    }
    Ok(serde_json::from_str(&text).unwrap_or(serde_json::Value::Null))
}

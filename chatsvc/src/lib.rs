//! mqchat's chat service and the `chatd` server.
//!
//! # Layout
//! - [`api`]: axum handlers, one module per resource, the `AuthUser`
//!   extractor and the single error-to-HTTP mapping. Only place that knows axum.
//! - [`domain`]: accounts, tokens, messages, sync: the rules. No HTTP, no SQL.
//! - [`store`]: the operations the domain needs, by area, over a write or
//!   read handle; the SQLite backend (migrations, the group-commit writer,
//!   read pool) behind them. Only place that knows SQL.
//! - [`downlink`]: the embedded broker behind the domain's `Downlink` trait.
//! - [`mqtt_sessions`]: the store behind the broker's persistent sessions.
//! - [`cluster`]: `--cluster`: the NATS bus between nodes (cross-node
//!   pushes, presence, session ends).
//! - [`config`]: flags and environment.
//! - [`admin`]: `chatd admin ...` operator commands.
//! - [`http_server`]: serves the router: per-address cap, header and idle
//!   timeouts, graceful drain.
//! - [`metrics`]: every metric's name, HELP text and label values; the
//!   Prometheus recorder.
//! - [`server`]: wires it all together: [`server::start`] and shutdown.
//!
//! One message, end to end, is traced in `ARCHITECTURE.md`.

pub mod admin;
pub mod api;
pub mod cluster;
pub mod config;
pub mod domain;
pub mod downlink;
pub mod http_server;
pub mod metrics;
pub mod mqtt_auth;
pub mod mqtt_sessions;
pub mod server;
pub mod store;

pub use config::Config;
pub use server::{start, Running, StartError};

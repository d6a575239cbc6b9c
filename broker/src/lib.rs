//! mqchat's MQTT access layer.
//!
//! Clients never reach rumqttd's own listeners. This crate accepts their
//! connections (TCP, and WebSocket mounted on the HTTP server), checks every
//! packet, and forwards only what is allowed into rumqttd's router, which runs
//! in-process. chatsvc pushes through [`Broker::push`].
//!
//! # Layout
//! - [`server`]: [`Broker`]: starts the router, accepts TCP, the handle chatsvc holds.
//! - `conn`: one client connection: CONNECT checks, the packet loop, the edge fixes.
//! - `mailbox`: clean sessions' deliveries, queued by the publishers themselves.
//! - [`acl`]: which filters a user may subscribe to, which topics it may publish to.
//! - [`auth`]: the [`Authenticator`] chatsvc implements (JWT check).
//! - `registry`: live connections per user: presence, and kicking a user's sessions.
//! - [`limits`]: caps per user and per address (connections, and those not yet authenticated).
//! - [`metrics`]: every metric's name, HELP text and label values.
//! - `codec`: protocol-level sniffing and the v3.1.1 / v5 codecs.
//! - [`uplink`]: client publishes to `users/{id}/up/...`, handed to chatsvc in order.
//! - [`ws`]: the `/mqtt` WebSocket route.
//! - `fuzzing`: hidden entry points for the cargo-fuzz targets in `broker/fuzz/`.

pub mod acl;
pub mod auth;
mod codec;
mod conn;
#[doc(hidden)]
pub mod fuzzing;
pub mod limits;
mod mailbox;
pub mod metrics;
pub mod proxy;
mod registry;
pub mod server;
pub mod uplink;
pub mod ws;

pub use auth::{Authenticator, Principal, Refusal};
pub use proxy::TrustedProxies;
pub use registry::{ClientAccepted, PresenceChange};
pub use server::{accept, bind, Broker, BrokerError, Settings};
pub use uplink::{PendingReply, Uplink, UplinkRequest};

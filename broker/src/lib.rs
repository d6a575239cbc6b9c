//! mqchat's MQTT access layer.
//!
//! Clients never reach rumqttd's own listeners: this crate uses only its
//! packet codecs. It accepts client connections (TCP, and WebSocket mounted
//! on the HTTP server), checks every packet, and delivers chatsvc's pushes
//! ([`Broker::push`]) to the connections whose filters match; persistent
//! sessions are replayed from chatsvc's store ([`SessionStore`]).
//!
//! # Layout
//! - [`server`]: [`Broker`]: accepts TCP, the handle chatsvc holds.
//! - `conn`: one client connection: CONNECT checks, the packet loop, the edge fixes.
//! - `mailbox`: each connection's live deliveries, queued by the publishers themselves.
//! - [`sessions`]: persistent sessions, kept by the [`SessionStore`] chatsvc implements.
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
pub mod sessions;
pub mod settings;
mod shared;
pub mod uplink;
pub mod ws;

pub use auth::{Authenticator, Principal, Refusal};
pub use proxy::TrustedProxies;
pub use registry::{ClientAccepted, PresenceChange};
pub use server::{accept, bind, Broker, BrokerError};
pub use sessions::{
    BoxFuture, OpenedSession, SessionCursors, SessionKey, SessionStore, SessionStoreError,
    StoredFilter,
};
pub use settings::Settings;
pub use shared::{PublishedWill, WillError};
pub use uplink::{PendingReply, Uplink, UplinkRequest};

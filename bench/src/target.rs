//! The two systems under test. Both run rumqttd 0.20's `Router` with the
//! router settings `mqchat_broker::Settings::default()` gives the gateway;
//! they differ only in what sits between the router and the subscribers'
//! sockets, and in how the publisher reaches the router.
//!
//! - **bare**: rumqttd's own v4 TCP listener (one current-thread tokio
//!   runtime on its own thread, `RemoteLink` per client); the publisher is a
//!   local link, `LinkTx::publish`.
//! - **gateway**: `mqchat_broker::Broker` (its `conn` task per client on the
//!   gateway runtime, a local link per client into the router); the
//!   publisher is `Broker::push`, as chatsvc's writer thread calls it.

use std::collections::HashMap;
use std::net::{Ipv4Addr, SocketAddr, TcpListener as StdListener};
use std::sync::Arc;

use anyhow::{anyhow, Context, Result};
use bytes::Bytes;
use mqchat_broker::{Authenticator, Broker, Principal, Refusal, Settings};
use rumqttd::local::LinkTx;
use rumqttd::{Config, ConnectionSettings, ServerSettings};
use serde::Serialize;
use tokio::runtime::Runtime;
use tokio_util::sync::CancellationToken;

/// Which system is measured.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash, Serialize, clap::ValueEnum)]
#[serde(rename_all = "lowercase")]
pub enum Kind {
    Bare,
    Gateway,
}

impl Kind {
    pub fn name(self) -> &'static str {
        match self {
            Kind::Bare => "bare",
            Kind::Gateway => "gateway",
        }
    }
}

/// The publish side of a target: hands one push for `user_id` to the router.
pub trait Publisher: Send {
    /// `false` if the push was not accepted.
    fn publish(&mut self, user_id: u64, payload: Bytes) -> bool;
}

/// A started target: where subscribers connect, and how to push.
pub struct Target {
    pub kind: Kind,
    pub addr: SocketAddr,
    pub publisher: Box<dyn Publisher>,
    shutdown: Option<CancellationToken>,
}

impl Drop for Target {
    fn drop(&mut self) {
        if let Some(token) = &self.shutdown {
            token.cancel();
        }
    }
}

pub fn start(kind: Kind, gateway_rt: &Runtime) -> Result<Target> {
    match kind {
        Kind::Bare => start_bare(),
        Kind::Gateway => start_gateway(gateway_rt),
    }
}

struct BarePublisher {
    link: LinkTx,
}

impl Publisher for BarePublisher {
    fn publish(&mut self, user_id: u64, payload: Bytes) -> bool {
        self.link
            .publish(format!("users/{user_id}/events"), payload)
            .is_ok()
    }
}

/// Bare rumqttd with its own TCP listener (see the module's docs).
/// Bare rumqttd's router as the gateway ran it when it still had one: two
/// 64 KiB segments per filter, the gateway's window of QoS 1 deliveries.
pub fn bare_router_config(settings: &Settings) -> rumqttd::RouterConfig {
    rumqttd::RouterConfig {
        max_connections: settings.max_connections + 16,
        max_outgoing_packet_count: settings.max_inflight,
        max_segment_size: BARE_SEGMENT_SIZE,
        max_segment_count: BARE_SEGMENT_COUNT,
        custom_segment: None,
        initialized_filters: None,
        shared_subscriptions_strategy: Default::default(),
    }
}

/// Bare rumqttd's log per filter: segment size...
pub const BARE_SEGMENT_SIZE: usize = 64 * 1024;
/// ...and segments kept.
pub const BARE_SEGMENT_COUNT: usize = 2;

pub fn start_bare() -> Result<Target> {
    // rumqttd binds the listener itself and does not report the port, so
    // take a free one from the OS first.
    let addr = StdListener::bind((Ipv4Addr::LOCALHOST, 0))?.local_addr()?;
    let settings = Settings::default();
    let server = ServerSettings {
        name: "bare-v4".into(),
        listen: addr,
        tls: None,
        next_connection_delay_ms: 0,
        connections: ConnectionSettings {
            connection_timeout_ms: 10_000,
            max_payload_size: 1024 * 1024,
            max_inflight_count: settings.max_inflight as usize,
            auth: None,
            external_auth: None,
            dynamic_filters: false,
        },
    };
    let config = Config {
        // Router id 1 names its thread `router-1` (the gateway's is
        // `router-0`), which keeps their CPU time apart.
        id: 1,
        router: bare_router_config(&settings),
        v4: Some(HashMap::from([("bare".to_string(), server)])),
        ..Default::default()
    };
    let mut broker = rumqttd::Broker::new(config);
    let (link, mut link_rx) = broker
        .link("bench-pub")
        .map_err(|e| anyhow!("bare: publisher link: {e}"))?;
    // The publisher's link gets no deliveries, only router bookkeeping.
    std::thread::Builder::new()
        .name("bare-pubrx".into())
        .spawn(move || while link_rx.recv().is_ok() {})?;
    // `start` blocks for the broker's life; it has no stop, so the thread
    // ends with the process.
    std::thread::Builder::new()
        .name("bare-broker".into())
        .spawn(move || {
            if let Err(e) = broker.start() {
                eprintln!("bare rumqttd stopped: {e}");
            }
        })?;
    Ok(Target {
        kind: Kind::Bare,
        addr,
        publisher: Box::new(BarePublisher { link }),
        shutdown: None,
    })
}

/// Accepts username N (decimal) with any password as user N, session 0.
struct AnyPassword;

impl Authenticator for AnyPassword {
    fn authenticate(&self, username: &str, _password: &[u8]) -> Result<Principal, Refusal> {
        let user_id = username.parse().map_err(|_| Refusal::BadCredentials)?;
        Ok(Principal {
            user_id,
            session_id: 0,
        })
    }
}

struct GatewayPublisher {
    broker: Broker,
}

impl Publisher for GatewayPublisher {
    fn publish(&mut self, user_id: u64, payload: Bytes) -> bool {
        self.broker.push(user_id, "events", payload)
    }
}

fn start_gateway(rt: &Runtime) -> Result<Target> {
    let shutdown = CancellationToken::new();
    let broker = {
        // `Broker::start` spawns its publisher-link drain on the runtime.
        let _guard = rt.enter();
        Broker::start(Settings::default(), Arc::new(AnyPassword), shutdown.clone())
            .context("gateway: start")?
    };
    let listener = rt.block_on(tokio::net::TcpListener::bind((Ipv4Addr::LOCALHOST, 0)))?;
    let addr = listener.local_addr()?;
    let serving = broker.clone();
    rt.spawn(async move { serving.serve_tcp(listener).await });
    Ok(Target {
        kind: Kind::Gateway,
        addr,
        publisher: Box::new(GatewayPublisher { broker }),
        shutdown: Some(shutdown),
    })
}

//! How a stream reaches the broker ([`Transport`]) and where and how it
//! starts ([`StreamOptions`]).

use std::time::Duration;

use crate::error::SdkError;
use crate::Result;

use crate::backoff::Backoff;
use crate::client::MAX_SYNC_LIMIT;

/// How to reach the MQTT broker.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum Transport {
    /// MQTT over TCP: `HOST:PORT` (`mqtt://` or `tcp://` prefix allowed;
    /// port 1883 if omitted), e.g. `127.0.0.1:1883`.
    Tcp(String),
    /// MQTT over WebSocket (subprotocol `mqtt`): a `ws://` URL, e.g.
    /// `ws://127.0.0.1:8080/mqtt`.
    WebSocket(String),
}

impl Transport {
    /// The WebSocket endpoint chatd serves next to its HTTP API:
    /// `http://HOST:PORT` becomes `ws://HOST:PORT/mqtt`.
    pub fn websocket_for(base_url: &str) -> Result<Transport> {
        let rest = base_url
            .trim_end_matches('/')
            .strip_prefix("http://")
            .ok_or_else(|| SdkError::InvalidInput {
                what: "base URL",
                reason: format!("{base_url:?}: expected http://HOST[:PORT]"),
            })?;
        Ok(Transport::WebSocket(format!("ws://{rest}/mqtt")))
    }

    pub(super) fn endpoint(&self) -> Result<Endpoint> {
        match self {
            Transport::Tcp(addr) => {
                let invalid = |reason: &str| SdkError::InvalidInput {
                    what: "MQTT address",
                    reason: format!("{addr:?}: {reason}"),
                };
                let rest = addr
                    .strip_prefix("mqtt://")
                    .or_else(|| addr.strip_prefix("tcp://"))
                    .unwrap_or(addr)
                    .trim_end_matches('/');
                let (host, port) = split_host_port(rest).map_err(invalid)?;
                Ok(Endpoint::Tcp { host, port })
            }
            Transport::WebSocket(url) => {
                let invalid = |reason: &str| SdkError::InvalidInput {
                    what: "WebSocket URL",
                    reason: format!("{url:?}: {reason}"),
                };
                let rest = url.strip_prefix("ws://").ok_or_else(|| {
                    invalid("expected ws://HOST[:PORT]/PATH (no TLS in this build)")
                })?;
                let authority = rest.split(['/', '?']).next().unwrap_or_default();
                split_host_port(authority).map_err(invalid)?;
                Ok(Endpoint::WebSocket { url: url.clone() })
            }
        }
    }
}

/// `host[:port]`, `[v6][:port]`; port 1883 when omitted.
pub(super) fn split_host_port(s: &str) -> std::result::Result<(String, u16), &'static str> {
    let (host, port) = if let Some(v6) = s.strip_prefix('[') {
        let (host, after) = v6.split_once(']').ok_or("unclosed '['")?;
        (host, after.strip_prefix(':'))
    } else {
        match s.rsplit_once(':') {
            Some((host, port)) => (host, Some(port)),
            None => (s, None),
        }
    };
    if host.is_empty() {
        return Err("missing host");
    }
    let port = match port {
        Some(port) => port.parse().map_err(|_| "bad port")?,
        None => 1883,
    };
    Ok((host.to_owned(), port))
}

/// A parsed [`Transport`].
#[derive(Debug, Clone)]
pub(super) enum Endpoint {
    Tcp { host: String, port: u16 },
    WebSocket { url: String },
}

impl std::fmt::Display for Endpoint {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        match self {
            Endpoint::Tcp { host, port } if host.contains(':') => write!(f, "[{host}]:{port}"),
            Endpoint::Tcp { host, port } => write!(f, "{host}:{port}"),
            Endpoint::WebSocket { url } => f.write_str(url),
        }
    }
}

/// Where a new stream starts.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Default)]
pub enum StartFrom {
    /// Every event the inbox holds (cursor 0).
    #[default]
    Beginning,
    /// Events after this cursor, e.g. [`EventStream::last_cursor`](super::EventStream::last_cursor) saved from
    /// an earlier run.
    After(u64),
    /// Only events that arrive from now on. The current cursor is found by
    /// reading sync to its end once, which costs one request per
    /// 500 events in the inbox.
    Now,
}

/// Settings of [`Client::connect`](crate::Client::connect).
///
/// ```
/// use std::time::Duration;
/// use mqchat_sdk::{StartFrom, StreamOptions};
///
/// let options = StreamOptions::default()
///     .device_id("alice-laptop")
///     .start(StartFrom::After(41))
///     .ack_every(Duration::from_secs(5));
/// ```
#[derive(Debug, Clone)]
pub struct StreamOptions {
    pub(super) device_id: Option<String>,
    pub(super) start: StartFrom,
    pub(super) keep_alive: Duration,
    pub(super) reconnect: Backoff,
    pub(super) ack_interval: Option<Duration>,
    pub(super) sync_page_size: u32,
    pub(super) max_packet_size: usize,
    pub(super) capacity: usize,
}

impl Default for StreamOptions {
    fn default() -> Self {
        StreamOptions {
            device_id: None,
            start: StartFrom::Beginning,
            keep_alive: Duration::from_secs(30),
            reconnect: Backoff::default(),
            ack_interval: None,
            sync_page_size: MAX_SYNC_LIMIT,
            max_packet_size: 1024 * 1024,
            capacity: 256,
        }
    }
}

impl StreamOptions {
    /// This device's stable id: the MQTT client id and the key of
    /// `POST /v1/sync/ack`. Default: random per stream. 1..=64 characters.
    pub fn device_id(mut self, device_id: impl Into<String>) -> StreamOptions {
        self.device_id = Some(device_id.into());
        self
    }

    /// Where to start; default [`StartFrom::Beginning`].
    pub fn start(mut self, start: StartFrom) -> StreamOptions {
        self.start = start;
        self
    }

    /// MQTT keep-alive; default 30 s. Whole seconds only (MQTT's unit):
    /// values under a second become one second, zero disables it.
    pub fn keep_alive(mut self, keep_alive: Duration) -> StreamOptions {
        self.keep_alive = if keep_alive.is_zero() {
            Duration::ZERO
        } else {
            Duration::from_secs(keep_alive.as_secs().max(1))
        };
        self
    }

    /// Delay between reconnection attempts; default 500 ms doubling to 30 s.
    /// The attempt count resets once a connection has caught up.
    pub fn reconnect_backoff(mut self, backoff: Backoff) -> StreamOptions {
        self.reconnect = backoff;
        self
    }

    /// Acknowledge [`EventStream::last_cursor`](super::EventStream::last_cursor) with `POST /v1/sync/ack`
    /// this often (when it moved). Default: never.
    pub fn ack_every(mut self, interval: Duration) -> StreamOptions {
        self.ack_interval = Some(interval.max(Duration::from_millis(100)));
        self
    }

    /// Events per sync request, 1..=500; default 500.
    pub fn sync_page_size(mut self, size: u32) -> StreamOptions {
        self.sync_page_size = size.clamp(1, MAX_SYNC_LIMIT);
        self
    }

    /// Largest MQTT packet accepted; default 1 MiB.
    pub fn max_packet_size(mut self, bytes: usize) -> StreamOptions {
        self.max_packet_size = bytes;
        self
    }

    /// Events buffered for a slow reader; default 256.
    pub fn capacity(mut self, events: usize) -> StreamOptions {
        self.capacity = events.max(1);
        self
    }
}

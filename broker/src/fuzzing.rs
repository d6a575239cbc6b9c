//! Entry points for the cargo-fuzz targets in `broker/fuzz/`.
//!
//! Not an API: hidden from the docs and free to change. It only re-exports
//! what the fuzzers need, so that they drive exactly the code a real client
//! reaches (the same sniffing, the same decoders, the same connection task)
//! rather than a copy of it.

use bytes::Bytes;
use rumqttd::protocol::PublishProperties;
use tokio::io::{AsyncRead, AsyncWrite};

pub use crate::codec::{peek_publish, sniff, Sniff, Version};
use crate::Broker;

/// Serves one client on `stream`, as a TCP or WebSocket connection is served.
pub async fn serve<S>(broker: &Broker, stream: S)
where
    S: AsyncRead + AsyncWrite + Unpin + Send,
{
    broker.serve_stream(stream, "fuzz", None).await;
}

/// Publishes into the router with MQTT 5 properties, as the uplink worker
/// does for a reply that carries correlation data.
pub fn publish_with_properties(
    broker: &Broker,
    topic: String,
    payload: Bytes,
    properties: PublishProperties,
) {
    broker.publish_with_properties(topic, payload, properties);
}

/// MQTT topic matching (3.1.1 §4.7), written out independently of the ACL:
/// the oracle that the ACL's property test and the `acl` fuzz target hold
/// it to. The gateway itself never matches topics; the router does.
pub fn filter_matches(filter: &str, topic: &str) -> bool {
    let mut f = filter.split('/');
    let mut t = topic.split('/');
    loop {
        match (f.next(), t.next()) {
            (Some("#"), _) => return true,
            (Some("+"), Some(_)) => {}
            (Some(a), Some(b)) if a == b => {}
            (None, None) => return true,
            _ => return false,
        }
    }
}

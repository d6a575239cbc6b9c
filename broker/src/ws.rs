//! MQTT over WebSocket, mounted on the HTTP server at `/mqtt`.
//!
//! The WebSocket's binary messages are turned back into a byte stream, so a
//! WebSocket client is served by exactly the same connection code as TCP.

use axum::extract::ws::{Message, WebSocket, WebSocketUpgrade};
use std::net::{IpAddr, SocketAddr};

use axum::extract::{ConnectInfo, State};
use axum::response::Response;
use axum::routing::get;
use axum::Extension;
use axum::Router;
use bytes::Bytes;
use futures_util::{SinkExt, StreamExt};
use tokio_util::io::{CopyToBytes, SinkWriter, StreamReader};

use crate::Broker;

/// Subprotocols offered by MQTT clients: `mqtt` (MQTT 3.1.1 and 5, MQTT.js)
/// and `mqttv3.1` (older paho releases).
const SUBPROTOCOLS: [&str; 2] = ["mqtt", "mqttv3.1"];

/// `GET /mqtt`: WebSocket upgrade into an MQTT connection.
pub fn router(broker: Broker) -> Router {
    Router::new()
        .route("/mqtt", get(upgrade))
        .with_state(broker)
}

/// What a WebSocket reads from its socket at once. tungstenite's default,
/// 128 KiB, is reserved (and its pages touched) by every connection, even
/// one that never authenticates; MQTT clients send small packets, and a
/// larger frame is read in several pieces.
const READ_BUFFER: usize = 16 * 1024;

/// No frame or message may be larger than the largest MQTT packet (and a
/// little framing): tungstenite would otherwise buffer frames of up to
/// 16 MiB, from a stranger who has not even sent CONNECT.
async fn upgrade(
    State(broker): State<Broker>,
    peer: Option<Extension<ConnectInfo<SocketAddr>>>,
    ws: WebSocketUpgrade,
) -> Response {
    let largest = broker.max_packet_size() + 16;
    let peer = peer.map(|Extension(ConnectInfo(addr))| addr.ip());
    ws.protocols(SUBPROTOCOLS)
        .max_message_size(largest)
        .max_frame_size(largest)
        .read_buffer_size(READ_BUFFER)
        .on_upgrade(move |socket| serve(broker, socket, peer))
}

async fn serve(broker: Broker, socket: WebSocket, peer: Option<IpAddr>) {
    let (sink, stream) = socket.split();
    let reader = StreamReader::new(stream.filter_map(|msg| async move {
        match msg {
            Ok(Message::Binary(b)) => Some(Ok(b)),
            // MQTT over WebSocket is binary only (MQTT 3.1.1 §6.0).
            Ok(Message::Text(_)) => Some(Err(std::io::Error::new(
                std::io::ErrorKind::InvalidData,
                "text frame on an MQTT WebSocket",
            ))),
            Ok(Message::Close(_)) => None,
            Ok(Message::Ping(_) | Message::Pong(_)) => Some(Ok(Bytes::new())),
            Err(e) => Some(Err(std::io::Error::other(e))),
        }
    }));
    let sink = sink
        .with(|b: Bytes| async move { Ok::<_, axum::Error>(Message::Binary(b)) })
        .sink_map_err(std::io::Error::other);
    let writer = SinkWriter::new(CopyToBytes::new(sink));
    let stream = tokio::io::join(reader, writer);
    broker
        .serve_stream(Box::pin(stream), crate::metrics::TRANSPORT_WEBSOCKET, peer)
        .await;
}

//! Connection-level regressions for what the cargo-fuzz targets in
//! `broker/fuzz/` found: each drives a real gateway connection (router
//! included) over an in-memory stream, like the `connection` target does.

mod common;

use std::sync::Arc;
use std::time::Duration;

use bytes::{Bytes, BytesMut};
use mqchat_broker::fuzzing::{self, Version};
use mqchat_broker::{Broker, Settings};
use rumqttd::protocol::{
    Connect, Filter, Login, Packet, PublishProperties, QoS, RetainForwardRule, Subscribe,
};
use tokio::io::{AsyncReadExt, AsyncWriteExt, DuplexStream};
use tokio::task::JoinHandle;
use tokio_util::sync::CancellationToken;

type TestResult = Result<(), Box<dyn std::error::Error>>;

fn broker() -> Result<Broker, Box<dyn std::error::Error>> {
    Ok(Broker::start(
        Settings::default(),
        Arc::new(common::AnyUser),
        CancellationToken::new(),
    )?)
}

/// Opens a connection for `user` and reads its CONNACK.
async fn connect(
    broker: &Broker,
    version: Version,
    user: u64,
) -> Result<(DuplexStream, JoinHandle<()>), Box<dyn std::error::Error>> {
    let (mut client, server) = tokio::io::duplex(1 << 16);
    let b = broker.clone();
    let served = tokio::spawn(async move { fuzzing::serve(&b, server).await });
    let connect = Connect {
        keep_alive: 0,
        client_id: format!("c{user}"),
        clean_session: true,
    };
    let login = Login {
        username: user.to_string(),
        password: "x".into(),
    };
    send(
        &mut client,
        version,
        Packet::Connect(connect, None, None, None, Some(login)),
    )
    .await?;
    // The gateway's decoder is a server's: it refuses CONNACK, so look at
    // the frame's type only.
    let frame = read_frame(&mut client).await?;
    match frame.first() {
        Some(0x20) => Ok((client, served)),
        _ => Err(format!("expected CONNACK, got {frame:?}").into()),
    }
}

async fn send(client: &mut DuplexStream, version: Version, packet: Packet) -> TestResult {
    let mut out = BytesMut::new();
    version.write(packet, &mut out)?;
    client.write_all(&out).await?;
    Ok(())
}

/// Reads one whole frame (within 5 s).
async fn read_frame(client: &mut DuplexStream) -> Result<BytesMut, Box<dyn std::error::Error>> {
    let mut buf = BytesMut::new();
    tokio::time::timeout(Duration::from_secs(5), async {
        loop {
            match rumqttd::protocol::v4::check(buf.iter(), 1 << 20) {
                Ok(header) => return Ok(buf.split_to(header.frame_length())),
                Err(rumqttd::protocol::Error::InsufficientBytes(_)) => {}
                Err(e) => return Err(format!("unframed: {e:?}").into()),
            }
            if client.read_buf(&mut buf).await? == 0 {
                return Err("closed".into());
            }
        }
    })
    .await?
}

/// Reads and decodes one packet.
async fn receive(
    client: &mut DuplexStream,
    version: Version,
) -> Result<Packet, Box<dyn std::error::Error>> {
    let mut frame = read_frame(client).await?;
    Ok(version.read(&mut frame, 1 << 20)?)
}

/// Reads until the gateway closes the stream; returns what it wrote.
async fn until_closed(client: &mut DuplexStream) -> Result<Vec<u8>, Box<dyn std::error::Error>> {
    let mut rest = Vec::new();
    tokio::time::timeout(Duration::from_secs(5), client.read_to_end(&mut rest)).await??;
    Ok(rest)
}

/// A v5 client sending CONNACK or UNSUBACK made rumqttd's decoder panic in
/// the connection task. Now: DISCONNECT "malformed packet", a well-framed
/// one, and the task ends normally.
#[tokio::test]
async fn v5_server_only_packets_close_the_connection_cleanly() -> TestResult {
    let broker = broker()?;
    for frame in [&[0x20u8, 2, 0, 0][..], &[0xB0, 3, 0, 1, 0]] {
        let (mut client, served) = connect(&broker, Version::V5, 1).await?;
        client.write_all(frame).await?;
        let rest = until_closed(&mut client).await?;
        assert_eq!(rest, [0xE0, 2, 0x81, 0], "after {frame:?}");
        served.await?;
    }
    Ok(())
}

/// A v5 packet whose property length ran past the end of its frame was
/// dropped silently and the connection read on. Now it closes the connection.
#[tokio::test]
async fn a_malformed_v5_packet_is_not_skipped() -> TestResult {
    let broker = broker()?;
    let (mut client, served) = connect(&broker, Version::V5, 1).await?;
    // PUBLISH "a" with a cut-short property length, then PINGREQ.
    client
        .write_all(&[0x30, 4, 0, 1, b'a', 0x80, 0xC0, 0])
        .await?;
    let rest = until_closed(&mut client).await?;
    assert_eq!(
        rest,
        [0xE0, 2, 0x81, 0],
        "no PINGRESP after a malformed packet"
    );
    served.await?;
    Ok(())
}

/// A publish made with MQTT 5 properties (an uplink reply with correlation
/// data) reaching a 3.1.1 subscriber panicked in rumqttd's v4 encoder. Now
/// the 3.1.1 client gets it without properties.
#[tokio::test]
async fn a_311_subscriber_gets_publishes_made_with_properties() -> TestResult {
    let broker = broker()?;
    let (mut client, served) = connect(&broker, Version::V311, 7).await?;
    let filter = Filter {
        path: "users/7/#".into(),
        qos: QoS::AtMostOnce,
        nolocal: false,
        preserve_retain: false,
        retain_forward_rule: RetainForwardRule::OnEverySubscribe,
    };
    let sub = Subscribe {
        pkid: 1,
        filters: vec![filter],
    };
    send(&mut client, Version::V311, Packet::Subscribe(sub, None)).await?;
    assert!(matches!(
        receive(&mut client, Version::V311).await?,
        Packet::SubAck(..)
    ));
    let props = PublishProperties {
        correlation_data: Some(Bytes::from_static(b"corr")),
        ..Default::default()
    };
    let b = broker.clone();
    tokio::task::spawn_blocking(move || {
        fuzzing::publish_with_properties(
            &b,
            "users/7/replies".into(),
            Bytes::from_static(b"{}"),
            props,
        )
    })
    .await?;
    match receive(&mut client, Version::V311).await? {
        Packet::Publish(publish, None) => {
            assert_eq!(&publish.topic[..], b"users/7/replies");
            assert_eq!(&publish.payload[..], b"{}");
        }
        other => return Err(format!("expected PUBLISH, got {other:?}").into()),
    }
    client.shutdown().await?;
    until_closed(&mut client).await?;
    served.await?;
    Ok(())
}

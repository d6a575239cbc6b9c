//! MQTT 3.1.1 behaviour at the gateway where rumqttd's own listener falls
//! short, checked with hand-written packets on a raw TCP socket.

use std::time::Duration;

use anyhow::{bail, Result};
use mqchat_e2e::raw::{connect, frame, string};
use mqchat_e2e::{patient, TestServer, TestUser};
use tokio::io::{AsyncReadExt, AsyncWriteExt};
use tokio::net::TcpStream;

async fn read_some(sock: &mut TcpStream, wait: Duration) -> Result<Vec<u8>> {
    let wait = patient(wait);
    let mut buf = vec![0u8; 256];
    match tokio::time::timeout(wait, sock.read(&mut buf)).await {
        Ok(Ok(n)) => Ok(buf[..n].to_vec()),
        Ok(Err(e)) => bail!("read: {e}"),
        Err(_) => bail!("nothing to read within {wait:?}"),
    }
}

/// Reads until EOF (the server closed); fails if it stays open.
async fn expect_closed(sock: &mut TcpStream, wait: Duration) -> Result<()> {
    let wait = patient(wait);
    let deadline = tokio::time::Instant::now() + wait;
    let mut buf = [0u8; 256];
    loop {
        let left = deadline.saturating_duration_since(tokio::time::Instant::now());
        match tokio::time::timeout(left, sock.read(&mut buf)).await {
            Ok(Ok(0)) | Ok(Err(_)) => return Ok(()),
            Ok(Ok(_)) => {}
            Err(_) => bail!("connection still open after {wait:?}"),
        }
    }
}

/// The connection is still served: a PINGREQ gets its PINGRESP.
async fn expect_alive(sock: &mut TcpStream) -> Result<()> {
    sock.write_all(&[0xC0, 0x00]).await?;
    assert_eq!(
        read_some(sock, Duration::from_secs(2)).await?,
        [0xD0, 0x00],
        "PINGRESP"
    );
    Ok(())
}

async fn connected(server: &TestServer, user: &TestUser, keep_alive: u16) -> Result<TcpStream> {
    let mut sock = TcpStream::connect(server.mqtt).await?;
    sock.write_all(&connect(4, "raw", user, keep_alive)).await?;
    let ack = read_some(&mut sock, Duration::from_secs(5)).await?;
    assert_eq!(ack, [0x20, 0x02, 0x00, 0x00], "CONNACK accepted");
    Ok(sock)
}

#[tokio::test]
async fn keep_alive_zero_is_accepted_and_never_times_out() -> Result<()> {
    let server = TestServer::start().await?;
    let alice = server.user("alice").await?;
    let mut sock = connected(&server, &alice, 0).await?;
    tokio::time::sleep(Duration::from_millis(1600)).await;
    expect_alive(&mut sock).await?;
    Ok(())
}

#[tokio::test]
async fn silent_client_is_dropped_after_one_and_a_half_keep_alives() -> Result<()> {
    let server = TestServer::start().await?;
    let alice = server.user("alice").await?;
    let mut sock = connected(&server, &alice, 1).await?;
    let started = std::time::Instant::now();
    expect_closed(&mut sock, Duration::from_secs(4)).await?;
    assert!(
        started.elapsed() >= Duration::from_millis(1400),
        "closed too early: {:?}",
        started.elapsed()
    );
    Ok(())
}

#[tokio::test]
async fn second_connect_closes_the_connection() -> Result<()> {
    let server = TestServer::start().await?;
    let alice = server.user("alice").await?;
    let mut sock = connected(&server, &alice, 30).await?;
    sock.write_all(&connect(4, "raw", &alice, 30)).await?;
    expect_closed(&mut sock, Duration::from_secs(3)).await
}

#[tokio::test]
async fn invalid_utf8_topic_closes_the_connection() -> Result<()> {
    let server = TestServer::start().await?;
    let alice = server.user("alice").await?;
    let mut sock = connected(&server, &alice, 30).await?;
    let mut body = Vec::new();
    string(&mut body, &[b'u', 0xFF, 0xFE]);
    body.extend_from_slice(b"payload");
    sock.write_all(&frame(0x30, &body)).await?;
    expect_closed(&mut sock, Duration::from_secs(3)).await
}

#[tokio::test]
async fn mqtt_3_1_is_refused_with_unacceptable_protocol_version() -> Result<()> {
    let server = TestServer::start().await?;
    let alice = server.user("alice").await?;
    let mut sock = TcpStream::connect(server.mqtt).await?;
    sock.write_all(&connect(3, "old", &alice, 30)).await?;
    assert_eq!(
        read_some(&mut sock, Duration::from_secs(3)).await?,
        [0x20, 0x02, 0x00, 0x01]
    );
    expect_closed(&mut sock, Duration::from_secs(3)).await
}

#[tokio::test]
async fn first_packet_must_be_connect() -> Result<()> {
    let server = TestServer::start().await?;
    let mut sock = TcpStream::connect(server.mqtt).await?;
    sock.write_all(&[0xC0, 0x00]).await?; // PINGREQ before CONNECT
    expect_closed(&mut sock, Duration::from_secs(3)).await?;
    let mut http = TcpStream::connect(server.mqtt).await?;
    http.write_all(b"GET / HTTP/1.1\r\nHost: x\r\n\r\n").await?;
    expect_closed(&mut http, Duration::from_secs(3)).await
}

#[tokio::test]
async fn unsubscribe_is_always_acknowledged() -> Result<()> {
    let server = TestServer::start().await?;
    let alice = server.user("alice").await?;
    let mut sock = connected(&server, &alice, 30).await?;
    // UNSUBSCRIBE (pkid 7) from a filter never subscribed.
    let mut body = 7u16.to_be_bytes().to_vec();
    string(&mut body, b"users/1/nothing");
    sock.write_all(&frame(0xA2, &body)).await?;
    assert_eq!(
        read_some(&mut sock, Duration::from_secs(3)).await?,
        [0xB0, 0x02, 0x00, 0x07]
    );
    Ok(())
}

#[tokio::test]
async fn will_aimed_at_another_users_topic_is_refused() -> Result<()> {
    let server = TestServer::start().await?;
    let alice = server.user("alice").await?;
    let mut body = Vec::new();
    string(&mut body, b"MQTT");
    body.push(4);
    body.push(0b1100_0110); // username, password, will (QoS 0), clean session
    body.extend_from_slice(&30u16.to_be_bytes());
    string(&mut body, b"willer");
    string(&mut body, b"users/999/events");
    string(&mut body, b"{\"type\":\"forged\"}");
    string(&mut body, alice.id.to_string().as_bytes());
    string(&mut body, alice.access_token.as_bytes());
    let mut sock = TcpStream::connect(server.mqtt).await?;
    sock.write_all(&frame(0x10, &body)).await?;
    assert_eq!(
        read_some(&mut sock, Duration::from_secs(3)).await?,
        [0x20, 0x02, 0x00, 0x05]
    );
    Ok(())
}

fn connect_with(client_id: &str, clean: bool, user: &TestUser) -> Vec<u8> {
    let mut body = Vec::new();
    string(&mut body, b"MQTT");
    body.push(4);
    body.push(0b1100_0000 | if clean { 0b10 } else { 0 });
    body.extend_from_slice(&30u16.to_be_bytes());
    string(&mut body, client_id.as_bytes());
    string(&mut body, user.id.to_string().as_bytes());
    string(&mut body, user.access_token.as_bytes());
    frame(0x10, &body)
}

#[tokio::test]
async fn empty_client_id_needs_a_clean_session() -> Result<()> {
    let server = TestServer::start().await?;
    let alice = server.user("alice").await?;
    let mut ok = TcpStream::connect(server.mqtt).await?;
    ok.write_all(&connect_with("", true, &alice)).await?;
    assert_eq!(
        read_some(&mut ok, Duration::from_secs(3)).await?,
        [0x20, 0x02, 0x00, 0x00]
    );
    let mut refused = TcpStream::connect(server.mqtt).await?;
    refused.write_all(&connect_with("", false, &alice)).await?;
    // 3.1.1 §3.1.3-8: identifier rejected.
    assert_eq!(
        read_some(&mut refused, Duration::from_secs(3)).await?,
        [0x20, 0x02, 0x00, 0x02]
    );
    Ok(())
}

#[tokio::test]
async fn persistent_session_reports_session_present() -> Result<()> {
    let server = TestServer::start().await?;
    let alice = server.user("alice").await?;
    let mut first = TcpStream::connect(server.mqtt).await?;
    first
        .write_all(&connect_with("laptop", false, &alice))
        .await?;
    assert_eq!(
        read_some(&mut first, Duration::from_secs(3)).await?,
        [0x20, 0x02, 0x00, 0x00]
    );
    first.write_all(&[0xE0, 0x00]).await?; // DISCONNECT
    expect_closed(&mut first, Duration::from_secs(3)).await?;
    let mut again = TcpStream::connect(server.mqtt).await?;
    again
        .write_all(&connect_with("laptop", false, &alice))
        .await?;
    assert_eq!(
        read_some(&mut again, Duration::from_secs(3)).await?,
        [0x20, 0x02, 0x01, 0x00],
        "session present"
    );
    Ok(())
}

#[tokio::test]
async fn subscribe_with_hundreds_of_filters_is_capped() -> Result<()> {
    let server = TestServer::start().await?;
    let alice = server.user("alice").await?;
    let mut sock = connected(&server, &alice, 30).await?;
    let mut body = 9u16.to_be_bytes().to_vec();
    for i in 0..200 {
        string(&mut body, format!("users/{}/f{i}", alice.id).as_bytes());
        body.push(1);
    }
    sock.write_all(&frame(0x82, &body)).await?;
    // SUBACK: 2 + 200 bytes; read until complete.
    let mut ack = Vec::new();
    while ack.len() < 205 {
        let chunk = read_some(&mut sock, Duration::from_secs(3)).await?;
        if chunk.is_empty() {
            anyhow::bail!("closed");
        }
        ack.extend(chunk);
        if ack.len() >= 3 && ack[0] == 0x90 && ack.len() >= 2 + 2 + 200 {
            break;
        }
    }
    let codes = &ack[ack.len() - 200..];
    assert!(
        codes[..32].iter().all(|&c| c == 1),
        "the first 32 are granted at QoS 1"
    );
    assert!(
        codes[32..].iter().all(|&c| c == 0x80),
        "the rest are refused"
    );
    // The connection is still fine.
    expect_alive(&mut sock).await?;
    Ok(())
}

#[tokio::test]
async fn a_packet_flood_closes_only_that_connection() -> Result<()> {
    let server = TestServer::start().await?;
    let alice = server.user("alice").await?;
    let bob = server.user("bob").await?;
    let mut calm = connected(&server, &bob, 30).await?;
    let mut flood = connected(&server, &alice, 30).await?;
    let pings = [0xC0u8, 0x00].repeat(3000);
    let _ = flood.write_all(&pings).await;
    expect_closed(&mut flood, Duration::from_secs(5)).await?;
    expect_alive(&mut calm).await?;
    Ok(())
}

/// A fixed header announcing a packet far over the limit (here 268 MB, the
/// most MQTT can say) closes that connection before anything is buffered;
/// the server's memory does not move and other clients are unaffected.
#[tokio::test]
async fn an_oversized_remaining_length_closes_only_that_connection() -> Result<()> {
    let server = TestServer::start().await?;
    let alice = server.user("alice").await?;
    let bob = server.user("bob").await?;
    let mut calm = connected(&server, &bob, 30).await?;
    let rss_before = server.rss_bytes()?;
    let mut bad = connected(&server, &alice, 30).await?;
    // PUBLISH, remaining length 268,435,455, then a trickle of payload.
    bad.write_all(&[0x30, 0xFF, 0xFF, 0xFF, 0x7F]).await?;
    let _ = bad.write_all(&[0u8; 4096]).await;
    expect_closed(&mut bad, Duration::from_secs(5)).await?;
    // Also as the very first packet, before CONNECT is even complete.
    let mut early = TcpStream::connect(server.mqtt).await?;
    early.write_all(&[0x10, 0xFF, 0xFF, 0xFF, 0x7F]).await?;
    expect_closed(&mut early, Duration::from_secs(5)).await?;
    let grown = server.rss_bytes()?.saturating_sub(rss_before);
    assert!(grown < 8 << 20, "RSS grew by {grown} bytes");
    expect_alive(&mut calm).await?;
    Ok(())
}

/// A CONNECT flood: 500 sockets that open and say nothing, 300 that send a
/// CONNECT with a bad token, and 200 that send a first packet that is not
/// CONNECT, all at once. Meanwhile a legitimate client connects, subscribes
/// and gets its push quickly, and `/healthz` answers.
#[tokio::test]
async fn a_connect_flood_does_not_starve_legitimate_clients() -> Result<()> {
    let server = TestServer::start().await?;
    let alice = server.user("alice").await?;
    let bob = server.user("bob").await?;
    let mut forged = bob.clone();
    forged.access_token = "not-a-token".into();
    let mut flood = Vec::new();
    for i in 0..1000 {
        let mut sock = TcpStream::connect(server.mqtt).await?;
        match i % 10 {
            0..=4 => {}
            5..=7 => {
                let _ = sock
                    .write_all(&connect(4, &format!("f{i}"), &forged, 30))
                    .await;
            }
            _ => {
                let _ = sock.write_all(&frame(0x82, &[0, 1, 0, 1, b'#', 0])).await;
            }
        }
        flood.push(sock);
    }
    let started = std::time::Instant::now();
    let mut mqtt = server.mqtt(&bob).await?;
    let (status, _) = alice.send_text(bob.id, "during-flood", "hello").await?;
    assert_eq!(status, 201);
    let event = mqtt
        .next_of_type("message.created", Duration::from_secs(5))
        .await?
        .ok_or_else(|| anyhow::anyhow!("no push during the flood"))?;
    assert_eq!(event["message"]["client_msg_id"], "during-flood");
    assert!(
        started.elapsed() < Duration::from_secs(3),
        "a legitimate client took {:?} during the flood",
        started.elapsed()
    );
    let probe = std::time::Instant::now();
    server.health().await?;
    assert!(
        probe.elapsed() < Duration::from_secs(1),
        "/healthz took {:?}",
        probe.elapsed()
    );
    // The refused and the malformed ones were closed by the server.
    let mut closed = 0;
    for sock in flood.iter_mut().skip(5).take(5) {
        expect_closed(sock, Duration::from_secs(5)).await?;
        closed += 1;
    }
    assert_eq!(closed, 5);
    Ok(())
}

// Malformed and disallowed packets (issue 28): the gateway closes the
// connection, or answers the reason the spec names, where rumqttd's decoders
// would have let them through.

/// Reads until EOF and fails if anything arrived first: a malformed CONNECT
/// is closed without a CONNACK (3.1.1 MQTT-3.1.4-1).
async fn expect_closed_silently(sock: &mut TcpStream, wait: Duration) -> Result<()> {
    let wait = patient(wait);
    let deadline = tokio::time::Instant::now() + wait;
    let mut got = Vec::new();
    let mut buf = [0u8; 256];
    loop {
        let left = deadline.saturating_duration_since(tokio::time::Instant::now());
        match tokio::time::timeout(left, sock.read(&mut buf)).await {
            Ok(Ok(0)) | Ok(Err(_)) if got.is_empty() => return Ok(()),
            Ok(Ok(0)) | Ok(Err(_)) => bail!("answered {got:02X?} before closing"),
            Ok(Ok(n)) => got.extend_from_slice(&buf[..n]),
            Err(_) => bail!("still open after {wait:?}; answered {got:02X?}"),
        }
    }
}

/// Reads one whole MQTT frame (a v5 CONNACK's length varies).
async fn read_frame(sock: &mut TcpStream, wait: Duration) -> Result<Vec<u8>> {
    let mut got = Vec::new();
    loop {
        if let Some(len) = frame_len(&got) {
            if got.len() >= len {
                got.truncate(len);
                return Ok(got);
            }
        }
        let chunk = read_some(sock, wait).await?;
        if chunk.is_empty() {
            bail!("closed after {got:02X?}");
        }
        got.extend(chunk);
    }
}

/// Length of the frame at the start of `buf`, once its header is there.
fn frame_len(buf: &[u8]) -> Option<usize> {
    let mut len = 0usize;
    for (i, &b) in buf.iter().enumerate().skip(1).take(4) {
        len |= usize::from(b & 0x7F) << (7 * (i - 1));
        if b & 0x80 == 0 {
            return Some(1 + i + len);
        }
    }
    None
}

/// A 3.1.1 CONNECT with these connect flags, and the fields they announce:
/// `will` (topic, message), a username and a password when their flags say so.
fn connect_flags(flags: u8, will: Option<(&[u8], &[u8])>, user: &TestUser) -> Vec<u8> {
    let mut body = Vec::new();
    string(&mut body, b"MQTT");
    body.push(4);
    body.push(flags);
    body.extend_from_slice(&30u16.to_be_bytes());
    string(&mut body, b"flags");
    if let Some((topic, message)) = will {
        string(&mut body, topic);
        string(&mut body, message);
    }
    if flags & 0x80 != 0 {
        string(&mut body, user.id.to_string().as_bytes());
    }
    if flags & 0x40 != 0 {
        string(&mut body, user.access_token.as_bytes());
    }
    frame(0x10, &body)
}

/// An MQTT 5 CONNECT (clean start, username and password) with these
/// encoded properties.
fn connect_v5(user: &TestUser, props: &[u8]) -> Vec<u8> {
    let mut body = Vec::new();
    string(&mut body, b"MQTT");
    body.push(5);
    body.push(0b1100_0010);
    body.extend_from_slice(&30u16.to_be_bytes());
    body.push(props.len() as u8);
    body.extend_from_slice(props);
    string(&mut body, b"raw5");
    string(&mut body, user.id.to_string().as_bytes());
    string(&mut body, user.access_token.as_bytes());
    frame(0x10, &body)
}

async fn connected_v5(server: &TestServer, user: &TestUser) -> Result<TcpStream> {
    let mut sock = TcpStream::connect(server.mqtt).await?;
    sock.write_all(&connect_v5(user, &[])).await?;
    let ack = read_frame(&mut sock, Duration::from_secs(5)).await?;
    assert_eq!(&ack[..4], [0x20, ack[1], 0x00, 0x00], "CONNACK accepted");
    Ok(sock)
}

/// Runs every case, then fails listing all that did not hold (so a run
/// before the fix shows each one failing, not only the first).
fn all_hold(results: Vec<(&str, Result<()>)>) -> Result<()> {
    let failed: Vec<String> = results
        .into_iter()
        .filter_map(|(case, r)| r.err().map(|e| format!("{case}: {e}")))
        .collect();
    if !failed.is_empty() {
        bail!("{}", failed.join("\n"));
    }
    Ok(())
}

#[tokio::test]
async fn connect_with_the_reserved_flag_set_closes_without_connack() -> Result<()> {
    let server = TestServer::start().await?;
    let alice = server.user("alice").await?;
    let mut sock = TcpStream::connect(server.mqtt).await?;
    // MQTT-3.1.2-3: bit 0 of the connect flags is reserved, must be 0.
    sock.write_all(&connect_flags(0b1100_0011, None, &alice))
        .await?;
    expect_closed_silently(&mut sock, Duration::from_secs(3)).await
}

#[tokio::test]
async fn wrong_fixed_header_flags_close_the_connection() -> Result<()> {
    let server = TestServer::start().await?;
    let alice = server.user("alice").await?;
    let filter = format!("users/{}/events", alice.id);
    let mut sub = 1u16.to_be_bytes().to_vec();
    string(&mut sub, filter.as_bytes());
    sub.push(1);
    let mut unsub = 2u16.to_be_bytes().to_vec();
    string(&mut unsub, filter.as_bytes());
    // MQTT-2.2.2-2: SUBSCRIBE, UNSUBSCRIBE and PUBREL carry 0b0010
    // (MQTT-3.8.1-1, -3.10.1-1, -3.6.1-1); the other types 0.
    let cases = [
        ("SUBSCRIBE 0x80", frame(0x80, &sub)),
        ("UNSUBSCRIBE 0xA0", frame(0xA0, &unsub)),
        ("PUBREL 0x60", frame(0x60, &[0, 3])),
        ("PINGREQ 0xC1", vec![0xC1, 0]),
    ];
    let mut results = Vec::new();
    for (case, packet) in cases {
        let outcome = async {
            let mut sock = connected(&server, &alice, 30).await?;
            sock.write_all(&packet).await?;
            expect_closed_silently(&mut sock, Duration::from_secs(3)).await
        };
        results.push((case, outcome.await));
    }
    all_hold(results)
}

#[tokio::test]
async fn nul_in_a_client_id_closes_without_connack() -> Result<()> {
    let server = TestServer::start().await?;
    let alice = server.user("alice").await?;
    let mut sock = TcpStream::connect(server.mqtt).await?;
    // MQTT-1.5.4-2: U+0000 in a UTF-8 string is malformed.
    sock.write_all(&connect(4, "a\0b", &alice, 30)).await?;
    expect_closed_silently(&mut sock, Duration::from_secs(3)).await
}

#[tokio::test]
async fn nul_in_a_subscribe_filter_closes_the_connection() -> Result<()> {
    let server = TestServer::start().await?;
    let alice = server.user("alice").await?;
    let mut sock = connected(&server, &alice, 30).await?;
    let filter = format!("users/{}/ev\0ents", alice.id);
    sock.write_all(&mqchat_e2e::raw::subscribe(4, &filter, 1))
        .await?;
    expect_closed_silently(&mut sock, Duration::from_secs(3)).await
}

#[tokio::test]
async fn malformed_connects_close_without_connack() -> Result<()> {
    let server = TestServer::start().await?;
    let alice = server.user("alice").await?;
    let will = 0b1100_0110; // username, password, will at QoS 0, clean
    let cases: [(&str, Vec<u8>); 4] = [
        (
            "will topic with invalid UTF-8",
            connect_flags(will, Some((b"users/1/\xFF\xFE", b"bye")), &alice),
        ),
        (
            "will topic with U+0000",
            connect_flags(will, Some((b"users/1/a\0b", b"bye")), &alice),
        ),
        (
            "zero-length will topic",
            connect_flags(will, Some((b"", b"bye")), &alice),
        ),
        // MQTT-3.1.2-22: no password without a username (3.1.1).
        (
            "password flag without the username flag",
            connect_flags(0b0100_0010, None, &alice),
        ),
    ];
    let mut results = Vec::new();
    for (case, packet) in cases {
        let outcome = async {
            let mut sock = TcpStream::connect(server.mqtt).await?;
            sock.write_all(&packet).await?;
            expect_closed_silently(&mut sock, Duration::from_secs(3)).await
        };
        results.push((case, outcome.await));
    }
    all_hold(results)
}

/// An MQTT 5 PUBLISH at `first` (type, QoS, retain) with these properties.
fn publish_v5(first: u8, topic: &[u8], props: &[u8]) -> Vec<u8> {
    let mut body = Vec::new();
    string(&mut body, topic);
    if first & 0b0110 != 0 {
        body.extend_from_slice(&5u16.to_be_bytes());
    }
    body.push(props.len() as u8);
    body.extend_from_slice(props);
    body.extend_from_slice(b"{}");
    frame(first, &body)
}

#[tokio::test]
async fn mqtt5_publishes_beyond_what_connack_offers_are_disconnected_with_the_reason() -> Result<()>
{
    let server = TestServer::start().await?;
    let alice = server.user("alice").await?;
    let topic = format!("users/{}/events", alice.id);
    let topic = topic.as_bytes();
    // MQTT-4.13.1-1: the server's DISCONNECT names the violation.
    let cases = [
        // Topic Alias (0x23): 0 is never one, and CONNACK's Topic Alias
        // Maximum is 0 (MQTT 5 §3.3.2.3.4).
        (
            "topic alias 0",
            publish_v5(0x30, topic, &[0x23, 0, 0]),
            0x94,
        ),
        (
            "topic alias 1",
            publish_v5(0x30, topic, &[0x23, 0, 1]),
            0x94,
        ),
        (
            "QoS 2 over Maximum QoS 1",
            publish_v5(0x34, topic, &[]),
            0x9B,
        ),
        (
            "RETAIN without Retain Available",
            publish_v5(0x31, topic, &[]),
            0x9A,
        ),
        (
            "topic with invalid UTF-8",
            publish_v5(0x30, b"users/\xFF\xFE", &[]),
            0x81,
        ),
    ];
    let mut results = Vec::new();
    for (case, packet, reason) in cases {
        let outcome = async {
            let mut sock = connected_v5(&server, &alice).await?;
            sock.write_all(&packet).await?;
            let answer = read_frame(&mut sock, Duration::from_secs(3)).await?;
            if answer.first() != Some(&0xE0) || answer.get(2) != Some(&reason) {
                bail!("answered {answer:02X?}, not DISCONNECT {reason:#04X}");
            }
            expect_closed(&mut sock, Duration::from_secs(3)).await
        };
        results.push((case, outcome.await));
    }
    all_hold(results)
}

/// MQTT 5 §3.14.2.2.2: a DISCONNECT may not set a Session Expiry Interval
/// when CONNECT's was 0 (absent): a clean session can't become persistent
/// on its way out. The server answers DISCONNECT 0x82 and closes.
#[tokio::test]
async fn mqtt5_a_clean_session_cannot_raise_its_expiry_at_disconnect() -> Result<()> {
    let server = TestServer::start().await?;
    let alice = server.user("alice").await?;
    let mut sock = connected_v5(&server, &alice).await?;
    // DISCONNECT 0x00 with Session Expiry Interval (0x11) = 60.
    sock.write_all(&[0xE0, 0x07, 0x00, 0x05, 0x11, 0, 0, 0, 60])
        .await?;
    let answer = read_frame(&mut sock, Duration::from_secs(3)).await?;
    assert_eq!(
        (answer.first(), answer.get(2)),
        (Some(&0xE0), Some(&0x82)),
        "answered {answer:02X?}"
    );
    expect_closed(&mut sock, Duration::from_secs(3)).await
}

#[tokio::test]
async fn mqtt5_connects_the_server_cannot_honour_are_refused() -> Result<()> {
    let server = TestServer::start().await?;
    let alice = server.user("alice").await?;
    let cases: [(&str, Vec<u8>, u8); 4] = [
        // Receive Maximum (0x21) and Maximum Packet Size (0x27) of 0 are
        // protocol errors (MQTT 5 §3.1.2.11.3, §3.1.2.11.4).
        ("Receive Maximum 0", vec![0x21, 0, 0], 0x82),
        ("Maximum Packet Size 0", vec![0x27, 0, 0, 0, 0], 0x82),
        // Authentication Method (0x15): none is supported (MQTT-4.12.0-1).
        (
            "an authentication method",
            {
                let mut p = vec![0x15];
                string(&mut p, b"SCRAM-SHA-1");
                p
            },
            0x8C,
        ),
        // Authentication Data (0x16) without a method (MQTT 5 §3.1.2.11.10).
        (
            "authentication data alone",
            {
                let mut p = vec![0x16];
                string(&mut p, b"data");
                p
            },
            0x82,
        ),
    ];
    let mut results = Vec::new();
    for (case, props, reason) in cases {
        let outcome = async {
            let mut sock = TcpStream::connect(server.mqtt).await?;
            sock.write_all(&connect_v5(&alice, &props)).await?;
            let ack = read_frame(&mut sock, Duration::from_secs(3)).await?;
            if ack.first() != Some(&0x20) || ack.get(3) != Some(&reason) {
                bail!("answered {ack:02X?}, not CONNACK {reason:#04X}");
            }
            expect_closed(&mut sock, Duration::from_secs(3)).await
        };
        results.push((case, outcome.await));
    }
    all_hold(results)
}

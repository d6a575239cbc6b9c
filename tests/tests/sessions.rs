//! Delivery to clean and persistent sessions: both from a mailbox the
//! pushes go straight into (the gateway numbers QoS 1 deliveries and keeps
//! their window), a persistent session also replayed from the store what
//! it missed while away (`mqtt_sessions.rs` has the rest of that). Each
//! test holds the gateway to what an MQTT client expects of either: the
//! window of unacknowledged deliveries, one copy for overlapping
//! subscriptions (with every MQTT 5 subscription identifier), client-id
//! takeover, and the persistent session a clean one discards.

use std::time::Duration;

use anyhow::{anyhow, bail, Result};
use mqchat_e2e::{patient, raw, TestServer, TestUser};
use rumqttc::v5::mqttbytes::v5::{
    ConnAck, Disconnect, DisconnectReasonCode, Packet, Publish, SubscribeProperties,
};
use rumqttc::v5::mqttbytes::QoS;
use rumqttc::v5::{AsyncClient, ConnectionError, Event, EventLoop, MqttOptions, StateError};
use serde_json::json;
use tokio::io::{AsyncReadExt, AsyncWriteExt};
use tokio::net::TcpStream;

/// A v5 client of `user` with client id `id`, acknowledging by hand.
fn v5(server: &TestServer, user: &TestUser, id: &str) -> MqttOptions {
    let mut opts = MqttOptions::new(id, "127.0.0.1", server.mqtt.port());
    opts.set_credentials(user.id.to_string(), user.access_token.clone());
    opts.set_keep_alive(Duration::from_secs(30));
    opts.set_manual_acks(true);
    opts
}

/// Polls the event loop until `pick` takes an incoming packet, or `wait`
/// passes (`None`). rumqttc reports a DISCONNECT from the server as an
/// error; it is handed to `pick` as the packet it was. Other connection
/// errors end the wait with the error.
async fn next_incoming<T>(
    events: &mut EventLoop,
    wait: Duration,
    mut pick: impl FnMut(Packet) -> Option<T>,
) -> Result<Option<T>> {
    let deadline = tokio::time::Instant::now() + patient(wait);
    loop {
        match tokio::time::timeout_at(deadline, events.poll()).await {
            Err(_) => return Ok(None),
            Ok(Err(ConnectionError::MqttState(StateError::ServerDisconnect {
                reason_code,
                ..
            }))) => {
                let disconnect = Packet::Disconnect(Disconnect {
                    reason_code,
                    properties: None,
                });
                return Ok(pick(disconnect));
            }
            Ok(Err(e)) => bail!("connection: {e}"),
            Ok(Ok(Event::Incoming(packet))) => {
                if let Some(v) = pick(packet) {
                    return Ok(Some(v));
                }
            }
            Ok(Ok(Event::Outgoing(_))) => {}
        }
    }
}

async fn connack(events: &mut EventLoop) -> Result<ConnAck> {
    next_incoming(events, Duration::from_secs(5), |p| match p {
        Packet::ConnAck(ack) => Some(ack),
        _ => None,
    })
    .await?
    .ok_or_else(|| anyhow!("no CONNACK"))
}

async fn suback(events: &mut EventLoop) -> Result<()> {
    next_incoming(events, Duration::from_secs(5), |p| {
        matches!(p, Packet::SubAck(_)).then_some(())
    })
    .await?
    .ok_or_else(|| anyhow!("no SUBACK"))
}

/// Connects with `opts` and subscribes to `user`'s own space at QoS 1.
async fn subscribed(opts: MqttOptions, user: &TestUser) -> Result<(AsyncClient, EventLoop)> {
    let (client, mut events) = AsyncClient::new(opts, 64);
    connack(&mut events).await?;
    client
        .subscribe(format!("users/{}/#", user.id), QoS::AtLeastOnce)
        .await?;
    suback(&mut events).await?;
    Ok((client, events))
}

async fn publish(events: &mut EventLoop, wait: Duration) -> Result<Option<Publish>> {
    next_incoming(events, wait, |p| match p {
        Packet::Publish(p) => Some(p),
        _ => None,
    })
    .await
}

fn text_of(p: &Publish) -> String {
    serde_json::from_slice::<serde_json::Value>(&p.payload)
        .ok()
        .and_then(|v| v["message"]["body"]["text"].as_str().map(str::to_owned))
        .unwrap_or_default()
}

#[tokio::test]
async fn qos1_deliveries_wait_for_the_clients_receive_maximum() -> Result<()> {
    let server = TestServer::start().await?;
    let alice = server.user("alice").await?;
    let bob = server.user("bob").await?;
    let mut opts = v5(&server, &bob, "bob-phone");
    opts.set_receive_maximum(Some(3));
    let (client, mut events) = subscribed(opts, &bob).await?;

    for i in 0..5 {
        let (s, m) = alice
            .send_text(bob.id, &format!("w{i}"), &format!("m{i}"))
            .await?;
        assert_eq!(s, 201, "{m}");
    }
    let mut held = Vec::new();
    for _ in 0..3 {
        let p = publish(&mut events, Duration::from_secs(5))
            .await?
            .ok_or_else(|| anyhow!("fewer than 3 deliveries"))?;
        assert_eq!(p.qos, QoS::AtLeastOnce);
        held.push(p);
    }
    assert_eq!(
        held.iter().map(text_of).collect::<Vec<_>>(),
        ["m0", "m1", "m2"]
    );
    let mut ids: Vec<u16> = held.iter().map(|p| p.pkid).collect();
    ids.dedup();
    assert_eq!(ids.len(), 3, "distinct packet ids: {ids:?}");
    assert!(
        publish(&mut events, Duration::from_millis(700))
            .await?
            .is_none(),
        "a fourth delivery while three are unacknowledged"
    );

    // Each PUBACK opens the window for one more, in order.
    client.ack(&held.remove(0)).await?;
    let p = publish(&mut events, Duration::from_secs(5))
        .await?
        .ok_or_else(|| anyhow!("no delivery after the first PUBACK"))?;
    assert_eq!(text_of(&p), "m3");
    held.push(p);
    for p in held.drain(..) {
        client.ack(&p).await?;
    }
    let p = publish(&mut events, Duration::from_secs(5))
        .await?
        .ok_or_else(|| anyhow!("no last delivery"))?;
    assert_eq!(text_of(&p), "m4");
    Ok(())
}

#[tokio::test]
async fn overlapping_subscriptions_deliver_one_copy_with_every_identifier() -> Result<()> {
    let server = TestServer::start().await?;
    let alice = server.user("alice").await?;
    let bob = server.user("bob").await?;
    let (client, mut events) = AsyncClient::new(v5(&server, &bob, "bob-ids"), 64);
    connack(&mut events).await?;
    for (filter, id) in [
        (format!("users/{}/#", bob.id), 11),
        (format!("users/{}/events", bob.id), 22),
    ] {
        let props = SubscribeProperties {
            id: Some(id),
            user_properties: Vec::new(),
        };
        client
            .subscribe_with_properties(filter, QoS::AtLeastOnce, props)
            .await?;
        suback(&mut events).await?;
    }
    // A filter without an identifier that matches too: no identifier for it.
    client
        .subscribe(format!("users/{}/+", bob.id), QoS::AtMostOnce)
        .await?;
    suback(&mut events).await?;

    let (s, m) = alice.send_text(bob.id, "ids-1", "once").await?;
    assert_eq!(s, 201, "{m}");
    let p = publish(&mut events, Duration::from_secs(5))
        .await?
        .ok_or_else(|| anyhow!("no delivery"))?;
    assert_eq!(text_of(&p), "once");
    assert_eq!(p.qos, QoS::AtLeastOnce, "the highest QoS of the matches");
    let mut ids = p
        .properties
        .as_ref()
        .map(|props| props.subscription_identifiers.clone())
        .unwrap_or_default();
    ids.sort_unstable();
    assert_eq!(ids, [11, 22]);
    client.ack(&p).await?;
    assert!(
        publish(&mut events, Duration::from_millis(700))
            .await?
            .is_none(),
        "a second copy"
    );

    // Unsubscribed filters stop matching.
    client.unsubscribe(format!("users/{}/#", bob.id)).await?;
    client
        .unsubscribe(format!("users/{}/events", bob.id))
        .await?;
    client.unsubscribe(format!("users/{}/+", bob.id)).await?;
    next_incoming(&mut events, Duration::from_secs(5), |p| {
        matches!(p, Packet::UnsubAck(_)).then_some(())
    })
    .await?;
    let (s, _) = alice.send_text(bob.id, "ids-2", "none").await?;
    assert_eq!(s, 201);
    assert!(
        publish(&mut events, Duration::from_millis(700))
            .await?
            .is_none(),
        "a delivery with no subscription left"
    );
    Ok(())
}

#[tokio::test]
async fn a_second_connection_with_the_same_client_id_takes_over() -> Result<()> {
    let server = TestServer::start().await?;
    let alice = server.user("alice").await?;
    let bob = server.user("bob").await?;
    let (_first, mut first_events) = AsyncClient::new(v5(&server, &bob, "bob-phone"), 16);
    connack(&mut first_events).await?;
    // Another user's client with the same id changes nothing for bob.
    let (_alices, mut alice_events) = AsyncClient::new(v5(&server, &alice, "bob-phone"), 16);
    connack(&mut alice_events).await?;

    let (second, mut second_events) = AsyncClient::new(v5(&server, &bob, "bob-phone"), 16);
    connack(&mut second_events).await?;
    let kicked: Option<Disconnect> =
        next_incoming(&mut first_events, Duration::from_secs(5), |p| match p {
            Packet::Disconnect(d) => Some(d),
            _ => None,
        })
        .await?;
    assert_eq!(
        kicked.map(|d| d.reason_code),
        Some(DisconnectReasonCode::SessionTakenOver)
    );
    // The new connection is served.
    second
        .subscribe(format!("users/{}/#", bob.id), QoS::AtLeastOnce)
        .await?;
    suback(&mut second_events).await?;
    let (s, _) = alice.send_text(bob.id, "t-1", "to the new one").await?;
    assert_eq!(s, 201);
    let p = publish(&mut second_events, Duration::from_secs(5)).await?;
    assert_eq!(p.as_ref().map(text_of).as_deref(), Some("to the new one"));
    assert!(
        publish(&mut alice_events, Duration::from_millis(300))
            .await?
            .is_none(),
        "alice's connection lives on and sees nothing of bob's"
    );
    Ok(())
}

/// Receives `n` deliveries (acknowledging each) and their texts; then
/// checks that nothing more comes.
async fn texts(client: &AsyncClient, events: &mut EventLoop, n: usize) -> Result<Vec<String>> {
    let mut got = Vec::new();
    while got.len() < n {
        let p = publish(events, Duration::from_secs(5))
            .await?
            .ok_or_else(|| anyhow!("{} of {n} deliveries: {got:?}", got.len()))?;
        client.ack(&p).await?;
        got.push(text_of(&p));
    }
    if let Some(extra) = publish(events, Duration::from_millis(300)).await? {
        bail!("a delivery beyond {got:?}: {}", text_of(&extra));
    }
    Ok(got)
}

/// A user's pushes reach each connection through its mailbox, and a
/// persistent session's replay from the store fills in what it missed: each
/// connection must still get each push once, in order, however the two
/// kinds of session come and go.
#[tokio::test]
async fn clean_and_persistent_sessions_of_a_user_each_get_every_push_once() -> Result<()> {
    let server = TestServer::start().await?;
    let alice = server.user("alice").await?;
    let bob = server.user("bob").await?;
    let send = |id: &'static str| {
        let alice = &alice;
        async move {
            let (s, m) = alice.send_text(bob.id, id, id).await?;
            anyhow::ensure!(s == 201, "{m}");
            Ok(())
        }
    };
    let (phone, mut phone_events) = subscribed(v5(&server, &bob, "bob-phone"), &bob).await?;
    send("m0").await?;
    assert_eq!(texts(&phone, &mut phone_events, 1).await?, ["m0"]);

    // A persistent session joins (MQTT 5: a Session Expiry Interval).
    let mut tablet_opts = v5(&server, &bob, "bob-tablet");
    tablet_opts.set_clean_start(false);
    tablet_opts.set_session_expiry_interval(Some(600));
    let (tablet, mut tablet_events) = subscribed(tablet_opts.clone(), &bob).await?;
    for id in ["m1", "m2", "m3"] {
        send(id).await?;
    }
    assert_eq!(
        texts(&phone, &mut phone_events, 3).await?,
        ["m1", "m2", "m3"]
    );
    assert_eq!(
        texts(&tablet, &mut tablet_events, 3).await?,
        ["m1", "m2", "m3"]
    );

    // It goes away and comes back: the store kept its subscription, the
    // clean session never gets a push twice.
    tablet.disconnect().await?;
    while tablet_events.poll().await.is_ok() {}
    send("m4").await?;
    assert_eq!(texts(&phone, &mut phone_events, 1).await?, ["m4"]);
    let (tablet, mut tablet_events) = AsyncClient::new(tablet_opts, 64);
    assert!(connack(&mut tablet_events).await?.session_present);
    send("m5").await?;
    assert_eq!(texts(&phone, &mut phone_events, 1).await?, ["m5"]);
    // What it missed while away (m4, from the store), then m5.
    let got = texts(&tablet, &mut tablet_events, 2).await?;
    assert_eq!(got, ["m4", "m5"]);

    // A clean session takes the persistent one's id over and discards it:
    // every push still reaches each connection once.
    tablet.disconnect().await?;
    while tablet_events.poll().await.is_ok() {}
    let (laptop, mut laptop_events) = subscribed(v5(&server, &bob, "bob-tablet"), &bob).await?;
    send("m6").await?;
    assert_eq!(texts(&phone, &mut phone_events, 1).await?, ["m6"]);
    assert_eq!(texts(&laptop, &mut laptop_events, 1).await?, ["m6"]);
    Ok(())
}

/// CONNECT (3.1.1) with a client id and the clean-session flag.
fn connect(client_id: &str, clean: bool, user: &TestUser) -> Vec<u8> {
    let mut body = Vec::new();
    raw::string(&mut body, b"MQTT");
    body.push(4);
    body.push(if clean { 0b1100_0010 } else { 0b1100_0000 });
    body.extend_from_slice(&30u16.to_be_bytes());
    raw::string(&mut body, client_id.as_bytes());
    raw::string(&mut body, user.id.to_string().as_bytes());
    raw::string(&mut body, user.access_token.as_bytes());
    raw::frame(0x10, &body)
}

/// Connects and returns the socket and whether a session was present.
async fn session(server: &TestServer, user: &TestUser, clean: bool) -> Result<(TcpStream, bool)> {
    let mut sock = TcpStream::connect(server.mqtt).await?;
    sock.write_all(&connect("tablet", clean, user)).await?;
    let mut ack = [0u8; 4];
    tokio::time::timeout(patient(Duration::from_secs(5)), sock.read_exact(&mut ack)).await??;
    match ack {
        [0x20, 0x02, present @ (0 | 1), 0x00] => Ok((sock, present == 1)),
        other => bail!("CONNACK {other:?}"),
    }
}

/// Reads until the server closes the socket.
async fn closed(sock: &mut TcpStream) -> Result<()> {
    let mut buf = [0u8; 256];
    loop {
        match tokio::time::timeout(patient(Duration::from_secs(5)), sock.read(&mut buf)).await {
            Err(_) => bail!("still open"),
            Ok(Ok(0) | Err(_)) => return Ok(()),
            Ok(Ok(_)) => {}
        }
    }
}

#[tokio::test]
async fn a_clean_session_ends_and_discards_the_persistent_one() -> Result<()> {
    let server = TestServer::start().await?;
    let bob = server.user("bob").await?;

    let (mut persistent, present) = session(&server, &bob, false).await?;
    assert!(!present);
    persistent.write_all(&[0xE0, 0x00]).await?;
    closed(&mut persistent).await?;
    let (mut persistent, present) = session(&server, &bob, false).await?;
    assert!(present, "the store kept the persistent session");

    // A clean session with the same id takes the live connection over...
    let (mut clean, present) = session(&server, &bob, true).await?;
    assert!(!present);
    closed(&mut persistent).await?;
    clean.write_all(&[0xE0, 0x00]).await?;
    closed(&mut clean).await?;
    // ...and the stored session is gone.
    let (mut again, present) = session(&server, &bob, false).await?;
    assert!(!present, "session present after a clean session");

    // A persistent session takes a clean one's id over too.
    let (mut clean, _) = session(&server, &bob, true).await?;
    let (_persistent, _) = session(&server, &bob, false).await?;
    closed(&mut clean).await?;
    closed(&mut again).await?;
    Ok(())
}

#[tokio::test]
async fn a_client_that_falls_behind_is_disconnected_and_catches_up_by_sync() -> Result<()> {
    let server = TestServer::start_with(&["--send-rate", "0", "--mqtt-queue-kib", "128"]).await?;
    let alice = server.user("alice").await?;
    let bob = server.user("bob").await?;
    // It takes one QoS 1 delivery and never acknowledges it: the rest wait
    // in its mailbox (128 KiB here) until it overflows.
    let mut opts = v5(&server, &bob, "bob-slow");
    opts.set_receive_maximum(Some(1));
    opts.set_max_packet_size(Some(1 << 20));
    let (_client, mut events) = subscribed(opts, &bob).await?;

    let pad = "p".repeat(15_000);
    let mut sent = Vec::new();
    for i in 0..12 {
        let (s, m) = alice
            .post(
                "/v1/messages",
                &json!({"to": {"user": bob.id}, "client_msg_id": format!("b{i}"),
                        "body": {"text": format!("big {i}"), "pad": pad}}),
            )
            .await?;
        assert_eq!(s, 201, "{m}");
        sent.push(m["id"].as_u64().unwrap_or(0));
    }
    // The server says why (0x97) and closes. (Should the close overtake
    // the DISCONNECT on the way, the client sees a reset instead; the
    // server's log says why all the same.)
    let ended = next_incoming(&mut events, Duration::from_secs(10), |p| match p {
        Packet::Disconnect(d) => Some(d.reason_code),
        _ => None,
    })
    .await;
    match ended {
        Ok(Some(code)) => assert_eq!(code, DisconnectReasonCode::QuotaExceeded),
        Ok(None) => bail!("still connected"),
        Err(e) => eprintln!("connection ended without its DISCONNECT: {e}"),
    }
    mqchat_e2e::eventually(Duration::from_secs(5), || async {
        Ok(server
            .logs()
            .iter()
            .any(|l| l.contains("client_id=bob-slow") && l.contains("fell behind"))
            .then_some(()))
    })
    .await?;

    // The store has everything; sync returns it all, in order.
    assert_eq!(bob.synced_message_ids().await?, sent);
    Ok(())
}

#[tokio::test]
async fn deliveries_over_the_clients_maximum_packet_size_are_skipped() -> Result<()> {
    let server = TestServer::start().await?;
    let alice = server.user("alice").await?;
    let bob = server.user("bob").await?;
    let mut opts = v5(&server, &bob, "bob-small");
    opts.set_max_packet_size(Some(2_000));
    let (client, mut events) = subscribed(opts, &bob).await?;
    let (s, _) = alice
        .post(
            "/v1/messages",
            &json!({"to": {"user": bob.id}, "client_msg_id": "big",
                    "body": {"text": "big", "pad": "p".repeat(5_000)}}),
        )
        .await?;
    assert_eq!(s, 201);
    let (s, _) = alice.send_text(bob.id, "small", "small").await?;
    assert_eq!(s, 201);
    // MQTT 5 §3.1.2.11.4: too large to send is discarded, as if delivered.
    let p = publish(&mut events, Duration::from_secs(5))
        .await?
        .ok_or_else(|| anyhow!("no delivery"))?;
    assert_eq!(text_of(&p), "small");
    client.ack(&p).await?;
    // The client learns of the skipped one by the cursor gap, and syncs.
    let events = bob.sync_all(0).await?;
    assert_eq!(events.len(), 2);
    Ok(())
}

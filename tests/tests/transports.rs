//! Other ways in: MQTT over WebSocket, MQTT 5, and the stock mosquitto_sub.

use std::process::Stdio;
use std::time::Duration;

use anyhow::{bail, Result};
use mqchat_e2e::{patient, TestServer};

#[tokio::test]
async fn websocket_client_receives_pushes() -> Result<()> {
    let server = TestServer::start().await?;
    let alice = server.user("alice").await?;
    let bob = server.user("bob").await?;
    let mut ws = server.mqtt_ws(&bob).await?;
    let (s, sent) = alice.send_text(bob.id, "w1", "over websocket").await?;
    assert_eq!(s, 201);
    let got = ws
        .next_event(Duration::from_secs(2))
        .await?
        .expect("no push over WebSocket");
    assert_eq!(got["message"], sent);
    Ok(())
}

#[tokio::test]
async fn websocket_requires_credentials_too() -> Result<()> {
    let server = TestServer::start().await?;
    let bob = server.user("bob").await?;
    let mut opts = rumqttc::MqttOptions::new("w-bad", server.ws_url(), server.http.port());
    opts.set_transport(rumqttc::Transport::Ws);
    opts.set_credentials(bob.id.to_string(), "nope");
    let err = mqchat_e2e::Mqtt::connect(opts)
        .await
        .err()
        .map(|e| e.to_string())
        .unwrap_or_default();
    assert!(err.contains("BadUserNamePassword"), "{err}");
    Ok(())
}

#[tokio::test]
async fn mqtt5_client_gets_reason_codes_and_pushes() -> Result<()> {
    use rumqttc::v5::mqttbytes::v5::{Packet, SubscribeReasonCode};
    use rumqttc::v5::mqttbytes::QoS;
    use rumqttc::v5::{AsyncClient, Event, MqttOptions};
    let server = TestServer::start().await?;
    let alice = server.user("alice").await?;
    let bob = server.user("bob").await?;
    let mut opts = MqttOptions::new("v5-bob", "127.0.0.1", server.mqtt.port());
    opts.set_credentials(bob.id.to_string(), bob.access_token.clone());
    opts.set_keep_alive(Duration::from_secs(30));
    let (client, mut events) = AsyncClient::new(opts, 16);
    client
        .subscribe(format!("users/{}/#", bob.id), QoS::AtLeastOnce)
        .await?;
    client
        .subscribe(format!("users/{}/#", alice.id), QoS::AtLeastOnce)
        .await?;
    let mut acks = Vec::new();
    let mut pushed = None;
    let deadline = tokio::time::Instant::now() + patient(Duration::from_secs(5));
    while tokio::time::Instant::now() < deadline && pushed.is_none() {
        let ev = tokio::time::timeout(patient(Duration::from_secs(5)), events.poll()).await??;
        match ev {
            Event::Incoming(Packet::SubAck(s)) => {
                acks.push(s.return_codes);
                if acks.len() == 2 {
                    let (st, _) = alice.send_text(bob.id, "v5", "hello v5").await?;
                    assert_eq!(st, 201);
                }
            }
            Event::Incoming(Packet::Publish(p)) => pushed = Some(p),
            _ => {}
        }
    }
    assert_eq!(
        acks[0],
        vec![SubscribeReasonCode::Success(QoS::AtLeastOnce)]
    );
    assert_eq!(acks[1], vec![SubscribeReasonCode::NotAuthorized]);
    let p = match pushed {
        Some(p) => p,
        None => bail!("no push over MQTT 5"),
    };
    let v: serde_json::Value = serde_json::from_slice(&p.payload)?;
    assert_eq!(v["message"]["body"]["text"], "hello v5");
    Ok(())
}

/// The stock Debian client. Skipped only when mosquitto_sub is missing
/// outside CI; in CI (CI=true) a missing tool is a failure.
#[tokio::test]
async fn mosquitto_sub_receives_pushes() -> Result<()> {
    if !mqchat_e2e::tool_available("mosquitto_sub", "mosquitto-clients")? {
        return Ok(());
    }
    let server = TestServer::start().await?;
    let alice = server.user("alice").await?;
    let bob = server.user("bob").await?;
    // -C 1: exit after the first message. Its stdout is a pipe (block
    // buffered), so instead of waiting for its "Subscribed" line, keep
    // sending until it has received one and exited.
    let child = tokio::process::Command::new("mosquitto_sub")
        .args(["-h", "127.0.0.1", "-p", &server.mqtt.port().to_string()])
        .args(["-u", &bob.id.to_string(), "-P", &bob.access_token])
        .args([
            "-t",
            &format!("users/{}/#", bob.id),
            "-q",
            "1",
            "-v",
            "-C",
            "1",
            "-W",
            "10",
        ])
        .stdout(Stdio::piped())
        .kill_on_drop(true)
        .spawn()?;
    let output = tokio::spawn(child.wait_with_output());
    let mut sent = Vec::new();
    for i in 0..40 {
        if output.is_finished() {
            break;
        }
        let (s, m) = alice
            .send_text(bob.id, &format!("mq{i}"), "to mosquitto")
            .await?;
        assert_eq!(s, 201);
        sent.push(m);
        tokio::time::sleep(Duration::from_millis(100)).await;
    }
    let output = tokio::time::timeout(patient(Duration::from_secs(5)), output).await???;
    assert!(output.status.success(), "mosquitto_sub failed: {output:?}");
    let stdout = String::from_utf8(output.stdout)?;
    let (topic, payload) = stdout.trim_end().split_once(' ').unwrap_or_default();
    assert_eq!(topic, format!("users/{}/events", bob.id));
    let payload: serde_json::Value = serde_json::from_str(payload)?;
    assert!(
        sent.contains(&payload["message"]),
        "{payload} is not one of the sent messages"
    );
    Ok(())
}

#[tokio::test]
async fn mqtt5_over_websocket() -> Result<()> {
    use rumqttc::v5::mqttbytes::v5::Packet;
    use rumqttc::v5::mqttbytes::QoS;
    use rumqttc::v5::{AsyncClient, Event, MqttOptions};
    let server = TestServer::start().await?;
    let alice = server.user("alice").await?;
    let bob = server.user("bob").await?;
    let mut opts = MqttOptions::new("v5-ws-bob", server.ws_url(), server.http.port());
    opts.set_transport(rumqttc::Transport::Ws);
    opts.set_credentials(bob.id.to_string(), bob.access_token.clone());
    opts.set_keep_alive(Duration::from_secs(30));
    let (client, mut events) = AsyncClient::new(opts, 16);
    client
        .subscribe(format!("users/{}/#", bob.id), QoS::AtLeastOnce)
        .await?;
    let deadline = tokio::time::Instant::now() + Duration::from_secs(10);
    while tokio::time::Instant::now() < deadline {
        match tokio::time::timeout(patient(Duration::from_secs(5)), events.poll()).await?? {
            Event::Incoming(Packet::SubAck(_)) => {
                let (s, _) = alice
                    .send_text(bob.id, "v5ws", "hello v5 over websocket")
                    .await?;
                assert_eq!(s, 201);
            }
            Event::Incoming(Packet::Publish(p)) => {
                let v: serde_json::Value = serde_json::from_slice(&p.payload)?;
                assert_eq!(v["message"]["body"]["text"], "hello v5 over websocket");
                return Ok(());
            }
            _ => {}
        }
    }
    bail!("no push over MQTT 5 on WebSocket")
}

/// Names of chatd's MQTT I/O threads.
fn io_threads(server: &TestServer) -> Result<Vec<String>> {
    let pid = server
        .pid()
        .ok_or_else(|| anyhow::anyhow!("chatd has no pid"))?;
    let mut names = Vec::new();
    for task in std::fs::read_dir(format!("/proc/{pid}/task"))? {
        let comm = std::fs::read_to_string(task?.path().join("comm"))?;
        if comm.starts_with("mqtt-io-") {
            names.push(comm.trim().to_owned());
        }
    }
    names.sort();
    Ok(names)
}

#[tokio::test]
async fn mqtt_connections_are_spread_over_the_io_threads_asked_for() -> Result<()> {
    // The default: half the cores, at least one.
    let server = TestServer::start().await?;
    let cores = std::thread::available_parallelism().map_or(1, |n| n.get());
    assert_eq!(io_threads(&server)?.len(), (cores / 2).max(1));
    drop(server);

    let server = TestServer::start_with(&["--mqtt-io-threads", "3"]).await?;
    assert_eq!(
        io_threads(&server)?,
        ["mqtt-io-0", "mqtt-io-1", "mqtt-io-2"]
    );
    // Six connections, two on each thread in turn: each gets its own push.
    let alice = server.user("alice").await?;
    let mut receivers = Vec::new();
    for i in 0..6 {
        let user = server.user(&format!("reader{i}")).await?;
        let mqtt = server.mqtt(&user).await?;
        receivers.push((user, mqtt));
    }
    for (user, _) in &receivers {
        let (s, m) = alice
            .send_text(user.id, &format!("io-{}", user.id), &user.name)
            .await?;
        assert_eq!(s, 201, "{m}");
    }
    for (user, mqtt) in &mut receivers {
        let got = mqtt
            .next_event(Duration::from_secs(5))
            .await?
            .ok_or_else(|| anyhow::anyhow!("{} got no push", user.name))?;
        assert_eq!(got["message"]["body"]["text"], user.name.as_str());
    }
    Ok(())
}

/// A service sending in bulk over HTTP/2 (cleartext, prior knowledge): many
/// sends in flight as streams of one connection, each stored once, pushed
/// once, answered like over HTTP/1.1; errors keep their JSON bodies.
#[tokio::test]
async fn http2_sends_in_flight_on_one_connection_are_each_stored_and_pushed_once() -> Result<()> {
    use std::collections::HashMap;

    let server = TestServer::start().await?;
    let alice = server.user("alice").await?;
    let bob = server.user("bob").await?;
    let mut mqtt = server.mqtt(&bob).await?;
    let h2 = reqwest::Client::builder().http2_prior_knowledge().build()?;
    let send = |id: String| {
        let req = h2
            .post(server.url("/v1/messages"))
            .bearer_auth(&alice.access_token)
            .json(&serde_json::json!({
                "to": {"user": bob.id}, "client_msg_id": id, "body": {"text": id}
            }));
        async move {
            let res = req.send().await?;
            let version = res.version();
            let status = res.status().as_u16();
            let body: serde_json::Value = res.json().await?;
            anyhow::Ok((version, status, body))
        }
    };
    const SENDS: usize = 64;
    let answers = futures_util::future::join_all((0..SENDS).map(|i| send(format!("h2-{i}")))).await;
    let mut sent = HashMap::new();
    for answer in answers {
        let (version, status, body) = answer?;
        assert_eq!(version, reqwest::Version::HTTP_2);
        assert_eq!(status, 201, "{body}");
        let id = body["id"].as_u64().expect("message id");
        assert!(sent.insert(id, body).is_none(), "two sends got one id");
    }
    // A retried send is answered with the message stored the first time.
    let (_, status, again) = send("h2-7".into()).await?;
    assert_eq!(status, 200, "{again}");
    assert!(sent.values().any(|m| *m == again), "{again}");

    // Each pushed to bob once.
    let mut pushed = HashMap::<u64, u32>::new();
    while pushed.len() < SENDS {
        let Some(ev) = mqtt.next_event(Duration::from_secs(5)).await? else {
            bail!("{} of {SENDS} pushed", pushed.len());
        };
        if ev["type"] == "message.created" {
            *pushed
                .entry(ev["message"]["id"].as_u64().unwrap_or(0))
                .or_default() += 1;
        }
    }
    assert!(pushed.keys().all(|id| sent.contains_key(id)), "{pushed:?}");
    assert!(
        mqtt.next_event(Duration::from_millis(300)).await?.is_none(),
        "a push came twice"
    );
    // Each stored once.
    let stored = bob.synced_message_ids().await?;
    assert_eq!(stored.len(), SENDS, "{stored:?}");

    // Refusals over HTTP/2 are the same JSON errors.
    let res = h2
        .post(server.url("/v1/messages"))
        .json(&serde_json::json!({}))
        .send()
        .await?;
    assert_eq!(res.version(), reqwest::Version::HTTP_2);
    assert_eq!(res.status().as_u16(), 401);
    let body: serde_json::Value = res.json().await?;
    assert!(body["error"]["code"].is_string(), "{body}");
    Ok(())
}

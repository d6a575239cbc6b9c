//! MQTT uplink: sends published to `users/{id}/up/messages` are stored like
//! HTTP sends, and the answer is published back to the sender.

use std::process::Stdio;
use std::time::Duration;

use anyhow::{anyhow, bail, Result};
use mqchat_e2e::{patient, TestServer};
use rumqttc::QoS;
use serde_json::{json, Value};

const WAIT: Duration = Duration::from_secs(3);

#[tokio::test]
async fn mqtt_311_send_is_stored_pushed_and_answered() -> Result<()> {
    let server = TestServer::start().await?;
    let alice = server.user("alice").await?;
    let bob = server.user("bob").await?;
    let mut alice_rx = server.mqtt(&alice).await?;
    let mut bob_rx = server.mqtt(&bob).await?;
    let up = format!("users/{}/up/messages", alice.id);
    let send = json!({"to": {"user": bob.id}, "client_msg_id": "u1", "body": {"text": "from a weak link"}});

    alice_rx
        .client
        .publish(&up, QoS::AtLeastOnce, false, send.to_string())
        .await?;
    let reply = alice_rx
        .next_on("replies", WAIT)
        .await?
        .ok_or_else(|| anyhow!("no reply"))?;
    assert_eq!(reply["status"], 201, "{reply}");
    assert_eq!(reply["client_msg_id"], "u1");
    let pushed = bob_rx
        .next_of_type("message.created", WAIT)
        .await?
        .ok_or_else(|| anyhow!("bob got nothing"))?;
    assert_eq!(pushed["message"], reply["message"]);

    // Same client_msg_id again: the original, not a new message.
    alice_rx
        .client
        .publish(&up, QoS::AtLeastOnce, false, send.to_string())
        .await?;
    let again = alice_rx
        .next_on("replies", WAIT)
        .await?
        .ok_or_else(|| anyhow!("no reply"))?;
    assert_eq!(again["status"], 200);
    assert_eq!(again["message"], reply["message"]);

    // Errors come back the same way, with the same codes as HTTP.
    for (payload, status, code) in [
        ("{not json".to_owned(), 400, "malformed_json"),
        (
            json!({"to": {"user": 424242}, "client_msg_id": "u2", "body": {"text": "x"}})
                .to_string(),
            404,
            "not_found",
        ),
        (
            json!({"to": {"user": bob.id}, "client_msg_id": "u3", "body": {}}).to_string(),
            400,
            "invalid_request",
        ),
    ] {
        alice_rx
            .client
            .publish(&up, QoS::AtLeastOnce, false, payload)
            .await?;
        let r = alice_rx
            .next_on("replies", WAIT)
            .await?
            .ok_or_else(|| anyhow!("no reply"))?;
        assert_eq!(
            (r["status"].as_u64(), r["error"]["code"].as_str()),
            (Some(status), Some(code)),
            "{r}"
        );
    }
    let (s, _) = alice.get("/v1/me").await?;
    assert_eq!(s, 200);
    assert_eq!(
        bob.sync_all(0).await?.len(),
        1,
        "exactly one message stored"
    );
    Ok(())
}

/// A device that publishes many sends without waiting: they are handled
/// while earlier ones are still committing, yet stored, answered and pushed
/// in the order published, a refused one and a resend among them.
#[tokio::test]
async fn pipelined_sends_keep_their_order() -> Result<()> {
    let server = TestServer::start().await?;
    let alice = server.user("alice").await?;
    let bob = server.user("bob").await?;
    let mut alice_rx = server.mqtt(&alice).await?;
    let mut bob_rx = server.mqtt(&bob).await?;
    let up = format!("users/{}/up/messages", alice.id);
    const N: usize = 150;
    let mut expected: Vec<(String, u64)> = Vec::new();
    for i in 0..N {
        let payload = match i {
            // Refused (empty body) in the middle of the stream.
            50 => json!({"to": {"user": bob.id}, "client_msg_id": "p50", "body": {}}),
            // A resend of p10 while later sends are in flight.
            100 => {
                json!({"to": {"user": bob.id}, "client_msg_id": "p10", "body": {"text": "again"}})
            }
            _ => {
                json!({"to": {"user": bob.id}, "client_msg_id": format!("p{i}"), "body": {"text": format!("m{i}")}})
            }
        };
        expected.push(match i {
            50 => ("p50".to_owned(), 400),
            100 => ("p10".to_owned(), 200),
            _ => (format!("p{i}"), 201),
        });
        alice_rx
            .client
            .publish(&up, QoS::AtLeastOnce, false, payload.to_string())
            .await?;
    }
    let mut replies = Vec::new();
    for _ in 0..N {
        let r = alice_rx
            .next_on("replies", WAIT)
            .await?
            .ok_or_else(|| anyhow!("{} replies, then none", replies.len()))?;
        replies.push(r);
    }
    let got: Vec<(String, u64)> = replies
        .iter()
        .map(|r| {
            (
                r["client_msg_id"].as_str().unwrap_or("").to_owned(),
                r["status"].as_u64().unwrap_or(0),
            )
        })
        .collect();
    assert_eq!(got, expected, "replies in publish order");
    assert_eq!(
        replies[100]["message"], replies[10]["message"],
        "the original"
    );

    // Stored in publish order: seqs follow it, once each.
    let texts: Vec<String> = (0..N)
        .filter(|&i| i != 50 && i != 100)
        .map(|i| format!("m{i}"))
        .collect();
    let stored: Vec<(u64, String)> = replies
        .iter()
        .filter(|r| r["status"] == 201)
        .map(|r| {
            (
                r["message"]["seq"].as_u64().unwrap_or(0),
                r["message"]["body"]["text"]
                    .as_str()
                    .unwrap_or("")
                    .to_owned(),
            )
        })
        .collect();
    assert!(stored.windows(2).all(|w| w[0].0 < w[1].0), "seqs in order");
    assert_eq!(
        stored.iter().map(|s| s.1.clone()).collect::<Vec<_>>(),
        texts
    );
    // Bob's pushes and his sync agree.
    let mut pushed = Vec::new();
    while pushed.len() < texts.len() {
        let ev = bob_rx
            .next_of_type("message.created", WAIT)
            .await?
            .ok_or_else(|| anyhow!("bob got {} pushes", pushed.len()))?;
        pushed.push(
            ev["message"]["body"]["text"]
                .as_str()
                .unwrap_or("")
                .to_owned(),
        );
    }
    assert_eq!(pushed, texts);
    let synced: Vec<String> = bob
        .sync_all(0)
        .await?
        .iter()
        .map(|e| {
            e["message"]["body"]["text"]
                .as_str()
                .unwrap_or("")
                .to_owned()
        })
        .collect();
    assert_eq!(synced, texts);
    Ok(())
}

#[tokio::test]
async fn uplink_is_only_open_in_ones_own_space() -> Result<()> {
    let server = TestServer::start().await?;
    let alice = server.user("alice").await?;
    let bob = server.user("bob").await?;
    let mallory = server.user("mallory").await?;
    let mut bob_rx = server.mqtt(&bob).await?;
    let mut hostile = server.mqtt(&mallory).await?;
    // Sending "as alice" through alice's uplink topic.
    let forged =
        json!({"to": {"user": bob.id}, "client_msg_id": "f1", "body": {"text": "I am alice"}});
    hostile
        .client
        .publish(
            format!("users/{}/up/messages", alice.id),
            QoS::AtLeastOnce,
            false,
            forged.to_string(),
        )
        .await?;
    assert!(
        bob_rx.next(Duration::from_millis(700)).await?.is_none(),
        "a forged send got through"
    );
    assert!(hostile
        .next_on("replies", Duration::from_millis(200))
        .await?
        .is_none());
    assert_eq!(bob.sync_all(0).await?.len(), 0);
    // Other subtrees of one's own space stay closed.
    hostile
        .client
        .publish(
            format!("users/{}/events", mallory.id),
            QoS::AtLeastOnce,
            false,
            forged.to_string(),
        )
        .await?;
    assert!(hostile.next(Duration::from_millis(300)).await?.is_none());
    Ok(())
}

#[tokio::test]
async fn mqtt5_reply_goes_to_the_response_topic_with_correlation_data() -> Result<()> {
    use rumqttc::v5::mqttbytes::v5::{Packet, PublishProperties};
    use rumqttc::v5::mqttbytes::QoS as Qos5;
    use rumqttc::v5::{AsyncClient, Event, MqttOptions};
    let server = TestServer::start().await?;
    let alice = server.user("alice").await?;
    let bob = server.user("bob").await?;
    let mut opts = MqttOptions::new("v5-alice", "127.0.0.1", server.mqtt.port());
    opts.set_credentials(alice.id.to_string(), alice.access_token.clone());
    opts.set_keep_alive(Duration::from_secs(30));
    let (client, mut events) = AsyncClient::new(opts, 16);
    let inbox = format!("users/{}/rpc/answers", alice.id);
    // Both answer topics are subscribed before anything is asked.
    client.subscribe(&inbox, Qos5::AtLeastOnce).await?;
    client
        .subscribe(format!("users/{}/replies", alice.id), Qos5::AtLeastOnce)
        .await?;
    let mut replies: Vec<(String, Value, Option<bytes::Bytes>)> = Vec::new();
    let mut subacks = 0;
    let deadline = tokio::time::Instant::now() + Duration::from_secs(15);
    while replies.len() < 2 && tokio::time::Instant::now() < deadline {
        match tokio::time::timeout(patient(Duration::from_secs(5)), events.poll()).await?? {
            Event::Incoming(Packet::SubAck(_)) => {
                subacks += 1;
                if subacks < 2 {
                    continue;
                }
                for (i, response_topic) in [inbox.clone(), format!("users/{}/rpc/answers", bob.id)]
                    .into_iter()
                    .enumerate()
                {
                    let props = PublishProperties {
                        response_topic: Some(response_topic),
                        correlation_data: Some(bytes::Bytes::from(format!("req-{i}"))),
                        ..Default::default()
                    };
                    let body = json!({"to": {"user": bob.id}, "client_msg_id": format!("v5-{i}"), "body": {"text": "rpc"}});
                    client
                        .publish_with_properties(
                            format!("users/{}/up/messages", alice.id),
                            Qos5::AtLeastOnce,
                            false,
                            body.to_string(),
                            props,
                        )
                        .await?;
                }
                // The second asked for bob's space; it is answered on
                // alice's replies.
            }
            Event::Incoming(Packet::Publish(p)) => {
                let topic = String::from_utf8(p.topic.to_vec())?;
                let corr = p.properties.and_then(|pr| pr.correlation_data);
                replies.push((topic, serde_json::from_slice(&p.payload)?, corr));
            }
            _ => {}
        }
    }
    if replies.len() < 2 {
        bail!("replies: {replies:?}");
    }
    let first = replies
        .iter()
        .find(|r| r.2.as_deref() == Some(b"req-0".as_slice()))
        .ok_or_else(|| anyhow!("{replies:?}"))?;
    assert_eq!(first.0, inbox);
    assert_eq!(first.1["status"], 201);
    let second = replies
        .iter()
        .find(|r| r.2.as_deref() == Some(b"req-1".as_slice()))
        .ok_or_else(|| anyhow!("{replies:?}"))?;
    assert_eq!(
        second.0,
        format!("users/{}/replies", alice.id),
        "never into another user's space"
    );
    Ok(())
}

/// The stock Debian clients: mosquitto_pub sends, mosquitto_sub reads the reply.
#[tokio::test]
async fn mosquitto_pub_can_send() -> Result<()> {
    if !mqchat_e2e::tool_available("mosquitto_pub", "mosquitto-clients")? {
        return Ok(());
    }
    let server = TestServer::start().await?;
    let alice = server.user("alice").await?;
    let bob = server.user("bob").await?;
    let port = server.mqtt.port().to_string();
    let id = alice.id.to_string();
    let sub = tokio::process::Command::new("mosquitto_sub")
        .args([
            "-h",
            "127.0.0.1",
            "-p",
            &port,
            "-u",
            &id,
            "-P",
            &alice.access_token,
        ])
        .args([
            "-t",
            &format!("users/{id}/replies"),
            "-q",
            "1",
            "-C",
            "1",
            "-W",
            "10",
        ])
        .stdout(Stdio::piped())
        .kill_on_drop(true)
        .spawn()?;
    let output = tokio::spawn(sub.wait_with_output());
    // Publish until the subscriber (whose SUBSCRIBE may still be in flight)
    // has seen a reply; the same client_msg_id keeps it one message.
    let send = json!({"to": {"user": bob.id}, "client_msg_id": "mosq-1", "body": {"text": "from mosquitto_pub"}});
    for _ in 0..30 {
        if output.is_finished() {
            break;
        }
        let status = tokio::process::Command::new("mosquitto_pub")
            .args([
                "-h",
                "127.0.0.1",
                "-p",
                &port,
                "-u",
                &id,
                "-P",
                &alice.access_token,
            ])
            .args([
                "-t",
                &format!("users/{id}/up/messages"),
                "-q",
                "1",
                "-m",
                &send.to_string(),
            ])
            .status()
            .await?;
        assert!(status.success(), "mosquitto_pub failed");
        tokio::time::sleep(Duration::from_millis(150)).await;
    }
    let output = tokio::time::timeout(patient(Duration::from_secs(5)), output).await???;
    let reply: Value = serde_json::from_slice(&output.stdout)?;
    assert!(reply["status"] == 201 || reply["status"] == 200, "{reply}");
    assert_eq!(reply["message"]["body"]["text"], "from mosquitto_pub");
    assert_eq!(bob.sync_all(0).await?.len(), 1);
    Ok(())
}

//! Several chatd nodes on one PostgreSQL database with NATS between them
//! (issue 23): pushes, presence and session ends cross nodes; NATS and
//! node failures cost delays, never acknowledged messages.
//!
//! Each test starts its own [`TestCluster`] (PostgreSQL, nats-server, 3
//! nodes) with short heartbeats and leases; skipped outside CI when
//! PostgreSQL or nats-server is missing.

use std::process::Stdio;
use std::time::Duration;

use anyhow::{anyhow, ensure, Result};
use mqchat_e2e::cluster::{wait_presence, TestCluster};
use mqchat_e2e::{eventually, TestServer, TestUser};
use mqchat_sdk::{Backoff, Client, Event, EventStream, StreamOptions, Transport};
use serde_json::{json, Value};

const WAIT: Duration = Duration::from_secs(10);

fn fast_reconnect() -> StreamOptions {
    StreamOptions::default().reconnect_backoff(Backoff::new(
        Duration::from_millis(100),
        Duration::from_millis(500),
    ))
}

/// Receives message events until `n` texts arrived; fails on a gap, a
/// duplicate or a stall.
async fn take(stream: &mut EventStream, n: usize) -> Result<Vec<String>> {
    let mut texts = Vec::new();
    let mut last = stream.last_cursor();
    while texts.len() < n {
        let event = tokio::time::timeout(Duration::from_secs(15), stream.recv())
            .await
            .map_err(|_| anyhow!("stream stalled after {} events", texts.len()))?
            .ok_or_else(|| anyhow!("stream ended"))??;
        if let Some(cursor) = event.cursor() {
            ensure!(cursor == last + 1, "cursor {cursor} after {last}");
            last = cursor;
        }
        if let Event::MessageCreated { message, .. } = event {
            texts.push(message.text().unwrap_or_default().to_owned());
        }
    }
    Ok(texts)
}

/// mosquitto_sub on `node` as `user`, exiting after `count` messages.
fn mosquitto_sub(
    node: &TestServer,
    user: &TestUser,
    count: usize,
) -> Result<tokio::process::Child> {
    Ok(tokio::process::Command::new("mosquitto_sub")
        .args(["-h", "127.0.0.1", "-p", &node.mqtt.port().to_string()])
        .args(["-u", &user.id.to_string(), "-P", &user.access_token])
        .args(["-t", &format!("users/{}/events", user.id), "-q", "1"])
        .args(["-C", &count.to_string(), "-W", "20"])
        .stdout(Stdio::piped())
        .kill_on_drop(true)
        .spawn()?)
}

/// The user's MQTT connections are subscribed on `node`.
async fn wait_subscribed(node: &TestServer, n: f64) -> Result<()> {
    eventually(WAIT, || async {
        Ok((node.metric("mqchat_mqtt_subscriptions").await? >= n).then_some(()))
    })
    .await
}

/// Alice sends over HTTP on node 1; Bob's mosquitto_sub and SDK stream on
/// node 3 both get every message, in order (mosquitto_sub never syncs: it
/// only sees pushes). Then a group spread over the 3 nodes.
#[tokio::test]
async fn pushes_cross_nodes_in_order() -> Result<()> {
    if !mqchat_e2e::tool_available("mosquitto_sub", "mosquitto-clients")? {
        return Ok(());
    }
    let Some(cluster) = TestCluster::start(3, &[]).await? else {
        return Ok(());
    };
    cluster.wait_formed().await?;
    let [n1, n2, n3] = [&cluster.nodes[0], &cluster.nodes[1], &cluster.nodes[2]];
    let alice = n1.user("alice").await?;
    let bob = n3.user("bob").await?;

    let sub = mosquitto_sub(n3, &bob, 20)?;
    let output = tokio::spawn(sub.wait_with_output());
    wait_subscribed(n3, 1.0).await?;
    wait_presence(&bob.via(n1), bob.id, true).await?;
    let sdk = Client::login(&n3.url(""), "bob", "password-bob").await?;
    let mut stream = sdk.connect(Transport::Tcp(n3.mqtt.to_string()), fast_reconnect())?;

    let texts: Vec<String> = (0..20).map(|i| format!("m{i}")).collect();
    for (i, text) in texts.iter().enumerate() {
        let (s, m) = alice.send_text(bob.id, &format!("c{i}"), text).await?;
        ensure!(s == 201, "send: {s} {m}");
    }
    let output = tokio::time::timeout(Duration::from_secs(20), output).await???;
    ensure!(output.status.success(), "mosquitto_sub: {output:?}");
    let pushed: Vec<String> = String::from_utf8(output.stdout)?
        .lines()
        .map(|l| {
            let v: Value = serde_json::from_str(l).unwrap_or_default();
            v["message"]["body"]["text"]
                .as_str()
                .unwrap_or_default()
                .to_owned()
        })
        .collect();
    assert_eq!(pushed, texts, "pushed across nodes, in order");
    assert_eq!(take(&mut stream, 20).await?, texts);

    // A group: members on nodes 1, 2 and 3, the sender on node 2.
    let carol = n2.user("carol").await?;
    let dave = n1.user("dave").await?;
    let mut rx = Vec::new();
    for (node, user) in [(n3, &bob), (n2, &carol), (n1, &dave)] {
        rx.push(node.mqtt(user).await?);
    }
    for user in [&bob, &carol, &dave] {
        wait_presence(&user.via(n2), user.id, true).await?;
    }
    let (s, group) = alice
        .via(n2)
        .post(
            "/v1/groups",
            &json!({"name": "spread", "members": [bob.id, carol.id, dave.id]}),
        )
        .await?;
    ensure!(s == 201, "{group}");
    let gid = group["id"].as_u64().unwrap_or(0);
    for i in 0..5 {
        let (s, m) = alice
            .via(n2)
            .send_group(gid, &format!("g{i}"), &format!("g{i}"))
            .await?;
        ensure!(s == 201, "{m}");
    }
    for r in &mut rx {
        let mut got = Vec::new();
        while got.len() < 5 {
            let e = r
                .next_of_type("message.created", WAIT)
                .await?
                .ok_or_else(|| anyhow!("group message missing after {got:?}"))?;
            if e["message"]["kind"] != "system" {
                got.push(
                    e["message"]["body"]["text"]
                        .as_str()
                        .unwrap_or_default()
                        .to_owned(),
                );
            }
        }
        assert_eq!(got, ["g0", "g1", "g2", "g3", "g4"]);
    }
    Ok(())
}

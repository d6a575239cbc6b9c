//! A cluster behind HAProxy (issue 23): `docker/haproxy.cfg`, the file
//! docker/compose.cluster.yaml uses, run by Debian's haproxy on loopback in
//! front of 3 chatd nodes on one PostgreSQL and one NATS. Through the
//! balancer: HTTP register, login and send; MQTT over TCP and over
//! WebSocket connect and receive; then a node is SIGKILLed and every new
//! call and connection through the balancer still works, served by the
//! others.

use std::collections::BTreeSet;
use std::time::Duration;

use anyhow::{ensure, Context, Result};
use mqchat_e2e::cluster::TestCluster;
use mqchat_e2e::haproxy::TestHaproxy;
use mqchat_e2e::{Accounts, Mqtt, TestUser};

const WAIT: Duration = Duration::from_secs(10);

/// The next `message.created` on `mqtt`, with `text`.
async fn receives(mqtt: &mut Mqtt, text: &str) -> Result<()> {
    let event = mqtt
        .next_of_type("message.created", WAIT)
        .await?
        .with_context(|| format!("no message.created for {text:?}"))?;
    ensure!(event["message"]["body"]["text"] == text, "{event}");
    Ok(())
}

async fn send(from: &TestUser, to: u64, id: &str) -> Result<()> {
    let (status, m) = from.send_text(to, id, id).await?;
    ensure!(status == 200 || status == 201, "send {id}: {status} {m}");
    Ok(())
}

#[tokio::test]
async fn http_and_mqtt_through_haproxy_and_a_node_lost_behind_it() -> Result<()> {
    let Some(mut cluster) = TestCluster::start(3, &[]).await? else {
        return Ok(());
    };
    cluster.wait_formed().await?;
    let nodes: Vec<_> = cluster.nodes.iter().map(|n| (n.http, n.mqtt)).collect();
    let Some(lb) = TestHaproxy::start(&nodes).await? else {
        return Ok(());
    };
    let accounts = Accounts::at(&lb.url(""));
    let alice = accounts.user("alice").await?;
    let bob = accounts.user("bob").await?;

    // Bob over TCP and over WebSocket, both through the balancer (on
    // whichever nodes it picked); alice's send lands on any node.
    let mut bob_tcp = Mqtt::own_space_tcp(lb.mqtt, &bob).await?;
    let mut bob_ws = Mqtt::own_space_ws(lb.http, &bob).await?;
    send(&alice, bob.id, "hello-1").await?;
    receives(&mut bob_tcp, "hello-1").await?;
    receives(&mut bob_ws, "hello-1").await?;

    // Calls are spread: several requests reach more than one node.
    for i in 0..6 {
        let (status, _) = alice.get("/v1/me").await?;
        ensure!(status == 200, "call {i}: {status}");
    }
    // haproxy logs each request with the server that answered it.
    let served: BTreeSet<usize> = (1..=3)
        .filter(|i| lb.log().contains(&format!("chatd_http/node{i} ")))
        .collect();
    ensure!(
        served.len() >= 2,
        "only nodes {served:?} served requests:\n{}",
        lb.log()
    );

    // Node 1 dies. Every call and new connection through the balancer
    // from now on works: a connection to the dead node is retried on
    // another at once, and the health check soon takes it out.
    cluster.kill9(0).await?;
    for i in 0..10 {
        let user = accounts.login("bob", "password-bob").await?;
        let (status, v) = user.get("/v1/me").await?;
        ensure!(status == 200, "call {i} after the kill: {status} {v}");
    }
    let bob = accounts.login("bob", "password-bob").await?;
    let mut tcp = Vec::new();
    let mut ws = Vec::new();
    for _ in 0..3 {
        tcp.push(Mqtt::own_space_tcp(lb.mqtt, &bob).await?);
        ws.push(Mqtt::own_space_ws(lb.http, &bob).await?);
    }
    send(&alice, bob.id, "hello-2").await?;
    for m in tcp.iter_mut().chain(ws.iter_mut()) {
        receives(m, "hello-2").await?;
    }
    Ok(())
}

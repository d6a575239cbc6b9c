//! A cluster behind HAProxy (issue 23): `docker/haproxy.cfg`, the file
//! docker/compose.cluster.yaml uses, run by Debian's haproxy on loopback in
//! front of 3 chatd nodes on one PostgreSQL and one NATS. Through the
//! balancer: HTTP register, login and send; MQTT over TCP and over
//! WebSocket connect and receive; then a node is SIGKILLed and every new
//! call and connection through the balancer still works, served by the
//! others. The balancer opens every connection to a node with a PROXY v2
//! header, and the nodes trust it: per-address limits count each client's
//! own address.

use std::collections::BTreeSet;
use std::net::IpAddr;
use std::time::Duration;

use anyhow::{ensure, Context, Result};
use mqchat_e2e::cluster::TestCluster;
use mqchat_e2e::haproxy::{self, TestHaproxy};
use mqchat_e2e::{Accounts, Mqtt, TestUser};
use serde_json::json;

const WAIT: Duration = Duration::from_secs(10);

/// The nodes trust the balancer's PROXY headers (and only the balancer's:
/// the test's direct calls to a node come from 127.0.0.1).
const TRUST_THE_BALANCER: [&str; 2] = ["--trusted-proxies", haproxy::SOURCE];

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
    let Some(mut cluster) = TestCluster::start(3, &TRUST_THE_BALANCER).await? else {
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

/// Registers `name` through the balancer from the loopback address `from`;
/// the status.
async fn register_from(lb: &TestHaproxy, from: IpAddr, name: &str) -> Result<u16> {
    let client = reqwest::Client::builder()
        .local_address(from)
        .timeout(WAIT)
        .build()?;
    let res = client
        .post(lb.url("/v1/auth/register"))
        .json(&json!({"username": name, "password": format!("password-{name}")}))
        .send()
        .await?;
    Ok(res.status().as_u16())
}

/// Behind the balancer every connection comes from 127.0.0.1, yet the
/// registration limit per address (prefix: /24) counts each client on its
/// own: the address the balancer's PROXY header carries. Two clients in
/// different /24s of loopback: the one past its budget gets 429, the
/// other still registers; then MQTT over TCP and over WebSocket through
/// the balancer connect as before.
#[tokio::test]
async fn per_address_limits_through_haproxy_count_each_client_on_its_own() -> Result<()> {
    let mut flags = TRUST_THE_BALANCER.to_vec();
    flags.extend(["--auth-ip-rate", "3"]);
    let Some(cluster) = TestCluster::start(2, &flags).await? else {
        return Ok(());
    };
    let nodes: Vec<_> = cluster.nodes.iter().map(|n| (n.http, n.mqtt)).collect();
    let Some(lb) = TestHaproxy::start(&nodes).await? else {
        return Ok(());
    };
    let (a, b): (IpAddr, IpAddr) = ([127, 0, 1, 1].into(), [127, 0, 2, 1].into());
    for i in 0..3 {
        let status = register_from(&lb, a, &format!("alice{i}")).await?;
        ensure!(status == 201, "alice{i} within the budget: {status}");
    }
    let status = register_from(&lb, a, "alice3").await?;
    ensure!(status == 429, "a past its budget: {status}\n{}", lb.log());
    let status = register_from(&lb, b, "bob0").await?;
    ensure!(
        status == 201,
        "b has a budget of its own: {status}\n{}",
        lb.log()
    );

    let accounts = Accounts::at(&lb.url(""));
    let alice = accounts.login("alice0", "password-alice0").await?;
    let bob = accounts.login("bob0", "password-bob0").await?;
    let mut bob_tcp = Mqtt::own_space_tcp(lb.mqtt, &bob).await?;
    let mut bob_ws = Mqtt::own_space_ws(lb.http, &bob).await?;
    send(&alice, bob.id, "through-proxy").await?;
    receives(&mut bob_tcp, "through-proxy").await?;
    receives(&mut bob_ws, "through-proxy").await?;
    Ok(())
}

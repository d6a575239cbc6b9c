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
use mqchat_e2e::sdk::fast_reconnect;
use mqchat_e2e::{eventually, Mqtt, Seen, TestServer, TestUser};
use mqchat_sdk::{Client, Event, EventStream, Transport};
use serde_json::{json, Value};

const WAIT: Duration = Duration::from_secs(10);

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

/// The next presence push for `user` within `wait`.
async fn presence_of(rx: &mut Mqtt, user: u64, wait: Duration) -> Result<Option<bool>> {
    let deadline = tokio::time::Instant::now() + wait;
    loop {
        let left = deadline.saturating_duration_since(tokio::time::Instant::now());
        match rx.next_on("presence", left).await? {
            Some(p) if p["user_id"] == user => return Ok(p["online"].as_bool()),
            Some(_) => {}
            None => return Ok(None),
        }
    }
}

/// Friends online, as `user`'s node sees them.
async fn online_friends(user: &TestUser) -> Result<Vec<u64>> {
    let (s, body) = user.get("/v1/friends/online").await?;
    ensure!(s == 200, "friends/online: {s} {body}");
    Ok(body["friends"]
        .as_array()
        .map(|f| f.iter().filter_map(|f| f["user"]["id"].as_u64()).collect())
        .unwrap_or_default())
}

/// Waits until `user`'s node lists exactly `want` as friends online (each
/// node's view follows the bus within milliseconds, not in lockstep with
/// the pushes).
async fn wait_online_friends(user: &TestUser, want: &[u64]) -> Result<()> {
    eventually(WAIT, || async {
        Ok((online_friends(user).await? == want).then_some(()))
    })
    .await
    .map_err(|e| anyhow!("friends online never {want:?}: {e}"))
}

/// A presence push crosses nodes once (not once per node), online while
/// any node holds a connection, offline once the last one anywhere closes;
/// `/v1/friends/online` agrees on every node.
#[tokio::test]
async fn presence_across_nodes() -> Result<()> {
    let Some(cluster) = TestCluster::start(3, &[]).await? else {
        return Ok(());
    };
    cluster.wait_formed().await?;
    let [n1, n2, n3] = [&cluster.nodes[0], &cluster.nodes[1], &cluster.nodes[2]];
    let alice = n1.user("alice").await?;
    let bob = n3.user("bob").await?;
    alice.befriend(&bob.via(n1)).await?;
    let mut alice_rx = n1.mqtt(&alice).await?;

    let bob_on_3 = n3.mqtt(&bob).await?;
    assert_eq!(presence_of(&mut alice_rx, bob.id, WAIT).await?, Some(true));
    for node in [n1, n2, n3] {
        wait_online_friends(&alice.via(node), &[bob.id]).await?;
    }
    // A second connection elsewhere, the first one closed: still online,
    // nobody is told anything.
    let bob_on_2 = n2.mqtt(&bob).await?;
    wait_presence(&bob.via(n3), bob.id, true).await?;
    drop(bob_on_3);
    assert_eq!(
        presence_of(&mut alice_rx, bob.id, Duration::from_millis(800)).await?,
        None,
        "no push while a connection stays open, and no duplicate online"
    );
    assert_eq!(online_friends(&alice.via(n3)).await?, vec![bob.id]);
    // The last one closes: one offline push after the debounce.
    drop(bob_on_2);
    assert_eq!(presence_of(&mut alice_rx, bob.id, WAIT).await?, Some(false));
    assert_eq!(
        presence_of(&mut alice_rx, bob.id, Duration::from_millis(800)).await?,
        None,
        "one offline push, not one per node"
    );
    for node in [n1, n2, n3] {
        wait_online_friends(&alice.via(node), &[]).await?;
    }
    Ok(())
}

/// Logout on node 2 closes Bob's connection on node 3, and his old token
/// is refused on every node; a client id connected on node 2 closes the
/// same user's connection with that id on node 1.
#[tokio::test]
async fn sessions_end_and_client_ids_move_across_nodes() -> Result<()> {
    let Some(cluster) = TestCluster::start(3, &[]).await? else {
        return Ok(());
    };
    cluster.wait_formed().await?;
    let [n1, n2, n3] = [&cluster.nodes[0], &cluster.nodes[1], &cluster.nodes[2]];
    let bob = n1.user("bob").await?;
    let mut on_3 = n3.mqtt(&bob).await?;
    wait_presence(&bob.via(n2), bob.id, true).await?;
    let (s, body) = bob.via(n2).post("/v1/auth/logout", &json!({})).await?;
    ensure!(s == 204 || s == 200, "logout: {s} {body}");
    on_3.wait_closed(WAIT).await?;
    // Node 3 reloaded its revocations before it closed the connection;
    // node 1 hears of the logout at the same time, and is as quick.
    for node in [n1, n2, n3] {
        eventually(WAIT, || async {
            let (s, _) = bob.via(node).get("/v1/me").await?;
            Ok((s == 401).then_some(()))
        })
        .await?;
        let refusal = node
            .mqtt_refusal(&bob.id.to_string(), &bob.access_token)
            .await?;
        ensure!(refusal.contains("refused"), "{refusal}");
    }

    // An operator's disconnect on node 1 closes connections on node 3.
    let dave = n1.user("dave").await?;
    let mut dave_on_3 = n3.mqtt(&dave).await?;
    wait_presence(&dave.via(n1), dave.id, true).await?;
    let (s, body) = n1
        .admin_post(&format!("/admin/users/{}/disconnect", dave.id), json!({}))
        .await?;
    ensure!(s == 200, "admin disconnect: {s} {body}");
    dave_on_3.wait_closed(WAIT).await?;

    let carol = n1.user("carol").await?;
    let mut phone_1 = connect_as(n1, &carol, "phone").await?;
    let mut laptop_1 = connect_as(n1, &carol, "laptop").await?;
    wait_presence(&carol.via(n2), carol.id, true).await?;
    let mut phone_2 = connect_as(n2, &carol, "phone").await?;
    phone_1.wait_closed(WAIT).await?;
    // The newer one and the other client id stay.
    for m in [&mut phone_2, &mut laptop_1] {
        let alive = m.next(Duration::from_millis(300)).await?;
        ensure!(!matches!(alive, Some(Seen::Error(_))), "closed: {alive:?}");
    }
    Ok(())
}

/// An MQTT connection with a chosen client id, subscribed to its own space.
async fn connect_as(node: &TestServer, user: &TestUser, client_id: &str) -> Result<Mqtt> {
    let mut opts = rumqttc::MqttOptions::new(client_id, "127.0.0.1", node.mqtt.port());
    opts.set_credentials(user.id.to_string(), user.access_token.clone());
    opts.set_keep_alive(Duration::from_secs(30));
    let mut m = Mqtt::connect(opts).await?;
    m.subscribe_ack(&format!("users/{}/#", user.id), rumqttc::QoS::AtLeastOnce)
        .await?;
    Ok(m)
}

/// No node lets a user read another user's events: subscribing to Bob's
/// topics is refused everywhere, and Eve's own connections on every node
/// get nothing of what is sent to Bob across the bus.
#[tokio::test]
async fn no_user_reads_another_users_events_through_any_node() -> Result<()> {
    let Some(cluster) = TestCluster::start(3, &[]).await? else {
        return Ok(());
    };
    cluster.wait_formed().await?;
    let alice = cluster.nodes[0].user("alice").await?;
    let bob = cluster.nodes[0].user("bob").await?;
    let eve = cluster.nodes[0].user("eve").await?;
    let mut bob_rx = cluster.nodes[2].mqtt(&bob).await?;
    let mut eve_rx = Vec::new();
    for node in &cluster.nodes {
        let mut m = node.mqtt(&eve).await?;
        for filter in [
            format!("users/{}/#", bob.id),
            "users/+/events".to_owned(),
            "#".to_owned(),
        ] {
            let codes = m.subscribe_ack(&filter, rumqttc::QoS::AtLeastOnce).await?;
            ensure!(
                codes == [rumqttc::SubscribeReasonCode::Failure],
                "{filter} on {}: {codes:?}",
                node.http
            );
        }
        eve_rx.push(m);
        let refusal = node
            .mqtt_refusal(&bob.id.to_string(), &eve.access_token)
            .await?;
        ensure!(refusal.contains("refused"), "eve as bob: {refusal}");
    }
    wait_presence(&bob.via(&cluster.nodes[1]), bob.id, true).await?;
    for (i, node) in cluster.nodes.iter().enumerate() {
        let (s, _) = alice
            .via(node)
            .send_text(bob.id, &format!("s{i}"), "for bob")
            .await?;
        assert_eq!(s, 201);
    }
    for _ in 0..3 {
        ensure!(
            bob_rx
                .next_of_type("message.created", WAIT)
                .await?
                .is_some(),
            "bob got his"
        );
    }
    for m in &mut eve_rx {
        let got = m.next_event(Duration::from_millis(300)).await?;
        assert_eq!(got, None, "eve got {got:?}");
    }
    Ok(())
}

/// What one recipient was acknowledged: `(sender tag, text)` in the order
/// each sender was answered.
type Acked = std::sync::Arc<std::sync::Mutex<Vec<String>>>;

/// Senders sending non-stop over HTTP until stopped, each acknowledged
/// text recorded for its recipient.
struct Load {
    stop: std::sync::Arc<std::sync::atomic::AtomicBool>,
    tasks: Vec<tokio::task::JoinHandle<Result<()>>>,
    acked: Vec<Acked>,
}

impl Load {
    /// Every sender sends to every recipient; texts are `{sender}-{to}-{k}`.
    fn start(senders: &[TestUser], recipients: &[&TestUser]) -> Load {
        let stop = std::sync::Arc::new(std::sync::atomic::AtomicBool::new(false));
        let acked: Vec<Acked> = recipients.iter().map(|_| Acked::default()).collect();
        let mut tasks = Vec::new();
        for (s, sender) in senders.iter().enumerate() {
            for (user, acked) in recipients.iter().zip(&acked) {
                let (sender, to, acked, stop) =
                    (sender.clone(), user.id, acked.clone(), stop.clone());
                tasks.push(tokio::spawn(async move {
                    let mut k = 0;
                    while !stop.load(std::sync::atomic::Ordering::Relaxed) {
                        let text = format!("{s}-{to}-{k}");
                        let (status, m) = sender.send_text(to, &text, &text).await?;
                        ensure!(status == 201, "send: {status} {m}");
                        acked.lock().map_err(|_| anyhow!("poisoned"))?.push(text);
                        k += 1;
                    }
                    Ok(())
                }));
            }
        }
        Load { stop, tasks, acked }
    }

    fn acked_total(&self) -> usize {
        self.acked
            .iter()
            .map(|a| a.lock().map_or(0, |a| a.len()))
            .sum()
    }

    /// Waits until `n` more sends than now were acknowledged.
    async fn wait_more(&self, n: usize) -> Result<()> {
        let target = self.acked_total() + n;
        eventually(WAIT, || async {
            Ok((self.acked_total() >= target).then_some(()))
        })
        .await
    }

    /// Stops the senders; returns what each recipient was acknowledged.
    async fn stop(self) -> Result<Vec<Vec<String>>> {
        self.stop.store(true, std::sync::atomic::Ordering::Relaxed);
        for t in self.tasks {
            t.await??;
        }
        self.acked
            .iter()
            .map(|a| Ok(a.lock().map_err(|_| anyhow!("poisoned"))?.clone()))
            .collect()
    }
}

/// The stream holds exactly `acked`: each once, cursors contiguous, each
/// sender's messages in the order it was answered, nothing trailing.
async fn expect_exactly(name: &str, stream: &mut EventStream, acked: &[String]) -> Result<()> {
    let got = take(stream, acked.len()).await?;
    let tag = |t: &String| t.split('-').next().unwrap_or_default().to_owned();
    let tags: std::collections::BTreeSet<String> = acked.iter().map(tag).collect();
    for s in &tags {
        let of =
            |v: &[String]| -> Vec<String> { v.iter().filter(|t| &tag(t) == s).cloned().collect() };
        ensure!(
            of(&got) == of(acked),
            "{name}: sender {s}'s messages differ"
        );
    }
    ensure!(
        got.len() == acked.len(),
        "{name}: {} got, {} acked",
        got.len(),
        acked.len()
    );
    let extra = tokio::time::timeout(Duration::from_millis(300), stream.recv()).await;
    ensure!(extra.is_err(), "{name}: a duplicate trails: {extra:?}");
    Ok(())
}

/// NATS killed for 5 s under load: every send is still acknowledged
/// (committed), pushes on the sender's own node go on, `/healthz` says
/// degraded (still 200) and the bus gauge drops; once NATS is back, the SDK
/// streams on the other nodes hold every acknowledged message exactly once
/// and in order (the missed pushes are healed by sync).
#[tokio::test]
async fn nats_outage_under_load_loses_nothing() -> Result<()> {
    let Some(mut cluster) = TestCluster::start(3, &[]).await? else {
        return Ok(());
    };
    cluster.wait_formed().await?;
    let (n1, n2, n3) = (&cluster.nodes[0], &cluster.nodes[1], &cluster.nodes[2]);
    let alice = n1.user("alice").await?;
    let dave = n1.user("dave").await?;
    let mut recipients = Vec::new();
    for (name, node) in [("bob", n2), ("carol", n3)] {
        let user = node.user(name).await?;
        let sdk = Client::login(&node.url(""), name, &format!("password-{name}")).await?;
        let stream = sdk.connect(Transport::Tcp(node.mqtt.to_string()), fast_reconnect())?;
        wait_presence(&user.via(n1), user.id, true).await?;
        recipients.push((user, stream));
    }
    let mut dave_rx = n1.mqtt(&dave).await?;

    let load = Load::start(
        std::slice::from_ref(&alice),
        &recipients.iter().map(|r| &r.0).collect::<Vec<_>>(),
    );
    load.wait_more(20).await?;

    cluster.nats.stop().await?;
    let n1 = &cluster.nodes[0];
    eventually(WAIT, || async {
        let h = n1.health().await?;
        Ok((h["status"] == "degraded" && h["cluster"]["bus"] == "down").then_some(()))
    })
    .await?;
    assert_eq!(n1.metric("mqchat_cluster_bus_up").await?, 0.0);
    // Local pushes do not need the bus.
    let (s, _) = alice.send_text(dave.id, "local", "local").await?;
    assert_eq!(s, 201);
    ensure!(
        dave_rx
            .next_of_type("message.created", WAIT)
            .await?
            .is_some(),
        "a push on the sender's own node during the outage"
    );
    let before = load.acked_total();
    tokio::time::sleep(Duration::from_secs(5)).await;
    ensure!(
        load.acked_total() > before,
        "sends kept committing without NATS"
    );

    cluster.nats.resume().await?;
    cluster.wait_formed().await?;
    let mut acked = load.stop().await?;
    // One more each after the bus is back: its push shows the gap.
    for ((user, _), acked) in recipients.iter().zip(&mut acked) {
        let text = format!("0-after-{}", user.id);
        let (s, _) = alice.send_text(user.id, &text, &text).await?;
        assert_eq!(s, 201);
        acked.push(text);
    }
    for ((user, stream), acked) in recipients.iter_mut().zip(&acked) {
        expect_exactly(&user.name, stream, acked).await?;
    }
    Ok(())
}

/// A node killed with SIGKILL says no goodbye: friends on the other nodes
/// are told its users went offline once its lease runs out (lease +
/// heartbeat + presence debounce), by one node only. Restarted, it joins
/// again.
#[tokio::test]
async fn a_killed_node_takes_its_users_offline_within_its_lease() -> Result<()> {
    let Some(mut cluster) = TestCluster::start(3, &[]).await? else {
        return Ok(());
    };
    cluster.wait_formed().await?;
    let alice = cluster.nodes[0].user("alice").await?;
    let bob = cluster.nodes[0].user("bob").await?;
    alice.befriend(&bob).await?;
    let mut alice_rx = cluster.nodes[0].mqtt(&alice).await?;
    let bob_rx = cluster.nodes[2].mqtt(&bob).await?;
    assert_eq!(presence_of(&mut alice_rx, bob.id, WAIT).await?, Some(true));

    let killed = tokio::time::Instant::now();
    cluster.kill9(2).await?;
    drop(bob_rx);
    assert_eq!(presence_of(&mut alice_rx, bob.id, WAIT).await?, Some(false));
    // FAST_TIMINGS: lease 600 ms + heartbeat 100 ms + debounce 300 ms,
    // and room for a loaded machine (without leases it never comes).
    let bound = Duration::from_millis(600 + 100 + 300 + 1500);
    ensure!(
        killed.elapsed() <= bound,
        "offline after {:?}",
        killed.elapsed()
    );
    assert_eq!(
        presence_of(&mut alice_rx, bob.id, Duration::from_millis(800)).await?,
        None,
        "announced by one surviving node only"
    );
    wait_online_friends(&alice.via(&cluster.nodes[1]), &[]).await?;

    cluster.restart(2).await?;
    cluster.wait_formed().await?;
    let _bob_rx = cluster.nodes[2].mqtt(&bob).await?;
    assert_eq!(presence_of(&mut alice_rx, bob.id, WAIT).await?, Some(true));
    Ok(())
}

/// Two nodes commit for one user at the same time: the user's node
/// delivers in cursor order (mosquitto_sub only sees pushes, never syncs).
#[tokio::test]
async fn concurrent_commits_on_two_nodes_arrive_in_cursor_order() -> Result<()> {
    if !mqchat_e2e::tool_available("mosquitto_sub", "mosquitto-clients")? {
        return Ok(());
    }
    let Some(cluster) = TestCluster::start(3, &[]).await? else {
        return Ok(());
    };
    cluster.wait_formed().await?;
    let [n1, n2, n3] = [&cluster.nodes[0], &cluster.nodes[1], &cluster.nodes[2]];
    let bob = n3.user("bob").await?;
    const EACH: usize = 40;
    let sub = mosquitto_sub(n3, &bob, 2 * EACH)?;
    let output = tokio::spawn(sub.wait_with_output());
    wait_subscribed(n3, 1.0).await?;
    let mut senders = Vec::new();
    for (name, node) in [("alice", n1), ("carol", n2)] {
        let user = node.user(name).await?;
        wait_presence(&bob.via(node), bob.id, true).await?;
        let to = bob.id;
        senders.push(tokio::spawn(async move {
            for i in 0..EACH {
                let (s, m) = user.send_text(to, &format!("{i}"), &format!("{i}")).await?;
                ensure!(s == 201, "{m}");
            }
            Ok::<_, anyhow::Error>(())
        }));
    }
    for s in senders {
        s.await??;
    }
    let output = tokio::time::timeout(Duration::from_secs(20), output).await???;
    ensure!(output.status.success(), "mosquitto_sub: {output:?}");
    let cursors: Vec<u64> = String::from_utf8(output.stdout)?
        .lines()
        .filter_map(|l| serde_json::from_str::<Value>(l).ok()?["cursor"].as_u64())
        .collect();
    let expected: Vec<u64> = (1..=(2 * EACH) as u64).collect();
    assert_eq!(cursors, expected, "every push once, in cursor order");
    Ok(())
}

/// A cluster node serves the metrics docs/metrics.md lists under "Cluster
/// nodes only", with their HELP texts; the bus gauge says up.
#[tokio::test]
async fn a_cluster_nodes_scrape_has_the_cluster_metrics() -> Result<()> {
    let Some(cluster) = TestCluster::start(2, &[]).await? else {
        return Ok(());
    };
    cluster.wait_formed().await?;
    let text = cluster.nodes[0].scrape_metrics().await?;
    let doc = std::fs::read_to_string(concat!(env!("CARGO_MANIFEST_DIR"), "/../docs/metrics.md"))?;
    let section = doc
        .split("## Cluster nodes only")
        .nth(1)
        .and_then(|s| s.split("\n## ").next())
        .ok_or_else(|| anyhow!("no cluster section in docs/metrics.md"))?;
    let mut listed = 0;
    for row in section.lines().filter(|l| l.starts_with("| `mqchat_")) {
        let cells: Vec<&str> = row.trim_matches('|').split('|').map(str::trim).collect();
        let name = cells[0].trim_matches('`');
        let help = format!("# HELP {name} {}", cells[3]);
        ensure!(
            text.contains(&help),
            "{name}: not served with its HELP text\n{text}"
        );
        listed += 1;
    }
    ensure!(listed >= 8, "only {listed} cluster metrics listed");
    assert_eq!(cluster.nodes[0].metric("mqchat_cluster_bus_up").await?, 1.0);
    // Set on each heartbeat.
    eventually(WAIT, || async {
        Ok((cluster.nodes[0].metric("mqchat_cluster_nodes").await? == 2.0).then_some(()))
    })
    .await?;
    Ok(())
}

/// A node SIGKILLed under load: the SDK streams on it reconnect to the
/// other nodes (`Client::connect_any`) and sync; every send acknowledged
/// (by the two surviving nodes, non-stop) reaches every stream exactly once
/// and in order, including a stream that never moved.
#[tokio::test]
async fn a_node_killed_under_load_its_sdk_streams_continue_elsewhere() -> Result<()> {
    let Some(mut cluster) = TestCluster::start(3, &[]).await? else {
        return Ok(());
    };
    cluster.wait_formed().await?;
    let (n1, n2, n3) = (&cluster.nodes[0], &cluster.nodes[1], &cluster.nodes[2]);
    let senders: Vec<TestUser> = vec![n1.user("alice").await?, n2.user("erin").await?];
    // Bob and Carol stream from node 3 first, Dave from node 2.
    let mut recipients = Vec::new();
    for (name, order) in [
        ("bob", [n3, n2, n1]),
        ("carol", [n3, n1, n2]),
        ("dave", [n2, n1, n3]),
    ] {
        let user = n1.user(name).await?;
        let sdk = Client::builder(order[0].url(""))
            .fallback(order[1].url(""))
            .login(name, &format!("password-{name}"))
            .await?;
        let nodes = order.map(|n| Transport::Tcp(n.mqtt.to_string()));
        let stream = sdk.connect_any(nodes, fast_reconnect())?;
        wait_presence(&user.via(n1), user.id, true).await?;
        recipients.push((user, stream));
    }

    let load = Load::start(
        &senders,
        &recipients.iter().map(|r| &r.0).collect::<Vec<_>>(),
    );
    load.wait_more(30).await?;
    cluster.kill9(2).await?;
    load.wait_more(60).await?;
    let acked = load.stop().await?;
    for ((user, stream), acked) in recipients.iter_mut().zip(&acked) {
        expect_exactly(&user.name, stream, acked).await?;
    }
    Ok(())
}

/// A will published on one node reaches the user's own connections on the
/// other nodes too, and nobody else's.
#[tokio::test]
async fn a_will_reaches_the_users_connections_on_every_node() -> Result<()> {
    let Some(cluster) = TestCluster::start(2, &[]).await? else {
        return Ok(());
    };
    cluster.wait_formed().await?;
    let (n1, n2) = (&cluster.nodes[0], &cluster.nodes[1]);
    let bob = n1.user("bob").await?;
    let eve = n1.user("eve").await?;
    let mut watcher = connect_as(n2, &bob, "watcher").await?;
    let mut eves = connect_as(n2, &eve, "eve").await?;
    // Node 1 knows Bob is connected on node 2.
    wait_presence(&bob.via(n1), bob.id, true).await?;

    let topic = format!("users/{}/up/status", bob.id);
    let mut opts = rumqttc::MqttOptions::new("sensor", "127.0.0.1", n1.mqtt.port());
    opts.set_credentials(bob.id.to_string(), bob.access_token.clone());
    opts.set_last_will(rumqttc::LastWill::new(
        &topic,
        r#"{"gone":true}"#,
        rumqttc::QoS::AtLeastOnce,
        false,
    ));
    let sensor = Mqtt::connect(opts).await?;
    // Dropped without a DISCONNECT: the will is published on node 1.
    drop(sensor);
    let deadline = tokio::time::Instant::now() + mqchat_e2e::patient(WAIT);
    loop {
        let left = deadline.saturating_duration_since(tokio::time::Instant::now());
        match watcher.next(left).await? {
            Some(Seen::Publish { topic: t, payload }) if t == topic => {
                ensure!(payload == json!({"gone": true}), "will payload: {payload}");
                break;
            }
            Some(_) => continue,
            None => return Err(anyhow!("the will did not reach node 2")),
        }
    }
    let heard = eves.next(Duration::from_millis(500)).await?;
    ensure!(heard.is_none(), "eve heard {heard:?}");
    Ok(())
}

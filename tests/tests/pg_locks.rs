//! PostgreSQL: what the write transactions of several chatd processes
//! lock (issue 22, "unrelated conversations never wait for each other"):
//!
//! - a transaction outside chatd holding conversation A's row lock holds
//!   up sends to A, while a send to an unrelated conversation B, on
//!   another node, completes;
//! - two nodes sending at once to overlapping groups and direct
//!   conversations (some created by the first send, mid-load): every send
//!   answered 2xx once, seqs and inbox cursors gap-free, and no deadlock
//!   (`40P01`) nor failed group commit on either node.

use std::collections::HashMap;
use std::path::Path;
use std::time::Duration;

use anyhow::{bail, ensure, Context, Result};
use mqchat_e2e::postgres::{node_flags, TestPostgres};
use mqchat_e2e::{eventually, TestServer, TestUser};
use serde_json::json;

/// Two chatd nodes on one database, sharing the token secret.
async fn two_nodes(url: &str, dir: &Path) -> Result<(TestServer, TestServer)> {
    let (dir_a, dir_b) = (dir.join("a"), dir.join("b"));
    let a = TestServer::start_in(&dir_a, &node_flags(url)).await?;
    std::fs::create_dir_all(&dir_b)?;
    std::fs::copy(dir_a.join("jwt.secret"), dir_b.join("jwt.secret"))?;
    let b = TestServer::start_in(&dir_b, &node_flags(url)).await?;
    Ok((a, b))
}

/// A first message from `from` to `to`; returns the conversation's id.
async fn direct(from: &TestUser, to: &TestUser) -> Result<u64> {
    let (s, v) = from
        .send_text(to.id, &format!("hello-{}-{}", from.id, to.id), "hello")
        .await?;
    ensure!(s == 201, "first message: {s} {v}");
    v["conversation_id"].as_u64().context("conversation_id")
}

/// Backends of chatd's waiting for a lock, from outside.
async fn waiting_on_locks(sql: &tokio_postgres::Client) -> Result<i64> {
    let row = sql
        .query_one(
            "SELECT count(*) FROM pg_stat_activity
             WHERE application_name = 'chatd' AND wait_event_type = 'Lock'",
            &[],
        )
        .await?;
    Ok(row.get(0))
}

async fn connect(pg: &TestPostgres) -> Result<tokio_postgres::Client> {
    let (client, connection) = tokio_postgres::connect(
        &format!("{} application_name=outside", pg_conninfo(pg)),
        tokio_postgres::NoTls,
    )
    .await?;
    tokio::spawn(connection);
    Ok(client)
}

/// A transaction outside chatd holding a conversation's row lock, as a
/// writer takes it, until it rolls back.
async fn lock_conversation(
    sql: &mut tokio_postgres::Client,
    conversation: u64,
) -> Result<tokio_postgres::Transaction<'_>> {
    let outside = sql.transaction().await?;
    outside
        .execute(
            "SELECT id FROM conversations WHERE id = $1 FOR UPDATE",
            &[&(conversation as i64)],
        )
        .await?;
    Ok(outside)
}

/// The cluster as key-value connection settings (so another
/// `application_name` can follow).
fn pg_conninfo(pg: &TestPostgres) -> String {
    format!(
        "host=127.0.0.1 port={} user={} dbname={}",
        pg.port(),
        mqchat_e2e::postgres::USER,
        mqchat_e2e::postgres::DATABASE
    )
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_locked_conversation_holds_up_only_its_own_sends() -> Result<()> {
    let Some(pg) = TestPostgres::init().await? else {
        return Ok(());
    };
    let tmp = tempfile::tempdir()?;
    let (a, b) = two_nodes(&pg.url(), tmp.path()).await?;
    let alice = a.user("alice").await?;
    let bob = a.user("bob").await?;
    let carol = b.user("carol").await?;
    let dave = b.user("dave").await?;
    let conversation_a = direct(&alice, &bob).await?;
    direct(&carol, &dave).await?;

    // Outside chatd: conversation A's row, locked as a writer would.
    let mut sql = connect(&pg).await?;
    let outside = lock_conversation(&mut sql, conversation_a).await?;

    // A send to A, on node a, waits for that lock...
    let to_a = tokio::spawn(async move { alice.send_text(bob.id, "to-a", "waits").await });
    let watcher = connect(&pg).await?;
    eventually(Duration::from_secs(5), || async {
        Ok((waiting_on_locks(&watcher).await? > 0).then_some(()))
    })
    .await
    .context("the send to A never waited for its conversation's lock")?;

    // ...while a send to B, on node b, does not: well within the
    // statement timeout (10 s) that would end node a's wait otherwise.
    let (s, v) = tokio::time::timeout(
        Duration::from_secs(3),
        carol.send_text(dave.id, "to-b", "goes"),
    )
    .await
    .context("a send to an unrelated conversation waited for A's lock")??;
    ensure!(s == 201, "send to B: {s} {v}");
    ensure!(
        !to_a.is_finished(),
        "the send to A did not wait for A's lock"
    );

    // Once the lock goes, the send to A completes.
    outside.rollback().await?;
    let (s, v) = tokio::time::timeout(Duration::from_secs(5), to_a)
        .await
        .context("the send to A never completed")???;
    ensure!(s == 201, "send to A: {s} {v}");
    ensure!(v["seq"] == 2, "send to A: {v}");
    Ok(())
}

const USERS: usize = 12;
const SENDS: usize = 40;

/// Each user sends `SENDS` messages, going round its targets, answered
/// once each (no retry: a failed send fails the test).
async fn send_round(user: TestUser, targets: Vec<(bool, u64)>) -> Result<Vec<(u64, u64)>> {
    let mut acked = Vec::with_capacity(SENDS);
    for k in 0..SENDS {
        let (group, to) = targets[k % targets.len()];
        let id = format!("{}-{k}", user.name);
        let (s, v) = if group {
            user.send_group(to, &id, "hi").await?
        } else {
            user.send_text(to, &id, "hi").await?
        };
        if s != 201 {
            bail!("{id} to {to}: {s} {v}");
        }
        acked.push((
            v["conversation_id"].as_u64().context("conversation_id")?,
            v["seq"].as_u64().context("seq")?,
        ));
    }
    Ok(acked)
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn two_nodes_sending_to_overlapping_conversations_never_deadlock() -> Result<()> {
    let Some(pg) = TestPostgres::init().await? else {
        return Ok(());
    };
    let tmp = tempfile::tempdir()?;
    let (a, b) = two_nodes(&pg.url(), tmp.path()).await?;
    let names: Vec<String> = (0..USERS).map(|i| format!("user{i}")).collect();
    let users = a.accounts().users(&names, 4).await?;
    // Three groups, each overlapping the next, and all sharing two users.
    let mut groups = Vec::new();
    for g in 0..3 {
        let owner = &users[g * 3];
        let mut members: Vec<u64> = users[g * 3..g * 3 + 6].iter().map(|u| u.id).collect();
        members.extend([users[0].id, users[USERS - 1].id]);
        members.sort_unstable();
        members.dedup();
        let others: Vec<u64> = members.iter().copied().filter(|&m| m != owner.id).collect();
        let (s, v) = owner
            .post(
                "/v1/groups",
                &json!({"name": format!("g{g}"), "members": others}),
            )
            .await?;
        ensure!(s == 201, "group: {s} {v}");
        groups.push((v["id"].as_u64().context("group id")?, members));
    }
    // Half the users send through node b: the same accounts, signed in there.
    let mut tasks = tokio::task::JoinSet::new();
    for (i, user) in users.iter().enumerate() {
        let user = if i % 2 == 1 {
            b.login(&user.name, &format!("password-{}", user.name))
                .await?
        } else {
            user.clone()
        };
        // Its groups, and direct messages to the users on both sides of it
        // and across the ring (created by the first send, under load).
        let mut targets: Vec<(bool, u64)> = groups
            .iter()
            .filter(|(_, members)| members.contains(&user.id))
            .map(|(g, _)| (true, *g))
            .collect();
        for d in [1, USERS - 1, USERS / 2] {
            targets.push((false, users[(i + d) % USERS].id));
        }
        tasks.spawn(send_round(user, targets));
    }
    let mut by_conversation: HashMap<u64, Vec<u64>> = HashMap::new();
    while let Some(r) = tasks.join_next().await {
        for (conversation, seq) in r?? {
            by_conversation.entry(conversation).or_default().push(seq);
        }
    }

    // Seqs: each conversation's answered seqs are 1..=n (the groups' own
    // system messages come first), each once.
    for (conversation, seqs) in &mut by_conversation {
        seqs.sort_unstable();
        let first = seqs[0];
        let expected: Vec<u64> = (first..first + seqs.len() as u64).collect();
        ensure!(
            *seqs == expected,
            "conversation {conversation}: seqs {seqs:?}"
        );
    }
    // Cursors: every user's inbox is 1..=n.
    for user in &users {
        let events = user.sync_all(0).await?;
        let cursors: Vec<u64> = events.iter().filter_map(|e| e["cursor"].as_u64()).collect();
        let expected: Vec<u64> = (1..=cursors.len() as u64).collect();
        ensure!(
            cursors == expected,
            "{}: inbox cursors not 1..=n",
            user.name
        );
    }
    // No group commit failed, and nothing deadlocked, on either node.
    for (node, name) in [(&a, "a"), (&b, "b")] {
        let failures = node.metric("mqchat_store_commit_failures_total").await?;
        ensure!(
            failures == 0.0,
            "node {name}: {failures} group commits failed"
        );
        let logs = node.logs();
        let deadlocks: Vec<&String> = logs.iter().filter(|l| l.contains("deadlock")).collect();
        ensure!(deadlocks.is_empty(), "node {name}: {deadlocks:?}");
    }
    let log = pg.log();
    ensure!(!log.contains("deadlock detected"), "PostgreSQL: {log}");
    eprintln!(
        "{} sends by 2 nodes to {} conversations, gap-free, no deadlock",
        USERS * SENDS,
        by_conversation.len()
    );
    Ok(())
}

/// A text message from the batch's sender to a user.
fn text_to(user: u64, id: &str) -> serde_json::Value {
    json!({"to": {"user": user}, "client_msg_id": id, "body": {"text": id}})
}

/// A group commit holding many sends runs them as one batch (two
/// statements for all, `store::Batch`), and each still gets the answer it
/// would get alone: stored ones 201 in order with gap-free seqs and
/// cursors, resends (of a message stored before, or of a send earlier in
/// the group, even one whose checks now fail) 200 with the original, and
/// refused ones their own error, stopping nothing. The sends are held
/// behind a row lock taken outside chatd, so they queue up and commit in
/// one or two groups; together they cost fewer round trips than sends.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_group_of_sends_runs_as_one_batch_with_each_answer_its_own() -> Result<()> {
    let Some(pg) = TestPostgres::init().await? else {
        return Ok(());
    };
    let tmp = tempfile::tempdir()?;
    let node = TestServer::start_in(tmp.path(), &node_flags(&pg.url())).await?;
    let alice = node.user("alice").await?;
    let bob = node.user("bob").await?;
    let carol = node.user("carol").await?;
    let dave = node.user("dave").await?;
    let erin = node.user("erin").await?;
    let (s, v) = alice
        .post("/v1/groups", &json!({"name": "ours", "members": [bob.id]}))
        .await?;
    ensure!(s == 201, "group: {s} {v}");
    let ours = v["id"].as_u64().context("group id")?;
    let (s, v) = bob
        .post(
            "/v1/groups",
            &json!({"name": "theirs", "members": [carol.id]}),
        )
        .await?;
    ensure!(s == 201, "group: {s} {v}");
    let theirs = v["id"].as_u64().context("group id")?;
    let (s, earlier) = alice.send_text(bob.id, "earlier", "before").await?;
    ensure!(s == 201, "earlier: {s} {earlier}");
    let conversation = earlier["conversation_id"]
        .as_u64()
        .context("conversation")?;
    direct(&alice, &carol).await?;
    direct(&alice, &dave).await?;
    let (s, v) = dave
        .post("/v1/blocks", &json!({"user_id": alice.id}))
        .await?;
    ensure!(s == 200 || s == 201 || s == 204, "block: {s} {v}");

    // Conversation A's row, locked as a writer would, holds up the batch's
    // first send, and the rest queue behind it.
    let mut sql = connect(&pg).await?;
    let outside = lock_conversation(&mut sql, conversation).await?;
    let mut sends = vec![
        text_to(bob.id, "x1"),
        text_to(bob.id, "earlier"),
        text_to(carol.id, "x2"),
        text_to(dave.id, "x3"),
        text_to(bob.id, "x1"),
        text_to(999_999, "x4"),
        json!({"to": {"group": theirs}, "client_msg_id": "x5", "body": {"text": "x5"}}),
        json!({"to": {"group": ours}, "client_msg_id": "x6", "body": {"text": "x6"}}),
        text_to(dave.id, "x7"),
        text_to(bob.id, "x7"),
        text_to(dave.id, "earlier"),
        text_to(dave.id, "x2"),
        text_to(erin.id, "x8"),
        json!({"to": {"user": bob.id}, "client_msg_id": "x9",
               "body": {"file": {"id": "0123456789abcdef0123456789abcdef"}}}),
    ];
    let mut expected: Vec<u64> = vec![
        201, 200, 201, 404, 200, 404, 404, 201, 404, 201, 200, 200, 201, 400,
    ];
    for k in 0..40 {
        let to = if k % 2 == 0 { bob.id } else { carol.id };
        sends.push(text_to(to, &format!("bulk-{k}")));
        expected.push(201);
    }
    let trips_before = node.metric("mqchat_store_round_trips_total").await?;
    let sender = alice.clone();
    let body = json!({ "messages": sends });
    let batch = tokio::spawn(async move { sender.post("/v1/messages/batch", &body).await });
    let watcher = connect(&pg).await?;
    eventually(Duration::from_secs(5), || async {
        Ok((waiting_on_locks(&watcher).await? > 0).then_some(()))
    })
    .await
    .context("the batch never waited for conversation A's lock")?;
    outside.rollback().await?;
    let (s, answer) = tokio::time::timeout(Duration::from_secs(10), batch)
        .await
        .context("the batch never completed")???;
    ensure!(s == 200, "batch: {s} {answer}");
    let results = answer["results"].as_array().cloned().unwrap_or_default();
    let statuses: Vec<u64> = results
        .iter()
        .map(|r| r["status"].as_u64().unwrap_or(0))
        .collect();
    ensure!(statuses == expected, "statuses {statuses:?}: {answer}");
    let id_of = |at: usize| results[at]["message"]["id"].as_u64();
    ensure!(id_of(1) == earlier["id"].as_u64(), "a resend: {answer}");
    ensure!(id_of(4) == id_of(0), "a resend within the group: {answer}");
    ensure!(
        id_of(10) == earlier["id"].as_u64(),
        "a resend whose checks now fail: {answer}"
    );
    ensure!(
        id_of(11) == id_of(2),
        "a resend, within the group, of a send to someone else: {answer}"
    );
    ensure!(
        results[3]["error"]["code"] == "not_found"
            && results[13]["error"]["code"] == "invalid_request",
        "refusals: {answer}"
    );

    // Alice's messages to Bob: the earlier one, then the batch's, in order.
    let to_bob: Vec<&serde_json::Value> = results
        .iter()
        .filter(|r| r["status"] == 201 && r["message"]["to"]["user"] == bob.id)
        .map(|r| &r["message"])
        .collect();
    let seqs: Vec<u64> = to_bob.iter().filter_map(|m| m["seq"].as_u64()).collect();
    let first = earlier["seq"].as_u64().context("seq")? + 1;
    let gap_free: Vec<u64> = (first..first + seqs.len() as u64).collect();
    ensure!(seqs == gap_free, "seqs to bob {seqs:?}");
    for user in [&alice, &bob, &carol, &erin] {
        let events = user.sync_all(0).await?;
        let cursors: Vec<u64> = events.iter().filter_map(|e| e["cursor"].as_u64()).collect();
        let expected: Vec<u64> = (1..=cursors.len() as u64).collect();
        ensure!(cursors == expected, "{}: cursors {cursors:?}", user.name);
    }
    let stored: Vec<u64> = bob
        .sync_all(0)
        .await?
        .iter()
        .filter(|e| {
            e["type"] == "message.created" && e["message"]["conversation_id"] == conversation
        })
        .filter_map(|e| e["message"]["seq"].as_u64())
        .collect();
    ensure!(
        stored.ends_with(&seqs),
        "bob's inbox {stored:?} against {seqs:?}"
    );

    let trips = node.metric("mqchat_store_round_trips_total").await? - trips_before;
    ensure!(
        trips > 0.0 && trips < expected.len() as f64,
        "{trips} round trips for {} sends",
        expected.len()
    );
    eprintln!("{} sends in {trips} round trips", expected.len());
    let failures = node.metric("mqchat_store_commit_failures_total").await?;
    ensure!(failures == 0.0, "{failures} group commits failed");
    Ok(())
}

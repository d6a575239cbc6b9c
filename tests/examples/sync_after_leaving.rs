//! What serving former members their messages as they left them costs
//! sync (RELIABILITY.md, "The store"): a group with 10,000 of Alice's
//! messages; Eve leaves, then Alice edits 100 of them. Prints the time to
//! sync the whole backlog (median of 5) for Bob, still a member, and for
//! Eve, whose edited messages come from their earlier versions.
//!
//! `cargo build --bin chatd && cargo run -p mqchat-e2e --example sync_after_leaving`
//! (`CHATD_BIN` picks another chatd to compare).

use std::time::{Duration, Instant};

use anyhow::{ensure, Result};
use mqchat_e2e::{TestServer, TestUser};
use serde_json::json;

const MESSAGES: usize = 10_000;
const EDITED: usize = 100;

/// Median time of 5 full syncs, and the number of events.
async fn sync_time(user: &TestUser) -> Result<(Duration, usize)> {
    let mut times = Vec::new();
    let mut events = 0;
    for _ in 0..5 {
        let started = Instant::now();
        events = user.sync_all(0).await?.len();
        times.push(started.elapsed());
    }
    times.sort();
    Ok((times[2], events))
}

#[tokio::main]
async fn main() -> Result<()> {
    let server = TestServer::start_with(&["--send-rate", "0"]).await?;
    let alice = server.user("alice").await?;
    let bob = server.user("bob").await?;
    let eve = server.user("eve").await?;
    let (s, g) = alice
        .post(
            "/v1/groups",
            &json!({"name": "g", "members": [bob.id, eve.id]}),
        )
        .await?;
    ensure!(s == 201, "{s} {g}");
    let gid = g["id"].as_u64().unwrap_or(0);
    let mut ids = Vec::new();
    for b in 0..MESSAGES / 100 {
        let sends: Vec<_> = (0..100)
            .map(|i| json!({"to": {"group": gid}, "client_msg_id": format!("{b}-{i}"), "body": {"text": format!("note {b} {i}")}}))
            .collect();
        let (s, r) = alice
            .post("/v1/messages/batch", &json!({ "messages": sends }))
            .await?;
        ensure!(s == 200, "{s} {r}");
        for result in r["results"].as_array().into_iter().flatten() {
            ids.push(result["message"]["id"].as_u64().unwrap_or(0));
        }
    }
    let (s, r) = eve
        .post(&format!("/v1/groups/{gid}/leave"), &json!({}))
        .await?;
    ensure!(s == 200 || s == 204, "{s} {r}");
    for id in ids.iter().step_by(MESSAGES / EDITED) {
        let (s, r) = alice
            .patch(
                &format!("/v1/messages/{id}"),
                &json!({"body": {"text": "edited after eve left"}}),
            )
            .await?;
        ensure!(s == 200, "{s} {r}");
    }
    for (who, user) in [("bob (member)", &bob), ("eve (left)", &eve)] {
        let (took, events) = sync_time(user).await?;
        println!(
            "{who:>13}: {events} events synced in {:.1} ms (median of 5)",
            took.as_secs_f64() * 1000.0
        );
    }
    Ok(())
}

//! Search against the writer; what former members may still see.

use anyhow::{anyhow, ensure, Result};
use mqchat_e2e::{TestServer, TestUser};
use serde_json::{json, Value};

fn ids(found: &Value) -> Vec<u64> {
    found["messages"]
        .as_array()
        .map(|ms| ms.iter().filter_map(|m| m["id"].as_u64()).collect())
        .unwrap_or_default()
}

/// Searches run on readers alone: 16 users searching in parallel queue no
/// job on the single writer (each search queued one, to move staged text
/// into the index), and still find every message answered before them,
/// indexed or not yet.
#[tokio::test]
async fn searches_queue_nothing_on_the_writer_and_find_every_answered_send() -> Result<()> {
    let server = TestServer::start().await?;
    let alice = server.user("alice").await?;
    let mut searchers = Vec::new();
    for i in 0..16 {
        searchers.push(server.user(&format!("searcher{i}")).await?);
    }
    // One message to each, the last ones not indexed yet (fewer than a
    // batch were sent).
    let mut sent = Vec::new();
    for (i, s) in searchers.iter().enumerate() {
        let (status, m) = alice
            .send_text(s.id, &format!("m{i}"), &format!("zebra crossing {i}"))
            .await?;
        ensure!(status == 201, "{status} {m}");
        sent.push(m["id"].as_u64().ok_or_else(|| anyhow!("no id in {m}"))?);
    }
    let before = server.metric("mqchat_store_commit_jobs_sum").await?;
    let mut tasks = tokio::task::JoinSet::new();
    for (s, id) in searchers.into_iter().zip(sent) {
        tasks.spawn(async move {
            for _ in 0..8 {
                let (status, found) = s.get("/v1/search?q=zebra").await?;
                ensure!(status == 200, "{status} {found}");
                ensure!(
                    ids(&found) == vec![id],
                    "{} expected [{id}]: {found}",
                    s.name
                );
            }
            Ok::<_, anyhow::Error>(())
        });
    }
    while let Some(r) = tasks.join_next().await {
        r??;
    }
    let jobs = server.metric("mqchat_store_commit_jobs_sum").await? - before;
    assert_eq!(jobs, 0.0, "128 searches queued {jobs} writer jobs");

    // Read-your-writes without the writer: a send answered is found by the
    // very next search, and an edit likewise.
    let bob = server.user("bob").await?;
    for i in 0..5 {
        let (_, m) = alice
            .send_text(bob.id, &format!("b{i}"), &format!("okapi{i} sighted"))
            .await?;
        let (_, found) = bob.get(&format!("/v1/search?q=okapi{i}")).await?;
        assert_eq!(ids(&found), vec![m["id"].as_u64().unwrap_or(0)], "{found}");
    }
    Ok(())
}

/// How a member stops being one.
#[derive(Clone, Copy, Debug)]
enum Departure {
    Leave,
    Removed,
    Dissolved,
}

/// The `message.created` event of `id` in `user`'s inbox: (text, edited_at).
async fn synced(user: &TestUser, id: u64) -> Result<(Value, Value)> {
    let events = user.sync_all(0).await?;
    let event = events
        .iter()
        .find(|e| e["type"] == "message.created" && e["message"]["id"] == id)
        .ok_or_else(|| anyhow!("{}: no message.created for {id}", user.name))?;
    Ok((
        event["message"]["body"]["text"].clone(),
        event["message"]["edited_at"].clone(),
    ))
}

/// Neither `user`'s history of `conv` nor their search shows `word`.
async fn history_and_search_hide(user: &TestUser, conv: u64, word: &str) -> Result<()> {
    let (_, h) = user
        .get(&format!("/v1/conversations/{conv}/messages"))
        .await?;
    ensure!(!h.to_string().contains(word), "history shows {word}: {h}");
    let (_, found) = user.get(&format!("/v1/search?q={word}")).await?;
    ensure!(ids(&found).is_empty(), "search finds {word}: {found}");
    Ok(())
}

/// Eve saw Alice's message, edited once, then stopped being a member; what
/// Alice does to it afterwards never reaches her: sync serves it as Eve
/// last saw it, history and search show her nothing of it. Bob, still a
/// member, sees the edit.
async fn former_member_sees_the_message_as_it_was(how: Departure) -> Result<()> {
    let server = TestServer::start().await?;
    let alice = server.user("alice").await?;
    let bob = server.user("bob").await?;
    let eve = server.user("eve").await?;
    let (s, g) = alice
        .post(
            "/v1/groups",
            &json!({"name": "deal", "members": [bob.id, eve.id]}),
        )
        .await?;
    ensure!(s == 201, "{s} {g}");
    let gid = g["id"].as_u64().unwrap_or(0);
    let conv = g["conversation_id"].as_u64().unwrap_or(0);
    let (s, m) = alice.send_group(gid, "plan", "lunch on friday").await?;
    ensure!(s == 201, "{s} {m}");
    let id = m["id"].as_u64().unwrap_or(0);
    let edit = |text: &'static str| {
        let alice = &alice;
        async move {
            alice
                .patch(
                    &format!("/v1/messages/{id}"),
                    &json!({"body": {"text": text}}),
                )
                .await
        }
    };
    let (s, seen) = edit("lunch on saturday").await?;
    ensure!(s == 200, "{s} {seen}");
    let seen_at = seen["edited_at"].clone();
    assert_eq!(
        synced(&eve, id).await?,
        (json!("lunch on saturday"), seen_at.clone())
    );

    let (s, r) = match how {
        Departure::Leave => {
            eve.post(&format!("/v1/groups/{gid}/leave"), &json!({}))
                .await?
        }
        Departure::Removed => {
            alice
                .delete(&format!("/v1/groups/{gid}/members/{}", eve.id))
                .await?
        }
        Departure::Dissolved => alice.delete(&format!("/v1/groups/{gid}")).await?,
    };
    ensure!(s == 200 || s == 204, "{how:?}: {s} {r}");

    let (s, r) = edit("acquire globex for 4.2bn").await?;
    match how {
        // Nobody is a member of a dissolved group: nothing can change.
        Departure::Dissolved => assert_eq!(s, 404, "{r}"),
        _ => {
            assert_eq!(s, 200, "{r}");
            assert_eq!(synced(&bob, id).await?.0, json!("acquire globex for 4.2bn"));
        }
    }

    assert_eq!(
        synced(&eve, id).await?,
        (json!("lunch on saturday"), seen_at.clone()),
        "{how:?}: sync serves the message as eve last saw it"
    );
    history_and_search_hide(&eve, conv, "globex").await?;

    if let Departure::Dissolved = how {
        return Ok(());
    }
    // Back in the group: new messages yes, the old one still as she saw it,
    // in sync, history and search alike.
    let (s, r) = alice
        .post(
            &format!("/v1/groups/{gid}/members"),
            &json!({"user_ids": [eve.id]}),
        )
        .await?;
    ensure!(s == 200 || s == 201, "re-add: {s} {r}");
    let (s, r) = edit("acquire globex for 5bn").await?;
    ensure!(s == 200, "{s} {r}");
    assert_eq!(
        synced(&eve, id).await?,
        (json!("lunch on saturday"), seen_at),
        "{how:?}: rejoined, the old message stays as she saw it"
    );
    history_and_search_hide(&eve, conv, "globex").await?;

    // A recall after she left takes the content from her too.
    let (s, r) = alice
        .post(&format!("/v1/messages/{id}/recall"), &json!({}))
        .await?;
    ensure!(s == 200, "recall: {s} {r}");
    let (text, _) = synced(&eve, id).await?;
    assert_eq!(text, Value::Null, "{how:?}: a tombstone");
    Ok(())
}

#[tokio::test]
async fn a_member_who_left_never_sees_later_edits() -> Result<()> {
    former_member_sees_the_message_as_it_was(Departure::Leave).await
}

#[tokio::test]
async fn a_removed_member_never_sees_later_edits() -> Result<()> {
    former_member_sees_the_message_as_it_was(Departure::Removed).await
}

#[tokio::test]
async fn members_of_a_dissolved_group_keep_what_they_saw() -> Result<()> {
    former_member_sees_the_message_as_it_was(Departure::Dissolved).await
}

//! Groups: membership, roles, timeline system events, visibility rules.

use std::time::Duration;

use anyhow::Result;
use mqchat_e2e::TestServer;
use serde_json::{json, Value};

const WAIT: Duration = Duration::from_secs(2);

fn system_event(e: &Value) -> &str {
    e["message"]["body"]["system"]["event"]
        .as_str()
        .unwrap_or("")
}

#[tokio::test]
async fn group_lifecycle_and_visibility() -> Result<()> {
    let server = TestServer::start().await?;
    let owner = server.user("owner").await?;
    let amy = server.user("amy").await?;
    let ben = server.user("ben").await?;
    let late = server.user("late").await?;
    let eve = server.user("eve").await?;
    let mut amy_rx = server.mqtt(&amy).await?;
    let mut ben_rx = server.mqtt(&ben).await?;

    let (s, group) = owner
        .post(
            "/v1/groups",
            &json!({"name": "team", "members": [amy.id, ben.id]}),
        )
        .await?;
    assert_eq!(s, 201, "{group}");
    let gid = group["id"].as_u64().unwrap_or(0);
    let conv = group["conversation_id"].as_u64().unwrap_or(0);
    assert_eq!(
        group["members"][0],
        json!({"user_id": owner.id, "role": "owner"})
    );
    let created = amy_rx
        .next_of_type("message.created", WAIT)
        .await?
        .expect("amy told");
    assert_eq!(system_event(&created), "created");
    assert_eq!(created["message"]["to"], json!({"group": gid}));
    assert_eq!(created["message"]["kind"], "system");
    let ben_created = ben_rx
        .next_of_type("message.created", WAIT)
        .await?
        .expect("ben told");
    assert_eq!(ben_created["message"], created["message"]);

    // A message reaches every member, on each member's own topic.
    let (s, m) = amy.send_group(gid, "g1", "hello team").await?;
    assert_eq!(s, 201);
    assert_eq!(m["seq"], 2, "the creation event took seq 1");
    assert_eq!(
        ben_rx
            .next_of_type("message.created", WAIT)
            .await?
            .expect("ben")["message"],
        m
    );
    assert_eq!(
        amy_rx
            .next_of_type("message.created", WAIT)
            .await?
            .expect("amy's echo")["message"],
        m
    );

    // Non-members can neither send nor read, and can't tell the group exists.
    let (s, body) = eve.send_group(gid, "e1", "let me in").await?;
    assert_eq!(
        (s, body["error"]["code"].as_str()),
        (404, Some("not_found"))
    );
    let (s, _) = eve
        .get(&format!("/v1/conversations/{conv}/messages"))
        .await?;
    assert_eq!(s, 404);
    let (s, _) = eve.get(&format!("/v1/groups/{gid}")).await?;
    assert_eq!(s, 404);

    // Plain members can't add; the owner makes amy an admin, who can.
    let (s, _) = ben
        .post(
            &format!("/v1/groups/{gid}/members"),
            &json!({"user_ids": [late.id]}),
        )
        .await?;
    assert_eq!(s, 403);
    let (s, _) = owner
        .put(
            &format!("/v1/groups/{gid}/members/{}/role", amy.id),
            &json!({"role": "admin"}),
        )
        .await?;
    assert_eq!(s, 200);
    let (s, g) = amy
        .post(
            &format!("/v1/groups/{gid}/members"),
            &json!({"user_ids": [late.id]}),
        )
        .await?;
    assert_eq!(s, 200, "{g}");
    // A member added later sees nothing from before joining.
    let (_, history) = late
        .get(&format!("/v1/conversations/{conv}/messages"))
        .await?;
    let none = vec![];
    let events: Vec<&str> = history["messages"]
        .as_array()
        .unwrap_or(&none)
        .iter()
        .map(|m| m["body"]["system"]["event"].as_str().unwrap_or("text"))
        .collect();
    assert_eq!(events, ["member_added"], "late sees only its own addition");
    let (_, late_sync) = late.get("/v1/sync?after=0").await?;
    assert_eq!(late_sync["events"].as_array().map(Vec::len), Some(1));

    // Rename shows up in the timeline, in order with messages.
    let (s, _) = ben
        .patch(&format!("/v1/groups/{gid}"), &json!({"name": "x"}))
        .await?;
    assert_eq!(s, 403, "members can't rename");
    let (s, renamed) = amy
        .patch(&format!("/v1/groups/{gid}"), &json!({"name": "the team"}))
        .await?;
    assert_eq!((s, renamed["name"].as_str()), (200, Some("the team")));
    amy.send_group(gid, "g2", "after rename").await?;

    // Removing ben: his last event is his removal; nothing after reaches him.
    let (s, _) = amy
        .delete(&format!("/v1/groups/{gid}/members/{}", ben.id))
        .await?;
    assert_eq!(s, 204);
    owner.send_group(gid, "g3", "ben is gone").await?;
    let ben_events = ben.sync_all(0).await?;
    let last = ben_events.last().expect("ben has events");
    assert_eq!(system_event(last), "member_removed");
    assert!(ben_events
        .iter()
        .all(|e| e["message"]["body"]["text"] != "ben is gone"));
    let (s, _) = ben.send_group(gid, "b9", "still here?").await?;
    assert_eq!(s, 404);
    let (s, _) = ben
        .get(&format!("/v1/conversations/{conv}/messages"))
        .await?;
    assert_eq!(s, 404);

    // The whole timeline, as the owner sees it: gap-free, system events in order.
    let (_, history) = owner
        .get(&format!("/v1/conversations/{conv}/messages?limit=100"))
        .await?;
    let timeline: Vec<(u64, String)> = history["messages"]
        .as_array()
        .unwrap_or(&vec![])
        .iter()
        .map(|m| {
            let label = m["body"]["system"]["event"].as_str().map_or_else(
                || m["body"]["text"].as_str().unwrap_or("").to_owned(),
                str::to_owned,
            );
            (m["seq"].as_u64().unwrap_or(0), label)
        })
        .collect();
    let labels: Vec<&str> = timeline.iter().map(|(_, l)| l.as_str()).collect();
    assert_eq!(
        labels,
        [
            "created",
            "hello team",
            "role_changed",
            "member_added",
            "renamed",
            "after rename",
            "member_removed",
            "ben is gone"
        ]
    );
    let seqs: Vec<u64> = timeline.iter().map(|(s, _)| *s).collect();
    assert_eq!(seqs, (1..=8).collect::<Vec<_>>());

    // The owner can't just leave; transfer first, then leave.
    let (s, _) = owner
        .post(&format!("/v1/groups/{gid}/leave"), &json!({}))
        .await?;
    assert_eq!(s, 409);
    let (s, g) = owner
        .post(
            &format!("/v1/groups/{gid}/transfer"),
            &json!({"user_id": amy.id}),
        )
        .await?;
    assert_eq!((s, g["owner_id"].as_u64()), (200, Some(amy.id)));
    let (s, _) = owner
        .post(&format!("/v1/groups/{gid}/leave"), &json!({}))
        .await?;
    assert_eq!(s, 204);
    let (_, mine) = owner.get("/v1/groups").await?;
    assert_eq!(mine["groups"], json!([]));

    // Dissolve: everyone is told, then nobody is a member.
    let (s, _) = late.delete(&format!("/v1/groups/{gid}")).await?;
    assert_eq!(s, 403);
    let (s, _) = amy.delete(&format!("/v1/groups/{gid}")).await?;
    assert_eq!(s, 204);
    assert_eq!(
        system_event(late.sync_all(0).await?.last().expect("events")),
        "dissolved"
    );
    let (s, _) = late.send_group(gid, "l1", "hello?").await?;
    assert_eq!(s, 404);
    Ok(())
}

#[tokio::test]
async fn group_size_limit_and_blocked_invitees() -> Result<()> {
    let tmp = tempfile::tempdir()?;
    let server = TestServer::start_in(&tmp.path().join("d"), &["--max-group-size", "3"]).await?;
    let owner = server.user("owner").await?;
    let a = server.user("aaa").await?;
    let b = server.user("bbb").await?;
    let c = server.user("ccc").await?;
    let (s, _) = owner
        .post(
            "/v1/groups",
            &json!({"name": "big", "members": [a.id, b.id, c.id]}),
        )
        .await?;
    assert_eq!(s, 400, "4 members > 3");
    let (s, g) = owner
        .post(
            "/v1/groups",
            &json!({"name": "ok", "members": [a.id, b.id]}),
        )
        .await?;
    assert_eq!(s, 201);
    let gid = g["id"].as_u64().unwrap_or(0);
    let (s, _) = owner
        .post(
            &format!("/v1/groups/{gid}/members"),
            &json!({"user_ids": [c.id]}),
        )
        .await?;
    assert_eq!(s, 409);
    // Someone who blocked you can't be pulled into your group (and it looks
    // like they don't exist).
    c.post("/v1/blocks", &json!({"user_id": owner.id})).await?;
    let (s, _) = owner
        .post("/v1/groups", &json!({"name": "sneaky", "members": [c.id]}))
        .await?;
    assert_eq!(s, 404);
    Ok(())
}

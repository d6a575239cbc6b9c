//! Store parity: one scripted session, run against a chatd on SQLite and a
//! chatd on PostgreSQL, gives the same answers, ids, tokens and timestamps
//! aside (issue 22). The script calls every route of the HTTP API that
//! touches the store: registering, signing in, refresh rotation and reuse,
//! logout, profiles, presence, friends (requests accepted, rejected,
//! cancelled; unfriend; blocks and unblocks), groups with roles,
//! invitations accepted and declined, a transfer, a removal, a departure
//! and a dissolution, direct, group and batch sends with duplicates and
//! refusals, edit, recall, delete-for-me, reactions, pins, conversation
//! settings, typing, read markers and unread
//! counts, history, sync and receipts, search, files, and the admin API
//! (users, passwords, disconnects, services and their keys, webhooks,
//! file cleanup). Every answer and every user's whole event stream
//! (`/v1/sync`) is compared, so each event type the script causes is
//! compared too.

use anyhow::{bail, Result};
use mqchat_e2e::postgres::TestPostgres;
use mqchat_e2e::TestServer;
use serde_json::{json, Value};

/// One chatd's answers, in script order.
#[derive(Default)]
struct Transcript {
    steps: Vec<(String, u16, Value)>,
}

impl Transcript {
    fn note(&mut self, label: &str, (status, body): (u16, Value)) -> Value {
        self.steps.push((label.to_owned(), status, mask(&body)));
        body
    }
}

/// Replaces what legitimately differs between two runs: ids (numbers and
/// file ids), tokens and times.
fn mask(v: &Value) -> Value {
    fn masked_key(k: &str) -> bool {
        k == "id"
            || k.ends_with("_id")
            || k.ends_with("_ids")
            || k.ends_with("_at")
            || k.ends_with("_token")
            || matches!(k, "key" | "secret")
            || matches!(
                k,
                "since" | "last_seen" | "until" | "user" | "group" | "peer"
            )
    }
    match v {
        Value::Object(map) => Value::Object(
            map.iter()
                .map(|(k, v)| {
                    let v = if masked_key(k) && !v.is_object() {
                        match v {
                            Value::Null => Value::Null,
                            Value::Array(a) => {
                                Value::Array(a.iter().map(|_| json!("<x>")).collect())
                            }
                            _ => json!("<x>"),
                        }
                    } else {
                        mask(v)
                    };
                    (k.clone(), v)
                })
                .collect(),
        ),
        Value::Array(a) => Value::Array(a.iter().map(mask).collect()),
        other => other.clone(),
    }
}

/// A POST without a token; the status and the JSON answer.
async fn anonymous(server: &TestServer, path: &str, body: &Value) -> Result<(u16, Value)> {
    let res = server
        .http_client
        .post(server.url(path))
        .json(body)
        .send()
        .await?;
    let status = res.status().as_u16();
    Ok((status, res.json().await.unwrap_or(Value::Null)))
}

/// A login's status, and its answer without the tokens.
async fn login_status(server: &TestServer, name: &str, password: &str) -> Result<(u16, Value)> {
    let (status, v) = anonymous(
        server,
        "/v1/auth/login",
        &json!({"username": name, "password": password}),
    )
    .await?;
    Ok((status, v["user"].clone()))
}

fn admin_token(server: &TestServer) -> Result<String> {
    Ok(
        std::fs::read_to_string(server.data_dir().join("admin.token"))?
            .trim()
            .to_owned(),
    )
}

/// A GET on the admin API.
async fn admin_get(server: &TestServer, path: &str) -> Result<(u16, Value)> {
    let res = server
        .http_client
        .get(server.url(path))
        .bearer_auth(admin_token(server)?)
        .send()
        .await?;
    let status = res.status().as_u16();
    Ok((status, res.json().await.unwrap_or(Value::Null)))
}

/// The id of `user`'s first pending group invitation (an error if none:
/// the script expects one).
async fn first_invitation(user: &mqchat_e2e::TestUser) -> Result<u64> {
    let (status, v) = user.get("/v1/groups/invitations").await?;
    match v["invitations"][0]["id"].as_u64() {
        Some(id) if status == 200 => Ok(id),
        _ => bail!("no pending invitation for {}: {status} {v}", user.name),
    }
}

fn id(v: &Value) -> Result<u64> {
    match v["id"].as_u64() {
        Some(id) => Ok(id),
        None => bail!("no id in {v}"),
    }
}

async fn script(server: &TestServer) -> Result<Transcript> {
    let mut t = Transcript::default();
    let alice = server.user("alice").await?;
    let bob = server.user("bob").await?;
    let carol = server.user("carol").await?;
    let dave = server.user("dave").await?;
    t.note("me", alice.get("/v1/me").await?);
    t.note(
        "profile",
        alice
            .patch("/v1/me", &json!({"display_name": "Alice A."}))
            .await?,
    );
    t.note("user by name", bob.get("/v1/users?username=ALICE").await?);
    let res = server
        .http_client
        .post(server.url("/v1/auth/register"))
        .json(&json!({"username": "Alice", "password": "password-x"}))
        .send()
        .await?;
    let status = res.status().as_u16();
    t.note("register taken (any case)", (status, res.json().await?));

    // Friends: accepted, rejected, cancelled, removed; a block.
    let req = t.note(
        "request bob",
        alice
            .post(
                "/v1/friends/requests",
                &json!({"user_id": bob.id, "note": "hi"}),
            )
            .await?,
    );
    t.note(
        "incoming",
        bob.get("/v1/friends/requests?direction=incoming").await?,
    );
    t.note(
        "accept",
        bob.post(
            &format!("/v1/friends/requests/{}/accept", id(&req)?),
            &json!({}),
        )
        .await?,
    );
    let req = t.note(
        "request carol",
        alice
            .post("/v1/friends/requests", &json!({"user_id": carol.id}))
            .await?,
    );
    t.note(
        "reject",
        carol
            .post(
                &format!("/v1/friends/requests/{}/reject", id(&req)?),
                &json!({}),
            )
            .await?,
    );
    let req = t.note(
        "dave asks alice",
        dave.post("/v1/friends/requests", &json!({"user_id": alice.id}))
            .await?,
    );
    t.note(
        "cancel",
        dave.post(
            &format!("/v1/friends/requests/{}/cancel", id(&req)?),
            &json!({}),
        )
        .await?,
    );
    carol.befriend(&dave).await?;
    t.note(
        "unfriend",
        dave.delete(&format!("/v1/friends/{}", carol.id)).await?,
    );
    t.note(
        "block",
        carol
            .post("/v1/blocks", &json!({"user_id": dave.id}))
            .await?,
    );
    t.note(
        "blocked send",
        dave.send_text(carol.id, "d1", "hello?").await?,
    );
    t.note("blocks", carol.get("/v1/blocks").await?);
    t.note("friends", alice.get("/v1/friends").await?);

    // Direct messages: sends, a duplicate, edit, recall, delete for me.
    let m1 = t.note("dm 1", alice.send_text(bob.id, "a1", "hello bob").await?);
    let m2 = t.note(
        "dm 2",
        alice.send_text(bob.id, "a2", "second thought").await?,
    );
    let m3 = t.note(
        "dm 3",
        alice.send_text(bob.id, "a3", "apple pie recipe").await?,
    );
    t.note(
        "dm duplicate",
        alice.send_text(bob.id, "a1", "hello bob").await?,
    );
    t.note(
        "dm reply",
        bob.send_text(alice.id, "b1", "hello alice").await?,
    );
    t.note(
        "edit",
        alice
            .patch(
                &format!("/v1/messages/{}", id(&m1)?),
                &json!({"body": {"text": "hello bob, edited"}}),
            )
            .await?,
    );
    t.note(
        "recall",
        alice
            .post(&format!("/v1/messages/{}/recall", id(&m2)?), &json!({}))
            .await?,
    );
    t.note(
        "recall twice",
        alice
            .post(&format!("/v1/messages/{}/recall", id(&m2)?), &json!({}))
            .await?,
    );
    t.note(
        "delete for me",
        bob.delete(&format!("/v1/messages/{}", id(&m3)?)).await?,
    );
    t.note(
        "edit someone else's",
        bob.patch(
            &format!("/v1/messages/{}", id(&m1)?),
            &json!({"body": {"text": "x"}}),
        )
        .await?,
    );
    let conversation = m1["conversation_id"].as_u64().unwrap_or(0);
    // Reactions, pins and bob's own settings of the conversation.
    let reaction = |emoji: &str| format!("/v1/messages/{}/reactions/{emoji}", m1["id"]);
    t.note("react", bob.put(&reaction("👍"), &json!({})).await?);
    t.note("react again", bob.put(&reaction("👍"), &json!({})).await?);
    t.note(
        "react with words",
        bob.put(&reaction("nice"), &json!({})).await?,
    );
    t.note("alice reacts", alice.put(&reaction("❤"), &json!({})).await?);
    t.note("alice unreacts", alice.delete(&reaction("❤️")).await?);
    let pin = format!("/v1/conversations/{conversation}/pins/{}", id(&m1)?);
    t.note("pin", alice.put(&pin, &json!({})).await?);
    t.note(
        "pins",
        bob.get(&format!("/v1/conversations/{conversation}/pins"))
            .await?,
    );
    let settings = format!("/v1/conversations/{conversation}/settings");
    t.note(
        "mute and pin",
        bob.patch(
            &settings,
            &json!({"muted_until": "forever", "pinned": true}),
        )
        .await?,
    );
    t.note(
        "archive",
        bob.patch(&settings, &json!({"archived": true})).await?,
    );
    t.note(
        "archived conversations",
        bob.get("/v1/conversations?archived=true").await?,
    );
    t.note(
        "unarchive",
        bob.patch(&settings, &json!({"archived": false})).await?,
    );
    t.note("bob's conversations", bob.get("/v1/conversations").await?);
    t.note(
        "read",
        bob.post(
            &format!("/v1/conversations/{conversation}/read"),
            &json!({"seq": 2}),
        )
        .await?,
    );
    t.note(
        "bob's conversations after read",
        bob.get("/v1/conversations").await?,
    );
    t.note(
        "history",
        bob.get(&format!(
            "/v1/conversations/{conversation}/messages?limit=10"
        ))
        .await?,
    );
    t.note(
        "history page",
        alice
            .get(&format!(
                "/v1/conversations/{conversation}/messages?limit=2"
            ))
            .await?,
    );

    // A group with roles, an invitation and a departure.
    t.note(
        "carol: friends only",
        carol
            .patch("/v1/me", &json!({"group_add_policy": "friends"}))
            .await?,
    );
    let group = t.note(
        "create group",
        alice
            .post(
                "/v1/groups",
                &json!({"name": "team", "members": [bob.id, carol.id]}),
            )
            .await?,
    );
    let g = id(&group)?;
    t.note("invitations", carol.get("/v1/groups/invitations").await?);
    let invitation = first_invitation(&carol).await?;
    t.note(
        "accept invitation",
        carol
            .post(
                &format!("/v1/groups/invitations/{invitation}/accept"),
                &json!({}),
            )
            .await?,
    );
    t.note(
        "make bob admin",
        alice
            .put(
                &format!("/v1/groups/{g}/members/{}/role", bob.id),
                &json!({"role": "admin"}),
            )
            .await?,
    );
    t.note(
        "rename by admin",
        bob.patch(&format!("/v1/groups/{g}"), &json!({"name": "team 2"}))
            .await?,
    );
    t.note(
        "group send",
        alice.send_group(g, "g1", "welcome team").await?,
    );
    t.note(
        "group send 2",
        bob.send_group(g, "g2", "thanks apple").await?,
    );
    t.note(
        "add dave (admin)",
        bob.post(
            &format!("/v1/groups/{g}/members"),
            &json!({"user_ids": [dave.id]}),
        )
        .await?,
    );
    t.note("dave sends", dave.send_group(g, "d2", "hi all").await?);
    t.note(
        "carol leaves",
        carol
            .post(&format!("/v1/groups/{g}/leave"), &json!({}))
            .await?,
    );
    t.note(
        "carol sends after leaving",
        carol.send_group(g, "c9", "still here?").await?,
    );
    t.note("group", alice.get(&format!("/v1/groups/{g}")).await?);
    t.note("groups", dave.get("/v1/groups").await?);
    let gconv = group["conversation_id"].as_u64().unwrap_or(0);
    t.note(
        "group history",
        dave.get(&format!("/v1/conversations/{gconv}/messages?limit=10"))
            .await?,
    );
    t.note(
        "alice's conversations",
        alice.get("/v1/conversations").await?,
    );

    // Search: only what each user may see.
    for (who, user, q) in [
        ("alice", &alice, "hello"),
        ("bob", &bob, "apple"),
        ("carol", &carol, "apple"),
        ("dave", &dave, "welcome"),
        ("alice", &alice, "edited"),
        ("alice", &alice, "thought"),
    ] {
        t.note(
            &format!("search {who} {q}"),
            user.get(&format!("/v1/search?q={q}")).await?,
        );
    }

    // Files: upload, reference, read by the recipient, not by others.
    let res = alice
        .request(reqwest::Method::POST, "/v1/files?name=note.txt")
        .header("content-type", "text/plain")
        .body("a small attachment")
        .send()
        .await?;
    let status = res.status().as_u16();
    let file = t.note("upload", (status, res.json().await?));
    let file_id = file["id"].as_str().unwrap_or_default().to_owned();
    t.note(
        "send file",
        alice
            .post(
                "/v1/messages",
                &json!({"to": {"user": bob.id}, "client_msg_id": "f1", "body": {"file": {"id": file_id}}}),
            )
            .await?,
    );
    for (who, user) in [("bob", &bob), ("carol", &carol)] {
        let res = user
            .request(reqwest::Method::GET, &format!("/v1/files/{file_id}"))
            .send()
            .await?;
        let status = res.status().as_u16();
        let body = res.text().await?;
        t.note(
            &format!("download {who}"),
            (
                status,
                json!(if status == 200 { body } else { String::new() }),
            ),
        );
    }

    // The rest of the user routes: sessions, profiles, presence, typing,
    // batches, unblocking, and a second group taken apart.
    let second = server.login("alice", "password-alice").await?;
    let rotated = t.note(
        "refresh",
        anonymous(
            server,
            "/v1/auth/refresh",
            &json!({"refresh_token": second.refresh_token}),
        )
        .await?,
    );
    t.note(
        "refresh reused",
        anonymous(
            server,
            "/v1/auth/refresh",
            &json!({"refresh_token": second.refresh_token}),
        )
        .await?,
    );
    t.note(
        "refresh after reuse",
        anonymous(
            server,
            "/v1/auth/refresh",
            &json!({"refresh_token": rotated["refresh_token"]}),
        )
        .await?,
    );
    let third = server.login("dave", "password-dave").await?;
    t.note("logout", third.post("/v1/auth/logout", &json!({})).await?);
    t.note("after logout", third.get("/v1/me").await?);
    t.note(
        "user by id",
        alice.get(&format!("/v1/users/{}", bob.id)).await?,
    );
    t.note("friends online", alice.get("/v1/friends/online").await?);
    t.note(
        "presence",
        alice
            .get(&format!("/v1/presence?users={},{}", bob.id, carol.id))
            .await?,
    );
    t.note(
        "typing",
        alice
            .post(
                &format!("/v1/conversations/{conversation}/typing"),
                &json!({}),
            )
            .await?,
    );
    // Disappearing messages: a timer of an hour (nothing expires during
    // the script), a refusal, and off again.
    for ttl in [json!(3600), json!(2), json!(null)] {
        t.note(
            "message ttl",
            bob.patch(
                &format!("/v1/conversations/{conversation}"),
                &json!({"message_ttl_seconds": ttl}),
            )
            .await?,
        );
        if ttl == 3600 {
            t.note(
                "send with a ttl",
                alice.send_text(bob.id, "ttl-1", "soon gone").await?,
            );
        }
    }
    t.note(
        "batch",
        alice
            .post(
                "/v1/messages/batch",
                &json!({"messages": [
                    {"to": {"user": bob.id}, "client_msg_id": "b-1", "body": {"text": "one"}},
                    {"to": {"user": bob.id}, "client_msg_id": "a1", "body": {"text": "hello bob"}},
                    {"to": {"group": g}, "client_msg_id": "b-2", "body": {"text": "two"}},
                    {"to": {"user": 999_999}, "client_msg_id": "b-3", "body": {"text": "nobody"}},
                    {"to": {"user": bob.id}, "client_msg_id": "b-4", "body": {}},
                ]}),
            )
            .await?,
    );
    t.note(
        "unblock",
        carol.delete(&format!("/v1/blocks/{}", dave.id)).await?,
    );
    let other = t.note(
        "second group",
        bob.post(
            "/v1/groups",
            &json!({"name": "side", "members": [alice.id, carol.id, dave.id]}),
        )
        .await?,
    );
    let g2 = id(&other)?;
    let invitation = first_invitation(&carol).await?;
    t.note(
        "decline invitation",
        carol
            .post(
                &format!("/v1/groups/invitations/{invitation}/decline"),
                &json!({}),
            )
            .await?,
    );
    t.note(
        "transfer",
        bob.post(
            &format!("/v1/groups/{g2}/transfer"),
            &json!({"user_id": alice.id}),
        )
        .await?,
    );
    t.note(
        "remove member",
        alice
            .delete(&format!("/v1/groups/{g2}/members/{}", dave.id))
            .await?,
    );
    t.note(
        "side talk",
        bob.send_group(g2, "s1", "before the end").await?,
    );
    t.note(
        "dissolve by non-owner",
        bob.delete(&format!("/v1/groups/{g2}")).await?,
    );
    t.note("dissolve", alice.delete(&format!("/v1/groups/{g2}")).await?);
    t.note(
        "send to dissolved",
        bob.send_group(g2, "s2", "anyone?").await?,
    );

    // The admin API: accounts, connections, services, webhooks, files.
    let erin = t.note(
        "admin: create user",
        server
            .admin_post(
                "/admin/users",
                json!({"username": "erin", "password": "password-erin"}),
            )
            .await?,
    );
    let erin_id = id(&erin)?;
    t.note(
        "admin: password",
        server
            .admin_post(
                &format!("/admin/users/{erin_id}/password"),
                json!({"password": "password-new"}),
            )
            .await?,
    );
    t.note(
        "erin signs in",
        login_status(server, "erin", "password-new").await?,
    );
    t.note(
        "admin: disconnect",
        server
            .admin_post(&format!("/admin/users/{erin_id}/disconnect"), json!({}))
            .await?,
    );
    t.note("admin: online", admin_get(server, "/admin/online").await?);
    let service = t.note(
        "admin: service",
        server
            .admin_post(
                "/admin/services",
                json!({"username": "weather", "scopes": ["send"], "rate_per_sec": 0}),
            )
            .await?,
    );
    let key = service["key"].as_str().unwrap_or_default().to_owned();
    let res = server
        .http_client
        .post(server.url("/v1/messages"))
        .bearer_auth(&key)
        .json(&json!({"to": {"user": bob.id}, "client_msg_id": "w1", "body": {"text": "sunny"}}))
        .send()
        .await?;
    let status = res.status().as_u16();
    t.note("service sends", (status, res.json().await?));
    t.note(
        "admin: services",
        admin_get(server, "/admin/services").await?,
    );
    t.note(
        "admin: revoke key",
        server
            .admin_post(
                &format!(
                    "/admin/services/{}/revoke",
                    service["key_id"].as_u64().unwrap_or(0)
                ),
                json!({}),
            )
            .await?,
    );
    let hook = t.note(
        "admin: webhook",
        server
            .admin_post(
                "/admin/webhooks",
                json!({"url": "http://127.0.0.1:9/hook", "events": ["message.created"]}),
            )
            .await?,
    );
    t.note(
        "admin: webhooks",
        admin_get(server, "/admin/webhooks").await?,
    );
    let hook_id = id(&hook)?;
    let res = server
        .http_client
        .delete(server.url(&format!("/admin/webhooks/{hook_id}")))
        .bearer_auth(admin_token(server)?)
        .send()
        .await?;
    t.note(
        "admin: delete webhook",
        (res.status().as_u16(), Value::Null),
    );
    t.note(
        "admin: replay deleted webhook",
        server
            .admin_post(
                &format!("/admin/webhooks/{hook_id}/replay"),
                json!({"after": 0}),
            )
            .await?,
    );
    t.note(
        "admin: files cleanup",
        server
            .admin_post("/admin/files/cleanup", json!({"older_than_secs": 3600}))
            .await?,
    );

    // Receipts, then everyone's whole event stream.
    let head = bob.sync_all(0).await?.len();
    t.note(
        "ack",
        bob.post(
            "/v1/sync/ack",
            &json!({"device_id": "phone", "cursor": head}),
        )
        .await?,
    );
    for (who, user) in [
        ("alice", &alice),
        ("bob", &bob),
        ("carol", &carol),
        ("dave", &dave),
    ] {
        let events = user.sync_all(0).await?;
        t.note(&format!("sync {who}"), (200, json!(events)));
        t.note(
            &format!("sync page {who}"),
            user.get("/v1/sync?after=2&limit=3").await?,
        );
    }
    Ok(t)
}

#[tokio::test]
async fn one_session_gives_the_same_answers_on_sqlite_and_postgresql() -> Result<()> {
    let Some(pg) = TestPostgres::init().await? else {
        return Ok(());
    };
    let sqlite = TestServer::start_with(&["--store", "sqlite"]).await?;
    let postgres = TestServer::start_with(&["--store", &pg.url()]).await?;
    let a = script(&sqlite).await?;
    for (label, status, _) in &a.steps {
        eprintln!("sqlite: {status} {label}");
    }
    let b = script(&postgres).await?;
    assert_eq!(a.steps.len(), b.steps.len());
    for ((label, s1, v1), (_, s2, v2)) in a.steps.iter().zip(&b.steps) {
        assert_eq!(
            (s1, v1),
            (s2, v2),
            "{label}: SQLite (left) and PostgreSQL (right) differ"
        );
    }
    Ok(())
}

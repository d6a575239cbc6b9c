//! The SDK against an in-process fake of chatd: a minimal HTTP/1.1 server and
//! a minimal MQTT 3.1.1 broker, both scripted by the test. They check the
//! SDK's side of the protocol (token refresh, send retries, the event stream's
//! ordering and reconnection) without the real server, and without timing
//! luck: the fake does exactly what each test scripts.

use std::error::Error;
use std::future::Future;
use std::time::Duration;

use mqchat_sdk::{
    Backoff, Client, ErrorCode, Event, EventStream, FriendRequestStatus, GroupRole, Recipient,
    RetryPolicy, SdkError, StartFrom, StreamOptions, StreamState, Transport,
};
use serde_json::json;

type TestResult = Result<(), Box<dyn Error + Send + Sync>>;

const WAIT: Duration = Duration::from_secs(10);

fn fast_retry() -> RetryPolicy {
    RetryPolicy {
        max_attempts: 5,
        backoff: Backoff::new(Duration::from_millis(1), Duration::from_millis(5)),
    }
}

async fn login(server: &fake::Server) -> Result<Client, SdkError> {
    Client::builder(server.base_url())
        .retry(fast_retry())
        .login("alice", "pw")
        .await
}

fn stream_options() -> StreamOptions {
    StreamOptions::default()
        .reconnect_backoff(Backoff::new(
            Duration::from_millis(10),
            Duration::from_millis(50),
        ))
        .device_id("test-device")
}

async fn within<F: Future>(what: &str, fut: F) -> Result<F::Output, String> {
    tokio::time::timeout(WAIT, fut)
        .await
        .map_err(|_| format!("timed out waiting for {what}"))
}

/// The next `n` events' cursors.
async fn next_cursors(
    stream: &mut EventStream,
    n: usize,
) -> Result<Vec<u64>, Box<dyn Error + Send + Sync>> {
    let mut out = Vec::with_capacity(n);
    for _ in 0..n {
        let event = within("an event", stream.recv())
            .await?
            .ok_or("stream ended")??;
        out.push(event.cursor().ok_or("event without cursor")?);
    }
    Ok(out)
}

async fn wait_live(stream: &EventStream) -> TestResult {
    let mut state = stream.state_changes();
    within("live", state.wait_for(|s| *s == StreamState::Live)).await??;
    Ok(())
}

/// Polls `check` until it holds (the eventually-style assertion).
async fn eventually(what: &str, mut check: impl FnMut() -> bool) -> TestResult {
    let deadline = tokio::time::Instant::now() + WAIT;
    while !check() {
        if tokio::time::Instant::now() > deadline {
            return Err(format!("never happened: {what}").into());
        }
        tokio::time::sleep(Duration::from_millis(5)).await;
    }
    Ok(())
}

#[tokio::test]
async fn stale_token_is_refreshed_once_and_the_call_retried() -> TestResult {
    let server = fake::Server::start().await?;
    let client = login(&server).await?;
    let first_refresh = client.refresh_token()?;
    server.expire_access();

    // Several calls meet the 401 at once; the refresh token rotates, so only
    // one of them may refresh.
    let calls: Vec<_> = (0..8)
        .map(|_| {
            let client = client.clone();
            tokio::spawn(async move { client.me().await })
        })
        .collect();
    for call in calls {
        assert_eq!(call.await??.id, fake::USER_ID);
    }
    assert_eq!(server.state().refreshes, 1);
    assert_ne!(client.refresh_token()?, first_refresh, "keeps the newest");
    assert_eq!(client.refresh_token()?, server.state().refresh);
    Ok(())
}

#[tokio::test]
async fn token_near_expiry_is_refreshed_before_the_call() -> TestResult {
    let server = fake::Server::start().await?;
    server.state().expires_in = 0;
    let client = login(&server).await?;
    client.me().await?;
    let state = server.state();
    assert_eq!(state.refreshes, 1);
    assert_eq!(
        state.unauthorized, 0,
        "no request went out with a dying token"
    );
    Ok(())
}

#[tokio::test]
async fn rejected_refresh_token_ends_the_session() -> TestResult {
    let server = fake::Server::start().await?;
    let client = login(&server).await?;
    server.expire_access();
    server.state().refresh = "revoked".into();
    assert!(matches!(client.me().await, Err(SdkError::SessionExpired)));
    // Fails fast afterwards, without asking the server again.
    assert!(matches!(client.me().await, Err(SdkError::SessionExpired)));
    Ok(())
}

#[tokio::test]
async fn send_retries_with_the_same_client_msg_id() -> TestResult {
    let server = fake::Server::start().await?;
    let client = login(&server).await?;
    // The server commits the message but the first two answers are lost (503).
    server.state().fail_sends = 2;
    let sent = client.send_text(Recipient::User(8), "hello").await?;
    assert_eq!(sent.text(), Some("hello"));

    let state = server.state();
    assert_eq!(state.send_attempts.len(), 3);
    assert!(state
        .send_attempts
        .iter()
        .all(|id| *id == sent.client_msg_id));
    assert_eq!(state.messages.len(), 1, "stored once");
    Ok(())
}

#[tokio::test]
async fn send_gives_up_after_the_policy_and_does_not_retry_4xx() -> TestResult {
    let server = fake::Server::start().await?;
    let client = login(&server).await?;
    server.state().fail_sends = 100;
    let err = client
        .send_text(Recipient::User(8), "x")
        .await
        .err()
        .ok_or("send should fail")?;
    assert_eq!(err.status().map(|s| s.as_u16()), Some(503));
    assert_eq!(server.state().send_attempts.len(), 5);

    server.state().send_attempts.clear();
    let err = client
        .send_text(Recipient::User(fake::REJECTED_PEER), "x")
        .await
        .err()
        .ok_or("send should fail")?;
    assert_eq!(err.code(), Some("forbidden"));
    assert_eq!(server.state().send_attempts.len(), 1);
    Ok(())
}

#[tokio::test]
async fn lookups_and_logout() -> TestResult {
    let server = fake::Server::start().await?;
    let client = login(&server).await?;
    assert_eq!(client.user_by_name("nobody").await?, None);
    assert_eq!(
        client.user_by_name("alice").await?.map(|u| u.id),
        Some(fake::USER_ID)
    );
    client.logout().await?;
    assert!(server.state().logged_out);
    assert!(matches!(client.me().await, Err(SdkError::LoggedOut)));
    Ok(())
}

#[tokio::test]
async fn stream_is_gap_free_and_duplicate_free() -> TestResult {
    let server = fake::Server::start().await?;
    let client = login(&server).await?;
    for _ in 0..3 {
        server.commit();
    }
    let mut stream = client.connect(server.tcp(), stream_options())?;

    // Catch-up through sync.
    assert_eq!(next_cursors(&mut stream, 3).await?, [1, 2, 3]);
    wait_live(&stream).await?;

    // In-order push, then its duplicate (dropped).
    let e4 = server.commit();
    server.push(&e4);
    server.push(&e4);
    assert_eq!(next_cursors(&mut stream, 1).await?, [4]);

    // 5's push is lost; 6's push reveals the gap; sync fills it.
    server.commit();
    let e6 = server.commit();
    server.push(&e6);
    assert_eq!(next_cursors(&mut stream, 2).await?, [5, 6]);

    // Committed but never pushed, then the connection drops: the reconnect's
    // sync brings it.
    server.commit();
    server.kick();
    assert_eq!(next_cursors(&mut stream, 1).await?, [7]);
    wait_live(&stream).await?;

    // The duplicate of 4 and the push of 6 never came out twice.
    let e8 = server.commit();
    server.push(&e8);
    assert_eq!(next_cursors(&mut stream, 1).await?, [8]);
    assert_eq!(stream.last_cursor(), 8);
    assert!(server.state().mqtt_connects.len() >= 2);
    Ok(())
}

#[tokio::test]
async fn refused_credentials_refresh_the_token_and_reconnect() -> TestResult {
    let server = fake::Server::start().await?;
    let client = login(&server).await?;
    // The client still thinks its token is good; the broker does not.
    server.expire_access();
    let mut stream = client.connect(server.tcp(), stream_options())?;
    wait_live(&stream).await?;

    let e1 = server.commit();
    server.push(&e1);
    assert_eq!(next_cursors(&mut stream, 1).await?, [1]);
    let state = server.state();
    assert_eq!(state.refreshes, 1);
    let accepted: Vec<bool> = state.mqtt_connects.iter().map(|c| c.accepted).collect();
    assert_eq!(accepted, [false, true]);
    let connect = &state.mqtt_connects[1];
    assert_eq!(connect.username, fake::USER_ID.to_string());
    assert_eq!(connect.client_id, "test-device");
    assert!(connect.clean_session);
    Ok(())
}

#[tokio::test]
async fn start_from_now_and_after() -> TestResult {
    let server = fake::Server::start().await?;
    let client = login(&server).await?;
    for _ in 0..5 {
        server.commit();
    }
    let mut now = client.connect(
        server.tcp(),
        stream_options().device_id("now").start(StartFrom::Now),
    )?;
    let mut after = client.connect(
        server.tcp(),
        stream_options()
            .device_id("after")
            .start(StartFrom::After(3))
            .sync_page_size(1),
    )?;
    wait_live(&now).await?;
    assert_eq!(now.last_cursor(), 5);
    let e6 = server.commit();
    server.push(&e6);
    assert_eq!(next_cursors(&mut now, 1).await?, [6]);
    assert_eq!(next_cursors(&mut after, 3).await?, [4, 5, 6]);
    Ok(())
}

#[tokio::test]
async fn unknown_events_pass_through_and_acks_follow_the_reader() -> TestResult {
    let server = fake::Server::start().await?;
    let client = login(&server).await?;
    server.commit();
    server.commit_raw(json!({"type": "future.thing", "payload": [1, 2]}));
    let mut stream = client.connect(
        server.tcp(),
        stream_options().ack_every(Duration::from_millis(100)),
    )?;
    let first = within("event", stream.recv()).await?.ok_or("ended")??;
    assert!(matches!(first, Event::MessageCreated { cursor: 1, .. }));
    let second = within("event", stream.recv()).await?.ok_or("ended")??;
    assert_eq!(second.kind(), "future.thing");
    assert_eq!(second.cursor(), Some(2));
    eventually("ack of cursor 2", || {
        server.state().acks.last() == Some(&("test-device".to_owned(), 2))
    })
    .await?;
    Ok(())
}

#[tokio::test]
async fn websocket_transport_is_validated() -> TestResult {
    let server = fake::Server::start().await?;
    let client = login(&server).await?;
    let err = client
        .connect(
            Transport::WebSocket("wss://x/mqtt".into()),
            stream_options(),
        )
        .err();
    assert!(matches!(err, Some(SdkError::InvalidInput { .. })));
    Ok(())
}

#[tokio::test]
async fn logout_ends_the_stream_with_an_error() -> TestResult {
    let server = fake::Server::start().await?;
    let client = login(&server).await?;
    let mut stream = client.connect(server.tcp(), stream_options())?;
    wait_live(&stream).await?;
    client.logout().await?;
    server.kick();
    let end = within("the final error", stream.recv()).await?;
    assert!(matches!(end, Some(Err(SdkError::LoggedOut))), "{end:?}");
    assert!(within("the end", stream.recv()).await?.is_none());
    assert_eq!(stream.state(), StreamState::Closed);
    Ok(())
}

fn message_json(id: u64) -> serde_json::Value {
    json!({
        "id": id, "conversation_id": 8, "seq": 3, "sender_id": fake::USER_ID,
        "to": {"group": 2}, "kind": "user", "client_msg_id": "c", "body": {"text": "new"},
        "sent_at": 1_700_000_000_000i64, "edited_at": 1_700_000_001_000i64, "recalled_at": null
    })
}

fn request_json(status: &str) -> serde_json::Value {
    json!({
        "id": 3, "from": fake::USER_ID, "to": 9, "note": "hi", "status": status,
        "created_at": 1, "expires_at": 2
    })
}

fn group_json() -> serde_json::Value {
    json!({
        "id": 2, "conversation_id": 8, "name": "climbers", "owner_id": fake::USER_ID,
        "created_at": 1, "members": [
            {"user_id": fake::USER_ID, "role": "owner"}, {"user_id": 9, "role": "admin"}
        ]
    })
}

#[tokio::test]
async fn social_calls_use_the_documented_routes_and_bodies() -> TestResult {
    let server = fake::Server::start().await?;
    let client = login(&server).await?;
    let bob = json!({"id": 9, "username": "bob", "display_name": null, "created_at": 1});
    {
        let mut state = server.state();
        let friend = json!({"user": bob, "since": 5, "online": true, "last_seen": null});
        state.script(
            "GET /v1/friends",
            [(200, Some(json!({"friends": [friend]})))],
        );
        state.script(
            "GET /v1/friends/online",
            [(200, Some(json!({"friends": []})))],
        );
        state.script("DELETE /v1/friends/9", [(204, None)]);
        let requests = json!({"requests": [request_json("pending")]});
        state.script("GET /v1/friends/requests", [(200, Some(requests))]);
        state.script(
            "POST /v1/friends/requests",
            [(201, Some(request_json("pending")))],
        );
        for decision in ["accept", "reject", "cancel"] {
            let status = match decision {
                "accept" => "accepted",
                "reject" => "rejected",
                _ => "cancelled",
            };
            let route = format!("POST /v1/friends/requests/3/{decision}");
            state.script(&route, [(200, Some(request_json(status)))]);
        }
        state.script("GET /v1/blocks", [(200, Some(json!({"user_ids": [9]})))]);
        state.script("POST /v1/blocks", [(204, None)]);
        state.script("DELETE /v1/blocks/9", [(204, None)]);
        let presence = json!({"presence": [{"user_id": 9, "online": false, "last_seen": 7}]});
        state.script("GET /v1/presence", [(200, Some(presence))]);
        state.script("POST /v1/groups", [(201, Some(group_json()))]);
        state.script(
            "GET /v1/groups",
            [(200, Some(json!({"groups": [group_json()]})))],
        );
        state.script("GET /v1/groups/2", [(200, Some(group_json()))]);
        state.script("PATCH /v1/groups/2", [(200, Some(group_json()))]);
        state.script("DELETE /v1/groups/2", [(204, None)]);
        state.script("POST /v1/groups/2/members", [(200, Some(group_json()))]);
        state.script("DELETE /v1/groups/2/members/11", [(204, None)]);
        state.script(
            "PUT /v1/groups/2/members/9/role",
            [(200, Some(group_json()))],
        );
        state.script("POST /v1/groups/2/leave", [(204, None)]);
        state.script("POST /v1/groups/2/transfer", [(200, Some(group_json()))]);
        state.script("PATCH /v1/messages/10", [(200, Some(message_json(10)))]);
        let mut tombstone = message_json(10);
        tombstone["body"] = json!({});
        tombstone["recalled_at"] = json!(1_700_000_002_000i64);
        state.script("POST /v1/messages/10/recall", [(200, Some(tombstone))]);
        state.script("DELETE /v1/messages/10", [(204, None)]);
        let found = json!({"messages": [message_json(10)]});
        state.script("GET /v1/search", [(200, Some(found))]);
        state.script(
            "POST /v1/conversations/8/read",
            [(200, Some(json!({"read_seq": 3})))],
        );
        state.script("POST /v1/conversations/8/typing", [(204, None)]);
    }

    let friends = client.friends().await?;
    assert_eq!(friends.iter().map(|f| f.user.id).collect::<Vec<_>>(), [9]);
    assert!(client.online_friends().await?.is_empty());
    client.remove_friend(9).await?;
    let outgoing = client.outgoing_friend_requests().await?;
    assert_eq!(outgoing.len(), 1);
    let sent = client.send_friend_request(9, Some("hi")).await?;
    assert_eq!(sent.status, FriendRequestStatus::Pending);
    let decided = [
        client.accept_friend_request(3).await?.status,
        client.reject_friend_request(3).await?.status,
        client.cancel_friend_request(3).await?.status,
    ];
    assert_eq!(
        decided,
        [
            FriendRequestStatus::Accepted,
            FriendRequestStatus::Rejected,
            FriendRequestStatus::Cancelled
        ]
    );
    assert_eq!(client.blocks().await?, [9]);
    client.block(9).await?;
    client.unblock(9).await?;
    let presence = client.presence(&[9, 10]).await?;
    assert_eq!(
        presence
            .iter()
            .map(|p| (p.user_id, p.online))
            .collect::<Vec<_>>(),
        [(9, false)]
    );
    let group = client.create_group("climbers", &[9, 10]).await?;
    assert_eq!(group.role_of(9), Some(GroupRole::Admin));
    assert_eq!(client.groups().await?.len(), 1);
    assert_eq!(client.group(2).await?.conversation_id, 8);
    client.rename_group(2, "boulderers").await?;
    client.dissolve_group(2).await?;
    client.add_group_members(2, &[11]).await?;
    client.remove_group_member(2, 11).await?;
    client.set_group_role(2, 9, GroupRole::Admin).await?;
    client.leave_group(2).await?;
    client.transfer_group(2, 9).await?;
    let edited = client.edit_text(10, "new").await?;
    assert!(edited.edited_at.is_some());
    assert!(client.recall(10).await?.is_recalled());
    client.delete_for_me(10).await?;
    assert_eq!(client.search("hello wor", Some(5)).await?.len(), 1);
    assert_eq!(client.mark_read(8, 7).await?, 3);
    client.typing(8).await?;
    client.send_text(Recipient::Group(2), "hi all").await?;

    // Caught before sending.
    let invalid = |r: Result<_, SdkError>| matches!(r, Err(SdkError::InvalidInput { .. }));
    assert!(invalid(
        client
            .set_group_role(2, 9, GroupRole::Owner)
            .await
            .map(drop)
    ));
    assert!(invalid(client.search("   ", None).await.map(drop)));
    assert!(invalid(
        client.search(&"x".repeat(201), None).await.map(drop)
    ));
    assert!(client.presence(&[]).await?.is_empty());

    let q = |pairs: &[(&str, &str)]| -> Vec<(String, String)> {
        pairs
            .iter()
            .map(|(k, v)| ((*k).to_owned(), (*v).to_owned()))
            .collect()
    };
    let none = serde_json::Value::Null;
    let expected = [
        ("GET", "/v1/friends", vec![], none.clone()),
        ("GET", "/v1/friends/online", vec![], none.clone()),
        ("DELETE", "/v1/friends/9", vec![], none.clone()),
        (
            "GET",
            "/v1/friends/requests",
            q(&[("direction", "outgoing")]),
            none.clone(),
        ),
        (
            "POST",
            "/v1/friends/requests",
            vec![],
            json!({"user_id": 9, "note": "hi"}),
        ),
        (
            "POST",
            "/v1/friends/requests/3/accept",
            vec![],
            none.clone(),
        ),
        (
            "POST",
            "/v1/friends/requests/3/reject",
            vec![],
            none.clone(),
        ),
        (
            "POST",
            "/v1/friends/requests/3/cancel",
            vec![],
            none.clone(),
        ),
        ("GET", "/v1/blocks", vec![], none.clone()),
        ("POST", "/v1/blocks", vec![], json!({"user_id": 9})),
        ("DELETE", "/v1/blocks/9", vec![], none.clone()),
        ("GET", "/v1/presence", q(&[("users", "9,10")]), none.clone()),
        (
            "POST",
            "/v1/groups",
            vec![],
            json!({"name": "climbers", "members": [9, 10]}),
        ),
        ("GET", "/v1/groups", vec![], none.clone()),
        ("GET", "/v1/groups/2", vec![], none.clone()),
        (
            "PATCH",
            "/v1/groups/2",
            vec![],
            json!({"name": "boulderers"}),
        ),
        ("DELETE", "/v1/groups/2", vec![], none.clone()),
        (
            "POST",
            "/v1/groups/2/members",
            vec![],
            json!({"user_ids": [11]}),
        ),
        ("DELETE", "/v1/groups/2/members/11", vec![], none.clone()),
        (
            "PUT",
            "/v1/groups/2/members/9/role",
            vec![],
            json!({"role": "admin"}),
        ),
        ("POST", "/v1/groups/2/leave", vec![], none.clone()),
        (
            "POST",
            "/v1/groups/2/transfer",
            vec![],
            json!({"user_id": 9}),
        ),
        (
            "PATCH",
            "/v1/messages/10",
            vec![],
            json!({"body": {"text": "new"}}),
        ),
        ("POST", "/v1/messages/10/recall", vec![], none.clone()),
        ("DELETE", "/v1/messages/10", vec![], none.clone()),
        (
            "GET",
            "/v1/search",
            q(&[("q", "hello wor"), ("limit", "5")]),
            none.clone(),
        ),
        (
            "POST",
            "/v1/conversations/8/read",
            vec![],
            json!({"seq": 7}),
        ),
        ("POST", "/v1/conversations/8/typing", vec![], none.clone()),
    ];
    let state = server.state();
    let recorded = &state.requests;
    for (i, (method, path, query, body)) in expected.iter().enumerate() {
        let got = recorded
            .get(i)
            .ok_or(format!("request {i} ({method} {path}) missing"))?;
        assert_eq!(
            (
                got.method.as_str(),
                got.path.as_str(),
                &got.query,
                &got.body
            ),
            (*method, *path, query, body),
            "request {i}"
        );
    }
    let send = recorded
        .get(expected.len())
        .ok_or("the group send is missing")?;
    assert_eq!(send.path, "/v1/messages");
    assert_eq!(send.body["to"], json!({"group": 2}));
    assert_eq!(recorded.len(), expected.len() + 1, "nothing else was sent");
    Ok(())
}

#[tokio::test]
async fn a_delete_whose_answer_was_lost_is_a_success() -> TestResult {
    let server = fake::Server::start().await?;
    let client = login(&server).await?;
    // The first attempt removed the friend but its answer was lost; the
    // retry finds nothing to remove.
    server
        .state()
        .script("DELETE /v1/friends/9", [(503, None), (404, None)]);
    client.remove_friend(9).await?;
    assert_eq!(server.state().attempts("DELETE /v1/friends/9"), 2);

    // A 404 to a first attempt is an answer: they were not friends.
    server.state().script("DELETE /v1/friends/9", [(404, None)]);
    let err = client.remove_friend(9).await.err().ok_or("should fail")?;
    assert_eq!(err.error_code(), Some(ErrorCode::NotFound));

    server
        .state()
        .script("POST /v1/groups/2/leave", [(503, None), (404, None)]);
    client.leave_group(2).await?;
    assert_eq!(server.state().attempts("POST /v1/groups/2/leave"), 2);
    Ok(())
}

#[tokio::test]
async fn calls_unsafe_to_repeat_are_not_retried_once_they_may_have_arrived() -> TestResult {
    let server = fake::Server::start().await?;
    let client = login(&server).await?;
    {
        let mut state = server.state();
        state.script("POST /v1/groups", [(503, None)]);
        state.script("POST /v1/friends/requests", [(503, None)]);
        state.script("POST /v1/friends/requests/3/accept", [(503, None)]);
        state.script("PATCH /v1/messages/10", [(503, None)]);
        state.script("POST /v1/groups/2/transfer", [(503, None)]);
        state.script("POST /v1/conversations/8/typing", [(429, None)]);
    }
    let status = |r: Result<(), SdkError>| r.err().and_then(|e| e.status()).map(|s| s.as_u16());
    assert_eq!(
        status(client.create_group("x", &[]).await.map(drop)),
        Some(503)
    );
    assert_eq!(
        status(client.send_friend_request(9, None).await.map(drop)),
        Some(503)
    );
    assert_eq!(
        status(client.accept_friend_request(3).await.map(drop)),
        Some(503)
    );
    assert_eq!(status(client.edit_text(10, "x").await.map(drop)), Some(503));
    assert_eq!(
        status(client.transfer_group(2, 9).await.map(drop)),
        Some(503)
    );
    assert_eq!(status(client.typing(8).await), Some(429));
    {
        let state = server.state();
        for route in [
            "POST /v1/groups",
            "POST /v1/friends/requests",
            "POST /v1/friends/requests/3/accept",
            "PATCH /v1/messages/10",
            "POST /v1/groups/2/transfer",
            "POST /v1/conversations/8/typing",
        ] {
            assert_eq!(state.attempts(route), 1, "{route}");
        }
    }

    // A 429 refused the request unprocessed: safe to send again.
    server
        .state()
        .script("POST /v1/groups", [(429, None), (201, Some(group_json()))]);
    client.create_group("x", &[]).await?;
    assert_eq!(server.state().attempts("POST /v1/groups"), 1 + 2);
    Ok(())
}

#[tokio::test]
async fn calls_safe_to_repeat_are_retried() -> TestResult {
    let server = fake::Server::start().await?;
    let client = login(&server).await?;
    let mut tombstone = message_json(10);
    tombstone["body"] = json!({});
    tombstone["recalled_at"] = json!(1_700_000_002_000i64);
    {
        let mut state = server.state();
        state.script(
            "POST /v1/messages/10/recall",
            [(503, None), (200, Some(tombstone))],
        );
        state.script(
            "POST /v1/conversations/8/read",
            [(503, None), (200, Some(json!({"read_seq": 3})))],
        );
        state.script(
            "POST /v1/groups/2/members",
            [(503, None), (200, Some(group_json()))],
        );
        state.script("POST /v1/blocks", [(503, None), (204, None)]);
    }
    assert!(client.recall(10).await?.is_recalled());
    assert_eq!(client.mark_read(8, 3).await?, 3);
    client.add_group_members(2, &[9]).await?;
    client.block(9).await?;
    let state = server.state();
    for route in [
        "POST /v1/messages/10/recall",
        "POST /v1/conversations/8/read",
        "POST /v1/groups/2/members",
        "POST /v1/blocks",
    ] {
        assert_eq!(state.attempts(route), 2, "{route}");
    }
    Ok(())
}

#[tokio::test]
async fn social_events_are_ordered_and_ephemeral_pushes_bypass_the_cursor() -> TestResult {
    let server = fake::Server::start().await?;
    let client = login(&server).await?;
    server.commit_raw(json!({"type": "friend.request", "request": request_json("pending")}));
    server.commit_raw(json!({"type": "block.updated", "user_id": 9, "blocked": true}));
    let mut stream = client.connect(server.tcp(), stream_options())?;
    let first = within("event", stream.recv()).await?.ok_or("ended")??;
    assert!(
        matches!(first, Event::FriendRequest { cursor: 1, .. }),
        "{first:?}"
    );
    let second = within("event", stream.recv()).await?.ok_or("ended")??;
    assert!(
        matches!(
            second,
            Event::BlockUpdated {
                cursor: 2,
                user_id: 9,
                blocked: true
            }
        ),
        "{second:?}"
    );
    wait_live(&stream).await?;

    server.push_on(
        "presence",
        &json!({"type": "presence", "user_id": 9, "online": true, "last_seen": null}),
    );
    let presence = within("presence", stream.recv()).await?.ok_or("ended")??;
    assert!(
        matches!(&presence, Event::Presence(p) if p.user_id == 9 && p.online),
        "{presence:?}"
    );
    assert_eq!(
        stream.last_cursor(),
        2,
        "ephemeral pushes leave the cursor alone"
    );

    // An inbox event not pushed (yet), then a typing push: typing comes out
    // at once; the event comes when a later push reveals the gap.
    server.commit_raw(json!({"type": "friend.removed", "user_id": 9}));
    server.push_on(
        "typing",
        &json!({"type": "typing", "conversation_id": 8, "user_id": 9}),
    );
    let typing = within("typing", stream.recv()).await?.ok_or("ended")??;
    assert_eq!(
        typing,
        Event::Typing {
            conversation_id: 8,
            user_id: 9
        }
    );

    // Junk on the ephemeral topics and unknown topics is dropped; a payload
    // with a cursor there must not move the stream's cursor.
    server.push_on(
        "presence",
        &json!({"type": "message.created", "cursor": 99}),
    );
    server.push_on("calls", &json!({"type": "call.ringing", "cursor": 98}));
    let e4 = server
        .commit_raw(json!({"type": "receipt.read", "conversation_id": 8, "user_id": 9, "seq": 3}));
    server.push(&e4);
    let removed = within("event", stream.recv()).await?.ok_or("ended")??;
    assert!(
        matches!(
            removed,
            Event::FriendRemoved {
                cursor: 3,
                user_id: 9
            }
        ),
        "{removed:?}"
    );
    let read = within("event", stream.recv()).await?.ok_or("ended")??;
    assert!(
        matches!(
            read,
            Event::ReceiptRead {
                cursor: 4,
                seq: 3,
                ..
            }
        ),
        "{read:?}"
    );
    assert_eq!(stream.last_cursor(), 4);
    Ok(())
}

mod fake {
    //! The fake chatd. One user (id 7, "alice"); state in a mutex the tests
    //! can read and script.

    use std::collections::{HashMap, VecDeque};
    use std::net::SocketAddr;
    use std::sync::{Arc, Mutex, MutexGuard};

    use bytes::BytesMut;
    use mqchat_sdk::Transport;
    use rumqttc::mqttbytes::v4::{
        ConnAck, ConnectReturnCode, Packet, PingResp, Publish, SubAck, SubscribeReasonCode,
    };
    use rumqttc::mqttbytes::{Error as MqttError, QoS};
    use serde_json::{json, Value};
    use tokio::io::{AsyncBufReadExt, AsyncReadExt, AsyncWriteExt, BufReader};
    use tokio::net::{TcpListener, TcpStream};
    use tokio::sync::broadcast;

    pub const USER_ID: u64 = 7;
    /// Sending to this user is refused with 403.
    pub const REJECTED_PEER: u64 = 666;

    #[derive(Debug)]
    pub struct MqttConnect {
        pub username: String,
        pub client_id: String,
        pub clean_session: bool,
        pub accepted: bool,
    }

    #[derive(Debug)]
    pub struct State {
        pub access: String,
        pub refresh: String,
        pub expires_in: u64,
        generation: u32,
        pub refreshes: u32,
        pub unauthorized: u32,
        pub inbox: Vec<Value>,
        pub messages: Vec<Value>,
        pub send_attempts: Vec<String>,
        pub fail_sends: u32,
        pub acks: Vec<(String, u64)>,
        pub mqtt_connects: Vec<MqttConnect>,
        pub logged_out: bool,
        /// Answers to give, in order, keyed by `"METHOD /path"`, before the
        /// built-in routes are asked.
        pub scripted: HashMap<String, VecDeque<(u16, Option<Value>)>>,
        /// Every authenticated request, in arrival order.
        pub requests: Vec<Recorded>,
    }

    /// One request as the fake received it.
    #[derive(Debug, Clone, PartialEq)]
    pub struct Recorded {
        pub method: String,
        pub path: String,
        pub query: Vec<(String, String)>,
        /// `Null` when there was no body.
        pub body: Value,
    }

    impl State {
        /// Queues answers for `route` (`"POST /v1/groups"`).
        pub fn script(
            &mut self,
            route: &str,
            answers: impl IntoIterator<Item = (u16, Option<Value>)>,
        ) {
            self.scripted
                .entry(route.to_owned())
                .or_default()
                .extend(answers);
        }

        /// How many requests went to `route` (`"POST /v1/groups"`).
        pub fn attempts(&self, route: &str) -> usize {
            self.requests
                .iter()
                .filter(|r| format!("{} {}", r.method, r.path) == route)
                .count()
        }
    }

    impl State {
        fn rotate(&mut self) {
            self.generation += 1;
            self.access = format!("access-{}", self.generation);
            self.refresh = format!("refresh-{}", self.generation);
        }

        fn login_body(&self) -> Value {
            json!({
                "access_token": self.access,
                "refresh_token": self.refresh,
                "expires_in": self.expires_in,
                "user": user(),
            })
        }

        fn append(&mut self, mut event: Value) -> Value {
            event["cursor"] = json!(self.inbox.len() as u64 + 1);
            self.inbox.push(event.clone());
            event
        }

        fn store_message(&mut self, to: Value, client_msg_id: &str, body: Value) -> Value {
            let n = self.messages.len() as u64 + 1;
            let message = json!({
                "id": n, "conversation_id": 1, "seq": n, "sender_id": USER_ID,
                "to": to, "client_msg_id": client_msg_id, "body": body,
                "sent_at": 1_700_000_000_000i64 + n as i64,
            });
            self.messages.push(message.clone());
            message
        }
    }

    fn user() -> Value {
        json!({"id": USER_ID, "username": "alice", "display_name": null, "created_at": 1})
    }

    #[derive(Clone, Debug)]
    enum Control {
        /// Publish on `users/{USER_ID}/{subtopic}`.
        Push {
            subtopic: &'static str,
            payload: Vec<u8>,
        },
        Kick,
    }

    pub struct Server {
        http: SocketAddr,
        mqtt: SocketAddr,
        state: Arc<Mutex<State>>,
        control: broadcast::Sender<Control>,
    }

    impl Server {
        pub async fn start() -> std::io::Result<Server> {
            let mut state = State {
                access: String::new(),
                refresh: String::new(),
                expires_in: 3600,
                generation: 0,
                refreshes: 0,
                unauthorized: 0,
                inbox: Vec::new(),
                messages: Vec::new(),
                send_attempts: Vec::new(),
                fail_sends: 0,
                acks: Vec::new(),
                mqtt_connects: Vec::new(),
                logged_out: false,
                scripted: HashMap::new(),
                requests: Vec::new(),
            };
            state.rotate();
            let state = Arc::new(Mutex::new(state));
            let (control, _) = broadcast::channel(64);

            let http = TcpListener::bind("127.0.0.1:0").await?;
            let mqtt = TcpListener::bind("127.0.0.1:0").await?;
            let server = Server {
                http: http.local_addr()?,
                mqtt: mqtt.local_addr()?,
                state: state.clone(),
                control: control.clone(),
            };
            let http_state = state.clone();
            tokio::spawn(async move {
                while let Ok((socket, _)) = http.accept().await {
                    tokio::spawn(serve_http(socket, http_state.clone()));
                }
            });
            tokio::spawn(async move {
                while let Ok((socket, _)) = mqtt.accept().await {
                    tokio::spawn(serve_mqtt(socket, state.clone(), control.subscribe()));
                }
            });
            Ok(server)
        }

        pub fn base_url(&self) -> String {
            format!("http://{}", self.http)
        }

        pub fn tcp(&self) -> Transport {
            Transport::Tcp(self.mqtt.to_string())
        }

        pub fn state(&self) -> MutexGuard<'_, State> {
            self.state.lock().unwrap_or_else(|p| p.into_inner())
        }

        /// The server forgets the current access token (as if it expired).
        pub fn expire_access(&self) {
            self.state().access = "expired".into();
        }

        /// Stores a message to the user and its inbox event; no push.
        pub fn commit(&self) -> Value {
            let mut state = self.state();
            let message = state.store_message(json!({"user": USER_ID}), "c", json!({"text": "t"}));
            state.append(json!({"type": "message.created", "message": message}))
        }

        pub fn commit_raw(&self, event: Value) -> Value {
            self.state().append(event)
        }

        pub fn push(&self, event: &Value) {
            self.push_on("events", event);
        }

        /// Publishes on `users/{USER_ID}/{subtopic}`.
        pub fn push_on(&self, subtopic: &'static str, payload: &Value) {
            let _ = self.control.send(Control::Push {
                subtopic,
                payload: payload.to_string().into_bytes(),
            });
        }

        /// Drops every MQTT connection.
        pub fn kick(&self) {
            let _ = self.control.send(Control::Kick);
        }
    }

    struct HttpRequest {
        method: String,
        path: String,
        query: Vec<(String, String)>,
        bearer: Option<String>,
        body: Value,
    }

    async fn serve_http(socket: TcpStream, state: Arc<Mutex<State>>) -> std::io::Result<()> {
        let mut reader = BufReader::new(socket);
        let mut line = String::new();
        reader.read_line(&mut line).await?;
        let mut parts = line.split_whitespace();
        let method = parts.next().unwrap_or_default().to_owned();
        let target = parts.next().unwrap_or_default().to_owned();
        let mut length = 0usize;
        let mut bearer = None;
        loop {
            let mut header = String::new();
            reader.read_line(&mut header).await?;
            let header = header.trim_end();
            if header.is_empty() {
                break;
            }
            if let Some((name, value)) = header.split_once(':') {
                let value = value.trim();
                match name.to_ascii_lowercase().as_str() {
                    "content-length" => length = value.parse().unwrap_or(0),
                    "authorization" => bearer = value.strip_prefix("Bearer ").map(str::to_owned),
                    _ => {}
                }
            }
        }
        let mut body = vec![0; length];
        reader.read_exact(&mut body).await?;
        let (path, query) = match target.split_once('?') {
            Some((path, query)) => (path.to_owned(), query),
            None => (target.clone(), ""),
        };
        let query = query
            .split('&')
            .filter_map(|kv| kv.split_once('='))
            .map(|(k, v)| (k.to_owned(), percent_decode(v)))
            .collect();
        let request = HttpRequest {
            method,
            path,
            query,
            bearer,
            body: serde_json::from_slice(&body).unwrap_or(Value::Null),
        };
        let (status, body) = {
            let mut state = state.lock().unwrap_or_else(|p| p.into_inner());
            route(&mut state, request)
        };
        let body = body.map(|b| b.to_string()).unwrap_or_default();
        let response = format!(
            "HTTP/1.1 {status} X\r\ncontent-type: application/json\r\ncontent-length: {}\r\nconnection: close\r\n\r\n{body}",
            body.len()
        );
        let mut socket = reader.into_inner();
        socket.write_all(response.as_bytes()).await?;
        socket.shutdown().await
    }

    fn error(status: u16, code: &str) -> (u16, Option<Value>) {
        (
            status,
            Some(json!({"error": {"code": code, "message": code}})),
        )
    }

    fn route(state: &mut State, req: HttpRequest) -> (u16, Option<Value>) {
        let public = req.path.starts_with("/v1/auth/") && req.path != "/v1/auth/logout";
        if !public && req.bearer.as_deref() != Some(state.access.as_str()) {
            state.unauthorized += 1;
            return error(401, "token_expired");
        }
        if !public {
            state.requests.push(Recorded {
                method: req.method.clone(),
                path: req.path.clone(),
                query: req.query.clone(),
                body: req.body.clone(),
            });
        }
        let route_key = format!("{} {}", req.method, req.path);
        if let Some(answer) = state
            .scripted
            .get_mut(&route_key)
            .and_then(VecDeque::pop_front)
        {
            return match answer {
                (status, None) if status >= 400 => error(status, code_of(status)),
                answer => answer,
            };
        }
        let param = |k: &str| {
            req.query
                .iter()
                .find(|(key, _)| key == k)
                .map(|(_, v)| v.as_str())
        };
        match (req.method.as_str(), req.path.as_str()) {
            ("POST", "/v1/auth/login") => {
                state.rotate();
                (200, Some(state.login_body()))
            }
            ("POST", "/v1/auth/refresh") => {
                if req.body["refresh_token"] != json!(state.refresh) {
                    return error(401, "invalid_token");
                }
                state.refreshes += 1;
                state.rotate();
                (200, Some(state.login_body()))
            }
            ("POST", "/v1/auth/logout") => {
                state.logged_out = true;
                state.refresh = "revoked".into();
                state.access = "revoked".into();
                (204, None)
            }
            ("GET", "/v1/me") => (200, Some(user())),
            ("GET", "/v1/users") => match param("username") {
                Some("alice") => (200, Some(user())),
                _ => error(404, "not_found"),
            },
            ("POST", "/v1/messages") => {
                let id = req.body["client_msg_id"]
                    .as_str()
                    .unwrap_or_default()
                    .to_owned();
                state.send_attempts.push(id.clone());
                if req.body["to"] == json!({"user": REJECTED_PEER}) {
                    return error(403, "forbidden");
                }
                let existing = state
                    .messages
                    .iter()
                    .find(|m| m["client_msg_id"] == json!(id))
                    .cloned();
                let (status, message) = match existing {
                    Some(message) => (200, message),
                    None => (
                        201,
                        state.store_message(req.body["to"].clone(), &id, req.body["body"].clone()),
                    ),
                };
                if state.fail_sends > 0 {
                    state.fail_sends -= 1;
                    return error(503, "unavailable");
                }
                (status, Some(message))
            }
            ("GET", "/v1/sync") => {
                let num = |k: &str| param(k).and_then(|v| v.parse::<u64>().ok());
                let after = num("after").unwrap_or(0);
                let limit = num("limit").unwrap_or(100);
                let events: Vec<Value> = state
                    .inbox
                    .iter()
                    .skip(after as usize)
                    .take(limit as usize)
                    .cloned()
                    .collect();
                let cursor = events
                    .last()
                    .map_or(after, |e| e["cursor"].as_u64().unwrap_or(after));
                let has_more = (state.inbox.len() as u64) > cursor;
                (
                    200,
                    Some(json!({"events": events, "cursor": cursor, "has_more": has_more})),
                )
            }
            ("POST", "/v1/sync/ack") => {
                let device = req.body["device_id"]
                    .as_str()
                    .unwrap_or_default()
                    .to_owned();
                let cursor = req.body["cursor"].as_u64().unwrap_or(0);
                state.acks.push((device, cursor));
                (204, None)
            }
            _ => error(404, "not_found"),
        }
    }

    /// The documented code of a scripted error status.
    fn code_of(status: u16) -> &'static str {
        match status {
            403 => "forbidden",
            404 => "not_found",
            409 => "conflict",
            429 => "rate_limited",
            503 => "unavailable",
            _ => "internal",
        }
    }

    /// `%XX` escapes and `+` of a query value (what the SDK's `,` in a list
    /// and spaces in a search become).
    fn percent_decode(s: &str) -> String {
        let bytes = s.as_bytes();
        let mut out = Vec::with_capacity(bytes.len());
        let mut i = 0;
        while i < bytes.len() {
            match bytes[i] {
                b'+' => out.push(b' '),
                b'%' if i + 2 < bytes.len() => {
                    let hex = std::str::from_utf8(&bytes[i + 1..i + 3]).unwrap_or("");
                    match u8::from_str_radix(hex, 16) {
                        Ok(b) => {
                            out.push(b);
                            i += 2;
                        }
                        Err(_) => out.push(b'%'),
                    }
                }
                b => out.push(b),
            }
            i += 1;
        }
        String::from_utf8_lossy(&out).into_owned()
    }

    async fn read_packet(
        socket: &mut TcpStream,
        buf: &mut BytesMut,
    ) -> Result<Option<Packet>, Box<dyn std::error::Error + Send + Sync>> {
        loop {
            match Packet::read(buf, 1 << 20) {
                Ok(packet) => return Ok(Some(packet)),
                Err(MqttError::InsufficientBytes(_)) => {}
                Err(err) => return Err(err.to_string().into()),
            }
            if socket.read_buf(buf).await? == 0 {
                return Ok(None);
            }
        }
    }

    async fn serve_mqtt(
        mut socket: TcpStream,
        state: Arc<Mutex<State>>,
        mut control: broadcast::Receiver<Control>,
    ) -> Result<(), Box<dyn std::error::Error + Send + Sync>> {
        let mut buf = BytesMut::new();
        let Some(Packet::Connect(connect)) = read_packet(&mut socket, &mut buf).await? else {
            return Ok(());
        };
        let accepted = {
            let mut state = state.lock().unwrap_or_else(|p| p.into_inner());
            let login = connect
                .login
                .clone()
                .unwrap_or_else(|| rumqttc::mqttbytes::v4::Login {
                    username: String::new(),
                    password: String::new(),
                });
            let accepted = login.username == USER_ID.to_string() && login.password == state.access;
            state.mqtt_connects.push(MqttConnect {
                username: login.username,
                client_id: connect.client_id.clone(),
                clean_session: connect.clean_session,
                accepted,
            });
            accepted
        };
        let mut out = BytesMut::new();
        let code = if accepted {
            ConnectReturnCode::Success
        } else {
            ConnectReturnCode::BadUserNamePassword
        };
        ConnAck::new(code, false).write(&mut out)?;
        socket.write_all(&out).await?;
        if !accepted {
            return Ok(());
        }
        let mut subscribed = false;
        let mut pkid: u16 = 0;
        loop {
            out.clear();
            tokio::select! {
                packet = read_packet(&mut socket, &mut buf) => match packet? {
                    Some(Packet::Subscribe(sub)) => {
                        let codes = sub
                            .filters
                            .iter()
                            .map(|f| {
                                if f.path == format!("users/{USER_ID}/#") {
                                    subscribed = true;
                                    SubscribeReasonCode::Success(QoS::AtLeastOnce)
                                } else {
                                    SubscribeReasonCode::Failure
                                }
                            })
                            .collect();
                        SubAck::new(sub.pkid, codes).write(&mut out)?;
                    }
                    Some(Packet::PingReq) => {
                        PingResp.write(&mut out)?;
                    }
                    Some(Packet::Disconnect) | None => return Ok(()),
                    Some(_) => {}
                },
                control = control.recv() => match control {
                    Ok(Control::Push { subtopic, payload }) if subscribed => {
                        pkid = pkid % u16::MAX + 1;
                        let mut publish = Publish::new(
                            format!("users/{USER_ID}/{subtopic}"),
                            QoS::AtLeastOnce,
                            payload,
                        );
                        publish.pkid = pkid;
                        publish.write(&mut out)?;
                    }
                    Ok(Control::Push { .. }) => {}
                    Ok(Control::Kick) | Err(_) => return Ok(()),
                },
            }
            socket.write_all(&out).await?;
        }
    }
}

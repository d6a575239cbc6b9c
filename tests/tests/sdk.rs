//! The Rust SDK against a real chatd: typed calls, and an event stream that
//! stays gap-free and duplicate-free across a server restart.

use std::collections::BTreeSet;
use std::time::Duration;

use anyhow::{anyhow, bail, Result};
use mqchat_e2e::sdk::{fast_reconnect, take};
use mqchat_e2e::{free_ports, TestServer};
use mqchat_sdk::{
    Client, ErrorCode, Event, GroupAddPolicy, InvitationStatus, OutgoingMessage, Recipient,
    SdkError, Transport,
};

/// Registers alice and bob on the chatd at `base` and logs both in.
async fn alice_and_bob(base: &str) -> Result<(Client, Client)> {
    Client::register(base, "alice", "password-alice").await?;
    Client::register(base, "bob", "password-bob").await?;
    let alice = Client::login(base, "alice", "password-alice").await?;
    let bob = Client::login(base, "bob", "password-bob").await?;
    Ok((alice, bob))
}

#[tokio::test]
async fn stream_is_gap_free_and_duplicate_free_across_a_restart() -> Result<()> {
    let tmp = tempfile::tempdir()?;
    let dir = tmp.path().join("data");
    let (http, mqtt) = free_ports()?;
    let mut server = TestServer::start_at(&dir, &http, &mqtt, &[]).await?;
    let base = server.url("");
    let (alice, bob) = alice_and_bob(&base).await?;
    let to_bob = Recipient::User(bob.user_id());

    // Sent before bob connects: delivered by the initial sync.
    for i in 0..5 {
        alice.send_text(to_bob, &format!("early {i}")).await?;
    }
    let mut stream = bob.connect(Transport::Tcp(mqtt.clone()), fast_reconnect())?;
    let early = take(&mut stream, 5, 0).await?;
    assert_eq!(
        early,
        (0..5).map(|i| format!("early {i}")).collect::<Vec<_>>()
    );

    for i in 0..20 {
        alice.send_text(to_bob, &format!("live {i}")).await?;
    }
    let live = take(&mut stream, 20, 5).await?;
    assert_eq!(
        live,
        (0..20).map(|i| format!("live {i}")).collect::<Vec<_>>()
    );

    // Restart the server on the same ports and data dir.
    let status = server.terminate().await?;
    assert!(status.success(), "chatd exited with {status}");
    server = TestServer::start_at(&dir, &http, &mqtt, &[]).await?;
    // Sent while bob's stream is still reconnecting, and after.
    for i in 0..30 {
        alice.send_text(to_bob, &format!("after {i}")).await?;
    }
    let after = take(&mut stream, 30, 25).await?;
    assert_eq!(
        after,
        (0..30).map(|i| format!("after {i}")).collect::<Vec<_>>()
    );
    // Nothing more: no duplicate trails behind.
    let extra = tokio::time::timeout(Duration::from_millis(500), stream.recv()).await;
    assert!(extra.is_err(), "unexpected extra event: {extra:?}");
    drop(server);
    Ok(())
}

#[tokio::test]
async fn typed_calls_and_websocket_stream() -> Result<()> {
    let server = TestServer::start().await?;
    let base = server.url("");
    let (alice, bob) = alice_and_bob(&base).await?;

    let mut stream = bob.connect(Transport::websocket_for(&base)?, fast_reconnect())?;
    let sent = alice
        .send_text(Recipient::User(bob.user_id()), "over ws")
        .await?;
    assert_eq!(take(&mut stream, 1, 0).await?, vec!["over ws".to_owned()]);

    let found = alice
        .user_by_name("bob")
        .await?
        .ok_or_else(|| anyhow!("bob not found"))?;
    assert_eq!(found.id, bob.user_id());
    assert!(alice.user_by_name("nobody").await?.is_none());
    let me = alice.update_me(Some("Alice")).await?;
    assert_eq!(me.display_name.as_deref(), Some("Alice"));

    let convs = bob.conversations().await?;
    assert_eq!(convs.len(), 1);
    let page = bob.history(convs[0].id, None, None).await?;
    assert_eq!(page.messages.len(), 1);
    assert_eq!(page.messages[0].id, sent.id);
    let synced = bob.sync(0, 100).await?;
    let cursors: BTreeSet<u64> = synced.events.iter().filter_map(Event::cursor).collect();
    assert_eq!(cursors, BTreeSet::from([1]));
    bob.ack("laptop", 1).await?;
    bob.logout().await?;
    assert!(bob.me().await.is_err(), "calls after logout fail");
    Ok(())
}

/// `send_batch`: one result per send, in order; a refused send is the
/// error a single send would get and stops nothing; the same batch again
/// stores nothing new.
#[tokio::test]
async fn a_batch_send_answers_each_message() -> Result<()> {
    let server = TestServer::start().await?;
    let base = server.url("");
    let (alice, bob) = alice_and_bob(&base).await?;
    let to_bob = Recipient::User(bob.user_id());
    let sends = vec![
        OutgoingMessage::text(to_bob, "one"),
        OutgoingMessage::text(Recipient::User(999_999), "to no one"),
        OutgoingMessage::text(to_bob, "two"),
    ];
    let results = alice.send_batch(&sends).await?;
    assert_eq!(results.len(), 3);
    let one = results[0].as_ref().map_err(|e| anyhow!("{e}"))?;
    let two = results[2].as_ref().map_err(|e| anyhow!("{e}"))?;
    assert_eq!((one.text(), two.text()), (Some("one"), Some("two")));
    assert_eq!((one.seq, two.seq), (1, 2), "stored in the batch's order");
    match &results[1] {
        Err(e) => assert_eq!(e.error_code(), Some(ErrorCode::NotFound), "{e}"),
        Ok(m) => bail!("a send to no one was stored: {m:?}"),
    }

    let again = alice.send_batch(&sends).await?;
    let again_two = again[2].as_ref().map_err(|e| anyhow!("{e}"))?;
    assert_eq!(again_two.id, two.id, "the original, nothing new");
    assert_eq!(bob.sync(0, 100).await?.events.len(), 2);

    let err = alice.send_batch(&[]).await.err();
    assert!(
        matches!(err, Some(SdkError::InvalidInput { .. })),
        "{err:?}"
    );
    Ok(())
}

/// Group invitations through the SDK: a user who lets nobody add them is
/// invited, sees a typed `group.invitation`, and joins by accepting.
#[tokio::test]
async fn group_invitations_are_typed_calls_and_events() -> Result<()> {
    let server = TestServer::start().await?;
    let (alice, bob) = alice_and_bob(&server.url("")).await?;
    let me = bob.set_group_add_policy(GroupAddPolicy::Nobody).await?;
    assert_eq!(me.group_add_policy, Some(GroupAddPolicy::Nobody));

    let group = alice.create_group("book club", &[bob.user_id()]).await?;
    assert_eq!(group.invited, vec![bob.user_id()]);
    assert!(group.role_of(bob.user_id()).is_none(), "invited, not added");

    let invitations = bob.group_invitations().await?;
    let [invitation] = invitations.as_slice() else {
        bail!("one invitation expected: {invitations:?}");
    };
    assert_eq!(
        (
            invitation.group_id,
            invitation.inviter_id,
            invitation.status
        ),
        (group.id, alice.user_id(), InvitationStatus::Pending)
    );
    let page = bob.sync(0, 100).await?;
    assert!(
        page.events.iter().any(|e| matches!(
            e,
            Event::GroupInvitation { invitation: i, .. } if i.id == invitation.id
        )),
        "{:?}",
        page.events
    );

    let accepted = bob.accept_group_invitation(invitation.id).await?;
    assert_eq!(accepted.status, InvitationStatus::Accepted);
    assert!(bob.group(group.id).await?.role_of(bob.user_id()).is_some());
    assert!(bob.group_invitations().await?.is_empty());
    Ok(())
}

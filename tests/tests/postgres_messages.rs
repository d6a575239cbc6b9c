//! The PostgreSQL messages store against SQLite's, the reference: one
//! scenario through the store's operations on each backend (conversations,
//! members, departures, sends, fan-out, edits, recalls, sync, history, the
//! conversation list, read markers, receipts, device cursors, search), and
//! every answer compared. Below chatd, so a difference shows as the
//! operation and its two answers.

use anyhow::{bail, Result};
use mqchat_chatsvc::store::messages::{self, NewRow, Posted, SendTo};
use mqchat_chatsvc::store::postgres::{Backend, Mode, Options};
use mqchat_chatsvc::store::{groups, mqtt, social, users, Store, StoreError};
use mqchat_e2e::postgres::TestPostgres;

/// What each step answered, one line per step.
struct Log {
    store: Store,
    lines: Vec<String>,
}

impl Log {
    async fn write<T, F>(&mut self, step: &str, f: F) -> Result<T>
    where
        T: std::fmt::Debug + Send + 'static,
        F: FnOnce(&mqchat_chatsvc::store::Tx<'_>) -> Result<T, StoreError> + Send + 'static,
    {
        let v = self.store.write(f).await?;
        self.lines.push(format!("{step}: {v:?}"));
        Ok(v)
    }

    async fn read<T, F>(&mut self, step: &str, f: F) -> Result<T>
    where
        T: std::fmt::Debug + Send + 'static,
        F: FnOnce(&mqchat_chatsvc::store::Rx<'_>) -> Result<T, StoreError> + Send + 'static,
    {
        let v = self.store.read(f).await?;
        self.lines.push(format!("{step}: {v:?}"));
        Ok(v)
    }

    /// A text message from `sender`, fanned out; its id.
    async fn send(&mut self, conv: u64, sender: u64, id: &str, text: &str) -> Result<u64> {
        let (id, text) = (id.to_owned(), text.to_owned());
        let step = format!("send {id}");
        let m = self
            .write(&step, move |c| {
                let body = serde_json::json!({ "text": text }).to_string();
                let new = NewRow {
                    conversation_id: conv,
                    sender,
                    client_msg_id: &id,
                    body: &body,
                    text: Some(&text),
                    kind: "user",
                    now: 1000,
                    extras: None,
                };
                let Some(posted) = post_one(c, &new)? else {
                    return Err(StoreError::NotFound("a new client_msg_id"));
                };
                let marker = messages::membership(c, sender, conv)?.map(|m| m.read_seq);
                Ok((posted.row, posted.deliveries, marker))
            })
            .await?;
        Ok(m.0.id)
    }
}

/// One message stored and fanned out, as the domain stores a group's
/// system message.
fn post_one(
    c: &mqchat_chatsvc::store::Tx<'_>,
    new: &NewRow<'_>,
) -> Result<Option<Posted>, StoreError> {
    Ok(
        messages::post_many(c, std::slice::from_ref(new), "message.created")?
            .pop()
            .flatten(),
    )
}

/// A direct send's route question.
fn to_user(sender: u64, peer: u64, friends: bool) -> SendTo {
    SendTo::User {
        sender,
        peer,
        friends,
    }
}

/// The domain's FTS5 expression for `input` (`domain::messages::fts_query`).
fn fts(input: &str) -> String {
    let words: Vec<String> = input
        .split_whitespace()
        .map(|w| format!("\"{}\"", w.replace('"', "\"\"")))
        .collect();
    format!("{}*", words.join(" "))
}

async fn scenario(store: Store) -> Result<Vec<String>> {
    let mut log = Log {
        store,
        lines: Vec::new(),
    };
    let users: Vec<u64> = log
        .write("users", |c| {
            (0..24)
                .map(|i| users::insert(c, &format!("u{i}"), "!", 0).map(|u| u.id))
                .collect::<Result<Vec<u64>, _>>()
        })
        .await?;
    let (a, b, d, e) = (users[0], users[1], users[3], users[4]);

    // Direct conversations, routes, notes to self.
    log.write("route", move |c| {
        messages::routes(c, &[to_user(a, b, false), to_user(a, b, true)])
    })
    .await?;
    let dm = log
        .write("dm", move |c| messages::direct_conversation(c, b, a, 1))
        .await?;
    log.write("dm again", move |c| {
        Ok((
            messages::direct_conversation(c, a, b, 2)?,
            messages::routes(c, &[to_user(a, b, false), to_user(a, 99_999, true)])?,
        ))
    })
    .await?;
    let notes = log
        .write("notes", move |c| messages::direct_conversation(c, a, a, 1))
        .await?;
    log.read("notes members", move |c| {
        Ok((messages::members(c, notes)?, messages::member_count(c, dm)?))
    })
    .await?;

    // Sends and read markers (SQLite's rule: the sender's marker moves
    // only past others' unread messages).
    log.send(dm, a, "a1", "hello world").await?;
    log.send(dm, a, "a2", "quarterly report draft").await?;
    log.send(dm, b, "b1", "hello again").await?;
    log.send(dm, b, "b2", "don't forget the café").await?;
    log.send(dm, a, "a3", "foo-bar baz").await?;
    log.send(notes, a, "n1", "remember the milk").await?;
    log.write("duplicate", move |c| {
        let new = NewRow {
            conversation_id: dm,
            sender: a,
            client_msg_id: "a1",
            body: r#"{"text":"other"}"#,
            text: Some("other"),
            kind: "user",
            now: 5,
            extras: None,
        };
        Ok((
            post_one(c, &new)?,
            messages::by_client_id(c, a, "a1")?,
            messages::by_client_id(c, a, "zz")?,
        ))
    })
    .await?;
    log.send(dm, a, "a4", "after the duplicate").await?;
    for u in [a, b] {
        log.read("unread", move |c| {
            Ok((messages::unread(c, u, dm)?, messages::membership(c, u, dm)?))
        })
        .await?;
    }
    log.write("mark_read", move |c| {
        Ok((
            messages::mark_read(c, b, dm, 2)?,
            messages::mark_read(c, b, dm, 1)?,
            messages::mark_read(c, b, dm, u64::MAX)?,
            messages::mark_read(c, b, notes, 1)
                .err()
                .map(|e| e.to_string()),
        ))
    })
    .await?;
    log.read("senders", move |c| {
        Ok((
            messages::senders_between(c, dm, b, 0, 6)?,
            messages::senders_between(c, dm, a, 0, 6)?,
        ))
    })
    .await?;

    // A group of 21: a owner, everyone else member; roles.
    let group = log
        .write("group", move |c| groups::create(c, "team", a, 3))
        .await?;
    let gconv = group.conversation_id;
    let rest: Vec<u64> = users[1..22].to_vec();
    log.write("add", move |c| {
        for &u in &rest {
            messages::add_member(c, gconv, u, "member", 4)?;
        }
        messages::add_member(c, gconv, b, "admin", 4)?;
        messages::set_role(c, gconv, d, "admin")?;
        messages::members_with_roles(c, gconv)
    })
    .await?;
    log.send(gconv, a, "g1", "lunch on friday").await?;
    let seen = log.send(gconv, b, "g2", "lunch sounds good").await?;
    log.write("edit before", move |c| {
        messages::edit(c, seen, r#"{"text":"lunch on saturday"}"#, 2000)
    })
    .await?;
    // d leaves, e is removed later; the edit after d left is not d's.
    log.write("leave", move |c| messages::remove_member(c, gconv, d))
        .await?;
    log.write("leave again", move |c| messages::remove_member(c, gconv, d))
        .await?;
    log.write("edit after", move |c| {
        messages::edit(c, seen, r#"{"text":"acquire globex"}"#, 3000)?;
        messages::by_id(c, seen)
    })
    .await?;
    log.send(gconv, e, "g3", "globex acquisition news").await?;
    log.write("rejoin", move |c| {
        messages::add_member(c, gconv, d, "member", 5)?;
        messages::membership(c, d, gconv)
    })
    .await?;
    log.write("edit again", move |c| {
        messages::edit(c, seen, r#"{"text":"acquire globex for 5bn"}"#, 4000)
    })
    .await?;
    let g4 = log.send(gconv, b, "g4", "hidden from a").await?;
    let g5 = log.send(gconv, b, "g5", "recalled soon").await?;
    log.write("hide, recall", move |c| {
        messages::hide(c, a, g4)?;
        messages::hide(c, a, g4)?;
        messages::recall(c, g5, 5000)?;
        messages::by_id(c, g5)
    })
    .await?;
    log.write("block", move |c| social::block(c, a, e, 6))
        .await?;
    // A group commit's sends stored at once: several conversations, several
    // senders in one (read markers), a resend of a message stored before,
    // a client_msg_id repeated within the batch, notes to self.
    log.write("batch", move |c| {
        let sends = [
            (gconv, b, "p1", "batch one"),
            (dm, a, "p2", "batch two"),
            (gconv, d, "p3", "batch three"),
            (gconv, b, "p4", "batch four"),
            (dm, b, "p5", "batch five"),
            (dm, a, "a1", "a resend of a1"),
            (gconv, b, "p1", "p1 again in the batch"),
            (notes, a, "p6", "batch note"),
            (dm, a, "p7", "batch seven"),
            (gconv, a, "p8", "batch eight"),
        ];
        let bodies: Vec<String> = sends
            .iter()
            .map(|s| serde_json::json!({ "text": s.3 }).to_string())
            .collect();
        let rows: Vec<NewRow<'_>> = sends
            .iter()
            .zip(&bodies)
            .map(|(&(conversation_id, sender, id, text), body)| NewRow {
                conversation_id,
                sender,
                client_msg_id: id,
                body,
                text: Some(text),
                kind: "user",
                now: 5500,
                extras: None,
            })
            .collect();
        let posted = messages::post_many(c, &rows, "message.created")?;
        let mut markers = Vec::new();
        for (u, conv) in [
            (a, dm),
            (b, dm),
            (a, gconv),
            (b, gconv),
            (d, gconv),
            (a, notes),
        ] {
            markers.push(messages::membership(c, u, conv)?.map(|m| m.read_seq));
        }
        Ok((posted, markers))
    })
    .await?;
    log.write("system", move |c| {
        let new = NewRow {
            conversation_id: gconv,
            sender: a,
            client_msg_id: "sys1",
            body: r#"{"event":"renamed"}"#,
            text: None,
            kind: "system",
            now: 6000,
            extras: None,
        };
        post_one(c, &new)
    })
    .await?;
    log.write("append", move |c| {
        Ok((
            messages::append(c, d, "group.member_removed", None, Some(r#"{"x":1}"#))?,
            messages::append(c, e, "message.edited", Some(seen), None)?,
            messages::append(c, 99_999, "x", None, None).is_err(),
        ))
    })
    .await?;

    // What each user sees.
    for &u in &users[..6] {
        log.read("sync", move |c| messages::sync(c, u, 0, 100, 0))
            .await?;
        log.read("sync page", move |c| messages::sync(c, u, 2, 3, 0))
            .await?;
        log.read("head", move |c| messages::inbox_head(c, u))
            .await?;
        log.read("conversations", move |c| {
            messages::conversations(c, u, false, 10)
        })
        .await?;
        log.read("history", move |c| {
            Ok((
                messages::history(c, u, gconv, None, 100, 0)?,
                messages::history(c, u, gconv, Some(4), 2, 0)?,
                messages::history(c, u, dm, Some(u64::MAX), 3, 0)?,
            ))
        })
        .await?;
        log.read("delivered", move |c| {
            messages::delivered_between(c, u, 0, 100)
        })
        .await?;
        for q in [
            "hello",
            "hel",
            "lunch",
            "globex",
            "quarterly report",
            "report quart",
            "\"quarterly OR NEAR(",
            "\"hello world\"",
            "!!! hello",
            "!!!",
            "don't",
            "milk",
            "hidden",
            "recalled",
            "foo-bar",
            "baz",
        ] {
            let q = fts(q);
            log.read(&format!("search {q}"), move |c| {
                messages::search(c, u, &q, 10, 0)
            })
            .await?;
        }
    }
    log.read("search limit", move |c| {
        messages::search(c, a, &fts("lunch"), 1, 0)
    })
    .await?;

    // Device cursors: never backwards, at most MAX_DEVICES_PER_USER kept.
    log.write("ack", move |c| {
        let mut acks = Vec::new();
        for i in 0..(messages::MAX_DEVICES_PER_USER as i64 + 2) {
            acks.push(messages::ack(c, a, &format!("dev{i}"), i as u64, i)?);
        }
        acks.push(messages::ack(c, a, "dev5", 1, 100)?);
        acks.push(messages::ack(c, a, "dev0", 50, 101)?);
        Ok(acks)
    })
    .await?;
    // Dissolving the group: everyone departs, and keeps what they saw.
    log.write("dissolve", move |c| {
        groups::dissolve(c, &group, 7)?;
        messages::member_count(c, gconv)
    })
    .await?;
    log.write("edit dissolved", move |c| {
        messages::edit(c, seen, r#"{"text":"after the end"}"#, 8000)
    })
    .await?;
    for &u in &users[..6] {
        log.read("sync after", move |c| messages::sync(c, u, 0, 100, 0))
            .await?;
    }
    mqtt_sessions(&mut log, a, b).await?;
    Ok(log.lines)
}

/// Persistent MQTT sessions (`store::mqtt`): made, resumed, expired,
/// capped per user, cursors that never go back, purged.
async fn mqtt_sessions(log: &mut Log, a: u64, b: u64) -> Result<()> {
    log.write("mqtt new", move |c| {
        mqtt::open_mqtt_session(c, a, "a|x", false, 5000, 1000, 2)
    })
    .await?;
    log.write("mqtt filters", move |c| {
        mqtt::save_mqtt_subscriptions(c, a, "a|x", r#"[{"f":"users/1/#","q":1}]"#, 1100)
    })
    .await?;
    let rows = |acked, sent, expires_at| {
        vec![mqtt::CursorsRow {
            user_id: a,
            client_id: "a|x".into(),
            acked,
            sent,
            expires_at,
        }]
    };
    let (ahead, behind) = (rows(3, 4, 6000), rows(2, 2, 7000));
    log.write("mqtt cursors", move |c| {
        mqtt::save_mqtt_cursors(c, &ahead, 1200)
    })
    .await?;
    log.write("mqtt cursors never go back", move |c| {
        mqtt::save_mqtt_cursors(c, &behind, 1300)
    })
    .await?;
    log.write("mqtt resumed", move |c| {
        mqtt::open_mqtt_session(c, a, "a|x", false, 9000, 1400, 2)
    })
    .await?;
    log.write("mqtt expired", move |c| {
        mqtt::open_mqtt_session(c, a, "a|x", false, 20_000, 9500, 2)
    })
    .await?;
    log.write("mqtt clean start", move |c| {
        mqtt::open_mqtt_session(c, a, "a|x", true, 20_000, 9600, 2)
    })
    .await?;
    log.write("mqtt second", move |c| {
        mqtt::open_mqtt_session(c, a, "a|y", false, 20_000, 9700, 2)
    })
    .await?;
    log.write("mqtt third evicts the least recently seen", move |c| {
        let third = mqtt::open_mqtt_session(c, a, "a|z", false, 20_000, 9800, 2)?;
        Ok((
            third,
            mqtt::mqtt_session_exists(c, a, "a|x")?,
            mqtt::mqtt_session_exists(c, a, "a|y")?,
        ))
    })
    .await?;
    log.write("mqtt another user's", move |c| {
        mqtt::open_mqtt_session(c, b, "b|x", false, 10_000, 9900, 2)
    })
    .await?;
    log.write("mqtt end", move |c| {
        Ok((
            mqtt::end_mqtt_session(c, a, "a|y")?,
            mqtt::end_mqtt_session(c, a, "a|y")?,
        ))
    })
    .await?;
    log.write("mqtt purge", move |c| {
        let purged = mqtt::purge_mqtt_sessions(c, 15_000, 10)?;
        Ok((
            purged,
            mqtt::mqtt_session_exists(c, b, "b|x")?,
            mqtt::mqtt_session_exists(c, a, "a|z")?,
        ))
    })
    .await?;
    Ok(())
}

/// Every operation answers on PostgreSQL as on SQLite.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn messages_answer_as_on_sqlite() -> Result<()> {
    let Some(pg) = TestPostgres::init().await? else {
        return Ok(());
    };
    let dir = tempfile::tempdir()?;
    let sqlite = scenario(Store::open(&dir.path().join("chat.db"))?).await?;
    let postgres = scenario(Store::connect_postgres(&pg.url(), &Options::default()).await?).await?;
    let mut differ = 0;
    for (s, p) in sqlite.iter().zip(&postgres) {
        if s != p {
            differ += 1;
            eprintln!("sqlite:   {s}\npostgres: {p}\n");
        }
    }
    if differ > 0 || sqlite.len() != postgres.len() {
        bail!(
            "{differ} of {} steps differ ({} on postgres)",
            sqlite.len(),
            postgres.len()
        );
    }
    Ok(())
}

/// A message to a group of 1,000 reaches every member once, at their next
/// cursor, gap-free (one statement, `messages::post_many`).
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_large_group_fans_out_in_one_statement() -> Result<()> {
    let Some(pg) = TestPostgres::init().await? else {
        return Ok(());
    };
    let store = Store::connect_postgres(&pg.url(), &Options::default()).await?;
    let (conv, owner) = store
        .write(|c| {
            let ids = (0..1000)
                .map(|i| users::insert(c, &format!("m{i}"), "!", 0).map(|u| u.id))
                .collect::<Result<Vec<u64>, _>>()?;
            let g = groups::create(c, "all", ids[0], 0)?;
            for &u in &ids[1..] {
                messages::add_member(c, g.conversation_id, u, "member", 0)?;
            }
            // One member has an event before.
            messages::append(c, ids[7], "test", None, Some("{}"))?;
            Ok::<_, StoreError>((g.conversation_id, ids[0]))
        })
        .await?;
    let backend = Backend::connect(&pg.url(), &Options::default()).await?;
    let (m, cursors) = store
        .write(move |c| {
            let new = NewRow {
                conversation_id: conv,
                sender: owner,
                client_msg_id: "big",
                body: r#"{"text":"hi all"}"#,
                text: Some("hi all"),
                kind: "user",
                now: 1,
                extras: None,
            };
            let Posted { row, deliveries } =
                post_one(c, &new)?.ok_or(StoreError::NotFound("new"))?;
            Ok::<_, StoreError>((row, deliveries))
        })
        .await?;
    assert_eq!(m.seq, 1);
    assert_eq!(cursors.len(), 1000);
    let mut ids: Vec<u64> = cursors.iter().map(|&(u, _)| u).collect();
    ids.dedup();
    assert_eq!(ids.len(), 1000, "sorted by user, once each");
    for (i, &(_, cursor)) in cursors.iter().enumerate() {
        assert_eq!(cursor, if i == 7 { 2 } else { 1 }, "member {i}");
    }
    let rows: i64 = backend
        .run(Mode::Read, move |s| {
            let r = s.query_one(
                "SELECT count(*) FROM inbox WHERE message_id = $1",
                &[&(m.id as i64)],
            )?;
            Ok::<i64, StoreError>(r.get(0))
        })
        .await?;
    assert_eq!(rows, 1000);
    Ok(())
}

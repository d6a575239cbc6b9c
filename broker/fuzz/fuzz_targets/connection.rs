//! Arbitrary byte streams into the gateway's connection task, end to end:
//! a real [`Broker`] (rumqttd's router included) runs in-process, and each
//! input is one client connection over an in-memory duplex stream.
//!
//! Input layout (so seed files stay readable packet dumps):
//! - byte 0, mode: bit 7 set = raw (the bytes are the whole stream, and every
//!   CONNECT is refused); else the harness writes a valid CONNECT first:
//!   bit 0 MQTT 5, bit 1 user 2 (else 1), bits 2-3 client id, bit 4
//!   persistent session, bit 5 keep-alive 60 s (else 0), bit 6 a will;
//! - byte 1: bits 0-6 chunk size for writing the rest (0 = all at once),
//!   bit 7: if the client subscribes, once a SUBACK came back push to the user (with MQTT 5
//!   properties, and without) and wait for a delivery;
//! - the rest: what the client sends (after the CONNECT, unless raw).
//!
//! Checks: nothing panics (libFuzzer's hook aborts on a panic in any thread:
//! connection task, uplink worker, router); the connection ends once the
//! client closes; it leaves no registration behind; everything the gateway
//! writes is well-framed server-to-client MQTT; the client receives PUBLISHes
//! only from its own topic space; and another user's connection, held open
//! across all inputs, receives only what was pushed to it.
#![no_main]

use std::pin::Pin;
use std::sync::atomic::{AtomicBool, Ordering};
use std::sync::{Arc, Mutex, OnceLock};
use std::time::Duration;

use bytes::{Bytes, BytesMut};
use futures_util::FutureExt;
use libfuzzer_sys::fuzz_target;
use mqchat_broker::fuzzing::{self, Version};
use mqchat_broker::{
    Authenticator, Broker, PendingReply, Principal, Refusal, Settings, Uplink, UplinkRequest,
};
use rumqttd::protocol::{
    v4, Connect, Filter, LastWill, Login, Packet, PublishProperties, QoS, RetainForwardRule,
    Subscribe,
};
use tokio::io::{AsyncReadExt, AsyncWriteExt, DuplexStream};
use tokio::runtime::Runtime;
use tokio::sync::watch;
use tokio_util::sync::CancellationToken;

/// The user whose connection stays open across inputs.
const VICTIM: u64 = 1000;
const PASSWORD: &str = "pw";
const CLIENT_IDS: [&str; 4] = ["", "a", "phone", "x/+#$%"];

/// Accepts user ids 1, 2 and the victim with the password "pw", unless
/// `accept` is off (raw mode: every CONNECT is refused, so arbitrary client
/// ids never pile up as persistent sessions in the router).
struct Auth {
    accept: AtomicBool,
}

impl Authenticator for Auth {
    fn authenticate(&self, username: &str, password: &[u8]) -> Result<Principal, Refusal> {
        if !self.accept.load(Ordering::SeqCst) || password != PASSWORD.as_bytes() {
            return Err(Refusal::BadCredentials);
        }
        match username.parse::<u64>() {
            Ok(user_id @ (1 | 2 | VICTIM)) => Ok(Principal {
                user_id,
                session_id: 1,
            }),
            _ => Err(Refusal::NotAuthorized),
        }
    }
}

/// Answers every uplink request at once.
struct Echo;

impl Uplink for Echo {
    fn handle(
        &self,
        _request: UplinkRequest,
    ) -> Pin<Box<dyn std::future::Future<Output = PendingReply> + Send + '_>> {
        Box::pin(async {
            Box::pin(async { Bytes::from_static(b"{\"status\":201}") }) as PendingReply
        })
    }
}

struct Harness {
    rt: Runtime,
    broker: Broker,
    auth: Arc<Auth>,
    victim: Mutex<(DuplexStream, BytesMut)>,
}

fn harness() -> &'static Harness {
    static HARNESS: OnceLock<Harness> = OnceLock::new();
    HARNESS.get_or_init(|| {
        let rt = tokio::runtime::Builder::new_current_thread()
            .enable_all()
            .build()
            .expect("runtime");
        let auth = Arc::new(Auth {
            accept: AtomicBool::new(true),
        });
        let settings = Settings {
            connect_timeout: Duration::from_secs(2),
            write_timeout: Duration::from_secs(2),
            ..Settings::default()
        };
        let broker = rt
            .block_on(async { Broker::start(settings, auth.clone(), CancellationToken::new()) })
            .expect("broker");
        broker.set_uplink(Arc::new(Echo));
        let victim = rt.block_on(connect_victim(&broker));
        Harness {
            rt,
            broker,
            auth,
            victim: Mutex::new((victim, BytesMut::new())),
        }
    })
}

/// Connects the victim (MQTT 3.1.1, QoS 0 on its own `#`) and waits for its
/// CONNACK and SUBACK.
async fn connect_victim(broker: &Broker) -> DuplexStream {
    let (mut client, server) = tokio::io::duplex(1 << 20);
    let b = broker.clone();
    tokio::spawn(async move { fuzzing::serve(&b, server).await });
    let mut out = BytesMut::new();
    let connect = Connect {
        keep_alive: 0,
        client_id: "victim".into(),
        clean_session: true,
    };
    let login = Login {
        username: VICTIM.to_string(),
        password: PASSWORD.into(),
    };
    Version::V311
        .write(
            Packet::Connect(connect, None, None, None, Some(login)),
            &mut out,
        )
        .expect("connect");
    Version::V311
        .write(
            Packet::Subscribe(
                subscribe(&format!("users/{VICTIM}/#"), QoS::AtMostOnce),
                None,
            ),
            &mut out,
        )
        .expect("subscribe");
    client.write_all(&out).await.expect("victim write");
    let mut got = [0u8; 9];
    client.read_exact(&mut got).await.expect("victim acks");
    assert_eq!(
        got,
        [0x20, 2, 0, 0, 0x90, 3, 0, 1, 0],
        "victim not connected"
    );
    client
}

fn subscribe(filter: &str, qos: QoS) -> Subscribe {
    Subscribe {
        pkid: 1,
        filters: vec![Filter {
            path: filter.into(),
            qos,
            nolocal: false,
            preserve_retain: false,
            retain_forward_rule: RetainForwardRule::OnEverySubscribe,
        }],
    }
}

/// What the reader has seen so far.
#[derive(Default, Clone, Copy)]
struct Seen {
    subacks: usize,
    publishes: usize,
}

fuzz_target!(|data: &[u8]| {
    let h = harness();
    h.rt.block_on(async {
        match tokio::time::timeout(Duration::from_secs(10), one_connection(h, data)).await {
            Ok(()) => {}
            Err(_) => panic!("the connection did not end within 10 s of the client closing"),
        }
        check_victim(h);
    });
});

async fn one_connection(h: &Harness, data: &[u8]) {
    let mode = data.first().copied().unwrap_or(0x80);
    let control = data.get(1).copied().unwrap_or(0);
    let rest = data.get(2..).unwrap_or_default();
    let raw = mode & 0x80 != 0;
    let version = if mode & 1 != 0 {
        Version::V5
    } else {
        Version::V311
    };
    let user: u64 = if mode & 2 != 0 { 2 } else { 1 };
    let chunk = usize::from(control & 0x7F);
    // Pushing is worth the wait only when the client asked for a subscription.
    let push = control & 0x80 != 0 && !raw && frame_types(rest).contains(&8);
    h.auth.accept.store(!raw, Ordering::SeqCst);

    let mut stream = BytesMut::new();
    if !raw {
        let connect = Connect {
            keep_alive: if mode & 0x20 != 0 { 60 } else { 0 },
            client_id: CLIENT_IDS[usize::from((mode >> 2) & 3)].into(),
            clean_session: mode & 0x10 == 0,
        };
        let will = (mode & 0x40 != 0).then(|| LastWill {
            topic: Bytes::from(format!("users/{user}/up/will")),
            message: Bytes::from_static(b"gone"),
            qos: QoS::AtLeastOnce,
            retain: false,
        });
        let login = Login {
            username: user.to_string(),
            password: PASSWORD.into(),
        };
        version
            .write(
                Packet::Connect(connect, None, will, None, Some(login)),
                &mut stream,
            )
            .expect("connect");
    }
    stream.extend_from_slice(rest);

    let (client, server) = tokio::io::duplex(1 << 16);
    let broker = h.broker.clone();
    let served = tokio::spawn(async move { fuzzing::serve(&broker, server).await });
    let (mut rd, mut wr) = tokio::io::split(client);

    let (seen_tx, mut seen_rx) = watch::channel(Seen::default());
    let reader = tokio::spawn(async move {
        let mut out = Vec::new();
        let mut buf = [0u8; 4096];
        let mut seen = Seen::default();
        loop {
            match rd.read(&mut buf).await {
                Ok(0) | Err(_) => break,
                Ok(n) => out.extend_from_slice(&buf[..n]),
            }
            let frames = frame_types(&out);
            seen.subacks = frames.iter().filter(|t| **t == 9).count();
            seen.publishes = frames.iter().filter(|t| **t == 3).count();
            let _ = seen_tx.send(seen);
        }
        out
    });

    let step = if chunk == 0 {
        stream.len().max(1)
    } else {
        chunk
    };
    for piece in stream.chunks(step) {
        if wr.write_all(piece).await.is_err() {
            break;
        }
        tokio::task::yield_now().await;
    }
    if push {
        let _ = tokio::time::timeout(
            Duration::from_millis(20),
            seen_rx.wait_for(|s| s.subacks > 0),
        )
        .await;
        let topic = format!("users/{user}/events");
        let props = PublishProperties {
            correlation_data: Some(Bytes::from_static(b"c")),
            user_properties: vec![("k".into(), "v".into())],
            ..Default::default()
        };
        let b = h.broker.clone();
        let before = seen_rx.borrow().publishes;
        tokio::task::spawn_blocking(move || {
            fuzzing::publish_with_properties(&b, topic.clone(), Bytes::from_static(b"p"), props);
            b.publish(topic, Bytes::from_static(b"q"));
        })
        .await
        .expect("push");
        let _ = tokio::time::timeout(
            Duration::from_millis(20),
            seen_rx.wait_for(|s| s.publishes > before),
        )
        .await;
    }
    // Another user's secret: it must reach the victim and nobody else.
    let b = h.broker.clone();
    tokio::task::spawn_blocking(move || {
        b.publish(
            format!("users/{VICTIM}/events"),
            Bytes::from_static(b"secret"),
        )
    })
    .await
    .expect("secret");
    let _ = wr.shutdown().await;

    served.await.expect("connection task");
    let out = reader.await.expect("reader");
    assert_eq!(
        h.broker.connection_count(),
        1,
        "a connection stayed registered after it ended"
    );
    check_output(&out, version, user, raw);
}

/// Packet types of the complete frames in `out`.
fn frame_types(out: &[u8]) -> Vec<u8> {
    let mut types = Vec::new();
    let mut at = 0;
    while let Ok(h) = v4::check(out[at..].iter(), usize::MAX >> 8) {
        types.push(out[at] >> 4);
        at += h.frame_length();
    }
    types
}

/// Everything the gateway wrote is well-framed server-to-client MQTT, and
/// every PUBLISH is in the client's own space.
fn check_output(out: &[u8], version: Version, user: u64, raw: bool) {
    let mut buf = BytesMut::from(out);
    let mut first = true;
    while !buf.is_empty() {
        let header = v4::check(buf.iter(), 1 << 20).unwrap_or_else(|e| {
            panic!("gateway wrote a broken frame ({e:?}) at {buf:?} in {out:?}")
        });
        let kind = buf[0] >> 4;
        if first && !raw {
            assert_eq!(kind, 2, "the first packet must be CONNACK");
        }
        if raw {
            // Refused or dropped: at most a CONNACK.
            assert!(first && kind == 2, "raw mode got packet type {kind}");
        }
        first = false;
        assert!(
            matches!(kind, 2 | 3 | 4 | 5 | 6 | 7 | 9 | 11 | 13 | 14),
            "gateway wrote a client-to-server packet type {kind}"
        );
        if kind == 3 {
            let Ok(Packet::Publish(publish, _)) = version.read(&mut buf, 1 << 20) else {
                panic!("gateway wrote a PUBLISH it cannot decode");
            };
            let own = format!("users/{user}/");
            assert!(
                publish.topic.starts_with(own.as_bytes()),
                "user {user} received {:?}",
                publish.topic
            );
        } else {
            let _ = buf.split_to(header.frame_length());
        }
    }
}

/// The victim received only the secrets pushed to it.
fn check_victim(h: &Harness) {
    let mut guard = h.victim.lock().unwrap_or_else(|e| e.into_inner());
    let (victim, pending) = &mut *guard;
    let mut buf = [0u8; 4096];
    // Whatever has arrived by now; later pushes are checked next time.
    while let Some(read) = victim.read(&mut buf).now_or_never() {
        match read {
            Ok(0) | Err(_) => panic!("the victim's connection closed"),
            Ok(n) => pending.extend_from_slice(&buf[..n]),
        }
    }
    loop {
        match Version::V311.read(pending, 1 << 20) {
            Ok(Packet::Publish(p, _)) => assert!(
                &p.topic[..] == format!("users/{VICTIM}/events").as_bytes()
                    && &p.payload[..] == b"secret",
                "the victim received {p:?}"
            ),
            Ok(other) => panic!("the victim received {other:?}"),
            Err(_) => break,
        }
    }
}

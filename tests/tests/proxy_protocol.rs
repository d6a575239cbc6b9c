//! PROXY protocol (v1 and v2) on raw sockets against one chatd that trusts
//! 127.0.0.9 (`--trusted-proxies`): the "balancer" is a socket bound to
//! that address, and the test's own calls (registration, from 127.0.0.1)
//! stay untrusted. From the trusted address every connection must open
//! with a header, whose client address is what the per-address limits
//! count; from anywhere else a header is just bytes.

use std::net::{IpAddr, Ipv4Addr, SocketAddrV4};
use std::time::{Duration, Instant};

use anyhow::{anyhow, ensure, Result};
use mqchat_e2e::{connect_from, raw, TestServer};
use tokio::io::{AsyncReadExt, AsyncWriteExt};
use tokio::net::TcpStream;

/// The balancer's address, the only one trusted.
const BALANCER: IpAddr = IpAddr::V4(Ipv4Addr::new(127, 0, 0, 9));
/// Anyone else on loopback.
const STRANGER: IpAddr = IpAddr::V4(Ipv4Addr::new(127, 0, 0, 2));
const TRUST: [&str; 2] = ["--trusted-proxies", "127.0.0.9/32"];
const WAIT: Duration = Duration::from_secs(5);

/// `PROXY TCP4 ...` (v1, text) for a client at `from`.
fn v1(from: SocketAddrV4) -> Vec<u8> {
    format!(
        "PROXY TCP4 {} 127.0.0.1 {} 8080\r\n",
        from.ip(),
        from.port()
    )
    .into_bytes()
}

/// A v2 (binary) PROXY command, TCP over IPv4, for a client at `from`.
fn v2(from: SocketAddrV4) -> Vec<u8> {
    let mut h = b"\r\n\r\n\0\r\nQUIT\n".to_vec();
    h.push(0x21); // version 2, PROXY
    h.push(0x11); // AF_INET, STREAM
    h.extend_from_slice(&12u16.to_be_bytes());
    h.extend_from_slice(&from.ip().octets());
    h.extend_from_slice(&[127, 0, 0, 1]);
    h.extend_from_slice(&from.port().to_be_bytes());
    h.extend_from_slice(&8080u16.to_be_bytes());
    h
}

/// Builds a header for a client address.
type Header = fn(SocketAddrV4) -> Vec<u8>;

fn client(a: u8, b: u8, port: u16) -> SocketAddrV4 {
    SocketAddrV4::new(Ipv4Addr::new(203, 0, a, b), port)
}

const GET: &[u8] = b"GET /healthz HTTP/1.1\r\nHost: chatd\r\n\r\n";

/// Connects from `from` to `to`, sends `bytes`.
async fn open(from: IpAddr, to: std::net::SocketAddr, bytes: &[u8]) -> Result<TcpStream> {
    let mut sock = connect_from(from, to).await?;
    sock.write_all(bytes).await?;
    Ok(sock)
}

/// The HTTP status the server answers on `sock` with, or `None` when it
/// closes the connection without answering.
async fn status(sock: &mut TcpStream) -> Result<Option<u16>> {
    let mut buf = Vec::new();
    let mut chunk = [0u8; 512];
    loop {
        if let Some(end) = buf.windows(2).position(|w| w == b"\r\n") {
            let line = String::from_utf8_lossy(&buf[..end]).into_owned();
            let code = line
                .split(' ')
                .nth(1)
                .and_then(|c| c.parse().ok())
                .ok_or_else(|| anyhow!("not a status line: {line:?}"))?;
            return Ok(Some(code));
        }
        match tokio::time::timeout(WAIT, sock.read(&mut chunk)).await {
            Err(_) => return Err(anyhow!("neither an answer nor a close within {WAIT:?}")),
            Ok(Ok(0)) | Ok(Err(_)) => {
                ensure!(buf.is_empty(), "closed mid-line: {buf:?}");
                return Ok(None);
            }
            Ok(Ok(n)) => buf.extend_from_slice(&chunk[..n]),
        }
    }
}

/// Whether the server closes `sock` (within [`WAIT`]) without sending
/// anything.
async fn closed(sock: &mut TcpStream) -> Result<bool> {
    let mut chunk = [0u8; 64];
    match tokio::time::timeout(WAIT, sock.read(&mut chunk)).await {
        Err(_) => Ok(false),
        Ok(Ok(0)) | Ok(Err(_)) => Ok(true),
        Ok(Ok(n)) => Err(anyhow!("got {:?} instead of a close", &chunk[..n])),
    }
}

/// A CONNACK accepting the connection, read from `sock`.
async fn connack(sock: &mut TcpStream) -> Result<()> {
    let mut ack = [0u8; 4];
    tokio::time::timeout(WAIT, sock.read_exact(&mut ack))
        .await
        .map_err(|_| anyhow!("no CONNACK"))??;
    ensure!(ack == [0x20, 2, 0, 0], "not an accepting CONNACK: {ack:?}");
    Ok(())
}

/// v1 and v2 alike: three connections from the balancer carrying three
/// client addresses are all served under `--http-connections-per-address
/// 2`; three carrying the same one, the third is refused (closed unanswered).
#[tokio::test]
async fn v1_and_v2_headers_from_a_trusted_peer_set_the_address_the_cap_counts() -> Result<()> {
    let server =
        TestServer::start_with(&[TRUST[0], TRUST[1], "--http-connections-per-address", "2"])
            .await?;
    let versions: [(&str, Header); 2] = [("v1", v1), ("v2", v2)];
    for (round, (version, header)) in (1u8..).zip(versions) {
        let mut held = Vec::new();
        for i in 1..=3 {
            let mut request = header(client(round, i, 40_000 + u16::from(i)));
            request.extend_from_slice(GET);
            held.push(open(BALANCER, server.http, &request).await?);
        }
        for (i, sock) in held.iter_mut().enumerate() {
            let got = status(sock).await?;
            ensure!(
                got == Some(200),
                "{version}: client {i} of three different ones: {got:?}"
            );
        }

        let same = client(round, 100, 50_000);
        let mut kept = Vec::new();
        for i in 0..3 {
            let mut request = header(same);
            request.extend_from_slice(GET);
            let mut sock = open(BALANCER, server.http, &request).await?;
            let got = status(&mut sock).await?;
            let want = if i < 2 { Some(200) } else { None };
            ensure!(
                got == want,
                "{version}: connection {i} of one client: {got:?}, not {want:?}"
            );
            kept.push(sock);
        }
    }
    Ok(())
}

/// From the trusted address, a connection with no header, a malformed one,
/// or none within the header timeout (3 s; the HTTP header timeout here is
/// 60 s) is closed unanswered; on the MQTT port too.
#[tokio::test]
async fn a_trusted_peer_without_a_valid_header_is_closed() -> Result<()> {
    let server =
        TestServer::start_with(&[TRUST[0], TRUST[1], "--http-header-timeout", "60"]).await?;
    let alice = server.user("alice").await?;
    let bad_v2 = {
        let mut h = v2(client(9, 9, 1));
        h[12] = 0x31; // version 3
        h
    };
    let cases: [(&str, Vec<u8>); 4] = [
        ("no header", Vec::new()),
        (
            "malformed v1",
            b"PROXY TCP4 not-an-address 127.0.0.1 1 80\r\n".to_vec(),
        ),
        (
            "v1 with no end",
            [b"PROXY TCP4 ".as_slice(), &[b'1'; 200]].concat(),
        ),
        ("bad v2 version", bad_v2),
    ];
    for (what, prefix) in cases {
        let request = [prefix.as_slice(), GET].concat();
        let mut sock = open(BALANCER, server.http, &request).await?;
        let got = status(&mut sock).await?;
        ensure!(got.is_none(), "http, {what}: answered {got:?}");

        let request = [prefix.as_slice(), &raw::connect(4, "c", &alice, 30)].concat();
        let mut sock = open(BALANCER, server.mqtt, &request).await?;
        ensure!(closed(&mut sock).await?, "mqtt, {what}: not closed");
    }

    let started = Instant::now();
    let mut silent = connect_from(BALANCER, server.http).await?;
    ensure!(closed(&mut silent).await?, "a silent trusted peer is kept");
    ensure!(
        started.elapsed() < Duration::from_secs(5),
        "closed only after {:?}",
        started.elapsed()
    );
    Ok(())
}

/// MQTT over TCP from the balancer: the header's address is what the
/// unauthenticated-per-address cap (1 here) counts. A second connection
/// carrying client X closes X's first (still without CONNECT); one carrying
/// client Y is left alone and connects.
#[tokio::test]
async fn mqtt_from_a_trusted_peer_counts_the_carried_address() -> Result<()> {
    let server = TestServer::start_with(&[
        TRUST[0],
        TRUST[1],
        "--mqtt-unauthenticated-per-address",
        "1",
    ])
    .await?;
    let alice = server.user("alice").await?;
    let (x, y) = (client(1, 1, 1000), client(2, 2, 2000));
    let mut x1 = open(BALANCER, server.mqtt, &v2(x)).await?;
    // Y's first is open, unauthenticated, while X's second arrives.
    let mut y1 = open(BALANCER, server.mqtt, &v1(y)).await?;
    let mut y2 = open(BALANCER, server.mqtt, &v1(client(2, 3, 2001))).await?;
    y2.write_all(&raw::connect(4, "y2", &alice, 30)).await?;
    connack(&mut y2).await?;
    let mut x2 = open(BALANCER, server.mqtt, &v2(x)).await?;
    ensure!(closed(&mut x1).await?, "x's first was not made room for");
    y1.write_all(&raw::connect(4, "y1", &alice, 30)).await?;
    connack(&mut y1).await?;
    x2.write_all(&raw::connect(4, "x2", &alice, 30)).await?;
    connack(&mut x2).await?;
    Ok(())
}

/// A header from an untrusted address is not believed: over HTTP it is a
/// bad request (never served), over MQTT a bad CONNECT, and the
/// per-address cap counts the stranger's own address whatever its header
/// says. The same header from the balancer is honoured.
#[tokio::test]
async fn an_untrusted_peers_proxy_header_is_not_believed() -> Result<()> {
    let server =
        TestServer::start_with(&[TRUST[0], TRUST[1], "--http-connections-per-address", "2"])
            .await?;
    let alice = server.user("alice").await?;
    let forged = client(7, 7, 7000);
    for header in [v1(forged), v2(forged)] {
        let mut request = header.clone();
        request.extend_from_slice(GET);
        let mut trusted = open(BALANCER, server.http, &request).await?;
        ensure!(
            status(&mut trusted).await? == Some(200),
            "from the balancer"
        );

        let mut sock = open(STRANGER, server.http, &request).await?;
        let got = status(&mut sock).await?;
        ensure!(got != Some(200), "a stranger's header was honoured");

        let mut request = header;
        request.extend_from_slice(&raw::connect(4, "forged", &alice, 30));
        let mut sock = open(STRANGER, server.mqtt, &request).await?;
        ensure!(
            closed(&mut sock).await?,
            "a stranger's MQTT header was honoured"
        );
    }

    // Two plain connections from the stranger, answered and kept: its cap
    // is full, so a third is refused whatever address its header claims.
    let mut kept = Vec::new();
    for i in 0..2 {
        let mut sock = open(STRANGER, server.http, GET).await?;
        let got = status(&mut sock).await?;
        ensure!(got == Some(200), "plain connection {i}: {got:?}");
        kept.push(sock);
    }
    let mut request = v1(client(8, 8, 8000));
    request.extend_from_slice(GET);
    let mut sock = open(STRANGER, server.http, &request).await?;
    let got = status(&mut sock).await?;
    ensure!(
        got.is_none(),
        "the stranger's third connection was counted elsewhere: {got:?}"
    );
    Ok(())
}

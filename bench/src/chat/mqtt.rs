//! A minimal MQTT 3.1.1 client: one TCP connection, CONNECT with a user's
//! token, SUBSCRIBE `users/{id}/#` (or another filter) at QoS 1, then
//! PUBLISH payloads in batches with their PUBACKs written back in one go;
//! senders over the MQTT uplink also queue their own QoS 1 PUBLISHes. Much
//! lighter than a full client, so that thousands of them leave the cores to
//! the server.

use std::net::{IpAddr, SocketAddr};

use anyhow::{bail, Result};
use bytes::{Bytes, BytesMut};
use rumqttc::mqttbytes::v4::{Connect, Packet, PubAck, Publish, Subscribe};
use rumqttc::mqttbytes::{Error as CodecError, QoS};
use tokio::io::{AsyncReadExt, AsyncWriteExt};
use tokio::net::{TcpSocket, TcpStream};

use super::chatd::BenchUser;

const MAX_PACKET: usize = 1 << 20;

#[derive(Debug)]
pub struct Subscriber {
    stream: TcpStream,
    buf: BytesMut,
    out: BytesMut,
}

/// Connects as `user` (from `source`, if given: one of several loopback
/// addresses, when one runs out of ports) and subscribes to its events.
pub async fn subscribe(
    addr: SocketAddr,
    source: Option<IpAddr>,
    user: &BenchUser,
) -> Result<Subscriber> {
    subscribe_to(addr, source, user, &format!("users/{}/#", user.id), true).await
}

/// Connects as `user` (with a clean or a persistent session) and
/// subscribes to `filter` at QoS 1, with no keep-alive: idle connections
/// send no pings.
pub async fn subscribe_to(
    addr: SocketAddr,
    source: Option<IpAddr>,
    user: &BenchUser,
    filter: &str,
    clean_session: bool,
) -> Result<Subscriber> {
    subscribe_with(addr, source, user, filter, clean_session, 0).await
}

/// [`subscribe_to`] with a keep-alive of `keep_alive_secs` (bare rumqttd
/// refuses 0). This client sends no pings: keep it longer than the run.
pub async fn subscribe_with(
    addr: SocketAddr,
    source: Option<IpAddr>,
    user: &BenchUser,
    filter: &str,
    clean_session: bool,
    keep_alive_secs: u16,
) -> Result<Subscriber> {
    let socket = match addr {
        SocketAddr::V4(_) => TcpSocket::new_v4()?,
        SocketAddr::V6(_) => TcpSocket::new_v6()?,
    };
    if let Some(ip) = source {
        socket.bind(SocketAddr::new(ip, 0))?;
    }
    let stream = socket.connect(addr).await?;
    stream.set_nodelay(true)?;
    let mut s = Subscriber {
        stream,
        buf: BytesMut::with_capacity(4096),
        out: BytesMut::with_capacity(256),
    };
    let mut connect = Connect::new(format!("bench-{}", user.id));
    connect.keep_alive = keep_alive_secs;
    connect.clean_session = clean_session;
    connect.set_login(user.id.to_string(), user.token.clone());
    Packet::Connect(connect).write(&mut s.out, MAX_PACKET)?;
    s.flush().await?;
    match s.next_packet().await? {
        Packet::ConnAck(ack) if ack.code == rumqttc::ConnectReturnCode::Success => {}
        other => bail!("user {}: CONNECT answered with {other:?}", user.id),
    }
    let mut sub = Subscribe::new(filter, QoS::AtLeastOnce);
    sub.pkid = 1;
    Packet::Subscribe(sub).write(&mut s.out, MAX_PACKET)?;
    s.flush().await?;
    loop {
        match s.next_packet().await? {
            Packet::SubAck(ack)
                if ack
                    .return_codes
                    .iter()
                    .all(|c| matches!(c, rumqttc::SubscribeReasonCode::Success(_))) =>
            {
                break
            }
            Packet::SubAck(ack) => bail!("user {}: SUBSCRIBE refused: {ack:?}", user.id),
            _ => {}
        }
    }
    // Keep idle connections small on this side too.
    s.buf = BytesMut::new();
    Ok(s)
}

impl Subscriber {
    /// Queues a QoS 1 PUBLISH (written by the next [`Subscriber::flush`]).
    pub fn queue_publish(&mut self, topic: &str, payload: Bytes, pkid: u16) -> Result<()> {
        let mut publish = Publish::from_bytes(topic, QoS::AtLeastOnce, payload);
        publish.pkid = pkid;
        Packet::Publish(publish).write(&mut self.out, MAX_PACKET)?;
        Ok(())
    }

    /// Reads what the server sent so far into the buffer (cancel-safe: a
    /// read that did not complete took nothing).
    pub async fn read_more(&mut self) -> Result<()> {
        self.fill().await
    }

    /// Takes the PUBLISH payloads complete in the buffer, queueing the
    /// acknowledgements of the QoS 1 ones; other packets are skipped.
    pub fn take_publishes(&mut self, into: &mut Vec<Bytes>) -> Result<()> {
        loop {
            match Packet::read(&mut self.buf, MAX_PACKET) {
                Ok(Packet::Publish(p)) => {
                    if p.qos != QoS::AtMostOnce {
                        Packet::PubAck(PubAck::new(p.pkid)).write(&mut self.out, MAX_PACKET)?;
                    }
                    into.push(p.payload);
                }
                Ok(_) => {}
                Err(CodecError::InsufficientBytes(_)) => return Ok(()),
                Err(e) => bail!("bad packet from the server: {e}"),
            }
        }
    }

    /// Takes the PUBACKs complete in the buffer (their packet ids, in
    /// order); other packets are skipped.
    pub fn take_acks(&mut self, into: &mut Vec<u16>) -> Result<()> {
        loop {
            match Packet::read(&mut self.buf, MAX_PACKET) {
                Ok(Packet::PubAck(ack)) => into.push(ack.pkid),
                Ok(_) => {}
                Err(CodecError::InsufficientBytes(_)) => return Ok(()),
                Err(e) => bail!("bad packet from the server: {e}"),
            }
        }
    }

    pub async fn flush(&mut self) -> Result<()> {
        if !self.out.is_empty() {
            self.stream.write_all(&self.out).await?;
            self.out.clear();
        }
        Ok(())
    }

    async fn fill(&mut self) -> Result<()> {
        if self.buf.capacity() - self.buf.len() < 1024 {
            self.buf.reserve(16 * 1024);
        }
        if self.stream.read_buf(&mut self.buf).await? == 0 {
            bail!("connection closed by the server");
        }
        Ok(())
    }

    async fn next_packet(&mut self) -> Result<Packet> {
        loop {
            match Packet::read(&mut self.buf, MAX_PACKET) {
                Ok(p) => return Ok(p),
                Err(CodecError::InsufficientBytes(_)) => self.fill().await?,
                Err(e) => bail!("bad packet from the server: {e}"),
            }
        }
    }

    /// Waits for data, then returns every PUBLISH payload it completed
    /// (at least one), after acknowledging the QoS 1 ones.
    pub async fn next_batch(&mut self, into: &mut Vec<Bytes>) -> Result<()> {
        loop {
            self.take_publishes(into)?;
            self.flush().await?;
            if !into.is_empty() {
                return Ok(());
            }
            self.fill().await?;
        }
    }
}

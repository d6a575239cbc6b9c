//! What goes to the client: deliveries (a persistent session's replay,
//! then the mailbox), acknowledgements, and the output buffer.

use super::*;

impl<S> Connection<S>
where
    S: AsyncRead + AsyncWrite + Unpin + Send,
{
    /// Writes what is due, as far as the window of QoS 1 deliveries
    /// allows, flushing every 64 KiB: a persistent session's replay from
    /// the store first; the mailbox once the replay has caught up.
    pub(super) async fn deliver(&mut self) -> Result<(), ConnError> {
        loop {
            if self.replaying() {
                if !self.pump_replay().await? {
                    return Ok(());
                }
                continue;
            }
            match self.drain_mailbox()? {
                Drained::Done => return Ok(()),
                Drained::BufferFull => self.flush().await?,
                // A live event past a gap: the store has what is missing.
                Drained::Gap => {}
            }
        }
    }

    /// Takes deliveries from the mailbox into the output buffer while the
    /// window of unacknowledged QoS 1 deliveries has room. A persistent
    /// session drops live events it was already given (cursor at or below
    /// the last it was sent) and stops at one past a gap, which is then
    /// replayed from the store.
    pub(super) fn drain_mailbox(&mut self) -> Result<Drained, ConnError> {
        let Connection {
            direct: Direct { mailbox, flight },
            persist,
            outbuf,
            version,
            shared,
            ..
        } = self;
        let (mut written, mut dropped, mut buffer_full, mut gap) = (0u64, 0u64, false, false);
        let mut failed = None;
        let taken = mailbox.take(|d| {
            if outbuf.len() >= 64 * 1024 {
                buffer_full = true;
                return false;
            }
            let qos1 = d.qos != QoS::AtMostOnce;
            if qos1 && flight.inflight.len() >= flight.window {
                return false;
            }
            let mut cursor = None;
            if let Some(p) = persist.as_deref_mut() {
                match p.admit(&d.topic, &d.payload) {
                    persist::Admit::Deliver(c) => cursor = c,
                    persist::Admit::Duplicate => return true,
                    persist::Admit::Gap => {
                        gap = true;
                        return false;
                    }
                }
            }
            let range = cursor.map(|c| (c, c));
            match put(
                outbuf,
                *version,
                flight,
                Put {
                    topic: &d.topic,
                    payload: &d.payload,
                    qos: d.qos,
                    properties: d.properties.clone(),
                    dup: false,
                    range,
                },
            ) {
                Ok(true) => written += 1,
                Ok(false) => dropped += 1,
                Err(e) => {
                    failed = Some(e);
                    return false;
                }
            }
            if let (Some(p), Some(c)) = (persist.as_deref_mut(), cursor) {
                p.delivered(c);
            }
            true
        });
        if let Some(e) = failed {
            return Err(ConnError::Protocol(e));
        }
        let overflowed = taken.is_err();
        if overflowed && persist.is_none() {
            return Err(ConnError::FellBehind(shared.settings.mailbox_size));
        }
        self.counted(written, dropped);
        if overflowed {
            // A persistent session lost live events, not stored ones: the
            // store has them, so it catches up from there and stays.
            self.direct.mailbox.recover();
            gap = true;
        }
        if gap {
            if let Some(p) = self.persist.as_deref_mut() {
                p.replay_from_last();
            }
            return Ok(Drained::Gap);
        }
        Ok(if buffer_full {
            Drained::BufferFull
        } else {
            Drained::Done
        })
    }

    /// Counts deliveries written and dropped (too large for the client),
    /// and keeps the acknowledgement timer and the window's memory right.
    pub(super) fn counted(&mut self, written: u64, dropped: u64) {
        if dropped > 0 {
            debug!(
                dropped,
                "deliveries over the client's maximum packet size dropped"
            );
        }
        if written > 0 {
            metrics::counter!(crate::metrics::DELIVERIES_TOTAL).increment(written);
        }
        let flight = &mut self.direct.flight;
        if flight.inflight.len() > self.unacked {
            self.ack_wait_since.get_or_insert_with(Instant::now);
        }
        self.unacked = flight.inflight.len();
        if flight.inflight.is_empty() && flight.inflight.capacity() > 0 {
            flight.inflight = VecDeque::new();
        }
    }

    pub(super) async fn flush(&mut self) -> Result<(), ConnError> {
        if !self.outbuf.is_empty() {
            let timeout = self.shared.settings.write_timeout;
            let write = async {
                self.stream.write_all(&self.outbuf).await?;
                // WebSocket streams send on flush.
                self.stream.flush().await
            };
            tokio::time::timeout(timeout, write)
                .await
                .map_err(|_| ConnError::Violation("client stopped reading"))??;
            if self.outbuf.capacity() > MAX_IDLE_OUTBUF {
                // A burst's buffer is not kept by a connection gone quiet.
                self.outbuf = BytesMut::new();
            } else {
                self.outbuf.clear();
            }
        }
        Ok(())
    }

    /// Writes the uplink acknowledgements already waiting, without waiting
    /// for more.
    pub(super) fn write_ready_acks(&mut self) -> Result<(), ConnError> {
        while let Some(ack) = self
            .uplink
            .as_mut()
            .and_then(|(_, acks)| acks.try_recv().ok())
        {
            self.write(ack)?;
        }
        Ok(())
    }

    pub(super) fn write(&mut self, packet: Packet) -> Result<(), ConnError> {
        self.version
            .write(packet, &mut self.outbuf)
            .map(|_| ())
            .map_err(ConnError::Protocol)
    }
}

/// How a turn of taking from the mailbox ended.
pub(super) enum Drained {
    /// Nothing more can go now (empty, or the window is full).
    Done,
    /// The output buffer is full: flush, then take more.
    BufferFull,
    /// A persistent session met a live event past a gap; a replay from the
    /// store is due.
    Gap,
}

/// One delivery to write.
pub(super) struct Put<'a> {
    pub topic: &'a Bytes,
    pub payload: &'a Bytes,
    pub qos: QoS,
    pub properties: Option<protocol::PublishProperties>,
    /// A redelivery: DUP=1 (QoS 1 only).
    pub dup: bool,
    /// The inbox cursors it stands for (persistent sessions).
    pub range: Option<(u64, u64)>,
}

/// Encodes a delivery into `out` at its QoS, numbering a QoS 1 one and
/// putting it in flight. Returns false when it was dropped as larger than
/// the client's maximum packet size (MQTT 5 §3.1.2.11.4).
pub(super) fn put(
    out: &mut BytesMut,
    version: Version,
    flight: &mut Flight,
    d: Put<'_>,
) -> Result<bool, protocol::Error> {
    let qos1 = d.qos != QoS::AtMostOnce;
    let publish = Publish::new(d.topic.clone(), d.payload.clone(), false);
    let pkid = qos1.then(|| flight.next_pkid());
    let start = out.len();
    version.write_publish(publish, d.properties, pkid, out)?;
    if flight
        .max_packet
        .is_some_and(|max| out.len() - start > max as usize)
    {
        out.truncate(start);
        return Ok(false);
    }
    if qos1 {
        if d.dup {
            out[start] |= 0b1000;
        }
        flight.inflight.push_back((flight.last_pkid, d.range));
    }
    Ok(true)
}

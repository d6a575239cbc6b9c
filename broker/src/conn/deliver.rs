//! What goes to the client: deliveries from the mailbox or the router,
//! acknowledgements, and the output buffer.

use super::*;

impl<S> Connection<S>
where
    S: AsyncRead + AsyncWrite + Unpin + Send,
{
    /// Handles `first` and whatever else the router has ready, so one flush
    /// carries a batch. Returns how the connection ends, if it does, and
    /// whether the router unscheduled it (it must be woken).
    pub(super) fn drain_notifications(
        &mut self,
        first: Option<Notification>,
    ) -> Result<(Option<Ended>, bool), ConnError> {
        let mut unscheduled = false;
        let mut next = first;
        loop {
            if let Some(n) = next {
                if let Some(end) = self.handle_notification(n, &mut unscheduled)? {
                    return Ok((Some(end), unscheduled));
                }
            }
            if self.outbuf.len() > 64 * 1024 {
                break;
            }
            let Downlink::Link(_, link_rx) = &mut self.downlink else {
                break;
            };
            match link_rx.next().now_or_never() {
                Some(Ok(n)) => next = n,
                Some(Err(e)) => return Err(ConnError::Router(e.to_string())),
                None => break,
            }
        }
        Ok((None, unscheduled))
    }

    /// Writes what the mailbox holds, as far as the window of QoS 1
    /// deliveries allows, flushing every 64 KiB.
    pub(super) async fn deliver_from_mailbox(&mut self) -> Result<(), ConnError> {
        while self.drain_mailbox()? {
            self.flush().await?;
        }
        Ok(())
    }

    /// Takes deliveries from a clean session's mailbox into the output
    /// buffer while the window of unacknowledged QoS 1 deliveries has room.
    /// Returns whether it stopped only because the buffer is full (there is
    /// more to take once it is flushed).
    pub(super) fn drain_mailbox(&mut self) -> Result<bool, ConnError> {
        let Connection {
            downlink: Downlink::Mailbox(Direct { mailbox, flight }),
            outbuf,
            version,
            unacked,
            ack_wait_since,
            shared,
            ..
        } = self
        else {
            return Ok(false);
        };
        let (mut written, mut dropped, mut buffer_full) = (0u64, 0u64, false);
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
            let publish = Publish::new(d.topic.clone(), d.payload.clone(), false);
            let pkid = qos1.then(|| flight.next_pkid());
            let start = outbuf.len();
            if let Err(e) = version.write_publish(publish, d.properties.clone(), pkid, outbuf) {
                failed = Some(e);
                return false;
            }
            let too_large = flight
                .max_packet
                .is_some_and(|max| outbuf.len() - start > max as usize);
            if too_large {
                outbuf.truncate(start);
                dropped += 1;
            } else {
                if qos1 {
                    flight.inflight.push_back(flight.last_pkid);
                }
                written += 1;
            }
            true
        });
        if let Some(e) = failed {
            return Err(ConnError::Protocol(e));
        }
        if taken.is_err() {
            return Err(ConnError::FellBehind(shared.settings.mailbox_size));
        }
        if dropped > 0 {
            debug!(
                dropped,
                "deliveries over the client's maximum packet size dropped"
            );
        }
        if written > 0 {
            metrics::counter!(crate::metrics::DELIVERIES_TOTAL).increment(written);
        }
        if flight.inflight.len() > *unacked {
            ack_wait_since.get_or_insert_with(Instant::now);
        }
        *unacked = flight.inflight.len();
        if flight.inflight.is_empty() && flight.inflight.capacity() > 0 {
            flight.inflight = VecDeque::new();
        }
        Ok(buffer_full)
    }

    /// Swaps the link's input queue for an unallocated one when the router
    /// has taken everything in it. The router trades the queue for its own
    /// on every batch, so a link would keep whichever queue it was handed
    /// last, written to: rumqttd's first ones have room for 200 packets
    /// (78 KiB, 4 KiB of it resident), later ones what a client's batch
    /// needed (1.8 KiB for a SUBSCRIBE). Called once the router has
    /// answered, which it does after taking the queue; costs an allocation
    /// per batch a client sends, from the thread's cache.
    pub(super) fn release_link_queue(&self) {
        let Downlink::Link(link_tx, _) = &self.downlink else {
            return;
        };
        let idle = {
            let mut queue = link_tx.buffer();
            if !queue.is_empty() || queue.capacity() == 0 {
                return;
            }
            std::mem::take(&mut *queue)
        };
        // Freed outside the router's lock.
        drop(idle);
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

    pub(super) fn handle_notification(
        &mut self,
        notification: Notification,
        unscheduled: &mut bool,
    ) -> Result<Option<Ended>, ConnError> {
        match notification {
            Notification::Forward(forward) => {
                metrics::counter!(crate::metrics::DELIVERIES_TOTAL).increment(1);
                let start = self.outbuf.len();
                self.write(Packet::Publish(forward.publish, forward.properties))?;
                // The delivery's QoS (set by the router) is in the fixed
                // header; rumqttd keeps the field private.
                if self.outbuf.get(start).is_some_and(|h| h & 0b0110 != 0) {
                    self.unacked += 1;
                    self.ack_wait_since.get_or_insert_with(Instant::now);
                }
            }
            Notification::DeviceAck(ack) => match Packet::from(ack) {
                Packet::SubAck(suback, props) => {
                    self.answer_subscribe(suback.pkid, suback.return_codes, props)?;
                }
                Packet::UnsubAck(..) | Packet::PingResp(_) | Packet::ConnAck(..) => {}
                other => self.write(other)?,
            },
            Notification::Unschedule => *unscheduled = true,
            Notification::Disconnect(disconnect, props) => {
                if self.version == Version::V5 {
                    self.write(Packet::Disconnect(disconnect, props))?;
                }
                return Ok(Some(Ended::RouterDisconnected));
            }
            other => debug!(?other, "ignored router notification"),
        }
        Ok(None)
    }
}

//! What the client sends: each packet checked and answered, uplink
//! publishes handed to their worker, acks forwarded to the router.

use super::*;

impl<S> Connection<S>
where
    S: AsyncRead + AsyncWrite + Unpin + Send,
{
    /// Decodes every complete packet in the input buffer and acts on it.
    pub(super) fn handle_input(&mut self) -> Result<Option<Ended>, ConnError> {
        let max = self.shared.settings.max_packet_size;
        loop {
            let publish_ids = codec::peek_publish(&self.inbuf, max);
            let packet = match self.version.read(&mut self.inbuf, max) {
                Ok(p) => p,
                Err(protocol::Error::InsufficientBytes(_)) => break,
                Err(e) => return Err(ConnError::Protocol(e)),
            };
            // Acks answer our own deliveries and are bounded by them; only
            // what the client starts counts against its budget.
            let initiated = !matches!(
                packet,
                Packet::PubAck(..) | Packet::PubRec(..) | Packet::PubComp(..)
            );
            let limited = self.shared.settings.max_packets_per_sec > 0;
            if initiated && limited && self.inbound.check().is_err() {
                crate::metrics::rate_limited(crate::metrics::Limit::MqttPackets);
                return Err(ConnError::RateLimited);
            }
            match packet {
                Packet::PingReq(_) => self.write(Packet::PingResp(PingResp))?,
                Packet::Subscribe(sub, props) => {
                    if let Some(fwd) = self.authorize_subscribe(sub)? {
                        match self.downlink {
                            Downlink::Link(..) => {
                                self.to_router.push(Packet::Subscribe(fwd, props))
                            }
                            Downlink::Mailbox(_) => self.subscribe_mailbox(fwd, props)?,
                        }
                    }
                }
                Packet::Unsubscribe(unsub, props) => {
                    for f in &unsub.filters {
                        if self.subscriptions.remove(f) {
                            metrics::gauge!(crate::metrics::SUBSCRIPTIONS).decrement(1.0);
                        }
                    }
                    // The router answers only for filters it knew, one ack per
                    // filter; the client is owed exactly one UNSUBACK, so the
                    // gateway answers and drops the router's.
                    let reasons = vec![UnsubAckReason::Success; unsub.filters.len()];
                    let pkid = unsub.pkid;
                    match &self.downlink {
                        Downlink::Link(..) => {
                            self.to_router.push(Packet::Unsubscribe(unsub, props));
                        }
                        Downlink::Mailbox(direct) => {
                            for f in &unsub.filters {
                                direct.mailbox.unsubscribe(f);
                            }
                        }
                    }
                    self.write(Packet::UnsubAck(UnsubAck { pkid, reasons }, None))?;
                }
                Packet::Publish(publish, props) => {
                    let (qos, pkid) = publish_ids.unwrap_or((0, 0));
                    if self.version == Version::V5 {
                        not_offered(qos, publish.retain, props.as_ref())?;
                    }
                    if !acl::is_valid_topic_name(&publish.topic) {
                        return Err(ConnError::Violation("invalid topic name in PUBLISH"));
                    }
                    match self.uplink_subtopic(&publish.topic) {
                        Some(subtopic) => {
                            let props = props.unwrap_or_default();
                            self.to_uplink.push(uplink::Job {
                                subtopic,
                                payload: publish.payload,
                                qos,
                                pkid,
                                response_topic: props.response_topic,
                                correlation_data: props.correlation_data,
                            });
                        }
                        None => self.refuse_publish(qos, pkid, &publish.topic)?,
                    }
                }
                Packet::PubAck(ack, props) => match &mut self.downlink {
                    Downlink::Link(..) => {
                        self.unacked = self.unacked.saturating_sub(1);
                        self.ack_wait_since = (self.unacked > 0).then(Instant::now);
                        self.to_router.push(Packet::PubAck(ack, props));
                    }
                    Downlink::Mailbox(Direct { flight, .. }) => {
                        // An id not in flight (acknowledged twice) is ignored.
                        if let Some(i) = flight.inflight.iter().position(|&p| p == ack.pkid) {
                            flight.inflight.remove(i);
                            flight.opened = true;
                            self.unacked = flight.inflight.len();
                            self.ack_wait_since = (self.unacked > 0).then(Instant::now);
                        }
                    }
                },
                Packet::PubRel(rel, _) => {
                    // Ends a QoS 2 PUBLISH that was refused or handed to the uplink.
                    let comp = PubComp {
                        pkid: rel.pkid,
                        reason: PubCompReason::Success,
                    };
                    self.write(Packet::PubComp(comp, None))?;
                }
                Packet::Disconnect(..) => return Ok(Some(Ended::ClientDisconnected)),
                Packet::Connect(..) => {
                    // 3.1.1 §3.1.0-2: a second CONNECT is a protocol violation.
                    return Err(ConnError::Violation("second CONNECT"));
                }
                Packet::PubRec(..) | Packet::PubComp(..) => {
                    return Err(ConnError::Violation(
                        "QoS 2 ack for a delivery the server never sent at QoS 2",
                    ));
                }
                Packet::ConnAck(..)
                | Packet::SubAck(..)
                | Packet::UnsubAck(..)
                | Packet::PingResp(_) => {
                    return Err(ConnError::Violation(
                        "server-to-client packet sent by client",
                    ));
                }
            }
        }
        Ok(None)
    }

    /// The subtopic below `users/{id}/` when this publish goes to the uplink
    /// handler (an open subtree, and a handler installed).
    pub(super) fn uplink_subtopic(&self, topic: &[u8]) -> Option<String> {
        self.shared.uplink.get()?;
        let topic = std::str::from_utf8(topic).ok()?;
        let user = self.principal.user_id;
        if !self.shared.acl.may_publish(user, topic) {
            return None;
        }
        topic
            .strip_prefix(&format!("users/{user}/"))
            .map(str::to_owned)
    }

    /// Queues uplink publishes for the connection's worker. Waiting here when
    /// the queue is full stops reading from this client: backpressure.
    pub(super) async fn forward_to_uplink(&mut self) -> Result<(), ConnError> {
        if self.to_uplink.is_empty() {
            return Ok(());
        }
        // Only clients that publish get here: boxed, the wait's state does
        // not size the task of every connection.
        Box::pin(self.queue_uplink()).await
    }

    pub(super) async fn queue_uplink(&mut self) -> Result<(), ConnError> {
        let worker = match &self.uplink {
            Some((w, _)) => w.clone(),
            None => {
                let (acks, acked) = mpsc::channel(64);
                let w = uplink::spawn_worker(self.shared.clone(), self.principal, acks);
                self.uplink = Some((w.clone(), acked));
                w
            }
        };
        for job in self.to_uplink.drain(..) {
            worker
                .send(job)
                .await
                .map_err(|_| ConnError::Router("uplink worker stopped".into()))?;
        }
        Ok(())
    }

    /// Hands the packets collected by `handle_input` to the router: all but
    /// the last go straight into the link's buffer, the last one is sent with
    /// the wake-up, so a batch costs one router event. The batch's vector is
    /// dropped with it (four packets are 1.5 KiB an idle connection would
    /// keep).
    ///
    /// Synchronous: `LinkTx::send` is an async fn that never awaits (its
    /// channel send blocks when the router's queue is full, as it always
    /// did), so it completes on its first poll; awaited, its 448-byte state
    /// would be part of every connection's task.
    pub(super) fn forward_to_router(&mut self) -> Result<(), ConnError> {
        let mut batch = std::mem::take(&mut self.to_router);
        let Some(last) = batch.pop() else {
            return Ok(());
        };
        let Downlink::Link(link_tx, _) = &mut self.downlink else {
            // Nothing is queued for the router without a link.
            return Ok(());
        };
        link_tx.buffer().extend(batch);
        match link_tx.send(last).now_or_never() {
            Some(sent) => sent
                .map(|_| ())
                .map_err(|e| ConnError::Router(e.to_string())),
            None => Err(ConnError::Router("link send did not complete".into())),
        }
    }

    /// No client publish reaches the router. MQTT 3.1.1 §3.3.5 lets a server
    /// either acknowledge an unauthorized PUBLISH normally or close the
    /// connection; we acknowledge (so a misbehaving app does not reconnect in
    /// a loop) and drop it. MQTT 5 gets the 0x87 "not authorized" reason.
    pub(super) fn refuse_publish(
        &mut self,
        qos: u8,
        pkid: u16,
        topic: &[u8],
    ) -> Result<(), ConnError> {
        metrics::counter!(crate::metrics::PUBLISH_DENIED_TOTAL).increment(1);
        debug!(
            user_id = self.principal.user_id,
            topic = %String::from_utf8_lossy(topic),
            qos,
            "publish refused"
        );
        let v5 = self.version == Version::V5;
        match qos {
            1 => self.write(Packet::PubAck(
                PubAck {
                    pkid,
                    reason: if v5 {
                        PubAckReason::NotAuthorized
                    } else {
                        PubAckReason::Success
                    },
                },
                None,
            )),
            2 => self.write(Packet::PubRec(
                PubRec {
                    pkid,
                    reason: if v5 {
                        PubRecReason::NotAuthorized
                    } else {
                        PubRecReason::Success
                    },
                },
                None,
            )),
            _ => Ok(()),
        }
    }
}

/// Refuses an MQTT 5 PUBLISH that uses what the CONNACK said the server
/// does not offer: a protocol error, with the reason code that names it
/// (MQTT-4.13.1-1, §3.2.2.3). Checked before the topic: with an alias, the
/// topic may be empty.
pub(super) fn not_offered(
    qos: u8,
    retain: bool,
    props: Option<&protocol::PublishProperties>,
) -> Result<(), ConnError> {
    let refused = |what, reason| Err(ConnError::NotOffered { what, reason });
    // 0 is never an alias (§3.3.2.3.4); any other is above the maximum, 0.
    if props
        .and_then(|p| p.topic_alias)
        .is_some_and(|alias| alias == 0 || alias > TOPIC_ALIAS_MAX)
    {
        return refused("topic alias", DisconnectReasonCode::TopicAliasInvalid);
    }
    if qos > MAX_QOS {
        return refused(
            "QoS above Maximum QoS",
            DisconnectReasonCode::QoSNotSupported,
        );
    }
    if retain {
        return refused("RETAIN", DisconnectReasonCode::RetainNotSupported);
    }
    Ok(())
}

//! What the client sends: each packet checked and answered, uplink
//! publishes handed to their worker, acks closing the delivery window.

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
                    if let Some(allowed) = self.authorize_subscribe(sub)? {
                        let took_events = self.takes_events();
                        self.subscribe_mailbox(allowed, props)?;
                        self.subscribed(took_events);
                    }
                }
                Packet::Unsubscribe(unsub, _) => {
                    for f in &unsub.filters {
                        if self.subscriptions.remove(f) {
                            metrics::gauge!(crate::metrics::SUBSCRIPTIONS).decrement(1.0);
                        }
                    }
                    let reasons = vec![UnsubAckReason::Success; unsub.filters.len()];
                    for f in &unsub.filters {
                        self.direct.mailbox.unsubscribe(f);
                    }
                    if let Some(p) = self.persist.as_deref_mut() {
                        p.subs_dirty = true;
                    }
                    let pkid = unsub.pkid;
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
                Packet::PubAck(ack, _) => {
                    let flight = &mut self.direct.flight;
                    // An id not in flight (acknowledged twice) is ignored.
                    if let Some(i) = flight.inflight.iter().position(|(p, _)| *p == ack.pkid) {
                        flight.inflight.remove(i);
                        flight.opened = true;
                        self.unacked = flight.inflight.len();
                        self.ack_wait_since = (self.unacked > 0).then(Instant::now);
                    }
                }
                Packet::PubRel(rel, _) => {
                    // Ends a QoS 2 PUBLISH that was refused or handed to the uplink.
                    let comp = PubComp {
                        pkid: rel.pkid,
                        reason: PubCompReason::Success,
                    };
                    self.write(Packet::PubComp(comp, None))?;
                }
                Packet::Disconnect(disconnect, props) => {
                    // MQTT 5: the client may shorten (or, if it was not 0,
                    // lengthen) its session's expiry as it leaves
                    // (§3.14.2.2.2); from 0 it is a protocol error.
                    let expiry = props.and_then(|p| p.session_expiry_interval);
                    // With a session store, a connection without a
                    // persistent session is one whose CONNECT asked for 0.
                    let clean = self.persist.is_none() && self.shared.sessions.get().is_some();
                    if clean && expiry.is_some_and(|secs| secs > 0) {
                        return Err(ConnError::Violation(
                            "session expiry raised from 0 at DISCONNECT",
                        ));
                    }
                    if let (Some(p), Some(secs)) = (self.persist.as_deref_mut(), expiry) {
                        if p.expiry_secs == 0 && secs > 0 {
                            return Err(ConnError::Violation(
                                "session expiry raised from 0 at DISCONNECT",
                            ));
                        }
                        p.expiry_secs = secs.min(
                            self.shared
                                .settings
                                .session_expiry
                                .as_secs()
                                .try_into()
                                .unwrap_or(u32::MAX),
                        );
                    }
                    return Ok(Some(
                        if matches!(
                            disconnect.reason_code,
                            DisconnectReasonCode::DisconnectWithWillMessage
                        ) {
                            Ended::ClientDisconnectedWithWill
                        } else {
                            Ended::ClientDisconnected
                        },
                    ));
                }
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
                .map_err(|_| ConnError::UplinkStopped)?;
        }
        Ok(())
    }

    /// No client publish reaches other clients. MQTT 3.1.1 §3.3.5 lets a server
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

//! SUBSCRIBE: each filter authorized against the user's topic space,
//! then granted by the mailbox.

use super::*;

impl<S> Connection<S>
where
    S: AsyncRead + AsyncWrite + Unpin + Send,
{
    /// Checks each filter; returns the SUBSCRIBE of the allowed filters
    /// only, or answers SUBACK directly when none is allowed.
    pub(super) fn authorize_subscribe(
        &mut self,
        mut sub: protocol::Subscribe,
    ) -> Result<Option<protocol::Subscribe>, ConnError> {
        let user_id = self.principal.user_id;
        let mut slots = Vec::with_capacity(sub.filters.len());
        let mut allowed = Vec::with_capacity(sub.filters.len());
        let max_filters = self.shared.settings.max_filters_per_subscribe;
        let max_subscriptions = self.shared.settings.max_subscriptions;
        for (i, mut filter) in sub.filters.drain(..).enumerate() {
            let over_quota = i >= max_filters
                || (!self.subscriptions.contains(&filter.path)
                    && self.subscriptions.len() >= max_subscriptions);
            if over_quota {
                metrics::counter!(crate::metrics::SUBSCRIBE_QUOTA_TOTAL).increment(1);
                slots.push(Some(match self.version {
                    Version::V311 => SubscribeReasonCode::Failure,
                    Version::V5 => SubscribeReasonCode::QuotaExceeded,
                }));
                continue;
            }
            match self.shared.acl.check_subscribe(user_id, &filter.path) {
                Ok(()) => {
                    if self.subscriptions.insert(filter.path.clone()) {
                        metrics::gauge!(crate::metrics::SUBSCRIPTIONS).increment(1.0);
                    }
                    // Every push is published at QoS 1, so a QoS 2
                    // subscription is granted QoS 1: delivery QoS is
                    // min(publish, subscription) by construction.
                    if filter.qos == QoS::ExactlyOnce {
                        filter.qos = QoS::AtLeastOnce;
                    }
                    slots.push(None);
                    allowed.push(filter);
                }
                Err(denied) => {
                    metrics::counter!(crate::metrics::SUBSCRIBE_DENIED_TOTAL).increment(1);
                    warn!(user_id, filter = %filter.path, ?denied, "subscription refused");
                    slots.push(Some(self.refusal_code(denied)));
                }
            }
        }
        if allowed.is_empty() {
            let return_codes = slots.into_iter().flatten().collect();
            self.write(Packet::SubAck(
                SubAck {
                    pkid: sub.pkid,
                    return_codes,
                },
                None,
            ))?;
            return Ok(None);
        }
        self.pending_subacks.insert(sub.pkid, slots);
        sub.filters = allowed;
        Ok(Some(sub))
    }

    /// A SUBSCRIBE (the filters the gateway allowed): the mailbox takes the
    /// filters, and the gateway answers.
    pub(super) fn subscribe_mailbox(
        &mut self,
        sub: protocol::Subscribe,
        props: Option<SubscribeProperties>,
    ) -> Result<(), ConnError> {
        let direct = &self.direct;
        let id = props.as_ref().and_then(|p| p.id);
        if id == Some(0) {
            // MQTT 5 §3.8.2.1.2: 0 is not a subscription identifier.
            return Err(ConnError::Violation("subscription identifier 0"));
        }
        let granted = sub
            .filters
            .into_iter()
            .map(|f| {
                let code = match f.qos {
                    QoS::AtMostOnce => SubscribeReasonCode::QoS0,
                    _ => SubscribeReasonCode::QoS1,
                };
                direct.mailbox.subscribe(Granted {
                    filter: f.path,
                    qos: f.qos,
                    id,
                });
                code
            })
            .collect();
        self.answer_subscribe(sub.pkid, granted, None)
    }

    /// Writes the SUBACK of a SUBSCRIBE: the codes of the filters the gateway
    /// refused, in their places among those `granted` (in order) for the
    /// filters it allowed.
    pub(super) fn answer_subscribe(
        &mut self,
        pkid: u16,
        granted: Vec<SubscribeReasonCode>,
        props: Option<protocol::SubAckProperties>,
    ) -> Result<(), ConnError> {
        let slots = self.pending_subacks.remove(&pkid);
        if self.pending_subacks.is_empty() {
            // Its table would otherwise stay allocated for good.
            self.pending_subacks = HashMap::new();
        }
        let return_codes = match slots {
            Some(slots) => {
                let mut granted = granted.into_iter();
                slots
                    .into_iter()
                    .map(|slot| {
                        slot.or_else(|| granted.next())
                            .unwrap_or(SubscribeReasonCode::Failure)
                    })
                    .collect()
            }
            None => granted,
        };
        self.write(Packet::SubAck(SubAck { pkid, return_codes }, props))
    }

    pub(super) fn refusal_code(&self, denied: FilterDenied) -> SubscribeReasonCode {
        match (self.version, denied) {
            (Version::V311, _) => SubscribeReasonCode::Failure,
            (Version::V5, FilterDenied::Invalid) => SubscribeReasonCode::TopicFilterInvalid,
            (Version::V5, FilterDenied::NotAuthorized) => SubscribeReasonCode::NotAuthorized,
        }
    }
}

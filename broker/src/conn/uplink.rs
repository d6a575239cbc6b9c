//! A connection's uplink worker: takes the connection's publishes to its
//! open subtrees in order, hands each to the [`Uplink`] handler, publishes
//! the answer and then acknowledges the PUBLISH (the contract is in
//! [`crate::uplink`]).

use std::collections::VecDeque;
use std::sync::Arc;

use bytes::Bytes;
use rumqttd::protocol::{Packet, PubAck, PubAckReason, PubRec, PubRecReason, PublishProperties};
use tokio::sync::mpsc;

use crate::auth::Principal;
use crate::shared::Shared;
use crate::uplink::{PendingReply, UplinkRequest};

/// A publish waiting for the worker.
pub(crate) struct Job {
    pub subtopic: String,
    pub payload: Bytes,
    pub qos: u8,
    pub pkid: u16,
    pub response_topic: Option<String>,
    pub correlation_data: Option<Bytes>,
}

/// A request taken in, waiting for its reply.
struct InFlight {
    reply: PendingReply,
    qos: u8,
    pkid: u16,
    response_topic: Option<String>,
    correlation_data: Option<Bytes>,
}

/// Starts a connection's uplink worker. Acks come back on `acks`, in order.
pub(crate) fn spawn_worker(
    shared: Arc<Shared>,
    principal: Principal,
    acks: mpsc::Sender<Packet>,
) -> mpsc::Sender<Job> {
    let depth = shared.settings.uplink_queue.max(1);
    let (tx, mut rx) = mpsc::channel::<Job>(depth);
    tokio::spawn(async move {
        let Some(handler) = shared.uplink.get().cloned() else {
            return;
        };
        let mut in_flight: VecDeque<InFlight> = VecDeque::with_capacity(depth);
        let mut open = true;
        while open || !in_flight.is_empty() {
            tokio::select! {
                // The oldest first: replies and acks go out in order.
                biased;
                reply = oldest(&mut in_flight), if !in_flight.is_empty() => {
                    let (Some(reply), Some(done)) = (reply, in_flight.pop_front()) else {
                        continue;
                    };
                    if !answer(&shared, principal, done, reply, &acks).await {
                        return;
                    }
                }
                job = rx.recv(), if open && in_flight.len() < depth => match job {
                    Some(job) => {
                        let reply = handler
                            .handle(UplinkRequest {
                                principal,
                                subtopic: job.subtopic,
                                payload: job.payload,
                            })
                            .await;
                        in_flight.push_back(InFlight {
                            reply,
                            qos: job.qos,
                            pkid: job.pkid,
                            response_topic: job.response_topic,
                            correlation_data: job.correlation_data,
                        });
                    }
                    None => open = false,
                },
            }
        }
    });
    tx
}

/// The oldest request's reply, once it is there (none if nothing is in
/// flight).
async fn oldest(in_flight: &mut VecDeque<InFlight>) -> Option<Bytes> {
    match in_flight.front_mut() {
        Some(f) => Some(f.reply.as_mut().await),
        None => None,
    }
}

/// Publishes a reply and acknowledges its request; false once the
/// connection is gone.
async fn answer(
    shared: &Shared,
    principal: Principal,
    done: InFlight,
    reply: Bytes,
    acks: &mpsc::Sender<Packet>,
) -> bool {
    let user = principal.user_id;
    // Replies go inside the user's own space only: a response topic
    // elsewhere would be a way to publish into another user's topics.
    let own = format!("users/{user}/");
    let topic = done
        .response_topic
        .filter(|t| t.starts_with(&own) && crate::acl::is_valid_topic_name(t.as_bytes()))
        .unwrap_or_else(|| format!("users/{user}/replies"));
    let props = done.correlation_data.map(|c| PublishProperties {
        correlation_data: Some(c),
        ..Default::default()
    });
    // Never blocks: the router link's send completes at once.
    shared.publish(topic, reply, props);
    metrics::counter!(crate::metrics::UPLINK_TOTAL).increment(1);
    let ack = match done.qos {
        1 => Packet::PubAck(
            PubAck {
                pkid: done.pkid,
                reason: PubAckReason::Success,
            },
            None,
        ),
        2 => Packet::PubRec(
            PubRec {
                pkid: done.pkid,
                reason: PubRecReason::Success,
            },
            None,
        ),
        _ => return true,
    };
    acks.send(ack).await.is_ok()
}

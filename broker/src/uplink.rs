//! Client publishes to the open subtrees (`users/{id}/up/...`): requests
//! for the service, carried over MQTT for devices on weak links.
//!
//! They never reach the router or other clients. Each connection hands them,
//! in order, to one worker task that calls the [`Uplink`] handler, publishes
//! the answer and only then acknowledges the PUBLISH — so a PUBACK means the
//! request was handled (for a send: committed), and PUBACKs stay in PUBLISH
//! order as MQTT requires.

use std::future::Future;
use std::pin::Pin;
use std::sync::Arc;

use bytes::Bytes;
use rumqttd::protocol::{Packet, PubAck, PubAckReason, PubRec, PubRecReason, PublishProperties};
use tokio::sync::mpsc;

use crate::auth::Principal;
use crate::server::Shared;

/// One uplink request.
#[derive(Debug, Clone)]
pub struct UplinkRequest {
    pub principal: Principal,
    /// The topic below `users/{id}/`, e.g. `up/messages`.
    pub subtopic: String,
    pub payload: Bytes,
}

/// Handles uplink requests; implemented by chatsvc.
pub trait Uplink: Send + Sync + 'static {
    /// Returns the reply payload, published back to the client.
    fn handle(&self, request: UplinkRequest) -> Pin<Box<dyn Future<Output = Bytes> + Send + '_>>;
}

/// A publish waiting for the worker.
pub(crate) struct Job {
    pub subtopic: String,
    pub payload: Bytes,
    pub qos: u8,
    pub pkid: u16,
    pub response_topic: Option<String>,
    pub correlation_data: Option<Bytes>,
}

/// Starts a connection's uplink worker. Acks come back on `acks`, in order.
pub(crate) fn spawn_worker(
    shared: Arc<Shared>,
    principal: Principal,
    acks: mpsc::Sender<Packet>,
) -> mpsc::Sender<Job> {
    let (tx, mut rx) = mpsc::channel::<Job>(shared.settings.uplink_queue.max(1));
    tokio::spawn(async move {
        while let Some(job) = rx.recv().await {
            let Some(handler) = shared.uplink.get() else {
                break;
            };
            let reply = handler
                .handle(UplinkRequest {
                    principal,
                    subtopic: job.subtopic,
                    payload: job.payload,
                })
                .await;
            let user = principal.user_id;
            // Replies go inside the user's own space only: a response topic
            // elsewhere would be a way to publish into another user's topics.
            let own = format!("users/{user}/");
            let topic = job
                .response_topic
                .filter(|t| t.starts_with(&own) && crate::acl::is_valid_topic_name(t.as_bytes()))
                .unwrap_or_else(|| format!("users/{user}/replies"));
            let props = job.correlation_data.map(|c| PublishProperties {
                correlation_data: Some(c),
                ..Default::default()
            });
            let publisher = shared.clone();
            let _ =
                tokio::task::spawn_blocking(move || publisher.publish(topic, reply, props)).await;
            metrics::counter!("mqtt_uplink_total").increment(1);
            let ack = match job.qos {
                1 => Some(Packet::PubAck(
                    PubAck {
                        pkid: job.pkid,
                        reason: PubAckReason::Success,
                    },
                    None,
                )),
                2 => Some(Packet::PubRec(
                    PubRec {
                        pkid: job.pkid,
                        reason: PubRecReason::Success,
                    },
                    None,
                )),
                _ => None,
            };
            if let Some(ack) = ack {
                if acks.send(ack).await.is_err() {
                    break;
                }
            }
        }
    });
    tx
}

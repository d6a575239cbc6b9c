//! The domain's downlink on a cluster node: deliver to this node's
//! connections, and publish to the user's subject for the other nodes that
//! hold one of the user's connections.

use bytes::Bytes;

use super::wire::{SessionsEnded, UserFrame};
use super::{user_subject, Cluster, SESSIONS_SUBJECT};
use crate::domain::Downlink;

/// [`Downlink`] of a cluster node.
pub struct ClusterDownlink(pub Cluster);

impl Downlink for ClusterDownlink {
    fn push(&self, user_id: u64, subtopic: &str, event: Bytes) -> bool {
        self.push_items(std::iter::once((user_id, subtopic, event))) > 0
    }

    fn push_batch(&self, items: &[(u64, &'static str, Bytes)]) -> usize {
        self.push_items(items.iter().map(|(u, s, b)| (*u, *s, b.clone())))
    }

    fn end_sessions(&self, user_id: u64, session_id: Option<u64>) -> usize {
        let cluster = &self.0;
        let closed = cluster.inner.broker.disconnect(user_id, session_id);
        match serde_json::to_vec(&SessionsEnded {
            user: user_id,
            session: session_id,
        }) {
            Ok(msg) => cluster.publish(SESSIONS_SUBJECT.to_owned(), msg.into()),
            Err(e) => tracing::error!(error = %e, "encoding a session end"),
        }
        closed
    }

    fn is_online(&self, user_id: u64) -> bool {
        self.0.inner.broker.is_online(user_id) || self.0.inner.view.is_remote(user_id)
    }
}

impl ClusterDownlink {
    /// Called on the store's notify thread: local deliveries under the
    /// sequencer, and publishes queued without waiting.
    fn push_items<'a, I>(&self, items: I) -> usize
    where
        I: IntoIterator<Item = (u64, &'a str, Bytes)> + Clone,
    {
        let inner = &self.0.inner;
        let broker = &inner.broker;
        let mut sent = inner.sequencer.deliver(
            items.clone(),
            |u| broker.is_online(u),
            |ready| broker.push_many(ready),
        );
        for (user, subtopic, event) in items {
            // Only users another node holds a connection of: the rest get
            // nothing over the bus (they sync when they connect).
            if inner.view.is_remote(user) {
                self.0
                    .publish(user_subject(user), UserFrame::event(subtopic, &event));
                sent += 1;
            }
        }
        sent
    }
}

/// Starts listening on the user's subject: the user's first connection on
/// this node opened. The subscription is sent to NATS before this returns,
/// so a delta published afterwards reaches the other nodes after it.
pub(crate) async fn subscribe_user(cluster: &Cluster, user: u64) {
    let inner = &cluster.inner;
    let token = inner.shutdown.child_token();
    if let Some(old) = inner
        .user_subs
        .lock()
        .unwrap_or_else(|e| e.into_inner())
        .insert(user, token.clone())
    {
        old.cancel();
    }
    let mut sub = match inner.client.subscribe(user_subject(user)).await {
        Ok(s) => s,
        Err(e) => {
            tracing::warn!(user, error = %e, "bus subscribe failed");
            return;
        }
    };
    let cluster = cluster.clone();
    tokio::spawn(async move {
        use futures_util::StreamExt;
        loop {
            let msg = tokio::select! {
                _ = token.cancelled() => break,
                m = sub.next() => match m { Some(m) => m, None => return },
            };
            ::metrics::counter!(crate::metrics::CLUSTER_RECEIVED_TOTAL).increment(1);
            let inner = &cluster.inner;
            match UserFrame::parse(&msg.payload) {
                Some(UserFrame::Event { subtopic, payload }) => {
                    let broker = &inner.broker;
                    inner.sequencer.deliver(
                        [(user, subtopic.as_str(), payload)],
                        |u| broker.is_online(u),
                        |ready| broker.push_many(ready),
                    );
                }
                Some(UserFrame::TakeOver { client_id }) => {
                    inner.broker.take_over(user, &client_id);
                }
                Some(UserFrame::Will { qos, packet }) => {
                    let will = mqchat_broker::PublishedWill {
                        user_id: user,
                        qos,
                        packet,
                    };
                    if let Err(e) = inner.broker.deliver_will(&will) {
                        tracing::warn!(user, error = %e, "a will from the bus dropped");
                    }
                }
                None => tracing::warn!(user, "unreadable bus frame dropped"),
            }
        }
        let _ = sub.unsubscribe().await;
    });
}

/// Stops listening on the user's subject: the user's last connection on
/// this node closed.
pub(crate) fn unsubscribe_user(cluster: &Cluster, user: u64) {
    let inner = &cluster.inner;
    if let Some(token) = inner
        .user_subs
        .lock()
        .unwrap_or_else(|e| e.into_inner())
        .remove(&user)
    {
        token.cancel();
    }
    inner.sequencer.forget(user);
}

//! Sessions across nodes: a session ended on one node (logout, password
//! reset, revocation, admin disconnect) closes the user's connections on
//! every node and revokes its access tokens there too; a client id
//! connected on one node closes the user's connection with that id on the
//! others; a will published on one node reaches the user's connections on
//! the others.

use futures_util::StreamExt;
use tracing::warn;

use super::wire::{SessionsEnded, UserFrame};
use super::{user_subject, Cluster, ClusterError, SESSIONS_SUBJECT};

/// How long a session end waits for this node's revocations to reload
/// before closing the connections anyway.
const REVOCATION_WAIT: std::time::Duration = std::time::Duration::from_secs(2);

pub(crate) async fn start(cluster: &Cluster) -> Result<(), ClusterError> {
    let mut ended = cluster
        .inner
        .client
        .subscribe(SESSIONS_SUBJECT)
        .await
        .map_err(|source| ClusterError::Subscribe {
            subject: SESSIONS_SUBJECT,
            source,
        })?;
    {
        let cluster = cluster.clone();
        tokio::spawn(async move {
            let stop = cluster.inner.shutdown.clone();
            loop {
                let msg = tokio::select! {
                    _ = stop.cancelled() => return,
                    m = ended.next() => match m { Some(m) => m, None => return },
                };
                let Ok(end) = serde_json::from_slice::<SessionsEnded>(&msg.payload) else {
                    warn!("unreadable session end dropped");
                    continue;
                };
                // Revocations first: a kicked client that reconnects at once
                // must be refused here too. Bounded: a store that does not
                // answer must not keep the session open.
                let mut loaded = cluster.inner.revocations_loaded.subscribe();
                loaded.mark_unchanged();
                cluster.inner.revocations.notify_one();
                let _ = tokio::time::timeout(REVOCATION_WAIT, loaded.changed()).await;
                cluster.inner.broker.disconnect(end.user, end.session);
            }
        });
    }

    // Wills reach the user's connections on the other nodes too.
    let mut wills = cluster.inner.broker.published_wills();
    {
        let cluster = cluster.clone();
        tokio::spawn(async move {
            let stop = cluster.inner.shutdown.clone();
            loop {
                let will = tokio::select! {
                    _ = stop.cancelled() => return,
                    w = wills.recv() => w,
                };
                match will {
                    Ok(w) => {
                        if cluster.inner.view.is_remote(w.user_id) {
                            cluster.publish(
                                user_subject(w.user_id),
                                UserFrame::will(w.qos, &w.packet),
                            );
                        }
                    }
                    Err(tokio::sync::broadcast::error::RecvError::Lagged(n)) => {
                        warn!(missed = n, "wills not forwarded to the other nodes");
                    }
                    Err(tokio::sync::broadcast::error::RecvError::Closed) => return,
                }
            }
        });
    }

    let mut accepted = cluster.inner.broker.accepted_clients();
    let cluster = cluster.clone();
    tokio::spawn(async move {
        let stop = cluster.inner.shutdown.clone();
        loop {
            let accepted = tokio::select! {
                _ = stop.cancelled() => return,
                a = accepted.recv() => a,
            };
            match accepted {
                Ok(a) => {
                    if cluster.inner.view.is_remote(a.user_id) {
                        cluster.publish(user_subject(a.user_id), UserFrame::takeover(&a.client_id));
                    }
                }
                Err(tokio::sync::broadcast::error::RecvError::Lagged(n)) => {
                    warn!(missed = n, "client takeovers not forwarded");
                }
                Err(tokio::sync::broadcast::error::RecvError::Closed) => return,
            }
        }
    });
    Ok(())
}

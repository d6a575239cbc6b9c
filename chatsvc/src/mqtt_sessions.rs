//! The store behind the broker's persistent sessions
//! ([`mqchat_broker::SessionStore`]): session rows (`store::mqtt`) and the
//! user's inbox as their queue, read with the same operation and in the
//! same shape as `GET /v1/sync`.

use bytes::Bytes;
use mqchat_broker::sessions::SESSION_GRACE_SECS;
use mqchat_broker::{
    BoxFuture, OpenedSession, SessionCursors, SessionKey, SessionStore, SessionStoreError,
    StoredFilter,
};
use serde::{Deserialize, Serialize};

use crate::domain::events::Replay;
use crate::domain::model::Event;
use crate::domain::now_ms;
use crate::store::{self, mqtt, Store, StoreError};

/// [`SessionStore`] over the service's store (either backend).
pub struct StoreSessions {
    store: Store,
}

impl StoreSessions {
    pub fn new(store: Store) -> StoreSessions {
        StoreSessions { store }
    }
}

/// A stored filter, as the row's JSON keeps it.
#[derive(Serialize, Deserialize)]
struct Filter {
    f: String,
    q: u8,
    #[serde(skip_serializing_if = "Option::is_none")]
    i: Option<usize>,
}

fn failed(e: StoreError) -> SessionStoreError {
    SessionStoreError(e.to_string())
}

/// When a session expires: `expiry_secs` from now, plus the grace a
/// connected one gets until its next touch.
fn expires_at(now: i64, expiry_secs: u32, connected: bool) -> i64 {
    let grace = if connected { SESSION_GRACE_SECS } else { 0 };
    let secs = i64::from(expiry_secs).saturating_add(grace as i64);
    now.saturating_add(secs.saturating_mul(1000))
}

impl SessionStore for StoreSessions {
    fn open(
        &self,
        user_id: u64,
        client_id: &str,
        clean_start: bool,
        expiry_secs: u32,
        max_per_user: usize,
    ) -> BoxFuture<'_, Result<OpenedSession, SessionStoreError>> {
        let client_id = client_id.to_owned();
        Box::pin(async move {
            let now = now_ms();
            let until = expires_at(now, expiry_secs, true);
            let row = self
                .store
                .write(move |c| {
                    mqtt::open_mqtt_session(
                        c,
                        user_id,
                        &client_id,
                        clean_start,
                        until,
                        now,
                        max_per_user,
                    )
                })
                .await
                .map_err(failed)?;
            // Filters the row holds were checked when granted; a row this
            // build cannot read starts with none rather than failing.
            let filters: Vec<Filter> = serde_json::from_str(&row.subscriptions).unwrap_or_default();
            Ok(OpenedSession {
                present: row.present,
                subscriptions: filters
                    .into_iter()
                    .map(|f| StoredFilter {
                        filter: f.f,
                        qos: f.q.min(1),
                        id: f.i,
                    })
                    .collect(),
                acked: row.acked,
                sent: row.sent,
                head: row.head,
                away_secs: u64::try_from(now.saturating_sub(row.seen_at) / 1000).unwrap_or(0),
            })
        })
    }

    fn discard(
        &self,
        user_id: u64,
        client_id: &str,
    ) -> BoxFuture<'_, Result<(), SessionStoreError>> {
        let client_id = client_id.to_owned();
        Box::pin(async move {
            // Every clean connection asks: a read, and a write only for an
            // id that had a session.
            let id = client_id.clone();
            let exists = self
                .store
                .read(move |c| mqtt::mqtt_session_exists(c, user_id, &id))
                .await
                .map_err(failed)?;
            if exists {
                self.store
                    .write(move |c| mqtt::end_mqtt_session(c, user_id, &client_id))
                    .await
                    .map_err(failed)?;
            }
            Ok(())
        })
    }

    fn save_subscriptions(
        &self,
        user_id: u64,
        client_id: &str,
        filters: Vec<StoredFilter>,
    ) -> BoxFuture<'_, Result<(), SessionStoreError>> {
        let client_id = client_id.to_owned();
        Box::pin(async move {
            let rows: Vec<Filter> = filters
                .into_iter()
                .map(|f| Filter {
                    f: f.filter,
                    q: f.qos,
                    i: f.id,
                })
                .collect();
            let json =
                serde_json::to_string(&rows).map_err(|e| SessionStoreError(e.to_string()))?;
            let now = now_ms();
            self.store
                .write(move |c| mqtt::save_mqtt_subscriptions(c, user_id, &client_id, &json, now))
                .await
                .map_err(failed)
        })
    }

    fn save_cursors(
        &self,
        batch: Vec<(SessionKey, SessionCursors)>,
    ) -> BoxFuture<'_, Result<(), SessionStoreError>> {
        Box::pin(async move {
            let now = now_ms();
            let rows: Vec<mqtt::CursorsRow> = batch
                .into_iter()
                .map(|((user_id, client_id), c)| mqtt::CursorsRow {
                    user_id,
                    client_id: client_id.to_string(),
                    acked: c.acked,
                    sent: c.sent,
                    expires_at: expires_at(now, c.expiry_secs, c.connected),
                })
                .collect();
            self.store
                .write(move |c| mqtt::save_mqtt_cursors(c, &rows, now))
                .await
                .map_err(failed)
        })
    }

    fn replay(
        &self,
        user_id: u64,
        after: u64,
        limit: usize,
    ) -> BoxFuture<'_, Result<Vec<(u64, Bytes)>, SessionStoreError>> {
        Box::pin(async move {
            let rows = self
                .store
                .read(move |c| store::messages::sync(c, user_id, after, limit, now_ms()))
                .await
                .map_err(failed)?;
            rows.into_iter()
                .map(|row| {
                    let event = Event::try_from(row).map_err(SessionStoreError)?;
                    let bytes =
                        serde_json::to_vec(&event).map_err(|e| SessionStoreError(e.to_string()))?;
                    Ok((event.cursor, Bytes::from(bytes)))
                })
                .collect()
        })
    }

    fn purge_expired(&self, limit: usize) -> BoxFuture<'_, Result<u64, SessionStoreError>> {
        Box::pin(async move {
            let now = now_ms();
            self.store
                .write(move |c| mqtt::purge_mqtt_sessions(c, now, limit))
                .await
                .map_err(failed)
        })
    }

    fn cursor_of(&self, payload: &[u8]) -> Option<u64> {
        crate::cluster::wire::cursor_of(payload)
    }

    fn sync_required(&self, after: u64, until: u64, reason: &str) -> Bytes {
        let event = Replay::SyncRequired {
            after,
            until,
            reason,
        };
        // Integers and a short string: serializing can't fail.
        Bytes::from(event.to_json().unwrap_or_default())
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn a_connected_session_expires_a_grace_later() {
        assert_eq!(expires_at(1000, 10, false), 11_000);
        assert_eq!(
            expires_at(1000, 10, true),
            11_000 + SESSION_GRACE_SECS as i64 * 1000
        );
        assert_eq!(expires_at(i64::MAX - 5, u32::MAX, true), i64::MAX);
    }
}

-- Persistent MQTT sessions (issue 28), kept in the store so they survive
-- a restart and are served from the inbox on any node (`store::mqtt`).
-- `client_id` is the user-namespaced id; `acked` the newest inbox cursor
-- the session acknowledged, `sent` the newest it was sent; times in ms.
CREATE TABLE mqtt_sessions (
    user_id        bigint NOT NULL,
    client_id      text   NOT NULL,
    subscriptions  text   NOT NULL,
    acked          bigint NOT NULL,
    sent           bigint NOT NULL,
    seen_at        bigint NOT NULL,
    expires_at     bigint NOT NULL,
    PRIMARY KEY (user_id, client_id)
);
CREATE INDEX mqtt_sessions_by_expiry ON mqtt_sessions (expires_at);

//! The gateway's metrics: every name, its HELP text and its label values.
//!
//! Metrics are an interface for operators (their dashboards and alerts use
//! these names), listed in `docs/metrics.md`; a test in `tests/` checks a
//! real scrape against that list. Names follow the Prometheus naming guide:
//! an `mqchat_` prefix, the unit as a suffix, `_total` for counters. Label
//! values come from the closed sets here, never from what a client sends.
//!
//! [`describe`] registers each HELP text, and creates every series at zero
//! so that a dashboard sees `0`, not "no data", before the first event.

use ::metrics::{counter, describe_counter, describe_gauge, gauge};

/// Gauge: open MQTT connections (past CONNACK).
pub const CONNECTIONS: &str = "mqchat_mqtt_connections";
/// Gauge: subscriptions held by open connections.
pub const SUBSCRIPTIONS: &str = "mqchat_mqtt_subscriptions";
/// Gauge: users with at least one open connection.
pub const ONLINE_USERS: &str = "mqchat_mqtt_online_users";
/// Counter, label `transport` ([`TRANSPORTS`]).
pub const CONNECTIONS_ACCEPTED_TOTAL: &str = "mqchat_mqtt_connections_accepted_total";
/// Counter, label `reason` ([`REFUSAL_REASONS`]).
pub const CONNECTIONS_REFUSED_TOTAL: &str = "mqchat_mqtt_connections_refused_total";
pub const UNAUTHENTICATED_EVICTED_TOTAL: &str = "mqchat_mqtt_unauthenticated_evicted_total";
pub const AUTH_FAILURES_TOTAL: &str = "mqchat_mqtt_auth_failures_total";
pub const SUBSCRIBE_DENIED_TOTAL: &str = "mqchat_mqtt_subscribe_denied_total";
pub const SUBSCRIBE_QUOTA_TOTAL: &str = "mqchat_mqtt_subscribe_quota_total";
pub const PUBLISH_DENIED_TOTAL: &str = "mqchat_mqtt_publish_denied_total";
pub const UPLINK_TOTAL: &str = "mqchat_mqtt_uplink_total";
pub const DELIVERIES_TOTAL: &str = "mqchat_mqtt_deliveries_total";
pub const PUSHES_TOTAL: &str = "mqchat_mqtt_pushes_total";
pub const SESSION_REPLAYED_TOTAL: &str = "mqchat_mqtt_session_replayed_total";
pub const SESSION_SYNC_REQUIRED_TOTAL: &str = "mqchat_mqtt_session_sync_required_total";
pub const WILLS_TOTAL: &str = "mqchat_mqtt_wills_total";
/// Counter, label `limit` ([`Limit`]): one metric for every rate limit of
/// mqchat, the gateway's and chatsvc's, so one query sees them all. It is
/// declared here because chatsvc depends on the gateway, not the reverse.
pub const RATE_LIMITED_TOTAL: &str = "mqchat_rate_limited_total";

/// The `transport` label values: how a client reached the gateway.
pub const TRANSPORT_TCP: &str = "tcp";
pub const TRANSPORT_WEBSOCKET: &str = "websocket";
pub const TRANSPORTS: [&str; 2] = [TRANSPORT_TCP, TRANSPORT_WEBSOCKET];

/// The `reason` label values of [`CONNECTIONS_REFUSED_TOTAL`].
pub const REFUSED_USER_CAP: &str = "user_cap";
pub const REFUSAL_REASONS: [&str; 1] = [REFUSED_USER_CAP];

/// Which rate limit refused a request: the `limit` label of
/// [`RATE_LIMITED_TOTAL`].
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Limit {
    /// Login attempts per account and address prefix, or per prefix.
    Login,
    /// Registrations per address prefix.
    Register,
    /// Message sends per user.
    Send,
    /// Every other state change per user.
    Action,
    /// Requests per service (bot) API key.
    ServiceKey,
    /// MQTT packets per connection.
    MqttPackets,
}

impl Limit {
    pub const ALL: [Limit; 6] = [
        Limit::Login,
        Limit::Register,
        Limit::Send,
        Limit::Action,
        Limit::ServiceKey,
        Limit::MqttPackets,
    ];

    pub fn label(self) -> &'static str {
        match self {
            Limit::Login => "login",
            Limit::Register => "register",
            Limit::Send => "send",
            Limit::Action => "action",
            Limit::ServiceKey => "service_key",
            Limit::MqttPackets => "mqtt_packets",
        }
    }
}

/// Counts one refusal by `limit`.
pub fn rate_limited(limit: Limit) {
    counter!(RATE_LIMITED_TOTAL, "limit" => limit.label()).increment(1);
}

/// Registers the HELP text of every gateway metric with the installed
/// recorder and creates each series at zero. Call once, after installing it.
pub fn describe() {
    for (name, help) in [
        (CONNECTIONS, "Open MQTT connections (past CONNACK)."),
        (
            SUBSCRIPTIONS,
            "Subscriptions held by open MQTT connections.",
        ),
        (
            ONLINE_USERS,
            "Users with at least one open MQTT connection.",
        ),
    ] {
        describe_gauge!(name, help);
        gauge!(name);
    }
    for (name, help) in [
        (
            UNAUTHENTICATED_EVICTED_TOTAL,
            "Connections not yet authenticated closed to make room for newer ones from the same address.",
        ),
        (AUTH_FAILURES_TOTAL, "CONNECTs refused for bad credentials."),
        (
            SUBSCRIBE_DENIED_TOTAL,
            "Subscription filters refused as invalid or not authorized.",
        ),
        (
            SUBSCRIBE_QUOTA_TOTAL,
            "Subscription filters refused past the per-SUBSCRIBE or per-connection cap.",
        ),
        (
            PUBLISH_DENIED_TOTAL,
            "Client PUBLISHes dropped as not authorized.",
        ),
        (
            UPLINK_TOTAL,
            "Client PUBLISHes to users/{id}/up/... handled and answered.",
        ),
        (
            DELIVERIES_TOTAL,
            "PUBLISHes written to client connections.",
        ),
        (PUSHES_TOTAL, "Publishes chatsvc handed to the connections' mailboxes."),
        (
            SESSION_REPLAYED_TOTAL,
            "Stored events replayed from the store to resumed persistent MQTT sessions.",
        ),
        (
            SESSION_SYNC_REQUIRED_TOTAL,
            "Resumed persistent MQTT sessions sent sync.required instead of a backlog over the bound.",
        ),
        (WILLS_TOTAL, "MQTT wills published (or scheduled after their delay)."),
    ] {
        describe_counter!(name, help);
        counter!(name);
    }
    describe_counter!(
        CONNECTIONS_ACCEPTED_TOTAL,
        "Connections accepted, by transport, before CONNECT is read."
    );
    for transport in TRANSPORTS {
        counter!(CONNECTIONS_ACCEPTED_TOTAL, "transport" => transport);
    }
    describe_counter!(
        CONNECTIONS_REFUSED_TOTAL,
        "Authenticated CONNECTs refused, by reason."
    );
    for reason in REFUSAL_REASONS {
        counter!(CONNECTIONS_REFUSED_TOTAL, "reason" => reason);
    }
    describe_counter!(
        RATE_LIMITED_TOTAL,
        "Requests and connections refused by a rate limit, by limit."
    );
    for limit in Limit::ALL {
        counter!(RATE_LIMITED_TOTAL, "limit" => limit.label());
    }
}

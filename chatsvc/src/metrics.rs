//! chatsvc's metrics: every name, its HELP text, its label values, and the
//! Prometheus recorder that `GET /metrics` renders.
//!
//! Metrics are an interface for operators (their dashboards and alerts use
//! these names), listed in `docs/metrics.md`; a test in `tests/` checks a
//! real scrape against that list. Names follow the Prometheus naming guide:
//! an `mqchat_` prefix, the unit as a suffix, `_total` for counters. Label
//! values come from the closed sets here, never from what a client sends.
//! The gateway's metrics are in [`mqchat_broker::metrics`], and so is
//! [`RATE_LIMITED_TOTAL`], which both crates count into.

use ::metrics::{counter, describe_counter, describe_gauge, describe_histogram, gauge, histogram};
use metrics_exporter_prometheus::{Matcher, PrometheusBuilder, PrometheusHandle};
use tracing::warn;

pub use mqchat_broker::metrics::{rate_limited, Limit, RATE_LIMITED_TOTAL};

/// Histogram, labels `method`, `route` (the matched template, or
/// `unmatched`) and `status`.
pub const HTTP_REQUEST_DURATION_SECONDS: &str = "mqchat_http_request_duration_seconds";
pub const HTTP_CONNECTIONS_REFUSED_TOTAL: &str = "mqchat_http_connections_refused_total";
/// Counter, label `phase` ([`TIMEOUT_PHASES`]).
pub const HTTP_CONNECTIONS_TIMED_OUT_TOTAL: &str = "mqchat_http_connections_timed_out_total";
/// Counter, label `created` (`true`, or `false` for a deduplicated retry).
pub const MESSAGES_ACCEPTED_TOTAL: &str = "mqchat_messages_accepted_total";
/// Counter, label `reason` ([`SWEEP_REASONS`]).
pub const MESSAGES_SWEPT_TOTAL: &str = "mqchat_messages_swept_total";
pub const EVENTS_PUSHED_TOTAL: &str = "mqchat_events_pushed_total";
pub const EVENTS_SYNCED_TOTAL: &str = "mqchat_events_synced_total";
pub const FILES_UPLOADED_TOTAL: &str = "mqchat_files_uploaded_total";
/// Counter, label `reason` ([`THUMBNAIL_SKIP_REASONS`]).
pub const THUMBNAILS_SKIPPED_TOTAL: &str = "mqchat_thumbnails_skipped_total";
pub const WEBHOOK_QUEUE_DEPTH: &str = "mqchat_webhook_queue_depth";
/// Counter, label `result` ([`WEBHOOK_RESULTS`]).
pub const WEBHOOK_DELIVERIES_TOTAL: &str = "mqchat_webhook_deliveries_total";
pub const STORE_COMMIT_SECONDS: &str = "mqchat_store_commit_seconds";
/// Histogram: jobs (writes) per group commit.
pub const STORE_COMMIT_JOBS: &str = "mqchat_store_commit_jobs";
pub const STORE_COMMIT_FAILURES_TOTAL: &str = "mqchat_store_commit_failures_total";
/// Counter: what a PostgreSQL writer's group commits cost in waits on the
/// database.
pub const STORE_ROUND_TRIPS_TOTAL: &str = "mqchat_store_round_trips_total";
pub const STORE_WAL_REWIND_SECONDS: &str = "mqchat_store_wal_rewind_seconds";
pub const STORE_WAL_FRAMES: &str = "mqchat_store_wal_frames";
/// Histogram: how long a search waited for its turn
/// (`--search-concurrency`).
pub const SEARCH_WAIT_SECONDS: &str = "mqchat_search_wait_seconds";

/// Cluster only (`--cluster`): 1 while connected to NATS.
pub const CLUSTER_BUS_UP: &str = "mqchat_cluster_bus_up";
/// Cluster only: nodes in this node's view, itself included.
pub const CLUSTER_NODES: &str = "mqchat_cluster_nodes";
pub const CLUSTER_PUBLISHED_TOTAL: &str = "mqchat_cluster_published_total";
/// Counter, label `reason` ([`CLUSTER_DROP_REASONS`]).
pub const CLUSTER_DROPPED_TOTAL: &str = "mqchat_cluster_dropped_total";
pub const CLUSTER_RECEIVED_TOTAL: &str = "mqchat_cluster_received_total";
pub const CLUSTER_EVENTS_LATE_TOTAL: &str = "mqchat_cluster_events_late_total";
pub const CLUSTER_GAPS_RELEASED_TOTAL: &str = "mqchat_cluster_gaps_released_total";
pub const CLUSTER_SLOW_CONSUMER_TOTAL: &str = "mqchat_cluster_slow_consumer_total";

/// The `reason` label values of [`CLUSTER_DROPPED_TOTAL`].
pub const DROP_BUS_DOWN: &str = "bus_down";
pub const DROP_QUEUE_FULL: &str = "queue_full";
pub const CLUSTER_DROP_REASONS: [&str; 2] = [DROP_BUS_DOWN, DROP_QUEUE_FULL];

/// The `phase` label values of [`HTTP_CONNECTIONS_TIMED_OUT_TOTAL`].
pub const PHASE_HEADER: &str = "header";
pub const PHASE_IDLE: &str = "idle";
pub const TIMEOUT_PHASES: [&str; 2] = [PHASE_HEADER, PHASE_IDLE];

/// The `reason` label values of [`THUMBNAILS_SKIPPED_TOTAL`].
pub const SKIPPED_TOO_LARGE: &str = "too_large";
pub const SKIPPED_BUSY: &str = "busy";
pub const THUMBNAIL_SKIP_REASONS: [&str; 2] = [SKIPPED_TOO_LARGE, SKIPPED_BUSY];

/// The `reason` label values of [`MESSAGES_SWEPT_TOTAL`].
pub const SWEPT_TTL: &str = "ttl";
pub const SWEPT_RETENTION: &str = "retention";
pub const SWEEP_REASONS: [&str; 2] = [SWEPT_TTL, SWEPT_RETENTION];

/// The `result` label values of [`WEBHOOK_DELIVERIES_TOTAL`].
pub const RESULT_OK: &str = "ok";
pub const RESULT_ERROR: &str = "error";
pub const WEBHOOK_RESULTS: [&str; 2] = [RESULT_OK, RESULT_ERROR];

/// Buckets for every `_seconds` histogram: 0.5 ms to 5 s.
const SECONDS_BUCKETS: [f64; 13] = [
    0.0005, 0.001, 0.0025, 0.005, 0.01, 0.025, 0.05, 0.1, 0.25, 0.5, 1.0, 2.5, 5.0,
];

/// Buckets for [`STORE_COMMIT_JOBS`]: powers of two up to the writer's
/// largest batch (512), so the share of commits that group many jobs shows.
const COMMIT_JOBS_BUCKETS: [f64; 10] = [1.0, 2.0, 4.0, 8.0, 16.0, 32.0, 64.0, 128.0, 256.0, 512.0];

/// Installs the Prometheus recorder (histograms with buckets, never
/// summaries: buckets aggregate across nodes) and describes every metric of
/// chatsvc and the gateway. `None` when a recorder is installed already
/// (a second server in one process); metrics then go to that one.
pub fn install() -> Option<PrometheusHandle> {
    let handle = PrometheusBuilder::new()
        .set_buckets_for_metric(Matcher::Suffix("seconds".into()), &SECONDS_BUCKETS)
        .and_then(|b| {
            b.set_buckets_for_metric(
                Matcher::Full(STORE_COMMIT_JOBS.into()),
                &COMMIT_JOBS_BUCKETS,
            )
        })
        .and_then(|b| b.install_recorder())
        .map_err(|e| warn!(error = %e, "metrics recorder not installed"))
        .ok();
    mqchat_broker::metrics::describe();
    describe();
    handle
}

/// Registers the HELP text of every chatsvc metric and creates each series
/// whose labels are known in advance at zero, so that a dashboard sees `0`,
/// not "no data", before the first event.
fn describe() {
    for (name, help) in [
        (
            HTTP_CONNECTIONS_REFUSED_TOTAL,
            "HTTP connections refused past the per-address cap.",
        ),
        (
            EVENTS_PUSHED_TOTAL,
            "Events pushed to users' MQTT topics from the outbox.",
        ),
        (EVENTS_SYNCED_TOTAL, "Events returned by sync requests."),
        (FILES_UPLOADED_TOTAL, "Files uploaded."),
        (
            STORE_COMMIT_FAILURES_TOTAL,
            "Group commits that failed and were rolled back.",
        ),
        (
            STORE_ROUND_TRIPS_TOTAL,
            "Round trips to PostgreSQL the writers waited on (statements, BEGIN and COMMIT); none on SQLite.",
        ),
    ] {
        describe_counter!(name, help);
        counter!(name);
    }
    describe_counter!(
        HTTP_CONNECTIONS_TIMED_OUT_TOTAL,
        "HTTP connections closed by a timeout, by phase: no request head in time, or idle."
    );
    for phase in TIMEOUT_PHASES {
        counter!(HTTP_CONNECTIONS_TIMED_OUT_TOTAL, "phase" => phase);
    }
    describe_counter!(
        MESSAGES_ACCEPTED_TOTAL,
        "Messages accepted, by whether stored now (true) or a retry of a stored one (false)."
    );
    for created in ["true", "false"] {
        counter!(MESSAGES_ACCEPTED_TOTAL, "created" => created);
    }
    describe_counter!(
        MESSAGES_SWEPT_TOTAL,
        "Messages whose content the sweeper removed, by reason: their TTL passed, or retention."
    );
    for reason in SWEEP_REASONS {
        counter!(MESSAGES_SWEPT_TOTAL, "reason" => reason);
    }
    describe_counter!(
        THUMBNAILS_SKIPPED_TOTAL,
        "Image uploads stored without a thumbnail, by reason."
    );
    for reason in THUMBNAIL_SKIP_REASONS {
        counter!(THUMBNAILS_SKIPPED_TOTAL, "reason" => reason);
    }
    describe_counter!(
        WEBHOOK_DELIVERIES_TOTAL,
        "Webhook delivery attempts, by result."
    );
    for result in WEBHOOK_RESULTS {
        counter!(WEBHOOK_DELIVERIES_TOTAL, "result" => result);
    }
    for (name, help) in [
        (
            WEBHOOK_QUEUE_DEPTH,
            "Webhook deliveries waiting to be sent.",
        ),
        (
            STORE_WAL_FRAMES,
            "Pages in the SQLite WAL at the last background checkpoint.",
        ),
    ] {
        describe_gauge!(name, help);
        gauge!(name);
    }
    describe_histogram!(
        HTTP_REQUEST_DURATION_SECONDS,
        ::metrics::Unit::Seconds,
        "HTTP request latency, by method, route template and status."
    );
    for (name, help) in [
        (STORE_COMMIT_SECONDS, "Time to commit one group of writes."),
        (
            STORE_WAL_REWIND_SECONDS,
            "Time of the writer's own checkpoints that let a long WAL start over.",
        ),
        (
            SEARCH_WAIT_SECONDS,
            "Time a search waited for its turn (searches that may run at once are bounded).",
        ),
    ] {
        describe_histogram!(name, ::metrics::Unit::Seconds, help);
        histogram!(name);
    }
    describe_histogram!(
        STORE_COMMIT_JOBS,
        ::metrics::Unit::Count,
        "Jobs (writes) committed together in one group commit."
    );
    histogram!(STORE_COMMIT_JOBS);
}

/// Describes the cluster's metrics and creates them at zero; called only
/// when `--cluster` is given, so a single node's scrape does not list them.
pub fn describe_cluster() {
    for (name, help) in [
        (
            CLUSTER_BUS_UP,
            "1 while this node is connected to the NATS bus, else 0.",
        ),
        (
            CLUSTER_NODES,
            "Cluster nodes this node knows alive, itself included.",
        ),
    ] {
        describe_gauge!(name, help);
        gauge!(name);
    }
    for (name, help) in [
        (CLUSTER_PUBLISHED_TOTAL, "Messages this node published on the bus."),
        (CLUSTER_RECEIVED_TOTAL, "Messages received on users' subjects from other nodes."),
        (
            CLUSTER_EVENTS_LATE_TOTAL,
            "Events dropped because they arrived after their cursor was passed (the client syncs them).",
        ),
        (
            CLUSTER_GAPS_RELEASED_TOTAL,
            "Cursor gaps given up after the reorder wait (the client heals them by sync).",
        ),
        (CLUSTER_SLOW_CONSUMER_TOTAL, "Times NATS reported this node as a slow consumer."),
    ] {
        describe_counter!(name, help);
        counter!(name);
    }
    describe_counter!(
        CLUSTER_DROPPED_TOTAL,
        "Bus publishes dropped, by reason: bus down, or the bounded queue full."
    );
    for reason in CLUSTER_DROP_REASONS {
        counter!(CLUSTER_DROPPED_TOTAL, "reason" => reason);
    }
}

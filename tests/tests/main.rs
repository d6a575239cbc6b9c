//! The end-to-end tests: one test binary, one module per area (a binary per
//! file linked the harness and its dependencies 36 times over). Each test
//! starts what it needs: real `chatd` processes on loopback port 0 with
//! temp data dirs, real PostgreSQL, NATS and HAProxy instances, real MQTT
//! and HTTP clients (`mqchat_e2e`, `tests/src/`).
//!
//! Run one area with a filter: `cargo test -p mqchat-e2e --test e2e cluster::`.
//! A new file here needs its `mod` line below; `every_file_is_a_module`
//! fails until it has one, since Cargo no longer finds test files by itself
//! (`autotests = false` in `tests/Cargo.toml`).

mod admin;
mod auth;
mod bad_input;
mod batch;
mod browser;
mod chat_cli;
mod cluster;
mod cluster_lb;
mod cluster_shared;
mod conformance;
mod conversation_settings;
mod crash;
mod disappearing;
mod faults;
mod files;
mod friends;
mod groups;
mod hardening;
mod lifecycle;
mod message_ops;
mod messaging;
mod mqtt_sessions;
mod parity;
mod pg_locks;
mod pg_nodes;
mod postgres;
mod postgres_messages;
mod proxy_protocol;
mod rate_limits;
mod reactions;
mod receipts;
mod replies;
mod schemas;
mod sdk;
mod security;
mod services;
mod sessions;
mod slow_client;
mod storm;
mod transports;
mod uplink;
mod webhooks;

#[test]
fn every_file_is_a_module() {
    let dir = std::path::Path::new(env!("CARGO_MANIFEST_DIR")).join("tests");
    let this = include_str!("main.rs");
    let mut missing = Vec::new();
    for entry in std::fs::read_dir(&dir).expect("tests/tests is readable") {
        let path = entry.expect("a directory entry").path();
        let name = match path.extension() {
            Some(ext) if ext == "rs" => path.file_stem(),
            None if path.join("mod.rs").is_file() => path.file_name(),
            _ => None,
        };
        let Some(name) = name.and_then(|n| n.to_str()) else {
            continue;
        };
        if name != "main" && !this.contains(&format!("\nmod {name};\n")) {
            missing.push(name.to_owned());
        }
    }
    assert!(
        missing.is_empty(),
        "add `mod` lines to tests/tests/main.rs for {missing:?}"
    );
}

//! chat-bench end to end at `--quick` sizes against the debug chatd: every
//! scenario runs, the correctness checks hold (no loss, no duplicates, no
//! missing deliveries), and the report files are written.

use std::path::PathBuf;
use std::process::Command;

fn chatd() -> PathBuf {
    if let Ok(p) = std::env::var("CHATD_BIN") {
        return PathBuf::from(p);
    }
    // target/debug/chat-bench → target/debug/chatd (built by `cargo test --workspace`).
    PathBuf::from(env!("CARGO_BIN_EXE_chat-bench")).with_file_name("chatd")
}

#[test]
fn quick_run_reports_every_scenario() {
    let chatd = chatd();
    assert!(
        chatd.exists(),
        "{} not found: run `cargo test --workspace` or set CHATD_BIN",
        chatd.display()
    );
    let out = tempfile::tempdir().expect("temp dir");
    let run = Command::new(env!("CARGO_BIN_EXE_chat-bench"))
        .arg("--quick")
        .arg("--chatd")
        .arg(&chatd)
        .arg("--out-dir")
        .arg(out.path())
        .output()
        .expect("run chat-bench");
    let stderr = String::from_utf8_lossy(&run.stderr);
    assert!(run.status.success(), "chat-bench failed: {stderr}");
    let report: serde_json::Value =
        serde_json::from_slice(&run.stdout).expect("JSON report on stdout");
    for key in [
        "bare",
        "bare_dm",
        "store",
        "idle",
        "dm",
        "dm_mqtt",
        "dm_h2",
        "dm_batch",
        "group",
        "sync",
        "connections",
    ] {
        assert!(!report[key].is_null(), "no {key} in the report: {report}");
    }
    for dm in ["dm", "dm_mqtt", "dm_h2", "dm_batch"] {
        let phases = report[dm]["phases"].as_array().expect("dm phases");
        assert!(
            phases.len() >= 2,
            "{dm}: fixed rate and saturation: {phases:?}"
        );
        for p in phases {
            assert!(
                p["acked"].as_u64().unwrap_or(0) > 0,
                "{dm}: nothing acked: {p}"
            );
            assert_eq!(p["errors"], 0, "{dm}: {p}");
            assert_eq!(p["lost"], 0, "{dm}: {p}");
            assert_eq!(p["duplicates"], 0, "{dm}: {p}");
            // The writer's activity, read from chatd's /metrics.
            assert!(
                p["store"]["commits"].as_u64().unwrap_or(0) > 0
                    && p["store"]["jobs_per_commit"].as_f64().unwrap_or(0.0) >= 1.0,
                "{dm}: no store activity: {p}"
            );
        }
    }
    // The store alone reports what it wrote per message (a WAL frame is
    // over 4 KiB, and every message writes at least its own rows).
    assert!(
        report["store"]["written"]["bytes_per_msg"]
            .as_f64()
            .unwrap_or(0.0)
            > 1000.0,
        "{}",
        report["store"]
    );
    // The dm load on bare rumqttd: a fixed rate, then saturation with one
    // send in flight per sender and with the uplink's window; nothing lost.
    let bare = report["bare_dm"]["phases"]
        .as_array()
        .expect("bare_dm phases");
    let windows: Vec<u64> = bare
        .iter()
        .filter(|p| p["target_rate"].is_null())
        .filter_map(|p| p["window"].as_u64())
        .collect();
    assert_eq!(windows, [1, 16], "{bare:?}");
    for p in bare {
        assert!(p["acked"].as_u64().unwrap_or(0) > 0, "bare_dm: {p}");
        assert_eq!(p["lost"], 0, "bare_dm: {p}");
        assert_eq!(p["duplicates"], 0, "bare_dm: {p}");
    }
    let ratio = verdicts_about(&report, "≥ 0.5× bare rumqttd");
    assert!(
        ratio.len() == 4 && ratio.iter().all(|m| m.contains("under the same load")),
        "{ratio:?}"
    );
    assert_eq!(report["group"]["missing"], 0);
    assert_eq!(report["connections"]["failed"], 0);
    assert_eq!(report["connections"]["connections"], 200);
    assert!(report["sync"]["runs"][0]["events"].as_u64().unwrap_or(0) >= 300);
    assert!(report["idle"]["median_rss_kib"].as_f64().unwrap_or(0.0) > 1000.0);
    let verdicts = report["verdicts"].as_array().expect("verdicts");
    assert!(verdicts.len() >= 8, "{verdicts:?}");
    for file in ["results.json", "results.md", "latency.svg"] {
        let text = std::fs::read_to_string(out.path().join(file)).expect(file);
        assert!(!text.is_empty(), "{file} is empty");
    }
    let svg = std::fs::read_to_string(out.path().join("latency.svg")).unwrap_or_default();
    assert!(svg.matches("<polyline").count() >= 4, "{svg}");
}

/// What the verdicts whose goal starts with `goal` measured.
fn verdicts_about(report: &serde_json::Value, goal: &str) -> Vec<String> {
    report["verdicts"]
        .as_array()
        .into_iter()
        .flatten()
        .filter(|v| v["goal"].as_str().is_some_and(|g| g.starts_with(goal)))
        .filter_map(|v| v["measured"].as_str().map(str::to_string))
        .collect()
}

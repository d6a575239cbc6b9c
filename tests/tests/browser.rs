//! The web client end to end: two users in a real headless Chromium, driven
//! by playwright-core (`tests/browser/e2e.mjs`), against a real chatd that
//! serves the page, the JS SDK and MQTT.js. Skipped only when Node, Chromium
//! or `npm ci` in tests/browser are missing outside CI; in CI (CI=true) that
//! is a failure (`.ci/run` installs them).

use std::path::PathBuf;
use std::time::Duration;

use anyhow::{bail, Result};
use mqchat_e2e::TestServer;

fn prerequisites(browser_dir: &std::path::Path) -> Result<bool> {
    let chromium = std::env::var("CHROMIUM").unwrap_or_else(|_| "/usr/bin/chromium".into());
    let missing: Vec<&str> = [
        (
            "node",
            std::process::Command::new("node")
                .arg("--version")
                .output()
                .is_ok(),
        ),
        ("chromium", std::path::Path::new(&chromium).exists()),
        (
            "tests/browser/node_modules (npm ci)",
            browser_dir.join("node_modules/playwright-core").exists(),
        ),
    ]
    .into_iter()
    .filter(|(_, ok)| !ok)
    .map(|(what, _)| what)
    .collect();
    if missing.is_empty() {
        return Ok(true);
    }
    if std::env::var("CI").is_ok_and(|v| v == "true") {
        bail!("browser test prerequisites missing in CI: {missing:?}");
    }
    eprintln!("SKIPPED: missing {missing:?}");
    Ok(false)
}

#[tokio::test]
async fn two_browser_users_see_each_other_and_chat() -> Result<()> {
    let browser_dir = PathBuf::from(env!("CARGO_MANIFEST_DIR")).join("browser");
    if !prerequisites(&browser_dir)? {
        return Ok(());
    }
    let vendor = browser_dir.join("node_modules/mqtt/dist");
    let server =
        TestServer::start_with(&["--web-vendor-dir", vendor.to_str().unwrap_or_default()]).await?;
    let alice = server.user("alice").await?;
    let bob = server.user("bob").await?;
    alice.befriend(&bob).await?;
    // Bob calls himself "alice": the page must show "alice (@bob)".
    let (s, m) = bob
        .patch("/v1/me", &serde_json::json!({"display_name": "alice"}))
        .await?;
    if s != 200 {
        bail!("set bob's display name: {s} {m}");
    }

    let shots = PathBuf::from(env!("CARGO_MANIFEST_DIR")).join("../target/browser-screenshots");
    let run = tokio::process::Command::new("node")
        .arg("e2e.mjs")
        .arg(server.url(""))
        .args(["alice", "password-alice", "bob", "password-bob"])
        .current_dir(&browser_dir)
        .env("SCREENSHOT_DIR", &shots)
        .env("DISPLAY2", "alice")
        .kill_on_drop(true)
        .output();
    let out = tokio::time::timeout(Duration::from_secs(120), run).await??;
    let stdout = String::from_utf8_lossy(&out.stdout);
    eprintln!("{stdout}{}", String::from_utf8_lossy(&out.stderr));
    assert!(out.status.success(), "browser e2e failed:\n{stdout}");
    assert!(stdout.contains("PASS"), "{stdout}");
    Ok(())
}

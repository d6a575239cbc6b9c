//! The `chatd` binary's command line (this test also makes `cargo test`
//! build the binary that the end-to-end tests in `tests/` run).

use std::process::Command;

#[test]
fn help_lists_the_contract_flags() -> Result<(), Box<dyn std::error::Error>> {
    let out = Command::new(env!("CARGO_BIN_EXE_chatd"))
        .arg("--help")
        .output()?;
    assert!(out.status.success());
    let help = String::from_utf8(out.stdout)?;
    for flag in [
        "--http",
        "--mqtt",
        "--data-dir",
        "CHAT_HTTP_ADDR",
        "CHAT_MQTT_ADDR",
        "CHAT_DATA_DIR",
    ] {
        assert!(help.contains(flag), "--help lacks {flag}:\n{help}");
    }
    Ok(())
}

#[test]
fn bad_flags_are_refused() -> Result<(), Box<dyn std::error::Error>> {
    let out = Command::new(env!("CARGO_BIN_EXE_chatd"))
        .args(["--http", "not-an-address"])
        .output()?;
    assert!(!out.status.success());
    assert!(String::from_utf8_lossy(&out.stderr).contains("--http"));
    Ok(())
}

//! chat-cli's command line, on the built binary. (Its chats against a real
//! chatd are end-to-end tests, `tests/tests/chat_cli.rs`, which run this
//! same binary: Cargo builds it for `cargo test --workspace` because this
//! crate has integration tests.)

use std::process::Command;

fn chat_cli(args: &[&str]) -> std::io::Result<std::process::Output> {
    Command::new(env!("CARGO_BIN_EXE_chat-cli"))
        .args(args)
        .env_remove("CHAT_USER")
        .env_remove("CHAT_WS")
        .output()
}

#[test]
fn help_lists_every_setting() -> std::io::Result<()> {
    let out = chat_cli(&["--help"])?;
    assert!(out.status.success());
    let help = String::from_utf8_lossy(&out.stdout);
    for flag in ["--server", "--mqtt", "--ws", "--user", "--password"] {
        assert!(help.contains(flag), "{flag} missing from:\n{help}");
    }
    Ok(())
}

#[test]
fn a_missing_user_or_conflicting_transports_are_usage_errors() -> std::io::Result<()> {
    // clap's usage errors exit 2 and name the problem.
    let no_user = chat_cli(&[])?;
    assert_eq!(no_user.status.code(), Some(2));
    assert!(String::from_utf8_lossy(&no_user.stderr).contains("--user"));
    let both = chat_cli(&["--user", "amy", "--ws", "--mqtt", "127.0.0.1:1"])?;
    assert_eq!(both.status.code(), Some(2));
    assert!(String::from_utf8_lossy(&both.stderr).contains("cannot be used with"));
    Ok(())
}

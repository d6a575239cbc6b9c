//! `chat-cli`, the terminal client, against a real chatd.
//!
//! The interactive test gives it a real terminal: `script` (util-linux)
//! runs it on a pseudo-terminal, the test types into the terminal through
//! `script`'s stdin and reads the screen from its stdout. So the password
//! prompt (echo off), the terminal line discipline and the tty-only hints are
//! the ones a user gets. The other tests pipe its standard input.
//!
//! chat-cli is found like chatd: `$CHAT_CLI_BIN`, else next to the test
//! binary (`target/<profile>/chat-cli`, built by `cargo test --workspace`).
//! Without `script` the pty test is skipped, except in CI (CI=true).

use std::path::PathBuf;
use std::process::{ExitStatus, Stdio};
use std::sync::{Arc, Mutex, PoisonError};
use std::time::Duration;

use anyhow::{anyhow, bail, Context, Result};
use mqchat_e2e::{eventually, free_ports, TestServer};
use serde_json::{json, Value};
use tokio::io::{AsyncReadExt, AsyncWriteExt};
use tokio::process::{Child, ChildStdin, Command};

/// How long a line may take to show up on the screen.
const SCREEN_WAIT: Duration = Duration::from_secs(15);
/// How long chat-cli may take to exit.
const EXIT_WAIT: Duration = Duration::from_secs(20);

fn chat_cli_bin() -> Result<PathBuf> {
    mqchat_e2e::workspace_bin("chat-cli", "CHAT_CLI_BIN")
}

/// Whether `script` can give chat-cli a terminal; in CI it must.
fn script_available() -> Result<bool> {
    let found = std::process::Command::new("script")
        .arg("--version")
        .output()
        .is_ok_and(|out| out.status.success());
    if !found {
        if std::env::var("CI").is_ok_and(|v| v == "true") {
            bail!("`script` (util-linux) is required in CI");
        }
        eprintln!("SKIPPED: `script` (util-linux) not installed");
    }
    Ok(found)
}

/// Quotes one word for `sh -c`.
fn sh_quote(word: &str) -> String {
    format!("'{}'", word.replace('\'', r"'\''"))
}

/// The flags that point chat-cli at `server` as `user`.
fn cli_args(server: &TestServer, user: &str) -> Vec<String> {
    vec![
        "--server".into(),
        server.url(""),
        "--mqtt".into(),
        server.mqtt.to_string(),
        "--user".into(),
        user.into(),
    ]
}

/// A running chat-cli: what it has printed so far, and its keyboard.
struct Screen {
    child: Child,
    keyboard: ChildStdin,
    printed: Arc<Mutex<Vec<u8>>>,
    readers: Vec<tokio::task::JoinHandle<()>>,
    /// Where the next [`expect`](Self::expect) starts looking.
    seen: usize,
}

impl Screen {
    /// chat-cli on a pseudo-terminal: `script -qfec CMD /dev/null` runs CMD
    /// on a new pty, copies its stdin to the terminal and the terminal's
    /// output (stdout and stderr, with echo) to its stdout, and exits with
    /// CMD's status.
    fn on_a_terminal(args: &[String]) -> Result<Screen> {
        let mut words = vec![sh_quote(&chat_cli_bin()?.to_string_lossy())];
        words.extend(args.iter().map(|a| sh_quote(a)));
        let mut command = Command::new("script");
        command
            .args(["-q", "-f", "-e", "-c", &words.join(" "), "/dev/null"])
            .env("SHELL", "/bin/sh")
            // So that it asks.
            .env_remove("CHAT_PASSWORD");
        Screen::spawn(command)
    }

    /// chat-cli with piped stdin, stdout and stderr (read as one screen).
    fn piped(args: &[String], password: &str) -> Result<Screen> {
        let mut command = Command::new(chat_cli_bin()?);
        command.args(args).env("CHAT_PASSWORD", password);
        Screen::spawn(command)
    }

    fn spawn(mut command: Command) -> Result<Screen> {
        for var in ["CHAT_SERVER", "CHAT_MQTT", "CHAT_WS", "CHAT_USER"] {
            command.env_remove(var);
        }
        let mut child = command
            .stdin(Stdio::piped())
            .stdout(Stdio::piped())
            .stderr(Stdio::piped())
            .kill_on_drop(true)
            .spawn()
            .context("spawn chat-cli")?;
        let keyboard = child.stdin.take().ok_or_else(|| anyhow!("no stdin"))?;
        let printed = Arc::new(Mutex::new(Vec::new()));
        let outputs = [
            child
                .stdout
                .take()
                .map(|s| Box::new(s) as Box<dyn tokio::io::AsyncRead + Unpin + Send>),
            child
                .stderr
                .take()
                .map(|s| Box::new(s) as Box<dyn tokio::io::AsyncRead + Unpin + Send>),
        ];
        let mut readers = Vec::new();
        for mut output in outputs.into_iter().flatten() {
            let printed = printed.clone();
            readers.push(tokio::spawn(async move {
                let mut chunk = [0u8; 4096];
                while let Ok(n) = output.read(&mut chunk).await {
                    if n == 0 {
                        break;
                    }
                    printed
                        .lock()
                        .unwrap_or_else(PoisonError::into_inner)
                        .extend_from_slice(&chunk[..n]);
                }
            }));
        }
        Ok(Screen {
            child,
            keyboard,
            printed,
            readers,
            seen: 0,
        })
    }

    /// Everything printed so far, with the terminal's `\r` removed.
    fn text(&self) -> String {
        screen_text(&self.printed)
    }

    /// Types one line.
    async fn type_line(&mut self, line: &str) -> Result<()> {
        self.keyboard
            .write_all(format!("{line}\n").as_bytes())
            .await?;
        self.keyboard.flush().await?;
        Ok(())
    }

    /// Waits until `needle` is printed after what earlier calls matched;
    /// returns the whole line it is on.
    async fn expect(&mut self, needle: &str) -> Result<String> {
        self.expect_within(SCREEN_WAIT, needle).await
    }

    async fn expect_within(&mut self, within: Duration, needle: &str) -> Result<String> {
        let seen = self.seen;
        let found = eventually(within, || {
            let text = self.text();
            async move {
                let Some(rest) = text.get(seen..) else {
                    return Ok(None);
                };
                Ok(rest.find(needle).map(|at| {
                    let start = seen + rest[..at].rfind('\n').map_or(0, |nl| nl + 1);
                    let end = seen + at + rest[at..].find('\n').unwrap_or(rest.len() - at);
                    (text[start..end].to_owned(), end)
                }))
            }
        })
        .await;
        match found {
            Ok((line, end)) => {
                self.seen = end;
                Ok(line)
            }
            Err(_) => bail!(
                "{needle:?} not printed within {within:?}; screen after the last match:\n{}",
                self.text().get(seen..).unwrap_or_default()
            ),
        }
    }

    /// Closes the keyboard (end of input) and waits for the exit; returns
    /// the status and the whole screen.
    async fn wait(self) -> Result<(ExitStatus, String)> {
        let Screen {
            mut child,
            keyboard,
            readers,
            printed,
            ..
        } = self;
        drop(keyboard);
        let status = tokio::time::timeout(EXIT_WAIT, child.wait())
            .await
            .map_err(|_| anyhow!("chat-cli still running after {EXIT_WAIT:?}"))??;
        // The readers finish once the pipes close.
        for reader in readers {
            tokio::time::timeout(EXIT_WAIT, reader)
                .await
                .map_err(|_| anyhow!("output still open after the exit"))??;
        }
        Ok((status, screen_text(&printed)))
    }
}

fn screen_text(printed: &Mutex<Vec<u8>>) -> String {
    let printed = printed.lock().unwrap_or_else(PoisonError::into_inner);
    String::from_utf8_lossy(&printed).replace('\r', "")
}

async fn create_group(owner: &mqchat_e2e::TestUser, name: &str, members: &[u64]) -> Result<u64> {
    let (status, group) = owner
        .post("/v1/groups", &json!({"name": name, "members": members}))
        .await?;
    if status != 201 {
        bail!("create group: {status} {group}");
    }
    group["id"]
        .as_u64()
        .ok_or_else(|| anyhow!("no group id in {group}"))
}

/// The next message from `sender` that `mqtt` receives.
async fn next_from(mqtt: &mut mqchat_e2e::Mqtt, sender: u64) -> Result<Value> {
    let deadline = tokio::time::Instant::now() + SCREEN_WAIT;
    loop {
        let left = deadline.saturating_duration_since(tokio::time::Instant::now());
        let Some(event) = mqtt.next_of_type("message.created", left).await? else {
            bail!("no message from {sender} within {SCREEN_WAIT:?}");
        };
        if event["message"]["sender_id"] == sender {
            return Ok(event["message"].clone());
        }
    }
}

#[tokio::test]
async fn chats_on_a_terminal() -> Result<()> {
    if !script_available()? {
        return Ok(());
    }
    let server = TestServer::start().await?;
    let alice = server.user("alice").await?;
    let bob = server.user("bob").await?;
    alice.befriend(&bob).await?;

    let mut cli = Screen::on_a_terminal(&cli_args(&server, "alice"))?;
    // No --password and a terminal: it asks, with echo off.
    cli.expect("password for alice:").await?;
    cli.type_line("password-alice").await?;
    cli.expect(&format!("connected as alice (id {})", alice.id))
        .await?;
    cli.expect("type :help for commands").await?;
    assert!(
        !cli.text().contains("password-alice"),
        "the password was echoed:\n{}",
        cli.text()
    );

    // Bob comes online: alice sees it, and :olu lists him.
    let mut bob_mqtt = server.mqtt(&bob).await?;
    cli.expect("* bob is online").await?;
    cli.type_line(":olu").await?;
    cli.expect("online: bob").await?;

    // Alice writes to bob; his MQTT client gets it, her screen shows it.
    cli.type_line("@bob hello from the terminal").await?;
    let message = next_from(&mut bob_mqtt, alice.id).await?;
    assert_eq!(message["body"]["text"], "hello from the terminal");
    cli.expect("@alice -> @bob: hello from the terminal")
        .await?;

    // Bob answers over HTTP.
    let (status, _) = bob
        .send_text(alice.id, "b-1", "hi alice, over http")
        .await?;
    assert_eq!(status, 201);
    let line = cli.expect("@bob: hi alice, over http").await?;
    assert!(line.starts_with('['), "no time in {line:?}");

    // A group (its name has a space) made over HTTP; alice writes in it.
    let group = create_group(&bob, "dev team", &[alice.id]).await?;
    cli.expect("#dev team * bob created the group with you")
        .await?;
    cli.type_line("#dev team hello team").await?;
    let message = next_from(&mut bob_mqtt, alice.id).await?;
    assert_eq!(message["to"]["group"], group);
    assert_eq!(message["body"]["text"], "hello team");
    cli.expect("#dev team @alice: hello team").await?;
    let (status, _) = bob.send_group(group, "g-1", "welcome").await?;
    assert_eq!(status, 201);
    cli.expect("#dev team @bob: welcome").await?;
    cli.type_line(&format!("#{group} by id")).await?;
    cli.expect("#dev team @alice: by id").await?;

    // Bad input gets a one-line answer and changes nothing.
    cli.type_line(":nope").await?;
    cli.expect("error: unknown command :nope (try :help)")
        .await?;
    cli.type_line("just text").await?;
    cli.expect("error: not a command").await?;
    cli.type_line("@nobody hi").await?;
    cli.expect("error: no user named nobody").await?;
    cli.type_line("#nogroup hi").await?;
    cli.expect("error: you are in no group named nogroup")
        .await?;
    // A server refusal shows its code: they are friends already.
    cli.type_line(":add @bob").await?;
    cli.expect("error: conflict: ").await?;

    cli.type_line(":history @bob 10").await?;
    cli.expect("--- history with @bob: last 2 ---").await?;
    cli.expect("@alice -> @bob: hello from the terminal")
        .await?;
    cli.expect("@bob: hi alice, over http").await?;
    cli.expect("--- start of the conversation ---").await?;
    cli.type_line(":groups").await?;
    cli.expect("#dev team (id").await?;

    cli.type_line(":q").await?;
    let (status, screen) = cli.wait().await?;
    eprintln!("{screen}");
    assert!(status.success(), "exit {status}:\n{screen}");
    assert!(!screen.contains("panicked"), "{screen}");
    Ok(())
}

/// Piped input over MQTT-over-WebSocket: junk lines are answered and
/// skipped, what came before the end of input is still sent, and the end of
/// input quits cleanly.
#[tokio::test]
async fn piped_input_over_websocket() -> Result<()> {
    let server = TestServer::start().await?;
    let alice = server.user("alice").await?;
    let bob = server.user("bob").await?;
    alice.befriend(&bob).await?;
    let mut bob_mqtt = server.mqtt(&bob).await?;

    let mut args = vec![
        "--server".to_owned(),
        server.url(""),
        "--ws".to_owned(),
        "--user".to_owned(),
        "alice".to_owned(),
    ];
    let mut cli = Screen::piped(&args, "password-alice")?;
    cli.expect(&format!("connected as alice (id {})", alice.id))
        .await?;
    cli.keyboard
        .write_all(b"\xff\xfe\x1b[2J not utf-8\n")
        .await?;
    cli.keyboard.write_all(&[b'a'; 70 * 1024]).await?;
    cli.type_line("").await?;
    cli.type_line("@bob over a pipe").await?;
    let message = next_from(&mut bob_mqtt, alice.id).await?;
    assert_eq!(message["body"]["text"], "over a pipe");
    cli.expect("@alice -> @bob: over a pipe").await?;
    cli.type_line("@bob last words").await?;
    let (status, screen) = cli.wait().await?;
    assert!(status.success(), "exit {status}:\n{screen}");
    assert!(screen.contains("error: not a command"), "{screen}");
    assert!(screen.contains("error: line longer than"), "{screen}");
    assert!(
        !screen.contains("type :help"),
        "a tty hint on a pipe:\n{screen}"
    );
    // Sent before the end of input, so sent before the exit.
    let message = next_from(&mut bob_mqtt, alice.id).await?;
    assert_eq!(message["body"]["text"], "last words");

    // A wrong password ends it with the server's error code.
    args.push("--password".to_owned());
    args.push("wrong password".to_owned());
    let cli = Screen::piped(&args, "")?;
    let (status, screen) = cli.wait().await?;
    assert!(!status.success(), "{screen}");
    assert!(screen.contains("error: invalid_credentials: "), "{screen}");
    Ok(())
}

/// The connection drops with the server and comes back on its own; the
/// screen says so, and messages flow again.
#[tokio::test]
async fn reconnects_after_a_server_restart() -> Result<()> {
    let tmp = tempfile::tempdir()?;
    let dir = tmp.path().join("data");
    let (http, mqtt) = free_ports()?;
    let mut server = TestServer::start_at(&dir, &http, &mqtt, &[]).await?;
    let alice = server.user("alice").await?;
    server.user("bob").await?;

    let mut cli = Screen::piped(&cli_args(&server, "alice"), "password-alice")?;
    cli.expect("connected as alice").await?;
    let status = server.terminate().await?;
    assert!(status.success(), "chatd exited with {status}");
    cli.expect("* connection lost, reconnecting").await?;
    server = TestServer::start_at(&dir, &http, &mqtt, &[]).await?;
    // The stream retries with backoff (up to seconds between attempts).
    cli.expect_within(Duration::from_secs(40), "* reconnected")
        .await?;
    let bob = server.login("bob", "password-bob").await?;
    let (status, _) = bob.send_text(alice.id, "r-1", "welcome back").await?;
    assert_eq!(status, 201);
    cli.expect("@bob: welcome back").await?;
    let (status, screen) = cli.wait().await?;
    assert!(status.success(), "exit {status}:\n{screen}");
    Ok(())
}

/// `:react` / `:unreact`, `:mute` and `:pins` on the current conversation
/// (the one last looked at) and on a named one; every change shows when its
/// event comes back, and the server holds it.
#[tokio::test]
async fn reacts_mutes_and_lists_pins() -> Result<()> {
    let server = TestServer::start().await?;
    let alice = server.user("alice").await?;
    let bob = server.user("bob").await?;
    alice.befriend(&bob).await?;
    let (status, sent) = bob.send_text(alice.id, "p-1", "pin me").await?;
    assert_eq!(status, 201, "{sent}");
    let message = sent["id"].as_u64().context("message id")?;
    let conversation = sent["conversation_id"]
        .as_u64()
        .context("conversation id")?;
    let settings = || async {
        let (status, list) = alice.get("/v1/conversations").await?;
        assert_eq!(status, 200, "{list}");
        let found = list["conversations"]
            .as_array()
            .and_then(|all| all.iter().find(|c| c["id"] == conversation))
            .map(|c| c["settings"].clone());
        found.context("the conversation is not listed")
    };

    let mut cli = Screen::piped(&cli_args(&server, "alice"), "password-alice")?;
    cli.expect("connected as alice").await?;
    // Nothing written to or looked at yet: no current conversation.
    cli.type_line(":pins").await?;
    cli.expect("error: no current conversation").await?;
    cli.type_line(":history @bob").await?;
    cli.expect(&format!("@bob: pin me  (id {message})")).await?;

    cli.type_line(&format!(":react {message} 👍")).await?;
    cli.expect(&format!(
        "* you reacted 👍 to message {message} in @bob (1)"
    ))
    .await?;
    let (status, body) = bob
        .put(&format!("/v1/messages/{message}/reactions/👍"), &json!({}))
        .await?;
    assert_eq!(status, 200, "{body}");
    cli.expect(&format!(
        "* bob reacted 👍 to message {message} in @bob (2)"
    ))
    .await?;
    cli.type_line(&format!(":unreact {message} 👍")).await?;
    cli.expect(&format!(
        "* you took back 👍 on message {message} in @bob (1)"
    ))
    .await?;
    cli.type_line(&format!(":react {message} nope")).await?;
    cli.expect("error: invalid_emoji: ").await?;

    cli.type_line(":mute 8h").await?;
    cli.expect("* @bob: muted until ").await?;
    let until = settings().await?["muted_until"]
        .as_i64()
        .context("muted_until is a time")?;
    let hours = (until - now_ms()) as f64 / 3_600_000.0;
    assert!((7.9..=8.0).contains(&hours), "muted for {hours} h");
    cli.type_line(":mute 8 hours").await?;
    cli.expect("error: not a duration: \"8 hours\"").await?;
    cli.type_line(":mute off").await?;
    cli.expect("* @bob: not muted").await?;
    assert_eq!(settings().await?["muted_until"], Value::Null);
    cli.type_line(":mute @bob").await?;
    cli.expect("* @bob: muted").await?;
    assert_eq!(settings().await?["muted_until"], "forever");
    cli.type_line(":convs").await?;
    let line = cli.expect("@bob: ").await?;
    assert!(line.ends_with("unread (muted)"), "{line:?}");

    let (status, body) = bob
        .put(
            &format!("/v1/conversations/{conversation}/pins/{message}"),
            &json!({}),
        )
        .await?;
    assert_eq!(status, 204, "{body}");
    cli.expect(&format!("* bob pinned message {message} in @bob"))
        .await?;
    cli.type_line(":pins").await?;
    cli.expect("pinned in @bob (1):").await?;
    cli.expect(&format!(
        "@bob: pin me  (id {message} · 👍 1), pinned by bob"
    ))
    .await?;
    cli.type_line(":pins @bob extra").await?;
    cli.expect("error: usage: :pins [@user|#group]").await?;

    let (status, screen) = cli.wait().await?;
    assert!(status.success(), "exit {status}:\n{screen}");
    Ok(())
}

/// Now, Unix ms.
fn now_ms() -> i64 {
    let since = std::time::SystemTime::now()
        .duration_since(std::time::UNIX_EPOCH)
        .unwrap_or_default();
    i64::try_from(since.as_millis()).unwrap_or(i64::MAX)
}

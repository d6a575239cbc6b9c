//! The terminal client behind `chat-cli`.
//!
//! # Layout
//! - this module: [`Args`], the password prompt, and [`run`]'s loop, which
//!   waits on three things at once: typed lines, stream events, and the
//!   stream's connection state.
//! - `command`: a typed line → [`command::Command`], no network.
//! - `app`: [`app::App`] runs commands on the `Client` and renders events
//!   with names filled in.
//! - `directory`: the cache of user and group names.
//! - `render`: every line format, as pure functions.
//!
//! Commands run one after another on a worker task, so a slow call never
//! holds up incoming messages, and the order of what was typed is kept.
//! Standard input is read on a plain thread: a blocking read cannot be
//! cancelled, and on a runtime thread it would keep the program from exiting.

mod app;
mod command;
mod directory;
mod render;

use std::io::{BufRead, IsTerminal, Read, Write};
use std::process::{ExitCode, Stdio};
use std::sync::Arc;
use std::time::Duration;

use clap::Parser;
use mqchat_sdk::{Client, StartFrom, StreamOptions, StreamState, Transport};
use tokio::sync::mpsc;

use app::{describe, App};
use command::Command;
use render::Clock;

/// Longest accepted input line, in bytes (the server's request body limit).
const MAX_LINE: usize = 64 * 1024;
/// Typed lines waiting for the loop.
const INPUT_CAPACITY: usize = 64;
/// Commands waiting for the worker; typing ahead of a slow server blocks
/// reading input, not the event display.
const COMMAND_CAPACITY: usize = 64;
/// How often the stream acknowledges what it has shown, so senders get
/// `receipt.delivered`.
const ACK_INTERVAL: Duration = Duration::from_secs(5);
/// How long quitting waits for commands still running (a message being
/// sent) before giving up on them.
const DRAIN_TIMEOUT: Duration = Duration::from_secs(15);

/// Terminal client for mqchat: chat with friends and groups from a shell.
///
/// Type `@user message` or `#group message` to send, `:help` for commands,
/// `:q` (or end of input) to quit.
#[derive(Parser)]
#[command(name = "chat-cli", version)]
pub struct Args {
    /// The server's HTTP root.
    #[arg(long, env = "CHAT_SERVER", default_value = "http://127.0.0.1:8080")]
    server: String,
    /// MQTT over TCP, HOST:PORT, for the event stream.
    #[arg(
        long,
        env = "CHAT_MQTT",
        default_value = "127.0.0.1:1883",
        conflicts_with = "ws"
    )]
    mqtt: String,
    /// Use MQTT over WebSocket at the server's `/mqtt` instead of TCP.
    #[arg(long, env = "CHAT_WS")]
    ws: bool,
    /// The username to log in as.
    #[arg(long, env = "CHAT_USER")]
    user: String,
    /// The password. Asked for on the terminal when not given; prefer the
    /// environment variable to the flag, which other local users can see.
    #[arg(long, env = "CHAT_PASSWORD", hide_env_values = true)]
    password: Option<String>,
}

/// Runs the client until `:q`, end of input, or an error that ends the
/// session; the exit code says which.
pub fn main(args: Args) -> ExitCode {
    let password = match args.password.clone() {
        Some(password) => password,
        None => match prompt_password(&args.user) {
            Ok(password) => password,
            Err(err) => {
                error(&err);
                return ExitCode::FAILURE;
            }
        },
    };
    let clock = Clock::local();
    let runtime = match tokio::runtime::Builder::new_current_thread()
        .enable_all()
        .build()
    {
        Ok(runtime) => runtime,
        Err(err) => {
            error(&format!("starting the runtime: {err}"));
            return ExitCode::FAILURE;
        }
    };
    let code = runtime.block_on(run(args, password, clock));
    // Whatever is still in flight is abandoned: the user asked to leave.
    runtime.shutdown_timeout(Duration::from_millis(200));
    code
}

/// Reads the password from the terminal with echo off (`stty`, since no
/// terminal crate is in the build).
fn prompt_password(user: &str) -> Result<String, String> {
    let stdin = std::io::stdin();
    if !stdin.is_terminal() {
        return Err(
            "no password: pass --password, set CHAT_PASSWORD, or run on a terminal to be asked"
                .to_owned(),
        );
    }
    // Echo goes off before the prompt shows, so nothing typed after the
    // prompt is echoed.
    let echo_off = stty("-echo");
    eprint!("password for {user}: ");
    let _ = std::io::stderr().flush();
    let mut line = String::new();
    let read = stdin.lock().read_line(&mut line);
    if echo_off {
        stty("echo");
        eprintln!();
    }
    match read {
        Ok(0) => Err("no password given".to_owned()),
        Ok(_) => Ok(line.trim_end_matches(['\r', '\n']).to_owned()),
        Err(err) => Err(format!("reading the password: {err}")),
    }
}

/// `stty SETTING` on the terminal at standard input; whether it worked.
fn stty(setting: &str) -> bool {
    std::process::Command::new("stty")
        .arg(setting)
        .stdin(Stdio::inherit())
        .stdout(Stdio::null())
        .stderr(Stdio::null())
        .status()
        .is_ok_and(|status| status.success())
}

/// One line from standard input.
enum Input {
    Line(String),
    TooLong,
}

/// Why the loop ended.
enum Exit {
    /// `:q` or end of input.
    Quit,
    /// The stream ended for good (session over); the message says why.
    Fatal(String),
}

async fn run(args: Args, password: String, clock: Clock) -> ExitCode {
    let transport = if args.ws {
        Transport::websocket_for(&args.server)
    } else {
        Ok(Transport::Tcp(args.mqtt.clone()))
    };
    let transport = match transport {
        Ok(transport) => transport,
        Err(err) => return fail(&describe(&err)),
    };
    let client = match Client::login(&args.server, &args.user, &password).await {
        Ok(client) => client,
        Err(err) => return fail(&describe(&err)),
    };
    drop(password);
    let options = StreamOptions::default()
        .start(StartFrom::Now)
        .ack_every(ACK_INTERVAL);
    let mut events = match client.connect(transport, options) {
        Ok(events) => events,
        Err(err) => return fail(&describe(&err)),
    };
    let app = Arc::new(App::start(client, clock).await);

    let (input_tx, mut input) = mpsc::channel(INPUT_CAPACITY);
    let reader = std::thread::Builder::new()
        .name("stdin".into())
        .spawn(move || read_lines(&input_tx));
    if let Err(err) = reader {
        return fail(&format!("starting the input reader: {err}"));
    }
    let (commands, queue) = mpsc::channel(COMMAND_CAPACITY);
    let worker = tokio::spawn(work(app.clone(), queue));

    let mut state = events.state_changes();
    let mut link = Link::default();
    let mut watching = true;
    link.update(*state.borrow_and_update(), &app, &commands);
    let exit = loop {
        tokio::select! {
            line = input.recv() => match line {
                None => break Exit::Quit,
                Some(Input::TooLong) => error(&format!("line longer than {MAX_LINE} bytes, ignored")),
                Some(Input::Line(line)) => match command::parse(&line) {
                    Ok(None) => {}
                    Ok(Some(Command::Quit)) => break Exit::Quit,
                    Ok(Some(command)) => {
                        if commands.send(command).await.is_err() {
                            break Exit::Fatal("the command worker stopped".to_owned());
                        }
                    }
                    Err(err) => error(&err.to_string()),
                },
            },
            event = events.recv() => match event {
                Some(Ok(event)) => {
                    for line in app.render_event(&event).await {
                        say(&line);
                    }
                }
                Some(Err(err)) => break Exit::Fatal(describe(&err)),
                None => break Exit::Fatal("the event stream ended".to_owned()),
            },
            changed = state.changed(), if watching => match changed {
                Ok(()) => {
                    let now = *state.borrow_and_update();
                    link.update(now, &app, &commands);
                }
                Err(_) => watching = false,
            },
        }
    };
    drop(events);
    drop(commands);
    match exit {
        Exit::Fatal(reason) => {
            worker.abort();
            fail(&reason)
        }
        // Let commands typed before quitting finish (a message being sent).
        Exit::Quit => match tokio::time::timeout(DRAIN_TIMEOUT, worker).await {
            Ok(_) => ExitCode::SUCCESS,
            Err(_) => fail("quitting with commands still unfinished"),
        },
    }
}

/// What the user has been told about the connection.
#[derive(Default)]
struct Link {
    announced: bool,
    live: bool,
}

impl Link {
    /// Announces the first time the stream is live (and queues the unread
    /// summary), losing the connection, and getting it back.
    fn update(&mut self, state: StreamState, app: &App, commands: &mpsc::Sender<Command>) {
        match state {
            StreamState::Live if !self.live => {
                self.live = true;
                if self.announced {
                    say("* reconnected");
                } else {
                    self.announced = true;
                    let me = app.me();
                    say(&format!("connected as {} (id {})", me.username, me.id));
                    if std::io::stdin().is_terminal() {
                        say("type :help for commands");
                    }
                    // Best effort: a full queue means the user is busy typing.
                    let _ = commands.try_send(Command::Unread { quiet: true });
                }
            }
            StreamState::Waiting | StreamState::Connecting if self.live => {
                self.live = false;
                say("* connection lost, reconnecting");
            }
            _ => {}
        }
    }
}

/// Runs commands in the order they were typed.
async fn work(app: Arc<App>, mut queue: mpsc::Receiver<Command>) {
    while let Some(command) = queue.recv().await {
        match app.execute(command).await {
            Ok(lines) => lines.iter().for_each(|line| say(line)),
            Err(err) => error(&err.to_string()),
        }
    }
}

/// Reads standard input line by line until its end (or until nobody
/// listens). Invalid UTF-8 is replaced, not fatal; an overlong line is
/// skipped whole.
fn read_lines(input: &mpsc::Sender<Input>) {
    let stdin = std::io::stdin();
    let mut stdin = stdin.lock();
    let mut buf = Vec::new();
    loop {
        buf.clear();
        match (&mut stdin)
            .take(MAX_LINE as u64 + 1)
            .read_until(b'\n', &mut buf)
        {
            Ok(0) => return,
            Ok(_) => {}
            Err(err) if err.kind() == std::io::ErrorKind::Interrupted => continue,
            Err(_) => return,
        }
        let line = if buf.len() > MAX_LINE && buf.last() != Some(&b'\n') {
            if !skip_line(&mut stdin) {
                return;
            }
            Input::TooLong
        } else {
            Input::Line(String::from_utf8_lossy(&buf).into_owned())
        };
        if input.blocking_send(line).is_err() {
            return;
        }
    }
}

/// Discards input up to the next newline; false at the end of input.
fn skip_line(stdin: &mut impl BufRead) -> bool {
    loop {
        let (done, used) = match stdin.fill_buf() {
            Ok([]) => return false,
            Ok(bytes) => match bytes.iter().position(|b| *b == b'\n') {
                Some(at) => (true, at + 1),
                None => (false, bytes.len()),
            },
            Err(err) if err.kind() == std::io::ErrorKind::Interrupted => continue,
            Err(_) => return false,
        };
        stdin.consume(used);
        if done {
            return true;
        }
    }
}

/// Prints a line to standard output. A closed output is not worth a
/// panic: the session ends when input does.
fn say(line: &str) {
    let mut out = std::io::stdout().lock();
    let _ = writeln!(out, "{line}").and_then(|()| out.flush());
}

/// Prints `error: ...` to standard error.
fn error(message: &str) {
    let mut err = std::io::stderr().lock();
    let _ = writeln!(err, "error: {message}");
}

fn fail(message: &str) -> ExitCode {
    error(message);
    ExitCode::FAILURE
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn skips_to_the_next_line() {
        let mut input: &[u8] = b"xxxxxxxx\nnext\n";
        assert!(skip_line(&mut input));
        assert_eq!(input, b"next\n");
        let mut input: &[u8] = b"no newline";
        assert!(!skip_line(&mut input));
    }

    #[test]
    fn args_parse() {
        let args = Args::try_parse_from(["chat-cli", "--user", "alice", "--ws"]);
        assert!(args.is_ok_and(|a| a.ws && a.user == "alice"));
        let both = Args::try_parse_from(["chat-cli", "--user", "a", "--ws", "--mqtt", "x:1"]);
        assert!(both.is_err());
        assert!(Args::try_parse_from(["chat-cli"]).is_err());
    }
}

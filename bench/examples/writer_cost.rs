//! The store writer's CPU instructions per direct message, counted by
//! callgrind: a figure that does not drift with the machine's speed, for
//! comparing two versions of the send path where timings are too noisy.
//!
//! ```sh
//! cargo run --release --example writer_cost            # needs valgrind
//! ```
//!
//! It runs itself twice under `valgrind --tool=callgrind`, counting only the
//! `store-writer` thread: once with `--per-sender R` (R = receivers, so every
//! sender has written to every receiver and each direct conversation
//! exists), once with `3R`. The difference, divided by the messages it adds,
//! is the steady-state cost of a direct message: the send's statements and
//! its share of the group commits (WAL frames, checksums, full-text index),
//! without opening the store or creating conversations. Under valgrind the
//! threads take turns, so commits batch differently than on the real machine.
use std::path::Path;
use std::process::Command;
use std::sync::Arc;

use anyhow::{bail, Context, Result};
use clap::Parser;
use mqchat_chatsvc::domain::messages::NewMessage;
use mqchat_chatsvc::domain::model::Recipient;
use mqchat_chatsvc::domain::replies::{Mentions, SendExtras};
use mqchat_chatsvc::domain::tokens::Caller;
use mqchat_chatsvc::store::Store;
use serde_json::value::RawValue;

#[derive(Parser)]
struct Args {
    /// Senders, each sending one message after another
    #[arg(long, default_value_t = 64)]
    senders: usize,
    /// Receivers; sender k's j-th message goes to receiver (k + j) mod this
    #[arg(long, default_value_t = 100)]
    receivers: usize,
    /// Characters of text per message
    #[arg(long, default_value_t = 64)]
    text_bytes: usize,
    /// Only send this many messages per sender (what runs under valgrind)
    #[arg(long)]
    per_sender: Option<usize>,
    /// Make every message past each sender's first round a reply to the
    /// sender's message to the same receiver a round before, mentioning
    /// the receiver (`reply_to` and `mentions`): the steady-state figure is
    /// then the cost of such a send
    #[arg(long)]
    reply_mentions: bool,
}

fn main() -> Result<()> {
    let args = Args::parse();
    if let Some(per_sender) = args.per_sender {
        let dir = tempfile::tempdir()?;
        return tokio::runtime::Builder::new_multi_thread()
            .worker_threads(2)
            .enable_all()
            .build()?
            .block_on(send(&args, per_sender, dir.path()))
            .map(drop);
    }
    let first = args.receivers;
    let second = 3 * args.receivers;
    let a = counted(&args, first, 1)?;
    let b = counted(&args, second, 2)?;
    if a == 0 || b == 0 {
        bail!("callgrind counted no instructions in the writer thread: was `store::sqlite::writer::run` inlined?");
    }
    let added = (args.senders * (second - first)) as f64;
    let per_msg = b.saturating_sub(a) as f64 / added;
    println!(
        "store writer: {per_msg:.0} instructions per direct message{} ({} senders, {} receivers, {} characters; {a} and {b} in the two runs)",
        if args.reply_mentions { " with reply_to and mentions" } else { "" },
        args.senders, args.receivers, args.text_bytes
    );
    Ok(())
}

/// Runs this program under callgrind; returns the writer thread's instructions.
fn counted(args: &Args, per_sender: usize, run: u32) -> Result<u64> {
    eprintln!(
        "run {run}/2 under callgrind: {} messages ...",
        args.senders * per_sender
    );
    let out = Command::new("valgrind")
        .args([
            "--tool=callgrind",
            "--callgrind-out-file=/dev/null",
            "--toggle-collect=mqchat_chatsvc::store::sqlite::writer::run*",
        ])
        .arg(std::env::current_exe()?)
        .args(["--senders", &args.senders.to_string()])
        .args(["--receivers", &args.receivers.to_string()])
        .args(["--text-bytes", &args.text_bytes.to_string()])
        .args(["--per-sender", &per_sender.to_string()])
        .args(args.reply_mentions.then_some("--reply-mentions"))
        .output()
        .context("running valgrind (is it installed?)")?;
    let stderr = String::from_utf8_lossy(&out.stderr);
    if !out.status.success() {
        bail!("valgrind failed: {stderr}");
    }
    collected(&stderr)
}

/// The instruction count in callgrind's summary: `==123== Collected : 461170628`.
fn collected(stderr: &str) -> Result<u64> {
    stderr
        .lines()
        .find_map(|l| l.split_once("Collected :").map(|(_, n)| n.trim().parse()))
        .context("no \"Collected\" line in valgrind's output")?
        .context("valgrind's instruction count")
}

/// Sends `per_sender` messages from each sender, on a fresh store in `dir`.
async fn send(args: &Args, per_sender: usize, dir: &Path) -> Result<Store> {
    let store = Store::open(&dir.join("chat.db"))?;
    let (chat, senders, receivers) =
        mqchat_bench::chat::unlimited_chat(&store, args.senders, args.receivers).await?;
    let receivers = Arc::new(receivers);
    let body = format!(r#"{{"text":"{}"}}"#, "x".repeat(args.text_bytes));
    let mut tasks = tokio::task::JoinSet::new();
    let reply_mentions = args.reply_mentions;
    for (k, &user_id) in senders.iter().enumerate() {
        let (chat, receivers, body) = (chat.clone(), receivers.clone(), body.clone());
        tasks.spawn(async move {
            let caller = Caller {
                user_id,
                session_id: 0,
                service: None,
            };
            let mut sent: Vec<u64> = Vec::with_capacity(per_sender);
            for j in 0..per_sender {
                let receiver = receivers[(k + j) % receivers.len()];
                let mut extras = SendExtras::default();
                if reply_mentions && j >= receivers.len() {
                    extras.reply_to = Some(sent[j - receivers.len()]);
                    extras.mentions = Some(Mentions::Users(vec![receiver]));
                }
                let m = NewMessage {
                    to: Recipient::User(receiver),
                    client_msg_id: format!("m-{k}-{j}"),
                    body: RawValue::from_string(body.clone())?,
                    extras,
                };
                sent.push(chat.send(caller, m).await?.message.id);
            }
            Ok::<_, anyhow::Error>(())
        });
    }
    while let Some(r) = tasks.join_next().await {
        r??;
    }
    Ok(store)
}

#[cfg(test)]
mod tests {
    #![allow(clippy::unwrap_used)]

    use super::*;

    /// What runs under valgrind: every message is stored, each sender's
    /// to every receiver once (so each direct conversation exists).
    #[tokio::test(flavor = "multi_thread", worker_threads = 2)]
    async fn sends_every_message() {
        let args = Args::parse_from(["writer_cost", "--senders", "3", "--receivers", "4"]);
        let dir = tempfile::tempdir().unwrap();
        let store = send(&args, 4, dir.path()).await.unwrap();
        store.close().await.unwrap();
        let db = rusqlite::Connection::open(dir.path().join("chat.db")).unwrap();
        let (messages, conversations): (u64, u64) = db
            .query_row(
                "SELECT (SELECT COUNT(*) FROM messages), (SELECT COUNT(*) FROM conversations)",
                [],
                |r| Ok((r.get(0)?, r.get(1)?)),
            )
            .unwrap();
        assert_eq!((messages, conversations), (12, 12));
    }

    #[test]
    fn reads_callgrinds_count() {
        let out = "==7== Events    : Ir\n==7== Collected : 461170628\n==7==\n==7== I   refs:      461,170,628\n";
        assert_eq!(collected(out).unwrap(), 461_170_628);
        assert!(collected("==7== Events : Ir\n").is_err());
    }
}

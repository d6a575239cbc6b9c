//! `chat-cli`: the mqchat terminal client.
//!
//! ```text
//! chat-cli --server http://127.0.0.1:8080 --mqtt 127.0.0.1:1883 --user alice
//! password for alice:
//! connected as alice (id 1)
//! [12:01] @bob: hi
//! @bob hello from the terminal
//! [12:01] @alice -> @bob: hello from the terminal
//! :olu
//! online: bob
//! ```
//!
//! A thin program over `mqchat_sdk::Client` and its `EventStream`; the
//! module `chat_cli` holds everything but argument parsing.

mod chat_cli;

use clap::Parser;

fn main() -> std::process::ExitCode {
    chat_cli::main(chat_cli::Args::parse())
}

//! `chat-bench`: see `mqchat_bench::chat` and BENCHMARKS.md.

use clap::Parser;

fn main() -> anyhow::Result<()> {
    mqchat_bench::chat::main(mqchat_bench::chat::Args::parse())
}

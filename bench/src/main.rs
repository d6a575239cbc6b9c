//! `gateway-bench`: see the library docs (`mqchat_bench`) and BENCHMARKS.md.

use clap::Parser;

fn main() -> anyhow::Result<()> {
    mqchat_bench::run(mqchat_bench::Args::parse())
}

# The project's checks, one target each; `.ci/run` installs what they need
# (packages, cargo-fuzz, cargo-deny, schemathesis) and calls them. The test
# command itself is the README's: `cargo test --workspace`.
#
#   make lint     rustfmt and clippy, warnings denied
#   make doc      rustdoc of the workspace, warnings denied (broken links too)
#   make deny     cargo-deny: licenses, bans, sources (advisories need the network)
#   make test     the whole test suite
#   make fuzz     short cargo-fuzz runs of the gateway (FUZZ_SECONDS, .ci/fuzz)
#   make api      schemathesis against a real chatd's /openapi.json (.ci/schemathesis)
#   make bench    release build, then chat-bench's quick check (BENCHMARKS.md has the full runs)

.PHONY: lint doc deny test fuzz api bench

lint:
	cargo fmt --all -- --check
	cargo clippy --workspace --all-targets --locked -- -D warnings

doc:
	RUSTDOCFLAGS="-D warnings" cargo doc --workspace --no-deps --locked

deny:
	cargo deny --locked check licenses bans sources

test:
	cargo test --workspace --locked

fuzz:
	.ci/fuzz

api:
	.ci/schemathesis

bench:
	cargo build --release --locked --bin chatd --bin chat-bench --bin gateway-bench
	target/release/chat-bench --quick

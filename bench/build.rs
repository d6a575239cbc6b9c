//! Records the commit the benchmark is built from, and whether `broker/` (the
//! code under test) had uncommitted changes, so every result says what it
//! measured.

use std::path::Path;
use std::process::Command;

fn git(args: &[&str]) -> Option<String> {
    Command::new("git")
        .args(args)
        .output()
        .ok()
        .filter(|o| o.status.success())
        .map(|o| String::from_utf8_lossy(&o.stdout).trim().to_string())
}

fn main() {
    let revision = git(&["rev-parse", "--short", "HEAD"])
        .map(|rev| {
            let dirty =
                git(&["status", "--porcelain", "--", "../broker"]).is_some_and(|s| !s.is_empty());
            match dirty {
                true => format!("{rev} + uncommitted changes in broker/"),
                false => rev,
            }
        })
        .unwrap_or_default();
    println!("cargo:rustc-env=MQCHAT_BENCH_REVISION={revision}");
    println!("cargo:rerun-if-changed=../broker/src");
    if let Some(dir) = git(&["rev-parse", "--absolute-git-dir"]) {
        println!("cargo:rerun-if-changed={dir}/HEAD");
        println!("cargo:rerun-if-changed={dir}/index");
        if let Some(head) = git(&["symbolic-ref", "-q", "HEAD"]) {
            let head_ref = Path::new(&dir).join(head);
            if head_ref.exists() {
                println!("cargo:rerun-if-changed={}", head_ref.display());
            }
        }
    }
}

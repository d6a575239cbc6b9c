//! Progress on stderr while a scenario runs.

use indicatif::{ProgressBar, ProgressStyle};

/// A bar of `len` steps labelled `what`.
pub fn bar(len: u64, what: &str) -> ProgressBar {
    let bar = ProgressBar::new(len);
    bar.set_style(
        ProgressStyle::with_template(
            "{spinner} {msg:<28} [{elapsed_precise}] {wide_bar} {human_pos}/{human_len} ({per_sec})",
        )
        .unwrap_or_else(|_| ProgressStyle::default_bar()),
    );
    bar.set_message(what.to_string());
    bar
}

/// A bar that counts `what` for `secs` seconds (the position is time).
pub fn timed(secs: f64, what: &str) -> ProgressBar {
    let bar = ProgressBar::new((secs * 10.0).ceil() as u64);
    bar.set_style(
        ProgressStyle::with_template("{spinner} {msg:<28} [{elapsed_precise}] {wide_bar} {prefix}")
            .unwrap_or_else(|_| ProgressStyle::default_bar()),
    );
    bar.set_message(what.to_string());
    bar
}

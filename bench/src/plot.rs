//! Latency distributions as SVG, and number formatting for the tables.

use std::fmt::Write as _;

use crate::stats;

/// Percentiles for a CDF: every percent, then the tail.
pub fn cdf_points() -> Vec<f64> {
    let mut v: Vec<f64> = (0..=99).map(f64::from).collect();
    v.extend([99.5, 99.9, 99.95, 99.99, 100.0]);
    v
}

/// Latency by percentile, HdrHistogram style: the x axis spreads the tail
/// (1/(1-p) on a log scale), the y axis is milliseconds on a log scale.
/// `curves` are (label, samples in nanoseconds, ascending); empty ones are
/// left out.
pub fn cdf_svg(title: &str, curves: &[(&str, &[u64])]) -> String {
    const W: f64 = 760.0;
    const H: f64 = 420.0;
    const L: f64 = 64.0;
    const R: f64 = 190.0;
    const T: f64 = 30.0;
    const B: f64 = 50.0;
    let x_of = |p: f64| {
        let nines = (1.0 / (1.0 - (p / 100.0).min(0.9999))).log10(); // 0..4
        L + nines / 4.0 * (W - L - R)
    };
    let curves: Vec<(&str, Vec<(f64, f64)>)> = curves
        .iter()
        .filter(|(_, samples)| !samples.is_empty())
        .map(|&(name, samples)| {
            let pts = cdf_points()
                .into_iter()
                .filter(|&p| p <= 99.99)
                .map(|p| {
                    let ns = stats::quantile(samples, p / 100.0);
                    (p, ns as f64 / 1e6)
                })
                .collect();
            (name, pts)
        })
        .collect();
    let (lo, hi) = curves
        .iter()
        .flat_map(|(_, pts)| pts.iter().map(|&(_, ms)| ms))
        .fold((f64::MAX, 0.0f64), |(lo, hi), ms| (lo.min(ms), hi.max(ms)));
    let y_lo = 10f64.powf(lo.clamp(1e-3, 1e3).log10().floor());
    let y_hi = 10f64.powf(hi.max(y_lo * 10.0).log10().ceil());
    let decades = (y_hi / y_lo).log10();
    let y_of = |ms: f64| {
        let d = (ms.max(y_lo) / y_lo).log10() / decades;
        T + (1.0 - d) * (H - T - B)
    };
    let mut svg = String::new();
    let _ = writeln!(
        svg,
        r#"<svg xmlns="http://www.w3.org/2000/svg" width="{W}" height="{H}" viewBox="0 0 {W} {H}" font-family="sans-serif" font-size="12">"#
    );
    let _ = writeln!(svg, r#"<rect width="{W}" height="{H}" fill="white"/>"#);
    let _ = writeln!(
        svg,
        r#"<text x="{L}" y="18" font-size="14">{}</text>"#,
        escape(title)
    );
    for i in 0..=decades.round() as i32 {
        let tick = y_lo * 10f64.powi(i);
        let label = (tick * 1e6).round() / 1e6;
        let y = y_of(tick);
        let _ = writeln!(
            svg,
            r##"<line x1="{L}" y1="{y:.1}" x2="{:.1}" y2="{y:.1}" stroke="#ddd"/><text x="{:.1}" y="{:.1}" text-anchor="end">{label}</text>"##,
            W - R,
            L - 6.0,
            y + 4.0
        );
    }
    for (p, label) in [
        (0.0, "0%"),
        (50.0, "50%"),
        (90.0, "90%"),
        (99.0, "99%"),
        (99.9, "99.9%"),
        (99.99, "99.99%"),
    ] {
        let x = x_of(p);
        let _ = writeln!(
            svg,
            r##"<line x1="{x:.1}" y1="{T}" x2="{x:.1}" y2="{:.1}" stroke="#ddd"/><text x="{x:.1}" y="{:.1}" text-anchor="middle">{label}</text>"##,
            H - B,
            H - B + 16.0
        );
    }
    let _ = writeln!(
        svg,
        r#"<text x="{:.1}" y="{:.1}" text-anchor="middle">percentile</text>"#,
        (L + W - R) / 2.0,
        H - 10.0
    );
    let _ = writeln!(
        svg,
        r#"<text x="14" y="{:.1}" transform="rotate(-90 14 {:.1})" text-anchor="middle">latency, ms (log)</text>"#,
        (T + H - B) / 2.0,
        (T + H - B) / 2.0
    );
    let colors = [
        "#1f77b4", "#d62728", "#2ca02c", "#9467bd", "#ff7f0e", "#8c564b",
    ];
    for (i, (name, pts)) in curves.iter().enumerate() {
        let color = colors[i % colors.len()];
        let path: Vec<String> = pts
            .iter()
            .map(|&(p, ms)| format!("{:.1},{:.1}", x_of(p), y_of(ms)))
            .collect();
        let _ = writeln!(
            svg,
            r#"<polyline fill="none" stroke="{color}" stroke-width="2" points="{}"/>"#,
            path.join(" ")
        );
        let y = T + 20.0 + 20.0 * i as f64;
        let _ = writeln!(
            svg,
            r#"<line x1="{:.1}" y1="{y:.1}" x2="{:.1}" y2="{y:.1}" stroke="{color}" stroke-width="2"/><text x="{:.1}" y="{:.1}">{}</text>"#,
            W - R + 12.0,
            W - R + 36.0,
            W - R + 42.0,
            y + 4.0,
            escape(name)
        );
    }
    svg.push_str("</svg>\n");
    svg
}

fn escape(s: &str) -> String {
    s.replace('&', "&amp;")
        .replace('<', "&lt;")
        .replace('>', "&gt;")
}

/// 123456.7 → "123,457".
pub fn thousands(v: f64) -> String {
    let digits = format!("{:.0}", v.max(0.0));
    let mut out = String::new();
    for (i, c) in digits.chars().enumerate() {
        if i > 0 && (digits.len() - i) % 3 == 0 {
            out.push(',');
        }
        out.push(c);
    }
    out
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn formats_thousands() {
        assert_eq!(thousands(123_456.7), "123,457");
        assert_eq!(thousands(999.0), "999");
    }

    #[test]
    fn plots_every_nonempty_curve() {
        let a: Vec<u64> = (1..=1000).map(|i| i * 1000).collect();
        let svg = cdf_svg("t <1>", &[("a", &a), ("empty", &[])]);
        assert_eq!(svg.matches("<polyline").count(), 1);
        assert!(svg.contains("t &lt;1&gt;"));
    }
}

//! The summary table every benchmark prints at the end: each figure, its
//! target and whether the target was met. Informational only.

use crate::stats::ms;
use std::time::Duration;

/// One row of the summary.
pub struct Figure {
    /// What was measured.
    pub name: String,
    /// The measured value, formatted.
    pub value: String,
    /// The target, formatted (`-` when there is none).
    pub target: String,
    /// `target met`, `target missed`, or empty without a target.
    pub verdict: &'static str,
}

impl Figure {
    /// A figure reported without a target.
    pub fn info(name: impl Into<String>, value: impl Into<String>) -> Figure {
        Figure {
            name: name.into(),
            value: value.into(),
            target: "-".into(),
            verdict: "",
        }
    }

    /// A rate that should be at least `target` per second.
    pub fn rate_at_least(name: impl Into<String>, rate: f64, target: f64) -> Figure {
        Figure {
            name: name.into(),
            value: format!("{rate:.0}/s"),
            target: format!(">= {target:.0}/s"),
            verdict: verdict(rate >= target),
        }
    }

    /// A delay that should be at most `target`.
    pub fn delay_at_most(name: impl Into<String>, delay: Duration, target: Duration) -> Figure {
        Figure {
            name: name.into(),
            value: ms(delay),
            target: format!("<= {}", ms(target)),
            verdict: verdict(delay <= target),
        }
    }

    /// A ratio (e.g. shoal's rate over nginx's) that should be at least `target`.
    pub fn ratio_at_least(name: impl Into<String>, ratio: f64, target: f64) -> Figure {
        Figure {
            name: name.into(),
            value: format!("{ratio:.2}x"),
            target: format!(">= {target:.2}x"),
            verdict: verdict(ratio >= target),
        }
    }

    /// A count (e.g. failed requests) that should be at most `target`.
    pub fn count_at_most(name: impl Into<String>, count: u64, target: u64) -> Figure {
        Figure {
            name: name.into(),
            value: count.to_string(),
            target: format!("<= {target}"),
            verdict: verdict(count <= target),
        }
    }

    /// A quantity in `unit` (e.g. `%` of one core, `MiB`) that should be
    /// at most `target`.
    pub fn at_most(name: impl Into<String>, value: f64, target: f64, unit: &str) -> Figure {
        Figure {
            name: name.into(),
            value: format!("{value:.2} {unit}"),
            target: format!("<= {target} {unit}"),
            verdict: verdict(value <= target),
        }
    }

    /// A figure that could not be measured (e.g. every request failed).
    pub fn missing(name: impl Into<String>, target: impl Into<String>) -> Figure {
        Figure {
            name: name.into(),
            value: "n/a".into(),
            target: target.into(),
            verdict: "not measured",
        }
    }
}

fn verdict(met: bool) -> &'static str {
    if met {
        "target met"
    } else {
        "target missed"
    }
}

/// Prints the table, then the notes (command lines, conditions) under it.
pub fn print_summary(title: &str, figures: &[Figure], notes: &[String]) {
    let width = |f: fn(&Figure) -> usize, header: &str| {
        figures.iter().map(f).max().unwrap_or(0).max(header.len())
    };
    let (wn, wv, wt) = (
        width(|f| f.name.chars().count(), "figure"),
        width(|f| f.value.len(), "value"),
        width(|f| f.target.len(), "target"),
    );
    println!();
    println!("== {title}: summary ==");
    println!(
        "{:<wn$}  {:>wv$}  {:<wt$}  verdict",
        "figure", "value", "target"
    );
    println!("{}", "-".repeat(wn + wv + wt + 17));
    for f in figures {
        println!(
            "{:<wn$}  {:>wv$}  {:<wt$}  {}",
            f.name, f.value, f.target, f.verdict
        );
    }
    println!();
    for note in notes {
        println!("{note}");
    }
}

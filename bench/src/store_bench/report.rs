//! The Markdown table `cartsource-bench store` prints, and how its cells are written.

use super::measure::Samples;

/// What a row's target is about.
#[derive(Clone, Copy)]
pub(super) enum Target {
    /// No target: for information.
    None,
    /// Store / baseline at least this share (throughput).
    AtLeast(f64),
    /// Store / baseline at most this factor (time).
    AtMost(f64),
    /// The store's value (a count) is exactly this.
    Exactly(f64),
}

pub(super) struct Row {
    workload: String,
    store: String,
    baseline: String,
    ratio: String,
    target: String,
    met: &'static str,
}

#[derive(Default)]
pub(super) struct Report {
    rows: Vec<Row>,
}

impl Report {
    /// A throughput row (higher is better): medians (min-max), store/baseline as a share,
    /// to a tenth of a percent so that a share just below its target (89.8%) does not print
    /// as the target itself beside "no". The share is the medians' (what the target judges);
    /// in brackets, the lowest and highest share of one pass's two measurements, taken
    /// back to back: how far the share itself moved within the run.
    pub(super) fn rate(&mut self, workload: impl Into<String>, store: &Samples, baseline: &Samples, target: Target) {
        let ratio = store.median() / baseline.median();
        let share = |r: f64| format!("{:.1}%", r * 100.0);
        self.push(
            workload,
            cell(store, 0),
            cell(baseline, 0),
            with_pass_range(share(ratio), store, baseline, share),
            ratio,
            target,
        );
    }

    /// A time row (lower is better): medians (min-max) in ms, store/baseline as a factor
    /// (in brackets its range over passes, as for a rate).
    pub(super) fn time(&mut self, workload: impl Into<String>, store: &Samples, baseline: &Samples, target: Target) {
        let ratio = store.median() / baseline.median();
        let factor = |r: f64| format!("{r:.2}x");
        self.push(
            workload,
            cell(store, 2),
            cell(baseline, 2),
            with_pass_range(factor(ratio), store, baseline, factor),
            ratio,
            target,
        );
    }

    /// A count row (skipped, duplicated): the sum over passes for each side.
    pub(super) fn count(&mut self, workload: impl Into<String>, store: &Samples, baseline: &Samples, target: Target) {
        let (ours, base): (f64, f64) = (store.0.iter().sum(), baseline.0.iter().sum());
        self.push(workload, format!("{ours:.0}"), format!("{base:.0}"), String::new(), ours, target);
    }

    fn push(&mut self, workload: impl Into<String>, store: String, baseline: String, ratio: String, value: f64, target: Target) {
        let (target, met) = match target {
            Target::None => (String::new(), ""),
            Target::AtLeast(t) => (format!(">= {:.0}%", t * 100.0), yes(value >= t)),
            Target::AtMost(t) => (format!("<= {t:.1}x"), yes(value <= t)),
            Target::Exactly(t) => (format!("{t:.0}"), yes(value == t)),
        };
        self.rows.push(Row {
            workload: workload.into(),
            store,
            baseline,
            ratio,
            target,
            met,
        });
    }

    pub(super) fn print(&self) {
        println!("| workload | cartsource store | minimal baseline | store/baseline | target | met |");
        println!("|---|---:|---:|---:|---|---|");
        for r in &self.rows {
            println!(
                "| {} | {} | {} | {} | {} | {} |",
                r.workload, r.store, r.baseline, r.ratio, r.target, r.met
            );
        }
    }
}

fn yes(met: bool) -> &'static str {
    if met {
        "yes"
    } else {
        "no"
    }
}

/// `ratio (min-max)`, the range over the passes' own store/baseline ratios (sample `i` of
/// each side is pass `i`'s); the ratio alone for a single pass.
fn with_pass_range(ratio: String, store: &Samples, baseline: &Samples, format: impl Fn(f64) -> String) -> String {
    if store.0.len() < 2 || store.0.len() != baseline.0.len() {
        return ratio;
    }
    let per_pass = Samples(store.0.iter().zip(&baseline.0).map(|(s, b)| s / b).collect());
    format!("{ratio} ({}-{})", format(per_pass.min()), format(per_pass.max()))
}

/// `median (min-max)` with thousands separators when `decimals` is 0.
fn cell(samples: &Samples, decimals: usize) -> String {
    let f = |v: f64| {
        if decimals == 0 {
            thousands(v)
        } else {
            format!("{v:.decimals$}")
        }
    };
    if samples.0.len() < 2 {
        return f(samples.median());
    }
    format!("{} ({}-{})", f(samples.median()), f(samples.min()), f(samples.max()))
}

fn thousands(v: f64) -> String {
    if !v.is_finite() {
        return format!("{v}");
    }
    let digits = format!("{:.0}", v.abs());
    let mut out = String::new();
    for (i, c) in digits.chars().enumerate() {
        if i > 0 && (digits.len() - i) % 3 == 0 {
            out.push(',');
        }
        out.push(c);
    }
    if v < 0.0 {
        out.insert(0, '-');
    }
    out
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn a_share_just_below_its_target_does_not_print_as_the_target() {
        let mut report = Report::default();
        report.rate("w", &Samples(vec![898.0]), &Samples(vec![1000.0]), Target::AtLeast(0.9));
        report.rate("w", &Samples(vec![900.0]), &Samples(vec![1000.0]), Target::AtLeast(0.9));
        let printed: Vec<(&str, &str)> = report.rows.iter().map(|r| (r.ratio.as_str(), r.met)).collect();
        assert_eq!(printed, vec![("89.8%", "no"), ("90.0%", "yes")]);
    }

    #[test]
    fn the_share_comes_with_its_range_over_passes() {
        let mut report = Report::default();
        // Pass shares 80%, 100%, 90%; the medians' share is 950 / 1000.
        let (store, baseline) = (Samples(vec![800.0, 1100.0, 950.0]), Samples(vec![1000.0, 1100.0, 1050.0]));
        report.rate("w", &store, &baseline, Target::AtLeast(0.9));
        report.time("t", &store, &baseline, Target::None);
        report.rate("one pass", &Samples(vec![800.0]), &Samples(vec![1000.0]), Target::None);
        let printed: Vec<&str> = report.rows.iter().map(|r| r.ratio.as_str()).collect();
        assert_eq!(printed, vec!["90.5% (80.0%-100.0%)", "0.90x (0.80x-1.00x)", "80.0%"]);
    }
}

//! The Markdown table `cartsource-bench store` prints, and how its cells are written.

use super::measure::Measured;

#[derive(Default)]
pub(super) struct Report {
    rows: Vec<Row4>,
}

struct Row4 {
    workload: String,
    store: String,
    raw: String,
    ratio: String,
    target: String,
}

impl Report {
    pub(super) fn add(&mut self, workload: impl Into<String>, store: String, raw: String, ratio: String, target: &str) {
        self.rows.push(Row4 {
            workload: workload.into(),
            store,
            raw,
            ratio,
            target: target.into(),
        });
    }

    pub(super) fn print(&self) {
        let header = Row4 {
            workload: "workload".into(),
            store: "cartsource store".into(),
            raw: "raw SQL baseline".into(),
            ratio: "store/raw".into(),
            target: "target".into(),
        };
        let rows: Vec<&Row4> = std::iter::once(&header).chain(&self.rows).collect();
        let w = |f: fn(&Row4) -> &str| rows.iter().map(|r| f(r).chars().count()).max().unwrap_or(0);
        let widths = [w(|r| &r.workload), w(|r| &r.store), w(|r| &r.raw), w(|r| &r.ratio), w(|r| &r.target)];
        for (i, r) in rows.iter().enumerate() {
            println!(
                "| {:<a$} | {:>b$} | {:>c$} | {:>d$} | {:<e$} |",
                r.workload,
                r.store,
                r.raw,
                r.ratio,
                r.target,
                a = widths[0],
                b = widths[1],
                c = widths[2],
                d = widths[3],
                e = widths[4]
            );
            if i == 0 {
                println!(
                    "|{}|{}|{}|{}|{}|",
                    "-".repeat(widths[0] + 2),
                    "-".repeat(widths[1] + 2),
                    "-".repeat(widths[2] + 2),
                    "-".repeat(widths[3] + 2),
                    "-".repeat(widths[4] + 2)
                );
            }
        }
    }
}

pub(super) fn rate(m: &Measured) -> String {
    format!("{:.0}", m.rate())
}

pub(super) fn latency(m: &Measured) -> String {
    format!(
        "{:.2} / {:.2}",
        m.percentile(0.50).as_secs_f64() * 1e3,
        m.percentile(0.99).as_secs_f64() * 1e3
    )
}

pub(super) fn percent(ratio: f64) -> String {
    format!("{:.0}%", ratio * 100.0)
}

pub(super) fn median(values: &mut [f64]) -> f64 {
    values.sort_by(|a, b| a.total_cmp(b));
    values.get(values.len() / 2).copied().unwrap_or(f64::NAN)
}

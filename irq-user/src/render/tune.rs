//! What `tune` prints of its measurements and verdicts. Pure.

use std::fmt::Write as _;

use crate::analysis::{
    policy,
    verdict::{p_text, Call, Conclusion, Judgement, Noise, Verdict},
};

fn pct(x: Option<f64>) -> String {
    x.map(|d| format!("{:.1}%", d * 100.0))
        .unwrap_or_else(|| "-".into())
}

/// The workload's own spread before any change, and what a trial of `n` windows a side can
/// detect with it.
pub fn noise(noise: &[Noise], n: usize, alpha: f64) -> String {
    let mut o = format!(
        "Noise (the workload's own spread over {n} windows before any change; detectable at {:.0}% power, one-sided level {alpha:.3}):\n",
        policy::POWER * 100.0
    );
    for x in noise {
        let m = x.measure;
        let _ = writeln!(
            o,
            "  {:<38} spread {:>6}  detectable with {n} windows a side {:>6}  margin {:>4.0}%  windows needed {}",
            m.label(),
            pct(Some(x.spread)),
            pct(x.detectable),
            m.margin() * 100.0,
            x.windows_needed
                .map(|w| w.to_string())
                .unwrap_or_else(|| "more than the trial may take".into())
        );
    }
    if noise.is_empty() {
        o.push_str("  nothing judged varied measurably (no flows read?)\n");
    }
    o
}

fn call(j: &Judgement) -> &'static str {
    match j.call {
        Call::Worse => "worse",
        Call::Better => "better",
        Call::NoWorse => "no worse",
        Call::Undecided => "undecided",
    }
}

/// The before/after table: the judged outcomes with their tests, then the figures shown.
pub fn table(v: &Verdict) -> String {
    let mut o = format!(
        "  {:<38} {:>14} {:>14} {:>8} {:>9} {:>11} {:>10}  {}\n",
        "judged", "before", "after", "change", "p(worse)", "p(no worse)", "detectable", "call"
    );
    for j in &v.judgements {
        let (b, a) = j.medians();
        let _ = writeln!(
            o,
            "  {:<38} {:>14} {:>14} {:>+7.1}% {:>9} {:>11} {:>10}  {}",
            j.measure.label(),
            j.measure.show(b),
            j.measure.show(a),
            j.change * 100.0,
            p_text(j.p_worse),
            p_text(j.p_no_worse),
            pct(j.detectable),
            call(j)
        );
    }
    for j in &v.judgements {
        let list = |v: &[f64]| {
            v.iter()
                .map(|x| j.measure.show(*x))
                .collect::<Vec<_>>()
                .join(" ")
        };
        let _ = writeln!(
            o,
            "    windows, {}: before {} | after {}",
            j.measure.label(),
            list(&j.before),
            list(&j.after)
        );
    }
    let (mb, ma) = &v.mismatch_windows;
    if mb.iter().chain(ma).any(Option::is_some) {
        let list = |v: &[Option<f64>]| {
            v.iter()
                .map(|x| x.map_or("-".into(), |x| format!("{:.1}%", x * 100.0)))
                .collect::<Vec<String>>()
                .join(" ")
        };
        let _ = writeln!(
            o,
            "    windows, mismatch (all flows, shown): before {} | after {}",
            list(mb),
            list(ma)
        );
    }
    let _ = writeln!(
        o,
        "  {:<38} {:>14} {:>14}",
        "shown (not judged)", "before", "after"
    );
    for s in &v.shown {
        let _ = writeln!(o, "  {:<38} {:>14} {:>14}", s.measure, s.before, s.after);
    }
    let margins: Vec<String> = v
        .judgements
        .iter()
        .map(|j| format!("{:.0}% ({})", j.measure.margin() * 100.0, j.measure.label()))
        .collect();
    let _ = writeln!(
        o,
        "  Over {} and {} windows (before and after: the median window; change: Hodges-Lehmann), each measure's windows are compared by rank tests (Wilcoxon-Mann-Whitney, exact or resampled) at level {:.3} each: p(worse) small = worse beyond its margin, p(no worse) small = shown within it; margins {}.",
        v.windows.0,
        v.windows.1,
        v.alpha,
        margins.join(", ")
    );
    o
}

/// "WORSE (reason; reason)".
pub fn headline(v: &Verdict) -> String {
    let mut why = v.reasons();
    if v.conclusion == Conclusion::NoWorse && why.is_empty() {
        why.push("the workload's outcome is unchanged within the margins".into());
    }
    format!("{} ({})", v.conclusion.word(), why.join("; "))
}

#[cfg(test)]
mod tests {
    use super::*;

    /// The per-window mismatch says whether an after side's mismatch was one window or all.
    #[test]
    fn the_table_shows_each_windows_mismatch() {
        let v = Verdict {
            mismatch_windows: (
                vec![Some(1.0), Some(0.98)],
                vec![Some(0.0), None, Some(0.5)],
            ),
            ..Verdict::default()
        };
        let t = table(&v);
        assert!(
            t.contains(
                "windows, mismatch (all flows, shown): before 100.0% 98.0% | after 0.0% - 50.0%"
            ),
            "{t}"
        );
        let none = table(&Verdict {
            mismatch_windows: (vec![None], vec![None]),
            ..Verdict::default()
        });
        assert!(!none.contains("windows, mismatch"), "{none}");
    }
}

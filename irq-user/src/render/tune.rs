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

//! The statistics `tune` decides with. Pure.
//!
//! One value per measurement window and side (before, after). The test is the permutation
//! test of a difference of means (Fisher-Pitman): it assumes nothing about the distribution
//! (window throughputs and latencies are skewed and few) and handles ties. Up to
//! [`MAX_EXACT`] pooled windows every split is enumerated (5 windows a side: smallest p
//! 1/252); beyond, [`RESAMPLES`] random splits from a fixed seed estimate p, so the same
//! windows always give the same answer.
//!
//! `tune` applies it to the ranks of the windows (Wilcoxon-Mann-Whitney): a window median
//! that a vCPU preemption made ten times the others then weighs as one rank, not as ten
//! windows. Effects are judged on a shift model: "after = before + d" on the scale given
//! (tune uses logarithms, so d is a ratio). Testing a shift d0 is testing the after values
//! minus d0 against the before values; that is how a margin enters (non-inferiority: the
//! after side is shown to be less than d0 worse). The shift is estimated by Hodges-Lehmann
//! (the median of all after - before differences) and the spread by the median absolute
//! deviation, both as robust as the test.

use statrs::distribution::{ContinuousCDF as _, StudentsT};

/// Largest pooled sample enumerated exactly (C(20,10) = 184,756 splits of 2^20 label sets).
pub const MAX_EXACT: usize = 20;

/// Random splits when the sample is larger: the standard error of a p-value near 0.01 is
/// then 0.0007, far below the levels it is compared with.
pub const RESAMPLES: u32 = 20_000;

/// Seed of those splits: fixed, so a verdict is reproducible from its windows.
const SEED: u64 = 0x1e9_7ce5_ca1e;

/// P(mean(after) - mean(before) >= observed) under "the change made no difference" (every
/// split of the pooled values into the two sides equally likely): small when `after` is
/// larger beyond chance. None when a side is empty.
pub fn p_greater(before: &[f64], after: &[f64]) -> Option<f64> {
    if before.is_empty() || after.is_empty() {
        return None;
    }
    let pooled: Vec<f64> = before.iter().chain(after).copied().collect();
    let k = after.len();
    let observed: f64 = after.iter().sum();
    // Sums within a hair of the observed one are ties (floating-point noise), counted as >=.
    let scale = pooled
        .iter()
        .map(|v| v.abs())
        .fold(0.0, f64::max)
        .max(1e-300);
    let at_least = observed - scale * 1e-9 * pooled.len() as f64;
    Some(if pooled.len() <= MAX_EXACT {
        exact(&pooled, k, at_least)
    } else {
        sampled(&pooled, k, at_least)
    })
}

fn exact(pooled: &[f64], k: usize, at_least: f64) -> f64 {
    let n = pooled.len();
    let (mut hits, mut total) = (0u64, 0u64);
    for set in 0u32..(1u32 << n) {
        if set.count_ones() as usize != k {
            continue;
        }
        total += 1;
        let sum: f64 = (0..n)
            .filter(|i| set & (1 << i) != 0)
            .map(|i| pooled[i])
            .sum();
        if sum >= at_least {
            hits += 1;
        }
    }
    hits as f64 / total as f64
}

/// Monte Carlo: the observed split counts as one of the samples (p >= 1/(R+1), never 0).
fn sampled(pooled: &[f64], k: usize, at_least: f64) -> f64 {
    let mut rng = fastrand::Rng::with_seed(SEED);
    let mut idx: Vec<usize> = (0..pooled.len()).collect();
    let mut hits = 0u64;
    for _ in 0..RESAMPLES {
        // A partial Fisher-Yates shuffle draws the k "after" labels.
        for i in 0..k {
            let j = rng.usize(i..idx.len());
            idx.swap(i, j);
        }
        let sum: f64 = idx[..k].iter().map(|&i| pooled[i]).sum();
        if sum >= at_least {
            hits += 1;
        }
    }
    (hits + 1) as f64 / (RESAMPLES as f64 + 1.0)
}

/// The mirror test: small when `after` is smaller beyond chance.
pub fn p_less(before: &[f64], after: &[f64]) -> Option<f64> {
    p_greater(&neg(before), &neg(after))
}

fn neg(v: &[f64]) -> Vec<f64> {
    v.iter().map(|x| -x).collect()
}

/// `after` shifted by `-d`: testing it against `before` tests a true shift of `d`.
pub fn shifted(after: &[f64], d: f64) -> Vec<f64> {
    after.iter().map(|x| x - d).collect()
}

/// Each value's rank among all of them (1-based; ties share their mean rank).
pub fn ranks(values: &[f64]) -> Vec<f64> {
    let mut order: Vec<usize> = (0..values.len()).collect();
    order.sort_by(|&a, &b| values[a].total_cmp(&values[b]));
    let mut out = vec![0.0; values.len()];
    let mut i = 0;
    while i < order.len() {
        let mut j = i;
        while j + 1 < order.len() && values[order[j + 1]] == values[order[i]] {
            j += 1;
        }
        let mid = (i + j) as f64 / 2.0 + 1.0;
        for &k in &order[i..=j] {
            out[k] = mid;
        }
        i = j + 1;
    }
    out
}

/// [`p_greater`] on the ranks of the pooled values: the Wilcoxon-Mann-Whitney test.
pub fn rank_p_greater(before: &[f64], after: &[f64]) -> Option<f64> {
    let r = ranks(&before.iter().chain(after).copied().collect::<Vec<f64>>());
    let (rb, ra) = r.split_at(before.len());
    p_greater(rb, ra)
}

/// The mirror: small when `after` ranks lower beyond chance.
pub fn rank_p_less(before: &[f64], after: &[f64]) -> Option<f64> {
    rank_p_greater(&neg(before), &neg(after))
}

/// Hodges-Lehmann estimate of the shift from `before` to `after`: the median of every
/// difference after[i] - before[j].
pub fn shift_estimate(before: &[f64], after: &[f64]) -> Option<f64> {
    let d: Vec<f64> = after
        .iter()
        .flat_map(|a| before.iter().map(move |b| a - b))
        .collect();
    median(&d)
}

pub fn median(v: &[f64]) -> Option<f64> {
    if v.is_empty() {
        return None;
    }
    let mut s = v.to_vec();
    s.sort_by(f64::total_cmp);
    let n = s.len();
    Some(if n % 2 == 1 {
        s[n / 2]
    } else {
        (s[n / 2 - 1] + s[n / 2]) / 2.0
    })
}

/// The median absolute deviation scaled to estimate a standard deviation (x 1.4826, exact
/// for normal data), None below two values.
pub fn robust_sd(v: &[f64]) -> Option<f64> {
    if v.len() < 2 {
        return None;
    }
    let m = median(v)?;
    let dev: Vec<f64> = v.iter().map(|x| (x - m).abs()).collect();
    Some(1.4826 * median(&dev)?)
}

/// The robust spread of two samples pooled (each around its own median).
pub fn pooled_robust_sd(a: &[f64], b: &[f64]) -> Option<f64> {
    let df = (a.len() + b.len()).checked_sub(2).filter(|&d| d > 0)?;
    let ss = |v: &[f64]| {
        robust_sd(v)
            .map(|s| s * s * (v.len() - 1) as f64)
            .unwrap_or(0.0)
    };
    Some(((ss(a) + ss(b)) / df as f64).sqrt())
}

pub fn mean(v: &[f64]) -> Option<f64> {
    (!v.is_empty()).then(|| v.iter().sum::<f64>() / v.len() as f64)
}

/// Sample variance (n - 1), None below two values.
pub fn variance(v: &[f64]) -> Option<f64> {
    let m = mean(v)?;
    (v.len() >= 2).then(|| v.iter().map(|x| (x - m).powi(2)).sum::<f64>() / (v.len() - 1) as f64)
}

/// The pooled standard deviation of two samples (each side's spread around its own mean):
/// the noise a comparison of them has to see through.
pub fn pooled_sd(a: &[f64], b: &[f64]) -> Option<f64> {
    let df = (a.len() + b.len()).checked_sub(2).filter(|&d| d > 0)?;
    let ss = |v: &[f64]| variance(v).map(|s| s * (v.len() - 1) as f64).unwrap_or(0.0);
    Some(((ss(a) + ss(b)) / df as f64).sqrt())
}

/// The smallest shift a one-sided test at level `alpha` finds with probability `power`,
/// with `n_before` and `n_after` windows whose spread is `sd` (the two-sample t
/// approximation of the permutation test: (t[1-alpha] + t[power]) * sd * sqrt(1/n1 + 1/n2)).
/// None below two windows a side.
pub fn detectable(sd: f64, n_before: usize, n_after: usize, alpha: f64, power: f64) -> Option<f64> {
    if n_before < 2 || n_after < 2 || !sd.is_finite() {
        return None;
    }
    let df = (n_before + n_after - 2) as f64;
    let t = StudentsT::new(0.0, 1.0, df).ok()?;
    let z = t.inverse_cdf(1.0 - alpha) + t.inverse_cdf(power);
    Some(z * sd * (1.0 / n_before as f64 + 1.0 / n_after as f64).sqrt())
}

/// Windows a side for [`detectable`] to reach `effect`, at most `max` (None: not even then).
pub fn windows_needed(sd: f64, effect: f64, alpha: f64, power: f64, max: usize) -> Option<usize> {
    (2..=max).find(|&n| detectable(sd, n, n, alpha, power).is_some_and(|d| d <= effect))
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn a_clear_shift_is_as_significant_as_the_sample_allows() {
        let before = [10.0, 11.0, 10.5, 9.8, 10.2];
        let after = [20.0, 21.0, 19.5, 20.4, 20.9];
        // Only the observed split puts all five large values after: 1 of C(10,5) = 252.
        let p = p_greater(&before, &after).unwrap();
        assert!((p - 1.0 / 252.0).abs() < 1e-12, "{p}");
        assert!(p_less(&before, &after).unwrap() > 0.99);
    }

    #[test]
    fn the_same_values_are_no_evidence() {
        let v = [5.0, 5.0, 5.0, 5.0, 5.0];
        assert_eq!(p_greater(&v, &v), Some(1.0));
        assert_eq!(p_less(&v, &v), Some(1.0));
    }

    #[test]
    fn interleaved_values_are_not_significant() {
        let before = [10.0, 12.0, 14.0, 16.0, 18.0];
        let after = [11.0, 13.0, 15.0, 17.0, 19.0];
        let p = p_greater(&before, &after).unwrap();
        assert!(p > 0.2 && p < 0.5, "{p}");
    }

    #[test]
    fn matches_a_hand_count_for_two_and_two() {
        // Pooled 1,2,3,4 with after = {3,4} (sum 7): of the 6 splits only {3,4} reaches 7.
        assert!((p_greater(&[1.0, 2.0], &[3.0, 4.0]).unwrap() - 1.0 / 6.0).abs() < 1e-12);
        // after = {2,4} (sum 6): {2,4} and {3,4} reach 6, so 2 of 6.
        assert!((p_greater(&[1.0, 3.0], &[2.0, 4.0]).unwrap() - 2.0 / 6.0).abs() < 1e-12);
    }

    #[test]
    fn large_samples_are_resampled_reproducibly_and_agree_with_the_exact_count() {
        // 11 + 11 windows: beyond exact enumeration.
        let before: Vec<f64> = (0..11).map(|i| 10.0 + (i % 4) as f64 * 0.3).collect();
        let after: Vec<f64> = (0..11).map(|i| 10.4 + (i % 3) as f64 * 0.3).collect();
        let p = p_greater(&before, &after).unwrap();
        assert_eq!(
            p,
            p_greater(&before, &after).unwrap(),
            "same windows, same p"
        );
        assert!(p > 0.0 && p < 0.05, "{p}");
        // Where both apply (10 + 10), resampling estimates the exact value closely.
        let (b, a) = (&before[..10], &after[..10]);
        let exact_p = p_greater(b, a).unwrap();
        let pooled: Vec<f64> = b.iter().chain(a).copied().collect();
        let at_least = a.iter().sum::<f64>() - 1e-6;
        let mc = sampled(&pooled, a.len(), at_least);
        assert!(
            (mc - exact_p).abs() < 0.005,
            "exact {exact_p} vs sampled {mc}"
        );
    }

    #[test]
    fn a_shift_test_rejects_only_beyond_the_shift() {
        let before = [1.0, 1.1, 0.9, 1.05, 0.95];
        let after = [1.5, 1.6, 1.4, 1.55, 1.45];
        // Worse by more than 0.2: yes. By more than 0.8: no (the true shift is 0.5).
        assert!(p_greater(&before, &shifted(&after, 0.2)).unwrap() < 0.01);
        assert!(p_greater(&before, &shifted(&after, 0.8)).unwrap() > 0.5);
        // Less than 0.8 worse: shown.
        assert!(p_less(&before, &shifted(&after, 0.8)).unwrap() < 0.01);
    }

    #[test]
    fn detectable_effect_shrinks_with_windows_and_grows_with_noise() {
        let d5 = detectable(0.1, 5, 5, 0.05, 0.8).unwrap();
        let d15 = detectable(0.1, 15, 15, 0.05, 0.8).unwrap();
        assert!(d15 < d5, "{d15} < {d5}");
        // (t_0.95 + t_0.8 at 8 df) * 0.1 * sqrt(2/5) = (1.860 + 0.889) * 0.0632 = 0.174.
        assert!((d5 - 0.174).abs() < 0.002, "{d5}");
        assert!(detectable(0.2, 5, 5, 0.05, 0.8).unwrap() > d5);
        assert_eq!(detectable(0.1, 1, 5, 0.05, 0.8), None);
        assert_eq!(windows_needed(0.1, d15, 0.05, 0.8, 30), Some(15));
        assert_eq!(windows_needed(1.0, 0.01, 0.05, 0.8, 30), None);
    }

    #[test]
    fn ranks_share_ties_and_tame_outliers() {
        assert_eq!(ranks(&[10.0, 30.0, 20.0, 20.0]), [1.0, 4.0, 2.5, 2.5]);
        // One huge window among five: the rank test sees one high rank, no more.
        let before = [30.0, 31.0, 29.5, 30.5, 300.0];
        let after = [30.2, 30.8, 29.8, 30.4, 30.1];
        assert!(rank_p_less(&before, &after).unwrap() > 0.1);
        assert_eq!(median(&[3.0, 1.0, 2.0]), Some(2.0));
        assert_eq!(shift_estimate(&[1.0, 2.0], &[11.0, 12.0]), Some(10.0));
        assert!((robust_sd(&[1.0, 2.0, 3.0, 4.0, 100.0]).unwrap() - 1.4826).abs() < 1e-9);
    }

    #[test]
    fn pooled_spread_ignores_the_shift_between_sides() {
        let a = [1.0, 2.0, 3.0];
        let b = [11.0, 12.0, 13.0];
        assert!((pooled_sd(&a, &b).unwrap() - 1.0).abs() < 1e-12);
        assert_eq!(pooled_sd(&[1.0], &[2.0]), None);
    }
}

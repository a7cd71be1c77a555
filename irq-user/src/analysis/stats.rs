//! The statistical test `tune` decides with: an exact one-sided permutation test (Fisher-Pitman)
//! on the difference of means of two small samples, one value per measurement window. It
//! assumes nothing about the distribution (window throughputs and latencies are skewed and
//! few), handles ties, and with 5 windows a side its smallest p-value is 1/252 = 0.004.

/// Largest pooled sample the test enumerates exactly (2^20 label sets at most).
pub const MAX_POOLED: usize = 20;

/// P(mean(after) - mean(before) >= observed) under "the change made no difference" (every
/// split of the pooled values into the two sides equally likely): small when `after` is
/// larger beyond chance. None when a side is empty or the samples are too many.
pub fn p_greater(before: &[f64], after: &[f64]) -> Option<f64> {
    let pooled: Vec<f64> = before.iter().chain(after).copied().collect();
    let (n, k) = (pooled.len(), after.len());
    if before.is_empty() || after.is_empty() || n > MAX_POOLED {
        return None;
    }
    let observed: f64 = after.iter().sum();
    // Sums within a hair of the observed one are ties (floating-point noise), counted as >=.
    let scale = pooled
        .iter()
        .map(|v| v.abs())
        .fold(0.0, f64::max)
        .max(1e-300);
    let eps = scale * 1e-9 * n as f64;
    let (mut at_least, mut total) = (0u64, 0u64);
    for set in 0u32..(1u32 << n) {
        if set.count_ones() as usize != k {
            continue;
        }
        total += 1;
        let sum: f64 = (0..n)
            .filter(|i| set & (1 << i) != 0)
            .map(|i| pooled[i])
            .sum();
        if sum >= observed - eps {
            at_least += 1;
        }
    }
    Some(at_least as f64 / total as f64)
}

/// The mirror test: small when `after` is smaller beyond chance.
pub fn p_less(before: &[f64], after: &[f64]) -> Option<f64> {
    let neg = |v: &[f64]| v.iter().map(|x| -x).collect::<Vec<f64>>();
    p_greater(&neg(before), &neg(after))
}

pub fn mean(v: &[f64]) -> Option<f64> {
    (!v.is_empty()).then(|| v.iter().sum::<f64>() / v.len() as f64)
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
    fn refuses_what_it_cannot_enumerate_or_judge() {
        assert_eq!(p_greater(&[], &[1.0]), None);
        assert_eq!(p_greater(&[1.0; 11], &[2.0; 11]), None);
    }
}

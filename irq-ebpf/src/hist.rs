//! Log-linear latency histogram buckets, in nanoseconds, shared by the probes and user space.
//!
//! Values 0..4 get a bucket each; above that every power of two [2^p, 2^(p+1)) is split into
//! [`SUB`] equal sub-buckets, so a bucket is at most 25% as wide as its lower bound (plain log2
//! histograms, as in libbpf-tools, are 100%). Powers up to 2^[`MAX_POW`] (about 68 s) are
//! covered; larger values land in the last bucket.

/// log2 of the sub-buckets per power of two.
pub const SUB_BITS: u32 = 2;
/// Sub-buckets per power of two.
pub const SUB: u64 = 1 << SUB_BITS;
/// Highest power of two with its own buckets: [2^35, 2^36) ns is 34.4 s to 68.7 s.
pub const MAX_POW: u32 = 35;
/// Number of buckets.
pub const BUCKETS: usize = (SUB + (MAX_POW - SUB_BITS + 1) as u64 * SUB) as usize;

/// Floor of log2(v) for v > 0. Written with compares and shifts because the BPF backend has no
/// count-leading-zeros instruction (same approach as libbpf-tools' bits.bpf.h).
#[inline(always)]
pub fn log2(v: u64) -> u32 {
    let mut v = v;
    let mut r: u32 = 0;
    if v >> 32 != 0 {
        v >>= 32;
        r += 32;
    }
    if v >> 16 != 0 {
        v >>= 16;
        r += 16;
    }
    if v >> 8 != 0 {
        v >>= 8;
        r += 8;
    }
    if v >> 4 != 0 {
        v >>= 4;
        r += 4;
    }
    if v >> 2 != 0 {
        v >>= 2;
        r += 2;
    }
    if v >> 1 != 0 {
        r += 1;
    }
    r
}

/// The bucket holding `v` nanoseconds; always < [`BUCKETS`].
#[inline(always)]
pub fn bucket(v: u64) -> usize {
    if v < SUB {
        return v as usize;
    }
    let pow = log2(v);
    if pow > MAX_POW {
        return BUCKETS - 1;
    }
    let sub = (v >> (pow - SUB_BITS)) & (SUB - 1);
    (SUB + (pow - SUB_BITS) as u64 * SUB + sub) as usize
}

/// The half-open range [low, high) of values in bucket `i`. The last bucket also takes every
/// value above its range, which its `high` does not show.
pub fn bucket_range(i: usize) -> (u64, u64) {
    let i = i as u64;
    if i < SUB {
        return (i, i + 1);
    }
    let pow = (i - SUB) / SUB + SUB_BITS as u64;
    let sub = (i - SUB) % SUB;
    let width = 1u64 << (pow - SUB_BITS as u64);
    let low = (1u64 << pow) + sub * width;
    (low, low + width)
}

#[cfg(test)]
mod tests {
    use super::*;

    /// Values around every bucket edge, plus extremes.
    fn samples() -> impl Iterator<Item = u64> {
        let mut v = vec![
            0,
            1,
            2,
            3,
            4,
            5,
            6,
            7,
            8,
            1_000,
            999_999,
            1_000_000_000,
            u64::MAX,
        ];
        for p in 0..64 {
            let x = 1u64 << p;
            v.extend([x - 1, x, x + 1, x + x / 4, x + x / 2, x + 3 * (x / 4)]);
        }
        v.into_iter()
    }

    #[test]
    fn log2_matches_leading_zeros() {
        for v in samples().filter(|&v| v > 0) {
            assert_eq!(log2(v), 63 - v.leading_zeros(), "log2({v})");
        }
    }

    #[test]
    fn value_to_bucket_to_range_contains_value() {
        let (_, last_low) = (0, bucket_range(BUCKETS - 1).0);
        for v in samples() {
            let b = bucket(v);
            assert!(b < BUCKETS, "bucket({v}) = {b}");
            let (lo, hi) = bucket_range(b);
            if b == BUCKETS - 1 && v >= last_low {
                assert!(v >= lo, "{v} below the last bucket");
            } else {
                assert!(lo <= v && v < hi, "{v} not in bucket {b} = [{lo}, {hi})");
            }
        }
    }

    #[test]
    fn buckets_tile_the_range_and_are_at_most_25_percent_wide() {
        let mut expected_low = 0;
        for b in 0..BUCKETS {
            let (lo, hi) = bucket_range(b);
            assert_eq!(lo, expected_low, "bucket {b} leaves a gap");
            assert_eq!(bucket(lo), b);
            assert_eq!(bucket(hi - 1), b);
            if lo >= SUB {
                assert!(
                    (hi - lo) * 4 <= lo,
                    "bucket {b} [{lo}, {hi}) wider than 25%"
                );
            }
            expected_low = hi;
        }
        // From 1 ns to beyond 1 s.
        assert_eq!(bucket_range(1).0, 1);
        assert!(bucket_range(BUCKETS - 1).0 > 1_000_000_000);
    }
}

//! Latency histograms for the status page: log-linear buckets (8 per
//! doubling, so a percentile read from them is within 12.5 %, like an HDR
//! histogram with one significant digit) of atomic counters, one relaxed
//! add per observation.
//!
//! Counts only grow: a reader takes two snapshots and computes percentiles
//! of the difference, which is what the status page does each second.

use std::sync::atomic::{AtomicU64, Ordering};
use std::time::Duration;

/// Sub-buckets per doubling, as a power of two.
const SUB_BITS: u32 = 3;
const SUB: usize = 1 << SUB_BITS;
/// Up to 2^27 µs (about 134 s); slower answers count in the last bucket.
const BUCKETS: usize = (27 - SUB_BITS as usize + 1) * SUB + SUB;

/// Observations of one duration, in microseconds.
pub struct LatencyBuckets {
    counts: Box<[AtomicU64; BUCKETS]>,
}

impl Default for LatencyBuckets {
    fn default() -> Self {
        Self {
            counts: Box::new(std::array::from_fn(|_| AtomicU64::new(0))),
        }
    }
}

impl std::fmt::Debug for LatencyBuckets {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("LatencyBuckets").finish_non_exhaustive()
    }
}

/// The bucket of `micros`: values below `2 * SUB` have one each, then each
/// doubling is split in `SUB` equal parts.
fn index(micros: u64) -> usize {
    if micros < (2 * SUB) as u64 {
        return micros as usize;
    }
    let msb = 63 - micros.leading_zeros();
    let sub = (micros >> (msb - SUB_BITS)) as usize & (SUB - 1);
    ((msb - SUB_BITS + 1) as usize * SUB + sub).min(BUCKETS - 1)
}

/// The smallest value of bucket `i`, in microseconds.
fn lower(i: usize) -> u64 {
    if i < 2 * SUB {
        return i as u64;
    }
    let shift = (i / SUB) as u32 - 1;
    ((SUB + i % SUB) as u64) << shift
}

impl LatencyBuckets {
    pub fn observe(&self, d: Duration) {
        let micros = u64::try_from(d.as_micros()).unwrap_or(u64::MAX);
        self.counts[index(micros)].fetch_add(1, Ordering::Relaxed);
    }

    /// The counts so far, by bucket.
    pub fn snapshot(&self) -> Snapshot {
        Snapshot(
            self.counts
                .iter()
                .map(|c| c.load(Ordering::Relaxed))
                .collect(),
        )
    }
}

/// Counts by bucket at one moment.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Snapshot(Vec<u64>);

impl Snapshot {
    pub fn total(&self) -> u64 {
        self.0.iter().sum()
    }

    /// The upper bound (ms) of the bucket holding quantile `q` (0 to 1),
    /// `None` without observations.
    pub fn quantile_ms(&self, q: f64) -> Option<f64> {
        let total = self.total();
        if total == 0 {
            return None;
        }
        let rank = ((q * total as f64).ceil() as u64).clamp(1, total);
        let mut seen = 0;
        for (i, n) in self.0.iter().enumerate() {
            seen += n;
            if seen >= rank {
                return Some(lower(i + 1) as f64 / 1000.0);
            }
        }
        None
    }

    /// The non-empty buckets as `[upper bound in ms, count]` pairs, for a
    /// reader that subtracts two snapshots.
    pub fn sparse(&self) -> Vec<(f64, u64)> {
        self.0
            .iter()
            .enumerate()
            .filter(|(_, n)| **n > 0)
            .map(|(i, n)| (lower(i + 1) as f64 / 1000.0, *n))
            .collect()
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn buckets_are_contiguous_and_tight() {
        assert_eq!(lower(0), 0);
        for i in 0..BUCKETS - 1 {
            assert!(lower(i) < lower(i + 1), "{i}");
            assert_eq!(index(lower(i)), i, "{i}");
            assert_eq!(index(lower(i + 1) - 1), i, "{i}");
            // Within 12.5 % of its lower bound past the exact ones.
            if i >= 2 * SUB {
                assert!((lower(i + 1) - lower(i)) * 8 <= lower(i), "{i}");
            }
        }
        assert_eq!(index(u64::MAX), BUCKETS - 1);
    }

    #[test]
    fn quantiles_of_what_was_observed() {
        let b = LatencyBuckets::default();
        assert_eq!(b.snapshot().quantile_ms(0.5), None);
        for ms in 1..=100 {
            b.observe(Duration::from_millis(ms));
        }
        let s = b.snapshot();
        assert_eq!(s.total(), 100);
        for (q, exact) in [(0.5, 50.0), (0.9, 90.0), (0.99, 99.0), (1.0, 100.0)] {
            let got = s.quantile_ms(q).unwrap();
            assert!(got >= exact && got <= exact * 1.125 + 0.001, "{q}: {got}");
        }
        assert_eq!(s.sparse().iter().map(|(_, n)| n).sum::<u64>(), 100);
    }
}

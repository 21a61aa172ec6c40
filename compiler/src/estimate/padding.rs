//! Padding: how many token positions a training step computes for each real token when the
//! collator pads every micro-batch to its longest row (`packing = false`).
//!
//! The data profile's histogram gives the length distribution in power-of-two buckets: rows of
//! more than half `tokens_up_to` and at most `tokens_up_to` tokens (the first, of one token,
//! exactly 1), the last capped at the profile's `max_tokens`. Lengths are taken as spread evenly within a bucket, so the
//! distribution function F is piecewise linear. The rows of a micro-batch of b are drawn at random
//! (train.py shuffles, it does not group by length), so the padded length of a micro-batch is the
//! largest of b draws, whose mean is the integral of 1 − F(x)^b over x ≥ 0. The factor is that mean
//! over the mean length, the same integral with b = 1, both from the same histogram so that the
//! bucket approximation cancels as far as it can. With `packing = true` train.py flattens a
//! micro-batch into one row without padding (transformers' DataCollatorWithFlattening): factor 1.

use serde::Deserialize;

/// One bar of the profile's token-length histogram.
#[derive(Clone, Copy, Debug, Deserialize, PartialEq)]
pub struct Bucket {
    pub tokens_up_to: u64,
    pub rows: u64,
}

/// The mean of the largest of `batch` lengths drawn from the histogram, capped at `max_tokens`.
fn mean_longest(histogram: &[Bucket], max_tokens: u64, batch: u64) -> Option<f64> {
    let total: u64 = histogram.iter().map(|b| b.rows).sum();
    if total == 0 || batch == 0 {
        return None;
    }
    let mut buckets: Vec<Bucket> = histogram.iter().copied().filter(|b| b.rows > 0).collect();
    buckets.sort_by_key(|b| b.tokens_up_to);
    let power = batch as f64;
    // ∫ (1 − F^b) over [lo, hi] with F linear from f0 to f1.
    let segment = |lo: f64, hi: f64, f0: f64, f1: f64| -> f64 {
        let width = hi - lo;
        if width <= 0.0 {
            return 0.0;
        }
        if (f1 - f0).abs() < 1e-15 {
            return width * (1.0 - f0.powf(power));
        }
        width - width * (f1.powf(power + 1.0) - f0.powf(power + 1.0)) / ((power + 1.0) * (f1 - f0))
    };
    let (mut x, mut f, mut mean) = (0.0_f64, 0.0_f64, 0.0_f64);
    let cap = if max_tokens > 0 { max_tokens as f64 } else { f64::INFINITY };
    for bucket in buckets {
        let hi = (bucket.tokens_up_to as f64).min(cap);
        // The first bucket holds rows of exactly one token.
        let lo = if bucket.tokens_up_to <= 1 { hi } else { (bucket.tokens_up_to / 2) as f64 }.min(hi);
        // No rows between the previous bucket and this one: F is flat there.
        mean += segment(x, lo.max(x), f, f);
        let next = f + bucket.rows as f64 / total as f64;
        mean += segment(lo.max(x), hi.max(x), f, next);
        x = hi.max(x);
        f = next;
    }
    Some(mean)
}

/// Token positions computed per real token at micro-batch `batch` without packing; `None` when the
/// histogram is empty.
pub fn factor(histogram: &[Bucket], max_tokens: u64, batch: u64) -> Option<f64> {
    let longest = mean_longest(histogram, max_tokens, batch)?;
    let mean = mean_longest(histogram, max_tokens, 1)?;
    (mean > 0.0).then(|| (longest / mean).max(1.0))
}

#[cfg(test)]
mod tests {
    use super::*;

    fn bucket(tokens_up_to: u64, rows: u64) -> Bucket {
        Bucket { tokens_up_to, rows }
    }

    // Half the rows in (32, 64], half in (64, 128], the longest 128 tokens:
    //   F = 0 up to 32, 0.5 (x − 32)/32 on (32, 64], 0.5 + 0.5 (x − 64)/64 on (64, 128].
    //   mean length  = ∫(1 − F) = 32 + (32 − 0.5·32/2) + 64 (1 − 0.75)            = 32 + 24 + 16 = 72
    //   mean longest of 2 = ∫(1 − F²) = 32 + (32 − 0.25·32/3) + 64 (1 − 0.25·7/3) = 32 + 29.33 + 26.67 = 88
    //   factor = 88 / 72 = 11/9.
    #[test]
    fn the_factor_of_two_buckets_is_the_one_derived_by_hand() {
        let histogram = [bucket(64, 50), bucket(128, 50)];
        assert!((mean_longest(&histogram, 128, 1).expect("mean") - 72.0).abs() < 1e-9);
        assert!((mean_longest(&histogram, 128, 2).expect("mean") - 88.0).abs() < 1e-9);
        assert!((factor(&histogram, 128, 2).expect("factor") - 11.0 / 9.0).abs() < 1e-12);
        assert_eq!(factor(&histogram, 128, 1), Some(1.0), "a batch of one is never padded");
    }

    #[test]
    fn the_factor_grows_with_the_batch_toward_the_longest_over_the_mean() {
        let histogram = [bucket(64, 50), bucket(128, 50)];
        let factors: Vec<f64> =
            [1, 2, 4, 16, 256].iter().map(|&b| factor(&histogram, 128, b).expect("factor")).collect();
        assert!(factors.windows(2).all(|w| w[0] < w[1]), "{factors:?}");
        assert!(factors[4] < 128.0 / 72.0 && factors[4] > 0.99 * 128.0 / 72.0, "{factors:?}");
        // The cap: a profile whose longest row is 100 tokens pads to at most 100, over a mean of
        // 32 + 24 + 36 (1 − 0.75) = 65.
        assert!(factor(&histogram, 100, 256).expect("factor") < 100.0 / 65.0);
        assert_eq!(factor(&[], 0, 4), None);
        // Every row the same length (one bucket, all at its cap): no padding.
        assert!((factor(&[bucket(1, 10)], 1, 8).expect("factor") - 1.0).abs() < 1e-12);
    }
}

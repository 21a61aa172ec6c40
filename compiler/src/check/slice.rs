//! Hub split slices, the format of a dataset's `split` field: `train`, `train[:10000]`,
//! `train[10%:]`, `train[5:50%]`, `train[-100:]`.
//!
//! The checker validates them, the estimator counts the rows an absolute slice selects, and the
//! runtime's data engine applies them to the records it reads; all three use this one parser.
//! Resolution follows the `datasets` library: negative bounds count from the end, percentages
//! round half to even (Python's `round`), and bounds are clamped to the records there are.

/// One bound of a slice: a record index (negative from the end) or a percentage of the records.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Bound {
    Rows(i64),
    Percent(i64),
}

/// A Hub split with an optional slice: `train`, `train[:10000]`, `train[10%:]`, `train[5:50%]`.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct SplitSlice {
    pub split: String,
    pub from: Option<Bound>,
    pub to: Option<Bound>,
}

impl SplitSlice {
    /// Parses `name[from:to]`; the error is the reason, in words.
    pub fn parse(text: &str) -> Result<SplitSlice, String> {
        let bad = |reason: &str| reason.to_string();
        let text = text.trim();
        let Some(open) = text.find('[') else {
            return Ok(SplitSlice { split: text.to_string(), from: None, to: None });
        };
        let inner = text[open + 1..].strip_suffix(']').ok_or_else(|| bad("expected `]` at the end"))?;
        let (from, to) = inner.split_once(':').ok_or_else(|| bad("expected `[from:to]`"))?;
        let split = text[..open].trim().to_string();
        if split.is_empty() {
            return Err(bad("the split name is missing"));
        }
        let bound = |part: &str| -> Result<Option<Bound>, String> {
            let part = part.trim();
            if part.is_empty() {
                return Ok(None);
            }
            let (digits, percent) = match part.strip_suffix('%') {
                Some(digits) => (digits, true),
                None => (part, false),
            };
            let n: i64 = digits.trim().parse().map_err(|_| format!("`{part}` is not an integer or a percentage"))?;
            if percent && !(-100..=100).contains(&n) {
                return Err(bad("a percentage must be between -100% and 100%"));
            }
            Ok(Some(if percent { Bound::Percent(n) } else { Bound::Rows(n) }))
        };
        Ok(SplitSlice { split, from: bound(from)?, to: bound(to)? })
    }

    /// Whether resolving the slice needs the record count.
    pub fn needs_count(&self) -> bool {
        [self.from, self.to].iter().any(|b| matches!(b, Some(Bound::Percent(_)) | Some(Bound::Rows(i64::MIN..=-1))))
    }

    /// The half-open range of record indices (from 0) the slice selects among `count` records
    /// (`None`: unknown, only valid when [`SplitSlice::needs_count`] is false).
    pub fn range(&self, count: Option<u64>) -> (u64, Option<u64>) {
        let resolve = |bound: Bound| -> u64 {
            let n = count.unwrap_or(u64::MAX) as i128;
            let index = match bound {
                Bound::Rows(i) => i128::from(i),
                Bound::Percent(p) => round_half_even(i128::from(p) * n, 100),
            };
            let index = if index < 0 { n + index } else { index };
            index.clamp(0, n) as u64
        };
        let from = self.from.map(resolve).unwrap_or(0);
        let to = self.to.map(resolve);
        (from, to.map(|to| to.max(from)))
    }
}

/// `round(a / b)` with Python's rounding (half to even), for `b > 0`.
fn round_half_even(a: i128, b: i128) -> i128 {
    let (q, r) = (a.div_euclid(b), a.rem_euclid(b));
    match (2 * r).cmp(&b) {
        std::cmp::Ordering::Less => q,
        std::cmp::Ordering::Greater => q + 1,
        std::cmp::Ordering::Equal => q + (q & 1),
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn slices_resolve_as_the_hub_does() {
        let range = |s: &str, n: u64| SplitSlice::parse(s).expect("parses").range(Some(n));
        assert_eq!(range("train", 10), (0, None));
        assert_eq!(range("train[:4]", 10), (0, Some(4)));
        assert_eq!(range("train[10%:]", 30), (3, None));
        assert_eq!(range("train[5:50%]", 30), (5, Some(15)));
        assert_eq!(range("train[-3:]", 10), (7, None));
        assert_eq!(range("train[:100]", 10), (0, Some(10)));
        assert_eq!(range("train[8:2]", 10), (8, Some(8)));
        // 25% of 10 is 2.5 and 15% of 10 is 1.5: both round to the even neighbour, as Python's round.
        assert_eq!(range("train[:25%]", 10), (0, Some(2)));
        assert_eq!(range("train[:15%]", 10), (0, Some(2)));
        assert!(!SplitSlice::parse("train[:10]").expect("parses").needs_count());
        assert!(SplitSlice::parse("train[-10:]").expect("parses").needs_count());
        assert!(SplitSlice::parse("train[10%:]").expect("parses").needs_count());
        for bad in ["train[", "train[5]", "train[a:]", "[1:2]", "train[:101%]"] {
            assert!(SplitSlice::parse(bad).is_err(), "{bad}");
        }
    }
}

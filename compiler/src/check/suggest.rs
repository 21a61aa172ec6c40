//! "Did you mean" suggestions: the closest candidate by edit distance, if it is close enough.

/// The candidate nearest to `word`, when the distance is small relative to the word's length.
pub(crate) fn closest<'a>(word: &str, candidates: impl Iterator<Item = &'a str>) -> Option<&'a str> {
    let word_lower = word.to_ascii_lowercase();
    candidates
        .map(|c| (strsim::damerau_levenshtein(&word_lower, &c.to_ascii_lowercase()), c))
        .filter(|(d, c)| *d <= (word.len().max(c.len()) / 3).max(1))
        .min_by_key(|(d, _)| *d)
        .map(|(_, c)| c)
}

#[cfg(test)]
mod tests {
    use super::closest;

    #[test]
    fn suggests_only_close_names() {
        let names = ["learning_rate", "epochs", "precision"];
        assert_eq!(closest("learning_rat", names.iter().copied()), Some("learning_rate"));
        assert_eq!(closest("epoch", names.iter().copied()), Some("epochs"));
        assert_eq!(closest("zzz", names.iter().copied()), None);
    }
}

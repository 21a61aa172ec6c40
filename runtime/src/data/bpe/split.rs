//! The split patterns of the byte-level BPE families, as hand-written matchers.
//!
//! `tokenizers` cuts text into pieces with a `Split` pre-tokenizer whose regex (run by fancy-regex)
//! has a negative lookahead, `\s+(?!\S)`, so it cannot use a DFA and backtracks instead; on long
//! texts that regex is most of the encoding time. The families use a handful of patterns, known by
//! their exact text (`PATTERNS`); each has a matcher here that follows the regex's semantics
//! (leftmost-first alternation, greedy quantifiers with backtracking, the lookahead at the end of
//! the piece) alternative by alternative. A pattern that is not in the table is not guessed at:
//! the tokenizer is then encoded by `tokenizers` itself.
//!
//! The matchers work on one piece (`&str`) at a time, as `tokenizers` applies each `Split` to the
//! pieces of the previous one; "end of input" for the lookahead is the end of the piece.

use super::classes::{classes, Classes, LETTER, LOWERISH, MARK, NUMBER, PUNCT, SPACE, SYMBOL, UPPERISH};

/// GPT-2's pattern, which `tokenizers`' `ByteLevel` pre-tokenizer applies itself with
/// `use_regex` (GPT-2, RoBERTa, Pythia, SmolLM and SmolLM2, Phi-2, ...).
pub(super) const GPT2: &str = r"'s|'t|'re|'ve|'m|'ll|'d| ?\p{L}+| ?\p{N}+| ?[^\s\p{L}\p{N}]+|\s+(?!\S)|\s+";
/// Llama 3 (and OLMo 2, SmolLM3): OpenAI's cl100k pattern.
const CL100K: &str = r"(?i:'s|'t|'re|'ve|'m|'ll|'d)|[^\r\n\p{L}\p{N}]?\p{L}+|\p{N}{1,3}| ?[^\s\p{L}\p{N}]+[\r\n]*|\s*[\r\n]+|\s+(?!\S)|\s+";
/// Qwen2, Qwen2.5, Qwen3: cl100k with single digits.
const QWEN2: &str =
    r"(?i:'s|'t|'re|'ve|'m|'ll|'d)|[^\r\n\p{L}\p{N}]?\p{L}+|\p{N}| ?[^\s\p{L}\p{N}]+[\r\n]*|\s*[\r\n]+|\s+(?!\S)|\s+";
/// gpt-oss: OpenAI's o200k pattern (words split at case changes, contractions attached).
const O200K: &str = r"[^\r\n\p{L}\p{N}]?[\p{Lu}\p{Lt}\p{Lm}\p{Lo}\p{M}]*[\p{Ll}\p{Lm}\p{Lo}\p{M}]+(?i:'s|'t|'re|'ve|'m|'ll|'d)?|[^\r\n\p{L}\p{N}]?[\p{Lu}\p{Lt}\p{Lm}\p{Lo}\p{M}]+[\p{Ll}\p{Lm}\p{Lo}\p{M}]*(?i:'s|'t|'re|'ve|'m|'ll|'d)?|\p{N}{1,3}| ?[^\s\p{L}\p{N}]+[\r\n/]*|\s*[\r\n]+|\s+(?!\S)|\s+";
/// Mistral Nemo (Tekken): o200k without contractions, with single digits.
const TEKKEN: &str = r"[^\r\n\p{L}\p{N}]?[\p{Lu}\p{Lt}\p{Lm}\p{Lo}\p{M}]*[\p{Ll}\p{Lm}\p{Lo}\p{M}]+|[^\r\n\p{L}\p{N}]?[\p{Lu}\p{Lt}\p{Lm}\p{Lo}\p{M}]+[\p{Ll}\p{Lm}\p{Lo}\p{M}]*|\p{N}| ?[^\s\p{L}\p{N}]+[\r\n/]*|\s*[\r\n]+|\s+(?!\S)|\s+";
/// DeepSeek V3 (and R1), first of three: numbers in groups of up to three digits.
const DEEPSEEK_DIGITS: &str = r"\p{N}{1,3}";
/// DeepSeek V3, second: runs of CJK ideographs and kana.
const DEEPSEEK_CJK: &str = "[\u{4e00}-\u{9fa5}\u{3040}-\u{309f}\u{30a0}-\u{30ff}]+";
/// DeepSeek V3, third: words, punctuation and spaces (with literal CR and LF in its classes).
const DEEPSEEK_WORDS: &str = concat!(
    r##"[!"#$%&'()*+,\-./:;<=>?@\[\\\]^_`{|}~][A-Za-z]+|[^"##,
    "\r\n",
    r"\p{L}\p{P}\p{S}]?[\p{L}\p{M}]+| ?[\p{P}\p{S}]+[",
    "\r\n",
    r"]*|\s*[",
    "\r\n",
    r"]+|\s+(?!\S)|\s+"
);

/// The patterns with a matcher, by their text in `tokenizer.json`.
const PATTERNS: [(&str, Pattern); 8] = [
    (GPT2, Pattern::Gpt2),
    (CL100K, Pattern::Cl100k { digits: 3 }),
    (QWEN2, Pattern::Cl100k { digits: 1 }),
    (O200K, Pattern::O200k { digits: 3, contractions: true }),
    (TEKKEN, Pattern::O200k { digits: 1, contractions: false }),
    (DEEPSEEK_DIGITS, Pattern::Digits),
    (DEEPSEEK_CJK, Pattern::Cjk),
    (DEEPSEEK_WORDS, Pattern::DeepSeekWords),
];

/// A split pattern that has a matcher.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub(super) enum Pattern {
    /// GPT-2's: case-sensitive contractions, then letters, numbers or other characters each with
    /// an optional leading space, then spaces.
    Gpt2,
    /// cl100k's shape: contractions, letters with one leading non-letter, numbers of up to
    /// `digits`, punctuation, spaces.
    Cl100k { digits: usize },
    /// o200k's shape: words cut where lower case turns upper, with contractions when
    /// `contractions`.
    O200k { digits: usize, contractions: bool },
    /// `\p{N}{1,3}`.
    Digits,
    /// CJK ideographs and kana, `[\u4e00-\u9fa5\u3040-\u309f\u30a0-\u30ff]+`.
    Cjk,
    /// DeepSeek V3's word pattern.
    DeepSeekWords,
}

impl Pattern {
    /// The matcher for a regex, when there is one.
    pub(super) fn for_regex(regex: &str) -> Option<Pattern> {
        PATTERNS.iter().find(|(text, _)| *text == regex).map(|&(_, pattern)| pattern)
    }

    /// The pattern's name, for the run's output.
    pub(super) fn name(self) -> &'static str {
        match self {
            Pattern::Gpt2 => "GPT-2",
            Pattern::Cl100k { digits: 3 } => "cl100k",
            Pattern::Cl100k { .. } => "cl100k with single digits",
            Pattern::O200k { contractions: true, .. } => "o200k",
            Pattern::O200k { .. } => "o200k without contractions, single digits",
            Pattern::Digits => "digits",
            Pattern::Cjk => "CJK",
            Pattern::DeepSeekWords => "DeepSeek words",
        }
    }

    /// Calls `piece` with the byte range of every piece that an `Isolated` split of `text` gives:
    /// the matches and the text between them, in order, none empty.
    pub(super) fn split(self, text: &str, mut piece: impl FnMut(usize, usize)) {
        let m = Matcher { text, classes: classes() };
        let mut at = 0;
        while at < text.len() {
            let Some((start, end)) = m.find(self, at) else { break };
            // Every alternative consumes at least one character; were one not to, the rest would
            // be one piece rather than a loop.
            debug_assert!(end > start, "an empty match at {start}");
            if end <= start {
                break;
            }
            if start > at {
                piece(at, start);
            }
            piece(start, end);
            at = end;
        }
        if at < text.len() {
            piece(at, text.len());
        }
    }
}

/// `\r` or `\n`.
fn newline(c: char) -> bool {
    c == '\r' || c == '\n'
}

/// One piece of text and the class tables.
struct Matcher<'a> {
    text: &'a str,
    classes: &'static Classes,
}

impl Matcher<'_> {
    /// The character at byte `i` and its length, if `i` is inside the text.
    #[inline]
    fn at(&self, i: usize) -> Option<(char, usize)> {
        let &b = self.text.as_bytes().get(i)?;
        if b < 0x80 {
            return Some((char::from(b), 1));
        }
        let c = self.text.get(i..)?.chars().next()?;
        Some((c, c.len_utf8()))
    }

    #[inline]
    fn flags_at(&self, i: usize) -> Option<(char, usize, u8)> {
        self.at(i).map(|(c, len)| (c, len, self.classes.of(c)))
    }

    /// Whether the character at `i` has any of `flags`.
    #[inline]
    fn is(&self, i: usize, flags: u8) -> bool {
        self.flags_at(i).is_some_and(|(_, _, f)| f & flags != 0)
    }

    /// The end of the run of characters from `i` for which `pred(char, flags)` holds.
    #[inline]
    fn run(&self, mut i: usize, pred: impl Fn(char, u8) -> bool) -> usize {
        while let Some((c, len, f)) = self.flags_at(i) {
            if !pred(c, f) {
                break;
            }
            i += len;
        }
        i
    }

    /// The end of at most `max` characters from `i` that have `flags`.
    fn run_max(&self, mut i: usize, flags: u8, max: usize) -> usize {
        for _ in 0..max {
            match self.flags_at(i) {
                Some((_, len, f)) if f & flags != 0 => i += len,
                _ => break,
            }
        }
        i
    }

    /// The leftmost match at or after `from`, as the regex's `find_iter` gives it.
    fn find(&self, pattern: Pattern, from: usize) -> Option<(usize, usize)> {
        match pattern {
            // Every character starts a match of these, so the match starts at `from`.
            Pattern::Gpt2 => Some((from, self.gpt2(from))),
            Pattern::Cl100k { digits } => Some((from, self.cl100k(from, digits))),
            Pattern::O200k { digits, contractions } => Some((from, self.o200k(from, digits, contractions))),
            Pattern::Digits => {
                let start = self.first(from, |_, f| f & NUMBER != 0)?;
                Some((start, self.run_max(start, NUMBER, 3)))
            }
            Pattern::Cjk => {
                let start = self.first(from, |c, _| cjk(c))?;
                Some((start, self.run(start, |c, _| cjk(c))))
            }
            Pattern::DeepSeekWords => {
                let mut i = from;
                loop {
                    let (_, len) = self.at(i)?;
                    if let Some(end) = self.deepseek_words(i) {
                        return Some((i, end));
                    }
                    i += len;
                }
            }
        }
    }

    /// The first position at or after `from` whose character satisfies `pred`.
    fn first(&self, mut i: usize, pred: impl Fn(char, u8) -> bool) -> Option<usize> {
        loop {
            let (c, len, f) = self.flags_at(i)?;
            if pred(c, f) {
                return Some(i);
            }
            i += len;
        }
    }

    /// `(?i:'s|'t|'re|'ve|'m|'ll|'d)` at `i`: its end.
    fn contraction(&self, i: usize) -> Option<usize> {
        if self.text.as_bytes().get(i) != Some(&b'\'') {
            return None;
        }
        let (c1, l1) = self.at(i + 1)?;
        let fold = |c, letter| self.classes.folds_to(c, letter);
        if fold(c1, 's') || fold(c1, 't') || fold(c1, 'm') || fold(c1, 'd') {
            return Some(i + 1 + l1);
        }
        let second = match () {
            () if fold(c1, 'r') || fold(c1, 'v') => 'e',
            () if fold(c1, 'l') => 'l',
            () => return None,
        };
        let (c2, l2) = self.at(i + 1 + l1)?;
        fold(c2, second).then_some(i + 1 + l1 + l2)
    }

    /// ` ?[^\s\p{L}\p{N}]+[\r\n]*` (with `/` among the trailing characters when `slash`) at `i`.
    fn punctuation(&self, i: usize, slash: bool) -> Option<usize> {
        let other = |_: char, f: u8| f & (SPACE | LETTER | NUMBER) == 0;
        let mut j = i;
        if self.text.as_bytes().get(i) == Some(&b' ') && self.flags_at(i + 1).is_some_and(|(c, _, f)| other(c, f)) {
            j = i + 1;
        }
        let (c, _, f) = self.flags_at(j)?;
        if !other(c, f) {
            return None;
        }
        let end = self.run(j, other);
        Some(self.run(end, |c, _| newline(c) || (slash && c == '/')))
    }

    /// `\s*[\r\n]+|\s+(?!\S)|\s+` at `i`, where the character at `i` is white space.
    fn space(&self, i: usize) -> usize {
        let mut last_newline_end = None;
        let mut last_start = i;
        let mut j = i;
        while let Some((c, len, f)) = self.flags_at(j) {
            if f & SPACE == 0 {
                break;
            }
            if newline(c) {
                last_newline_end = Some(j + len);
            }
            last_start = j;
            j += len;
        }
        // `\s*[\r\n]+`: the greedy `\s*` gives back characters until a newline follows it, so the
        // match ends after the run's last newline.
        if let Some(end) = last_newline_end {
            return end;
        }
        // `\s+(?!\S)`: the whole run at the end of the piece; otherwise all but its last
        // character, which must be followed by white space, so at least two characters.
        if j == self.text.len() || last_start > i {
            return if j == self.text.len() { j } else { last_start };
        }
        // `\s+`: a single space before a non-space.
        j
    }

    /// One match of GPT-2's pattern at `i` (every character starts one).
    fn gpt2(&self, i: usize) -> usize {
        let bytes = self.text.as_bytes();
        if bytes.get(i) == Some(&b'\'') {
            let end = match (bytes.get(i + 1), bytes.get(i + 2)) {
                (Some(b's' | b't' | b'm' | b'd'), _) => Some(i + 2),
                (Some(b'r' | b'v'), Some(b'e')) | (Some(b'l'), Some(b'l')) => Some(i + 3),
                _ => None,
            };
            if let Some(end) = end {
                return end;
            }
        }
        let Some((_, _, f)) = self.flags_at(i) else { return i };
        // ` ?\p{L}+`, ` ?\p{N}+`, ` ?[^\s\p{L}\p{N}]+`: the class of the character after an
        // optional space decides which, and its run is the match.
        let other = |f: u8| f & (SPACE | LETTER | NUMBER) == 0;
        let start = if bytes.get(i) == Some(&b' ') { i + 1 } else { i };
        if let Some((_, _, g)) = self.flags_at(start).filter(|_| start == i || !self.is(start, SPACE)) {
            for class in [LETTER, NUMBER] {
                if g & class != 0 {
                    return self.run(start, |_, f| f & class != 0);
                }
            }
            if other(g) {
                return self.run(start, |_, f| other(f));
            }
        }
        debug_assert!(f & SPACE != 0);
        self.space_without_newlines(i)
    }

    /// `\s+(?!\S)|\s+` at `i`, where the character at `i` is white space.
    fn space_without_newlines(&self, i: usize) -> usize {
        let mut last_start = i;
        let mut j = i;
        while let Some((_, len, f)) = self.flags_at(j) {
            if f & SPACE == 0 {
                break;
            }
            last_start = j;
            j += len;
        }
        if j == self.text.len() || last_start == i {
            j
        } else {
            last_start
        }
    }

    /// One match of the cl100k shape at `i` (every character starts one).
    fn cl100k(&self, i: usize, digits: usize) -> usize {
        if let Some(end) = self.contraction(i) {
            return end;
        }
        let Some((c, len, f)) = self.flags_at(i) else { return i };
        // [^\r\n\p{L}\p{N}]?\p{L}+
        if f & LETTER != 0 {
            return self.run(i, |_, f| f & LETTER != 0);
        }
        if !newline(c) && f & NUMBER == 0 && self.is(i + len, LETTER) {
            return self.run(i + len, |_, f| f & LETTER != 0);
        }
        // \p{N}{1,digits}
        if f & NUMBER != 0 {
            return self.run_max(i, NUMBER, digits);
        }
        if let Some(end) = self.punctuation(i, false) {
            return end;
        }
        // What is left is white space (punctuation took every other non-letter, non-number).
        self.space(i)
    }

    /// `[\p{Lu}\p{Lt}\p{Lm}\p{Lo}\p{M}]*[\p{Ll}\p{Lm}\p{Lo}\p{M}]+` at `q`: its end.
    fn cased_lower(&self, q: usize) -> Option<usize> {
        // The greedy upper run, remembering its last character that is also lower.
        let mut u = q;
        let mut last_lower_end = None;
        while let Some((_, len, f)) = self.flags_at(u) {
            if f & UPPERISH == 0 {
                break;
            }
            if f & LOWERISH != 0 {
                last_lower_end = Some(u + len);
            }
            u += len;
        }
        if self.is(u, LOWERISH) {
            return Some(self.run(u, |_, f| f & LOWERISH != 0));
        }
        // Backtracking the upper run: the lower run is the last character that is both.
        last_lower_end
    }

    /// `[\p{Lu}\p{Lt}\p{Lm}\p{Lo}\p{M}]+[\p{Ll}\p{Lm}\p{Lo}\p{M}]*` at `q`: its end.
    fn cased_upper(&self, q: usize) -> Option<usize> {
        if !self.is(q, UPPERISH) {
            return None;
        }
        let u = self.run(q, |_, f| f & UPPERISH != 0);
        Some(self.run(u, |_, f| f & LOWERISH != 0))
    }

    /// One match of the o200k shape at `i` (every character starts one).
    fn o200k(&self, i: usize, digits: usize, contractions: bool) -> usize {
        let Some((c, len, f)) = self.flags_at(i) else { return i };
        // `[^\r\n\p{L}\p{N}]?`: tried with the character first, then without.
        let optional = !newline(c) && f & (LETTER | NUMBER) == 0;
        let word = (optional.then(|| self.cased_lower(i + len)).flatten())
            .or_else(|| self.cased_lower(i))
            .or_else(|| optional.then(|| self.cased_upper(i + len)).flatten())
            .or_else(|| self.cased_upper(i));
        if let Some(end) = word {
            return match contractions.then(|| self.contraction(end)).flatten() {
                Some(end) => end,
                None => end,
            };
        }
        if f & NUMBER != 0 {
            return self.run_max(i, NUMBER, digits);
        }
        if let Some(end) = self.punctuation(i, true) {
            return end;
        }
        self.space(i)
    }

    /// DeepSeek V3's word pattern at `i`, which matches no digit (the first split took them) nor
    /// some other characters (controls, format characters).
    fn deepseek_words(&self, i: usize) -> Option<usize> {
        let (c, len, f) = self.flags_at(i)?;
        // [!"#$%&'()*+,\-./:;<=>?@\[\\\]^_`{|}~][A-Za-z]+
        if c.is_ascii_punctuation() && self.at(i + len).is_some_and(|(n, _)| n.is_ascii_alphabetic()) {
            return Some(self.run(i + len, |c, _| c.is_ascii_alphabetic()));
        }
        // [^\r\n\p{L}\p{P}\p{S}]?[\p{L}\p{M}]+
        let word = |_: char, f: u8| f & (LETTER | MARK) != 0;
        if !newline(c) && f & (LETTER | PUNCT | SYMBOL) == 0 && self.is(i + len, LETTER | MARK) {
            return Some(self.run(i + len, word));
        }
        if word(c, f) {
            return Some(self.run(i, word));
        }
        // ` ?[\p{P}\p{S}]+[\r\n]*`
        let mut j = i;
        if c == ' ' && self.is(i + 1, PUNCT | SYMBOL) {
            j = i + 1;
        }
        if self.is(j, PUNCT | SYMBOL) {
            let end = self.run(j, |_, f| f & (PUNCT | SYMBOL) != 0);
            return Some(self.run(end, |c, _| newline(c)));
        }
        (f & SPACE != 0).then(|| self.space(i))
    }
}

/// `[\u4e00-\u9fa5\u3040-\u309f\u30a0-\u30ff]`.
fn cjk(c: char) -> bool {
    matches!(c, '\u{4e00}'..='\u{9fa5}' | '\u{3040}'..='\u{309f}' | '\u{30a0}'..='\u{30ff}')
}

#[cfg(test)]
mod tests {
    use super::*;

    /// The pieces of `text`, by a matcher and by fancy-regex (the engine `tokenizers` uses).
    fn both(regex: &str, text: &str) -> (Vec<String>, Vec<String>) {
        let pattern = Pattern::for_regex(regex).expect("a known pattern");
        let mut ours = Vec::new();
        pattern.split(text, |s, e| ours.push(text[s..e].to_string()));
        let re = fancy_regex::Regex::new(regex).expect("regex");
        let mut theirs = Vec::new();
        let mut prev = 0;
        for m in re.find_iter(text) {
            let m = m.expect("no backtracking limit on these inputs");
            if m.start() > prev {
                theirs.push(text[prev..m.start()].to_string());
            }
            theirs.push(m.as_str().to_string());
            prev = m.end();
        }
        if prev < text.len() {
            theirs.push(text[prev..].to_string());
        }
        (ours, theirs)
    }

    const SAMPLES: &[&str] = &[
        "Hello, world! It's 2024: I'LL say 'hello' 1234567 times.\n\n  Indented\tand\r\nwindows  ",
        "  leading spaces, trailing   ",
        "don'T we'Re they'VE I'M she'D you'LL 'ſ 's 'x",
        "CamelCaseWords and HTTPServer, iPhone, ÉCOLE élève, ǅungla",
        "数字１２３ 和 漢字かなカナ한국어 mixed ١٢٣ ⅷ",
        "emoji 👍🏽👨‍👩‍👧 flags 🇫🇷 and combining e\u{301} a\u{308}\u{301} \u{301}alone",
        "\u{0}\u{7}control\u{200d}joiner\u{feff}bom \u{a0}nbsp\u{3000}ideographic\u{2028}line",
        "path/to/file.txt, a//b, x///\n/\n",
        "$$$ ((( ))) --- ... !!! ??? ''' \"\"\" +++",
        "\n\n\n   \n \t \n",
        " ",
        "a",
        "'",
        "   x",
        "x   ",
        ".Hello ,world (a) [B] {cD}",
    ];

    #[test]
    fn matchers_agree_with_the_regex_engine() {
        for (regex, _) in PATTERNS {
            for text in SAMPLES {
                let (ours, theirs) = both(regex, text);
                assert_eq!(ours, theirs, "pattern {regex:?} on {text:?}");
            }
        }
    }

    #[test]
    fn gpt2_contractions_are_case_sensitive() {
        let (ours, theirs) = both(GPT2, "it's IT'S 'll 'LL 're'x");
        assert_eq!(ours, theirs);
        assert!(ours.contains(&"'s".to_string()) && !ours.contains(&"'S".to_string()), "{ours:?}");
    }

    #[test]
    fn unknown_patterns_have_no_matcher() {
        assert_eq!(Pattern::for_regex(r"\s+"), None);
        assert_eq!(Pattern::for_regex(CL100K), Some(Pattern::Cl100k { digits: 3 }));
    }
}

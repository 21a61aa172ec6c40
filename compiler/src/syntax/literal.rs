//! Decoding of literal tokens: string escapes and dedent, integers, floats, sizes, durations, money.
//!
//! The grammar only recognises the shape of a literal; this module turns the matched text into a
//! value and reports what cannot be represented (an integer past `i64`, an unknown escape) as an
//! error message for the token's span.

/// Decodes the text between the quotes of a string literal. Triple-quoted strings are dedented
/// first: a newline right after the opening quotes and the whitespace before the closing quotes are
/// dropped, and the indentation common to all non-blank lines is removed. Escapes are decoded after
/// dedenting, so `\n` inside a triple-quoted string is a newline that dedent never sees.
pub(crate) fn decode_string(raw: &str, triple: bool) -> Result<String, String> {
    let text = if triple { dedent(&raw.replace("\r\n", "\n")) } else { raw.to_owned() };
    decode_escapes(&text)
}

fn dedent(raw: &str) -> String {
    let body = raw.strip_prefix("\r\n").or_else(|| raw.strip_prefix('\n')).unwrap_or(raw);
    // Drop the last line when it holds only the indentation of the closing quotes.
    let body = match body.rfind('\n') {
        Some(idx) if body[idx + 1..].chars().all(|c| c == ' ' || c == '\t') => &body[..idx],
        _ => body,
    };
    let indent = body
        .lines()
        .filter(|line| !line.trim().is_empty())
        .map(|line| line.len() - line.trim_start_matches([' ', '\t']).len())
        .min()
        .unwrap_or(0);
    body.lines()
        .map(|line| match line.get(..indent) {
            // Only ASCII indentation is removed, so the cut is always on a character boundary.
            Some(head) if head.bytes().all(|b| b == b' ' || b == b'\t') => &line[indent..],
            _ => line.trim_start_matches([' ', '\t']),
        })
        .collect::<Vec<_>>()
        .join("\n")
}

fn decode_escapes(text: &str) -> Result<String, String> {
    let mut out = String::with_capacity(text.len());
    let mut chars = text.chars().peekable();
    while let Some(c) = chars.next() {
        if c != '\\' {
            out.push(c);
            continue;
        }
        match chars.next() {
            Some('n') => out.push('\n'),
            Some('t') => out.push('\t'),
            Some('r') => out.push('\r'),
            Some('0') => out.push('\0'),
            Some('"') => out.push('"'),
            Some('\\') => out.push('\\'),
            // A backslash at the end of a line joins it with the next one.
            Some('\n') => {
                while chars.peek().is_some_and(|c| *c == ' ' || *c == '\t') {
                    chars.next();
                }
            }
            Some('u') => {
                let mut hex = String::new();
                if chars.next() != Some('{') {
                    return Err("a unicode escape is written `\\u{1F600}`".into());
                }
                let mut closed = false;
                for c in chars.by_ref() {
                    if c == '}' {
                        closed = true;
                        break;
                    }
                    hex.push(c);
                }
                if !closed || hex.is_empty() || !hex.chars().all(|c| c.is_ascii_hexdigit()) {
                    return Err("a unicode escape is written `\\u{1F600}`: 1 to 6 hex digits in braces".into());
                }
                let code = u32::from_str_radix(&hex, 16).map_err(|_| format!("`{hex}` is not hexadecimal"))?;
                let ch = char::from_u32(code).ok_or_else(|| format!("U+{code:X} is not a unicode scalar value"))?;
                out.push(ch);
            }
            Some(other) => return Err(format!("unknown escape `\\{other}`")),
            None => return Err("a string cannot end with a lone backslash".into()),
        }
    }
    Ok(out)
}

fn plain_digits(text: &str) -> String {
    text.chars().filter(|c| *c != '_').collect()
}

pub(crate) fn parse_int(text: &str) -> Result<i64, String> {
    plain_digits(text).parse::<i64>().map_err(|_| format!("`{text}` does not fit in a 64-bit integer"))
}

pub(crate) fn parse_float(text: &str) -> Result<f64, String> {
    let value = plain_digits(text).parse::<f64>().map_err(|_| format!("`{text}` is not a number"))?;
    if value.is_finite() {
        Ok(value)
    } else {
        Err(format!("`{text}` is too large to represent"))
    }
}

pub(crate) fn parse_money(text: &str) -> Result<f64, String> {
    parse_float(text.trim_start_matches('$'))
}

const SIZE_UNITS: [(&str, u64); 9] = [
    ("KiB", 1 << 10),
    ("MiB", 1 << 20),
    ("GiB", 1 << 30),
    ("TiB", 1 << 40),
    ("KB", 1_000),
    ("MB", 1_000_000),
    ("GB", 1_000_000_000),
    ("TB", 1_000_000_000_000),
    ("B", 1),
];

pub(crate) fn parse_size(text: &str) -> Result<u64, String> {
    for (unit, factor) in SIZE_UNITS {
        if let Some(number) = text.strip_suffix(unit) {
            let value = parse_float(number)? * factor as f64;
            if value > u64::MAX as f64 {
                return Err(format!("`{text}` is too large"));
            }
            // Sizes are whole bytes; `1.5KiB` is 1536 B.
            return Ok(value.round() as u64);
        }
    }
    Err(format!("`{text}` has no size unit (B, KB, MB, GB, TB, KiB, MiB, GiB, TiB)"))
}

/// `1h30m` → 5400. Units: d, h, m, s.
pub(crate) fn parse_duration(text: &str) -> Result<u64, String> {
    let mut total: u64 = 0;
    let mut number = String::new();
    for c in text.chars() {
        if c.is_ascii_digit() {
            number.push(c);
            continue;
        }
        if c == '_' {
            continue;
        }
        let factor = match c {
            'd' => 86_400,
            'h' => 3_600,
            'm' => 60,
            's' => 1,
            _ => return Err(format!("unknown duration unit `{c}`")),
        };
        let n: u64 = number.parse().map_err(|_| format!("`{text}` is too large"))?;
        total = n
            .checked_mul(factor)
            .and_then(|s| total.checked_add(s))
            .ok_or_else(|| format!("`{text}` is too long a duration"))?;
        number.clear();
    }
    Ok(total)
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn escapes_decode() {
        assert_eq!(decode_string(r#"a\n\"b\"\t\u{e9}"#, false).unwrap(), "a\n\"b\"\té");
        assert!(decode_string(r"\q", false).unwrap_err().contains("unknown escape"));
    }

    #[test]
    fn triple_strings_dedent() {
        let raw = "\n    first\n      second\n\n    third\n    ";
        assert_eq!(decode_string(raw, true).unwrap(), "first\n  second\n\nthird");
        assert_eq!(decode_string("one line", true).unwrap(), "one line");
        assert_eq!(decode_string("\n  a \\\n    b\n  ", true).unwrap(), "a b");
        // A blank line of non-ASCII whitespace must not be cut inside a character.
        assert_eq!(decode_string("\n a\n\u{a0}\n", true).unwrap(), "a\n\u{a0}");
        assert_eq!(decode_string("\r\n  a\r\n  b\r\n  ", true).unwrap(), "a\nb");
        assert!(decode_string("\\u{42", false).is_err());
        assert!(decode_string("\\u{+41}", false).is_err());
    }

    #[test]
    fn units_decode() {
        assert_eq!(parse_size("40GiB").unwrap(), 40 << 30);
        assert_eq!(parse_size("1.5KiB").unwrap(), 1536);
        assert_eq!(parse_size("2GB").unwrap(), 2_000_000_000);
        assert_eq!(parse_duration("5h").unwrap(), 18_000);
        assert_eq!(parse_duration("1h30m").unwrap(), 5_400);
        assert_eq!(parse_duration("2d").unwrap(), 172_800);
        assert_eq!(parse_money("$150").unwrap(), 150.0);
        assert_eq!(parse_money("$1.25").unwrap(), 1.25);
        assert_eq!(parse_int("10_000").unwrap(), 10_000);
        assert_eq!(parse_float("2e-4").unwrap(), 2e-4);
        assert!(parse_int("99999999999999999999").is_err());
        assert!(parse_duration("99999999999999999999d").is_err());
    }
}

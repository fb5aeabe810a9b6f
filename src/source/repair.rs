//! Value-level failure isolation for JSON bodies. serde_json rejects a whole
//! document for one value it cannot represent: a number beyond f64 (`1e400`,
//! a 100,000-digit integer), a bare `NaN` or `Infinity` (not JSON, but some
//! servers write them), a lone UTF-16 surrogate escape (`"\ud800"`), or a
//! byte that is not UTF-8. One such value must cost one market, not the poll.
//!
//! So when a body fails to parse, [`repair`] rewrites exactly those tokens
//! into JSON that parses, and the parse is tried once more:
//! - a number that does not fit an f64, or is malformed (`1.2.3`, `01`),
//!   becomes a string holding the same text, which [`super::de::number`]
//!   reads as infinite or as not-a-number, so validation drops and counts
//!   that one value (`values_rejected_total{reason="infinite"|"nan"}`);
//! - bare `NaN`, `Infinity`, `-Infinity` become the strings `"NaN"`, ...;
//! - a lone surrogate escape becomes `\ufffd`, and invalid UTF-8 becomes
//!   U+FFFD: the key or value no longer matches anything sane and is
//!   rejected by the source's own checks (`invalid_key` for a market key).
//!
//! The repair runs only after a failed parse, so the fast path costs nothing.

use serde::Deserialize;

/// Parses `body`; if that fails and [`repair`] changes something, parses the
/// repaired copy (kept in `scratch`, which the result may borrow from).
pub fn from_slice<'a, T: Deserialize<'a>>(
    body: &'a [u8],
    scratch: &'a mut Option<Vec<u8>>,
) -> Result<T, serde_json::Error> {
    match serde_json::from_slice(body) {
        Ok(v) => Ok(v),
        Err(e) => match repair(body) {
            Some(fixed) => serde_json::from_slice(Option::insert(scratch, fixed)),
            None => Err(e),
        },
    }
}

/// Runs `attempt` on `body`; if it fails and [`repair`] changes something,
/// runs it once more on the repaired copy. For streaming parsers, `attempt`
/// starts from a fresh sink each time, so nothing is counted twice.
pub fn retry<T>(
    body: &[u8],
    mut attempt: impl FnMut(&[u8]) -> Result<T, serde_json::Error>,
) -> Result<T, serde_json::Error> {
    match attempt(body) {
        Ok(v) => Ok(v),
        Err(e) => match repair(body) {
            Some(fixed) => attempt(&fixed),
            None => Err(e),
        },
    }
}

/// The body with unrepresentable values rewritten (see the module docs), or
/// `None` when there is nothing of the kind to rewrite.
pub fn repair(body: &[u8]) -> Option<Vec<u8>> {
    let lossy;
    let (text, mut changed) = match std::str::from_utf8(body) {
        Ok(t) => (t, false),
        Err(_) => {
            lossy = String::from_utf8_lossy(body);
            (lossy.as_ref(), true)
        }
    };
    let bytes = text.as_bytes();
    let mut out = Vec::with_capacity(bytes.len() + 64);
    let mut i = 0;
    while i < bytes.len() {
        let b = bytes[i];
        match b {
            b'"' => {
                let end = copy_string(bytes, i, &mut out, &mut changed);
                i = end;
            }
            b'-' | b'+' | b'0'..=b'9' | b'.' => {
                let end = token_end(bytes, i);
                let token = &text[i..end];
                if let Some(word) = bare_word(token) {
                    push_quoted(&mut out, word);
                    changed = true;
                } else if valid_json_number(token) && token.parse::<f64>().is_ok_and(f64::is_finite)
                {
                    out.extend_from_slice(token.as_bytes());
                } else {
                    push_quoted(&mut out, token);
                    changed = true;
                }
                i = end;
            }
            b'A'..=b'Z' | b'a'..=b'z' => {
                let end = token_end(bytes, i);
                let token = &text[i..end];
                match bare_word(token) {
                    Some(word) => {
                        push_quoted(&mut out, word);
                        changed = true;
                    }
                    None => out.extend_from_slice(token.as_bytes()),
                }
                i = end;
            }
            _ => {
                out.push(b);
                i += 1;
            }
        }
    }
    changed.then_some(out)
}

/// Copies the string starting at `start` (a `"`) to `out`, replacing lone
/// surrogate escapes; returns the index after its closing quote.
fn copy_string(bytes: &[u8], start: usize, out: &mut Vec<u8>, changed: &mut bool) -> usize {
    out.push(b'"');
    let mut i = start + 1;
    while i < bytes.len() {
        match bytes[i] {
            b'"' => {
                out.push(b'"');
                return i + 1;
            }
            b'\\' if bytes.get(i + 1) == Some(&b'u') => {
                let Some(unit) = hex4(bytes, i + 2) else {
                    out.push(b'\\');
                    i += 1;
                    continue;
                };
                let high = (0xD800..0xDC00).contains(&unit);
                let low = (0xDC00..0xE000).contains(&unit);
                let paired = high
                    && bytes.get(i + 6) == Some(&b'\\')
                    && bytes.get(i + 7) == Some(&b'u')
                    && hex4(bytes, i + 8).is_some_and(|u| (0xDC00..0xE000).contains(&u));
                if paired {
                    out.extend_from_slice(&bytes[i..i + 12]);
                    i += 12;
                } else if high || low {
                    out.extend_from_slice(b"\\ufffd");
                    *changed = true;
                    i += 6;
                } else {
                    out.extend_from_slice(&bytes[i..i + 6]);
                    i += 6;
                }
            }
            b'\\' => {
                out.push(b'\\');
                if let Some(&next) = bytes.get(i + 1) {
                    out.push(next);
                }
                i += 2;
            }
            b => {
                out.push(b);
                i += 1;
            }
        }
    }
    i
}

fn hex4(bytes: &[u8], at: usize) -> Option<u32> {
    let digits = bytes.get(at..at + 4)?;
    let text = std::str::from_utf8(digits).ok()?;
    u32::from_str_radix(text, 16).ok()
}

/// The end of a run of number-ish or word characters.
fn token_end(bytes: &[u8], start: usize) -> usize {
    let mut i = start;
    while i < bytes.len()
        && (bytes[i].is_ascii_alphanumeric() || matches!(bytes[i], b'-' | b'+' | b'.'))
    {
        i += 1;
    }
    i.max(start + 1)
}

/// The string a bare non-JSON float word stands for, if `token` is one.
fn bare_word(token: &str) -> Option<&'static str> {
    match token.to_ascii_lowercase().as_str() {
        "nan" | "-nan" | "+nan" => Some("NaN"),
        "infinity" | "+infinity" | "inf" | "+inf" => Some("inf"),
        "-infinity" | "-inf" => Some("-inf"),
        _ => None,
    }
}

/// JSON's number grammar: `-?(0|[1-9][0-9]*)(\.[0-9]+)?([eE][+-]?[0-9]+)?`.
fn valid_json_number(t: &str) -> bool {
    let b = t.as_bytes();
    let mut i = usize::from(b.first() == Some(&b'-'));
    let digits = |i: &mut usize| {
        let s = *i;
        while *i < b.len() && b[*i].is_ascii_digit() {
            *i += 1;
        }
        *i > s
    };
    match b.get(i) {
        Some(b'0') => i += 1,
        Some(b'1'..=b'9') => {
            digits(&mut i);
        }
        _ => return false,
    }
    if b.get(i) == Some(&b'.') {
        i += 1;
        if !digits(&mut i) {
            return false;
        }
    }
    if matches!(b.get(i), Some(b'e' | b'E')) {
        i += 1;
        if matches!(b.get(i), Some(b'+' | b'-')) {
            i += 1;
        }
        if !digits(&mut i) {
            return false;
        }
    }
    i == b.len()
}

fn push_quoted(out: &mut Vec<u8>, s: &str) {
    out.push(b'"');
    out.extend_from_slice(s.as_bytes());
    out.push(b'"');
}

#[cfg(test)]
mod tests {
    use super::*;

    fn fixed(s: &str) -> String {
        String::from_utf8(repair(s.as_bytes()).expect("something to repair")).unwrap()
    }

    #[test]
    fn rewrites_only_what_json_cannot_hold() {
        assert_eq!(
            fixed(r#"{"a":1e400,"b":2.5,"c":-1e-5}"#),
            r#"{"a":"1e400","b":2.5,"c":-1e-5}"#
        );
        assert_eq!(
            fixed(r#"[NaN, Infinity, -Infinity, 1]"#),
            r#"["NaN", "inf", "-inf", 1]"#
        );
        assert_eq!(fixed(r#"{"x":1.2.3}"#), r#"{"x":"1.2.3"}"#);
        assert_eq!(fixed(r#"{"x":01}"#), r#"{"x":"01"}"#);
        let huge = format!(r#"{{"v":{}}}"#, "9".repeat(100_000));
        assert!(fixed(&huge).starts_with(r#"{"v":"999"#));
        // Lone surrogates, high or low; a proper pair and other escapes stay.
        assert_eq!(fixed(r#"{"k\ud800:x":1}"#), r#"{"k\ufffd:x":1}"#);
        assert_eq!(
            fixed(r#"["\udc00", "\ud83d\ude00", "\u0041", "\\ud800"]"#),
            r#"["\ufffd", "\ud83d\ude00", "\u0041", "\\ud800"]"#
        );
        // Invalid UTF-8 becomes U+FFFD.
        let bad = [b'[', b'"', 0xff, b'"', b']'];
        assert_eq!(repair(&bad).unwrap(), "[\"\u{fffd}\"]".as_bytes());
    }

    #[test]
    fn leaves_valid_json_alone() {
        assert_eq!(
            repair(br#"{"a":[1,-2.5e10,true,false,null,"NaN 1e400 \ud83d\ude00"]}"#),
            None
        );
        assert_eq!(repair(b""), None);
    }

    #[test]
    fn the_repaired_body_parses_where_the_original_did_not() {
        for body in [r#"{"v":[1e400]}"#, r#"{"v":[NaN]}"#, r#"{"v":["\ud800"]}"#] {
            assert!(
                serde_json::from_str::<serde_json::Value>(body).is_err(),
                "{body}"
            );
            let mut scratch = None;
            let v: serde_json::Value = from_slice(body.as_bytes(), &mut scratch).unwrap();
            assert!(v["v"][0].is_string(), "{body}: {v}");
        }
    }
}

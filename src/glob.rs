//! Shell-style glob patterns (`*` and `?`) for the exchange/pair filters.
//!
//! Hand-written rather than pulling in `globset`/`regex`: the filters only
//! need two metacharacters, and label values are short.

/// A compiled glob. Matching is case-sensitive, like Prometheus label matching.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Glob(String);

impl Glob {
    /// Accepts any pattern; an empty pattern matches only the empty string.
    pub fn new(pattern: &str) -> Self {
        Self(pattern.to_owned())
    }

    pub fn as_str(&self) -> &str {
        &self.0
    }

    /// Iterative wildcard matching with single-star backtracking: linear in
    /// practice, and never recursive, so hostile patterns cannot blow the stack.
    pub fn matches(&self, text: &str) -> bool {
        let p: Vec<char> = self.0.chars().collect();
        let t: Vec<char> = text.chars().collect();
        let (mut pi, mut ti) = (0, 0);
        let mut star: Option<(usize, usize)> = None;
        while ti < t.len() {
            match p.get(pi) {
                Some('*') => {
                    star = Some((pi, ti));
                    pi += 1;
                }
                Some(&c) if c == '?' || c == t[ti] => {
                    pi += 1;
                    ti += 1;
                }
                _ => match star {
                    Some((sp, st)) => {
                        pi = sp + 1;
                        ti = st + 1;
                        star = Some((sp, st + 1));
                    }
                    None => return false,
                },
            }
        }
        p[pi..].iter().all(|&c| c == '*')
    }
}

#[cfg(test)]
mod tests {
    use super::Glob;

    #[test]
    fn matching() {
        let cases = [
            ("*", "anything", true),
            ("*", "", true),
            ("btc*", "btcusd", true),
            ("btc*", "ethbtc", false),
            ("*usd", "btcusd", true),
            ("*usd*", "btcusdt-perpetual-futures", true),
            ("b?c*", "bxcusd", true),
            ("kraken", "kraken-futures", false),
            ("kraken*", "kraken-futures", true),
            ("a*b*c", "axxbyyc", true),
            ("a*b*c", "axxbyy", false),
            ("", "", true),
            ("", "x", false),
        ];
        for (pattern, text, want) in cases {
            assert_eq!(
                Glob::new(pattern).matches(text),
                want,
                "{pattern} vs {text}"
            );
        }
    }
}

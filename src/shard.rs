//! Slices of `/metrics` for sharded scraping: `/metrics?shard=i&shards=n` serves
//! the markets whose pair hashes to slice `i` of `n` (`--web.shards`), so `n`
//! Prometheus servers (or agents) share one exporter, and one set of upstream
//! calls, without scraping a market twice. Markets are sliced by pair, not by
//! exchange and pair, so every exchange's quote of a pair lands in the same slice
//! and the cross-exchange median and divergence stay local to one shard.
//!
//! Slices are rendered at poll time with everything else, so serving one is the
//! same memory copy as serving the whole body.

/// Most slices `--web.shards` accepts.
pub const MAX_SHARDS: usize = 256;

/// The slice of `pair` among `shards`: FNV-1a (64-bit) of the pair's bytes, modulo
/// the count. Stable across runs, versions and machines.
pub fn of(pair: &str, shards: usize) -> usize {
    if shards <= 1 {
        return 0;
    }
    let mut h: u64 = 0xcbf2_9ce4_8422_2325;
    for b in pair.bytes() {
        h ^= u64::from(b);
        h = h.wrapping_mul(0x0000_0100_0000_01b3);
    }
    // The remainder is below `shards`, which is a usize.
    usize::try_from(h % shards as u64).unwrap_or(0)
}

/// What a `/metrics` request asks for.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Request {
    /// Every market (no `shard`/`shards` parameter).
    All,
    /// Slice `index` of the configured slices.
    Slice(usize),
}

/// Reads `shard` and `shards` from a query string. Both or neither; `shards` must
/// be the configured count, so a scrape config and the exporter that disagree
/// fail loudly instead of dropping or doubling markets. Other parameters are
/// ignored. The error is one line naming the culprit.
pub fn parse_query(query: Option<&str>, configured: usize) -> Result<Request, String> {
    let (mut shard, mut shards) = (None, None);
    for pair in query.unwrap_or("").split('&').filter(|p| !p.is_empty()) {
        let (key, value) = pair.split_once('=').unwrap_or((pair, ""));
        let slot = match key {
            "shard" => &mut shard,
            "shards" => &mut shards,
            _ => continue,
        };
        if slot.is_some() {
            return Err(format!("query parameter {key:?} given twice"));
        }
        *slot = Some(value);
    }
    let number = |key: &str, value: &str| {
        value
            .parse::<usize>()
            .map_err(|_| format!("query parameter {key:?} must be a whole number, got {value:?}"))
    };
    match (shard, shards) {
        (None, None) => Ok(Request::All),
        (Some(_), None) => Err("query parameter \"shard\" needs \"shards\" too".to_owned()),
        (None, Some(_)) => Err("query parameter \"shards\" needs \"shard\" too".to_owned()),
        (Some(i), Some(n)) => {
            let (i, n) = (number("shard", i)?, number("shards", n)?);
            if n != configured {
                Err(format!(
                    "shards={n}, but this exporter serves {configured} slice(s) (--web.shards); scrape with shards={configured}"
                ))
            } else if i >= n {
                Err(format!(
                    "shard={i} is out of range: slices are 0 to {}",
                    n - 1
                ))
            } else {
                Ok(Request::Slice(i))
            }
        }
    }
}

#[cfg(test)]
#[allow(clippy::unwrap_used)] // test code
mod tests {
    use super::*;

    #[test]
    fn every_pair_lands_in_exactly_one_slice_and_slices_are_balanced() {
        let pairs: Vec<String> = (0..10_000).map(|i| format!("p{i}usd")).collect();
        for n in 1..=8 {
            let mut counts = vec![0usize; n];
            for p in &pairs {
                let s = of(p, n);
                assert!(s < n);
                assert_eq!(s, of(p, n), "stable");
                counts[s] += 1;
            }
            // A hash, not a sort: every slice gets its share, give or take.
            let share = pairs.len() / n;
            assert!(
                counts
                    .iter()
                    .all(|&c| c > share * 8 / 10 && c < share * 12 / 10),
                "{n}: {counts:?}"
            );
        }
    }

    #[test]
    fn fnv1a_is_the_documented_hash() {
        // FNV-1a 64 of "a" is 0xaf63dc4c8601ec8c (the reference test vector).
        assert_eq!(
            of("a", usize::MAX),
            (0xaf63_dc4c_8601_ec8c_u64 % usize::MAX as u64) as usize
        );
    }

    #[test]
    fn queries_name_their_culprit() {
        assert_eq!(parse_query(None, 4), Ok(Request::All));
        assert_eq!(parse_query(Some("x=1"), 4), Ok(Request::All));
        assert_eq!(
            parse_query(Some("shard=3&shards=4"), 4),
            Ok(Request::Slice(3))
        );
        assert_eq!(
            parse_query(Some("shards=1&shard=0"), 1),
            Ok(Request::Slice(0))
        );
        for (q, want) in [
            (
                "shard=4&shards=4",
                "shard=4 is out of range: slices are 0 to 3",
            ),
            (
                "shard=0&shards=3",
                "shards=3, but this exporter serves 4 slice(s) (--web.shards); scrape with shards=4",
            ),
            ("shard=0", "query parameter \"shard\" needs \"shards\" too"),
            ("shards=4", "query parameter \"shards\" needs \"shard\" too"),
            (
                "shard=a&shards=4",
                "query parameter \"shard\" must be a whole number, got \"a\"",
            ),
            (
                "shard=0&shard=1&shards=4",
                "query parameter \"shard\" given twice",
            ),
        ] {
            assert_eq!(parse_query(Some(q), 4), Err(want.to_owned()), "{q}");
        }
    }
}

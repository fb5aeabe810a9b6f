//! Parsing of the human-friendly units used in flags and config files:
//! Prometheus-style durations (`90s`, `1h30m`, `250ms`) and byte sizes (`64MiB`).
//!
//! Both are parsed at the edge so the rest of the crate only ever sees
//! `Duration` and `u64`.

use std::time::Duration;

/// Parses a Prometheus-style duration: one or more `<integer><unit>` terms with
/// units `ms`, `s`, `m`, `h`, `d`, `w` in decreasing order, e.g. `1h30m`.
pub fn parse_duration(input: &str) -> Result<Duration, String> {
    let s = input.trim();
    if s.is_empty() {
        return Err("empty duration".to_owned());
    }
    let bad = || format!("invalid duration {input:?} (expected e.g. 250ms, 30s, 5m, 1h30m)");
    let mut total: u128 = 0;
    let mut rest = s;
    let mut last_rank = usize::MAX;
    while !rest.is_empty() {
        let digits = rest.bytes().take_while(u8::is_ascii_digit).count();
        if digits == 0 {
            return Err(bad());
        }
        let value: u128 = rest[..digits].parse().map_err(|_| bad())?;
        rest = &rest[digits..];
        let unit_len = rest.bytes().take_while(u8::is_ascii_alphabetic).count();
        let (millis, rank) = match &rest[..unit_len] {
            "w" => (604_800_000, 6),
            "d" => (86_400_000, 5),
            "h" => (3_600_000, 4),
            "m" => (60_000, 3),
            "s" => (1_000, 2),
            "ms" => (1, 1),
            _ => return Err(bad()),
        };
        if rank >= last_rank {
            return Err(bad());
        }
        last_rank = rank;
        rest = &rest[unit_len..];
        total = total
            .checked_add(value.checked_mul(millis).ok_or_else(bad)?)
            .ok_or_else(bad)?;
    }
    let millis = u64::try_from(total).map_err(|_| bad())?;
    Ok(Duration::from_millis(millis))
}

/// Parses a byte size: a plain integer, or an integer with one of the suffixes
/// `B`, `KB`, `MB`, `GB` (powers of 1000) or `KiB`, `MiB`, `GiB` (powers of 1024).
pub fn parse_bytes(input: &str) -> Result<u64, String> {
    let s = input.trim();
    let bad = || format!("invalid size {input:?} (expected e.g. 65536, 512KiB, 64MiB)");
    let digits = s.bytes().take_while(u8::is_ascii_digit).count();
    if digits == 0 {
        return Err(bad());
    }
    let value: u64 = s[..digits].parse().map_err(|_| bad())?;
    let factor: u64 = match s[digits..].trim() {
        "" | "B" => 1,
        "KB" => 1_000,
        "MB" => 1_000_000,
        "GB" => 1_000_000_000,
        "KiB" => 1 << 10,
        "MiB" => 1 << 20,
        "GiB" => 1 << 30,
        _ => return Err(bad()),
    };
    value.checked_mul(factor).ok_or_else(bad)
}

/// Formats a duration the way `parse_duration` reads it, for log lines and docs.
pub fn format_duration(d: Duration) -> String {
    let ms = d.as_millis();
    if ms % 1000 != 0 {
        return format!("{ms}ms");
    }
    let mut secs = ms / 1000;
    if secs == 0 {
        return "0s".to_owned();
    }
    let mut out = String::new();
    for (unit, size) in [("h", 3600), ("m", 60), ("s", 1)] {
        if secs >= size {
            out.push_str(&format!("{}{unit}", secs / size));
            secs %= size;
        }
    }
    out
}

/// Unix seconds as RFC 3339 in UTC (`2026-09-03T18:07:00Z`), the form
/// Coinbase's candle endpoint takes: the civil date from days since the
/// epoch (Howard Hinnant's `civil_from_days`).
pub fn format_rfc3339(unix: i64) -> String {
    let (days, secs) = (unix.div_euclid(86_400), unix.rem_euclid(86_400));
    let z = days + 719_468;
    let era = z.div_euclid(146_097);
    let doe = z.rem_euclid(146_097);
    let yoe = (doe - doe / 1_460 + doe / 36_524 - doe / 146_096) / 365;
    let doy = doe - (365 * yoe + yoe / 4 - yoe / 100);
    let mp = (5 * doy + 2) / 153;
    let day = doy - (153 * mp + 2) / 5 + 1;
    let month = if mp < 10 { mp + 3 } else { mp - 9 };
    let year = yoe + era * 400 + i64::from(month <= 2);
    format!(
        "{year:04}-{month:02}-{day:02}T{:02}:{:02}:{:02}Z",
        secs / 3_600,
        secs / 60 % 60,
        secs % 60
    )
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn rfc3339() {
        assert_eq!(format_rfc3339(0), "1970-01-01T00:00:00Z");
        assert_eq!(format_rfc3339(1_788_458_820), "2026-09-03T18:07:00Z");
        assert_eq!(format_rfc3339(951_782_400), "2000-02-29T00:00:00Z");
        assert_eq!(format_rfc3339(-1), "1969-12-31T23:59:59Z");
    }

    #[test]
    fn durations() {
        assert_eq!(parse_duration("60s"), Ok(Duration::from_secs(60)));
        assert_eq!(parse_duration("1h30m"), Ok(Duration::from_secs(5400)));
        assert_eq!(parse_duration("250ms"), Ok(Duration::from_millis(250)));
        assert_eq!(parse_duration("1d"), Ok(Duration::from_secs(86_400)));
        for bad in ["", "10", "s", "1x", "30m1h", "1s1s", "-1s", "1.5s"] {
            assert!(parse_duration(bad).is_err(), "{bad:?} should be rejected");
        }
    }

    #[test]
    fn sizes() {
        assert_eq!(parse_bytes("64MiB"), Ok(64 << 20));
        assert_eq!(parse_bytes("1000"), Ok(1000));
        assert_eq!(parse_bytes("2KB"), Ok(2000));
        for bad in ["", "MiB", "1TB", "-1", "99999999999999999999GiB"] {
            assert!(parse_bytes(bad).is_err(), "{bad:?} should be rejected");
        }
    }

    #[test]
    fn format_round_trips() {
        for s in ["1h30m", "250ms", "45s", "2h"] {
            assert_eq!(format_duration(parse_duration(s).unwrap()), s);
        }
    }
}

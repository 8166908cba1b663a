//! Human-readable byte sizes: `16G`, `512M`, `1.5G`, `4096` (bytes). Powers of 1024.

/// Parse a size such as `16G`, `512MiB`, `1.5g` or `1073741824`.
pub fn parse_size(input: &str) -> Result<u64, String> {
    let s = input.trim();
    let split = s.find(|c: char| !(c.is_ascii_digit() || c == '.')).unwrap_or(s.len());
    let (num, unit) = s.split_at(split);
    let expected = "expected a size such as 16G, 512M or 1T";
    if num.is_empty() {
        return Err(format!("{input:?} is not a size: {expected}"));
    }
    let shift = match unit.trim().to_ascii_lowercase().as_str() {
        "" | "b" => 0,
        "k" | "kb" | "kib" => 10,
        "m" | "mb" | "mib" => 20,
        "g" | "gb" | "gib" => 30,
        "t" | "tb" | "tib" => 40,
        other => {
            return Err(format!("{input:?} has an unknown unit {other:?}: {expected}"));
        }
    };
    let value: f64 = num.parse().map_err(|_| format!("{input:?} is not a size: {expected}"))?;
    let bytes = value * (1u64 << shift) as f64;
    if !bytes.is_finite() || bytes >= u64::MAX as f64 {
        return Err(format!("{input:?} is too large"));
    }
    if num.contains('.') && shift == 0 {
        return Err(format!("{input:?} is not a whole number of bytes"));
    }
    Ok(bytes as u64)
}

/// Format bytes compactly: `16G`, `1.5G`, `512M`, `100K`, `12B`.
/// `3725.4` seconds → `1h 2m 5s` (seconds are dropped past a day).
pub fn format_duration(secs: f64) -> String {
    let s = secs as u64;
    match (s / 86400, s / 3600 % 24, s / 60 % 60, s % 60) {
        (0, 0, 0, s) => format!("{s}s"),
        (0, 0, m, s) => format!("{m}m {s}s"),
        (0, h, m, s) => format!("{h}h {m}m {s}s"),
        (d, h, m, _) => format!("{d}d {h}h {m}m"),
    }
}

pub fn format_size(bytes: u64) -> String {
    const UNITS: [(&str, u32); 4] = [("T", 40), ("G", 30), ("M", 20), ("K", 10)];
    for (unit, shift) in UNITS {
        let base = 1u64 << shift;
        if bytes >= base {
            let v = bytes as f64 / base as f64;
            return if bytes.is_multiple_of(base) {
                format!("{}{unit}", bytes / base)
            } else {
                format!("{v:.1}{unit}")
            };
        }
    }
    format!("{bytes}B")
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn parses_units() {
        assert_eq!(parse_size("16G").unwrap(), 16 << 30);
        assert_eq!(parse_size("512M").unwrap(), 512 << 20);
        assert_eq!(parse_size("512MiB").unwrap(), 512 << 20);
        assert_eq!(parse_size("1.5g").unwrap(), 3 << 29);
        assert_eq!(parse_size("4096").unwrap(), 4096);
        assert_eq!(parse_size(" 2 T ").unwrap(), 2 << 40);
    }

    #[test]
    fn rejects_garbage_with_a_reason() {
        for bad in ["", "G", "12X", "-1G", "1.5", "abc", "99999999999T"] {
            let err = parse_size(bad).unwrap_err();
            assert!(err.contains(&format!("{bad:?}")) || err.contains("too large"), "{bad}: {err}");
        }
    }

    #[test]
    fn formats_round_trip() {
        for s in ["16G", "512M", "1T", "100K", "12B", "1.5G"] {
            assert_eq!(format_size(parse_size(s).unwrap()), s);
        }
    }
}

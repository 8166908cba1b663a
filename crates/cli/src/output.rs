//! Printing: aligned tables for people, JSON for scripts.

use serde::Serialize;

/// Print `value` as JSON (one line; pipe through `jq` to read it) on stdout.
pub fn json<T: Serialize + ?Sized>(value: &T) {
    match serde_json::to_string(value) {
        Ok(s) => println!("{s}"),
        Err(e) => eprintln!("banger: error: cannot encode JSON: {e}"),
    }
}

/// Print a JSON document exactly as the daemon sent it (no decode/encode round trip).
pub fn json_raw(bytes: &[u8]) {
    use std::io::Write;
    let mut out = std::io::stdout().lock();
    let _ = out.write_all(bytes).and_then(|()| out.write_all(b"\n"));
}

/// Left-aligned columns separated by two spaces; the header is printed as given.
pub fn table(header: &[&str], rows: &[Vec<String>]) {
    print!("{}", render_table(header, rows));
}

pub fn render_table(header: &[&str], rows: &[Vec<String>]) -> String {
    let mut widths: Vec<usize> = header.iter().map(|h| h.chars().count()).collect();
    for row in rows {
        for (i, cell) in row.iter().enumerate() {
            if i < widths.len() {
                widths[i] = widths[i].max(cell.chars().count());
            }
        }
    }
    let mut out = String::new();
    let mut line = |cells: Vec<&str>| {
        let last = cells.len().saturating_sub(1);
        for (i, cell) in cells.iter().enumerate() {
            out.push_str(cell);
            if i < last {
                out.push_str(&" ".repeat(widths[i] - cell.chars().count() + 2));
            }
        }
        out.push('\n');
    };
    line(header.to_vec());
    for row in rows {
        line(row.iter().map(String::as_str).collect());
    }
    out
}

/// Two-column "key: value" block.
pub fn pairs(rows: &[(&str, String)]) {
    let width = rows.iter().map(|(k, _)| k.len()).max().unwrap_or(0);
    for (k, v) in rows {
        println!("{k:<width$}  {v}", width = width + 1, k = format!("{k}:"));
    }
}

/// `3725.4` seconds → `1h 2m 5s`.
pub fn duration(secs: f64) -> String {
    let s = secs as u64;
    match (s / 86400, s / 3600 % 24, s / 60 % 60, s % 60) {
        (0, 0, 0, s) => format!("{s}s"),
        (0, 0, m, s) => format!("{m}m {s}s"),
        (0, h, m, s) => format!("{h}h {m}m {s}s"),
        (d, h, m, _) => format!("{d}d {h}h {m}m"),
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn table_columns_align() {
        let t = render_table(
            &["NAME", "STATE"],
            &[vec!["calm-otter".into(), "running".into()], vec!["x".into(), "stopped".into()]],
        );
        assert_eq!(t, "NAME        STATE\ncalm-otter  running\nx           stopped\n");
    }

    #[test]
    fn durations_read_naturally() {
        assert_eq!(duration(5.9), "5s");
        assert_eq!(duration(125.0), "2m 5s");
        assert_eq!(duration(3725.4), "1h 2m 5s");
        assert_eq!(duration(90061.0), "1d 1h 1m");
    }
}

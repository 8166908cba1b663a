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
    print!("{}", render_pairs(rows));
}

/// `key:  value` lines with the values aligned.
pub fn render_pairs(rows: &[(&str, String)]) -> String {
    let width = rows.iter().map(|(k, _)| k.len()).max().unwrap_or(0) + 1;
    rows.iter().map(|(k, v)| format!("{:<width$}  {v}\n", format!("{k}:"))).collect()
}

/// A Unix time as local wall-clock `HH:MM:SS.mmm` (UTC when the zone is unknown).
pub fn clock(unix: f64) -> String {
    let secs = unix.floor() as i64;
    let millis = ((unix - unix.floor()) * 1000.0) as u32;
    let offset = nix_localtime_offset(secs);
    let day = (secs + offset).rem_euclid(86400);
    format!("{:02}:{:02}:{:02}.{millis:03}", day / 3600, day / 60 % 60, day % 60)
}

/// Seconds east of UTC at `unix` (0 when unknown).
fn nix_localtime_offset(unix: i64) -> i64 {
    // SAFETY: localtime_r writes into the struct we own; time_t is i64 on our targets.
    unsafe {
        let mut tm: libc::tm = std::mem::zeroed();
        let t: libc::time_t = unix as libc::time_t;
        if libc::localtime_r(&t, &mut tm).is_null() { 0 } else { tm.tm_gmtoff as i64 }
    }
}

/// `3725.4` seconds → `1h 2m 5s`.
pub fn duration(secs: f64) -> String {
    banger_config::size::format_duration(secs)
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
    fn clock_shows_time_of_day_with_millis() {
        let c = clock(86400.0 * 3.0 + 3725.25);
        assert_eq!(c.len(), "01:02:05.250".len(), "{c}");
        assert!(c.ends_with(":05.250"), "{c}");
    }

    #[test]
    fn durations_read_naturally() {
        assert_eq!(duration(5.9), "5s");
        assert_eq!(duration(125.0), "2m 5s");
        assert_eq!(duration(3725.4), "1h 2m 5s");
        assert_eq!(duration(90061.0), "1d 1h 1m");
    }
}

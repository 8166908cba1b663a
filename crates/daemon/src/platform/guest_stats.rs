//! What `vm stats` reads inside a guest: one fixed command (no user input) run over a one-shot
//! SSH session with the VM's pinned key, and the parser of its output. `/proc` gives memory,
//! load and uptime; `df` gives `/` and `/root` (labelled by the order they are asked for, so a
//! `/root` that is not its own mount still shows).

use banger_api::response::{FsStats, GuestStats};

/// Sections are marked so a missing piece cannot shift the others.
pub const COMMAND: &str = "echo @mem; cat /proc/meminfo; echo @load; cat /proc/loadavg; echo @up; cat /proc/uptime; \
                           echo @df; df -B1 --output=target,size,used,avail / /root";

/// Parse [`COMMAND`]'s output; `sampled_at` is when it was asked.
pub fn parse(out: &str, sampled_at: f64) -> Result<GuestStats, String> {
    let mut section = "";
    let (mut total, mut available) = (None, None);
    let (mut load, mut uptime) = (None, None);
    let mut filesystems = Vec::new();
    for line in out.lines() {
        if let Some(s) = line.strip_prefix('@') {
            section = match s.trim() {
                "mem" => "mem",
                "load" => "load",
                "up" => "up",
                "df" => "df",
                _ => "",
            };
            continue;
        }
        let words: Vec<&str> = line.split_whitespace().collect();
        match (section, words.as_slice()) {
            ("mem", [key, kb, ..]) => {
                let bytes = kb.parse::<u64>().ok().map(|k| k * 1024);
                match *key {
                    "MemTotal:" => total = bytes,
                    "MemAvailable:" => available = bytes,
                    _ => {}
                }
            }
            ("load", [a, b, c, ..]) => {
                load = (|| Some([a.parse().ok()?, b.parse().ok()?, c.parse().ok()?]))();
            }
            ("up", [up, ..]) => uptime = up.parse::<f64>().ok(),
            ("df", [_, size, used, avail]) => {
                if let (Ok(size), Ok(used), Ok(available)) = (size.parse(), used.parse(), avail.parse()) {
                    let mount = if filesystems.is_empty() { "/" } else { "/root" };
                    if filesystems.len() < 2 {
                        filesystems.push(FsStats { mount: mount.into(), size, used, available });
                    }
                }
            }
            _ => {}
        }
    }
    let (Some(mem_total), Some(mem_available)) = (total, available) else {
        return Err("the guest's /proc/meminfo could not be read".into());
    };
    Ok(GuestStats {
        sampled_at,
        mem_total,
        mem_available,
        mem_used: mem_total.saturating_sub(mem_available),
        load: load.ok_or("the guest's /proc/loadavg could not be read")?,
        uptime_secs: uptime.ok_or("the guest's /proc/uptime could not be read")?,
        filesystems,
    })
}

#[cfg(test)]
mod tests {
    use super::*;

    const SAMPLE: &str = "@mem\nMemTotal:        1004584 kB\nMemFree:          812344 kB\nMemAvailable:     850000 kB\n\
        Buffers:            1234 kB\n@load\n0.08 0.03 0.01 1/87 412\n@up\n12.34 10.01\n@df\nMounted on 1B-blocks Used Avail\n\
        /           4160655360 1150312448 2774310912\n/root       8350298112    2424832 7899590656\n";

    #[test]
    fn parses_memory_load_uptime_and_both_filesystems() {
        let g = parse(SAMPLE, 5.0).unwrap();
        assert_eq!((g.mem_total, g.mem_available), (1004584 * 1024, 850000 * 1024));
        assert_eq!(g.mem_used, (1004584 - 850000) * 1024);
        assert_eq!(g.load, [0.08, 0.03, 0.01]);
        assert_eq!(g.uptime_secs, 12.34);
        assert_eq!(g.filesystems.len(), 2);
        assert_eq!(
            g.filesystems[1],
            FsStats { mount: "/root".into(), size: 8350298112, used: 2424832, available: 7899590656 }
        );
        assert_eq!(g.sampled_at, 5.0);
    }

    #[test]
    fn a_root_that_is_not_its_own_mount_is_still_labelled_by_order() {
        let out = SAMPLE.replace("/root       ", "/           ");
        let g = parse(&out, 0.0).unwrap();
        assert_eq!(g.filesystems.iter().map(|f| f.mount.as_str()).collect::<Vec<_>>(), ["/", "/root"]);
    }

    #[test]
    fn missing_pieces_are_errors_not_zeros() {
        assert!(parse("", 0.0).unwrap_err().contains("meminfo"));
        let no_load = SAMPLE.replace("0.08 0.03 0.01 1/87 412", "");
        assert!(parse(&no_load, 0.0).unwrap_err().contains("loadavg"));
        // A section header with garbage does not shift values into another section.
        let shifted = SAMPLE.replace("@up\n12.34 10.01", "@up\n");
        assert!(parse(&shifted, 0.0).unwrap_err().contains("uptime"));
    }
}

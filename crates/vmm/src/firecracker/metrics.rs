//! `PUT /metrics` — definition `Metrics`.

use super::Resource;
use serde::{Deserialize, Serialize};
use std::path::PathBuf;

#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct Metrics {
    /// File (or named pipe) Firecracker flushes JSON metrics to; it must exist.
    pub metrics_path: PathBuf,
}

impl Resource for Metrics {
    fn path(&self) -> String {
        "/metrics".into()
    }
}

/// What a VM's Firecracker has counted since it started: the sums of every flush in its
/// metrics file (each flush holds the counts since the previous one).
#[derive(Debug, Clone, Default, PartialEq, Eq, Serialize, Deserialize)]
pub struct Totals {
    /// Flushes read, and when the last was written (ms since the Unix epoch).
    pub flushes: u64,
    pub last_flush_ms: Option<u64>,
    /// All block devices.
    pub block_read_bytes: u64,
    pub block_write_bytes: u64,
    pub block_reads: u64,
    pub block_writes: u64,
    /// Per drive id: (read bytes, written bytes).
    pub drives: std::collections::BTreeMap<String, (u64, u64)>,
    /// All network interfaces, the guest's side (rx: received by the guest).
    pub net_rx_bytes: u64,
    pub net_tx_bytes: u64,
    pub net_rx_packets: u64,
    pub net_tx_packets: u64,
}

/// What [`Reader::totals`] has summed of each metrics file so far: the VMM's pid, the read
/// offset and the sums (one entry per metrics file path, so per VM).
type Seen = std::collections::HashMap<std::path::PathBuf, (u32, u64, Totals)>;

/// A flush line longer than this is not Firecracker's (its own are a few KiB): skipped unread.
const MAX_LINE: usize = 64 << 10;
/// At most this much of a metrics file is read by one call (the rest by the next ones).
const MAX_READ: u64 = 64 << 20;

/// Sums a VM's metrics file as it grows (a flush a minute, a few KiB each, for as long as the VM
/// runs): each call reads only what was flushed since the last, so `vm stats` on a VM that has
/// run for months stays quick. The file is the VMM's user's to write: overlong lines are skipped
/// without being kept, a call reads at most 64 MiB, and sums saturate.
#[derive(Default)]
pub struct Reader(std::sync::Mutex<Seen>);

impl Reader {
    /// The totals of `file` (at `path`, of the VMM process `pid`), read from where the last call
    /// stopped; only complete lines count. Another pid, or a file shorter than the offset, starts
    /// over.
    pub fn totals(&self, path: &std::path::Path, pid: u32, file: std::fs::File) -> std::io::Result<Totals> {
        use std::io::{BufRead, Read, Seek, SeekFrom};
        // Taken out while it is read: other VMs' calls do not wait on this one.
        let seen = self.0.lock().unwrap_or_else(|e| e.into_inner()).remove(path);
        let (mut offset, mut t) = match seen {
            Some((p, offset, t)) if p == pid => (offset, t),
            _ => (0, Totals::default()),
        };
        let len = file.metadata()?.len();
        if len < offset {
            (offset, t) = (0, Totals::default());
        }
        let mut file = file;
        file.seek(SeekFrom::Start(offset))?;
        let mut reader = std::io::BufReader::new(file.take(MAX_READ));
        let (mut line, mut skipping, mut pending) = (Vec::new(), false, 0u64);
        loop {
            let buf = reader.fill_buf()?;
            if buf.is_empty() {
                break;
            }
            let (chunk, end) = match buf.iter().position(|&b| b == b'\n') {
                Some(i) => (&buf[..=i], true),
                None => (buf, false),
            };
            let n = chunk.len();
            if !skipping {
                if line.len() + n > MAX_LINE {
                    (skipping, line) = (true, Vec::new());
                } else {
                    line.extend_from_slice(chunk);
                }
            }
            pending += n as u64;
            reader.consume(n);
            if end {
                if !skipping {
                    t.add_line(&String::from_utf8_lossy(&line));
                }
                offset += pending;
                (line, skipping, pending) = (Vec::new(), false, 0);
            }
        }
        self.0.lock().unwrap_or_else(|e| e.into_inner()).insert(path.to_path_buf(), (pid, offset, t.clone()));
        Ok(t)
    }
}

impl Totals {
    /// Add one flush (a JSON line); anything else is skipped.
    pub fn add_line(&mut self, line: &str) {
        let t = self;
        let Ok(v) = serde_json::from_str::<serde_json::Value>(line.trim()) else { return };
        let Some(obj) = v.as_object() else { return };
        let n =
            |section: &str, key: &str| obj.get(section).and_then(|s| s.get(key)).and_then(|x| x.as_u64()).unwrap_or(0);
        t.flushes = t.flushes.saturating_add(1);
        t.last_flush_ms = obj.get("utc_timestamp_ms").and_then(|x| x.as_u64()).or(t.last_flush_ms);
        t.block_read_bytes = t.block_read_bytes.saturating_add(n("block", "read_bytes"));
        t.block_write_bytes = t.block_write_bytes.saturating_add(n("block", "write_bytes"));
        t.block_reads = t.block_reads.saturating_add(n("block", "read_count"));
        t.block_writes = t.block_writes.saturating_add(n("block", "write_count"));
        t.net_rx_bytes = t.net_rx_bytes.saturating_add(n("net", "rx_bytes_count"));
        t.net_tx_bytes = t.net_tx_bytes.saturating_add(n("net", "tx_bytes_count"));
        t.net_rx_packets = t.net_rx_packets.saturating_add(n("net", "rx_packets_count"));
        t.net_tx_packets = t.net_tx_packets.saturating_add(n("net", "tx_packets_count"));
        for key in obj.keys().filter_map(|k| k.strip_prefix("block_")) {
            let section = format!("block_{key}");
            let e = t.drives.entry(key.to_string()).or_default();
            e.0 = e.0.saturating_add(n(&section, "read_bytes"));
            e.1 = e.1.saturating_add(n(&section, "write_bytes"));
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    /// The sums of every line of `text`, as [`Reader`] adds them.
    fn totals(text: &str) -> Totals {
        let mut t = Totals::default();
        for line in text.lines() {
            t.add_line(line);
        }
        t
    }

    #[test]
    fn flushes_are_deltas_and_are_summed() {
        let text = r#"{"utc_timestamp_ms":1000,"block":{"read_bytes":4096,"write_bytes":0,"read_count":1,"write_count":0},"block_work":{"read_bytes":4096,"write_bytes":0},"net":{"rx_bytes_count":100,"tx_bytes_count":50,"rx_packets_count":2,"tx_packets_count":1}}
{"utc_timestamp_ms":61000,"block":{"read_bytes":0,"write_bytes":8192,"read_count":0,"write_count":2},"block_work":{"read_bytes":0,"write_bytes":8192},"net":{"rx_bytes_count":10,"tx_bytes_count":5,"rx_packets_count":1,"tx_packets_count":1}}
{"utc_timestamp_ms":62"#;
        let t = totals(text);
        assert_eq!((t.flushes, t.last_flush_ms), (2, Some(61000)), "a partial last line is skipped");
        assert_eq!((t.block_read_bytes, t.block_write_bytes, t.block_reads, t.block_writes), (4096, 8192, 1, 2));
        assert_eq!(t.drives["work"], (4096, 8192));
        assert_eq!((t.net_rx_bytes, t.net_tx_bytes, t.net_rx_packets, t.net_tx_packets), (110, 55, 3, 2));
        assert_eq!(totals(""), Totals::default());
    }

    #[test]
    fn a_growing_file_is_read_from_where_the_last_read_stopped() {
        let tmp = tempfile::tempdir().unwrap();
        let path = tmp.path().join("m");
        let flush = |w: u64| format!("{{\"block\":{{\"write_bytes\":{w}}}}}\n");
        std::fs::write(&path, flush(1) + &flush(2) + "{\"block\":{\"write_b").unwrap();
        let r = Reader::default();
        let read = || r.totals(&path, 7, std::fs::File::open(&path).unwrap()).unwrap();
        assert_eq!((read().flushes, read().block_write_bytes), (2, 3), "the partial line waits");
        let mut f = std::fs::OpenOptions::new().append(true).open(&path).unwrap();
        std::io::Write::write_all(&mut f, b"ytes\":4}}\n").unwrap();
        std::io::Write::write_all(&mut f, flush(8).as_bytes()).unwrap();
        assert_eq!((read().flushes, read().block_write_bytes), (4, 15));
        // Read again from the start only when the file is shorter (a new one).
        std::fs::write(&path, flush(5)).unwrap();
        assert_eq!((read().flushes, read().block_write_bytes), (1, 5));
        // Or for another VMM process (the VM started again).
        assert_eq!(r.totals(&path, 8, std::fs::File::open(&path).unwrap()).unwrap().flushes, 1);
        // An overlong line (not Firecracker's) is skipped, not kept; the sums saturate.
        let mut f = std::fs::OpenOptions::new().append(true).open(&path).unwrap();
        std::io::Write::write_all(&mut f, &vec![b'x'; 200 << 10]).unwrap();
        std::io::Write::write_all(&mut f, b"\n").unwrap();
        std::io::Write::write_all(&mut f, flush(u64::MAX).as_bytes()).unwrap();
        let t = r.totals(&path, 8, std::fs::File::open(&path).unwrap()).unwrap();
        assert_eq!((t.flushes, t.block_write_bytes), (2, u64::MAX));
    }
}

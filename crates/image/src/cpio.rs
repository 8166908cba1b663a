//! Minimal cpio "newc" (SVR4, no CRC) writer for initramfs images.

use std::io::{self, Write};

/// Streams entries into a newc archive. Call [`CpioWriter::finish`] to write the trailer.
pub struct CpioWriter<W: Write> {
    out: W,
    ino: u32,
    written: u64,
}

impl<W: Write> CpioWriter<W> {
    pub fn new(out: W) -> Self {
        CpioWriter { out, ino: 1, written: 0 }
    }

    fn put(&mut self, b: &[u8]) -> io::Result<()> {
        self.out.write_all(b)?;
        self.written += b.len() as u64;
        Ok(())
    }

    fn pad4(&mut self) -> io::Result<()> {
        let n = (4 - (self.written % 4) as usize) % 4;
        self.put(&[0u8; 3][..n])
    }

    fn entry(&mut self, name: &str, mode: u32, rdev: (u32, u32), data: &[u8]) -> io::Result<()> {
        let name = name.trim_start_matches('/');
        let name = if name.is_empty() { "." } else { name };
        let hdr = format!(
            "070701{:08x}{:08x}{:08x}{:08x}{:08x}{:08x}{:08x}{:08x}{:08x}{:08x}{:08x}{:08x}{:08x}",
            self.ino,
            mode,
            0,
            0,
            1,
            0,
            data.len(),
            0,
            0,
            rdev.0,
            rdev.1,
            name.len() + 1,
            0
        );
        self.ino += 1;
        self.put(hdr.as_bytes())?;
        self.put(name.as_bytes())?;
        self.put(&[0])?;
        self.pad4()?;
        self.put(data)?;
        self.pad4()
    }

    /// A directory (parents must be added first).
    pub fn dir(&mut self, name: &str, perm: u32) -> io::Result<()> {
        self.entry(name, 0o040000 | perm, (0, 0), &[])
    }
    /// A regular file.
    pub fn file(&mut self, name: &str, perm: u32, data: &[u8]) -> io::Result<()> {
        self.entry(name, 0o100000 | perm, (0, 0), data)
    }
    /// A symbolic link.
    pub fn symlink(&mut self, name: &str, target: &str) -> io::Result<()> {
        self.entry(name, 0o120777, (0, 0), target.as_bytes())
    }
    /// A character device node.
    pub fn char_dev(&mut self, name: &str, perm: u32, major: u32, minor: u32) -> io::Result<()> {
        self.entry(name, 0o020000 | perm, (major, minor), &[])
    }
    /// Write the `TRAILER!!!` record and return the inner writer.
    pub fn finish(mut self) -> io::Result<W> {
        self.entry("TRAILER!!!", 0, (0, 0), &[])?;
        self.out.flush()?;
        Ok(self.out)
    }
}

/// List the entry names of a newc archive (used by tests and bundle checks).
pub fn list(data: &[u8]) -> io::Result<Vec<(String, u32, usize)>> {
    let bad = |m: &str| io::Error::new(io::ErrorKind::InvalidData, m.to_string());
    let mut pos = 0usize;
    let mut out = Vec::new();
    let hex = |s: &[u8]| u32::from_str_radix(std::str::from_utf8(s).unwrap_or("x"), 16);
    loop {
        let h = data.get(pos..pos + 110).ok_or_else(|| bad("truncated cpio header"))?;
        if &h[..6] != b"070701" {
            return Err(bad("not a newc cpio archive"));
        }
        let field = |i: usize| hex(&h[6 + i * 8..14 + i * 8]).map_err(|_| bad("bad hex in cpio header"));
        let mode = field(1)?;
        let size = field(6)? as usize;
        let namesize = field(11)? as usize;
        let name_start = pos + 110;
        let name = data.get(name_start..name_start + namesize - 1).ok_or_else(|| bad("truncated name"))?;
        let name = String::from_utf8_lossy(name).into_owned();
        let data_start = (name_start + namesize + 3) & !3;
        pos = (data_start + size + 3) & !3;
        if name == "TRAILER!!!" {
            return Ok(out);
        }
        out.push((name, mode, size));
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn roundtrip_and_alignment() {
        let mut w = CpioWriter::new(Vec::new());
        w.dir("dev", 0o755).unwrap();
        w.char_dev("/dev/console", 0o600, 5, 1).unwrap();
        w.file("init", 0o755, b"#!hello").unwrap();
        w.symlink("sbin", "bin").unwrap();
        let data = w.finish().unwrap();
        assert_eq!(data.len() % 4, 0);
        assert!(data.starts_with(b"070701"));
        let l = list(&data).unwrap();
        let names: Vec<&str> = l.iter().map(|e| e.0.as_str()).collect();
        assert_eq!(names, ["dev", "dev/console", "init", "sbin"]);
        assert_eq!(l[2].1, 0o100755);
        assert_eq!(l[2].2, 7);
        assert_eq!(l[1].1 & 0o170000, 0o020000);
    }

    #[test]
    fn matches_gnu_cpio_when_available() {
        // Cross-check with GNU cpio if installed.
        let Ok(dir) = tempfile::tempdir() else { return };
        let mut w = CpioWriter::new(Vec::new());
        w.dir("a", 0o755).unwrap();
        w.file("a/b.txt", 0o644, b"hello world\n").unwrap();
        let arch = dir.path().join("x.cpio");
        std::fs::write(&arch, w.finish().unwrap()).unwrap();
        let out = std::process::Command::new("cpio").args(["-t", "-F"]).arg(&arch).output();
        match out {
            Ok(o) if o.status.success() => {
                let s = String::from_utf8_lossy(&o.stdout);
                assert!(s.contains("a/b.txt"), "{s}");
            }
            _ => println!("SKIP: GNU cpio not available for the cross-check"),
        }
    }
}

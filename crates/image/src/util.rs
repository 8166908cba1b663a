use crate::{Error, Result};
use sha2::{Digest, Sha256};
use std::fs;
use std::io::Read;
use std::path::Path;
use std::process::{Command, Output};

/// Debian package providing a host tool (for error messages).
pub fn package_of(tool: &str) -> &'static str {
    banger_host::package_of(tool)
}

/// Run a command through banger's one host-command module and map failures to this crate's errors.
pub fn run(cmd: &mut Command) -> Result<Output> {
    banger_host::run_command(cmd).map_err(|e| match e {
        banger_host::HostError::Missing { program, package } => {
            Error::ToolMissing { tool: program, package: package.into() }
        }
        banger_host::HostError::Failed { cmd, status, stderr } => {
            Error::Command { command: cmd, status, detail: stderr }
        }
        banger_host::HostError::Spawn { cmd, source } => {
            Error::Command { command: cmd, status: "could not start".into(), detail: source.to_string() }
        }
        other => Error::Command { command: String::new(), status: "failed".into(), detail: other.to_string() },
    })
}

pub fn stdout(cmd: &mut Command) -> Result<String> {
    Ok(String::from_utf8_lossy(&run(cmd)?.stdout).into_owned())
}

pub fn io<T>(op: &'static str, path: &Path, r: std::io::Result<T>) -> Result<T> {
    r.map_err(|source| Error::Io { op, path: path.to_path_buf(), source })
}

pub fn write(path: &Path, data: impl AsRef<[u8]>) -> Result<()> {
    if let Some(p) = path.parent() {
        io("creating directory", p, fs::create_dir_all(p))?;
    }
    io("writing", path, fs::write(path, data))
}

/// SHA-256 of a file; holes of sparse files are hashed as zeros without reading them.
pub fn sha256_file(path: &Path) -> Result<String> {
    use std::io::{Seek, SeekFrom};
    use std::os::fd::AsRawFd;
    let mut f = io("opening", path, fs::File::open(path))?;
    let len = io("stat", path, f.metadata())?.len();
    let mut h = Sha256::new();
    let mut buf = vec![0u8; 1 << 20];
    let zeros = vec![0u8; 1 << 20];
    let hash_zeros = |h: &mut Sha256, mut n: u64| {
        while n > 0 {
            let k = n.min(zeros.len() as u64) as usize;
            h.update(&zeros[..k]);
            n -= k as u64;
        }
    };
    let mut pos = 0u64;
    while pos < len {
        // SAFETY: lseek on an open fd.
        let data = unsafe { libc::lseek(f.as_raw_fd(), pos as libc::off_t, libc::SEEK_DATA) };
        let (data, hole) = if data < 0 {
            if std::io::Error::last_os_error().raw_os_error() == Some(libc::ENXIO) {
                (len, len) // only a hole remains
            } else {
                (pos, len) // no SEEK_DATA support: read everything
            }
        } else {
            // SAFETY: as above.
            let hole = unsafe { libc::lseek(f.as_raw_fd(), data, libc::SEEK_HOLE) };
            (data as u64, if hole < 0 { len } else { (hole as u64).min(len) })
        };
        hash_zeros(&mut h, data - pos);
        io("seeking", path, f.seek(SeekFrom::Start(data)))?;
        let mut left = hole - data;
        while left > 0 {
            let k = left.min(buf.len() as u64) as usize;
            io("reading", path, f.read_exact(&mut buf[..k]))?;
            h.update(&buf[..k]);
            left -= k as u64;
        }
        pos = hole.max(data);
        if hole == data && data < len {
            pos = data + 1; // defensive: never loop forever
        }
    }
    Ok(hex::encode(h.finalize()))
}

pub fn sha256(data: &[u8]) -> String {
    hex::encode(Sha256::digest(data))
}

/// Copy a tree preserving everything (`cp -a`, reflinks where the filesystem has them).
pub fn copy_tree(src: &Path, dst: &Path) -> Result<()> {
    run(Command::new("cp").arg("-a").arg("--reflink=auto").arg(src).arg(dst)).map(|_| ())
}

pub fn remove_dir(path: &Path) {
    let _ = fs::remove_dir_all(path);
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn sparse_sha_matches_plain() {
        let d = tempfile::tempdir().unwrap();
        let p = d.path().join("sparse");
        let f = fs::File::create(&p).unwrap();
        f.set_len(5 << 20).unwrap();
        drop(f);
        {
            use std::io::{Seek, SeekFrom, Write};
            let mut f = fs::OpenOptions::new().write(true).open(&p).unwrap();
            f.seek(SeekFrom::Start(3 << 20)).unwrap();
            f.write_all(b"hello in the middle").unwrap();
        }
        let plain = sha256(&fs::read(&p).unwrap());
        assert_eq!(sha256_file(&p).unwrap(), plain);
        let q = d.path().join("empty");
        fs::write(&q, b"").unwrap();
        assert_eq!(sha256_file(&q).unwrap(), sha256(b""));
    }
}

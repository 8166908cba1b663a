use crate::{Error, Result};
use sha2::{Digest, Sha256};
use std::fs;
use std::io::Read;
use std::path::Path;
use std::process::{Command, Output};

/// Debian package providing a host tool (for error messages).
pub fn package_of(tool: &str) -> &'static str {
    match tool {
        "mmdebstrap" => "mmdebstrap",
        "mkfs.ext4" | "debugfs" | "mke2fs" => "e2fsprogs",
        "dpkg-deb" => "dpkg",
        "apt-get" | "apt-cache" => "apt",
        "depmod" => "kmod",
        "ssh-keygen" => "openssh-client",
        "qemu-system-x86_64" => "qemu-system-x86",
        "cp" | "chroot" => "coreutils",
        "mount" | "umount" => "mount",
        _ => "?",
    }
}

pub fn describe(cmd: &Command) -> String {
    let mut s = cmd.get_program().to_string_lossy().into_owned();
    for a in cmd.get_args() {
        s.push(' ');
        s.push_str(&a.to_string_lossy());
    }
    if s.len() > 300 {
        s.truncate(300);
        s.push('…');
    }
    s
}

/// Run a command, capture output, map failures to one-sentence errors.
pub fn run(cmd: &mut Command) -> Result<Output> {
    let tool = cmd.get_program().to_string_lossy().into_owned();
    let out = cmd.output().map_err(|e| {
        if e.kind() == std::io::ErrorKind::NotFound {
            Error::ToolMissing { package: package_of(&tool).into(), tool: tool.clone() }
        } else {
            Error::Command { command: describe(cmd), status: "could not start".into(), detail: e.to_string() }
        }
    })?;
    if !out.status.success() {
        let err = String::from_utf8_lossy(&out.stderr);
        let mut lines: Vec<&str> = err.lines().filter(|l| !l.trim().is_empty()).collect();
        if lines.is_empty() {
            let o = String::from_utf8_lossy(&out.stdout).into_owned();
            let tail: Vec<String> = o.lines().rev().take(3).map(str::to_string).collect();
            return Err(Error::Command {
                command: describe(cmd),
                status: out.status.to_string(),
                detail: tail.into_iter().rev().collect::<Vec<_>>().join(" | "),
            });
        }
        let n = lines.len();
        lines.drain(..n.saturating_sub(3));
        return Err(Error::Command { command: describe(cmd), status: out.status.to_string(), detail: lines.join(" | ") });
    }
    Ok(out)
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

pub fn sha256_file(path: &Path) -> Result<String> {
    let mut f = io("opening", path, fs::File::open(path))?;
    let mut h = Sha256::new();
    let mut buf = vec![0u8; 1 << 20];
    loop {
        let n = io("reading", path, f.read(&mut buf))?;
        if n == 0 {
            break;
        }
        h.update(&buf[..n]);
    }
    Ok(hex::encode(h.finalize()))
}

pub fn sha256(data: &[u8]) -> String {
    hex::encode(Sha256::digest(data))
}

/// Allocated bytes of a (possibly sparse) file.
pub fn allocated(path: &Path) -> u64 {
    use std::os::unix::fs::MetadataExt;
    fs::metadata(path).map(|m| m.blocks() * 512).unwrap_or(0)
}

/// Copy a tree preserving everything (`cp -a`, reflinks where the filesystem has them).
pub fn copy_tree(src: &Path, dst: &Path) -> Result<()> {
    run(Command::new("cp").arg("-a").arg("--reflink=auto").arg(src).arg(dst)).map(|_| ())
}

pub fn remove_dir(path: &Path) {
    let _ = fs::remove_dir_all(path);
}

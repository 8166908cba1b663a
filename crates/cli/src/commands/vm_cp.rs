//! `banger vm cp SRC DST`: files and directories between the host and a running VM, either
//! way (`NAME:/path` on one side, as `docker cp` and `limactl copy` have it), modes and times
//! kept. A tar stream over SSH: `tar -c` on the source side, `tar -x` into a staging directory
//! beside the destination on the other, renamed into place only once complete — a copy that
//! fails leaves nothing half-written. Where the destination is:
//! - an existing directory: the source goes into it under its own name;
//! - anything else: the source is written as that path (its directory must exist).

use crate::context::{Ctx, block_on};
use crate::error::{CliError, CliResult};
use banger_api::response::Vm;
use banger_api::{exit, routes};
use std::io::{IsTerminal, Read, Write};
use std::path::Path;
use std::process::{Child, Command, Stdio};
use std::time::Instant;

/// One side of a copy.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum Loc {
    Host(String),
    Guest { vm: String, path: String },
}

impl Loc {
    /// `NAME:/path` (a VM name never has `/` or `:`) or a host path (`./a:b` stays a host path).
    pub fn parse(s: &str) -> Loc {
        match s.split_once(':') {
            Some((vm, path)) if !vm.is_empty() && !vm.contains('/') => {
                Loc::Guest { vm: vm.into(), path: if path.is_empty() { "/root".into() } else { path.into() } }
            }
            _ => Loc::Host(s.into()),
        }
    }
    fn path(&self) -> &str {
        match self {
            Loc::Host(p) | Loc::Guest { path: p, .. } => p,
        }
    }
    fn describe(&self) -> String {
        match self {
            Loc::Host(p) => format!("{p} (on the host)"),
            Loc::Guest { vm, path } => format!("{path} (in VM {vm})"),
        }
    }
}

/// What is at a path: a directory, something else, or nothing.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
enum Kind {
    Dir,
    Other,
    Missing,
}

/// (directory, last component) of a path; `.` for a bare name. Trailing slashes ignored.
fn split(path: &str) -> (String, String) {
    let trimmed = path.trim_end_matches('/');
    let p = Path::new(if trimmed.is_empty() { "/" } else { trimmed });
    let dir = p.parent().map(|d| d.display().to_string()).filter(|d| !d.is_empty()).unwrap_or_else(|| ".".into());
    let base = p.file_name().map(|b| b.to_string_lossy().into_owned()).unwrap_or_else(|| ".".into());
    (dir, base)
}

pub fn run(ctx: &Ctx, src: &str, dst: &str) -> CliResult {
    // Noted from here on (the checks below run ssh too), acted on once the copy runs.
    Interrupt::install();
    let (src, dst) = (Loc::parse(src), Loc::parse(dst));
    let vm_name = match (&src, &dst) {
        (Loc::Guest { vm, .. }, Loc::Host(_)) | (Loc::Host(_), Loc::Guest { vm, .. }) => vm.clone(),
        _ => {
            return Err(CliError::new(
                exit::BAD_INPUT,
                "vm cp copies between the host and one VM: give NAME:/path on exactly one side (e.g. `banger vm cp \
                 ./src calm-otter:/root/`)",
            ));
        }
    };
    let vm: Vm = block_on(ctx.client()?.get(&routes::vm_path(routes::VM, &vm_name)))?;
    let ssh_base = super::vm::ssh_args(&vm, &["-T", "-o", "BatchMode=yes"], &[])?;
    let kinds = |loc: &Loc, paths: &[&str]| -> CliResult<Vec<Kind>> {
        match loc {
            Loc::Host(_) => Ok(paths
                .iter()
                .map(|p| match std::fs::metadata(p) {
                    Ok(m) if m.is_dir() => Kind::Dir,
                    Ok(_) => Kind::Other,
                    Err(_) => Kind::Missing,
                })
                .collect()),
            Loc::Guest { .. } => {
                let script = "for p; do if [ -d \"$p\" ]; then echo d; elif [ -e \"$p\" ] || [ -L \"$p\" ]; then echo f; \
                              else echo -; fi; done";
                let mut cmd = format!("sh -c {} sh", super::vm_exec::quote(script));
                for p in paths {
                    cmd.push(' ');
                    cmd.push_str(&super::vm_exec::quote(p));
                }
                let out = Command::new("ssh").args(&ssh_base).arg(cmd).output()?;
                if !out.status.success() {
                    return Err(CliError::failure(format!(
                        "cannot reach VM {vm_name} over SSH: {}",
                        String::from_utf8_lossy(&out.stderr).trim()
                    )));
                }
                Ok(String::from_utf8_lossy(&out.stdout)
                    .lines()
                    .map(|l| match l {
                        "d" => Kind::Dir,
                        "f" => Kind::Other,
                        _ => Kind::Missing,
                    })
                    .collect())
            }
        }
    };

    if kinds(&src, &[src.path()])?[0] == Kind::Missing {
        return Err(CliError::new(exit::NOT_FOUND, format!("no such file or directory: {}", src.describe())));
    }
    // A host source by its real name (`.` is the directory it names).
    let src = match src {
        Loc::Host(p) => Loc::Host(std::fs::canonicalize(&p).map(|c| c.display().to_string()).unwrap_or(p)),
        guest => guest,
    };
    let (src_dir, src_base) = split(src.path());
    if src_base == "." || src_base == ".." || src.path().ends_with("/.") || src.path().ends_with("/..") {
        return Err(CliError::new(
            exit::BAD_INPUT,
            format!("give the source by name, not as `/`, `.` or `..`: {}", src.describe()),
        ));
    }
    let (dst_parent, dst_base) = split(dst.path());
    let k = kinds(&dst, &[dst.path(), &dst_parent])?;
    let (dest_dir, name) = match k[0] {
        Kind::Dir => (dst.path().trim_end_matches('/').to_string(), src_base.clone()),
        _ if dst.path().ends_with('/') => {
            return Err(CliError::new(exit::NOT_FOUND, format!("no such directory: {}", dst.describe())));
        }
        _ if k[1] != Kind::Dir => {
            return Err(CliError::new(
                exit::NOT_FOUND,
                format!("no such directory: {dst_parent} (the directory of {})", dst.describe()),
            ));
        }
        _ => (dst_parent, dst_base),
    };
    let dest_dir = if dest_dir.is_empty() { "/".to_string() } else { dest_dir };

    if INTERRUPTED.load(std::sync::atomic::Ordering::SeqCst) {
        return Err(CliError::new(130, "interrupted; nothing was copied".to_string()));
    }
    // The two ends of the stream.
    let q = super::vm_exec::quote;
    let producer = match &src {
        Loc::Host(_) => Command::new("tar")
            .args(["-C", &src_dir, "-cf", "-", "--", &src_base])
            .stdin(Stdio::null())
            .stdout(Stdio::piped())
            .stderr(Stdio::piped())
            .spawn(),
        Loc::Guest { .. } => Command::new("ssh")
            .args(&ssh_base)
            .arg(format!("tar -C {} -cf - -- {}", q(&src_dir), q(&src_base)))
            .stdin(Stdio::null())
            .stdout(Stdio::piped())
            .stderr(Stdio::piped())
            .spawn(),
    }?;
    // Without a terminal to show progress on, the sender's output is the receiver's input
    // directly: no copy through this process.
    let mut producer = producer;
    let direct = !std::io::stderr().is_terminal();
    let input = match producer.stdout.take() {
        Some(out) if direct => Stdio::from(out),
        out => {
            producer.stdout = out;
            Stdio::piped()
        }
    };
    let mut host_staging = None;
    let consumer = match &dst {
        Loc::Host(_) => {
            let staging = tempfile::Builder::new()
                .prefix(".banger-cp.")
                .tempdir_in(&dest_dir)
                .map_err(|e| CliError::failure(format!("cannot write in {dest_dir}: {e}")))?;
            let child = Command::new("tar")
                .args(["-C"])
                .arg(staging.path())
                .args(["--no-same-owner", "-xpf", "-"])
                .stdin(input)
                .stderr(Stdio::piped())
                .spawn();
            host_staging = Some(staging);
            child
        }
        Loc::Guest { .. } => {
            // Staged beside the destination, renamed into place when complete; removed on failure.
            let script = format!(
                "set -e; t=$(mktemp -d {dir}/.banger-cp.XXXXXX); trap 'rm -rf \"$t\"' EXIT; trap 'exit 1' HUP INT TERM PIPE; \
                 tar -C \"$t\" --no-same-owner -xpf -; \
                 if [ -d {dst} ] && [ ! -L {dst} ] && [ -d \"$t\"/{src} ]; then echo \"{shown} is a directory \
                 already\" >&2; exit 17; fi; mv -f -T \"$t\"/{src} {dst}",
                dir = q(&dest_dir),
                dst = q(&format!("{}/{name}", dest_dir.trim_end_matches('/'))),
                src = q(&src_base),
                shown = format!("{}/{name}", dest_dir.trim_end_matches('/')).replace(['"', '\\', '$', '`'], "_"),
            );
            Command::new("ssh").args(&ssh_base).arg(script).stdin(input).stderr(Stdio::piped()).spawn()
        }
    }?;
    // Interrupted (Ctrl-C, SIGTERM, a closed terminal): both ends are ended, and the failed
    // copy leaves nothing (the staging directory on the host is removed as it goes out of scope;
    // the guest's removes itself).
    let interrupt = Interrupt::watch(&[producer.id(), consumer.id()]);
    let copied = pump(Running::new(producer), Running::new(consumer));
    if interrupt.happened() {
        return Err(CliError::new(130, "interrupted; nothing was copied".to_string()));
    }
    let (bytes, secs) = copied?;
    if let Some(staging) = host_staging {
        let from = staging.path().join(&src_base);
        let to = Path::new(&dest_dir).join(&name);
        if to.is_dir() && from.is_dir() {
            return Err(CliError::new(exit::CONFLICT, format!("{} is a directory already", to.display())));
        }
        std::fs::rename(&from, &to).map_err(|e| CliError::failure(format!("cannot write {}: {e}", to.display())))?;
    }
    if std::io::stderr().is_terminal() {
        eprintln!("copied {} in {secs:.1}s", banger_config::size::format_size(bytes));
    }
    Ok(())
}

static INTERRUPTED: std::sync::atomic::AtomicBool = std::sync::atomic::AtomicBool::new(false);

extern "C" fn on_signal(_: libc::c_int) {
    INTERRUPTED.store(true, std::sync::atomic::Ordering::SeqCst);
}

/// SIGINT, SIGTERM and SIGHUP noted instead of ending banger, for as long as a copy runs, and a
/// thread that then ends the copy's two processes (a terminal's Ctrl-C reaches them anyway; a
/// signal to banger alone does not).
struct Interrupt {
    done: std::sync::Arc<std::sync::atomic::AtomicBool>,
}

impl Interrupt {
    fn install() {
        use nix::sys::signal::{SaFlags, SigAction, SigHandler, SigSet, Signal, sigaction};
        let action = SigAction::new(SigHandler::Handler(on_signal), SaFlags::SA_RESTART, SigSet::empty());
        for sig in [Signal::SIGINT, Signal::SIGTERM, Signal::SIGHUP] {
            // SAFETY: the handler only stores to an atomic.
            let _ = unsafe { sigaction(sig, &action) };
        }
    }

    fn watch(pids: &[u32]) -> Interrupt {
        use nix::sys::signal::Signal;
        let done = std::sync::Arc::new(std::sync::atomic::AtomicBool::new(false));
        let (pids, finished) = (pids.to_vec(), done.clone());
        std::thread::spawn(move || {
            use std::sync::atomic::Ordering::SeqCst;
            while !finished.load(SeqCst) {
                if INTERRUPTED.load(SeqCst) {
                    // Our own children, not yet waited for: their pids cannot have been reused.
                    for &pid in &pids {
                        let _ = nix::sys::signal::kill(nix::unistd::Pid::from_raw(pid as i32), Signal::SIGTERM);
                    }
                    return;
                }
                std::thread::sleep(std::time::Duration::from_millis(50));
            }
        });
        Interrupt { done }
    }

    fn happened(&self) -> bool {
        INTERRUPTED.load(std::sync::atomic::Ordering::SeqCst)
    }
}

impl Drop for Interrupt {
    fn drop(&mut self) {
        self.done.store(true, std::sync::atomic::Ordering::SeqCst);
    }
}

/// A child of a copy with its standard error read on a thread from the start (so that neither
/// end blocks on a full stderr pipe while the other waits on it).
struct Running {
    child: Child,
    stderr: Option<std::thread::JoinHandle<String>>,
}

impl Running {
    fn new(mut child: Child) -> Running {
        let stderr = child.stderr.take().map(|mut e| {
            std::thread::spawn(move || {
                let mut s = String::new();
                let _ = e.read_to_string(&mut s);
                s
            })
        });
        Running { child, stderr }
    }

    /// Wait for it: its exit status and what it said on stderr.
    fn wait(mut self) -> (Option<std::process::ExitStatus>, String) {
        let status = self.child.wait().ok();
        let said = self.stderr.take().and_then(|h| h.join().ok()).unwrap_or_default();
        (status, said.trim().to_string())
    }
}

/// Stream the producer's output into the consumer (unless it already goes there directly),
/// showing progress on a terminal; both must succeed. (bytes, seconds).
fn pump(mut producer: Running, mut consumer: Running) -> CliResult<(u64, f64)> {
    let t0 = Instant::now();
    let show = std::io::stderr().is_terminal();
    let (Some(mut from), Some(mut to)) = (producer.child.stdout.take(), consumer.child.stdin.take()) else {
        return finish(producer, consumer, 0, None, t0);
    };
    let mut buf = vec![0u8; 1 << 20];
    let (mut total, mut shown) = (0u64, Instant::now());
    let mut failed = None;
    loop {
        let n = match from.read(&mut buf) {
            Ok(0) => break,
            Ok(n) => n,
            Err(e) if e.kind() == std::io::ErrorKind::Interrupted => continue,
            Err(e) => {
                failed = Some(e);
                break;
            }
        };
        if let Err(e) = to.write_all(&buf[..n]) {
            failed = Some(e);
            break;
        }
        total += n as u64;
        if show && shown.elapsed().as_millis() >= 500 {
            shown = Instant::now();
            let rate = total as f64 / t0.elapsed().as_secs_f64().max(0.001);
            eprint!(
                "\r{} copied ({}/s)   ",
                banger_config::size::format_size(total),
                banger_config::size::format_size(rate as u64)
            );
        }
    }
    // Both pipes closed: a receiver that failed lets the sender see a broken pipe, and a sender
    // whose output is no longer read is ended.
    drop(to);
    drop(from);
    if failed.is_some() {
        let _ = producer.child.kill();
    }
    if show && total > 0 {
        eprint!("\r\x1b[K");
    }
    finish(producer, consumer, total, failed, t0)
}

/// Wait for both ends of a copy; the receiving side's error first (it says more).
fn finish(
    producer: Running,
    consumer: Running,
    total: u64,
    failed: Option<std::io::Error>,
    t0: Instant,
) -> CliResult<(u64, f64)> {
    let (c, c_err) = consumer.wait();
    let (p, p_err) = producer.wait();
    if !c.is_some_and(|c| c.success()) {
        let code = if c.and_then(|c| c.code()) == Some(17) { exit::CONFLICT } else { exit::FAILURE };
        return Err(CliError::new(code, format!("the copy failed on the receiving side: {c_err}")));
    }
    if !p.is_some_and(|p| p.success()) || failed.is_some() {
        let why = if p_err.is_empty() { failed.map(|e| e.to_string()).unwrap_or_default() } else { p_err };
        return Err(CliError::failure(format!("the copy failed on the sending side: {why}")));
    }
    Ok((total, t0.elapsed().as_secs_f64()))
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn sides_and_paths() {
        assert_eq!(Loc::parse("calm-otter:/etc/x"), Loc::Guest { vm: "calm-otter".into(), path: "/etc/x".into() });
        assert_eq!(Loc::parse("vm:"), Loc::Guest { vm: "vm".into(), path: "/root".into() });
        assert_eq!(Loc::parse("./a:b"), Loc::Host("./a:b".into()));
        assert_eq!(Loc::parse("/abs/a:b"), Loc::Host("/abs/a:b".into()));
        assert_eq!(Loc::parse("plain"), Loc::Host("plain".into()));
        assert_eq!(split("/a/b/"), ("/a".into(), "b".into()));
        assert_eq!(split("b"), (".".into(), "b".into()));
        assert_eq!(split("/b"), ("/".into(), "b".into()));
    }
}

//! Start `bangerd` when no daemon answers.
//!
//! A CLI that finds nobody on the socket takes the start lock (`bangerd.start.lock`, flock), looks
//! again (a racing CLI may have started the daemon meanwhile), and only then spawns `bangerd`:
//! detached in its own session, stdin from /dev/null, stdout and stderr appended to the log file
//! in the state dir. It waits (bounded) until the socket accepts connections. If the daemon exits
//! or never answers, the error names the log file and quotes its last line. The daemon itself also
//! holds `bangerd.lock` for its whole life, so even a daemon started by hand cannot double up.

use crate::{ClientError, check_socket_owner};
use banger_config::Dirs;
use banger_config::dirs::{ensure_private_dir, ensure_writable_dir};
use nix::fcntl::{Flock, FlockArg};
use std::fs::{File, OpenOptions};
use std::os::unix::fs::OpenOptionsExt;
use std::os::unix::net::UnixStream;
use std::os::unix::process::CommandExt;
use std::path::{Path, PathBuf};
use std::process::{Command, Stdio};
use std::time::{Duration, Instant};

/// Environment variable naming the `bangerd` binary to start (default: next to `banger`).
pub const ENV_DAEMON_BIN: &str = "BANGER_DAEMON_BIN";

#[derive(Debug, thiserror::Error)]
pub enum StartError {
    #[error(transparent)]
    Client(#[from] ClientError),
    #[error(transparent)]
    Dirs(#[from] banger_config::DirsError),
    #[error("cannot take the start lock {path}: {source}")]
    Lock { path: PathBuf, source: std::io::Error },
    #[error("cannot open the daemon log {path}: {source}")]
    Log { path: PathBuf, source: std::io::Error },
    #[error("cannot start bangerd ({bin}): {source}")]
    Spawn { bin: PathBuf, source: std::io::Error },
    #[error("bangerd exited during start-up ({status}){}; see {}", last_line_suffix(.last_line), .log.display())]
    Exited { status: String, last_line: Option<String>, log: PathBuf },
    #[error("bangerd did not answer on {} within {}s, so it was stopped; see {}", .socket.display(), .timeout.as_secs(), .log.display())]
    Timeout { socket: PathBuf, timeout: Duration, log: PathBuf },
}

fn last_line_suffix(line: &Option<String>) -> String {
    line.as_ref().map(|l| format!(": {l}")).unwrap_or_default()
}

impl StartError {
    pub fn exit_code(&self) -> i32 {
        match self {
            StartError::Client(e) => e.exit_code(),
            StartError::Dirs(e) => e.exit_code(),
            _ => banger_api::exit::UNREACHABLE,
        }
    }
}

/// What [`ensure_running`] did.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Started {
    AlreadyRunning,
    Started { pid: u32 },
}

/// Does a daemon accept connections on `socket`?
pub fn is_listening(socket: &Path) -> bool {
    UnixStream::connect(socket).is_ok()
}

/// The `bangerd` to start: `$BANGER_DAEMON_BIN`, else the one beside the running executable,
/// else `bangerd` from `PATH`.
pub fn daemon_binary() -> PathBuf {
    if let Some(p) = std::env::var_os(ENV_DAEMON_BIN).filter(|v| !v.is_empty()) {
        return PathBuf::from(p);
    }
    std::env::current_exe()
        .ok()
        .and_then(|exe| exe.parent().map(|d| d.join("bangerd")))
        .filter(|p| p.is_file())
        .unwrap_or_else(|| PathBuf::from("bangerd"))
}

/// Make sure a daemon answers on `dirs.socket()`, starting `daemon_bin` if needed.
pub fn ensure_running(dirs: &Dirs, daemon_bin: &Path, timeout: Duration) -> Result<Started, StartError> {
    let socket = dirs.socket();
    check_socket_owner(&socket)?;
    if is_listening(&socket) {
        return Ok(Started::AlreadyRunning);
    }
    ensure_private_dir(&dirs.run)?;
    ensure_writable_dir(&dirs.state)?;
    let _guard = lock_exclusive(&dirs.start_lock())?;
    if is_listening(&socket) {
        return Ok(Started::AlreadyRunning);
    }
    let log_path = dirs.log_file();
    let log = OpenOptions::new()
        .create(true)
        .append(true)
        .mode(0o600)
        .open(&log_path)
        .map_err(|source| StartError::Log { path: log_path.clone(), source })?;
    let log_len = log.metadata().map(|m| m.len()).unwrap_or(0);
    let log_err = log.try_clone().map_err(|source| StartError::Log { path: log_path.clone(), source })?;
    let mut cmd = Command::new(daemon_bin);
    cmd.stdin(Stdio::null()).stdout(log).stderr(log_err);
    // SAFETY: setsid is async-signal-safe; the closure touches nothing else.
    unsafe {
        cmd.pre_exec(|| {
            nix::unistd::setsid().map_err(std::io::Error::from)?;
            Ok(())
        });
    }
    let mut child = cmd.spawn().map_err(|source| StartError::Spawn { bin: daemon_bin.into(), source })?;
    let pid = child.id();
    let deadline = Instant::now() + timeout;
    let mut delay = Duration::from_millis(2);
    loop {
        if is_listening(&socket) {
            // The daemon outlives us; reap nothing. Dropping `child` does not kill it.
            return Ok(Started::Started { pid });
        }
        if let Ok(Some(status)) = child.try_wait() {
            // Another daemon (started by hand) may have won; that is success for us.
            if is_listening(&socket) {
                return Ok(Started::AlreadyRunning);
            }
            return Err(StartError::Exited {
                status: status.to_string(),
                last_line: banger_host::last_line_since(&log_path, log_len),
                log: log_path,
            });
        }
        if Instant::now() >= deadline {
            let _ = child.kill();
            let _ = child.wait();
            return Err(StartError::Timeout { socket, timeout, log: log_path });
        }
        std::thread::sleep(delay);
        delay = (delay * 2).min(Duration::from_millis(50));
    }
}

/// Block until we hold an exclusive flock on `path` (released when the value drops).
pub fn lock_exclusive(path: &Path) -> Result<Flock<File>, StartError> {
    let file = OpenOptions::new()
        .create(true)
        .truncate(false)
        .write(true)
        .mode(0o600)
        .open(path)
        .map_err(|source| StartError::Lock { path: path.into(), source })?;
    Flock::lock(file, FlockArg::LockExclusive)
        .map_err(|(_, errno)| StartError::Lock { path: path.into(), source: errno.into() })
}

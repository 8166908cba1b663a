//! The single-instance lock: an exclusive flock on `bangerd.lock` held for the daemon's life. The
//! file holds the pid for messages only; the flock is the truth, so a stale pid (a daemon that
//! crashed) never blocks a new start.

use nix::fcntl::{Flock, FlockArg};
use std::fs::{File, OpenOptions};
use std::io::{Read, Seek, Write};
use std::os::unix::fs::OpenOptionsExt;
use std::path::{Path, PathBuf};

#[derive(Debug, thiserror::Error)]
pub enum LockError {
    #[error("bangerd is already running (pid {pid}, socket {socket}); stop it with `banger daemon stop`")]
    AlreadyRunning { pid: String, socket: PathBuf },
    #[error("cannot use lock file {path}: {source}")]
    Io { path: PathBuf, source: std::io::Error },
}

impl LockError {
    pub fn exit_code(&self) -> i32 {
        match self {
            LockError::AlreadyRunning { .. } => banger_api::exit::CONFLICT,
            LockError::Io { .. } => banger_api::exit::FAILURE,
        }
    }
}

pub struct DaemonLock {
    _lock: Flock<File>,
}

impl DaemonLock {
    pub fn acquire(path: &Path, socket: &Path) -> Result<DaemonLock, LockError> {
        let io = |source| LockError::Io { path: path.into(), source };
        let file = OpenOptions::new()
            .create(true)
            .truncate(false)
            .read(true)
            .write(true)
            .mode(0o600)
            .open(path)
            .map_err(io)?;
        let mut lock = match Flock::lock(file, FlockArg::LockExclusiveNonblock) {
            Ok(lock) => lock,
            Err((mut file, nix::errno::Errno::EWOULDBLOCK)) => {
                let mut pid = String::new();
                let _ = file.read_to_string(&mut pid);
                let pid = if pid.trim().is_empty() { "unknown".into() } else { pid.trim().to_string() };
                return Err(LockError::AlreadyRunning { pid, socket: socket.into() });
            }
            Err((_, errno)) => return Err(io(errno.into())),
        };
        lock.set_len(0).map_err(io)?;
        lock.rewind().map_err(io)?;
        writeln!(lock, "{}", std::process::id()).map_err(io)?;
        Ok(DaemonLock { _lock: lock })
    }

    /// Is a daemon holding the lock at `path` right now?
    pub fn is_held(path: &Path) -> bool {
        let Ok(file) = File::open(path) else {
            return false;
        };
        matches!(Flock::lock(file, FlockArg::LockSharedNonblock), Err((_, nix::errno::Errno::EWOULDBLOCK)))
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn second_acquire_fails_with_the_holders_pid_and_stale_pid_is_ignored() {
        let tmp = std::env::temp_dir().join(format!("banger-lock-test-{}", std::process::id()));
        std::fs::create_dir_all(&tmp).unwrap();
        let path = tmp.join("bangerd.lock");
        std::fs::write(&path, "999999\n").unwrap(); // stale pid from a crashed daemon
        let held = DaemonLock::acquire(&path, Path::new("/s")).unwrap();
        assert!(banger_config::dirs::lock_is_held(&path));
        let err = DaemonLock::acquire(&path, Path::new("/s")).err().unwrap();
        assert!(err.to_string().contains(&format!("pid {}", std::process::id())), "{err}");
        assert_eq!(err.exit_code(), banger_api::exit::CONFLICT);
        drop(held);
        assert!(!banger_config::dirs::lock_is_held(&path));
        std::fs::remove_dir_all(&tmp).unwrap();
    }
}

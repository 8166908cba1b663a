//! The directories banger uses, after the XDG base-directory rules.
//!
//! | what | where | fallback |
//! |---|---|---|
//! | config | `$XDG_CONFIG_HOME/banger` | `~/.config/banger` |
//! | state (database, daemon log, VM disks) | `$XDG_STATE_HOME/banger` | `~/.local/state/banger` |
//! | cache | `$XDG_CACHE_HOME/banger` | `~/.cache/banger` |
//! | socket, lock | `$XDG_RUNTIME_DIR/banger` | `$TMPDIR/banger-UID` (or `/tmp/banger-UID`) |
//!
//! Relative XDG values are ignored, as the spec says. The socket directory is private (0700, owned
//! by the user); when `XDG_RUNTIME_DIR` is unset the fallback lives in a world-writable `/tmp`, so
//! [`ensure_private_dir`] refuses a directory (or symlink) that another user planted there.

use std::ffi::OsString;
use std::fs;
use std::io;
use std::os::unix::fs::{DirBuilderExt, MetadataExt, PermissionsExt};
use std::path::{Path, PathBuf};

#[derive(Debug, thiserror::Error)]
pub enum DirsError {
    #[error("cannot find the home directory: HOME is unset and uid {0} has no passwd entry")]
    NoHome(u32),
    #[error("cannot create directory {path}: {source}")]
    Create { path: PathBuf, source: io::Error },
    #[error("{path} is not a directory (is it a symlink or a file?); remove it and try again")]
    NotADirectory { path: PathBuf },
    #[error("{path} belongs to uid {owner}, not to you (uid {uid}); refusing to use it")]
    NotOwned { path: PathBuf, owner: u32, uid: u32 },
    #[error("directory {path} is not writable: {source}")]
    NotWritable { path: PathBuf, source: io::Error },
}

impl DirsError {
    pub fn exit_code(&self) -> i32 {
        match self {
            DirsError::NotOwned { .. } => banger_api::exit::PERMISSION,
            _ => banger_api::exit::FAILURE,
        }
    }
}

/// Every directory and well-known file of one user's banger.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Dirs {
    pub config: PathBuf,
    pub state: PathBuf,
    pub cache: PathBuf,
    /// Private directory for the socket and lock files.
    pub run: PathBuf,
}

impl Dirs {
    /// Directories for the current process's user and environment.
    pub fn from_env() -> Result<Dirs, DirsError> {
        let uid = nix::unistd::geteuid().as_raw();
        Dirs::from_vars(|k| std::env::var_os(k), uid)
    }

    /// Directories from an environment lookup (testable without touching the process env).
    pub fn from_vars(var: impl Fn(&str) -> Option<OsString>, uid: u32) -> Result<Dirs, DirsError> {
        let abs = |k: &str| var(k).map(PathBuf::from).filter(|p| p.is_absolute());
        let home = || -> Result<PathBuf, DirsError> {
            if let Some(h) = abs("HOME") {
                return Ok(h);
            }
            nix::unistd::User::from_uid(nix::unistd::Uid::from_raw(uid))
                .ok()
                .flatten()
                .map(|u| u.dir)
                .ok_or(DirsError::NoHome(uid))
        };
        let xdg = |k: &str, fallback: &str| -> Result<PathBuf, DirsError> {
            Ok(match abs(k) {
                Some(p) => p.join("banger"),
                None => home()?.join(fallback).join("banger"),
            })
        };
        let run = match abs("XDG_RUNTIME_DIR") {
            Some(p) => p.join("banger"),
            None => abs("TMPDIR").unwrap_or_else(|| PathBuf::from("/tmp")).join(format!("banger-{uid}")),
        };
        Ok(Dirs {
            config: xdg("XDG_CONFIG_HOME", ".config")?,
            state: xdg("XDG_STATE_HOME", ".local/state")?,
            cache: xdg("XDG_CACHE_HOME", ".cache")?,
            run,
        })
    }

    pub fn socket(&self) -> PathBuf {
        self.run.join("bangerd.sock")
    }
    /// Held (flock) by the running daemon for its whole life; holds its pid.
    pub fn daemon_lock(&self) -> PathBuf {
        self.run.join("bangerd.lock")
    }
    /// Held by a CLI while it starts the daemon, so racing CLIs start one daemon.
    pub fn start_lock(&self) -> PathBuf {
        self.run.join("bangerd.start.lock")
    }
    pub fn config_file(&self) -> PathBuf {
        self.config.join("config.toml")
    }
    pub fn log_file(&self) -> PathBuf {
        self.state.join("bangerd.log")
    }
    pub fn database(&self) -> PathBuf {
        self.state.join("state.db")
    }
    /// Left by `banger dns setup`: bangerd restores the host's `.vm` routing when it starts.
    pub fn dns_setup_marker(&self) -> PathBuf {
        self.state.join("dns-setup")
    }

    /// Create the socket directory (private) and the state directory, checking both are usable.
    pub fn ensure_for_daemon(&self) -> Result<(), DirsError> {
        ensure_private_dir(&self.run)?;
        // VM disks, SSH keys, known_hosts and the database: nobody else's to read.
        ensure_private_dir(&self.state)?;
        ensure_writable_dir(&self.cache)?;
        Ok(())
    }
}

/// Create `path` (and parents) if needed; make sure it is a real directory, owned by us, mode 0700.
pub fn ensure_private_dir(path: &Path) -> Result<(), DirsError> {
    if let Some(parent) = path.parent() {
        fs::create_dir_all(parent).map_err(|source| DirsError::Create { path: parent.into(), source })?;
    }
    match fs::DirBuilder::new().mode(0o700).create(path) {
        Ok(()) => {}
        Err(e) if e.kind() == io::ErrorKind::AlreadyExists => {}
        Err(source) => {
            return Err(DirsError::Create { path: path.into(), source });
        }
    }
    let meta = fs::symlink_metadata(path).map_err(|source| DirsError::Create { path: path.into(), source })?;
    if !meta.is_dir() {
        return Err(DirsError::NotADirectory { path: path.into() });
    }
    let uid = nix::unistd::geteuid().as_raw();
    if meta.uid() != uid {
        return Err(DirsError::NotOwned { path: path.into(), owner: meta.uid(), uid });
    }
    if meta.mode() & 0o777 != 0o700 {
        fs::set_permissions(path, fs::Permissions::from_mode(0o700))
            .map_err(|source| DirsError::Create { path: path.into(), source })?;
    }
    Ok(())
}

/// Does some process hold an exclusive flock on `path` right now? (A shared lock attempt fails.)
pub fn lock_is_held(path: &Path) -> bool {
    use nix::fcntl::{Flock, FlockArg};
    let Ok(file) = fs::File::open(path) else {
        return false;
    };
    matches!(Flock::lock(file, FlockArg::LockSharedNonblock), Err((_, nix::errno::Errno::EWOULDBLOCK)))
}

/// Create `path` (and parents) if needed and check that we can create files in it.
pub fn ensure_writable_dir(path: &Path) -> Result<(), DirsError> {
    fs::create_dir_all(path).map_err(|source| DirsError::Create { path: path.into(), source })?;
    if !fs::metadata(path).map(|m| m.is_dir()).unwrap_or(false) {
        return Err(DirsError::NotADirectory { path: path.into() });
    }
    nix::unistd::access(path, nix::unistd::AccessFlags::W_OK | nix::unistd::AccessFlags::X_OK)
        .map_err(|e| DirsError::NotWritable { path: path.into(), source: io::Error::from(e) })
}

#[cfg(test)]
mod tests {
    use super::*;
    use std::collections::HashMap;

    fn dirs(vars: &[(&str, &str)]) -> Dirs {
        let map: HashMap<String, OsString> = vars.iter().map(|(k, v)| (k.to_string(), OsString::from(v))).collect();
        Dirs::from_vars(|k| map.get(k).cloned(), 1000).unwrap()
    }

    #[test]
    fn xdg_variables_win() {
        let d = dirs(&[
            ("HOME", "/home/u"),
            ("XDG_CONFIG_HOME", "/c"),
            ("XDG_STATE_HOME", "/s"),
            ("XDG_CACHE_HOME", "/k"),
            ("XDG_RUNTIME_DIR", "/run/user/1000"),
        ]);
        assert_eq!(d.config, PathBuf::from("/c/banger"));
        assert_eq!(d.state, PathBuf::from("/s/banger"));
        assert_eq!(d.cache, PathBuf::from("/k/banger"));
        assert_eq!(d.socket(), PathBuf::from("/run/user/1000/banger/bangerd.sock"));
        assert_eq!(d.config_file(), PathBuf::from("/c/banger/config.toml"));
    }

    #[test]
    fn home_fallbacks_and_relative_values_ignored() {
        let d = dirs(&[("HOME", "/home/u"), ("XDG_CONFIG_HOME", "relative/path")]);
        assert_eq!(d.config, PathBuf::from("/home/u/.config/banger"));
        assert_eq!(d.state, PathBuf::from("/home/u/.local/state/banger"));
        assert_eq!(d.cache, PathBuf::from("/home/u/.cache/banger"));
        assert_eq!(d.run, PathBuf::from("/tmp/banger-1000"));
        let d = dirs(&[("HOME", "/home/u"), ("TMPDIR", "/var/tmp")]);
        assert_eq!(d.socket(), PathBuf::from("/var/tmp/banger-1000/bangerd.sock"));
    }

    #[test]
    fn private_dir_is_created_0700_and_tightened() {
        let tmp = tempfile::tempdir().unwrap();
        let p = tmp.path().join("a/b/run");
        ensure_private_dir(&p).unwrap();
        assert_eq!(fs::metadata(&p).unwrap().mode() & 0o777, 0o700);
        fs::set_permissions(&p, fs::Permissions::from_mode(0o755)).unwrap();
        ensure_private_dir(&p).unwrap();
        assert_eq!(fs::metadata(&p).unwrap().mode() & 0o777, 0o700);
    }

    #[test]
    fn private_dir_refuses_symlinks_and_files() {
        let tmp = tempfile::tempdir().unwrap();
        let target = tmp.path().join("elsewhere");
        fs::create_dir(&target).unwrap();
        let link = tmp.path().join("run");
        std::os::unix::fs::symlink(&target, &link).unwrap();
        assert!(matches!(ensure_private_dir(&link), Err(DirsError::NotADirectory { .. })));
        let file = tmp.path().join("file");
        fs::write(&file, "x").unwrap();
        assert!(matches!(ensure_private_dir(&file), Err(DirsError::NotADirectory { .. })));
    }

    #[test]
    fn private_dir_refuses_another_users_dir() {
        let tmp = tempfile::tempdir().unwrap();
        let p = tmp.path().join("run");
        fs::create_dir(&p).unwrap();
        if nix::unistd::geteuid().is_root() {
            nix::unistd::chown(&p, Some(nix::unistd::Uid::from_raw(65534)), None).unwrap();
            let err = ensure_private_dir(&p).unwrap_err();
            assert!(matches!(err, DirsError::NotOwned { owner: 65534, .. }), "{err}");
            assert_eq!(err.exit_code(), banger_api::exit::PERMISSION);
        } else {
            eprintln!("SKIP private_dir_refuses_another_users_dir: needs root to chown a directory");
        }
    }

    #[test]
    fn state_dir_under_a_file_is_a_clear_error() {
        let tmp = tempfile::tempdir().unwrap();
        let file = tmp.path().join("file");
        fs::write(&file, "x").unwrap();
        let err = ensure_writable_dir(&file.join("banger")).unwrap_err();
        assert!(err.to_string().starts_with("cannot create directory"), "{err}");
        assert!(err.to_string().contains("file/banger"), "{err}");
    }
}

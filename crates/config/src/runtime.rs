//! Which runtime bundle directory to use.
//!
//! In order: `BANGER_RUNTIME_DIR`, `runtime_dir` in the config file, then the layout of the
//! running executable — built in a source checkout (`<checkout>/target/<profile>/banger`) it is
//! `<checkout>/runtime`; installed as `PREFIX/bin/banger` it is `PREFIX/lib/banger`. Every
//! `default_*` path in the config resolves inside this directory unless it is absolute.

use serde::Serialize;
use std::path::{Path, PathBuf};

/// The environment variable that overrides every other choice of runtime dir.
pub const ENV_RUNTIME_DIR: &str = "BANGER_RUNTIME_DIR";

/// How the runtime directory was chosen.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize)]
#[serde(rename_all = "snake_case")]
pub enum RuntimeSource {
    Env,
    Config,
    SourceCheckout,
    InstallPrefix,
}

impl RuntimeSource {
    pub fn describe(self) -> &'static str {
        match self {
            RuntimeSource::Env => "BANGER_RUNTIME_DIR",
            RuntimeSource::Config => "runtime_dir in config",
            RuntimeSource::SourceCheckout => "source checkout",
            RuntimeSource::InstallPrefix => "install prefix",
        }
    }
}

#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
pub enum RuntimeError {
    #[error("runtime bundle directory {dir} does not exist (chosen by {}); {}", .chosen_by.describe(), remedy(*.chosen_by))]
    DirMissing { dir: PathBuf, chosen_by: RuntimeSource },
    #[error("runtime bundle file {path} ({key}) is missing; {}", remedy(*.chosen_by))]
    FileMissing { path: PathBuf, key: String, chosen_by: RuntimeSource },
}

impl RuntimeError {
    pub fn exit_code(&self) -> i32 {
        banger_api::exit::RUNTIME
    }
}

fn remedy(source: RuntimeSource) -> &'static str {
    match source {
        RuntimeSource::InstallPrefix => {
            "install the bundle with `make install` from a checkout that has one (`make runtime-bundle` or `make runtime-build` there first)"
        }
        _ => "run `make runtime-bundle` to fetch the bundle, or `make runtime-build` to build it from Debian packages",
    }
}

/// The resolved runtime bundle directory.
#[derive(Debug, Clone, PartialEq, Eq, Serialize)]
pub struct RuntimeDir {
    pub path: PathBuf,
    pub source: RuntimeSource,
}

impl RuntimeDir {
    /// Resolve for this process: env, then config, then the executable's layout.
    pub fn resolve(config_runtime_dir: Option<&Path>) -> RuntimeDir {
        let exe = std::env::current_exe().ok().and_then(|p| p.canonicalize().ok()).unwrap_or_default();
        let env = std::env::var_os(ENV_RUNTIME_DIR).filter(|v| !v.is_empty()).map(PathBuf::from);
        RuntimeDir::resolve_from(env.as_deref(), config_runtime_dir, &exe)
    }

    /// Resolution with every input explicit (for tests).
    pub fn resolve_from(env: Option<&Path>, config: Option<&Path>, exe: &Path) -> RuntimeDir {
        if let Some(p) = env {
            return RuntimeDir { path: absolute(p), source: RuntimeSource::Env };
        }
        if let Some(p) = config {
            return RuntimeDir { path: p.to_path_buf(), source: RuntimeSource::Config };
        }
        let exe_dir = exe.parent().unwrap_or(Path::new("/"));
        if exe_dir.file_name().is_some_and(|n| n == "bin") {
            return RuntimeDir { path: prefix_lib(exe_dir), source: RuntimeSource::InstallPrefix };
        }
        for dir in exe_dir.ancestors() {
            if dir.file_name().is_some_and(|n| n == "target")
                && let Some(root) = dir.parent()
                && root.join("Cargo.toml").is_file()
            {
                return RuntimeDir { path: root.join("runtime"), source: RuntimeSource::SourceCheckout };
            }
        }
        RuntimeDir { path: prefix_lib(exe_dir), source: RuntimeSource::InstallPrefix }
    }

    pub fn exists(&self) -> bool {
        self.path.is_dir()
    }

    /// `path` as used for config key `key`: absolute stays, relative goes inside the runtime dir.
    pub fn join(&self, path: &Path) -> PathBuf {
        if path.is_absolute() { path.to_path_buf() } else { self.path.join(path) }
    }

    /// Like [`RuntimeDir::join`], but the file must exist; otherwise one clear error naming the
    /// missing path, the config key and the command that provides it.
    pub fn require(&self, key: &str, path: &Path) -> Result<PathBuf, RuntimeError> {
        let full = self.join(path);
        if full.exists() {
            return Ok(full);
        }
        if !path.is_absolute() && !self.exists() {
            return Err(RuntimeError::DirMissing { dir: self.path.clone(), chosen_by: self.source });
        }
        Err(RuntimeError::FileMissing { path: full, key: key.into(), chosen_by: self.source })
    }
}

/// `PREFIX/bin` → `PREFIX/lib/banger` (lexically; `..` is not left in the path).
fn prefix_lib(bin_dir: &Path) -> PathBuf {
    bin_dir.parent().unwrap_or(Path::new("/")).join("lib").join("banger")
}

fn absolute(p: &Path) -> PathBuf {
    if p.is_absolute() {
        p.to_path_buf()
    } else {
        std::env::current_dir().map(|d| d.join(p)).unwrap_or_else(|_| p.to_path_buf())
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn env_beats_config_beats_layout() {
        let exe = Path::new("/usr/local/bin/banger");
        let r = RuntimeDir::resolve_from(Some(Path::new("/env/rt")), Some(Path::new("/cfg/rt")), exe);
        assert_eq!((r.path.as_path(), r.source), (Path::new("/env/rt"), RuntimeSource::Env));
        let r = RuntimeDir::resolve_from(None, Some(Path::new("/cfg/rt")), exe);
        assert_eq!((r.path.as_path(), r.source), (Path::new("/cfg/rt"), RuntimeSource::Config));
    }

    #[test]
    fn installed_layout_uses_prefix_lib_banger() {
        let r = RuntimeDir::resolve_from(None, None, Path::new("/home/u/.local/bin/banger"));
        assert_eq!(r.path, PathBuf::from("/home/u/.local/lib/banger"));
        assert_eq!(r.source, RuntimeSource::InstallPrefix);
    }

    #[test]
    fn source_checkout_uses_runtime_at_the_root() {
        let tmp = tempfile::tempdir().unwrap();
        let root = tmp.path().join("checkout");
        std::fs::create_dir_all(root.join("target/release")).unwrap();
        std::fs::write(root.join("Cargo.toml"), "[workspace]\n").unwrap();
        for exe in
            ["target/release/banger", "target/debug/deps/cli-123", "target/x86_64-unknown-linux-gnu/release/bangerd"]
        {
            let r = RuntimeDir::resolve_from(None, None, &root.join(exe));
            assert_eq!(r.path, root.join("runtime"), "{exe}");
            assert_eq!(r.source, RuntimeSource::SourceCheckout);
        }
        // A `target` directory without a Cargo.toml beside it is not a checkout.
        std::fs::remove_file(root.join("Cargo.toml")).unwrap();
        let r = RuntimeDir::resolve_from(None, None, &root.join("target/release/banger"));
        assert_eq!(r.source, RuntimeSource::InstallPrefix);
    }

    #[test]
    fn relative_paths_resolve_inside_absolute_stay() {
        let r = RuntimeDir { path: "/rt".into(), source: RuntimeSource::Config };
        assert_eq!(r.join(Path::new("vmlinux")), PathBuf::from("/rt/vmlinux"));
        assert_eq!(r.join(Path::new("/boot/vmlinux")), PathBuf::from("/boot/vmlinux"));
    }

    #[test]
    fn missing_dir_and_file_messages_name_path_and_remedy() {
        let tmp = tempfile::tempdir().unwrap();
        let gone = RuntimeDir { path: tmp.path().join("runtime"), source: RuntimeSource::SourceCheckout };
        let err = gone.require("default_kernel", Path::new("vmlinux")).unwrap_err();
        let msg = err.to_string();
        assert!(msg.contains(&gone.path.display().to_string()), "{msg}");
        assert!(msg.contains("make runtime-bundle"), "{msg}");
        assert_eq!(err.exit_code(), banger_api::exit::RUNTIME);

        std::fs::create_dir(&gone.path).unwrap();
        let err = gone.require("default_kernel", Path::new("vmlinux")).unwrap_err();
        let msg = err.to_string();
        assert!(msg.contains(&format!("{}/vmlinux (default_kernel) is missing", gone.path.display())), "{msg}");

        std::fs::write(gone.path.join("vmlinux"), "elf").unwrap();
        assert_eq!(gone.require("default_kernel", Path::new("vmlinux")).unwrap(), gone.path.join("vmlinux"));

        let installed = RuntimeDir { path: "/p/lib/banger".into(), source: RuntimeSource::InstallPrefix };
        let msg = installed.require("default_initrd", Path::new("initrd.img")).unwrap_err().to_string();
        assert!(msg.contains("make install"), "{msg}");
    }
}

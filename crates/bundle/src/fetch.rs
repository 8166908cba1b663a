//! Download, verify, unpack and atomically install a runtime bundle.

use std::fs::{self, File};
use std::io::{self, Read, Write};
use std::os::unix::fs::PermissionsExt;
use std::path::{Path, PathBuf};
use std::time::Duration;

use sha2::{Digest, Sha256};

use crate::error::BundleError;
use crate::manifest::{Manifest, Source};
use crate::progress::Progress;
use crate::unpack;

const IO_BUF: usize = 1 << 20;

/// What [`fetch`] installed.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct FetchSummary {
    /// The manifest's `version`.
    pub version: String,
    /// The URL the bundle came from.
    pub url: String,
    /// Verified SHA-256 of the downloaded `.tar.gz`.
    pub sha256: String,
    /// Size of the downloaded `.tar.gz` in bytes.
    pub bytes: u64,
    /// Number of archive entries unpacked.
    pub entries: u64,
    /// The runtime directory that now holds the bundle.
    pub runtime_dir: PathBuf,
    /// Whether an existing runtime directory was replaced.
    pub replaced: bool,
    /// Set if the staging directory (holding the previous runtime) could not
    /// be removed after the swap; the new runtime is installed regardless and
    /// the caller may warn about this path.
    pub leftover: Option<PathBuf>,
}

/// Downloads the bundle pinned by `manifest`, verifies its SHA-256, unpacks it
/// strictly into a staging directory next to `runtime_dir`, checks that every
/// file listed in the manifest is present, and then swaps it into place.
///
/// The download is streamed to disk and hashed on the fly; nothing is unpacked
/// before the checksum matches. On any error `runtime_dir` is left exactly as it
/// was and the staging directory is removed.
///
/// Unpacking refuses entries and archives above fixed size limits (64 GiB per
/// file, 128 GiB in all, 100,000 entries) and stops before the filesystem of
/// `runtime_dir` has less than 5% (at most 256 MiB) free.
pub fn fetch(manifest: &Manifest, runtime_dir: &Path, progress: &dyn Progress) -> Result<FetchSummary, BundleError> {
    fetch_with(manifest, runtime_dir, progress, &unpack::Limits::default())
}

/// [`fetch`] with explicit unpacking limits.
pub(crate) fn fetch_with(
    manifest: &Manifest,
    runtime_dir: &Path,
    progress: &dyn Progress,
    limits: &unpack::Limits,
) -> Result<FetchSummary, BundleError> {
    let (url, source) = manifest.source()?;
    let expected = manifest.sha256.clone().ok_or_else(|| BundleError::ManifestField {
        path: manifest.path.clone(),
        field: "sha256",
        problem: "it is missing, but is required when `url` is set".into(),
    })?;

    let runtime_dir = std::path::absolute(runtime_dir).map_err(|e| BundleError::io("resolve", runtime_dir, e))?;
    let (parent, name) = match (runtime_dir.parent(), runtime_dir.file_name()) {
        (Some(p), Some(n)) => (p.to_path_buf(), n.to_string_lossy().into_owned()),
        _ => {
            return Err(BundleError::InvalidInput {
                path: runtime_dir.clone(),
                reason: "the runtime directory must have a parent directory and a name".into(),
            });
        }
    };
    match fs::symlink_metadata(&runtime_dir) {
        Ok(m) if !m.is_dir() && !m.file_type().is_symlink() => {
            return Err(BundleError::InvalidInput {
                path: runtime_dir.clone(),
                reason: "the runtime directory path exists but is not a directory".into(),
            });
        }
        _ => {}
    }
    fs::create_dir_all(&parent).map_err(|e| BundleError::io("create directory", &parent, e))?;
    // The staging directory lives next to runtime_dir (same filesystem, so the
    // final renames are atomic) and is removed when `staging` is dropped.
    let staging = tempfile::Builder::new()
        .prefix(&format!(".{name}.staging-"))
        .tempdir_in(&parent)
        .map_err(|e| BundleError::io("create a staging directory in", &parent, e))?;
    let archive = staging.path().join("bundle.tar.gz");
    let tree = staging.path().join("tree");

    progress.stage(&format!("downloading {url}"));
    let (bytes, actual) = download(&url, &source, &archive, progress)?;

    progress.stage("verifying SHA-256");
    if actual != expected {
        return Err(BundleError::ChecksumMismatch { url, expected, actual });
    }

    fs::create_dir(&tree).map_err(|e| BundleError::io("create directory", &tree, e))?;
    fs::set_permissions(&tree, fs::Permissions::from_mode(0o755))
        .map_err(|e| BundleError::io("set permissions on", &tree, e))?;
    let unpacked = unpack::unpack(&archive, &tree, &url, progress, limits).map_err(|e| match e {
        // The staging directory is an implementation detail: name where the runtime goes.
        BundleError::NoSpace { url, entry, available, reserve, .. } => {
            BundleError::NoSpace { url, path: parent.clone(), entry, available, reserve }
        }
        other => other,
    })?;
    fs::remove_file(&archive).map_err(|e| BundleError::io("remove", &archive, e))?;

    for f in &manifest.files {
        if fs::metadata(tree.join(f)).is_err() {
            return Err(BundleError::MissingFile { url, file: f.clone() });
        }
    }

    progress.stage(&format!("installing into {}", runtime_dir.display()));
    let replaced = swap_into_place(&tree, &runtime_dir, staging.path())?;
    // The new runtime is in place: from here on nothing may fail. Removing the
    // staging directory (which now holds the previous runtime) is best effort.
    let staging_path = staging.path().to_path_buf();
    let leftover = staging.close().err().map(|_| staging_path);

    Ok(FetchSummary {
        version: manifest.version.clone(),
        url,
        sha256: actual,
        bytes,
        entries: unpacked.entries,
        runtime_dir,
        replaced,
        leftover,
    })
}

/// Moves `new` to `target`. If `target` exists it is first renamed into
/// `aside_dir`; if moving `new` in fails, it is renamed back.
fn swap_into_place(new: &Path, target: &Path, aside_dir: &Path) -> Result<bool, BundleError> {
    let old = aside_dir.join("previous");
    let existed = match fs::symlink_metadata(target) {
        Ok(_) => {
            fs::rename(target, &old).map_err(|e| BundleError::io("move aside", target, e))?;
            true
        }
        Err(e) if e.kind() == io::ErrorKind::NotFound => false,
        Err(e) => return Err(BundleError::io("inspect", target, e)),
    };
    if let Err(e) = fs::rename(new, target) {
        if existed {
            let _ = fs::rename(&old, target);
        }
        return Err(BundleError::io("move the new bundle into", target, e));
    }
    Ok(existed)
}

/// Streams the bundle into `dest`, hashing on the fly. Returns (bytes, sha256).
fn download(url: &str, source: &Source, dest: &Path, progress: &dyn Progress) -> Result<(u64, String), BundleError> {
    let mut out = File::create(dest).map_err(|e| BundleError::io("create", dest, e))?;
    let result = match source {
        Source::File(path) => {
            let mut f = match File::open(path) {
                Ok(f) => f,
                Err(e) if e.kind() == io::ErrorKind::NotFound => {
                    return Err(BundleError::SourceNotFound { path: path.clone() });
                }
                Err(e) => return Err(BundleError::io("open", path, e)),
            };
            let meta = f.metadata().map_err(|e| BundleError::io("stat", path, e))?;
            if !meta.is_file() {
                return Err(BundleError::InvalidInput {
                    path: path.clone(),
                    reason: "the bundle source is not a regular file".into(),
                });
            }
            stream(url, &mut f, Some(meta.len()), &mut out, dest, progress)
        }
        Source::Http(_) => {
            let agent = ureq::Agent::config_builder()
                .http_status_as_error(false)
                .timeout_connect(Some(Duration::from_secs(30)))
                .timeout_recv_response(Some(Duration::from_secs(60)))
                .timeout_per_read(Some(Duration::from_secs(60)))
                .user_agent(concat!("banger-bundle/", env!("CARGO_PKG_VERSION")))
                .build()
                .new_agent();
            let resp = agent
                .get(url)
                .call()
                .map_err(|e| BundleError::Download { url: url.to_string(), message: e.to_string() })?;
            let status = resp.status().as_u16();
            if !(200..300).contains(&status) {
                return Err(BundleError::HttpStatus { url: url.to_string(), status });
            }
            let body = resp.into_body();
            let len = body.content_length();
            let mut reader = body.into_reader();
            stream(url, &mut reader, len, &mut out, dest, progress)
        }
    }?;
    Ok(result)
}

/// Copies `r` to `out` while hashing, and checks the length against `expected`.
fn stream(
    url: &str,
    r: &mut dyn Read,
    expected: Option<u64>,
    out: &mut File,
    dest: &Path,
    progress: &dyn Progress,
) -> Result<(u64, String), BundleError> {
    progress.start(expected);
    let mut hasher = Sha256::new();
    let mut buf = vec![0u8; IO_BUF];
    let mut received = 0u64;
    loop {
        let n = match r.read(&mut buf) {
            Ok(0) => break,
            Ok(n) => n,
            Err(e) if e.kind() == io::ErrorKind::Interrupted => continue,
            Err(e) => {
                // The peer closing before Content-Length was reached is a truncation.
                if let Some(expected) = expected.filter(|&x| received < x)
                    && matches!(
                        e.kind(),
                        io::ErrorKind::UnexpectedEof
                            | io::ErrorKind::ConnectionReset
                            | io::ErrorKind::ConnectionAborted
                    )
                {
                    return Err(BundleError::Truncated { url: url.to_string(), expected, received });
                }
                return Err(BundleError::Download { url: url.to_string(), message: e.to_string() });
            }
        };
        hasher.update(&buf[..n]);
        out.write_all(&buf[..n]).map_err(|e| BundleError::io("write", dest, e))?;
        received += n as u64;
        progress.advance(n as u64);
    }
    if let Some(expected) = expected
        && received != expected
    {
        return Err(BundleError::Truncated { url: url.to_string(), expected, received });
    }
    progress.finish();
    Ok((received, hex::encode(hasher.finalize())))
}

//! The error type shared by every operation of this crate.

use std::io;
use std::path::PathBuf;

/// Everything that can go wrong while loading a manifest, fetching, unpacking or
/// packaging a runtime bundle.
///
/// Every variant displays as one sentence that names the file, directory or URL
/// involved. [`BundleError::exit_code`] maps a variant to the project's exit-code
/// convention.
#[derive(Debug, thiserror::Error)]
#[non_exhaustive]
pub enum BundleError {
    /// The manifest file does not exist.
    #[error("runtime bundle manifest {} does not exist", path.display())]
    ManifestNotFound { path: PathBuf },

    /// The manifest is not valid TOML.
    #[error("runtime bundle manifest {} is not valid TOML: {message}", path.display())]
    ManifestSyntax { path: PathBuf, message: String },

    /// A manifest field is missing or has an invalid value.
    #[error("runtime bundle manifest {} has an invalid `{field}` field: {problem}", path.display())]
    ManifestField { path: PathBuf, field: &'static str, problem: String },

    /// The manifest does not point at a published bundle yet.
    #[error(
        "runtime bundle manifest {} has no published bundle yet (its `url` is empty); build one locally with `make runtime-build` (or `banger runtime build`)",
        path.display()
    )]
    NoPublishedUrl { path: PathBuf },

    /// The bundle URL has an unsupported scheme or cannot be parsed.
    #[error("bundle URL {url} is not usable: {reason}")]
    BadUrl { url: String, reason: String },

    /// An argument or a file in the tree to package is not acceptable.
    #[error("cannot use {}: {reason}", path.display())]
    InvalidInput { path: PathBuf, reason: String },

    /// A source (a `file://` bundle, or the directory to package) does not exist.
    #[error("{} does not exist", path.display())]
    SourceNotFound { path: PathBuf },

    /// The HTTP server answered with a non-success status.
    #[error("download of {url} failed with HTTP status {status}")]
    HttpStatus { url: String, status: u16 },

    /// A network or transport error while downloading.
    #[error("download of {url} failed: {message}")]
    Download { url: String, message: String },

    /// Fewer (or more) bytes arrived than announced.
    #[error("download of {url} is truncated: received {received} of {expected} bytes")]
    Truncated { url: String, expected: u64, received: u64 },

    /// The downloaded bundle does not have the SHA-256 pinned in the manifest.
    #[error("bundle {url} has SHA-256 {actual}, but the manifest pins {expected}")]
    ChecksumMismatch { url: String, expected: String, actual: String },

    /// The bundle is not a readable gzip-compressed tar archive.
    #[error("bundle {url} is not a valid .tar.gz archive: {message}")]
    CorruptArchive { url: String, message: String },

    /// The archive contains an entry that could escape or subvert the runtime directory.
    #[error("bundle {url} contains an unsafe entry `{entry}`: {reason}")]
    UnsafeEntry { url: String, entry: String, reason: String },

    /// The archive would unpack to more than the unpacker's limits allow: an entry or the
    /// whole bundle too large, too many entries, or oversized headers or trailing data
    /// (the shapes a decompression bomb takes).
    #[error("bundle {url} is too large to unpack: {reason}")]
    TooLarge { url: String, reason: String },

    /// Writing the next entry would leave the filesystem that receives the bundle with
    /// less than the reserve the unpacker keeps free.
    #[error(
        "not enough free space to unpack bundle {url} in {}: writing entry `{entry}` would leave less than {} free ({} available)",
        path.display(),
        human_bytes(*reserve),
        human_bytes(*available)
    )]
    NoSpace { url: String, path: PathBuf, entry: String, available: u64, reserve: u64 },

    /// A file listed in the manifest's `files` is absent from the bundle.
    #[error("bundle {url} lacks `{file}`, which the manifest lists in `files`")]
    MissingFile { url: String, file: String },

    /// Any other I/O failure on a local path.
    #[error("failed to {op} {}: {error}", path.display())]
    Io { op: &'static str, path: PathBuf, error: io::Error },
}

impl BundleError {
    /// Exit code following the project's convention: 2 bad input, 3 not found,
    /// 7 bundle integrity problem, 1 anything else.
    pub fn exit_code(&self) -> i32 {
        match self {
            BundleError::ManifestSyntax { .. }
            | BundleError::ManifestField { .. }
            | BundleError::BadUrl { .. }
            | BundleError::InvalidInput { .. } => 2,
            BundleError::ManifestNotFound { .. } | BundleError::SourceNotFound { .. } => 3,
            BundleError::HttpStatus { status: 404 | 410, .. } => 3,
            BundleError::NoPublishedUrl { .. }
            | BundleError::Truncated { .. }
            | BundleError::ChecksumMismatch { .. }
            | BundleError::CorruptArchive { .. }
            | BundleError::UnsafeEntry { .. }
            | BundleError::TooLarge { .. }
            | BundleError::MissingFile { .. } => 7,
            BundleError::HttpStatus { .. }
            | BundleError::Download { .. }
            | BundleError::NoSpace { .. }
            | BundleError::Io { .. } => 1,
        }
    }

    pub(crate) fn io(op: &'static str, path: impl Into<PathBuf>, error: io::Error) -> Self {
        BundleError::Io { op, path: path.into(), error }
    }
}

/// `n` bytes in binary units, e.g. "64 GiB", "1.5 MiB", "512 bytes".
pub(crate) fn human_bytes(n: u64) -> String {
    const UNITS: [&str; 6] = ["KiB", "MiB", "GiB", "TiB", "PiB", "EiB"];
    if n < 1024 {
        return format!("{n} bytes");
    }
    let mut v = n as f64 / 1024.0;
    let mut unit = 0;
    while v >= 1024.0 && unit < UNITS.len() - 1 {
        v /= 1024.0;
        unit += 1;
    }
    if v.fract() == 0.0 { format!("{v:.0} {}", UNITS[unit]) } else { format!("{v:.1} {}", UNITS[unit]) }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn exit_codes_follow_convention() {
        let p = PathBuf::from("/m.toml");
        assert_eq!(BundleError::ManifestNotFound { path: p.clone() }.exit_code(), 3);
        assert_eq!(BundleError::ManifestField { path: p.clone(), field: "sha256", problem: "x".into() }.exit_code(), 2);
        assert_eq!(BundleError::NoPublishedUrl { path: p.clone() }.exit_code(), 7);
        assert_eq!(BundleError::HttpStatus { url: "u".into(), status: 404 }.exit_code(), 3);
        assert_eq!(BundleError::HttpStatus { url: "u".into(), status: 500 }.exit_code(), 1);
        assert_eq!(BundleError::io("read", "/x", io::Error::other("boom")).exit_code(), 1);
        assert_eq!(BundleError::TooLarge { url: "u".into(), reason: "r".into() }.exit_code(), 7);
        let full = BundleError::NoSpace { url: "u".into(), path: p, entry: "e".into(), available: 1, reserve: 2 };
        assert_eq!(full.exit_code(), 1);
    }

    #[test]
    fn human_bytes_uses_binary_units() {
        assert_eq!(human_bytes(0), "0 bytes");
        assert_eq!(human_bytes(1023), "1023 bytes");
        assert_eq!(human_bytes(1024), "1 KiB");
        assert_eq!(human_bytes(1536 << 10), "1.5 MiB");
        assert_eq!(human_bytes(64 << 30), "64 GiB");
        assert_eq!(human_bytes(1 << 40), "1 TiB");
        assert_eq!(human_bytes(u64::MAX), "16 EiB");
    }

    #[test]
    fn no_published_url_message_points_to_local_build() {
        let msg = BundleError::NoPublishedUrl { path: "/src/runtime-bundle.toml".into() }.to_string();
        assert!(msg.contains("/src/runtime-bundle.toml"), "{msg}");
        assert!(msg.contains("no published bundle yet"), "{msg}");
        assert!(msg.contains("make runtime-build"), "{msg}");
        assert!(msg.contains("banger runtime build"), "{msg}");
    }
}

//! The checked-in `runtime-bundle.toml` manifest.

use std::fs;
use std::io::{self, Write};
use std::os::unix::fs::PermissionsExt;
use std::path::{Component, Path, PathBuf};

use toml_edit::{DocumentMut, Item, Value};

use crate::error::BundleError;

/// A parsed `runtime-bundle.toml`.
///
/// ```toml
/// version = "2026.11.1"
/// url = "https://example.org/banger-runtime.tar.gz"  # http, https, file:// or a path
/// sha256 = "…64 hex digits…"
/// files = ["vmlinux", "initrd.img", "rootfs.ext4", "id_ed25519"]
/// ```
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Manifest {
    /// The file this manifest was loaded from (relative `url` paths resolve against its directory).
    pub path: PathBuf,
    /// Bundle version string.
    pub version: String,
    /// Where the bundle is published; `None` when `url` is absent or empty.
    pub url: Option<String>,
    /// Lower-case hex SHA-256 of the `.tar.gz`; `None` when absent or empty
    /// (only allowed while `url` is unset).
    pub sha256: Option<String>,
    /// Relative paths every bundle must contain.
    pub files: Vec<String>,
}

/// Where a bundle comes from, after URL parsing.
#[derive(Debug, Clone, PartialEq, Eq)]
pub(crate) enum Source {
    Http(String),
    File(PathBuf),
}

impl Manifest {
    /// Reads and validates the manifest at `path`.
    pub fn load(path: impl AsRef<Path>) -> Result<Manifest, BundleError> {
        let path = path.as_ref();
        let doc = read_document(path)?;
        let field_err = |field: &'static str, problem: String| BundleError::ManifestField {
            path: path.to_path_buf(),
            field,
            problem,
        };

        let version = match doc.get("version") {
            None => return Err(field_err("version", "it is missing".into())),
            Some(item) => match item.as_str() {
                Some(s) if !s.trim().is_empty() => s.to_string(),
                Some(_) => return Err(field_err("version", "it is empty".into())),
                None => return Err(field_err("version", "it must be a string".into())),
            },
        };

        let url = match doc.get("url") {
            None => None,
            Some(item) => match item.as_str() {
                Some(s) if s.trim().is_empty() => None,
                Some(s) => {
                    parse_source(s, path).map_err(|reason| field_err("url", reason))?;
                    Some(s.to_string())
                }
                None => return Err(field_err("url", "it must be a string".into())),
            },
        };

        let sha256 = match doc.get("sha256") {
            None => None,
            Some(item) => match item.as_str() {
                Some(s) if s.trim().is_empty() => None,
                Some(s) => Some(
                    normalize_sha256(s)
                        .ok_or_else(|| field_err("sha256", format!("`{s}` is not 64 hexadecimal digits")))?,
                ),
                None => return Err(field_err("sha256", "it must be a string".into())),
            },
        };
        if url.is_some() && sha256.is_none() {
            return Err(field_err("sha256", "it is missing, but is required when `url` is set".into()));
        }

        let files = match doc.get("files") {
            None => return Err(field_err("files", "it is missing".into())),
            Some(item) => {
                let arr = item.as_array().ok_or_else(|| field_err("files", "it must be an array of strings".into()))?;
                let mut files = Vec::with_capacity(arr.len());
                for v in arr.iter() {
                    let s = v.as_str().ok_or_else(|| field_err("files", "every entry must be a string".into()))?;
                    if let Err(reason) = check_relative(s) {
                        return Err(field_err("files", format!("entry `{s}` {reason}")));
                    }
                    files.push(s.to_string());
                }
                files
            }
        };

        Ok(Manifest { path: path.to_path_buf(), version, url, sha256, files })
    }

    pub(crate) fn source(&self) -> Result<(String, Source), BundleError> {
        let url = self.url.clone().ok_or_else(|| BundleError::NoPublishedUrl { path: self.path.clone() })?;
        let source =
            parse_source(&url, &self.path).map_err(|reason| BundleError::BadUrl { url: url.clone(), reason })?;
        Ok((url, source))
    }
}

fn read_document(path: &Path) -> Result<DocumentMut, BundleError> {
    let text = match fs::read_to_string(path) {
        Ok(t) => t,
        Err(e) if e.kind() == io::ErrorKind::NotFound => {
            return Err(BundleError::ManifestNotFound { path: path.to_path_buf() });
        }
        Err(e) => return Err(BundleError::io("read", path, e)),
    };
    text.parse::<DocumentMut>()
        .map_err(|e| BundleError::ManifestSyntax { path: path.to_path_buf(), message: e.message().trim().to_string() })
}

/// Returns the lower-case form of `s` if it is exactly 64 hex digits.
pub(crate) fn normalize_sha256(s: &str) -> Option<String> {
    let s = s.trim();
    (s.len() == 64 && s.bytes().all(|b| b.is_ascii_hexdigit())).then(|| s.to_ascii_lowercase())
}

/// Checks that `s` is a non-empty relative path without `..` or root components.
fn check_relative(s: &str) -> Result<(), &'static str> {
    if s.is_empty() {
        return Err("is empty");
    }
    let p = Path::new(s);
    if p.is_absolute() {
        return Err("must be a relative path");
    }
    if p.components().any(|c| matches!(c, Component::ParentDir)) {
        return Err("must not contain `..`");
    }
    if !p.components().any(|c| matches!(c, Component::Normal(_))) {
        return Err("does not name a file");
    }
    Ok(())
}

/// Parses a bundle location: `http://`, `https://`, `file://` or a plain path
/// (relative paths resolve against the manifest's directory).
pub(crate) fn parse_source(url: &str, manifest_path: &Path) -> Result<Source, String> {
    let url = url.trim();
    if let Some((scheme, rest)) = url.split_once("://") {
        match scheme.to_ascii_lowercase().as_str() {
            "http" | "https" => {
                let host = rest.split(['/', '?', '#']).next().unwrap_or("");
                if host.is_empty() {
                    return Err("it has no host".into());
                }
                Ok(Source::Http(url.to_string()))
            }
            "file" => {
                // file:///abs/path or file://localhost/abs/path
                let path = rest.strip_prefix("localhost").unwrap_or(rest);
                if !path.starts_with('/') {
                    return Err("a file:// URL must name an absolute path (file:///path)".into());
                }
                let decoded = percent_decode(path).ok_or("it has an invalid %-escape")?;
                Ok(Source::File(PathBuf::from(decoded)))
            }
            other => Err(format!("scheme `{other}` is not supported (use http, https or file)")),
        }
    } else {
        let p = Path::new(url);
        if p.is_absolute() {
            Ok(Source::File(p.to_path_buf()))
        } else {
            let base = manifest_path.parent().unwrap_or(Path::new(""));
            Ok(Source::File(base.join(p)))
        }
    }
}

fn percent_decode(s: &str) -> Option<String> {
    let bytes = s.as_bytes();
    let mut out = Vec::with_capacity(bytes.len());
    let mut i = 0;
    while i < bytes.len() {
        if bytes[i] == b'%' {
            let hex = bytes.get(i + 1..i + 3)?;
            let hex = std::str::from_utf8(hex).ok()?;
            out.push(u8::from_str_radix(hex, 16).ok()?);
            i += 3;
        } else {
            out.push(bytes[i]);
            i += 1;
        }
    }
    String::from_utf8(out).ok()
}

/// Rewrites the manifest's `sha256` (and `url`, if given) in place, preserving
/// every other key, comment and formatting. The file is replaced atomically
/// (written to a temporary file in the same directory, then renamed).
pub fn set_manifest_checksum(manifest_path: &Path, sha256: &str, url: Option<&str>) -> Result<(), BundleError> {
    let sha = normalize_sha256(sha256).ok_or_else(|| BundleError::InvalidInput {
        path: manifest_path.to_path_buf(),
        reason: format!("`{sha256}` is not a SHA-256 (64 hexadecimal digits)"),
    })?;
    if let Some(u) = url {
        parse_source(u, manifest_path).map_err(|reason| BundleError::BadUrl { url: u.to_string(), reason })?;
    }
    let mut doc = read_document(manifest_path)?;
    set_string(&mut doc, "sha256", &sha);
    if let Some(u) = url {
        set_string(&mut doc, "url", u);
    }

    let dir = match manifest_path.parent() {
        Some(d) if !d.as_os_str().is_empty() => d,
        _ => Path::new("."),
    };
    let perms = fs::metadata(manifest_path).map_err(|e| BundleError::io("stat", manifest_path, e))?.permissions();
    let mut tmp = tempfile::Builder::new()
        .prefix(".runtime-bundle.toml.")
        .suffix(".tmp")
        .tempfile_in(dir)
        .map_err(|e| BundleError::io("create a temporary file in", dir, e))?;
    tmp.write_all(doc.to_string().as_bytes())
        .and_then(|_| tmp.as_file().sync_all())
        .map_err(|e| BundleError::io("write", tmp.path().to_path_buf(), e))?;
    fs::set_permissions(tmp.path(), fs::Permissions::from_mode(perms.mode() & 0o7777))
        .map_err(|e| BundleError::io("set permissions on", tmp.path().to_path_buf(), e))?;
    tmp.persist(manifest_path).map_err(|e| BundleError::io("replace", manifest_path, e.error))?;
    Ok(())
}

/// Sets `key` to a string, keeping the existing value's surrounding decor (comments).
fn set_string(doc: &mut DocumentMut, key: &str, val: &str) {
    match doc.get_mut(key) {
        Some(Item::Value(v)) => {
            let decor = v.decor().clone();
            *v = Value::from(val);
            *v.decor_mut() = decor;
        }
        _ => {
            doc.insert(key, toml_edit::value(val));
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    const SHA: &str = "0123456789abcdef0123456789abcdef0123456789abcdef0123456789abcdef";

    fn write(dir: &Path, text: &str) -> PathBuf {
        let p = dir.join("runtime-bundle.toml");
        fs::write(&p, text).unwrap();
        p
    }

    fn field_of(e: BundleError) -> &'static str {
        match e {
            BundleError::ManifestField { field, .. } => field,
            other => panic!("expected a field error, got {other:?}"),
        }
    }

    #[test]
    fn loads_valid_manifest() {
        let d = tempfile::tempdir().unwrap();
        let p = write(
            d.path(),
            &format!(
                "version = \"2026.11.1\"\nurl = \"https://h/x.tar.gz\"\nsha256 = \"{}\"\nfiles = [\"vmlinux\", \"bin/fc\"]\n",
                SHA.to_uppercase()
            ),
        );
        let m = Manifest::load(&p).unwrap();
        assert_eq!(m.version, "2026.11.1");
        assert_eq!(m.url.as_deref(), Some("https://h/x.tar.gz"));
        assert_eq!(m.sha256.as_deref(), Some(SHA));
        assert_eq!(m.files, vec!["vmlinux", "bin/fc"]);
    }

    #[test]
    fn empty_url_means_unpublished() {
        let d = tempfile::tempdir().unwrap();
        let p = write(d.path(), "version = \"1\"\nurl = \"\"\nsha256 = \"\"\nfiles = []\n");
        let m = Manifest::load(&p).unwrap();
        assert_eq!(m.url, None);
        assert!(matches!(m.source(), Err(BundleError::NoPublishedUrl { .. })));
    }

    #[test]
    fn rejects_bad_fields_naming_file_and_field() {
        let d = tempfile::tempdir().unwrap();
        let cases: &[(&str, &str)] = &[
            ("files = []\n", "version"),
            ("version = 3\nfiles = []\n", "version"),
            ("version = \"1\"\n", "files"),
            ("version = \"1\"\nfiles = \"x\"\n", "files"),
            ("version = \"1\"\nfiles = [\"../x\"]\n", "files"),
            ("version = \"1\"\nfiles = [\"/etc/passwd\"]\n", "files"),
            ("version = \"1\"\nsha256 = \"abc\"\nfiles = []\n", "sha256"),
            ("version = \"1\"\nurl = \"https://h/x\"\nfiles = []\n", "sha256"),
            (&format!("version = \"1\"\nurl = \"ftp://h/x\"\nsha256 = \"{SHA}\"\nfiles = []\n"), "url"),
            (&format!("version = \"1\"\nurl = \"file://relative/x\"\nsha256 = \"{SHA}\"\nfiles = []\n"), "url"),
        ];
        for (text, field) in cases {
            let p = write(d.path(), text);
            let err = Manifest::load(&p).unwrap_err();
            let msg = err.to_string();
            assert!(msg.contains(&p.display().to_string()), "{msg}");
            assert!(msg.contains(&format!("`{field}`")), "{msg}");
            assert_eq!(err.exit_code(), 2);
            assert_eq!(field_of(err), *field, "for {text:?}");
        }
    }

    #[test]
    fn missing_and_invalid_toml() {
        let d = tempfile::tempdir().unwrap();
        let err = Manifest::load(d.path().join("nope.toml")).unwrap_err();
        assert!(matches!(err, BundleError::ManifestNotFound { .. }));
        assert_eq!(err.exit_code(), 3);
        let p = write(d.path(), "version = \n");
        let err = Manifest::load(&p).unwrap_err();
        assert!(matches!(err, BundleError::ManifestSyntax { .. }), "{err:?}");
        assert_eq!(err.exit_code(), 2);
    }

    #[test]
    fn parses_sources() {
        let m = Path::new("/src/runtime-bundle.toml");
        assert_eq!(parse_source("file:///a/b%20c.tgz", m).unwrap(), Source::File("/a/b c.tgz".into()));
        assert_eq!(parse_source("file://localhost/a", m).unwrap(), Source::File("/a".into()));
        assert_eq!(parse_source("out/b.tgz", m).unwrap(), Source::File("/src/out/b.tgz".into()));
        assert_eq!(parse_source("HTTPS://h/x", m).unwrap(), Source::Http("HTTPS://h/x".into()));
        assert!(parse_source("http:///x", m).is_err());
        assert!(parse_source("gopher://h/x", m).is_err());
    }

    #[test]
    fn set_checksum_preserves_everything_else() {
        let d = tempfile::tempdir().unwrap();
        let original = "# pinned runtime bundle\nversion = \"2026.11.1\" # bump on rebuild\nurl = \"\"\nsha256 = \"\" # filled by `banger runtime package`\nfiles = [\n  \"vmlinux\", # kernel\n  \"rootfs.ext4\",\n]\n\n[extra]\nkeep = true\n";
        let p = write(d.path(), original);
        fs::set_permissions(&p, fs::Permissions::from_mode(0o640)).unwrap();
        set_manifest_checksum(&p, &SHA.to_uppercase(), Some("https://h/b.tar.gz")).unwrap();
        let text = fs::read_to_string(&p).unwrap();
        let expected = original
            .replace("url = \"\"", "url = \"https://h/b.tar.gz\"")
            .replace("sha256 = \"\"", &format!("sha256 = \"{SHA}\""));
        assert_eq!(text, expected);
        assert_eq!(fs::metadata(&p).unwrap().permissions().mode() & 0o777, 0o640);
        let m = Manifest::load(&p).unwrap();
        assert_eq!(m.sha256.as_deref(), Some(SHA));
        // url untouched when not given
        let other = "f".repeat(64);
        set_manifest_checksum(&p, &other, None).unwrap();
        let m = Manifest::load(&p).unwrap();
        assert_eq!(m.url.as_deref(), Some("https://h/b.tar.gz"));
        assert_eq!(m.sha256.as_deref(), Some(other.as_str()));
        // no temp files left behind
        let names: Vec<_> = fs::read_dir(d.path()).unwrap().map(|e| e.unwrap().file_name()).collect();
        assert_eq!(names.len(), 1, "{names:?}");
    }

    #[test]
    fn set_checksum_rejects_bad_input() {
        let d = tempfile::tempdir().unwrap();
        let p = write(d.path(), "version = \"1\"\nfiles = []\n");
        let before = fs::read(&p).unwrap();
        assert_eq!(set_manifest_checksum(&p, "xyz", None).unwrap_err().exit_code(), 2);
        assert_eq!(set_manifest_checksum(&p, SHA, Some("ftp://x/y")).unwrap_err().exit_code(), 2);
        assert_eq!(fs::read(&p).unwrap(), before);
        let err = set_manifest_checksum(&d.path().join("missing.toml"), SHA, None).unwrap_err();
        assert_eq!(err.exit_code(), 3);
    }
}

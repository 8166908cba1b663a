//! A local apt repository for a builder VM that has no network.
//!
//! The guest cannot reach the Debian mirror; the host can (through its own apt configuration).
//! So the host downloads, for the guest's installed state, every .deb a package list needs
//! ([`prepare`]: the host's apt-get with its own state, lists and cache directories, the guest's
//! dpkg status read out of the image by [`guest_packages`]), keeps them in a cache reused across
//! builds, writes a flat repository (the .debs + a `Packages` index made here from each .deb's
//! control fields), and packs it into an ext4 disk ([`repo_disk`]) that the builder mounts
//! read-only and names in its apt sources ([`source_line`]).
//!
//! Nothing of the host's apt state is touched: apt runs with `APT_CONFIG` = the host's merged
//! configuration (sources, proxy, mirror) minus its hooks, and `-o Dir::State…`/`Dir::Cache…`/
//! `Dir::Log` pointing at a temporary directory and the cache.

use crate::util::{self, io, run, stdout, write};
use crate::{Error, Result};
use std::collections::BTreeMap;
use std::ffi::OsString;
use std::fs;
use std::os::unix::fs::PermissionsExt;
use std::path::{Path, PathBuf};
use std::process::Command;

/// Where the builder mounts the repository disk (read-only); see [`source_line`].
pub const GUEST_MOUNT: &str = "/run/banger-repo";

/// A package-list line that turns on recommended packages (default: `--no-install-recommends`).
/// It is a comment to everything else that reads package lists.
pub const INSTALL_RECOMMENDS: &str = "# banger: install-recommends";

/// What the guest image has installed.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct GuestPackages {
    /// The guest's `/var/lib/dpkg/status`.
    pub status: String,
    /// Its Debian release (`VERSION_CODENAME` of os-release), e.g. `bookworm`.
    pub codename: String,
    /// Its dpkg architecture, e.g. `amd64`.
    pub arch: String,
}

/// What [`prepare`] put into the repository.
#[derive(Debug, Clone, Default, PartialEq, Eq)]
pub struct RepoSummary {
    /// .deb files in the repository.
    pub debs: usize,
    /// Their total size in bytes.
    pub bytes: u64,
    /// Packages downloaded into the cache by this call.
    pub downloaded: usize,
    /// Packages taken from the cache (present with the right SHA-256).
    pub reused: usize,
    /// Package names of the `extra_debs`, for the guest's `apt-get install` (see [`install_args`]).
    pub extra_packages: Vec<String>,
}

/// The apt source line for the repository mounted at `mount` in the guest.
pub fn source_line(mount: &str) -> String {
    format!("deb [trusted=yes] file:{mount} ./")
}

/// apt-get options that make the guest's apt use only the sources in `sources_file` (a file
/// holding [`source_line`]): none of its own sources, which it cannot reach without network.
pub fn guest_apt_options(sources_file: &str) -> Vec<String> {
    [
        format!("Dir::Etc::SourceList={sources_file}"),
        "Dir::Etc::SourceParts=/dev/null".into(),
        "Acquire::Languages=none".into(),
    ]
    .into_iter()
    .flat_map(|o| ["-o".to_string(), o])
    .collect()
}

/// The arguments after `apt-get install -y` in the guest for the same package list as
/// [`prepare`]: the recommends choice, the names (a `/RELEASE` dropped: the local repository has
/// one version of each package and no release names), then `extra_packages`.
pub fn install_args(packages: &[String], extra_packages: &[String]) -> Result<Vec<String>> {
    let mut out =
        vec![if wants_recommends(packages) { "--install-recommends" } else { "--no-install-recommends" }.to_string()];
    for n in package_names(packages)? {
        out.push(n.split_once('/').map(|(n, _)| n.to_string()).unwrap_or(n));
    }
    out.extend(extra_packages.iter().cloned());
    Ok(out)
}

/// Read `path` out of an ext4 image without mounting it (`debugfs -R "cat PATH"`); `None` when
/// the file is missing or empty (debugfs reports a missing file on stderr and exits 0).
fn debugfs_cat(image: &Path, path: &str) -> Result<Option<String>> {
    let out = run(Command::new("debugfs").arg("-R").arg(format!("cat {path}")).arg(image))?;
    let text = String::from_utf8_lossy(&out.stdout).into_owned();
    Ok(if text.is_empty() { None } else { Some(text) })
}

fn os_release_codename(text: &str) -> Option<String> {
    text.lines()
        .filter_map(|l| l.trim().strip_prefix("VERSION_CODENAME="))
        .map(|v| v.trim().trim_matches(|c| c == '"' || c == '\'').to_string())
        .find(|v| !v.is_empty())
}

/// Paragraphs of a deb822 text (dpkg status, Packages, control) as (field, value) lists; values of
/// multi-line fields keep their continuation lines.
fn paragraphs(text: &str) -> Vec<Vec<(String, String)>> {
    let mut out = Vec::new();
    let mut cur: Vec<(String, String)> = Vec::new();
    for line in text.lines() {
        if line.trim().is_empty() {
            if !cur.is_empty() {
                out.push(std::mem::take(&mut cur));
            }
        } else if line.starts_with([' ', '\t']) {
            if let Some((_, v)) = cur.last_mut() {
                v.push('\n');
                v.push_str(line);
            }
        } else if let Some((k, v)) = line.split_once(':') {
            cur.push((k.trim().to_string(), v.trim().to_string()));
        }
    }
    if !cur.is_empty() {
        out.push(cur);
    }
    out
}

fn field<'a>(p: &'a [(String, String)], name: &str) -> Option<&'a str> {
    p.iter().find(|(k, _)| k.eq_ignore_ascii_case(name)).map(|(_, v)| v.as_str())
}

/// The architecture dpkg itself is installed for (the system's native one).
fn status_arch(status: &str) -> Option<String> {
    let ps = paragraphs(status);
    ps.iter()
        .find(|p| field(p, "Package") == Some("dpkg"))
        .and_then(|p| field(p, "Architecture"))
        .map(str::to_string)
        .or_else(|| {
            let mut count: BTreeMap<&str, usize> = BTreeMap::new();
            for p in &ps {
                if let Some(a) = field(p, "Architecture").filter(|a| *a != "all") {
                    *count.entry(a).or_default() += 1;
                }
            }
            count.into_iter().max_by_key(|(_, n)| *n).map(|(a, _)| a.to_string())
        })
}

/// Read the guest's dpkg status, Debian release and architecture out of an ext4 image (not
/// mounted: `debugfs`, read-only, so an image in use by VMs can be read).
pub fn guest_packages(image: &Path) -> Result<GuestPackages> {
    if !image.is_file() {
        return Err(Error::NotFound(format!("guest image {} not found", image.display())));
    }
    let status = debugfs_cat(image, "/var/lib/dpkg/status")?.filter(|s| s.contains("Package:")).ok_or_else(|| {
        Error::NotFound(format!("{} has no dpkg status (/var/lib/dpkg/status): not a Debian image", image.display()))
    })?;
    // /etc/os-release is usually a symlink (debugfs prints nothing for it): fall back to its target.
    let mut codename = None;
    for p in ["/etc/os-release", "/usr/lib/os-release"] {
        if let Some(c) = debugfs_cat(image, p)?.as_deref().and_then(os_release_codename) {
            codename = Some(c);
            break;
        }
    }
    let codename = codename.ok_or_else(|| {
        Error::NotFound(format!(
            "{} has no VERSION_CODENAME in /etc/os-release or /usr/lib/os-release",
            image.display()
        ))
    })?;
    let arch = status_arch(&status)
        .ok_or_else(|| Error::NotFound(format!("the dpkg status of {} names no architecture", image.display())))?;
    Ok(GuestPackages { status, codename, arch })
}

/// Check one package-list entry: a Debian package name (`[a-z0-9][a-z0-9+.-]+`), optionally
/// `:ARCH`, then optionally `=VERSION` or `/RELEASE`.
pub fn validate_package(entry: &str) -> Result<()> {
    let bad = || {
        Error::BadInput(format!(
            "`{entry}` is not a Debian package name (lowercase letters, digits, `+`, `-`, `.`, at least two characters, optionally `=VERSION` or `/RELEASE`)"
        ))
    };
    let (name, rest) = match entry.find(['=', '/']) {
        Some(i) => (&entry[..i], Some((&entry[i..i + 1], &entry[i + 1..]))),
        None => (entry, None),
    };
    let (name, arch) = match name.split_once(':') {
        Some((n, a)) => (n, Some(a)),
        None => (name, None),
    };
    let b = name.as_bytes();
    let name_ok = b.len() >= 2
        && (b[0].is_ascii_lowercase() || b[0].is_ascii_digit())
        && b.iter().all(|c| c.is_ascii_lowercase() || c.is_ascii_digit() || b"+.-".contains(c));
    let arch_ok = arch
        .is_none_or(|a| !a.is_empty() && a.bytes().all(|c| c.is_ascii_lowercase() || c.is_ascii_digit() || c == b'-'));
    let rest_ok = match rest {
        None => true,
        // Debian policy: [epoch:]upstream[-revision], starting with a digit.
        Some(("=", v)) => {
            v.as_bytes().first().is_some_and(u8::is_ascii_digit)
                && v.bytes().all(|c| c.is_ascii_alphanumeric() || b".+~:-".contains(&c))
        }
        Some((_, r)) => !r.is_empty() && r.bytes().all(|c| c.is_ascii_alphanumeric() || b".+-".contains(&c)),
    };
    if name_ok && arch_ok && rest_ok { Ok(()) } else { Err(bad()) }
}

/// Whether a package list asks for recommended packages (a line equal to [`INSTALL_RECOMMENDS`]).
pub fn wants_recommends(packages: &[String]) -> bool {
    packages.iter().flat_map(|e| e.lines()).any(|l| l.trim() == INSTALL_RECOMMENDS)
}

/// Package names out of package-list entries (each one line or several, as in packages.apt:
/// `#` comments, blank lines ignored), every one checked by [`validate_package`].
pub fn package_names(packages: &[String]) -> Result<Vec<String>> {
    let mut out = Vec::new();
    for line in packages.iter().flat_map(|e| e.lines()) {
        let l = line.split('#').next().unwrap_or("").trim();
        if l.is_empty() {
            continue;
        }
        if l.split_whitespace().count() != 1 {
            return Err(Error::BadInput(format!("`{l}` is not one Debian package name (one package per line)")));
        }
        validate_package(l)?;
        if !out.iter().any(|p| p == l) {
            out.push(l.to_string());
        }
    }
    Ok(out)
}

/// A directory removed when dropped (unless kept).
struct TempDir(PathBuf);
impl TempDir {
    fn new(parent: &Path, prefix: &str) -> Result<TempDir> {
        let nanos =
            std::time::SystemTime::now().duration_since(std::time::UNIX_EPOCH).map(|d| d.subsec_nanos()).unwrap_or(0);
        let p = parent.join(format!("{prefix}{}-{nanos}", std::process::id()));
        io("creating directory", &p, fs::create_dir_all(&p))?;
        Ok(TempDir(p))
    }
}
impl Drop for TempDir {
    fn drop(&mut self) {
        util::remove_dir(&self.0);
    }
}

/// An exclusive `flock` on a file, released when dropped.
struct Lock(fs::File);
impl Lock {
    fn take(path: &Path) -> Result<Lock> {
        use std::os::fd::AsRawFd;
        let f = io("opening", path, fs::OpenOptions::new().create(true).truncate(false).write(true).open(path))?;
        // SAFETY: flock on an open fd; blocks until the other holder is done.
        let r = unsafe { libc::flock(f.as_raw_fd(), libc::LOCK_EX) };
        if r != 0 {
            return Err(Error::Io { op: "locking", path: path.to_path_buf(), source: std::io::Error::last_os_error() });
        }
        Ok(Lock(f))
    }
}
impl Drop for Lock {
    fn drop(&mut self) {
        use std::os::fd::AsRawFd;
        // SAFETY: as above.
        unsafe { libc::flock(self.0.as_raw_fd(), libc::LOCK_UN) };
    }
}

fn host_codename() -> Result<String> {
    let p = Path::new("/etc/os-release");
    let t = io("reading", p, fs::read_to_string(p))?;
    os_release_codename(&t)
        .ok_or_else(|| Error::NotFound("/etc/os-release of this host has no VERSION_CODENAME".into()))
}

/// Keys of the host's apt configuration left out of ours: hooks (they act on the host's own
/// state), the configuration sources we replace, and our own settings.
const DROPPED_CONFIG: &[&str] = &[
    "APT::Update::Pre-Invoke",
    "APT::Update::Post-Invoke",
    "DPkg::Pre-Invoke",
    "DPkg::Post-Invoke",
    "DPkg::Pre-Install-Pkgs",
    "CommandLine::",
    "Dir::Etc::main",
    "Dir::Etc::parts",
    "APT::Architecture",
    "Acquire::IndexTargets::deb::DEP-11",
];

/// The host's apt: its configuration (sources, proxy, keys) with our own state and cache.
struct Apt {
    conf: PathBuf,
    opts: Vec<OsString>,
}

impl Apt {
    fn new(tmp: &Path, guest: &GuestPackages, lists: &Path) -> Result<Apt> {
        let dump = stdout(Command::new("apt-config").arg("dump"))?;
        let mut conf = String::new();
        for line in dump.lines() {
            let key = line.split_whitespace().next().unwrap_or("");
            if DROPPED_CONFIG.iter().any(|d| key.len() >= d.len() && key[..d.len()].eq_ignore_ascii_case(d)) {
                continue;
            }
            conf.push_str(line);
            conf.push('\n');
        }
        let parts = tmp.join("apt.conf.d");
        io("creating directory", &parts, fs::create_dir_all(&parts))?;
        conf.push_str(&format!("Dir::Etc::parts \"{}\";\nDir::Etc::main \"/dev/null\";\n", parts.display()));
        let conf_path = tmp.join("apt.conf");
        write(&conf_path, conf)?;
        let status = tmp.join("status");
        write(&status, &guest.status)?;
        for d in [tmp.join("state/lists/partial"), tmp.join("cache"), tmp.join("log"), lists.join("partial")] {
            io("creating directory", &d, fs::create_dir_all(&d))?;
        }
        let mut opts: Vec<OsString> = Vec::new();
        let mut o = |k: &str, v: &dyn AsRef<std::ffi::OsStr>| {
            let mut s = OsString::from(format!("{k}="));
            s.push(v.as_ref());
            opts.push("-o".into());
            opts.push(s);
        };
        o("Dir::State", &tmp.join("state"));
        o("Dir::State::status", &status);
        o("Dir::State::Lists", &lists);
        o("Dir::Cache", &tmp.join("cache"));
        o("Dir::Cache::pkgcache", &"");
        o("Dir::Cache::srcpkgcache", &"");
        o("Dir::Log", &tmp.join("log"));
        o("APT::Architecture", &guest.arch);
        o("APT::Architectures", &guest.arch);
        o("Acquire::Languages", &"none");
        Ok(Apt { conf: conf_path, opts })
    }

    fn cmd(&self, program: &str, archives: &Path) -> Command {
        let mut c = Command::new(program);
        c.env("APT_CONFIG", &self.conf)
            .env("DEBIAN_FRONTEND", "noninteractive")
            .env("LC_ALL", "C")
            .arg("-q")
            .args(&self.opts)
            .arg("-o")
            .arg({
                let mut s = OsString::from("Dir::Cache::archives=");
                s.push(archives);
                s
            });
        c
    }
}

/// One line of `apt-get --print-uris`: `'URI' STORE-NAME SIZE [HASH]`.
#[derive(Debug, Clone, PartialEq, Eq)]
struct Uri {
    uri: String,
    file: String,
    size: u64,
}

fn parse_print_uris(text: &str) -> Vec<Uri> {
    text.lines()
        .filter_map(|l| {
            let l = l.strip_prefix('\'')?;
            let (uri, rest) = l.split_once('\'')?;
            let mut w = rest.split_whitespace();
            let file = w.next()?.to_string();
            let size = w.next()?.parse().ok()?;
            Some(Uri { uri: uri.to_string(), file, size })
        })
        .collect()
}

fn unquote(s: &str) -> String {
    let b = s.as_bytes();
    let mut out = Vec::with_capacity(b.len());
    let mut i = 0;
    while i < b.len() {
        if b[i] == b'%'
            && let Some(Ok(v)) = s.get(i + 1..i + 3).map(|h| u8::from_str_radix(h, 16))
        {
            out.push(v);
            i += 3;
            continue;
        }
        out.push(b[i]);
        i += 1;
    }
    String::from_utf8_lossy(&out).into_owned()
}

/// apt's archive file name `NAME_VERSION_ARCH.deb` (`:` of an epoch quoted as `%3a`) →
/// (name, version, arch).
fn parse_store_name(file: &str) -> Option<(String, String, String)> {
    let stem = file.strip_suffix(".deb")?;
    let mut it = stem.split('_');
    let (n, v, a) = (it.next()?, it.next()?, it.next()?);
    if it.next().is_some() {
        return None;
    }
    Some((unquote(n), unquote(v), unquote(a)))
}

/// A .deb to put into the repository.
struct Deb {
    path: PathBuf,
    control: String,
    package: String,
    version: String,
    arch: String,
}

impl Deb {
    fn read(path: &Path) -> Result<Deb> {
        let control = stdout(Command::new("dpkg-deb").arg("-f").arg(path))?;
        let ps = paragraphs(&control);
        let p = ps.first().map(Vec::as_slice).unwrap_or(&[]);
        let get = |k: &str| {
            field(p, k).map(str::to_string).ok_or_else(|| {
                Error::BadInput(format!("{} has no {k} control field (not a Debian package?)", path.display()))
            })
        };
        Ok(Deb {
            path: path.to_path_buf(),
            package: get("Package")?,
            version: get("Version")?,
            arch: get("Architecture")?,
            control,
        })
    }

    /// Pool-style name in the repository: `NAME_VERSION-WITHOUT-EPOCH_ARCH.deb`.
    fn repo_name(&self) -> String {
        let v = self.version.split_once(':').map(|(_, v)| v).unwrap_or(&self.version);
        format!("{}_{}_{}.deb", self.package, v, self.arch)
    }
}

/// SHA-256 of every (package, version, arch) in the apt lists, from `apt-cache show`.
fn list_hashes(
    apt: &Apt,
    archives: &Path,
    wanted: &[(String, String, String)],
    native: &str,
) -> Result<BTreeMap<(String, String, String), String>> {
    let mut c = apt.cmd("apt-cache", archives);
    c.arg("show");
    for (n, v, a) in wanted {
        if a == "all" || a == native {
            c.arg(format!("{n}={v}"))
        } else {
            c.arg(format!("{n}:{a}={v}"))
        };
    }
    let text = stdout(&mut c)?;
    let mut out = BTreeMap::new();
    for p in paragraphs(&text) {
        if let (Some(n), Some(v), Some(a), Some(h)) =
            (field(&p, "Package"), field(&p, "Version"), field(&p, "Architecture"), field(&p, "SHA256"))
        {
            out.entry((n.to_string(), v.to_string(), a.to_string())).or_insert_with(|| h.to_ascii_lowercase());
        }
    }
    Ok(out)
}

/// The `E:` lines of an apt failure (its own sentences), or the whole detail.
fn apt_reason(detail: &str) -> String {
    let e: Vec<&str> = detail.lines().filter_map(|l| l.strip_prefix("E: ")).collect();
    if e.is_empty() { detail.trim().to_string() } else { e.join("; ") }
}

/// Download into `cache` every .deb needed to install `packages` (+ the local `extra_debs`) into a
/// guest with `guest` installed, and write a flat apt repository into `repo_dir` (replaced as a
/// whole: staged next to it and renamed into place).
///
/// `packages` are package-list entries as in packages.apt (one name per line, `#` comments; a
/// line [`INSTALL_RECOMMENDS`] adds recommended packages). Dependencies are resolved against the
/// guest's dpkg status with the host's apt sources, which must be for the guest's release. A
/// `.deb` already in the cache with the SHA-256 of the apt lists is not downloaded again; apt's
/// package lists are kept in `cache/lists`.
pub fn prepare(
    guest: &GuestPackages,
    packages: &[String],
    extra_debs: &[PathBuf],
    cache: &Path,
    repo_dir: &Path,
    on_progress: &mut dyn FnMut(&str),
) -> Result<RepoSummary> {
    let names = package_names(packages)?;
    let recommends = wants_recommends(packages);
    let host = host_codename()?;
    if (!names.is_empty() || !extra_debs.is_empty()) && host != guest.codename {
        return Err(Error::BadInput(format!(
            "the guest is Debian {} but this host's apt sources are for {host}: downloading packages for another release is not supported yet",
            guest.codename
        )));
    }
    io("creating directory", cache, fs::create_dir_all(cache))?;
    io("creating directory", &cache.join("partial"), fs::create_dir_all(cache.join("partial")))?;
    let _lock = Lock::take(&cache.join("banger.lock"))?;
    let tmp = TempDir::new(&std::env::temp_dir(), "banger-repo-")?;

    let mut summary = RepoSummary::default();
    // Local packages: checked, and staged under safe names for apt.
    let mut extras = Vec::new();
    let extra_dir = tmp.0.join("extra");
    io("creating directory", &extra_dir, fs::create_dir_all(&extra_dir))?;
    for p in extra_debs {
        if !p.is_file() {
            return Err(Error::NotFound(format!("local package {} not found", p.display())));
        }
        let d = Deb::read(p)?;
        if d.arch != "all" && d.arch != guest.arch {
            return Err(Error::BadInput(format!(
                "local package {} is for {}, the guest is {}",
                p.display(),
                d.arch,
                guest.arch
            )));
        }
        let staged = extra_dir.join(d.repo_name());
        io("copying", p, fs::copy(p, &staged))?;
        if !summary.extra_packages.contains(&d.package) {
            summary.extra_packages.push(d.package.clone());
        }
        extras.push(Deb { path: staged, ..d });
    }

    let mut from_cache: Vec<(PathBuf, String)> = Vec::new(); // (cache file, sha256)
    let mut from_files: Vec<PathBuf> = Vec::new(); // file: URIs of the host's sources
    if !names.is_empty() || !extras.is_empty() {
        on_progress(&format!(
            "resolving {} packages for the guest (Debian {} {})",
            names.len() + extras.len(),
            guest.codename,
            guest.arch
        ));
        let apt = Apt::new(&tmp.0, guest, &cache.join("lists"))?;
        let empty = tmp.0.join("empty-archives");
        io("creating directory", &empty, fs::create_dir_all(empty.join("partial")))?;
        // apt-get update succeeds even when some index could not be fetched; its warnings explain
        // a resolution failure that follows.
        let update = run(apt.cmd("apt-get", &empty).arg("update")).map_err(|e| match e {
            Error::Command { status, detail, .. } => {
                Error::Command { command: "apt-get update".into(), status, detail: apt_reason(&detail) }
            }
            e => e,
        })?;
        let warnings: Vec<String> = String::from_utf8_lossy(&update.stderr)
            .lines()
            .filter(|l| l.starts_with("W: Failed to fetch") || l.starts_with("E: "))
            .map(|l| l.trim_start_matches("W: ").trim_start_matches("E: ").to_string())
            .collect();
        let install = |c: &mut Command| {
            c.args(["install", "-y"]).arg(if recommends { "--install-recommends" } else { "--no-install-recommends" });
            c.args(&names);
            c.args(extras.iter().map(|d| &d.path));
        };
        let mut c = apt.cmd("apt-get", &empty);
        c.arg("--print-uris");
        install(&mut c);
        let uris = match stdout(&mut c) {
            Ok(t) => parse_print_uris(&t),
            Err(Error::Command { .. }) if !warnings.is_empty() => {
                return Err(Error::Command {
                    command: "apt-get update".into(),
                    status: "package lists missing".into(),
                    detail: warnings.join("; "),
                });
            }
            Err(Error::Command { detail, .. }) => {
                return Err(Error::BadInput(format!(
                    "apt cannot install {} into the guest: {}",
                    names.join(" "),
                    apt_reason(&detail)
                )));
            }
            Err(e) => return Err(e),
        };
        let mut remote = Vec::new();
        for u in uris {
            if let Some(p) = u.uri.strip_prefix("file:") {
                let p = PathBuf::from(unquote(p));
                if !p.starts_with(&extra_dir) {
                    from_files.push(p);
                }
            } else {
                let key = parse_store_name(&u.file)
                    .ok_or_else(|| Error::BadInput(format!("apt-get named an unexpected package file `{}`", u.file)))?;
                remote.push((u, key));
            }
        }
        let keys: Vec<_> = remote.iter().map(|(_, k)| k.clone()).collect();
        let hashes = if keys.is_empty() { BTreeMap::new() } else { list_hashes(&apt, cache, &keys, &guest.arch)? };
        let mut missing = 0u64;
        for (u, key) in &remote {
            let sha = hashes.get(key).ok_or_else(|| {
                Error::NotFound(format!("the apt lists have no SHA-256 for {} {} ({})", key.0, key.1, key.2))
            })?;
            let f = cache.join(&u.file);
            if f.is_file() && util::sha256_file(&f)? == *sha {
                summary.reused += 1;
            } else {
                let _ = fs::remove_file(&f);
                summary.downloaded += 1;
                missing += u.size;
            }
            from_cache.push((f, sha.clone()));
        }
        on_progress(&format!(
            "downloading {} packages ({:.1} MiB); {} already in the cache",
            summary.downloaded,
            missing as f64 / (1u64 << 20) as f64,
            summary.reused
        ));
        if summary.downloaded > 0 {
            let mut c = apt.cmd("apt-get", cache);
            c.arg("--download-only");
            install(&mut c);
            run(&mut c).map_err(|e| match e {
                Error::Command { status, detail, .. } => Error::Command {
                    command: "apt-get --download-only install".into(),
                    status,
                    detail: apt_reason(&detail),
                },
                e => e,
            })?;
            for (f, sha) in &from_cache {
                if !f.is_file() || util::sha256_file(f)? != *sha {
                    return Err(Error::Command {
                        command: "apt-get --download-only install".into(),
                        status: "incomplete".into(),
                        detail: format!("{} is missing or does not match the SHA-256 of the apt lists", f.display()),
                    });
                }
            }
        }
    }

    let mut debs = Vec::new();
    for (f, _) in &from_cache {
        debs.push(Deb::read(f)?);
    }
    for f in &from_files {
        debs.push(Deb::read(f)?);
    }
    debs.extend(extras);
    on_progress(&format!("indexing {} packages", debs.len()));
    let (n, bytes) = write_repo(&debs, repo_dir)?;
    summary.debs = n;
    summary.bytes = bytes;
    Ok(summary)
}

/// Control fields a Packages stanza gets from the repository, not from the .deb.
const INDEX_FIELDS: &[&str] = &["Filename", "Size", "MD5sum", "SHA1", "SHA256", "SHA512"];

/// Write the .debs (hard links, else copies) and their `Packages`/`Packages.gz` into a staging
/// directory next to `repo_dir`, then rename it into place. Returns (count, total bytes).
fn write_repo(debs: &[Deb], repo_dir: &Path) -> Result<(usize, u64)> {
    let parent = repo_dir.parent().filter(|p| !p.as_os_str().is_empty()).unwrap_or(Path::new("."));
    io("creating directory", parent, fs::create_dir_all(parent))?;
    let base = repo_dir.file_name().map(|n| n.to_string_lossy().into_owned()).unwrap_or_else(|| "repo".into());
    let staging = TempDir::new(parent, &format!(".{base}.staging-"))?;
    let dir = &staging.0;
    io("chmod", dir, fs::set_permissions(dir, fs::Permissions::from_mode(0o755)))?;
    let mut stanzas: BTreeMap<String, String> = BTreeMap::new();
    let mut bytes = 0u64;
    for d in debs {
        let name = d.repo_name();
        if stanzas.contains_key(&name) {
            return Err(Error::BadInput(format!(
                "two packages would both be {name} in the repository (one of them from {})",
                d.path.display()
            )));
        }
        let dst = dir.join(&name);
        if fs::hard_link(&d.path, &dst).is_err() {
            io("copying", &d.path, fs::copy(&d.path, &dst))?;
        }
        // Readable by apt's unprivileged `_apt` in the guest.
        io("chmod", &dst, fs::set_permissions(&dst, fs::Permissions::from_mode(0o644)))?;
        let size = io("stat", &dst, fs::metadata(&dst))?.len();
        let sha = util::sha256_file(&dst)?;
        bytes += size;
        let mut s = String::new();
        let mut skipping = false;
        for line in d.control.lines() {
            if line.trim().is_empty() {
                continue;
            }
            if !line.starts_with([' ', '\t']) {
                let key = line.split(':').next().unwrap_or("");
                skipping = INDEX_FIELDS.iter().any(|f| f.eq_ignore_ascii_case(key));
            }
            if !skipping {
                s.push_str(line);
                s.push('\n');
            }
        }
        s.push_str(&format!("Filename: ./{name}\nSize: {size}\nSHA256: {sha}\n"));
        stanzas.insert(name, s);
    }
    let index = stanzas.values().map(String::as_str).collect::<Vec<_>>().join("\n");
    write(&dir.join("Packages"), &index)?;
    let mut gz = flate2::write::GzEncoder::new(Vec::new(), flate2::Compression::default());
    io("compressing", &dir.join("Packages.gz"), std::io::Write::write_all(&mut gz, index.as_bytes()))?;
    let gz = io("compressing", &dir.join("Packages.gz"), gz.finish())?;
    write(&dir.join("Packages.gz"), gz)?;
    for f in ["Packages", "Packages.gz"] {
        let p = dir.join(f);
        io("chmod", &p, fs::set_permissions(&p, fs::Permissions::from_mode(0o644)))?;
    }
    // Swap into place: the old repository (if any) is renamed away first and removed after.
    let old = parent.join(format!(".{base}.old-{}", std::process::id()));
    let had_old = repo_dir.exists();
    if had_old {
        util::remove_dir(&old);
        io("renaming", repo_dir, fs::rename(repo_dir, &old))?;
    }
    if let Err(e) = fs::rename(dir, repo_dir) {
        if had_old {
            let _ = fs::rename(&old, repo_dir);
        }
        return Err(Error::Io { op: "renaming", path: dir.clone(), source: e });
    }
    if had_old {
        util::remove_dir(&old);
    }
    Ok((stanzas.len(), bytes))
}

/// Write `out`: a sparse ext4 image (label `banger-repo`) holding `repo_dir`, sized to fit with
/// headroom, for attaching to the builder read-only.
pub fn repo_disk(repo_dir: &Path, out: &Path) -> Result<()> {
    if !repo_dir.join("Packages").is_file() {
        return Err(Error::NotFound(format!(
            "{} is not a repository written by prepare (no Packages)",
            repo_dir.display()
        )));
    }
    let mut used = 0u64;
    let mut stack = vec![repo_dir.to_path_buf()];
    while let Some(d) = stack.pop() {
        for e in io("listing", &d, fs::read_dir(&d))? {
            let e = io("listing", &d, e)?;
            let m = io("stat", &e.path(), e.metadata())?;
            used += m.len().div_ceil(4096) * 4096 + 4096;
            if m.is_dir() {
                stack.push(e.path());
            }
        }
    }
    // 10% for block maps and directories, 64 MiB for the journal and inode tables.
    let size_mib = (used + used / 10).div_ceil(1 << 20) + 64;
    if let Some(p) = out.parent().filter(|p| !p.as_os_str().is_empty()) {
        io("creating directory", p, fs::create_dir_all(p))?;
    }
    let r = crate::rootfs::make_ext4(repo_dir, out, size_mib, "banger-repo");
    if r.is_err() {
        let _ = fs::remove_file(out.with_extension("ext4.tmp"));
    }
    r
}

#[cfg(test)]
mod tests {
    use super::*;
    use std::collections::BTreeSet;

    fn runtime_dir() -> PathBuf {
        std::env::var_os("BANGER_TEST_RUNTIME")
            .map(PathBuf::from)
            .unwrap_or_else(|| Path::new(env!("CARGO_MANIFEST_DIR")).join("../../runtime"))
    }

    /// The bundle's base image, or `None` (and a loud SKIP line) when it is not there.
    fn base_image() -> Option<PathBuf> {
        let img = runtime_dir().join("rootfs.ext4");
        if img.is_file() {
            Some(img)
        } else {
            eprintln!("SKIP: {} not found (make runtime-build, or set BANGER_TEST_RUNTIME)", img.display());
            None
        }
    }

    fn guest() -> GuestPackages {
        GuestPackages { status: String::new(), codename: "bookworm".into(), arch: "amd64".into() }
    }

    #[test]
    fn package_names_are_validated() {
        for ok in [
            "jq",
            "g++",
            "libc6",
            "lib32z1",
            "docker.io",
            "jq=1.6-2.1",
            "jq=1:2.0~rc1+b1",
            "jq/bookworm-backports",
            "libc6:i386",
        ] {
            validate_package(ok).unwrap_or_else(|e| panic!("{ok}: {e}"));
        }
        for bad in
            ["", "a", "Jq", "-jq", "jq;rm", "jq ", "jq=", "jq=abc", "jq/", "jq/a b", "jq=1|2", "../x", "jq:", "$(x)"]
        {
            let e = validate_package(bad).unwrap_err();
            assert!(matches!(e, Error::BadInput(_)), "{bad}");
            assert!(e.to_string().contains(&format!("`{bad}`")), "{e}");
        }
        let list = vec!["# tools\njq # json\n\ncurl".to_string(), "jq".into(), INSTALL_RECOMMENDS.into()];
        assert_eq!(package_names(&list).unwrap(), ["jq", "curl"]);
        assert!(wants_recommends(&list));
        assert!(!wants_recommends(&["jq".into(), "# banger: something".into()]));
        assert!(package_names(&["jq curl".into()]).is_err());
        let l = vec!["jq/bookworm-backports\nhello=2.10-3".to_string()];
        assert_eq!(install_args(&l, &["x".into()]).unwrap(), ["--no-install-recommends", "jq", "hello=2.10-3", "x"]);
        assert_eq!(install_args(&list, &[]).unwrap(), ["--install-recommends", "jq", "curl"]);
        assert_eq!(
            guest_apt_options("/run/r.list"),
            [
                "-o",
                "Dir::Etc::SourceList=/run/r.list",
                "-o",
                "Dir::Etc::SourceParts=/dev/null",
                "-o",
                "Acquire::Languages=none"
            ]
        );
    }

    #[test]
    fn bad_names_are_refused_before_apt() {
        let d = std::env::temp_dir().join(format!("banger-repo-test-bad-{}", std::process::id()));
        let cache = d.join("cache");
        let e = prepare(&guest(), &["jq".into(), "rm -rf /".into()], &[], &cache, &d.join("repo"), &mut |_| {})
            .unwrap_err();
        assert!(matches!(e, Error::BadInput(_)), "{e}");
        let e = prepare(&guest(), &["Foo;bar".into()], &[], &cache, &d.join("repo"), &mut |_| {}).unwrap_err();
        assert!(e.to_string().contains("`Foo;bar` is not a Debian package name"), "{e}");
        assert!(!d.exists(), "nothing may be created for a refused list");
    }

    #[test]
    fn parsing() {
        let t = "Reading package lists...\n'http://deb.debian.org/debian/pool/main/h/hello/hello_2.10-3_amd64.deb' hello_2.10-3_amd64.deb 53080 MD5Sum:d04c\n'file:/tmp/x%20y/a.deb' a_1%3a1.0_all.deb 756 \n";
        let u = parse_print_uris(t);
        assert_eq!(u.len(), 2);
        assert_eq!(u[0].file, "hello_2.10-3_amd64.deb");
        assert_eq!(u[0].size, 53080);
        assert_eq!(unquote(u[1].uri.strip_prefix("file:").unwrap()), "/tmp/x y/a.deb");
        assert_eq!(parse_store_name(&u[1].file).unwrap(), ("a".into(), "1:1.0".into(), "all".into()));
        assert_eq!(parse_store_name("x.deb"), None);
        assert_eq!(os_release_codename("ID=debian\nVERSION_CODENAME=\"bookworm\"\n").as_deref(), Some("bookworm"));
        assert_eq!(os_release_codename("ID=debian\n"), None);
        let st = "Package: base-files\nArchitecture: arm64\n\nPackage: dpkg\nStatus: install ok installed\nArchitecture: amd64\nDescription: x\n more\n";
        assert_eq!(status_arch(st).as_deref(), Some("amd64"));
        assert_eq!(
            status_arch("Package: a\nArchitecture: all\n\nPackage: b\nArchitecture: arm64\n").as_deref(),
            Some("arm64")
        );
        assert_eq!(paragraphs(st)[1][3], ("Description".into(), "x\n more".into()));
        assert_eq!(source_line(GUEST_MOUNT), "deb [trusted=yes] file:/run/banger-repo ./");
    }

    #[test]
    fn guest_packages_of_the_bundle_image() {
        let Some(img) = base_image() else { return };
        let g = guest_packages(&img).unwrap();
        assert_eq!(g.codename, "bookworm");
        assert_eq!(g.arch, "amd64");
        assert!(g.status.contains("Package: openssh-server\n"));
        assert!(g.status.contains("Package: coreutils\n"));
        let e = guest_packages(&img.with_file_name("no-such-image.ext4")).unwrap_err();
        assert!(matches!(e, Error::NotFound(_)), "{e}");
    }

    /// A tiny package built here: `banger-test-extra`, depending on `hello` (not in the base).
    fn build_extra_deb(dir: &Path) -> PathBuf {
        let root = dir.join("pkg");
        fs::create_dir_all(root.join("DEBIAN")).unwrap();
        fs::create_dir_all(root.join("usr/share/banger-test")).unwrap();
        fs::write(
            root.join("DEBIAN/control"),
            "Package: banger-test-extra\nVersion: 1:1.0-1\nArchitecture: all\nMaintainer: banger <banger@example.invalid>\nDepends: hello\nDescription: banger repo test package\n Built by the banger-image tests.\n",
        )
        .unwrap();
        fs::write(root.join("usr/share/banger-test/hi"), "hi\n").unwrap();
        let deb = dir.join("extra.deb");
        run(Command::new("dpkg-deb").args(["--root-owner-group", "--build"]).arg(&root).arg(&deb)).unwrap();
        deb
    }

    /// Simulate `apt-get install pkgs` in the guest against the repository alone (offline: the
    /// only source is the file: repository). Returns apt's output.
    fn simulate_from_repo(work: &Path, guest: &GuestPackages, repo: &Path, pkgs: &[String]) -> String {
        let _ = fs::remove_dir_all(work);
        for d in ["lists/partial", "cache/archives/partial", "state", "log", "parts"] {
            fs::create_dir_all(work.join(d)).unwrap();
        }
        fs::write(work.join("status"), &guest.status).unwrap();
        fs::write(work.join("sources.list"), format!("{}\n", source_line(&repo.to_string_lossy()))).unwrap();
        // None of the host's configuration (hooks, sources): only what is given here.
        fs::write(
            work.join("apt.conf"),
            format!("Dir::Etc::parts \"{}\";\nDir::Etc::main \"/dev/null\";\n", work.join("parts").display()),
        )
        .unwrap();
        let apt = |args: &[&str]| {
            let w = |p: &str| work.join(p).to_string_lossy().into_owned();
            let mut c = Command::new("apt-get");
            c.env("APT_CONFIG", work.join("apt.conf")).env("LC_ALL", "C");
            for (k, v) in [
                ("Dir::State", w("state")),
                ("Dir::State::status", w("status")),
                ("Dir::State::Lists", w("lists")),
                ("Dir::Cache", w("cache")),
                ("Dir::Log", w("log")),
            ] {
                c.arg("-o").arg(format!("{k}={v}"));
            }
            c.args(guest_apt_options(&w("sources.list")));
            let out = run(c.args(args)).unwrap_or_else(|e| panic!("apt-get {args:?}: {e}"));
            String::from_utf8_lossy(&out.stdout).into_owned() + &String::from_utf8_lossy(&out.stderr)
        };
        let up = apt(&["update"]);
        assert!(!up.contains("W: ") && !up.contains("E: "), "apt-get update of the repository: {up}");
        let mut args = vec!["--simulate", "-y", "install"];
        args.extend(pkgs.iter().map(String::as_str));
        apt(&args)
    }

    #[test]
    fn prepare_a_repository_from_the_mirror() {
        let Some(img) = base_image() else { return };
        let g = guest_packages(&img).unwrap();
        let d = std::env::temp_dir().join(format!("banger-repo-test-{}", std::process::id()));
        let _ = fs::remove_dir_all(&d);
        fs::create_dir_all(&d).unwrap();
        let _cleanup = TempDir(d.clone());
        let cache = d.join("debs");
        let repo = d.join("repo");
        let extra = build_extra_deb(&d);
        let list = vec!["# what the build needs\njq\ncoreutils # already in the guest".to_string()];
        let mut lines = Vec::new();
        let t = std::time::Instant::now();
        let s =
            match prepare(&g, &list, std::slice::from_ref(&extra), &cache, &repo, &mut |l| lines.push(l.to_string())) {
                Err(e @ Error::Command { .. }) if e.to_string().contains("apt-get update") => {
                    eprintln!("SKIP: apt cannot reach the Debian mirror from this host: {e}");
                    return;
                }
                r => r.unwrap(),
            };
        eprintln!("first prepare: {s:?} in {:?}; progress {lines:?}", t.elapsed());
        assert!(lines[0].starts_with("resolving"), "{lines:?}");
        assert!(lines.iter().any(|l| l.starts_with(&format!("downloading {} packages (", s.downloaded))), "{lines:?}");
        assert!(lines.last().unwrap().starts_with("indexing"), "{lines:?}");
        // jq, libjq1, libonig5 for jq; hello for the extra package; nothing the guest has.
        assert_eq!((s.downloaded, s.reused), (4, 0), "{s:?}");
        assert_eq!(s.debs, 5);
        let names: BTreeSet<String> =
            fs::read_dir(&repo).unwrap().map(|e| e.unwrap().file_name().to_string_lossy().into_owned()).collect();
        assert!(names.iter().any(|n| n.starts_with("jq_")), "{names:?}");
        assert!(names.contains("banger-test-extra_1.0-1_all.deb"), "{names:?}");
        assert!(!names.iter().any(|n| n.starts_with("coreutils_")), "{names:?}");
        assert!(
            !fs::read_dir(&cache).unwrap().any(|e| e.unwrap().file_name().to_string_lossy().starts_with("coreutils_"))
        );
        let bytes: u64 =
            names.iter().filter(|n| n.ends_with(".deb")).map(|n| fs::metadata(repo.join(n)).unwrap().len()).sum();
        assert_eq!(s.bytes, bytes);
        let index = fs::read_to_string(repo.join("Packages")).unwrap();
        let stanzas = paragraphs(&index);
        assert_eq!(stanzas.len(), 5);
        let extra_st = stanzas.iter().find(|p| field(p, "Package") == Some("banger-test-extra")).unwrap();
        assert_eq!(field(extra_st, "Version"), Some("1:1.0-1"));
        assert_eq!(field(extra_st, "Filename"), Some("./banger-test-extra_1.0-1_all.deb"));
        assert_eq!(field(extra_st, "SHA256").unwrap(), util::sha256_file(&extra).unwrap());
        for p in &stanzas {
            let f = repo.join(field(p, "Filename").unwrap());
            assert_eq!(field(p, "Size").unwrap(), fs::metadata(&f).unwrap().len().to_string());
        }
        let mut gz = String::new();
        std::io::Read::read_to_string(
            &mut flate2::read::GzDecoder::new(fs::File::open(repo.join("Packages.gz")).unwrap()),
            &mut gz,
        )
        .unwrap();
        assert_eq!(gz, index);

        // The guest's apt accepts the repository and can install from it alone.
        assert_eq!(s.extra_packages, ["banger-test-extra"]);
        let args = install_args(&list, &s.extra_packages).unwrap();
        assert_eq!(args, ["--no-install-recommends", "jq", "coreutils", "banger-test-extra"]);
        let sim = simulate_from_repo(&d.join("apt"), &g, &repo, &args);
        for p in ["jq", "libjq1", "libonig5", "hello", "banger-test-extra"] {
            assert!(sim.contains(&format!("Inst {p} (")), "{p} in {sim}");
        }
        assert!(!sim.contains("Inst coreutils"), "{sim}");

        // Again: everything from the cache; the repository is replaced as a whole.
        fs::write(repo.join("stale"), "x").unwrap();
        let t = std::time::Instant::now();
        let again = prepare(&g, &list, &[extra], &cache, &repo, &mut |_| {}).unwrap();
        eprintln!("second prepare: {again:?} in {:?}", t.elapsed());
        assert_eq!((again.downloaded, again.reused, again.debs, again.bytes), (0, 4, 5, s.bytes));
        assert_eq!(again.extra_packages, s.extra_packages);
        assert!(!repo.join("stale").exists());

        // A damaged cache entry is fetched again.
        let jq = fs::read_dir(&cache)
            .unwrap()
            .map(|e| e.unwrap().path())
            .find(|p| p.to_string_lossy().contains("/jq_"))
            .unwrap();
        fs::write(&jq, b"not a deb").unwrap();
        let third = prepare(&g, &["jq".into()], &[], &cache, &repo, &mut |_| {}).unwrap();
        assert_eq!((third.downloaded, third.reused, third.debs), (1, 2, 3));

        // A package apt does not know: its own reason, as one sentence.
        let e = prepare(&g, &["banger-no-such-package".into()], &[], &cache, &repo, &mut |_| {}).unwrap_err();
        assert!(matches!(e, Error::BadInput(_)), "{e}");
        assert!(e.to_string().contains("Unable to locate package banger-no-such-package"), "{e}");
        assert!(repo.join("Packages").is_file(), "a failed prepare leaves the last repository alone");

        // The repository on a disk: debugfs sees the index and the packages.
        let disk = d.join("repo.ext4");
        repo_disk(&repo, &disk).unwrap();
        let out = run(Command::new("debugfs").args(["-R", "ls -l /"]).arg(&disk)).unwrap();
        let ls = String::from_utf8_lossy(&out.stdout);
        assert!(ls.contains("Packages") && ls.contains("Packages.gz"), "{ls}");
        for n in fs::read_dir(&repo).unwrap().map(|e| e.unwrap().file_name().to_string_lossy().into_owned()) {
            assert!(ls.contains(&n), "{n} in {ls}");
        }
        use std::os::unix::fs::MetadataExt;
        let m = fs::metadata(&disk).unwrap();
        assert!(m.blocks() * 512 < m.len(), "the disk is sparse");
    }

    #[test]
    fn repo_disk_needs_a_repository() {
        let d = std::env::temp_dir().join(format!("banger-repo-test-disk-{}", std::process::id()));
        let e = repo_disk(&d, &d.join("x.ext4")).unwrap_err();
        assert!(matches!(e, Error::NotFound(_)), "{e}");
    }
}

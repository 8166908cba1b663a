//! `flatten` against a real guest's overlay: a VM (QEMU, TCG here) writes a file under `/` and
//! deletes one of the base's, is powered off, and its base + overlay are flattened into a
//! standalone image — checked with e2fsprogs on the host, then booted as a second VM's image.
//! Two boots in all.
//!
//! Runs the `banger`/`bangerd` binaries built beside this test (`target/debug`; `make test` builds
//! them first — or set `BANGER_BIN`) with private XDG directories. Needs root (TAP devices) and a
//! runtime bundle (`BANGER_TEST_RUNTIME`); skipped loudly otherwise, unless
//! `BANGER_E2E_REQUIRED=1`, when that is a failure. (It lives here rather than in
//! `crates/banger/tests` because it calls this crate's API; this crate has no JSON dev-dependency,
//! so the few fields it needs are picked out of `vm show --json` by hand.)

use banger_storage::allocated;
use banger_storage::flatten::{flatten, read_store};
use std::os::unix::fs::{MetadataExt, PermissionsExt};
use std::path::{Path, PathBuf};
use std::process::Command;
use std::time::{Duration, Instant};

fn skip_or_fail(why: &str) {
    if std::env::var("BANGER_E2E_REQUIRED").as_deref() == Ok("1") {
        panic!("{why}");
    }
    use std::io::Write;
    let _ = writeln!(std::io::stderr(), "SKIP flatten_guest: {why}");
}

/// (runtime bundle, banger binary), or why the test cannot run.
fn setup() -> Result<(PathBuf, PathBuf), &'static str> {
    let rt = std::env::var_os("BANGER_TEST_RUNTIME")
        .map(PathBuf::from)
        .filter(|p| p.join("vmlinux").is_file())
        .ok_or("no runtime bundle (set BANGER_TEST_RUNTIME to a built ./runtime; `make test` does)")?;
    if std::fs::metadata("/proc/self").map(|m| m.uid()).unwrap_or(1) != 0 {
        return Err("needs root for TAP devices");
    }
    let bin = std::env::var_os("BANGER_BIN").map(PathBuf::from).or_else(|| {
        // target/debug/deps/flatten_guest-HASH -> target/debug/banger
        Some(std::env::current_exe().ok()?.parent()?.parent()?.join("banger"))
    });
    let bin = bin
        .filter(|b| b.is_file() && b.with_file_name("bangerd").is_file())
        .ok_or("no banger/bangerd binaries in target/debug (run `cargo build -p banger` first, or set BANGER_BIN)")?;
    for tool in ["debugfs", "e2fsck", "sha256sum"] {
        if Command::new(tool).arg("-V").output().is_err() && Command::new(tool).arg("--version").output().is_err() {
            return Err("needs e2fsprogs (debugfs, e2fsck) and sha256sum");
        }
    }
    Ok((rt, bin))
}

struct Env {
    tmp: tempfile::TempDir,
    rt: PathBuf,
    bin: PathBuf,
    /// Daemons `banger` reported starting (`banger: started bangerd (pid N)`).
    daemons: std::cell::RefCell<Vec<u32>>,
}

struct Out {
    code: i32,
    stdout: String,
    stderr: String,
}

impl Env {
    fn run(&self, args: &[&str]) -> Out {
        let p = |rel: &str| self.tmp.path().join(rel);
        let out = Command::new(&self.bin)
            .args(args)
            .env_clear()
            .env("PATH", std::env::var_os("PATH").unwrap_or_default())
            .env("HOME", p("home"))
            .env("XDG_RUNTIME_DIR", p("run"))
            .env("XDG_STATE_HOME", p("state"))
            .env("XDG_CONFIG_HOME", p("config"))
            .env("XDG_CACHE_HOME", p("cache"))
            .env("BANGER_DAEMON_BIN", self.bin.with_file_name("bangerd"))
            .env("BANGER_RUNTIME_DIR", &self.rt)
            .output()
            .unwrap();
        let out = Out {
            code: out.status.code().unwrap_or(-1),
            stdout: String::from_utf8_lossy(&out.stdout).into_owned(),
            stderr: String::from_utf8_lossy(&out.stderr).into_owned(),
        };
        for line in out.stderr.lines() {
            if let Some(pid) = line.strip_prefix("banger: started bangerd (pid ") {
                self.daemons.borrow_mut().extend(pid.trim_end_matches(')').parse::<u32>());
            }
        }
        out
    }

    #[track_caller]
    fn ok(&self, args: &[&str]) -> String {
        let out = self.run(args);
        assert_eq!(out.code, 0, "banger {args:?} failed: {}", out.stderr);
        out.stdout
    }
}

/// Deletes the VMs and stops the daemon, however the test ends.
struct Cleanup<'a> {
    env: &'a Env,
    vms: Vec<&'static str>,
}

impl Drop for Cleanup<'_> {
    fn drop(&mut self) {
        for vm in &self.vms {
            let out = self.env.run(&["vm", "delete", "--force", vm]);
            if out.code != 0 && !out.stderr.contains("no VM named") {
                eprintln!("cleanup: vm delete {vm}: {}", out.stderr);
            }
        }
        let _ = self.env.run(&["daemon", "stop"]);
        // A daemon that did not stop when asked is ended by its pid.
        for pid in self.env.daemons.borrow().iter() {
            let deadline = Instant::now() + Duration::from_secs(5);
            while Path::new(&format!("/proc/{pid}")).exists() && Instant::now() < deadline {
                std::thread::sleep(Duration::from_millis(50));
            }
            if Path::new(&format!("/proc/{pid}")).exists() {
                let _ = Command::new("kill").arg("-TERM").arg(pid.to_string()).status();
            }
        }
    }
}

/// The JSON string value that follows the first `"key"` at or after `from` in `json`, and where
/// it ends.
fn string_after(json: &str, key: &str, from: usize) -> Option<(String, usize)> {
    let k = format!("\"{key}\"");
    let at = from + json[from..].find(&k)? + k.len();
    let rest = &json[at..];
    let open = rest.find('"')?;
    if !rest[..open].trim().starts_with(':') {
        return None;
    }
    let mut s = String::new();
    let mut chars = rest[open + 1..].char_indices();
    while let Some((i, c)) = chars.next() {
        match c {
            '"' => return Some((s, at + open + 1 + i + 1)),
            '\\' => match chars.next()?.1 {
                'n' => s.push('\n'),
                't' => s.push('\t'),
                other => s.push(other),
            },
            c => s.push(c),
        }
    }
    None
}

/// The VM's state and its disks' (role, path) from `vm show --json`.
fn show(env: &Env, vm: &str) -> (String, Vec<(String, PathBuf)>) {
    let json = env.ok(&["vm", "show", vm, "--json"]);
    let state = string_after(&json, "state", 0).expect("no state in vm show").0;
    let mut disks = Vec::new();
    let mut from = json.find("\"disks\"").expect("no disks in vm show");
    while let Some((role, end)) = string_after(&json, "role", from) {
        let (path, end) = string_after(&json, "path", end).expect("a disk without a path");
        disks.push((role, PathBuf::from(path)));
        from = end;
    }
    (state, disks)
}

fn disk(disks: &[(String, PathBuf)], role: &str) -> PathBuf {
    disks.iter().find(|(r, _)| r == role).unwrap_or_else(|| panic!("no {role} disk in {disks:?}")).1.clone()
}

fn sha256(path: &Path) -> String {
    let out = Command::new("sha256sum").arg(path).output().unwrap();
    String::from_utf8_lossy(&out.stdout).split_whitespace().next().unwrap().to_string()
}

/// `debugfs -R REQUEST IMAGE` (read-only): (stdout, stderr).
fn debugfs(image: &Path, request: &str) -> (String, String) {
    let out = Command::new("debugfs").arg("-R").arg(request).arg(image).output().unwrap();
    (String::from_utf8_lossy(&out.stdout).into_owned(), String::from_utf8_lossy(&out.stderr).into_owned())
}

#[test]
fn a_flattened_overlay_is_a_standalone_bootable_image() {
    let (rt, bin) = match setup() {
        Ok(x) => x,
        Err(why) => return skip_or_fail(why),
    };
    let started = Instant::now();
    let tmp = tempfile::Builder::new().prefix("banger-flatten").tempdir().unwrap();
    std::fs::set_permissions(tmp.path(), std::fs::Permissions::from_mode(0o755)).unwrap();
    let config = tmp.path().join("config/banger/config.toml");
    std::fs::create_dir_all(config.parent().unwrap()).unwrap();
    std::fs::write(&config, "subnet = \"10.213.210.0/24\"\nvmm = \"qemu\"\n").unwrap();
    let env = Env { tmp, rt, bin, daemons: Default::default() };
    let mut cleanup = Cleanup { env: &env, vms: vec!["flat-src", "flat-copy"] };

    // The base's hash, computed while the first VM boots (it reads the whole 4 GiB file).
    let base_rt = env.rt.join("rootfs.ext4");
    let hashing = std::thread::spawn({
        let b = base_rt.clone();
        move || sha256(&b)
    });

    env.ok(&["vm", "create", "--name", "flat-src", "--image", "base"]);
    let nanos = std::time::SystemTime::now().duration_since(std::time::UNIX_EPOCH).unwrap().as_nanos();
    let marker = format!("flatten-{:x}-{}", nanos, std::process::id());
    let script = format!(
        "test -f /etc/motd && echo {marker} > /etc/banger-flatten-marker && rm /etc/motd && sync && cat /etc/banger-flatten-marker"
    );
    assert_eq!(env.ok(&["vm", "ssh", "flat-src", "--", &script]).trim(), marker);
    env.ok(&["vm", "stop", "flat-src"]);
    let (state, disks) = show(&env, "flat-src");
    assert_eq!(state, "stopped");
    let (base, overlay) = (disk(&disks, "base"), disk(&disks, "overlay"));
    let base_sum = hashing.join().unwrap();

    let out = env.tmp.path().join("flat.ext4");
    let t = Instant::now();
    let applied = flatten(&base, &overlay, &out).unwrap();
    let took = t.elapsed();
    let store = read_store(&overlay).unwrap();
    let changed = applied as u64 * store.chunk_bytes;
    let (a_base, a_out, a_overlay) = (allocated(&base), allocated(&out), allocated(&overlay));
    eprintln!(
        "flatten: {applied} chunks of {} bytes ({} exceptions) in {took:?}; allocated: base {a_base}, overlay {a_overlay}, out {a_out}",
        store.chunk_bytes,
        store.exceptions.len()
    );
    assert!(applied > 0);
    assert_eq!(std::fs::metadata(&out).unwrap().len(), std::fs::metadata(&base).unwrap().len());
    assert!(
        a_out as f64 <= 1.05 * a_base as f64 + changed as f64,
        "the image allocates {a_out} bytes; the base {a_base}, changed {changed}"
    );
    let names: Vec<_> = std::fs::read_dir(env.tmp.path()).unwrap().flatten().map(|e| e.file_name()).collect();
    assert!(!names.iter().any(|n| n.to_string_lossy().contains(".flatten-")), "temporary left: {names:?}");

    // The host sees the guest's changes in the image, and a clean filesystem.
    let (cat, err) = debugfs(&out, "cat /etc/banger-flatten-marker");
    assert_eq!(cat.trim(), marker, "{err}");
    let (_, err) = debugfs(&out, "stat /etc/motd");
    assert!(err.contains("File not found"), "/etc/motd is still in the image: {err}");
    let (_, err) = debugfs(&base, "stat /etc/motd");
    assert!(!err.contains("File not found"), "the base lost /etc/motd: {err}");
    let fsck = Command::new("e2fsck").args(["-fn"]).arg(&out).output().unwrap();
    assert_eq!(
        fsck.status.code(),
        Some(0),
        "e2fsck -fn: {}{}",
        String::from_utf8_lossy(&fsck.stdout),
        String::from_utf8_lossy(&fsck.stderr)
    );

    // Standalone and bootable: a VM from the image alone sees the file.
    let hashing = std::thread::spawn(move || sha256(&base));
    let out_arg = out.to_str().unwrap();
    env.ok(&["vm", "create", "--name", "flat-copy", "--image", out_arg]);
    let (_, disks) = show(&env, "flat-copy");
    assert_eq!(std::fs::metadata(disk(&disks, "base")).unwrap().ino(), std::fs::metadata(&out).unwrap().ino());
    let seen = env.ok(&[
        "vm",
        "ssh",
        "flat-copy",
        "--",
        "cat /etc/banger-flatten-marker; test ! -e /etc/motd && echo no-motd",
    ]);
    assert_eq!(seen, format!("{marker}\nno-motd\n"));
    assert_eq!(hashing.join().unwrap(), base_sum, "the base image changed");

    for vm in std::mem::take(&mut cleanup.vms) {
        env.ok(&["vm", "delete", "--force", vm]);
    }
    drop(cleanup);
    eprintln!("flatten_guest took {:?}", started.elapsed());
}

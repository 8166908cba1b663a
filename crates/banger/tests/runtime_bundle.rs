//! The runtime bundle through the CLI and the Makefile: package → manifest → fetch, and
//! `make install` into a temporary prefix that works on its own.

mod common;

use common::*;
use std::os::unix::fs::PermissionsExt;
use std::path::{Path, PathBuf};
use std::process::Command;

const FILES: &[&str] = &["bundle.toml", "vmlinux", "initrd.img", "rootfs.ext4", "rootfs-docker.ext4", "id_ed25519"];

fn fake_bundle(dir: &Path) {
    std::fs::create_dir_all(dir.join("modules/6.1")).unwrap();
    std::fs::write(dir.join("modules/6.1/virtio_blk.ko"), b"module").unwrap();
    for f in FILES {
        std::fs::write(dir.join(f), format!("contents of {f}")).unwrap();
    }
    std::fs::write(dir.join("customize.sh"), "#!/bin/sh\necho hi\n").unwrap();
    std::fs::set_permissions(dir.join("customize.sh"), std::fs::Permissions::from_mode(0o755)).unwrap();
}

fn manifest(path: &Path) {
    let files: Vec<String> = FILES.iter().map(|f| format!("{f:?}")).collect();
    std::fs::write(path, format!("version = \"test\"\nurl = \"\"\nsha256 = \"\"\nfiles = [{}]\n", files.join(", ")))
        .unwrap();
}

#[test]
fn package_pin_and_fetch_round_trip_through_the_cli() {
    let env = Env::new();
    let src = env.path("src-runtime");
    fake_bundle(&src);
    let m = env.path("runtime-bundle.toml");
    manifest(&m);
    let out = env.path("dist/banger-runtime.tar.gz");

    // Before anything is published, fetch says so and points at the local build.
    let dest = env.path("runtime");
    let r = env.run(&["runtime", "fetch", "--manifest", m.to_str().unwrap(), "--dir", dest.to_str().unwrap()]);
    assert_eq!(r.code(), 7, "{}", r.stderr());
    assert!(
        r.stderr().contains("no published bundle yet") && r.stderr().contains("make runtime-build"),
        "{}",
        r.stderr()
    );
    assert!(!dest.exists());

    let url = format!("file://{}", out.display());
    let p = env.run(&[
        "runtime",
        "package",
        "--dir",
        src.to_str().unwrap(),
        "--out",
        out.to_str().unwrap(),
        "--manifest",
        m.to_str().unwrap(),
        "--write-manifest",
        "--url",
        &url,
        "--json",
    ]);
    assert_eq!(p.code(), 0, "{}", p.stderr());
    let sha = p.json()["sha256"].as_str().unwrap().to_string();
    let pinned = std::fs::read_to_string(&m).unwrap();
    assert!(pinned.contains(&sha) && pinned.contains(&url), "{pinned}");

    // Packaging again after touching every file gives the same bytes.
    for f in FILES {
        let file = std::fs::File::options().append(true).open(src.join(f)).unwrap();
        file.set_modified(std::time::SystemTime::now() + std::time::Duration::from_secs(3600)).unwrap();
    }
    let again = env.run(&[
        "runtime",
        "package",
        "--dir",
        src.to_str().unwrap(),
        "--out",
        env.path("again.tgz").to_str().unwrap(),
        "--json",
    ]);
    assert_eq!(again.json()["sha256"], sha.as_str());

    let f = env.run(&["runtime", "fetch", "--manifest", m.to_str().unwrap(), "--dir", dest.to_str().unwrap()]);
    assert_eq!(f.code(), 0, "{}", f.stderr());
    assert!(f.stderr().contains("==> verifying SHA-256"), "{}", f.stderr());
    for file in FILES.iter().chain(&["customize.sh", "modules/6.1/virtio_blk.ko"]) {
        assert_eq!(std::fs::read(dest.join(file)).unwrap(), std::fs::read(src.join(file)).unwrap(), "{file}");
    }
    assert_eq!(mode(&dest.join("customize.sh")) & 0o111, 0o111, "exec bit lost");

    // A corrupted package is refused and the installed runtime stays as it was.
    std::fs::write(&out, b"not the bundle").unwrap();
    let bad = env.run(&["runtime", "fetch", "--manifest", m.to_str().unwrap(), "--dir", dest.to_str().unwrap()]);
    assert_eq!(bad.code(), 7, "{}", bad.stderr());
    assert!(bad.stderr().to_lowercase().contains("sha-256") || bad.stderr().contains("checksum"), "{}", bad.stderr());
    assert_eq!(std::fs::read(dest.join("vmlinux")).unwrap(), b"contents of vmlinux");
}

fn workspace_root() -> PathBuf {
    Path::new(env!("CARGO_MANIFEST_DIR")).join("../..").canonicalize().unwrap()
}

#[test]
fn make_install_fetches_nothing_and_the_installed_tree_stands_alone() {
    let env = Env::new();
    let root = workspace_root();
    let prefix = env.path("prefix");
    let bundle = env.path("bundle");
    fake_bundle(&bundle);
    let make = |dry: bool| {
        let mut cmd = Command::new("make");
        cmd.current_dir(&root).arg("--no-print-directory");
        if dry {
            cmd.arg("-n");
        }
        cmd.arg("install")
            .arg(format!("PREFIX={}", prefix.display()))
            .arg(format!("RUNTIME_DIR={}", bundle.display()))
            .arg("PROFILE=debug");
        cmd.output().unwrap()
    };
    let dry = make(true);
    let plan = String::from_utf8_lossy(&dry.stdout);
    assert!(dry.status.success(), "{}", String::from_utf8_lossy(&dry.stderr));
    for word in ["curl", "wget", "apt-get", "apt-deps", "runtime fetch", "http://", "https://"] {
        assert!(!plan.contains(word), "make install would fetch something ({word}):\n{plan}");
    }
    let real = make(false);
    assert!(real.status.success(), "{}", String::from_utf8_lossy(&real.stderr));

    // Move the installed tree elsewhere: it must not depend on where it was installed, nor on
    // the checkout (run from /, with a clean environment).
    let moved = env.path("moved-prefix");
    std::fs::rename(&prefix, &moved).unwrap();
    let installed = moved.join("bin/banger");
    let run = |args: &[&str]| {
        let out = Command::new(&installed)
            .args(args)
            .current_dir("/")
            .env_clear()
            .env("PATH", "/usr/bin:/bin")
            .env("HOME", env.path("home"))
            .env("XDG_RUNTIME_DIR", env.path("run"))
            .env("XDG_STATE_HOME", env.path("state"))
            .env("XDG_CONFIG_HOME", env.path("config"))
            .env("XDG_CACHE_HOME", env.path("cache"))
            .output()
            .unwrap();
        let out = Out(out);
        env.note_started(&out.stderr());
        out
    };
    let check = run(&["runtime", "check", "--json"]);
    assert_eq!(check.code(), 0, "{}", check.stderr());
    assert_eq!(check.json()["runtime_dir"]["path"], moved.join("lib/banger").to_str().unwrap());
    assert_eq!(check.json()["runtime_dir"]["source"], "install_prefix");
    // The installed CLI starts the installed daemon (found beside it, not in the checkout).
    let status = run(&["daemon", "status", "--json"]);
    assert_eq!(status.code(), 0, "{}", status.stderr());
    let pid = status.json()["pid"].as_i64().unwrap();
    let exe = std::fs::read_link(format!("/proc/{pid}/exe")).unwrap();
    assert_eq!(exe, moved.join("bin/bangerd"));
}

/// `make rootfs` semantics on the real bundle: nothing to do while packages.apt is unchanged; a
/// changed list rebuilds rootfs-docker.ext4 from the base image and records what it was built from.
#[test]
fn rootfs_rebuilds_only_when_packages_apt_changed() {
    let Some(rt) =
        std::env::var_os("BANGER_TEST_RUNTIME").map(PathBuf::from).filter(|p| p.join("rootfs.ext4").is_file())
    else {
        let msg = "no runtime bundle (set BANGER_TEST_RUNTIME to a built ./runtime; `make test` does)";
        if std::env::var("BANGER_E2E_REQUIRED").as_deref() == Ok("1") {
            panic!("{msg}");
        }
        skip("rootfs_rebuilds_only_when_packages_apt_changed", msg);
        return;
    };
    if !is_root() {
        skip("rootfs_rebuilds_only_when_packages_apt_changed", "needs root (chroot, loop mount)");
        return;
    }
    let env = Env::new();
    let copy = env.path("rt");
    std::fs::create_dir(&copy).unwrap();
    for f in ["rootfs.ext4", "rootfs-docker.ext4", "rootfs-docker.ext4.packages.sha256", "packages.apt", "customize.sh"]
    {
        let out =
            Command::new("cp").args(["--sparse=always", "--reflink=auto"]).arg(rt.join(f)).arg(&copy).output().unwrap();
        assert!(out.status.success(), "{}", String::from_utf8_lossy(&out.stderr));
    }
    let image = copy.join("rootfs-docker.ext4");
    let before = std::fs::metadata(&image).unwrap().modified().unwrap();
    let same = env.run(&["runtime", "rootfs", "--dir", copy.to_str().unwrap()]);
    assert_eq!(same.code(), 0, "{}", same.stderr());
    assert!(same.stdout().contains("is up to date"), "{}", same.stdout());
    assert_eq!(std::fs::metadata(&image).unwrap().modified().unwrap(), before, "rebuilt although nothing changed");

    let mut list = std::fs::read_to_string(copy.join("packages.apt")).unwrap();
    list.push_str("\n# added by the test\ntree\n");
    std::fs::write(copy.join("packages.apt"), &list).unwrap();
    let changed = env.run(&["runtime", "rootfs", "--dir", copy.to_str().unwrap()]);
    assert_eq!(changed.code(), 0, "{}", changed.stderr());
    assert!(changed.stdout().starts_with("built "), "{}", changed.stdout());
    let recorded = std::fs::read_to_string(copy.join("rootfs-docker.ext4.packages.sha256")).unwrap();
    let out = Command::new("sha256sum").arg(copy.join("packages.apt")).output().unwrap();
    let sum = String::from_utf8_lossy(&out.stdout).split_whitespace().next().unwrap().to_string();
    assert!(recorded.contains(&sum), "recorded {recorded:?}, packages.apt is {sum}");
    let stat = Command::new("debugfs").args(["-R", "stat /usr/bin/tree"]).arg(&image).output().unwrap();
    assert!(String::from_utf8_lossy(&stat.stdout).contains("Type: regular"), "tree is not in the rebuilt image");
    // The base image it was built from is untouched.
    assert_eq!(
        std::fs::metadata(rt.join("rootfs.ext4")).unwrap().len(),
        std::fs::metadata(copy.join("rootfs.ext4")).unwrap().len()
    );
}

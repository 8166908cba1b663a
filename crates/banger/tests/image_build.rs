//! `image build` against a real guest: the real binaries and runtime bundle, QEMU (TCG here)
//! booting a builder, a local .deb made here (dpkg-deb) handed over offline on the build disk,
//! a customize script, the flatten on the host, then a VM from the built image. And a build
//! whose script fails leaves nothing behind.
//!
//! Needs root and a runtime bundle (`BANGER_TEST_RUNTIME`; `make test` sets it); skipped loudly
//! otherwise — unless `BANGER_E2E_REQUIRED=1`, when that is a failure.

mod common;

use common::*;
use std::path::{Path, PathBuf};
use std::process::Command;

fn runtime() -> Option<PathBuf> {
    let no_dpkg_deb = Command::new("dpkg-deb").arg("--version").output().is_err();
    e2e_runtime("image_build", no_dpkg_deb.then_some("needs dpkg-deb"))
}

fn sha256sum(p: &Path) -> String {
    let out = Command::new("sha256sum").arg(p).output().unwrap();
    assert!(out.status.success(), "{out:?}");
    String::from_utf8_lossy(&out.stdout).split_whitespace().next().unwrap().to_string()
}

/// A tiny package `banger-e2e-marker` (one file) built with dpkg-deb.
fn make_deb(dir: &Path) -> PathBuf {
    let root = dir.join("pkg");
    std::fs::create_dir_all(root.join("DEBIAN")).unwrap();
    std::fs::create_dir_all(root.join("usr/share/banger-e2e")).unwrap();
    std::fs::write(
        root.join("DEBIAN/control"),
        "Package: banger-e2e-marker\nVersion: 1.0\nArchitecture: all\nMaintainer: banger <banger@example.com>\n\
         Description: banger image build test package\n",
    )
    .unwrap();
    std::fs::write(root.join("usr/share/banger-e2e/hello"), "hello\n").unwrap();
    let deb = dir.join("banger-e2e-marker_1.0_all.deb");
    let out = Command::new("dpkg-deb").args(["--root-owner-group", "--build"]).arg(&root).arg(&deb).output().unwrap();
    assert!(out.status.success(), "{out:?}");
    deb
}

#[test]
fn build_an_image_use_it_and_a_failed_build_leaves_nothing() {
    let Some(rt) = runtime() else { return };
    let env = Env::new();
    env.write_config("subnet = \"10.213.220.0/24\"\nvmm = \"qemu\"\ndefault_memory = 512\n");
    let run = |args: &[&str]| env.run_rt(&rt, args);
    let _leftovers =
        Leftovers { env: &env, rt: &rt, vms: &["ib1", "build-ibt", "build-ibfail"], images: &["ibt", "ibfail"] };
    let ok = |args: &[&str]| {
        let out = run(args);
        assert_eq!(out.code(), 0, "banger {args:?}: {}", out.stderr());
        out
    };

    let work = env.path("work");
    std::fs::create_dir_all(&work).unwrap();
    let deb = make_deb(&work);
    let script = work.join("customize.sh");
    std::fs::write(
        &script,
        "#!/bin/sh\nset -eu\necho \"hello from the script in $BANGER_STATE_DIR\"\n\
         test -f \"$BANGER_RUNTIME_DIR/packages.apt\"\n\
         dpkg -s banger-e2e-marker >/dev/null\necho built > /etc/banger-e2e-marker\n",
    )
    .unwrap();
    let base = rt.join("rootfs.ext4");
    let base_sum = sha256sum(&base);

    let built = ok(&[
        "image",
        "build",
        "--name",
        "ibt",
        "--base",
        "base",
        "--script",
        script.to_str().unwrap(),
        "--deb",
        deb.to_str().unwrap(),
        "--json",
    ]);
    let err = built.stderr();
    eprintln!("{err}");
    assert!(err.contains("| hello from the script in /var/tmp/banger-build/state"), "script output streams: {err}");
    for phase in [
        "booting the builder",
        "installing packages",
        "running the customize script",
        "writing the standalone image",
        "registered",
    ] {
        assert!(err.contains(phase), "phase {phase:?} shown: {err}");
    }
    let image = built.json();
    assert_eq!(image["name"], "ibt");
    let path = PathBuf::from(image["path"].as_str().unwrap());
    assert_eq!(path, env.state_dir().join("built-images/ibt/rootfs.ext4"));

    // Its metadata.
    let show = ok(&["image", "show", "ibt", "--json"]).json();
    assert_eq!(show["kind"], "built");
    assert_eq!(show["base"], "base");
    assert_eq!(show["kernel"], rt.join("vmlinux").display().to_string());
    assert_eq!(show["script"], script.display().to_string());
    assert_eq!(show["script_sha256"], sha256sum(&script));
    assert_eq!(show["packages_sha256"].as_str().unwrap().len(), 64);
    let log = PathBuf::from(show["build_log"].as_str().unwrap());
    assert!(std::fs::read_to_string(&log).unwrap().contains("hello from the script"), "{}", log.display());
    let list = ok(&["vm", "list", "--json"]).json();
    assert_eq!(list["vms"].as_array().unwrap().len(), 0, "the builder is gone: {list}");

    // A VM from it has the marker and the package.
    let vm = ok(&["vm", "create", "--name", "ib1", "--image", "ibt", "--disk-size", "128M", "--json"]).json();
    assert_eq!(vm["image"], "ibt");
    let out = ok(&["vm", "ssh", "ib1", "--", "cat /etc/banger-e2e-marker; dpkg -s banger-e2e-marker | grep Status"]);
    assert_eq!(out.stdout(), "built\nStatus: install ok installed\n");
    let tap_prefix = vm["tap"].as_str().unwrap().trim_end_matches(char::is_numeric).to_string();

    // The base never changed.
    assert_eq!(sha256sum(&base), base_sum);

    // An image a VM uses stays; without users it goes.
    let refused = run(&["image", "delete", "ibt"]);
    assert_eq!(refused.code(), 4, "{}", refused.stderr());
    assert!(refused.stderr().contains("used by VM ib1"), "{}", refused.stderr());
    ok(&["vm", "delete", "--force", "ib1"]);
    ok(&["image", "delete", "ibt"]);
    assert!(!path.exists() && !env.state_dir().join("built-images/ibt").exists());

    // A failing script: nothing registered or running, its log named.
    let fail = work.join("fail.sh");
    std::fs::write(&fail, "#!/bin/sh\necho about to fail\nexit 3\n").unwrap();
    let failed = run(&["image", "build", "--name", "ibfail", "--script", fail.to_str().unwrap()]);
    assert_ne!(failed.code(), 0);
    let err = failed.stderr();
    assert!(err.contains("| about to fail"), "{err}");
    assert!(err.contains("the customize script failed in the builder (exit status 3)"), "{err}");
    let log = err.split("build log: ").nth(1).and_then(|r| r.split(')').next()).expect("the log is named");
    assert!(std::fs::read_to_string(log).unwrap().contains("about to fail"), "{log}");
    assert_eq!(run(&["image", "show", "ibfail"]).code(), 3);
    let list = ok(&["vm", "list", "--json"]).json();
    assert_eq!(list["vms"].as_array().unwrap().len(), 0, "no builder left: {list}");
    assert!(!env.state_dir().join("built-images/ibfail").exists());
    let links = Command::new("ip").args(["-br", "link"]).output().unwrap();
    let links = String::from_utf8_lossy(&links.stdout);
    assert!(!links.lines().any(|l| l.starts_with(&tap_prefix)), "no TAP left: {links}");
}

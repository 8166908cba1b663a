//! A state filesystem too small for a VM (a 200 MiB loop-mounted ext4 as the state dir): `vm
//! create` fails before writing, saying what needs how much and what is free; nothing is left
//! half-made and the database stays readable.
//!
//! Needs root (a loop mount) and a runtime bundle (`BANGER_TEST_RUNTIME`; `make test` sets it);
//! skipped loudly otherwise — unless `BANGER_E2E_REQUIRED=1`, when that is a failure.

mod common;

use common::*;
use std::process::Command;

/// Unmounts the small state filesystem (after stopping the daemon that uses it).
struct Mounted<'a> {
    env: &'a Env,
    at: std::path::PathBuf,
}

impl Drop for Mounted<'_> {
    fn drop(&mut self) {
        self.env.run(&["daemon", "stop"]);
        let _ = Command::new("umount").arg(&self.at).status();
    }
}

/// `env`'s state directory on a fresh ext4 of `mib` MiB (a loop mount), unmounted when dropped.
fn small_state(env: &Env, mib: u64) -> Mounted<'_> {
    let img = env.path("state.img");
    let at = env.path("state");
    std::fs::create_dir_all(&at).unwrap();
    std::fs::File::create(&img).unwrap().set_len(mib << 20).unwrap();
    assert!(Command::new("mkfs.ext4").args(["-q", "-F"]).arg(&img).status().unwrap().success());
    assert!(Command::new("mount").args(["-o", "loop"]).arg(&img).arg(&at).status().unwrap().success());
    Mounted { env, at }
}

fn entries(dir: &std::path::Path) -> Vec<std::fs::DirEntry> {
    std::fs::read_dir(dir).map(|d| d.flatten().collect()).unwrap_or_default()
}

#[test]
fn a_full_state_filesystem_fails_clearly_and_leaves_nothing() {
    let Some(rt) = e2e_runtime("disk_full", None) else { return };
    let env = Env::new();
    env.write_config("subnet = \"10.213.229.0/24\"\nvmm = \"qemu\"\n");
    let _mounted = small_state(&env, 200);

    // The base image (on another filesystem) must be copied, and does not fit.
    let out = env.run_rt(&rt, &["vm", "create", "--name", "full1", "--no-start", "--disk-size", "64M"]);
    assert_ne!(out.code(), 0);
    let err = out.stderr();
    eprintln!("{err}");
    assert!(err.contains("not enough free space in"), "{err}");
    assert!(err.contains("a copy of the base image"), "{err}");
    assert_eq!(err.lines().filter(|l| l.starts_with("banger: error:")).count(), 1, "one sentence: {err}");

    // Nothing half-made; the database answers.
    let list = env.ok_rt(&rt, &["vm", "list", "--json"]).json();
    assert_eq!(list["vms"].as_array().unwrap().len(), 0);
    let state = env.state_dir();
    let images: Vec<_> = std::fs::read_dir(state.join("images")).map(|d| d.flatten().collect()).unwrap_or_default();
    assert!(images.is_empty(), "no pinned or temporary image: {images:?}");
    let vms: Vec<_> = std::fs::read_dir(state.join("vms")).map(|d| d.flatten().collect()).unwrap_or_default();
    assert!(vms.is_empty(), "no VM directory: {vms:?}");
    let said = err.lines().find(|l| l.starts_with("banger: error:")).unwrap_or_default().to_string();
    banger_testkit::report(
        "Disk full",
        "`vm create` with a 200 MiB state filesystem",
        &format!(
            "refused (exit {}): \"{}\"; nothing left, database readable",
            out.code(),
            said.trim_start_matches("banger: error: ")
        ),
    );
}

/// Room for the builder's copy of the base image, not for the image a build makes: `image
/// build` refuses before booting anything, and the builder, its pinned base and the build
/// directory all go.
#[test]
fn an_image_build_that_would_not_fit_is_refused_and_leaves_nothing() {
    let Some(rt) = e2e_runtime("disk_full (image build)", None) else { return };
    let env = Env::new();
    env.write_config("subnet = \"10.213.232.0/24\"\nvmm = \"qemu\"\n");
    let base = banger_storage_allocated(&rt.join("rootfs.ext4"));
    // The base's copy fits, the image after it does not.
    let _mounted = small_state(&env, (base >> 20) + 250);
    // (Dropped before the mount: if the refusal ever regressed, no builder keeps it busy.)
    let _left = Leftovers { env: &env, rt: &rt, vms: &["build-full"], images: &["full"] };
    let script = env.path("s.sh");
    std::fs::write(&script, "#!/bin/sh\ntrue\n").unwrap();
    let out =
        env.run_rt(&rt, &["image", "build", "--name", "full", "--base", "base", "--script", script.to_str().unwrap()]);
    let err = out.stderr();
    assert_eq!(out.code(), 4, "{err}");
    assert!(err.contains("not enough free space in") && err.contains("image full"), "{err}");
    let said = err.lines().find(|l| l.starts_with("banger: error:")).unwrap_or_default().to_string();
    assert!(!err.contains("booting"), "refused before the builder booted: {err}");
    let state = env.state_dir();
    assert_eq!(env.ok_rt(&rt, &["vm", "list", "--json"]).json()["vms"].as_array().unwrap().len(), 0, "no builder");
    let images = env.ok_rt(&rt, &["image", "list", "--json"]).stdout();
    assert!(!images.contains("\"full\""), "{images}");
    for d in ["vms", "images", "built-images"] {
        assert!(entries(&state.join(d)).is_empty(), "{d}: {:?}", entries(&state.join(d)));
    }
    banger_testkit::report(
        "Disk full",
        "`image build` with room for the base's copy but not for the image",
        &format!(
            "refused before booting (exit 4): \"{}\"; no builder, image, pinned base or build directory left",
            said.trim_start_matches("banger: error: ")
        ),
    );
}

/// Bytes allocated to `path` (it is sparse).
fn banger_storage_allocated(path: &std::path::Path) -> u64 {
    use std::os::unix::fs::MetadataExt;
    std::fs::metadata(path).unwrap().blocks() * 512
}

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
use std::sync::{Mutex, MutexGuard};
use std::time::{Duration, Instant};

/// The tests here boot VMs: one at a time.
static BOOTS: Mutex<()> = Mutex::new(());

fn serial() -> MutexGuard<'static, ()> {
    BOOTS.lock().unwrap_or_else(|e| e.into_inner())
}

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
    let _serial = serial();
    let env = Env::new();
    env.write_config("subnet = \"10.213.220.0/24\"\nvmm = \"qemu\"\ndefault_memory = 512\n");
    let run = |args: &[&str]| env.run_rt(&rt, args);
    let _leftovers =
        Leftovers { env: &env, rt: &rt, vms: &["ib1", "build-ibt", "build-ibfail"], images: &["ibt", "ibfail"] };
    let ok = |args: &[&str]| env.ok_rt(&rt, args);

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

/// A layer on a built image, with NAT (its script reaches Debian's mirror itself), grown, and
/// interactive (in a real terminal: tmux): the shell's change is in the image, each layer is
/// standalone (the lower one deleted, a VM from the upper one has all three layers' files).
const DEBIAN_RELEASE: &str = "http://deb.debian.org/debian/dists/bookworm/Release";

#[test]
fn a_layer_built_interactively_with_nat_and_grown_is_standalone() {
    // The builder's script reaches Debian's mirror through NAT, so this host must reach it too.
    let offline = !Command::new("curl")
        .args(["-fsS", "--max-time", "20", "-o", "/dev/null", DEBIAN_RELEASE])
        .status()
        .is_ok_and(|s| s.success());
    let missing = if which("tmux").is_none() {
        Some("needs tmux (Debian package tmux)")
    } else {
        offline.then_some("this host cannot reach deb.debian.org, which the NAT'ed builder must reach")
    };
    let Some(rt) = e2e_runtime("image_build layers", missing) else {
        return;
    };
    let _serial = serial();
    let env = Env::new();
    env.write_config("subnet = \"10.213.221.0/24\"\nvmm = \"qemu\"\ndefault_memory = 512\n");
    let run = |args: &[&str]| env.run_rt(&rt, args);
    let _leftovers = Leftovers {
        env: &env,
        rt: &rt,
        vms: &["il2vm", "build-il1", "build-il2", "build-il2x"],
        images: &["il2", "il1", "il2x"],
    };
    let ok = |args: &[&str]| env.ok_rt(&rt, args);
    let work = env.path("work");
    std::fs::create_dir_all(&work).unwrap();
    let s1 = work.join("one.sh");
    std::fs::write(&s1, "#!/bin/sh\nset -eu\necho one > /etc/banger-layer1\n").unwrap();
    let s2 = work.join("two.sh");
    std::fs::write(
        &s2,
        format!(
            "#!/bin/sh\nset -eu\ncurl -fsS --max-time 60 -o /dev/null {DEBIAN_RELEASE}\n\
             echo 'reached deb.debian.org'\necho two > /etc/banger-layer2\n"
        ),
    )
    .unwrap();
    ok(&["image", "build", "--name", "il1", "--base", "base", "--script", s1.to_str().unwrap()]);

    // Not a terminal: refused before anything is made.
    let refused = run(&["image", "build", "--name", "il2", "--base", "il1", "--interactive"]);
    assert_eq!(refused.code(), 2, "{}", refused.stderr());
    assert!(refused.stderr().contains("--interactive needs a terminal"), "{}", refused.stderr());

    let banger = banger_bin();
    let bin = banger.to_str().unwrap();
    let rt_var = [("BANGER_RUNTIME_DIR", rt.as_path())];

    // Abandoned at the question: exit 4, nothing registered or left running.
    let status = env.path("il2x.status");
    let argv = [bin, "image", "build", "--name", "il2x", "--base", "il1", "--interactive"];
    let term = Tmux::start(&env, &rt_var, &argv, &status, 160, 50);
    term.wait_for("root@build-il2x", Duration::from_secs(600));
    term.send("exit", true);
    term.send("Enter", false);
    term.wait_for("[Y/n]", Duration::from_secs(60));
    term.send("n", true);
    term.send("Enter", false);
    let code = term.wait_exit(&status, Duration::from_secs(300));
    let screen = term.screen();
    assert_eq!(code, "4", "{screen}");
    assert!(screen.contains("abandoned after its interactive shell"), "{screen}");
    drop(term);
    assert_eq!(run(&["image", "show", "il2x"]).code(), 3);
    assert!(!env.state_dir().join("built-images/il2x").exists());
    let list = ok(&["vm", "list", "--json"]).json();
    assert_eq!(list["vms"].as_array().unwrap().len(), 0, "no builder left: {list}");

    // Taken: NAT, grown, and what the shell did is in the image.
    let status = env.path("il2.status");
    let argv = [
        bin,
        "image",
        "build",
        "--name",
        "il2",
        "--base",
        "il1",
        "--script",
        s2.to_str().unwrap(),
        "--nat",
        "--size",
        "5G",
        "--interactive",
    ];
    let term = Tmux::start(&env, &rt_var, &argv, &status, 160, 50);
    term.wait_for("a shell in the builder build-il2", Duration::from_secs(600));
    term.wait_for("root@build-il2", Duration::from_secs(60));
    term.send("echo three > /etc/banger-layer3; exit", true);
    term.send("Enter", false);
    term.wait_for("[Y/n]", Duration::from_secs(60));
    term.send("y", true);
    term.send("Enter", false);
    let code = term.wait_exit(&status, Duration::from_secs(600));
    let screen = term.screen();
    eprintln!("{screen}");
    assert_eq!(code, "0", "the interactive build failed:\n{screen}");
    assert!(screen.contains("| reached deb.debian.org"), "the script used NAT:\n{screen}");
    assert!(screen.contains("the shell ended after"), "{screen}");
    drop(term);

    let show = ok(&["image", "show", "il2", "--json"]).json();
    assert_eq!(show["base"], "il1");
    assert_eq!(show["size"], 5u64 << 30);
    assert!(show["allocated"].as_u64().unwrap() < 2u64 << 30, "sparse: {show}");
    let list = ok(&["vm", "list", "--json"]).json();
    assert_eq!(list["vms"].as_array().unwrap().len(), 0, "no builder left: {list}");
    // Standalone: its base goes, and a VM from it has every layer and the larger root filesystem.
    ok(&["image", "delete", "il1"]);
    ok(&["vm", "create", "--name", "il2vm", "--image", "il2", "--disk-size", "128M"]);
    let out = ok(&[
        "vm",
        "ssh",
        "il2vm",
        "--",
        "cat /etc/banger-layer1 /etc/banger-layer2 /etc/banger-layer3; df -B1M --output=size / | tail -1",
    ]);
    let stdout = out.stdout();
    let lines: Vec<&str> = stdout.lines().map(str::trim).collect();
    assert_eq!(lines[..3], ["one", "two", "three"], "{stdout}");
    let root_mib: u64 = lines[3].parse().unwrap();
    assert!(root_mib > 4600, "/ is about 5G: {root_mib} MiB");
}

/// Each installed package of an ext4 image (`name:arch`) with its version, from `dpkg-query` on
/// its dpkg status file (read out with debugfs; the image is not mounted).
fn installed_packages(image: &Path, dir: &Path) -> std::collections::BTreeMap<String, String> {
    std::fs::create_dir_all(dir).unwrap();
    let status = dir.join("status");
    let out = Command::new("debugfs")
        .arg("-R")
        .arg(format!("dump /var/lib/dpkg/status {}", status.display()))
        .arg(image)
        .output()
        .unwrap();
    assert!(status.is_file(), "debugfs: {out:?}");
    let out = Command::new("dpkg-query")
        .arg(format!("--admindir={}", dir.display()))
        .args(["-W", "-f", "${db:Status-Abbrev}${Package}:${Architecture} ${Version}\n"])
        .output()
        .unwrap();
    assert!(out.status.success(), "dpkg-query: {out:?}");
    String::from_utf8_lossy(&out.stdout)
        .lines()
        .filter_map(|l| l.strip_prefix("ii "))
        .filter_map(|l| l.trim().split_once(' '))
        .map(|(p, v)| (p.to_string(), v.to_string()))
        .collect()
}

/// `image build --docker --packages packages.apt` from `base` installs exactly the packages
/// `make rootfs` put into the bundle's rootfs-docker.ext4 (`dpkg-query` of both), and Docker is
/// enabled in it. Slow (the whole list, installed in a TCG guest): one build, no VM from it.
#[test]
fn a_docker_build_has_the_package_set_of_make_rootfs() {
    let rt = std::env::var_os("BANGER_TEST_RUNTIME").map(PathBuf::from);
    let no_docker_image = rt.as_ref().is_some_and(|r| !r.join("rootfs-docker.ext4").is_file());
    let no_tools = Command::new("dpkg-query").arg("--version").output().is_err();
    let missing = if no_docker_image {
        Some("the runtime bundle has no rootfs-docker.ext4 (built with NO_DOCKER=1; `make rootfs` makes it)")
    } else {
        no_tools.then_some("needs dpkg-query")
    };
    let Some(rt) = e2e_runtime("image_build docker", missing) else { return };
    let _serial = serial();
    let env = Env::new();
    env.write_config("subnet = \"10.213.222.0/24\"\nvmm = \"qemu\"\ndefault_memory = 1024\n");
    let _leftovers = Leftovers { env: &env, rt: &rt, vms: &["build-idk"], images: &["idk"] };
    let list = rt.join("packages.apt");
    let out = env.run_rt(
        &rt,
        &["image", "build", "--name", "idk", "--base", "base", "--docker", "--packages", list.to_str().unwrap()],
    );
    assert_eq!(out.code(), 0, "{}", out.stderr());
    let show = env.run_rt(&rt, &["image", "show", "idk", "--json"]).json();
    assert_eq!(show["docker"], true);
    let built = PathBuf::from(show["path"].as_str().unwrap());

    let ours = installed_packages(&built, &env.path("dpkg-built"));
    let theirs = installed_packages(&rt.join("rootfs-docker.ext4"), &env.path("dpkg-rootfs"));
    assert!(ours.contains_key("docker.io:amd64"), "{ours:?}");
    // The same packages. Versions are the same too unless Debian updated one between `make
    // rootfs` and now (the build takes what the mirror has today): shown, not a failure.
    let only_ours: Vec<_> = ours.keys().filter(|p| !theirs.contains_key(*p)).collect();
    let only_theirs: Vec<_> = theirs.keys().filter(|p| !ours.contains_key(*p)).collect();
    assert!(
        only_ours.is_empty() && only_theirs.is_empty(),
        "package sets differ ({} packages in the build, {} in rootfs-docker.ext4)\n\
         only in the build: {only_ours:?}\nonly in rootfs-docker.ext4: {only_theirs:?}",
        ours.len(),
        theirs.len()
    );
    let newer: Vec<_> = ours.iter().filter(|(p, v)| theirs[*p] != **v).map(|(p, v)| format!("{p} {v}")).collect();
    eprintln!("{} packages in both; versions that differ from rootfs-docker.ext4's: {newer:?}", ours.len());
    // Docker starts at boot (the units' enablement symlinks are in the image).
    let out = Command::new("debugfs")
        .args(["-R", "ls -l /etc/systemd/system/multi-user.target.wants"])
        .arg(&built)
        .output()
        .unwrap();
    let wants = String::from_utf8_lossy(&out.stdout);
    assert!(wants.contains("docker.service") && wants.contains("containerd.service"), "{wants}");
}

/// A build whose client is interrupted (SIGINT, as Ctrl-C sends), and one whose daemon is killed
/// (-9) while its script runs: neither leaves a builder VM, VMM process, TAP or build directory,
/// and each keeps its log.
#[test]
fn an_interrupted_build_and_a_killed_daemon_leave_nothing() {
    use std::io::BufRead;
    let Some(rt) = runtime() else { return };
    let _serial = serial();
    let env = Env::new();
    env.write_config("subnet = \"10.213.223.0/24\"\nvmm = \"qemu\"\ndefault_memory = 512\n");
    let _leftovers = Leftovers { env: &env, rt: &rt, vms: &["build-ibint", "build-ibkill"], images: &[] };
    let ok = |args: &[&str]| env.ok_rt(&rt, args);
    let script = env.path("sleep.sh");
    std::fs::write(&script, "#!/bin/sh\necho sleeping\nexec sleep 600\n").unwrap();
    let daemon = |env: &Env| env.ok_rt(&rt, &["daemon", "status", "--json"]).json()["pid"].as_i64().unwrap() as i32;
    let first_daemon = daemon(&env);

    // Starts a build and returns once its script runs: the CLI and the builder's VMM pid.
    let start = |name: &str| -> (std::process::Child, i32, String) {
        let mut cli = env
            .banger(&["image", "build", "--name", name, "--script", script.to_str().unwrap()])
            .env("BANGER_RUNTIME_DIR", &rt)
            .stderr(std::process::Stdio::piped())
            .spawn()
            .unwrap();
        let mut lines = std::io::BufReader::new(cli.stderr.take().unwrap()).lines();
        let mut seen = String::new();
        while !seen.contains("| sleeping") {
            match lines.next() {
                Some(Ok(l)) => seen.push_str(&format!("{l}\n")),
                _ => panic!("the build ended before its script ran:\n{seen}"),
            }
        }
        // Keep draining its output (the CLI must not block on a full pipe).
        std::thread::spawn(move || lines.for_each(drop));
        let vm = ok(&["vm", "show", &format!("build-{name}"), "--json"]).json();
        (cli, vm["pid"].as_i64().expect("the builder runs") as i32, vm["tap"].as_str().unwrap().to_string())
    };
    let gone = |name: &str, vmm: i32, tap: &str| {
        assert!(wait_gone(vmm, Duration::from_secs(60)), "the builder's VMM {vmm} still runs");
        let t0 = Instant::now();
        while env.state_dir().join("built-images").join(name).exists() {
            assert!(t0.elapsed() < Duration::from_secs(60), "built-images/{name} is still there");
            std::thread::sleep(Duration::from_millis(200));
        }
        let list = ok(&["vm", "list", "--json"]).json();
        assert_eq!(list["vms"].as_array().unwrap().len(), 0, "no builder left: {list}");
        assert_eq!(env.run_rt(&rt, &["image", "show", name]).code(), 3);
        let logs: Vec<String> = std::fs::read_dir(env.state_dir().join("build-logs"))
            .unwrap()
            .flatten()
            .map(|e| e.file_name().to_string_lossy().into_owned())
            .collect();
        assert!(logs.iter().any(|l| l.starts_with(&format!("{name}-"))), "its log is kept: {logs:?}");
        let link = Command::new("ip").args(["link", "show", tap]).output().unwrap();
        assert!(!link.status.success(), "the TAP {tap} is gone");
    };

    // Ctrl-C: the client goes away, the daemon notices and cleans up.
    let (mut cli, vmm, tap) = start("ibint");
    nix::sys::signal::kill(nix::unistd::Pid::from_raw(cli.id() as i32), nix::sys::signal::Signal::SIGINT).unwrap();
    cli.wait().unwrap();
    gone("ibint", vmm, &tap);

    // The daemon killed mid-build: the next one cleans up at its start.
    let (mut cli, vmm, tap) = start("ibkill");
    let pid = daemon(&env);
    assert_eq!(pid, first_daemon);
    nix::sys::signal::kill(nix::unistd::Pid::from_raw(pid), nix::sys::signal::Signal::SIGKILL).unwrap();
    assert!(wait_gone(pid, Duration::from_secs(10)));
    env.forget_daemon(pid);
    assert_ne!(cli.wait().unwrap().code(), Some(0), "the build failed with its daemon");
    assert_ne!(daemon(&env), pid, "a new daemon");
    gone("ibkill", vmm, &tap);
}

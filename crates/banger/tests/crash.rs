//! Crash consistency with real kills: bangerd is started with `BANGER_FAULT=POINT` (see
//! `banger_daemon::fault`), so it SIGKILLs itself at that step of create, start, stop, restart,
//! kill, set, delete or image build. The test checks it really died there, lets the CLI start
//! a clean daemon, and checks the whole installation: every VM settled (running, stopped or
//! failed), the operation complete or rolled back as expected, and no VMM process, TAP,
//! firewall rule, control socket, pinned image, loop device, marker or temporary file that no
//! VM owns. Also kill -9 of a CLI mid-start and of a VMM. One VM (`fx`) goes through it all on
//! a real guest (QEMU), and its `/root` data must survive every step.
//!
//! Needs root and a runtime bundle (`BANGER_TEST_RUNTIME`; `make test` sets it); skipped loudly
//! otherwise — unless `BANGER_E2E_REQUIRED=1`, when that is a failure.

mod common;

use common::*;
use serde_json::Value;
use std::collections::BTreeSet;
use std::os::unix::process::ExitStatusExt;
use std::path::Path;
use std::process::{Command, Stdio};
use std::time::{Duration, Instant};

const SUBNET: &str = "10.213.230";

struct Crash<'a> {
    env: &'a Env,
    rt: &'a Path,
    prefix: String,
    points: BTreeSet<String>,
}

impl Crash<'_> {
    fn ok(&self, args: &[&str]) -> Out {
        self.env.ok_rt(self.rt, args)
    }

    /// `banger args…` against a daemon that dies at `point`: it must die there (SIGKILL), the
    /// CLI must fail saying the daemon went away, and the installation must then be consistent.
    fn fault(&mut self, point: &str, args: &[&str]) -> Vec<Value> {
        // A clean daemon may be running (the last check started one): end it first.
        self.env.stop_daemon(self.rt);
        let mut daemon = self
            .env
            .bangerd()
            .env("BANGER_RUNTIME_DIR", self.rt)
            .env("BANGER_FAULT", point)
            .stdout(Stdio::null())
            .stderr(Stdio::null())
            .spawn()
            .unwrap();
        let t0 = Instant::now();
        while std::os::unix::net::UnixStream::connect(self.env.socket()).is_err() {
            assert!(daemon.try_wait().unwrap().is_none(), "{point}: bangerd exited at start: {}", self.env.log());
            if t0.elapsed() > Duration::from_secs(30) {
                let _ = daemon.kill();
                let _ = daemon.wait();
                panic!("{point}: bangerd never listened");
            }
            std::thread::sleep(Duration::from_millis(50));
        }
        let out = self.env.run_rt(self.rt, args);
        // It must die at the point: a daemon still running a while after its CLI returned did
        // not reach it (ended here, by its pid, so the test fails rather than hangs).
        let t0 = Instant::now();
        let status = loop {
            if let Some(status) = daemon.try_wait().unwrap() {
                break status;
            }
            if t0.elapsed() > Duration::from_secs(30) {
                let _ = daemon.kill();
                let _ = daemon.wait();
                panic!("{point}: bangerd did not die at the point; the CLI said: {}", out.stderr());
            }
            std::thread::sleep(Duration::from_millis(50));
        };
        assert_eq!(
            status.signal(),
            Some(9),
            "{point}: bangerd must have died at the point (ran {args:?}: {})",
            out.stderr()
        );
        assert_ne!(out.code(), 0, "{point}: the CLI cannot report success from a daemon that died");
        assert!(!out.stderr().contains("panicked"), "{point}: {}", out.stderr());
        self.points.insert(point.to_string());
        self.consistent(point)
    }

    fn list(&self) -> Vec<Value> {
        self.ok(&["vm", "list", "--json"]).json()["vms"].as_array().unwrap().clone()
    }

    fn vm<'v>(vms: &'v [Value], name: &str) -> Option<&'v Value> {
        vms.iter().find(|v| v["name"] == name)
    }

    /// Wait until no VM is `starting` or `stopping` (a stop the new daemon finishes), then check
    /// everything on the host matches the VMs; returns the VM list.
    fn consistent(&self, when: &str) -> Vec<Value> {
        let t0 = Instant::now();
        let vms_dir = self.env.state_dir().join("vms");
        let vms = loop {
            let vms = self.list();
            // (A grow the dead daemon recorded is finished in the background: marked meanwhile.)
            let growing = dir_names(&vms_dir).iter().any(|n| vms_dir.join(n).join(".growing").exists());
            if !growing && vms.iter().all(|v| matches!(v["state"].as_str(), Some("running" | "stopped" | "failed"))) {
                break vms;
            }
            assert!(t0.elapsed() < Duration::from_secs(90), "{when}: VMs never settled: {vms:?}");
            std::thread::sleep(Duration::from_millis(250));
        };
        let running: Vec<&Value> = vms.iter().filter(|v| v["state"] == "running").collect();
        let names: BTreeSet<String> = vms.iter().map(|v| v["name"].as_str().unwrap().to_string()).collect();

        // VMM processes: exactly the running VMs' (found by this installation's run dir).
        let run = self.env.path("run");
        let vmms: BTreeSet<u32> = processes_mentioning(&run.to_string_lossy());
        let expected: BTreeSet<u32> = running.iter().map(|v| v["pid"].as_u64().unwrap() as u32).collect();
        assert_eq!(vmms, expected, "{when}: VMM processes vs running VMs");
        // TAPs: exactly the running VMs'.
        let links = String::from_utf8(Command::new("ip").args(["-br", "link"]).output().unwrap().stdout).unwrap();
        let taps: BTreeSet<String> = links
            .lines()
            .filter_map(|l| l.split_whitespace().next())
            .filter(|l| l.starts_with(&self.prefix))
            .map(|l| l.split('@').next().unwrap().to_string())
            .collect();
        let want: BTreeSet<String> = running.iter().map(|v| v["tap"].as_str().unwrap().to_string()).collect();
        assert_eq!(taps, want, "{when}: TAPs vs running VMs");
        // Firewall rules: only running VMs' (NAT, DNS redirect).
        let mut read = 0;
        for save in ["iptables-nft-save", "iptables-legacy-save"] {
            let Ok(out) = Command::new(save).output() else { continue };
            read += 1;
            for line in String::from_utf8_lossy(&out.stdout).lines().filter(|l| l.contains(&self.prefix)) {
                assert!(
                    running.iter().any(|v| line.contains(&format!("{}{}", self.prefix, v["name"].as_str().unwrap()))),
                    "{when}: a rule no running VM owns: {line}"
                );
            }
        }
        assert!(read > 0, "no iptables-save to read the rules with");
        // Control sockets and run directories: only running VMs'.
        let run_vms: BTreeSet<String> = dir_names(&self.env.run_dir().join("vms"));
        let want: BTreeSet<String> = running.iter().map(|v| v["name"].as_str().unwrap().to_string()).collect();
        assert_eq!(run_vms, want, "{when}: run directories vs running VMs");
        // Disks: one directory per VM with both disks, nothing else (no marker, no staging).
        assert_eq!(dir_names(&vms_dir), names, "{when}: VM directories vs VMs");
        for n in &names {
            let files = dir_names(&vms_dir.join(n));
            assert!(files.iter().any(|f| f.starts_with("work")), "{when}: {n} lost its work disk: {files:?}");
            assert!(!files.iter().any(|f| f.starts_with('.')), "{when}: {n} has a marker left: {files:?}");
        }
        // Pinned bases: exactly those the VMs use; no temporary copy.
        let db = banger_state::Db::open(&self.env.state_dir().join("state.db")).unwrap();
        let bases: BTreeSet<String> = db
            .vms()
            .unwrap()
            .iter()
            .map(|r| Path::new(&r.base_path).file_name().unwrap().to_string_lossy().into_owned())
            .collect();
        assert_eq!(dir_names(&self.env.state_dir().join("images")), bases, "{when}: pinned bases vs VMs");
        // No loop device on any file of this installation.
        let loops = String::from_utf8(Command::new("losetup").arg("-a").output().unwrap().stdout).unwrap();
        assert!(!loops.contains(&*self.env.tmp.path().to_string_lossy()), "{when}: a loop device left: {loops}");
        // Nothing half-built: every build directory is a registered image's.
        let images = self.ok(&["image", "list", "--json"]).json();
        let registered: BTreeSet<String> =
            images["images"].as_array().unwrap().iter().map(|i| i["name"].as_str().unwrap().to_string()).collect();
        let built = dir_names(&self.env.state_dir().join("built-images"));
        assert!(built.is_subset(&registered), "{when}: build directories {built:?} vs images {registered:?}");
        vms
    }

    fn state(vms: &[Value], name: &str) -> String {
        Self::vm(vms, name).map(|v| v["state"].as_str().unwrap().to_string()).unwrap_or_else(|| "absent".into())
    }

    /// Record and check the outcome at `point`: `want` is the VM's state afterwards.
    fn expect(&self, point: &str, vms: &[Value], name: &str, want: &str, how: &str) {
        self.expect_at(point, "", vms, name, want, how)
    }

    /// [`Self::expect`] for a point tried in more than one situation (`note` says which).
    fn expect_at(&self, point: &str, note: &str, vms: &[Value], name: &str, want: &str, how: &str) {
        let got = Self::state(vms, name);
        assert_eq!(got, want, "{point}: VM {name}: {vms:?}\n{}", self.env.log());
        banger_testkit::report(
            "Crash: kill -9 bangerd mid-operation",
            &format!("`BANGER_FAULT={point}`{note}"),
            &format!("{how}; VM {name} {got}; nothing leaked"),
        );
    }

    /// Start `fx` (no fault) and check its data survived.
    fn start_and_check(&self, token: &str) {
        self.ok(&["vm", "start", "fx"]);
        self.check_data(token);
    }

    fn check_data(&self, token: &str) {
        let got = self.ok(&["vm", "ssh", "fx", "--", "cat", "/root/data"]).stdout();
        assert_eq!(got.trim(), token, "fx's /root data");
    }
}

/// Pids of processes whose command line mentions `needle`.
fn processes_mentioning(needle: &str) -> BTreeSet<u32> {
    let mut pids = BTreeSet::new();
    for e in std::fs::read_dir("/proc").unwrap().flatten() {
        let Ok(pid) = e.file_name().to_string_lossy().parse::<u32>() else { continue };
        let Ok(cmdline) = std::fs::read(e.path().join("cmdline")) else { continue };
        let stat = std::fs::read_to_string(e.path().join("stat")).unwrap_or_default();
        let zombie = stat.rsplit(')').next().unwrap_or("").trim_start().starts_with('Z');
        if !zombie && String::from_utf8_lossy(&cmdline).contains(needle) {
            pids.insert(pid);
        }
    }
    pids
}

fn dir_names(dir: &Path) -> BTreeSet<String> {
    std::fs::read_dir(dir)
        .map(|d| d.flatten().map(|e| e.file_name().to_string_lossy().into_owned()).collect())
        .unwrap_or_default()
}

fn wait_state(c: &Crash<'_>, name: &str, want: &str, timeout: Duration) {
    let t0 = Instant::now();
    loop {
        let vms = c.list();
        if Crash::state(&vms, name) == want {
            return;
        }
        assert!(t0.elapsed() < timeout, "VM {name} never became {want}: {vms:?}");
        std::thread::sleep(Duration::from_millis(250));
    }
}

#[test]
fn kill_9_at_every_step_leaves_a_consistent_installation() {
    let Some(rt) = e2e_runtime("crash", None) else { return };
    let env = Env::new();
    env.write_config(&format!("subnet = \"{SUBNET}.0/24\"\nvmm = \"qemu\"\ndefault_memory = 512\n"));
    let _left = Leftovers { env: &env, rt: &rt, vms: &["fx", "build-fxi"], images: &["fxi"] };
    let mut c =
        Crash { env: &env, rt: &rt, prefix: banger_net::tap::prefix_for(&env.state_dir()), points: BTreeSet::new() };
    let create = ["vm", "create", "--name", "fx", "--no-start", "--disk-size", "256M"];

    // create: before registering, the create is undone; once its disks are in place, it is done.
    let v = c.fault("create:pinned", &create);
    c.expect("create:pinned", &v, "fx", "absent", "rolled back");
    let v = c.fault("create:registered", &create);
    c.expect("create:registered", &v, "fx", "absent", "rolled back");
    let v = c.fault("create:disks", &create);
    c.expect("create:disks", &v, "fx", "stopped", "complete");
    c.ok(&["vm", "delete", "fx"]);
    let v = c.fault("create:created", &create);
    c.expect("create:created", &v, "fx", "stopped", "complete");

    // start, first boot: up to the host key check the boot is undone — a VMM the database
    // never recorded is killed (failed), a recorded one is stopped cleanly (stopped).
    for point in ["start:starting", "start:tap", "start:spawned"] {
        let v = c.fault(point, &["vm", "start", "fx"]);
        c.expect_at(point, " (first boot)", &v, "fx", "failed", "rolled back (no VMM left)");
    }
    for point in ["start:recorded", "start:answered"] {
        let v = c.fault(point, &["vm", "start", "fx"]);
        c.expect_at(point, " (first boot)", &v, "fx", "stopped", "rolled back (the guest powered off)");
    }
    // Once the keys are pinned, the VM runs and the new daemon re-attaches to it.
    let v = c.fault("start:pinned", &["vm", "start", "fx"]);
    c.expect("start:pinned", &v, "fx", "running", "complete, re-attached");
    let token = format!("data-{}", std::process::id());
    // (`vm ssh -- …` has OpenSSH's one-string semantics: the remote shell parses it.)
    c.ok(&["vm", "ssh", "fx", "--", &format!("echo {token} > /root/data && sync")]);
    c.check_data(&token);

    // set NAT on a running VM, killed after the rules changed: rolled back to what the database says.
    let v = c.fault("set:nat", &["vm", "set", "fx", "--nat"]);
    c.expect("set:nat", &v, "fx", "running", "rolled back (no NAT rule)");
    assert_eq!(Crash::vm(&v, "fx").unwrap()["nat"], false);
    let tag = format!("{}fx", c.prefix);
    let rules = String::from_utf8(Command::new("iptables-save").output().unwrap().stdout).unwrap();
    let nat: Vec<&str> = rules.lines().filter(|l| l.contains(&tag) && !l.contains(&format!("{tag}.dns"))).collect();
    assert!(nat.is_empty(), "the NAT rules the dead daemon added are gone: {nat:?}");

    // stop: whatever step it died at, the new daemon finishes the stop.
    let v = c.fault("stop:stopping", &["vm", "stop", "fx"]);
    c.expect("stop:stopping", &v, "fx", "stopped", "completed by the next daemon");

    // set --disk-size: recorded first, the grow finished by the next daemon.
    for (point, size) in [("set:recorded", "384M"), ("set:grown", "512M")] {
        let v = c.fault(point, &["vm", "set", "fx", "--disk-size", size]);
        c.expect(point, &v, "fx", "stopped", "completed by the next daemon");
        let want = banger_config_size(size);
        assert_eq!(Crash::vm(&v, "fx").unwrap()["disk_size"].as_u64(), Some(want), "{point}");
        let work = env.state_dir().join("vms/fx/work.ext4");
        assert_eq!(std::fs::metadata(&work).unwrap().len(), want, "{point}: the work disk has the recorded size");
    }

    // start, later boots: keys pinned earlier, so the VM runs (the guest may still be booting).
    let v = c.fault("start:recorded", &["vm", "start", "fx"]);
    c.expect_at("start:recorded", " (a later boot)", &v, "fx", "running", "complete, re-attached");
    // It finishes booting under the new daemon, its disk grown and its data intact.
    let t0 = Instant::now();
    while env.run_rt(&rt, &["vm", "ssh", "fx", "--", "true"]).code() != 0 {
        assert!(t0.elapsed() < Duration::from_secs(120), "fx never answered SSH after the re-attach");
        std::thread::sleep(Duration::from_secs(1));
    }
    c.check_data(&token);
    let df = c.ok(&["vm", "ssh", "fx", "--", "df", "-BM", "--output=size", "/root"]).stdout();
    let mib: u64 = df.lines().last().unwrap().trim().trim_end_matches('M').parse().unwrap();
    assert!(mib > 400, "/root was grown to 512M: {df}");

    for point in ["stop:asked", "stop:exited", "stop:released"] {
        if Crash::state(&c.list(), "fx") != "running" {
            c.start_and_check(&token);
        }
        let v = c.fault(point, &["vm", "stop", "fx"]);
        c.expect(point, &v, "fx", "stopped", "completed by the next daemon");
    }
    c.start_and_check(&token);
    let v = c.fault("restart:stopped", &["vm", "restart", "fx"]);
    c.expect("restart:stopped", &v, "fx", "stopped", "stopped (the start never began)");

    c.start_and_check(&token);
    let v = c.fault("kill:signalled", &["vm", "kill", "fx", "--signal", "KILL"]);
    c.expect("kill:signalled", &v, "fx", "failed", "complete (the VMM is gone)");

    // kill -9 of the CLI mid-start: the daemon finishes the boot.
    let mut cli = env
        .banger(&["vm", "start", "fx"])
        .env("BANGER_RUNTIME_DIR", &rt)
        .stdout(Stdio::null())
        .stderr(Stdio::null())
        .spawn()
        .unwrap();
    wait_state(&c, "fx", "starting", Duration::from_secs(30));
    cli.kill().unwrap();
    cli.wait().unwrap();
    wait_state(&c, "fx", "running", Duration::from_secs(180));
    let v = c.consistent("CLI killed mid-start");
    c.check_data(&token);
    assert_eq!(Crash::state(&v, "fx"), "running");
    banger_testkit::report(
        "Crash: kill -9 of the CLI",
        "`vm start` killed while booting",
        "the daemon finished the boot; VM running, data intact",
    );

    // kill -9 of the VMM: failed, everything it held released, starts again with its data.
    let pid = Crash::vm(&v, "fx").unwrap()["pid"].as_i64().unwrap() as i32;
    nix::sys::signal::kill(nix::unistd::Pid::from_raw(pid), nix::sys::signal::Signal::SIGKILL).unwrap();
    wait_state(&c, "fx", "failed", Duration::from_secs(30));
    c.consistent("VMM killed");
    c.start_and_check(&token);
    banger_testkit::report(
        "Crash: kill -9 of the VMM",
        "QEMU of a running VM killed",
        "VM failed, TAP/rules/socket released; starts again, data intact",
    );

    // delete: a forced delete of a running VM.
    let v = c.fault("delete:stopped", &["vm", "delete", "--force", "fx"]);
    c.expect("delete:stopped", &v, "fx", "stopped", "rolled back (the VM stays, stopped)");
    let v = c.fault("delete:marked", &["vm", "delete", "fx"]);
    c.expect("delete:marked", &v, "fx", "stopped", "rolled back (the VM stays)");
    c.start_and_check(&token);
    c.ok(&["vm", "stop", "fx"]);
    let v = c.fault("delete:unregistered", &["vm", "delete", "fx"]);
    c.expect("delete:unregistered", &v, "fx", "absent", "complete (its disks removed by the next daemon)");

    // image build: nothing of an unfinished build is registered or left.
    let script = env.path("customize.sh");
    std::fs::write(&script, "#!/bin/sh\necho built > /etc/fx-marker\n").unwrap();
    let build = ["image", "build", "--name", "fxi", "--script", script.to_str().unwrap()];
    for point in ["build:booted", "build:flattened"] {
        let v = c.fault(point, &build);
        c.expect(point, &v, "build-fxi", "absent", "rolled back (no image, no builder)");
        let images = c.ok(&["image", "list", "--json"]).stdout();
        assert!(!images.contains("\"fxi\""), "{point}: no image registered: {images}");
        assert!(!env.state_dir().join("built-images/fxi").exists(), "{point}: no build directory left");
    }

    let placed: BTreeSet<String> = banger_daemon::fault::POINTS.iter().map(|p| p.to_string()).collect();
    assert_eq!(c.points, placed, "every fault point was tried");
    eprintln!("crash: {} fault points tried, each left a consistent installation", c.points.len());
}

/// `256M` → bytes.
fn banger_config_size(s: &str) -> u64 {
    s.trim_end_matches('M').parse::<u64>().unwrap() << 20
}

//! A real VM end to end: the real binaries, the real runtime bundle, QEMU (TCG here) booting the
//! real guest, real TAP devices and real `ssh`. Two boots in all.
//!
//! Needs a runtime bundle: `BANGER_TEST_RUNTIME=DIR` (`make test` builds one and sets it). Without
//! it the test is skipped loudly — unless `BANGER_E2E_REQUIRED=1`, when that is a failure.

mod common;

use common::*;
use std::path::{Path, PathBuf};
use std::time::Duration;

fn runtime() -> Option<PathBuf> {
    let dir = std::env::var_os("BANGER_TEST_RUNTIME").map(PathBuf::from).filter(|p| p.join("vmlinux").is_file());
    if dir.is_none() {
        let msg = "no runtime bundle (set BANGER_TEST_RUNTIME to a built ./runtime; `make test` does)";
        if std::env::var("BANGER_E2E_REQUIRED").as_deref() == Ok("1") {
            panic!("{msg}");
        }
        skip("vm_lifecycle", msg);
    }
    dir
}

fn sha256(path: &Path) -> String {
    let out = std::process::Command::new("sha256sum").arg(path).output().unwrap();
    String::from_utf8_lossy(&out.stdout).split_whitespace().next().unwrap().to_string()
}

#[test]
fn create_ssh_persist_across_stop_start_survive_daemon_restart_vmm_death_delete_with_events() {
    let Some(rt) = runtime() else { return };
    if !is_root() {
        skip("vm_lifecycle", "needs root (or passwordless sudo) for TAP devices");
        return;
    }
    let env = Env::new();
    env.write_config("subnet = \"10.213.200.0/24\"\nvmm = \"qemu\"\n");
    let base = rt.join("rootfs.ext4");
    let base_sum = sha256(&base);
    let run = |args: &[&str]| env.run_rt(&rt, args);

    // Bad input is refused before anything is made.
    let bad = run(&["vm", "create", "--name", "Bad_Name", "--image", "base"]);
    assert_eq!(bad.code(), 2, "{}", bad.stderr());
    assert!(bad.stderr().contains("is not a valid VM name"), "{}", bad.stderr());
    assert_eq!(run(&["vm", "create", "--disk-size", "12Q"]).code(), 2);
    assert_eq!(run(&["vm", "show", "nope"]).code(), 3);

    // Everything that happens from here on, as `banger events --json` sees it (it follows the
    // daemon across the restart below).
    let events = Follower::start(&env, &rt, &["events", "--json", "--since", "0"]);

    // Create: boots and waits for SSH, reporting the stages.
    let created = run(&["vm", "create", "--name", "e2e", "--image", "base", "--disk-size", "2G", "--json"]);
    assert_eq!(created.code(), 0, "{}", created.stderr());
    for stage in ["qemu started", "kernel booting", "network up", "pinned the VM's SSH host keys", "SSH ready"] {
        assert!(created.stderr().contains(stage), "missing stage {stage:?}:\n{}", created.stderr());
    }
    let vm = created.json();
    assert_eq!(vm["state"], "running");
    assert_eq!(vm["backend"], "qemu");
    let pid = vm["pid"].as_i64().unwrap() as i32;
    let tap = vm["tap"].as_str().unwrap().to_string();
    let dir = PathBuf::from(vm["dir"].as_str().unwrap());
    assert!(alive(pid));
    assert!(Path::new("/sys/class/net").join(&tap).exists());
    let work = vm["disks"].as_array().unwrap().iter().find(|d| d["role"] == "work").unwrap().clone();
    assert_eq!(work["size"], 2u64 << 30);

    assert_eq!(run(&["vm", "create", "--name", "e2e", "--image", "base"]).code(), 4, "duplicate name");
    assert_eq!(run(&["vm", "start", "e2e"]).code(), 4, "start a running VM");

    // SSH: a command, its output and exit status; files under / (overlay) and /root (work disk).
    let ssh = run(&["vm", "ssh", "e2e", "--", "echo", "hello from $(hostname)"]);
    assert_eq!(ssh.code(), 0, "{}", ssh.stderr());
    assert_eq!(ssh.stdout().trim(), "hello from e2e");
    assert_eq!(run(&["vm", "ssh", "e2e", "--", "exit", "7"]).code(), 7);
    let write =
        run(&["vm", "ssh", "e2e", "--", "echo root-file > /etc/banger-e2e && echo work-file > /root/e2e && sync"]);
    assert_eq!(write.code(), 0, "{}", write.stderr());

    // The daemon goes away and comes back: the VM keeps running and is found again.
    assert_eq!(run(&["daemon", "stop"]).code(), 0);
    assert!(alive(pid), "stopping the daemon killed the VM");
    let shown = run(&["vm", "show", "e2e", "--json"]);
    assert_eq!(shown.json()["state"], "running", "{}", shown.stderr());
    assert_eq!(shown.json()["pid"].as_i64().unwrap() as i32, pid);
    assert_eq!(run(&["vm", "ssh", "e2e", "--", "true"]).code(), 0);

    // Stop keeps both disks; start brings the same files back.
    let stop = run(&["vm", "stop", "e2e", "--json"]);
    assert_eq!(stop.code(), 0, "{}", stop.stderr());
    assert_eq!(stop.json()["state"], "stopped");
    assert!(wait_gone(pid, Duration::from_secs(10)));
    assert!(!Path::new("/sys/class/net").join(&tap).exists(), "TAP kept while stopped");
    assert_eq!(run(&["vm", "stop", "e2e"]).code(), 4, "stop a stopped VM");
    let ssh_stopped = run(&["vm", "ssh", "e2e", "--", "true"]);
    assert_eq!(ssh_stopped.code(), 4, "{}", ssh_stopped.stderr());

    // A second operation on a VM while one is in progress is refused at once, changing nothing.
    let starting = env
        .banger(&["vm", "start", "e2e", "--json"])
        .env("BANGER_RUNTIME_DIR", &rt)
        .stdout(std::process::Stdio::piped())
        .stderr(std::process::Stdio::piped())
        .spawn()
        .unwrap();
    let deadline = std::time::Instant::now() + Duration::from_secs(30);
    while run(&["vm", "show", "e2e", "--json"]).json()["state"] != "starting" {
        assert!(std::time::Instant::now() < deadline, "the VM never showed as starting");
        std::thread::sleep(Duration::from_millis(50));
    }
    let racing = run(&["vm", "delete", "--force", "e2e"]);
    assert_eq!(racing.code(), 4, "{}", racing.stderr());
    assert!(racing.stderr().contains("another operation on VM e2e is in progress"), "{}", racing.stderr());
    let start = Out(starting.wait_with_output().unwrap());
    assert_eq!(start.code(), 0, "{}", start.stderr());
    assert!(!start.stderr().contains("pinned"), "host keys must be pinned once, on the first boot");
    let pid = start.json()["pid"].as_i64().unwrap() as i32;
    let files = run(&["vm", "ssh", "e2e", "--", "cat /etc/banger-e2e /root/e2e"]);
    assert_eq!(files.stdout(), "root-file\nwork-file\n", "{}", files.stderr());

    // Listing and logs.
    let list = run(&["vm", "list", "--json"]).json();
    assert_eq!(list["vms"].as_array().unwrap().len(), 1);
    let logs = run(&["vm", "logs", "e2e"]);
    assert!(logs.stdout().contains("banger-init"), "console log lacks the initrd's output");

    // Running VMs are not deleted without --force; `vm kill` signals the VMM (CONT: it runs on).
    let del = run(&["vm", "delete", "e2e"]);
    assert_eq!(del.code(), 4, "{}", del.stderr());
    assert_eq!(run(&["vm", "kill", "e2e", "--signal", "BOGUS"]).code(), 2);
    let kill = run(&["vm", "kill", "e2e", "--signal", "CONT", "--json"]);
    assert_eq!(kill.code(), 0, "{}", kill.stderr());
    assert_eq!(kill.json()["state"], "running");

    // The VMM dies behind banger's back: the daemon notices, releases the TAP and says so.
    let killed_at = std::time::Instant::now();
    nix::sys::signal::kill(nix::unistd::Pid::from_raw(pid), nix::sys::signal::Signal::SIGKILL).unwrap();
    let (seen_at, event) = events.wait_for(|e| e["event"] == "phase" && e["to"] == "failed", Duration::from_secs(10));
    let noticed = seen_at.duration_since(killed_at);
    eprintln!("the VMM's death became an event after {noticed:?}");
    assert!(noticed <= Duration::from_secs(3), "the VMM's death took {noticed:?} to become an event: {event}");
    assert!(event["reason"].as_str().unwrap().contains("exited without being asked"), "{event}");
    let shown = run(&["vm", "show", "e2e", "--json"]).json();
    assert_eq!(shown["state"], "failed");
    assert!(shown["last_error"].as_str().unwrap().contains(&format!("pid {pid}")), "{shown}");
    assert!(!Path::new("/sys/class/net").join(&tap).exists(), "a dead VM's TAP was kept");

    assert_eq!(sha256(&base), base_sum, "the shared base image changed");

    let del = run(&["vm", "delete", "e2e"]);
    assert_eq!(del.code(), 0, "{}", del.stderr());
    assert!(!dir.exists(), "VM directory left behind");
    assert!(!Path::new("/sys/class/net").join(&tap).exists(), "TAP left behind");
    assert!(!alive(pid));
    let run_vms = env.path("run/banger/vms");
    let leftovers: Vec<_> =
        std::fs::read_dir(&run_vms).map(|d| d.flatten().map(|e| e.path()).collect()).unwrap_or_default();
    assert!(leftovers.is_empty(), "sockets left behind: {leftovers:?}");
    assert_eq!(run(&["vm", "list", "--json"]).json()["vms"].as_array().unwrap().len(), 0);

    // The whole life, in order, as one subscriber saw it.
    events.wait_for(|e| e["event"] == "deleted", Duration::from_secs(5));
    let seen: Vec<String> = events
        .lines()
        .iter()
        .filter(|e| e["event"] != "progress")
        .map(|e| match e["event"].as_str().unwrap() {
            "phase" => e["to"].as_str().unwrap().to_string(),
            other => other.to_string(),
        })
        .collect();
    assert_eq!(
        seen,
        [
            "created", "starting", "changed", "running", // create (the host keys are pinned: a change)
            "resync",  // the daemon restarted: the subscriber is told it may have missed events
            "stopping", "stopped", "starting", "running", "failed", "deleted"
        ],
        "events seen"
    );
    let seqs: Vec<u64> = events.lines().iter().map(|e| e["seq"].as_u64().unwrap()).collect();
    assert!(seqs.windows(2).all(|w| w[0] < w[1]), "sequence numbers must increase: {seqs:?}");
}

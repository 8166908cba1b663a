//! The lifecycle against fakes (`platform::fake`): no root, no KVM, no guest. The fake VMM runs
//! a real process per VM, so liveness, signals and pid checks are the real ones.

use super::phase::{Live, VmPhase};
use super::*;
use crate::platform::fake::Fake;
use banger_api::ErrorCode;
use banger_api::event::{Event, EventKind};
use banger_api::request::CreateVm;
use banger_api::response::Phase;
use banger_vmm::{Accel, Backend, Instance};
use nix::sys::signal::{Signal, kill};
use nix::unistd::Pid;
use std::path::PathBuf;

struct T {
    _tmp: tempfile::TempDir,
    fake: Fake,
    m: Manager,
}

fn setup() -> T {
    let tmp = tempfile::tempdir().unwrap();
    let (mut m, fake) = super::fake_host::manager(tmp.path(), EventBus::new(0, 4096));
    m.boot_timeout = Duration::from_secs(1);
    T { _tmp: tmp, fake, m }
}

fn req(name: &str) -> CreateVm {
    CreateVm { name: Some(name.into()), disk_size: Some(64 << 20), ..Default::default() }
}

impl T {
    fn create(&self, name: &str) -> banger_api::response::Vm {
        self.m.create(req(name), &()).unwrap()
    }
    fn phase(&self, name: &str) -> VmPhase {
        VmPhase::from_record(&self.m.record(name).unwrap()).unwrap()
    }
    fn events(&self) -> Vec<Event> {
        self.m.events.since(0)
    }
    /// The phase changes of `vm` so far, as (from, to).
    fn changes(&self, vm: &str) -> Vec<(Phase, Phase)> {
        self.events()
            .into_iter()
            .filter(|e| e.vm.as_deref() == Some(vm))
            .filter_map(|e| match e.kind {
                EventKind::Phase { from, to, .. } => Some((from, to)),
                _ => None,
            })
            .collect()
    }
    fn kinds(&self, vm: &str) -> Vec<&'static str> {
        self.events()
            .iter()
            .filter(|e| e.vm.as_deref() == Some(vm) && e.kind_name() != "progress")
            .map(|e| e.kind_name())
            .collect()
    }
    fn pid(&self, name: &str) -> u32 {
        self.phase(name).live().expect("a VMM process").instance.pid
    }
    /// Write a phase into the database behind the lifecycle's back (what a crash leaves).
    fn set_row(&self, name: &str, phase: &VmPhase) {
        let from = self.m.record(name).unwrap().phase;
        assert!(self.m.db().set_phase(name, &from, &phase.row()).unwrap());
    }
}

fn alive(pid: u32) -> bool {
    std::fs::read_to_string(format!("/proc/{pid}/stat"))
        .map(|s| !s.rsplit(')').next().unwrap_or("").trim_start().starts_with('Z'))
        .unwrap_or(false)
}

fn wait_dead(pid: u32) -> bool {
    for _ in 0..250 {
        if !alive(pid) {
            return true;
        }
        std::thread::sleep(Duration::from_millis(20));
    }
    false
}

use Phase::{Failed as F, Running as R, Starting as S, Stopped as D, Stopping as P};

#[test]
fn create_start_stop_restart_kill_delete_and_their_events() {
    let t = setup();
    let vm = t.create("calm-otter");
    assert_eq!(vm.state, R);
    let pid = vm.pid.unwrap();
    assert!(alive(pid));
    assert!(t.fake.host().taps.contains(&vm.tap));
    assert!(vm.ssh.pinned, "host keys come from the console");
    let kh = std::fs::read_to_string(&vm.ssh.known_hosts).unwrap();
    assert_eq!(kh, "banger-calm-otter ssh-ed25519 AAAAfakecalm-otter\n");
    assert_eq!(t.kinds("calm-otter"), ["created", "phase", "changed", "phase"], "pinning the host keys is a change");
    assert_eq!(t.changes("calm-otter"), [(D, S), (S, R)]);
    let stages: Vec<String> = t
        .events()
        .into_iter()
        .filter_map(|e| match e.kind {
            EventKind::Progress { stage, .. } => Some(stage),
            _ => None,
        })
        .collect();
    assert_eq!(stages, ["disks", "network", "vmm", "kernel", "network", "ssh", "ready"]);

    let stopped = t.m.stop("calm-otter", Duration::from_secs(5), &()).unwrap();
    assert_eq!(stopped.state, D);
    assert!(wait_dead(pid));
    assert!(t.fake.host().taps.is_empty(), "TAP kept while stopped");
    assert_eq!(stopped.pid, None);

    let started = t.m.start("calm-otter", &()).unwrap();
    let pid2 = started.pid.unwrap();
    let restarted = t.m.restart("calm-otter", Duration::from_secs(5), &()).unwrap();
    assert!(wait_dead(pid2));
    let pid3 = restarted.pid.unwrap();
    assert_ne!(pid2, pid3);

    let killed = t.m.kill("calm-otter", "TERM").unwrap();
    assert_eq!(killed.state, D);
    assert!(!alive(pid3));
    t.m.delete("calm-otter", false).unwrap();
    assert!(!killed.dir.exists());
    assert!(t.m.list().unwrap().is_empty());
    assert_eq!(
        t.changes("calm-otter"),
        [(D, S), (S, R), (R, P), (P, D), (D, S), (S, R), (R, P), (P, D), (D, S), (S, R), (R, D)]
    );
    assert_eq!(t.kinds("calm-otter").last(), Some(&"deleted"));
    let seqs: Vec<u64> = t.events().iter().map(|e| e.seq).collect();
    assert!(seqs.windows(2).all(|w| w[1] == w[0] + 1), "sequence numbers increase by one: {seqs:?}");
}

/// Two installations with the same subnet, or any other machine at a VM's address: the SSH
/// server that answers must hold the host key the VM printed on its console (or the one pinned at
/// its first boot), else the boot fails and releases everything.
#[test]
fn a_vm_is_ready_only_when_its_ssh_server_holds_its_own_host_key() {
    let t = setup();
    t.fake.host().impostor = true;
    let e = t.m.create(req("twin"), &()).unwrap_err();
    assert_eq!(e.code(), banger_api::ErrorCode::Conflict, "{e}");
    assert!(e.to_string().contains("the SSH server at 10.250.0.2 is not VM twin"), "{e}");
    assert!(e.to_string().contains("it printed on its console"), "{e}");
    assert!(matches!(t.phase("twin"), VmPhase::Failed(_)));
    assert!(t.fake.host().taps.is_empty(), "released");
    assert!(!t.m.get("twin").unwrap().ssh.pinned, "nothing pinned from an impostor");

    t.fake.host().impostor = false;
    let vm = t.m.start("twin", &()).unwrap();
    assert!(vm.ssh.pinned);
    t.m.stop("twin", Duration::from_secs(5), &()).unwrap();
    // A later boot answered by another machine is refused too: against what it printed, or,
    // when it printed nothing this time, against the key pinned at its first boot.
    t.fake.host().impostor = true;
    let e = t.m.start("twin", &()).unwrap_err();
    assert!(e.to_string().contains("is not VM twin: its host key is not the one it printed"), "{e}");
    t.fake.host().silent_keys = true;
    let e = t.m.start("twin", &()).unwrap_err();
    assert!(e.to_string().contains("pinned at its first boot"), "{e}");
    t.fake.host().impostor = false;
    let vm = t.m.start("twin", &()).unwrap();
    assert!(vm.ssh.pinned, "its own server, checked against the pin");
    t.m.stop("twin", Duration::from_secs(5), &()).unwrap();
    t.fake.host().silent_keys = false;

    // An image that prints no keys: refused, unless ssh_host_keys = "scan" (trust on first use).
    t.fake.host().silent_keys = true;
    let e = t.m.create(req("quiet"), &()).unwrap_err();
    assert!(e.to_string().contains("printed no SSH host keys on its console"), "{e}");
    let mut scan = setup();
    scan.m.config.ssh_host_keys = banger_config::HostKeys::Scan;
    scan.fake.host().silent_keys = true;
    let vm = scan.create("quiet");
    assert!(vm.ssh.pinned);
    assert_eq!(std::fs::read_to_string(&vm.ssh.known_hosts).unwrap(), "banger-quiet ssh-ed25519 AAAAfakequiet\n");
}

/// Another installation (or anything else on the host) using part of the subnet: its slots are
/// skipped at create, a stopped VM whose /30 was taken meanwhile refuses to start, and a full
/// subnet says which one to configure.
#[test]
fn slots_the_host_uses_otherwise_are_skipped_and_refused() {
    use banger_net::addr::{InUse, Net};
    let t = setup();
    let other = |net: &str, dev: &str| InUse { net: Net::parse(net).unwrap(), dev: dev.into() };
    t.fake.host().in_use = vec![other("10.250.0.0/30", "bgrother-0"), other("10.250.0.8/29", "tun0")];
    let a = t.m.create(CreateVm { no_start: true, ..req("a") }, &()).unwrap();
    assert_eq!(a.ip, "10.250.0.6", "slot 0 is another installation's");
    let b = t.m.create(CreateVm { no_start: true, ..req("b") }, &()).unwrap();
    assert_eq!(b.ip, "10.250.0.18", "slots 2 and 3 are under a VPN route");
    // Taken while stopped: refused with the reason, nothing made.
    t.fake.host().in_use.push(other("10.250.0.4/30", "bgrthird-1"));
    let e = t.m.start("a", &()).unwrap_err();
    assert_eq!(e.code(), banger_api::ErrorCode::Conflict, "{e}");
    assert!(e.to_string().contains("10.250.0.4/30 are in use on this host (10.250.0.4/30 on bgrthird-1"), "{e}");
    assert!(t.fake.host().taps.is_empty());
    // Our own TAPs never count as someone else's.
    t.fake.host().in_use =
        vec![InUse { net: Net::parse("10.250.0.16/30").unwrap(), dev: format!("{}-x", t.m.tap_prefix) }];
    t.m.start("b", &()).unwrap();
    // Full: which subnet to use instead.
    t.fake.host().in_use = vec![other("10.250.0.0/16", "br-elsewhere")];
    let e = t.m.create(req("c"), &()).unwrap_err();
    let msg = e.to_string();
    assert!(msg.contains("subnet 10.250.0.0/16 has no free /30"), "{msg}");
    assert!(msg.contains("10.250.0.0/16 on br-elsewhere"), "{msg}");
    assert!(msg.contains("set subnet = \"172.16.0.0/16\""), "{msg}");
}

/// Root logs in with this installation's own key: generated on first use (0600 in a 0700 dir),
/// never the bundle's shared one (an old copy of it is replaced), handed to the guest's initrd
/// on the kernel command line at every boot.
#[test]
fn each_installation_logs_in_with_its_own_key() {
    use std::os::unix::fs::PermissionsExt;
    let t = setup();
    let key = t.m.layout.ssh_key();
    // What earlier versions kept there: a copy of the bundle's key.
    std::fs::create_dir_all(key.parent().unwrap()).unwrap();
    std::fs::write(&key, b"fake").unwrap();
    let vm = t.create("own");
    assert_eq!(vm.ssh.key, key);
    let private = std::fs::read_to_string(&key).unwrap();
    assert!(private.contains("OPENSSH PRIVATE KEY"), "generated, not the bundle's");
    assert_eq!(std::fs::metadata(&key).unwrap().permissions().mode() & 0o777, 0o600);
    assert_eq!(std::fs::metadata(key.parent().unwrap()).unwrap().permissions().mode() & 0o777, 0o700);
    let public = std::fs::read_to_string(key.with_extension("pub")).unwrap();
    let mut w = public.split_whitespace();
    let arg = format!("banger.key={}:{}", w.next().unwrap(), w.next().unwrap());
    assert!(t.fake.host().cmdlines.last().unwrap().contains(&arg), "{:?}", t.fake.host().cmdlines);
    // Kept across boots.
    t.m.restart("own", Duration::from_secs(5), &()).unwrap();
    assert_eq!(std::fs::read_to_string(&key).unwrap(), private);
    assert!(t.fake.host().cmdlines.last().unwrap().contains(&arg));
}

/// A host reboot takes VMMs, TAPs and rules with it: VMs that ran before it show stopped (not
/// failed), and start again cleanly.
#[test]
fn vms_running_before_a_host_reboot_are_stopped_and_start_again() {
    let t = setup();
    let vm = t.create("up");
    let pid = vm.pid.unwrap();
    // The host "reboots": the VMM and the TAP are gone, and the VM had started before it.
    nix::sys::signal::kill(nix::unistd::Pid::from_raw(pid as i32), nix::sys::signal::Signal::SIGKILL).unwrap();
    assert!(wait_dead(pid));
    t.fake.host().taps.clear();
    let rec = t.m.record("up").unwrap();
    let phase = VmPhase::from_record(&rec).unwrap();
    let mut row = phase.row();
    row.started_at = Some(1);
    assert!(t.m.db().set_phase("up", "running", &row).unwrap());
    t.m.reconcile(true);
    assert_eq!(t.phase("up"), VmPhase::Stopped);
    assert!(t.m.get("up").unwrap().last_error.is_none_or(|e| e.contains("host restarted")));
    let said = t.events().into_iter().any(
        |e| matches!(&e.kind, EventKind::Phase { from: R, to: D, reason: Some(r) } if r.contains("the host restarted")),
    );
    assert!(said, "the phase change says why");
    let again = t.m.start("up", &()).unwrap();
    assert_eq!(again.state, R);
}

/// A daemon that died mid-delete (disks marked, row gone) or mid-copy of a base leaves things the
/// next one removes at start; registered VMs keep theirs, and unmarked disks are never touched.
#[test]
fn what_a_dead_delete_or_copy_left_is_removed_at_start() {
    let t = setup();
    let keep = t.m.create(CreateVm { no_start: true, ..req("keep") }, &()).unwrap();
    t.m.create(CreateVm { no_start: true, ..req("gone") }, &()).unwrap();
    let gone_dir = t.m.layout.vm("gone").dir;
    std::fs::write(gone_dir.join(super::stop::DELETING), b"").unwrap();
    assert!(t.m.db().delete_vm("gone").unwrap(), "marked, the row went, then the daemon died");
    // A directory without a row and without the mark (a lost database?) is never touched.
    t.m.create(CreateVm { no_start: true, ..req("unmarked") }, &()).unwrap();
    let unmarked = t.m.layout.vm("unmarked").dir;
    assert!(t.m.db().delete_vm("unmarked").unwrap());
    let stray_pin = t.m.layout.images().join(".base-x.ext4.tmp-42");
    std::fs::write(&stray_pin, b"half a copy").unwrap();
    t.m.reconcile(true);
    assert!(!gone_dir.exists(), "disks a delete marked removed");
    assert!(unmarked.join(banger_storage::WORK).is_file(), "unmarked disks kept");
    assert!(!stray_pin.exists(), "a temporary copy removed");
    assert!(keep.dir.join(banger_storage::WORK).is_file(), "a registered VM keeps its disks");
    let pinned: Vec<_> = std::fs::read_dir(t.m.layout.images()).unwrap().flatten().map(|e| e.path()).collect();
    assert_eq!(pinned, [std::path::PathBuf::from(&t.m.record("keep").unwrap().base_path)], "its pinned base kept");
}

#[test]
fn every_phase_change_is_checked_allowed_ones_are_recorded_refused_ones_change_nothing() {
    let t = setup();
    t.m.create(CreateVm { no_start: true, ..req("x") }, &()).unwrap();
    let live = Live {
        instance: Instance { backend: Backend::Qemu, accel: Accel::Tcg, pid: 1, control_socket: "/nonexistent".into() },
        started_at: 5,
    };
    let of = |p: Phase| match p {
        D => VmPhase::Stopped,
        S => VmPhase::Starting(Some(live.clone())),
        R => VmPhase::Running(live.clone()),
        P => VmPhase::Stopping(live.clone()),
        F => VmPhase::Failed("boom".into()),
    };
    let allowed = [(D, S), (F, S), (S, S), (S, R), (S, P), (S, F), (R, P), (R, D), (R, F), (P, D), (P, R), (P, F)];
    for from in Phase::ALL {
        for to in Phase::ALL {
            t.set_row("x", &of(from));
            let before = t.m.events.last_seq();
            let result = t.m.transition("x", &of(from), of(to), None);
            let expected = allowed.contains(&(from, to));
            assert_eq!(result.is_ok(), expected, "{from} → {to}");
            assert_eq!(from.can_become(to), expected, "{from} → {to}");
            let now = t.phase("x");
            if expected {
                assert_eq!(now, of(to), "{from} → {to} recorded");
                let published = t.m.events.since(before);
                assert_eq!(published.len(), usize::from(from != to), "{from} → {to}: one event for a change");
            } else {
                assert_eq!(result.unwrap_err().code(), ErrorCode::InvalidState, "{from} → {to}");
                assert_eq!(now, of(from), "refused {from} → {to} changed the record");
                assert_eq!(t.m.events.last_seq(), before, "refused {from} → {to} published an event");
            }
        }
    }
}

#[test]
fn operations_refused_in_the_wrong_phase_say_why_and_change_nothing() {
    let t = setup();
    t.create("up");
    t.m.create(CreateVm { no_start: true, ..req("down") }, &()).unwrap();
    let before = t.m.events.last_seq();
    let code = |r: Result<banger_api::response::Vm>| r.map(|_| ()).unwrap_err();
    let e = code(t.m.start("up", &()));
    assert_eq!((e.code(), e.to_string()), (ErrorCode::InvalidState, "VM up is already running".into()));
    let e = t.m.delete("up", false).unwrap_err();
    assert!(e.to_string().contains("stop it first or delete it with --force"), "{e}");
    let e = code(t.m.stop("down", Duration::from_secs(1), &()));
    assert_eq!((e.code(), e.to_string()), (ErrorCode::InvalidState, "VM down is not running".into()));
    assert_eq!(code(t.m.kill("down", "KILL")).code(), ErrorCode::InvalidState);
    assert_eq!(code(t.m.kill("up", "NOPE")).code(), ErrorCode::BadInput);
    assert_eq!(code(t.m.start("ghost", &())).code(), ErrorCode::NotFound);
    assert_eq!(t.m.create(req("up"), &()).unwrap_err().code(), ErrorCode::Conflict);
    let bad = CreateVm { memory_mib: Some(1), ..req("small") };
    assert_eq!(t.m.create(bad, &()).unwrap_err().code(), ErrorCode::BadInput);
    assert_eq!(t.m.events.last_seq(), before, "refusals publish nothing");
    assert_eq!(t.phase("up").kind(), R);
    assert_eq!(t.phase("down"), VmPhase::Stopped);
    assert_eq!(t.m.list().unwrap().len(), 2);
}

#[test]
fn a_second_operation_on_a_busy_vm_is_a_conflict_and_reconcile_leaves_it_alone() {
    let t = setup();
    t.create("busy");
    let pid = t.pid("busy");
    let held = t.m.claim("busy", "stop").unwrap();
    for e in [
        t.m.start("busy", &()).map(|_| ()).unwrap_err(),
        t.m.stop("busy", Duration::from_secs(1), &()).map(|_| ()).unwrap_err(),
        t.m.kill("busy", "KILL").map(|_| ()).unwrap_err(),
        t.m.delete("busy", true).unwrap_err(),
    ] {
        assert_eq!(e.code(), ErrorCode::Conflict);
        assert_eq!(e.to_string(), "another operation on VM busy is in progress (stop)");
    }
    // The holder is mid-stop: its VMM is gone but the phase is not settled yet. Reconcile must
    // not touch a VM another operation holds.
    t.set_row("busy", &VmPhase::Stopping(t.phase("busy").live().unwrap().clone()));
    kill(Pid::from_raw(pid as i32), Signal::SIGKILL).unwrap();
    assert!(wait_dead(pid));
    t.m.reconcile(false);
    assert_eq!(t.phase("busy").kind(), P);
    drop(held);
    t.m.reconcile(false);
    assert_eq!(t.phase("busy"), VmPhase::Stopped, "a stop whose VMM is gone is finished");
    assert!(t.fake.host().taps.is_empty());
}

#[test]
fn reconcile_marks_a_vm_whose_vmm_died_failed_and_it_starts_again() {
    let t = setup();
    let vm = t.create("crashy");
    let pid = vm.pid.unwrap();
    kill(Pid::from_raw(pid as i32), Signal::SIGKILL).unwrap();
    assert!(wait_dead(pid));
    t.m.reconcile(false);
    let shown = t.m.get("crashy").unwrap();
    assert_eq!(shown.state, F);
    assert!(shown.last_error.as_deref().unwrap().contains(&format!("pid {pid}")), "{:?}", shown.last_error);
    assert!(t.fake.host().taps.is_empty(), "a dead VM's TAP is released");
    assert!(!t.m.layout.vm("crashy").run_dir.exists(), "a dead VM's run dir is removed");
    let last = t.events().into_iter().rev().find(|e| e.kind_name() == "phase").unwrap();
    assert!(matches!(last.kind, EventKind::Phase { from: R, to: F, reason: Some(ref r) } if r.contains("exited")));
    // Reconcile again: nothing more happens.
    let seq = t.m.events.last_seq();
    t.m.reconcile(false);
    assert_eq!(t.m.events.last_seq(), seq);
    let again = t.m.start("crashy", &()).unwrap();
    assert_eq!(again.state, R);
    assert_eq!(again.last_error, None, "a good boot clears the last error");
}

#[test]
fn a_pid_reused_by_an_unrelated_process_is_never_signalled() {
    let t = setup();
    t.create("reused");
    let live = t.phase("reused").live().unwrap().clone();
    kill(Pid::from_raw(live.instance.pid as i32), Signal::SIGKILL).unwrap();
    assert!(wait_dead(live.instance.pid));
    // An unrelated process now holds the pid the database has for the VM.
    let mut other = std::process::Command::new("sleep").arg("30").spawn().unwrap();
    let stranger = other.id();
    let mut instance = live.instance.clone();
    instance.pid = stranger;
    t.set_row("reused", &VmPhase::Running(Live { instance, ..live }));
    // Both a forced delete and reconcile see the VM as dead and leave the stranger alone.
    let e = t.m.kill("reused", "KILL").map(|_| ()).unwrap_err();
    assert_eq!(e.to_string(), "VM reused is not running");
    assert_eq!(t.phase("reused").kind(), F);
    t.m.reconcile(false);
    t.m.delete("reused", true).unwrap();
    assert!(alive(stranger), "an unrelated process was signalled");
    other.kill().unwrap();
    other.wait().unwrap();
}

#[test]
fn a_vm_whose_control_socket_is_missing_still_runs_and_still_stops() {
    let t = setup();
    t.create("nosock");
    let live = t.phase("nosock").live().unwrap().clone();
    std::fs::remove_file(&live.instance.control_socket).unwrap();
    t.m.reconcile(true);
    assert_eq!(t.phase("nosock").kind(), R, "the VMM still runs: the VM is running");
    // The clean request cannot be sent; the VMM is killed by pid after the timeout.
    let vm = t.m.stop("nosock", Duration::from_millis(300), &()).unwrap();
    assert_eq!(vm.state, D);
    assert!(wait_dead(live.instance.pid), "the VMM was left running");
    assert!(t.fake.host().taps.is_empty());
}

/// A fake VMM's configuration for VM `name` (one started behind the lifecycle's back).
fn config_of(t: &T, name: &str) -> banger_vmm::VmConfig {
    let paths = t.m.layout.vm(name);
    banger_vmm::VmConfig {
        name: name.into(),
        kernel: "/k".into(),
        initrd: None,
        cmdline: String::new(),
        disks: vec![],
        memory_mib: 128,
        vcpus: 1,
        nic: None,
        run_dir: paths.run_dir.clone(),
        console_log: paths.console_log.clone(),
        shares: vec![],
        jail_dir: None,
    }
}

#[test]
fn a_restarted_daemon_settles_operations_it_was_in_the_middle_of() {
    let t = setup();
    // A stop that never finished, VMM still up → the stop is finished: asked again, stopped.
    t.create("a");
    let live = t.phase("a").live().unwrap().clone();
    t.set_row("a", &VmPhase::Stopping(live.clone()));
    let poweroffs = t.fake.host().poweroffs;
    // A boot whose VMM was spawned and still runs, keys pinned at an earlier boot → running.
    t.create("b");
    let live_b = t.phase("b").live().unwrap().clone();
    t.set_row("b", &VmPhase::Starting(Some(live_b)));
    // The same at a first boot (no keys pinned: nothing showed the guest is this VM) → its
    // VMM is stopped, failed.
    t.m.create(CreateVm { no_start: true, ..req("d") }, &()).unwrap();
    let vmm = t.m.hypervisor.select("/k".as_ref(), None, false).unwrap();
    let live_d = Live { instance: vmm.start(&config_of(&t, "d")).unwrap(), started_at: now() };
    t.set_row("d", &VmPhase::Starting(Some(live_d.clone())));
    // A boot whose VMM was spawned but never recorded → that VMM is found and killed; failed.
    t.m.create(CreateVm { no_start: true, ..req("c") }, &()).unwrap();
    t.set_row("c", &VmPhase::Starting(None));
    let orphan = t.m.hypervisor.select("/k".as_ref(), None, false).unwrap().start(&config_of(&t, "c")).unwrap().pid;
    assert!(alive(orphan));
    t.m.reconcile(true);
    assert!(wait_dead(orphan), "a VMM the database never recorded was left running");
    assert_eq!(t.phase("a"), VmPhase::Stopping(live.clone()), "stopping until its VMM exits");
    // Asked over SSH on its own thread (a starting daemon does not wait on guests).
    let asked = (0..200).any(|_| {
        std::thread::sleep(Duration::from_millis(10));
        t.fake.host().poweroffs == poweroffs + 1
    });
    assert!(asked, "the guest was asked to power off");
    assert!(wait_dead(live.instance.pid), "the fake VMM exits when asked");
    t.m.reconcile(false);
    assert_eq!(t.phase("a"), VmPhase::Stopped);
    assert_eq!(t.changes("a").last(), Some(&(P, D)));
    assert_eq!(t.phase("b").kind(), R);
    assert!(wait_dead(live_d.instance.pid), "a first boot's VMM is asked to stop");
    t.m.reconcile(false);
    assert_eq!(t.phase("d"), VmPhase::Stopped, "stopped, not failed");
    assert_eq!(t.changes("d").last(), Some(&(P, D)));
    assert!(t.changes("d").contains(&(S, P)), "{:?}", t.changes("d"));
    assert!(matches!(t.phase("c"), VmPhase::Failed(ref why) if why.contains("did not finish")));
    assert_eq!(t.changes("c"), [(S, F)]);
}

/// A stop being finished for a dead daemon whose guest does not power off: its VMM is killed
/// after `RESUMED_STOP_TIMEOUT`; meanwhile it is `stopping`, and only `delete --force` acts.
#[test]
fn a_resumed_stop_the_guest_ignores_ends_in_a_kill_and_delete_force_still_works() {
    let t = setup();
    t.fake.host().ignore_shutdown = true;
    t.create("a");
    let live = t.phase("a").live().unwrap().clone();
    t.set_row("a", &VmPhase::Stopping(live.clone()));
    t.m.reconcile(true);
    assert_eq!(t.phase("a").kind(), P);
    let e = t.m.stop("a", Duration::from_secs(1), &()).unwrap_err();
    assert!(e.to_string().contains("is stopping; wait"), "{e}");
    let e = t.m.delete("a", false).unwrap_err();
    assert!(e.to_string().contains("is stopping; wait until it has stopped or delete it with --force"), "{e}");
    // Pretend the grace period has passed.
    t.m.resumed_stops().get_mut("a").unwrap().0 -= super::reconcile::RESUMED_STOP_TIMEOUT;
    t.m.reconcile(false);
    assert!(wait_dead(live.instance.pid));
    assert!(matches!(t.phase("a"), VmPhase::Stopped));
    // The same again, this time deleted with --force while stopping.
    t.m.start("a", &()).unwrap();
    let live = t.phase("a").live().unwrap().clone();
    t.set_row("a", &VmPhase::Stopping(live.clone()));
    t.m.reconcile(true);
    t.m.delete("a", true).unwrap();
    assert!(wait_dead(live.instance.pid), "delete --force of a stopping VM stops its VMM");
    assert!(t.m.db().vm("a").unwrap().is_none());
}

/// What a daemon that died mid-create, mid-delete or mid-grow left is finished or undone at
/// the next start (crates/banger/tests/crash.rs does the same with real kills).
#[test]
fn unfinished_creates_deletes_and_grows_are_settled_at_start() {
    let t = setup();
    // Registered, no disks yet: rolled back, with its half-made disks.
    let kept = t.m.create(CreateVm { no_start: true, ..req("done") }, &()).unwrap();
    t.m.create(CreateVm { no_start: true, ..req("half") }, &()).unwrap();
    let half = t.m.layout.vm("half");
    std::fs::remove_dir_all(&half.dir).unwrap();
    let staging = t.m.layout.vms().join(".half.creating-4242");
    std::fs::create_dir_all(&staging).unwrap();
    for n in ["half", "done"] {
        std::fs::write(t.m.layout.registering(n), b"").unwrap();
    }
    // A delete that marked a VM but died before removing its row: the VM stays, unmarked.
    let undeleted = t.m.create(CreateVm { no_start: true, ..req("undeleted") }, &()).unwrap();
    let mark = std::path::Path::new(&undeleted.dir).join(super::stop::DELETING);
    std::fs::write(&mark, b"").unwrap();
    // A grow recorded (and marked) but not done.
    let grown = t.m.create(CreateVm { no_start: true, ..req("grown") }, &()).unwrap();
    let g = t.m.layout.vm("grown");
    let bigger = (64 << 20) * 2;
    let rec = t.m.record("grown").unwrap();
    let settings = banger_state::Settings { disk_size: bigger, ..rec.settings() };
    assert!(t.m.db().set_vm_settings("grown", &settings, true).unwrap());
    std::fs::write(&g.growing, b"").unwrap();
    // A pinned base nobody uses (pinned, then the daemon died before registering).
    let stray = t.m.layout.images().join("base-1-2-3-4-5.ext4");
    std::fs::write(&stray, b"pinned").unwrap();

    t.m.reconcile(true);
    t.m.finish_grows();
    assert!(t.m.db().vm("half").unwrap().is_none(), "a create without disks is rolled back");
    assert!(!staging.exists() && !t.m.layout.registering("half").exists());
    assert!(t.kinds("half").ends_with(&["deleted"]), "{:?}", t.kinds("half"));
    assert!(t.m.db().vm("done").unwrap().is_some(), "a create whose disks were in place is kept");
    assert!(std::path::Path::new(&kept.dir).join(banger_storage::WORK).is_file());
    assert!(!t.m.layout.registering("done").exists());
    assert!(t.m.db().vm("undeleted").unwrap().is_some() && !mark.exists(), "an unfinished delete is undone");
    assert_eq!(std::fs::metadata(&g.work).unwrap().len(), bigger, "the recorded grow is finished");
    assert!(!g.growing.exists());
    assert!(std::path::Path::new(&grown.dir).is_dir());
    assert!(!stray.exists(), "a pinned base no VM uses is removed when every VM directory has its row");
}

#[test]
fn failed_boots_release_everything_and_say_why() {
    let t = setup();
    t.m.create(CreateVm { no_start: true, ..req("f") }, &()).unwrap();
    // sudo would ask for a password: a permission error, nothing left, the VM failed.
    t.fake.host().fail_tap = true;
    let e = t.m.start("f", &()).map(|_| ()).unwrap_err();
    assert_eq!(e.code(), ErrorCode::PermissionDenied);
    assert!(e.to_string().starts_with("VM f failed to start: "), "{e}");
    assert!(matches!(t.phase("f"), VmPhase::Failed(ref why) if why.contains("sudo")));
    assert!(t.fake.host().taps.is_empty());
    // The VMM does not start: the TAP goes again.
    t.fake.host().fail_start = true;
    assert!(t.m.start("f", &()).is_err());
    assert!(t.fake.host().taps.is_empty());
    // The guest never answers: the VMM is killed and everything released.
    t.fake.host().never_ready = true;
    let e = t.m.start("f", &()).map(|_| ()).unwrap_err();
    assert!(e.to_string().contains("did not answer SSH within 1s"), "{e}");
    let pid = *t.fake.host().pids.last().unwrap();
    assert!(!alive(pid), "the VMM of a failed boot was left running");
    assert!(t.fake.host().taps.is_empty());
    assert!(!t.m.layout.vm("f").run_dir.exists());
    assert_eq!(t.changes("f"), [(D, S), (S, F), (F, S), (S, F), (F, S), (S, F)]);
    assert_eq!(t.events().iter().filter(|e| e.kind_name() == "error").count(), 3, "each failure is an error event");
}

#[test]
fn a_row_the_daemon_cannot_read_is_an_error_never_a_guess_and_can_still_be_deleted() {
    let t = setup();
    t.create("odd");
    let live = t.phase("odd").live().unwrap().clone();
    let socket = live.instance.control_socket.display().to_string();
    let row = banger_state::PhaseRow {
        phase: "running",
        backend: Some("cloud-hypervisor"),
        accel: Some("tcg"),
        pid: Some(live.instance.pid),
        control_socket: Some(&socket),
        started_at: Some(1),
        ..Default::default()
    };
    assert!(t.m.db().set_phase("odd", "running", &row).unwrap());
    let shown = t.m.get("odd").unwrap();
    assert_eq!(shown.state, F);
    assert!(shown.last_error.unwrap().contains("unknown VMM backend \"cloud-hypervisor\""));
    let e = t.m.start("odd", &()).map(|_| ()).unwrap_err();
    assert_eq!(e.code(), ErrorCode::Internal);
    t.m.reconcile(true);
    assert!(t.events().iter().any(|e| matches!(&e.kind, EventKind::Error { message } if message.contains("damaged"))));
    // An accelerator the daemon does not know is not read as TCG either.
    let hvf = banger_state::PhaseRow { backend: Some("qemu"), accel: Some("hvf"), ..row };
    assert!(t.m.db().set_phase("odd", "running", &hvf).unwrap());
    assert!(VmPhase::from_record(&t.m.record("odd").unwrap()).unwrap_err().contains("unknown accelerator"));
    // Such a VM can still be removed: --force kills the process the row names.
    let e = t.m.delete("odd", false).unwrap_err();
    assert!(e.to_string().contains("delete it with --force"), "{e}");
    assert!(alive(live.instance.pid));
    t.m.delete("odd", true).unwrap();
    assert!(wait_dead(live.instance.pid), "the VMM of a deleted VM was left running");
    assert!(t.m.list().unwrap().is_empty());
    assert!(t.fake.host().taps.is_empty());
}

#[test]
fn two_operations_racing_on_one_vm_one_runs_the_other_is_refused() {
    let t = setup();
    t.m.create(CreateVm { no_start: true, ..req("race") }, &()).unwrap();
    // A boot that takes a while (the guest never answers; the timeout is 1 s).
    t.fake.host().never_ready = true;
    std::thread::scope(|s| {
        let boot = s.spawn(|| t.m.start("race", &()));
        // Wait until the boot holds the VM.
        let deadline = std::time::Instant::now() + Duration::from_secs(10);
        while t.phase("race").kind() != S {
            assert!(std::time::Instant::now() < deadline, "the boot never got to starting");
            std::thread::sleep(Duration::from_millis(5));
        }
        let e = t.m.delete("race", true).unwrap_err();
        assert_eq!(e.code(), ErrorCode::Conflict);
        let e = t.m.start("race", &()).map(|_| ()).unwrap_err();
        assert_eq!(e.code(), ErrorCode::Conflict);
        assert!(boot.join().unwrap().is_err(), "the boot itself times out");
    });
    // The VM survived the racing delete, and the failed boot left it failed.
    assert_eq!(t.phase("race").kind(), F);
    t.fake.host().never_ready = false;
    assert_eq!(t.m.start("race", &()).unwrap().state, R);
}

fn changed_fields(t: &T, vm: &str) -> Vec<serde_json::Map<String, serde_json::Value>> {
    t.events()
        .into_iter()
        .filter(|e| e.vm.as_deref() == Some(vm))
        .filter_map(|e| match e.kind {
            EventKind::Changed { fields } if !fields.contains_key("ssh_pinned") => Some(fields),
            _ => None,
        })
        .collect()
}

#[test]
fn set_changes_a_stopped_vm_grows_its_disk_and_publishes_exactly_what_changed() {
    use banger_api::request::SetVm;
    let t = setup();
    t.m.create(CreateVm { no_start: true, ..req("s") }, &()).unwrap();
    let work = t.m.layout.vm("s").work;
    let set = SetVm { memory_mib: Some(512), vcpus: Some(2), disk_size: Some(128 << 20), ..Default::default() };
    let vm = t.m.set("s", &set, &()).unwrap();
    assert_eq!((vm.memory_mib, vm.vcpus, vm.disk_size, vm.nat), (512, 2, 128 << 20, false));
    assert_eq!(std::fs::metadata(&work).unwrap().len(), 128 << 20);
    // The filesystem grew with the file (resize2fs), not just the file.
    let out = std::process::Command::new("dumpe2fs").arg("-h").arg(&work).output().unwrap();
    let text = String::from_utf8_lossy(&out.stdout);
    let field = |k: &str| -> u64 {
        text.lines().find(|l| l.starts_with(k)).and_then(|l| l.split(':').nth(1)).unwrap().trim().parse().unwrap()
    };
    assert_eq!(field("Block count") * field("Block size"), 128 << 20, "{text}");
    let fields = changed_fields(&t, "s");
    assert_eq!(fields.len(), 1);
    assert_eq!(
        serde_json::Value::Object(fields[0].clone()),
        serde_json::json!({"memory_mib": 512, "vcpus": 2, "disk_size": 128 << 20})
    );
    // The same values again change nothing and publish nothing.
    t.m.set("s", &set, &()).unwrap();
    assert_eq!(changed_fields(&t, "s").len(), 1);
    // The next boot uses the new values.
    let started = t.m.start("s", &()).unwrap();
    assert_eq!((started.memory_mib, started.vcpus), (512, 2));
    assert_eq!(t.fake.host().boots.last().copied(), Some((512, 2)));
}

#[test]
fn set_refuses_bad_values_shrinking_and_resources_of_a_running_vm_changing_nothing() {
    use banger_api::request::SetVm;
    let t = setup();
    t.create("r");
    let before = t.m.record("r").unwrap();
    let err = |set: SetVm| t.m.set("r", &set, &()).unwrap_err();
    let e = err(SetVm { memory_mib: Some(4096), ..Default::default() });
    assert_eq!(e.code(), ErrorCode::InvalidState);
    assert!(e.to_string().contains("banger vm stop r"), "{e}");
    let e = err(SetVm { memory_mib: Some(64), ..Default::default() });
    assert_eq!(
        (e.code(), e.to_string()),
        (ErrorCode::BadInput, "--memory 64 is out of range: use 128 to 1048576 MiB".into())
    );
    let e = err(SetVm { disk_size: Some(32 << 20), ..Default::default() });
    assert_eq!(e.code(), ErrorCode::BadInput);
    assert!(e.to_string().contains("can only grow"), "{e}");
    assert_eq!(err(SetVm::default()).code(), ErrorCode::BadInput);
    assert_eq!(
        t.m.set("nope", &SetVm { nat: Some(true), ..Default::default() }, &()).unwrap_err().code(),
        ErrorCode::NotFound
    );
    assert_eq!(t.m.record("r").unwrap(), before, "nothing changed");
    assert!(changed_fields(&t, "r").is_empty());
    assert!(!t.kinds("r").contains(&"error"), "refusals are not error events");
}

#[test]
fn nat_follows_set_at_once_on_a_running_vm_and_at_the_next_start_on_a_stopped_one() {
    use banger_api::request::SetVm;
    let t = setup();
    let vm = t.create("n");
    let tag = format!("{}n", t.m.tap_prefix);
    let nat = |on: bool| SetVm { nat: Some(on), ..Default::default() };
    assert!(t.m.set("n", &nat(true), &()).unwrap().nat);
    assert!(t.fake.host().nat.contains(&tag), "rules in place at once");
    assert_eq!(t.m.get("n").unwrap().pid, vm.pid, "the VM kept running");
    assert!(!t.m.set("n", &nat(false), &()).unwrap().nat);
    assert!(!t.fake.host().nat.contains(&tag), "rules gone at once");
    t.m.stop("n", Duration::from_secs(5), &()).unwrap();
    t.m.set("n", &nat(true), &()).unwrap();
    assert!(!t.fake.host().nat.contains(&tag), "a stopped VM has no rules");
    t.m.start("n", &()).unwrap();
    assert!(t.fake.host().nat.contains(&tag), "…until it starts");
    let redirect = format!("{tag}.dns:10053");
    assert!(t.fake.host().nat.contains(&redirect), "the guest's DNS goes to bangerd while it runs");
    t.m.stop("n", Duration::from_secs(5), &()).unwrap();
    assert!(!t.fake.host().nat.contains(&tag), "stop removes them");
    assert!(!t.fake.host().nat.contains(&redirect), "…and the DNS redirect");
    let fields: Vec<_> = changed_fields(&t, "n").iter().map(|f| f["nat"].clone()).collect();
    assert_eq!(fields, [true, false, true]);
}

#[test]
fn stats_of_running_and_stopped_vms() {
    let t = setup();
    t.create("st");
    t.fake.host().stats_delay = Duration::from_millis(300);
    t.m.sample_cpu();
    std::thread::sleep(Duration::from_millis(250));
    t.m.sample_cpu();
    let s = t.m.stats("st").unwrap();
    assert_eq!(s.state, R);
    let p = s.process.expect("the VMM process is measured");
    assert_eq!(p.pid, t.pid("st"));
    assert!(p.rss_bytes > 0);
    // The list carries the same host figures (no guest involved).
    let listed = t.m.list().unwrap().into_iter().find(|v| v.name == "st").unwrap().process.expect("listed");
    assert_eq!(listed.pid, p.pid);
    assert!(listed.rss_bytes > 0 && listed.cpu_percent.is_some());
    // The fake VMM is a sleeping process.
    assert!(p.cpu_percent.is_some_and(|c| (0.0..20.0).contains(&c)), "{p:?}");
    let g = s.guest.expect("the first request waits for the guest's figures");
    assert_eq!((g.mem_total, g.load[0], g.filesystems.len()), (1_000_000 * 1024, 0.5, 2));
    assert_eq!(s.guest_error, None);
    assert_eq!(s.disks.iter().map(|d| d.role.as_str()).collect::<Vec<_>>(), ["base", "overlay", "work"]);
    // Within a second the figures are served as they are: the guest is not asked again, and the
    // answer does not wait for it.
    let t0 = std::time::Instant::now();
    let again = t.m.stats("st").unwrap();
    assert!(t0.elapsed() < Duration::from_millis(250), "{:?}", t0.elapsed());
    assert_eq!(again.guest.unwrap().sampled_at, g.sampled_at);
    assert_eq!(t.fake.host().stats_calls, 1);
    // Later, a request starts a refresh in the background and answers with what it has.
    std::thread::sleep(Duration::from_millis(1100));
    let t0 = std::time::Instant::now();
    assert_eq!(t.m.stats("st").unwrap().guest.unwrap().sampled_at, g.sampled_at);
    assert!(t0.elapsed() < Duration::from_millis(250));
    std::thread::sleep(Duration::from_millis(600));
    assert!(t.m.stats("st").unwrap().guest.unwrap().sampled_at > g.sampled_at, "refreshed");

    t.m.stop("st", Duration::from_secs(5), &()).unwrap();
    let s = t.m.stats("st").unwrap();
    assert_eq!(s.state, D);
    assert!(s.process.is_none() && s.guest.is_none() && s.network.is_none() && s.guest_error.is_none());
    assert!(t.m.get("st").unwrap().process.is_none());
    assert_eq!((s.vcpus, s.memory_mib, s.disks.len()), (1, 256, 3));
}

#[test]
fn images_bundle_ones_listed_built_ones_resolved_and_never_deleted_while_used() {
    let t = setup();
    let names = |t: &T| t.m.images().unwrap().into_iter().map(|i| (i.name, i.kind)).collect::<Vec<_>>();
    assert_eq!(names(&t), [("default".into(), "bundle".into()), ("base".into(), "bundle".into())]);
    let e = t.m.create(CreateVm { image: Some("go".into()), ..req("x") }, &()).unwrap_err();
    assert_eq!(e.code(), ErrorCode::NotFound);
    assert!(e.to_string().contains("known images: default, base"), "{e}");
    assert!(t.m.record("x").is_err(), "nothing registered");

    // A built image (what `image build` will register): its own directory under the state dir.
    let dir = t.m.layout.built_images().join("go");
    std::fs::create_dir_all(&dir).unwrap();
    let path = dir.join("rootfs.ext4");
    std::fs::File::create(&path).unwrap().set_len(4 << 20).unwrap();
    let rec = banger_state::ImageRecord {
        name: "go".into(),
        path: path.display().to_string(),
        base: "base".into(),
        kernel: "vmlinux".into(),
        packages: None,
        packages_sha256: None,
        script: None,
        script_sha256: None,
        docker: false,
        build_log: Some(dir.join("build.log").display().to_string()),
        created_at: 1,
    };
    assert!(t.m.db().insert_image(&rec).unwrap());
    assert_eq!(names(&t).last().unwrap(), &("go".to_string(), "built".to_string()));
    let vm = t.m.create(CreateVm { image: Some("go".into()), no_start: true, ..req("g1") }, &()).unwrap();
    assert_eq!(vm.image, "go");
    assert_eq!(t.m.image("go").unwrap().vms, ["g1"]);

    let e = t.m.delete_image("go").unwrap_err();
    assert_eq!(e.code(), ErrorCode::InvalidState);
    assert!(e.to_string().contains("used by VM g1"), "{e}");
    assert!(path.exists(), "a used image keeps its file");
    let e = t.m.delete_image("base").unwrap_err();
    assert_eq!(e.code(), ErrorCode::InvalidState, "the bundle's images are not banger's to delete");
    assert_eq!(t.m.delete_image("nope").unwrap_err().code(), ErrorCode::NotFound);

    t.m.delete("g1", false).unwrap();
    t.m.delete_image("go").unwrap();
    assert!(!dir.exists(), "its directory goes with it");
    assert_eq!(t.m.image("go").unwrap_err().code(), ErrorCode::NotFound);
}

/// `STATE/ssh_config` follows VMs as they come and go, also when many come at once.
#[test]
fn the_ssh_config_has_a_block_per_vm_whatever_the_order_of_creates_and_deletes() {
    let t = setup();
    std::thread::scope(|s| {
        for i in 0..12 {
            let m = &t.m;
            s.spawn(move || m.create(CreateVm { no_start: true, ..req(&format!("c{i:02}")) }, &()).unwrap());
        }
    });
    let text = std::fs::read_to_string(t.m.layout.ssh_config()).unwrap();
    assert_eq!(text.matches("\nHost c").count(), 12, "{text}");
    std::thread::scope(|s| {
        for i in 0..6 {
            let m = &t.m;
            s.spawn(move || m.delete(&format!("c{i:02}"), false).unwrap());
        }
    });
    let text = std::fs::read_to_string(t.m.layout.ssh_config()).unwrap();
    assert_eq!(text.matches("\nHost c").count(), 6, "{text}");
    assert!(text.contains("Host c11.vm\n    HostName ") && !text.contains("Host c00.vm"), "{text}");
    assert!(text.contains("    StrictHostKeyChecking yes\n"), "{text}");
}

/// A free TCP port on 127.0.0.1 (bound, then let go).
fn free_port() -> u16 {
    std::net::TcpListener::bind("127.0.0.1:0").unwrap().local_addr().unwrap().port()
}

fn listening(port: u16) -> bool {
    std::net::TcpListener::bind(("127.0.0.1", port)).is_err()
}

#[test]
fn published_ports_are_bound_while_the_vm_runs_and_a_taken_one_refuses_the_start() {
    use banger_api::request::SetVm;
    let t = setup();
    let (a, b) = (free_port(), free_port());
    let spec = |h: u16, g: u16| -> banger_api::PortSpec { format!("{h}:{g}").parse().unwrap() };
    let vm = t.m.create(CreateVm { publish: vec![spec(a, 80)], ..req("p") }, &()).unwrap();
    assert!(listening(a), "bound while it runs");
    assert_eq!(vm.ports.len(), 1);
    assert!(vm.ports[0].persistent && vm.ports[0].active);
    assert_eq!(t.m.record("p").unwrap().publish, ["127.0.0.1:".to_string() + &a.to_string() + ":80/tcp"]);

    // Live changes: add one, replace the guest port of another, remove.
    let vm = t.m.set("p", &SetVm { publish: vec![spec(b, 443)], ..Default::default() }, &()).unwrap();
    assert!(listening(a) && listening(b));
    assert_eq!(vm.ports.iter().filter(|p| p.active).count(), 2);
    let vm = t.m.set("p", &SetVm { publish: vec![spec(a, 8080)], ..Default::default() }, &()).unwrap();
    assert!(vm.ports.iter().any(|p| p.spec == spec(a, 8080) && p.active), "{:?}", vm.ports);
    assert_eq!(vm.ports.len(), 2, "the same host port replaced, not added");
    t.m.set("p", &SetVm { unpublish: vec![b.to_string()], ..Default::default() }, &()).unwrap();
    assert!(!listening(b), "an unpublished port is let go at once");
    let e = t.m.set("p", &SetVm { unpublish: vec![b.to_string()], ..Default::default() }, &()).unwrap_err();
    assert_eq!(e.code(), ErrorCode::BadInput);
    assert!(e.to_string().contains("publishes no such port"), "{e}");

    // A port taken by another program: the live change is refused and nothing changes.
    let taken = std::net::TcpListener::bind("127.0.0.1:0").unwrap();
    let c = taken.local_addr().unwrap().port();
    let before = t.m.record("p").unwrap();
    let e = t.m.set("p", &SetVm { publish: vec![spec(c, 22)], ..Default::default() }, &()).unwrap_err();
    assert_eq!(e.code(), ErrorCode::Conflict);
    assert!(e.to_string().contains("taken by another program"), "{e}");
    assert_eq!(t.m.record("p").unwrap(), before);
    assert!(listening(a), "the other forward is untouched");

    // Stop lets go; a second VM wanting the same port cannot start while the first runs.
    t.m.stop("p", Duration::from_secs(5), &()).unwrap();
    assert!(!listening(a), "released on stop");
    assert!(!t.m.get("p").unwrap().ports[0].active);
    t.m.create(CreateVm { publish: vec![spec(a, 81)], no_start: true, ..req("q") }, &()).unwrap();
    t.m.start("p", &()).unwrap();
    let e = t.m.start("q", &()).unwrap_err();
    assert_eq!(e.code(), ErrorCode::Conflict);
    assert!(e.to_string().contains("taken by VM p"), "{e}");
    assert_eq!(t.phase("q").kind(), Phase::Stopped, "a refused start changes nothing");
    assert!(t.fake.host().taps.len() == 1, "no TAP was made for q");

    // A VMM that dies releases its ports (the monitor's reconcile).
    kill(Pid::from_raw(t.pid("p") as i32), Signal::SIGKILL).unwrap();
    assert!(wait_dead(t.pid("p")));
    t.m.reconcile(false);
    assert_eq!(t.phase("p").kind(), Phase::Failed);
    assert!(!listening(a), "released when its VMM died");
    t.m.start("q", &()).unwrap();
    assert!(listening(a), "…so another VM can have it");
    t.m.kill("q", "KILL").unwrap();
    t.m.reconcile(false);
    t.m.delete("q", true).unwrap();
    assert!(!listening(a));

    // Bad specs are refused at create.
    for (publish, why) in [(vec![spec(0, 80)], "give a host port"), (vec![spec(a, 1), spec(a, 2)], "same host port")] {
        let e = t.m.create(CreateVm { publish, no_start: true, ..req("bad") }, &()).unwrap_err();
        assert!(e.to_string().contains(why), "{e}");
    }
    assert!(t.m.record("bad").is_err(), "nothing registered");
}

/// A progress sink that says the client went away after `n` checks.
struct GoneAfter(std::sync::atomic::AtomicUsize, Mutex<Vec<String>>);

impl Progress for GoneAfter {
    fn step(&self, _stage: &str, message: &str) {
        self.1.lock().unwrap().push(message.to_string());
    }
    fn cancelled(&self) -> bool {
        self.0.fetch_sub(1, std::sync::atomic::Ordering::SeqCst) == 1
    }
}

#[test]
fn a_temporary_forward_lasts_as_long_as_its_client_or_the_vm() {
    let t = setup();
    t.create("f");
    let any: banger_api::PortSpec = "0:22".parse().unwrap();
    // The client goes after two checks: the port is let go.
    let progress = GoneAfter(2.into(), Mutex::default());
    t.m.port_forward("f", &[any], &progress, &|| false).unwrap();
    let lines = progress.1.lock().unwrap().clone();
    assert_eq!(lines.len(), 1, "{lines:?}");
    let port: u16 = lines[0].split(" → ").next().unwrap().rsplit(':').next().unwrap().parse().unwrap();
    assert_ne!(port, 0, "the picked port is reported: {}", lines[0]);
    assert!(!listening(port), "let go when the client went");
    assert!(t.m.get("f").unwrap().ports.is_empty());

    // The VM stops under a forward: it ends with an error saying so.
    let m = &t.m;
    std::thread::scope(|s| {
        let fwd = s.spawn(|| m.port_forward("f", &[any], &GoneAfter(usize::MAX.into(), Mutex::default()), &|| false));
        for _ in 0..100 {
            if !m.get("f").unwrap().ports.is_empty() {
                break;
            }
            std::thread::sleep(Duration::from_millis(20));
        }
        let shown = m.get("f").unwrap().ports;
        assert!(shown.len() == 1 && !shown[0].persistent && shown[0].active, "{shown:?}");
        m.stop("f", Duration::from_secs(5), &()).unwrap();
        let e = fwd.join().unwrap().unwrap_err();
        assert!(e.to_string().contains("VM f stopped"), "{e}");
    });
    // Not to a stopped VM.
    let e = t.m.port_forward("f", &[any], &(), &|| false).unwrap_err();
    assert_eq!(e.code(), ErrorCode::InvalidState);
}

#[test]
fn host_folders_are_served_and_mounted_at_every_start_and_their_servers_end_with_the_vm() {
    use banger_api::request::SetVm;
    let t = setup();
    let src = t._tmp.path().join("src");
    let data = t._tmp.path().join("data");
    std::fs::create_dir_all(&src).unwrap();
    std::fs::create_dir_all(&data).unwrap();
    let spec = |s: String| -> banger_api::MountSpec { s.parse().unwrap() };
    let mounts = vec![spec(format!("{}:/work/src", src.display())), spec(format!("{}:/data:ro", data.display()))];
    let vm = t.m.create(CreateVm { mounts: mounts.clone(), ..req("m") }, &()).unwrap();
    assert_eq!(vm.mounts, mounts, "vm show lists them");
    {
        let h = t.fake.host();
        assert_eq!(h.served_folders.len(), 2);
        assert_eq!((h.served_folders[0].0.clone(), h.served_folders[0].1), (src.clone(), false));
        assert_eq!((h.served_folders[1].0.clone(), h.served_folders[1].1), (data.clone(), true));
        assert_eq!(h.shares.last().unwrap(), &["banger0", "banger1"], "the VMM gets one share each");
        assert_eq!(
            h.mounted,
            [("banger0".into(), PathBuf::from("/work/src"), false), ("banger1".into(), PathBuf::from("/data"), true)]
        );
    }
    let servers = t.fake.host().folder_pids.clone();
    assert!(servers.iter().all(|&p| alive(p)));

    // Changed only while stopped; their servers end with the VM.
    let e = t.m.set("m", &SetVm { unmount: vec!["/data".into()], ..Default::default() }, &()).unwrap_err();
    assert_eq!(e.code(), ErrorCode::InvalidState, "{e}");
    t.m.stop("m", Duration::from_secs(5), &()).unwrap();
    assert!(servers.iter().all(|&p| wait_dead(p)), "virtiofsd processes end with the VM");
    let vm = t.m.set("m", &SetVm { unmount: vec!["/data/".into()], ..Default::default() }, &()).unwrap();
    assert_eq!(vm.mounts, mounts[..1]);
    let e = t.m.set("m", &SetVm { unmount: vec!["/nope".into()], ..Default::default() }, &()).unwrap_err();
    assert!(e.to_string().contains("mounts nothing there"), "{e}");
    let inside = spec(format!("{}:/work/src/inner", data.display()));
    let e = t.m.set("m", &SetVm { mounts: vec![inside], ..Default::default() }, &()).unwrap_err();
    assert!(e.to_string().contains("inside the other"), "{e}");

    // Mounted again at the next start.
    t.fake.host().mounted.clear();
    t.m.start("m", &()).unwrap();
    assert_eq!(t.fake.host().mounted, [("banger0".into(), PathBuf::from("/work/src"), false)]);

    // A guest that cannot mount: the start fails, saying why, and nothing is left serving.
    t.m.stop("m", Duration::from_secs(5), &()).unwrap();
    t.fake.host().fail_mount = Some("mount: unknown filesystem type 'virtiofs'".into());
    let e = t.m.start("m", &()).unwrap_err();
    assert!(e.to_string().contains("unknown filesystem type 'virtiofs'"), "{e}");
    assert_eq!(t.phase("m").kind(), Phase::Failed);
    let last = *t.fake.host().folder_pids.last().unwrap();
    assert!(wait_dead(last), "its virtiofsd ended");

    // A host directory that went away refuses the start and names the way out.
    std::fs::remove_dir(&src).unwrap();
    let e = t.m.start("m", &()).unwrap_err();
    assert!(e.to_string().contains("not a directory any more") && e.to_string().contains("--unmount /work/src"), "{e}");
}

#[test]
fn host_folders_are_refused_where_they_cannot_be_served() {
    let t = setup();
    let dir = t._tmp.path().to_path_buf();
    let m: banger_api::MountSpec = format!("{}:/src", dir.display()).parse().unwrap();
    t.fake.host().no_virtiofsd = true;
    let e = t.m.create(CreateVm { mounts: vec![m.clone()], ..req("nf") }, &()).unwrap_err();
    assert_eq!(e.code(), ErrorCode::RuntimeMissing);
    assert!(e.to_string().contains("virtiofsd"), "{e}");
    assert!(t.m.record("nf").is_err(), "nothing registered");
    t.fake.host().no_virtiofsd = false;
    let missing: banger_api::MountSpec = "/no/such/dir:/src".parse().unwrap();
    let e = t.m.create(CreateVm { mounts: vec![missing], ..req("nf") }, &()).unwrap_err();
    assert_eq!(e.code(), ErrorCode::BadInput);
    assert!(e.to_string().contains("cannot use /no/such/dir"), "{e}");
}

#[test]
fn a_new_daemon_forwards_what_it_can_and_shows_what_it_cannot() {
    let t = setup();
    let (a, b) = (free_port(), free_port());
    let spec = |h: u16| -> banger_api::PortSpec { format!("{h}:80").parse().unwrap() };
    t.m.create(CreateVm { publish: vec![spec(a), spec(b)], ..req("r") }, &()).unwrap();
    // As if bangerd restarted: nothing bound, and meanwhile another program took one port.
    t.m.close_forwards("r");
    let holder = std::net::TcpListener::bind(("127.0.0.1", a)).unwrap();
    t.m.open_all_published();
    let ports = t.m.get("r").unwrap().ports;
    let (pa, pb) =
        (ports.iter().find(|p| p.spec == spec(a)).unwrap(), ports.iter().find(|p| p.spec == spec(b)).unwrap());
    assert!(!pa.active && pa.error.as_deref().is_some_and(|e| e.contains("taken")), "{pa:?}");
    assert!(pb.active && pb.error.is_none() && listening(b), "the other port is forwarded: {pb:?}");
    assert!(t.kinds("r").contains(&"error"), "said as an event too");
    drop(holder);
}

/// A jailed Firecracker as the lifecycle sees it (the fake's jail layout): shown jailed with its
/// chroot, found by its jail id, sent only signals that reach it, and its jail removed when it
/// stops, when it dies and when the VM is deleted.
#[test]
fn a_jailed_vmm_is_shown_jailed_and_its_jail_goes_with_it() {
    let t = setup();
    t.fake.host().jailed = true;
    let vm = t.create("jailed");
    let jail_dir = t.m.layout.vm("jailed").jail;
    assert_eq!((vm.backend.as_deref(), vm.jailed), (Some("firecracker"), Some(true)));
    let jail = vm.jail.clone().expect("its jail is shown");
    assert!(jail.chroot.starts_with(&jail_dir), "{jail:?}");
    assert!(jail.cgroup_limits.is_empty() && jail.cgroup_note.as_deref().unwrap().contains("fake host"));
    let live = t.phase("jailed").live().unwrap().clone();
    let id = banger_vmm::firecracker::jail::id(&jail_dir);
    assert_eq!(live.instance.marker(), PathBuf::from(&id), "found by its jail id, not its socket path");
    assert!(t.m.get("jailed").unwrap().process.is_some(), "its process is measured through the jail id");

    // Its run directory wiped while it runs (a logout, say): still running, found by its jail id,
    // and a restarted daemon links its socket again.
    std::fs::remove_dir_all(t.m.layout.vm("jailed").run_dir).unwrap();
    t.m.reconcile(false);
    assert_eq!(t.phase("jailed").kind(), R, "a jailed VM without its socket link is not dead");
    assert!(alive(live.instance.pid));
    t.m.reconcile(true);
    assert!(live.instance.control_socket.exists(), "the link is made again at daemon start");

    // A signal the kernel would drop for a PID-namespace init is refused; nothing changes.
    let e = t.m.kill("jailed", "TERM").map(|_| ()).unwrap_err();
    assert!(e.to_string().contains("own PID namespace") && e.to_string().contains("--signal KILL"), "{e}");
    assert_eq!(t.phase("jailed").kind(), R);
    assert!(alive(live.instance.pid));

    // Stopped: the jail goes.
    assert_eq!(t.m.stop("jailed", Duration::from_millis(300), &()).unwrap().state, D);
    assert!(wait_dead(live.instance.pid));
    assert!(!jail_dir.exists(), "stop removes the jail");
    assert_eq!(t.m.get("jailed").unwrap().jailed, None, "a stopped VM is not jailed");

    // Its Firecracker dies: reconcile fails the VM and removes the jail and the socket link.
    let pid = t.m.start("jailed", &()).unwrap().pid.unwrap();
    assert!(jail_dir.exists());
    kill(Pid::from_raw(pid as i32), Signal::SIGKILL).unwrap();
    assert!(wait_dead(pid));
    t.m.reconcile(false);
    assert_eq!(t.phase("jailed").kind(), F);
    assert!(!jail_dir.exists(), "a crash's jail is removed");
    assert!(std::fs::symlink_metadata(t.m.layout.vm("jailed").run_dir.join(format!("jail-{id}.sock"))).is_err());

    // Deleted while running (--force): nothing is left.
    let pid = t.m.start("jailed", &()).unwrap().pid.unwrap();
    t.m.delete("jailed", true).unwrap();
    assert!(wait_dead(pid));
    assert!(!t.m.layout.vm("jailed").dir.exists());
}

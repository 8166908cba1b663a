//! Live restore: a running VM (NAT on, `.vm` name) survives `daemon stop`, a daemon killed
//! with SIGKILL (its firewall rules flushed meanwhile, as a host firewall reload would), and an
//! upgrade — a new copy of the binaries starting on a database the previous release left (one
//! schema version older). Each time the new daemon re-attaches: same VMM process, SSH with the
//! pinned key, NAT and DNS redirect rules in place, the name resolving from the host and inside
//! the guest. Then a host reboot (VMM, TAP and rules gone): the VM is stopped, not failed, and
//! starts again with its data.
//!
//! Needs root and a runtime bundle (`BANGER_TEST_RUNTIME`; `make test` sets it); skipped loudly
//! otherwise — unless `BANGER_E2E_REQUIRED=1`, when that is a failure.

mod common;

use common::*;
use std::path::{Path, PathBuf};
use std::process::Command;
use std::time::Duration;

/// Rules of this installation in `iptables-save` (whichever back end banger picked), as
/// (iptables command, table, rule).
fn rules_in_tables(prefix: &str) -> Vec<(&'static str, String, String)> {
    let mut found = Vec::new();
    for (save, cmd) in [("iptables-nft-save", "iptables-nft"), ("iptables-legacy-save", "iptables-legacy")] {
        let Ok(out) = Command::new(save).output() else { continue };
        let mut table = String::new();
        for line in String::from_utf8_lossy(&out.stdout).lines() {
            if let Some(t) = line.strip_prefix('*') {
                table = t.to_string();
            } else if line.contains(prefix) {
                found.push((cmd, table.clone(), line.to_string()));
            }
        }
    }
    found
}

fn rules(prefix: &str) -> Vec<String> {
    rules_in_tables(prefix).into_iter().map(|(_, _, r)| r).collect()
}

/// Remove this installation's rules behind banger's back (a firewall reload would).
fn flush_rules(prefix: &str) {
    for (cmd, table, line) in rules_in_tables(prefix) {
        let Some(rest) = line.strip_prefix("-A ") else { continue };
        let args: Vec<&str> = rest.split_whitespace().map(|a| a.trim_matches('"')).collect();
        let out = Command::new(cmd).args(["-t", &table, "-D"]).args(&args).output().unwrap();
        assert!(out.status.success(), "{cmd} -t {table} -D {args:?}: {out:?}");
    }
}

struct Vm<'a> {
    env: &'a Env,
    rt: PathBuf,
    prefix: String,
    pid: i64,
    ip: String,
}

impl Vm<'_> {
    /// Everything a running VM needs, checked from outside and inside.
    fn works(&self, when: &str) {
        let shown = self.env.ok_rt(&self.rt, &["vm", "show", "lr", "--json"]).json();
        assert_eq!(shown["state"], "running", "{when}: {shown}");
        assert_eq!(shown["pid"].as_i64(), Some(self.pid), "{when}: the same VMM process");
        let out = self.env.ok_rt(&self.rt, &["vm", "ssh", "lr", "--", "cat /root/data; hostname"]).stdout();
        assert_eq!(out, "kept\nlr\n", "{when}");
        let rules = rules(&self.prefix);
        let tag = format!("{}lr", self.prefix);
        assert!(rules.iter().any(|r| r.contains("MASQUERADE") && r.contains(&tag)), "{when}: NAT rule: {rules:?}");
        assert!(rules.iter().any(|r| r.contains(&format!("{tag}.dns"))), "{when}: DNS redirect: {rules:?}");
        let dns = self.env.ok_rt(&self.rt, &["dns", "status", "--json"]).json();
        let listen = dns["listen"].as_str().unwrap().to_string();
        assert_eq!(dig_until(&listen, "lr.vm", "NOERROR"), ("NOERROR".into(), vec![self.ip.clone()]), "{when}");
        // From inside: the guest's resolver is bangerd (through the redirect rule).
        let inside = self.env.ok_rt(&self.rt, &["vm", "ssh", "lr", "--", "getent hosts lr.vm"]).stdout();
        assert!(inside.starts_with(&self.ip), "{when}: the guest resolves its own name: {inside}");
    }
}

fn daemon_pid(env: &Env, rt: &Path) -> i32 {
    env.ok_rt(rt, &["daemon", "status", "--json"]).json()["pid"].as_i64().unwrap() as i32
}

#[test]
fn running_vms_survive_daemon_stop_crash_and_upgrade() {
    let Some(rt) = e2e_runtime("live_restore", None) else { return };
    let env = Env::new();
    env.write_config("subnet = \"10.213.231.0/24\"\nvmm = \"qemu\"\ndefault_memory = 512\n");
    let _left = Leftovers { env: &env, rt: &rt, vms: &["lr"], images: &[] };
    let created = env.ok_rt(&rt, &["vm", "create", "--name", "lr", "--nat", "--disk-size", "128M", "--json"]).json();
    env.ok_rt(&rt, &["vm", "ssh", "lr", "--", "echo kept > /root/data && sync"]);
    let vm = Vm {
        env: &env,
        rt: rt.clone(),
        prefix: banger_net::tap::prefix_for(&env.state_dir()),
        pid: created["pid"].as_i64().unwrap(),
        ip: created["ip"].as_str().unwrap().to_string(),
    };
    vm.works("at first");

    // 1. `daemon stop`, then any command starts a new one.
    env.stop_daemon(&rt);
    vm.works("after daemon stop");
    banger_testkit::report(
        "Live restore",
        "`daemon stop`, then the next command",
        "VM re-attached: same VMM, SSH, NAT and DNS rules, `.vm` name",
    );

    // 2. SIGKILL, and the rules flushed while no daemon runs.
    let pid = daemon_pid(&env, &rt);
    nix::sys::signal::kill(nix::unistd::Pid::from_raw(pid), nix::sys::signal::Signal::SIGKILL).unwrap();
    assert!(wait_gone(pid, Duration::from_secs(10)));
    env.forget_daemon(pid);
    flush_rules(&vm.prefix);
    assert!(rules(&vm.prefix).is_empty(), "flushed: {:?}", rules(&vm.prefix));
    vm.works("after a daemon crash with the rules flushed");
    banger_testkit::report(
        "Live restore",
        "bangerd killed (SIGKILL) and the VM's firewall rules flushed",
        "VM re-attached, NAT and DNS redirect rules put back",
    );

    // 3. An upgrade: the new binaries in another place, on the database the previous release
    //    (schema one version older: before VMs had published ports and host folders) left.
    env.stop_daemon(&rt);
    let db_path = env.state_dir().join("state.db");
    let latest = banger_state::MIGRATIONS.len() as u32;
    // Undoing the newest migration: this test knows it (update it with the next one).
    assert!(banger_state::MIGRATIONS.last().unwrap().contains("ADD COLUMN publish"), "undo the newest migration here");
    {
        let db = rusqlite::Connection::open(&db_path).unwrap();
        db.execute_batch(&format!(
            "ALTER TABLE vms DROP COLUMN publish; ALTER TABLE vms DROP COLUMN mounts; PRAGMA user_version = {};",
            latest - 1
        ))
        .unwrap();
    }
    let release = env.path("release-2/bin");
    std::fs::create_dir_all(&release).unwrap();
    for bin in ["banger", "bangerd"] {
        std::fs::copy(banger_bin().with_file_name(bin), release.join(bin)).unwrap();
    }
    let out = Command::new(release.join("banger"))
        .env_clear()
        .envs(env.vars())
        .env("BANGER_DAEMON_BIN", release.join("bangerd"))
        .env("BANGER_RUNTIME_DIR", &rt)
        .args(["daemon", "status", "--json"])
        .output()
        .unwrap();
    let out = Out(out);
    env.note_started(&out.stderr());
    assert_eq!(out.code(), 0, "{}", out.stderr());
    assert_eq!(out.json()["schema_version"].as_u64(), Some(latest as u64), "migrated: {}", out.stdout());
    let exe = std::fs::read_link(format!("/proc/{}/exe", out.json()["pid"])).unwrap();
    assert_eq!(exe, release.join("bangerd"), "the new binary runs");
    vm.works("after an upgrade with a schema migration");
    let shown = env.ok_rt(&rt, &["vm", "show", "lr", "--json"]).json();
    assert!(shown["ports"].as_array().is_some_and(Vec::is_empty), "the migrated columns work: {shown}");
    banger_testkit::report(
        "Live restore",
        &format!("upgrade: new binaries on a schema {} database", latest - 1),
        &format!("migrated to {latest}; VM re-attached, everything works"),
    );

    // A host reboot: the VMM, its TAP and rules are gone, and the VM started before the host
    // did (its start time is moved to before this host's boot time: the one part of a reboot a
    // test cannot do for real).
    env.stop_daemon(&rt);
    nix::sys::signal::kill(nix::unistd::Pid::from_raw(vm.pid as i32), nix::sys::signal::Signal::SIGKILL).unwrap();
    assert!(wait_gone(vm.pid as i32, Duration::from_secs(10)));
    let tap = created["tap"].as_str().unwrap();
    assert!(Command::new("ip").args(["link", "del", tap]).status().unwrap().success());
    flush_rules(&vm.prefix);
    let btime: i64 = std::fs::read_to_string("/proc/stat")
        .unwrap()
        .lines()
        .find_map(|l| l.strip_prefix("btime ")?.trim().parse().ok())
        .unwrap();
    {
        let db = rusqlite::Connection::open(&db_path).unwrap();
        db.execute("UPDATE vms SET started_at = ?1 WHERE name = 'lr'", [btime - 60]).unwrap();
    }
    let shown = env.ok_rt(&rt, &["vm", "show", "lr", "--json"]).json();
    assert_eq!(shown["state"], "stopped", "stopped, not failed: {shown}");
    assert!(shown["last_error"].is_null(), "a reboot is no error: {shown}");
    assert!(env.log().contains("the host restarted since VM lr started"), "says why: {}", env.log());
    let started = env.ok_rt(&rt, &["vm", "start", "lr", "--json"]).json();
    let out = env.ok_rt(&rt, &["vm", "ssh", "lr", "--", "cat /root/data"]).stdout();
    assert_eq!(out, "kept\n", "data intact after the reboot");
    banger_testkit::report(
        "Host reboot",
        "VMM killed, TAP deleted, rules flushed, VM started before the host's boot time",
        "VM shown stopped (no error, reason given); starts again with its data",
    );

    // And it stops cleanly, releasing everything.
    let stopped = env.ok_rt(&rt, &["vm", "stop", "lr", "--json"]).json();
    assert_eq!(stopped["state"], "stopped");
    assert!(wait_gone(started["pid"].as_i64().unwrap() as i32, Duration::from_secs(10)));
    assert!(rules(&vm.prefix).is_empty(), "rules released: {:?}", rules(&vm.prefix));
}

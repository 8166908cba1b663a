//! Many CLIs at once against one daemon: 50 parallel `vm create --no-start` all succeed with
//! distinct names and addresses; conflicting changes to one VM — one wins at a time, the others
//! get a clear conflict (exit 4), rows stay whole; 50 parallel deletes leave nothing.
//!
//! Needs a runtime bundle (`BANGER_TEST_RUNTIME`; `make test` sets it) — no VM boots; skipped
//! loudly otherwise — unless `BANGER_E2E_REQUIRED=1`, when that is a failure.

mod common;

use common::*;
use std::collections::BTreeSet;
use std::process::Child;

fn wait_all(children: Vec<Child>) -> Vec<Out> {
    children.into_iter().map(|c| Out(c.wait_with_output().unwrap())).collect()
}

#[test]
fn fifty_parallel_creates_conflicting_sets_and_parallel_deletes() {
    let Some(rt) = e2e_runtime("concurrency", None) else { return };
    let env = Env::new();
    env.write_config("subnet = \"10.213.228.0/24\"\nvmm = \"qemu\"\n");
    env.ok_rt(&rt, &["daemon", "status"]);
    let spawn = |args: &[&str]| {
        env.banger(args)
            .env("BANGER_RUNTIME_DIR", &rt)
            .stdout(std::process::Stdio::piped())
            .stderr(std::process::Stdio::piped())
            .spawn()
            .unwrap()
    };
    let names: Vec<String> = (0..50).map(|i| format!("par-{i:02}")).collect();
    let _leftovers =
        Leftovers { env: &env, rt: &rt, vms: &names.iter().map(String::as_str).collect::<Vec<_>>(), images: &[] };

    let creates: Vec<Child> = names
        .iter()
        .map(|n| spawn(&["vm", "create", "--name", n, "--no-start", "--disk-size", "64M", "--json"]))
        .collect();
    let outs = wait_all(creates);
    for (n, o) in names.iter().zip(&outs) {
        assert_eq!(o.code(), 0, "create {n}: {}", o.stderr());
    }
    let ips: BTreeSet<String> = outs.iter().map(|o| o.json()["ip"].as_str().unwrap().to_string()).collect();
    let taps: BTreeSet<String> = outs.iter().map(|o| o.json()["tap"].as_str().unwrap().to_string()).collect();
    assert_eq!((ips.len(), taps.len()), (50, 50), "distinct addresses and TAPs");
    banger_testkit::report(
        "Concurrency",
        "50 parallel `vm create --no-start`",
        "all succeeded with 50 distinct addresses and TAPs",
    );
    let list = env.ok_rt(&rt, &["vm", "list", "--json"]).json();
    assert_eq!(list["vms"].as_array().unwrap().len(), 50);

    // Ten conflicting changes to one VM at once: each either applies whole or is refused as a
    // conflict; the row ends as one of them.
    let sets: Vec<Child> = (0..10)
        .map(|i| {
            spawn(&["vm", "set", "par-00", "--memory", &(512 + i * 64).to_string(), "--vcpu", &(1 + i % 4).to_string()])
        })
        .collect();
    let outs = wait_all(sets);
    let mut applied = 0;
    for o in &outs {
        match o.code() {
            0 => applied += 1,
            4 => assert!(o.stderr().contains("in progress"), "a conflict says why: {}", o.stderr()),
            other => panic!("exit {other}: {}", o.stderr()),
        }
    }
    assert!(applied >= 1, "one of them wins");
    let vm = env.ok_rt(&rt, &["vm", "show", "par-00", "--json"]).json();
    let (mem, cpus) = (vm["memory_mib"].as_u64().unwrap(), vm["vcpus"].as_u64().unwrap());
    let i = (mem - 512) / 64;
    assert!(mem >= 512 && (mem - 512) % 64 == 0 && i < 10, "{vm}");
    assert_eq!(cpus, 1 + i % 4, "memory and vCPUs come from the same request: {vm}");
    banger_testkit::report(
        "Concurrency",
        "10 conflicting `vm set` on one VM at once",
        &format!("{applied} applied whole, {} refused as a conflict (exit 4); the row is one request's", 10 - applied),
    );

    // Fifty deletes at once, plus a second delete of each half: every VM goes exactly once.
    let mut deletes: Vec<Child> = names.iter().map(|n| spawn(&["vm", "delete", n])).collect();
    deletes.extend(names.iter().take(25).map(|n| spawn(&["vm", "delete", n])));
    let outs = wait_all(deletes);
    let ok = outs.iter().filter(|o| o.code() == 0).count();
    assert_eq!(ok, 50, "each VM deleted once");
    for o in outs.iter().filter(|o| o.code() != 0) {
        assert!(matches!(o.code(), 3 | 4), "not found or in progress: {}", o.stderr());
    }
    let list = env.ok_rt(&rt, &["vm", "list", "--json"]).json();
    assert_eq!(list["vms"].as_array().unwrap().len(), 0);
    let left: Vec<_> =
        std::fs::read_dir(env.state_dir().join("vms")).map(|d| d.flatten().collect()).unwrap_or_default();
    assert!(left.is_empty(), "no VM directory left: {left:?}");
    banger_testkit::report(
        "Concurrency",
        "75 parallel `vm delete` of 50 VMs",
        "each VM deleted exactly once, the others not found or in progress; nothing left",
    );
}

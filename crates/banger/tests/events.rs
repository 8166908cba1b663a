//! The event stream through the real binaries, without root or a guest: `vm create --no-start`
//! and `vm delete` on a stand-in runtime dir are real lifecycle changes. `banger events --json`
//! and `banger vm list --watch --json` must see them, and keep following across a daemon restart.

mod common;

use common::*;
use std::time::{Duration, Instant};

const T: Duration = Duration::from_secs(15);

fn names(list: &serde_json::Value) -> Vec<String> {
    list["vms"].as_array().unwrap().iter().map(|v| v["name"].as_str().unwrap().to_string()).collect()
}

#[test]
fn events_and_watch_follow_changes_across_a_daemon_restart() {
    let env = Env::new();
    env.write_config("subnet = \"10.213.201.0/24\"\n");
    // Stand-ins for the bundle's files: enough to register VMs (their disks are real).
    let rt = env.path("rt");
    std::fs::create_dir_all(&rt).unwrap();
    for f in ["vmlinux", "initrd.img", "id_ed25519"] {
        std::fs::write(rt.join(f), "stand-in").unwrap();
    }
    std::fs::File::create(rt.join("rootfs.ext4")).unwrap().set_len(4 << 20).unwrap();
    let run = |args: &[&str]| {
        let out = Out(env.banger(args).env("BANGER_RUNTIME_DIR", &rt).output().unwrap());
        env.note_started(&out.stderr());
        out
    };
    assert_eq!(run(&["daemon", "status"]).code(), 0);
    let events = Follower::start(&env, &rt, &["events", "--json", "--since", "0"]);
    let watch = Follower::start(&env, &rt, &["vm", "list", "--watch", "--json"]);
    watch.wait_for(|l| l["vms"].is_array(), T);

    let create = |name: &str| {
        let out = run(&["vm", "create", "--name", name, "--image", "base", "--no-start", "--disk-size", "64M"]);
        assert_eq!(out.code(), 0, "{}", out.stderr());
    };
    create("one");
    events.wait_for(|e| e["event"] == "created" && e["vm"] == "one", T);
    watch.wait_for(|l| names(l) == ["one"], T);
    assert_eq!(run(&["vm", "delete", "one"]).code(), 0);
    events.wait_for(|e| e["event"] == "deleted" && e["vm"] == "one", T);
    // Lists print in order: an empty one after the one with `one`.
    let deadline = Instant::now() + Duration::from_secs(15);
    loop {
        let lists: Vec<Vec<String>> = watch.lines().iter().map(names).collect();
        let after = lists.iter().position(|n| n == &["one"]).map(|i| lists[i + 1..].iter().any(Vec::is_empty));
        if after == Some(true) {
            break;
        }
        assert!(Instant::now() < deadline, "never saw the list without one: {lists:?}");
        std::thread::sleep(Duration::from_millis(20));
    }

    // The daemon goes away and comes back: both keep following.
    assert_eq!(run(&["daemon", "stop"]).code(), 0);
    std::thread::sleep(Duration::from_millis(500));
    assert_eq!(run(&["daemon", "status"]).code(), 0);
    create("two");
    events.wait_for(|e| e["event"] == "resync", T);
    events.wait_for(|e| e["event"] == "created" && e["vm"] == "two", T);
    watch.wait_for(|l| names(l) == ["two"], T);

    let seqs: Vec<u64> = events.lines().iter().map(|e| e["seq"].as_u64().unwrap()).collect();
    assert!(seqs.windows(2).all(|w| w[0] < w[1]), "sequence numbers must increase across the restart: {seqs:?}");
    assert_eq!(run(&["vm", "delete", "two"]).code(), 0);
}

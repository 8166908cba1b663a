//! `vm stats`, `vm set`, NAT on a running VM and `.vm` DNS against real guests: the real
//! binaries and runtime bundle, QEMU (TCG here) booting two VMs (three boots in all), real TAPs,
//! real iptables rules, real DNS queries with `dig`, and an "outside" TCP server in a network
//! namespace behind a veth — no test traffic leaves the machine.
//!
//! Needs root and a runtime bundle (`BANGER_TEST_RUNTIME`; `make test` sets it); skipped loudly
//! otherwise — unless `BANGER_E2E_REQUIRED=1`, when that is a failure.

mod common;

use common::*;
use std::net::{Ipv4Addr, UdpSocket};
use std::path::PathBuf;
use std::time::{Duration, Instant};

fn runtime() -> Option<PathBuf> {
    let no_dig = which("dig").is_none();
    e2e_runtime("vm_features", no_dig.then_some("needs dig (Debian package dnsutils; `make test` installs it)"))
}

/// A stand-in for the host's upstream resolver: answers every A question with 192.0.2.77.
fn fake_upstream() -> std::net::SocketAddr {
    use hickory_proto::op::{Message, OpCode};
    use hickory_proto::rr::rdata::A;
    use hickory_proto::rr::{RData, Record};
    let sock = UdpSocket::bind("127.0.0.1:0").unwrap();
    let addr = sock.local_addr().unwrap();
    std::thread::spawn(move || {
        let mut buf = [0u8; 1500];
        while let Ok((n, peer)) = sock.recv_from(&mut buf) {
            let Ok(q) = Message::from_vec(&buf[..n]) else { continue };
            let mut reply = Message::response(q.metadata.id, OpCode::Query);
            reply.metadata.recursion_desired = q.metadata.recursion_desired;
            reply.metadata.recursion_available = true;
            reply.queries = q.queries.clone();
            if let Some(question) = q.queries.first() {
                reply.add_answer(Record::from_rdata(question.name.clone(), 60, RData::A(A(UPSTREAM_ANSWER))));
            }
            let _ = sock.send_to(&reply.to_vec().unwrap(), peer);
        }
    });
    addr
}

const UPSTREAM_ANSWER: Ipv4Addr = Ipv4Addr::new(192, 0, 2, 77);

#[test]
fn stats_set_nat_and_dns_against_real_guests() {
    let Some(rt) = runtime() else { return };
    let env = Env::new();
    let upstream = fake_upstream();
    env.write_config(&format!(
        "subnet = \"10.213.201.0/24\"\nvmm = \"qemu\"\ndns_upstream = [\"{upstream}\"]\ndefault_memory = 512\n"
    ));
    let run = |args: &[&str]| env.run_rt(&rt, args);
    let _leftovers = Leftovers { env: &env, rt: &rt, vms: &["fa", "fb"], images: &[] };
    let ok = |args: &[&str]| env.ok_rt(&rt, args);
    let a = ok(&["vm", "create", "--name", "fa", "--image", "base", "--disk-size", "256M", "--json"]).json();
    let b = ok(&["vm", "create", "--name", "fb", "--image", "base", "--disk-size", "128M", "--json"]).json();
    let (a_ip, b_ip) = (a["ip"].as_str().unwrap().to_string(), b["ip"].as_str().unwrap().to_string());
    let prefix = a["tap"].as_str().unwrap().trim_end_matches(char::is_numeric).to_string();

    // DNS from the host: running VMs by name, NXDOMAIN for unknown names, no answer for others.
    let dns = ok(&["dns", "status", "--json"]).json();
    let listen = dns["listen"].as_str().expect("bangerd answers on loopback").to_string();
    assert!(listen.starts_with("127.0.0.1:"), "{dns}");
    assert_eq!(dig(&listen, "fa.vm"), ("NOERROR".into(), vec![a_ip.clone()]));
    assert_eq!(dig(&listen, "FB.vm."), ("NOERROR".into(), vec![b_ip.clone()]));
    assert_eq!(dig(&listen, "nope.vm").0, "NXDOMAIN");
    assert_eq!(dig(&listen, "example.com"), ("REFUSED".into(), vec![]), "not an open resolver");
    let status = ok(&["daemon", "status", "--json"]).json();
    assert_eq!(status["dns"]["listen"], listen.as_str());
    // Wiring the host's resolver: systemd-resolved when it runs (then undone), else the lines.
    let setup = ok(&["dns", "setup"]).stdout();
    let port = listen.rsplit_once(':').unwrap().1;
    if setup.contains("systemd-resolved now sends .vm") {
        let q = std::process::Command::new("resolvectl").args(["query", "fa.vm"]).output().unwrap();
        assert!(String::from_utf8_lossy(&q.stdout).contains(&a_ip), "{q:?}");
        ok(&["dns", "setup", "--undo"]);
    } else {
        assert!(setup.contains(&format!("server=/vm/127.0.0.1#{port}")), "{setup}");
    }

    // From inside a guest: the other VM by name, and a name only the upstream knows.
    let getent = |name: &str| ok(&["vm", "ssh", "fa", "--", "getent", "hosts", name]).stdout();
    assert!(getent("fb.vm").starts_with(&format!("{b_ip} ")), "{}", getent("fb.vm"));
    assert!(getent("upstream.example").starts_with(&UPSTREAM_ANSWER.to_string()));

    // Stats of a running VM: host, guest, network, disks.
    let s = ok(&["vm", "stats", "fa", "--json"]).json();
    assert_eq!(s["state"], "running");
    assert_eq!(s["process"]["pid"], a["pid"]);
    assert!(s["process"]["rss_bytes"].as_u64().unwrap() > 50 << 20, "{s}");
    let g = &s["guest"];
    assert!(g["mem_total"].as_u64().unwrap() > 300 << 20 && g["mem_total"].as_u64().unwrap() <= 512 << 20, "{s}");
    let fs = g["filesystems"].as_array().unwrap();
    assert_eq!(fs.iter().map(|f| f["mount"].as_str().unwrap()).collect::<Vec<_>>(), ["/", "/root"]);
    let root_size = fs[1]["size"].as_u64().unwrap();
    assert!(root_size > 200 << 20 && root_size < 256 << 20, "{s}");
    assert!(s["network"]["rx_packets"].as_u64().unwrap() > 10, "ssh traffic went into the guest: {s}");
    assert!(s["network"]["tx_bytes"].as_u64().unwrap() > 1000, "{s}");
    assert_eq!(s["disks"].as_array().unwrap().len(), 3);
    let human = ok(&["vm", "stats", "fa"]).stdout();
    assert!(human.contains("fs /root:") && human.contains("network:"), "{human}");

    // NAT on the running VM: an outside server is unreachable, reachable right after `vm set
    // --nat` (it sees the host's address), unreachable again after `--no-nat`.
    {
        let ns = format!("bgt{}", std::process::id());
        let server = Ipv4Addr::new(10, 213, 202, 2);
        let argv: Vec<std::ffi::OsString> =
            vec![banger_bin().into(), "internal".into(), "peer-echo".into(), format!("{server}:8080").into()];
        let outside =
            banger_net::outside::Outside::create(&ns, &format!("{ns}h"), Ipv4Addr::new(10, 213, 202, 1), 8080, &argv)
                .expect("the outside namespace");
        let reach = || {
            // One string: ssh hands the remote shell its arguments joined by spaces.
            run(&["vm", "ssh", "fa", "--", "timeout 5 bash -c 'exec 3<>/dev/tcp/10.213.202.2/8080 && head -1 <&3'"])
        };
        let before = reach();
        assert_eq!(before.code(), 124, "reachable without NAT, or another failure: {}", before.stderr());
        ok(&["vm", "set", "fa", "--nat"]);
        let t0 = Instant::now();
        let seen = reach();
        assert_eq!(seen.code(), 0, "unreachable right after vm set --nat: {}", seen.stderr());
        assert_eq!(seen.stdout().trim(), outside.host_ip().to_string(), "the server sees the host's address");
        eprintln!(
            "vm set --nat → reached the outside server from the guest in {:?} (ssh round trip included)",
            t0.elapsed()
        );
        assert_eq!(ok(&["vm", "show", "fa", "--json"]).json()["nat"], true);
        ok(&["vm", "set", "fa", "--no-nat"]);
        let after = reach();
        assert_eq!(after.code(), 124, "still reachable after --no-nat, or another failure: {}", after.stderr());
    }

    // vm set on a stopped VM: memory and a bigger /root, files intact; refused while running.
    ok(&["vm", "ssh", "fa", "--", "echo kept > /root/kept.txt && sync"]);
    let refused = run(&["vm", "set", "fa", "--memory", "768"]);
    assert_eq!(refused.code(), 4, "{}", refused.stderr());
    assert!(refused.stderr().contains("banger vm stop fa"), "{}", refused.stderr());
    ok(&["vm", "stop", "fa"]);
    assert_eq!(dig_until(&listen, "fa.vm", "NXDOMAIN").0, "NXDOMAIN", "a stopped VM has no name");
    assert_eq!(run(&["vm", "set", "fa", "--disk-size", "128M"]).code(), 2, "shrinking is refused");
    let events = Follower::start(&env, &rt, &["events", "--json"]);
    let set = ok(&["vm", "set", "fa", "--memory", "768", "--disk-size", "512M", "--json"]).json();
    assert_eq!((set["memory_mib"].as_u64(), set["disk_size"].as_u64()), (Some(768), Some(512 << 20)));
    let (_, changed) = events.wait_for(|e| e["event"] == "changed" && e["vm"] == "fa", Duration::from_secs(10));
    assert_eq!(changed["fields"], serde_json::json!({"memory_mib": 768, "disk_size": 512u64 << 20}));
    drop(events);
    ok(&["vm", "start", "fa"]);
    assert_eq!(dig_until(&listen, "fa.vm", "NOERROR"), ("NOERROR".into(), vec![a_ip.clone()]), "resolves again");
    assert_eq!(ok(&["vm", "ssh", "fa", "--", "cat", "/root/kept.txt"]).stdout(), "kept\n");
    let g = ok(&["vm", "stats", "fa", "--json"]).json()["guest"].clone();
    let grown = g["filesystems"][1]["size"].as_u64().unwrap();
    assert!(grown > root_size + (200 << 20), "/root grew: {root_size} → {grown}");
    assert!(g["mem_total"].as_u64().unwrap() > 600 << 20, "{g}");

    // Delete: names go, and nothing of ours is left on the host.
    ok(&["vm", "delete", "--force", "fb"]);
    assert_eq!(dig_until(&listen, "fb.vm", "NXDOMAIN").0, "NXDOMAIN");
    ok(&["vm", "delete", "--force", "fa"]);
    assert_eq!(dig_until(&listen, "fa.vm", "NXDOMAIN").0, "NXDOMAIN");
    // Whichever iptables back end banger picked.
    for save in ["iptables-nft-save", "iptables-legacy-save"] {
        let Ok(rules) = std::process::Command::new(save).output() else { continue };
        let rules = String::from_utf8_lossy(&rules.stdout).into_owned();
        assert!(!rules.contains(&format!("banger:{prefix}")), "leftover rules ({save}):\n{rules}");
    }
    assert!(banger_net::tap::list(&prefix).is_empty(), "leftover TAPs");
    ok(&["daemon", "stop"]);
}

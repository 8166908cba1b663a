//! Real NAT rules in network namespaces this test creates (and removes):
//!
//! ```text
//! [guest ns] veth 10.213.7.2/30 ── TAP-named veth 10.213.7.1/30 [router ns] 10.213.9.1/30 ── 10.213.9.2/30 [server ns]
//! ```
//! The server has no route back to the guest's /30, so the guest reaches it only when the router
//! masquerades and forwards: exactly what `Firewall::enable_nat` must set up.

use banger_net::firewall::Firewall;
use std::net::Ipv4Addr;
use std::process::Command;

fn is_root() -> bool {
    Command::new("id").arg("-u").output().map(|o| o.stdout == b"0\n").unwrap_or(false)
}

fn ip(args: &[&str]) {
    let out = Command::new("ip").args(args).output().unwrap();
    assert!(out.status.success(), "ip {}: {}", args.join(" "), String::from_utf8_lossy(&out.stderr));
}

fn ns_ok(ns: &str, args: &[&str]) -> bool {
    Command::new("ip").args(["netns", "exec", ns]).args(args).output().map(|o| o.status.success()).unwrap_or(false)
}

struct Namespaces(Vec<String>);

impl Drop for Namespaces {
    fn drop(&mut self) {
        for ns in &self.0 {
            let _ = Command::new("ip").args(["netns", "del", ns]).output();
        }
    }
}

#[test]
fn masquerade_and_forward_let_the_guest_reach_a_server_and_removal_undoes_it() {
    if !is_root() {
        eprintln!("SKIP masquerade_and_forward…: needs root to create network namespaces");
        return;
    }
    let id = std::process::id() % 10000;
    let (guest, router, server) = (format!("bgt{id}g"), format!("bgt{id}r"), format!("bgt{id}s"));
    let _cleanup = Namespaces(vec![guest.clone(), router.clone(), server.clone()]);
    for ns in [&guest, &router, &server] {
        ip(&["netns", "add", ns]);
    }
    let tap = format!("bgt{id}tap");
    ip(&["link", "add", "g0", "netns", &guest, "type", "veth", "peer", "name", &tap, "netns", &router]);
    ip(&["link", "add", "up0", "netns", &router, "type", "veth", "peer", "name", "s0", "netns", &server]);
    let conf = |ns: &str, args: &[&str]| {
        let mut all = vec!["netns", "exec", ns, "ip"];
        all.extend_from_slice(args);
        ip(&all);
    };
    conf(&guest, &["addr", "add", "10.213.7.2/30", "dev", "g0"]);
    conf(&guest, &["link", "set", "g0", "up"]);
    conf(&guest, &["route", "add", "default", "via", "10.213.7.1"]);
    conf(&router, &["addr", "add", "10.213.7.1/30", "dev", &tap]);
    conf(&router, &["link", "set", &tap, "up"]);
    conf(&router, &["addr", "add", "10.213.9.1/30", "dev", "up0"]);
    conf(&router, &["link", "set", "up0", "up"]);
    conf(&server, &["addr", "add", "10.213.9.2/30", "dev", "s0"]);
    conf(&server, &["link", "set", "s0", "up"]);
    let ping = || ns_ok(&guest, &["ping", "-c", "1", "-W", "1", "10.213.9.2"]);

    let fw = Firewall::in_netns(&router);
    let guest_ip = Ipv4Addr::new(10, 213, 7, 2);
    // Positive control: the directly connected router answers (so ping itself works).
    assert!(ns_ok(&guest, &["ping", "-c", "1", "-W", "1", "10.213.7.1"]), "ping inside the guest namespace fails");
    assert!(!ping(), "the server must be unreachable before NAT");
    fw.enable_nat("t1:calm-otter", &tap, guest_ip).unwrap();
    assert!(ping(), "guest cannot reach the server through NAT");
    // Idempotent: enabling again adds nothing.
    fw.enable_nat("t1:calm-otter", &tap, guest_ip).unwrap();
    let rules = fw.tagged("t1:").unwrap();
    assert_eq!(rules.len(), 3, "{rules:#?}");
    assert!(rules.iter().any(|r| r.contains("MASQUERADE") && r.contains("10.213.7.2/32")), "{rules:#?}");

    fw.disable_nat("t1:calm-otter", &tap, guest_ip).unwrap();
    assert!(fw.tagged("t1:").unwrap().is_empty());
    // Conntrack may keep the old flow; a fresh ping id still needs the (now gone) masquerade.
    let _ = Command::new("ip").args(["netns", "exec", &router, "conntrack", "-F"]).output();
    assert!(!ping(), "the server is still reachable after NAT was removed");

    // Crash leftovers: rules of VMs that no longer exist go, the kept one stays.
    fw.enable_nat("t1:a", &tap, guest_ip).unwrap();
    fw.enable_nat("t1:b", &tap, Ipv4Addr::new(10, 213, 7, 6)).unwrap();
    let removed = fw.remove_stale("t1:", &["t1:a".to_string()]).unwrap();
    assert_eq!(removed, 3);
    let left = fw.tagged("t1:").unwrap();
    assert_eq!(left.len(), 3);
    assert!(left.iter().all(|r| r.contains("banger:t1:a")), "{left:#?}");
}

//! Real NAT rules in network namespaces this test creates (and removes):
//!
//! ```text
//! [guest ns] veth 10.213.7.2/30 ── TAP-named veth 10.213.7.1/30 [router ns] 10.213.9.1/30 ── 10.213.9.2/30 [server ns]
//! ```
//! The server has no route back to the guest's /30, so the guest reaches it only when the router
//! masquerades and forwards: exactly what `Firewall::enable_nat` must set up.

mod support;

use banger_net::firewall::Firewall;
use std::net::Ipv4Addr;
use std::process::Command;
use support::{Namespaces, link, ns_ip, ns_ok, root_or_skip, unique};

#[test]
fn masquerade_and_forward_let_the_guest_reach_a_server_and_removal_undoes_it() {
    if !root_or_skip("masquerade_and_forward_let_the_guest_reach_a_server_and_removal_undoes_it") {
        return;
    }
    let mut namespaces = Namespaces::new();
    let guest = namespaces.add(&unique("natg"));
    let router = namespaces.add(&unique("natr"));
    let server = namespaces.add(&unique("nats"));
    let tap = unique("natt");
    link(&guest, "g0", "10.213.7.2/30", &router, &tap, "10.213.7.1/30");
    link(&router, "up0", "10.213.9.1/30", &server, "s0", "10.213.9.2/30");
    ns_ip(&guest, &["route", "add", "default", "via", "10.213.7.1"]);
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

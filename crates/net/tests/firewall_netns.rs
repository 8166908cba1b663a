//! Real firewall rules, with both iptables back ends, in network namespaces these tests create
//! (and remove, with everything in them, even when a test fails).
//!
//! The Docker-like world:
//!
//! ```text
//! [guest] G 10.213.7.2/30 ── T 10.213.7.1/30 [host] U 10.213.9.1/30 ── O 10.213.9.2/30 [outside]
//! ```
//! The guest plays the VM (T stands for its TAP: a veth here, the rules do not care) with its
//! default route via the host. The host runs the firewall and looks like a host with Docker on it:
//! FORWARD and INPUT policies DROP, `-j DOCKER-USER` and `-j DOCKER-FORWARD` at the top of
//! FORWARD, and in DOCKER-USER a user's rule that drops what arrives from the outside interface.
//! The outside has no route back to the guest's /30, so the guest reaches it only masqueraded.

mod support;

use banger_net::firewall::{Backend, Firewall};
use std::io::ErrorKind;
use std::net::{Ipv4Addr, SocketAddr, SocketAddrV4, TcpListener, TcpStream, UdpSocket};
use std::time::{Duration, Instant};
use support::{Namespaces, in_ns, legacy_or_skip, link, ns_ip, ns_must, ns_run, root_or_skip, unique};

const GUEST: Ipv4Addr = Ipv4Addr::new(10, 213, 7, 2);
const HOST_TAP: Ipv4Addr = Ipv4Addr::new(10, 213, 7, 1);
const HOST_OUT: Ipv4Addr = Ipv4Addr::new(10, 213, 9, 1);
const OUTSIDE: Ipv4Addr = Ipv4Addr::new(10, 213, 9, 2);
/// Where the "daemon's resolver" listens on the host side (unprivileged).
const RESOLVER_PORT: u16 = 10053;
const WAIT: Duration = Duration::from_secs(1);

fn program(backend: Backend) -> &'static str {
    match backend {
        Backend::Nft => "iptables-nft",
        Backend::Legacy => "iptables-legacy",
    }
}

fn other(backend: Backend) -> Backend {
    match backend {
        Backend::Nft => Backend::Legacy,
        Backend::Legacy => Backend::Nft,
    }
}

/// `iptables-VARIANT -w ARGS` inside `ns`; it must succeed.
fn ipt(ns: &str, backend: Backend, args: &[&str]) -> String {
    ns_must(ns, &[&[program(backend), "-w"], args].concat())
}

/// The rule lines (`-A …`) of `backend` in `ns`, all tables.
fn rule_lines(ns: &str, backend: Backend) -> Vec<String> {
    let out = ns_run(ns, &[&format!("{}-save", program(backend))]);
    String::from_utf8_lossy(&out.stdout).lines().filter(|l| l.starts_with("-A ")).map(str::to_string).collect()
}

fn ours(lines: &[String]) -> Vec<&String> {
    lines.iter().filter(|l| l.contains("banger:")).collect()
}

/// The Docker-like world (its namespaces, and so everything in them, go when it is dropped).
struct World {
    _namespaces: Namespaces,
    guest: String,
    host: String,
    outside: String,
    tap: String,
    up: String,
    backend: Backend,
}

impl World {
    /// Build the Docker-like world with Docker's rules in `backend`; None (after a SKIP line)
    /// when that back end does not work here.
    fn build(what: &str, backend: Backend, case: &str) -> Option<World> {
        let mut namespaces = Namespaces::new();
        let guest = namespaces.add(&unique(&format!("{what}g")));
        let host = namespaces.add(&unique(&format!("{what}h")));
        let outside = namespaces.add(&unique(&format!("{what}o")));
        if backend == Backend::Legacy && !legacy_or_skip(&host, case) {
            return None;
        }
        let (gv, tap, up, ov) = (
            unique(&format!("{what}G")),
            unique(&format!("{what}T")),
            unique(&format!("{what}U")),
            unique(&format!("{what}O")),
        );
        link(&guest, &gv, "10.213.7.2/30", &host, &tap, "10.213.7.1/30");
        link(&host, &up, "10.213.9.1/30", &outside, &ov, "10.213.9.2/30");
        ns_ip(&guest, &["route", "add", "default", "via", "10.213.7.1"]);
        let w = World { _namespaces: namespaces, guest, host, outside, tap, up, backend };
        let h = |args: &[&str]| ipt(&w.host, backend, args);
        // A strict host…
        h(&["-P", "INPUT", "DROP"]);
        h(&["-A", "INPUT", "-i", "lo", "-j", "ACCEPT"]);
        // …with Docker: FORWARD policy DROP, its chains first in FORWARD, DOCKER-USER ending in
        // RETURN, and the user's rule there keeping the outside interface out.
        h(&["-P", "FORWARD", "DROP"]);
        h(&["-N", "DOCKER-USER"]);
        h(&["-A", "DOCKER-USER", "-i", &w.up, "!", "-s", "10.213.9.99/32", "-j", "DROP"]);
        h(&["-A", "DOCKER-USER", "-j", "RETURN"]);
        h(&["-N", "DOCKER-FORWARD"]);
        h(&["-A", "DOCKER-FORWARD", "-i", "docker0", "-j", "ACCEPT"]);
        h(&[
            "-A",
            "DOCKER-FORWARD",
            "-o",
            "docker0",
            "-m",
            "conntrack",
            "--ctstate",
            "RELATED,ESTABLISHED",
            "-j",
            "ACCEPT",
        ]);
        h(&["-I", "FORWARD", "1", "-j", "DOCKER-FORWARD"]);
        h(&["-I", "FORWARD", "1", "-j", "DOCKER-USER"]);
        h(&["-t", "nat", "-N", "DOCKER"]);
        h(&["-t", "nat", "-A", "DOCKER", "-i", "docker0", "-j", "RETURN"]);
        h(&["-t", "nat", "-A", "PREROUTING", "-m", "addrtype", "--dst-type", "LOCAL", "-j", "DOCKER"]);
        h(&["-t", "nat", "-A", "POSTROUTING", "-s", "172.17.0.0/16", "!", "-o", "docker0", "-j", "MASQUERADE"]);
        Some(w)
    }

    /// What Docker (and the strict host) set up: every chain, policy and rule but ours.
    fn docker_state(&self) -> Vec<String> {
        let mut all = Vec::new();
        for table in ["filter", "nat"] {
            let out = ipt(&self.host, self.backend, &["-t", table, "-S"]);
            all.extend(out.lines().filter(|l| !l.contains("banger:")).map(|l| format!("{table} {l}")));
        }
        all
    }

    /// Docker restarting: its jumps go back to the top of FORWARD (above ours).
    fn docker_restarts(&self) {
        let h = |args: &[&str]| ipt(&self.host, self.backend, args);
        for chain in ["DOCKER-FORWARD", "DOCKER-USER"] {
            h(&["-D", "FORWARD", "-j", chain]);
            h(&["-I", "FORWARD", "1", "-j", chain]);
        }
    }

    /// A TCP connection from the guest to `to` (None when it cannot be made within a second).
    fn guest_connects(&self, to: SocketAddrV4) -> Option<TcpStream> {
        in_ns(&self.guest, move || TcpStream::connect_timeout(&SocketAddr::V4(to), WAIT).ok())
    }
}

fn listen_tcp(ns: &str, at: SocketAddrV4) -> TcpListener {
    let l = in_ns(ns, move || TcpListener::bind(at)).unwrap();
    l.set_nonblocking(true).unwrap();
    l
}

/// The peer of the next connection `l` accepts (None when none comes within a second).
fn accept(l: &TcpListener) -> Option<SocketAddr> {
    let deadline = Instant::now() + WAIT;
    loop {
        match l.accept() {
            Ok((_, peer)) => return Some(peer),
            Err(e) if e.kind() == ErrorKind::WouldBlock && Instant::now() < deadline => {
                std::thread::sleep(Duration::from_millis(10))
            }
            Err(_) => return None,
        }
    }
}

#[test]
fn with_either_back_end_nat_is_idempotent_listed_and_removed_without_touching_foreign_rules() {
    let case = "with_either_back_end_nat_is_idempotent_listed_and_removed_without_touching_foreign_rules";
    if !root_or_skip(case) {
        return;
    }
    let mut namespaces = Namespaces::new();
    for backend in [Backend::Nft, Backend::Legacy] {
        let ns = namespaces.add(&unique(&format!("b{backend}")));
        if backend == Backend::Legacy && !legacy_or_skip(&ns, &format!("{case} (legacy)")) {
            continue;
        }
        ipt(&ns, backend, &["-A", "FORWARD", "-s", "192.0.2.7/32", "-j", "ACCEPT"]);
        ipt(&ns, backend, &["-t", "nat", "-A", "POSTROUTING", "-s", "192.0.2.7/32", "-j", "MASQUERADE"]);
        let before = rule_lines(&ns, backend);
        let fw = Firewall::in_netns(&ns).with_backend(backend);
        assert_eq!(fw.backend(), backend);
        fw.enable_nat("b1:calm-otter", "bgtap0", GUEST).unwrap();
        fw.enable_nat("b1:calm-otter", "bgtap0", GUEST).unwrap();
        let listed = fw.tagged("b1:").unwrap();
        assert_eq!(listed.len(), 3, "{backend}: {listed:#?}");
        assert!(listed.iter().any(|r| r.starts_with("-t nat -A POSTROUTING") && r.contains("10.213.7.2/32")));
        assert_eq!(listed.iter().filter(|r| r.starts_with("-t filter -A FORWARD")).count(), 2, "{listed:#?}");
        let rules = rule_lines(&ns, backend);
        assert_eq!(ours(&rules).len(), 3, "{backend}: {rules:#?}");
        // Forwarding rules come first: a foreign rule must not decide before them.
        let forward: Vec<_> = rules.iter().filter(|r| r.starts_with("-A FORWARD")).collect();
        assert!(forward[0].contains("banger:") && forward[1].contains("banger:"), "{forward:#?}");
        assert!(ours(&rule_lines(&ns, other(backend))).is_empty(), "{backend}: rules went to the other back end");
        assert_eq!(ns_must(&ns, &["sysctl", "-n", "net.ipv4.ip_forward"]).trim(), "1");

        fw.disable_nat("b1:calm-otter", "bgtap0", GUEST).unwrap();
        assert!(fw.tagged("b1:").unwrap().is_empty());
        assert_eq!(rule_lines(&ns, backend), before, "{backend}: foreign rules changed");
        // Removing what is not there is fine.
        fw.disable_nat("b1:calm-otter", "bgtap0", GUEST).unwrap();
    }
}

#[test]
fn the_back_end_with_more_rules_is_detected_once_per_firewall() {
    let case = "the_back_end_with_more_rules_is_detected_once_per_firewall";
    if !root_or_skip(case) {
        return;
    }
    let mut namespaces = Namespaces::new();
    let ns = namespaces.add(&unique("det"));
    if !legacy_or_skip(&ns, case) {
        return;
    }
    let rule = |backend, n: u8| ipt(&ns, backend, &["-A", "FORWARD", "-s", &format!("192.0.2.{n}/32"), "-j", "ACCEPT"]);
    let early = Firewall::in_netns(&ns);
    assert_eq!(early.backend(), Backend::Nft, "no rules anywhere: nft");
    rule(Backend::Legacy, 1);
    assert_eq!(Firewall::in_netns(&ns).backend(), Backend::Legacy, "only legacy has rules");
    assert_eq!(early.backend(), Backend::Nft, "a firewall keeps what it detected");
    rule(Backend::Nft, 1);
    assert_eq!(Firewall::in_netns(&ns).backend(), Backend::Nft, "a tie: nft");
    rule(Backend::Legacy, 2);
    let legacy = Firewall::in_netns(&ns);
    assert_eq!(legacy.backend(), Backend::Legacy, "legacy has more rules");
    legacy.enable_nat("d1:x", "bgtap0", GUEST).unwrap();
    assert_eq!(ours(&rule_lines(&ns, Backend::Legacy)).len(), 3);
    assert!(ours(&rule_lines(&ns, Backend::Nft)).is_empty());
    assert_eq!(Firewall::in_netns(&ns).with_backend(Backend::Nft).backend(), Backend::Nft, "forced");
}

fn nat_in_a_docker_world(backend: Backend) {
    let case = format!("nat_in_a_docker_world ({backend})");
    if !root_or_skip(&case) {
        return;
    }
    let Some(w) = World::build(&format!("n{}", &backend.to_string()[..1]), backend, &case) else { return };
    let server = listen_tcp(&w.outside, SocketAddrV4::new(OUTSIDE, 8080));
    let to = SocketAddrV4::new(OUTSIDE, 8080);
    let docker = w.docker_state();
    // Detection finds Docker's rules.
    let fw = Firewall::in_netns(&w.host);
    assert_eq!(fw.backend(), backend);

    assert!(w.guest_connects(to).is_none(), "{backend}: the guest reaches the outside without NAT");
    fw.enable_nat("w1:calm-otter", &w.tap, GUEST).unwrap();
    fw.enable_nat("w1:calm-otter", &w.tap, GUEST).unwrap();
    let listed = fw.tagged("w1:").unwrap();
    assert_eq!(listed.len(), 5, "{backend}: {listed:#?}");
    let docker_user = ipt(&w.host, backend, &["-S", "DOCKER-USER"]);
    let firsts: Vec<_> = docker_user.lines().skip(1).take(2).collect();
    assert!(firsts.iter().all(|l| l.contains("banger:w1:calm-otter")), "{backend}: {docker_user}");

    let conn = w.guest_connects(to).unwrap_or_else(|| panic!("{backend}: the guest cannot connect through NAT"));
    let peer = accept(&server).expect("the server saw no connection");
    assert_eq!(peer.ip(), HOST_OUT, "{backend}: the server must see the host's outside address (masquerade)");
    drop(conn);

    // Docker restarts and puts its jumps above ours: DOCKER-USER's copies keep the VM online.
    w.docker_restarts();
    let forward = ipt(&w.host, backend, &["-S", "FORWARD"]);
    assert!(forward.lines().nth(1).is_some_and(|l| l == "-A FORWARD -j DOCKER-USER"), "{forward}");
    let conn = w.guest_connects(to).unwrap_or_else(|| panic!("{backend}: no connection after Docker restarted"));
    assert_eq!(accept(&server).map(|p| p.ip()), Some(HOST_OUT.into()));
    drop(conn);

    fw.disable_nat("w1:calm-otter", &w.tap, GUEST).unwrap();
    assert!(fw.tagged("w1:").unwrap().is_empty());
    assert!(w.guest_connects(to).is_none(), "{backend}: the guest still reaches the outside after NAT was removed");
    assert_eq!(w.docker_state(), docker, "{backend}: Docker's chains, jumps or policies changed");
}

#[test]
fn nat_in_a_docker_world_nft() {
    nat_in_a_docker_world(Backend::Nft);
}

#[test]
fn nat_in_a_docker_world_legacy() {
    nat_in_a_docker_world(Backend::Legacy);
}

/// A DNS query over udp from the guest to the host's address on its link, port 53 (a fresh
/// socket each time, so conntrack has no earlier decision for it); true when `resolver` got it
/// and the guest got the answer back from HOST_TAP:53.
fn udp_query(w: &World, resolver: &UdpSocket) -> bool {
    let guest = in_ns(&w.guest, || UdpSocket::bind((Ipv4Addr::UNSPECIFIED, 0))).unwrap();
    guest.set_read_timeout(Some(WAIT)).unwrap();
    guest.send_to(b"query", (HOST_TAP, 53)).unwrap();
    let mut buf = [0u8; 64];
    let Ok((n, from)) = resolver.recv_from(&mut buf) else { return false };
    assert_eq!(&buf[..n], b"query");
    assert_eq!(from.ip(), GUEST);
    resolver.send_to(b"answer", from).unwrap();
    let (n, from) = guest.recv_from(&mut buf).expect("the guest got no answer");
    assert_eq!((&buf[..n], from), (&b"answer"[..], SocketAddr::V4(SocketAddrV4::new(HOST_TAP, 53))));
    true
}

/// The same over tcp: true when the guest's connection to HOST_TAP:53 reaches `resolver`.
fn tcp_query(w: &World, resolver: &TcpListener) -> bool {
    match w.guest_connects(SocketAddrV4::new(HOST_TAP, 53)) {
        Some(_conn) => accept(resolver).is_some_and(|p| p.ip() == GUEST),
        None => false,
    }
}

fn dns_redirect_in_a_docker_world(backend: Backend) {
    let case = format!("dns_redirect_in_a_docker_world ({backend})");
    if !root_or_skip(&case) {
        return;
    }
    let Some(w) = World::build(&format!("d{}", &backend.to_string()[..1]), backend, &case) else { return };
    let at = SocketAddrV4::new(HOST_TAP, RESOLVER_PORT);
    let resolver = in_ns(&w.host, move || UdpSocket::bind(at)).unwrap();
    resolver.set_read_timeout(Some(WAIT)).unwrap();
    let resolver_tcp = listen_tcp(&w.host, at);
    let docker = w.docker_state();
    let fw = Firewall::in_netns(&w.host);
    assert_eq!(fw.backend(), backend);
    let tag = "w2:calm-otter";

    assert!(!udp_query(&w, &resolver), "{backend}: the resolver got a query before the redirect");
    assert!(!tcp_query(&w, &resolver_tcp), "{backend}: the resolver got a tcp query before the redirect");
    fw.enable_dns_redirect(tag, &w.tap, RESOLVER_PORT).unwrap();
    fw.enable_dns_redirect(tag, &w.tap, RESOLVER_PORT).unwrap();
    let dns = fw.tagged("w2:").unwrap();
    assert_eq!(dns.len(), 4, "{backend}: {dns:#?}");
    assert!(udp_query(&w, &resolver), "{backend}: a udp query to port 53 did not reach the resolver");
    assert!(tcp_query(&w, &resolver_tcp), "{backend}: a tcp query to port 53 did not reach the resolver");

    // NAT and the redirect share the tag but not their rules.
    fw.enable_nat(tag, &w.tap, GUEST).unwrap();
    assert_eq!(fw.tagged("w2:").unwrap().len(), 9);
    fw.disable_nat(tag, &w.tap, GUEST).unwrap();
    assert_eq!(fw.tagged("w2:").unwrap(), dns, "{backend}: disable_nat touched the DNS rules");
    assert!(udp_query(&w, &resolver), "{backend}: the redirect stopped working with NAT removed");

    fw.disable_dns_redirect(tag, &w.tap, RESOLVER_PORT).unwrap();
    assert!(fw.tagged("w2:").unwrap().is_empty());
    assert!(!udp_query(&w, &resolver), "{backend}: the resolver still gets udp queries after the redirect went");
    assert!(!tcp_query(&w, &resolver_tcp), "{backend}: the resolver still gets tcp queries after the redirect went");
    assert_eq!(w.docker_state(), docker, "{backend}: Docker's chains, jumps or policies changed");
}

#[test]
fn dns_redirect_in_a_docker_world_nft() {
    dns_redirect_in_a_docker_world(Backend::Nft);
}

#[test]
fn dns_redirect_in_a_docker_world_legacy() {
    dns_redirect_in_a_docker_world(Backend::Legacy);
}

#[test]
fn stale_rules_of_every_shape_go_from_both_back_ends_and_kept_tags_stay() {
    let case = "stale_rules_of_every_shape_go_from_both_back_ends_and_kept_tags_stay";
    if !root_or_skip(case) {
        return;
    }
    let mut namespaces = Namespaces::new();
    let ns = namespaces.add(&unique("stale"));
    // Docker's chain in nf_tables (so detection picks nft), plus foreign rules.
    let nft = |args: &[&str]| ipt(&ns, Backend::Nft, args);
    nft(&["-N", "DOCKER-USER"]);
    nft(&["-A", "DOCKER-USER", "-j", "RETURN"]);
    nft(&["-I", "FORWARD", "1", "-j", "DOCKER-USER"]);
    nft(&["-A", "INPUT", "-s", "192.0.2.7/32", "-j", "ACCEPT"]);
    nft(&["-t", "nat", "-A", "PREROUTING", "-s", "192.0.2.7/32", "-j", "ACCEPT"]);
    let foreign = rule_lines(&ns, Backend::Nft);
    let fw = Firewall::in_netns(&ns);
    assert_eq!(fw.backend(), Backend::Nft);
    for (tag, tap, guest) in [("p:a", "bgtapa", GUEST), ("p:b", "bgtapb", Ipv4Addr::new(10, 213, 7, 6))] {
        fw.enable_nat(tag, tap, guest).unwrap();
        fw.enable_dns_redirect(tag, tap, RESOLVER_PORT).unwrap();
    }
    // Another installation's prefix, which is not ours to clean.
    fw.enable_dns_redirect("q:z", "bgtapz", RESOLVER_PORT).unwrap();
    assert_eq!(fw.tagged("p:").unwrap().len(), 18, "{:#?}", fw.tagged("p:"));
    // Leftovers in the other back end, from a run that detected differently.
    let legacy = legacy_or_skip(&ns, &format!("{case} (the legacy leftovers part)"));
    let in_legacy = Firewall::in_netns(&ns).with_backend(Backend::Legacy);
    if legacy {
        in_legacy.enable_nat("p:c", "bgtapc", Ipv4Addr::new(10, 213, 7, 10)).unwrap();
        in_legacy.enable_dns_redirect("p:c", "bgtapc", RESOLVER_PORT).unwrap();
        assert_eq!(in_legacy.tagged("p:").unwrap().len(), 7);
    }

    let removed = fw.remove_stale("p:", &["p:a".to_string()]).unwrap();
    assert_eq!(removed, if legacy { 9 + 7 } else { 9 });
    let left = fw.tagged("p:").unwrap();
    assert_eq!(left.len(), 9, "{left:#?}");
    assert!(left.iter().all(|r| r.contains("\"banger:p:a\"")), "{left:#?}");
    for chain in ["POSTROUTING", "PREROUTING", "FORWARD", "DOCKER-USER", "INPUT"] {
        assert!(left.iter().any(|r| r.contains(&format!("-A {chain} "))), "p:a lost its {chain} rules: {left:#?}");
    }
    assert_eq!(fw.tagged("q:").unwrap().len(), 4, "another prefix's rules were removed");
    if legacy {
        assert!(in_legacy.tagged("p:").unwrap().is_empty());
    }
    let now = rule_lines(&ns, Backend::Nft);
    assert_eq!(now.iter().filter(|l| !l.contains("banger:")).collect::<Vec<_>>(), foreign.iter().collect::<Vec<_>>());
    assert_eq!(fw.remove_stale("p:", &["p:a".to_string()]).unwrap(), 0);
}

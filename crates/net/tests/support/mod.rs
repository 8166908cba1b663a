//! Helpers for the tests that run real firewall rules in network namespaces they create.
//!
//! Everything a test makes lives inside namespaces named after the test process
//! ([`Namespaces`] deletes them when dropped, even when the test fails), and both iptables rule
//! sets (nf_tables and legacy) are per namespace: deleting a namespace takes its interfaces and
//! rules with it, and nothing outside is touched.
#![allow(dead_code)] // each test binary uses its own part

use std::process::{Command, Output};

/// Whether the test can run: root, or a loud SKIP (a panic when `BANGER_E2E_REQUIRED=1`).
pub fn root_or_skip(test: &str) -> bool {
    if nix::unistd::geteuid().is_root() {
        return true;
    }
    if std::env::var("BANGER_E2E_REQUIRED").as_deref() == Ok("1") {
        panic!("{test}: needs root to create network namespaces, and BANGER_E2E_REQUIRED=1 forbids skipping");
    }
    eprintln!("SKIP {test}: needs root to create network namespaces");
    false
}

/// Whether `iptables-legacy` works in `ns` (installed, and the kernel has x_tables); a loud SKIP
/// line for `case` when it does not.
pub fn legacy_or_skip(ns: &str, case: &str) -> bool {
    let out = Command::new("ip").args(["netns", "exec", ns, "iptables-legacy", "-w", "-S"]).output();
    match out {
        Ok(o) if o.status.success() => true,
        Ok(o) => {
            eprintln!("SKIP {case}: iptables-legacy does not work here: {}", String::from_utf8_lossy(&o.stderr).trim());
            false
        }
        Err(e) => {
            eprintln!("SKIP {case}: cannot run ip netns exec … iptables-legacy: {e}");
            false
        }
    }
}

/// A name unique to this test process (`bg` + pid + `what`), at most 15 bytes so it also fits
/// an interface name.
pub fn unique(what: &str) -> String {
    let name = format!("bg{}{what}", std::process::id() % 100_000);
    assert!(name.len() <= 15, "{name} is too long for an interface name");
    name
}

pub fn ip(args: &[&str]) {
    let out = Command::new("ip").args(args).output().unwrap();
    assert!(out.status.success(), "ip {}: {}", args.join(" "), String::from_utf8_lossy(&out.stderr));
}

/// Run `args` inside `ns`.
pub fn ns_run(ns: &str, args: &[&str]) -> Output {
    Command::new("ip").args(["netns", "exec", ns]).args(args).output().unwrap()
}

/// Run `args` inside `ns`; it must succeed. Returns its stdout.
pub fn ns_must(ns: &str, args: &[&str]) -> String {
    let out = ns_run(ns, args);
    assert!(out.status.success(), "ip netns exec {ns} {}: {}", args.join(" "), String::from_utf8_lossy(&out.stderr));
    String::from_utf8_lossy(&out.stdout).into_owned()
}

pub fn ns_ok(ns: &str, args: &[&str]) -> bool {
    ns_run(ns, args).status.success()
}

/// `ip …` inside `ns`.
pub fn ns_ip(ns: &str, args: &[&str]) {
    ns_must(ns, &[&["ip"], args].concat());
}

/// Run `f` on a thread that has entered `ns`: sockets it creates belong to `ns` for their whole
/// life, whichever thread later uses them.
pub fn in_ns<T: Send + 'static>(ns: &str, f: impl FnOnce() -> T + Send + 'static) -> T {
    let path = format!("/run/netns/{ns}");
    std::thread::spawn(move || {
        let file = std::fs::File::open(&path).unwrap_or_else(|e| panic!("{path}: {e}"));
        nix::sched::setns(&file, nix::sched::CloneFlags::CLONE_NEWNET).unwrap_or_else(|e| panic!("setns {path}: {e}"));
        f()
    })
    .join()
    .unwrap()
}

/// Network namespaces this test created; dropped (with everything in them) when it ends.
pub struct Namespaces(Vec<String>);

impl Namespaces {
    pub fn new() -> Namespaces {
        Namespaces(Vec::new())
    }

    /// Create `name` (and own it from then on).
    pub fn add(&mut self, name: &str) -> String {
        ip(&["netns", "add", name]);
        self.0.push(name.to_string());
        ns_ip(name, &["link", "set", "lo", "up"]);
        name.to_string()
    }
}

impl Drop for Namespaces {
    fn drop(&mut self) {
        for ns in &self.0 {
            let _ = Command::new("ip").args(["netns", "del", ns]).output();
        }
    }
}

/// A veth pair `a` (in `ns_a`, address `addr_a`) ── `b` (in `ns_b`, address `addr_b`), both up.
pub fn link(ns_a: &str, a: &str, addr_a: &str, ns_b: &str, b: &str, addr_b: &str) {
    ip(&["link", "add", a, "netns", ns_a, "type", "veth", "peer", "name", b, "netns", ns_b]);
    ns_ip(ns_a, &["addr", "add", addr_a, "dev", a]);
    ns_ip(ns_a, &["link", "set", a, "up"]);
    ns_ip(ns_b, &["addr", "add", addr_b, "dev", b]);
    ns_ip(ns_b, &["link", "set", b, "up"]);
}

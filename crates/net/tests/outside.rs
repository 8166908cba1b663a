//! The throwaway "outside" network (`banger_net::outside`), for real: a namespace, a veth pair and
//! a TCP server in the namespace, all gone once dropped, and all-or-nothing when the server fails.
//!
//! The server is this test binary itself, run as `env BANGER_OUTSIDE_TEST_SERVE=ADDR <exe> --exact
//! serve_when_asked`: that "test" serves peer addresses on ADDR when the variable is set and is an
//! empty pass otherwise. Root only (a loud SKIP otherwise; BANGER_E2E_REQUIRED=1 makes it a failure).

mod support;

use banger_net::outside::Outside;
use std::ffi::OsString;
use std::io::{BufRead, BufReader, Write};
use std::net::{Ipv4Addr, TcpListener, TcpStream};
use std::process::Command;
use std::time::Duration;
use support::root_or_skip;

const SERVE_VAR: &str = "BANGER_OUTSIDE_TEST_SERVE";

/// Names and a /30 (from 198.19.0.0/16, RFC 2544's never-routed range) for test `n` of this process.
fn unique(n: u32) -> (String, String, Ipv4Addr) {
    let pid = std::process::id();
    let block = (pid * 4 + n) % 16384;
    let host_ip = Ipv4Addr::from(u32::from(Ipv4Addr::new(198, 19, 0, 0)) + block * 4 + 1);
    (format!("banger-ot-{pid}-{n}"), format!("bo{}{n}h", pid % 1_000_000), host_ip)
}

fn serve_argv(addr: &str) -> Vec<OsString> {
    let exe = std::env::current_exe().unwrap();
    vec![
        "env".into(),
        format!("{SERVE_VAR}={addr}").into(),
        exe.into(),
        "--exact".into(),
        "serve_when_asked".into(),
        "--nocapture".into(),
    ]
}

#[test]
fn serve_when_asked() {
    let Ok(addr) = std::env::var(SERVE_VAR) else { return };
    let listener = TcpListener::bind(&addr).unwrap();
    for conn in listener.incoming().flatten() {
        let mut conn = conn;
        let _ = writeln!(conn, "{}", conn.peer_addr().unwrap().ip());
    }
}

fn ns_exists(ns: &str) -> bool {
    let out = Command::new("ip").args(["netns", "list"]).output().unwrap();
    String::from_utf8_lossy(&out.stdout).lines().any(|l| l.split_whitespace().next() == Some(ns))
}

fn link_exists(name: &str) -> bool {
    Command::new("ip").args(["link", "show", "dev", name]).output().unwrap().status.success()
}

fn pid_alive(pid: u32) -> bool {
    std::path::Path::new(&format!("/proc/{pid}")).exists()
}

#[test]
fn outside_serves_across_the_veth_and_leaves_nothing_behind() {
    if !root_or_skip("outside_serves_across_the_veth_and_leaves_nothing_behind") {
        return;
    }
    let (ns, host_if, host_ip) = unique(0);
    let peer = Ipv4Addr::from(u32::from(host_ip) + 1);
    let outside = Outside::create(&ns, &host_if, host_ip, 7007, &serve_argv(&format!("{peer}:7007"))).unwrap();
    assert_eq!(outside.host_ip(), host_ip);
    assert_eq!(outside.server_addr().to_string(), format!("{peer}:7007"));
    assert!(ns_exists(&ns) && link_exists(&host_if));
    // From the host the connection leaves through the veth, so the server sees the host's end.
    let conn = TcpStream::connect_timeout(&outside.server_addr().into(), Duration::from_secs(2)).unwrap();
    let mut line = String::new();
    BufReader::new(conn).read_line(&mut line).unwrap();
    assert_eq!(line.trim(), host_ip.to_string());
    let pid = outside.server_pid().unwrap();
    drop(outside);
    assert!(!pid_alive(pid), "the server {pid} survived the drop");
    assert!(!ns_exists(&ns), "namespace {ns} survived the drop");
    assert!(!link_exists(&host_if), "veth {host_if} survived the drop");
}

#[test]
fn a_server_that_fails_leaves_nothing_behind() {
    if !root_or_skip("a_server_that_fails_leaves_nothing_behind") {
        return;
    }
    // One that exits at once, and one that never listens (stopped after the 5 s wait).
    for (n, server) in [(1, vec!["false"]), (2, vec!["sleep", "60"])] {
        let (ns, host_if, host_ip) = unique(n);
        let argv: Vec<OsString> = server.iter().map(OsString::from).collect();
        let err = Outside::create(&ns, &host_if, host_ip, 7007, &argv).unwrap_err().to_string();
        assert!(err.contains("the server"), "{err}");
        assert!(!ns_exists(&ns), "namespace {ns} survived a failed create");
        assert!(!link_exists(&host_if), "veth {host_if} survived a failed create");
    }
    // A /30 given by a wrong address is refused before anything is made.
    let (ns, host_if, _) = unique(3);
    let err = Outside::create(&ns, &host_if, Ipv4Addr::new(198, 19, 255, 2), 7007, &serve_argv("x")).unwrap_err();
    assert!(err.to_string().contains("first host of a /30"), "{err}");
    assert!(!ns_exists(&ns));
}

//! A CLI and a daemon of different builds (an upgrade while the old daemon kept running): a
//! request the daemon does not fully understand is refused, not half done, and every command of
//! a CLI that meets a daemon of another build says so once, on stderr.

mod common;

use common::*;
use std::time::Duration;

/// This test binary's build id: the same build script makes it as the binaries'.
const BUILD: &str = env!("BANGER_BUILD_ID");

#[test]
fn a_request_with_a_field_the_daemon_does_not_know_is_refused_naming_it() {
    let env = Env::new();
    let status = env.status();
    assert_eq!(status["version"], env!("CARGO_PKG_VERSION"));
    assert_eq!(status["build"], BUILD);
    let socket = env.socket();
    let url = "http://bangerd/v1/vms/no-such-vm";
    let patch = ["-X", "PATCH", "-H", "content-type: application/json"];

    // From a client of another build (a newer banger): the daemon is the older one.
    let newer = format!("x-banger-build: {}+from-the-future", env!("CARGO_PKG_VERSION"));
    let args = [&patch[..], &["-H", &newer, "--data", r#"{"nat":true,"interactive":true}"#]].concat();
    let (code, body) = curl_socket(&socket, &args, url, None);
    assert_eq!(code, "400", "{body}");
    assert_eq!(body["code"], "bad_input", "{body}");
    assert_eq!(
        body["message"],
        format!(
            "bangerd does not understand `interactive` in this request: it is older than this banger (bangerd build \
             {BUILD}, banger build {}+from-the-future); restart it with `banger daemon stop` (the next command \
             starts the new one)",
            env!("CARGO_PKG_VERSION")
        )
    );

    // From a client that does not say its build (curl).
    let args = [&patch[..], &["--data", r#"{"bogus":1}"#]].concat();
    let (code, body) = curl_socket(&socket, &args, url, None);
    assert_eq!(code, "400", "{body}");
    assert_eq!(
        body["message"],
        format!(
            "bangerd (build {BUILD}) does not understand `bogus` in this request; if the client is newer than \
             bangerd, restart it with `banger daemon stop` (the next command starts the new one)"
        )
    );

    // The same request without the unknown field gets past the body (and finds no VM).
    let args = [&patch[..], &["--data", r#"{"nat":true}"#]].concat();
    let (code, body) = curl_socket(&socket, &args, url, None);
    assert_eq!(code, "200", "{body}");
    assert_eq!(body["error"]["code"], "not_found", "{body}");

    // Every response names the daemon's build and pid.
    let out = std::process::Command::new("curl")
        .args(["-s", "-D", "-", "-o", "/dev/null", "--unix-socket"])
        .arg(&socket)
        .arg("http://bangerd/v1/daemon/status")
        .output()
        .unwrap();
    let headers = String::from_utf8_lossy(&out.stdout).to_lowercase();
    assert!(headers.contains(&format!("x-banger-build: {BUILD}\r\n")), "{headers}");
    assert!(headers.contains(&format!("x-bangerd-pid: {}\r\n", status["pid"])), "{headers}");

    banger_testkit::report(
        "Version skew",
        "a request body with a field bangerd does not know (`interactive`, as a newer banger would send), over \
         the socket, with and without the client's build header",
        "400 bad_input naming the field, both builds and `banger daemon stop`; the body without the field is \
         accepted; every response carries the daemon's build and pid",
    );
}

#[test]
fn a_cli_meeting_a_daemon_of_another_build_warns_once_on_stderr_until_it_is_restarted() {
    let env = Env::new();
    let old = format!("{}+0000000-old", env!("CARGO_PKG_VERSION"));
    // The daemon this CLI starts inherits the variable, which only bangerd reads (test only).
    let first =
        Out(env.banger(&["daemon", "status", "--json"]).env("BANGER_BUILD_ID_OVERRIDE", &old).output().unwrap());
    env.note_started(&first.stderr());
    assert_eq!(first.code(), 0, "{}", first.stderr());
    let status = first.json();
    assert_eq!(status["build"], old.as_str());
    let pid = status["pid"].as_i64().unwrap() as i32;
    let warning = format!(
        "banger: warning: bangerd (pid {pid}) is build {old}, this banger is build {BUILD}; run `banger daemon \
         stop` to restart it with this one"
    );

    // Any later command warns, once, on stderr; its --json output stays clean.
    for args in [&["daemon", "status", "--json"][..], &["vm", "list", "--json"], &["image", "list", "--json"]] {
        let out = env.run(args);
        assert_eq!(out.code(), 0, "{args:?}: {}", out.stderr());
        assert_eq!(out.stderr().trim_end(), warning, "{args:?}");
        out.json();
    }
    let human = env.run(&["daemon", "status"]);
    assert!(human.stdout().contains(&format!("build:     {old}\n")), "{}", human.stdout());
    assert_eq!(human.stderr().trim_end(), warning);

    // A refused request still warns (it is where the advice matters most), then fails as usual.
    let refused = env.run(&["vm", "stop", "no-such-vm"]);
    assert_eq!(refused.code(), 3, "{}", refused.stderr());
    assert!(refused.stderr().starts_with(&format!("{warning}\n")), "{}", refused.stderr());

    // What the warning says to do: stop says nothing of builds, the next command starts this build.
    let stop = env.run(&["daemon", "stop"]);
    assert_eq!(stop.code(), 0, "{}", stop.stderr());
    assert_eq!(stop.stderr(), "");
    assert!(wait_gone(pid, Duration::from_secs(5)));
    env.forget_daemon(pid);
    let after = env.run(&["daemon", "status", "--json"]);
    assert_eq!(after.code(), 0, "{}", after.stderr());
    assert_eq!(after.json()["build"], BUILD);
    assert!(!after.stderr().contains("warning"), "{}", after.stderr());
    let again = env.run(&["vm", "list", "--json"]);
    assert_eq!(again.stderr(), "");

    banger_testkit::report(
        "Version skew",
        "a daemon reporting another build (BANGER_BUILD_ID_OVERRIDE) meets this banger: daemon status, vm list, \
         image list (--json and not), a failing vm stop, then `banger daemon stop` and the next command",
        "each command prints the one warning line on stderr naming both builds, the pid and `banger daemon \
         stop`, JSON on stdout intact; after the stop the new daemon is this build and nothing warns",
    );
}

//! The control plane end to end: real `banger` and `bangerd` binaries, a temporary XDG layout.

mod common;

use common::*;
use std::os::unix::fs::PermissionsExt;
use std::path::Path;
use std::time::Duration;

#[test]
fn autostart_status_and_graceful_stop() {
    let env = Env::new();
    let out = env.run(&["daemon", "status", "--json"]);
    assert_eq!(out.code(), 0, "{}", out.stderr());
    assert!(out.stderr().contains("started bangerd (pid "), "{}", out.stderr());
    let s = out.json();
    let pid = s["pid"].as_i64().unwrap() as i32;
    assert!(alive(pid));
    assert_eq!(s["version"], env!("CARGO_PKG_VERSION"));
    assert_eq!(s["socket"], env.socket().to_str().unwrap());
    assert_eq!(s["state_dir"], env.state_dir().to_str().unwrap());
    assert_eq!(s["config_file"], env.config_file().to_str().unwrap());
    assert_eq!(s["schema_version"], banger_state::MIGRATIONS.len());
    assert_eq!(s["vmm"], "auto");
    assert!(s["runtime"]["dir"].as_str().unwrap().ends_with("/runtime"));

    // Permissions: private directories (run and state: disks, keys, known_hosts, the database
    // live there), owner-only socket.
    assert_eq!(mode(&env.run_dir()), 0o700);
    assert_eq!(mode(&env.state_dir()), 0o700);
    assert_eq!(mode(&env.socket()), 0o600);
    banger_testkit::report(
        "Many users on one host",
        "modes of what the daemon makes: run dir, state dir, socket",
        "0700, 0700, 0600 (keys 0600: see below)",
    );

    // A second call talks to the same daemon and starts nothing.
    let again = env.run(&["daemon", "status", "--json"]);
    assert!(!again.stderr().contains("started bangerd"), "{}", again.stderr());
    assert_eq!(again.json()["pid"].as_i64().unwrap() as i32, pid);

    // Human output names the same things.
    let human = env.run(&["daemon", "status"]);
    assert!(human.stdout().contains(&format!("pid:       {pid}")), "{}", human.stdout());
    assert_eq!(env.run(&["daemon", "socket"]).stdout().trim(), env.socket().to_str().unwrap());

    let stop = env.run(&["daemon", "stop"]);
    assert_eq!(stop.code(), 0, "{}", stop.stderr());
    assert_eq!(stop.stdout().trim(), format!("bangerd (pid {pid}) stopped"));
    assert!(wait_gone(pid, Duration::from_secs(5)), "daemon still alive after stop");
    assert!(!env.socket().exists(), "socket left behind");

    let after = env.run(&["daemon", "status", "--no-start"]);
    assert_eq!(after.code(), 5, "{}", after.stderr());
    assert!(after.stderr().starts_with("banger: error: bangerd is not running"), "{}", after.stderr());
    assert_eq!(after.stderr().lines().count(), 1);

    // Stopping a daemon that is not running is not an error.
    let stop = env.run(&["daemon", "stop"]);
    assert_eq!((stop.code(), stop.stdout().trim()), (0, "bangerd is not running"));

    // The clean stop was recorded: the next start has nothing to warn about.
    env.status();
    assert!(!env.log().contains("did not shut down cleanly"), "{}", env.log());
}

#[test]
fn concurrent_clis_start_exactly_one_daemon() {
    let env = Env::new();
    let children: Vec<_> = (0..8)
        .map(|_| {
            env.banger(&["daemon", "status", "--json"])
                .stdout(std::process::Stdio::piped())
                .stderr(std::process::Stdio::piped())
                .spawn()
                .unwrap()
        })
        .collect();
    let mut pids = Vec::new();
    let mut starters = 0;
    for child in children {
        let out = Out(child.wait_with_output().unwrap());
        env.note_started(&out.stderr());
        assert_eq!(out.code(), 0, "{}", out.stderr());
        starters += out.stderr().matches("started bangerd").count();
        pids.push(out.json()["pid"].as_i64().unwrap());
    }
    pids.dedup();
    assert_eq!(pids.len(), 1, "CLIs saw different daemons: {pids:?}");
    assert_eq!(starters, 1, "more than one CLI started a daemon");
    let log = env.log();
    assert_eq!(log.matches("listening on").count(), 1, "{log}");
    assert!(!log.contains("already running"), "{log}");
}

#[test]
fn a_second_daemon_started_by_hand_is_refused() {
    let env = Env::new();
    let pid = env.status()["pid"].as_i64().unwrap();
    let out = Out(env.bangerd().output().unwrap());
    assert_eq!(out.code(), 4, "{}", out.stderr());
    assert_eq!(
        out.stderr().trim(),
        format!(
            "bangerd: error: bangerd is already running (pid {pid}, socket {}); stop it with `banger daemon stop`",
            env.socket().display()
        )
    );
    // The running daemon is untouched.
    assert_eq!(env.status()["pid"].as_i64().unwrap(), pid);
}

#[test]
fn stale_socket_and_stale_pid_from_a_crash_are_recovered() {
    let env = Env::new();
    let first = env.status()["pid"].as_i64().unwrap() as i32;
    // Simulate a crash: SIGKILL leaves the socket file and the pid in the lock file behind.
    nix::sys::signal::kill(nix::unistd::Pid::from_raw(first), nix::sys::signal::Signal::SIGKILL).unwrap();
    assert!(wait_gone(first, Duration::from_secs(5)));
    assert!(env.socket().exists(), "a killed daemon leaves its socket file");
    let lock = std::fs::read_to_string(env.run_dir().join("bangerd.lock")).unwrap();
    assert_eq!(lock.trim(), first.to_string());

    let stale = env.run(&["daemon", "status", "--no-start"]);
    assert_eq!(stale.code(), 5, "{}", stale.stderr());
    assert!(stale.stderr().contains("Connection refused"), "{}", stale.stderr());

    let second = env.status()["pid"].as_i64().unwrap() as i32;
    assert_ne!(first, second);
    let log = env.log();
    assert!(log.contains("removed stale socket"), "{log}");
    assert!(log.contains(&format!("the previous bangerd (pid {first}")), "{log}");
    assert!(log.contains("did not shut down cleanly"), "{log}");
}

#[test]
fn socket_owned_by_another_user_is_refused() {
    if !is_root() {
        skip("socket_owned_by_another_user_is_refused", "needs root to chown a socket file");
        return;
    }
    let env = Env::new();
    std::fs::create_dir_all(env.run_dir()).unwrap();
    std::fs::set_permissions(env.run_dir(), std::fs::Permissions::from_mode(0o700)).unwrap();
    let listener = std::os::unix::net::UnixListener::bind(env.socket()).unwrap();
    nix::unistd::chown(&env.socket(), Some(nix::unistd::Uid::from_raw(65534)), None).unwrap();
    let out = env.run(&["daemon", "status"]);
    assert_eq!(out.code(), 6, "{}", out.stderr());
    assert_eq!(
        out.stderr().trim(),
        format!(
            "banger: error: socket {} belongs to uid 65534, not to you (uid 0); refusing to talk to it",
            env.socket().display()
        )
    );
    assert!(env.log().is_empty(), "a daemon was started anyway");
    drop(listener);
    banger_testkit::report(
        "Many users on one host",
        "the socket path holds a socket of uid 65534",
        "the CLI refuses to talk to it (exit 6) and starts nothing",
    );
}

#[test]
fn daemon_refuses_peers_of_another_uid_with_structured_json() {
    if !is_root() {
        skip("daemon_refuses_peers_of_another_uid_with_structured_json", "needs root to connect as another uid");
        return;
    }
    let env = Env::new();
    env.status();
    // Open the path up so the filesystem lets uid 65534 reach the socket; the daemon must still say no.
    for dir in [env.tmp.path().to_path_buf(), env.path("run"), env.run_dir()] {
        std::fs::set_permissions(&dir, std::fs::Permissions::from_mode(0o755)).unwrap();
    }
    std::fs::set_permissions(env.socket(), std::fs::Permissions::from_mode(0o666)).unwrap();
    let (code, body) = curl_socket(&env.socket(), &[], "http://bangerd/v1/daemon/status", Some(65534));
    assert_eq!(code, "403", "{body}");
    assert_eq!(body["code"], "permission_denied");
    assert_eq!(body["message"], "bangerd serves only uid 0; the connection from uid 65534 was refused");
    banger_testkit::report(
        "Hostile input",
        "a request from uid 65534 with the socket opened up to it",
        "403 permission_denied: \"bangerd serves only uid 0; the connection from uid 65534 was refused\" (SO_PEERCRED)",
    );
    // The same request from our own uid works: the API is curl-able.
    let (code, body) = curl_socket(&env.socket(), &[], "http://bangerd/v1/daemon/status", None);
    assert_eq!(code, "200", "{body}");
    assert_eq!(body["version"], env!("CARGO_PKG_VERSION"));
}

#[test]
fn api_errors_are_structured_json() {
    let env = Env::new();
    env.status();
    let (code, body) = curl_socket(&env.socket(), &[], "http://bangerd/v1/nope", None);
    assert_eq!(code, "404");
    assert_eq!(body["code"], "not_found");
    assert_eq!(body["message"], "no such API path: GET /v1/nope");
    let (code, body) = curl_socket(&env.socket(), &["-X", "DELETE"], "http://bangerd/v1/daemon/status", None);
    assert_eq!(code, "400");
    assert_eq!(body["code"], "bad_input");
}

#[test]
fn unwritable_state_dir_is_one_clear_line() {
    let env = Env::new();
    // A file where the state directory should be: creating it fails even for root.
    std::fs::write(env.path("state"), "not a directory").unwrap();
    let out = env.run(&["daemon", "status"]);
    assert_eq!(out.code(), 1, "{}", out.stderr());
    let err = out.stderr();
    assert_eq!(err.lines().count(), 1, "{err}");
    assert!(
        err.starts_with(&format!("banger: error: cannot create directory {}", env.path("state").display())),
        "{err}"
    );
    assert!(!env.socket().exists());
}

#[test]
fn corrupt_config_is_reported_before_any_daemon_starts() {
    let env = Env::new();
    env.write_config("vmm = \"qemu\"\ndefault_vcpu = = 2\n");
    for args in [&["daemon", "status"][..], &["config", "show"][..]] {
        let out = env.run(args);
        assert_eq!(out.code(), 2, "{}", out.stderr());
        let err = out.stderr();
        assert!(
            err.starts_with(&format!(
                "banger: error: config file {} is not valid TOML: line 2, column",
                env.config_file().display()
            )),
            "{err}"
        );
        assert_eq!(err.lines().count(), 1, "{err}");
    }
    assert!(env.log().is_empty(), "a daemon was started with a corrupt config");

    // A bad value names file, key and the expected form.
    env.write_config("default_memory = \"lots\"\n");
    let out = env.run(&["config", "show"]);
    assert_eq!(out.code(), 2);
    assert!(out.stderr().contains("`default_memory` is \"lots\"; expected memory in MiB"), "{}", out.stderr());

    // The daemon itself refuses it too when started by hand.
    let out = Out(env.bangerd().output().unwrap());
    assert_eq!(out.code(), 2, "{}", out.stderr());
    assert!(out.stderr().contains("`default_memory`"), "{}", out.stderr());
}

#[test]
fn config_show_reports_values_sources_and_unknown_keys() {
    let env = Env::new();
    env.write_config("vmm = \"qemu\"\ndefault_disk_size = \"16G\"\nfirecraker_bin = \"/x\"\n");
    let out = env.run(&["config", "show", "--json"]);
    assert_eq!(out.code(), 0, "{}", out.stderr());
    assert_eq!(
        out.stderr().trim(),
        format!("banger: warning: config file {}: unknown key `firecraker_bin` ignored", env.config_file().display())
    );
    let j = out.json();
    let get = |key: &str| j["settings"].as_array().unwrap().iter().find(|e| e["key"] == key).unwrap().clone();
    assert_eq!(get("vmm")["value"], "qemu");
    assert_eq!(get("vmm")["source"]["kind"], "file");
    assert_eq!(get("vmm")["source"]["detail"], env.config_file().to_str().unwrap());
    assert_eq!(get("default_disk_size")["value"], "16G");
    assert_eq!(get("default_kernel")["value"], "vmlinux");
    assert_eq!(get("default_kernel")["source"]["kind"], "default");
    assert_eq!(j["runtime_dir"]["source"], "source_checkout");
    let human = env.run(&["config", "show"]).stdout();
    assert!(
        human.lines().any(|l| l.starts_with("vmm ") && l.contains("qemu") && l.ends_with("config.toml")),
        "{human}"
    );
}

#[test]
fn missing_bundle_names_the_path_and_the_command_that_provides_it() {
    let env = Env::new();
    let missing = env.path("no-runtime");
    let out = env.banger(&["runtime", "check"]).env("BANGER_RUNTIME_DIR", &missing).output().unwrap();
    let out = Out(out);
    assert_eq!(out.code(), 7, "{}", out.stderr());
    assert_eq!(
        out.stderr().trim(),
        format!(
            "banger: error: runtime bundle directory {} does not exist (chosen by BANGER_RUNTIME_DIR); run `make runtime-bundle` to fetch the bundle, or `make runtime-build` to build it from Debian packages",
            missing.display()
        )
    );
    // A bundle lacking one file: that file is named, with its config key.
    std::fs::create_dir_all(missing.join("modules")).unwrap();
    for f in ["vmlinux", "initrd.img", "rootfs.ext4", "rootfs-docker.ext4"] {
        std::fs::write(missing.join(f), "x").unwrap();
    }
    let out = Out(env.banger(&["runtime", "check", "--json"]).env("BANGER_RUNTIME_DIR", &missing).output().unwrap());
    assert_eq!(out.code(), 7);
    assert!(
        out.stderr()
            .contains(&format!("runtime bundle file {}/id_ed25519 (ssh_key_path) is missing", missing.display())),
        "{}",
        out.stderr()
    );
    let j = out.json();
    let files = j["files"].as_array().unwrap();
    assert_eq!(files.iter().filter(|f| f["present"] == false).count(), 1);
    std::fs::write(missing.join("id_ed25519"), "key").unwrap();
    let ok = Out(env.banger(&["runtime", "check"]).env("BANGER_RUNTIME_DIR", &missing).output().unwrap());
    assert_eq!(ok.code(), 0, "{}", ok.stderr());
}

#[test]
fn installed_layout_uses_prefix_lib_banger() {
    let env = Env::new();
    let bin = env.path("prefix/bin");
    std::fs::create_dir_all(&bin).unwrap();
    std::fs::copy(banger_bin(), bin.join("banger")).unwrap();
    let mut cmd = std::process::Command::new(bin.join("banger"));
    cmd.args(["config", "show", "--json"]).env("XDG_CONFIG_HOME", env.path("config")).env_remove("BANGER_RUNTIME_DIR");
    let out = Out(cmd.output().unwrap());
    assert_eq!(out.code(), 0, "{}", out.stderr());
    let j = out.json();
    assert_eq!(j["runtime_dir"]["path"], env.path("prefix/lib/banger").to_str().unwrap());
    assert_eq!(j["runtime_dir"]["source"], "install_prefix");
}

#[test]
fn completions_are_generated_for_each_shell() {
    let env = Env::new();
    for (shell, needle) in [("bash", "complete -F"), ("zsh", "#compdef banger"), ("fish", "complete -c banger")] {
        let out = env.run(&["completions", shell]);
        assert_eq!(out.code(), 0);
        assert!(out.stdout().contains(needle), "{shell}");
        assert!(out.stdout().contains("daemon"), "{shell}");
    }
    let bad = env.run(&["completions", "tcsh"]);
    assert_eq!(bad.code(), 2);
}

#[test]
fn leftover_taps_of_this_installation_are_removed_at_daemon_start_and_others_kept() {
    if !is_root() {
        skip("leftover_taps…", "needs root to create TAP devices");
        return;
    }
    let env = Env::new();
    let prefix = banger_net::tap::prefix_for(&env.state_dir());
    let ours = banger_net::tap::name(&prefix, 61);
    let theirs = format!("bgrx{}", std::process::id() % 100000);
    for tap in [&ours, &theirs] {
        let out = std::process::Command::new("ip").args(["tuntap", "add", "dev", tap, "mode", "tap"]).output().unwrap();
        assert!(out.status.success(), "{}", String::from_utf8_lossy(&out.stderr));
    }
    env.status();
    let exists = |t: &str| Path::new("/sys/class/net").join(t).exists();
    let (ours_left, theirs_left) = (exists(&ours), exists(&theirs));
    let _ = std::process::Command::new("ip").args(["link", "del", &theirs]).output();
    let _ = std::process::Command::new("ip").args(["link", "del", &ours]).output();
    assert!(!ours_left, "the daemon kept a leftover TAP of its own installation");
    assert!(theirs_left, "the daemon removed a TAP that is not its own");
    assert!(env.log().contains(&format!("removing leftover TAP {ours}")), "{}", env.log());
}

/// A reader that goes away early (`banger … | head -1`) ends the CLI quietly: no panic message,
/// no exit status 101 — the SIGPIPE any Unix tool gets.
#[test]
fn a_closed_output_pipe_ends_the_cli_quietly() {
    use std::io::BufRead;
    use std::os::unix::process::ExitStatusExt;
    let env = Env::new();
    let mut child = env
        .banger(&["completions", "bash"])
        .stdout(std::process::Stdio::piped())
        .stderr(std::process::Stdio::piped())
        .spawn()
        .unwrap();
    let mut first = String::new();
    std::io::BufReader::new(child.stdout.take().unwrap()).read_line(&mut first).unwrap();
    assert!(!first.is_empty());
    // The pipe's read end is closed here (the reader was dropped).
    let out = child.wait_with_output().unwrap();
    let stderr = String::from_utf8_lossy(&out.stderr);
    assert!(stderr.is_empty(), "nothing on stderr: {stderr}");
    assert_ne!(out.status.code(), Some(101), "no panic");
    assert!(out.status.success() || out.status.signal() == Some(libc_sigpipe()), "{:?}", out.status);
    banger_testkit::report(
        "Hostile input",
        "`banger completions bash | head -1`",
        "ends quietly: no panic, nothing on stderr",
    );
}

fn libc_sigpipe() -> i32 {
    nix::sys::signal::Signal::SIGPIPE as i32
}

/// Hostile or careless clients do not take the daemon down or lock others out: malformed JSON
/// and a 100 MiB body are refused with an error, and 1500 idle connections (more than the usual
/// default limit of 1024 open files) leave room for a
/// client that asks something.
#[test]
fn malformed_and_huge_requests_and_1500_idle_connections_leave_the_daemon_serving() {
    use nix::sys::resource::{Resource, getrlimit, setrlimit};
    // The daemon starts with the common default soft limit of 1024 open files (it must raise its
    // own); this test then holds 1500 sockets itself.
    let (_, hard) = getrlimit(Resource::RLIMIT_NOFILE).unwrap();
    if hard < 2048 {
        skip("idle connections", "the hard limit of open files is below 2048");
        return;
    }
    let env = Env::new();
    setrlimit(Resource::RLIMIT_NOFILE, 1024, hard).unwrap();
    let pid = env.status()["pid"].as_i64().unwrap() as i32;
    setrlimit(Resource::RLIMIT_NOFILE, hard.min(4096), hard).unwrap();
    let socket = env.socket();
    let url = "http://bangerd/v1/vms";
    let post = ["-X", "POST", "-H", "content-type: application/json"];

    let (code, body) = curl_socket(&socket, &[&post[..], &["--data", "{not json"]].concat(), url, None);
    assert_eq!(code, "400", "{body}");
    assert_eq!(body["code"], "bad_input", "{body}");
    assert!(body["message"].as_str().is_some_and(|m| m.contains("JSON")), "{body}");
    banger_testkit::report(
        "Hostile input",
        "malformed JSON body",
        &format!("400 bad_input: \"{}\"", body["message"].as_str().unwrap()),
    );

    let big = env.path("big.json");
    std::fs::write(&big, vec![b'a'; 100 << 20]).unwrap();
    let data = format!("@{}", big.display());
    let (code, body) = curl_socket(&socket, &[&post[..], &["--data-binary", &data]].concat(), url, None);
    assert_eq!(code, "400", "{body}");
    assert_eq!(body["message"], "the request body is larger than 2 MiB, the most bangerd reads");
    std::fs::remove_file(&big).unwrap();
    banger_testkit::report(
        "Hostile input",
        "a 100 MiB request body",
        "400 bad_input: \"the request body is larger than 2 MiB, the most bangerd reads\"",
    );

    // 1500 connections: two thirds idle, one third slow (a request started, then nothing).
    let idle: Vec<std::os::unix::net::UnixStream> = (0..1500)
        .map(|i| {
            let mut s = std::os::unix::net::UnixStream::connect(&socket).unwrap();
            if i % 3 == 0 {
                use std::io::Write;
                let partial = "POST /v1/vms HTTP/1.1\r\nHost: b\r\ncontent-type: application/json\r\n\
                               content-length: 1000\r\n\r\n{\"name\": \"slo";
                s.write_all(partial.as_bytes()).unwrap();
            }
            s
        })
        .collect();
    // Someone else still gets an answer (bounded, so a locked-out client fails the test).
    let (tx, rx) = std::sync::mpsc::channel();
    let status_env = env.socket();
    std::thread::spawn(move || {
        let _ = tx.send(curl_socket(&status_env, &[], "http://bangerd/v1/daemon/status", None));
    });
    let (code, body) =
        rx.recv_timeout(Duration::from_secs(30)).expect("the daemon answers beside 1500 idle connections");
    assert_eq!(code, "200", "{body}");
    assert_eq!(body["pid"].as_i64().unwrap() as i32, pid);
    drop(idle);
    assert!(alive(pid));
    assert_eq!(env.status()["pid"].as_i64().unwrap() as i32, pid, "the same daemon, still serving");
    banger_testkit::report(
        "Hostile input",
        "1500 connections held open (1000 idle, 500 stalled mid-request)",
        "another client is answered at once; the same daemon keeps serving",
    );
}

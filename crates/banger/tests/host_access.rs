//! Working with a VM from the host, on a real guest: `vm exec` keeps every argument exactly
//! (spaces, quotes, `$`, newlines), streams standard input, returns the program's exit code, and
//! takes `-e`/`-w`; `vm cp` both ways; `ssh-config`; published ports and `vm port-forward`; host
//! folders (virtio-fs; `BANGER_TEST_VIRTIOFSD=PATH` picks the virtiofsd).
//!
//! Needs root and a runtime bundle (`BANGER_TEST_RUNTIME`; `make test` sets it); skipped loudly
//! otherwise — unless `BANGER_E2E_REQUIRED=1`, when that is a failure.

mod common;

use common::*;
use std::io::{BufRead, Read, Write};
use std::net::{TcpListener, TcpStream, UdpSocket};
use std::os::unix::fs::PermissionsExt;
use std::process::Stdio;
use std::time::{Duration, Instant};

#[test]
fn exec_keeps_arguments_streams_input_and_returns_the_exit_code() {
    let Some(rt) = e2e_runtime("host_access", None) else { return };
    let env = Env::new();
    // BANGER_TEST_VIRTIOFSD picks the virtiofsd (the Rust one, say); else bangerd finds one.
    let virtiofsd =
        std::env::var("BANGER_TEST_VIRTIOFSD").map(|p| format!("virtiofsd_bin = {p:?}\n")).unwrap_or_default();
    env.write_config(&format!("subnet = \"10.213.233.0/24\"\nvmm = \"qemu\"\ndefault_memory = 512\n{virtiofsd}"));
    let _left = Leftovers { env: &env, rt: &rt, vms: &["hx"], images: &[] };
    // Host folders (virtio-fs), one read-write and one read-only, from the create on.
    let (shared, readonly) = (env.path("shared"), env.path("readonly"));
    std::fs::create_dir_all(&shared).unwrap();
    std::fs::create_dir_all(&readonly).unwrap();
    std::fs::write(readonly.join("kept"), "host data\n").unwrap();
    let rw_spec = format!("{}:/mnt/host", shared.display());
    let ro_spec = format!("{}:/mnt/ro:ro", readonly.display());
    env.ok_rt(&rt, &["vm", "create", "--name", "hx", "--disk-size", "128M", "--mount", &rw_spec, "--mount", &ro_spec]);
    host_folders(&env, &rt, "first boot");

    // Arguments arrive as given: one per line out of printf, byte for byte.
    let args = ["a b", "it's", "\"double\"", "$HOME", "`id`", "line\nbreak", "*", "; rm -rf /", "", "ä"];
    let mut argv = vec!["vm", "exec", "hx", "--", "printf", "[%s]\\n"];
    argv.extend(args);
    let out = env.ok_rt(&rt, &argv).stdout();
    let want: String = args.iter().map(|a| format!("[{a}]\n")).collect();
    assert_eq!(out, want);

    // Exit codes are the program's.
    for (cmd, code) in [(vec!["true"], 0), (vec!["false"], 1), (vec!["sh", "-c", "exit 42"], 42)] {
        let mut argv = vec!["vm", "exec", "hx", "--"];
        argv.extend(cmd.iter());
        assert_eq!(env.run_rt(&rt, &argv).code(), code, "{cmd:?}");
    }

    // Standard input streams through (a pipe: no terminal).
    let mut child = env
        .banger(&["vm", "exec", "hx", "--", "sh", "-c", "tr a-z A-Z; echo done"])
        .env("BANGER_RUNTIME_DIR", &rt)
        .stdin(Stdio::piped())
        .stdout(Stdio::piped())
        .stderr(Stdio::piped())
        .spawn()
        .unwrap();
    let mut stdin = child.stdin.take().unwrap();
    let big: String = (0..20000).map(|i| format!("line {i}\n")).collect();
    let writer = std::thread::spawn(move || stdin.write_all(big.as_bytes()));
    let out = child.wait_with_output().unwrap();
    writer.join().unwrap().unwrap();
    assert!(out.status.success(), "{out:?}");
    let text = String::from_utf8(out.stdout).unwrap();
    assert_eq!(text.lines().count(), 20001);
    assert!(text.starts_with("LINE 0\n") && text.ends_with("LINE 19999\ndone\n"));

    // Environment and working directory.
    let out = env.ok_rt(&rt, &["vm", "exec", "-e", "A=x y", "-w", "/tmp", "hx", "--", "sh", "-c", "echo \"$A\"; pwd"]);
    assert_eq!(out.stdout(), "x y\n/tmp\n");
    let bad = env.run_rt(&rt, &["vm", "exec", "-e", "1A=x", "hx", "--", "true"]);
    assert_eq!(bad.code(), 2, "{}", bad.stderr());
    // Unlike `vm ssh -- …`, whose words the guest's shell re-parses.
    assert_eq!(env.ok_rt(&rt, &["vm", "ssh", "hx", "--", "echo", "a;", "echo", "b"]).stdout(), "a\nb\n");
    assert_eq!(env.ok_rt(&rt, &["vm", "exec", "hx", "--", "echo", "a;", "echo", "b"]).stdout(), "a; echo b\n");

    // vm cp, both ways: a 64 MiB random file, and a tree with modes, times and a symlink.
    let work = env.path("cp");
    std::fs::create_dir_all(work.join("tree/sub")).unwrap();
    let big: Vec<u8> = (0..64u32 << 20).map(|i| (i.wrapping_mul(2654435761) >> 13) as u8).collect();
    std::fs::write(work.join("big.bin"), &big).unwrap();
    std::fs::write(work.join("tree/sub/x.sh"), "#!/bin/sh\necho x\n").unwrap();
    std::fs::set_permissions(work.join("tree/sub/x.sh"), std::fs::Permissions::from_mode(0o754)).unwrap();
    std::os::unix::fs::symlink("sub/x.sh", work.join("tree/link")).unwrap();
    let old = std::time::SystemTime::UNIX_EPOCH + std::time::Duration::from_secs(1_600_000_000);
    std::fs::File::options().write(true).open(work.join("tree/sub/x.sh")).unwrap().set_modified(old).unwrap();
    let w = |p: &str| work.join(p).display().to_string();
    env.ok_rt(&rt, &["vm", "cp", &w("big.bin"), "hx:/root/"]);
    let sum = env.ok_rt(&rt, &["vm", "exec", "hx", "--", "sha256sum", "/root/big.bin"]).stdout();
    let host_sum = std::process::Command::new("sha256sum").arg(work.join("big.bin")).output().unwrap();
    assert_eq!(sum.split_whitespace().next(), String::from_utf8_lossy(&host_sum.stdout).split_whitespace().next());
    env.ok_rt(&rt, &["vm", "cp", "hx:/root/big.bin", &w("back.bin")]);
    assert!(std::fs::read(work.join("back.bin")).unwrap() == big, "64 MiB back intact");
    env.ok_rt(&rt, &["vm", "cp", &w("tree"), "hx:/tmp/tree2"]);
    let listing = env.ok_rt(&rt, &["vm", "exec", "hx", "--", "stat", "-c", "%n %a %Y", "/tmp/tree2/sub/x.sh"]).stdout();
    assert_eq!(listing.trim(), "/tmp/tree2/sub/x.sh 754 1600000000");
    std::fs::create_dir_all(work.join("back")).unwrap();
    env.ok_rt(&rt, &["vm", "cp", "hx:/tmp/tree2", &w("back")]);
    let got = work.join("back/tree2");
    assert_eq!(std::fs::read_to_string(got.join("sub/x.sh")).unwrap(), "#!/bin/sh\necho x\n");
    assert_eq!(mode(&got.join("sub/x.sh")), 0o754);
    assert_eq!(std::fs::read_link(got.join("link")).unwrap(), std::path::Path::new("sub/x.sh"));
    assert_eq!(std::fs::metadata(got.join("sub/x.sh")).unwrap().modified().unwrap(), old);
    // Missing paths, on either side, and two host paths.
    for (args, code) in [
        (vec![w("nope"), "hx:/root/".into()], 3),
        (vec!["hx:/nope".into(), w("x")], 3),
        (vec![w("big.bin"), "hx:/nope/dir/x".into()], 3),
        (vec![w("big.bin"), w("other")], 2),
    ] {
        let mut argv = vec!["vm", "cp"];
        argv.extend(args.iter().map(String::as_str));
        let out = env.run_rt(&rt, &argv);
        assert_eq!(out.code(), code, "{args:?}: {}", out.stderr());
        assert_eq!(out.stderr().lines().count(), 1, "one sentence: {}", out.stderr());
    }
    // A copy that fails midway (the filesystem it goes to fills up) leaves nothing, either way.
    let mount_small = "mkdir -p /mnt/small && mount -t tmpfs -o size=8m tmpfs /mnt/small";
    env.ok_rt(&rt, &["vm", "exec", "hx", "--", "sh", "-c", mount_small]);
    let full = env.run_rt(&rt, &["vm", "cp", &w("big.bin"), "hx:/mnt/small/"]);
    assert_eq!(full.code(), 1, "{}", full.stderr());
    assert!(full.stderr().contains("the copy failed on the receiving side"), "{}", full.stderr());
    let left = env.ok_rt(&rt, &["vm", "exec", "hx", "--", "ls", "-A", "/mnt/small"]).stdout();
    assert_eq!(left, "", "nothing half-written in the guest");
    let host_small = work.join("small");
    std::fs::create_dir_all(&host_small).unwrap();
    let mounted = std::process::Command::new("mount")
        .args(["-t", "tmpfs", "-o", "size=8m", "tmpfs"])
        .arg(&host_small)
        .status()
        .unwrap();
    assert!(mounted.success());
    let full = env.run_rt(&rt, &["vm", "cp", "hx:/root/big.bin", &host_small.display().to_string()]);
    let host_left: Vec<_> = std::fs::read_dir(&host_small).unwrap().flatten().map(|e| e.file_name()).collect();
    let _ = std::process::Command::new("umount").arg(&host_small).status();
    assert_eq!(full.code(), 1, "{}", full.stderr());
    assert!(host_left.is_empty(), "nothing half-written on the host: {host_left:?}");
    let staged =
        env.ok_rt(&rt, &["vm", "exec", "hx", "--", "sh", "-c", "ls -a /root /tmp | grep -c banger-cp || true"]);
    assert_eq!(staged.stdout().trim(), "0", "no staging directory left in the guest");
    banger_testkit::report(
        "Host access",
        "`vm cp` both ways: a 64 MiB random file, a tree with a 0754 file, an old mtime and a symlink; missing paths",
        "checksums, modes, times and the link equal; missing paths: one sentence, exit 3; a copy that fills the \
         filesystem it goes to fails (exit 1) and leaves nothing, either way",
    );

    // Interrupted copies (SIGINT to banger alone, as a script's kill would be) leave nothing,
    // either way.
    let host_into = env.path("interrupted");
    std::fs::create_dir_all(&host_into).unwrap();
    let big_host = work.join("big.bin");
    for (src, dst) in [
        ("hx:/root/big.bin".to_string(), host_into.display().to_string()),
        (big_host.display().to_string(), "hx:/tmp".to_string()),
    ] {
        let child = env
            .banger(&["vm", "cp", &src, &dst])
            .env("BANGER_RUNTIME_DIR", &rt)
            .stdout(Stdio::null())
            .stderr(Stdio::piped())
            .spawn()
            .unwrap();
        std::thread::sleep(Duration::from_millis(3000));
        nix::sys::signal::kill(nix::unistd::Pid::from_raw(child.id() as i32), nix::sys::signal::Signal::SIGINT)
            .unwrap();
        let out = child.wait_with_output().unwrap();
        let err = String::from_utf8_lossy(&out.stderr);
        assert_eq!(out.status.code(), Some(130), "{src} → {dst}: {err}");
        assert!(err.contains("interrupted"), "{err}");
    }
    let left: Vec<_> = std::fs::read_dir(&host_into).unwrap().flatten().map(|e| e.file_name()).collect();
    assert!(left.is_empty(), "nothing left on the host: {left:?}");
    let staged =
        env.ok_rt(&rt, &["vm", "exec", "hx", "--", "sh", "-c", "sleep 1; ls -a /tmp | grep -c banger-cp || true"]);
    assert_eq!(staged.stdout().trim(), "0", "no staging directory left in the guest");
    banger_testkit::report(
        "Host access",
        "`vm cp` of 64 MiB interrupted (SIGINT to banger alone) after 3 s, either way",
        "exit 130, \"interrupted\"; no staging directory left on the host or in the guest",
    );

    // `ssh NAME.vm` with the config bangerd keeps: printed, or included from ~/.ssh/config.
    let printed = env.ok_rt(&rt, &["ssh-config"]).stdout();
    assert!(printed.contains("Host hx.vm\n"), "{printed}");
    let file = env.path("ssh_config");
    std::fs::write(&file, &printed).unwrap();
    let ssh = |config: &std::path::Path| {
        std::process::Command::new("ssh")
            .arg("-F")
            .arg(config)
            .args(["-o", "BatchMode=yes", "hx.vm", "hostname"])
            .output()
            .unwrap()
    };
    let out = ssh(&file);
    assert!(out.status.success(), "{out:?}");
    let listed = env.ok_rt(&rt, &["ssh-config", "--json"]).json();
    let host = &listed["hosts"].as_array().unwrap()[0];
    assert_eq!((host["host"].as_str(), host["user"].as_str()), (Some("hx.vm"), Some("root")), "{listed}");
    let opts: Vec<String> = serde_json::from_value(host["ssh_options"].clone()).unwrap();
    let dest = format!("root@{}", host["hostname"].as_str().unwrap());
    let direct = std::process::Command::new("ssh")
        .args(&opts)
        .args(["-o", "BatchMode=yes", &dest, "hostname"])
        .output()
        .unwrap();
    assert_eq!(String::from_utf8_lossy(&direct.stdout), "hx\n", "ssh with --json's options: {direct:?}");
    assert_eq!(String::from_utf8_lossy(&out.stdout), "hx\n");
    let installed = env.ok_rt(&rt, &["ssh-config", "--install"]).stdout();
    assert!(installed.contains("now includes"), "{installed}");
    assert!(env.ok_rt(&rt, &["ssh-config", "--install"]).stdout().contains("already includes"));
    let user_config = env.path("home/.ssh/config");
    let out = ssh(&user_config);
    assert!(out.status.success(), "through the Include: {out:?}");
    assert_eq!(mode(&user_config), 0o600);
    banger_testkit::report(
        "Host access",
        "`ssh -F <banger ssh-config> hx.vm`, and through `--install`'s Include",
        "logged in with the installation's key, host key checked strictly",
    );

    published_ports(&env, &rt);

    // A stopped VM: one sentence, the conflict code.
    env.ok_rt(&rt, &["vm", "stop", "hx"]);
    let stopped = env.run_rt(&rt, &["vm", "exec", "hx", "--", "true"]);
    assert_eq!(stopped.code(), 4, "{}", stopped.stderr());
    assert!(stopped.stderr().contains("VM hx is stopped"), "{}", stopped.stderr());

    // Kept current: a deleted VM's block goes; --uninstall takes the Include out.
    env.ok_rt(&rt, &["vm", "delete", "hx"]);
    assert!(!env.ok_rt(&rt, &["ssh-config"]).stdout().contains("Host hx.vm"));
    env.ok_rt(&rt, &["ssh-config", "--uninstall"]);
    assert!(!std::fs::read_to_string(&user_config).unwrap().contains("Include"));
}

/// Echo servers in the guest (TCP 8080, UDP 9090), as transient systemd units: they run until
/// the guest stops.
fn guest_echo_servers(env: &Env, rt: &std::path::Path) {
    let tcp = "use IO::Socket::INET; $SIG{CHLD}='IGNORE'; \
               my $s = IO::Socket::INET->new(LocalPort => 8080, Listen => 64, ReuseAddr => 1) or die $!; \
               while (1) { my $c = $s->accept or next; if (!fork) { while (sysread($c, my $b, 65536)) \
               { syswrite($c, $b) } exit } close $c }";
    let udp = "use IO::Socket::INET; my $s = IO::Socket::INET->new(LocalPort => 9090, Proto => 'udp') or die $!; \
               while (1) { my $from = $s->recv(my $b, 65536); $s->send(\"echo:$b\", 0, $from) }";
    for (unit, code) in [("echo-tcp", tcp), ("echo-udp", udp)] {
        env.ok_rt(
            rt,
            &["vm", "exec", "hx", "--", "systemd-run", "--quiet", "--collect", "--unit", unit, "perl", "-e", code],
        );
    }
    // Listening before anything connects.
    let ready = "for i in $(seq 100); do ss -ltn | grep -q ':8080 ' && ss -lun | grep -q ':9090 ' && exit 0; sleep 0.1; done; exit 1";
    env.ok_rt(rt, &["vm", "exec", "hx", "--", "sh", "-c", ready]);
}

/// 1 MiB through TCP port `port` of 127.0.0.1 comes back unchanged (the guest's echo server).
fn tcp_echoes(port: u16) -> Result<(), String> {
    let mut c = TcpStream::connect(("127.0.0.1", port)).map_err(|e| format!("connect {port}: {e}"))?;
    c.set_read_timeout(Some(Duration::from_secs(30))).unwrap();
    let data: Vec<u8> = (0..1u32 << 20).map(|i| (i.wrapping_mul(2654435761) >> 24) as u8).collect();
    let mut w = c.try_clone().unwrap();
    let sent = data.clone();
    let writer = std::thread::spawn(move || w.write_all(&sent));
    let mut back = vec![0u8; data.len()];
    c.read_exact(&mut back).map_err(|e| format!("read back through {port}: {e}"))?;
    writer.join().unwrap().map_err(|e| e.to_string())?;
    if back != data {
        return Err("the data came back changed".into());
    }
    Ok(())
}

fn udp_echoes(port: u16) -> Result<(), String> {
    let s = UdpSocket::bind("127.0.0.1:0").unwrap();
    s.set_read_timeout(Some(Duration::from_secs(5))).unwrap();
    s.send_to(b"ping", ("127.0.0.1", port)).unwrap();
    let mut buf = [0u8; 64];
    let (n, _) = s.recv_from(&mut buf).map_err(|e| format!("no UDP reply on {port}: {e}"))?;
    if &buf[..n] != b"echo:ping" {
        return Err(format!("UDP reply {:?}", String::from_utf8_lossy(&buf[..n])));
    }
    Ok(())
}

fn free_port() -> u16 {
    TcpListener::bind("127.0.0.1:0").unwrap().local_addr().unwrap().port()
}

fn bound(port: u16) -> bool {
    TcpListener::bind(("127.0.0.1", port)).is_err()
}

/// Published ports (`vm set --publish` on the running VM, kept across a stop/start and a daemon
/// restart, released on stop), a taken host port, and `vm port-forward`.
fn published_ports(env: &Env, rt: &std::path::Path) {
    let shared = env.path("shared");
    guest_echo_servers(env, rt);
    let (tcp, udp) = (free_port(), free_port());
    let udp_spec = format!("{udp}:9090/udp");
    let set =
        env.ok_rt(rt, &["vm", "set", "hx", "--publish", &format!("127.0.0.1:{tcp}:8080"), "--publish", &udp_spec]);
    assert!(set.stdout().contains("(in effect now)"), "{}", set.stdout());
    tcp_echoes(tcp).unwrap();
    udp_echoes(udp).unwrap();
    let shown = env.ok_rt(rt, &["vm", "show", "hx", "--json"]).json();
    let ports = shown["ports"].as_array().unwrap();
    assert_eq!(ports.len(), 2, "{shown}");
    assert!(ports.iter().all(|p| p["persistent"] == true && p["active"] == true), "{shown}");
    let text = env.ok_rt(rt, &["vm", "show", "hx"]).stdout();
    assert!(text.contains(&format!("127.0.0.1:{tcp} → ")) && text.contains("published, forwarding"), "{text}");

    // A host port another program holds: refused, one sentence, nothing changed.
    let holder = TcpListener::bind("127.0.0.1:0").unwrap();
    let taken = holder.local_addr().unwrap().port();
    let refused = env.run_rt(rt, &["vm", "set", "hx", "--publish", &format!("{taken}:8080")]);
    assert_eq!(refused.code(), 4, "{}", refused.stderr());
    assert!(refused.stderr().contains(&format!("host port 127.0.0.1:{taken}/tcp is taken")), "{}", refused.stderr());
    assert_eq!(env.ok_rt(rt, &["vm", "show", "hx", "--json"]).json()["ports"].as_array().unwrap().len(), 2);
    drop(holder);
    banger_testkit::report(
        "Host access",
        "`vm set --publish` TCP and UDP on a running VM; a host port another program holds",
        "1 MiB echoed through TCP and a datagram through UDP from 127.0.0.1; the taken port refused (exit 4), \
         nothing changed",
    );

    // `vm port-forward`: for as long as the command runs; port 0 picks one.
    let mut child = env
        .banger(&["vm", "port-forward", "hx", "0:8080"])
        .env("BANGER_RUNTIME_DIR", rt)
        .stdout(Stdio::piped())
        .stderr(Stdio::null())
        .spawn()
        .unwrap();
    let mut line = String::new();
    std::io::BufReader::new(child.stdout.take().unwrap()).read_line(&mut line).unwrap();
    let picked: u16 = line
        .strip_prefix("forwarding 127.0.0.1:")
        .and_then(|r| r.split(' ').next())
        .and_then(|p| p.parse().ok())
        .unwrap_or_else(|| panic!("{line:?}"));
    tcp_echoes(picked).unwrap();
    let shown = env.ok_rt(rt, &["vm", "show", "hx", "--json"]).json();
    assert!(shown["ports"].as_array().unwrap().iter().any(|p| p["persistent"] == false), "{shown}");
    nix::sys::signal::kill(nix::unistd::Pid::from_raw(child.id() as i32), nix::sys::signal::Signal::SIGINT).unwrap();
    child.wait().unwrap();
    let t0 = Instant::now();
    while bound(picked) && t0.elapsed() < Duration::from_secs(10) {
        std::thread::sleep(Duration::from_millis(100));
    }
    assert!(!bound(picked), "the forward ends with the command");
    banger_testkit::report(
        "Host access",
        "`vm port-forward hx 0:8080`, then Ctrl-C",
        "the picked port echoed 1 MiB while it ran and was let go within seconds of the interrupt",
    );

    // Kept with the VM: gone while it is stopped, back when it starts (and the guest's services
    // with it), and bound again by a new daemon.
    env.ok_rt(rt, &["vm", "stop", "hx"]);
    assert!(!bound(tcp) && TcpStream::connect(("127.0.0.1", tcp)).is_err(), "released on stop");
    std::fs::remove_file(shared.join("from-guest")).unwrap();
    env.ok_rt(rt, &["vm", "start", "hx"]);
    assert!(bound(tcp), "bound again at start");
    host_folders(env, rt, "after vm stop and vm start");
    guest_echo_servers(env, rt);
    tcp_echoes(tcp).unwrap();
    udp_echoes(udp).unwrap();
    env.stop_daemon(rt);
    assert!(!bound(tcp), "the daemon held it");
    env.ok_rt(rt, &["vm", "list"]);
    tcp_echoes(tcp).unwrap();
    udp_echoes(udp).unwrap();
    env.ok_rt(rt, &["vm", "set", "hx", "--unpublish", &tcp.to_string(), "--unpublish", &format!("{udp}/udp")]);
    assert!(!bound(tcp), "unpublished at once");
    banger_testkit::report(
        "Host access",
        "published ports across `vm stop`/`vm start` and a daemon restart; `--unpublish`",
        "let go while stopped, forwarding again after the start and under the new daemon; gone at once when \
         unpublished",
    );
}

/// The VM's host folders: the host's files are there, the guest writes to the read-write one
/// (seen on the host at once, owned by the user bangerd runs as), and the read-only one refuses
/// writes even after the guest remounts it read-write.
fn host_folders(env: &Env, rt: &std::path::Path, when: &str) {
    let (shared, readonly) = (env.path("shared"), env.path("readonly"));
    let out = env.ok_rt(rt, &["vm", "exec", "hx", "--", "cat", "/mnt/ro/kept"]);
    assert_eq!(out.stdout(), "host data\n", "{when}");
    env.ok_rt(rt, &["vm", "exec", "hx", "--", "sh", "-c", "echo written in the guest > /mnt/host/from-guest"]);
    let on_host = shared.join("from-guest");
    assert_eq!(std::fs::read_to_string(&on_host).unwrap(), "written in the guest\n", "{when}");
    use std::os::unix::fs::MetadataExt;
    assert_eq!(std::fs::metadata(&on_host).unwrap().uid(), nix::unistd::geteuid().as_raw(), "{when}");
    std::fs::write(shared.join("from-host"), "host side\n").unwrap();
    let seen = env.ok_rt(rt, &["vm", "exec", "hx", "--", "cat", "/mnt/host/from-host"]);
    assert_eq!(seen.stdout(), "host side\n", "a host change shows at once ({when})");
    std::fs::remove_file(shared.join("from-host")).unwrap();
    let write_ro = "echo x > /mnt/ro/new; a=$?; mount -o remount,rw /mnt/ro 2>/dev/null; echo y > /mnt/ro/new; b=$?; \
                    echo $a $b";
    let out = env.ok_rt(rt, &["vm", "exec", "hx", "--", "sh", "-c", write_ro]);
    assert!(out.stdout().trim() != "0 0" && !out.stdout().trim().ends_with(" 0"), "{when}: {}", out.stdout());
    assert!(!readonly.join("new").exists(), "nothing written through the read-only folder ({when})");
    let shown = env.ok_rt(rt, &["vm", "show", "hx"]).stdout();
    assert!(shown.contains("→ /mnt/ro (read-only)") && shown.contains("→ /mnt/host (read-write)"), "{shown}");
    banger_testkit::report(
        "Host access",
        &format!("host folders (virtio-fs), one read-write and one read-only: {when}"),
        "the host's file read in the guest; a guest write seen on the host, owned by the daemon's user; a host write \
         seen in the guest; the read-only one refuses writes even after the guest remounts it read-write",
    );
}

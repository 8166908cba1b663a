//! A fake `firecracker` (and `jailer`) for tests: a test binary that is its own fake calls
//! [`main`] when started with `--api-sock` (as the driver starts `firecracker`) and [`jailer`]
//! when started with `--exec-file`.
//!
//! As Firecracker it serves a minimal Firecracker API on its socket, appends every request to
//! `requests.jsonl` next to the socket, and behaves as `fake.json` there says (refuse a request,
//! die, never listen, print a console text at InstanceStart). Run with `--version` it prints a
//! version line.
//!
//! With `BANGER_FAKE_FC_QEMU=/path/to/qemu-system-x86_64` in its environment, InstanceStart
//! boots the configuration it was given (kernel, initrd, boot arguments, drives in order, the TAP,
//! memory, vCPUs) as a real guest under QEMU with software emulation, its serial console on the
//! fake's own output (the VM's console log), so a host without KVM can run the daemon's whole
//! Firecracker path up to a guest that answers SSH. SendCtrlAltDel asks that guest to power off;
//! the fake exits when QEMU does, and QEMU dies with the fake (`PR_SET_PDEATHSIG`).
//!
//! As the jailer it builds the chroot layout the real one does (without chroot, uid change or
//! namespaces, which need root), records its argv in `<chroot-base-dir>.argv`, starts the copied
//! "firecracker" with the in-chroot paths mapped into the chroot, writes its pid file and exits;
//! `fake.json` beside the chroot base dir can make it fail (`jailer_fail`).

use serde_json::{Value, json};
use std::fs::{self, OpenOptions};
use std::io::{BufRead, BufReader, Read, Write};
use std::os::unix::net::{UnixListener, UnixStream};
use std::path::PathBuf;

struct State {
    dir: PathBuf,
    id: String,
    config: Value,
    log_path: Option<PathBuf>,
    metrics_path: Option<PathBuf>,
    /// The QMP socket of the QEMU running the guest (`BANGER_FAKE_FC_QEMU`).
    qemu: Option<PathBuf>,
}

/// The environment variable naming the QEMU that boots the guest at InstanceStart.
pub const ENV_QEMU: &str = "BANGER_FAKE_FC_QEMU";

/// The fake jailer: the real one's layout and pid file, none of its privileged steps.
pub fn jailer(args: &[String]) -> ! {
    let value = |flag: &str| args.iter().position(|a| a == flag).and_then(|i| args.get(i + 1)).cloned();
    let base = fs::canonicalize(value("--chroot-base-dir").expect("--chroot-base-dir")).unwrap();
    fs::write(base.with_extension("argv"), args.iter().map(|a| format!("{a}\n")).collect::<String>()).unwrap();
    let config: Value = fs::read_to_string(base.parent().unwrap().join("fake.json"))
        .ok()
        .and_then(|s| serde_json::from_str(&s).ok())
        .unwrap_or(json!({}));
    if let Some(msg) = config["jailer_fail"].as_str() {
        eprintln!("{msg}");
        std::process::exit(1);
    }
    let exec = fs::canonicalize(value("--exec-file").unwrap()).unwrap();
    let name = exec.file_name().unwrap().to_str().unwrap().to_string();
    let id = value("--id").unwrap();
    let chroot = base.join(&name).join(&id).join("root");
    fs::create_dir_all(&chroot).unwrap();
    fs::copy(&exec, chroot.join(&name)).unwrap();
    fs::write(chroot.join("fake.json"), config.to_string()).unwrap();
    let extra = args.iter().skip_while(|a| *a != "--").skip(1);
    // Paths Firecracker would see inside the chroot, relative to it (its working directory):
    // the chroot's own path may be too long for a socket.
    let extra: Vec<String> = extra.map(|a| a.strip_prefix('/').unwrap_or(a).to_string()).collect();
    let child = std::process::Command::new(chroot.join(&name))
        .args(["--id", &id, "--start-time-us", "0"])
        .args(&extra)
        .env("FAKE_JAIL_ROOT", &chroot)
        .current_dir(&chroot)
        .spawn()
        .unwrap();
    fs::write(chroot.join(format!("{name}.pid")), child.id().to_string()).unwrap();
    std::process::exit(0);
}

/// A path Firecracker was given, on the host (inside the fake jail's chroot when jailed).
fn host(p: &str) -> PathBuf {
    match std::env::var_os("FAKE_JAIL_ROOT") {
        Some(root) => PathBuf::from(root).join(p.trim_start_matches('/')),
        None => PathBuf::from(p),
    }
}

pub fn main(args: &[String]) -> ! {
    if args.iter().any(|a| a == "--version") {
        println!("Firecracker v1.16.1-fake\n\nSupported snapshot data format versions: none");
        std::process::exit(0);
    }
    let value = |flag: &str| args.iter().position(|a| a == flag).and_then(|i| args.get(i + 1)).cloned();
    let socket = PathBuf::from(value("--api-sock").expect("--api-sock PATH"));
    let dir = socket.parent().unwrap().to_path_buf();
    fs::write(dir.join("fake.pid"), std::process::id().to_string()).unwrap();
    fs::write(dir.join("fake.argv"), args.iter().map(|a| format!("{a}\n")).collect::<String>()).unwrap();
    let config: Value =
        fs::read_to_string(dir.join("fake.json")).ok().and_then(|s| serde_json::from_str(&s).ok()).unwrap_or(json!({}));
    let mut state =
        State { dir, id: value("--id").unwrap_or_default(), config, log_path: None, metrics_path: None, qemu: None };

    eprintln!("fake firecracker stderr line");
    if let Some(msg) = state.config["exit_before_listen"].as_str() {
        eprintln!("{msg}");
        std::process::exit(1);
    }
    if state.config["never_listen"].as_bool() == Some(true) {
        loop {
            std::thread::sleep(std::time::Duration::from_secs(60));
        }
    }
    let listener = UnixListener::bind(&socket).unwrap();
    println!("fake firecracker {} listening on {}", state.id, socket.display());
    for conn in listener.incoming() {
        let Ok(conn) = conn else { continue };
        serve(&mut state, conn);
    }
    unreachable!()
}

fn serve(state: &mut State, conn: UnixStream) {
    let mut writer = conn.try_clone().unwrap();
    let mut reader = BufReader::new(conn);
    loop {
        let mut line = String::new();
        if reader.read_line(&mut line).unwrap_or(0) == 0 {
            return;
        }
        let mut parts = line.split_whitespace();
        let (method, path) = (parts.next().unwrap_or("").to_string(), parts.next().unwrap_or("").to_string());
        let (mut len, mut content_type) = (0usize, Value::Null);
        loop {
            let mut h = String::new();
            reader.read_line(&mut h).unwrap();
            let h = h.trim_end();
            if h.is_empty() {
                break;
            }
            let (name, v) = h.split_once(':').unwrap();
            if name.eq_ignore_ascii_case("content-length") {
                len = v.trim().parse().unwrap();
            } else if name.eq_ignore_ascii_case("content-type") {
                content_type = json!(v.trim());
            }
        }
        let mut body = vec![0; len];
        reader.read_exact(&mut body).unwrap();
        let body: Value = if body.is_empty() {
            Value::Null
        } else {
            serde_json::from_slice(&body).unwrap_or_else(|_| json!(String::from_utf8_lossy(&body)))
        };
        let request = format!("{method} {path}");
        let record = json!({"method": method, "path": path, "content_type": content_type, "body": body});
        let mut f = OpenOptions::new().create(true).append(true).open(state.dir.join("requests.jsonl")).unwrap();
        writeln!(f, "{record}").unwrap();
        drop(f);

        if state.config["exit_on"].as_str() == Some(&request) {
            let msg = format!("[fake] Firecracker exiting with error on {request}");
            log(state, &msg);
            eprintln!("{msg}");
            std::process::exit(3);
        }
        if state.config["refuse"]["request"].as_str() == Some(&request) {
            let fault = json!({"fault_message": state.config["refuse"]["fault_message"]}).to_string();
            log(state, &format!("[fake] refused {request}"));
            respond(&mut writer, "400 Bad Request", Some(&fault));
            continue;
        }
        match request.as_str() {
            "GET /" => {
                let info = json!({"app_name": "Firecracker", "id": state.id, "state": "Running", "vmm_version": "1.16.1-fake"});
                respond(&mut writer, "200 OK", Some(&info.to_string()));
            }
            "PUT /logger" => {
                let p = host(body["log_path"].as_str().unwrap());
                assert!(p.exists(), "Firecracker needs the log file to exist");
                state.log_path = Some(p);
                log(state, "[fake] logger configured");
                respond(&mut writer, "204 No Content", None);
            }
            "PUT /metrics" => {
                let p = host(body["metrics_path"].as_str().unwrap());
                assert!(p.exists(), "Firecracker needs the metrics file to exist");
                state.metrics_path = Some(p);
                respond(&mut writer, "204 No Content", None);
            }
            // Each flush: the counts since the previous one (fixed ones here).
            "PUT /actions" if body["action_type"] == "FlushMetrics" => {
                if let Some(p) = &state.metrics_path {
                    let line = json!({
                        "utc_timestamp_ms": 1_700_000_000_000u64,
                        "block": {"read_bytes": 4096, "write_bytes": 1024, "read_count": 1, "write_count": 1},
                        "block_work": {"read_bytes": 4096, "write_bytes": 1024},
                        "net": {"rx_bytes_count": 300, "tx_bytes_count": 200, "rx_packets_count": 3, "tx_packets_count": 2}
                    });
                    let mut f = OpenOptions::new().append(true).open(p).unwrap();
                    writeln!(f, "{line}").unwrap();
                }
                respond(&mut writer, "204 No Content", None);
            }
            "PUT /actions" if body["action_type"] == "InstanceStart" => {
                if let Some(qemu) = std::env::var_os(ENV_QEMU) {
                    match boot_qemu(state, &PathBuf::from(qemu)) {
                        Ok(()) => respond(&mut writer, "204 No Content", None),
                        Err(e) => {
                            let fault = json!({ "fault_message": format!("[fake] {e}") }).to_string();
                            respond(&mut writer, "400 Bad Request", Some(&fault));
                        }
                    }
                    continue;
                }
                println!("fake guest: serial console line");
                // What the guest kernel prints, as `fake.json` says (a KVM probe watches it).
                if let Some(text) = state.config["console"].as_str() {
                    println!("{text}");
                }
                respond(&mut writer, "204 No Content", None);
            }
            "PUT /actions" if body["action_type"] == "SendCtrlAltDel" && state.qemu.is_some() => {
                let qmp = state.qemu.clone().unwrap_or_default();
                match banger_vmm::qemu::Qmp::connect(&qmp).and_then(|mut q| q.execute("system_powerdown", None)) {
                    Ok(_) => respond(&mut writer, "204 No Content", None),
                    Err(e) => {
                        let fault = json!({ "fault_message": format!("[fake] {e}") }).to_string();
                        respond(&mut writer, "400 Bad Request", Some(&fault));
                    }
                }
            }
            // Jailed, it can open only what is inside its chroot.
            _ if std::env::var_os("FAKE_JAIL_ROOT").is_some()
                && ["kernel_image_path", "initrd_path", "path_on_host"]
                    .iter()
                    .filter_map(|k| body[*k].as_str())
                    .any(|p| !host(p).exists()) =>
            {
                let fault = json!({"fault_message": format!("[fake] not in the jail: {body}")}).to_string();
                respond(&mut writer, "400 Bad Request", Some(&fault));
            }
            _ => respond(&mut writer, "204 No Content", None),
        }
    }
}

fn log(state: &State, line: &str) {
    if let Some(p) = &state.log_path {
        let mut f = OpenOptions::new().append(true).open(p).unwrap();
        writeln!(f, "{line}").unwrap();
    }
}

fn respond(w: &mut UnixStream, status: &str, body: Option<&str>) {
    let msg = match body {
        Some(b) => format!(
            "HTTP/1.1 {status}\r\nServer: Firecracker API\r\nConnection: keep-alive\r\nContent-Type: application/json\r\nContent-Length: {}\r\n\r\n{b}",
            b.len()
        ),
        None => format!("HTTP/1.1 {status}\r\nServer: Firecracker API\r\nConnection: keep-alive\r\n\r\n"),
    };
    let _ = w.write_all(msg.as_bytes());
}

/// Boot what the API requests so far configured as a real guest under `qemu` (TCG), its console
/// on this process's stdout. This process exits when QEMU does; QEMU is killed if this process dies.
fn boot_qemu(state: &mut State, qemu: &std::path::Path) -> Result<(), String> {
    use banger_vmm::{Accel, Disk, Nic, VmConfig};
    use std::os::unix::process::CommandExt;
    let text = fs::read_to_string(state.dir.join("requests.jsonl")).map_err(|e| e.to_string())?;
    let mut config = VmConfig {
        name: state.id.clone(),
        kernel: PathBuf::new(),
        initrd: None,
        cmdline: String::new(),
        disks: vec![],
        memory_mib: 128,
        vcpus: 1,
        nic: None,
        // Relative in a fake jail (its working directory): the chroot's path may be too long
        // for QMP's socket.
        run_dir: if std::env::var_os("FAKE_JAIL_ROOT").is_some() { "qemu".into() } else { state.dir.join("qemu") },
        console_log: PathBuf::from(format!("/proc/{}/fd/1", std::process::id())),
        shares: vec![],
        jail_dir: None,
    };
    for line in text.lines() {
        let r: Value = serde_json::from_str(line).map_err(|e| e.to_string())?;
        let (path, b) = (r["path"].as_str().unwrap_or(""), &r["body"]);
        match path {
            "/machine-config" => {
                config.memory_mib = b["mem_size_mib"].as_u64().unwrap_or(128) as u32;
                config.vcpus = b["vcpu_count"].as_u64().unwrap_or(1) as u32;
            }
            "/boot-source" => {
                config.kernel = host(b["kernel_image_path"].as_str().unwrap_or(""));
                config.initrd = b["initrd_path"].as_str().map(host);
                let args = b["boot_args"].as_str().unwrap_or("");
                // Firecracker's own console arguments; QEMU's driver adds its own.
                let prefix = banger_vmm::firecracker::BOOT_ARGS_PREFIX;
                config.cmdline = args.strip_prefix(prefix).unwrap_or(args).trim().to_string();
            }
            p if p.starts_with("/drives/") => config.disks.push(Disk {
                id: b["drive_id"].as_str().unwrap_or("").to_string(),
                path: host(b["path_on_host"].as_str().unwrap_or("")),
                read_only: b["is_read_only"].as_bool().unwrap_or(false),
            }),
            p if p.starts_with("/network-interfaces/") => {
                config.nic = Some(Nic {
                    tap: b["host_dev_name"].as_str().unwrap_or("").to_string(),
                    mac: b["guest_mac"].as_str().unwrap_or("").to_string(),
                })
            }
            _ => {}
        }
    }
    fs::create_dir_all(&config.run_dir).map_err(|e| e.to_string())?;
    let qmp = config.run_dir.join("qmp.sock");
    let log = fs::File::create(config.run_dir.join("qemu.log")).map_err(|e| e.to_string())?;
    let log2 = log.try_clone().map_err(|e| e.to_string())?;
    let args = banger_vmm::qemu::Qemu::new(qemu.to_path_buf(), Accel::Tcg).args(&config, &qmp);
    let mut cmd = std::process::Command::new(qemu);
    cmd.args(args).stdin(std::process::Stdio::null()).stdout(log).stderr(log2);
    // SAFETY: prctl is async-signal-safe and touches nothing else.
    unsafe {
        cmd.pre_exec(|| {
            if libc::prctl(libc::PR_SET_PDEATHSIG, libc::SIGKILL) != 0 {
                return Err(std::io::Error::last_os_error());
            }
            Ok(())
        });
    }
    let mut child = cmd.spawn().map_err(|e| format!("cannot start {}: {e}", qemu.display()))?;
    let deadline = std::time::Instant::now() + std::time::Duration::from_secs(15);
    while std::os::unix::net::UnixStream::connect(&qmp).is_err() {
        if let Ok(Some(status)) = child.try_wait() {
            let said = fs::read_to_string(config.run_dir.join("qemu.log")).unwrap_or_default();
            return Err(format!("QEMU exited ({status}): {}", said.trim()));
        }
        if std::time::Instant::now() > deadline {
            return Err("QEMU did not open its QMP socket".into());
        }
        std::thread::sleep(std::time::Duration::from_millis(20));
    }
    state.qemu = Some(qmp);
    // The guest powered off or died: so does this "Firecracker".
    std::thread::spawn(move || {
        let _ = child.wait();
        std::process::exit(0);
    });
    Ok(())
}

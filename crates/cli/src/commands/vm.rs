//! `banger vm …`.

use crate::cli::VmCommand;
use crate::context::{Ctx, block_on};
use crate::error::{CliError, CliResult};
use crate::output;
use banger_api::event::EventKind;
use banger_api::exit;
use banger_api::request::{CreateVm, KillVm, SetVm, StopVm};
use banger_api::response::{Deleted, Phase, Vm, VmList};
use banger_api::routes::{self, vm_path};
use banger_client::Client;
use banger_config::size::format_size;
use std::io::{Read, Seek, SeekFrom, Write};
use std::time::{Duration, Instant};

pub fn run(ctx: &Ctx, cmd: VmCommand) -> CliResult {
    match cmd {
        VmCommand::Create { name, image, memory, vcpu, disk_size, nat, publish, mounts, no_start, json } => {
            let req =
                CreateVm { name, image, memory_mib: memory, vcpus: vcpu, disk_size, nat, no_start, publish, mounts };
            let vm: Vm = streamed(&ctx.client()?, routes::VMS, &req)?;
            done(&vm, json, &format!("created {}", vm.name))
        }
        VmCommand::List { json, watch: false } => list(ctx, json),
        VmCommand::List { json, watch: true } => watch(ctx, json),
        VmCommand::Show { name, json } => {
            let vm: Vm = block_on(ctx.client()?.get(&vm_path(routes::VM, &name)))?;
            if json {
                output::json(&vm)
            } else {
                show(&vm)
            }
            Ok(())
        }
        VmCommand::Start { name, json } => {
            let vm: Vm = streamed(&ctx.client()?, &vm_path(routes::VM_START, &name), &())?;
            done(&vm, json, &format!("started {}", vm.name))
        }
        VmCommand::Stop { name, timeout, json } => {
            let vm: Vm = streamed(&ctx.client()?, &vm_path(routes::VM_STOP, &name), &StopVm { timeout_secs: timeout })?;
            done(&vm, json, &format!("stopped {}", vm.name))
        }
        VmCommand::Restart { name, timeout, json } => {
            let req = StopVm { timeout_secs: timeout };
            let vm: Vm = streamed(&ctx.client()?, &vm_path(routes::VM_RESTART, &name), &req)?;
            done(&vm, json, &format!("restarted {}", vm.name))
        }
        VmCommand::Set { name, memory, vcpu, disk_size, nat, no_nat, publish, unpublish, mounts, unmount, json } => {
            let nat = if nat {
                Some(true)
            } else if no_nat {
                Some(false)
            } else {
                None
            };
            let req = SetVm { memory_mib: memory, vcpus: vcpu, disk_size, nat, publish, unpublish, mounts, unmount };
            crate::commands::vm_set::run(ctx, &name, req, json)
        }
        VmCommand::Stats { name, json, watch } => crate::commands::vm_stats::run(ctx, &name, json, watch),
        VmCommand::Kill { name, signal, json } => {
            let vm: Vm =
                block_on(ctx.client()?.post(&vm_path(routes::VM_KILL, &name), &KillVm { signal: signal.clone() }))?;
            done(
                &vm,
                json,
                &format!(
                    "sent SIG{} to {}'s VMM; it is {}",
                    signal.trim_start_matches("SIG"),
                    vm.name,
                    vm.state.as_str()
                ),
            )
        }
        VmCommand::Delete { name, force } => {
            let path = format!("{}{}", vm_path(routes::VM, &name), if force { "?force=true" } else { "" });
            let d: Deleted = block_on(ctx.client()?.delete(&path))?;
            println!("deleted {}", d.name);
            Ok(())
        }
        VmCommand::Ssh { name, command } => ssh(ctx, &name, &command),
        VmCommand::Cp { src, dst } => crate::commands::vm_cp::run(ctx, &src, &dst),
        VmCommand::Exec { name, tty, env, workdir, argv } => {
            crate::commands::vm_exec::run(ctx, &name, tty, &env, workdir.as_deref(), &argv)
        }
        VmCommand::Logs { name, follow, json } => logs(ctx, &name, follow, json),
        VmCommand::PortForward { name, ports } => crate::commands::vm_port_forward::run(ctx, &name, ports),
    }
}

/// Send a long-running request, printing each stage with the time since we started.
fn streamed<B: serde::Serialize, T: serde::de::DeserializeOwned>(
    client: &Client,
    path: &str,
    body: &B,
) -> CliResult<T> {
    let t0 = Instant::now();
    let result = block_on(client.post_stream(path, body, |_stage, message| {
        eprintln!("{:>6.1}s  {message}", t0.elapsed().as_secs_f64());
    }));
    Ok(result?)
}

fn done(vm: &Vm, json: bool, what: &str) -> CliResult {
    if json {
        output::json(vm);
    } else {
        println!("{what} ({}, {})", vm.state.as_str(), vm.ip);
    }
    Ok(())
}

fn list(ctx: &Ctx, json: bool) -> CliResult {
    if json {
        output::json_raw(&block_on(ctx.client()?.get_raw(routes::VMS))?);
        return Ok(());
    }
    let list: VmList = block_on(ctx.client()?.get(routes::VMS))?;
    print!("{}", render_list(&list, crate::context::now()));
    Ok(())
}

fn render_list(list: &VmList, now: u64) -> String {
    if list.vms.is_empty() {
        return "no VMs (create one with `banger vm create`)\n".into();
    }
    let rows: Vec<Vec<String>> = list
        .vms
        .iter()
        .map(|v| {
            vec![
                v.name.clone(),
                v.state.as_str().into(),
                v.ip.clone(),
                v.image.clone(),
                v.vcpus.to_string(),
                format!("{}M", v.memory_mib),
                format_size(v.disk_size),
                v.backend.clone().unwrap_or_else(|| "-".into()),
                // From the start time, so a watched list ages without asking the daemon.
                v.started_at.map(|t| output::duration(now.saturating_sub(t) as f64)).unwrap_or_else(|| "-".into()),
            ]
        })
        .collect();
    output::render_table(&["NAME", "STATE", "IP", "IMAGE", "VCPU", "MEMORY", "DISK", "BACKEND", "UPTIME"], &rows)
}

/// `vm list --watch`: the list is fetched again on each event that changes a VM (never by
/// polling); between events a terminal redraws once a second so uptimes move. A daemon that
/// went away is said on the screen until it is back.
fn watch(ctx: &Ctx, json: bool) -> CliResult {
    let client = ctx.client()?;
    crate::commands::watch::watch(
        ctx,
        json,
        crate::commands::watch::View {
            every_second: false,
            // Progress changes nothing in the list; anything else may.
            relevant: |e, _| !matches!(e.kind, EventKind::Progress { .. }),
            subject: String::new(),
            fetch: || Ok(block_on(client.get::<VmList>(routes::VMS))?),
            render: |list: &VmList| render_list(list, crate::context::now()),
            _t: std::marker::PhantomData,
        },
    )
}

fn show(v: &Vm) {
    let mut rows = vec![
        ("name", v.name.clone()),
        ("state", v.state.as_str().to_string()),
        ("image", v.image.clone()),
        (
            "backend",
            match (&v.backend, &v.accel) {
                (Some(b), Some(a)) => format!("{b} ({a})"),
                _ => "-".into(),
            },
        ),
        ("pid", v.pid.map(|p| p.to_string()).unwrap_or_else(|| "-".into())),
    ];
    match (&v.jail, v.jailed) {
        (Some(j), _) => rows.push((
            "jail",
            format!(
                "{} (uid {}, gid {}; {})",
                j.chroot.display(),
                j.uid,
                j.gid,
                if j.cgroup_limits.is_empty() {
                    format!("no cgroup limits: {}", j.cgroup_note.as_deref().unwrap_or("not set"))
                } else {
                    format!("cgroup v2 {}", j.cgroup_limits.join(", "))
                }
            ),
        )),
        (None, Some(true)) => rows.push(("jail", "jailed".into())),
        (None, Some(false)) => rows.push(("jail", "none: Firecracker runs without the jailer".into())),
        (None, None) => {}
    }
    rows.extend([
        ("uptime", v.uptime_secs.map(|s| output::duration(s as f64)).unwrap_or_else(|| "-".into())),
        ("vcpu", v.vcpus.to_string()),
        ("memory", format!("{} MiB", v.memory_mib)),
        ("ip", format!("{} (host {}, tap {}, mac {})", v.ip, v.host_ip, v.tap, v.mac)),
        ("nat", if v.nat { "on" } else { "off" }.into()),
    ]);
    for p in &v.ports {
        let s = &p.spec;
        let state = match (p.persistent, p.active, &p.error) {
            (true, _, Some(e)) => format!("published, NOT forwarded: {e}"),
            (true, true, None) => "published, forwarding".into(),
            (true, false, None) => "published, forwarded while it runs".into(),
            (false, _, _) => "vm port-forward, while it runs".into(),
        };
        rows.push(("port", format!("{}:{} → {}:{}/{} ({state})", fmt_ip(s), s.host_port, v.ip, s.guest_port, s.proto)));
    }
    for m in &v.mounts {
        let mode = if m.readonly { "read-only" } else { "read-write" };
        rows.push(("mount", format!("{} → {} ({mode})", m.host.display(), m.guest.display())));
    }
    for d in &v.disks {
        rows.push((
            "disk",
            format!(
                "{:<8} {} ({} , {} allocated{})",
                d.role,
                d.path.display(),
                format_size(d.size),
                format_size(d.allocated),
                if d.read_only { ", read-only" } else { "" }
            ),
        ));
    }
    rows.push(("console", v.console_log.display().to_string()));
    rows.push((
        "ssh",
        format!("banger vm ssh {}{}", v.name, if v.ssh.pinned { "" } else { " (host key not pinned yet)" }),
    ));
    if let Some(e) = &v.last_error {
        rows.push(("last error", e.clone()));
    }
    output::pairs(&rows);
}

fn fmt_ip(s: &banger_api::PortSpec) -> String {
    match s.host_ip {
        std::net::IpAddr::V6(ip) => format!("[{ip}]"),
        ip => ip.to_string(),
    }
}

fn ssh(ctx: &Ctx, name: &str, command: &[String]) -> CliResult {
    use std::os::unix::process::CommandExt;
    let vm: Vm = block_on(ctx.client()?.get(&vm_path(routes::VM, name)))?;
    let err = std::process::Command::new("ssh").args(ssh_args(&vm, &[], command)?).exec();
    Err(CliError::new(
        if err.kind() == std::io::ErrorKind::NotFound { exit::NOT_FOUND } else { exit::FAILURE },
        format!("cannot run ssh: {err} (Debian package openssh-client)"),
    ))
}

/// An interactive `ssh` session in running VM `name` (a login shell with a terminal), waited
/// for; the session's own exit status does not matter.
pub fn interactive_ssh(ctx: &Ctx, name: &str) -> CliResult {
    let vm: Vm = block_on(ctx.client()?.get(&vm_path(routes::VM, name)))?;
    std::process::Command::new("ssh")
        .args(ssh_args(&vm, &["-t"], &[])?)
        .status()
        .map(|_| ())
        .map_err(|e| CliError::failure(format!("cannot run ssh: {e} (Debian package openssh-client)")))
}

/// The `ssh` arguments that reach running `vm` with the bundle key and its pinned host key:
/// `extra` options, then the destination, then `-- command…` (none: a login shell). Like
/// `ssh` itself, the guest's shell joins and interprets the command words.
pub fn ssh_args(vm: &Vm, extra: &[&str], command: &[String]) -> CliResult<Vec<String>> {
    let name = &vm.name;
    if vm.state != Phase::Running {
        return Err(CliError::new(
            exit::CONFLICT,
            format!("VM {name} is {}; start it with `banger vm start {name}`", vm.state.as_str()),
        ));
    }
    if !vm.ssh.pinned {
        return Err(CliError::new(
            exit::CONFLICT,
            format!("VM {name} has no pinned SSH host key yet; restart it with `banger vm restart {name}`"),
        ));
    }
    let mut args = vm.ssh.options();
    args.extend(extra.iter().map(|s| s.to_string()));
    args.push(vm.ssh.destination());
    if !command.is_empty() {
        args.push("--".into());
        args.extend(command.iter().cloned());
    }
    Ok(args)
}

/// Run `command` in running `vm` over SSH (no terminal, no input, never a password prompt),
/// killed after `timeout`; its standard output. A non-zero exit is an error naming the command.
pub fn run_in_guest(vm: &Vm, command: &[String], timeout: Duration) -> CliResult<String> {
    let args = ssh_args(vm, &["-T", "-o", "BatchMode=yes", "-o", "ConnectTimeout=10"], command)?;
    let what = command.join(" ");
    match banger_host::run_with_timeout("ssh", &args, timeout) {
        Ok(out) => Ok(String::from_utf8_lossy(&out.stdout).into_owned()),
        Err(banger_host::HostError::Failed { status, stderr, .. }) => {
            Err(CliError::failure(format!("`{what}` in VM {} failed ({status}): {stderr}", vm.name)))
        }
        Err(banger_host::HostError::TimedOut { secs, .. }) => Err(CliError::failure(format!(
            "`{what}` in VM {} did not finish within {secs}s, so it was stopped",
            vm.name
        ))),
        Err(e) => Err(CliError::new(
            if matches!(e, banger_host::HostError::Missing { .. }) { exit::NOT_FOUND } else { exit::FAILURE },
            e.to_string(),
        )),
    }
}

fn logs(ctx: &Ctx, name: &str, follow: bool, json: bool) -> CliResult {
    let vm: Vm = block_on(ctx.client()?.get(&vm_path(routes::VM, name)))?;
    let path = vm.console_log;
    let mut file = match std::fs::File::open(&path) {
        Ok(f) => f,
        Err(e) if e.kind() == std::io::ErrorKind::NotFound && !follow => {
            if json {
                output::json(&serde_json::json!({ "name": name, "path": path, "text": "" }));
            }
            return Ok(());
        }
        Err(e) if e.kind() == std::io::ErrorKind::NotFound => {
            while !path.exists() {
                std::thread::sleep(Duration::from_millis(200));
            }
            std::fs::File::open(&path)?
        }
        Err(e) => return Err(CliError::failure(format!("cannot read {}: {e}", path.display()))),
    };
    if json {
        let mut text = Vec::new();
        file.read_to_end(&mut text)?;
        output::json(&serde_json::json!({ "name": name, "path": path, "text": String::from_utf8_lossy(&text) }));
        return Ok(());
    }
    let mut out = std::io::stdout().lock();
    let mut buf = vec![0u8; 64 * 1024];
    loop {
        let n = file.read(&mut buf)?;
        if n > 0 {
            out.write_all(&buf[..n])?;
            continue;
        }
        if !follow {
            return Ok(());
        }
        out.flush()?;
        std::thread::sleep(Duration::from_millis(200));
        // The log may have been truncated (VM deleted and recreated): start over.
        let pos = file.stream_position()?;
        if std::fs::metadata(&path).map(|m| m.len() < pos).unwrap_or(false) {
            file.seek(SeekFrom::Start(0))?;
        }
    }
}

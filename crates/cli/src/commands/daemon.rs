//! `banger daemon status|socket|stop`.

use crate::cli::DaemonCommand;
use crate::context::{Ctx, block_on};
use crate::error::{CliError, CliResult};
use crate::output;
use banger_api::exit;
use banger_api::request::Shutdown;
use banger_api::response::{DaemonStatus, ShutdownAccepted};
use banger_api::routes;
use banger_client::autostart::is_listening;
use banger_config::dirs::lock_is_held;
use std::time::{Duration, Instant};

pub fn run(ctx: &Ctx, cmd: DaemonCommand) -> CliResult {
    match cmd {
        DaemonCommand::Status { json, no_start, reprobe } => status(ctx, json, no_start, reprobe),
        DaemonCommand::Socket { json } => {
            let socket = ctx.dirs.socket();
            if json {
                output::json(&serde_json::json!({ "socket": socket, "listening": is_listening(&socket) }));
            } else {
                println!("{}", socket.display());
            }
            Ok(())
        }
        DaemonCommand::Stop { timeout } => stop(ctx, Duration::from_secs(timeout)),
    }
}

fn status(ctx: &Ctx, json: bool, no_start: bool, reprobe: bool) -> CliResult {
    let client = if no_start { ctx.client_no_start() } else { ctx.client()? };
    let path = if reprobe { format!("{}?reprobe=true", routes::DAEMON_STATUS) } else { routes::DAEMON_STATUS.into() };
    let s: DaemonStatus = block_on(client.get(&path))?;
    if json {
        output::json(&s);
        return Ok(());
    }
    let runtime = format!(
        "{} ({}{})",
        s.runtime.dir.display(),
        s.runtime.source,
        if s.runtime.present { "" } else { "; missing: run `make runtime-bundle` or `make runtime-build`" }
    );
    let mut rows = vec![
        ("pid", s.pid.to_string()),
        ("version", s.version.clone()),
        (
            "build",
            if s.build.is_empty() { "unknown (bangerd is older than build ids)".into() } else { s.build.clone() },
        ),
        ("uptime", output::duration(s.uptime_secs)),
        ("socket", s.socket.display().to_string()),
        ("log", s.log_file.display().to_string()),
        ("config", s.config_file.display().to_string()),
        ("state", s.state_dir.display().to_string()),
        ("cache", s.cache_dir.display().to_string()),
        ("database", format!("{} (schema {})", s.database.display(), s.schema_version)),
        ("runtime", runtime),
        ("vmm", {
            let fc = s.firecracker_bin.as_ref().map(|p| p.display().to_string()).unwrap_or_else(|| "not found".into());
            format!("{} (firecracker: {fc}; qemu: {})", s.vmm, s.qemu_bin.display())
        }),
        (
            "kvm",
            if s.kvm.is_empty() {
                "not probed yet (the first boot probes it; `--reprobe` now)".into()
            } else {
                s.kvm
                    .iter()
                    .map(|k| {
                        // Only QEMU falls back to software emulation.
                        let fallback = if k.vmm == "qemu" && k.verdict != "runs" { "; QEMU uses TCG" } else { "" };
                        format!("{}: {}{fallback}", k.vmm, k.detail)
                    })
                    .collect::<Vec<_>>()
                    .join("\n     ")
            },
        ),
    ];
    if let Some(j) = &s.jailer {
        let bin = j.bin.as_ref().map(|b| format!(" ({})", b.display())).unwrap_or_default();
        rows.push(("jailer", format!("{}{bin}: {}", j.state, j.detail)));
    }
    rows.push((
        "dns",
        match (&s.dns.listen, &s.dns.error) {
            (Some(l), _) => format!("{l} ({} names; `banger dns status`)", s.dns.records.len()),
            (None, Some(e)) => e.clone(),
            (None, None) => s.dns.mode.clone(),
        },
    ));
    output::pairs(&rows);
    Ok(())
}

fn stop(ctx: &Ctx, timeout: Duration) -> CliResult {
    let socket = ctx.dirs.socket();
    if !is_listening(&socket) {
        println!("bangerd is not running");
        return Ok(());
    }
    // Stopping is what a build warning would advise.
    banger_client::silence_build_warning();
    let accepted: ShutdownAccepted = block_on(ctx.client_no_start().post(routes::DAEMON_SHUTDOWN, &Shutdown {}))?;
    // The daemon removes its socket and releases its lock as its last acts.
    let lock = ctx.dirs.daemon_lock();
    let deadline = Instant::now() + timeout;
    while lock_is_held(&lock) {
        if Instant::now() >= deadline {
            return Err(CliError::new(
                exit::FAILURE,
                format!("bangerd (pid {}) did not exit within {}s", accepted.pid, timeout.as_secs()),
            ));
        }
        std::thread::sleep(Duration::from_millis(10));
    }
    println!("bangerd (pid {}) stopped", accepted.pid);
    Ok(())
}

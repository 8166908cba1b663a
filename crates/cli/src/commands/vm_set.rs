//! `banger vm set NAME [--memory MiB] [--vcpu N] [--disk-size SIZE] [--nat | --no-nat]
//! [--publish SPEC]… [--unpublish PORT]… [--mount SPEC]… [--unmount GUESTDIR]…`.

use crate::context::{Ctx, block_on};
use crate::error::CliResult;
use crate::output;
use banger_api::request::SetVm;
use banger_api::response::Vm;
use banger_api::routes::{self, vm_path};
use banger_client::Method;
use banger_config::size::format_size;
use std::time::Instant;

pub fn run(ctx: &Ctx, name: &str, req: SetVm, json: bool) -> CliResult {
    let t0 = Instant::now();
    let vm: Vm = block_on(ctx.client()?.stream(Method::PATCH, &vm_path(routes::VM, name), &req, |_stage, message| {
        eprintln!("{:>6.1}s  {message}", t0.elapsed().as_secs_f64());
    }))?;
    if json {
        output::json(&vm);
        return Ok(());
    }
    let mut now = Vec::new();
    if req.memory_mib.is_some() {
        now.push(format!("memory {} MiB", vm.memory_mib));
    }
    if req.vcpus.is_some() {
        now.push(format!("{} vCPU{}", vm.vcpus, if vm.vcpus == 1 { "" } else { "s" }));
    }
    if req.disk_size.is_some() {
        now.push(format!("disk {}", format_size(vm.disk_size)));
    }
    if req.nat.is_some() {
        now.push(format!("NAT {}", if vm.nat { "on" } else { "off" }));
    }
    let ports = !req.publish.is_empty() || !req.unpublish.is_empty();
    if ports {
        let published: Vec<String> = vm.ports.iter().filter(|p| p.persistent).map(|p| p.spec.to_string()).collect();
        now.push(if published.is_empty() {
            "no published ports".into()
        } else {
            format!("ports {}", published.join(", "))
        });
    }
    if !req.mounts.is_empty() || !req.unmount.is_empty() {
        let mounts: Vec<String> = vm.mounts.iter().map(ToString::to_string).collect();
        now.push(if mounts.is_empty() {
            "no host folders".into()
        } else {
            format!("host folders {}", mounts.join(", "))
        });
    }
    let live = usize::from(req.nat.is_some()) + usize::from(ports);
    // NAT and ports change at once on a running VM; everything else from its next start.
    let when = match (vm.state, live == now.len()) {
        (banger_api::response::Phase::Running, true) => " (in effect now)",
        (banger_api::response::Phase::Running, false) => "",
        _ => " (from its next start)",
    };
    println!("{}: {}{when}", vm.name, now.join(", "));
    Ok(())
}

//! `banger vm set NAME [--memory MiB] [--vcpu N] [--disk-size SIZE] [--nat | --no-nat]`.

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
    let when = match (vm.state, req.nat.is_some(), now.len()) {
        (banger_api::response::Phase::Running, true, 1) => " (in effect now)",
        (banger_api::response::Phase::Running, _, _) => "",
        _ => " (from its next start)",
    };
    println!("{}: {}{when}", vm.name, now.join(", "));
    Ok(())
}

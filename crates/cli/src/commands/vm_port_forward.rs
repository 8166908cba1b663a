//! `banger vm port-forward NAME [HOSTIP:]HOSTPORT:GUESTPORT[/PROTO]…`: bangerd forwards the
//! ports for as long as this command runs (its request stays open); Ctrl-C ends it.

use crate::context::{Ctx, block_on};
use crate::error::CliResult;
use banger_api::PortSpec;
use banger_api::request::ForwardPorts;
use banger_api::routes::{self, vm_path};
use std::io::Write;

pub fn run(ctx: &Ctx, name: &str, ports: Vec<PortSpec>) -> CliResult {
    let client = ctx.client()?;
    let mut first = true;
    // One line per forward on stdout (flushed: a script may wait for it to learn a picked port).
    let ended: () = block_on(client.post_stream(
        &vm_path(routes::VM_FORWARD, name),
        &ForwardPorts { ports },
        |_stage, message| {
            let mut out = std::io::stdout().lock();
            let _ = writeln!(out, "forwarding {message}");
            let _ = out.flush();
            if first {
                first = false;
                eprintln!("(Ctrl-C to stop)");
            }
        },
    ))?;
    Ok(ended)
}

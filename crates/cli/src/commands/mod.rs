//! One module per subcommand.

pub mod completions;
pub mod config;
pub mod daemon;
pub mod dns;
pub mod events;
pub mod image;
pub mod internal;
pub mod runtime;
pub mod ssh_config;
pub mod tui;
pub mod verify;
pub mod vm;
pub mod vm_cp;
pub mod vm_exec;
pub mod vm_port_forward;
pub mod vm_set;
pub mod vm_stats;
pub mod watch;

use crate::cli::{Cli, Command};
use crate::context::Ctx;
use crate::error::CliResult;

pub fn run(cli: Cli) -> CliResult {
    match cli.command {
        Command::Completions(args) => completions::run(args),
        Command::SshConfig { install, uninstall, json } => ssh_config::run(&Ctx::new()?, install, uninstall, json),
        Command::Vm(cmd) => vm::run(&Ctx::new()?, cmd),
        Command::Events { json, since } => events::run(&Ctx::new()?, json, since),
        Command::Daemon(cmd) => daemon::run(&Ctx::new()?, cmd),
        Command::Dns(cmd) => dns::run(&Ctx::new()?, cmd),
        Command::Image(cmd) => image::run(&Ctx::new()?, cmd),
        Command::Config(cmd) => config::run(&Ctx::new()?, cmd),
        Command::Runtime(cmd) => runtime::run(&Ctx::new()?, cmd),
        Command::Verify(args) => verify::run(&Ctx::new()?, args),
        Command::Tui { trace_keys } => tui::run(&Ctx::new()?, trace_keys),
        Command::Internal(cmd) => internal::run(cmd),
    }
}

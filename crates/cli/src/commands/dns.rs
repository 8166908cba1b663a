//! `banger dns status|setup`.

use crate::cli::DnsCommand;
use crate::context::{Ctx, block_on};
use crate::error::{CliError, CliResult};
use crate::output;
use banger_api::exit;
use banger_api::response::DnsStatus;
use banger_api::routes;
use banger_host::HostError;
use banger_net::resolver;

pub fn run(ctx: &Ctx, cmd: DnsCommand) -> CliResult {
    match cmd {
        DnsCommand::Status { json } => {
            if json {
                output::json_raw(&block_on(ctx.client()?.get_raw(routes::DNS))?);
            } else {
                let s: DnsStatus = block_on(ctx.client()?.get(routes::DNS))?;
                print!("{}", render(&s, &resolver::link_name(&banger_net::tap::prefix_for(&ctx.dirs.state))));
            }
            Ok(())
        }
        DnsCommand::Setup { undo } => setup(ctx, undo),
    }
}

fn host_error(e: HostError) -> CliError {
    let code = match e {
        HostError::SudoPassword { .. } | HostError::NoSudo { .. } => exit::PERMISSION,
        HostError::Missing { .. } => exit::NOT_FOUND,
        _ => exit::FAILURE,
    };
    CliError::new(code, e.to_string())
}

fn setup(ctx: &Ctx, undo: bool) -> CliResult {
    let link = resolver::link_name(&banger_net::tap::prefix_for(&ctx.dirs.state));
    let marker = ctx.dirs.dns_setup_marker();
    if undo {
        resolver::teardown(&link).map_err(host_error)?;
        let _ = std::fs::remove_file(&marker);
        println!("removed the .vm routing ({link})");
        return Ok(());
    }
    let s: DnsStatus = block_on(ctx.client()?.get(routes::DNS))?;
    let Some(listen) = s.listen.as_deref().and_then(|a| a.parse().ok()) else {
        let why = s.error.unwrap_or_else(|| format!("`dns` is \"{}\" in the config, not \"builtin\"", s.mode));
        return Err(CliError::new(exit::CONFLICT, format!("bangerd does not answer for .vm: {why}")));
    };
    if !resolver::resolved_running() {
        print!("{}", resolver::manual_lines(listen));
        return Ok(());
    }
    resolver::setup_resolved(&link, listen).map_err(host_error)?;
    std::fs::write(&marker, format!("{link} {listen}\n"))?;
    println!(
        "systemd-resolved now sends .vm queries to bangerd at {listen} (link {link}); try: resolvectl query NAME.vm"
    );
    Ok(())
}

pub fn render(s: &DnsStatus, link: &str) -> String {
    let mut rows = vec![("mode", s.mode.clone())];
    if let Some(l) = &s.listen {
        rows.push(("host", format!("{l} (`.vm` only)")));
    }
    if let Some(p) = s.port {
        rows.push(("guests", format!("port 53 of each VM's host address (redirected to {p}); other names forwarded")));
    }
    if !s.upstream.is_empty() {
        rows.push(("upstream", s.upstream.join(", ")));
    }
    if let Some(e) = &s.error {
        rows.push(("error", e.clone()));
    }
    if s.listen.is_some() {
        let wired = if resolver::link_exists(link) {
            format!("systemd-resolved via {link}")
        } else {
            "not wired to the host's resolver (`banger dns setup`)".into()
        };
        rows.push(("host resolver", wired));
    }
    let names = if s.records.is_empty() {
        "none (no VM is running)".into()
    } else {
        s.records.iter().map(|r| format!("{} {}", r.name, r.ip)).collect::<Vec<_>>().join(", ")
    };
    rows.push(("names", names));
    output::render_pairs(&rows)
}

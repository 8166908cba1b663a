//! `banger vm stats NAME [--json] [--watch]`.

use crate::context::{Ctx, block_on};
use crate::error::CliResult;
use crate::output;
use banger_api::event::EventKind;
use banger_api::response::VmStats;
use banger_api::routes::{self, vm_path};
use banger_config::size::format_size;

pub fn run(ctx: &Ctx, name: &str, json: bool, watch: bool) -> CliResult {
    let client = ctx.client()?;
    let path = vm_path(routes::VM_STATS, name);
    if !watch {
        if json {
            output::json_raw(&block_on(client.get_raw(&path))?);
        } else {
            let stats: VmStats = block_on(client.get(&path))?;
            print!("{}", render(&stats));
        }
        return Ok(());
    }
    crate::commands::watch::watch(
        ctx,
        json,
        crate::commands::watch::View {
            every_second: true,
            // Figures are refetched each second; a phase change or `vm set` redraws at once.
            relevant: |e, vm| {
                e.vm.as_deref() == Some(vm) && !matches!(e.kind, EventKind::Progress { .. } | EventKind::Error { .. })
            },
            subject: name.to_string(),
            fetch: || Ok(block_on(client.get::<VmStats>(&path))?),
            render,
            _t: std::marker::PhantomData,
        },
    )
}

fn pct(used: u64, total: u64) -> String {
    if total == 0 { "-".into() } else { format!("{:.0}%", used as f64 * 100.0 / total as f64) }
}

/// The human view: one line per area.
pub fn render(s: &VmStats) -> String {
    let mut rows: Vec<(&str, String)> = Vec::new();
    let up = s.uptime_secs.map(|u| format!(", up {}", output::duration(u as f64))).unwrap_or_default();
    rows.push(("vm", format!("{} ({}{up})", s.name, s.state)));
    rows.push(("config", format!("{} vCPU{}, {} MiB", s.vcpus, if s.vcpus == 1 { "" } else { "s" }, s.memory_mib)));
    if let Some(p) = &s.process {
        let cpu = p.cpu_percent.map(|c| format!("{c:.1}%")).unwrap_or_else(|| "-".into());
        rows.push(("vmm", format!("pid {}: CPU {cpu}, RSS {}", p.pid, format_size(p.rss_bytes))));
    }
    if let Some(g) = &s.guest {
        let age = (s.time - g.sampled_at).max(0.0);
        rows.push((
            "memory",
            format!(
                "{} used of {} ({}), {} available",
                format_size(g.mem_used),
                format_size(g.mem_total),
                pct(g.mem_used, g.mem_total),
                format_size(g.mem_available)
            ),
        ));
        rows.push((
            "load",
            format!(
                "{:.2} {:.2} {:.2} (guest up {})",
                g.load[0],
                g.load[1],
                g.load[2],
                output::duration(g.uptime_secs)
            ),
        ));
        for fs in &g.filesystems {
            rows.push((
                if fs.mount == "/" { "fs /" } else { "fs /root" },
                format!(
                    "{} used of {} ({}), {} free",
                    format_size(fs.used),
                    format_size(fs.size),
                    pct(fs.used, fs.size),
                    format_size(fs.available)
                ),
            ));
        }
        rows.push(("sampled", format!("{age:.1}s ago")));
    }
    if let Some(e) = &s.guest_error {
        rows.push(("guest", e.clone()));
    }
    if let Some(n) = &s.network {
        rows.push((
            "network",
            format!(
                "in {} ({} pkts), out {} ({} pkts) via {}",
                format_size(n.rx_bytes),
                n.rx_packets,
                format_size(n.tx_bytes),
                n.tx_packets,
                n.tap
            ),
        ));
    }
    if let Some(io) = &s.vmm_io {
        let drives: Vec<String> = io
            .drives
            .iter()
            .map(|d| format!("{} {}/{}", d.id, format_size(d.read_bytes), format_size(d.write_bytes)))
            .collect();
        rows.push((
            "disk i/o",
            format!(
                "read {} ({} ops), written {} ({} ops){} — {}'s counters",
                format_size(io.block_read_bytes),
                io.block_reads,
                format_size(io.block_write_bytes),
                io.block_writes,
                if drives.is_empty() { String::new() } else { format!("; {}", drives.join(", ")) },
                io.source
            ),
        ));
    }
    for d in s.disks.iter().filter(|d| d.role != "base") {
        let role = if d.role == "work" { "disk work" } else { "disk overlay" };
        rows.push((role, format!("{} apparent, {} allocated", format_size(d.size), format_size(d.allocated))));
    }
    if s.state != banger_api::response::Phase::Running {
        rows.push(("note", format!("VM {} is {}: live figures appear while it runs", s.name, s.state)));
    }
    output::render_pairs(&rows)
}

//! `banger runtime check|fetch|package`: the runtime bundle.

use crate::cli::RuntimeCommand;
use crate::context::Ctx;
use crate::error::CliResult;
use crate::output;
use crate::progress::Bar;
use banger_config::Config;
use serde::Serialize;
use std::io::{BufRead, IsTerminal, Write};
use std::path::{Path, PathBuf};

pub fn run(ctx: &Ctx, cmd: RuntimeCommand) -> CliResult {
    match cmd {
        RuntimeCommand::Check { json } => check(ctx, json),
        RuntimeCommand::Fetch { manifest, dir } => fetch(ctx, &manifest, dir),
        RuntimeCommand::Package { dir, out, manifest, write_manifest, url, json } => {
            package(ctx, dir, &out, &manifest, write_manifest, url.as_deref(), json)
        }
    }
}

#[derive(Serialize)]
struct Item {
    key: &'static str,
    path: PathBuf,
    present: bool,
}

/// The bundle files that booting and reaching a VM needs, by config key.
fn needed(config: &Config) -> [(&'static str, &Path); 6] {
    [
        ("default_kernel", &config.default_kernel),
        ("default_initrd", &config.default_initrd),
        ("default_modules_dir", &config.default_modules_dir),
        ("default_base_rootfs", &config.default_base_rootfs),
        ("default_rootfs", &config.default_rootfs),
        ("ssh_key_path", &config.ssh_key_path),
    ]
}

fn check(ctx: &Ctx, json: bool) -> CliResult {
    let config = ctx.config()?;
    let runtime = ctx.runtime(&config);
    let items: Vec<Item> = needed(&config)
        .iter()
        .map(|(key, p)| {
            let path = runtime.join(p);
            Item { key, present: path.exists(), path }
        })
        .collect();
    if json {
        output::json(&serde_json::json!({
            "runtime_dir": { "path": runtime.path, "source": runtime.source, "present": runtime.exists() },
            "files": items,
        }));
    } else {
        println!("runtime dir: {} ({})", runtime.path.display(), runtime.source.describe());
        let rows: Vec<Vec<String>> = items
            .iter()
            .map(|i| vec![i.key.into(), i.path.display().to_string(), if i.present { "ok" } else { "MISSING" }.into()])
            .collect();
        output::table(&["KEY", "PATH", "STATUS"], &rows);
    }
    for (key, p) in needed(&config) {
        runtime.require(key, p)?;
    }
    Ok(())
}

fn target_dir(ctx: &Ctx, dir: Option<PathBuf>) -> CliResult<PathBuf> {
    match dir {
        Some(d) => Ok(d),
        None => Ok(ctx.runtime(&ctx.config()?).path),
    }
}

fn fetch(ctx: &Ctx, manifest: &Path, dir: Option<PathBuf>) -> CliResult {
    let dir = target_dir(ctx, dir)?;
    let manifest = banger_bundle::Manifest::load(manifest)?;
    let summary = banger_bundle::fetch(&manifest, &dir, &Bar::default())?;
    if let Some(left) = &summary.leftover {
        eprintln!("banger: warning: could not remove the previous runtime dir, left at {}", left.display());
    }
    println!(
        "runtime bundle {} ({}, {} entries, sha256 {}) is in {}",
        summary.version,
        banger_config::size::format_size(summary.bytes),
        summary.entries,
        summary.sha256,
        summary.runtime_dir.display()
    );
    Ok(())
}

fn package(
    ctx: &Ctx,
    dir: Option<PathBuf>,
    out: &Path,
    manifest: &Path,
    write_manifest: bool,
    url: Option<&str>,
    json: bool,
) -> CliResult {
    let dir = target_dir(ctx, dir)?;
    if let Some(parent) = out.parent().filter(|p| !p.as_os_str().is_empty()) {
        std::fs::create_dir_all(parent)?;
    }
    let summary = banger_bundle::package(&dir, out, &Bar::default())?;
    if json {
        output::json(&serde_json::json!({
            "out": out, "sha256": summary.sha256, "bytes": summary.bytes, "files": summary.files,
        }));
    } else {
        println!("{}  {}", summary.sha256, out.display());
        eprintln!("{} files, {}", summary.files, banger_config::size::format_size(summary.bytes));
    }
    let write = write_manifest
        || (!json
            && std::io::stdin().is_terminal()
            && ask(&format!("write this SHA-256 into {}?", manifest.display())));
    if write {
        banger_bundle::set_manifest_checksum(manifest, &summary.sha256, url)?;
        eprintln!("updated {}", manifest.display());
    }
    Ok(())
}

/// A yes/no question on the terminal; anything but y/yes is no.
fn ask(question: &str) -> bool {
    eprint!("{question} [y/N] ");
    let _ = std::io::stderr().flush();
    let mut answer = String::new();
    let _ = std::io::stdin().lock().read_line(&mut answer);
    matches!(answer.trim().to_ascii_lowercase().as_str(), "y" | "yes")
}

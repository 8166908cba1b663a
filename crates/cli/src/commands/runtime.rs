//! `banger runtime check|fetch|build|rootfs|package`: the runtime bundle.

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
        RuntimeCommand::Build { dir, init, no_docker, force, kernel_deb, json } => {
            let opts = banger_image::RuntimeOptions {
                out_dir: target_dir(ctx, dir)?,
                init_binary: init,
                docker: !no_docker,
                force,
                kernel_deb,
                ..Default::default()
            };
            build(opts, json)
        }
        RuntimeCommand::Rootfs { dir, base_rootfs, packages, customize, force } => {
            let dir = target_dir(ctx, dir)?;
            let opts = banger_image::RootfsOptions {
                work_dir: dir.with_file_name(".banger-rootfs-work"),
                base_rootfs: Some(base_rootfs.unwrap_or_else(|| dir.join("rootfs.ext4"))),
                packages_apt: packages.unwrap_or_else(|| dir.join("packages.apt")),
                customize_sh: Some(customize.unwrap_or_else(|| dir.join("customize.sh"))).filter(|p| p.exists()),
                force,
                out_dir: dir,
                ..Default::default()
            };
            let t0 = std::time::Instant::now();
            let rebuilt =
                banger_image::build_rootfs(&opts, &|m| eprintln!("[{:6.1}s] {m}", t0.elapsed().as_secs_f64()))?;
            let image = opts.out_dir.join("rootfs-docker.ext4");
            if rebuilt {
                println!("built {}", image.display());
            } else {
                println!(
                    "{} is up to date with {} (--force rebuilds it)",
                    image.display(),
                    opts.packages_apt.display()
                );
            }
            Ok(())
        }
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

fn build(opts: banger_image::RuntimeOptions, json: bool) -> CliResult {
    let t0 = std::time::Instant::now();
    let summary = banger_image::build_runtime(&opts, &|m| eprintln!("[{:6.1}s] {m}", t0.elapsed().as_secs_f64()))?;
    let files: Vec<serde_json::Value> = summary
        .files
        .iter()
        .map(|f| serde_json::json!({ "name": f.name, "apparent": f.apparent, "allocated": f.allocated, "sha256": f.sha256 }))
        .collect();
    if json {
        output::json(&serde_json::json!({
            "dir": summary.out_dir, "kernel_release": summary.kernel_release, "kernel_package": summary.kernel_package,
            "docker_rebuilt": summary.docker_rebuilt, "seconds": summary.seconds, "files": files,
        }));
        return Ok(());
    }
    println!(
        "runtime bundle in {} ({}, kernel {}) built in {:.0}s",
        summary.out_dir.display(),
        summary.kernel_package,
        summary.kernel_release,
        summary.seconds
    );
    let rows: Vec<Vec<String>> = summary
        .files
        .iter()
        .map(|f| {
            vec![
                f.name.clone(),
                banger_config::size::format_size(f.apparent),
                banger_config::size::format_size(f.allocated),
            ]
        })
        .collect();
    output::table(&["FILE", "SIZE", "ALLOCATED"], &rows);
    Ok(())
}

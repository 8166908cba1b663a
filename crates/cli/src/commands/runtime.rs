//! `banger runtime check`: is every file a VM needs in the runtime bundle?

use crate::cli::RuntimeCommand;
use crate::context::Ctx;
use crate::error::CliResult;
use crate::output;
use banger_config::Config;
use serde::Serialize;
use std::path::{Path, PathBuf};

pub fn run(ctx: &Ctx, cmd: RuntimeCommand) -> CliResult {
    match cmd {
        RuntimeCommand::Check { json } => check(ctx, json),
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

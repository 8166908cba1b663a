//! `banger config show`.

use crate::cli::ConfigCommand;
use crate::context::Ctx;
use crate::error::CliResult;
use crate::output;

pub fn run(ctx: &Ctx, cmd: ConfigCommand) -> CliResult {
    match cmd {
        ConfigCommand::Show { json } => show(ctx, json),
    }
}

fn show(ctx: &Ctx, json: bool) -> CliResult {
    let config = ctx.config()?;
    let runtime = ctx.runtime(&config);
    let entries = config.entries();
    if json {
        output::json(&serde_json::json!({
            "file": config.file,
            "file_exists": config.file_exists,
            "runtime_dir": { "path": runtime.path, "source": runtime.source, "present": runtime.exists() },
            "settings": entries,
            "warnings": config.warnings,
        }));
        return Ok(());
    }
    println!(
        "config file: {}{}",
        config.file.display(),
        if config.file_exists { "" } else { " (absent: all defaults)" }
    );
    println!(
        "runtime dir: {} ({}{})\n",
        runtime.path.display(),
        runtime.source.describe(),
        if runtime.exists() { "" } else { ", missing" }
    );
    let rows: Vec<Vec<String>> = entries
        .iter()
        .map(|e| vec![e.key.to_string(), e.value.clone().unwrap_or_else(|| "-".into()), e.source.to_string()])
        .collect();
    output::table(&["KEY", "VALUE", "SOURCE"], &rows);
    Ok(())
}

//! `banger image list|show|delete`.

use crate::cli::ImageCommand;
use crate::context::{Ctx, block_on};
use crate::error::{CliError, CliResult};
use crate::output;
use banger_api::request::BuildImage;
use banger_api::response::{Deleted, Image, ImageList};
use banger_api::routes::{self, vm_path};
use banger_config::size::format_size;

pub fn run(ctx: &Ctx, cmd: ImageCommand) -> CliResult {
    if let ImageCommand::Build { interactive: true, .. } = cmd {
        use std::io::IsTerminal;
        // Before anything else (even starting the daemon).
        if !(std::io::stdin().is_terminal() && std::io::stdout().is_terminal()) {
            return Err(CliError::new(
                banger_api::exit::BAD_INPUT,
                "--interactive needs a terminal on standard input and output",
            ));
        }
    }
    let client = ctx.client()?;
    match cmd {
        ImageCommand::List { json: true } => output::json_raw(&block_on(client.get_raw(routes::IMAGES))?),
        ImageCommand::List { json: false } => {
            let list: ImageList = block_on(client.get(routes::IMAGES))?;
            print!("{}", render_list(&list));
        }
        ImageCommand::Show { name, json: true } => {
            output::json_raw(&block_on(client.get_raw(&vm_path(routes::IMAGE, &name)))?)
        }
        ImageCommand::Show { name, json: false } => {
            let image: Image = block_on(client.get(&vm_path(routes::IMAGE, &name)))?;
            print!("{}", render(&image));
        }
        ImageCommand::Build { name, base, docker, script, packages, debs, size, nat, interactive, json } => {
            let abs = |p: std::path::PathBuf| -> CliResult<std::path::PathBuf> {
                std::fs::canonicalize(&p)
                    .map_err(|e| CliError::new(banger_api::exit::BAD_INPUT, format!("{}: {e}", p.display())))
            };
            let packages = match packages {
                Some(p) => Some(std::fs::read_to_string(&p).map_err(|e| {
                    CliError::new(banger_api::exit::BAD_INPUT, format!("cannot read {}: {e}", p.display()))
                })?),
                None => None,
            };
            let req = BuildImage {
                name,
                base,
                script: script.map(abs).transpose()?,
                packages,
                debs: debs.into_iter().map(abs).collect::<CliResult<_>>()?,
                docker,
                size,
                nat,
                interactive,
            };
            let t0 = std::time::Instant::now();
            let image: Image = block_on(client.post_stream(routes::IMAGES, &req, |stage, message| {
                let t = t0.elapsed().as_secs_f64();
                if stage == "output" {
                    eprintln!("{t:>6.1}s  | {message}");
                } else if stage == "shell" {
                    shell(ctx, &req.name, message);
                } else {
                    eprintln!("{t:>6.1}s  {message}");
                }
            }))?;
            if json {
                output::json(&image);
            } else {
                println!(
                    "built image {} ({}) in {:.1}s; build log: {}",
                    image.name,
                    image.path.display(),
                    t0.elapsed().as_secs_f64(),
                    image.build_log.as_ref().map(|p| p.display().to_string()).unwrap_or_default()
                );
            }
        }
        ImageCommand::Delete { name, force: _ } => {
            let d: Deleted = block_on(client.delete(&vm_path(routes::IMAGE, &name)))?;
            println!("deleted image {}", d.name);
        }
    }
    Ok(())
}

/// `--interactive`: a login shell in the waiting builder, then finish or abandon the build. Runs
/// on its own thread (its own requests; the build's stream waits meanwhile). Failures to reach
/// the builder are shown and the question still asked.
fn shell(ctx: &Ctx, image: &str, builder: &str) {
    std::thread::scope(|s| {
        s.spawn(|| {
            eprintln!("\n== a shell in the builder {builder}; the build continues when it ends (exit or Ctrl-D) ==");
            let opened = crate::commands::vm::interactive_ssh(ctx, builder);
            if let Err(e) = &opened {
                eprintln!("banger: the shell could not open: {}", e.message);
            }
            let finish = ask_finish();
            let req = banger_api::request::ContinueBuild { finish };
            let sent: CliResult<banger_api::response::Continued> = ctx
                .client()
                .and_then(|c| block_on(c.post(&vm_path(routes::IMAGE_CONTINUE, image), &req)).map_err(CliError::from));
            if let Err(e) = sent {
                // Leaving closes the build's stream: the daemon then cancels it and cleans up.
                eprintln!("banger: error: cannot tell the build how to go on, so it is abandoned: {}", e.message);
                std::process::exit(e.code);
            }
        });
    });
}

/// "Take the image?" on the terminal; an empty answer or end of input is yes.
fn ask_finish() -> bool {
    use std::io::Write;
    eprint!("== take the image from the builder as it is now? [Y/n] ");
    let _ = std::io::stderr().flush();
    let mut line = String::new();
    let _ = std::io::stdin().read_line(&mut line);
    !matches!(line.trim().to_ascii_lowercase().as_str(), "n" | "no")
}

fn vms(i: &Image) -> String {
    if i.vms.is_empty() { "-".into() } else { i.vms.join(",") }
}

fn render_list(list: &ImageList) -> String {
    if list.images.is_empty() {
        return "no images (the runtime bundle is missing: `make runtime-build`)\n".into();
    }
    let rows: Vec<Vec<String>> = list
        .images
        .iter()
        .map(|i| {
            vec![
                i.name.clone(),
                i.kind.clone(),
                format!("{}/{}", format_size(i.size), format_size(i.allocated)),
                i.base.clone().unwrap_or_else(|| "-".into()),
                i.created_at
                    .map(|t| format!("{} ago", output::duration(crate::context::now().saturating_sub(t) as f64)))
                    .unwrap_or_else(|| "-".into()),
                vms(i),
            ]
        })
        .collect();
    output::render_table(&["NAME", "KIND", "SIZE/ALLOCATED", "BASE", "CREATED", "VMS"], &rows)
}

fn render(i: &Image) -> String {
    let opt = |v: &Option<String>| v.clone().unwrap_or_else(|| "-".into());
    let mut rows = vec![
        ("name", i.name.clone()),
        ("kind", i.kind.clone()),
        ("path", format!("{}{}", i.path.display(), if i.present { "" } else { " (missing)" })),
        ("size", format!("{} apparent, {} allocated", format_size(i.size), format_size(i.allocated))),
    ];
    if i.kind == "built" {
        rows.extend([
            ("base", opt(&i.base)),
            ("kernel", opt(&i.kernel)),
            ("packages", opt(&i.packages_sha256).chars().take(64).collect()),
            ("script", format!("{} {}", opt(&i.script), opt(&i.script_sha256))),
            ("docker", if i.docker { "yes".into() } else { "no".into() }),
            ("build log", i.build_log.as_ref().map(|p| p.display().to_string()).unwrap_or_else(|| "-".into())),
        ]);
    }
    rows.push(("vms", vms(i)));
    output::render_pairs(&rows)
}

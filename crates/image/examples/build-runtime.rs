//! Build a runtime bundle from the command line (development helper; the CLI wires the same call).
//!
//! `cargo run --release -p banger-image --example build-runtime -- OUT_DIR INIT_BINARY [--no-docker] [--force]`
use banger_image::{RuntimeOptions, build_runtime};
use std::path::PathBuf;

fn main() {
    let args: Vec<String> = std::env::args().skip(1).collect();
    let pos: Vec<&String> = args.iter().filter(|a| !a.starts_with("--")).collect();
    if pos.len() != 2 {
        eprintln!("usage: build-runtime OUT_DIR INIT_BINARY [--no-docker] [--force]");
        std::process::exit(2);
    }
    let opts = RuntimeOptions {
        out_dir: PathBuf::from(pos[0]),
        init_binary: PathBuf::from(pos[1]),
        docker: !args.iter().any(|a| a == "--no-docker"),
        force: args.iter().any(|a| a == "--force"),
        ..Default::default()
    };
    let t0 = std::time::Instant::now();
    match build_runtime(&opts, &|m| eprintln!("[{:6.1}s] {m}", t0.elapsed().as_secs_f64())) {
        Ok(s) => {
            println!(
                "bundle {} kernel {} ({}) in {:.0} s",
                s.out_dir.display(),
                s.kernel_release,
                s.kernel_package,
                s.seconds
            );
            for f in s.files {
                println!("  {:36} {:>12} apparent {:>12} allocated", f.name, f.apparent, f.allocated);
            }
        }
        Err(e) => {
            eprintln!("error: {e}");
            std::process::exit(e.exit_code());
        }
    }
}

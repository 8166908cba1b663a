//! `build-docker-rootfs BASE_IMAGE OUT_DIR PACKAGES_APT [CUSTOMIZE_SH] [--force]` (development helper).
use banger_image::{RootfsOptions, build_rootfs};
use std::path::PathBuf;

fn main() {
    let args: Vec<String> = std::env::args().skip(1).collect();
    let pos: Vec<&String> = args.iter().filter(|a| !a.starts_with("--")).collect();
    if pos.len() < 3 {
        eprintln!("usage: build-docker-rootfs BASE_IMAGE OUT_DIR PACKAGES_APT [CUSTOMIZE_SH] [--force]");
        std::process::exit(2);
    }
    let out = PathBuf::from(pos[1]);
    let opts = RootfsOptions {
        out_dir: out.clone(),
        work_dir: out.join(".work"),
        base_rootfs: Some(PathBuf::from(pos[0])),
        base_tree: None,
        packages_apt: PathBuf::from(pos[2]),
        customize_sh: pos.get(3).map(PathBuf::from),
        size_mib: 0,
        force: args.iter().any(|a| a == "--force"),
    };
    let r = build_rootfs(&opts, &|m| eprintln!("{m}"));
    let _ = std::fs::remove_dir_all(out.join(".work"));
    match r {
        Ok(rebuilt) => println!("{}", if rebuilt { "rebuilt" } else { "up to date" }),
        Err(e) => {
            eprintln!("error: {e}");
            std::process::exit(e.exit_code());
        }
    }
}

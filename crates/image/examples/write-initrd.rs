//! Rebuild just an initrd: `write-initrd KERNEL_DEB INIT_BINARY OUT [STAGING]` (development helper).
fn main() {
    let a: Vec<String> = std::env::args().skip(1).collect();
    if a.len() < 3 {
        eprintln!("usage: write-initrd KERNEL_DEB INIT_BINARY OUT [STAGING]");
        std::process::exit(2);
    }
    let staging = std::path::PathBuf::from(a.get(3).cloned().unwrap_or_else(|| format!("{}.staging", a[2])));
    let r = banger_image::fetch_kernel(&staging, Some(a[0].as_ref()), &|m| eprintln!("{m}"))
        .and_then(|k| banger_image::write_initrd(&k, a[1].as_ref(), a[2].as_ref()));
    let _ = std::fs::remove_dir_all(&staging);
    match r {
        Ok(n) => println!("{} bytes", n),
        Err(e) => {
            eprintln!("error: {e}");
            std::process::exit(e.exit_code());
        }
    }
}

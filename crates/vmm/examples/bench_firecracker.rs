//! How long the Firecracker driver takes from spawn to InstanceStart accepted, without and with
//! the jailer (its chroot, hard links, copy of the binary, PID namespace), and what removing a
//! jail costs. `make bench-firecracker`; needs root (the jailer), a Firecracker and its jailer
//! built or downloaded outside the repository, and a guest kernel:
//!
//! ```sh
//! FIRECRACKER=/path/to/firecracker JAILER=/path/to/jailer VMLINUX=runtime/vmlinux \
//!   cargo run --release -p banger-vmm --example bench_firecracker -- 20
//! ```
//!
//! Whether the guest then runs does not matter (where KVM cannot run guests it dies after
//! InstanceStart); each round's Firecracker is killed by pid and its files removed.

use banger_vmm::firecracker::{Firecracker, jail};
use banger_vmm::{Disk, VmConfig, Vmm, process};
use std::path::PathBuf;
use std::time::{Duration, Instant};

fn main() {
    let rounds: usize = std::env::args().nth(1).and_then(|a| a.parse().ok()).unwrap_or(20);
    let var = |k: &str| match std::env::var_os(k).filter(|v| !v.is_empty()).map(PathBuf::from) {
        Some(p) if p.is_file() => p,
        _ => {
            eprintln!("bench_firecracker: set {k} to a file (FIRECRACKER=, JAILER=: built outside the repository)");
            std::process::exit(2);
        }
    };
    let (fc, jailer, kernel) = (var("FIRECRACKER"), var("JAILER"), var("VMLINUX"));
    let tmp = tempfile::Builder::new().prefix("bench-fc").tempdir_in("/var/tmp").unwrap();
    let base = tmp.path().join("base.img");
    let work = tmp.path().join("work.img");
    std::fs::File::create(&base).unwrap().set_len(1 << 30).unwrap();
    std::fs::File::create(&work).unwrap().set_len(1 << 30).unwrap();
    let config = |jail_dir: Option<PathBuf>| VmConfig {
        name: "bench".into(),
        kernel: kernel.clone(),
        initrd: None,
        cmdline: "root=/dev/vda ro".into(),
        disks: vec![
            Disk { id: "base".into(), path: base.clone(), read_only: true },
            Disk { id: "work".into(), path: work.clone(), read_only: false },
        ],
        memory_mib: 256,
        vcpus: 1,
        nic: None,
        run_dir: tmp.path().join("run"),
        console_log: tmp.path().join("console.log"),
        shares: vec![],
        jail_dir,
    };
    for jailed in [false, true] {
        let driver = Firecracker::new(fc.clone()).with_jailer(jailed.then(|| jail::Jailer::new(jailer.clone())));
        let (mut starts, mut removals) = (Vec::new(), Vec::new());
        for _ in 0..rounds {
            let jail_dir = jailed.then(|| tmp.path().join("jail"));
            let c = config(jail_dir.clone());
            let t0 = Instant::now();
            let instance = driver.start(&c).expect("start");
            starts.push(t0.elapsed());
            let marker = instance.marker();
            let _ = process::signal(instance.pid, &marker, nix::sys::signal::Signal::SIGKILL);
            assert!(process::wait_exit(instance.pid, &marker, Duration::from_secs(10)));
            let t1 = Instant::now();
            if let Some(dir) = &jail_dir {
                jail::remove(dir).unwrap();
                assert!(!dir.exists());
            }
            removals.push(t1.elapsed());
            let _ = std::fs::remove_dir_all(&c.run_dir);
        }
        let ms = |v: &mut Vec<Duration>, q: f64| {
            v.sort();
            v[((v.len() as f64 - 1.0) * q).round() as usize].as_secs_f64() * 1000.0
        };
        println!(
            "{:<8} start→InstanceStart p50 {:6.1} ms  p90 {:6.1} ms   cleanup p50 {:5.1} ms   ({rounds} rounds)",
            if jailed { "jailed" } else { "unjailed" },
            ms(&mut starts, 0.5),
            ms(&mut starts, 0.9),
            ms(&mut removals, 0.5)
        );
    }
}

//! `cargo run -p banger-vmm --example probe_kvm -- KERNEL [INITRD]`: does KVM run this guest here,
//! under QEMU (`QEMU=path`, default /usr/bin/qemu-system-x86_64) or, with `FIRECRACKER=path`,
//! under Firecracker?
use std::path::Path;

fn main() {
    let args: Vec<String> = std::env::args().skip(1).collect();
    let Some(kernel) = args.first() else {
        eprintln!("usage: probe_kvm KERNEL [INITRD]");
        std::process::exit(2);
    };
    let (kernel, initrd) = (Path::new(kernel), args.get(1).map(Path::new));
    let (dev, timeout) = (Path::new("/dev/kvm"), std::time::Duration::from_secs(10));
    let t = std::time::Instant::now();
    let verdict = match std::env::var_os("FIRECRACKER") {
        Some(fc) => {
            let dir = std::env::temp_dir().join(format!("probe-kvm-{}", std::process::id()));
            banger_vmm::firecracker::probe_kvm(Path::new(&fc), kernel, initrd, dev, &dir, timeout)
        }
        None => {
            let qemu = std::env::var_os("QEMU").unwrap_or_else(|| "/usr/bin/qemu-system-x86_64".into());
            banger_vmm::qemu::probe_kvm(Path::new(&qemu), kernel, initrd, dev, timeout)
        }
    };
    println!("{} ({:.1}s)", verdict.describe(), t.elapsed().as_secs_f64());
}

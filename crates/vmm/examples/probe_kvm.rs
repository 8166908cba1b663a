//! `cargo run -p banger-vmm --example probe_kvm -- KERNEL [INITRD]`: does KVM run this guest here?
fn main() {
    let args: Vec<String> = std::env::args().skip(1).collect();
    let Some(kernel) = args.first() else {
        eprintln!("usage: probe_kvm KERNEL [INITRD]");
        std::process::exit(2);
    };
    let t = std::time::Instant::now();
    let ok = banger_vmm::qemu::probe_kvm(
        std::path::Path::new("qemu-system-x86_64"),
        std::path::Path::new(kernel),
        args.get(1).map(std::path::Path::new),
        std::time::Duration::from_secs(10),
    );
    println!("kvm usable: {ok} ({:.1}s)", t.elapsed().as_secs_f64());
}

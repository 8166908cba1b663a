//! A daemon on the fake host for benchmarks of clients (`make bench-tui`): the daemon's own
//! server, lifecycle and event bus on `$XDG_RUNTIME_DIR/banger/bangerd.sock`, with N registered
//! VMs of which R run (real processes as VMMs, no guests; `platform::fake`), until killed.
//! Prints `ready` once it serves.
//!
//! `cargo run --release -p banger-daemon --features fake-host --example fake_daemon -- N R`

use banger_api::request::CreateVm;
use banger_config::Dirs;
use banger_daemon::{app::App, events::EventBus, server, vms::fake_host};
use std::sync::Arc;

fn main() {
    let arg = |i: usize, default: usize| std::env::args().nth(i).and_then(|a| a.parse().ok()).unwrap_or(default);
    let (vms, running) = (arg(1, 100), arg(2, 10));
    let dirs = Dirs::from_env().expect("XDG dirs");
    dirs.ensure_for_daemon().expect("create the daemon's dirs");
    let root = dirs.state.join("fake");
    std::fs::create_dir_all(&root).expect("fake root");
    let (manager, _fake) = fake_host::manager(&root, EventBus::new(0, banger_daemon::events::RING));
    for i in 0..vms {
        let name = format!("vm-{i:03}");
        let req =
            CreateVm { name: Some(name.clone()), disk_size: Some(64 << 20), no_start: true, ..Default::default() };
        manager.create(req, &()).expect("register a VM");
        if i < running {
            manager.start(&name, &()).expect("start");
        }
    }
    let no_dns = banger_config::Config::parse(&root.join("config.toml"), "dns = \"off\"").expect("config");
    let dns = banger_daemon::dns::Dns::new(&no_dns, &dirs);
    let app = Arc::new(App::new(manager, dns, dirs, 0, 0));
    let rt = tokio::runtime::Builder::new_multi_thread().worker_threads(2).enable_all().build().expect("runtime");
    let monitor = {
        let app = app.clone();
        rt.spawn(async move {
            loop {
                let a = app.clone();
                let _ = tokio::task::spawn_blocking(move || a.vms.sample_cpu()).await;
                tokio::time::sleep(std::time::Duration::from_secs(1)).await;
            }
        })
    };
    let socket = app.dirs.socket();
    let server = rt.spawn(server::serve(app.clone()));
    while !banger_client::autostart::is_listening(&socket) {
        std::thread::sleep(std::time::Duration::from_millis(10));
    }
    println!("ready");
    let _ = rt.block_on(server);
    monitor.abort();
}

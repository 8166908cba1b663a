//! Benchmark: event delivery latency, from a VM's phase change to subscribed clients.
//!
//! The daemon's own server, lifecycle and event bus, on a Unix socket in a temporary dir, with
//! 100 registered VMs and 10 subscribers reading `GET /v1/events` through banger's client. VMs
//! are started and stopped on the fake host (`platform::fake`: real SQLite, real processes as
//! VMMs, no guest), so every phase change is a real `Manager::transition`. Latency is the
//! subscriber's clock at arrival minus the event's publish time (same host clock).
//!
//! `cargo run --release -p banger-daemon --example bench_events [CYCLES]` (`make bench-events`).

use banger_api::event::EventKind;
use banger_api::request::CreateVm;
use banger_client::Client;
use banger_config::Dirs;
use banger_daemon::{app::App, events::EventBus, server, vms::fake_host};
use std::sync::Arc;
use std::time::{Duration, Instant, SystemTime, UNIX_EPOCH};

const VMS: usize = 100;
const SUBSCRIBERS: usize = 10;

fn main() {
    let cycles: usize = std::env::args().nth(1).and_then(|a| a.parse().ok()).unwrap_or(100);
    let tmp = tempfile::Builder::new().prefix("banger-bench-events").tempdir().expect("temp dir");
    let root = tmp.path().to_path_buf();
    let dirs = Dirs::from_vars(
        |k| match k {
            "HOME" => Some(root.join("home").into()),
            "XDG_RUNTIME_DIR" => Some(root.join("xdg-run").into()),
            "XDG_STATE_HOME" | "XDG_CONFIG_HOME" | "XDG_CACHE_HOME" => Some(root.join(k).into()),
            _ => None,
        },
        nix::unistd::geteuid().as_raw(),
    )
    .expect("dirs");
    dirs.ensure_for_daemon().expect("create the daemon's dirs");
    let (manager, fake) = fake_host::manager(&root, EventBus::new(0, banger_daemon::events::RING));
    let t0 = Instant::now();
    for i in 0..VMS {
        let req =
            CreateVm { name: Some(format!("vm-{i}")), disk_size: Some(64 << 20), no_start: true, ..Default::default() };
        manager.create(req, &()).expect("register a VM");
    }
    eprintln!("registered {VMS} VMs in {:.1}s", t0.elapsed().as_secs_f64());
    let socket = dirs.socket();
    let no_dns = banger_config::Config::parse(&root.join("config.toml"), "dns = \"off\"").expect("config");
    let dns = banger_daemon::dns::Dns::new(&no_dns, &dirs);
    let app = Arc::new(App::new(manager, dns, dirs, 0, 0));
    let rt = tokio::runtime::Builder::new_multi_thread().worker_threads(2).enable_all().build().expect("runtime");
    let server = rt.spawn(server::serve(app.clone()));
    while !banger_client::autostart::is_listening(&socket) {
        std::thread::sleep(Duration::from_millis(10));
    }

    // Four phase changes per cycle: stopped → starting → running → stopping → stopped.
    let expected = cycles * 4;
    let subscribers: Vec<_> = (0..SUBSCRIBERS)
        .map(|_| {
            let client = Client::new(&socket);
            std::thread::spawn(move || {
                let mut latencies = Vec::with_capacity(expected);
                let rt = tokio::runtime::Builder::new_current_thread().enable_all().build().expect("runtime");
                rt.block_on(client.events(None, |e| {
                    if matches!(e.kind, EventKind::Phase { .. }) {
                        latencies.push(now() - e.time);
                    }
                    latencies.len() < expected
                }))
                .expect("follow events");
                latencies
            })
        })
        .collect();
    // Let every subscriber connect before the first change.
    std::thread::sleep(Duration::from_millis(500));
    let t0 = Instant::now();
    for c in 0..cycles {
        let name = format!("vm-{}", c % VMS);
        app.vms.start(&name, &()).expect("start");
        app.vms.stop(&name, Duration::from_secs(5), &()).expect("stop");
    }
    let elapsed = t0.elapsed();
    let mut all: Vec<f64> = subscribers.into_iter().flat_map(|s| s.join().expect("subscriber")).collect();
    assert_eq!(all.len(), expected * SUBSCRIBERS, "every subscriber saw every phase change");
    all.sort_by(f64::total_cmp);
    let p = |q: f64| all[((q * all.len() as f64) as usize).min(all.len() - 1)] * 1000.0;
    println!(
        "event delivery, {VMS} VMs registered, {SUBSCRIBERS} subscribers, {expected} phase changes ({} deliveries in {:.1}s): \
         p50={:.3} ms p99={:.3} ms max={:.3} ms (target p99 <= 10 ms)",
        all.len(),
        elapsed.as_secs_f64(),
        p(0.50),
        p(0.99),
        all[all.len() - 1] * 1000.0
    );
    app.request_shutdown();
    rt.block_on(server).expect("server task").expect("server");
    drop(fake);
}

fn now() -> f64 {
    SystemTime::now().duration_since(UNIX_EPOCH).map(|d| d.as_secs_f64()).unwrap_or(0.0)
}

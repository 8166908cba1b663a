//! The banger daemon: owns the state database and (in later layers) the VMs, and serves the
//! versioned HTTP API on a private Unix socket.
//!
//! Start-up: directories → config → single-instance lock → database → socket. Shutdown (SIGTERM,
//! SIGINT or `POST /v1/daemon/shutdown`) finishes in-flight requests, removes the socket, records
//! the stop and releases the lock. It never stops VMs: they are independent processes.

pub mod app;
pub mod dns;
pub mod error;
pub mod events;
pub mod fault;
mod handlers;
mod lock;
pub mod platform;
pub mod server;
mod stream;
pub mod vms;

pub use lock::{DaemonLock, LockError};

use banger_config::{Config, Dirs, RuntimeDir};
use banger_state::Db;
use std::sync::Arc;
use std::time::{Duration, SystemTime, UNIX_EPOCH};

/// How often the monitor looks for VMMs that died.
pub const MONITOR_INTERVAL: Duration = Duration::from_secs(1);

/// `bangerd` takes no options beyond these; `banger` starts it on demand.
#[derive(clap::Parser)]
#[command(
    name = "bangerd",
    version,
    about = "The banger daemon (banger starts it on demand; run it by hand to watch its log)"
)]
struct Args {}

/// Run the daemon in the foreground; returns the process exit code.
pub fn main() -> i32 {
    let _ = <Args as clap::Parser>::parse();
    tracing_subscriber::fmt()
        .with_env_filter(tracing_subscriber::EnvFilter::try_from_env("BANGER_LOG").unwrap_or_else(|_| "info".into()))
        .with_writer(std::io::stderr)
        .with_ansi(false)
        .init();
    match run() {
        Ok(()) => 0,
        Err((code, message)) => {
            eprintln!("bangerd: error: {message}");
            code
        }
    }
}

type Failure = (i32, String);

fn fail<E: std::fmt::Display>(code: i32) -> impl FnOnce(E) -> Failure {
    move |e| (code, e.to_string())
}

/// Open files up to the hard limit: every client connection is one, and a host's default soft
/// limit (often 1024) would let a thousand idle connections lock everyone else out.
fn raise_open_files_limit() {
    use nix::sys::resource::{Resource, getrlimit, setrlimit};
    if let Ok((soft, hard)) = getrlimit(Resource::RLIMIT_NOFILE)
        && soft < hard
        && let Err(e) = setrlimit(Resource::RLIMIT_NOFILE, hard, hard)
    {
        tracing::warn!("cannot raise the open files limit from {soft} to {hard}: {e}");
    }
}

fn run() -> Result<(), Failure> {
    raise_open_files_limit();
    let dirs = Dirs::from_env().map_err(|e| (e.exit_code(), e.to_string()))?;
    dirs.ensure_for_daemon().map_err(|e| (e.exit_code(), e.to_string()))?;
    let config = Config::load(&dirs.config_file()).map_err(|e| (e.exit_code(), e.to_string()))?;
    for w in &config.warnings {
        tracing::warn!("{w}");
    }
    let lock = DaemonLock::acquire(&dirs.daemon_lock(), &dirs.socket()).map_err(|e| (e.exit_code(), e.to_string()))?;
    let db_err = |e: banger_state::StateError| {
        let e = error::Error::from(e);
        (e.code().exit_code(), e.to_string())
    };
    let db = Db::open(&dirs.database()).map_err(db_err)?;
    let pid = std::process::id();
    let started_at = now_unix();
    let run_id = db.record_daemon_start(pid, banger_api::VERSION, started_at).map_err(db_err)?;
    match db.previous_daemon_run(run_id) {
        Ok(Some(prev)) if prev.stopped_at.is_none() => tracing::warn!(
            "the previous bangerd (pid {}, started at {}) did not shut down cleanly",
            prev.pid,
            prev.started_at
        ),
        Ok(_) => {}
        Err(e) => tracing::warn!("{e}"),
    }
    let schema_version = db.schema_version().map_err(db_err)?;
    let runtime = RuntimeDir::resolve(config.runtime_dir.as_deref());
    let firecracker = platform::vmm::find_program(&config.firecracker_bin, &runtime.path);
    let qemu = platform::vmm::find_program(&config.qemu_bin, &runtime.path).unwrap_or_else(|| config.qemu_bin.clone());
    let jailer = platform::vmm::JailerChoice::resolve(&config.jailer_bin, firecracker.as_deref(), &runtime.path);
    let dns = dns::Dns::new(&config, &dirs);
    let vms = vms::Manager::new(vms::Parts {
        db,
        layout: vms::layout::Layout::new(&dirs.state, &dirs.run).with_cache(&dirs.cache),
        hypervisor: Box::new(
            platform::vmm::Backends::new(config.vmm, firecracker, qemu, &dirs.cache)
                .with_virtiofsd(&config.virtiofsd_bin)
                .with_jailer(jailer, config.jailer_uid, config.jailer_gid),
        ),
        net: Box::new(platform::net::HostNetwork::new()),
        guest: Arc::new(platform::ssh::Ssh),
        // Sequence numbers keep increasing across restarts: each run gets its own block.
        events: events::EventBus::new((run_id as u64) << 32, events::RING),
        tap_prefix: banger_net::tap::prefix_for(&dirs.state),
        dns_port: dns.port(),
        config,
        runtime,
    });
    let app = Arc::new(app::App::new(vms, dns, dirs, schema_version, started_at));

    let rt = tokio::runtime::Builder::new_multi_thread()
        .worker_threads(2)
        .enable_all()
        .build()
        .map_err(fail(banger_api::exit::FAILURE))?;
    app.vms.reconcile(true);
    app.vms.open_all_published();
    app.vms.cleanup_builds();
    rt.block_on(dns::Dns::start(app.clone()));
    rt.spawn(monitor(app.clone()));
    let grows = app.clone();
    rt.spawn_blocking(move || grows.vms.finish_grows());
    let result = rt.block_on(server::serve(app.clone()));
    // Operations still running (a boot whose client went away) finish before the lock is let
    // go: a new daemon must not take over a VM this one is still changing.
    tracing::info!("waiting for operations in progress to finish");
    drop(rt);
    app.record_stop(run_id);
    drop(lock);
    result.map_err(|e| (banger_api::exit::FAILURE, e.to_string()))
}

/// Settle VMs whose VMM died and sample running VMMs' CPU time, every [`MONITOR_INTERVAL`].
pub async fn monitor(app: Arc<app::App>) {
    loop {
        tokio::time::sleep(MONITOR_INTERVAL).await;
        let a = app.clone();
        let _ = tokio::task::spawn_blocking(move || {
            a.vms.reconcile(false);
            a.vms.sample_cpu();
        })
        .await;
    }
}

pub(crate) fn now_unix() -> u64 {
    now_unix_f64() as u64
}

/// Seconds since the Unix epoch, with microseconds.
pub(crate) fn now_unix_f64() -> f64 {
    SystemTime::now().duration_since(UNIX_EPOCH).map(|d| d.as_secs_f64()).unwrap_or(0.0)
}

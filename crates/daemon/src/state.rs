//! What every handler can reach.

use banger_config::{Config, Dirs, RuntimeDir};
use banger_state::Db;
use std::sync::Mutex;
use std::time::Instant;
use tokio::sync::watch;

pub struct AppState {
    pub manager: crate::vms::Manager,
    pub dirs: Dirs,
    pub config: Config,
    pub runtime: RuntimeDir,
    pub db: Mutex<Db>,
    pub schema_version: u32,
    pub started_at: u64,
    pub started: Instant,
    pub uid: u32,
    shutdown: watch::Sender<bool>,
}

impl AppState {
    pub fn new(dirs: Dirs, config: Config, runtime: RuntimeDir, db: Db, schema_version: u32, started_at: u64) -> Self {
        let firecracker = crate::vms::backend::find_program(&config.firecracker_bin, &runtime.path);
        let qemu = crate::vms::backend::find_program(&config.qemu_bin, &runtime.path)
            .unwrap_or_else(|| config.qemu_bin.clone());
        let backends = crate::vms::backend::Backends::new(config.vmm, firecracker, qemu, &dirs.cache);
        AppState {
            manager: crate::vms::Manager::new(backends, &dirs.state),
            dirs,
            config,
            runtime,
            db: Mutex::new(db),
            schema_version,
            started_at,
            started: Instant::now(),
            uid: nix::unistd::geteuid().as_raw(),
            shutdown: watch::channel(false).0,
        }
    }

    /// The database (held briefly; never across a wait).
    pub fn db(&self) -> std::sync::MutexGuard<'_, Db> {
        self.db.lock().unwrap_or_else(|e| e.into_inner())
    }

    /// Ask the server to stop after the requests in flight.
    pub fn request_shutdown(&self) {
        self.shutdown.send_replace(true);
    }

    pub async fn shutdown_requested(&self) {
        let mut rx = self.shutdown.subscribe();
        let _ = rx.wait_for(|stop| *stop).await;
    }

    pub fn record_stop(&self, run_id: i64) {
        if let Err(e) = self.db().record_daemon_stop(run_id, crate::now_unix()) {
            tracing::warn!("{e}");
        }
    }
}

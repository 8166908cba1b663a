//! What every handler can reach.

use banger_config::{Config, Dirs, RuntimeDir};
use banger_state::Db;
use std::sync::Mutex;
use std::time::Instant;
use tokio::sync::watch;

pub struct AppState {
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
        AppState {
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

    /// Ask the server to stop after the requests in flight.
    pub fn request_shutdown(&self) {
        self.shutdown.send_replace(true);
    }

    pub async fn shutdown_requested(&self) {
        let mut rx = self.shutdown.subscribe();
        let _ = rx.wait_for(|stop| *stop).await;
    }

    pub fn record_stop(&self, run_id: i64) {
        let db = self.db.lock().unwrap_or_else(|e| e.into_inner());
        if let Err(e) = db.record_daemon_stop(run_id, crate::now_unix()) {
            tracing::warn!("{e}");
        }
    }
}

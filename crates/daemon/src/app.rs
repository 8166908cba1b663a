//! What every handler can reach: the VM manager, the daemon's directories and facts about this
//! run, and the shutdown switch.

use crate::vms::Manager;
use banger_config::Dirs;
use std::time::Instant;
use tokio::sync::watch;

pub struct App {
    pub vms: Manager,
    pub dns: crate::dns::Dns,
    pub dirs: Dirs,
    pub schema_version: u32,
    pub started_at: u64,
    pub started: Instant,
    pub uid: u32,
    shutdown: watch::Sender<bool>,
}

impl App {
    pub fn new(vms: Manager, dns: crate::dns::Dns, dirs: Dirs, schema_version: u32, started_at: u64) -> Self {
        App {
            vms,
            dns,
            dirs,
            schema_version,
            started_at,
            started: Instant::now(),
            uid: nix::unistd::geteuid().as_raw(),
            shutdown: watch::channel(false).0,
        }
    }

    /// Ask the server to stop after the requests in flight (event streams end at once).
    pub fn request_shutdown(&self) {
        self.shutdown.send_replace(true);
    }

    /// Whether a shutdown was asked for (long-lived requests end when it was).
    pub fn shutting_down(&self) -> bool {
        *self.shutdown.borrow()
    }

    pub async fn shutdown_requested(&self) {
        let mut rx = self.shutdown.subscribe();
        let _ = rx.wait_for(|stop| *stop).await;
    }

    pub fn record_stop(&self, run_id: i64) {
        if let Err(e) = self.vms.db().record_daemon_stop(run_id, crate::now_unix()) {
            tracing::warn!("{e}");
        }
    }
}

//! What commands share: the directories, config, and a client that starts the daemon on demand.

use crate::error::{CliError, CliResult};
use banger_client::Client;
use banger_client::autostart::{self, Started};
use banger_config::{Config, Dirs, RuntimeDir};
use std::future::Future;
use std::time::Duration;

/// How long a CLI waits for a daemon it started to answer.
pub const START_TIMEOUT: Duration = Duration::from_secs(10);

pub struct Ctx {
    pub dirs: Dirs,
}

impl Ctx {
    pub fn new() -> CliResult<Ctx> {
        Ok(Ctx { dirs: Dirs::from_env()? })
    }

    /// The config file, with its warnings printed to stderr.
    pub fn config(&self) -> CliResult<Config> {
        let config = Config::load(&self.dirs.config_file())?;
        for w in &config.warnings {
            eprintln!("banger: warning: {w}");
        }
        Ok(config)
    }

    pub fn runtime(&self, config: &Config) -> RuntimeDir {
        RuntimeDir::resolve(config.runtime_dir.as_deref())
    }

    /// A client for a daemon that answers, starting `bangerd` first if none does.
    pub fn client(&self) -> CliResult<Client> {
        let socket = self.dirs.socket();
        banger_client::check_socket_owner(&socket)?;
        if autostart::is_listening(&socket) {
            return Ok(Client::new(socket));
        }
        // Report a broken config here, in one line, rather than as a daemon that died.
        self.config()?;
        match autostart::ensure_running(&self.dirs, &autostart::daemon_binary(), START_TIMEOUT)? {
            Started::AlreadyRunning => {}
            Started::Started { pid } => eprintln!("banger: started bangerd (pid {pid})"),
        }
        Ok(Client::new(socket))
    }

    /// A client for the daemon if one answers; never starts one.
    pub fn client_no_start(&self) -> Client {
        Client::new(self.dirs.socket())
    }
}

/// Seconds since the Unix epoch.
pub fn now() -> u64 {
    std::time::SystemTime::now().duration_since(std::time::UNIX_EPOCH).map(|d| d.as_secs()).unwrap_or(0)
}

/// Run a future to completion on a small single-threaded runtime.
pub fn block_on<F: Future>(f: F) -> F::Output {
    tokio::runtime::Builder::new_current_thread()
        .enable_all()
        .build()
        .map_err(|e| CliError::failure(format!("cannot start the async runtime: {e}")))
        .map(|rt| rt.block_on(f))
        .unwrap_or_else(|e| {
            eprintln!("banger: error: {}", e.message);
            std::process::exit(e.code)
        })
}

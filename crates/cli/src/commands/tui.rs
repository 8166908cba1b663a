//! `banger tui`: the terminal UI ([`banger_tui`]) over the daemon's API.

use crate::commands::events::{Update, follow_from};
use crate::context::{Ctx, block_on};
use crate::error::{CliError, CliResult};
use banger_api::request::{KillVm, SetVm, StopVm};
use banger_api::response::{Deleted, ImageList, Vm, VmList, VmStats};
use banger_api::routes::{self, vm_path};
use banger_client::{Client, Method};
use banger_tui::Action;
use std::sync::Arc;
use std::time::Duration;

pub fn run(ctx: &Ctx, trace: Option<std::path::PathBuf>) -> CliResult {
    use std::io::IsTerminal;
    if !(std::io::stdin().is_terminal() && std::io::stdout().is_terminal()) {
        return Err(CliError::new(banger_api::exit::BAD_INPUT, "banger tui needs a terminal"));
    }
    // Start the daemon now, and ask it once: its messages (started, another build) come before
    // the screen is taken; none is printed over it.
    let _ = block_on(ctx.client()?.get_raw(routes::DAEMON_STATUS));
    banger_client::silence_build_warning();
    let daemon = Api { ctx: Ctx { dirs: ctx.dirs.clone() } };
    banger_tui::term::run(Arc::new(daemon), banger_tui::term::Options { trace }).map_err(CliError::failure)
}

struct Api {
    ctx: Ctx,
}

/// How long a request (not an operation's progress stream) may take before the TUI says so.
const REQUEST_TIMEOUT: Duration = Duration::from_secs(10);

/// A request's answer, or its one-line error; bounded by [`REQUEST_TIMEOUT`] (a daemon that
/// accepts and never answers must not hang a fetch forever).
fn call<T>(fut: impl std::future::Future<Output = Result<T, banger_client::ClientError>>) -> Result<T, String> {
    block_on(async { tokio::time::timeout(REQUEST_TIMEOUT, fut).await })
        .map_err(|_| format!("bangerd did not answer within {}s", REQUEST_TIMEOUT.as_secs()))?
        .map_err(|e| e.to_string())
}

impl Api {
    fn client(&self) -> Result<Client, String> {
        // Never starts a daemon behind the screen: a gone daemon shows as reconnecting.
        Ok(self.ctx.client_no_start())
    }

    fn stream(
        &self,
        method: Method,
        path: &str,
        body: &impl serde::Serialize,
        progress: &mut dyn FnMut(&str),
    ) -> Result<Vm, String> {
        let c = self.client()?;
        block_on(c.stream(method, path, body, |_stage, message| progress(message))).map_err(|e| e.to_string())
    }
}

impl banger_tui::Daemon for Api {
    fn vms(&self) -> Result<Vec<Vm>, String> {
        let list: VmList = call(self.client()?.get(routes::VMS))?;
        Ok(list.vms)
    }

    fn images(&self) -> Result<Vec<banger_api::response::Image>, String> {
        let list: ImageList = call(self.client()?.get(routes::IMAGES))?;
        Ok(list.images)
    }

    fn stats(&self, name: &str) -> Result<VmStats, String> {
        call(self.client()?.get(&vm_path(routes::VM_STATS, name)))
    }

    fn act(&self, action: &Action, progress: &mut dyn FnMut(&str)) -> Result<String, String> {
        let stop = StopVm::default();
        match action {
            Action::Create(req) => {
                let vm = self.stream(Method::POST, routes::VMS, req, progress)?;
                Ok(format!("created {}{}", vm.name, if req.no_start { "" } else { " and started it" }))
            }
            Action::Start(n) => {
                self.stream(Method::POST, &vm_path(routes::VM_START, n), &(), progress).map(|_| format!("started {n}"))
            }
            Action::Stop(n) => {
                self.stream(Method::POST, &vm_path(routes::VM_STOP, n), &stop, progress).map(|_| format!("stopped {n}"))
            }
            Action::Restart(n) => self
                .stream(Method::POST, &vm_path(routes::VM_RESTART, n), &stop, progress)
                .map(|_| format!("restarted {n}")),
            Action::SetNat(n, on) => {
                let req = SetVm { nat: Some(*on), ..Default::default() };
                self.stream(Method::PATCH, &vm_path(routes::VM, n), &req, progress)
                    .map(|_| format!("NAT {} for {n}", if *on { "on" } else { "off" }))
            }
            Action::Kill(n) => {
                let vm: Vm =
                    call(self.client()?.post(&vm_path(routes::VM_KILL, n), &KillVm { signal: "KILL".into() }))?;
                Ok(format!("killed {n}'s VMM; it is {}", vm.state.as_str()))
            }
            Action::Delete(n) => {
                let d: Deleted = call(self.client()?.delete(&format!("{}?force=true", vm_path(routes::VM, n))))?;
                Ok(format!("deleted {}", d.name))
            }
            Action::DeleteImage(n) => {
                let d: Deleted = call(self.client()?.delete(&vm_path(routes::IMAGE, n)))?;
                Ok(format!("deleted image {}", d.name))
            }
        }
    }

    fn follow(&self, on: &mut dyn FnMut(banger_tui::Update) -> bool) {
        // From what the daemon keeps (the model drops replayed progress older than its start).
        // Following never ends by itself: whatever breaks it shows as "reconnecting" and is
        // retried.
        let mut gone = false;
        loop {
            let mut stopped = false;
            let r = follow_from(&self.ctx, Some(0), gone, |u| {
                let go_on = on(match u {
                    Update::Event(e) => banger_tui::Update::Event(e),
                    Update::DaemonGone => banger_tui::Update::Gone,
                    Update::DaemonBack => banger_tui::Update::Back,
                });
                stopped = !go_on;
                go_on
            });
            if stopped || (r.is_ok() && !gone) {
                return;
            }
            if !gone && !on(banger_tui::Update::Gone) {
                return;
            }
            gone = true;
            std::thread::sleep(Duration::from_secs(2));
        }
    }

    fn ssh(&self, name: &str) -> Result<std::process::Command, String> {
        let vm: Vm = call(self.client()?.get(&vm_path(routes::VM, name)))?;
        let args = crate::commands::vm::ssh_args(&vm, &["-t"], &[]).map_err(|e| e.message)?;
        let mut c = std::process::Command::new("ssh");
        c.args(args);
        Ok(c)
    }
}

//! `banger tui`: VMs and images in a terminal, live from the daemon's event stream.
//!
//! - [`app`]: the model — what is shown, selected, filtered, sorted, in progress — and how each
//!   message (a key, a daemon event, a fetched list, an action's progress) changes it. Pure: no
//!   terminal, no daemon; it answers with [`app::Effect`]s for the loop to carry out.
//! - [`form`]: the create form.
//! - [`ui`]: drawing the model (snapshot-tested on ratatui's `TestBackend`).
//! - [`term`]: the terminal and the loop: input, the event stream, one-second figures, actions
//!   on their own threads, leaving the screen for `ssh`, restoring the terminal on every exit.
//!
//! The daemon is reached through [`Daemon`], which the CLI implements over the API.

pub mod app;
pub mod form;
pub mod term;
pub mod ui;

use banger_api::event::Event;
use banger_api::request::CreateVm;
use banger_api::response::{Image, Vm, VmStats};

/// What the TUI needs from the daemon. Errors are the daemon's (or the client's) one line.
pub trait Daemon: Send + Sync + 'static {
    fn vms(&self) -> Result<Vec<Vm>, String>;
    fn images(&self) -> Result<Vec<Image>, String>;
    fn stats(&self, name: &str) -> Result<VmStats, String>;
    /// Carry out `action`, reporting its progress lines; a one-line summary when it is done.
    fn act(&self, action: &Action, progress: &mut dyn FnMut(&str)) -> Result<String, String>;
    /// Follow the event stream until `on` returns `false`, across daemon restarts (saying so).
    fn follow(&self, on: &mut dyn FnMut(Update) -> bool);
    /// The command that opens an interactive SSH session in VM `name`.
    fn ssh(&self, name: &str) -> Result<std::process::Command, String>;
}

/// What the event stream reports.
#[derive(Debug, Clone, PartialEq)]
pub enum Update {
    Event(Event),
    /// The daemon went away; following resumes when it is back.
    Gone,
    /// A daemon answers again.
    Back,
}

/// Something the user asked the daemon to do.
#[derive(Debug, Clone, PartialEq)]
pub enum Action {
    Create(CreateVm),
    Start(String),
    Stop(String),
    Restart(String),
    Kill(String),
    /// Deletes a running VM too (the confirmation says so).
    Delete(String),
    SetNat(String, bool),
    DeleteImage(String),
}

impl Action {
    /// The VM (or image) it is about; a new VM without a name is `new VM`.
    pub fn target(&self) -> String {
        match self {
            Action::Create(r) => r.name.clone().unwrap_or_else(|| "new VM".into()),
            Action::Start(n)
            | Action::Stop(n)
            | Action::Restart(n)
            | Action::Kill(n)
            | Action::Delete(n)
            | Action::SetNat(n, _)
            | Action::DeleteImage(n) => n.clone(),
        }
    }

    /// `starting`, `stopping`, …: shown in the VM's row while it runs.
    pub fn doing(&self) -> &'static str {
        match self {
            Action::Create(_) => "creating",
            Action::Start(_) => "starting",
            Action::Stop(_) => "stopping",
            Action::Restart(_) => "restarting",
            Action::Kill(_) => "killing",
            Action::Delete(_) | Action::DeleteImage(_) => "deleting",
            Action::SetNat(_, true) => "enabling NAT",
            Action::SetNat(_, false) => "disabling NAT",
        }
    }
}

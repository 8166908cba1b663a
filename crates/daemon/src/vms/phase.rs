//! A VM's phase as the daemon holds it: what only exists while a VMM runs (the process, its
//! backend and accelerator, when it started) is carried by the phases that have one.

use banger_api::response::Phase;
use banger_state::{PhaseRow, VmRecord};
use banger_vmm::Instance;
use std::path::PathBuf;

/// A VMM process of a VM and when it started.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Live {
    pub instance: Instance,
    pub started_at: u64,
}

#[derive(Debug, Clone, PartialEq, Eq)]
pub enum VmPhase {
    Stopped,
    /// Booting; the VMM process once it has been spawned.
    Starting(Option<Live>),
    Running(Live),
    Stopping(Live),
    /// A boot failed or the VMM died on its own; why.
    Failed(String),
}

impl VmPhase {
    pub fn kind(&self) -> Phase {
        match self {
            VmPhase::Stopped => Phase::Stopped,
            VmPhase::Starting(_) => Phase::Starting,
            VmPhase::Running(_) => Phase::Running,
            VmPhase::Stopping(_) => Phase::Stopping,
            VmPhase::Failed(_) => Phase::Failed,
        }
    }

    pub fn live(&self) -> Option<&Live> {
        match self {
            VmPhase::Starting(live) => live.as_ref(),
            VmPhase::Running(live) | VmPhase::Stopping(live) => Some(live),
            VmPhase::Stopped | VmPhase::Failed(_) => None,
        }
    }

    /// Read the phase columns of a row; a row this daemon cannot make sense of is an error
    /// (never guessed at: an unknown accelerator is not TCG).
    pub fn from_record(rec: &VmRecord) -> Result<VmPhase, String> {
        let damaged = |what: String| format!("VM {}'s database row is damaged: {what}", rec.name);
        let live = || -> Result<Live, String> {
            let backend = rec.backend.as_deref().ok_or("no backend recorded")?.parse()?;
            let accel = rec.accel.as_deref().ok_or("no accelerator recorded")?.parse()?;
            let pid = rec.pid.ok_or("no VMM pid recorded")?;
            let control_socket = PathBuf::from(rec.control_socket.as_deref().ok_or("no control socket recorded")?);
            let started_at = rec.started_at.ok_or("no start time recorded")?;
            Ok(Live { instance: Instance { backend, accel, pid, control_socket }, started_at })
        };
        Ok(match rec.phase.as_str() {
            "stopped" => VmPhase::Stopped,
            "failed" => VmPhase::Failed(rec.last_error.clone().unwrap_or_default()),
            "starting" if rec.pid.is_none() => VmPhase::Starting(None),
            "starting" => VmPhase::Starting(Some(live().map_err(damaged)?)),
            "running" => VmPhase::Running(live().map_err(damaged)?),
            "stopping" => VmPhase::Stopping(live().map_err(damaged)?),
            other => return Err(damaged(format!("unknown phase {other:?}"))),
        })
    }

    /// The columns [`banger_state::Db::set_phase`] writes for this phase.
    pub fn row(&self) -> PhaseRow<'_> {
        let mut row = PhaseRow { phase: self.kind().as_str(), ..Default::default() };
        if let Some(live) = self.live() {
            row.backend = Some(live.instance.backend.as_str());
            row.accel = Some(live.instance.accel.as_str());
            row.pid = Some(live.instance.pid);
            row.control_socket = live.instance.control_socket.to_str();
            row.started_at = Some(live.started_at);
        }
        match self {
            VmPhase::Failed(why) => row.error = Some(why),
            VmPhase::Running(_) => row.clear_error = true,
            _ => {}
        }
        row
    }
}

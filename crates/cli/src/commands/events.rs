//! `banger events`: follow the daemon's event stream. Also [`follow`], which `vm list --watch`
//! uses: it reconnects when the daemon restarts, asking for what it missed.

use crate::context::{Ctx, block_on};
use crate::error::CliResult;
use crate::output;
use banger_api::event::{Event, EventKind};
use banger_client::{ClientError, autostart};
use std::time::Duration;

pub fn run(ctx: &Ctx, json: bool, since: Option<u64>) -> CliResult {
    use std::io::Write;
    follow(ctx, since, |update| {
        let event = match update {
            Update::Event(e) => e,
            Update::DaemonGone => {
                eprintln!("banger: bangerd stopped; waiting for it to come back (Ctrl-C to quit)");
                return true;
            }
            Update::DaemonBack => {
                eprintln!("banger: bangerd is back");
                return true;
            }
        };
        let mut out = std::io::stdout().lock();
        let written = if json {
            serde_json::to_string(&event).map_err(std::io::Error::other).and_then(|s| writeln!(out, "{s}"))
        } else {
            writeln!(out, "{}", describe(&event))
        };
        // Stop quietly when whatever reads our output goes away (`| head`).
        written.and_then(|()| out.flush()).is_ok()
    })
}

/// What [`follow`] reports.
pub enum Update {
    Event(Event),
    /// The daemon went away; following resumes when it is back.
    DaemonGone,
    /// A daemon answers again (what changed meanwhile follows as events, or a `resync`).
    DaemonBack,
}

/// Call `on_update` for every event from now on (or after `since`) until it returns `false`.
/// When the daemon goes away, say so, wait for it to come back and carry on after the last
/// event seen (or with everything the new daemon kept, if none was), so nothing it published
/// meanwhile is missed.
pub fn follow(ctx: &Ctx, since: Option<u64>, on_update: impl FnMut(Update) -> bool) -> CliResult {
    follow_from(ctx, since, false, on_update)
}

/// [`follow`]; when `gone`, the caller already said the daemon is gone: wait for it first, then
/// say it is back.
pub fn follow_from(ctx: &Ctx, since: Option<u64>, gone: bool, mut on_update: impl FnMut(Update) -> bool) -> CliResult {
    let mut last = since;
    let mut said_gone = gone;
    if gone {
        while !autostart::is_listening(&ctx.dirs.socket()) {
            std::thread::sleep(Duration::from_millis(200));
        }
        if !on_update(Update::DaemonBack) {
            return Ok(());
        }
        said_gone = false;
    }
    let mut client = ctx.client()?;
    loop {
        let mut stop = false;
        let followed = block_on(client.events(last, |event| {
            last = Some(event.seq);
            stop = !on_update(Update::Event(event));
            !stop
        }));
        match followed {
            Ok(()) => {}
            // A daemon that is shutting down may still accept a connection it will not serve;
            // a stream cut mid-line reads as a protocol error.
            Err(ClientError::Unreachable { .. } | ClientError::Protocol(_)) => {}
            Err(e) => return Err(e.into()),
        }
        if stop {
            return Ok(());
        }
        if !said_gone {
            said_gone = true;
            if !on_update(Update::DaemonGone) {
                return Ok(());
            }
        }
        std::thread::sleep(Duration::from_millis(200));
        while !autostart::is_listening(client.socket()) {
            std::thread::sleep(Duration::from_millis(200));
        }
        last = last.or(Some(0));
        client = ctx.client()?;
        if said_gone {
            said_gone = false;
            if !on_update(Update::DaemonBack) {
                return Ok(());
            }
        }
    }
}

/// One line for people: time, VM, what happened.
pub fn describe(e: &Event) -> String {
    let what = match &e.kind {
        EventKind::Created => "created".to_string(),
        EventKind::Phase { from, to, reason } => {
            format!("{from} → {to}{}", reason.as_deref().map(|r| format!(" ({r})")).unwrap_or_default())
        }
        EventKind::Progress { stage, message } => format!("{stage}: {message}"),
        EventKind::Error { message } => format!("error: {message}"),
        EventKind::Changed { fields } => {
            let f: Vec<String> = fields.iter().map(|(k, v)| format!("{k}={v}")).collect();
            format!("changed {}", f.join(" "))
        }
        EventKind::Deleted => "deleted".to_string(),
        EventKind::Resync { reason } => format!("-- missed events: {reason}"),
    };
    format!("{}  {:<20}  {what}", output::clock(e.time), e.vm.as_deref().unwrap_or("-"))
}

//! `--watch`: keep a view on screen, refetched when an event may have changed it (and, for
//! views of live figures, every second), redrawn in place on a terminal; with `--json`, one
//! document per line each time it is fetched.

use crate::commands::events::{Update, follow};
use crate::context::Ctx;
use crate::error::{CliError, CliResult};
use banger_api::event::Event;
use serde::Serialize;
use std::io::{IsTerminal, Write};
use std::sync::mpsc;
use std::time::Duration;

pub struct View<T, F, R> {
    /// Refetch every second even without events (live figures).
    pub every_second: bool,
    /// Whether an event may change the view.
    pub relevant: fn(&Event, &str) -> bool,
    /// Passed to `relevant` (e.g. the VM name).
    pub subject: String,
    pub fetch: F,
    pub render: R,
    pub _t: std::marker::PhantomData<T>,
}

pub fn watch<T, F, R>(ctx: &Ctx, json: bool, mut view: View<T, F, R>) -> CliResult
where
    T: Serialize,
    F: FnMut() -> CliResult<T>,
    R: Fn(&T) -> String,
{
    let (tx, rx) = mpsc::channel::<bool>();
    // Events arrive on their own thread; this one fetches and draws. It starts with whatever the
    // daemon kept (`since 0`), so a change between its subscription and the first fetch is not
    // missed: at worst the view is fetched once more.
    let follower = {
        let ctx = Ctx { dirs: ctx.dirs.clone() };
        let (relevant, subject) = (view.relevant, view.subject.clone());
        std::thread::spawn(move || {
            follow(&ctx, Some(0), |update| match update {
                Update::Event(e) if !relevant(&e, &subject) => true,
                Update::Event(_) | Update::DaemonBack => tx.send(true).is_ok(),
                Update::DaemonGone => tx.send(false).is_ok(),
            })
        })
    };
    let tty = std::io::stdout().is_terminal();
    let mut current = (view.fetch)()?;
    let (mut fetched, mut daemon_gone) = (true, false);
    loop {
        let mut out = std::io::stdout().lock();
        let gone = if daemon_gone { "\nbangerd is not running; waiting for it to come back\n" } else { "" };
        let drawn = if json {
            if fetched {
                serde_json::to_string(&current).map_err(std::io::Error::other).and_then(|s| writeln!(out, "{s}"))
            } else {
                Ok(())
            }
        } else if tty {
            write!(out, "\x1b[H\x1b[2J{}{gone}", (view.render)(&current))
        } else if fetched {
            writeln!(out, "{}{gone}", (view.render)(&current))
        } else {
            Ok(())
        };
        if drawn.and_then(|()| out.flush()).is_err() {
            return Ok(());
        }
        drop(out);
        fetched = false;
        // Refetch on a relevant event, when the daemon is back, and each second for live views;
        // print without a refetch only to say the daemon went away (JSON lines carry documents).
        let refetch = match rx.recv_timeout(Duration::from_secs(1)) {
            Ok(mut changed) => {
                while let Ok(c) = rx.try_recv() {
                    changed = c;
                }
                daemon_gone = !changed;
                fetched = !json;
                changed
            }
            Err(mpsc::RecvTimeoutError::Timeout) => view.every_second && !daemon_gone,
            Err(mpsc::RecvTimeoutError::Disconnected) => {
                return match follower.join() {
                    Ok(r) => r,
                    Err(_) => Err(CliError::failure("the event follower stopped unexpectedly")),
                };
            }
        };
        if refetch {
            current = (view.fetch)()?;
            fetched = true;
        }
    }
}

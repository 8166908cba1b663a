//! The terminal and the loop. Threads feed one channel: keys (read only while the TUI owns the
//! terminal), the daemon's event stream, a one-second tick, fetches and actions (each on its own
//! thread, so nothing the daemon does can freeze the screen). The loop updates the model, does
//! what it asks and redraws — only when something changed. The terminal is restored on every
//! exit: normally, on error, and on panic (ratatui's hook).

use crate::app::{App, Effect, Msg};
use crate::{Action, Daemon};
use ratatui::DefaultTerminal;
use ratatui::crossterm::event::{self, Event, KeyEventKind};
use ratatui::crossterm::{cursor, execute, terminal};
use std::io::Write;
use std::path::{Path, PathBuf};
use std::sync::Arc;
use std::sync::atomic::{AtomicBool, Ordering};
use std::sync::mpsc::{self, Receiver, Sender};
use std::time::{Duration, Instant, SystemTime, UNIX_EPOCH};

/// How many console lines the detail pane keeps.
const CONSOLE_LINES: usize = 40;

#[derive(Debug, Clone, Default)]
pub struct Options {
    /// Append each keypress-to-redraw latency (milliseconds, one a line) to this file.
    pub trace: Option<PathBuf>,
}

/// One message for the loop; keys carry when they were read.
enum In {
    App(Box<Msg>),
    Key(ratatui::crossterm::event::KeyEvent, Instant),
    Redraw,
    /// The command for an SSH session, looked up off the loop's thread.
    Ssh(String, Result<std::process::Command, String>),
    /// SIGTERM, SIGHUP or SIGINT, or a terminal that cannot be read any more.
    Quit,
}

/// Set by the signal handler (all it does: async-signal-safe); the key reader passes it on.
static SIGNALLED: AtomicBool = AtomicBool::new(false);

extern "C" fn on_signal(_: nix::libc::c_int) {
    SIGNALLED.store(true, Ordering::SeqCst);
}

/// SIGTERM, SIGHUP and SIGINT end the TUI through its loop, so the terminal is restored.
fn catch_signals() {
    use nix::sys::signal::{SaFlags, SigAction, SigHandler, SigSet, Signal, sigaction};
    let action = SigAction::new(SigHandler::Handler(on_signal), SaFlags::SA_RESTART, SigSet::empty());
    for sig in [Signal::SIGTERM, Signal::SIGHUP, Signal::SIGINT] {
        // SAFETY: the handler only stores to an atomic.
        let _ = unsafe { sigaction(sig, &action) };
    }
}

/// The key reader's handshake with the loop: while `paused` it does not touch the terminal;
/// `reading` says it is inside a poll or read (set before it checks `paused`, so the loop that
/// sets `paused` and then waits for `reading` to drop can never miss it).
#[derive(Default)]
struct KeyGate {
    paused: AtomicBool,
    reading: AtomicBool,
}

fn unix_now() -> f64 {
    SystemTime::now().duration_since(UNIX_EPOCH).map(|d| d.as_secs_f64()).unwrap_or(0.0)
}

/// Set by a panic on any thread (the panic hook has restored the terminal by then): the loop
/// stops instead of drawing over it.
static PANICKED: AtomicBool = AtomicBool::new(false);

/// Give the terminal back as it was: cooked mode, the main screen, a visible cursor. Once only
/// after a panic (the hook did it; leaving the main screen again would move the cursor back over
/// the panic's message).
fn restore() {
    if !PANICKED.load(Ordering::SeqCst) {
        ratatui::restore();
    }
    let _ = execute!(std::io::stdout(), cursor::Show);
}

/// Run the TUI until the user quits.
pub fn run(daemon: Arc<dyn Daemon>, opts: Options) -> Result<(), String> {
    // ratatui's hook restores raw mode and the screen; ours also shows the cursor and stops the
    // loop (a panic on a worker thread would otherwise leave it drawing on the main screen).
    let mut terminal = ratatui::try_init().map_err(|e| format!("cannot set up the terminal: {e}"))?;
    let ratatui_hook = std::panic::take_hook();
    std::panic::set_hook(Box::new(move |info| {
        PANICKED.store(true, Ordering::SeqCst);
        ratatui_hook(info);
        let _ = execute!(std::io::stdout(), cursor::Show);
    }));
    catch_signals();
    let result = Loop::new(daemon, opts).run(&mut terminal);
    restore();
    result
}

struct Loop {
    daemon: Arc<dyn Daemon>,
    app: App,
    tx: Sender<In>,
    rx: Receiver<In>,
    keys: Arc<KeyGate>,
    /// Keys read before this (typed for the SSH session, or while it was set up) are dropped.
    keys_after: Instant,
    fetching: Fetching,
    trace: Option<std::fs::File>,
}

/// Fetches in flight, and whether another was asked for meanwhile (coalesced into one).
#[derive(Default)]
struct Fetching {
    vms: (bool, bool),
    images: (bool, bool),
    detail: (bool, bool),
}

impl Loop {
    fn new(daemon: Arc<dyn Daemon>, opts: Options) -> Loop {
        let (tx, rx) = mpsc::channel();
        let trace = opts.trace.and_then(|p| std::fs::OpenOptions::new().create(true).append(true).open(p).ok());
        Loop {
            daemon,
            app: App::new(unix_now()),
            tx,
            rx,
            keys: Arc::new(KeyGate::default()),
            keys_after: Instant::now(),
            fetching: Fetching::default(),
            trace,
        }
    }

    fn run(&mut self, terminal: &mut DefaultTerminal) -> Result<(), String> {
        self.spawn_keys();
        self.spawn_events();
        self.spawn_ticks();
        self.effect(Effect::RefreshVms);
        self.effect(Effect::RefreshImages);
        let mut keys_since_draw: Vec<Instant> = vec![];
        let mut dirty = true;
        loop {
            if dirty {
                terminal.draw(|f| crate::ui::draw(f, &self.app)).map_err(|e| format!("cannot draw: {e}"))?;
                if let Some(t) = self.trace.as_mut() {
                    for k in keys_since_draw.drain(..) {
                        let _ = writeln!(t, "{:.3}", k.elapsed().as_secs_f64() * 1000.0);
                    }
                }
                keys_since_draw.clear();
                dirty = false;
                // Fault injection for the test that a panic leaves the terminal restored; inert
                // unless set.
                if std::env::var_os("BANGER_TUI_TEST_PANIC").is_some() && self.app.loaded {
                    std::thread::spawn(|| panic!("BANGER_TUI_TEST_PANIC is set")).join().ok();
                }
            }
            let Ok(first) = self.rx.recv() else { return Ok(()) };
            if PANICKED.load(Ordering::SeqCst) {
                return Err("banger tui stopped after an internal error (above)".into());
            }
            // The model's clock (what messages and "ago" are measured by) is now.
            self.app.clock = unix_now() as u64;
            // Everything already waiting is handled before the next draw.
            let mut batch = vec![first];
            batch.extend(self.rx.try_iter());
            for m in batch {
                let effects = match m {
                    In::Redraw => vec![],
                    In::Quit => return Ok(()),
                    In::Key(_, at) if at < self.keys_after => vec![],
                    In::Key(k, at) => {
                        keys_since_draw.push(at);
                        self.app.update(Msg::Key(k))
                    }
                    In::Ssh(name, cmd) => {
                        self.ssh(terminal, &name, cmd)?;
                        vec![]
                    }
                    In::App(msg) => {
                        self.settle(&msg);
                        self.app.update(*msg)
                    }
                };
                dirty = true;
                for e in effects {
                    if e == Effect::Quit {
                        return Ok(());
                    }
                    self.effect(e);
                }
            }
        }
    }

    /// A fetch came back: another may start (the one asked for meanwhile).
    fn settle(&mut self, msg: &Msg) {
        let (slot, again) = match msg {
            Msg::Vms(_) => (&mut self.fetching.vms, Effect::RefreshVms),
            Msg::Images(_) => (&mut self.fetching.images, Effect::RefreshImages),
            Msg::Console(..) => (&mut self.fetching.detail, Effect::RefreshDetail),
            _ => return,
        };
        let ask = slot.1;
        *slot = (false, false);
        if ask {
            self.effect(again);
        }
    }

    fn send(tx: &Sender<In>, msg: Msg) -> bool {
        tx.send(In::App(Box::new(msg))).is_ok()
    }

    fn effect(&mut self, e: Effect) {
        let (d, tx) = (self.daemon.clone(), self.tx.clone());
        match e {
            Effect::Quit => {}
            Effect::Ssh(name) => {
                // Keys stop now: what is typed from here on belongs to the session.
                self.keys.paused.store(true, Ordering::SeqCst);
                std::thread::spawn(move || {
                    let cmd = d.ssh(&name);
                    let _ = tx.send(In::Ssh(name, cmd));
                });
            }
            Effect::RefreshVms => {
                if std::mem::replace(&mut self.fetching.vms.0, true) {
                    self.fetching.vms.1 = true;
                    return;
                }
                std::thread::spawn(move || Self::send(&tx, Msg::Vms(d.vms())));
            }
            Effect::RefreshImages => {
                if std::mem::replace(&mut self.fetching.images.0, true) {
                    self.fetching.images.1 = true;
                    return;
                }
                std::thread::spawn(move || Self::send(&tx, Msg::Images(d.images())));
            }
            Effect::RefreshDetail => {
                let Some(vm) = self.app.selected_vm() else { return };
                let (name, log, running) =
                    (vm.name.clone(), vm.console_log.clone(), vm.state == banger_api::response::Phase::Running);
                if std::mem::replace(&mut self.fetching.detail.0, true) {
                    self.fetching.detail.1 = true;
                    return;
                }
                std::thread::spawn(move || {
                    if running {
                        Self::send(&tx, Msg::Stats(name.clone(), d.stats(&name)));
                    }
                    Self::send(&tx, Msg::Console(name, console_tail(&log, CONSOLE_LINES)));
                });
            }
            Effect::Act(action) => {
                std::thread::spawn(move || {
                    let t = tx.clone();
                    let a: Action = action.clone();
                    let result = d.act(&action, &mut |line| {
                        let _ = Self::send(&t, Msg::Progress(a.clone(), line.to_string()));
                    });
                    Self::send(&tx, Msg::Done(action, result))
                });
            }
        }
    }

    /// Keys, read only while the TUI owns the terminal (see [`KeyGate`]); signals passed on.
    fn spawn_keys(&self) {
        let (tx, gate) = (self.tx.clone(), self.keys.clone());
        std::thread::spawn(move || {
            loop {
                if SIGNALLED.load(Ordering::SeqCst) {
                    let _ = tx.send(In::Quit);
                    return;
                }
                gate.reading.store(true, Ordering::SeqCst);
                if gate.paused.load(Ordering::SeqCst) {
                    gate.reading.store(false, Ordering::SeqCst);
                    std::thread::sleep(Duration::from_millis(20));
                    continue;
                }
                let got = match event::poll(Duration::from_millis(100)) {
                    Ok(true) => event::read().map(Some),
                    Ok(false) => Ok(None),
                    Err(e) => Err(e),
                };
                gate.reading.store(false, Ordering::SeqCst);
                let sent = match got {
                    Ok(Some(Event::Key(k))) if k.kind == KeyEventKind::Press => tx.send(In::Key(k, Instant::now())),
                    Ok(Some(Event::Resize(..))) => tx.send(In::Redraw),
                    Ok(_) => Ok(()),
                    // The terminal went away: nothing more can be typed, so the TUI ends.
                    Err(_) => {
                        let _ = tx.send(In::Quit);
                        return;
                    }
                };
                if sent.is_err() {
                    return;
                }
            }
        });
    }

    fn spawn_events(&self) {
        let (d, tx) = (self.daemon.clone(), self.tx.clone());
        std::thread::spawn(move || d.follow(&mut |u| Self::send(&tx, Msg::Daemon(u))));
    }

    fn spawn_ticks(&self) {
        let tx = self.tx.clone();
        std::thread::spawn(move || {
            loop {
                std::thread::sleep(Duration::from_secs(1));
                if !Self::send(&tx, Msg::Tick(unix_now() as u64)) {
                    return;
                }
            }
        });
    }

    /// Leave the screen for an SSH session in `name`, then come back to the same selection.
    /// Keys are paused (since the `Ssh` effect) and resume afterwards; any read meanwhile is
    /// dropped.
    fn ssh(
        &mut self,
        terminal: &mut DefaultTerminal,
        name: &str,
        cmd: Result<std::process::Command, String>,
    ) -> Result<(), String> {
        let resume = |me: &mut Self| {
            me.keys_after = Instant::now();
            me.keys.paused.store(false, Ordering::SeqCst);
        };
        let mut cmd = match cmd {
            Ok(c) => c,
            Err(e) => {
                self.app.say(format!("{name}: {e}"), true);
                resume(self);
                return Ok(());
            }
        };
        // The key reader finishes its poll (at most 100 ms) before ssh gets the terminal.
        while self.keys.reading.load(Ordering::SeqCst) {
            std::thread::sleep(Duration::from_millis(5));
        }
        restore();
        println!("banger: ssh into {name}; the TUI comes back when the session ends");
        let status = cmd.status();
        terminal::enable_raw_mode().map_err(|e| format!("cannot set up the terminal: {e}"))?;
        execute!(std::io::stdout(), terminal::EnterAlternateScreen)
            .map_err(|e| format!("cannot set up the terminal: {e}"))?;
        terminal.clear().map_err(|e| format!("cannot draw: {e}"))?;
        self.app.clock = unix_now() as u64;
        let (text, error) = match status {
            Ok(s) if s.success() => (format!("back from {name}"), false),
            Ok(s) => (format!("the SSH session to {name} ended: {s}"), true),
            Err(e) => (format!("cannot run ssh: {e} (Debian package openssh-client)"), true),
        };
        self.app.say(text, error);
        resume(self);
        self.effect(Effect::RefreshVms);
        Ok(())
    }
}

/// The last `n` lines of a console log, without terminal control sequences.
pub fn console_tail(path: &Path, n: usize) -> Vec<String> {
    use std::io::{Read, Seek, SeekFrom};
    let Ok(mut f) = std::fs::File::open(path) else { return vec![] };
    let len = f.metadata().map(|m| m.len()).unwrap_or(0);
    let from = len.saturating_sub(16 << 10);
    let mut buf = Vec::new();
    if f.seek(SeekFrom::Start(from)).is_err() || f.read_to_end(&mut buf).is_err() {
        return vec![];
    }
    let text = String::from_utf8_lossy(&buf);
    let mut lines: Vec<String> = text.split('\n').map(clean).collect();
    if from > 0 && !lines.is_empty() {
        lines.remove(0); // partial
    }
    while lines.last().is_some_and(|l| l.is_empty()) {
        lines.pop();
    }
    lines.split_off(lines.len().saturating_sub(n))
}

/// A console line as plain text: escape sequences dropped, `\r` overwrites, other controls gone.
fn clean(line: &str) -> String {
    let line = line.rsplit('\r').find(|s| !s.is_empty()).unwrap_or("");
    let mut out = String::new();
    let mut chars = line.chars().peekable();
    while let Some(c) = chars.next() {
        if c == '\x1b' {
            // CSI: ESC [ params final-byte; other escapes: one more char.
            if chars.peek() == Some(&'[') {
                chars.next();
                for c in chars.by_ref() {
                    if ('@'..='~').contains(&c) {
                        break;
                    }
                }
            } else {
                chars.next();
            }
        } else if c == '\t' {
            out.push_str("    ");
        } else if !c.is_control() {
            out.push(c);
        }
    }
    out
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn console_lines_lose_escapes_and_keep_the_end() {
        assert_eq!(clean("\x1b[0;32m  OK  \x1b[0m] Started\tsshd"), "  OK  ] Started    sshd");
        assert_eq!(clean("progress 10%\rprogress 100%"), "progress 100%");
        assert_eq!(clean("bell\x07"), "bell");
        let t = tempfile_path();
        let text: String = (0..100).map(|i| format!("line {i}\n")).collect();
        std::fs::write(&t, text).unwrap();
        assert_eq!(console_tail(&t, 3), ["line 97", "line 98", "line 99"]);
        let _ = std::fs::remove_file(&t);
        assert!(console_tail(Path::new("/nonexistent/console.log"), 3).is_empty());
    }

    fn tempfile_path() -> PathBuf {
        std::env::temp_dir().join(format!("banger-tui-console-{}", std::process::id()))
    }
}

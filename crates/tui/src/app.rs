//! The model of the TUI and how each message changes it. No terminal and no daemon here: an
//! update answers with [`Effect`]s that the loop ([`crate::term`]) carries out.

use crate::form::{self, Form};
use crate::{Action, Update};
use banger_api::event::EventKind;
use banger_api::response::{Image, Phase, Vm, VmStats};
use ratatui::crossterm::event::{KeyCode, KeyEvent, KeyModifiers};
use std::collections::{BTreeMap, HashMap, VecDeque};

/// How many samples a sparkline keeps (one a second).
pub const HISTORY: usize = 120;
/// Seconds a line of progress seen on the event stream marks a VM busy without news.
pub const SEEN_FOR: u64 = 15;
/// Seconds a message stays.
pub const MESSAGE_FOR: u64 = 10;

#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Tab {
    Vms,
    Images,
}

/// The VM table's columns (also what it can be sorted by).
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Column {
    Name,
    State,
    Backend,
    Ip,
    Vcpu,
    Memory,
    Cpu,
    Rss,
    Uptime,
    Nat,
}

pub const COLUMNS: [Column; 10] = [
    Column::Name,
    Column::State,
    Column::Backend,
    Column::Ip,
    Column::Vcpu,
    Column::Memory,
    Column::Cpu,
    Column::Rss,
    Column::Uptime,
    Column::Nat,
];

impl Column {
    pub fn title(self) -> &'static str {
        match self {
            Column::Name => "NAME",
            Column::State => "STATE",
            Column::Backend => "VMM",
            Column::Ip => "IP",
            Column::Vcpu => "CPUS",
            Column::Memory => "MEM",
            Column::Cpu => "CPU%",
            Column::Rss => "RSS",
            Column::Uptime => "UPTIME",
            Column::Nat => "NAT",
        }
    }
}

#[derive(Debug, Clone, PartialEq)]
pub enum Mode {
    Normal,
    /// Typing the name filter.
    Filter,
    Form(Form),
    /// Waiting for y/n.
    Confirm(Action),
    Help,
}

/// Figures of one VM over time, for the detail pane's sparklines.
#[derive(Debug, Clone, Default, PartialEq)]
pub struct History {
    /// Host CPU% of its VMM (tenths of a percent).
    pub cpu: VecDeque<u64>,
    /// Guest memory used, bytes.
    pub mem: VecDeque<u64>,
    pub mem_total: u64,
}

/// Everything the loop must do for an update.
#[derive(Debug, Clone, PartialEq)]
pub enum Effect {
    Act(Action),
    Ssh(String),
    RefreshVms,
    RefreshImages,
    /// Figures and console of the selected VM, now.
    RefreshDetail,
    Quit,
}

/// What the loop tells the model.
#[derive(Debug, Clone)]
pub enum Msg {
    Key(KeyEvent),
    Daemon(Update),
    Vms(Result<Vec<Vm>, String>),
    Images(Result<Vec<Image>, String>),
    Stats(String, Result<VmStats, String>),
    Console(String, Vec<String>),
    Progress(Action, String),
    Done(Action, Result<String, String>),
    /// Once a second, with the time (Unix seconds).
    Tick(u64),
}

#[derive(Debug, Clone, PartialEq)]
pub struct App {
    pub vms: Vec<Vm>,
    pub images: Vec<Image>,
    pub tab: Tab,
    /// The selected VM, by name (it stays selected while rows move).
    pub selected: Option<String>,
    pub image_index: usize,
    pub filter: String,
    pub sort: Column,
    pub descending: bool,
    pub mode: Mode,
    /// This TUI's operations in progress, by VM (or image): what each is doing now. Only these
    /// refuse another key for the same VM; each ends with its `Done`.
    pub ops: BTreeMap<String, String>,
    /// Progress seen on the event stream (operations started elsewhere): the message and the
    /// clock when seen. Gone when the VM settles, is created, changed or deleted, fails, or after
    /// [`SEEN_FOR`] seconds without news.
    pub seen: BTreeMap<String, (String, u64)>,
    /// When each VM last reached a settled phase (event time): progress published just after it
    /// (the operation's last words) does not mark it busy again.
    settled: HashMap<String, f64>,
    pub history: HashMap<String, History>,
    /// The latest `vm stats` of the selected VM.
    pub stats: Option<VmStats>,
    /// The end of the selected VM's console log.
    pub console: Vec<String>,
    /// One line: what happened last (`true`: an error); cleared after [`MESSAGE_FOR`] seconds.
    pub message: Option<(String, bool)>,
    message_at: u64,
    pub connected: bool,
    /// The VM list was fetched at least once.
    pub loaded: bool,
    /// Events older than this (replayed from before the TUI started) change no progress.
    pub started_at: f64,
    /// The time of the last tick (Unix seconds): what "ago" is measured from.
    pub clock: u64,
}

impl Default for App {
    fn default() -> Self {
        App {
            vms: vec![],
            images: vec![],
            tab: Tab::Vms,
            selected: None,
            image_index: 0,
            filter: String::new(),
            sort: Column::Name,
            descending: false,
            mode: Mode::Normal,
            ops: BTreeMap::new(),
            seen: BTreeMap::new(),
            settled: HashMap::new(),
            history: HashMap::new(),
            stats: None,
            console: vec![],
            message: None,
            message_at: 0,
            connected: true,
            loaded: false,
            started_at: 0.0,
            clock: 0,
        }
    }
}

fn sort_key(vm: &Vm, c: Column) -> (u64, String) {
    let num = |n: u64| (n, String::new());
    match c {
        Column::Name => (0, vm.name.clone()),
        Column::State => (0, vm.state.as_str().to_string()),
        Column::Backend => (0, vm.backend.clone().unwrap_or_default()),
        Column::Ip => {
            let ip: std::net::Ipv4Addr = vm.ip.parse().unwrap_or(std::net::Ipv4Addr::UNSPECIFIED);
            num(u32::from(ip) as u64)
        }
        Column::Vcpu => num(vm.vcpus as u64),
        Column::Memory => num(vm.memory_mib as u64),
        Column::Cpu => num(vm.process.as_ref().and_then(|p| p.cpu_percent).map(|c| (c * 10.0) as u64).unwrap_or(0)),
        Column::Rss => num(vm.process.as_ref().map(|p| p.rss_bytes).unwrap_or(0)),
        Column::Uptime => num(vm.uptime_secs.unwrap_or(0)),
        Column::Nat => num(vm.nat as u64),
    }
}

impl App {
    pub fn new(started_at: f64) -> App {
        App { started_at, clock: started_at as u64, ..Default::default() }
    }

    pub fn now(&self) -> u64 {
        self.clock
    }

    /// The VM rows shown: filtered by name, sorted (ties by name).
    pub fn rows(&self) -> Vec<&Vm> {
        let f = self.filter.to_lowercase();
        let mut rows: Vec<&Vm> = self.vms.iter().filter(|v| v.name.to_lowercase().contains(&f)).collect();
        rows.sort_by(|a, b| {
            let o = sort_key(a, self.sort).cmp(&sort_key(b, self.sort));
            let o = if self.descending { o.reverse() } else { o };
            o.then_with(|| a.name.cmp(&b.name))
        });
        rows
    }

    /// Index of the selected VM among the rows.
    pub fn selected_index(&self) -> Option<usize> {
        let rows = self.rows();
        self.selected.as_ref().and_then(|s| rows.iter().position(|v| &v.name == s))
    }

    pub fn selected_vm(&self) -> Option<&Vm> {
        self.selected.as_ref().and_then(|s| self.vms.iter().find(|v| &v.name == s))
    }

    pub fn running(&self) -> usize {
        self.vms.iter().filter(|v| v.state == Phase::Running).count()
    }

    /// Keep a selection that is shown: the same VM if it still is, else the nearest row.
    fn fix_selection(&mut self, near: Option<usize>) {
        let rows = self.rows();
        if self.selected.as_ref().is_some_and(|s| rows.iter().any(|v| &v.name == s)) {
            return;
        }
        let new = match (near, rows.len()) {
            (_, 0) => None,
            (Some(i), n) => Some(rows[i.min(n - 1)].name.clone()),
            (None, _) => Some(rows[0].name.clone()),
        };
        drop(rows);
        self.select(new);
    }

    fn select(&mut self, name: Option<String>) {
        if name != self.selected {
            self.selected = name;
            self.stats = None;
            self.console.clear();
        }
    }

    fn move_selection(&mut self, delta: isize) -> Vec<Effect> {
        let n = self.rows().len();
        if n == 0 {
            return vec![];
        }
        let at = self.selected_index().map(|i| i as isize).unwrap_or(-1);
        let to = (at + delta).clamp(0, n as isize - 1) as usize;
        let name = self.rows()[to].name.clone();
        self.select(Some(name));
        vec![]
    }

    /// Show `text` on the message line (an error if `error`).
    pub fn say(&mut self, text: impl Into<String>, error: bool) {
        self.message = Some((text.into(), error));
        self.message_at = self.clock;
    }

    /// What VM (or image) `name` is doing, if anything: this TUI's operation, else progress seen.
    pub fn doing(&self, name: &str) -> Option<&str> {
        self.ops.get(name).or_else(|| self.seen.get(name).map(|(m, _)| m)).map(String::as_str)
    }

    /// Everything in progress, by name.
    pub fn all_doing(&self) -> Vec<(&str, &str)> {
        let mut names: Vec<&String> = self.ops.keys().chain(self.seen.keys()).collect();
        names.sort();
        names.dedup();
        names.into_iter().filter_map(|n| self.doing(n).map(|d| (n.as_str(), d))).collect()
    }

    /// Change the model for `msg`; what the loop must do next (and the selected VM's details
    /// whenever the selection changed).
    pub fn update(&mut self, msg: Msg) -> Vec<Effect> {
        let before = self.selected.clone();
        let mut fx = self.apply(msg);
        if self.selected != before && self.selected.is_some() && !fx.contains(&Effect::RefreshDetail) {
            fx.push(Effect::RefreshDetail);
        }
        fx
    }

    fn apply(&mut self, msg: Msg) -> Vec<Effect> {
        match msg {
            Msg::Key(k) => self.key(k),
            Msg::Daemon(u) => self.daemon(u),
            Msg::Vms(Ok(vms)) => {
                let near = self.selected_index();
                self.vms = vms;
                self.loaded = true;
                let names: Vec<&str> = self.vms.iter().map(|v| v.name.as_str()).collect();
                self.history.retain(|n, _| names.contains(&n.as_str()));
                self.fix_selection(near);
                vec![]
            }
            Msg::Images(Ok(images)) => {
                self.images = images;
                self.image_index = self.image_index.min(self.images.len().saturating_sub(1));
                vec![]
            }
            Msg::Vms(Err(e)) | Msg::Images(Err(e)) => {
                if self.connected {
                    self.say(e, true);
                }
                vec![]
            }
            Msg::Stats(name, Ok(stats)) => {
                let h = self.history.entry(name.clone()).or_default();
                if let Some(cpu) = stats.process.as_ref().and_then(|p| p.cpu_percent) {
                    push(&mut h.cpu, (cpu * 10.0).round() as u64);
                }
                if let Some(g) = &stats.guest {
                    push(&mut h.mem, g.mem_used);
                    h.mem_total = g.mem_total;
                }
                if self.selected.as_deref() == Some(name.as_str()) {
                    self.stats = Some(stats);
                }
                vec![]
            }
            Msg::Stats(_, Err(_)) => vec![],
            Msg::Console(name, lines) => {
                if self.selected.as_deref() == Some(name.as_str()) {
                    self.console = lines;
                }
                vec![]
            }
            Msg::Progress(action, line) => {
                self.progress(&action, line);
                vec![]
            }
            Msg::Done(action, result) => self.done(action, result),
            Msg::Tick(now) => {
                self.clock = now;
                self.seen.retain(|_, (_, at)| now.saturating_sub(*at) < SEEN_FOR);
                if self.message.is_some() && now.saturating_sub(self.message_at) >= MESSAGE_FOR {
                    self.message = None;
                }
                let mut fx = vec![];
                let live = |p: Phase| p != Phase::Stopped && p != Phase::Failed;
                if self.connected && self.tab == Tab::Vms && self.vms.iter().any(|v| live(v.state)) {
                    // The running VMs' CPU% and RSS, each second while they run (states come
                    // from events; uptime is counted here).
                    fx.push(Effect::RefreshVms);
                }
                if self.connected && self.selected_vm().is_some_and(|v| live(v.state)) {
                    // Its figures and console while it is not stopped.
                    fx.push(Effect::RefreshDetail);
                }
                fx
            }
        }
    }

    fn progress(&mut self, action: &Action, line: String) {
        if let Mode::Form(f) = &self.mode
            && f.submitting
            && matches!(action, Action::Create(_))
        {
            // The daemon accepted it: the form's job is done, the row shows the rest.
            self.mode = Mode::Normal;
        }
        self.ops.insert(action.target(), line);
    }

    fn done(&mut self, action: Action, result: Result<String, String>) -> Vec<Effect> {
        let target = action.target();
        self.ops.remove(&target);
        match result {
            Ok(summary) => {
                if let Mode::Form(f) = &self.mode
                    && f.submitting
                    && matches!(action, Action::Create(_))
                {
                    self.mode = Mode::Normal;
                }
                self.say(summary, false);
            }
            Err(e) => {
                if let Mode::Form(f) = &mut self.mode
                    && f.submitting
                    && matches!(action, Action::Create(_))
                {
                    f.submitting = false;
                    f.error = Some(e);
                } else {
                    self.say(format!("{target}: {e}"), true);
                }
            }
        }
        match action {
            Action::DeleteImage(_) => vec![Effect::RefreshImages],
            _ => vec![Effect::RefreshVms, Effect::RefreshImages],
        }
    }

    fn daemon(&mut self, u: Update) -> Vec<Effect> {
        match u {
            Update::Gone => {
                self.connected = false;
                vec![]
            }
            Update::Back => {
                self.connected = true;
                self.say("bangerd is back", false);
                vec![Effect::RefreshVms, Effect::RefreshImages]
            }
            Update::Event(e) => {
                let old = e.time < self.started_at;
                let vm = e.vm.clone().unwrap_or_default();
                match e.kind {
                    EventKind::Phase { to, .. } => {
                        if let Some(v) = self.vms.iter_mut().find(|v| v.name == vm) {
                            v.state = to;
                        }
                        if matches!(to, Phase::Running | Phase::Stopped | Phase::Failed) {
                            self.seen.remove(&vm);
                            self.settled.insert(vm, e.time);
                        }
                        vec![Effect::RefreshVms]
                    }
                    EventKind::Progress { message, .. } if !old => {
                        // Not the last words of an operation that just settled.
                        if self.settled.get(&vm).is_none_or(|t| e.time > t + 2.0) {
                            self.seen.insert(vm, (message, self.clock));
                        }
                        vec![]
                    }
                    EventKind::Error { message } if !old => {
                        self.seen.remove(&vm);
                        self.say(format!("{vm}: {message}"), true);
                        vec![]
                    }
                    EventKind::Deleted => {
                        let near = self.selected_index();
                        self.vms.retain(|v| v.name != vm);
                        self.seen.remove(&vm);
                        self.history.remove(&vm);
                        self.fix_selection(near);
                        // A list fetched before the delete may still arrive: fetch again.
                        vec![Effect::RefreshVms, Effect::RefreshImages]
                    }
                    EventKind::Created | EventKind::Changed { .. } | EventKind::Resync { .. } => {
                        // A create ends with `created` (then phases, if it starts), a `vm set`
                        // with `changed`: what was seen in progress is done.
                        self.seen.remove(&vm);
                        vec![Effect::RefreshVms, Effect::RefreshImages]
                    }
                    EventKind::Progress { .. } | EventKind::Error { .. } => vec![],
                }
            }
        }
    }

    fn key(&mut self, k: KeyEvent) -> Vec<Effect> {
        if k.code == KeyCode::Char('c') && k.modifiers.contains(KeyModifiers::CONTROL) {
            return vec![Effect::Quit];
        }
        match std::mem::replace(&mut self.mode, Mode::Normal) {
            Mode::Help => vec![],
            Mode::Confirm(action) => {
                if matches!(k.code, KeyCode::Char('y') | KeyCode::Char('Y')) {
                    return self.start(action);
                }
                self.say("cancelled", false);
                vec![]
            }
            Mode::Filter => {
                match k.code {
                    KeyCode::Esc => self.filter.clear(),
                    KeyCode::Enter => {}
                    KeyCode::Backspace => {
                        self.filter.pop();
                        self.mode = Mode::Filter;
                    }
                    KeyCode::Char(c) if !c.is_control() => {
                        self.filter.push(c);
                        self.mode = Mode::Filter;
                    }
                    _ => self.mode = Mode::Filter,
                }
                self.fix_selection(Some(0));
                vec![]
            }
            Mode::Form(mut f) => match f.key(k) {
                form::Outcome::Stay => {
                    self.mode = Mode::Form(f);
                    vec![]
                }
                form::Outcome::Cancel => vec![],
                form::Outcome::Submit(req) => {
                    self.mode = Mode::Form(f);
                    vec![Effect::Act(Action::Create(req))]
                }
            },
            Mode::Normal => self.normal_key(k),
        }
    }

    fn normal_key(&mut self, k: KeyEvent) -> Vec<Effect> {
        let page = 10;
        match k.code {
            KeyCode::Char('q') => return vec![Effect::Quit],
            KeyCode::Char('?') => self.mode = Mode::Help,
            KeyCode::Tab | KeyCode::BackTab => {
                self.tab = if self.tab == Tab::Vms { Tab::Images } else { Tab::Vms };
                return if self.tab == Tab::Images { vec![Effect::RefreshImages] } else { vec![] };
            }
            KeyCode::Char('1') => self.tab = Tab::Vms,
            KeyCode::Char('2') => {
                self.tab = Tab::Images;
                return vec![Effect::RefreshImages];
            }
            KeyCode::Esc => {
                self.message = None;
                if !self.filter.is_empty() {
                    self.filter.clear();
                    self.fix_selection(None);
                }
            }
            _ if self.tab == Tab::Images => return self.images_key(k),
            KeyCode::Up | KeyCode::Char('k') => return self.move_selection(-1),
            KeyCode::Down | KeyCode::Char('j') => return self.move_selection(1),
            KeyCode::PageUp => return self.move_selection(-page),
            KeyCode::PageDown => return self.move_selection(page),
            KeyCode::Home | KeyCode::Char('g') => return self.move_selection(-(self.vms.len() as isize)),
            KeyCode::End | KeyCode::Char('G') => return self.move_selection(self.vms.len() as isize),
            KeyCode::Char('/') => self.mode = Mode::Filter,
            KeyCode::Char('o') => {
                let i = COLUMNS.iter().position(|c| *c == self.sort).unwrap_or(0);
                self.sort = COLUMNS[(i + 1) % COLUMNS.len()];
            }
            KeyCode::Char('O') => self.descending = !self.descending,
            KeyCode::Char('c') => self.mode = Mode::Form(Form::default()),
            _ => {
                let Some(vm) = self.selected_vm() else { return vec![] };
                let (name, state, nat) = (vm.name.clone(), vm.state, vm.nat);
                let action = match k.code {
                    KeyCode::Char('s') => Action::Start(name),
                    KeyCode::Char('t') => Action::Stop(name),
                    KeyCode::Char('r') => Action::Restart(name),
                    KeyCode::Char('n') => Action::SetNat(name, !nat),
                    KeyCode::Char('K') => {
                        self.mode = Mode::Confirm(Action::Kill(name));
                        return vec![];
                    }
                    KeyCode::Char('d') | KeyCode::Delete => {
                        self.mode = Mode::Confirm(Action::Delete(name));
                        return vec![];
                    }
                    KeyCode::Enter => {
                        if state != Phase::Running {
                            self.say(format!("{name} is {}; start it first (s)", state.as_str()), true);
                            return vec![];
                        }
                        return vec![Effect::Ssh(name)];
                    }
                    _ => return vec![],
                };
                return self.start(action);
            }
        }
        vec![]
    }

    fn images_key(&mut self, k: KeyEvent) -> Vec<Effect> {
        let n = self.images.len();
        match k.code {
            KeyCode::Up | KeyCode::Char('k') => self.image_index = self.image_index.saturating_sub(1),
            KeyCode::Down | KeyCode::Char('j') => self.image_index = (self.image_index + 1).min(n.saturating_sub(1)),
            KeyCode::Char('d') | KeyCode::Delete => {
                if let Some(i) = self.images.get(self.image_index) {
                    self.mode = Mode::Confirm(Action::DeleteImage(i.name.clone()));
                }
            }
            _ => {}
        }
        vec![]
    }

    /// Begin `action`: its row shows it until it is done.
    fn start(&mut self, action: Action) -> Vec<Effect> {
        let target = action.target();
        if let Some(doing) = self.ops.get(&target) {
            self.say(format!("{target} is busy: {doing}"), true);
            return vec![];
        }
        self.ops.insert(target, format!("{}…", action.doing()));
        vec![Effect::Act(action)]
    }

    /// The confirmation question for `action`.
    pub fn question(&self, action: &Action) -> String {
        match action {
            Action::Delete(n) => {
                let running =
                    self.vms.iter().any(|v| &v.name == n && v.state != Phase::Stopped && v.state != Phase::Failed);
                format!(
                    "Delete VM {n} and its disks{}? This cannot be undone.",
                    if running { " (it is running: it will be stopped)" } else { "" }
                )
            }
            Action::Kill(n) => format!("Kill the VMM of {n} (SIGKILL: no clean shutdown)?"),
            Action::DeleteImage(n) => format!("Delete image {n}?"),
            other => format!("{} {}?", other.doing(), other.target()),
        }
    }
}

fn push(q: &mut VecDeque<u64>, v: u64) {
    if q.len() == HISTORY {
        q.pop_front();
    }
    q.push_back(v);
}

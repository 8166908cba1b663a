//! The TUI's model: what keys, daemon events, fetched lists and actions' progress do to it, and
//! what it asks the loop to do ([`Effect`]s). No terminal, no daemon.

mod common;

use banger_api::event::{Event, EventKind};
use banger_api::request::CreateVm;
use banger_api::response::Phase;
use banger_tui::app::{App, Effect, Mode, Msg, Tab};
use banger_tui::{Action, Update};
use common::*;
use ratatui::crossterm::event::KeyCode;

fn event(seq: u64, vm: &str, kind: EventKind) -> Msg {
    Msg::Daemon(Update::Event(Event { seq, time: NOW as f64 + seq as f64, vm: Some(vm.into()), kind }))
}

fn three() -> App {
    let mut app = App::new(NOW as f64);
    app.update(Msg::Vms(Ok(vec![
        vm("b-vm", Phase::Stopped, "172.30.0.6"),
        vm("a-vm", Phase::Running, "172.30.0.2"),
        vm("c-vm", Phase::Stopped, "172.30.0.10"),
    ])));
    app
}

#[test]
fn the_selection_follows_its_vm_through_sorting_and_relisting() {
    let mut app = three();
    assert_eq!(app.selected.as_deref(), Some("a-vm"), "the first row");
    assert_eq!(key(&mut app, KeyCode::Down), [Effect::RefreshDetail]);
    assert_eq!(app.selected.as_deref(), Some("b-vm"));
    key(&mut app, KeyCode::Char('O')); // descending: c, b, a
    assert_eq!(app.rows().iter().map(|v| v.name.as_str()).collect::<Vec<_>>(), ["c-vm", "b-vm", "a-vm"]);
    assert_eq!(app.selected.as_deref(), Some("b-vm"));
    assert_eq!(app.selected_index(), Some(1));
    // A new list with the VM elsewhere keeps it selected; with it gone, the nearest row.
    app.update(Msg::Vms(Ok(vec![vm("b-vm", Phase::Running, "172.30.0.6"), vm("a-vm", Phase::Running, "172.30.0.2")])));
    assert_eq!(app.selected.as_deref(), Some("b-vm"));
    app.update(event(3, "b-vm", EventKind::Deleted));
    assert_eq!(app.selected.as_deref(), Some("a-vm"));
    assert_eq!(app.vms.len(), 1);
}

#[test]
fn a_phase_event_shows_at_once_and_asks_for_the_rest() {
    let mut app = three();
    let fx = app.update(event(1, "b-vm", EventKind::Phase { from: Phase::Stopped, to: Phase::Starting, reason: None }));
    assert_eq!(fx, [Effect::RefreshVms]);
    assert_eq!(app.vms.iter().find(|v| v.name == "b-vm").unwrap().state, Phase::Starting);
    // Progress of an operation someone else started shows in the row until it settles.
    app.update(event(2, "b-vm", EventKind::Progress { stage: "boot".into(), message: "kernel booting".into() }));
    assert_eq!(app.doing("b-vm"), Some("kernel booting"));
    app.update(event(3, "b-vm", EventKind::Phase { from: Phase::Starting, to: Phase::Running, reason: None }));
    assert_eq!(app.doing("b-vm"), None);
    // A create elsewhere that does not start ends with `created`: no longer in progress.
    app.update(event(5, "d-vm", EventKind::Progress { stage: "create".into(), message: "creating disks".into() }));
    assert!(app.doing("d-vm").is_some());
    assert_eq!(app.update(event(6, "d-vm", EventKind::Created)), [Effect::RefreshVms, Effect::RefreshImages]);
    assert_eq!(app.doing("d-vm"), None);
    // Progress replayed from before the TUI started is not shown.
    let old = Msg::Daemon(Update::Event(Event {
        seq: 0,
        time: NOW as f64 - 60.0,
        vm: Some("c-vm".into()),
        kind: EventKind::Progress { stage: "boot".into(), message: "old".into() },
    }));
    app.update(old);
    assert_eq!(app.doing("c-vm"), None);
    // Errors are one line; the program goes on; they end what was seen in progress.
    app.update(event(4, "c-vm", EventKind::Progress { stage: "boot".into(), message: "booting".into() }));
    app.update(event(5, "c-vm", EventKind::Error { message: "boot failed".into() }));
    assert_eq!(app.message, Some(("c-vm: boot failed".into(), true)));
    assert_eq!(app.doing("c-vm"), None);
    // A stop elsewhere says "stopped" just after its phase: not in progress again.
    app.update(event(10, "b-vm", EventKind::Phase { from: Phase::Running, to: Phase::Stopping, reason: None }));
    app.update(event(11, "b-vm", EventKind::Progress { stage: "stop".into(), message: "powering off".into() }));
    assert_eq!(app.doing("b-vm"), Some("powering off"));
    app.update(event(12, "b-vm", EventKind::Phase { from: Phase::Stopping, to: Phase::Stopped, reason: None }));
    let last_words = Msg::Daemon(Update::Event(Event {
        seq: 13,
        time: NOW as f64 + 12.5,
        vm: Some("b-vm".into()),
        kind: EventKind::Progress { stage: "stop".into(), message: "b-vm stopped".into() },
    }));
    app.update(last_words);
    assert_eq!(app.doing("b-vm"), None);
    // Progress seen without news for a while is forgotten; a message goes after a while too.
    app.update(event(20, "c-vm", EventKind::Progress { stage: "set".into(), message: "growing".into() }));
    app.update(Msg::Tick(NOW + banger_tui::app::SEEN_FOR + 1));
    assert_eq!(app.doing("c-vm"), None);
    assert_eq!(app.message, None);
    // Only this TUI's own operations refuse a key: progress seen elsewhere does not.
    app.update(event(30, "c-vm", EventKind::Progress { stage: "x".into(), message: "elsewhere".into() }));
    key(&mut app, KeyCode::Char('G'));
    assert_eq!(app.selected.as_deref(), Some("c-vm"));
    assert_eq!(key(&mut app, KeyCode::Char('s')), [Effect::Act(Action::Start("c-vm".into()))]);
}

#[test]
fn actions_run_once_per_vm_and_report_their_end() {
    let mut app = three();
    key(&mut app, KeyCode::Down); // b-vm, stopped
    assert_eq!(key(&mut app, KeyCode::Char('s')), [Effect::Act(Action::Start("b-vm".into()))]);
    assert_eq!(app.doing("b-vm"), Some("starting…"));
    assert_eq!(key(&mut app, KeyCode::Char('t')), [], "busy: refused");
    assert_eq!(app.message, Some(("b-vm is busy: starting…".into(), true)));
    app.update(Msg::Progress(Action::Start("b-vm".into()), "SSH ready".into()));
    assert_eq!(app.doing("b-vm"), Some("SSH ready"));
    let fx = app.update(Msg::Done(Action::Start("b-vm".into()), Err("it went wrong".into())));
    assert_eq!(fx, [Effect::RefreshVms, Effect::RefreshImages]);
    assert_eq!(app.message, Some(("b-vm: it went wrong".into(), true)));
    assert!(app.all_doing().is_empty());
    assert_eq!(key(&mut app, KeyCode::Char('n')), [Effect::Act(Action::SetNat("b-vm".into(), true))]);
}

#[test]
fn delete_and_kill_ask_first() {
    let mut app = three();
    assert_eq!(key(&mut app, KeyCode::Char('d')), []);
    assert_eq!(app.mode, Mode::Confirm(Action::Delete("a-vm".into())));
    assert!(app.question(&Action::Delete("a-vm".into())).contains("it is running"));
    assert_eq!(key(&mut app, KeyCode::Char('n')), [], "anything but y: no");
    assert_eq!(app.mode, Mode::Normal);
    assert!(app.all_doing().is_empty());
    key(&mut app, KeyCode::Char('K'));
    assert_eq!(key(&mut app, KeyCode::Char('y')), [Effect::Act(Action::Kill("a-vm".into()))]);
}

#[test]
fn the_form_creates_closes_on_the_first_progress_and_keeps_refusals() {
    let mut app = three();
    key(&mut app, KeyCode::Char('c'));
    typed(&mut app, "Bad_Name");
    let fx = key(&mut app, KeyCode::Enter);
    let req = CreateVm { name: Some("Bad_Name".into()), ..Default::default() };
    assert_eq!(fx, [Effect::Act(Action::Create(req.clone()))]);
    // The daemon's refusal stays in the form, which can be corrected.
    app.update(Msg::Done(Action::Create(req.clone()), Err("\"Bad_Name\" is not a valid VM name".into())));
    let Mode::Form(f) = &app.mode else { panic!("the form stays") };
    assert_eq!(f.error.as_deref(), Some("\"Bad_Name\" is not a valid VM name"));
    assert!(!f.submitting);
    for _ in 0.."Bad_Name".len() {
        key(&mut app, KeyCode::Backspace);
    }
    typed(&mut app, "web");
    let req = CreateVm { name: Some("web".into()), ..Default::default() };
    assert_eq!(key(&mut app, KeyCode::Enter), [Effect::Act(Action::Create(req.clone()))]);
    app.update(Msg::Progress(Action::Create(req.clone()), "creating disks".into()));
    assert_eq!(app.mode, Mode::Normal, "accepted: the row shows the rest");
    app.update(Msg::Done(Action::Create(req), Ok("created web".into())));
    assert_eq!(app.message, Some(("created web".into(), false)));
}

#[test]
fn filter_tabs_reconnecting_and_ticks() {
    let mut app = three();
    key(&mut app, KeyCode::Char('/'));
    typed(&mut app, "c-");
    assert_eq!(app.rows().len(), 1);
    assert_eq!(app.selected.as_deref(), Some("c-vm"));
    key(&mut app, KeyCode::Enter);
    assert_eq!(app.mode, Mode::Normal);
    assert_eq!(app.filter, "c-");
    key(&mut app, KeyCode::Esc);
    assert_eq!(app.rows().len(), 3);
    assert_eq!(app.selected.as_deref(), Some("c-vm"), "still selected");
    key(&mut app, KeyCode::Char('g'));
    assert_eq!(app.selected.as_deref(), Some("a-vm"));
    assert_eq!(key(&mut app, KeyCode::Tab), [Effect::RefreshImages]);
    assert_eq!(app.tab, Tab::Images);
    key(&mut app, KeyCode::Tab);
    // A running VM: its figures each second (and the selected one's details); none running: nothing.
    assert_eq!(app.update(Msg::Tick(NOW + 1)), [Effect::RefreshVms, Effect::RefreshDetail]);
    app.update(Msg::Daemon(Update::Gone));
    assert!(!app.connected);
    assert_eq!(app.update(Msg::Tick(NOW + 2)), [], "nothing is asked of a daemon that is gone");
    assert_eq!(app.update(Msg::Daemon(Update::Back)), [Effect::RefreshVms, Effect::RefreshImages]);
    app.update(Msg::Vms(Ok(vec![vm("b-vm", Phase::Stopped, "172.30.0.6")])));
    assert_eq!(app.update(Msg::Tick(NOW + 3)), []);
    assert_eq!(key(&mut app, KeyCode::Char('q')), [Effect::Quit]);
}

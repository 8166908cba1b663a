//! Every screen of the TUI drawn on ratatui's `TestBackend`, at 80×24 and at 160×48, compared
//! with the snapshots under `tests/snapshots/` (insta: `INSTA_UPDATE=always` rewrites them; read
//! the diff before committing). The model is driven through its own messages and keys, so the
//! snapshots also pin what those do.

mod common;

use banger_api::event::{Event, EventKind};
use banger_api::response::Phase;
use banger_tui::Update;
use banger_tui::app::{App, Msg};
use common::*;
use ratatui::Terminal;
use ratatui::backend::TestBackend;
use ratatui::crossterm::event::KeyCode;

/// Three VMs (one running with figures and a console, one stopped, one starting), two images.
fn sample() -> App {
    let mut app = App::new(NOW as f64);
    let mut busy = vm("quick-fox", Phase::Starting, "172.30.0.10");
    busy.nat = true;
    app.update(Msg::Vms(Ok(vec![
        vm("calm-otter", Phase::Running, "172.30.0.2"),
        vm("dev-db", Phase::Stopped, "172.30.0.6"),
        busy,
    ])));
    app.update(Msg::Images(Ok(vec![
        image("default", "bundle", None, &["calm-otter", "dev-db"]),
        image("base", "bundle", None, &[]),
        image("go-dev", "built", Some("base"), &["quick-fox"]),
    ])));
    for i in 0..60u64 {
        let cpu = 5.0 + (i % 12) as f64 * 4.0;
        app.update(Msg::Stats("calm-otter".into(), Ok(stats(cpu, (200 + (i % 9) * 20) << 20))));
    }
    let console: Vec<String> = ["[  OK  ] Started ssh.service - OpenBSD Secure Shell server.", "calm-otter login:"]
        .iter()
        .map(|s| s.to_string())
        .collect();
    app.update(Msg::Console("calm-otter".into(), console));
    app.update(Msg::Daemon(Update::Event(Event {
        seq: 1,
        time: NOW as f64 + 1.0,
        vm: Some("quick-fox".into()),
        kind: EventKind::Progress { stage: "boot".into(), message: "kernel booting".into() },
    })));
    app
}

fn screen(app: &App, w: u16, h: u16) -> String {
    let mut t = Terminal::new(TestBackend::new(w, h)).unwrap();
    t.draw(|f| banger_tui::ui::draw(f, app)).unwrap();
    // The buffer's text, one line per row (colours are not part of the snapshot).
    let buf = t.backend().buffer().clone();
    (0..h)
        .map(|y| (0..w).map(|x| buf[(x, y)].symbol().to_string()).collect::<String>().trim_end().to_string())
        .collect::<Vec<_>>()
        .join("\n")
}

fn both(name: &str, app: &App) {
    insta::assert_snapshot!(format!("{name}_80x24"), screen(app, 80, 24));
    insta::assert_snapshot!(format!("{name}_160x48"), screen(app, 160, 48));
}

#[test]
fn vm_table_with_details() {
    both("vms", &sample());
}

#[test]
fn sorted_by_cpu_descending_and_filtered() {
    let mut app = sample();
    // NAME → STATE → VMM → IP → CPUS → MEM → CPU%
    for _ in 0..6 {
        key(&mut app, KeyCode::Char('o'));
    }
    key(&mut app, KeyCode::Char('O'));
    key(&mut app, KeyCode::Char('/'));
    typed(&mut app, "o");
    both("sorted_filtered", &app);
}

#[test]
fn images_tab() {
    let mut app = sample();
    key(&mut app, KeyCode::Tab);
    key(&mut app, KeyCode::Down);
    both("images", &app);
}

#[test]
fn create_form_with_an_error() {
    let mut app = sample();
    key(&mut app, KeyCode::Char('c'));
    typed(&mut app, "web-1");
    key(&mut app, KeyCode::Tab);
    key(&mut app, KeyCode::Tab);
    typed(&mut app, "lots");
    key(&mut app, KeyCode::Enter);
    both("form", &app);
}

#[test]
fn delete_confirmation() {
    let mut app = sample();
    key(&mut app, KeyCode::Char('d'));
    both("confirm", &app);
}

#[test]
fn help_overlay() {
    let mut app = sample();
    key(&mut app, KeyCode::Char('?'));
    both("help", &app);
}

#[test]
fn reconnecting_and_empty() {
    let mut app = App::new(NOW as f64);
    app.update(Msg::Vms(Ok(vec![])));
    app.update(Msg::Daemon(Update::Gone));
    // A long filter does not push the connection off the header.
    key(&mut app, KeyCode::Char('/'));
    typed(&mut app, "a-rather-long-filter");
    key(&mut app, KeyCode::Enter);
    both("reconnecting", &app);
}

/// Any size, down to 1×1, draws every screen without a panic (resizes can get there).
#[test]
fn every_screen_draws_at_any_size() {
    let mut screens = vec![sample()];
    for keys in [&[KeyCode::Char('?')][..], &[KeyCode::Char('d')], &[KeyCode::Char('c')], &[KeyCode::Tab]] {
        let mut app = sample();
        for k in keys {
            key(&mut app, *k);
        }
        screens.push(app);
    }
    for app in &screens {
        for (w, h) in [(1, 1), (2, 2), (10, 3), (20, 5), (40, 10), (60, 15), (79, 23), (200, 8), (12, 60)] {
            screen(app, w, h);
        }
    }
}

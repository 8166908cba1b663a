//! The real `banger tui` in a real terminal (tmux) against a real daemon and a real guest:
//! create a VM with "start now" off from the form, see it stopped in the table (and one created
//! by the CLI appear), ride out a daemon restart ("reconnecting", then connected again), start one
//! and watch it become running without another key, SSH into it and come back to it, delete both
//! after the confirmation, quit — and the terminal is restored.
//!
//! Needs root, tmux and a runtime bundle (`BANGER_TEST_RUNTIME`; `make test` sets it); skipped
//! loudly otherwise — unless `BANGER_E2E_REQUIRED=1`, when that is a failure.

mod common;

use common::*;
use std::time::Duration;

/// The screen's line showing VM `name`, if any.
fn row(screen: &str, name: &str) -> Option<String> {
    screen.lines().find(|l| l.contains(&format!("│{name} "))).map(String::from)
}

/// Wait until VM `name`'s row shows `state` (and not as busy: `state…`).
fn wait_row(term: &Tmux, name: &str, state: &str, timeout: Duration) -> String {
    let t0 = std::time::Instant::now();
    loop {
        let screen = term.screen();
        if let Some(r) = row(&screen, name)
            && r.contains(&format!(" {state} "))
        {
            return r;
        }
        assert!(t0.elapsed() < timeout, "{name} is not {state} within {timeout:?}:\n{screen}");
        std::thread::sleep(Duration::from_millis(100));
    }
}

#[test]
fn the_tui_creates_starts_and_deletes_a_vm_live() {
    let no_tmux = which("tmux").is_none();
    let Some(rt) = e2e_runtime("tui", no_tmux.then_some("needs tmux (Debian package tmux)")) else { return };
    let env = Env::new();
    env.write_config("subnet = \"10.213.224.0/24\"\nvmm = \"qemu\"\ndefault_memory = 512\n");
    let _leftovers = Leftovers { env: &env, rt: &rt, vms: &["tui-a", "tui-b"], images: &[] };
    let ok = |args: &[&str]| env.ok_rt(&rt, args);
    ok(&["daemon", "status"]);
    let status = env.path("tui.status");
    let banger = banger_bin();
    // After the TUI: its exit status and the terminal's modes (echo and canonical input back on).
    let argv = ["sh", "-c", "\"$0\" tui; echo \"tui exited $?\"; stty -a | tr ';' '\\n'", banger.to_str().unwrap()];
    let term = Tmux::start(&env, &[("BANGER_RUNTIME_DIR", rt.as_path())], &argv, &status, 100, 30);
    term.wait_for("● connected", Duration::from_secs(20));
    term.wait_for("VMs: none yet", Duration::from_secs(20));

    // The form: name, disk size, "start now" off.
    term.send("c", true);
    term.wait_for("create a VM", Duration::from_secs(5));
    term.send("tui-a", true);
    for _ in 0..4 {
        term.send("Tab", false);
    }
    term.send("128M", true);
    term.send("Tab", false);
    term.send("Tab", false);
    term.send("Space", false);
    term.wait_for("start now  [ ]", Duration::from_secs(5));
    term.send("Enter", false);
    wait_row(&term, "tui-a", "stopped", Duration::from_secs(60));
    let vm = ok(&["vm", "show", "tui-a", "--json"]).json();
    assert_eq!(vm["state"], "stopped");
    assert_eq!(vm["disk_size"], 128u64 << 20);

    // Resized down to 80×24: the table follows.
    term.resize(80, 24);
    let t0 = std::time::Instant::now();
    while !term.screen().lines().any(|l| l.chars().count() <= 80 && l.contains("│tui-a ") && l.ends_with('│')) {
        assert!(t0.elapsed() < Duration::from_secs(10), "not redrawn at 80 columns:\n{}", term.screen());
        std::thread::sleep(Duration::from_millis(100));
    }

    // A VM created elsewhere shows up by itself.
    ok(&["vm", "create", "--name", "tui-b", "--no-start", "--disk-size", "128M"]);
    wait_row(&term, "tui-b", "stopped", Duration::from_secs(20));

    // A daemon restart: the TUI says so and comes back by itself.
    ok(&["daemon", "stop"]);
    term.wait_for("reconnecting", Duration::from_secs(20));
    ok(&["daemon", "status"]);
    term.wait_for("● connected", Duration::from_secs(20));

    // Start the second row: running shows up from the event stream, with no key pressed after `s`.
    term.send("Down", false);
    term.wait_for("┌ tui-b ", Duration::from_secs(5));
    term.send("s", true);
    let running = wait_row(&term, "tui-b", "running", Duration::from_secs(180));
    assert!(running.contains("10.213.224."), "{running}");
    assert_eq!(ok(&["vm", "show", "tui-b", "--json"]).json()["state"], "running");

    // SSH: the TUI steps aside, the session runs in this terminal, then the TUI is back on the
    // same VM.
    term.send("Enter", false);
    term.wait_for("root@tui-b", Duration::from_secs(60));
    term.send("echo from-the-guest-$((6*7))", true);
    term.send("Enter", false);
    term.wait_for("from-the-guest-42", Duration::from_secs(20));
    term.send("exit", true);
    term.send("Enter", false);
    term.wait_for("back from tui-b", Duration::from_secs(20));
    term.wait_for("┌ tui-b ", Duration::from_secs(5));

    // Delete (running: it says so), after the question; then the other one.
    term.send("d", true);
    term.wait_for("Delete VM tui-b and its disks (it is running", Duration::from_secs(5));
    term.send("y", true);
    let t0 = std::time::Instant::now();
    while row(&term.screen(), "tui-b").is_some() {
        assert!(t0.elapsed() < Duration::from_secs(90), "tui-b is still listed:\n{}", term.screen());
        std::thread::sleep(Duration::from_millis(100));
    }
    assert_eq!(env.run_rt(&rt, &["vm", "show", "tui-b"]).code(), 3);
    term.send("d", true);
    term.wait_for("Delete VM tui-a and its disks?", Duration::from_secs(5));
    term.send("y", true);
    term.wait_for("VMs: none yet", Duration::from_secs(30));

    term.send("q", true);
    assert_eq!(term.wait_exit(&status, Duration::from_secs(20)), "0");
    let screen = term.screen();
    assert!(screen.contains("tui exited 0"), "{screen}");
    let modes: Vec<&str> = screen.lines().map(str::trim).collect();
    assert!(modes.iter().any(|l| l.split_whitespace().any(|w| w == "icanon")), "canonical input is back:\n{screen}");
    assert!(modes.iter().any(|l| l.split_whitespace().any(|w| w == "echo")), "echo is back:\n{screen}");
    assert!(!term.alternate_screen(), "the alternate screen is left");
}

/// A panic (on a worker thread, injected with `BANGER_TUI_TEST_PANIC`) ends the TUI with an
/// error and leaves the terminal as it was: main screen, echo and canonical input, cursor shown.
#[test]
fn a_panic_leaves_the_terminal_restored() {
    if which("tmux").is_none() {
        if std::env::var("BANGER_E2E_REQUIRED").as_deref() == Ok("1") {
            panic!("tui panic: needs tmux (Debian package tmux)");
        }
        skip("tui panic", "needs tmux (Debian package tmux)");
        return;
    }
    let env = Env::new();
    env.write_config("subnet = \"10.213.225.0/24\"\n");
    env.status(); // a daemon this test ends
    let status = env.path("panic.status");
    let banger = banger_bin();
    let argv = ["sh", "-c", "\"$0\" tui; echo \"tui exited $?\"; stty -a | tr ';' '\\n'", banger.to_str().unwrap()];
    let term = Tmux::start(&env, &[("BANGER_TUI_TEST_PANIC", std::path::Path::new("1"))], &argv, &status, 80, 24);
    assert_eq!(term.wait_exit(&status, Duration::from_secs(30)), "0");
    let screen = term.screen();
    assert!(screen.contains("BANGER_TUI_TEST_PANIC is set"), "the panic is shown:\n{screen}");
    assert!(screen.contains("banger tui stopped after an internal error"), "{screen}");
    assert!(screen.contains("tui exited 1"), "{screen}");
    let words: Vec<&str> = screen.split_whitespace().collect();
    assert!(words.contains(&"icanon") && words.contains(&"echo"), "cooked mode is back:\n{screen}");
    assert!(!term.alternate_screen(), "the alternate screen is left");
    assert!(term.cursor_visible(), "the cursor is shown");
}

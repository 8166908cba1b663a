//! Test harness: the real `banger`/`bangerd` binaries against a private temporary XDG layout.
#![allow(dead_code)]

use std::os::unix::fs::PermissionsExt;
use std::os::unix::process::CommandExt;
use std::path::{Path, PathBuf};
use std::process::{Command, Output};
use std::time::{Duration, Instant};

pub struct Env {
    pub tmp: tempfile::TempDir,
    /// Daemon pids this test caused to start; ended (by pid) on drop.
    started: std::cell::RefCell<Vec<i32>>,
}

pub fn banger_bin() -> PathBuf {
    PathBuf::from(env!("CARGO_BIN_EXE_banger"))
}

/// `bangerd` is built into the same directory as `banger`.
pub fn bangerd_bin() -> PathBuf {
    banger_bin().with_file_name("bangerd")
}

impl Env {
    pub fn new() -> Env {
        let tmp = tempfile::Builder::new().prefix("banger-t").tempdir().unwrap();
        std::fs::set_permissions(tmp.path(), std::fs::Permissions::from_mode(0o755)).unwrap();
        Env { tmp, started: Default::default() }
    }
    pub fn path(&self, rel: &str) -> PathBuf {
        self.tmp.path().join(rel)
    }
    pub fn run_dir(&self) -> PathBuf {
        self.path("run/banger")
    }
    pub fn socket(&self) -> PathBuf {
        self.run_dir().join("bangerd.sock")
    }
    pub fn state_dir(&self) -> PathBuf {
        self.path("state/banger")
    }
    pub fn config_file(&self) -> PathBuf {
        self.path("config/banger/config.toml")
    }
    pub fn log(&self) -> String {
        std::fs::read_to_string(self.state_dir().join("bangerd.log")).unwrap_or_default()
    }

    /// The whole environment of a `banger` this test runs (nothing else is inherited).
    pub fn vars(&self) -> Vec<(&'static str, std::ffi::OsString)> {
        vec![
            ("PATH", std::env::var_os("PATH").unwrap_or_default()),
            ("HOME", self.path("home").into()),
            ("XDG_RUNTIME_DIR", self.path("run").into()),
            ("XDG_STATE_HOME", self.path("state").into()),
            ("XDG_CONFIG_HOME", self.path("config").into()),
            ("XDG_CACHE_HOME", self.path("cache").into()),
            ("BANGER_DAEMON_BIN", bangerd_bin().into()),
        ]
    }

    fn apply(&self, cmd: &mut Command) {
        cmd.env_clear().envs(self.vars());
    }

    pub fn banger(&self, args: &[&str]) -> Command {
        let mut cmd = Command::new(banger_bin());
        self.apply(&mut cmd);
        cmd.args(args);
        cmd
    }

    pub fn bangerd(&self) -> Command {
        let mut cmd = Command::new(bangerd_bin());
        self.apply(&mut cmd);
        cmd
    }

    /// Run `banger args…`, remembering any daemon it reports having started.
    pub fn run(&self, args: &[&str]) -> Out {
        let out = Out(self.banger(args).output().unwrap());
        self.note_started(&out.stderr());
        out
    }

    /// A daemon this test started and already ended itself (so it is not signalled again: its
    /// pid may be another process's by then).
    pub fn forget_daemon(&self, pid: i32) {
        self.started.borrow_mut().retain(|&p| p != pid);
    }

    /// `banger daemon stop`; daemons this test started that are gone by then are forgotten.
    pub fn stop_daemon(&self, rt: &Path) {
        let out = self.run_rt(rt, &["daemon", "stop"]);
        assert_eq!(out.code(), 0, "daemon stop: {}", out.stderr());
        self.started.borrow_mut().retain(|&p| !wait_gone(p, Duration::from_secs(5)));
    }

    pub fn note_started(&self, stderr: &str) {
        for line in stderr.lines() {
            if let Some(rest) = line.strip_prefix("banger: started bangerd (pid ") {
                let pid: i32 = rest.trim_end_matches(')').parse().unwrap();
                self.started.borrow_mut().push(pid);
            }
        }
    }

    /// Status as JSON (starting the daemon if needed).
    pub fn status(&self) -> serde_json::Value {
        let out = self.run(&["daemon", "status", "--json"]);
        assert_eq!(out.code(), 0, "daemon status failed: {}", out.stderr());
        serde_json::from_str(&out.stdout()).unwrap()
    }

    /// `banger args…` with the runtime bundle `rt`, remembering any daemon it reports starting.
    pub fn run_rt(&self, rt: &Path, args: &[&str]) -> Out {
        let out = Out(self.banger(args).env("BANGER_RUNTIME_DIR", rt).output().unwrap());
        self.note_started(&out.stderr());
        out
    }

    /// [`Env::run_rt`] that must succeed (exit 0), or the test fails with its stderr.
    pub fn ok_rt(&self, rt: &Path, args: &[&str]) -> Out {
        let out = self.run_rt(rt, args);
        assert_eq!(out.code(), 0, "banger {args:?}: {}", out.stderr());
        out
    }

    pub fn write_config(&self, text: &str) {
        let p = self.config_file();
        std::fs::create_dir_all(p.parent().unwrap()).unwrap();
        std::fs::write(p, text).unwrap();
    }
}

impl Drop for Env {
    fn drop(&mut self) {
        for &pid in self.started.borrow().iter() {
            let pid = nix::unistd::Pid::from_raw(pid);
            if nix::sys::signal::kill(pid, nix::sys::signal::Signal::SIGTERM).is_ok() {
                wait_gone(pid.as_raw(), Duration::from_secs(5));
            }
        }
    }
}

pub struct Out(pub Output);

impl Out {
    pub fn code(&self) -> i32 {
        self.0.status.code().unwrap_or(-1)
    }
    pub fn stdout(&self) -> String {
        String::from_utf8_lossy(&self.0.stdout).into_owned()
    }
    pub fn stderr(&self) -> String {
        String::from_utf8_lossy(&self.0.stderr).into_owned()
    }
    pub fn json(&self) -> serde_json::Value {
        serde_json::from_str(&self.stdout()).unwrap_or_else(|e| panic!("not JSON ({e}): {}", self.stdout()))
    }
}

pub fn alive(pid: i32) -> bool {
    // A zombie (exited, not yet reaped by its parent) counts as gone.
    match std::fs::read_to_string(format!("/proc/{pid}/stat")) {
        Ok(stat) => !stat.rsplit(')').next().unwrap_or("").trim_start().starts_with('Z'),
        Err(_) => false,
    }
}

pub fn wait_gone(pid: i32, timeout: Duration) -> bool {
    let deadline = Instant::now() + timeout;
    while alive(pid) {
        if Instant::now() > deadline {
            return false;
        }
        std::thread::sleep(Duration::from_millis(10));
    }
    true
}

pub fn mode(p: &Path) -> u32 {
    std::fs::symlink_metadata(p).unwrap().permissions().mode() & 0o777
}

pub fn is_root() -> bool {
    nix::unistd::geteuid().is_root()
}

/// `curl` a daemon path over its socket (optionally as another uid); returns (HTTP status, JSON body).
pub fn curl_socket(socket: &Path, args: &[&str], url: &str, uid: Option<u32>) -> (String, serde_json::Value) {
    let mut cmd = Command::new("curl");
    cmd.args(["-s", "-w", "\n%{http_code}", "--unix-socket"]).arg(socket).args(args).arg(url);
    if let Some(uid) = uid {
        cmd.uid(uid).gid(uid);
    }
    let out = cmd.output().expect("curl is needed (make test installs it)");
    let text = String::from_utf8(out.stdout).unwrap();
    let (body, code) = text.rsplit_once('\n').unwrap();
    let json = serde_json::from_str(body).unwrap_or_else(|e| panic!("not JSON ({e}): {body}"));
    (code.to_string(), json)
}

/// Say loudly that a test is skipped and why (written past the test harness's output capture).
pub fn skip(test: &str, why: &str) {
    use std::io::Write;
    let _ = writeln!(std::io::stderr(), "SKIP {test}: {why}");
}

/// A background `banger ARGS…` printing JSON lines (`events --json`, `vm list --watch --json`):
/// its lines with their arrival times. Ended (by pid) when dropped.
pub struct Follower {
    child: std::process::Child,
    lines: std::sync::Arc<std::sync::Mutex<Vec<(Instant, serde_json::Value)>>>,
}

impl Follower {
    pub fn start(env: &Env, runtime: &Path, args: &[&str]) -> Follower {
        use std::io::BufRead;
        let mut child = env
            .banger(args)
            .env("BANGER_RUNTIME_DIR", runtime)
            .stdout(std::process::Stdio::piped())
            .stderr(std::process::Stdio::null())
            .spawn()
            .unwrap();
        let out = child.stdout.take().unwrap();
        let lines = std::sync::Arc::new(std::sync::Mutex::new(Vec::new()));
        let sink = lines.clone();
        std::thread::spawn(move || {
            for line in std::io::BufReader::new(out).lines().map_while(Result::ok) {
                let v: serde_json::Value = serde_json::from_str(&line).unwrap_or_else(|e| panic!("{e}: {line}"));
                sink.lock().unwrap().push((Instant::now(), v));
            }
        });
        Follower { child, lines }
    }

    pub fn lines(&self) -> Vec<serde_json::Value> {
        self.lines.lock().unwrap().iter().map(|(_, v)| v.clone()).collect()
    }

    /// The first line matching `pred` and when it arrived (waiting up to `timeout`).
    pub fn wait_for(
        &self,
        pred: impl Fn(&serde_json::Value) -> bool,
        timeout: Duration,
    ) -> (Instant, serde_json::Value) {
        let deadline = Instant::now() + timeout;
        loop {
            if let Some((t, v)) = self.lines.lock().unwrap().iter().find(|(_, v)| pred(v)) {
                return (*t, v.clone());
            }
            assert!(Instant::now() < deadline, "no such line within {timeout:?}: {:?}", self.lines());
            std::thread::sleep(Duration::from_millis(10));
        }
    }
}

impl Drop for Follower {
    fn drop(&mut self) {
        let _ = self.child.kill();
        let _ = self.child.wait();
    }
}

/// The runtime bundle for an end-to-end test with real guests (`BANGER_TEST_RUNTIME`; `make test`
/// sets it), when this host can run one: root, and nothing in `missing` (what else the test
/// needs, if absent). Otherwise `None` after a loud skip — or a failure when
/// `BANGER_E2E_REQUIRED=1`.
pub fn e2e_runtime(test: &str, missing: Option<&str>) -> Option<PathBuf> {
    let dir = std::env::var_os("BANGER_TEST_RUNTIME")
        .map(PathBuf::from)
        .filter(|p| p.join("vmlinux").is_file() && p.join("rootfs.ext4").is_file());
    let why = if dir.is_none() {
        Some("no runtime bundle with rootfs.ext4 (set BANGER_TEST_RUNTIME to a built ./runtime; `make test` does)")
    } else if !is_root() {
        Some("needs root for TAP devices, iptables and network namespaces")
    } else {
        missing
    };
    if let Some(why) = why {
        if std::env::var("BANGER_E2E_REQUIRED").as_deref() == Ok("1") {
            panic!("{test}: {why}");
        }
        skip(test, why);
        return None;
    }
    dir
}

/// `program` on `PATH`, if there.
pub fn which(program: &str) -> Option<PathBuf> {
    std::env::split_paths(&std::env::var_os("PATH")?).map(|d| d.join(program)).find(|p| p.is_file())
}

/// What an end-to-end test made, deleted when dropped whatever happened (an assertion that
/// fails leaves no VM, TAP, rule or QEMU behind): VMs first, then the images they used.
pub struct Leftovers<'a> {
    pub env: &'a Env,
    pub rt: &'a Path,
    pub vms: &'a [&'a str],
    pub images: &'a [&'a str],
}

impl Drop for Leftovers<'_> {
    fn drop(&mut self) {
        for vm in self.vms {
            self.env.run_rt(self.rt, &["vm", "delete", "--force", vm]);
        }
        for image in self.images {
            self.env.run_rt(self.rt, &["image", "delete", image]);
        }
    }
}

/// `'…'` for a POSIX shell.
pub fn sh_quote(s: &str) -> String {
    format!("'{}'", s.replace('\'', r"'\''"))
}

/// A private tmux server (its own socket in the test's temp dir) running one command in a
/// terminal of a fixed size: for what needs a real terminal (`--interactive`, the TUI). The
/// server is ended (by its socket, so only ours) when dropped.
pub struct Tmux {
    socket: PathBuf,
}

impl Tmux {
    /// Run `argv` with the test's environment (and `extra` variables) in a `cols`×`rows`
    /// terminal. Its exit status is written to `status_file`; the pane then stays for reading.
    pub fn start(env: &Env, extra: &[(&str, &Path)], argv: &[&str], status_file: &Path, cols: u16, rows: u16) -> Tmux {
        let socket = env.path("tmux.sock");
        let script = env.path("tmux-run.sh");
        let mut vars: Vec<String> =
            env.vars().iter().map(|(k, v)| sh_quote(&format!("{k}={}", v.to_string_lossy()))).collect();
        vars.extend(extra.iter().map(|(k, v)| sh_quote(&format!("{k}={}", v.display()))));
        vars.push(sh_quote("TERM=xterm-256color"));
        let cmd: Vec<String> = argv.iter().map(|a| sh_quote(a)).collect();
        std::fs::write(
            &script,
            format!(
                "#!/bin/sh\nenv -i {} {}\necho $? > {tmp} && mv {tmp} {status}\nsleep 3600\n",
                vars.join(" "),
                cmd.join(" "),
                tmp = sh_quote(&format!("{}.tmp", status_file.display())),
                status = sh_quote(&status_file.display().to_string())
            ),
        )
        .unwrap();
        std::fs::set_permissions(&script, std::fs::Permissions::from_mode(0o755)).unwrap();
        let out = Command::new("tmux")
            .arg("-S")
            .arg(&socket)
            .args(["-f", "/dev/null", "new-session", "-d", "-x", &cols.to_string(), "-y", &rows.to_string()])
            .arg(sh_quote(&script.display().to_string()))
            .output()
            .expect("tmux (Debian package tmux)");
        assert!(out.status.success(), "tmux: {out:?}");
        Tmux { socket }
    }

    fn tmux(&self, args: &[&str]) -> Output {
        Command::new("tmux").arg("-S").arg(&self.socket).args(args).output().unwrap()
    }

    /// What the terminal shows now, with the scrollback.
    pub fn screen(&self) -> String {
        String::from_utf8_lossy(&self.tmux(&["capture-pane", "-p", "-J", "-S", "-2000"]).stdout).into_owned()
    }

    /// Whether the terminal shows its alternate screen (a full-screen program owns it).
    pub fn alternate_screen(&self) -> bool {
        String::from_utf8_lossy(&self.tmux(&["display-message", "-p", "#{alternate_on}"]).stdout).trim() == "1"
    }

    /// Resize the terminal (the program sees a SIGWINCH, as when a window is resized).
    pub fn resize(&self, cols: u16, rows: u16) {
        let out = self.tmux(&["resize-window", "-x", &cols.to_string(), "-y", &rows.to_string()]);
        assert!(out.status.success(), "tmux resize-window: {out:?}");
    }

    /// Whether the cursor is shown.
    pub fn cursor_visible(&self) -> bool {
        String::from_utf8_lossy(&self.tmux(&["display-message", "-p", "#{cursor_flag}"]).stdout).trim() == "1"
    }

    /// Type `keys` (tmux key names: `Enter`, `C-c`, or literal text with `literal`).
    pub fn send(&self, keys: &str, literal: bool) {
        let mut args = vec!["send-keys", "-t", "0"];
        if literal {
            args.push("-l");
        }
        args.push(keys);
        let out = self.tmux(&args);
        assert!(out.status.success(), "tmux send-keys: {out:?}");
    }

    /// Wait for the command's exit status (written when it ends), or panic with the screen.
    pub fn wait_exit(&self, status_file: &Path, timeout: Duration) -> String {
        let t0 = Instant::now();
        loop {
            if let Ok(s) = std::fs::read_to_string(status_file) {
                return s.trim().to_string();
            }
            assert!(t0.elapsed() < timeout, "the command did not end within {timeout:?}:\n{}", self.screen());
            std::thread::sleep(Duration::from_millis(200));
        }
    }

    /// Wait until the screen shows `text` (its whole screen then), or panic with the screen.
    pub fn wait_for(&self, text: &str, timeout: Duration) -> String {
        let t0 = Instant::now();
        loop {
            let screen = self.screen();
            if screen.contains(text) {
                return screen;
            }
            assert!(t0.elapsed() < timeout, "{text:?} not shown within {timeout:?}; the screen:\n{screen}");
            std::thread::sleep(Duration::from_millis(200));
        }
    }
}

impl Drop for Tmux {
    fn drop(&mut self) {
        let _ = self.tmux(&["kill-server"]);
    }
}

/// `dig` until it says `status` (bangerd follows the event stream: a name changes a few
/// milliseconds after the phase); the last (status, answers).
pub fn dig_until(server: &str, name: &str, status: &str) -> (String, Vec<String>) {
    let deadline = Instant::now() + Duration::from_secs(2);
    loop {
        let got = dig(server, name);
        if got.0 == status || Instant::now() > deadline {
            return got;
        }
        std::thread::sleep(Duration::from_millis(20));
    }
}

/// `dig @server NAME A`: (status, answers).
pub fn dig(server: &str, name: &str) -> (String, Vec<String>) {
    let (ip, port) = server.rsplit_once(':').unwrap();
    let out = std::process::Command::new("dig")
        .args([&format!("@{ip}"), "-p", port, "+time=2", "+tries=1", name, "A"])
        .output()
        .unwrap();
    let text = String::from_utf8_lossy(&out.stdout).into_owned();
    let status = text
        .lines()
        .find_map(|l| l.split("status: ").nth(1))
        .map(|s| s.split(',').next().unwrap().to_string())
        .unwrap_or_else(|| format!("no reply: {text}"));
    let answers = text
        .lines()
        .skip_while(|l| !l.starts_with(";; ANSWER SECTION"))
        .skip(1)
        .take_while(|l| !l.trim().is_empty())
        .filter_map(|l| l.split_whitespace().last().map(String::from))
        .collect();
    (status, answers)
}

//! The one module that runs host commands.
//!
//! Every external program banger uses (`ip`, `iptables`, `mkfs.ext4`, `ssh-keygen`, …) runs
//! through [`run`] (as the invoking user) or [`run_root`] (needs root: directly when we are root,
//! through `sudo -n` otherwise, and a clear error — never a password prompt — when sudo would ask
//! for a password). Arguments are passed as a vector: no shell ever sees user input.

use std::ffi::{OsStr, OsString};
use std::process::{Command, Output, Stdio};

#[derive(Debug, thiserror::Error)]
pub enum HostError {
    #[error("{program} is not installed (Debian package {package})")]
    Missing { program: String, package: &'static str },
    #[error("cannot run `{cmd}`: {source}")]
    Spawn { cmd: String, source: std::io::Error },
    #[error("`{cmd}` failed ({status}): {stderr}")]
    Failed { cmd: String, status: String, stderr: String },
    #[error(
        "`{cmd}` needs root and sudo would ask for a password; allow it without one (sudoers NOPASSWD) or run banger as root"
    )]
    SudoPassword { cmd: String },
    #[error("`{cmd}` needs root, and neither are we root nor is sudo installed")]
    NoSudo { cmd: String },
    #[error("`{cmd}` did not finish within {secs}s, so it was killed")]
    TimedOut { cmd: String, secs: u64 },
}

/// The Debian package that provides `program`, for "not installed" messages.
pub fn package_of(program: &str) -> &'static str {
    match program {
        "dpkg-deb" => "dpkg",
        "apt-get" | "apt-cache" => "apt",
        "depmod" => "kmod",
        "cp" | "chroot" => "coreutils",
        "mount" | "umount" => "mount",
        "mke2fs" => "e2fsprogs",
        "ip" => "iproute2",
        "iptables" => "iptables",
        "mkfs.ext4" | "debugfs" | "e2fsck" | "resize2fs" => "e2fsprogs",
        "ssh" | "ssh-keygen" => "openssh-client",
        "qemu-system-x86_64" => "qemu-system-x86",
        "mmdebstrap" => "mmdebstrap",
        "sudo" => "sudo",
        "sysctl" => "procps",
        "conntrack" => "conntrack",
        _ => "unknown",
    }
}

/// How privileged commands are run in this process.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Privilege {
    Root,
    Sudo,
}

pub fn privilege() -> Privilege {
    if nix::unistd::geteuid().is_root() { Privilege::Root } else { Privilege::Sudo }
}

/// The argv that runs `program args…` with root under `privilege`.
pub fn root_argv(privilege: Privilege, program: &str, args: &[OsString]) -> Vec<OsString> {
    let mut argv = Vec::with_capacity(args.len() + 3);
    if privilege == Privilege::Sudo {
        argv.push("sudo".into());
        argv.push("-n".into());
        argv.push("--".into());
    }
    argv.push(program.into());
    argv.extend(args.iter().cloned());
    argv
}

fn display(argv: &[OsString]) -> String {
    let mut s = argv.iter().map(|a| a.to_string_lossy().into_owned()).collect::<Vec<_>>().join(" ");
    if s.len() > 300 {
        let mut end = 300;
        while !s.is_char_boundary(end) {
            end -= 1;
        }
        s.truncate(end);
        s.push('…');
    }
    s
}

/// Run a prepared command (environment, working directory, stdin as the caller set them) as the
/// current user, with the same error reporting as [`run`].
pub fn run_command(cmd: &mut Command) -> Result<Output, HostError> {
    let mut argv = vec![cmd.get_program().to_os_string()];
    argv.extend(cmd.get_args().map(|a| a.to_os_string()));
    let program = argv[0].to_string_lossy().into_owned();
    let out = cmd.output().map_err(|source| spawn_error(&argv, source))?;
    classify(out, &display(&argv), false, &program)
}

fn spawn_error(argv: &[OsString], source: std::io::Error) -> HostError {
    if source.kind() == std::io::ErrorKind::NotFound {
        let missing = argv[0].to_string_lossy().into_owned();
        if missing == "sudo" {
            return HostError::NoSudo { cmd: display(&argv[3..]) };
        }
        HostError::Missing { package: package_of(&missing), program: missing }
    } else {
        HostError::Spawn { cmd: display(argv), source }
    }
}

fn os_args<I, S>(args: I) -> Vec<OsString>
where
    I: IntoIterator<Item = S>,
    S: AsRef<OsStr>,
{
    args.into_iter().map(|a| a.as_ref().to_os_string()).collect()
}

/// Run `program args…` as the current user; success means exit status 0.
pub fn run<I, S>(program: &str, args: I) -> Result<Output, HostError>
where
    I: IntoIterator<Item = S>,
    S: AsRef<OsStr>,
{
    let mut argv = vec![OsString::from(program)];
    argv.extend(os_args(args));
    exec(&argv, program)
}

/// Run `program args…` as the invoking user with no input, killing it after `timeout` (for
/// commands that may hang on a peer that vanished, such as `ssh`). Its output is returned.
pub fn run_with_timeout<I, S>(program: &str, args: I, timeout: std::time::Duration) -> Result<Output, HostError>
where
    I: IntoIterator<Item = S>,
    S: AsRef<OsStr>,
{
    use std::io::Read;
    let mut argv = vec![OsString::from(program)];
    argv.extend(os_args(args));
    let mut child = Command::new(&argv[0])
        .args(&argv[1..])
        .stdin(Stdio::null())
        .stdout(Stdio::piped())
        .stderr(Stdio::piped())
        .spawn()
        .map_err(|source| spawn_error(&argv, source))?;
    // Drain both pipes while waiting, so a chatty command cannot block on a full pipe. A
    // grandchild may keep a pipe open after the command exits: what was read by the deadline
    // is what we get.
    let drain = |r: Option<Box<dyn Read + Send>>| {
        let (tx, rx) = std::sync::mpsc::channel();
        std::thread::spawn(move || {
            let mut buf = Vec::new();
            if let Some(mut r) = r {
                let _ = r.read_to_end(&mut buf);
            }
            let _ = tx.send(buf);
        });
        rx
    };
    let out = drain(child.stdout.take().map(|r| Box::new(r) as Box<dyn Read + Send>));
    let err = drain(child.stderr.take().map(|r| Box::new(r) as Box<dyn Read + Send>));
    let deadline = std::time::Instant::now() + timeout;
    let status = loop {
        let status = child.try_wait().map_err(|source| HostError::Spawn { cmd: display(&argv), source })?;
        if let Some(status) = status {
            break status;
        }
        if std::time::Instant::now() >= deadline {
            let _ = child.kill();
            let _ = child.wait();
            return Err(HostError::TimedOut { cmd: display(&argv), secs: timeout.as_secs() });
        }
        std::thread::sleep(std::time::Duration::from_millis(10));
    };
    let left = |rx: std::sync::mpsc::Receiver<Vec<u8>>| {
        let wait =
            deadline.saturating_duration_since(std::time::Instant::now()).max(std::time::Duration::from_millis(100));
        rx.recv_timeout(wait).unwrap_or_default()
    };
    let output = Output { status, stdout: left(out), stderr: left(err) };
    classify(output, &display(&argv), false, program)
}

/// Run `program args…` as root (directly, or `sudo -n` when we are not root).
pub fn run_root<I, S>(program: &str, args: I) -> Result<Output, HostError>
where
    I: IntoIterator<Item = S>,
    S: AsRef<OsStr>,
{
    run_root_as(privilege(), program, &os_args(args))
}

/// Start `program args…` as root (directly, or `sudo -n` when we are not root) and return at once:
/// for servers that run until the caller stops them. Its stdin is null, its stdout a pipe (the
/// caller may read a readiness line from it) and its stderr the caller's. The returned child is
/// the program itself, or the `sudo` that relays signals to it; stop it by its pid.
pub fn spawn_root<I, S>(program: &str, args: I) -> Result<std::process::Child, HostError>
where
    I: IntoIterator<Item = S>,
    S: AsRef<OsStr>,
{
    spawn_root_as(privilege(), program, &os_args(args))
}

/// [`spawn_root`] with the privilege mode explicit.
pub fn spawn_root_as(privilege: Privilege, program: &str, args: &[OsString]) -> Result<std::process::Child, HostError> {
    let argv = root_argv(privilege, program, args);
    Command::new(&argv[0])
        .args(&argv[1..])
        .stdin(Stdio::null())
        .stdout(Stdio::piped())
        .stderr(Stdio::inherit())
        .spawn()
        .map_err(|source| spawn_error(&argv, source))
}

/// A command that runs `program args…` as root under `privilege`, for the caller to set up and
/// spawn (long-running programs whose output goes where the caller says): `program` itself, or
/// `sudo -n -- program args…` once `sudo -n -l` has said it would run it without a password.
pub fn root_command(privilege: Privilege, program: &std::path::Path, args: &[OsString]) -> Result<Command, HostError> {
    let name = program.file_name().unwrap_or(program.as_os_str()).to_string_lossy().into_owned();
    if privilege == Privilege::Sudo {
        let check: Vec<OsString> =
            ["sudo", "-n", "-l", "--"].into_iter().map(OsString::from).chain([program.into()]).collect();
        match exec(&check, &name) {
            Ok(_) => {}
            // `sudo -l` lists nothing for a command the user may not run.
            Err(HostError::Failed { stderr, .. }) if stderr.is_empty() => {
                return Err(HostError::Failed {
                    cmd: display(&root_argv(privilege, &program.to_string_lossy(), args)),
                    status: "not allowed by sudo".into(),
                    stderr: format!(
                        "sudo does not let this user run {} (a sudoers rule such as `USER ALL=(root) NOPASSWD: {}` \
                         would, or run banger as root)",
                        program.display(),
                        program.display()
                    ),
                });
            }
            Err(e) => return Err(e),
        }
    }
    let mut cmd = match privilege {
        Privilege::Root => Command::new(program),
        Privilege::Sudo => {
            let mut c = Command::new("sudo");
            c.args(["-n", "--"]).arg(program);
            c
        }
    };
    cmd.args(args);
    Ok(cmd)
}

/// [`run_root`] with the privilege mode explicit (tests exercise the sudo path as another uid).
pub fn run_root_as(privilege: Privilege, program: &str, args: &[OsString]) -> Result<Output, HostError> {
    exec(&root_argv(privilege, program, args), program)
}

fn exec(argv: &[OsString], program: &str) -> Result<Output, HostError> {
    let cmd = display(argv);
    let out = Command::new(&argv[0])
        .args(&argv[1..])
        .stdin(Stdio::null())
        .output()
        .map_err(|source| spawn_error(argv, source))?;
    classify(out, &cmd, argv[0] == "sudo", program)
}

fn classify(out: Output, cmd: &str, via_sudo: bool, program: &str) -> Result<Output, HostError> {
    if out.status.success() {
        return Ok(out);
    }
    let stderr = String::from_utf8_lossy(&out.stderr).trim().to_string();
    if via_sudo && (stderr.contains("a password is required") || stderr.contains("a terminal is required")) {
        return Err(HostError::SudoPassword { cmd: cmd.trim_start_matches("sudo -n -- ").to_string() });
    }
    if via_sudo && stderr.contains(&format!("{program}: command not found")) {
        return Err(HostError::Missing { program: program.into(), package: package_of(program) });
    }
    // The last few lines of stderr (or of stdout, for tools that report there) say what went wrong.
    let text = if stderr.is_empty() { String::from_utf8_lossy(&out.stdout).trim().to_string() } else { stderr };
    let lines: Vec<&str> = text.lines().filter(|l| !l.trim().is_empty()).collect();
    let stderr = lines[lines.len().saturating_sub(3)..].join(" | ");
    Err(HostError::Failed { cmd: cmd.to_string(), status: out.status.to_string(), stderr })
}

/// The last non-empty line a program we started wrote to `path` after byte `offset` (only the
/// final 64 KiB are read): what a daemon or VMM said as it died.
pub fn last_line_since(path: &std::path::Path, offset: u64) -> Option<String> {
    use std::io::{Read, Seek, SeekFrom};
    let mut f = std::fs::File::open(path).ok()?;
    let len = f.metadata().ok()?.len();
    let start = offset.max(len.saturating_sub(64 * 1024));
    if start >= len {
        return None;
    }
    f.seek(SeekFrom::Start(start)).ok()?;
    let mut buf = Vec::new();
    f.read_to_end(&mut buf).ok()?;
    String::from_utf8_lossy(&buf).lines().map(str::trim).rfind(|l| !l.is_empty()).map(str::to_string)
}

#[cfg(test)]
mod tests {
    use super::*;
    use std::os::unix::process::ExitStatusExt;

    #[test]
    fn last_line_skips_blank_lines_and_earlier_output() {
        let dir = std::env::temp_dir().join(format!("banger-lastline-{}", std::process::id()));
        std::fs::create_dir_all(&dir).unwrap();
        let p = dir.join("out");
        std::fs::write(&p, "old run\n").unwrap();
        let off = std::fs::metadata(&p).unwrap().len();
        assert_eq!(last_line_since(&p, off), None);
        std::fs::write(&p, "old run\nfirst\nError: bad thing\n\n").unwrap();
        assert_eq!(last_line_since(&p, off).as_deref(), Some("Error: bad thing"));
        assert_eq!(last_line_since(&dir.join("missing"), 0), None);
        std::fs::remove_dir_all(&dir).unwrap();
    }

    #[test]
    fn root_runs_directly_others_through_sudo_n() {
        let args = os_args(["link", "del", "bgr3"]);
        assert_eq!(display(&root_argv(Privilege::Root, "ip", &args)), "ip link del bgr3");
        assert_eq!(display(&root_argv(Privilege::Sudo, "ip", &args)), "sudo -n -- ip link del bgr3");
    }

    #[test]
    fn user_input_is_never_interpreted_by_a_shell() {
        let out = run("printf", ["%s", "$(touch /tmp/banger-pwned); `id`"]).unwrap();
        assert_eq!(String::from_utf8_lossy(&out.stdout), "$(touch /tmp/banger-pwned); `id`");
        assert!(!std::path::Path::new("/tmp/banger-pwned").exists());
    }

    #[test]
    fn failures_name_the_command_and_its_error() {
        let err = run("ls", ["/definitely/not/here"]).unwrap_err();
        let msg = err.to_string();
        assert!(msg.starts_with("`ls /definitely/not/here` failed (exit status: 2): "), "{msg}");
        assert!(msg.contains("No such file or directory"), "{msg}");
        let err = run("banger-no-such-program", Vec::<String>::new()).unwrap_err();
        assert!(matches!(err, HostError::Missing { .. }), "{err}");
    }

    #[test]
    fn a_command_that_hangs_is_killed_at_its_timeout() {
        let t0 = std::time::Instant::now();
        let err = run_with_timeout("sleep", ["30"], std::time::Duration::from_millis(300)).unwrap_err();
        assert!(matches!(err, HostError::TimedOut { .. }), "{err}");
        assert!(t0.elapsed() < std::time::Duration::from_secs(5));
        run_with_timeout("true", [""; 0], std::time::Duration::from_secs(5)).unwrap();
        let out = run_with_timeout("sh", ["-c", "echo out; echo err >&2"], std::time::Duration::from_secs(5)).unwrap();
        assert_eq!((&out.stdout[..], &out.stderr[..]), (&b"out\n"[..], &b"err\n"[..]));
        // A grandchild holding the pipes open does not hold us past the deadline.
        let t0 = std::time::Instant::now();
        let out =
            run_with_timeout("sh", ["-c", "echo early; sleep 3 & exit 0"], std::time::Duration::from_secs(1)).unwrap();
        assert!(t0.elapsed() < std::time::Duration::from_secs(5), "{:?}", t0.elapsed());
        assert!(out.status.success());
        assert!(matches!(
            run_with_timeout("false", [""; 0], std::time::Duration::from_secs(5)),
            Err(HostError::Failed { .. })
        ));
    }

    #[test]
    fn spawn_root_returns_a_running_child_with_its_stdout_piped() {
        use std::io::BufRead;
        // As root the program runs directly; otherwise through `sudo -n` (which may refuse, and
        // then exits at once: that is classified by `run_root`, not here).
        if !nix::unistd::geteuid().is_root() {
            eprintln!("SKIP spawn_root_returns_a_running_child_with_its_stdout_piped: needs root");
            return;
        }
        let mut child = spawn_root("sh", ["-c", "echo ready; exec sleep 30"]).unwrap();
        let mut line = String::new();
        std::io::BufReader::new(child.stdout.take().unwrap()).read_line(&mut line).unwrap();
        assert_eq!(line, "ready\n");
        assert!(child.try_wait().unwrap().is_none(), "the child should still run");
        child.kill().unwrap();
        assert!(!child.wait().unwrap().success());
        // The sudo argv is the same as run_root's; a missing program is the usual clear error.
        let err = spawn_root_as(Privilege::Root, "banger-no-such-program", &[]).unwrap_err();
        assert!(matches!(err, HostError::Missing { .. }), "{err}");
    }

    #[test]
    fn root_command_runs_the_program_itself_as_root_and_through_sudo_otherwise() {
        let args = os_args(["-c", "echo $0 \"$1\"", "x", "a b"]);
        let sh = std::path::Path::new("/bin/sh");
        let cmd = root_command(Privilege::Root, sh, &args).unwrap();
        assert_eq!(cmd.get_program(), "/bin/sh");
        assert_eq!(cmd.get_args().collect::<Vec<_>>(), args.iter().map(|a| a.as_os_str()).collect::<Vec<_>>());
        if !nix::unistd::geteuid().is_root() || Command::new("sudo").arg("-V").output().is_err() {
            eprintln!("SKIP root_command through sudo: needs root (for whom sudo asks no password) and sudo");
            return;
        }
        let mut cmd = root_command(Privilege::Sudo, sh, &args).unwrap();
        assert_eq!(cmd.get_program(), "sudo");
        let out = cmd.output().unwrap();
        assert_eq!(String::from_utf8_lossy(&out.stdout), "x a b\n", "arguments reach it unchanged");
    }

    #[test]
    fn sudo_asking_for_a_password_is_a_clear_error() {
        // What `sudo -n` prints when a password would be needed.
        let out = Output {
            status: std::process::ExitStatus::from_raw(1 << 8),
            stdout: vec![],
            stderr: b"sudo: a password is required\n".to_vec(),
        };
        let err = classify(out, "sudo -n -- ip tuntap add dev bgr1 mode tap", true, "ip").unwrap_err();
        assert_eq!(
            err.to_string(),
            "`ip tuntap add dev bgr1 mode tap` needs root and sudo would ask for a password; allow it without one (sudoers NOPASSWD) or run banger as root"
        );
        assert!(matches!(err, HostError::SudoPassword { .. }));
    }

    #[test]
    fn real_sudo_without_a_password_is_classified() {
        use std::os::unix::process::CommandExt;
        if !nix::unistd::geteuid().is_root() || Command::new("sudo").arg("-V").output().is_err() {
            eprintln!("SKIP real_sudo_without_a_password_is_classified: needs root (to act as uid 65534) and sudo");
            return;
        }
        // uid 65534 has no sudo rights and no password: sudo -n must refuse without prompting.
        let out = Command::new("sudo").args(["-n", "--", "true"]).uid(65534).gid(65534).output().unwrap();
        let err = classify(out, "sudo -n -- true", true, "true").unwrap_err();
        assert!(matches!(err, HostError::SudoPassword { .. }), "{err}");
    }
}

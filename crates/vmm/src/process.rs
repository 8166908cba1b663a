//! VMM processes: spawned detached, found again by pid, signalled by pid — never by name.

use nix::sys::signal::{Signal, kill};
use nix::unistd::Pid;
use std::os::unix::process::CommandExt;
use std::path::Path;
use std::process::{Child, Command};
use std::time::{Duration, Instant};

/// Spawn `cmd` in its own session (so terminal signals and the daemon's exit do not reach it).
/// A background thread reaps it when it exits while we live; after the daemon exits, init does.
pub fn spawn_detached(cmd: &mut Command) -> std::io::Result<Child> {
    // SAFETY: setsid is async-signal-safe and the closure touches nothing else.
    unsafe {
        cmd.pre_exec(|| {
            nix::unistd::setsid().map_err(std::io::Error::from)?;
            Ok(())
        });
    }
    cmd.spawn()
}

/// Reap `child` in the background once it exits.
pub fn reap_in_background(mut child: Child) {
    std::thread::spawn(move || {
        let _ = child.wait();
    });
}

/// Is `pid` alive, not a zombie, and is it the process whose command line mentions `marker`
/// (the VM's control socket)? Guards against pid reuse after a host reboot or a long downtime.
pub fn is_alive(pid: u32, marker: &Path) -> bool {
    let Ok(stat) = std::fs::read_to_string(format!("/proc/{pid}/stat")) else { return false };
    if stat.rsplit(')').next().unwrap_or("").trim_start().starts_with('Z') {
        return false;
    }
    let Ok(cmdline) = std::fs::read(format!("/proc/{pid}/cmdline")) else { return false };
    let marker = marker.as_os_str().as_encoded_bytes();
    cmdline.split(|&b| b == 0).any(|arg| arg.windows(marker.len()).any(|w| w == marker))
}

/// CPU time and memory of a process at one moment (for `vm stats`).
#[derive(Debug, Clone, Copy, PartialEq)]
pub struct Usage {
    /// User + system CPU seconds so far.
    pub cpu_secs: f64,
    /// Resident set size in bytes.
    pub rss_bytes: u64,
}

/// What `pid` has used so far, if it is the VM's process (`marker`, as in [`is_alive`]).
pub fn usage(pid: u32, marker: &Path) -> Option<Usage> {
    if !is_alive(pid, marker) {
        return None;
    }
    let stat = std::fs::read_to_string(format!("/proc/{pid}/stat")).ok()?;
    // Fields after the command name (which may hold spaces or parentheses): state is [0],
    // utime [11], stime [12] (fields 14 and 15 of proc(5)).
    let rest: Vec<&str> = stat.rsplit_once(')')?.1.split_whitespace().collect();
    let ticks: u64 = rest.get(11)?.parse::<u64>().ok()? + rest.get(12)?.parse::<u64>().ok()?;
    let statm = std::fs::read_to_string(format!("/proc/{pid}/statm")).ok()?;
    let pages: u64 = statm.split_whitespace().nth(1)?.parse().ok()?;
    let hz = nix::unistd::sysconf(nix::unistd::SysconfVar::CLK_TCK).ok().flatten().unwrap_or(100).max(1) as f64;
    let page = nix::unistd::sysconf(nix::unistd::SysconfVar::PAGE_SIZE).ok().flatten().unwrap_or(4096) as u64;
    Some(Usage { cpu_secs: ticks as f64 / hz, rss_bytes: pages * page })
}

/// The pids of this user's live processes whose command line mentions `marker` (a VM's run
/// directory, a jail id): finds a VMM whose pid was never recorded.
pub fn find_with_marker(marker: &Path) -> Vec<u32> {
    find_with_marker_of(marker, &[nix::unistd::geteuid().as_raw()])
}

/// [`find_with_marker`] among the processes of the users `uids` (a jailed Firecracker may run as
/// `jailer_uid`).
pub fn find_with_marker_of(marker: &Path, uids: &[u32]) -> Vec<u32> {
    use std::os::unix::fs::MetadataExt;
    let Ok(dir) = std::fs::read_dir("/proc") else { return Vec::new() };
    let mut pids: Vec<u32> = dir
        .flatten()
        .filter_map(|e| e.file_name().to_str()?.parse::<u32>().ok())
        .filter(|&pid| std::fs::metadata(format!("/proc/{pid}")).is_ok_and(|m| uids.contains(&m.uid())))
        .filter(|&pid| is_alive(pid, marker))
        .collect();
    pids.sort_unstable();
    pids
}

/// Send `signal` to `pid` if it is still the VM's process.
pub fn signal(pid: u32, marker: &Path, signal: Signal) -> Result<(), crate::VmmError> {
    if !is_alive(pid, marker) {
        return Err(crate::VmmError::NotRunning { pid });
    }
    kill(Pid::from_raw(pid as i32), signal).map_err(|_| crate::VmmError::NotRunning { pid })
}

/// Wait until the VM's process is gone; `false` on timeout.
pub fn wait_exit(pid: u32, marker: &Path, timeout: Duration) -> bool {
    let deadline = Instant::now() + timeout;
    while is_alive(pid, marker) {
        if Instant::now() >= deadline {
            return false;
        }
        std::thread::sleep(Duration::from_millis(20));
    }
    true
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn usage_counts_cpu_time_and_memory_of_the_marked_process_only() {
        let tmp = tempfile::tempdir().unwrap();
        let marker = tmp.path().join("busy.sock");
        // A process that burns CPU for a moment, then sleeps; its argv carries the marker.
        let script = format!("i=0; while [ $i -lt 200000 ]; do i=$((i+1)); done; exec sleep 30 # {}", marker.display());
        let mut child = Command::new("sh").args(["-c", &script]).spawn().unwrap();
        let pid = child.id();
        let deadline = Instant::now() + Duration::from_secs(20);
        let mut last = None;
        while Instant::now() < deadline {
            last = usage(pid, &marker);
            if last.is_some_and(|u| u.cpu_secs > 0.0) {
                break;
            }
            std::thread::sleep(Duration::from_millis(50));
        }
        let u = last.expect("the marked process is measured");
        assert!(u.cpu_secs > 0.0, "{u:?}");
        assert!(u.rss_bytes > 100 * 1024, "{u:?}");
        assert_eq!(usage(pid, &tmp.path().join("other.sock")), None, "another marker is not this VM's process");
        child.kill().unwrap();
        child.wait().unwrap();
        assert_eq!(usage(pid, &marker), None);
    }

    #[test]
    fn liveness_checks_the_marker_and_reaping_clears_zombies() {
        let tmp = tempfile::tempdir().unwrap();
        let marker = tmp.path().join("api.sock");
        let mut cmd = Command::new("sh");
        cmd.args(["-c", "sleep 30", "vmm"]).arg(&marker);
        let child = spawn_detached(&mut cmd).unwrap();
        let pid = child.id();
        reap_in_background(child);
        assert!(is_alive(pid, &marker));
        assert!(!is_alive(pid, &tmp.path().join("other.sock")), "marker must be checked");
        // Its own session: the child is a session leader.
        assert_eq!(nix::unistd::getsid(Some(Pid::from_raw(pid as i32))).unwrap().as_raw(), pid as i32);
        // Until sh has forked and exec'd its `sleep`, the child still shows sh's command line
        // (with the marker): wait for that moment to pass.
        let t0 = std::time::Instant::now();
        while find_with_marker(&marker) != [pid] && t0.elapsed() < Duration::from_secs(5) {
            std::thread::sleep(Duration::from_millis(20));
        }
        assert_eq!(find_with_marker(&marker), [pid]);
        assert!(find_with_marker(&tmp.path().join("other.sock")).is_empty());
        signal(pid, &marker, Signal::SIGTERM).unwrap();
        assert!(wait_exit(pid, &marker, Duration::from_secs(5)));
        assert!(matches!(signal(pid, &marker, Signal::SIGTERM), Err(crate::VmmError::NotRunning { .. })));
    }
}

//! Reaching a guest over SSH: readiness, host-key pinning, and a clean `poweroff`.
//!
//! The guest image generates its SSH host keys on first boot and prints the public halves on the
//! serial console between `BANGER-HOSTKEYS-BEGIN` and `BANGER-HOSTKEYS-END`. The daemon reads
//! them from the console log (a channel the guest controls only as itself) and pins them in the
//! VM's own `known_hosts`, under a per-VM alias, so `banger vm ssh` checks them strictly.

use std::io::Read;
use std::net::{Ipv4Addr, SocketAddr, TcpStream};
use std::path::Path;
use std::time::Duration;

/// The real guest channel: TCP probes, `ssh-keyscan` and `ssh`.
pub struct Ssh;

impl super::Guest for Ssh {
    fn probe(&self, ip: Ipv4Addr) -> Probe {
        probe(ip)
    }
    fn keyscan(&self, ip: Ipv4Addr, types: &[&str]) -> Option<Vec<String>> {
        keyscan(ip, types)
    }
    fn poweroff(&self, ssh: &banger_api::response::SshInfo) {
        poweroff(ssh)
    }
    fn mount_folders(
        &self,
        ssh: &banger_api::response::SshInfo,
        folders: &[(String, std::path::PathBuf, bool)],
    ) -> Result<(), String> {
        let script = mount_script(folders);
        let out = run(ssh, &script, MOUNT_TIMEOUT).map_err(|e| e.to_string())?;
        if !out.status.success() {
            let err = String::from_utf8_lossy(&out.stderr);
            return Err(err.trim().lines().last().unwrap_or("mount failed").to_string());
        }
        Ok(())
    }
    fn stats(&self, ssh: &banger_api::response::SshInfo) -> Result<banger_api::response::GuestStats, String> {
        let asked = crate::now_unix_f64();
        let out = run(ssh, super::guest_stats::COMMAND, STATS_TIMEOUT).map_err(|e| e.to_string())?;
        super::guest_stats::parse(&String::from_utf8_lossy(&out.stdout), asked)
    }
}

/// What a TCP probe of the guest's port 22 found.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum Probe {
    /// No answer (no route yet, or the guest is not up).
    Silent,
    /// The guest's network stack answers (connection refused: sshd not listening yet).
    NetworkUp,
    /// sshd sent its banner.
    Ready(String),
}

pub fn probe(ip: Ipv4Addr) -> Probe {
    probe_addr(SocketAddr::from((ip, 22)))
}

fn probe_addr(addr: SocketAddr) -> Probe {
    match TcpStream::connect_timeout(&addr, Duration::from_millis(500)) {
        Ok(mut s) => {
            let _ = s.set_read_timeout(Some(Duration::from_secs(3)));
            let mut buf = [0u8; 256];
            match s.read(&mut buf) {
                Ok(n) if n > 0 && buf.starts_with(b"SSH-") => {
                    Probe::Ready(String::from_utf8_lossy(&buf[..n]).lines().next().unwrap_or("").to_string())
                }
                _ => Probe::NetworkUp,
            }
        }
        Err(e) if e.kind() == std::io::ErrorKind::ConnectionRefused => Probe::NetworkUp,
        Err(_) => Probe::Silent,
    }
}

/// Public host keys (`type base64`) printed between the markers, if the console has them.
pub fn host_keys_from_console(console: &str) -> Option<Vec<String>> {
    let start = console.rfind("BANGER-HOSTKEYS-BEGIN")?;
    let rest = &console[start..];
    let end = rest.find("BANGER-HOSTKEYS-END")?;
    let keys: Vec<String> = rest[..end]
        .lines()
        .skip(1)
        .filter_map(|l| {
            let mut parts = l.split_whitespace().skip_while(|w| !w.starts_with("ssh-") && !w.starts_with("ecdsa-"));
            let kind = parts.next()?;
            let key = parts.next()?;
            Some(format!("{kind} {key}"))
        })
        .collect();
    (!keys.is_empty()).then_some(keys)
}

/// The keys sshd at `ip` shows, by `ssh-keyscan`: only the `types` asked for (one key exchange
/// each, and a guest that just booted under TCG can take seconds for one), every type if none.
/// Tried twice.
pub fn keyscan(ip: Ipv4Addr, types: &[&str]) -> Option<Vec<String>> {
    let scan_types: Vec<&str> = types
        .iter()
        .map(|t| match *t {
            "ssh-ed25519" => Some("ed25519"),
            "ssh-rsa" => Some("rsa"),
            "ssh-dss" => Some("dsa"),
            t if t.starts_with("ecdsa-sha2-") => Some("ecdsa"),
            _ => None,
        })
        .collect::<Option<_>>()
        // A type ssh-keyscan has no name for: ask for every type.
        .unwrap_or_default();
    let mut args = vec!["-T".to_string(), "15".into()];
    if !scan_types.is_empty() {
        args.extend(["-t".into(), scan_types.join(",")]);
    }
    args.push(ip.to_string());
    (0..2).find_map(|_| keyscan_once(&args))
}

fn keyscan_once(args: &[String]) -> Option<Vec<String>> {
    let out = banger_host::run("ssh-keyscan", args).ok()?;
    let keys: Vec<String> = String::from_utf8_lossy(&out.stdout)
        .lines()
        .filter(|l| !l.starts_with('#'))
        .filter_map(|l| {
            let mut w = l.split_whitespace().skip(1);
            Some(format!("{} {}", w.next()?, w.next()?))
        })
        .collect();
    (!keys.is_empty()).then_some(keys)
}

/// Write `known_hosts` with `keys` filed under `alias` (temp file + rename).
pub fn write_known_hosts(path: &Path, alias: &str, keys: &str) -> std::io::Result<()> {
    let text: String = keys.lines().filter(|l| !l.trim().is_empty()).map(|k| format!("{alias} {k}\n")).collect();
    let tmp = path.with_extension("tmp");
    std::fs::write(&tmp, text)?;
    std::fs::rename(&tmp, path)
}

/// How long asking the guest to power off may take.
pub const POWEROFF_TIMEOUT: Duration = Duration::from_secs(10);

/// Ask the guest to power off over SSH; errors are fine (the connection dies with the guest).
/// The guest may vanish before it closes the connection, so ssh gives up on a silent peer
/// (keepalives) and is killed at [`POWEROFF_TIMEOUT`] in any case.
/// How long a guest may take to answer `vm stats`' command.
pub const STATS_TIMEOUT: Duration = Duration::from_secs(10);

/// Run a fixed command in the guest over a one-shot, non-interactive SSH session with the
/// pinned key (never user input: `vm ssh` is the CLI's, not the daemon's).
pub fn run(
    ssh: &banger_api::response::SshInfo,
    command: &str,
    timeout: Duration,
) -> Result<std::process::Output, banger_host::HostError> {
    banger_host::run_with_timeout("ssh", session_args(ssh, command, 1), timeout)
}

/// `ssh`'s arguments for a fixed `command` in a one-shot, non-interactive session that gives up
/// on a guest silent for about `alive_secs` × 3.
pub fn session_args(ssh: &banger_api::response::SshInfo, command: &str, alive_secs: u32) -> Vec<String> {
    let mut args = ssh.options();
    for opt in [
        "BatchMode=yes".to_string(),
        "ConnectTimeout=5".into(),
        format!("ServerAliveInterval={alive_secs}"),
        "ServerAliveCountMax=3".into(),
    ] {
        args.extend(["-o".into(), opt]);
    }
    args.push(ssh.destination());
    args.push(command.into());
    args
}

const MOUNT_TIMEOUT: Duration = Duration::from_secs(60);

/// A word for the guest's shell, quoted so it means exactly itself.
fn quote(word: &str) -> String {
    format!("'{}'", word.replace('\'', "'\\''"))
}

/// The guest script mounting `(tag, dir, read-only)` shares (over whatever is mounted there,
/// unless it is that share already); stops at the first failure.
pub fn mount_script(folders: &[(String, std::path::PathBuf, bool)]) -> String {
    let mut s = String::from("set -e");
    for (tag, dir, ro) in folders {
        let (dir, tag) = (quote(&dir.to_string_lossy()), quote(tag));
        let opts = if *ro { "-o ro " } else { "" };
        s.push_str(&format!(
            "; mkdir -p -- {dir}; [ \"$(findmnt -rn -o SOURCE --mountpoint {dir} | tail -n 1)\" = {tag} ] || mount -t \
             virtiofs {opts}{tag} {dir}"
        ));
    }
    s
}

pub fn poweroff(ssh: &banger_api::response::SshInfo) {
    if let Err(e) = run(ssh, "systemctl poweroff --no-block || poweroff", POWEROFF_TIMEOUT) {
        tracing::debug!("poweroff over SSH: {e}");
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    use std::io::Write;

    #[test]
    fn mount_scripts_quote_every_directory() {
        let s = mount_script(&[
            ("banger0".into(), "/src".into(), false),
            ("banger1".into(), "/data/it's here".into(), true),
        ]);
        assert!(s.contains("mount -t virtiofs 'banger0' '/src'"), "{s}");
        assert!(s.contains("mount -t virtiofs -o ro 'banger1' '/data/it'\\''s here'"), "{s}");
        assert!(s.contains("--mountpoint '/src' | tail -n 1)\" = 'banger0' ]"), "{s}");
        // The script is valid sh, and the quoting gives the directory back byte for byte.
        assert!(std::process::Command::new("sh").args(["-n", "-c", &s]).status().unwrap().success());
        let out = std::process::Command::new("sh").args(["-c", "printf %s '/data/it'\\''s here'"]).output().unwrap();
        assert_eq!(String::from_utf8_lossy(&out.stdout), "/data/it's here");
    }

    #[test]
    fn host_keys_are_read_between_the_last_markers() {
        let console = "noise\nBANGER-HOSTKEYS-BEGIN\nold\nBANGER-HOSTKEYS-END\n[  3.1] x\n\
            BANGER-HOSTKEYS-BEGIN\r\nssh-ed25519 AAAAC3Nz root@calm-otter\r\n[   4.0] ecdsa-sha2-nistp256 AAAAE2V host\r\n\
            ssh-rsa AAAAB3 root@x\nBANGER-HOSTKEYS-END\nlogin:";
        assert_eq!(
            host_keys_from_console(console).unwrap(),
            ["ssh-ed25519 AAAAC3Nz", "ecdsa-sha2-nistp256 AAAAE2V", "ssh-rsa AAAAB3"]
        );
        assert_eq!(host_keys_from_console("BANGER-HOSTKEYS-BEGIN\nno end"), None);
        assert_eq!(host_keys_from_console("nothing"), None);
    }

    #[test]
    fn known_hosts_file_pins_under_the_alias() {
        let tmp = tempfile::tempdir().unwrap();
        let p = tmp.path().join("known_hosts");
        write_known_hosts(&p, "banger-calm-otter", "ssh-ed25519 AAAA\necdsa-sha2-nistp256 BBBB\n").unwrap();
        assert_eq!(
            std::fs::read_to_string(&p).unwrap(),
            "banger-calm-otter ssh-ed25519 AAAA\nbanger-calm-otter ecdsa-sha2-nistp256 BBBB\n"
        );
    }

    #[test]
    fn probe_tells_silence_from_a_refusing_stack_from_sshd() {
        // 127.0.0.1 answers: a closed port refuses.
        assert_eq!(probe_port(Ipv4Addr::LOCALHOST, 1), Probe::NetworkUp);
        let l = std::net::TcpListener::bind("127.0.0.1:0").unwrap();
        let port = l.local_addr().unwrap().port();
        std::thread::spawn(move || {
            let (mut s, _) = l.accept().unwrap();
            s.write_all(b"SSH-2.0-OpenSSH_9.2p1 Debian\r\n").unwrap();
        });
        assert_eq!(probe_port(Ipv4Addr::LOCALHOST, port), Probe::Ready("SSH-2.0-OpenSSH_9.2p1 Debian".into()));
    }

    fn probe_port(ip: Ipv4Addr, port: u16) -> Probe {
        probe_addr(SocketAddr::from((ip, port)))
    }
}

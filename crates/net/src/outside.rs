//! A throwaway "outside" network for checking NAT without any traffic leaving the machine.
//!
//! ```text
//! [host] HOST_IF host_ip/30 ── veth ── PEER host_ip+1/30 [namespace NS: TCP server on :port]
//! ```
//! The namespace has no route back to the VMs' subnet: a guest's packets reach the server only
//! through the host's routing, and the server's replies come back only when the host masquerades
//! them (then the server sees `host_ip` as the peer). Everything lives in the namespace and the
//! veth pair, so dropping an [`Outside`] (which stops the server and deletes the namespace)
//! leaves nothing behind.

use banger_host::{HostError, run_root, spawn_root};
use std::ffi::OsString;
use std::net::{Ipv4Addr, SocketAddr, SocketAddrV4, TcpStream};
use std::process::Child;
use std::time::{Duration, Instant};

/// The name of the veth end inside the namespace (names are per namespace, so it never clashes).
const PEER_IF: &str = "outside0";
/// How long [`Outside::create`] waits for the server to accept connections.
const READY_TIMEOUT: Duration = Duration::from_secs(5);
/// How long a stopped server gets between SIGTERM and SIGKILL.
const STOP_GRACE: Duration = Duration::from_secs(2);

/// A network namespace joined to the host by a veth pair, with a TCP server inside it. Dropping
/// it stops the server and removes the namespace and the veth pair.
#[derive(Debug)]
pub struct Outside {
    ns: String,
    host_if: String,
    host_ip: Ipv4Addr,
    port: u16,
    /// The server (or the `sudo` relaying to it); `None` until started.
    server: Option<Child>,
}

impl Outside {
    /// Network namespace `ns` joined to the host by a veth pair (`host_if` on the host with
    /// `host_ip/30`, the peer inside with `host_ip+1/30`, both up), and inside it a TCP server on
    /// `(host_ip+1):port`, started as the `server` argv through `ip netns exec ns …` as root
    /// (directly, or `sudo -n`). Waits (at most 5 s) until the server accepts a connection.
    ///
    /// `host_ip` must be the first host of its /30 (its last two bits `01`). All or nothing: on
    /// any error, whatever was made so far is removed again.
    pub fn create(
        ns: &str,
        host_if: &str,
        host_ip: Ipv4Addr,
        port: u16,
        server: &[OsString],
    ) -> Result<Outside, HostError> {
        if host_ip.octets()[3] & 3 != 1 || server.is_empty() {
            return Err(HostError::Failed {
                cmd: format!("ip netns add {ns}"),
                status: "not run".into(),
                stderr: format!(
                    "the outside network needs the first host of a /30 (last two bits 01; got {host_ip}) and a server command"
                ),
            });
        }
        run_root("ip", ["netns", "add", ns])?;
        // From here on, dropping `outside` undoes everything made so far.
        let mut outside = Outside { ns: ns.into(), host_if: host_if.into(), host_ip, port, server: None };
        outside.plumb()?;
        outside.start(server)?;
        Ok(outside)
    }

    /// The server's address, inside the namespace.
    pub fn server_addr(&self) -> SocketAddrV4 {
        SocketAddrV4::new(self.peer_ip(), self.port)
    }

    /// The host's address on the veth pair: what the server sees as the peer of masqueraded traffic.
    pub fn host_ip(&self) -> Ipv4Addr {
        self.host_ip
    }

    /// The namespace's name.
    pub fn ns(&self) -> &str {
        &self.ns
    }

    /// The server's pid (or that of the `sudo` relaying to it).
    pub fn server_pid(&self) -> Option<u32> {
        self.server.as_ref().map(Child::id)
    }

    /// Leave the namespace, the veth pair and the server in place (for debugging), returning
    /// the commands that remove them.
    pub fn keep(mut self) -> String {
        let server = self.server.take().map(|c| format!("kill {}; ", c.id())).unwrap_or_default();
        let how = format!("{server}ip netns del {}", self.ns);
        std::mem::forget(self);
        how
    }

    fn peer_ip(&self) -> Ipv4Addr {
        Ipv4Addr::from(u32::from(self.host_ip) + 1)
    }

    fn plumb(&self) -> Result<(), HostError> {
        let (ns, host_if) = (self.ns.as_str(), self.host_if.as_str());
        let host_cidr = format!("{}/30", self.host_ip);
        let peer_cidr = format!("{}/30", self.peer_ip());
        run_root("ip", ["link", "add", host_if, "type", "veth", "peer", "name", PEER_IF, "netns", ns])?;
        run_root("ip", ["addr", "add", &host_cidr, "dev", host_if])?;
        run_root("ip", ["link", "set", host_if, "up"])?;
        run_root("ip", ["-n", ns, "addr", "add", &peer_cidr, "dev", PEER_IF])?;
        run_root("ip", ["-n", ns, "link", "set", PEER_IF, "up"])?;
        run_root("ip", ["-n", ns, "link", "set", "lo", "up"])?;
        Ok(())
    }

    fn start(&mut self, server: &[OsString]) -> Result<(), HostError> {
        let mut args: Vec<OsString> = vec!["netns".into(), "exec".into(), self.ns.clone().into()];
        args.extend(server.iter().cloned());
        let cmd = format!("ip {}", args.iter().map(|a| a.to_string_lossy().into_owned()).collect::<Vec<_>>().join(" "));
        let mut child = spawn_root("ip", &args)?;
        // Whatever the server prints (a readiness line, say) is read and dropped, so it can never
        // block on a full pipe; readiness is a connection it accepts.
        if let Some(mut out) = child.stdout.take() {
            std::thread::spawn(move || std::io::copy(&mut out, &mut std::io::sink()));
        }
        self.server = Some(child);
        let addr = SocketAddr::V4(self.server_addr());
        let deadline = Instant::now() + READY_TIMEOUT;
        loop {
            if TcpStream::connect_timeout(&addr, Duration::from_millis(200)).is_ok() {
                return Ok(());
            }
            let child = self.server.as_mut().expect("the server was just started");
            if let Ok(Some(status)) = child.try_wait() {
                self.server = None;
                return Err(HostError::Failed {
                    cmd,
                    status: status.to_string(),
                    stderr: format!("the server exited before accepting connections on {addr}"),
                });
            }
            if Instant::now() >= deadline {
                return Err(HostError::Failed {
                    cmd,
                    status: "not ready".into(),
                    stderr: format!(
                        "the server did not accept connections on {addr} within {}s, so it was stopped",
                        READY_TIMEOUT.as_secs()
                    ),
                });
            }
            std::thread::sleep(Duration::from_millis(50));
        }
    }
}

/// SIGTERM, then SIGKILL after [`STOP_GRACE`]; always reaped. Only ever our own child, by its
/// pid (when it is `sudo`, sudo relays the SIGTERM to the server).
fn stop(child: &mut Child) {
    use nix::sys::signal::{Signal, kill};
    use nix::unistd::Pid;
    if matches!(child.try_wait(), Ok(None)) {
        // Our own unreaped child: its pid cannot have been reused.
        let _ = kill(Pid::from_raw(child.id() as i32), Signal::SIGTERM);
        let deadline = Instant::now() + STOP_GRACE;
        while matches!(child.try_wait(), Ok(None)) && Instant::now() < deadline {
            std::thread::sleep(Duration::from_millis(20));
        }
    }
    let _ = child.kill();
    let _ = child.wait();
}

impl Drop for Outside {
    fn drop(&mut self) {
        if let Some(mut child) = self.server.take() {
            stop(&mut child);
        }
        // Deleting the host end removes the pair at once (the namespace's cleanup is deferred).
        let _ = run_root("ip", ["link", "del", &self.host_if]);
        let _ = run_root("ip", ["netns", "del", &self.ns]);
    }
}

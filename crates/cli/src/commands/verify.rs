//! `banger verify [--nat] [--keep] [--json]`: this installation, end to end, on a throwaway VM.
//!
//! The steps, in order, each printed as it passes with its duration: create → ssh (a marker file
//! under /root, `uname -r`) → stats → stop → set (more memory, a bigger disk) → start → files
//! (marker intact, disk and memory grown) → dns (a real query to bangerd, and `getent` in the
//! guest) → nat (with `--nat`: an [`Outside`] server unreachable, reachable and seeing the host's
//! address once NAT is on, unreachable again once it is off) → delete. The first failure stops
//! the run with `FAIL step: why`, where to look, and the failing command's exit code. The VM and
//! the outside network are removed on success, on failure and on Ctrl-C, unless `--keep`.

use crate::cli::VerifyArgs;
use crate::commands::vm::run_in_guest;
use crate::context::{Ctx, block_on};
use crate::error::{CliError, CliResult};
use banger_api::exit;
use banger_api::request::{CreateVm, SetVm, StopVm};
use banger_api::response::{DaemonStatus, Deleted, DnsStatus, Phase, Vm, VmStats};
use banger_api::routes::{self, vm_path};
use banger_client::{Client, Method};
use banger_config::size::format_size;
use banger_net::outside::Outside;
use std::ffi::OsString;
use std::io::Write;
use std::net::{Ipv4Addr, SocketAddr, UdpSocket};
use std::sync::atomic::{AtomicBool, Ordering};
use std::time::{Duration, Instant};

const MIB: u64 = 1024 * 1024;
const DISK_BEFORE: u64 = 256 * MIB;
const DISK_AFTER: u64 = 512 * MIB;
const MORE_MEMORY_MIB: u32 = 256;
/// Where the marker file goes in the guest.
const MARKER: &str = "/root/.banger-verify";
/// The outside server's port (inside its own namespace, so any port is free).
const OUTSIDE_PORT: u16 = 7007;
/// A guest command's time limit (SSH included).
const GUEST_TIMEOUT: Duration = Duration::from_secs(60);
/// Exit code after Ctrl-C (128 + SIGINT).
const INTERRUPTED: i32 = 130;

static INTERRUPT: AtomicBool = AtomicBool::new(false);

extern "C" fn on_interrupt(_: libc::c_int) {
    INTERRUPT.store(true, Ordering::SeqCst);
}

/// The first Ctrl-C (or SIGTERM) only raises a flag, checked between steps, so the VM is still
/// removed; a second one ends banger at once.
fn catch_interrupts() {
    use nix::sys::signal::{SaFlags, SigAction, SigHandler, SigSet, Signal, sigaction};
    let action = SigAction::new(SigHandler::Handler(on_interrupt), SaFlags::SA_RESETHAND, SigSet::empty());
    for sig in [Signal::SIGINT, Signal::SIGTERM] {
        // SAFETY: the handler only stores to an atomic.
        let _ = unsafe { sigaction(sig, &action) };
    }
}

fn interrupted() -> bool {
    INTERRUPT.load(Ordering::SeqCst)
}

pub fn run(ctx: &Ctx, args: VerifyArgs) -> CliResult {
    let pid = std::process::id();
    let client = ctx.client()?;
    catch_interrupts();
    let mut v = Verify {
        client,
        name: format!("verify-{pid}"),
        json: args.json,
        passed: 0,
        made: false,
        vm: None,
        outside: None,
        marker: random_hex(),
        before: Figures::default(),
    };
    if !v.json {
        println!("verify: checking banger end to end with VM {} (about a minute)", v.name);
    }
    let t0 = Instant::now();
    let result = v.all(args.nat, args.keep);
    let secs = t0.elapsed().as_secs_f64();
    match result {
        Ok(()) => {
            let kept = v.finish(args.keep);
            if v.json {
                emit(&serde_json::json!({
                    "ok": true, "steps": v.passed, "secs": round(secs), "vm": v.name, "kept": kept,
                }));
            } else {
                println!("verify: all {} steps passed in {secs:.1}s", v.passed);
                print_kept(&kept);
            }
            Ok(())
        }
        Err((step, err)) => {
            let (daemon_log, console_log) = v.logs();
            let kept = v.finish(args.keep);
            if v.json {
                emit(&serde_json::json!({
                    "ok": false, "steps": v.passed, "secs": round(secs), "vm": v.name, "failed": step,
                    "error": err.message, "daemon_log": daemon_log, "console_log": console_log, "kept": kept,
                }));
            } else {
                println!("FAIL {step}: {}", err.message);
                if let Some(log) = &daemon_log {
                    println!("  daemon log:  {log}");
                }
                if let Some(log) = &console_log {
                    println!("  console log: {log}");
                }
                print_kept(&kept);
            }
            // The message is printed already: exit with the code alone.
            std::process::exit(err.code)
        }
    }
}

fn print_kept(kept: &[String]) {
    for k in kept {
        println!("kept: {k}");
    }
}

fn emit(value: &serde_json::Value) {
    let mut out = std::io::stdout().lock();
    let _ = writeln!(out, "{value}");
    let _ = out.flush();
}

fn round(secs: f64) -> f64 {
    (secs * 10.0).round() / 10.0
}

/// Figures read in the guest before the VM is grown.
#[derive(Default)]
struct Figures {
    root_size: u64,
    mem_total_kib: u64,
}

struct Verify {
    client: Client,
    name: String,
    json: bool,
    passed: usize,
    /// The VM may exist (its create was sent and it was not deleted since).
    made: bool,
    /// The VM as last seen.
    vm: Option<Vm>,
    outside: Option<Outside>,
    marker: String,
    before: Figures,
}

type Failed = (&'static str, CliError);

fn fail<T>(message: impl Into<String>) -> CliResult<T> {
    Err(CliError::failure(message))
}

impl Verify {
    /// Every step; with `keep` the VM is left in place instead of deleted.
    fn all(&mut self, nat: bool, keep: bool) -> Result<(), Failed> {
        self.step("create", Self::create)?;
        self.step("ssh", Self::ssh)?;
        self.step("stats", Self::stats)?;
        self.step("stop", Self::stop)?;
        self.step("set", Self::set)?;
        self.step("start", Self::start)?;
        self.step("files", Self::files)?;
        self.step("dns", Self::dns)?;
        if nat {
            self.step("nat", Self::nat)?;
        }
        if keep {
            return Ok(());
        }
        self.step("delete", Self::delete)
    }

    /// Run one step, timed; print its line (or JSON object).
    fn step(&mut self, step: &'static str, f: fn(&mut Self) -> CliResult<String>) -> Result<(), Failed> {
        if interrupted() {
            return Err((step, CliError::new(INTERRUPTED, "interrupted (Ctrl-C) before this step")));
        }
        let t0 = Instant::now();
        let mut result = f(self);
        let secs = t0.elapsed().as_secs_f64();
        if interrupted() {
            result = Err(CliError::new(INTERRUPTED, "interrupted (Ctrl-C)"));
        }
        let (ok, detail) = match &result {
            Ok(detail) => (true, detail.clone()),
            Err(e) => (false, e.message.clone()),
        };
        if self.json {
            emit(&serde_json::json!({ "step": step, "ok": ok, "secs": round(secs), "detail": detail }));
        } else if ok {
            println!("  ok  {step:<8} {secs:>6.1}s  {detail}");
            let _ = std::io::stdout().flush();
        }
        match result {
            Ok(_) => {
                self.passed += 1;
                Ok(())
            }
            Err(e) => Err((step, e)),
        }
    }

    fn vm(&self) -> CliResult<&Vm> {
        self.vm.as_ref().ok_or_else(|| CliError::failure("the VM was never created"))
    }

    fn path(&self, route: &str) -> String {
        vm_path(route, &self.name)
    }

    fn guest(&self, script: &str) -> CliResult<String> {
        run_in_guest(self.vm()?, &[script.to_string()], GUEST_TIMEOUT)
    }

    fn create(&mut self) -> CliResult<String> {
        let req = CreateVm {
            name: Some(self.name.clone()),
            image: None,
            memory_mib: None,
            vcpus: None,
            disk_size: Some(DISK_BEFORE),
            nat: false,
            no_start: false,
            ..CreateVm::default()
        };
        self.made = true;
        let vm: Vm = block_on(self.client.post_stream(routes::VMS, &req, |_, _| {}))?;
        let detail = format!(
            "{} at {}, {} MiB, {} ({})",
            vm.name,
            vm.ip,
            vm.memory_mib,
            vm.backend.as_deref().unwrap_or("-"),
            vm.accel.as_deref().unwrap_or("-")
        );
        if vm.state != Phase::Running {
            return fail(format!("VM {} is {} after its create, not running", vm.name, vm.state.as_str()));
        }
        self.vm = Some(vm);
        Ok(detail)
    }

    fn ssh(&mut self) -> CliResult<String> {
        let script = format!(
            "printf %s {m} > {MARKER} && sync && cat {MARKER} && echo && uname -r && {FIGURES}",
            m = self.marker
        );
        let out = self.guest(&script)?;
        let lines: Vec<&str> = out.lines().collect();
        let [marker, kernel, size, mem] = lines[..] else {
            return fail(format!("the guest printed {out:?}, not the marker, kernel release, disk size and memory"));
        };
        if marker != self.marker {
            return fail(format!("the marker file reads {marker:?}, not {:?}", self.marker));
        }
        self.before = figures(size, mem)?;
        Ok(format!(
            "kernel {kernel}, /root {}, {} MiB of memory",
            format_size(self.before.root_size),
            self.before.mem_total_kib / 1024
        ))
    }

    fn stats(&mut self) -> CliResult<String> {
        // The daemon samples the guest in the background: give the first sample a few seconds.
        let deadline = Instant::now() + Duration::from_secs(20);
        let s = loop {
            let s: VmStats = block_on(self.client.get(&self.path(routes::VM_STATS)))?;
            if (s.guest.is_some() && s.process.is_some() && s.network.is_some())
                || Instant::now() >= deadline
                || interrupted()
            {
                break s;
            }
            std::thread::sleep(Duration::from_millis(500));
        };
        let Some(p) = &s.process else { return fail("vm stats has no VMM process for the running VM") };
        if p.rss_bytes == 0 {
            return fail(format!("vm stats says the VMM (pid {}) uses no memory", p.pid));
        }
        let Some(g) = &s.guest else {
            return fail(format!(
                "vm stats has no figures from inside the guest ({})",
                s.guest_error.as_deref().unwrap_or("no reason given")
            ));
        };
        if g.mem_total == 0 {
            return fail("vm stats says the guest has no memory");
        }
        if g.filesystems.len() != 2 {
            let mounts: Vec<&str> = g.filesystems.iter().map(|f| f.mount.as_str()).collect();
            return fail(format!("vm stats lists the filesystems {mounts:?}, not / and /root"));
        }
        let Some(n) = &s.network else { return fail("vm stats has no network counters for the running VM") };
        Ok(format!(
            "VMM RSS {}, guest memory {}, 2 filesystems, {} packets in / {} out",
            format_size(p.rss_bytes),
            format_size(g.mem_total),
            n.rx_packets,
            n.tx_packets
        ))
    }

    fn stop(&mut self) -> CliResult<String> {
        let req = StopVm { timeout_secs: 30 };
        let vm: Vm = block_on(self.client.post_stream(&self.path(routes::VM_STOP), &req, |_, _| {}))?;
        let state = vm.state;
        self.vm = Some(vm);
        if state != Phase::Stopped {
            return fail(format!("VM {} is {} after its stop", self.name, state.as_str()));
        }
        Ok("powered off".into())
    }

    fn set(&mut self) -> CliResult<String> {
        let memory = self.vm()?.memory_mib + MORE_MEMORY_MIB;
        let req = SetVm { memory_mib: Some(memory), disk_size: Some(DISK_AFTER), ..SetVm::default() };
        let vm: Vm = block_on(self.client.stream(Method::PATCH, &self.path(routes::VM), &req, |_, _| {}))?;
        let (got_mem, got_disk) = (vm.memory_mib, vm.disk_size);
        self.vm = Some(vm);
        if got_mem != memory || got_disk != DISK_AFTER {
            return fail(format!(
                "after vm set the VM has {got_mem} MiB and a {} disk, not {memory} MiB and {}",
                format_size(got_disk),
                format_size(DISK_AFTER)
            ));
        }
        Ok(format!("memory {memory} MiB, disk {}", format_size(DISK_AFTER)))
    }

    fn start(&mut self) -> CliResult<String> {
        let vm: Vm = block_on(self.client.post_stream(&self.path(routes::VM_START), &(), |_, _| {}))?;
        let state = vm.state;
        self.vm = Some(vm);
        if state != Phase::Running {
            return fail(format!("VM {} is {} after its start, not running", self.name, state.as_str()));
        }
        Ok("SSH answers".into())
    }

    fn files(&mut self) -> CliResult<String> {
        let out = self.guest(&format!("cat {MARKER} && echo && {FIGURES}"))?;
        let lines: Vec<&str> = out.lines().collect();
        let [marker, size, mem] = lines[..] else {
            return fail(format!("the guest printed {out:?}, not the marker, disk size and memory"));
        };
        if marker != self.marker {
            return fail(format!("after the restart {MARKER} reads {marker:?}, not {:?}", self.marker));
        }
        let now = figures(size, mem)?;
        if now.root_size <= self.before.root_size + 100 * MIB {
            return fail(format!(
                "/root is {} after growing the disk to {} (it was {}): the filesystem was not grown",
                format_size(now.root_size),
                format_size(DISK_AFTER),
                format_size(self.before.root_size)
            ));
        }
        if now.mem_total_kib <= self.before.mem_total_kib {
            return fail(format!(
                "the guest has {} KiB of memory, no more than the {} KiB before vm set",
                now.mem_total_kib, self.before.mem_total_kib
            ));
        }
        Ok(format!(
            "marker intact, /root {} → {}, memory {} → {} MiB",
            format_size(self.before.root_size),
            format_size(now.root_size),
            self.before.mem_total_kib / 1024,
            now.mem_total_kib / 1024
        ))
    }

    fn dns(&mut self) -> CliResult<String> {
        let vm = self.vm()?;
        let fqdn = format!("{}.vm", vm.name);
        let status: DnsStatus = block_on(self.client.get(routes::DNS))?;
        let Some(listen) = status.listen.as_deref() else {
            let why = status.error.unwrap_or_else(|| format!("the dns mode is {:?}, not \"builtin\"", status.mode));
            return Err(CliError::new(exit::CONFLICT, format!("bangerd does not answer for .vm: {why}")));
        };
        let listen: SocketAddr = listen
            .parse()
            .map_err(|_| CliError::failure(format!("dns status gives {listen:?}, which is not an address")))?;
        let ips = dns_query(listen, &fqdn).map_err(|e| CliError::failure(format!("{fqdn} at {listen}: {e}")))?;
        if ips.iter().map(Ipv4Addr::to_string).all(|ip| ip != vm.ip) {
            return fail(format!("bangerd at {listen} answers {fqdn} with {ips:?}, not {}", vm.ip));
        }
        let getent = format!("getent hosts {fqdn}");
        let out = match self.guest(&getent) {
            Ok(out) => out,
            Err(e) => {
                // Say whether it was a moment's failure (it still fails the step).
                std::thread::sleep(Duration::from_secs(1));
                let again = if self.guest(&getent).is_ok() { "succeeded" } else { "failed too" };
                return Err(CliError::new(e.code, format!("{}; a second try 1s later {again}", e.message)));
            }
        };
        if out.split_whitespace().next() != Some(vm.ip.as_str()) {
            return fail(format!("in the guest `getent hosts {fqdn}` prints {:?}, not {}", out.trim(), vm.ip));
        }
        Ok(format!("{fqdn} is {} from the host ({listen}) and in the guest", vm.ip))
    }

    fn nat(&mut self) -> CliResult<String> {
        let pid = std::process::id();
        // A /30 of 198.18.0.0/16 (RFC 2544: for benchmarks, never routed) chosen by our pid.
        let host_ip = Ipv4Addr::from(u32::from(Ipv4Addr::new(198, 18, 0, 0)) + (pid % 16384) * 4 + 1);
        let peer = Ipv4Addr::from(u32::from(host_ip) + 1);
        let exe = std::env::current_exe()
            .map_err(|e| CliError::failure(format!("cannot find the banger executable: {e}")))?;
        let server: Vec<OsString> =
            vec![exe.into(), "internal".into(), "peer-echo".into(), format!("{peer}:{OUTSIDE_PORT}").into()];
        let mut host_if = format!("bv{pid}h");
        host_if.truncate(15);
        let outside = Outside::create(&format!("banger-verify-{pid}"), &host_if, host_ip, OUTSIDE_PORT, &server)
            .map_err(|e| CliError::failure(format!("cannot make the outside network: {e}")))?;
        let addr = outside.server_addr();
        self.outside = Some(outside);

        if let Some(line) = self.reach(addr)? {
            return fail(format!("without NAT the guest reached {addr} (it saw {line}); it should not"));
        }
        self.set_nat(true)?;
        let Some(seen) = self.reach(addr)? else {
            return fail(format!("with NAT on the guest cannot reach {addr}"));
        };
        if seen != host_ip.to_string() {
            return fail(format!("with NAT on, {addr} saw the guest as {seen}, not as the host's {host_ip}"));
        }
        self.set_nat(false)?;
        if let Some(line) = self.reach(addr)? {
            return fail(format!("after NAT was turned off the guest still reached {addr} (it saw {line})"));
        }
        self.outside = None;
        Ok(format!("{addr} unreachable, reachable as {host_ip} with NAT, unreachable again"))
    }

    fn set_nat(&mut self, on: bool) -> CliResult {
        let req = SetVm { nat: Some(on), ..SetVm::default() };
        let vm: Vm = block_on(self.client.stream(Method::PATCH, &self.path(routes::VM), &req, |_, _| {}))?;
        let nat = vm.nat;
        self.vm = Some(vm);
        if nat != on {
            return fail(format!("after vm set --{}nat, NAT is still {}", if on { "" } else { "no-" }, !on));
        }
        Ok(())
    }

    /// Whether the guest can open a TCP connection to `addr` (within 3 s): the first line the
    /// server sends, if it can. An SSH failure is an error, not "unreachable".
    fn reach(&self, addr: std::net::SocketAddrV4) -> CliResult<Option<String>> {
        let (ip, port) = (addr.ip(), addr.port());
        let script = format!(
            "if line=$(timeout 3 bash -c 'exec 3<>/dev/tcp/{ip}/{port} && head -1 <&3' 2>/dev/null); \
             then echo \"reached $line\"; else echo unreachable; fi"
        );
        let out = self.guest(&script)?;
        match out.trim().split_once(' ') {
            Some(("reached", line)) => Ok(Some(line.trim().to_string())),
            _ if out.trim() == "unreachable" => Ok(None),
            _ => fail(format!("the reachability check in the guest printed {:?}", out.trim())),
        }
    }

    fn delete(&mut self) -> CliResult<String> {
        let d: Deleted = block_on(self.client.delete(&format!("{}?force=true", self.path(routes::VM))))?;
        self.made = false;
        Ok(format!("{} and its disks are gone", d.name))
    }

    /// Where to look after a failure: the daemon's log and the VM's console log.
    fn logs(&mut self) -> (Option<String>, Option<String>) {
        let daemon = block_on(self.client.get::<DaemonStatus>(routes::DAEMON_STATUS))
            .ok()
            .map(|s| s.log_file.display().to_string());
        if let Ok(vm) = block_on(self.client.get::<Vm>(&self.path(routes::VM))) {
            self.vm = Some(vm);
        }
        let console = self.vm.as_ref().map(|vm| vm.console_log.display().to_string());
        (daemon, console)
    }

    /// Remove what is left (or keep it, with `keep`): what was kept, with how to remove it.
    fn finish(&mut self, keep: bool) -> Vec<String> {
        let mut kept = Vec::new();
        match self.outside.take() {
            Some(outside) if keep => {
                let ns = outside.ns().to_string();
                kept.push(format!("the outside network {ns}; remove it with `{}`", outside.keep()));
            }
            // Dropping it stops its server and removes the namespace.
            other => drop(other),
        }
        if self.made {
            if keep {
                kept.push(format!("VM {0}; remove it with `banger vm delete --force {0}`", self.name));
            } else {
                let path = format!("{}?force=true", self.path(routes::VM));
                match block_on(self.client.delete::<Deleted>(&path)) {
                    Ok(_) => {}
                    Err(e) if e.exit_code() == exit::NOT_FOUND => {}
                    Err(e) => kept.push(format!(
                        "VM {0}, which could not be deleted ({e}); remove it with `banger vm delete --force {0}`",
                        self.name
                    )),
                }
                self.made = false;
            }
        }
        kept
    }
}

/// The guest's `/root` size in bytes and MemTotal in KiB, one per line.
const FIGURES: &str = "df -B1 --output=size /root | tail -1 && awk '/^MemTotal:/ {print $2}' /proc/meminfo";

fn figures(size: &str, mem: &str) -> CliResult<Figures> {
    match (size.trim().parse(), mem.trim().parse()) {
        (Ok(root_size), Ok(mem_total_kib)) => Ok(Figures { root_size, mem_total_kib }),
        _ => fail(format!("the guest printed {size:?} and {mem:?}, not a disk size and a memory size")),
    }
}

/// 16 random hex digits (from the kernel's random source).
fn random_hex() -> String {
    let mut bytes = [0u8; 8];
    if let Ok(mut f) = std::fs::File::open("/dev/urandom") {
        let _ = std::io::Read::read_exact(&mut f, &mut bytes);
    }
    bytes.iter().map(|b| format!("{b:02x}")).collect()
}

/// Ask `server` for `name`'s A records over UDP (three tries, a second each).
pub fn dns_query(server: SocketAddr, name: &str) -> Result<Vec<Ipv4Addr>, String> {
    let bind: SocketAddr = if server.is_ipv4() { "0.0.0.0:0" } else { "[::]:0" }.parse().expect("a valid address");
    let socket = UdpSocket::bind(bind).map_err(|e| format!("cannot open a UDP socket: {e}"))?;
    socket.connect(server).map_err(|e| format!("cannot send to {server}: {e}"))?;
    socket.set_read_timeout(Some(Duration::from_secs(1))).map_err(|e| e.to_string())?;
    let nanos =
        std::time::SystemTime::now().duration_since(std::time::UNIX_EPOCH).map(|d| d.subsec_nanos()).unwrap_or(0);
    let id = (std::process::id() as u16) ^ (nanos as u16);
    let query = a_query(id, name);
    let mut buf = [0u8; 1500];
    for _ in 0..3 {
        socket.send(&query).map_err(|e| format!("cannot send the query: {e}"))?;
        match socket.recv(&mut buf) {
            Ok(n) => return a_answers(id, &buf[..n]),
            Err(e) if matches!(e.kind(), std::io::ErrorKind::WouldBlock | std::io::ErrorKind::TimedOut) => continue,
            Err(e) => return Err(format!("no answer: {e}")),
        }
    }
    Err("no answer within 3 s".into())
}

/// A standard query (recursion desired) for `name`'s A record, with message id `id`.
pub fn a_query(id: u16, name: &str) -> Vec<u8> {
    let mut q = Vec::with_capacity(18 + name.len());
    q.extend(id.to_be_bytes());
    // Flags: RD. One question, no other records.
    q.extend([0x01, 0x00, 0, 1, 0, 0, 0, 0, 0, 0]);
    for label in name.trim_end_matches('.').split('.') {
        q.push(label.len() as u8);
        q.extend(label.as_bytes());
    }
    q.push(0);
    // QTYPE A, QCLASS IN.
    q.extend([0, 1, 0, 1]);
    q
}

/// The IPv4 addresses in the answer section of `reply` to query `id`; an error for anything but
/// a NOERROR response to it.
pub fn a_answers(id: u16, reply: &[u8]) -> Result<Vec<Ipv4Addr>, String> {
    let short = || "the reply is cut short".to_string();
    let u16_at = |i: usize| reply.get(i..i + 2).map(|b| u16::from_be_bytes([b[0], b[1]])).ok_or_else(short);
    if u16_at(0)? != id {
        return Err("the reply answers another query".into());
    }
    let flags = u16_at(2)?;
    if flags & 0x8000 == 0 {
        return Err("the reply is a query, not a response".into());
    }
    match flags & 0xf {
        0 => {}
        2 => return Err("the server answered SERVFAIL".into()),
        3 => return Err("the server answered NXDOMAIN (no such name)".into()),
        5 => return Err("the server answered REFUSED".into()),
        code => return Err(format!("the server answered with error code {code}")),
    }
    let (questions, answers) = (u16_at(4)?, u16_at(6)?);
    let mut i = 12;
    for _ in 0..questions {
        i = skip_name(reply, i).ok_or_else(short)? + 4;
    }
    let mut ips = Vec::new();
    for _ in 0..answers {
        i = skip_name(reply, i).ok_or_else(short)?;
        let (rtype, class, len) = (u16_at(i)?, u16_at(i + 2)?, u16_at(i + 8)? as usize);
        let data = reply.get(i + 10..i + 10 + len).ok_or_else(short)?;
        if (rtype, class, len) == (1, 1, 4) {
            ips.push(Ipv4Addr::new(data[0], data[1], data[2], data[3]));
        }
        i += 10 + len;
    }
    Ok(ips)
}

/// The offset just past the (possibly compressed) domain name at `i`.
fn skip_name(msg: &[u8], mut i: usize) -> Option<usize> {
    loop {
        let len = *msg.get(i)?;
        match len {
            0 => return Some(i + 1),
            l if l & 0xc0 == 0xc0 => return msg.get(i + 1).map(|_| i + 2),
            l => i += 1 + l as usize,
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn the_query_is_a_standard_a_query() {
        assert_eq!(
            a_query(0x1234, "web.vm"),
            [&[0x12, 0x34, 1, 0, 0, 1, 0, 0, 0, 0, 0, 0][..], b"\x03web\x02vm\x00", &[0, 1, 0, 1]].concat()
        );
    }

    #[test]
    fn bad_replies_are_errors_not_panics() {
        let q = a_query(7, "web.vm");
        assert!(a_answers(7, &q).unwrap_err().contains("not a response"));
        assert!(a_answers(8, &q).unwrap_err().contains("another query"));
        for n in 0..q.len() {
            let mut r = q[..n].to_vec();
            if r.len() > 2 {
                r[2] |= 0x80;
            }
            let _ = a_answers(7, &r);
        }
        // An answer claimed but missing.
        let mut r = q.clone();
        r[2] |= 0x80;
        r[7] = 1;
        assert!(a_answers(7, &r).unwrap_err().contains("cut short"));
    }

    #[test]
    fn answers_from_banger_dns() {
        let rt = tokio::runtime::Builder::new_multi_thread().worker_threads(1).enable_all().build().unwrap();
        let records = banger_dns::Records::new();
        records.set("web", Ipv4Addr::new(10, 213, 70, 2));
        let server = banger_dns::Server::new(records, vec![]);
        let addr = rt.block_on(server.listen("127.0.0.1:0".parse().unwrap(), banger_dns::Role::Host)).unwrap();
        assert_eq!(dns_query(addr, "web.vm").unwrap(), [Ipv4Addr::new(10, 213, 70, 2)]);
        assert_eq!(dns_query(addr, "WEB.vm.").unwrap(), [Ipv4Addr::new(10, 213, 70, 2)]);
        assert!(dns_query(addr, "nope.vm").unwrap_err().contains("NXDOMAIN"));
        assert!(dns_query(addr, "example.com").unwrap_err().contains("REFUSED"));
        drop(server);
    }
}

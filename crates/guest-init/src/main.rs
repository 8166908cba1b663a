//! `banger-init`: PID 1 of banger's guest initrd.
//!
//! 1. mounts /proc, /sys, /dev (devtmpfs);
//! 2. loads every module listed in `/lib/modules/$(uname -r)/modules.dep` (deps first, finit_module);
//! 3. waits (bounded) for the base, CoW and work disks;
//! 4. creates `banger-root` = dm-snapshot(base, cow) through /dev/mapper/control
//!    (no CoW disk: mounts the base directly, read-write if possible);
//! 5. mounts it ext4 at /newroot and the work disk at /newroot/root;
//! 6. applies a static `ip=` and the hostname (the kernel has no IP_PNP);
//! 7. moves /dev /proc /sys, switches root, execs the real init with the original arguments.
//!
//! Any fatal error prints one `banger-init: FATAL: ...` line on the console and powers off.
//! Kernel parameters: `banger.base=`, `banger.cow=`, `banger.work=` (`none` disables), `banger.key=TYPE:BASE64`, `banger.wait=SECS`,
//! `banger.debug`, `init=`, `ip=`.

mod cmdline;
mod dm;
mod modules;
mod net;

use std::ffi::{CString, OsString};
use std::fs;
use std::io::{self, Write};
use std::os::unix::ffi::OsStringExt;
use std::os::unix::fs::PermissionsExt;
use std::path::Path;
use std::time::{Duration, Instant};

const NEWROOT: &str = "/newroot";
const DM_NAME: &str = "banger-root";

fn uptime() -> String {
    fs::read_to_string("/proc/uptime")
        .ok()
        .and_then(|s| s.split_whitespace().next().map(str::to_string))
        .unwrap_or_else(|| "?".into())
}

fn log(msg: &str) {
    let line = format!("banger-init [{}]: {msg}\n", uptime());
    let _ = io::stderr().write_all(line.as_bytes());
}

fn fatal(msg: &str) -> ! {
    let line = format!("banger-init: FATAL: {msg}\nbanger-init: emergency: cannot boot, powering off\n");
    if io::stderr().write_all(line.as_bytes()).is_err()
        && let Ok(mut c) = fs::OpenOptions::new().write(true).open("/dev/console")
    {
        let _ = c.write_all(line.as_bytes());
    }
    // SAFETY: plain syscalls; we are PID 1 and about to stop the machine.
    unsafe {
        libc::sync();
        libc::sleep(1);
        libc::reboot(libc::RB_POWER_OFF);
        libc::reboot(libc::RB_HALT_SYSTEM);
    }
    loop {
        // SAFETY: trivial.
        unsafe { libc::pause() };
    }
}

fn cstr(s: &str) -> CString {
    CString::new(s).expect("no NUL in path")
}

fn mount(src: &str, target: &str, fstype: &str, flags: libc::c_ulong, data: &str) -> io::Result<()> {
    let (s, t, f, d) = (cstr(src), cstr(target), cstr(fstype), cstr(data));
    // SAFETY: valid NUL-terminated strings.
    let r = unsafe {
        libc::mount(
            s.as_ptr(),
            t.as_ptr(),
            if fstype.is_empty() { std::ptr::null() } else { f.as_ptr() },
            flags,
            if data.is_empty() { std::ptr::null() } else { d.as_ptr() as *const libc::c_void },
        )
    };
    if r < 0 { Err(io::Error::last_os_error()) } else { Ok(()) }
}

fn ensure_console() {
    // If the kernel could not give us a console (no /dev/console in the initramfs), open it now.
    // SAFETY: fcntl on fd 2 just probes validity.
    if unsafe { libc::fcntl(2, libc::F_GETFD) } >= 0 {
        return;
    }
    let p = cstr("/dev/console");
    // SAFETY: plain open/dup2.
    unsafe {
        let fd = libc::open(p.as_ptr(), libc::O_RDWR);
        if fd >= 0 {
            for t in 0..3 {
                libc::dup2(fd, t);
            }
            if fd > 2 {
                libc::close(fd);
            }
        }
    }
}

fn mount_early() {
    for d in ["/proc", "/sys", "/dev", NEWROOT] {
        let _ = fs::create_dir_all(d);
    }
    let r = mount("proc", "/proc", "proc", libc::MS_NOSUID | libc::MS_NODEV | libc::MS_NOEXEC, "")
        .and_then(|_| mount("sysfs", "/sys", "sysfs", libc::MS_NOSUID | libc::MS_NODEV | libc::MS_NOEXEC, ""))
        .and_then(|_| match mount("devtmpfs", "/dev", "devtmpfs", libc::MS_NOSUID, "mode=0755") {
            Err(e) if e.raw_os_error() == Some(libc::EBUSY) => Ok(()), // kernel automounted it
            r => r,
        });
    ensure_console();
    if let Err(e) = r {
        fatal(&format!("mounting /proc, /sys or /dev failed: {e}"));
    }
}

fn kernel_release() -> String {
    // SAFETY: utsname is plain data.
    let mut u: libc::utsname = unsafe { std::mem::zeroed() };
    // SAFETY: valid pointer.
    unsafe { libc::uname(&mut u) };
    let bytes: Vec<u8> = u.release.iter().take_while(|&&c| c != 0).map(|&c| c as u8).collect();
    String::from_utf8_lossy(&bytes).into_owned()
}

fn load_modules(debug: bool) {
    let dir = format!("/lib/modules/{}", kernel_release());
    let dep = match fs::read_to_string(format!("{dir}/modules.dep")) {
        Ok(s) => s,
        Err(e) => {
            log(&format!("no {dir}/modules.dep ({e}); loading no modules"));
            return;
        }
    };
    for m in modules::load_order(&modules::parse_dep(&dep)) {
        let path = format!("{dir}/{m}");
        let f = match fs::File::open(&path) {
            Ok(f) => f,
            Err(e) => {
                log(&format!("cannot open module {path}: {e}"));
                continue;
            }
        };
        let empty = cstr("");
        // SAFETY: fd valid, params is an empty C string.
        let r =
            unsafe { libc::syscall(libc::SYS_finit_module, std::os::fd::AsRawFd::as_raw_fd(&f), empty.as_ptr(), 0) };
        if r < 0 {
            let e = io::Error::last_os_error();
            if e.raw_os_error() != Some(libc::EEXIST) {
                log(&format!("loading {m} failed: {e}"));
            }
        } else if debug {
            log(&format!("loaded {m}"));
        }
    }
}

fn wait_for(path: &str, deadline: Instant) -> bool {
    loop {
        if Path::new(path).exists() {
            return true;
        }
        if Instant::now() >= deadline {
            return false;
        }
        std::thread::sleep(Duration::from_millis(20));
    }
}

fn sectors(dev: &str) -> io::Result<u64> {
    let name = Path::new(dev).file_name().and_then(|n| n.to_str()).unwrap_or("");
    let s = fs::read_to_string(format!("/sys/class/block/{name}/size"))?;
    s.trim().parse().map_err(|_| io::Error::new(io::ErrorKind::InvalidData, "bad size in sysfs"))
}

fn setup_root(cfg: &cmdline::Config) {
    let start = Instant::now();
    if !wait_for(&cfg.base, start + Duration::from_secs(cfg.wait_secs)) {
        fatal(&format!("base disk {} did not appear within {} s", cfg.base, cfg.wait_secs));
    }
    // The other disks are probed right after the base; give them a short grace period.
    let grace = Instant::now() + Duration::from_secs(5);
    let have_cow = cfg.cow != "none" && wait_for(&cfg.cow, grace);
    let have_work = cfg.work != "none" && wait_for(&cfg.work, grace);

    if have_cow {
        let n = sectors(&cfg.base).unwrap_or_else(|e| fatal(&format!("size of {}: {e}", cfg.base)));
        let t = dm::snapshot_target(n, &cfg.base, &cfg.cow);
        let dev = dm::create_device(DM_NAME, &[t])
            .unwrap_or_else(|e| fatal(&format!("dm-snapshot {} + {}: {e}", cfg.base, cfg.cow)));
        let node = format!("/dev/{DM_NAME}");
        let c = cstr(&node);
        // SAFETY: mknod with a valid path.
        let r = unsafe { libc::mknod(c.as_ptr(), libc::S_IFBLK | 0o600, dev as libc::dev_t) };
        if r < 0 && io::Error::last_os_error().raw_os_error() != Some(libc::EEXIST) {
            fatal(&format!("mknod {node}: {}", io::Error::last_os_error()));
        }
        if let Err(e) = mount(&node, NEWROOT, "ext4", 0, "") {
            fatal(&format!("mount {node} (snapshot of {} with CoW {}) on {NEWROOT}: {e}", cfg.base, cfg.cow));
        }
        log(&format!("root = snapshot({}, {})", cfg.base, cfg.cow));
    } else {
        log(&format!("no CoW disk {}: mounting {} directly", cfg.cow, cfg.base));
        if let Err(e) = mount(&cfg.base, NEWROOT, "ext4", 0, "") {
            log(&format!("read-write mount of {} failed ({e}); trying read-only", cfg.base));
            if let Err(e) = mount(&cfg.base, NEWROOT, "ext4", libc::MS_RDONLY, "") {
                fatal(&format!("mount {} on {NEWROOT}: {e}", cfg.base));
            }
        }
    }
    if have_work {
        let target = format!("{NEWROOT}/root");
        let _ = fs::create_dir_all(&target);
        if let Err(e) = mount(&cfg.work, &target, "ext4", 0, "") {
            log(&format!("WARNING: work disk {} not mounted on /root: {e}", cfg.work));
        }
    } else if cfg.work != "none" {
        log(&format!("WARNING: work disk {} not present; /root lives on the CoW layer", cfg.work));
    }
}

fn setup_network(cfg: &cmdline::Config) {
    let Some(ip) = &cfg.ip else { return };
    let dev = format!("/sys/class/net/{}", ip.device);
    if !wait_for(&dev, Instant::now() + Duration::from_secs(5)) {
        log(&format!("WARNING: network device {} did not appear", ip.device));
        return;
    }
    if let Err(e) = net::apply(ip) {
        log(&format!("WARNING: configuring {} from ip= failed: {e}", ip.device));
    }
    if !ip.hostname.is_empty() {
        // SAFETY: pointer/len from a live String.
        unsafe { libc::sethostname(ip.hostname.as_ptr() as *const libc::c_char, ip.hostname.len()) };
        let hosts = format!("{NEWROOT}/etc/hosts");
        let cur = fs::read_to_string(&hosts).unwrap_or_default();
        let line = format!("127.0.1.1\t{}", ip.hostname);
        if !cur.lines().any(|l| l.trim() == line) {
            let _ = fs::write(&hosts, format!("{cur}{line}\n"));
        }
    }
    if !ip.dns.is_empty() {
        let rc = format!("{NEWROOT}/etc/resolv.conf");
        let _ = fs::remove_file(&rc);
        let body: String = ip.dns.iter().map(|d| format!("nameserver {d}\n")).collect();
        let _ = fs::write(&rc, body);
    }
}

/// Root logs in with the owner's key only: the image's `authorized_keys.d/root` (which may hold a
/// key every user of the same bundle has) is replaced, on the copy-on-write layer, at every boot.
fn install_key(cfg: &cmdline::Config) {
    let Some(key) = &cfg.key else { return };
    let dir = format!("{NEWROOT}/etc/ssh/authorized_keys.d");
    let file = format!("{dir}/root");
    let tmp = format!("{dir}/.root.banger");
    let written = fs::create_dir_all(&dir)
        .and_then(|()| fs::write(&tmp, format!("{key} banger\n")))
        .and_then(|()| fs::set_permissions(&tmp, fs::Permissions::from_mode(0o644)))
        .and_then(|()| fs::rename(&tmp, &file));
    match written {
        Ok(()) => log("root's SSH key: the owner's"),
        Err(e) => log(&format!("WARNING: cannot write {file}: {e}")),
    }
}

fn switch_root(cfg: &cmdline::Config) -> ! {
    for d in ["dev", "proc", "sys"] {
        let target = format!("{NEWROOT}/{d}");
        let _ = fs::create_dir_all(&target);
        if let Err(e) = mount(&format!("/{d}"), &target, "", libc::MS_MOVE, "") {
            fatal(&format!("moving /{d} to {target}: {e}"));
        }
    }
    let init_in_root = format!("{NEWROOT}{}", cfg.init);
    // symlink_metadata: /sbin/init is usually an absolute symlink into the new root.
    if fs::symlink_metadata(&init_in_root).is_err() {
        fatal(&format!("{} not found in the root filesystem", cfg.init));
    }
    let nr = cstr(NEWROOT);
    let dot = cstr(".");
    let slash = cstr("/");
    // SAFETY: classic switch_root sequence on valid C strings.
    unsafe {
        if libc::chdir(nr.as_ptr()) < 0 {
            fatal(&format!("chdir {NEWROOT}: {}", io::Error::last_os_error()));
        }
        if libc::mount(dot.as_ptr(), slash.as_ptr(), std::ptr::null(), libc::MS_MOVE, std::ptr::null()) < 0 {
            fatal(&format!("moving {NEWROOT} to /: {}", io::Error::last_os_error()));
        }
        if libc::chroot(dot.as_ptr()) < 0 {
            fatal(&format!("chroot: {}", io::Error::last_os_error()));
        }
        libc::chdir(slash.as_ptr());
    }
    let mut args: Vec<CString> = vec![cstr(&cfg.init)];
    args.extend(std::env::args_os().skip(1).map(|a: OsString| CString::new(a.into_vec()).unwrap_or_else(|_| cstr(""))));
    let mut argv: Vec<*const libc::c_char> = args.iter().map(|a| a.as_ptr()).collect();
    argv.push(std::ptr::null());
    let prog = cstr(&cfg.init);
    // SAFETY: argv is NULL-terminated and outlives the call.
    unsafe { libc::execv(prog.as_ptr(), argv.as_ptr()) };
    fatal(&format!("exec {}: {}", cfg.init, io::Error::last_os_error()));
}

fn main() {
    // SAFETY: getpid is trivial.
    if unsafe { libc::getpid() } != 1 {
        eprintln!("banger-init: must run as PID 1 from the initrd");
        std::process::exit(2);
    }
    mount_early();
    let cmdline = fs::read_to_string("/proc/cmdline").unwrap_or_default();
    let cfg = cmdline::parse(&cmdline);
    log("starting");
    load_modules(cfg.debug);
    setup_root(&cfg);
    setup_network(&cfg);
    install_key(&cfg);
    log(&format!("switching root, exec {}", cfg.init));
    switch_root(&cfg);
}

//! Whether KVM runs guests here, told as one of three outcomes ([`Verdict`]), each with what it
//! rests on. `/dev/kvm` existing proves nothing (nested schemes exist that open fine and then
//! fail on the first unusual instruction), so a verdict of "runs" comes only from a real boot: the
//! VMM that will run the guests ([`crate::qemu::probe_kvm`], [`crate::firecracker::probe_kvm`])
//! boots the guest kernel with a made-up init and the console is watched for the kernel reaching
//! it.

use serde::{Deserialize, Serialize};
use std::path::Path;
use std::time::{Duration, Instant};

/// What a KVM probe found.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
#[serde(tag = "verdict", rename_all = "snake_case")]
pub enum Verdict {
    /// A guest kernel booted to its init under KVM.
    Runs,
    /// KVM is there, but a guest could not run: what the probe saw (the VMM's error, the last
    /// console line).
    Broken { evidence: String },
    /// Nothing could be tried: why, and what would fix it.
    Unprobed { why: String, fix: String },
}

impl Verdict {
    pub fn runs(&self) -> bool {
        matches!(self, Verdict::Runs)
    }

    /// One sentence for logs, status and errors.
    pub fn describe(&self) -> String {
        match self {
            Verdict::Runs => "KVM runs guests".into(),
            Verdict::Broken { evidence } => format!("KVM is present but cannot run guests ({evidence})"),
            Verdict::Unprobed { why, fix } => format!("KVM could not be probed: {why}; {fix}"),
        }
    }
}

/// The probe boot's init (`rdinit=`): a file that does not exist, so the kernel, having booted,
/// goes no further than looking for init ([`REACHED_INIT`] tells it has) and starts nothing.
pub const PROBE_INIT: &str = "/banger-kvm-probe";

/// What the kernel prints once it has booted as far as starting init: running one, or (the probe's
/// init does not exist, so a Linux kernel falls back to mounting a root filesystem the probe does
/// not give it) failing to. Each comes after every driver has been set up.
pub const REACHED_INIT: &[&str] = &[
    "Run /banger-kvm-probe as init process",
    "Run /init as init process",
    "VFS: Unable to mount root fs",
    "Please append a correct \"root=\" boot option",
    "No working init found",
];

/// Whether this process may use `dev` (`/dev/kvm`); an [`Verdict::Unprobed`] saying what to do
/// when it may not.
pub fn access(dev: &Path) -> Result<(), Verdict> {
    match std::fs::OpenOptions::new().read(true).write(true).open(dev) {
        Ok(_) => Ok(()),
        Err(e) if e.kind() == std::io::ErrorKind::NotFound => Err(Verdict::Unprobed {
            why: format!("{} does not exist", dev.display()),
            fix: "enable virtualization in the firmware and load kvm_intel or kvm_amd (`modprobe kvm_intel`), or \
                  use vmm = \"qemu\" (software emulation)"
                .into(),
        }),
        Err(e) if e.kind() == std::io::ErrorKind::PermissionDenied => Err(Verdict::Unprobed {
            why: format!("this user may not open {} ({e})", dev.display()),
            fix: {
                use std::os::unix::fs::MetadataExt;
                let meta = std::fs::metadata(dev).ok();
                access_fix(dev, group_of(dev), meta.map(|m| (m.gid(), m.mode())))
            },
        }),
        Err(e) => Err(Verdict::Unprobed {
            why: format!("{} cannot be opened: {e}", dev.display()),
            fix: "check the device (`ls -l /dev/kvm`)".into(),
        }),
    }
}

/// What a probe needs before it can boot anything: access to `dev` and the VMM's binary (`what`,
/// installed as `fix` says).
pub fn preflight(dev: &Path, bin: &Path, what: &str, fix: &str) -> Result<(), Verdict> {
    access(dev)?;
    if !bin.is_file() {
        return Err(Verdict::Unprobed { why: format!("{what} ({}) is not installed", bin.display()), fix: fix.into() });
    }
    Ok(())
}

/// What lets a user open `dev`: membership of its group when that group may read and write it;
/// otherwise (root's group, or no group access, as some hosts leave it) first giving it to group
/// `kvm`, as udev does on most distributions.
fn access_fix(dev: &Path, group: Option<String>, gid_mode: Option<(u32, u32)>) -> String {
    let group_rw = gid_mode.is_some_and(|(gid, mode)| gid != 0 && mode & 0o060 == 0o060);
    match group {
        Some(g) if group_rw => {
            format!("add the user to the group that owns it (`sudo usermod -aG {g} $USER`, then log in again)")
        }
        _ => format!(
            "{dev} is not read-write for a group users can join: give it to group kvm (`sudo groupadd -f kvm && \
             sudo chgrp kvm {dev} && sudo chmod 660 {dev}`; to keep it, the udev rule `KERNEL==\"kvm\", \
             GROUP=\"kvm\", MODE=\"0660\"`), then `sudo usermod -aG kvm $USER` and log in again",
            dev = dev.display()
        ),
    }
}

fn group_of(dev: &Path) -> Option<String> {
    use std::os::unix::fs::MetadataExt;
    let gid = std::fs::metadata(dev).ok()?.gid();
    let groups = std::fs::read_to_string("/etc/group").ok()?;
    groups.lines().find_map(|l| {
        let mut f = l.split(':');
        let name = f.next()?;
        (f.nth(1)?.parse::<u32>().ok()? == gid).then(|| name.to_string())
    })
}

/// Watch a probe boot's console until the kernel reaches init ([`REACHED_INIT`]: [`Verdict::Runs`]),
/// the VMM exits (`exited` says how), the kernel stays silent past a few seconds, or `timeout`.
pub fn watch(console: &Path, mut exited: impl FnMut() -> Option<String>, timeout: Duration) -> Verdict {
    let start = Instant::now();
    let banner_by = (timeout / 2).min(Duration::from_secs(5));
    loop {
        let all = std::fs::read_to_string(console).unwrap_or_default();
        // Only what the guest kernel printed counts: the console file may also hold the VMM's
        // own output (Firecracker logs there until its logger is set), paths included.
        let guest = all.find("Linux version").map(|i| &all[i..]);
        // The kernel got as far as looking for init: guest code runs fine under this KVM.
        if guest.is_some_and(|g| REACHED_INIT.iter().any(|m| g.contains(m))) {
            return Verdict::Runs;
        }
        let seen = || match guest {
            Some(g) => g
                .lines()
                .rev()
                .map(str::trim)
                .find(|l| !l.is_empty())
                .map(|l| format!("its last console line: {l:?}"))
                .unwrap_or_default(),
            None => "the guest kernel printed nothing".into(),
        };
        if let Some(how) = exited() {
            return Verdict::Broken { evidence: format!("the VMM exited ({how}); {}", seen()) };
        }
        let elapsed = start.elapsed();
        // Under a working KVM the kernel banner appears within a second; a hang before it need
        // not wait for the full timeout.
        if (guest.is_none() && elapsed >= banner_by) || elapsed >= timeout {
            return Verdict::Broken {
                evidence: format!("the guest kernel did not reach init within {}s; {}", elapsed.as_secs(), seen()),
            };
        }
        std::thread::sleep(Duration::from_millis(50));
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn no_access_says_which_group_to_join_or_how_to_give_the_device_one() {
        let dev = Path::new("/dev/kvm");
        let fix = access_fix(dev, Some("kvm".into()), Some((108, 0o20660)));
        assert!(fix.contains("usermod -aG kvm") && !fix.contains("chgrp"), "{fix}");
        // root:root 0600, as on the development machines: joining group root is no answer.
        for (group, gm) in
            [(Some("root".to_string()), Some((0, 0o20600))), (Some("kvm".into()), Some((108, 0o20600))), (None, None)]
        {
            let fix = access_fix(dev, group, gm);
            assert!(
                fix.contains("chgrp kvm /dev/kvm") && fix.contains("usermod -aG kvm") && !fix.contains("-aG root"),
                "{fix}"
            );
        }
    }

    #[test]
    fn access_says_what_is_missing_and_how_to_fix_it() {
        let tmp = tempfile::tempdir().unwrap();
        let Err(Verdict::Unprobed { why, fix }) = access(&tmp.path().join("kvm")) else { panic!() };
        assert!(why.contains("does not exist") && fix.contains("modprobe"), "{why}; {fix}");
        let dev = tmp.path().join("ro");
        std::fs::write(&dev, b"").unwrap();
        std::fs::set_permissions(&dev, std::os::unix::fs::PermissionsExt::from_mode(0o000)).unwrap();
        // Root opens anything: only a normal user sees the refusal.
        if nix::unistd::geteuid().is_root() {
            assert!(access(&dev).is_ok());
        } else {
            let Err(Verdict::Unprobed { fix, .. }) = access(&dev) else { panic!() };
            assert!(fix.contains("usermod -aG"), "{fix}");
        }
    }

    #[test]
    fn the_console_decides() {
        let tmp = tempfile::tempdir().unwrap();
        let console = tmp.path().join("c");
        std::fs::write(&console, "Linux version 6.1\nRun /banger-kvm-probe as init process\n").unwrap();
        assert_eq!(watch(&console, || None, Duration::from_secs(2)), Verdict::Runs);
        std::fs::write(&console, "Linux version 6.1\nKVM internal error. Suberror: 1\n").unwrap();
        let v = watch(&console, || Some("exit status: 1".into()), Duration::from_secs(2));
        assert_eq!(
            v,
            Verdict::Broken {
                evidence: "the VMM exited (exit status: 1); its last console line: \"KVM internal error. Suberror: 1\""
                    .into()
            }
        );
        std::fs::write(&console, "").unwrap();
        let Verdict::Broken { evidence } = watch(&console, || None, Duration::from_millis(300)) else { panic!() };
        assert!(evidence.contains("did not reach init") && evidence.contains("printed nothing"), "{evidence}");
        // The VMM's own lines (a path with the probe's name in it) are not the guest's.
        std::fs::write(&console, "[fc_api] PUT /logger {\"log_path\":\"/tmp/banger-kvm-probe-1/x.log\"}\n").unwrap();
        let Verdict::Broken { evidence } = watch(&console, || None, Duration::from_millis(300)) else {
            panic!("the VMM's output mentioning the probe is not a guest reaching init")
        };
        assert!(evidence.contains("printed nothing"), "{evidence}");
        // What Debian's 6.1 kernel prints when the probe's init is not in its initrd (seen under
        // QEMU): it looked for init, so guest code runs.
        std::fs::write(
            &console,
            "[    0.000000] Linux version 6.1.0-57-cloud-amd64\n[    1.677364] Please append a correct \"root=\" boot \
             option; here are the available partitions:\n[    1.677667] Kernel panic - not syncing: VFS: Unable to \
             mount root fs on unknown-block(0,0)\n[    1.680387] Kernel Offset: disabled\n",
        )
        .unwrap();
        assert_eq!(watch(&console, || Some("exit status: 0".into()), Duration::from_secs(2)), Verdict::Runs);
    }
}

//! `banger-image`: the one module that builds banger's guest runtime bundle.
//!
//! Everything comes from Debian packages; host tools run through [`std::process::Command`] with
//! argument vectors. Public API:
//!
//! * [`extract_vmlinux`] — ELF vmlinux out of a bzImage (LZ4 legacy, gzip, xz, zstd).
//! * [`fetch_kernel`] — download + unpack Debian's `linux-image-cloud-amd64` without installing it.
//! * [`write_initrd`] — newc cpio with the static `banger-init` and the few modules it loads.
//! * [`build_base_rootfs`] / [`build_rootfs`] — `rootfs.ext4` and `rootfs-docker.ext4` (sparse).
//! * [`build_runtime`] — the whole bundle, staged next to the output dir and renamed into place.
//! * [`repo`] — a local apt repository for a builder VM without network: .debs downloaded on the
//!   host for the guest's installed state (cached), a generated `Packages` index, an ext4 disk.
//!
//! ## Building the init and a bundle
//!
//! ```text
//! RUSTFLAGS='-C target-feature=+crt-static -C strip=symbols' \
//!   cargo build --release -p banger-guest-init --target x86_64-unknown-linux-gnu --target-dir target/guest-init
//! # -> target/guest-init/x86_64-unknown-linux-gnu/release/banger-init (static-pie, ~1.3 MB)
//! cargo run --release -p banger-image --example build-runtime -- runtime \
//!   target/guest-init/x86_64-unknown-linux-gnu/release/banger-init [--no-docker] [--force]
//! ```
//!
//! ## Booting a bundle (QEMU TCG)
//!
//! Disks in this order: vda = `rootfs.ext4` (read-only, shared), vdb = per-VM sparse CoW file
//! (all zero at first), vdc = per-VM ext4 work disk (mounted on /root). Kernel command line:
//! `console=ttyS0 quiet systemd.show_status=0 panic=-1 tsc_early_khz=<khz>
//! ip=GUEST::HOST:MASK:HOSTNAME:eth0:off[:DNS]` (no `root=`: the initrd builds
//! `0 SECTORS snapshot /dev/vda /dev/vdb P 8`; overrides `banger.base=`, `banger.cow=`,
//! `banger.work=`, `banger.wait=`). The serial console shows `BANGER-HOSTKEYS-BEGIN`, the VM's
//! public host key(s), `BANGER-HOSTKEYS-END`, then `BANGER-READY` once sshd listens.
//!
//! Missing host tools are reported with the Debian package to install (mmdebstrap, e2fsprogs,
//! dpkg-dev, kmod, qemu-system-x86, openssh-client); this crate never installs anything on the host.

mod bundle;
pub mod cpio;
mod kernel;
pub mod repo;
mod rootfs;
mod util;
mod vmlinux;

pub use bundle::{FileInfo, RuntimeOptions, Summary, build_runtime};
pub use kernel::{INITRD_MODULES, Kernel, fetch_kernel, write_initrd};
pub use rootfs::{
    BaseRootfsOptions, DEFAULT_CUSTOMIZE_SH, DEFAULT_PACKAGES_APT, RootfsOptions, build_base_rootfs, build_rootfs,
    parse_packages,
};
pub use vmlinux::extract_vmlinux;

use std::path::PathBuf;

/// Errors: one sentence naming the failing command or path.
#[derive(Debug, thiserror::Error)]
pub enum Error {
    /// Invalid option or input data.
    #[error("{0}")]
    BadInput(String),
    /// A required file, package or device was not found.
    #[error("{0}")]
    NotFound(String),
    /// A host tool is not installed.
    #[error("`{tool}` is not installed (install the Debian package `{package}`)")]
    ToolMissing { tool: String, package: String },
    /// A host command failed.
    #[error("`{command}` failed ({status}): {detail}")]
    Command { command: String, status: String, detail: String },
    /// A filesystem operation failed.
    #[error("{op} {path}: {source}")]
    Io { op: &'static str, path: PathBuf, source: std::io::Error },
    /// The bundle could not be assembled or verified.
    #[error("{0}")]
    Bundle(String),
}

impl Error {
    /// Process exit code: 2 bad input, 3 not found, 7 build/bundle failure, 1 other.
    pub fn exit_code(&self) -> i32 {
        match self {
            Error::BadInput(_) => 2,
            Error::NotFound(_) | Error::ToolMissing { .. } => 3,
            Error::Command { .. } | Error::Bundle(_) | Error::Io { .. } => 7,
        }
    }
}

pub type Result<T> = std::result::Result<T, Error>;

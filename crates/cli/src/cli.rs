//! The command-line grammar (clap derive). Every command that reads state takes `--json`.

use banger_api::{MountSpec, PortSpec};
use clap::{Args, Parser, Subcommand};
use std::path::PathBuf;

#[derive(Parser, Debug)]
#[command(name = "banger", version, about = "Persistent Firecracker/QEMU development VMs", propagate_version = true)]
pub struct Cli {
    #[command(subcommand)]
    pub command: Command,
}

#[derive(Subcommand, Debug)]
pub enum Command {
    /// Create, inspect, start, stop and reach VMs.
    #[command(subcommand)]
    Vm(VmCommand),
    /// Follow what happens to VMs: lifecycle changes, progress, errors (until Ctrl-C; survives
    /// daemon restarts).
    Events {
        /// One JSON object per line, exactly as bangerd sends them.
        #[arg(long)]
        json: bool,
        /// First replay the events after this sequence number that bangerd still keeps.
        #[arg(long)]
        since: Option<u64>,
    },
    /// Inspect or stop the banger daemon (bangerd).
    #[command(subcommand)]
    Daemon(DaemonCommand),
    /// Images VMs are created from: the runtime bundle's (`default`, `base`) and built ones.
    #[command(subcommand)]
    Image(ImageCommand),
    /// Running VMs as `<name>.vm`: where bangerd answers, and wiring the host's resolver to it.
    #[command(subcommand)]
    Dns(DnsCommand),
    /// Show the effective configuration.
    #[command(subcommand)]
    Config(ConfigCommand),
    /// Inspect the runtime bundle (kernel, initrd, images, SSH key).
    #[command(subcommand)]
    Runtime(RuntimeCommand),
    /// Print a shell completion script.
    Completions(CompletionsArgs),
    /// Print an OpenSSH config with a `Host NAME.vm` block per VM (address, user, this
    /// installation's key, the VM's pinned host key), which bangerd keeps current; `--install`
    /// includes it from ~/.ssh/config so `ssh NAME.vm`, scp, rsync, git and editors work as is.
    SshConfig {
        /// Add `Include <that file>` at the top of ~/.ssh/config (once).
        #[arg(long)]
        install: bool,
        /// Remove what --install added.
        #[arg(long, conflicts_with = "install")]
        uninstall: bool,
        /// The file and each host's settings as JSON.
        #[arg(long, conflicts_with_all = ["install", "uninstall"])]
        json: bool,
    },
    /// Check this installation end to end on a throwaway VM.
    ///
    /// Steps: create, run a command over SSH, stats, stop, grow memory and disk, start, files
    /// kept and disk grown, `.vm` DNS, (with --nat) NAT on and off, delete. Stops at the first
    /// failure, saying where to look, with that command's exit code; the VM is removed either way
    /// unless --keep.
    Verify(VerifyArgs),
    /// A terminal UI: VMs (live from the daemon's events) with their figures, console and
    /// actions, and images. `?` lists the keys.
    Tui {
        /// Append each keypress-to-redraw latency in milliseconds to FILE (for benchmarks).
        #[arg(long, value_name = "FILE", hide = true)]
        trace_keys: Option<std::path::PathBuf>,
    },
    /// Helpers banger runs itself (not for people).
    #[command(subcommand, hide = true)]
    Internal(InternalCommand),
}

#[derive(Args, Debug)]
pub struct VerifyArgs {
    /// Also check NAT: with it a server in a local "outside" network namespace is reachable
    /// from the guest (and sees the host's address), without it not (needs root or sudo -n).
    #[arg(long)]
    pub nat: bool,
    /// Keep the VM (and the outside network) instead of removing them, and say how to remove them.
    #[arg(long)]
    pub keep: bool,
    /// One JSON object per step, then a summary object.
    #[arg(long)]
    pub json: bool,
}

#[derive(Subcommand, Debug)]
pub enum InternalCommand {
    /// Listen on ADDR; print `listening ADDR` once bound, then answer each connection with the
    /// peer's IP address (one line) and close it. Runs until killed (`verify --nat` runs it).
    PeerEcho { addr: std::net::SocketAddr },
}

#[derive(Subcommand, Debug)]
pub enum DaemonCommand {
    /// Show the daemon's pid, version, uptime, socket and directories (starts it if needed).
    Status {
        #[arg(long)]
        json: bool,
        /// Do not start the daemon; exit 5 if it is not running.
        #[arg(long)]
        no_start: bool,
        /// Run the KVM probes again (each VMM boots the guest kernel once; a few seconds).
        #[arg(long)]
        reprobe: bool,
    },
    /// Print the path of the daemon's socket.
    Socket {
        #[arg(long)]
        json: bool,
    },
    /// Stop the daemon gracefully. Running VMs keep running.
    Stop {
        /// Seconds to wait for the daemon to exit.
        #[arg(long, default_value_t = 10)]
        timeout: u64,
    },
}

#[derive(Subcommand, Debug)]
pub enum ConfigCommand {
    /// Every config key, its effective value and where the value came from.
    Show {
        #[arg(long)]
        json: bool,
    },
}

#[derive(Subcommand, Debug)]
pub enum RuntimeCommand {
    /// Check that every file VMs need is in the runtime bundle; exit 7 naming the first missing.
    Check {
        #[arg(long)]
        json: bool,
    },
    /// Download the bundle pinned by the manifest, verify its SHA-256, unpack it into the runtime
    /// dir (atomically: on any error the old runtime dir stays as it was).
    Fetch {
        /// The manifest (URL, SHA-256, required files).
        #[arg(long, default_value = "runtime-bundle.toml")]
        manifest: PathBuf,
        /// Where to unpack (default: the resolved runtime dir).
        #[arg(long)]
        dir: Option<PathBuf>,
    },
    /// Build a complete runtime bundle from Debian packages (kernel, vmlinux, initrd, modules,
    /// rootfs images, SSH key) into the runtime dir; replaced atomically when done.
    Build {
        /// Where to build (default: the resolved runtime dir).
        #[arg(long)]
        dir: Option<PathBuf>,
        /// The static guest init (`make guest-init` builds it).
        #[arg(long, default_value = "target/guest-init/x86_64-unknown-linux-gnu/release/banger-init")]
        init: PathBuf,
        /// Skip rootfs-docker.ext4 (large and slow; `make rootfs` builds it later).
        #[arg(long)]
        no_docker: bool,
        /// Rebuild rootfs-docker.ext4 even if packages.apt did not change.
        #[arg(long)]
        force: bool,
        /// Use this kernel .deb instead of downloading Debian's linux-image-cloud-amd64.
        #[arg(long)]
        kernel_deb: Option<PathBuf>,
        #[arg(long)]
        json: bool,
    },
    /// Build rootfs-docker.ext4 from the base rootfs plus packages.apt and customize.sh — only
    /// when packages.apt changed since the last build, unless --force.
    Rootfs {
        /// The runtime dir (default: the resolved one).
        #[arg(long)]
        dir: Option<PathBuf>,
        /// Base image to start from (default: rootfs.ext4 in the runtime dir).
        #[arg(long)]
        base_rootfs: Option<PathBuf>,
        /// Package list (default: packages.apt in the runtime dir).
        #[arg(long)]
        packages: Option<PathBuf>,
        /// Customization script run in the image (default: customize.sh in the runtime dir).
        #[arg(long)]
        customize: Option<PathBuf>,
        #[arg(long)]
        force: bool,
    },
    /// Package the runtime dir into a deterministic .tar.gz and print its SHA-256.
    Package {
        /// The directory to package (default: the resolved runtime dir).
        #[arg(long)]
        dir: Option<PathBuf>,
        #[arg(long, default_value = "dist/banger-runtime.tar.gz")]
        out: PathBuf,
        /// The manifest to update.
        #[arg(long, default_value = "runtime-bundle.toml")]
        manifest: PathBuf,
        /// Write the SHA-256 (and --url, if given) into the manifest without asking.
        #[arg(long)]
        write_manifest: bool,
        /// The URL the package will be published at (written with --write-manifest).
        #[arg(long)]
        url: Option<String>,
        #[arg(long)]
        json: bool,
    },
}

#[derive(Args, Debug)]
pub struct CompletionsArgs {
    #[arg(value_enum)]
    pub shell: clap_complete::Shell,
}

#[derive(Debug, Subcommand)]
pub enum ImageCommand {
    /// Build an image: boot a builder VM on a copy-on-write overlay of the base, install
    /// packages (downloaded on the host, handed over offline), run the customize script, power
    /// off and flatten into a standalone image under the state dir. The base never changes.
    Build {
        /// The new image's name: a DNS label (≤ 57 characters), not `default` or `base`.
        #[arg(long)]
        name: String,
        /// The image to build on (default `base`, else `default` when the bundle has no base).
        #[arg(long)]
        base: Option<String>,
        /// Install Docker (the bundle packages.apt's Docker lines, or docker.io) and enable it.
        #[arg(long)]
        docker: bool,
        /// A script run as root in the builder (see README: the customize contract).
        #[arg(long)]
        script: Option<std::path::PathBuf>,
        /// A package list (packages.apt format) to install.
        #[arg(long)]
        packages: Option<std::path::PathBuf>,
        /// A local .deb to install (repeatable); handed over with the other packages.
        #[arg(long = "deb", value_name = "FILE")]
        debs: Vec<std::path::PathBuf>,
        /// Grow the image to SIZE (e.g. 4G); default: the base's size.
        #[arg(long, value_parser = parse_size)]
        size: Option<u64>,
        /// NAT for the builder, so the script may use the network (packages still come from the
        /// host's repository).
        #[arg(long)]
        nat: bool,
        /// Open a shell in the builder after the script, before the image is taken (needs a
        /// terminal); when it ends, finish or abandon the build.
        #[arg(long)]
        interactive: bool,
        #[arg(long)]
        json: bool,
    },
    /// Every image: name, kind, size (apparent/allocated), base, created, VMs using it.
    #[command(alias = "ls")]
    List {
        #[arg(long)]
        json: bool,
    },
    /// One image: path, base, kernel, package list and script with their SHA-256s, build log,
    /// created, VMs using it.
    Show {
        name: String,
        #[arg(long)]
        json: bool,
    },
    /// Delete a built image (refused while a VM uses it; the bundle's images are not banger's).
    #[command(alias = "rm")]
    Delete {
        name: String,
        /// Accepted for symmetry with `vm delete`; an image a VM uses is never deleted.
        #[arg(long)]
        force: bool,
    },
}

#[derive(Debug, Subcommand)]
pub enum DnsCommand {
    /// Where bangerd answers for `.vm`, its upstream resolvers and the names published now.
    Status {
        #[arg(long)]
        json: bool,
    },
    /// Make this host resolve `.vm` through bangerd: systemd-resolved gets a per-link DNS server
    /// and a `~vm` routing domain (needs root or passwordless sudo); without systemd-resolved,
    /// print the lines to add to the host's resolver.
    Setup {
        /// Remove what `setup` made.
        #[arg(long)]
        undo: bool,
    },
}

#[derive(Subcommand, Debug)]
pub enum VmCommand {
    /// Create a VM and boot it (waits until SSH answers).
    Create {
        /// A DNS label; default: a generated adjective-animal name.
        #[arg(long)]
        name: Option<String>,
        /// `default`, `base`, or a path to an ext4 image.
        #[arg(long)]
        image: Option<String>,
        /// Memory in MiB (default from config).
        #[arg(long)]
        memory: Option<u32>,
        /// Number of vCPUs (default from config).
        #[arg(long)]
        vcpu: Option<u32>,
        /// Size of the persistent /root disk, e.g. 16G (default from config).
        #[arg(long, value_parser = parse_size)]
        disk_size: Option<u64>,
        /// Give the VM outbound network access through the host (NAT).
        #[arg(long)]
        nat: bool,
        /// Forward a host port to the guest whenever the VM runs:
        /// `[HOSTIP:]HOSTPORT:GUESTPORT[/tcp|udp]`, host address 127.0.0.1 unless given
        /// (repeatable).
        #[arg(short = 'p', long, value_name = "[HOSTIP:]HOSTPORT:GUESTPORT[/PROTO]")]
        publish: Vec<PortSpec>,
        /// Mount a host directory in the guest at every boot: `HOSTDIR[:GUESTDIR][:ro]`, at the
        /// same path unless GUESTDIR is given (QEMU backend; repeatable).
        #[arg(long = "mount", value_name = "HOSTDIR[:GUESTDIR][:ro]", value_parser = parse_mount)]
        mounts: Vec<MountSpec>,
        /// Only register the VM and create its disks.
        #[arg(long)]
        no_start: bool,
        #[arg(long)]
        json: bool,
    },
    /// List VMs.
    #[command(alias = "ls")]
    List {
        #[arg(long)]
        json: bool,
        /// Keep the list on screen and redraw it whenever a VM changes (with --json: print
        /// the list again, one document per line).
        #[arg(long, short)]
        watch: bool,
    },
    /// Show one VM: state, backend, addresses, disks and their allocated sizes, pid, uptime.
    Show {
        name: String,
        #[arg(long)]
        json: bool,
    },
    /// Boot a stopped VM (waits until SSH answers).
    Start {
        name: String,
        #[arg(long)]
        json: bool,
    },
    /// Power a VM off cleanly; kill its VMM if it does not stop within the timeout.
    Stop {
        name: String,
        /// Seconds to wait for a clean power-off.
        #[arg(long, default_value_t = 30)]
        timeout: u64,
        #[arg(long)]
        json: bool,
    },
    /// Stop (if running) and start a VM.
    Restart {
        name: String,
        #[arg(long, default_value_t = 30)]
        timeout: u64,
        #[arg(long)]
        json: bool,
    },
    /// Change a VM's memory, vCPUs, disk size or host folders (while it is stopped), or NAT and
    /// published ports (at any time).
    #[command(group = clap::ArgGroup::new("what").required(true).multiple(true))]
    Set {
        name: String,
        /// Memory in MiB.
        #[arg(long, group = "what")]
        memory: Option<u32>,
        #[arg(long, group = "what")]
        vcpu: Option<u32>,
        /// New size of the /root disk, e.g. 32G (it only grows; the guest sees it on its next start).
        #[arg(long, value_parser = parse_size, group = "what")]
        disk_size: Option<u64>,
        /// Give the VM outbound network access through the host (at once if it runs).
        #[arg(long, group = "what", conflicts_with = "no_nat")]
        nat: bool,
        /// Take NAT away (at once if it runs).
        #[arg(long, group = "what")]
        no_nat: bool,
        /// Publish a port (`[HOSTIP:]HOSTPORT:GUESTPORT[/tcp|udp]`; at once if it runs; one on
        /// the same host port replaces it; repeatable).
        #[arg(short = 'p', long, group = "what", value_name = "[HOSTIP:]HOSTPORT:GUESTPORT[/PROTO]")]
        publish: Vec<PortSpec>,
        /// Stop publishing a port, named `[HOSTIP:]HOSTPORT[/PROTO]` (repeatable).
        #[arg(long, group = "what", value_name = "[HOSTIP:]HOSTPORT[/PROTO]")]
        unpublish: Vec<String>,
        /// Mount a host directory (`HOSTDIR[:GUESTDIR][:ro]`; repeatable).
        #[arg(long = "mount", group = "what", value_name = "HOSTDIR[:GUESTDIR][:ro]", value_parser = parse_mount)]
        mounts: Vec<MountSpec>,
        /// Stop mounting the host folder at this guest directory (repeatable).
        #[arg(long, group = "what", value_name = "GUESTDIR")]
        unmount: Vec<std::path::PathBuf>,
        #[arg(long)]
        json: bool,
    },
    /// Forward host ports to a running VM until interrupted (Ctrl-C), or the VM stops:
    /// `banger vm port-forward NAME [HOSTIP:]HOSTPORT:GUESTPORT[/PROTO]…`; host port 0 picks a
    /// free one. Ports kept with the VM are `vm create/set --publish`.
    PortForward {
        name: String,
        #[arg(required = true, value_name = "[HOSTIP:]HOSTPORT:GUESTPORT[/PROTO]")]
        ports: Vec<PortSpec>,
    },
    /// What a VM uses: vCPUs and memory, host CPU and RSS of its VMM, memory, load and disk use
    /// inside the guest, network counters, disk sizes, uptime.
    Stats {
        name: String,
        #[arg(long)]
        json: bool,
        /// Refresh every second (with --json: one document per line).
        #[arg(long, short)]
        watch: bool,
    },
    /// Send a signal to a VM's VMM process (default KILL).
    Kill {
        name: String,
        #[arg(long, short, default_value = "KILL")]
        signal: String,
        #[arg(long)]
        json: bool,
    },
    /// Delete a VM and its disks (a running VM needs --force).
    #[command(alias = "rm")]
    Delete {
        name: String,
        #[arg(long)]
        force: bool,
    },
    /// Run one program in a running VM, its arguments exactly as given (unlike `vm ssh -- …`,
    /// where the guest's shell joins and re-parses them): `banger vm exec NAME -- ARGV…`. Input
    /// and output stream; banger exits with the program's exit code.
    Exec {
        name: String,
        /// A terminal for the program (the default when standard input is one).
        #[arg(short = 't', long)]
        tty: bool,
        /// Set an environment variable for the program (repeatable).
        #[arg(short = 'e', long = "env", value_name = "KEY=VALUE")]
        env: Vec<String>,
        /// Run it in this directory of the guest (default: root's home, /root).
        #[arg(short = 'w', long = "workdir", value_name = "DIR")]
        workdir: Option<String>,
        /// The program and its arguments.
        #[arg(last = true, required = true, value_name = "ARGV")]
        argv: Vec<String>,
    },
    /// Copy files or directories between the host and a running VM (`NAME:/path` on one side),
    /// keeping modes and times; into DST if it is a directory, else as DST.
    Cp { src: String, dst: String },
    /// Open an SSH session to a VM, or run a command in it: `banger vm ssh NAME -- CMD…`.
    Ssh {
        name: String,
        /// Command to run instead of a login shell.
        #[arg(last = true)]
        command: Vec<String>,
    },
    /// Print a VM's console log.
    Logs {
        name: String,
        /// Keep printing new output.
        #[arg(long, short)]
        follow: bool,
        #[arg(long)]
        json: bool,
    },
}

fn parse_size(s: &str) -> Result<u64, String> {
    banger_config::size::parse_size(s)
}

/// A `--mount` spec; a relative HOSTDIR is taken from the current directory (and must exist).
fn parse_mount(s: &str) -> Result<MountSpec, String> {
    let (host, rest) = s.split_once(':').map_or((s, None), |(h, r)| (h, Some(r)));
    if host.is_empty() || std::path::Path::new(host).is_absolute() {
        return s.parse();
    }
    let abs = std::fs::canonicalize(host).map_err(|e| format!("cannot use {host}: {e}"))?;
    let abs = abs.to_str().ok_or_else(|| format!("{} is not UTF-8", abs.display()))?;
    match rest {
        Some(r) => format!("{abs}:{r}").parse(),
        None => abs.parse(),
    }
}

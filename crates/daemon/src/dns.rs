//! Running VMs as `<name>.vm`, kept in step with the event stream.
//!
//! With `dns = "builtin"` (the default) bangerd serves the `.vm` zone itself (`banger-dns`):
//! on loopback for the host (`.vm` only; anything else is refused, so it is no open resolver),
//! and on the host side of each running VM's link, where the guest's port-53 queries are
//! redirected (`banger-net`'s firewall) and names outside `.vm` are forwarded to the host's
//! upstream resolvers. With `dns = "mapdns"` the external `mapdns` program is told instead
//! (`mapdns add NAME.vm IP`, `mapdns rm NAME.vm`). `off` publishes nothing.
//!
//! A follower task subscribes to the event bus before reading the database, so no change can
//! slip between the two: `running` publishes a VM, leaving `running` (or deletion) withdraws it,
//! and a `resync` rebuilds everything from the database.

use crate::app::App;
use banger_api::event::EventKind;
use banger_api::response::{DnsRecord, DnsStatus, Phase};
use banger_config::{Config, DnsMode};
use banger_dns::{Records, Role, Server};
use std::collections::HashMap;
use std::net::{IpAddr, Ipv4Addr, SocketAddr};
use std::path::PathBuf;
use std::sync::{Arc, Mutex};

pub struct Dns {
    mode: DnsMode,
    port: Option<u16>,
    upstream: Vec<SocketAddr>,
    records: Records,
    server: Option<Server>,
    mapdns_bin: PathBuf,
    /// The installation's resolved link and the file saying `banger dns setup` made it.
    pub link: String,
    pub setup_marker: PathBuf,
    state: Mutex<State>,
}

#[derive(Default)]
struct State {
    listen: Option<SocketAddr>,
    error: Option<String>,
    /// VM → (guest address, host side of its link) for each published VM.
    published: HashMap<String, (Ipv4Addr, Ipv4Addr)>,
}

impl Dns {
    /// From the config; the state dir names the installation (default port, resolved link).
    pub fn new(config: &Config, dirs: &banger_config::Dirs) -> Dns {
        let state_dir = &dirs.state;
        let installation = state_dir.display().to_string();
        let port = (config.dns == DnsMode::Builtin)
            .then(|| config.dns_port.unwrap_or_else(|| banger_dns::default_port(&installation)));
        let upstream = if config.dns_upstream.is_empty() {
            std::fs::read_to_string("/etc/resolv.conf")
                .map(|t| banger_dns::upstreams_from_resolv_conf(&t))
                .unwrap_or_default()
        } else {
            config.dns_upstream.clone()
        };
        let records = Records::new();
        Dns {
            mode: config.dns,
            port,
            server: port.map(|_| Server::new(records.clone(), upstream.clone())),
            upstream,
            records,
            mapdns_bin: config.mapdns_bin.clone(),
            link: banger_net::resolver::link_name(&banger_net::tap::prefix_for(state_dir)),
            setup_marker: dirs.dns_setup_marker(),
            state: Mutex::new(State::default()),
        }
    }

    /// The built-in server's port, when it runs (the lifecycle redirects guests to it).
    pub fn port(&self) -> Option<u16> {
        self.port
    }

    fn state(&self) -> std::sync::MutexGuard<'_, State> {
        self.state.lock().unwrap_or_else(|e| e.into_inner())
    }

    pub fn status(&self) -> DnsStatus {
        let st = self.state();
        let mut records: Vec<DnsRecord> = st
            .published
            .iter()
            .map(|(name, (ip, _))| DnsRecord { name: format!("{name}.vm"), ip: ip.to_string() })
            .collect();
        records.sort_by(|a, b| a.name.cmp(&b.name));
        DnsStatus {
            mode: self.mode.as_str().into(),
            listen: st.listen.map(|a| a.to_string()),
            port: self.port,
            upstream: self.upstream.iter().map(|a| a.to_string()).collect(),
            records,
            error: st.error.clone(),
        }
    }

    /// Start answering on loopback and follow the event stream (on the current runtime).
    pub async fn start(app: Arc<App>) {
        let dns = &app.dns;
        if dns.mode == DnsMode::Off {
            return;
        }
        if let (Some(server), Some(port)) = (&dns.server, dns.port) {
            match server.listen(SocketAddr::from((Ipv4Addr::LOCALHOST, port)), Role::Host).await {
                Ok(addr) => {
                    tracing::info!("DNS: answering for .vm on {addr}");
                    dns.state().listen = Some(addr);
                    // `banger dns setup` was run: its link is gone after a reboot, and resolved
                    // forgets per-link settings when it restarts. Put them back.
                    if dns.setup_marker.exists() && banger_net::resolver::resolved_running() {
                        let link = dns.link.clone();
                        tokio::task::spawn_blocking(move || {
                            if let Err(e) = banger_net::resolver::setup_resolved(&link, addr) {
                                tracing::warn!("DNS: restoring the systemd-resolved link {link}: {e}");
                            }
                        });
                    }
                }
                Err(e) => {
                    let why = format!(
                        "cannot listen on 127.0.0.1:{port} ({e}); set another `dns_port` in the config, or `dns = \"off\"`"
                    );
                    tracing::warn!("DNS: {why}");
                    dns.state().error = Some(why);
                }
            }
        }
        let mut events = app.vms.events.subscribe(None);
        Dns::resync(&app).await;
        tokio::spawn(async move {
            while let Some(e) = events.next().await {
                let Some(vm) = e.vm.as_deref() else {
                    if matches!(e.kind, EventKind::Resync { .. }) {
                        Dns::resync(&app).await;
                    }
                    continue;
                };
                match e.kind {
                    EventKind::Phase { to: Phase::Running, .. } => Dns::publish(&app, vm).await,
                    EventKind::Phase { from: Phase::Running, .. } | EventKind::Deleted => app.dns.withdraw(vm),
                    EventKind::Phase { to: Phase::Stopped | Phase::Failed, .. } => app.dns.withdraw(vm),
                    _ => {}
                }
            }
        });
    }

    /// Publish every running VM, withdraw the rest.
    async fn resync(app: &Arc<App>) {
        let running: Vec<String> = app
            .vms
            .list()
            .map(|vms| vms.into_iter().filter(|v| v.state == Phase::Running).map(|v| v.name).collect())
            .unwrap_or_default();
        let gone: Vec<String> = app.dns.state().published.keys().filter(|n| !running.contains(n)).cloned().collect();
        for name in gone {
            app.dns.withdraw(&name);
        }
        for name in running {
            Dns::publish(app, &name).await;
        }
    }

    async fn publish(app: &Arc<App>, name: &str) {
        let dns = &app.dns;
        let Ok(rec) = app.vms.record(name) else { return };
        let (Ok(guest), Ok(host)) = (rec.guest_ip.parse::<Ipv4Addr>(), rec.host_ip.parse::<Ipv4Addr>()) else {
            return;
        };
        dns.state().published.insert(name.to_string(), (guest, host));
        match dns.mode {
            DnsMode::Builtin => {
                dns.records.set(name, guest);
                if let (Some(server), Some(port)) = (&dns.server, dns.port)
                    && let Err(e) = server.listen(SocketAddr::from((host, port)), Role::Guest).await
                {
                    tracing::warn!("DNS: cannot answer VM {name} on {host}:{port}: {e}");
                }
            }
            DnsMode::Mapdns => dns.mapdns(&["add", &format!("{name}.vm"), &guest.to_string()]),
            DnsMode::Off => {}
        }
    }

    fn withdraw(&self, name: &str) {
        let Some((_, host)) = self.state().published.remove(name) else { return };
        match self.mode {
            DnsMode::Builtin => {
                self.records.remove(name);
                if let Some(server) = &self.server {
                    server.unlisten(IpAddr::V4(host));
                }
            }
            DnsMode::Mapdns => self.mapdns(&["rm", &format!("{name}.vm")]),
            DnsMode::Off => {}
        }
    }

    /// Run `mapdns ARGS…` in the background (it must not hold up the event follower).
    fn mapdns(&self, args: &[&str]) {
        let bin = self.mapdns_bin.clone();
        let args: Vec<String> = args.iter().map(|a| a.to_string()).collect();
        std::thread::spawn(move || {
            let program = bin.to_string_lossy().into_owned();
            if let Err(e) = banger_host::run_with_timeout(&program, &args, std::time::Duration::from_secs(10)) {
                tracing::warn!("DNS: {e}");
            }
        });
    }
}

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
//! slip between the two: `starting` opens the VM's link listener (bound with `IP_FREEBIND`, so
//! before its TAP has the address, and answering that VM's address only), `running` publishes
//! its name, leaving `running`, `failed`, `stopped` or deletion withdraws both, and a `resync`
//! rebuilds everything from the database.

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
    /// `mapdns` commands, run in order by one worker.
    mapdns: Mutex<Option<std::sync::mpsc::Sender<Vec<String>>>>,
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
    /// VM → its guest address, for each published name.
    published: HashMap<String, Ipv4Addr>,
    /// VM → the host side of its link, for each link listener.
    links: HashMap<String, Ipv4Addr>,
    /// VM → why its link listener could not be opened.
    link_errors: HashMap<String, String>,
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
            mapdns: Mutex::new(None),
            mapdns_bin: config.mapdns_bin.clone(),
            link: banger_net::resolver::link_name(&banger_net::tap::prefix_for(state_dir)),
            setup_marker: dirs.dns_setup_marker(),
            state: Mutex::new(State::default()),
        }
    }

    /// Where the built-in server listens now (loopback and VM links).
    pub fn listeners(&self) -> Vec<SocketAddr> {
        self.server.as_ref().map(|s| s.listeners().into_iter().map(|(a, _)| a).collect()).unwrap_or_default()
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
            .map(|(name, ip)| DnsRecord { name: format!("{name}.vm"), ip: ip.to_string() })
            .collect();
        records.sort_by(|a, b| a.name.cmp(&b.name));
        DnsStatus {
            mode: self.mode.as_str().into(),
            listen: st.listen.map(|a| a.to_string()),
            port: self.port,
            upstream: self.upstream.iter().map(|a| a.to_string()).collect(),
            records,
            error: st.error.clone().or_else(|| {
                let mut why: Vec<&String> = st.link_errors.values().collect();
                why.sort();
                (!why.is_empty()).then(|| why.into_iter().cloned().collect::<Vec<_>>().join("; "))
            }),
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
                    EventKind::Phase { to: Phase::Starting, .. } => Dns::open_link(&app, vm).await,
                    EventKind::Phase { to: Phase::Running, .. } => Dns::publish(&app, vm).await,
                    EventKind::Phase { to: Phase::Stopping | Phase::Stopped | Phase::Failed, .. }
                    | EventKind::Deleted => app.dns.withdraw(vm),
                    _ => {}
                }
            }
        });
    }

    /// Publish every running VM, withdraw the rest.
    async fn resync(app: &Arc<App>) {
        let vms = app.vms.list().unwrap_or_default();
        let phase = |name: &str| vms.iter().find(|v| v.name == name).map(|v| v.state);
        let stale: Vec<String> = {
            let st = app.dns.state();
            let keys = st.published.keys().chain(st.links.keys());
            keys.filter(|n| !matches!(phase(n), Some(Phase::Running | Phase::Starting))).cloned().collect()
        };
        for name in stale {
            app.dns.withdraw(&name);
        }
        for vm in &vms {
            match vm.state {
                Phase::Running => Dns::publish(app, &vm.name).await,
                Phase::Starting => Dns::open_link(app, &vm.name).await,
                _ => {}
            }
        }
    }

    /// The VM's (guest address, host side of its link), from the database.
    fn addresses(app: &Arc<App>, name: &str) -> Option<(Ipv4Addr, Ipv4Addr)> {
        let rec = app.vms.record(name).ok()?;
        Some((rec.guest_ip.parse().ok()?, rec.host_ip.parse().ok()?))
    }

    /// Answer the VM on the host side of its link (`builtin` only): its port-53 queries are
    /// redirected there from the moment its TAP exists.
    async fn open_link(app: &Arc<App>, name: &str) {
        let dns = &app.dns;
        let (Some(server), Some(port)) = (&dns.server, dns.port) else { return };
        let Some((guest, host)) = Dns::addresses(app, name) else { return };
        if dns.state().links.get(name) == Some(&host) {
            return;
        }
        match server.listen_for(SocketAddr::from((host, port)), Role::Guest, Some(IpAddr::V4(guest))).await {
            Ok(_) => {
                let mut st = dns.state();
                st.links.insert(name.to_string(), host);
                st.link_errors.remove(name);
            }
            Err(e) => {
                let why = format!("cannot answer VM {name} on {host}:{port}: {e}");
                tracing::warn!("DNS: {why}");
                dns.state().link_errors.insert(name.to_string(), why);
            }
        }
    }

    async fn publish(app: &Arc<App>, name: &str) {
        let dns = &app.dns;
        let Some((guest, _)) = Dns::addresses(app, name) else { return };
        Dns::open_link(app, name).await;
        dns.state().published.insert(name.to_string(), guest);
        match dns.mode {
            DnsMode::Builtin => dns.records.set(name, guest),
            DnsMode::Mapdns => dns.mapdns(&["add", &format!("{name}.vm"), &guest.to_string()]),
            DnsMode::Off => {}
        }
    }

    fn withdraw(&self, name: &str) {
        let (published, link) = {
            let mut st = self.state();
            st.link_errors.remove(name);
            (st.published.remove(name), st.links.remove(name))
        };
        if let (Some(host), Some(server)) = (link, &self.server) {
            server.unlisten(IpAddr::V4(host));
        }
        if published.is_none() {
            return;
        }
        match self.mode {
            DnsMode::Builtin => self.records.remove(name),
            DnsMode::Mapdns => self.mapdns(&["rm", &format!("{name}.vm")]),
            DnsMode::Off => {}
        }
    }

    /// Run `mapdns ARGS…` on the worker thread, in order (a slow `rm` of a stop can never land
    /// after the `add` of the next start), without holding up the event follower.
    fn mapdns(&self, args: &[&str]) {
        let mut worker = self.mapdns.lock().unwrap_or_else(|e| e.into_inner());
        let tx = worker.get_or_insert_with(|| {
            let (tx, rx) = std::sync::mpsc::channel::<Vec<String>>();
            let program = self.mapdns_bin.to_string_lossy().into_owned();
            std::thread::spawn(move || {
                for args in rx {
                    if let Err(e) = banger_host::run_with_timeout(&program, &args, std::time::Duration::from_secs(10)) {
                        tracing::warn!("DNS: {e}");
                    }
                }
            });
            tx
        });
        let _ = tx.send(args.iter().map(|a| a.to_string()).collect());
    }
}

#[cfg(test)]
mod tests {
    //! The follower against the lifecycle on the fake host and the real server on loopback.

    use super::*;
    use crate::events::EventBus;
    use banger_api::request::CreateVm;
    use std::time::{Duration, Instant};

    /// `name`'s A record as bangerd answers it on `server` (`None`: NXDOMAIN or no answer).
    fn resolve(server: SocketAddr, name: &str) -> Option<Ipv4Addr> {
        use hickory_proto::op::{Message, Query};
        use hickory_proto::rr::{Name, RData, RecordType};
        let sock = std::net::UdpSocket::bind("127.0.0.1:0").unwrap();
        sock.set_read_timeout(Some(Duration::from_secs(2))).unwrap();
        let mut q = Message::query();
        q.add_query(Query::query(Name::from_ascii(name).unwrap(), RecordType::A));
        sock.send_to(&q.to_vec().unwrap(), server).unwrap();
        let mut buf = [0u8; 1500];
        let n = sock.recv(&mut buf).ok()?;
        Message::from_vec(&buf[..n]).ok()?.answers.iter().find_map(|r| match &r.data {
            RData::A(a) => Some(a.0),
            _ => None,
        })
    }

    fn eventually(what: &str, mut ok: impl FnMut() -> bool) {
        let deadline = Instant::now() + Duration::from_secs(2);
        while !ok() {
            assert!(Instant::now() < deadline, "not within 2 s: {what}");
            std::thread::sleep(Duration::from_millis(5));
        }
    }

    #[test]
    fn names_and_link_listeners_follow_the_lifecycle() {
        let tmp = tempfile::tempdir().unwrap();
        let root = tmp.path().to_path_buf();
        let dirs = banger_config::Dirs::from_vars(
            |k| match k {
                "HOME" => Some(root.join("home").into()),
                "XDG_RUNTIME_DIR" => Some(root.join("run").into()),
                "XDG_STATE_HOME" | "XDG_CONFIG_HOME" | "XDG_CACHE_HOME" => Some(root.join(k).into()),
                _ => None,
            },
            nix::unistd::geteuid().as_raw(),
        )
        .unwrap();
        let port = std::net::UdpSocket::bind("127.0.0.1:0").unwrap().local_addr().unwrap().port();
        let config = Config::parse(&root.join("c.toml"), &format!("dns_port = {port}")).unwrap();
        let (vms, _fake) = crate::vms::fake_host::manager(&root, EventBus::new(0, 1024));
        let dns = Dns::new(&config, &dirs);
        let app = Arc::new(App::new(vms, dns, dirs, 0, 0));
        let rt = tokio::runtime::Builder::new_multi_thread().worker_threads(1).enable_all().build().unwrap();
        rt.block_on(Dns::start(app.clone()));
        let lo = SocketAddr::from((Ipv4Addr::LOCALHOST, port));
        assert_eq!(app.dns.status().listen, Some(lo.to_string()));

        let req = |n: &str| CreateVm { name: Some(n.into()), disk_size: Some(64 << 20), ..Default::default() };
        let a = app.vms.create(req("a"), &()).unwrap();
        let a_ip: Ipv4Addr = a.ip.parse().unwrap();
        let link = SocketAddr::from((a.host_ip.parse::<Ipv4Addr>().unwrap(), port));
        eventually("a.vm resolves", || resolve(lo, "a.vm.") == Some(a_ip));
        assert!(app.dns.listeners().contains(&link), "a link listener for a running VM");
        assert_eq!(resolve(lo, "b.vm."), None);

        app.vms.stop("a", Duration::from_secs(5), &()).unwrap();
        eventually("a.vm is gone once stopped", || resolve(lo, "a.vm.").is_none());
        eventually("its link listener closes", || !app.dns.listeners().contains(&link));
        assert!(app.dns.status().records.is_empty());

        app.vms.start("a", &()).unwrap();
        eventually("a.vm is back", || resolve(lo, "a.vm.") == Some(a_ip));
        app.vms.delete("a", true).unwrap();
        eventually("a.vm is gone once deleted", || resolve(lo, "a.vm.").is_none());
        assert_eq!(app.dns.listeners(), vec![lo]);
        assert_eq!(app.dns.status().error, None);
    }
}

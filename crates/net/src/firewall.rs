//! The one module that touches the firewall (iptables): NAT for VMs created with `--nat`, and the
//! redirect that lets a guest reach the daemon's DNS resolver.
//!
//! Every rule carries the comment `banger:<tag>` (the tag names the VM and carries the
//! per-installation prefix), so only our own rules are ever listed or removed. Adding is
//! idempotent (`-C` first) and all-or-nothing (a failure removes what that call added); removal
//! deletes exactly the rules of the given spec (`-D`), wherever they are in their chains. We never
//! flush, delete or reorder anyone else's rules or chains, and never change a chain's policy.
//!
//! NAT ([`Firewall::enable_nat`]), per VM:
//! - `nat POSTROUTING -s GUEST/32 ! -o TAP -j MASQUERADE` (appended). Masquerading on every
//!   egress except the VM's own link, rather than on the default route's interface only, is
//!   deliberate: it also covers non-default routes (a VPN, a second uplink) and keeps working when
//!   the default route changes, without us tracking routes.
//! - `filter FORWARD -i TAP -j ACCEPT` and
//!   `filter FORWARD -o TAP -m conntrack --ctstate RELATED,ESTABLISHED -j ACCEPT`, inserted at
//!   position 1 (they only match the VM's TAP, so going first cannot shadow anyone else's rules);
//! - the same two at the top of `filter DOCKER-USER` when that chain exists (below);
//! - `net.ipv4.ip_forward=1` (left on when the last VM goes: other software may rely on it).
//!
//! DNS redirect ([`Firewall::enable_dns_redirect`]), per VM link: the daemon's resolver listens on
//! the TAP's host address at an unprivileged PORT, and the guest uses `nameserver <host address>`:
//! - `nat PREROUTING -i TAP -p udp --dport 53 -j REDIRECT --to-ports PORT`, and the same for tcp,
//!   inserted at position 1 (so a DNAT of port 53 by someone else, e.g. a container publishing
//!   it, does not take the guest's queries). Every query the guest sends to port 53, whatever the
//!   address, goes to the daemon.
//! - `filter INPUT -i TAP -p udp --dport PORT -j ACCEPT`, and the same for tcp, inserted at
//!   position 1, so a host whose INPUT policy is DROP still lets the guest reach the resolver.
//!
//! NAT and DNS rules share the VM's tag but are added and removed by their exact specs, so one
//! never disturbs the other; [`Firewall::remove_stale`] (crash leftovers) works on tags and takes
//! every rule shape.
//!
//! Back ends. iptables comes in two variants that keep separate rule sets: `iptables-nft`
//! (nf_tables; the default on Debian 12) and `iptables-legacy` (x_tables; e.g. where an older
//! Docker set up its rules). Rules must go where the host's other rules live, or a DROP policy in
//! the other set still drops our traffic. Like kube-proxy's iptables-wrapper, a [`Firewall`]
//! counts the rules `iptables-legacy-save` and `iptables-nft-save` print (a missing or failing
//! program counts as none); the one with more rules wins, a tie is nf_tables. That is decided once
//! per [`Firewall`] (on first use, then cached) and then `iptables-nft` or `iptables-legacy` is run
//! explicitly. [`Firewall::with_backend`] forces one. A host with neither variant program runs
//! plain `iptables` (its variant, from `iptables -V`, is what [`Firewall::backend`] reports).
//! Listing uses the `-save` programs, which only read tables that already exist.
//!
//! Docker. Docker sets the `filter FORWARD` policy to DROP and keeps its jumps (`-j DOCKER-USER`,
//! `-j DOCKER-FORWARD` or `-j DOCKER-ISOLATION-STAGE-1`, by version) at the top of FORWARD,
//! re-inserting them there when it restarts, so our FORWARD rules can end up below Docker's
//! chains. Docker documents `DOCKER-USER` as the chain for rules that must precede its own and
//! never changes its contents; a user's DROP there would otherwise also drop the VM's traffic. So
//! when `DOCKER-USER` exists, the two FORWARD accept rules are also inserted at its top. (If
//! Docker creates the chain after a VM's NAT was enabled, enabling again adds the copies.)
//!
//! A [`Firewall`] can act inside a network namespace (both rule sets are per namespace), which is
//! how the tests run real rules without touching the host's.

use banger_host::{HostError, run_root};
use std::net::Ipv4Addr;
use std::sync::OnceLock;

/// Which iptables variant (and so which kernel rule set) a [`Firewall`] uses.
#[derive(Debug, Clone, Copy, PartialEq, Eq, serde::Serialize)]
#[serde(rename_all = "lowercase")]
pub enum Backend {
    /// `iptables-nft`: rules in nf_tables.
    Nft,
    /// `iptables-legacy`: rules in the kernel's x_tables.
    Legacy,
}

impl Backend {
    pub fn name(self) -> &'static str {
        match self {
            Backend::Nft => "nft",
            Backend::Legacy => "legacy",
        }
    }

    fn tool(self) -> Tool {
        match self {
            Backend::Nft => Tool { backend: self, program: "iptables-nft", save: "iptables-nft-save" },
            Backend::Legacy => Tool { backend: self, program: "iptables-legacy", save: "iptables-legacy-save" },
        }
    }

    fn other(self) -> Backend {
        match self {
            Backend::Nft => Backend::Legacy,
            Backend::Legacy => Backend::Nft,
        }
    }
}

impl std::fmt::Display for Backend {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.write_str(self.name())
    }
}

/// The programs that drive one back end.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
struct Tool {
    backend: Backend,
    program: &'static str,
    save: &'static str,
}

/// Where the rules go (the host, or a named network namespace) and through which back end.
///
/// Create one and reuse it: the back end is detected on first use and cached.
#[derive(Debug, Clone)]
pub struct Firewall {
    netns: Option<String>,
    forced: Option<Backend>,
    tool: OnceLock<Tool>,
}

impl PartialEq for Firewall {
    fn eq(&self, other: &Firewall) -> bool {
        self.netns == other.netns && self.forced == other.forced
    }
}

impl Eq for Firewall {}

/// One rule: table, chain, match/target arguments (without the comment), and whether it goes
/// first in its chain (`-I CHAIN 1`) or last (`-A`).
struct Rule {
    table: &'static str,
    chain: &'static str,
    spec: Vec<String>,
    first: bool,
}

/// Docker's chain for rules that must precede its own.
const DOCKER_USER: &str = "DOCKER-USER";

fn words(v: &[&str]) -> Vec<String> {
    v.iter().map(|x| x.to_string()).collect()
}

/// The number of rules in `iptables-save` output.
fn count_rules(save: &str) -> usize {
    save.lines().filter(|l| l.starts_with("-A ")).count()
}

/// The variant `iptables -V` names ("iptables v1.8.9 (legacy)" / "(nf_tables)").
fn variant_of(version: &str) -> Backend {
    if version.contains("(legacy)") { Backend::Legacy } else { Backend::Nft }
}

/// Every rule in `iptables-save` output whose comment starts with `needle`, as
/// `-t TABLE -A CHAIN …`.
fn tagged_lines(save: &str, needle: &str) -> Vec<String> {
    let mut table = "";
    let mut found = Vec::new();
    for line in save.lines() {
        if let Some(t) = line.strip_prefix('*') {
            table = t.trim();
        } else if line.starts_with("-A ") && line.contains(needle) {
            found.push(format!("-t {table} {line}"));
        }
    }
    found
}

/// The tag of a listed rule (its comment without `banger:`).
fn tag_of(line: &str) -> &str {
    line.split("banger:").nth(1).unwrap_or("").split(['"', ' ']).next().unwrap_or("")
}

impl Firewall {
    pub fn host() -> Firewall {
        Firewall { netns: None, forced: None, tool: OnceLock::new() }
    }

    pub fn in_netns(name: &str) -> Firewall {
        Firewall { netns: Some(name.to_string()), forced: None, tool: OnceLock::new() }
    }

    /// Use `backend` instead of detecting it (its program is then run even if missing, which is a
    /// clear "not installed" error).
    pub fn with_backend(self, backend: Backend) -> Firewall {
        Firewall { forced: Some(backend), tool: OnceLock::new(), ..self }
    }

    /// The back end this firewall uses: forced, or detected (once) from where the existing rules
    /// are. Detection never fails: what cannot be run counts as no rules.
    pub fn backend(&self) -> Backend {
        self.tool().backend
    }

    fn tool(&self) -> Tool {
        if let Some(forced) = self.forced {
            return forced.tool();
        }
        if let Some(tool) = self.tool.get() {
            return *tool;
        }
        let (tool, certain) = self.detect();
        // A probe that failed for a reason other than the program's absence (sudo asking for a
        // password, say) may answer next time: only a certain result is kept.
        if certain {
            let _ = self.tool.set(tool);
        }
        tool
    }

    /// Pick the back end by rule count; `certain` is false when a probe could not run at all.
    fn detect(&self) -> (Tool, bool) {
        let mut certain = true;
        let mut probe = |b: Backend| -> Option<usize> {
            match self.run(b.tool().save, &[]) {
                Ok(out) => Some(count_rules(&String::from_utf8_lossy(&out.stdout))),
                Err(HostError::Missing { .. }) => None,
                // The program ran and failed (no kernel support, an incompatible table): no rules.
                Err(HostError::Failed { .. }) => Some(0),
                Err(_) => {
                    certain = false;
                    Some(0)
                }
            }
        };
        let legacy = probe(Backend::Legacy);
        let nft = probe(Backend::Nft);
        let tool = match (legacy, nft) {
            (None, None) => {
                let backend = match self.run("iptables", &["-V".to_string()]) {
                    Ok(out) => variant_of(&String::from_utf8_lossy(&out.stdout)),
                    Err(_) => Backend::Nft,
                };
                Tool { backend, program: "iptables", save: "iptables-save" }
            }
            (legacy, nft) if legacy.unwrap_or(0) > nft.unwrap_or(0) => Backend::Legacy.tool(),
            _ => Backend::Nft.tool(),
        };
        (tool, certain)
    }

    fn run(&self, program: &str, args: &[String]) -> Result<std::process::Output, HostError> {
        let result = match &self.netns {
            None => run_root(program, args),
            Some(ns) => {
                let mut all = vec!["netns".to_string(), "exec".into(), ns.clone(), program.into()];
                all.extend(args.iter().cloned());
                run_root("ip", &all).map_err(|e| match e {
                    HostError::Failed { stderr, .. } if stderr.contains(&format!("exec of \"{program}\" failed")) => {
                        HostError::Missing { program: program.into(), package: banger_host::package_of(program) }
                    }
                    e => e,
                })
            }
        };
        result.map_err(|e| match e {
            // Every iptables variant and its -save program come with Debian's iptables package.
            HostError::Missing { program, .. } if program.starts_with("iptables") => {
                HostError::Missing { program, package: "iptables" }
            }
            e => e,
        })
    }

    fn iptables(&self, tool: Tool, rule: &Rule, op: &str, tag: &str) -> Result<bool, HostError> {
        let mut args = vec!["-w".to_string(), "-t".into(), rule.table.into(), op.into(), rule.chain.into()];
        if op == "-I" {
            args.push("1".into());
        }
        args.extend(rule.spec.iter().cloned());
        args.extend(["-m".into(), "comment".into(), "--comment".into(), format!("banger:{tag}")]);
        match self.run(tool.program, &args) {
            Ok(_) => Ok(true),
            // `-C` answers "no such rule" with exit status 1 and the first message; the legacy
            // variant gives the second when the rule's target is not in use anywhere yet (so the
            // rule cannot be there either; a chain that is truly missing fails the `-I`/`-A`).
            Err(HostError::Failed { stderr, .. })
                if op == "-C"
                    && (stderr.contains("does a matching rule exist")
                        || stderr.contains("No chain/target/match by that name")) =>
            {
                Ok(false)
            }
            Err(e) => Err(e),
        }
    }

    /// Whether `chain` exists in the filter table.
    fn has_filter_chain(&self, tool: Tool, chain: &str) -> Result<bool, HostError> {
        let out = self.run(tool.program, &words(&["-w", "-t", "filter", "-S"]))?;
        let wanted = format!("-N {chain}");
        Ok(String::from_utf8_lossy(&out.stdout).lines().any(|l| l.trim_end() == wanted))
    }

    /// Add the rules that are not there yet; on a failure, remove those this call added.
    fn install(&self, tool: Tool, tag: &str, rules: &[Rule]) -> Result<(), HostError> {
        let mut added: Vec<&Rule> = Vec::new();
        for rule in rules {
            let result = match self.iptables(tool, rule, "-C", tag) {
                Ok(true) => continue,
                Ok(false) => self.iptables(tool, rule, if rule.first { "-I" } else { "-A" }, tag),
                Err(e) => Err(e),
            };
            if let Err(e) = result {
                for r in added {
                    let _ = self.iptables(tool, r, "-D", tag);
                }
                return Err(e);
            }
            added.push(rule);
        }
        Ok(())
    }

    /// Remove every copy of each rule (absent rules are fine).
    fn uninstall(&self, tool: Tool, tag: &str, rules: &[Rule]) -> Result<(), HostError> {
        for rule in rules {
            while self.iptables(tool, rule, "-C", tag)? {
                self.iptables(tool, rule, "-D", tag)?;
            }
        }
        Ok(())
    }

    fn nat_rules(tap: &str, guest: Ipv4Addr, docker_user: bool) -> Vec<Rule> {
        let mut rules = vec![Rule {
            table: "nat",
            chain: "POSTROUTING",
            spec: words(&["-s", &format!("{guest}/32"), "!", "-o", tap, "-j", "MASQUERADE"]),
            first: false,
        }];
        let chains: &[&'static str] = if docker_user { &["FORWARD", DOCKER_USER] } else { &["FORWARD"] };
        for &chain in chains {
            rules.push(Rule { table: "filter", chain, spec: words(&["-i", tap, "-j", "ACCEPT"]), first: true });
            rules.push(Rule {
                table: "filter",
                chain,
                spec: words(&["-o", tap, "-m", "conntrack", "--ctstate", "RELATED,ESTABLISHED", "-j", "ACCEPT"]),
                first: true,
            });
        }
        rules
    }

    fn dns_rules(tap: &str, port: u16) -> Vec<Rule> {
        let port = port.to_string();
        let mut rules = Vec::new();
        for proto in ["udp", "tcp"] {
            rules.push(Rule {
                table: "nat",
                chain: "PREROUTING",
                spec: words(&["-i", tap, "-p", proto, "--dport", "53", "-j", "REDIRECT", "--to-ports", &port]),
                first: true,
            });
        }
        for proto in ["udp", "tcp"] {
            rules.push(Rule {
                table: "filter",
                chain: "INPUT",
                spec: words(&["-i", tap, "-p", proto, "--dport", &port, "-j", "ACCEPT"]),
                first: true,
            });
        }
        rules
    }

    /// Let the guest at `guest` behind `tap` reach the outside through the host.
    pub fn enable_nat(&self, tag: &str, tap: &str, guest: Ipv4Addr) -> Result<(), HostError> {
        let tool = self.tool();
        self.run("sysctl", &words(&["-q", "-w", "net.ipv4.ip_forward=1"]))?;
        let docker_user = self.has_filter_chain(tool, DOCKER_USER)?;
        self.install(tool, tag, &Self::nat_rules(tap, guest, docker_user))?;
        self.forget_flows(guest);
        Ok(())
    }

    /// Drop the connection-tracking entries of flows the guest started, so NAT changes apply
    /// to them at once: a connection attempt made before `--nat` (tracked un-NATed, its SYN
    /// still being retried) gets through, and connections made with NAT stop with `--no-nat`.
    /// Best effort: without the `conntrack` tool, such flows change when they time out.
    fn forget_flows(&self, guest: Ipv4Addr) {
        // "0 flow entries have been deleted" is an exit status of 1; a missing tool is fine.
        let _ = self.run("conntrack", &words(&["-D", "-s", &guest.to_string()]));
    }

    /// Remove the NAT rules of `tag` (absent rules are fine; DNS redirect rules stay).
    pub fn disable_nat(&self, tag: &str, tap: &str, guest: Ipv4Addr) -> Result<(), HostError> {
        let tool = self.tool();
        let docker_user = self.has_filter_chain(tool, DOCKER_USER)?;
        self.uninstall(tool, tag, &Self::nat_rules(tap, guest, docker_user))?;
        self.forget_flows(guest);
        Ok(())
    }

    /// Send the DNS queries (udp and tcp port 53) the guest behind `tap` makes to the host's
    /// address on `tap`, port `port`, where the daemon's resolver listens, and accept them there.
    pub fn enable_dns_redirect(&self, tag: &str, tap: &str, port: u16) -> Result<(), HostError> {
        self.install(self.tool(), tag, &Self::dns_rules(tap, port))
    }

    /// Remove the DNS redirect rules of `tag` (absent rules are fine; NAT rules stay).
    pub fn disable_dns_redirect(&self, tag: &str, tap: &str, port: u16) -> Result<(), HostError> {
        self.uninstall(self.tool(), tag, &Self::dns_rules(tap, port))
    }

    /// The rules of `tool` whose comment starts with `banger:` + `tag_prefix`.
    fn tagged_in(&self, tool: Tool, tag_prefix: &str) -> Result<Vec<String>, HostError> {
        let out = self.run(tool.save, &[])?;
        Ok(tagged_lines(&String::from_utf8_lossy(&out.stdout), &format!("banger:{tag_prefix}")))
    }

    /// Every rule of this firewall's back end (as `iptables-save` prints it, with `-t TABLE` in
    /// front) whose comment starts with `banger:` + `tag_prefix`.
    pub fn tagged(&self, tag_prefix: &str) -> Result<Vec<String>, HostError> {
        self.tagged_in(self.tool(), tag_prefix)
    }

    /// Delete every tagged rule of `tag_prefix` whose tag is not in `keep` (crash leftovers), of
    /// any shape (NAT, DNS redirect, Docker copies), and return how many went. Both back ends are
    /// cleaned: leftovers may be in the other one when detection chose differently on an earlier
    /// run (the other one is skipped when its program is missing or cannot read its tables).
    pub fn remove_stale(&self, tag_prefix: &str, keep: &[String]) -> Result<usize, HostError> {
        let tool = self.tool();
        let mut removed = self.remove_stale_in(tool, tag_prefix, keep)?;
        if tool.program != "iptables" {
            let other = tool.backend.other().tool();
            match self.tagged_in(other, tag_prefix) {
                Ok(lines) if !lines.is_empty() => removed += self.remove_stale_in(other, tag_prefix, keep)?,
                Ok(_) | Err(HostError::Missing { .. } | HostError::Failed { .. }) => {}
                Err(e) => return Err(e),
            }
        }
        Ok(removed)
    }

    fn remove_stale_in(&self, tool: Tool, tag_prefix: &str, keep: &[String]) -> Result<usize, HostError> {
        let mut removed = 0;
        for line in self.tagged_in(tool, tag_prefix)? {
            if keep.iter().any(|k| k == tag_of(&line)) {
                continue;
            }
            // "-t nat -A POSTROUTING …" → "-t nat -D POSTROUTING …"
            let args: Vec<String> = std::iter::once("-w".to_string())
                .chain(split_rule(&line).into_iter().map(|w| if w == "-A" { "-D".into() } else { w }))
                .collect();
            self.run(tool.program, &args)?;
            removed += 1;
        }
        Ok(removed)
    }
}

/// Split an `iptables-save` line into words, honouring double quotes around comments.
fn split_rule(line: &str) -> Vec<String> {
    let mut words = Vec::new();
    let mut cur = String::new();
    let mut quoted = false;
    for c in line.chars() {
        match c {
            '"' => quoted = !quoted,
            ' ' if !quoted => {
                if !cur.is_empty() {
                    words.push(std::mem::take(&mut cur));
                }
            }
            c => cur.push(c),
        }
    }
    if !cur.is_empty() {
        words.push(cur);
    }
    words
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn iptables_save_lines_split_with_quoted_comments() {
        assert_eq!(
            split_rule(r#"-t nat -A POSTROUTING -s 10.0.0.2/32 -m comment --comment "banger:x y" -j MASQUERADE"#),
            [
                "-t",
                "nat",
                "-A",
                "POSTROUTING",
                "-s",
                "10.0.0.2/32",
                "-m",
                "comment",
                "--comment",
                "banger:x y",
                "-j",
                "MASQUERADE"
            ]
        );
    }

    const SAVE: &str = r#"# Generated by iptables-nft-save v1.8.9 (nf_tables)
*filter
:INPUT DROP [0:0]
:FORWARD DROP [0:0]
:OUTPUT ACCEPT [0:0]
:DOCKER-USER - [0:0]
-A INPUT -i bgt1 -p udp -m udp --dport 10053 -m comment --comment "banger:p:a" -j ACCEPT
-A FORWARD -j DOCKER-USER
-A DOCKER-USER -i bgt2 -m comment --comment "banger:p:b" -j ACCEPT
-A DOCKER-USER -j RETURN
COMMIT
*nat
:PREROUTING ACCEPT [0:0]
-A PREROUTING -i bgt1 -p udp -m udp --dport 53 -m comment --comment "banger:p:a" -j REDIRECT --to-ports 10053
-A POSTROUTING -s 10.0.0.2/32 ! -o bgt9 -m comment --comment "banger:other" -j MASQUERADE
COMMIT
"#;

    #[test]
    fn save_output_is_counted_and_searched_by_tag() {
        assert_eq!(count_rules(SAVE), 6);
        assert_eq!(count_rules(""), 0);
        let found = tagged_lines(SAVE, "banger:p:");
        assert_eq!(
            found,
            [
                r#"-t filter -A INPUT -i bgt1 -p udp -m udp --dport 10053 -m comment --comment "banger:p:a" -j ACCEPT"#,
                r#"-t filter -A DOCKER-USER -i bgt2 -m comment --comment "banger:p:b" -j ACCEPT"#,
                r#"-t nat -A PREROUTING -i bgt1 -p udp -m udp --dport 53 -m comment --comment "banger:p:a" -j REDIRECT --to-ports 10053"#,
            ]
        );
        assert_eq!(found.iter().map(|l| tag_of(l)).collect::<Vec<_>>(), ["p:a", "p:b", "p:a"]);
    }

    #[test]
    fn the_variant_comes_from_the_version_line() {
        assert_eq!(variant_of("iptables v1.8.9 (legacy)\n"), Backend::Legacy);
        assert_eq!(variant_of("iptables v1.8.9 (nf_tables)\n"), Backend::Nft);
        assert_eq!(Backend::Legacy.to_string(), "legacy");
        assert_eq!(Backend::Nft.to_string(), "nft");
    }

    #[test]
    fn a_forced_back_end_runs_its_own_program() {
        let fw = Firewall::in_netns("x").with_backend(Backend::Legacy);
        assert_eq!(fw.backend(), Backend::Legacy);
        assert_eq!(fw.tool().program, "iptables-legacy");
        assert_eq!(fw, Firewall::in_netns("x").with_backend(Backend::Legacy));
        assert_ne!(fw, Firewall::in_netns("x"));
    }
}

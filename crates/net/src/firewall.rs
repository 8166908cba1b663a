//! NAT for VMs created with `--nat`: the one module that touches the firewall (iptables; the
//! nf_tables variant on current Debian).
//!
//! Per VM, three rules tagged with the comment `banger:<tag>`:
//! - `nat POSTROUTING -s GUEST/32 ! -o TAP -j MASQUERADE`
//! - `filter FORWARD -i TAP -j ACCEPT`
//! - `filter FORWARD -o TAP -m conntrack --ctstate RELATED,ESTABLISHED -j ACCEPT`
//!
//! and `net.ipv4.ip_forward=1` (left on when the last VM goes: other software may rely on it).
//! Adding is idempotent (`-C` first) and all-or-nothing; removal takes exactly the tagged rules.
//! A [`Firewall`] can act inside a network namespace, which is how the tests run real rules
//! without touching the host's.

use banger_host::{HostError, run_root};
use std::net::Ipv4Addr;

/// Where the rules go: the host, or a named network namespace.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Firewall {
    netns: Option<String>,
}

/// One rule: table, chain, match/target arguments (without the comment).
struct Rule {
    table: &'static str,
    chain: &'static str,
    spec: Vec<String>,
}

impl Firewall {
    pub fn host() -> Firewall {
        Firewall { netns: None }
    }

    pub fn in_netns(name: &str) -> Firewall {
        Firewall { netns: Some(name.to_string()) }
    }

    fn run(&self, program: &str, args: &[String]) -> Result<std::process::Output, HostError> {
        match &self.netns {
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
        }
    }

    fn iptables(&self, table: &str, op: &str, chain: &str, spec: &[String], tag: &str) -> Result<bool, HostError> {
        let mut args = vec!["-w".to_string(), "-t".into(), table.into(), op.into(), chain.into()];
        if op == "-I" {
            args.push("1".into());
        }
        args.extend(spec.iter().cloned());
        args.extend(["-m".into(), "comment".into(), "--comment".into(), format!("banger:{tag}")]);
        match self.run("iptables", &args) {
            Ok(_) => Ok(true),
            // `-C` answers "no such rule" with exit status 1 and this message.
            Err(HostError::Failed { stderr, .. }) if op == "-C" && stderr.contains("does a matching rule exist") => {
                Ok(false)
            }
            Err(e) => Err(e),
        }
    }

    fn rules(tap: &str, guest: Ipv4Addr) -> [Rule; 3] {
        let s = |v: &[&str]| v.iter().map(|x| x.to_string()).collect::<Vec<_>>();
        [
            Rule {
                table: "nat",
                chain: "POSTROUTING",
                spec: s(&["-s", &format!("{guest}/32"), "!", "-o", tap, "-j", "MASQUERADE"]),
            },
            Rule { table: "filter", chain: "FORWARD", spec: s(&["-i", tap, "-j", "ACCEPT"]) },
            Rule {
                table: "filter",
                chain: "FORWARD",
                spec: s(&["-o", tap, "-m", "conntrack", "--ctstate", "RELATED,ESTABLISHED", "-j", "ACCEPT"]),
            },
        ]
    }

    /// Let the guest at `guest` behind `tap` reach the outside through the host.
    pub fn enable_nat(&self, tag: &str, tap: &str, guest: Ipv4Addr) -> Result<(), HostError> {
        self.run("sysctl", &["-q".into(), "-w".into(), "net.ipv4.ip_forward=1".into()])?;
        let mut added: Vec<&Rule> = Vec::new();
        let rules = Self::rules(tap, guest);
        for rule in &rules {
            if self.iptables(rule.table, "-C", rule.chain, &rule.spec, tag)? {
                continue;
            }
            let op = if rule.chain == "FORWARD" { "-I" } else { "-A" };
            if let Err(e) = self.iptables(rule.table, op, rule.chain, &rule.spec, tag) {
                for r in added {
                    let _ = self.iptables(r.table, "-D", r.chain, &r.spec, tag);
                }
                return Err(e);
            }
            added.push(rule);
        }
        Ok(())
    }

    /// Remove the NAT rules of `tag` (absent rules are fine).
    pub fn disable_nat(&self, tag: &str, tap: &str, guest: Ipv4Addr) -> Result<(), HostError> {
        for rule in &Self::rules(tap, guest) {
            while self.iptables(rule.table, "-C", rule.chain, &rule.spec, tag)? {
                self.iptables(rule.table, "-D", rule.chain, &rule.spec, tag)?;
            }
        }
        Ok(())
    }

    /// Every rule (as `iptables -S` prints it, with `-t TABLE` in front) whose comment starts
    /// with `banger:` + `tag_prefix`.
    pub fn tagged(&self, tag_prefix: &str) -> Result<Vec<String>, HostError> {
        let needle = format!("banger:{tag_prefix}");
        let mut found = Vec::new();
        for table in ["nat", "filter"] {
            let out = self.run("iptables", &["-w".into(), "-t".into(), table.into(), "-S".into()])?;
            for line in String::from_utf8_lossy(&out.stdout).lines() {
                if line.contains(&needle) {
                    found.push(format!("-t {table} {line}"));
                }
            }
        }
        Ok(found)
    }

    /// Delete every tagged rule of `tag_prefix` whose tag is not in `keep` (crash leftovers).
    pub fn remove_stale(&self, tag_prefix: &str, keep: &[String]) -> Result<usize, HostError> {
        let mut removed = 0;
        for line in self.tagged(tag_prefix)? {
            let tag = line.split("banger:").nth(1).unwrap_or("").split(['"', ' ']).next().unwrap_or("");
            if keep.iter().any(|k| k == tag) {
                continue;
            }
            // "-t nat -A POSTROUTING …" → "-t nat -D POSTROUTING …"
            let words = split_rule(&line);
            let args: Vec<String> = std::iter::once("-w".to_string())
                .chain(words.into_iter().map(|w| if w == "-A" { "-D".into() } else { w }))
                .collect();
            self.run("iptables", &args)?;
            removed += 1;
        }
        Ok(removed)
    }
}

/// Split an `iptables -S` line into words, honouring double quotes around comments.
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
}

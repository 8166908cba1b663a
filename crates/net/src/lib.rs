//! Guest networking.
//!
//! - [`addr`]: each VM gets a /30 out of the configured subnet (host side `.1`, guest `.2` of its
//!   block), a MAC derived from the guest address, and the kernel `ip=` argument.
//! - [`tap`]: one TAP device per VM, owned by the invoking user so the VMM can open it.
//! - [`firewall`]: NAT and the guests' DNS redirect (the one module that touches iptables).
//! - [`forward`]: published ports, relayed in user space by bangerd.
//! - [`outside`]: a throwaway namespace + veth "outside" network with a TCP server in it, for
//!   checking NAT (`banger verify --nat`) without traffic leaving the machine.
//! - [`resolver`]: `banger dns setup` — the host's resolver routes `.vm` to bangerd.
//!
//! Host changes go through [`banger_host::run_root`].

pub mod addr;
pub mod firewall;
pub mod forward;
pub mod outside;
pub mod resolver;
pub mod tap;

//! The DNS server bangerd embeds to publish running VMs as `<vm-name>.vm`.
//!
//! - [`Records`]: the `vm.` zone, VM name -> IPv4, updated by the daemon as VMs start and stop.
//! - [`Server`]: serves the zone on any number of addresses, each with a [`Role`]: the host's
//!   loopback listener ([`Role::Host`]) answers `.vm` only and refuses everything else, so it is
//!   never an open resolver; a listener on the host side of a VM link ([`Role::Guest`]) also
//!   forwards every other name to the upstream resolvers (see [`upstreams_from_resolv_conf`]).
//! - [`default_port`]: a stable per-installation port for the loopback listener.
//!
//! Answers for `vm.` are authoritative: `NAME.vm. A` (TTL [`TTL`]), NODATA for an existing name
//! with another type, NXDOMAIN for anything else, all negative answers carrying the zone's SOA.
//! Queries with another opcode get NOTIMP, more than one question FORMERR; packets that are not
//! a parsable query are ignored (UDP) or close the connection (TCP).
//!
//! Why not `hickory-server`'s `ServerFuture`: listeners come and go with VM links (one per TAP
//! host address) and `ServerFuture` cannot drop a single socket; only shutting the whole server
//! down closes them. Here each address's UDP socket and TCP listener are served by their own tokio
//! tasks, which [`Server::unlisten`] aborts, and `hickory-proto` only parses and encodes messages.

mod config;
mod forward;
mod records;
mod server;
mod zone;

pub use config::{default_port, upstreams_from_resolv_conf};
pub use records::Records;
pub use server::{Role, Server, ServerStats};

/// The zone served, as an absolute name.
pub const ZONE: &str = "vm.";
/// TTL of every record served (and the SOA minimum, so negative answers are cached as briefly).
pub const TTL: u32 = 5;

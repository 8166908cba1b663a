//! `banger internal …`: helpers banger runs itself (hidden from `--help`).

use crate::cli::InternalCommand;
use crate::error::{CliError, CliResult};
use std::io::Write;
use std::net::{SocketAddr, TcpListener};

pub fn run(cmd: InternalCommand) -> CliResult {
    match cmd {
        InternalCommand::PeerEcho { addr } => peer_echo(addr),
    }
}

/// Answer every connection on `addr` with the peer's IP address as seen here (one line), then
/// close it. `banger verify --nat` runs it in its outside network: a masqueraded guest shows up
/// as the host's address there.
fn peer_echo(addr: SocketAddr) -> CliResult {
    let listener = TcpListener::bind(addr).map_err(|e| CliError::failure(format!("cannot listen on {addr}: {e}")))?;
    let bound = listener.local_addr()?;
    let mut out = std::io::stdout().lock();
    writeln!(out, "listening {bound}")?;
    out.flush()?;
    drop(out);
    loop {
        match listener.accept() {
            Ok((mut conn, peer)) => {
                std::thread::spawn(move || {
                    let _ = writeln!(conn, "{}", peer.ip());
                });
            }
            // E.g. out of file descriptors: pause rather than spin.
            Err(_) => std::thread::sleep(std::time::Duration::from_millis(50)),
        }
    }
}

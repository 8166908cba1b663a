//! The listeners: one UDP socket and one TCP listener per address, each served by its own task.

use std::collections::HashMap;
use std::io;
use std::net::{IpAddr, SocketAddr};
use std::sync::atomic::{AtomicU64, Ordering};
use std::sync::{Arc, Mutex, MutexGuard, PoisonError};
use std::time::Duration;

use hickory_proto::op::{Message, ResponseCode};
use tokio::io::{AsyncReadExt, AsyncWriteExt};
use tokio::net::{TcpListener, TcpStream, UdpSocket};
use tokio::sync::Semaphore;
use tokio::task::{JoinHandle, JoinSet};
use tokio::time::{Instant, sleep, sleep_until, timeout};

use crate::Records;
use crate::forward::{Transport, forward};
use crate::zone::{self, Decision, Outcome};

/// Forwarded queries in flight at once, over all listeners; beyond it, SERVFAIL at once.
const MAX_FORWARDS: usize = 256;
/// Open TCP connections per listener; beyond it, new connections are closed at once.
const MAX_TCP_CONNECTIONS: usize = 64;
/// A TCP connection with no complete query (and nothing in flight) for this long is closed.
const TCP_IDLE: Duration = Duration::from_secs(10);
/// UDP queries larger than this are cut, fail to parse and are dropped.
const UDP_BUFFER: usize = 4096;
/// Back-off after a socket error, so a persistent one (e.g. out of file descriptors) cannot spin.
const ERROR_PAUSE: Duration = Duration::from_millis(20);

/// Who a listener serves.
#[derive(Clone, Copy, Debug, PartialEq, Eq, Hash, serde::Serialize)]
#[serde(rename_all = "snake_case")]
pub enum Role {
    /// The host, on loopback: answers `.vm` only; any other name is REFUSED (not an open
    /// resolver).
    Host,
    /// The host side of a VM link: `.vm` is answered, every other name is forwarded to the
    /// upstream resolvers.
    Guest,
}

/// What the server has done since it was created (all listeners).
#[derive(Clone, Copy, Debug, Default, PartialEq, Eq, serde::Serialize)]
pub struct ServerStats {
    /// NOERROR replies from the `vm.` zone (with an answer, or NODATA).
    pub answered: u64,
    /// NXDOMAIN replies from the `vm.` zone.
    pub nxdomain: u64,
    /// REFUSED replies (names outside `vm.` asked of a host listener).
    pub refused: u64,
    /// Upstream replies relayed to guests.
    pub forwarded: u64,
    /// SERVFAIL replies because no upstream answered or too many forwards were in flight.
    pub forward_failures: u64,
    /// FORMERR, NOTIMP and BADVERS replies.
    pub rejected: u64,
    /// Messages ignored (UDP) or connections closed (TCP) because they were not a parsable query.
    pub dropped: u64,
}

#[derive(Default)]
struct Counters {
    answered: AtomicU64,
    nxdomain: AtomicU64,
    refused: AtomicU64,
    forwarded: AtomicU64,
    forward_failures: AtomicU64,
    rejected: AtomicU64,
    dropped: AtomicU64,
}

impl Counters {
    fn bump(counter: &AtomicU64) {
        counter.fetch_add(1, Ordering::Relaxed);
    }

    fn outcome(&self, outcome: Outcome) {
        Self::bump(match outcome {
            Outcome::Answered => &self.answered,
            Outcome::NxDomain => &self.nxdomain,
            Outcome::Refused => &self.refused,
            Outcome::Rejected => &self.rejected,
        });
    }

    fn snapshot(&self) -> ServerStats {
        let get = |counter: &AtomicU64| counter.load(Ordering::Relaxed);
        ServerStats {
            answered: get(&self.answered),
            nxdomain: get(&self.nxdomain),
            refused: get(&self.refused),
            forwarded: get(&self.forwarded),
            forward_failures: get(&self.forward_failures),
            rejected: get(&self.rejected),
            dropped: get(&self.dropped),
        }
    }
}

/// The DNS server: the `vm.` zone served on any number of addresses, each with its own
/// [`Role`]. A cheap handle: clones control the same server. Dropping the last handle stops
/// every listener.
#[derive(Clone)]
pub struct Server {
    inner: Arc<Inner>,
}

/// What the serving tasks share (they do not hold [`Inner`], so dropping the last [`Server`]
/// handle drops it and stops them).
struct Shared {
    records: Records,
    upstream: Vec<SocketAddr>,
    stats: Counters,
    forwards: Arc<Semaphore>,
}

struct Inner {
    shared: Arc<Shared>,
    listeners: Mutex<HashMap<IpAddr, Listener>>,
    /// Tasks of unlistened addresses, aborted but perhaps not yet gone (still holding their
    /// sockets); listening on the same IP again waits for them.
    closing: Mutex<HashMap<IpAddr, Vec<JoinHandle<()>>>>,
    /// One `listen` at a time, so two cannot race to bind the same address.
    listen_lock: tokio::sync::Mutex<()>,
}

struct Listener {
    addr: SocketAddr,
    role: Role,
    client: Option<IpAddr>,
    tasks: [JoinHandle<()>; 2],
}

impl Drop for Inner {
    fn drop(&mut self) {
        for listener in lock(&self.listeners).values() {
            listener.tasks.iter().for_each(JoinHandle::abort);
        }
    }
}

fn lock<T>(mutex: &Mutex<T>) -> MutexGuard<'_, T> {
    mutex.lock().unwrap_or_else(PoisonError::into_inner)
}

impl Server {
    /// A server answering `vm.` from `records` and forwarding guests' other queries to
    /// `upstream` (tried in order; empty: guests get SERVFAIL for other names). It serves nothing
    /// until [`listen`](Self::listen).
    pub fn new(records: Records, upstream: Vec<SocketAddr>) -> Server {
        let shared =
            Shared { records, upstream, stats: Counters::default(), forwards: Arc::new(Semaphore::new(MAX_FORWARDS)) };
        Server {
            inner: Arc::new(Inner {
                shared: Arc::new(shared),
                listeners: Mutex::new(HashMap::new()),
                closing: Mutex::new(HashMap::new()),
                listen_lock: tokio::sync::Mutex::new(()),
            }),
        }
    }

    /// Binds UDP and TCP on `addr` (port 0: an ephemeral port, the same for both) and serves
    /// them on the current tokio runtime; returns the bound address.
    ///
    /// One listener per IP: listening again on an IP already served, with port 0 or its port and
    /// the same role, is a no-op returning the existing address; another port or role is an
    /// `AddrInUse` error (call [`unlisten`](Self::unlisten) first).
    ///
    /// Must be called within a tokio runtime (the tasks are spawned on it).
    pub async fn listen(&self, addr: SocketAddr, role: Role) -> io::Result<SocketAddr> {
        self.listen_for(addr, role, None).await
    }

    /// [`listen`](Self::listen), answering only `client` when given: datagrams from any other
    /// address are dropped and its TCP connections closed unanswered. A VM link's listener
    /// serves that VM alone, so nobody else (another local user, another VM, a neighbour that
    /// routes to the address) gets a resolver out of it.
    ///
    /// The sockets are bound with `IP_FREEBIND`, so a link's listener can be opened before its
    /// address is configured (while the VM is still starting).
    pub async fn listen_for(&self, addr: SocketAddr, role: Role, client: Option<IpAddr>) -> io::Result<SocketAddr> {
        let _one_at_a_time = self.inner.listen_lock.lock().await;
        if let Some(existing) = lock(&self.inner.listeners).get(&addr.ip()) {
            if (addr.port() == 0 || addr.port() == existing.addr.port())
                && role == existing.role
                && client == existing.client
            {
                return Ok(existing.addr);
            }
            return Err(io::Error::new(
                io::ErrorKind::AddrInUse,
                format!("DNS is already served on {} for {:?}", existing.addr, existing.role),
            ));
        }
        let closing = lock(&self.inner.closing).remove(&addr.ip());
        for task in closing.into_iter().flatten() {
            let _ = task.await;
        }

        let (udp, tcp) = bind(addr).await?;
        let bound = udp.local_addr()?;
        let udp_task = tokio::spawn(serve_udp(udp, role, client, self.inner.shared.clone()));
        let tcp_task = tokio::spawn(serve_tcp(tcp, role, client, self.inner.shared.clone()));
        let listener = Listener { addr: bound, role, client, tasks: [udp_task, tcp_task] };
        lock(&self.inner.listeners).insert(bound.ip(), listener);
        tracing::debug!(addr = %bound, ?role, "dns: listening");
        Ok(bound)
    }

    /// Stops serving `ip`: both sockets are closed promptly (their tasks, and the connections and
    /// forwards they started, are aborted). Not serving `ip` is fine.
    pub fn unlisten(&self, ip: IpAddr) {
        let Some(listener) = lock(&self.inner.listeners).remove(&ip) else { return };
        listener.tasks.iter().for_each(JoinHandle::abort);
        let mut closing = lock(&self.inner.closing);
        closing.retain(|_, tasks| {
            tasks.retain(|task| !task.is_finished());
            !tasks.is_empty()
        });
        closing.entry(ip).or_default().extend(listener.tasks);
        tracing::debug!(addr = %listener.addr, "dns: stopped listening");
    }

    /// The served addresses and their roles, sorted by address.
    pub fn listeners(&self) -> Vec<(SocketAddr, Role)> {
        let mut all: Vec<_> = lock(&self.inner.listeners).values().map(|l| (l.addr, l.role)).collect();
        all.sort_by_key(|(addr, _)| *addr);
        all
    }

    /// Counters since the server was created.
    pub fn stats(&self) -> ServerStats {
        self.inner.shared.stats.snapshot()
    }
}

impl std::fmt::Debug for Server {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("Server")
            .field("listeners", &self.listeners())
            .field("upstream", &self.inner.shared.upstream)
            .field("records", &self.inner.shared.records)
            .finish()
    }
}

/// UDP and TCP on the same address; with port 0, an ephemeral port free for both.
async fn bind(addr: SocketAddr) -> io::Result<(UdpSocket, TcpListener)> {
    if addr.port() != 0 {
        let udp = bind_udp(addr)?;
        let tcp = bind_tcp(addr)?;
        return Ok((udp, tcp));
    }
    let mut attempts = 0;
    loop {
        let udp = bind_udp(addr)?;
        match bind_tcp(udp.local_addr()?) {
            Ok(tcp) => return Ok((udp, tcp)),
            Err(error) if error.kind() == io::ErrorKind::AddrInUse && attempts < 16 => attempts += 1,
            Err(error) => return Err(error),
        }
    }
}

fn socket(addr: SocketAddr, kind: socket2::Type) -> io::Result<socket2::Socket> {
    let socket = socket2::Socket::new(socket2::Domain::for_address(addr), kind, None)?;
    match addr {
        SocketAddr::V4(_) => socket.set_freebind_v4(true)?,
        SocketAddr::V6(_) => socket.set_freebind_v6(true)?,
    }
    socket.set_nonblocking(true)?;
    Ok(socket)
}

fn bind_udp(addr: SocketAddr) -> io::Result<UdpSocket> {
    let socket = socket(addr, socket2::Type::DGRAM)?;
    socket.bind(&addr.into())?;
    UdpSocket::from_std(socket.into())
}

fn bind_tcp(addr: SocketAddr) -> io::Result<TcpListener> {
    let socket = socket(addr, socket2::Type::STREAM)?;
    socket.set_reuse_address(true)?;
    socket.bind(&addr.into())?;
    socket.listen(128)?;
    TcpListener::from_std(socket.into())
}

type UdpReply = Option<(Vec<u8>, SocketAddr)>;

/// Serves one UDP socket until aborted. Forwarded queries run as child tasks in a [`JoinSet`]
/// that hands their replies back here, so this task is the socket's only owner (aborting it
/// closes the socket and aborts the forwards).
async fn serve_udp(socket: UdpSocket, role: Role, client: Option<IpAddr>, shared: Arc<Shared>) {
    let mut buf = vec![0u8; UDP_BUFFER];
    let mut forwards: JoinSet<UdpReply> = JoinSet::new();
    loop {
        tokio::select! {
            received = socket.recv_from(&mut buf) => {
                let (n, peer) = match received {
                    Ok(received) => received,
                    Err(error) => {
                        tracing::debug!(%error, "dns: udp receive failed");
                        sleep(ERROR_PAUSE).await;
                        continue;
                    }
                };
                if client.is_some_and(|c| c != peer.ip()) {
                    Counters::bump(&shared.stats.dropped);
                    tracing::debug!(%peer, "dns: udp message from a stranger ignored");
                    continue;
                }
                let raw = &buf[..n];
                match zone::decide(raw, &shared.records, role) {
                    Decision::Reply { reply, outcome, udp_limit } => {
                        shared.stats.outcome(outcome);
                        tracing::debug!(%peer, question = zone::describe(&reply), rcode = %reply.metadata.response_code, "dns: udp answer");
                        if let Some(bytes) = zone::encode_udp(&reply, udp_limit) {
                            send_udp(&socket, &bytes, peer).await;
                        }
                    }
                    Decision::Forward(query) => match shared.forwards.clone().try_acquire_owned() {
                        Ok(permit) => {
                            let raw = raw.to_vec();
                            let shared = shared.clone();
                            forwards.spawn(async move {
                                let reply = forward_udp(&raw, &query, &shared).await;
                                drop(permit);
                                reply.map(|bytes| (bytes, peer))
                            });
                        }
                        Err(_) => {
                            let reply = too_busy(&query, &shared);
                            if let Some(bytes) = zone::encode_udp(&reply, zone::udp_limit(Some(&query))) {
                                send_udp(&socket, &bytes, peer).await;
                            }
                        }
                    },
                    Decision::Drop(why) => {
                        Counters::bump(&shared.stats.dropped);
                        tracing::debug!(%peer, why, "dns: udp message ignored");
                    }
                }
            }
            Some(done) = forwards.join_next(), if !forwards.is_empty() => {
                if let Ok(Some((bytes, peer))) = done {
                    send_udp(&socket, &bytes, peer).await;
                }
            }
        }
    }
}

async fn send_udp(socket: &UdpSocket, bytes: &[u8], peer: SocketAddr) {
    if let Err(error) = socket.send_to(bytes, peer).await {
        tracing::debug!(%peer, %error, "dns: udp send failed");
    }
}

/// A guest's UDP query relayed upstream; the bytes to send back.
async fn forward_udp(raw: &[u8], query: &Message, shared: &Shared) -> Option<Vec<u8>> {
    let limit = zone::udp_limit(Some(query));
    match forward(raw, &shared.upstream, Transport::Udp).await {
        Some(reply) => {
            Counters::bump(&shared.stats.forwarded);
            tracing::debug!(question = zone::describe(query), bytes = reply.len(), "dns: forwarded over udp");
            if reply.len() <= limit {
                return Some(reply);
            }
            // The upstream ignored the client's size: tell the client to retry over TCP.
            let mut truncated = zone::reply_to(query, Role::Guest, ResponseCode::NoError);
            truncated.metadata.truncation = true;
            zone::encode(&truncated)
        }
        None => zone::encode_udp(&servfail(query, shared), limit),
    }
}

fn servfail(query: &Message, shared: &Shared) -> Message {
    Counters::bump(&shared.stats.forward_failures);
    tracing::debug!(question = zone::describe(query), "dns: no upstream answered, SERVFAIL");
    zone::reply_to(query, Role::Guest, ResponseCode::ServFail)
}

fn too_busy(query: &Message, shared: &Shared) -> Message {
    tracing::debug!("dns: too many forwards in flight");
    servfail(query, shared)
}

/// Accepts TCP connections until aborted; each is served by a child task (aborted with this one).
async fn serve_tcp(listener: TcpListener, role: Role, client: Option<IpAddr>, shared: Arc<Shared>) {
    let mut connections = JoinSet::new();
    loop {
        tokio::select! {
            accepted = listener.accept() => match accepted {
                Ok((stream, peer)) => {
                    if client.is_some_and(|c| c != peer.ip()) {
                        Counters::bump(&shared.stats.dropped);
                        tracing::debug!(%peer, "dns: tcp connection from a stranger closed");
                        continue;
                    }
                    if connections.len() >= MAX_TCP_CONNECTIONS {
                        tracing::debug!(%peer, "dns: too many tcp connections, closing a new one");
                        continue;
                    }
                    connections.spawn(serve_connection(stream, peer, role, shared.clone()));
                }
                Err(error) => {
                    tracing::debug!(%error, "dns: tcp accept failed");
                    sleep(ERROR_PAUSE).await;
                }
            },
            Some(_) = connections.join_next(), if !connections.is_empty() => {}
        }
    }
}

/// One TCP connection: length-prefixed queries, any number, answered as they complete (local
/// answers at once, forwarded ones when the upstream replies, possibly out of order as RFC 7766
/// allows). Closed on EOF (after the forwards in flight), idle timeout, a malformed message or
/// an I/O error.
async fn serve_connection(mut stream: TcpStream, peer: SocketAddr, role: Role, shared: Arc<Shared>) {
    let _ = stream.set_nodelay(true);
    let mut pending: Vec<u8> = Vec::new();
    let mut chunk = vec![0u8; 4096];
    let mut forwards: JoinSet<Option<Vec<u8>>> = JoinSet::new();
    let mut deadline = Instant::now() + TCP_IDLE;
    let mut eof = false;
    loop {
        while let Some(frame) = take_frame(&mut pending) {
            deadline = Instant::now() + TCP_IDLE;
            match zone::decide(&frame, &shared.records, role) {
                Decision::Reply { reply, outcome, .. } => {
                    shared.stats.outcome(outcome);
                    tracing::debug!(%peer, question = zone::describe(&reply), rcode = %reply.metadata.response_code, "dns: tcp answer");
                    let Some(bytes) = zone::encode(&reply) else { return };
                    if !write_frame(&mut stream, &bytes).await {
                        return;
                    }
                }
                Decision::Forward(query) => match shared.forwards.clone().try_acquire_owned() {
                    Ok(permit) => {
                        let shared = shared.clone();
                        forwards.spawn(async move {
                            let reply = match forward(&frame, &shared.upstream, Transport::Tcp).await {
                                Some(reply) => {
                                    Counters::bump(&shared.stats.forwarded);
                                    tracing::debug!(question = zone::describe(&query), "dns: forwarded over tcp");
                                    Some(reply)
                                }
                                None => zone::encode(&servfail(&query, &shared)),
                            };
                            drop(permit);
                            reply
                        });
                    }
                    Err(_) => {
                        let Some(bytes) = zone::encode(&too_busy(&query, &shared)) else { return };
                        if !write_frame(&mut stream, &bytes).await {
                            return;
                        }
                    }
                },
                Decision::Drop(why) => {
                    Counters::bump(&shared.stats.dropped);
                    tracing::debug!(%peer, why, "dns: closing tcp connection");
                    return;
                }
            }
        }
        if eof {
            // The client is done sending; finish what it asked, then close.
            while let Some(done) = forwards.join_next().await {
                if let Ok(Some(bytes)) = done
                    && !write_frame(&mut stream, &bytes).await
                {
                    return;
                }
            }
            return;
        }
        tokio::select! {
            read = stream.read(&mut chunk) => match read {
                Ok(0) => eof = true,
                Ok(n) => pending.extend_from_slice(&chunk[..n]),
                Err(_) => return,
            },
            Some(done) = forwards.join_next(), if !forwards.is_empty() => {
                if let Ok(Some(bytes)) = done {
                    deadline = Instant::now() + TCP_IDLE;
                    if !write_frame(&mut stream, &bytes).await {
                        return;
                    }
                }
            }
            () = sleep_until(deadline), if forwards.is_empty() => {
                tracing::debug!(%peer, "dns: tcp connection idle, closing");
                return;
            }
        }
    }
}

/// The first complete length-prefixed message in `pending`, removed from it.
fn take_frame(pending: &mut Vec<u8>) -> Option<Vec<u8>> {
    let len = usize::from(u16::from_be_bytes([*pending.first()?, *pending.get(1)?]));
    if pending.len() < 2 + len {
        return None;
    }
    let frame = pending[2..2 + len].to_vec();
    pending.drain(..2 + len);
    Some(frame)
}

/// Writes one length-prefixed message; false if the connection is unusable.
async fn write_frame(stream: &mut TcpStream, message: &[u8]) -> bool {
    let Ok(len) = u16::try_from(message.len()) else { return false };
    let mut frame = Vec::with_capacity(message.len() + 2);
    frame.extend_from_slice(&len.to_be_bytes());
    frame.extend_from_slice(message);
    matches!(timeout(TCP_IDLE, stream.write_all(&frame)).await, Ok(Ok(())))
}

#[cfg(test)]
mod tests {
    use super::take_frame;

    #[test]
    fn frames_are_split_on_their_length_prefix() {
        let mut pending = vec![0, 3, b'a', b'b', b'c', 0, 1, b'x', 0];
        assert_eq!(take_frame(&mut pending), Some(b"abc".to_vec()));
        assert_eq!(take_frame(&mut pending), Some(b"x".to_vec()));
        assert_eq!(take_frame(&mut pending), None);
        pending.extend_from_slice(&[2, b'y']);
        assert_eq!(take_frame(&mut pending), None);
        pending.push(b'z');
        assert_eq!(take_frame(&mut pending), Some(b"yz".to_vec()));
        assert!(pending.is_empty());
    }
}

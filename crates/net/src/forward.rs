//! Port forwarding in user space: a host socket whose connections (TCP) or datagrams (UDP) are
//! relayed to an address in a guest. No root, no firewall rule: bangerd listens as the user.
//!
//! [`Forwarder`] owns a small tokio runtime of its own, so callers need none. [`Forwarder::open`]
//! binds at once (a taken port is an error right there) and relays until the returned
//! [`Forward`] is dropped; dropping it also ends every connection and UDP session it carried.
//! - TCP: each accepted connection gets its own connection to the target (`TCP_NODELAY` on both,
//!   relayed both ways; a half-close is passed on). A target that refuses or does not answer
//!   within [`CONNECT_TIMEOUT`] closes the client's connection.
//! - UDP: each client address is a session with its own socket connected to the target; replies
//!   go back to that client from the listening socket. A session idle for [`UDP_IDLE`] ends.

use std::collections::HashMap;
use std::io;
use std::net::SocketAddr;
use std::sync::{Arc, Mutex};
use std::time::Duration;
use tokio::net::{TcpListener, TcpStream, UdpSocket};
use tokio::sync::watch;
use tokio::task::JoinSet;

pub const CONNECT_TIMEOUT: Duration = Duration::from_secs(10);
pub const UDP_IDLE: Duration = Duration::from_secs(120);
/// Per forward: UDP client addresses relayed at once, TCP connections relayed at once (more are
/// closed as they come: anyone on the host can reach a published port).
const UDP_MAX_SESSIONS: usize = 1024;
const TCP_MAX_CONNECTIONS: usize = 1024;

#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Transport {
    Tcp,
    Udp,
}

/// Relays host sockets to guests on its own runtime.
pub struct Forwarder {
    rt: tokio::runtime::Runtime,
}

/// A forward in progress; dropping it closes the host socket (before `drop` returns, so the
/// port can be bound again at once) and everything it carried.
pub struct Forward {
    local: SocketAddr,
    stop: watch::Sender<bool>,
    /// Disconnected once the serving task has let go of the socket.
    closed: std::sync::mpsc::Receiver<()>,
}

impl Forward {
    /// The host address listened on (with the port picked when 0 was asked for).
    pub fn local_addr(&self) -> SocketAddr {
        self.local
    }
}

impl Drop for Forward {
    fn drop(&mut self) {
        let _ = self.stop.send(true);
        let _ = self.closed.recv_timeout(Duration::from_secs(5));
    }
}

impl Forwarder {
    pub fn new() -> io::Result<Forwarder> {
        let rt = tokio::runtime::Builder::new_multi_thread()
            .worker_threads(2)
            .thread_name("forward")
            .enable_io()
            .enable_time()
            .build()?;
        Ok(Forwarder { rt })
    }

    /// Listen on `listen` and relay to `target` until the [`Forward`] is dropped. The socket is
    /// bound before this returns: `AddrInUse` and the like come from here.
    pub fn open(&self, transport: Transport, listen: SocketAddr, target: SocketAddr) -> io::Result<Forward> {
        let (stop, stopped) = watch::channel(false);
        let (done, closed) = std::sync::mpsc::channel::<()>();
        let _guard = self.rt.enter();
        let local = match transport {
            Transport::Tcp => {
                let std = std::net::TcpListener::bind(listen)?;
                std.set_nonblocking(true)?;
                let listener = TcpListener::from_std(std)?;
                let local = listener.local_addr()?;
                self.rt.spawn(async move {
                    serve_tcp(listener, target, stopped).await;
                    drop(done);
                });
                local
            }
            Transport::Udp => {
                let std = std::net::UdpSocket::bind(listen)?;
                std.set_nonblocking(true)?;
                let socket = UdpSocket::from_std(std)?;
                let local = socket.local_addr()?;
                self.rt.spawn(async move {
                    serve_udp(Arc::new(socket), target, stopped).await;
                    drop(done);
                });
                local
            }
        };
        Ok(Forward { local, stop, closed })
    }
}

async fn until_stopped(mut stopped: watch::Receiver<bool>) {
    // A dropped sender (the Forward is gone) also ends it.
    let _ = stopped.wait_for(|s| *s).await;
}

async fn serve_tcp(listener: TcpListener, target: SocketAddr, stopped: watch::Receiver<bool>) {
    let mut conns = JoinSet::new();
    let accept = async {
        loop {
            match listener.accept().await {
                Ok((client, _)) => {
                    // Reap finished connections so the set does not grow with the listener's age.
                    while conns.try_join_next().is_some() {}
                    if conns.len() < TCP_MAX_CONNECTIONS {
                        conns.spawn(relay_tcp(client, target));
                    }
                }
                // Out of descriptors and the like: wait instead of spinning.
                Err(_) => tokio::time::sleep(Duration::from_millis(100)).await,
            }
        }
    };
    tokio::select! {
        () = accept => {}
        () = until_stopped(stopped) => {}
    }
    // Every connection still relayed ends, and is gone before this returns.
    conns.shutdown().await;
}

async fn relay_tcp(mut client: TcpStream, target: SocketAddr) {
    let Ok(Ok(mut upstream)) = tokio::time::timeout(CONNECT_TIMEOUT, TcpStream::connect(target)).await else {
        return;
    };
    let _ = client.set_nodelay(true);
    let _ = upstream.set_nodelay(true);
    let _ = tokio::io::copy_bidirectional_with_sizes(&mut client, &mut upstream, 256 << 10, 256 << 10).await;
}

async fn serve_udp(socket: Arc<UdpSocket>, target: SocketAddr, stopped: watch::Receiver<bool>) {
    let sessions: Arc<Mutex<HashMap<SocketAddr, Arc<UdpSocket>>>> = Arc::default();
    let mut tasks = JoinSet::new();
    let relay = async {
        let mut buf = vec![0u8; 65536];
        loop {
            let Ok((n, client)) = socket.recv_from(&mut buf).await else {
                tokio::time::sleep(Duration::from_millis(10)).await;
                continue;
            };
            let existing = sessions.lock().unwrap_or_else(|e| e.into_inner()).get(&client).cloned();
            let upstream = match existing {
                Some(u) => u,
                None => {
                    if sessions.lock().unwrap_or_else(|e| e.into_inner()).len() >= UDP_MAX_SESSIONS {
                        continue;
                    }
                    let bind: SocketAddr =
                        if target.is_ipv4() { "0.0.0.0:0".parse().unwrap() } else { "[::]:0".parse().unwrap() };
                    let Ok(u) = UdpSocket::bind(bind).await else { continue };
                    if u.connect(target).await.is_err() {
                        continue;
                    }
                    let u = Arc::new(u);
                    sessions.lock().unwrap_or_else(|e| e.into_inner()).insert(client, u.clone());
                    tasks.spawn(udp_replies(u.clone(), socket.clone(), client, sessions.clone()));
                    u
                }
            };
            let _ = upstream.send(&buf[..n]).await;
            while tasks.try_join_next().is_some() {}
        }
    };
    tokio::select! {
        () = relay => {}
        () = until_stopped(stopped) => {}
    }
    // The sessions hold the listening socket too: it is closed once they are gone.
    tasks.shutdown().await;
}

/// Replies from the target to one client, until the session idles out.
async fn udp_replies(
    upstream: Arc<UdpSocket>,
    socket: Arc<UdpSocket>,
    client: SocketAddr,
    sessions: Arc<Mutex<HashMap<SocketAddr, Arc<UdpSocket>>>>,
) {
    let mut buf = vec![0u8; 65536];
    // Idle means no reply for UDP_IDLE; a client that keeps sending without replies coming also
    // ends here and simply gets a new session with its next datagram.
    while let Ok(Ok(n)) = tokio::time::timeout(UDP_IDLE, upstream.recv(&mut buf)).await {
        let _ = socket.send_to(&buf[..n], client).await;
    }
    sessions.lock().unwrap_or_else(|e| e.into_inner()).remove(&client);
}

#[cfg(test)]
mod tests {
    use super::*;
    use std::io::{Read, Write};
    use std::net::{TcpListener as StdListener, TcpStream as StdStream, UdpSocket as StdUdp};

    fn local() -> SocketAddr {
        "127.0.0.1:0".parse().unwrap()
    }

    /// A TCP echo server on a thread; answers every connection until the process ends.
    fn echo_server() -> SocketAddr {
        let l = StdListener::bind(local()).unwrap();
        let addr = l.local_addr().unwrap();
        std::thread::spawn(move || {
            for c in l.incoming().flatten() {
                std::thread::spawn(move || {
                    let mut c = c;
                    let mut buf = [0u8; 65536];
                    while let Ok(n) = c.read(&mut buf) {
                        if n == 0 || c.write_all(&buf[..n]).is_err() {
                            break;
                        }
                    }
                });
            }
        });
        addr
    }

    #[test]
    fn tcp_is_relayed_both_ways_and_ends_when_dropped() {
        let fwd = Forwarder::new().unwrap();
        let target = echo_server();
        let f = fwd.open(Transport::Tcp, local(), target).unwrap();
        assert_ne!(f.local_addr().port(), 0, "the picked port is reported");
        let mut c = StdStream::connect(f.local_addr()).unwrap();
        c.set_read_timeout(Some(Duration::from_secs(5))).unwrap();
        let data: Vec<u8> = (0..4 << 20).map(|i| (i * 7 % 251) as u8).collect();
        let mut w = c.try_clone().unwrap();
        let sent = data.clone();
        let writer = std::thread::spawn(move || w.write_all(&sent).unwrap());
        let mut back = vec![0u8; data.len()];
        c.read_exact(&mut back).unwrap();
        writer.join().unwrap();
        assert!(back == data, "4 MiB came back intact");
        let port = f.local_addr();
        drop(f);
        // The open connection is cut and the port is free again.
        let mut one = [0u8; 1];
        assert!(matches!(c.read(&mut one), Ok(0) | Err(_)), "the relayed connection ends with the forward");
        std::thread::sleep(Duration::from_millis(100));
        assert!(StdStream::connect(port).is_err(), "nothing listens after the forward is dropped");
        StdListener::bind(port).expect("the port can be bound again");
    }

    #[test]
    fn a_taken_port_is_an_error_at_open() {
        let fwd = Forwarder::new().unwrap();
        let taken = StdListener::bind(local()).unwrap();
        let e = fwd.open(Transport::Tcp, taken.local_addr().unwrap(), echo_server()).err().unwrap();
        assert_eq!(e.kind(), io::ErrorKind::AddrInUse);
    }

    #[test]
    fn a_target_that_refuses_closes_the_client() {
        let fwd = Forwarder::new().unwrap();
        let nobody = StdListener::bind(local()).unwrap().local_addr().unwrap(); // bound, then closed
        let f = fwd.open(Transport::Tcp, local(), nobody).unwrap();
        let mut c = StdStream::connect(f.local_addr()).unwrap();
        c.set_read_timeout(Some(Duration::from_secs(5))).unwrap();
        let mut one = [0u8; 1];
        assert!(matches!(c.read(&mut one), Ok(0) | Err(_)));
    }

    #[test]
    fn udp_sessions_get_their_own_replies() {
        let fwd = Forwarder::new().unwrap();
        let server = StdUdp::bind(local()).unwrap();
        let target = server.local_addr().unwrap();
        std::thread::spawn(move || {
            let mut buf = [0u8; 2048];
            while let Ok((n, from)) = server.recv_from(&mut buf) {
                let mut reply = b"re:".to_vec();
                reply.extend_from_slice(&buf[..n]);
                let _ = server.send_to(&reply, from);
            }
        });
        let f = fwd.open(Transport::Udp, local(), target).unwrap();
        let clients: Vec<StdUdp> = (0..3).map(|_| StdUdp::bind(local()).unwrap()).collect();
        for round in 0..3 {
            for (i, c) in clients.iter().enumerate() {
                c.set_read_timeout(Some(Duration::from_secs(5))).unwrap();
                c.send_to(format!("{i}.{round}").as_bytes(), f.local_addr()).unwrap();
                let mut buf = [0u8; 64];
                let (n, from) = c.recv_from(&mut buf).unwrap();
                assert_eq!(&buf[..n], format!("re:{i}.{round}").as_bytes());
                assert_eq!(from, f.local_addr(), "replies come from the published address");
            }
        }
        let addr = f.local_addr();
        drop(f);
        StdUdp::bind(addr).expect("the port is free as soon as the forward is dropped");
    }
}

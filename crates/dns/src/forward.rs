//! Relaying guests' queries for names outside `vm.` to the upstream resolvers.

use std::io;
use std::net::{Ipv4Addr, Ipv6Addr, SocketAddr};
use std::time::Duration;

use tokio::io::{AsyncReadExt, AsyncWriteExt};
use tokio::net::{TcpStream, UdpSocket};
use tokio::time::timeout;

/// How long one upstream gets before the next is tried.
pub(crate) const UPSTREAM_TIMEOUT: Duration = Duration::from_secs(2);

#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub(crate) enum Transport {
    Udp,
    Tcp,
}

/// Sends `query` (raw bytes, at least a header) to each upstream in turn over `transport` and
/// returns the first reply, unchanged. A SERVFAIL or REFUSED reply is kept but the next upstream
/// is still tried; it is returned only if no upstream does better. `None`: nobody answered.
pub(crate) async fn forward(query: &[u8], upstreams: &[SocketAddr], transport: Transport) -> Option<Vec<u8>> {
    let mut fallback = None;
    for &upstream in upstreams {
        let attempt = async {
            match transport {
                Transport::Udp => ask_udp(query, upstream).await,
                Transport::Tcp => ask_tcp(query, upstream).await,
            }
        };
        match timeout(UPSTREAM_TIMEOUT, attempt).await {
            Ok(Ok(reply)) => {
                let rcode = reply[3] & 0x0f;
                if rcode == 2 || rcode == 5 {
                    tracing::debug!(%upstream, rcode, "dns: upstream failed the query, trying the next");
                    fallback = Some(reply);
                    continue;
                }
                return Some(reply);
            }
            Ok(Err(error)) => tracing::debug!(%upstream, ?transport, %error, "dns: upstream failed"),
            Err(_) => tracing::debug!(%upstream, ?transport, "dns: upstream timed out"),
        }
    }
    fallback
}

/// One query on a fresh connected socket (a random source port per query, and the kernel drops
/// datagrams from anyone but the upstream); anything that is not a reply with our ID is ignored.
async fn ask_udp(query: &[u8], upstream: SocketAddr) -> io::Result<Vec<u8>> {
    let local: SocketAddr = match upstream {
        SocketAddr::V4(_) => (Ipv4Addr::UNSPECIFIED, 0).into(),
        SocketAddr::V6(_) => (Ipv6Addr::UNSPECIFIED, 0).into(),
    };
    let socket = UdpSocket::bind(local).await?;
    socket.connect(upstream).await?;
    socket.send(query).await?;
    let mut buf = vec![0u8; 65535];
    loop {
        let n = socket.recv(&mut buf).await?;
        if is_reply_to(query, &buf[..n]) {
            buf.truncate(n);
            return Ok(buf);
        }
    }
}

async fn ask_tcp(query: &[u8], upstream: SocketAddr) -> io::Result<Vec<u8>> {
    let len = u16::try_from(query.len()).map_err(|_| io::Error::other("query too long for TCP"))?;
    let mut stream = TcpStream::connect(upstream).await?;
    stream.set_nodelay(true)?;
    let mut frame = Vec::with_capacity(query.len() + 2);
    frame.extend_from_slice(&len.to_be_bytes());
    frame.extend_from_slice(query);
    stream.write_all(&frame).await?;
    let mut len = [0u8; 2];
    stream.read_exact(&mut len).await?;
    let mut reply = vec![0u8; usize::from(u16::from_be_bytes(len))];
    stream.read_exact(&mut reply).await?;
    if !is_reply_to(query, &reply) {
        return Err(io::Error::new(io::ErrorKind::InvalidData, "upstream reply does not match the query"));
    }
    Ok(reply)
}

/// At least a header, QR set, and the query's ID.
fn is_reply_to(query: &[u8], reply: &[u8]) -> bool {
    reply.len() >= 12 && reply[2] & 0x80 != 0 && reply[..2] == query[..2]
}

//! The server over real sockets on 127.0.0.1 (ephemeral ports), queried and parsed with
//! hickory-proto.

use std::net::{IpAddr, Ipv4Addr, SocketAddr};
use std::sync::Arc;
use std::sync::atomic::{AtomicUsize, Ordering};
use std::time::{Duration, Instant};

use banger_dns::{Records, Role, Server, TTL};
use hickory_proto::op::{Edns, Message, MessageType, OpCode, Query, ResponseCode};
use hickory_proto::rr::rdata::A;
use hickory_proto::rr::{Name, RData, Record, RecordType};
use tokio::io::{AsyncReadExt, AsyncWriteExt};
use tokio::net::{TcpListener, TcpStream, UdpSocket};
use tokio::time::timeout;

const LOCALHOST: SocketAddr = SocketAddr::new(IpAddr::V4(Ipv4Addr::LOCALHOST), 0);
const DEV_IP: Ipv4Addr = Ipv4Addr::new(172, 30, 0, 2);
const UPSTREAM_ANSWER: Ipv4Addr = Ipv4Addr::new(192, 0, 2, 7);

fn query(id: u16, name: &str, rtype: RecordType) -> Message {
    let mut message = Message::query();
    message.metadata.id = id;
    message.metadata.recursion_desired = true;
    message.add_query(Query::query(Name::from_ascii(name).unwrap(), rtype));
    message
}

fn with_edns(mut message: Message, payload: u16) -> Message {
    let mut edns = Edns::new();
    edns.set_max_payload(payload);
    message.set_edns(edns);
    message
}

/// Sends `message` over UDP; `None` if nothing comes back within `wait`.
async fn ask_udp_bytes(server: SocketAddr, bytes: &[u8], wait: Duration) -> Option<Message> {
    let socket = UdpSocket::bind(LOCALHOST).await.unwrap();
    socket.connect(server).await.unwrap();
    socket.send(bytes).await.unwrap();
    let mut buf = vec![0u8; 65535];
    // A refused port shows up as an error on a connected socket: also "no answer".
    let n = timeout(wait, socket.recv(&mut buf)).await.ok()?.ok()?;
    Some(Message::from_vec(&buf[..n]).expect("the reply parses"))
}

async fn ask_udp(server: SocketAddr, message: &Message) -> Message {
    ask_udp_bytes(server, &message.to_vec().unwrap(), Duration::from_secs(5)).await.expect("an answer over UDP")
}

async fn ask(server: SocketAddr, name: &str, rtype: RecordType) -> Message {
    let id = rand_id();
    let reply = ask_udp(server, &query(id, name, rtype)).await;
    assert_eq!(reply.metadata.id, id);
    assert_eq!(reply.metadata.message_type, MessageType::Response);
    reply
}

fn rand_id() -> u16 {
    static NEXT: AtomicUsize = AtomicUsize::new(0x1234);
    NEXT.fetch_add(7919, Ordering::Relaxed) as u16
}

async fn write_frame(stream: &mut TcpStream, message: &Message) {
    let bytes = message.to_vec().unwrap();
    let mut frame = (bytes.len() as u16).to_be_bytes().to_vec();
    frame.extend_from_slice(&bytes);
    stream.write_all(&frame).await.unwrap();
}

async fn read_frame(stream: &mut TcpStream) -> Message {
    let mut len = [0u8; 2];
    timeout(Duration::from_secs(5), stream.read_exact(&mut len)).await.unwrap().unwrap();
    let mut buf = vec![0u8; u16::from_be_bytes(len).into()];
    stream.read_exact(&mut buf).await.unwrap();
    Message::from_vec(&buf).unwrap()
}

async fn ask_tcp(server: SocketAddr, message: &Message) -> Message {
    let mut stream = TcpStream::connect(server).await.unwrap();
    write_frame(&mut stream, message).await;
    read_frame(&mut stream).await
}

fn a_answers(reply: &Message) -> Vec<Ipv4Addr> {
    reply
        .answers
        .iter()
        .filter_map(|record| match &record.data {
            RData::A(a) => Some(a.0),
            _ => None,
        })
        .collect()
}

/// The SOA in the authority section (negative answers), checked for what the zone promises.
fn assert_soa_authority(reply: &Message) {
    assert_eq!(reply.authorities.len(), 1, "{reply}");
    let record = &reply.authorities[0];
    assert_eq!(record.name, Name::from_ascii("vm.").unwrap());
    let RData::SOA(soa) = &record.data else { panic!("not an SOA: {record}") };
    assert_eq!(soa.mname, Name::from_ascii("ns.vm.").unwrap());
    assert_eq!(soa.minimum, TTL);
}

async fn host_server() -> (Server, Records, SocketAddr) {
    let records = Records::new();
    records.set("dev", DEV_IP);
    let server = Server::new(records.clone(), Vec::new());
    let addr = server.listen(LOCALHOST, Role::Host).await.unwrap();
    (server, records, addr)
}

/// A stand-in upstream resolver on UDP and TCP (same port): answers every A question with
/// 192.0.2.7, and `big.example.` with 40 addresses (over 512 bytes).
struct FakeUpstream {
    addr: SocketAddr,
    udp_queries: Arc<AtomicUsize>,
    tcp_queries: Arc<AtomicUsize>,
}

impl FakeUpstream {
    async fn start() -> FakeUpstream {
        let udp = UdpSocket::bind(LOCALHOST).await.unwrap();
        let addr = udp.local_addr().unwrap();
        let tcp = TcpListener::bind(addr).await.unwrap();
        let udp_queries = Arc::new(AtomicUsize::new(0));
        let tcp_queries = Arc::new(AtomicUsize::new(0));
        let counter = udp_queries.clone();
        tokio::spawn(async move {
            let mut buf = vec![0u8; 4096];
            while let Ok((n, peer)) = udp.recv_from(&mut buf).await {
                counter.fetch_add(1, Ordering::SeqCst);
                let reply = Self::answer(&buf[..n]);
                udp.send_to(&reply, peer).await.unwrap();
            }
        });
        let counter = tcp_queries.clone();
        tokio::spawn(async move {
            while let Ok((mut stream, _)) = tcp.accept().await {
                let counter = counter.clone();
                tokio::spawn(async move {
                    let mut len = [0u8; 2];
                    while stream.read_exact(&mut len).await.is_ok() {
                        let mut buf = vec![0u8; u16::from_be_bytes(len).into()];
                        stream.read_exact(&mut buf).await.unwrap();
                        counter.fetch_add(1, Ordering::SeqCst);
                        let reply = Self::answer(&buf);
                        let mut frame = (reply.len() as u16).to_be_bytes().to_vec();
                        frame.extend_from_slice(&reply);
                        stream.write_all(&frame).await.unwrap();
                    }
                });
            }
        });
        FakeUpstream { addr, udp_queries, tcp_queries }
    }

    fn answer(raw: &[u8]) -> Vec<u8> {
        let query = Message::from_vec(raw).unwrap();
        let mut reply = Message::response(query.metadata.id, OpCode::Query);
        reply.metadata.recursion_desired = query.metadata.recursion_desired;
        reply.metadata.recursion_available = true;
        reply.queries = query.queries.clone();
        let name = query.queries[0].name.clone();
        let count = if name.to_ascii().starts_with("big.") { 40 } else { 1 };
        for i in 0..count {
            let ip = if count == 1 { UPSTREAM_ANSWER } else { Ipv4Addr::new(198, 51, 100, i) };
            reply.add_answer(Record::from_rdata(name.clone(), 60, RData::A(A(ip))));
        }
        reply.to_vec().unwrap()
    }
}

#[tokio::test]
async fn a_record_resolves_authoritatively_with_ttl_5() {
    let (_server, _records, addr) = host_server().await;
    let reply = ask(addr, "dev.vm.", RecordType::A).await;
    assert_eq!(reply.metadata.response_code, ResponseCode::NoError);
    assert!(reply.metadata.authoritative, "AA set");
    assert!(reply.metadata.recursion_desired, "RD copied");
    assert!(!reply.metadata.recursion_available, "the host listener does not recurse");
    assert!(!reply.metadata.truncation);
    assert_eq!(a_answers(&reply), vec![DEV_IP]);
    assert_eq!(reply.answers[0].ttl, 5);
    assert_eq!(reply.answers[0].name, Name::from_ascii("dev.vm.").unwrap());
    assert_eq!(reply.queries.len(), 1, "the question is echoed");
}

#[tokio::test]
async fn names_are_case_insensitive() {
    let (_server, records, addr) = host_server().await;
    records.set("MixedCase", Ipv4Addr::new(172, 30, 0, 6));
    assert_eq!(a_answers(&ask(addr, "DeV.Vm.", RecordType::A).await), vec![DEV_IP]);
    assert_eq!(a_answers(&ask(addr, "mixedcase.VM.", RecordType::A).await), vec![Ipv4Addr::new(172, 30, 0, 6)]);
    // The answer's owner name is the question's, as asked.
    assert_eq!(ask(addr, "DEV.vm.", RecordType::A).await.answers[0].name.to_ascii(), "DEV.vm.");
}

#[tokio::test]
async fn unknown_removed_and_deep_names_are_nxdomain_with_soa() {
    let (server, records, addr) = host_server().await;
    records.set("gone", Ipv4Addr::new(172, 30, 0, 10));
    assert_eq!(a_answers(&ask(addr, "gone.vm.", RecordType::A).await).len(), 1);
    records.remove("gone");
    for name in ["gone.vm.", "never-existed.vm.", "a.dev.vm."] {
        let reply = ask(addr, name, RecordType::A).await;
        assert_eq!(reply.metadata.response_code, ResponseCode::NXDomain, "{name}");
        assert!(reply.metadata.authoritative, "{name}");
        assert!(reply.answers.is_empty(), "{name}");
        assert_soa_authority(&reply);
    }
    assert_eq!(server.stats().nxdomain, 3);
    assert_eq!(server.stats().answered, 1);
}

#[tokio::test]
async fn other_types_of_an_existing_name_are_nodata() {
    let (_server, _records, addr) = host_server().await;
    for rtype in [RecordType::AAAA, RecordType::MX, RecordType::TXT] {
        let reply = ask(addr, "dev.vm.", rtype).await;
        assert_eq!(reply.metadata.response_code, ResponseCode::NoError, "{rtype}");
        assert!(reply.metadata.authoritative);
        assert!(reply.answers.is_empty(), "{rtype}: {reply}");
        assert_soa_authority(&reply);
    }
    // ANY: the A record.
    assert_eq!(a_answers(&ask(addr, "dev.vm.", RecordType::ANY).await), vec![DEV_IP]);
}

#[tokio::test]
async fn apex_has_soa_and_ns() {
    let (_server, records, addr) = host_server().await;
    let reply = ask(addr, "vm.", RecordType::SOA).await;
    assert_eq!(reply.metadata.response_code, ResponseCode::NoError);
    assert!(reply.metadata.authoritative);
    assert_eq!(reply.answers.len(), 1);
    let RData::SOA(soa) = &reply.answers[0].data else { panic!("not an SOA: {reply}") };
    assert_eq!(soa.rname, Name::from_ascii("hostmaster.vm.").unwrap());
    assert_eq!(soa.minimum, TTL);
    // The serial follows the records.
    records.set("another", Ipv4Addr::new(172, 30, 0, 14));
    let RData::SOA(later) = &ask(addr, "VM.", RecordType::SOA).await.answers[0].data else { panic!() };
    assert_ne!(later.serial, soa.serial);

    let reply = ask(addr, "vm.", RecordType::NS).await;
    assert!(
        matches!(&reply.answers[..], [record] if record.data == RData::NS(hickory_proto::rr::rdata::NS(Name::from_ascii("ns.vm.").unwrap()))),
        "{reply}"
    );

    let reply = ask(addr, "vm.", RecordType::A).await;
    assert_eq!(reply.metadata.response_code, ResponseCode::NoError);
    assert!(reply.answers.is_empty());
    assert_soa_authority(&reply);
}

#[tokio::test]
async fn host_role_refuses_other_names_and_never_forwards() {
    let upstream = FakeUpstream::start().await;
    let records = Records::new();
    let server = Server::new(records, vec![upstream.addr]);
    let addr = server.listen(LOCALHOST, Role::Host).await.unwrap();
    let reply = ask(addr, "example.com.", RecordType::A).await;
    assert_eq!(reply.metadata.response_code, ResponseCode::Refused);
    assert!(reply.answers.is_empty());
    assert!(!reply.metadata.authoritative);
    let reply = ask_tcp(addr, &query(99, "example.com.", RecordType::A)).await;
    assert_eq!(reply.metadata.response_code, ResponseCode::Refused);
    assert_eq!(upstream.udp_queries.load(Ordering::SeqCst) + upstream.tcp_queries.load(Ordering::SeqCst), 0);
    assert_eq!(server.stats().refused, 2);
    assert_eq!(server.stats().forwarded, 0);
}

#[tokio::test]
async fn guest_role_forwards_other_names_keeping_the_id() {
    let upstream = FakeUpstream::start().await;
    let records = Records::new();
    records.set("dev", DEV_IP);
    let server = Server::new(records, vec![upstream.addr]);
    let addr = server.listen(LOCALHOST, Role::Guest).await.unwrap();

    let reply = ask_udp(addr, &query(0xbeef, "example.com.", RecordType::A)).await;
    assert_eq!(reply.metadata.id, 0xbeef);
    assert_eq!(reply.metadata.response_code, ResponseCode::NoError);
    assert_eq!(a_answers(&reply), vec![UPSTREAM_ANSWER]);
    assert_eq!(reply.answers[0].ttl, 60, "the upstream's reply, unchanged");
    assert_eq!(upstream.udp_queries.load(Ordering::SeqCst), 1);
    assert_eq!(server.stats().forwarded, 1);

    // `.vm` is still ours, with RA since this listener recurses.
    let reply = ask(addr, "dev.vm.", RecordType::A).await;
    assert_eq!(a_answers(&reply), vec![DEV_IP]);
    assert!(reply.metadata.authoritative && reply.metadata.recursion_available);
    assert_eq!(upstream.udp_queries.load(Ordering::SeqCst), 1, ".vm is never forwarded");
}

#[tokio::test]
async fn guest_tcp_queries_forward_over_tcp() {
    let upstream = FakeUpstream::start().await;
    let server = Server::new(Records::new(), vec![upstream.addr]);
    let addr = server.listen(LOCALHOST, Role::Guest).await.unwrap();
    let reply = ask_tcp(addr, &query(0x4242, "example.org.", RecordType::A)).await;
    assert_eq!(reply.metadata.id, 0x4242);
    assert_eq!(a_answers(&reply), vec![UPSTREAM_ANSWER]);
    assert_eq!(upstream.tcp_queries.load(Ordering::SeqCst), 1);
    assert_eq!(upstream.udp_queries.load(Ordering::SeqCst), 0);
}

#[tokio::test]
async fn big_upstream_replies_are_truncated_for_small_udp_clients() {
    let upstream = FakeUpstream::start().await;
    let server = Server::new(Records::new(), vec![upstream.addr]);
    let addr = server.listen(LOCALHOST, Role::Guest).await.unwrap();

    // No EDNS: 512 bytes at most, so TC and no records; the client retries over TCP.
    let reply = ask_udp(addr, &query(7, "big.example.", RecordType::A)).await;
    assert_eq!(reply.metadata.id, 7);
    assert!(reply.metadata.truncation, "TC set: {reply}");
    assert!(reply.answers.is_empty());
    let reply = ask_tcp(addr, &query(8, "big.example.", RecordType::A)).await;
    assert!(!reply.metadata.truncation);
    assert_eq!(a_answers(&reply).len(), 40);

    // A client that takes 4096 bytes gets it all over UDP.
    let reply = ask_udp(addr, &with_edns(query(9, "big.example.", RecordType::A), 4096)).await;
    assert!(!reply.metadata.truncation);
    assert_eq!(a_answers(&reply).len(), 40);
}

#[tokio::test]
async fn dead_upstreams_mean_servfail_within_seconds_and_do_not_block_vm_answers() {
    // One upstream that never answers (the 2 s timeout), one whose port is closed.
    let silent = UdpSocket::bind(LOCALHOST).await.unwrap();
    let closed = UdpSocket::bind(LOCALHOST).await.unwrap().local_addr().unwrap();
    let records = Records::new();
    records.set("dev", DEV_IP);
    let server = Server::new(records, vec![silent.local_addr().unwrap(), closed]);
    let addr = server.listen(LOCALHOST, Role::Guest).await.unwrap();

    let started = Instant::now();
    let forwarded = tokio::spawn(async move { ask_udp(addr, &query(0x5e5e, "example.net.", RecordType::A)).await });
    // Meanwhile `.vm` answers at once.
    tokio::time::sleep(Duration::from_millis(100)).await;
    let vm_started = Instant::now();
    assert_eq!(a_answers(&ask(addr, "dev.vm.", RecordType::A).await), vec![DEV_IP]);
    assert!(vm_started.elapsed() < Duration::from_millis(500), "a .vm answer waited for the upstream");

    let reply = forwarded.await.unwrap();
    let took = started.elapsed();
    assert_eq!(reply.metadata.id, 0x5e5e);
    assert_eq!(reply.metadata.response_code, ResponseCode::ServFail);
    assert!(reply.metadata.recursion_available);
    assert!(took >= Duration::from_millis(1500) && took < Duration::from_secs(4), "SERVFAIL after {took:?}");
    assert_eq!(server.stats().forward_failures, 1);

    // With no upstreams at all, SERVFAIL at once.
    let none = Server::new(Records::new(), Vec::new());
    let addr = none.listen(LOCALHOST, Role::Guest).await.unwrap();
    let started = Instant::now();
    assert_eq!(ask(addr, "example.net.", RecordType::A).await.metadata.response_code, ResponseCode::ServFail);
    assert!(started.elapsed() < Duration::from_millis(500));
}

#[tokio::test]
async fn tcp_serves_several_queries_per_connection() {
    let (_server, _records, addr) = host_server().await;
    let mut stream = TcpStream::connect(addr).await.unwrap();
    // Two queries in one write, then a third after the replies.
    let mut both = Vec::new();
    for (id, name) in [(1u16, "dev.vm."), (2, "nope.vm.")] {
        let bytes = query(id, name, RecordType::A).to_vec().unwrap();
        both.extend_from_slice(&(bytes.len() as u16).to_be_bytes());
        both.extend_from_slice(&bytes);
    }
    stream.write_all(&both).await.unwrap();
    let first = read_frame(&mut stream).await;
    let second = read_frame(&mut stream).await;
    assert_eq!((first.metadata.id, a_answers(&first)), (1, vec![DEV_IP]));
    assert!(first.metadata.authoritative);
    assert_eq!((second.metadata.id, second.metadata.response_code), (2, ResponseCode::NXDomain));
    write_frame(&mut stream, &query(3, "DEV.vm.", RecordType::A)).await;
    let third = read_frame(&mut stream).await;
    assert_eq!((third.metadata.id, a_answers(&third)), (3, vec![DEV_IP]));
}

#[tokio::test]
async fn unlisten_stops_answers_and_listen_again_works() {
    let (server, _records, addr) = host_server().await;
    assert_eq!(server.listeners(), vec![(addr, Role::Host)]);
    assert_eq!(a_answers(&ask(addr, "dev.vm.", RecordType::A).await), vec![DEV_IP]);
    // A connection still open when the listener goes (the server closes first: TIME_WAIT).
    let mut open = TcpStream::connect(addr).await.unwrap();
    write_frame(&mut open, &query(4, "dev.vm.", RecordType::A)).await;
    assert_eq!(a_answers(&read_frame(&mut open).await), vec![DEV_IP]);

    server.unlisten(addr.ip());
    server.unlisten(addr.ip()); // unknown is fine
    assert!(server.listeners().is_empty());
    // Both sockets close promptly.
    let deadline = Instant::now() + Duration::from_secs(1);
    while TcpStream::connect(addr).await.is_ok() {
        assert!(Instant::now() < deadline, "TCP still accepting after unlisten");
        tokio::time::sleep(Duration::from_millis(10)).await;
    }
    let mut buf = [0u8; 16];
    let read = timeout(Duration::from_secs(1), open.read(&mut buf)).await.expect("open connections are closed too");
    assert!(matches!(read, Ok(0) | Err(_)), "{read:?}");
    let bytes = query(1, "dev.vm.", RecordType::A).to_vec().unwrap();
    assert!(ask_udp_bytes(addr, &bytes, Duration::from_millis(300)).await.is_none(), "UDP answered after unlisten");

    // The same address again, at once.
    assert_eq!(server.listen(addr, Role::Host).await.unwrap(), addr);
    assert_eq!(a_answers(&ask(addr, "dev.vm.", RecordType::A).await), vec![DEV_IP]);
    assert_eq!(a_answers(&ask_tcp(addr, &query(5, "dev.vm.", RecordType::A)).await), vec![DEV_IP]);
}

#[tokio::test(start_paused = true)]
async fn idle_tcp_connections_are_closed_after_10s() {
    let (_server, _records, addr) = host_server().await;
    let mut stream = TcpStream::connect(addr).await.unwrap();
    write_frame(&mut stream, &query(1, "dev.vm.", RecordType::A)).await;
    assert_eq!(a_answers(&read_frame(&mut stream).await), vec![DEV_IP]);
    // 9 s of silence: still open, and a query restarts the idle clock.
    tokio::time::sleep(Duration::from_secs(9)).await;
    write_frame(&mut stream, &query(2, "dev.vm.", RecordType::A)).await;
    assert_eq!(a_answers(&read_frame(&mut stream).await), vec![DEV_IP]);
    let idle_since = tokio::time::Instant::now();
    let mut buf = [0u8; 16];
    let read = stream.read(&mut buf).await;
    assert!(matches!(read, Ok(0) | Err(_)), "{read:?}");
    let idle = idle_since.elapsed();
    assert!(idle >= Duration::from_secs(10) && idle < Duration::from_secs(11), "closed after {idle:?} idle");
}

#[tokio::test]
async fn listen_twice_is_a_no_op_and_listeners_are_listed() {
    let (server, _records, addr) = host_server().await;
    assert_eq!(server.listen(addr, Role::Host).await.unwrap(), addr);
    assert_eq!(server.listen(SocketAddr::new(addr.ip(), 0), Role::Host).await.unwrap(), addr);
    let other_role = server.listen(addr, Role::Guest).await.unwrap_err();
    assert_eq!(other_role.kind(), std::io::ErrorKind::AddrInUse);
    assert_eq!(server.listeners(), vec![(addr, Role::Host)]);
    // Another loopback address is another listener (if this host routes 127.0.0.0/8 locally).
    let second = SocketAddr::new(IpAddr::V4(Ipv4Addr::new(127, 0, 0, 2)), 0);
    if let Ok(bound) = server.listen(second, Role::Guest).await {
        assert_eq!(server.listeners(), vec![(addr, Role::Host), (bound, Role::Guest)]);
        assert!(ask(bound, "dev.vm.", RecordType::A).await.metadata.recursion_available);
        server.unlisten(bound.ip());
        assert_eq!(server.listeners(), vec![(addr, Role::Host)]);
    }
}

#[tokio::test]
async fn dropping_the_server_stops_serving() {
    let (server, _records, addr) = host_server().await;
    drop(server);
    let deadline = Instant::now() + Duration::from_secs(1);
    while TcpStream::connect(addr).await.is_ok() {
        assert!(Instant::now() < deadline, "still accepting after the server was dropped");
        tokio::time::sleep(Duration::from_millis(10)).await;
    }
}

#[tokio::test]
async fn malformed_packets_do_not_kill_the_server() {
    let upstream = FakeUpstream::start().await;
    let records = Records::new();
    records.set("dev", DEV_IP);
    let server = Server::new(records, vec![upstream.addr]);
    let addr = server.listen(LOCALHOST, Role::Guest).await.unwrap();

    let mut valid_header_then_nothing = query(1, "dev.vm.", RecordType::A).to_vec().unwrap();
    valid_header_then_nothing.truncate(14);
    let mut a_response = query(2, "dev.vm.", RecordType::A);
    a_response.metadata.message_type = MessageType::Response;
    let garbage: Vec<Vec<u8>> = vec![
        vec![],
        vec![0xff; 5],
        (0..=255).collect(),
        vec![0xff; 600],
        valid_header_then_nothing.clone(),
        a_response.to_vec().unwrap(),
    ];
    for bytes in &garbage {
        assert!(ask_udp_bytes(addr, bytes, Duration::from_millis(200)).await.is_none(), "answered {bytes:?}");
    }
    assert_eq!(upstream.udp_queries.load(Ordering::SeqCst), 0, "garbage is not forwarded");
    assert_eq!(a_answers(&ask(addr, "dev.vm.", RecordType::A).await), vec![DEV_IP]);

    // Over TCP, garbage closes the connection; the server keeps accepting.
    for bytes in [vec![0u8, 3, 1, 2, 3], [&[0u8, 14][..], &valid_header_then_nothing].concat()] {
        let mut stream = TcpStream::connect(addr).await.unwrap();
        stream.write_all(&bytes).await.unwrap();
        let mut buf = [0u8; 16];
        let read = timeout(Duration::from_secs(2), stream.read(&mut buf)).await.expect("the server closes it");
        assert!(matches!(read, Ok(0) | Err(_)), "{read:?}");
    }
    assert_eq!(a_answers(&ask_tcp(addr, &query(3, "dev.vm.", RecordType::A)).await), vec![DEV_IP]);
    assert!(server.stats().dropped >= 6, "{:?}", server.stats());
}

#[tokio::test]
async fn other_opcodes_are_notimp_and_two_questions_formerr() {
    let (server, _records, addr) = host_server().await;
    let mut notify = query(11, "dev.vm.", RecordType::SOA);
    notify.metadata.op_code = OpCode::Notify;
    let reply = ask_udp(addr, &notify).await;
    assert_eq!((reply.metadata.id, reply.metadata.response_code), (11, ResponseCode::NotImp));

    let mut two = query(12, "dev.vm.", RecordType::A);
    two.add_query(Query::query(Name::from_ascii("other.vm.").unwrap(), RecordType::A));
    let reply = ask_udp(addr, &two).await;
    assert_eq!((reply.metadata.id, reply.metadata.response_code), (12, ResponseCode::FormErr));
    assert!(reply.answers.is_empty());

    // EDNS is echoed (version 0); an unknown EDNS version is BADVERS.
    let reply = ask_udp(addr, &with_edns(query(13, "dev.vm.", RecordType::A), 1400)).await;
    assert!(reply.edns.is_some());
    assert_eq!(a_answers(&reply), vec![DEV_IP]);
    let mut future = with_edns(query(14, "dev.vm.", RecordType::A), 1400);
    future.edns.as_mut().unwrap().set_version(1);
    let reply = ask_udp(addr, &future).await;
    // 16 is both BADVERS and BADSIG; hickory decodes it as the latter.
    assert_eq!(u16::from(reply.metadata.response_code), u16::from(ResponseCode::BADVERS));
    assert!(reply.edns.is_some(), "BADVERS needs EDNS to carry its high bits");
    assert_eq!(server.stats().rejected, 3);
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn dig_resolves_a_vm_name() {
    if tokio::process::Command::new("dig").arg("-v").output().await.is_err() {
        eprintln!("\n*** SKIPPED dig_resolves_a_vm_name: `dig` is not on PATH (install dnsutils) ***\n");
        return;
    }
    let (_server, _records, addr) = host_server().await;
    let output = tokio::process::Command::new("dig")
        .args([&format!("@{}", addr.ip()), "-p", &addr.port().to_string(), "dev.vm", "+short", "+time=2", "+tries=1"])
        .output()
        .await
        .unwrap();
    assert!(output.status.success(), "{output:?}");
    assert_eq!(String::from_utf8_lossy(&output.stdout).trim(), DEV_IP.to_string());
}

#[tokio::test]
async fn a_link_listener_answers_its_vm_only() {
    let records = Records::new();
    records.set("dev", DEV_IP);
    let server = Server::new(records, vec![]);
    // The "VM" is 127.0.0.3; queries from 127.0.0.1 are somebody else's.
    let vm = IpAddr::V4(Ipv4Addr::new(127, 0, 0, 3));
    let addr = server.listen_for(LOCALHOST, Role::Guest, Some(vm)).await.unwrap();
    let bytes = query(rand_id(), "dev.vm.", RecordType::A).to_vec().unwrap();
    assert!(ask_udp_bytes(addr, &bytes, Duration::from_millis(500)).await.is_none(), "a stranger got an answer");
    let mut tcp = TcpStream::connect(addr).await.unwrap();
    let mut frame = (bytes.len() as u16).to_be_bytes().to_vec();
    frame.extend_from_slice(&bytes);
    let _ = tcp.write_all(&frame).await;
    let mut buf = [0u8; 2];
    let read = timeout(Duration::from_secs(2), tcp.read_exact(&mut buf)).await.expect("closed, not hanging");
    assert!(read.is_err(), "a stranger's TCP query got an answer");
    // The VM itself is answered.
    let own = UdpSocket::bind(SocketAddr::new(vm, 0)).await.unwrap();
    own.send_to(&bytes, addr).await.unwrap();
    let mut buf = vec![0u8; 4096];
    let (n, _) = timeout(Duration::from_secs(2), own.recv_from(&mut buf)).await.unwrap().unwrap();
    assert_eq!(a_answers(&Message::from_vec(&buf[..n]).unwrap()), vec![DEV_IP]);
    assert_eq!(server.stats().dropped, 2);
}

#[tokio::test]
async fn a_link_listener_can_be_opened_before_its_address_exists() {
    let server = Server::new(Records::new(), vec![]);
    // TEST-NET-1: no interface here has it (IP_FREEBIND).
    let addr = SocketAddr::from((Ipv4Addr::new(192, 0, 2, 53), 0));
    let bound = server.listen_for(addr, Role::Guest, Some(IpAddr::V4(Ipv4Addr::new(192, 0, 2, 54)))).await.unwrap();
    assert_eq!(bound.ip(), addr.ip());
    assert_ne!(bound.port(), 0);
    server.unlisten(bound.ip());
    assert!(server.listeners().is_empty());
}

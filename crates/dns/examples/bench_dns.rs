//! Latency of `.vm` answers: a server on 127.0.0.1 with 100 records, 2000 sequential UDP A
//! queries from one client socket (a blocking std socket, so the client adds no async overhead).
//!
//! `cargo run --release -p banger-dns --example bench_dns`

use std::net::{Ipv4Addr, SocketAddr, UdpSocket};
use std::time::{Duration, Instant};

use banger_dns::{Records, Role, Server};
use hickory_proto::op::{Message, Query};
use hickory_proto::rr::{Name, RData, RecordType};

const RECORDS: u8 = 100;
const QUERIES: usize = 2000;

fn main() {
    let runtime = tokio::runtime::Builder::new_multi_thread().enable_all().build().expect("a tokio runtime");
    let records = Records::new();
    for i in 0..RECORDS {
        records.set(&format!("vm{i}"), Ipv4Addr::new(172, 30, i, 2));
    }
    let server = Server::new(records, Vec::new());
    let addr = runtime
        .block_on(server.listen(SocketAddr::from((Ipv4Addr::LOCALHOST, 0)), Role::Host))
        .expect("listen on 127.0.0.1");

    let client = UdpSocket::bind((Ipv4Addr::LOCALHOST, 0)).expect("client socket");
    client.connect(addr).expect("connect");
    client.set_read_timeout(Some(Duration::from_secs(2))).expect("timeout");
    let mut buf = vec![0u8; 4096];
    let mut micros = Vec::with_capacity(QUERIES);
    for n in 0..QUERIES {
        let i = (n % usize::from(RECORDS)) as u8;
        let mut query = Message::query();
        query.metadata.id = n as u16;
        query.metadata.recursion_desired = true;
        query.add_query(Query::query(Name::from_ascii(format!("vm{i}.vm.")).expect("a name"), RecordType::A));
        let bytes = query.to_vec().expect("encode");

        let started = Instant::now();
        client.send(&bytes).expect("send");
        let len = client.recv(&mut buf).expect("a reply within 2 s");
        micros.push(started.elapsed().as_secs_f64() * 1e6);

        let reply = Message::from_vec(&buf[..len]).expect("a parsable reply");
        assert_eq!(reply.metadata.id, n as u16);
        assert!(matches!(&reply.answers[..], [r] if r.data == RData::A(Ipv4Addr::new(172, 30, i, 2).into())));
    }
    micros.sort_by(f64::total_cmp);
    let at = |q: f64| micros[((micros.len() as f64 * q) as usize).min(micros.len() - 1)];
    println!("dns query: p50 {:.0} us, p99 {:.0} us ({} queries)", at(0.50), at(0.99), micros.len());
}

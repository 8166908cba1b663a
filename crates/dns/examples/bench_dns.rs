//! Latency of `.vm` answers: a server on 127.0.0.1 with 100 records, 2000 sequential UDP A
//! queries from one client socket (a blocking std socket, so the client adds no async overhead).
//!
//! `cargo run --release -p banger-dns --example bench_dns`
//!
//! Against a running bangerd instead (`scripts/bench-features.sh`):
//! - `bench_dns --server ADDR NAME`: the same latency for `NAME` on that server;
//! - `bench_dns --until ADDR NAME`: ask every millisecond until `NAME` has an A record, then
//!   print the Unix time (seconds, microsecond precision) of the first answer.

use std::net::{Ipv4Addr, SocketAddr, UdpSocket};
use std::time::{Duration, Instant};

use banger_dns::{Records, Role, Server};
use hickory_proto::op::{Message, Query};
use hickory_proto::rr::{Name, RData, RecordType};

const RECORDS: u8 = 100;
const QUERIES: usize = 2000;

fn ask(client: &UdpSocket, id: u16, name: &str, buf: &mut [u8]) -> Option<Message> {
    let mut query = Message::query();
    query.metadata.id = id;
    query.metadata.recursion_desired = true;
    query.add_query(Query::query(Name::from_ascii(name).expect("a name"), RecordType::A));
    client.send(&query.to_vec().expect("encode")).ok()?;
    let len = client.recv(buf).ok()?;
    Message::from_vec(&buf[..len]).ok().filter(|r| r.metadata.id == id)
}

fn client(addr: SocketAddr, timeout: Duration) -> UdpSocket {
    let client = UdpSocket::bind((Ipv4Addr::LOCALHOST, 0)).expect("client socket");
    client.connect(addr).expect("connect");
    client.set_read_timeout(Some(timeout)).expect("timeout");
    client
}

/// Time `QUERIES` sequential queries, `name(n)` each, checking each answer with `check`.
fn measure(client: &UdpSocket, name: impl Fn(usize) -> String, check: impl Fn(usize, &Message)) {
    let mut buf = vec![0u8; 4096];
    let mut micros = Vec::with_capacity(QUERIES);
    for n in 0..QUERIES {
        let started = Instant::now();
        let reply = ask(client, n as u16, &name(n), &mut buf).expect("a reply within 2 s");
        micros.push(started.elapsed().as_secs_f64() * 1e6);
        check(n, &reply);
    }
    micros.sort_by(f64::total_cmp);
    let at = |q: f64| micros[((micros.len() as f64 * q) as usize).min(micros.len() - 1)];
    println!("dns query: p50 {:.0} us, p99 {:.0} us ({} queries)", at(0.50), at(0.99), micros.len());
}

fn main() {
    let args: Vec<String> = std::env::args().skip(1).collect();
    match args.iter().map(String::as_str).collect::<Vec<_>>()[..] {
        ["--server", addr, name] => {
            let client = client(addr.parse().expect("ADDR"), Duration::from_secs(2));
            measure(&client, |_| name.to_string(), |_, r| assert_eq!(r.answers.len(), 1, "{name} has one A record"));
        }
        ["--until", addr, name] => {
            let client = client(addr.parse().expect("ADDR"), Duration::from_millis(100));
            let mut buf = vec![0u8; 4096];
            for n in 0u64.. {
                if ask(&client, n as u16, name, &mut buf).is_some_and(|r| !r.answers.is_empty()) {
                    let now = std::time::SystemTime::now().duration_since(std::time::UNIX_EPOCH).unwrap();
                    println!("{:.6}", now.as_secs_f64());
                    return;
                }
                std::thread::sleep(Duration::from_millis(1));
            }
        }
        [] => {
            let runtime = tokio::runtime::Builder::new_multi_thread().enable_all().build().expect("a tokio runtime");
            let records = Records::new();
            for i in 0..RECORDS {
                records.set(&format!("vm{i}"), Ipv4Addr::new(172, 30, i, 2));
            }
            let server = Server::new(records, Vec::new());
            let addr = runtime
                .block_on(server.listen(SocketAddr::from((Ipv4Addr::LOCALHOST, 0)), Role::Host))
                .expect("listen on 127.0.0.1");
            let client = client(addr, Duration::from_secs(2));
            let vm = |n: usize| (n % usize::from(RECORDS)) as u8;
            measure(
                &client,
                |n| format!("vm{}.vm.", vm(n)),
                |n, r| {
                    assert!(
                        matches!(&r.answers[..], [a] if a.data == RData::A(Ipv4Addr::new(172, 30, vm(n), 2).into()))
                    )
                },
            );
        }
        _ => panic!("usage: bench_dns [--server ADDR NAME | --until ADDR NAME]"),
    }
}

//! What to do with one received DNS message: answer it from the `vm.` zone, refuse it, reject it,
//! forward it, or drop it. No I/O here.

use std::sync::LazyLock;

use hickory_proto::op::{Edns, Header, Message, MessageType, Metadata, OpCode, ResponseCode};
use hickory_proto::rr::rdata::{A, NS, SOA};
use hickory_proto::rr::{DNSClass, Name, RData, Record, RecordType};
use hickory_proto::serialize::binary::{BinDecodable, BinDecoder};

use crate::{Records, Role, TTL, ZONE};

/// The EDNS payload size we advertise in replies to EDNS queries.
const OUR_EDNS_PAYLOAD: u16 = 1232;
/// The most we ever send over UDP, whatever the client advertises.
const MAX_UDP_REPLY: u16 = 4096;

static ZONE_NAME: LazyLock<Name> = LazyLock::new(|| Name::from_ascii(ZONE).expect("ZONE is a valid name"));
static NS_NAME: LazyLock<Name> = LazyLock::new(|| Name::from_ascii("ns.vm.").expect("a valid name"));
static HOSTMASTER: LazyLock<Name> = LazyLock::new(|| Name::from_ascii("hostmaster.vm.").expect("a valid name"));

/// How a reply is counted in the stats.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub(crate) enum Outcome {
    /// NOERROR from the zone (with data, or NODATA).
    Answered,
    NxDomain,
    Refused,
    /// FORMERR, NOTIMP, BADVERS.
    Rejected,
}

pub(crate) enum Decision {
    /// Send this reply; over UDP, at most `udp_limit` bytes (the client's size).
    Reply { reply: Message, outcome: Outcome, udp_limit: usize },
    /// Not ours, and the listener forwards: relay the raw query upstream. The parsed query is
    /// kept to build a SERVFAIL or truncated reply.
    Forward(Message),
    /// Send nothing (UDP) / close the connection (TCP).
    Drop(&'static str),
}

/// Decides what to do with `raw`, one DNS message received by a listener serving `role`.
pub(crate) fn decide(raw: &[u8], records: &Records, role: Role) -> Decision {
    let Ok(header) = Header::read(&mut BinDecoder::new(raw)) else {
        return Decision::Drop("shorter than a DNS header");
    };
    if header.metadata.message_type == MessageType::Response {
        // Never answer a response: two servers could bounce errors at each other forever.
        return Decision::Drop("a response, not a query");
    }
    if header.metadata.op_code != OpCode::Query {
        let mut reply = Message::response(header.metadata.id, header.metadata.op_code);
        reply.metadata = reply_metadata(&header.metadata, role, ResponseCode::NotImp);
        return Decision::Reply { reply, outcome: Outcome::Rejected, udp_limit: udp_limit(None) };
    }
    let Ok(query) = Message::from_vec(raw) else {
        return Decision::Drop("malformed query");
    };
    let limit = udp_limit(Some(&query));
    let reply = |reply, outcome| Decision::Reply { reply, outcome, udp_limit: limit };
    if query.queries.len() != 1 {
        let mut reply = reply_to(&query, role, ResponseCode::FormErr);
        reply.queries.clear();
        return Decision::Reply { reply, outcome: Outcome::Rejected, udp_limit: limit };
    }
    if query.edns.as_ref().is_some_and(|edns| edns.version() != 0) {
        return reply(reply_to(&query, role, ResponseCode::BADVERS), Outcome::Rejected);
    }
    if ZONE_NAME.zone_of(&query.queries[0].name) {
        let (answer, outcome) = answer_zone(&query, records, role);
        return reply(answer, outcome);
    }
    match role {
        Role::Host => reply(reply_to(&query, role, ResponseCode::Refused), Outcome::Refused),
        Role::Guest => Decision::Forward(query),
    }
}

/// The reply to a question under `vm.`.
fn answer_zone(query: &Message, records: &Records, role: Role) -> (Message, Outcome) {
    let question = &query.queries[0];
    if !matches!(question.query_class, DNSClass::IN | DNSClass::ANY) {
        return (reply_to(query, role, ResponseCode::Refused), Outcome::Refused);
    }
    let mut reply = reply_to(query, role, ResponseCode::NoError);
    reply.metadata.authoritative = true;
    let qtype = question.query_type;
    let labels: Vec<&[u8]> = question.name.iter().collect();
    match labels.as_slice() {
        // The apex, `vm.`.
        [_zone] => {
            let soa = soa_record(records);
            let ns = Record::from_rdata(ZONE_NAME.clone(), TTL, RData::NS(NS(NS_NAME.clone())));
            match qtype {
                RecordType::SOA => reply.answers.push(soa),
                RecordType::NS => reply.answers.push(ns),
                RecordType::ANY => reply.answers.extend([soa, ns]),
                _ => reply.authorities.push(soa),
            }
            (reply, Outcome::Answered)
        }
        [label, _zone] => {
            let ip = std::str::from_utf8(label).ok().and_then(|name| records.get(name));
            match ip {
                Some(ip) if matches!(qtype, RecordType::A | RecordType::ANY) => {
                    reply.answers.push(Record::from_rdata(question.name.clone(), TTL, RData::A(A(ip))));
                }
                // NODATA: the name exists, not with this type.
                Some(_) => reply.authorities.push(soa_record(records)),
                None => return (nxdomain(reply, records), Outcome::NxDomain),
            }
            (reply, Outcome::Answered)
        }
        // `a.b.vm.`: VM names are single labels, so nothing lives deeper.
        _ => (nxdomain(reply, records), Outcome::NxDomain),
    }
}

fn nxdomain(mut reply: Message, records: &Records) -> Message {
    reply.metadata.response_code = ResponseCode::NXDomain;
    reply.authorities.push(soa_record(records));
    reply
}

/// The zone's SOA, also the negative-caching answer: its minimum (and TTL) is [`TTL`], so a VM
/// that starts is visible within seconds to a resolver that just heard "no such name".
fn soa_record(records: &Records) -> Record {
    let soa = SOA::new(NS_NAME.clone(), HOSTMASTER.clone(), records.generation(), 3600, 600, 86400, TTL);
    Record::from_rdata(ZONE_NAME.clone(), TTL, RData::SOA(soa))
}

/// The header of a reply to `request`: same ID and opcode, RD and CD copied, RA only where we
/// recurse (guests).
fn reply_metadata(request: &Metadata, role: Role, rcode: ResponseCode) -> Metadata {
    let mut metadata = Metadata::response_from_request(request);
    metadata.recursion_available = role == Role::Guest;
    metadata.response_code = rcode;
    metadata
}

/// An empty reply to `query` with `rcode`, echoing its question (and EDNS, if it used it).
pub(crate) fn reply_to(query: &Message, role: Role, rcode: ResponseCode) -> Message {
    let mut reply = Message::response(query.metadata.id, query.metadata.op_code);
    reply.metadata = reply_metadata(&query.metadata, role, rcode);
    reply.queries = query.queries.clone();
    if query.edns.is_some() {
        let mut edns = Edns::new();
        edns.set_max_payload(OUR_EDNS_PAYLOAD);
        reply.edns = Some(edns);
    }
    reply
}

/// The largest UDP reply `query`'s sender accepts: 512 bytes, or its EDNS payload size (capped).
pub(crate) fn udp_limit(query: Option<&Message>) -> usize {
    query.map_or(512, |query| query.max_payload().min(MAX_UDP_REPLY)).into()
}

/// `reply` encoded for UDP: if it does not fit `limit`, its records are dropped and TC is set,
/// so the client retries over TCP.
pub(crate) fn encode_udp(reply: &Message, limit: usize) -> Option<Vec<u8>> {
    let bytes = encode(reply)?;
    if bytes.len() <= limit {
        return Some(bytes);
    }
    encode(&reply.truncate())
}

pub(crate) fn encode(reply: &Message) -> Option<Vec<u8>> {
    match reply.to_vec() {
        Ok(bytes) => Some(bytes),
        Err(error) => {
            tracing::debug!(%error, id = reply.metadata.id, "dns: cannot encode a reply");
            None
        }
    }
}

/// A short description of `query`'s question for logs.
pub(crate) fn describe(query: &Message) -> String {
    query.queries.first().map_or_else(String::new, |q| format!("{} {}", q.name, q.query_type))
}

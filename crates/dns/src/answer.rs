//! From a parsed query and a [`View`] to an answer: which name form was
//! asked (service, tag filter, RFC 2782, node, address, prepared query),
//! which records answer it, in a fresh random order, as many as fit.

use crate::config::DnsConfig;
use crate::query_view::QueryView;
use crate::view::{parse_hex_ip, Instance, ServiceRecords, View};
use crate::wire::{self, rcode, rtype, Answer, Query, Section, SrvData, RR_FIXED};
use shoal_catalog::acl::{Authorizer, Resource};
use std::net::IpAddr;

/// The name forms inside the domain.
#[derive(Debug, PartialEq, Eq)]
enum Name<'q> {
    /// Not in our domain.
    Outside,
    /// The domain itself.
    Apex,
    /// `[tag.]<service>.service[.dc]` or `_<service>._<tag>.service[.dc]`.
    Service {
        name: &'q [u8],
        tag: Option<&'q [u8]>,
    },
    /// `<node>.node[.dc]`.
    Node(&'q [u8]),
    /// `<hex-ip>.addr[.dc]`.
    Addr(&'q [u8]),
    /// `<query-name-or-id>.query[.dc]`.
    Query(&'q [u8]),
    /// In the domain, but no such name (or another datacenter).
    Unknown,
}

/// What to do with a query.
#[derive(Debug, PartialEq, Eq)]
pub enum Outcome {
    /// The answer is in the buffer.
    Answered,
    /// Outside the domain and there are recursors: forward it.
    Forward,
}

/// Per-worker scratch space, reused across queries so that answering
/// allocates nothing once it has warmed up.
pub struct Scratch {
    order: Vec<u32>,
    /// Offset of each SRV target written, its address, its instance.
    targets: Vec<(u16, IpAddr, u32)>,
    seen: Vec<IpAddr>,
    rng: u64,
}

impl Default for Scratch {
    fn default() -> Self {
        Scratch {
            order: Vec::new(),
            targets: Vec::new(),
            seen: Vec::new(),
            rng: rand::random::<u64>() | 1,
        }
    }
}

impl Scratch {
    /// xorshift64*: answers only need a cheap, unpredictable-enough order.
    fn next(&mut self, below: usize) -> usize {
        self.rng ^= self.rng >> 12;
        self.rng ^= self.rng << 25;
        self.rng ^= self.rng >> 27;
        let r = self.rng.wrapping_mul(0x2545_F491_4F6C_DD1D);
        (((r >> 32) * below as u64) >> 32) as usize
    }

    /// Moves a random one of `order[i..]` to `order[i]` (one step of a
    /// Fisher-Yates shuffle, so only what is answered gets shuffled).
    fn pick(&mut self, i: usize) -> u32 {
        let j = i + self.next(self.order.len() - i);
        self.order.swap(i, j);
        self.order[i]
    }
}

/// Answers queries for one configuration.
pub struct Responder {
    domain: Vec<Vec<u8>>,
    domain_wire_len: usize,
    datacenter: Vec<u8>,
    node_ttl: u32,
    recursion: bool,
}

impl Responder {
    /// A responder for `config` (already validated).
    pub fn new(config: &DnsConfig) -> Responder {
        let domain: Vec<Vec<u8>> = config
            .domain
            .trim_end_matches('.')
            .split('.')
            .map(|l| l.as_bytes().to_vec())
            .collect();
        Responder {
            domain_wire_len: domain.iter().map(|l| l.len() + 1).sum::<usize>() + 1,
            domain,
            datacenter: config.datacenter.as_bytes().to_vec(),
            node_ttl: crate::view::secs(config.node_ttl),
            recursion: !config.recursors.is_empty(),
        }
    }

    fn classify<'q>(&self, q: &Query<'q>) -> Name<'q> {
        let n = q.label_count();
        let d = self.domain.len();
        if n < d
            || !q
                .labels()
                .skip(n - d)
                .zip(&self.domain)
                .all(|(a, b)| a.eq_ignore_ascii_case(b))
        {
            return Name::Outside;
        }
        let mut rest = [&[][..]; 4];
        let k = n - d;
        if k == 0 {
            return Name::Apex;
        }
        if k > rest.len() {
            return Name::Unknown;
        }
        for (slot, label) in rest.iter_mut().zip(q.labels()) {
            *slot = label;
        }
        let rest = &rest[..k];
        let is_kind = |l: &[u8]| {
            [&b"service"[..], b"node", b"addr", b"query"]
                .into_iter()
                .find(|kind| l.eq_ignore_ascii_case(kind))
        };
        let (kind, before) = match (is_kind(rest[k - 1]), k) {
            (Some(kind), _) => (kind, &rest[..k - 1]),
            (None, 2..) => match is_kind(rest[k - 2]) {
                Some(kind) if rest[k - 1].eq_ignore_ascii_case(&self.datacenter) => {
                    (kind, &rest[..k - 2])
                }
                _ => return Name::Unknown,
            },
            _ => return Name::Unknown,
        };
        match (kind, before) {
            (b"service", [name]) => Name::Service { name, tag: None },
            (b"service", [name, tag]) if name.starts_with(b"_") && tag.starts_with(b"_") => {
                let tag = &tag[1..];
                Name::Service {
                    name: &name[1..],
                    tag: (!tag.eq_ignore_ascii_case(b"tcp")).then_some(tag),
                }
            }
            (b"service", [tag, name]) => Name::Service {
                name,
                tag: Some(tag),
            },
            (b"node", [name]) => Name::Node(name),
            (b"addr", [hex]) => Name::Addr(hex),
            (b"query", [name]) => Name::Query(name),
            _ => Name::Unknown,
        }
    }

    /// Answers `q` from `view` (and `queries`, for `.query.` names) into
    /// `out`, at most `limit` bytes.
    ///
    /// With `authz` (ACLs on), only what it may read is answered: a
    /// service it may not read, or a node, is NXDOMAIN, and instances on
    /// nodes it may not read are left out.
    #[allow(clippy::too_many_arguments)]
    pub fn respond(
        &self,
        q: &Query<'_>,
        view: &View,
        queries: &QueryView,
        authz: Option<&Authorizer>,
        scratch: &mut Scratch,
        out: &mut Vec<u8>,
        limit: usize,
    ) -> Outcome {
        let name = self.classify(q);
        if name == Name::Outside {
            if self.recursion {
                return Outcome::Forward;
            }
            Answer::start(out, q, limit).finish(q, false, false, rcode::REFUSED);
            return Outcome::Answered;
        }
        let mut a = Answer::start(out, q, limit);
        let zone = (wire::HEADER_LEN + q.name_len() - self.domain_wire_len) as u16;
        if q.qclass != rtype::CLASS_IN && q.qclass != rtype::CLASS_ANY {
            a.finish(q, false, self.recursion, rcode::REFUSED);
            return Outcome::Answered;
        }
        let code = match name {
            Name::Service { name, tag } => match lower(name, |l| view.service(l)) {
                Some(records) if readable(authz, Resource::Service, &records.name) => {
                    self.instances(q, &mut a, scratch, records, tag, authz)
                }
                _ => rcode::NXDOMAIN,
            },
            Name::Query(name) => match lower(name, |l| queries.get(l)) {
                Some(records) if readable(authz, Resource::Service, &records.name) => {
                    self.instances(q, &mut a, scratch, records, None, authz)
                }
                _ => rcode::NXDOMAIN,
            },
            Name::Node(name) => match lower(name, |l| view.node(l)) {
                Some(node) if readable(authz, Resource::Node, &node.name) => {
                    if matches!(q.qtype, rtype::TXT | rtype::ANY) {
                        for txt in &node.txt {
                            let owner = wire::HEADER_LEN as u16;
                            if !a.record(Section::Answer, owner, rtype::TXT, self.node_ttl, txt) {
                                break;
                            }
                        }
                    }
                    self.address(q, &mut a, Some(node.ip), self.node_ttl)
                }
                _ => rcode::NXDOMAIN,
            },
            Name::Addr(hex) => self.address(q, &mut a, parse_hex_ip(hex).map(Some), 0),
            Name::Apex if matches!(q.qtype, rtype::SOA | rtype::ANY) => {
                a.soa(Section::Answer, zone, 0, 0);
                rcode::NOERROR
            }
            Name::Apex => rcode::NOERROR,
            Name::Unknown | Name::Outside => rcode::NXDOMAIN,
        };
        if a.written() == q.question.len() + wire::HEADER_LEN {
            // Nothing answered: the SOA says for how long that holds.
            a.soa(Section::Authority, zone, 0, 0);
        }
        a.finish(q, true, self.recursion, code);
        Outcome::Answered
    }

    /// A name with at most one address (node, `.addr.`): NXDOMAIN when
    /// unknown, else its record if the type matches.
    fn address(
        &self,
        q: &Query<'_>,
        a: &mut Answer<'_>,
        ip: Option<Option<IpAddr>>,
        ttl: u32,
    ) -> u8 {
        let Some(ip) = ip else {
            return rcode::NXDOMAIN;
        };
        if let Some(ip) = ip.filter(|ip| type_matches(q.qtype, *ip)) {
            address_record(a, Section::Answer, wire::HEADER_LEN as u16, ttl, ip);
        }
        rcode::NOERROR
    }

    /// The records of a service's (or a prepared query's) instances.
    fn instances(
        &self,
        q: &Query<'_>,
        a: &mut Answer<'_>,
        scratch: &mut Scratch,
        records: &ServiceRecords,
        tag: Option<&[u8]>,
        authz: Option<&Authorizer>,
    ) -> u8 {
        let instances = &records.instances;
        scratch.order.clear();
        scratch
            .order
            .extend((0..instances.len() as u32).filter(|&i| {
                let inst = &instances[i as usize];
                tag.is_none_or(|t| has_tag(inst, t)) && readable(authz, Resource::Node, &inst.node)
            }));
        if scratch.order.is_empty() {
            return rcode::NXDOMAIN;
        }
        let owner = wire::HEADER_LEN as u16;
        let ttl = records.ttl;
        match q.qtype {
            rtype::SRV => {
                scratch.targets.clear();
                let mut promised = 0;
                for i in 0..scratch.order.len() {
                    let index = scratch.pick(i);
                    let inst = &instances[index as usize];
                    let extra = inst.ip.map_or(0, address_len);
                    let srv = SrvData {
                        priority: 1,
                        weight: inst.weight,
                        port: inst.port,
                        target: &inst.target,
                    };
                    // Room for this SRV, its address and those promised so far.
                    let Some(target) = a.srv(owner, ttl, srv, promised + extra) else {
                        break;
                    };
                    promised += extra;
                    if let Some(ip) = inst.ip {
                        scratch.targets.push((target, ip, index));
                    }
                }
                // One address record per distinct target (instances on
                // one node share theirs).
                for (i, &(target, ip, inst)) in scratch.targets.iter().enumerate() {
                    let name = &instances[inst as usize].target;
                    let seen = scratch.targets[..i]
                        .iter()
                        .any(|&(_, _, j)| instances[j as usize].target == *name);
                    if !seen {
                        address_record(a, Section::Additional, target, ttl, ip);
                    }
                }
            }
            rtype::A | rtype::AAAA | rtype::ANY => {
                scratch.seen.clear();
                for i in 0..scratch.order.len() {
                    let Some(ip) = instances[scratch.pick(i) as usize].ip else {
                        continue;
                    };
                    if !type_matches(q.qtype, ip) || scratch.seen.contains(&ip) {
                        continue;
                    }
                    if !address_record(a, Section::Answer, owner, ttl, ip) {
                        break;
                    }
                    scratch.seen.push(ip);
                }
            }
            _ => {}
        }
        rcode::NOERROR
    }
}

/// Whether `authz` (none: ACLs off) may read `name`.
fn readable(authz: Option<&Authorizer>, r: Resource, name: &str) -> bool {
    authz.is_none_or(|a| a.read(r, name))
}

fn has_tag(inst: &Instance, tag: &[u8]) -> bool {
    inst.tags.iter().any(|t| t.eq_ignore_ascii_case(tag))
}

fn type_matches(qtype: u16, ip: IpAddr) -> bool {
    matches!(
        (qtype, ip),
        (rtype::ANY, _) | (rtype::A, IpAddr::V4(_)) | (rtype::AAAA, IpAddr::V6(_))
    )
}

fn address_len(ip: IpAddr) -> usize {
    RR_FIXED + if ip.is_ipv4() { 4 } else { 16 }
}

fn address_record(a: &mut Answer<'_>, section: Section, owner: u16, ttl: u32, ip: IpAddr) -> bool {
    match ip {
        IpAddr::V4(v4) => a.record(section, owner, rtype::A, ttl, &v4.octets()),
        IpAddr::V6(v6) => a.record(section, owner, rtype::AAAA, ttl, &v6.octets()),
    }
}

/// Runs `f` on the lowercased `label` (copied on the stack).
fn lower<T>(label: &[u8], f: impl FnOnce(&[u8]) -> T) -> T {
    let mut buf = [0u8; 63];
    let buf = &mut buf[..label.len().min(63)];
    buf.copy_from_slice(&label[..buf.len()]);
    buf.make_ascii_lowercase();
    f(buf)
}

#[cfg(test)]
#[path = "answer_tests.rs"]
mod tests;

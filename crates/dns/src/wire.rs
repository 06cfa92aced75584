//! The DNS wire format, as much of it as an authoritative server needs:
//! reading one question (and its EDNS OPT record) out of a query without
//! allocating, and writing an answer into a reused buffer with a size
//! limit, so that truncation is decided record by record.
//!
//! Hand-written rather than built from a general message type: a query is
//! answered from borrowed slices of the request and precomputed record
//! data, with no per-query allocation (hickory-proto decodes every answer
//! in the tests, as an independent check of this encoder).

/// Record types and classes used here.
pub mod rtype {
    pub const A: u16 = 1;
    pub const NS: u16 = 2;
    pub const SOA: u16 = 6;
    pub const TXT: u16 = 16;
    pub const AAAA: u16 = 28;
    pub const SRV: u16 = 33;
    pub const OPT: u16 = 41;
    pub const ANY: u16 = 255;
    pub const CLASS_IN: u16 = 1;
    pub const CLASS_ANY: u16 = 255;
}

/// Response codes.
pub mod rcode {
    pub const NOERROR: u8 = 0;
    pub const FORMERR: u8 = 1;
    pub const SERVFAIL: u8 = 2;
    pub const NXDOMAIN: u8 = 3;
    pub const NOTIMP: u8 = 4;
    pub const REFUSED: u8 = 5;
}

/// Length of the fixed header.
pub const HEADER_LEN: usize = 12;
/// The most labels a 255-byte name can have.
const MAX_LABELS: usize = 128;
/// Size of an OPT record with no options.
pub const OPT_LEN: usize = 11;
/// The largest UDP payload we ever send, whatever a client advertises
/// (Consul's and BIND's default).
pub const MAX_UDP_PAYLOAD: u16 = 4096;
/// UDP payload limit of a query without EDNS (RFC 1035).
pub const CLASSIC_UDP_PAYLOAD: usize = 512;

/// The EDNS part of a query.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub struct Edns {
    /// The UDP payload size the client can receive.
    pub payload: u16,
    /// EDNS version (we speak 0).
    pub version: u8,
}

/// One parsed query: header bits, the question (borrowed), EDNS.
#[derive(Debug)]
pub struct Query<'a> {
    /// The message ID, echoed in the answer.
    pub id: u16,
    /// The RD bit, echoed in the answer.
    pub recursion_desired: bool,
    /// The CD bit, echoed in the answer.
    pub checking_disabled: bool,
    /// The question exactly as sent (name, type, class), copied into the
    /// answer so that a client's 0x20 case randomization survives.
    pub question: &'a [u8],
    /// Offset and length of each label inside `question`.
    labels: [(u8, u8); MAX_LABELS],
    label_count: usize,
    /// QTYPE.
    pub qtype: u16,
    /// QCLASS.
    pub qclass: u16,
    /// The OPT record, if the query had one.
    pub edns: Option<Edns>,
}

/// Why a packet got no normal answer.
#[derive(Debug, PartialEq, Eq)]
pub enum Rejection {
    /// Not worth a reply: too short for a header, or a response (never
    /// answer responses: that is how reflection loops start).
    Drop,
    /// Answer with this code and no question (FORMERR, NOTIMP).
    Reply { id: u16, flags: u16, rcode: u8 },
}

impl<'a> Query<'a> {
    /// The labels of the question name, leftmost first, as sent.
    pub fn labels(&self) -> impl DoubleEndedIterator<Item = &'a [u8]> + ExactSizeIterator + '_ {
        self.labels[..self.label_count]
            .iter()
            .map(|&(o, l)| &self.question[o as usize..o as usize + l as usize])
    }

    /// Number of labels in the question name.
    pub fn label_count(&self) -> usize {
        self.label_count
    }

    /// Wire length of the question name.
    pub fn name_len(&self) -> usize {
        self.question.len() - 4
    }

    /// Reads one query. Only standard queries with exactly one question
    /// are answered; anything else is dropped or refused cheaply.
    pub fn parse(packet: &'a [u8]) -> Result<Query<'a>, Rejection> {
        if packet.len() < HEADER_LEN {
            return Err(Rejection::Drop);
        }
        let id = u16::from_be_bytes([packet[0], packet[1]]);
        let flags = u16::from_be_bytes([packet[2], packet[3]]);
        if flags & 0x8000 != 0 {
            return Err(Rejection::Drop);
        }
        // Echo opcode and RD in error replies.
        let echo = flags & 0x7900;
        let formerr = Rejection::Reply {
            id,
            flags: echo,
            rcode: rcode::FORMERR,
        };
        let opcode = (flags >> 11) & 0xF;
        if opcode != 0 {
            return Err(Rejection::Reply {
                id,
                flags: echo,
                rcode: rcode::NOTIMP,
            });
        }
        let count = |i: usize| u16::from_be_bytes([packet[i], packet[i + 1]]);
        let (qd, an, ns, ar) = (count(4), count(6), count(8), count(10));
        if qd != 1 || an != 0 || ns != 0 {
            return Err(formerr);
        }
        let mut labels = [(0u8, 0u8); MAX_LABELS];
        let mut label_count = 0;
        let start = HEADER_LEN;
        let mut pos = start;
        loop {
            let Some(&len) = packet.get(pos) else {
                return Err(formerr);
            };
            if len == 0 {
                pos += 1;
                break;
            }
            // A pointer or a reserved label type in a question: malformed.
            if len & 0xC0 != 0 || label_count == MAX_LABELS - 1 {
                return Err(formerr);
            }
            let end = pos + 1 + len as usize;
            if end - start > 255 || end > packet.len() {
                return Err(formerr);
            }
            labels[label_count] = ((pos + 1 - start) as u8, len);
            label_count += 1;
            pos = end;
        }
        if pos - start > 255 || pos + 4 > packet.len() {
            return Err(formerr);
        }
        let qtype = u16::from_be_bytes([packet[pos], packet[pos + 1]]);
        let qclass = u16::from_be_bytes([packet[pos + 2], packet[pos + 3]]);
        let question = &packet[start..pos + 4];
        let edns = parse_additional(&packet[pos + 4..], ar).ok_or(formerr)?;
        Ok(Query {
            id,
            recursion_desired: flags & 0x0100 != 0,
            checking_disabled: flags & 0x0010 != 0,
            question,
            labels,
            label_count,
            qtype,
            qclass,
            edns,
        })
    }
}

/// Reads the additional section looking for one OPT record; `None` when
/// it is malformed (including two OPT records).
fn parse_additional(mut rest: &[u8], count: u16) -> Option<Option<Edns>> {
    let mut edns = None;
    for _ in 0..count {
        let name_end = skip_name(rest)?;
        let fixed = rest.get(name_end..name_end + 10)?;
        let rtype = u16::from_be_bytes([fixed[0], fixed[1]]);
        let class = u16::from_be_bytes([fixed[2], fixed[3]]);
        let rdlen = u16::from_be_bytes([fixed[8], fixed[9]]) as usize;
        let end = name_end + 10 + rdlen;
        if end > rest.len() {
            return None;
        }
        if rtype == rtype::OPT {
            if edns.is_some() || name_end != 1 {
                return None;
            }
            edns = Some(Edns {
                payload: class,
                version: fixed[5],
            });
        }
        rest = &rest[end..];
    }
    Some(edns)
}

/// Length of the (possibly compressed) name at the start of `buf`.
fn skip_name(buf: &[u8]) -> Option<usize> {
    let mut pos = 0;
    loop {
        let len = *buf.get(pos)?;
        match len & 0xC0 {
            0 if len == 0 => return Some(pos + 1),
            0 => pos += 1 + len as usize,
            0xC0 => return (pos + 2 <= buf.len()).then_some(pos + 2),
            _ => return None,
        }
        if pos > 255 {
            return None;
        }
    }
}

/// A header-only reply (FORMERR, NOTIMP) into `out`: never larger than
/// the packet it answers.
pub fn write_rejection(out: &mut Vec<u8>, id: u16, flags: u16, code: u8) {
    out.clear();
    out.extend_from_slice(&id.to_be_bytes());
    out.extend_from_slice(&(0x8000 | flags | code as u16).to_be_bytes());
    out.extend_from_slice(&[0; 8]);
}

/// Writes an answer, record by record, never past `limit` bytes.
pub struct Answer<'b> {
    buf: &'b mut Vec<u8>,
    limit: usize,
    /// Bytes kept free for what must come last (the OPT record).
    reserved: usize,
    counts: [u16; 3],
    truncated: bool,
}

/// The sections of a message, in order.
#[derive(Clone, Copy)]
pub enum Section {
    Answer = 0,
    Authority = 1,
    Additional = 2,
}

impl<'b> Answer<'b> {
    /// Starts an answer to `q`: header (flags filled by [`Answer::finish`])
    /// and the question as sent.
    pub fn start(buf: &'b mut Vec<u8>, q: &Query<'_>, limit: usize) -> Answer<'b> {
        buf.clear();
        buf.extend_from_slice(&q.id.to_be_bytes());
        buf.extend_from_slice(&[0, 0, 0, 1, 0, 0, 0, 0, 0, 0]);
        buf.extend_from_slice(q.question);
        let reserved = if q.edns.is_some() { OPT_LEN } else { 0 };
        Answer {
            buf,
            limit,
            reserved,
            counts: [0; 3],
            truncated: false,
        }
    }

    /// Bytes written so far (where the next record starts).
    pub fn written(&self) -> usize {
        self.buf.len()
    }

    /// Whether `bytes` more still fit.
    pub fn fits(&self, bytes: usize) -> bool {
        self.buf.len() + bytes + self.reserved <= self.limit
    }

    /// Notes that some records were left out.
    pub fn set_truncated(&mut self) {
        self.truncated = true;
    }

    /// Appends a record whose owner is a compression pointer to `owner`
    /// (an offset of a name already in the message) and whose rdata is
    /// `rdata`. Returns false (and writes nothing) when it does not fit.
    pub fn record(
        &mut self,
        section: Section,
        owner: u16,
        rtype: u16,
        ttl: u32,
        rdata: &[u8],
    ) -> bool {
        if !self.fits(RR_FIXED + rdata.len()) {
            self.truncated = true;
            return false;
        }
        self.header(owner, rtype, ttl, rdata.len());
        self.buf.extend_from_slice(rdata);
        self.counts[section as usize] += 1;
        true
    }

    /// Appends an SRV record (owner: pointer to `owner`); its target is
    /// written uncompressed (RFC 2782). Returns the offset of the target
    /// name, for the additional records that name it, or `None` when the
    /// record and `also` more bytes do not fit.
    pub fn srv(&mut self, owner: u16, ttl: u32, srv: SrvData<'_>, also: usize) -> Option<u16> {
        let rdlen = 6 + srv.target.len();
        if !self.fits(RR_FIXED + rdlen + also) {
            self.truncated = true;
            return None;
        }
        self.header(owner, rtype::SRV, ttl, rdlen);
        self.buf.extend_from_slice(&srv.priority.to_be_bytes());
        self.buf.extend_from_slice(&srv.weight.to_be_bytes());
        self.buf.extend_from_slice(&srv.port.to_be_bytes());
        let target = self.buf.len();
        self.buf.extend_from_slice(srv.target);
        self.counts[Section::Answer as usize] += 1;
        u16::try_from(target).ok().filter(|t| *t < 0x4000)
    }

    /// Appends an SOA record for the zone whose name sits at `zone`.
    pub fn soa(&mut self, section: Section, zone: u16, ttl: u32, minimum: u32) -> bool {
        // mname ns.<zone>, rname hostmaster.<zone>, then five numbers.
        let rdlen = (3 + 2) + (11 + 2) + 20;
        if !self.fits(RR_FIXED + rdlen) {
            self.truncated = true;
            return false;
        }
        self.header(zone, rtype::SOA, ttl, rdlen);
        let pointer = (0xC000 | zone).to_be_bytes();
        self.buf.extend_from_slice(b"\x02ns");
        self.buf.extend_from_slice(&pointer);
        self.buf.extend_from_slice(b"\x0ahostmaster");
        self.buf.extend_from_slice(&pointer);
        for n in [1u32, 3600, 600, 86400, minimum] {
            self.buf.extend_from_slice(&n.to_be_bytes());
        }
        self.counts[section as usize] += 1;
        true
    }

    fn header(&mut self, owner: u16, rtype: u16, ttl: u32, rdlen: usize) {
        self.buf.extend_from_slice(&(0xC000 | owner).to_be_bytes());
        self.buf.extend_from_slice(&rtype.to_be_bytes());
        self.buf.extend_from_slice(&rtype::CLASS_IN.to_be_bytes());
        self.buf.extend_from_slice(&ttl.to_be_bytes());
        self.buf.extend_from_slice(&(rdlen as u16).to_be_bytes());
    }

    /// Fills in the header (response, authoritative or not, rcode, TC when
    /// records were left out) and the counts, and appends the OPT record
    /// when the query had one.
    pub fn finish(self, q: &Query<'_>, authoritative: bool, recursion: bool, code: u8) {
        let mut flags: u16 = 0x8000;
        if authoritative {
            flags |= 0x0400;
        }
        if self.truncated {
            flags |= 0x0200;
        }
        if q.recursion_desired {
            flags |= 0x0100;
        }
        if recursion {
            flags |= 0x0080;
        }
        if q.checking_disabled {
            flags |= 0x0010;
        }
        flags |= code as u16;
        let mut additional = self.counts[2];
        if q.edns.is_some() {
            self.buf.push(0);
            self.buf.extend_from_slice(&rtype::OPT.to_be_bytes());
            self.buf.extend_from_slice(&MAX_UDP_PAYLOAD.to_be_bytes());
            self.buf.extend_from_slice(&[0, 0, 0, 0, 0, 0]);
            additional += 1;
        }
        self.buf[2..4].copy_from_slice(&flags.to_be_bytes());
        self.buf[6..8].copy_from_slice(&self.counts[0].to_be_bytes());
        self.buf[8..10].copy_from_slice(&self.counts[1].to_be_bytes());
        self.buf[10..12].copy_from_slice(&additional.to_be_bytes());
    }
}

/// Fixed part of a resource record with a pointer owner: pointer, type,
/// class, TTL, rdlength.
pub const RR_FIXED: usize = 2 + 2 + 2 + 4 + 2;

/// The data of one SRV record.
pub struct SrvData<'a> {
    pub priority: u16,
    pub weight: u16,
    pub port: u16,
    /// The target, as an uncompressed wire-format name.
    pub target: &'a [u8],
}

/// Encodes dotted `name` (trailing dot optional) in wire format; `None`
/// when a label is empty or longer than 63 bytes, or the name is too long.
pub fn encode_name(name: &str) -> Option<Vec<u8>> {
    let mut out = Vec::with_capacity(name.len() + 2);
    let name = name.strip_suffix('.').unwrap_or(name);
    if !name.is_empty() {
        for label in name.split('.') {
            if label.is_empty() || label.len() > 63 {
                return None;
            }
            out.push(label.len() as u8);
            out.extend_from_slice(label.as_bytes());
        }
    }
    out.push(0);
    (out.len() <= 255).then_some(out)
}

#[cfg(test)]
mod tests {
    use super::*;

    fn query(name: &str, qtype: u16, edns: Option<u16>) -> Vec<u8> {
        let mut p = vec![
            0x12,
            0x34,
            0x01,
            0x00,
            0,
            1,
            0,
            0,
            0,
            0,
            0,
            edns.is_some() as u8,
        ];
        p.extend(encode_name(name).unwrap());
        p.extend(qtype.to_be_bytes());
        p.extend(1u16.to_be_bytes());
        if let Some(size) = edns {
            p.extend([0, 0, 41]);
            p.extend(size.to_be_bytes());
            p.extend([0, 0, 0, 0, 0, 0]);
        }
        p
    }

    #[test]
    fn parses_questions() {
        let cases: &[(&str, u16, Option<u16>, usize)] = &[
            ("web.service.consul.", rtype::SRV, None, 3),
            ("Web.Service.Consul", rtype::A, Some(1232), 3),
            (".", rtype::SOA, None, 0),
        ];
        for &(name, qtype, edns, labels) in cases {
            let p = query(name, qtype, edns);
            let q = Query::parse(&p).unwrap();
            assert_eq!((q.id, q.qtype, q.qclass), (0x1234, qtype, 1), "{name}");
            assert_eq!(q.label_count(), labels, "{name}");
            assert_eq!(q.edns.map(|e| e.payload), edns, "{name}");
            assert!(q.recursion_desired);
            let first = name.split('.').next().unwrap();
            if labels > 0 {
                assert_eq!(q.labels().next().unwrap(), first.as_bytes());
            }
        }
    }

    #[test]
    fn rejects_malformed_packets() {
        let good = query("web.service.consul", rtype::A, None);
        let formerr = |p: &[u8]| matches!(Query::parse(p), Err(Rejection::Reply { rcode: 1, .. }));
        let mut two_questions = good.clone();
        two_questions[5] = 2;
        let mut long_label = good.clone();
        long_label[12] = 0x3F;
        let mut pointer = good.clone();
        pointer[12] = 0xC0;
        let mut bad_opt = query("a", rtype::A, Some(512));
        bad_opt.truncate(bad_opt.len() - 3);
        assert_eq!(Query::parse(&good[..11]).unwrap_err(), Rejection::Drop);
        let mut response = good.clone();
        response[2] |= 0x80;
        assert_eq!(Query::parse(&response).unwrap_err(), Rejection::Drop);
        for (what, p) in [
            ("truncated question", &good[..good.len() - 2]),
            ("two questions", &two_questions[..]),
            ("label past the end", &long_label[..]),
            ("pointer in question", &pointer[..]),
            ("truncated OPT", &bad_opt[..]),
        ] {
            assert!(formerr(p), "{what}: {:?}", Query::parse(p));
        }
        let mut notify = good.clone();
        notify[2] = 0x20;
        assert!(matches!(
            Query::parse(&notify),
            Err(Rejection::Reply { rcode: 4, .. })
        ));
    }

    #[test]
    fn encodes_names() {
        assert_eq!(encode_name("a.bc.").unwrap(), b"\x01a\x02bc\x00");
        assert_eq!(encode_name("a.bc").unwrap(), b"\x01a\x02bc\x00");
        assert_eq!(encode_name(".").unwrap(), b"\x00");
        assert!(encode_name("a..b").is_none());
        assert!(encode_name(&"x".repeat(64)).is_none());
    }
}

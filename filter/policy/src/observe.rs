//! What the filter records of the traffic it lets through, for `deployer learn` and
//! `deployer status`: per (caller, local port, method, XNAT route) a count of requests that
//! were allowed (under `observe: ROUTES`), and a count of those a dry-run policy would have
//! denied (whenever a dry-run policy is configured).
//!
//! No patient data is kept: the caller is the peer's SPIFFE identity (or `plaintext`), the
//! route is the path reduced to XNAT's route grammar (`route`), with every identifier a
//! wildcard; no query, header value or identifier is ever stored.
//!
//! The table is bounded ([`MAX_RECORDS`] per VM; what does not fit is counted, not kept), and
//! a request whose record exists allocates nothing. The glue exports each record as an Envoy
//! metric whose name carries the tuple losslessly ([`metric_name`]), so it can be read
//! through the Kubernetes API from the sidecar's Prometheus endpoint; [`parse_metric_name`]
//! reads it back.

use crate::config::ObserveMode;
use crate::model::Engine;
use crate::normalize::{apply_aliases, is_normal_path, query_start, tomcat_path, CompiledAlias, MAX_PATH};
use crate::request::{Decision, Request, OBSERVED_METRIC, WOULD_DENY_METRIC};
use crate::route::{route_template, MAX_ROUTE};

/// The most records one VM keeps, observed and would-deny together.
pub const MAX_RECORDS: usize = 1024;
/// The longest caller and method recorded; a longer one is counted as overflow.
pub const MAX_CALLER: usize = 255;
pub const MAX_METHOD: usize = 32;

/// The caller of a plaintext request.
pub const PLAINTEXT_CALLER: &str = "plaintext";
/// The caller of a mutual-TLS request whose certificate has no URI SAN.
pub const NO_IDENTITY_CALLER: &str = "mtls-without-identity";

/// What a record counts.
#[derive(Debug, Clone, Copy, PartialEq, Eq, PartialOrd, Ord, Hash)]
pub enum RecordKind {
    /// Requests allowed, as observed under `observe: ROUTES`.
    Observed,
    /// Requests allowed that a dry-run policy would have denied.
    WouldDeny,
}

impl RecordKind {
    /// The metric name's base: [`OBSERVED_METRIC`] or [`WOULD_DENY_METRIC`].
    pub fn metric_base(self) -> &'static str {
        match self {
            RecordKind::Observed => OBSERVED_METRIC,
            RecordKind::WouldDeny => WOULD_DENY_METRIC,
        }
    }
}

/// One record's key, borrowed.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct Tuple<'a> {
    pub caller: &'a [u8],
    pub port: Option<u16>,
    pub method: &'a [u8],
    pub route: &'a [u8],
}

/// One record's key, owned: what [`parse_metric_name`] gives back.
#[derive(Debug, Clone, PartialEq, Eq, PartialOrd, Ord, Hash)]
pub struct OwnedTuple {
    pub caller: String,
    pub port: Option<u16>,
    pub method: String,
    pub route: String,
}

/// One kept record. `metric` and `time_metric` are the glue's handles for the Envoy metrics
/// that export it, defined on the first flush.
#[derive(Debug)]
pub struct Record {
    pub kind: RecordKind,
    caller: Box<[u8]>,
    method: Box<[u8]>,
    route: Box<[u8]>,
    pub port: Option<u16>,
    hash: u64,
    /// Requests counted since the last flush.
    pending: u64,
    pub metric: Option<u32>,
    pub time_metric: Option<u32>,
}

impl Record {
    pub fn tuple(&self) -> Tuple<'_> {
        Tuple { caller: &self.caller, port: self.port, method: &self.method, route: &self.route }
    }
}

/// The bounded table of records. The open-addressing index is sized once, on creation; a
/// record's key is allocated once, when it is first seen.
#[derive(Debug)]
pub struct ObservationTable {
    index: RecordIndex,
    /// Where each request's route is written: kept, so no request initialises a buffer.
    route: Box<[u8; MAX_ROUTE]>,
}

#[derive(Debug)]
struct RecordIndex {
    records: Vec<Record>,
    /// Indices into `records` + 1; 0 is an empty slot. A power of two, at least twice
    /// [`MAX_RECORDS`], so probes stay short.
    slots: Box<[u32]>,
    capacity: usize,
    /// Requests not recorded since the last flush: the table was full or a field too long.
    overflow: u64,
}

impl Default for ObservationTable {
    fn default() -> Self {
        ObservationTable::with_capacity(MAX_RECORDS)
    }
}

impl ObservationTable {
    /// A table of at most `capacity` records (at most [`MAX_RECORDS`]).
    pub fn with_capacity(capacity: usize) -> ObservationTable {
        let capacity = capacity.min(MAX_RECORDS);
        let slots = (capacity * 2).next_power_of_two().max(2);
        let index = RecordIndex { records: Vec::new(), slots: vec![0; slots].into(), capacity, overflow: 0 };
        ObservationTable { index, route: Box::new([0; MAX_ROUTE]) }
    }

    /// Counts one request under `tuple`: an existing record's count goes up with no
    /// allocation; a new one is kept if there is room, else the request counts as overflow.
    pub fn record(&mut self, kind: RecordKind, tuple: Tuple<'_>) {
        self.index.record(kind, tuple);
    }

    /// Calls `f` with each record counted since the last flush and its count; the counts
    /// start again from zero. Returns the overflow since the last flush, also reset.
    pub fn flush(&mut self, f: impl FnMut(&mut Record, u64)) -> u64 {
        self.index.flush(f)
    }

    /// How many records are kept.
    pub fn len(&self) -> usize {
        self.index.records.len()
    }

    pub fn is_empty(&self) -> bool {
        self.index.records.is_empty()
    }
}

impl RecordIndex {
    fn record(&mut self, kind: RecordKind, tuple: Tuple<'_>) {
        if tuple.caller.len() > MAX_CALLER || tuple.method.len() > MAX_METHOD || tuple.route.len() > MAX_ROUTE {
            self.overflow += 1;
            return;
        }
        let hash = hash(kind, &tuple);
        let mask = self.slots.len() - 1;
        let mut slot = (hash as usize) & mask;
        loop {
            match self.slots[slot] {
                0 => break,
                n => {
                    let record = &mut self.records[n as usize - 1];
                    if record.hash == hash && record.kind == kind && record.tuple() == tuple {
                        record.pending += 1;
                        return;
                    }
                }
            }
            slot = (slot + 1) & mask;
        }
        if self.records.len() >= self.capacity {
            self.overflow += 1;
            return;
        }
        self.records.push(Record {
            kind,
            caller: tuple.caller.into(),
            method: tuple.method.into(),
            route: tuple.route.into(),
            port: tuple.port,
            hash,
            pending: 1,
            metric: None,
            time_metric: None,
        });
        self.slots[slot] = self.records.len() as u32;
    }

    fn flush(&mut self, mut f: impl FnMut(&mut Record, u64)) -> u64 {
        for record in self.records.iter_mut().filter(|r| r.pending > 0) {
            let n = std::mem::take(&mut record.pending);
            f(record, n);
        }
        std::mem::take(&mut self.overflow)
    }
}

/// A multiply-rotate hash over the tuple's fields, eight bytes at a time (the table's index
/// only: a collision costs a probe, never a wrong record, as keys are compared in full).
fn hash(kind: RecordKind, tuple: &Tuple<'_>) -> u64 {
    const K: u64 = 0x51_7c_c1_b7_27_22_0a_95;
    let mut h = (kind as u64) ^ (u64::from(tuple.port.unwrap_or(0)) << 8) ^ (u64::from(tuple.port.is_some()) << 24);
    let mut eat = |bytes: &[u8]| {
        let mut words = bytes.chunks_exact(8);
        for chunk in &mut words {
            let mut word = [0u8; 8];
            word.copy_from_slice(chunk);
            h = (h.rotate_left(5) ^ u64::from_le_bytes(word)).wrapping_mul(K);
        }
        let mut last = [0u8; 8];
        last[..words.remainder().len()].copy_from_slice(words.remainder());
        // The length ends each field, so ("ab", "c") and ("a", "bc") differ.
        h = (h.rotate_left(5) ^ u64::from_le_bytes(last) ^ ((bytes.len() as u64) << 56)).wrapping_mul(K);
    };
    eat(tuple.caller);
    eat(tuple.method);
    eat(tuple.route);
    h
}

impl Engine {
    /// Whether this configuration records the routes it allows (`observe: ROUTES`).
    pub fn observes_routes(&self) -> bool {
        self.observe == ObserveMode::Routes
    }

    /// Whether this configuration records anything: `observe: ROUTES`, or a dry-run policy.
    pub fn records(&self) -> bool {
        self.observe == ObserveMode::Routes || !self.dry_run_deny.is_empty() || !self.dry_run_allow.is_empty()
    }

    /// Records an allowed request: as observed under `observe: ROUTES`, and as would-deny if a
    /// dry-run policy would have denied it. A denied request is not recorded: learning from it
    /// would allow what is denied today. `req` must hold what [`Engine::needs`] lists, which
    /// for a configuration that [`records`](Engine::records) includes the method, path, port
    /// and peer.
    pub fn observe(&self, req: &Request<'_>, decision: &Decision, table: &mut ObservationTable) {
        let observed = self.observe == ObserveMode::Routes;
        if !decision.verdict.is_allowed() || !(observed || decision.dry_run_denied) {
            return;
        }
        let path = match query_start(req.path) {
            Some(end) => &req.path[..end],
            None => req.path,
        };
        let ObservationTable { index, route } = table;
        let len = if !self.normalises_paths() || is_normal_path(path, &self.aliases) {
            route_template(path, route)
        } else {
            match normal_route(path, &self.aliases, route) {
                Some(len) => len,
                // Refused paths are denied, so never get here; if one did, it is not kept.
                None => return,
            }
        };
        let caller = match req.peer {
            None => PLAINTEXT_CALLER.as_bytes(),
            Some([]) => NO_IDENTITY_CALLER.as_bytes(),
            Some(san) => san,
        };
        let tuple = Tuple { caller, port: req.port, method: req.method, route: &route[..len] };
        if observed {
            index.record(RecordKind::Observed, tuple);
        }
        if decision.dry_run_denied {
            index.record(RecordKind::WouldDeny, tuple);
        }
    }
}

/// The route of a path that is not its own normal form, through a buffer on the stack only
/// then (most paths are normal).
#[inline(never)]
fn normal_route(path: &[u8], aliases: &[CompiledAlias], route: &mut [u8; MAX_ROUTE]) -> Option<usize> {
    let mut normal = [0u8; MAX_PATH];
    let len = tomcat_path(path, &mut normal).ok()?;
    let len = apply_aliases(&mut normal, len, aliases);
    Some(route_template(&normal[..len], route))
}

/// Separates the fields of a metric name; an escaped field never holds two `_` in a row.
const SEPARATOR: &str = "__";

/// The Envoy metric that exports a record: the kind's base, then caller, port, method and
/// route, each escaped so the name survives Prometheus' sanitising unchanged (ASCII letters
/// and digits as they are, every other byte `_` and two upper-case hex digits).
pub fn metric_name(kind: RecordKind, tuple: &Tuple<'_>) -> String {
    let mut name = String::with_capacity(kind.metric_base().len() + 3 * (tuple.caller.len() + tuple.route.len()) + 32);
    name.push_str(kind.metric_base());
    let port = tuple.port.map(|p| p.to_string());
    let port = port.as_deref().unwrap_or("none");
    for field in [tuple.caller, port.as_bytes(), tuple.method, tuple.route] {
        name.push_str(SEPARATOR);
        escape(field, &mut name);
    }
    name
}

/// The gauge beside a would-deny record's counter: when it last counted, in Unix seconds.
pub fn time_metric_name(kind: RecordKind, tuple: &Tuple<'_>) -> String {
    let name = metric_name(kind, tuple);
    format!("{}_at{}", kind.metric_base(), &name[kind.metric_base().len()..])
}

fn escape(field: &[u8], out: &mut String) {
    const HEX: &[u8; 16] = b"0123456789ABCDEF";
    for &b in field {
        if b.is_ascii_alphanumeric() {
            out.push(b as char);
        } else {
            out.push('_');
            out.push(HEX[usize::from(b >> 4)] as char);
            out.push(HEX[usize::from(b & 0xf)] as char);
        }
    }
}

fn unescape(field: &str) -> Option<Vec<u8>> {
    let bytes = field.as_bytes();
    let mut out = Vec::with_capacity(bytes.len());
    let mut i = 0;
    while i < bytes.len() {
        match bytes[i] {
            b'_' => {
                let hex = std::str::from_utf8(bytes.get(i + 1..i + 3)?).ok()?;
                if !hex.bytes().all(|b| b.is_ascii_digit() || (b'A'..=b'F').contains(&b)) {
                    return None;
                }
                out.push(u8::from_str_radix(hex, 16).ok()?);
                i += 3;
            }
            b if b.is_ascii_alphanumeric() => {
                out.push(b);
                i += 1;
            }
            _ => return None,
        }
    }
    Some(out)
}

/// What a metric name exported by [`metric_name`] (or [`time_metric_name`]) records: its
/// kind, whether it is the time gauge, and the tuple. `None` for any other name.
pub fn parse_metric_name(name: &str) -> Option<(RecordKind, bool, OwnedTuple)> {
    let (kind, time, rest) = [RecordKind::Observed, RecordKind::WouldDeny].into_iter().find_map(|kind| {
        let rest = name.strip_prefix(kind.metric_base())?;
        match rest.strip_prefix("_at") {
            Some(rest) if rest.starts_with(SEPARATOR) => Some((kind, true, rest)),
            _ => rest.starts_with(SEPARATOR).then_some((kind, false, rest)),
        }
    })?;
    let fields: Vec<&str> = rest.strip_prefix(SEPARATOR)?.split(SEPARATOR).collect();
    let [caller, port, method, route] = fields.as_slice() else { return None };
    let text = |f: &str| unescape(f).and_then(|b| String::from_utf8(b).ok());
    let port = match *port {
        "none" => None,
        p => Some(p.parse::<u16>().ok()?),
    };
    Some((kind, time, OwnedTuple { caller: text(caller)?, port, method: text(method)?, route: text(route)? }))
}

#[cfg(test)]
mod tests {
    use super::*;

    fn tuple<'a>(caller: &'a str, port: Option<u16>, method: &'a str, route: &'a str) -> Tuple<'a> {
        Tuple { caller: caller.as_bytes(), port, method: method.as_bytes(), route: route.as_bytes() }
    }

    #[test]
    fn a_metric_name_gives_back_its_tuple_exactly() {
        let cases = [
            tuple("spiffe://cluster.local/ns/xnat/sa/uploader", Some(8080), "POST", "/data/services/import"),
            tuple("plaintext", None, "GET", "/data/projects/{*}/subjects/{*}/files/{**}"),
            tuple("spiffe://td/ns/a_b/sa/c__d", Some(1), "M-SEARCH", "/app/template/Index.vm"),
            tuple("x", Some(65535), "GET", "/"),
        ];
        for kind in [RecordKind::Observed, RecordKind::WouldDeny] {
            for t in cases {
                let name = metric_name(kind, &t);
                assert!(name.bytes().all(|b| b.is_ascii_alphanumeric() || b == b'_'), "{name}");
                let (k, time, owned) = parse_metric_name(&name).unwrap();
                assert_eq!((k, time), (kind, false));
                assert_eq!(owned.caller.as_bytes(), t.caller);
                assert_eq!(owned.port, t.port);
                assert_eq!(owned.method.as_bytes(), t.method);
                assert_eq!(owned.route.as_bytes(), t.route);
                let (k, time, again) = parse_metric_name(&time_metric_name(kind, &t)).unwrap();
                assert_eq!((k, time, again), (kind, true, owned));
            }
        }
    }

    #[test]
    fn other_metric_names_are_not_records() {
        for name in [
            "xnat_guard_allowed",
            "xnat_guard_observed",
            "xnat_guard_observed__a__1__GET",
            "xnat_guard_observed__a__x__GET__r",
            "xnat_guard_observed__a_2__1__GET__r",
            "xnat_guard_observed__a_2F__1__GET__r__extra",
            "xnat_guard_observe_overflow",
        ] {
            assert_eq!(parse_metric_name(name), None, "{name}");
        }
    }

    #[test]
    fn the_table_counts_and_stays_bounded() {
        let mut table = ObservationTable::with_capacity(2);
        let a = tuple("plaintext", Some(8080), "GET", "/data/projects");
        let b = tuple("plaintext", Some(8080), "POST", "/data/projects");
        let c = tuple("plaintext", Some(8080), "PUT", "/data/projects");
        for _ in 0..3 {
            table.record(RecordKind::Observed, a);
        }
        table.record(RecordKind::Observed, b);
        table.record(RecordKind::Observed, c);
        table.record(RecordKind::WouldDeny, a);
        let mut seen = Vec::new();
        let overflow =
            table.flush(|r, n| seen.push((r.kind, String::from_utf8_lossy(r.tuple().method).into_owned(), n)));
        assert_eq!(
            seen,
            vec![(RecordKind::Observed, "GET".to_string(), 3), (RecordKind::Observed, "POST".to_string(), 1)]
        );
        assert_eq!(overflow, 2, "PUT and the would-deny record did not fit");
        assert_eq!(table.len(), 2);
        let mut again = 0;
        assert_eq!(table.flush(|_, _| again += 1), 0);
        assert_eq!(again, 0, "a flush starts the counts again");
    }

    #[test]
    fn over_long_fields_are_counted_not_kept() {
        let mut table = ObservationTable::default();
        let long = "x".repeat(MAX_CALLER + 1);
        table.record(RecordKind::Observed, tuple(&long, None, "GET", "/"));
        table.record(RecordKind::Observed, tuple("a", None, &"M".repeat(MAX_METHOD + 1), "/"));
        assert!(table.is_empty());
        assert_eq!(table.flush(|_, _| ()), 2);
    }
}

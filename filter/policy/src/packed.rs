//! The compiled configuration as bytes. The deployer compiles a configuration natively and
//! ships the [`Engine`] in the plugin configuration's `compiled` member (base64, beside the
//! policies it was compiled from); the Wasm filter reads only that member, so the module
//! carries no JSON reader and no compiler, and V8 has half the code to compile at load
//! (docs/PERFORMANCE.md, "Memory").
//!
//! [`decode`] trusts nothing: it refuses truncated or corrupt bytes (a checksum covers them), a
//! format other than [`FORMAT`], and any model a compile could not have built (an index out of
//! range, an unsorted rule index, an alias that lengthens a path). The facts a sidecar reads are
//! widened to what the decoded rules match on, so bytes can never make a rule go unread.

use std::net::{IpAddr, Ipv4Addr, Ipv6Addr};

use crate::config::{MethodOverride, MtlsMode, ObserveMode, PathNormalization, TunnelDecoding};
use crate::error::ConfigError;
use crate::model::{
    pack_method, CompiledPolicy, CompiledRule, Conjunction, Constraint, Engine, Matcher, MethodTable, MtlsTable,
    RuleIndex, Rules, ServiceAccount, ValueMap,
};
use crate::pattern::{Cidr, PathPattern, Pattern, TemplatePart};
use crate::request::{Needs, PolicyName};

/// The plugin configuration member that holds the compiled configuration.
pub const MEMBER: &str = "compiled";

/// The layout's version: a module reads only its own. Bump it with any change to the model or
/// to how it is written (a test pins the bytes of the runbook's configuration).
pub const FORMAT: u8 = 1;

const MAGIC: &[u8; 3] = b"XGC";

type Read<T> = Result<T, &'static str>;

const TRUNCATED: &str = "the compiled configuration is truncated";
const CORRUPT: &str = "the compiled configuration is corrupt: render it again with the deployer";

/// The refusal of a `compiled` member, at that member.
fn refused(message: &str) -> ConfigError {
    ConfigError { path: MEMBER.to_string(), message: message.to_string() }
}

/// `engine` as bytes: magic, format, the model, and a checksum of the model.
pub fn encode(engine: &Engine) -> Vec<u8> {
    let mut w = Writer(Vec::with_capacity(256));
    w.0.extend_from_slice(MAGIC);
    w.0.push(FORMAT);
    w.engine(engine);
    let sum = checksum(&w.0[MAGIC.len() + 1..]);
    w.0.extend_from_slice(&sum.to_le_bytes());
    w.0
}

/// `engine` as the `compiled` member's value.
pub fn encode_base64(engine: &Engine) -> String {
    base64_encode(&encode(engine))
}

/// The engine `bytes` hold, checked as described in the module's documentation.
pub fn decode(bytes: &[u8]) -> Result<Engine, ConfigError> {
    let body = bytes.strip_prefix(MAGIC).ok_or_else(|| refused("not a compiled xnat-guard configuration"))?;
    let (&format, body) = body.split_first().ok_or_else(|| refused(TRUNCATED))?;
    if format != FORMAT {
        return Err(refused(if format > FORMAT {
            "compiled for a newer filter module than this one: roll out the module the deployer pins, or render with the deployer of this module's release"
        } else {
            "compiled for an older filter module than this one: render the configuration again with the deployer of this module's release"
        }));
    }
    let split = body.len().checked_sub(8).ok_or_else(|| refused(TRUNCATED))?;
    let (model, sum) = body.split_at(split);
    if sum != checksum(model).to_le_bytes() {
        return Err(refused(CORRUPT));
    }
    let mut r = Reader { rest: model, error: None };
    let mut engine = r.engine();
    if let Some(why) = r.error {
        return Err(refused(why));
    }
    if !r.rest.is_empty() {
        return Err(refused(CORRUPT));
    }
    check(&engine).map_err(refused)?;
    // Whatever the bytes said, every fact a rule matches on is read.
    engine.needs = union(engine.needs, engine.implied_needs());
    Ok(engine)
}

/// The engine a plugin configuration's `compiled` member holds; `None` when it has none. Only
/// that member is read: the others (the policies it was compiled from) are skipped unread.
pub fn from_plugin_config(json: &[u8]) -> Result<Option<Engine>, ConfigError> {
    let Some(text) =
        compiled_member(json).map_err(|m| ConfigError { path: "(config)".to_string(), message: m.to_string() })?
    else {
        return Ok(None);
    };
    let bytes = base64_decode(text).ok_or_else(|| refused("is not base64"))?;
    decode(&bytes).map(Some)
}

/// FNV-1a: catches truncation and stray edits, not forgery (who can edit the plugin
/// configuration can write any policy anyway).
fn checksum(bytes: &[u8]) -> u64 {
    bytes.iter().fold(0xcbf2_9ce4_8422_2325, |h, &b| (h ^ u64::from(b)).wrapping_mul(0x0100_0000_01b3))
}

fn union(a: Needs, b: Needs) -> Needs {
    Needs {
        method: a.method | b.method,
        path: a.path | b.path,
        query: a.query | b.query,
        host: a.host | b.host,
        port: a.port | b.port,
        port_for_plaintext: a.port_for_plaintext | b.port_for_plaintext,
        peer: a.peer | b.peer,
        identity: a.identity | b.identity,
        source_ip: a.source_ip | b.source_ip,
        remote_ip: a.remote_ip | b.remote_ip,
        destination_ip: a.destination_ip | b.destination_ip,
        sni: a.sni | b.sni,
    }
}

fn needs_bits(n: &Needs) -> u64 {
    [
        n.method,
        n.path,
        n.query,
        n.host,
        n.port,
        n.port_for_plaintext,
        n.peer,
        n.identity,
        n.source_ip,
        n.remote_ip,
        n.destination_ip,
        n.sni,
    ]
    .iter()
    .enumerate()
    .fold(0, |bits, (i, &on)| bits | u64::from(on) << i)
}

fn needs_from_bits(bits: u64) -> Needs {
    let on = |i: u32| bits & (1 << i) != 0;
    Needs {
        method: on(0),
        path: on(1),
        query: on(2),
        host: on(3),
        port: on(4),
        port_for_plaintext: on(5),
        peer: on(6),
        identity: on(7),
        source_ip: on(8),
        remote_ip: on(9),
        destination_ip: on(10),
        sni: on(11),
    }
}

struct Writer(Vec<u8>);

impl Writer {
    /// LEB128.
    fn int(&mut self, mut v: u64) {
        while v >= 0x80 {
            self.0.push((v as u8) | 0x80);
            v >>= 7;
        }
        self.0.push(v as u8);
    }

    fn bytes(&mut self, b: &[u8]) {
        self.int(b.len() as u64);
        self.0.extend_from_slice(b);
    }

    fn flag(&mut self, b: bool) {
        self.0.push(u8::from(b));
    }

    fn list<T>(&mut self, items: &[T], mut put: impl FnMut(&mut Self, &T)) {
        self.int(items.len() as u64);
        for item in items {
            put(self, item);
        }
    }

    fn engine(&mut self, e: &Engine) {
        self.0.push(mtls_tag(e.mtls.default));
        self.list(&e.mtls.ports, |w, (port, mode)| {
            w.int(u64::from(*port));
            w.0.push(mtls_tag(*mode));
        });
        for policies in [&e.deny, &e.allow, &e.audit, &e.dry_run_deny, &e.dry_run_allow] {
            self.list(policies, Writer::policy);
        }
        self.list(&e.names, |w, n| {
            w.bytes(n.name.as_bytes());
            w.bytes(n.namespace.as_bytes());
        });
        self.list(&e.methods.exact, |w, (packed, bit)| {
            w.0.extend_from_slice(&packed.to_le_bytes());
            w.int(*bit);
        });
        self.list(&e.methods.other, |w, (pattern, bit)| {
            w.pattern(pattern);
            w.int(*bit);
        });
        self.list(&e.header_names, |w, n| w.bytes(n.as_bytes()));
        self.int(needs_bits(&e.needs));
        self.0.push(match e.path_mode {
            PathNormalization::Tomcat => 0,
            PathNormalization::None => 1,
        });
        self.list(&e.aliases, |w, (from, to)| {
            w.bytes(from);
            w.bytes(to);
        });
        self.0.push(match e.method_override {
            MethodOverride::Judge => 0,
            MethodOverride::Refuse => 1,
            MethodOverride::Ignore => 2,
        });
        self.0.push(match e.tunnel_decoding {
            TunnelDecoding::Url => 0,
            TunnelDecoding::None => 1,
        });
        self.list(&e.override_headers, |w, &i| w.int(i as u64));
        self.list(&e.loose_headers, |w, &b| w.flag(b));
        self.list(&e.trust_domains, |w, t| w.bytes(t));
        self.flag(e.mesh_scoped);
        match e.config_digest {
            None => self.flag(false),
            Some(d) => {
                self.flag(true);
                self.int(d);
            }
        }
        self.0.push(match e.observe {
            ObserveMode::Off => 0,
            ObserveMode::Routes => 1,
        });
    }

    fn policy(&mut self, p: &CompiledPolicy) {
        self.int(p.index as u64);
        self.list(&p.rules, |w, rule| {
            w.list(&rule.from, Writer::conjunction);
            w.list(&rule.to, Writer::conjunction);
            w.conjunction(&rule.when);
        });
        match &p.rule_index {
            None => self.flag(false),
            Some(index) => {
                self.flag(true);
                self.value_map(&index.principal);
                self.value_map(&index.namespace);
                self.value_map(&index.path_exact);
                self.list(&index.path_prefix, Writer::keyed_map);
                self.list(&index.header, Writer::keyed_map);
                self.rules(&index.scan);
            }
        }
    }

    fn keyed_map(&mut self, (key, map): &(usize, ValueMap)) {
        self.int(*key as u64);
        self.value_map(map);
    }

    fn value_map(&mut self, map: &ValueMap) {
        self.list(&map.0, |w, (value, rules)| {
            w.bytes(value);
            w.rules(rules);
        });
    }

    fn rules(&mut self, rules: &Rules) {
        self.list(rules, |w, &r| w.int(u64::from(r)));
    }

    fn conjunction(&mut self, c: &Conjunction) {
        self.list(c, |w, constraint| {
            w.flag(constraint.negate);
            w.matcher(&constraint.matcher);
        });
    }

    fn matcher(&mut self, m: &Matcher) {
        let patterns = |w: &mut Writer, tag: u8, p: &[Pattern]| {
            w.0.push(tag);
            w.list(p, Writer::pattern);
        };
        let accounts = |w: &mut Writer, tag: u8, a: &[ServiceAccount]| {
            w.0.push(tag);
            w.list(a, |w, (ns, sa)| {
                w.bytes(ns);
                w.bytes(sa);
            });
        };
        let cidrs = |w: &mut Writer, tag: u8, c: &[Cidr]| {
            w.0.push(tag);
            w.list(c, Writer::cidr);
        };
        match m {
            Matcher::Principal(p) => patterns(self, 0, p),
            Matcher::Namespace(p) => patterns(self, 1, p),
            Matcher::ServiceAccount(a) => accounts(self, 2, a),
            Matcher::MeshNamespace(p) => patterns(self, 3, p),
            Matcher::MeshServiceAccount(a) => accounts(self, 4, a),
            Matcher::TrustDomain(p) => patterns(self, 5, p),
            Matcher::SourceIp(c) => cidrs(self, 6, c),
            Matcher::RemoteIp(c) => cidrs(self, 7, c),
            Matcher::DestinationIp(c) => cidrs(self, 8, c),
            Matcher::Host(p) => patterns(self, 9, p),
            Matcher::Port(ports) => {
                self.0.push(10);
                self.list(ports, |w, &p| w.int(u64::from(p)));
            }
            Matcher::Method(mask) => {
                self.0.push(11);
                self.int(*mask);
            }
            Matcher::Path(paths) => {
                self.0.push(12);
                self.list(paths, Writer::path_pattern);
            }
            Matcher::Header(index, p) => {
                self.0.push(13);
                self.int(*index as u64);
                self.list(p, Writer::pattern);
            }
            Matcher::Sni(p) => patterns(self, 14, p),
        }
    }

    fn pattern(&mut self, p: &Pattern) {
        match p {
            Pattern::Exact(b) => {
                self.0.push(0);
                self.bytes(b);
            }
            Pattern::Prefix(b) => {
                self.0.push(1);
                self.bytes(b);
            }
            Pattern::Suffix(b) => {
                self.0.push(2);
                self.bytes(b);
            }
            Pattern::PrefixSuffix(p, s) => {
                self.0.push(3);
                self.bytes(p);
                self.bytes(s);
            }
            Pattern::Present => self.0.push(4),
            Pattern::NonEmpty => self.0.push(5),
        }
    }

    fn path_pattern(&mut self, p: &PathPattern) {
        match p {
            PathPattern::Plain(p) => {
                self.0.push(0);
                self.pattern(p);
            }
            PathPattern::Template { parts, decoded } => {
                self.0.push(1);
                self.list(parts, |w, part| match part {
                    TemplatePart::Literal(b) => {
                        w.0.push(0);
                        w.bytes(b);
                    }
                    TemplatePart::Segment => w.0.push(1),
                    TemplatePart::Segments => w.0.push(2),
                });
                self.flag(*decoded);
            }
        }
    }

    fn cidr(&mut self, c: &Cidr) {
        let (addr, prefix_len) = c.parts();
        match addr {
            IpAddr::V4(a) => {
                self.0.push(0);
                self.0.extend_from_slice(&a.octets());
            }
            IpAddr::V6(a) => {
                self.0.push(1);
                self.0.extend_from_slice(&a.octets());
            }
        }
        self.0.push(prefix_len);
    }
}

fn mtls_tag(mode: MtlsMode) -> u8 {
    match mode {
        MtlsMode::Unset => 0,
        MtlsMode::Disable => 1,
        MtlsMode::Permissive => 2,
        MtlsMode::Strict => 3,
    }
}

/// Reads the model. A read past the end or of a value no writer writes records the first
/// error, empties what is left and returns a default, so that every later read is cheap and
/// empty; [`decode`] then refuses. (Read this way, without a `Result` per value, the reader is
/// a third of the module size.)
struct Reader<'a> {
    rest: &'a [u8],
    error: Option<&'static str>,
}

impl Reader<'_> {
    #[inline(never)]
    fn fail(&mut self, why: &'static str) {
        self.error.get_or_insert(why);
        self.rest = &[];
    }

    fn byte(&mut self) -> u8 {
        match self.rest.split_first() {
            Some((&b, rest)) => {
                self.rest = rest;
                b
            }
            None => {
                self.fail(TRUNCATED);
                0
            }
        }
    }

    fn array<const N: usize>(&mut self) -> [u8; N] {
        match self.rest.split_first_chunk::<N>() {
            Some((head, rest)) => {
                self.rest = rest;
                *head
            }
            None => {
                self.fail(TRUNCATED);
                [0; N]
            }
        }
    }

    #[inline(never)]
    fn int(&mut self) -> u64 {
        let mut value = 0u64;
        for shift in (0..64).step_by(7) {
            let b = self.byte();
            value |= u64::from(b & 0x7f) << shift;
            if b & 0x80 == 0 {
                return value;
            }
        }
        self.fail(CORRUPT);
        0
    }

    /// An integer of at most `max`.
    #[inline(never)]
    fn bounded(&mut self, max: u64) -> u64 {
        let v = self.int();
        if v > max {
            self.fail(CORRUPT);
            return 0;
        }
        v
    }

    fn index(&mut self) -> usize {
        self.bounded(u32::MAX.into()) as usize
    }

    /// A length: every item takes at least a byte, so a count beyond what is left is corrupt
    /// (and allocates nothing).
    #[inline(never)]
    fn count(&mut self) -> usize {
        let n = self.int();
        if n > self.rest.len() as u64 {
            self.fail(TRUNCATED);
            return 0;
        }
        n as usize
    }

    #[inline(never)]
    fn bytes(&mut self) -> Box<[u8]> {
        let n = self.count();
        let (b, rest) = self.rest.split_at(n);
        self.rest = rest;
        b.into()
    }

    #[inline(never)]
    fn text(&mut self) -> String {
        match String::from_utf8(self.bytes().into_vec()) {
            Ok(text) => text,
            Err(_) => {
                self.fail(CORRUPT);
                String::new()
            }
        }
    }

    fn flag(&mut self) -> bool {
        self.tag(1) == 1
    }

    /// A tag of at most `max`.
    #[inline(never)]
    fn tag(&mut self, max: u8) -> u8 {
        let t = self.byte();
        if t > max {
            self.fail(CORRUPT);
            return 0;
        }
        t
    }

    fn list<T>(&mut self, mut take: impl FnMut(&mut Self) -> T) -> Box<[T]> {
        let n = self.count();
        let mut items = Vec::with_capacity(n);
        for _ in 0..n {
            items.push(take(self));
        }
        items.into()
    }

    fn mtls(&mut self) -> MtlsMode {
        [MtlsMode::Unset, MtlsMode::Disable, MtlsMode::Permissive, MtlsMode::Strict][usize::from(self.tag(3))]
    }

    fn engine(&mut self) -> Engine {
        let default = self.mtls();
        let ports = self.list(|r| (r.bounded(u16::MAX.into()) as u16, r.mtls()));
        let deny = self.list(Reader::policy);
        let allow = self.list(Reader::policy);
        let audit = self.list(Reader::policy);
        let dry_run_deny = self.list(Reader::policy);
        let dry_run_allow = self.list(Reader::policy);
        let names = self.list(|r| PolicyName { name: r.text(), namespace: r.text() });
        let exact = self.list(|r| (u128::from_le_bytes(r.array()), r.int()));
        let other = self.list(|r| (r.pattern(), r.int()));
        let header_names = self.list(|r| r.text().into_boxed_str());
        let needs = needs_from_bits(self.bounded((1 << 12) - 1));
        let path_mode = [PathNormalization::Tomcat, PathNormalization::None][usize::from(self.tag(1))];
        let aliases = self.list(|r| (r.bytes(), r.bytes()));
        let method_override =
            [MethodOverride::Judge, MethodOverride::Refuse, MethodOverride::Ignore][usize::from(self.tag(2))];
        let tunnel_decoding = [TunnelDecoding::Url, TunnelDecoding::None][usize::from(self.tag(1))];
        let override_headers = self.list(Reader::index);
        let loose_headers = self.list(Reader::flag);
        let trust_domains = self.list(Reader::bytes);
        let mesh_scoped = self.flag();
        let config_digest = if self.flag() { Some(self.int()) } else { None };
        let observe = [ObserveMode::Off, ObserveMode::Routes][usize::from(self.tag(1))];
        Engine {
            mtls: MtlsTable { default, ports },
            deny,
            allow,
            audit,
            dry_run_deny,
            dry_run_allow,
            names,
            methods: MethodTable { exact, other },
            header_names,
            needs,
            path_mode,
            aliases,
            method_override,
            tunnel_decoding,
            override_headers,
            loose_headers,
            trust_domains,
            mesh_scoped,
            config_digest,
            observe,
        }
    }

    fn policy(&mut self) -> CompiledPolicy {
        let index = self.index();
        let rules = self.list(|r| CompiledRule {
            from: r.list(Reader::conjunction),
            to: r.list(Reader::conjunction),
            when: r.conjunction(),
        });
        let rule_index = self.flag().then(|| RuleIndex {
            principal: self.value_map(),
            namespace: self.value_map(),
            path_exact: self.value_map(),
            path_prefix: self.list(Reader::keyed_map),
            header: self.list(Reader::keyed_map),
            scan: self.rules(),
        });
        CompiledPolicy { index, rules, rule_index }
    }

    fn keyed_map(&mut self) -> (usize, ValueMap) {
        (self.index(), self.value_map())
    }

    fn value_map(&mut self) -> ValueMap {
        ValueMap(self.list(|r| (r.bytes(), r.rules())))
    }

    fn rules(&mut self) -> Rules {
        self.list(|r| r.index() as u32)
    }

    fn conjunction(&mut self) -> Conjunction {
        self.list(|r| Constraint { negate: r.flag(), matcher: r.matcher() })
    }

    fn patterns(&mut self) -> Box<[Pattern]> {
        self.list(Reader::pattern)
    }

    fn accounts(&mut self) -> Box<[ServiceAccount]> {
        self.list(|r| (r.bytes(), r.bytes()))
    }

    fn cidrs(&mut self) -> Box<[Cidr]> {
        self.list(Reader::cidr)
    }

    fn matcher(&mut self) -> Matcher {
        match self.tag(14) {
            0 => Matcher::Principal(self.patterns()),
            1 => Matcher::Namespace(self.patterns()),
            2 => Matcher::ServiceAccount(self.accounts()),
            3 => Matcher::MeshNamespace(self.patterns()),
            4 => Matcher::MeshServiceAccount(self.accounts()),
            5 => Matcher::TrustDomain(self.patterns()),
            6 => Matcher::SourceIp(self.cidrs()),
            7 => Matcher::RemoteIp(self.cidrs()),
            8 => Matcher::DestinationIp(self.cidrs()),
            9 => Matcher::Host(self.patterns()),
            10 => Matcher::Port(self.list(|r| r.bounded(u16::MAX.into()) as u16)),
            11 => Matcher::Method(self.int()),
            12 => Matcher::Path(self.list(Reader::path_pattern)),
            13 => Matcher::Header(self.index(), self.patterns()),
            _ => Matcher::Sni(self.patterns()),
        }
    }

    fn pattern(&mut self) -> Pattern {
        match self.tag(5) {
            0 => Pattern::Exact(self.bytes()),
            1 => Pattern::Prefix(self.bytes()),
            2 => Pattern::Suffix(self.bytes()),
            3 => Pattern::PrefixSuffix(self.bytes(), self.bytes()),
            4 => Pattern::Present,
            _ => Pattern::NonEmpty,
        }
    }

    fn path_pattern(&mut self) -> PathPattern {
        if self.tag(1) == 0 {
            return PathPattern::Plain(self.pattern());
        }
        let parts = self.list(|r| match r.tag(2) {
            0 => TemplatePart::Literal(r.bytes()),
            1 => TemplatePart::Segment,
            _ => TemplatePart::Segments,
        });
        PathPattern::Template { parts, decoded: self.flag() }
    }

    fn cidr(&mut self) -> Cidr {
        let addr = if self.tag(1) == 0 {
            IpAddr::V4(Ipv4Addr::from(self.array::<4>()))
        } else {
            IpAddr::V6(Ipv6Addr::from(self.array::<16>()))
        };
        let width = if addr.is_ipv4() { 32 } else { 128 };
        let len = self.tag(width);
        Cidr::from_parts(addr, len)
    }
}

/// What `compile` guarantees and evaluation relies on, checked of decoded bytes.
fn check(e: &Engine) -> Read<()> {
    let headers = e.header_names.len();
    let ok = |c: bool| if c { Ok(()) } else { Err(CORRUPT) };
    ok(e.loose_headers.len() == headers)?;
    ok(e.override_headers.iter().all(|&i| i < headers))?;
    // Each method pattern owns one bit, and a rule's mask names only those.
    let mut method_bits = 0u64;
    for &(packed, bit) in e.methods.exact.iter() {
        let bytes = packed.to_le_bytes();
        let len = usize::from(bytes[15]);
        ok(pack_method(bytes.get(..len).ok_or(CORRUPT)?) == Some(packed))?;
        ok(bit.count_ones() == 1 && method_bits & bit == 0)?;
        method_bits |= bit;
    }
    for &(_, bit) in e.methods.other.iter() {
        ok(bit.count_ones() == 1 && method_bits & bit == 0)?;
        method_bits |= bit;
    }
    // A rewrite never lengthens the path (the buffer it is rewritten in is the path's).
    ok(e.aliases.iter().all(|(from, to)| !from.is_empty() && to.len() <= from.len()))?;
    for policy in e.policies() {
        ok(policy.index < e.names.len())?;
        for rule in policy.rules.iter() {
            for constraint in rule.from.iter().chain(rule.to.iter()).flatten().chain(rule.when.iter()) {
                match &constraint.matcher {
                    Matcher::Header(index, _) => ok(*index < headers)?,
                    Matcher::Method(mask) => ok(mask & !method_bits == 0)?,
                    _ => {}
                }
            }
        }
        if let Some(index) = &policy.rule_index {
            let rules = policy.rules.len();
            let maps = [&index.principal, &index.namespace, &index.path_exact];
            for map in maps
                .into_iter()
                .chain(index.path_prefix.iter().map(|(_, m)| m))
                .chain(index.header.iter().map(|(_, m)| m))
            {
                // Sorted by value for the binary search; each value's rules ascending.
                ok(map.0.windows(2).all(|w| w[0].0 < w[1].0))?;
                for (_, list) in map.0.iter() {
                    ascending(list, rules)?;
                }
            }
            for (len, map) in index.path_prefix.iter() {
                ok(map.0.iter().all(|(key, _)| key.len() == *len))?;
            }
            ok(index.header.iter().all(|(h, _)| *h < headers))?;
            ascending(&index.scan, rules)?;
        }
    }
    Ok(())
}

fn ascending(list: &[u32], below: usize) -> Read<()> {
    let sorted = list.windows(2).all(|w| w[0] < w[1]);
    let in_range = list.last().is_none_or(|&last| (last as usize) < below);
    if sorted && in_range {
        Ok(())
    } else {
        Err(CORRUPT)
    }
}

/// The string value of the top-level member `compiled` of a JSON object, skipping the others
/// unread. Strings are taken raw: base64 needs no escapes.
fn compiled_member(json: &[u8]) -> Read<Option<&[u8]>> {
    const NOT_AN_OBJECT: &str = "the plugin configuration is not a JSON object";
    let mut s = Scanner { rest: json };
    s.expect(b'{').map_err(|_| NOT_AN_OBJECT)?;
    let mut found = None;
    if s.peek() == Some(b'}') {
        s.rest = &s.rest[1..];
    } else {
        loop {
            let key = s.string()?;
            s.expect(b':')?;
            if key == MEMBER.as_bytes() {
                if found.is_some() {
                    return Err("the plugin configuration has `compiled` twice");
                }
                found = Some(s.string()?);
            } else {
                s.skip_value()?;
            }
            match s.next()? {
                b',' => continue,
                b'}' => break,
                _ => return Err(NOT_AN_OBJECT),
            }
        }
    }
    if s.peek().is_some() {
        return Err(NOT_AN_OBJECT);
    }
    Ok(found)
}

struct Scanner<'a> {
    rest: &'a [u8],
}

impl<'a> Scanner<'a> {
    const SYNTAX: &'static str = "the plugin configuration is not valid JSON";

    /// The next byte that is not whitespace, not consumed.
    fn peek(&mut self) -> Option<u8> {
        while let Some((&b, rest)) = self.rest.split_first() {
            if !matches!(b, b' ' | b'\t' | b'\n' | b'\r') {
                return Some(b);
            }
            self.rest = rest;
        }
        None
    }

    fn next(&mut self) -> Read<u8> {
        let b = self.peek().ok_or(Self::SYNTAX)?;
        self.rest = &self.rest[1..];
        Ok(b)
    }

    fn expect(&mut self, want: u8) -> Read<()> {
        if self.next()? == want {
            Ok(())
        } else {
            Err(Self::SYNTAX)
        }
    }

    /// A string's raw contents, escapes left as written.
    fn string(&mut self) -> Read<&'a [u8]> {
        self.expect(b'"')?;
        let mut i = 0;
        while let Some(&b) = self.rest.get(i) {
            match b {
                b'"' => {
                    let s = &self.rest[..i];
                    self.rest = &self.rest[i + 1..];
                    return Ok(s);
                }
                b'\\' => i += 2,
                _ => i += 1,
            }
        }
        Err(Self::SYNTAX)
    }

    fn skip_value(&mut self) -> Read<()> {
        let mut depth = 0usize;
        loop {
            match self.peek().ok_or(Self::SYNTAX)? {
                b'"' => {
                    self.string()?;
                }
                b'{' | b'[' => {
                    depth += 1;
                    self.rest = &self.rest[1..];
                    continue;
                }
                b'}' | b']' => {
                    depth = depth.checked_sub(1).ok_or(Self::SYNTAX)?;
                    self.rest = &self.rest[1..];
                }
                b',' | b':' if depth > 0 => {
                    self.rest = &self.rest[1..];
                    continue;
                }
                _ => {
                    // A number, true, false or null.
                    let end = self.rest.iter().position(|b| b",:]} \t\n\r".contains(b)).unwrap_or(self.rest.len());
                    if end == 0 {
                        return Err(Self::SYNTAX);
                    }
                    self.rest = &self.rest[end..];
                }
            }
            if depth == 0 {
                return Ok(());
            }
        }
    }
}

const BASE64: &[u8; 64] = b"ABCDEFGHIJKLMNOPQRSTUVWXYZabcdefghijklmnopqrstuvwxyz0123456789+/";

/// Standard base64 with padding.
pub fn base64_encode(bytes: &[u8]) -> String {
    let mut out = String::with_capacity(bytes.len().div_ceil(3) * 4);
    for chunk in bytes.chunks(3) {
        let b = [chunk[0], chunk.get(1).copied().unwrap_or(0), chunk.get(2).copied().unwrap_or(0)];
        let n = u32::from(b[0]) << 16 | u32::from(b[1]) << 8 | u32::from(b[2]);
        for i in 0..4 {
            if i <= chunk.len() {
                out.push(char::from(BASE64[(n >> (18 - 6 * i) & 63) as usize]));
            } else {
                out.push('=');
            }
        }
    }
    out
}

/// Standard base64 with padding, strictly: `None` for anything else.
pub fn base64_decode(text: &[u8]) -> Option<Vec<u8>> {
    if !text.len().is_multiple_of(4) {
        return None;
    }
    let sextet = |c: u8| match c {
        b'A'..=b'Z' => Some(c - b'A'),
        b'a'..=b'z' => Some(c - b'a' + 26),
        b'0'..=b'9' => Some(c - b'0' + 52),
        b'+' => Some(62),
        b'/' => Some(63),
        _ => None,
    };
    let mut out = Vec::with_capacity(text.len() / 4 * 3);
    let quads = text.len() / 4;
    for (q, quad) in text.chunks(4).enumerate() {
        let pad = if q + 1 == quads { quad.iter().rev().take_while(|&&c| c == b'=').count() } else { 0 };
        if pad > 2 {
            return None;
        }
        let mut n = 0u32;
        for &c in &quad[..4 - pad] {
            n = n << 6 | u32::from(sextet(c)?);
        }
        n <<= 6 * pad as u32;
        let bytes = [(n >> 16) as u8, (n >> 8) as u8, n as u8];
        out.extend_from_slice(&bytes[..3 - pad]);
    }
    Some(out)
}

#[cfg(test)]
#[allow(clippy::unwrap_used, clippy::expect_used, clippy::panic)]
mod tests {
    use super::*;

    /// Every matcher kind, an index (8 rules), aliases, dry-run, per-port mTLS, a digest.
    const CONFIG: &str = r#"{
      "trustDomain": "cluster.local", "trustDomainAliases": ["old.local"], "peerTrustDomains": "MESH",
      "configDigest": "1a2b", "observe": "ROUTES", "overrideHeaderNames": "UNDERSCORE_AS_DASH",
      "peerAuthentication": {"mtls": {"mode": "STRICT"}, "portLevelMtls": {"8080": {"mode": "PERMISSIVE"}}},
      "policies": [
        {"name": "deny-some", "namespace": "xnat", "spec": {"action": "DENY", "rules": [
          {"from": [{"source": {"ipBlocks": ["10.0.0.0/8", "fd00::/8"], "notRemoteIpBlocks": ["192.168.1.1"]}}],
           "to": [{"operation": {"hosts": ["Evil.example"], "notPorts": ["8443"], "methods": ["DELETE", "PRO*"]}}],
           "when": [{"key": "destination.ip", "values": ["127.0.0.1"]}, {"key": "connection.sni", "values": ["*.x"]},
                    {"key": "request.headers[x-team]", "notValues": ["a*"]}]}]}},
        {"name": "dry", "namespace": "xnat", "dryRun": true, "spec": {"action": "DENY", "rules": [
          {"to": [{"operation": {"paths": ["/data/projects/{*}/files/{**}"]}}]}]}},
        {"name": "audit", "namespace": "xnat", "spec": {"action": "AUDIT", "rules": [
          {"from": [{"source": {"namespaces": ["reporting"]}}]}]}},
        {"name": "many", "namespace": "xnat", "spec": {"rules": [
          {"from": [{"source": {"principals": ["cluster.local/ns/a/sa/a"]}}]},
          {"from": [{"source": {"principals": ["*/sa/b"]}}]},
          {"from": [{"source": {"namespaces": ["team-*"]}}]},
          {"from": [{"source": {"serviceAccounts": ["team/bot"]}}]},
          {"to": [{"operation": {"paths": ["/data/p1", "/xapi/*"], "methods": ["GET"]}}]},
          {"to": [{"operation": {"paths": ["*/files"]}}]},
          {"when": [{"key": "request.headers[x-team]", "values": ["b"]}]},
          {"when": [{"key": "source.principal", "values": ["*"]}, {"key": "source.namespace", "notValues": ["x"]}]}
        ]}}
      ]}"#;

    fn engine() -> Engine {
        crate::from_json(CONFIG.as_bytes()).unwrap()
    }

    #[test]
    fn the_bytes_hold_the_engine_they_were_written_from() {
        let engine = engine();
        assert!(engine.allow[0].rule_index.is_some(), "the config should build a rule index");
        let decoded = decode(&encode(&engine)).unwrap();
        assert_eq!(format!("{decoded:?}"), format!("{engine:?}"));
        assert_eq!(engine.needs, engine.implied_needs(), "compile and the model agree on the facts read");
    }

    #[test]
    fn the_layout_is_pinned_to_its_format_number() {
        // Changing the model or how it is written changes these bytes: bump FORMAT, so that a
        // module refuses bytes written for another, then update the checksum here.
        let bytes = encode(&engine());
        let sum = u64::from_le_bytes(bytes[bytes.len() - 8..].try_into().unwrap());
        assert_eq!((FORMAT, sum), (1, 5_848_813_414_518_005_509), "{} bytes", bytes.len());
    }

    #[test]
    fn truncated_or_altered_bytes_are_refused() {
        let bytes = encode(&engine());
        for n in 0..bytes.len() {
            assert!(decode(&bytes[..n]).is_err(), "{n} of {} bytes read", bytes.len());
        }
        for i in 0..bytes.len() {
            let mut altered = bytes.clone();
            altered[i] ^= 0x10;
            let err = decode(&altered).expect_err("an altered byte was read");
            assert_eq!(err.path, MEMBER);
        }
    }

    #[test]
    fn another_format_is_refused_saying_what_to_do() {
        let mut bytes = encode(&engine());
        bytes[3] = FORMAT + 1;
        assert!(decode(&bytes).unwrap_err().message.contains("newer filter module"));
        bytes[3] = FORMAT - 1;
        assert!(decode(&bytes).unwrap_err().message.contains("render the configuration again"));
    }

    /// Bytes with a valid checksum that a compile could not have written.
    fn resealed(engine: &Engine) -> Result<Engine, ConfigError> {
        decode(&encode(engine))
    }

    #[test]
    fn a_model_no_compile_builds_is_refused() {
        let mut e = engine();
        e.override_headers = vec![e.header_names.len()].into();
        assert!(resealed(&e).is_err(), "override header out of range");

        let mut e = engine();
        e.aliases = vec![(b"/a".as_slice().into(), b"/longer".as_slice().into())].into();
        assert!(resealed(&e).is_err(), "an alias that lengthens the path");

        let mut e = engine();
        e.deny[0].rules[0].to[0] = vec![Constraint { negate: false, matcher: Matcher::Method(1 << 40) }].into();
        assert!(resealed(&e).is_err(), "a method bit no pattern owns");

        let mut e = engine();
        e.deny[0].rules[0].when = vec![Constraint { negate: false, matcher: Matcher::Header(99, Box::new([])) }].into();
        assert!(resealed(&e).is_err(), "a header index out of range");

        let mut e = engine();
        let index = e.allow[0].rule_index.as_mut().unwrap();
        index.scan = vec![3, 2].into();
        assert!(resealed(&e).is_err(), "rules out of order");
        let mut e = engine();
        e.allow[0].rule_index.as_mut().unwrap().scan = vec![99].into();
        assert!(resealed(&e).is_err(), "a rule that does not exist");

        let mut e = engine();
        e.allow[0].index = 99;
        assert!(resealed(&e).is_err(), "a policy without a name");
    }

    #[test]
    fn bytes_cannot_leave_a_rule_unread() {
        let mut e = engine();
        e.needs = Needs::default();
        let decoded = resealed(&e).unwrap();
        assert_eq!(decoded.needs, engine().needs);
    }

    #[test]
    fn base64_round_trips_and_refuses_what_is_not_base64() {
        for n in 0..10 {
            let bytes: Vec<u8> = (0..n).map(|i| (i * 37 + 250) as u8).collect();
            let text = base64_encode(&bytes);
            assert_eq!(base64_decode(text.as_bytes()), Some(bytes), "{text}");
        }
        assert_eq!(base64_encode(b"xnat"), "eG5hdA==");
        for bad in ["eG5hdA=", "eG5h dA==", "eG5hdA=a", "e===", "eG5hdA==eG5h", "eG5h\u{e9}A=="] {
            assert_eq!(base64_decode(bad.as_bytes()), None, "{bad}");
        }
    }

    #[test]
    fn the_member_is_found_among_members_of_any_shape() {
        let doc = r#" { "policies": [{"name": "a\"}", "spec": {"rules": [{}, []]}}], "n": -1.5e3,
            "t": true, "z": null, "compiled" : "QUJD", "after": {"compiled": "nested"} } "#;
        assert_eq!(compiled_member(doc.as_bytes()), Ok(Some(&b"QUJD"[..])));
        assert_eq!(compiled_member(br#"{"policies": []}"#), Ok(None));
        assert_eq!(compiled_member(b"{}"), Ok(None));
        for bad in [&br#"{"compiled": "A", "compiled": "B"}"#[..], b"[]", b"{", br#"{"a": }"#, br#"{"a": 1} x"#, b""] {
            assert!(compiled_member(bad).is_err(), "{}", String::from_utf8_lossy(bad));
        }
    }

    #[test]
    fn a_plugin_configuration_without_the_member_holds_no_engine() {
        assert!(from_plugin_config(CONFIG.as_bytes()).unwrap().is_none());
        let with = format!(r#"{{"compiled": "{}", "policies": []}}"#, encode_base64(&engine()));
        let decoded = from_plugin_config(with.as_bytes()).unwrap().unwrap();
        assert_eq!(format!("{decoded:?}"), format!("{:?}", engine()));
        assert_eq!(from_plugin_config(br#"{"compiled": "!!!!"}"#).unwrap_err().path, MEMBER);
        let source = format!(r#"{}, "compiled": "QUJD"}}"#, CONFIG.trim_end().trim_end_matches('}'));
        assert!(crate::from_json(source.as_bytes()).is_ok(), "the source reader skips the member");
    }
}

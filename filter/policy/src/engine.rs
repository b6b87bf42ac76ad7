//! The compiled policy and its evaluation. Everything here runs per request: no allocation,
//! no host calls, no fallible step (compile has validated everything).

use std::net::IpAddr;

use crate::config::{MethodOverride, MtlsMode, PathNormalization};
use crate::index::RuleIndex;
use crate::normalize::{apply_aliases, is_normal, tomcat_path, Alias, PathRefusal, MAX_PATH};
use crate::pattern::{Cidr, PathPattern, Pattern};
use crate::spiffe::SpiffeId;

/// What the request looks like, as read from the host by the glue. Only the facts listed in
/// [`Policy::needs`] have to be filled in; the others may stay at their defaults.
#[derive(Debug, Clone, Copy, Default)]
pub struct Request<'a> {
    pub method: &'a [u8],
    /// `:path` as received; the query and fragment are ignored, as Envoy's `url_path` does.
    pub path: &'a [u8],
    /// `:authority`.
    pub host: Option<&'a [u8]>,
    /// The local port the connection arrived on.
    pub port: Option<u16>,
    /// The connection's peer: `None` for plaintext, `Some(uri_san)` for mutual TLS (the URI
    /// SAN of the client certificate, empty if it had none). Never taken from a header.
    pub peer: Option<&'a [u8]>,
    pub source_ip: Option<IpAddr>,
    /// The client address as the proxy trusts it; equal to `source_ip` in a sidecar that trusts
    /// no `X-Forwarded-For` hop.
    pub remote_ip: Option<IpAddr>,
    pub destination_ip: Option<IpAddr>,
    pub sni: Option<&'a [u8]>,
    /// Values of the headers named by [`Policy::header_names`], in that order: every value of
    /// a header that appears more than once, none for an absent header.
    pub headers: &'a [HeaderValues<'a>],
}

/// All values of one request header, in order; empty when the header is absent.
pub type HeaderValues<'a> = &'a [&'a [u8]];

/// The request facts a compiled policy reads. The glue asks the host only for these.
#[derive(Debug, Clone, Copy, Default, PartialEq, Eq)]
pub struct Needs {
    pub method: bool,
    pub path: bool,
    /// `:path` for its query only (a tunnelled `method` parameter), not matched as a path.
    pub query: bool,
    pub host: bool,
    /// The local port (`destination.port`), for a rule.
    pub port: bool,
    /// The local port, to find the mTLS mode of a plaintext request (ports differ in mode).
    pub port_for_plaintext: bool,
    /// Whether the connection is mutual TLS (`connection.mtls`).
    pub peer: bool,
    /// The peer's URI SAN (`connection.uri_san_peer_certificate`).
    pub identity: bool,
    pub source_ip: bool,
    pub remote_ip: bool,
    pub destination_ip: bool,
    pub sni: bool,
}

/// The outcome for one request, with enough detail to explain it.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct Decision {
    pub verdict: Verdict,
    /// A dry-run policy would have denied this request.
    pub dry_run_denied: bool,
    /// An AUDIT policy matched (Envoy's RBAC `LOG` action).
    pub audited: bool,
}

#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Verdict {
    /// No enforced ALLOW policy exists and no DENY policy matched.
    AllowedNoAllowPolicy,
    /// An ALLOW policy matched; indices into the configuration's `policies` and its `rules`.
    AllowedBy {
        policy: usize,
        rule: usize,
    },
    /// Plaintext on a port whose effective PeerAuthentication mode is STRICT.
    DeniedMtlsRequired {
        port: Option<u16>,
    },
    DeniedBy {
        policy: usize,
        rule: usize,
    },
    /// ALLOW policies exist and none matched.
    DeniedNoAllowMatch,
    /// The path is one Tomcat would refuse or could read another way (see `normalize`).
    DeniedUnsafePath {
        reason: PathRefusal,
    },
    /// The request tunnels a method (override header, `method` query parameter) that is not
    /// allowed, or tunnels one at all under `methodOverride: REFUSE`.
    DeniedMethodOverride,
}

impl Decision {
    fn only(verdict: Verdict) -> Decision {
        Decision { verdict, dry_run_denied: false, audited: false }
    }
}

impl Verdict {
    pub fn is_allowed(self) -> bool {
        matches!(self, Verdict::AllowedNoAllowPolicy | Verdict::AllowedBy { .. })
    }
}

/// A policy's name and namespace, for reports.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct PolicyName {
    pub name: String,
    pub namespace: String,
}

/// The compiled configuration. Build it with [`crate::compile`]; share it read-only.
#[derive(Debug, Clone)]
pub struct Policy {
    pub(crate) mtls: MtlsTable,
    pub(crate) deny: Box<[CompiledPolicy]>,
    pub(crate) allow: Box<[CompiledPolicy]>,
    pub(crate) audit: Box<[CompiledPolicy]>,
    pub(crate) dry_run_deny: Box<[CompiledPolicy]>,
    pub(crate) dry_run_allow: Box<[CompiledPolicy]>,
    pub(crate) names: Box<[PolicyName]>,
    /// Distinct method patterns; bit `i` of a request's method set is pattern `i`.
    pub(crate) methods: MethodTable,
    pub(crate) header_names: Box<[Box<str>]>,
    pub(crate) needs: Needs,
    pub(crate) path_mode: PathNormalization,
    /// Prefix rewrites (from, to), applied after normalisation.
    pub(crate) aliases: Box<[Alias]>,
    pub(crate) method_override: MethodOverride,
    /// Indices into `header_names` of the method-override headers.
    pub(crate) override_headers: Box<[usize]>,
}

/// The method patterns of a policy. Exact methods (nearly all of them) are packed into one
/// integer each, so a request's method is tested with one compare per pattern, not a
/// byte-slice comparison.
#[derive(Debug, Clone, Default)]
pub(crate) struct MethodTable {
    /// (packed method, its bit)
    exact: Box<[(u128, u64)]>,
    /// Prefix, suffix and wildcard patterns, and exact methods too long to pack.
    other: Box<[(Pattern, u64)]>,
}

impl MethodTable {
    /// Pattern `i` sets bit `i`.
    pub(crate) fn new(patterns: &[Pattern]) -> MethodTable {
        let (mut exact, mut other) = (Vec::new(), Vec::new());
        for (i, pattern) in patterns.iter().enumerate() {
            let packed = if let Pattern::Exact(m) = pattern { pack_method(m) } else { None };
            match packed {
                Some(packed) => exact.push((packed, 1 << i)),
                None => other.push((pattern.clone(), 1 << i)),
            }
        }
        MethodTable { exact: exact.into(), other: other.into() }
    }

    /// The set of patterns `method` matches.
    #[inline]
    fn bits(&self, method: &[u8]) -> u64 {
        let mut bits = 0;
        if let Some(packed) = pack_method(method) {
            for (m, bit) in self.exact.iter() {
                if *m == packed {
                    bits |= bit;
                }
            }
        }
        for (pattern, bit) in self.other.iter() {
            if pattern.matches(Some(method)) {
                bits |= bit;
            }
        }
        bits
    }
}

/// Up to 15 bytes and the length in one integer; `None` for longer methods.
#[inline]
fn pack_method(method: &[u8]) -> Option<u128> {
    let mut bytes = [0u8; 16];
    bytes.get_mut(..method.len())?.copy_from_slice(method);
    bytes[15] = u8::try_from(method.len()).ok().filter(|&n| n < 16)?;
    Some(u128::from_le_bytes(bytes))
}

/// The effective PeerAuthentication mode per port.
#[derive(Debug, Clone, PartialEq, Eq)]
pub(crate) struct MtlsTable {
    pub(crate) default: MtlsMode,
    pub(crate) ports: Box<[(u16, MtlsMode)]>,
}

impl MtlsTable {
    pub(crate) fn mode_for(&self, port: Option<u16>) -> MtlsMode {
        // With the port unknown the top-level mode applies: a STRICT mesh stays strict.
        port.and_then(|p| self.ports.iter().find(|(q, _)| *q == p).map(|(_, m)| *m)).unwrap_or(self.default)
    }
}

#[derive(Debug, Clone)]
pub(crate) struct CompiledPolicy {
    pub(crate) index: usize,
    pub(crate) rules: Box<[CompiledRule]>,
    /// For policies with many rules: which rules can match a request at all.
    pub(crate) rule_index: Option<RuleIndex>,
}

/// Istio rule semantics: every non-empty `from` list, `to` list and the `when` list must match;
/// within `from` and `to` any one element suffices.
#[derive(Debug, Clone)]
pub(crate) struct CompiledRule {
    pub(crate) from: Box<[Conjunction]>,
    pub(crate) to: Box<[Conjunction]>,
    pub(crate) when: Conjunction,
}

pub(crate) type Conjunction = Box<[Constraint]>;

#[derive(Debug, Clone)]
pub(crate) struct Constraint {
    pub(crate) negate: bool,
    pub(crate) test: Test,
}

#[derive(Debug, Clone)]
pub(crate) enum Test {
    /// Patterns over the whole peer URI (`spiffe://` included).
    Principal(Box<[Pattern]>),
    Namespace(Box<[Pattern]>),
    ServiceAccount(Box<[ServiceAccount]>),
    TrustDomain(Box<[Pattern]>),
    SourceIp(Box<[Cidr]>),
    RemoteIp(Box<[Cidr]>),
    DestinationIp(Box<[Cidr]>),
    /// Lower-cased patterns, compared ignoring ASCII case.
    Host(Box<[Pattern]>),
    Port(Box<[u16]>),
    /// A mask over [`Policy::methods`].
    Method(u64),
    Path(Box<[PathPattern]>),
    Header(usize, Box<[Pattern]>),
    Sni(Box<[Pattern]>),
}

/// A service account, exact: (namespace, name).
pub(crate) type ServiceAccount = (Box<[u8]>, Box<[u8]>);

/// Three-valued match: `Unknown` when a peer presented an identity that is not a well-formed
/// SPIFFE id, so its namespace or service account cannot be read. Each policy action resolves
/// it towards the safe side (see [`Policy::evaluate`]).
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
enum Tri {
    False,
    True,
    Unknown,
}

impl Tri {
    fn from_bool(b: bool) -> Tri {
        if b {
            Tri::True
        } else {
            Tri::False
        }
    }
    fn negate(self) -> Tri {
        match self {
            Tri::False => Tri::True,
            Tri::True => Tri::False,
            Tri::Unknown => Tri::Unknown,
        }
    }
}

fn all(items: impl Iterator<Item = Tri>) -> Tri {
    let mut result = Tri::True;
    for t in items {
        match t {
            Tri::False => return Tri::False,
            Tri::Unknown => result = Tri::Unknown,
            Tri::True => {}
        }
    }
    result
}

fn any(items: impl Iterator<Item = Tri>) -> Tri {
    let mut result = Tri::False;
    for t in items {
        match t {
            Tri::True => return Tri::True,
            Tri::Unknown => result = Tri::Unknown,
            Tri::False => {}
        }
    }
    result
}

/// Per-request facts derived once before matching.
struct Facts<'a> {
    req: &'a Request<'a>,
    path: &'a [u8],
    host: Option<&'a [u8]>,
    method_bits: u64,
    spiffe: Option<SpiffeId<'a>>,
}

impl Policy {
    /// Istio's decision order:
    /// 1. PeerAuthentication: plaintext on a STRICT port is refused before any policy.
    /// 2. "If there are any DENY policies that match the request, deny the request."
    /// 3. "If there are no ALLOW policies for the workload, allow the request."
    /// 4. "If any of the ALLOW policies match the request, allow the request."
    /// 5. "Deny the request."
    ///
    /// AUDIT policies and dry-run policies are evaluated for reporting and never change the
    /// verdict. An identity that cannot be parsed counts as a match for DENY and AUDIT rules
    /// and as no match for ALLOW rules.
    pub fn evaluate(&self, req: &Request<'_>) -> Decision {
        if req.peer.is_none() && self.mtls.mode_for(req.port) == MtlsMode::Strict {
            return Decision::only(Verdict::DeniedMtlsRequired { port: req.port });
        }
        if !self.needs.path {
            // The query, if an override check wants it, is looked for only then.
            return self.decide(req, req.path, req.path);
        }
        let (path, query) = match query_start(req.path) {
            Some(end) => (&req.path[..end], &req.path[end..]),
            None => (req.path, &[][..]),
        };
        if self.path_mode == PathNormalization::Tomcat && !is_normal(path, &self.aliases) {
            return self.evaluate_tomcat_path(req, query);
        }
        self.decide(req, path, query)
    }

    /// Matches against the path Tomcat will route (see `normalize`), in a buffer on the stack.
    #[inline(never)]
    fn evaluate_tomcat_path(&self, req: &Request<'_>, query: &[u8]) -> Decision {
        let mut buf = [0u8; MAX_PATH];
        match tomcat_path(req.path, &mut buf) {
            Ok(len) => {
                let len = apply_aliases(&mut buf, len, &self.aliases);
                self.decide(req, &buf[..len], query)
            }
            Err(reason) => Decision::only(Verdict::DeniedUnsafePath { reason }),
        }
    }

    /// The decision for the request line's method and, unless overrides are ignored, for every
    /// method the request tunnels: all of them must be allowed.
    /// `query` holds the query if there is one: from it, the first `?` starts the query unless
    /// a `#` comes first.
    fn decide(&self, req: &Request<'_>, path: &[u8], query: &[u8]) -> Decision {
        let decision = self.decide_for(req, req.method, path);
        if self.method_override == MethodOverride::Ignore || !self.needs.method || !decision.verdict.is_allowed() {
            return decision;
        }
        let mut denied = false;
        self.for_each_override(req, query, |method| {
            if denied {
                return;
            }
            // Frameworks upper-case a tunnelled method; longer values are no method anyway.
            let mut upper = [0u8; 16];
            let method = if method.len() > upper.len() {
                method
            } else {
                let upper = &mut upper[..method.len()];
                upper.copy_from_slice(method);
                upper.make_ascii_uppercase();
                &*upper
            };
            denied = self.method_override == MethodOverride::Refuse
                || method != req.method && !self.decide_for(req, method, path).verdict.is_allowed();
        });
        if denied {
            return Decision::only(Verdict::DeniedMethodOverride);
        }
        decision
    }

    /// Calls `f` with each tunnelled method: override headers, then `method`/`_method` query
    /// parameters (percent-encoded values are judged as sent, which can only fail to match).
    fn for_each_override(&self, req: &Request<'_>, query: &[u8], mut f: impl FnMut(&[u8])) {
        for &i in self.override_headers.iter() {
            for v in req.headers.get(i).copied().unwrap_or_default() {
                f(v);
            }
        }
        let Some(start) = query_start(query) else { return };
        let Some(query) = query[start..].strip_prefix(b"?") else { return };
        let query = &query[..query.iter().position(|&b| b == b'#').unwrap_or(query.len())];
        for param in query.split(|&b| b == b'&' || b == b';') {
            let (name, value) = match param.iter().position(|&b| b == b'=') {
                Some(e) => (&param[..e], &param[e + 1..]),
                None => continue,
            };
            if name.eq_ignore_ascii_case(b"method") || name.eq_ignore_ascii_case(b"_method") {
                f(value);
            }
        }
    }

    fn decide_for(&self, req: &Request<'_>, method: &[u8], path: &[u8]) -> Decision {
        let facts = self.facts(req, method, path);
        let verdict = if let Some((policy, rule)) = first_match(&self.deny, &facts, true) {
            Verdict::DeniedBy { policy, rule }
        } else if self.allow.is_empty() {
            Verdict::AllowedNoAllowPolicy
        } else if let Some((policy, rule)) = first_match(&self.allow, &facts, false) {
            Verdict::AllowedBy { policy, rule }
        } else {
            Verdict::DeniedNoAllowMatch
        };
        // Istio runs dry-run policies as Envoy RBAC shadow rules, one shadow engine per action.
        let dry_run_denied = first_match(&self.dry_run_deny, &facts, true).is_some()
            || (!self.dry_run_allow.is_empty() && first_match(&self.dry_run_allow, &facts, false).is_none());
        let audited = first_match(&self.audit, &facts, true).is_some();
        Decision { verdict, dry_run_denied, audited }
    }

    /// Derives only what the policy's tests read.
    fn facts<'a>(&'a self, req: &'a Request<'a>, method: &[u8], path: &'a [u8]) -> Facts<'a> {
        let method_bits = if self.needs.method { self.methods.bits(method) } else { 0 };
        let spiffe = if self.needs.identity { req.peer.and_then(SpiffeId::parse) } else { None };
        // `Host: xnat.example.org.` names the same host as without the dot.
        let host = if self.needs.host { req.host.map(strip_trailing_dot) } else { None };
        Facts { req, path, host, method_bits, spiffe }
    }

    /// The request facts this policy reads; the glue should fetch only these.
    pub fn needs(&self) -> Needs {
        self.needs
    }

    /// Lower-case names of the request headers the policy reads, in the order
    /// [`Request::headers`] must follow.
    pub fn header_names(&self) -> &[Box<str>] {
        &self.header_names
    }

    /// Name and namespace of `policies[index]` in the configuration.
    pub fn policy_name(&self, index: usize) -> Option<&PolicyName> {
        self.names.get(index)
    }

    /// The effective PeerAuthentication mode for a port (UNSET resolved).
    pub fn mtls_mode(&self, port: Option<u16>) -> MtlsMode {
        self.mtls.mode_for(port)
    }

    /// How many policies of each kind were compiled: (deny, allow, audit, dry-run).
    pub fn counts(&self) -> (usize, usize, usize, usize) {
        (self.deny.len(), self.allow.len(), self.audit.len(), self.dry_run_deny.len() + self.dry_run_allow.len())
    }
}

/// The first (policy, rule) that matches. `unknown_matches` resolves `Tri::Unknown`.
/// Most policy sets are empty (no dry-run, no AUDIT): those cost no call.
#[inline]
fn first_match(policies: &[CompiledPolicy], facts: &Facts<'_>, unknown_matches: bool) -> Option<(usize, usize)> {
    if policies.is_empty() {
        return None;
    }
    first_match_in(policies, facts, unknown_matches)
}

#[inline(never)]
fn first_match_in(policies: &[CompiledPolicy], facts: &Facts<'_>, unknown_matches: bool) -> Option<(usize, usize)> {
    let matches = |rule: &CompiledRule| match rule_matches(rule, facts) {
        Tri::True => true,
        Tri::Unknown => unknown_matches,
        Tri::False => false,
    };
    for policy in policies {
        if let Some(index) = &policy.rule_index {
            let namespace = facts.spiffe.as_ref().map(|id| id.namespace);
            match index.first(facts.req.peer, namespace, facts.path, facts.req.headers, |r| matches(&policy.rules[r])) {
                Ok(Some(r)) => return Some((policy.index, r)),
                Ok(None) => continue,
                Err(()) => {} // too many candidate lists: scan
            }
        }
        for (r, rule) in policy.rules.iter().enumerate() {
            match rule_matches(rule, facts) {
                Tri::True => return Some((policy.index, r)),
                Tri::Unknown if unknown_matches => return Some((policy.index, r)),
                _ => {}
            }
        }
    }
    None
}

fn rule_matches(rule: &CompiledRule, facts: &Facts<'_>) -> Tri {
    let from = if rule.from.is_empty() { Tri::True } else { any(rule.from.iter().map(|c| conjunction(c, facts))) };
    if from == Tri::False {
        return Tri::False;
    }
    let to = if rule.to.is_empty() { Tri::True } else { any(rule.to.iter().map(|c| conjunction(c, facts))) };
    if to == Tri::False {
        return Tri::False;
    }
    all([from, to, conjunction(&rule.when, facts)].into_iter())
}

fn conjunction(constraints: &[Constraint], facts: &Facts<'_>) -> Tri {
    all(constraints.iter().map(|c| {
        let t = test(&c.test, facts);
        if c.negate {
            t.negate()
        } else {
            t
        }
    }))
}

fn test(test: &Test, facts: &Facts<'_>) -> Tri {
    let req = facts.req;
    match test {
        Test::Principal(patterns) => Tri::from_bool(patterns.iter().any(|p| p.matches(req.peer))),
        Test::Namespace(patterns) => identity_part(facts, |id| patterns.iter().any(|p| p.matches(Some(id.namespace)))),
        Test::ServiceAccount(accounts) => identity_part(facts, |id| {
            accounts.iter().any(|(ns, sa)| id.namespace == &ns[..] && id.service_account == &sa[..])
        }),
        Test::TrustDomain(patterns) => {
            identity_part(facts, |id| patterns.iter().any(|p| p.matches(Some(id.trust_domain))))
        }
        Test::SourceIp(blocks) => ip_in(req.source_ip, blocks),
        Test::RemoteIp(blocks) => ip_in(req.remote_ip, blocks),
        Test::DestinationIp(blocks) => ip_in(req.destination_ip, blocks),
        Test::Host(patterns) => Tri::from_bool(patterns.iter().any(|p| p.matches_ignore_case(facts.host))),
        Test::Port(ports) => Tri::from_bool(req.port.is_some_and(|p| ports.contains(&p))),
        Test::Method(mask) => Tri::from_bool(facts.method_bits & mask != 0),
        Test::Path(patterns) => Tri::from_bool(patterns.iter().any(|p| p.matches(facts.path))),
        // Each value on its own, as Envoy's RBAC matches a repeated header since
        // CVE-2026-26308 (a joined "user,admin" hid "admin" from an exact DENY rule).
        Test::Header(index, patterns) => {
            let values = req.headers.get(*index).copied().unwrap_or_default();
            Tri::from_bool(values.iter().any(|v| patterns.iter().any(|p| p.matches(Some(v)))))
        }
        Test::Sni(patterns) => Tri::from_bool(patterns.iter().any(|p| p.matches(req.sni))),
    }
}

/// Where the query or fragment of a `:path` starts (its first `?` or `#`). Paths are scanned
/// eight bytes at a time: this runs on every request of a policy that reads paths.
fn query_start(path: &[u8]) -> Option<usize> {
    const ONES: u64 = u64::from_le_bytes([1; 8]);
    const HIGHS: u64 = u64::from_le_bytes([0x80; 8]);
    // Non-zero iff some byte of `word` is zero (the classic SWAR test; exact for "any").
    let has_zero_byte = |word: u64| word.wrapping_sub(ONES) & !word & HIGHS;
    let mut words = path.chunks_exact(8);
    let mut offset = 0;
    for chunk in &mut words {
        let mut word = [0u8; 8];
        word.copy_from_slice(chunk);
        let word = u64::from_le_bytes(word);
        if has_zero_byte(word ^ (ONES * u64::from(b'?'))) | has_zero_byte(word ^ (ONES * u64::from(b'#'))) != 0 {
            break;
        }
        offset += 8;
    }
    path[offset..].iter().position(|&b| b == b'?' || b == b'#').map(|i| offset + i)
}

/// Plaintext peers have no identity (no match); an unparseable identity is `Unknown`.
fn identity_part(facts: &Facts<'_>, check: impl Fn(&SpiffeId<'_>) -> bool) -> Tri {
    match (&facts.spiffe, facts.req.peer) {
        (Some(id), _) => Tri::from_bool(check(id)),
        (None, None) => Tri::False,
        (None, Some(_)) => Tri::Unknown,
    }
}

/// Drops one trailing dot of the host name, before any `:port`.
fn strip_trailing_dot(host: &[u8]) -> &[u8] {
    let (name_end, has_port) = match host.iter().rposition(|&b| b == b':') {
        // An IPv6 literal's colons are inside brackets.
        Some(c) if !host[c..].contains(&b']') => (c, true),
        _ => (host.len(), false),
    };
    if !has_port && name_end > 1 && host[name_end - 1] == b'.' {
        return &host[..name_end - 1];
    }
    host
}

fn ip_in(ip: Option<IpAddr>, blocks: &[Cidr]) -> Tri {
    Tri::from_bool(ip.is_some_and(|ip| blocks.iter().any(|b| b.contains(ip))))
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn the_query_starts_at_the_first_question_mark_or_hash() {
        let cases: &[(&str, Option<usize>)] = &[
            ("", None),
            ("/", None),
            ("/data/projects", None),
            ("/data/projects/p1/subjects/s1/experiments", None),
            ("?", Some(0)),
            ("/a?b", Some(2)),
            ("/a#b?c", Some(2)),
            ("/data/pr?jects", Some(8)),
            ("/data/projects?x=1", Some(14)),
            ("/data/projects/p1/subjects#frag", Some(26)),
            ("/data/projects/p1/subjects/s1/experiments?format=json", Some(41)),
        ];
        for (path, expected) in cases {
            assert_eq!(query_start(path.as_bytes()), *expected, "{path}");
            let slow = path.bytes().position(|b| b == b'?' || b == b'#');
            assert_eq!(slow, *expected, "{path}: the case itself is wrong");
        }
        // Every position and every byte next to the markers, against the plain scan.
        for len in 0..40 {
            for at in 0..len {
                for marker in [b'?', b'#', b'>', b'_', 0xbf, 0xa3] {
                    let mut path = vec![b'a'; len];
                    path[at] = marker;
                    let slow = path.iter().position(|&b| b == b'?' || b == b'#');
                    assert_eq!(query_start(&path), slow, "{path:?}");
                }
            }
        }
    }

    #[test]
    fn method_sets_match_like_the_patterns() {
        let patterns = [
            Pattern::Exact(b"GET".as_slice().into()),
            Pattern::Exact(b"OPTIONS".as_slice().into()),
            Pattern::Exact(b"FIFTEEN-BYTES-X".as_slice().into()),
            Pattern::Exact(b"SIXTEEN-BYTES-XY".as_slice().into()),
            Pattern::Prefix(b"PRO".as_slice().into()),
            Pattern::Present,
        ];
        let table = MethodTable::new(&patterns);
        for method in [
            &b"GET"[..],
            b"GE",
            b"GETX",
            b"GET\0",
            b"get",
            b"OPTIONS",
            b"FIFTEEN-BYTES-X",
            b"FIFTEEN-BYTES-",
            b"SIXTEEN-BYTES-XY",
            b"SIXTEEN-BYTES-XYZ",
            b"PROPFIND",
            b"",
        ] {
            let expected =
                patterns.iter().enumerate().filter(|(_, p)| p.matches(Some(method))).fold(0, |b, (i, _)| b | 1 << i);
            assert_eq!(table.bits(method), expected, "{}", String::from_utf8_lossy(method));
        }
    }
}

//! The compiled configuration: what `compile` builds and `evaluate` reads. Everything is
//! validated and laid out for matching here, so that evaluation cannot fail.

use crate::config::{MethodOverride, MtlsMode, ObserveMode, PathNormalization, TunnelDecoding};
use crate::normalize::CompiledAlias;
use crate::pattern::{Cidr, PathPattern, Pattern};
use crate::request::{Needs, PolicyName};

/// The compiled configuration: every policy, the PeerAuthentication modes and how requests
/// are read. Build it with [`compile`](super::compile); share it read-only.
#[derive(Debug, Clone)]
pub struct Engine {
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
    pub(crate) aliases: Box<[CompiledAlias]>,
    pub(crate) method_override: MethodOverride,
    pub(crate) tunnel_decoding: TunnelDecoding,
    /// Indices into `header_names` of the method-override headers.
    pub(crate) override_headers: Box<[usize]>,
    /// Per entry of `header_names`: whether a request header whose name differs only by `_`
    /// for `-` counts as it (`overrideHeaderNames: UNDERSCORE_AS_DASH`).
    pub(crate) loose_headers: Box<[bool]>,
    /// `trustDomain` and `trustDomainAliases`, for the [`Matcher::MeshNamespace`] and
    /// [`Matcher::MeshServiceAccount`] matchers.
    pub(crate) trust_domains: Box<[Box<[u8]>]>,
    /// Whether any rule has such a matcher: only then is the peer's trust domain looked up.
    pub(crate) mesh_scoped: bool,
    /// `configDigest`, as the number the filter publishes.
    pub(crate) config_digest: Option<u64>,
    /// `observe`: whether allowed requests are recorded (see `observe`).
    pub(crate) observe: ObserveMode,
}

impl Engine {
    /// `configDigest` as a number (below 2^52, so Prometheus' doubles hold it exactly), to
    /// publish once this configuration is in force.
    pub fn config_digest(&self) -> Option<u64> {
        self.config_digest
    }

    /// Whether paths are read as Tomcat routes them (`pathNormalization: TOMCAT`).
    pub(crate) fn normalises_paths(&self) -> bool {
        self.path_mode == PathNormalization::Tomcat
    }

    /// The request facts this configuration's policies read.
    pub fn needs(&self) -> Needs {
        self.needs
    }

    /// The request facts the glue should fetch: [`needs`](Engine::needs), and when the
    /// configuration [`records`](Engine::records) also the caller, port, method and path that
    /// name a record. Only `needs` is matched: recording changes no decision.
    pub fn reads(&self) -> Needs {
        let mut reads = self.needs;
        if self.records() {
            (reads.method, reads.path, reads.port, reads.peer, reads.identity) = (true, true, true, true, true);
        }
        reads
    }

    /// Lower-case names of the request headers the configuration reads, in the order
    /// [`Request::headers`](crate::Request::headers) must follow.
    pub fn header_names(&self) -> &[Box<str>] {
        &self.header_names
    }

    /// Whether a request header named `name` is entry `index` of
    /// [`header_names`](Engine::header_names): equal ignoring ASCII case, and for the
    /// method-override headers under `overrideHeaderNames: UNDERSCORE_AS_DASH` also with `_`
    /// in place of `-`.
    #[inline]
    pub fn is_header(&self, index: usize, name: &[u8]) -> bool {
        let Some(wanted) = self.header_names.get(index) else { return false };
        let wanted = wanted.as_bytes();
        if !self.loose_headers.get(index).copied().unwrap_or(false) {
            return name.eq_ignore_ascii_case(wanted);
        }
        name.len() == wanted.len()
            && name.iter().zip(wanted).all(|(&a, &b)| {
                let dash = |c: u8| if c == b'_' { b'-' } else { c.to_ascii_lowercase() };
                dash(a) == dash(b)
            })
    }

    /// Name and namespace of `policies[index]` in the configuration.
    pub fn policy_name(&self, index: usize) -> Option<&PolicyName> {
        self.names.get(index)
    }

    /// The effective PeerAuthentication mode for a port (UNSET resolved).
    pub fn mtls_mode(&self, port: Option<u16>) -> MtlsMode {
        self.mtls.mode_for(port)
    }

    /// Every compiled policy, of every kind.
    pub(crate) fn policies(&self) -> impl Iterator<Item = &CompiledPolicy> {
        [&self.deny, &self.allow, &self.audit, &self.dry_run_deny, &self.dry_run_allow]
            .into_iter()
            .flat_map(|p| p.iter())
    }

    /// The request facts the model itself calls for: what its matchers match on, the peer
    /// wherever mTLS is not disabled everywhere, the port where ports differ in mode, and the
    /// query where method-override headers are read. `compile` arrives at the same set.
    pub(crate) fn implied_needs(&self) -> Needs {
        let mut needs = Needs::default();
        for policy in self.policies() {
            for rule in policy.rules.iter() {
                for constraint in rule.from.iter().chain(rule.to.iter()).flatten().chain(rule.when.iter()) {
                    constraint.matcher.add_needs(&mut needs);
                }
            }
        }
        let modes = || std::iter::once(self.mtls.default).chain(self.mtls.ports.iter().map(|(_, m)| *m));
        needs.peer |= modes().any(|m| m != MtlsMode::Disable);
        needs.port_for_plaintext |= modes().any(|m| m != self.mtls.default);
        needs.query |= !self.override_headers.is_empty();
        needs
    }

    /// How many policies of each kind were compiled: (deny, allow, audit, dry-run).
    pub fn counts(&self) -> (usize, usize, usize, usize) {
        (self.deny.len(), self.allow.len(), self.audit.len(), self.dry_run_deny.len() + self.dry_run_allow.len())
    }
}

/// The method patterns of a configuration. Exact methods (nearly all of them) are packed into
/// one integer each, so a request's method is tested with one compare per pattern, not a
/// byte-slice comparison.
#[derive(Debug, Clone, Default)]
pub(crate) struct MethodTable {
    /// (packed method, its bit)
    pub(crate) exact: Box<[(u128, u64)]>,
    /// Prefix, suffix and wildcard patterns, and exact methods too long to pack.
    pub(crate) other: Box<[(Pattern, u64)]>,
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
    pub(crate) fn bits(&self, method: &[u8]) -> u64 {
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
pub(crate) fn pack_method(method: &[u8]) -> Option<u128> {
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
    pub(crate) matcher: Matcher,
}

/// What one constraint compares, and with what.
#[derive(Debug, Clone)]
pub(crate) enum Matcher {
    /// Patterns over the whole peer URI (`spiffe://` included).
    Principal(Box<[Pattern]>),
    /// A peer of any trust domain (Istio's `.*/ns/<ns>/.*`).
    Namespace(Box<[Pattern]>),
    ServiceAccount(Box<[ServiceAccount]>),
    /// The same, for a peer of the mesh's trust domains only (`peerTrustDomains: MESH`, on the
    /// side of a rule where a match grants access; see `compile::scoped`).
    MeshNamespace(Box<[Pattern]>),
    MeshServiceAccount(Box<[ServiceAccount]>),
    TrustDomain(Box<[Pattern]>),
    SourceIp(Box<[Cidr]>),
    RemoteIp(Box<[Cidr]>),
    DestinationIp(Box<[Cidr]>),
    /// Lower-cased patterns, compared ignoring ASCII case.
    Host(Box<[Pattern]>),
    Port(Box<[u16]>),
    /// A mask over [`Engine::methods`].
    Method(u64),
    Path(Box<[PathPattern]>),
    Header(usize, Box<[Pattern]>),
    Sni(Box<[Pattern]>),
}

impl Matcher {
    /// Adds the request facts this matcher reads to `needs`.
    pub(crate) fn add_needs(&self, needs: &mut Needs) {
        match self {
            Matcher::Principal(_)
            | Matcher::Namespace(_)
            | Matcher::ServiceAccount(_)
            | Matcher::MeshNamespace(_)
            | Matcher::MeshServiceAccount(_)
            | Matcher::TrustDomain(_) => {
                needs.peer = true;
                needs.identity = true;
            }
            Matcher::SourceIp(_) => needs.source_ip = true,
            Matcher::RemoteIp(_) => needs.remote_ip = true,
            Matcher::DestinationIp(_) => needs.destination_ip = true,
            Matcher::Host(_) => needs.host = true,
            Matcher::Port(_) => needs.port = true,
            Matcher::Method(_) => needs.method = true,
            Matcher::Path(_) => needs.path = true,
            Matcher::Header(..) => {}
            Matcher::Sni(_) => needs.sni = true,
        }
    }
}

/// A service account, exact: (namespace, name).
pub(crate) type ServiceAccount = (Box<[u8]>, Box<[u8]>);

/// Rule numbers, ascending.
pub(crate) type Rules = Box<[u32]>;

/// An index over a policy's rules (see `index`, which builds and reads it).
#[derive(Debug, Clone, Default)]
pub(crate) struct RuleIndex {
    pub(crate) principal: ValueMap,
    pub(crate) namespace: ValueMap,
    pub(crate) path_exact: ValueMap,
    /// Prefix keys grouped by length, so a path is probed once per distinct length.
    pub(crate) path_prefix: Box<[(usize, ValueMap)]>,
    /// Per header (its index in the configuration's header names).
    pub(crate) header: Box<[(usize, ValueMap)]>,
    /// Rules without a key, always checked.
    pub(crate) scan: Rules,
}

/// Exact values to the rules keyed on them, sorted by value. A binary search costs about what
/// a hash lookup does at these sizes, and needs no hasher in the module.
#[derive(Debug, Clone, Default)]
pub(crate) struct ValueMap(pub(crate) Box<[(Box<[u8]>, Rules)]>);

#[cfg(test)]
mod tests {
    use super::*;

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

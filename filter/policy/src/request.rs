//! What goes into an evaluation and what comes out: the request facts the glue reads from the
//! host, the facts a compiled configuration needs, the decision, and the counters the filter
//! keeps of decisions.

use std::cell::Cell;
use std::fmt;
use std::net::IpAddr;

use crate::normalize::PathRefusal;

/// What the request looks like, as read from the host by the glue. Only the facts listed in
/// [`Engine::needs`](crate::Engine::needs) have to be filled in; the others may stay at their
/// defaults.
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
    /// Values of the headers named by [`Engine::header_names`](crate::Engine::header_names),
    /// in that order: every value of a header that appears more than once, none for an absent
    /// header.
    pub headers: &'a [HeaderValues<'a>],
}

/// All values of one request header, in order; empty when the header is absent.
pub type HeaderValues<'a> = &'a [&'a [u8]];

/// The request facts a compiled configuration reads. The glue asks the host only for these.
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
    pub(crate) fn only(verdict: Verdict) -> Decision {
        Decision { verdict, dry_run_denied: false, audited: false }
    }
}

impl Verdict {
    pub fn is_allowed(self) -> bool {
        matches!(self, Verdict::AllowedNoAllowPolicy | Verdict::AllowedBy { .. })
    }
}

/// One line for the filter's debug log. Written by hand, not derived: `Debug` would link
/// `core::fmt`'s escaping into the module, 3 KB.
impl fmt::Display for Decision {
    fn fmt(&self, out: &mut fmt::Formatter<'_>) -> fmt::Result {
        match self.verdict {
            Verdict::AllowedNoAllowPolicy => out.write_str("allowed: no ALLOW policy applies")?,
            Verdict::AllowedBy { policy, rule } => write!(out, "allowed by policy {policy} rule {rule}")?,
            Verdict::DeniedMtlsRequired { port: Some(port) } => write!(out, "denied: STRICT mTLS on port {port}")?,
            Verdict::DeniedMtlsRequired { port: None } => out.write_str("denied: STRICT mTLS")?,
            Verdict::DeniedBy { policy, rule } => write!(out, "denied by policy {policy} rule {rule}")?,
            Verdict::DeniedNoAllowMatch => out.write_str("denied: no ALLOW policy matched")?,
            Verdict::DeniedUnsafePath { reason } => write!(out, "denied: path refused: {}", reason.as_str())?,
            Verdict::DeniedMethodOverride => out.write_str("denied: method override")?,
        }
        if self.dry_run_denied {
            out.write_str("; a dry-run policy would deny")?;
        }
        if self.audited {
            out.write_str("; audited")?;
        }
        Ok(())
    }
}

/// A policy's name and namespace, for reports.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct PolicyName {
    pub name: String,
    pub namespace: String,
}

/// How many decision counters the filter keeps.
pub const COUNTERS: usize = 5;

/// The prefix, written once for [`METRIC_PREFIX`] and each of [`METRIC_NAMES`].
macro_rules! metric_prefix {
    () => {
        "xnat_guard_"
    };
}

macro_rules! counters {
    ($($name:literal),* $(,)?) => {
        /// The decision counters, by name: what `deployer status` and the local tour report.
        pub const COUNTER_NAMES: [&str; COUNTERS] = [$($name),*];
        /// The counters as the filter defines them in Envoy: [`METRIC_PREFIX`] and the name.
        /// Envoy shows them at `/stats` as `wasmcustom.<metric>` and at `/stats/prometheus`
        /// as `<metric>`.
        pub const METRIC_NAMES: [&str; COUNTERS] = [$(concat!(metric_prefix!(), $name)),*];
    };
}

counters!["allowed", "denied_policy", "denied_mtls", "dry_run_denied", "audit_matched"];

/// What the filter puts before each counter's name when it defines it in Envoy.
pub const METRIC_PREFIX: &str = metric_prefix!();

/// The gauge the filter sets, once a configuration is in force, to its `configDigest`.
pub const CONFIG_DIGEST_METRIC: &str = concat!(metric_prefix!(), "config_digest");

/// The base of each observed record's counter (see `observe::metric_name`).
pub const OBSERVED_METRIC: &str = concat!(metric_prefix!(), "observed");
/// The base of each would-deny record's counter, and with `_at` its last-seen gauge.
pub const WOULD_DENY_METRIC: &str = concat!(metric_prefix!(), "would_deny");
/// Requests the filter could not record: its table was full, or a field too long.
pub const OBSERVE_OVERFLOW_METRIC: &str = concat!(metric_prefix!(), "observe_overflow");

// Positions in COUNTER_NAMES.
const ALLOWED: usize = 0;
const DENIED_POLICY: usize = 1;
const DENIED_MTLS: usize = 2;
const DRY_RUN_DENIED: usize = 3;
const AUDIT_MATCHED: usize = 4;

impl Decision {
    /// Which of the [`COUNTER_NAMES`] this decision counts in: its verdict, and whether a
    /// dry-run policy would have denied it and an AUDIT policy matched it.
    #[inline]
    pub fn counters(&self) -> [bool; COUNTERS] {
        let mut counted = [false; COUNTERS];
        counted[match self.verdict {
            Verdict::AllowedNoAllowPolicy | Verdict::AllowedBy { .. } => ALLOWED,
            Verdict::DeniedMtlsRequired { .. } => DENIED_MTLS,
            Verdict::DeniedBy { .. }
            | Verdict::DeniedNoAllowMatch
            | Verdict::DeniedUnsafePath { .. }
            | Verdict::DeniedMethodOverride => DENIED_POLICY,
        }] = true;
        counted[DRY_RUN_DENIED] = self.dry_run_denied;
        counted[AUDIT_MATCHED] = self.audited;
        counted
    }
}

/// Decisions counted since the last [`take`](DecisionCounts::take), in [`COUNTER_NAMES`]
/// order. Cells, so that one count can be shared (in an `Rc`) by the filter's root context,
/// which flushes it, and its HTTP contexts, which record.
#[derive(Debug, Default)]
pub struct DecisionCounts([Cell<u64>; COUNTERS]);

impl DecisionCounts {
    /// Counts one decision: its verdict, and whether a dry-run policy would have denied it
    /// and an AUDIT policy matched it.
    #[inline]
    pub fn record(&self, decision: &Decision) {
        for (cell, counted) in self.0.iter().zip(decision.counters()) {
            cell.set(cell.get() + u64::from(counted));
        }
    }

    /// The counts so far, in [`COUNTER_NAMES`] order; they start again from zero.
    #[inline]
    pub fn take(&self) -> [u64; COUNTERS] {
        std::array::from_fn(|i| self.0[i].take())
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn a_decision_reads_as_one_line_naming_the_verdict_and_its_flags() {
        let line = |verdict, dry_run_denied, audited| Decision { verdict, dry_run_denied, audited }.to_string();
        assert_eq!(line(Verdict::AllowedBy { policy: 2, rule: 0 }, false, false), "allowed by policy 2 rule 0");
        assert_eq!(
            line(Verdict::DeniedMtlsRequired { port: Some(8443) }, false, true),
            "denied: STRICT mTLS on port 8443; audited"
        );
        assert_eq!(
            line(Verdict::DeniedUnsafePath { reason: PathRefusal::EncodedSlash }, true, false),
            "denied: path refused: encoded slash (%2F); a dry-run policy would deny"
        );
        assert_eq!(line(Verdict::DeniedNoAllowMatch, false, false), "denied: no ALLOW policy matched");
    }

    #[test]
    fn metric_names_are_the_prefix_and_the_counter_name() {
        for (metric, name) in METRIC_NAMES.iter().zip(COUNTER_NAMES) {
            assert_eq!(*metric, format!("{METRIC_PREFIX}{name}"));
        }
        assert_eq!(COUNTER_NAMES[ALLOWED], "allowed");
        assert_eq!(COUNTER_NAMES[DENIED_POLICY], "denied_policy");
        assert_eq!(COUNTER_NAMES[DENIED_MTLS], "denied_mtls");
        assert_eq!(COUNTER_NAMES[DRY_RUN_DENIED], "dry_run_denied");
        assert_eq!(COUNTER_NAMES[AUDIT_MATCHED], "audit_matched");
    }

    #[test]
    fn each_decision_counts_its_verdict_and_its_reports() {
        let counts = DecisionCounts::default();
        let cases = [
            (Verdict::AllowedNoAllowPolicy, false, false, [1, 0, 0, 0, 0]),
            (Verdict::AllowedBy { policy: 0, rule: 0 }, true, false, [1, 0, 0, 1, 0]),
            (Verdict::DeniedMtlsRequired { port: Some(8443) }, false, false, [0, 0, 1, 0, 0]),
            (Verdict::DeniedBy { policy: 1, rule: 2 }, false, true, [0, 1, 0, 0, 1]),
            (Verdict::DeniedNoAllowMatch, true, true, [0, 1, 0, 1, 1]),
            (Verdict::DeniedUnsafePath { reason: PathRefusal::Backslash }, false, false, [0, 1, 0, 0, 0]),
            (Verdict::DeniedMethodOverride, false, false, [0, 1, 0, 0, 0]),
        ];
        for (verdict, dry_run_denied, audited, expected) in cases {
            counts.record(&Decision { verdict, dry_run_denied, audited });
            assert_eq!(counts.take(), expected, "{verdict:?}");
        }
        counts.record(&Decision::only(Verdict::AllowedNoAllowPolicy));
        counts.record(&Decision::only(Verdict::AllowedNoAllowPolicy));
        assert_eq!(counts.take(), [2, 0, 0, 0, 0]);
        assert_eq!(counts.take(), [0; COUNTERS], "taking starts the counts again");
    }
}

//! What goes into an evaluation and what comes out: the request facts the glue reads from the
//! host, the facts a compiled configuration needs, and the decision.

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

/// A policy's name and namespace, for reports.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct PolicyName {
    pub name: String,
    pub namespace: String,
}

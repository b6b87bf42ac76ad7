//! `deployer check`: the decision the filter would make for one request, offline, by the same
//! engine the filter runs, and why, in the words of the configuration.

use std::fmt;
use std::net::IpAddr;

use serde::Serialize;
use xnat_guard_policy::config::{MtlsMode, PluginConfig, PolicyEntry};
use xnat_guard_policy::{compile, Decision, Engine, Request, Verdict};

use crate::resources::Selection;

/// One request described on the command line.
#[derive(Debug, Clone, Default, Serialize)]
pub struct RequestSpec {
    pub method: String,
    pub path: String,
    pub host: Option<String>,
    pub port: u16,
    /// The caller's SPIFFE id (`spiffe://td/ns/N/sa/S`) over mutual TLS, or `None` for plaintext.
    pub principal: Option<String>,
    pub source_ip: Option<IpAddr>,
    /// The workload's own address the connection arrived at (`destination.ip`).
    pub destination_ip: Option<IpAddr>,
    /// The TLS server name the caller asked for (`connection.sni`).
    pub sni: Option<String>,
    pub headers: Vec<(String, String)>,
}

/// What a `--principal` must look like.
pub const PRINCIPAL_FORM: &str =
    "TRUST_DOMAIN/ns/NAMESPACE/sa/SERVICE_ACCOUNT (e.g. cluster.local/ns/default/sa/sleep), or a spiffe:// URI";

impl RequestSpec {
    /// A caller's identity as Istio writes it (`cluster.local/ns/N/sa/S`), or a SPIFFE URI with
    /// a trust domain and a path; as the SPIFFE URI the filter sees. Anything else is refused:
    /// a bare name (`sleep`) would be judged as an identity no workload has.
    pub fn parse_principal(principal: &str) -> Result<String, String> {
        let refuse = || format!("'{principal}' is not a caller identity; give it as {PRINCIPAL_FORM}");
        if let Some(rest) = principal.strip_prefix("spiffe://") {
            let (domain, path) = rest.split_once('/').ok_or_else(refuse)?;
            if domain.is_empty() || path.is_empty() || path.split('/').any(str::is_empty) {
                return Err(refuse());
            }
            return Ok(principal.to_string());
        }
        match principal.split('/').collect::<Vec<_>>().as_slice() {
            [td, "ns", ns, "sa", sa] if ![td, ns, sa].iter().any(|p| p.is_empty()) => {
                Ok(format!("spiffe://{principal}"))
            }
            _ => Err(refuse()),
        }
    }
}

/// The mTLS mode on the request's port and the PeerAuthentication that set it.
#[derive(Debug, Clone, Serialize)]
pub struct MtlsFact {
    pub mode: &'static str,
    pub from: String,
}

/// The decision on one request and why; its `Display` is the report `check` prints.
#[derive(Debug, Clone, Serialize)]
pub struct Report {
    /// Every fact of the request as judged (absent ones are `null`).
    pub request: RequestSpec,
    pub allowed: bool,
    /// `allowed_by`, `denied_by`, `denied_no_allow_match`, `allowed_no_allow_policy`,
    /// `denied_mtls_required`, `denied_unsafe_path`, `denied_method_override`.
    pub verdict: &'static str,
    /// The policy (`namespace/name`) and rule index that decided, when one did.
    pub policy: Option<String>,
    pub rule: Option<usize>,
    pub why: String,
    pub mtls: MtlsFact,
    /// What else the policy says about it: why no ALLOW rule matched, dry-run and AUDIT policies.
    pub notes: Vec<String>,
    /// The request facts the policy reads, exactly as the filter asks the host for them.
    pub reads: Vec<String>,
}

impl fmt::Display for Report {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        let r = &self.request;
        let caller = match &r.principal {
            Some(p) => format!("mTLS as {p}"),
            None => "plaintext".to_string(),
        };
        let verdict = if self.allowed { "ALLOW" } else { "DENY" };
        writeln!(f, "{} {} on port {} ({caller}): {verdict}", r.method, r.path, r.port)?;
        writeln!(f, "  why: {}", self.why)?;
        writeln!(f, "  mTLS on port {}: {}, {}", r.port, self.mtls.mode, self.mtls.from)?;
        for note in &self.notes {
            writeln!(f, "  {note}")?;
        }
        let reads = if self.reads.is_empty() { "nothing".into() } else { self.reads.join(", ") };
        writeln!(f, "  the policy reads: {reads}")
    }
}

fn mode_name(mode: MtlsMode) -> &'static str {
    match mode {
        MtlsMode::Unset => "UNSET",
        MtlsMode::Disable => "DISABLE",
        MtlsMode::Permissive => "PERMISSIVE",
        MtlsMode::Strict => "STRICT",
    }
}

/// The request as the engine takes it; `header_values` per name of `policy.header_names()`.
fn request<'a>(spec: &'a RequestSpec, header_values: &'a [&'a [&'a [u8]]]) -> Request<'a> {
    Request {
        method: spec.method.as_bytes(),
        path: spec.path.as_bytes(),
        host: spec.host.as_deref().map(str::as_bytes),
        port: Some(spec.port),
        peer: spec.principal.as_deref().map(str::as_bytes),
        source_ip: spec.source_ip,
        remote_ip: spec.source_ip,
        destination_ip: spec.destination_ip,
        sni: spec.sni.as_deref().map(str::as_bytes),
        headers: header_values,
    }
}

/// Evaluates `spec` against `policy`, with every value of a repeated header, as the filter
/// sees one.
fn evaluate(policy: &Engine, spec: &RequestSpec) -> Decision {
    let values: Vec<Vec<&[u8]>> = policy
        .header_names()
        .iter()
        .map(|name| {
            spec.headers.iter().filter(|(k, _)| k.eq_ignore_ascii_case(name)).map(|(_, v)| v.as_bytes()).collect()
        })
        .collect();
    let header_values: Vec<&[&[u8]]> = values.iter().map(Vec::as_slice).collect();
    policy.evaluate(&request(spec, &header_values))
}

/// The verdict, and a report: the decision, why, and which request facts the policy read.
pub fn check(policy: &Engine, selection: &Selection, spec: &RequestSpec) -> (Decision, Report) {
    let mut notes = Vec::new();
    let (mode, from) = selection.mtls_on_port(spec.port);
    let mut judged = spec.clone();
    if mode == MtlsMode::Disable && spec.principal.is_some() {
        // With DISABLE the sidecar terminates no mTLS on the port: no identity reaches the filter.
        judged.principal = None;
        notes.push(format!(
            "port {} is DISABLE: the sidecar terminates no mTLS there, so the caller's identity never reaches the filter; judged as plaintext",
            spec.port
        ));
    }
    let spec = &judged;
    let decision = evaluate(policy, spec);
    if let Verdict::DeniedNoAllowMatch = decision.verdict {
        let (_, allow, _, _) = policy.counts();
        notes.push(format!(
            "{allow} ALLOW {} and none has a rule whose from, to and when all match",
            if allow == 1 { "policy applies" } else { "policies apply" }
        ));
    }
    if decision.dry_run_denied {
        let named = dry_run_deniers(selection, spec);
        if named.is_empty() {
            notes.push("the dry-run policies would have denied it (reported, not enforced)".into());
        }
        for name in named {
            notes.push(format!("dry-run policy {name} would have denied it (reported, not enforced)"));
        }
    }
    if decision.audited {
        notes.push("an AUDIT policy matched (logged, not enforced)".into());
    }
    let (policy_name, rule) = match decision.verdict {
        Verdict::AllowedBy { policy: p, rule } | Verdict::DeniedBy { policy: p, rule } => {
            (Some(name(policy, p)), Some(rule))
        }
        _ => (None, None),
    };
    let report = Report {
        request: spec.clone(),
        allowed: decision.verdict.is_allowed(),
        verdict: verdict_name(decision.verdict),
        policy: policy_name,
        rule,
        why: explain(decision.verdict, policy),
        mtls: MtlsFact { mode: mode_name(mode), from },
        notes,
        reads: reads(policy),
    };
    (decision, report)
}

/// The dry-run policies that, enforced, would deny the request.
fn dry_run_deniers(selection: &Selection, spec: &RequestSpec) -> Vec<String> {
    let config = &selection.config;
    let enforced: Vec<PolicyEntry> = config.policies.iter().filter(|p| !p.dry_run).cloned().collect();
    config
        .policies
        .iter()
        .filter(|p| p.dry_run)
        .filter(|p| {
            let mut policies = enforced.clone();
            policies.push(PolicyEntry { dry_run: false, ..(*p).clone() });
            let one = PluginConfig { policies, ..config.clone() };
            compile(&one).is_ok_and(|engine| !evaluate(&engine, spec).verdict.is_allowed())
        })
        .map(|p| format!("{}/{}", p.namespace, p.name))
        .collect()
}

fn verdict_name(verdict: Verdict) -> &'static str {
    match verdict {
        Verdict::AllowedNoAllowPolicy => "allowed_no_allow_policy",
        Verdict::AllowedBy { .. } => "allowed_by",
        Verdict::DeniedMtlsRequired { .. } => "denied_mtls_required",
        Verdict::DeniedBy { .. } => "denied_by",
        Verdict::DeniedNoAllowMatch => "denied_no_allow_match",
        Verdict::DeniedUnsafePath { .. } => "denied_unsafe_path",
        Verdict::DeniedMethodOverride => "denied_method_override",
    }
}

/// What the compiled policy asks the host for, in the order of a request's facts.
fn reads(policy: &Engine) -> Vec<String> {
    let needs = policy.needs();
    let mut out: Vec<String> = [
        (needs.method, "method"),
        (needs.path, "path"),
        (needs.query && !needs.path, "query (for a tunnelled method)"),
        (needs.host, "host"),
        (needs.port, "port"),
        (needs.port_for_plaintext && !needs.port, "port (for the mTLS mode)"),
        (needs.peer, "whether the caller uses mTLS"),
        (needs.identity, "the caller's identity"),
        (needs.source_ip, "source address"),
        (needs.remote_ip, "remote address"),
        (needs.destination_ip, "destination address"),
        (needs.sni, "server name (SNI)"),
    ]
    .iter()
    .filter(|(used, _)| *used)
    .map(|(_, what)| what.to_string())
    .collect();
    if !policy.header_names().is_empty() {
        out.push(format!("headers ({})", policy.header_names().join(", ")));
    }
    out
}

fn name(policy: &Engine, i: usize) -> String {
    policy.policy_name(i).map(|n| format!("{}/{}", n.namespace, n.name)).unwrap_or_else(|| format!("policies[{i}]"))
}

/// Explains a verdict in the words of the configuration.
pub fn explain(verdict: Verdict, policy: &Engine) -> String {
    let name = |i: usize| name(policy, i);
    match verdict {
        Verdict::AllowedNoAllowPolicy => "allowed: no ALLOW policy, no DENY matched".into(),
        Verdict::AllowedBy { policy, rule } => format!("allowed by {} rule {rule}", name(policy)),
        Verdict::DeniedMtlsRequired { port } => {
            format!("denied: port {} is STRICT, plaintext refused", port.map(|p| p.to_string()).unwrap_or("?".into()))
        }
        Verdict::DeniedBy { policy, rule } => {
            format!("denied by DENY {} rule {rule}", name(policy))
        }
        Verdict::DeniedNoAllowMatch => "denied: no ALLOW rule matches".into(),
        Verdict::DeniedUnsafePath { reason } => format!("refused (400): unsafe path, {}", reason.as_str()),
        Verdict::DeniedMethodOverride => "denied: the request tunnels a method the policy does not allow".into(),
    }
}

//! `deployer check`: the decision the filter would make for one request, offline, by the same
//! engine the filter runs, and why, in the words of the configuration.

use std::fmt;
use std::net::IpAddr;

use serde::Serialize;
use xnat_guard_policy::{Decision, Engine, Request, Verdict};

/// One request described on the command line.
#[derive(Debug, Clone, Default)]
pub struct RequestSpec {
    pub method: String,
    pub path: String,
    pub host: Option<String>,
    pub port: u16,
    /// The caller's SPIFFE id (`spiffe://td/ns/N/sa/S`) over mutual TLS, or `None` for plaintext.
    pub principal: Option<String>,
    pub source_ip: Option<IpAddr>,
    pub headers: Vec<(String, String)>,
}

impl RequestSpec {
    /// Accepts Istio's principal form (`cluster.local/ns/N/sa/S`) as well as the SPIFFE URI.
    pub fn normalise_principal(principal: &str) -> String {
        if principal.starts_with("spiffe://") {
            principal.to_string()
        } else {
            format!("spiffe://{principal}")
        }
    }
}

/// The decision on one request and why; its `Display` is the report `check` prints.
#[derive(Debug, Clone, Serialize)]
pub struct Report {
    pub method: String,
    pub path: String,
    pub port: u16,
    /// The SPIFFE id over mutual TLS; `None` for plaintext.
    pub principal: Option<String>,
    pub allowed: bool,
    pub why: String,
    /// What else the policy says about it: why no ALLOW rule matched, dry-run and AUDIT policies.
    pub notes: Vec<String>,
    /// The request facts the policy reads.
    pub reads: Vec<&'static str>,
}

impl fmt::Display for Report {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        let caller = match &self.principal {
            Some(p) => format!("mTLS as {p}"),
            None => "plaintext".to_string(),
        };
        let verdict = if self.allowed { "ALLOW" } else { "DENY" };
        writeln!(f, "{} {} on port {} ({caller}): {verdict}", self.method, self.path, self.port)?;
        writeln!(f, "  why: {}", self.why)?;
        for note in &self.notes {
            writeln!(f, "  {note}")?;
        }
        let reads = if self.reads.is_empty() { "nothing".into() } else { self.reads.join(", ") };
        writeln!(f, "  the policy reads: {reads}")
    }
}

/// The verdict, and a report: the decision, why, and which request facts the policy read.
pub fn check(policy: &Engine, spec: &RequestSpec) -> (Decision, Report) {
    // Every value of a header given more than once, as the filter sees a repeated header.
    let values: Vec<Vec<&[u8]>> = policy
        .header_names()
        .iter()
        .map(|name| {
            spec.headers.iter().filter(|(k, _)| k.eq_ignore_ascii_case(name)).map(|(_, v)| v.as_bytes()).collect()
        })
        .collect();
    let header_values: Vec<&[&[u8]]> = values.iter().map(Vec::as_slice).collect();
    let request = Request {
        method: spec.method.as_bytes(),
        path: spec.path.as_bytes(),
        host: spec.host.as_deref().map(str::as_bytes),
        port: Some(spec.port),
        peer: spec.principal.as_deref().map(str::as_bytes),
        source_ip: spec.source_ip,
        remote_ip: spec.source_ip,
        destination_ip: None,
        sni: None,
        headers: &header_values,
    };
    let decision = policy.evaluate(&request);
    let mut notes = Vec::new();
    if let Verdict::DeniedNoAllowMatch = decision.verdict {
        let (_, allow, _, _) = policy.counts();
        notes.push(format!(
            "{allow} ALLOW {} and none has a rule whose from, to and when all match",
            if allow == 1 { "policy applies" } else { "policies apply" }
        ));
    }
    if decision.dry_run_denied {
        notes.push("a dry-run policy would have denied it (reported, not enforced)".into());
    }
    if decision.audited {
        notes.push("an AUDIT policy matched (logged, not enforced)".into());
    }
    let needs = policy.needs();
    let reads: Vec<&'static str> = [
        (needs.method, "method"),
        (needs.path, "path"),
        (needs.host, "host"),
        (needs.port || needs.port_for_plaintext, "port"),
        (needs.peer || needs.identity, "peer identity"),
        (needs.source_ip || needs.remote_ip, "source address"),
        (!policy.header_names().is_empty(), "headers"),
    ]
    .iter()
    .filter(|(used, _)| *used)
    .map(|(_, what)| *what)
    .collect();
    let report = Report {
        method: spec.method.clone(),
        path: spec.path.clone(),
        port: spec.port,
        principal: spec.principal.clone(),
        allowed: decision.verdict.is_allowed(),
        why: explain(decision.verdict, policy),
        notes,
        reads,
    };
    (decision, report)
}

/// Explains a verdict in the words of the configuration.
pub fn explain(verdict: Verdict, policy: &Engine) -> String {
    let name = |i: usize| {
        policy.policy_name(i).map(|n| format!("{}/{}", n.namespace, n.name)).unwrap_or_else(|| format!("policies[{i}]"))
    };
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

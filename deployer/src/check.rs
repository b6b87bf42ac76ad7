//! `deployer check`: the decision the filter would make for one request, offline, by the same
//! engine the filter runs.

use std::net::IpAddr;

use xnat_guard_policy::{Decision, Policy, Request, Verdict};

use crate::local::explain;

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

/// The verdict and a report: the decision, why, and which request facts the policy read.
pub fn check(policy: &Policy, spec: &RequestSpec) -> (Decision, String) {
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
    let mut report = String::new();
    let caller = match &spec.principal {
        Some(p) => format!("mTLS as {p}"),
        None => "plaintext".to_string(),
    };
    report.push_str(&format!(
        "{} {} on port {} ({caller}): {}\n",
        spec.method,
        spec.path,
        spec.port,
        if decision.verdict.is_allowed() { "ALLOW" } else { "DENY" }
    ));
    report.push_str(&format!("  why: {}\n", explain(decision.verdict, policy)));
    if let Verdict::DeniedNoAllowMatch = decision.verdict {
        let (_, allow, _, _) = policy.counts();
        report.push_str(&format!(
            "  {allow} ALLOW {} and none has a rule whose from, to and when all match\n",
            if allow == 1 { "policy applies" } else { "policies apply" }
        ));
    }
    if decision.dry_run_denied {
        report.push_str("  a dry-run policy would have denied it (reported, not enforced)\n");
    }
    if decision.audited {
        report.push_str("  an AUDIT policy matched (logged, not enforced)\n");
    }
    let needs = policy.needs();
    let read: Vec<&str> = [
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
    report.push_str(&format!(
        "  the policy reads: {}\n",
        if read.is_empty() { "nothing".into() } else { read.join(", ") }
    ));
    (decision, report)
}

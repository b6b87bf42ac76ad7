//! The proxy-wasm glue: read the plugin configuration and compile it (or refuse it), then per
//! request read the facts the compiled policy needs, evaluate, and let the request through or
//! answer `403 RBAC: access denied` as Istio's RBAC filter does. Nothing clever lives here.
//!
//! Host calls go through `proxy_wasm::hostcalls` with their `Result`s handled: the SDK's trait
//! helpers unwrap, and a trap in a sidecar is an outage.

use std::net::{IpAddr, SocketAddr};
use std::rc::Rc;

use proxy_wasm::hostcalls;
use proxy_wasm::traits::{Context, HttpContext, RootContext};
use proxy_wasm::types::{Action, BufferType, ContextType, LogLevel, MapType, MetricType};
use xnat_guard_policy::{Decision, Policy, Request, Verdict};

proxy_wasm::main! {{
    proxy_wasm::set_log_level(LogLevel::Info);
    proxy_wasm::set_root_context(|_| -> Box<dyn RootContext> { Box::new(GuardRoot::default()) });
}}

const DENIED_BODY: &[u8] = b"RBAC: access denied";

/// Counter ids, defined once per VM. Envoy shows them at `/stats` (as `wasmcustom.<name>`)
/// and `/stats/prometheus`.
#[derive(Debug, Default, Clone, Copy)]
struct Metrics {
    allowed: Option<u32>,
    denied_policy: Option<u32>,
    denied_mtls: Option<u32>,
    dry_run_denied: Option<u32>,
    audited: Option<u32>,
}

impl Metrics {
    fn define() -> Metrics {
        let counter = |name: &str| hostcalls::define_metric(MetricType::Counter, name).ok();
        Metrics {
            allowed: counter("xnat_guard_allowed"),
            denied_policy: counter("xnat_guard_denied_policy"),
            denied_mtls: counter("xnat_guard_denied_mtls"),
            dry_run_denied: counter("xnat_guard_dry_run_denied"),
            audited: counter("xnat_guard_audit_matched"),
        }
    }

    fn bump(id: Option<u32>) {
        if let Some(id) = id {
            let _ = hostcalls::increment_metric(id, 1);
        }
    }

    fn record(&self, decision: &Decision) {
        Self::bump(match decision.verdict {
            Verdict::AllowedNoAllowPolicy | Verdict::AllowedBy { .. } => self.allowed,
            Verdict::DeniedMtlsRequired { .. } => self.denied_mtls,
            Verdict::DeniedBy { .. } | Verdict::DeniedNoAllowMatch => self.denied_policy,
        });
        if decision.dry_run_denied {
            Self::bump(self.dry_run_denied);
        }
        if decision.audited {
            Self::bump(self.audited);
        }
    }
}

#[derive(Default)]
struct GuardRoot {
    policy: Option<Rc<Policy>>,
    metrics: Metrics,
}

impl Context for GuardRoot {}

impl RootContext for GuardRoot {
    fn on_configure(&mut self, plugin_configuration_size: usize) -> bool {
        self.metrics = Metrics::define();
        let config = hostcalls::get_buffer(BufferType::PluginConfiguration, 0, plugin_configuration_size)
            .ok()
            .flatten()
            .unwrap_or_default();
        match xnat_guard_policy::from_json(&config) {
            Ok(policy) => {
                let (deny, allow, audit, dry_run) = policy.counts();
                log::info!(
                    "xnat-guard: configured: {deny} DENY, {allow} ALLOW, {audit} AUDIT, {dry_run} dry-run policies"
                );
                self.policy = Some(Rc::new(policy));
                true
            }
            Err(e) => {
                // Fail closed: Envoy refuses a filter whose configuration is refused.
                log::error!("xnat-guard: configuration refused: {e}");
                self.policy = None;
                false
            }
        }
    }

    fn create_http_context(&self, _context_id: u32) -> Option<Box<dyn HttpContext>> {
        Some(Box::new(GuardHttp { policy: self.policy.clone(), metrics: self.metrics }))
    }

    fn get_type(&self) -> Option<ContextType> {
        Some(ContextType::HttpContext)
    }
}

struct GuardHttp {
    policy: Option<Rc<Policy>>,
    metrics: Metrics,
}

impl Context for GuardHttp {}

impl HttpContext for GuardHttp {
    fn on_http_request_headers(&mut self, _num_headers: usize, _end_of_stream: bool) -> Action {
        let Some(policy) = self.policy.clone() else {
            log::error!("xnat-guard: no valid configuration; denying");
            return deny();
        };
        let decision = decide(&policy);
        self.metrics.record(&decision);
        if log::log_enabled!(log::Level::Debug) {
            log::debug!("xnat-guard: {:?}", decision);
        }
        if decision.verdict.is_allowed() {
            Action::Continue
        } else {
            deny()
        }
    }
}

fn deny() -> Action {
    let _ = hostcalls::send_http_response(403, vec![("content-type", "text/plain")], Some(DENIED_BODY));
    Action::Pause
}

/// Reads from the host only what `policy.needs()` lists, then evaluates.
fn decide(policy: &Policy) -> Decision {
    let needs = policy.needs();
    let method = if needs.method { header(":method") } else { None };
    let path = if needs.path { header(":path") } else { None };
    let host = if needs.host { header(":authority") } else { None };
    let port = if needs.port { property(&["destination", "port"]).and_then(|b| le_u64(&b)) } else { None };
    let peer = if needs.peer { peer_identity(needs.identity) } else { None };
    let source_ip = if needs.source_ip || needs.remote_ip { address(&["source", "address"]) } else { None };
    let destination_ip = if needs.destination_ip { address(&["destination", "address"]) } else { None };
    let sni = if needs.sni { property(&["connection", "requested_server_name"]) } else { None };
    let header_values: Vec<Option<Vec<u8>>> = policy.header_names().iter().map(|n| header(n)).collect();
    let header_refs: Vec<Option<&[u8]>> = header_values.iter().map(|v| v.as_deref()).collect();
    let request = Request {
        method: method.as_deref().unwrap_or_default(),
        path: path.as_deref().unwrap_or_default(),
        host: host.as_deref(),
        port: port.and_then(|p| u16::try_from(p).ok()),
        peer: peer.as_deref(),
        source_ip,
        // The sidecar trusts no X-Forwarded-For hop: the remote address is the peer's.
        remote_ip: source_ip,
        destination_ip,
        sni: sni.as_deref(),
        headers: &header_refs,
    };
    policy.evaluate(&request)
}

fn header(name: &str) -> Option<Vec<u8>> {
    hostcalls::get_map_value_bytes(MapType::HttpRequestHeaders, name).ok().flatten()
}

fn property(path: &[&str]) -> Option<Vec<u8>> {
    hostcalls::get_property(path.to_vec()).ok().flatten()
}

fn le_u64(bytes: &[u8]) -> Option<u64> {
    Some(u64::from_le_bytes(bytes.get(..8)?.try_into().ok()?))
}

/// `None` for plaintext; for mutual TLS the peer certificate's URI SAN (empty when the policy
/// does not need the identity, or the certificate has none).
fn peer_identity(need_uri: bool) -> Option<Vec<u8>> {
    let mtls = property(&["connection", "mtls"]).is_some_and(|b| b.first() == Some(&1));
    if !mtls {
        return None;
    }
    if !need_uri {
        return Some(Vec::new());
    }
    Some(property(&["connection", "uri_san_peer_certificate"]).unwrap_or_default())
}

fn address(path: &[&str]) -> Option<IpAddr> {
    let raw = property(path)?;
    let text = std::str::from_utf8(&raw).ok()?;
    text.parse::<SocketAddr>().map(|a| a.ip()).or_else(|_| text.parse::<IpAddr>()).ok()
}

//! The proxy-wasm glue: read the plugin configuration and compile it (or refuse it), then per
//! request read the facts the compiled policy needs, evaluate, and let the request through or
//! answer `403 RBAC: access denied` as Istio's RBAC filter does. Nothing clever lives here.
//!
//! Every host call costs about as much as the whole policy evaluation, so the request path
//! makes as few as it can: it reads only what `Engine::needs` lists, reads the port only when
//! it can change the outcome, and counts decisions in memory, flushing them to Envoy's stats
//! once a second instead of one host call per request.

mod connection;
mod host;

use std::cell::{Cell, RefCell};
use std::rc::Rc;
use std::time::Duration;

use connection::{worth_caching, Cache, Connection, Source};
use proxy_wasm::hostcalls;
use proxy_wasm::traits::{Context, HttpContext, RootContext};
use proxy_wasm::types::{Action, BufferType, ContextType, LogLevel, MetricType};
use xnat_guard_policy::{Decision, Engine, HeaderValues, MtlsMode, Request, Verdict};

proxy_wasm::main! {{
    proxy_wasm::set_log_level(LogLevel::Info);
    proxy_wasm::set_root_context(|_| -> Box<dyn RootContext> { Box::new(GuardRoot::default()) });
}}

const DENIED_BODY: &[u8] = b"RBAC: access denied";
const FLUSH_PERIOD: Duration = Duration::from_secs(1);

/// Decisions counted since the last flush, shared by the root and its HTTP contexts.
#[derive(Debug, Default)]
struct Pending {
    allowed: Cell<u64>,
    denied_policy: Cell<u64>,
    denied_mtls: Cell<u64>,
    dry_run_denied: Cell<u64>,
    audited: Cell<u64>,
}

impl Pending {
    fn record(&self, decision: &Decision) {
        let bump = |c: &Cell<u64>| c.set(c.get() + 1);
        bump(match decision.verdict {
            Verdict::AllowedNoAllowPolicy | Verdict::AllowedBy { .. } => &self.allowed,
            Verdict::DeniedMtlsRequired { .. } => &self.denied_mtls,
            Verdict::DeniedBy { .. }
            | Verdict::DeniedNoAllowMatch
            | Verdict::DeniedUnsafePath { .. }
            | Verdict::DeniedMethodOverride => &self.denied_policy,
        });
        if decision.dry_run_denied {
            bump(&self.dry_run_denied);
        }
        if decision.audited {
            bump(&self.audited);
        }
    }
}

/// Counter ids, defined once per VM. Envoy shows them at `/stats` (as `wasmcustom.<name>`)
/// and `/stats/prometheus`.
#[derive(Debug, Default, Clone, Copy)]
struct Metrics([Option<u32>; 5]);

impl Metrics {
    const NAMES: [&'static str; 5] = [
        "xnat_guard_allowed",
        "xnat_guard_denied_policy",
        "xnat_guard_denied_mtls",
        "xnat_guard_dry_run_denied",
        "xnat_guard_audit_matched",
    ];

    fn define() -> Metrics {
        Metrics(Self::NAMES.map(|name| hostcalls::define_metric(MetricType::Counter, name).ok()))
    }

    fn flush(&self, pending: &Pending) {
        let cells =
            [&pending.allowed, &pending.denied_policy, &pending.denied_mtls, &pending.dry_run_denied, &pending.audited];
        for (id, cell) in self.0.iter().zip(cells) {
            let n = cell.take();
            if let (Some(id), true) = (id, n > 0) {
                let _ = hostcalls::increment_metric(*id, n as i64);
            }
        }
    }
}

#[derive(Default)]
struct GuardRoot {
    policy: Option<Rc<Engine>>,
    metrics: Metrics,
    pending: Rc<Pending>,
    connections: Rc<RefCell<Cache>>,
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
                // What was read for the old policy's needs may not cover the new one's.
                self.connections = Rc::default();
                let _ = hostcalls::set_tick_period(FLUSH_PERIOD);
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

    fn on_tick(&mut self) {
        self.metrics.flush(&self.pending);
    }

    fn create_http_context(&self, _context_id: u32) -> Option<Box<dyn HttpContext>> {
        Some(Box::new(GuardHttp {
            policy: self.policy.clone(),
            pending: self.pending.clone(),
            connections: self.connections.clone(),
        }))
    }

    fn get_type(&self) -> Option<ContextType> {
        Some(ContextType::HttpContext)
    }
}

struct GuardHttp {
    policy: Option<Rc<Engine>>,
    pending: Rc<Pending>,
    connections: Rc<RefCell<Cache>>,
}

impl Context for GuardHttp {}

impl HttpContext for GuardHttp {
    fn on_http_request_headers(&mut self, _num_headers: usize, _end_of_stream: bool) -> Action {
        let Some(policy) = &self.policy else {
            log::error!("xnat-guard: no valid configuration; denying");
            return deny();
        };
        let decision = decide(policy, &self.connections);
        self.pending.record(&decision);
        if log::log_enabled!(log::Level::Debug) {
            log::debug!("xnat-guard: {:?}", decision);
        }
        match decision.verdict {
            v if v.is_allowed() => Action::Continue,
            // What Tomcat itself would answer: the request is malformed, not unauthorised.
            Verdict::DeniedUnsafePath { reason } => {
                let body = format!("xnat-guard: path refused: {}", reason.as_str());
                let _ = hostcalls::send_http_response(400, vec![("content-type", "text/plain")], Some(body.as_bytes()));
                Action::Pause
            }
            _ => deny(),
        }
    }
}

fn deny() -> Action {
    let _ = hostcalls::send_http_response(403, vec![("content-type", "text/plain")], Some(DENIED_BODY));
    Action::Pause
}

/// Reads from the host only what the policy needs, cheapest decisive fact first, then
/// evaluates. Connection facts come from the per-connection cache when the policy reads two
/// or more of them.
fn decide(policy: &Engine, cache: &RefCell<Cache>) -> Decision {
    let needs = policy.needs();
    let live = host::Live;
    let mut fresh = Connection::default();
    let mut cache = cache.borrow_mut();
    let connection = match worth_caching(&needs).then(|| live.connection_id()).flatten() {
        Some(id) => cache.entry(id),
        None => &mut fresh,
    };
    let plaintext = connection.peer(&needs, &live).is_none();
    let port_needed = needs.port || (needs.port_for_plaintext && plaintext);
    let port = if port_needed { connection.port(&live) } else { None };
    // Plaintext on a STRICT port is refused before anything else is read.
    if plaintext && needs.peer && policy.mtls_mode(port) == MtlsMode::Strict {
        return policy.evaluate(&Request { port, ..Request::default() });
    }
    connection.fill_rest(&needs, &live);
    let base = Request { port, ..connection.request() };
    let read_path = needs.path || needs.query;
    if policy.header_names().is_empty() {
        // A header or two: one call each is cheapest.
        let method = if needs.method { host::request_header(b":method") } else { None };
        let path = if read_path { host::request_header(b":path") } else { None };
        let authority = if needs.host { host::request_header(b":authority") } else { None };
        return policy.evaluate(&Request {
            method: method.as_deref().unwrap_or_default(),
            path: path.as_deref().unwrap_or_default(),
            host: authority.as_deref(),
            ..base
        });
    }
    // Named headers (rules, method overrides): the whole map in one call, which also sees
    // every value of a repeated header; each value is judged on its own, as RBAC does.
    let buf = host::request_headers().unwrap_or_default();
    let map = host::Headers::parse(&buf);
    let method = if needs.method { map.first(b":method") } else { None };
    let path = if read_path { map.first(b":path") } else { None };
    let authority = if needs.host { map.first(b":authority") } else { None };
    with_header_values(&map, policy.header_names(), |headers| {
        policy.evaluate(&Request {
            method: method.unwrap_or_default(),
            path: path.unwrap_or_default(),
            host: authority,
            headers,
            ..base
        })
    })
}

/// Room on the stack for the named headers' values; beyond it they go to the heap.
const STACK_NAMES: usize = 8;
const STACK_VALUES: usize = 32;

/// Gathers every value of each named header, grouped in `names` order, and hands the groups
/// to `f`. Nearly always on the stack: a policy names a few headers and a request repeats few.
fn with_header_values<R>(map: &host::Headers<'_>, names: &[Box<str>], f: impl FnOnce(&[HeaderValues<'_>]) -> R) -> R {
    let mut flat: [&[u8]; STACK_VALUES] = [&[]; STACK_VALUES];
    let mut ends = [0usize; STACK_NAMES];
    let mut filled = 0;
    let fits = names.len() <= STACK_NAMES
        && names.iter().zip(ends.iter_mut()).all(|(name, end)| {
            for value in map.all(name.as_bytes()) {
                let Some(slot) = flat.get_mut(filled) else { return false };
                *slot = value;
                filled += 1;
            }
            *end = filled;
            true
        });
    if fits {
        let mut groups: [HeaderValues<'_>; STACK_NAMES] = [&[]; STACK_NAMES];
        let mut start = 0;
        for (group, &end) in groups.iter_mut().zip(&ends[..names.len()]) {
            *group = &flat[start..end];
            start = end;
        }
        return f(&groups[..names.len()]);
    }
    let values: Vec<Vec<&[u8]>> = names.iter().map(|n| map.all(n.as_bytes()).collect()).collect();
    let groups: Vec<HeaderValues<'_>> = values.iter().map(Vec::as_slice).collect();
    f(&groups)
}

#[cfg(test)]
mod tests {
    use super::*;

    fn grouped(pairs: &[(&str, String)], names: &[&str]) -> Vec<Vec<String>> {
        let buf = host::serialise(pairs);
        let names: Vec<Box<str>> = names.iter().map(|n| (*n).into()).collect();
        with_header_values(&host::Headers::parse(&buf), &names, |groups| {
            assert_eq!(groups.len(), names.len());
            groups.iter().map(|g| g.iter().map(|v| String::from_utf8_lossy(v).into_owned()).collect()).collect()
        })
    }

    #[test]
    fn header_values_are_grouped_by_name_in_order() {
        let pairs = [("x-a", "1".to_string()), ("x-b", "2".to_string()), ("X-A", "3".to_string())];
        assert_eq!(grouped(&pairs, &["x-a", "x-none", "x-b"]), [vec!["1", "3"], vec![], vec!["2"]]);
        assert_eq!(grouped(&pairs, &[]), Vec::<Vec<String>>::new());
    }

    #[test]
    fn more_values_or_names_than_the_stack_holds_are_all_kept() {
        let many: Vec<(&str, String)> = (0..STACK_VALUES + 5).map(|i| ("x-team", format!("t{i}"))).collect();
        let got = grouped(&many, &["x-other", "x-team"]);
        assert_eq!(got[0].len(), 0);
        assert_eq!(got[1], (0..STACK_VALUES + 5).map(|i| format!("t{i}")).collect::<Vec<_>>());
        let names: Vec<String> = (0..STACK_NAMES + 2).map(|i| format!("x-{i}")).collect();
        let pairs: Vec<(&str, String)> = names.iter().map(|n| (n.as_str(), n.clone())).collect();
        let name_refs: Vec<&str> = names.iter().map(String::as_str).collect();
        assert_eq!(grouped(&pairs, &name_refs), names.iter().map(|n| vec![n.clone()]).collect::<Vec<_>>());
    }
}

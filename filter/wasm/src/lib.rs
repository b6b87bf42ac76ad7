//! The proxy-wasm glue: read the plugin configuration and compile it (or refuse it), then per
//! request read the facts the compiled configuration needs, evaluate, and let the request
//! through or answer `403 RBAC: access denied` as Istio's RBAC filter does. Nothing clever
//! lives here: what needs no host (grouping header values, the per-connection cache,
//! counting decisions) is in `xnat_guard_policy`, tested natively.
//!
//! Every host call costs about as much as the whole evaluation, so the request path makes as
//! few as it can: it reads only what `Engine::reads` lists, connection facts once per
//! connection, the port only when it can change the outcome. The measurement build
//! (`make wasm-expression`, feature `expression-reads`) can make one instead, under
//! `XNAT_GUARD_FACT_READS=expression`: Envoy evaluates a CEL expression listing every fact
//! (`xnat_guard_policy::facts`), measured dearer than the calls it saves, so the module
//! `make wasm` ships leaves that code out (11.7 KB).
//! Decisions are counted in memory and flushed to Envoy's stats once a second.
#![deny(unsafe_code)]
#![deny(clippy::undocumented_unsafe_blocks)]

// The FFI and the allocator: the only modules with unsafe code. The allocator is the VM's
// alone: built natively (tests, clippy), this crate must not replace the process's `malloc`.
#[cfg(all(target_family = "wasm", not(target_feature = "atomics")))]
#[allow(unsafe_code)]
mod allocator;
#[allow(unsafe_code)]
mod host;

use std::cell::RefCell;
use std::rc::Rc;
use std::time::Duration;

use proxy_wasm::hostcalls;
use proxy_wasm::traits::{Context, HttpContext, RootContext};
use proxy_wasm::types::{Action, BufferType, ContextType, LogLevel, MetricType};
#[cfg(feature = "expression-reads")]
use xnat_guard_policy::facts::{FactQuery, Unread};
use xnat_guard_policy::observe::{self, ObservationTable, RecordKind};
use xnat_guard_policy::{
    read_and_judge, ConnectionCache, Decision, DecisionCounts, Engine, Request, Verdict, CONFIG_DIGEST_METRIC,
    COUNTERS, METRIC_NAMES, OBSERVE_OVERFLOW_METRIC,
};

proxy_wasm::main! {{
    proxy_wasm::set_log_level(LogLevel::Info);
    log_panics();
    proxy_wasm::set_root_context(|_| -> Box<dyn RootContext> { Box::new(GuardRoot::default()) });
}}

/// Writes a panic's message to Envoy's log before the VM aborts (`panic = "abort"`), so a trap
/// in a sidecar leaves a trace. Replaces the SDK's own hook (installed by `set_log_level`),
/// which unwraps the log call's status inside the hook and does not name the filter.
fn log_panics() {
    std::panic::set_hook(Box::new(|info| {
        let _ = hostcalls::log(LogLevel::Critical, &format!("xnat-guard: {info}"));
    }));
}

const DENIED_BODY: &[u8] = b"RBAC: access denied";
const FLUSH_PERIOD: Duration = Duration::from_secs(1);

/// Counter ids, and the configuration gauge's, defined once per VM. Envoy shows them at
/// `/stats` (as `wasmcustom.<name>`) and `/stats/prometheus`.
#[derive(Debug, Default, Clone, Copy)]
struct Metrics {
    counters: [Option<u32>; COUNTERS],
    config_digest: Option<u32>,
    observe_overflow: Option<u32>,
}

impl Metrics {
    fn define() -> Metrics {
        Metrics {
            counters: METRIC_NAMES.map(|name| hostcalls::define_metric(MetricType::Counter, name).ok()),
            config_digest: hostcalls::define_metric(MetricType::Gauge, CONFIG_DIGEST_METRIC).ok(),
            observe_overflow: hostcalls::define_metric(MetricType::Counter, OBSERVE_OVERFLOW_METRIC).ok(),
        }
    }

    /// Says which configuration is in force; only ever after it compiled, so a refused update
    /// leaves the previous configuration's digest showing, as its policy keeps enforcing.
    fn publish_config(&self, engine: &Engine) {
        if let (Some(id), Some(digest)) = (self.config_digest, engine.config_digest()) {
            let _ = hostcalls::record_metric(id, digest);
        }
    }

    fn flush(&self, counts: &DecisionCounts) {
        for (id, n) in self.counters.iter().zip(counts.take()) {
            if let (Some(id), true) = (id, n > 0) {
                let _ = hostcalls::increment_metric(*id, n as i64);
            }
        }
    }

    /// Exports what was recorded since the last flush: each record's counter (defined when the
    /// record is first flushed), a would-deny record's last-seen gauge, and the overflow.
    fn flush_records(&self, table: &mut ObservationTable) {
        let now = hostcalls::get_current_time().ok().and_then(|t| t.duration_since(std::time::UNIX_EPOCH).ok());
        let overflow = table.flush(|record, n| {
            if record.metric.is_none() {
                let name = observe::metric_name(record.kind, &record.tuple());
                record.metric = hostcalls::define_metric(MetricType::Counter, &name).ok();
            }
            if let Some(id) = record.metric {
                let _ = hostcalls::increment_metric(id, n as i64);
            }
            if record.kind == RecordKind::WouldDeny {
                if record.time_metric.is_none() {
                    let name = observe::time_metric_name(record.kind, &record.tuple());
                    record.time_metric = hostcalls::define_metric(MetricType::Gauge, &name).ok();
                }
                if let (Some(id), Some(now)) = (record.time_metric, now) {
                    let _ = hostcalls::record_metric(id, now.as_secs());
                }
            }
        });
        if let (Some(id), true) = (self.observe_overflow, overflow > 0) {
            let _ = hostcalls::increment_metric(id, overflow as i64);
        }
    }
}

/// How the request path reads its facts: `XNAT_GUARD_FACT_READS` in the VM's environment
/// (the `WasmPlugin`'s `vmConfig.env`).
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
enum FactReads {
    /// One host call per fact, fewest first (the default: measured cheaper, docs/PERFORMANCE.md).
    Calls,
    /// One CEL evaluation per request: one host crossing, but Envoy's CEL evaluation costs more
    /// than the calls it saves.
    #[cfg(feature = "expression-reads")]
    Expression,
}

const FACT_READS_VARIABLE: &str = "XNAT_GUARD_FACT_READS";

impl FactReads {
    /// Refuses what this build cannot do rather than reading another way than asked.
    fn from_environment() -> Result<FactReads, String> {
        match std::env::var(FACT_READS_VARIABLE).as_deref() {
            Err(_) | Ok("calls") => Ok(FactReads::Calls),
            #[cfg(feature = "expression-reads")]
            Ok("expression") => Ok(FactReads::Expression),
            #[cfg(not(feature = "expression-reads"))]
            Ok("expression") => Err(format!(
                "{FACT_READS_VARIABLE}=\"expression\": this module reads facts one host call each; \
                 the one-evaluation reads are only in the measurement build (`make wasm-expression`)"
            )),
            Ok(other) => Err(format!("{FACT_READS_VARIABLE}=\"{other}\": expected \"calls\" or \"expression\"")),
        }
    }
}

/// The configuration's facts as one expression compiled in Envoy, and its token there.
#[cfg(feature = "expression-reads")]
struct CompiledQuery {
    facts: FactQuery,
    token: u32,
}

#[cfg(feature = "expression-reads")]
impl Drop for CompiledQuery {
    fn drop(&mut self) {
        host::delete_expression(self.token);
    }
}

/// Under `XNAT_GUARD_FACT_READS=expression`, compiles the expression for `engine`'s facts in
/// Envoy, or says why requests will read them one call each.
#[cfg(feature = "expression-reads")]
fn compile_query(engine: &Engine, reads: FactReads) -> Option<CompiledQuery> {
    if reads == FactReads::Calls {
        return None;
    }
    let Some(facts) = FactQuery::for_engine(engine) else {
        log::warn!("xnat-guard: a header name cannot be written into a CEL expression: reading request facts one host call each");
        return None;
    };
    if facts.is_empty() {
        return None;
    }
    match host::create_expression(facts.expression()) {
        Ok(token) => Some(CompiledQuery { facts, token }),
        Err(host::STATUS_NOT_FOUND) => {
            log::warn!("xnat-guard: this Envoy has no CEL foreign functions (expr_create): reading request facts one host call each");
            None
        }
        Err(status) => {
            log::error!(
                "xnat-guard: Envoy refused the facts expression (status {status}): reading request facts one host call each; expression: {}",
                facts.expression()
            );
            None
        }
    }
}

#[derive(Default)]
struct GuardRoot {
    engine: Option<Rc<Engine>>,
    #[cfg(feature = "expression-reads")]
    query: Option<Rc<CompiledQuery>>,
    metrics: Metrics,
    counts: Rc<DecisionCounts>,
    connections: Rc<RefCell<ConnectionCache>>,
    /// Kept across configurations: its records' metrics stay defined in Envoy.
    records: Rc<RefCell<ObservationTable>>,
}

impl Context for GuardRoot {}

impl RootContext for GuardRoot {
    fn on_configure(&mut self, plugin_configuration_size: usize) -> bool {
        self.metrics = Metrics::define();
        let config = hostcalls::get_buffer(BufferType::PluginConfiguration, 0, plugin_configuration_size)
            .ok()
            .flatten()
            .unwrap_or_default();
        let reads = match FactReads::from_environment() {
            Ok(reads) => reads,
            Err(e) => {
                log::error!("xnat-guard: configuration refused: {e}");
                self.engine = None;
                return false;
            }
        };
        // The deployer compiles the policies and ships the engine beside them (`packed`): the
        // module has no JSON reader or compiler, so V8 compiles half the code at load.
        let compiled = xnat_guard_policy::packed::from_plugin_config(&config).and_then(|engine| {
            engine.ok_or_else(|| xnat_guard_policy::ConfigError {
                path: xnat_guard_policy::packed::MEMBER.to_string(),
                message: "missing: this module enforces only configurations the deployer compiled (`deployer render`, `rollout` and `local` write it beside the policies)".to_string(),
            })
        });
        match compiled {
            Ok(engine) => {
                // The old expression is freed (dropped) once no request holds it.
                #[cfg(feature = "expression-reads")]
                {
                    self.query = compile_query(&engine, reads).map(Rc::new);
                }
                // Without the feature, calls are the only reads there are.
                #[cfg(not(feature = "expression-reads"))]
                let FactReads::Calls = reads;
                let (deny, allow, audit, dry_run) = engine.counts();
                log::info!(
                    "xnat-guard: configured: {deny} DENY, {allow} ALLOW, {audit} AUDIT, {dry_run} dry-run policies"
                );
                self.metrics.publish_config(&engine);
                self.engine = Some(Rc::new(engine));
                // What was read for the old policy's needs may not cover the new one's.
                self.connections = Rc::default();
                let _ = hostcalls::set_tick_period(FLUSH_PERIOD);
                true
            }
            Err(e) => {
                // Fail closed: Envoy refuses a filter whose configuration is refused.
                log::error!("xnat-guard: configuration refused: {e}");
                self.engine = None;
                false
            }
        }
    }

    fn on_tick(&mut self) {
        self.metrics.flush(&self.counts);
        self.metrics.flush_records(&mut self.records.borrow_mut());
    }

    fn create_http_context(&self, _context_id: u32) -> Option<Box<dyn HttpContext>> {
        Some(Box::new(GuardHttp {
            engine: self.engine.clone(),
            #[cfg(feature = "expression-reads")]
            query: self.query.clone(),
            counts: self.counts.clone(),
            connections: self.connections.clone(),
            records: self.records.clone(),
        }))
    }

    fn get_type(&self) -> Option<ContextType> {
        Some(ContextType::HttpContext)
    }
}

struct GuardHttp {
    engine: Option<Rc<Engine>>,
    #[cfg(feature = "expression-reads")]
    query: Option<Rc<CompiledQuery>>,
    counts: Rc<DecisionCounts>,
    connections: Rc<RefCell<ConnectionCache>>,
    records: Rc<RefCell<ObservationTable>>,
}

impl Context for GuardHttp {}

impl HttpContext for GuardHttp {
    fn on_http_request_headers(&mut self, _num_headers: usize, _end_of_stream: bool) -> Action {
        let Some(engine) = &self.engine else {
            log::error!("xnat-guard: no valid configuration; denying");
            return deny();
        };
        #[cfg(feature = "expression-reads")]
        let decision = decide(engine, self.query.as_deref(), &self.connections, &self.records);
        #[cfg(not(feature = "expression-reads"))]
        let decision = decide_by_calls(engine, &self.connections, &self.records);
        self.counts.record(&decision);
        if log::log_enabled!(log::Level::Debug) {
            log::debug!("xnat-guard: {decision}");
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

/// Evaluates, and records the request if the configuration records.
// Kept out of line, as is `decide_by_calls`: inlined into the request hook they made it the
// module's largest function (14 KB), which V8 compiles whole; measured in docs/PERFORMANCE.md.
#[inline(never)]
fn judge(engine: &Engine, request: &Request<'_>, records: &RefCell<ObservationTable>) -> Decision {
    let decision = engine.evaluate(request);
    if engine.records() {
        engine.observe(request, &decision, &mut records.borrow_mut());
    }
    decision
}

/// Reads every fact the configuration needs in one evaluation of its expression; where that
/// answer is not exact (a joined header value) or not there, reads them one call each.
#[cfg(feature = "expression-reads")]
fn decide(
    engine: &Engine,
    query: Option<&CompiledQuery>,
    cache: &RefCell<ConnectionCache>,
    records: &RefCell<ObservationTable>,
) -> Decision {
    if let Some(query) = query {
        match host::evaluate_expression(query.token)
            .map(|answer| query.facts.read(&answer, |request| judge(engine, request, records)))
        {
            Some(Ok(decision)) => return decision,
            Some(Err(Unread::Ambiguous)) => {}
            Some(Err(Unread::Malformed)) | None => warn_once("the facts expression gave no answer that reads"),
        }
    }
    decide_by_calls(engine, cache, records)
}

/// Logs a warning once per VM: a request read the slower way is judged the same.
#[cfg(feature = "expression-reads")]
fn warn_once(what: &str) {
    thread_local!(static WARNED: std::cell::Cell<bool> = const { std::cell::Cell::new(false) });
    if !WARNED.with(|w| w.replace(true)) {
        log::warn!("xnat-guard: {what}; such requests read their facts one host call each");
    }
}

/// Reads from the host only what the configuration needs, cheapest decisive fact first, then
/// judges (`xnat_guard_policy::read_and_judge`).
#[inline(never)]
fn decide_by_calls(engine: &Engine, cache: &RefCell<ConnectionCache>, records: &RefCell<ObservationTable>) -> Decision {
    read_and_judge(engine, &host::Live, &mut cache.borrow_mut(), |request| judge(engine, request, records))
}

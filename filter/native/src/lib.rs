//! The xnat-guard engine as an Envoy dynamic module: the same `xnat_guard_policy` engine the
//! Wasm filter runs, loaded by Envoy as a native shared library through its C ABI. No VM
//! stands between Envoy and the engine: headers and connection attributes are read as views
//! into Envoy's memory, and a request costs no copy into a sandbox.
//!
//! It makes the decisions the Wasm filter makes, answers denials the same way and counts them
//! in the same counters (Envoy's own stats: `/stats` shows them under
//! `dynamicmodulescustom.`). What it does not do: record the routes it allows (`observe:
//! ROUTES`, for `deployer learn`), which it refuses, and the per-route records of what a dry-run
//! policy would deny (it counts them). Measured in docs/PERFORMANCE.md.
#![deny(clippy::undocumented_unsafe_blocks)]

mod abi;
mod host;

use std::cell::RefCell;
use std::ffi::{c_char, c_void};
use std::sync::atomic::{AtomicU64, Ordering};

use abi::{EnvoyBuffer, EnvoyHeader, EnvoyPtr};
use host::Stream;
use xnat_guard_policy::{
    read_and_judge, ConnectionCache, Engine, Verdict, CONFIG_DIGEST_METRIC, COUNTERS, METRIC_NAMES,
};

const DENIED_BODY: &[u8] = b"RBAC: access denied";
const CONTENT_TYPE: &[u8] = b"text/plain";

/// One compiled configuration, shared by every worker thread.
struct FilterConfig {
    engine: Engine,
    /// Envoy's ids of the decision counters, in `COUNTER_NAMES` order.
    counters: [Option<usize>; COUNTERS],
    /// Tells a worker's connection cache which configuration filled it.
    generation: u64,
}

// The configuration is read from every worker at once and never written after it is built.
const _: () = {
    const fn shared_between_workers<T: Send + Sync>() {}
    shared_between_workers::<FilterConfig>();
};

static GENERATION: AtomicU64 = AtomicU64::new(1);

/// Configurations a worker keeps connection facts for at once. Istio gives each inbound filter
/// chain (a port, plaintext or mTLS) its own copy of the filter's configuration, and one worker
/// serves them all; past this many, the least recently used configuration's facts are dropped
/// and read again.
const CACHED_CONFIGURATIONS: usize = 8;

thread_local! {
    /// Each worker's connection facts, per configuration that read them, most recent last.
    static CONNECTIONS: RefCell<Vec<(u64, ConnectionCache)>> = const { RefCell::new(Vec::new()) };
}

/// The worker's connection cache for configuration `generation`, made most recent.
fn with_cache<R>(generation: u64, f: impl FnOnce(&mut ConnectionCache) -> R) -> R {
    CONNECTIONS.with(|cell| {
        let mut caches = cell.borrow_mut();
        match caches.iter().position(|(g, _)| *g == generation) {
            Some(at) if at + 1 == caches.len() => {}
            Some(at) => {
                let held = caches.remove(at);
                caches.push(held);
            }
            None => {
                if caches.len() == CACHED_CONFIGURATIONS {
                    caches.remove(0);
                }
                caches.push((generation, ConnectionCache::default()));
            }
        }
        let last = caches.len() - 1;
        f(&mut caches[last].1)
    })
}

/// Reads an Envoy buffer handed to a hook.
///
/// # Safety
/// `buffer` must be one Envoy passed to the running hook.
unsafe fn bytes<'a>(buffer: EnvoyBuffer) -> &'a [u8] {
    if buffer.ptr.is_null() {
        return &[];
    }
    // SAFETY: the caller passes a buffer of `length` bytes Envoy keeps valid during the hook.
    unsafe { std::slice::from_raw_parts(buffer.ptr, buffer.length) }
}

#[no_mangle]
pub extern "C" fn envoy_dynamic_module_on_program_init() -> *const c_char {
    abi::ABI_VERSION.as_ptr()
}

/// Compiles the filter's configuration (the same JSON the Wasm filter reads), or refuses it:
/// a null answer makes Envoy reject the listener, so a bad policy never enforces.
///
/// # Safety
/// Called by Envoy with buffers valid for the call.
#[no_mangle]
pub unsafe extern "C" fn envoy_dynamic_module_on_http_filter_config_new(
    config_envoy: EnvoyPtr,
    _name: EnvoyBuffer,
    config: EnvoyBuffer,
) -> *const c_void {
    // SAFETY: Envoy passes the configuration's bytes, valid for this hook.
    let json = unsafe { bytes(config) };
    let engine = match xnat_guard_policy::from_json(json) {
        Ok(engine) => engine,
        Err(e) => {
            host::log(abi::LOG_ERROR, &format!("xnat-guard: configuration refused: {e}"));
            return std::ptr::null();
        }
    };
    if engine.observes_routes() {
        host::log(
            abi::LOG_ERROR,
            "xnat-guard: configuration refused: only the Wasm filter records the routes it allows (observe: ROUTES)",
        );
        return std::ptr::null();
    }
    if engine.records() {
        host::log(
            abi::LOG_WARN,
            "xnat-guard: dry-run policies are counted (xnat_guard_dry_run_denied) but the requests they would deny \
             are not recorded per route; the Wasm filter records them",
        );
    }
    let (deny, allow, audit, dry_run) = engine.counts();
    host::log(
        abi::LOG_INFO,
        &format!("xnat-guard: configured: {deny} DENY, {allow} ALLOW, {audit} AUDIT, {dry_run} dry-run policies"),
    );
    // SAFETY: `config_envoy` is this hook's configuration.
    let metrics = unsafe { host::ConfigHost::new(config_envoy) };
    let counters = METRIC_NAMES.map(|name| metrics.define_counter(name));
    if let Some(digest) = engine.config_digest() {
        metrics.set_gauge(CONFIG_DIGEST_METRIC, digest);
    }
    let generation = GENERATION.fetch_add(1, Ordering::Relaxed);
    Box::into_raw(Box::new(FilterConfig { engine, counters, generation })) as *const c_void
}

/// # Safety
/// `config` is a pointer `envoy_dynamic_module_on_http_filter_config_new` returned.
#[no_mangle]
pub unsafe extern "C" fn envoy_dynamic_module_on_http_filter_config_destroy(config: *const c_void) {
    // SAFETY: Envoy destroys each configuration once, after its last stream.
    drop(unsafe { Box::from_raw(config as *mut FilterConfig) });
}

/// A stream needs no state of its own: its module pointer is the configuration's.
#[no_mangle]
pub extern "C" fn envoy_dynamic_module_on_http_filter_new(config: *const c_void, _filter: EnvoyPtr) -> *const c_void {
    config
}

/// # Safety
/// Called by Envoy with the stream's pointers during the request-headers hook.
#[no_mangle]
pub unsafe extern "C" fn envoy_dynamic_module_on_http_filter_request_headers(
    filter: EnvoyPtr,
    config: *const c_void,
    _end_of_stream: bool,
) -> u32 {
    // SAFETY: the module pointer is the configuration, alive while any stream uses it.
    let config = unsafe { &*(config as *const FilterConfig) };
    // SAFETY: `filter` is this hook's stream.
    let stream = unsafe { Stream::new(filter) };
    let decision = with_cache(config.generation, |cache| {
        read_and_judge(&config.engine, &stream, cache, |request| config.engine.evaluate(request))
    });
    for (id, counted) in config.counters.iter().zip(decision.counters()) {
        if let (Some(id), true) = (id, counted) {
            stream.increment_counter(*id);
        }
    }
    match decision.verdict {
        v if v.is_allowed() => abi::HEADERS_CONTINUE,
        // What Tomcat itself would answer: the request is malformed, not unauthorised.
        Verdict::DeniedUnsafePath { reason } => {
            let body = format!("xnat-guard: path refused: {}", reason.as_str());
            stream.send_response(400, CONTENT_TYPE, body.as_bytes(), b"xnat_guard_path_refused");
            abi::HEADERS_STOP_ITERATION
        }
        _ => {
            stream.send_response(403, CONTENT_TYPE, DENIED_BODY, b"xnat_guard_access_denied");
            abi::HEADERS_STOP_ITERATION
        }
    }
}

// The hooks below are ones Envoy resolves when it loads an HTTP filter module; this filter
// acts on request headers only, so each lets the stream go on.

#[no_mangle]
pub extern "C" fn envoy_dynamic_module_on_http_filter_destroy(_filter: *const c_void) {}

#[no_mangle]
pub extern "C" fn envoy_dynamic_module_on_http_filter_per_route_config_new(
    _name: EnvoyBuffer,
    _config: EnvoyBuffer,
) -> *const c_void {
    // Per-route configuration is not supported: refusing it keeps a route from narrowing or
    // widening the policy unseen.
    host::log(abi::LOG_ERROR, "xnat-guard: per-route configuration is not supported; refused");
    std::ptr::null()
}

#[no_mangle]
pub extern "C" fn envoy_dynamic_module_on_http_filter_per_route_config_destroy(_config: *const c_void) {}

#[no_mangle]
pub extern "C" fn envoy_dynamic_module_on_http_filter_request_body(_: EnvoyPtr, _: *const c_void, _: bool) -> u32 {
    0
}

#[no_mangle]
pub extern "C" fn envoy_dynamic_module_on_http_filter_request_trailers(_: EnvoyPtr, _: *const c_void) -> u32 {
    0
}

#[no_mangle]
pub extern "C" fn envoy_dynamic_module_on_http_filter_response_headers(_: EnvoyPtr, _: *const c_void, _: bool) -> u32 {
    0
}

#[no_mangle]
pub extern "C" fn envoy_dynamic_module_on_http_filter_response_body(_: EnvoyPtr, _: *const c_void, _: bool) -> u32 {
    0
}

#[no_mangle]
pub extern "C" fn envoy_dynamic_module_on_http_filter_response_trailers(_: EnvoyPtr, _: *const c_void) -> u32 {
    0
}

#[no_mangle]
pub extern "C" fn envoy_dynamic_module_on_http_filter_stream_complete(_: EnvoyPtr, _: *const c_void) {}

#[no_mangle]
pub extern "C" fn envoy_dynamic_module_on_http_filter_local_reply(
    _: EnvoyPtr,
    _: *const c_void,
    _response_code: u32,
    _details: EnvoyBuffer,
    _reset_imminent: bool,
) -> u32 {
    0
}

#[no_mangle]
pub extern "C" fn envoy_dynamic_module_on_http_filter_scheduled(_: EnvoyPtr, _: *const c_void, _: u64) {}

#[no_mangle]
pub extern "C" fn envoy_dynamic_module_on_http_filter_config_scheduled(_: EnvoyPtr, _: *const c_void, _: u64) {}

#[no_mangle]
pub extern "C" fn envoy_dynamic_module_on_http_filter_downstream_above_write_buffer_high_watermark(
    _: EnvoyPtr,
    _: *const c_void,
) {
}

#[no_mangle]
pub extern "C" fn envoy_dynamic_module_on_http_filter_downstream_below_write_buffer_low_watermark(
    _: EnvoyPtr,
    _: *const c_void,
) {
}

#[no_mangle]
pub extern "C" fn envoy_dynamic_module_on_http_filter_http_callout_done(
    _: EnvoyPtr,
    _: *const c_void,
    _callout: u64,
    _result: u32,
    _headers: *const EnvoyHeader,
    _headers_count: usize,
    _body: *const EnvoyBuffer,
    _body_count: usize,
) {
}

#[no_mangle]
pub extern "C" fn envoy_dynamic_module_on_http_filter_config_http_callout_done(
    _: EnvoyPtr,
    _: *const c_void,
    _callout: u64,
    _result: u32,
    _headers: *const EnvoyHeader,
    _headers_count: usize,
    _body: *const EnvoyBuffer,
    _body_count: usize,
) {
}

#[no_mangle]
pub extern "C" fn envoy_dynamic_module_on_http_filter_http_stream_headers(
    _: EnvoyPtr,
    _: *const c_void,
    _stream: u64,
    _headers: *const EnvoyHeader,
    _count: usize,
    _end: bool,
) {
}

#[no_mangle]
pub extern "C" fn envoy_dynamic_module_on_http_filter_config_http_stream_headers(
    _: EnvoyPtr,
    _: *const c_void,
    _stream: u64,
    _headers: *const EnvoyHeader,
    _count: usize,
    _end: bool,
) {
}

#[no_mangle]
pub extern "C" fn envoy_dynamic_module_on_http_filter_http_stream_data(
    _: EnvoyPtr,
    _: *const c_void,
    _stream: u64,
    _data: *const EnvoyBuffer,
    _count: usize,
    _end: bool,
) {
}

#[no_mangle]
pub extern "C" fn envoy_dynamic_module_on_http_filter_config_http_stream_data(
    _: EnvoyPtr,
    _: *const c_void,
    _stream: u64,
    _data: *const EnvoyBuffer,
    _count: usize,
    _end: bool,
) {
}

#[no_mangle]
pub extern "C" fn envoy_dynamic_module_on_http_filter_http_stream_trailers(
    _: EnvoyPtr,
    _: *const c_void,
    _stream: u64,
    _trailers: *const EnvoyHeader,
    _count: usize,
) {
}

#[no_mangle]
pub extern "C" fn envoy_dynamic_module_on_http_filter_config_http_stream_trailers(
    _: EnvoyPtr,
    _: *const c_void,
    _stream: u64,
    _trailers: *const EnvoyHeader,
    _count: usize,
) {
}

#[no_mangle]
pub extern "C" fn envoy_dynamic_module_on_http_filter_http_stream_complete(_: EnvoyPtr, _: *const c_void, _: u64) {}

#[no_mangle]
pub extern "C" fn envoy_dynamic_module_on_http_filter_config_http_stream_complete(
    _: EnvoyPtr,
    _: *const c_void,
    _: u64,
) {
}

#[no_mangle]
pub extern "C" fn envoy_dynamic_module_on_http_filter_http_stream_reset(
    _: EnvoyPtr,
    _: *const c_void,
    _stream: u64,
    _reason: u32,
) {
}

#[no_mangle]
pub extern "C" fn envoy_dynamic_module_on_http_filter_config_http_stream_reset(
    _: EnvoyPtr,
    _: *const c_void,
    _stream: u64,
    _reason: u32,
) {
}

#[cfg(test)]
mod tests {
    use std::cell::Cell;
    use std::net::IpAddr;

    use super::*;

    /// A connection whose port is counted each time it is read.
    #[derive(Default)]
    struct Counting {
        reads: Cell<usize>,
    }

    impl xnat_guard_policy::ConnectionSource for Counting {
        fn connection_id(&self) -> Option<u64> {
            Some(7)
        }
        fn peer_uri_san(&self) -> Option<Vec<u8>> {
            None
        }
        fn is_mtls(&self) -> bool {
            false
        }
        fn port(&self) -> Option<u16> {
            self.reads.set(self.reads.get() + 1);
            Some(8080)
        }
        fn source_ip(&self) -> Option<IpAddr> {
            None
        }
        fn destination_ip(&self) -> Option<IpAddr> {
            None
        }
        fn sni(&self) -> Option<Vec<u8>> {
            None
        }
    }

    fn read_port(generation: u64, host: &Counting) {
        with_cache(generation, |cache| cache.entry(7).port(host));
    }

    #[test]
    fn a_worker_keeps_each_filter_chains_connection_facts_while_it_serves_them_in_turn() {
        let host = Counting::default();
        // Two filter chains' configurations, served alternately on one worker.
        for _ in 0..3 {
            read_port(1001, &host);
            read_port(1002, &host);
        }
        assert_eq!(host.reads.get(), 2, "each configuration read the connection's port once");
        // More configurations than are kept: the least recently used is read again.
        for generation in 2000..2000 + CACHED_CONFIGURATIONS as u64 {
            read_port(generation, &host);
        }
        let before = host.reads.get();
        read_port(1001, &host);
        assert_eq!(host.reads.get(), before + 1);
    }
}

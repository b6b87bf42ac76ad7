//! The policy engine of the XNAT guard filter: Istio `AuthorizationPolicy` and
//! `PeerAuthentication` semantics, compiled once per configuration into an [`Engine`] that
//! evaluates a request without allocating. No proxy-wasm, no I/O: the same code runs in the
//! sidecar filter, in the deployer's `check` and in tests. What the filter's glue does that
//! needs no host (grouping header values, caching connection facts, counting decisions) lives
//! here too, so it is tested natively.
//!
//! Modules, each depending only on modules before it in this list (a DAG):
//! `config`, `error`, `json`, `pattern`, `spiffe`, `normalize`, `route`, `address` (none of the crate's);
//! `request` (request facts in, decision out); `model` (compiled types); `index` (builds and
//! reads a model's rule index); `engine` (evaluation only); `observe` (what is recorded of
//! allowed requests, and its metric names); `compile` (config to model); `packed` (model to
//! bytes and back: what the deployer ships and the Wasm filter loads, so the module needs
//! neither `decode` nor `compile`); `decode` (JSON to config); `headers`, `connection`, `read` and `facts` (the glue's
//! host-independent part).
#![forbid(unsafe_code)]
#![deny(clippy::unwrap_used, clippy::expect_used, clippy::panic)]

pub mod address;
pub mod config;

mod compile;
mod connection;
mod decode;
mod engine;
mod error;
pub mod facts;
mod headers;
mod index;
mod json;
mod model;
mod normalize;
pub mod observe;
pub mod packed;
mod pattern;
mod read;
mod request;
mod route;
mod spiffe;

pub use compile::compile;
#[cfg(feature = "testing")]
pub use compile::compile_unindexed;
pub use config::{MtlsMode, ObserveMode, PluginConfig};
pub use connection::{Connection, ConnectionCache, ConnectionSource};
pub use error::ConfigError;
pub use headers::HeaderMap;
pub use model::Engine;
pub use normalize::{apply_aliases, is_normal_path, tomcat_path, CompiledAlias, PathRefusal, MAX_PATH};
pub use read::{read_and_judge, RequestSource};
pub use request::{
    Decision, DecisionCounts, HeaderValues, Needs, PolicyName, Request, Verdict, CONFIG_DIGEST_METRIC, COUNTERS,
    COUNTER_NAMES, METRIC_NAMES, METRIC_PREFIX, OBSERVED_METRIC, OBSERVE_OVERFLOW_METRIC, WOULD_DENY_METRIC,
};
pub use route::{route_template, MAX_ROUTE};

/// Parses the plugin configuration JSON and compiles it. Errors carry the path of the field at
/// fault, for syntax and unknown fields as much as for values.
pub fn from_json(json: &[u8]) -> Result<Engine, ConfigError> {
    compile(&parse_json(json)?)
}

/// Parses the plugin configuration without compiling it. Syntax errors give their line and
/// column; every other refusal names the field at fault.
pub fn parse_json(json: &[u8]) -> Result<PluginConfig, ConfigError> {
    let document =
        json::parse(json).map_err(|e| ConfigError { path: error::DOCUMENT.to_string(), message: e.to_string() })?;
    decode::plugin_config(&document)
}

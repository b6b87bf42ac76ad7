//! The policy engine of the XNAT guard filter: Istio `AuthorizationPolicy` and
//! `PeerAuthentication` semantics, compiled once per configuration into a matcher that
//! evaluates a request without allocating. No proxy-wasm, no I/O: the same code runs in the
//! sidecar filter, in the deployer's `check` and in tests.
#![forbid(unsafe_code)]

pub mod compile;
pub mod config;
mod decode;
pub mod engine;
mod index;
mod json;
pub mod normalize;
pub mod pattern;
pub mod spiffe;

pub use compile::{compile, compile_unindexed, CompileError};
pub use config::{MtlsMode, PluginConfig};
pub use engine::{Decision, HeaderValues, Needs, Policy, PolicyName, Request, Verdict};

/// Parses the plugin configuration JSON and compiles it. Errors carry the path of the field at
/// fault, for syntax and unknown fields as much as for values.
pub fn from_json(json: &[u8]) -> Result<Policy, CompileError> {
    compile(&parse_json(json)?)
}

/// Parses the plugin configuration without compiling it. Syntax errors give their line and
/// column; every other refusal names the field at fault.
pub fn parse_json(json: &[u8]) -> Result<PluginConfig, CompileError> {
    let document =
        json::parse(json).map_err(|e| CompileError { path: "(config)".to_string(), message: e.to_string() })?;
    decode::plugin_config(&document)
}

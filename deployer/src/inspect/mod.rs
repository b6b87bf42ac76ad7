//! Reading cluster state, pure: what [`crate::apply`] fetched, judged without a cluster.
//! Is the sidecar there and ready, is a rollout complete by kubectl's rules, did the agent
//! fetch the module, what the filter counted, and the `status` report built from all that.
//! Each reader takes the objects or metrics text as the API server returns them, so the unit
//! tests feed them JSON and text.

pub mod controllers;
pub mod describe;
pub mod enforcement;
pub mod learn;
pub mod listeners;
pub mod mesh;
pub mod metrics;
pub mod ownership;
pub mod peer_authentication;
pub mod pods;
pub mod proxy_log;
pub mod served;
pub mod status;
pub mod sync;

use serde_json::Value;

/// A JSON string at a path of keys, or "".
pub fn str_at<'a>(v: &'a Value, path: &[&str]) -> &'a str {
    path.iter().try_fold(v, |v, k| v.get(k)).and_then(Value::as_str).unwrap_or("")
}

//! Prometheus text from a pod: the filter's counters (the sidecar's Envoy) and the agent's
//! module fetches (istio-agent).

use std::collections::BTreeMap;

use xnat_guard_policy::{CONFIG_DIGEST_METRIC, COUNTERS, COUNTER_NAMES, METRIC_PREFIX};

/// The counters the filter keeps, by their short names; Envoy's stats name each after the
/// filter's [`METRIC_PREFIX`].
pub const FILTER_COUNTERS: [&str; COUNTERS] = COUNTER_NAMES;

/// The agent's count of module fetches, labelled by `result`.
pub const AGENT_FETCH_METRIC: &str = "istio_agent_wasm_remote_fetch_count";

/// Values of a Prometheus metric by one label, summed over the other labels.
pub fn prometheus_values(text: &str, metric: &str, label: &str) -> Vec<(String, u64)> {
    let mut out: BTreeMap<String, u64> = BTreeMap::new();
    for line in text.lines().filter(|l| !l.starts_with('#')) {
        let Some(rest) = line.strip_prefix(metric) else { continue };
        let (labels, value) = match rest.strip_prefix('{') {
            Some(r) => match r.split_once('}') {
                Some((labels, value)) => (labels, value),
                None => continue,
            },
            None if rest.starts_with(' ') => ("", rest),
            None => continue, // another metric with this one's name as prefix
        };
        let key = labels
            .split(',')
            .find_map(|kv| kv.split_once('=').filter(|(k, _)| k.trim() == label).map(|(_, v)| v.trim_matches('"')))
            .unwrap_or("")
            .to_string();
        if let Ok(v) = value.trim().parse::<f64>() {
            *out.entry(key).or_default() += v as u64;
        }
    }
    out.into_iter().collect()
}

/// Every sample in Prometheus text, by metric name, summed over labels (values below zero or
/// not numbers are left out).
pub fn prometheus_samples(text: &str) -> Vec<(String, u64)> {
    let mut out: BTreeMap<String, u64> = BTreeMap::new();
    for line in text.lines().filter(|l| !l.starts_with('#') && !l.trim().is_empty()) {
        let end = line.find(['{', ' ']).unwrap_or(line.len());
        let (name, rest) = line.split_at(end);
        let value = match rest.strip_prefix('{') {
            Some(r) => r.split_once('}').map(|(_, v)| v),
            None => Some(rest),
        };
        // A sample may end with a timestamp: the value is the first field.
        let value = value.and_then(|v| v.split_whitespace().next()).and_then(|v| v.parse::<f64>().ok());
        if let Some(v) = value.filter(|v| *v >= 0.0) {
            *out.entry(name.to_string()).or_default() += v as u64;
        }
    }
    out.into_iter().collect()
}

/// Each of [`FILTER_COUNTERS`] in the sidecar's Prometheus text (0 when absent).
pub fn filter_counters(text: &str) -> BTreeMap<String, u64> {
    FILTER_COUNTERS
        .iter()
        .map(|c| {
            let metric = format!("{METRIC_PREFIX}{c}");
            (c.to_string(), prometheus_values(text, &metric, "").iter().map(|(_, v)| v).sum())
        })
        .collect()
}

/// The configuration the filter says it enforces: its gauge [`CONFIG_DIGEST_METRIC`], set to
/// the `configDigest` of the configuration in force. `None` when absent or 0 (defined, never
/// set: no configuration with a digest has been in force), or when the sidecar shows more than
/// one value (two filter instances disagree).
pub fn enforced_config_digest(text: &str) -> Option<u64> {
    let mut seen: Option<u64> = None;
    for line in text.lines().filter(|l| !l.starts_with('#')) {
        let Some(rest) = line.strip_prefix(CONFIG_DIGEST_METRIC) else { continue };
        let value = match rest.strip_prefix('{') {
            Some(r) => r.split_once('}').map(|(_, v)| v),
            None if rest.starts_with(' ') => Some(rest),
            None => None,
        };
        let Some(value) = value.and_then(|v| v.trim().parse::<f64>().ok()) else { continue };
        let value = value as u64;
        match seen {
            Some(other) if other != value => return None,
            _ => seen = Some(value),
        }
    }
    seen.filter(|v| *v != 0)
}

/// What the module check found for one pod.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum ModuleState {
    /// The agent fetched the module (count of successful fetches).
    Loaded(u64),
    /// The agent reported failed fetches: result label and count.
    FetchFailed(Vec<(String, u64)>),
    /// No fetch recorded yet.
    NotFetched,
    /// The agent's metrics could not be read; why.
    Unknown(String),
}

impl ModuleState {
    /// Judges the agent's Prometheus text. A WasmPlugin that failed to fetch still shows as
    /// synced; these counts do not.
    pub fn from_agent_metrics(text: &str) -> ModuleState {
        let counts = prometheus_values(text, AGENT_FETCH_METRIC, "result");
        let success: u64 = counts.iter().filter(|(r, _)| r == "success").map(|(_, v)| v).sum();
        let failed: Vec<(String, u64)> = counts.into_iter().filter(|(r, v)| r != "success" && *v > 0).collect();
        if !failed.is_empty() {
            ModuleState::FetchFailed(failed)
        } else if success > 0 {
            ModuleState::Loaded(success)
        } else {
            ModuleState::NotFetched
        }
    }
}

impl std::fmt::Display for ModuleState {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        match self {
            ModuleState::Loaded(n) => write!(f, "loaded ({n} successful fetch(es))"),
            ModuleState::FetchFailed(r) => {
                let r: Vec<String> = r.iter().map(|(k, v)| format!("{k}={v}")).collect();
                write!(f, "FETCH FAILED ({})", r.join(", "))
            }
            ModuleState::NotFetched => write!(f, "not fetched yet"),
            ModuleState::Unknown(why) => write!(f, "could not be checked: {why}"),
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn fetch_counts_are_read_by_result() {
        let text = "# TYPE istio_agent_wasm_remote_fetch_count counter\n\
                    istio_agent_wasm_remote_fetch_count{result=\"success\"} 2\n\
                    istio_agent_wasm_remote_fetch_count{result=\"download_failure\"} 0\n\
                    istio_agent_wasm_remote_fetch_count_other{result=\"success\"} 9\n";
        assert_eq!(
            prometheus_values(text, "istio_agent_wasm_remote_fetch_count", "result"),
            vec![("download_failure".to_string(), 0), ("success".to_string(), 2)]
        );
        assert_eq!(ModuleState::from_agent_metrics(text), ModuleState::Loaded(2));
    }

    #[test]
    fn a_failed_fetch_outweighs_earlier_successes() {
        let text = "istio_agent_wasm_remote_fetch_count{result=\"success\"} 1\n\
                    istio_agent_wasm_remote_fetch_count{result=\"checksum_mismatched\"} 3\n";
        let state = ModuleState::from_agent_metrics(text);
        assert_eq!(state, ModuleState::FetchFailed(vec![("checksum_mismatched".into(), 3)]));
        assert_eq!(state.to_string(), "FETCH FAILED (checksum_mismatched=3)");
        assert_eq!(ModuleState::from_agent_metrics(""), ModuleState::NotFetched);
    }

    #[test]
    fn the_enforced_digest_is_the_gauge_once_set_and_only_if_every_instance_agrees() {
        let text = "# TYPE xnat_guard_config_digest gauge\nxnat_guard_config_digest 161\nxnat_guard_allowed 3\n";
        assert_eq!(enforced_config_digest(text), Some(161));
        assert_eq!(enforced_config_digest("xnat_guard_config_digest 0\n"), None, "defined, never set");
        assert_eq!(enforced_config_digest("xnat_guard_allowed 3\n"), None);
        let two = "xnat_guard_config_digest{plugin=\"a\"} 161\nxnat_guard_config_digest{plugin=\"b\"} 162\n";
        assert_eq!(enforced_config_digest(two), None);
        assert_eq!(enforced_config_digest("xnat_guard_config_digest_other 5\n"), None);
    }

    #[test]
    fn filter_counters_sum_over_labels_and_default_to_zero() {
        let text = "# TYPE xnat_guard_allowed counter\nxnat_guard_allowed{a=\"1\"} 40\nxnat_guard_allowed{a=\"2\"} 1\n\
                    xnat_guard_denied_mtls 2\n";
        let counters = filter_counters(text);
        assert_eq!((counters["allowed"], counters["denied_mtls"], counters["audit_matched"]), (41, 2, 0));
        assert_eq!(counters.len(), FILTER_COUNTERS.len());
    }
}

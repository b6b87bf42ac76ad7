//! Is the plan's configuration in force in a pod? What the filter's gauge says, and, when it
//! is not, why: the agent's fetch counts and the sidecar's own log line.

use super::metrics::{enforced_config_digest, ModuleState};

/// One pod, judged against the digest the rollout ships.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum Enforcement {
    /// The filter shows this rollout's digest.
    Enforcing,
    /// The filter shows another configuration's digest (the previous one keeps enforcing).
    Other(u64),
    /// No configuration with a digest is in force yet.
    Nothing,
    /// The sidecar's metrics could not be read: why.
    Unreadable(String),
}

impl Enforcement {
    /// Judges the sidecar's Prometheus text against `digest` (hex, as the plan carries it).
    pub fn judge(sidecar_metrics: &str, digest: u64) -> Enforcement {
        match enforced_config_digest(sidecar_metrics) {
            Some(d) if d == digest => Enforcement::Enforcing,
            Some(d) => Enforcement::Other(d),
            None => Enforcement::Nothing,
        }
    }
}

impl std::fmt::Display for Enforcement {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        match self {
            Enforcement::Enforcing => write!(f, "enforcing this configuration"),
            Enforcement::Other(d) => write!(f, "still enforcing another configuration (digest {d:x})"),
            Enforcement::Nothing => write!(f, "the filter has not reported a configuration"),
            Enforcement::Unreadable(why) => write!(f, "its metrics could not be read: {why}"),
        }
    }
}

/// The digest a plan carries (hex), as the number the gauge shows.
pub fn digest_value(hex: &str) -> Option<u64> {
    u64::from_str_radix(hex, 16).ok()
}

/// Why a pod is not enforcing: the agent's failed fetches if any (a wrong `--sha256` shows as
/// `checksum_mismatched`), else the sidecar's last log line about the filter or wasm that
/// reports a failure, quoted; else what the gauge says.
pub fn diagnose(state: &Enforcement, agent_metrics: Option<&str>, sidecar_log: Option<&str>) -> String {
    let mut why = state.to_string();
    if let Some(ModuleState::FetchFailed(failed)) = agent_metrics.map(ModuleState::from_agent_metrics) {
        let failed: Vec<String> = failed.iter().map(|(r, n)| format!("{r}={n}")).collect();
        why.push_str(&format!(
            "; the agent's module fetches failed ({}): check --sha256 is the digest `deployer push` printed and that the registry is reachable from the pod",
            failed.join(", ")
        ));
    }
    if let Some(line) = sidecar_log.and_then(last_wasm_failure) {
        why.push_str(&format!("; the sidecar logged: {line}"));
    }
    why
}

/// The last line of an istio-proxy log that reports the filter's configuration being refused,
/// or a wasm failure (fetch, checksum, VM start).
pub fn last_wasm_failure(log: &str) -> Option<&str> {
    log.lines().rev().map(str::trim).find(|line| {
        let lower = line.to_ascii_lowercase();
        let about = lower.contains("xnat-guard") || lower.contains("wasm");
        let failure = ["refused", "error", "failed", "mismatch", "critical"].iter().any(|w| lower.contains(w));
        about && failure
    })
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn the_gauge_says_whether_this_configuration_is_in_force() {
        assert_eq!(Enforcement::judge("xnat_guard_config_digest 161\n", 161), Enforcement::Enforcing);
        assert_eq!(Enforcement::judge("xnat_guard_config_digest 160\n", 161), Enforcement::Other(160));
        assert_eq!(Enforcement::judge("xnat_guard_allowed 1\n", 161), Enforcement::Nothing);
        assert_eq!(digest_value("a1"), Some(161));
    }

    #[test]
    fn the_diagnosis_names_a_failed_fetch_and_quotes_the_sidecars_log() {
        let agent = "istio_agent_wasm_remote_fetch_count{result=\"checksum_mismatched\"} 2\n";
        let log = "2026-12-01T10:00:00Z info envoy main starting\n\
                   2026-12-01T10:00:01Z error envoy wasm wasm log xnat-guard: configuration refused: policies[0].spec.rulez: unknown field\n\
                   2026-12-01T10:00:02Z info envoy upstream cds updated\n";
        let why = diagnose(&Enforcement::Nothing, Some(agent), Some(log));
        assert!(why.contains("checksum_mismatched=2") && why.contains("--sha256"), "{why}");
        assert!(
            why.contains(
                "the sidecar logged: 2026-12-01T10:00:01Z error envoy wasm wasm log xnat-guard: configuration refused"
            ),
            "{why}"
        );
        assert_eq!(
            diagnose(&Enforcement::Other(0xa1), None, Some("all fine\n")),
            "still enforcing another configuration (digest a1)"
        );
    }
}

//! `kubectl logs -c istio-proxy`, filtered: the warnings and errors of a sidecar's recent log,
//! those about wasm and the filter first (a module that failed to fetch or a configuration the
//! filter refused is what the rest of the report cannot show). The container interleaves two
//! writers: the agent (`TIME\twarn\tSCOPE\tMESSAGE`) and Envoy
//! (`TIME\twarning\tenvoy SCOPE FILE:LINE\tMESSAGE\tthread=N`); with `--log_as_json` each line
//! is a JSON object with `level` and `msg`.

use serde::Serialize;

/// How many lines of one pod the report keeps.
pub const KEPT_LINES: usize = 12;

#[derive(Debug, Clone, PartialEq, Eq, Serialize)]
pub struct LogLine {
    /// `warning`, `error` or `critical` (the agent's `warn` is shown as `warning`).
    pub level: String,
    /// About wasm or the filter.
    pub wasm: bool,
    pub line: String,
}

/// A pod's sidecar log, judged.
#[derive(Debug, Clone, PartialEq, Eq, Serialize)]
pub struct ProxyLog {
    /// Wasm lines first, then the others, each group in log order; at most [`KEPT_LINES`].
    pub lines: Vec<LogLine>,
    /// Warnings and errors left out to keep the report short.
    pub omitted: usize,
}

/// The warnings and errors in `text` (the log's last lines as the API server returns them).
pub fn judge(text: &str) -> ProxyLog {
    let mut found: Vec<LogLine> = text.lines().filter_map(classify).collect();
    // Stable: each group keeps the log's order.
    found.sort_by_key(|l| !l.wasm);
    let omitted = found.len().saturating_sub(KEPT_LINES);
    found.truncate(KEPT_LINES);
    ProxyLog { lines: found, omitted }
}

fn classify(line: &str) -> Option<LogLine> {
    let line = line.trim_end();
    let level = if line.starts_with('{') {
        serde_json::from_str::<serde_json::Value>(line).ok()?.get("level")?.as_str()?.to_ascii_lowercase()
    } else {
        line.split('\t').nth(1)?.trim().to_ascii_lowercase()
    };
    let level = match level.as_str() {
        "warn" | "warning" => "warning",
        "error" => "error",
        "critical" | "fatal" => "critical",
        _ => return None,
    };
    let lower = line.to_ascii_lowercase();
    let wasm = lower.contains("wasm") || lower.contains("xnat-guard") || lower.contains("xnat_guard");
    Some(LogLine { level: level.into(), wasm, line: line.to_string() })
}

#[cfg(test)]
mod tests {
    use super::*;

    const LOG: &str = "\
2026-12-01T10:00:00.000000Z\tinfo\txdsproxy\tconnected to upstream XDS server: istiod.istio-system.svc:15012
2026-12-01T10:00:01.000000Z\twarn\tdeprecation\tusing deprecated setting
2026-12-01T10:00:02.100000Z\terror\twasm\tfailed to fetch Wasm module oci://registry.example/xnat-guard:0.1.0: module downloaded from oci://registry.example/xnat-guard:0.1.0 has checksum 1111, which does not match: 2222
2026-12-01T10:00:03.000000Z\twarning\tenvoy config external/envoy/source/extensions/config_subscription/grpc/grpc_subscription_impl.cc:130\tgRPC config for type.googleapis.com/envoy.config.core.v3.TypedExtensionConfig rejected: Unable to create Wasm HTTP filter xnat.xnat-guard\tthread=15
2026-12-01T10:00:04.000000Z\tdebug\tenvoy wasm\twasm log: not a warning
{\"level\":\"error\",\"time\":\"2026-12-01T10:00:05Z\",\"scope\":\"sds\",\"msg\":\"failed to warm certificate\"}
";

    #[test]
    fn warnings_and_errors_are_kept_wasm_ones_first_in_log_order() {
        let log = judge(LOG);
        let levels: Vec<(&str, bool)> = log.lines.iter().map(|l| (l.level.as_str(), l.wasm)).collect();
        assert_eq!(levels, [("error", true), ("warning", true), ("warning", false), ("error", false)]);
        assert!(log.lines[0].line.contains("failed to fetch Wasm module"));
        assert!(log.lines[3].line.contains("failed to warm certificate"), "JSON lines are read too");
        assert_eq!(log.omitted, 0);
    }

    #[test]
    fn a_long_log_keeps_the_first_lines_and_counts_the_rest() {
        let many: String = (0..20).map(|i| format!("2026-12-01T10:00:00Z\terror\tads\tpush {i} failed\n")).collect();
        let log = judge(&many);
        assert_eq!((log.lines.len(), log.omitted), (KEPT_LINES, 20 - KEPT_LINES));
        assert!(judge("").lines.is_empty());
    }
}

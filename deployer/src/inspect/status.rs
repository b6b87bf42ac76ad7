//! `status`: the runbook's troubleshooting list in one report, judged from what
//! [`crate::apply::status`] read.

use std::collections::BTreeMap;

use k8s_openapi::api::core::v1::Pod;
use kube::api::DynamicObject;
use serde::Serialize;

use super::metrics::{filter_counters, ModuleState};
use super::pods::{self, Sidecar};
use super::str_at;
use crate::plan::hpa::{findings_table, Finding};

/// What `status` read from the cluster, before it is judged.
#[derive(Debug, Clone)]
pub struct Observed {
    pub namespace: String,
    pub injection_label: Option<String>,
    /// In all namespaces.
    pub peer_authentications: Vec<DynamicObject>,
    /// In all namespaces.
    pub destination_rules: Vec<DynamicObject>,
    /// In the namespace.
    pub wasm_plugins: Vec<DynamicObject>,
    /// The namespace's live pods, in the order listed.
    pub pods: Vec<ObservedPod>,
    pub hpas_at_risk: Vec<Finding>,
}

/// One pod, and what its sidecar's and agent's metrics said.
#[derive(Debug, Clone)]
pub struct ObservedPod {
    pub pod: Pod,
    /// The sidecar's Prometheus text, or why it could not be read; `None` when the pod has no
    /// ready sidecar to ask.
    pub metrics: Option<Result<String, String>>,
    /// The module check, for pods a WasmPlugin selects that have a ready sidecar.
    pub module: Option<ModuleState>,
}

#[derive(Debug, Clone, Serialize)]
pub struct PodStatus {
    pub name: String,
    pub ready: String,
    pub phase: String,
    pub containers: Vec<String>,
    pub sidecar: String,
    /// The filter's counters from the sidecar's Prometheus endpoint (15090)...
    pub counters: BTreeMap<String, u64>,
    /// ...or why they could not be read.
    #[serde(skip_serializing_if = "Option::is_none")]
    pub counters_unavailable: Option<String>,
    /// Whether the module loaded, for pods a WasmPlugin selects.
    pub module: Option<String>,
}

#[derive(Debug, Clone, Serialize)]
pub struct PolicyRow {
    pub namespace: String,
    pub name: String,
    pub mode: String,
}

#[derive(Debug, Clone, Serialize)]
pub struct Status {
    pub namespace: String,
    pub injection_label: Option<String>,
    pub pods: Vec<PodStatus>,
    pub peer_authentications: Vec<PolicyRow>,
    pub destination_rules: Vec<PolicyRow>,
    pub wasm_plugins: Vec<PolicyRow>,
    pub hpas_at_risk: Vec<Finding>,
    pub problems: Vec<String>,
}

/// Whether the metrics of this pod are worth reading: it has a ready sidecar.
pub fn has_ready_sidecar(pod: &Pod) -> bool {
    pods::sidecar(pod).ready()
}

/// Whether a WasmPlugin selects this pod, so its module fetch is worth checking.
pub fn selected_by_a_wasm_plugin(pod: &Pod, wasm_plugins: &[DynamicObject]) -> bool {
    wasm_plugins.iter().any(|o| {
        let sel: BTreeMap<String, String> =
            serde_json::from_value(o.data["spec"]["selector"]["matchLabels"].clone()).unwrap_or_default();
        pods::labels_match(&sel, pod.metadata.labels.as_ref())
    })
}

/// The report: a row per object and pod, and the problems in the order the runbook checks
/// them (injection label, sidecars and modules pod by pod, HPAs, the WasmPlugin).
pub fn report(observed: &Observed) -> Status {
    let namespace = &observed.namespace;
    let mut problems = Vec::new();
    if observed.injection_label.as_deref() != Some("enabled") {
        problems.push(format!(
            "namespace {namespace} lacks istio-injection=enabled: new pods get no sidecar (`deployer rollout {namespace}` sets it)"
        ));
    }
    let mut pods_out = Vec::new();
    for p in &observed.pods {
        let status = pod_status(p);
        if pods::sidecar(&p.pod) == Sidecar::Missing {
            problems.push(format!(
                "pod {} has no istio-proxy: restart it (`deployer rollout {namespace}` does)",
                status.name
            ));
        }
        if let Some(state @ ModuleState::FetchFailed(_)) = &p.module {
            problems.push(format!("pod {}: the module failed to fetch ({state})", status.name));
        }
        pods_out.push(status);
    }
    for f in &observed.hpas_at_risk {
        problems.push(format!(
            "HPA {} scales at {}m per pod instead of {}m: the sidecar's request skews it (`deployer hpa {namespace} --apply`)",
            f.hpa, f.effective_millis, f.intended_millis
        ));
    }
    if observed.wasm_plugins.is_empty() {
        problems
            .push(format!("no WasmPlugin in {namespace}: the filter is not deployed (`deployer rollout {namespace}`)"));
    }
    Status {
        namespace: namespace.clone(),
        injection_label: observed.injection_label.clone(),
        pods: pods_out,
        peer_authentications: observed.peer_authentications.iter().map(peer_authentication_row).collect(),
        destination_rules: observed.destination_rules.iter().map(destination_rule_row).collect(),
        wasm_plugins: observed.wasm_plugins.iter().map(wasm_plugin_row).collect(),
        hpas_at_risk: observed.hpas_at_risk.clone(),
        problems,
    }
}

fn pod_status(p: &ObservedPod) -> PodStatus {
    let sidecar = match pods::sidecar(&p.pod) {
        Sidecar::Missing => "missing",
        Sidecar::Container { ready: true } => "ready",
        Sidecar::NativeInit { ready: true } => "ready (native sidecar)",
        _ => "not ready",
    };
    let (counters, counters_unavailable) = match &p.metrics {
        Some(Ok(text)) => (filter_counters(text), None),
        Some(Err(e)) => (BTreeMap::new(), Some(format!("sidecar metrics unreadable: {e}"))),
        None => (BTreeMap::new(), Some("no ready sidecar".into())),
    };
    PodStatus {
        name: p.pod.metadata.name.clone().unwrap_or_default(),
        ready: pods::ready_column(&p.pod),
        phase: pods::phase(&p.pod).to_string(),
        containers: pods::container_names(&p.pod),
        sidecar: sidecar.into(),
        counters,
        counters_unavailable,
        module: p.module.as_ref().map(ModuleState::to_string),
    }
}

/// The mTLS mode, and each port's where the policy sets one.
fn peer_authentication_row(o: &DynamicObject) -> PolicyRow {
    let mut mode = str_at(&o.data, &["spec", "mtls", "mode"]).to_string();
    if mode.is_empty() {
        mode = "UNSET".into();
    }
    if let Some(ports) = o.data.get("spec").and_then(|s| s.get("portLevelMtls")).and_then(|p| p.as_object()) {
        let ports: Vec<String> = ports
            .iter()
            .map(|(p, m)| format!("{p}:{}", m.get("mode").and_then(|v| v.as_str()).unwrap_or("?")))
            .collect();
        mode = format!("{mode} (ports {})", ports.join(" "));
    }
    row(o, mode)
}

/// The host and the TLS mode clients use for it.
fn destination_rule_row(o: &DynamicObject) -> PolicyRow {
    let host = str_at(&o.data, &["spec", "host"]);
    let tls = str_at(&o.data, &["spec", "trafficPolicy", "tls", "mode"]);
    row(o, format!("{host} tls={}", if tls.is_empty() { "unset" } else { tls }))
}

/// Where the module comes from, and what happens when it cannot be loaded.
fn wasm_plugin_row(o: &DynamicObject) -> PolicyRow {
    let url = str_at(&o.data, &["spec", "url"]);
    let fail = str_at(&o.data, &["spec", "failStrategy"]);
    row(o, format!("{url} {}", if fail.is_empty() { "FAIL_CLOSE" } else { fail }))
}

fn row(o: &DynamicObject, mode: String) -> PolicyRow {
    PolicyRow {
        namespace: o.metadata.namespace.clone().unwrap_or_default(),
        name: o.metadata.name.clone().unwrap_or_default(),
        mode,
    }
}

pub fn status_table(s: &Status) -> String {
    let mut out = format!(
        "Namespace {}: istio-injection={}\n\nPods\n",
        s.namespace,
        s.injection_label.as_deref().unwrap_or("(unset)")
    );
    out.push_str(&format!(
        "  {:<40} {:<6} {:<9} {:<24} {:<44} MODULE\n",
        "NAME", "READY", "STATUS", "SIDECAR", "FILTER COUNTERS"
    ));
    for p in &s.pods {
        let counters = match &p.counters_unavailable {
            None => p.counters.iter().map(|(k, v)| format!("{k}={v}")).collect::<Vec<_>>().join(" "),
            Some(why) => why.clone(),
        };
        out.push_str(&format!(
            "  {:<40} {:<6} {:<9} {:<24} {:<44} {}\n",
            p.name,
            p.ready,
            p.phase,
            p.sidecar,
            counters,
            p.module.as_deref().unwrap_or("-")
        ));
    }
    for (title, rows) in [
        ("PeerAuthentications (all namespaces)", &s.peer_authentications),
        ("DestinationRules (all namespaces)", &s.destination_rules),
        ("WasmPlugins", &s.wasm_plugins),
    ] {
        out.push_str(&format!("\n{title}\n"));
        if rows.is_empty() {
            out.push_str("  (none)\n");
        }
        for r in rows {
            out.push_str(&format!("  {:<16} {:<24} {}\n", r.namespace, r.name, r.mode));
        }
    }
    out.push_str("\nHPAs at risk\n");
    if s.hpas_at_risk.is_empty() {
        out.push_str("  (none)\n");
    } else {
        for line in findings_table(&s.hpas_at_risk).lines() {
            out.push_str(&format!("  {line}\n"));
        }
    }
    out.push_str(&format!("\nProblems: {}\n", if s.problems.is_empty() { "none" } else { "" }));
    for p in &s.problems {
        out.push_str(&format!("  - {p}\n"));
    }
    out
}

#[cfg(test)]
mod tests {
    use super::*;
    use serde_json::json;

    fn object(v: serde_json::Value) -> DynamicObject {
        serde_json::from_value(v).unwrap()
    }

    fn pod(name: &str, sidecar_ready: Option<bool>) -> Pod {
        let mut containers = vec![json!({"name": "xnat-web"})];
        let mut statuses =
            vec![json!({"name": "xnat-web", "ready": true, "restartCount": 0, "image": "", "imageID": ""})];
        if let Some(ready) = sidecar_ready {
            containers.push(json!({"name": "istio-proxy"}));
            statuses
                .push(json!({"name": "istio-proxy", "ready": ready, "restartCount": 0, "image": "", "imageID": ""}));
        }
        serde_json::from_value(json!({
            "metadata": {"name": name, "labels": {"app": "xnat-web"}},
            "spec": {"containers": containers},
            "status": {"phase": "Running", "containerStatuses": statuses}
        }))
        .unwrap()
    }

    fn observed(pods: Vec<ObservedPod>, wasm_plugins: Vec<DynamicObject>) -> Observed {
        Observed {
            namespace: "xnat".into(),
            injection_label: Some("enabled".into()),
            peer_authentications: vec![object(json!({
                "apiVersion": "security.istio.io/v1", "kind": "PeerAuthentication",
                "metadata": {"name": "xnat-guard", "namespace": "xnat"},
                "spec": {"mtls": {"mode": "STRICT"}, "portLevelMtls": {"8080": {"mode": "DISABLE"}}}
            }))],
            destination_rules: vec![object(json!({
                "apiVersion": "networking.istio.io/v1", "kind": "DestinationRule",
                "metadata": {"name": "xnat-guard", "namespace": "xnat"}, "spec": {"host": "web.xnat.svc.cluster.local"}
            }))],
            wasm_plugins,
            pods,
            hpas_at_risk: Vec::new(),
        }
    }

    fn plugin() -> DynamicObject {
        object(json!({
            "apiVersion": "extensions.istio.io/v1alpha1", "kind": "WasmPlugin",
            "metadata": {"name": "xnat-guard", "namespace": "xnat"},
            "spec": {"url": "oci://r/x:1", "selector": {"matchLabels": {"app": "xnat-web"}}}
        }))
    }

    #[test]
    fn rows_say_the_mtls_modes_the_client_tls_and_the_fail_strategy() {
        let s = report(&observed(Vec::new(), vec![plugin()]));
        assert_eq!(s.peer_authentications[0].mode, "STRICT (ports 8080:DISABLE)");
        assert_eq!(s.destination_rules[0].mode, "web.xnat.svc.cluster.local tls=unset");
        assert_eq!(s.wasm_plugins[0].mode, "oci://r/x:1 FAIL_CLOSE");
        assert!(s.problems.is_empty(), "{:?}", s.problems);
    }

    #[test]
    fn problems_come_pod_by_pod_then_the_missing_wasm_plugin() {
        let failed = ModuleState::FetchFailed(vec![("download_failure".into(), 1)]);
        let pods = vec![
            ObservedPod {
                pod: pod("a", Some(true)),
                metrics: Some(Ok("xnat_guard_allowed 3\n".into())),
                module: Some(failed),
            },
            ObservedPod { pod: pod("b", None), metrics: None, module: None },
        ];
        let s = report(&observed(pods, Vec::new()));
        assert_eq!(
            s.problems,
            [
                "pod a: the module failed to fetch (FETCH FAILED (download_failure=1))",
                "pod b has no istio-proxy: restart it (`deployer rollout xnat` does)",
                "no WasmPlugin in xnat: the filter is not deployed (`deployer rollout xnat`)",
            ]
        );
        assert_eq!(s.pods[0].counters["allowed"], 3);
        assert_eq!(s.pods[1].counters_unavailable.as_deref(), Some("no ready sidecar"));
        assert!(status_table(&s).contains("\nProblems: \n  - pod a: the module failed to fetch"));
    }

    #[test]
    fn only_pods_with_a_ready_sidecar_that_a_plugin_selects_are_asked_about_the_module() {
        assert!(has_ready_sidecar(&pod("a", Some(true))));
        assert!(!has_ready_sidecar(&pod("a", Some(false))));
        assert!(selected_by_a_wasm_plugin(&pod("a", Some(true)), &[plugin()]));
        assert!(!selected_by_a_wasm_plugin(&pod("a", Some(true)), &[]));
    }
}

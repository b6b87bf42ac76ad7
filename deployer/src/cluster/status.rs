//! `status`: the runbook's troubleshooting list in one report.

use std::collections::BTreeMap;

use k8s_openapi::api::core::v1::{Namespace, Pod};
use kube::api::{Api, ListParams};
use serde::Serialize;

use super::hpa::{self, Finding};
use super::pods::{self, Sidecar};
use super::rollout::{module_state, prometheus_values, ModuleState};
use super::{api_error, str_at, Cluster, Result};
use crate::plan::{DESTINATION_RULE, PEER_AUTHENTICATION, WASM_PLUGIN};

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

const COUNTERS: [&str; 5] = ["allowed", "denied_policy", "denied_mtls", "dry_run_denied", "audit_matched"];

pub async fn status(cluster: &Cluster, namespace: &str) -> Result<Status> {
    let mut problems = Vec::new();
    let ns_api: Api<Namespace> = Api::all(cluster.client.clone());
    let ns = ns_api.get(namespace).await.map_err(api_error(format!("reading namespace {namespace}")))?;
    let injection_label = ns.metadata.labels.as_ref().and_then(|l| l.get("istio-injection")).cloned();
    if injection_label.as_deref() != Some("enabled") {
        problems.push(format!(
            "namespace {namespace} lacks istio-injection=enabled: new pods get no sidecar (`deployer rollout {namespace}` sets it)"
        ));
    }

    let list_all = |kind| {
        let api = cluster.dynamic_api(kind, None);
        async move { api.list(&ListParams::default()).await }
    };
    let mut peer_authentications = Vec::new();
    for o in
        list_all(&PEER_AUTHENTICATION).await.map_err(api_error("listing PeerAuthentications (security.istio.io)"))?
    {
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
        peer_authentications.push(row(&o.metadata, mode));
    }
    let mut destination_rules = Vec::new();
    for o in list_all(&DESTINATION_RULE).await.map_err(api_error("listing DestinationRules (networking.istio.io)"))? {
        let host = str_at(&o.data, &["spec", "host"]);
        let tls = str_at(&o.data, &["spec", "trafficPolicy", "tls", "mode"]);
        destination_rules.push(row(&o.metadata, format!("{host} tls={}", if tls.is_empty() { "unset" } else { tls })));
    }
    let plugins_api = cluster.dynamic_api(&WASM_PLUGIN, Some(namespace));
    let plugins = plugins_api
        .list(&ListParams::default())
        .await
        .map_err(api_error("listing WasmPlugins (extensions.istio.io)"))?;
    let mut wasm_plugins = Vec::new();
    let mut selectors = Vec::new();
    for o in &plugins.items {
        let url = str_at(&o.data, &["spec", "url"]);
        let fail = str_at(&o.data, &["spec", "failStrategy"]);
        wasm_plugins.push(row(&o.metadata, format!("{url} {}", if fail.is_empty() { "FAIL_CLOSE" } else { fail })));
        let sel: BTreeMap<String, String> =
            serde_json::from_value(o.data["spec"]["selector"]["matchLabels"].clone()).unwrap_or_default();
        selectors.push(sel);
    }

    let pods_api: Api<Pod> = Api::namespaced(cluster.client.clone(), namespace);
    let pod_list =
        pods_api.list(&ListParams::default()).await.map_err(api_error(format!("listing pods in {namespace}")))?;
    let mut pods_out = Vec::new();
    for p in pod_list.items.iter().filter(|p| !pods::is_terminated(p)) {
        let name = p.metadata.name.clone().unwrap_or_default();
        let side = pods::sidecar(p);
        let sidecar = match side {
            Sidecar::Missing => "missing",
            Sidecar::Container { ready: true } => "ready",
            Sidecar::NativeInit { ready: true } => "ready (native sidecar)",
            _ => "not ready",
        };
        if side == Sidecar::Missing {
            problems.push(format!("pod {name} has no istio-proxy: restart it (`deployer rollout {namespace}` does)"));
        }
        let (counters, counters_unavailable) = if side.ready() {
            let path = format!("/api/v1/namespaces/{namespace}/pods/{name}:15090/proxy/stats/prometheus");
            match cluster.get_text(&path).await {
                Ok(text) => (
                    COUNTERS
                        .iter()
                        .map(|c| {
                            let metric = format!("xnat_guard_{c}");
                            (c.to_string(), prometheus_values(&text, &metric, "").iter().map(|(_, v)| v).sum())
                        })
                        .collect(),
                    None,
                ),
                Err(e) => (BTreeMap::new(), Some(format!("sidecar metrics unreadable: {e}"))),
            }
        } else {
            (BTreeMap::new(), Some("no ready sidecar".into()))
        };
        let selected = selectors.iter().any(|sel| pods::labels_match(sel, p.metadata.labels.as_ref()));
        let module = if selected && side.ready() {
            let state = module_state(cluster, namespace, &name).await;
            if matches!(state, ModuleState::FetchFailed(_)) {
                problems.push(format!("pod {name}: the module failed to fetch ({state})"));
            }
            Some(state.to_string())
        } else {
            None
        };
        let mut containers: Vec<String> =
            p.spec.iter().flat_map(|s| s.containers.iter().map(|c| c.name.clone())).collect();
        containers.extend(
            p.spec
                .iter()
                .flat_map(|s| s.init_containers.iter().flatten())
                .filter(|c| c.restart_policy.as_deref() == Some("Always"))
                .map(|c| format!("{} (native sidecar)", c.name)),
        );
        pods_out.push(PodStatus {
            name,
            ready: pods::ready_column(p),
            phase: pods::phase(p).to_string(),
            containers,
            sidecar: sidecar.into(),
            counters,
            counters_unavailable,
            module,
        });
    }
    let hpas_at_risk = hpa::hpa(cluster, namespace, 10, false).await?;
    for f in &hpas_at_risk {
        problems.push(format!(
            "HPA {} scales at {}m per pod instead of {}m: the sidecar's request skews it (`deployer hpa {namespace} --apply`)",
            f.hpa, f.effective_millis, f.intended_millis
        ));
    }
    if wasm_plugins.is_empty() {
        problems
            .push(format!("no WasmPlugin in {namespace}: the filter is not deployed (`deployer rollout {namespace}`)"));
    }
    Ok(Status {
        namespace: namespace.to_string(),
        injection_label,
        pods: pods_out,
        peer_authentications,
        destination_rules,
        wasm_plugins,
        hpas_at_risk,
        problems,
    })
}

fn row(meta: &kube::core::ObjectMeta, mode: String) -> PolicyRow {
    PolicyRow {
        namespace: meta.namespace.clone().unwrap_or_default(),
        name: meta.name.clone().unwrap_or_default(),
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
        for line in hpa::findings_table(&s.hpas_at_risk).lines() {
            out.push_str(&format!("  {line}\n"));
        }
    }
    out.push_str(&format!("\nProblems: {}\n", if s.problems.is_empty() { "none" } else { "" }));
    for p in &s.problems {
        out.push_str(&format!("  - {p}\n"));
    }
    out
}

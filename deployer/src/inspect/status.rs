//! `status`: the runbook's troubleshooting list ("Troubleshooting Istio") in one report, judged
//! from what [`crate::apply::status`] read. Each section stands alone: one the user may not read
//! (a namespace-scoped user gets 403 on istiod's pods or on other namespaces) says which
//! permission it lacks, and the rest still prints.
//!
//! | section | replaces |
//! |---|---|
//! | proxy status, with the extension config (the WasmPlugin's) | `istioctl proxy-status` |
//! | per pod: the policies that apply and which one wins | `istioctl x describe pod` |
//! | per pod: inbound filter chains, TLS mode, authz filters | `istioctl proxy-config listeners`, `istioctl x authz check` |
//! | per pod: the sidecar's warnings and errors, wasm first | `kubectl logs -c istio-proxy` |
//! | PeerAuthentications, DestinationRules, counters, enforced configuration | `kubectl get peerauthentication/destinationrule -A` |

use std::collections::BTreeMap;

use k8s_openapi::api::core::v1::Pod;
use kube::api::DynamicObject;
use serde::Serialize;
use serde_json::Value;

use super::describe::{self, PodDescription};
use super::enforcement::{digest_value, Enforcement};
use super::listeners::{self, InboundListener};
use super::metrics::{filter_counters, ModuleState};
use super::pods::{self, Sidecar};
use super::proxy_log::{self, ProxyLog};
use super::str_at;
use super::sync::{self, ProxySync};
use crate::plan::hpa::{findings_table, Finding};

/// A read, or why it could not be made (for a 403, the permission lacking, from [`lacking`]).
pub type Read<T> = Result<T, String>;

/// The report's sections, as [`Status::unavailable`] and [`PodStatus::unavailable`] name them.
pub mod section {
    pub const NAMESPACE: &str = "namespace";
    pub const PODS: &str = "pods";
    pub const PROXY_STATUS: &str = "proxy-status";
    pub const PEER_AUTHENTICATIONS: &str = "peerauthentications";
    pub const DESTINATION_RULES: &str = "destinationrules";
    pub const AUTHORIZATION_POLICIES: &str = "authorizationpolicies";
    pub const WASM_PLUGINS: &str = "wasmplugins";
    pub const SERVICES: &str = "services";
    pub const HPAS: &str = "hpas";
    pub const COUNTERS: &str = "counters";
    pub const LISTENERS: &str = "listeners";
    pub const LOG: &str = "log";
}

/// What a 403 means, in words a user can act on: the verb and resource RBAC refused, where,
/// and the `kubectl auth can-i` that checks it.
pub fn lacking(verb: &str, resource: &str, namespace: Option<&str>) -> String {
    let (where_, flag) = match namespace {
        Some(ns) => (format!("in namespace {ns}"), format!("-n {ns}")),
        None => ("in all namespaces".to_string(), "-A".to_string()),
    };
    format!(
        "forbidden: needs `{verb} {resource}` {where_} (`kubectl auth can-i {verb} {resource} {flag}`); ask for a role \
         that grants it"
    )
}

/// Why an istiod answered the pod proxy 401, and how to read it instead.
pub fn istiod_refused(istiod: &str, istio_namespace: &str) -> String {
    format!(
        "istiod {istiod} answers its debug endpoints only to localhost or an authenticated client, and the API server's \
         pod proxy is neither (401): re-run without --istiod-pod-proxy (status then forwards each istiod's port with \
         kubectl), or forward it yourself (`kubectl -n {istio_namespace} port-forward pod/{istiod} 15014`) and re-run \
         with --istiod-url http://127.0.0.1:15014"
    )
}

/// What `status` read from the cluster, before it is judged.
#[derive(Debug, Clone)]
pub struct Observed {
    pub namespace: String,
    /// Istio's root namespace, where istiod runs.
    pub root_namespace: String,
    pub injection_label: Read<Option<String>>,
    /// In all namespaces (or, when that is forbidden, the namespace's and the root's).
    pub peer_authentications: Read<Vec<DynamicObject>>,
    /// In all namespaces (or the namespace's).
    pub destination_rules: Read<Vec<DynamicObject>>,
    /// In the namespace.
    pub wasm_plugins: Read<Vec<DynamicObject>>,
    /// In the namespace and the root namespace.
    pub authorization_policies: Read<Vec<DynamicObject>>,
    /// The namespace's Services.
    pub services: Read<Vec<Value>>,
    /// The namespace's live pods, in the order listed.
    pub pods: Read<Vec<ObservedPod>>,
    /// Each istiod pod, and its `/debug/syncz` answer.
    pub syncz: Read<Vec<(String, Read<String>)>>,
    /// Whether `syncz` is every istiod's, so that a proxy missing from it is not connected.
    pub syncz_from_every_istiod: bool,
    pub hpas_at_risk: Read<Vec<Finding>>,
    /// What the reads noted (a list read in fewer namespaces than asked).
    pub notes: Vec<String>,
    /// When the pods' metrics were read (Unix seconds), to say how long ago a record was seen.
    pub read_at: Option<i64>,
}

/// One pod, and what its sidecar, its agent and istiod said about it.
#[derive(Debug, Clone)]
pub struct ObservedPod {
    pub pod: Pod,
    /// The sidecar's Prometheus text, or why it could not be read; `None` when the pod has no
    /// ready sidecar to ask.
    pub metrics: Option<Read<String>>,
    /// The module check, for pods a WasmPlugin selects that have a ready sidecar.
    pub module: Option<ModuleState>,
    /// istiod's config dump for the pod's proxy: which istiod pod, and its answer.
    pub config_dump: Option<(String, Read<String>)>,
    /// The last lines of the istio-proxy container's log.
    pub log: Option<Read<String>>,
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
    /// The configuration the filter enforces (its `xnat_guard_config_digest` gauge) against the
    /// WasmPlugin's `configDigest`, for pods a WasmPlugin with a digest selects.
    pub enforced_config: Option<String>,
    /// Its row of `istioctl proxy-status`, when istiod lists it.
    pub sync: Option<ProxySync>,
    /// `istioctl x describe pod`.
    pub describe: PodDescription,
    /// The inbound listener istiod sends the pod's sidecar.
    pub inbound: Option<InboundListener>,
    /// The istiod pod whose configuration `inbound` is.
    pub inbound_from: Option<String>,
    pub proxy_log: Option<ProxyLog>,
    /// This pod's sections that could not be read, and why.
    pub unavailable: BTreeMap<String, String>,
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
    /// `istioctl proxy-status` for the namespace's proxies.
    pub proxies: Vec<ProxySync>,
    pub pods: Vec<PodStatus>,
    pub peer_authentications: Vec<PolicyRow>,
    pub destination_rules: Vec<PolicyRow>,
    pub wasm_plugins: Vec<PolicyRow>,
    pub hpas_at_risk: Vec<Finding>,
    /// The dry-run AuthorizationPolicies the namespace's WasmPlugins carry (`namespace/name`).
    pub dry_run_policies: Vec<String>,
    /// When the pods' metrics were read (Unix seconds).
    #[serde(skip)]
    pub read_at: Option<i64>,
    /// What the dry-run policies would have denied of the requests the pods allowed, summed
    /// over the pods, most recently seen first.
    pub would_deny: Vec<WouldDeny>,
    /// The sections that could not be read, and why (a permission lacking, istiod unreachable).
    pub unavailable: BTreeMap<String, String>,
    pub notes: Vec<String>,
    pub problems: Vec<String>,
}

/// One request shape (caller, port, method, XNAT route) the pods allowed and a dry-run policy
/// would have denied, from the filter's `xnat_guard_would_deny__...` counter and
/// `xnat_guard_would_deny_at__...` gauge; counted since each sidecar started.
#[derive(Debug, Clone, PartialEq, Eq, Serialize)]
pub struct WouldDeny {
    /// The peer's SPIFFE identity, `plaintext`, or `mtls-without-identity`.
    pub caller: String,
    pub port: Option<u16>,
    pub method: String,
    /// An Istio path template in XNAT's route grammar (identifiers wildcarded).
    pub route: String,
    /// Requests, summed over the pods.
    pub count: u64,
    /// When a pod last counted one (RFC 3339), the latest over the pods; `None` when no pod
    /// exported the time.
    pub last_seen: Option<String>,
    /// The same, in Unix seconds.
    pub last_seen_unix: Option<i64>,
    /// Each pod's share, by pod name.
    pub pods: Vec<PodWouldDeny>,
}

/// One pod's share of a [`WouldDeny`].
#[derive(Debug, Clone, PartialEq, Eq, Serialize)]
pub struct PodWouldDeny {
    pub pod: String,
    pub count: u64,
    pub last_seen: Option<String>,
    pub last_seen_unix: Option<i64>,
}

/// Unix seconds as RFC 3339 (`2026-12-01T10:00:00Z`).
pub fn rfc3339(seconds: i64) -> Option<String> {
    k8s_openapi::jiff::Timestamp::from_second(seconds).ok().map(|t| t.to_string())
}

/// A span of seconds as a user reads it: `45s`, `12m`, `3h20m`, `2d4h`.
pub fn span(seconds: i64) -> String {
    let s = seconds.max(0);
    match s {
        s if s < 60 => format!("{s}s"),
        s if s < 3600 => format!("{}m", s / 60),
        s if s < 86_400 => match (s / 3600, s % 3600 / 60) {
            (h, 0) => format!("{h}h"),
            (h, m) => format!("{h}h{m}m"),
        },
        s => match (s / 86_400, s % 86_400 / 3600) {
            (d, 0) => format!("{d}d"),
            (d, h) => format!("{d}d{h}h"),
        },
    }
}

/// The would-deny records in each pod's Prometheus text (`(pod, text)`), summed over the pods:
/// counts added, the last-seen time the latest. Most recently seen first, then by caller,
/// port, method and route.
pub fn would_deny<'a>(pods: impl IntoIterator<Item = (&'a str, &'a str)>) -> Vec<WouldDeny> {
    use xnat_guard_policy::observe::{parse_metric_name, OwnedTuple, RecordKind};
    let mut by_tuple: BTreeMap<OwnedTuple, WouldDeny> = BTreeMap::new();
    for (pod, text) in pods {
        let sample = crate::observations::Sample::from_prometheus(text);
        for (name, &count) in &sample.counters {
            let Some((RecordKind::WouldDeny, false, tuple)) = parse_metric_name(name) else { continue };
            let at = sample.would_deny_at.get(&tuple).map(|&s| s as i64);
            let entry = by_tuple.entry(tuple.clone()).or_insert_with(|| WouldDeny {
                caller: tuple.caller.clone(),
                port: tuple.port,
                method: tuple.method.clone(),
                route: tuple.route.clone(),
                count: 0,
                last_seen: None,
                last_seen_unix: None,
                pods: Vec::new(),
            });
            entry.count += count;
            entry.last_seen_unix = entry.last_seen_unix.max(at);
            entry.last_seen = entry.last_seen_unix.and_then(rfc3339);
            entry.pods.push(PodWouldDeny {
                pod: pod.to_string(),
                count,
                last_seen: at.and_then(rfc3339),
                last_seen_unix: at,
            });
        }
    }
    let mut out: Vec<WouldDeny> = by_tuple.into_values().collect();
    out.sort_by(|a, b| {
        b.last_seen_unix
            .cmp(&a.last_seen_unix)
            .then_with(|| (&a.caller, a.port, &a.method, &a.route).cmp(&(&b.caller, b.port, &b.method, &b.route)))
    });
    out
}

/// The dry-run AuthorizationPolicies (`namespace/name`) the WasmPlugins' configurations carry.
pub fn dry_run_policies(wasm_plugins: &[DynamicObject]) -> Vec<String> {
    let mut out: Vec<String> = wasm_plugins
        .iter()
        .flat_map(|w| {
            w.data.pointer("/spec/pluginConfig/policies").and_then(Value::as_array).cloned().unwrap_or_default()
        })
        .filter(|p| p.get("dryRun").and_then(Value::as_bool) == Some(true))
        .map(|p| format!("{}/{}", str_at(&p, &["namespace"]), str_at(&p, &["name"])))
        .collect();
    out.sort();
    out.dedup();
    out
}

/// The would-deny records as table lines, each indented by `indent`: caller, port, method,
/// route, count, last seen (and how long before `now`); with `per_pod`, each pod's share
/// below its record.
pub fn would_deny_lines(records: &[WouldDeny], now: Option<i64>, per_pod: bool, indent: &str) -> String {
    let seen = |at: Option<i64>, text: &Option<String>| match (at, text, now) {
        (Some(at), Some(text), Some(now)) => format!("{text} ({} ago)", span(now - at)),
        (_, Some(text), _) => text.clone(),
        _ => "(not exported)".to_string(),
    };
    let width = records.iter().map(|r| r.caller.len()).max().unwrap_or(6).clamp(6, 60);
    let route_width = records.iter().map(|r| r.route.len()).max().unwrap_or(5).clamp(5, 70);
    let mut out = format!(
        "{indent}{:<width$} {:<5} {:<7} {:<route_width$} {:>7} LAST SEEN\n",
        "CALLER", "PORT", "METHOD", "ROUTE", "COUNT"
    );
    for r in records {
        let port = r.port.map(|p| p.to_string()).unwrap_or_else(|| "-".into());
        out.push_str(&format!(
            "{indent}{:<width$} {:<5} {:<7} {:<route_width$} {:>7} {}\n",
            r.caller,
            port,
            r.method,
            r.route,
            r.count,
            seen(r.last_seen_unix, &r.last_seen)
        ));
        if per_pod {
            for p in &r.pods {
                out.push_str(&format!(
                    "{indent}  pod {}: {}, last seen {}\n",
                    p.pod,
                    p.count,
                    seen(p.last_seen_unix, &p.last_seen)
                ));
            }
        }
    }
    out
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

/// The istiod pods worth asking: running, listed in order.
pub fn istiod_pods(listed: &[Pod]) -> Vec<String> {
    listed
        .iter()
        .filter(|p| pods::phase(p) == "Running" && !pods::is_terminated(p))
        .filter_map(|p| p.metadata.name.clone())
        .collect()
}

/// The istiod pod a proxy is connected to, by the syncz answers; else the first that answered,
/// else the first listed (each istiod can render any proxy's configuration).
pub fn istiod_for(pod: &str, namespace: &str, syncz: &[(String, Read<String>)]) -> Option<String> {
    istiod_listing(pod, namespace, syncz)
        .or_else(|| syncz.iter().find(|(_, t)| t.is_ok()).or_else(|| syncz.first()).map(|(istiod, _)| istiod.clone()))
}

/// The istiod pod whose syncz lists the pod's proxy, if any.
pub fn istiod_listing(pod: &str, namespace: &str, syncz: &[(String, Read<String>)]) -> Option<String> {
    let id = sync::proxy_id(pod, namespace);
    syncz
        .iter()
        .find(|(istiod, text)| {
            text.as_ref()
                .ok()
                .and_then(|t| sync::parse_syncz(t, istiod, namespace).ok())
                .is_some_and(|rows| rows.iter().any(|r| r.proxy == id))
        })
        .map(|(istiod, _)| istiod.clone())
}

fn to_values(objects: &[DynamicObject]) -> Vec<Value> {
    objects.iter().filter_map(|o| serde_json::to_value(o).ok()).collect()
}

/// The report: a row per object and pod, and the problems in the order the runbook checks
/// them (injection label, sidecars and modules pod by pod, HPAs, the WasmPlugin).
pub fn report(observed: &Observed) -> Status {
    let namespace = &observed.namespace;
    let mut problems = Vec::new();
    let mut unavailable = BTreeMap::new();
    let mut note_unavailable = |section: &str, r: &Read<_>| {
        if let Err(why) = r {
            unavailable.insert(section.to_string(), why.clone());
        }
    };
    note_unavailable(section::NAMESPACE, &observed.injection_label.clone().map(|_| ()));
    note_unavailable(section::PEER_AUTHENTICATIONS, &observed.peer_authentications.clone().map(|_| ()));
    note_unavailable(section::DESTINATION_RULES, &observed.destination_rules.clone().map(|_| ()));
    note_unavailable(section::WASM_PLUGINS, &observed.wasm_plugins.clone().map(|_| ()));
    note_unavailable(section::AUTHORIZATION_POLICIES, &observed.authorization_policies.clone().map(|_| ()));
    note_unavailable(section::SERVICES, &observed.services.clone().map(|_| ()));
    note_unavailable(section::PODS, &observed.pods.clone().map(|_| ()));
    note_unavailable(section::HPAS, &observed.hpas_at_risk.clone().map(|_| ()));
    let injection_label = observed.injection_label.clone().unwrap_or(None);
    if observed.injection_label.is_ok() && injection_label.as_deref() != Some("enabled") {
        problems.push(format!(
            "namespace {namespace} lacks istio-injection=enabled: new pods get no sidecar (`deployer rollout {namespace}` sets it)"
        ));
    }
    let empty = Vec::new();
    let wasm_plugins = observed.wasm_plugins.as_ref().unwrap_or(&empty);

    // istioctl proxy-status: every istiod's proxies of the namespace.
    let mut proxies: Vec<ProxySync> = Vec::new();
    match &observed.syncz {
        Err(why) => {
            unavailable.insert(section::PROXY_STATUS.into(), why.clone());
        }
        Ok(istiods) if istiods.is_empty() => {
            unavailable.insert(
                section::PROXY_STATUS.into(),
                format!(
                    "no running istiod pod (label app=istiod) in {}: is Istio installed? (`deployer install`)",
                    observed.root_namespace
                ),
            );
        }
        Ok(istiods) => {
            let mut failed = Vec::new();
            for (istiod, text) in istiods {
                match text.as_ref().map_err(String::clone).and_then(|t| sync::parse_syncz(t, istiod, namespace)) {
                    Ok(rows) => proxies.extend(rows),
                    Err(why) => failed.push(format!("istiod {istiod}: {why}")),
                }
            }
            if !failed.is_empty() {
                unavailable.insert(section::PROXY_STATUS.into(), failed.join("; "));
            }
        }
    }
    let syncz_read = observed.syncz_from_every_istiod
        && matches!(&observed.syncz, Ok(v) if !v.is_empty() && v.iter().all(|(_, t)| t.is_ok()));

    let (services, pas, drs, aps, plugins) = (
        observed.services.as_ref().cloned().unwrap_or_default(),
        to_values(observed.peer_authentications.as_ref().unwrap_or(&empty)),
        to_values(observed.destination_rules.as_ref().unwrap_or(&empty)),
        to_values(observed.authorization_policies.as_ref().unwrap_or(&empty)),
        to_values(wasm_plugins),
    );
    let objects = describe::Objects {
        root_namespace: &observed.root_namespace,
        services: &services,
        peer_authentications: &pas,
        destination_rules: &drs,
        authorization_policies: &aps,
        wasm_plugins: &plugins,
    };
    let mut pods_out = Vec::new();
    for p in observed.pods.as_ref().map(Vec::as_slice).unwrap_or_default() {
        let mut status = pod_status(p, &objects, wasm_plugins);
        let name = status.name.clone();
        match pods::sidecar(&p.pod) {
            Sidecar::Missing => problems
                .push(format!("pod {name} has no istio-proxy: restart it (`deployer rollout {namespace}` does)")),
            s if !s.ready() && pods::phase(&p.pod) != "Pending" => problems.push(format!(
                "pod {name}'s istio-proxy is not ready: its log (below) says why; \
                 `kubectl -n {namespace} describe pod {name}` shows its probes"
            )),
            _ => {}
        }
        if let Some(state @ ModuleState::FetchFailed(_)) = &p.module {
            problems.push(format!("pod {name}: the module failed to fetch ({state})"));
        }
        if let Some(e) = status.enforced_config.as_deref().filter(|e| !e.starts_with("enforcing the WasmPlugin")) {
            problems.push(format!("pod {name}: the filter is {e}"));
        }
        if has_ready_sidecar(&p.pod) {
            let id = sync::proxy_id(&name, namespace);
            status.sync = proxies.iter().find(|r| r.proxy == id).cloned();
            // Only a complete syncz says a proxy is missing from it.
            if syncz_read || status.sync.is_some() {
                let selected = selected_by_a_wasm_plugin(&p.pod, wasm_plugins);
                if let Some(problem) = sync::pod_sync_problem(&name, status.sync.as_ref(), selected) {
                    problems.push(problem);
                }
            }
        }
        if let Some(line) =
            status.proxy_log.as_ref().and_then(|l| l.lines.iter().find(|l| l.wasm && l.level != "warning"))
        {
            problems.push(format!("pod {name}'s sidecar logged a wasm error: {}", line.line.replace('\t', "  ")));
        }
        problems.extend(status.describe.notes.iter().map(|n| format!("pod {name}: {n}")));
        pods_out.push(status);
    }
    // Each in its own words: a Helm-rendered HPA's fix is its values, a request-less one has none.
    for f in observed.hpas_at_risk.as_ref().unwrap_or(&Vec::new()) {
        problems.push(f.summary());
    }
    for w in observed.wasm_plugins.as_ref().map(Vec::as_slice).unwrap_or_default() {
        let plugin_config = w.data.pointer("/spec/pluginConfig").unwrap_or(&Value::Null);
        if let Some(problem) = compiled_drift(plugin_config) {
            problems.push(format!("WasmPlugin {}: {problem}", w.metadata.name.as_deref().unwrap_or_default()));
        }
    }
    if observed.wasm_plugins.as_ref().is_ok_and(Vec::is_empty) {
        problems
            .push(format!("no WasmPlugin in {namespace}: the filter is not deployed (`deployer rollout {namespace}`)"));
    }
    let rows = |r: &Read<Vec<DynamicObject>>, f: fn(&DynamicObject) -> PolicyRow| {
        r.as_ref().map(|v| v.iter().map(f).collect()).unwrap_or_default()
    };
    let metrics: Vec<(&str, &str)> = observed
        .pods
        .as_ref()
        .map(Vec::as_slice)
        .unwrap_or_default()
        .iter()
        .filter_map(|p| Some((p.pod.metadata.name.as_deref()?, p.metrics.as_ref()?.as_ref().ok()?.as_str())))
        .collect();
    Status {
        namespace: namespace.clone(),
        injection_label,
        proxies,
        pods: pods_out,
        peer_authentications: rows(&observed.peer_authentications, peer_authentication_row),
        destination_rules: rows(&observed.destination_rules, destination_rule_row),
        wasm_plugins: rows(&observed.wasm_plugins, wasm_plugin_row),
        hpas_at_risk: observed.hpas_at_risk.clone().unwrap_or_default(),
        dry_run_policies: dry_run_policies(wasm_plugins),
        would_deny: would_deny(metrics),
        read_at: observed.read_at,
        unavailable,
        notes: observed.notes.clone(),
        problems,
    }
}

/// The configuration the filter enforces against what the WasmPlugins selecting the pod carry:
/// `None` when no such WasmPlugin has a `configDigest`, or the metrics were not read.
fn enforced_config(pod: &Pod, metrics: Option<&Read<String>>, wasm_plugins: &[DynamicObject]) -> Option<String> {
    let digests: Vec<(String, u64)> = wasm_plugins
        .iter()
        .filter(|w| selected_by_a_wasm_plugin(pod, std::slice::from_ref(w)))
        .filter_map(|w| {
            let hex = w.data.pointer("/spec/pluginConfig/configDigest").and_then(Value::as_str)?;
            Some((w.metadata.name.clone().unwrap_or_default(), digest_value(hex)?))
        })
        .collect();
    let (name, wanted) = digests.first()?.clone();
    let text = metrics?.as_ref().ok()?;
    if let Some((name, d)) = digests.iter().find(|(_, d)| Enforcement::judge(text, *d) == Enforcement::Enforcing) {
        return Some(format!("enforcing the WasmPlugin {name}'s configuration ({d:x})"));
    }
    Some(match Enforcement::judge(text, wanted) {
        Enforcement::Other(d) => format!(
            "enforcing another configuration ({d:x}) than WasmPlugin {name}'s ({wanted:x}): the new one was refused or not \
             fetched yet (see its istio-proxy log below)"
        ),
        other => format!("not enforcing WasmPlugin {name}'s configuration ({wanted:x}): {other}"),
    })
}

fn pod_status(p: &ObservedPod, objects: &describe::Objects, wasm_plugins: &[DynamicObject]) -> PodStatus {
    let sidecar = match pods::sidecar(&p.pod) {
        Sidecar::Missing => "missing",
        Sidecar::Container { ready: true } => "ready",
        Sidecar::NativeInit { ready: true } => "ready (native sidecar)",
        _ => "not ready",
    };
    let mut unavailable = BTreeMap::new();
    let (counters, counters_unavailable) = match &p.metrics {
        Some(Ok(text)) => (filter_counters(text), None),
        Some(Err(e)) => {
            unavailable.insert(section::COUNTERS.to_string(), e.clone());
            (BTreeMap::new(), Some(format!("sidecar metrics unreadable: {e}")))
        }
        None => (BTreeMap::new(), Some("no ready sidecar".into())),
    };
    let (inbound, inbound_from) = match &p.config_dump {
        Some((istiod, Ok(text))) => match listeners::inbound(text) {
            Ok(l) => (Some(l), Some(istiod.clone())),
            Err(why) => {
                unavailable.insert(section::LISTENERS.to_string(), format!("istiod {istiod}: {why}"));
                (None, None)
            }
        },
        Some((istiod, Err(why))) => {
            unavailable.insert(section::LISTENERS.to_string(), format!("istiod {istiod}: {why}"));
            (None, None)
        }
        None => (None, None),
    };
    let proxy_log = match &p.log {
        Some(Ok(text)) => Some(proxy_log::judge(text)),
        Some(Err(why)) => {
            unavailable.insert(section::LOG.to_string(), why.clone());
            None
        }
        None => None,
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
        enforced_config: enforced_config(&p.pod, p.metrics.as_ref(), wasm_plugins),
        sync: None,
        describe: describe::describe(&p.pod, objects),
        inbound,
        inbound_from,
        proxy_log,
        unavailable,
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

/// Whether a WasmPlugin's `compiled` member (what the Wasm filter enforces) still holds the
/// policies beside it: `None` when it does, or when there is no such member to compare.
fn compiled_drift(plugin_config: &Value) -> Option<String> {
    let member = xnat_guard_policy::packed::MEMBER;
    let compiled = plugin_config.get(member)?;
    let bytes = compiled.as_str().and_then(|text| xnat_guard_policy::packed::base64_decode(text.as_bytes()));
    let Some(bytes) = bytes else {
        return Some(format!(
            "its `{member}` member is not base64: the filter refuses it (`deployer rollout` writes it)"
        ));
    };
    if let Err(e) = xnat_guard_policy::packed::decode(&bytes) {
        return Some(format!("the filter refuses its compiled configuration ({e})"));
    }
    let mut source = plugin_config.clone();
    if let Some(members) = source.as_object_mut() {
        members.remove(member);
    }
    let recompiled = match xnat_guard_policy::from_json(source.to_string().as_bytes()) {
        Ok(engine) => xnat_guard_policy::packed::encode(&engine),
        Err(e) => return Some(format!("its policies do not compile ({e}); the filter enforces the `{member}` member")),
    };
    (recompiled != bytes).then(|| {
        format!(
            "its policies were edited after they were compiled: the filter enforces the `{member}` member, not the \
             policies shown (edit the YAML and run `deployer rollout`, which compiles it)"
        )
    })
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

/// The runbook command each section of the report replaces, in the report's order.
pub const SECTIONS: [(&str, &str); 7] = [
    ("Proxy status", "istioctl proxy-status"),
    ("Policies that apply", "istioctl x describe pod POD.NS"),
    ("Inbound listener", "istioctl proxy-config listeners POD.NS"),
    ("Authorization filters", "istioctl x authz check POD.NS"),
    ("istio-proxy log", "kubectl logs pod/POD -c istio-proxy -n NS"),
    ("PeerAuthentications", "kubectl get peerauthentication --all-namespaces"),
    ("DestinationRules", "kubectl get destinationrule --all-namespaces"),
];

fn unavailable_line(out: &mut String, indent: &str, map: &BTreeMap<String, String>, key: &str) -> bool {
    match map.get(key) {
        Some(why) => {
            out.push_str(&format!("{indent}(unavailable: {why})\n"));
            true
        }
        None => false,
    }
}

pub fn status_table(s: &Status) -> String {
    let mut out = format!(
        "Namespace {}: istio-injection={}\n",
        s.namespace,
        match s.unavailable.get(section::NAMESPACE) {
            Some(_) => "(unreadable)",
            None => s.injection_label.as_deref().unwrap_or("(unset)"),
        }
    );
    unavailable_line(&mut out, "  ", &s.unavailable, section::NAMESPACE);
    out.push_str("\nPods\n");
    if !unavailable_line(&mut out, "  ", &s.unavailable, section::PODS) {
        out.push_str(&format!(
            "  {:<28} {:<6} {:<9} {:<12} {:<44} {:<32} CONFIGURATION ENFORCED\n",
            "NAME", "READY", "STATUS", "SIDECAR", "FILTER COUNTERS", "MODULE"
        ));
        for p in &s.pods {
            // Only what counted: `-o json` has every counter.
            let counters = match &p.counters_unavailable {
                None if p.counters.values().all(|v| *v == 0) => "(nothing counted)".to_string(),
                None => p
                    .counters
                    .iter()
                    .filter(|(_, v)| **v != 0)
                    .map(|(k, v)| format!("{k}={v}"))
                    .collect::<Vec<_>>()
                    .join(" "),
                Some(why) => why.clone(),
            };
            out.push_str(&format!(
                "  {:<28} {:<6} {:<9} {:<12} {:<44} {:<32} {}\n",
                p.name,
                p.ready,
                p.phase,
                p.sidecar,
                counters,
                p.module.as_deref().unwrap_or("-"),
                p.enforced_config.as_deref().unwrap_or("-")
            ));
        }
    }

    dry_run_section(&mut out, s);

    out.push_str("\nProxy status (istioctl proxy-status; istiod's /debug/syncz)\n");
    if !unavailable_line(&mut out, "  ", &s.unavailable, section::PROXY_STATUS) || !s.proxies.is_empty() {
        out.push_str(&format!(
            "  {:<34} {:<24} {:<8} {:<8} {:<8} {:<8} {:<8} ECDS (WasmPlugin)\n",
            "PROXY", "ISTIOD", "VERSION", "CDS", "LDS", "EDS", "RDS"
        ));
        for r in &s.proxies {
            out.push_str(&format!(
                "  {:<34} {:<24} {:<8} {:<8} {:<8} {:<8} {:<8} {}\n",
                r.proxy,
                r.istiod,
                r.istio_version,
                r.cds.to_string(),
                r.lds.to_string(),
                r.eds.to_string(),
                r.rds.to_string(),
                r.ecds
            ));
        }
        if s.proxies.is_empty() {
            out.push_str("  (no proxy of this namespace is connected)\n");
        }
    }

    for p in &s.pods {
        pod_sections(&mut out, s, p);
    }

    for (title, key, rows) in [
        (
            "PeerAuthentications (kubectl get peerauthentication --all-namespaces)",
            section::PEER_AUTHENTICATIONS,
            &s.peer_authentications,
        ),
        (
            "DestinationRules (kubectl get destinationrule --all-namespaces)",
            section::DESTINATION_RULES,
            &s.destination_rules,
        ),
        ("WasmPlugins", section::WASM_PLUGINS, &s.wasm_plugins),
    ] {
        out.push_str(&format!("\n{title}\n"));
        if unavailable_line(&mut out, "  ", &s.unavailable, key) {
            continue;
        }
        if rows.is_empty() {
            out.push_str("  (none)\n");
        }
        for r in rows {
            out.push_str(&format!("  {:<16} {:<24} {}\n", r.namespace, r.name, r.mode));
        }
    }
    out.push_str("\nHPAs at risk\n");
    if !unavailable_line(&mut out, "  ", &s.unavailable, section::HPAS) {
        if s.hpas_at_risk.is_empty() {
            out.push_str("  (none)\n");
        } else {
            for line in findings_table(&s.hpas_at_risk).lines() {
                out.push_str(&format!("  {line}\n"));
            }
        }
    }
    if !s.notes.is_empty() {
        out.push_str("\nNotes\n");
        for n in &s.notes {
            out.push_str(&format!("  - {n}\n"));
        }
    }
    out.push_str(&format!("\nProblems: {}\n", if s.problems.is_empty() { "none" } else { "" }));
    for p in &s.problems {
        out.push_str(&format!("  - {p}\n"));
    }
    out
}

/// What the dry-run policies would have denied: left out when no dry-run policy is in force
/// and nothing was recorded.
fn dry_run_section(out: &mut String, s: &Status) {
    if s.dry_run_policies.is_empty() && s.would_deny.is_empty() {
        return;
    }
    let ns = &s.namespace;
    match s.dry_run_policies.as_slice() {
        [] => out.push_str(
            "\nDry-run denials (no dry-run policy is in force now: these were recorded under an earlier \
             configuration, and count until each sidecar restarts)\n",
        ),
        policies => out.push_str(&format!(
            "\nDry-run denials: requests allowed and served that the dry-run policies {} would deny \
             (counted since each sidecar started; `deployer promote {ns} --window DURATION` enforces them once none is recent)\n",
            policies.join(", ")
        )),
    }
    if s.would_deny.is_empty() {
        out.push_str("  no dry-run denials\n");
        return;
    }
    // Each pod's share, where there is more than one filter to share it.
    let filters = s.pods.iter().filter(|p| p.enforced_config.is_some()).count();
    let per_pod = filters > 1 || s.would_deny.iter().any(|r| r.pods.len() > 1);
    out.push_str(&would_deny_lines(&s.would_deny, s.read_at, per_pod, "  "));
}

/// One pod's `describe`, inbound listener and log.
fn pod_sections(out: &mut String, s: &Status, p: &PodStatus) {
    let d = &p.describe;
    out.push_str(&format!("\nPod {} (istioctl x describe pod {}.{})\n", p.name, p.name, s.namespace));
    out.push_str(&format!(
        "  container ports: {}; Services: {}\n",
        if d.container_ports.is_empty() { "(none declared)".to_string() } else { d.container_ports.join(", ") },
        if d.services.is_empty() { "(none select it)".to_string() } else { d.services.join("; ") }
    ));
    out.push_str(&format!("  mTLS the sidecar accepts: {}\n", d.effective_mtls));
    for (kind, key, rows) in [
        ("PeerAuthentication", section::PEER_AUTHENTICATIONS, &d.peer_authentications),
        ("DestinationRule", section::DESTINATION_RULES, &d.destination_rules),
        ("AuthorizationPolicy", section::AUTHORIZATION_POLICIES, &d.authorization_policies),
        ("WasmPlugin", section::WASM_PLUGINS, &d.wasm_plugins),
    ] {
        if let Some(why) = s.unavailable.get(key) {
            out.push_str(&format!("  {kind:<20} (unavailable: {why})\n"));
            continue;
        }
        if rows.is_empty() {
            out.push_str(&format!("  {kind:<20} (none applies)\n"));
        }
        for a in rows {
            out.push_str(&format!(
                "  {kind:<20} {:<28} {:<7} {} [{}]: {}\n",
                a.name,
                match (a.wins, kind) {
                    // Every AuthorizationPolicy and WasmPlugin listed takes part.
                    (true, "AuthorizationPolicy" | "WasmPlugin") => "APPLIES",
                    (true, _) => "WINS",
                    (false, _) => "-",
                },
                a.sets,
                a.scope,
                a.why
            ));
        }
    }
    if p.sidecar == "missing" {
        return;
    }
    match (&p.inbound, p.unavailable.get(section::LISTENERS)) {
        (Some(l), _) => {
            out.push_str(&format!(
                "  Inbound listener (istioctl proxy-config listeners, x authz check): the configuration istiod {} sends\n",
                p.inbound_from.as_deref().unwrap_or("")
            ));
            for port in &l.ports {
                out.push_str(&format!(
                    "    port {:<6} accepts {:<18} authz filters in order: {}\n",
                    port.port,
                    port.accepts,
                    if port.authz_filters.is_empty() { "(none)".to_string() } else { port.authz_filters.join(" -> ") }
                ));
            }
            for c in l.chains.iter().filter(|c| c.port.is_none()) {
                out.push_str(&format!(
                    "    other ports ({}, {}): {}; authz filters: {}\n",
                    c.name,
                    if c.transport.is_empty() { "any transport" } else { &c.transport },
                    c.tls,
                    if c.authz_filters.is_empty() { "(none)".to_string() } else { c.authz_filters.join(" -> ") }
                ));
            }
        }
        (None, Some(why)) => out.push_str(&format!("  Inbound listener (unavailable: {why})\n")),
        (None, None) if s.unavailable.contains_key(section::PROXY_STATUS) => out.push_str(&format!(
            "  Inbound listener (unavailable: istiod could not be asked: {})\n",
            s.unavailable[section::PROXY_STATUS]
        )),
        (None, None) => {}
    }
    match (&p.proxy_log, p.unavailable.get(section::LOG)) {
        (Some(log), _) => {
            out.push_str(&format!(
                "  istio-proxy log (kubectl logs -c istio-proxy): {} warnings and errors, wasm first\n",
                log.lines.len() + log.omitted
            ));
            if log.lines.is_empty() {
                out.push_str("    (none)\n");
            }
            for l in &log.lines {
                out.push_str(&format!("    {}\n", l.line.replace('\t', "  ")));
            }
            if log.omitted > 0 {
                out.push_str(&format!(
                    "    ... {} more (`kubectl logs {} -c istio-proxy -n {}`)\n",
                    log.omitted, p.name, s.namespace
                ));
            }
        }
        (None, Some(why)) => out.push_str(&format!("  istio-proxy log (unavailable: {why})\n")),
        (None, None) => {}
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use serde_json::json;

    #[test]
    fn policies_edited_after_they_were_compiled_are_a_problem() {
        let source = r#"{"policies": [{"name": "xnat-all", "namespace": "xnat",
            "spec": {"rules": [{"to": [{"operation": {"methods": ["GET"]}}]}]}}]}"#;
        let shipped: Value = serde_json::from_str(&crate::local::envoy::with_compiled(source)).unwrap();
        assert_eq!(compiled_drift(&shipped), None, "as the deployer wrote it");
        assert_eq!(compiled_drift(&serde_json::from_str(source).unwrap()), None, "nothing to compare");

        let mut edited = shipped.clone();
        edited["policies"][0]["spec"]["rules"][0]["to"][0]["operation"]["methods"] = json!(["GET", "DELETE"]);
        assert!(compiled_drift(&edited).unwrap().contains("edited after they were compiled"));

        let mut broken = shipped.clone();
        broken["policies"][0]["spec"]["action"] = json!("MAYBE");
        assert!(compiled_drift(&broken).unwrap().contains("do not compile"));

        let mut not_base64 = shipped;
        not_base64["compiled"] = json!("!!!!");
        assert!(compiled_drift(&not_base64).unwrap().contains("not base64"));
    }

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
            "metadata": {"name": name, "namespace": "xnat", "labels": {"app": "xnat-web"}},
            "spec": {"containers": containers},
            "status": {"phase": "Running", "containerStatuses": statuses}
        }))
        .unwrap()
    }

    fn observed(pods: Vec<ObservedPod>, wasm_plugins: Vec<DynamicObject>) -> Observed {
        Observed {
            namespace: "xnat".into(),
            root_namespace: "istio-system".into(),
            injection_label: Ok(Some("enabled".into())),
            peer_authentications: Ok(vec![object(json!({
                "apiVersion": "security.istio.io/v1", "kind": "PeerAuthentication",
                "metadata": {"name": "xnat-guard", "namespace": "xnat"},
                "spec": {"mtls": {"mode": "STRICT"}, "portLevelMtls": {"8080": {"mode": "DISABLE"}}}
            }))]),
            destination_rules: Ok(vec![object(json!({
                "apiVersion": "networking.istio.io/v1", "kind": "DestinationRule",
                "metadata": {"name": "xnat-guard", "namespace": "xnat"}, "spec": {"host": "web.xnat.svc.cluster.local"}
            }))]),
            wasm_plugins: Ok(wasm_plugins),
            authorization_policies: Ok(Vec::new()),
            services: Ok(Vec::new()),
            pods: Ok(pods),
            syncz: Ok(Vec::new()),
            syncz_from_every_istiod: true,
            hpas_at_risk: Ok(Vec::new()),
            notes: Vec::new(),
            read_at: None,
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
    fn an_hpa_at_risk_is_a_problem_in_its_own_words_never_apply_for_a_helm_rendered_or_request_less_one() {
        let finding = |helm: bool, request: bool| crate::plan::hpa::Finding {
            hpa: "xnat-xnat-web".into(),
            namespace: "xnat".into(),
            workload: "StatefulSet xnat-xnat-web".into(),
            app_container: "xnat-web".into(),
            target_percent: 70,
            app_request_millis: if request { 1000 } else { 0 },
            sidecar_request_millis: 100,
            intended_millis: if request { 700 } else { 0 },
            effective_millis: if request { 770 } else { 0 },
            containers_without_cpu_request: if request { vec![] } else { vec!["xnat-web".into()] },
            fix: request.then(|| json!({"type": "ContainerResource"})),
            fix_kind: None,
            helm_release: helm.then(|| crate::plan::hpa::HelmRelease {
                name: "xnat".into(),
                namespace: "xnat".into(),
                chart: None,
            }),
            helm_values: Vec::new(),
            advice: String::new(),
            patched: false,
        };
        let mut o = observed(Vec::new(), vec![plugin()]);
        o.hpas_at_risk = Ok(vec![finding(false, true), finding(true, true), finding(false, false)]);
        let problems = report(&o).problems;
        assert!(problems[0].ends_with("(`deployer hpa xnat --apply`)"), "{problems:?}");
        assert!(
            problems[1].contains("Helm release xnat renders it") && !problems[1].contains("--apply"),
            "{problems:?}"
        );
        assert!(problems[2].contains("cannot scale on CPU utilization") && !problems[2].contains("0m"), "{problems:?}");
    }

    #[test]
    fn problems_come_pod_by_pod_then_the_missing_wasm_plugin() {
        let failed = ModuleState::FetchFailed(vec![("download_failure".into(), 1)]);
        let pods = vec![
            ObservedPod {
                pod: pod("a", Some(true)),
                metrics: Some(Ok("xnat_guard_allowed 3\n".into())),
                module: Some(failed),
                config_dump: None,
                log: None,
            },
            ObservedPod { pod: pod("b", None), metrics: None, module: None, config_dump: None, log: None },
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
    fn the_table_shows_counted_counters_policies_that_all_apply_and_log_lines_without_tabs() {
        let aps = vec![object(json!({
            "apiVersion": "security.istio.io/v1", "kind": "AuthorizationPolicy",
            "metadata": {"name": "xnat-all", "namespace": "xnat"},
            "spec": {"selector": {"matchLabels": {"app": "xnat-web"}}, "rules": [{}]}
        }))];
        let log = "2026-12-01T10:00:00Z\terror\twasm\tfailed to fetch Wasm module\n";
        let pods = vec![ObservedPod {
            pod: pod("a", Some(true)),
            metrics: Some(Ok("xnat_guard_allowed 3\n".into())),
            module: None,
            config_dump: None,
            log: Some(Ok(log.into())),
        }];
        let s = report(&Observed { authorization_policies: Ok(aps), ..observed(pods, vec![plugin()]) });
        let table = status_table(&s);
        assert!(table.contains(" allowed=3 "), "only the counters that counted: {table}");
        assert!(!table.contains("denied_mtls=0"), "{table}");
        assert!(table.contains("AuthorizationPolicy  xnat/xnat-all                APPLIES"), "{table}");
        assert!(table.contains("    2026-12-01T10:00:00Z  error  wasm  failed to fetch Wasm module\n"), "{table}");
    }

    #[test]
    fn a_wasm_error_in_the_sidecars_log_is_a_problem_quoting_it_and_a_warning_is_not() {
        let log = "2026-12-01T10:00:00Z\twarning\tenvoy wasm\twasm log: slow\n\
                   2026-12-01T10:00:01Z\terror\twasm\tfailed to fetch Wasm module oci://r/x:1: 401 Unauthorized\n";
        let pods = vec![ObservedPod {
            pod: pod("a", Some(true)),
            metrics: Some(Ok(String::new())),
            module: None,
            config_dump: None,
            log: Some(Ok(log.into())),
        }];
        let s = report(&observed(pods, vec![plugin()]));
        assert_eq!(
            s.problems,
            ["pod a's sidecar logged a wasm error: 2026-12-01T10:00:01Z  error  wasm  failed to fetch Wasm module oci://r/x:1: 401 Unauthorized"]
        );
    }

    fn dry_run_plugin() -> DynamicObject {
        let mut p = plugin();
        p.data["spec"]["pluginConfig"] = json!({"policies": [
            {"name": "xnat-all", "namespace": "xnat", "dryRun": false, "spec": {}},
            {"name": "xnat-suggested", "namespace": "xnat", "dryRun": true, "spec": {}}]});
        p
    }

    fn would_deny_text(method: &str, count: u64, at: u64) -> String {
        use xnat_guard_policy::observe::{metric_name, time_metric_name, RecordKind, Tuple};
        let t =
            Tuple { caller: b"plaintext", port: Some(8080), method: method.as_bytes(), route: b"/data/projects/{*}" };
        format!(
            "{} {count}\n{} {at}\n",
            metric_name(RecordKind::WouldDeny, &t),
            time_metric_name(RecordKind::WouldDeny, &t)
        )
    }

    fn reporting(name: &str, text: String) -> ObservedPod {
        ObservedPod { pod: pod(name, Some(true)), metrics: Some(Ok(text)), module: None, config_dump: None, log: None }
    }

    #[test]
    fn a_dry_run_policy_in_force_with_nothing_recorded_says_no_dry_run_denials() {
        let s = report(&observed(vec![reporting("a", "xnat_guard_allowed 3\n".into())], vec![dry_run_plugin()]));
        assert_eq!(s.dry_run_policies, ["xnat/xnat-suggested"]);
        assert!(s.would_deny.is_empty());
        let table = status_table(&s);
        assert!(table.contains("dry-run policies xnat/xnat-suggested would deny"), "{table}");
        assert!(table.contains("  no dry-run denials\n"), "{table}");
        // Without a dry-run policy and without records, no section at all.
        let s = report(&observed(vec![reporting("a", String::new())], vec![plugin()]));
        assert!(!status_table(&s).contains("Dry-run denials"));
    }

    #[test]
    fn would_deny_records_are_summed_over_the_pods_latest_first_with_each_pods_share() {
        let pods = vec![
            reporting("a", would_deny_text("DELETE", 2, 1_800_000_000) + &would_deny_text("PUT", 1, 1_800_000_100)),
            reporting("b", would_deny_text("DELETE", 5, 1_800_000_050)),
        ];
        let s = report(&Observed { read_at: Some(1_800_000_160), ..observed(pods, vec![dry_run_plugin()]) });
        let rows: Vec<(&str, u64, Option<i64>, usize)> =
            s.would_deny.iter().map(|r| (r.method.as_str(), r.count, r.last_seen_unix, r.pods.len())).collect();
        assert_eq!(rows, [("PUT", 1, Some(1_800_000_100), 1), ("DELETE", 7, Some(1_800_000_050), 2)]);
        assert_eq!(s.would_deny[1].last_seen.as_deref(), Some("2027-01-15T08:00:50Z"));
        let table = status_table(&s);
        assert!(
            table.contains("plaintext 8080  DELETE  /data/projects/{*}       7 2027-01-15T08:00:50Z (1m ago)"),
            "{table}"
        );
        assert!(table.contains("    pod b: 5, last seen 2027-01-15T08:00:50Z (1m ago)"), "{table}");
        assert!(s.problems.is_empty(), "a would-deny record is not a problem: {:?}", s.problems);
    }

    #[test]
    fn spans_read_as_a_user_writes_them() {
        for (s, text) in
            [(45, "45s"), (600, "10m"), (3600, "1h"), (12_000, "3h20m"), (172_800, "2d"), (187_200, "2d4h")]
        {
            assert_eq!(span(s), text);
        }
    }

    #[test]
    fn only_pods_with_a_ready_sidecar_that_a_plugin_selects_are_asked_about_the_module() {
        assert!(has_ready_sidecar(&pod("a", Some(true))));
        assert!(!has_ready_sidecar(&pod("a", Some(false))));
        assert!(selected_by_a_wasm_plugin(&pod("a", Some(true)), &[plugin()]));
        assert!(!selected_by_a_wasm_plugin(&pod("a", Some(true)), &[]));
    }
}

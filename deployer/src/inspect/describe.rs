//! `istioctl x describe pod`: which PeerAuthentications, DestinationRules,
//! AuthorizationPolicies and WasmPlugins apply to a pod, on which ports, and which one wins.
//!
//! - PeerAuthentication: Istio's precedence (workload selector over namespace-wide over the
//!   root namespace's mesh-wide; among equals the oldest, then the first name), as
//!   [`super::peer_authentication`] judges it for rollout; UNSET inherits the wider mode, and
//!   port-level settings come from the winning workload-level policy, keyed by container port.
//! - DestinationRule: by host, for the Services that select the pod (`NAME.NS.svc.cluster.local`,
//!   or a short host resolved in the rule's namespace, or a `*.` wildcard). A rule in the
//!   Service's namespace applies to every client, one in the root namespace when the Service's
//!   namespace has none, one elsewhere only to clients in its own namespace; among equals the
//!   oldest. `portLevelSettings` is keyed by the Service port.
//! - AuthorizationPolicy: those in the pod's namespace and the root namespace whose selector
//!   matches (none: all workloads there, the root's mesh-wide). All apply; Envoy evaluates
//!   CUSTOM, then DENY, then ALLOW (with any ALLOW, a request must match one).
//! - WasmPlugin: those in the pod's namespace whose selector matches, by phase then priority.

use std::collections::BTreeMap;

use k8s_openapi::api::core::v1::Pod;
use serde::Serialize;
use serde_json::Value;

use super::pods;
use super::str_at;

/// The cluster's objects a pod is described against, as the API server lists them.
#[derive(Debug, Clone, Copy)]
pub struct Objects<'a> {
    pub root_namespace: &'a str,
    /// The Services of the pod's namespace.
    pub services: &'a [Value],
    pub peer_authentications: &'a [Value],
    pub destination_rules: &'a [Value],
    /// Those in the pod's namespace and the root namespace.
    pub authorization_policies: &'a [Value],
    pub wasm_plugins: &'a [Value],
}

#[derive(Debug, Clone, PartialEq, Eq, Serialize)]
pub struct Applied {
    /// `NAMESPACE/NAME`
    pub name: String,
    /// How it reaches the pod: `workload selector`, `namespace-wide`, `mesh-wide`, `host
    /// xnat-xnat-web.xnat.svc.cluster.local`...
    pub scope: String,
    /// What it sets, e.g. `STRICT, port 8080 DISABLE`, `tls ISTIO_MUTUAL, port 8080 DISABLE`.
    pub sets: String,
    /// Whether it is the one Istio applies (every AuthorizationPolicy listed applies).
    pub wins: bool,
    /// Why it wins or not.
    pub why: String,
}

#[derive(Debug, Clone, PartialEq, Eq, Serialize)]
pub struct PodDescription {
    pub pod: String,
    /// The container ports, e.g. `8080 (http)`.
    pub container_ports: Vec<String>,
    /// The Services selecting the pod with their ports, e.g. `xnat-xnat-web 80->8080`.
    pub services: Vec<String>,
    /// The mTLS the pod's sidecar accepts, by PeerAuthentication.
    pub effective_mtls: String,
    pub peer_authentications: Vec<Applied>,
    pub destination_rules: Vec<Applied>,
    pub authorization_policies: Vec<Applied>,
    pub wasm_plugins: Vec<Applied>,
    /// What a reader should look at: a DestinationRule port no Service has...
    pub notes: Vec<String>,
}

pub fn describe(pod: &Pod, o: &Objects) -> PodDescription {
    let name = pod.metadata.name.clone().unwrap_or_default();
    let namespace = pod.metadata.namespace.clone().unwrap_or_default();
    let labels = pod.metadata.labels.clone().unwrap_or_default();
    let container_ports = pod
        .spec
        .iter()
        .flat_map(|s| s.containers.iter())
        .flat_map(|c| c.ports.iter().flatten())
        .map(|p| match &p.name {
            Some(n) => format!("{} ({n})", p.container_port),
            None => p.container_port.to_string(),
        })
        .collect();
    let services: Vec<&Value> = o
        .services
        .iter()
        .filter(|s| {
            let sel = string_map(s.pointer("/spec/selector"));
            !sel.is_empty() && pods::labels_match(&sel, Some(&labels))
        })
        .collect();
    let mut notes = Vec::new();
    let (effective_mtls, peer_authentications) = peer_authentications(&namespace, &labels, o);
    let destination_rules = destination_rules(&namespace, &services, o, &mut notes);
    PodDescription {
        pod: name,
        container_ports,
        services: services.iter().map(|s| service_text(s)).collect(),
        effective_mtls,
        peer_authentications,
        destination_rules,
        authorization_policies: authorization_policies(&namespace, &labels, o),
        wasm_plugins: wasm_plugins(&namespace, &labels, o),
        notes,
    }
}

fn key(v: &Value) -> String {
    format!("{}/{}", str_at(v, &["metadata", "namespace"]), str_at(v, &["metadata", "name"]))
}

/// Oldest first, then by name (Istio's order of configurations).
fn age(v: &Value) -> (String, String) {
    (str_at(v, &["metadata", "creationTimestamp"]).to_string(), str_at(v, &["metadata", "name"]).to_string())
}

fn string_map(v: Option<&Value>) -> BTreeMap<String, String> {
    v.and_then(Value::as_object)
        .map(|m| m.iter().filter_map(|(k, v)| Some((k.clone(), v.as_str()?.to_string()))).collect())
        .unwrap_or_default()
}

/// `Some(true)` when the object's `spec.selector.matchLabels` matches, `Some(false)` when it
/// does not, `None` when it has no selector.
fn selects(v: &Value, labels: &BTreeMap<String, String>) -> Option<bool> {
    let sel = string_map(v.pointer("/spec/selector/matchLabels"));
    (!sel.is_empty()).then(|| pods::labels_match(&sel, Some(labels)))
}

fn service_text(s: &Value) -> String {
    let ports: Vec<String> = s
        .pointer("/spec/ports")
        .and_then(Value::as_array)
        .into_iter()
        .flatten()
        .map(|p| {
            let port = p.get("port").map(|v| v.to_string()).unwrap_or_default();
            match p.get("targetPort") {
                Some(t) if t.to_string().trim_matches('"') != port => {
                    format!("{port}->{}", t.to_string().trim_matches('"'))
                }
                _ => port,
            }
        })
        .collect();
    format!("{} {}", str_at(s, &["metadata", "name"]), ports.join(","))
}

fn mode(setting: Option<&Value>) -> &str {
    setting.and_then(|s| s.get("mode")).and_then(Value::as_str).unwrap_or("UNSET")
}

fn peer_authentications(namespace: &str, labels: &BTreeMap<String, String>, o: &Objects) -> (String, Vec<Applied>) {
    // Narrowest level first.
    let level = |v: &Value| -> Option<(u8, &'static str)> {
        let ns = str_at(v, &["metadata", "namespace"]);
        match (ns == namespace, selects(v, labels)) {
            (true, Some(true)) => Some((0, "workload selector")),
            (true, None) => Some((1, "namespace-wide")),
            (false, None) if ns == o.root_namespace => Some((2, "mesh-wide (root namespace)")),
            _ => None,
        }
    };
    let mut found: Vec<(u8, &'static str, &Value)> =
        o.peer_authentications.iter().filter_map(|v| level(v).map(|(l, s)| (l, s, v))).collect();
    found.sort_by_key(|(l, _, v)| (*l, age(v)));
    let winners: Vec<&Value> =
        (0..3).filter_map(|l| found.iter().find(|(fl, _, _)| *fl == l).map(|(_, _, v)| *v)).collect();
    let is_winner = |v: &Value| winners.iter().any(|w| key(w) == key(v));
    // Mesh, then namespace, then workload: a set mode replaces the wider one.
    let mut effective = "PERMISSIVE".to_string();
    let mut decided_by: Option<String> = None;
    for w in winners.iter().rev() {
        let m = mode(w.pointer("/spec/mtls"));
        if m != "UNSET" {
            effective = m.to_string();
            decided_by = Some(key(w));
        }
    }
    let workload_winner = found.iter().find(|(l, _, _)| *l == 0).map(|(_, _, v)| *v);
    let mut ports: Vec<(String, String)> = workload_winner
        .and_then(|w| w.pointer("/spec/portLevelMtls").and_then(Value::as_object))
        .map(|m| {
            m.iter()
                .map(|(p, s)| {
                    let m = mode(Some(s));
                    (p.clone(), if m == "UNSET" { effective.clone() } else { m.to_string() })
                })
                .collect()
        })
        .unwrap_or_default();
    ports.sort_by_key(|(p, _)| p.parse::<u32>().unwrap_or(u32::MAX));
    let mut effective_text = effective.clone();
    for (p, m) in ports.iter().filter(|(_, m)| *m != effective) {
        effective_text.push_str(&format!(", port {p} {m}"));
    }
    if decided_by.is_none() && winners.is_empty() {
        effective_text.push_str(" (no PeerAuthentication: Istio's default)");
    }
    let applied = found
        .iter()
        .map(|(l, scope, v)| {
            let mut sets = mode(v.pointer("/spec/mtls")).to_string();
            if let Some(m) = v.pointer("/spec/portLevelMtls").and_then(Value::as_object) {
                for (p, s) in m {
                    sets.push_str(&format!(", port {p} {}", mode(Some(s))));
                }
            }
            let wins = is_winner(v);
            let why = if !wins {
                let winner =
                    winners.iter().find(|w| level(w).map(|x| x.0) == Some(*l)).map(|w| key(w)).unwrap_or_default();
                format!("ignored: {winner} is older at the same level, and Istio applies the oldest")
            } else if decided_by.as_deref() == Some(key(v).as_str()) {
                if *l == 0 && !ports.is_empty() {
                    "decides the mode and the ports (the narrowest that sets a mode)".to_string()
                } else {
                    "decides the mode (the narrowest that sets a mode)".to_string()
                }
            } else if *l == 0 && !ports.is_empty() {
                "decides the ports; the mode comes from a wider one".to_string()
            } else {
                "overridden by a narrower one".to_string()
            };
            Applied { name: key(v), scope: scope.to_string(), sets, wins, why }
        })
        .collect();
    (effective_text, applied)
}

/// The hosts a Service answers to, fully qualified.
fn service_host(service: &Value) -> String {
    format!(
        "{}.{}.svc.cluster.local",
        str_at(service, &["metadata", "name"]),
        str_at(service, &["metadata", "namespace"])
    )
}

/// A DestinationRule's host, fully qualified in the rule's namespace when short.
fn rule_host(rule: &Value) -> String {
    let host = str_at(rule, &["spec", "host"]);
    let ns = str_at(rule, &["metadata", "namespace"]);
    if host.starts_with('*') || host.ends_with(".cluster.local") {
        return host.to_string();
    }
    match host.split('.').count() {
        1 => format!("{host}.{ns}.svc.cluster.local"),
        2 => format!("{host}.svc.cluster.local"),
        _ if host.ends_with(".svc") => format!("{host}.cluster.local"),
        _ => host.to_string(),
    }
}

fn host_matches(rule_host: &str, service_host: &str) -> bool {
    match rule_host.strip_prefix('*') {
        Some(suffix) => service_host.ends_with(suffix),
        None => rule_host == service_host,
    }
}

fn destination_rules(namespace: &str, services: &[&Value], o: &Objects, notes: &mut Vec<String>) -> Vec<Applied> {
    let mut out = Vec::new();
    for service in services {
        let host = service_host(service);
        let service_name = str_at(service, &["metadata", "name"]);
        let service_ports: Vec<u64> = service
            .pointer("/spec/ports")
            .and_then(Value::as_array)
            .into_iter()
            .flatten()
            .filter_map(|p| p.get("port").and_then(Value::as_u64))
            .collect();
        let mut rules: Vec<&Value> =
            o.destination_rules.iter().filter(|r| host_matches(&rule_host(r), &host)).collect();
        // Exact host before wildcard, the Service's namespace, then the root, then the rest; oldest first.
        let rank = |r: &Value| {
            let ns = str_at(r, &["metadata", "namespace"]);
            let place = if ns == namespace {
                0
            } else if ns == o.root_namespace {
                1
            } else {
                2
            };
            (rule_host(r).starts_with('*'), place, age(r))
        };
        rules.sort_by_key(|r| rank(r));
        let winner = rules.iter().find(|r| rank(r).1 < 2).map(|r| key(r));
        for r in rules {
            let tls = r
                .pointer("/spec/trafficPolicy/tls/mode")
                .and_then(Value::as_str)
                .unwrap_or("unset (ISTIO_MUTUAL when the server has a sidecar)");
            let mut sets = format!("tls {tls}");
            for s in r.pointer("/spec/trafficPolicy/portLevelSettings").and_then(Value::as_array).into_iter().flatten()
            {
                let port = s.pointer("/port/number").and_then(Value::as_u64).unwrap_or(0);
                let mode = s.pointer("/tls/mode").and_then(Value::as_str).unwrap_or("unset");
                sets.push_str(&format!(", port {port} {mode}"));
                if !service_ports.contains(&port) {
                    notes.push(format!(
                        "DestinationRule {} sets port {port}, which Service {service_name} does not have (its ports: {}): \
                         portLevelSettings is keyed by the Service port, so clients use tls {tls} there",
                        key(r),
                        service_ports.iter().map(u64::to_string).collect::<Vec<_>>().join(", ")
                    ));
                }
            }
            let ns = str_at(r, &["metadata", "namespace"]);
            let wins = winner.as_deref() == Some(key(r).as_str());
            let why = if wins {
                "applies to clients of every namespace without their own rule for the host".to_string()
            } else if rank(r).1 == 2 {
                format!("applies only to clients in namespace {ns}")
            } else {
                format!(
                    "ignored: {} comes first (exact host, the Service's namespace, then the oldest)",
                    winner.clone().unwrap_or_default()
                )
            };
            out.push(Applied { name: key(r), scope: format!("host {host}"), sets, wins, why });
        }
    }
    out
}

fn authorization_policies(namespace: &str, labels: &BTreeMap<String, String>, o: &Objects) -> Vec<Applied> {
    let mut found: Vec<(u8, &Value, &'static str)> = o
        .authorization_policies
        .iter()
        .filter_map(|v| {
            let ns = str_at(v, &["metadata", "namespace"]);
            let scope = match (ns == namespace, ns == o.root_namespace, selects(v, labels)) {
                (_, _, Some(false)) => return None,
                (true, _, Some(true)) => "workload selector",
                (true, _, None) => "namespace-wide",
                (false, true, Some(true)) => "workload selector (root namespace: every namespace)",
                (false, true, None) => "mesh-wide (root namespace)",
                _ => return None,
            };
            let action = str_at(v, &["spec", "action"]);
            let dry_run = v.pointer("/metadata/annotations/istio.io~1dry-run").and_then(Value::as_str) == Some("true");
            let order = match action {
                _ if dry_run => 4,
                "CUSTOM" => 0,
                "DENY" => 1,
                "AUDIT" => 3,
                _ => 2,
            };
            Some((order, v, scope))
        })
        .collect();
    found.sort_by_key(|(order, v, _)| (*order, age(v)));
    let allows = found.iter().filter(|(o, _, _)| *o == 2).count();
    found
        .into_iter()
        .map(|(order, v, scope)| {
            let action = match str_at(v, &["spec", "action"]) {
                "" => "ALLOW",
                a => a,
            };
            let rules = v.pointer("/spec/rules").and_then(Value::as_array).map_or(0, Vec::len);
            let why = match order {
                0 => "evaluated first (CUSTOM)".to_string(),
                1 => "evaluated before any ALLOW: a match is denied".to_string(),
                2 => format!("a request must match one of the {allows} ALLOW policies"),
                3 => "logged only (AUDIT)".to_string(),
                _ => "dry-run (istio.io/dry-run): evaluated and recorded, never enforced".to_string(),
            };
            let sets = if rules == 0 && action == "ALLOW" {
                "ALLOW, no rules: denies every request".to_string()
            } else {
                format!("{action}, {rules} rule{}", if rules == 1 { "" } else { "s" })
            };
            Applied { name: key(v), scope: scope.to_string(), sets, wins: order != 4, why }
        })
        .collect()
}

fn wasm_plugins(namespace: &str, labels: &BTreeMap<String, String>, o: &Objects) -> Vec<Applied> {
    let mut found: Vec<&Value> = o
        .wasm_plugins
        .iter()
        .filter(|v| str_at(v, &["metadata", "namespace"]) == namespace && selects(v, labels) != Some(false))
        .collect();
    let phase_order = |v: &Value| match str_at(v, &["spec", "phase"]) {
        "AUTHN" => 0,
        "AUTHZ" => 1,
        "STATS" => 2,
        _ => 3,
    };
    // Within a phase, the higher priority runs first.
    found.sort_by_key(|v| (phase_order(v), -v.pointer("/spec/priority").and_then(Value::as_i64).unwrap_or(0)));
    found
        .into_iter()
        .map(|v| {
            let phase = match str_at(v, &["spec", "phase"]) {
                "" => "UNSPECIFIED_PHASE (after Istio's filters)",
                p => p,
            };
            let fail = match str_at(v, &["spec", "failStrategy"]) {
                "" => "FAIL_CLOSE",
                f => f,
            };
            let scope = if selects(v, labels).is_some() { "workload selector" } else { "namespace-wide" };
            Applied {
                name: key(v),
                scope: scope.to_string(),
                sets: format!("{} {phase} {fail}", str_at(v, &["spec", "url"])),
                wins: true,
                why: "in the inbound HTTP chain, by phase then priority".to_string(),
            }
        })
        .collect()
}

#[cfg(test)]
mod tests {
    use super::*;
    use serde_json::json;

    fn web_pod() -> Pod {
        serde_json::from_value(json!({
            "metadata": {"name": "xnat-xnat-web-0", "namespace": "xnat",
                         "labels": {"app": "xnat-web", "app.kubernetes.io/name": "xnat-web", "app.kubernetes.io/instance": "xnat"}},
            "spec": {"containers": [{"name": "xnat-web", "ports": [{"name": "http", "containerPort": 8080}]}]}
        }))
        .unwrap()
    }

    fn services() -> Vec<Value> {
        vec![
            json!({"metadata": {"name": "xnat-xnat-web", "namespace": "xnat"},
                   "spec": {"selector": {"app.kubernetes.io/name": "xnat-web", "app.kubernetes.io/instance": "xnat"},
                            "ports": [{"name": "http", "port": 80, "targetPort": 8080}]}}),
            json!({"metadata": {"name": "xnat-postgresql", "namespace": "xnat"},
                   "spec": {"selector": {"app.kubernetes.io/name": "postgresql"}, "ports": [{"port": 5432}]}}),
        ]
    }

    fn pa(ns: &str, name: &str, created: &str, spec: Value) -> Value {
        json!({"metadata": {"name": name, "namespace": ns, "creationTimestamp": created}, "spec": spec})
    }

    fn runbook_pas() -> Vec<Value> {
        vec![
            pa("istio-system", "default", "2021-09-01T00:00:00Z", json!({"mtls": {"mode": "STRICT"}})),
            pa(
                "xnat",
                "default",
                "2021-09-01T00:05:00Z",
                json!({"selector": {"matchLabels": {"app": "xnat-web"}}, "mtls": {"mode": "STRICT"}, "portLevelMtls": {"8080": {"mode": "DISABLE"}}}),
            ),
            pa(
                "xnat",
                "xnat-guard",
                "2026-12-01T00:00:00Z",
                json!({"selector": {"matchLabels": {"app": "xnat-web"}}, "mtls": {"mode": "STRICT"}, "portLevelMtls": {"8080": {"mode": "DISABLE"}}}),
            ),
            pa("other", "default", "2021-09-01T00:00:00Z", json!({"mtls": {"mode": "DISABLE"}})),
        ]
    }

    fn objects<'a>(
        services: &'a [Value],
        pas: &'a [Value],
        drs: &'a [Value],
        aps: &'a [Value],
        wasm: &'a [Value],
    ) -> Objects<'a> {
        Objects {
            root_namespace: "istio-system",
            services,
            peer_authentications: pas,
            destination_rules: drs,
            authorization_policies: aps,
            wasm_plugins: wasm,
        }
    }

    #[test]
    fn the_oldest_workload_peer_authentication_decides_mode_and_ports_over_the_mesh_wide_one() {
        let (svcs, pas) = (services(), runbook_pas());
        let d = describe(&web_pod(), &objects(&svcs, &pas, &[], &[], &[]));
        assert_eq!(d.effective_mtls, "STRICT, port 8080 DISABLE");
        let names: Vec<(&str, bool)> = d.peer_authentications.iter().map(|a| (a.name.as_str(), a.wins)).collect();
        assert_eq!(names, [("xnat/default", true), ("xnat/xnat-guard", false), ("istio-system/default", true)]);
        assert_eq!(d.peer_authentications[0].why, "decides the mode and the ports (the narrowest that sets a mode)");
        assert!(d.peer_authentications[1].why.contains("xnat/default is older"), "{:?}", d.peer_authentications[1]);
        assert_eq!(d.peer_authentications[2].why, "overridden by a narrower one");
        assert_eq!(d.container_ports, ["8080 (http)"]);
        assert_eq!(d.services, ["xnat-xnat-web 80->8080"]);
    }

    /// The rollout's judge ([`super::super::peer_authentication::judge`]) and `describe` apply
    /// the same precedence: for the cluster's policies alone, the judge's note names the mTLS
    /// Istio applies, which must be `describe`'s.
    #[test]
    fn describe_and_the_rollouts_peer_authentication_judge_agree_on_the_mtls_istio_applies() {
        use super::super::peer_authentication::{judge, Workload};
        let workload_labels = BTreeMap::from([("app".to_string(), "xnat-web".to_string())]);
        let selector = json!({"matchLabels": {"app": "xnat-web"}});
        let cases = vec![
            runbook_pas(),
            vec![
                pa("istio-system", "default", "2021-09-01T00:00:00Z", json!({"mtls": {"mode": "STRICT"}})),
                pa("xnat", "ns", "2021-09-01T00:00:00Z", json!({"mtls": {"mode": "PERMISSIVE"}})),
            ],
            vec![
                pa("xnat", "newer", "2024-01-01T00:00:00Z", json!({"selector": selector, "mtls": {"mode": "DISABLE"}})),
                pa(
                    "xnat",
                    "older",
                    "2023-01-01T00:00:00Z",
                    json!({"selector": selector, "portLevelMtls": {"8443": {"mode": "STRICT"}}}),
                ),
                pa("istio-system", "default", "2021-09-01T00:00:00Z", json!({"mtls": {"mode": "PERMISSIVE"}})),
            ],
            vec![
                pa(
                    "istio-system",
                    "selected",
                    "2021-09-01T00:00:00Z",
                    json!({"selector": selector, "mtls": {"mode": "DISABLE"}}),
                ),
                pa("istio-system", "default", "2021-09-02T00:00:00Z", json!({"mtls": {"mode": "STRICT"}})),
            ],
        ];
        let svcs = services();
        for pas in cases {
            let w = Workload { namespace: "xnat", labels: &workload_labels, root_namespace: "istio-system" };
            let note = judge(&pas, &[], &w).notes.join(" ");
            let judged = note.rsplit_once(": ").map(|(_, m)| m.trim_end_matches(')')).unwrap_or_default().to_string();
            let described = describe(&web_pod(), &objects(&svcs, &pas, &[], &[], &[])).effective_mtls;
            assert_eq!(described, judged, "{pas:#?}");
        }
    }

    #[test]
    fn an_unset_workload_mode_inherits_and_no_policy_is_permissive() {
        let svcs = services();
        let pas = vec![
            pa("istio-system", "default", "2021-09-01T00:00:00Z", json!({"mtls": {"mode": "STRICT"}})),
            pa(
                "xnat",
                "web",
                "2021-09-01T00:00:00Z",
                json!({"selector": {"matchLabels": {"app": "xnat-web"}}, "portLevelMtls": {"8080": {"mode": "PERMISSIVE"}}}),
            ),
        ];
        let d = describe(&web_pod(), &objects(&svcs, &pas, &[], &[], &[]));
        assert_eq!(d.effective_mtls, "STRICT, port 8080 PERMISSIVE");
        assert_eq!(d.peer_authentications[0].why, "decides the ports; the mode comes from a wider one");
        let none = describe(&web_pod(), &objects(&svcs, &[], &[], &[], &[]));
        assert_eq!(none.effective_mtls, "PERMISSIVE (no PeerAuthentication: Istio's default)");
    }

    #[test]
    fn destination_rules_match_by_service_host_and_a_container_port_in_port_level_settings_is_noted() {
        let svcs = services();
        let drs = vec![
            json!({"metadata": {"name": "xnat-xnat-web", "namespace": "xnat", "creationTimestamp": "2021-09-01T00:00:00Z"},
                   "spec": {"host": "xnat-xnat-web.xnat.svc.cluster.local", "trafficPolicy": {"tls": {"mode": "ISTIO_MUTUAL"},
                            "portLevelSettings": [{"port": {"number": 8080}, "tls": {"mode": "DISABLE"}}]}}}),
            json!({"metadata": {"name": "xnat-guard", "namespace": "xnat", "creationTimestamp": "2026-12-01T00:00:00Z"},
                   "spec": {"host": "xnat-xnat-web", "trafficPolicy": {"portLevelSettings": [{"port": {"number": 80}, "tls": {"mode": "DISABLE"}}]}}}),
            json!({"metadata": {"name": "web", "namespace": "ohif", "creationTimestamp": "2021-01-01T00:00:00Z"},
                   "spec": {"host": "xnat-xnat-web.xnat.svc.cluster.local"}}),
            json!({"metadata": {"name": "db", "namespace": "xnat"}, "spec": {"host": "xnat-postgresql"}}),
        ];
        let d = describe(&web_pod(), &objects(&svcs, &[], &drs, &[], &[]));
        let rows: Vec<(&str, bool)> = d.destination_rules.iter().map(|a| (a.name.as_str(), a.wins)).collect();
        assert_eq!(rows, [("xnat/xnat-xnat-web", true), ("xnat/xnat-guard", false), ("ohif/web", false)]);
        assert_eq!(d.destination_rules[0].sets, "tls ISTIO_MUTUAL, port 8080 DISABLE");
        assert_eq!(d.destination_rules[0].scope, "host xnat-xnat-web.xnat.svc.cluster.local");
        assert_eq!(d.destination_rules[2].why, "applies only to clients in namespace ohif");
        assert_eq!(d.notes.len(), 1, "{:?}", d.notes);
        assert!(d.notes[0].contains("sets port 8080, which Service xnat-xnat-web does not have (its ports: 80)"));
    }

    #[test]
    fn authorization_policies_of_the_namespace_and_root_apply_in_custom_deny_allow_order() {
        let svcs = services();
        let aps = vec![
            json!({"metadata": {"name": "xnat-all", "namespace": "xnat"},
                   "spec": {"selector": {"matchLabels": {"app": "xnat-web"}}, "rules": [{"to": [{"operation": {"methods": ["GET"]}}]}]}}),
            json!({"metadata": {"name": "deny-metrics", "namespace": "istio-system"}, "spec": {"action": "DENY", "rules": [{}, {}]}}),
            json!({"metadata": {"name": "db-only", "namespace": "xnat"},
                   "spec": {"selector": {"matchLabels": {"app": "postgresql"}}}}),
        ];
        let d = describe(&web_pod(), &objects(&svcs, &[], &[], &aps, &[]));
        let rows: Vec<(&str, &str, &str)> =
            d.authorization_policies.iter().map(|a| (a.name.as_str(), a.scope.as_str(), a.sets.as_str())).collect();
        assert_eq!(
            rows,
            [
                ("istio-system/deny-metrics", "mesh-wide (root namespace)", "DENY, 2 rules"),
                ("xnat/xnat-all", "workload selector", "ALLOW, 1 rule"),
            ]
        );
        assert_eq!(d.authorization_policies[1].why, "a request must match one of the 1 ALLOW policies");
    }

    #[test]
    fn a_dry_run_policy_is_listed_last_and_counted_among_no_allow() {
        let svcs = services();
        let aps = vec![
            json!({"metadata": {"name": "suggested", "namespace": "xnat", "annotations": {"istio.io/dry-run": "true"}},
                   "spec": {"selector": {"matchLabels": {"app": "xnat-web"}}, "rules": [{}]}}),
            json!({"metadata": {"name": "xnat-all", "namespace": "xnat"},
                   "spec": {"selector": {"matchLabels": {"app": "xnat-web"}}, "rules": [{"to": [{"operation": {"methods": ["GET"]}}]}]}}),
        ];
        let d = describe(&web_pod(), &objects(&svcs, &[], &[], &aps, &[]));
        let rows: Vec<(&str, bool, &str)> =
            d.authorization_policies.iter().map(|a| (a.name.as_str(), a.wins, a.why.as_str())).collect();
        assert_eq!(
            rows,
            [
                ("xnat/xnat-all", true, "a request must match one of the 1 ALLOW policies"),
                ("xnat/suggested", false, "dry-run (istio.io/dry-run): evaluated and recorded, never enforced"),
            ]
        );
    }

    #[test]
    fn wasm_plugins_that_select_the_pod_are_listed_by_phase() {
        let svcs = services();
        let wasm = vec![
            json!({"metadata": {"name": "stats", "namespace": "xnat"}, "spec": {"url": "oci://r/s:1", "phase": "STATS"}}),
            json!({"metadata": {"name": "xnat-guard", "namespace": "xnat"},
                   "spec": {"url": "oci://r/x:1", "phase": "AUTHZ", "selector": {"matchLabels": {"app": "xnat-web"}}}}),
            json!({"metadata": {"name": "other", "namespace": "xnat"},
                   "spec": {"url": "oci://r/o:1", "selector": {"matchLabels": {"app": "ohif"}}}}),
        ];
        let d = describe(&web_pod(), &objects(&svcs, &[], &[], &[], &wasm));
        let rows: Vec<(&str, &str)> = d.wasm_plugins.iter().map(|a| (a.name.as_str(), a.sets.as_str())).collect();
        assert_eq!(
            rows,
            [("xnat/xnat-guard", "oci://r/x:1 AUTHZ FAIL_CLOSE"), ("xnat/stats", "oci://r/s:1 STATS FAIL_CLOSE")]
        );
    }
}

//! `status` on the user's cluster (the AIS release and the runbook's objects, `tests/ais`)
//! against the mock API server: every section of the runbook's "Troubleshooting Istio" list,
//! istiod's views read through the pod proxy, and a namespace-scoped user who gets 403 on some
//! reads and still gets the rest of the report.

mod ais;
mod mock_api;

use ais::{NAMESPACE, PODS, SERVICES};
use deployer::apply::status;
use deployer::inspect::status::{section, status_table, Status};
use deployer::inspect::sync::XdsState;
use mock_api::{list, options, run, Step};
use serde_json::{json, Value};

const ISTIOD: &str = "istiod-7f9c8d6b5-k2x8p";
const ISTIOD_PODS: &str = "/api/v1/namespaces/istio-system/pods";
const PEER_AUTHENTICATIONS: &str = "/apis/security.istio.io/v1/peerauthentications";
const DESTINATION_RULES: &str = "/apis/networking.istio.io/v1/destinationrules";
const WASM_PLUGINS: &str = "/apis/extensions.istio.io/v1alpha1/namespaces/xnat/wasmplugins";
const AUTHORIZATION_POLICIES: &str = "/apis/security.istio.io/v1/namespaces/xnat/authorizationpolicies";
const ROOT_AUTHORIZATION_POLICIES: &str = "/apis/security.istio.io/v1/namespaces/istio-system/authorizationpolicies";
const HPAS: &str = "/apis/autoscaling/v2/namespaces/xnat/horizontalpodautoscalers";
/// The digest the WasmPlugin's configuration carries, and the gauge's value for it.
const DIGEST: &str = "1a2b3c4d";
const DIGEST_VALUE: u64 = 0x1a2b3c4d;

/// The runbook's objects of one kind (`peerauthentications`...), as the API server lists them.
fn runbook(kind: &str) -> Vec<Value> {
    ais::runbook_objects().into_iter().filter(|(path, _)| path.contains(&format!("/{kind}/"))).map(|(_, v)| v).collect()
}

/// The rollout's own objects beside the runbook's: its PeerAuthentication (newer, so the
/// runbook's `xnat/default` wins) and its WasmPlugin with the configuration's digest.
fn deployer_peer_authentication() -> Value {
    json!({"apiVersion": "security.istio.io/v1", "kind": "PeerAuthentication",
           "metadata": {"name": "xnat-guard", "namespace": "xnat", "creationTimestamp": "2026-12-01T09:00:00Z"},
           "spec": {"selector": {"matchLabels": {"app": "xnat-web"}}, "mtls": {"mode": "STRICT"},
                    "portLevelMtls": {"8080": {"mode": "DISABLE"}}}})
}

fn wasm_plugin() -> Value {
    json!({"apiVersion": "extensions.istio.io/v1alpha1", "kind": "WasmPlugin",
           "metadata": {"name": "xnat-guard", "namespace": "xnat"},
           "spec": {"url": "oci://registry.example/xnat-guard@sha256:abab", "phase": "AUTHZ", "failStrategy": "FAIL_CLOSE",
                    "selector": {"matchLabels": {"app": "xnat-web"}},
                    "pluginConfig": {"configDigest": DIGEST, "policies": []}}})
}

/// The AIS web pod, declaring its container port as the chart does.
fn web_pod() -> Value {
    let mut pod = ais::web_pod(0, true, true, "web-0");
    pod["spec"]["containers"][0]["ports"] = json!([{"name": "http", "containerPort": 8080, "protocol": "TCP"}]);
    pod
}

fn istiod_pod() -> Value {
    json!({"metadata": {"name": ISTIOD, "namespace": "istio-system", "labels": {"app": "istiod", "istio.io/rev": "default"}},
           "spec": {"containers": [{"name": "discovery"}]},
           "status": {"phase": "Running", "containerStatuses": [{"name": "discovery", "ready": true, "restartCount": 0, "image": "", "imageID": ""}]}})
}

/// istiod 1.28's `/debug/syncz`: the web pod synced except its extension config (`ecds_acked`
/// is what it last acknowledged), PostgreSQL synced without one, a gateway of another namespace.
fn syncz(ecds_acked: &str) -> String {
    json!([
        {"cluster_id": "Kubernetes", "proxy": "xnat-xnat-web-0.xnat", "proxy_type": "sidecar", "istio_version": "1.28.1",
         "cluster_sent": "c7", "cluster_acked": "c7", "listener_sent": "l7", "listener_acked": "l7",
         "route_sent": "r7", "route_acked": "r7", "endpoint_sent": "e7", "endpoint_acked": "e7",
         "extensionconfig_sent": "x7", "extensionconfig_acked": ecds_acked},
        {"cluster_id": "Kubernetes", "proxy": "xnat-postgresql-0.xnat", "proxy_type": "sidecar", "istio_version": "1.28.1",
         "cluster_sent": "c7", "cluster_acked": "c7", "listener_sent": "l7", "listener_acked": "l7",
         "endpoint_sent": "e7", "endpoint_acked": "e7"},
        {"cluster_id": "Kubernetes", "proxy": "istio-ingressgateway-5d8f-abcde.istio-system", "proxy_type": "router",
         "istio_version": "1.28.1", "cluster_sent": "c7", "cluster_acked": "c7"}
    ])
    .to_string()
}

/// istiod's config dump for the web pod under the runbook's policies (STRICT, 8080 DISABLE):
/// port 8080 has only a plaintext HTTP chain, with Envoy's RBAC then the WasmPlugin's filter;
/// every other port is mTLS.
fn web_config_dump() -> String {
    let http_filters = json!([
        {"name": "istio.metadata_exchange", "typedConfig": {"@type": "type.googleapis.com/udpa.type.v1.TypedStruct"}},
        {"name": "envoy.filters.http.rbac", "typedConfig": {"@type": "type.googleapis.com/envoy.extensions.filters.http.rbac.v3.RBAC",
            "rules": {"policies": {"ns[xnat]-policy[xnat-all]-rule[0]": {"permissions": [], "principals": []}}}}},
        {"name": "xnat.xnat-guard", "configDiscovery": {"configSource": {"ads": {}, "initialFetchTimeout": "0s"},
            "typeUrls": ["type.googleapis.com/envoy.extensions.filters.http.wasm.v3.Wasm"]}},
        {"name": "envoy.filters.http.router", "typedConfig": {"@type": "type.googleapis.com/envoy.extensions.filters.http.router.v3.Router"}}
    ]);
    let mtls = json!({"name": "envoy.transport_sockets.tls", "typedConfig": {
        "@type": "type.googleapis.com/envoy.extensions.transport_sockets.tls.v3.DownstreamTlsContext",
        "requireClientCertificate": true}});
    json!({"configs": [
        {"@type": "type.googleapis.com/envoy.admin.v3.BootstrapConfigDump"},
        {"@type": "type.googleapis.com/envoy.admin.v3.ClustersConfigDump", "versionInfo": "2026-12-01T10:00:00Z/21"},
        {"@type": "type.googleapis.com/envoy.admin.v3.ListenersConfigDump", "versionInfo": "2026-12-01T10:00:00Z/21",
         "dynamicListeners": [
            {"name": "virtualOutbound", "activeState": {"listener": {"name": "virtualOutbound"}}},
            {"name": "virtualInbound", "activeState": {"versionInfo": "2026-12-01T10:00:00Z/21", "listener": {
                "@type": "type.googleapis.com/envoy.config.listener.v3.Listener",
                "name": "virtualInbound",
                "address": {"socketAddress": {"address": "0.0.0.0", "portValue": 15006}},
                "filterChains": [
                    {"name": "virtualInbound-blackhole", "filterChainMatch": {"destinationPort": 15006},
                     "filters": [{"name": "istio.stats"}, {"name": "envoy.filters.network.tcp_proxy"}]},
                    {"name": "0.0.0.0_8080", "filterChainMatch": {"destinationPort": 8080, "transportProtocol": "raw_buffer"},
                     "filters": [{"name": "envoy.filters.network.http_connection_manager", "typedConfig": {
                        "@type": "type.googleapis.com/envoy.extensions.filters.network.http_connection_manager.v3.HttpConnectionManager",
                        "statPrefix": "inbound_0.0.0.0_8080", "httpFilters": http_filters}}]},
                    {"name": "virtualInbound", "filterChainMatch": {"transportProtocol": "tls"}, "transportSocket": mtls,
                     "filters": [{"name": "envoy.filters.network.http_connection_manager", "typedConfig": {
                        "@type": "type.googleapis.com/envoy.extensions.filters.network.http_connection_manager.v3.HttpConnectionManager",
                        "statPrefix": "inbound_0.0.0.0_15006", "httpFilters": http_filters}}]}
                ]}}}
         ]},
        {"@type": "type.googleapis.com/envoy.admin.v3.RoutesConfigDump"},
        {"@type": "type.googleapis.com/envoy.admin.v3.SecretsConfigDump"},
        {"@type": "type.googleapis.com/envoy.admin.v3.EcdsConfigDump"}
    ]})
    .to_string()
}

/// The web sidecar's log: the agent's info, a deprecation warning, then Envoy refusing the
/// filter's new configuration.
const WEB_LOG: &str = "\
2026-12-01T10:00:00.000000Z\tinfo\txdsproxy\tconnected to delta upstream XDS server: istiod.istio-system.svc:15012
2026-12-01T10:00:01.000000Z\twarn\tdeprecation\tusing deprecated setting PILOT_ENABLE_HBONE
2026-12-01T10:00:02.000000Z\twarning\tenvoy wasm external/envoy/source/extensions/common/wasm/context.cc:1192\twasm log xnat.xnat-guard: xnat-guard: configuration refused: policies[0].rules[0].to[0].operation.methods[0]: unknown method \"FETCH\"\tthread=21
2026-12-01T10:00:02.100000Z\tinfo\tenvoy main\tenvoy proxy is ready
";

fn filter_metrics(digest: u64) -> String {
    format!(
        "# TYPE xnat_guard_allowed counter\nxnat_guard_allowed 41\nxnat_guard_denied_policy 3\nxnat_guard_denied_mtls 2\n\
         # TYPE xnat_guard_config_digest gauge\nxnat_guard_config_digest {digest}\n"
    )
}

fn pod_proxy(pod: &str, port: u16) -> String {
    format!("{PODS}/{pod}:{port}/proxy/stats/prometheus")
}

fn istiod_debug(endpoint: &str) -> String {
    format!("{ISTIOD_PODS}/{ISTIOD}:15014/proxy/debug/{endpoint}")
}

fn proxy_log(pod: &str) -> Step {
    Step::get(&format!("{PODS}/{pod}/log")).query("container=istio-proxy").query("tailLines=500")
}

/// Everything up to the pods' own reads, for an admin: the namespace, the policy lists, the
/// Services, the pods (web with a sidecar, PostgreSQL with one, a neighbour crash-looping),
/// istiod's pods and its syncz.
fn reads_before_the_pods(ecds_acked: &str) -> Vec<Step> {
    reads_before_the_pods_with(ecds_acked, wasm_plugin())
}

fn reads_before_the_pods_with(ecds_acked: &str, wasm_plugin: Value) -> Vec<Step> {
    let mut pas = runbook("peerauthentications");
    pas.push(deployer_peer_authentication());
    vec![
        Step::get(NAMESPACE).reply(200, ais::namespace(true)),
        Step::get(PEER_AUTHENTICATIONS).reply(200, list(pas)),
        Step::get(DESTINATION_RULES).reply(200, list(runbook("destinationrules"))),
        Step::get(WASM_PLUGINS).reply(200, list(vec![wasm_plugin])),
        Step::get(AUTHORIZATION_POLICIES).reply(200, list(runbook("authorizationpolicies"))),
        Step::get(ROOT_AUTHORIZATION_POLICIES).reply(200, list(vec![])),
        Step::get(SERVICES).reply(200, list(vec![ais::web_service(), ais::headless_service(), ais::dicom_service()])),
        Step::get(PODS).reply(200, list(vec![web_pod(), ais::postgresql_pod(true)])),
        Step::get(ISTIOD_PODS).query("labelSelector=app%3Distiod").reply(200, list(vec![istiod_pod()])),
        Step::get(&istiod_debug("syncz")).reply_text(&syncz(ecds_acked)),
    ]
}

/// PostgreSQL's reads: no WasmPlugin selects it, so no module check.
fn postgresql_reads() -> Vec<Step> {
    vec![
        Step::get(&pod_proxy("xnat-postgresql-0", 15090)).reply_text("# no filter here\n"),
        Step::get(&istiod_debug("config_dump")).query("proxyID=xnat-postgresql-0.xnat").reply_text(&web_config_dump()),
        proxy_log("xnat-postgresql-0").reply_text(""),
    ]
}

fn hpa_reads() -> Vec<Step> {
    vec![
        Step::get("/version").reply(200, json!({"major": "1", "minor": "31", "gitVersion": "v1.31.2", "gitCommit": "", "gitTreeState": "", "buildDate": "", "goVersion": "", "compiler": "", "platform": ""})),
        Step::get(HPAS).reply(200, list(vec![])),
    ]
}

async fn status_of(script: Vec<Step>) -> Status {
    run(script, options(), |cluster| async move { status::status(&cluster, "xnat").await }).await.unwrap()
}

#[tokio::test]
async fn status_covers_the_runbooks_troubleshooting_list_on_the_ais_release() {
    let mut script = reads_before_the_pods("x7");
    script.extend([
        Step::get(&pod_proxy("xnat-xnat-web-0", 15090)).reply_text(&filter_metrics(DIGEST_VALUE)),
        Step::get(&pod_proxy("xnat-xnat-web-0", 15020))
            .reply_text("istio_agent_wasm_remote_fetch_count{result=\"success\"} 1\n"),
        Step::get(&istiod_debug("config_dump")).query("proxyID=xnat-xnat-web-0.xnat").reply_text(&web_config_dump()),
        proxy_log("xnat-xnat-web-0").reply_text(WEB_LOG),
    ]);
    script.extend(postgresql_reads());
    script.extend(hpa_reads());
    let s = status_of(script).await;
    assert!(s.unavailable.is_empty(), "{:?}", s.unavailable);

    // istioctl proxy-status: the namespace's proxies, ECDS included.
    assert_eq!(s.proxies.len(), 2, "{:?}", s.proxies);
    assert_eq!((s.proxies[0].proxy.as_str(), s.proxies[0].istiod.as_str()), ("xnat-xnat-web-0.xnat", ISTIOD));
    assert_eq!((s.proxies[0].lds, s.proxies[0].ecds), (XdsState::Synced, XdsState::Synced));
    assert_eq!(s.proxies[1].ecds, XdsState::NotSent);

    let web = s.pods.iter().find(|p| p.name == "xnat-xnat-web-0").unwrap();
    // istioctl x describe pod: the runbook's workload PeerAuthentication wins over the
    // deployer's newer one, and over the mesh-wide STRICT for the mode.
    let d = &web.describe;
    assert_eq!(d.effective_mtls, "STRICT, port 8080 DISABLE");
    let pas: Vec<(&str, bool)> = d.peer_authentications.iter().map(|a| (a.name.as_str(), a.wins)).collect();
    assert_eq!(pas, [("xnat/default", true), ("xnat/xnat-guard", false), ("istio-system/default", true)]);
    assert_eq!(d.services, ["xnat-xnat-web 80->8080", "xnat-xnat-web-headless 8080", "xnat-xnat-web-dicom-scp 8104"]);
    assert_eq!(d.destination_rules.len(), 1);
    assert!(d.destination_rules[0].wins);
    assert_eq!(d.destination_rules[0].sets, "tls ISTIO_MUTUAL, port 8080 DISABLE");
    assert!(
        d.notes.iter().any(|n| n.contains("sets port 8080, which Service xnat-xnat-web does not have (its ports: 80)")),
        "the runbook's DR keyed by the container port: {:?}",
        d.notes
    );
    assert_eq!(d.authorization_policies[0].name, "xnat/xnat-all");
    assert_eq!(d.wasm_plugins[0].sets, "oci://registry.example/xnat-guard@sha256:abab AUTHZ FAIL_CLOSE");

    // istioctl proxy-config listeners / x authz check, from istiod's config dump.
    let inbound = web.inbound.as_ref().expect("the inbound listener");
    assert_eq!(web.inbound_from.as_deref(), Some(ISTIOD));
    assert_eq!((inbound.ports[0].port, inbound.ports[0].accepts.as_str()), (8080, "plaintext only"));
    assert_eq!(
        inbound.ports[0].authz_filters,
        ["envoy.filters.http.rbac (ALLOW, 1 policy)", "xnat.xnat-guard (WasmPlugin, by ECDS)"]
    );
    let other = inbound.chains.iter().find(|c| c.port.is_none()).unwrap();
    assert_eq!(other.tls, "mTLS");

    // kubectl logs -c istio-proxy: warnings and errors, the filter's first.
    let log = web.proxy_log.as_ref().unwrap();
    assert_eq!(log.lines.len(), 2);
    assert!(log.lines[0].wasm && log.lines[0].line.contains("configuration refused"));
    assert!(log.lines[1].line.contains("deprecated setting"));

    // The counters and the configuration the filter enforces.
    assert_eq!(web.counters["allowed"], 41);
    assert_eq!(web.enforced_config.as_deref(), Some("enforcing the WasmPlugin xnat-guard's configuration (1a2b3c4d)"));
    assert!(web.module.as_deref().unwrap().starts_with("loaded"));
    let pg = s.pods.iter().find(|p| p.name == "xnat-postgresql-0").unwrap();
    assert_eq!(pg.enforced_config, None, "no WasmPlugin selects PostgreSQL");

    assert_eq!(s.problems.len(), 1, "{:?}", s.problems);
    assert!(s.problems[0].starts_with("pod xnat-xnat-web-0: DestinationRule xnat/xnat-xnat-web sets port 8080"));

    let table = status_table(&s);
    for part in [
        "Proxy status (istioctl proxy-status; istiod's /debug/syncz)",
        "xnat-xnat-web-0.xnat",
        "Pod xnat-xnat-web-0 (istioctl x describe pod xnat-xnat-web-0.xnat)",
        "mTLS the sidecar accepts: STRICT, port 8080 DISABLE",
        "the configuration istiod istiod-7f9c8d6b5-k2x8p sends",
        "port 8080   accepts plaintext only",
        "envoy.filters.http.rbac (ALLOW, 1 policy) -> xnat.xnat-guard (WasmPlugin, by ECDS)",
        "istio-proxy log (kubectl logs -c istio-proxy)",
        "configuration refused",
        "allowed=41",
        "enforcing the WasmPlugin xnat-guard's configuration (1a2b3c4d)",
        "PeerAuthentications (kubectl get peerauthentication --all-namespaces)",
    ] {
        assert!(table.contains(part), "{part:?} missing from:\n{table}");
    }
}

#[tokio::test]
async fn a_stale_extension_config_and_another_configuration_in_force_are_problems_naming_the_pod() {
    let mut script = reads_before_the_pods("x6");
    script.extend([
        Step::get(&pod_proxy("xnat-xnat-web-0", 15090)).reply_text(&filter_metrics(0x99)),
        Step::get(&pod_proxy("xnat-xnat-web-0", 15020))
            .reply_text("istio_agent_wasm_remote_fetch_count{result=\"success\"} 1\n"),
        Step::get(&istiod_debug("config_dump")).query("proxyID=xnat-xnat-web-0.xnat").reply_text(&web_config_dump()),
        proxy_log("xnat-xnat-web-0").reply_text(WEB_LOG),
    ]);
    script.extend(postgresql_reads());
    script.extend(hpa_reads());
    let s = status_of(script).await;
    assert_eq!(s.proxies[0].ecds, XdsState::Stale);
    let web = s.pods.iter().find(|p| p.name == "xnat-xnat-web-0").unwrap();
    assert!(web.enforced_config.as_deref().unwrap().starts_with("enforcing another configuration (99)"));
    let problems = s.problems.join("\n");
    assert!(problems.contains("pod xnat-xnat-web-0: the filter is enforcing another configuration (99) than WasmPlugin xnat-guard's (1a2b3c4d)"), "{problems}");
    assert!(
        problems.contains("pod xnat-xnat-web-0: ECDS from istiod istiod-7f9c8d6b5-k2x8p not acknowledged (STALE)"),
        "{problems}"
    );
}

/// The Wasm filter enforces the WasmPlugin's `compiled` member; policies edited by hand beside
/// it change nothing in force, and status says so.
#[tokio::test]
async fn policies_edited_by_hand_in_the_wasm_plugin_are_a_problem_naming_it() {
    let source = json!({"configDigest": DIGEST, "policies": [{"name": "xnat-all", "namespace": "xnat",
        "spec": {"rules": [{"to": [{"operation": {"methods": ["GET"]}}]}]}}]});
    let shipped: Value = serde_json::from_str(&deployer::local::envoy::with_compiled(&source.to_string())).unwrap();
    assert!(shipped["compiled"].is_string(), "the deployer's form carries the compiled engine");
    let mut edited = wasm_plugin();
    edited["spec"]["pluginConfig"] = shipped;
    edited["spec"]["pluginConfig"]["policies"][0]["spec"]["rules"][0]["to"][0]["operation"]["methods"] =
        json!(["GET", "DELETE"]);
    let mut script = reads_before_the_pods_with("x7", edited);
    script.extend([
        Step::get(&pod_proxy("xnat-xnat-web-0", 15090)).reply_text(&filter_metrics(DIGEST_VALUE)),
        Step::get(&pod_proxy("xnat-xnat-web-0", 15020))
            .reply_text("istio_agent_wasm_remote_fetch_count{result=\"success\"} 1\n"),
        Step::get(&istiod_debug("config_dump")).query("proxyID=xnat-xnat-web-0.xnat").reply_text(&web_config_dump()),
        proxy_log("xnat-xnat-web-0").reply_text(WEB_LOG),
    ]);
    script.extend(postgresql_reads());
    script.extend(hpa_reads());
    let problems = status_of(script).await.problems.join("\n");
    assert!(
        problems.contains("WasmPlugin xnat-guard: its policies were edited after they were compiled: the filter enforces the `compiled` member"),
        "{problems}"
    );
}

#[tokio::test]
async fn a_namespace_scoped_user_gets_every_section_it_may_read_and_the_permission_each_other_lacks() {
    let script = vec![
        Step::get(NAMESPACE).forbidden("get", "namespaces", "", "xnat"),
        // Not in all namespaces: then in xnat (allowed) and the root (refused).
        Step::get(PEER_AUTHENTICATIONS).forbidden("list", "peerauthentications", "security.istio.io", ""),
        Step::get("/apis/security.istio.io/v1/namespaces/xnat/peerauthentications")
            .reply(200, list(vec![runbook("peerauthentications")[1].clone()])),
        Step::get("/apis/security.istio.io/v1/namespaces/istio-system/peerauthentications")
            .forbidden("list", "peerauthentications", "security.istio.io", ""),
        Step::get(DESTINATION_RULES).forbidden("list", "destinationrules", "networking.istio.io", ""),
        Step::get("/apis/networking.istio.io/v1/namespaces/xnat/destinationrules")
            .reply(200, list(runbook("destinationrules"))),
        Step::get(WASM_PLUGINS).reply(200, list(vec![wasm_plugin()])),
        Step::get(AUTHORIZATION_POLICIES).reply(200, list(runbook("authorizationpolicies"))),
        Step::get(ROOT_AUTHORIZATION_POLICIES).forbidden("list", "authorizationpolicies", "security.istio.io", ""),
        Step::get(SERVICES).reply(200, list(vec![ais::web_service()])),
        Step::get(PODS).reply(200, list(vec![web_pod()])),
        Step::get(ISTIOD_PODS).forbidden("list", "pods", "", ""),
        Step::get(&pod_proxy("xnat-xnat-web-0", 15090)).reply_text(&filter_metrics(DIGEST_VALUE)),
        Step::get(&pod_proxy("xnat-xnat-web-0", 15020))
            .reply_text("istio_agent_wasm_remote_fetch_count{result=\"success\"} 1\n"),
        proxy_log("xnat-xnat-web-0").forbidden("get", "pods/log", "", "xnat-xnat-web-0"),
        Step::get("/version").reply(200, json!({"major": "1", "minor": "31", "gitVersion": "v1.31.2", "gitCommit": "", "gitTreeState": "", "buildDate": "", "goVersion": "", "compiler": "", "platform": ""})),
        Step::get(HPAS).forbidden("list", "horizontalpodautoscalers", "autoscaling", ""),
    ];
    let s = status_of(script).await;
    let lacks = |key: &str| s.unavailable.get(key).cloned().unwrap_or_default();
    assert!(lacks(section::NAMESPACE).contains("needs `get namespaces` in all namespaces"), "{:?}", s.unavailable);
    assert!(
        lacks(section::PROXY_STATUS)
            .contains("needs `list pods` in namespace istio-system (`kubectl auth can-i list pods -n istio-system`)"),
        "{:?}",
        s.unavailable
    );
    assert!(lacks(section::HPAS).contains("needs `list horizontalpodautoscalers.autoscaling` in namespace xnat"));
    assert!(!s.unavailable.contains_key(section::PEER_AUTHENTICATIONS), "read in xnat instead");
    let notes = s.notes.join("\n");
    assert!(notes.contains("PeerAuthentications listed in xnat only"), "{notes}");
    assert!(notes.contains("DestinationRules listed in xnat only"), "{notes}");
    assert!(notes.contains("AuthorizationPolicies of the root namespace istio-system not read"), "{notes}");

    // What the user may read is all there.
    let web = &s.pods[0];
    assert_eq!(web.counters["allowed"], 41);
    assert_eq!(web.describe.effective_mtls, "STRICT, port 8080 DISABLE");
    assert!(web.describe.destination_rules[0].wins);
    assert!(web.enforced_config.as_deref().unwrap().starts_with("enforcing the WasmPlugin"));
    assert!(web.unavailable[section::LOG].contains("needs `get pods/log` in namespace xnat"));
    assert!(web.inbound.is_none());
    // A proxy missing from a syncz that could not be read is not a problem.
    assert!(!s.problems.iter().any(|p| p.contains("not connected to istiod")), "{:?}", s.problems);

    let table = status_table(&s);
    for part in [
        "istio-injection=(unreadable)",
        "Proxy status (istioctl proxy-status; istiod's /debug/syncz)\n  (unavailable: forbidden: needs `list pods` in namespace istio-system",
        "Inbound listener (unavailable: istiod could not be asked",
        "istio-proxy log (unavailable: forbidden: needs `get pods/log` in namespace xnat",
        "HPAs at risk\n  (unavailable: forbidden",
        "allowed=41",
    ] {
        assert!(table.contains(part), "{part:?} missing from:\n{table}");
    }
}

#[test]
fn status_help_names_the_runbook_command_each_section_replaces() {
    let out = std::process::Command::new(env!("CARGO_BIN_EXE_deployer"))
        .args(["status", "--help"])
        .output()
        .expect("the deployer runs");
    let help = String::from_utf8_lossy(&out.stdout);
    for command in [
        "istioctl proxy-status",
        "istioctl x describe pod POD.NS",
        "istioctl proxy-config listeners POD.NS",
        "istioctl x authz check POD.NS",
        "kubectl logs pod/POD -c istio-proxy -n NS",
        "kubectl get peerauthentication|destinationrule --all-namespaces",
        "xnat_guard_config_digest",
    ] {
        assert!(help.contains(command), "{command:?} missing from:\n{help}");
    }
}

/// istiod answers its debug endpoints only to localhost or an authenticated client; through the
/// API server's pod proxy it is neither (the API server keeps the user's token), so istiod
/// answers 401 with an empty body.
fn istiod_refuses(step: Step) -> Step {
    step.reply(401, json!(null)).reply_text("")
}

#[tokio::test]
async fn istiod_refusing_the_pod_proxy_leaves_out_its_views_saying_how_to_reach_it() {
    let mut script = reads_before_the_pods("x7");
    script.pop();
    script.push(istiod_refuses(Step::get(&istiod_debug("syncz"))));
    script.extend([
        Step::get(&pod_proxy("xnat-xnat-web-0", 15090)).reply_text(&filter_metrics(DIGEST_VALUE)),
        Step::get(&pod_proxy("xnat-xnat-web-0", 15020))
            .reply_text("istio_agent_wasm_remote_fetch_count{result=\"success\"} 1\n"),
        // No config_dump request: the istiod that refused syncz would refuse it too.
        proxy_log("xnat-xnat-web-0").reply_text(WEB_LOG),
        Step::get(&pod_proxy("xnat-postgresql-0", 15090)).reply_text("# no filter here\n"),
        proxy_log("xnat-postgresql-0").reply_text(""),
    ]);
    script.extend(hpa_reads());
    let s = status_of(script).await;
    let why = &s.unavailable[section::PROXY_STATUS];
    assert!(
        why.contains("answers its debug endpoints only to localhost or an authenticated client")
            && why.contains("kubectl -n istio-system port-forward pod/istiod-7f9c8d6b5-k2x8p 15014")
            && why.contains("--istiod-url http://127.0.0.1:15014"),
        "{why}"
    );
    assert!(!s.problems.iter().any(|p| p.contains("not connected to istiod")), "{:?}", s.problems);
    let web = s.pods.iter().find(|p| p.name == "xnat-xnat-web-0").unwrap();
    assert!(web.inbound.is_none());
    assert!(status_table(&s).contains("Inbound listener (unavailable: istiod could not be asked"));
    assert_eq!(web.counters["allowed"], 41, "the rest of the report is there");
}

/// A stand-in for istiod behind `kubectl port-forward`: answers each request on a loopback
/// port with the text for its path (query included), 404 otherwise; returns the base URL and
/// the requests it served.
fn forwarded_istiod(answers: Vec<(String, String)>) -> (String, std::sync::Arc<std::sync::Mutex<Vec<String>>>) {
    use std::io::{Read, Write};
    let listener = std::net::TcpListener::bind("127.0.0.1:0").unwrap();
    let url = format!("http://{}", listener.local_addr().unwrap());
    let served = std::sync::Arc::new(std::sync::Mutex::new(Vec::new()));
    let log = served.clone();
    std::thread::spawn(move || {
        for stream in listener.incoming() {
            let Ok(mut stream) = stream else { return };
            let mut buf = vec![0u8; 8192];
            let n = stream.read(&mut buf).unwrap_or(0);
            let request = String::from_utf8_lossy(&buf[..n]).to_string();
            let target = request.split_whitespace().nth(1).unwrap_or("").to_string();
            log.lock().unwrap().push(target.clone());
            let response = match answers.iter().find(|(path, _)| *path == target) {
                Some((_, body)) => format!(
                    "HTTP/1.1 200 OK\r\nContent-Type: application/json\r\nContent-Length: {}\r\nConnection: close\r\n\r\n{body}",
                    body.len()
                ),
                None => "HTTP/1.1 404 Not Found\r\nContent-Length: 0\r\nConnection: close\r\n\r\n".to_string(),
            };
            let _ = stream.write_all(response.as_bytes());
        }
    });
    (url, served)
}

#[tokio::test]
async fn with_istiod_url_istiods_views_come_over_the_forwarded_port_and_only_from_that_istiod() {
    let (url, served) = forwarded_istiod(vec![
        ("/debug/syncz".into(), syncz("x7")),
        ("/debug/config_dump?proxyID=xnat-xnat-web-0.xnat".into(), web_config_dump()),
        ("/debug/config_dump?proxyID=xnat-postgresql-0.xnat".into(), web_config_dump()),
    ]);
    let mut script = reads_before_the_pods("x7");
    // Neither istiod's pods nor the pod proxy are asked.
    script.truncate(script.len() - 2);
    script.extend([
        Step::get(&pod_proxy("xnat-xnat-web-0", 15090)).reply_text(&filter_metrics(DIGEST_VALUE)),
        Step::get(&pod_proxy("xnat-xnat-web-0", 15020))
            .reply_text("istio_agent_wasm_remote_fetch_count{result=\"success\"} 1\n"),
        proxy_log("xnat-xnat-web-0").reply_text(WEB_LOG),
        Step::get(&pod_proxy("xnat-postgresql-0", 15090)).reply_text("# no filter here\n"),
        proxy_log("xnat-postgresql-0").reply_text(""),
    ]);
    script.extend(hpa_reads());
    let access = status::IstiodAccess::Url(url.clone());
    let s =
        run(
            script,
            options(),
            |cluster| async move { status::status_in(&cluster, "xnat", "istio-system", &access).await },
        )
        .await
        .unwrap();
    assert!(s.unavailable.is_empty(), "{:?}", s.unavailable);
    assert_eq!(s.proxies.len(), 2);
    assert_eq!(s.proxies[0].istiod, url);
    let web = s.pods.iter().find(|p| p.name == "xnat-xnat-web-0").unwrap();
    assert_eq!(web.inbound.as_ref().unwrap().ports[0].accepts, "plaintext only");
    assert_eq!(
        served.lock().unwrap().as_slice(),
        [
            "/debug/syncz",
            "/debug/config_dump?proxyID=xnat-xnat-web-0.xnat",
            "/debug/config_dump?proxyID=xnat-postgresql-0.xnat"
        ]
    );
    assert!(s.notes.iter().any(|n| n.contains("one istiod")), "{:?}", s.notes);
}

/// A stand-in for `kubectl`: records its arguments, then, as `kubectl port-forward` does,
/// prints the local port it forwards (the stand-in istiod's) and stays until killed; or, with
/// `refuse`, prints RBAC's refusal and exits 1.
/// The tests that write and run a stand-in take turns: a script written while another thread
/// forks is held open for writing in that child until it execs, and running it then fails with
/// "Text file busy" (ETXTBSY).
static STAND_INS: tokio::sync::Mutex<()> = tokio::sync::Mutex::const_new(());

fn fake_kubectl(dir: &std::path::Path, forwarded_port: &str, refuse: bool) -> std::path::PathBuf {
    use std::os::unix::fs::PermissionsExt;
    let path = dir.join("kubectl");
    let args = dir.join("args");
    let body = if refuse {
        "echo 'error: error upgrading connection: pods \"istiod-7f9c8d6b5-k2x8p\" is forbidden: User \"alice\" cannot create resource \"pods/portforward\" in API group \"\" in the namespace \"istio-system\"' >&2\nexit 1".to_string()
    } else {
        format!("echo 'Forwarding from 127.0.0.1:{forwarded_port} -> 15014'\necho 'Forwarding from [::1]:{forwarded_port} -> 15014'\nexec sleep 30")
    };
    std::fs::write(&path, format!("#!/bin/sh\necho \"$@\" >> '{}'\n{body}\n", args.display())).unwrap();
    std::fs::set_permissions(&path, std::fs::Permissions::from_mode(0o755)).unwrap();
    path
}

#[tokio::test]
async fn with_port_forward_each_istiod_pod_is_forwarded_by_kubectl_and_read_over_localhost() {
    let _serial = STAND_INS.lock().await;
    let (url, served) = forwarded_istiod(vec![
        ("/debug/syncz".into(), syncz("x7")),
        ("/debug/config_dump?proxyID=xnat-xnat-web-0.xnat".into(), web_config_dump()),
        ("/debug/config_dump?proxyID=xnat-postgresql-0.xnat".into(), web_config_dump()),
    ]);
    let port = url.rsplit(':').next().unwrap().to_string();
    let dir = tempfile::tempdir().unwrap();
    let kubectl = fake_kubectl(dir.path(), &port, false);
    let mut script = reads_before_the_pods("x7");
    // istiod's pods are listed; their debug port is not asked through the pod proxy.
    script.pop();
    script.extend([
        Step::get(&pod_proxy("xnat-xnat-web-0", 15090)).reply_text(&filter_metrics(DIGEST_VALUE)),
        Step::get(&pod_proxy("xnat-xnat-web-0", 15020))
            .reply_text("istio_agent_wasm_remote_fetch_count{result=\"success\"} 1\n"),
        proxy_log("xnat-xnat-web-0").reply_text(WEB_LOG),
        Step::get(&pod_proxy("xnat-postgresql-0", 15090)).reply_text("# no filter here\n"),
        proxy_log("xnat-postgresql-0").reply_text(""),
    ]);
    script.extend(hpa_reads());
    let access = status::IstiodAccess::PortForward {
        kubectl,
        kubeconfig: Some("/home/alice/.kube/eks".into()),
        context: Some("xnat-prod".into()),
    };
    let s =
        run(
            script,
            options(),
            |cluster| async move { status::status_in(&cluster, "xnat", "istio-system", &access).await },
        )
        .await
        .unwrap();
    assert!(s.unavailable.is_empty(), "{:?}", s.unavailable);
    assert_eq!(s.proxies[0].istiod, ISTIOD, "named by its pod");
    assert_eq!(s.pods[0].inbound_from.as_deref(), Some(ISTIOD));
    assert_eq!(served.lock().unwrap().len(), 3);
    let args = std::fs::read_to_string(dir.path().join("args")).unwrap();
    assert_eq!(
        args.trim(),
        format!(
            "--kubeconfig /home/alice/.kube/eks --context xnat-prod -n istio-system port-forward pod/{ISTIOD} :15014"
        )
    );
    assert!(s.notes.is_empty(), "every istiod was read: {:?}", s.notes);
}

#[tokio::test]
async fn a_port_forward_rbac_refuses_leaves_out_istiods_views_naming_the_permission() {
    let _serial = STAND_INS.lock().await;
    let dir = tempfile::tempdir().unwrap();
    let kubectl = fake_kubectl(dir.path(), "0", true);
    let mut script = reads_before_the_pods("x7");
    script.pop();
    script.extend([
        Step::get(&pod_proxy("xnat-xnat-web-0", 15090)).reply_text(&filter_metrics(DIGEST_VALUE)),
        Step::get(&pod_proxy("xnat-xnat-web-0", 15020))
            .reply_text("istio_agent_wasm_remote_fetch_count{result=\"success\"} 1\n"),
        proxy_log("xnat-xnat-web-0").reply_text(WEB_LOG),
        Step::get(&pod_proxy("xnat-postgresql-0", 15090)).reply_text("# no filter here\n"),
        proxy_log("xnat-postgresql-0").reply_text(""),
    ]);
    script.extend(hpa_reads());
    let access = status::IstiodAccess::PortForward { kubectl, kubeconfig: None, context: None };
    let s =
        run(
            script,
            options(),
            |cluster| async move { status::status_in(&cluster, "xnat", "istio-system", &access).await },
        )
        .await
        .unwrap();
    let why = &s.unavailable[section::PROXY_STATUS];
    assert!(why.contains("needs `create pods/portforward` in namespace istio-system"), "{why}");
    assert!(why.contains("cannot create resource \"pods/portforward\""), "kubectl's own words: {why}");
    assert_eq!(s.pods[0].counters["allowed"], 41);
}

#[tokio::test]
async fn a_read_the_api_server_fails_for_a_moment_leaves_its_section_out_saying_to_re_run() {
    let mut script = reads_before_the_pods("x7");
    // The Services' list, after the namespace, three lists of policies and two of AuthorizationPolicies.
    script[6] = Step::get(SERVICES).transient(503);
    script.extend([
        Step::get(&pod_proxy("xnat-xnat-web-0", 15090)).reply_text(&filter_metrics(DIGEST_VALUE)),
        Step::get(&pod_proxy("xnat-xnat-web-0", 15020))
            .reply_text("istio_agent_wasm_remote_fetch_count{result=\"success\"} 1\n"),
        Step::get(&istiod_debug("config_dump")).query("proxyID=xnat-xnat-web-0.xnat").reply_text(&web_config_dump()),
        proxy_log("xnat-xnat-web-0").transient(429),
    ]);
    script.extend(postgresql_reads());
    script.extend(hpa_reads());
    let s = status_of(script).await;
    let why = &s.unavailable[section::SERVICES];
    assert!(
        why.contains("the server is currently unable to handle the request (503)") && why.contains("re-run"),
        "{why}"
    );
    let web = s.pods.iter().find(|p| p.name == "xnat-xnat-web-0").unwrap();
    assert!(
        web.unavailable[section::LOG].contains("Too many requests") && web.unavailable[section::LOG].contains("re-run")
    );
    assert_eq!(web.describe.effective_mtls, "STRICT, port 8080 DISABLE", "the rest is there");
}

#[tokio::test]
async fn a_sidecar_that_is_not_ready_still_gets_its_log_and_istiods_configuration_read() {
    let mut script = reads_before_the_pods("x7");
    let mut not_ready = ais::web_pod(0, true, false, "web-0");
    not_ready["spec"]["containers"][0]["ports"] = json!([{"name": "http", "containerPort": 8080}]);
    script[7] = Step::get(PODS).reply(200, list(vec![not_ready]));
    script.extend([
        // No metrics: a sidecar that is not ready may not serve them; but it is connected to istiod.
        Step::get(&istiod_debug("config_dump")).query("proxyID=xnat-xnat-web-0.xnat").reply_text(&web_config_dump()),
        proxy_log("xnat-xnat-web-0").reply_text(WEB_LOG),
    ]);
    script.extend(hpa_reads());
    let s = status_of(script).await;
    let web = &s.pods[0];
    assert_eq!(web.sidecar, "not ready");
    assert!(web.proxy_log.as_ref().unwrap().lines[0].line.contains("configuration refused"));
    assert!(web.inbound.is_some());
    assert_eq!(web.counters_unavailable.as_deref(), Some("no ready sidecar"));
    assert!(
        s.problems.iter().any(|p| p.starts_with("pod xnat-xnat-web-0's istio-proxy is not ready")),
        "{:?}",
        s.problems
    );
}

//! The deployer's Kubernetes calls, against an in-process mock API server that asserts each
//! request in order (method, path, field manager, body): rollout (first run, re-run with
//! nothing to do, a pod that never gets its sidecar), undo, status, kiali token, hpa, and the
//! install prechecks. No cluster is needed; `make e2e-cluster` runs the real thing.

mod mock_api;
mod support;

use std::path::Path;

use deployer::apply::rollout::RolloutReport;
use deployer::apply::{hpa, install, kiali, rollout, status, undo, Applied, ApplyError, Options};
use deployer::plan::rollout::{ModuleRef, Plan, Spec};
use deployer::plan::{self, hpa::FixKind};
use deployer::resources;
use mock_api::{apply, list, options, run, Step};
use serde_json::{json, Value};

const NS: &str = "/api/v1/namespaces/xnat";
const PA: &str = "/apis/security.istio.io/v1/namespaces/xnat/peerauthentications/xnat-guard";
const WASM: &str = "/apis/extensions.istio.io/v1alpha1/namespaces/xnat/wasmplugins/xnat-guard";
const DEPLOYMENTS: &str = "/apis/apps/v1/namespaces/xnat/deployments";
const STATEFULSETS: &str = "/apis/apps/v1/namespaces/xnat/statefulsets";
const PODS: &str = "/api/v1/namespaces/xnat/pods";
const HPAS: &str = "/apis/autoscaling/v2/namespaces/xnat/horizontalpodautoscalers";

fn runbook_plan() -> Plan {
    let file = support::project_root().join("examples/runbook/istio-auth-policy-post.yaml");
    let module = ModuleRef::new("oci://registry.example/xnat-guard:0.1.0", &"ab".repeat(32)).unwrap();
    let spec = Spec::new("xnat", resources::load_files(&[file]).unwrap(), module);
    plan::rollout::plan(&Spec { plaintext_ports: vec![8080], ..spec }).unwrap()
}

fn deployment(generation: i64, updated: i32) -> Value {
    json!({
        "metadata": {"name": "xnat-web", "namespace": "xnat", "generation": generation},
        "spec": {"replicas": 1, "selector": {"matchLabels": {"app": "xnat-web"}},
                 "template": {"metadata": {"labels": {"app": "xnat-web"}},
                              "spec": {"containers": [{"name": "xnat-web", "resources": {"requests": {"cpu": "100m"}}}]}}},
        "status": {"observedGeneration": generation, "replicas": 1, "updatedReplicas": updated, "availableReplicas": updated}
    })
}

fn pod(name: &str, with_sidecar: bool) -> Value {
    let mut containers = vec![json!({"name": "xnat-web"})];
    let mut statuses = vec![json!({"name": "xnat-web", "ready": true, "restartCount": 0, "image": "", "imageID": ""})];
    if with_sidecar {
        containers.push(json!({"name": "istio-proxy", "resources": {"requests": {"cpu": "100m"}}}));
        statuses.push(json!({"name": "istio-proxy", "ready": true, "restartCount": 0, "image": "", "imageID": ""}));
    }
    json!({
        "metadata": {"name": name, "namespace": "xnat", "labels": {"app": "xnat-web"}},
        "spec": {"containers": containers},
        "status": {"phase": "Running", "containerStatuses": statuses}
    })
}

/// The agent's metrics after one successful module fetch (status reads them).
const FETCHED: &str = "istio_agent_wasm_remote_fetch_count{result=\"success\"} 1\n";

const CANARY: &str = "/apis/extensions.istio.io/v1alpha1/namespaces/xnat/wasmplugins/xnat-guard-canary";

/// The filter's gauge showing configuration `hex`, as the sidecar's Prometheus text has it.
fn gauge(hex: &str) -> String {
    format!("xnat_guard_config_digest {}\n", u64::from_str_radix(hex, 16).unwrap())
}

fn plan_digest() -> String {
    runbook_plan().config.config_digest.unwrap()
}

/// The WasmPlugin in the cluster carrying configuration `hex`.
fn wasm_in_cluster(hex: &str, rv: &str) -> Value {
    json!({"metadata": {"name": "xnat-guard", "resourceVersion": rv}, "spec": {"pluginConfig": {"configDigest": hex}}})
}

/// The filter's first rollout to `pod`, a Deployment's: no WasmPlugin before, so the canary
/// on the pod first (labelled as the canary, since a Deployment's pod has no label of its
/// own), then the main WasmPlugin (its body checked by `check`), then the canary removed.
fn filter_first(pod: &str, check: impl Fn(&Value) + Send + 'static) -> Vec<Step> {
    let hex = plan_digest();
    let label = |on: bool| {
        Step::patch(&format!("{PODS}/{pod}"))
            .body(move |b| {
                assert_eq!(
                    b["metadata"]["labels"]["xnat-guard.io/canary"],
                    if on { json!("true") } else { Value::Null }
                )
            })
            .reply(200, json!({"metadata": {"name": "pod"}}))
    };
    vec![
        Step::get(WASM).not_found(),
        label(true),
        Step::get(CANARY).not_found(),
        apply(CANARY, "1").body(|b| assert_eq!(b["spec"]["failStrategy"], "FAIL_OPEN")),
        pod_metrics(pod, 15090, &gauge(&hex)),
        Step::get(WASM).not_found(),
        apply(WASM, "1").body(check),
        pod_metrics(pod, 15090, &gauge(&hex)),
        Step::delete(CANARY).reply(200, json!({"kind": "Status", "status": "Success"})),
        label(false),
    ]
}

/// A re-run's filter: the WasmPlugin already carries this configuration, so no canary; it is
/// applied (unchanged) and `pod` shows `shows`.
fn filter_in_force(pod: &str, shows: &str) -> Vec<Step> {
    let hex = plan_digest();
    vec![
        Step::get(WASM).reply(200, wasm_in_cluster(&hex, "7")),
        Step::get(WASM).reply(200, wasm_in_cluster(&hex, "7")),
        apply(WASM, "7"),
        pod_metrics(pod, 15090, shows).repeated(),
    ]
}

// Script builders: each names one request the code makes and the answer it gets.

/// The applies of the runbook plan before the filter: a GET then a server-side apply per
/// object, each object new (`existing_rv` `None`) or already there. The WasmPlugin comes after
/// the pods have their sidecars ([`filter_first`], [`filter_in_force`]).
fn applies(existing_rv: Option<&str>, after_rv: &str) -> Vec<Step> {
    let mut steps = reads_before_applying();
    for path in [NS, PA] {
        steps.push(match existing_rv {
            None => Step::get(path).not_found(),
            Some(rv) => Step::get(path).reply(200, json!({"metadata": {"name": "x", "resourceVersion": rv}})),
        });
        steps.push(apply(path, after_rv));
    }
    steps
}

/// What rollout reads before it applies anything, once it knows the namespace exists: no
/// PeerAuthentication of the cluster's in the namespace or the root namespace overrides the plan's.
fn reads_before_applying() -> Vec<Step> {
    let mut steps = mock_api::served_recent_istio(&support::istio_crds());
    steps.extend([
        Step::get("/apis/security.istio.io/v1/namespaces/xnat/peerauthentications").reply(200, list(vec![])),
        Step::get("/apis/security.istio.io/v1/namespaces/istio-system/peerauthentications").reply(200, list(vec![])),
    ]);
    steps
}

/// Listing the controllers (one Deployment, no StatefulSet) and then the pods of the namespace.
fn lists(deployment: Value, pods: Vec<Value>) -> [Step; 3] {
    [
        Step::get(DEPLOYMENTS).reply(200, list(vec![deployment])),
        Step::get(STATEFULSETS).reply(200, list(vec![])),
        list_pods(pods),
    ]
}

fn list_pods(pods: Vec<Value>) -> Step {
    Step::get(PODS).reply(200, list(pods))
}

/// Reading the Deployment while waiting for its rollout.
fn read_deployment(deployment: Value) -> Step {
    Step::get(&format!("{DEPLOYMENTS}/xnat-web")).reply(200, deployment)
}

/// The agent's metrics (15020) or the sidecar's (15090) of a pod, through the pod proxy.
fn pod_metrics(pod: &str, port: u16, text: &str) -> Step {
    Step::get(&format!("{PODS}/{pod}:{port}/proxy/stats/prometheus")).reply_text(text)
}

/// Listing what the deployer labelled at `path`, answered with objects of these names, each
/// one rollout of xnat created.
fn labelled(path: &str, names: &[&str]) -> Step {
    let items = names
        .iter()
        .map(|name| {
            json!({"metadata": {"name": name, "labels": {"xnat-guard.io/managed-by": "xnat-guard-deployer"},
                                "annotations": {"xnat-guard.io/created": "true", "xnat-guard.io/rollouts": "xnat"}}})
        })
        .collect();
    Step::get(path).query("labelSelector=xnat-guard.io%2Fmanaged-by%3Dxnat-guard-deployer").reply(200, list(items))
}

fn server_version(minor: &str) -> Step {
    Step::get("/version").reply(200, version(minor))
}

async fn roll_out(script: Vec<Step>, opts: Options) -> Result<RolloutReport, ApplyError> {
    let plan = runbook_plan();
    // Rollout first checks that the namespace exists (it never creates one).
    let script =
        std::iter::once(Step::get(NS).reply(200, json!({"metadata": {"name": "xnat"}}))).chain(script).collect();
    run(script, opts, |cluster| async move { rollout::rollout(&cluster, &plan, "xnat").await }).await
}

#[tokio::test]
async fn first_rollout_applies_restarts_the_pod_without_sidecar_waits_and_checks_the_module() {
    let mut wasm_body = runbook_plan().manifests.last().unwrap().body.clone();
    wasm_body["metadata"]["annotations"]["xnat-guard.io/created"] = json!("true");
    let mut script = applies(None, "1");
    script.extend(lists(deployment(1, 1), vec![pod("xnat-web-old", false)]));
    script.extend([
        Step::patch(&format!("{DEPLOYMENTS}/xnat-web"))
            .body(|b| {
                let at = &b["spec"]["template"]["metadata"]["annotations"]["kubectl.kubernetes.io/restartedAt"];
                assert!(at.as_str().is_some_and(|s| s.starts_with("20")), "restart annotation: {b}");
            })
            .reply(200, deployment(2, 0)),
        read_deployment(deployment(2, 0)),
        read_deployment(deployment(2, 1)),
        list_pods(vec![pod("xnat-web-old", false), pod("xnat-web-new", true)]).times(2),
        list_pods(vec![pod("xnat-web-new", true)]),
    ]);
    // The WasmPlugin is applied as rendered, with the record that rollout created it, once
    // the canary on the new pod shows the configuration.
    script.extend(filter_first("xnat-web-new", move |b| assert_eq!(b, &wasm_body)));
    let report = roll_out(script, options()).await.unwrap();
    assert!(report.applied.iter().all(|(_, a)| *a == Applied::Created), "{:?}", report.applied);
    assert_eq!(report.applied.last().unwrap().0, "WasmPlugin xnat/xnat-guard");
    assert_eq!(report.restarted, ["Deployment xnat-web"]);
    assert_eq!(report.enforcing, ["xnat-web-new"]);
    assert_eq!(report.canary.as_deref(), Some("xnat-web-new"));
    assert_eq!(report.pods.len(), 1);
}

/// A re-run on a cluster that already matches the plan, whose pod's sidecar shows `sidecar_metrics`.
fn rerun(sidecar_metrics: &str) -> Vec<Step> {
    let mut script = applies(Some("7"), "7");
    script.extend(lists(deployment(2, 1), vec![pod("xnat-web-new", true)]));
    // Nothing restarted, so nothing to wait for: straight to the verification.
    script.push(list_pods(vec![pod("xnat-web-new", true)]));
    script.extend(filter_in_force("xnat-web-new", sidecar_metrics));
    script
}

#[tokio::test]
async fn rerunning_rollout_changes_nothing() {
    let report = roll_out(rerun(&gauge(&plan_digest())), options()).await.unwrap();
    assert!(report.applied.iter().all(|(_, a)| *a == Applied::Unchanged), "{:?}", report.applied);
    assert!(report.restarted.is_empty());
    assert_eq!(report.enforcing, ["xnat-web-new"]);
    assert_eq!(report.canary, None, "the configuration was already in force");
}

#[tokio::test]
async fn a_pod_that_never_gets_its_sidecar_is_a_clear_timeout() {
    let mut script = applies(Some("7"), "8");
    script.extend(lists(deployment(1, 1), vec![pod("xnat-web-old", false)]));
    script.extend([
        Step::patch(&format!("{DEPLOYMENTS}/xnat-web")).reply(200, deployment(2, 1)),
        read_deployment(deployment(2, 1)),
        // The webhook is not there: the new pod comes up without istio-proxy, forever.
        list_pods(vec![pod("xnat-web-new", false)]).repeated(),
    ]);
    let err = roll_out(script, options()).await.unwrap_err();
    let ApplyError::Timeout(message) = &err else { panic!("expected a timeout, got {err}") };
    assert!(message.contains("xnat-web-new has no istio-proxy"), "{message}");
    assert!(message.contains("istio-injection=enabled"), "the error says what to check: {message}");
}

#[tokio::test]
async fn a_module_that_failed_to_fetch_fails_the_rollout() {
    // The pod's filter never reports the configuration; its agent says why.
    let mut script = rerun("xnat_guard_allowed 0\n");
    script.extend([
        pod_metrics("xnat-web-new", 15020, "istio_agent_wasm_remote_fetch_count{result=\"checksum_mismatched\"} 3\n"),
        Step::get(&format!("{PODS}/xnat-web-new/log")).reply_text(""),
        // Put back as it was: the previous WasmPlugin (the same configuration, here).
        Step::get(WASM).reply(200, wasm_in_cluster(&plan_digest(), "7")),
        apply(WASM, "7"),
    ]);
    let err = roll_out(script, options()).await.unwrap_err().to_string();
    assert!(err.contains("pod xnat-web-new does not enforce") && err.contains("checksum_mismatched=3"), "{err}");
    assert!(err.contains("--sha256"), "{err}");
}

#[tokio::test]
async fn dry_run_rollout_validates_without_restarting() {
    let mut script = reads_before_applying();
    for path in [NS, PA] {
        script.push(Step::get(path).not_found());
        script.push(apply(path, "1").query("dryRun=All"));
    }
    script.extend(lists(deployment(1, 1), vec![pod("xnat-web-old", false)]));
    // The WasmPlugin is validated too, with no canary and nothing waited for.
    script.push(Step::get(WASM).not_found());
    script.push(apply(WASM, "1").query("dryRun=All"));
    let report = roll_out(script, Options { dry_run: true, ..options() }).await.unwrap();
    assert!(report.applied.iter().all(|(_, a)| *a == Applied::DryRun));
    assert!(report.restarted.is_empty());
}

#[tokio::test]
async fn undo_deletes_what_the_deployer_created_and_releases_the_namespace_label() {
    let wasm_list = "/apis/extensions.istio.io/v1alpha1/namespaces/xnat/wasmplugins";
    let script = vec![
        Step::get(NS).reply(200, json!({"metadata": {"name": "xnat"}})),
        labelled(wasm_list, &["xnat-guard"]),
        Step::delete(&format!("{wasm_list}/xnat-guard")).reply(200, json!({"metadata": {"name": "xnat-guard"}})),
        labelled("/apis/security.istio.io/v1/namespaces/xnat/authorizationpolicies", &[]),
        labelled("/apis/security.istio.io/v1/namespaces/istio-system/authorizationpolicies", &[]),
        labelled("/apis/networking.istio.io/v1/namespaces/xnat/destinationrules", &[]),
        labelled("/apis/networking.istio.io/v1/namespaces/istio-system/destinationrules", &[]),
        labelled("/apis/security.istio.io/v1/namespaces/xnat/peerauthentications", &["xnat-guard"]),
        Step::delete(PA).reply(200, json!({})),
        labelled("/apis/security.istio.io/v1/namespaces/istio-system/peerauthentications", &[]),
        apply(NS, "9").body(|b| {
            assert!(b["metadata"].get("labels").is_none(), "the namespace is applied without our label: {b}")
        }),
    ];
    let removed = run(script, options(), |cluster| async move { undo::undo(&cluster, "xnat", "istio-system").await })
        .await
        .unwrap();
    assert_eq!(removed.len(), 3, "{removed:?}");
}

#[tokio::test]
async fn status_reports_sidecars_policies_modules_and_filter_counters() {
    let script = vec![
        Step::get(NS).reply(200, json!({"metadata": {"name": "xnat", "labels": {"istio-injection": "enabled"}}})),
        Step::get("/apis/security.istio.io/v1/peerauthentications").reply(
            200,
            list(vec![
                json!({"metadata": {"name": "default", "namespace": "istio-system"}, "spec": {"mtls": {"mode": "STRICT"}}}),
                json!({"metadata": {"name": "xnat-guard", "namespace": "xnat"},
                       "spec": {"mtls": {"mode": "STRICT"}, "portLevelMtls": {"8080": {"mode": "DISABLE"}}}}),
            ]),
        ),
        Step::get("/apis/networking.istio.io/v1/destinationrules").reply(200, list(vec![])),
        Step::get("/apis/extensions.istio.io/v1alpha1/namespaces/xnat/wasmplugins").reply(
            200,
            list(vec![json!({"metadata": {"name": "xnat-guard", "namespace": "xnat"},
                              "spec": {"url": "oci://r/x:1", "selector": {"matchLabels": {"app": "xnat-web"}}}})]),
        ),
        Step::get("/apis/security.istio.io/v1/namespaces/xnat/authorizationpolicies").reply(200, list(vec![])),
        Step::get("/apis/security.istio.io/v1/namespaces/istio-system/authorizationpolicies").reply(200, list(vec![])),
        Step::get("/api/v1/namespaces/xnat/services").reply(200, list(vec![])),
        list_pods(vec![pod("xnat-web-0", true), pod("xnat-postgresql-0", false)]),
        // No istiod to ask: proxy status and listeners are left out, saying so (tests/cluster_status.rs).
        Step::get("/api/v1/namespaces/istio-system/pods").query("labelSelector=app%3Distiod").reply(200, list(vec![])),
        pod_metrics(
            "xnat-web-0",
            15090,
            "# TYPE xnat_guard_allowed counter\nxnat_guard_allowed 41\nxnat_guard_denied_policy 3\nxnat_guard_denied_mtls 2\n",
        ),
        pod_metrics("xnat-web-0", 15020, FETCHED),
        Step::get(&format!("{PODS}/xnat-web-0/log")).query("container=istio-proxy").reply_text(""),
        server_version("31"),
        Step::get(HPAS).reply(200, list(vec![])),
    ];
    let s = run(script, options(), |cluster| async move { status::status(&cluster, "xnat").await }).await.unwrap();
    assert_eq!(s.injection_label.as_deref(), Some("enabled"));
    let web = s.pods.iter().find(|p| p.name == "xnat-web-0").unwrap();
    assert_eq!(web.ready, "2/2");
    assert_eq!(web.counters_unavailable, None);
    assert_eq!((web.counters["allowed"], web.counters["denied_policy"], web.counters["denied_mtls"]), (41, 3, 2));
    assert!(web.module.as_deref().unwrap().starts_with("loaded"));
    assert!(s.peer_authentications.iter().any(|r| r.mode == "STRICT (ports 8080:DISABLE)"));
    assert_eq!(s.problems.len(), 1, "{:?}", s.problems);
    assert!(s.problems[0].contains("xnat-postgresql-0 has no istio-proxy"));
    let table = deployer::inspect::status::status_table(&s);
    assert!(table.contains("allowed=41"), "{table}");
    assert!(s.unavailable["proxy-status"].contains("no running istiod pod"), "{:?}", s.unavailable);
}

#[tokio::test]
async fn kiali_token_comes_from_the_token_request_api() {
    let script = vec![Step::post("/api/v1/namespaces/istio-system/serviceaccounts/kiali/token")
        .body(|b| assert_eq!(b["spec"]["expirationSeconds"], 600))
        .reply(201, json!({"spec": {"audiences": []}, "status": {"token": "eyJhbGciOi.token", "expirationTimestamp": "2026-11-26T01:00:00Z"}}))];
    let token =
        run(script, options(), |c| async move { kiali::token(&c, "istio-system", "kiali", Some("kiali"), 600).await })
            .await
            .unwrap();
    assert_eq!(token, "eyJhbGciOi.token");

    let missing = vec![Step::post("/api/v1/namespaces/istio-system/serviceaccounts/kiali/token").not_found()];
    let err =
        run(missing, options(), |c| async move { kiali::token(&c, "istio-system", "kiali", Some("kiali"), 600).await })
            .await
            .unwrap_err()
            .to_string();
    assert!(err.contains("deployer kiali install"), "{err}");
}

fn runbook_hpa() -> Value {
    json!({
        "metadata": {"name": "xnat-web", "namespace": "xnat"},
        "spec": {"scaleTargetRef": {"apiVersion": "apps/v1", "kind": "Deployment", "name": "xnat-web"}, "maxReplicas": 4,
                 "metrics": [{"type": "Resource", "resource": {"name": "cpu", "target": {"type": "Utilization", "averageUtilization": 70}}}]}
    })
}

fn version(minor: &str) -> Value {
    json!({"major": "1", "minor": minor, "gitVersion": "", "gitCommit": "", "gitTreeState": "", "buildDate": "2024-01-01T00:00:00Z", "goVersion": "", "compiler": "", "platform": ""})
}

/// What `hpa` reads before it decides: the server's version, the HPAs, the controllers and pods.
fn hpa_reads(minor: &str) -> Vec<Step> {
    let mut steps = vec![server_version(minor), Step::get(HPAS).reply(200, list(vec![runbook_hpa()]))];
    steps.extend(lists(deployment(1, 1), vec![pod("xnat-web-0", true)]));
    steps
}

#[tokio::test]
async fn hpa_apply_patches_the_runbook_average_value_on_an_older_cluster() {
    let mut script = hpa_reads("29");
    script.push(
        Step::patch(&format!("{HPAS}/xnat-web"))
            .body(|b| {
                assert_eq!(
                    b["spec"]["metrics"][0]["resource"]["target"],
                    json!({"type": "AverageValue", "averageValue": "80m"})
                )
            })
            .reply(200, runbook_hpa()),
    );
    let findings = run(script, options(), |c| async move { hpa::hpa(&c, "xnat", 10, true).await }).await.unwrap();
    assert_eq!(findings.len(), 1);
    assert_eq!((findings[0].intended_millis, findings[0].effective_millis), (70, 140));
}

#[tokio::test]
async fn hpa_recommends_a_container_resource_metric_on_1_30_and_later_and_changes_nothing_without_apply() {
    let findings =
        run(hpa_reads("31"), options(), |c| async move { hpa::hpa(&c, "xnat", 10, false).await }).await.unwrap();
    assert_eq!(findings[0].fix_kind, Some(FixKind::ContainerResource));
    assert_eq!(findings[0].fix.as_ref().unwrap()["containerResource"]["container"], "xnat-web");
}

#[tokio::test]
async fn install_precheck_refuses_without_cluster_admin_rights() {
    let review = |allowed: bool| json!({"spec": {}, "status": {"allowed": allowed}});
    let ssar = "/apis/authorization.k8s.io/v1/selfsubjectaccessreviews";
    let script = vec![
        server_version("31"),
        Step::post(ssar)
            .body(|b| assert_eq!(b["spec"]["resourceAttributes"]["resource"], "customresourcedefinitions"))
            .reply(201, review(true)),
        Step::post(ssar).reply(201, review(false)),
        Step::post(ssar).reply(201, review(true)),
        Step::post(ssar).reply(201, review(true)),
    ];
    let err = run(script, options(), |c| async move { install::precheck(&c, "1.27.3", "istio-system").await })
        .await
        .unwrap_err()
        .to_string();
    assert!(err.contains("create mutatingwebhookconfigurations") && err.contains("cluster-admin"), "{err}");
}

#[tokio::test]
async fn install_precheck_refuses_a_cluster_too_old_for_the_istio_version() {
    let script = vec![server_version("28")];
    let err = run(script, options(), |c| async move { install::precheck(&c, "1.27.3", "istio-system").await })
        .await
        .unwrap_err()
        .to_string();
    assert!(err.contains("needs Kubernetes 1.29"), "{err}");
}

#[tokio::test]
async fn install_verify_finds_crds_istiod_and_the_webhook() {
    // The served Istio APIs first (1.27's: v1 policies), then the CRDs (WasmPlugin's takes FAIL_RELOAD).
    let group = |group: &str, version: &str| {
        Step::get(&format!("/apis/{group}")).reply(
            200,
            json!({"kind": "APIGroup", "name": group, "versions": [{"groupVersion": format!("{group}/{version}"), "version": version}]}),
        )
    };
    let mut script = vec![
        group("security.istio.io", "v1"),
        group("networking.istio.io", "v1"),
        group("extensions.istio.io", "v1alpha1"),
    ];
    script.extend(plan::install::REQUIRED_CRDS.iter().map(|kind| {
        let name = kind.crd_name();
        let schema = json!({"openAPIV3Schema": {"type": "object", "properties": {"spec": {"type": "object",
                            "x-kubernetes-preserve-unknown-fields": true,
                            "properties": {"failStrategy": {"type": "string", "enum": ["FAIL_CLOSE", "FAIL_OPEN", "FAIL_RELOAD"]}}}}}});
        Step::get(&format!("/apis/apiextensions.k8s.io/v1/customresourcedefinitions/{name}")).reply(
            200,
            json!({"metadata": {"name": name}, "spec": {"group": kind.group, "names": {"kind": kind.kind, "plural": kind.plural}, "scope": "Namespaced",
                   "versions": [{"name": kind.version, "served": true, "storage": true, "schema": schema}]}}),
        )
    }));
    let istiod = |updated: i32| {
        json!({"metadata": {"name": "istiod", "generation": 1}, "spec": {"replicas": 1, "selector": {"matchLabels": {"app": "istiod"}}, "template": {}},
               "status": {"observedGeneration": 1, "replicas": 1, "updatedReplicas": updated, "availableReplicas": updated}})
    };
    // istiod is found by its labels (app=istiod, istio.io/rev), not by name.
    let istiods = "/apis/apps/v1/namespaces/istio-system/deployments";
    script.extend([
        Step::get(istiods)
            .query("labelSelector=app%3Distiod%2Cistio.io%2Frev%3Ddefault")
            .reply(200, list(vec![istiod(0)])),
        Step::get(istiods)
            .query("labelSelector=app%3Distiod%2Cistio.io%2Frev%3Ddefault")
            .reply(200, list(vec![istiod(1)])),
        Step::get("/apis/admissionregistration.k8s.io/v1/mutatingwebhookconfigurations")
            .query("labelSelector=app%3Dsidecar-injector")
            .reply(200, list(vec![json!({"metadata": {"name": "istio-sidecar-injector"}})])),
        // Then a pod created as a server dry run in a labelled namespace gets its sidecar.
        Step::get("/api/v1/namespaces")
            .query("labelSelector=istio-injection%3Denabled")
            .reply(200, list(vec![json!({"metadata": {"name": "xnat", "labels": {"istio-injection": "enabled"}}})])),
        Step::post("/api/v1/namespaces/xnat/pods").query("dryRun=All").reply(
            201,
            json!({"metadata": {"name": "xnat-guard-injection-check"},
                   "spec": {"containers": [{"name": "check"}, {"name": "istio-proxy"}]}}),
        ),
    ]);
    let report =
        run(script, options(), |c| async move { install::verify(&c, "istio-system", "default", "1.27.3").await })
            .await
            .unwrap();
    assert!(report.iter().any(|line| line.contains("istio-sidecar-injector")), "{report:?}");
    assert!(report.last().unwrap().contains("got istio-proxy"), "{report:?}");
}

#[test]
fn kiali_add_ons_are_read_from_an_istio_release_directory() {
    let addons = support::shared_dir().join("istio/addons");
    assert!(
        addons.is_dir(),
        "FAILED, not skipped: {} is missing; put the shared reference data beside the checkout",
        addons.display()
    );
    let release = tempfile::tempdir().unwrap();
    std::fs::create_dir_all(release.path().join("samples")).unwrap();
    std::os::unix::fs::symlink(&addons, release.path().join("samples/addons")).unwrap();
    let addons = plan::kiali::read_addons(release.path()).unwrap();
    let manifests = plan::kiali::addon_manifests(&addons, "istio-system").unwrap();
    let names: Vec<String> = manifests.iter().map(|m| m.describe()).collect();
    assert!(names.contains(&"Deployment istio-system/prometheus".to_string()), "{names:?}");
    assert!(names.iter().any(|n| n.starts_with("ClusterRole ")), "cluster-scoped kinds stay cluster-scoped: {names:?}");
    assert!(names.iter().any(|n| n.contains("jaeger")), "{names:?}");
    let cr = plan::kiali::kiali_cr("istio-system", "LoadBalancer");
    assert_eq!(cr.body["spec"]["auth"]["strategy"], "token");
    assert_eq!(cr.body["spec"]["deployment"]["service_type"], "LoadBalancer");
    assert_eq!(cr.body["spec"]["server"]["web_root"], "/kiali");
    let err = plan::kiali::read_addons(Path::new("/nonexistent")).unwrap_err().to_string();
    assert!(err.contains("downloadIstio"), "{err}");
}

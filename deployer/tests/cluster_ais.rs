//! Rollout on the user's own cluster: the state the Australian Imaging Service chart and the
//! runbook leave (`tests/ais`), against the mock API server, answering as a real one does
//! (Status bodies, throttling, dropped connections). Each test names what the user sees.

mod ais;
mod mock_api;
mod support;

use std::process::Command;
use std::time::Duration;

use ais::{Web, DEPLOYMENTS, NAMESPACE, PODS, SERVICES, STATEFULSETS, WEB};
use deployer::apply::rollout::RolloutReport;
use deployer::apply::{rollout, ApplyError, Options};
use deployer::plan::rollout::{ModuleRef, Plan, ServicePort, Spec};
use deployer::{plan, resources};
use mock_api::{list, options, run, Step};
use serde_json::{json, Value};

const PA: &str = "/apis/security.istio.io/v1/namespaces/xnat/peerauthentications/xnat-guard";
const DR: &str = "/apis/networking.istio.io/v1/namespaces/xnat/destinationrules/xnat-guard";
const WASM: &str = "/apis/extensions.istio.io/v1alpha1/namespaces/xnat/wasmplugins/xnat-guard";
const CANARY: &str = "/apis/extensions.istio.io/v1alpha1/namespaces/xnat/wasmplugins/xnat-guard-canary";
const SHA: &str = "abababababababababababababababababababababababababababababababab";

fn runbook_spec() -> Spec {
    let file = support::project_root().join("examples/runbook/istio-auth-policy-post.yaml");
    let module = ModuleRef::new("oci://registry.example/xnat-guard:0.1.0", SHA).unwrap();
    let spec = Spec::new("xnat", resources::load_files(&[file]).unwrap(), module);
    Spec { plaintext_ports: vec![8080], ..spec }
}

fn runbook_plan() -> Plan {
    plan::rollout::plan(&runbook_spec()).unwrap()
}

/// A server-side apply by the deployer's field manager. (Whether it forces is another test's
/// business: `tests/cluster.rs`.)
fn apply(path: &str, resource_version: &str) -> Step {
    let name = path.rsplit('/').next().unwrap();
    Step::patch(path)
        .query("fieldManager=xnat-guard-deployer")
        .reply(200, json!({"metadata": {"name": name, "resourceVersion": resource_version}}))
}

/// The namespace is there (the chart's release lives in it).
fn namespace_exists() -> Step {
    Step::get(NAMESPACE).reply(200, ais::namespace(true))
}

/// What rollout reads before changing anything: the namespace, then the PeerAuthentications
/// in it and in the root namespace (none here: which one wins is `tests/cluster.rs`'s business).
fn reads_before_applying() -> Vec<Step> {
    let mut steps = vec![namespace_exists()];
    steps.extend(mock_api::served_recent_istio(&support::istio_crds()));
    steps.extend([
        Step::get("/apis/security.istio.io/v1/namespaces/xnat/peerauthentications").reply(200, list(vec![])),
        Step::get("/apis/security.istio.io/v1/namespaces/istio-system/peerauthentications").reply(200, list(vec![])),
    ]);
    steps
}

/// The runbook plan's applies on a cluster where the deployer already ran once: each object
/// read, then applied unchanged. The WasmPlugin, if listed, is left out here: rollout applies
/// it last, once the pods have their sidecars ([`filter_in_force`]).
fn applies_unchanged(paths: &[&str]) -> Vec<Step> {
    let mut steps = Vec::new();
    for path in paths.iter().filter(|p| **p != WASM) {
        steps.push(Step::get(path).reply(200, json!({"metadata": {"name": "x", "resourceVersion": "7"}})));
        steps.push(apply(path, "7"));
    }
    steps
}

/// Listing the namespace's controllers and pods.
fn lists(deployments: Vec<Value>, statefulsets: Vec<Value>, pods: Vec<Value>) -> [Step; 3] {
    [
        Step::get(DEPLOYMENTS).reply(200, list(deployments)),
        Step::get(STATEFULSETS).reply(200, list(statefulsets)),
        Step::get(PODS).reply(200, list(pods)),
    ]
}

fn read_web(w: Web) -> Step {
    Step::get(WEB).reply(200, ais::web_statefulset(w))
}

fn restart_web(w: Web) -> Step {
    Step::patch(WEB)
        .body(|b| {
            let at = &b["spec"]["template"]["metadata"]["annotations"]["kubectl.kubernetes.io/restartedAt"];
            assert!(at.is_string(), "a restart is kubectl's annotation: {b}");
        })
        .reply(200, ais::web_statefulset(w))
}

/// The configuration the runbook plan ships, as its WasmPlugin names it.
fn runbook_digest() -> String {
    runbook_plan().config.config_digest.unwrap()
}

/// The filter on a cluster where the deployer already ran once: the WasmPlugin in the cluster
/// carries this configuration, so no canary; it is applied unchanged, and each pod's filter
/// shows the configuration.
fn filter_in_force(pods: &[&str]) -> Vec<Step> {
    let hex = runbook_digest();
    let in_cluster = json!({"metadata": {"name": "xnat-guard", "resourceVersion": "7"}, "spec": {"pluginConfig": {"configDigest": hex}}});
    let mut steps =
        vec![Step::get(WASM).reply(200, in_cluster.clone()), Step::get(WASM).reply(200, in_cluster), apply(WASM, "7")];
    let gauge = format!("xnat_guard_config_digest {}\n", u64::from_str_radix(&hex, 16).unwrap());
    for pod in pods {
        steps.push(Step::get(&format!("{PODS}/{pod}:15090/proxy/stats/prometheus")).reply_text(&gauge));
    }
    steps
}

async fn roll_out(plan: Plan, script: Vec<Step>, opts: Options) -> Result<RolloutReport, ApplyError> {
    run(script, opts, |cluster| async move { rollout::rollout(&cluster, &plan, "xnat").await }).await
}

// Point 8: the namespace must exist.

#[tokio::test]
async fn rollout_refuses_a_missing_namespace_before_applying_anything_and_says_how_to_create_it() {
    for dry_run in [false, true] {
        let script = vec![Step::get(NAMESPACE).not_found()];
        let err = roll_out(runbook_plan(), script, Options { dry_run, ..options() }).await.unwrap_err();
        let ApplyError::Failed(message) = &err else { panic!("expected a refusal, got {err}") };
        assert!(message.contains("namespace xnat does not exist"), "{message}");
        assert!(message.contains("kubectl create namespace xnat"), "{message}");
    }
}

#[test]
fn render_says_the_namespace_is_labelled_not_created() {
    let plan = runbook_plan();
    let namespace = &plan.manifests[0];
    assert_eq!(namespace.describe(), "Namespace xnat");
    assert!(plan.to_yaml().contains("# Namespace xnat (from sidecar injection: the label only"), "{}", plan.to_yaml());
}

// Point 2: rollout waits only on what it restarted.

#[tokio::test]
async fn an_on_delete_statefulset_has_its_pods_replaced_one_at_a_time_highest_ordinal_first() {
    let web = Web::settled().replicas(3).on_delete();
    let mut script = reads_before_applying();
    script.extend(applies_unchanged(&[NAMESPACE, PA, WASM]));
    script.extend(lists(
        vec![],
        vec![ais::web_statefulset(web), ais::postgresql_statefulset()],
        vec![
            ais::web_pod(0, false, true, "old-0"),
            ais::web_pod(1, false, true, "old-1"),
            ais::web_pod(2, false, true, "old-2"),
            ais::postgresql_pod(true),
        ],
    ));
    // No template patch (it would not replace a pod): each pod deleted, then waited for until
    // the StatefulSet has recreated it, with its sidecar, and it is Ready.
    for ordinal in [2, 1, 0] {
        let path = format!("{PODS}/xnat-xnat-web-{ordinal}");
        script.extend([
            Step::delete(&path).reply(200, ais::web_pod(ordinal, false, true, &format!("old-{ordinal}"))),
            Step::get(&path).reply(200, ais::web_pod(ordinal, false, true, &format!("old-{ordinal}"))),
            Step::get(&path).not_found(),
            Step::get(&path).reply(200, ais::web_pod(ordinal, true, false, &format!("new-{ordinal}"))).times(2),
            Step::get(&path).reply(200, ais::web_pod(ordinal, true, true, &format!("new-{ordinal}"))),
        ]);
    }
    let replaced =
        vec![ais::web_pod(0, true, true, "n0"), ais::web_pod(1, true, true, "n1"), ais::web_pod(2, true, true, "n2")];
    script.push(Step::get(PODS).reply(200, list([replaced, vec![ais::postgresql_pod(true)]].concat())));
    script.extend(filter_in_force(&["xnat-xnat-web-0", "xnat-xnat-web-1", "xnat-xnat-web-2"]));
    let report = roll_out(runbook_plan(), script, options()).await.unwrap();
    assert_eq!(report.restarted, ["StatefulSet xnat-xnat-web (OnDelete: pods xnat-xnat-web-2, xnat-xnat-web-1, xnat-xnat-web-0 replaced one at a time)"]);
}

#[tokio::test]
async fn an_on_delete_pod_recreated_without_its_sidecar_stops_the_rollout_before_the_next_pod() {
    let web = Web::settled().replicas(2).on_delete();
    let mut script = reads_before_applying();
    script.extend(applies_unchanged(&[NAMESPACE, PA, WASM]));
    script.extend(lists(
        vec![],
        vec![ais::web_statefulset(web)],
        vec![ais::web_pod(0, false, true, "old-0"), ais::web_pod(1, false, true, "old-1")],
    ));
    let path = format!("{PODS}/xnat-xnat-web-1");
    script.extend([
        Step::delete(&path).reply(200, ais::web_pod(1, false, true, "old-1")),
        // Recreated, and the injection webhook did not act: no istio-proxy.
        Step::get(&path).reply(200, ais::web_pod(1, false, true, "new-1")),
    ]);
    let err = roll_out(runbook_plan(), script, options()).await.unwrap_err();
    let ApplyError::Failed(message) = &err else { panic!("expected a failure, got {err}") };
    assert!(message.contains("pod xnat-xnat-web-1 was recreated without istio-proxy"), "{message}");
    assert!(message.contains("xnat-xnat-web-0 was left as it was"), "{message}");
    assert!(message.contains("istio-injection=enabled"), "{message}");
}

#[tokio::test]
async fn a_crash_looping_neighbour_and_a_pending_pod_of_another_workload_do_not_hold_up_the_rollout() {
    let mut script = reads_before_applying();
    script.extend(applies_unchanged(&[NAMESPACE, PA, WASM]));
    let neighbours = vec![ais::crash_looping_pod(), ais::pending_pod()];
    script.extend(lists(
        vec![ais::crash_looping_deployment(), ais::pending_deployment()],
        vec![ais::web_statefulset(Web::settled()), ais::postgresql_statefulset()],
        [vec![ais::web_pod(0, false, true, "old-0"), ais::postgresql_pod(true)], neighbours.clone()].concat(),
    ));
    script.extend([
        restart_web(Web::settled().rolling(2, 1, 0)),
        read_web(Web::settled().rolling(2, 0, 1)),
        read_web(Web::settled().rolling(2, 1, 1)),
        Step::get(PODS).reply(
            200,
            list([vec![ais::web_pod(0, true, true, "new-0"), ais::postgresql_pod(true)], neighbours].concat()),
        ),
    ]);
    script.extend(filter_in_force(&["xnat-xnat-web-0"]));
    let report = roll_out(runbook_plan(), script, options()).await.unwrap();
    assert_eq!(report.restarted, ["StatefulSet xnat-xnat-web"]);
}

#[tokio::test]
async fn an_unready_neighbour_without_its_sidecar_is_not_restarted_and_the_user_is_told() {
    let mut script = reads_before_applying();
    script.extend(applies_unchanged(&[NAMESPACE, PA, WASM]));
    let mut broken = ais::crash_looping_pod();
    broken["spec"]["containers"] = json!([{"name": "ohif"}]);
    broken["status"]["containerStatuses"].as_array_mut().unwrap().truncate(1);
    script.extend(lists(
        vec![ais::crash_looping_deployment()],
        vec![ais::web_statefulset(Web::settled())],
        vec![ais::web_pod(0, true, true, "w0"), broken.clone()],
    ));
    script.extend([Step::get(PODS).reply(200, list(vec![ais::web_pod(0, true, true, "w0"), broken]))]);
    script.extend(filter_in_force(&["xnat-xnat-web-0"]));
    let report = roll_out(runbook_plan(), script, options()).await.unwrap();
    assert!(report.restarted.is_empty(), "{:?}", report.restarted);
    let note = report.skipped.iter().find(|n| n.contains("ohif-viewer")).expect("a note on the neighbour");
    assert!(note.contains("was not ready before the rollout (0 of 1 available)"), "{note}");
    assert!(note.contains("kubectl -n xnat rollout restart deployment/ohif-viewer"), "{note}");
}

fn healthy_deployment(name: &str, generation: i64) -> Value {
    json!({
        "metadata": {"name": name, "namespace": "xnat", "generation": generation},
        "spec": {"replicas": 1, "selector": {"matchLabels": {"app": name}},
                 "template": {"metadata": {"labels": {"app": name}}, "spec": {"containers": [{"name": name}]}}},
        "status": {"observedGeneration": generation, "replicas": 1, "updatedReplicas": 1, "availableReplicas": 1}
    })
}

#[tokio::test]
async fn a_deployment_past_its_progress_deadline_fails_at_once_as_kubectl_does() {
    let mut script = reads_before_applying();
    script.extend(applies_unchanged(&[NAMESPACE, PA, WASM]));
    let viewer_pod = json!({"metadata": {"name": "ohif-viewer-1", "namespace": "xnat", "labels": {"app": "ohif-viewer"}},
                            "spec": {"containers": [{"name": "ohif-viewer"}]}, "status": {"phase": "Running"}});
    script.extend(lists(
        vec![healthy_deployment("ohif-viewer", 1)],
        vec![ais::web_statefulset(Web::settled())],
        vec![ais::web_pod(0, true, true, "w0"), viewer_pod],
    ));
    let mut stuck = healthy_deployment("ohif-viewer", 2);
    stuck["status"] = json!({"observedGeneration": 2, "replicas": 2, "updatedReplicas": 1, "availableReplicas": 1,
        "conditions": [{"type": "Progressing", "status": "False", "reason": "ProgressDeadlineExceeded",
                        "message": "ReplicaSet \"ohif-viewer-6b8f\" has timed out progressing."}]});
    script.extend([
        Step::patch(&format!("{DEPLOYMENTS}/ohif-viewer")).reply(200, healthy_deployment("ohif-viewer", 2)),
        // Read once: the deadline is final, no second look.
        Step::get(&format!("{DEPLOYMENTS}/ohif-viewer")).reply(200, stuck),
    ]);
    let err =
        roll_out(runbook_plan(), script, Options { timeout: Duration::from_secs(30), ..options() }).await.unwrap_err();
    let ApplyError::Failed(message) = &err else { panic!("expected an immediate failure, got {err}") };
    assert!(message.contains("deployment \"ohif-viewer\" exceeded its progress deadline"), "{message}");
    assert!(message.contains("has timed out progressing"), "the controller's own words: {message}");
    assert!(message.contains("kubectl -n xnat describe deployment ohif-viewer"), "{message}");
}

#[tokio::test]
async fn throttling_server_errors_and_a_dropped_connection_during_the_wait_are_retried() {
    let mut script = reads_before_applying();
    script.extend(applies_unchanged(&[NAMESPACE, PA, WASM]));
    script.extend(lists(
        vec![],
        vec![ais::web_statefulset(Web::settled())],
        vec![ais::web_pod(0, false, true, "old-0")],
    ));
    script.extend([
        restart_web(Web::settled().rolling(2, 1, 0)),
        Step::get(WEB).transient(429),
        Step::get(WEB).transient(503),
        Step::get(WEB).connection_reset(),
        Step::get(WEB).transient(500),
        read_web(Web::settled().rolling(2, 1, 1)),
        Step::get(PODS).transient(503),
        Step::get(PODS).reply(200, list(vec![ais::web_pod(0, true, true, "new-0")])),
    ]);
    script.extend(filter_in_force(&["xnat-xnat-web-0"]));
    // The 429 asks for a second's pause (Retry-After), within the timeout.
    let opts = Options { timeout: Duration::from_secs(3), ..options() };
    let report = roll_out(runbook_plan(), script, opts).await.unwrap();
    assert_eq!(report.restarted, ["StatefulSet xnat-xnat-web"]);
}

#[tokio::test]
async fn a_forbidden_restart_says_which_permission_is_missing() {
    let mut script = reads_before_applying();
    script.extend(applies_unchanged(&[NAMESPACE, PA, WASM]));
    script.extend(lists(
        vec![],
        vec![ais::web_statefulset(Web::settled())],
        vec![ais::web_pod(0, false, true, "old-0")],
    ));
    script.push(Step::patch(WEB).forbidden("patch", "statefulsets", "apps", "xnat-xnat-web"));
    let err = roll_out(runbook_plan(), script, options()).await.unwrap_err().to_string();
    assert!(err.contains("restarting StatefulSet xnat-xnat-web"), "{err}");
    assert!(err.contains("User \"alice\" cannot patch resource \"statefulsets\""), "the server's words: {err}");
    assert!(err.contains("ask for a role that grants it"), "{err}");
}

/// Three replicas, OrderedReady, replaced from the highest ordinal with a slow startup each:
/// `slow` looks at each starting pod, `quick` at each terminating one.
fn slow_ordered_restart(slow: usize, quick: usize) -> Vec<Step> {
    let web = Web::settled().replicas(3);
    vec![
        restart_web(web.rolling(2, 3, 0)),
        read_web(web.rolling(2, 2, 0)).times(quick),
        read_web(web.rolling(2, 2, 1)).times(slow),
        read_web(web.rolling(2, 3, 1)).times(slow),
        read_web(web.rolling(2, 2, 1)).times(quick),
        read_web(web.rolling(2, 2, 2)).times(slow),
        read_web(web.rolling(2, 3, 2)).times(slow),
        read_web(web.rolling(2, 2, 2)).times(quick),
        read_web(web.rolling(2, 2, 3)).times(slow),
        read_web(web.rolling(2, 3, 3)),
    ]
}

#[tokio::test]
async fn a_three_replica_statefulset_with_a_slow_startup_is_progress_not_a_hang() {
    let web = Web::settled().replicas(3);
    let old: Vec<Value> = (0..3).map(|i| ais::web_pod(i, false, true, "old")).collect();
    let new: Vec<Value> = (0..3).map(|i| ais::web_pod(i, true, true, "new")).collect();
    let mut script = reads_before_applying();
    script.extend(applies_unchanged(&[NAMESPACE, PA, WASM]));
    script.extend(lists(vec![], vec![ais::web_statefulset(web)], old));
    // Each pod takes 30 polls to start: about 150 ms of a 600 ms timeout, 900 ms in all.
    script.extend(slow_ordered_restart(30, 3));
    script.push(Step::get(PODS).reply(200, list(new)));
    script.extend(filter_in_force(&["xnat-xnat-web-0", "xnat-xnat-web-1", "xnat-xnat-web-2"]));
    let opts = Options { timeout: Duration::from_millis(600), ..options() };
    let report = roll_out(runbook_plan(), script, opts).await.unwrap();
    assert_eq!(report.restarted, ["StatefulSet xnat-xnat-web"]);
}

#[tokio::test]
async fn a_statefulset_that_stops_making_progress_still_times_out_and_says_where_to_look() {
    let web = Web::settled().replicas(3);
    let old: Vec<Value> = (0..3).map(|i| ais::web_pod(i, false, true, "old")).collect();
    let mut script = reads_before_applying();
    script.extend(applies_unchanged(&[NAMESPACE, PA, WASM]));
    script.extend(lists(vec![], vec![ais::web_statefulset(web)], old));
    script.extend([
        restart_web(web.rolling(2, 3, 0)),
        read_web(web.rolling(2, 2, 1)).times(3),
        // Pod 2 never becomes ready.
        read_web(web.rolling(2, 2, 1)).repeated(),
    ]);
    let err = roll_out(runbook_plan(), script, options()).await.unwrap_err();
    let ApplyError::Timeout(message) = &err else { panic!("expected a timeout, got {err}") };
    assert!(message.contains("no progress"), "{message}");
    assert!(message.contains("kubectl -n xnat describe statefulset xnat-xnat-web"), "{message}");
}

// Point 1: DestinationRule ports are the Service's.

fn service_spec(ports: Vec<ServicePort>) -> Spec {
    Spec { service: Some("xnat-xnat-web".into()), service_ports: ports, ..runbook_spec() }
}

fn destination_rule_ports(plan: &Plan) -> Vec<(u64, String)> {
    let dr =
        plan.manifests.iter().find(|m| m.describe() == "DestinationRule xnat/xnat-guard").expect("the generated DR");
    dr.body["spec"]["trafficPolicy"]["portLevelSettings"]
        .as_array()
        .into_iter()
        .flatten()
        .map(|s| (s["port"]["number"].as_u64().unwrap(), s["tls"]["mode"].as_str().unwrap().to_string()))
        .collect()
}

#[test]
fn render_keys_the_destination_rule_by_the_service_port_that_targets_the_plaintext_port() {
    let plan = plan::rollout::plan(&service_spec(vec![ServicePort::to_plaintext_port(80)])).unwrap();
    assert_eq!(destination_rule_ports(&plan), [(80, "DISABLE".to_string())]);
    let explicit = plan::rollout::plan(&service_spec(vec![ServicePort::new(80, 8080)])).unwrap();
    assert_eq!(destination_rule_ports(&explicit), [(80, "DISABLE".to_string())]);
}

#[test]
fn a_service_port_without_a_service_is_refused() {
    let spec = Spec { service_ports: vec![ServicePort::to_plaintext_port(80)], ..runbook_spec() };
    let err = plan::rollout::plan(&spec).unwrap_err().to_string();
    assert!(err.contains("--service-port needs --service"), "{err}");
}

#[test]
fn a_users_destination_rule_on_the_container_port_is_warned_about() {
    let destination = support::project_root().join("examples/runbook/istio-destination.yaml");
    let mut spec = service_spec(vec![ServicePort::to_plaintext_port(80)]);
    spec.objects.extend(resources::load_files(&[destination]).unwrap());
    let plan = plan::rollout::plan(&spec).unwrap();
    let warning = plan.warnings.iter().find(|w| w.contains("DestinationRule xnat/xnat-xnat-web")).expect("a warning");
    assert!(warning.contains("port 8080"), "{warning}");
    assert!(warning.contains("Service port 80"), "{warning}");
}

/// `deployer ARGS`: exit status and stderr.
fn deployer(args: &[&str]) -> (i32, String) {
    let out = Command::new(env!("CARGO_BIN_EXE_deployer")).args(args).output().expect("the deployer runs");
    (out.status.code().unwrap_or(-1), String::from_utf8_lossy(&out.stderr).into_owned())
}

fn render_args<'a>(policy: &'a str, extra: &[&'a str]) -> Vec<&'a str> {
    let mut args = vec!["render", "xnat", "--policy", policy, "--module-url", "oci://r.example/x:1", "--sha256", SHA];
    args.extend_from_slice(extra);
    args
}

#[test]
fn render_with_service_and_a_plaintext_port_but_no_service_port_refuses_and_says_what_to_give() {
    let policy = support::project_root().join("examples/runbook/istio-auth-policy-post.yaml");
    let policy = policy.to_str().unwrap();
    let (code, stderr) = deployer(&render_args(policy, &["--plaintext-port", "8080", "--service", "xnat-xnat-web"]));
    assert_eq!(code, 2, "an error exits 2: {stderr}");
    assert!(stderr.contains("--service-port"), "{stderr}");
    assert!(stderr.contains("kubectl -n xnat get service xnat-xnat-web"), "{stderr}");
    let (code, stderr) = deployer(&render_args(policy, &["--plaintext-port", "8080", "--service-port", "80"]));
    assert_eq!(code, 2, "an error exits 2: {stderr}");
    assert!(stderr.contains("--service-port needs --service"), "{stderr}");
    let (code, stderr) = deployer(&render_args(
        policy,
        &["--plaintext-port", "8080", "--service", "xnat-xnat-web", "--service-port", "80"],
    ));
    assert_eq!(code, 0, "{stderr}");
}

fn service_rollout_script(service: Value) -> Vec<Step> {
    let mut script = reads_before_applying();
    script.push(Step::get(&format!("{SERVICES}/xnat-xnat-web")).reply(200, service));
    script.extend(applies_unchanged(&[NAMESPACE, PA]));
    script.push(Step::get(DR).reply(200, json!({"metadata": {"name": "x", "resourceVersion": "7"}})));
    script.push(apply(DR, "7").body(|b| {
        assert_eq!(
            b["spec"]["trafficPolicy"]["portLevelSettings"],
            json!([{"port": {"number": 80}, "tls": {"mode": "DISABLE"}}]),
            "the DR names the Service port: {b}"
        )
    }));
    script.extend(applies_unchanged(&[WASM]));
    script.extend(lists(vec![], vec![ais::web_statefulset(Web::settled())], vec![ais::web_pod(0, true, true, "w0")]));
    script.extend([Step::get(PODS).reply(200, list(vec![ais::web_pod(0, true, true, "w0")]))]);
    script.extend(filter_in_force(&["xnat-xnat-web-0"]));
    script
}

#[tokio::test]
async fn rollout_reads_the_service_and_exempts_port_80_which_forwards_to_the_plaintext_8080() {
    // No --service-port: the cluster says 80 -> 8080.
    let plan = plan::rollout::plan(&service_spec(vec![])).unwrap();
    let report = roll_out(plan, service_rollout_script(ais::web_service()), options()).await.unwrap();
    assert!(report.warnings.is_empty(), "{:?}", report.warnings);
}

#[tokio::test]
async fn rollout_refuses_a_service_port_flag_the_cluster_contradicts() {
    let plan = plan::rollout::plan(&service_spec(vec![ServicePort::new(8080, 8080)])).unwrap();
    let mut script = reads_before_applying();
    script.push(Step::get(&format!("{SERVICES}/xnat-xnat-web")).reply(200, ais::web_service()));
    let err = roll_out(plan, script, options()).await.unwrap_err().to_string();
    assert!(err.contains("--service-port 8080"), "{err}");
    assert!(err.contains("80 -> 8080"), "what the cluster has: {err}");
}

#[tokio::test]
async fn rollout_warns_when_the_runbooks_destination_rule_names_a_port_the_service_does_not_have() {
    let destination = support::project_root().join("examples/runbook/istio-destination.yaml");
    let mut spec = runbook_spec();
    spec.objects.extend(resources::load_files(&[destination]).unwrap());
    let plan = plan::rollout::plan(&spec).unwrap();
    let user_dr = "/apis/networking.istio.io/v1/namespaces/xnat/destinationrules/xnat-xnat-web";
    let mut script = reads_before_applying();
    script.push(Step::get(&format!("{SERVICES}/xnat-xnat-web")).reply(200, ais::web_service()));
    script.extend(applies_unchanged(&[NAMESPACE, PA, user_dr, WASM]));
    script.extend(lists(vec![], vec![ais::web_statefulset(Web::settled())], vec![ais::web_pod(0, true, true, "w0")]));
    script.extend([Step::get(PODS).reply(200, list(vec![ais::web_pod(0, true, true, "w0")]))]);
    script.extend(filter_in_force(&["xnat-xnat-web-0"]));
    let report = roll_out(plan, script, options()).await.unwrap();
    let warning = report.warnings.iter().find(|w| w.contains("xnat-xnat-web")).expect("a warning");
    assert!(warning.contains("names port 8080"), "{warning}");
    assert!(warning.contains("Service xnat-xnat-web has no port 8080 (its ports: 80 -> 8080)"), "{warning}");
}

// How the mock answers, as a real API server does.

#[tokio::test]
async fn an_admission_webhook_denial_and_a_schema_refusal_reach_the_user_in_the_servers_words() {
    let denied = "configuration is invalid: wasm plugin: url is required";
    // The WasmPlugin goes last, through the canary: the first of them the API server refuses.
    let first_filter = || {
        let mut script = reads_before_applying();
        script.extend(applies_unchanged(&[NAMESPACE, PA]));
        script.extend(lists(
            vec![],
            vec![ais::web_statefulset(Web::settled())],
            vec![ais::web_pod(0, true, true, "w0")],
        ));
        script.push(Step::get(PODS).reply(200, list(vec![ais::web_pod(0, true, true, "w0")])));
        script.push(Step::get(WASM).not_found());
        script.push(Step::get(CANARY).not_found());
        script
    };
    let removed = || Step::delete(CANARY).not_found();
    let mut script = first_filter();
    script.push(Step::patch(CANARY).webhook_denied("validation.istio.io", denied));
    script.push(removed());
    let err = roll_out(runbook_plan(), script, options()).await.unwrap_err().to_string();
    assert!(err.contains("applying WasmPlugin xnat/xnat-guard-canary"), "{err}");
    assert!(err.contains("nothing else was changed: WasmPlugin xnat/xnat-guard was not created"), "{err}");
    assert!(
        err.contains("admission webhook \"validation.istio.io\" denied the request: configuration is invalid"),
        "{err}"
    );

    let mut script = first_filter();
    script.push(Step::patch(CANARY).invalid(
        "WasmPlugin",
        "extensions.istio.io",
        "xnat-guard",
        &[("spec.failStrategy", "Unsupported value: \"FAIL_RELOAD\": supported values: \"FAIL_CLOSE\", \"FAIL_OPEN\"")],
    ));
    script.push(removed());
    let err = roll_out(runbook_plan(), script, options()).await.unwrap_err().to_string();
    assert!(err.contains("spec.failStrategy: Unsupported value: \"FAIL_RELOAD\""), "{err}");
}

#[tokio::test]
async fn rollout_refuses_a_service_that_is_not_there_and_says_how_to_list_them() {
    let plan = plan::rollout::plan(&service_spec(vec![])).unwrap();
    let mut script = reads_before_applying();
    script.push(Step::get(&format!("{SERVICES}/xnat-xnat-web")).not_found());
    let err = roll_out(plan, script, options()).await.unwrap_err().to_string();
    assert!(err.contains("there is no Service xnat/xnat-xnat-web"), "{err}");
    assert!(err.contains("kubectl -n xnat get services"), "{err}");
}

#[tokio::test]
async fn a_named_target_port_is_refused_unless_service_port_numbers_it() {
    let mut named = ais::web_service();
    named["spec"]["ports"][0]["targetPort"] = json!("http");
    let plan = plan::rollout::plan(&service_spec(vec![])).unwrap();
    let mut script = reads_before_applying();
    script.push(Step::get(&format!("{SERVICES}/xnat-xnat-web")).reply(200, named.clone()));
    let err = roll_out(plan, script, options()).await.unwrap_err().to_string();
    assert!(err.contains("forwards to the named container port \"http\""), "{err}");
    assert!(err.contains("--service-port 80:PORT"), "{err}");

    // Numbered by the flag: the DestinationRule exempts 80.
    let plan = plan::rollout::plan(&service_spec(vec![ServicePort::new(80, 8080)])).unwrap();
    let report = roll_out(plan, service_rollout_script(named), options()).await.unwrap();
    assert!(report.warnings.is_empty(), "{:?}", report.warnings);
}

#[tokio::test]
async fn a_user_who_may_not_read_the_namespace_is_told_so_before_anything_is_applied() {
    let script = vec![Step::get(NAMESPACE).forbidden("get", "namespaces", "", "xnat")];
    let err = roll_out(runbook_plan(), script, options()).await.unwrap_err().to_string();
    assert!(err.contains("reading namespace xnat"), "{err}");
    assert!(err.contains("cannot get resource \"namespaces\" in API group \"\" at the cluster scope"), "{err}");
    assert!(err.contains("ask for a role that grants it"), "{err}");
}

#[tokio::test]
async fn a_throttled_wait_waits_as_long_as_the_api_server_asks_before_asking_again() {
    let mut script = reads_before_applying();
    script.extend(applies_unchanged(&[NAMESPACE, PA, WASM]));
    script.extend(lists(
        vec![],
        vec![ais::web_statefulset(Web::settled())],
        vec![ais::web_pod(0, false, true, "old-0")],
    ));
    script.extend([
        restart_web(Web::settled().rolling(2, 1, 0)),
        // Priority and fairness: 429 with Retry-After 1 s.
        Step::get(WEB).transient(429),
        read_web(Web::settled().rolling(2, 1, 1)),
        Step::get(PODS).reply(200, list(vec![ais::web_pod(0, true, true, "new-0")])),
    ]);
    script.extend(filter_in_force(&["xnat-xnat-web-0"]));
    let started = std::time::Instant::now();
    roll_out(runbook_plan(), script, Options { timeout: Duration::from_secs(10), ..options() }).await.unwrap();
    assert!(started.elapsed() >= Duration::from_millis(950), "asked again after {:?}", started.elapsed());
}

#[tokio::test]
async fn a_partitioned_statefulset_whose_held_back_pods_lack_the_sidecar_is_refused_with_the_command() {
    let mut web = ais::web_statefulset(Web::settled().replicas(2));
    web["spec"]["updateStrategy"]["rollingUpdate"]["partition"] = json!(1);
    let mut script = reads_before_applying();
    script.extend(applies_unchanged(&[NAMESPACE, PA, WASM]));
    script.extend(lists(
        vec![],
        vec![web],
        vec![ais::web_pod(0, false, true, "old-0"), ais::web_pod(1, false, true, "old-1")],
    ));
    // Nothing restarted: a restart would replace pod 1 only, and pod 0 would never get its sidecar.
    let err = roll_out(runbook_plan(), script, options()).await.unwrap_err();
    let ApplyError::Failed(message) = &err else { panic!("expected a refusal, got {err}") };
    assert!(message.contains("rollingUpdate.partition 1"), "{message}");
    assert!(message.contains("xnat-xnat-web-0"), "{message}");
    assert!(
        message.contains(r#"kubectl -n xnat patch statefulset xnat-xnat-web -p '{"spec":{"updateStrategy":{"rollingUpdate":{"partition":0}}}}'"#),
        "{message}"
    );
}

// Point 9: what the cluster serves decides the API versions, before anything is applied.

#[tokio::test]
async fn rollout_on_the_runbooks_istio_1_11_is_refused_before_anything_is_applied() {
    let mut script = vec![namespace_exists()];
    let group = mock_api::api_group;
    // Istio 1.11: security.istio.io at v1beta1 only, and no WasmPlugin at all (1.12 added it).
    script.push(group("security.istio.io", &["v1beta1"]));
    script.push(group("networking.istio.io", &["v1beta1", "v1alpha3"]));
    script.push(Step::get("/apis/extensions.istio.io").not_found());
    for kind in deployer::plan::install::REQUIRED_CRDS {
        script.push(
            Step::get(&format!("/apis/apiextensions.k8s.io/v1/customresourcedefinitions/{}", kind.crd_name()))
                .not_found(),
        );
    }
    let err = roll_out(runbook_plan(), script, options()).await.unwrap_err().to_string();
    assert!(err.contains("WasmPlugin xnat/xnat-guard") && err.contains("nothing was applied"), "{err}");
    assert!(err.contains("deployer install"), "says what to do: {err}");
}

//! The filter reaches the user's pods without an outage: its new configuration is proven on one
//! pod (the highest ordinal of XNAT's StatefulSet, failing open) before the main WasmPlugin
//! changes, and any failure puts the WasmPlugin back as it was. A wrong module digest leaves
//! every pod serving as before: the main WasmPlugin is never touched (the mock API refuses any
//! request the script does not list).

mod ais;
mod mock_api;
mod support;

use deployer::apply::canary::{roll_out_filter, FilterRollout};
use deployer::apply::ApplyError;
use deployer::plan::rollout::{ModuleRef, Plan, Spec};
use deployer::{plan, resources};
use k8s_openapi::api::core::v1::Pod;
use mock_api::{apply, options, run, Step};
use serde_json::{json, Value};

const WASM: &str = "/apis/extensions.istio.io/v1alpha1/namespaces/xnat/wasmplugins/xnat-guard";
const CANARY: &str = "/apis/extensions.istio.io/v1alpha1/namespaces/xnat/wasmplugins/xnat-guard-canary";
const PODS: &str = "/api/v1/namespaces/xnat/pods";

fn runbook_plan() -> Plan {
    let file = support::project_root().join("examples/runbook/istio-auth-policy-post.yaml");
    let module = ModuleRef::new("oci://registry.example/xnat-guard:0.1.0", &"ab".repeat(32)).unwrap();
    let spec = Spec::new("xnat", resources::load_files(&[file]).unwrap(), module);
    plan::rollout::plan(&Spec { plaintext_ports: vec![8080], ..spec }).unwrap()
}

fn digest_hex(plan: &Plan) -> String {
    plan.config.config_digest.clone().expect("the plan names its configuration")
}

fn gauge(hex: &str) -> String {
    format!("xnat_guard_config_digest {}\n", u64::from_str_radix(hex, 16).unwrap())
}

fn sidecar(pod: &str, text: &str) -> Step {
    Step::get(&format!("{PODS}/{pod}:15090/proxy/stats/prometheus")).reply_text(text)
}

fn web_pods(n: u32) -> Vec<Pod> {
    (0..n).map(|i| serde_json::from_value(ais::web_pod(i, true, true, &format!("uid-{i}"))).unwrap()).collect()
}

/// The WasmPlugin already in the cluster, carrying configuration `hex`.
fn existing_plugin(hex: &str) -> Value {
    json!({"apiVersion": "extensions.istio.io/v1alpha1", "kind": "WasmPlugin",
           "metadata": {"name": "xnat-guard", "namespace": "xnat", "resourceVersion": "7"},
           "spec": {"selector": {"matchLabels": {"app": "xnat-web"}}, "url": "oci://registry.example/xnat-guard:0.0.9",
                    "sha256": "cd".repeat(32), "failStrategy": "FAIL_CLOSE", "pluginConfig": {"configDigest": hex}}})
}

async fn roll(script: Vec<Step>, pods: Vec<Pod>) -> Result<FilterRollout, ApplyError> {
    let plan = runbook_plan();
    run(script, options(), |cluster| async move { roll_out_filter(&cluster, &plan, "xnat", &pods, true).await }).await
}

#[tokio::test]
async fn a_new_configuration_is_proven_on_the_highest_ordinal_pod_first_then_everywhere() {
    let plan = runbook_plan();
    let hex = digest_hex(&plan);
    let main_body = plan.manifests.last().unwrap().body.clone();
    let script = vec![
        Step::get(WASM).not_found(),
        Step::get(CANARY).not_found(),
        apply(CANARY, "1").body(move |b| {
            assert_eq!(b["spec"]["selector"]["matchLabels"]["statefulset.kubernetes.io/pod-name"], "xnat-xnat-web-2");
            assert_eq!(b["spec"]["failStrategy"], "FAIL_OPEN");
            assert_eq!(b["spec"]["pluginConfig"], main_body["spec"]["pluginConfig"]);
        }),
        sidecar("xnat-xnat-web-2", "xnat_guard_allowed 3\n"),
        sidecar("xnat-xnat-web-2", &gauge(&hex)),
        Step::get(WASM).not_found(),
        apply(WASM, "2").body(|b| assert_eq!(b["spec"]["failStrategy"], "FAIL_CLOSE")),
        sidecar("xnat-xnat-web-0", &gauge(&hex)),
        sidecar("xnat-xnat-web-1", &gauge(&hex)),
        sidecar("xnat-xnat-web-2", &gauge(&hex)),
        Step::delete(CANARY).reply(200, json!({"kind": "Status", "status": "Success"})),
    ];
    let done = roll(script, web_pods(3)).await.unwrap();
    assert_eq!(done.canary.as_deref(), Some("xnat-xnat-web-2"));
    assert_eq!(done.enforcing, ["xnat-xnat-web-0", "xnat-xnat-web-1", "xnat-xnat-web-2"]);
}

#[tokio::test]
async fn a_wrong_module_digest_stops_at_the_canary_and_leaves_every_pod_as_it_was() {
    let plan = runbook_plan();
    let hex = digest_hex(&plan);
    let script = vec![
        Step::get(WASM).reply(200, existing_plugin("0000000000099")),
        Step::get(CANARY).not_found(),
        apply(CANARY, "1"),
        // FAIL_OPEN: the module could not be fetched, the pod keeps its previous filter.
        sidecar("xnat-xnat-web-0", &gauge("0000000000099")).repeated(),
        Step::get(&format!("{PODS}/xnat-xnat-web-0:15020/proxy/stats/prometheus"))
            .reply_text("istio_agent_wasm_remote_fetch_count{result=\"checksum_mismatched\"} 1\n"),
        Step::get(&format!("{PODS}/xnat-xnat-web-0/log"))
            .reply_text("2026-12-01T10:00:00Z\terror\twasm\tfailed to fetch Wasm module: checksum mismatch\n"),
        Step::delete(CANARY).reply(200, json!({"kind": "Status", "status": "Success"})),
    ];
    let error = roll(script, web_pods(1)).await.unwrap_err().to_string();
    assert!(
        error.contains(&format!("the canary pod xnat-xnat-web-0 did not take the new configuration {hex}")),
        "{error}"
    );
    assert!(error.contains("WasmPlugin xnat/xnat-guard is as it was (configuration 0000000000099)"), "{error}");
    assert!(error.contains("every pod serves as before") && error.contains("checksum_mismatched"), "{error}");
}

#[tokio::test]
async fn a_pod_that_fails_after_the_canary_puts_the_previous_wasm_plugin_back() {
    let plan = runbook_plan();
    let hex = digest_hex(&plan);
    let script = vec![
        Step::get(WASM).reply(200, existing_plugin("0000000000099")),
        Step::get(CANARY).not_found(),
        apply(CANARY, "1"),
        sidecar("xnat-xnat-web-1", &gauge(&hex)),
        Step::get(WASM).reply(200, existing_plugin("0000000000099")),
        apply(WASM, "8"),
        sidecar("xnat-xnat-web-0", &gauge("0000000000099")).repeated(),
        Step::get(&format!("{PODS}/xnat-xnat-web-0:15020/proxy/stats/prometheus")).reply_text(""),
        Step::get(&format!("{PODS}/xnat-xnat-web-0/log")).reply_text(""),
        Step::get(WASM).reply(200, existing_plugin(&hex)),
        apply(WASM, "9").body(|b| assert_eq!(b["spec"]["pluginConfig"]["configDigest"], "0000000000099")),
        Step::delete(CANARY).reply(200, json!({"kind": "Status", "status": "Success"})),
    ];
    let error = roll(script, web_pods(2)).await.unwrap_err().to_string();
    assert!(error.contains("the filter in pod xnat-xnat-web-0 does not enforce"), "{error}");
    assert!(error.contains("still enforcing another configuration (digest 99)"), "{error}");
    assert!(error.contains("WasmPlugin xnat/xnat-guard was restored to its previous configuration"), "{error}");
}

#[tokio::test]
async fn a_rerun_with_the_configuration_in_force_needs_no_canary() {
    let plan = runbook_plan();
    let hex = digest_hex(&plan);
    let script = vec![
        Step::get(WASM).reply(200, existing_plugin(&hex)),
        Step::get(WASM).reply(200, existing_plugin(&hex)),
        apply(WASM, "7"),
        sidecar("xnat-xnat-web-0", &gauge(&hex)),
    ];
    let done = roll(script, web_pods(1)).await.unwrap();
    assert_eq!(done.canary, None);
    assert_eq!(done.enforcing, ["xnat-xnat-web-0"]);
}

#[tokio::test]
async fn a_deployments_pod_is_labelled_as_the_canary_and_unlabelled_after() {
    let plan = runbook_plan();
    let hex = digest_hex(&plan);
    let mut pod = ais::web_pod(0, true, true, "uid-0");
    pod["metadata"]["name"] = json!("xnat-web-5d8f-abcde");
    pod["metadata"]["labels"].as_object_mut().unwrap().remove("statefulset.kubernetes.io/pod-name");
    let pods: Vec<Pod> = vec![serde_json::from_value(pod).unwrap()];
    let script = vec![
        Step::get(WASM).not_found(),
        Step::patch(&format!("{PODS}/xnat-web-5d8f-abcde"))
            .body(|b| assert_eq!(b["metadata"]["labels"]["xnat-guard.io/canary"], "true"))
            .reply(200, json!({"metadata": {"name": "xnat-web-5d8f-abcde"}})),
        Step::get(CANARY).not_found(),
        apply(CANARY, "1").body(|b| assert_eq!(b["spec"]["selector"]["matchLabels"]["xnat-guard.io/canary"], "true")),
        sidecar("xnat-web-5d8f-abcde", &gauge(&hex)),
        Step::get(WASM).not_found(),
        apply(WASM, "2"),
        sidecar("xnat-web-5d8f-abcde", &gauge(&hex)),
        Step::delete(CANARY).reply(200, json!({"kind": "Status", "status": "Success"})),
        Step::patch(&format!("{PODS}/xnat-web-5d8f-abcde"))
            .body(|b| assert_eq!(b["metadata"]["labels"]["xnat-guard.io/canary"], Value::Null))
            .reply(200, json!({"metadata": {"name": "xnat-web-5d8f-abcde"}})),
    ];
    let done = roll(script, pods).await.unwrap();
    assert_eq!(done.canary.as_deref(), Some("xnat-web-5d8f-abcde"));
}

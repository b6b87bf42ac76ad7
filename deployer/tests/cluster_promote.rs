//! Dry-run, then enforce, on the user's cluster (the AIS release and the runbook's objects,
//! `tests/ais`) against the mock API server: `rollout --dry-run-policy` ships the suggestion
//! beside the runbook's policy, `status` shows what it would have denied, `promote` refuses
//! while a would-deny record is within the window (and then sends no write at all: the mock
//! refuses any request its script does not list), goes ahead with --force or once the window
//! is clean, and `rollout --undo` afterwards gives the runbook's objects back.

mod ais;
mod mock_api;
mod support;

use std::path::{Path, PathBuf};
use std::sync::{Arc, Mutex};
use std::time::Duration;

use ais::{NAMESPACE, PODS, SERVICES};
use deployer::apply::promote::Promoted;
use deployer::apply::{promote, rollout, status, ApplyError};
use deployer::inspect::status::status_table;
use deployer::plan::promote::{self as promotion, Promotion};
use deployer::plan::rollout::{ModuleRef, Plan, Spec};
use deployer::plan::{CREATED_ANNOTATION, PREVIOUS_SPEC_ANNOTATION};
use deployer::{plan, resources};
use mock_api::{list, options, run, Step};
use serde_json::{json, Value};
use support::{assert_golden, project_root};
use xnat_guard_policy::observe::{metric_name, time_metric_name, RecordKind, Tuple};

const PA: &str = "/apis/security.istio.io/v1/namespaces/xnat/peerauthentications/xnat-guard";
const SUGGESTED: &str = "/apis/security.istio.io/v1/namespaces/xnat/authorizationpolicies/xnat-suggested";
const XNAT_ALL: &str = "/apis/security.istio.io/v1/namespaces/xnat/authorizationpolicies/xnat-all";
const WASM: &str = "/apis/extensions.istio.io/v1alpha1/namespaces/xnat/wasmplugins/xnat-guard";
const CANARY: &str = "/apis/extensions.istio.io/v1alpha1/namespaces/xnat/wasmplugins/xnat-guard-canary";
const SHA: &str = "abababababababababababababababababababababababababababababababab";
const WEB: &str = "xnat-xnat-web-0";
const HOUR: Duration = Duration::from_secs(3600);

fn fixture(name: &str) -> PathBuf {
    Path::new(env!("CARGO_MANIFEST_DIR")).join("tests/fixtures/promote").join(name)
}

/// Objects read from files, their origins relative to the checkout (golden files must not
/// depend on where it lives).
fn load(paths: &[PathBuf]) -> Vec<resources::Object> {
    let mut objects = resources::load_files(paths).unwrap();
    for o in &mut objects {
        o.origin = o.origin.replace(&format!("{}/", project_root().display()), "");
    }
    objects
}

/// What `rollout xnat --policy istio-auth-policy-post.yaml --dry-run-policy suggested.yaml
/// --plaintext-port 8080` asks for.
fn dry_run_spec() -> Spec {
    let module = ModuleRef::new("oci://registry.example/xnat-guard:0.1.0", SHA).unwrap();
    let policies = load(&[project_root().join("examples/runbook/istio-auth-policy-post.yaml")]);
    let spec = Spec::new("xnat", policies, module);
    Spec { plaintext_ports: vec![8080], dry_run_objects: load(&[fixture("suggested.yaml")]), ..spec }
}

fn dry_run_plan() -> Plan {
    plan::rollout::plan(&dry_run_spec()).unwrap()
}

fn promotion() -> Promotion {
    promotion::plan(&dry_run_spec()).unwrap()
}

fn now() -> i64 {
    k8s_openapi::jiff::Timestamp::now().as_second()
}

fn rfc3339(seconds: i64) -> String {
    k8s_openapi::jiff::Timestamp::from_second(seconds).unwrap().to_string()
}

fn gauge(hex: &str) -> String {
    format!(
        "# TYPE xnat_guard_config_digest gauge\nxnat_guard_config_digest {}\n",
        u64::from_str_radix(hex, 16).unwrap()
    )
}

/// The request the suggestion would deny: the web UI deleting a project through the load balancer.
fn delete_project() -> Tuple<'static> {
    Tuple { caller: b"plaintext", port: Some(8080), method: b"DELETE", route: b"/data/projects/{*}" }
}

/// The web pod's sidecar under the dry-run configuration: its digest, what it allowed, and a
/// would-deny record counted `count` times, last `seen_ago` seconds ago.
fn web_metrics(hex: &str, count: u64, seen_ago: i64) -> String {
    let t = delete_project();
    format!(
        "{}xnat_guard_allowed 120\nxnat_guard_dry_run_denied {count}\n# TYPE x counter\n{} {count}\n# TYPE x gauge\n{} {}\n",
        gauge(hex),
        metric_name(RecordKind::WouldDeny, &t),
        time_metric_name(RecordKind::WouldDeny, &t),
        now() - seen_ago
    )
}

fn sidecar(text: &str) -> Step {
    Step::get(&format!("{PODS}/{WEB}:15090/proxy/stats/prometheus")).reply_text(text)
}

/// A server-side apply by the deployer's field manager, answering `body` at `rv`.
fn apply(path: &str, rv: &str) -> Step {
    let name = path.rsplit('/').next().unwrap();
    Step::patch(path)
        .query("fieldManager=xnat-guard-deployer")
        .no_query("force=")
        .reply(200, json!({"metadata": {"name": name, "resourceVersion": rv}}))
}

/// Keeps each body a step was sent, by path, for the next act of the story to answer with.
#[derive(Clone, Default)]
struct Sent(Arc<Mutex<Vec<(String, Value)>>>);

impl Sent {
    fn keep(&self, path: &str, step: Step, check: impl Fn(&Value) + Send + 'static) -> Step {
        let (sent, path) = (self.0.clone(), path.to_string());
        step.body(move |b| {
            check(b);
            sent.lock().unwrap().push((path.clone(), b.clone()));
        })
    }
    fn last(&self, path: &str) -> Value {
        self.0.lock().unwrap().iter().rev().find(|(p, _)| p == path).map(|(_, b)| b.clone()).expect(path)
    }
}

/// What rollout reads before it changes anything: the namespace, the Istio APIs served, the
/// PeerAuthentications that could override the plan's (none).
fn reads_before_applying() -> Vec<Step> {
    let mut steps = vec![Step::get(NAMESPACE).reply(200, ais::namespace(true))];
    steps.extend(mock_api::served_recent_istio(&support::istio_crds()));
    steps.extend([
        Step::get("/apis/security.istio.io/v1/namespaces/xnat/peerauthentications").reply(200, list(vec![])),
        Step::get("/apis/security.istio.io/v1/namespaces/istio-system/peerauthentications").reply(200, list(vec![])),
    ]);
    steps
}

/// The namespace's controllers and pods (the web pod has its sidecar: nothing is restarted),
/// then the pods again for the sidecar check.
fn lists() -> Vec<Step> {
    vec![
        Step::get(ais::DEPLOYMENTS).reply(200, list(vec![])),
        Step::get(ais::STATEFULSETS).reply(200, list(vec![ais::web_statefulset(ais::Web::settled())])),
        Step::get(PODS).reply(200, list(vec![ais::web_pod(0, true, true, "web-0")])),
        Step::get(PODS).reply(200, list(vec![ais::web_pod(0, true, true, "web-0")])),
    ]
}

/// A new configuration through the canary on the one web pod, then verified there.
fn filter_through_canary(sent: &Sent, existing: Option<Value>, hex: &str, check: fn(&Value)) -> Vec<Step> {
    let read = |s: Step| match &existing {
        Some(w) => s.reply(200, w.clone()),
        None => s.not_found(),
    };
    vec![
        read(Step::get(WASM)),
        Step::get(CANARY).not_found(),
        mock_api::apply(CANARY, "1"),
        sidecar(&gauge(hex)),
        read(Step::get(WASM)),
        sent.keep(WASM, apply(WASM, "2"), check),
        sidecar(&gauge(hex)),
        Step::delete(CANARY).reply(200, json!({"kind": "Status", "status": "Success"})),
    ]
}

/// The object as the API server keeps it after the deployer created it from `body` `ago`
/// seconds ago.
fn as_applied(body: &Value, ago: i64) -> Value {
    let mut o = body.clone();
    o["metadata"]["annotations"][CREATED_ANNOTATION] = json!("true");
    o["metadata"]["managedFields"] =
        json!([{"manager": "xnat-guard-deployer", "operation": "Apply", "time": rfc3339(now() - ago)}]);
    o
}

fn policies_in(wasm: &Value) -> Vec<(String, bool)> {
    let mut out: Vec<(String, bool)> = wasm["spec"]["pluginConfig"]["policies"]
        .as_array()
        .unwrap()
        .iter()
        .map(|p| (p["name"].as_str().unwrap().to_string(), p["dryRun"].as_bool().unwrap_or(false)))
        .collect();
    out.sort();
    out
}

/// Act 1: `rollout --dry-run-policy` on the AIS release. Returns what was applied.
async fn dry_run_rollout() -> Sent {
    let sent = Sent::default();
    let plan = dry_run_plan();
    let hex = plan.config.config_digest.clone().unwrap();
    let mut script = reads_before_applying();
    script.extend([
        Step::get(NAMESPACE).reply(200, ais::namespace(true)),
        apply(NAMESPACE, "1"),
        Step::get(PA).not_found(),
        apply(PA, "1"),
        Step::get(SUGGESTED).not_found(),
        sent.keep(SUGGESTED, apply(SUGGESTED, "1"), |b| {
            assert_eq!(b["metadata"]["annotations"]["istio.io/dry-run"], "true", "{b}");
            assert_eq!(b["metadata"]["annotations"][CREATED_ANNOTATION], "true", "{b}");
            assert_eq!(b["spec"]["rules"][1]["to"][0]["operation"]["paths"][0], "/data/services/import");
        }),
    ]);
    script.extend(lists());
    script.extend(filter_through_canary(&sent, None, &hex, |b| {
        assert_eq!(policies_in(b), [("xnat-all".into(), false), ("xnat-suggested".into(), true)], "{b}");
    }));
    let report =
        run(script, options(), |cluster| async move { rollout::rollout(&cluster, &plan, "xnat").await }).await.unwrap();
    assert_eq!(report.enforcing, [WEB]);
    let applied: Vec<&str> = report.applied.iter().map(|(what, _)| what.as_str()).collect();
    assert_eq!(
        applied,
        [
            "Namespace xnat",
            "PeerAuthentication xnat/xnat-guard",
            "AuthorizationPolicy xnat/xnat-suggested",
            "WasmPlugin xnat/xnat-guard"
        ]
    );
    sent
}

#[tokio::test]
async fn rollout_with_a_dry_run_policy_ships_it_annotated_to_the_cluster_and_as_dry_run_in_the_filter() {
    let sent = dry_run_rollout().await;
    // Not natively enforced: the runbook's policy is the filter's only (no --native-authz).
    assert_eq!(sent.last(SUGGESTED)["metadata"]["annotations"]["istio.io/dry-run"], "true");
    assert_eq!(policies_in(&sent.last(WASM)), [("xnat-all".into(), false), ("xnat-suggested".into(), true)]);
}

/// `status` on the cluster the dry-run rollout left: the web pod's sidecar recorded what the
/// suggestion would deny.
#[tokio::test]
async fn status_lists_what_the_dry_run_policy_would_have_denied() {
    let plan = dry_run_plan();
    let hex = plan.config.config_digest.clone().unwrap();
    let wasm = plan.manifests.last().unwrap().body.clone();
    let aps = vec![
        ais::runbook_objects().into_iter().find(|(p, _)| p == XNAT_ALL).unwrap().1,
        plan.manifests[2].body.clone(),
    ];
    let script = vec![
        Step::get(NAMESPACE).reply(200, ais::namespace(true)),
        Step::get("/apis/security.istio.io/v1/peerauthentications").reply(200, list(vec![])),
        Step::get("/apis/networking.istio.io/v1/destinationrules").reply(200, list(vec![])),
        Step::get("/apis/extensions.istio.io/v1alpha1/namespaces/xnat/wasmplugins").reply(200, list(vec![wasm])),
        Step::get("/apis/security.istio.io/v1/namespaces/xnat/authorizationpolicies").reply(200, list(aps)),
        Step::get("/apis/security.istio.io/v1/namespaces/istio-system/authorizationpolicies").reply(200, list(vec![])),
        Step::get(SERVICES).reply(200, list(vec![ais::web_service()])),
        Step::get(PODS).reply(200, list(vec![ais::web_pod(0, true, true, "web-0")])),
        Step::get("/api/v1/namespaces/istio-system/pods").reply(200, list(vec![])),
        sidecar(&web_metrics(&hex, 3, 600)),
        Step::get(&format!("{PODS}/{WEB}:15020/proxy/stats/prometheus"))
            .reply_text("istio_agent_wasm_remote_fetch_count{result=\"success\"} 1\n"),
        Step::get(&format!("{PODS}/{WEB}/log")).reply_text(""),
        Step::get("/version").reply(200, json!({"major": "1", "minor": "31", "gitVersion": "v1.31.2", "gitCommit": "", "gitTreeState": "", "buildDate": "", "goVersion": "", "compiler": "", "platform": ""})),
        Step::get("/apis/autoscaling/v2/namespaces/xnat/horizontalpodautoscalers").reply(200, list(vec![])),
    ];
    let s = run(script, options(), |cluster| async move { status::status(&cluster, "xnat").await }).await.unwrap();
    assert_eq!(s.dry_run_policies, ["xnat/xnat-suggested"]);
    assert_eq!(s.would_deny.len(), 1, "{:?}", s.would_deny);
    let r = &s.would_deny[0];
    assert_eq!(
        (r.caller.as_str(), r.port, r.method.as_str(), r.route.as_str(), r.count),
        ("plaintext", Some(8080), "DELETE", "/data/projects/{*}", 3)
    );
    assert!((now() - 600 - r.last_seen_unix.unwrap()).abs() < 5, "the gauge's time: {:?}", r.last_seen);
    assert_eq!(r.pods.len(), 1);
    assert_eq!(r.pods[0].pod, WEB);
    let table = status_table(&s);
    println!("{table}");
    for part in [
        "Dry-run denials: requests allowed and served that the dry-run policies xnat/xnat-suggested would deny",
        "CALLER",
        "plaintext 8080  DELETE  /data/projects/{*}       3",
        "m ago)",
    ] {
        assert!(table.contains(part), "{part:?} missing from:\n{table}");
    }
    let json = serde_json::to_value(&s).unwrap();
    assert_eq!(json["would_deny"][0]["route"], "/data/projects/{*}");
    assert_eq!(json["would_deny"][0]["count"], 3);
    assert!(json["would_deny"][0]["last_seen"].as_str().unwrap().ends_with('Z'));
}

/// What promote reads: the namespace, the WasmPlugin and the dry-run policy as the dry-run
/// rollout applied them `in_force` seconds ago, the pods, and the web pod's sidecar.
fn gate_reads(in_force: i64, metrics: &str) -> Vec<Step> {
    let p = promotion();
    let wasm = as_applied(&p.dry_run.manifests.last().unwrap().body, in_force);
    let suggested = as_applied(&p.dry_run_manifests[0].body, in_force);
    vec![
        Step::get(NAMESPACE).reply(200, ais::namespace(true)),
        Step::get(WASM).reply(200, wasm),
        Step::get(SUGGESTED).reply(200, suggested),
        Step::get(PODS).reply(200, list(vec![ais::web_pod(0, true, true, "web-0")])),
        sidecar(metrics),
    ]
}

/// The runbook's own xnat-all, as kubectl left it.
fn runbook_xnat_all() -> Value {
    let mut o = ais::runbook_objects().into_iter().find(|(p, _)| p == XNAT_ALL).unwrap().1;
    o["metadata"]["managedFields"] =
        json!([{"manager": "kubectl-client-side-apply", "operation": "Update", "time": "2021-09-01T00:10:00Z"}]);
    o
}

/// The promoted plan's rollout: the runbook's xnat-all shipped as dry-run, the suggestion
/// enforced in the filter through the canary, and its dry-run object deleted.
fn promoted_rollout(sent: &Sent, in_force: i64) -> Vec<Step> {
    let p = promotion();
    let hex = p.promoted.config.config_digest.clone().unwrap();
    let mut script = reads_before_applying();
    script.extend([
        Step::get(NAMESPACE).reply(200, ais::namespace(true)),
        apply(NAMESPACE, "1"),
        Step::get(PA).reply(
            200,
            json!({"metadata": {"name": "xnat-guard", "resourceVersion": "1",
            "labels": {"xnat-guard.io/managed-by": "xnat-guard-deployer"},
            "annotations": {CREATED_ANNOTATION: "true", "xnat-guard.io/rollouts": "xnat"}}}),
        ),
        sent.keep(PA, apply(PA, "1"), |_| {}),
        Step::get(XNAT_ALL).reply(200, runbook_xnat_all()),
        sent.keep(XNAT_ALL, apply(XNAT_ALL, "5"), |b| {
            assert_eq!(b["metadata"]["annotations"]["istio.io/dry-run"], "true", "{b}");
            let previous: Value =
                serde_json::from_str(b["metadata"]["annotations"][PREVIOUS_SPEC_ANNOTATION].as_str().unwrap()).unwrap();
            assert_eq!(previous, runbook_xnat_all()["spec"], "the runbook's spec is recorded for undo");
        }),
    ]);
    script.extend(lists());
    let in_cluster = as_applied(&p.dry_run.manifests.last().unwrap().body, in_force);
    script.extend(filter_through_canary(sent, Some(in_cluster), &hex, |b| {
        assert_eq!(policies_in(b), [("xnat-all".into(), true), ("xnat-suggested".into(), false)], "{b}");
    }));
    let suggested = as_applied(&p.dry_run_manifests[0].body, in_force);
    let mut created = suggested.clone();
    created["metadata"]["annotations"][CREATED_ANNOTATION] = json!("true");
    script.extend([
        Step::get(SUGGESTED).reply(200, created),
        Step::delete(SUGGESTED).reply(200, json!({"kind": "Status", "status": "Success"})),
    ]);
    script
}

async fn promote_with(script: Vec<Step>, window: Option<Duration>, force: bool) -> Result<Promoted, ApplyError> {
    let p = promotion();
    run(script, options(), |cluster| async move { promote::promote(&cluster, &p, "xnat", window, force).await }).await
}

#[tokio::test]
async fn promote_refuses_while_a_would_deny_record_is_within_the_window_and_changes_nothing() {
    let hex = promotion().dry_run.config.config_digest.clone().unwrap();
    // Only reads in the script: a write would be a request the mock refuses.
    let script = gate_reads(3 * 3600, &web_metrics(&hex, 3, 600));
    let err = promote_with(script, Some(HOUR), false).await.unwrap_err().to_string();
    println!("{err}");
    for part in [
        "promote refused; nothing was changed",
        "1 kind(s) of request that the pods served would be denied",
        "within the window (1h)",
        "plaintext 8080  DELETE  /data/projects/{*}       3",
        "(10m ago)",
        "Learn more (`deployer learn xnat`) and suggest again (`deployer suggest`)",
        "--force",
    ] {
        assert!(err.contains(part), "{part:?} missing from:\n{err}");
    }
}

#[tokio::test]
async fn promote_refuses_a_dry_run_policy_in_force_for_less_than_the_window_and_one_not_in_the_cluster() {
    let p = promotion();
    let hex = p.dry_run.config.config_digest.clone().unwrap();
    let err = promote_with(gate_reads(600, &gauge(&hex)), Some(HOUR), false).await.unwrap_err().to_string();
    assert!(err.contains("in force for 10m only") && err.contains("wait 50m more"), "{err}");
    let mut script = gate_reads(3 * 3600, &gauge(&hex));
    script[2] = Step::get(SUGGESTED).not_found();
    let err = promote_with(script, Some(HOUR), false).await.unwrap_err().to_string();
    assert!(err.contains("AuthorizationPolicy xnat/xnat-suggested is not in the cluster"), "{err}");
    // The pod still on the configuration before the dry-run rollout.
    let err = promote_with(gate_reads(3 * 3600, &gauge("99")), Some(HOUR), false).await.unwrap_err().to_string();
    assert!(err.contains(&format!("pod {WEB} does not report the dry-run rollout's configuration ({hex})")), "{err}");
}

#[tokio::test]
async fn promote_with_force_enforces_the_suggestion_and_keeps_the_runbooks_policy_as_dry_run() {
    let hex = promotion().dry_run.config.config_digest.clone().unwrap();
    let sent = Sent::default();
    let mut script = gate_reads(3 * 3600, &web_metrics(&hex, 3, 600));
    script.extend(promoted_rollout(&sent, 3 * 3600));
    let done = promote_with(script, Some(HOUR), true).await.unwrap();
    assert_eq!(done.gate.refusals.len(), 1, "the record --force overrode: {:?}", done.gate.refusals);
    assert_eq!(done.report.as_ref().unwrap().enforcing, [WEB]);
    assert_eq!(sent.last(XNAT_ALL)["metadata"]["annotations"]["istio.io/dry-run"], "true");
    assert!(done.cluster_objects[0].contains("AuthorizationPolicy xnat/xnat-suggested: its dry-run object deleted"));
}

#[tokio::test]
async fn promote_once_the_window_is_clean_then_undo_gives_the_runbooks_objects_back() {
    let p = promotion();
    let hex = p.dry_run.config.config_digest.clone().unwrap();
    let sent = Sent::default();
    // Last seen two hours ago: before the one-hour window.
    let mut script = gate_reads(3 * 3600, &web_metrics(&hex, 3, 2 * 3600));
    script.extend(promoted_rollout(&sent, 3 * 3600));
    let done = promote_with(script, Some(HOUR), false).await.unwrap();
    assert!(done.gate.passes(), "{:?}", done.gate.refusals);
    assert_eq!(done.gate.records.len(), 1);
    assert!(done.gate.recent.is_empty());
    println!("enforced: {:?}; kept as dry-run: {:?}; {:?}", p.enforced, p.kept_as_dry_run, done.cluster_objects);

    // `rollout --undo`: the cluster holds what promote applied (the suggestion's object is gone).
    let managed = "labelSelector=xnat-guard.io%2Fmanaged-by%3Dxnat-guard-deployer";
    let (wasm, xnat_all, pa) = (sent.last(WASM), sent.last(XNAT_ALL), sent.last(PA));
    let mut pa_created = pa.clone();
    pa_created["metadata"]["annotations"][CREATED_ANNOTATION] = json!("true");
    let script = vec![
        Step::get(NAMESPACE).reply(200, ais::namespace(true)),
        Step::get("/apis/extensions.istio.io/v1alpha1/namespaces/xnat/wasmplugins")
            .query(managed)
            .reply(200, list(vec![wasm])),
        Step::delete(WASM).reply(200, json!({"kind": "Status", "status": "Success"})),
        Step::get("/apis/security.istio.io/v1/namespaces/xnat/authorizationpolicies")
            .query(managed)
            .reply(200, list(vec![xnat_all])),
        // The runbook's object, released: its spec as kubectl left it, no dry-run annotation.
        Step::patch(XNAT_ALL)
            .query("fieldManager=xnat-guard-deployer")
            .body(|b| {
                assert_eq!(b["metadata"].as_object().unwrap().len(), 2, "the release body names only the object: {b}")
            })
            .reply(200, runbook_xnat_all()),
        Step::get("/apis/security.istio.io/v1/namespaces/istio-system/authorizationpolicies")
            .query(managed)
            .reply(200, list(vec![])),
        Step::get("/apis/networking.istio.io/v1/namespaces/xnat/destinationrules")
            .query(managed)
            .reply(200, list(vec![])),
        Step::get("/apis/networking.istio.io/v1/namespaces/istio-system/destinationrules")
            .query(managed)
            .reply(200, list(vec![])),
        Step::get("/apis/security.istio.io/v1/namespaces/xnat/peerauthentications")
            .query(managed)
            .reply(200, list(vec![pa_created])),
        Step::delete(PA).reply(200, json!({"kind": "Status", "status": "Success"})),
        Step::get("/apis/security.istio.io/v1/namespaces/istio-system/peerauthentications")
            .query(managed)
            .reply(200, list(vec![])),
        Step::patch(NAMESPACE).reply(200, ais::namespace(false)),
    ];
    let changes =
        run(
            script,
            options(),
            |cluster| async move { deployer::apply::undo::undo(&cluster, "xnat", "istio-system").await },
        )
        .await
        .unwrap();
    assert_eq!(
        changes,
        [
            "WasmPlugin xnat/xnat-guard: deleted",
            "AuthorizationPolicy xnat/xnat-all: existed before the deployer; the deployer's fields released, the rest left as it was",
            "PeerAuthentication xnat/xnat-guard: deleted",
            "Namespace xnat: istio-injection label released",
        ]
    );
}

#[tokio::test]
async fn promote_on_a_cluster_already_promoted_changes_nothing() {
    let p = promotion();
    let promoted = as_applied(&p.promoted.manifests.last().unwrap().body, 60);
    let script = vec![
        Step::get(NAMESPACE).reply(200, ais::namespace(true)),
        Step::get(WASM).reply(200, promoted),
        Step::get(SUGGESTED).not_found(),
        Step::get(PODS).reply(200, list(vec![ais::web_pod(0, true, true, "web-0")])),
        sidecar(&gauge(&p.promoted.config.config_digest.clone().unwrap())),
    ];
    let done = promote_with(script, Some(HOUR), false).await.unwrap();
    assert!(done.gate.already_promoted && done.report.is_none());
}

// render: the dry-run plan and the promoted one, pinned.

#[test]
fn render_ships_the_dry_run_policy_annotated_beside_the_runbooks_and_the_promoted_plan_swaps_them() {
    let dry_run = dry_run_plan();
    let kinds: Vec<String> = dry_run.manifests.iter().map(|m| m.describe()).collect();
    assert_eq!(
        kinds,
        [
            "Namespace xnat",
            "PeerAuthentication xnat/xnat-guard",
            "AuthorizationPolicy xnat/xnat-suggested",
            "WasmPlugin xnat/xnat-guard"
        ]
    );
    assert!(dry_run.notes.iter().any(|n| n.contains("is shipped as dry-run")), "{:?}", dry_run.notes);
    assert_golden("../fixtures/promote/render-dry-run.yaml", &dry_run.to_yaml());
    let p = promotion();
    assert_golden("../fixtures/promote/render-promoted.yaml", &p.promoted.to_yaml());
    assert_eq!(p.enforced, ["AuthorizationPolicy xnat/xnat-suggested"]);
    assert_eq!(p.kept_as_dry_run, ["AuthorizationPolicy xnat/xnat-all"]);
}

#[test]
fn render_refuses_a_dry_run_file_with_other_kinds_one_marked_enforced_or_a_name_in_policy() {
    let dir = tempfile::tempdir().unwrap();
    let write = |name: &str, text: &str| {
        let path = dir.path().join(name);
        std::fs::write(&path, text).unwrap();
        resources::load_files(&[path]).unwrap()
    };
    let pa = write(
        "pa.yaml",
        "apiVersion: security.istio.io/v1\nkind: PeerAuthentication\nmetadata: {name: strict, namespace: xnat}\nspec:\n  mtls: {mode: STRICT}\n",
    );
    let text = std::fs::read_to_string(fixture("suggested.yaml")).unwrap();
    let enforced = write(
        "enforced.yaml",
        &text.replace("  namespace: xnat\n", "  namespace: xnat\n  annotations:\n    istio.io/dry-run: \"false\"\n"),
    );
    let same_name = write("same.yaml", &text.replace("xnat-suggested", "xnat-all"));
    for (objects, wanted) in [
        (pa, "--dry-run-policy takes AuthorizationPolicies only"),
        (enforced, "says istio.io/dry-run: \"false\" (enforce it), but it was given with --dry-run-policy: remove that annotation"),
        (same_name, "is given both with --policy"),
    ] {
        let err = plan::rollout::plan(&Spec { dry_run_objects: objects, ..dry_run_spec() }).unwrap_err().to_string();
        assert!(err.contains(wanted), "{wanted:?} missing from: {err}");
    }
    let err = plan::rollout::plan(&Spec {
        dry_run_objects: write("other.yaml", &text.replace("app: xnat-web", "app: ohif-viewer")),
        labels: vec![("app".into(), "xnat-web".into())],
        ..dry_run_spec()
    })
    .unwrap_err()
    .to_string();
    assert!(err.contains("does not apply to the workload"), "{err}");
}

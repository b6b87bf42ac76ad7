//! What the deployer owns on a cluster that already holds the runbook's objects (applied by
//! hand with `kubectl apply`): rollout records which objects it created, never forces
//! server-side apply unless asked, refuses a PeerAuthentication of the cluster's that would void
//! its own, and undo removes only what it created, restoring the rest. Against the mock API
//! server (`mock_api`), which answers as a real one does (409 Conflict with its causes).

mod mock_api;
mod support;

use deployer::apply::{rollout, undo, ApplyError, Cluster, Options};
use deployer::plan::rollout::{ModuleRef, Plan, Spec};
use deployer::plan::{self, Manifest};
use deployer::resources;
use mock_api::{apply, apply_conflict, apply_forced, list, options, run, Step};
use serde_json::{json, Value};

const NS: &str = "/api/v1/namespaces/xnat";
const ISTIO: &str = "/apis/security.istio.io/v1/namespaces";
const ROOT_PA: &str = "/apis/security.istio.io/v1/namespaces/istio-system/peerauthentications/default";
const PA: &str = "/apis/security.istio.io/v1/namespaces/xnat/peerauthentications/xnat-guard";
const WASMS: &str = "/apis/extensions.istio.io/v1alpha1/namespaces/xnat/wasmplugins";
const WASM: &str = "/apis/extensions.istio.io/v1alpha1/namespaces/xnat/wasmplugins/xnat-guard";
const SELECTOR: &str = "labelSelector=xnat-guard.io%2Fmanaged-by%3Dxnat-guard-deployer";

/// The runbook's setup rolled out by the deployer: `--mesh-strict --plaintext-port 8080`.
fn runbook_plan() -> Plan {
    let file = support::project_root().join("examples/runbook/istio-auth-policy-post.yaml");
    let module = ModuleRef::new("oci://registry.example/xnat-guard:0.1.0", &"ab".repeat(32)).unwrap();
    let spec = Spec::new("xnat", resources::load_files(&[file]).unwrap(), module);
    plan::rollout::plan(&Spec { mesh_strict: true, plaintext_ports: vec![8080], ..spec }).unwrap()
}

fn manifest(plan: &Plan, describe: &str) -> Manifest {
    plan.manifests
        .iter()
        .find(|m| m.describe() == describe)
        .unwrap_or_else(|| panic!("no {describe} in the plan"))
        .clone()
}

/// An object as `kubectl apply` (client-side) left it: its fields belong to
/// kubectl-client-side-apply.
fn by_kubectl(namespace: &str, name: &str, created: &str, spec: Value) -> Value {
    json!({
        "apiVersion": "security.istio.io/v1", "kind": "PeerAuthentication",
        "metadata": {"name": name, "namespace": namespace, "resourceVersion": "12", "creationTimestamp": created,
                     "annotations": {"kubectl.kubernetes.io/last-applied-configuration": "{}"},
                     "managedFields": [{"manager": "kubectl-client-side-apply", "operation": "Update",
                                        "apiVersion": "security.istio.io/v1beta1", "fieldsType": "FieldsV1", "fieldsV1": {}}]},
        "spec": spec
    })
}

/// The runbook's `istio-system/default`: mesh-wide STRICT.
fn runbook_mesh_policy() -> Value {
    by_kubectl("istio-system", "default", "2026-11-30T10:00:00Z", json!({"mtls": {"mode": "STRICT"}}))
}

/// The runbook's `xnat/default`: the web pods STRICT, 8080 in plaintext for the load balancer.
fn runbook_workload_policy(mode: &str) -> Value {
    by_kubectl(
        "xnat",
        "default",
        "2026-11-30T10:30:00Z",
        json!({"selector": {"matchLabels": {"app": "xnat-web"}}, "mtls": {"mode": mode},
               "portLevelMtls": {"8080": {"mode": "DISABLE"}}}),
    )
}

fn namespace() -> Value {
    json!({"metadata": {"name": "xnat", "resourceVersion": "5", "labels": {"istio-injection": "enabled"}}})
}

/// Rollout's first reads: the namespace exists, then the PeerAuthentications already in the
/// workload's and the root namespace.
fn rollout_reads(in_xnat: Vec<Value>, in_root: Vec<Value>) -> Vec<Step> {
    let mut steps = vec![Step::get(NS).reply(200, namespace())];
    steps.extend(mock_api::served_recent_istio(&support::istio_crds()));
    steps.extend([
        Step::get(&format!("{ISTIO}/xnat/peerauthentications")).reply(200, list(in_xnat)),
        Step::get(&format!("{ISTIO}/istio-system/peerauthentications")).reply(200, list(in_root)),
    ]);
    steps
}

/// The pods the WasmPlugin selects, read for their labels: the AIS chart's web pod.
fn selected_pods() -> Step {
    Step::get("/api/v1/namespaces/xnat/pods").query("labelSelector=app%3Dxnat-web").reply(
        200,
        list(vec![json!({"metadata": {"name": "xnat-xnat-web-0", "namespace": "xnat",
            "labels": {"app": "xnat-web", "app.kubernetes.io/name": "xnat-web", "app.kubernetes.io/instance": "xnat"}}})]),
    )
}

fn annotations(body: &Value) -> &Value {
    &body["metadata"]["annotations"]
}

async fn apply_each(script: Vec<Step>, opts: Options, manifests: Vec<Manifest>) -> Result<(), ApplyError> {
    run(script, opts, |cluster: Cluster| async move {
        for m in &manifests {
            cluster.apply(m).await?;
        }
        Ok(())
    })
    .await
}

#[tokio::test]
async fn rollout_marks_what_it_created_keeps_what_it_found_restorable_and_never_forces() {
    let plan = runbook_plan();
    let manifests =
        ["PeerAuthentication istio-system/default", "PeerAuthentication xnat/xnat-guard", "WasmPlugin xnat/xnat-guard"]
            .map(|d| manifest(&plan, d))
            .to_vec();
    let script = vec![
        Step::get(ROOT_PA).reply(200, runbook_mesh_policy()),
        apply(ROOT_PA, "13").body(|b| {
            let labels = &b["metadata"]["labels"];
            assert_eq!(labels["xnat-guard.io/managed-by"], "xnat-guard-deployer", "{b}");
            assert!(labels.get("app.kubernetes.io/managed-by").is_none(), "Helm's key is left alone: {b}");
            let a = annotations(b);
            assert!(a.get("xnat-guard.io/created").is_none(), "the runbook's policy was not created by rollout: {b}");
            assert_eq!(a["xnat-guard.io/previous-spec"], r#"{"mtls":{"mode":"STRICT"}}"#, "{b}");
            assert_eq!(a["xnat-guard.io/rollouts"], "xnat", "{b}");
        }),
        Step::get(PA).not_found(),
        apply(PA, "14").body(|b| assert_eq!(annotations(b)["xnat-guard.io/created"], "true", "{b}")),
        Step::get(WASM).not_found(),
        apply(WASM, "15").body(|b| assert_eq!(annotations(b)["xnat-guard.io/created"], "true", "{b}")),
    ];
    apply_each(script, options(), manifests).await.unwrap();
}

#[tokio::test]
async fn a_second_namespace_rolled_out_with_the_mesh_policy_is_added_to_it_and_the_record_kept() {
    let plan = runbook_plan();
    let mut ours = manifest(&plan, "PeerAuthentication istio-system/default").body;
    ours["metadata"]["annotations"]["xnat-guard.io/created"] = json!("true");
    ours["metadata"]["annotations"]["xnat-guard.io/rollouts"] = json!("xnat2");
    ours["metadata"]["resourceVersion"] = json!("20");
    let script = vec![
        Step::get(ROOT_PA).reply(200, ours),
        apply(ROOT_PA, "21").body(|b| {
            assert_eq!(annotations(b)["xnat-guard.io/created"], "true", "{b}");
            assert_eq!(annotations(b)["xnat-guard.io/rollouts"], "xnat,xnat2", "{b}");
        }),
    ];
    apply_each(script, options(), vec![manifest(&plan, "PeerAuthentication istio-system/default")]).await.unwrap();
}

#[tokio::test]
async fn a_field_another_manager_owns_stops_the_rollout_naming_manager_field_and_force_conflicts() {
    let relaxed =
        by_kubectl("istio-system", "default", "2026-11-30T10:00:00Z", json!({"mtls": {"mode": "PERMISSIVE"}}));
    let mut script = rollout_reads(vec![runbook_workload_policy("STRICT")], vec![relaxed.clone()]);
    script.extend([
        Step::get(NS).reply(200, namespace()),
        apply(NS, "5"),
        Step::get(ROOT_PA).reply(200, relaxed),
        apply_conflict(ROOT_PA, &[("kubectl-client-side-apply", "security.istio.io/v1beta1", ".spec.mtls.mode")]),
    ]);
    let plan = runbook_plan();
    let err = run(script, options(), |cluster| async move { rollout::rollout(&cluster, &plan, "xnat").await })
        .await
        .unwrap_err()
        .to_string();
    assert!(err.contains("PeerAuthentication istio-system/default"), "{err}");
    assert!(
        err.contains(r#".spec.mtls.mode: conflict with "kubectl-client-side-apply" using security.istio.io/v1beta1"#),
        "{err}"
    );
    assert!(err.contains("--force-conflicts"), "{err}");
    assert!(err.contains("Stopped here"), "{err}");
}

#[tokio::test]
async fn force_conflicts_takes_the_fields_over_as_kubectl_does() {
    let plan = runbook_plan();
    let relaxed =
        by_kubectl("istio-system", "default", "2026-11-30T10:00:00Z", json!({"mtls": {"mode": "PERMISSIVE"}}));
    let script = vec![Step::get(ROOT_PA).reply(200, relaxed), apply_forced(ROOT_PA, "13")];
    let opts = Options { force_conflicts: true, ..options() };
    apply_each(script, opts, vec![manifest(&plan, "PeerAuthentication istio-system/default")]).await.unwrap();
}

#[tokio::test]
async fn rollout_refuses_when_an_older_peer_authentication_would_void_the_generated_one() {
    // Someone relaxed the runbook's workload policy to PERMISSIVE: it is older than the one
    // rollout generates, so Istio keeps applying it, while the filter would judge by STRICT.
    let script = rollout_reads(vec![runbook_workload_policy("PERMISSIVE")], vec![runbook_mesh_policy()]);
    let plan = runbook_plan();
    let err = run(script, options(), |cluster| async move { rollout::rollout(&cluster, &plan, "xnat").await })
        .await
        .unwrap_err()
        .to_string();
    assert!(err.contains("PeerAuthentication xnat/default already in the cluster"), "{err}");
    assert!(err.contains("Istio would apply PERMISSIVE, port 8080 DISABLE"), "{err}");
    assert!(err.contains("the filter would enforce STRICT, port 8080 DISABLE"), "{err}");
    assert!(err.contains("kubectl delete peerauthentication default -n xnat"), "{err}");
    assert!(err.contains("Nothing was applied"), "{err}");
}

#[tokio::test]
async fn a_peer_authentication_selecting_the_pods_by_another_of_their_labels_counts_too() {
    // The chart labels the web pods app.kubernetes.io/name too; a policy selecting by it
    // applies to them though the WasmPlugin selects app=xnat-web.
    let by_chart_label = by_kubectl(
        "xnat",
        "by-chart-label",
        "2026-11-30T11:00:00Z",
        json!({"selector": {"matchLabels": {"app.kubernetes.io/name": "xnat-web"}}, "mtls": {"mode": "PERMISSIVE"}}),
    );
    let mut script = rollout_reads(vec![by_chart_label], vec![runbook_mesh_policy()]);
    script.push(selected_pods());
    let plan = runbook_plan();
    let err = run(script, options(), |cluster| async move { rollout::rollout(&cluster, &plan, "xnat").await })
        .await
        .unwrap_err()
        .to_string();
    assert!(err.contains("PeerAuthentication xnat/by-chart-label already in the cluster"), "{err}");
}

// Undo.

/// One of the deployer's objects as undo lists it.
fn ours(namespace: &str, name: &str, record: Value) -> Value {
    let mut annotations = json!({"xnat-guard.io/rollouts": "xnat"});
    for (k, v) in record.as_object().unwrap() {
        annotations[k] = v.clone();
    }
    json!({"metadata": {"name": name, "namespace": namespace, "resourceVersion": "30",
                        "labels": {"xnat-guard.io/managed-by": "xnat-guard-deployer"}, "annotations": annotations},
           "spec": {"mtls": {"mode": "STRICT"}}})
}

fn created() -> Value {
    json!({"xnat-guard.io/created": "true"})
}

fn listed(path: &str, items: Vec<Value>) -> Step {
    Step::get(path).query(SELECTOR).reply(200, list(items))
}

/// Undo's requests up to the root namespace's PeerAuthentications: the namespace exists, the
/// WasmPlugin and the generated PeerAuthentication (both created by rollout) deleted, nothing
/// else in xnat.
fn undo_until_root_peer_authentications() -> Vec<Step> {
    vec![
        Step::get(NS).reply(200, namespace()),
        listed(WASMS, vec![ours("xnat", "xnat-guard", created())]),
        Step::delete(WASM).reply(200, json!({})),
        listed(&format!("{ISTIO}/xnat/authorizationpolicies"), vec![]),
        listed(&format!("{ISTIO}/istio-system/authorizationpolicies"), vec![]),
        listed("/apis/networking.istio.io/v1/namespaces/xnat/destinationrules", vec![]),
        listed("/apis/networking.istio.io/v1/namespaces/istio-system/destinationrules", vec![]),
        listed(&format!("{ISTIO}/xnat/peerauthentications"), vec![ours("xnat", "xnat-guard", created())]),
        Step::delete(PA).reply(200, json!({})),
    ]
}

fn release_namespace() -> Step {
    apply(NS, "9").body(|b| assert!(b["metadata"].get("labels").is_none(), "{b}"))
}

async fn undo_xnat(script: Vec<Step>) -> Vec<String> {
    run(script, options(), |cluster| async move { undo::undo(&cluster, "xnat", "istio-system").await }).await.unwrap()
}

#[tokio::test]
async fn undo_deletes_only_what_rollout_created_and_releases_the_runbooks_mesh_policy() {
    let mut script = undo_until_root_peer_authentications();
    script.extend([
        listed(
            &format!("{ISTIO}/istio-system/peerauthentications"),
            vec![ours(
                "istio-system",
                "default",
                json!({"xnat-guard.io/previous-spec": r#"{"mtls":{"mode":"STRICT"}}"#}),
            )],
        ),
        // Released, not deleted: an apply with no fields under the deployer's manager. The
        // STRICT kubectl set stays, since kubectl owns it too.
        apply(ROOT_PA, "31")
            .body(|b| {
                assert_eq!(b["metadata"], json!({"name": "default", "namespace": "istio-system"}), "{b}");
                assert!(b.get("spec").is_none(), "{b}");
            })
            .reply(200, runbook_mesh_policy()),
        release_namespace(),
    ]);
    let removed = undo_xnat(script).await;
    assert!(removed.contains(&"WasmPlugin xnat/xnat-guard: deleted".to_string()), "{removed:?}");
    assert!(removed.contains(&"PeerAuthentication xnat/xnat-guard: deleted".to_string()), "{removed:?}");
    assert!(
        removed.iter().any(|l| l.starts_with("PeerAuthentication istio-system/default: existed before the deployer")
            && l.contains("released")
            && l.contains("left as it was")),
        "{removed:?}"
    );
}

#[tokio::test]
async fn undo_puts_back_the_spec_force_conflicts_took_over() {
    let mut script = undo_until_root_peer_authentications();
    let mut lost = runbook_mesh_policy();
    lost["spec"] = json!({});
    lost["metadata"]["resourceVersion"] = json!("31");
    script.extend([
        listed(
            &format!("{ISTIO}/istio-system/peerauthentications"),
            vec![ours(
                "istio-system",
                "default",
                json!({"xnat-guard.io/previous-spec": r#"{"mtls":{"mode":"STRICT"}}"#}),
            )],
        ),
        apply(ROOT_PA, "31").reply(200, lost),
        Step::patch(ROOT_PA)
            .query("fieldManager=xnat-guard-deployer-undo")
            .body(|b| {
                assert_eq!(b["spec"], json!({"mtls": {"mode": "STRICT"}}), "{b}");
                assert_eq!(b["metadata"]["resourceVersion"], "31", "only over the object just released: {b}");
            })
            .reply(200, runbook_mesh_policy()),
        release_namespace(),
    ]);
    let removed = undo_xnat(script).await;
    assert!(
        removed.iter().any(|l| l.starts_with("PeerAuthentication istio-system/default: existed before the deployer")
            && l.contains("spec restored")),
        "{removed:?}"
    );
}

#[tokio::test]
async fn undo_of_one_namespace_keeps_the_mesh_policy_another_namespace_still_uses() {
    let shared = || {
        ours(
            "istio-system",
            "default",
            json!({"xnat-guard.io/created": "true", "xnat-guard.io/rollouts": "xnat,xnat2"}),
        )
    };
    let xnat2_wasm = "/apis/extensions.istio.io/v1alpha1/namespaces/xnat2/wasmplugins/xnat-guard";
    let mut script = undo_until_root_peer_authentications();
    script.extend([
        listed(&format!("{ISTIO}/istio-system/peerauthentications"), vec![shared()]),
        Step::get(xnat2_wasm).reply(200, ours("xnat2", "xnat-guard", created())),
        release_namespace(),
    ]);
    let removed = undo_xnat(script).await;
    assert!(
        removed
            .iter()
            .any(|l| l.starts_with("PeerAuthentication istio-system/default: kept") && l.contains("namespace xnat2")),
        "{removed:?}"
    );

    // Once xnat2's rollout is gone too, the object rollout created is deleted.
    let mut script = undo_until_root_peer_authentications();
    script.extend([
        listed(&format!("{ISTIO}/istio-system/peerauthentications"), vec![shared()]),
        Step::get(xnat2_wasm).not_found(),
        Step::delete(ROOT_PA).reply(200, json!({})),
        release_namespace(),
    ]);
    let removed = undo_xnat(script).await;
    assert!(removed.contains(&"PeerAuthentication istio-system/default: deleted".to_string()), "{removed:?}");
}

#[tokio::test]
async fn undo_in_a_namespace_that_does_not_exist_changes_nothing_and_creates_nothing() {
    // Releasing the injection label is a server-side apply of the namespace, which would create it.
    let script = vec![Step::get(NS).not_found()];
    let err = run(script, options(), |cluster| async move { undo::undo(&cluster, "xnat", "istio-system").await })
        .await
        .unwrap_err()
        .to_string();
    assert!(err.contains("namespace xnat does not exist"), "{err}");
}

//! `install` against the mock API server, on the runbook's cluster: a helm release `istio-base`
//! from Istio 1.11, whose CRDs are the base chart's plain files (no Helm ownership). The
//! prechecks find that Istio and refuse a jump Istio does not support; the one-time CRD
//! adoption a pre-1.24 base chart needs is planned and patched; verification finds istiod by its
//! labels and proves injection with a server-dry-run pod; the served API versions are read.

mod mock_api;
mod support;

use std::io::Write;

use base64::Engine;
use deployer::apply::{install, served, Options};
use deployer::kind::Kind;
use mock_api::{api_group, list, options, run, Step};
use serde_json::{json, Value};

const SSAR: &str = "/apis/authorization.k8s.io/v1/selfsubjectaccessreviews";
const CRDS: &str = "/apis/apiextensions.k8s.io/v1/customresourcedefinitions";
const SECRETS: &str = "/api/v1/namespaces/istio-system/secrets";
const ISTIO_DEPLOYMENTS: &str = "/apis/apps/v1/namespaces/istio-system/deployments";

fn version(minor: &str) -> Value {
    json!({"major": "1", "minor": minor, "gitVersion": "", "gitCommit": "", "gitTreeState": "", "buildDate": "2024-01-01T00:00:00Z", "goVersion": "", "compiler": "", "platform": ""})
}

/// An Istio CRD as the 1.11 base chart's `crds/crd-all.gen.yaml` left it: labelled, not Helm's.
fn plain_crd(name: &str) -> Value {
    let (plural, group) = name.split_once('.').unwrap();
    json!({"metadata": {"name": name, "labels": {"app": "istio-pilot", "chart": "istio", "heritage": "Tiller", "release": "istio"}},
           "spec": {"group": group, "names": {"kind": "K", "plural": plural}, "scope": "Namespaced", "versions": []}})
}

fn runbook_crds() -> Vec<Value> {
    [
        "destinationrules.networking.istio.io",
        "peerauthentications.security.istio.io",
        "authorizationpolicies.security.istio.io",
    ]
    .into_iter()
    .map(plain_crd)
    .collect()
}

/// A Helm 3 release record as the API returns its Secret: the API's base64 of Helm's base64 of
/// the gzipped JSON.
fn release_secret(release: &str, revision: u32, chart: &str, chart_version: &str) -> Value {
    let record =
        json!({"name": release, "version": revision, "chart": {"metadata": {"name": chart, "version": chart_version}}});
    let mut gz = flate2::write::GzEncoder::new(Vec::new(), flate2::Compression::default());
    gz.write_all(record.to_string().as_bytes()).unwrap();
    let b64 = base64::engine::general_purpose::STANDARD;
    json!({"metadata": {"name": format!("sh.helm.release.v1.{release}.v{revision}"), "namespace": "istio-system",
                        "labels": {"owner": "helm", "name": release, "status": "deployed", "version": revision.to_string()}},
           "type": "helm.sh/release.v1", "data": {"release": b64.encode(b64.encode(gz.finish().unwrap()))}})
}

/// The prechecks up to the Istio already installed: Kubernetes 1.31, cluster-admin, Istio's
/// CRDs by the two labels Istio's upgrade notes select them by.
fn prechecks_passing(crds: Vec<Value>) -> Vec<Step> {
    let allowed = json!({"spec": {}, "status": {"allowed": true}});
    let mut steps = vec![Step::get("/version").reply(200, version("31"))];
    steps.extend((0..4).map(|_| Step::post(SSAR).reply(201, allowed.clone())));
    steps.push(Step::get(CRDS).query("labelSelector=chart%3Distio").reply(200, list(crds)));
    steps.push(Step::get(CRDS).query("labelSelector=app.kubernetes.io%2Fpart-of%3Distio").reply(200, list(vec![])));
    steps
}

fn helm_records(secrets: Vec<Value>) -> Step {
    Step::get(SECRETS).query("labelSelector=owner%3Dhelm%2Cstatus%3Ddeployed").reply(200, list(secrets))
}

#[tokio::test]
async fn install_precheck_refuses_the_runbooks_istio_1_11_jump_to_1_28_and_names_the_path() {
    let mut script = prechecks_passing(runbook_crds());
    script.push(helm_records(vec![release_secret("istio-base", 1, "base", "1.11.4")]));
    let err = run(script, options(), |c| async move { install::precheck(&c, "1.28.0", "istio-system").await })
        .await
        .unwrap_err()
        .to_string();
    assert!(err.contains("Istio 1.11.4 is installed (helm release istio-base, revision 1)"), "{err}");
    assert!(err.contains("one minor version at a time") && err.contains("1.11 → 1.12 → 1.13"), "{err}");
    assert!(err.contains("1.27 → 1.28"), "{err}");
    // EKS on 1.31 never ran Istio 1.12 to 1.23: the way out is a fresh install, step by step.
    assert!(err.contains("Istio 1.12 to 1.23 were never supported on Kubernetes 1.31"), "{err}");
    assert!(err.contains("next: `helm -n istio-system uninstall istiod`"), "{err}");
    assert!(err.contains("`deployer install --version 1.28.0`"), "{err}");
}

#[tokio::test]
async fn install_precheck_plans_the_crd_adoption_an_istio_base_before_1_24_needs() {
    let mut script = prechecks_passing(runbook_crds());
    script.push(helm_records(vec![
        release_secret("istio-base", 3, "base", "1.23.6"),
        release_secret("istiod", 3, "istiod", "1.23.6"),
    ]));
    let found =
        run(script, options(), |c| async move { install::precheck(&c, "1.24.6", "istio-system").await }).await.unwrap();
    assert_eq!(found.installed.as_ref().unwrap().version, "1.23.6");
    assert!(found.notes.iter().any(|n| n.contains("upgrading Istio 1.23.6 to 1.24.6 in place")), "{:?}", found.notes);
    let names: Vec<&str> = found.adoption.iter().map(|a| a.crd.as_str()).collect();
    assert_eq!(
        names,
        [
            "authorizationpolicies.security.istio.io",
            "destinationrules.networking.istio.io",
            "peerauthentications.security.istio.io"
        ]
    );
}

#[tokio::test]
async fn install_precheck_reads_istiods_image_when_helm_records_are_forbidden() {
    let mut script = prechecks_passing(runbook_crds());
    script.push(Step::get(SECRETS).forbidden("list", "secrets", "", ""));
    let istiod = json!({"metadata": {"name": "istiod", "labels": {"app": "istiod"}},
                        "spec": {"selector": {}, "template": {"spec": {"containers": [{"name": "discovery", "image": "docker.io/istio/pilot:1.26.1"}]}}}});
    script.push(Step::get(ISTIO_DEPLOYMENTS).query("labelSelector=app%3Distiod").reply(200, list(vec![istiod])));
    let err = run(script, options(), |c| async move { install::precheck(&c, "1.28.0", "istio-system").await })
        .await
        .unwrap_err()
        .to_string();
    assert!(err.contains("Istio 1.26.1 is installed (Deployment istiod runs docker.io/istio/pilot:1.26.1)"), "{err}");
    assert!(err.contains("1.26 → 1.27 → 1.28"), "{err}");
}

#[tokio::test]
async fn install_precheck_on_a_cluster_without_istio_plans_nothing_to_adopt() {
    let mut script = prechecks_passing(vec![]);
    script.push(helm_records(vec![]));
    script.push(Step::get(ISTIO_DEPLOYMENTS).reply(200, list(vec![])));
    let found =
        run(script, options(), |c| async move { install::precheck(&c, "1.28.0", "istio-system").await }).await.unwrap();
    assert!(found.installed.is_none() && found.adoption.is_empty() && found.notes.is_empty(), "{found:?}");
}

fn adoption_patch() -> Value {
    json!({"metadata": {"labels": {"app.kubernetes.io/managed-by": "Helm"},
                        "annotations": {"meta.helm.sh/release-name": "istio-base", "meta.helm.sh/release-namespace": "istio-system"}}})
}

async fn adopt(dry_run: bool, script: Vec<Step>) -> Result<Vec<String>, deployer::apply::ApplyError> {
    let adoption =
        deployer::plan::install::crd_adoption("1.24.6", &runbook_crds(), "istio-base", "istio-system").unwrap();
    run(script, Options { dry_run, ..options() }, |c| async move { install::adopt_crds(&c, &adoption).await }).await
}

#[tokio::test]
async fn install_adopts_each_crd_with_a_merge_patch_of_its_metadata_only() {
    let script: Vec<Step> = [
        "authorizationpolicies.security.istio.io",
        "destinationrules.networking.istio.io",
        "peerauthentications.security.istio.io",
    ]
    .iter()
    .map(|name| {
        Step::patch(&format!("{CRDS}/{name}"))
            .no_query("dryRun")
            .body(|b| assert_eq!(b, &adoption_patch(), "metadata only, nothing else of the CRD"))
            .reply(200, plain_crd(name))
    })
    .collect();
    let report = adopt(false, script).await.unwrap();
    assert_eq!(report[1], "CRD destinationrules.networking.istio.io adopted into helm release istio-base");
}

#[tokio::test]
async fn install_dry_run_adoption_is_a_server_dry_run_and_a_refusal_says_how_to_do_it_by_hand() {
    let name = "authorizationpolicies.security.istio.io";
    let script = vec![
        Step::patch(&format!("{CRDS}/{name}")).query("dryRun=All").reply(200, plain_crd(name)),
        Step::patch(&format!("{CRDS}/destinationrules.networking.istio.io")).query("dryRun=All").forbidden(
            "patch",
            "customresourcedefinitions",
            "apiextensions.k8s.io",
            "destinationrules.networking.istio.io",
        ),
    ];
    let err = adopt(true, script).await.unwrap_err().to_string();
    assert!(err.contains("adopting CRD destinationrules.networking.istio.io into helm release istio-base"), "{err}");
    assert!(err.contains("kubectl patch crd destinationrules.networking.istio.io --type merge"), "{err}");
    assert!(err.contains("forbidden"), "{err}");
}

/// The reads of verify before istiod: the four CRDs.
/// What verify reads first: the served Istio APIs of 1.28 and the four CRDs, as 1.28 has them.
fn crds_present() -> Vec<Step> {
    let mut steps = vec![
        api_group("security.istio.io", &["v1", "v1beta1"]),
        api_group("networking.istio.io", &["v1", "v1beta1", "v1alpha3"]),
        api_group("extensions.istio.io", &["v1alpha1"]),
    ];
    steps.extend(crd_reads(|step, name| {
        step.reply(
            200,
            shared_crd(deployer::plan::install::REQUIRED_CRDS.iter().find(|k| k.crd_name() == name).unwrap().kind),
        )
    }));
    steps
}

fn istiod(name: &str, revision: &str, updated: i32) -> Value {
    json!({"metadata": {"name": name, "generation": 1, "labels": {"app": "istiod", "istio.io/rev": revision}},
           "spec": {"replicas": 1, "selector": {"matchLabels": {"app": "istiod"}}, "template": {}},
           "status": {"observedGeneration": 1, "replicas": 1, "updatedReplicas": updated, "availableReplicas": updated}})
}

fn webhook_present() -> Step {
    Step::get("/apis/admissionregistration.k8s.io/v1/mutatingwebhookconfigurations")
        .query("labelSelector=app%3Dsidecar-injector")
        .reply(200, list(vec![json!({"metadata": {"name": "istio-sidecar-injector"}})]))
}

fn labelled_namespaces(names: &[&str]) -> Step {
    let items =
        names.iter().map(|n| json!({"metadata": {"name": n, "labels": {"istio-injection": "enabled"}}})).collect();
    Step::get("/api/v1/namespaces").query("labelSelector=istio-injection%3Denabled").reply(200, list(items))
}

/// The pod the admission chain returns from a dry-run create, with or without the sidecar.
fn admitted_pod(namespace: &str, with_sidecar: bool) -> Value {
    let mut containers = vec![json!({"name": "check", "image": "registry.k8s.io/pause:3.10"})];
    if with_sidecar {
        containers.push(json!({"name": "istio-proxy", "image": "docker.io/istio/proxyv2:1.28.0"}));
    }
    json!({"metadata": {"name": "xnat-guard-injection-check", "namespace": namespace}, "spec": {"containers": containers}})
}

#[tokio::test]
async fn install_verify_finds_a_revisioned_istiod_by_its_labels_and_proves_injection_with_a_dry_run_pod() {
    let mut script = crds_present();
    let by_revision = "labelSelector=app%3Distiod%2Cistio.io%2Frev%3Dcanary";
    script.extend([
        // No Deployment named istiod: the canary revision's is istiod-canary.
        Step::get(ISTIO_DEPLOYMENTS).query(by_revision).reply(200, list(vec![istiod("istiod-canary", "canary", 0)])),
        Step::get(ISTIO_DEPLOYMENTS).query(by_revision).reply(200, list(vec![istiod("istiod-canary", "canary", 1)])),
        webhook_present(),
        labelled_namespaces(&["xnat"]),
        Step::post("/api/v1/namespaces/xnat/pods")
            .query("dryRun=All")
            .body(|b| {
                assert_eq!(b["metadata"]["name"], "xnat-guard-injection-check");
                assert!(b["spec"]["containers"].as_array().is_some_and(|c| c.len() == 1), "{b}");
            })
            .reply(201, admitted_pod("xnat", true)),
    ]);
    let report =
        run(script, options(), |c| async move { install::verify(&c, "istio-system", "canary", "1.28.0").await })
            .await
            .unwrap();
    assert!(report.contains(&"istiod rolled out (Deployment istio-system/istiod-canary)".to_string()), "{report:?}");
    assert_eq!(
        report.last().unwrap(),
        "injection works: a pod created in xnat (labelled istio-injection=enabled, server dry run) got istio-proxy"
    );
}

fn verify_up_to_injection() -> Vec<Step> {
    let mut script = crds_present();
    script.extend([
        Step::get(ISTIO_DEPLOYMENTS)
            .query("labelSelector=app%3Distiod%2Cistio.io%2Frev%3Ddefault")
            .reply(200, list(vec![istiod("istiod", "default", 1)])),
        webhook_present(),
    ]);
    script
}

#[tokio::test]
async fn install_verify_fails_when_the_dry_run_pod_comes_back_without_a_sidecar() {
    let mut script = verify_up_to_injection();
    script.extend([
        labelled_namespaces(&["xnat"]),
        Step::post("/api/v1/namespaces/xnat/pods").query("dryRun=All").reply(201, admitted_pod("xnat", false)),
    ]);
    let err = run(script, options(), |c| async move { install::verify(&c, "istio-system", "default", "1.28.0").await })
        .await
        .unwrap_err()
        .to_string();
    assert!(err.contains("a pod created in xnat") && err.contains("came back without istio-proxy"), "{err}");
    assert!(err.contains("kubectl get mutatingwebhookconfiguration"), "{err}");
}

#[tokio::test]
async fn install_verify_without_a_labelled_namespace_asks_the_webhook_with_a_labelled_pod_in_default() {
    let mut script = verify_up_to_injection();
    script.extend([
        labelled_namespaces(&[]),
        Step::post("/api/v1/namespaces/default/pods")
            .query("dryRun=All")
            .body(|b| assert_eq!(b["metadata"]["labels"]["sidecar.istio.io/inject"], "true"))
            .reply(201, admitted_pod("default", true)),
    ]);
    let report =
        run(script, options(), |c| async move { install::verify(&c, "istio-system", "default", "1.28.0").await })
            .await
            .unwrap();
    assert!(
        report.last().unwrap().contains("in default (as a pod labelled sidecar.istio.io/inject=true"),
        "{report:?}"
    );
}

#[tokio::test]
async fn install_verify_reports_a_failing_injection_webhook_with_where_to_look() {
    let mut script = verify_up_to_injection();
    script.extend([
        labelled_namespaces(&["xnat"]),
        Step::post("/api/v1/namespaces/xnat/pods").query("dryRun=All").reply(
            500,
            mock_api::status(
                500,
                "InternalError",
                "Internal error occurred: failed calling webhook \"namespace.sidecar-injector.istio.io\": context deadline exceeded",
                json!({}),
            ),
        ),
    ]);
    let err = run(script, options(), |c| async move { install::verify(&c, "istio-system", "default", "1.28.0").await })
        .await
        .unwrap_err()
        .to_string();
    assert!(err.contains("failed calling webhook") && err.contains("logs deploy/istiod"), "{err}");
    // The runbook's EKS: the API server reaches istiod's webhook on the nodes' port 15017.
    assert!(err.contains("port 15017") && err.contains("security group"), "{err}");
}

/// One of the shared reference CRDs (a recent Istio's), by kind.
fn shared_crd(kind: &str) -> Value {
    support::istio_crds().into_iter().find(|crd| crd["spec"]["names"]["kind"] == kind).unwrap()
}

/// The shared WasmPlugin CRD as an Istio whose failStrategy takes only `strategies` has it.
fn wasm_plugin_crd(strategies: &[&str]) -> Value {
    let mut crd = shared_crd("WasmPlugin");
    for v in crd["spec"]["versions"].as_array_mut().unwrap() {
        v["schema"]["openAPIV3Schema"]["properties"]["spec"]["properties"]["failStrategy"]["enum"] = json!(strategies);
    }
    crd
}

/// Reading the CRDs of the four kinds the deployer writes, WasmPlugin first, each answered so.
fn crd_reads(answer: impl Fn(Step, &str) -> Step) -> Vec<Step> {
    deployer::plan::install::REQUIRED_CRDS
        .iter()
        .map(|kind| {
            let name = kind.crd_name();
            answer(Step::get(&format!("{CRDS}/{name}")), &name)
        })
        .collect()
}

#[tokio::test]
async fn served_versions_of_the_runbooks_istio_1_11_are_v1beta1_and_it_has_no_wasm_plugin() {
    let mut script = vec![
        api_group("security.istio.io", &["v1beta1"]),
        api_group("networking.istio.io", &["v1beta1", "v1alpha3"]),
        Step::get("/apis/extensions.istio.io").not_found(),
    ];
    script.extend(crd_reads(|step, name| {
        if name.starts_with("wasmplugins") {
            step.not_found()
        } else {
            step.reply(200, plain_crd(name))
        }
    }));
    let apis = run(script, options(), |c| async move { served::served_apis(&c).await }).await.unwrap();
    assert_eq!(apis.kind(Kind::PEER_AUTHENTICATION).unwrap().api_version(), "security.istio.io/v1beta1");
    assert_eq!(apis.kind(Kind::DESTINATION_RULE).unwrap().api_version(), "networking.istio.io/v1beta1");
    let err = apis.kind(Kind::WASM_PLUGIN).unwrap_err().to_string();
    assert!(err.contains("WasmPlugin") && err.contains("deployer install"), "{err}");
}

#[tokio::test]
async fn served_versions_of_istio_1_26_are_v1_without_fail_reload() {
    let mut script = vec![
        api_group("security.istio.io", &["v1", "v1beta1"]),
        api_group("networking.istio.io", &["v1", "v1beta1", "v1alpha3"]),
        api_group("extensions.istio.io", &["v1alpha1"]),
    ];
    script.extend(crd_reads(|step, name| {
        if name.starts_with("wasmplugins") {
            step.reply(200, wasm_plugin_crd(&["FAIL_CLOSE", "FAIL_OPEN"]))
        } else {
            step.not_found()
        }
    }));
    let apis = run(script, options(), |c| async move { served::served_apis(&c).await }).await.unwrap();
    assert_eq!(apis.kind(Kind::AUTHORIZATION_POLICY).unwrap(), Kind::AUTHORIZATION_POLICY);
    let mut plugin = json!({"apiVersion": "extensions.istio.io/v1alpha1", "spec": {"failStrategy": "FAIL_RELOAD"}});
    let err = apis.adapt(Kind::WASM_PLUGIN, &mut plugin).unwrap_err().to_string();
    assert!(err.contains("FAIL_RELOAD") && err.contains("Istio 1.27"), "{err}");
}

#[tokio::test]
async fn served_versions_for_a_user_who_may_not_read_crds_leave_fail_reload_to_the_server() {
    let mut script = vec![
        api_group("security.istio.io", &["v1", "v1beta1"]),
        api_group("networking.istio.io", &["v1"]),
        api_group("extensions.istio.io", &["v1alpha1"]),
    ];
    script.extend(crd_reads(|step, name| {
        step.forbidden("get", "customresourcedefinitions", "apiextensions.k8s.io", name)
    }));
    let apis = run(script, options(), |c| async move { served::served_apis(&c).await }).await.unwrap();
    assert_eq!(apis.fail_reload, None);
}

/// The runbook's rollout plan, as `rollout` would apply it.
fn runbook_plan() -> deployer::plan::rollout::Plan {
    let root = std::path::Path::new(env!("CARGO_MANIFEST_DIR")).parent().unwrap().to_path_buf();
    let file = root.join("examples/runbook/istio-auth-policy-post.yaml");
    let module =
        deployer::plan::rollout::ModuleRef::new("oci://registry.example/xnat-guard:0.1.0", &"ab".repeat(32)).unwrap();
    let spec = deployer::plan::rollout::Spec::new("xnat", deployer::resources::load_files(&[file]).unwrap(), module);
    deployer::plan::rollout::plan(&deployer::plan::rollout::Spec { plaintext_ports: vec![8080], ..spec }).unwrap()
}

#[tokio::test]
async fn a_plan_for_a_cluster_before_istio_1_22_is_applied_as_v1beta1() {
    let mut script = vec![
        api_group("security.istio.io", &["v1beta1"]),
        api_group("networking.istio.io", &["v1beta1", "v1alpha3"]),
        api_group("extensions.istio.io", &["v1alpha1"]),
    ];
    script.extend(crd_reads(|step, name| {
        if name.starts_with("wasmplugins") {
            step.reply(200, wasm_plugin_crd(&["FAIL_CLOSE", "FAIL_OPEN"]))
        } else {
            step.reply(200, plain_crd(name))
        }
    }));
    let plan = runbook_plan();
    let manifests =
        run(script, options(), |c| async move { served::for_cluster(&c, &plan.manifests).await }).await.unwrap();
    let pa = manifests.iter().find(|m| m.kind.kind == "PeerAuthentication").unwrap();
    assert_eq!(pa.kind.version, "v1beta1");
    assert_eq!(pa.body["apiVersion"], "security.istio.io/v1beta1");
    let wasm = manifests.iter().find(|m| m.kind.kind == "WasmPlugin").unwrap();
    assert_eq!(wasm.body["apiVersion"], "extensions.istio.io/v1alpha1");
}

#[tokio::test]
async fn a_plan_for_the_runbooks_istio_1_11_is_refused_before_anything_is_applied() {
    let mut script = vec![
        api_group("security.istio.io", &["v1beta1"]),
        api_group("networking.istio.io", &["v1beta1", "v1alpha3"]),
        Step::get("/apis/extensions.istio.io").not_found(),
    ];
    script.extend(crd_reads(|step, name| {
        if name.starts_with("wasmplugins") {
            step.not_found()
        } else {
            step.reply(200, plain_crd(name))
        }
    }));
    let plan = runbook_plan();
    let err = run(script, options(), |c| async move { served::for_cluster(&c, &plan.manifests).await })
        .await
        .unwrap_err()
        .to_string();
    assert!(err.contains("WasmPlugin xnat/xnat-guard") && err.contains("deployer install"), "{err}");
}

#[tokio::test]
async fn install_verify_waits_through_an_api_server_restart_while_istiod_rolls_out() {
    let mut script = crds_present();
    let by_revision = "labelSelector=app%3Distiod%2Cistio.io%2Frev%3Ddefault";
    script.extend([
        Step::get(ISTIO_DEPLOYMENTS).query(by_revision).reply(200, list(vec![istiod("istiod", "default", 0)])),
        Step::get(ISTIO_DEPLOYMENTS).query(by_revision).transient(503),
        Step::get(ISTIO_DEPLOYMENTS).query(by_revision).connection_reset(),
        Step::get(ISTIO_DEPLOYMENTS).query(by_revision).reply(200, list(vec![istiod("istiod", "default", 1)])),
        webhook_present(),
        labelled_namespaces(&["xnat"]),
        Step::post("/api/v1/namespaces/xnat/pods").query("dryRun=All").reply(201, admitted_pod("xnat", true)),
    ]);
    let report =
        run(script, options(), |c| async move { install::verify(&c, "istio-system", "default", "1.28.0").await })
            .await
            .unwrap();
    assert!(report.contains(&"istiod rolled out (Deployment istio-system/istiod)".to_string()), "{report:?}");
}

#[tokio::test]
async fn install_verify_without_any_istiod_of_the_revision_times_out_saying_where_to_look() {
    let mut script = crds_present();
    script.push(
        Step::get(ISTIO_DEPLOYMENTS)
            .query("labelSelector=app%3Distiod%2Cistio.io%2Frev%3Ddefault")
            .reply(200, list(vec![]))
            .repeated(),
    );
    let err = run(script, options(), |c| async move { install::verify(&c, "istio-system", "default", "1.28.0").await })
        .await
        .unwrap_err()
        .to_string();
    assert!(err.contains("no istiod Deployment labelled app=istiod,istio.io/rev=default in istio-system"), "{err}");
    assert!(err.contains("-L istio.io/rev"), "{err}");
}

#[test]
fn one_manifest_is_adapted_at_the_apply_call_leaving_the_plan_as_rendered() {
    let served = deployer::inspect::served::ServedApis {
        security: vec!["v1beta1".into()],
        networking: vec!["v1beta1".into()],
        extensions: vec!["v1alpha1".into()],
        fail_reload: Some(false),
        crds: vec![],
    };
    let plan = runbook_plan();
    let pa = plan.manifests.iter().find(|m| m.kind == Kind::PEER_AUTHENTICATION).unwrap();
    let adapted = served::adapted(&served, pa).unwrap();
    assert_eq!(adapted.body["apiVersion"], "security.istio.io/v1beta1");
    assert_eq!(pa.body["apiVersion"], "security.istio.io/v1", "the plan itself keeps Kind::PEER_AUTHENTICATION");
}

#[tokio::test]
async fn the_runbook_plan_fits_the_schemas_of_the_crds_a_recent_istio_serves() {
    let mut script = vec![
        api_group("security.istio.io", &["v1", "v1beta1"]),
        api_group("networking.istio.io", &["v1", "v1beta1", "v1alpha3"]),
        api_group("extensions.istio.io", &["v1alpha1"]),
    ];
    script.extend(crd_reads(|step, name| {
        let kind = deployer::plan::install::REQUIRED_CRDS.iter().find(|k| k.crd_name() == name).unwrap().kind;
        step.reply(200, shared_crd(kind))
    }));
    let plan = runbook_plan();
    let manifests =
        run(script, options(), |c| async move { served::for_cluster(&c, &plan.manifests).await }).await.unwrap();
    assert_eq!(manifests.len(), runbook_plan().manifests.len());
}

#[tokio::test]
async fn a_plan_field_the_clusters_crd_lacks_is_refused_naming_the_object_and_the_field() {
    let mut older = shared_crd("WasmPlugin");
    for v in older["spec"]["versions"].as_array_mut().unwrap() {
        v["schema"]["openAPIV3Schema"]["properties"]["spec"]["properties"].as_object_mut().unwrap().remove("phase");
    }
    let mut script = vec![
        api_group("security.istio.io", &["v1"]),
        api_group("networking.istio.io", &["v1"]),
        api_group("extensions.istio.io", &["v1alpha1"]),
    ];
    script.extend(crd_reads(move |step, name| {
        if name.starts_with("wasmplugins") {
            step.reply(200, older.clone())
        } else {
            step.not_found()
        }
    }));
    let plan = runbook_plan();
    let err = run(script, options(), |c| async move { served::for_cluster(&c, &plan.manifests).await })
        .await
        .unwrap_err()
        .to_string();
    assert!(err.starts_with("WasmPlugin xnat/xnat-guard: the cluster's WasmPlugin CRD"), "{err}");
    assert!(err.contains("has no field .spec.phase") && err.contains("nothing was applied"), "{err}");
}

#[tokio::test]
async fn install_verify_finds_crds_still_at_the_old_istio_and_says_why_and_what_to_run() {
    // A pre-1.24 istio-base upgraded by hand never updates its CRDs: no v1, no FAIL_RELOAD.
    let mut script = vec![
        api_group("security.istio.io", &["v1beta1"]),
        api_group("networking.istio.io", &["v1beta1", "v1alpha3"]),
        api_group("extensions.istio.io", &["v1alpha1"]),
    ];
    script.extend(crd_reads(|step, name| {
        if name.starts_with("wasmplugins") {
            step.reply(200, wasm_plugin_crd(&["FAIL_CLOSE", "FAIL_OPEN"]))
        } else {
            step.reply(200, plain_crd(name))
        }
    }));
    let err = run(script, options(), |c| async move { install::verify(&c, "istio-system", "default", "1.28.0").await })
        .await
        .unwrap_err()
        .to_string();
    assert!(err.contains("Istio's CRDs are older than 1.28.0"), "{err}");
    assert!(err.contains("security.istio.io/v1 is not served") && err.contains("FAIL_RELOAD"), "{err}");
    assert!(err.contains("re-run `deployer install --version 1.28.0`"), "{err}");
}

#[tokio::test]
async fn install_verify_names_a_crd_missing_after_the_base_chart() {
    let mut script = vec![
        api_group("security.istio.io", &["v1", "v1beta1"]),
        api_group("networking.istio.io", &["v1", "v1beta1", "v1alpha3"]),
        api_group("extensions.istio.io", &["v1alpha1"]),
    ];
    script.extend(crd_reads(|step, name| {
        if name.starts_with("destinationrules") {
            step.not_found()
        } else {
            step.reply(
                200,
                shared_crd(deployer::plan::install::REQUIRED_CRDS.iter().find(|k| k.crd_name() == name).unwrap().kind),
            )
        }
    }));
    let err = run(script, options(), |c| async move { install::verify(&c, "istio-system", "default", "1.28.0").await })
        .await
        .unwrap_err()
        .to_string();
    assert!(err.contains("CRD destinationrules.networking.istio.io is missing after the base chart"), "{err}");
    assert!(err.contains("helm -n istio-system status istio-base"), "{err}");
}

#[tokio::test]
async fn install_verify_says_when_pod_security_would_refuse_the_injected_pods() {
    let mut script = verify_up_to_injection();
    let refusal = "pods \"xnat-guard-injection-check\" is forbidden: violates PodSecurity \"baseline:latest\": \
                   non-default capabilities (container \"istio-init\" must not include \"NET_ADMIN\", \"NET_RAW\" in securityContext.capabilities.add)";
    script.extend([
        labelled_namespaces(&["xnat"]),
        Step::post("/api/v1/namespaces/xnat/pods").query("dryRun=All").reply(
            403,
            mock_api::status(403, "Forbidden", refusal, json!({"name": "xnat-guard-injection-check", "kind": "pods"})),
        ),
    ]);
    let err = run(script, options(), |c| async move { install::verify(&c, "istio-system", "default", "1.28.0").await })
        .await
        .unwrap_err()
        .to_string();
    assert!(err.contains("Pod Security admission in xnat would refuse every injected pod"), "{err}");
    assert!(err.contains("istio-init") && err.contains("NET_ADMIN"), "the API server's words are quoted: {err}");
    assert!(err.contains("Istio CNI") && !err.contains("your credentials lack"), "{err}");
}

// The plan of the one-time CRD adoption, golden: what `install --dry-run` prints of it.

/// Istio's CRDs as a pre-1.24 base chart left them: the plain files of `crds/`, labelled
/// `chart=istio` and owned by no Helm release. The shared reference data is such a file.
fn plain_istio_crds() -> Vec<serde_json::Value> {
    support::istio_crds()
}

#[test]
fn install_over_a_pre_1_24_istio_base_adopts_each_istio_crd_into_the_release_once() {
    let adoption =
        deployer::plan::install::crd_adoption("1.28.0", &plain_istio_crds(), "istio-base", "istio-system").unwrap();
    support::assert_golden(
        "install-crd-adoption.txt",
        &deployer::plan::install::adoption_text(&adoption, "istio-base"),
    );
}

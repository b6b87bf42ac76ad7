//! `kiali install`, `kiali token` and `hpa` against an in-process mock API server that answers
//! as a real one does: the Kiali operator's objects as its sources make them (the server's
//! Deployment named after `deployment.instance_name`, its service account
//! `<instance_name>-service-account`, the CR's `status.deployment`), and the AIS chart's
//! StatefulSet with a Helm-rendered HPA.

mod ais;
mod mock_api;

use ais::Web;
use deployer::apply::hpa::{self, HpaOptions};
use deployer::apply::kiali::{self, Outcome};
use deployer::apply::{ApplyError, Options};
use deployer::plan::kiali::{AddonFile, Spec};
use mock_api::{apply, list, options, run, Step};
use serde_json::{json, Value};

const KIALI_CR: &str = "/apis/kiali.io/v1alpha1/namespaces/istio-system/kialis/kiali";
const KIALI_DEPLOYMENT: &str = "/apis/apps/v1/namespaces/istio-system/deployments/kiali";
const KIALI_GROUP_VERSION: &str = "/apis/kiali.io/v1alpha1";
const PROMETHEUS_SA: &str = "/api/v1/namespaces/istio-system/serviceaccounts/prometheus";

/// The Kiali CR once the operator has reconciled it: `Successful`, and where it put the server.
fn reconciled_cr() -> Value {
    json!({
        "apiVersion": "kiali.io/v1alpha1", "kind": "Kiali",
        "metadata": {"name": "kiali", "namespace": "istio-system"},
        "spec": {"auth": {"strategy": "token"}},
        "status": {
            "deployment": {"instanceName": "kiali", "namespace": "istio-system"},
            "conditions": [{"type": "Successful", "status": "True", "message": "Awaiting next reconciliation"}]
        }
    })
}

/// The server's Deployment as the operator renders it: the pod spec names the service account
/// with the deprecated `serviceAccount` field, which the API server copies to `serviceAccountName`.
fn kiali_deployment(available: bool) -> Value {
    json!({
        "apiVersion": "apps/v1", "kind": "Deployment",
        "metadata": {"name": "kiali", "namespace": "istio-system", "generation": 1},
        "spec": {"replicas": 1, "selector": {"matchLabels": {"app.kubernetes.io/name": "kiali"}},
                 "template": {"metadata": {"labels": {"app.kubernetes.io/name": "kiali"}},
                              "spec": {"serviceAccount": "kiali-service-account",
                                       "serviceAccountName": "kiali-service-account",
                                       "containers": [{"name": "kiali", "image": "quay.io/kiali/kiali:v2.17.0"}]}}},
        "status": if available {
            json!({"observedGeneration": 1, "replicas": 1, "readyReplicas": 1, "availableReplicas": 1,
                   "conditions": [{"type": "Available", "status": "True", "reason": "MinimumReplicasAvailable",
                                   "message": "Deployment has minimum availability."}]})
        } else {
            json!({"observedGeneration": 1, "replicas": 1, "unavailableReplicas": 1,
                   "conditions": [{"type": "Available", "status": "False", "reason": "MinimumReplicasUnavailable",
                                   "message": "Deployment does not have minimum availability."}]})
        }
    })
}

fn token_reply() -> Value {
    json!({"spec": {"audiences": []}, "status": {"token": "eyJhbGciOi.token", "expirationTimestamp": "2026-11-26T01:00:00Z"}})
}

#[tokio::test]
async fn kiali_token_is_for_the_service_account_the_kiali_deployment_runs_as() {
    let script = vec![
        Step::get(KIALI_CR).reply(200, reconciled_cr()),
        Step::get(KIALI_DEPLOYMENT).reply(200, kiali_deployment(true)),
        Step::post("/api/v1/namespaces/istio-system/serviceaccounts/kiali-service-account/token")
            .body(|b| assert_eq!(b["spec"]["expirationSeconds"], 600))
            .reply(201, token_reply()),
    ];
    let token =
        run(script, options(), |c| async move { kiali::token(&c, "istio-system", "kiali", None, 600).await }).await;
    assert_eq!(token.unwrap(), "eyJhbGciOi.token");
}

#[tokio::test]
async fn kiali_token_follows_the_cr_to_the_namespace_and_instance_it_deploys() {
    let mut cr = reconciled_cr();
    cr["status"]["deployment"] = json!({"instanceName": "kiali-prod", "namespace": "kiali"});
    let mut deployment = kiali_deployment(true);
    deployment["spec"]["template"]["spec"]["serviceAccountName"] = json!("kiali-prod-service-account");
    let script = vec![
        Step::get(KIALI_CR).reply(200, cr),
        Step::get("/apis/apps/v1/namespaces/kiali/deployments/kiali-prod").reply(200, deployment),
        Step::post("/api/v1/namespaces/kiali/serviceaccounts/kiali-prod-service-account/token")
            .reply(201, token_reply()),
    ];
    let token =
        run(script, options(), |c| async move { kiali::token(&c, "istio-system", "kiali", None, 600).await }).await;
    assert_eq!(token.unwrap(), "eyJhbGciOi.token");
}

#[tokio::test]
async fn kiali_token_with_a_named_service_account_asks_for_it_directly() {
    let script =
        vec![Step::post("/api/v1/namespaces/istio-system/serviceaccounts/kiali/token").reply(201, token_reply())];
    let token =
        run(script, options(), |c| async move { kiali::token(&c, "istio-system", "kiali", Some("kiali"), 600).await })
            .await;
    assert_eq!(token.unwrap(), "eyJhbGciOi.token");
}

#[tokio::test]
async fn kiali_token_without_a_kiali_cr_says_how_to_install_or_name_the_account() {
    let script = vec![Step::get(KIALI_CR).not_found()];
    let err = run(script, options(), |c| async move { kiali::token(&c, "istio-system", "kiali", None, 600).await })
        .await
        .unwrap_err()
        .to_string();
    assert!(err.contains("no Kiali CR istio-system/kiali"), "{err}");
    assert!(err.contains("deployer kiali install") && err.contains("--service-account"), "{err}");
}

#[tokio::test]
async fn kiali_token_when_the_operator_has_not_deployed_the_server_says_where_to_look() {
    let script = vec![Step::get(KIALI_CR).reply(200, reconciled_cr()), Step::get(KIALI_DEPLOYMENT).not_found()];
    let err = run(script, options(), |c| async move { kiali::token(&c, "istio-system", "kiali", None, 600).await })
        .await
        .unwrap_err()
        .to_string();
    assert!(err.contains("Deployment istio-system/kiali does not exist"), "{err}");
    assert!(err.contains("kubectl -n kiali-operator logs deploy/kiali-operator"), "{err}");
}

#[tokio::test]
async fn kiali_token_refused_by_rbac_names_the_permission() {
    let script = vec![
        Step::get(KIALI_CR).reply(200, reconciled_cr()),
        Step::get(KIALI_DEPLOYMENT).reply(200, kiali_deployment(true)),
        Step::post("/api/v1/namespaces/istio-system/serviceaccounts/kiali-service-account/token").forbidden(
            "create",
            "serviceaccounts/token",
            "",
            "kiali-service-account",
        ),
    ];
    let err = run(script, options(), |c| async move { kiali::token(&c, "istio-system", "kiali", None, 600).await })
        .await
        .unwrap_err()
        .to_string();
    assert!(err.contains("istio-system/kiali-service-account") && err.contains("forbidden"), "{err}");
}

fn small_plan() -> deployer::plan::kiali::Plan {
    let addons = vec![AddonFile {
        origin: "samples/addons/prometheus.yaml".into(),
        text: "apiVersion: v1\nkind: ServiceAccount\nmetadata: {name: prometheus}\n".into(),
    }];
    let spec = Spec {
        namespace: "istio-system".into(),
        service_type: "LoadBalancer".into(),
        operator_version: "2.17.0".into(),
        timeout_secs: 300,
        addons,
    };
    deployer::plan::kiali::plan(&spec).unwrap()
}

#[tokio::test]
async fn kiali_install_dry_run_without_the_operator_crd_validates_the_add_ons_and_says_the_cr_waits_for_the_crd() {
    let script = vec![
        // The operator chart's crds/ is not installed by a helm dry run: kiali.io is not served.
        Step::get(KIALI_GROUP_VERSION).not_found(),
        Step::get(PROMETHEUS_SA).not_found(),
        apply(PROMETHEUS_SA, "1").query("dryRun=All"),
    ];
    let plan = small_plan();
    let outcomes = run(script, Options { dry_run: true, ..options() }, |c| async move {
        kiali::apply_manifests(&c, &plan, |_, _| {}).await
    })
    .await
    .unwrap();
    assert_eq!(outcomes.len(), 2, "{outcomes:?}");
    assert_eq!(outcomes[0].0, "ServiceAccount istio-system/prometheus");
    assert_eq!(outcomes[0].1.to_string(), "valid (dry run, not applied)");
    assert_eq!(outcomes[1].0, "Kiali istio-system/kiali");
    let Outcome::NotValidated(why) = &outcomes[1].1 else { panic!("the CR is not validated: {outcomes:?}") };
    assert!(why.contains("kialis.kiali.io") && why.contains("kiali-operator chart"), "{why}");
    assert!(outcomes[1].1.to_string().starts_with("not validated (dry run)"), "{}", outcomes[1].1);
}

#[tokio::test]
async fn kiali_install_dry_run_with_the_crd_installed_validates_the_cr_server_side() {
    let script = vec![
        Step::get(KIALI_GROUP_VERSION).reply(
            200,
            json!({"kind": "APIResourceList", "apiVersion": "v1", "groupVersion": "kiali.io/v1alpha1",
                   "resources": [{"name": "kialis", "singularName": "kiali", "namespaced": true, "kind": "Kiali", "verbs": ["get", "patch"]}]}),
        ),
        Step::get(PROMETHEUS_SA).not_found(),
        apply(PROMETHEUS_SA, "1").query("dryRun=All"),
        Step::get(KIALI_CR).not_found(),
        apply(KIALI_CR, "1").query("dryRun=All"),
    ];
    let plan = small_plan();
    let outcomes = run(script, Options { dry_run: true, ..options() }, |c| async move {
        kiali::apply_manifests(&c, &plan, |_, _| {}).await
    })
    .await
    .unwrap();
    assert!(outcomes.iter().all(|(_, o)| o.to_string() == "valid (dry run, not applied)"), "{outcomes:?}");
}

#[tokio::test]
async fn kiali_install_on_a_cluster_whose_operator_release_lacks_the_crd_says_how_to_install_it() {
    // A real run: helm installs a chart's crds/ only when it first installs the release, so a
    // release that existed without them (or `--skip-crds`) leaves kialis.kiali.io missing.
    let script = vec![
        Step::get(PROMETHEUS_SA).not_found(),
        apply(PROMETHEUS_SA, "1"),
        Step::get(KIALI_CR).not_found(),
        Step::patch(KIALI_CR).not_found(),
    ];
    let plan = small_plan();
    let err = run(script, options(), |c| async move { kiali::apply_manifests(&c, &plan, |_, _| {}).await })
        .await
        .unwrap_err()
        .to_string();
    assert!(err.contains("the API server does not serve kialis.kiali.io"), "{err}");
    assert!(err.contains("helm show crds kiali-operator --repo https://kiali.org/helm-charts"), "{err}");
}

#[tokio::test]
async fn kiali_install_waits_for_the_kiali_deployment_to_be_available_not_only_the_cr() {
    let script = vec![
        Step::get(KIALI_CR).reply(200, reconciled_cr()),
        Step::get(KIALI_DEPLOYMENT).reply(200, kiali_deployment(false)),
        Step::get(KIALI_CR).reply(200, reconciled_cr()),
        Step::get(KIALI_DEPLOYMENT).reply(200, kiali_deployment(true)),
    ];
    let deployed = run(script, options(), |c| async move { kiali::wait_for_kiali(&c, "istio-system").await }).await;
    assert_eq!(deployed.unwrap().describe(), "Deployment istio-system/kiali");
}

#[tokio::test]
async fn kiali_that_never_becomes_available_is_a_timeout_naming_the_deployment() {
    let script = never_available();
    let err =
        run(script, options(), |c| async move { kiali::wait_for_kiali(&c, "istio-system").await }).await.unwrap_err();
    let ApplyError::Timeout(message) = &err else { panic!("expected a timeout, got {err}") };
    assert!(message.contains("Deployment istio-system/kiali is not available"), "{message}");
    assert!(message.contains("does not have minimum availability"), "{message}");
    assert!(message.contains("kubectl -n istio-system describe deploy/kiali"), "{message}");
}

/// The CR reconciled and its Deployment unavailable, poll after poll: repeated steps, each
/// skipped once the next one matches, so the two answer in turn.
fn never_available() -> Vec<Step> {
    (0..200)
        .flat_map(|_| {
            [
                Step::get(KIALI_CR).reply(200, reconciled_cr()),
                Step::get(KIALI_DEPLOYMENT).reply(200, kiali_deployment(false)),
            ]
        })
        .map(Step::repeated)
        .collect()
}

// HPA on the user's cluster: the AIS chart's StatefulSet xnat-xnat-web (app request 1 CPU),
// pods with the sidecar (100m), and an HPA the chart renders from xnat-web.autoscaling.

const HPAS: &str = "/apis/autoscaling/v2/namespaces/xnat/horizontalpodautoscalers";

/// The AIS chart's HPA for XNAT web, as the API server returns it through autoscaling/v2: CPU
/// Utilization at 70% on the StatefulSet; with `helm`, the labels and annotations Helm sets.
fn ais_hpa(helm: bool) -> Value {
    let mut hpa = json!({
        "apiVersion": "autoscaling/v2", "kind": "HorizontalPodAutoscaler",
        "metadata": {"name": "xnat-xnat-web", "namespace": "xnat"},
        "spec": {"scaleTargetRef": {"apiVersion": "apps/v1", "kind": "StatefulSet", "name": "xnat-xnat-web"},
                 "minReplicas": 1, "maxReplicas": 4,
                 "metrics": [{"type": "Resource", "resource": {"name": "cpu", "target": {"type": "Utilization", "averageUtilization": 70}}}]}
    });
    if helm {
        hpa["metadata"]["labels"] = json!({"app.kubernetes.io/managed-by": "Helm", "helm.sh/chart": "xnat-web-1.1.19",
                                           "app.kubernetes.io/name": "xnat-web", "app.kubernetes.io/instance": "xnat"});
        hpa["metadata"]["annotations"] =
            json!({"meta.helm.sh/release-name": "xnat", "meta.helm.sh/release-namespace": "xnat"});
    }
    hpa
}

fn version(minor: &str) -> Value {
    json!({"major": "1", "minor": minor, "gitVersion": "", "gitCommit": "", "gitTreeState": "", "buildDate": "2024-01-01T00:00:00Z", "goVersion": "", "compiler": "", "platform": ""})
}

/// What `hpa` reads: the server's version, the HPAs, the controllers (no Deployment, the AIS
/// StatefulSets) and the pods.
fn ais_hpa_reads(hpa: Value, web: Value) -> Vec<Step> {
    vec![
        Step::get("/version").reply(200, version("31")),
        Step::get(HPAS).reply(200, list(vec![hpa])),
        Step::get(ais::DEPLOYMENTS).reply(200, list(vec![])),
        Step::get(ais::STATEFULSETS).reply(200, list(vec![web, ais::postgresql_statefulset()])),
        Step::get(ais::PODS).reply(200, list(vec![ais::web_pod(0, true, true, "uid-0"), ais::postgresql_pod(true)])),
    ]
}

fn options_applying(patch_helm_managed: bool) -> HpaOptions {
    HpaOptions { sidecar_usage_millis: 10, apply: true, patch_helm_managed }
}

#[tokio::test]
async fn hpa_on_the_ais_statefulset_is_found_through_its_scale_target_ref_and_patched() {
    let mut script = ais_hpa_reads(ais_hpa(false), ais::web_statefulset(Web::settled()));
    script.push(
        Step::patch(&format!("{HPAS}/xnat-xnat-web"))
            .body(|b| {
                assert_eq!(
                    b["spec"]["metrics"][0],
                    json!({"type": "ContainerResource", "containerResource": {"name": "cpu", "container": "xnat-web",
                           "target": {"type": "Utilization", "averageUtilization": 70}}})
                )
            })
            .reply(200, ais_hpa(false)),
    );
    let findings =
        run(script, options(), |c| async move { hpa::hpa_with(&c, "xnat", options_applying(false)).await }).await;
    let findings = findings.unwrap();
    assert_eq!(findings.len(), 1);
    let f = &findings[0];
    assert_eq!(f.workload, "StatefulSet xnat-xnat-web");
    assert_eq!((f.app_request_millis, f.intended_millis, f.effective_millis), (1000, 700, 770));
    assert!(f.patched);
}

#[tokio::test]
async fn hpa_apply_never_patches_a_helm_rendered_hpa_and_names_the_values_to_change() {
    // No PATCH in the script: the mock fails the test if one comes.
    let script = ais_hpa_reads(ais_hpa(true), ais::web_statefulset(Web::settled()));
    let findings =
        run(script, options(), |c| async move { hpa::hpa_with(&c, "xnat", options_applying(false)).await }).await;
    let f = &findings.unwrap()[0];
    assert!(!f.patched);
    // (700m intended + 10m the sidecar uses) over 1100m of requests: 65%.
    assert!(
        f.advice.contains(
            "`helm upgrade xnat ais/xnat -n xnat --reuse-values --set xnat-web.autoscaling.targetCPUUtilizationPercentage=65`"
        ),
        "{}",
        f.advice
    );
    let table = deployer::plan::hpa::findings_table(std::slice::from_ref(f));
    assert!(table.contains("helm values: xnat-web.autoscaling.targetCPUUtilizationPercentage=65"), "{table}");
}

#[tokio::test]
async fn hpa_apply_patches_a_helm_rendered_hpa_only_with_the_opt_in() {
    let mut script = ais_hpa_reads(ais_hpa(true), ais::web_statefulset(Web::settled()));
    script.push(Step::patch(&format!("{HPAS}/xnat-xnat-web")).reply(200, ais_hpa(true)));
    let findings =
        run(script, options(), |c| async move { hpa::hpa_with(&c, "xnat", options_applying(true)).await }).await;
    assert!(findings.unwrap()[0].patched);
}

#[tokio::test]
async fn hpa_apply_never_patches_an_hpa_whose_app_container_has_no_cpu_request() {
    // The AIS chart's default: xnat-web.resources is {}.
    let mut web = ais::web_statefulset(Web::settled());
    web["spec"]["template"]["spec"]["containers"][0].as_object_mut().unwrap().remove("resources");
    let script = ais_hpa_reads(ais_hpa(false), web);
    let findings =
        run(script, options(), |c| async move { hpa::hpa_with(&c, "xnat", options_applying(true)).await }).await;
    let f = &findings.unwrap()[0];
    assert!(!f.patched && f.fix.is_none());
    assert!(f.advice.contains("container xnat-web of StatefulSet xnat-xnat-web has no CPU request"), "{}", f.advice);
    let table = deployer::plan::hpa::findings_table(std::slice::from_ref(f));
    assert!(table.contains("none: no CPU request on xnat-web"), "{table}");
}

#[tokio::test]
async fn hpa_refused_by_rbac_says_which_permission() {
    let script = vec![
        Step::get("/version").reply(200, version("31")),
        Step::get(HPAS).forbidden("list", "horizontalpodautoscalers", "autoscaling", ""),
    ];
    let err = run(script, options(), |c| async move { hpa::hpa_with(&c, "xnat", options_applying(false)).await })
        .await
        .unwrap_err()
        .to_string();
    assert!(err.contains("listing HorizontalPodAutoscalers in xnat") && err.contains("forbidden"), "{err}");
}

// The binary, as a user runs it: flags, help, what it prints and its exit status, against a
// loopback API server that answers GETs from a table and records every request.

mod loopback {
    use std::collections::HashMap;
    use std::io::{BufRead, BufReader, Read, Write};
    use std::net::TcpListener;
    use std::sync::{Arc, Mutex};

    use serde_json::Value;

    /// Serves `answers` (request path without the query, to JSON body, whatever the method;
    /// any other path 404) on a
    /// free loopback port until the test ends. Returns a kubeconfig for it, and the requests
    /// seen, as `METHOD /path`.
    pub fn serve(
        answers: HashMap<String, Value>,
        dir: &std::path::Path,
    ) -> (std::path::PathBuf, Arc<Mutex<Vec<String>>>) {
        let listener = TcpListener::bind("127.0.0.1:0").unwrap();
        let port = listener.local_addr().unwrap().port();
        let seen = Arc::new(Mutex::new(Vec::new()));
        let log = seen.clone();
        std::thread::spawn(move || {
            for stream in listener.incoming().flatten() {
                let mut reader = BufReader::new(stream.try_clone().unwrap());
                let mut line = String::new();
                if reader.read_line(&mut line).is_err() {
                    continue;
                }
                let mut parts = line.split_whitespace();
                let (method, target) = (parts.next().unwrap_or("").to_string(), parts.next().unwrap_or(""));
                let path = target.split('?').next().unwrap_or("").to_string();
                let mut length = 0;
                loop {
                    let mut header = String::new();
                    if reader.read_line(&mut header).is_err() || header.trim().is_empty() {
                        break;
                    }
                    if let Some(v) = header.to_ascii_lowercase().strip_prefix("content-length:") {
                        length = v.trim().parse().unwrap_or(0);
                    }
                }
                let mut body = vec![0; length];
                let _ = reader.read_exact(&mut body);
                log.lock().unwrap().push(format!("{method} {path}"));
                let (status, body) = match answers.get(&path) {
                    Some(v) => ("200 OK", v.to_string()),
                    _ => ("404 Not Found", super::not_found_status().to_string()),
                };
                let mut stream = stream;
                let _ = write!(
                    stream,
                    "HTTP/1.1 {status}\r\nContent-Type: application/json\r\nContent-Length: {}\r\nConnection: close\r\n\r\n{body}",
                    body.len()
                );
            }
        });
        let kubeconfig = dir.join("kubeconfig");
        std::fs::write(
            &kubeconfig,
            format!(
                "apiVersion: v1\nkind: Config\ncurrent-context: loopback\n\
                 clusters: [{{name: loopback, cluster: {{server: 'http://127.0.0.1:{port}'}}}}]\n\
                 users: [{{name: alice, user: {{token: t}}}}]\n\
                 contexts: [{{name: loopback, context: {{cluster: loopback, user: alice}}}}]\n"
            ),
        )
        .unwrap();
        (kubeconfig, seen)
    }
}

fn not_found_status() -> Value {
    json!({"kind": "Status", "apiVersion": "v1", "status": "Failure", "reason": "NotFound", "code": 404, "message": "not found"})
}

/// `deployer ARGS`: exit status, stdout and stderr.
fn deployer(args: &[&str]) -> (i32, String, String) {
    let out =
        std::process::Command::new(env!("CARGO_BIN_EXE_deployer")).args(args).output().expect("the deployer runs");
    let text = |b: &[u8]| String::from_utf8_lossy(b).into_owned();
    (out.status.code().unwrap_or(-1), text(&out.stdout), text(&out.stderr))
}

/// The AIS cluster's reads for `hpa`, as a path-to-answer table.
fn ais_answers(hpa: Value) -> std::collections::HashMap<String, Value> {
    [
        ("/version".to_string(), version("31")),
        (HPAS.to_string(), list(vec![hpa])),
        (ais::DEPLOYMENTS.to_string(), list(vec![])),
        (ais::STATEFULSETS.to_string(), list(vec![ais::web_statefulset(Web::settled())])),
        (ais::PODS.to_string(), list(vec![ais::web_pod(0, true, true, "uid-0")])),
    ]
    .into_iter()
    .collect()
}

#[test]
fn deployer_hpa_apply_on_a_helm_rendered_hpa_prints_the_helm_upgrade_patches_nothing_and_exits_non_zero() {
    let dir = tempfile::tempdir().unwrap();
    let (kubeconfig, seen) = loopback::serve(ais_answers(ais_hpa(true)), dir.path());
    let (code, stdout, stderr) = deployer(&["--kubeconfig", kubeconfig.to_str().unwrap(), "hpa", "xnat", "--apply"]);
    assert_eq!(code, 2, "an HPA left as it is fails --apply: {stdout}{stderr}");
    assert!(stdout.contains("helm values: xnat-web.autoscaling.targetCPUUtilizationPercentage=65"), "{stdout}");
    assert!(stdout.contains("--reuse-values --set xnat-web.autoscaling.targetCPUUtilizationPercentage=65"), "{stdout}");
    assert!(stderr.contains("1 HPA(s) at risk left as they are (xnat-xnat-web)"), "{stderr}");
    let seen = seen.lock().unwrap();
    assert!(!seen.iter().any(|r| r.starts_with("PATCH")), "no patch without --patch-helm-managed: {seen:?}");
}

#[test]
fn deployer_hpa_without_apply_explains_a_missing_cpu_request_and_exits_zero() {
    let dir = tempfile::tempdir().unwrap();
    let mut answers = ais_answers(ais_hpa(false));
    let mut web = ais::web_statefulset(Web::settled());
    web["spec"]["template"]["spec"]["containers"][0].as_object_mut().unwrap().remove("resources");
    answers.insert(ais::STATEFULSETS.to_string(), list(vec![web]));
    let (kubeconfig, _) = loopback::serve(answers, dir.path());
    let (code, stdout, stderr) = deployer(&["--kubeconfig", kubeconfig.to_str().unwrap(), "hpa", "xnat"]);
    assert_eq!(code, 0, "{stdout}{stderr}");
    assert!(stdout.contains("none: no CPU request on xnat-web"), "{stdout}");
    assert!(stdout.contains("cannot scale on CPU utilization at all"), "{stdout}");
    assert!(!stdout.contains("--apply to patch"), "nothing here a patch fixes: {stdout}");
}

#[test]
fn deployer_kiali_token_prints_the_token_of_the_deployments_service_account() {
    let dir = tempfile::tempdir().unwrap();
    let token_path = "/api/v1/namespaces/istio-system/serviceaccounts/kiali-service-account/token";
    let answers = [
        (KIALI_CR.to_string(), reconciled_cr()),
        (KIALI_DEPLOYMENT.to_string(), kiali_deployment(true)),
        (token_path.to_string(), token_reply()),
    ];
    let (kubeconfig, seen) = loopback::serve(answers.into_iter().collect(), dir.path());
    let (code, stdout, stderr) = deployer(&["--kubeconfig", kubeconfig.to_str().unwrap(), "kiali", "token"]);
    assert_eq!((code, stdout.as_str()), (0, "eyJhbGciOi.token\n"), "{stderr}");
    assert_eq!(seen.lock().unwrap().last(), Some(&format!("POST {token_path}")));
}

#[test]
fn deployer_kiali_token_on_a_cluster_without_kiali_exits_non_zero_and_says_what_to_do() {
    let dir = tempfile::tempdir().unwrap();
    let (kubeconfig, _) = loopback::serve(Default::default(), dir.path());
    let (code, _, stderr) = deployer(&["--kubeconfig", kubeconfig.to_str().unwrap(), "kiali", "token"]);
    assert_eq!(code, 2);
    assert!(stderr.contains("no Kiali CR istio-system/kiali") && stderr.contains("deployer kiali install"), "{stderr}");
}

#[test]
fn help_says_which_runbook_steps_kiali_and_hpa_replace() {
    let (_, install, _) = deployer(&["kiali", "install", "--help"]);
    assert!(install.contains("kubectl apply -f kiali_cr.yaml"), "{install}");
    assert!(install.contains("not validated (dry run)") && install.contains("crds/"), "{install}");
    assert!(install.contains("Available"), "{install}");
    let (_, token, _) = deployer(&["kiali", "token", "--help"]);
    assert!(token.contains("kiali-service-account") && token.contains("--service-account"), "{token}");
    let (_, hpa, _) = deployer(&["hpa", "--help"]);
    assert!(hpa.contains("Note about Cluster Autoscaler / Horizontal Pod Autoscaler"), "{hpa}");
    assert!(hpa.contains("--patch-helm-managed") && hpa.contains("no CPU request"), "{hpa}");
    let (code, _, stderr) = deployer(&["hpa", "xnat", "--patch-helm-managed"]);
    assert_eq!(code, 2, "--patch-helm-managed needs --apply: {stderr}");
}

//! The whole loop on the user's cluster (the AIS release and the runbook's objects, `tests/ais`)
//! against the mock API server, each step fed by what the one before really produced: `learn`
//! reads two web pods' sidecars, `suggest` writes the least-privilege policy for what they
//! recorded, `rollout --dry-run-policy` ships it beside the runbook's, `status` shows the one
//! new request it would deny, `promote` refuses while that record is within the window and,
//! once it is not, enforces the suggestion, and the configuration it applied, compiled by the
//! filter's own engine, allows every request seen and denies the unseen one and a sensitive
//! route never seen; last, that a file whose name has a space, learnt like any other, is
//! still allowed. Issue 14: "the same loop on the mock API for the cluster side".

mod ais;
mod mock_api;
mod support;

use std::path::PathBuf;
use std::sync::{Arc, Mutex};
use std::time::Duration;

use ais::{NAMESPACE, PODS, SERVICES};
use deployer::apply::learn::learn_once;
use deployer::apply::{promote, rollout, status};
use deployer::inspect::status::status_table;
use deployer::observations::Observations;
use deployer::plan::promote::{self as promotion, Promotion};
use deployer::plan::rollout::{ModuleRef, Spec};
use deployer::plan::CREATED_ANNOTATION;
use deployer::resources;
use deployer::suggest::{suggest, Options};
use mock_api::{list, options, run, Step};
use serde_json::{json, Value};
use support::project_root;
use xnat_guard_policy::observe::{metric_name, time_metric_name, ObservationTable, RecordKind};
use xnat_guard_policy::{route_template, Decision, Engine, Request, Verdict, MAX_ROUTE};

const PLAINTEXT: &str = "plaintext";
const UPLOADER: &str = "spiffe://cluster.local/ns/xnat/sa/uploader";
const REPORTER: &str = "spiffe://cluster.local/ns/reporting/sa/reporter";
/// The web UI through the AWS load balancer, where the runbook disabled mTLS.
const LB_PORT: u16 = 8080;
/// The mesh's callers, over mutual TLS.
const MESH_PORT: u16 = 8443;

const WASM_PLUGINS: &str = "/apis/extensions.istio.io/v1alpha1/namespaces/xnat/wasmplugins";
const WASM: &str = "/apis/extensions.istio.io/v1alpha1/namespaces/xnat/wasmplugins/xnat-guard";
const CANARY: &str = "/apis/extensions.istio.io/v1alpha1/namespaces/xnat/wasmplugins/xnat-guard-canary";
const APS: &str = "/apis/security.istio.io/v1/namespaces/xnat/authorizationpolicies";
const XNAT_ALL: &str = "/apis/security.istio.io/v1/namespaces/xnat/authorizationpolicies/xnat-all";
const MESH_PA: &str = "/apis/security.istio.io/v1/namespaces/istio-system/peerauthentications/default";
const XNAT_PA: &str = "/apis/security.istio.io/v1/namespaces/xnat/peerauthentications/default";
const SHA: &str = "abababababababababababababababababababababababababababababababab";
const WEB_PODS: [&str; 2] = ["xnat-xnat-web-0", "xnat-xnat-web-1"];

/// What XNAT's callers did: (caller, port, method, the path as sent, the route XNAT serves it
/// with, requests through web-0, through web-1). The paths are full of identifiers, some come
/// with a query, some under XNAT's aliases (`/REST`, `/data/archive`); the routes are written
/// here by hand, and the filter must come to the same.
const TRAFFIC: [Call; 23] = [
    (PLAINTEXT, LB_PORT, "GET", "/app/template/Index.vm", "/app/template/Index.vm", 9, 7),
    (PLAINTEXT, LB_PORT, "GET", "/data/projects", "/data/projects", 30, 12),
    (PLAINTEXT, LB_PORT, "HEAD", "/data/projects", "/data/projects", 1, 1),
    (PLAINTEXT, LB_PORT, "GET", "/data/projects;jsessionid=A1B2C3D4E5", "/data/projects", 2, 0),
    (PLAINTEXT, LB_PORT, "GET", "/data/projects?format=json&accessible=true", "/data/projects", 4, 4),
    (PLAINTEXT, LB_PORT, "POST", "/data/projects", "/data/projects", 2, 1),
    (PLAINTEXT, LB_PORT, "GET", "/data/projects/PRJ_A", "/data/projects/{*}", 20, 9),
    (PLAINTEXT, LB_PORT, "PUT", "/data/projects/PRJ_A", "/data/projects/{*}", 1, 0),
    (PLAINTEXT, LB_PORT, "DELETE", "/data/projects/PRJ_OLD", "/data/projects/{*}", 1, 1),
    (PLAINTEXT, LB_PORT, "GET", "/data/projects/PRJ_A/subjects", "/data/projects/{*}/subjects", 10, 4),
    (PLAINTEXT, LB_PORT, "GET", "/REST/projects/PRJ_A/subjects", "/data/projects/{*}/subjects", 1, 2),
    (PLAINTEXT, LB_PORT, "PUT", "/data/projects/PRJ_A/subjects/SMITH_J", "/data/projects/{*}/subjects/{*}", 3, 2),
    (PLAINTEXT, LB_PORT, "DELETE", "/data/projects/PRJ_A/subjects/DOE_X", "/data/projects/{*}/subjects/{*}", 0, 1),
    (PLAINTEXT, LB_PORT, "GET", "/data/projects/PRJ_A/subjects/SMITH_J/experiments/MR_0001", SESSION, 15, 6),
    (PLAINTEXT, LB_PORT, "GET", "/data/archive/projects/PRJ_A/subjects/SMITH_J/experiments/MR_0001", SESSION, 2, 0),
    (PLAINTEXT, LB_PORT, "PUT", "/data/projects/PRJ_A/subjects/SMITH_J/experiments/MR_0001", SESSION, 2, 1),
    (PLAINTEXT, LB_PORT, "GET", "/data/experiments/MR_0001/scans/1/resources/DICOM/files/IM0001.dcm", FILES, 40, 25),
    (PLAINTEXT, LB_PORT, "DELETE", "/data/experiments/MR_0001/scans/3/resources/DICOM/files/IM0003.dcm", FILES, 1, 0),
    (
        PLAINTEXT,
        LB_PORT,
        "POST",
        "/data/projects/PRJ_A/subjects/SMITH_J/experiments/MR_0001/scans/2/resources/DICOM/files/IM0002.dcm",
        "/data/projects/{*}/subjects/{*}/experiments/{*}/scans/{*}/resources/{*}/files/{**}",
        5,
        3,
    ),
    (UPLOADER, MESH_PORT, "POST", "/data/services/import", "/data/services/import", 6, 4),
    (REPORTER, MESH_PORT, "GET", "/data/projects", "/data/projects", 3, 2),
    (REPORTER, MESH_PORT, "GET", "/data/experiments/MR_0001", "/data/experiments/{*}", 7, 5),
    (REPORTER, MESH_PORT, "GET", "/data/experiments/MR_0002?format=json", "/data/experiments/{*}", 1, 1),
];
/// One request as `TRAFFIC` lists it.
type Call = (&'static str, u16, &'static str, &'static str, &'static str, u64, u64);

/// A file whose name has a space, downloaded through the web UI while learning. Apart from
/// `TRAFFIC` only so that the steps after learning can run whatever the filter makes of it; it
/// is checked last.
const SPACED: Call = (
    PLAINTEXT,
    LB_PORT,
    "GET",
    "/data/experiments/MR_0001/scans/1/resources/DICOM/files/Scan%20Report.pdf",
    FILES,
    1,
    1,
);

/// Everything XNAT's callers did while the filter observed.
fn learnt() -> impl Iterator<Item = Call> {
    TRAFFIC.into_iter().chain([SPACED])
}

const SESSION: &str = "/data/projects/{*}/subjects/{*}/experiments/{*}";
const FILES: &str = "/data/experiments/{*}/scans/{*}/resources/{*}/files/{**}";
/// The identifiers in `TRAFFIC`'s paths: none may reach a metric, the file or the policy.
const IDENTIFIERS: [&str; 11] = [
    "PRJ_A",
    "PRJ_OLD",
    "SMITH_J",
    "DOE_X",
    "MR_0001",
    "MR_0002",
    "IM0001",
    "Report",
    "A1B2C3D4E5",
    "format=json",
    "accessible",
];

/// The request nobody made while learning, which arrives under dry-run: the reporting
/// namespace deleting a project.
const UNSEEN: (&str, u16, &str, &str) = (REPORTER, MESH_PORT, "DELETE", "/data/projects/PRJ_A");

type Row = (String, Option<u16>, String, String, u64);

/// The route the filter records for `path`.
fn route_of(path: &str) -> String {
    let mut out = [0u8; MAX_ROUTE];
    let len = route_template(path.as_bytes(), &mut out);
    String::from_utf8(out[..len].to_vec()).unwrap()
}

fn now() -> i64 {
    k8s_openapi::jiff::Timestamp::now().as_second()
}

fn rfc3339(seconds: i64) -> String {
    k8s_openapi::jiff::Timestamp::from_second(seconds).unwrap().to_string()
}

fn pod_proxy(pod: &str) -> String {
    format!("{PODS}/{pod}:15090/proxy/stats/prometheus")
}

fn sidecar(pod: &str, text: &str) -> Step {
    Step::get(&pod_proxy(pod)).reply_text(text)
}

fn web_pods() -> Vec<Value> {
    vec![ais::web_pod(0, true, true, "web-0"), ais::web_pod(1, true, true, "web-1"), ais::postgresql_pod(true)]
}

fn digest_gauge(hex: &str) -> String {
    format!(
        "# TYPE xnat_guard_config_digest gauge\nxnat_guard_config_digest {}\n",
        u64::from_str_radix(hex, 16).unwrap()
    )
}

/// The filter's decision on one request, as the glue hands the request over, recorded in
/// `table` as the glue records it.
fn serve(engine: &Engine, table: &mut ObservationTable, caller: &str, port: u16, method: &str, path: &str) -> Decision {
    let headers: Vec<&[&[u8]]> = vec![&[]; engine.header_names().len()];
    let request = Request {
        method: method.as_bytes(),
        path: path.as_bytes(),
        host: Some(b"xnat.example.org"),
        port: Some(port),
        peer: (caller != PLAINTEXT).then_some(caller.as_bytes()),
        headers: &headers,
        ..Request::default()
    };
    let decision = engine.evaluate(&request);
    engine.observe(&request, &decision, table);
    decision
}

fn allows(engine: &Engine, caller: &str, port: u16, method: &str, path: &str) -> bool {
    serve(engine, &mut ObservationTable::default(), caller, port, method, path).verdict.is_allowed()
}

fn engine_of(wasm: &Value) -> Engine {
    xnat_guard_policy::from_json(wasm["spec"]["pluginConfig"].to_string().as_bytes())
        .expect("the WasmPlugin's configuration compiles in the filter")
}

/// A sidecar's Prometheus text as Envoy serves it: its uptime, the filter's configuration
/// gauge and counters, and each record of `table` exported as the glue exports it (a
/// would-deny record's last-seen gauge at `seen_at`).
fn prometheus(table: &mut ObservationTable, hex: &str, allowed: u64, seen_at: i64) -> String {
    let mut text = String::from("# TYPE envoy_server_uptime gauge\nenvoy_server_uptime 86400\n");
    text.push_str(&digest_gauge(hex));
    let mut dry_run_denied = 0;
    let mut records = String::new();
    table.flush(|record, n| {
        let name = metric_name(record.kind, &record.tuple());
        records.push_str(&format!("# TYPE {name} counter\n{name} {n}\n"));
        if record.kind == RecordKind::WouldDeny {
            dry_run_denied += n;
            let at = time_metric_name(record.kind, &record.tuple());
            records.push_str(&format!("# TYPE {at} gauge\n{at} {seen_at}\n"));
        }
    });
    text.push_str(&format!(
        "# TYPE xnat_guard_allowed counter\nxnat_guard_allowed {allowed}\n\
         # TYPE xnat_guard_dry_run_denied counter\nxnat_guard_dry_run_denied {dry_run_denied}\n"
    ));
    text + &records
}

/// One web pod's sidecar after `TRAFFIC` and `SPACED` went through it under the configuration of
/// `rollout --observe` (`engine`, digest `hex`).
fn observing_sidecar(engine: &Engine, hex: &str, pod: usize) -> String {
    let mut table = ObservationTable::default();
    let mut allowed = 0;
    for (caller, port, method, path, _, web0, web1) in learnt() {
        for _ in 0..[web0, web1][pod] {
            let decision = serve(engine, &mut table, caller, port, method, path);
            assert!(decision.verdict.is_allowed(), "{method} {path} from {caller}: the runbook's policy allows it");
            allowed += 1;
        }
    }
    prometheus(&mut table, hex, allowed, now())
}

/// One web pod's sidecar under the dry-run configuration (`engine`, digest `hex`): `TRAFFIC`
/// once more, then `UNSEEN` `count` times, last `seen_ago` seconds ago. Each is served (the
/// runbook's policy is enforced); only `UNSEEN` is one the suggestion would deny.
fn dry_run_sidecar(engine: &Engine, hex: &str, count: u64, seen_ago: i64) -> String {
    let mut table = ObservationTable::default();
    let mut allowed = 0;
    for (caller, port, method, path, _, _, _) in TRAFFIC {
        let decision = serve(engine, &mut table, caller, port, method, path);
        assert!(
            decision.verdict.is_allowed() && !decision.dry_run_denied,
            "{method} {path} from {caller}: {decision:?}"
        );
        allowed += 1;
    }
    let (caller, port, method, path) = UNSEEN;
    for _ in 0..count {
        let decision = serve(engine, &mut table, caller, port, method, path);
        assert!(decision.verdict.is_allowed(), "the unseen request is still served under dry-run: {decision:?}");
        assert!(decision.dry_run_denied, "the suggestion, in dry-run, would deny the unseen request: {decision:?}");
        allowed += 1;
    }
    prometheus(&mut table, hex, allowed, now() - seen_ago)
}

/// `GET /api/v1/namespaces/NS/serviceaccounts`, answered with ServiceAccounts of these names.
fn service_accounts(namespace: &str, names: &[&str]) -> Step {
    let items: Vec<Value> = names
        .iter()
        .map(|n| json!({"apiVersion": "v1", "kind": "ServiceAccount", "metadata": {"name": n, "namespace": namespace}}))
        .collect();
    Step::get(&format!("/api/v1/namespaces/{namespace}/serviceaccounts")).reply(200, list(items))
}

/// What `TRAFFIC` should come to in the observations file: each tuple once, summed over the
/// two pods, sorted as the file is.
fn expected_observations() -> Vec<Row> {
    let mut rows: Vec<Row> = Vec::new();
    for (caller, port, method, _, route, web0, web1) in learnt() {
        let route = route.to_string();
        match rows.iter_mut().find(|r| r.0 == caller && r.1 == Some(port) && r.2 == method && r.3 == route) {
            Some(r) => r.4 += web0 + web1,
            None => rows.push((caller.into(), Some(port), method.into(), route, web0 + web1)),
        }
    }
    rows.sort();
    rows
}

fn rows(file: &Observations) -> Vec<Row> {
    file.observed.iter().map(|e| (e.caller.clone(), e.port, e.method.clone(), e.route.clone(), e.count)).collect()
}

fn runbook(name: &str) -> PathBuf {
    project_root().join("examples/runbook").join(name)
}

fn runbook_files() -> Vec<PathBuf> {
    vec![runbook("istio-mtls.yaml"), runbook("istio-auth-policy-post.yaml")]
}

/// `deployer rollout xnat --policy istio-mtls.yaml --policy istio-auth-policy-post.yaml`, as
/// the command line reads the files.
fn runbook_spec() -> Spec {
    let module = ModuleRef::new("oci://registry.example/xnat-guard:0.1.0", SHA).unwrap();
    Spec::new("xnat", resources::load_files(&runbook_files()).unwrap(), module)
}

/// The same with `--dry-run-policy SUGGESTED`.
fn dry_run_spec(suggested: &std::path::Path) -> Spec {
    Spec { dry_run_objects: resources::load_files(&[suggested.to_path_buf()]).unwrap(), ..runbook_spec() }
}

/// Keeps each body a step was sent, by path, for the next step to answer with.
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

/// A server-side apply by the deployer's field manager, answering at `rv`.
fn apply(path: &str, rv: &str) -> Step {
    let name = path.rsplit('/').next().unwrap();
    Step::patch(path)
        .query("fieldManager=xnat-guard-deployer")
        .no_query("force=")
        .reply(200, json!({"metadata": {"name": name, "resourceVersion": rv}}))
}

fn runbook_object(path: &str) -> Value {
    let mut o = ais::runbook_objects().into_iter().find(|(p, _)| p == path).unwrap().1;
    o["metadata"]["managedFields"] =
        json!([{"manager": "kubectl-client-side-apply", "operation": "Update", "time": "2021-09-01T00:10:00Z"}]);
    o
}

/// What rollout reads before it changes anything: the namespace, the Istio APIs served, and
/// the PeerAuthentications in force (the runbook's own, which the plan applies as they are).
fn reads_before_applying() -> Vec<Step> {
    let mut steps = vec![Step::get(NAMESPACE).reply(200, ais::namespace(true))];
    steps.extend(mock_api::served_recent_istio(&support::istio_crds()));
    steps.extend([
        Step::get("/apis/security.istio.io/v1/namespaces/xnat/peerauthentications")
            .reply(200, list(vec![runbook_object(XNAT_PA)])),
        Step::get("/apis/security.istio.io/v1/namespaces/istio-system/peerauthentications")
            .reply(200, list(vec![runbook_object(MESH_PA)])),
    ]);
    steps
}

/// The namespace label and the runbook's PeerAuthentications, applied as they are.
fn namespace_and_peer_authentications() -> Vec<Step> {
    vec![
        Step::get(NAMESPACE).reply(200, ais::namespace(true)),
        apply(NAMESPACE, "1"),
        Step::get(MESH_PA).reply(200, runbook_object(MESH_PA)),
        apply(MESH_PA, "7"),
        Step::get(XNAT_PA).reply(200, runbook_object(XNAT_PA)),
        apply(XNAT_PA, "7"),
    ]
}

/// The namespace's controllers and pods (both web pods have their sidecar: nothing is
/// restarted), then the pods again for the sidecar check.
fn lists() -> Vec<Step> {
    vec![
        Step::get(ais::DEPLOYMENTS).reply(200, list(vec![])),
        Step::get(ais::STATEFULSETS).reply(
            200,
            list(vec![ais::web_statefulset(ais::Web::settled().replicas(2)), ais::postgresql_statefulset()]),
        ),
        Step::get(PODS).reply(200, list(web_pods())),
        Step::get(PODS).reply(200, list(web_pods())),
    ]
}

/// A new configuration `hex` through the canary on the highest web pod, then to both.
fn filter_through_canary(sent: &Sent, existing: Option<Value>, hex: &str, check: fn(&Value)) -> Vec<Step> {
    let read = |s: Step| match &existing {
        Some(w) => s.reply(200, w.clone()),
        None => s.not_found(),
    };
    vec![
        read(Step::get(WASM)),
        Step::get(CANARY).not_found(),
        mock_api::apply(CANARY, "1"),
        sidecar(WEB_PODS[1], &digest_gauge(hex)),
        read(Step::get(WASM)),
        sent.keep(WASM, apply(WASM, "2"), check),
        sidecar(WEB_PODS[0], &digest_gauge(hex)),
        sidecar(WEB_PODS[1], &digest_gauge(hex)),
        Step::delete(CANARY).reply(200, json!({"kind": "Status", "status": "Success"})),
    ]
}

/// The object as the API server keeps it after the deployer applied `body` `ago` seconds ago.
fn as_applied(body: &Value, ago: i64) -> Value {
    let mut o = body.clone();
    o["metadata"]["managedFields"] =
        json!([{"manager": "xnat-guard-deployer", "operation": "Apply", "time": rfc3339(now() - ago)}]);
    o
}

/// Each policy of a WasmPlugin's configuration, and whether it is dry-run.
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

/// What promote reads: the namespace, the WasmPlugin and the dry-run policy as the dry-run
/// rollout applied them `in_force` seconds ago, the pods, and each web pod's sidecar.
fn gate_reads(wasm: &Value, suggested: &Value, suggested_path: &str, in_force: i64, metrics: &str) -> Vec<Step> {
    vec![
        Step::get(NAMESPACE).reply(200, ais::namespace(true)),
        Step::get(WASM).reply(200, as_applied(wasm, in_force)),
        Step::get(suggested_path).reply(200, as_applied(suggested, in_force)),
        Step::get(PODS).reply(200, list(web_pods())),
        sidecar(WEB_PODS[0], metrics),
        sidecar(WEB_PODS[1], metrics),
    ]
}

/// A route as a request someone could have sent: each `{*}` an identifier of the kind its
/// collection holds, `{**}` a file path.
fn concrete(route: &str) -> String {
    let mut previous = "";
    let mut out = Vec::new();
    for segment in route.split('/') {
        out.push(match segment {
            "{*}" => match previous {
                "projects" => "PRJ_B".to_string(),
                "subjects" => "JONES_K".to_string(),
                "experiments" => "MR_0042".to_string(),
                "scans" => "4".to_string(),
                "resources" => "NIFTI".to_string(),
                _ => "X1".to_string(),
            },
            "{**}" => "sub/dir/IM0042.dcm".to_string(),
            s => s.to_string(),
        });
        previous = segment;
    }
    out.join("/")
}

#[tokio::test]
async fn learn_suggest_dry_run_status_and_promote_on_the_ais_release_each_fed_by_the_last() {
    // 0. What `rollout xnat --policy (the runbook's files) --observe` left: the WasmPlugin
    // whose configuration both web pods' filters ran while XNAT's callers used it.
    let observe_plan = deployer::plan::rollout::plan(&Spec { observe: true, ..runbook_spec() }).unwrap();
    let observing_wasm = observe_plan.manifests.last().unwrap().body.clone();
    let observe_hex = observe_plan.config.config_digest.clone().unwrap();
    let observing = engine_of(&observing_wasm);
    let texts = [observing_sidecar(&observing, &observe_hex, 0), observing_sidecar(&observing, &observe_hex, 1)];
    for text in &texts {
        for id in IDENTIFIERS {
            assert!(!text.contains(id) && !text.contains(&id.replace('_', "_5F")), "{id} leaves the sidecar:\n{text}");
        }
    }

    // 1. learn: both web pods' sidecars, merged.
    let script = vec![
        Step::get(WASM_PLUGINS).reply(200, list(vec![as_applied(&observing_wasm, 86_400)])),
        Step::get(PODS).reply(200, list(web_pods())),
        sidecar(WEB_PODS[0], &texts[0]),
        sidecar(WEB_PODS[1], &texts[1]),
        // The namespaces of the mTLS callers seen, in order; `default` was never seen in either.
        service_accounts("reporting", &["reporter", "default"]),
        service_accounts("xnat", &["xnat-xnat-web", "uploader", "default"]),
    ];
    let observations = run(script, options(), |cluster| async move {
        let mut file = Observations::new("xnat");
        let round = learn_once(&cluster, "xnat", &[], &mut file).await.unwrap();
        let sampled: Vec<&str> = round.sampled.iter().map(|(p, _)| p.as_str()).collect();
        assert_eq!(sampled, WEB_PODS, "PostgreSQL is not selected: {round:?}");
        assert!(round.skipped.is_empty() && round.not_observing.is_empty() && round.notes.is_empty(), "{round:?}");
        file
    })
    .await;
    assert_eq!(rows(&observations), expected_observations(), "each tuple once, summed over the two pods");
    let sent_total: u64 = learnt().map(|t| t.5 + t.6).sum();
    assert_eq!(observations.total(), sent_total);
    assert!(observations.would_deny.is_empty());
    assert_eq!(observations.service_accounts["reporting"], ["default", "reporter"]);
    let file_text = serde_yaml::to_string(&observations).unwrap();
    for id in IDENTIFIERS {
        assert!(!file_text.contains(id), "{id} is in the observations file:\n{file_text}");
    }
    let unseen_route = route_of(UNSEEN.3);
    assert_eq!(unseen_route, "/data/projects/{*}");
    assert!(
        !observations.observed.iter().any(|e| e.caller == UNSEEN.0 && e.method == UNSEEN.2 && e.route == unseen_route),
        "the unseen request was not seen"
    );

    // 2. suggest, with the runbook's files as the policy in force.
    let current = resources::load_files(&runbook_files()).unwrap();
    let suggestion = suggest(
        &observations,
        &current,
        &Options { labels: vec![("app".into(), "xnat-web".into())], ..Options::default() },
    )
    .unwrap_or_else(|e| panic!("no suggestion: {e}"));
    println!("{}\n{}", suggestion.yaml, suggestion.replay);
    assert!(suggestion.replay.all_allowed(), "{:?}", suggestion.replay.refused);
    assert_eq!(suggestion.replay.observations, observations.observed.len());
    assert_eq!(
        (suggestion.replay.allowed_requests, suggestion.replay.requests),
        (sent_total, sent_total),
        "{}",
        suggestion.replay
    );
    assert!(suggestion.replay.to_string().contains("(100%)"), "{}", suggestion.replay);
    let tightening = suggestion.tightening.as_ref().expect("the runbook's policy is in force");
    assert!(
        tightening
            .findings
            .iter()
            .any(|f| f.callers.iter().any(|c| c == REPORTER) && f.covers("DELETE", &unseen_route)),
        "the suggestion takes DELETE on projects away from the reporter: {:#?}",
        tightening.findings
    );
    let dir = tempfile::tempdir().unwrap();
    let suggested_file = dir.path().join("suggested.yaml");
    std::fs::write(&suggested_file, &suggestion.yaml).unwrap();
    let suggested_value: Value = serde_yaml::from_str(&suggestion.yaml).expect("the suggestion is YAML");
    let name = suggested_value["metadata"]["name"].as_str().unwrap().to_string();
    assert_ne!(name, "xnat-all");
    let suggested_path = format!("{APS}/{name}");

    // 3. rollout --policy (the runbook's files) --dry-run-policy (the suggestion).
    let spec = dry_run_spec(&suggested_file);
    let plan = deployer::plan::rollout::plan(&spec).unwrap();
    let dry_run_hex = plan.config.config_digest.clone().unwrap();
    let sent = Sent::default();
    let mut script = reads_before_applying();
    script.extend(namespace_and_peer_authentications());
    script.extend([
        Step::get(&suggested_path).not_found(),
        sent.keep(&suggested_path, apply(&suggested_path, "1"), |b| {
            assert_eq!(b["metadata"]["annotations"]["istio.io/dry-run"], "true", "{b}");
            assert_eq!(b["metadata"]["annotations"][CREATED_ANNOTATION], "true", "{b}");
        }),
    ]);
    script.extend(lists());
    let checked_name = name.clone();
    script.extend(filter_through_canary(&sent, None, &dry_run_hex, |_| {}));
    let report =
        run(script, options(), |cluster| async move { rollout::rollout(&cluster, &plan, "xnat").await }).await.unwrap();
    assert_eq!(report.enforcing, WEB_PODS);
    let in_cluster_suggestion = sent.last(&suggested_path);
    assert_eq!(
        in_cluster_suggestion["spec"], suggested_value["spec"],
        "the cluster gets the suggestion as suggest wrote it"
    );
    let dry_run_wasm = sent.last(WASM);
    assert_eq!(
        policies_in(&dry_run_wasm),
        [("xnat-all".to_string(), false), (checked_name.clone(), true)],
        "the runbook's enforced, the suggestion dry-run"
    );
    assert_eq!(dry_run_wasm["spec"]["pluginConfig"]["configDigest"], dry_run_hex.as_str());
    assert!(
        suggestion.yaml.lines().all(|l| IDENTIFIERS.iter().all(|id| !l.contains(id))),
        "no identifier reaches the policy:\n{}",
        suggestion.yaml
    );
    // What each web pod's filter runs now: the configuration the mock received.
    let dry_running = engine_of(&dry_run_wasm);

    // 4. status: a new request arrives that the suggestion would deny.
    let seen_ago = 4 * 60;
    let recent = dry_run_sidecar(&dry_running, &dry_run_hex, 2, seen_ago);
    let script = vec![
        Step::get(NAMESPACE).reply(200, ais::namespace(true)),
        Step::get("/apis/security.istio.io/v1/peerauthentications")
            .reply(200, list(vec![runbook_object(MESH_PA), runbook_object(XNAT_PA)])),
        Step::get("/apis/networking.istio.io/v1/destinationrules").reply(200, list(vec![])),
        Step::get(WASM_PLUGINS).reply(200, list(vec![as_applied(&dry_run_wasm, 3 * 3600)])),
        Step::get(APS).reply(200, list(vec![runbook_object(XNAT_ALL), as_applied(&in_cluster_suggestion, 3 * 3600)])),
        Step::get("/apis/security.istio.io/v1/namespaces/istio-system/authorizationpolicies").reply(200, list(vec![])),
        Step::get(SERVICES).reply(200, list(vec![ais::web_service(), ais::headless_service()])),
        Step::get(PODS).reply(200, list(web_pods())),
        Step::get("/api/v1/namespaces/istio-system/pods").reply(200, list(vec![])),
        sidecar(WEB_PODS[0], &recent),
        Step::get(&format!("{PODS}/{}:15020/proxy/stats/prometheus", WEB_PODS[0]))
            .reply_text("istio_agent_wasm_remote_fetch_count{result=\"success\"} 1\n"),
        Step::get(&format!("{PODS}/{}/log", WEB_PODS[0])).reply_text(""),
        sidecar(WEB_PODS[1], &recent),
        Step::get(&format!("{PODS}/{}:15020/proxy/stats/prometheus", WEB_PODS[1]))
            .reply_text("istio_agent_wasm_remote_fetch_count{result=\"success\"} 1\n"),
        Step::get(&format!("{PODS}/{}/log", WEB_PODS[1])).reply_text(""),
        // PostgreSQL's sidecar, which no WasmPlugin selects: no filter there.
        sidecar("xnat-postgresql-0", "# TYPE envoy_server_uptime gauge\nenvoy_server_uptime 86400\n"),
        Step::get(&format!("{PODS}/xnat-postgresql-0/log")).reply_text(""),
        Step::get("/version").reply(200, json!({"major": "1", "minor": "31", "gitVersion": "v1.31.2", "gitCommit": "", "gitTreeState": "", "buildDate": "", "goVersion": "", "compiler": "", "platform": ""})),
        Step::get("/apis/autoscaling/v2/namespaces/xnat/horizontalpodautoscalers").reply(200, list(vec![])),
    ];
    let s = run(script, options(), |cluster| async move { status::status(&cluster, "xnat").await }).await.unwrap();
    assert_eq!(s.dry_run_policies, [format!("xnat/{name}")]);
    assert_eq!(s.would_deny.len(), 1, "{:?}", s.would_deny);
    let r = &s.would_deny[0];
    assert_eq!(
        (r.caller.as_str(), r.port, r.method.as_str(), r.route.as_str(), r.count),
        (REPORTER, Some(MESH_PORT), "DELETE", unseen_route.as_str(), 4),
        "summed over the two pods"
    );
    assert!((now() - seen_ago - r.last_seen_unix.unwrap()).abs() < 5, "the gauge's time: {:?}", r.last_seen);
    let pods: Vec<&str> = r.pods.iter().map(|p| p.pod.as_str()).collect();
    assert_eq!(pods, WEB_PODS);
    let table = status_table(&s);
    println!("{table}");
    for part in [REPORTER, "8443", "DELETE", "/data/projects/{*}", "4", "m ago)"] {
        assert!(table.contains(part), "{part:?} missing from:\n{table}");
    }
    let line = table.lines().find(|l| l.contains(REPORTER) && l.contains("DELETE")).expect("the record's line");
    assert!(line.contains(&unseen_route) && line.contains(" 4 ") && line.contains("(4m ago)"), "{line}");

    // 5. promote --window 1h: the record is 4 minutes old; only reads, so nothing can change.
    let promotion: Promotion = promotion::plan(&dry_run_spec(&suggested_file)).unwrap();
    assert_eq!(promotion.dry_run_digest(), dry_run_hex, "promote is given the dry-run rollout's files and flags");
    assert_eq!(promotion.enforced, [format!("AuthorizationPolicy xnat/{name}")]);
    assert_eq!(promotion.kept_as_dry_run, ["AuthorizationPolicy xnat/xnat-all"]);
    let script = gate_reads(&dry_run_wasm, &in_cluster_suggestion, &suggested_path, 3 * 3600, &recent);
    let p = promotion.clone();
    let err = run(script, options(), |cluster| async move {
        promote::promote(&cluster, &p, "xnat", Some(Duration::from_secs(3600)), false).await
    })
    .await
    .unwrap_err()
    .to_string();
    println!("{err}");
    for part in [
        "promote refused; nothing was changed",
        "1 kind(s) of request that the pods served would be denied",
        "within the window (1h)",
        REPORTER,
        "DELETE",
        "/data/projects/{*}",
        "(4m ago)",
        "--force",
    ] {
        assert!(err.contains(part), "{part:?} missing from:\n{err}");
    }

    // 6. promote --window 1m, an hour later: the record is older than the window, and the
    // dry-run configuration has been in force for four hours.
    let old = dry_run_sidecar(&dry_running, &dry_run_hex, 2, 3600);
    let promoted_hex = promotion.promoted_digest().to_string();
    let sent = Sent::default();
    let mut script = gate_reads(&dry_run_wasm, &in_cluster_suggestion, &suggested_path, 4 * 3600, &old);
    script.extend(reads_before_applying());
    script.extend(namespace_and_peer_authentications());
    script.extend([
        Step::get(XNAT_ALL).reply(200, runbook_object(XNAT_ALL)),
        sent.keep(XNAT_ALL, apply(XNAT_ALL, "5"), |b| {
            assert_eq!(b["metadata"]["annotations"]["istio.io/dry-run"], "true", "{b}");
        }),
    ]);
    script.extend(lists());
    script.extend(filter_through_canary(&sent, Some(as_applied(&dry_run_wasm, 4 * 3600)), &promoted_hex, |_| {}));
    let mut created = as_applied(&in_cluster_suggestion, 4 * 3600);
    created["metadata"]["annotations"][CREATED_ANNOTATION] = json!("true");
    script.extend([
        Step::get(&suggested_path).reply(200, created),
        Step::delete(&suggested_path).reply(200, json!({"kind": "Status", "status": "Success"})),
    ]);
    let p = promotion.clone();
    let done = run(script, options(), |cluster| async move {
        promote::promote(&cluster, &p, "xnat", Some(Duration::from_secs(60)), false).await
    })
    .await
    .unwrap();
    assert!(done.gate.passes(), "{:?}", done.gate.refusals);
    assert_eq!(done.gate.records.len(), 1, "the record is listed, now denied");
    assert!(done.gate.recent.is_empty());
    assert_eq!(done.report.as_ref().unwrap().enforcing, WEB_PODS);
    let promoted_wasm = sent.last(WASM);
    assert_eq!(
        policies_in(&promoted_wasm),
        [("xnat-all".to_string(), true), (checked_name, false)],
        "the suggestion enforced, the runbook's kept as dry-run"
    );
    assert_eq!(promoted_wasm["spec"]["pluginConfig"]["configDigest"], promoted_hex.as_str());
    assert_eq!(sent.last(XNAT_ALL)["metadata"]["annotations"]["istio.io/dry-run"], "true");
    assert!(
        done.cluster_objects
            .iter()
            .any(|l| l.contains(&format!("AuthorizationPolicy xnat/{name}: its dry-run object deleted"))),
        "{:?}",
        done.cluster_objects
    );

    // 7. The configuration promote applied, in the filter's own engine.
    let engine = engine_of(&promoted_wasm);
    for e in &observations.observed {
        let path = concrete(&e.route);
        assert_eq!(route_of(&path), e.route, "{path} is a request of the route {}", e.route);
        let port = e.port.unwrap();
        assert!(
            allows(&engine, &e.caller, port, &e.method, &path),
            "{} {path} from {} on {port}: denied",
            e.method,
            e.caller
        );
    }
    // Denied because no ALLOW rule of the suggestion matches (the runbook's xnat-all is dry-run
    // now), not for want of mTLS.
    let denied = |caller: &str, port: u16, method: &str, path: &str| {
        let decision = serve(&engine, &mut ObservationTable::default(), caller, port, method, path);
        assert_eq!(decision.verdict, Verdict::DeniedNoAllowMatch, "{method} {path} from {caller} on {port}");
    };
    let (caller, port, method, path) = UNSEEN;
    denied(caller, port, method, path);
    denied(caller, port, method, &concrete(&unseen_route));
    denied(PLAINTEXT, LB_PORT, "GET", "/xapi/users");
    denied(REPORTER, MESH_PORT, "GET", "/xapi/users");
    // And what the runbook's xnat-all let through and no one did: plaintext on the mesh port.
    assert!(!allows(&engine, PLAINTEXT, MESH_PORT, "GET", "/data/projects"));
    // The traffic as it was really sent, identifiers and all.
    for (caller, port, method, path, _, _, _) in TRAFFIC {
        assert!(allows(&engine, caller, port, method, path), "{method} {path} from {caller} on {port}: denied");
    }

    // Last, the file with a space in its name: learnt under FILES (step 1), which the
    // suggestion grants GET on, and replayed as allowed (step 2, with a sample path), yet
    // the filter matches `{**}` against the decoded path, where the space is no pchar.
    let (caller, port, method, path, route, _, _) = SPACED;
    assert!(observations.observed.iter().any(|e| e.caller == caller && e.method == method && e.route == route));
    let dry_run = serve(&dry_running, &mut ObservationTable::default(), caller, port, method, path);
    let promoted = serve(&engine, &mut ObservationTable::default(), caller, port, method, path);
    assert!(
        !dry_run.dry_run_denied && promoted.verdict.is_allowed(),
        "{method} {path} from {caller} on {port}, learnt as {route}: under dry-run {dry_run:?}, promoted {promoted:?}: \
         the suggestion denies a request it was learnt from (Istio's {{**}} matches the still-encoded %20)"
    );
}

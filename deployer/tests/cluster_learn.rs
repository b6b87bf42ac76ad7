//! `learn` on the user's cluster (the AIS release, `tests/ais`) against the mock API server:
//! which pods are read and which are skipped, saying why; what each sample adds to the
//! observations file (only what a sidecar counted since the last, its whole value after a
//! restart, a recreated pod a new source); what a user without `get pods/proxy` is told; and
//! that no identifier from XNAT's paths reaches the file.

mod ais;
mod mock_api;

use ais::PODS;
use deployer::apply::learn::{learn_once, Round};
use deployer::observations::{Merged, Observations};
use mock_api::{list, options, run, service_accounts, service_accounts_path, Step};
use serde_json::{json, Value};
use xnat_guard_policy::observe::{metric_name, RecordKind, Tuple};
use xnat_guard_policy::{route_template, MAX_ROUTE};

const WASM_PLUGINS: &str = "/apis/extensions.istio.io/v1alpha1/namespaces/xnat/wasmplugins";
/// The ingress from the AWS load balancer, on 8080 where the runbook disabled mTLS.
const PLAINTEXT: &str = "plaintext";
/// XNAT's container service calling back into the API.
const CONTAINER_SERVICE: &str = "spiffe://cluster.local/ns/xnat/sa/container-service";

/// The WasmPlugin `deployer rollout xnat --observe` leaves: it selects the web pods.
fn wasm_plugin() -> Value {
    json!({"apiVersion": "extensions.istio.io/v1alpha1", "kind": "WasmPlugin",
           "metadata": {"name": "xnat-guard", "namespace": "xnat"},
           "spec": {"url": "oci://registry.example/xnat-guard@sha256:abab", "phase": "AUTHZ", "failStrategy": "FAIL_CLOSE",
                    "selector": {"matchLabels": {"app": "xnat-web"}},
                    "pluginConfig": {"observe": "ROUTES", "policies": []}}})
}

fn pod_proxy(pod: &str) -> String {
    format!("{PODS}/{pod}:15090/proxy/stats/prometheus")
}

/// The reads every round starts with: the WasmPlugins, then the pods.
fn plugins_and_pods(pods: Vec<Value>) -> Vec<Step> {
    vec![Step::get(WASM_PLUGINS).reply(200, list(vec![wasm_plugin()])), Step::get(PODS).reply(200, list(pods))]
}

/// The metric a sidecar exports for one observed record on port 8080.
fn observed(caller: &str, method: &str, route: &str) -> String {
    metric_name(
        RecordKind::Observed,
        &Tuple { caller: caller.as_bytes(), port: Some(8080), method: method.as_bytes(), route: route.as_bytes() },
    )
}

/// A sidecar's Prometheus text as Envoy writes it: the filter's own counters, then each record.
fn metrics(records: &[(&str, u64)]) -> String {
    let mut text = String::from("# TYPE xnat_guard_allowed counter\nxnat_guard_allowed{} 5\n");
    text.push_str("# TYPE envoy_server_uptime gauge\nenvoy_server_uptime{} 3600\n");
    for (name, count) in records {
        text.push_str(&format!("# TYPE {name} counter\n{name}{{}} {count}\n"));
    }
    text
}

/// The file's observed entries, as a user reads them.
fn entries(file: &Observations) -> Vec<(String, Option<u16>, String, String, u64)> {
    file.observed.iter().map(|e| (e.caller.clone(), e.port, e.method.clone(), e.route.clone(), e.count)).collect()
}

fn entry(caller: &str, method: &str, route: &str, count: u64) -> (String, Option<u16>, String, String, u64) {
    (caller.into(), Some(8080), method.into(), route.into(), count)
}

/// The counters the file keeps for one source (`xnat/POD`, UID), records only.
fn source_counters(file: &Observations, name: &str, uid: &str) -> Vec<(String, u64)> {
    let source = file
        .sources
        .iter()
        .find(|s| s.name == name && s.uid == uid)
        .unwrap_or_else(|| panic!("no source {name} ({uid}) in {:#?}", file.sources));
    source.counters.iter().filter(|(k, _)| k.starts_with("xnat_guard_")).map(|(k, v)| (k.clone(), *v)).collect()
}

fn sampled<'a>(round: &'a Round, pod: &str) -> &'a Merged {
    &round.sampled.iter().find(|(p, _)| p == pod).unwrap_or_else(|| panic!("{pod} not sampled: {round:?}")).1
}

#[tokio::test]
async fn each_sample_adds_what_each_web_pod_counted_since_the_last_and_a_restart_or_a_new_pod_counts_from_zero() {
    let list_projects = observed(PLAINTEXT, "GET", "/data/projects");
    let add_subject = observed(CONTAINER_SERVICE, "POST", "/data/projects/{*}/subjects");
    let read_project = observed(CONTAINER_SERVICE, "GET", "/data/projects/{*}");
    let pods = |web_1_uid: &str| {
        vec![ais::web_pod(0, true, true, "web-0"), ais::web_pod(1, true, true, web_1_uid), ais::postgresql_pod(true)]
    };
    let mut script = plugins_and_pods(pods("web-1"));
    script.extend([
        Step::get(&pod_proxy("xnat-xnat-web-0")).reply_text(&metrics(&[(&list_projects, 10), (&add_subject, 2)])),
        Step::get(&pod_proxy("xnat-xnat-web-1")).reply_text(&metrics(&[(&list_projects, 4)])),
        // After the metrics, the service accounts of the namespace of each mTLS caller seen.
        service_accounts("xnat", &["xnat-web", "default", "container-service"]),
    ]);
    // Round 2: web-0 counted on; web-1's sidecar restarted, so its counter is lower than before.
    script.extend(plugins_and_pods(pods("web-1")));
    script.extend([
        Step::get(&pod_proxy("xnat-xnat-web-0")).reply_text(&metrics(&[
            (&list_projects, 15),
            (&add_subject, 2),
            (&read_project, 3),
        ])),
        Step::get(&pod_proxy("xnat-xnat-web-1")).reply_text(&metrics(&[(&list_projects, 1)])),
        service_accounts("xnat", &["xnat-web", "default", "container-service"]),
    ]);
    // Round 3: web-1 was deleted and recreated under the same name (another UID).
    script.extend(plugins_and_pods(pods("web-1-recreated")));
    script.extend([
        Step::get(&pod_proxy("xnat-xnat-web-0")).reply_text(&metrics(&[
            (&list_projects, 15),
            (&add_subject, 2),
            (&read_project, 3),
        ])),
        Step::get(&pod_proxy("xnat-xnat-web-1")).reply_text(&metrics(&[(&list_projects, 6)])),
        // A service account was added since: the file keeps the last listing.
        service_accounts("xnat", &["xnat-web", "default", "container-service", "ci-runner"]),
    ]);

    run(script, options(), |cluster| async move {
        let mut file = Observations::new("xnat");

        let round = learn_once(&cluster, "xnat", &[], &mut file).await.unwrap();
        let names: Vec<&str> = round.sampled.iter().map(|(p, _)| p.as_str()).collect();
        assert_eq!(names, ["xnat-xnat-web-0", "xnat-xnat-web-1"], "PostgreSQL is not selected: {round:?}");
        assert!(round.skipped.is_empty() && round.not_observing.is_empty(), "{round:?}");
        assert_eq!(*sampled(&round, "xnat-xnat-web-0"), Merged { requests: 12, new_entries: 2, restarted: false });
        assert_eq!(*sampled(&round, "xnat-xnat-web-1"), Merged { requests: 4, new_entries: 0, restarted: false });
        assert_eq!(
            entries(&file),
            [
                entry(PLAINTEXT, "GET", "/data/projects", 14),
                entry(CONTAINER_SERVICE, "POST", "/data/projects/{*}/subjects", 2),
            ]
        );
        assert_eq!(
            source_counters(&file, "xnat/xnat-xnat-web-0", "web-0"),
            [(list_projects.clone(), 10), (add_subject.clone(), 2)]
        );
        assert_eq!(source_counters(&file, "xnat/xnat-xnat-web-1", "web-1"), [(list_projects.clone(), 4)]);
        assert_eq!(file.service_accounts["xnat"], ["container-service", "default", "xnat-web"]);
        assert!(round.notes.is_empty(), "{round:?}");
        // What the user finds on disk reads back as it was.
        let text = serde_yaml::to_string(&file).unwrap();
        assert_eq!(Observations::parse(&text, "xnat-guard-observations.yaml").unwrap(), file);

        let round = learn_once(&cluster, "xnat", &[], &mut file).await.unwrap();
        assert_eq!(
            *sampled(&round, "xnat-xnat-web-0"),
            Merged { requests: 8, new_entries: 1, restarted: false },
            "web-0 counted 5 + 0 + 3 since round 1"
        );
        assert_eq!(
            *sampled(&round, "xnat-xnat-web-1"),
            Merged { requests: 1, new_entries: 0, restarted: true },
            "web-1's sidecar restarted: its whole 1 is new"
        );
        assert_eq!(
            entries(&file),
            [
                entry(PLAINTEXT, "GET", "/data/projects", 20),
                entry(CONTAINER_SERVICE, "GET", "/data/projects/{*}", 3),
                entry(CONTAINER_SERVICE, "POST", "/data/projects/{*}/subjects", 2),
            ]
        );
        assert_eq!(source_counters(&file, "xnat/xnat-xnat-web-1", "web-1"), [(list_projects.clone(), 1)]);

        let round = learn_once(&cluster, "xnat", &[], &mut file).await.unwrap();
        assert_eq!(
            *sampled(&round, "xnat-xnat-web-0"),
            Merged { requests: 0, new_entries: 0, restarted: false },
            "web-0 counted nothing since round 2"
        );
        assert_eq!(
            *sampled(&round, "xnat-xnat-web-1"),
            Merged { requests: 6, new_entries: 0, restarted: false },
            "the recreated web-1 is a new source: all it counted is new, and it did not restart"
        );
        assert_eq!(entries(&file)[0], entry(PLAINTEXT, "GET", "/data/projects", 26));
        let sources: Vec<(&str, &str)> = file.sources.iter().map(|s| (s.name.as_str(), s.uid.as_str())).collect();
        assert_eq!(
            sources,
            [
                ("xnat/xnat-xnat-web-0", "web-0"),
                ("xnat/xnat-xnat-web-1", "web-1"),
                ("xnat/xnat-xnat-web-1", "web-1-recreated"),
            ]
        );
        assert_eq!(source_counters(&file, "xnat/xnat-xnat-web-1", "web-1-recreated"), [(list_projects.clone(), 6)]);
        assert_eq!(file.total(), 31);
        assert_eq!(file.service_accounts["xnat"], ["ci-runner", "container-service", "default", "xnat-web"]);
    })
    .await;
}

#[tokio::test]
async fn a_second_sample_without_new_traffic_adds_nothing_and_is_no_restart() {
    let list_projects = observed(PLAINTEXT, "GET", "/data/projects");
    let labels = [("app".to_string(), "xnat-web".to_string())];
    let one_round = || {
        [
            Step::get(PODS).reply(200, list(vec![ais::web_pod(0, true, true, "web-0")])),
            Step::get(&pod_proxy("xnat-xnat-web-0")).reply_text(&metrics(&[(&list_projects, 10)])),
        ]
    };
    let script = one_round().into_iter().chain(one_round()).collect();
    let (second, file) = run(script, options(), |cluster| async move {
        let mut file = Observations::new("xnat");
        learn_once(&cluster, "xnat", &labels, &mut file).await.unwrap();
        let second = learn_once(&cluster, "xnat", &labels, &mut file).await.unwrap();
        (second, file)
    })
    .await;
    assert_eq!(*sampled(&second, "xnat-xnat-web-0"), Merged { requests: 0, new_entries: 0, restarted: false });
    assert_eq!(entries(&file), [entry(PLAINTEXT, "GET", "/data/projects", 10)]);
}

#[tokio::test]
async fn a_selected_pod_without_a_ready_sidecar_is_skipped_saying_why_and_never_read() {
    let list_projects = observed(PLAINTEXT, "GET", "/data/projects");
    let pods = vec![
        ais::web_pod(0, true, true, "web-0"),
        ais::web_pod(1, false, true, "web-1"),
        ais::web_pod(2, true, false, "web-2"),
        ais::web_pod(3, true, true, "web-3"),
        ais::postgresql_pod(true),
    ];
    let mut script = plugins_and_pods(pods);
    // Only the pods with a ready sidecar are asked; the script fails on any other request.
    script.extend([
        Step::get(&pod_proxy("xnat-xnat-web-0")).reply_text(&metrics(&[(&list_projects, 7)])),
        Step::get(&pod_proxy("xnat-xnat-web-3"))
            .reply_text("# TYPE envoy_server_uptime gauge\nenvoy_server_uptime{} 3600\n"),
    ]);
    let (round, file) = run(script, options(), |cluster| async move {
        let mut file = Observations::new("xnat");
        let round = learn_once(&cluster, "xnat", &[], &mut file).await.unwrap();
        (round, file)
    })
    .await;
    let names: Vec<&str> = round.sampled.iter().map(|(p, _)| p.as_str()).collect();
    assert_eq!(names, ["xnat-xnat-web-0"]);
    assert_eq!(
        round.skipped,
        [
            "xnat-xnat-web-1: no istio-proxy sidecar, so no filter to ask (`deployer rollout` restarts it with one)",
            "xnat-xnat-web-2: its sidecar is not ready (phase Running); it is read on the next sample",
            "xnat-xnat-web-3: its sidecar shows no xnat-guard metric: is the filter loaded? (`deployer status xnat`)",
        ]
    );
    assert_eq!(entries(&file), [entry(PLAINTEXT, "GET", "/data/projects", 7)]);
    let sources: Vec<&str> = file.sources.iter().map(|s| s.name.as_str()).collect();
    assert_eq!(sources, ["xnat/xnat-xnat-web-0"], "a skipped pod leaves no source behind");
}

#[tokio::test]
async fn a_pod_whose_proxy_fails_for_a_moment_is_skipped_and_the_others_still_count() {
    let list_projects = observed(PLAINTEXT, "GET", "/data/projects");
    let mut script = plugins_and_pods(vec![ais::web_pod(0, true, true, "web-0"), ais::web_pod(1, true, true, "web-1")]);
    script.extend([
        Step::get(&pod_proxy("xnat-xnat-web-0")).transient(503),
        Step::get(&pod_proxy("xnat-xnat-web-1")).reply_text(&metrics(&[(&list_projects, 3)])),
    ]);
    let (round, file) = run(script, options(), |cluster| async move {
        let mut file = Observations::new("xnat");
        let round = learn_once(&cluster, "xnat", &[], &mut file).await.unwrap();
        (round, file)
    })
    .await;
    assert_eq!(round.skipped.len(), 1, "{round:?}");
    let skipped = &round.skipped[0];
    assert!(skipped.starts_with("xnat-xnat-web-0: its sidecar's metrics could not be read"), "{skipped}");
    assert!(skipped.ends_with("tried again next sample"), "{skipped}");
    assert_eq!(entries(&file), [entry(PLAINTEXT, "GET", "/data/projects", 3)]);
}

#[tokio::test]
async fn without_get_pods_proxy_learn_stops_naming_the_permission_and_the_file_is_unchanged() {
    let mut script = plugins_and_pods(vec![
        ais::web_pod(0, true, true, "web-0"),
        ais::web_pod(1, true, true, "web-1"),
        ais::postgresql_pod(true),
    ]);
    // RBAC refuses the first pod; learn stops there and asks for no other.
    script.push(Step::get(&pod_proxy("xnat-xnat-web-0")).forbidden("get", "pods/proxy", "", "xnat-xnat-web-0:15090"));
    let mut before = Observations::new("xnat");
    before.merge(
        "xnat/xnat-xnat-web-0",
        "web-0",
        &deployer::observations::Sample::from_prometheus(&metrics(&[(
            &observed(PLAINTEXT, "GET", "/data/projects"),
            2,
        )])),
        deployer::observations::now(),
    );
    let kept = before.clone();
    let (result, after) = run(script, options(), |cluster| async move {
        let mut file = before;
        let result = learn_once(&cluster, "xnat", &[], &mut file).await;
        (result, file)
    })
    .await;
    let err = result.expect_err("a 403 on pods/proxy fails learn").to_string();
    for part in ["xnat-xnat-web-0", "get pods/proxy", "in namespace xnat", "kubectl auth can-i get pods/proxy -n xnat"]
    {
        assert!(err.contains(part), "{part:?} missing from: {err}");
    }
    assert_eq!(after, kept, "nothing was merged");
}

#[tokio::test]
async fn without_a_wasm_plugin_or_a_label_learn_says_to_roll_out_with_observe_or_give_labels() {
    let script = vec![Step::get(WASM_PLUGINS).reply(200, list(vec![]))];
    let (result, after) = run(script, options(), |cluster| async move {
        let mut file = Observations::new("xnat");
        let result = learn_once(&cluster, "xnat", &[], &mut file).await;
        (result, file)
    })
    .await;
    let err = result.expect_err("nothing to read").to_string();
    for part in ["no WasmPlugin in namespace xnat", "deployer rollout xnat --observe", "--label KEY=VALUE"] {
        assert!(err.contains(part), "{part:?} missing from: {err}");
    }
    assert_eq!(after, Observations::new("xnat"));
}

#[tokio::test]
async fn with_a_label_the_pods_it_selects_are_read_and_the_wasm_plugins_are_not_listed() {
    let list_projects = observed(PLAINTEXT, "GET", "/data/projects");
    let script = vec![
        Step::get(PODS).reply(200, list(vec![ais::web_pod(0, true, true, "web-0"), ais::postgresql_pod(true)])),
        Step::get(&pod_proxy("xnat-xnat-web-0")).reply_text(&metrics(&[(&list_projects, 9)])),
    ];
    let labels = [("app".to_string(), "xnat-web".to_string())];
    let file = run(script, options(), |cluster| async move {
        let mut file = Observations::new("xnat");
        learn_once(&cluster, "xnat", &labels, &mut file).await.unwrap();
        file
    })
    .await;
    assert_eq!(entries(&file), [entry(PLAINTEXT, "GET", "/data/projects", 9)]);
}

#[tokio::test]
async fn a_filter_that_answers_but_records_nothing_is_listed_as_not_observing() {
    let list_projects = observed(PLAINTEXT, "GET", "/data/projects");
    let mut script = plugins_and_pods(vec![ais::web_pod(0, true, true, "web-0"), ais::web_pod(1, true, true, "web-1")]);
    script.extend([
        // Rolled out without --observe: the filter counts what it allows, records nothing.
        Step::get(&pod_proxy("xnat-xnat-web-0"))
            .reply_text("# TYPE xnat_guard_allowed counter\nxnat_guard_allowed{} 5\nxnat_guard_denied_policy{} 0\n"),
        Step::get(&pod_proxy("xnat-xnat-web-1")).reply_text(&metrics(&[(&list_projects, 2)])),
    ]);
    let (round, file) = run(script, options(), |cluster| async move {
        let mut file = Observations::new("xnat");
        let round = learn_once(&cluster, "xnat", &[], &mut file).await.unwrap();
        (round, file)
    })
    .await;
    assert_eq!(round.not_observing, ["xnat-xnat-web-0"]);
    assert!(round.skipped.is_empty(), "{round:?}");
    assert_eq!(entries(&file), [entry(PLAINTEXT, "GET", "/data/projects", 2)]);
}

/// The route the filter records for `path`.
fn route_of(path: &str) -> String {
    let mut out = [0u8; MAX_ROUTE];
    let len = route_template(path.as_bytes(), &mut out);
    String::from_utf8(out[..len].to_vec()).unwrap()
}

#[tokio::test]
async fn the_observations_file_holds_no_identifier_from_xnats_paths() {
    const IDENTIFIERS: [&str; 4] = ["SMITH_J_1950", "PAT42", "MR_0001", "T1_MPRAGE"];
    let paths = [
        "/data/projects/SMITH_J_1950/subjects/PAT42/experiments/MR_0001",
        "/data/projects/SMITH_J_1950/subjects/PAT42",
        "/data/experiments/MR_0001/scans/1/resources/DICOM/files/PAT42_T1_MPRAGE.dcm",
        "/data/archive/projects/SMITH_J_1950/subjects/PAT42/experiments/MR_0001/scans/T1_MPRAGE",
        "/REST/projects/SMITH_J_1950",
    ];
    let routes: Vec<String> = paths.iter().map(|p| route_of(p)).collect();
    assert_eq!(routes[0], "/data/projects/{*}/subjects/{*}/experiments/{*}");
    for route in &routes {
        assert!(!IDENTIFIERS.iter().any(|id| route.contains(id)), "the filter's route {route} holds an identifier");
    }
    let records: Vec<(String, u64)> = routes
        .iter()
        .enumerate()
        .flat_map(|(i, r)| [(observed(PLAINTEXT, "GET", r), i as u64 + 1), (observed(CONTAINER_SERVICE, "PUT", r), 1)])
        .collect();
    let text = metrics(&records.iter().map(|(n, c)| (n.as_str(), *c)).collect::<Vec<_>>());
    let mut script = plugins_and_pods(vec![ais::web_pod(0, true, true, "web-0")]);
    script.push(Step::get(&pod_proxy("xnat-xnat-web-0")).reply_text(&text));
    script.push(service_accounts("xnat", &["container-service"]));
    let file = run(script, options(), |cluster| async move {
        let mut file = Observations::new("xnat");
        learn_once(&cluster, "xnat", &[], &mut file).await.unwrap();
        file
    })
    .await;
    assert_eq!(file.total(), 15 + 5);
    let yaml = serde_yaml::to_string(&file).unwrap();
    assert!(yaml.contains("/data/projects/{*}/subjects/{*}/experiments/{*}"), "{yaml}");
    for id in IDENTIFIERS {
        // As written, and as a metric name escapes it (`_` as `_5F`).
        for form in [id.to_string(), id.replace('_', "_5F")] {
            assert!(!yaml.contains(&form), "{form} is in the observations file:\n{yaml}");
        }
    }
}

#[test]
fn learn_help_shows_the_loop_from_learning_to_enforcing() {
    let out = std::process::Command::new(env!("CARGO_BIN_EXE_deployer"))
        .args(["learn", "--help"])
        .output()
        .expect("the deployer runs");
    assert!(out.status.success(), "{out:?}");
    let help = String::from_utf8_lossy(&out.stdout);
    for part in [
        "deployer rollout NAMESPACE --observe",
        "deployer learn NAMESPACE",
        "deployer suggest --observations FILE",
        "--dry-run-policy FILE",
        "deployer promote NAMESPACE",
        "get pods/proxy",
        "--observations <FILE>",
        "--label <KEY=VALUE>",
    ] {
        assert!(help.contains(part), "{part:?} missing from:\n{help}");
    }
}

/// The reporting namespace's reader, calling in over mTLS.
const REPORTER: &str = "spiffe://cluster.local/ns/reporting/sa/reporter";

#[tokio::test]
async fn after_the_metrics_the_service_accounts_of_each_caller_namespace_are_listed_and_kept_sorted() {
    let records = [
        (observed(PLAINTEXT, "GET", "/data/projects"), 4),
        (observed(REPORTER, "GET", "/data/projects"), 2),
        (observed(CONTAINER_SERVICE, "GET", "/data/projects/{*}"), 1),
        // Another trust domain's caller of the same namespace: the namespace is listed once.
        (observed("spiffe://partner.org/ns/reporting/sa/reporter", "GET", "/data/projects"), 1),
    ];
    let text = metrics(&records.iter().map(|(n, c)| (n.as_str(), *c)).collect::<Vec<_>>());
    let mut script = plugins_and_pods(vec![ais::web_pod(0, true, true, "web-0")]);
    script.extend([
        Step::get(&pod_proxy("xnat-xnat-web-0")).reply_text(&text),
        // In the order of the namespaces' names; plaintext has none.
        service_accounts("reporting", &["reporter", "default", "auditor"]),
        service_accounts("xnat", &["xnat-web", "container-service", "default"]),
    ]);
    let (round, file) = run(script, options(), |cluster| async move {
        let mut file = Observations::new("xnat");
        let round = learn_once(&cluster, "xnat", &[], &mut file).await.unwrap();
        (round, file)
    })
    .await;
    assert!(round.notes.is_empty(), "{round:?}");
    let listed: Vec<(&str, Vec<&str>)> =
        file.service_accounts.iter().map(|(ns, sas)| (ns.as_str(), sas.iter().map(String::as_str).collect())).collect();
    assert_eq!(
        listed,
        [
            ("reporting", vec!["auditor", "default", "reporter"]),
            ("xnat", vec!["container-service", "default", "xnat-web"])
        ]
    );
    let yaml = serde_yaml::to_string(&file).unwrap();
    assert!(yaml.contains("serviceAccounts:\n  reporting:\n  - auditor\n  - default\n  - reporter\n"), "{yaml}");
    assert_eq!(Observations::parse(&yaml, "xnat-guard-observations.yaml").unwrap(), file);
}

#[tokio::test]
async fn without_list_serviceaccounts_a_namespace_gets_no_entry_and_a_note_says_suggest_writes_a_rule_per_account() {
    let records = [(observed(REPORTER, "GET", "/data/projects"), 2), (observed(CONTAINER_SERVICE, "GET", "/"), 1)];
    let text = metrics(&records.iter().map(|(n, c)| (n.as_str(), *c)).collect::<Vec<_>>());
    let mut script = plugins_and_pods(vec![ais::web_pod(0, true, true, "web-0")]);
    script.extend([
        Step::get(&pod_proxy("xnat-xnat-web-0")).reply_text(&text),
        Step::get(&service_accounts_path("reporting")).forbidden("list", "serviceaccounts", "", ""),
        service_accounts("xnat", &["container-service", "default"]),
    ]);
    let (round, file) = run(script, options(), |cluster| async move {
        let mut file = Observations::new("xnat");
        let round = learn_once(&cluster, "xnat", &[], &mut file).await.unwrap();
        (round, file)
    })
    .await;
    assert_eq!(
        round.notes,
        ["service accounts of reporting not listed (forbidden: needs `list serviceaccounts` in reporting): suggest \
          writes a rule per service account there"]
    );
    assert!(!file.service_accounts.contains_key("reporting"), "{:?}", file.service_accounts);
    assert_eq!(file.service_accounts["xnat"], ["container-service", "default"]);
    assert_eq!(file.total(), 3, "the samples were kept all the same");
}

#[tokio::test]
async fn a_namespace_that_is_gone_or_does_not_answer_keeps_its_last_listing_with_a_note() {
    let records = [(observed(REPORTER, "GET", "/data/projects"), 2), (observed(CONTAINER_SERVICE, "GET", "/"), 1)];
    let text = metrics(&records.iter().map(|(n, c)| (n.as_str(), *c)).collect::<Vec<_>>());
    let mut script = plugins_and_pods(vec![ais::web_pod(0, true, true, "web-0")]);
    script.extend([
        Step::get(&pod_proxy("xnat-xnat-web-0")).reply_text(&text),
        Step::get(&service_accounts_path("reporting")).not_found(),
        Step::get(&service_accounts_path("xnat")).transient(503),
    ]);
    let (round, file) = run(script, options(), |cluster| async move {
        let mut file = Observations::new("xnat");
        file.set_service_accounts("reporting", vec!["reporter".into(), "default".into()]);
        file.set_service_accounts("xnat", vec!["container-service".into()]);
        let round = learn_once(&cluster, "xnat", &[], &mut file).await.unwrap();
        (round, file)
    })
    .await;
    assert_eq!(round.notes.len(), 2, "{round:?}");
    assert!(
        round.notes[0].starts_with("service accounts of reporting not listed (namespace reporting not found)"),
        "{}",
        round.notes[0]
    );
    assert!(round.notes[1].starts_with("service accounts of xnat not listed ("), "{}", round.notes[1]);
    assert!(round.notes[1].contains("listed again next sample"), "{}", round.notes[1]);
    assert!(round.notes.iter().all(|n| n.ends_with("the file keeps their last listing")), "{:?}", round.notes);
    assert_eq!(file.service_accounts["reporting"], ["default", "reporter"], "as it was");
    assert_eq!(file.service_accounts["xnat"], ["container-service"], "as it was");
}

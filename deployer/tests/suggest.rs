//! `deployer suggest` turns what XNAT's callers were seen doing into the tightest
//! AuthorizationPolicy that would have broken none of it, and proves it: every observation
//! replays as allowed, what was never seen is denied, and against the policy in force it lists
//! what the suggestion takes away. The traffic is `tests/fixtures/suggest/observations.yaml`:
//! the web UI through the load balancer (plaintext on 8080), an uploader service account posting
//! sessions, and a reporting namespace reading projects and experiments.

use std::path::{Path, PathBuf};
use std::process::Command;

use deployer::check::{check, RequestSpec};
use deployer::observations::Observations;
use deployer::resources::{self, Mesh, Object, PolicyTarget};
use deployer::suggest::{suggest, Options, Suggestion};
use xnat_guard_policy::Engine;

const UPLOADER: &str = "spiffe://cluster.local/ns/xnat/sa/uploader";
const REPORTER: &str = "spiffe://cluster.local/ns/reporting/sa/reporter";

fn fixture(name: &str) -> PathBuf {
    Path::new(env!("CARGO_MANIFEST_DIR")).join("tests/fixtures/suggest").join(name)
}

fn runbook(name: &str) -> PathBuf {
    Path::new(env!("CARGO_MANIFEST_DIR")).parent().expect("the workspace").join("examples/runbook").join(name)
}

fn observations() -> Observations {
    Observations::load(&fixture("observations.yaml")).expect("the fixture is an observations file")
}

fn xnat_web() -> Vec<(String, String)> {
    vec![("app".to_string(), "xnat-web".to_string())]
}

fn options() -> Options {
    Options { labels: xnat_web(), ..Options::default() }
}

fn policies(paths: &[PathBuf]) -> Vec<Object> {
    resources::load_files(paths).expect("the runbook's policies load")
}

fn suggested(current: &[Object], options: &Options) -> Suggestion {
    suggest(&observations(), current, options).unwrap_or_else(|e| panic!("no suggestion: {e}"))
}

/// The suggestion's own text, read back as a user's file and compiled for xnat-web, as
/// `deployer check --policy suggested.yaml` would.
fn compiled(suggestion: &Suggestion) -> Engine {
    let objects = resources::parse_documents(&suggestion.yaml, "suggested.yaml").expect("the suggestion is YAML");
    let target = PolicyTarget { namespace: "xnat".into(), labels: xnat_web().into_iter().collect() };
    let (selection, engine) = resources::select(&objects, &target, &Mesh::default()).expect("the engine accepts it");
    assert_eq!(selection.origins.len(), 1, "one AuthorizationPolicy, selected for xnat-web: {:?}", selection.notes);
    engine
}

fn allowed(engine: &Engine, principal: Option<&str>, method: &str, path: &str, port: u16) -> bool {
    let target = PolicyTarget { namespace: "xnat".into(), labels: xnat_web().into_iter().collect() };
    let (selection, _) = resources::select(&[], &target, &Mesh::default()).expect("an empty selection");
    let spec = RequestSpec {
        method: method.into(),
        path: path.into(),
        port,
        principal: principal.map(str::to_string),
        ..RequestSpec::default()
    };
    check(engine, &selection, &spec).0.verdict.is_allowed()
}

#[test]
fn the_suggestion_is_one_allow_policy_the_engine_accepts_for_the_workload() {
    let s = suggested(&[], &options());
    let value: serde_yaml::Value = serde_yaml::from_str(&s.yaml).expect("YAML");
    assert_eq!(value["apiVersion"].as_str(), Some("security.istio.io/v1"), "{}", s.yaml);
    assert_eq!(value["kind"].as_str(), Some("AuthorizationPolicy"));
    assert_eq!(value["metadata"]["name"].as_str(), Some("xnat-least-privilege"));
    assert_eq!(value["metadata"]["namespace"].as_str(), Some("xnat"), "the observations' namespace");
    assert_eq!(value["spec"]["action"].as_str(), Some("ALLOW"));
    assert_eq!(value["spec"]["selector"]["matchLabels"]["app"].as_str(), Some("xnat-web"));
    let rules = value["spec"]["rules"].as_sequence().expect("rules");
    assert_eq!(rules.len(), 3, "one rule per caller: plaintext, the reporter, the uploader\n{}", s.yaml);
    compiled(&s);
}

#[test]
fn each_caller_gets_its_own_rule_plaintext_by_not_principals() {
    let s = suggested(&[], &options());
    let value: serde_yaml::Value = serde_yaml::from_str(&s.yaml).unwrap();
    let sources: Vec<String> = value["spec"]["rules"]
        .as_sequence()
        .unwrap()
        .iter()
        .map(|r| serde_yaml::to_string(&r["from"][0]["source"]).unwrap().trim().to_string())
        .collect();
    assert_eq!(
        sources,
        vec![
            "notPrincipals:\n- '*'".to_string(),
            "principals:\n- cluster.local/ns/reporting/sa/reporter".to_string(),
            "principals:\n- cluster.local/ns/xnat/sa/uploader".to_string(),
        ],
        "{}",
        s.yaml
    );
    assert!(!s.yaml.contains("namespaces:"), "no namespace rule without the namespace's service accounts");
}

#[test]
fn a_callers_routes_are_grouped_per_port_by_identical_method_set() {
    let s = suggested(&[], &options());
    let value: serde_yaml::Value = serde_yaml::from_str(&s.yaml).unwrap();
    let to = value["spec"]["rules"][0]["to"].as_sequence().expect("the plaintext rule's operations");
    let ops: Vec<(Vec<String>, Vec<String>, Vec<String>)> = to
        .iter()
        .map(|t| {
            let list = |k: &str| -> Vec<String> {
                t["operation"][k].as_sequence().unwrap().iter().map(|v| v.as_str().unwrap().to_string()).collect()
            };
            (list("ports"), list("methods"), list("paths"))
        })
        .collect();
    let v = |xs: &[&str]| xs.iter().map(|x| x.to_string()).collect::<Vec<_>>();
    let files = "/data/projects/{*}/subjects/{*}/experiments/{*}/scans/{*}/resources/{*}/files/{**}";
    assert_eq!(
        ops,
        vec![
            (v(&["8080"]), v(&["DELETE", "GET", "POST"]), v(&[files])),
            (v(&["8080"]), v(&["DELETE", "GET", "PUT"]), v(&["/data/projects/{*}", "/data/projects/{*}/subjects/{*}"])),
            (v(&["8080"]), v(&["GET"]), v(&["/app/template/Index.vm", "/data/projects/{*}/subjects", "/scripts/{**}"])),
            (v(&["8080"]), v(&["GET", "POST"]), v(&["/data/projects"])),
            (v(&["8080"]), v(&["GET", "PUT"]), v(&["/data/projects/{*}/subjects/{*}/experiments/{*}"])),
            (v(&["8080"]), v(&["POST"]), v(&["/data/JSESSION"])),
        ],
        "{}",
        s.yaml
    );
    assert_eq!(suggested(&[], &options()).yaml, s.yaml, "the same observations give the same text");
}

#[test]
fn every_observed_request_replays_as_allowed() {
    let s = suggested(&[], &options());
    assert!(s.replay.refused.is_empty(), "{:?}", s.replay.refused);
    assert_eq!(s.replay.observations, 20);
    assert_eq!(s.replay.requests, observations().total());
    assert_eq!(s.replay.allowed_requests, s.replay.requests);
    assert_eq!(
        s.replay.to_string(),
        format!("replay: {0} of {0} observed requests allowed (100%), 20 of 20 observations", s.replay.requests)
    );
}

#[test]
fn the_replay_holds_with_the_runbooks_peer_authentication() {
    // STRICT on every port but 8080, where the load balancer speaks plaintext.
    let current = policies(&[runbook("istio-auth-policy-post.yaml"), runbook("istio-mtls.yaml")]);
    let s = suggested(&current, &Options::default());
    assert!(s.replay.refused.is_empty(), "{:?}", s.replay.refused);
    assert_eq!(s.target.labels.get("app").map(String::as_str), Some("xnat-web"), "inferred from the policies");
}

#[test]
fn requests_never_seen_are_denied_by_the_suggestion() {
    let engine = compiled(&suggested(&[], &options()));
    // Seen, for contrast.
    assert!(allowed(&engine, None, "GET", "/data/projects/P1/subjects/S1", 8080));
    assert!(allowed(&engine, Some(REPORTER), "GET", "/data/experiments/E1", 8443));
    assert!(allowed(&engine, Some(UPLOADER), "POST", "/data/services/import", 8443));
    // Never seen.
    let unseen = [
        (Some(REPORTER), "DELETE", "/data/experiments/E1", 8443, "DELETE from the reporting namespace"),
        (Some(REPORTER), "GET", "/data/projects/P1", 8443, "a route the reporter never read"),
        (Some(REPORTER), "GET", "/data/projects", 8080, "a port the reporter never used"),
        (Some("spiffe://cluster.local/ns/reporting/sa/other"), "GET", "/data/projects", 8443, "another account"),
        (None, "GET", "/xapi/users", 8080, "GET /xapi/users from plaintext"),
        (None, "POST", "/data/services/import", 8080, "the uploader's route from plaintext"),
        (None, "PATCH", "/data/projects", 8080, "a method plaintext never used"),
        (None, "GET", "/data/projects", 8443, "plaintext on the mTLS port"),
        (Some(UPLOADER), "POST", "/data/services/import/more", 8443, "below the uploader's route"),
    ];
    for (principal, method, path, port, why) in unseen {
        assert!(!allowed(&engine, principal, method, path, port), "{why}: {method} {path} on {port}");
    }
}

#[test]
fn the_plaintext_rule_grants_nothing_to_callers_with_an_identity() {
    // Plaintext used DELETE on files; no mTLS caller did.
    let engine = compiled(&suggested(&[], &options()));
    let files = "/data/projects/P/subjects/S/experiments/E/scans/1/resources/DICOM/files/a/b.dcm";
    assert!(allowed(&engine, None, "DELETE", files, 8080), "plaintext keeps what it used");
    // A peer over mTLS without a URI SAN has no principal either: Istio's notPrincipals ["*"]
    // matches it too, and the filter records it as `mtls-without-identity`, which shares the rule.
    assert!(allowed(&engine, Some(""), "DELETE", files, 8080), "no identity, as plaintext");
    for principal in [UPLOADER, REPORTER, "spiffe://cluster.local/ns/elsewhere/sa/default", "spiffe://other.domain/x"] {
        assert!(!allowed(&engine, Some(principal), "DELETE", files, 8080), "{principal} gets nothing through it");
        assert!(!allowed(&engine, Some(principal), "GET", "/data/projects", 8080), "{principal}");
    }
}

#[test]
fn min_count_leaves_out_rare_entries_and_lists_them() {
    let s = suggested(&[], &Options { min_count: 3, ..options() });
    let left: Vec<(&str, &str, u64)> =
        s.left_out.iter().map(|e| (e.method.as_str(), e.route.as_str(), e.count)).collect();
    assert_eq!(
        left,
        vec![
            ("DELETE", "/data/projects/{*}", 1),
            ("DELETE", "/data/projects/{*}/subjects/{*}", 2),
            ("POST", "/data/projects", 2)
        ]
    );
    assert_eq!(s.replay.observations, 17, "only what is kept is replayed");
    assert!(s.replay.refused.is_empty());
    let engine = compiled(&s);
    assert!(!allowed(&engine, None, "DELETE", "/data/projects/P1", 8080), "seen once, left out");
    assert!(allowed(&engine, None, "PUT", "/data/projects/P1", 8080), "seen 3 times, kept");
    assert!(s.yaml.contains("# Left out, seen fewer than 3 times: 3 entries"), "{}", s.yaml);
}

#[test]
fn each_rule_is_commented_with_its_count_and_first_and_last_seen() {
    let s = suggested(&[], &options());
    assert!(
        s.yaml
            .contains(&format!("  # {UPLOADER}: 42 requests, first 2026-11-11T09:00:00Z, last 2026-11-21T17:30:00Z\n")),
        "{}",
        s.yaml
    );
    assert!(s.yaml.contains(&format!("  # {REPORTER}: 35 requests, first ")), "{}", s.yaml);
    let plaintext: u64 = observations().observed.iter().filter(|e| e.caller == "plaintext").map(|e| e.count).sum();
    assert!(
        s.yaml.contains(&format!("  # plaintext: {plaintext} requests, first 2026-11-10T09:00:00Z, ")),
        "{}",
        s.yaml
    );
}

#[test]
fn tightening_against_the_runbooks_policy_lists_delete_from_reporting_as_never_seen() {
    let current = policies(&[runbook("istio-auth-policy-post.yaml")]);
    let s = suggested(&current, &Options::default());
    let tightening = s.tightening.as_ref().expect("a current policy was given");
    let lines: Vec<String> = tightening.findings.iter().map(ToString::to_string).collect();
    let text = lines.join("\n");
    assert!(
        lines.contains(
            &"HEAD, POST, PUT, DELETE, OPTIONS on any route from ns/reporting on 8080, 8443: allowed now, never seen"
                .to_string()
        ),
        "{text}"
    );
    assert!(
        tightening
            .findings
            .iter()
            .any(|f| f.from == "plaintext" && f.ports == [Some(8080)] && f.covers("GET", "/xapi/users")),
        "{text}"
    );
    assert!(!text.contains("PATCH"), "the runbook's policy never allowed PATCH: nothing to take away\n{text}");
    assert!(!text.contains("POST /data/services/import from spiffe://cluster.local/ns/xnat/sa/uploader"), "{text}");
    assert!(lines.len() < 40, "grouped so that it stays readable:\n{text}");
}

#[test]
fn tightening_names_the_left_out_entries_as_seen_rarely() {
    let current = policies(&[runbook("istio-auth-policy-post.yaml")]);
    let s = suggested(&current, &Options { min_count: 2, ..Options::default() });
    let text: Vec<String> = s.tightening.unwrap().findings.iter().map(ToString::to_string).collect();
    assert!(
        text.iter().any(|l| l
            == "DELETE /data/projects/{*} from plaintext on 8080: allowed now, seen 1 time, left out by --min-count"),
        "{text:#?}"
    );
}

#[test]
fn namespaces_and_principals_the_current_policy_names_are_probed() {
    let current = policies(&[runbook("per-source.yaml"), runbook("istio-mtls.yaml")]);
    let s = suggested(&current, &Options::default());
    let text: Vec<String> = s.tightening.unwrap().findings.iter().map(ToString::to_string).collect();
    assert!(text.iter().any(|l| l.contains("from spiffe://cluster.local/ns/xnat-ingest/sa/uploader")), "{text:#?}");
    assert!(
        text.iter()
            .any(|l| l
                == "GET on any route from any other service account of ns/reporting on 8443: allowed now, never seen"),
        "the namespace the policy names is probed beyond the one account seen: {text:#?}"
    );
    assert!(
        text.contains(&"GET, HEAD, POST, PUT, DELETE, OPTIONS on any route from spiffe://cluster.local/ns/xnat/sa/xnat-web on 8443: allowed now, never seen".to_string()),
        "a principal the policy names and nobody saw loses everything, on one line: {text:#?}"
    );
    assert!(
        !text.iter().any(|l| l.contains("DELETE") && l.contains("reporting")),
        "per-source never let reporting write"
    );
}

#[test]
fn what_learn_did_not_write_as_a_template_is_refused() {
    for (field, bad) in [
        ("route", "/data/projects/*"),
        ("route", "data/projects"),
        ("route", "/data/{**}/files"),
        ("caller", "spiffe://cluster.local/ns/*/sa/x"),
        ("caller", "someone"),
        ("method", "G*T"),
    ] {
        let mut file = observations();
        let entry = &mut file.observed[0];
        match field {
            "route" => entry.route = bad.into(),
            "caller" => entry.caller = bad.into(),
            _ => entry.method = bad.into(),
        }
        let err = suggest(&file, &[], &options()).err().unwrap_or_else(|| panic!("{field} {bad:?} accepted"));
        assert!(err.to_string().contains(&format!("observed[0].{field}")), "{err}");
    }
}

#[test]
fn without_a_workload_to_select_suggest_refuses() {
    let err = suggest(&observations(), &[], &Options::default()).expect_err("no selector, no --policy");
    assert!(err.to_string().contains("-l KEY=VALUE"), "{err}");
}

#[test]
fn the_binary_prints_only_the_policy_on_stdout_and_its_proof_on_stderr() {
    let out = Command::new(env!("CARGO_BIN_EXE_deployer"))
        .args(["suggest", "--observations"])
        .arg(fixture("observations.yaml"))
        .arg("--policy")
        .arg(runbook("istio-auth-policy-post.yaml"))
        .args(["--min-count", "2"])
        .output()
        .expect("the deployer runs");
    let stdout = String::from_utf8_lossy(&out.stdout);
    let stderr = String::from_utf8_lossy(&out.stderr);
    assert!(out.status.success(), "{stderr}");
    let value: serde_yaml::Value = serde_yaml::from_str(&stdout).unwrap_or_else(|e| panic!("{e}: {stdout}"));
    assert_eq!(value["kind"].as_str(), Some("AuthorizationPolicy"));
    assert!(stderr.contains("replay: 1026 of 1026 observed requests allowed (100%)"), "{stderr}");
    assert!(
        stderr.contains("left out, seen fewer than 2 times: plaintext DELETE /data/projects/{*} on 8080 (1)"),
        "{stderr}"
    );
    assert!(
        stderr.contains(
            "HEAD, POST, PUT, DELETE, OPTIONS on any route from ns/reporting on 8080, 8443: allowed now, never seen"
        ),
        "{stderr}"
    );
    let help = Command::new(env!("CARGO_BIN_EXE_deployer")).args(["suggest", "--help"]).output().unwrap();
    assert!(help.status.success());
    let help = String::from_utf8_lossy(&help.stdout);
    for step in ["deployer learn", "deployer suggest", "deployer check", "--dry-run-policy", "deployer promote"] {
        assert!(help.contains(step), "--help teaches {step}:\n{help}");
    }
}

#[test]
fn a_replay_that_denies_an_observation_exits_non_zero_and_names_it() {
    // The uploader was seen over mTLS on 8080, where the runbook's PeerAuthentication now says
    // DISABLE: its identity would never reach the filter there, so its rule cannot let it in.
    let mut file = observations();
    let mut entry = file.observed.iter().find(|e| e.caller == UPLOADER).expect("the uploader").clone();
    entry.port = Some(8080);
    file.observed.push(entry);
    let path = std::env::temp_dir().join(format!("suggest-replay-{}.yaml", std::process::id()));
    file.save(&path).expect("written");
    let out = Command::new(env!("CARGO_BIN_EXE_deployer"))
        .args(["suggest", "--observations"])
        .arg(&path)
        .arg("--policy")
        .arg(runbook("istio-auth-policy-post.yaml"))
        .arg("--policy")
        .arg(runbook("istio-mtls.yaml"))
        .output()
        .expect("the deployer runs");
    let _ = std::fs::remove_file(&path);
    let stderr = String::from_utf8_lossy(&out.stderr);
    assert_eq!(out.status.code(), Some(1), "{stderr}");
    assert!(
        stderr.contains("replay: 1027 of 1069 observed requests allowed (96.0%), 20 of 21 observations"),
        "{stderr}"
    );
    assert!(
        stderr.contains(&format!(
            "DENIED by the suggestion: POST /data/services/import (/data/services/import) from {UPLOADER} on 8080"
        )) && stderr.contains("judged as plaintext"),
        "the request is named, and why: {stderr}"
    );
}

/// The fixture, with the reporting namespace's service accounts as learn listed them, and each
/// account of `seen` but the reporter doing what its entries say (method, route, count), by
/// default what the reporter did.
/// What one account was seen doing: (method, route, count), or `None` for what the reporter did.
type Did<'a> = Option<&'a [(&'a str, &'a str, u64)]>;

fn reporting(listed: &[&str], seen: &[(&str, Did)]) -> Observations {
    let mut file = observations();
    let reporter: Vec<_> = file.observed.iter().filter(|e| e.caller == REPORTER).cloned().collect();
    for (sa, entries) in seen {
        let caller = if sa.starts_with("spiffe://") {
            sa.to_string()
        } else {
            format!("spiffe://cluster.local/ns/reporting/sa/{sa}")
        };
        if caller == REPORTER {
            continue;
        }
        match entries {
            None => file.observed.extend(reporter.iter().cloned().map(|mut e| {
                e.caller = caller.clone();
                e
            })),
            Some(entries) => file.observed.extend(entries.iter().map(|(method, route, count)| {
                let mut e = reporter[0].clone();
                e.caller = caller.clone();
                e.method = method.to_string();
                e.route = route.to_string();
                e.count = *count;
                e
            })),
        }
    }
    file.observed.sort();
    file.set_service_accounts("reporting", listed.iter().map(|s| s.to_string()).collect());
    file
}

fn sources(s: &Suggestion) -> Vec<String> {
    let value: serde_yaml::Value = serde_yaml::from_str(&s.yaml).unwrap();
    value["spec"]["rules"]
        .as_sequence()
        .unwrap()
        .iter()
        .map(|r| serde_yaml::to_string(&r["from"][0]["source"]).unwrap().trim().to_string())
        .collect()
}

fn assert_replays_all(s: &Suggestion, file: &Observations) {
    assert!(s.replay.refused.is_empty(), "{:?}\n{}", s.replay.refused, s.yaml);
    assert_eq!(s.replay.observations, file.observed.iter().filter(|e| e.count >= s.min_count).count());
    assert_eq!(s.replay.allowed_requests, s.replay.requests);
    assert!(s.replay.to_string().contains("(100%)"), "{}", s.replay);
}

#[test]
fn a_namespace_rule_is_written_where_every_listed_service_account_was_seen_doing_the_same() {
    let file = reporting(&["auditor", "reporter"], &[("auditor", None), ("reporter", None)]);
    let s = suggest(&file, &[], &options()).unwrap();
    assert_eq!(
        sources(&s),
        ["notPrincipals:\n- '*'", "namespaces:\n- reporting", "principals:\n- cluster.local/ns/xnat/sa/uploader",],
        "{}",
        s.yaml
    );
    assert!(
        s.yaml.contains("  # every service account of reporting (auditor, reporter) was seen doing the same"),
        "{}",
        s.yaml
    );
    assert!(s.yaml.contains("  # spiffe://cluster.local/ns/reporting/sa/auditor: 35 requests, first "), "{}", s.yaml);
    assert_replays_all(&s, &file);
    let engine = compiled(&s);
    for sa in ["auditor", "reporter"] {
        let id = format!("spiffe://cluster.local/ns/reporting/sa/{sa}");
        assert!(allowed(&engine, Some(&id), "GET", "/data/experiments/E1", 8443), "{sa} keeps what it did");
        assert!(!allowed(&engine, Some(&id), "DELETE", "/data/experiments/E1", 8443), "{sa}: never seen");
        assert!(!allowed(&engine, Some(&id), "GET", "/data/projects", 8080), "{sa}: a port never used");
    }
    assert!(!allowed(&engine, Some(UPLOADER), "GET", "/data/experiments/E1", 8443), "another namespace");
    assert!(!allowed(&engine, None, "GET", "/data/experiments/E1", 8443), "plaintext");
    // The tightening still finds what the runbook's policy allows and the suggestion denies.
    let current = policies(&[runbook("istio-auth-policy-post.yaml")]);
    let s = suggest(&file, &current, &Options::default()).unwrap();
    assert_replays_all(&s, &file);
    let lines: Vec<String> = s.tightening.unwrap().findings.iter().map(ToString::to_string).collect();
    assert!(
        lines.contains(
            &"HEAD, POST, PUT, DELETE, OPTIONS on any route from ns/reporting on 8080, 8443: allowed now, never seen"
                .to_string()
        ),
        "{lines:#?}"
    );
}

#[test]
fn no_namespace_rule_where_a_listed_service_account_was_never_seen() {
    // Every namespace has a `default` account; nobody was seen calling as it.
    let file = reporting(&["auditor", "default", "reporter"], &[("auditor", None), ("reporter", None)]);
    let s = suggest(&file, &[], &options()).unwrap();
    assert!(!s.yaml.contains("namespaces:"), "{}", s.yaml);
    assert_eq!(sources(&s).len(), 4, "a rule per account seen: {}", s.yaml);
    assert!(s.notes.iter().any(|n| n.starts_with("ns/reporting: sa/default was never seen")), "{:#?}", s.notes);
    assert_replays_all(&s, &file);
    let engine = compiled(&s);
    let default = "spiffe://cluster.local/ns/reporting/sa/default";
    assert!(!allowed(&engine, Some(default), "GET", "/data/experiments/E1", 8443), "the unseen account gets nothing");
}

#[test]
fn no_namespace_rule_where_two_service_accounts_did_different_things() {
    let file =
        reporting(&["auditor", "reporter"], &[("auditor", Some(&[("GET", "/data/projects", 10)])), ("reporter", None)]);
    let s = suggest(&file, &[], &options()).unwrap();
    assert!(!s.yaml.contains("namespaces:"), "{}", s.yaml);
    assert!(
        s.notes.iter().any(|n| n.starts_with("ns/reporting: sa/auditor and sa/reporter do different things")),
        "{:#?}",
        s.notes
    );
    assert_replays_all(&s, &file);
    let engine = compiled(&s);
    let auditor = "spiffe://cluster.local/ns/reporting/sa/auditor";
    assert!(allowed(&engine, Some(auditor), "GET", "/data/projects", 8443));
    assert!(!allowed(&engine, Some(auditor), "GET", "/data/experiments/E1", 8443), "what only the reporter did");
}

#[test]
fn a_namespace_rule_is_refused_saying_why_for_each_way_the_accounts_fall_short() {
    let partner = "spiffe://partner.org/ns/reporting/sa/auditor";
    // Once: the reporter's entries were seen 10 and 25 times.
    let rare = [("GET", "/data/experiments/{*}", 1), ("GET", "/data/projects", 1)];
    type Case<'a> = (&'a str, &'a [&'a str], Vec<(&'a str, Did<'a>)>, u64, &'a str);
    let cases: [Case; 5] = [
        (
            "below --min-count",
            &["auditor", "reporter"],
            vec![("auditor", Some(&rare))],
            5,
            "ns/reporting: sa/auditor was seen only fewer than 5 times",
        ),
        (
            "seen but not listed",
            &["reporter"],
            vec![("auditor", None)],
            1,
            "ns/reporting: sa/auditor was seen but is not among its service accounts as learn last listed them",
        ),
        ("one account", &["reporter"], vec![], 1, "ns/reporting has one service account (reporter)"),
        ("not listed at all", &[], vec![("auditor", None)], 1, "ns/reporting: its service accounts were not listed"),
        (
            "another trust domain",
            &["auditor", "reporter"],
            vec![("auditor", None), (partner, None)],
            1,
            "ns/reporting: spiffe://partner.org/ns/reporting/sa/auditor is of another trust domain",
        ),
    ];
    for (case, listed, seen, min_count, note) in cases {
        let mut file = reporting(listed, &seen);
        if listed.is_empty() {
            file.service_accounts.clear();
        }
        let s = suggest(&file, &[], &Options { min_count, ..options() }).unwrap();
        assert!(!s.yaml.contains("namespaces:"), "{case}: {}", s.yaml);
        assert!(s.notes.iter().any(|n| n.starts_with(note)), "{case}: {note:?} not in {:#?}", s.notes);
        assert_replays_all(&s, &file);
    }
}

#[test]
fn the_binary_says_why_each_namespace_has_a_rule_or_not() {
    let file = reporting(&["auditor", "reporter"], &[("auditor", None), ("reporter", None)]);
    let path = std::env::temp_dir().join(format!("suggest-namespace-{}.yaml", std::process::id()));
    file.save(&path).expect("written");
    let out = Command::new(env!("CARGO_BIN_EXE_deployer"))
        .args(["suggest", "--observations"])
        .arg(&path)
        .arg("--policy")
        .arg(runbook("istio-auth-policy-post.yaml"))
        .output()
        .expect("the deployer runs");
    let _ = std::fs::remove_file(&path);
    let stdout = String::from_utf8_lossy(&out.stdout);
    let stderr = String::from_utf8_lossy(&out.stderr);
    assert!(out.status.success(), "{stderr}");
    assert!(stdout.contains("        namespaces: [\"reporting\"]\n"), "{stdout}");
    assert!(
        stderr.contains(
            "note: ns/reporting: every service account (auditor, reporter) was seen doing the same: one rule"
        ),
        "{stderr}"
    );
    assert!(stderr.contains("note: ns/xnat: its service accounts were not listed"), "{stderr}");
    assert!(!stderr.contains("no namespace rule: the observations do not list"), "{stderr}");
    assert!(stderr.contains("(100%)"), "{stderr}");
}

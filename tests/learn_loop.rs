//! Least privilege from real traffic, end to end in a real Envoy with real mutual TLS: the
//! filter observes an XNAT-like mix under the runbook's policy, `deployer suggest` turns what it
//! saw into the tightest policy, the suggestion runs as dry-run (an unseen request is served and
//! recorded as what enforcing would break), then enforced: every seen request is still served,
//! and what was never seen gets 403 and never reaches the upstream.

use std::path::{Path, PathBuf};

use deployer::local::client::RawRequest;
use deployer::observations::{Observations, Sample};
use deployer::suggest::{suggest, Options};
use harness::support::{project_root, Sidecar};
use xnat_guard_policy::observe::{parse_metric_name, RecordKind};

const EXEMPT: u16 = 8080;
const STRICT: u16 = 8443;
const RUNBOOK: [&str; 2] = ["examples/runbook/istio-mtls.yaml", "examples/runbook/istio-auth-policy-post.yaml"];
const VIEWER: &str = "spiffe://cluster.local/ns/reporting/sa/viewer";

/// (port, caller label or plaintext, method, path): the web UI through the load balancer, the
/// uploader posting sessions, the reporting namespace reading.
const MIX: &[(u16, Option<&str>, &str, &str)] = &[
    (EXEMPT, None, "GET", "/data/projects"),
    (EXEMPT, None, "GET", "/data/projects/P1/subjects/S1"),
    (EXEMPT, None, "POST", "/data/projects/P1/subjects/S2"),
    (EXEMPT, None, "PUT", "/data/projects/P1/subjects/S2/experiments/E1"),
    (EXEMPT, None, "GET", "/data/projects/P1/subjects/S2/experiments/E1/scans/1/resources/DICOM/files/a/b.dcm"),
    (EXEMPT, None, "DELETE", "/data/projects/P1/subjects/S2/experiments/E1/scans/1/resources/DICOM/files/a/b.dcm"),
    (EXEMPT, None, "GET", "/app/template/Index.vm"),
    // A file name with a space arrives percent-encoded; it is learnt, and served once enforced.
    (EXEMPT, None, "GET", "/data/experiments/E1/scans/1/resources/DICOM/files/Scan%20Report.pdf"),
    (STRICT, Some("uploader"), "POST", "/data/services/import?project=P1&dest=/prearchive"),
    (STRICT, Some("viewer"), "GET", "/data/projects"),
    (STRICT, Some("viewer"), "GET", "/data/projects/P2/experiments"),
    (STRICT, Some("viewer"), "GET", "/data/experiments/E7"),
];

fn policy_files(extra: &[&Path]) -> Vec<PathBuf> {
    let mut files: Vec<PathBuf> = RUNBOOK.iter().map(|f| project_root().join(f)).collect();
    files.extend(extra.iter().map(|p| p.to_path_buf()));
    files
}

/// The filter's configuration for `files`, as `deployer local` builds it, observing or not.
fn config(files: &[PathBuf], observe: bool) -> String {
    let (_, mut selection, _) =
        deployer::resources::load_for_workload(files, &Default::default(), None, &[]).expect("policies load");
    if observe {
        selection.config.observe = xnat_guard_policy::ObserveMode::Routes;
    }
    serde_json::to_string(&selection.config).expect("serialise")
}

fn send_mix(sidecar: &Sidecar, round: &str) {
    for (i, &(port, caller, method, path)) in MIX.iter().enumerate() {
        let tag = format!("{round}-{i}");
        let r = sidecar.send(port, caller, RawRequest::new(method, path), &tag);
        assert_eq!(r.status, 200, "{tag} {method} {path}: {}", r.body_text());
        assert_eq!(sidecar.arrived(&tag), 1, "{tag}: not served exactly once");
    }
}

fn sample(sidecar: &Sidecar) -> Sample {
    Sample::from_prometheus(&sidecar.inner.prometheus().expect("Envoy's /stats/prometheus"))
}

#[test]
fn learn_suggest_dry_run_then_enforce_in_a_real_envoy() {
    let work = tempfile::tempdir().expect("temp dir");
    // 1. Observe under the runbook's policy (everything allowed).
    let observing = Sidecar::start(&config(&policy_files(&[]), true), &[EXEMPT, STRICT]).expect("sidecar starts");
    send_mix(&observing, "learn");
    send_mix(&observing, "learn-again");
    let mut observations = Observations::new("xnat");
    let merged = observations.merge("local", "1", &sample(&observing), deployer::observations::now());
    assert_eq!(merged.requests, 2 * MIX.len() as u64, "every request was recorded: {observations:#?}");
    // Lossless: the identity and the route come back exactly, and no identifier is in the file.
    let text = serde_yaml::to_string(&observations).expect("yaml");
    for identifier in ["P1", "S1", "S2", "E1", "E7", "b.dcm", "prearchive", "Report"] {
        assert!(!text.contains(identifier), "{identifier} was recorded:\n{text}");
    }
    assert!(observations.observed.iter().any(|e| e.caller == VIEWER && e.route == "/data/experiments/{*}"), "{text}");
    drop(observing);
    let file = work.path().join("observations.yaml");
    observations.save(&file).expect("saved");

    // 2. Suggest, proven by replay, from the file as `deployer suggest` reads it.
    let observations = Observations::load(&file).expect("the file reads back");
    let current = deployer::resources::load_files(&policy_files(&[])).expect("runbook loads");
    let suggestion = suggest(&observations, &current, &Options::default()).expect("a suggestion");
    assert!(suggestion.replay.all_allowed(), "the replay allows every observation: {:#?}", suggestion.replay);
    assert_eq!(suggestion.replay.allowed_requests, 2 * MIX.len() as u64);
    let suggested = suggestion.yaml.clone();
    let enforced_file = work.path().join("suggested.yaml");
    std::fs::write(&enforced_file, &suggested).expect("write");
    let dry_run_file = work.path().join("suggested-dry-run.yaml");
    let mut dry: serde_yaml::Value = serde_yaml::from_str(&suggested).expect("the suggestion is YAML");
    dry["metadata"]["annotations"]["istio.io/dry-run"] = "true".into();
    std::fs::write(&dry_run_file, serde_yaml::to_string(&dry).expect("yaml")).expect("write");

    // 3. Dry-run beside the runbook's policy: an unseen request is still served, and recorded.
    let dry_run = Sidecar::start(&config(&policy_files(&[&dry_run_file]), false), &[EXEMPT, STRICT]).expect("starts");
    send_mix(&dry_run, "dry");
    let r = dry_run.send(STRICT, Some("viewer"), RawRequest::new("DELETE", "/data/projects/P2"), "dry-unseen");
    assert_eq!((r.status, dry_run.arrived("dry-unseen")), (200, 1), "dry-run denies nothing");
    let would_deny: Vec<_> = sample(&dry_run)
        .counters
        .iter()
        .filter_map(|(name, n)| match parse_metric_name(name) {
            Some((RecordKind::WouldDeny, false, t)) => Some((t.caller, t.port, t.method, t.route, *n)),
            _ => None,
        })
        .collect();
    assert_eq!(
        would_deny,
        vec![(VIEWER.to_string(), Some(STRICT), "DELETE".to_string(), "/data/projects/{*}".to_string(), 1)],
        "exactly the unseen request would have been denied"
    );
    drop(dry_run);

    // 4. Enforced in place of the runbook's ALLOW: what was seen is served, nothing else.
    let mtls_only = [project_root().join(RUNBOOK[0]), enforced_file.clone()];
    let enforcing = Sidecar::start(&config(&mtls_only, false), &[EXEMPT, STRICT]).expect("starts");
    send_mix(&enforcing, "enforced");
    let never_seen: &[(u16, Option<&str>, &str, &str)] = &[
        (STRICT, Some("viewer"), "DELETE", "/data/projects/P2"),
        (EXEMPT, None, "GET", "/xapi/users"),
        (STRICT, Some("viewer"), "GET", "/xapi/users"),
        (EXEMPT, None, "POST", "/data/services/import"),
        (STRICT, Some("uploader"), "DELETE", "/data/projects/P1"),
    ];
    for (i, &(port, caller, method, path)) in never_seen.iter().enumerate() {
        let tag = format!("never-{i}");
        let r = enforcing.send(port, caller, RawRequest::new(method, path), &tag);
        assert_eq!(r.status, 403, "{tag} {method} {path} from {caller:?}: {}", r.body_text());
        assert_eq!(enforcing.arrived(&tag), 0, "{tag}: a denied request reached the upstream");
    }
}

//! What the filter records of the requests it judges: the tuple as XNAT routes the request,
//! only for allowed requests, would-deny records for dry-run policies, and nothing a user wrote.

use serde_json::{json, Value};
use xnat_guard_policy::observe::{metric_name, parse_metric_name, ObservationTable, OwnedTuple, RecordKind};
use xnat_guard_policy::{from_json, Engine, Request};

const UPLOADER: &str = "spiffe://cluster.local/ns/xnat/sa/uploader";

fn compile(config: Value) -> Engine {
    from_json(config.to_string().as_bytes()).unwrap_or_else(|e| panic!("config refused: {e}\n{config}"))
}

/// The runbook's shape: STRICT but 8080, methods allowed, observing.
fn runbook(observe: &str, extra: Vec<Value>) -> Engine {
    let mut policies = vec![json!({"name": "xnat-all", "namespace": "xnat", "spec": {"rules": [
        {"to": [{"operation": {"methods": ["GET", "POST", "PUT", "DELETE"]}}]}]}})];
    policies.extend(extra);
    compile(json!({
        "peerAuthentication": {"mtls": {"mode": "STRICT"}, "portLevelMtls": {"8080": {"mode": "PERMISSIVE"}}},
        "observe": observe,
        "policies": policies,
    }))
}

fn request<'a>(method: &'a str, path: &'a str, port: u16, peer: Option<&'a str>) -> Request<'a> {
    Request {
        method: method.as_bytes(),
        path: path.as_bytes(),
        port: Some(port),
        peer: peer.map(str::as_bytes),
        ..Request::default()
    }
}

/// Judges and records each request, then what the table exports, by metric name.
fn recorded(engine: &Engine, requests: &[Request<'_>]) -> Vec<(RecordKind, OwnedTuple, u64)> {
    let mut table = ObservationTable::default();
    for r in requests {
        let decision = engine.evaluate(r);
        engine.observe(r, &decision, &mut table);
    }
    let mut out = Vec::new();
    table.flush(|record, n| {
        let (kind, _, tuple) = parse_metric_name(&metric_name(record.kind, &record.tuple())).expect("a record's name");
        out.push((kind, tuple, n));
    });
    out.sort();
    out
}

fn tuple(caller: &str, port: u16, method: &str, route: &str) -> OwnedTuple {
    OwnedTuple { caller: caller.into(), port: Some(port), method: method.into(), route: route.into() }
}

#[test]
fn allowed_requests_are_recorded_as_xnat_routes_them() {
    let engine = runbook("ROUTES", vec![]);
    assert!(engine.records());
    let file = "/data/projects/P1/subjects/S1/experiments/E1/scans/1/resources/DICOM/files/a/b.dcm";
    let got = recorded(
        &engine,
        &[
            request("GET", file, 8080, None),
            // The same route, as Tomcat reads it: an alias, a `;` parameter and a query.
            request(
                "GET",
                "/REST/projects/P2/subjects/S9/experiments/E7/scans/2/resources/DICOM/files/c.dcm;x=1?format=zip",
                8080,
                None,
            ),
            request("POST", "/data/services/import?project=P1&dest=/archive", 8443, Some(UPLOADER)),
            // Denied (STRICT on 8443, and PATCH is not allowed): not recorded.
            request("GET", "/data/projects", 8443, None),
            request("PATCH", "/data/projects/P1", 8080, None),
        ],
    );
    let route = "/data/projects/{*}/subjects/{*}/experiments/{*}/scans/{*}/resources/{*}/files/{**}";
    assert_eq!(
        got,
        vec![
            (RecordKind::Observed, tuple("plaintext", 8080, "GET", route), 2),
            (RecordKind::Observed, tuple(UPLOADER, 8443, "POST", "/data/services/import"), 1),
        ]
    );
}

#[test]
fn observation_is_off_unless_asked_and_changes_no_decision() {
    let off = runbook("OFF", vec![]);
    let on = runbook("ROUTES", vec![]);
    assert!(!off.records());
    assert!(recorded(&off, &[request("GET", "/data/projects", 8080, None)]).is_empty());
    for r in [
        request("GET", "/data/projects/P1", 8080, None),
        request("DELETE", "/data/projects/P1", 8443, Some(UPLOADER)),
        request("GET", "/data/projects", 8443, None),
        request("PATCH", "/x", 8080, None),
        request("GET", "/data/a%2Fb", 8080, None),
    ] {
        assert_eq!(off.evaluate(&r), on.evaluate(&r), "{:?}", String::from_utf8_lossy(r.path));
    }
    let (needs, reads) = (on.needs(), on.reads());
    assert!(!needs.path && reads.path && reads.identity && reads.port, "recording reads more, matches no more");
}

#[test]
fn a_dry_run_policy_records_what_it_would_have_denied() {
    let suggestion = json!({"name": "suggested", "namespace": "xnat", "dryRun": true, "spec": {"rules": [
        {"from": [{"source": {"notPrincipals": ["*"]}}], "to": [{"operation": {"ports": ["8080"], "methods": ["GET"]}}]}]}});
    let engine = runbook("OFF", vec![suggestion]);
    assert!(engine.records(), "a dry-run policy records what it would deny, observing or not");
    let got = recorded(
        &engine,
        &[
            request("GET", "/data/projects/P1", 8080, None),
            request("DELETE", "/data/projects/P1", 8080, None),
            request("DELETE", "/data/projects/P2", 8080, None),
            // Denied by the enforced policy anyway: enforcing the dry-run one breaks nothing here.
            request("PATCH", "/data/projects/P1", 8080, None),
        ],
    );
    assert_eq!(got, vec![(RecordKind::WouldDeny, tuple("plaintext", 8080, "DELETE", "/data/projects/{*}"), 2)]);
}

#[test]
fn no_identifier_query_or_header_value_is_ever_recorded() {
    let engine = runbook("ROUTES", vec![]);
    let secrets = ["SMITH_JOHN_19500101", "PAT0042", "MR_2024_0001", "t1_mprage.dcm", "secret-token", "alice"];
    let paths = [
        "/data/projects/SMITH_JOHN_19500101/subjects/PAT0042/experiments/MR_2024_0001/scans/3/resources/DICOM/files/t1_mprage.dcm",
        "/data/archive/projects/SMITH_JOHN_19500101/subjects/PAT0042?token=secret-token",
        "/data/experiments/MR_2024_0001?format=json&user=alice",
        "/xapi/users/alice",
        "/data/prearchive/projects/SMITH_JOHN_19500101/20240101_120000/MR_2024_0001",
        "/app/action/DisplayItemAction/search_value/MR_2024_0001/search_element/xnat:mrSessionData",
        "/REST/projects/SMITH_JOHN_19500101/resources/PAT0042/files/t1_mprage.dcm",
    ];
    let requests: Vec<Request<'_>> = paths.iter().map(|p| request("GET", p, 8080, None)).collect();
    let mut table = ObservationTable::default();
    for r in &requests {
        let decision = engine.evaluate(r);
        engine.observe(r, &decision, &mut table);
    }
    let mut names = Vec::new();
    table.flush(|record, _| names.push(metric_name(record.kind, &record.tuple())));
    assert_eq!(names.len(), paths.len(), "each path is recorded, under its own route: {names:#?}");
    for name in &names {
        let (_, _, t) = parse_metric_name(name).expect("a record's name");
        for secret in secrets {
            for field in [&t.caller, &t.method, &t.route, name] {
                assert!(!field.contains(secret), "{secret} recorded in {field}");
            }
        }
    }
}

#[test]
fn the_table_is_bounded_and_counts_what_did_not_fit() {
    let engine = runbook("ROUTES", vec![]);
    let mut table = ObservationTable::with_capacity(3);
    let methods = ["GET", "POST", "PUT", "DELETE"];
    for _ in 0..10 {
        for m in methods {
            let r = request(m, "/data/projects", 8080, None);
            engine.observe(&r, &engine.evaluate(&r), &mut table);
        }
    }
    assert_eq!(table.len(), 3);
    let mut counted = 0;
    let overflow = table.flush(|_, n| counted += n);
    assert_eq!((counted, overflow), (30, 10));
}

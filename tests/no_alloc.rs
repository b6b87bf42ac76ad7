//! `evaluate` allocates nothing: counted with a global allocator, on policies that exercise
//! every kind of test.

use harness::alloc::{allocations_in, CountingAllocator};
use xnat_guard_policy::observe::ObservationTable;
use xnat_guard_policy::{from_json, route_template, Request, MAX_ROUTE};

#[global_allocator]
static GLOBAL: CountingAllocator = CountingAllocator;

#[test]
fn the_counting_allocator_counts() {
    let (_, allocations) = allocations_in(|| std::hint::black_box(Box::new(1u64)));
    assert_eq!(allocations, 1, "the allocator must count, or the test below proves nothing");
}

#[test]
fn evaluate_allocates_nothing() {
    let config = br#"{
      "trustDomain": "cluster.local", "trustDomainAliases": ["old.local"],
      "peerAuthentication": {"mtls": {"mode": "STRICT"}, "portLevelMtls": {"8080": {"mode": "DISABLE"}}},
      "policies": [
        {"name": "deny-admin", "namespace": "xnat", "spec": {"action": "DENY", "rules": [
          {"from": [{"source": {"notNamespaces": ["xnat", "ops-*"]}}], "to": [{"operation": {"paths": ["/xapi/*", "/data/{**}/admin"]}}]}]}},
        {"name": "per-source", "namespace": "xnat", "spec": {"rules": [
          {"from": [{"source": {"principals": ["cluster.local/ns/xnat-ingest/sa/uploader"]}}], "to": [{"operation": {"methods": ["GET", "POST"], "ports": ["8443"]}}]},
          {"from": [{"source": {"serviceAccounts": ["reporting/viewer"], "ipBlocks": ["10.0.0.0/8"]}}],
           "to": [{"operation": {"methods": ["GET"], "hosts": ["*.example.com"]}}],
           "when": [{"key": "request.headers[x-client]", "values": ["report-*"]}, {"key": "connection.sni", "notValues": ["bad.*"]}]}]}},
        {"name": "audit", "namespace": "xnat", "spec": {"action": "AUDIT", "rules": [{"to": [{"operation": {"methods": ["DELETE"]}}]}]}},
        {"name": "dry", "namespace": "xnat", "dryRun": true, "spec": {"rules": [{"from": [{"source": {"trustDomains": ["cluster.local"]}}]}]}}
      ]}"#;
    let policy = from_json(config).expect("valid config");
    let report: &[&[u8]] = &[b"report-weekly"];
    let headers = [report];
    // x-client, then the three method-override headers the policy reads (one repeated).
    let (patch, gets): (&[&[u8]], &[&[u8]]) = (&[b"PATCH"], &[b"get", b"HEAD"]);
    let override_headers = [&[][..], patch, &[][..], gets];
    let requests = [
        Request {
            method: b"GET",
            path: b"/data/projects?x=1",
            host: Some(b"xnat.example.com"),
            port: Some(8443),
            peer: Some(b"spiffe://cluster.local/ns/reporting/sa/viewer"),
            source_ip: "10.2.3.4".parse().ok(),
            remote_ip: "10.2.3.4".parse().ok(),
            destination_ip: None,
            sni: Some(b"xnat"),
            headers: &headers,
        },
        Request {
            method: b"POST",
            path: b"/xapi/users",
            host: Some(b"x"),
            port: Some(8443),
            peer: Some(b"spiffe://old.local/ns/xnat-ingest/sa/uploader"),
            headers: &headers,
            ..Default::default()
        },
        Request { method: b"GET", path: b"/data/projects", port: Some(8443), peer: None, ..Default::default() },
        Request {
            method: b"GET",
            path: b"/REST/archive/x/..;/%2e/data%41/p/admin?method=delete&_method=PUT",
            port: Some(8443),
            peer: Some(b"spiffe://cluster.local/ns/xnat-ingest/sa/uploader"),
            headers: &override_headers,
            ..Default::default()
        },
        Request {
            method: b"DELETE",
            path: b"/data/p/admin",
            port: Some(8080),
            peer: None,
            headers: &headers,
            ..Default::default()
        },
    ];
    // Warm up anything lazily initialised, then count.
    for r in &requests {
        std::hint::black_box(policy.evaluate(r));
    }
    let ((), allocations) = allocations_in(|| {
        for _ in 0..100 {
            for r in &requests {
                std::hint::black_box(policy.evaluate(std::hint::black_box(r)));
            }
        }
    });
    assert_eq!(allocations, 0, "evaluate allocated {allocations} times in 500 evaluations");
}

#[test]
fn recording_a_request_seen_before_allocates_nothing() {
    let config = br#"{
      "observe": "ROUTES",
      "peerAuthentication": {"mtls": {"mode": "STRICT"}, "portLevelMtls": {"8080": {"mode": "DISABLE"}}},
      "policies": [
        {"name": "xnat-all", "namespace": "xnat", "spec": {"rules": [{"to": [{"operation": {"methods": ["GET", "POST"]}}]}]}},
        {"name": "suggested", "namespace": "xnat", "dryRun": true, "spec": {"rules": [{"to": [{"operation": {"methods": ["GET"]}}]}]}}
      ]}"#;
    let policy = from_json(config).expect("valid config");
    let requests = [
        Request {
            method: b"GET",
            path: b"/data/projects/P1/subjects/S1?format=json",
            port: Some(8080),
            ..Default::default()
        },
        Request {
            method: b"POST",
            path: b"/REST/archive/projects/P1/subjects/S1/experiments/E1/scans/1/resources/DICOM/files/a/b.dcm",
            port: Some(8443),
            peer: Some(b"spiffe://cluster.local/ns/xnat/sa/uploader"),
            ..Default::default()
        },
    ];
    let mut table = ObservationTable::default();
    // The first sight of each tuple allocates its record; after that, nothing.
    for r in &requests {
        policy.observe(r, &policy.evaluate(r), &mut table);
    }
    let ((), allocations) = allocations_in(|| {
        for _ in 0..100 {
            for r in &requests {
                let decision = policy.evaluate(std::hint::black_box(r));
                policy.observe(r, &decision, &mut table);
            }
        }
    });
    assert_eq!(allocations, 0, "recording allocated {allocations} times in 200 requests");
    let mut records = 0;
    table.flush(|_, _| records += 1);
    assert_eq!(records, 3, "two observed, one would-deny (the POST)");
}

#[test]
fn reducing_a_path_to_its_route_allocates_nothing() {
    let long = "/data/projects/P1/files".to_string() + &"/dir".repeat(200);
    let paths = [
        "/data/projects/P1/subjects/S1/experiments/E1/scans/1/resources/DICOM/files/a/b.dcm",
        "/data/prearchive/projects/P1/20240101_120000/MR1",
        "/data/services/import",
        "/xapi/users/alice/roles",
        "/app/template/XDATScreen_report_xnat_mrSessionData.vm/search_value/E1",
        "/scripts/app.js",
        "/",
        "",
        "relative",
        "/data//x",
        long.as_str(),
    ];
    let mut out = [0u8; MAX_ROUTE];
    let (total, allocations) = allocations_in(|| {
        paths.iter().map(|path| route_template(std::hint::black_box(path.as_bytes()), &mut out)).sum::<usize>()
    });
    assert!(total > 0);
    assert_eq!(allocations, 0, "route_template allocated {allocations} times");
}

//! The engine on its own: compile time, and `evaluate` for the runbook's policy, a per-source
//! policy, and generated policies of 1 to 1000 rules with the match first, last or absent, for
//! each kind of fact (principal, namespace, path, header). Also counts allocations per
//! evaluation, which must be zero.

use std::hint::black_box;

use criterion::{criterion_group, criterion_main, BenchmarkId, Criterion};
use harness::alloc::{allocations_in, CountingAllocator};
use serde_json::{json, Value};
use xnat_guard_policy::{compile, parse_json, Engine, Request};

#[global_allocator]
static GLOBAL: CountingAllocator = CountingAllocator;

const RUNBOOK_PEER_AUTH: &str = r#"{"mtls": {"mode": "STRICT"}, "portLevelMtls": {"8080": {"mode": "DISABLE"}}}"#;

fn config(policies: Value) -> Vec<u8> {
    let peer: Value = serde_json::from_str(RUNBOOK_PEER_AUTH).unwrap();
    json!({"peerAuthentication": peer, "policies": policies}).to_string().into_bytes()
}

fn runbook() -> Vec<u8> {
    config(json!([{"name": "xnat-all", "namespace": "xnat", "spec": {"rules": [
        {"to": [{"operation": {"methods": ["GET", "POST", "HEAD", "PUT", "DELETE", "OPTIONS"]}}]}]}}]))
}

fn per_source() -> Vec<u8> {
    config(json!([{"name": "per-source", "namespace": "xnat", "spec": {"rules": [
        {"from": [{"source": {"principals": ["cluster.local/ns/xnat-ingest/sa/uploader"]}}],
         "to": [{"operation": {"methods": ["GET", "POST", "HEAD", "PUT", "DELETE", "OPTIONS"], "ports": ["8443"], "paths": ["/data/*", "/xapi/*"]}}]},
        {"from": [{"source": {"namespaces": ["reporting"]}}], "to": [{"operation": {"methods": ["GET", "HEAD"]}}]}]}}]))
}

#[derive(Clone, Copy)]
enum Kind {
    Principal,
    Namespace,
    Path,
    Header,
}

/// `n` ALLOW rules, rule `i` keyed on value `i` of `kind`.
fn generated(kind: Kind, n: usize) -> Vec<u8> {
    let rules: Vec<Value> = (0..n)
        .map(|i| match kind {
            Kind::Principal => {
                json!({"from": [{"source": {"principals": [format!("cluster.local/ns/team-{i}/sa/client-{i}")]}}]})
            }
            Kind::Namespace => json!({"from": [{"source": {"namespaces": [format!("team-{i}")]}}]}),
            Kind::Path => json!({"to": [{"operation": {"paths": [format!("/data/projects/p{i}/*")]}}]}),
            Kind::Header => json!({"when": [{"key": "request.headers[x-team]", "values": [format!("team-{i}")]}]}),
        })
        .collect();
    config(json!([{"name": "generated", "namespace": "xnat", "spec": {"rules": rules}}]))
}

struct Owned {
    peer: String,
    path: String,
    header: String,
}

impl Owned {
    fn matching(i: usize) -> Owned {
        Owned {
            peer: format!("spiffe://cluster.local/ns/team-{i}/sa/client-{i}"),
            path: format!("/data/projects/p{i}/subjects"),
            header: format!("team-{i}"),
        }
    }
    fn request<'a>(&'a self, headers: &'a [&'a [&'a [u8]]]) -> Request<'a> {
        Request {
            method: b"GET",
            path: self.path.as_bytes(),
            host: Some(b"xnat.example.com"),
            port: Some(8443),
            peer: Some(self.peer.as_bytes()),
            source_ip: "10.1.2.3".parse().ok(),
            remote_ip: "10.1.2.3".parse().ok(),
            destination_ip: None,
            sni: None,
            headers,
        }
    }
}

fn allocations_per_evaluation(policy: &Engine, request: &Request<'_>) -> f64 {
    let ((), allocations) = allocations_in(|| {
        for _ in 0..1000 {
            black_box(policy.evaluate(black_box(request)));
        }
    });
    allocations as f64 / 1000.0
}

fn bench_compile(c: &mut Criterion) {
    let mut group = c.benchmark_group("compile");
    for (name, json) in
        [("runbook", runbook()), ("per-source", per_source()), ("1000-principals", generated(Kind::Principal, 1000))]
    {
        group.bench_function(name, |b| b.iter(|| compile(&parse_json(black_box(&json)).unwrap()).unwrap()));
    }
    group.finish();
}

fn bench_named(c: &mut Criterion) {
    let mut group = c.benchmark_group("evaluate");
    let runbook = compile(&parse_json(&runbook()).unwrap()).unwrap();
    let per_source = compile(&parse_json(&per_source()).unwrap()).unwrap();
    let uploader = Owned {
        peer: "spiffe://cluster.local/ns/xnat-ingest/sa/uploader".into(),
        path: "/data/projects/p1".into(),
        header: String::new(),
    };
    let viewer = Owned {
        peer: "spiffe://cluster.local/ns/reporting/sa/viewer".into(),
        path: "/data/projects".into(),
        header: String::new(),
    };
    let no_headers: [&[&[u8]]; 0] = [];
    let cases = [
        ("runbook/GET-allowed", &runbook, uploader.request(&no_headers)),
        ("runbook/PATCH-denied", &runbook, Request { method: b"PATCH", ..uploader.request(&no_headers) }),
        ("runbook/plaintext-strict-port", &runbook, Request { peer: None, ..uploader.request(&no_headers) }),
        ("per-source/uploader-allowed", &per_source, uploader.request(&no_headers)),
        ("per-source/viewer-allowed", &per_source, viewer.request(&no_headers)),
        ("per-source/viewer-POST-denied", &per_source, Request { method: b"POST", ..viewer.request(&no_headers) }),
    ];
    for (name, policy, request) in cases {
        let allocs = allocations_per_evaluation(policy, &request);
        assert_eq!(allocs, 0.0, "{name}: evaluate allocated");
        group.bench_function(name, |b| b.iter(|| policy.evaluate(black_box(&request))));
    }
    group.finish();
}

fn bench_generated(c: &mut Criterion) {
    for (kind, label) in
        [(Kind::Principal, "principal"), (Kind::Namespace, "namespace"), (Kind::Path, "path"), (Kind::Header, "header")]
    {
        let mut group = c.benchmark_group(format!("evaluate-{label}"));
        for n in [1usize, 10, 100, 1000] {
            let policy = compile(&parse_json(&generated(kind, n)).unwrap()).unwrap();
            for (position, index) in [("first", 0), ("last", n - 1), ("absent", n + 7)] {
                let owned = Owned::matching(index);
                let value = [owned.header.as_bytes()];
                let headers = [&value[..]];
                let request = owned.request(&headers);
                let expected_allowed = position != "absent";
                assert_eq!(policy.evaluate(&request).verdict.is_allowed(), expected_allowed, "{label} {n} {position}");
                assert_eq!(
                    allocations_per_evaluation(&policy, &request),
                    0.0,
                    "{label} {n} {position}: evaluate allocated"
                );
                group.bench_with_input(BenchmarkId::new(position, n), &request, |b, r| {
                    b.iter(|| policy.evaluate(black_box(r)))
                });
            }
        }
        group.finish();
    }
}

criterion_group!(benches, bench_compile, bench_named, bench_generated);
criterion_main!(benches);

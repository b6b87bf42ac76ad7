//! The runbook's scenarios, enforced by the built filter inside a real Envoy with real mutual
//! TLS, once as the Wasm module and once as the dynamic module (`make native`): one test body,
//! two engines, the same expectations. Every denied request is also checked at the upstream:
//! it must never arrive.

use deployer::local::client::RawRequest;
use deployer::local::FilterEngine;
use harness::support::{config_from_examples, config_from_examples_in, envoy_binary, loopback_for, module, Sidecar};

const EXEMPT: u16 = 8080;
const STRICT: u16 = 8443;

fn assert_denied(sidecar: &Sidecar, response: &deployer::local::client::Response, tag: &str) {
    let engine = sidecar.inner.engine.name();
    assert_eq!(response.status, 403, "{engine} {tag}: {}", response.body_text());
    assert_eq!(response.body_text(), "RBAC: access denied", "{engine} {tag}");
    assert_eq!(sidecar.arrived(tag), 0, "{engine} {tag}: a denied request reached the upstream");
}

fn assert_served(sidecar: &Sidecar, response: &deployer::local::client::Response, tag: &str) {
    let engine = sidecar.inner.engine.name();
    assert_eq!(response.status, 200, "{engine} {tag}: {}", response.body_text());
    assert_eq!(sidecar.arrived(tag), 1, "{engine} {tag}: the upstream did not receive it exactly once");
}

#[test]
fn strict_mtls_with_8080_exempt_serves_plaintext_only_on_8080() {
    for engine in FilterEngine::ALL {
        let config = config_from_examples(&["runbook/istio-mtls.yaml", "runbook/istio-auth-policy.yaml"]);
        let sidecar = Sidecar::start_with(engine, &config, &[EXEMPT, STRICT]).expect("sidecar starts");

        let r = sidecar.send(EXEMPT, None, RawRequest::get("/data/projects"), "plain-8080");
        assert_served(&sidecar, &r, "plain-8080");
        let r = sidecar.send(STRICT, None, RawRequest::get("/data/projects"), "plain-8443");
        assert_denied(&sidecar, &r, "plain-8443");
        let r = sidecar.send(STRICT, Some("xnat-web"), RawRequest::get("/data/projects"), "mtls-8443");
        assert_served(&sidecar, &r, "mtls-8443");
        let r = sidecar.send(EXEMPT, Some("viewer"), RawRequest::get("/data/projects"), "mtls-8080");
        assert_served(&sidecar, &r, "mtls-8080");
        let deadline = std::time::Instant::now() + std::time::Duration::from_secs(5);
        while sidecar.counter("denied_mtls") == 0 && std::time::Instant::now() < deadline {
            std::thread::sleep(std::time::Duration::from_millis(100));
        }
        assert_eq!(sidecar.counter("denied_mtls"), 1);
    }
}

#[test]
fn post_is_denied_by_the_first_policy_and_served_by_the_amended_one() {
    for engine in FilterEngine::ALL {
        let first = config_from_examples(&["runbook/istio-mtls.yaml", "runbook/istio-auth-policy.yaml"]);
        let sidecar = Sidecar::start_with(engine, &first, &[EXEMPT, STRICT]).expect("sidecar starts");
        let post = || RawRequest::new("POST", "/data/projects/demo/subjects").header("content-type", "text/plain");
        for (port, caller, tag) in [(EXEMPT, None, "post-plain"), (STRICT, Some("xnat-web"), "post-mtls")] {
            let r = sidecar.send(port, caller, post(), tag);
            assert_denied(&sidecar, &r, tag);
        }
        for method in ["GET", "HEAD", "PUT", "DELETE", "OPTIONS"] {
            let tag = format!("first-{method}");
            let r = sidecar.send(STRICT, Some("xnat-web"), RawRequest::new(method, "/data/projects"), &tag);
            assert_served(&sidecar, &r, &tag);
        }
        drop(sidecar);

        let amended = config_from_examples(&["runbook/istio-mtls.yaml", "runbook/istio-auth-policy-post.yaml"]);
        let sidecar = Sidecar::start_with(engine, &amended, &[EXEMPT, STRICT]).expect("sidecar starts");
        let mut request = post();
        request.body = b"subject=S1".to_vec();
        let r = sidecar.send(STRICT, Some("xnat-web"), request, "post-amended");
        assert_served(&sidecar, &r, "post-amended");
        let received = sidecar.inner.upstream.as_ref().unwrap().tagged("post-amended");
        assert_eq!((received[0].method.as_str(), received[0].body_len), ("POST", 10));
    }
}

#[test]
fn one_source_may_post_while_another_gets_only_get_and_head() {
    for engine in FilterEngine::ALL {
        let config = config_from_examples(&["runbook/istio-mtls.yaml", "runbook/per-source.yaml"]);
        let sidecar = Sidecar::start_with(engine, &config, &[EXEMPT, STRICT]).expect("sidecar starts");
        let cases = [
            ("uploader", "POST", true),
            ("uploader", "GET", true),
            ("viewer", "GET", true),
            ("viewer", "HEAD", true),
            ("viewer", "POST", false),
            ("viewer", "DELETE", false),
        ];
        for (caller, method, allowed) in cases {
            let tag = format!("{caller}-{method}");
            let r = sidecar.send(STRICT, Some(caller), RawRequest::new(method, "/data/projects"), &tag);
            if allowed {
                assert_served(&sidecar, &r, &tag);
            } else {
                assert_denied(&sidecar, &r, &tag);
            }
        }
        // Plaintext on the exempt port has no identity, so neither rule admits it.
        let r = sidecar.send(EXEMPT, None, RawRequest::get("/data/projects"), "plain-exempt");
        assert_denied(&sidecar, &r, "plain-exempt");
    }
}

/// The filter reads a connection's identity and port once and keeps them for the
/// connection's later requests. Kept-alive connections from different sources, interleaved,
/// must each be judged as their own, round after round.
/// The runbook's per-source policy names its callers as `cluster.local/...`; in a mesh whose
/// trust domain is another, Istio reads that as the mesh's own domain. The mesh's uploader may
/// POST; a `cluster.local` uploader from another mesh, under a root this sidecar trusts, may not.
#[test]
fn cluster_local_in_a_policy_means_the_meshs_own_trust_domain() {
    for engine in FilterEngine::ALL {
        let mesh = deployer::resources::Mesh { trust_domain: "xnat.example.org".into(), ..Default::default() };
        let config = config_from_examples_in(&mesh, &["runbook/istio-mtls.yaml", "runbook/per-source.yaml"]);
        let sidecar =
            Sidecar::start_engine(engine, "xnat.example.org", &config, &[EXEMPT, STRICT]).expect("sidecar starts");
        let post = || RawRequest::new("POST", "/data/projects/demo/subjects").header("content-type", "text/plain");
        assert_eq!(
            sidecar.inner.identity("uploader").map(|c| c.spiffe_id.as_str()),
            Some("spiffe://xnat.example.org/ns/xnat-ingest/sa/uploader")
        );
        let r = sidecar.send(STRICT, Some("uploader"), post(), "mesh-uploader");
        assert_served(&sidecar, &r, "mesh-uploader");

        let foreign = sidecar
            .inner
            .pki
            .client("foreign-uploader", "spiffe://cluster.local/ns/xnat-ingest/sa/uploader")
            .expect("a certificate under the same root");
        let target = std::net::SocketAddr::new(sidecar.inner.address, STRICT);
        let request = post().header("x-request-tag", "foreign-uploader");
        let r = deployer::local::client::send(target, &request, Some(&foreign), &sidecar.inner.pki.ca_der).unwrap();
        assert_denied(&sidecar, &r, "foreign-uploader");
    }
}

#[test]
fn kept_alive_connections_are_each_judged_as_their_own_source() {
    for engine in FilterEngine::ALL {
        let config = config_from_examples(&["runbook/istio-mtls.yaml", "runbook/per-source.yaml"]);
        let sidecar = Sidecar::start_with(engine, &config, &[EXEMPT, STRICT]).expect("sidecar starts");
        // (name, port, caller, POST allowed, GET allowed)
        let sources = [
            ("uploader", STRICT, Some("uploader"), true, true),
            ("viewer", STRICT, Some("viewer"), false, true),
            ("plain-exempt", EXEMPT, None, false, false),
            ("plain-strict", STRICT, None, false, false),
            ("viewer-exempt", EXEMPT, Some("viewer"), false, true),
        ];
        let mut sessions: Vec<_> =
            sources.iter().map(|(_, port, caller, ..)| sidecar.session(*port, *caller)).collect();
        for round in 0..4 {
            for ((name, _, _, post_allowed, get_allowed), session) in sources.iter().zip(sessions.iter_mut()) {
                for (method, allowed) in [("POST", post_allowed), ("GET", get_allowed)] {
                    let tag = format!("{name}-{method}-{round}");
                    let request = RawRequest::new(method, "/data/projects").header("x-request-tag", &tag);
                    let r = session.send(&request).unwrap_or_else(|e| panic!("{tag}: {e}"));
                    if *allowed {
                        assert_served(&sidecar, &r, &tag);
                    } else {
                        assert_eq!(r.status, 403, "{tag}: {}", r.body_text());
                        assert_eq!(sidecar.arrived(&tag), 0, "{tag}: a denied request reached the upstream");
                    }
                }
            }
        }
    }
}

#[test]
fn a_configuration_that_does_not_compile_is_refused_by_envoy_with_the_error_logged() {
    for engine in FilterEngine::ALL {
        let bad = r#"{"policies": [{"name": "xnat-all", "namespace": "xnat",
            "spec": {"rules": [{"to": [{"operation": {"methods": ["GET", "post"]}}]}]}}]}"#;
        let err = match Sidecar::start_with(engine, bad, &[STRICT]) {
            Ok(_) => panic!("Envoy started with a configuration the filter refuses"),
            Err(e) => e.to_string(),
        };
        assert!(err.contains("configuration refused"), "{err}");
        match engine {
            // The dynamic module compiles the policies itself and names the field at fault.
            FilterEngine::Native => {
                assert!(err.contains("policies[0].spec.rules[0].to[0].operation.methods[1]"), "{err}")
            }
            // The Wasm filter enforces only what the deployer compiled; nothing could be, so
            // nothing is (the deployer names the field: deployer/tests/render.rs).
            FilterEngine::Wasm => assert!(err.contains("configuration refused: compiled: missing"), "{err}"),
        }
    }
}

#[test]
fn a_non_utf8_header_value_is_judged_without_a_trap() {
    for engine in FilterEngine::ALL {
        // The condition makes the filter read the header; its value is not UTF-8.
        let config = r#"{"policies": [{"name": "p", "namespace": "xnat", "spec": {"rules": [
            {"when": [{"key": "request.headers[x-client]", "notValues": ["blocked"]}]}]}}]}"#;
        let sidecar = Sidecar::start_with(engine, config, &[EXEMPT]).expect("sidecar starts");
        let odd = RawRequest::get("/data/projects").header("x-client", b"caf\xe9\xff");
        let r = sidecar.send(EXEMPT, None, odd, "latin1");
        assert_served(&sidecar, &r, "latin1");
        let r = sidecar.send(EXEMPT, None, RawRequest::get("/data/projects").header("x-client", "blocked"), "blocked");
        assert_denied(&sidecar, &r, "blocked");
        let log = harness::envoy::log_text(&sidecar.inner.envoy);
        assert!(!log.contains("panicked") && !log.contains("Function: proxy_on_request_headers failed"), "{log}");
    }
}

#[test]
fn counters_move_and_show_in_prometheus_output() {
    for engine in FilterEngine::ALL {
        let config = r#"{
          "peerAuthentication": {"mtls": {"mode": "STRICT"}, "portLevelMtls": {"8080": {"mode": "DISABLE"}}},
          "policies": [
            {"name": "xnat-all", "namespace": "xnat", "spec": {"rules": [{"to": [{"operation": {"methods": ["GET", "HEAD"]}}]}]}},
            {"name": "audit-deletes", "namespace": "xnat", "spec": {"action": "AUDIT", "rules": [{"to": [{"operation": {"methods": ["DELETE"]}}]}]}},
            {"name": "try-deny-head", "namespace": "xnat", "dryRun": true, "spec": {"action": "DENY", "rules": [{"to": [{"operation": {"methods": ["HEAD"]}}]}]}}
          ]}"#;
        let sidecar = Sidecar::start_with(engine, config, &[EXEMPT, STRICT]).expect("sidecar starts");
        let names = xnat_guard_policy::COUNTER_NAMES;
        let before: Vec<u64> = names.iter().map(|n| sidecar.counter(n)).collect();
        assert_eq!(before, vec![0; 5]);
        sidecar.send(STRICT, Some("viewer"), RawRequest::get("/"), "a");
        sidecar.send(STRICT, Some("viewer"), RawRequest::new("HEAD", "/"), "b");
        sidecar.send(STRICT, Some("viewer"), RawRequest::new("DELETE", "/"), "c");
        sidecar.send(STRICT, None, RawRequest::get("/"), "d");
        // The filter flushes its counts to Envoy once a second: wait for them, bounded.
        let expected = vec![2, 1, 1, 1, 1];
        let deadline = std::time::Instant::now() + std::time::Duration::from_secs(5);
        let mut after: Vec<u64> = names.iter().map(|n| sidecar.counter(n)).collect();
        while after != expected && std::time::Instant::now() < deadline {
            std::thread::sleep(std::time::Duration::from_millis(100));
            after = names.iter().map(|n| sidecar.counter(n)).collect();
        }
        // allowed: GET, HEAD; denied by policy: DELETE; mTLS: plaintext on 8443; dry-run: HEAD; audit: DELETE.
        assert_eq!(after, expected);
        let (_, prometheus) = sidecar.inner.envoy.admin_get("/stats/prometheus").unwrap();
        assert!(
            prometheus
                .lines()
                .any(|l| l.starts_with(&engine.prometheus_name("xnat_guard_allowed")) && l.ends_with(" 2")),
            "{prometheus}"
        );
    }
}

/// An upload of many chunks, as a DICOM session is, arrives whole through the filter, which
/// Envoy no longer enters for each chunk (`make wasm` keeps only the callbacks the filter
/// uses), over plaintext and mutual TLS.
#[test]
fn a_large_upload_arrives_whole() {
    for engine in FilterEngine::ALL {
        let amended = config_from_examples(&["runbook/istio-mtls.yaml", "runbook/istio-auth-policy-post.yaml"]);
        let sidecar = Sidecar::start_with(engine, &amended, &[EXEMPT, STRICT]).expect("sidecar starts");
        let size = 4 << 20;
        for (port, caller, tag) in [(EXEMPT, None, "upload-plain"), (STRICT, Some("uploader"), "upload-mtls")] {
            let mut request = RawRequest::new("POST", "/data/services/import?import-handler=DICOM-zip")
                .header("content-type", "application/zip");
            request.body = (0..size).map(|i| (i % 251) as u8).collect();
            let r = sidecar.send(port, caller, request, tag);
            assert_served(&sidecar, &r, tag);
            let received = sidecar.inner.upstream.as_ref().unwrap().tagged(tag);
            assert_eq!(received[0].body_len, size, "{tag}: the body arrived cut");
        }
    }
}

/// The callbacks Envoy may enter the module for: configuration, ticks, allocation, and a
/// stream's creation, request headers and deletion. Each one more would cost a VM entry per
/// request (or per body chunk) for nothing.
#[test]
fn the_module_exports_only_the_callbacks_it_uses() {
    let module = std::fs::read(harness::support::module()).expect("the module is built");
    let mut exports = wasm_exports(&module);
    exports.sort();
    assert_eq!(
        exports,
        [
            "_initialize",
            "memory",
            "proxy_abi_version_0_2_1",
            "proxy_on_configure",
            "proxy_on_context_create",
            "proxy_on_delete",
            "proxy_on_memory_allocate",
            "proxy_on_request_headers",
            "proxy_on_tick",
            "proxy_on_vm_start",
        ]
    );
}

/// The module a rollout pushes to every sidecar stays within 150 KB (V8 compiles all of it in
/// every VM), and leaves out the CEL reads that only the measurement build has.
#[test]
fn the_shipped_module_is_at_most_150_kb_and_has_no_cel_reads() {
    let module = std::fs::read(harness::support::module()).expect("the module is built");
    assert!(module.len() <= 150_000, "the module is {} bytes, over its 150,000-byte budget", module.len());
    // The foreign function the CEL reads call per request, named nowhere in the shipped module.
    let names = |module: &[u8]| module.windows(13).any(|w| w == b"expr_evaluate");
    assert!(!names(&module), "the shipped module holds the CEL reads");
    let measured = std::fs::read(harness::support::expression_module()).expect("the measurement build is built");
    assert!(names(&measured), "the measurement build lacks the CEL reads");
}

/// The names in a Wasm module's export section (section 7).
fn wasm_exports(module: &[u8]) -> Vec<String> {
    fn leb(bytes: &[u8], at: &mut usize) -> usize {
        let (mut value, mut shift) = (0usize, 0);
        loop {
            let b = bytes[*at];
            *at += 1;
            value |= ((b & 0x7f) as usize) << shift;
            if b & 0x80 == 0 {
                return value;
            }
            shift += 7;
        }
    }
    assert_eq!(&module[..4], b"\0asm", "not a Wasm module");
    let mut at = 8;
    while at < module.len() {
        let id = module[at];
        at += 1;
        let size = leb(module, &mut at);
        let end = at + size;
        if id == 7 {
            let count = leb(module, &mut at);
            return (0..count)
                .map(|_| {
                    let len = leb(module, &mut at);
                    let name = String::from_utf8_lossy(&module[at..at + len]).into_owned();
                    at += len + 1;
                    leb(module, &mut at);
                    name
                })
                .collect();
        }
        at = end;
    }
    Vec::new()
}

/// In the measurement build under `XNAT_GUARD_FACT_READS=expression`, the runbook's and a
/// per-source configuration's requests, over plaintext and mutual TLS, are each read in one CEL
/// evaluation (the filter never says it read one another way) and judged as the shipped module
/// judges them.
#[test]
fn under_the_expression_reads_every_request_is_read_in_one_evaluation() {
    use deployer::local::envoy::{bootstrap, wasm_filter, with_vm_environment, Envoy, Listener, ServerTls};
    use deployer::local::pki::Pki;
    use deployer::local::upstream::RecordingUpstream;
    use std::net::SocketAddr;

    let dir = tempfile::tempdir().unwrap();
    let pki = Pki::generate(dir.path(), "spiffe://cluster.local/ns/xnat/sa/xnat-web").unwrap();
    let tls = ServerTls { cert: pki.server.cert.clone(), key: pki.server.key.clone(), ca: pki.ca_cert.clone() };
    let uploader = pki.client("uploader", "spiffe://cluster.local/ns/xnat-ingest/sa/uploader").unwrap();
    let viewer = pki.client("viewer", "spiffe://cluster.local/ns/reporting/sa/viewer").unwrap();
    let upstream = RecordingUpstream::start(SocketAddr::from(([127, 0, 0, 1], 0))).unwrap();
    for files in [
        ["runbook/istio-mtls.yaml", "runbook/istio-auth-policy-post.yaml"],
        ["runbook/istio-mtls.yaml", "runbook/per-source.yaml"],
    ] {
        let config = config_from_examples(&files);
        let (calls_ip, expression_ip) = (loopback_for(&[EXEMPT, STRICT]), loopback_for(&[EXEMPT, STRICT]));
        let calls = wasm_filter(&module(), &config);
        let expression = with_vm_environment(
            wasm_filter(&harness::support::expression_module(), &config),
            &[("XNAT_GUARD_FACT_READS", "expression")],
        );
        let mut listeners = Vec::new();
        for port in [EXEMPT, STRICT] {
            listeners.push(Listener { address: calls_ip, port, http_filters: vec![calls.clone()] });
            listeners.push(Listener { address: expression_ip, port, http_filters: vec![expression.clone()] });
        }
        let workdir = tempfile::tempdir().unwrap();
        let envoy = Envoy::start(&envoy_binary(), &bootstrap(&listeners, &tls, upstream.addr()), workdir.path())
            .unwrap_or_else(|e| panic!("{e}"));
        let sides = harness::sides::Sides {
            sides: vec![("calls", calls_ip), ("expression", expression_ip)],
            ca_der: &pki.ca_der,
            upstream: &upstream,
            envoy: &envoy,
        };
        for (k, (port, caller)) in
            [(EXEMPT, None), (STRICT, Some(&uploader)), (STRICT, Some(&viewer))].into_iter().enumerate()
        {
            for method in ["GET", "POST", "DELETE"] {
                let request = RawRequest::new(method, "/data/projects").header("x-http-method-override", "GET");
                let tag = format!("{}-{k}-{method}", files[1]);
                let outcomes = sides.send(port, &request, caller, &tag);
                assert_eq!(outcomes[1], outcomes[0], "{files:?}: {method} on {port}");
                if outcomes[1].0 != 200 {
                    assert_eq!(outcomes[1].2, 0, "{files:?}: a denied {method} on {port} reached the upstream");
                }
            }
        }
        let log = envoy.log_tail(400);
        assert!(log.contains("xnat-guard: configured"), "{log}");
        assert!(!log.contains("one host call each"), "{files:?}: a request was read a call per fact:\n{log}");
    }
}

/// The dynamic module was written against the ABI this Envoy speaks: Envoy says the versions
/// match (it only warns when they differ, and a mismatched signature would misread requests).
#[test]
fn the_dynamic_module_speaks_this_envoys_abi_version() {
    let config = config_from_examples(&["runbook/istio-mtls.yaml", "runbook/istio-auth-policy.yaml"]);
    let sidecar = Sidecar::start_with(FilterEngine::Native, &config, &[EXEMPT]).expect("sidecar starts");
    let r = sidecar.send(EXEMPT, None, RawRequest::get("/data/projects"), "abi");
    assert_served(&sidecar, &r, "abi");
    let log = harness::envoy::log_text(&sidecar.inner.envoy);
    assert!(log.contains("Dynamic module ABI version v0.2.0 matched."), "{log}");
    assert!(log.contains("xnat-guard: configured: 0 DENY, 1 ALLOW"), "{log}");
}

/// What `render --engine native` puts in the EnvoyFilter is what a sidecar runs: its patch
/// value, with the module path pointed at this machine's build, enforces the runbook's policy
/// in a real Envoy (POST denied and never arriving, GET served, plaintext refused on STRICT).
#[test]
fn the_rendered_envoy_filter_enforces_the_policy_in_a_real_envoy() {
    use deployer::local::envoy::{bootstrap, Envoy, Listener, ServerTls};
    use deployer::local::pki::Pki;
    use deployer::local::upstream::RecordingUpstream;
    use deployer::plan::rollout::{self, EngineSpec, ModuleRef, Spec};
    use std::net::SocketAddr;

    let root = harness::support::project_root();
    let files = ["istio-mtls.yaml", "istio-auth-policy.yaml"].map(|f| root.join("examples/runbook").join(f));
    let objects = deployer::resources::load_files(&files).expect("the runbook's files load");
    let module = ModuleRef::new("oci://127.0.0.1:5000/xnat-guard-native:0.1.0", &"ab".repeat(32)).unwrap();
    let spec = Spec {
        engine: EngineSpec::Native { workload: "statefulset/xnat-xnat-web".parse().unwrap() },
        ..Spec::new("xnat", objects, module)
    };
    let plan = rollout::plan(&spec).expect("renders");
    let envoy_filter = plan.manifests.iter().find(|m| m.kind.kind == "EnvoyFilter").expect("an EnvoyFilter");
    let mut filter = envoy_filter.body["spec"]["configPatches"][0]["patch"]["value"].clone();
    let library = harness::support::native_module();
    filter["typed_config"]["dynamic_module_config"]["module"]["local"]["filename"] =
        library.display().to_string().into();

    let dir = tempfile::tempdir().unwrap();
    let pki = Pki::generate(dir.path(), "spiffe://cluster.local/ns/xnat/sa/xnat-web").unwrap();
    let tls = ServerTls { cert: pki.server.cert.clone(), key: pki.server.key.clone(), ca: pki.ca_cert.clone() };
    let caller = pki.client("viewer", "spiffe://cluster.local/ns/reporting/sa/viewer").unwrap();
    let upstream = RecordingUpstream::start(SocketAddr::from(([127, 0, 0, 1], 0))).unwrap();
    let ip = loopback_for(&[EXEMPT, STRICT]);
    let listeners = [EXEMPT, STRICT].map(|port| Listener { address: ip, port, http_filters: vec![filter.clone()] });
    let envoy = Envoy::start(&envoy_binary(), &bootstrap(&listeners, &tls, upstream.addr()), dir.path())
        .unwrap_or_else(|e| panic!("Envoy refused the rendered filter: {e}"));
    let send = |port: u16, identity, method: &str, tag: &str| {
        let request = RawRequest::new(method, "/data/projects").header("x-request-tag", tag);
        let r = deployer::local::client::send(SocketAddr::new(ip, port), &request, identity, &pki.ca_der).unwrap();
        (r.status, upstream.tagged(tag).len())
    };
    assert_eq!(send(STRICT, Some(&caller), "GET", "get"), (200, 1));
    assert_eq!(send(STRICT, Some(&caller), "POST", "post"), (403, 0), "the first policy denies POST");
    assert_eq!(send(EXEMPT, None, "GET", "plain-exempt"), (200, 1));
    assert_eq!(send(STRICT, None, "GET", "plain-strict"), (403, 0), "STRICT refuses plaintext");
    drop(envoy);
}

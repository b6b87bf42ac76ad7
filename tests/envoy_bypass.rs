//! Bypass attempts against the built filter in a real Envoy, in front of a recording XNAT
//! stand-in: path tricks, tunnelled methods, identity claimed in headers, a very long path.
//! Each test runs against the Wasm module and the dynamic module alike. Every refused request
//! is checked at the upstream too: it must never arrive.

use deployer::local::client::RawRequest;
use deployer::local::FilterEngine;
use harness::support::Sidecar;
use serde_json::json;

const PORT: u16 = 8443;

fn config() -> String {
    json!({
        "peerAuthentication": {"mtls": {"mode": "PERMISSIVE"}},
        "policies": [
            {"name": "no-admin", "namespace": "xnat", "spec": {"action": "DENY",
              "rules": [{"to": [{"operation": {"paths": ["/data/admin*", "/xapi/users*"]}}]}]}},
            {"name": "xnat-read-write", "namespace": "xnat", "spec": {"rules": [
              {"from": [{"source": {"principals": ["cluster.local/ns/xnat-ingest/sa/uploader"]}}],
               "to": [{"operation": {"methods": ["GET", "POST", "HEAD"]}}]},
              {"to": [{"operation": {"methods": ["GET", "HEAD"]}}]}]}}
        ]
    })
    .to_string()
}

#[test]
fn path_tricks_do_not_reach_a_denied_path() {
    for engine in FilterEngine::ALL {
        let sidecar = Sidecar::start_with(engine, &config(), &[PORT]).expect("sidecar starts");
        let r = sidecar.send(PORT, Some("viewer"), RawRequest::get("/data/projects"), "ok");
        assert_eq!((r.status, sidecar.arrived("ok")), (200, 1), "a plain read is served");
        for (i, path) in [
            "/data/admin",
            "/data/projects/../admin",
            "/data/projects/..;/admin",
            "/data;x=1/admin",
            "/data//admin",
            "/data/./admin",
            "/data/%61dmin",
            "/data/projects/%2e%2e/admin",
            "/REST/admin",
            "/data/archive/admin",
            "/xapi/users;jsessionid=0",
        ]
        .iter()
        .enumerate()
        {
            let tag = format!("path-{i}");
            let r = sidecar.send(PORT, Some("viewer"), RawRequest::get(path), &tag);
            // Envoy may refuse some spellings itself (400); either way nothing reaches XNAT.
            assert!(matches!(r.status, 403 | 400), "{path}: {} {}", r.status, r.body_text());
            assert_eq!(sidecar.arrived(&tag), 0, "{path} reached the upstream");
        }
    }
}

#[test]
fn ambiguous_paths_are_refused_with_400_and_never_arrive() {
    for engine in FilterEngine::ALL {
        let sidecar = Sidecar::start_with(engine, &config(), &[PORT]).expect("sidecar starts");
        for (i, path) in ["/data/projects%2Fx", "/data/projects%5Cx", "/data/projects/%zz", "/data/../../etc/passwd"]
            .iter()
            .enumerate()
        {
            let tag = format!("ambiguous-{i}");
            let r = sidecar.send(PORT, Some("viewer"), RawRequest::get(path), &tag);
            assert_eq!(r.status, 400, "{path}: {}", r.body_text());
            assert_eq!(sidecar.arrived(&tag), 0, "{path} reached the upstream");
        }
        let long = format!("/data/{}", "a/".repeat(3000));
        let r = sidecar.send(PORT, Some("viewer"), RawRequest::get(&long), "long");
        assert_eq!(r.status, 400, "a {}-byte path: {}", long.len(), r.body_text());
        assert!(r.body_text().contains("longer than 4096"), "{}", r.body_text());
        assert_eq!(sidecar.arrived("long"), 0);
    }
}

#[test]
fn tunnelled_methods_are_judged_like_the_request_line() {
    for engine in FilterEngine::ALL {
        let sidecar = Sidecar::start_with(engine, &config(), &[PORT]).expect("sidecar starts");
        let post = |path: &str| RawRequest::new("POST", path).header("content-type", "text/plain");
        // The uploader may POST; tunnelling DELETE through POST is not POST.
        let r = sidecar.send(PORT, Some("uploader"), post("/data/projects"), "post");
        assert_eq!((r.status, sidecar.arrived("post")), (200, 1));
        let attempts = [
            ("hdr", post("/data/projects").header("X-HTTP-Method-Override", "DELETE")),
            ("hdr2", post("/data/projects").header("x-http-method", "PUT")),
            (
                "hdr-repeated",
                post("/data/projects").header("X-Method-Override", "GET").header("X-Method-Override", "DELETE"),
            ),
            ("query", post("/data/projects?method=DELETE")),
            ("form-param", post("/data/projects?format=json&_method=delete")),
        ];
        for (tag, request) in attempts {
            let r = sidecar.send(PORT, Some("uploader"), request, tag);
            assert_eq!(r.status, 403, "{tag}: {}", r.body_text());
            assert_eq!(sidecar.arrived(tag), 0, "{tag} reached the upstream");
        }
        let r = sidecar.send(PORT, Some("uploader"), post("/data/projects?method=GET"), "tunnel-allowed");
        assert_eq!(
            (r.status, sidecar.arrived("tunnel-allowed")),
            (200, 1),
            "tunnelling to an allowed method is served"
        );
    }
}

#[test]
fn identity_claimed_in_headers_is_never_trusted() {
    for engine in FilterEngine::ALL {
        let sidecar = Sidecar::start_with(engine, &config(), &[PORT]).expect("sidecar starts");
        let forged = |r: RawRequest| {
            r.header("content-type", "text/plain")
                .header(
                    "x-forwarded-client-cert",
                    "By=spiffe://cluster.local/ns/xnat/sa/xnat-web;URI=spiffe://cluster.local/ns/xnat-ingest/sa/uploader",
                )
                .header("x-forwarded-for", "10.0.0.1")
                .header("x-envoy-peer-metadata-id", "uploader")
        };
        for (caller, tag) in [(None, "forged-plain"), (Some("viewer"), "forged-viewer")] {
            let r = sidecar.send(PORT, caller, forged(RawRequest::new("POST", "/data/projects")), tag);
            assert_eq!(r.status, 403, "{tag}: {}", r.body_text());
            assert_eq!(sidecar.arrived(tag), 0, "{tag} reached the upstream");
        }
    }
}

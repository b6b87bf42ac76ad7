//! Request forms that XNAT dispatches to the handler a DENY rule names, against the built
//! module in a real Envoy in front of a recording XNAT stand-in. Each denied form is checked at
//! the upstream: it must never arrive. The allowed neighbours must still arrive.

use deployer::local::client::RawRequest;
use harness::support::Sidecar;
use serde_json::json;

const PORT: u16 = 8443;

fn config() -> String {
    json!({
        "peerAuthentication": {"mtls": {"mode": "PERMISSIVE"}},
        "policies": [
            {"name": "no-secret-reads", "namespace": "xnat", "spec": {"action": "DENY",
              "rules": [{"to": [{"operation": {"methods": ["GET"], "paths": ["/data/projects/secret*"]}}]}]}},
            {"name": "xnat-read-write", "namespace": "xnat", "spec": {"rules": [
              {"to": [{"operation": {"methods": ["GET", "HEAD", "POST"]}}]}]}}
        ]
    })
    .to_string()
}

/// Sends each request; each must be refused and never arrive.
fn assert_never_arrive(sidecar: &Sidecar, attempts: Vec<(&str, RawRequest)>) {
    for (tag, request) in attempts {
        let r = sidecar.send(PORT, Some("viewer"), request, tag);
        assert_eq!(r.status, 403, "{tag}: {}", r.body_text());
        assert_eq!(sidecar.arrived(tag), 0, "{tag} reached the upstream");
    }
}

/// Sends each request; each must be served.
fn assert_arrive(sidecar: &Sidecar, requests: Vec<(&str, RawRequest)>) {
    for (tag, request) in requests {
        let r = sidecar.send(PORT, Some("viewer"), request, tag);
        assert_eq!((r.status, sidecar.arrived(tag)), (200, 1), "{tag}: {}", r.body_text());
    }
}

#[test]
fn head_on_a_path_denied_for_get_never_arrives() {
    let sidecar = Sidecar::start(&config(), &[PORT]).expect("sidecar starts");
    assert_never_arrive(
        &sidecar,
        vec![
            ("get", RawRequest::get("/data/projects/secret")),
            ("head", RawRequest::new("HEAD", "/data/projects/secret")),
            ("head-rest", RawRequest::new("HEAD", "/REST/projects/secret/subjects")),
        ],
    );
    assert_arrive(
        &sidecar,
        vec![
            ("head-public", RawRequest::new("HEAD", "/data/projects/public")),
            ("post-secret", RawRequest::new("POST", "/data/projects/secret").header("content-type", "text/plain")),
        ],
    );
}

#[test]
fn a_method_tunnelled_with_encoded_names_or_values_never_arrives() {
    let config = json!({
        "peerAuthentication": {"mtls": {"mode": "PERMISSIVE"}},
        "policies": [{"name": "no-deletes", "namespace": "xnat", "spec": {"action": "DENY",
            "rules": [{"to": [{"operation": {"methods": ["DELETE", "POST"]}}]}]}}]
    });
    let sidecar = Sidecar::start(&config.to_string(), &[PORT]).expect("sidecar starts");
    assert_never_arrive(
        &sidecar,
        vec![
            ("name-m", RawRequest::get("/data/projects/P1?%6Dethod=DELETE")),
            ("name-t", RawRequest::get("/data/projects/P1?me%74hod=DELETE")),
            ("spring-name", RawRequest::get("/data/projects/P1?_%6Dethod=delete")),
            ("value", RawRequest::get("/data/projects/P1?method=DEL%45TE")),
            ("second-value", RawRequest::get("/data/projects/P1?method=GET&me%74hod=delete")),
            ("long-s", RawRequest::get("/data/projects/P1?method=po%C5%BFt")),
            ("header-long-s", RawRequest::get("/data/projects/P1").header("x-http-method-override", "po\u{17F}t")),
        ],
    );
    assert_arrive(
        &sidecar,
        vec![
            ("plain-get", RawRequest::get("/data/projects/P1")),
            ("tunnel-get", RawRequest::get("/data/projects/P1?method=%47ET")),
            ("other-param", RawRequest::get("/data/projects/P1?methods=DELETE")),
        ],
    );
}

#[test]
fn an_override_header_spelt_with_underscores_never_arrives() {
    let config = json!({
        "peerAuthentication": {"mtls": {"mode": "PERMISSIVE"}},
        "policies": [{"name": "no-deletes", "namespace": "xnat", "spec": {"action": "DENY",
            "rules": [{"to": [{"operation": {"methods": ["DELETE"]}}]}]}}]
    });
    let sidecar = Sidecar::start(&config.to_string(), &[PORT]).expect("sidecar starts");
    let get = || RawRequest::get("/data/projects/P1");
    assert_never_arrive(
        &sidecar,
        vec![
            ("underscores", get().header("x_http_method_override", "DELETE")),
            ("mixed", get().header("X-HTTP_Method-Override", "DELETE")),
            ("short", get().header("x_http_method", "DELETE")),
            ("third", get().header("x_method_override", "delete")),
        ],
    );
    assert_arrive(
        &sidecar,
        vec![
            ("underscore-get", get().header("x_http_method_override", "GET")),
            ("other-header", get().header("x_http_method_overrides", "DELETE")),
        ],
    );
}

#[test]
fn paths_below_a_denied_restlet_path_never_arrive() {
    let config = json!({
        "peerAuthentication": {"mtls": {"mode": "PERMISSIVE"}},
        "policies": [{"name": "no-token-issue", "namespace": "xnat", "spec": {"action": "DENY",
            "rules": [{"to": [{"operation": {"paths": ["/data/services/tokens/issue"]}}]}]}}]
    });
    let sidecar = Sidecar::start(&config.to_string(), &[PORT]).expect("sidecar starts");
    assert_never_arrive(
        &sidecar,
        vec![
            ("issue", RawRequest::get("/data/services/tokens/issue")),
            ("issue-slash", RawRequest::get("/data/services/tokens/issue/")),
            ("issue-user", RawRequest::get("/data/services/tokens/issue/user/bob")),
            ("issue-rest", RawRequest::get("/REST/services/tokens/issue/user/bob")),
            ("issue-dots", RawRequest::get("/data/services/tokens/x/../issue/user/bob")),
        ],
    );
    assert_arrive(
        &sidecar,
        vec![
            ("validate", RawRequest::get("/data/services/tokens/validate/a/b")),
            ("issuer", RawRequest::get("/data/services/tokens/issuer")),
        ],
    );
}

#[test]
fn a_denied_xapi_path_never_arrives_under_springs_other_prefixes() {
    let config = json!({
        "peerAuthentication": {"mtls": {"mode": "PERMISSIVE"}},
        "policies": [{"name": "no-user-admin", "namespace": "xnat", "spec": {"action": "DENY",
            "rules": [{"to": [{"operation": {"paths": ["/xapi/users/*"]}}]}]}}]
    });
    let sidecar = Sidecar::start(&config.to_string(), &[PORT]).expect("sidecar starts");
    assert_never_arrive(
        &sidecar,
        vec![
            ("xapi", RawRequest::get("/xapi/users/bob")),
            ("pages", RawRequest::get("/pages/users/bob")),
            ("admin", RawRequest::get("/admin/users/bob")),
            ("schemas", RawRequest::get("/schemas/users/bob")),
            ("pages-dots", RawRequest::get("/pages/x/../users/bob")),
        ],
    );
    assert_arrive(
        &sidecar,
        vec![
            ("site-config", RawRequest::get("/pages/siteConfig")),
            ("page-singular", RawRequest::get("/page/users/bob")),
        ],
    );
}

#[test]
fn a_denied_xapi_handler_never_arrives_with_a_trailing_slash_or_extension() {
    let config = json!({
        "peerAuthentication": {"mtls": {"mode": "PERMISSIVE"}},
        "policies": [{"name": "no-site-config", "namespace": "xnat", "spec": {"action": "DENY",
            "rules": [{"to": [{"operation": {"paths": ["/xapi/siteConfig"]}}]}]}}]
    });
    let sidecar = Sidecar::start(&config.to_string(), &[PORT]).expect("sidecar starts");
    assert_never_arrive(
        &sidecar,
        vec![
            ("plain", RawRequest::get("/xapi/siteConfig")),
            ("slash", RawRequest::get("/xapi/siteConfig/")),
            ("json", RawRequest::get("/xapi/siteConfig.json")),
            ("xml", RawRequest::get("/xapi/siteConfig.xml?format=x")),
            ("pages-json", RawRequest::get("/pages/siteConfig.json")),
        ],
    );
    assert_arrive(
        &sidecar,
        vec![
            ("sibling", RawRequest::get("/xapi/siteConfig/buildInfo")),
            ("html", RawRequest::get("/xapi/siteConfig.html")),
        ],
    );
}

/// A federated or multi-cluster mesh: every peer's certificate chains to the same trusted root,
/// and a workload of another trust domain uses the namespace an ALLOW rule names. Two listener
/// sets in one Envoy: the default (`peerTrustDomains: MESH`) and Istio's behaviour (`ANY`).
#[test]
fn a_peer_of_another_trust_domain_in_an_allowed_namespace_never_arrives() {
    use deployer::local::envoy::{self, Envoy, Listener, ServerTls};
    use deployer::local::pki::Pki;
    use deployer::local::upstream::RecordingUpstream;
    use harness::sides::Sides;
    use harness::support;
    use std::net::SocketAddr;

    let config = |setting: &str| {
        json!({
            "trustDomain": "cluster.local", "trustDomainAliases": ["old.local"], "peerTrustDomains": setting,
            "peerAuthentication": {"mtls": {"mode": "STRICT"}},
            "policies": [{"name": "reporting-reads", "namespace": "xnat", "spec": {"rules": [
                {"from": [{"source": {"namespaces": ["reporting"]}}], "to": [{"operation": {"methods": ["GET"]}}]}]}}]
        })
        .to_string()
    };
    let work = tempfile::tempdir().unwrap();
    let pki = Pki::generate(work.path(), "spiffe://cluster.local/ns/xnat/sa/xnat-web").unwrap();
    let mesh = pki.client("mesh", "spiffe://cluster.local/ns/reporting/sa/viewer").unwrap();
    let alias = pki.client("alias", "spiffe://old.local/ns/reporting/sa/viewer").unwrap();
    let foreign = pki.client("foreign", "spiffe://other.example/ns/reporting/sa/viewer").unwrap();
    let tls = ServerTls { cert: pki.server.cert.clone(), key: pki.server.key.clone(), ca: pki.ca_cert.clone() };
    let upstream = RecordingUpstream::start(SocketAddr::from(([127, 0, 0, 1], 0))).unwrap();
    let module = support::module();
    let (mesh_ip, any_ip) = (support::loopback_for(&[PORT]), support::loopback_for(&[PORT]));
    let listeners = [
        Listener { address: mesh_ip, port: PORT, http_filters: vec![envoy::wasm_filter(&module, &config("MESH"))] },
        Listener { address: any_ip, port: PORT, http_filters: vec![envoy::wasm_filter(&module, &config("ANY"))] },
    ];
    let envoy =
        Envoy::start(&support::envoy_binary(), &envoy::bootstrap(&listeners, &tls, upstream.addr()), work.path())
            .expect("Envoy starts");
    let sides = Sides {
        sides: vec![("mesh", mesh_ip), ("any", any_ip)],
        ca_der: &pki.ca_der,
        upstream: &upstream,
        envoy: &envoy,
    };
    let request = RawRequest::get("/data/projects");
    // (who, tag, identity, (status, arrived) under MESH, under ANY)
    let cases = [
        ("the mesh's own peer is served", "td-mesh", &mesh, (200, 1), (200, 1)),
        ("a peer of an alias domain is served", "td-alias", &alias, (200, 1), (200, 1)),
        ("a foreign peer of the namespace is refused and never arrives", "td-foreign", &foreign, (403, 0), (200, 1)),
    ];
    for (why, tag, identity, want_mesh, want_any) in cases {
        let outcomes = sides.send(PORT, &request, Some(identity), tag);
        assert_eq!((outcomes[0].0, outcomes[0].2), want_mesh, "MESH: {why}: {}", outcomes[0].1);
        assert_eq!((outcomes[1].0, outcomes[1].2), want_any, "ANY (Istio's behaviour): {why}: {}", outcomes[1].1);
    }
}

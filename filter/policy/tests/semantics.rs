//! Istio semantics, field by field, through the public API: JSON in, decision out. Each
//! configuration is compiled, written as the bytes the Wasm filter loads and read back
//! (`packed`), and the engine read back is the one judged.

use serde_json::{json, Value};
use xnat_guard_policy::{from_json, packed, Engine, Request, Verdict};

const WEB: &str = "spiffe://cluster.local/ns/xnat/sa/xnat-web";
const UPLOADER: &str = "spiffe://cluster.local/ns/xnat-ingest/sa/uploader";
const VIEWER: &str = "spiffe://cluster.local/ns/reporting/sa/viewer";

fn compile(config: Value) -> Engine {
    let compiled = from_json(config.to_string().as_bytes()).unwrap_or_else(|e| panic!("config refused: {e}\n{config}"));
    let decoded = packed::decode(&packed::encode(&compiled)).unwrap_or_else(|e| panic!("read back: {e}\n{config}"));
    assert_eq!(format!("{decoded:?}"), format!("{compiled:?}"), "the bytes hold a different engine");
    decoded
}

/// One ALLOW policy with the given rules.
fn allow(rules: Value) -> Engine {
    compile(json!({"policies": [{"name": "p", "namespace": "xnat", "spec": {"rules": rules}}]}))
}

fn policy_with(action: &str, rules: Value) -> Engine {
    compile(json!({"policies": [{"name": "p", "namespace": "xnat", "spec": {"action": action, "rules": rules}}]}))
}

#[derive(Clone, Copy)]
struct Req {
    method: &'static str,
    path: &'static str,
    host: &'static str,
    port: u16,
    peer: Option<&'static str>,
    ip: &'static str,
    sni: Option<&'static str>,
    header: Option<&'static str>,
}

const GET: Req = Req {
    method: "GET",
    path: "/data/projects",
    host: "xnat.example.com",
    port: 8443,
    peer: Some(WEB),
    ip: "10.0.0.5",
    sni: None,
    header: None,
};

impl Req {
    fn method(self, m: &'static str) -> Req {
        Req { method: m, ..self }
    }
    fn path(self, p: &'static str) -> Req {
        Req { path: p, ..self }
    }
    fn host(self, h: &'static str) -> Req {
        Req { host: h, ..self }
    }
    fn port(self, p: u16) -> Req {
        Req { port: p, ..self }
    }
    fn peer(self, p: &'static str) -> Req {
        Req { peer: Some(p), ..self }
    }
    fn plaintext(self) -> Req {
        Req { peer: None, ..self }
    }
    fn ip(self, ip: &'static str) -> Req {
        Req { ip, ..self }
    }
    fn sni(self, s: &'static str) -> Req {
        Req { sni: Some(s), ..self }
    }
    fn header(self, v: &'static str) -> Req {
        Req { header: Some(v), ..self }
    }

    fn verdict(self, policy: &Engine) -> Verdict {
        self.decide(policy).verdict
    }

    fn decide(self, policy: &Engine) -> xnat_guard_policy::Decision {
        let ip = self.ip.parse().ok();
        // The one test header goes to every header the policy reads, except the method-override
        // headers (tested in bypass.rs).
        let value: Vec<&[u8]> = self.header.map(str::as_bytes).into_iter().collect();
        let headers: Vec<&[&[u8]]> = policy
            .header_names()
            .iter()
            .map(|name| if name.contains("method") { &[][..] } else { &value[..] })
            .collect();
        policy.evaluate(&Request {
            method: self.method.as_bytes(),
            path: self.path.as_bytes(),
            host: Some(self.host.as_bytes()),
            port: Some(self.port),
            peer: self.peer.map(str::as_bytes),
            source_ip: ip,
            remote_ip: ip,
            destination_ip: "10.1.1.1".parse().ok(),
            sni: self.sni.map(str::as_bytes),
            headers: &headers,
        })
    }

    fn allowed(self, policy: &Engine) -> bool {
        self.verdict(policy).is_allowed()
    }
}

/// (rules of one ALLOW policy, request, expected allowed)
fn table(cases: &[(Value, Req, bool)]) {
    for (i, (rules, req, expected)) in cases.iter().enumerate() {
        let policy = allow(rules.clone());
        assert_eq!(
            req.allowed(&policy),
            *expected,
            "case {i}: rules {rules} on {} {} from {:?}",
            req.method,
            req.path,
            req.peer
        );
    }
}

#[test]
fn methods_match_exactly_and_by_istio_string_forms() {
    let runbook = json!([{"to": [{"operation": {"methods": ["GET", "HEAD", "PUT", "DELETE", "OPTIONS"]}}]}]);
    table(&[
        (runbook.clone(), GET, true),
        (runbook.clone(), GET.method("POST"), false),
        (runbook.clone(), GET.method("PATCH"), false),
        (json!([{"to": [{"operation": {"methods": ["P*"]}}]}]), GET.method("PATCH"), true),
        (json!([{"to": [{"operation": {"methods": ["P*"]}}]}]), GET, false),
        (json!([{"to": [{"operation": {"methods": ["*ETE"]}}]}]), GET.method("DELETE"), true),
        (json!([{"to": [{"operation": {"methods": ["*"]}}]}]), GET.method("PROPFIND"), true),
        (json!([{"to": [{"operation": {"notMethods": ["POST"]}}]}]), GET, true),
        (json!([{"to": [{"operation": {"notMethods": ["POST"]}}]}]), GET.method("POST"), false),
    ]);
}

#[test]
fn paths_match_istio_forms_and_templates_ignoring_the_query() {
    let op = |paths: Value| json!([{"to": [{"operation": {"paths": paths}}]}]);
    table(&[
        (op(json!(["/data/projects"])), GET, true),
        (op(json!(["/data/projects"])), GET.path("/data/projects?format=json"), true),
        (op(json!(["/data/projects"])), GET.path("/data/projects/x"), false),
        (op(json!(["/data/*"])), GET.path("/data/experiments"), true),
        (op(json!(["/data/*"])), GET.path("/xapi/users"), false),
        (op(json!(["*/files"])), GET.path("/data/experiments/E1/files"), true),
        (op(json!(["*"])), GET.path("/anything"), true),
        (op(json!(["/data/projects/{*}/subjects"])), GET.path("/data/projects/P1/subjects"), true),
        (op(json!(["/data/projects/{*}/subjects"])), GET.path("/data/projects/P1/x/subjects"), false),
        (op(json!(["/data/{**}/files"])), GET.path("/data/projects/P1/experiments/E1/files"), true),
        (json!([{"to": [{"operation": {"notPaths": ["/xapi/*"]}}]}]), GET.path("/xapi/users"), false),
        (json!([{"to": [{"operation": {"notPaths": ["/xapi/*"]}}]}]), GET, true),
    ]);
}

#[test]
fn hosts_ignore_case_ports_compare_numbers() {
    table(&[
        (json!([{"to": [{"operation": {"hosts": ["xnat.example.com"]}}]}]), GET.host("XNAT.Example.com"), true),
        (json!([{"to": [{"operation": {"hosts": ["*.example.com"]}}]}]), GET.host("other.org"), false),
        (json!([{"to": [{"operation": {"notHosts": ["evil.*"]}}]}]), GET.host("evil.org"), false),
        (json!([{"to": [{"operation": {"ports": ["8080"]}}]}]), GET.port(8080), true),
        (json!([{"to": [{"operation": {"ports": ["8080"]}}]}]), GET.port(8443), false),
        (json!([{"to": [{"operation": {"notPorts": ["8080"]}}]}]), GET.port(8443), true),
    ]);
}

#[test]
fn sources_match_principals_namespaces_and_service_accounts_from_the_peer() {
    let src = |source: Value| json!([{"from": [{"source": source}]}]);
    table(&[
        (src(json!({"principals": ["cluster.local/ns/xnat/sa/xnat-web"]})), GET, true),
        (src(json!({"principals": ["cluster.local/ns/xnat/sa/xnat-web"]})), GET.peer(UPLOADER), false),
        (src(json!({"principals": ["cluster.local/ns/xnat-ingest/*"]})), GET.peer(UPLOADER), true),
        (src(json!({"principals": ["*/sa/viewer"]})), GET.peer(VIEWER), true),
        (src(json!({"principals": ["*"]})), GET.peer(VIEWER), true),
        (src(json!({"namespaces": ["reporting"]})), GET.peer(VIEWER), true),
        (src(json!({"namespaces": ["reporting"]})), GET, false),
        (src(json!({"namespaces": ["xnat*"]})), GET.peer(UPLOADER), true),
        (src(json!({"namespaces": ["*"]})), GET.peer(VIEWER), true),
        (src(json!({"serviceAccounts": ["xnat-ingest/uploader"]})), GET.peer(UPLOADER), true),
        (src(json!({"serviceAccounts": ["xnat-web"]})), GET, true),
        (src(json!({"serviceAccounts": ["xnat-web"]})), GET.peer("spiffe://cluster.local/ns/other/sa/xnat-web"), false),
        (src(json!({"notNamespaces": ["reporting"]})), GET.peer(VIEWER), false),
        (src(json!({"notPrincipals": ["cluster.local/ns/xnat/sa/xnat-web"]})), GET.peer(VIEWER), true),
        (src(json!({"trustDomains": ["cluster.local"]})), GET, true),
        (src(json!({"trustDomains": ["other.td"]})), GET, false),
    ]);
}

#[test]
fn plaintext_callers_never_match_identities_but_do_match_their_negations() {
    let src = |source: Value| json!([{"from": [{"source": source}]}]);
    table(&[
        (src(json!({"principals": ["*"]})), GET.plaintext(), false),
        (src(json!({"namespaces": ["*"]})), GET.plaintext(), false),
        (src(json!({"serviceAccounts": ["xnat-web"]})), GET.plaintext(), false),
        (src(json!({"notPrincipals": ["*"]})), GET.plaintext(), true),
        (src(json!({"notNamespaces": ["xnat"]})), GET.plaintext(), true),
    ]);
}

#[test]
fn identities_that_are_not_spiffe_ids_fail_safe_per_action() {
    let odd = "spiffe://cluster.local/ns/reporting/sa/viewer/extra";
    // ALLOW: neither "in reporting" nor "not in reporting" can be established: no match.
    let allow_not = allow(json!([{"from": [{"source": {"notNamespaces": ["reporting"]}}]}]));
    assert!(!GET.peer(odd).allowed(&allow_not));
    // DENY: the same doubt denies.
    let deny_not = policy_with("DENY", json!([{"from": [{"source": {"notNamespaces": ["xnat"]}}]}]));
    assert!(matches!(GET.peer(odd).verdict(&deny_not), Verdict::DeniedBy { .. }));
    assert!(GET.allowed(&deny_not), "a well-formed xnat identity is not denied");
}

#[test]
fn ip_blocks_and_when_conditions() {
    table(&[
        (json!([{"from": [{"source": {"ipBlocks": ["10.0.0.0/24"]}}]}]), GET, true),
        (json!([{"from": [{"source": {"ipBlocks": ["10.0.1.0/24"]}}]}]), GET, false),
        (json!([{"from": [{"source": {"ipBlocks": ["10.0.1.0/24"]}}]}]), GET.ip("10.0.1.9"), true),
        (json!([{"from": [{"source": {"notIpBlocks": ["10.0.1.0/24"]}}]}]), GET.ip("10.0.1.9"), false),
        (json!([{"from": [{"source": {"notRemoteIpBlocks": ["10.0.0.5"]}}]}]), GET, false),
        (json!([{"when": [{"key": "source.ip", "values": ["10.0.0.5"]}]}]), GET, true),
        (json!([{"when": [{"key": "remote.ip", "notValues": ["10.0.0.0/8"]}]}]), GET, false),
        (json!([{"when": [{"key": "destination.ip", "values": ["10.1.1.0/24"]}]}]), GET, true),
        (json!([{"when": [{"key": "source.namespace", "values": ["xnat"]}]}]), GET, true),
        (json!([{"when": [{"key": "source.principal", "values": ["cluster.local/ns/xnat/sa/xnat-web"]}]}]), GET, true),
        (json!([{"when": [{"key": "destination.port", "values": ["8080"]}]}]), GET, false),
        (json!([{"when": [{"key": "connection.sni", "values": ["xnat.*"]}]}]), GET.sni("xnat.local"), true),
        (json!([{"when": [{"key": "connection.sni", "values": ["*"]}]}]), GET, false),
        (
            json!([{"when": [{"key": "request.headers[X-Xnat-Client]", "values": ["pipeline-*"]}]}]),
            GET.header("pipeline-7"),
            true,
        ),
        (json!([{"when": [{"key": "request.headers[X-Xnat-Client]", "values": ["*"]}]}]), GET, false),
        (
            json!([{"when": [{"key": "request.headers[X-Xnat-Client]", "notValues": ["bad"]}]}]),
            GET.header("bad"),
            false,
        ),
    ]);
}

#[test]
fn rules_and_lists_combine_as_istio_says() {
    let two_sources =
        json!([{"from": [{"source": {"namespaces": ["reporting"]}}, {"source": {"namespaces": ["xnat"]}}]}]);
    let and_in_rule =
        json!([{"from": [{"source": {"namespaces": ["reporting"]}}], "to": [{"operation": {"methods": ["GET"]}}]}]);
    table(&[
        (two_sources.clone(), GET, true),
        (two_sources.clone(), GET.peer(UPLOADER), false),
        (and_in_rule.clone(), GET.peer(VIEWER), true),
        (and_in_rule.clone(), GET.peer(VIEWER).method("POST"), false),
        (and_in_rule, GET, false),
    ]);
}

#[test]
fn missing_rules_allow_nothing_and_an_empty_rule_allows_everything() {
    let none = compile(json!({"policies": [{"name": "p", "namespace": "xnat", "spec": {}}]}));
    assert_eq!(GET.verdict(&none), Verdict::DeniedNoAllowMatch);
    let all = allow(json!([{}]));
    assert_eq!(GET.verdict(&all), Verdict::AllowedBy { policy: 0, rule: 0 });
    let empty_list = allow(json!([]));
    assert_eq!(GET.verdict(&empty_list), Verdict::DeniedNoAllowMatch);
    let deny_all = policy_with("DENY", json!([{}]));
    assert_eq!(GET.verdict(&deny_all), Verdict::DeniedBy { policy: 0, rule: 0 });
    let deny_none = compile(json!({"policies": [{"name": "p", "namespace": "xnat", "spec": {"action": "DENY"}}]}));
    assert_eq!(GET.verdict(&deny_none), Verdict::AllowedNoAllowPolicy);
    let nothing = compile(json!({}));
    assert_eq!(GET.verdict(&nothing), Verdict::AllowedNoAllowPolicy);
}

#[test]
fn deny_takes_precedence_over_allow() {
    let policy = compile(json!({"policies": [
        {"name": "all", "namespace": "xnat", "spec": {"rules": [{}]}},
        {"name": "no-delete", "namespace": "xnat", "spec": {"action": "DENY", "rules": [{"to": [{"operation": {"methods": ["DELETE"]}}]}]}}
    ]}));
    assert_eq!(GET.verdict(&policy), Verdict::AllowedBy { policy: 0, rule: 0 });
    assert_eq!(GET.method("DELETE").verdict(&policy), Verdict::DeniedBy { policy: 1, rule: 0 });
}

#[test]
fn audit_is_reported_and_never_changes_the_verdict() {
    let policy = compile(json!({"policies": [
        {"name": "audit-posts", "namespace": "xnat", "spec": {"action": "AUDIT", "rules": [{"to": [{"operation": {"methods": ["POST"]}}]}]}}
    ]}));
    let d = GET.method("POST").decide(&policy);
    assert!(d.audited);
    assert_eq!(d.verdict, Verdict::AllowedNoAllowPolicy);
    assert!(!GET.decide(&policy).audited);
}

#[test]
fn dry_run_policies_are_reported_never_enforced() {
    let policy = compile(json!({"policies": [
        {"name": "would-deny-post", "namespace": "xnat", "dryRun": true, "spec": {"action": "DENY", "rules": [{"to": [{"operation": {"methods": ["POST"]}}]}]}},
        {"name": "would-allow-get", "namespace": "xnat", "dryRun": true, "spec": {"rules": [{"to": [{"operation": {"methods": ["GET", "POST"]}}]}]}}
    ]}));
    let post = GET.method("POST").decide(&policy);
    assert_eq!(post.verdict, Verdict::AllowedNoAllowPolicy, "dry-run DENY does not deny");
    assert!(post.dry_run_denied);
    let put = GET.method("PUT").decide(&policy);
    assert_eq!(put.verdict, Verdict::AllowedNoAllowPolicy, "a dry-run ALLOW does not make ALLOW mandatory");
    assert!(put.dry_run_denied, "no dry-run ALLOW matches PUT");
    assert!(!GET.decide(&policy).dry_run_denied);
}

#[test]
fn per_port_mtls_follows_peer_authentication() {
    let runbook = compile(
        json!({"peerAuthentication": {"mtls": {"mode": "STRICT"}, "portLevelMtls": {"8080": {"mode": "DISABLE"}}}}),
    );
    assert_eq!(GET.plaintext().port(8443).verdict(&runbook), Verdict::DeniedMtlsRequired { port: Some(8443) });
    assert!(GET.plaintext().port(8080).allowed(&runbook));
    assert!(GET.port(8443).allowed(&runbook));
    let unset = compile(
        json!({"peerAuthentication": {"mtls": {"mode": "STRICT"}, "portLevelMtls": {"9000": {"mode": "UNSET"}}}}),
    );
    assert!(!GET.plaintext().port(9000).allowed(&unset), "UNSET inherits STRICT");
    let none = compile(json!({}));
    assert!(GET.plaintext().allowed(&none), "no PeerAuthentication is PERMISSIVE");
    let strict_port = compile(
        json!({"peerAuthentication": {"mtls": {"mode": "PERMISSIVE"}, "portLevelMtls": {"8443": {"mode": "STRICT"}}}}),
    );
    assert!(GET.plaintext().port(8080).allowed(&strict_port));
    assert!(!GET.plaintext().port(8443).allowed(&strict_port));
}

#[test]
fn trust_domain_aliases_expand_principals() {
    let policy = compile(json!({
        "trustDomain": "new-td", "trustDomainAliases": ["old-td"],
        "policies": [{"name": "p", "namespace": "xnat", "spec": {"rules": [{"from": [{"source": {"principals": ["old-td/ns/xnat/sa/xnat-web"]}}]}]}}]
    }));
    assert!(GET.peer("spiffe://new-td/ns/xnat/sa/xnat-web").allowed(&policy));
    assert!(GET.peer("spiffe://old-td/ns/xnat/sa/xnat-web").allowed(&policy));
    assert!(!GET.peer("spiffe://other-td/ns/xnat/sa/xnat-web").allowed(&policy));
}

/// Istio reads `cluster.local` in a principal as "this mesh's trust domain" and rewrites it,
/// with every principal naming a domain of the mesh, to the trust domain and each alias
/// (`ReplaceTrustDomainAliases`). Principals of exactly five `/` parts whose domain is not
/// `*` are rewritten; others are kept as written.
#[test]
fn cluster_local_in_a_principal_means_the_meshs_own_trust_domain() {
    let with = |trust_domain: &str, aliases: Value, principal: &str, not: bool| {
        let field = if not { "notPrincipals" } else { "principals" };
        compile(json!({
            "trustDomain": trust_domain, "trustDomainAliases": aliases,
            "policies": [{"name": "p", "namespace": "xnat", "spec": {"rules": [{"from": [{"source": {field: [principal]}}]}]}}]
        }))
    };
    // (trust domain, aliases, principal in the policy, peer, allowed)
    let cases: &[(&str, Value, &str, &str, bool)] = &[
        // The runbook's principals in a mesh whose trust domain is not cluster.local.
        (
            "example.org",
            json!([]),
            "cluster.local/ns/xnat/sa/xnat-web",
            "spiffe://example.org/ns/xnat/sa/xnat-web",
            true,
        ),
        // ...and a cluster.local identity, from another mesh, no longer passes for it.
        (
            "example.org",
            json!([]),
            "cluster.local/ns/xnat/sa/xnat-web",
            "spiffe://cluster.local/ns/xnat/sa/xnat-web",
            false,
        ),
        ("new-td", json!(["old-td"]), "cluster.local/ns/xnat/sa/xnat-web", "spiffe://old-td/ns/xnat/sa/xnat-web", true),
        (
            "new-td",
            json!(["old-td"]),
            "cluster.local/ns/xnat/sa/xnat-web",
            "spiffe://cluster.local/ns/xnat/sa/xnat-web",
            false,
        ),
        // cluster.local as the mesh's domain or alias stays.
        (
            "cluster.local",
            json!([]),
            "cluster.local/ns/xnat/sa/xnat-web",
            "spiffe://cluster.local/ns/xnat/sa/xnat-web",
            true,
        ),
        (
            "td1",
            json!(["cluster.local"]),
            "cluster.local/ns/xnat/sa/xnat-web",
            "spiffe://td1/ns/xnat/sa/xnat-web",
            true,
        ),
        (
            "td1",
            json!(["cluster.local"]),
            "cluster.local/ns/xnat/sa/xnat-web",
            "spiffe://cluster.local/ns/xnat/sa/xnat-web",
            true,
        ),
        // A domain outside the mesh is kept as written, and not widened to the mesh's.
        ("example.org", json!([]), "partner.org/ns/xnat/sa/xnat-web", "spiffe://partner.org/ns/xnat/sa/xnat-web", true),
        (
            "example.org",
            json!([]),
            "partner.org/ns/xnat/sa/xnat-web",
            "spiffe://example.org/ns/xnat/sa/xnat-web",
            false,
        ),
        // Not five parts: not an identity Istio rewrites, so it is kept as written.
        (
            "example.org",
            json!([]),
            "cluster.local/ns/xnat/sa/xnat-web/x",
            "spiffe://example.org/ns/xnat/sa/xnat-web/x",
            false,
        ),
        (
            "example.org",
            json!([]),
            "cluster.local/ns/xnat/sa/xnat-web/x",
            "spiffe://cluster.local/ns/xnat/sa/xnat-web/x",
            true,
        ),
        // A `*` domain does not enforce a domain: kept.
        ("example.org", json!([]), "*/ns/xnat/sa/xnat-web", "spiffe://cluster.local/ns/xnat/sa/xnat-web", true),
        // A domain pattern that matches a mesh domain is kept for it, replaced for the others.
        (
            "new-td",
            json!(["some-trustdomain"]),
            "*-td/ns/xnat/sa/xnat-web",
            "spiffe://some-trustdomain/ns/xnat/sa/xnat-web",
            true,
        ),
        (
            "new-td",
            json!(["some-trustdomain"]),
            "*-td/ns/xnat/sa/xnat-web",
            "spiffe://other-td/ns/xnat/sa/xnat-web",
            true,
        ),
    ];
    for (td, aliases, principal, peer, allowed) in cases {
        let policy = with(td, aliases.clone(), principal, false);
        assert_eq!(
            GET.peer(peer).allowed(&policy),
            *allowed,
            "trust domain {td} {aliases}: principals [{principal}] for peer {peer}"
        );
    }
    // notPrincipals are rewritten the same way: in a DENY-free ALLOW rule, the mesh's own
    // caller is now excluded, where the literal cluster.local would have let it through.
    let not = with("example.org", json!([]), "cluster.local/ns/xnat/sa/xnat-web", true);
    assert!(!GET.peer("spiffe://example.org/ns/xnat/sa/xnat-web").allowed(&not));
    // `when: source.principal` reads the same attribute and is rewritten too.
    let when = compile(json!({
        "trustDomain": "example.org",
        "policies": [{"name": "p", "namespace": "xnat", "spec": {"rules": [{"when": [{"key": "source.principal", "values": ["cluster.local/ns/xnat/sa/xnat-web"]}]}]}}]
    }));
    assert!(GET.peer("spiffe://example.org/ns/xnat/sa/xnat-web").allowed(&when));
    assert!(!GET.peer("spiffe://cluster.local/ns/xnat/sa/xnat-web").allowed(&when));
}

#[test]
fn the_config_digest_is_the_number_the_filter_publishes_and_a_malformed_one_is_refused() {
    assert_eq!(compile(json!({"configDigest": "1a"})).config_digest(), Some(26));
    assert_eq!(compile(json!({"configDigest": "fffffffffffff"})).config_digest(), Some((1 << 52) - 1));
    assert_eq!(compile(json!({})).config_digest(), None);
    for bad in ["", "12345678901234", "xyz", "-1"] {
        let e = refusal(json!({"configDigest": bad}));
        assert!(e.contains("configDigest") && e.contains("1 to 13 hex digits"), "{bad}: {e}");
    }
    assert!(refusal(json!({"configDigest": 26})).contains("configDigest"));
}

#[test]
fn the_runbook_policy_reads_only_the_method_and_the_mtls_flag() {
    let policy = compile(json!({
        "peerAuthentication": {"mtls": {"mode": "STRICT"}, "portLevelMtls": {"8080": {"mode": "DISABLE"}}},
        "policies": [{"name": "xnat-all", "namespace": "xnat", "spec": {"rules": [{"to": [{"operation": {"methods": ["GET"]}}]}]}}]
    }));
    let needs = policy.needs();
    assert!(needs.method && needs.peer && needs.port_for_plaintext);
    assert!(!needs.port && !needs.identity && !needs.path && !needs.host && !needs.source_ip && !needs.sni);
}

fn refusal(config: Value) -> String {
    match from_json(config.to_string().as_bytes()) {
        Ok(_) => panic!("config accepted: {config}"),
        Err(e) => e.to_string(),
    }
}

fn spec_refusal(spec: Value) -> String {
    refusal(json!({"policies": [{"name": "p", "namespace": "xnat", "spec": spec}]}))
}

#[test]
fn unsupported_and_misspelt_fields_are_refused_with_their_path() {
    let cases: &[(Value, &str)] = &[
        (json!({"action": "CUSTOM", "provider": {"name": "x"}}), "policies[0].spec.provider"),
        (json!({"action": "CUSTOM"}), "policies[0].spec.action: CUSTOM"),
        (
            json!({"rules": [{}, {"from": [{"source": {"requestPrincipals": ["*"]}}]}]}),
            "policies[0].spec.rules[1].from[0].source.requestPrincipals",
        ),
        (
            json!({"rules": [{"when": [{"key": "request.auth.claims[iss]", "values": ["x"]}]}]}),
            "policies[0].spec.rules[0].when[0].key",
        ),
        (
            json!({"rules": [{"to": [{"operation": {"methods": ["GET", "HEAD", "post"]}}]}]}),
            "policies[0].spec.rules[0].to[0].operation.methods[2]: 'post'",
        ),
        (
            json!({"rules": [{"to": [{"operation": {"method": ["GET"]}}]}]}),
            "policies[0].spec.rules[0].to[0].operation.method",
        ),
        (
            json!({"rules": [{"to": [{"operation": {"ports": ["80", "http"]}}]}]}),
            "policies[0].spec.rules[0].to[0].operation.ports[1]",
        ),
        (json!({"rules": [{"to": [{"operation": {"ports": ["70000"]}}]}]}), "operation.ports[0]"),
        (json!({"rules": [{"from": [{"source": {"ipBlocks": ["10.0.0.0/33"]}}]}]}), "source.ipBlocks[0]"),
        (json!({"rules": [{"from": [{"source": {}}]}]}), "policies[0].spec.rules[0].from[0].source: must not be empty"),
        (json!({"rules": [{"to": [{"operation": {"paths": ["/a/*/b"]}}]}]}), "operation.paths[0]"),
        (json!({"rules": [{"to": [{"operation": {"paths": ["/a/{x}/b"]}}]}]}), "operation.paths[0]"),
        (json!({"rules": [{"when": [{"key": "source.ip"}]}]}), "when[0]: needs `values` or `notValues`"),
        (json!({"rules": [{"when": [{"key": "request.headers[]", "values": ["x"]}]}]}), "when[0].key"),
        (
            json!({"rules": [{"when": [{"key": "source.user", "values": ["x"]}]}]}),
            "unknown condition key 'source.user'",
        ),
        (json!({"rules": [{"from": [{"source": {"serviceAccounts": ["a/b/c"]}}]}]}), "serviceAccounts[0]"),
        (
            json!({"rules": [{"from": [{"source": {"serviceAccounts": ["sa"], "namespaces": ["ns"]}}]}]}),
            "cannot be combined",
        ),
        (json!({"targetRef": {"kind": "Gateway", "name": "gw"}}), "policies[0].spec.targetRef"),
        (json!({"action": "allow"}), "policies[0].spec.action"),
    ];
    for (spec, expected) in cases {
        let message = spec_refusal(spec.clone());
        assert!(message.contains(expected), "for {spec}\n  got: {message}\n  want: {expected}");
    }
}

#[test]
fn bad_peer_authentication_and_top_level_fields_are_refused() {
    let cases: &[(Value, &str)] = &[
        (
            json!({"peerAuthentication": {"mtls": {"mode": "STRICT"}, "portLevelMtls": {"80a": {"mode": "DISABLE"}}}}),
            "peerAuthentication.portLevelMtls.80a",
        ),
        (json!({"peerAuthentication": {"mtls": {"mode": "strict"}}}), "peerAuthentication.mtls.mode"),
        (
            json!({"peerAuthentication": {"mtls": {"mode": "STRICT"}, "portLevelMtls": {"8080": {"mode": "DISABLE", "x": 1}}}}),
            "portLevelMtls",
        ),
        (json!({"trustDomain": "a/b"}), "trustDomain"),
        (json!({"policy": []}), "unknown field `policy`"),
        (
            json!({"policies": [{"name": "p", "namespace": "xnat", "dryRun": true, "spec": {"action": "AUDIT", "rules": [{}]}}]}),
            "policies[0].dryRun",
        ),
        (json!({"policies": [{"name": "", "namespace": "xnat", "spec": {}}]}), "policies[0].name"),
    ];
    for (config, expected) in cases {
        let message = refusal(config.clone());
        assert!(message.contains(expected), "for {config}\n  got: {message}\n  want: {expected}");
    }
    let syntax = from_json(b"{\"policies\": [").err().map(|e| e.to_string()).unwrap_or_default();
    assert!(syntax.contains("EOF"), "{syntax}");
}

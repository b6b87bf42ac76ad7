//! Bypass-proofing: rules judge the path Tomcat will route and every method the request asks
//! for, so neither can be stepped around.

use serde_json::{json, Value};
use xnat_guard_policy::{from_json, Engine, PathRefusal, Request, Verdict};

fn compile(config: Value) -> Engine {
    from_json(config.to_string().as_bytes()).unwrap_or_else(|e| panic!("config refused: {e}\n{config}"))
}

fn refused(config: Value) -> String {
    from_json(config.to_string().as_bytes())
        .err()
        .map(|e| e.to_string())
        .unwrap_or_else(|| panic!("accepted: {config}"))
}

fn policies(policies: Value, extra: Value) -> Value {
    let mut config = json!({ "policies": policies });
    for (k, v) in extra.as_object().unwrap() {
        config[k] = v.clone();
    }
    config
}

fn deny_secret(extra: Value) -> Engine {
    compile(policies(
        json!([{"name": "no-secret", "namespace": "xnat", "spec": {"action": "DENY",
            "rules": [{"to": [{"operation": {"paths": ["/data/projects/secret*"]}}]}]}}]),
        extra,
    ))
}

fn verdict(policy: &Engine, method: &str, path: &str, headers: &[Option<&[u8]>]) -> Verdict {
    let names = policy.header_names();
    assert!(headers.len() <= names.len());
    let singles: Vec<Vec<&[u8]>> = headers.iter().map(|h| h.iter().copied().collect()).collect();
    let mut all: Vec<&[&[u8]]> = vec![&[]; names.len()];
    for (i, v) in singles.iter().enumerate() {
        all[i] = v;
    }
    policy
        .evaluate(&Request {
            method: method.as_bytes(),
            path: path.as_bytes(),
            host: Some(b"xnat.example.org"),
            port: Some(8443),
            peer: Some(b"spiffe://cluster.local/ns/xnat/sa/xnat-web"),
            headers: &all,
            ..Default::default()
        })
        .verdict
}

#[test]
fn a_path_rule_cannot_be_stepped_around() {
    let policy = deny_secret(json!({}));
    for path in [
        "/data/projects/secret",
        "/data/projects/x/../secret",
        "/data/projects/x/..;/secret",
        "/data/projects;jsessionid=1/secret",
        "/data//projects///secret",
        "/data/./projects/secret",
        "/data/projects/%73ecret",
        "/data/projects/%2e/secret",
        "/REST/projects/secret",
        "/data/archive/projects/secret",
        "/REST/archive/projects/secret?format=json",
    ] {
        assert!(
            matches!(verdict(&policy, "GET", path, &[]), Verdict::DeniedBy { .. }),
            "{path} reached the secret: {:?}",
            verdict(&policy, "GET", path, &[])
        );
    }
    assert_eq!(verdict(&policy, "GET", "/data/projects/public", &[]), Verdict::AllowedNoAllowPolicy);
}

#[test]
fn paths_tomcat_refuses_or_could_read_two_ways_are_refused() {
    let policy = deny_secret(json!({}));
    for (path, reason) in [
        ("/data/projects%2Fsecret", PathRefusal::EncodedSlash),
        ("/data/projects%5Csecret", PathRefusal::Backslash),
        ("/data/projects\\secret", PathRefusal::Backslash),
        ("/data/projects/secret%00", PathRefusal::Nul),
        ("/data/projects/%zz", PathRefusal::MalformedEscape),
        ("/data/../../secret", PathRefusal::AboveRoot),
    ] {
        assert_eq!(verdict(&policy, "GET", path, &[]), Verdict::DeniedUnsafePath { reason }, "{path}");
    }
}

#[test]
fn envoy_view_is_available_and_matches_raw_paths_as_istio_does() {
    let policy = deny_secret(json!({"pathNormalization": "NONE"}));
    assert!(matches!(verdict(&policy, "GET", "/data/projects/secret", &[]), Verdict::DeniedBy { .. }));
    // Istio's own view: the raw path, which Tomcat would route to the secret.
    assert_eq!(verdict(&policy, "GET", "/data/projects;x/secret", &[]), Verdict::AllowedNoAllowPolicy);
}

#[test]
fn policy_paths_that_could_never_match_or_stop_inside_an_alias_are_refused() {
    let rule = |path: &str| json!([{"name": "p", "namespace": "xnat", "spec": {"rules": [{"to": [{"operation": {"paths": [path]}}]}]}}]);
    let e = refused(policies(rule("/data//projects"), json!({})));
    assert!(e.contains("paths[0]") && e.contains("'/data/projects'"), "{e}");
    let e = refused(policies(rule("/data/x/../y*"), json!({})));
    assert!(e.contains("can never match"), "{e}");
    let e = refused(policies(rule("/RE*"), json!({})));
    assert!(e.contains("stops inside the aliased prefix '/REST/'"), "{e}");
    let e = refused(policies(rule("/data/arch*"), json!({})));
    assert!(e.contains("/data/archive/"), "{e}");
    // Aliased policy paths are rewritten, so they match every spelling.
    let policy = compile(policies(rule("/REST/projects/*"), json!({})));
    assert!(verdict(&policy, "GET", "/data/projects/p1", &[]).is_allowed());
    let e = refused(policies(rule("/x"), json!({"pathAliases": [{"from": "/a/", "to": "/longer/"}]})));
    assert!(e.contains("pathAliases[0].to") && e.contains("lengthen"), "{e}");
    let e = refused(policies(
        rule("/x"),
        json!({"pathAliases": [{"from": "/a/", "to": "/b/"}, {"from": "/b/", "to": "/c/"}]}),
    ));
    assert!(e.contains("itself aliased"), "{e}");
}

fn methods_policy(extra: Value) -> Engine {
    compile(policies(
        json!([{"name": "xnat-all", "namespace": "xnat", "spec": {"rules": [{"to": [{"operation": {"methods": ["GET", "POST", "HEAD"]}}]}]}}]),
        extra,
    ))
}

#[test]
fn tunnelled_methods_are_judged_too() {
    let policy = methods_policy(json!({}));
    let names: Vec<&str> = policy.header_names().iter().map(|h| &**h).collect();
    assert_eq!(names, ["x-http-method-override", "x-http-method", "x-method-override"]);
    assert!(verdict(&policy, "POST", "/data/projects", &[]).is_allowed());
    for (path, headers) in [
        ("/data/projects", [Some(b"DELETE".as_slice()), None, None]),
        ("/data/projects", [None, Some(b"PUT".as_slice()), None]),
        ("/data/projects", [None, None, Some(b"delete".as_slice())]),
        ("/data/projects?method=DELETE", [None, None, None]),
        ("/data/projects?format=json&_method=put", [None, None, None]),
        ("/data/projects?METHOD=DELETE", [None, None, None]),
    ] {
        assert_eq!(verdict(&policy, "POST", path, &headers), Verdict::DeniedMethodOverride, "{path} {headers:?}");
    }
    // Tunnelling to an allowed method is fine.
    assert!(verdict(&policy, "POST", "/data/projects?method=GET", &[]).is_allowed());
    assert!(verdict(&policy, "POST", "/data/projects", &[Some(b"HEAD")]).is_allowed());
}

#[test]
fn method_override_can_be_refused_outright_or_ignored() {
    let refuse = methods_policy(json!({"methodOverride": "REFUSE"}));
    assert_eq!(verdict(&refuse, "POST", "/data/projects?method=GET", &[]), Verdict::DeniedMethodOverride);
    let ignore = methods_policy(json!({"methodOverride": "IGNORE"}));
    assert!(ignore.header_names().is_empty(), "nothing extra is read when overrides are ignored");
    assert!(verdict(&ignore, "POST", "/data/projects?method=DELETE", &[]).is_allowed());
}

#[test]
fn a_trailing_dot_does_not_escape_a_host_rule() {
    let policy = compile(json!({"policies": [{"name": "p", "namespace": "xnat", "spec": {"action": "DENY",
        "rules": [{"to": [{"operation": {"hosts": ["admin.example.org"]}}]}]}}]}));
    let eval = |host: &[u8]| {
        policy
            .evaluate(&Request {
                method: b"GET",
                path: b"/",
                host: Some(host),
                port: Some(8443),
                peer: Some(b"spiffe://cluster.local/ns/a/sa/b"),
                ..Default::default()
            })
            .verdict
    };
    assert!(matches!(eval(b"admin.example.org."), Verdict::DeniedBy { .. }));
    assert!(matches!(eval(b"ADMIN.example.org"), Verdict::DeniedBy { .. }));
    assert_eq!(eval(b"xnat.example.org"), Verdict::AllowedNoAllowPolicy);
}

#[test]
fn a_repeated_header_cannot_hide_a_denied_value() {
    let policy = compile(json!({"policies": [{"name": "no-admin", "namespace": "xnat", "spec": {"action": "DENY",
        "rules": [{"when": [{"key": "request.headers[x-role]", "values": ["admin"]}]}]}}]}));
    let eval = |values: &[&[u8]]| {
        let headers = [values];
        policy
            .evaluate(&Request {
                method: b"GET",
                path: b"/",
                port: Some(8443),
                peer: Some(b"spiffe://cluster.local/ns/a/sa/b"),
                headers: &headers,
                ..Default::default()
            })
            .verdict
    };
    assert!(matches!(eval(&[b"user", b"admin"]), Verdict::DeniedBy { .. }), "each value is judged on its own");
    assert!(matches!(eval(&[b"admin"]), Verdict::DeniedBy { .. }));
    assert_eq!(eval(&[b"user", b"guest"]), Verdict::AllowedNoAllowPolicy);
    assert_eq!(eval(&[b"user,admin"]), Verdict::AllowedNoAllowPolicy, "one value with a comma is one value");
}

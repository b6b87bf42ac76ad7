//! Property tests standing in for `cargo fuzz` (no nightly toolchain here): configuration
//! parsing and compilation, path normalisation, and evaluation, on generated input. None may
//! panic or hang; normalisation is idempotent and never lengthens its input. `make fuzz` runs
//! them with many more cases (`PROPTEST_CASES`).

use proptest::prelude::*;
use serde_json::{json, Value};
use xnat_guard_policy::{from_json, tomcat_path, Request, MAX_PATH};

/// Bytes weighted towards what makes paths interesting.
fn path_bytes() -> impl Strategy<Value = Vec<u8>> {
    let atoms = prop_oneof![
        Just(b"/".to_vec()),
        Just(b".".to_vec()),
        Just(b"..".to_vec()),
        Just(b";".to_vec()),
        Just(b"%".to_vec()),
        Just(b"%2e".to_vec()),
        Just(b"%2F".to_vec()),
        Just(b"%25".to_vec()),
        Just(b"%3B".to_vec()),
        Just(b"?".to_vec()),
        Just(b"#".to_vec()),
        Just(b"\\".to_vec()),
        Just(b"data".to_vec()),
        Just(b"REST".to_vec()),
        any::<u8>().prop_map(|b| vec![b]),
    ];
    prop::collection::vec(atoms, 0..64).prop_map(|parts| {
        let mut out = b"/".to_vec();
        out.extend(parts.concat());
        out
    })
}

fn json_leaf() -> impl Strategy<Value = Value> {
    prop_oneof![
        Just(Value::Null),
        any::<bool>().prop_map(Value::from),
        any::<i64>().prop_map(Value::from),
        "[a-zA-Z0-9/*._:{}\\[\\]-]{0,12}".prop_map(Value::from),
        prop::sample::select(vec![
            "GET", "POST", "*", "/data/*", "*/x", "/{**}/a", "8080", "ALLOW", "DENY", "AUDIT", "STRICT", "MESH", "ANY"
        ])
        .prop_map(Value::from),
    ]
}

/// JSON shaped like a plugin configuration: Istio's keys, arbitrary values.
fn config_json() -> impl Strategy<Value = Value> {
    let keys = prop::sample::select(vec![
        "policies",
        "name",
        "namespace",
        "spec",
        "rules",
        "from",
        "to",
        "when",
        "source",
        "operation",
        "methods",
        "notMethods",
        "paths",
        "notPaths",
        "ports",
        "principals",
        "namespaces",
        "key",
        "values",
        "notValues",
        "action",
        "peerAuthentication",
        "mtls",
        "mode",
        "portLevelMtls",
        "trustDomain",
        "pathAliases",
        "methodOverride",
        "pathNormalization",
        "headMethod",
        "tunnelDecoding",
        "overrideHeaderNames",
        "restletRouting",
        "springPrefixes",
        "springSuffixes",
        "peerTrustDomains",
        "hosts",
        "ipBlocks",
        "dryRun",
        "selector",
    ]);
    json_leaf().prop_recursive(5, 64, 6, move |inner| {
        prop_oneof![
            prop::collection::vec(inner.clone(), 0..4).prop_map(Value::from),
            prop::collection::vec((keys.clone(), inner), 0..5)
                .prop_map(|kv| Value::Object(kv.into_iter().map(|(k, v)| (k.to_string(), v)).collect())),
        ]
    })
}

proptest! {
    #[test]
    fn normalisation_never_panics_never_lengthens_and_is_idempotent(raw in path_bytes()) {
        let mut out = [0u8; MAX_PATH];
        if let Ok(n) = tomcat_path(&raw, &mut out) {
            let path_part = raw.iter().position(|&b| b == b'?' || b == b'#').unwrap_or(raw.len());
            prop_assert!(n <= path_part.max(1), "{:?} -> {:?}", raw, &out[..n]);
            let mut again = [0u8; MAX_PATH];
            let m = tomcat_path(&out[..n], &mut again).expect("normal form is accepted");
            prop_assert_eq!(&again[..m], &out[..n]);
        }
    }

    #[test]
    fn the_fast_path_agrees_with_normalisation(raw in path_bytes()) {
        // A path taken as already normal (no copy) must be exactly what normalising gives.
        let path = &raw[..raw.iter().position(|&b| b == b'?' || b == b'#').unwrap_or(raw.len())];
        if xnat_guard_policy::is_normal_path(path, &[]) {
            let mut out = [0u8; MAX_PATH];
            let n = tomcat_path(path, &mut out).expect("a normal path is accepted");
            prop_assert_eq!(&out[..n], path);
        }
    }

    #[test]
    fn any_json_config_is_compiled_or_refused_without_panicking(config in config_json()) {
        let _ = from_json(config.to_string().as_bytes());
        let _ = from_json(json!({ "policies": [config] }).to_string().as_bytes());
    }

    #[test]
    fn arbitrary_bytes_as_config_never_panic(bytes in prop::collection::vec(any::<u8>(), 0..256)) {
        let _ = from_json(&bytes);
    }

    #[test]
    fn evaluation_of_arbitrary_requests_never_panics(
        method in prop::collection::vec(any::<u8>(), 0..12),
        path in path_bytes(),
        host in prop::collection::vec(any::<u8>(), 0..24),
        peer in prop::option::of(prop::collection::vec(any::<u8>(), 0..64)),
        header in prop::collection::vec(prop::collection::vec(any::<u8>(), 0..16), 0..3),
        port in any::<u16>(),
    ) {
        let policy = from_json(json!({
            "peerAuthentication": {"mtls": {"mode": "STRICT"}, "portLevelMtls": {"8080": {"mode": "DISABLE"}}},
            "policies": [
                {"name": "d", "namespace": "xnat", "spec": {"action": "DENY", "rules": [{"to": [{"operation": {"paths": ["/data/admin*", "/x/{**}/y"]}}]}]}},
                // Widened to the forms XNAT serves the same way: HEAD, the paths below, the
                // Spring prefixes and suffixes.
                {"name": "w", "namespace": "xnat", "spec": {"action": "DENY", "rules": [{"to": [{"operation": {
                    "methods": ["DELETE", "G*"],
                    "paths": ["/data/services/tokens/issue", "/data/projects/{*}", "/pages/siteConfig", "/xapi/users/{*}/roles"]}}]}]}},
                // Scoped to the mesh's trust domains: a peer's trust domain is compared.
                {"name": "t", "namespace": "xnat", "spec": {"action": "DENY", "rules": [
                    {"from": [{"source": {"notNamespaces": ["xnat", "x*"]}}]},
                    {"from": [{"source": {"notServiceAccounts": ["xnat/web"]}}], "when": [{"key": "source.namespace", "notValues": ["*"]}]}]}},
                {"name": "m", "namespace": "xnat", "spec": {"rules": [
                    {"from": [{"source": {"serviceAccounts": ["web"]}}]},
                    {"from": [{"source": {"namespaces": ["*"]}}], "when": [{"key": "source.namespace", "values": ["xnat"]}]}]}},
                {"name": "a", "namespace": "xnat", "spec": {"rules": [
                    {"from": [{"source": {"principals": ["cluster.local/ns/*"], "notNamespaces": ["bad"]}}],
                     "to": [{"operation": {"methods": ["GET", "POST"], "hosts": ["*.example.org"]}}],
                     "when": [{"key": "request.headers[x-team]", "values": ["a*"]}]}]}}
            ]
        }).to_string().as_bytes()).unwrap();
        let values: Vec<&[u8]> = header.iter().map(Vec::as_slice).collect();
        let headers: Vec<&[&[u8]]> = policy.header_names().iter().map(|_| values.as_slice()).collect();
        let _ = policy.evaluate(&Request {
            method: &method,
            path: &path,
            host: Some(&host),
            port: Some(port),
            peer: peer.as_deref(),
            headers: &headers,
            ..Default::default()
        });
    }
}

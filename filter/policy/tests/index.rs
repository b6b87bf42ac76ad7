//! The rule index (built for policies of 8 rules or more) must not change a single decision:
//! random large policies are compiled with and without it, and every random request gets the
//! same decision, down to the policy and rule reported. The same requests also go to the
//! engine read back from its compiled bytes (`packed`), as the Wasm filter loads it.

use proptest::prelude::*;
use serde_json::{json, Value};
use xnat_guard_policy::config::PluginConfig;
use xnat_guard_policy::{compile, compile_unindexed, Request};

const PRINCIPALS: [&str; 4] = [
    "cluster.local/ns/team-1/sa/a",
    "cluster.local/ns/team-2/sa/b",
    "cluster.local/ns/team-3/sa/c",
    "cluster.local/ns/team-1/sa/*",
];
const NAMESPACES: [&str; 4] = ["team-1", "team-2", "team-3", "team-*"];
const PATHS: [&str; 6] = ["/data/p1", "/data/p1/*", "/data/p2/*", "/data/*", "*/files", "/xapi/users"];
const VALUES: [&str; 4] = ["a", "b", "c", "a*"];
const PEERS: [Option<&str>; 6] = [
    None,
    Some("spiffe://cluster.local/ns/team-1/sa/a"),
    Some("spiffe://cluster.local/ns/team-2/sa/b"),
    Some("spiffe://cluster.local/ns/team-3/sa/x"),
    Some("spiffe://cluster.local/not-a-spiffe-id"),
    Some(""),
];
const REQUEST_PATHS: [&str; 6] = ["/data/p1", "/data/p1/x", "/data/p2/files", "/xapi/users", "/", "/data/p3"];

fn rule() -> impl Strategy<Value = Value> {
    (0..9usize, 0..4usize, 0..6usize, any::<bool>()).prop_map(|(kind, v, p, extra)| {
        let mut r = match kind {
            0 => json!({"from": [{"source": {"principals": [PRINCIPALS[v]]}}]}),
            1 => json!({"from": [{"source": {"principals": [PRINCIPALS[v], PRINCIPALS[(v + 1) % 4]]}}]}),
            2 => json!({"from": [{"source": {"namespaces": [NAMESPACES[v]]}}]}),
            3 => json!({"from": [{"source": {"notPrincipals": [PRINCIPALS[v]]}}]}),
            4 => json!({"to": [{"operation": {"paths": [PATHS[p]]}}]}),
            5 => json!({"to": [{"operation": {"paths": [PATHS[p], PATHS[(p + 2) % 6]], "methods": ["GET"]}}]}),
            6 => json!({"when": [{"key": "request.headers[x-team]", "values": [VALUES[v]]}]}),
            7 => json!({"from": [{"source": {"principals": [PRINCIPALS[v]]}}, {"source": {"namespaces": [NAMESPACES[v]]}}]}),
            _ => json!({"to": [{"operation": {"methods": ["POST"]}}]}),
        };
        if extra {
            r["when"] = json!([{"key": "request.headers[x-env]", "notValues": ["prod"]}]);
        }
        r
    })
}

fn config() -> impl Strategy<Value = PluginConfig> {
    prop::collection::vec((prop::collection::vec(rule(), 1..40), 0..3usize), 1..4).prop_map(|policies| {
        let policies: Vec<Value> = policies
            .into_iter()
            .enumerate()
            .map(|(i, (rules, action))| {
                let action = ["ALLOW", "DENY", "AUDIT"][action];
                json!({"name": format!("p{i}"), "namespace": "xnat", "spec": {"action": action, "rules": rules}})
            })
            .collect();
        xnat_guard_policy::parse_json(json!({ "policies": policies }).to_string().as_bytes()).unwrap()
    })
}

proptest! {
    #![proptest_config(ProptestConfig { cases: 128, ..ProptestConfig::default() })]
    #[test]
    fn the_index_changes_no_decision(
        config in config(),
        requests in prop::collection::vec((0..6usize, 0..6usize, prop::collection::vec(0..4usize, 0..3), any::<bool>(), any::<bool>()), 24),
    ) {
        let (Ok(indexed), Ok(scanned)) = (compile(&config), compile_unindexed(&config)) else { return Ok(()) };
        let decoded = xnat_guard_policy::packed::decode(&xnat_guard_policy::packed::encode(&indexed)).unwrap();
        let names: Vec<String> = indexed.header_names().iter().map(|h| h.to_string()).collect();
        for (peer, path, teams, post, prod) in requests {
            let team_values: Vec<&[u8]> = teams.iter().map(|t| VALUES[*t].as_bytes()).collect();
            let env: Vec<&[u8]> = if prod { vec![b"prod"] } else { vec![] };
            let headers: Vec<&[&[u8]]> = names
                .iter()
                .map(|n| match n.as_str() {
                    "x-team" => team_values.as_slice(),
                    "x-env" => env.as_slice(),
                    _ => &[][..],
                })
                .collect();
            let request = Request {
                method: if post { b"POST" } else { b"GET" },
                path: REQUEST_PATHS[path].as_bytes(),
                port: Some(8443),
                peer: PEERS[peer].map(str::as_bytes),
                headers: &headers,
                ..Default::default()
            };
            let case = (PEERS[peer], REQUEST_PATHS[path], &teams, post, prod);
            prop_assert_eq!(indexed.evaluate(&request), scanned.evaluate(&request), "request {:?}", case);
            prop_assert_eq!(indexed.evaluate(&request), decoded.evaluate(&request), "decoded, request {:?}", case);
        }
    }
}

//! Differential testing against the anchor: random policies and random requests, each request
//! sent through Envoy's native RBAC (the configuration Istio would generate, from
//! `harness::native_rbac`, itself checked against Istio's golden cases) and through our filter,
//! side by side in one Envoy. Every decision must agree, status, body and arrival at the
//! upstream, except for requests whose path our normalisation reads differently (Tomcat's view,
//! XNAT's aliases) and requests a DENY-side condition catches only because it is widened to
//! the forms XNAT sends to the same handler (HEAD as GET, Restlet's prefix routing, Spring's
//! servlet prefixes and suffixes), and requests of a peer of another trust domain that a
//! granting namespace no longer matches (`peerTrustDomains: MESH`): those are counted and
//! reported separately, each with its reason. Two more sides run the same engine otherwise:
//! the Wasm module reading its facts in one CEL evaluation, and the engine as an Envoy dynamic
//! module (`make native`); each must judge every request exactly as the Wasm filter does.
//!
//! `make test` runs 50 policies and 2,000 requests; `XNAT_GUARD_DIFF_POLICIES`,
//! `XNAT_GUARD_DIFF_REQUESTS` (per policy) and `XNAT_GUARD_DIFF_SEED` make longer or replayed
//! runs (`make fuzz`).

use harness::support;

use std::net::SocketAddr;

use deployer::local::client::RawRequest;
use deployer::local::envoy::{self, Envoy, Listener, ServerTls};
use deployer::local::pki::Pki;
use deployer::local::upstream::RecordingUpstream;
use harness::native_rbac;
use harness::sides::Sides;
use harness::support::Rng;
use serde_json::{json, Value};
use xnat_guard_policy::config::{PeerTrustDomains, PluginConfig};
use xnat_guard_policy::{apply_aliases, tomcat_path, CompiledAlias, MAX_PATH};

const PORTS: [u16; 2] = [8080, 8443];
const IDENTITIES: [&str; 5] = [
    "spiffe://cluster.local/ns/xnat/sa/xnat-web",
    "spiffe://cluster.local/ns/xnat-ingest/sa/uploader",
    "spiffe://cluster.local/ns/reporting/sa/viewer",
    "spiffe://cluster.local/ns/other/sa/default",
    // Another trust domain under the same root (a federated mesh), in a namespace the
    // policies name.
    "spiffe://other.example/ns/reporting/sa/viewer",
];
const METHODS: [&str; 7] = ["GET", "POST", "PUT", "DELETE", "HEAD", "OPTIONS", "PATCH"];
const PRINCIPALS: [&str; 6] = [
    "cluster.local/ns/xnat/sa/xnat-web",
    "cluster.local/ns/xnat-ingest/sa/uploader",
    "cluster.local/ns/reporting/sa/viewer",
    "cluster.local/ns/reporting/*",
    "*/sa/uploader",
    "*",
];
const NAMESPACES: [&str; 5] = ["xnat", "xnat-ingest", "reporting", "report*", "*-ingest"];
const POLICY_PATHS: [&str; 9] = [
    "/data/projects",
    "/data/projects/*",
    "/data/experiments*",
    "*/files",
    "/xapi/*",
    "/data/projects/P1/subjects",
    "/",
    "*",
    "/data/*",
];
const REQUEST_PATHS: [&str; 9] = [
    "/data/projects",
    "/data/projects/P1",
    "/data/projects/P1/subjects",
    "/data/projects/P1/files",
    "/data/experiments/E1",
    "/xapi/users",
    "/",
    "/other",
    "/data/projects?format=json",
];
/// Spellings Tomcat (and XNAT) read as another path: our normalisation's territory.
const TRICKY_PATHS: [&str; 8] = [
    "/data/projects;jsessionid=1/P1",
    "/data//projects",
    "/data/projects/P1/../P2",
    "/REST/projects",
    "/data/archive/projects/P1",
    "/data/%70rojects",
    "/xapi/users/..;/admin",
    "/data/projects%2FP1",
];
const TEAMS: [&str; 3] = ["radiology", "oncology", "onc*"];

fn some<'a>(rng: &mut Rng, pool: &[&'a str], max: usize) -> Vec<&'a str> {
    let n = 1 + rng.below(max);
    let mut out: Vec<&str> = (0..n).map(|_| *rng.pick(pool)).collect();
    out.sort();
    out.dedup();
    out
}

fn random_rule(rng: &mut Rng) -> Value {
    let mut rule = json!({});
    if rng.chance(50) {
        let mut source = json!({});
        match rng.below(4) {
            0 => source["principals"] = json!(some(rng, &PRINCIPALS, 2)),
            1 => source["notPrincipals"] = json!(some(rng, &PRINCIPALS[..3], 2)),
            2 => source["namespaces"] = json!(some(rng, &NAMESPACES, 2)),
            _ => source["notNamespaces"] = json!(some(rng, &NAMESPACES, 2)),
        }
        rule["from"] = json!([{ "source": source }]);
    }
    if rng.chance(70) {
        let mut op = serde_json::Map::new();
        while op.is_empty() {
            if rng.chance(60) {
                let key = if rng.chance(80) { "methods" } else { "notMethods" };
                op.insert(key.into(), json!(some(rng, &METHODS, 3)));
            }
            if rng.chance(40) {
                let key = if rng.chance(75) { "paths" } else { "notPaths" };
                op.insert(key.into(), json!(some(rng, &POLICY_PATHS, 2)));
            }
            if rng.chance(25) {
                let key = if rng.chance(75) { "ports" } else { "notPorts" };
                op.insert(key.into(), json!([*rng.pick(&["8080", "8443"])]));
            }
        }
        rule["to"] = json!([{ "operation": op }]);
    }
    if rng.chance(20) {
        let key = if rng.chance(70) { "values" } else { "notValues" };
        rule["when"] = json!([{ "key": "request.headers[x-team]", key: some(rng, &TEAMS, 2) }]);
    }
    rule
}

fn random_config(rng: &mut Rng, index: usize) -> PluginConfig {
    let count = 1 + rng.below(3);
    let policies: Vec<Value> = (0..count)
        .map(|i| {
            let action = *rng.pick(&["ALLOW", "ALLOW", "DENY", "AUDIT"]);
            let rules: Vec<Value> = (0..1 + rng.below(3)).map(|_| random_rule(rng)).collect();
            json!({ "name": format!("p{index}-{i}"), "namespace": "xnat", "spec": { "action": action, "rules": rules } })
        })
        .collect();
    serde_json::from_value(json!({ "policies": policies })).expect("generated config parses")
}

struct Probe {
    method: &'static str,
    path: &'static str,
    port: u16,
    caller: Option<usize>,
    teams: Vec<&'static str>,
    tricky: bool,
}

fn random_probe(rng: &mut Rng) -> Probe {
    let tricky = rng.chance(25);
    Probe {
        method: METHODS[rng.below(METHODS.len())],
        path: if tricky {
            TRICKY_PATHS[rng.below(TRICKY_PATHS.len())]
        } else {
            REQUEST_PATHS[rng.below(REQUEST_PATHS.len())]
        },
        port: *rng.pick(&PORTS),
        caller: if rng.chance(20) { None } else { Some(rng.below(IDENTITIES.len())) },
        // A repeated header, each value judged on its own as RBAC judges it, and one value that
        // holds a comma (what Envoy's CEL also answers for the repeated one).
        teams: match rng.below(5) {
            0 => vec!["radiology"],
            1 => vec!["oncology"],
            2 => vec!["radiology", "oncology"],
            3 => vec!["oncology,radiology"],
            _ => vec![],
        },
        tricky,
    }
}

/// Whether our filter reads this path differently from Envoy's `url_path`.
fn normalisation_applies(path: &str) -> bool {
    let raw = path.split(['?', '#']).next().unwrap_or_default();
    let aliases: Vec<CompiledAlias> = xnat_guard_policy::config::default_path_aliases()
        .into_iter()
        .map(|a| (a.from.into_bytes().into_boxed_slice(), a.to.into_bytes().into_boxed_slice()))
        .collect();
    let mut buf = [0u8; MAX_PATH];
    match tomcat_path(path.as_bytes(), &mut buf) {
        Ok(n) => {
            let n = apply_aliases(&mut buf, n, &aliases);
            &buf[..n] != raw.as_bytes()
        }
        Err(_) => true,
    }
}

/// The configuration with every widening of what denies turned off: Istio's exact matching.
fn exact_matching(config: &PluginConfig) -> PluginConfig {
    let mut exact = config.clone();
    exact.match_handlers_exactly();
    exact
}

/// The configuration with namespaces and service accounts matched in any trust domain.
fn any_trust_domain(config: &PluginConfig) -> PluginConfig {
    let mut any = config.clone();
    any.peer_trust_domains = PeerTrustDomains::Any;
    any
}

/// Whether our verdict for the probe changes when the widening of what denies is turned off,
/// and the exact verdict is native RBAC's (`native_allowed`): then the difference is by design.
fn widening_applies(config: &PluginConfig, p: &Probe, native_allowed: bool) -> bool {
    differs_by_design(config, &exact_matching(config), p, native_allowed)
}

/// The same for the scoping of namespaces and service accounts to the mesh's trust domains
/// (with the widening turned off too, where both apply to one request).
fn scoping_applies(config: &PluginConfig, p: &Probe, native_allowed: bool) -> bool {
    differs_by_design(config, &any_trust_domain(config), p, native_allowed)
        || differs_by_design(config, &any_trust_domain(&exact_matching(config)), p, native_allowed)
}

/// Whether our verdict under `config` differs from the one under `istio` (settings with
/// Istio's behaviour), and that one is native RBAC's.
fn differs_by_design(config: &PluginConfig, istio: &PluginConfig, p: &Probe, native_allowed: bool) -> bool {
    let verdict = |config: &PluginConfig| {
        let engine = xnat_guard_policy::compile(config).expect("compiled once already");
        let teams: Vec<&[u8]> = p.teams.iter().map(|t| t.as_bytes()).collect();
        let headers: Vec<&[&[u8]]> =
            engine.header_names().iter().map(|n| if &**n == "x-team" { &teams[..] } else { &[][..] }).collect();
        let request = xnat_guard_policy::Request {
            method: p.method.as_bytes(),
            path: p.path.as_bytes(),
            port: Some(p.port),
            peer: p.caller.map(|c| IDENTITIES[c].as_bytes()),
            headers: &headers,
            ..Default::default()
        };
        engine.evaluate(&request).verdict.is_allowed()
    };
    let exact = verdict(istio);
    verdict(config) != exact && exact == native_allowed
}

fn env_usize(name: &str, default: usize) -> usize {
    std::env::var(name).ok().and_then(|v| v.parse().ok()).unwrap_or(default)
}

#[test]
fn random_policies_decide_like_native_rbac() {
    let policies = env_usize("XNAT_GUARD_DIFF_POLICIES", 50);
    let per_policy = env_usize("XNAT_GUARD_DIFF_REQUESTS", 40);
    let seed = std::env::var("XNAT_GUARD_DIFF_SEED").ok().and_then(|v| v.parse().ok()).unwrap_or(0x5eed_c0ffee_u64);
    println!("differential: {policies} policies x {per_policy} requests, seed {seed} (XNAT_GUARD_DIFF_SEED to replay)");
    let mut rng = Rng(seed);
    let envoy_bin = support::envoy_binary();
    let module = support::module();
    let native_module = support::native_module();
    let expression_module = support::expression_module();
    let work = tempfile::tempdir().unwrap();
    let pki = Pki::generate(work.path(), "spiffe://cluster.local/ns/xnat/sa/xnat-web").unwrap();
    let callers: Vec<_> =
        IDENTITIES.iter().enumerate().map(|(i, id)| pki.client(&format!("c{i}"), id).unwrap()).collect();
    let tls = ServerTls { cert: pki.server.cert.clone(), key: pki.server.key.clone(), ca: pki.ca_cert.clone() };
    let upstream = RecordingUpstream::start(SocketAddr::from(([127, 0, 0, 1], 0))).unwrap();

    let (mut compared, mut allowed, mut denied) = (0usize, 0usize, 0usize);
    let (mut disagreements, mut deliberate, mut widened, mut scoped) = (Vec::new(), Vec::new(), Vec::new(), Vec::new());
    let mut tricky_agreeing = 0usize;
    let batch = 10;
    let mut made = 0;
    while made < policies {
        // Generate a batch of configurations both sides accept.
        let mut configs = Vec::new();
        while configs.len() < batch.min(policies - made) {
            let config = random_config(&mut rng, made + configs.len());
            let (Ok(_), Ok(native)) = (xnat_guard_policy::compile(&config), native_rbac::filters(&config)) else {
                continue;
            };
            configs.push((config, native));
        }
        let mut listeners = Vec::new();
        let mut sides = Vec::new();
        for (config, native) in &configs {
            let (native_ip, ours_ip) = (support::loopback_for(&PORTS), support::loopback_for(&PORTS));
            let (expression_ip, dynamic_ip) = (support::loopback_for(&PORTS), support::loopback_for(&PORTS));
            let json = serde_json::to_string(config).unwrap();
            let ours = envoy::wasm_filter(&module, &json);
            // The same engine as an Envoy dynamic module (no VM): it must judge as the Wasm filter.
            let dynamic = envoy::dynamic_module_filter(&native_module, &json);
            // The measurement build reading every fact in one CEL evaluation instead of a host
            // call each: the two must never judge a request differently.
            let expression = envoy::with_vm_environment(
                envoy::wasm_filter(&expression_module, &json),
                &[("XNAT_GUARD_FACT_READS", "expression")],
            );
            for port in PORTS {
                listeners.push(Listener { address: native_ip, port, http_filters: native.clone() });
                listeners.push(Listener { address: ours_ip, port, http_filters: vec![ours.clone()] });
                listeners.push(Listener { address: expression_ip, port, http_filters: vec![expression.clone()] });
                listeners.push(Listener { address: dynamic_ip, port, http_filters: vec![dynamic.clone()] });
            }
            sides.push((native_ip, ours_ip, expression_ip, dynamic_ip));
        }
        let envoy = Envoy::start(&envoy_bin, &envoy::bootstrap(&listeners, &tls, upstream.addr()), work.path())
            .unwrap_or_else(|e| panic!("Envoy refused a batch: {e}"));
        for (k, (config, _)) in configs.iter().enumerate() {
            for i in 0..per_policy {
                let p = random_probe(&mut rng);
                let compare = Sides {
                    sides: vec![
                        ("native", sides[k].0),
                        ("ours", sides[k].1),
                        ("expression", sides[k].2),
                        ("dynamic", sides[k].3),
                    ],
                    ca_der: &pki.ca_der,
                    upstream: &upstream,
                    envoy: &envoy,
                };
                let mut request = RawRequest::new(p.method, p.path);
                for t in &p.teams {
                    request = request.header("x-team", t);
                }
                let outcomes =
                    compare.send(p.port, &request, p.caller.map(|c| &callers[c]), &format!("d{}-{i}", made + k));
                compared += 1;
                if outcomes[1].0 == 200 {
                    allowed += 1;
                } else {
                    denied += 1;
                }
                let line = || {
                    format!(
                        "policy {}: {} {} port {} caller {:?} x-team {:?}: native {:?} vs ours {:?}\n  config: {}",
                        made + k,
                        p.method,
                        p.path,
                        p.port,
                        p.caller.map(|c| IDENTITIES[c]),
                        p.teams,
                        outcomes[0],
                        outcomes[1],
                        serde_json::to_string(config).unwrap()
                    )
                };
                assert_eq!(outcomes[2], outcomes[1], "one CEL evaluation judged otherwise: {}", line());
                assert_eq!(outcomes[3], outcomes[1], "the dynamic module judged otherwise: {}", line());
                // Whatever our filter refuses never reaches the upstream.
                if outcomes[1].0 != 200 {
                    assert_eq!(outcomes[1].2, 0, "a request our filter refused reached the upstream: {}", line());
                }
                if outcomes[0] == outcomes[1] {
                    tricky_agreeing += usize::from(p.tricky);
                } else if p.tricky && normalisation_applies(p.path) {
                    deliberate.push(line());
                } else if widening_applies(config, &p, outcomes[0].0 == 200) {
                    widened.push(line());
                } else if scoping_applies(config, &p, outcomes[0].0 == 200) {
                    scoped.push(line());
                } else {
                    disagreements.push(line());
                }
            }
        }
        drop(envoy);
        made += configs.len();
    }
    println!(
        "compared {compared} requests over {made} policies: {allowed} allowed, {denied} refused by ours; \
         {} differ by design (normalised paths), {tricky_agreeing} normalised paths agreed anyway; \
         {} differ by design (a denying condition widened to what XNAT serves the same way); \
         {} differ by design (a granting namespace or service account scoped to the mesh's trust domains)",
        deliberate.len(),
        widened.len(),
        scoped.len()
    );
    for d in deliberate.iter().take(5) {
        println!("  by design (normalised path): {d}");
    }
    for d in widened.iter().take(5) {
        println!("  by design (widened denial): {d}");
    }
    for d in scoped.iter().take(5) {
        println!("  by design (mesh trust domains): {d}");
    }
    // Only a peer of another trust domain is ever decided differently by the scoping.
    for d in &scoped {
        assert!(d.contains("spiffe://other.example/"), "scoping changed a mesh peer's verdict: {d}");
    }
    assert!(disagreements.is_empty(), "{} disagreement(s):\n{}", disagreements.len(), disagreements.join("\n"));
    assert!(made >= policies && compared >= policies * per_policy);
    assert!(
        allowed * 10 >= compared && denied * 10 >= compared,
        "both outcomes must be exercised: {allowed} / {denied}"
    );
}

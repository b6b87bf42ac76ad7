//! Istio's own golden cases as an oracle. For each `NAME-in.yaml`, one Envoy runs two listener
//! sets on the same ports: one with the native RBAC filters Istio generated (`NAME-out*.yaml`),
//! one with our filter configured from the same policies. Every request goes to both; the
//! status, body and arrival at the upstream must agree. A third set runs the same engine as an
//! Envoy dynamic module (`make native`), which must judge every request as the Wasm filter does.
//!
//! Two honest adjustments, both reported:
//! - Rules that need JWT (`requestPrincipals`, `request.auth.*`) or Envoy filter metadata
//!   (`experimental.*`) are left out of both sides: our filter refuses them by design.
//! - Lower-case placeholder methods (`rule[0]-to[0]-method[1]`) become upper-case tokens on
//!   both sides, since no HTTP request can carry the originals and our filter refuses them.

use harness::support;

use harness::support::Rng;

use std::collections::{BTreeMap, BTreeSet};
use std::net::SocketAddr;
use std::path::Path;

use deployer::local::client::RawRequest;
use deployer::local::envoy::{self, Envoy, Listener, ServerTls};
use deployer::local::pki::{ClientIdentity, Pki};
use deployer::local::upstream::RecordingUpstream;
use harness::native_rbac;
use harness::sides::Sides;
use serde_json::{json, Value};
use xnat_guard_policy::config::PluginConfig;

/// The workload's trust domain and aliases per case, from the golden data's README.
fn trust_domains(case: &str) -> (&'static str, Vec<&'static str>) {
    match case {
        "simple-policy-td-aliases" => ("td1", vec!["cluster.local"]),
        "simple-policy-multiple-td-aliases" => ("td1", vec!["cluster.local", "some-td"]),
        "simple-policy-principal-with-wildcard" => ("td1", vec!["foobar"]),
        "td-aliases-source-principal" => ("new-td", vec!["old-td", "some-trustdomain"]),
        _ => ("cluster.local", vec![]),
    }
}

fn method_token(m: &str) -> String {
    m.to_ascii_uppercase().replace(['[', ']'], "_")
}

fn needs_jwt_or_metadata(rule: &Value) -> bool {
    let sources = rule["from"].as_array().into_iter().flatten();
    let jwt_source = sources
        .into_iter()
        .any(|f| f["source"].get("requestPrincipals").is_some() || f["source"].get("notRequestPrincipals").is_some());
    let when = rule["when"].as_array().into_iter().flatten();
    let jwt_key = when.into_iter().any(|c| {
        let k = c["key"].as_str().unwrap_or_default();
        k.starts_with("request.auth.") || k.starts_with("experimental.")
    });
    jwt_source || jwt_key
}

/// Upper-cases method placeholders in a policy spec.
fn upcase_methods(spec: &mut Value) {
    // `get_mut`, not indexing: `IndexMut` would insert nulls for absent fields.
    let rules = spec.get_mut("rules").and_then(Value::as_array_mut);
    for rule in rules.into_iter().flatten() {
        let tos = rule.get_mut("to").and_then(Value::as_array_mut);
        for to in tos.into_iter().flatten() {
            for field in ["methods", "notMethods"] {
                if let Some(list) = to.get_mut("operation").and_then(|o| o.get_mut(field)).and_then(Value::as_array_mut)
                {
                    for m in list {
                        *m = Value::String(method_token(m.as_str().unwrap_or_default()));
                    }
                }
            }
        }
    }
}

/// The same adjustment inside Envoy's RBAC config: `:method` header matchers.
fn upcase_method_matchers(v: &mut Value) {
    match v {
        Value::Object(map) => {
            let is_method = map.get("name").and_then(Value::as_str) == Some(":method");
            if is_method {
                if let Some(Value::Object(sm)) = map.get_mut("stringMatch") {
                    for key in ["exact", "prefix", "suffix"] {
                        if let Some(Value::String(s)) = sm.get_mut(key) {
                            *s = method_token(s);
                        }
                    }
                }
            }
            map.values_mut().for_each(upcase_method_matchers);
        }
        Value::Array(items) => items.iter_mut().for_each(upcase_method_matchers),
        _ => {}
    }
}

struct Case {
    name: String,
    config: PluginConfig,
    native_filters: Vec<Value>,
    left_out: Vec<String>,
    /// Values mentioned by the policies, to build requests from.
    mentioned: Mentioned,
}

#[derive(Default)]
struct Mentioned {
    principals: BTreeSet<String>,
    namespaces: BTreeSet<String>,
    service_accounts: BTreeSet<String>,
    trust_domains: BTreeSet<String>,
    methods: BTreeSet<String>,
    paths: BTreeSet<String>,
    hosts: BTreeSet<String>,
    ports: BTreeSet<u16>,
    headers: BTreeMap<String, BTreeSet<String>>,
}

fn strings(v: &Value) -> Vec<String> {
    v.as_array().into_iter().flatten().filter_map(|s| s.as_str().map(str::to_string)).collect()
}

fn collect(spec: &Value, m: &mut Mentioned) {
    for rule in spec["rules"].as_array().into_iter().flatten() {
        for f in rule["from"].as_array().into_iter().flatten() {
            let s = &f["source"];
            m.principals.extend(strings(&s["principals"]).into_iter().chain(strings(&s["notPrincipals"])));
            m.namespaces.extend(strings(&s["namespaces"]).into_iter().chain(strings(&s["notNamespaces"])));
            m.service_accounts
                .extend(strings(&s["serviceAccounts"]).into_iter().chain(strings(&s["notServiceAccounts"])));
            m.trust_domains.extend(strings(&s["trustDomains"]).into_iter().chain(strings(&s["notTrustDomains"])));
        }
        for t in rule["to"].as_array().into_iter().flatten() {
            let o = &t["operation"];
            m.methods.extend(strings(&o["methods"]).into_iter().chain(strings(&o["notMethods"])));
            m.paths.extend(strings(&o["paths"]).into_iter().chain(strings(&o["notPaths"])));
            m.hosts.extend(strings(&o["hosts"]).into_iter().chain(strings(&o["notHosts"])));
            m.ports.extend(
                strings(&o["ports"]).into_iter().chain(strings(&o["notPorts"])).filter_map(|p| p.parse::<u16>().ok()),
            );
        }
        for c in rule["when"].as_array().into_iter().flatten() {
            let key = c["key"].as_str().unwrap_or_default();
            let values: Vec<String> = strings(&c["values"]).into_iter().chain(strings(&c["notValues"])).collect();
            match key {
                "source.principal" => m.principals.extend(values),
                "source.namespace" => m.namespaces.extend(values),
                "destination.port" => m.ports.extend(values.iter().filter_map(|p| p.parse::<u16>().ok())),
                k if k.starts_with("request.headers[") => {
                    let name = k.trim_start_matches("request.headers[").trim_end_matches(']').to_string();
                    m.headers.entry(name).or_default().extend(values);
                }
                _ => {}
            }
        }
    }
}

fn load_case(dir: &Path, name: &str) -> Case {
    let text = std::fs::read_to_string(dir.join(format!("{name}-in.yaml"))).unwrap();
    let objects = deployer::resources::parse_documents(&text, name).unwrap();
    let (td, aliases) = trust_domains(name);
    let mut config = PluginConfig {
        trust_domain: td.into(),
        trust_domain_aliases: aliases.iter().map(|s| s.to_string()).collect(),
        ..Default::default()
    };
    let mut left_out = Vec::new();
    let mut dropped_keys = BTreeSet::new();
    let mut mentioned = Mentioned::default();
    for o in objects.iter().filter(|o| o.kind == "AuthorizationPolicy") {
        let mut spec = o.spec.clone();
        if let Some(rules) = spec.get_mut("rules").and_then(Value::as_array_mut) {
            let mut kept = Vec::new();
            for (i, rule) in rules.drain(..).enumerate() {
                if needs_jwt_or_metadata(&rule) {
                    left_out.push(format!("{}.rules[{i}] (JWT or metadata)", o.name));
                    dropped_keys.insert(format!("ns[{}]-policy[{}]-rule[{i}]", o.namespace, o.name));
                } else {
                    kept.push(rule);
                }
            }
            *rules = kept;
        }
        upcase_methods(&mut spec);
        collect(&spec, &mut mentioned);
        let dry_run = o.annotations.get("istio.io/dry-run").map(String::as_str) == Some("true");
        config.policies.push(xnat_guard_policy::config::PolicyEntry {
            name: o.name.clone(),
            namespace: o.namespace.clone(),
            dry_run,
            spec: serde_json::from_value(spec).unwrap_or_else(|e| panic!("{name}: {e}")),
        });
    }
    let mut native_filters = Vec::new();
    let outs: Vec<String> = if dir.join(format!("{name}-out.yaml")).exists() {
        vec![format!("{name}-out.yaml")]
    } else {
        vec![format!("{name}-out1.yaml"), format!("{name}-out2.yaml")]
    };
    for out in outs {
        let text = std::fs::read_to_string(dir.join(&out)).unwrap_or_else(|e| panic!("{out}: {e}"));
        let mut filter: Value = serde_yaml::from_str(&text).unwrap();
        for section in ["rules", "shadowRules"] {
            let section = filter.get_mut("typedConfig").and_then(|t| t.get_mut(section));
            if let Some(Value::Object(policies)) = section.and_then(|s| s.get_mut("policies")) {
                policies.retain(|k, _| !dropped_keys.contains(k));
            }
        }
        upcase_method_matchers(&mut filter);
        native_filters.push(filter);
    }
    Case { name: name.to_string(), config, native_filters, left_out, mentioned }
}

/// A small deterministic generator, so a failure repeats.
/// Turns a pattern into a concrete value that matches it (and `alt` variants that may not).
fn instances(pattern: &str, filler: &str) -> Vec<String> {
    let concrete = pattern.replace("{**}", "a/b").replace("{*}", "seg").replace('*', filler);
    vec![concrete, pattern.replace('*', "")]
}

fn identities(case: &Case) -> Vec<String> {
    let m = &case.mentioned;
    let mut tds: Vec<String> = vec![case.config.trust_domain.clone()];
    tds.extend(case.config.trust_domain_aliases.iter().cloned());
    tds.push("other-td".into());
    let mut ids = BTreeSet::new();
    ids.insert("spiffe://cluster.local/ns/foo/sa/default".to_string());
    for td in &tds {
        ids.insert(format!("spiffe://{td}/ns/foo/sa/sleep"));
    }
    for p in &m.principals {
        for inst in instances(p, "x") {
            if inst.is_empty() {
                continue;
            }
            ids.insert(format!("spiffe://{inst}"));
            if let Some((_, rest)) = inst.split_once("/ns/") {
                for td in &tds {
                    ids.insert(format!("spiffe://{td}/ns/{rest}"));
                }
            }
        }
    }
    for n in &m.namespaces {
        for inst in instances(n, "x").into_iter().filter(|s| !s.is_empty()) {
            ids.insert(format!("spiffe://{}/ns/{inst}/sa/default", tds[0]));
        }
    }
    for sa in &m.service_accounts {
        let (ns, name) = sa.split_once('/').unwrap_or(("foo", sa));
        ids.insert(format!("spiffe://{}/ns/{ns}/sa/{name}", tds[0]));
    }
    for td in &m.trust_domains {
        for inst in instances(td, "x").into_iter().filter(|s| !s.is_empty()) {
            ids.insert(format!("spiffe://{inst}/ns/foo/sa/default"));
        }
    }
    // rcgen needs URIs it can encode; the odd characters of the placeholders are fine in IA5.
    ids.into_iter().filter(|id| id.is_ascii() && !id.contains(' ')).collect()
}

struct Probe {
    method: String,
    path: String,
    host: String,
    port: u16,
    caller: Option<usize>,
    header: Option<(String, String)>,
}

fn probes(case: &Case, ports: &[u16], callers: usize, count: usize) -> Vec<Probe> {
    let m = &case.mentioned;
    let mut methods: Vec<String> = vec!["GET".into(), "POST".into()];
    for v in &m.methods {
        methods.extend(instances(v, "X").into_iter().filter(|s| !s.is_empty()));
    }
    let mut paths: Vec<String> = vec!["/".into(), "/other".into()];
    for v in &m.paths {
        paths.extend(instances(v, "x").into_iter().map(|p| if p.starts_with('/') { p } else { format!("/{p}") }));
    }
    let mut hosts: Vec<String> = vec!["httpbin.foo".into()];
    for v in &m.hosts {
        hosts.extend(instances(v, "x").into_iter().filter(|s| !s.is_empty()));
    }
    let mut headers: Vec<Option<(String, String)>> = vec![None];
    for (name, values) in &m.headers {
        for v in values {
            headers.extend(instances(v, "x").into_iter().map(|i| Some((name.clone(), i))));
        }
    }
    let mut rng = Rng(0x9e37_79b9_7f4a_7c15 ^ case.name.len() as u64);
    let callers: Vec<Option<usize>> = std::iter::once(None).chain((0..callers).map(Some)).collect();
    let mut out = Vec::new();
    // Every caller once with a plain request, then random combinations.
    for &caller in &callers {
        out.push(Probe {
            method: "GET".into(),
            path: "/".into(),
            host: hosts[0].clone(),
            port: ports[0],
            caller,
            header: None,
        });
    }
    while out.len() < count {
        out.push(Probe {
            method: rng.pick(&methods).clone(),
            path: rng.pick(&paths).clone(),
            host: rng.pick(&hosts).clone(),
            port: *rng.pick(ports),
            caller: *rng.pick(&callers),
            header: rng.pick(&headers).clone(),
        });
    }
    out
}

#[test]
fn our_filter_decides_like_istios_native_rbac_on_istios_golden_cases() {
    let dir = support::shared_istio().join("authz-golden");
    let mut names: Vec<String> = std::fs::read_dir(&dir)
        .unwrap()
        .filter_map(|e| e.ok()?.file_name().to_str()?.strip_suffix("-in.yaml").map(str::to_string))
        .collect();
    names.sort();
    assert!(names.len() >= 18, "expected Istio's golden cases in {}", dir.display());
    let envoy_bin = support::envoy_binary();
    let module = support::module();
    let native_module = support::native_module();
    let (mut compared_cases, mut compared_requests, mut disagreements) = (0, 0, Vec::new());
    let (mut total_allowed, mut total_denied) = (0, 0);
    let (mut translation_disagreements, mut translation_checked) = (Vec::new(), Vec::new());
    let mut report = Vec::new();
    for name in names {
        if name == "allow-host-before-111" {
            report.push(format!("{name}: skipped (generated for proxies older than Istio 1.11)"));
            continue;
        }
        let case = load_case(&dir, &name);
        let mut ports: Vec<u16> = case.mentioned.ports.iter().copied().filter(|p| *p >= 1024).collect();
        ports.insert(0, 18080);
        ports.truncate(6);
        let work = tempfile::tempdir().unwrap();
        let pki = Pki::generate(work.path(), "spiffe://cluster.local/ns/foo/sa/httpbin").unwrap();
        let ids = identities(&case);
        let callers: Vec<ClientIdentity> =
            ids.iter().enumerate().map(|(i, id)| pki.client(&format!("c{i}"), id).unwrap()).collect();
        let upstream = RecordingUpstream::start(SocketAddr::from(([127, 0, 0, 1], 0))).unwrap();
        let native_ip = support::loopback_for(&ports);
        let ours_ip = support::loopback_for(&ports);
        let dynamic_ip = support::loopback_for(&ports);
        // Our reference translation (harness::native_rbac), checked against Istio's output.
        let translated = native_rbac::filters(&case.config).ok();
        let translated_ip = support::loopback_for(&ports);
        let config = serde_json::to_string(&case.config).unwrap();
        let mut listeners = Vec::new();
        for &port in &ports {
            listeners.push(Listener {
                address: native_ip,
                port,
                http_filters: case.native_filters.iter().map(to_snake_typed).collect(),
            });
            listeners.push(Listener {
                address: ours_ip,
                port,
                http_filters: vec![envoy::wasm_filter(&module, &config)],
            });
            listeners.push(Listener {
                address: dynamic_ip,
                port,
                http_filters: vec![envoy::dynamic_module_filter(&native_module, &config)],
            });
            if let Some(filters) = &translated {
                listeners.push(Listener { address: translated_ip, port, http_filters: filters.clone() });
            }
        }
        let tls = ServerTls { cert: pki.server.cert.clone(), key: pki.server.key.clone(), ca: pki.ca_cert.clone() };
        let envoy = Envoy::start(&envoy_bin, &envoy::bootstrap(&listeners, &tls, upstream.addr()), work.path())
            .unwrap_or_else(|e| panic!("{name}: Envoy refused the case: {e}"));
        let probes = probes(&case, &ports, callers.len(), 120);
        let mut compare = Sides {
            sides: vec![("native", native_ip), ("ours", ours_ip), ("dynamic", dynamic_ip)],
            ca_der: &pki.ca_der,
            upstream: &upstream,
            envoy: &envoy,
        };
        if translated.is_some() {
            compare.sides.push(("translated", translated_ip));
        }
        let mut allowed = 0;
        for (i, p) in probes.iter().enumerate() {
            let identity = p.caller.map(|c| &callers[c]);
            let mut request = RawRequest::new(&p.method, &p.path).host(&p.host);
            if let Some((k, v)) = &p.header {
                request = request.header(k, v);
            }
            let outcomes = compare.send(p.port, &request, identity, &format!("{name}-{i}"));
            compared_requests += 1;
            if outcomes[1].0 == 200 {
                allowed += 1;
            }
            // The engine as a dynamic module judges as the Wasm filter, whatever RBAC does.
            assert_eq!(
                outcomes[2],
                outcomes[1],
                "{name}: {} {} caller={:?}: the dynamic module judged otherwise than the Wasm filter",
                p.method,
                p.path,
                identity.map(|c| &c.spiffe_id)
            );
            if outcomes.len() == 4 && outcomes[0] != outcomes[3] {
                translation_disagreements.push(format!(
                    "{name}: {} {} caller={:?}: native {:?} vs translated {:?}",
                    p.method,
                    p.path,
                    identity.map(|c| &c.spiffe_id),
                    outcomes[0],
                    outcomes[3]
                ));
            }
            if outcomes[0] != outcomes[1] {
                disagreements.push(format!(
                    "{name}: {} {} host={} port={} caller={:?} header={:?}: native {:?} vs ours {:?}",
                    p.method,
                    p.path,
                    p.host,
                    p.port,
                    identity.map(|c| &c.spiffe_id),
                    p.header,
                    outcomes[0],
                    outcomes[1]
                ));
            }
        }
        drop(compare);
        drop(envoy);
        compared_cases += 1;
        if translated.is_some() {
            translation_checked.push(name.clone());
        }
        let adjusted =
            if case.left_out.is_empty() { String::new() } else { format!("; left out {}", case.left_out.join(", ")) };
        report.push(format!(
            "{name}: {} requests ({allowed} allowed), {} identities{adjusted}",
            probes.len(),
            callers.len()
        ));
        total_allowed += allowed;
        total_denied += probes.len() - allowed;
    }
    println!(
        "Istio golden cases compared: {compared_cases}, requests compared: {compared_requests} \
         ({total_allowed} allowed, {total_denied} denied; each through native RBAC and our filter)"
    );
    for line in &report {
        println!("  {line}");
    }
    println!(
        "Reference translation (harness::native_rbac) checked on {} cases: {}",
        translation_checked.len(),
        translation_checked.join(", ")
    );
    assert!(
        translation_disagreements.is_empty(),
        "the reference translation disagrees with Istio's output:\n{}",
        translation_disagreements.join("\n")
    );
    assert!(
        translation_checked.len() >= 12,
        "the reference translation covered only {} cases",
        translation_checked.len()
    );
    assert!(disagreements.is_empty(), "{} disagreement(s):\n{}", disagreements.len(), disagreements.join("\n"));
    assert!(total_allowed >= 300 && total_denied >= 300, "the requests do not exercise both outcomes");
    assert!(
        compared_cases >= 17 && compared_requests >= 2000,
        "too little compared: {compared_cases} cases, {compared_requests} requests"
    );
}

/// Golden files use the proto3 JSON names (`typedConfig`); Envoy accepts them as they are, so
/// this only renames the entry's own key for readability of the generated bootstrap.
fn to_snake_typed(filter: &Value) -> Value {
    json!({"name": filter["name"], "typed_config": filter["typedConfig"]})
}

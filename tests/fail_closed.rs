//! Fail closed, in a real Envoy. The filter's configuration arrives the way Istio delivers a
//! WasmPlugin: as an extension config (ECDS), here from a watched file. An update that does not
//! compile is rejected and the previous policy keeps enforcing; a filter whose first
//! configuration does not compile never lets a request through.

use harness::support;

use std::net::SocketAddr;
use std::path::Path;
use std::time::{Duration, Instant};

use deployer::local::client::{self, RawRequest};
use deployer::local::envoy::{Envoy, Listener, ServerTls};
use deployer::local::pki::Pki;
use deployer::local::upstream::RecordingUpstream;
use harness::envoy::{ecds_filter, publish_ecds};
use serde_json::json;

fn methods_config(methods: &[&str]) -> String {
    json!({"policies": [{"name": "xnat-all", "namespace": "xnat",
        "spec": {"rules": [{"to": [{"operation": {"methods": methods}}]}]}}]})
    .to_string()
}

/// `methods_config` named by a `configDigest`, as the deployer ships it.
fn digested_config(methods: &[&str], digest: &str) -> String {
    let mut config: serde_json::Value = serde_json::from_str(&methods_config(methods)).unwrap();
    config["configDigest"] = json!(digest);
    config.to_string()
}

/// The filter's configuration gauge in the sidecar's Prometheus text, as a rollout reads it.
fn enforced_digest(envoy: &Envoy) -> Option<u64> {
    let (_, text) = envoy.admin_get("/stats/prometheus").ok()?;
    deployer::inspect::metrics::enforced_config_digest(&text)
}

fn publish(dir: &Path, version: u64, module: &Path, config: &str) {
    publish_ecds(dir, version, module, config).expect("write the ECDS file");
}

struct Setup {
    envoy: Result<Envoy, String>,
    upstream: RecordingUpstream,
    target: SocketAddr,
    dir: tempfile::TempDir,
}

fn start(first_config: &str) -> Setup {
    let dir = tempfile::tempdir().unwrap();
    let ecds = dir.path().join("ecds");
    std::fs::create_dir(&ecds).unwrap();
    publish(&ecds, 1, &support::module(), first_config);
    let pki = Pki::generate(dir.path(), "spiffe://cluster.local/ns/xnat/sa/xnat-web").unwrap();
    let tls = ServerTls { cert: pki.server.cert.clone(), key: pki.server.key.clone(), ca: pki.ca_cert.clone() };
    let upstream = RecordingUpstream::start(SocketAddr::from(([127, 0, 0, 1], 0))).unwrap();
    let address = support::loopback_for(&[8080]);
    let listeners = [Listener { address, port: 8080, http_filters: vec![ecds_filter(&ecds)] }];
    let envoy = Envoy::start(
        &support::envoy_binary(),
        &deployer::local::envoy::bootstrap(&listeners, &tls, upstream.addr()),
        dir.path(),
    )
    .map_err(|e| e.to_string());
    Setup { envoy, upstream, target: SocketAddr::new(address, 8080), dir }
}

fn status(setup: &Setup, method: &str, tag: &str) -> Option<u16> {
    let request = RawRequest::new(method, "/data/projects").header("x-request-tag", tag);
    client::send(setup.target, &request, None, &[]).ok().map(|r| r.status)
}

fn wait_for_counter(envoy: &Envoy, name: &str, at_least: u64) {
    let deadline = Instant::now() + Duration::from_secs(10);
    loop {
        let value = envoy.counter(name).unwrap_or(0);
        if value >= at_least {
            return;
        }
        assert!(Instant::now() < deadline, "{name} stayed at {value}\n{}", envoy.log_tail(30));
        std::thread::sleep(Duration::from_millis(50));
    }
}

#[test]
fn a_bad_update_is_rejected_and_the_previous_policy_keeps_enforcing() {
    let setup = start(&digested_config(&["GET", "HEAD"], "a1"));
    let envoy = setup.envoy.as_ref().expect("Envoy starts with a good configuration");
    let ecds = setup.dir.path().join("ecds");
    assert_eq!(status(&setup, "GET", "get-1"), Some(200));
    assert_eq!(status(&setup, "POST", "post-1"), Some(403));
    assert_eq!(enforced_digest(envoy), Some(0xa1), "the sidecar says which configuration it enforces");

    // An update that does not compile (a misspelt field), as a hand edit would send it: Envoy
    // must reject it...
    publish(
        &ecds,
        2,
        &support::module(),
        r#"{"configDigest": "b2", "policies": [{"name": "x", "namespace": "xnat", "spec": {"rulez": []}}]}"#,
    );
    wait_for_counter(envoy, "extension_config_discovery.http_filter.xnat-guard.config_fail", 1);
    assert_eq!(enforced_digest(envoy), Some(0xa1), "a refused update never shows as enforced");
    // ...and the previous policy still decides: POST stays denied, GET served.
    assert_eq!(status(&setup, "POST", "post-2"), Some(403));
    assert_eq!(status(&setup, "GET", "get-2"), Some(200));
    // Nothing could be compiled from it (the deployer would have named the field), so the filter
    // refuses it for lacking the compiled engine.
    assert!(
        envoy.log_tail(200).contains("configuration refused: compiled: missing"),
        "the refusal says why:\n{}",
        envoy.log_tail(40)
    );

    // A good update takes effect.
    publish(&ecds, 3, &support::module(), &digested_config(&["GET", "HEAD", "POST"], "c3"));
    wait_for_counter(envoy, "extension_config_discovery.http_filter.xnat-guard.config_reload", 2);
    assert_eq!(status(&setup, "POST", "post-3"), Some(200));
    assert_eq!(enforced_digest(envoy), Some(0xc3), "the new configuration shows once in force");
    assert_eq!(setup.upstream.tagged("post-1").len() + setup.upstream.tagged("post-2").len(), 0);
    assert_eq!(setup.upstream.tagged("post-3").len(), 1);
}

#[test]
fn a_filter_that_cannot_start_never_serves_unprotected_traffic() {
    let setup = start(r#"{"policies": "not a list"}"#);
    // Either Envoy never brings the listener up, or it answers without forwarding: no request
    // may reach the upstream, and none may succeed.
    for i in 0..5 {
        let tag = format!("unprotected-{i}");
        let got = status(&setup, "GET", &tag);
        println!(
            "bad first configuration: Envoy {}, request {i} -> {got:?}",
            if setup.envoy.is_ok() { "up" } else { "refused to start" }
        );
        assert_ne!(got, Some(200), "a request was served without the filter");
        assert_eq!(setup.upstream.tagged(&tag).len(), 0, "a request reached the upstream unprotected");
    }
    if let Ok(envoy) = &setup.envoy {
        let fails = envoy.counter("extension_config_discovery.http_filter.xnat-guard.config_fail").unwrap_or(0);
        assert!(fails >= 1, "the bad first configuration was not rejected:\n{}", envoy.log_tail(30));
    }
}

/// Starts Envoy with `filter` alone, which must refuse its configuration: a request is neither
/// served nor forwarded. Returns Envoy's log (or why it did not start), for the refusal.
fn refused_by_envoy(filter: serde_json::Value, tag: &str) -> String {
    let dir = tempfile::tempdir().unwrap();
    let pki = Pki::generate(dir.path(), "spiffe://cluster.local/ns/xnat/sa/xnat-web").unwrap();
    let tls = ServerTls { cert: pki.server.cert.clone(), key: pki.server.key.clone(), ca: pki.ca_cert.clone() };
    let upstream = RecordingUpstream::start(SocketAddr::from(([127, 0, 0, 1], 0))).unwrap();
    let address = support::loopback_for(&[8080]);
    let listeners = [Listener { address, port: 8080, http_filters: vec![filter] }];
    let envoy = Envoy::start(
        &support::envoy_binary(),
        &deployer::local::envoy::bootstrap(&listeners, &tls, upstream.addr()),
        dir.path(),
    );
    let log = match &envoy {
        Ok(envoy) => envoy.log_tail(200),
        Err(e) => e.to_string(),
    };
    let request = RawRequest::new("GET", "/data/projects").header("x-request-tag", tag);
    let got = client::send(SocketAddr::new(address, 8080), &request, None, &[]).ok().map(|r| r.status);
    assert_ne!(got, Some(200), "a request was served by a filter whose configuration was refused");
    assert_eq!(upstream.tagged(tag).len(), 0, "a request reached the upstream");
    log
}

/// A VM environment that asks for fact reads the filter does not know refuses the
/// configuration, saying what it expected, rather than picking a way to read requests; in the
/// shipped module and in the measurement build alike.
#[test]
fn an_unknown_fact_read_setting_refuses_the_configuration() {
    for (module, tag) in [(support::module(), "unknown-reads"), (support::expression_module(), "unknown-reads-m")] {
        let filter = deployer::local::envoy::with_vm_environment(
            deployer::local::envoy::wasm_filter(&module, &methods_config(&["GET"])),
            &[("XNAT_GUARD_FACT_READS", "sometimes")],
        );
        let log = refused_by_envoy(filter, tag);
        assert!(
            log.contains(r#"XNAT_GUARD_FACT_READS="sometimes": expected "calls" or "expression""#),
            "{}: the refusal says what was expected:\n{log}",
            module.display()
        );
    }
}

/// The shipped module has no CEL reads: asked for them, it refuses the configuration and says
/// which build has them, rather than reading requests another way than it was told.
#[test]
fn the_shipped_module_refuses_the_expression_reads_it_leaves_out() {
    let filter = deployer::local::envoy::with_vm_environment(
        deployer::local::envoy::wasm_filter(&support::module(), &methods_config(&["GET"])),
        &[("XNAT_GUARD_FACT_READS", "expression")],
    );
    let log = refused_by_envoy(filter, "expression-in-shipped");
    assert!(
        log.contains("this module reads facts one host call each")
            && log.contains("only in the measurement build (`make wasm-expression`)"),
        "the refusal says where the expression reads are:\n{log}"
    );
}

/// The Wasm filter enforces only the engine the deployer compiled (`pluginConfig.compiled`):
/// valid policies without it, and compiled bytes altered after the deployer wrote them, are
/// refused, and nothing gets through.
#[test]
fn policies_without_their_compiled_engine_or_with_it_altered_are_refused() {
    let with_config = |config: &str| {
        let mut filter = deployer::local::envoy::wasm_filter(&support::module(), &methods_config(&["GET"]));
        filter["typed_config"]["config"]["configuration"]["value"] = json!(config);
        filter
    };
    let log = refused_by_envoy(with_config(&methods_config(&["GET"])), "not-compiled");
    assert!(
        log.contains(
            "configuration refused: compiled: missing: this module enforces only configurations the deployer compiled"
        ),
        "the refusal says what is missing:\n{log}"
    );

    let compiled = deployer::local::envoy::with_compiled(&methods_config(&["GET"]));
    let mut document: serde_json::Value = serde_json::from_str(&compiled).unwrap();
    let text = document["compiled"].as_str().unwrap().to_string();
    // One base64 character in the middle changed: six bits of the model.
    let middle = text.len() / 2;
    let swapped = if &text[middle..=middle] == "A" { "B" } else { "A" };
    document["compiled"] = json!(format!("{}{swapped}{}", &text[..middle], &text[middle + 1..]));
    let log = refused_by_envoy(with_config(&document.to_string()), "altered");
    assert!(log.contains("configuration refused: compiled: the compiled configuration is corrupt"), "{log}");
}

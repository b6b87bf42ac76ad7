//! A rollout proves its configuration is in force in every selected pod: each sidecar's filter
//! shows this rollout's digest, read through the pod proxy as the API server serves it, and a
//! pod that does not is named with why (a wrong --sha256, a refused configuration).

mod mock_api;

use deployer::apply::{enforced, ApplyError};
use mock_api::{options, run, Step};

const PODS: &str = "/api/v1/namespaces/xnat/pods";
const DIGEST: u64 = 0x1a2b3c4d5e6f7;

fn sidecar_metrics(pod: &str, text: &str) -> Step {
    Step::get(&format!("{PODS}/{pod}:15090/proxy/stats/prometheus")).reply_text(text)
}

fn gauge(value: u64) -> String {
    format!("# TYPE xnat_guard_config_digest gauge\nxnat_guard_config_digest {value}\nxnat_guard_allowed 4\n")
}

async fn wait(script: Vec<Step>, pods: &[&str]) -> Result<(), ApplyError> {
    let pods: Vec<String> = pods.iter().map(|p| p.to_string()).collect();
    run(
        script,
        options(),
        |cluster| async move { enforced::wait_until_enforced(&cluster, "xnat", &pods, DIGEST).await },
    )
    .await
}

#[tokio::test]
async fn every_pod_showing_this_digest_is_proof() {
    let script =
        vec![sidecar_metrics("xnat-xnat-web-0", &gauge(DIGEST)), sidecar_metrics("xnat-xnat-web-1", &gauge(DIGEST))];
    wait(script, &["xnat-xnat-web-0", "xnat-xnat-web-1"]).await.unwrap();
}

#[tokio::test]
async fn a_pod_still_on_the_previous_configuration_is_waited_for() {
    let script = vec![
        sidecar_metrics("xnat-xnat-web-0", &gauge(0x99)),
        sidecar_metrics("xnat-xnat-web-0", &gauge(0x99)),
        sidecar_metrics("xnat-xnat-web-0", &gauge(DIGEST)),
    ];
    wait(script, &["xnat-xnat-web-0"]).await.unwrap();
}

#[tokio::test]
async fn a_wrong_module_digest_names_the_pod_the_failed_fetch_and_the_log_line() {
    let log = "2026-12-01T10:00:00.100Z\tinfo\twasm\tfetching image registry.example/xnat-guard\n\
               2026-12-01T10:00:00.200Z\terror\twasm\tfailed to fetch Wasm module: module downloaded has checksum 4f6d... which does not match: ab12...\n";
    let script = vec![
        // The old configuration keeps enforcing (FAIL_CLOSE would deny; Istio keeps the last
        // good filter on a NACK), so the gauge shows the previous digest throughout.
        sidecar_metrics("xnat-xnat-web-0", &gauge(0x99)).repeated(),
        Step::get(&format!("{PODS}/xnat-xnat-web-0:15020/proxy/stats/prometheus"))
            .reply_text("istio_agent_wasm_remote_fetch_count{result=\"checksum_mismatched\"} 1\n"),
        Step::get(&format!("{PODS}/xnat-xnat-web-0/log")).query("container=istio-proxy").reply_text(log),
    ];
    let error = wait(script, &["xnat-xnat-web-0"]).await.unwrap_err().to_string();
    assert!(error.contains("the filter in pod xnat-xnat-web-0 does not enforce this configuration (1a2b3c4d5e6f7): still enforcing another configuration (digest 99)"), "{error}");
    assert!(error.contains("checksum_mismatched=1") && error.contains("--sha256"), "{error}");
    assert!(
        error.contains("the sidecar logged: 2026-12-01T10:00:00.200Z\terror\twasm\tfailed to fetch Wasm module"),
        "{error}"
    );
}

#[tokio::test]
async fn a_refused_configuration_is_quoted_from_the_sidecars_log() {
    let log = "2026-12-01T10:00:01Z\tcritical\twasm\twasm log xnat-guard: configuration refused: configDigest: 'zz' is not 1 to 13 hex digits\n";
    let script = vec![
        sidecar_metrics("xnat-xnat-web-0", "xnat_guard_allowed 0\n").repeated(),
        Step::get(&format!("{PODS}/xnat-xnat-web-0:15020/proxy/stats/prometheus"))
            .reply_text("istio_agent_wasm_remote_fetch_count{result=\"success\"} 1\n"),
        Step::get(&format!("{PODS}/xnat-xnat-web-0/log")).reply_text(log),
    ];
    let error = wait(script, &["xnat-xnat-web-0"]).await.unwrap_err().to_string();
    assert!(error.contains("the filter has not reported a configuration"), "{error}");
    assert!(error.contains("configuration refused: configDigest"), "{error}");
    assert!(!error.contains("fetches failed"), "{error}");
}

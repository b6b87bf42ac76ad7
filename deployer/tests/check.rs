//! `deployer check` never guesses silently: it says which workload it judged, which policies
//! it skipped and why, validates every policy given, reads every fact a policy can, names the
//! PeerAuthentication that set the mTLS mode, and agrees with `render` on the same files. The
//! fixtures are in `tests/fixtures/check/`, after Istio's documentation tasks.

use std::path::Path;
use std::process::{Command, Stdio};

use serde_json::Value;
use xnat_guard_policy::{from_json, Request};

fn fixture(name: &str) -> String {
    Path::new(env!("CARGO_MANIFEST_DIR")).join("tests/fixtures/check").join(name).display().to_string()
}

fn runbook(name: &str) -> String {
    let root = Path::new(env!("CARGO_MANIFEST_DIR")).parent().expect("the workspace").to_path_buf();
    root.join("examples/runbook").join(name).display().to_string()
}

/// `deployer ARGS`: its exit status, stdout and stderr.
fn deployer(args: &[&str]) -> (i32, String, String) {
    let out = Command::new(env!("CARGO_BIN_EXE_deployer")).args(args).output().expect("the deployer runs");
    (
        out.status.code().unwrap_or(-1),
        String::from_utf8_lossy(&out.stdout).into_owned(),
        String::from_utf8_lossy(&out.stderr).into_owned(),
    )
}

/// `deployer check -o json ARGS`: the exit status and the decision.
fn check_json(args: &[&str]) -> (i32, Value) {
    let mut all = vec!["check", "-o", "json"];
    all.extend_from_slice(args);
    let (status, stdout, stderr) = deployer(&all);
    let value = serde_json::from_str(&stdout).unwrap_or_else(|e| panic!("not JSON ({e}): {stdout}\nstderr: {stderr}"));
    (status, value)
}

#[test]
fn an_ingress_gateway_policy_in_the_root_namespace_is_judged_for_the_gateway() {
    let policy = fixture("ingress-gateway.yaml");
    let (status, stdout, _) =
        deployer(&["check", "--policy", &policy, "--plaintext", "--source-ip", "9.9.9.9", "--path", "/productpage"]);
    assert_eq!(status, 1, "Istio denies an address outside the gateway's ipBlocks:\n{stdout}");
    assert!(stdout.contains("workload: namespace istio-system labels {app=istio-ingressgateway}"), "{stdout}");
    let (status, _, _) = deployer(&["check", "--policy", &policy, "--plaintext", "--source-ip", "5.6.7.8"]);
    assert_eq!(status, 0, "an address in 5.6.7.0/24 is let through");
}

#[test]
fn every_policy_skipped_is_listed_with_the_reason() {
    let (status, stdout, _) = deployer(&["check", "--policy", &fixture("mixed.yaml"), "-n", "xnat", "--plaintext"]);
    assert_eq!(status, 0, "xnat-all allows GET:\n{stdout}");
    assert!(stdout.contains("workload: namespace xnat labels {app=xnat-web}"), "{stdout}");
    assert!(stdout.contains("inferred from the policies' selectors"), "{stdout}");
    assert!(
        stdout.contains("skipped AuthorizationPolicy reporting/deny-all")
            && stdout.contains("it is in namespace reporting, and applies only there"),
        "{stdout}"
    );
    assert!(
        stdout.contains("skipped AuthorizationPolicy istio-system/gateway-deny-get")
            && stdout
                .contains("its selector needs app=istio-ingressgateway, and the workload's labels are {app=xnat-web}"),
        "{stdout}"
    );
    assert!(stdout.contains("enforcing AuthorizationPolicy istio-system/no-post-trial"), "{stdout}");

    // Naming the other workload with --label judges it instead, and says so.
    let (status, stdout, _) = deployer(&[
        "check",
        "--policy",
        &fixture("mixed.yaml"),
        "-n",
        "istio-system",
        "--label",
        "app=istio-ingressgateway",
        "--plaintext",
    ]);
    assert_eq!(status, 1, "gateway-deny-get denies GET at the gateway:\n{stdout}");
    assert!(stdout.contains("labels {app=istio-ingressgateway} (as given)"), "{stdout}");
    assert!(stdout.contains("skipped AuthorizationPolicy xnat/xnat-all"), "{stdout}");
}

#[test]
fn a_dry_run_policy_is_reported_when_the_namespace_is_named() {
    let (status, value) =
        check_json(&["--policy", &fixture("mixed.yaml"), "-n", "xnat", "--plaintext", "--method", "POST"]);
    assert_eq!(status, 0, "the dry-run DENY is not enforced: {value:#}");
    let notes = value["notes"].to_string();
    assert!(notes.contains("dry-run policy istio-system/no-post-trial would have denied it"), "{value:#}");
}

#[test]
fn a_policy_istio_would_refuse_is_refused_even_when_it_applies_elsewhere() {
    let (status, stdout, stderr) =
        deployer(&["check", "--policy", &fixture("invalid-elsewhere.yaml"), "-n", "xnat", "--plaintext"]);
    assert_eq!(status, 2, "refused, not judged:\n{stdout}{stderr}");
    assert!(stderr.contains("AuthorizationPolicy reporting/reporting-jwt"), "{stderr}");
    assert!(stderr.contains("requestPrincipals"), "{stderr}");
    assert!(stdout.is_empty(), "no decision is printed: {stdout}");
}

#[test]
fn destination_address_and_server_name_can_be_given() {
    let policy = fixture("connection-conditions.yaml");
    let sni = "outbound_.80_._.xnat-xnat-web.xnat.svc.cluster.local";
    let principal = "cluster.local/ns/xnat/sa/default";
    let (status, value) =
        check_json(&["--policy", &policy, "--principal", principal, "--destination-ip", "10.0.0.9", "--sni", sni]);
    assert_eq!(status, 0, "both conditions hold: {value:#}");
    assert_eq!(value["request"]["destination_ip"], "10.0.0.9");
    assert_eq!(value["request"]["sni"], sni);
    let reads = value["reads"].to_string();
    assert!(reads.contains("destination address") && reads.contains("server name (SNI)"), "{reads}");
    let (status, value) = check_json(&["--policy", &policy, "--principal", principal, "--destination-ip", "10.0.0.9"]);
    assert_eq!(status, 1, "no SNI given: the condition is absent, as for a request without one: {value:#}");
    let (status, _) = check_json(&["--policy", &policy, "--principal", principal, "--sni", sni]);
    assert_eq!(status, 1, "no destination address given");
}

#[test]
fn json_output_names_the_verdict_the_policy_the_rule_and_the_peer_authentication() {
    let mtls = runbook("istio-mtls.yaml");
    let post = runbook("istio-auth-policy-post.yaml");
    let (status, value) = check_json(&[
        "--policy",
        &mtls,
        "--policy",
        &post,
        "--principal",
        "cluster.local/ns/xnat/sa/default",
        "--port",
        "8443",
        "--method",
        "POST",
        "--path",
        "/data/projects",
    ]);
    assert_eq!(status, 0, "{value:#}");
    assert_eq!(value["allowed"], true);
    assert_eq!(value["verdict"], "allowed_by");
    assert_eq!(value["policy"], "xnat/xnat-all");
    assert_eq!(value["rule"], 0);
    assert_eq!(value["mtls"]["mode"], "STRICT");
    assert_eq!(value["mtls"]["from"], "from PeerAuthentication xnat/default");
    assert_eq!(value["request"]["method"], "POST");
    assert_eq!(value["request"]["principal"], "spiffe://cluster.local/ns/xnat/sa/default");
    assert_eq!(value["workload"]["namespace"], "xnat");

    // Plaintext on 8080: the workload's portLevelMtls lets it through, and says which object.
    let (status, value) = check_json(&["--policy", &mtls, "--policy", &post, "--plaintext", "--port", "8080"]);
    assert_eq!(status, 0, "{value:#}");
    assert_eq!(value["mtls"]["mode"], "DISABLE");
    assert_eq!(value["mtls"]["from"], "from PeerAuthentication xnat/default, portLevelMtls 8080");

    // An identity on a DISABLE port never reaches the filter: the sidecar terminates no mTLS
    // there. It is judged as the request arrives, plaintext, and said so.
    let (_, value) = check_json(&[
        "--policy",
        &mtls,
        "--policy",
        &runbook("per-source.yaml"),
        "--principal",
        "cluster.local/ns/xnat-ingest/sa/uploader",
        "--port",
        "8080",
    ]);
    assert_eq!(value["request"]["principal"], Value::Null, "{value:#}");
    assert!(value["notes"].to_string().contains("port 8080 is DISABLE"), "{value:#}");

    // Plaintext elsewhere: denied by the mode, named.
    let (status, stdout, _) =
        deployer(&["check", "--policy", &mtls, "--policy", &post, "--plaintext", "--port", "8443"]);
    assert_eq!(status, 1);
    assert!(stdout.contains("mTLS on port 8443: STRICT, from PeerAuthentication xnat/default"), "{stdout}");
}

#[test]
fn the_policy_reads_lists_exactly_what_it_reads() {
    // The runbook's policy reads the method (and, to judge a tunnelled method, the query and
    // the override headers), and the port only to find a plaintext caller's mTLS mode; it
    // never reads the path or the caller's identity.
    let (_, value) = check_json(&[
        "--policy",
        &runbook("istio-mtls.yaml"),
        "--policy",
        &runbook("istio-auth-policy.yaml"),
        "--plaintext",
    ]);
    let reads: Vec<&str> = value["reads"].as_array().unwrap().iter().map(|v| v.as_str().unwrap()).collect();
    let expected = [
        "method",
        "query (for a tunnelled method)",
        "port (for the mTLS mode)",
        "whether the caller uses mTLS",
        "headers (x-http-method-override, x-http-method, x-method-override)",
    ];
    assert_eq!(reads, expected, "{value:#}");
    // Told to ignore tunnelled methods, as Istio does, it reads neither.
    let (_, value) = check_json(&[
        "--policy",
        &runbook("istio-mtls.yaml"),
        "--policy",
        &runbook("istio-auth-policy.yaml"),
        "--plaintext",
        "--method-override",
        "ignore",
    ]);
    let reads: Vec<&str> = value["reads"].as_array().unwrap().iter().map(|v| v.as_str().unwrap()).collect();
    assert_eq!(reads, ["method", "port (for the mTLS mode)", "whether the caller uses mTLS"], "{value:#}");
    let (_, value) = check_json(&["--policy", &runbook("per-source.yaml"), "--plaintext"]);
    let reads = value["reads"].to_string();
    assert!(reads.contains("the caller's identity") && !reads.contains("path"), "{reads}");
}

#[test]
fn a_malformed_principal_is_refused_with_the_expected_form() {
    for bad in ["sleep", "cluster.local/sleep", "spiffe://", "cluster.local/ns/default/sa/"] {
        let (status, _, stderr) =
            deployer(&["check", "--policy", &runbook("istio-auth-policy.yaml"), "--principal", bad]);
        assert_eq!(status, 2, "--principal {bad} is refused: {stderr}");
        assert!(stderr.contains("TRUST_DOMAIN/ns/NAMESPACE/sa/SERVICE_ACCOUNT"), "{stderr}");
    }
}

#[test]
fn the_trust_domain_flags_say_what_cluster_local_stands_for() {
    let policy = runbook("per-source.yaml");
    let upload = ["--method", "POST", "--path", "/data/projects"];
    let run = |extra: &[&str], principal: &str| {
        let mut args = vec!["check", "--policy", &policy, "--principal", principal];
        args.extend_from_slice(&upload);
        args.extend_from_slice(extra);
        deployer(&args).0
    };
    // per-source.yaml names the uploader as cluster.local/ns/xnat-ingest/sa/uploader.
    assert_eq!(run(&[], "cluster.local/ns/xnat-ingest/sa/uploader"), 0);
    assert_eq!(run(&["--trust-domain", "example.org"], "example.org/ns/xnat-ingest/sa/uploader"), 0);
    assert_eq!(
        run(&["--trust-domain", "example.org"], "cluster.local/ns/xnat-ingest/sa/uploader"),
        1,
        "in a mesh of example.org, a cluster.local identity is another mesh's"
    );
    let migrating = ["--trust-domain", "new.example.org", "--trust-domain-alias", "old.example.org"];
    assert_eq!(run(&migrating, "old.example.org/ns/xnat-ingest/sa/uploader"), 0);
    assert_eq!(run(&migrating, "new.example.org/ns/xnat-ingest/sa/uploader"), 0);
}

#[test]
fn piping_into_a_reader_that_is_gone_does_not_panic() {
    let (reader, writer) = std::io::pipe().expect("a pipe");
    drop(reader);
    let out = Command::new(env!("CARGO_BIN_EXE_deployer"))
        .args(["check", "--policy", &fixture("mixed.yaml"), "-n", "xnat", "--plaintext"])
        .stdout(Stdio::from(writer))
        .stderr(Stdio::piped())
        .output()
        .expect("the deployer runs");
    let stderr = String::from_utf8_lossy(&out.stderr);
    assert!(!stderr.contains("panicked"), "{stderr}");
    assert_eq!(out.status.code(), Some(0), "the decision's exit status, as if the output had been read: {stderr}");
}

/// The same files, workload and request through `check` and through the configuration `render`
/// ships: the same policies, the same decision.
#[test]
fn check_and_render_agree_on_the_same_files() {
    let files = [runbook("istio-mtls.yaml"), fixture("xnat-and-mesh.yaml")];
    let policy_args: Vec<&str> = files.iter().flat_map(|f| ["--policy", f.as_str()]).collect();
    let mut render = vec!["render", "xnat", "-o", "json", "--module-url", "oci://r.example.org/x:1"];
    render.extend_from_slice(&["--sha256", "4f6d3c0a1b2e9d8c7f6a5b4c3d2e1f0a9b8c7d6e5f4a3b2c1d0e9f8a7b6c5d4e"]);
    render.extend_from_slice(&policy_args);
    let (status, stdout, stderr) = deployer(&render);
    assert_eq!(status, 0, "{stderr}");
    let manifests: Vec<Value> = serde_json::from_str(&stdout).unwrap();
    let wasm = manifests.iter().find(|m| m["kind"] == "WasmPlugin").expect("a WasmPlugin");
    let shipped = from_json(wasm["spec"]["pluginConfig"].to_string().as_bytes()).expect("the shipped config compiles");
    let shipped_policies: Vec<String> = wasm["spec"]["pluginConfig"]["policies"]
        .as_array()
        .unwrap()
        .iter()
        .map(|p| format!("{}/{}", p["namespace"].as_str().unwrap(), p["name"].as_str().unwrap()))
        .collect();

    for (method, plaintext, port) in
        [("GET", true, 8080u16), ("POST", true, 8080), ("DELETE", true, 8080), ("GET", true, 8443)]
    {
        let port_text = port.to_string();
        let mut args = vec!["--method", method, "--port", &port_text, "-n", "xnat"];
        args.extend_from_slice(&policy_args);
        if plaintext {
            args.push("--plaintext");
        }
        let (_, value) = check_json(&args);
        let enforcing: Vec<String> = value["enforcing"]
            .as_array()
            .unwrap()
            .iter()
            .map(|e| e.as_str().unwrap().split_whitespace().nth(1).unwrap().to_string())
            .collect();
        assert_eq!(enforcing, shipped_policies, "check enforces what render ships");
        let request = Request {
            method: method.as_bytes(),
            path: b"/",
            host: None,
            port: Some(port),
            peer: None,
            source_ip: None,
            remote_ip: None,
            destination_ip: None,
            sni: None,
            headers: &[],
        };
        let header_values: Vec<&[&[u8]]> = vec![&[]; shipped.header_names().len()];
        let request = Request { headers: &header_values, ..request };
        assert_eq!(
            shipped.evaluate(&request).verdict.is_allowed(),
            value["allowed"].as_bool().unwrap(),
            "{method} on {port}: render's configuration and check disagree: {value:#}"
        );
    }
}

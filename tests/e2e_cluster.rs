//! The real-cluster suite: `make e2e-cluster` with KUBECONFIG pointing at a disposable cluster
//! (kind or similar) that can pull from a registry this machine can push to. It installs Istio,
//! deploys an XNAT-like workload and in-mesh clients, rolls the filter out, sends requests
//! through the mesh, reads status, re-runs rollout (nothing to change) and undoes it.
//!
//! It never runs in `make test` (no cluster there) and refuses to run, failing, when what it
//! needs is missing: it never passes by skipping.
//!
//! Environment:
//! - `KUBECONFIG`: the disposable cluster.
//! - `XNAT_GUARD_E2E_REGISTRY`: where to push, e.g. `localhost:5001` (kind's local registry).
//! - `XNAT_GUARD_E2E_REGISTRY_IN_CLUSTER`: the same registry as the nodes reach it, if different
//!   (e.g. `kind-registry:5000`).
//! - `XNAT_GUARD_E2E_ISTIO`: the Istio version to install (default the deployer's).

use harness::support;

use std::process::Command;

fn need_env(name: &str, why: &str) -> String {
    std::env::var(name).unwrap_or_else(|_| panic!("FAILED, not skipped: set {name} ({why}); see tests/e2e_cluster.rs"))
}

fn deployer_binary() -> std::path::PathBuf {
    let p = support::project_root().join("target/release/deployer");
    assert!(p.is_file(), "FAILED, not skipped: {} is missing; `make e2e-cluster` builds it", p.display());
    p
}

fn run(cmd: &mut Command) -> String {
    let out = cmd.output().unwrap_or_else(|e| panic!("FAILED, not skipped: cannot run {cmd:?}: {e}"));
    let stdout = String::from_utf8_lossy(&out.stdout).to_string();
    assert!(out.status.success(), "{cmd:?} failed:\n{stdout}\n{}", String::from_utf8_lossy(&out.stderr));
    stdout
}

fn kubectl(args: &[&str]) -> String {
    run(Command::new("kubectl").args(args))
}

fn kubectl_apply(yaml: &str) {
    let dir = tempfile::tempdir().unwrap();
    let f = dir.path().join("x.yaml");
    std::fs::write(&f, yaml).unwrap();
    kubectl(&["apply", "-f", f.to_str().unwrap()]);
}

const WORKLOAD: &str = r#"
apiVersion: v1
kind: Namespace
metadata: {name: xnat}
---
apiVersion: v1
kind: ServiceAccount
metadata: {name: xnat-web, namespace: xnat}
---
apiVersion: apps/v1
kind: Deployment
metadata: {name: xnat-web, namespace: xnat}
spec:
  replicas: 1
  selector: {matchLabels: {app: xnat-web}}
  template:
    metadata: {labels: {app: xnat-web}}
    spec:
      serviceAccountName: xnat-web
      containers:
      - name: xnat-web
        image: mccutchen/go-httpbin:v2.15.0
        env: [{name: PORT, value: "8080"}]
        ports: [{containerPort: 8080}]
        resources: {requests: {cpu: 100m}}
---
apiVersion: v1
kind: Service
metadata: {name: xnat-web, namespace: xnat}
spec:
  selector: {app: xnat-web}
  ports: [{name: http, port: 8080, targetPort: 8080}]
"#;

fn client(namespace: &str, sa: &str) -> String {
    format!(
        r#"
apiVersion: v1
kind: Namespace
metadata: {{name: {namespace}, labels: {{istio-injection: enabled}}}}
---
apiVersion: v1
kind: ServiceAccount
metadata: {{name: {sa}, namespace: {namespace}}}
---
apiVersion: apps/v1
kind: Deployment
metadata: {{name: client, namespace: {namespace}}}
spec:
  replicas: 1
  selector: {{matchLabels: {{app: client}}}}
  template:
    metadata: {{labels: {{app: client}}}}
    spec:
      serviceAccountName: {sa}
      containers:
      - {{name: curl, image: curlimages/curl:8.11.1, command: [sleep, "100000"]}}
"#
    )
}

fn status_code(namespace: &str, method: &str, path: &str) -> String {
    kubectl(&[
        "-n",
        namespace,
        "exec",
        "deploy/client",
        "-c",
        "curl",
        "--",
        "curl",
        "-s",
        "-o",
        "/dev/null",
        "-w",
        "%{http_code}",
        "-X",
        method,
        &format!("http://xnat-web.xnat:8080{path}"),
    ])
}

#[test]
#[ignore = "needs a disposable cluster: run `make e2e-cluster` with KUBECONFIG set"]
fn install_rollout_requests_status_rerun_and_undo_on_a_real_cluster() {
    need_env("KUBECONFIG", "a disposable cluster's kubeconfig");
    let registry =
        need_env("XNAT_GUARD_E2E_REGISTRY", "a registry this machine can push to and the cluster can pull from");
    let in_cluster = std::env::var("XNAT_GUARD_E2E_REGISTRY_IN_CLUSTER").unwrap_or_else(|_| registry.clone());
    let deployer = deployer_binary();
    let root = support::project_root();
    let mut install = Command::new(&deployer);
    install.arg("install");
    if let Ok(v) = std::env::var("XNAT_GUARD_E2E_ISTIO") {
        install.args(["--version", &v]);
    }
    run(&mut install);

    kubectl_apply(WORKLOAD);
    kubectl_apply(&client("xnat-ingest", "uploader"));
    kubectl_apply(&client("reporting", "reader"));

    let pushed = run(Command::new(&deployer).args([
        "push",
        &format!("{registry}/xnat-guard:e2e"),
        "--insecure",
        "-o",
        "json",
        "--module",
        support::module().to_str().unwrap(),
    ]));
    let pushed: serde_json::Value = serde_json::from_str(&pushed).unwrap();
    let sha = pushed["sha256"].as_str().unwrap().to_string();
    let url = format!("oci://{in_cluster}/xnat-guard:e2e");
    let policy = root.join("examples/runbook/per-source.yaml");
    let rollout = || {
        run(Command::new(&deployer).args([
            "rollout",
            "xnat",
            "--policy",
            policy.to_str().unwrap(),
            "--module-url",
            &url,
            "--sha256",
            &sha,
            "--mesh-strict",
        ]))
    };
    let first = rollout();
    assert!(first.contains("2/2"), "every pod runs the sidecar:\n{first}");
    kubectl(&["-n", "xnat-ingest", "rollout", "status", "deploy/client", "--timeout=180s"]);
    kubectl(&["-n", "reporting", "rollout", "status", "deploy/client", "--timeout=180s"]);

    // xnat-per-source: the uploader may POST; the reporting namespace may only read.
    assert_eq!(status_code("xnat-ingest", "POST", "/post"), "200");
    assert_eq!(status_code("reporting", "GET", "/get"), "200");
    assert_eq!(status_code("reporting", "POST", "/post"), "403");

    std::thread::sleep(std::time::Duration::from_secs(2)); // counters flush once a second
    let status = run(Command::new(&deployer).args(["status", "xnat", "-o", "json"]));
    let status: serde_json::Value = serde_json::from_str(&status).unwrap();
    let web = status["pods"]
        .as_array()
        .unwrap()
        .iter()
        .find(|p| p["name"].as_str().unwrap().starts_with("xnat-web"))
        .unwrap();
    let denied = web["counters"]["denied_policy"].as_u64().unwrap_or(0);
    assert!(denied >= 1, "the denied POST is counted: {web}");

    let again = rollout();
    assert!(again.contains("nothing to change"), "re-running rollout changes nothing:\n{again}");
    run(Command::new(&deployer).args(["rollout", "xnat", "--undo"]));
    let left = kubectl(&["-n", "xnat", "get", "wasmplugins", "-o", "name"]);
    assert!(left.trim().is_empty(), "undo removed the WasmPlugin: {left}");
}

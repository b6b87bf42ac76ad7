//! A private registry, ECR included, needs a pull Secret: istio-agent pulls the module without
//! the node's credentials. `--image-pull-secret` renders it into the WasmPlugin, rollout checks
//! the Secret exists and is a registry credential before applying anything, and an ECR module
//! without one gets a note saying how to make it.

mod mock_api;
mod support;

use std::process::Command;

use deployer::apply::existing::require_pull_secret;
use deployer::plan::rollout::{ModuleRef, Plan, Spec};
use deployer::{plan, resources};
use mock_api::{options, run, Step};
use serde_json::{json, Value};

const SHA: &str = "4f6d3c0a1b2e9d8c7f6a5b4c3d2e1f0a9b8c7d6e5f4a3b2c1d0e9f8a7b6c5d4e";
const ECR: &str = "oci://123456789012.dkr.ecr.ap-southeast-2.amazonaws.com/xnat-guard:0.1.0";

fn render(extra: &[&str]) -> (i32, String, String) {
    let policy = support::project_root().join("examples/runbook/istio-auth-policy-post.yaml");
    let mut args = vec!["render", "xnat", "-o", "json", "--sha256", SHA];
    let policy = policy.display().to_string();
    args.extend_from_slice(&["--policy", &policy]);
    args.extend_from_slice(extra);
    let out = Command::new(env!("CARGO_BIN_EXE_deployer")).args(&args).output().unwrap();
    (
        out.status.code().unwrap_or(-1),
        String::from_utf8_lossy(&out.stdout).into_owned(),
        String::from_utf8_lossy(&out.stderr).into_owned(),
    )
}

fn wasm_plugin(stdout: &str) -> Value {
    let manifests: Vec<Value> = serde_json::from_str(stdout).unwrap();
    manifests.into_iter().find(|m| m["kind"] == "WasmPlugin").unwrap()
}

#[test]
fn the_pull_secret_is_rendered_into_the_wasm_plugin() {
    let (status, stdout, stderr) = render(&["--module-url", ECR, "--image-pull-secret", "ecr-pull"]);
    assert_eq!(status, 0, "{stderr}");
    assert_eq!(wasm_plugin(&stdout)["spec"]["imagePullSecret"], "ecr-pull");
    assert!(!stderr.contains("needs --image-pull-secret"), "{stderr}");
}

#[test]
fn an_ecr_module_without_a_pull_secret_gets_a_note_saying_how_to_make_one() {
    let (status, stdout, stderr) = render(&["--module-url", ECR]);
    assert_eq!(status, 0, "{stderr}");
    assert_eq!(wasm_plugin(&stdout)["spec"].get("imagePullSecret"), None);
    assert!(stderr.contains("the module is in ECR") && stderr.contains("aws ecr get-login-password"), "{stderr}");
    let (_, _, stderr) = render(&["--module-url", "oci://ghcr.io/example/xnat-guard:0.1.0"]);
    assert!(!stderr.contains("ECR"), "a public registry needs no note: {stderr}");
}

#[test]
fn a_pull_secret_name_kubernetes_would_refuse_is_refused() {
    let (status, _, stderr) = render(&["--module-url", ECR, "--image-pull-secret", "ECR_Pull"]);
    assert_eq!(status, 2);
    assert!(stderr.contains("--image-pull-secret \"ECR_Pull\" is not a Secret name"), "{stderr}");
}

fn plan_with_secret() -> Plan {
    let file = support::project_root().join("examples/runbook/istio-auth-policy-post.yaml");
    let module = ModuleRef::new(ECR, SHA).unwrap();
    let spec = Spec::new("xnat", resources::load_files(&[file]).unwrap(), module);
    plan::rollout::plan(&Spec { image_pull_secret: Some("ecr-pull".into()), ..spec }).unwrap()
}

async fn check(step: Step) -> Result<(), String> {
    let plan = plan_with_secret();
    run(vec![step], options(), |cluster| async move { require_pull_secret(&cluster, &plan).await })
        .await
        .map_err(|e| e.to_string())
}

const SECRET: &str = "/api/v1/namespaces/xnat/secrets/ecr-pull";

#[tokio::test]
async fn rollout_refuses_a_pull_secret_the_namespace_does_not_have() {
    let error = check(Step::get(SECRET).not_found()).await.unwrap_err();
    assert!(error.contains("there is no Secret xnat/ecr-pull") && error.contains("nothing was applied"), "{error}");
    assert!(error.contains("kubectl -n xnat create secret docker-registry ecr-pull"), "{error}");
}

#[tokio::test]
async fn rollout_refuses_a_secret_that_is_no_registry_credential_and_takes_one_that_is() {
    let opaque = json!({"apiVersion": "v1", "kind": "Secret", "metadata": {"name": "ecr-pull"}, "type": "Opaque"});
    let error = check(Step::get(SECRET).reply(200, opaque)).await.unwrap_err();
    assert!(error.contains("is of type \"Opaque\""), "{error}");
    let good = json!({"apiVersion": "v1", "kind": "Secret", "metadata": {"name": "ecr-pull"},
                      "type": "kubernetes.io/dockerconfigjson", "data": {".dockerconfigjson": "e30="}});
    check(Step::get(SECRET).reply(200, good)).await.unwrap();
}

//! Before a rollout pins a module, the registry is asked whether it serves that digest under
//! the URL's tag, with the credentials the sidecars will use (the pull Secret's, else this
//! machine's docker login): a digest the registry does not serve is refused before anything is
//! applied. A registry this machine cannot reach is said, and left to the canary, which asks
//! from a pod.

use std::time::Duration;

use k8s_openapi::api::core::v1::Secret;
use kube::api::Api;
use serde_json::Value;

use super::{ApplyError, Cluster, Result};
use crate::kind::Kind;
use crate::oci::{self, Credentials, OciError, Pinned, Reference};
use crate::plan::rollout::Plan;

/// How long the registry may take to answer.
const REGISTRY_TIMEOUT: Duration = Duration::from_secs(15);

/// Refuses a module digest the registry does not serve; returns what it found out otherwise.
pub async fn check_module_served(cluster: &Cluster, plan: &Plan) -> Result<String> {
    let Some(wasm) = plan.manifests.iter().find(|m| m.kind == Kind::WASM_PLUGIN) else {
        return Ok("no WasmPlugin to check".into());
    };
    let url = wasm.body.pointer("/spec/url").and_then(Value::as_str).unwrap_or_default();
    let sha256 = wasm.body.pointer("/spec/sha256").and_then(Value::as_str).unwrap_or_default();
    if !url.starts_with("oci://") {
        return Ok(format!("the module's URL {url} is not oci://; the canary checks the sidecars can fetch it"));
    }
    let reference = match Reference::parse(url) {
        Ok(r) => r,
        Err(e) => return Ok(format!("the registry was not asked ({e}); the canary checks the sidecars can fetch it")),
    };
    let secret = wasm.body.pointer("/spec/imagePullSecret").and_then(Value::as_str);
    let credentials = match secret {
        Some(name) => secret_credentials(cluster, &plan.target.namespace, name, &reference.registry).await,
        None => oci::docker_credentials(&reference.registry).map_err(|e| e.to_string()),
    };
    let credentials = match credentials {
        Ok(c) => c,
        Err(why) => {
            return Ok(format!("the registry was not asked ({why}); the canary checks the sidecars can fetch it"))
        }
    };
    // A loopback registry speaks plain HTTP (Debian's docker-registry, a port-forward).
    let insecure = ["127.", "localhost", "[::1]"].iter().any(|p| reference.registry.starts_with(p));
    let asked = async {
        let mut registry = oci::Registry::new(&reference.registry, insecure, credentials)?;
        registry.pinned(&reference, sha256).await
    };
    let answer = tokio::time::timeout(REGISTRY_TIMEOUT, asked)
        .await
        .unwrap_or_else(|_| Err(OciError::Registry(format!("no answer in {}s", REGISTRY_TIMEOUT.as_secs()))));
    judge(url, sha256, answer)
}

/// The registry's answer, as the rollout acts on it.
pub fn judge(url: &str, sha256: &str, answer: std::result::Result<Pinned, OciError>) -> Result<String> {
    match answer {
        Ok(Pinned::Served) => Ok(format!("the registry serves {url} at the pinned sha256 {sha256}")),
        Ok(Pinned::Other(served)) => Err(ApplyError::Failed(format!(
            "{url} now serves sha256 {served}, not the pinned --sha256 {sha256}: the sidecars would refuse it and, with \
             FAIL_CLOSE, deny every request. Nothing was applied. Pin the digest `deployer push` printed for this tag, \
             or push the module again and use the digest it prints"
        ))),
        Ok(Pinned::Missing) => Err(ApplyError::Failed(format!(
            "the registry has no {url}: the sidecars could not fetch the module. Nothing was applied. Push it first \
             (`deployer push {} --module target/wasm32-wasip1/module/xnat_guard.wasm`)",
            url.trim_start_matches("oci://")
        ))),
        Err(e) => Ok(format!(
            "the registry could not be asked from this machine ({e}); the canary checks the sidecars can fetch {url}"
        )),
    }
}

/// The credentials for `registry` in a `kubernetes.io/dockerconfigjson` Secret.
async fn secret_credentials(
    cluster: &Cluster,
    namespace: &str,
    name: &str,
    registry: &str,
) -> std::result::Result<Option<Credentials>, String> {
    let api: Api<Secret> = Api::namespaced(cluster.client.clone(), namespace);
    let secret = api.get(name).await.map_err(|e| format!("reading Secret {namespace}/{name}: {e}"))?;
    let data = secret.data.unwrap_or_default();
    let Some(config) = data.get(".dockerconfigjson").or_else(|| data.get(".dockercfg")) else {
        return Err(format!("Secret {namespace}/{name} holds no .dockerconfigjson"));
    };
    let text = String::from_utf8(config.0.clone()).map_err(|_| format!("Secret {namespace}/{name} is not UTF-8"))?;
    oci::credentials_from_config(&text, registry).map_err(|why| format!("Secret {namespace}/{name}: {why}"))
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn a_digest_the_registry_does_not_serve_is_refused_and_an_unreachable_registry_left_to_the_canary() {
        let url = "oci://registry.example/xnat-guard:0.1.0";
        let ok = judge(url, "ab", Ok(Pinned::Served)).unwrap();
        assert!(ok.contains("serves") && ok.contains("ab"), "{ok}");
        let other = judge(url, "ab", Ok(Pinned::Other("cd".into()))).unwrap_err().to_string();
        assert!(
            other.contains("now serves sha256 cd, not the pinned --sha256 ab") && other.contains("Nothing was applied"),
            "{other}"
        );
        let missing = judge(url, "ab", Ok(Pinned::Missing)).unwrap_err().to_string();
        assert!(
            missing.contains("has no oci://registry.example/xnat-guard:0.1.0") && missing.contains("deployer push"),
            "{missing}"
        );
        let away = judge(url, "ab", Err(OciError::Registry("connection refused".into()))).unwrap();
        assert!(away.contains("could not be asked") && away.contains("canary"), "{away}");
    }
}

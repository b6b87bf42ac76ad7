//! `kiali install` and `kiali token`.

use std::path::Path;

use k8s_openapi::api::authentication::v1::{TokenRequest, TokenRequestSpec};
use k8s_openapi::api::core::v1::ServiceAccount;
use kube::api::{Api, PostParams};
use serde_json::{json, Value};

use super::{api_error, str_at, Cluster, ClusterError, Result};
use crate::plan::{Kind, Manifest};

pub const KIALI_CR: Kind = Kind { group: "kiali.io", version: "v1alpha1", kind: "Kiali", plural: "kialis" };

/// The kinds Istio's sample add-ons (`samples/addons/prometheus.yaml`, `jaeger.yaml`) use.
const ADDON_KINDS: [(Kind, bool); 7] = [
    (Kind { group: "", version: "v1", kind: "ServiceAccount", plural: "serviceaccounts" }, true),
    (Kind { group: "", version: "v1", kind: "ConfigMap", plural: "configmaps" }, true),
    (Kind { group: "", version: "v1", kind: "Service", plural: "services" }, true),
    (Kind { group: "apps", version: "v1", kind: "Deployment", plural: "deployments" }, true),
    (Kind { group: "rbac.authorization.k8s.io", version: "v1", kind: "ClusterRole", plural: "clusterroles" }, false),
    (
        Kind {
            group: "rbac.authorization.k8s.io",
            version: "v1",
            kind: "ClusterRoleBinding",
            plural: "clusterrolebindings",
        },
        false,
    ),
    (Kind { group: "rbac.authorization.k8s.io", version: "v1", kind: "Role", plural: "roles" }, true),
];

/// The Kiali CR: token login, the service type asked for, editable, served under /kiali.
pub fn kiali_cr(namespace: &str, service_type: &str) -> Manifest {
    Manifest {
        kind: KIALI_CR,
        name: "kiali".into(),
        namespace: Some(namespace.into()),
        body: json!({
            "apiVersion": KIALI_CR.api_version(),
            "kind": "Kiali",
            "metadata": { "name": "kiali", "namespace": namespace },
            "spec": {
                "auth": { "strategy": "token" },
                "deployment": { "service_type": service_type, "view_only_mode": false },
                "server": { "web_root": "/kiali" },
            },
        }),
        origin: "kiali install".into(),
    }
}

/// Reads the add-on manifests of an Istio release directory (`samples/addons/`).
pub fn addon_manifests(istio_dir: &Path, namespace: &str) -> Result<Vec<Manifest>> {
    let mut out = Vec::new();
    for file in ["prometheus.yaml", "jaeger.yaml"] {
        let path = istio_dir.join("samples/addons").join(file);
        let text = std::fs::read_to_string(&path).map_err(|e| {
            ClusterError::Failed(format!(
                "{}: {e}; --istio-dir must be an unpacked Istio release (curl -L https://istio.io/downloadIstio | sh -)",
                path.display()
            ))
        })?;
        for doc in serde_yaml::Deserializer::from_str(&text) {
            let body: Value = serde::Deserialize::deserialize(doc)
                .map_err(|e| ClusterError::Failed(format!("{}: not valid YAML: {e}", path.display())))?;
            if body.is_null() {
                continue;
            }
            let (api_version, kind_name) = (str_at(&body, &["apiVersion"]), str_at(&body, &["kind"]));
            let (kind, namespaced) = ADDON_KINDS
                .iter()
                .find(|(k, _)| k.kind == kind_name && k.api_version() == api_version)
                .copied()
                .ok_or_else(|| {
                    ClusterError::Failed(format!(
                        "{}: {kind_name} ({api_version}) is not a kind the add-ons are known to use; apply it with kubectl",
                        path.display()
                    ))
                })?;
            let name = str_at(&body, &["metadata", "name"]).to_string();
            let mut body = body.clone();
            if namespaced && body["metadata"].get("namespace").is_none() {
                body["metadata"]["namespace"] = json!(namespace);
            }
            let ns = namespaced.then(|| str_at(&body, &["metadata", "namespace"]).to_string());
            out.push(Manifest { kind, name, namespace: ns, body, origin: path.display().to_string() });
        }
    }
    Ok(out)
}

/// Waits for the Kiali operator to report the CR reconciled.
pub async fn wait_for_kiali(cluster: &Cluster, namespace: &str) -> Result<()> {
    let api = cluster.dynamic_api(&KIALI_CR, Some(namespace));
    cluster
        .wait_for("waiting for the Kiali operator to deploy Kiali", || {
            let api = api.clone();
            async move {
                let cr = api.get("kiali").await.map_err(api_error("reading the Kiali CR"))?;
                let conditions = cr.data["status"]["conditions"].as_array().cloned().unwrap_or_default();
                let status_of = |t: &str| {
                    conditions
                        .iter()
                        .find(|c| c["type"] == t)
                        .map(|c| (str_at(c, &["status"]).to_string(), str_at(c, &["message"]).to_string()))
                };
                if let Some((s, m)) = status_of("Failure") {
                    if s == "True" {
                        return Err(ClusterError::Failed(format!(
                            "the Kiali operator failed: {m}; see `kubectl -n kiali-operator logs deploy/kiali-operator`"
                        )));
                    }
                }
                Ok(match status_of("Successful") {
                    Some((s, _)) if s == "True" => Ok(()),
                    _ => Err("the operator has not reported Successful yet".to_string()),
                })
            }
        })
        .await
}

/// A login token for Kiali's service account through the TokenRequest API. Kubernetes 1.24+
/// creates no long-lived service-account token secrets, so there is no secret to look up.
pub async fn token(cluster: &Cluster, namespace: &str, service_account: &str, duration_secs: i64) -> Result<String> {
    let api: Api<ServiceAccount> = Api::namespaced(cluster.client.clone(), namespace);
    let request = TokenRequest {
        spec: TokenRequestSpec { expiration_seconds: Some(duration_secs), ..Default::default() },
        ..Default::default()
    };
    let resp = api
        .create_token_request(service_account, &PostParams::default(), &request)
        .await
        .map_err(|e| match e {
            kube::Error::Api(s) if s.code == 404 => ClusterError::Failed(format!(
                "service account {namespace}/{service_account} does not exist: is Kiali installed (`deployer kiali install`)?"
            )),
            e => api_error(format!("requesting a token for {namespace}/{service_account}"))(e),
        })?;
    resp.status
        .map(|s| s.token)
        .filter(|t| !t.is_empty())
        .ok_or_else(|| ClusterError::Failed("the API server answered the TokenRequest without a token".into()))
}

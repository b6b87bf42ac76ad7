//! `kiali install` (waiting for the operator to reconcile the CR [`crate::plan::kiali`]
//! plans) and `kiali token`.

use k8s_openapi::api::authentication::v1::{TokenRequest, TokenRequestSpec};
use k8s_openapi::api::core::v1::ServiceAccount;
use kube::api::{Api, PostParams};

use super::{api_error, ApplyError, Cluster, Result};
use crate::inspect::str_at;
use crate::kind::Kind;

/// Waits for the Kiali operator to report the CR reconciled.
pub async fn wait_for_kiali(cluster: &Cluster, namespace: &str) -> Result<()> {
    let api = cluster.dynamic_api(&Kind::KIALI, Some(namespace));
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
                        return Err(ApplyError::Failed(format!(
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
            kube::Error::Api(s) if s.code == 404 => ApplyError::Failed(format!(
                "service account {namespace}/{service_account} does not exist: is Kiali installed (`deployer kiali install`)?"
            )),
            e => api_error(format!("requesting a token for {namespace}/{service_account}"))(e),
        })?;
    resp.status
        .map(|s| s.token)
        .filter(|t| !t.is_empty())
        .ok_or_else(|| ApplyError::Failed("the API server answered the TokenRequest without a token".into()))
}

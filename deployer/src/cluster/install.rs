//! `install`: Istio's `base` and `istiod` charts, with prechecks and verification.

use k8s_openapi::api::admissionregistration::v1::MutatingWebhookConfiguration;
use k8s_openapi::api::apps::v1::Deployment;
use k8s_openapi::api::authorization::v1::{ResourceAttributes, SelfSubjectAccessReview, SelfSubjectAccessReviewSpec};
use k8s_openapi::apiextensions_apiserver::pkg::apis::apiextensions::v1::CustomResourceDefinition;
use kube::api::{Api, ListParams, PostParams};

use super::pods::Workload;
use super::{api_error, Cluster, ClusterError, Result};

/// Kubernetes minor versions each Istio minor is supported on (Istio's support table).
const SUPPORT: [(&str, u32, u32); 5] =
    [("1.24", 28, 31), ("1.25", 29, 32), ("1.26", 29, 33), ("1.27", 30, 33), ("1.28", 30, 34)];

/// The CRDs the deployer relies on.
pub const REQUIRED_CRDS: [&str; 4] = [
    "wasmplugins.extensions.istio.io",
    "peerauthentications.security.istio.io",
    "authorizationpolicies.security.istio.io",
    "destinationrules.networking.istio.io",
];

/// What the caller must be allowed to do for the charts to install.
const PERMISSIONS: [(&str, &str, &str); 4] = [
    ("create", "apiextensions.k8s.io", "customresourcedefinitions"),
    ("create", "admissionregistration.k8s.io", "mutatingwebhookconfigurations"),
    ("create", "rbac.authorization.k8s.io", "clusterroles"),
    ("create", "", "namespaces"),
];

/// Whether this Kubernetes minor is supported by this Istio version: `Err` when it is too old
/// (the charts would fail or misbehave), `Ok(Some(warning))` when newer than the table knows.
pub fn check_version(istio: &str, k8s_minor: u32) -> Result<Option<String>, String> {
    let istio_minor: String = istio.split('.').take(2).collect::<Vec<_>>().join(".");
    match SUPPORT.iter().find(|(v, _, _)| *v == istio_minor) {
        Some((_, min, _)) if k8s_minor < *min => Err(format!(
            "Istio {istio} needs Kubernetes 1.{min} or newer and the cluster runs 1.{k8s_minor}; upgrade the cluster or pick an older --version"
        )),
        Some((_, _, max)) if k8s_minor > *max => Ok(Some(format!(
            "Istio {istio} is tested up to Kubernetes 1.{max}; the cluster runs 1.{k8s_minor}"
        ))),
        Some(_) => Ok(None),
        None => Ok(Some(format!("Istio {istio} is not in the deployer's support table; its Kubernetes range is not checked"))),
    }
}

/// The prechecks: Kubernetes version and the caller's permissions. Returns warnings.
pub async fn precheck(cluster: &Cluster, istio_version: &str) -> Result<Vec<String>> {
    let mut warnings = Vec::new();
    let info = cluster.client.apiserver_version().await.map_err(api_error("reading the API server's version"))?;
    let minor: u32 = info.minor.trim_end_matches('+').parse().unwrap_or(0);
    match check_version(istio_version, minor) {
        Err(e) => return Err(ClusterError::Failed(e)),
        Ok(Some(w)) => warnings.push(w),
        Ok(None) => {}
    }
    let api: Api<SelfSubjectAccessReview> = Api::all(cluster.client.clone());
    let mut denied = Vec::new();
    for (verb, group, resource) in PERMISSIONS {
        let review = SelfSubjectAccessReview {
            spec: SelfSubjectAccessReviewSpec {
                resource_attributes: Some(ResourceAttributes {
                    verb: Some(verb.into()),
                    group: Some(group.into()),
                    resource: Some(resource.into()),
                    ..Default::default()
                }),
                ..Default::default()
            },
            ..Default::default()
        };
        let answer = api
            .create(&PostParams::default(), &review)
            .await
            .map_err(api_error("asking the API server what you may do (SelfSubjectAccessReview)"))?;
        if !answer.status.is_some_and(|s| s.allowed) {
            denied.push(format!("{verb} {resource}"));
        }
    }
    if !denied.is_empty() {
        return Err(ClusterError::Failed(format!(
            "your credentials may not {}; installing Istio needs cluster-admin (use an admin context with --context)",
            denied.join(", ")
        )));
    }
    Ok(warnings)
}

/// After the charts: the CRDs exist, istiod has rolled out, the injection webhook is there.
pub async fn verify(cluster: &Cluster, namespace: &str) -> Result<Vec<String>> {
    let mut report = Vec::new();
    let crds: Api<CustomResourceDefinition> = Api::all(cluster.client.clone());
    for name in REQUIRED_CRDS {
        crds.get(name).await.map_err(|e| match e {
            kube::Error::Api(s) if s.code == 404 => ClusterError::Failed(format!(
                "CRD {name} is missing after the base chart: check `helm -n {namespace} status istio-base`"
            )),
            e => api_error(format!("reading CRD {name}"))(e),
        })?;
    }
    report.push(format!("CRDs present: {}", REQUIRED_CRDS.join(", ")));
    let deployments: Api<Deployment> = Api::namespaced(cluster.client.clone(), namespace);
    cluster
        .wait_for("waiting for istiod to roll out", || {
            let deployments = deployments.clone();
            async move {
                let d = deployments
                    .get("istiod")
                    .await
                    .map_err(api_error(format!("reading Deployment {namespace}/istiod")))?;
                Ok(Workload::Deployment(d).rollout_complete())
            }
        })
        .await?;
    report.push("istiod rolled out".into());
    let hooks: Api<MutatingWebhookConfiguration> = Api::all(cluster.client.clone());
    let found = hooks
        .list(&ListParams::default().labels("app=sidecar-injector"))
        .await
        .map_err(api_error("listing MutatingWebhookConfigurations"))?;
    let names: Vec<String> = found.items.iter().filter_map(|h| h.metadata.name.clone()).collect();
    if names.is_empty() {
        return Err(ClusterError::Failed(
            "no sidecar injection webhook (MutatingWebhookConfiguration app=sidecar-injector) after istiod installed: \
             pods would get no sidecar; check `helm -n istio-system status istiod`"
                .into(),
        ));
    }
    report.push(format!("injection webhook present: {}", names.join(", ")));
    Ok(report)
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn too_old_clusters_are_refused_and_newer_ones_warned() {
        assert!(check_version("1.27.3", 29).unwrap_err().contains("1.30 or newer"));
        assert_eq!(check_version("1.27.3", 31), Ok(None));
        assert!(check_version("1.27.3", 35).unwrap().unwrap().contains("tested up to"));
        assert!(check_version("1.99.0", 30).unwrap().unwrap().contains("not in the deployer's support table"));
    }
}

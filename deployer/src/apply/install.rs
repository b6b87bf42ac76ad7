//! `install`: the checks around Istio's charts (which [`crate::plan::install`] plans and
//! [`super::helm`] runs): before, the Kubernetes version and the caller's permissions; after,
//! the CRDs, istiod's rollout and the injection webhook.

use k8s_openapi::api::admissionregistration::v1::MutatingWebhookConfiguration;
use k8s_openapi::api::apps::v1::Deployment;
use k8s_openapi::api::authorization::v1::{ResourceAttributes, SelfSubjectAccessReview, SelfSubjectAccessReviewSpec};
use k8s_openapi::apiextensions_apiserver::pkg::apis::apiextensions::v1::CustomResourceDefinition;
use kube::api::{Api, ListParams, PostParams};

use super::{api_error, ApplyError, Cluster, Result};
use crate::inspect::controllers::Controller;
use crate::plan::install::{check_version, PERMISSIONS, REQUIRED_CRDS};

/// The prechecks: Kubernetes version and the caller's permissions. Returns warnings.
pub async fn precheck(cluster: &Cluster, istio_version: &str) -> Result<Vec<String>> {
    let mut warnings = Vec::new();
    let (_, minor) = cluster.server_version().await?;
    match check_version(istio_version, minor) {
        Err(e) => return Err(ApplyError::Failed(e)),
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
        return Err(ApplyError::Failed(format!(
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
    let names: Vec<String> = REQUIRED_CRDS.iter().map(|k| k.crd_name()).collect();
    for name in &names {
        crds.get(name).await.map_err(|e| match e {
            kube::Error::Api(s) if s.code == 404 => ApplyError::Failed(format!(
                "CRD {name} is missing after the base chart: check `helm -n {namespace} status istio-base`"
            )),
            e => api_error(format!("reading CRD {name}"))(e),
        })?;
    }
    report.push(format!("CRDs present: {}", names.join(", ")));
    let deployments: Api<Deployment> = Api::namespaced(cluster.client.clone(), namespace);
    cluster
        .wait_for("waiting for istiod to roll out", || {
            let deployments = deployments.clone();
            async move {
                let d = deployments
                    .get("istiod")
                    .await
                    .map_err(api_error(format!("reading Deployment {namespace}/istiod")))?;
                Ok(Controller::Deployment(d).rollout_complete())
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
        return Err(ApplyError::Failed(
            "no sidecar injection webhook (MutatingWebhookConfiguration app=sidecar-injector) after istiod installed: \
             pods would get no sidecar; check `helm -n istio-system status istiod`"
                .into(),
        ));
    }
    report.push(format!("injection webhook present: {}", names.join(", ")));
    Ok(report)
}

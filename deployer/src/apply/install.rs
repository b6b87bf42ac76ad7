//! `install`: the checks around Istio's charts (which [`crate::plan::install`] plans and
//! [`super::helm`] runs): before, the Kubernetes version, the caller's permissions and the Istio
//! already installed (an upgrade path Istio supports, and the CRDs a pre-1.24 base chart left
//! without Helm ownership); after, the CRDs, istiod's rollout, the injection webhook, and a pod
//! that really gets its sidecar.

use k8s_openapi::api::admissionregistration::v1::MutatingWebhookConfiguration;
use k8s_openapi::api::apps::v1::Deployment;
use k8s_openapi::api::authorization::v1::{ResourceAttributes, SelfSubjectAccessReview, SelfSubjectAccessReviewSpec};
use k8s_openapi::api::core::v1::{Namespace, Pod, Secret};
use k8s_openapi::apiextensions_apiserver::pkg::apis::apiextensions::v1::CustomResourceDefinition;
use kube::api::{Api, ListParams, Patch, PatchParams, PostParams};
use serde_json::{json, Value};

use super::{api_error, ApplyError, Cluster, Result};
use crate::inspect::controllers::Controller;
use crate::inspect::served::{self, InstalledIstio};
use crate::plan::install::{
    check_crds_current, check_upgrade, check_version, crd_adoption, CrdAdoption, PERMISSIONS, REQUIRED_CRDS,
};

/// The base chart's release name, as the runbook and Istio's docs name it.
pub const BASE_RELEASE: &str = "istio-base";

/// What the prechecks found.
#[derive(Debug, Default)]
pub struct Precheck {
    /// Worth a user's attention, not a reason to stop.
    pub warnings: Vec<String>,
    /// What the install starts from.
    pub notes: Vec<String>,
    /// The Istio already installed, if any.
    pub installed: Option<InstalledIstio>,
    /// The CRDs to adopt into the base chart's release before helm runs.
    pub adoption: Vec<CrdAdoption>,
}

/// The prechecks: the Kubernetes version, the caller's permissions, then the Istio already in
/// `namespace`: a jump Istio does not support is refused, and the CRDs a pre-1.24 base chart
/// left are planned for adoption.
pub async fn precheck(cluster: &Cluster, istio_version: &str, namespace: &str) -> Result<Precheck> {
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
    let mut notes = Vec::new();
    let crds = istio_crds(cluster).await?;
    let installed = installed_istio(cluster, namespace, &crds, &mut notes).await?;
    if let Some(note) = check_upgrade(installed.as_ref(), istio_version, minor).map_err(ApplyError::Failed)? {
        notes.push(note);
    }
    let adoption = crd_adoption(istio_version, &crds, BASE_RELEASE, namespace).map_err(ApplyError::Failed)?;
    Ok(Precheck { warnings, notes, installed, adoption })
}

/// Istio's CRDs, selected as Istio's upgrade notes select them: `chart=istio` (the plain CRD
/// files of the charts before 1.24) or `app.kubernetes.io/part-of=istio` (the templated ones).
async fn istio_crds(cluster: &Cluster) -> Result<Vec<Value>> {
    let api: Api<CustomResourceDefinition> = Api::all(cluster.client.clone());
    let mut crds = Vec::new();
    for selector in ["chart=istio", "app.kubernetes.io/part-of=istio"] {
        let found = api
            .list(&ListParams::default().labels(selector))
            .await
            .map_err(api_error(format!("listing Istio's CRDs ({selector})")))?;
        crds.extend(found.items.iter().filter_map(|c| serde_json::to_value(c).ok()));
    }
    Ok(crds)
}

/// The Istio installed in `namespace`: Helm's release records first (what `helm upgrade`
/// starts from), else istiod's image (installed without Helm), else the CRDs' labels.
async fn installed_istio(
    cluster: &Cluster,
    namespace: &str,
    crds: &[Value],
    notes: &mut Vec<String>,
) -> Result<Option<InstalledIstio>> {
    let secrets: Api<Secret> = Api::namespaced(cluster.client.clone(), namespace);
    // Only the deployed record of each release: the superseded ones hold whole old manifests.
    match secrets.list(&ListParams::default().labels("owner=helm,status=deployed")).await {
        Ok(found) => {
            let values: Vec<Value> = found.items.iter().filter_map(|s| serde_json::to_value(s).ok()).collect();
            if let Some(installed) = served::from_helm_release_secrets(&values) {
                return Ok(Some(installed));
            }
        }
        Err(kube::Error::Api(s)) if s.code == 403 => notes.push(format!(
            "could not read Helm's release records in {namespace} (listing Secrets is forbidden); \
             the installed Istio is judged by istiod's image instead"
        )),
        Err(e) => {
            return Err(api_error(format!(
                "listing Helm's release records (Secrets owner=helm,status=deployed in {namespace})"
            ))(e));
        }
    }
    let deployments: Api<Deployment> = Api::namespaced(cluster.client.clone(), namespace);
    let istiods = deployments
        .list(&ListParams::default().labels("app=istiod"))
        .await
        .map_err(api_error(format!("listing istiod Deployments (app=istiod) in {namespace}")))?;
    let values: Vec<Value> = istiods.items.iter().filter_map(|d| serde_json::to_value(d).ok()).collect();
    Ok(served::from_istiod_deployments(&values).or_else(|| served::from_crd_labels(crds)))
}

/// The one-time CRD migration: each CRD patched with a merge patch of its metadata (a server
/// dry run under `--dry-run`). Returns one line per CRD.
pub async fn adopt_crds(cluster: &Cluster, adoptions: &[CrdAdoption]) -> Result<Vec<String>> {
    let api: Api<CustomResourceDefinition> = Api::all(cluster.client.clone());
    let params = PatchParams { dry_run: cluster.opts.dry_run, ..Default::default() };
    let mut report = Vec::new();
    for adoption in adoptions {
        api.patch(&adoption.crd, &params, &Patch::Merge(&adoption.patch)).await.map_err(api_error(format!(
            "adopting CRD {} into helm release {BASE_RELEASE} (run by hand: {})",
            adoption.crd,
            adoption.command_line()
        )))?;
        report.push(if cluster.opts.dry_run {
            format!("CRD {} can be adopted into helm release {BASE_RELEASE} (dry run, not changed)", adoption.crd)
        } else {
            format!("CRD {} adopted into helm release {BASE_RELEASE}", adoption.crd)
        });
    }
    Ok(report)
}

/// After the charts: the CRDs exist and are `istio_version`'s, istiod of `revision` has rolled
/// out, the injection webhook is there, and a pod created (as a server dry run) where
/// injection is on gets `istio-proxy`.
pub async fn verify(cluster: &Cluster, namespace: &str, revision: &str, istio_version: &str) -> Result<Vec<String>> {
    let mut report = Vec::new();
    let served = super::served::served_apis(cluster).await?;
    let names: Vec<String> = REQUIRED_CRDS.iter().map(|k| k.crd_name()).collect();
    for name in &names {
        if !served.crds.iter().any(|c| c["metadata"]["name"] == name.as_str()) {
            return Err(ApplyError::Failed(format!(
                "CRD {name} is missing after the base chart (or your credentials may not read it): \
                 check `helm -n {namespace} status istio-base` and `kubectl get crd {name}`"
            )));
        }
    }
    report.push(format!("CRDs present: {}", names.join(", ")));
    report.push(check_crds_current(istio_version, &served).map_err(ApplyError::Failed)?);
    let istiod = wait_for_istiod(cluster, namespace, revision).await?;
    report.push(format!("istiod rolled out (Deployment {namespace}/{istiod})"));
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
    report.push(injection_works(cluster).await?);
    Ok(report)
}

/// Waits for the istiod Deployment of `revision`, found by its labels (`app=istiod`,
/// `istio.io/rev`): with a revision it is `istiod-<revision>`, not `istiod`. Returns its name.
async fn wait_for_istiod(cluster: &Cluster, namespace: &str, revision: &str) -> Result<String> {
    let deployments: Api<Deployment> = Api::namespaced(cluster.client.clone(), namespace);
    let selector = format!("app=istiod,istio.io/rev={revision}");
    cluster
        .wait_for(&format!("waiting for istiod ({selector}) to roll out"), || {
            let (deployments, selector) = (deployments.clone(), selector.clone());
            async move {
                let found = deployments
                    .list(&ListParams::default().labels(&selector))
                    .await
                    .map_err(api_error(format!("listing istiod Deployments ({selector}) in {namespace}")))?;
                let Some(istiod) = found.items.into_iter().next() else {
                    return Ok(Err(format!(
                        "no istiod Deployment labelled {selector} in {namespace} yet: check `helm -n {namespace} status istiod` \
                         and `kubectl -n {namespace} get deploy -l app=istiod -L istio.io/rev`"
                    )));
                };
                let name = istiod.metadata.name.clone().unwrap_or_default();
                Ok(Controller::Deployment(istiod).rollout_complete().map(|()| name))
            }
        })
        .await
}

/// The name of the pod the injection check creates, as a server dry run: nothing is stored.
pub const INJECTION_CHECK_POD: &str = "xnat-guard-injection-check";

/// Proves injection works: a pod created with `dryRun=All` in a namespace labelled
/// `istio-injection=enabled` comes back from the admission chain with an `istio-proxy`
/// container. Without such a namespace, a pod labelled `sidecar.istio.io/inject=true` in
/// `default` asks the same webhook (its object selector).
async fn injection_works(cluster: &Cluster) -> Result<String> {
    let namespaces: Api<Namespace> = Api::all(cluster.client.clone());
    let labelled = namespaces
        .list(&ListParams::default().labels("istio-injection=enabled"))
        .await
        .map_err(api_error("listing namespaces labelled istio-injection=enabled"))?;
    let (namespace, labels, how) = match labelled.items.first().and_then(|n| n.metadata.name.clone()) {
        Some(ns) => (ns, json!({}), "labelled istio-injection=enabled"),
        None => (
            "default".to_string(),
            json!({"sidecar.istio.io/inject": "true"}),
            "as a pod labelled sidecar.istio.io/inject=true",
        ),
    };
    let pod: Pod = serde_json::from_value(json!({
        "apiVersion": "v1", "kind": "Pod",
        "metadata": {"name": INJECTION_CHECK_POD, "labels": labels},
        "spec": {"containers": [{"name": "check", "image": "registry.k8s.io/pause:3.10"}]}
    }))
    .map_err(|e| ApplyError::Failed(format!("building the injection check pod: {e}")))?;
    let pods: Api<Pod> = Api::namespaced(cluster.client.clone(), &namespace);
    let params = PostParams { dry_run: true, ..Default::default() };
    let created = match pods.create(&params, &pod).await {
        Ok(created) => created,
        // Pod Security admission judges the pod after injection: istio-init's capabilities.
        Err(kube::Error::Api(s)) if s.code == 403 && s.message.contains("violates PodSecurity") => {
            return Err(ApplyError::Failed(format!(
                "Pod Security admission in {namespace} would refuse every injected pod: {}. Injection works, but \
                 istio-init needs NET_ADMIN and NET_RAW: install Istio CNI (the istio-cni chart) so pods need no such \
                 capabilities, or relax the namespace's level \
                 (`kubectl label namespace {namespace} pod-security.kubernetes.io/enforce=privileged --overwrite`)",
                s.message
            )));
        }
        Err(e) => {
            return Err(api_error(format!(
                "creating a pod in {namespace} as a server dry run to check sidecar injection \
                 (a webhook failure here means pods would not start: check `kubectl -n istio-system logs deploy/istiod`; \
                 on EKS the API server reaches istiod's webhook on the nodes' port 15017, which the node security group must allow)"
            ))(e));
        }
    };
    let spec = created.spec.unwrap_or_default();
    let containers = spec.containers.iter().chain(spec.init_containers.iter().flatten());
    if containers.into_iter().any(|c| c.name == "istio-proxy") {
        return Ok(format!("injection works: a pod created in {namespace} ({how}, server dry run) got istio-proxy"));
    }
    Err(ApplyError::Failed(format!(
        "a pod created in {namespace} ({how}, server dry run) came back without istio-proxy: the injection webhook \
         did not mutate it, so restarted pods would run without a sidecar. Check the webhook's selectors \
         (`kubectl get mutatingwebhookconfiguration -l app=sidecar-injector -o yaml`) and istiod's log \
         (`kubectl -n istio-system logs deploy/istiod`)"
    )))
}

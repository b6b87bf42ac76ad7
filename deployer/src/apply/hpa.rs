//! `hpa`: finds the HorizontalPodAutoscalers in a namespace that the sidecar skews
//! ([`crate::plan::hpa`] says which and what to do), and patches those a patch fixes when asked.

use k8s_openapi::api::autoscaling::v2::HorizontalPodAutoscaler;
use kube::api::{Api, ListParams, Patch, PatchParams};

use super::list::{list_controllers, list_pods};
use super::{api_error, Cluster, Result};
use crate::inspect::pods::sidecar_request_millis;
use crate::plan::hpa::{analyse, fixed_metrics, Finding};

/// How `hpa` runs.
#[derive(Debug, Clone, Copy)]
pub struct HpaOptions {
    /// What the sidecar really uses per pod, in millicores (for the AverageValue fix).
    pub sidecar_usage_millis: u64,
    /// Patch each HPA a patch fixes (`--apply`).
    pub apply: bool,
    /// Patch a Helm-rendered HPA too (`--patch-helm-managed`), though the next `helm upgrade`
    /// puts the chart's metric back.
    pub patch_helm_managed: bool,
}

/// Whether the API server is 1.30 or newer (ContainerResource metrics stable).
pub async fn container_resource_supported(cluster: &Cluster) -> Result<bool> {
    let (major, minor) = cluster.server_version().await?;
    Ok(major > 1 || (major == 1 && minor >= 30))
}

/// Finds the HPAs at risk in a namespace; with `apply`, patches those a patch fixes and no
/// Helm release renders (what `status` asks).
pub async fn hpa(cluster: &Cluster, namespace: &str, sidecar_usage_millis: u64, apply: bool) -> Result<Vec<Finding>> {
    hpa_with(cluster, namespace, HpaOptions { sidecar_usage_millis, apply, patch_helm_managed: false }).await
}

/// Finds the HPAs at risk in a namespace, whatever their scale target (the AIS chart's XNAT
/// web is a StatefulSet); patches as `options` say. Each finding says whether it was patched.
pub async fn hpa_with(cluster: &Cluster, namespace: &str, options: HpaOptions) -> Result<Vec<Finding>> {
    let supported = container_resource_supported(cluster).await?;
    let hpas: Api<HorizontalPodAutoscaler> = Api::namespaced(cluster.client.clone(), namespace);
    let list = hpas
        .list(&ListParams::default())
        .await
        .map_err(api_error(format!("listing HorizontalPodAutoscalers in {namespace}")))?;
    if list.items.is_empty() {
        return Ok(Vec::new());
    }
    let controllers = list_controllers(cluster, namespace).await?;
    let pods = list_pods(cluster, namespace).await?;
    let mut findings = Vec::new();
    for h in &list.items {
        let Some(target) = h.spec.as_ref().map(|s| &s.scale_target_ref) else { continue };
        let Some(c) = controllers.iter().find(|c| c.kind().kind == target.kind && c.name() == target.name) else {
            continue;
        };
        let Some(template) = c.pod_spec() else { continue };
        // The sidecar is injected at pod creation, so its request is read from a running pod.
        // A workload none of whose pods runs a sidecar is not skewed (yet).
        let Some(sidecar) = pods.iter().filter(|p| c.owns(p)).find_map(sidecar_request_millis) else { continue };
        let Some(mut f) = analyse(h, template, sidecar, options.sidecar_usage_millis, supported) else { continue };
        if options.apply && f.patchable(options.patch_helm_managed) {
            if let Some(patch) = fixed_metrics(h, &f) {
                let pp = if cluster.opts.dry_run { PatchParams::default().dry_run() } else { PatchParams::default() };
                hpas.patch(&f.hpa, &pp, &Patch::Merge(&patch))
                    .await
                    .map_err(api_error(format!("patching HorizontalPodAutoscaler {namespace}/{}", f.hpa)))?;
                f.patched = true;
            }
        }
        findings.push(f);
    }
    Ok(findings)
}

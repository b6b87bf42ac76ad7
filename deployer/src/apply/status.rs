//! `status`: reads what the runbook's troubleshooting list looks at, for
//! [`crate::inspect::status`] to judge.

use k8s_openapi::api::core::v1::Namespace;
use kube::api::{Api, DynamicObject, ListParams};

use super::hpa::hpa;
use super::list::list_pods;
use super::verify::{module_state, ENVOY_METRICS_PORT};
use super::{api_error, Cluster, Result};
use crate::inspect::pods::is_terminated;
use crate::inspect::status::{self, has_ready_sidecar, selected_by_a_wasm_plugin, Observed, ObservedPod, Status};
use crate::kind::Kind;
use crate::plan::hpa::DEFAULT_SIDECAR_USAGE_MILLIS;

pub async fn status(cluster: &Cluster, namespace: &str) -> Result<Status> {
    let ns_api: Api<Namespace> = Api::all(cluster.client.clone());
    let ns = ns_api.get(namespace).await.map_err(api_error(format!("reading namespace {namespace}")))?;
    let injection_label = ns.metadata.labels.as_ref().and_then(|l| l.get("istio-injection")).cloned();
    let peer_authentications = list(cluster, Kind::PEER_AUTHENTICATION, None).await?;
    let destination_rules = list(cluster, Kind::DESTINATION_RULE, None).await?;
    let wasm_plugins = list(cluster, Kind::WASM_PLUGIN, Some(namespace)).await?;
    let mut pods = Vec::new();
    for pod in list_pods(cluster, namespace).await?.into_iter().filter(|p| !is_terminated(p)) {
        let name = pod.metadata.name.clone().unwrap_or_default();
        let ready = has_ready_sidecar(&pod);
        let metrics = if ready {
            Some(cluster.pod_metrics(namespace, &name, ENVOY_METRICS_PORT).await.map_err(|e| e.to_string()))
        } else {
            None
        };
        let module = if ready && selected_by_a_wasm_plugin(&pod, &wasm_plugins) {
            Some(module_state(cluster, namespace, &name).await)
        } else {
            None
        };
        pods.push(ObservedPod { pod, metrics, module });
    }
    let hpas_at_risk = hpa(cluster, namespace, DEFAULT_SIDECAR_USAGE_MILLIS, false).await?;
    let observed = Observed {
        namespace: namespace.to_string(),
        injection_label,
        peer_authentications,
        destination_rules,
        wasm_plugins,
        pods,
        hpas_at_risk,
    };
    Ok(status::report(&observed))
}

/// Every object of an Istio kind, in one namespace or all of them.
async fn list(cluster: &Cluster, kind: Kind, namespace: Option<&str>) -> Result<Vec<DynamicObject>> {
    let what = format!("listing {}s ({})", kind.kind, kind.group);
    Ok(cluster.dynamic_api(&kind, namespace).list(&ListParams::default()).await.map_err(api_error(what))?.items)
}

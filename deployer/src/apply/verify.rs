//! Verifying a rollout took: every pod of the injected controllers runs a ready sidecar; and
//! what a sidecar's agent fetched, which `status` shows (whether the filter enforces the
//! rollout's configuration is [`super::enforced`]'s).

use std::collections::BTreeMap;

use k8s_openapi::api::core::v1::Pod;
use kube::api::{Api, ListParams};

use super::{api_error, ApplyError, Cluster, Result};
use crate::inspect::controllers::Controller;
use crate::inspect::metrics::ModuleState;
use crate::inspect::pods::{self, Sidecar};

/// The agent's metrics port (pod port 15020).
pub const AGENT_METRICS_PORT: u16 = 15020;
/// The sidecar Envoy's metrics port, where the filter's counters are (pod port 15090).
pub const ENVOY_METRICS_PORT: u16 = 15090;

/// Polls until every live pod of the controllers restarted, and every pod the WasmPlugin
/// selects, runs a ready `istio-proxy`. Other pods of the namespace are not this rollout's.
pub async fn wait_for_sidecars(
    cluster: &Cluster,
    namespace: &str,
    controllers: &[&Controller],
    selector: &BTreeMap<String, String>,
) -> Result<Vec<Pod>> {
    let api: Api<Pod> = Api::namespaced(cluster.client.clone(), namespace);
    let result = cluster
        .wait_for("verifying every pod runs istio-proxy", || {
            let api = api.clone();
            async move {
                let pods = api.list(&ListParams::default()).await.map_err(api_error("listing pods"))?.items;
                let relevant: Vec<Pod> = pods
                    .into_iter()
                    .filter(|p| {
                        let selected = pods::labels_match(selector, p.metadata.labels.as_ref());
                        !pods::is_terminated(p) && (selected || controllers.iter().any(|c| c.owns(p)))
                    })
                    .collect();
                let bad: Vec<String> = relevant
                    .iter()
                    .filter(|p| !pods::sidecar(p).ready())
                    .map(|p| {
                        let name = p.metadata.name.clone().unwrap_or_default();
                        match pods::sidecar(p) {
                            Sidecar::Missing => format!("{name} has no istio-proxy"),
                            _ => format!("{name}'s istio-proxy is not ready"),
                        }
                    })
                    .collect();
                Ok(if bad.is_empty() { Ok(relevant) } else { Err(bad.join("; ")) })
            }
        })
        .await;
    result.map_err(|e| match e {
        ApplyError::Timeout(m) => ApplyError::Timeout(format!(
            "{m}. Check that namespace {namespace} has istio-injection=enabled (`kubectl get ns {namespace} --show-labels`), \
             that istiod's injection webhook is installed (`deployer install`), and the pod's events (`kubectl -n {namespace} describe pod`)"
        )),
        e => e,
    })
}

/// Reads the agent's fetch counts through the API server's pod proxy. A WasmPlugin that failed
/// to fetch still shows as synced; this does not.
pub async fn module_state(cluster: &Cluster, namespace: &str, pod: &str) -> ModuleState {
    match cluster.pod_metrics(namespace, pod, AGENT_METRICS_PORT).await {
        Ok(text) => ModuleState::from_agent_metrics(&text),
        Err(e) => ModuleState::Unknown(format!("reading the agent's metrics through the pod proxy: {e}")),
    }
}

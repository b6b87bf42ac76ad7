//! Proof that the plan's configuration is enforced in every pod the WasmPlugin selects: each
//! sidecar's filter publishes the digest of the configuration in force
//! ([`crate::inspect::enforcement`]); this polls every pod's sidecar through the API server's
//! pod proxy until all show this rollout's digest, and otherwise says, per pod, why not.

use super::verify::{AGENT_METRICS_PORT, ENVOY_METRICS_PORT};
use super::{ApplyError, Cluster, Result};
use crate::inspect::enforcement::{diagnose, Enforcement};

/// How much of the sidecar's log is read to find why a pod is not enforcing.
const LOG_LINES: u32 = 300;

/// Waits until every pod in `pods` shows `digest`, one pod after the other (each within the
/// timeout), or fails naming the first pod that does not and why (the agent's failed fetches,
/// the sidecar's log line), and which pods do.
pub async fn wait_until_enforced(cluster: &Cluster, namespace: &str, pods: &[String], digest: u64) -> Result<()> {
    for (i, pod) in pods.iter().enumerate() {
        let what = format!("waiting for pod {pod} to enforce configuration {digest:x}");
        let waited = cluster
            .wait_for(&what, || async move {
                let state = read(cluster, namespace, pod, digest).await;
                Ok(if state == Enforcement::Enforcing { Ok(()) } else { Err(state.to_string()) })
            })
            .await;
        match waited {
            Ok(()) => {}
            Err(ApplyError::Timeout(_)) => {
                let state = read(cluster, namespace, pod, digest).await;
                let agent = cluster.pod_metrics(namespace, pod, AGENT_METRICS_PORT).await.ok();
                let log = cluster
                    .get_text(&format!(
                        "/api/v1/namespaces/{namespace}/pods/{pod}/log?container=istio-proxy&tailLines={LOG_LINES}"
                    ))
                    .await
                    .ok();
                let enforcing = if i == 0 { "none yet".to_string() } else { pods[..i].join(", ") };
                return Err(ApplyError::Failed(format!(
                    "after {}s the filter in pod {pod} does not enforce this configuration ({digest:x}): {} \
                     (enforcing it: {enforcing}). See `kubectl -n {namespace} logs {pod} -c istio-proxy`",
                    cluster.opts.timeout.as_secs(),
                    diagnose(&state, agent.as_deref(), log.as_deref())
                )));
            }
            Err(e) => return Err(e),
        }
    }
    Ok(())
}

async fn read(cluster: &Cluster, namespace: &str, pod: &str, digest: u64) -> Enforcement {
    match cluster.pod_metrics(namespace, pod, ENVOY_METRICS_PORT).await {
        Ok(text) => Enforcement::judge(&text, digest),
        Err(e) => Enforcement::Unreadable(e.to_string()),
    }
}

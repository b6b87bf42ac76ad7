//! Proof that the plan's configuration is enforced in every pod the WasmPlugin selects: each
//! sidecar's filter publishes the digest of the configuration in force
//! ([`crate::inspect::enforcement`]); this polls every pod's sidecar through the API server's
//! pod proxy until all show this rollout's digest, and otherwise says, per pod, why not.

use super::verify::{AGENT_METRICS_PORT, ENVOY_METRICS_PORT};
use super::{ApplyError, Cluster, Result};
use crate::inspect::enforcement::{diagnose, Enforcement};

/// How much of the sidecar's log is read to find why a pod is not enforcing.
const LOG_LINES: u32 = 300;

/// Waits until every pod in `pods` shows `digest`, or fails after the timeout naming each pod
/// that does not and why (the agent's failed fetches, the sidecar's log line).
pub async fn wait_until_enforced(cluster: &Cluster, namespace: &str, pods: &[String], digest: u64) -> Result<()> {
    let what = format!("waiting for {} pod(s) to enforce configuration {digest:x}", pods.len());
    let waited = cluster
        .wait_for(&what, || async move {
            let mut lagging = Vec::new();
            for pod in pods {
                let state = read(cluster, namespace, pod, digest).await;
                if state != Enforcement::Enforcing {
                    lagging.push(format!("{pod}: {state}"));
                }
            }
            Ok(if lagging.is_empty() { Ok(()) } else { Err(lagging.join("; ")) })
        })
        .await;
    match waited {
        Ok(()) => Ok(()),
        Err(ApplyError::Timeout(_)) => {
            let mut reasons = Vec::new();
            for pod in pods {
                let state = read(cluster, namespace, pod, digest).await;
                if state == Enforcement::Enforcing {
                    continue;
                }
                let agent = cluster.pod_metrics(namespace, pod, AGENT_METRICS_PORT).await.ok();
                let log = cluster
                    .get_text(&format!(
                        "/api/v1/namespaces/{namespace}/pods/{pod}/log?container=istio-proxy&tailLines={LOG_LINES}"
                    ))
                    .await
                    .ok();
                reasons.push(format!("pod {pod}: {}", diagnose(&state, agent.as_deref(), log.as_deref())));
            }
            Err(ApplyError::Failed(format!(
                "after {}s the filter does not enforce this configuration ({digest:x}) in every pod: {}. \
                 See `kubectl -n {namespace} logs POD -c istio-proxy`",
                cluster.opts.timeout.as_secs(),
                reasons.join("; ")
            )))
        }
        Err(e) => Err(e),
    }
}

async fn read(cluster: &Cluster, namespace: &str, pod: &str, digest: u64) -> Enforcement {
    match cluster.pod_metrics(namespace, pod, ENVOY_METRICS_PORT).await {
        Ok(text) => Enforcement::judge(&text, digest),
        Err(e) => Enforcement::Unreadable(e.to_string()),
    }
}

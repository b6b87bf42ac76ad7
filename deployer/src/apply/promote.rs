//! `promote`: reads what the dry-run rollout left in the cluster (the WasmPlugin, the dry-run
//! policies, every pod the WasmPlugin selects and its filter's would-deny records) for
//! [`crate::plan::promote::judge`], and, when the evidence allows it (or `--force`), rolls out
//! the promoted plan through [`super::rollout`] (canary, verification). A refusal changes
//! nothing: every request before it is a read.

use std::collections::BTreeMap;
use std::time::Duration;

use k8s_openapi::api::core::v1::Pod;
use kube::api::DeleteParams;
use serde_json::Value;

use super::list::list_pods;
use super::rollout::{rollout, RolloutReport};
use super::verify::ENVOY_METRICS_PORT;
use super::{api_error, ApplyError, Cluster, Result};
use crate::inspect::ownership::{self, Undo};
use crate::inspect::pods::{self, is_terminated};
use crate::kind::Kind;
use crate::plan::promote::{judge, Evidence, Gate, PodEvidence, Promotion};
use crate::plan::rollout::GENERATED_NAME;

/// What a promotion did, for printing.
#[derive(Debug, Clone)]
pub struct Promoted {
    /// The evidence as judged; with `--force`, its refusals were overridden.
    pub gate: Gate,
    /// The rollout of the promoted plan; `None` when the cluster already ran it.
    pub report: Option<RolloutReport>,
    /// What became of the promoted policies' dry-run objects in the cluster.
    pub cluster_objects: Vec<String>,
}

/// Reads the evidence and judges it. Reads only.
pub async fn judge_cluster(
    cluster: &Cluster,
    promotion: &Promotion,
    namespace: &str,
    window: Option<Duration>,
) -> Result<Gate> {
    cluster.require_namespace(namespace).await?;
    let evidence = read_evidence(cluster, promotion, namespace).await?;
    Ok(judge(promotion, &evidence, window))
}

/// The refusal, as the error the command exits with: every reason, and that nothing changed.
pub fn refusal(gate: &Gate) -> ApplyError {
    let reasons: Vec<String> = gate.refusals.iter().map(|r| format!("  - {r}")).collect();
    ApplyError::Failed(format!(
        "promote refused; nothing was changed:\n{}\n--force promotes anyway (what is listed above would then be denied)",
        reasons.join("\n")
    ))
}

/// Judges the cluster's evidence, then (if it passes, or with `force`) rolls out the promoted
/// plan and takes the promoted policies' dry-run objects out of the cluster where the promoted
/// plan does not apply them.
pub async fn promote(
    cluster: &Cluster,
    promotion: &Promotion,
    namespace: &str,
    window: Option<Duration>,
    force: bool,
) -> Result<Promoted> {
    let gate = judge_cluster(cluster, promotion, namespace, window).await?;
    if gate.already_promoted {
        return Ok(Promoted { gate, report: None, cluster_objects: Vec::new() });
    }
    if !gate.passes() && !force {
        return Err(refusal(&gate));
    }
    enforce(cluster, promotion, namespace, gate).await
}

/// Rolls out the promoted plan (`gate` passed, or was forced), then removes the promoted
/// policies' dry-run objects the deployer created, where the promoted plan does not apply
/// them: the filter enforces them now, and an object saying dry-run would mislead.
pub async fn enforce(cluster: &Cluster, promotion: &Promotion, namespace: &str, gate: Gate) -> Result<Promoted> {
    let report = rollout(cluster, &promotion.promoted, namespace).await?;
    let mut cluster_objects = Vec::new();
    let kind = Kind::AUTHORIZATION_POLICY;
    for (ns, name) in &promotion.leave_cluster {
        let what = format!("{} {ns}/{name}", kind.kind);
        let api = cluster.dynamic_api(&kind, Some(ns));
        let Some(found) = api.get_opt(name).await.map_err(api_error(format!("reading {what}")))? else {
            continue;
        };
        let object = serde_json::to_value(&found).unwrap_or(Value::Null);
        let line = if ownership::is_managed(&object)
            && ownership::undo_action(&object, namespace, |_| true) == Undo::Delete
        {
            let dp = DeleteParams { dry_run: cluster.opts.dry_run, ..Default::default() };
            api.delete(name, &dp).await.map_err(api_error(format!("deleting {what}")))?;
            format!(
                "{what}: its dry-run object deleted; the filter enforces it (WasmPlugin {namespace}/{GENERATED_NAME}), and \
                 Istio's RBAC would too only with --native-authz"
            )
        } else {
            format!(
                "{what}: left in the cluster as it is (the deployer did not create it); the filter enforces it \
                 (WasmPlugin {namespace}/{GENERATED_NAME})"
            )
        };
        cluster.say(&line);
        cluster_objects.push(line);
    }
    Ok(Promoted { gate, report: Some(report), cluster_objects })
}

/// The WasmPlugin, the dry-run policies and the selected pods' sidecars, as the cluster has them.
async fn read_evidence(cluster: &Cluster, promotion: &Promotion, namespace: &str) -> Result<Evidence> {
    let now = k8s_openapi::jiff::Timestamp::now().as_second();
    let wasm_api = cluster.dynamic_api(&Kind::WASM_PLUGIN, Some(namespace));
    let wasm = wasm_api
        .get_opt(GENERATED_NAME)
        .await
        .map_err(api_error(format!("reading WasmPlugin {namespace}/{GENERATED_NAME}")))?
        .and_then(|w| serde_json::to_value(w).ok());
    let mut policies = Vec::new();
    for m in &promotion.dry_run_manifests {
        let api = cluster.dynamic_api(&m.kind, m.namespace.as_deref());
        let found = api.get_opt(&m.name).await.map_err(api_error(format!("reading {}", m.describe())))?;
        policies.push(found.and_then(|o| serde_json::to_value(o).ok()));
    }
    // The pods the WasmPlugin in the cluster selects (the plan's workload when there is none).
    let selector: BTreeMap<String, String> = wasm
        .as_ref()
        .and_then(|w| serde_json::from_value(w["spec"]["selector"]["matchLabels"].clone()).ok())
        .unwrap_or_else(|| promotion.dry_run.target.labels.clone());
    let mut pods = Vec::new();
    for pod in list_pods(cluster, namespace).await? {
        if is_terminated(&pod) || !pods::labels_match(&selector, pod.metadata.labels.as_ref()) {
            continue;
        }
        let name = pod.metadata.name.clone().unwrap_or_default();
        let metrics = if pods::sidecar(&pod).ready() {
            cluster.pod_metrics(namespace, &name, ENVOY_METRICS_PORT).await.map_err(|e| match e {
                kube::Error::Api(s) => format!("{} ({})", s.message, s.code),
                e => e.to_string(),
            })
        } else {
            Err(format!("it has no ready istio-proxy (`kubectl -n {namespace} describe pod {name}`)"))
        };
        pods.push(PodEvidence { name, metrics, sidecar_started: sidecar_started(&pod) });
    }
    Ok(Evidence { now, wasm_plugin: wasm, policies, pods })
}

/// When the pod's istio-proxy container last started running (Unix seconds).
fn sidecar_started(pod: &Pod) -> Option<i64> {
    let status = pod.status.as_ref()?;
    status
        .container_statuses
        .iter()
        .chain(status.init_container_statuses.iter())
        .flatten()
        .find(|c| c.name == "istio-proxy")
        .and_then(|c| c.state.as_ref()?.running.as_ref()?.started_at.as_ref())
        .map(|t| t.0.as_second())
}

//! `rollout`: applies the plan [`crate::plan::rollout`] computed, restarts the controllers whose
//! pods lack the sidecar, waits for them, and verifies the sidecars and the module.

use std::collections::BTreeMap;

use k8s_openapi::api::apps::v1::{Deployment, StatefulSet};
use k8s_openapi::api::core::v1::Pod;
use kube::api::{Api, Patch, PatchParams};
use serde_json::json;

use super::list::{list_controllers, list_pods};
use super::verify::{module_state, wait_for_sidecars};
use super::wait::wait_rollout;
use super::{api_error, Applied, ApplyError, Cluster, Result};
use crate::inspect::controllers::Controller;
use crate::inspect::metrics::ModuleState;
use crate::inspect::pods::{self, Sidecar};
use crate::plan::rollout::Plan;

/// The result of a rollout, for printing.
#[derive(Debug, Clone)]
pub struct RolloutReport {
    pub applied: Vec<(String, Applied)>,
    pub restarted: Vec<String>,
    pub skipped: Vec<String>,
    pub pods: Vec<Pod>,
    pub modules: Vec<(String, ModuleState)>,
}

/// Applies the plan, restarts the controllers whose pods lack the sidecar, waits, and verifies.
pub async fn rollout(cluster: &Cluster, plan: &Plan, namespace: &str) -> Result<RolloutReport> {
    let mut applied = Vec::new();
    for m in &plan.manifests {
        let outcome = cluster.apply(m).await?;
        cluster.say(format!("{}: {outcome}", m.describe()));
        applied.push((m.describe(), outcome));
    }

    let controllers = list_controllers(cluster, namespace).await?;
    let pods = list_pods(cluster, namespace).await?;
    let mut restarted = Vec::new();
    let mut skipped = Vec::new();
    for c in &controllers {
        if c.opted_out_of_injection() {
            skipped.push(format!("{}: opted out of injection (sidecar.istio.io/inject: \"false\")", c.describe()));
            continue;
        }
        let owned: Vec<&Pod> = pods.iter().filter(|p| c.owns(p) && !pods::is_terminated(p)).collect();
        let lacking = owned.iter().filter(|p| pods::sidecar(p) == Sidecar::Missing).count();
        if lacking == 0 {
            continue;
        }
        if cluster.opts.dry_run {
            cluster.say(format!("{}: {lacking} pod(s) without the sidecar; would restart (dry run)", c.describe()));
            continue;
        }
        restart(cluster, namespace, c).await?;
        cluster.say(format!("{}: restarted ({lacking} pod(s) had no sidecar)", c.describe()));
        restarted.push(c.describe());
    }
    if cluster.opts.dry_run {
        return Ok(RolloutReport { applied, restarted, skipped, pods, modules: Vec::new() });
    }

    let injected: Vec<&Controller> = controllers.iter().filter(|c| !c.opted_out_of_injection()).collect();
    for c in &injected {
        wait_rollout(cluster, namespace, c).await?;
    }
    let pods = wait_for_sidecars(cluster, namespace, &injected).await?;
    let selector: &BTreeMap<String, String> = &plan.target.labels;
    let mut modules = Vec::new();
    for p in pods.iter().filter(|p| pods::labels_match(selector, p.metadata.labels.as_ref())) {
        let name = p.metadata.name.clone().unwrap_or_default();
        let state = module_state(cluster, namespace, &name).await;
        cluster.say(format!("pod {name}: module {state}"));
        modules.push((name, state));
    }
    if modules.is_empty() {
        skipped.push(format!(
            "no running pod matches the WasmPlugin's selector {}: the filter protects nothing yet",
            selector.iter().map(|(k, v)| format!("{k}={v}")).collect::<Vec<_>>().join(",")
        ));
    }
    if let Some((pod, ModuleState::FetchFailed(results))) =
        modules.iter().find(|(_, s)| matches!(s, ModuleState::FetchFailed(_)))
    {
        return Err(ApplyError::Failed(format!(
            "the sidecar of pod {pod} could not fetch the module ({results:?}); with FAIL_CLOSE its listener refuses traffic. \
             Check that the registry is reachable from the pod, that --sha256 is the digest `deployer push` printed, \
             and the pod's istio-proxy log (kubectl logs {pod} -c istio-proxy)"
        )));
    }
    Ok(RolloutReport { applied, restarted, skipped, pods, modules })
}

/// What `kubectl rollout restart` does: a new pod-template annotation.
async fn restart(cluster: &Cluster, namespace: &str, c: &Controller) -> Result<()> {
    let now = k8s_openapi::jiff::Timestamp::now().to_string();
    let patch = json!({ "spec": { "template": { "metadata": { "annotations": {
        "kubectl.kubernetes.io/restartedAt": now } } } } });
    let pp = PatchParams::default();
    let what = format!("restarting {}", c.describe());
    match c {
        Controller::Deployment(_) => {
            let api: Api<Deployment> = Api::namespaced(cluster.client.clone(), namespace);
            api.patch(c.name(), &pp, &Patch::Strategic(&patch)).await.map_err(api_error(what))?;
        }
        Controller::StatefulSet(_) => {
            let api: Api<StatefulSet> = Api::namespaced(cluster.client.clone(), namespace);
            api.patch(c.name(), &pp, &Patch::Strategic(&patch)).await.map_err(api_error(what))?;
        }
    }
    Ok(())
}

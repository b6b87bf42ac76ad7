//! `rollout` and `rollout --undo`.

use std::collections::BTreeMap;

use k8s_openapi::api::apps::v1::{Deployment, StatefulSet};
use k8s_openapi::api::core::v1::Pod;
use kube::api::{Api, DeleteParams, ListParams, Patch, PatchParams};
use serde_json::json;

use super::pods::{self, Sidecar, Workload};
use super::{api_error, Applied, Cluster, ClusterError, Result};
use crate::plan::{Plan, MANAGED_BY, MANAGED_KINDS, NAMESPACE, PEER_AUTHENTICATION};

/// What the module check found for one pod.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum ModuleState {
    /// The agent fetched the module (count of successful fetches).
    Loaded(u64),
    /// The agent reported failed fetches: result label and count.
    FetchFailed(Vec<(String, u64)>),
    /// No fetch recorded yet.
    NotFetched,
    /// The agent's metrics could not be read; why.
    Unknown(String),
}

impl std::fmt::Display for ModuleState {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        match self {
            ModuleState::Loaded(n) => write!(f, "loaded ({n} successful fetch(es))"),
            ModuleState::FetchFailed(r) => {
                let r: Vec<String> = r.iter().map(|(k, v)| format!("{k}={v}")).collect();
                write!(f, "FETCH FAILED ({})", r.join(", "))
            }
            ModuleState::NotFetched => write!(f, "not fetched yet"),
            ModuleState::Unknown(why) => write!(f, "could not be checked: {why}"),
        }
    }
}

/// The result of a rollout, for printing.
#[derive(Debug, Clone)]
pub struct RolloutReport {
    pub applied: Vec<(String, Applied)>,
    pub restarted: Vec<String>,
    pub skipped: Vec<String>,
    pub pods: Vec<Pod>,
    pub modules: Vec<(String, ModuleState)>,
}

/// Applies the plan, restarts workloads whose pods lack the sidecar, waits, and verifies.
pub async fn rollout(cluster: &Cluster, plan: &Plan, namespace: &str) -> Result<RolloutReport> {
    let mut applied = Vec::new();
    for m in &plan.manifests {
        let outcome = cluster.apply(m).await?;
        cluster.say(format!("{}: {outcome}", m.describe()));
        applied.push((m.describe(), outcome));
    }

    let workloads = list_workloads(cluster, namespace).await?;
    let pods_api: Api<Pod> = Api::namespaced(cluster.client.clone(), namespace);
    let pods =
        pods_api.list(&ListParams::default()).await.map_err(api_error(format!("listing pods in {namespace}")))?;
    let mut restarted = Vec::new();
    let mut skipped = Vec::new();
    for w in &workloads {
        if w.opted_out_of_injection() {
            skipped.push(format!("{}: opted out of injection (sidecar.istio.io/inject: \"false\")", w.describe()));
            continue;
        }
        let owned: Vec<&Pod> = pods.items.iter().filter(|p| w.owns(p) && !pods::is_terminated(p)).collect();
        let lacking = owned.iter().filter(|p| pods::sidecar(p) == Sidecar::Missing).count();
        if lacking == 0 {
            continue;
        }
        if cluster.opts.dry_run {
            cluster.say(format!("{}: {lacking} pod(s) without the sidecar; would restart (dry run)", w.describe()));
            continue;
        }
        restart(cluster, namespace, w).await?;
        cluster.say(format!("{}: restarted ({lacking} pod(s) had no sidecar)", w.describe()));
        restarted.push(w.describe());
    }
    if cluster.opts.dry_run {
        return Ok(RolloutReport { applied, restarted, skipped, pods: pods.items, modules: Vec::new() });
    }

    let injected: Vec<&Workload> = workloads.iter().filter(|w| !w.opted_out_of_injection()).collect();
    for w in &injected {
        wait_rollout(cluster, namespace, w).await?;
    }
    let pods = wait_for_sidecars(cluster, namespace, &injected).await?;
    let selector: BTreeMap<String, String> = plan.workload.labels.clone();
    let mut modules = Vec::new();
    for p in pods.iter().filter(|p| pods::labels_match(&selector, p.metadata.labels.as_ref())) {
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
        return Err(ClusterError::Failed(format!(
            "the sidecar of pod {pod} could not fetch the module ({results:?}); with FAIL_CLOSE its listener refuses traffic. \
             Check that the registry is reachable from the pod, that --sha256 is the digest `deployer push` printed, \
             and the pod's istio-proxy log (kubectl logs {pod} -c istio-proxy)"
        )));
    }
    Ok(RolloutReport { applied, restarted, skipped, pods, modules })
}

pub async fn list_workloads(cluster: &Cluster, namespace: &str) -> Result<Vec<Workload>> {
    let deployments: Api<Deployment> = Api::namespaced(cluster.client.clone(), namespace);
    let statefulsets: Api<StatefulSet> = Api::namespaced(cluster.client.clone(), namespace);
    let lp = ListParams::default();
    let mut out: Vec<Workload> = deployments
        .list(&lp)
        .await
        .map_err(api_error(format!("listing Deployments in {namespace}")))?
        .items
        .into_iter()
        .map(Workload::Deployment)
        .collect();
    out.extend(
        statefulsets
            .list(&lp)
            .await
            .map_err(api_error(format!("listing StatefulSets in {namespace}")))?
            .items
            .into_iter()
            .map(Workload::StatefulSet),
    );
    Ok(out)
}

/// What `kubectl rollout restart` does: a new pod-template annotation.
async fn restart(cluster: &Cluster, namespace: &str, w: &Workload) -> Result<()> {
    let now = k8s_openapi::jiff::Timestamp::now().to_string();
    let patch = json!({ "spec": { "template": { "metadata": { "annotations": {
        "kubectl.kubernetes.io/restartedAt": now } } } } });
    let pp = PatchParams::default();
    let what = format!("restarting {}", w.describe());
    match w {
        Workload::Deployment(_) => {
            let api: Api<Deployment> = Api::namespaced(cluster.client.clone(), namespace);
            api.patch(w.name(), &pp, &Patch::Strategic(&patch)).await.map_err(api_error(what))?;
        }
        Workload::StatefulSet(_) => {
            let api: Api<StatefulSet> = Api::namespaced(cluster.client.clone(), namespace);
            api.patch(w.name(), &pp, &Patch::Strategic(&patch)).await.map_err(api_error(what))?;
        }
    }
    Ok(())
}

async fn wait_rollout(cluster: &Cluster, namespace: &str, w: &Workload) -> Result<()> {
    let name = w.name().to_string();
    let is_deployment = matches!(w, Workload::Deployment(_));
    let what = format!("waiting for {} to roll out", w.describe());
    cluster
        .wait_for(&what, || {
            let name = name.clone();
            async move {
                let current = if is_deployment {
                    let api: Api<Deployment> = Api::namespaced(cluster.client.clone(), namespace);
                    Workload::Deployment(api.get(&name).await.map_err(api_error(format!("reading Deployment {name}")))?)
                } else {
                    let api: Api<StatefulSet> = Api::namespaced(cluster.client.clone(), namespace);
                    Workload::StatefulSet(
                        api.get(&name).await.map_err(api_error(format!("reading StatefulSet {name}")))?,
                    )
                };
                Ok(current.rollout_complete())
            }
        })
        .await
        .map_err(|e| match e {
            ClusterError::Timeout(m) => ClusterError::Timeout(format!(
                "{m}. See `kubectl -n {namespace} describe {} {}` and its pods' events",
                w.kind().to_lowercase(),
                w.name()
            )),
            e => e,
        })
}

/// Polls until every live pod of the injected workloads runs a ready `istio-proxy`.
async fn wait_for_sidecars(cluster: &Cluster, namespace: &str, workloads: &[&Workload]) -> Result<Vec<Pod>> {
    let api: Api<Pod> = Api::namespaced(cluster.client.clone(), namespace);
    let result = cluster
        .wait_for("verifying every pod runs istio-proxy", || {
            let api = api.clone();
            async move {
                let pods = api.list(&ListParams::default()).await.map_err(api_error("listing pods"))?.items;
                let relevant: Vec<Pod> = pods
                    .into_iter()
                    .filter(|p| !pods::is_terminated(p) && workloads.iter().any(|w| w.owns(p)))
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
        ClusterError::Timeout(m) => ClusterError::Timeout(format!(
            "{m}. Check that namespace {namespace} has istio-injection=enabled (`kubectl get ns {namespace} --show-labels`), \
             that istiod's injection webhook is installed (`deployer install`), and the pod's events (`kubectl -n {namespace} describe pod`)"
        )),
        e => e,
    })
}

/// Reads the agent's `istio_agent_wasm_remote_fetch_count` through the API server's pod proxy
/// (pod port 15020). A WasmPlugin that failed to fetch still shows as synced; this does not.
pub async fn module_state(cluster: &Cluster, namespace: &str, pod: &str) -> ModuleState {
    let path = format!("/api/v1/namespaces/{namespace}/pods/{pod}:15020/proxy/stats/prometheus");
    let text = match cluster.get_text(&path).await {
        Ok(t) => t,
        Err(e) => return ModuleState::Unknown(format!("reading the agent's metrics through the pod proxy: {e}")),
    };
    let counts = prometheus_values(&text, "istio_agent_wasm_remote_fetch_count", "result");
    let success: u64 = counts.iter().filter(|(r, _)| r == "success").map(|(_, v)| v).sum();
    let failed: Vec<(String, u64)> = counts.into_iter().filter(|(r, v)| r != "success" && *v > 0).collect();
    if !failed.is_empty() {
        ModuleState::FetchFailed(failed)
    } else if success > 0 {
        ModuleState::Loaded(success)
    } else {
        ModuleState::NotFetched
    }
}

/// Values of a Prometheus metric by one label, summed over the other labels.
pub fn prometheus_values(text: &str, metric: &str, label: &str) -> Vec<(String, u64)> {
    let mut out: BTreeMap<String, u64> = BTreeMap::new();
    for line in text.lines().filter(|l| !l.starts_with('#')) {
        let Some(rest) = line.strip_prefix(metric) else { continue };
        let (labels, value) = match rest.strip_prefix('{') {
            Some(r) => match r.split_once('}') {
                Some((labels, value)) => (labels, value),
                None => continue,
            },
            None if rest.starts_with(' ') => ("", rest),
            None => continue, // another metric with this one's name as prefix
        };
        let key = labels
            .split(',')
            .find_map(|kv| kv.split_once('=').filter(|(k, _)| k.trim() == label).map(|(_, v)| v.trim_matches('"')))
            .unwrap_or("")
            .to_string();
        if let Ok(v) = value.trim().parse::<f64>() {
            *out.entry(key).or_default() += v as u64;
        }
    }
    out.into_iter().collect()
}

/// Removes what rollout applied: every object carrying the deployer's label in the namespace
/// (and the mesh-wide PeerAuthentication it created in the root namespace), and the namespace
/// label if the deployer set it. Pods keep their sidecars until restarted.
pub async fn undo(cluster: &Cluster, namespace: &str, root_namespace: &str) -> Result<Vec<String>> {
    let mut removed = Vec::new();
    let lp = ListParams::default().labels(&format!("{}={}", MANAGED_BY.0, MANAGED_BY.1));
    let dp = if cluster.opts.dry_run {
        DeleteParams { dry_run: true, ..Default::default() }
    } else {
        DeleteParams::default()
    };
    for kind in MANAGED_KINDS {
        let mut namespaces = vec![namespace];
        if kind == PEER_AUTHENTICATION && root_namespace != namespace {
            namespaces.push(root_namespace);
        }
        for ns in namespaces {
            let api = cluster.dynamic_api(&kind, Some(ns));
            let list = match api.list(&lp).await {
                Ok(l) => l,
                // The CRD is gone (Istio uninstalled): nothing of that kind to remove.
                Err(kube::Error::Api(s)) if s.code == 404 => continue,
                Err(e) => return Err(api_error(format!("listing {}s in {ns}", kind.kind))(e)),
            };
            for obj in list.items {
                let name = obj.metadata.name.clone().unwrap_or_default();
                api.delete(&name, &dp).await.map_err(api_error(format!("deleting {} {ns}/{name}", kind.kind)))?;
                let line = format!(
                    "{} {ns}/{name}: deleted{}",
                    kind.kind,
                    if cluster.opts.dry_run { " (dry run)" } else { "" }
                );
                cluster.say(&line);
                removed.push(line);
            }
        }
    }
    // Applying the namespace with no labels under our field manager drops the labels only we own.
    let ns_body = json!({ "apiVersion": "v1", "kind": "Namespace", "metadata": { "name": namespace } });
    let api = cluster.dynamic_api(&NAMESPACE, None);
    api.patch(namespace, &cluster.patch_params(), &Patch::Apply(&ns_body))
        .await
        .map_err(api_error(format!("removing the injection label from namespace {namespace}")))?;
    removed.push(format!("Namespace {namespace}: istio-injection label released"));
    cluster.say(format!(
        "Namespace {namespace}: istio-injection label released; running pods keep their sidecars until restarted"
    ));
    Ok(removed)
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn fetch_counts_are_read_by_result() {
        let text = "# TYPE istio_agent_wasm_remote_fetch_count counter\n\
                    istio_agent_wasm_remote_fetch_count{result=\"success\"} 2\n\
                    istio_agent_wasm_remote_fetch_count{result=\"download_failure\"} 0\n\
                    istio_agent_wasm_remote_fetch_count_other{result=\"success\"} 9\n";
        assert_eq!(
            prometheus_values(text, "istio_agent_wasm_remote_fetch_count", "result"),
            vec![("download_failure".to_string(), 0), ("success".to_string(), 2)]
        );
    }
}

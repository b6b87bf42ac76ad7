//! `rollout`: applies the plan [`crate::plan::rollout`] computed, restarts the controllers whose
//! pods lack the sidecar, waits for them, and verifies the sidecars and the module.

use std::collections::BTreeMap;

use k8s_openapi::api::apps::v1::{Deployment, StatefulSet};
use k8s_openapi::api::core::v1::{Pod, Service};
use k8s_openapi::apimachinery::pkg::util::intstr::IntOrString;
use kube::api::{Api, DeleteParams, Patch, PatchParams};
use serde_json::json;

use super::canary::roll_out_filter;
use super::list::{list_controllers, list_pods};
use super::verify::wait_for_sidecars;
use super::wait::{wait_rollout, Look};
use super::{api_error, Applied, ApplyError, Cluster, Result};
use crate::inspect::controllers::Controller;
use crate::inspect::pods::{self, Sidecar};
use crate::kind::Kind;
use crate::plan::rollout::{destination_rule_port_warnings, service_of_host, Plan, ServiceTarget};

/// The result of a rollout, for printing.
#[derive(Debug, Clone)]
pub struct RolloutReport {
    pub applied: Vec<(String, Applied)>,
    pub restarted: Vec<String>,
    pub skipped: Vec<String>,
    pub pods: Vec<Pod>,
    /// The pods whose filter reports this rollout's configuration.
    pub enforcing: Vec<String>,
    /// The pod the new configuration was proven on first, if it was new.
    pub canary: Option<String>,
    /// What is probably a mistake in the user's objects or flags, found in the cluster.
    pub warnings: Vec<String>,
}

/// Applies the plan, restarts the controllers whose pods lack the sidecar, waits, and verifies.
pub async fn rollout(cluster: &Cluster, plan: &Plan, namespace: &str) -> Result<RolloutReport> {
    cluster.require_namespace(namespace).await?;
    // What the cluster serves decides each object's API version and which fields it keeps: a
    // manifest it cannot take is refused here, before anything is applied.
    let served = super::served::served_apis(cluster).await?;
    for m in &plan.manifests {
        super::served::adapted(&served, m)?;
    }
    super::existing::refuse_overridden_peer_authentications(cluster, plan).await?;
    super::existing::require_pull_secret(cluster, plan).await?;
    let plan = &with_services_read(cluster, plan, namespace).await?;
    // The filter's WasmPlugin goes last, after the pods have their sidecars, through a canary
    // (apply::canary): everything else first.
    let mut applied = Vec::new();
    for m in plan.manifests.iter().filter(|m| m.kind != Kind::WASM_PLUGIN) {
        let outcome = cluster.apply(&super::served::adapted(&served, m)?).await?;
        cluster.say(format!("{}: {outcome}", m.describe()));
        applied.push((m.describe(), outcome));
    }

    let controllers = list_controllers(cluster, namespace).await?;
    let pods = list_pods(cluster, namespace).await?;
    let selector: &BTreeMap<String, String> = &plan.target.labels;
    let Restarts { restarted, mut skipped, touched } =
        restart_pods_without_sidecar(cluster, namespace, selector, &controllers, &pods).await?;
    if cluster.opts.dry_run {
        let filter = roll_out_filter(cluster, plan, namespace, &pods, cluster.opts.verify).await?;
        applied.extend(wasm_plugin_outcome(plan, filter.applied));
        let warnings = plan.warnings.clone();
        return Ok(RolloutReport { applied, restarted, skipped, pods, enforcing: Vec::new(), canary: None, warnings });
    }

    // Only what this rollout restarted is waited for: a neighbour that was broken before, or
    // a pod of another workload stuck Pending, is not this rollout's to time out on.
    for c in touched.iter().filter(|c| !c.updates_on_delete()) {
        wait_rollout(cluster, namespace, c).await?;
    }
    let pods = wait_for_sidecars(cluster, namespace, &touched, selector).await?;
    let filter = roll_out_filter(cluster, plan, namespace, &pods, cluster.opts.verify).await?;
    let outcome = wasm_plugin_outcome(plan, filter.applied);
    if let Some((what, applied)) = &outcome {
        cluster.say(format!("{what}: {applied}"));
    }
    applied.extend(outcome);
    for pod in &filter.enforcing {
        cluster.say(format!("pod {pod}: enforcing this configuration"));
    }
    skipped.extend(filter.notes);
    Ok(RolloutReport {
        applied,
        restarted,
        skipped,
        pods,
        enforcing: filter.enforcing,
        canary: filter.canary,
        warnings: plan.warnings.clone(),
    })
}

/// The WasmPlugin's line in the report of what was applied.
fn wasm_plugin_outcome(plan: &Plan, applied: Applied) -> Option<(String, Applied)> {
    plan.manifests.iter().find(|m| m.kind == Kind::WASM_PLUGIN).map(|m| (m.describe(), applied))
}

/// The plan with what only the cluster knows: the ports of the Service `--service` names (a
/// DestinationRule is keyed by them), and warnings for the user's DestinationRules that name
/// a port their Service does not have. Reads each such Service once, before applying anything.
async fn with_services_read(cluster: &Cluster, plan: &Plan, namespace: &str) -> Result<Plan> {
    let mut names: Vec<String> = plan.service.iter().map(|s| s.name.clone()).collect();
    for m in plan.manifests.iter().filter(|m| m.kind == Kind::DESTINATION_RULE) {
        if let Some(name) = m.body["spec"]["host"].as_str().and_then(|h| service_of_host(h, namespace)) {
            names.push(name.to_string());
        }
    }
    names.sort();
    names.dedup();
    let mut plan = plan.clone();
    let mut warnings = Vec::new();
    let api: Api<Service> = Api::namespaced(cluster.client.clone(), namespace);
    for name in names {
        let generated_for = plan.service.as_ref().is_some_and(|s| s.name == name);
        let found = api.get_opt(&name).await.map_err(api_error(format!("reading Service {namespace}/{name}")))?;
        let Some(service) = found else {
            if generated_for {
                return Err(ApplyError::Failed(format!(
                    "--service {name}: there is no Service {namespace}/{name}; `kubectl -n {namespace} get services` lists them"
                )));
            }
            warnings.push(format!(
                "a DestinationRule of yours is for Service {name}, which namespace {namespace} does not have: it applies to nothing"
            ));
            continue;
        };
        let ports = service_ports(&service, plan.service.as_ref().filter(|_| generated_for))?;
        if generated_for {
            plan = plan.with_service_ports(&ports).map_err(|e| ApplyError::Failed(e.to_string()))?;
            warnings.extend(plan.warnings.iter().cloned());
        } else {
            warnings.extend(destination_rule_port_warnings(&plan, &name, &ports, true));
        }
    }
    for w in &warnings {
        cluster.say(format!("warning: {w}"));
    }
    plan.warnings = warnings;
    Ok(plan)
}

/// A Service's ports as `(port, targetPort)`, an absent targetPort being the port itself. A
/// named targetPort cannot be matched to a container port without the pods; where the
/// generated DestinationRule depends on it and `--service-port` did not say, that is refused.
fn service_ports(service: &Service, generated: Option<&ServiceTarget>) -> Result<Vec<(u16, u16)>> {
    let name = service.metadata.name.as_deref().unwrap_or("");
    let mut out = Vec::new();
    for p in service.spec.iter().flat_map(|s| s.ports.iter().flatten()) {
        let port = u16::try_from(p.port).unwrap_or(0);
        match &p.target_port {
            None => out.push((port, port)),
            Some(IntOrString::Int(t)) => out.push((port, u16::try_from(*t).unwrap_or(0))),
            Some(IntOrString::String(named)) => {
                let given =
                    generated.and_then(|g| g.ports.as_ref()).and_then(|ps| ps.iter().find(|(sp, _)| *sp == port));
                match (given, generated) {
                    (Some(pair), _) => out.push(*pair),
                    (None, Some(g)) if !g.plaintext_ports.is_empty() => {
                        return Err(ApplyError::Failed(format!(
                            "Service {name} port {port} forwards to the named container port {named:?}, which the deployer \
                             cannot number without the pods; say which container port that is with --service-port {port}:PORT \
                             (`kubectl get service {name} -o yaml` and the pod's ports show it)"
                        )))
                    }
                    _ => {}
                }
            }
        }
    }
    out.sort_unstable();
    out.dedup();
    Ok(out)
}

/// What the restarts did: lines for the report, and the controllers restarted.
struct Restarts<'a> {
    restarted: Vec<String>,
    skipped: Vec<String>,
    touched: Vec<&'a Controller>,
}

/// Restarts each controller with pods lacking the sidecar (none under dry run): a rollout
/// restart, or for an OnDelete StatefulSet its pods replaced one at a time. A controller that
/// is not the WasmPlugin's and was not serving before is left alone, with a note: a restart
/// would not mend it, and its failure is not this rollout's.
async fn restart_pods_without_sidecar<'a>(
    cluster: &Cluster,
    namespace: &str,
    selector: &BTreeMap<String, String>,
    controllers: &'a [Controller],
    pods: &[Pod],
) -> Result<Restarts<'a>> {
    refuse_held_back_pods(namespace, controllers, pods)?;
    let mut out = Restarts { restarted: Vec::new(), skipped: Vec::new(), touched: Vec::new() };
    for c in controllers {
        if c.opted_out_of_injection() {
            out.skipped.push(format!("{}: opted out of injection (sidecar.istio.io/inject: \"false\")", c.describe()));
            continue;
        }
        let lacking: Vec<&Pod> = pods
            .iter()
            .filter(|p| c.owns(p) && !pods::is_terminated(p) && pods::sidecar(p) == Sidecar::Missing)
            .collect();
        if lacking.is_empty() {
            continue;
        }
        if !c.template_matches(selector) {
            if let Err(serving) = c.serving() {
                out.skipped.push(format!(
                    "{} was not ready before the rollout ({serving}), so it was not restarted and {} pod(s) still lack \
                     the sidecar; fix it, then `kubectl -n {namespace} rollout restart {}/{}`",
                    c.describe(),
                    lacking.len(),
                    c.kind().kind.to_lowercase(),
                    c.name()
                ));
                continue;
            }
        }
        if cluster.opts.dry_run {
            let how = if c.updates_on_delete() { "would delete them one at a time" } else { "would restart" };
            cluster.say(format!("{}: {} pod(s) without the sidecar; {how} (dry run)", c.describe(), lacking.len()));
            continue;
        }
        if c.updates_on_delete() {
            let replaced = replace_pods_one_at_a_time(cluster, namespace, c, &lacking).await?;
            out.restarted.push(format!(
                "{} (OnDelete: pods {} replaced one at a time)",
                c.describe(),
                replaced.join(", ")
            ));
        } else {
            restart(cluster, namespace, c).await?;
            cluster.say(format!("{}: restarted ({} pod(s) had no sidecar)", c.describe(), lacking.len()));
            out.restarted.push(c.describe());
        }
        out.touched.push(c);
    }
    Ok(out)
}

/// Refuses, before any restart, a RollingUpdate StatefulSet whose `partition` holds back pods
/// lacking the sidecar: a restart would replace only the pods from the partition up, and the
/// wait for the others' sidecars could only time out.
fn refuse_held_back_pods(namespace: &str, controllers: &[Controller], pods: &[Pod]) -> Result<()> {
    for c in controllers.iter().filter(|c| !c.updates_on_delete() && !c.opted_out_of_injection() && c.partition() > 0) {
        let partition = c.partition();
        let held_back: Vec<String> = pods
            .iter()
            .filter(|p| c.owns(p) && !pods::is_terminated(p) && pods::sidecar(p) == Sidecar::Missing)
            .filter(|p| pods::ordinal(p).is_some_and(|o| i64::from(o) < i64::from(partition)))
            .map(|p| p.metadata.name.clone().unwrap_or_default())
            .collect();
        if held_back.is_empty() {
            continue;
        }
        return Err(ApplyError::Failed(format!(
            "{} has rollingUpdate.partition {partition}: a restart replaces only its pods from ordinal {partition} up, \
             so {} would never get the sidecar. Nothing was restarted. Lower the partition \
             (`kubectl -n {namespace} patch statefulset {} -p '{{\"spec\":{{\"updateStrategy\":{{\"rollingUpdate\":{{\"partition\":0}}}}}}}}'`) \
             and rerun, or replace those pods yourself",
            c.describe(),
            held_back.join(", "),
            c.name()
        )));
    }
    Ok(())
}

/// An OnDelete StatefulSet takes a new pod only when one is deleted: deletes the pods lacking
/// the sidecar one at a time, highest ordinal first (as its controller would update them),
/// each recreated with the sidecar and Ready before the next goes. A pod that comes back
/// without the sidecar stops it there, the others untouched. Returns the pods replaced.
async fn replace_pods_one_at_a_time(
    cluster: &Cluster,
    namespace: &str,
    c: &Controller,
    lacking: &[&Pod],
) -> Result<Vec<String>> {
    let mut order: Vec<&Pod> = lacking.to_vec();
    order.sort_by_key(|p| std::cmp::Reverse(pods::ordinal(p)));
    let names: Vec<String> = order.iter().map(|p| p.metadata.name.clone().unwrap_or_default()).collect();
    let api: Api<Pod> = Api::namespaced(cluster.client.clone(), namespace);
    for (i, pod) in order.iter().enumerate() {
        let name = names[i].clone();
        let old_uid = pod.metadata.uid.clone();
        let untouched = match &names[i + 1..] {
            [] => "no other pod was touched".to_string(),
            [one] => format!("{one} was left as it was"),
            many => format!("{} were left as they were", many.join(", ")),
        };
        cluster.say(format!(
            "{}: updateStrategy OnDelete; deleting pod {name} so that it is recreated with the sidecar",
            c.describe()
        ));
        api.delete(&name, &DeleteParams::default())
            .await
            .map_err(api_error(format!("deleting pod {namespace}/{name}")))?;
        let what = format!("waiting for pod {name} to be recreated with its sidecar and Ready");
        cluster
            .wait_with_progress(&what, || {
                let (api, name, old_uid, untouched) = (api.clone(), name.clone(), old_uid.clone(), untouched.clone());
                async move {
                    let current = api.get_opt(&name).await.map_err(api_error(format!("reading pod {name}")))?;
                    Ok(match current {
                        None => Look::waiting(format!("{name} is being recreated")),
                        Some(p) if p.metadata.uid == old_uid => Look::waiting(format!("{name} is terminating")),
                        Some(p) if pods::sidecar(&p) == Sidecar::Missing => Look::Failed(format!(
                            "pod {name} was recreated without istio-proxy, so the rollout stopped there ({untouched}). \
                             Check that namespace {namespace} has istio-injection=enabled (`kubectl get ns {namespace} --show-labels`) \
                             and that istiod's injection webhook is installed (`deployer install`)"
                        )),
                        Some(p) if pods::is_ready(&p) && pods::sidecar(&p).ready() => Look::Done(()),
                        Some(p) => Look::waiting(format!("{name} is {} with {} containers ready", pods::phase(&p), pods::ready_column(&p))),
                    })
                }
            })
            .await
            .map_err(|e| match e {
                ApplyError::Timeout(m) => ApplyError::Timeout(format!(
                    "{m} ({untouched}). See `kubectl -n {namespace} describe pod {name}` and its events"
                )),
                e => e,
            })?;
        cluster.say(format!("pod {name}: recreated with its sidecar, Ready"));
    }
    Ok(names)
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

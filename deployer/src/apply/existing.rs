//! What the cluster already holds that decides whether the plan takes effect, read before
//! rollout changes anything and judged by [`crate::inspect`].

use std::collections::{BTreeMap, BTreeSet};

use k8s_openapi::api::core::v1::{Pod, Secret};
use kube::api::{Api, ListParams};
use serde_json::Value;

use super::{api_error, ApplyError, Cluster, Result};
use crate::inspect::peer_authentication::{judge, Workload};
use crate::kind::Kind;
use crate::plan::rollout::Plan;

/// Refuses the plan when a PeerAuthentication already in the workload's or the root namespace
/// would win over the plan's and make Istio apply other mTLS than the filter enforces
/// ([`crate::inspect::peer_authentication`]) for any of the pods the plan's WasmPlugin
/// selects; prints what it noticed otherwise.
pub async fn refuse_overridden_peer_authentications(cluster: &Cluster, plan: &Plan) -> Result<()> {
    let namespace = plan.target.namespace.as_str();
    let mut existing = Vec::new();
    let mut namespaces = vec![namespace];
    if plan.root_namespace != namespace {
        namespaces.push(plan.root_namespace.as_str());
    }
    for ns in namespaces {
        let api = cluster.dynamic_api(&Kind::PEER_AUTHENTICATION, Some(ns));
        match api.list(&ListParams::default()).await {
            Ok(list) => existing.extend(list.items.iter().filter_map(|o| serde_json::to_value(o).ok())),
            // No CRD: nothing to override the plan; applying it fails later, saying so.
            Err(kube::Error::Api(s)) if s.code == 404 => {}
            Err(e) => {
                return Err(api_error(format!(
                    "listing the PeerAuthentications in {ns} (to tell whether one would override the plan's)"
                ))(e))
            }
        }
    }
    let planned: Vec<Value> =
        plan.manifests.iter().filter(|m| m.kind == Kind::PEER_AUTHENTICATION).map(|m| m.body.clone()).collect();
    let mut notes = Vec::new();
    for labels in workload_labels(cluster, plan, &existing).await? {
        let workload = Workload { namespace, labels: &labels, root_namespace: &plan.root_namespace };
        let judgement = judge(&existing, &planned, &workload);
        if let Some(refusal) = judgement.refusal {
            return Err(ApplyError::Failed(refusal));
        }
        notes.extend(judgement.notes.into_iter().filter(|n| !notes.contains(n)).collect::<Vec<_>>());
    }
    for note in &notes {
        cluster.say(format!("note: {note}"));
    }
    Ok(())
}

/// The label sets to judge the workload by: the WasmPlugin's labels, or, when a
/// PeerAuthentication in the namespace selects by a key they do not name (the AIS chart's
/// `app.kubernetes.io/name`), each distinct set of labels among the pods the WasmPlugin selects.
/// A selector whose keys the WasmPlugin's labels all name matches those pods exactly when it
/// matches the labels, so the pods are read only when needed.
async fn workload_labels(
    cluster: &Cluster,
    plan: &Plan,
    existing: &[Value],
) -> Result<BTreeSet<BTreeMap<String, String>>> {
    let target = &plan.target;
    let selects_by_another_label = existing.iter().any(|pa| {
        pa.pointer("/metadata/namespace").and_then(Value::as_str) == Some(target.namespace.as_str())
            && pa
                .pointer("/spec/selector/matchLabels")
                .and_then(Value::as_object)
                .is_some_and(|m| m.keys().any(|k| !target.labels.contains_key(k)))
    });
    let mut sets = BTreeSet::new();
    if selects_by_another_label {
        let selector: Vec<String> = target.labels.iter().map(|(k, v)| format!("{k}={v}")).collect();
        let api: Api<Pod> = Api::namespaced(cluster.client.clone(), &target.namespace);
        let pods = api
            .list(&ListParams::default().labels(&selector.join(",")))
            .await
            .map_err(api_error(format!("listing the pods {target} selects")))?;
        sets.extend(pods.items.into_iter().filter_map(|p| p.metadata.labels));
    }
    if sets.is_empty() {
        sets.insert(target.labels.clone());
    }
    Ok(sets)
}

/// Refuses a plan whose WasmPlugin names a pull Secret the namespace does not have, or one of
/// another type: the agents would fail to pull, and FAIL_CLOSE would deny every request.
pub async fn require_pull_secret(cluster: &Cluster, plan: &Plan) -> Result<()> {
    let Some(wasm) = plan.manifests.iter().find(|m| m.kind == Kind::WASM_PLUGIN) else { return Ok(()) };
    let Some(name) = wasm.body.pointer("/spec/imagePullSecret").and_then(Value::as_str) else { return Ok(()) };
    let namespace = plan.target.namespace.as_str();
    let api: Api<Secret> = Api::namespaced(cluster.client.clone(), namespace);
    let create = format!(
        "create it with `kubectl -n {namespace} create secret docker-registry {name} --docker-server=REGISTRY \
         --docker-username=USER --docker-password=PASSWORD` (for ECR: --docker-username=AWS \
         --docker-password=\"$(aws ecr get-login-password)\")"
    );
    match api.get_opt(name).await {
        Ok(Some(secret)) => {
            let kind = secret.type_.unwrap_or_default();
            if kind == "kubernetes.io/dockerconfigjson" || kind == "kubernetes.io/dockercfg" {
                Ok(())
            } else {
                Err(ApplyError::Failed(format!(
                    "Secret {namespace}/{name} (--image-pull-secret) is of type {kind:?}, not a registry credential \
                     (kubernetes.io/dockerconfigjson); {create}"
                )))
            }
        }
        Ok(None) => Err(ApplyError::Failed(format!(
            "there is no Secret {namespace}/{name} (--image-pull-secret), so the sidecars could not pull the module; \
             nothing was applied; {create}"
        ))),
        Err(kube::Error::Api(s)) if s.code == 403 => {
            cluster.say(format!(
                "note: your credentials may not read Secret {namespace}/{name}; the canary will show whether the sidecars can pull with it"
            ));
            Ok(())
        }
        Err(e) => Err(api_error(format!("reading Secret {namespace}/{name} (--image-pull-secret)"))(e)),
    }
}

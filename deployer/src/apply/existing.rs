//! What the cluster already holds that decides whether the plan takes effect, read before
//! rollout changes anything and judged by [`crate::inspect`].

use std::collections::{BTreeMap, BTreeSet};

use k8s_openapi::api::core::v1::Pod;
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

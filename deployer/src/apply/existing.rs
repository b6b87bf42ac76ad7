//! What the cluster already holds that decides whether the plan takes effect, read before
//! rollout changes anything and judged by [`crate::inspect`].

use kube::api::ListParams;
use serde_json::Value;

use super::{api_error, ApplyError, Cluster, Result};
use crate::inspect::peer_authentication::{judge, Workload};
use crate::kind::Kind;
use crate::plan::rollout::Plan;

/// Refuses the plan when a PeerAuthentication already in the workload's or the root namespace
/// would win over the plan's and make Istio apply other mTLS than the filter enforces
/// ([`crate::inspect::peer_authentication`]); prints what it noticed otherwise.
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
    let workload = Workload { namespace, labels: &plan.target.labels, root_namespace: &plan.root_namespace };
    let judgement = judge(&existing, &planned, &workload);
    for note in &judgement.notes {
        cluster.say(format!("note: {note}"));
    }
    match judgement.refusal {
        Some(refusal) => Err(ApplyError::Failed(refusal)),
        None => Ok(()),
    }
}

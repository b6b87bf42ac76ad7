//! Deployments and StatefulSets: which pods are theirs, whether they opted out of injection,
//! and whether a rollout is complete by kubectl's rules.

use std::collections::BTreeMap;

use k8s_openapi::api::apps::v1::{Deployment, StatefulSet};
use k8s_openapi::api::core::v1::{Pod, PodSpec, PodTemplateSpec};
use k8s_openapi::apimachinery::pkg::apis::meta::v1::LabelSelector;

use super::pods::labels_match;
use crate::kind::Kind;

/// A pod controller the deployer restarts, waits for and reads pod templates from: a
/// Deployment or a StatefulSet. (The pods policies select are [`crate::resources::PolicyTarget`].)
#[derive(Debug, Clone)]
pub enum Controller {
    Deployment(Deployment),
    StatefulSet(StatefulSet),
}

impl Controller {
    pub fn name(&self) -> &str {
        match self {
            Controller::Deployment(d) => d.metadata.name.as_deref().unwrap_or(""),
            Controller::StatefulSet(s) => s.metadata.name.as_deref().unwrap_or(""),
        }
    }

    pub fn kind(&self) -> Kind {
        match self {
            Controller::Deployment(_) => Kind::DEPLOYMENT,
            Controller::StatefulSet(_) => Kind::STATEFUL_SET,
        }
    }

    pub fn describe(&self) -> String {
        format!("{} {}", self.kind().kind, self.name())
    }

    pub fn selector(&self) -> Option<&LabelSelector> {
        match self {
            Controller::Deployment(d) => d.spec.as_ref().map(|s| &s.selector),
            Controller::StatefulSet(s) => s.spec.as_ref().map(|s| &s.selector),
        }
    }

    pub fn template(&self) -> Option<&PodTemplateSpec> {
        match self {
            Controller::Deployment(d) => d.spec.as_ref().map(|s| &s.template),
            Controller::StatefulSet(s) => s.spec.as_ref().map(|s| &s.template),
        }
    }

    pub fn pod_spec(&self) -> Option<&PodSpec> {
        self.template().and_then(|t| t.spec.as_ref())
    }

    /// Istio skips injection for pods that opt out by label or annotation.
    pub fn opted_out_of_injection(&self) -> bool {
        let Some(meta) = self.template().and_then(|t| t.metadata.as_ref()) else { return false };
        let says_false = |m: Option<&BTreeMap<String, String>>| {
            m.and_then(|m| m.get("sidecar.istio.io/inject")).is_some_and(|v| v == "false")
        };
        says_false(meta.labels.as_ref()) || says_false(meta.annotations.as_ref())
    }

    /// Whether a pod belongs to this controller, by its selector's labels.
    pub fn owns(&self, pod: &Pod) -> bool {
        match self.selector().and_then(|s| s.match_labels.as_ref()) {
            Some(sel) if !sel.is_empty() => labels_match(sel, pod.metadata.labels.as_ref()),
            _ => false,
        }
    }

    /// kubectl's `rollout status` rules: `Ok(())` when complete, `Err(why not)` otherwise.
    pub fn rollout_complete(&self) -> Result<(), String> {
        match self {
            Controller::Deployment(d) => deployment_complete(d),
            Controller::StatefulSet(s) => statefulset_complete(s),
        }
    }
}

fn deployment_complete(d: &Deployment) -> Result<(), String> {
    let generation = d.metadata.generation.unwrap_or(0);
    let status = d.status.clone().unwrap_or_default();
    if status.observed_generation.unwrap_or(0) < generation {
        return Err("waiting for the controller to observe the new spec".into());
    }
    if let Some(c) = status.conditions.iter().flatten().find(|c| c.type_ == "Progressing") {
        if c.reason.as_deref() == Some("ProgressDeadlineExceeded") {
            return Err(format!("progress deadline exceeded: {}", c.message.as_deref().unwrap_or("")));
        }
    }
    let want = d.spec.as_ref().and_then(|s| s.replicas).unwrap_or(1);
    let updated = status.updated_replicas.unwrap_or(0);
    let replicas = status.replicas.unwrap_or(0);
    let available = status.available_replicas.unwrap_or(0);
    if updated < want {
        return Err(format!("{updated} of {want} new replicas updated"));
    }
    if replicas > updated {
        return Err(format!("{} old replicas pending termination", replicas - updated));
    }
    if available < updated {
        return Err(format!("{available} of {updated} updated replicas available"));
    }
    Ok(())
}

fn statefulset_complete(s: &StatefulSet) -> Result<(), String> {
    let generation = s.metadata.generation.unwrap_or(0);
    let status = s.status.clone().unwrap_or_default();
    let spec = s.spec.as_ref();
    if status.observed_generation.unwrap_or(0) < generation {
        return Err("waiting for the controller to observe the new spec".into());
    }
    let strategy = spec.and_then(|s| s.update_strategy.as_ref());
    if strategy.and_then(|u| u.type_.as_deref()) == Some("OnDelete") {
        return Err("updateStrategy is OnDelete: pods update only when deleted; delete them to roll out".into());
    }
    let want = spec.and_then(|s| s.replicas).unwrap_or(1);
    let ready = status.ready_replicas.unwrap_or(0);
    if ready < want {
        return Err(format!("{ready} of {want} pods ready"));
    }
    let partition = strategy.and_then(|u| u.rolling_update.as_ref()).and_then(|r| r.partition).unwrap_or(0);
    if partition > 0 {
        let updated = status.updated_replicas.unwrap_or(0);
        if updated < want - partition {
            return Err(format!("{updated} of {} pods updated (partition {partition})", want - partition));
        }
        return Ok(());
    }
    if status.update_revision.is_some() && status.update_revision != status.current_revision {
        return Err(format!("{} of {want} pods at the new revision", status.updated_replicas.unwrap_or(0)));
    }
    Ok(())
}

#[cfg(test)]
mod tests {
    use super::*;
    use serde_json::json;

    #[test]
    fn deployment_rollout_follows_kubectl_rules() {
        let d = |gen: i64, status: serde_json::Value| -> Controller {
            Controller::Deployment(
                serde_json::from_value(json!({
                    "metadata": {"name": "web", "generation": gen},
                    "spec": {"replicas": 2, "selector": {"matchLabels": {"app": "web"}}, "template": {}},
                    "status": status
                }))
                .unwrap(),
            )
        };
        assert!(d(2, json!({"observedGeneration": 1})).rollout_complete().unwrap_err().contains("observe"));
        let partial = json!({"observedGeneration": 2, "replicas": 3, "updatedReplicas": 2, "availableReplicas": 2});
        assert!(d(2, partial).rollout_complete().unwrap_err().contains("old replicas"));
        let unavailable = json!({"observedGeneration": 2, "replicas": 2, "updatedReplicas": 2, "availableReplicas": 1});
        assert!(d(2, unavailable).rollout_complete().unwrap_err().contains("available"));
        let done = json!({"observedGeneration": 2, "replicas": 2, "updatedReplicas": 2, "availableReplicas": 2});
        assert!(d(2, done).rollout_complete().is_ok());
    }

    #[test]
    fn statefulset_rollout_waits_for_the_new_revision() {
        let s = |status: serde_json::Value| -> Controller {
            Controller::StatefulSet(
                serde_json::from_value(json!({
                    "metadata": {"name": "db", "generation": 3},
                    "spec": {"replicas": 1, "selector": {"matchLabels": {"app": "db"}}, "template": {}, "serviceName": "db"},
                    "status": status
                }))
                .unwrap(),
            )
        };
        let old = json!({"observedGeneration": 3, "replicas": 1, "readyReplicas": 1, "currentRevision": "db-1", "updateRevision": "db-2"});
        assert!(s(old).rollout_complete().unwrap_err().contains("new revision"));
        let new = json!({"observedGeneration": 3, "replicas": 1, "readyReplicas": 1, "currentRevision": "db-2", "updateRevision": "db-2"});
        assert!(s(new).rollout_complete().is_ok());
    }
}

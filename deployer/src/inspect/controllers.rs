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

    /// kubectl's `rollout status` rules: `Ok(())` when complete, `Err(why not)` otherwise
    /// (a rollout that failed for good included; [`Controller::rollout_state`] tells them apart).
    pub fn rollout_complete(&self) -> Result<(), String> {
        match self.rollout_state() {
            RolloutState::Complete => Ok(()),
            RolloutState::Waiting(why) | RolloutState::Failed(why) => Err(why),
        }
    }

    /// Where the rollout stands by kubectl's `rollout status` rules, a Deployment past its
    /// progress deadline being a failure there and then, as kubectl makes it.
    pub fn rollout_state(&self) -> RolloutState {
        let result = match self {
            Controller::Deployment(d) => deployment_complete(d),
            Controller::StatefulSet(s) => statefulset_complete(s),
        };
        match result {
            Ok(()) => RolloutState::Complete,
            Err(Stuck::Waiting(why)) => RolloutState::Waiting(why),
            Err(Stuck::Failed(why)) => RolloutState::Failed(why),
        }
    }

    /// A StatefulSet with `updateStrategy: OnDelete`: a template change replaces no pod; each
    /// pod takes the new template only when deleted.
    pub fn updates_on_delete(&self) -> bool {
        match self {
            Controller::StatefulSet(s) => {
                s.spec.as_ref().and_then(|s| s.update_strategy.as_ref()).and_then(|u| u.type_.as_deref())
                    == Some("OnDelete")
            }
            Controller::Deployment(_) => false,
        }
    }

    /// A RollingUpdate StatefulSet's `partition`: only pods from this ordinal up take a new
    /// revision (0 for everything else).
    pub fn partition(&self) -> i32 {
        match self {
            Controller::StatefulSet(s) => s
                .spec
                .as_ref()
                .and_then(|s| s.update_strategy.as_ref())
                .and_then(|u| u.rolling_update.as_ref())
                .and_then(|r| r.partition)
                .unwrap_or(0),
            Controller::Deployment(_) => 0,
        }
    }

    /// Counters a rollout in progress raises (observed generation, pods at the new revision,
    /// those plus ready or available pods). A wait that sees one pass its earlier best has
    /// seen progress; a crash-looping pod, ready and unready by turns, passes none.
    pub fn progress_marks(&self) -> Vec<i64> {
        let (observed, updated, ready) = match self {
            Controller::Deployment(d) => {
                let s = d.status.clone().unwrap_or_default();
                (s.observed_generation.unwrap_or(0), s.updated_replicas.unwrap_or(0), s.available_replicas.unwrap_or(0))
            }
            Controller::StatefulSet(st) => {
                let s = st.status.clone().unwrap_or_default();
                (s.observed_generation.unwrap_or(0), s.updated_replicas.unwrap_or(0), s.ready_replicas.unwrap_or(0))
            }
        };
        vec![observed, i64::from(updated), i64::from(updated) + i64::from(ready)]
    }

    /// Whether every replica was serving before the rollout touched it: `Err` says how many
    /// were (a Deployment's available pods, a StatefulSet's ready ones).
    pub fn serving(&self) -> Result<(), String> {
        let (serving, want, word) = match self {
            Controller::Deployment(d) => (
                d.status.as_ref().and_then(|s| s.available_replicas).unwrap_or(0),
                d.spec.as_ref().and_then(|s| s.replicas).unwrap_or(1),
                "available",
            ),
            Controller::StatefulSet(s) => (
                s.status.as_ref().and_then(|s| s.ready_replicas).unwrap_or(0),
                s.spec.as_ref().and_then(|s| s.replicas).unwrap_or(1),
                "ready",
            ),
        };
        if serving >= want {
            Ok(())
        } else {
            Err(format!("{serving} of {want} {word}"))
        }
    }

    /// Whether the controller's pods carry every label of `selector` (the WasmPlugin's).
    pub fn template_matches(&self, selector: &BTreeMap<String, String>) -> bool {
        labels_match(selector, self.template().and_then(|t| t.metadata.as_ref()).and_then(|m| m.labels.as_ref()))
    }
}

/// Where a rollout stands.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum RolloutState {
    Complete,
    /// Not yet, and why.
    Waiting(String),
    /// Never will be without a fix, and why.
    Failed(String),
}

enum Stuck {
    Waiting(String),
    Failed(String),
}

impl From<String> for Stuck {
    fn from(why: String) -> Stuck {
        Stuck::Waiting(why)
    }
}

fn deployment_complete(d: &Deployment) -> Result<(), Stuck> {
    let generation = d.metadata.generation.unwrap_or(0);
    let status = d.status.clone().unwrap_or_default();
    if status.observed_generation.unwrap_or(0) < generation {
        return Err(Stuck::Waiting("waiting for the controller to observe the new spec".into()));
    }
    if let Some(c) = status.conditions.iter().flatten().find(|c| c.type_ == "Progressing") {
        if c.reason.as_deref() == Some("ProgressDeadlineExceeded") {
            let name = d.metadata.name.as_deref().unwrap_or("");
            return Err(Stuck::Failed(format!(
                "deployment {name:?} exceeded its progress deadline: {}",
                c.message.as_deref().unwrap_or("")
            )));
        }
    }
    let want = d.spec.as_ref().and_then(|s| s.replicas).unwrap_or(1);
    let updated = status.updated_replicas.unwrap_or(0);
    let replicas = status.replicas.unwrap_or(0);
    let available = status.available_replicas.unwrap_or(0);
    if updated < want {
        return Err(format!("{updated} of {want} new replicas updated").into());
    }
    if replicas > updated {
        return Err(format!("{} old replicas pending termination", replicas - updated).into());
    }
    if available < updated {
        return Err(format!("{available} of {updated} updated replicas available").into());
    }
    Ok(())
}

fn statefulset_complete(s: &StatefulSet) -> Result<(), Stuck> {
    let generation = s.metadata.generation.unwrap_or(0);
    let status = s.status.clone().unwrap_or_default();
    let spec = s.spec.as_ref();
    if status.observed_generation.unwrap_or(0) < generation {
        return Err("waiting for the controller to observe the new spec".to_string().into());
    }
    let strategy = spec.and_then(|s| s.update_strategy.as_ref());
    let want = spec.and_then(|s| s.replicas).unwrap_or(1);
    let ready = status.ready_replicas.unwrap_or(0);
    if ready < want {
        return Err(format!("{ready} of {want} pods ready").into());
    }
    // OnDelete: a pod takes a new revision only when deleted, so every pod ready is all there is.
    if strategy.and_then(|u| u.type_.as_deref()) == Some("OnDelete") {
        return Ok(());
    }
    let partition = strategy.and_then(|u| u.rolling_update.as_ref()).and_then(|r| r.partition).unwrap_or(0);
    if partition > 0 {
        let updated = status.updated_replicas.unwrap_or(0);
        if updated < want - partition {
            return Err(format!("{updated} of {} pods updated (partition {partition})", want - partition).into());
        }
        return Ok(());
    }
    if status.update_revision.is_some() && status.update_revision != status.current_revision {
        return Err(format!("{} of {want} pods at the new revision", status.updated_replicas.unwrap_or(0)).into());
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
    fn a_deployment_past_its_progress_deadline_has_failed_not_waiting() {
        let d: Deployment = serde_json::from_value(json!({
            "metadata": {"name": "web", "generation": 2},
            "spec": {"replicas": 1, "selector": {"matchLabels": {"app": "web"}}, "template": {}},
            "status": {"observedGeneration": 2, "replicas": 2, "updatedReplicas": 1, "availableReplicas": 1,
                       "conditions": [{"type": "Progressing", "status": "False", "reason": "ProgressDeadlineExceeded",
                                       "message": "ReplicaSet \"web-1\" has timed out progressing."}]}
        }))
        .unwrap();
        let RolloutState::Failed(why) = Controller::Deployment(d).rollout_state() else { panic!("not failed") };
        assert_eq!(
            why,
            "deployment \"web\" exceeded its progress deadline: ReplicaSet \"web-1\" has timed out progressing."
        );
    }

    #[test]
    fn an_on_delete_statefulset_is_rolled_out_once_every_pod_is_ready() {
        let s = |ready: i32| -> Controller {
            Controller::StatefulSet(
                serde_json::from_value(json!({
                    "metadata": {"name": "db", "generation": 3},
                    "spec": {"replicas": 2, "selector": {"matchLabels": {"app": "db"}}, "template": {}, "serviceName": "db",
                             "updateStrategy": {"type": "OnDelete"}},
                    "status": {"observedGeneration": 3, "replicas": 2, "readyReplicas": ready,
                               "currentRevision": "db-1", "updateRevision": "db-2"}
                }))
                .unwrap(),
            )
        };
        assert!(s(2).updates_on_delete());
        assert_eq!(s(1).rollout_state(), RolloutState::Waiting("1 of 2 pods ready".into()));
        assert_eq!(s(2).rollout_state(), RolloutState::Complete);
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

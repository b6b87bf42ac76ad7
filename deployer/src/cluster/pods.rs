//! Reading pods and workloads: is the sidecar there and ready, is a rollout complete (by
//! kubectl's rules), and the pod table the runbook checks by eye (`2/2`).

use std::collections::BTreeMap;

use k8s_openapi::api::apps::v1::{Deployment, StatefulSet};
use k8s_openapi::api::core::v1::{Pod, PodSpec};
use k8s_openapi::apimachinery::pkg::apis::meta::v1::LabelSelector;

pub const SIDECAR: &str = "istio-proxy";

/// Where the sidecar sits in a pod, and whether it is ready.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Sidecar {
    Missing,
    /// A regular container.
    Container {
        ready: bool,
    },
    /// A native sidecar: an init container with `restartPolicy: Always` (Istio on Kubernetes 1.29+).
    NativeInit {
        ready: bool,
    },
}

impl Sidecar {
    pub fn ready(self) -> bool {
        matches!(self, Sidecar::Container { ready: true } | Sidecar::NativeInit { ready: true })
    }
}

pub fn sidecar(pod: &Pod) -> Sidecar {
    let Some(spec) = &pod.spec else { return Sidecar::Missing };
    let status = pod.status.as_ref();
    let ready_in = |statuses: Option<&Vec<k8s_openapi::api::core::v1::ContainerStatus>>| {
        statuses.into_iter().flatten().any(|s| s.name == SIDECAR && s.ready)
    };
    if spec.containers.iter().any(|c| c.name == SIDECAR) {
        return Sidecar::Container { ready: ready_in(status.and_then(|s| s.container_statuses.as_ref())) };
    }
    let native = spec
        .init_containers
        .iter()
        .flatten()
        .any(|c| c.name == SIDECAR && c.restart_policy.as_deref() == Some("Always"));
    if native {
        return Sidecar::NativeInit { ready: ready_in(status.and_then(|s| s.init_container_statuses.as_ref())) };
    }
    Sidecar::Missing
}

pub fn phase(pod: &Pod) -> &str {
    pod.status.as_ref().and_then(|s| s.phase.as_deref()).unwrap_or("Unknown")
}

/// Pods that are done (Jobs) have no sidecar to check.
pub fn is_terminated(pod: &Pod) -> bool {
    matches!(phase(pod), "Succeeded" | "Failed") || pod.metadata.deletion_timestamp.is_some()
}

/// kubectl's READY column: ready containers over containers, counting native sidecars.
pub fn ready_column(pod: &Pod) -> String {
    let Some(spec) = &pod.spec else { return "0/0".into() };
    let status = pod.status.as_ref();
    let natives: Vec<&str> = spec
        .init_containers
        .iter()
        .flatten()
        .filter(|c| c.restart_policy.as_deref() == Some("Always"))
        .map(|c| c.name.as_str())
        .collect();
    let total = spec.containers.len() + natives.len();
    let ready = status.and_then(|s| s.container_statuses.as_ref()).into_iter().flatten().filter(|s| s.ready).count()
        + status
            .and_then(|s| s.init_container_statuses.as_ref())
            .into_iter()
            .flatten()
            .filter(|s| s.ready && natives.contains(&s.name.as_str()))
            .count();
    format!("{ready}/{total}")
}

/// The pod table the runbook reads: NAME READY STATUS SIDECAR.
pub fn pod_table(pods: &[Pod]) -> String {
    let mut out = format!("{:<44} {:<6} {:<10} SIDECAR\n", "NAME", "READY", "STATUS");
    for p in pods {
        let side = match sidecar(p) {
            Sidecar::Missing => "missing",
            Sidecar::Container { ready: true } => "ready",
            Sidecar::NativeInit { ready: true } => "ready (native)",
            Sidecar::Container { ready: false } | Sidecar::NativeInit { ready: false } => "not ready",
        };
        out.push_str(&format!(
            "{:<44} {:<6} {:<10} {side}\n",
            p.metadata.name.as_deref().unwrap_or(""),
            ready_column(p),
            phase(p)
        ));
    }
    out
}

/// `matchLabels` as a label selector string; `None` when the selector uses expressions we do
/// not evaluate (then the workload is matched by owner instead).
pub fn selector_string(selector: &LabelSelector) -> Option<String> {
    if selector.match_expressions.as_ref().is_some_and(|e| !e.is_empty()) {
        return None;
    }
    let labels = selector.match_labels.as_ref()?;
    Some(labels.iter().map(|(k, v)| format!("{k}={v}")).collect::<Vec<_>>().join(","))
}

pub fn labels_match(selector: &BTreeMap<String, String>, labels: Option<&BTreeMap<String, String>>) -> bool {
    selector.iter().all(|(k, v)| labels.and_then(|l| l.get(k)) == Some(v))
}

/// A Deployment or StatefulSet.
#[derive(Debug, Clone)]
pub enum Workload {
    Deployment(Deployment),
    StatefulSet(StatefulSet),
}

impl Workload {
    pub fn name(&self) -> &str {
        match self {
            Workload::Deployment(d) => d.metadata.name.as_deref().unwrap_or(""),
            Workload::StatefulSet(s) => s.metadata.name.as_deref().unwrap_or(""),
        }
    }

    pub fn kind(&self) -> &'static str {
        match self {
            Workload::Deployment(_) => "Deployment",
            Workload::StatefulSet(_) => "StatefulSet",
        }
    }

    pub fn describe(&self) -> String {
        format!("{} {}", self.kind(), self.name())
    }

    pub fn selector(&self) -> Option<&LabelSelector> {
        match self {
            Workload::Deployment(d) => d.spec.as_ref().map(|s| &s.selector),
            Workload::StatefulSet(s) => s.spec.as_ref().map(|s| &s.selector),
        }
    }

    pub fn template(&self) -> Option<&k8s_openapi::api::core::v1::PodTemplateSpec> {
        match self {
            Workload::Deployment(d) => d.spec.as_ref().map(|s| &s.template),
            Workload::StatefulSet(s) => s.spec.as_ref().map(|s| &s.template),
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

    /// Whether a pod belongs to this workload, by its selector's labels.
    pub fn owns(&self, pod: &Pod) -> bool {
        match self.selector().and_then(|s| s.match_labels.as_ref()) {
            Some(sel) if !sel.is_empty() => labels_match(sel, pod.metadata.labels.as_ref()),
            _ => false,
        }
    }

    /// kubectl's `rollout status` rules: `Ok(())` when complete, `Err(why not)` otherwise.
    pub fn rollout_complete(&self) -> Result<(), String> {
        match self {
            Workload::Deployment(d) => deployment_complete(d),
            Workload::StatefulSet(s) => statefulset_complete(s),
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

    fn pod(v: serde_json::Value) -> Pod {
        serde_json::from_value(v).unwrap()
    }

    #[test]
    fn sidecar_is_found_as_container_or_native_init_container() {
        let classic = pod(json!({
            "metadata": {"name": "a"},
            "spec": {"containers": [{"name": "xnat"}, {"name": "istio-proxy"}]},
            "status": {"phase": "Running", "containerStatuses": [
                {"name": "xnat", "ready": true, "restartCount": 0, "image": "", "imageID": ""},
                {"name": "istio-proxy", "ready": true, "restartCount": 0, "image": "", "imageID": ""}]}
        }));
        assert_eq!(sidecar(&classic), Sidecar::Container { ready: true });
        assert_eq!(ready_column(&classic), "2/2");
        let native = pod(json!({
            "metadata": {"name": "b"},
            "spec": {"initContainers": [{"name": "istio-init"}, {"name": "istio-proxy", "restartPolicy": "Always"}],
                     "containers": [{"name": "xnat"}]},
            "status": {"phase": "Running",
                "initContainerStatuses": [{"name": "istio-proxy", "ready": false, "restartCount": 0, "image": "", "imageID": ""}],
                "containerStatuses": [{"name": "xnat", "ready": true, "restartCount": 0, "image": "", "imageID": ""}]}
        }));
        assert_eq!(sidecar(&native), Sidecar::NativeInit { ready: false });
        assert_eq!(ready_column(&native), "1/2");
        let bare = pod(json!({"metadata": {"name": "c"}, "spec": {"containers": [{"name": "xnat"}]}}));
        assert_eq!(sidecar(&bare), Sidecar::Missing);
    }

    #[test]
    fn deployment_rollout_follows_kubectl_rules() {
        let d = |gen: i64, status: serde_json::Value| -> Workload {
            Workload::Deployment(
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
        let s = |status: serde_json::Value| -> Workload {
            Workload::StatefulSet(
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

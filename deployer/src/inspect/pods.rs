//! Pods as the API server returns them: is the sidecar there and ready, kubectl's READY
//! column, the pod table the runbook checks by eye (`2/2`), and CPU requests.

use std::collections::BTreeMap;

use k8s_openapi::api::core::v1::{Container, ContainerStatus, Pod, PodSpec};
use k8s_openapi::apimachinery::pkg::api::resource::Quantity;
use serde::Serialize;

/// The sidecar's container name, as Istio injects it.
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
    let ready_in =
        |statuses: Option<&Vec<ContainerStatus>>| statuses.into_iter().flatten().any(|s| s.name == SIDECAR && s.ready);
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

/// The pod's `Ready` condition is true: every container ready, the pod in its Services.
pub fn is_ready(pod: &Pod) -> bool {
    pod.status
        .as_ref()
        .and_then(|s| s.conditions.as_ref())
        .into_iter()
        .flatten()
        .any(|c| c.type_ == "Ready" && c.status == "True")
}

/// A StatefulSet pod's ordinal, the number after its name's last `-` (`xnat-xnat-web-2`: 2).
pub fn ordinal(pod: &Pod) -> Option<u32> {
    pod.metadata.name.as_deref()?.rsplit_once('-')?.1.parse().ok()
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

/// One line of the pod table.
#[derive(Debug, Clone, PartialEq, Eq, Serialize)]
pub struct PodRow {
    pub name: String,
    /// kubectl's READY column.
    pub ready: String,
    pub status: String,
    pub sidecar: &'static str,
}

pub fn pod_row(p: &Pod) -> PodRow {
    let sidecar = match sidecar(p) {
        Sidecar::Missing => "missing",
        Sidecar::Container { ready: true } => "ready",
        Sidecar::NativeInit { ready: true } => "ready (native)",
        Sidecar::Container { ready: false } | Sidecar::NativeInit { ready: false } => "not ready",
    };
    PodRow {
        name: p.metadata.name.clone().unwrap_or_default(),
        ready: ready_column(p),
        status: phase(p).to_string(),
        sidecar,
    }
}

/// The pod table the runbook reads: NAME READY STATUS SIDECAR.
pub fn pod_table(pods: &[Pod]) -> String {
    let mut out = format!("{:<44} {:<6} {:<10} SIDECAR\n", "NAME", "READY", "STATUS");
    for r in pods.iter().map(pod_row) {
        out.push_str(&format!("{:<44} {:<6} {:<10} {}\n", r.name, r.ready, r.status, r.sidecar));
    }
    out
}

pub fn labels_match(selector: &BTreeMap<String, String>, labels: Option<&BTreeMap<String, String>>) -> bool {
    selector.iter().all(|(k, v)| labels.and_then(|l| l.get(k)) == Some(v))
}

/// The containers a pod lists, its native sidecars marked as such.
pub fn container_names(pod: &Pod) -> Vec<String> {
    let mut names: Vec<String> = pod.spec.iter().flat_map(|s| s.containers.iter().map(|c| c.name.clone())).collect();
    names.extend(
        pod.spec
            .iter()
            .flat_map(|s| s.init_containers.iter().flatten())
            .filter(|c| c.restart_policy.as_deref() == Some("Always"))
            .map(|c| format!("{} (native sidecar)", c.name)),
    );
    names
}

/// CPU in millicores from a Kubernetes quantity (`100m`, `0.5`, `2`).
pub fn cpu_millis(q: &Quantity) -> Option<u64> {
    let s = q.0.trim();
    if let Some(m) = s.strip_suffix('m') {
        return m.parse::<u64>().ok();
    }
    s.parse::<f64>().ok().filter(|v| *v >= 0.0).map(|v| (v * 1000.0).round() as u64)
}

/// A container's CPU request in millicores, 0 when it has none.
pub fn container_cpu_request(c: &Container) -> u64 {
    c.resources.as_ref().and_then(|r| r.requests.as_ref()).and_then(|r| r.get("cpu")).and_then(cpu_millis).unwrap_or(0)
}

/// The sidecar's CPU request as a running pod shows it (container or native init container);
/// `None` when the pod has no sidecar.
pub fn sidecar_request_millis(pod: &Pod) -> Option<u64> {
    let spec = pod.spec.as_ref()?;
    spec.containers
        .iter()
        .chain(spec.init_containers.iter().flatten())
        .find(|c| c.name == SIDECAR)
        .map(container_cpu_request)
}

/// The app's containers: the template's, minus a sidecar if someone put one there by hand.
pub fn app_containers(spec: &PodSpec) -> impl Iterator<Item = &Container> {
    spec.containers.iter().filter(|c| c.name != SIDECAR)
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
    fn quantities_parse_in_millicores() {
        for (q, m) in [("100m", 100), ("0.5", 500), ("2", 2000), ("1.25", 1250)] {
            assert_eq!(cpu_millis(&Quantity(q.into())), Some(m), "{q}");
        }
    }

    #[test]
    fn the_pod_table_shows_the_ready_column_and_where_the_sidecar_is() {
        let native = pod(json!({
            "metadata": {"name": "xnat-web-0"},
            "spec": {"initContainers": [{"name": "istio-proxy", "restartPolicy": "Always", "resources": {"requests": {"cpu": "0.1"}}}],
                     "containers": [{"name": "xnat-web"}]},
            "status": {"phase": "Running",
                "initContainerStatuses": [{"name": "istio-proxy", "ready": true, "restartCount": 0, "image": "", "imageID": ""}],
                "containerStatuses": [{"name": "xnat-web", "ready": true, "restartCount": 0, "image": "", "imageID": ""}]}
        }));
        assert_eq!(
            pod_table(std::slice::from_ref(&native)),
            "NAME                                         READY  STATUS     SIDECAR\n\
             xnat-web-0                                   2/2    Running    ready (native)\n"
        );
        assert_eq!(container_names(&native), ["xnat-web", "istio-proxy (native sidecar)"]);
        assert_eq!(sidecar_request_millis(&native), Some(100));
    }
}

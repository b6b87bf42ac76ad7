//! `hpa`: HorizontalPodAutoscalers whose CPU utilization target the sidecar skews.
//!
//! A `Resource` CPU metric with a `Utilization` target compares usage with the sum of all
//! containers' requests. Injecting `istio-proxy` adds its request (100m by default) to that sum,
//! so the runbook's app requesting 100m at 70% scales at 140m instead of 70m, and may never
//! scale. The fix is a `ContainerResource` metric on the app container (stable since Kubernetes
//! 1.30), or on older clusters an `AverageValue` of the intended point plus what the sidecar
//! really uses (the runbook measured about 10m).

use k8s_openapi::api::autoscaling::v2::HorizontalPodAutoscaler;
use k8s_openapi::api::core::v1::{Pod, PodSpec};
use k8s_openapi::apimachinery::pkg::api::resource::Quantity;
use kube::api::{Api, ListParams, Patch, PatchParams};
use serde::Serialize;
use serde_json::{json, Value};

use super::pods::SIDECAR;
use super::rollout::list_workloads;
use super::{api_error, Cluster, Result};

/// Istio's default sidecar CPU request.
pub const DEFAULT_SIDECAR_CPU_MILLIS: u64 = 100;

/// One HPA at risk, with the numbers and the fix.
#[derive(Debug, Clone, PartialEq, Serialize)]
pub struct Finding {
    pub hpa: String,
    pub workload: String,
    pub app_container: String,
    pub target_percent: i32,
    pub app_request_millis: u64,
    pub sidecar_request_millis: u64,
    /// Per pod, what the author meant: target% of the app's request.
    pub intended_millis: u64,
    /// Per pod, where it scales now: target% of app + sidecar requests.
    pub effective_millis: u64,
    /// The replacement metric (autoscaling/v2 MetricSpec).
    pub fix: Value,
    pub fix_kind: &'static str,
}

/// CPU in millicores from a Kubernetes quantity (`100m`, `0.5`, `2`).
pub fn cpu_millis(q: &Quantity) -> Option<u64> {
    let s = q.0.trim();
    if let Some(m) = s.strip_suffix('m') {
        return m.parse::<u64>().ok();
    }
    s.parse::<f64>().ok().filter(|v| *v >= 0.0).map(|v| (v * 1000.0).round() as u64)
}

fn container_cpu_request(c: &k8s_openapi::api::core::v1::Container) -> u64 {
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
fn app_containers(spec: &PodSpec) -> impl Iterator<Item = &k8s_openapi::api::core::v1::Container> {
    spec.containers.iter().filter(|c| c.name != SIDECAR)
}

/// Analyses one HPA against its workload's pod template. `None` when nothing is skewed.
pub fn analyse(
    hpa: &HorizontalPodAutoscaler,
    template: &PodSpec,
    sidecar_millis: u64,
    sidecar_usage_millis: u64,
    container_resource_supported: bool,
) -> Option<Finding> {
    let spec = hpa.spec.as_ref()?;
    let metric = spec.metrics.iter().flatten().find(|m| {
        m.type_ == "Resource" && m.resource.as_ref().is_some_and(|r| r.name == "cpu" && r.target.type_ == "Utilization")
    })?;
    let target = metric.resource.as_ref()?.target.average_utilization?;
    if sidecar_millis == 0 {
        return None;
    }
    let app_request: u64 = app_containers(template).map(container_cpu_request).sum();
    let app_container = app_containers(template).max_by_key(|c| container_cpu_request(c))?.name.clone();
    let pct = |m: u64| m * target.max(0) as u64 / 100;
    let intended = pct(app_request);
    let effective = pct(app_request + sidecar_millis);
    let (fix, fix_kind) = if container_resource_supported {
        (
            json!({ "type": "ContainerResource", "containerResource": {
                "name": "cpu", "container": app_container,
                "target": { "type": "Utilization", "averageUtilization": target } } }),
            "ContainerResource",
        )
    } else {
        (
            json!({ "type": "Resource", "resource": {
                "name": "cpu",
                "target": { "type": "AverageValue", "averageValue": format!("{}m", intended + sidecar_usage_millis) } } }),
            "AverageValue",
        )
    };
    Some(Finding {
        hpa: hpa.metadata.name.clone().unwrap_or_default(),
        workload: format!("{} {}", spec.scale_target_ref.kind, spec.scale_target_ref.name),
        app_container,
        target_percent: target,
        app_request_millis: app_request,
        sidecar_request_millis: sidecar_millis,
        intended_millis: intended,
        effective_millis: effective,
        fix,
        fix_kind,
    })
}

/// The HPA's metrics with the skewed CPU metric replaced by the fix.
pub fn fixed_metrics(hpa: &HorizontalPodAutoscaler, finding: &Finding) -> Value {
    let metrics: Vec<Value> = hpa
        .spec
        .iter()
        .flat_map(|s| s.metrics.iter().flatten())
        .map(|m| {
            let skewed = m.type_ == "Resource"
                && m.resource.as_ref().is_some_and(|r| r.name == "cpu" && r.target.type_ == "Utilization");
            if skewed {
                finding.fix.clone()
            } else {
                serde_json::to_value(m).unwrap_or(Value::Null)
            }
        })
        .collect();
    json!({ "spec": { "metrics": metrics } })
}

/// Whether the API server is 1.30 or newer (ContainerResource metrics stable).
pub async fn container_resource_supported(cluster: &Cluster) -> Result<bool> {
    let info = cluster.client.apiserver_version().await.map_err(api_error("reading the API server's version"))?;
    let minor: u32 = info.minor.trim_end_matches('+').parse().unwrap_or(0);
    let major: u32 = info.major.parse().unwrap_or(0);
    Ok(major > 1 || (major == 1 && minor >= 30))
}

/// Finds the HPAs at risk in a namespace; with `apply`, patches each with its fix.
pub async fn hpa(cluster: &Cluster, namespace: &str, sidecar_usage_millis: u64, apply: bool) -> Result<Vec<Finding>> {
    let supported = container_resource_supported(cluster).await?;
    let hpas: Api<HorizontalPodAutoscaler> = Api::namespaced(cluster.client.clone(), namespace);
    let list = hpas
        .list(&ListParams::default())
        .await
        .map_err(api_error(format!("listing HorizontalPodAutoscalers in {namespace}")))?;
    if list.items.is_empty() {
        return Ok(Vec::new());
    }
    let workloads = list_workloads(cluster, namespace).await?;
    let pods: Api<Pod> = Api::namespaced(cluster.client.clone(), namespace);
    let pods =
        pods.list(&ListParams::default()).await.map_err(api_error(format!("listing pods in {namespace}")))?.items;
    let mut findings = Vec::new();
    for h in &list.items {
        let Some(target) = h.spec.as_ref().map(|s| &s.scale_target_ref) else { continue };
        let Some(w) = workloads.iter().find(|w| w.kind() == target.kind && w.name() == target.name) else { continue };
        let Some(template) = w.pod_spec() else { continue };
        // The sidecar is injected at pod creation, so its request is read from a running pod.
        // A workload none of whose pods runs a sidecar is not skewed (yet).
        let Some(sidecar) = pods.iter().filter(|p| w.owns(p)).find_map(sidecar_request_millis) else { continue };
        if let Some(f) = analyse(h, template, sidecar, sidecar_usage_millis, supported) {
            if apply {
                let pp = if cluster.opts.dry_run { PatchParams::default().dry_run() } else { PatchParams::default() };
                hpas.patch(&f.hpa, &pp, &Patch::Merge(&fixed_metrics(h, &f)))
                    .await
                    .map_err(api_error(format!("patching HorizontalPodAutoscaler {}", f.hpa)))?;
            }
            findings.push(f);
        }
    }
    Ok(findings)
}

pub fn findings_table(findings: &[Finding]) -> String {
    let mut out = format!(
        "{:<24} {:<28} {:>6} {:>8} {:>8} {:>9} {:>10}  FIX\n",
        "HPA", "WORKLOAD", "TARGET", "APP REQ", "SIDECAR", "INTENDED", "EFFECTIVE"
    );
    for f in findings {
        let fix = match f.fix_kind {
            "ContainerResource" => format!("ContainerResource cpu on {} at {}%", f.app_container, f.target_percent),
            _ => format!("AverageValue {}", f.fix["resource"]["target"]["averageValue"].as_str().unwrap_or("")),
        };
        out.push_str(&format!(
            "{:<24} {:<28} {:>5}% {:>7}m {:>7}m {:>8}m {:>9}m  {fix}\n",
            f.hpa,
            f.workload,
            f.target_percent,
            f.app_request_millis,
            f.sidecar_request_millis,
            f.intended_millis,
            f.effective_millis
        ));
    }
    out
}

#[cfg(test)]
mod tests {
    use super::*;

    fn runbook_hpa() -> HorizontalPodAutoscaler {
        serde_json::from_value(json!({
            "metadata": {"name": "xnat-web"},
            "spec": {"scaleTargetRef": {"kind": "StatefulSet", "name": "xnat-xnat-web", "apiVersion": "apps/v1"},
                     "maxReplicas": 4,
                     "metrics": [
                        {"type": "Resource", "resource": {"name": "cpu", "target": {"type": "Utilization", "averageUtilization": 70}}},
                        {"type": "Resource", "resource": {"name": "memory", "target": {"type": "Utilization", "averageUtilization": 80}}}]}
        }))
        .unwrap()
    }

    fn template() -> PodSpec {
        serde_json::from_value(
            json!({"containers": [{"name": "xnat-web", "resources": {"requests": {"cpu": "100m"}}}]}),
        )
        .unwrap()
    }

    #[test]
    fn the_runbook_arithmetic_scale_at_140m_instead_of_70m() {
        let f = analyse(&runbook_hpa(), &template(), 100, 10, true).unwrap();
        assert_eq!((f.intended_millis, f.effective_millis), (70, 140));
        assert_eq!(f.fix["containerResource"]["container"], "xnat-web");
        assert_eq!(f.fix["containerResource"]["target"]["averageUtilization"], 70);
    }

    #[test]
    fn older_clusters_get_the_runbook_average_value() {
        let f = analyse(&runbook_hpa(), &template(), 100, 10, false).unwrap();
        assert_eq!(f.fix["resource"]["target"]["averageValue"], "80m");
        // The memory metric is kept; only the skewed CPU metric is replaced.
        let patch = fixed_metrics(&runbook_hpa(), &f);
        assert_eq!(patch["spec"]["metrics"][1]["resource"]["name"], "memory");
        assert_eq!(patch["spec"]["metrics"][0]["resource"]["target"]["type"], "AverageValue");
    }

    #[test]
    fn quantities_parse_in_millicores() {
        for (q, m) in [("100m", 100), ("0.5", 500), ("2", 2000), ("1.25", 1250)] {
            assert_eq!(cpu_millis(&Quantity(q.into())), Some(m), "{q}");
        }
    }

    #[test]
    fn an_hpa_on_average_value_is_not_at_risk() {
        let mut h = runbook_hpa();
        h.spec.as_mut().unwrap().metrics = Some(vec![serde_json::from_value(json!(
            {"type": "Resource", "resource": {"name": "cpu", "target": {"type": "AverageValue", "averageValue": "80m"}}}
        ))
        .unwrap()]);
        assert_eq!(analyse(&h, &template(), 100, 10, true), None);
    }
}

//! The user's cluster as the API server would return it: what the Australian Imaging Service
//! chart (`Australian-Imaging-Service/charts`, `releases/xnat`, release name `xnat`) leaves in
//! namespace `xnat`, plus what following the runbook by hand added. Built from the chart's
//! facts (names, labels, ports), not its text.
//!
//! - XNAT web: StatefulSet `xnat-xnat-web`, pods `xnat-xnat-web-N`, container port `http` 8080,
//!   an init container waiting on PostgreSQL with `pg_isready`;
//! - Services: `xnat-xnat-web` port 80 (`http`) to targetPort 8080, a headless one for the
//!   StatefulSet, and the DICOM SCP NodePort 8104, which no container declares;
//! - PostgreSQL: StatefulSet `xnat-postgresql`, pod `xnat-postgresql-0`, 5432;
//! - the runbook's objects: PeerAuthentications `istio-system/default` (STRICT) and
//!   `xnat/default` (8080 DISABLE), DestinationRule `xnat/xnat-xnat-web` (on port 8080, as the
//!   runbook wrote it), AuthorizationPolicy `xnat/xnat-all`.
//!
//! Variants: `updateStrategy: OnDelete`, several replicas, a crash-looping neighbour, a pod
//! stuck Pending.
#![allow(dead_code)]

use serde_json::{json, Value};

pub const NAMESPACE: &str = "/api/v1/namespaces/xnat";
pub const PODS: &str = "/api/v1/namespaces/xnat/pods";
pub const SERVICES: &str = "/api/v1/namespaces/xnat/services";
pub const DEPLOYMENTS: &str = "/apis/apps/v1/namespaces/xnat/deployments";
pub const STATEFULSETS: &str = "/apis/apps/v1/namespaces/xnat/statefulsets";
pub const WEB: &str = "/apis/apps/v1/namespaces/xnat/statefulsets/xnat-xnat-web";
pub const POSTGRESQL: &str = "/apis/apps/v1/namespaces/xnat/statefulsets/xnat-postgresql";

/// The labels the chart puts on the web pods (selector labels, plus the `app` label the
/// runbook's policies select).
pub fn web_labels() -> Value {
    json!({"app": "xnat-web", "app.kubernetes.io/name": "xnat-web", "app.kubernetes.io/instance": "xnat"})
}

/// How the web StatefulSet stands.
#[derive(Clone, Copy)]
pub struct Web {
    pub replicas: i32,
    pub on_delete: bool,
    /// `metadata.generation`; the controller has observed it.
    pub generation: i64,
    pub ready: i32,
    pub updated: i32,
    /// Every pod is at the update revision.
    pub at_update_revision: bool,
}

impl Web {
    /// One replica, RollingUpdate, settled.
    pub fn settled() -> Web {
        Web { replicas: 1, on_delete: false, generation: 1, ready: 1, updated: 1, at_update_revision: true }
    }
    pub fn replicas(self, n: i32) -> Web {
        Web { replicas: n, ready: n, updated: n, ..self }
    }
    pub fn on_delete(self) -> Web {
        Web { on_delete: true, ..self }
    }
    /// After a restart: a new generation, `ready` pods ready and `updated` at the new revision.
    pub fn rolling(self, generation: i64, ready: i32, updated: i32) -> Web {
        Web { generation, ready, updated, at_update_revision: updated == self.replicas, ..self }
    }
}

fn wait_for_postgres() -> Value {
    json!({"name": "wait-for-postgres", "image": "postgres:16-alpine",
           "command": ["sh", "-c", "until pg_isready -h xnat-postgresql -p 5432; do sleep 2; done"]})
}

pub fn web_statefulset(w: Web) -> Value {
    let strategy = if w.on_delete {
        json!({"type": "OnDelete"})
    } else {
        json!({"type": "RollingUpdate", "rollingUpdate": {"partition": 0}})
    };
    let update_revision = format!("xnat-xnat-web-{}", w.generation);
    let current_revision =
        if w.at_update_revision { update_revision.clone() } else { format!("xnat-xnat-web-{}", w.generation - 1) };
    json!({
        "apiVersion": "apps/v1", "kind": "StatefulSet",
        "metadata": {"name": "xnat-xnat-web", "namespace": "xnat", "generation": w.generation,
                     "labels": {"app.kubernetes.io/name": "xnat-web", "app.kubernetes.io/instance": "xnat",
                                "app.kubernetes.io/managed-by": "Helm", "helm.sh/chart": "xnat-web-1.1.8"}},
        "spec": {
            "replicas": w.replicas,
            "serviceName": "xnat-xnat-web",
            "podManagementPolicy": "OrderedReady",
            "updateStrategy": strategy,
            "selector": {"matchLabels": {"app.kubernetes.io/name": "xnat-web", "app.kubernetes.io/instance": "xnat"}},
            "template": {
                "metadata": {"labels": web_labels()},
                "spec": {
                    "serviceAccountName": "xnat-xnat-web",
                    "initContainers": [wait_for_postgres()],
                    "containers": [{"name": "xnat-web", "image": "australianimagingservice/xnat:1.8.10",
                                    "ports": [{"name": "http", "containerPort": 8080, "protocol": "TCP"}],
                                    "readinessProbe": {"httpGet": {"path": "/app/template/Login.vm", "port": "http"}},
                                    "resources": {"requests": {"cpu": "1", "memory": "4Gi"}}}]
                }
            }
        },
        "status": {"observedGeneration": w.generation, "replicas": w.replicas, "readyReplicas": w.ready,
                   "currentReplicas": if w.at_update_revision { w.replicas } else { w.replicas - w.updated },
                   "updatedReplicas": w.updated, "availableReplicas": w.ready,
                   "currentRevision": current_revision, "updateRevision": update_revision}
    })
}

fn container_status(name: &str, ready: bool) -> Value {
    json!({"name": name, "ready": ready, "restartCount": 0, "image": "", "imageID": "",
           "state": if ready { json!({"running": {}}) } else { json!({"waiting": {"reason": "PodInitializing"}}) }})
}

/// A web pod. `uid` tells a recreated pod from the one deleted.
pub fn web_pod(ordinal: u32, with_sidecar: bool, ready: bool, uid: &str) -> Value {
    let name = format!("xnat-xnat-web-{ordinal}");
    let mut labels = web_labels();
    labels["statefulset.kubernetes.io/pod-name"] = json!(name);
    labels["controller-revision-hash"] = json!("xnat-xnat-web-1");
    pod(&name, labels, "xnat-web", with_sidecar, ready, uid, Some(wait_for_postgres()))
}

fn pod(name: &str, labels: Value, app: &str, with_sidecar: bool, ready: bool, uid: &str, init: Option<Value>) -> Value {
    let mut containers = vec![json!({"name": app})];
    let mut statuses = vec![container_status(app, ready)];
    if with_sidecar {
        containers.push(json!({"name": "istio-proxy", "resources": {"requests": {"cpu": "100m"}}}));
        statuses.push(container_status("istio-proxy", ready));
    }
    let mut spec = json!({"containers": containers});
    if let Some(init) = init {
        spec["initContainers"] = json!([init]);
    }
    json!({
        "metadata": {"name": name, "namespace": "xnat", "uid": uid, "labels": labels},
        "spec": spec,
        "status": {"phase": "Running", "containerStatuses": statuses,
                   "conditions": [{"type": "Ready", "status": if ready { "True" } else { "False" }}]}
    })
}

pub fn postgresql_statefulset() -> Value {
    json!({
        "apiVersion": "apps/v1", "kind": "StatefulSet",
        "metadata": {"name": "xnat-postgresql", "namespace": "xnat", "generation": 1},
        "spec": {"replicas": 1, "serviceName": "xnat-postgresql-hl",
                 "updateStrategy": {"type": "RollingUpdate"},
                 "selector": {"matchLabels": {"app.kubernetes.io/name": "postgresql", "app.kubernetes.io/instance": "xnat"}},
                 "template": {"metadata": {"labels": {"app.kubernetes.io/name": "postgresql", "app.kubernetes.io/instance": "xnat"}},
                              "spec": {"containers": [{"name": "postgresql", "ports": [{"name": "tcp-postgresql", "containerPort": 5432}]}]}}},
        "status": {"observedGeneration": 1, "replicas": 1, "readyReplicas": 1, "currentReplicas": 1, "updatedReplicas": 1,
                   "availableReplicas": 1, "currentRevision": "xnat-postgresql-1", "updateRevision": "xnat-postgresql-1"}
    })
}

pub fn postgresql_pod(with_sidecar: bool) -> Value {
    let labels = json!({"app.kubernetes.io/name": "postgresql", "app.kubernetes.io/instance": "xnat",
                        "statefulset.kubernetes.io/pod-name": "xnat-postgresql-0"});
    pod("xnat-postgresql-0", labels, "postgresql", with_sidecar, true, "pg-0", None)
}

/// An unrelated Deployment (an OHIF viewer) whose only pod crash-loops: it already has its
/// sidecar, and was broken before the rollout.
pub fn crash_looping_deployment() -> Value {
    json!({
        "metadata": {"name": "ohif-viewer", "namespace": "xnat", "generation": 4},
        "spec": {"replicas": 1, "selector": {"matchLabels": {"app": "ohif-viewer"}},
                 "template": {"metadata": {"labels": {"app": "ohif-viewer"}}, "spec": {"containers": [{"name": "ohif"}]}}},
        "status": {"observedGeneration": 4, "replicas": 1, "updatedReplicas": 1, "availableReplicas": 0, "unavailableReplicas": 1,
                   "conditions": [{"type": "Available", "status": "False", "reason": "MinimumReplicasUnavailable"}]}
    })
}

pub fn crash_looping_pod() -> Value {
    let mut p = pod("ohif-viewer-7d9f-x2x4z", json!({"app": "ohif-viewer"}), "ohif", true, false, "ohif-1", None);
    p["status"]["containerStatuses"][0] = json!({"name": "ohif", "ready": false, "restartCount": 41, "image": "", "imageID": "",
        "state": {"waiting": {"reason": "CrashLoopBackOff", "message": "back-off 5m0s restarting failed container"}}});
    p
}

/// A Deployment (a DICOM router) whose pod cannot be scheduled: injected, never started.
pub fn pending_deployment() -> Value {
    json!({
        "metadata": {"name": "dicom-router", "namespace": "xnat", "generation": 1},
        "spec": {"replicas": 1, "selector": {"matchLabels": {"app": "dicom-router"}},
                 "template": {"metadata": {"labels": {"app": "dicom-router"}}, "spec": {"containers": [{"name": "router"}]}}},
        "status": {"observedGeneration": 1, "replicas": 1, "updatedReplicas": 1, "availableReplicas": 0, "unavailableReplicas": 1}
    })
}

pub fn pending_pod() -> Value {
    json!({
        "metadata": {"name": "dicom-router-5c4b-q9k2m", "namespace": "xnat", "uid": "router-1", "labels": {"app": "dicom-router"}},
        "spec": {"containers": [{"name": "router"}, {"name": "istio-proxy"}]},
        "status": {"phase": "Pending", "conditions": [{"type": "PodScheduled", "status": "False", "reason": "Unschedulable",
                   "message": "0/3 nodes are available: 3 Insufficient memory."}]}
    })
}

/// The web Service: port 80, named `http`, to the container's 8080.
pub fn web_service() -> Value {
    json!({
        "apiVersion": "v1", "kind": "Service",
        "metadata": {"name": "xnat-xnat-web", "namespace": "xnat"},
        "spec": {"type": "ClusterIP", "selector": {"app.kubernetes.io/name": "xnat-web", "app.kubernetes.io/instance": "xnat"},
                 "ports": [{"name": "http", "port": 80, "targetPort": 8080, "protocol": "TCP"}],
                 "sessionAffinity": "ClientIP"}
    })
}

pub fn headless_service() -> Value {
    json!({
        "apiVersion": "v1", "kind": "Service",
        "metadata": {"name": "xnat-xnat-web-headless", "namespace": "xnat"},
        "spec": {"clusterIP": "None", "selector": {"app.kubernetes.io/name": "xnat-web", "app.kubernetes.io/instance": "xnat"},
                 "ports": [{"name": "http", "port": 8080, "targetPort": 8080}]}
    })
}

/// The DICOM SCP receiver: a NodePort to 8104, a port no container declares.
pub fn dicom_service() -> Value {
    json!({
        "apiVersion": "v1", "kind": "Service",
        "metadata": {"name": "xnat-xnat-web-dicom-scp", "namespace": "xnat"},
        "spec": {"type": "NodePort", "selector": {"app.kubernetes.io/name": "xnat-web", "app.kubernetes.io/instance": "xnat"},
                 "ports": [{"port": 8104, "targetPort": 8104, "nodePort": 30104}]}
    })
}

pub fn namespace(injection_label: bool) -> Value {
    let labels = if injection_label { json!({"istio-injection": "enabled"}) } else { json!({}) };
    json!({"apiVersion": "v1", "kind": "Namespace", "metadata": {"name": "xnat", "labels": labels}, "status": {"phase": "Active"}})
}

/// What the runbook applied by hand, as the API server returns it.
pub fn runbook_objects() -> Vec<(String, Value)> {
    vec![
        (
            "/apis/security.istio.io/v1/namespaces/istio-system/peerauthentications/default".into(),
            json!({"apiVersion": "security.istio.io/v1", "kind": "PeerAuthentication",
                   "metadata": {"name": "default", "namespace": "istio-system", "creationTimestamp": "2021-09-01T00:00:00Z"},
                   "spec": {"mtls": {"mode": "STRICT"}}}),
        ),
        (
            "/apis/security.istio.io/v1/namespaces/xnat/peerauthentications/default".into(),
            json!({"apiVersion": "security.istio.io/v1", "kind": "PeerAuthentication",
                   "metadata": {"name": "default", "namespace": "xnat", "creationTimestamp": "2021-09-01T00:05:00Z"},
                   "spec": {"selector": {"matchLabels": {"app": "xnat-web"}}, "mtls": {"mode": "STRICT"},
                            "portLevelMtls": {"8080": {"mode": "DISABLE"}}}}),
        ),
        (
            "/apis/networking.istio.io/v1/namespaces/xnat/destinationrules/xnat-xnat-web".into(),
            json!({"apiVersion": "networking.istio.io/v1", "kind": "DestinationRule",
                   "metadata": {"name": "xnat-xnat-web", "namespace": "xnat"},
                   "spec": {"host": "xnat-xnat-web.xnat.svc.cluster.local",
                            "trafficPolicy": {"tls": {"mode": "ISTIO_MUTUAL"},
                                              "portLevelSettings": [{"port": {"number": 8080}, "tls": {"mode": "DISABLE"}}]}}}),
        ),
        (
            "/apis/security.istio.io/v1/namespaces/xnat/authorizationpolicies/xnat-all".into(),
            json!({"apiVersion": "security.istio.io/v1", "kind": "AuthorizationPolicy",
                   "metadata": {"name": "xnat-all", "namespace": "xnat"},
                   "spec": {"selector": {"matchLabels": {"app": "xnat-web"}},
                            "rules": [{"to": [{"operation": {"methods": ["GET", "POST", "HEAD", "PUT", "DELETE", "OPTIONS"]}}]}]}}),
        ),
    ]
}

//! `kiali install`: the Kiali operator's helm release, then Istio's Prometheus and Jaeger
//! add-ons and a Kiali CR (token login, served under /kiali, editable) for it to reconcile.

use std::path::Path;

use serde_json::{json, Value};

use super::helm::{Release, KIALI_REPO};
use super::{Manifest, PlanError, Result};
use crate::inspect::str_at;
use crate::kind::Kind;

/// The add-ons Kiali reads from, as an Istio release ships them (`samples/addons/`).
pub const ADDON_FILES: [&str; 2] = ["prometheus.yaml", "jaeger.yaml"];

/// The kinds Istio's add-on manifests use; anything else is left to kubectl.
const ADDON_KINDS: [Kind; 7] = [
    Kind::SERVICE_ACCOUNT,
    Kind::CONFIG_MAP,
    Kind::SERVICE,
    Kind::DEPLOYMENT,
    Kind::CLUSTER_ROLE,
    Kind::CLUSTER_ROLE_BINDING,
    Kind::ROLE,
];

/// The CRD the kiali-operator chart installs from its `crds/` directory. Helm installs a
/// chart's `crds/` only on a real install, never on `--dry-run`, so a dry run on a cluster
/// without the operator cannot validate the Kiali CR against it.
pub const CRD_NAME: &str = "kialis.kiali.io";

/// The name the operator gives the server's Deployment unless the CR sets
/// `spec.deployment.instance_name` (the operator's defaults).
pub const DEFAULT_INSTANCE_NAME: &str = "kiali";

/// Why a dry run leaves the Kiali CR unvalidated on a cluster without the operator's CRD.
pub fn not_validated_without_crd() -> String {
    format!(
        "the {CRD_NAME} CRD is not installed yet: it comes with the kiali-operator chart, which a dry run does not \
         install; the CR is validated when `deployer kiali install` runs for real, once the chart has installed the CRD"
    )
}

/// Where the operator runs the Kiali server for a CR: the Deployment it creates, named after
/// the instance, in the deployment namespace.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct ServerDeployment {
    pub namespace: String,
    pub name: String,
}

impl ServerDeployment {
    pub fn describe(&self) -> String {
        format!("Deployment {}/{}", self.namespace, self.name)
    }
}

/// The server's Deployment for a Kiali CR (the whole object, as the API server returns it).
/// The operator records what it used in `status.deployment` (`instanceName`, `namespace`) and
/// refuses to change either later, so the status is the truth once reconciled; before that, the
/// spec's `deployment.instance_name` and `deployment.namespace`, which default to `kiali` and
/// the CR's own namespace.
pub fn server_deployment(cr: &Value) -> ServerDeployment {
    let first = |paths: [&[&str]; 2], default: &str| {
        paths.iter().map(|p| str_at(cr, p)).find(|v| !v.is_empty()).unwrap_or(default).to_string()
    };
    let cr_namespace = str_at(cr, &["metadata", "namespace"]);
    ServerDeployment {
        namespace: first([&["status", "deployment", "namespace"], &["spec", "deployment", "namespace"]], cr_namespace),
        name: first(
            [&["status", "deployment", "instanceName"], &["spec", "deployment", "instance_name"]],
            DEFAULT_INSTANCE_NAME,
        ),
    }
}

/// One add-on file's text, and where it was read.
#[derive(Debug, Clone)]
pub struct AddonFile {
    pub origin: String,
    pub text: String,
}

/// What the user asked for.
#[derive(Debug, Clone)]
pub struct Spec {
    /// Where Kiali and the add-ons run.
    pub namespace: String,
    /// The Kiali Service type.
    pub service_type: String,
    /// The kiali-operator chart version.
    pub operator_version: String,
    pub timeout_secs: u64,
    /// [`read_addons`] of an Istio release.
    pub addons: Vec<AddonFile>,
}

/// The operator release, and the manifests to apply once it runs, in order.
#[derive(Debug, Clone)]
pub struct Plan {
    pub operator: Release,
    /// The add-ons, then the Kiali CR.
    pub manifests: Vec<Manifest>,
}

impl Plan {
    /// The helm command line, then the manifests as one YAML stream.
    pub fn to_yaml(&self) -> String {
        format!("# {}\n{}", self.operator.command_line(false), super::to_yaml(&self.manifests))
    }
}

pub fn plan(spec: &Spec) -> Result<Plan> {
    let mut manifests = addon_manifests(&spec.addons, &spec.namespace)?;
    manifests.push(kiali_cr(&spec.namespace, &spec.service_type));
    Ok(Plan { operator: operator_release(&spec.operator_version, spec.timeout_secs), manifests })
}

/// Reads the add-on files of an unpacked Istio release: the one thing here that touches the disk.
pub fn read_addons(istio_dir: &Path) -> Result<Vec<AddonFile>> {
    ADDON_FILES
        .iter()
        .map(|file| {
            let path = istio_dir.join("samples/addons").join(file);
            let text = std::fs::read_to_string(&path).map_err(|e| {
                PlanError::Invalid(format!(
                    "{}: {e}; --istio-dir must be an unpacked Istio release (curl -L https://istio.io/downloadIstio | sh -)",
                    path.display()
                ))
            })?;
            Ok(AddonFile { origin: path.display().to_string(), text })
        })
        .collect()
}

pub fn operator_release(version: &str, timeout_secs: u64) -> Release {
    Release {
        name: "kiali-operator".into(),
        chart: "kiali-operator".into(),
        repo: KIALI_REPO.into(),
        version: version.into(),
        namespace: "kiali-operator".into(),
        create_namespace: true,
        // The Kiali CR is applied by the deployer itself, so it can wait on its status.
        values: vec![("cr.create".into(), "false".into())],
        timeout_secs,
    }
}

/// The Kiali CR: token login, the service type asked for, editable, served under /kiali.
pub fn kiali_cr(namespace: &str, service_type: &str) -> Manifest {
    Manifest {
        kind: Kind::KIALI,
        name: "kiali".into(),
        namespace: Some(namespace.into()),
        body: json!({
            "apiVersion": Kind::KIALI.api_version(),
            "kind": Kind::KIALI.kind,
            "metadata": { "name": "kiali", "namespace": namespace },
            "spec": {
                "auth": { "strategy": "token" },
                "deployment": { "service_type": service_type, "view_only_mode": false },
                "server": { "web_root": "/kiali" },
            },
        }),
        origin: "kiali install".into(),
    }
}

/// The add-ons' objects, each namespaced one put in `namespace` unless it names its own.
pub fn addon_manifests(files: &[AddonFile], namespace: &str) -> Result<Vec<Manifest>> {
    let mut out = Vec::new();
    for file in files {
        for doc in serde_yaml::Deserializer::from_str(&file.text) {
            let mut body: Value = serde::Deserialize::deserialize(doc)
                .map_err(|e| PlanError::Invalid(format!("{}: not valid YAML: {e}", file.origin)))?;
            if body.is_null() {
                continue;
            }
            let (api_version, kind_name) = (str_at(&body, &["apiVersion"]), str_at(&body, &["kind"]));
            let kind = ADDON_KINDS.iter().find(|k| k.kind == kind_name && k.api_version() == api_version).copied();
            let kind = kind.ok_or_else(|| {
                PlanError::Invalid(format!(
                    "{}: {kind_name} ({api_version}) is not a kind the add-ons are known to use; apply it with kubectl",
                    file.origin
                ))
            })?;
            let name = str_at(&body, &["metadata", "name"]).to_string();
            if kind.namespaced && body["metadata"].get("namespace").is_none() {
                body["metadata"]["namespace"] = json!(namespace);
            }
            let ns = kind.namespaced.then(|| str_at(&body, &["metadata", "namespace"]).to_string());
            out.push(Manifest { kind, name, namespace: ns, body, origin: file.origin.clone() });
        }
    }
    Ok(out)
}

#[cfg(test)]
mod tests {
    use super::*;

    fn file(text: &str) -> Vec<AddonFile> {
        vec![AddonFile { origin: "addons.yaml".into(), text: text.into() }]
    }

    #[test]
    fn namespaced_add_ons_land_in_the_namespace_and_cluster_scoped_ones_stay_cluster_scoped() {
        let text = "apiVersion: v1\nkind: Service\nmetadata: {name: prometheus}\n---\n\
                    apiVersion: rbac.authorization.k8s.io/v1\nkind: ClusterRole\nmetadata: {name: prometheus}\n";
        let manifests = addon_manifests(&file(text), "istio-system").unwrap();
        let names: Vec<String> = manifests.iter().map(Manifest::describe).collect();
        assert_eq!(names, ["Service istio-system/prometheus", "ClusterRole prometheus"]);
        assert_eq!(manifests[0].body["metadata"]["namespace"], "istio-system");
        assert!(manifests[1].body["metadata"].get("namespace").is_none());
    }

    #[test]
    fn the_server_deployment_is_where_the_operator_says_else_where_the_spec_puts_it() {
        let cr = json!({"metadata": {"name": "kiali", "namespace": "istio-system"}, "spec": {}});
        assert_eq!(server_deployment(&cr), ServerDeployment { namespace: "istio-system".into(), name: "kiali".into() });
        let cr = json!({"metadata": {"name": "kiali", "namespace": "kiali-operator"},
                        "spec": {"deployment": {"namespace": "istio-system", "instance_name": "mesh-console"}}});
        assert_eq!(server_deployment(&cr).describe(), "Deployment istio-system/mesh-console");
        let cr = json!({"metadata": {"name": "kiali", "namespace": "istio-system"},
                        "spec": {"deployment": {"instance_name": "renamed-after"}},
                        "status": {"deployment": {"instanceName": "kiali", "namespace": "istio-system"}}});
        assert_eq!(server_deployment(&cr).describe(), "Deployment istio-system/kiali");
    }

    #[test]
    fn an_unknown_add_on_kind_is_refused_with_what_to_do() {
        let err = addon_manifests(&file("apiVersion: v1\nkind: Secret\nmetadata: {name: s}\n"), "ns").unwrap_err();
        assert!(err.to_string().contains("Secret (v1) is not a kind the add-ons are known to use"), "{err}");
    }
}

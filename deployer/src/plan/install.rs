//! `install`: Istio's `base` and `istiod` charts pinned to one version, and what must hold
//! before them (a Kubernetes the version supports, the permissions the charts need) and after
//! (the CRDs the deployer relies on).

use super::helm::{Release, ISTIO_REPO};
use crate::kind::Kind;

/// Kubernetes minor versions each Istio minor is supported on, as each release's announcement
/// states it ("Istio 1.27.0 is officially supported on Kubernetes versions 1.29 to 1.33").
const SUPPORT: [(&str, u32, u32); 5] =
    [("1.24", 28, 31), ("1.25", 29, 32), ("1.26", 29, 33), ("1.27", 29, 33), ("1.28", 29, 34)];

/// The kinds whose CRDs the deployer relies on, checked after the base chart.
pub const REQUIRED_CRDS: [Kind; 4] =
    [Kind::WASM_PLUGIN, Kind::PEER_AUTHENTICATION, Kind::AUTHORIZATION_POLICY, Kind::DESTINATION_RULE];

/// What the caller must be allowed to do for the charts to install: verb, API group, resource.
pub const PERMISSIONS: [(&str, &str, &str); 4] = [
    ("create", "apiextensions.k8s.io", "customresourcedefinitions"),
    ("create", "admissionregistration.k8s.io", "mutatingwebhookconfigurations"),
    ("create", "rbac.authorization.k8s.io", "clusterroles"),
    ("create", "", "namespaces"),
];

/// Whether this Kubernetes minor is supported by this Istio version: `Err` when it is too old
/// (the charts would fail or misbehave), `Ok(Some(warning))` when newer than the table knows.
pub fn check_version(istio: &str, k8s_minor: u32) -> Result<Option<String>, String> {
    let istio_minor: String = istio.split('.').take(2).collect::<Vec<_>>().join(".");
    match SUPPORT.iter().find(|(v, _, _)| *v == istio_minor) {
        Some((_, min, _)) if k8s_minor < *min => Err(format!(
            "Istio {istio} needs Kubernetes 1.{min} or newer and the cluster runs 1.{k8s_minor}; upgrade the cluster or pick an older --version"
        )),
        Some((_, _, max)) if k8s_minor > *max => Ok(Some(format!(
            "Istio {istio} is tested up to Kubernetes 1.{max}; the cluster runs 1.{k8s_minor}"
        ))),
        Some(_) => Ok(None),
        None => Ok(Some(format!("Istio {istio} is not in the deployer's support table; its Kubernetes range is not checked"))),
    }
}

/// The releases the runbook installs, in order: `istio-base` (CRDs, with the default revision
/// set) then `istiod`, both pinned to one version.
pub fn releases(version: &str, namespace: &str, timeout_secs: u64) -> Vec<Release> {
    vec![
        Release {
            name: "istio-base".into(),
            chart: "base".into(),
            repo: ISTIO_REPO.into(),
            version: version.into(),
            namespace: namespace.into(),
            create_namespace: true,
            values: vec![("defaultRevision".into(), "default".into())],
            timeout_secs,
        },
        Release {
            name: "istiod".into(),
            chart: "istiod".into(),
            repo: ISTIO_REPO.into(),
            version: version.into(),
            namespace: namespace.into(),
            create_namespace: false,
            values: Vec::new(),
            timeout_secs,
        },
    ]
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn istio_1_27_and_1_28_install_on_kubernetes_1_29_as_their_announcements_say() {
        // "Istio 1.27.0 is officially supported on Kubernetes versions 1.29 to 1.33", 1.28.0: 1.29 to 1.34.
        for (istio, oldest, newest) in [("1.27.3", 29, 33), ("1.28.0", 29, 34)] {
            assert_eq!(check_version(istio, oldest), Ok(None), "{istio} on 1.{oldest}");
            assert_eq!(check_version(istio, newest), Ok(None), "{istio} on 1.{newest}");
            let refused = check_version(istio, oldest - 1).unwrap_err();
            assert!(refused.contains("needs Kubernetes 1.29 or newer"), "{refused}");
            assert!(check_version(istio, newest + 1).unwrap().unwrap().contains("tested up to"));
        }
    }

    #[test]
    fn too_old_clusters_are_refused_and_newer_ones_warned() {
        assert!(check_version("1.27.3", 28).unwrap_err().contains("1.29 or newer"));
        assert_eq!(check_version("1.27.3", 31), Ok(None));
        assert!(check_version("1.27.3", 35).unwrap().unwrap().contains("tested up to"));
        assert!(check_version("1.99.0", 30).unwrap().unwrap().contains("not in the deployer's support table"));
    }

    #[test]
    fn the_required_crds_are_the_kinds_the_deployer_applies() {
        let names: Vec<String> = REQUIRED_CRDS.iter().map(Kind::crd_name).collect();
        assert_eq!(
            names,
            [
                "wasmplugins.extensions.istio.io",
                "peerauthentications.security.istio.io",
                "authorizationpolicies.security.istio.io",
                "destinationrules.networking.istio.io",
            ]
        );
    }
}

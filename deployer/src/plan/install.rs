//! `install`: Istio's `base` and `istiod` charts pinned to one version, and what must hold
//! before them (a Kubernetes the version supports, the permissions the charts need) and after
//! (the CRDs the deployer relies on).

use serde_json::{json, Value};

use super::helm::{Release, ISTIO_REPO};
use crate::inspect::served::{minor_of, InstalledIstio, ServedApis};
use crate::inspect::str_at;
use crate::kind::Kind;

/// Kubernetes minor versions each Istio minor is supported on, as each release's announcement
/// states it ("Istio 1.27.0 is officially supported on Kubernetes versions 1.29 to 1.33"). The
/// old releases are here for the upgrade path, whose every step must run on the cluster.
const SUPPORT: [(&str, u32, u32); 18] = [
    ("1.11", 18, 22),
    ("1.12", 19, 22),
    ("1.13", 20, 23),
    ("1.14", 21, 24),
    ("1.15", 22, 25),
    ("1.16", 22, 25),
    ("1.17", 23, 26),
    ("1.18", 24, 27),
    ("1.19", 25, 28),
    ("1.20", 25, 28),
    ("1.21", 26, 29),
    ("1.22", 27, 30),
    ("1.23", 27, 30),
    ("1.24", 28, 31),
    ("1.25", 29, 32),
    ("1.26", 29, 33),
    ("1.27", 29, 33),
    ("1.28", 29, 34),
];

/// The Kubernetes range of an Istio minor, if the table knows it.
fn supported_kubernetes(major: u32, minor: u32) -> Option<(u32, u32)> {
    let key = format!("{major}.{minor}");
    SUPPORT.iter().find(|(v, _, _)| *v == key).map(|(_, min, max)| (*min, *max))
}

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
    // `~1.12.0` (a range helm resolves to the latest patch) is checked as its minor.
    let istio_minor = minor_of(istio).map(|(major, minor)| format!("{major}.{minor}")).unwrap_or_default();
    match SUPPORT.iter().find(|(v, _, _)| *v == istio_minor) {
        Some((_, min, _)) if k8s_minor < *min => Err(format!(
            "Istio {istio} needs Kubernetes 1.{min} or newer and the cluster runs 1.{k8s_minor}; upgrade the cluster or pick an older --version"
        )),
        Some((_, _, max)) if k8s_minor > *max => {
            Ok(Some(format!("Istio {istio} is tested up to Kubernetes 1.{max}; the cluster runs 1.{k8s_minor}")))
        }
        Some(_) => Ok(None),
        None => Ok(Some(format!(
            "Istio {istio} is not in the deployer's support table; its Kubernetes range is not checked"
        ))),
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

/// Whether `target` may be installed over what is there: Istio upgrades (in place or canary)
/// one minor version at a time, so a larger jump, or a downgrade, is refused with the path to
/// take and the next command. `Ok(Some(note))` says what the upgrade starts from.
pub fn check_upgrade(
    installed: Option<&InstalledIstio>,
    target: &str,
    k8s_minor: u32,
) -> Result<Option<String>, String> {
    let Some(installed) = installed else { return Ok(None) };
    let (Some((major, from)), Some((target_major, to))) = (installed.minor(), minor_of(target)) else {
        return Ok(Some(format!(
            "Istio {} is installed ({}); its version is not one the deployer can compare with {target}",
            installed.version, installed.evidence
        )));
    };
    let found = format!("Istio {} is installed ({})", installed.version, installed.evidence);
    if (target_major, to) < (major, from) {
        return Err(format!(
            "{found}, and --version {target} would downgrade it: Istio does not support downgrades. \
             Pass --version {} (or newer) to keep it, or roll back with `helm -n istio-system rollback istiod` if an upgrade went wrong",
            installed.version
        ));
    }
    if target_major != major || to > from + 1 {
        let path: Vec<String> = (from..=to).map(|m| format!("{major}.{m}")).collect();
        let path = path.join(" → ");
        let found = format!(
            "{found}, and Istio upgrades one minor version at a time: {major}.{from} to {target} in one step is not supported"
        );
        // A step that never ran on this cluster's Kubernetes makes the path moot.
        let unsupported: Vec<u32> = (from + 1..to)
            .filter(|m| supported_kubernetes(major, *m).is_some_and(|(min, max)| k8s_minor < min || k8s_minor > max))
            .collect();
        // Only a base chart before 1.24 leaves its CRDs behind on uninstall, which the way out
        // below relies on; a later one is stepped through even past its tested range.
        let (Some(first), Some(last), true) =
            (unsupported.first(), unsupported.last(), (major, from) < TEMPLATED_CRDS_SINCE)
        else {
            let range = if unsupported.is_empty() {
                format!("each supports this cluster's Kubernetes 1.{k8s_minor}")
            } else {
                format!(
                    "some are tested only up to an older Kubernetes than 1.{k8s_minor}: \
                     https://istio.io/latest/docs/releases/supported-releases/"
                )
            };
            return Err(format!(
                "{found}. Take the path {path}, one `deployer install` per step, checking the mesh between steps \
                 ({range}); next: `deployer install --version '~{major}.{}.0'` (the latest {major}.{} patch)",
                from + 1,
                from + 1
            ));
        };
        let steps = if first == last {
            format!("Istio {major}.{first} was")
        } else {
            format!("Istio {major}.{first} to {major}.{last} were")
        };
        return Err(format!(
            "{found}. The supported path is {path}, but {steps} never supported on Kubernetes 1.{k8s_minor}, \
             so it cannot run on this cluster. The way out is a fresh install, with a gap in which no new pod gets a sidecar: \
             next: `helm -n istio-system uninstall istiod`, then `helm -n istio-system uninstall istio-base` \
             (the CRDs and your policies stay: a base chart before 1.24 never owned its CRDs), \
             then `deployer install --version {target}` (which adopts the CRDs), then restart the meshed workloads \
             so their sidecars match the new istiod"
        ));
    }
    if installed.version == target.trim_start_matches('v') {
        return Ok(Some(format!("{found}; reinstalling the same version")));
    }
    Ok(Some(format!("{found}; upgrading Istio {} to {target} in place", installed.version)))
}

/// The first base chart whose CRDs are templates, which Helm owns like any other object.
/// Before it they were plain files under `crds/`, which Helm installs once and never owns, so
/// upgrading such a release to 1.24 or later fails with "invalid ownership metadata".
pub const TEMPLATED_CRDS_SINCE: (u32, u32) = (1, 24);

/// The label and annotations Helm checks before it takes an existing object into a release.
const HELM_MANAGED_BY: (&str, &str) = ("app.kubernetes.io/managed-by", "Helm");
const HELM_RELEASE_NAME: &str = "meta.helm.sh/release-name";
const HELM_RELEASE_NAMESPACE: &str = "meta.helm.sh/release-namespace";

/// One Istio CRD taken into the base chart's release: a JSON merge patch of its metadata only.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct CrdAdoption {
    pub crd: String,
    pub patch: Value,
}

impl CrdAdoption {
    /// The same change, as a user would make it by hand.
    pub fn command_line(&self) -> String {
        format!("kubectl patch crd {} --type merge -p '{}'", self.crd, self.patch)
    }
}

/// The one-time migration that lets the base chart of `target` (1.24 or later) take over
/// Istio's CRDs (those labelled `chart=istio` or `app.kubernetes.io/part-of=istio`, as
/// Istio's upgrade notes select them): each CRD Helm does not own yet, by name. A CRD that
/// another Helm release owns is refused: taking it would break that release.
pub fn crd_adoption(target: &str, crds: &[Value], release: &str, namespace: &str) -> Result<Vec<CrdAdoption>, String> {
    if minor_of(target).is_none_or(|m| m < TEMPLATED_CRDS_SINCE) {
        return Ok(Vec::new());
    }
    let mut by_name: Vec<&Value> = crds.iter().collect();
    by_name.sort_by_key(|c| str_at(c, &["metadata", "name"]));
    by_name.dedup_by_key(|c| str_at(c, &["metadata", "name"]));
    let mut adoptions = Vec::new();
    for crd in by_name {
        let name = str_at(crd, &["metadata", "name"]);
        let owner = str_at(crd, &["metadata", "annotations", HELM_RELEASE_NAME]);
        let owner_namespace = str_at(crd, &["metadata", "annotations", HELM_RELEASE_NAMESPACE]);
        if !owner.is_empty() && (owner != release || (!owner_namespace.is_empty() && owner_namespace != namespace)) {
            return Err(format!(
                "CRD {name} belongs to helm release {owner} in {owner_namespace}, not {release} in {namespace}: \
                 installing the base chart as {release} would fail on it. Upgrade Istio through that release, \
                 or move the CRD to {release} (`kubectl annotate crd {name} --overwrite {HELM_RELEASE_NAME}={release} {HELM_RELEASE_NAMESPACE}={namespace}`)"
            ));
        }
        let owned = str_at(crd, &["metadata", "labels", HELM_MANAGED_BY.0]) == HELM_MANAGED_BY.1
            && owner == release
            && owner_namespace == namespace;
        if !owned {
            let patch = json!({"metadata": {
                "labels": {HELM_MANAGED_BY.0: HELM_MANAGED_BY.1},
                "annotations": {HELM_RELEASE_NAME: release, HELM_RELEASE_NAMESPACE: namespace}}});
            adoptions.push(CrdAdoption { crd: name.to_string(), patch });
        }
    }
    Ok(adoptions)
}

/// What `install --dry-run` prints of the migration: why, then each patch as a command.
pub fn adoption_text(adoptions: &[CrdAdoption], release: &str) -> String {
    if adoptions.is_empty() {
        return String::new();
    }
    let mut text = format!(
        "# {} Istio CRDs predate Istio 1.24's templated CRDs, so Helm does not own them: adopt them into {release} once\n",
        adoptions.len()
    );
    text.extend(adoptions.iter().map(|a| format!("{}\n", a.command_line())));
    text
}

/// Whether the CRDs the cluster serves are those of `target` (checked after the base chart):
/// `security.istio.io/v1` from Istio 1.22, FAIL_RELOAD from 1.27. A base chart before 1.24
/// never updates its CRDs on `helm upgrade`, so an Istio upgraded by hand can run a new istiod
/// over old CRDs. Returns the report line, or what is old and what to run.
pub fn check_crds_current(target: &str, served: &ServedApis) -> Result<String, String> {
    let Some(version) = minor_of(target) else { return Ok(format!("CRDs not compared with {target}")) };
    let mut old = Vec::new();
    if version >= (1, 22) && !served.security.iter().any(|v| v == "v1") {
        old.push("security.istio.io/v1 is not served (Istio 1.22 added it)");
    }
    if version >= (1, 27) && served.fail_reload == Some(false) {
        old.push("WasmPlugin's failStrategy lacks FAIL_RELOAD (Istio 1.27 added it)");
    }
    if old.is_empty() {
        return Ok(format!("CRDs are current for Istio {target}"));
    }
    let fix = if version >= TEMPLATED_CRDS_SINCE {
        format!("re-run `deployer install --version {target}`, which adopts them for Helm so the chart updates them")
    } else {
        // Before 1.24 the chart's CRDs are plain files Helm installs once: apply them by hand.
        format!(
            "apply that release's CRDs yourself: `helm pull base --repo {ISTIO_REPO} --version {target} --untar` \
             then `kubectl apply --server-side --force-conflicts -f base/crds/` (they are Istio's own)"
        )
    };
    Err(format!(
        "Istio's CRDs are older than {target}: {}. The base chart did not update them (one before 1.24 never does on \
         `helm upgrade`); {fix}",
        old.join("; ")
    ))
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::inspect::served::Evidence;
    use serde_json::json;

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
    fn a_version_range_as_the_upgrade_path_suggests_is_checked_like_its_minor() {
        assert_eq!(check_version("~1.28.0", 30), Ok(None));
        assert!(check_version("~1.27.0", 28).unwrap_err().contains("needs Kubernetes 1.29"));
    }

    #[test]
    fn too_old_clusters_are_refused_and_newer_ones_warned() {
        assert!(check_version("1.27.3", 28).unwrap_err().contains("1.29 or newer"));
        assert_eq!(check_version("1.27.3", 31), Ok(None));
        assert!(check_version("1.27.3", 35).unwrap().unwrap().contains("tested up to"));
        assert!(check_version("1.99.0", 30).unwrap().unwrap().contains("not in the deployer's support table"));
    }

    fn installed(version: &str) -> InstalledIstio {
        InstalledIstio {
            version: version.into(),
            evidence: Evidence::HelmRelease { release: "istio-base".into(), revision: 1 },
        }
    }

    #[test]
    fn the_runbooks_istio_1_11_is_not_upgraded_to_1_28_in_one_jump_and_the_path_is_named() {
        let err = check_upgrade(Some(&installed("1.11.4")), "1.28.0", 31).unwrap_err();
        assert!(err.contains("Istio 1.11.4 is installed (helm release istio-base, revision 1)"), "{err}");
        assert!(err.contains("one minor version at a time"), "{err}");
        assert!(err.contains("1.11 → 1.12 → 1.13 → 1.14 → 1.15 → 1.16 → 1.17 → 1.18 → 1.19 → 1.20 → 1.21 → 1.22 → 1.23 → 1.24 → 1.25 → 1.26 → 1.27 → 1.28"), "{err}");
        assert!(err.contains("next: `helm -n istio-system uninstall istiod`"), "{err}");
        assert!(!err.contains("~1.12.0"), "no step to take that cannot run here: {err}");
    }

    #[test]
    fn a_path_through_releases_this_kubernetes_never_supported_is_called_so_with_the_way_out() {
        // EKS on 1.31 under the runbook's 1.11: Istio 1.12 to 1.23 never supported Kubernetes 1.31.
        let err = check_upgrade(Some(&installed("1.11.4")), "1.28.0", 31).unwrap_err();
        assert!(err.contains("Istio 1.12 to 1.23 were never supported on Kubernetes 1.31"), "{err}");
        assert!(
            err.contains("helm -n istio-system uninstall istiod")
                && err.contains("helm -n istio-system uninstall istio-base"),
            "{err}"
        );
        assert!(err.contains("the CRDs and your policies stay"), "{err}");
        assert!(err.contains("deployer install --version 1.28.0"), "{err}");
        // A path every step of which runs here says nothing of the kind.
        let err = check_upgrade(Some(&installed("1.26.1")), "1.28.0", 31).unwrap_err();
        assert!(err.contains("1.26 → 1.27 → 1.28") && !err.contains("never supported"), "{err}");
        assert!(err.contains("next: `deployer install --version '~1.27.0'` (the latest 1.27 patch)"), "{err}");
        // Templated CRDs (1.24 and later) would go with an uninstalled istio-base: step through.
        let err = check_upgrade(Some(&installed("1.24.6")), "1.28.0", 34).unwrap_err();
        assert!(!err.contains("uninstall") && err.contains("tested only up to an older Kubernetes than 1.34"), "{err}");
    }

    #[test]
    fn one_minor_up_or_the_same_minor_is_an_upgrade_in_place() {
        let note = check_upgrade(Some(&installed("1.27.3")), "1.28.0", 31).unwrap().unwrap();
        assert!(note.contains("upgrading Istio 1.27.3") && note.contains("to 1.28.0"), "{note}");
        assert!(check_upgrade(Some(&installed("1.28.0")), "1.28.1", 31).unwrap().unwrap().contains("1.28.0"));
        assert!(check_upgrade(Some(&installed("1.28.0")), "1.28.0", 31)
            .unwrap()
            .unwrap()
            .contains("reinstalling the same version"));
        assert_eq!(check_upgrade(None, "1.28.0", 31), Ok(None), "nothing installed: a fresh install");
    }

    #[test]
    fn an_older_version_than_installed_is_refused_as_a_downgrade() {
        let err = check_upgrade(Some(&installed("1.28.0")), "1.27.3", 31).unwrap_err();
        assert!(err.contains("would downgrade") && err.contains("--version 1.28.0"), "{err}");
    }

    fn crd(name: &str, labels: Value, annotations: Value) -> Value {
        json!({"metadata": {"name": name, "labels": labels, "annotations": annotations}})
    }

    #[test]
    fn crds_of_a_pre_1_24_base_chart_are_adopted_for_helm_with_a_metadata_merge_patch() {
        let plain = crd("wasmplugins.extensions.istio.io", json!({"chart": "istio", "release": "istio"}), json!({}));
        let owned = crd(
            "peerauthentications.security.istio.io",
            json!({"app.kubernetes.io/managed-by": "Helm"}),
            json!({"meta.helm.sh/release-name": "istio-base", "meta.helm.sh/release-namespace": "istio-system"}),
        );
        let adopt = crd_adoption("1.28.0", &[owned, plain.clone(), plain], "istio-base", "istio-system").unwrap();
        assert_eq!(adopt.len(), 1, "each CRD once, only those Helm does not own yet: {adopt:?}");
        assert_eq!(adopt[0].crd, "wasmplugins.extensions.istio.io");
        assert_eq!(
            adopt[0].patch,
            json!({"metadata": {"labels": {"app.kubernetes.io/managed-by": "Helm"},
                                "annotations": {"meta.helm.sh/release-name": "istio-base", "meta.helm.sh/release-namespace": "istio-system"}}})
        );
        assert!(adopt[0]
            .command_line()
            .starts_with("kubectl patch crd wasmplugins.extensions.istio.io --type merge -p '"));
    }

    #[test]
    fn no_adoption_for_a_base_chart_before_1_24_and_a_crd_of_another_release_is_refused() {
        let plain = crd("wasmplugins.extensions.istio.io", json!({"chart": "istio"}), json!({}));
        assert_eq!(crd_adoption("1.23.6", std::slice::from_ref(&plain), "istio-base", "istio-system"), Ok(vec![]));
        let other = crd(
            "wasmplugins.extensions.istio.io",
            json!({"app.kubernetes.io/managed-by": "Helm"}),
            json!({"meta.helm.sh/release-name": "istio-crds", "meta.helm.sh/release-namespace": "istio-system"}),
        );
        let err = crd_adoption("1.28.0", &[other], "istio-base", "istio-system").unwrap_err();
        assert!(err.contains("helm release istio-crds") && err.contains("istio-base"), "{err}");
    }

    #[test]
    fn crds_left_at_an_old_istio_after_the_base_chart_are_called_out() {
        let served = |security: &[&str], fail_reload| ServedApis {
            security: security.iter().map(|v| v.to_string()).collect(),
            fail_reload,
            ..Default::default()
        };
        assert!(check_crds_current("1.28.0", &served(&["v1", "v1beta1"], Some(true))).is_ok());
        assert!(check_crds_current("1.26.1", &served(&["v1"], Some(false))).is_ok(), "FAIL_RELOAD is 1.27's");
        let err = check_crds_current("1.28.0", &served(&["v1beta1"], Some(false))).unwrap_err();
        assert!(err.contains("security.istio.io/v1 is not served") && err.contains("lacks FAIL_RELOAD"), "{err}");
        assert!(check_crds_current("1.21.6", &served(&["v1beta1"], None)).is_ok());
        // A step before 1.24 cannot adopt them: its chart's CRD files are applied by hand.
        let err = check_crds_current("1.22.8", &served(&["v1beta1"], None)).unwrap_err();
        assert!(
            err.contains(
                "helm pull base --repo https://istio-release.storage.googleapis.com/charts --version 1.22.8 --untar"
            ),
            "{err}"
        );
        assert!(
            err.contains("kubectl apply --server-side --force-conflicts -f base/crds/") && !err.contains("adopts"),
            "{err}"
        );
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

//! The Helm command lines `install` and `kiali install` run, checked exactly with a recording
//! stand-in for `helm` on PATH (no real helm here; the cluster suite runs the real one).

use std::os::unix::fs::PermissionsExt;

use deployer::apply::helm;
use deployer::plan::{install, kiali};

fn stand_in(dir: &std::path::Path, exit: i32) -> std::path::PathBuf {
    let record = dir.join("calls");
    let script = dir.join("helm");
    std::fs::write(&script, format!("#!/bin/sh\necho \"$@\" >> {}\nexit {exit}\n", record.display())).unwrap();
    std::fs::set_permissions(&script, std::fs::Permissions::from_mode(0o755)).unwrap();
    record
}

#[test]
fn istio_is_installed_with_pinned_versions_wait_and_the_default_revision() {
    let dir = tempfile::tempdir().unwrap();
    let record = stand_in(dir.path(), 0);
    let path = std::env::join_paths([dir.path(), std::path::Path::new("/usr/bin")]).unwrap();
    let helm_bin = helm::find_helm(Some(path)).unwrap();
    assert_eq!(helm_bin, dir.path().join("helm"));
    for release in install::releases("1.27.3", "istio-system", 300) {
        helm::run(&helm_bin, &release, Some(std::path::Path::new("/tmp/kc")), Some("kind-xnat"), false).unwrap();
    }
    let calls = std::fs::read_to_string(record).unwrap();
    assert_eq!(
        calls.lines().collect::<Vec<_>>(),
        [
            "upgrade --install istio-base base --repo https://istio-release.storage.googleapis.com/charts --version 1.27.3 \
             --namespace istio-system --create-namespace --set defaultRevision=default --wait --timeout 300s \
             --kubeconfig /tmp/kc --kube-context kind-xnat",
            "upgrade --install istiod istiod --repo https://istio-release.storage.googleapis.com/charts --version 1.27.3 \
             --namespace istio-system --wait --timeout 300s --kubeconfig /tmp/kc --kube-context kind-xnat",
        ]
    );
}

#[test]
fn kiali_operator_chart_and_dry_run() {
    let dir = tempfile::tempdir().unwrap();
    let record = stand_in(dir.path(), 0);
    let helm_bin = helm::find_helm(Some(dir.path().as_os_str().to_owned())).unwrap();
    helm::run(&helm_bin, &kiali::operator_release("2.17.0", 120), None, None, true).unwrap();
    assert_eq!(
        std::fs::read_to_string(record).unwrap().trim(),
        "upgrade --install kiali-operator kiali-operator --repo https://kiali.org/helm-charts --version 2.17.0 \
         --namespace kiali-operator --create-namespace --set cr.create=false --wait --timeout 120s --dry-run=server"
    );
}

#[test]
fn a_failing_helm_is_reported_with_its_command_line() {
    let dir = tempfile::tempdir().unwrap();
    stand_in(dir.path(), 1);
    let helm_bin = helm::find_helm(Some(dir.path().as_os_str().to_owned())).unwrap();
    let err = helm::run(&helm_bin, &install::releases("1.27.3", "istio-system", 60)[0], None, None, false)
        .unwrap_err()
        .to_string();
    assert!(err.contains("`helm upgrade --install istio-base base"), "{err}");
    assert!(err.contains("re-run"), "{err}");
}

#[test]
fn no_helm_on_path_says_how_to_get_it() {
    let dir = tempfile::tempdir().unwrap();
    let err = helm::find_helm(Some(dir.path().as_os_str().to_owned())).unwrap_err().to_string();
    assert!(err.contains("helm is not on PATH") && err.contains("helm.sh"), "{err}");
}

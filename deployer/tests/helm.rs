//! The Helm command lines `install` and `kiali install` run, checked exactly with a recording
//! stand-in for `helm` on PATH (no real helm here; the cluster suite runs the real one).

use std::os::unix::fs::PermissionsExt;

use deployer::apply::helm;
use deployer::plan::{install, kiali};

/// One test at a time writes and runs its stand-in: a script written while another thread forks
/// is held open for writing in that child until it execs, and running it then fails with "Text
/// file busy" (ETXTBSY).
fn serial() -> std::sync::MutexGuard<'static, ()> {
    static LOCK: std::sync::Mutex<()> = std::sync::Mutex::new(());
    LOCK.lock().unwrap_or_else(std::sync::PoisonError::into_inner)
}

fn stand_in(dir: &std::path::Path, exit: i32) -> std::path::PathBuf {
    let record = dir.join("calls");
    let script = dir.join("helm");
    std::fs::write(&script, format!("#!/bin/sh\necho \"$@\" >> {}\nexit {exit}\n", record.display())).unwrap();
    std::fs::set_permissions(&script, std::fs::Permissions::from_mode(0o755)).unwrap();
    record
}

#[test]
fn istio_is_installed_with_pinned_versions_wait_and_the_default_revision() {
    let _serial = serial();
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
    let _serial = serial();
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
    let _serial = serial();
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
    let _serial = serial();
    let dir = tempfile::tempdir().unwrap();
    let err = helm::find_helm(Some(dir.path().as_os_str().to_owned())).unwrap_err().to_string();
    assert!(err.contains("helm is not on PATH") && err.contains("helm.sh"), "{err}");
}

/// A stand-in for `helm` that answers `helm version --short` with `short` and records the rest.
fn stand_in_printing_version(dir: &std::path::Path, short: &str) -> std::path::PathBuf {
    let record = dir.join("calls");
    let script = dir.join("helm");
    std::fs::write(
        &script,
        format!(
            "#!/bin/sh\nif [ \"$1\" = version ]; then echo '{short}'; exit 0; fi\necho \"$@\" >> {}\n",
            record.display()
        ),
    )
    .unwrap();
    std::fs::set_permissions(&script, std::fs::Permissions::from_mode(0o755)).unwrap();
    script
}

#[test]
fn a_dry_run_with_a_helm_older_than_3_13_is_refused_before_helm_runs_with_what_to_do() {
    let _serial = serial();
    let dir = tempfile::tempdir().unwrap();
    let helm_bin = stand_in_printing_version(dir.path(), "v3.12.3+g3a31588");
    let err = helm::require_server_dry_run(&helm_bin).unwrap_err().to_string();
    assert!(err.contains("helm v3.12.3") && err.contains("--dry-run=server needs helm 3.13"), "{err}");
    assert!(err.contains("helm.sh") && err.contains("without --dry-run"), "{err}");
    assert!(!dir.path().join("calls").exists(), "nothing but `helm version` ran");
}

#[test]
fn a_dry_run_with_helm_3_13_or_later_goes_ahead() {
    let _serial = serial();
    for short in ["v3.13.0+g825e86f", "v3.19.0+g3d8990f", "v4.0.1+g12345ab"] {
        let dir = tempfile::tempdir().unwrap();
        let helm_bin = stand_in_printing_version(dir.path(), short);
        let version = helm::require_server_dry_run(&helm_bin).unwrap();
        assert_eq!(format!("v{version}"), short.split('+').next().unwrap());
    }
}

#[test]
fn a_helm_whose_version_cannot_be_read_is_reported_with_what_it_printed() {
    let _serial = serial();
    let dir = tempfile::tempdir().unwrap();
    let helm_bin = stand_in_printing_version(dir.path(), "Client: &version.Version{SemVer:\"v2.17.0\"}");
    let err = helm::require_server_dry_run(&helm_bin).unwrap_err().to_string();
    assert!(err.contains("SemVer") && err.contains("Helm 3"), "{err}");
}

/// `kiali install --dry-run` renders the operator chart with `--dry-run=server` too: an older
/// helm is refused before the cluster is asked anything, saying what to do.
#[test]
fn kiali_install_dry_run_with_a_helm_older_than_3_13_is_refused_before_anything_runs() {
    let _serial = serial();
    let dir = tempfile::tempdir().unwrap();
    stand_in_printing_version(dir.path(), "v3.12.3+g3a31588");
    let istio = dir.path().join("istio-1.28.0");
    std::fs::create_dir_all(istio.join("samples/addons")).unwrap();
    let shared = std::env::var_os("XNAT_GUARD_SHARED")
        .map(std::path::PathBuf::from)
        .unwrap_or_else(|| std::path::Path::new(env!("CARGO_MANIFEST_DIR")).join("../../shared"));
    for file in kiali::ADDON_FILES {
        std::fs::copy(shared.join("istio/addons").join(file), istio.join("samples/addons").join(file))
            .unwrap_or_else(|e| panic!("FAILED, not skipped: the shared add-on {file}: {e}"));
    }
    let out = std::process::Command::new(env!("CARGO_BIN_EXE_deployer"))
        .args(["kiali", "install", "--dry-run", "--istio-dir", &istio.display().to_string()])
        .env("PATH", dir.path())
        .env("KUBECONFIG", dir.path().join("no-such-kubeconfig"))
        .output()
        .unwrap();
    let stderr = String::from_utf8_lossy(&out.stderr);
    assert_eq!(out.status.code(), Some(2), "{stderr}");
    assert!(stderr.contains("--dry-run=server needs helm 3.13"), "{stderr}");
    assert!(!dir.path().join("calls").exists(), "nothing but `helm version` ran");
}

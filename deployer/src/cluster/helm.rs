//! Helm, run as a child process: `install` (Istio's base and istiod charts) and `kiali install`
//! (the Kiali operator chart). The command lines are built here, pure, so tests can check them
//! exactly with a recording stand-in for `helm`.

use std::ffi::OsString;
use std::path::{Path, PathBuf};
use std::process::Command;

use super::{ClusterError, Result};

pub const ISTIO_REPO: &str = "https://istio-release.storage.googleapis.com/charts";
pub const KIALI_REPO: &str = "https://kiali.org/helm-charts";

/// Finds `helm` on a PATH-like list of directories.
pub fn find_helm(path_var: Option<OsString>) -> Result<PathBuf> {
    let path_var = path_var.unwrap_or_default();
    std::env::split_paths(&path_var)
        .map(|d| d.join("helm"))
        .find(|p| is_executable(p))
        .ok_or_else(|| {
            ClusterError::Failed(
                "helm is not on PATH; install Helm 3 (https://helm.sh/docs/intro/install/, e.g. the get-helm-3 script or your package manager) and retry".into(),
            )
        })
}

fn is_executable(p: &Path) -> bool {
    use std::os::unix::fs::PermissionsExt;
    p.metadata().map(|m| m.is_file() && m.permissions().mode() & 0o111 != 0).unwrap_or(false)
}

/// One `helm upgrade --install` invocation.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Release {
    pub name: String,
    pub chart: String,
    pub repo: String,
    pub version: String,
    pub namespace: String,
    pub create_namespace: bool,
    pub values: Vec<(String, String)>,
    pub timeout_secs: u64,
}

impl Release {
    pub fn args(&self, dry_run: bool) -> Vec<String> {
        let mut args: Vec<String> = ["upgrade", "--install", &self.name, &self.chart, "--repo", &self.repo]
            .iter()
            .map(|s| s.to_string())
            .collect();
        args.extend(["--version".into(), self.version.clone(), "--namespace".into(), self.namespace.clone()]);
        if self.create_namespace {
            args.push("--create-namespace".into());
        }
        for (k, v) in &self.values {
            args.extend(["--set".into(), format!("{k}={v}")]);
        }
        args.extend(["--wait".into(), "--timeout".into(), format!("{}s", self.timeout_secs)]);
        if dry_run {
            args.push("--dry-run=server".into());
        }
        args
    }
}

/// The releases the runbook installs: `istio-base` (CRDs, with the default revision set) then
/// `istiod`, both pinned to one version.
pub fn istio_releases(version: &str, namespace: &str, timeout_secs: u64) -> Vec<Release> {
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

pub fn kiali_operator_release(version: &str, timeout_secs: u64) -> Release {
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

/// Runs helm with the release's arguments, passing its output through; an error quotes the
/// command line.
pub fn run(
    helm: &Path,
    release: &Release,
    kubeconfig: Option<&Path>,
    context: Option<&str>,
    dry_run: bool,
) -> Result<()> {
    let mut args = release.args(dry_run);
    if let Some(k) = kubeconfig {
        args.extend(["--kubeconfig".into(), k.display().to_string()]);
    }
    if let Some(c) = context {
        args.extend(["--kube-context".into(), c.to_string()]);
    }
    let status = Command::new(helm)
        .args(&args)
        .status()
        .map_err(|e| ClusterError::Failed(format!("running {}: {e}", helm.display())))?;
    if !status.success() {
        return Err(ClusterError::Failed(format!(
            "`helm {}` failed ({status}); its output is above. Fix what it says and re-run: the install is idempotent",
            args.join(" ")
        )));
    }
    Ok(())
}

//! Helm, run as a child process, for the releases [`crate::plan::install`] and
//! [`crate::plan::kiali`] plan.

use std::ffi::OsString;
use std::path::{Path, PathBuf};
use std::process::Command;

use super::{ApplyError, Result};
use crate::plan::helm::{check_server_dry_run, HelmVersion, Release};

/// Finds `helm` on a PATH-like list of directories.
pub fn find_helm(path_var: Option<OsString>) -> Result<PathBuf> {
    let path_var = path_var.unwrap_or_default();
    std::env::split_paths(&path_var)
        .map(|d| d.join("helm"))
        .find(|p| is_executable(p))
        .ok_or_else(|| {
            ApplyError::Failed(
                "helm is not on PATH; install Helm 3 (https://helm.sh/docs/intro/install/, e.g. the get-helm-3 script or your package manager) and retry".into(),
            )
        })
}

fn is_executable(p: &Path) -> bool {
    use std::os::unix::fs::PermissionsExt;
    p.metadata().map(|m| m.is_file() && m.permissions().mode() & 0o111 != 0).unwrap_or(false)
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
        .map_err(|e| ApplyError::Failed(format!("running {}: {e}", helm.display())))?;
    if !status.success() {
        return Err(ApplyError::Failed(format!(
            "`helm {}` failed ({status}); its output is above. Fix what it says and re-run: the install is idempotent",
            args.join(" ")
        )));
    }
    Ok(())
}

/// helm's version, from `helm version --short`.
pub fn version(helm: &Path) -> Result<HelmVersion> {
    let output = Command::new(helm)
        .args(["version", "--short"])
        .output()
        .map_err(|e| ApplyError::Failed(format!("running {} version --short: {e}", helm.display())))?;
    let printed = String::from_utf8_lossy(&output.stdout);
    HelmVersion::parse(&printed).filter(|_| output.status.success()).ok_or_else(|| {
        ApplyError::Failed(format!(
            "`{} version --short` printed {:?}, not a Helm 3 version: install Helm 3.13 or newer \
             (https://helm.sh/docs/intro/install/) and put it first on PATH",
            helm.display(),
            printed.trim()
        ))
    })
}

/// Refuses a helm too old for `--dry-run=server` before anything runs; returns its version.
pub fn require_server_dry_run(helm: &Path) -> Result<HelmVersion> {
    let found = version(helm)?;
    check_server_dry_run(found).map_err(ApplyError::Failed)?;
    Ok(found)
}

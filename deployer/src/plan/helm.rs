//! A helm release as the command line that installs it. Built here, pure, so the golden tests
//! and a recording stand-in for `helm` can check it exactly; [`crate::apply::helm`] runs it.

pub const ISTIO_REPO: &str = "https://istio-release.storage.googleapis.com/charts";
pub const KIALI_REPO: &str = "https://kiali.org/helm-charts";

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
    /// helm's arguments; `dry_run` renders the charts against the server without installing.
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

    /// The command line, as a user would type it (without the kubeconfig and context flags,
    /// which come from the connection, not the plan).
    pub fn command_line(&self, dry_run: bool) -> String {
        format!("helm {}", self.args(dry_run).join(" "))
    }
}

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

/// helm's own version, as `helm version --short` prints it (`v3.14.2+gc309b6f`).
#[derive(Debug, Clone, Copy, PartialEq, Eq, PartialOrd, Ord)]
pub struct HelmVersion {
    pub major: u32,
    pub minor: u32,
    pub patch: u32,
}

impl HelmVersion {
    /// `v3.14.2+gc309b6f` (or without the `v` and the build suffix); `None` for anything else,
    /// such as Helm 2's `Client: &version.Version{...}`.
    pub fn parse(short: &str) -> Option<HelmVersion> {
        let core = short.trim().trim_start_matches('v');
        let core = core.split(['+', '-']).next()?;
        let mut parts = core.split('.').map(|p| p.parse::<u32>().ok());
        let (major, minor, patch) = (parts.next()??, parts.next()??, parts.next()??);
        parts.next().is_none().then_some(HelmVersion { major, minor, patch })
    }
}

impl std::fmt::Display for HelmVersion {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        write!(f, "{}.{}.{}", self.major, self.minor, self.patch)
    }
}

/// The first helm with `--dry-run=server` (3.13): an older one refuses the flag's value, and
/// its plain `--dry-run` renders without asking the API server, so it would prove nothing.
pub const SERVER_DRY_RUN_SINCE: HelmVersion = HelmVersion { major: 3, minor: 13, patch: 0 };

/// Whether this helm can run the dry runs [`Release::args`] asks for, and what to do if not.
pub fn check_server_dry_run(version: HelmVersion) -> Result<(), String> {
    if version >= SERVER_DRY_RUN_SINCE {
        return Ok(());
    }
    Err(format!(
        "helm v{version} is too old: --dry-run=server needs helm {}.{} or newer. Upgrade helm \
         (https://helm.sh/docs/intro/install/) or run without --dry-run",
        SERVER_DRY_RUN_SINCE.major, SERVER_DRY_RUN_SINCE.minor
    ))
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn helm_versions_are_read_as_helm_version_short_prints_them() {
        let v = |major, minor, patch| Some(HelmVersion { major, minor, patch });
        assert_eq!(HelmVersion::parse("v3.14.2+gc309b6f\n"), v(3, 14, 2));
        assert_eq!(HelmVersion::parse("3.13.0"), v(3, 13, 0));
        assert_eq!(HelmVersion::parse("v4.0.0-rc.1+g1234"), v(4, 0, 0));
        assert_eq!(HelmVersion::parse("Client: &version.Version{SemVer:\"v2.17.0\"}"), None);
        assert_eq!(HelmVersion::parse("v3.14"), None);
    }

    #[test]
    fn server_dry_runs_need_helm_3_13() {
        assert!(check_server_dry_run(HelmVersion { major: 3, minor: 12, patch: 3 }).is_err());
        assert!(check_server_dry_run(HelmVersion { major: 3, minor: 13, patch: 0 }).is_ok());
        assert!(check_server_dry_run(HelmVersion { major: 4, minor: 0, patch: 0 }).is_ok());
    }
}

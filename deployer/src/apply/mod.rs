//! Apply: everything that talks to a Kubernetes API server or runs helm. A plan
//! ([`crate::plan`]) says what should exist; this side makes it so with server-side apply under
//! one field manager, waits by kubectl's rules with a spinner on the terminal, verifies what it
//! did, and undoes it. What it reads back is judged by [`crate::inspect`].
//!
//! - this module: the connection, server-side apply, raw GETs;
//! - `wait`: polling with a timeout and a spinner, and kubectl's rollout wait;
//! - `verify`: every pod runs a ready sidecar (and, for `status`, what the agent fetched);
//! - [`enforced`], [`canary`]: every selected pod's filter enforces this configuration, proven
//!   on one pod first; [`registry`]: the registry serves the pinned digest;
//! - `list`: the pods and controllers of a namespace;
//! - `existing`: what the cluster already holds that decides whether the plan takes effect;
//! - [`rollout`], [`undo`], [`install`], [`kiali`], [`hpa`], [`status`]: one per subcommand;
//! - [`helm`]: helm as a child process.

pub mod canary;
pub mod enforced;
pub mod existing;
pub mod helm;
pub mod hpa;
pub mod install;
pub mod kiali;
pub mod learn;
mod list;
pub mod mesh;
pub mod promote;
pub mod registry;
pub mod rollout;
pub mod served;
pub mod status;
pub mod undo;
mod verify;
mod wait;

use std::path::Path;
use std::time::Duration;

use http::Request;
use kube::api::{Api, DynamicObject, Patch, PatchParams};
use kube::config::{KubeConfigOptions, Kubeconfig};
use kube::core::{ApiResource, GroupVersionKind};
use kube::{Client, Config};

use crate::inspect::ownership;
use crate::kind::Kind;
use crate::plan::{Manifest, FIELD_MANAGER};

#[derive(Debug, thiserror::Error)]
pub enum ApplyError {
    #[error("{0}")]
    Connect(String),
    #[error("{what}: {source}")]
    Api { what: String, source: kube::Error },
    #[error("{0}")]
    Timeout(String),
    #[error("{0}")]
    Failed(String),
    /// A server-side apply would change fields another field manager owns (Helm, Argo CD,
    /// `kubectl apply`): the API server's 409 Conflict, one line per field as it words it.
    #[error(
        "{what}: the API server refused to change fields another field manager owns:\n{}\n\
         Stopped here: the objects before this one were applied, the rest were not. Make the values agree \
         (edit the object, or your --policy files and flags), or re-run with --force-conflicts \
         (`deployer rollout`, `deployer kiali install`) to take these fields over as `kubectl apply --server-side --force-conflicts` does \
         (the other manager may set them back on its next sync; `rollout --undo` puts the object's earlier spec back)",
        conflicts.iter().map(|c| format!("  {c}")).collect::<Vec<_>>().join("\n")
    )]
    Conflict { what: String, conflicts: Vec<String> },
}

pub type Result<T, E = ApplyError> = std::result::Result<T, E>;

/// Turns a kube error into one that says what was being done and, for the usual causes, what
/// to do about it.
pub fn api_error(what: impl Into<String>) -> impl FnOnce(kube::Error) -> ApplyError {
    let what = what.into();
    move |source| {
        if let Some(conflicts) = field_manager_conflicts(&source) {
            return ApplyError::Conflict { what, conflicts };
        }
        let hint = match &source {
            kube::Error::Api(s) if s.code == 403 => {
                " (forbidden: your credentials lack this permission; ask for a role that grants it or use an admin context)"
            }
            kube::Error::Api(s) if s.code == 404 && what.contains("istio.io") => {
                " (not found: are Istio's CRDs installed? run `deployer install`)"
            }
            _ => "",
        };
        ApplyError::Api { what: format!("{what}{hint}"), source }
    }
}

/// The fields of a 409 Conflict from server-side apply, as `.spec.replicas: conflict with
/// "helm" using apps/v1` (the cause's field, then its message); `None` for any other error,
/// including a 409 on a stale resourceVersion, which has no field-manager causes.
fn field_manager_conflicts(error: &kube::Error) -> Option<Vec<String>> {
    let kube::Error::Api(status) = error else { return None };
    if status.code != 409 || status.reason != "Conflict" {
        return None;
    }
    let causes = status.details.as_ref().map(|d| d.causes.as_slice()).unwrap_or_default();
    let conflicts: Vec<String> = causes
        .iter()
        .filter(|c| c.reason == "FieldManagerConflict")
        .map(|c| if c.field.is_empty() { c.message.clone() } else { format!("{}: {}", c.field, c.message) })
        .collect();
    if conflicts.is_empty() && !status.message.starts_with("Apply failed") {
        return None;
    }
    Some(if conflicts.is_empty() { vec![status.message.clone()] } else { conflicts })
}

/// How the commands behave: dry run, waiting, progress.
#[derive(Debug, Clone)]
pub struct Options {
    /// Server-side dry run for every change.
    pub dry_run: bool,
    /// The longest any one wait may take.
    pub timeout: Duration,
    /// How often waits poll.
    pub poll: Duration,
    /// Print progress lines and spinners (off in tests).
    pub verbose: bool,
    /// Server-side apply takes fields another field manager owns (`--force-conflicts`, as
    /// kubectl's): without it, such a conflict stops the command and names the manager.
    pub force_conflicts: bool,
    /// Prove each change of the filter's configuration on one pod, then on every selected pod
    /// (off with `--no-verify`).
    pub verify: bool,
}

impl Default for Options {
    fn default() -> Self {
        Options {
            dry_run: false,
            timeout: Duration::from_secs(300),
            poll: Duration::from_secs(2),
            verbose: true,
            force_conflicts: false,
            verify: true,
        }
    }
}

/// A connection to one cluster, and how to behave on it.
pub struct Cluster {
    pub client: Client,
    pub opts: Options,
}

/// What a server-side apply did.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Applied {
    Created,
    Configured,
    Unchanged,
    /// Validated by the API server, not persisted.
    DryRun,
}

impl std::fmt::Display for Applied {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.write_str(match self {
            Applied::Created => "created",
            Applied::Configured => "configured",
            Applied::Unchanged => "unchanged",
            Applied::DryRun => "valid (dry run, not applied)",
        })
    }
}

impl Cluster {
    /// Connects with the kubeconfig given, else `$KUBECONFIG`/`~/.kube/config`, else the
    /// in-cluster service account.
    pub async fn connect(kubeconfig: Option<&Path>, context: Option<&str>, opts: Options) -> Result<Cluster> {
        let options = KubeConfigOptions { context: context.map(str::to_string), ..Default::default() };
        let config = match kubeconfig {
            Some(path) => {
                let kc = Kubeconfig::read_from(path)
                    .map_err(|e| ApplyError::Connect(format!("reading kubeconfig {}: {e}", path.display())))?;
                Config::from_custom_kubeconfig(kc, &options)
                    .await
                    .map_err(|e| ApplyError::Connect(format!("kubeconfig {}: {e}; check --context", path.display())))?
            }
            None if context.is_some() => Config::from_kubeconfig(&options)
                .await
                .map_err(|e| ApplyError::Connect(format!("kubeconfig: {e}; check --context and $KUBECONFIG")))?,
            None => Config::infer().await.map_err(|e| {
                ApplyError::Connect(format!("no cluster to talk to ({e}); give --kubeconfig FILE or set KUBECONFIG"))
            })?,
        };
        let client = Client::try_from(config).map_err(|e| ApplyError::Connect(format!("building the client: {e}")))?;
        Ok(Cluster { client, opts })
    }

    /// A progress line on stderr (stdout is for the command's result).
    pub fn say(&self, line: impl AsRef<str>) {
        if self.opts.verbose {
            eprintln!("{}", line.as_ref());
        }
    }

    /// Server-side apply under the deployer's field manager. Forces only with
    /// `--force-conflicts`: a field another manager set to another value is theirs until the
    /// user says otherwise (the same value is shared, and no conflict).
    pub fn patch_params(&self) -> PatchParams {
        let mut pp = PatchParams::apply(FIELD_MANAGER);
        if self.opts.force_conflicts {
            pp = pp.force();
        }
        if self.opts.dry_run {
            pp.dry_run()
        } else {
            pp
        }
    }

    pub fn dynamic_api(&self, kind: &Kind, namespace: Option<&str>) -> Api<DynamicObject> {
        let gvk = GroupVersionKind::gvk(kind.group, kind.version, kind.kind);
        let ar = ApiResource::from_gvk_with_plural(&gvk, kind.plural);
        match namespace {
            Some(ns) => Api::namespaced_with(self.client.clone(), ns, &ar),
            None => Api::all_with(self.client.clone(), &ar),
        }
    }

    /// Server-side apply of one manifest; says whether anything changed. An object carrying
    /// the deployer's label gets the record of what was there before ([`ownership::stamp`]),
    /// which `rollout --undo` goes by.
    pub async fn apply(&self, m: &Manifest) -> Result<Applied> {
        let api = self.dynamic_api(&m.kind, m.namespace.as_deref());
        let what = m.describe();
        let before = api.get_opt(&m.name).await.map_err(api_error(format!("reading {what}")))?;
        let before_value = before.as_ref().and_then(|b| serde_json::to_value(b).ok());
        let body = ownership::stamp(&m.body, before_value.as_ref());
        let after = api
            .patch(&m.name, &self.patch_params(), &Patch::Apply(&body))
            .await
            .map_err(api_error(format!("applying {what}")))?;
        Ok(match before {
            _ if self.opts.dry_run => Applied::DryRun,
            None => Applied::Created,
            Some(b) if b.metadata.resource_version == after.metadata.resource_version => Applied::Unchanged,
            Some(_) => Applied::Configured,
        })
    }

    /// GET of a raw API path, as text (pod proxy endpoints, /version).
    pub async fn get_text(&self, path: &str) -> Result<String, kube::Error> {
        let req = Request::get(path).body(Vec::new()).map_err(kube::Error::HttpError)?;
        self.client.request_text(req).await
    }

    /// The API server's Kubernetes version, major and minor (`1`, `31`; a `+` suffix dropped).
    pub async fn server_version(&self) -> Result<(u32, u32)> {
        let info = self.client.apiserver_version().await.map_err(api_error("reading the API server's version"))?;
        Ok((info.major.parse().unwrap_or(0), info.minor.trim_end_matches('+').parse().unwrap_or(0)))
    }

    /// A pod's Prometheus text on `port` (15020 the agent, 15090 Envoy), through the API
    /// server's pod proxy.
    pub async fn pod_metrics(&self, namespace: &str, pod: &str, port: u16) -> Result<String, kube::Error> {
        self.get_text(&format!("/api/v1/namespaces/{namespace}/pods/{pod}:{port}/proxy/stats/prometheus")).await
    }
}

impl Cluster {
    /// Refuses a namespace that does not exist. Rollout and undo label namespaces, and a
    /// server-side apply of a missing one would create it: an empty namespace where the user
    /// meant another (a typo, the wrong context) is worse than stopping.
    pub async fn require_namespace(&self, namespace: &str) -> Result<()> {
        let api: Api<k8s_openapi::api::core::v1::Namespace> = Api::all(self.client.clone());
        match api.get_opt(namespace).await.map_err(api_error(format!("reading namespace {namespace}")))? {
            Some(_) => Ok(()),
            None => Err(ApplyError::Failed(format!(
                "namespace {namespace} does not exist, and the deployer never creates one: check the namespace and \
                 --context, or create it (`kubectl create namespace {namespace}`) and deploy XNAT there first; \
                 nothing was changed"
            ))),
        }
    }
}

//! Plans: everything a subcommand would change, computed with no cluster and no child
//! process. Pure: the same inputs give the same plan, byte for byte, so it can be reviewed and
//! diffed, and golden tests (`tests/golden/`) pin it. [`crate::apply`] carries plans out.
//!
//! One module per subcommand that changes something:
//! - [`rollout`]: the namespace's injection label, PeerAuthentications, DestinationRules and
//!   the WasmPlugin carrying the filter's configuration (`render` prints it);
//! - [`install`]: Istio's helm releases, and the checks before and after them;
//! - [`kiali`]: the operator's helm release, the Kiali CR and Istio's add-on manifests;
//! - [`hpa`]: which HorizontalPodAutoscalers the sidecar skews, and the patch for each;
//! - [`helm`]: one helm release as the command line that installs it;
//! - [`canary`]: the one-pod WasmPlugin a rollout proves the new configuration on first.

pub mod canary;
pub mod helm;
pub mod hpa;
pub mod install;
pub mod kiali;
pub mod promote;
pub mod rollout;

use serde_json::Value;

use crate::kind::Kind;
use crate::resources::ResourceError;

/// The label on every object rollout applies (never on the namespace itself): `status` and
/// `rollout --undo` find the deployer's objects by it. A key of the deployer's own, since Helm
/// owns `app.kubernetes.io/managed-by` (it sets `Helm` there, and a server-side apply of another
/// value would conflict with it). The label says "the deployer applies this", not "the deployer
/// created this": [`CREATED_ANNOTATION`] says that.
pub const MANAGED_BY: (&str, &str) = ("xnat-guard.io/managed-by", "xnat-guard-deployer");
/// Annotation: the namespaces whose rollouts apply the object, comma-separated and sorted. A
/// mesh-wide PeerAuthentication in the root namespace serves every namespace rolled out with
/// `--mesh-strict`; undo of one keeps it while another's rollout is still in place.
pub const ROLLOUTS_ANNOTATION: &str = "xnat-guard.io/rollouts";
/// Annotation `"true"`: the object did not exist before the deployer's first apply, so undo
/// deletes it. Set by the apply side, which alone knows what was there.
pub const CREATED_ANNOTATION: &str = "xnat-guard.io/created";
/// Annotation: the object's spec (JSON) as it was before the deployer first applied to it, so
/// undo can put it back if `--force-conflicts` took fields from another manager. Set by the
/// apply side on an object that existed; never on one the deployer created.
pub const PREVIOUS_SPEC_ANNOTATION: &str = "xnat-guard.io/previous-spec";
/// The field manager of every server-side apply.
pub const FIELD_MANAGER: &str = "xnat-guard-deployer";

#[derive(Debug, thiserror::Error)]
pub enum PlanError {
    #[error(transparent)]
    Resources(#[from] ResourceError),
    #[error("{0}")]
    Invalid(String),
}

pub type Result<T, E = PlanError> = std::result::Result<T, E>;

/// One object to apply.
#[derive(Debug, Clone, PartialEq)]
pub struct Manifest {
    pub kind: Kind,
    pub name: String,
    /// `None` for cluster-scoped objects.
    pub namespace: Option<String>,
    pub body: Value,
    /// Where it came from: a file, or what generated it.
    pub origin: String,
}

impl Manifest {
    pub fn describe(&self) -> String {
        match &self.namespace {
            Some(ns) => format!("{} {ns}/{}", self.kind.kind, self.name),
            None => format!("{} {}", self.kind.kind, self.name),
        }
    }
}

/// Manifests as one multi-document YAML stream, each headed by what it is and where it came from.
pub fn to_yaml(manifests: &[Manifest]) -> String {
    let mut out = String::new();
    for m in manifests {
        out.push_str(&format!("---\n# {} (from {})\n", m.describe(), m.origin));
        out.push_str(&serde_yaml::to_string(&m.body).unwrap_or_default());
    }
    out
}

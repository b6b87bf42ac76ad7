//! `deployer suggest`: the least-privilege AuthorizationPolicy for what XNAT's callers were seen
//! doing (an [`Observations`] file, as `deployer learn` writes it), and the proof of it. Pure:
//! it takes the observations and the policy objects in force, and returns the YAML text, the
//! replay of every observation through the engine, and what the suggestion takes away.
//!
//! The suggestion is one ALLOW policy with one rule per caller:
//! - a caller with an mTLS identity is named by its principal (`source.principals`, the SPIFFE
//!   id without `spiffe://`), or, where every service account of its namespace was seen doing
//!   exactly the same, the namespace is (`source.namespaces`, below);
//! - `plaintext` (the load balancer on 8080) is `source.notPrincipals: ["*"]`, which in Istio
//!   matches exactly the requests without an mTLS identity: no caller with one gets anything
//!   through that rule. An mTLS peer without a URI SAN (`mtls-without-identity`) has no
//!   principal either, so it shares that rule;
//! - per port (`to.operation.ports`) the caller's routes are grouped by the exact set of methods
//!   each was seen with, one `to` per group, so the rule grants every (method, route) pair it
//!   names and no other: a method seen on one route is not granted on another.
//!
//! A rule names a whole namespace only where the observations list the namespace's service
//! accounts (`serviceAccounts: {reporting: [auditor, reporter]}`, as `learn` read them from the
//! cluster), there are at least two, and every one of them was seen, in the mesh's trust domain,
//! doing exactly the same (the same set of port, method and route, after `--min-count`), and no
//! caller of the namespace was seen that the list lacks or that comes from another trust domain
//! (Istio's `namespaces` matches the namespace in any trust domain). Anywhere else a namespace
//! rule would grant an unseen account (a CI runner, a debug pod, `default`) what another did, so
//! each caller keeps its own rule, and a note says why. A namespace rule grants an account
//! created there later what the others did: the rule's comment says so.
//!
//! The proof: every kept observation becomes a concrete request (`{*}` a sample segment,
//! `{**}` a file path), which the suggestion, compiled from its own YAML text together with the
//! PeerAuthentications and the other policies in force (without the ALLOW policies of the
//! workload's namespace, which it replaces), must allow. Then, against the policy in force,
//! every caller seen or named there, on every port seen, with every method, on every route
//! seen and a few sensitive ones never seen, is probed: what is allowed now and denied by the
//! suggestion is listed, grouped per method, caller (or namespace) and ports.

use std::collections::{BTreeMap, BTreeSet};
use std::fmt;

use k8s_openapi::jiff::Timestamp;
use serde::Serialize;
use xnat_guard_policy::config::{Action, MtlsMode, PolicyEntry};
use xnat_guard_policy::observe::{NO_IDENTITY_CALLER, PLAINTEXT_CALLER};
use xnat_guard_policy::Engine;

use crate::check::{check, RequestSpec};
use crate::kind::Kind;
use crate::observations::{service_account_of, Entry, Observations};
use crate::resources::{self, Mesh, Object, PolicyTarget, ResourceError, Selection};

/// The suggestion's name when none is given.
pub const DEFAULT_NAME: &str = "xnat-least-privilege";

/// The methods every probe tries.
pub const PROBE_METHODS: [&str; 7] = ["GET", "HEAD", "POST", "PUT", "PATCH", "DELETE", "OPTIONS"];

/// Routes probed whether or not anyone was seen using them: XNAT's user and role
/// administration, its site configuration, a project, the current user, the importer and the
/// token service.
pub const SENSITIVE_ROUTES: [&str; 9] = [
    "/xapi/users",
    "/xapi/users/{*}",
    "/xapi/users/{*}/roles",
    "/xapi/siteConfig",
    "/data/user",
    "/data/projects/{*}",
    "/data/projects/{*}/subjects/{*}",
    "/data/services/import",
    "/data/services/tokens/issue",
];

/// What stands for `{*}` (numbered: `x1`, `x2`, ...) and `{**}` in a replayed request.
const SAMPLE_SEGMENT: &str = "x";
const SAMPLE_REST: &str = "a/b.dcm";

/// The service account that stands, in the probes, for a namespace's accounts never seen.
const UNSEEN_ACCOUNT: &str = "default";

#[derive(Debug, thiserror::Error)]
pub enum SuggestError {
    /// An entry of the observations that `learn` would not have written.
    #[error("{field}: {message}")]
    Entry { field: String, message: String },
    #[error("{0}")]
    Empty(String),
    #[error("{0}")]
    Workload(String),
    #[error("the policies were refused: {0}")]
    Policies(ResourceError),
    /// The suggestion itself does not compile: a bug here, not the user's.
    #[error("the suggestion does not compile ({0}); this is a bug in deployer suggest, please report it")]
    Suggestion(ResourceError),
}

type Result<T, E = SuggestError> = std::result::Result<T, E>;

/// What to suggest, and for which workload.
#[derive(Debug, Clone)]
pub struct Options {
    /// The AuthorizationPolicy's name.
    pub name: String,
    /// Its namespace [default: the observations', or the policies' for the local Envoy's].
    pub namespace: Option<String>,
    /// The workload's labels [default: inferred from the current policies' selectors].
    pub labels: Vec<(String, String)>,
    /// Entries seen fewer times are left out.
    pub min_count: u64,
    pub mesh: Mesh,
}

impl Default for Options {
    fn default() -> Options {
        Options { name: DEFAULT_NAME.into(), namespace: None, labels: Vec::new(), min_count: 1, mesh: Mesh::default() }
    }
}

/// The suggestion and its proof.
#[derive(Debug, Clone, Serialize)]
#[serde(rename_all = "camelCase")]
pub struct Suggestion {
    /// The AuthorizationPolicy, as YAML text with a comment on each rule.
    pub yaml: String,
    /// The workload it selects.
    pub target: PolicyTarget,
    pub rules: Vec<SuggestedRule>,
    pub min_count: u64,
    /// The entries seen fewer than `min_count` times, left out.
    pub left_out: Vec<Entry>,
    pub replay: Replay,
    /// What the current policy allows that the suggestion denies; `None` without one.
    pub tightening: Option<Tightening>,
    /// What the user should know: what was replaced for the replay, a full table, a namespace.
    pub notes: Vec<String>,
}

/// One rule: who, and per port what.
#[derive(Debug, Clone, PartialEq, Eq, Serialize)]
#[serde(rename_all = "camelCase")]
pub struct SuggestedRule {
    pub callers: Vec<CallerSeen>,
    /// `principals: [...]`, `namespaces: [...]` or `notPrincipals: ["*"]`.
    pub source: String,
    /// The namespace a `namespaces` rule names, every service account of which is in `callers`.
    #[serde(skip_serializing_if = "Option::is_none")]
    pub namespace: Option<String>,
    pub operations: Vec<SuggestedOperation>,
}

#[derive(Debug, Clone, PartialEq, Eq, Serialize)]
#[serde(rename_all = "camelCase")]
pub struct CallerSeen {
    pub caller: String,
    pub requests: u64,
    pub first_seen: String,
    pub last_seen: String,
}

#[derive(Debug, Clone, PartialEq, Eq, Serialize)]
#[serde(rename_all = "camelCase")]
pub struct SuggestedOperation {
    /// `None`: the filter did not know the port, and the operation names none (any port).
    pub port: Option<u16>,
    pub methods: Vec<String>,
    pub paths: Vec<String>,
    pub requests: u64,
}

/// Every kept observation, as a concrete request, judged by the suggestion.
#[derive(Debug, Clone, Default, PartialEq, Eq, Serialize)]
#[serde(rename_all = "camelCase")]
pub struct Replay {
    pub observations: usize,
    pub allowed_observations: usize,
    pub requests: u64,
    pub allowed_requests: u64,
    /// The observations the suggestion would deny: each one a bug.
    pub refused: Vec<Refused>,
}

#[derive(Debug, Clone, PartialEq, Eq, Serialize)]
#[serde(rename_all = "camelCase")]
pub struct Refused {
    pub caller: String,
    pub port: Option<u16>,
    pub method: String,
    pub route: String,
    /// The request replayed.
    pub path: String,
    pub count: u64,
    pub why: String,
}

impl Replay {
    pub fn all_allowed(&self) -> bool {
        self.refused.is_empty()
    }
}

/// `replay: 1026 of 1026 observed requests allowed (100%), 19 of 19 observations`
impl fmt::Display for Replay {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        let percent = if self.allowed_requests == self.requests {
            "100%".to_string()
        } else {
            // Rounded down: a replay that lost one request in a million is not 100%.
            let tenths = (self.allowed_requests as u128 * 1000 / self.requests.max(1) as u128).min(999);
            format!("{}.{}%", tenths / 10, tenths % 10)
        };
        write!(
            f,
            "replay: {} of {} observed requests allowed ({percent}), {} of {} observations",
            self.allowed_requests, self.requests, self.allowed_observations, self.observations
        )
    }
}

impl fmt::Display for Refused {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        write!(
            f,
            "{} {} ({}) from {} on {}, seen {}: {}",
            self.method,
            self.path,
            self.route,
            self.caller,
            port_text(self.port),
            times(self.count),
            self.why
        )
    }
}

/// What the policy in force allows and the suggestion denies.
#[derive(Debug, Clone, Default, PartialEq, Eq, Serialize)]
#[serde(rename_all = "camelCase")]
pub struct Tightening {
    /// The requests probed: callers × ports × methods × routes.
    pub probed: usize,
    pub callers: Vec<String>,
    pub ports: Vec<Option<u16>>,
    pub methods: Vec<String>,
    pub routes: Vec<String>,
    /// What the probes found, grouped.
    pub findings: Vec<Finding>,
}

/// One method, taken from one caller (or every caller probed of a namespace) on some routes
/// and ports.
#[derive(Debug, Clone, PartialEq, Eq, Serialize)]
#[serde(rename_all = "camelCase")]
pub struct Finding {
    /// One method, or every method probed (`any_method`).
    pub methods: Vec<String>,
    pub any_method: bool,
    /// `plaintext`, a SPIFFE id, or `ns/NAMESPACE` when every caller of it probed agrees.
    pub from: String,
    pub callers: Vec<String>,
    pub ports: Vec<Option<u16>>,
    /// The routes it is taken away on.
    pub routes: Vec<String>,
    /// The routes probed it is not taken away on (seen, or denied already).
    pub except: Vec<String>,
    /// How often the exact request was seen: 0 never, else it was left out by `--min-count`.
    pub seen: u64,
}

impl Finding {
    /// Whether the finding takes `method` on `route` away from `caller` (or its namespace).
    pub fn covers(&self, method: &str, route: &str) -> bool {
        self.methods.iter().any(|m| m == method) && self.routes.iter().any(|r| r == route)
    }
}

/// `DELETE on any route from ns/reporting on 8080, 8443: allowed now, never seen`
impl fmt::Display for Finding {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        let method = if self.any_method { "any method".to_string() } else { self.methods.join(", ") };
        let what = if self.except.is_empty() {
            format!("{method} on any route")
        } else if self.routes.len() > self.except.len() + 1 {
            format!("{method} on any route but {}", self.except.join(", "))
        } else {
            format!("{method} {}", self.routes.join(", "))
        };
        let ports: Vec<String> = self.ports.iter().map(|p| port_text(*p)).collect();
        let seen = match self.seen {
            0 => "never seen".to_string(),
            n => format!("seen {}, left out by --min-count", times(n)),
        };
        write!(f, "{what} from {} on {}: allowed now, {seen}", self.from, ports.join(", "))
    }
}

fn port_text(port: Option<u16>) -> String {
    port.map(|p| p.to_string()).unwrap_or_else(|| "an unknown port".into())
}

fn times(n: u64) -> String {
    if n == 1 {
        "1 time".into()
    } else {
        format!("{n} times")
    }
}

/// Who a rule is for.
#[derive(Debug, Clone, PartialEq, Eq, PartialOrd, Ord)]
enum Who {
    /// `plaintext` and `mtls-without-identity`: no principal, `notPrincipals: ["*"]`.
    NoIdentity,
    /// Every service account of a namespace, in the mesh's trust domain: `namespaces: [NS]`.
    Namespace(String),
    /// A SPIFFE id.
    Principal(String),
}

impl Who {
    /// The rule for `caller`, given the namespaces that get one rule each (`whole`).
    fn of(caller: &str, whole: &Whole) -> Who {
        if caller == PLAINTEXT_CALLER || caller == NO_IDENTITY_CALLER {
            return Who::NoIdentity;
        }
        match service_account_of(caller) {
            Some((td, ns, _)) if whole.trust_domains.contains(td) && whole.namespaces.contains(ns) => {
                Who::Namespace(ns.to_string())
            }
            _ => Who::Principal(caller.to_string()),
        }
    }
}

/// The namespaces a rule names whole, and the trust domains that are the mesh's.
#[derive(Debug, Default)]
struct Whole {
    namespaces: BTreeSet<String>,
    trust_domains: BTreeSet<String>,
}

/// `sa/a`, `sa/a and sa/b`, `sa/a, sa/b and sa/c`.
fn accounts_text(names: &[&str]) -> String {
    let names: Vec<String> = names.iter().map(|n| format!("sa/{n}")).collect();
    match names.split_last() {
        Some((last, rest)) if !rest.is_empty() => format!("{} and {last}", rest.join(", ")),
        _ => names.join(""),
    }
}

/// Which namespaces get one rule (every one of their listed service accounts, two or more, seen
/// in the mesh's trust domain doing exactly the same after `--min-count`, and no other caller of
/// theirs seen), and for each namespace of a caller, a note saying which way it went and why.
fn whole_namespaces(
    observations: &Observations,
    kept: &[Entry],
    left_out: &[Entry],
    options: &Options,
) -> (Whole, Vec<String>) {
    let mut whole = Whole::default();
    whole.trust_domains.insert(options.mesh.trust_domain.clone());
    whole.trust_domains.extend(options.mesh.trust_domain_aliases.iter().cloned());
    type Did<'a> = BTreeSet<(Option<u16>, &'a str, &'a str)>;
    // namespace -> account -> what it did; and the callers of another trust domain.
    let mut seen: BTreeMap<&str, (BTreeMap<&str, Did>, BTreeSet<&str>)> = BTreeMap::new();
    for e in kept {
        let Some((td, ns, sa)) = service_account_of(&e.caller) else { continue };
        let (accounts, foreign) = seen.entry(ns).or_default();
        if whole.trust_domains.contains(td) {
            accounts.entry(sa).or_default().insert((e.port, e.method.as_str(), e.route.as_str()));
        } else {
            foreign.insert(e.caller.as_str());
        }
    }
    let rare: BTreeSet<(&str, &str)> = left_out
        .iter()
        .filter_map(|e| service_account_of(&e.caller))
        .filter(|(td, _, _)| whole.trust_domains.contains(*td))
        .map(|(_, ns, sa)| (ns, sa))
        .collect();
    let each = "a rule per service account";
    let mut notes = Vec::new();
    for (ns, (accounts, foreign)) in seen {
        let Some(listed) = observations.service_accounts.get(ns) else {
            notes.push(format!(
                "ns/{ns}: its service accounts were not listed (learn lists them where it may `list serviceaccounts`): \
                 {each}"
            ));
            continue;
        };
        if let Some(caller) = foreign.first() {
            notes.push(format!(
                "ns/{ns}: {caller} is of another trust domain, and Istio's `namespaces` matches any: {each}"
            ));
            continue;
        }
        let unlisted: Vec<&str> = accounts.keys().copied().filter(|sa| !listed.iter().any(|l| l == sa)).collect();
        if !unlisted.is_empty() {
            notes.push(format!(
                "ns/{ns}: {} {} seen but {} not among its service accounts as learn last listed them: {each}",
                accounts_text(&unlisted),
                if unlisted.len() == 1 { "was" } else { "were" },
                if unlisted.len() == 1 { "is" } else { "are" },
            ));
            continue;
        }
        if listed.len() == 1 {
            notes.push(format!(
                "ns/{ns} has one service account ({}): its principal rule is as short, and grants no account created \
                 there later",
                listed[0]
            ));
            continue;
        }
        let unseen: Vec<&str> = listed.iter().map(String::as_str).filter(|sa| !accounts.contains_key(sa)).collect();
        if !unseen.is_empty() {
            let (rarely, never): (Vec<&str>, Vec<&str>) = unseen.iter().partition(|sa| rare.contains(&(ns, **sa)));
            let mut why = Vec::new();
            if !never.is_empty() {
                why.push(format!(
                    "{} {} never seen",
                    accounts_text(&never),
                    if never.len() == 1 { "was" } else { "were" }
                ));
            }
            if !rarely.is_empty() {
                why.push(format!(
                    "{} {} seen only fewer than {} times (--min-count)",
                    accounts_text(&rarely),
                    if rarely.len() == 1 { "was" } else { "were" },
                    options.min_count
                ));
            }
            notes.push(format!(
                "ns/{ns}: {}: {each} (a namespace rule would grant {} what the others did)",
                why.join("; "),
                if unseen.len() == 1 { "it" } else { "them" }
            ));
            continue;
        }
        let mut did = accounts.values();
        let first = did.next();
        if did.any(|d| Some(d) != first) {
            let names: Vec<&str> = accounts.keys().copied().collect();
            notes.push(format!("ns/{ns}: {} do different things: {each}", accounts_text(&names)));
            continue;
        }
        notes.push(format!(
            "ns/{ns}: every service account ({}) was seen doing the same: one rule names the namespace",
            listed.join(", ")
        ));
        whole.namespaces.insert(ns.to_string());
    }
    (whole, notes)
}

/// The suggestion for `observations`, proved against `current` (the policy objects in force,
/// as `resources::load_files` reads them; empty for none).
pub fn suggest(observations: &Observations, current: &[Object], options: &Options) -> Result<Suggestion> {
    let entries = valid_entries(observations)?;
    if entries.is_empty() {
        return Err(SuggestError::Empty(format!(
            "the observations of {} hold no allowed request: have the filter observe (render or rollout with \
             --observe), send traffic, and collect it with `deployer learn {}`",
            observations.namespace, observations.namespace
        )));
    }
    let (kept, left_out): (Vec<Entry>, Vec<Entry>) = entries.into_iter().partition(|e| e.count >= options.min_count);
    if kept.is_empty() {
        return Err(SuggestError::Empty(format!(
            "every observation was seen fewer than {} times (--min-count): nothing would be allowed",
            options.min_count
        )));
    }
    let target = target(observations, current, options)?;
    let mut notes = Vec::new();
    if target.namespace != observations.namespace && observations.namespace != "local" {
        notes.push(format!(
            "the observations are of namespace {}; the suggestion is for namespace {}",
            observations.namespace, target.namespace
        ));
    }
    if observations.overflow > 0 {
        notes.push(format!(
            "the sidecars could not record {} requests (their tables were full): the suggestion may deny traffic \
             nobody recorded; ship it as dry-run first (rollout --dry-run-policy) and see what it would deny",
            observations.overflow
        ));
    }
    let (whole, namespace_notes) = whole_namespaces(observations, &kept, &left_out, options);
    notes.extend(namespace_notes);
    let rules = rules(&kept, &whole);
    let yaml = policy_text(&rules, &target, options, &kept, left_out.len());
    let suggested = resources::parse_documents(&yaml, "the suggestion").map_err(SuggestError::Suggestion)?;

    // The suggestion, with what else is in force: PeerAuthentications, DENY and AUDIT policies,
    // mesh-wide policies. The ALLOW policies of the workload's namespace are what it replaces.
    let mut with_suggestion: Vec<Object> = Vec::new();
    for o in current {
        if replaced_by_suggestion(o, &target, &options.name) {
            notes.push(format!("replayed without {} ({}): the suggestion replaces it", o.describe(), o.origin));
        } else {
            with_suggestion.push(o.clone());
        }
    }
    let origins: Vec<String> = suggested.iter().map(|o| format!("{} ({})", o.describe(), o.origin)).collect();
    with_suggestion.extend(suggested);
    let (suggested_selection, suggested_engine) =
        resources::select(&with_suggestion, &target, &options.mesh).map_err(SuggestError::Suggestion)?;
    if !suggested_selection.origins.iter().any(|o| origins.contains(o)) {
        return Err(SuggestError::Suggestion(ResourceError::Workload(format!(
            "it does not select {target}: {}",
            suggested_selection.notes.join("; ")
        ))));
    }
    // Istio allows what any ALLOW policy allows: one the suggestion does not replace (a
    // mesh-wide one) keeps granting what it grants.
    for (entry, origin) in suggested_selection.config.policies.iter().zip(&suggested_selection.origins) {
        let allow = !entry.dry_run && matches!(entry.spec.action, None | Some(Action::Allow));
        if allow && !origins.contains(origin) {
            notes.push(format!(
                "{origin} also applies to the workload and allows what it allows beside the suggestion; remove it                  for least privilege"
            ));
        }
    }
    let judge = Judge { engine: &suggested_engine, selection: &suggested_selection };
    let replay = replay(&kept, &judge);

    let tightening = if current.is_empty() {
        None
    } else {
        let (selection, engine) = resources::select(current, &target, &options.mesh).map_err(SuggestError::Policies)?;
        let now = Judge { engine: &engine, selection: &selection };
        Some(tighten(&kept, &left_out, &now, &judge, &options.mesh))
    };
    Ok(Suggestion { yaml, target, rules, min_count: options.min_count, left_out, replay, tightening, notes })
}

/// Which workload: `-n` or the observations' namespace (the policies' for the local Envoy's),
/// and `-l` or the current policies' selectors. A suggestion without a selector would apply to
/// every workload of the namespace, and deny them all what this one was not seen doing.
fn target(observations: &Observations, current: &[Object], options: &Options) -> Result<PolicyTarget> {
    let namespace = match (&options.namespace, observations.namespace.as_str()) {
        (Some(ns), _) => Some(ns.clone()),
        (None, "local") => None,
        (None, ns) => Some(ns.to_string()),
    };
    let target = if current.is_empty() {
        let Some(namespace) = namespace else {
            return Err(SuggestError::Workload(
                "the observations are of the local Envoy: name the namespace of the policy with -n NAMESPACE".into(),
            ));
        };
        PolicyTarget { namespace, labels: options.labels.iter().cloned().collect() }
    } else {
        PolicyTarget::infer(current, &options.mesh.root_namespace, namespace.as_deref(), &options.labels)
            .map_err(SuggestError::Policies)?
    };
    if target.labels.is_empty() {
        return Err(SuggestError::Workload(format!(
            "no workload selector for namespace {}: a policy without one would apply to every workload there; name \
             the workload's pod labels with -l KEY=VALUE (e.g. -l app=xnat-web), or give the policies in force with \
             --policy FILE",
            target.namespace
        )));
    }
    if !is_name(&options.name) {
        return Err(SuggestError::Workload(format!(
            "'{}' is not a Kubernetes object name (lower-case letters, digits, '-' and '.'); give another --name",
            options.name
        )));
    }
    Ok(target)
}

/// An ALLOW AuthorizationPolicy of the target's namespace that selects it, or one the
/// suggestion would overwrite (the same name).
fn replaced_by_suggestion(o: &Object, target: &PolicyTarget, name: &str) -> bool {
    if !o.is(Kind::AUTHORIZATION_POLICY) || o.namespace != target.namespace {
        return false;
    }
    let allow = matches!(o.spec.get("action").and_then(|a| a.as_str()), None | Some("ALLOW"));
    let selects = o.selector().unwrap_or_default().iter().all(|(k, v)| target.labels.get(k) == Some(v));
    (allow && selects) || o.name == name
}

/// The observed entries, checked to be what `learn` writes (a template in XNAT's route
/// grammar, a caller the filter names, a method token), and merged where a hand-edited file
/// repeats one.
fn valid_entries(observations: &Observations) -> Result<Vec<Entry>> {
    let mut merged: BTreeMap<(String, Option<u16>, String, String), Entry> = BTreeMap::new();
    for (i, e) in observations.observed.iter().enumerate() {
        let bad =
            |field: &str, message: String| SuggestError::Entry { field: format!("observed[{i}].{field}"), message };
        check_caller(&e.caller).map_err(|m| bad("caller", m))?;
        check_method(&e.method).map_err(|m| bad("method", m))?;
        check_route(&e.route).map_err(|m| bad("route", m))?;
        if e.count == 0 {
            continue;
        }
        let key = (e.caller.clone(), e.port, e.method.clone(), e.route.clone());
        match merged.get_mut(&key) {
            Some(m) => {
                m.count += e.count;
                m.first_seen = earliest(&m.first_seen, &e.first_seen);
                m.last_seen = latest(&m.last_seen, &e.last_seen);
            }
            None => {
                merged.insert(key, e.clone());
            }
        }
    }
    Ok(merged.into_values().collect())
}

fn check_caller(caller: &str) -> Result<(), String> {
    if caller == PLAINTEXT_CALLER || caller == NO_IDENTITY_CALLER {
        return Ok(());
    }
    let refuse = || {
        format!(
            "'{caller}' is not a caller the filter records: a SPIFFE id (spiffe://TRUST_DOMAIN/ns/NS/sa/SA), \
             '{PLAINTEXT_CALLER}' or '{NO_IDENTITY_CALLER}'"
        )
    };
    let rest = caller.strip_prefix("spiffe://").ok_or_else(refuse)?;
    let (domain, path) = rest.split_once('/').ok_or_else(refuse)?;
    let fine = |b: u8| b.is_ascii_alphanumeric() || b"-._~%!$&'()+,;=:@/".contains(&b);
    if domain.is_empty() || path.split('/').any(str::is_empty) || !rest.bytes().all(fine) {
        // `*` above all: in a principal it is a wildcard, and would grant more than one caller.
        return Err(refuse());
    }
    Ok(())
}

fn check_method(method: &str) -> Result<(), String> {
    let token = |b: u8| b.is_ascii_alphanumeric() || b"!#$%&'+-.^_`|~".contains(&b);
    if method.is_empty() || method.len() > 32 || !method.bytes().all(token) {
        return Err(format!("'{method}' is not an HTTP method (an RFC 9110 token, no '*')"));
    }
    Ok(())
}

/// A route as `route_template` writes it: from `/`, each segment a name, `{*}`, or a last `{**}`.
fn check_route(route: &str) -> Result<(), String> {
    let refuse = |why: &str| Err(format!("'{route}' is not a route template as deployer learn writes them: {why}"));
    let Some(rest) = route.strip_prefix('/') else { return refuse("it must start with '/'") };
    let segments: Vec<&str> = rest.split('/').collect();
    let pchar = |b: u8| b.is_ascii_alphanumeric() || b"-._~%!$&'()+,;:@=".contains(&b);
    for (i, segment) in segments.iter().enumerate() {
        match *segment {
            "{*}" => {}
            "{**}" if i + 1 == segments.len() => {}
            "{**}" => return refuse("'{**}' may only end it"),
            s if !s.bytes().all(pchar) => {
                return refuse("a segment is a name, {*} or {**} ('*' alone would be a wildcard)")
            }
            _ => {}
        }
    }
    Ok(())
}

fn is_name(name: &str) -> bool {
    let ok = |b: u8| b.is_ascii_lowercase() || b.is_ascii_digit() || b == b'-' || b == b'.';
    !name.is_empty()
        && name.len() <= 253
        && name.bytes().all(ok)
        && name.as_bytes().first().is_some_and(u8::is_ascii_alphanumeric)
        && name.as_bytes().last().is_some_and(u8::is_ascii_alphanumeric)
}

fn earliest(a: &str, b: &str) -> String {
    if before(b, a) {
        b.to_string()
    } else {
        a.to_string()
    }
}

fn latest(a: &str, b: &str) -> String {
    if before(a, b) {
        b.to_string()
    } else {
        a.to_string()
    }
}

/// Whether `a` is earlier than `b` (RFC 3339; text order for what does not parse).
fn before(a: &str, b: &str) -> bool {
    match (a.parse::<Timestamp>(), b.parse::<Timestamp>()) {
        (Ok(x), Ok(y)) => x < y,
        _ => a < b,
    }
}

/// One rule per caller (the callers without an identity share one, and so do the service
/// accounts of a namespace in `whole`), one operation per port and set of methods.
fn rules(kept: &[Entry], whole: &Whole) -> Vec<SuggestedRule> {
    let mut by_who: BTreeMap<Who, Vec<&Entry>> = BTreeMap::new();
    for e in kept {
        by_who.entry(Who::of(&e.caller, whole)).or_default().push(e);
    }
    by_who
        .into_iter()
        .map(|(who, entries)| {
            let mut callers: BTreeMap<&str, CallerSeen> = BTreeMap::new();
            // port -> route -> (methods, requests)
            let mut ports: BTreeMap<Option<u16>, RouteMethods> = BTreeMap::new();
            for e in &entries {
                let seen = callers.entry(&e.caller).or_insert_with(|| CallerSeen {
                    caller: e.caller.clone(),
                    requests: 0,
                    first_seen: e.first_seen.clone(),
                    last_seen: e.last_seen.clone(),
                });
                seen.requests += e.count;
                seen.first_seen = earliest(&seen.first_seen, &e.first_seen);
                seen.last_seen = latest(&seen.last_seen, &e.last_seen);
                let route = ports.entry(e.port).or_default().entry(&e.route).or_default();
                route.0.insert(&e.method);
                route.1 += e.count;
            }
            let mut operations = Vec::new();
            for (port, routes) in ports {
                let mut groups: BTreeMap<Vec<String>, (Vec<String>, u64)> = BTreeMap::new();
                for (route, (methods, requests)) in routes {
                    let group = groups.entry(methods.iter().map(|m| m.to_string()).collect()).or_default();
                    group.0.push(route.to_string());
                    group.1 += requests;
                }
                for (methods, (paths, requests)) in groups {
                    operations.push(SuggestedOperation { port, methods, paths, requests });
                }
            }
            let source = match &who {
                Who::NoIdentity => format!("notPrincipals: [{}]", quote("*")),
                Who::Namespace(ns) => format!("namespaces: [{}]", quote(ns)),
                Who::Principal(san) => format!("principals: [{}]", quote(principal(san))),
            };
            let namespace = match who {
                Who::Namespace(ns) => Some(ns),
                _ => None,
            };
            SuggestedRule { callers: callers.into_values().collect(), source, namespace, operations }
        })
        .collect()
}

/// Istio's principal for a SPIFFE id: the id without `spiffe://`.
fn principal(san: &str) -> &str {
    san.strip_prefix("spiffe://").unwrap_or(san)
}

/// A YAML double-quoted scalar (every value here was checked to hold no control character).
fn quote(s: &str) -> String {
    let mut out = String::with_capacity(s.len() + 2);
    out.push('"');
    for c in s.chars() {
        match c {
            '"' => out.push_str("\\\""),
            '\\' => out.push_str("\\\\"),
            c if c.is_control() => out.push_str(&format!("\\u{:04x}", c as u32)),
            c => out.push(c),
        }
    }
    out.push('"');
    out
}

fn flow(items: &[String]) -> String {
    format!("[{}]", items.iter().map(|s| quote(s)).collect::<Vec<_>>().join(", "))
}

/// The policy, written as text so that each rule and operation carries its comment.
fn policy_text(
    rules: &[SuggestedRule],
    target: &PolicyTarget,
    options: &Options,
    kept: &[Entry],
    left_out: usize,
) -> String {
    let total: u64 = kept.iter().map(|e| e.count).sum();
    let first = kept.iter().map(|e| e.first_seen.as_str()).reduce(|a, b| if before(b, a) { b } else { a });
    let last = kept.iter().map(|e| e.last_seen.as_str()).reduce(|a, b| if before(a, b) { b } else { a });
    let mut t = String::new();
    t.push_str(&format!(
        "# Least privilege for {target}, suggested by `deployer suggest` from {total} requests\n\
         # seen between {} and {}.\n",
        first.unwrap_or("?"),
        last.unwrap_or("?")
    ));
    t.push_str(
        "# Each caller keeps exactly the ports, methods and XNAT routes it was seen using; anything else\n\
         # is denied. A rule names a whole namespace only where every one of its service accounts was\n\
         # seen doing the same.\n",
    );
    if left_out > 0 {
        t.push_str(&format!(
            "# Left out, seen fewer than {} times: {left_out} {} (deployer suggest lists them).\n",
            options.min_count,
            if left_out == 1 { "entry" } else { "entries" }
        ));
    }
    t.push_str(&format!("apiVersion: {}\n", Kind::AUTHORIZATION_POLICY.api_version()));
    t.push_str(&format!("kind: {}\n", Kind::AUTHORIZATION_POLICY.kind));
    t.push_str(&format!("metadata:\n  name: {}\n  namespace: {}\n", quote(&options.name), quote(&target.namespace)));
    t.push_str("spec:\n  selector:\n    matchLabels:\n");
    for (k, v) in &target.labels {
        t.push_str(&format!("      {}: {}\n", quote(k), quote(v)));
    }
    t.push_str("  action: ALLOW\n  rules:\n");
    for rule in rules {
        if let Some(ns) = &rule.namespace {
            let accounts: Vec<&str> =
                rule.callers.iter().filter_map(|c| service_account_of(&c.caller)).map(|(_, _, sa)| sa).collect();
            t.push_str(&format!(
                "  # every service account of {ns} ({}) was seen doing the same; one created there later\n\
                 \x20 # gets the same.\n",
                accounts.join(", ")
            ));
        }
        for c in &rule.callers {
            t.push_str(&format!(
                "  # {}: {} requests, first {}, last {}\n",
                c.caller, c.requests, c.first_seen, c.last_seen
            ));
        }
        if rule.source.starts_with("notPrincipals") {
            t.push_str("  # notPrincipals [\"*\"]: only requests without an mTLS identity, never a caller with one.\n");
        }
        t.push_str(&format!("  - from:\n    - source:\n        {}\n    to:\n", rule.source));
        for op in &rule.operations {
            let port = match op.port {
                Some(p) => format!("port {p}"),
                None => "port unknown to the filter, so any port".into(),
            };
            t.push_str(&format!("    # {port}: {} requests\n", op.requests));
            t.push_str("    - operation:\n");
            if let Some(p) = op.port {
                t.push_str(&format!("        ports: [{}]\n", quote(&p.to_string())));
            }
            t.push_str(&format!("        methods: {}\n        paths:\n", flow(&op.methods)));
            for path in &op.paths {
                t.push_str(&format!("        - {}\n", quote(path)));
            }
        }
    }
    t
}

/// A route as a concrete path: each `{*}` a numbered segment, `{**}` a file path.
pub fn sample_path(route: &str) -> String {
    let mut n = 0;
    route
        .split('/')
        .map(|segment| match segment {
            "{*}" => {
                n += 1;
                format!("{SAMPLE_SEGMENT}{n}")
            }
            "{**}" => SAMPLE_REST.to_string(),
            s => s.to_string(),
        })
        .collect::<Vec<_>>()
        .join("/")
}

/// An engine and the selection it was compiled from, judging as `deployer check` does.
struct Judge<'a> {
    engine: &'a Engine,
    selection: &'a Selection,
}

impl Judge<'_> {
    /// Whether the request is allowed, and why in the configuration's words.
    fn judge(&self, caller: &str, port: Option<u16>, method: &str, path: &str) -> (bool, String) {
        let spec = RequestSpec {
            method: method.into(),
            path: path.into(),
            // A request with no port is judged on port 0, which no policy names.
            port: port.unwrap_or(0),
            principal: match caller {
                PLAINTEXT_CALLER => None,
                NO_IDENTITY_CALLER => Some(String::new()),
                san => Some(san.to_string()),
            },
            ..RequestSpec::default()
        };
        let (decision, report) = check(self.engine, self.selection, &spec);
        let mut why = report.why;
        for note in &report.notes {
            why.push_str("; ");
            why.push_str(note);
        }
        (decision.verdict.is_allowed(), why)
    }

    fn mode_on(&self, port: Option<u16>) -> MtlsMode {
        self.selection.mtls_on_port(port.unwrap_or(0)).0
    }
}

fn replay(kept: &[Entry], judge: &Judge<'_>) -> Replay {
    let mut replay = Replay::default();
    for e in kept {
        let path = sample_path(&e.route);
        let (allowed, why) = judge.judge(&e.caller, e.port, &e.method, &path);
        replay.observations += 1;
        replay.requests += e.count;
        if allowed {
            replay.allowed_observations += 1;
            replay.allowed_requests += e.count;
        } else {
            replay.refused.push(Refused {
                caller: e.caller.clone(),
                port: e.port,
                method: e.method.clone(),
                route: e.route.clone(),
                path,
                count: e.count,
                why,
            });
        }
    }
    replay
}

/// The SPIFFE id's trust domain and namespace (`spiffe://td/ns/NS/sa/SA`).
fn namespace_of(san: &str) -> Option<(&str, &str)> {
    service_account_of(san).map(|(td, ns, _)| (td, ns))
}

/// The callers the enforced ALLOW policies in force name exactly: their principals and service
/// accounts (as SPIFFE ids), and their namespaces.
fn named_by(selection: &Selection, mesh: &Mesh) -> (BTreeSet<String>, BTreeSet<String>) {
    let mut principals = BTreeSet::new();
    let mut namespaces = BTreeSet::new();
    let enforced_allow = |p: &&PolicyEntry| !p.dry_run && matches!(p.spec.action, None | Some(Action::Allow));
    for policy in selection.config.policies.iter().filter(enforced_allow) {
        for rule in policy.spec.rules.iter().flatten() {
            for from in rule.from.iter().flatten() {
                let s = &from.source;
                for p in s.principals.iter().filter(|p| !p.contains('*')) {
                    let id = match p.split('/').collect::<Vec<_>>().as_slice() {
                        ["cluster.local", "ns", ns, "sa", sa] => {
                            format!("spiffe://{}/ns/{ns}/sa/{sa}", mesh.trust_domain)
                        }
                        _ => format!("spiffe://{p}"),
                    };
                    if check_caller(&id).is_ok() {
                        principals.insert(id);
                    }
                }
                for a in s.service_accounts.iter().filter(|a| !a.contains('*')) {
                    let (ns, sa) = a.split_once('/').unwrap_or((&policy.namespace, a));
                    principals.insert(format!("spiffe://{}/ns/{ns}/sa/{sa}", mesh.trust_domain));
                }
                namespaces.extend(s.namespaces.iter().filter(|n| !n.contains('*')).cloned());
            }
        }
    }
    (principals, namespaces)
}

/// Ports, in order; `None` where the filter did not know it.
type Ports = Vec<Option<u16>>;

/// Per route, the methods seen on it and their requests.
type RouteMethods<'a> = BTreeMap<&'a str, (BTreeSet<&'a str>, u64)>;

/// Probes what `now` allows and `suggested` denies, and groups it.
fn tighten(kept: &[Entry], left_out: &[Entry], now: &Judge<'_>, suggested: &Judge<'_>, mesh: &Mesh) -> Tightening {
    let all: Vec<&Entry> = kept.iter().chain(left_out).collect();
    let seen: BTreeMap<(&str, Option<u16>, &str, &str), u64> =
        all.iter().map(|e| ((e.caller.as_str(), e.port, e.method.as_str(), e.route.as_str()), e.count)).collect();

    // Callers: plaintext always, every caller seen, every one the policy in force names, and
    // for each namespace seen or named its `default` account, standing for those never seen.
    let (named, named_namespaces) = named_by(now.selection, mesh);
    let mut callers: BTreeSet<String> = BTreeSet::from([PLAINTEXT_CALLER.to_string()]);
    callers.extend(all.iter().map(|e| e.caller.clone()));
    callers.extend(named);
    let mut namespaces: BTreeSet<(String, String)> =
        named_namespaces.into_iter().map(|ns| (mesh.trust_domain.clone(), ns)).collect();
    namespaces.extend(callers.iter().filter_map(|c| namespace_of(c)).map(|(td, ns)| (td.to_string(), ns.to_string())));
    let mut standing_in: BTreeSet<String> = BTreeSet::new();
    for (td, ns) in &namespaces {
        let account = format!("spiffe://{td}/ns/{ns}/sa/{UNSEEN_ACCOUNT}");
        if callers.insert(account.clone()) {
            standing_in.insert(account);
        }
    }
    let ports: BTreeSet<Option<u16>> = all.iter().map(|e| e.port).collect();
    let mut methods: Vec<String> = PROBE_METHODS.iter().map(|m| m.to_string()).collect();
    for e in &all {
        if !methods.contains(&e.method) {
            methods.push(e.method.clone());
        }
    }
    let mut routes: BTreeSet<String> = all.iter().map(|e| e.route.clone()).collect();
    routes.extend(SENSITIVE_ROUTES.iter().map(|r| r.to_string()));
    let routes: Vec<String> = routes.into_iter().collect();

    // (caller, method, port) -> routes taken away; the left-out ones apart, each on its own.
    let mut probed = 0;
    let mut never: BTreeMap<(&str, &str, Option<u16>), Vec<&str>> = BTreeMap::new();
    let mut rare: Vec<Finding> = Vec::new();
    let mut probed_callers: BTreeSet<&str> = BTreeSet::new();
    for caller in &callers {
        for &port in &ports {
            // On a DISABLE port the sidecar terminates no mTLS: no identity reaches the filter.
            if caller != PLAINTEXT_CALLER && now.mode_on(port) == MtlsMode::Disable {
                continue;
            }
            probed_callers.insert(caller);
            for method in &methods {
                for route in &routes {
                    probed += 1;
                    let path = sample_path(route);
                    if !now.judge(caller, port, method, &path).0 || suggested.judge(caller, port, method, &path).0 {
                        continue;
                    }
                    let count = seen.get(&(caller.as_str(), port, method.as_str(), route.as_str())).copied();
                    match count {
                        Some(count) => rare.push(Finding {
                            methods: vec![method.clone()],
                            any_method: false,
                            from: caller.clone(),
                            callers: vec![caller.clone()],
                            ports: vec![port],
                            routes: vec![route.clone()],
                            except: routes.iter().filter(|r| *r != route).cloned().collect(),
                            seen: count,
                        }),
                        None => never.entry((caller, method, port)).or_default().push(route),
                    }
                }
            }
        }
    }

    // Per caller and method, the ports that lose the same routes.
    let mut by_routes: BTreeMap<(&str, &str, Vec<&str>), Ports> = BTreeMap::new();
    for ((caller, method, port), taken) in never {
        by_routes.entry((caller, method, taken)).or_default().push(port);
    }
    // Per method, routes and ports, the callers; a namespace whose every probed caller is
    // among them is named once.
    let mut by_what: BTreeMap<(&str, Vec<&str>, Ports), BTreeSet<&str>> = BTreeMap::new();
    for ((caller, method, taken), ports) in by_routes {
        by_what.entry((method, taken, ports)).or_default().insert(caller);
    }
    let mut per_namespace: BTreeMap<&str, BTreeSet<&str>> = BTreeMap::new();
    for caller in &probed_callers {
        if let Some((_, ns)) = namespace_of(caller) {
            per_namespace.entry(ns).or_default().insert(caller);
        }
    }
    let mut findings = Vec::new();
    for ((method, taken, ports), mut who) in by_what {
        let except: Vec<String> = routes.iter().filter(|r| !taken.contains(&r.as_str())).cloned().collect();
        let finding = |from: String, callers: Vec<String>| Finding {
            methods: vec![method.to_string()],
            any_method: false,
            from,
            callers,
            ports: ports.clone(),
            routes: taken.iter().map(|r| r.to_string()).collect(),
            except: except.clone(),
            seen: 0,
        };
        for (ns, members) in &per_namespace {
            if members.is_subset(&who) {
                findings.push(finding(format!("ns/{ns}"), members.iter().map(|c| c.to_string()).collect()));
                who.retain(|c| !members.contains(c));
            }
        }
        for caller in who {
            let from = match namespace_of(caller) {
                Some((_, ns)) if standing_in.contains(caller) => format!("any other service account of ns/{ns}"),
                _ => caller.to_string(),
            };
            findings.push(finding(from, vec![caller.to_string()]));
        }
    }
    // The methods one caller loses on the same routes and ports are one line.
    let rank = |m: &str| methods.iter().position(|x| x == m).unwrap_or(usize::MAX);
    let mut merged: BTreeMap<(String, Ports, Vec<String>), Finding> = BTreeMap::new();
    for f in findings {
        let key = (f.from.clone(), f.ports.clone(), f.routes.clone());
        match merged.get_mut(&key) {
            Some(m) => m.methods.extend(f.methods),
            None => {
                merged.insert(key, f);
            }
        }
    }
    let mut findings: Vec<Finding> = merged.into_values().collect();
    for f in &mut findings {
        f.methods.sort_by_key(|m| rank(m));
        f.any_method = f.methods.len() == methods.len();
    }
    findings.extend(rare);
    let method_rank = |f: &Finding| f.methods.first().map(|m| rank(m)).unwrap_or(usize::MAX);
    findings.sort_by(|a, b| {
        let who = |f: &Finding| (f.from != PLAINTEXT_CALLER, f.from.clone());
        (who(a), method_rank(a), a.seen, &a.ports, &a.routes).cmp(&(
            who(b),
            method_rank(b),
            b.seen,
            &b.ports,
            &b.routes,
        ))
    });
    Tightening {
        probed,
        callers: probed_callers.iter().map(|c| c.to_string()).collect(),
        ports: ports.into_iter().collect(),
        methods,
        routes,
        findings,
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn a_sample_path_fills_each_wildcard_and_matches_its_route() {
        let cases = [
            ("/data/projects", "/data/projects"),
            ("/data/projects/{*}/subjects/{*}", "/data/projects/x1/subjects/x2"),
            ("/data/projects/{*}/files/{**}", "/data/projects/x1/files/a/b.dcm"),
            ("/{**}", "/a/b.dcm"),
            ("/", "/"),
        ];
        for (route, want) in cases {
            let path = sample_path(route);
            assert_eq!(path, want);
            let mut out = [0u8; xnat_guard_policy::MAX_ROUTE];
            let n = xnat_guard_policy::route_template(path.as_bytes(), &mut out);
            if route.starts_with("/data/") {
                assert_eq!(&out[..n], route.as_bytes(), "{path} is recorded as {route} again");
            }
        }
    }

    #[test]
    fn routes_are_checked_to_be_templates_learn_writes() {
        for good in ["/", "/data/projects/", "/data/projects/{*}/files/{**}", "/app/template/Index.vm", "/{**}"] {
            assert!(check_route(good).is_ok(), "{good}");
        }
        for bad in ["", "data", "/data/*", "/data/pro*", "/data/{**}/x", "/data/{x}", "/data/a b", "/data?x=1"] {
            assert!(check_route(bad).is_err(), "{bad}");
        }
    }

    #[test]
    fn callers_are_spiffe_ids_plaintext_or_no_identity_and_never_wildcards() {
        for good in ["plaintext", "mtls-without-identity", "spiffe://cluster.local/ns/xnat/sa/uploader"] {
            assert!(check_caller(good).is_ok(), "{good}");
        }
        for bad in ["", "uploader", "spiffe://", "spiffe://cluster.local", "spiffe://td/ns/*/sa/x", "spiffe://td//x"] {
            assert!(check_caller(bad).is_err(), "{bad}");
        }
    }

    #[test]
    fn a_namespace_is_read_only_from_a_service_account_id() {
        assert_eq!(
            namespace_of("spiffe://cluster.local/ns/reporting/sa/reporter"),
            Some(("cluster.local", "reporting"))
        );
        assert_eq!(namespace_of("spiffe://example.org/workload/x"), None);
        assert_eq!(namespace_of("plaintext"), None);
    }

    #[test]
    fn times_compare_as_times_not_as_text() {
        assert_eq!(earliest("2026-11-10T09:00:00Z", "2026-11-10T08:00:00+00:00"), "2026-11-10T08:00:00+00:00");
        assert_eq!(latest("2026-11-10T09:00:00Z", "2026-11-10T10:00:00+02:00"), "2026-11-10T09:00:00Z");
    }

    #[test]
    fn the_replay_line_rounds_down_and_says_100_only_when_all_were_allowed() {
        let replay =
            Replay { observations: 3, allowed_observations: 2, requests: 1000, allowed_requests: 999, refused: vec![] };
        assert_eq!(replay.to_string(), "replay: 999 of 1000 observed requests allowed (99.9%), 2 of 3 observations");
        let all = Replay { allowed_requests: 1000, allowed_observations: 3, ..replay };
        assert!(all.to_string().contains("(100%)"));
    }
}

//! The plugin configuration: Istio's own `AuthorizationPolicy` and `PeerAuthentication`
//! specs, with Istio's field names. Every struct denies unknown fields: a field we silently
//! ignored in an ALLOW rule would widen access. Fields Istio has but a sidecar filter cannot
//! honour (JWT principals, CUSTOM providers, gateway targets) are declared here so that
//! `compile` can refuse them by name instead of reporting them as misspelt.
//!
//! The filter reads these from JSON with `decode` (no serde: it would triple the module).
//! The `serde` feature adds serde's derives with the same names and rules, for the deployer,
//! which reads Istio YAML and writes the `pluginConfig` the filter then decodes.

use std::collections::BTreeMap;

/// The JSON document Istio's `WasmPlugin.pluginConfig` hands to the filter.
#[derive(Debug, Clone, PartialEq)]
#[cfg_attr(feature = "serde", derive(serde::Deserialize, serde::Serialize))]
#[cfg_attr(feature = "serde", serde(deny_unknown_fields, rename_all = "camelCase"))]
pub struct PluginConfig {
    #[cfg_attr(feature = "serde", serde(default = "default_trust_domain"))]
    pub trust_domain: String,
    #[cfg_attr(feature = "serde", serde(default, skip_serializing_if = "Vec::is_empty"))]
    pub trust_domain_aliases: Vec<String>,
    #[cfg_attr(feature = "serde", serde(default, skip_serializing_if = "Option::is_none"))]
    pub peer_authentication: Option<PeerAuthenticationSpec>,
    #[cfg_attr(feature = "serde", serde(default))]
    pub policies: Vec<PolicyEntry>,
    /// Which path the rules are matched against (see `normalize`).
    #[cfg_attr(feature = "serde", serde(default, skip_serializing_if = "PathNormalization::is_default"))]
    pub path_normalization: PathNormalization,
    /// Prefixes under which XNAT serves the same resources; `None` means XNAT's own
    /// ([`default_path_aliases`]). Applied to request paths and to policy paths alike.
    #[cfg_attr(feature = "serde", serde(default, skip_serializing_if = "Option::is_none"))]
    pub path_aliases: Option<Vec<PathAlias>>,
    /// What to do with requests that ask for another method than their request line's.
    #[cfg_attr(feature = "serde", serde(default, skip_serializing_if = "MethodOverride::is_default"))]
    pub method_override: MethodOverride,
    /// Whether a rule that takes access away for GET takes it away for HEAD too.
    #[cfg_attr(feature = "serde", serde(default, skip_serializing_if = "HeadMethod::is_default"))]
    pub head_method: HeadMethod,
    /// How tunnelled methods are read: as the frameworks decode them, or as sent.
    #[cfg_attr(feature = "serde", serde(default, skip_serializing_if = "TunnelDecoding::is_default"))]
    pub tunnel_decoding: TunnelDecoding,
    /// Which header names count as method-override headers.
    #[cfg_attr(feature = "serde", serde(default, skip_serializing_if = "OverrideHeaderNames::is_default"))]
    pub override_header_names: OverrideHeaderNames,
    /// Whether a path under XNAT's Restlet application takes in the paths below it, as
    /// Restlet's router does.
    #[cfg_attr(feature = "serde", serde(default, skip_serializing_if = "RestletRouting::is_default"))]
    pub restlet_routing: RestletRouting,
    /// Whether the other prefixes of XNAT's Spring dispatcher are aliases of `/xapi/`.
    #[cfg_attr(feature = "serde", serde(default, skip_serializing_if = "SpringPrefixes::is_default"))]
    pub spring_prefixes: SpringPrefixes,
    /// Whether a Spring path takes in its trailing-slash and registered-extension forms.
    #[cfg_attr(feature = "serde", serde(default, skip_serializing_if = "SpringSuffixes::is_default"))]
    pub spring_suffixes: SpringSuffixes,
    /// Whether `namespaces` and `serviceAccounts` match a peer of any trust domain, or only of
    /// the mesh's where a match grants access.
    #[cfg_attr(feature = "serde", serde(default, skip_serializing_if = "PeerTrustDomains::is_default"))]
    pub peer_trust_domains: PeerTrustDomains,
    /// What the deployer names this configuration by (1 to 13 hex digits, a digest of the rest):
    /// the filter publishes it, once configured, as the gauge [`crate::CONFIG_DIGEST_METRIC`],
    /// so a rollout can see that each sidecar enforces this configuration and not an older one.
    #[cfg_attr(feature = "serde", serde(default, skip_serializing_if = "Option::is_none"))]
    pub config_digest: Option<String>,
    /// Whether the filter records what it lets through, for `deployer learn`.
    #[cfg_attr(feature = "serde", serde(default, skip_serializing_if = "ObserveMode::is_default"))]
    pub observe: ObserveMode,
}

impl Default for PluginConfig {
    fn default() -> Self {
        PluginConfig {
            trust_domain: default_trust_domain(),
            trust_domain_aliases: Vec::new(),
            peer_authentication: None,
            policies: Vec::new(),
            path_normalization: PathNormalization::default(),
            path_aliases: None,
            method_override: MethodOverride::default(),
            head_method: HeadMethod::default(),
            tunnel_decoding: TunnelDecoding::default(),
            override_header_names: OverrideHeaderNames::default(),
            restlet_routing: RestletRouting::default(),
            spring_prefixes: SpringPrefixes::default(),
            spring_suffixes: SpringSuffixes::default(),
            peer_trust_domains: PeerTrustDomains::default(),
            config_digest: None,
            observe: ObserveMode::default(),
        }
    }
}

impl PluginConfig {
    /// Turns off every widening of what denies to the request forms XNAT serves the same way:
    /// `headMethod`, `tunnelDecoding`, `overrideHeaderNames`, `restletRouting`,
    /// `springPrefixes` and `springSuffixes` take their exact values, Istio's matching.
    /// `pathNormalization`, `pathAliases` and `methodOverride` stay as they are, and so does
    /// `peerTrustDomains`: it is about who the peer is, not about how XNAT dispatches a request.
    pub fn match_handlers_exactly(&mut self) {
        self.head_method = HeadMethod::Exact;
        self.tunnel_decoding = TunnelDecoding::None;
        self.override_header_names = OverrideHeaderNames::Exact;
        self.restlet_routing = RestletRouting::Exact;
        self.spring_prefixes = SpringPrefixes::Exact;
        self.spring_suffixes = SpringSuffixes::Exact;
    }
}

/// What the filter records of the requests it allows (see `observe`). A dry-run policy's
/// would-be denials are recorded whatever this says.
#[derive(Debug, Clone, Copy, Default, PartialEq, Eq)]
#[cfg_attr(feature = "serde", derive(serde::Deserialize, serde::Serialize))]
#[cfg_attr(feature = "serde", serde(rename_all = "UPPERCASE"))]
pub enum ObserveMode {
    /// Nothing beyond the decision counters.
    #[default]
    Off,
    /// Each (caller, port, method, XNAT route) allowed, with a count.
    Routes,
}

impl ObserveMode {
    pub fn is_default(&self) -> bool {
        *self == ObserveMode::default()
    }
}

/// How request paths are read before matching.
#[derive(Debug, Clone, Copy, Default, PartialEq, Eq)]
#[cfg_attr(feature = "serde", derive(serde::Deserialize, serde::Serialize))]
#[cfg_attr(feature = "serde", serde(rename_all = "UPPERCASE"))]
pub enum PathNormalization {
    /// Tomcat's view: query dropped, `;` parameters stripped, decoded, `//` merged, dot
    /// segments resolved; encoded slashes, backslashes, NUL and bad escapes refused.
    #[default]
    Tomcat,
    /// The path as Envoy hands it over (query dropped), as Istio's native RBAC reads it.
    None,
}

impl PathNormalization {
    pub fn is_default(&self) -> bool {
        *self == PathNormalization::default()
    }
}

/// One alias: requests under `from` are judged as if under `to`.
#[derive(Debug, Clone, PartialEq, Eq)]
#[cfg_attr(feature = "serde", derive(serde::Deserialize, serde::Serialize))]
#[cfg_attr(feature = "serde", serde(deny_unknown_fields, rename_all = "camelCase"))]
pub struct PathAlias {
    pub from: String,
    pub to: String,
}

/// XNAT's Restlet application answers under `/data/` and the legacy `/REST/`, and its archive
/// resources also under `/data/archive/`.
pub fn default_path_aliases() -> Vec<PathAlias> {
    vec![
        PathAlias { from: "/REST/".into(), to: "/data/".into() },
        PathAlias { from: "/data/archive/".into(), to: "/data/".into() },
    ]
}

/// How paths under XNAT's Spring dispatcher are matched where a match takes access away.
/// XNAT maps the dispatcher servlet to `/xapi/*`, `/admin/*`, `/pages/*` and `/schemas/*`
/// (`XnatWebAppInitializer`), and the dispatcher matches handlers on the path after the
/// servlet's prefix: `/pages/users/bob` is `/xapi/users/bob`.
#[derive(Debug, Clone, Copy, Default, PartialEq, Eq)]
#[cfg_attr(feature = "serde", derive(serde::Deserialize, serde::Serialize))]
#[cfg_attr(feature = "serde", serde(rename_all = "SCREAMING_SNAKE_CASE"))]
pub enum SpringPrefixes {
    /// Where a path takes access away when it matches (a DENY or AUDIT rule's `paths`, an
    /// ALLOW rule's `notPaths`, dry-run alike), a path under one of the four prefixes also
    /// matches under the other three. Where it grants access (an ALLOW rule's `paths`) it
    /// stays exact.
    #[default]
    ServletPrefixes,
    /// Every path exactly as written (Istio's behaviour).
    Exact,
}

impl SpringPrefixes {
    pub fn is_default(&self) -> bool {
        *self == SpringPrefixes::default()
    }
}

/// How paths under XNAT's Spring dispatcher are matched where a match takes access away, given
/// Spring 4.3's defaults as XNAT keeps them (`WebConfig`): trailing-slash matching on, and
/// suffix pattern matching on with `.json` and `.xml` registered, so `/xapi/siteConfig/`,
/// `/xapi/siteConfig.json` and `/xapi/siteConfig.xml` reach the handler of `/xapi/siteConfig`.
#[derive(Debug, Clone, Copy, Default, PartialEq, Eq)]
#[cfg_attr(feature = "serde", derive(serde::Deserialize, serde::Serialize))]
#[cfg_attr(feature = "serde", serde(rename_all = "SCREAMING_SNAKE_CASE"))]
pub enum SpringSuffixes {
    /// Where a path takes access away when it matches (a DENY or AUDIT rule's `paths`, an
    /// ALLOW rule's `notPaths`, dry-run alike), an exact path or template under a Spring
    /// prefix also matches itself followed by `/`, `.json` or `.xml`. A sibling such as
    /// `/xapi/siteConfig/buildInfo` is another handler and is not taken in. Where a path grants
    /// access (an ALLOW rule's `paths`) it stays exact.
    #[default]
    Registered,
    /// Every path exactly as written (Istio's behaviour).
    Exact,
}

impl SpringSuffixes {
    pub fn is_default(&self) -> bool {
        *self == SpringSuffixes::default()
    }
}

/// Which trust domains a peer's `namespaces` and `serviceAccounts` (and the
/// `source.namespace` condition) are read in. Istio matches `.*/ns/<ns>/.*`: a peer of any
/// trust domain whose certificate chains to a trusted root, so in a multi-cluster or federated
/// mesh another domain's workload in a namespace of the same name matches.
#[derive(Debug, Clone, Copy, Default, PartialEq, Eq)]
#[cfg_attr(feature = "serde", derive(serde::Deserialize, serde::Serialize))]
#[cfg_attr(feature = "serde", serde(rename_all = "SCREAMING_SNAKE_CASE"))]
pub enum PeerTrustDomains {
    /// Where a match grants access (an ALLOW rule's `namespaces` and `serviceAccounts`, a DENY
    /// or AUDIT rule's `notNamespaces` and `notServiceAccounts`, dry-run alike), only a peer
    /// of `trustDomain` or one of `trustDomainAliases` matches. Where a match takes access
    /// away (a DENY rule's `namespaces`, an ALLOW rule's `notNamespaces`) any domain matches.
    #[default]
    Mesh,
    /// A peer of any trust domain matches (Istio's behaviour).
    Any,
}

impl PeerTrustDomains {
    pub fn is_default(&self) -> bool {
        *self == PeerTrustDomains::default()
    }
}

/// Method tunnelling: `X-HTTP-Method-Override` and kin, or a `method`/`_method` query parameter
/// (Restlet's tunnel service, Spring's HiddenHttpMethodFilter).
#[derive(Debug, Clone, Copy, Default, PartialEq, Eq)]
#[cfg_attr(feature = "serde", derive(serde::Deserialize, serde::Serialize))]
#[cfg_attr(feature = "serde", serde(rename_all = "UPPERCASE"))]
pub enum MethodOverride {
    /// The request must be allowed under its own method and under every method it asks for.
    #[default]
    Judge,
    /// Any request asking for another method is denied.
    Refuse,
    /// Only the request line's method counts (Istio's behaviour).
    Ignore,
}

impl MethodOverride {
    pub fn is_default(&self) -> bool {
        *self == MethodOverride::default()
    }
}

/// How HEAD is judged. Restlet runs a resource's GET code for HEAD, and Spring 4.3+ maps HEAD
/// to GET handlers, so to XNAT a HEAD is a GET without the body.
#[derive(Debug, Clone, Copy, Default, PartialEq, Eq)]
#[cfg_attr(feature = "serde", derive(serde::Deserialize, serde::Serialize))]
#[cfg_attr(feature = "serde", serde(rename_all = "SCREAMING_SNAKE_CASE"))]
pub enum HeadMethod {
    /// Where matching GET takes access away (a DENY rule's `methods`, an ALLOW rule's
    /// `notMethods`, and the same for AUDIT and dry-run), HEAD matches too. Where matching
    /// grants access (an ALLOW rule's `methods`), HEAD stays HEAD.
    #[default]
    AsGet,
    /// HEAD is only HEAD (Istio's behaviour).
    Exact,
}

impl HeadMethod {
    pub fn is_default(&self) -> bool {
        *self == HeadMethod::default()
    }
}

/// How a tunnelled method is read before it is judged (`methodOverride: JUDGE`).
#[derive(Debug, Clone, Copy, Default, PartialEq, Eq)]
#[cfg_attr(feature = "serde", derive(serde::Deserialize, serde::Serialize))]
#[cfg_attr(feature = "serde", serde(rename_all = "UPPERCASE"))]
pub enum TunnelDecoding {
    /// As Restlet and Spring read it: a query parameter's name and value are URL-decoded
    /// (`%6Dethod=DELETE` is `method=DELETE`), and every value is upper-cased as Java does,
    /// so `ſ`, `ı`, `İ`, the Kelvin sign and the Latin ligatures fold to the letters
    /// `String.equalsIgnoreCase` and `toUpperCase` make of them (`po%C5%BFt` is POST).
    #[default]
    Url,
    /// Names and values as sent, upper-cased in ASCII only.
    None,
}

impl TunnelDecoding {
    pub fn is_default(&self) -> bool {
        *self == TunnelDecoding::default()
    }
}

/// How a request header's name is compared with the method-override headers'
/// (`X-HTTP-Method-Override`, `X-HTTP-Method`, `X-Method-Override`).
#[derive(Debug, Clone, Copy, Default, PartialEq, Eq)]
#[cfg_attr(feature = "serde", derive(serde::Deserialize, serde::Serialize))]
#[cfg_attr(feature = "serde", serde(rename_all = "SCREAMING_SNAKE_CASE"))]
pub enum OverrideHeaderNames {
    /// A name that differs only by `_` for `-` is the same header (`x_http_method_override`):
    /// Envoy and Istio's sidecars forward such names by default, and a hop that maps `_` to
    /// `-` (as CGI-style servers and some proxies do) would honour it.
    #[default]
    UnderscoreAsDash,
    /// Only the names themselves, ignoring ASCII case.
    Exact,
}

impl OverrideHeaderNames {
    pub fn is_default(&self) -> bool {
        *self == OverrideHeaderNames::default()
    }
}

/// How paths under XNAT's Restlet application (`/data/`, `/REST/`) are matched where a match
/// takes access away. XNAT's router keeps Restlet's default `MODE_STARTS_WITH`: a route matches
/// the start of the request's path, so `/data/services/tokens/issue/` and
/// `/data/services/tokens/issue/user/bob` reach the handler of `/data/services/tokens/issue`.
#[derive(Debug, Clone, Copy, Default, PartialEq, Eq)]
#[cfg_attr(feature = "serde", derive(serde::Deserialize, serde::Serialize))]
#[cfg_attr(feature = "serde", serde(rename_all = "SCREAMING_SNAKE_CASE"))]
pub enum RestletRouting {
    /// Where a path takes access away when it matches (a DENY or AUDIT rule's `paths`, an
    /// ALLOW rule's `notPaths`, dry-run alike), an exact path or template under `/data/` or
    /// `/REST/` also matches everything below it (`path/` and `path/...`). Where it grants
    /// access (an ALLOW rule's `paths`) it stays exact.
    #[default]
    StartsWith,
    /// Every path exactly as written (Istio's behaviour).
    Exact,
}

impl RestletRouting {
    pub fn is_default(&self) -> bool {
        *self == RestletRouting::default()
    }
}

/// A field Istio has and the filter refuses (see `compile`): only its presence is kept.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct Unsupported;

#[cfg(feature = "serde")]
impl<'de> serde::Deserialize<'de> for Unsupported {
    fn deserialize<D: serde::Deserializer<'de>>(deserializer: D) -> Result<Self, D::Error> {
        serde::de::IgnoredAny::deserialize(deserializer).map(|_| Unsupported)
    }
}

/// Never reached for a compiled configuration, which refuses these fields.
#[cfg(feature = "serde")]
impl serde::Serialize for Unsupported {
    fn serialize<S: serde::Serializer>(&self, serializer: S) -> Result<S::Ok, S::Error> {
        serializer.serialize_unit()
    }
}

pub(crate) fn default_trust_domain() -> String {
    "cluster.local".to_string()
}

/// One AuthorizationPolicy resource as the filter needs it: its identity and its spec.
#[derive(Debug, Clone, PartialEq)]
#[cfg_attr(feature = "serde", derive(serde::Deserialize, serde::Serialize))]
#[cfg_attr(feature = "serde", serde(deny_unknown_fields, rename_all = "camelCase"))]
pub struct PolicyEntry {
    pub name: String,
    pub namespace: String,
    /// Istio's `istio.io/dry-run` annotation: evaluated and reported, never enforced.
    #[cfg_attr(feature = "serde", serde(default))]
    pub dry_run: bool,
    pub spec: AuthorizationPolicySpec,
}

#[derive(Debug, Clone, Default, PartialEq)]
#[cfg_attr(feature = "serde", derive(serde::Deserialize, serde::Serialize))]
#[cfg_attr(feature = "serde", serde(deny_unknown_fields, rename_all = "camelCase"))]
pub struct AuthorizationPolicySpec {
    /// Accepted so a spec can be pasted as is; workload selection happens before the filter
    /// (the deployer resolves it), so the filter does not evaluate it.
    #[cfg_attr(feature = "serde", serde(default, skip_serializing_if = "Option::is_none"))]
    pub selector: Option<WorkloadSelector>,
    #[cfg_attr(feature = "serde", serde(default, skip_serializing_if = "Option::is_none"))]
    pub target_ref: Option<Unsupported>,
    #[cfg_attr(feature = "serde", serde(default, skip_serializing_if = "Option::is_none"))]
    pub target_refs: Option<Unsupported>,
    #[cfg_attr(feature = "serde", serde(default, skip_serializing_if = "Option::is_none"))]
    pub action: Option<Action>,
    #[cfg_attr(feature = "serde", serde(default, skip_serializing_if = "Option::is_none"))]
    pub provider: Option<Unsupported>,
    /// `None` (no `rules` field) matches nothing; `Some([{}])` matches everything.
    #[cfg_attr(feature = "serde", serde(default, skip_serializing_if = "Option::is_none"))]
    pub rules: Option<Vec<Rule>>,
}

#[derive(Debug, Clone, Default, PartialEq)]
#[cfg_attr(feature = "serde", derive(serde::Deserialize, serde::Serialize))]
#[cfg_attr(feature = "serde", serde(deny_unknown_fields, rename_all = "camelCase"))]
pub struct WorkloadSelector {
    #[cfg_attr(feature = "serde", serde(default))]
    pub match_labels: BTreeMap<String, String>,
}

#[derive(Debug, Clone, Copy, PartialEq, Eq)]
#[cfg_attr(feature = "serde", derive(serde::Deserialize, serde::Serialize))]
#[cfg_attr(feature = "serde", serde(rename_all = "UPPERCASE"))]
pub enum Action {
    Allow,
    Deny,
    Audit,
    Custom,
}

#[derive(Debug, Clone, Default, PartialEq)]
#[cfg_attr(feature = "serde", derive(serde::Deserialize, serde::Serialize))]
#[cfg_attr(feature = "serde", serde(deny_unknown_fields, rename_all = "camelCase"))]
pub struct Rule {
    #[cfg_attr(feature = "serde", serde(default, skip_serializing_if = "Option::is_none"))]
    pub from: Option<Vec<From>>,
    #[cfg_attr(feature = "serde", serde(default, skip_serializing_if = "Option::is_none"))]
    pub to: Option<Vec<To>>,
    #[cfg_attr(feature = "serde", serde(default, skip_serializing_if = "Option::is_none"))]
    pub when: Option<Vec<Condition>>,
}

#[derive(Debug, Clone, Default, PartialEq)]
#[cfg_attr(feature = "serde", derive(serde::Deserialize, serde::Serialize))]
#[cfg_attr(feature = "serde", serde(deny_unknown_fields, rename_all = "camelCase"))]
pub struct From {
    #[cfg_attr(feature = "serde", serde(default))]
    pub source: Source,
}

#[derive(Debug, Clone, Default, PartialEq)]
#[cfg_attr(feature = "serde", derive(serde::Deserialize, serde::Serialize))]
#[cfg_attr(feature = "serde", serde(deny_unknown_fields, rename_all = "camelCase"))]
pub struct To {
    #[cfg_attr(feature = "serde", serde(default))]
    pub operation: Operation,
}

/// Each list is OR-ed; the lists are AND-ed. An empty or absent list constrains nothing.
#[derive(Debug, Clone, Default, PartialEq)]
#[cfg_attr(feature = "serde", derive(serde::Deserialize, serde::Serialize))]
#[cfg_attr(feature = "serde", serde(deny_unknown_fields, rename_all = "camelCase"))]
pub struct Source {
    #[cfg_attr(feature = "serde", serde(default, skip_serializing_if = "Vec::is_empty"))]
    pub principals: Vec<String>,
    #[cfg_attr(feature = "serde", serde(default, skip_serializing_if = "Vec::is_empty"))]
    pub not_principals: Vec<String>,
    #[cfg_attr(feature = "serde", serde(default, skip_serializing_if = "Vec::is_empty"))]
    pub request_principals: Vec<String>,
    #[cfg_attr(feature = "serde", serde(default, skip_serializing_if = "Vec::is_empty"))]
    pub not_request_principals: Vec<String>,
    #[cfg_attr(feature = "serde", serde(default, skip_serializing_if = "Vec::is_empty"))]
    pub namespaces: Vec<String>,
    #[cfg_attr(feature = "serde", serde(default, skip_serializing_if = "Vec::is_empty"))]
    pub not_namespaces: Vec<String>,
    #[cfg_attr(feature = "serde", serde(default, skip_serializing_if = "Vec::is_empty"))]
    pub service_accounts: Vec<String>,
    #[cfg_attr(feature = "serde", serde(default, skip_serializing_if = "Vec::is_empty"))]
    pub not_service_accounts: Vec<String>,
    #[cfg_attr(feature = "serde", serde(default, skip_serializing_if = "Vec::is_empty"))]
    pub trust_domains: Vec<String>,
    #[cfg_attr(feature = "serde", serde(default, skip_serializing_if = "Vec::is_empty"))]
    pub not_trust_domains: Vec<String>,
    #[cfg_attr(feature = "serde", serde(default, skip_serializing_if = "Vec::is_empty"))]
    pub ip_blocks: Vec<String>,
    #[cfg_attr(feature = "serde", serde(default, skip_serializing_if = "Vec::is_empty"))]
    pub not_ip_blocks: Vec<String>,
    #[cfg_attr(feature = "serde", serde(default, skip_serializing_if = "Vec::is_empty"))]
    pub remote_ip_blocks: Vec<String>,
    #[cfg_attr(feature = "serde", serde(default, skip_serializing_if = "Vec::is_empty"))]
    pub not_remote_ip_blocks: Vec<String>,
}

#[derive(Debug, Clone, Default, PartialEq)]
#[cfg_attr(feature = "serde", derive(serde::Deserialize, serde::Serialize))]
#[cfg_attr(feature = "serde", serde(deny_unknown_fields, rename_all = "camelCase"))]
pub struct Operation {
    #[cfg_attr(feature = "serde", serde(default, skip_serializing_if = "Vec::is_empty"))]
    pub hosts: Vec<String>,
    #[cfg_attr(feature = "serde", serde(default, skip_serializing_if = "Vec::is_empty"))]
    pub not_hosts: Vec<String>,
    #[cfg_attr(feature = "serde", serde(default, skip_serializing_if = "Vec::is_empty"))]
    pub ports: Vec<String>,
    #[cfg_attr(feature = "serde", serde(default, skip_serializing_if = "Vec::is_empty"))]
    pub not_ports: Vec<String>,
    #[cfg_attr(feature = "serde", serde(default, skip_serializing_if = "Vec::is_empty"))]
    pub methods: Vec<String>,
    #[cfg_attr(feature = "serde", serde(default, skip_serializing_if = "Vec::is_empty"))]
    pub not_methods: Vec<String>,
    #[cfg_attr(feature = "serde", serde(default, skip_serializing_if = "Vec::is_empty"))]
    pub paths: Vec<String>,
    #[cfg_attr(feature = "serde", serde(default, skip_serializing_if = "Vec::is_empty"))]
    pub not_paths: Vec<String>,
}

#[derive(Debug, Clone, Default, PartialEq)]
#[cfg_attr(feature = "serde", derive(serde::Deserialize, serde::Serialize))]
#[cfg_attr(feature = "serde", serde(deny_unknown_fields, rename_all = "camelCase"))]
pub struct Condition {
    pub key: String,
    #[cfg_attr(feature = "serde", serde(default, skip_serializing_if = "Vec::is_empty"))]
    pub values: Vec<String>,
    #[cfg_attr(feature = "serde", serde(default, skip_serializing_if = "Vec::is_empty"))]
    pub not_values: Vec<String>,
}

/// A PeerAuthentication `spec`. Port keys are strings in JSON (`"8080"`), as in YAML maps.
#[derive(Debug, Clone, Default, PartialEq)]
#[cfg_attr(feature = "serde", derive(serde::Deserialize, serde::Serialize))]
#[cfg_attr(feature = "serde", serde(deny_unknown_fields, rename_all = "camelCase"))]
pub struct PeerAuthenticationSpec {
    #[cfg_attr(feature = "serde", serde(default, skip_serializing_if = "Option::is_none"))]
    pub selector: Option<WorkloadSelector>,
    #[cfg_attr(feature = "serde", serde(default, skip_serializing_if = "Option::is_none"))]
    pub mtls: Option<Mtls>,
    #[cfg_attr(feature = "serde", serde(default, skip_serializing_if = "BTreeMap::is_empty"))]
    pub port_level_mtls: BTreeMap<String, Mtls>,
}

#[derive(Debug, Clone, Copy, Default, PartialEq, Eq)]
#[cfg_attr(feature = "serde", derive(serde::Deserialize, serde::Serialize))]
#[cfg_attr(feature = "serde", serde(deny_unknown_fields, rename_all = "camelCase"))]
pub struct Mtls {
    #[cfg_attr(feature = "serde", serde(default))]
    pub mode: MtlsMode,
}

#[derive(Debug, Clone, Copy, Default, PartialEq, Eq)]
#[cfg_attr(feature = "serde", derive(serde::Deserialize, serde::Serialize))]
#[cfg_attr(feature = "serde", serde(rename_all = "UPPERCASE"))]
pub enum MtlsMode {
    /// Inherit from the parent policy; with none, PERMISSIVE.
    #[default]
    Unset,
    Disable,
    Permissive,
    Strict,
}

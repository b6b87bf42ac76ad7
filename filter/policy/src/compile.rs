//! Validation and compilation of a [`PluginConfig`] into an [`Engine`]. Every refusal names
//! the path of the offending field, e.g. `policies[0].spec.rules[1].to[0].operation.methods[2]`.

use crate::config::{
    default_path_aliases, Action, AuthorizationPolicySpec, Condition, HeadMethod, MethodOverride, MtlsMode, Operation,
    OverrideHeaderNames, PathNormalization, PeerAuthenticationSpec, PeerTrustDomains, PluginConfig, RestletRouting,
    Rule, Source, SpringPrefixes, SpringSuffixes,
};
use crate::error::{refuse, Result};
use crate::model::{
    CompiledPolicy, CompiledRule, Conjunction, Constraint, Engine, Matcher, MethodTable, MtlsTable, RuleIndex,
    ServiceAccount,
};
use crate::normalize::{tomcat_path, MAX_PATH};
use crate::pattern::{Cidr, PathPattern, Pattern, TemplatePart, Wildcard};
use crate::request::{Needs, PolicyName};

const JWT_HINT: &str = "JWT request principals and claims need Istio's RequestAuthentication (a JWT \
                        filter ahead of this one); this filter authorizes by mTLS peer identity only";

/// `path.field`: field paths are built here, once, rather than by a `format!` at every refusal.
#[inline(never)]
fn dotted(path: &str, field: &str) -> String {
    [path, ".", field].concat()
}

/// `path[i]`.
#[inline(never)]
fn item(path: &str, i: usize) -> String {
    format!("{path}[{i}]")
}

/// `read(i, value)` of each value, up to the first refusal. A loop, where `collect` into a
/// `Result` made a copy of its adapter (1 to 5 KB of module) per use.
fn each<T, U>(values: &[T], mut read: impl FnMut(usize, &T) -> Result<U>) -> Result<Box<[U]>> {
    let mut out = Vec::with_capacity(values.len());
    for (i, value) in values.iter().enumerate() {
        out.push(read(i, value)?);
    }
    Ok(out.into())
}

/// Validates `config` and builds the matcher. Nothing is evaluated here.
pub fn compile(config: &PluginConfig) -> Result<Engine> {
    compile_with(config, false)
}

/// Compiles without rule indexes: every rule is scanned. For tests that check the index
/// changes no decision.
#[cfg(feature = "testing")]
pub fn compile_unindexed(config: &PluginConfig) -> Result<Engine> {
    compile_with(config, true)
}

fn compile_with(config: &PluginConfig, no_index: bool) -> Result<Engine> {
    let mut compiler = Compiler {
        methods: Vec::new(),
        headers: Vec::new(),
        needs: Needs::default(),
        aliases: Vec::new(),
        normalise_paths: false,
        denying: false,
        head_as_get: config.head_method == HeadMethod::AsGet,
        restlet_starts_with: config.restlet_routing == RestletRouting::StartsWith,
        spring_prefixes: config.spring_prefixes == SpringPrefixes::ServletPrefixes,
        spring_suffixes: config.spring_suffixes == SpringSuffixes::Registered,
        mesh_only: config.peer_trust_domains == PeerTrustDomains::Mesh,
        mesh_scoped: false,
        no_index,
    };
    let trust_domains = trust_domains(config)?;
    let mtls = mtls_table(config.peer_authentication.as_ref())?;
    if mtls.default != MtlsMode::Disable || mtls.ports.iter().any(|(_, m)| *m != MtlsMode::Disable) {
        compiler.needs.peer = true;
    }
    if mtls.ports.iter().any(|(_, m)| *m != mtls.default) {
        compiler.needs.port_for_plaintext = true;
    }

    let aliases = match config.path_normalization {
        PathNormalization::Tomcat => path_aliases(config)?,
        PathNormalization::None => Vec::new(),
    };
    compiler.aliases = aliases.clone();
    compiler.normalise_paths = config.path_normalization == PathNormalization::Tomcat;

    let (mut deny, mut allow, mut audit, mut dry_run_deny, mut dry_run_allow) =
        (Vec::new(), Vec::new(), Vec::new(), Vec::new(), Vec::new());
    let mut names = Vec::with_capacity(config.policies.len());
    for (index, entry) in config.policies.iter().enumerate() {
        let path = format!("policies[{index}]");
        if entry.name.is_empty() {
            return refuse(&dotted(&path, "name"), "must not be empty");
        }
        if entry.namespace.is_empty() {
            return refuse(&dotted(&path, "namespace"), "must not be empty");
        }
        names.push(PolicyName { name: entry.name.clone(), namespace: entry.namespace.clone() });
        let ctx = PolicyContext { namespace: &entry.namespace, trust_domains: &trust_domains };
        let spec_path = dotted(&path, "spec");
        let action = check_spec_fields(&entry.spec, &spec_path)?;
        compiler.denying = matches!(action, Action::Deny | Action::Audit);
        let rules = compiler.rules(&entry.spec, &spec_path, &ctx)?;
        // A doubtful identity counts as a match for DENY and AUDIT: no namespace keys there.
        let rule_index = if compiler.no_index { None } else { RuleIndex::build(&rules, action == Action::Allow) };
        let compiled = CompiledPolicy { index, rules, rule_index };
        match (action, entry.dry_run) {
            (Action::Allow, false) => allow.push(compiled),
            (Action::Allow, true) => dry_run_allow.push(compiled),
            (Action::Deny, false) => deny.push(compiled),
            (Action::Deny, true) => dry_run_deny.push(compiled),
            (Action::Audit, false) => audit.push(compiled),
            (Action::Audit, true) => {
                return refuse(
                    &dotted(&path, "dryRun"),
                    "dry-run applies to ALLOW and DENY policies; AUDIT never enforces anyway",
                )
            }
            // check_spec_fields refused CUSTOM with its path already.
            (Action::Custom, _) => return refuse(&dotted(&spec_path, "action"), "CUSTOM is not supported"),
        }
    }
    let mut override_headers = Vec::new();
    let loose = config.override_header_names == OverrideHeaderNames::UnderscoreAsDash;
    if compiler.needs.method && config.method_override != MethodOverride::Ignore {
        for name in OVERRIDE_HEADERS {
            // A look-alike name is read into an entry of its own, so that a rule's
            // `request.headers[...]` on the same name stays exact.
            let index = if loose && compiler.headers.iter().any(|h| h == name) {
                compiler.headers.push(name.to_string());
                compiler.headers.len() - 1
            } else {
                compiler.header(name)
            };
            override_headers.push(index);
        }
        compiler.needs.query = true;
    }
    let mut loose_headers = vec![false; compiler.headers.len()];
    if loose {
        for &i in &override_headers {
            loose_headers[i] = true;
        }
    }
    Ok(Engine {
        path_mode: config.path_normalization,
        aliases: aliases.into_iter().map(|(f, t)| (f.into_boxed_slice(), t.into_boxed_slice())).collect(),
        method_override: config.method_override,
        tunnel_decoding: config.tunnel_decoding,
        override_headers: override_headers.into(),
        loose_headers: loose_headers.into(),
        mtls,
        deny: deny.into(),
        allow: allow.into(),
        audit: audit.into(),
        dry_run_deny: dry_run_deny.into(),
        dry_run_allow: dry_run_allow.into(),
        names: names.into(),
        methods: MethodTable::new(&compiler.methods),
        header_names: compiler.headers.into_iter().map(String::into_boxed_str).collect(),
        needs: compiler.needs,
        trust_domains: trust_domains.iter().map(|t| t.as_bytes().into()).collect(),
        mesh_scoped: compiler.mesh_scoped,
        config_digest: config_digest(config.config_digest.as_deref())?,
        observe: config.observe,
    })
}

/// 1 to 13 hex digits: at most 52 bits, which a Prometheus sample (a double) holds exactly.
fn config_digest(digest: Option<&str>) -> Result<Option<u64>> {
    let Some(hex) = digest else { return Ok(None) };
    if hex.is_empty() || hex.len() > 13 || !hex.bytes().all(|b| b.is_ascii_hexdigit()) {
        return refuse("configDigest", format!("'{hex}' is not 1 to 13 hex digits"));
    }
    Ok(u64::from_str_radix(hex, 16).ok())
}

fn trust_domains(config: &PluginConfig) -> Result<Vec<String>> {
    let mut all = vec![config.trust_domain.clone()];
    all.extend(config.trust_domain_aliases.iter().cloned());
    for (i, td) in all.iter().enumerate() {
        let path = if i == 0 { "trustDomain".to_string() } else { format!("trustDomainAliases[{}]", i - 1) };
        if td.is_empty() || td.contains('/') || td.contains('*') {
            return refuse(&path, format!("'{td}' is not a trust domain (non-empty, no '/' or '*')"));
        }
    }
    Ok(all)
}

fn mtls_table(spec: Option<&PeerAuthenticationSpec>) -> Result<MtlsTable> {
    let Some(spec) = spec else {
        return Ok(MtlsTable { default: MtlsMode::Permissive, ports: Box::new([]) });
    };
    let resolve = |mode: MtlsMode, parent: MtlsMode| {
        if mode == MtlsMode::Unset {
            parent
        } else {
            mode
        }
    };
    let default = resolve(spec.mtls.map(|m| m.mode).unwrap_or_default(), MtlsMode::Permissive);
    let mut ports = Vec::new();
    for (key, mtls) in &spec.port_level_mtls {
        let path = format!("peerAuthentication.portLevelMtls.{key}");
        let port = parse_port(key, &path)?;
        ports.push((port, resolve(mtls.mode, default)));
    }
    Ok(MtlsTable { default, ports: ports.into() })
}

fn parse_port(text: &str, path: &str) -> Result<u16> {
    match text.parse::<u16>() {
        Ok(p) if p > 0 && !text.starts_with('+') && !text.starts_with('0') => Ok(p),
        _ => refuse(path, format!("'{text}' is not a port (1-65535)")),
    }
}

/// Refuses the spec fields a sidecar filter cannot honour and returns the action.
fn check_spec_fields(spec: &AuthorizationPolicySpec, path: &str) -> Result<Action> {
    if spec.target_ref.is_some() {
        return refuse(
            &dotted(path, "targetRef"),
            "targets a gateway or waypoint; a sidecar filter applies to its own workload (use selector)",
        );
    }
    if spec.target_refs.is_some() {
        return refuse(
            &dotted(path, "targetRefs"),
            "targets a gateway or waypoint; a sidecar filter applies to its own workload (use selector)",
        );
    }
    if spec.provider.is_some() {
        return refuse(
            &dotted(path, "provider"),
            "providers belong to action CUSTOM (ext_authz), which this filter does not run",
        );
    }
    let action = spec.action.unwrap_or(Action::Allow);
    if action == Action::Custom {
        return refuse(&dotted(path, "action"), "CUSTOM delegates to an external authorizer (ext_authz), which this filter does not run; use ALLOW, DENY or AUDIT");
    }
    Ok(action)
}

struct PolicyContext<'a> {
    namespace: &'a str,
    trust_domains: &'a [String],
}

struct Compiler {
    methods: Vec<Pattern>,
    headers: Vec<String>,
    needs: Needs,
    aliases: Vec<(Vec<u8>, Vec<u8>)>,
    /// Policy paths must be written in the normal form requests are matched in.
    normalise_paths: bool,
    /// The policy being compiled denies (or reports) what its rules match: DENY and AUDIT.
    /// Where a match takes access away (here the plain fields, in ALLOW policies the `not`
    /// ones), methods and paths are widened to every form XNAT serves the same way.
    denying: bool,
    /// `headMethod: AS_GET`: a widened method list that matches GET matches HEAD.
    head_as_get: bool,
    /// `restletRouting: STARTS_WITH`: a widened path under Restlet's prefixes takes in the
    /// paths below it.
    restlet_starts_with: bool,
    /// `springPrefixes: SERVLET_PREFIXES`: a widened path under one prefix of the Spring
    /// dispatcher also matches under the others.
    spring_prefixes: bool,
    /// `springSuffixes: REGISTERED`: a widened Spring path also matches with a trailing `/`
    /// and with the registered extensions.
    spring_suffixes: bool,
    /// `peerTrustDomains: MESH`: a namespace or service account that grants access when it
    /// matches matches only a peer of the mesh's trust domains.
    mesh_only: bool,
    /// Some rule has such a matcher.
    mesh_scoped: bool,
    no_index: bool,
}

/// What Spring's `PatternsRequestCondition` adds to a pattern with XNAT's settings: the
/// registered extensions (suffix pattern matching) and a trailing slash.
const SPRING_SUFFIXES: [&[u8]; 3] = [b"/", b".json", b".xml"];

/// The same exact path or template with each of [`SPRING_SUFFIXES`], if it is under a Spring
/// prefix and does not end in `/` (Spring adds neither to such a pattern).
fn spring_suffixed(pattern: &PathPattern) -> Vec<PathPattern> {
    let under_spring = |p: &[u8]| SPRING_PREFIXES.iter().any(|s| p.starts_with(s));
    match pattern {
        PathPattern::Plain(Pattern::Exact(e)) if under_spring(e) && !e.ends_with(b"/") => SPRING_SUFFIXES
            .iter()
            .map(|suffix| PathPattern::Plain(Pattern::Exact([&e[..], suffix].concat().into())))
            .collect(),
        PathPattern::Template { parts, decoded } => {
            let under = matches!(parts.first(), Some(TemplatePart::Literal(l)) if under_spring(l));
            let ends_open = match parts.last() {
                Some(TemplatePart::Literal(l)) => l.ends_with(b"/"),
                Some(TemplatePart::Segments) | None => true,
                Some(TemplatePart::Segment) => false,
            };
            if !under || ends_open {
                return Vec::new();
            }
            SPRING_SUFFIXES
                .iter()
                .map(|suffix| {
                    let mut suffixed = parts.to_vec();
                    match suffixed.last_mut() {
                        Some(TemplatePart::Literal(l)) => *l = [&l[..], suffix].concat().into(),
                        _ => suffixed.push(TemplatePart::Literal((*suffix).into())),
                    }
                    PathPattern::Template { parts: suffixed.into(), decoded: *decoded }
                })
                .collect()
        }
        _ => Vec::new(),
    }
}

/// Adds the widened patterns that are not there yet.
fn extend_unique(patterns: &mut Vec<PathPattern>, more: Vec<PathPattern>) {
    for p in more {
        if !patterns.contains(&p) {
            patterns.push(p);
        }
    }
}

/// The prefixes XNAT maps its Spring dispatcher servlet to; handlers match the path after it.
const SPRING_PREFIXES: [&[u8]; 4] = [b"/xapi/", b"/admin/", b"/pages/", b"/schemas/"];

/// The same pattern under each other prefix of the Spring dispatcher, if it starts with one.
fn spring_twins(pattern: &PathPattern) -> Vec<PathPattern> {
    let twins = |literal: &[u8]| -> Vec<Box<[u8]>> {
        let Some(own) = SPRING_PREFIXES.iter().find(|p| literal.starts_with(p)) else { return Vec::new() };
        let rest = &literal[own.len()..];
        SPRING_PREFIXES.iter().filter(|p| *p != own).map(|p| [*p, rest].concat().into()).collect()
    };
    match pattern {
        PathPattern::Plain(Pattern::Exact(e)) => {
            twins(e).into_iter().map(|t| PathPattern::Plain(Pattern::Exact(t))).collect()
        }
        PathPattern::Plain(Pattern::Prefix(p)) => {
            twins(p).into_iter().map(|t| PathPattern::Plain(Pattern::Prefix(t))).collect()
        }
        PathPattern::Template { parts, decoded } => match parts.first() {
            Some(TemplatePart::Literal(first)) => twins(first)
                .into_iter()
                .map(|t| {
                    let mut twin = parts.to_vec();
                    twin[0] = TemplatePart::Literal(t);
                    PathPattern::Template { parts: twin.into(), decoded: *decoded }
                })
                .collect(),
            _ => Vec::new(),
        },
        _ => Vec::new(),
    }
}

/// Where XNAT's Restlet application answers (`/REST/` is an alias of `/data/`, but with
/// `pathNormalization: NONE` aliases are not applied).
const RESTLET_PREFIXES: [&[u8]; 2] = [b"/data/", b"/REST/"];

/// Restlet's `MODE_STARTS_WITH` routing: a path or template under [`RESTLET_PREFIXES`] that
/// does not already take in what is below it also matches `path/` and `path/...`.
fn restlet_below(pattern: &PathPattern) -> Option<PathPattern> {
    let under_restlet = |p: &[u8]| RESTLET_PREFIXES.iter().any(|r| p.starts_with(r));
    match pattern {
        PathPattern::Plain(Pattern::Exact(p)) if under_restlet(p) => {
            let below: Box<[u8]> = if p.ends_with(b"/") { p.clone() } else { [&p[..], b"/"].concat().into() };
            Some(PathPattern::Plain(Pattern::Prefix(below)))
        }
        PathPattern::Template { parts, decoded } => {
            let (TemplatePart::Literal(first), Some(last)) = (parts.first()?, parts.last()) else { return None };
            let open_ended =
                matches!(last, TemplatePart::Segments) || matches!(last, TemplatePart::Literal(l) if l.ends_with(b"/"));
            if !under_restlet(first) || open_ended {
                return None;
            }
            let mut below = parts.to_vec();
            below.extend([TemplatePart::Literal(b"/".as_slice().into()), TemplatePart::Segments]);
            Some(PathPattern::Template { parts: below.into(), decoded: *decoded })
        }
        _ => None,
    }
}

/// Headers that ask a server for another method than the request line's.
const OVERRIDE_HEADERS: [&str; 3] = ["x-http-method-override", "x-http-method", "x-method-override"];

/// Validates `pathAliases` (default: XNAT's). An alias maps a prefix to a prefix no longer than
/// itself, both absolute and ending in '/', with no wildcard; a target may not itself be aliased.
fn path_aliases(config: &PluginConfig) -> Result<Vec<(Vec<u8>, Vec<u8>)>> {
    let given = config.path_aliases.clone().unwrap_or_else(default_path_aliases);
    let mut out: Vec<(Vec<u8>, Vec<u8>)> = Vec::new();
    for (i, a) in given.iter().enumerate() {
        let path = format!("pathAliases[{i}]");
        for (field, v) in [("from", &a.from), ("to", &a.to)] {
            let ok = v.starts_with('/') && v.ends_with('/') && !v.contains(['*', '{', '}', '?', '#', ';', '%', '\\']);
            if !ok {
                return refuse(
                    &dotted(&path, field),
                    format!("'{v}' must be a plain path prefix starting and ending with '/'"),
                );
            }
            let mut buf = [0u8; MAX_PATH];
            if tomcat_path(v.as_bytes(), &mut buf).map(|n| &buf[..n] != v.as_bytes()).unwrap_or(true) {
                return refuse(
                    &dotted(&path, field),
                    format!("'{v}' is not in normal form (no '//', '.' or '..' segments)"),
                );
            }
        }
        if a.to.len() > a.from.len() {
            return refuse(&dotted(&path, "to"), "an alias may not lengthen the path ('to' longer than 'from')");
        }
        out.push((a.from.clone().into_bytes(), a.to.clone().into_bytes()));
    }
    for (i, (_, to)) in out.iter().enumerate() {
        if let Some(j) = out.iter().position(|(from, _)| to.starts_with(from)) {
            return refuse(
                &format!("pathAliases[{i}].to"),
                format!("is itself aliased by pathAliases[{j}]; map straight to the final prefix"),
            );
        }
    }
    Ok(out)
}

impl Compiler {
    fn rules(
        &mut self,
        spec: &AuthorizationPolicySpec,
        path: &str,
        ctx: &PolicyContext<'_>,
    ) -> Result<Box<[CompiledRule]>> {
        // No `rules` field: the policy matches nothing (an ALLOW policy then allows nothing).
        let Some(rules) = &spec.rules else {
            return Ok(Box::new([]));
        };
        each(rules, |r, rule| self.rule(rule, &format!("{path}.rules[{r}]"), ctx))
    }

    fn rule(&mut self, rule: &Rule, path: &str, ctx: &PolicyContext<'_>) -> Result<CompiledRule> {
        let mut from = Vec::new();
        for (i, f) in rule.from.iter().flatten().enumerate() {
            from.push(self.source(&f.source, &format!("{path}.from[{i}].source"), ctx)?);
        }
        let mut to = Vec::new();
        for (i, t) in rule.to.iter().flatten().enumerate() {
            to.push(self.operation(&t.operation, &format!("{path}.to[{i}].operation"))?);
        }
        let mut when = Vec::new();
        for (i, c) in rule.when.iter().flatten().enumerate() {
            self.condition(c, &format!("{path}.when[{i}]"), ctx, &mut when)?;
        }
        Ok(CompiledRule { from: from.into(), to: to.into(), when: when.into() })
    }

    fn source(&mut self, s: &Source, path: &str, ctx: &PolicyContext<'_>) -> Result<Conjunction> {
        if !s.request_principals.is_empty() {
            return refuse(&dotted(path, "requestPrincipals"), JWT_HINT);
        }
        if !s.not_request_principals.is_empty() {
            return refuse(&dotted(path, "notRequestPrincipals"), JWT_HINT);
        }
        let has_sa = !s.service_accounts.is_empty() || !s.not_service_accounts.is_empty();
        if has_sa
            && (!s.principals.is_empty()
                || !s.not_principals.is_empty()
                || !s.namespaces.is_empty()
                || !s.not_namespaces.is_empty())
        {
            return refuse(
                &dotted(path, "serviceAccounts"),
                "cannot be combined with principals or namespaces in one source (Istio refuses it too)",
            );
        }
        let mut out = Vec::new();
        let nonempty = Wildcard::NonEmpty;
        self.pair(&mut out, path, [("principals", &s.principals), ("notPrincipals", &s.not_principals)], |_, v, p| {
            Ok(Matcher::Principal(principals(v, p, ctx)?))
        })?;
        for (negate, field, values) in
            [(false, "namespaces", &s.namespaces), (true, "notNamespaces", &s.not_namespaces)]
        {
            if !values.is_empty() {
                let p = patterns(values, &dotted(path, field), nonempty, false)?;
                let matcher = if self.scoped(negate) { Matcher::MeshNamespace(p) } else { Matcher::Namespace(p) };
                self.push(&mut out, negate, matcher);
            }
        }
        let accounts =
            [(false, "serviceAccounts", &s.service_accounts), (true, "notServiceAccounts", &s.not_service_accounts)];
        for (negate, field, values) in accounts {
            if !values.is_empty() {
                let a = service_accounts(values, &dotted(path, field), ctx)?;
                let matcher =
                    if self.scoped(negate) { Matcher::MeshServiceAccount(a) } else { Matcher::ServiceAccount(a) };
                self.push(&mut out, negate, matcher);
            }
        }
        let domains = [("trustDomains", &s.trust_domains), ("notTrustDomains", &s.not_trust_domains)];
        self.pair(&mut out, path, domains, |_, v, p| Ok(Matcher::TrustDomain(patterns(v, p, nonempty, false)?)))?;
        self.pair(&mut out, path, [("ipBlocks", &s.ip_blocks), ("notIpBlocks", &s.not_ip_blocks)], |_, v, p| {
            Ok(Matcher::SourceIp(cidrs(v, p)?))
        })?;
        let remote = [("remoteIpBlocks", &s.remote_ip_blocks), ("notRemoteIpBlocks", &s.not_remote_ip_blocks)];
        self.pair(&mut out, path, remote, |_, v, p| Ok(Matcher::RemoteIp(cidrs(v, p)?)))?;
        if out.is_empty() {
            return refuse(
                path,
                "must not be empty (Istio refuses an empty source; omit `from` to match every source)",
            );
        }
        Ok(out.into())
    }

    fn operation(&mut self, o: &Operation, path: &str) -> Result<Conjunction> {
        let mut out = Vec::new();
        self.pair(&mut out, path, [("hosts", &o.hosts), ("notHosts", &o.not_hosts)], |_, v, p| {
            Ok(Matcher::Host(patterns(v, p, Wildcard::Present, true)?))
        })?;
        self.pair(&mut out, path, [("ports", &o.ports), ("notPorts", &o.not_ports)], |_, v, p| {
            Ok(Matcher::Port(ports(v, p)?))
        })?;
        for (negate, field, values) in [(false, "methods", &o.methods), (true, "notMethods", &o.not_methods)] {
            if !values.is_empty() {
                let widen = self.denying != negate;
                let mask = self.methods(values, &dotted(path, field), widen)?;
                self.push(&mut out, negate, Matcher::Method(mask));
            }
        }
        for (negate, field, values) in [(false, "paths", &o.paths), (true, "notPaths", &o.not_paths)] {
            if values.is_empty() {
                continue;
            }
            let p = dotted(path, field);
            let canonical: Vec<String> = values
                .iter()
                .enumerate()
                .map(|(i, value)| self.canonical_path(value, &item(&p, i)))
                .collect::<Result<_>>()?;
            let mut patterns = paths(&canonical, &p, self.normalise_paths)?.into_vec();
            if self.denying != negate && self.spring_prefixes {
                let twins: Vec<PathPattern> = patterns.iter().flat_map(spring_twins).collect();
                extend_unique(&mut patterns, twins);
            }
            if self.denying != negate && self.spring_suffixes {
                let suffixed: Vec<PathPattern> = patterns.iter().flat_map(spring_suffixed).collect();
                extend_unique(&mut patterns, suffixed);
            }
            if self.denying != negate && self.restlet_starts_with {
                let below: Vec<PathPattern> = patterns.iter().filter_map(restlet_below).collect();
                extend_unique(&mut patterns, below);
            }
            self.push(&mut out, negate, Matcher::Path(patterns.into()));
        }
        if out.is_empty() {
            return refuse(
                path,
                "must not be empty (Istio refuses an empty operation; omit `to` to match every operation)",
            );
        }
        Ok(out.into())
    }

    fn condition(
        &mut self,
        c: &Condition,
        path: &str,
        ctx: &PolicyContext<'_>,
        out: &mut Vec<Constraint>,
    ) -> Result<()> {
        if c.values.is_empty() && c.not_values.is_empty() {
            return refuse(path, "needs `values` or `notValues`");
        }
        let key = c.key.as_str();
        let key_path = dotted(path, "key");
        for (negate, field, values) in [(false, "values", &c.values), (true, "notValues", &c.not_values)] {
            if values.is_empty() {
                continue;
            }
            let vpath = dotted(path, field);
            let matcher = match key {
                "source.ip" => Matcher::SourceIp(cidrs(values, &vpath)?),
                "remote.ip" => Matcher::RemoteIp(cidrs(values, &vpath)?),
                "destination.ip" => Matcher::DestinationIp(cidrs(values, &vpath)?),
                "source.namespace" => {
                    let p = patterns(values, &vpath, Wildcard::NonEmpty, false)?;
                    if self.scoped(negate) {
                        Matcher::MeshNamespace(p)
                    } else {
                        Matcher::Namespace(p)
                    }
                }
                "source.principal" => Matcher::Principal(principals(values, &vpath, ctx)?),
                "destination.port" => Matcher::Port(ports(values, &vpath)?),
                "connection.sni" => Matcher::Sni(patterns(values, &vpath, Wildcard::NonEmpty, false)?),
                _ if key.starts_with("request.headers[") => {
                    let name = key
                        .strip_prefix("request.headers[")
                        .and_then(|k| k.strip_suffix(']'))
                        .filter(|n| !n.is_empty() && n.bytes().all(is_token_byte));
                    let Some(name) = name else {
                        return refuse(&key_path, format!("'{key}' is not request.headers[<header name>]"));
                    };
                    let index = self.header(name);
                    Matcher::Header(index, patterns(values, &vpath, Wildcard::Present, false)?)
                }
                _ if key.starts_with("request.auth.") => return refuse(&key_path, JWT_HINT),
                _ if key.starts_with("experimental.") => {
                    return refuse(&key_path, "experimental keys read Envoy filter metadata this filter does not see")
                }
                _ => {
                    return refuse(&key_path, format!(
                        "unknown condition key '{key}'; supported: source.ip, remote.ip, destination.ip, source.namespace, \
                         source.principal, destination.port, connection.sni, request.headers[<name>]"
                    ))
                }
            };
            self.push(out, negate, matcher);
        }
        Ok(())
    }

    /// Compiles a field and its `not` twin (`principals`, `notPrincipals`): each non-empty list
    /// becomes one constraint, the twin's negated.
    fn pair(
        &mut self,
        out: &mut Vec<Constraint>,
        path: &str,
        fields: [(&str, &Vec<String>); 2],
        build: impl Fn(&mut Self, &[String], &str) -> Result<Matcher>,
    ) -> Result<()> {
        for (negate, (field, values)) in [false, true].into_iter().zip(fields) {
            if !values.is_empty() {
                let matcher = build(self, values, &dotted(path, field))?;
                self.push(out, negate, matcher);
            }
        }
        Ok(())
    }

    /// Whether a namespace or service-account list on this side of the rule is read in the
    /// mesh's trust domains only. Widen what denies, never what allows: the scoped match is
    /// the narrower one, so it is taken where the field's match grants access, and Istio's
    /// any-domain match stays where it takes access away. For a peer in namespace `x`
    /// (service accounts alike), with `peerTrustDomains: MESH`:
    ///
    /// | rule                        | matcher  | mesh or alias peer | foreign peer | Istio, foreign |
    /// |-----------------------------|----------|--------------------|--------------|----------------|
    /// | ALLOW `namespaces: [x]`     | mesh     | allowed            | **denied**   | allowed        |
    /// | ALLOW `notNamespaces: [x]`  | any      | denied             | denied       | denied         |
    /// | DENY `namespaces: [x]`      | any      | denied             | denied       | denied         |
    /// | DENY `notNamespaces: [x]`   | mesh     | allowed            | **denied**   | allowed        |
    ///
    /// A peer in another namespace `y` is decided as in Istio by every row (ALLOW
    /// `notNamespaces: [x]` still grants a foreign peer in `y`, as Istio does). AUDIT counts as
    /// DENY and dry-run policies as their action; the `source.namespace` condition's `values`
    /// and `notValues` follow the same rows. With `ANY` every row is Istio's.
    fn scoped(&mut self, negate: bool) -> bool {
        let scoped = self.mesh_only && self.denying == negate;
        self.mesh_scoped |= scoped;
        scoped
    }

    fn push(&mut self, out: &mut Vec<Constraint>, negate: bool, matcher: Matcher) {
        matcher.add_needs(&mut self.needs);
        out.push(Constraint { negate, matcher });
    }

    /// A policy path as requests are matched: in normal form (refused otherwise, since it could
    /// never match), with aliased prefixes rewritten. A wildcard prefix that stops inside an
    /// alias's prefix (`/RE*`, `/data/arch*`) would match the raw form but not the aliased one,
    /// so it is refused.
    fn canonical_path(&self, value: &str, path: &str) -> Result<String> {
        if !self.normalise_paths || value == "*" || value.starts_with('*') {
            return Ok(value.to_string());
        }
        let literal_end = value.find(['*', '{']).unwrap_or(value.len());
        let literal = &value[..literal_end];
        if literal.starts_with('/') {
            let mut buf = [0u8; MAX_PATH];
            // A literal cut at a wildcard may end in a partial segment; check what is complete.
            let complete = &literal[..literal.rfind('/').map_or(0, |i| i + 1)];
            let normal = if literal_end == value.len() { literal } else { complete };
            match tomcat_path(normal.as_bytes(), &mut buf) {
                Ok(n) if &buf[..n] == normal.as_bytes() => {}
                Ok(n) => {
                    return refuse(
                        path,
                        format!(
                            "'{value}' can never match: requests are matched after normalisation, write it as '{}{}'",
                            String::from_utf8_lossy(&buf[..n]),
                            &value[normal.len()..]
                        ),
                    )
                }
                Err(e) => return refuse(path, format!("'{value}' can never match: {}", e.as_str())),
            }
        }
        let mut current = value.to_string();
        for _ in 0..=self.aliases.len() {
            let lit_end = current.find(['*', '{']).unwrap_or(current.len());
            let lit = &current.as_bytes()[..lit_end];
            let has_wildcard = lit_end < current.len();
            if let Some((from, to)) = self.aliases.iter().find(|(from, _)| lit.starts_with(from)) {
                current = format!("{}{}", String::from_utf8_lossy(to), &current[from.len()..]);
                continue;
            }
            if has_wildcard {
                if let Some((from, to)) =
                    self.aliases.iter().find(|(from, to)| from.starts_with(lit) && !to.starts_with(lit))
                {
                    return refuse(
                        path,
                        format!(
                        "'{value}' stops inside the aliased prefix '{}' (served as '{}'); spell the prefix out in full",
                        String::from_utf8_lossy(from),
                        String::from_utf8_lossy(to)
                    ),
                    );
                }
            }
            break;
        }
        Ok(current)
    }

    fn header(&mut self, name: &str) -> usize {
        let lower = name.to_ascii_lowercase();
        match self.headers.iter().position(|h| *h == lower) {
            Some(i) => i,
            None => {
                self.headers.push(lower);
                self.headers.len() - 1
            }
        }
    }

    /// Interns each method pattern once; a rule keeps a bit mask over the interned set.
    /// `widen`: the list takes access away when it matches, so under `headMethod: AS_GET` a
    /// list that matches GET matches HEAD too (XNAT runs GET's code for HEAD).
    fn methods(&mut self, values: &[String], path: &str, widen: bool) -> Result<u64> {
        let mut mask = 0u64;
        for (i, value) in values.iter().enumerate() {
            let vpath = item(path, i);
            check_wildcards(value, &vpath)?;
            let bare = value.trim_matches('*');
            let is_method_byte = |b: u8| is_token_byte(b) && !b.is_ascii_lowercase();
            if value != "*" && !bare.bytes().all(is_method_byte) {
                let hint = if bare.bytes().any(|b| b.is_ascii_lowercase()) {
                    format!(
                        "; HTTP methods are case-sensitive, so Istio would never match it: write '{}'",
                        value.to_ascii_uppercase()
                    )
                } else {
                    String::new()
                };
                return refuse(&vpath, format!("'{value}' is not an HTTP method (an upper-case token){hint}"));
            }
            let pattern = Pattern::parse(value, Wildcard::Present);
            mask |= self.method_bit(pattern, &vpath)?;
        }
        if widen && self.head_as_get {
            let matched = |c: &Self, method: &[u8]| {
                c.methods.iter().enumerate().any(|(bit, p)| mask & 1 << bit != 0 && p.matches(Some(method)))
            };
            if matched(self, b"GET") && !matched(self, b"HEAD") {
                mask |= self.method_bit(Pattern::Exact(b"HEAD".as_slice().into()), path)?;
            }
        }
        Ok(mask)
    }

    /// The bit of an interned method pattern, interning it on first use.
    fn method_bit(&mut self, pattern: Pattern, path: &str) -> Result<u64> {
        let bit = match self.methods.iter().position(|p| *p == pattern) {
            Some(bit) => bit,
            None if self.methods.len() < 64 => {
                self.methods.push(pattern);
                self.methods.len() - 1
            }
            None => return refuse(path, "more than 64 distinct method patterns in one configuration"),
        };
        Ok(1 << bit)
    }
}

/// RFC 9110 `tchar`: what methods and header names are made of.
fn is_token_byte(b: u8) -> bool {
    b.is_ascii_alphanumeric() || b"!#$%&'*+-.^_`|~".contains(&b)
}

/// Istio allows `*` only alone, as a prefix or as a suffix.
fn check_wildcards(value: &str, path: &str) -> Result<()> {
    if value.is_empty() {
        return refuse(path, "must not be empty");
    }
    let inner = value.strip_prefix('*').unwrap_or(value);
    let inner = inner.strip_suffix('*').unwrap_or(inner);
    if inner.contains('*') || (value.len() > 1 && value.starts_with('*') && value.ends_with('*')) {
        return refuse(path, format!("'{value}': '*' is allowed only alone, as a prefix, or as a suffix"));
    }
    Ok(())
}

fn patterns(values: &[String], path: &str, wildcard: Wildcard, lower: bool) -> Result<Box<[Pattern]>> {
    each(values, |i, v| {
        check_wildcards(v, &item(path, i))?;
        let v = if lower { v.to_ascii_lowercase() } else { v.clone() };
        Ok(Pattern::parse(&v, wildcard))
    })
}

/// Istio principals, matched against the whole peer URI, after Istio's trust-domain rewrite
/// ([`with_mesh_trust_domains`]).
fn principals(values: &[String], path: &str, ctx: &PolicyContext<'_>) -> Result<Box<[Pattern]>> {
    let mut out = Vec::new();
    for (i, value) in values.iter().enumerate() {
        check_wildcards(value, &item(path, i))?;
        if value == "*" {
            out.push(Pattern::NonEmpty);
            continue;
        }
        for v in with_mesh_trust_domains(value, ctx.trust_domains) {
            out.push(match Pattern::parse(&v, Wildcard::NonEmpty) {
                Pattern::Exact(e) => Pattern::Exact(spiffe(&e)),
                Pattern::Prefix(p) => Pattern::Prefix(spiffe(&p)),
                Pattern::Suffix(s) => Pattern::PrefixSuffix(spiffe(b""), s),
                other => other,
            });
        }
    }
    Ok(out.into())
}

/// Istio's `ReplaceTrustDomainAliases`, which every `source.principal` value goes through:
/// a principal `<td>/ns/<ns>/sa/<sa>` (exactly five parts, `td` not `*`) whose domain is
/// `cluster.local` ("this mesh", whatever its real trust domain) or matches one of the mesh's
/// domains stands for that workload in each of them: `td` is replaced by each domain of the
/// mesh, except one the written pattern already matches, which keeps the principal as written.
/// Anything else is kept as written. `mesh` is the trust domain, then its aliases.
fn with_mesh_trust_domains(principal: &str, mesh: &[String]) -> Vec<String> {
    let parts: Vec<&str> = principal.split('/').collect();
    let [td, rest @ ..] = parts.as_slice() else { return vec![principal.to_string()] };
    if parts.len() != 5 || *td == "*" {
        return vec![principal.to_string()];
    }
    let of_this_mesh = *td == "cluster.local" || mesh.iter().any(|m| either_matches(td, m));
    if !of_this_mesh {
        return vec![principal.to_string()];
    }
    let mut out: Vec<String> = Vec::new();
    for domain in mesh {
        let rewritten = if suffix_pattern_matches(domain, td) {
            principal.to_string()
        } else {
            format!("{domain}/{}", rest.join("/"))
        };
        if !out.contains(&rewritten) {
            out.push(rewritten);
        }
    }
    out
}

/// Istio's trust-domain `stringMatch`: equal, or either side a `*`, `x*` or `*x` pattern that
/// matches the other.
fn either_matches(a: &str, b: &str) -> bool {
    a == b
        || b == "*"
        || prefix_pattern_matches(a, b)
        || prefix_pattern_matches(b, a)
        || suffix_pattern_matches(a, b)
        || suffix_pattern_matches(b, a)
}

fn prefix_pattern_matches(value: &str, pattern: &str) -> bool {
    pattern.strip_suffix('*').is_some_and(|p| value.starts_with(p))
}

fn suffix_pattern_matches(value: &str, pattern: &str) -> bool {
    pattern.strip_prefix('*').is_some_and(|p| value.ends_with(p))
}

fn spiffe(rest: &[u8]) -> Box<[u8]> {
    [b"spiffe://".as_slice(), rest].concat().into()
}

/// `ns/sa`, or `sa` in the policy's own namespace. No wildcards, as in Istio.
fn service_accounts(values: &[String], path: &str, ctx: &PolicyContext<'_>) -> Result<Box<[ServiceAccount]>> {
    each(values, |i, v| {
        let (ns, sa) = v.split_once('/').unwrap_or((ctx.namespace, v));
        if ns.is_empty() || sa.is_empty() || sa.contains('/') || v.contains('*') {
            return refuse(
                &item(path, i),
                format!("'{v}' is not a service account ('<namespace>/<name>' or '<name>', no wildcards)"),
            );
        }
        Ok((ns.as_bytes().into(), sa.as_bytes().into()))
    })
}

fn cidrs(values: &[String], path: &str) -> Result<Box<[Cidr]>> {
    each(values, |i, v| Cidr::parse(v).or_else(|m| refuse(&item(path, i), m)))
}

fn ports(values: &[String], path: &str) -> Result<Box<[u16]>> {
    each(values, |i, v| parse_port(v, &item(path, i)))
}

/// `decoded`: the paths are matched as Tomcat decodes them (`pathNormalization: TOMCAT`).
fn paths(values: &[String], path: &str, decoded: bool) -> Result<Box<[PathPattern]>> {
    each(values, |i, v| {
        let vpath = item(path, i);
        if v.contains('{') || v.contains('}') {
            return template(v, &vpath, decoded);
        }
        check_wildcards(v, &vpath)?;
        Ok(PathPattern::Plain(Pattern::parse(v, Wildcard::NonEmpty)))
    })
}

/// Istio's path templates: `{*}` and `{**}` each fill a whole segment.
fn template(value: &str, path: &str, decoded: bool) -> Result<PathPattern> {
    let bad = |why: &str| refuse(path, format!("'{value}' is not a valid path template: {why}"));
    if !value.starts_with('/') {
        return bad("it must start with '/'");
    }
    let mut parts: Vec<TemplatePart> = Vec::new();
    let mut literal = Vec::new();
    let mut saw_segments = false;
    for segment in value[1..].split('/') {
        literal.push(b'/');
        match segment {
            "{*}" | "{**}" => {
                if saw_segments {
                    return bad("'{**}' may appear only once");
                }
                parts.push(TemplatePart::Literal(std::mem::take(&mut literal).into()));
                if segment == "{**}" {
                    saw_segments = true;
                    parts.push(TemplatePart::Segments);
                } else {
                    parts.push(TemplatePart::Segment);
                }
            }
            s if s.contains(['{', '}', '*']) => return bad("operators must fill a whole segment, as {*} or {**}"),
            s => literal.extend_from_slice(s.as_bytes()),
        }
    }
    if !literal.is_empty() {
        parts.push(TemplatePart::Literal(literal.into()));
    }
    Ok(PathPattern::Template { parts: parts.into(), decoded })
}

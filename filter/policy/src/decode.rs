//! Turns a parsed JSON document into a [`PluginConfig`], field by field. Every refusal carries
//! the path of the value at fault (`policies[0].spec.rules[1].to[0].operation.methods`), and
//! every object refuses members it does not know and members given twice: a field silently
//! ignored in an ALLOW rule would widen access.
//!
//! It runs once per configuration, so it is written for size: its functions are
//! `#[inline(never)]`, `variant` has one non-generic body and `list` is a loop, not a `collect`
//! into a `Result`. Inlined and generic, they made the Wasm module 14 KB larger.

use std::cell::RefCell;
use std::collections::BTreeMap;

use crate::config::{
    Action, AuthorizationPolicySpec, Condition, From, HeadMethod, MethodOverride, Mtls, MtlsMode, ObserveMode,
    Operation, OverrideHeaderNames, PathAlias, PathNormalization, PeerAuthenticationSpec, PeerTrustDomains,
    PluginConfig, PolicyEntry, RestletRouting, Rule, Source, SpringPrefixes, SpringSuffixes, To, TunnelDecoding,
    Unsupported, WorkloadSelector,
};
use crate::error::{ConfigError, Result, DOCUMENT};
use crate::json::Json;

#[inline(never)]
fn refuse<T>(path: &str, message: String) -> Result<T> {
    crate::error::refuse(if path.is_empty() { DOCUMENT } else { path }, message)
}

#[inline(never)]
fn field_path(path: &str, name: &str) -> String {
    if path.is_empty() {
        name.to_string()
    } else {
        format!("{path}.{name}")
    }
}

#[inline(never)]
fn type_error<T>(value: &Json, path: &str, expected: &str) -> Result<T> {
    refuse(path, format!("invalid type: {}, expected {expected}", value.kind()))
}

#[inline(never)]
fn quoted_list(names: &[&str]) -> String {
    names.iter().map(|n| format!("`{n}`")).collect::<Vec<_>>().join(", ")
}

/// The members of an object, read by name. The names read are the fields the object has:
/// [`finish`](Members::finish) refuses any other member, and any member given twice.
///
/// A read that fails keeps its error and gives a default, so that every field is still asked
/// for; `finish` then reports, in this order, the first member that is unknown or repeated,
/// and the first error a read met.
struct Members<'a> {
    path: &'a str,
    members: &'a [(String, Json)],
    /// Every name asked for, in the order first asked.
    read: RefCell<Vec<&'static str>>,
    error: RefCell<Option<ConfigError>>,
}

impl<'a> Members<'a> {
    #[inline(never)]
    fn of(value: &'a Json, path: &'a str) -> Result<Members<'a>> {
        let Json::Object(members) = value else { return type_error(value, path, "an object") };
        Ok(Members { path, members, read: RefCell::default(), error: RefCell::default() })
    }

    /// Keeps the first error met.
    #[inline(never)]
    fn fail(&self, error: ConfigError) {
        self.error.borrow_mut().get_or_insert(error);
    }

    #[inline(never)]
    fn keep<T>(&self, result: Result<T>) -> Option<T> {
        result.map_err(|e| self.fail(e)).ok()
    }

    /// A member's value (`null` included) and its path; the name counts as read.
    #[inline(never)]
    fn get(&self, name: &'static str) -> Option<(&'a Json, String)> {
        let mut read = self.read.borrow_mut();
        if !read.contains(&name) {
            read.push(name);
        }
        self.members.iter().find(|(n, _)| n == name).map(|(_, value)| (value, field_path(self.path, name)))
    }

    /// Reports a missing `name` ahead of every error a read meets.
    #[inline(never)]
    fn missing_first(&self, name: &str) {
        if !self.members.iter().any(|(n, _)| n == name) {
            self.fail(self.missing(name));
        }
    }

    #[inline(never)]
    fn missing(&self, name: &str) -> ConfigError {
        let path = if self.path.is_empty() { DOCUMENT } else { self.path };
        ConfigError { path: path.to_string(), message: format!("missing field `{name}`") }
    }

    #[inline(never)]
    fn required<T: Default>(&self, name: &'static str, read: impl Fn(&Json, &str) -> Result<T>) -> T {
        match self.get(name) {
            Some((value, path)) => self.keep(read(value, &path)).unwrap_or_default(),
            None => {
                self.fail(self.missing(name));
                T::default()
            }
        }
    }

    /// A field with a default when absent; `null` is read like any value (a type error).
    #[inline(never)]
    fn present<T>(&self, name: &'static str, read: impl Fn(&Json, &str) -> Result<T>) -> Option<T> {
        self.get(name).and_then(|(value, path)| self.keep(read(value, &path)))
    }

    /// An optional field: absent or `null` reads as `None`, as serde reads an `Option`.
    #[inline(never)]
    fn optional<T>(&self, name: &'static str, read: impl Fn(&Json, &str) -> Result<T>) -> Option<T> {
        match self.get(name) {
            None | Some((Json::Null, _)) => None,
            Some((value, path)) => self.keep(read(value, &path)),
        }
    }

    #[inline(never)]
    fn or_default<T: Default>(&self, name: &'static str, read: impl Fn(&Json, &str) -> Result<T>) -> T {
        self.present(name, read).unwrap_or_default()
    }

    #[inline(never)]
    fn strings(&self, name: &'static str) -> Vec<String> {
        self.or_default(name, |v, p| list(v, p, string))
    }

    /// `value`, built from the reads, unless a member was not read (unknown) or was given
    /// twice, or a read failed.
    #[inline(never)]
    fn finish<T>(self, value: T) -> Result<T> {
        self.check().map(|()| value)
    }

    // This and the other `inline(never)`: one copy in the module, not one per field read.
    #[inline(never)]
    fn check(self) -> Result<()> {
        let read = self.read.into_inner();
        for (i, (name, _)) in self.members.iter().enumerate() {
            if !read.contains(&name.as_str()) {
                let message = format!("unknown field `{name}`, expected one of {}", quoted_list(&read));
                return refuse(&field_path(self.path, name), message);
            }
            if self.members[..i].iter().any(|(earlier, _)| earlier == name) {
                return refuse(&field_path(self.path, name), format!("duplicate field `{name}`"));
            }
        }
        match self.error.into_inner() {
            Some(error) => Err(error),
            None => Ok(()),
        }
    }
}

#[inline(never)]
fn string(value: &Json, path: &str) -> Result<String> {
    match value {
        Json::String(s) => Ok(s.clone()),
        other => type_error(other, path, "a string"),
    }
}

#[inline(never)]
fn boolean(value: &Json, path: &str) -> Result<bool> {
    match value {
        Json::Bool(b) => Ok(*b),
        other => type_error(other, path, "a boolean"),
    }
}

#[inline(never)]
fn list<T>(value: &Json, path: &str, read: impl Fn(&Json, &str) -> Result<T>) -> Result<Vec<T>> {
    let Json::Array(items) = value else { return type_error(value, path, "an array") };
    let mut out = Vec::with_capacity(items.len());
    for (i, item) in items.iter().enumerate() {
        out.push(read(item, &item_path(path, i))?);
    }
    Ok(out)
}

#[inline(never)]
fn item_path(path: &str, i: usize) -> String {
    format!("{path}[{i}]")
}

#[inline(never)]
fn map<T>(value: &Json, path: &str, read: impl Fn(&Json, &str) -> Result<T>) -> Result<BTreeMap<String, T>> {
    let Json::Object(members) = value else { return type_error(value, path, "an object") };
    let mut out = BTreeMap::new();
    for (key, item) in members {
        let item_path = field_path(path, key);
        if out.insert(key.clone(), read(item, &item_path)?).is_some() {
            return refuse(&item_path, format!("duplicate key `{key}`"));
        }
    }
    Ok(out)
}

/// One of an enum's upper-case names.
fn variant<T: Copy>(value: &Json, path: &str, variants: &[(&str, T)]) -> Result<T> {
    variant_position(value, path, variants.len(), &|i| variants[i].0).map(|i| variants[i].1)
}

/// Where `value` is among the `count` names `name(0..count)`: the one copy of the lookup and
/// its refusal, not one per enum.
#[inline(never)]
fn variant_position<'n>(value: &Json, path: &str, count: usize, name: &dyn Fn(usize) -> &'n str) -> Result<usize> {
    let Json::String(given) = value else { return type_error(value, path, "a string") };
    match (0..count).position(|i| name(i) == given) {
        Some(i) => Ok(i),
        None => {
            let names: Vec<&str> = (0..count).map(name).collect();
            refuse(path, format!("unknown variant `{given}`, expected one of {}", quoted_list(&names)))
        }
    }
}

/// Decodes the plugin configuration document.
#[inline(never)]
pub(crate) fn plugin_config(value: &Json) -> Result<PluginConfig> {
    let m = Members::of(value, "")?;
    let config = PluginConfig {
        trust_domain: m.present("trustDomain", string).unwrap_or_else(crate::config::default_trust_domain),
        trust_domain_aliases: m.strings("trustDomainAliases"),
        peer_authentication: m.optional("peerAuthentication", peer_authentication),
        policies: m.or_default("policies", |v, p| list(v, p, policy_entry)),
        path_normalization: m.or_default("pathNormalization", |v, p| {
            variant(v, p, &[("TOMCAT", PathNormalization::Tomcat), ("NONE", PathNormalization::None)])
        }),
        path_aliases: m.optional("pathAliases", |v, p| list(v, p, path_alias)),
        method_override: m.or_default("methodOverride", |v, p| {
            variant(
                v,
                p,
                &[
                    ("JUDGE", MethodOverride::Judge),
                    ("REFUSE", MethodOverride::Refuse),
                    ("IGNORE", MethodOverride::Ignore),
                ],
            )
        }),
        head_method: m.or_default("headMethod", |v, p| {
            variant(v, p, &[("AS_GET", HeadMethod::AsGet), ("EXACT", HeadMethod::Exact)])
        }),
        tunnel_decoding: m.or_default("tunnelDecoding", |v, p| {
            variant(v, p, &[("URL", TunnelDecoding::Url), ("NONE", TunnelDecoding::None)])
        }),
        override_header_names: m.or_default("overrideHeaderNames", |v, p| {
            variant(
                v,
                p,
                &[("UNDERSCORE_AS_DASH", OverrideHeaderNames::UnderscoreAsDash), ("EXACT", OverrideHeaderNames::Exact)],
            )
        }),
        restlet_routing: m.or_default("restletRouting", |v, p| {
            variant(v, p, &[("STARTS_WITH", RestletRouting::StartsWith), ("EXACT", RestletRouting::Exact)])
        }),
        spring_prefixes: m.or_default("springPrefixes", |v, p| {
            variant(v, p, &[("SERVLET_PREFIXES", SpringPrefixes::ServletPrefixes), ("EXACT", SpringPrefixes::Exact)])
        }),
        spring_suffixes: m.or_default("springSuffixes", |v, p| {
            variant(v, p, &[("REGISTERED", SpringSuffixes::Registered), ("EXACT", SpringSuffixes::Exact)])
        }),
        peer_trust_domains: m.or_default("peerTrustDomains", |v, p| {
            variant(v, p, &[("MESH", PeerTrustDomains::Mesh), ("ANY", PeerTrustDomains::Any)])
        }),
        config_digest: m.present("configDigest", string),
        observe: m
            .or_default("observe", |v, p| variant(v, p, &[("OFF", ObserveMode::Off), ("ROUTES", ObserveMode::Routes)])),
    };
    // These same fields compiled, for the Wasm filter, which reads only that (see `packed`);
    // beside them it is no unknown member, and nothing here reads it.
    let _ = m.present(crate::packed::MEMBER, string);
    m.finish(config)
}

#[inline(never)]
fn path_alias(value: &Json, path: &str) -> Result<PathAlias> {
    let m = Members::of(value, path)?;
    let alias = PathAlias { from: m.required("from", string), to: m.required("to", string) };
    m.finish(alias)
}

#[inline(never)]
fn policy_entry(value: &Json, path: &str) -> Result<PolicyEntry> {
    let m = Members::of(value, path)?;
    m.missing_first("spec");
    let entry = PolicyEntry {
        name: m.required("name", string),
        namespace: m.required("namespace", string),
        dry_run: m.or_default("dryRun", boolean),
        spec: m.required("spec", authorization_policy),
    };
    m.finish(entry)
}

#[inline(never)]
fn authorization_policy(value: &Json, path: &str) -> Result<AuthorizationPolicySpec> {
    let m = Members::of(value, path)?;
    let present = |_: &Json, _: &str| Ok(Unsupported);
    let spec = AuthorizationPolicySpec {
        selector: m.optional("selector", selector),
        target_ref: m.optional("targetRef", present),
        target_refs: m.optional("targetRefs", present),
        action: m.optional("action", |v, p| {
            variant(
                v,
                p,
                &[
                    ("ALLOW", Action::Allow),
                    ("DENY", Action::Deny),
                    ("AUDIT", Action::Audit),
                    ("CUSTOM", Action::Custom),
                ],
            )
        }),
        provider: m.optional("provider", present),
        rules: m.optional("rules", |v, p| list(v, p, rule)),
    };
    m.finish(spec)
}

#[inline(never)]
fn selector(value: &Json, path: &str) -> Result<WorkloadSelector> {
    let m = Members::of(value, path)?;
    let selector = WorkloadSelector { match_labels: m.or_default("matchLabels", |v, p| map(v, p, string)) };
    m.finish(selector)
}

#[inline(never)]
fn rule(value: &Json, path: &str) -> Result<Rule> {
    let m = Members::of(value, path)?;
    let rule = Rule {
        from: m.optional("from", |v, p| list(v, p, from)),
        to: m.optional("to", |v, p| list(v, p, to)),
        when: m.optional("when", |v, p| list(v, p, condition)),
    };
    m.finish(rule)
}

#[inline(never)]
fn from(value: &Json, path: &str) -> Result<From> {
    let m = Members::of(value, path)?;
    let from = From { source: m.or_default("source", source) };
    m.finish(from)
}

#[inline(never)]
fn to(value: &Json, path: &str) -> Result<To> {
    let m = Members::of(value, path)?;
    let to = To { operation: m.or_default("operation", operation) };
    m.finish(to)
}

#[inline(never)]
fn source(value: &Json, path: &str) -> Result<Source> {
    let m = Members::of(value, path)?;
    let source = Source {
        principals: m.strings("principals"),
        not_principals: m.strings("notPrincipals"),
        request_principals: m.strings("requestPrincipals"),
        not_request_principals: m.strings("notRequestPrincipals"),
        namespaces: m.strings("namespaces"),
        not_namespaces: m.strings("notNamespaces"),
        service_accounts: m.strings("serviceAccounts"),
        not_service_accounts: m.strings("notServiceAccounts"),
        trust_domains: m.strings("trustDomains"),
        not_trust_domains: m.strings("notTrustDomains"),
        ip_blocks: m.strings("ipBlocks"),
        not_ip_blocks: m.strings("notIpBlocks"),
        remote_ip_blocks: m.strings("remoteIpBlocks"),
        not_remote_ip_blocks: m.strings("notRemoteIpBlocks"),
    };
    m.finish(source)
}

#[inline(never)]
fn operation(value: &Json, path: &str) -> Result<Operation> {
    let m = Members::of(value, path)?;
    let operation = Operation {
        hosts: m.strings("hosts"),
        not_hosts: m.strings("notHosts"),
        ports: m.strings("ports"),
        not_ports: m.strings("notPorts"),
        methods: m.strings("methods"),
        not_methods: m.strings("notMethods"),
        paths: m.strings("paths"),
        not_paths: m.strings("notPaths"),
    };
    m.finish(operation)
}

#[inline(never)]
fn condition(value: &Json, path: &str) -> Result<Condition> {
    let m = Members::of(value, path)?;
    let condition =
        Condition { key: m.required("key", string), values: m.strings("values"), not_values: m.strings("notValues") };
    m.finish(condition)
}

#[inline(never)]
fn peer_authentication(value: &Json, path: &str) -> Result<PeerAuthenticationSpec> {
    let m = Members::of(value, path)?;
    let spec = PeerAuthenticationSpec {
        selector: m.optional("selector", selector),
        mtls: m.optional("mtls", mtls),
        port_level_mtls: m.or_default("portLevelMtls", |v, p| map(v, p, mtls)),
    };
    m.finish(spec)
}

#[inline(never)]
fn mtls(value: &Json, path: &str) -> Result<Mtls> {
    let m = Members::of(value, path)?;
    let mode = m.or_default("mode", |v, p| {
        variant(
            v,
            p,
            &[
                ("UNSET", MtlsMode::Unset),
                ("DISABLE", MtlsMode::Disable),
                ("PERMISSIVE", MtlsMode::Permissive),
                ("STRICT", MtlsMode::Strict),
            ],
        )
    });
    m.finish(Mtls { mode })
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::json;

    fn decode(doc: &str) -> Result<PluginConfig> {
        plugin_config(&json::parse(doc.as_bytes()).expect("valid JSON"))
    }

    fn refusal(doc: &str) -> String {
        decode(doc).expect_err(doc).to_string()
    }

    #[test]
    fn a_full_configuration_decodes_field_by_field() {
        let config = decode(
            r#"{"trustDomain": "td", "trustDomainAliases": ["old"], "methodOverride": "REFUSE",
                "pathNormalization": "NONE", "pathAliases": [{"from": "/a/", "to": "/b/"}],
                "headMethod": "EXACT", "tunnelDecoding": "NONE", "overrideHeaderNames": "EXACT",
                "restletRouting": "EXACT", "springPrefixes": "EXACT", "springSuffixes": "EXACT",
                "peerTrustDomains": "ANY",
                "peerAuthentication": {"mtls": {"mode": "STRICT"}, "portLevelMtls": {"8080": {"mode": "DISABLE"}}},
                "policies": [{"name": "p", "namespace": "xnat", "dryRun": true, "spec": {
                    "selector": {"matchLabels": {"app": "xnat"}}, "action": "DENY",
                    "rules": [{"from": [{"source": {"principals": ["a"], "notNamespaces": ["b"]}}],
                               "to": [{"operation": {"methods": ["GET"], "notPaths": ["/x"]}}],
                               "when": [{"key": "request.headers[x-team]", "notValues": ["c"]}]}]}}]}"#,
        )
        .expect("valid config");
        assert_eq!(config.trust_domain, "td");
        assert_eq!(config.trust_domain_aliases, ["old"]);
        assert_eq!(config.method_override, MethodOverride::Refuse);
        assert_eq!(config.path_normalization, PathNormalization::None);
        assert_eq!(config.path_aliases, Some(vec![PathAlias { from: "/a/".into(), to: "/b/".into() }]));
        assert_eq!(config.peer_trust_domains, PeerTrustDomains::Any);
        let mut exact = config.clone();
        exact.match_handlers_exactly();
        assert_eq!(config, exact, "every handler-matching setting is read");
        let pa = config.peer_authentication.expect("peer authentication");
        assert_eq!(pa.mtls, Some(Mtls { mode: MtlsMode::Strict }));
        assert_eq!(pa.port_level_mtls["8080"], Mtls { mode: MtlsMode::Disable });
        let entry = &config.policies[0];
        assert!(entry.dry_run);
        assert_eq!(entry.spec.action, Some(Action::Deny));
        assert_eq!(entry.spec.selector.as_ref().map(|s| s.match_labels["app"].as_str()), Some("xnat"));
        let rule = &entry.spec.rules.as_ref().expect("rules")[0];
        let source = &rule.from.as_ref().expect("from")[0].source;
        assert_eq!(
            (source.principals.as_slice(), source.not_namespaces.as_slice()),
            (&["a".to_string()][..], &["b".to_string()][..])
        );
        let op = &rule.to.as_ref().expect("to")[0].operation;
        assert_eq!(
            (op.methods.as_slice(), op.not_paths.as_slice()),
            (&["GET".to_string()][..], &["/x".to_string()][..])
        );
        let when = &rule.when.as_ref().expect("when")[0];
        assert_eq!(
            (when.key.as_str(), when.not_values.as_slice()),
            ("request.headers[x-team]", &["c".to_string()][..])
        );
    }

    #[test]
    fn defaults_apply_to_absent_fields_and_null_only_to_optional_ones() {
        let config = decode(
            r#"{"peerAuthentication": null, "policies": [{"name": "p", "namespace": "n", "spec": {"rules": null}}]}"#,
        )
        .expect("valid config");
        assert_eq!(config.peer_authentication, None);
        assert_eq!(config.trust_domain, "cluster.local");
        assert_eq!(config.method_override, MethodOverride::Judge);
        assert_eq!(config.path_aliases, None);
        assert_eq!(config.policies[0].spec.rules, None);
        assert!(!config.policies[0].dry_run);
        assert_eq!(decode("{}").expect("empty config"), PluginConfig::default());
    }

    #[test]
    fn refusals_name_the_field_at_fault() {
        let cases = [
            (r#"{"policy": []}"#, "policy: unknown field `policy`, expected one of `trustDomain`"),
            (r#"[]"#, "(config): invalid type: an array, expected an object"),
            (
                r#"{"policies": [{"name": "p", "namespace": "n", "spec": {"rulez": []}}]}"#,
                "policies[0].spec.rulez: unknown field",
            ),
            (r#"{"policies": [{"name": "p", "spec": {}}]}"#, "policies[0]: missing field `namespace`"),
            (
                r#"{"policies": [{"name": 7, "namespace": "n", "spec": {}}]}"#,
                "policies[0].name: invalid type: a number, expected a string",
            ),
            (
                r#"{"policies": [{"name": "p", "namespace": "n", "spec": {"action": "allow"}}]}"#,
                "policies[0].spec.action: unknown variant `allow`, expected one of `ALLOW`",
            ),
            (
                r#"{"policies": [{"name": "p", "namespace": "n", "spec": {"rules": [{"to": [{"operation": {"methods": ["GET", 1]}}]}]}}]}"#,
                "policies[0].spec.rules[0].to[0].operation.methods[1]: invalid type: a number",
            ),
            (r#"{"trustDomain": "a", "trustDomain": "b"}"#, "trustDomain: duplicate field `trustDomain`"),
            (
                r#"{"peerAuthentication": {"portLevelMtls": {"80": {"mode": "DISABLE"}, "80": {"mode": "STRICT"}}}}"#,
                "peerAuthentication.portLevelMtls.80: duplicate key",
            ),
            (
                r#"{"peerAuthentication": {"mtls": {"mode": "strict"}}}"#,
                "peerAuthentication.mtls.mode: unknown variant `strict`",
            ),
            (
                r#"{"policies": [{"name": "p", "namespace": "n", "dryRun": "yes", "spec": {}}]}"#,
                "policies[0].dryRun: invalid type: a string, expected a boolean",
            ),
        ];
        for (doc, expected) in cases {
            let message = refusal(doc);
            assert!(message.starts_with(expected), "for {doc}\n  got: {message}\n want: {expected}");
        }
    }

    #[test]
    fn unknown_members_are_refused_first_naming_every_field_read() {
        let cases = [
            (
                r#"{"policies": [{"name": "p", "namespace": 1, "x": 2}]}"#,
                "policies[0].x: unknown field `x`, expected one of `name`, `namespace`, `dryRun`, `spec`",
            ),
            (
                r#"{"peerAuthentication": {"mtls": {"mode": 1}, "selector": 2, "portLevel": {}}}"#,
                "peerAuthentication.portLevel: unknown field `portLevel`, expected one of `selector`, `mtls`, \
                 `portLevelMtls`",
            ),
            // Otherwise the first field in the order of the spec's fields is at fault.
            (
                r#"{"peerAuthentication": {"mtls": {"mode": 1}, "selector": 2}}"#,
                "peerAuthentication.selector: invalid type: a number, expected an object",
            ),
            (r#"{"policies": [{"name": 7}]}"#, "policies[0]: missing field `spec`"),
            (r#"{"policies": [{"name": 7, "spec": {}}]}"#, "policies[0].name: invalid type: a number"),
        ];
        for (doc, expected) in cases {
            let message = refusal(doc);
            assert!(message.starts_with(expected), "for {doc}\n  got: {message}\n want: {expected}");
        }
    }
}

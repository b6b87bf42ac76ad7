//! Evaluation: one request against the compiled configuration, in Istio's decision order.
//! Everything here runs per request: no allocation, no host calls, no fallible step (compile
//! has validated everything).

use std::net::IpAddr;

use crate::config::{MethodOverride, MtlsMode, PathNormalization, TunnelDecoding};
use crate::model::{CompiledPolicy, CompiledRule, Constraint, Engine, Matcher};
use crate::normalize::{
    apply_aliases, form_decode, is_normal_path, java_upper, query_start, strip_trailing_dot, tomcat_path, MAX_PATH,
};
use crate::pattern::Cidr;
use crate::request::{Decision, Request, Verdict};
use crate::spiffe::SpiffeId;

/// Three-valued match: `Unknown` when a peer presented an identity that is not a well-formed
/// SPIFFE id, so its namespace or service account cannot be read. Each policy action resolves
/// it towards the safe side (see [`Engine::evaluate`]).
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
enum Tri {
    False,
    True,
    Unknown,
}

impl Tri {
    fn from_bool(b: bool) -> Tri {
        if b {
            Tri::True
        } else {
            Tri::False
        }
    }
    fn negate(self) -> Tri {
        match self {
            Tri::False => Tri::True,
            Tri::True => Tri::False,
            Tri::Unknown => Tri::Unknown,
        }
    }
}

fn all(items: impl Iterator<Item = Tri>) -> Tri {
    let mut result = Tri::True;
    for t in items {
        match t {
            Tri::False => return Tri::False,
            Tri::Unknown => result = Tri::Unknown,
            Tri::True => {}
        }
    }
    result
}

fn any(items: impl Iterator<Item = Tri>) -> Tri {
    let mut result = Tri::False;
    for t in items {
        match t {
            Tri::True => return Tri::True,
            Tri::Unknown => result = Tri::Unknown,
            Tri::False => {}
        }
    }
    result
}

/// Longest tunnelled method read decoded and upper-cased; a longer value is judged as sent.
const TUNNELLED_METHOD: usize = 64;
/// Longest tunnelled method upper-cased under `tunnelDecoding: NONE` (the reading before
/// decoding existed).
const ASCII_UPPER: usize = 16;

/// Per-request facts derived once before matching.
struct Facts<'a> {
    req: &'a Request<'a>,
    path: &'a [u8],
    host: Option<&'a [u8]>,
    method_bits: u64,
    spiffe: Option<SpiffeId<'a>>,
    /// The peer's trust domain is the mesh's or an alias (looked up only for a configuration
    /// with mesh-scoped matchers).
    in_mesh: bool,
}

impl Engine {
    /// Istio's decision order:
    /// 1. PeerAuthentication: plaintext on a STRICT port is refused before any policy.
    /// 2. "If there are any DENY policies that match the request, deny the request."
    /// 3. "If there are no ALLOW policies for the workload, allow the request."
    /// 4. "If any of the ALLOW policies match the request, allow the request."
    /// 5. "Deny the request."
    ///
    /// AUDIT policies and dry-run policies are evaluated for reporting and never change the
    /// verdict. An identity that cannot be parsed counts as a match for DENY and AUDIT rules
    /// and as no match for ALLOW rules.
    pub fn evaluate(&self, req: &Request<'_>) -> Decision {
        if req.peer.is_none() && self.mtls.mode_for(req.port) == MtlsMode::Strict {
            return Decision::only(Verdict::DeniedMtlsRequired { port: req.port });
        }
        if !self.needs.path {
            // The query, if an override check wants it, is looked for only then.
            return self.decide(req, req.path, req.path);
        }
        let (path, query) = match query_start(req.path) {
            Some(end) => (&req.path[..end], &req.path[end..]),
            None => (req.path, &[][..]),
        };
        if self.path_mode == PathNormalization::Tomcat && !is_normal_path(path, &self.aliases) {
            return self.evaluate_tomcat_path(req, query);
        }
        self.decide(req, path, query)
    }

    /// Matches against the path Tomcat will route (see `normalize`), in a buffer on the stack.
    #[inline(never)]
    fn evaluate_tomcat_path(&self, req: &Request<'_>, query: &[u8]) -> Decision {
        let mut buf = [0u8; MAX_PATH];
        match tomcat_path(req.path, &mut buf) {
            Ok(len) => {
                let len = apply_aliases(&mut buf, len, &self.aliases);
                self.decide(req, &buf[..len], query)
            }
            Err(reason) => Decision::only(Verdict::DeniedUnsafePath { reason }),
        }
    }

    /// The decision for the request line's method and, unless overrides are ignored, for every
    /// method the request tunnels: all of them must be allowed.
    /// `query` holds the query if there is one: from it, the first `?` starts the query unless
    /// a `#` comes first.
    fn decide(&self, req: &Request<'_>, path: &[u8], query: &[u8]) -> Decision {
        let decision = self.decide_for(req, req.method, path);
        if self.method_override == MethodOverride::Ignore || !self.needs.method || !decision.verdict.is_allowed() {
            return decision;
        }
        let mut denied = false;
        self.for_each_override(req, query, |method| {
            if denied {
                return;
            }
            // Frameworks upper-case a tunnelled method; longer values are no method anyway.
            let mut upper = [0u8; TUNNELLED_METHOD];
            let method = match self.tunnel_decoding {
                TunnelDecoding::Url => match java_upper(method, &mut upper) {
                    Some(n) => &upper[..n],
                    None => method,
                },
                TunnelDecoding::None if method.len() > ASCII_UPPER => method,
                TunnelDecoding::None => {
                    let upper = &mut upper[..method.len()];
                    upper.copy_from_slice(method);
                    upper.make_ascii_uppercase();
                    &*upper
                }
            };
            denied = self.method_override == MethodOverride::Refuse
                || method != req.method && !self.decide_for(req, method, path).verdict.is_allowed();
        });
        if denied {
            return Decision::only(Verdict::DeniedMethodOverride);
        }
        decision
    }

    /// Calls `f` with each tunnelled method: override headers, then `method`/`_method` query
    /// parameters, whatever the case of their names. Under `tunnelDecoding: URL` a parameter's
    /// name and value are URL-decoded first, as Restlet's and Tomcat's form readers do (a value
    /// that does not decode, or is too long to be a method, is judged as sent); under `NONE`
    /// both are read as sent.
    fn for_each_override(&self, req: &Request<'_>, query: &[u8], mut f: impl FnMut(&[u8])) {
        for &i in self.override_headers.iter() {
            for v in req.headers.get(i).copied().unwrap_or_default() {
                f(v);
            }
        }
        let Some(start) = query_start(query) else { return };
        let Some(query) = query[start..].strip_prefix(b"?") else { return };
        let query = &query[..query.iter().position(|&b| b == b'#').unwrap_or(query.len())];
        let decode = self.tunnel_decoding == TunnelDecoding::Url;
        for param in query.split(|&b| b == b'&' || b == b';') {
            let (name, value) = match param.iter().position(|&b| b == b'=') {
                Some(e) => (&param[..e], &param[e + 1..]),
                None => continue,
            };
            let mut name_buf = [0u8; 8];
            let name = if decode && name.iter().any(|&b| b == b'%' || b == b'+') {
                match form_decode(name, &mut name_buf) {
                    Some(n) => &name_buf[..n],
                    None => continue,
                }
            } else {
                name
            };
            if name.eq_ignore_ascii_case(b"method") || name.eq_ignore_ascii_case(b"_method") {
                let mut value_buf = [0u8; TUNNELLED_METHOD];
                let decoded = if decode { form_decode(value, &mut value_buf) } else { None };
                f(decoded.map_or(value, |n| &value_buf[..n]));
            }
        }
    }

    fn decide_for(&self, req: &Request<'_>, method: &[u8], path: &[u8]) -> Decision {
        let facts = self.facts(req, method, path);
        let verdict = if let Some((policy, rule)) = first_match(&self.deny, &facts, true) {
            Verdict::DeniedBy { policy, rule }
        } else if self.allow.is_empty() {
            Verdict::AllowedNoAllowPolicy
        } else if let Some((policy, rule)) = first_match(&self.allow, &facts, false) {
            Verdict::AllowedBy { policy, rule }
        } else {
            Verdict::DeniedNoAllowMatch
        };
        // Istio runs dry-run policies as Envoy RBAC shadow rules, one shadow engine per action.
        let dry_run_denied = first_match(&self.dry_run_deny, &facts, true).is_some()
            || (!self.dry_run_allow.is_empty() && first_match(&self.dry_run_allow, &facts, false).is_none());
        let audited = first_match(&self.audit, &facts, true).is_some();
        Decision { verdict, dry_run_denied, audited }
    }

    /// Derives only what the configuration's matchers read.
    fn facts<'a>(&'a self, req: &'a Request<'a>, method: &[u8], path: &'a [u8]) -> Facts<'a> {
        let method_bits = if self.needs.method { self.methods.bits(method) } else { 0 };
        let spiffe = if self.needs.identity { req.peer.and_then(SpiffeId::parse) } else { None };
        // `Host: xnat.example.org.` names the same host as without the dot.
        let host = if self.needs.host { req.host.map(strip_trailing_dot) } else { None };
        let in_mesh =
            self.mesh_scoped && spiffe.is_some_and(|id| self.trust_domains.iter().any(|t| **t == *id.trust_domain));
        Facts { req, path, host, method_bits, spiffe, in_mesh }
    }
}

/// The first (policy, rule) that matches. `unknown_matches` resolves `Tri::Unknown`.
/// Most policy sets are empty (no dry-run, no AUDIT): those cost no call.
#[inline]
fn first_match(policies: &[CompiledPolicy], facts: &Facts<'_>, unknown_matches: bool) -> Option<(usize, usize)> {
    if policies.is_empty() {
        return None;
    }
    first_match_in(policies, facts, unknown_matches)
}

#[inline(never)]
fn first_match_in(policies: &[CompiledPolicy], facts: &Facts<'_>, unknown_matches: bool) -> Option<(usize, usize)> {
    let matches = |rule: &CompiledRule| match rule_matches(rule, facts) {
        Tri::True => true,
        Tri::Unknown => unknown_matches,
        Tri::False => false,
    };
    for policy in policies {
        if let Some(index) = &policy.rule_index {
            let namespace = facts.spiffe.as_ref().map(|id| id.namespace);
            match index.first(facts.req.peer, namespace, facts.path, facts.req.headers, |r| matches(&policy.rules[r])) {
                Ok(Some(r)) => return Some((policy.index, r)),
                Ok(None) => continue,
                Err(()) => {} // too many candidate lists: scan
            }
        }
        for (r, rule) in policy.rules.iter().enumerate() {
            match rule_matches(rule, facts) {
                Tri::True => return Some((policy.index, r)),
                Tri::Unknown if unknown_matches => return Some((policy.index, r)),
                _ => {}
            }
        }
    }
    None
}

fn rule_matches(rule: &CompiledRule, facts: &Facts<'_>) -> Tri {
    let from = if rule.from.is_empty() { Tri::True } else { any(rule.from.iter().map(|c| conjunction(c, facts))) };
    if from == Tri::False {
        return Tri::False;
    }
    let to = if rule.to.is_empty() { Tri::True } else { any(rule.to.iter().map(|c| conjunction(c, facts))) };
    if to == Tri::False {
        return Tri::False;
    }
    all([from, to, conjunction(&rule.when, facts)].into_iter())
}

fn conjunction(constraints: &[Constraint], facts: &Facts<'_>) -> Tri {
    all(constraints.iter().map(|c| {
        let t = check(&c.matcher, facts);
        if c.negate {
            t.negate()
        } else {
            t
        }
    }))
}

fn check(matcher: &Matcher, facts: &Facts<'_>) -> Tri {
    let req = facts.req;
    match matcher {
        Matcher::Principal(patterns) => Tri::from_bool(patterns.iter().any(|p| p.matches(req.peer))),
        Matcher::Namespace(patterns) => {
            identity_part(facts, |id| patterns.iter().any(|p| p.matches(Some(id.namespace))))
        }
        Matcher::ServiceAccount(accounts) => identity_part(facts, |id| {
            accounts.iter().any(|(ns, sa)| id.namespace == &ns[..] && id.service_account == &sa[..])
        }),
        Matcher::MeshNamespace(patterns) => {
            identity_part(facts, |id| facts.in_mesh && patterns.iter().any(|p| p.matches(Some(id.namespace))))
        }
        Matcher::MeshServiceAccount(accounts) => identity_part(facts, |id| {
            facts.in_mesh && accounts.iter().any(|(ns, sa)| id.namespace == &ns[..] && id.service_account == &sa[..])
        }),
        Matcher::TrustDomain(patterns) => {
            identity_part(facts, |id| patterns.iter().any(|p| p.matches(Some(id.trust_domain))))
        }
        Matcher::SourceIp(blocks) => ip_in(req.source_ip, blocks),
        Matcher::RemoteIp(blocks) => ip_in(req.remote_ip, blocks),
        Matcher::DestinationIp(blocks) => ip_in(req.destination_ip, blocks),
        Matcher::Host(patterns) => Tri::from_bool(patterns.iter().any(|p| p.matches_ignore_case(facts.host))),
        Matcher::Port(ports) => Tri::from_bool(req.port.is_some_and(|p| ports.contains(&p))),
        Matcher::Method(mask) => Tri::from_bool(facts.method_bits & mask != 0),
        Matcher::Path(patterns) => Tri::from_bool(patterns.iter().any(|p| p.matches(facts.path))),
        // Each value on its own, as Envoy's RBAC matches a repeated header since
        // CVE-2026-26308 (a joined "user,admin" hid "admin" from an exact DENY rule).
        Matcher::Header(index, patterns) => {
            let values = req.headers.get(*index).copied().unwrap_or_default();
            Tri::from_bool(values.iter().any(|v| patterns.iter().any(|p| p.matches(Some(v)))))
        }
        Matcher::Sni(patterns) => Tri::from_bool(patterns.iter().any(|p| p.matches(req.sni))),
    }
}

/// Plaintext peers have no identity (no match); an unparseable identity is `Unknown`.
fn identity_part(facts: &Facts<'_>, check: impl Fn(&SpiffeId<'_>) -> bool) -> Tri {
    match (&facts.spiffe, facts.req.peer) {
        (Some(id), _) => Tri::from_bool(check(id)),
        (None, None) => Tri::False,
        (None, Some(_)) => Tri::Unknown,
    }
}

fn ip_in(ip: Option<IpAddr>, blocks: &[Cidr]) -> Tri {
    Tri::from_bool(ip.is_some_and(|ip| blocks.iter().any(|b| b.contains(ip))))
}

#[cfg(test)]
mod tests {
    //! How XNAT dispatches a request, one table per class of request forms that reach the same
    //! handler: the forms a DENY rule must catch, the same forms an ALLOW rule must not newly
    //! grant, and the setting that gives Istio's exact matching back.

    use serde_json::{json, Value};

    use crate::Request;

    /// A configuration of one policy with one operation, plus top-level settings.
    fn engine(action: &str, operation: Value, settings: Value) -> crate::Engine {
        let mut config = json!({"policies": [{"name": "p", "namespace": "xnat",
            "spec": {"action": action, "rules": [{"to": [{"operation": operation}]}]}}]});
        for (k, v) in settings.as_object().into_iter().flatten() {
            config[k] = v.clone();
        }
        crate::from_json(config.to_string().as_bytes()).unwrap_or_else(|e| panic!("{e}: {config}"))
    }

    fn allowed(engine: &crate::Engine, method: &str, path: &str, headers: &[(&str, &str)]) -> bool {
        // Grouped as the glue groups them (`HeaderMap::with_values_for`).
        let values: Vec<Vec<&[u8]>> = (0..engine.header_names().len())
            .map(|i| {
                headers.iter().filter(|(h, _)| engine.is_header(i, h.as_bytes())).map(|(_, v)| v.as_bytes()).collect()
            })
            .collect();
        let grouped: Vec<&[&[u8]]> = values.iter().map(Vec::as_slice).collect();
        let request =
            Request { method: method.as_bytes(), path: path.as_bytes(), headers: &grouped, ..Default::default() };
        engine.evaluate(&request).verdict.is_allowed()
    }

    #[test]
    fn head_runs_gets_code_so_what_denies_get_denies_head() {
        let exact = json!({"headMethod": "EXACT"});
        let none = json!({});
        // (why, action, operation, settings, method, allowed)
        let cases = [
            ("a DENY on GET denies HEAD", "DENY", json!({"methods": ["GET"]}), &none, "HEAD", false),
            ("a DENY on GET still denies GET", "DENY", json!({"methods": ["GET"]}), &none, "GET", false),
            ("a DENY on G* denies HEAD", "DENY", json!({"methods": ["G*"]}), &none, "HEAD", false),
            ("a DENY on GET leaves POST alone", "DENY", json!({"methods": ["GET"]}), &none, "POST", true),
            ("a DENY on POST leaves HEAD alone", "DENY", json!({"methods": ["POST"]}), &none, "HEAD", true),
            (
                "a DENY on notMethods GET is not narrowed: HEAD stays denied",
                "DENY",
                json!({"notMethods": ["GET"]}),
                &none,
                "HEAD",
                false,
            ),
            (
                "an ALLOW notMethods GET takes HEAD away too",
                "ALLOW",
                json!({"notMethods": ["GET"]}),
                &none,
                "HEAD",
                false,
            ),
            ("an ALLOW notMethods GET still allows POST", "ALLOW", json!({"notMethods": ["GET"]}), &none, "POST", true),
            ("an ALLOW on GET does not grant HEAD", "ALLOW", json!({"methods": ["GET"]}), &none, "HEAD", false),
            ("an ALLOW on GET grants GET", "ALLOW", json!({"methods": ["GET"]}), &none, "GET", true),
            ("EXACT: a DENY on GET leaves HEAD alone", "DENY", json!({"methods": ["GET"]}), &exact, "HEAD", true),
            (
                "EXACT: an ALLOW notMethods GET allows HEAD",
                "ALLOW",
                json!({"notMethods": ["GET"]}),
                &exact,
                "HEAD",
                true,
            ),
        ];
        for (why, action, operation, settings, method, want) in cases {
            let engine = engine(action, operation, settings.clone());
            assert_eq!(allowed(&engine, method, "/data/projects", &[]), want, "{why}");
        }
    }

    #[test]
    fn head_as_get_counts_for_audit_and_dry_run_deny_too() {
        let config = json!({"policies": [
            {"name": "a", "namespace": "xnat", "spec": {"action": "AUDIT", "rules": [{"to": [{"operation": {"methods": ["GET"]}}]}]}},
            {"name": "d", "namespace": "xnat", "dryRun": true, "spec": {"action": "DENY", "rules": [{"to": [{"operation": {"methods": ["GET"]}}]}]}}
        ]});
        let engine = crate::from_json(config.to_string().as_bytes()).expect("compiles");
        let head = engine.evaluate(&Request { method: b"HEAD", path: b"/", ..Default::default() });
        assert!(head.verdict.is_allowed() && head.audited && head.dry_run_denied, "{head:?}");
    }

    #[test]
    fn a_tunnelled_method_is_read_as_restlet_and_spring_decode_it() {
        let deny = json!({"methods": ["DELETE", "POST", "OPTIONS"]});
        let url = engine("DENY", deny.clone(), json!({}));
        let raw = engine("DENY", deny, json!({"tunnelDecoding": "NONE"}));
        // (why, GET request path, allowed under URL, allowed under NONE)
        let cases = [
            ("an encoded parameter name still tunnels", "/data/projects?%6Dethod=DELETE", false, true),
            ("an encoded letter later in the name still tunnels", "/data/projects?me%74hod=DELETE", false, true),
            ("Spring's name, encoded, still tunnels", "/data/projects?_%6Dethod=delete", false, true),
            ("an encoded value is its decoded method", "/data/projects?method=DEL%45TE", false, true),
            ("a value in lower case is the method", "/data/projects?method=delete", false, false),
            ("every value is judged", "/data/projects?method=GET&%6Dethod=DELETE", false, true),
            ("Java upper-cases the long s to S", "/data/projects?method=po%C5%BFt", false, true),
            ("the long s sent raw folds too", "/data/projects?method=po\u{17F}t", false, true),
            ("Java upper-cases the dotless i to I", "/data/projects?method=opt%C4%B1ons", false, true),
            ("the st ligature folds to ST", "/data/projects?method=PO%EF%AC%86", false, true),
            ("a plus in a value is a space, not a method", "/data/projects?method=DE+LETE", true, true),
            ("an allowed tunnelled method is served", "/data/projects?method=%47ET", true, true),
            ("another parameter is no tunnel", "/data/projects?methods=DELETE&x%6Dethod=DELETE", true, true),
            ("a malformed escape is no value Java reads", "/data/projects?method=DELETE%zz", true, true),
        ];
        for (why, path, want_url, want_raw) in cases {
            assert_eq!(allowed(&url, "GET", path, &[]), want_url, "URL: {why}: {path}");
            assert_eq!(allowed(&raw, "GET", path, &[]), want_raw, "NONE: {why}: {path}");
        }
        let header = [("x-http-method-override", "po\u{17F}t")];
        assert!(!allowed(&url, "GET", "/data/projects", &header), "an override header's value folds as Java's");
        assert!(allowed(&raw, "GET", "/data/projects", &header), "NONE: upper-cased in ASCII only");
    }

    #[test]
    fn decoding_a_tunnelled_method_never_grants_what_the_request_line_lacks() {
        let reads = engine("ALLOW", json!({"methods": ["GET", "HEAD"]}), json!({}));
        assert!(!allowed(&reads, "POST", "/data/projects?method=%47ET", &[]), "POST stays POST");
        assert!(allowed(&reads, "GET", "/data/projects?method=%47ET", &[]));
        assert!(!allowed(&reads, "GET", "/data/projects?%6Dethod=PUT", &[]));
    }

    #[test]
    fn an_override_header_spelt_with_underscores_is_the_override_header() {
        let deny = json!({"methods": ["DELETE"]});
        let loose = engine("DENY", deny.clone(), json!({}));
        let exact = engine("DENY", deny, json!({"overrideHeaderNames": "EXACT"}));
        // (why, header name, allowed under UNDERSCORE_AS_DASH, allowed under EXACT)
        let cases = [
            ("every dash an underscore", "x_http_method_override", false, true),
            ("some dashes underscores", "x-http_method-override", false, true),
            ("in capitals", "X_HTTP_METHOD", false, true),
            ("the third header", "x_method_override", false, true),
            ("the header itself", "X-HTTP-Method-Override", false, false),
            ("a longer name is another header", "x_http_method_overrides", true, true),
            ("only _ stands for -", "x.http.method.override", true, true),
        ];
        for (why, name, want_loose, want_exact) in cases {
            let header = [(name, "DELETE")];
            assert_eq!(allowed(&loose, "GET", "/data/projects", &header), want_loose, "{why}: {name}");
            assert_eq!(allowed(&exact, "GET", "/data/projects", &header), want_exact, "EXACT: {why}: {name}");
        }
    }

    #[test]
    fn a_rule_on_an_override_header_still_reads_the_exact_name() {
        let config = json!({"policies": [
            {"name": "p", "namespace": "xnat", "spec": {"action": "ALLOW", "rules": [{
                "when": [{"key": "request.headers[x-http-method-override]", "values": ["GET"]}]}]}},
            {"name": "d", "namespace": "xnat", "spec": {"action": "DENY", "rules": [{
                "to": [{"operation": {"methods": ["PUT"]}}]}]}}
        ]});
        let engine = crate::from_json(config.to_string().as_bytes()).expect("compiles");
        assert!(allowed(&engine, "GET", "/", &[("x-http-method-override", "GET")]));
        assert!(!allowed(&engine, "GET", "/", &[("x_http_method_override", "GET")]), "an ALLOW is not widened");
        assert!(!allowed(&engine, "GET", "/", &[("x-http-method-override", "GET"), ("x_http_method_override", "PUT")]));
    }

    #[test]
    fn restlet_routes_by_prefix_so_a_denied_path_takes_in_the_paths_below_it() {
        let issue = json!({"paths": ["/data/services/tokens/issue"]});
        let not_issue = json!({"notPaths": ["/data/services/tokens/issue"]});
        let exact = json!({"restletRouting": "EXACT"});
        let none = json!({});
        // (why, action, operation, settings, path, allowed)
        let cases = [
            ("a DENY takes in a trailing slash", "DENY", &issue, &none, "/data/services/tokens/issue/", false),
            ("a DENY takes in more segments", "DENY", &issue, &none, "/data/services/tokens/issue/user/bob", false),
            ("a DENY takes in the legacy prefix", "DENY", &issue, &none, "/REST/services/tokens/issue/user/bob", false),
            ("a DENY still denies the path", "DENY", &issue, &none, "/data/services/tokens/issue", false),
            ("a DENY leaves a longer name alone", "DENY", &issue, &none, "/data/services/tokens/issuer", true),
            ("a DENY leaves the parent alone", "DENY", &issue, &none, "/data/services/tokens", true),
            ("Restlet is case-sensitive", "DENY", &issue, &none, "/data/services/tokens/ISSUE/x", true),
            (
                "an ALLOW notPaths takes the paths below away",
                "ALLOW",
                &not_issue,
                &none,
                "/data/services/tokens/issue/user/bob",
                false,
            ),
            ("an ALLOW notPaths still allows elsewhere", "ALLOW", &not_issue, &none, "/data/projects", true),
            ("a DENY notPaths is not narrowed", "DENY", &not_issue, &none, "/data/services/tokens/issue/x", false),
            (
                "an ALLOW on the path grants only the path",
                "ALLOW",
                &issue,
                &none,
                "/data/services/tokens/issue/user/bob",
                false,
            ),
            ("an ALLOW on the path grants the path", "ALLOW", &issue, &none, "/data/services/tokens/issue", true),
            (
                "EXACT: a DENY leaves the paths below alone",
                "DENY",
                &issue,
                &exact,
                "/data/services/tokens/issue/user/bob",
                true,
            ),
            (
                "EXACT: an ALLOW notPaths allows below",
                "ALLOW",
                &not_issue,
                &exact,
                "/data/services/tokens/issue/",
                true,
            ),
        ];
        for (why, action, operation, settings, path, want) in cases {
            let engine = engine(action, operation.clone(), settings.clone());
            assert_eq!(allowed(&engine, "GET", path, &[]), want, "{why}: {path}");
        }
    }

    #[test]
    fn restlet_prefix_matching_covers_templates_and_only_restlets_paths() {
        let deny = |paths: Value| engine("DENY", json!({"paths": paths}), json!({}));
        let template = deny(json!(["/data/projects/{*}"]));
        assert!(!allowed(&template, "GET", "/data/projects/P1/subjects/S1", &[]), "a template takes in what is below");
        assert!(allowed(&template, "GET", "/data/projects", &[]));
        let slash = deny(json!(["/data/projects/"]));
        assert!(!allowed(&slash, "GET", "/data/projects/P1", &[]), "a path ending in / takes in what is below");
        let spring = deny(json!(["/xapi/users"]));
        assert!(allowed(&spring, "GET", "/xapi/users/bob", &[]), "Spring's paths are not Restlet's");
        let raw =
            engine("DENY", json!({"paths": ["/REST/services/tokens/issue"]}), json!({"pathNormalization": "NONE"}));
        assert!(!allowed(&raw, "GET", "/REST/services/tokens/issue/user/bob", &[]), "the legacy prefix, unaliased");
    }

    #[test]
    fn springs_servlet_prefixes_all_reach_the_xapi_handlers() {
        let users = json!({"paths": ["/xapi/users/*"]});
        let not_users = json!({"notPaths": ["/xapi/users/*"]});
        let exact = json!({"springPrefixes": "EXACT"});
        let none = json!({});
        // (why, action, operation, settings, path, allowed)
        let cases = [
            ("a DENY on /xapi/ denies /pages/", "DENY", &users, &none, "/pages/users/bob", false),
            ("a DENY on /xapi/ denies /admin/", "DENY", &users, &none, "/admin/users/bob", false),
            ("a DENY on /xapi/ denies /schemas/", "DENY", &users, &none, "/schemas/users/bob", false),
            ("a DENY on /xapi/ still denies /xapi/", "DENY", &users, &none, "/xapi/users/bob", false),
            ("a DENY leaves other handlers alone", "DENY", &users, &none, "/pages/siteConfig", true),
            ("a prefix of the servlet is no servlet", "DENY", &users, &none, "/page/users/bob", true),
            ("an ALLOW notPaths takes the twins away", "ALLOW", &not_users, &none, "/admin/users/bob", false),
            ("an ALLOW notPaths still allows elsewhere", "ALLOW", &not_users, &none, "/admin/siteConfig", true),
            ("an ALLOW on /xapi/ does not grant /pages/", "ALLOW", &users, &none, "/pages/users/bob", false),
            ("an ALLOW on /xapi/ grants /xapi/", "ALLOW", &users, &none, "/xapi/users/bob", true),
            ("a DENY notPaths is not narrowed", "DENY", &not_users, &none, "/pages/users/bob", false),
            ("EXACT: a DENY on /xapi/ leaves /pages/ alone", "DENY", &users, &exact, "/pages/users/bob", true),
            ("EXACT: an ALLOW notPaths allows /admin/", "ALLOW", &not_users, &exact, "/admin/users/bob", true),
        ];
        for (why, action, operation, settings, path, want) in cases {
            let engine = engine(action, operation.clone(), settings.clone());
            assert_eq!(allowed(&engine, "GET", path, &[]), want, "{why}: {path}");
        }
    }

    #[test]
    fn a_denied_spring_path_is_denied_under_every_servlet_prefix_whichever_is_written() {
        let deny = |paths: Value| engine("DENY", json!({"paths": paths}), json!({}));
        let pages = deny(json!(["/pages/siteConfig"]));
        for path in ["/xapi/siteConfig", "/admin/siteConfig", "/schemas/siteConfig", "/pages/siteConfig"] {
            assert!(!allowed(&pages, "GET", path, &[]), "{path}");
        }
        let template = deny(json!(["/xapi/users/{*}/roles"]));
        assert!(!allowed(&template, "GET", "/admin/users/bob/roles", &[]), "templates have twins too");
        assert!(allowed(&template, "GET", "/admin/users/bob", &[]));
    }

    #[test]
    fn spring_serves_a_handler_with_a_trailing_slash_and_its_registered_extensions() {
        let site = json!({"paths": ["/xapi/siteConfig"]});
        let not_site = json!({"notPaths": ["/xapi/siteConfig"]});
        let exact = json!({"springSuffixes": "EXACT"});
        let none = json!({});
        // (why, action, operation, settings, path, allowed)
        let cases = [
            ("a DENY takes in the trailing slash", "DENY", &site, &none, "/xapi/siteConfig/", false),
            ("a DENY takes in .json", "DENY", &site, &none, "/xapi/siteConfig.json", false),
            ("a DENY takes in .xml", "DENY", &site, &none, "/xapi/siteConfig.xml", false),
            ("and under Spring's other prefixes", "DENY", &site, &none, "/pages/siteConfig.json", false),
            ("a sibling is another handler", "DENY", &site, &none, "/xapi/siteConfig/buildInfo", true),
            ("an unregistered extension is no suffix", "DENY", &site, &none, "/xapi/siteConfig.html", true),
            ("both at once is no form Spring serves", "DENY", &site, &none, "/xapi/siteConfig.json/", true),
            (
                "an ALLOW notPaths takes the suffixed forms away",
                "ALLOW",
                &not_site,
                &none,
                "/xapi/siteConfig.xml",
                false,
            ),
            (
                "an ALLOW notPaths still allows the sibling",
                "ALLOW",
                &not_site,
                &none,
                "/xapi/siteConfig/buildInfo",
                true,
            ),
            ("an ALLOW on the path does not grant .json", "ALLOW", &site, &none, "/xapi/siteConfig.json", false),
            ("an ALLOW on the path grants the path", "ALLOW", &site, &none, "/xapi/siteConfig", true),
            ("a DENY notPaths is not narrowed", "DENY", &not_site, &none, "/xapi/siteConfig/", false),
            ("EXACT: a DENY leaves .json alone", "DENY", &site, &exact, "/xapi/siteConfig.json", true),
            ("EXACT: an ALLOW notPaths allows the slash", "ALLOW", &not_site, &exact, "/xapi/siteConfig/", true),
        ];
        for (why, action, operation, settings, path, want) in cases {
            let engine = engine(action, operation.clone(), settings.clone());
            assert_eq!(allowed(&engine, "GET", path, &[]), want, "{why}: {path}");
        }
    }

    #[test]
    fn spring_suffixes_apply_to_templates_and_only_to_springs_paths() {
        let deny = |paths: Value| engine("DENY", json!({"paths": paths}), json!({}));
        let template = deny(json!(["/xapi/users/{*}/roles"]));
        assert!(!allowed(&template, "GET", "/xapi/users/bob/roles.json", &[]));
        assert!(!allowed(&template, "GET", "/admin/users/bob/roles/", &[]));
        assert!(allowed(&template, "GET", "/xapi/users/bob/roles/admin", &[]), "a sibling");
        let restlet = engine("DENY", json!({"paths": ["/data/projects"]}), json!({"restletRouting": "EXACT"}));
        assert!(allowed(&restlet, "GET", "/data/projects.json", &[]), "Restlet's paths are not Spring's");
    }

    /// A configuration of one policy with one source (or a `when` condition), in a mesh of
    /// `cluster.local` with the alias `old.local`.
    fn sourced(action: &str, rule: Value, dry_run: bool, settings: &Value) -> crate::Engine {
        let mut config = json!({"trustDomain": "cluster.local", "trustDomainAliases": ["old.local"],
            "policies": [{"name": "p", "namespace": "reporting", "dryRun": dry_run,
            "spec": {"action": action, "rules": [rule]}}]});
        for (k, v) in settings.as_object().into_iter().flatten() {
            config[k] = v.clone();
        }
        crate::from_json(config.to_string().as_bytes()).unwrap_or_else(|e| panic!("{e}: {config}"))
    }

    fn decide(engine: &crate::Engine, peer: Option<&str>) -> crate::Decision {
        engine.evaluate(&Request {
            method: b"GET",
            path: b"/data/projects",
            peer: peer.map(str::as_bytes),
            ..Default::default()
        })
    }

    const MESH: &str = "spiffe://cluster.local/ns/reporting/sa/viewer";
    const ALIAS: &str = "spiffe://old.local/ns/reporting/sa/viewer";
    const FOREIGN: &str = "spiffe://other.example/ns/reporting/sa/viewer";
    const FOREIGN_ELSEWHERE: &str = "spiffe://other.example/ns/other/sa/viewer";

    #[test]
    fn a_namespace_grants_access_only_to_the_meshs_trust_domains_and_never_takes_less_away() {
        let any = json!({"peerTrustDomains": "ANY"});
        let none = json!({});
        let from = |source: Value| json!({"from": [{"source": source}]});
        let ns = from(json!({"namespaces": ["reporting"]}));
        let not_ns = from(json!({"notNamespaces": ["reporting"]}));
        let sa = from(json!({"serviceAccounts": ["reporting/viewer"]}));
        let not_sa = from(json!({"notServiceAccounts": ["reporting/viewer"]}));
        let when = |field: &str| json!({"when": [{"key": "source.namespace", field: ["reporting"]}]});
        let (when_values, when_not_values) = (when("values"), when("notValues"));
        // (why, action, rule, settings, peer, allowed)
        let cases = [
            ("an ALLOW namespaces grants the mesh's own peer", "ALLOW", &ns, &none, MESH, true),
            ("an ALLOW namespaces grants a peer of an alias domain", "ALLOW", &ns, &none, ALIAS, true),
            (
                "an ALLOW namespaces does not grant a foreign peer of that namespace",
                "ALLOW",
                &ns,
                &none,
                FOREIGN,
                false,
            ),
            ("ANY: an ALLOW namespaces grants a foreign peer, as Istio", "ALLOW", &ns, &any, FOREIGN, true),
            ("an ALLOW serviceAccounts grants the mesh's own peer", "ALLOW", &sa, &none, MESH, true),
            ("an ALLOW serviceAccounts grants a peer of an alias domain", "ALLOW", &sa, &none, ALIAS, true),
            (
                "an ALLOW serviceAccounts does not grant a foreign peer of that account",
                "ALLOW",
                &sa,
                &none,
                FOREIGN,
                false,
            ),
            ("ANY: an ALLOW serviceAccounts grants a foreign peer, as Istio", "ALLOW", &sa, &any, FOREIGN, true),
            ("an ALLOW notNamespaces denies the mesh's own peer in it", "ALLOW", &not_ns, &none, MESH, false),
            ("an ALLOW notNamespaces denies an alias peer in it", "ALLOW", &not_ns, &none, ALIAS, false),
            (
                "an ALLOW notNamespaces does not newly grant a foreign peer in it",
                "ALLOW",
                &not_ns,
                &none,
                FOREIGN,
                false,
            ),
            (
                "an ALLOW notNamespaces grants a foreign peer elsewhere, as Istio",
                "ALLOW",
                &not_ns,
                &none,
                FOREIGN_ELSEWHERE,
                true,
            ),
            ("ANY: an ALLOW notNamespaces denies a foreign peer in it", "ALLOW", &not_ns, &any, FOREIGN, false),
            (
                "an ALLOW notServiceAccounts does not newly grant a foreign peer of it",
                "ALLOW",
                &not_sa,
                &none,
                FOREIGN,
                false,
            ),
            ("an ALLOW notServiceAccounts denies the mesh's own peer of it", "ALLOW", &not_sa, &none, MESH, false),
            ("a DENY namespaces denies the mesh's own peer", "DENY", &ns, &none, MESH, false),
            ("a DENY namespaces denies an alias peer", "DENY", &ns, &none, ALIAS, false),
            ("a DENY namespaces still denies a foreign peer of that namespace", "DENY", &ns, &none, FOREIGN, false),
            ("ANY: a DENY namespaces denies a foreign peer", "DENY", &ns, &any, FOREIGN, false),
            ("a DENY serviceAccounts still denies a foreign peer of that account", "DENY", &sa, &none, FOREIGN, false),
            ("a DENY notNamespaces allows the mesh's own peer in it", "DENY", &not_ns, &none, MESH, true),
            ("a DENY notNamespaces allows an alias peer in it", "DENY", &not_ns, &none, ALIAS, true),
            ("a DENY notNamespaces denies a foreign peer of that namespace", "DENY", &not_ns, &none, FOREIGN, false),
            ("a DENY notNamespaces denies a foreign peer elsewhere", "DENY", &not_ns, &none, FOREIGN_ELSEWHERE, false),
            ("ANY: a DENY notNamespaces allows a foreign peer in it, as Istio", "DENY", &not_ns, &any, FOREIGN, true),
            ("a DENY notServiceAccounts allows the mesh's own peer of it", "DENY", &not_sa, &none, MESH, true),
            ("a DENY notServiceAccounts allows an alias peer of it", "DENY", &not_sa, &none, ALIAS, true),
            ("a DENY notServiceAccounts denies a foreign peer of that account", "DENY", &not_sa, &none, FOREIGN, false),
            ("ANY: a DENY notServiceAccounts allows a foreign peer, as Istio", "DENY", &not_sa, &any, FOREIGN, true),
            ("an ALLOW on source.namespace grants the mesh's own peer", "ALLOW", &when_values, &none, MESH, true),
            (
                "an ALLOW on source.namespace does not grant a foreign peer",
                "ALLOW",
                &when_values,
                &none,
                FOREIGN,
                false,
            ),
            (
                "a DENY on source.namespace notValues denies a foreign peer",
                "DENY",
                &when_not_values,
                &none,
                FOREIGN,
                false,
            ),
            ("a DENY on source.namespace notValues allows an alias peer", "DENY", &when_not_values, &none, ALIAS, true),
            ("a DENY on source.namespace still denies a foreign peer", "DENY", &when_values, &none, FOREIGN, false),
        ];
        for (why, action, rule, settings, peer, want) in cases {
            let engine = sourced(action, rule.clone(), false, settings);
            assert_eq!(decide(&engine, Some(peer)).verdict.is_allowed(), want, "{why}: {peer}");
        }
    }

    #[test]
    fn a_plaintext_or_malformed_peer_is_decided_as_before_whatever_the_trust_domains() {
        let ns = json!({"from": [{"source": {"namespaces": ["reporting"]}}]});
        let not_ns = json!({"from": [{"source": {"notNamespaces": ["reporting"]}}]});
        for settings in [json!({}), json!({"peerTrustDomains": "ANY"})] {
            let allow = sourced("ALLOW", ns.clone(), false, &settings);
            let deny = sourced("DENY", not_ns.clone(), false, &settings);
            assert!(!decide(&allow, None).verdict.is_allowed(), "plaintext has no namespace: {settings}");
            assert!(!decide(&deny, None).verdict.is_allowed(), "plaintext is in no namespace: {settings}");
            let odd = Some("spiffe://cluster.local/ns/reporting");
            assert!(!decide(&allow, odd).verdict.is_allowed(), "an unreadable identity grants nothing: {settings}");
            assert!(!decide(&deny, odd).verdict.is_allowed(), "an unreadable identity is denied: {settings}");
        }
    }

    #[test]
    fn audit_and_dry_run_count_a_foreign_peer_as_the_enforced_policies_would() {
        let not_ns = json!({"from": [{"source": {"notNamespaces": ["reporting"]}}]});
        let ns = json!({"from": [{"source": {"namespaces": ["reporting"]}}]});
        let none = json!({});
        let audit = sourced("AUDIT", not_ns.clone(), false, &none);
        assert!(decide(&audit, Some(FOREIGN)).audited, "an AUDIT notNamespaces audits a foreign peer");
        assert!(!decide(&audit, Some(ALIAS)).audited);
        let dry_deny = sourced("DENY", not_ns, true, &none);
        assert!(decide(&dry_deny, Some(FOREIGN)).dry_run_denied, "a dry-run DENY notNamespaces counts a foreign peer");
        assert!(!decide(&dry_deny, Some(MESH)).dry_run_denied);
        let dry_allow = sourced("ALLOW", ns, true, &none);
        assert!(decide(&dry_allow, Some(FOREIGN)).dry_run_denied, "a dry-run ALLOW namespaces would not grant it");
        assert!(!decide(&dry_allow, Some(ALIAS)).dry_run_denied);
    }

    #[test]
    fn an_indexed_allow_policy_grants_a_namespace_only_in_the_meshs_trust_domains() {
        let rules: Vec<Value> =
            (0..12).map(|i| json!({"from": [{"source": {"namespaces": [format!("ns{i}"), "reporting"]}}]})).collect();
        let config = json!({"trustDomain": "cluster.local", "trustDomainAliases": ["old.local"],
            "policies": [{"name": "p", "namespace": "reporting", "spec": {"action": "ALLOW", "rules": rules}}]});
        let engine = crate::from_json(config.to_string().as_bytes()).expect("compiles");
        assert!(decide(&engine, Some(MESH)).verdict.is_allowed());
        assert!(decide(&engine, Some(ALIAS)).verdict.is_allowed());
        assert!(!decide(&engine, Some(FOREIGN)).verdict.is_allowed());
    }
}

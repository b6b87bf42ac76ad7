//! What Istio generates for the same policies: Envoy's native RBAC HTTP filters (a DENY filter,
//! then an ALLOW filter, then an AUDIT one), following the shapes of Istio's golden outputs.
//! The A/B harness runs it as the baseline, and the differential tests as the anchor; it is
//! checked against Istio's own golden cases in `tests/istio_golden.rs`.

use serde_json::{json, Map, Value};
use xnat_guard_policy::config::{Action, Condition, Operation, PluginConfig, PolicyEntry, Rule, Source};

#[derive(Debug, thiserror::Error)]
#[error("{path}: {message}")]
pub struct TranslateError {
    pub path: String,
    pub message: String,
}

type Result<T, E = TranslateError> = std::result::Result<T, E>;

fn unsupported<T>(path: &str, message: &str) -> Result<T> {
    Err(TranslateError { path: path.into(), message: message.into() })
}

/// The RBAC filter entries (`name` + `typed_config`) in filter-chain order. PeerAuthentication
/// is not part of RBAC in Istio (it shapes the listener's TLS); it is ignored here.
pub fn filters(config: &PluginConfig) -> Result<Vec<Value>> {
    if !config.trust_domain_aliases.is_empty() {
        return unsupported("trustDomainAliases", "alias expansion is not translated");
    }
    let mut out = Vec::new();
    for (action, rbac_action, shadow_prefix) in [
        (Action::Deny, "DENY", "istio_dry_run_deny_"),
        (Action::Allow, "ALLOW", "istio_dry_run_allow_"),
        (Action::Audit, "LOG", "istio_dry_run_allow_"),
    ] {
        let mut enforced = Map::new();
        let mut shadow = Map::new();
        let mut any = false;
        for (i, entry) in config.policies.iter().enumerate() {
            if entry.spec.action.unwrap_or(Action::Allow) != action {
                continue;
            }
            any = true;
            let target = if entry.dry_run { &mut shadow } else { &mut enforced };
            policies(entry, &format!("policies[{i}].spec"), target)?;
        }
        if !any {
            continue;
        }
        let has_enforced =
            config.policies.iter().any(|p| !p.dry_run && p.spec.action.unwrap_or(Action::Allow) == action);
        let mut typed = Map::new();
        typed.insert("@type".into(), json!("type.googleapis.com/envoy.extensions.filters.http.rbac.v3.RBAC"));
        if has_enforced {
            typed.insert("rules".into(), json!({"action": rbac_action, "policies": enforced}));
        }
        if !shadow.is_empty() {
            typed.insert("shadow_rules".into(), json!({"action": rbac_action, "policies": shadow}));
        }
        typed.insert("shadow_rules_stat_prefix".into(), json!(shadow_prefix));
        out.push(json!({"name": "envoy.filters.http.rbac", "typed_config": typed}));
    }
    Ok(out)
}

fn policies(entry: &PolicyEntry, path: &str, out: &mut Map<String, Value>) -> Result<()> {
    let key = |r: usize| format!("ns[{}]-policy[{}]-rule[{r}]", entry.namespace, entry.name);
    let Some(rules) = &entry.spec.rules else {
        // Istio's "allow nothing": a policy that can never match.
        out.insert(
            key(0),
            json!({"permissions": [{"not_rule": {"any": true}}], "principals": [{"not_id": {"any": true}}]}),
        );
        return Ok(());
    };
    for (r, rule) in rules.iter().enumerate() {
        out.insert(key(r), translate_rule(rule, &entry.namespace, &format!("{path}.rules[{r}]"))?);
    }
    Ok(())
}

fn translate_rule(rule: &Rule, namespace: &str, path: &str) -> Result<Value> {
    let mut when_permissions = Vec::new();
    let mut when_principals = Vec::new();
    for (i, c) in rule.when.iter().flatten().enumerate() {
        condition(c, &format!("{path}.when[{i}]"), &mut when_permissions, &mut when_principals)?;
    }
    let operations = rule.to.iter().flatten().enumerate();
    let permission_sets = operations
        .map(|(i, t)| operation(&t.operation, &format!("{path}.to[{i}].operation")))
        .collect::<Result<Vec<_>>>()?;
    let sources = rule.from.iter().flatten().enumerate();
    let principal_sets = sources
        .map(|(i, f)| source(&f.source, namespace, &format!("{path}.from[{i}].source")))
        .collect::<Result<Vec<_>>>()?;
    let permissions = conjunctions(permission_sets, &when_permissions, "and_rules", "rules");
    let principals = conjunctions(principal_sets, &when_principals, "and_ids", "ids");
    Ok(json!({"permissions": permissions, "principals": principals}))
}

/// One AND per `to` (or `from`) element, each with the rule's `when` matchers of that side
/// appended; no elements means one AND of `any` and the `when` matchers.
fn conjunctions(sets: Vec<Vec<Value>>, when: &[Value], and_key: &str, inner: &str) -> Vec<Value> {
    let sets = if sets.is_empty() { vec![vec![json!({"any": true})]] } else { sets };
    sets.into_iter()
        .map(|mut items| {
            items.extend(when.iter().cloned());
            json!({and_key: {inner: items}})
        })
        .collect()
}

/// Istio's string forms as an Envoy StringMatcher; `*` is `None` (the caller picks presence or
/// the regex `.+`).
fn string_match(value: &str, prefix: &str, ignore_case: bool) -> Option<Value> {
    let mut m = if value == "*" {
        return None;
    } else if let Some(p) = value.strip_suffix('*') {
        json!({"prefix": format!("{prefix}{p}")})
    } else if let Some(s) = value.strip_prefix('*') {
        if prefix.is_empty() {
            json!({"suffix": s})
        } else {
            json!({"safe_regex": {"regex": format!("{}.*{}", regex_escape(prefix), regex_escape(s))}})
        }
    } else {
        json!({"exact": format!("{prefix}{value}")})
    };
    if ignore_case {
        m["ignore_case"] = json!(true);
    }
    Some(m)
}

fn regex_escape(s: &str) -> String {
    s.chars().flat_map(|c| if r"\.+*?()|[]{}^$".contains(c) { vec!['\\', c] } else { vec![c] }).collect()
}

fn any_of(items: Vec<Value>, or_key: &str) -> Value {
    let (or, inner) = if or_key == "rules" { ("or_rules", "rules") } else { ("or_ids", "ids") };
    json!({or: {inner: items}})
}

fn negate(v: Value, is_rule: bool) -> Value {
    if is_rule {
        json!({"not_rule": v})
    } else {
        json!({"not_id": v})
    }
}

/// Appends "any of `values`" (each built by `f`), negated for a `not*` field; nothing for an
/// empty list. `is_rule`: a permission (`or_rules`) rather than a principal (`or_ids`).
fn push_any(
    out: &mut Vec<Value>,
    values: &[String],
    negated: bool,
    is_rule: bool,
    f: &dyn Fn(&str) -> Result<Value>,
) -> Result<()> {
    if values.is_empty() {
        return Ok(());
    }
    let items = values.iter().map(|v| f(v)).collect::<Result<Vec<_>>>()?;
    let any = any_of(items, if is_rule { "rules" } else { "ids" });
    out.push(if negated { negate(any, is_rule) } else { any });
    Ok(())
}

fn header(name: &str, value: &str, ignore_case: bool) -> Value {
    match string_match(value, "", ignore_case) {
        Some(m) => json!({"header": {"name": name, "string_match": m}}),
        None => json!({"header": {"name": name, "present_match": true}}),
    }
}

fn cidr(value: &str, path: &str) -> Result<Value> {
    let (addr, len) = match value.split_once('/') {
        Some((a, l)) => (
            a.to_string(),
            l.parse::<u32>().map_err(|_| TranslateError { path: path.into(), message: format!("bad CIDR {value}") })?,
        ),
        None => (value.to_string(), if value.contains(':') { 128 } else { 32 }),
    };
    Ok(json!({"address_prefix": addr, "prefix_len": len}))
}

fn operation(op: &Operation, path: &str) -> Result<Vec<Value>> {
    let mut rules = Vec::new();
    let mut add = |values: &[String], negated: bool, f: &dyn Fn(&str) -> Result<Value>| {
        push_any(&mut rules, values, negated, true, f)
    };
    let host = |v: &str| Ok(header(":authority", v, true));
    let method = |v: &str| Ok(header(":method", v, false));
    let url_path = |v: &str| {
        if v.contains('{') {
            return unsupported(path, "path templates are not translated");
        }
        let m = string_match(v, "", false).unwrap_or_else(|| json!({"safe_regex": {"regex": ".+"}}));
        Ok(json!({"url_path": {"path": m}}))
    };
    let port = |v: &str| {
        v.parse::<u32>()
            .map(|p| json!({"destination_port": p}))
            .map_err(|_| TranslateError { path: path.into(), message: format!("bad port {v}") })
    };
    add(&op.hosts, false, &host)?;
    add(&op.not_hosts, true, &host)?;
    add(&op.ports, false, &port)?;
    add(&op.not_ports, true, &port)?;
    add(&op.methods, false, &method)?;
    add(&op.not_methods, true, &method)?;
    add(&op.paths, false, &url_path)?;
    add(&op.not_paths, true, &url_path)?;
    Ok(rules)
}

fn authenticated(m: Value) -> Value {
    json!({"authenticated": {"principal_name": m}})
}

fn principal(v: &str) -> Value {
    authenticated(string_match(v, "spiffe://", false).unwrap_or_else(|| json!({"safe_regex": {"regex": ".+"}})))
}

fn namespace(v: &str) -> Value {
    let pattern = match (v.strip_suffix('*'), v.strip_prefix('*')) {
        _ if v == "*" => ".*".to_string(),
        (Some(p), _) => format!("{}.*", regex_escape(p)),
        (_, Some(s)) => format!(".*{}", regex_escape(s)),
        _ => regex_escape(v),
    };
    authenticated(json!({"safe_regex": {"regex": format!(".*/ns/{pattern}/.*")}}))
}

fn source(s: &Source, policy_namespace: &str, path: &str) -> Result<Vec<Value>> {
    if !s.request_principals.is_empty() || !s.not_request_principals.is_empty() {
        return unsupported(path, "request principals need JWT");
    }
    let mut ids = Vec::new();
    let mut add = |values: &[String], negated: bool, f: &dyn Fn(&str) -> Result<Value>| {
        push_any(&mut ids, values, negated, false, f)
    };
    let sa = |v: &str| {
        let (ns, name) = v.split_once('/').unwrap_or((policy_namespace, v));
        Ok(authenticated(
            json!({"safe_regex": {"regex": format!("spiffe://.+/ns/{}/(.+/|)sa/{}(/.+)?", regex_escape(ns), regex_escape(name))}}),
        ))
    };
    let td = |v: &str| {
        Ok(authenticated(match (v.strip_suffix('*'), v.strip_prefix('*')) {
            _ if v == "*" => json!({"safe_regex": {"regex": "spiffe://[^/]*/.*"}}),
            (Some(p), _) => json!({"safe_regex": {"regex": format!("spiffe://{}[^/]*/.*", regex_escape(p))}}),
            (_, Some(sfx)) => json!({"safe_regex": {"regex": format!("spiffe://[^/]*{}/.*", regex_escape(sfx))}}),
            _ => json!({"prefix": format!("spiffe://{v}/")}),
        }))
    };
    let direct = |v: &str| Ok(json!({"direct_remote_ip": cidr(v, path)?}));
    let remote = |v: &str| Ok(json!({"remote_ip": cidr(v, path)?}));
    add(&s.principals, false, &|v| Ok(principal(v)))?;
    add(&s.not_principals, true, &|v| Ok(principal(v)))?;
    add(&s.namespaces, false, &|v| Ok(namespace(v)))?;
    add(&s.not_namespaces, true, &|v| Ok(namespace(v)))?;
    add(&s.service_accounts, false, &sa)?;
    add(&s.not_service_accounts, true, &sa)?;
    add(&s.trust_domains, false, &td)?;
    add(&s.not_trust_domains, true, &td)?;
    add(&s.ip_blocks, false, &direct)?;
    add(&s.not_ip_blocks, true, &direct)?;
    add(&s.remote_ip_blocks, false, &remote)?;
    add(&s.not_remote_ip_blocks, true, &remote)?;
    Ok(ids)
}

fn condition(c: &Condition, path: &str, permissions: &mut Vec<Value>, principals: &mut Vec<Value>) -> Result<()> {
    for (values, negated) in [(&c.values, false), (&c.not_values, true)] {
        if values.is_empty() {
            continue;
        }
        let key = c.key.as_str();
        let (items, is_rule): (Vec<Value>, bool) = match key {
            "source.ip" => (values.iter().map(|v| Ok(json!({"direct_remote_ip": cidr(v, path)?}))).collect::<Result<_>>()?, false),
            "remote.ip" => (values.iter().map(|v| Ok(json!({"remote_ip": cidr(v, path)?}))).collect::<Result<_>>()?, false),
            "destination.ip" => (values.iter().map(|v| Ok(json!({"destination_ip": cidr(v, path)?}))).collect::<Result<_>>()?, true),
            "source.namespace" => (values.iter().map(|v| namespace(v)).collect(), false),
            "source.principal" => (values.iter().map(|v| principal(v)).collect(), false),
            "destination.port" => (values.iter().map(|v| json!({"destination_port": v.parse::<u32>().unwrap_or(0)})).collect(), true),
            "connection.sni" => (
                values
                    .iter()
                    .map(|v| json!({"requested_server_name": string_match(v, "", false).unwrap_or_else(|| json!({"safe_regex": {"regex": ".+"}}))}))
                    .collect(),
                true,
            ),
            k if k.starts_with("request.headers[") => {
                let name = k.trim_start_matches("request.headers[").trim_end_matches(']').to_ascii_lowercase();
                (values.iter().map(|v| header(&name, v, false)).collect(), false)
            }
            _ => return unsupported(path, &format!("condition key {key} is not translated")),
        };
        let any = any_of(items, if is_rule { "rules" } else { "ids" });
        let item = if negated { negate(any, is_rule) } else { any };
        if is_rule {
            permissions.push(item);
        } else {
            principals.push(item);
        }
    }
    Ok(())
}

//! `istioctl proxy-config listeners` and `istioctl x authz check`, for the inbound side: the
//! filter chains of a sidecar's `virtualInbound` listener (port 15006, where iptables sends
//! every inbound connection), each with the destination port and transport protocol it matches
//! and so its TLS mode, and the authorization filters of each HTTP chain in the order Envoy runs
//! them (Envoy's RBAC from AuthorizationPolicies, the WasmPlugin's filter by ECDS).
//!
//! Read from istiod's `/debug/config_dump?proxyID=POD.NS`: the Envoy admin `ConfigDump` istiod
//! would send the proxy (the sidecar's own admin port listens on localhost only). Its
//! `ListenersConfigDump` holds `dynamicListeners[].activeState.listener`; proto JSON, so field
//! names are camelCase (snake_case is accepted as well).

use serde::Serialize;
use serde_json::Value;

/// The inbound listener's name in Istio's sidecar configuration.
pub const INBOUND_LISTENER: &str = "virtualInbound";

/// One filter chain of the inbound listener.
#[derive(Debug, Clone, PartialEq, Eq, Serialize)]
pub struct Chain {
    pub name: String,
    /// The destination port it matches; `None` for a catch-all chain.
    pub port: Option<u16>,
    /// `tls`, `raw_buffer`, or "" (any).
    pub transport: String,
    /// `mTLS` (a client certificate required), `TLS`, or `plaintext`.
    pub tls: String,
    /// `HTTP` (an HTTP connection manager) or `TCP`.
    pub protocol: String,
    /// The authorization filters in order, e.g. `envoy.filters.http.rbac (ALLOW, 1 policy)`.
    pub authz_filters: Vec<String>,
}

/// What a port accepts, from its chains.
#[derive(Debug, Clone, PartialEq, Eq, Serialize)]
pub struct PortTls {
    pub port: u16,
    /// `mTLS only`, `plaintext only`, or `mTLS or plaintext` (PERMISSIVE).
    pub accepts: String,
    pub authz_filters: Vec<String>,
}

#[derive(Debug, Clone, PartialEq, Eq, Serialize)]
pub struct InboundListener {
    pub chains: Vec<Chain>,
    pub ports: Vec<PortTls>,
}

/// The inbound listener in istiod's config dump for one proxy; an error says what was found
/// instead.
pub fn inbound(config_dump: &str) -> Result<InboundListener, String> {
    let dump: Value =
        serde_json::from_str(config_dump).map_err(|e| format!("istiod's config_dump is not JSON ({e})"))?;
    let configs = field(&dump, "configs", "configs").and_then(Value::as_array).cloned().unwrap_or_default();
    let mut listeners: Vec<&Value> = Vec::new();
    for c in &configs {
        let ty = c.get("@type").and_then(Value::as_str).unwrap_or("");
        if ty.ends_with("ListenersConfigDump") {
            for d in field(c, "dynamicListeners", "dynamic_listeners").and_then(Value::as_array).into_iter().flatten() {
                if let Some(l) = field(d, "activeState", "active_state").and_then(|s| s.get("listener")) {
                    listeners.push(l);
                }
            }
        } else if ty.ends_with("envoy.config.listener.v3.Listener") {
            // `?types=lds` answers with the listeners themselves.
            listeners.push(c);
        }
    }
    let listener = listeners
        .into_iter()
        .find(|l| l.get("name").and_then(Value::as_str) == Some(INBOUND_LISTENER))
        .ok_or_else(|| {
            format!("istiod's config_dump has no {INBOUND_LISTENER} listener: is the proxy a sidecar, and connected to this istiod?")
        })?;
    let chains: Vec<Chain> = field(listener, "filterChains", "filter_chains")
        .and_then(Value::as_array)
        .into_iter()
        .flatten()
        .map(chain)
        .collect();
    Ok(InboundListener { ports: ports(&chains), chains })
}

fn chain(c: &Value) -> Chain {
    let m = field(c, "filterChainMatch", "filter_chain_match");
    let port = m.and_then(|m| field(m, "destinationPort", "destination_port")).and_then(Value::as_u64);
    let transport =
        m.and_then(|m| field(m, "transportProtocol", "transport_protocol")).and_then(Value::as_str).unwrap_or("");
    let socket = field(c, "transportSocket", "transport_socket");
    let tls = match socket.and_then(|s| field(s, "typedConfig", "typed_config")) {
        Some(t) if t.get("@type").and_then(Value::as_str).is_some_and(|ty| ty.ends_with("DownstreamTlsContext")) => {
            let required = field(t, "requireClientCertificate", "require_client_certificate");
            if required.and_then(Value::as_bool).unwrap_or(false) {
                "mTLS"
            } else {
                "TLS"
            }
        }
        _ => "plaintext",
    };
    let filters = c.get("filters").and_then(Value::as_array).cloned().unwrap_or_default();
    let hcm = filters
        .iter()
        .find(|f| f.get("name").and_then(Value::as_str) == Some("envoy.filters.network.http_connection_manager"));
    let (protocol, authz_filters) = match hcm {
        Some(h) => {
            let http = field(h, "typedConfig", "typed_config")
                .and_then(|t| field(t, "httpFilters", "http_filters"))
                .and_then(Value::as_array)
                .cloned()
                .unwrap_or_default();
            ("HTTP", http.iter().filter_map(authz_filter).collect())
        }
        None => ("TCP", filters.iter().filter_map(authz_filter).collect()),
    };
    Chain {
        name: c.get("name").and_then(Value::as_str).unwrap_or("").to_string(),
        port: port.and_then(|p| u16::try_from(p).ok()),
        transport: transport.to_string(),
        tls: tls.to_string(),
        protocol: protocol.to_string(),
        authz_filters,
    }
}

/// An authorization filter, described; `None` for other filters. RBAC says its action and how
/// many policies (a shadow RBAC is Istio's AUDIT or dry-run), a filter configured by ECDS is
/// a WasmPlugin's.
fn authz_filter(f: &Value) -> Option<String> {
    let name = f.get("name").and_then(Value::as_str).unwrap_or("");
    let typed = field(f, "typedConfig", "typed_config");
    if name.ends_with(".rbac") || name.ends_with("filters.http.rbac") {
        let count = |rules: Option<&Value>| {
            rules.and_then(|r| r.get("policies")).and_then(Value::as_object).map_or(0, |p| p.len())
        };
        let rules = typed.and_then(|t| t.get("rules"));
        let shadow = typed.and_then(|t| field(t, "shadowRules", "shadow_rules"));
        let (action, n, kind) = match (rules, shadow) {
            (Some(r), _) => (r.get("action").and_then(Value::as_str).unwrap_or("ALLOW"), count(Some(r)), ""),
            (None, Some(s)) => (s.get("action").and_then(Value::as_str).unwrap_or("ALLOW"), count(Some(s)), "shadow "),
            (None, None) => ("ALLOW", 0, ""),
        };
        return Some(format!("{name} ({kind}{action}, {n} {})", if n == 1 { "policy" } else { "policies" }));
    }
    if name.contains("ext_authz") {
        return Some(format!("{name} (CUSTOM)"));
    }
    if field(f, "configDiscovery", "config_discovery").is_some() {
        return Some(format!("{name} (WasmPlugin, by ECDS)"));
    }
    let ty = typed.and_then(|t| t.get("@type")).and_then(Value::as_str).unwrap_or("");
    if ty.contains("wasm") || name.contains("wasm") {
        return Some(format!("{name} (wasm)"));
    }
    None
}

/// Per port, what its chains accept: a `tls` chain and a `raw_buffer` chain is PERMISSIVE.
fn ports(chains: &[Chain]) -> Vec<PortTls> {
    let mut ports: Vec<u16> = chains.iter().filter_map(|c| c.port).filter(|p| *p != 15006).collect();
    ports.sort_unstable();
    ports.dedup();
    ports
        .into_iter()
        .map(|port| {
            let of_port: Vec<&Chain> = chains.iter().filter(|c| c.port == Some(port)).collect();
            let mtls = of_port.iter().any(|c| c.tls != "plaintext");
            let plain = of_port.iter().any(|c| c.tls == "plaintext");
            let accepts = match (mtls, plain) {
                (true, true) => "mTLS or plaintext",
                (true, false) => "mTLS only",
                _ => "plaintext only",
            };
            let mut authz_filters: Vec<String> = Vec::new();
            for f in of_port.iter().flat_map(|c| c.authz_filters.iter()) {
                if !authz_filters.contains(f) {
                    authz_filters.push(f.clone());
                }
            }
            PortTls { port, accepts: accepts.into(), authz_filters }
        })
        .collect()
}

fn field<'a>(v: &'a Value, camel: &str, snake: &str) -> Option<&'a Value> {
    v.get(camel).or_else(|| v.get(snake))
}

#[cfg(test)]
pub(crate) mod tests {
    use super::*;
    use serde_json::json;

    /// An HTTP filter chain of `virtualInbound` as istiod 1.28 builds it: the metadata exchange,
    /// the RBAC of the namespace's ALLOW policy, the WasmPlugin's ECDS filter, the router.
    fn http_chain(port: u16, mtls: bool) -> Value {
        let mut c = json!({
            "name": format!("0.0.0.0_{port}"),
            "filterChainMatch": {"destinationPort": port, "transportProtocol": if mtls { "tls" } else { "raw_buffer" }},
            "filters": [{"name": "envoy.filters.network.http_connection_manager", "typedConfig": {
                "@type": "type.googleapis.com/envoy.extensions.filters.network.http_connection_manager.v3.HttpConnectionManager",
                "statPrefix": format!("inbound_0.0.0.0_{port}"),
                "httpFilters": [
                    {"name": "istio.metadata_exchange", "typedConfig": {"@type": "type.googleapis.com/udpa.type.v1.TypedStruct"}},
                    {"name": "envoy.filters.http.rbac", "typedConfig": {
                        "@type": "type.googleapis.com/envoy.extensions.filters.http.rbac.v3.RBAC",
                        "rules": {"policies": {"ns[xnat]-policy[xnat-all]-rule[0]": {}}}}},
                    {"name": "xnat.xnat-guard", "configDiscovery": {"configSource": {"ads": {}},
                        "typeUrls": ["type.googleapis.com/envoy.extensions.filters.http.wasm.v3.Wasm"]}},
                    {"name": "envoy.filters.http.router", "typedConfig": {"@type": "type.googleapis.com/envoy.extensions.filters.http.router.v3.Router"}}
                ]}}]
        });
        if mtls {
            c["transportSocket"] = json!({"name": "envoy.transport_sockets.tls", "typedConfig": {
                "@type": "type.googleapis.com/envoy.extensions.transport_sockets.tls.v3.DownstreamTlsContext",
                "requireClientCertificate": true}});
        }
        c
    }

    /// istiod's config dump of an AIS web pod under the runbook's policies: STRICT, 8080 DISABLE.
    pub(crate) fn runbook_config_dump() -> Value {
        json!({"configs": [
            {"@type": "type.googleapis.com/envoy.admin.v3.BootstrapConfigDump"},
            {"@type": "type.googleapis.com/envoy.admin.v3.ClustersConfigDump", "versionInfo": "2026-12-01T10:00:00Z/12"},
            {"@type": "type.googleapis.com/envoy.admin.v3.ListenersConfigDump", "versionInfo": "2026-12-01T10:00:00Z/12",
             "dynamicListeners": [
                {"name": "0.0.0.0_80", "activeState": {"listener": {"name": "0.0.0.0_80"}}},
                {"name": "virtualInbound", "activeState": {"versionInfo": "2026-12-01T10:00:00Z/12", "listener": {
                    "@type": "type.googleapis.com/envoy.config.listener.v3.Listener",
                    "name": "virtualInbound",
                    "address": {"socketAddress": {"address": "0.0.0.0", "portValue": 15006}},
                    "filterChains": [
                        {"name": "virtualInbound-blackhole", "filterChainMatch": {"destinationPort": 15006},
                         "filters": [{"name": "envoy.filters.network.tcp_proxy"}]},
                        http_chain(8080, false),
                        {"name": "virtualInbound", "filterChainMatch": {"transportProtocol": "tls"},
                         "transportSocket": {"name": "envoy.transport_sockets.tls", "typedConfig": {
                            "@type": "type.googleapis.com/envoy.extensions.transport_sockets.tls.v3.DownstreamTlsContext",
                            "requireClientCertificate": true}},
                         "filters": [{"name": "envoy.filters.network.rbac", "typedConfig": {
                            "@type": "type.googleapis.com/envoy.extensions.filters.network.rbac.v3.RBAC",
                            "rules": {"action": "DENY", "policies": {}}}},
                            {"name": "envoy.filters.network.tcp_proxy"}]}
                    ]}}}
             ]},
            {"@type": "type.googleapis.com/envoy.admin.v3.EcdsConfigDump"}
        ]})
    }

    #[test]
    fn the_inbound_chains_say_port_tls_mode_and_authz_filters_in_order() {
        let l = inbound(&runbook_config_dump().to_string()).unwrap();
        assert_eq!(l.chains.len(), 3);
        let web = l.chains.iter().find(|c| c.port == Some(8080)).unwrap();
        assert_eq!(
            (web.transport.as_str(), web.tls.as_str(), web.protocol.as_str()),
            ("raw_buffer", "plaintext", "HTTP")
        );
        assert_eq!(
            web.authz_filters,
            ["envoy.filters.http.rbac (ALLOW, 1 policy)", "xnat.xnat-guard (WasmPlugin, by ECDS)"]
        );
        let catch_all = l.chains.iter().find(|c| c.port.is_none()).unwrap();
        assert_eq!((catch_all.tls.as_str(), catch_all.protocol.as_str()), ("mTLS", "TCP"));
        assert_eq!(catch_all.authz_filters, ["envoy.filters.network.rbac (DENY, 0 policies)"]);
        assert_eq!(l.ports.len(), 1, "15006 is the listener's own port: {:?}", l.ports);
        assert_eq!((l.ports[0].port, l.ports[0].accepts.as_str()), (8080, "plaintext only"));
    }

    #[test]
    fn a_port_with_a_tls_and_a_raw_buffer_chain_is_permissive() {
        let chains = vec![chain(&http_chain(8443, true)), chain(&http_chain(8443, false))];
        assert_eq!(chains[0].tls, "mTLS");
        assert_eq!(ports(&chains)[0].accepts, "mTLS or plaintext");
        assert_eq!(ports(&chains[..1])[0].accepts, "mTLS only");
    }

    #[test]
    fn a_dump_without_the_inbound_listener_or_not_json_says_so() {
        assert!(inbound(r#"{"configs": []}"#).unwrap_err().contains("no virtualInbound listener"));
        assert!(inbound("Proxy not connected to this Pilot instance").unwrap_err().contains("not JSON"));
        let listener =
            json!({"configs": [runbook_config_dump()["configs"][2]["dynamicListeners"][1]["activeState"]["listener"]]});
        assert_eq!(inbound(&listener.to_string()).unwrap().chains.len(), 3, "?types=lds answers with the listeners");
    }
}

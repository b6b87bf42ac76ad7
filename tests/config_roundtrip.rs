//! The deployer writes `pluginConfig` with serde; the filter reads it with its own small JSON
//! reader. These properties check the two agree: whatever serde writes, the filter reads back
//! as the same configuration, and what serde refuses, the filter refuses too.

use proptest::prelude::*;
use xnat_guard_policy::config::{
    Action, AuthorizationPolicySpec, Condition, From, HeadMethod, MethodOverride, Mtls, MtlsMode, Operation,
    OverrideHeaderNames, PathAlias, PathNormalization, PeerAuthenticationSpec, PeerTrustDomains, PluginConfig,
    PolicyEntry, RestletRouting, Rule, Source, SpringPrefixes, SpringSuffixes, To, TunnelDecoding, WorkloadSelector,
};
use xnat_guard_policy::parse_json;

/// Any text, with a bias to what escapes: quotes, backslashes, controls, non-ASCII.
fn text() -> impl Strategy<Value = String> {
    prop_oneof![
        3 => "[a-z/.*:-]{0,12}",
        1 => any::<String>(),
        1 => prop::collection::vec(prop::sample::select(vec!['"', '\\', '\n', '\u{0}', '\u{1f}', 'é', '中', '😀', '\u{2028}', '/']), 0..8)
            .prop_map(|cs| cs.into_iter().collect()),
    ]
}

fn texts() -> impl Strategy<Value = Vec<String>> {
    prop::collection::vec(text(), 0..3)
}

fn source() -> impl Strategy<Value = Source> {
    prop::collection::vec(texts(), 14).prop_map(|mut l| {
        let mut next = || l.pop().unwrap_or_default();
        Source {
            principals: next(),
            not_principals: next(),
            request_principals: next(),
            not_request_principals: next(),
            namespaces: next(),
            not_namespaces: next(),
            service_accounts: next(),
            not_service_accounts: next(),
            trust_domains: next(),
            not_trust_domains: next(),
            ip_blocks: next(),
            not_ip_blocks: next(),
            remote_ip_blocks: next(),
            not_remote_ip_blocks: next(),
        }
    })
}

fn operation() -> impl Strategy<Value = Operation> {
    prop::collection::vec(texts(), 8).prop_map(|mut l| {
        let mut next = || l.pop().unwrap_or_default();
        Operation {
            hosts: next(),
            not_hosts: next(),
            ports: next(),
            not_ports: next(),
            methods: next(),
            not_methods: next(),
            paths: next(),
            not_paths: next(),
        }
    })
}

fn rule() -> impl Strategy<Value = Rule> {
    (
        prop::option::of(prop::collection::vec(source().prop_map(|source| From { source }), 0..2)),
        prop::option::of(prop::collection::vec(operation().prop_map(|operation| To { operation }), 0..2)),
        prop::option::of(prop::collection::vec(
            (text(), texts(), texts()).prop_map(|(key, values, not_values)| Condition { key, values, not_values }),
            0..2,
        )),
    )
        .prop_map(|(from, to, when)| Rule { from, to, when })
}

fn selector() -> impl Strategy<Value = WorkloadSelector> {
    prop::collection::btree_map(text(), text(), 0..3).prop_map(|match_labels| WorkloadSelector { match_labels })
}

fn mtls() -> impl Strategy<Value = Mtls> {
    prop::sample::select(vec![MtlsMode::Unset, MtlsMode::Disable, MtlsMode::Permissive, MtlsMode::Strict])
        .prop_map(|mode| Mtls { mode })
}

fn policy_entry() -> impl Strategy<Value = PolicyEntry> {
    (
        text(),
        text(),
        any::<bool>(),
        prop::option::of(selector()),
        prop::option::of(prop::sample::select(vec![Action::Allow, Action::Deny, Action::Audit, Action::Custom])),
        prop::option::of(prop::collection::vec(rule(), 0..3)),
    )
        .prop_map(|(name, namespace, dry_run, selector, action, rules)| PolicyEntry {
            name,
            namespace,
            dry_run,
            spec: AuthorizationPolicySpec { selector, action, rules, ..AuthorizationPolicySpec::default() },
        })
}

fn peer_authentication() -> impl Strategy<Value = PeerAuthenticationSpec> {
    (prop::option::of(selector()), prop::option::of(mtls()), prop::collection::btree_map(text(), mtls(), 0..3))
        .prop_map(|(selector, mtls, port_level_mtls)| PeerAuthenticationSpec { selector, mtls, port_level_mtls })
}

prop_compose! {
    // In two steps: proptest's tuples of strategies stop at twelve.
    fn policies_and_paths()(
        trust_domain in text(),
        trust_domain_aliases in texts(),
        peer_authentication in prop::option::of(peer_authentication()),
        policies in prop::collection::vec(policy_entry(), 0..3),
        path_normalization in prop::sample::select(vec![PathNormalization::Tomcat, PathNormalization::None]),
        path_aliases in prop::option::of(prop::collection::vec((text(), text()).prop_map(|(from, to)| PathAlias { from, to }), 0..3)),
        method_override in prop::sample::select(vec![MethodOverride::Judge, MethodOverride::Refuse, MethodOverride::Ignore]),
    ) -> PluginConfig {
        PluginConfig {
            trust_domain, trust_domain_aliases, peer_authentication, policies, path_normalization, path_aliases,
            method_override, ..PluginConfig::default()
        }
    }
}

prop_compose! {
    fn plugin_config()(
        base in policies_and_paths(),
        head_method in prop::sample::select(vec![HeadMethod::AsGet, HeadMethod::Exact]),
        tunnel_decoding in prop::sample::select(vec![TunnelDecoding::Url, TunnelDecoding::None]),
        override_header_names in prop::sample::select(vec![OverrideHeaderNames::UnderscoreAsDash, OverrideHeaderNames::Exact]),
        restlet_routing in prop::sample::select(vec![RestletRouting::StartsWith, RestletRouting::Exact]),
        spring_prefixes in prop::sample::select(vec![SpringPrefixes::ServletPrefixes, SpringPrefixes::Exact]),
        spring_suffixes in prop::sample::select(vec![SpringSuffixes::Registered, SpringSuffixes::Exact]),
        peer_trust_domains in prop::sample::select(vec![PeerTrustDomains::Mesh, PeerTrustDomains::Any]),
        config_digest in prop::option::of(text()),
    ) -> PluginConfig {
        PluginConfig {
            head_method, tunnel_decoding, override_header_names, restlet_routing, spring_prefixes, spring_suffixes,
            peer_trust_domains, config_digest, ..base
        }
    }
}

proptest! {
    #![proptest_config(ProptestConfig { cases: 512, ..ProptestConfig::default() })]

    #[test]
    fn the_filter_reads_back_what_serde_writes(config in plugin_config()) {
        let compact = serde_json::to_vec(&config).unwrap();
        prop_assert_eq!(parse_json(&compact).map_err(|e| e.to_string()), Ok(config.clone()));
        let pretty = serde_json::to_vec_pretty(&config).unwrap();
        prop_assert_eq!(parse_json(&pretty).map_err(|e| e.to_string()), Ok(config));
    }

    #[test]
    fn documents_serde_refuses_the_filter_refuses(config in plugin_config(), cut in 0usize..4096) {
        // Truncated documents: both must refuse every proper prefix.
        let text = serde_json::to_vec(&config).unwrap();
        let cut = cut % text.len();
        let prefix = &text[..cut];
        prop_assert!(serde_json::from_slice::<PluginConfig>(prefix).is_err());
        prop_assert!(parse_json(prefix).is_err(), "the filter read a truncated document: {}", String::from_utf8_lossy(prefix));
    }
}

#[test]
fn wrong_documents_are_refused_by_both_readers() {
    let documents = [
        r#"{"policy": []}"#,
        r#"{"policies": [{"name": "p", "namespace": "n", "spec": {"rulez": []}}]}"#,
        r#"{"policies": [{"name": "p", "namespace": "n"}]}"#,
        r#"{"policies": [{"name": "p", "namespace": "n", "spec": {"action": "allow"}}]}"#,
        r#"{"policies": [{"name": "p", "namespace": "n", "spec": {"rules": [{"to": [{"operation": {"methods": "GET"}}]}]}}]}"#,
        r#"{"policies": [{"name": "p", "namespace": "n", "spec": {"rules": [{"to": [{"operation": {"methods": [1]}}]}]}}]}"#,
        r#"{"peerAuthentication": {"mtls": {"mode": "strict"}}}"#,
        r#"{"peerAuthentication": {"portLevelMtls": {"8080": {"mode": "DISABLE", "x": 1}}}}"#,
        r#"{"trustDomain": "a", "trustDomain": "b"}"#,
        r#"{"methodOverride": "judge"}"#,
        r#"{"headMethod": "AsGet"}"#,
        r#"{"tunnelDecoding": "url"}"#,
        r#"{"overrideHeaderNames": "UNDERSCORE-AS-DASH"}"#,
        r#"{"restletRouting": "STARTSWITH"}"#,
        r#"{"springPrefixes": "servlet_prefixes"}"#,
        r#"{"springSuffixes": "Registered"}"#,
        r#"{"pathAliases": [{"from": "/a/"}]}"#,
        r#"{"policies": [] } x"#,
        r#"{"policies": [],}"#,
        "{\"trustDomain\": \"a\u{1}\"}",
        r#"{"trustDomain": "\ud800"}"#,
        r#"{"trustDomain": null}"#,
        r#"{"policies": null}"#,
        r#"{"policies": [{"name": "p", "namespace": "n", "dryRun": null, "spec": {}}]}"#,
        r#"{"policies": [{"name": "p", "namespace": "n", "spec": {"rules": [{"to": [{"operation": {"methods": null}}]}]}}]}"#,
    ];
    for doc in documents {
        assert!(serde_json::from_str::<PluginConfig>(doc).is_err(), "serde accepted {doc}");
        let refusal = parse_json(doc.as_bytes()).err().map(|e| e.to_string());
        assert!(refusal.is_some(), "the filter accepted {doc}");
    }
    // `null` for an optional field is no value, for both.
    for doc in [
        r#"{"peerAuthentication": null}"#,
        r#"{"policies": [{"name": "p", "namespace": "n", "spec": {"rules": null}}]}"#,
    ] {
        let by_serde = serde_json::from_str::<PluginConfig>(doc).expect("serde reads it");
        assert_eq!(parse_json(doc.as_bytes()).ok(), Some(by_serde), "{doc}");
    }
}

//! `istioctl proxy-status`, read from istiod's own view: its debug endpoint `/debug/syncz`
//! (port 15014) lists every proxy connected to that istiod, and per xDS type the nonce it last
//! sent and the one the proxy last acknowledged. Istio's `SyncStatus` (pilot/pkg/xds/debug.go,
//! 1.27 and 1.28) names them `proxy`, `istio_version`, `cluster_sent`/`cluster_acked`,
//! `listener_*`, `route_*`, `endpoint_*` and `extensionconfig_sent`/`extensionconfig_acked`
//! (ECDS: how a WasmPlugin's filter reaches Envoy). istioctl's judgement: nothing sent is NOT
//! SENT, acked equal to sent is SYNCED, anything else STALE: Envoy rejected the last push
//! (a NACK keeps the previous nonce acked) or has not answered yet. Newer istiod also lists,
//! per type URL, `resources.*.lastError`: the error of the proxy's last NACK, which tells a
//! rejection (NACK, quoted) from a push not answered yet.

use std::collections::BTreeMap;

use serde::{Deserialize, Serialize};

/// One xDS type of one proxy.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize)]
#[serde(rename_all = "SCREAMING_SNAKE_CASE")]
pub enum XdsState {
    Synced,
    /// Sent, never acknowledged.
    StaleNeverAcked,
    /// The proxy acknowledged an earlier push, not the last one.
    Stale,
    /// Not acknowledged, and istiod recorded the proxy's rejection.
    Nacked,
    NotSent,
}

impl XdsState {
    pub fn of(sent: &str, acked: &str) -> XdsState {
        match (sent, acked) {
            ("", _) => XdsState::NotSent,
            (s, a) if s == a => XdsState::Synced,
            (_, "") => XdsState::StaleNeverAcked,
            _ => XdsState::Stale,
        }
    }

    pub fn is_stale(self) -> bool {
        matches!(self, XdsState::Stale | XdsState::StaleNeverAcked | XdsState::Nacked)
    }
}

impl std::fmt::Display for XdsState {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.write_str(match self {
            XdsState::Synced => "SYNCED",
            XdsState::StaleNeverAcked => "STALE (never acknowledged)",
            XdsState::Stale => "STALE",
            XdsState::Nacked => "NACK",
            XdsState::NotSent => "NOT SENT",
        })
    }
}

/// A proxy's row of `istioctl proxy-status`.
#[derive(Debug, Clone, PartialEq, Eq, Serialize)]
pub struct ProxySync {
    /// `POD.NAMESPACE`, as istiod names a sidecar.
    pub proxy: String,
    /// The istiod pod it is connected to.
    pub istiod: String,
    pub istio_version: String,
    pub cds: XdsState,
    pub lds: XdsState,
    pub rds: XdsState,
    pub eds: XdsState,
    /// The extension configs: the WasmPlugin's filter.
    pub ecds: XdsState,
    /// For each type rejected (`ECDS`...), the error istiod recorded.
    #[serde(skip_serializing_if = "BTreeMap::is_empty")]
    pub nacks: BTreeMap<String, String>,
}

impl ProxySync {
    /// The types that are stale, by their xDS names.
    pub fn stale(&self) -> Vec<&'static str> {
        [("CDS", self.cds), ("LDS", self.lds), ("RDS", self.rds), ("EDS", self.eds), ("ECDS", self.ecds)]
            .into_iter()
            .filter(|(_, s)| s.is_stale())
            .map(|(n, _)| n)
            .collect()
    }
}

/// istiod's `SyncStatus`, only the fields judged.
#[derive(Deserialize)]
struct SyncStatus {
    #[serde(default)]
    proxy: String,
    #[serde(default)]
    istio_version: String,
    #[serde(default)]
    cluster_sent: String,
    #[serde(default)]
    cluster_acked: String,
    #[serde(default)]
    listener_sent: String,
    #[serde(default)]
    listener_acked: String,
    #[serde(default)]
    route_sent: String,
    #[serde(default)]
    route_acked: String,
    #[serde(default)]
    endpoint_sent: String,
    #[serde(default)]
    endpoint_acked: String,
    #[serde(default)]
    extensionconfig_sent: String,
    #[serde(default)]
    extensionconfig_acked: String,
    /// Newer istiod: per type URL.
    #[serde(default)]
    resources: BTreeMap<String, ResourceStatus>,
}

#[derive(Deserialize)]
struct ResourceStatus {
    #[serde(default)]
    sent: String,
    #[serde(default)]
    acked: String,
    #[serde(default, rename = "lastError")]
    last_error: String,
}

/// The xDS types judged, by istiod's type URL.
const TYPES: [(&str, &str); 5] = [
    ("CDS", "type.googleapis.com/envoy.config.cluster.v3.Cluster"),
    ("LDS", "type.googleapis.com/envoy.config.listener.v3.Listener"),
    ("RDS", "type.googleapis.com/envoy.config.route.v3.RouteConfiguration"),
    ("EDS", "type.googleapis.com/envoy.config.endpoint.v3.ClusterLoadAssignment"),
    ("ECDS", "type.googleapis.com/envoy.config.core.v3.TypedExtensionConfig"),
];

/// The proxies of `namespace` in the `/debug/syncz` answer of the istiod pod `istiod`, in
/// istiod's order; an error says what the answer was instead.
pub fn parse_syncz(text: &str, istiod: &str, namespace: &str) -> Result<Vec<ProxySync>, String> {
    let all: Vec<SyncStatus> = serde_json::from_str(text).map_err(|e| {
        let start: String = text.chars().take(80).collect();
        format!("istiod {istiod}'s /debug/syncz is not the JSON list Istio 1.27/1.28 serve ({e}): {start:?}")
    })?;
    let suffix = format!(".{namespace}");
    Ok(all
        .into_iter()
        .filter(|s| s.proxy.ends_with(&suffix))
        .map(|s| {
            // A recorded error counts only while the last push is unacknowledged.
            let nacks: BTreeMap<String, String> = TYPES
                .iter()
                .filter_map(|(name, url)| {
                    let r = s.resources.get(*url)?;
                    (!r.last_error.is_empty() && r.sent != r.acked).then(|| (name.to_string(), r.last_error.clone()))
                })
                .collect();
            let state = |name: &str, sent: &str, acked: &str| match XdsState::of(sent, acked) {
                st if st.is_stale() && nacks.contains_key(name) => XdsState::Nacked,
                st => st,
            };
            ProxySync {
                istiod: istiod.to_string(),
                istio_version: s.istio_version.clone(),
                cds: state("CDS", &s.cluster_sent, &s.cluster_acked),
                lds: state("LDS", &s.listener_sent, &s.listener_acked),
                rds: state("RDS", &s.route_sent, &s.route_acked),
                eds: state("EDS", &s.endpoint_sent, &s.endpoint_acked),
                ecds: state("ECDS", &s.extensionconfig_sent, &s.extensionconfig_acked),
                proxy: s.proxy.clone(),
                nacks,
            }
        })
        .collect())
}

/// The proxy ID istiod gives a sidecar.
pub fn proxy_id(pod: &str, namespace: &str) -> String {
    format!("{pod}.{namespace}")
}

/// What is wrong with one pod's sync, in words: not connected to any istiod, a type stale, or
/// (for a pod a WasmPlugin selects) no extension config sent.
pub fn pod_sync_problem(pod: &str, sync: Option<&ProxySync>, selected_by_a_wasm_plugin: bool) -> Option<String> {
    let Some(sync) = sync else {
        return Some(format!(
            "pod {pod}'s sidecar is not connected to istiod (no proxy {pod} in /debug/syncz): its configuration is \
             not being updated; check the istio-proxy log for xDS connection errors"
        ));
    };
    if !sync.nacks.is_empty() {
        let nacks: Vec<String> = sync.nacks.iter().map(|(t, e)| format!("{t}: {e}")).collect();
        return Some(format!(
            "pod {pod}: Envoy rejected (NACK) {} from istiod {}; it keeps the configuration it had before",
            nacks.join("; "),
            sync.istiod
        ));
    }
    let stale = sync.stale();
    if !stale.is_empty() {
        return Some(format!(
            "pod {pod}: {} from istiod {} not acknowledged (STALE): Envoy rejected the last push (a NACK) or has not \
             applied it yet; if it stays so, the istio-proxy log says what was rejected",
            stale.join(", "),
            sync.istiod
        ));
    }
    if selected_by_a_wasm_plugin && sync.ecds == XdsState::NotSent {
        return Some(format!(
            "pod {pod}: istiod sent no extension config (ECDS NOT SENT) although a WasmPlugin selects the pod: the \
             filter is not configured there; check the WasmPlugin's selector and istiod's log"
        ));
    }
    None
}

#[cfg(test)]
mod tests {
    use super::*;

    /// Two proxies as istiod 1.28 lists them: one synced, one whose ECDS push was not acked.
    const SYNCZ: &str = r#"[
      {"cluster_id":"Kubernetes","proxy":"xnat-xnat-web-0.xnat","proxy_type":"sidecar","istio_version":"1.28.0",
       "cluster_sent":"a1","cluster_acked":"a1","listener_sent":"b1","listener_acked":"b1",
       "route_sent":"c1","route_acked":"c1","endpoint_sent":"d1","endpoint_acked":"d1",
       "extensionconfig_sent":"e2","extensionconfig_acked":"e1"},
      {"cluster_id":"Kubernetes","proxy":"xnat-postgresql-0.xnat","proxy_type":"sidecar","istio_version":"1.28.0",
       "cluster_sent":"a1","cluster_acked":"a1","listener_sent":"b1","listener_acked":"b1",
       "route_sent":"c1","route_acked":"c1","endpoint_sent":"d1","endpoint_acked":"d1"},
      {"cluster_id":"Kubernetes","proxy":"istio-ingressgateway-5d8f.istio-system","proxy_type":"router",
       "istio_version":"1.28.0","cluster_sent":"a1","cluster_acked":"a1"}
    ]"#;

    #[test]
    fn states_are_istioctls_synced_stale_and_not_sent() {
        assert_eq!(XdsState::of("n2", "n2"), XdsState::Synced);
        assert_eq!(XdsState::of("n2", "n1"), XdsState::Stale);
        assert_eq!(XdsState::of("n2", ""), XdsState::StaleNeverAcked);
        assert_eq!(XdsState::of("", ""), XdsState::NotSent);
    }

    #[test]
    fn syncz_rows_are_the_namespaces_proxies_with_the_extension_config_state() {
        let rows = parse_syncz(SYNCZ, "istiod-7f9c-abcde", "xnat").unwrap();
        assert_eq!(rows.len(), 2, "the gateway in istio-system is not the namespace's");
        assert_eq!(rows[0].proxy, "xnat-xnat-web-0.xnat");
        assert_eq!((rows[0].cds, rows[0].lds, rows[0].ecds), (XdsState::Synced, XdsState::Synced, XdsState::Stale));
        assert_eq!(rows[0].stale(), ["ECDS"]);
        assert_eq!(rows[1].ecds, XdsState::NotSent);
        assert_eq!(rows[1].istio_version, "1.28.0");
    }

    #[test]
    fn a_stale_extension_config_and_a_missing_proxy_are_problems_and_an_unselected_pod_without_ecds_is_not() {
        let rows = parse_syncz(SYNCZ, "istiod-7f9c-abcde", "xnat").unwrap();
        let web = pod_sync_problem("xnat-xnat-web-0", Some(&rows[0]), true).unwrap();
        assert!(web.contains("ECDS from istiod istiod-7f9c-abcde not acknowledged (STALE)"), "{web}");
        assert_eq!(pod_sync_problem("xnat-postgresql-0", Some(&rows[1]), false), None);
        assert!(pod_sync_problem("xnat-postgresql-0", Some(&rows[1]), true).unwrap().contains("ECDS NOT SENT"));
        assert!(pod_sync_problem("xnat-xnat-web-1", None, true).unwrap().contains("not connected to istiod"));
    }

    /// Newer istiod adds, per type URL, the last NACK's error (`resources.*.lastError`).
    #[test]
    fn a_nack_with_istiods_last_error_is_named_and_quoted_and_an_old_error_after_an_ack_is_not() {
        let text = r#"[{"proxy":"xnat-xnat-web-0.xnat","istio_version":"1.28.1",
          "listener_sent":"l2","listener_acked":"l2","extensionconfig_sent":"x2","extensionconfig_acked":"x1",
          "resources":{
            "type.googleapis.com/envoy.config.core.v3.TypedExtensionConfig":{"sent":"x2","acked":"x1",
              "lastError":"Unable to create Wasm HTTP filter xnat.xnat-guard"},
            "type.googleapis.com/envoy.config.listener.v3.Listener":{"sent":"l2","acked":"l2","lastError":"old"}}}]"#;
        let rows = parse_syncz(text, "istiod-1", "xnat").unwrap();
        assert_eq!((rows[0].ecds, rows[0].lds), (XdsState::Nacked, XdsState::Synced));
        assert_eq!(rows[0].nacks["ECDS"], "Unable to create Wasm HTTP filter xnat.xnat-guard");
        assert!(!rows[0].nacks.contains_key("LDS"));
        let problem = pod_sync_problem("xnat-xnat-web-0", Some(&rows[0]), true).unwrap();
        assert!(
            problem.contains("Envoy rejected (NACK) ECDS: Unable to create Wasm HTTP filter xnat.xnat-guard"),
            "{problem}"
        );
    }

    #[test]
    fn an_answer_that_is_not_syncz_json_is_an_error_quoting_it() {
        let e = parse_syncz("<html>Pilot Debug Console</html>", "istiod-1", "xnat").unwrap_err();
        assert!(e.contains("istiod istiod-1's /debug/syncz is not the JSON list") && e.contains("<html>"), "{e}");
    }
}

//! Which Istio a cluster runs and which of its APIs it serves, judged from what the API server
//! returns ([`crate::apply::served`] and [`crate::apply::install`] read it):
//!
//! - [`ServedApis`]: the versions served for the kinds the deployer writes. PeerAuthentication,
//!   AuthorizationPolicy and DestinationRule are served as `v1` only from Istio 1.22 (before:
//!   `v1beta1`), and WasmPlugin's `failStrategy: FAIL_RELOAD` exists only from 1.27, so a plan
//!   rendered for today's Istio is rewritten to what this cluster takes, or refused with the fix.
//! - [`InstalledIstio`]: the version already installed, from Helm's release records, else
//!   istiod's image, else the CRDs' labels; `install` refuses jumps Istio does not support.

use std::fmt;

use base64::Engine;
use serde_json::Value;

use super::str_at;
use crate::kind::Kind;

/// API versions the deployer can write, newest first. The fields it sets are the same in each
/// (Istio promoted the APIs without changing them).
const KNOWN_VERSIONS: [&str; 4] = ["v1", "v1beta1", "v1alpha3", "v1alpha1"];

/// What the cluster serves of the Istio API groups the deployer writes.
#[derive(Debug, Clone, Default, PartialEq, Eq)]
pub struct ServedApis {
    /// `security.istio.io` versions (PeerAuthentication, AuthorizationPolicy).
    pub security: Vec<String>,
    /// `networking.istio.io` versions (DestinationRule).
    pub networking: Vec<String>,
    /// `extensions.istio.io` versions (WasmPlugin).
    pub extensions: Vec<String>,
    /// Whether the WasmPlugin CRD's schema takes `failStrategy: FAIL_RELOAD`; `None` when the
    /// CRD could not be read (the API server then judges the object itself).
    pub fail_reload: Option<bool>,
    /// The CRDs of the kinds the deployer writes, as the cluster has them (those it could
    /// read): a planned object is checked against the schema of the version it is sent as.
    pub crds: Vec<Value>,
}

/// A manifest the cluster cannot take as planned.
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
pub enum Unserved {
    #[error(
        "the cluster serves no {group} version the deployer can write for {kind} (served: {served}): \
         Istio's CRDs are missing or too old; run `deployer install` (or check `kubectl api-versions | grep istio.io`)"
    )]
    Kind { kind: &'static str, group: &'static str, served: String },
    #[error(
        "the cluster's {kind} CRD ({api_version}) has no field {}: the API server would drop it silently \
         (CRDs prune unknown fields), and the object would not do what the plan says. Upgrade Istio \
         (`deployer install`) or leave out the option that sets it",
        fields.join(", ")
    )]
    UnknownFields { kind: &'static str, api_version: String, fields: Vec<String> },
    #[error(
        "the cluster's WasmPlugin CRD does not take failStrategy FAIL_RELOAD (Istio 1.27 added it): \
         choose FAIL_CLOSE or FAIL_OPEN, or upgrade Istio first (`deployer install`)"
    )]
    FailReload,
}

impl ServedApis {
    /// From the API discovery documents (`GET /apis/security.istio.io` and so on: an
    /// `APIGroup`, `None` when the group is not served) and the WasmPlugin CRD, if readable.
    pub fn from_discovery(
        security: Option<&Value>,
        networking: Option<&Value>,
        extensions: Option<&Value>,
        wasm_plugin_crd: Option<&Value>,
    ) -> ServedApis {
        ServedApis {
            security: security.map(group_versions).unwrap_or_default(),
            networking: networking.map(group_versions).unwrap_or_default(),
            extensions: extensions.map(group_versions).unwrap_or_default(),
            fail_reload: wasm_plugin_crd.map(crd_accepts_fail_reload),
            crds: wasm_plugin_crd.into_iter().cloned().collect(),
        }
    }

    /// The versions served for an API group the deployer writes (empty for any other group).
    pub fn versions(&self, group: &str) -> &[String] {
        match group {
            "security.istio.io" => &self.security,
            "networking.istio.io" => &self.networking,
            "extensions.istio.io" => &self.extensions,
            _ => &[],
        }
    }

    /// `kind` at the newest version this cluster serves. Groups other than Istio's are
    /// returned unchanged: Kubernetes serves them at the versions the deployer uses.
    pub fn kind(&self, kind: Kind) -> Result<Kind, Unserved> {
        if !kind.group.ends_with(".istio.io") {
            return Ok(kind);
        }
        let served = self.versions(kind.group);
        match KNOWN_VERSIONS.iter().find(|v| served.iter().any(|s| s == *v)) {
            Some(version) => Ok(Kind { version, ..kind }),
            None => Err(Unserved::Kind {
                kind: kind.kind,
                group: kind.group,
                served: if served.is_empty() { "none".into() } else { served.join(", ") },
            }),
        }
    }

    /// Rewrites one planned object for this cluster: its `apiVersion` to the served one, and
    /// refuses a WasmPlugin with FAIL_RELOAD when the CRD lacks it. Returns the kind to apply.
    pub fn adapt(&self, kind: Kind, body: &mut Value) -> Result<Kind, Unserved> {
        let served = self.kind(kind)?;
        if kind == Kind::WASM_PLUGIN
            && str_at(body, &["spec", "failStrategy"]) == "FAIL_RELOAD"
            && self.fail_reload == Some(false)
        {
            return Err(Unserved::FailReload);
        }
        if let Some(schema) = self.schema(served) {
            let mut unknown = Vec::new();
            if let (Some(spec), Some(spec_schema)) = (body.get("spec"), schema["properties"].get("spec")) {
                unknown_fields(spec_schema, spec, ".spec", &mut unknown);
            }
            if !unknown.is_empty() {
                return Err(Unserved::UnknownFields {
                    kind: kind.kind,
                    api_version: served.api_version(),
                    fields: unknown,
                });
            }
        }
        if served != kind {
            body["apiVersion"] = Value::String(served.api_version());
        }
        Ok(served)
    }

    /// The OpenAPI schema the cluster's CRD has for this kind at this version, if it was read.
    fn schema(&self, kind: Kind) -> Option<&Value> {
        let crd = self.crds.iter().find(|c| {
            str_at(c, &["spec", "group"]) == kind.group && str_at(c, &["spec", "names", "kind"]) == kind.kind
        })?;
        let version = crd["spec"]["versions"].as_array()?.iter().find(|v| v["name"] == kind.version)?;
        version["schema"].get("openAPIV3Schema")
    }
}

/// The paths in `value` that `schema` has no place for, as structural pruning would drop them.
/// Where the schema keeps unknown fields, or maps any key to one schema, nothing is unknown.
fn unknown_fields(schema: &Value, value: &Value, path: &str, out: &mut Vec<String>) {
    if schema["x-kubernetes-preserve-unknown-fields"] == Value::Bool(true) {
        return;
    }
    match value {
        Value::Object(fields) => {
            let properties = schema["properties"].as_object();
            let any_key = schema.get("additionalProperties").filter(|a| a.is_object());
            for (key, field) in fields {
                let child = format!("{path}.{key}");
                match (properties.and_then(|p| p.get(key)), any_key) {
                    (Some(s), _) | (None, Some(s)) => unknown_fields(s, field, &child, out),
                    (None, None) if properties.is_some() => out.push(child),
                    // No properties named at all: an untyped object, not ours to judge.
                    (None, None) => {}
                }
            }
        }
        Value::Array(items) => {
            if let Some(item_schema) = schema.get("items") {
                for (i, item) in items.iter().enumerate() {
                    unknown_fields(item_schema, item, &format!("{path}[{i}]"), out);
                }
            }
        }
        _ => {}
    }
}

/// The versions an `APIGroup` discovery document lists (`versions[].version`).
pub fn group_versions(api_group: &Value) -> Vec<String> {
    api_group["versions"]
        .as_array()
        .map(|vs| vs.iter().filter_map(|v| v["version"].as_str().map(str::to_string)).collect())
        .unwrap_or_default()
}

/// Whether a WasmPlugin CRD's schema, in any served version, lists FAIL_RELOAD among
/// `spec.failStrategy`'s values.
pub fn crd_accepts_fail_reload(crd: &Value) -> bool {
    crd["spec"]["versions"].as_array().into_iter().flatten().filter(|v| v["served"] != Value::Bool(false)).any(|v| {
        let strategy = &v["schema"]["openAPIV3Schema"]["properties"]["spec"]["properties"]["failStrategy"];
        strategy["enum"].as_array().is_some_and(|values| values.iter().any(|e| e == "FAIL_RELOAD"))
    })
}

/// An Istio version's major and minor (`1.11.4`, `v1.28.0`, `~1.12.0`, `1.28.0-beta.1`).
pub fn minor_of(version: &str) -> Option<(u32, u32)> {
    let core = version.trim().trim_start_matches(['~', '^', '=', 'v']);
    let mut parts = core.split(['.', '-', '+']);
    Some((parts.next()?.parse().ok()?, parts.next()?.parse().ok()?))
}

/// Where the installed Istio's version was read.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum Evidence {
    /// Helm's record of a deployed release (`sh.helm.release.v1.NAME.vN`).
    HelmRelease { release: String, revision: u32 },
    /// The image tag of istiod's `discovery` container.
    IstiodImage { deployment: String, image: String },
    /// A label on an Istio CRD.
    CrdLabel { crd: String, label: String },
}

impl fmt::Display for Evidence {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        match self {
            Evidence::HelmRelease { release, revision } => write!(f, "helm release {release}, revision {revision}"),
            Evidence::IstiodImage { deployment, image } => write!(f, "Deployment {deployment} runs {image}"),
            Evidence::CrdLabel { crd, label } => write!(f, "CRD {crd} is labelled {label}"),
        }
    }
}

/// The Istio already on the cluster.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct InstalledIstio {
    pub version: String,
    pub evidence: Evidence,
}

impl InstalledIstio {
    pub fn minor(&self) -> Option<(u32, u32)> {
        minor_of(&self.version)
    }
}

/// The oldest Istio among Helm's deployed releases of Istio's charts, from the release
/// Secrets (`owner=helm`) of the Istio namespace: the oldest is what an upgrade starts from.
pub fn from_helm_release_secrets(secrets: &[Value]) -> Option<InstalledIstio> {
    secrets
        .iter()
        .filter(|s| str_at(s, &["metadata", "labels", "owner"]) == "helm")
        .filter(|s| str_at(s, &["metadata", "labels", "status"]) == "deployed")
        .filter_map(|s| {
            let release = str_at(s, &["metadata", "labels", "name"]);
            let record = decode_helm_release(str_at(s, &["data", "release"]))?;
            if !["base", "istiod"].contains(&str_at(&record, &["chart", "metadata", "name"])) {
                return None;
            }
            let version = str_at(&record, &["chart", "metadata", "version"]).to_string();
            let revision = str_at(s, &["metadata", "labels", "version"]).parse().unwrap_or(0);
            minor_of(&version)?;
            Some(InstalledIstio { version, evidence: Evidence::HelmRelease { release: release.into(), revision } })
        })
        .min_by_key(|i| i.minor())
}

/// Helm's release record as a Secret holds it: the API's base64 of Helm's own base64 of the
/// gzipped JSON (Helm 3's storage driver; older records may be plain JSON).
fn decode_helm_release(data: &str) -> Option<Value> {
    let b64 = base64::engine::general_purpose::STANDARD;
    let helm_encoded = b64.decode(data).ok()?;
    let compressed = b64.decode(helm_encoded).ok()?;
    let json = if compressed.starts_with(&[0x1f, 0x8b]) {
        let mut out = Vec::new();
        std::io::Read::read_to_end(&mut flate2::read::GzDecoder::new(compressed.as_slice()), &mut out).ok()?;
        out
    } else {
        compressed
    };
    serde_json::from_slice(&json).ok()
}

/// The oldest istiod among Deployments labelled `app=istiod` (one per revision), by the tag
/// of their `discovery` container's image (`docker.io/istio/pilot:1.11.4`).
pub fn from_istiod_deployments(deployments: &[Value]) -> Option<InstalledIstio> {
    deployments
        .iter()
        .filter_map(|d| {
            let containers = d["spec"]["template"]["spec"]["containers"].as_array()?;
            let image = containers.iter().find(|c| c["name"] == "discovery")?["image"].as_str()?;
            let tag = image.rsplit_once(':')?.1;
            minor_of(tag)?;
            let deployment = str_at(d, &["metadata", "name"]).to_string();
            Some(InstalledIstio {
                version: tag.into(),
                evidence: Evidence::IstiodImage { deployment, image: image.into() },
            })
        })
        .min_by_key(|i| i.minor())
}

/// The oldest version Istio's CRDs are labelled with: `app.kubernetes.io/version` (templated
/// CRDs, Istio 1.24 and later) or the base chart in `helm.sh/chart` (`base-1.24.0`). The plain
/// CRD files of earlier charts carry no version (`release: istio`), and say nothing here.
pub fn from_crd_labels(crds: &[Value]) -> Option<InstalledIstio> {
    crds.iter()
        .filter_map(|crd| {
            let name = str_at(crd, &["metadata", "name"]);
            let labels = &crd["metadata"]["labels"];
            let version = labels["app.kubernetes.io/version"].as_str().map(|v| ("app.kubernetes.io/version", v));
            let chart =
                labels["helm.sh/chart"].as_str().and_then(|c| c.strip_prefix("base-")).map(|v| ("helm.sh/chart", v));
            let (key, value) = version.or(chart)?;
            minor_of(value)?;
            Some(InstalledIstio {
                version: value.into(),
                evidence: Evidence::CrdLabel { crd: name.into(), label: format!("{key}={}", labels[key].as_str()?) },
            })
        })
        .min_by_key(|i| i.minor())
}

#[cfg(test)]
mod tests {
    use super::*;
    use serde_json::json;
    use std::io::Write;

    fn api_group(group: &str, versions: &[&str]) -> Value {
        let vs: Vec<Value> =
            versions.iter().map(|v| json!({"groupVersion": format!("{group}/{v}"), "version": v})).collect();
        json!({"kind": "APIGroup", "apiVersion": "v1", "name": group, "versions": vs,
               "preferredVersion": vs.first().cloned().unwrap_or(Value::Null)})
    }

    /// What Istio 1.21 serves (before the v1 APIs), and what 1.28 serves.
    fn istio_1_21() -> ServedApis {
        ServedApis::from_discovery(
            Some(&api_group("security.istio.io", &["v1beta1"])),
            Some(&api_group("networking.istio.io", &["v1beta1", "v1alpha3"])),
            Some(&api_group("extensions.istio.io", &["v1alpha1"])),
            Some(&wasm_crd(&["FAIL_CLOSE", "FAIL_OPEN"])),
        )
    }

    fn istio_1_28() -> ServedApis {
        ServedApis::from_discovery(
            Some(&api_group("security.istio.io", &["v1", "v1beta1"])),
            Some(&api_group("networking.istio.io", &["v1", "v1beta1", "v1alpha3"])),
            Some(&api_group("extensions.istio.io", &["v1alpha1"])),
            Some(&wasm_crd(&["FAIL_CLOSE", "FAIL_OPEN", "FAIL_RELOAD"])),
        )
    }

    fn wasm_crd(strategies: &[&str]) -> Value {
        json!({"metadata": {"name": "wasmplugins.extensions.istio.io"},
               "spec": {"versions": [{"name": "v1alpha1", "served": true, "schema": {"openAPIV3Schema": {"properties": {"spec": {"properties": {
                   "failStrategy": {"type": "string", "enum": strategies}}}}}}}]}})
    }

    fn wasm_plugin(strategy: &str) -> Value {
        json!({"apiVersion": "extensions.istio.io/v1alpha1", "kind": "WasmPlugin", "spec": {"failStrategy": strategy}})
    }

    #[test]
    fn a_cluster_before_istio_1_22_gets_v1beta1_policies_and_destination_rules() {
        let served = istio_1_21();
        let mut pa = json!({"apiVersion": "security.istio.io/v1", "kind": "PeerAuthentication"});
        assert_eq!(served.adapt(Kind::PEER_AUTHENTICATION, &mut pa).unwrap().version, "v1beta1");
        assert_eq!(pa["apiVersion"], "security.istio.io/v1beta1");
        assert_eq!(served.kind(Kind::AUTHORIZATION_POLICY).unwrap().api_version(), "security.istio.io/v1beta1");
        assert_eq!(served.kind(Kind::DESTINATION_RULE).unwrap().api_version(), "networking.istio.io/v1beta1");
    }

    #[test]
    fn a_cluster_serving_v1_keeps_the_plan_as_rendered() {
        let served = istio_1_28();
        for kind in [Kind::PEER_AUTHENTICATION, Kind::AUTHORIZATION_POLICY, Kind::DESTINATION_RULE, Kind::WASM_PLUGIN] {
            let mut body = json!({"apiVersion": kind.api_version()});
            assert_eq!(served.adapt(kind, &mut body).unwrap(), kind);
            assert_eq!(body["apiVersion"], kind.api_version().as_str());
        }
        assert_eq!(served.kind(Kind::NAMESPACE).unwrap(), Kind::NAMESPACE, "Kubernetes' own kinds are left alone");
    }

    #[test]
    fn fail_reload_is_refused_where_the_crd_lacks_it_and_kept_where_it_has_it() {
        let err = istio_1_21().adapt(Kind::WASM_PLUGIN, &mut wasm_plugin("FAIL_RELOAD")).unwrap_err();
        assert_eq!(err, Unserved::FailReload);
        assert!(err.to_string().contains("Istio 1.27") && err.to_string().contains("FAIL_CLOSE"), "{err}");
        assert!(istio_1_21().adapt(Kind::WASM_PLUGIN, &mut wasm_plugin("FAIL_CLOSE")).is_ok());
        assert!(istio_1_28().adapt(Kind::WASM_PLUGIN, &mut wasm_plugin("FAIL_RELOAD")).is_ok());
        let unknown = ServedApis { fail_reload: None, ..istio_1_21() };
        assert!(
            unknown.adapt(Kind::WASM_PLUGIN, &mut wasm_plugin("FAIL_RELOAD")).is_ok(),
            "unread CRD: the server judges"
        );
    }

    #[test]
    fn istio_1_11_has_no_wasm_plugin_api_and_says_to_install() {
        let served = ServedApis::from_discovery(
            Some(&api_group("security.istio.io", &["v1beta1"])),
            Some(&api_group("networking.istio.io", &["v1beta1", "v1alpha3"])),
            None,
            None,
        );
        let err = served.kind(Kind::WASM_PLUGIN).unwrap_err().to_string();
        assert!(
            err.contains("WasmPlugin") && err.contains("served: none") && err.contains("deployer install"),
            "{err}"
        );
    }

    #[test]
    fn the_shared_crds_of_a_recent_istio_take_fail_reload() {
        let wasm = shared_crd("WasmPlugin");
        assert!(crd_accepts_fail_reload(&wasm));
        assert!(!crd_accepts_fail_reload(&wasm_crd(&["FAIL_CLOSE", "FAIL_OPEN"])));
    }

    /// The shared reference CRDs (a recent Istio's), one by its kind.
    fn shared_crd(kind: &str) -> Value {
        let shared = std::env::var_os("XNAT_GUARD_SHARED")
            .map(std::path::PathBuf::from)
            .unwrap_or_else(|| std::path::Path::new(env!("CARGO_MANIFEST_DIR")).join("../../shared"));
        let path = shared.join("istio/crd-all.gen.yaml");
        let text = std::fs::read_to_string(&path)
            .unwrap_or_else(|e| panic!("FAILED, not skipped: Istio's CRDs at {}: {e}", path.display()));
        let found = serde_yaml::Deserializer::from_str(&text)
            .map(|d| <Value as serde::Deserialize>::deserialize(d).unwrap())
            .find(|crd| crd["spec"]["names"]["kind"] == kind);
        found.unwrap()
    }

    #[test]
    fn a_field_the_clusters_crd_lacks_is_refused_since_the_api_server_would_drop_it() {
        let mut older = shared_crd("WasmPlugin");
        // An Istio whose WasmPlugin schema has no failStrategy (it came in 1.20).
        for v in older["spec"]["versions"].as_array_mut().unwrap() {
            v["schema"]["openAPIV3Schema"]["properties"]["spec"]["properties"]
                .as_object_mut()
                .unwrap()
                .remove("failStrategy");
        }
        let served = ServedApis { crds: vec![older], ..istio_1_28() };
        let mut plugin = json!({"apiVersion": "extensions.istio.io/v1alpha1", "kind": "WasmPlugin",
                                "spec": {"url": "oci://r/x:1", "failStrategy": "FAIL_CLOSE", "phase": "AUTHZ"}});
        let err = served.adapt(Kind::WASM_PLUGIN, &mut plugin).unwrap_err();
        let text = err.to_string();
        assert!(
            text.contains("WasmPlugin CRD (extensions.istio.io/v1alpha1) has no field .spec.failStrategy"),
            "{text}"
        );
        assert!(text.contains("drop it silently") && text.contains("deployer install"), "{text}");
    }

    #[test]
    fn what_the_plan_renders_fits_the_schemas_of_a_recent_istio() {
        let kinds = ["WasmPlugin", "PeerAuthentication", "DestinationRule", "AuthorizationPolicy"];
        let served = ServedApis { crds: kinds.iter().map(|k| shared_crd(k)).collect(), ..istio_1_28() };
        let mut pa = json!({"apiVersion": "security.istio.io/v1", "kind": "PeerAuthentication",
                            "spec": {"selector": {"matchLabels": {"app": "xnat-web"}}, "mtls": {"mode": "STRICT"},
                                     "portLevelMtls": {"8080": {"mode": "DISABLE"}}}});
        assert!(served.adapt(Kind::PEER_AUTHENTICATION, &mut pa).is_ok());
        let mut dr = json!({"apiVersion": "networking.istio.io/v1", "kind": "DestinationRule",
                            "spec": {"host": "xnat-xnat-web", "trafficPolicy": {"portLevelSettings": [{"port": {"number": 80}, "tls": {"mode": "DISABLE"}}]}}});
        assert!(served.adapt(Kind::DESTINATION_RULE, &mut dr).is_ok());
        let mut bogus = json!({"apiVersion": "networking.istio.io/v1", "kind": "DestinationRule",
                               "spec": {"host": "x", "trafficPolicy": {"portLevelSettings": [{"port": {"numbr": 80}}]}}});
        let err = served.adapt(Kind::DESTINATION_RULE, &mut bogus).unwrap_err().to_string();
        assert!(err.contains(".spec.trafficPolicy.portLevelSettings[0].port.numbr"), "{err}");
    }

    #[test]
    fn istio_versions_are_read_with_their_minor() {
        assert_eq!(minor_of("1.11.4"), Some((1, 11)));
        assert_eq!(minor_of("~1.12.0"), Some((1, 12)));
        assert_eq!(minor_of("1.28.0-beta.1"), Some((1, 28)));
        assert_eq!(minor_of("latest"), None);
    }

    /// A Helm 3 release Secret as the API returns it.
    fn release_secret(release: &str, revision: u32, status: &str, chart: &str, version: &str) -> Value {
        let record = json!({"name": release, "chart": {"metadata": {"name": chart, "version": version}}});
        let mut gz = flate2::write::GzEncoder::new(Vec::new(), flate2::Compression::default());
        gz.write_all(record.to_string().as_bytes()).unwrap();
        let b64 = base64::engine::general_purpose::STANDARD;
        let data = b64.encode(b64.encode(gz.finish().unwrap()));
        json!({"metadata": {"name": format!("sh.helm.release.v1.{release}.v{revision}"),
                            "labels": {"owner": "helm", "name": release, "status": status, "version": revision.to_string()}},
               "type": "helm.sh/release.v1", "data": {"release": data}})
    }

    #[test]
    fn the_installed_istio_is_the_oldest_deployed_release_of_its_charts() {
        let secrets = [
            release_secret("istio-base", 1, "superseded", "base", "1.10.0"),
            release_secret("istio-base", 2, "deployed", "base", "1.11.4"),
            release_secret("istiod", 1, "deployed", "istiod", "1.12.1"),
            release_secret("xnat", 3, "deployed", "xnat", "1.1.0"),
        ];
        let found = from_helm_release_secrets(&secrets).unwrap();
        assert_eq!(found.version, "1.11.4");
        assert_eq!(found.evidence.to_string(), "helm release istio-base, revision 2");
        assert_eq!(from_helm_release_secrets(&secrets[3..]), None, "another chart's release is not Istio");
    }

    #[test]
    fn without_helm_records_istiod_image_then_crd_labels_tell_the_version() {
        let istiod = |name: &str, image: &str| json!({"metadata": {"name": name}, "spec": {"template": {"spec": {"containers": [{"name": "discovery", "image": image}]}}}});
        let found = from_istiod_deployments(&[
            istiod("istiod-1-28", "docker.io/istio/pilot:1.28.0"),
            istiod("istiod", "docker.io/istio/pilot:1.27.3"),
        ])
        .unwrap();
        assert_eq!(
            (found.version.as_str(), found.evidence.to_string()),
            ("1.27.3", "Deployment istiod runs docker.io/istio/pilot:1.27.3".into())
        );
        let crd = |labels: Value| json!({"metadata": {"name": "wasmplugins.extensions.istio.io", "labels": labels}});
        let templated = crd(json!({"app.kubernetes.io/version": "1.24.2", "helm.sh/chart": "base-1.24.2"}));
        assert_eq!(from_crd_labels(&[templated]).unwrap().version, "1.24.2");
        let plain_file = crd(json!({"app": "istio-pilot", "chart": "istio", "heritage": "Tiller", "release": "istio"}));
        assert_eq!(from_crd_labels(&[plain_file]), None, "a pre-1.24 CRD file names no version");
    }
}

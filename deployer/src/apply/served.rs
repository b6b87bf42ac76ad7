//! Reads which Istio APIs the cluster serves: the API discovery documents of Istio's groups
//! (`GET /apis/security.istio.io`, ...) and the CRDs of the kinds the deployer writes, whose
//! schemas say which fields the cluster keeps (and whether FAIL_RELOAD exists).
//! [`crate::inspect::served::ServedApis`] judges what they say.

use k8s_openapi::apiextensions_apiserver::pkg::apis::apiextensions::v1::CustomResourceDefinition;
use kube::api::Api;
use serde_json::Value;

use super::{api_error, ApplyError, Cluster, Result};
use crate::inspect::served::ServedApis;
use crate::kind::Kind;
use crate::plan::install::REQUIRED_CRDS;
use crate::plan::Manifest;

/// The Istio API groups the deployer writes to, in the order they are read.
const ISTIO_GROUPS: [&str; 3] = ["security.istio.io", "networking.istio.io", "extensions.istio.io"];

/// What the cluster serves of Istio's APIs. A group the server does not serve (404) is simply
/// absent; a CRD the caller may not read (403, a namespace-scoped user) leaves its schema,
/// and FAIL_RELOAD, to the API server to judge on apply.
pub async fn served_apis(cluster: &Cluster) -> Result<ServedApis> {
    let mut groups = Vec::new();
    for group in ISTIO_GROUPS {
        groups.push(match cluster.get_text(&format!("/apis/{group}")).await {
            Ok(text) => serde_json::from_str::<Value>(&text).ok(),
            Err(kube::Error::Api(s)) if s.code == 404 => None,
            Err(e) => return Err(api_error(format!("asking the API server which {group} versions it serves"))(e)),
        });
    }
    // The CRDs of the kinds the deployer writes: their schemas judge what it sends.
    let api: Api<CustomResourceDefinition> = Api::all(cluster.client.clone());
    let mut crds = Vec::new();
    for kind in REQUIRED_CRDS {
        let name = kind.crd_name();
        match api.get_opt(&name).await {
            Ok(crd) => crds.extend(crd.and_then(|c| serde_json::to_value(c).ok())),
            Err(kube::Error::Api(s)) if s.code == 403 => {}
            Err(e) => return Err(api_error(format!("reading CRD {name}"))(e)),
        }
    }
    let wasm_plugin_crd = crds.iter().find(|c| c["metadata"]["name"] == Kind::WASM_PLUGIN.crd_name().as_str()).cloned();
    let served = ServedApis::from_discovery(
        groups[0].as_ref(),
        groups[1].as_ref(),
        groups[2].as_ref(),
        wasm_plugin_crd.as_ref(),
    );
    Ok(ServedApis { crds, ..served })
}

/// One planned manifest as this cluster takes it: Istio's kinds at the newest API version it
/// serves (`v1beta1` before Istio 1.22), or refused naming the object. Meant for the apply call
/// itself, so the plan keeps its `Kind` constants (which compare by version too).
pub fn adapted(served: &ServedApis, m: &Manifest) -> Result<Manifest> {
    let mut adapted = m.clone();
    adapted.kind = served
        .adapt(m.kind, &mut adapted.body)
        .map_err(|e| ApplyError::Failed(format!("{}: {e}; nothing was applied", m.describe())))?;
    Ok(adapted)
}

/// A plan's manifests as this cluster takes them ([`adapted`], each), read once: the first the
/// cluster cannot take is refused before anything is applied.
pub async fn for_cluster(cluster: &Cluster, manifests: &[Manifest]) -> Result<Vec<Manifest>> {
    let served = served_apis(cluster).await?;
    manifests.iter().map(|m| adapted(&served, m)).collect()
}

//! Reading the mesh's trust domain from the cluster ([`crate::inspect::mesh`] judges it).

use k8s_openapi::api::core::v1::ConfigMap;
use kube::api::Api;

use super::{api_error, Cluster, Result};
use crate::inspect::mesh::{trust_domains, ClusterMesh, MESH_CONFIG_MAP};

/// The trust domain and aliases of the mesh whose istiod runs in `istio_namespace`. A missing
/// or forbidden ConfigMap is [`ClusterMesh::Unknown`], saying why; other API errors fail.
pub async fn read(cluster: &Cluster, istio_namespace: &str) -> Result<ClusterMesh> {
    let api: Api<ConfigMap> = Api::namespaced(cluster.client.clone(), istio_namespace);
    let from = format!("ConfigMap {istio_namespace}/{MESH_CONFIG_MAP}");
    let map = match api.get_opt(MESH_CONFIG_MAP).await {
        Ok(Some(map)) => map,
        Ok(None) => {
            return Ok(ClusterMesh::Unknown(format!(
                "there is no {from}: Istio is not installed there, or is installed with a revision (istio-REVISION)"
            )))
        }
        Err(kube::Error::Api(s)) if s.code == 403 => {
            return Ok(ClusterMesh::Unknown(format!("your credentials may not read {from}")))
        }
        Err(e) => return Err(api_error(format!("reading {from}"))(e)),
    };
    let text = map.data.as_ref().and_then(|d| d.get("mesh")).cloned().unwrap_or_default();
    match trust_domains(&text) {
        Ok((trust_domain, aliases)) => Ok(ClusterMesh::Found { trust_domain, aliases, from }),
        Err(why) => Ok(ClusterMesh::Unknown(format!("{from}: {why}"))),
    }
}

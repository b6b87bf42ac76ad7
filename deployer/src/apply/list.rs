//! Listing what runs in a namespace: its pods, and the Deployments and StatefulSets that own them.

use k8s_openapi::api::apps::v1::{Deployment, StatefulSet};
use k8s_openapi::api::core::v1::Pod;
use kube::api::{Api, ListParams};

use super::{api_error, Cluster, Result};
use crate::inspect::controllers::Controller;

/// The namespace's Deployments, then its StatefulSets.
pub async fn list_controllers(cluster: &Cluster, namespace: &str) -> Result<Vec<Controller>> {
    let deployments: Api<Deployment> = Api::namespaced(cluster.client.clone(), namespace);
    let statefulsets: Api<StatefulSet> = Api::namespaced(cluster.client.clone(), namespace);
    let lp = ListParams::default();
    let mut out: Vec<Controller> = deployments
        .list(&lp)
        .await
        .map_err(api_error(format!("listing Deployments in {namespace}")))?
        .items
        .into_iter()
        .map(Controller::Deployment)
        .collect();
    out.extend(
        statefulsets
            .list(&lp)
            .await
            .map_err(api_error(format!("listing StatefulSets in {namespace}")))?
            .items
            .into_iter()
            .map(Controller::StatefulSet),
    );
    Ok(out)
}

pub async fn list_pods(cluster: &Cluster, namespace: &str) -> Result<Vec<Pod>> {
    let api: Api<Pod> = Api::namespaced(cluster.client.clone(), namespace);
    Ok(api.list(&ListParams::default()).await.map_err(api_error(format!("listing pods in {namespace}")))?.items)
}

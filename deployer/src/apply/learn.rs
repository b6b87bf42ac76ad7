//! `deployer learn`'s reads: the pods the filter runs in, and each one's records from its
//! sidecar's Prometheus endpoint (pod port 15090) through the API server's pod proxy, as
//! `status` reads the filter's counters; then the ServiceAccounts of each namespace a caller
//! came from, so that `suggest` can tell whether every one of them did the same. Nothing in the
//! cluster is changed, and the proxy's log level is left alone.

use std::collections::BTreeMap;

use k8s_openapi::api::core::v1::ServiceAccount;
use kube::api::{Api, ListParams};

use super::{api_error, list::list_pods, verify::ENVOY_METRICS_PORT, ApplyError, Cluster, Result};
use crate::inspect::learn::{plugin_selectors, targets};
use crate::inspect::status::lacking;
use crate::kind::Kind;
use crate::observations::{self, Merged, Observations, Sample};

/// One sample of every pod, merged into the observations.
#[derive(Debug, Default)]
pub struct Round {
    /// Each pod read, and what its sample added.
    pub sampled: Vec<(String, Merged)>,
    /// Pods selected but not read, each with why.
    pub skipped: Vec<String>,
    /// Pods whose filter answered but records nothing: it does not observe.
    pub not_observing: Vec<String>,
    /// What else the user should know: a caller namespace whose service accounts could not be
    /// listed.
    pub notes: Vec<String>,
}

/// Reads every selected pod once and merges what each counted since its last sample into
/// `observations`. The pods are those `labels` select, or without labels those the
/// namespace's WasmPlugins select.
pub async fn learn_once(
    cluster: &Cluster,
    namespace: &str,
    labels: &[(String, String)],
    observations: &mut Observations,
) -> Result<Round> {
    let selectors = if labels.is_empty() {
        let plugins = cluster
            .dynamic_api(&Kind::WASM_PLUGIN, Some(namespace))
            .list(&ListParams::default())
            .await
            .map_err(api_error(format!("listing WasmPlugins in {namespace}")))?;
        let values: Vec<serde_json::Value> =
            plugins.items.iter().filter_map(|o| serde_json::to_value(o).ok()).collect();
        let selectors = plugin_selectors(&values);
        if selectors.is_empty() {
            return Err(ApplyError::Failed(format!(
                "no WasmPlugin in namespace {namespace} selects any pod, so no filter records anything there: run \
                 `deployer rollout {namespace} --observe ...` first, or say which pods with --label KEY=VALUE"
            )));
        }
        selectors
    } else {
        vec![labels.iter().cloned().collect::<BTreeMap<_, _>>()]
    };
    let pods = list_pods(cluster, namespace).await?;
    let (chosen, skipped) = targets(&pods, &selectors);
    if chosen.is_empty() && skipped.is_empty() {
        return Err(ApplyError::Failed(format!(
            "no pod in namespace {namespace} matches {}: check the namespace and labels (`kubectl -n {namespace} get \
             pods --show-labels`)",
            describe(&selectors)
        )));
    }
    let mut round = Round { skipped, ..Round::default() };
    // Every pod is read before anything is merged: a refusal half-way changes nothing.
    let mut samples = Vec::new();
    for pod in chosen {
        let name = pod.metadata.name.clone().unwrap_or_default();
        let uid = pod.metadata.uid.clone().unwrap_or_default();
        let text = match cluster.pod_metrics(namespace, &name, ENVOY_METRICS_PORT).await {
            Ok(text) => text,
            Err(kube::Error::Api(s)) if s.code == 403 => {
                return Err(ApplyError::Failed(format!(
                    "reading {name}'s sidecar metrics: {}",
                    lacking("get", "pods/proxy", Some(namespace))
                )))
            }
            Err(e) => {
                round
                    .skipped
                    .push(format!("{name}: its sidecar's metrics could not be read ({e}); tried again next sample"));
                continue;
            }
        };
        let sample = Sample::from_prometheus(&text);
        if !sample.filter_answers {
            round.skipped.push(format!(
                "{name}: its sidecar shows no xnat-guard metric: is the filter loaded? (`deployer status {namespace}`)"
            ));
            continue;
        }
        if sample.counters.is_empty() {
            round.not_observing.push(name.clone());
        }
        samples.push((name, uid, sample));
    }
    let at = observations::now();
    for (name, uid, sample) in samples {
        let merged = observations.merge(&format!("{namespace}/{name}"), &uid, &sample, at);
        round.sampled.push((name, merged));
    }
    if round.sampled.is_empty() && !round.skipped.is_empty() {
        return Err(ApplyError::Failed(format!(
            "no pod could be read:\n  {}\nnothing was recorded",
            round.skipped.join("\n  ")
        )));
    }
    for namespace in observations.caller_namespaces() {
        match list_service_accounts(cluster, &namespace).await {
            Ok(names) => observations.set_service_accounts(&namespace, names),
            Err(reason) => {
                let then = if observations.service_accounts.contains_key(&namespace) {
                    "the file keeps their last listing"
                } else {
                    "suggest writes a rule per service account there"
                };
                round.notes.push(format!("service accounts of {namespace} not listed ({reason}): {then}"));
            }
        }
    }
    Ok(round)
}

/// The names of the ServiceAccounts of `namespace`, or why they could not be listed.
async fn list_service_accounts(cluster: &Cluster, namespace: &str) -> Result<Vec<String>, String> {
    let api: Api<ServiceAccount> = Api::namespaced(cluster.client.clone(), namespace);
    match api.list(&ListParams::default()).await {
        Ok(list) => Ok(list.items.into_iter().filter_map(|sa| sa.metadata.name).collect()),
        Err(kube::Error::Api(s)) if s.code == 403 => {
            Err(format!("forbidden: needs `list serviceaccounts` in {namespace}"))
        }
        Err(kube::Error::Api(s)) if s.code == 404 => Err(format!("namespace {namespace} not found")),
        Err(e) => Err(format!("{e}; listed again next sample")),
    }
}

fn describe(selectors: &[BTreeMap<String, String>]) -> String {
    let each: Vec<String> =
        selectors.iter().map(|s| s.iter().map(|(k, v)| format!("{k}={v}")).collect::<Vec<_>>().join(",")).collect();
    each.join(" or ")
}

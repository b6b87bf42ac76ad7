//! Waiting: a poll with a timeout that says what it waits for, behind a spinner, and the
//! rollout wait `kubectl rollout status` does.

use std::time::{Duration, Instant};

use k8s_openapi::api::apps::v1::{Deployment, StatefulSet};
use kube::api::Api;

use super::{api_error, ApplyError, Cluster, Result};
use crate::inspect::controllers::Controller;

impl Cluster {
    /// Polls `probe` until it returns `Some`, or fails after the timeout with the probe's last
    /// word on what it is waiting for. Shows a spinner with that word meanwhile.
    pub async fn wait_for<T, F, Fut>(&self, what: &str, mut probe: F) -> Result<T>
    where
        F: FnMut() -> Fut,
        Fut: std::future::Future<Output = Result<Result<T, String>>>,
    {
        let spinner = if self.opts.verbose {
            let s = indicatif::ProgressBar::new_spinner();
            s.enable_steady_tick(Duration::from_millis(120));
            Some(s)
        } else {
            None
        };
        let start = Instant::now();
        let result = loop {
            match probe().await {
                Ok(Ok(done)) => break Ok(done),
                Ok(Err(waiting)) => {
                    if let Some(s) = &spinner {
                        s.set_message(format!("{what}: {waiting} ({}s)", start.elapsed().as_secs()));
                    }
                    if start.elapsed() >= self.opts.timeout {
                        break Err(ApplyError::Timeout(format!(
                            "gave up after {}s {what}: {waiting}",
                            self.opts.timeout.as_secs()
                        )));
                    }
                }
                Err(e) => break Err(e),
            }
            tokio::time::sleep(self.opts.poll).await;
        };
        if let Some(s) = spinner {
            s.finish_and_clear();
        }
        result
    }
}

/// Waits until the controller's rollout is complete by kubectl's rules
/// ([`Controller::rollout_complete`]).
pub async fn wait_rollout(cluster: &Cluster, namespace: &str, c: &Controller) -> Result<()> {
    let name = c.name().to_string();
    let (kind, is_deployment) = (c.kind().kind, matches!(c, Controller::Deployment(_)));
    let what = format!("waiting for {} to roll out", c.describe());
    cluster
        .wait_for(&what, || {
            let name = name.clone();
            async move {
                let reading = format!("reading {kind} {name}");
                let current = if is_deployment {
                    let api: Api<Deployment> = Api::namespaced(cluster.client.clone(), namespace);
                    Controller::Deployment(api.get(&name).await.map_err(api_error(reading))?)
                } else {
                    let api: Api<StatefulSet> = Api::namespaced(cluster.client.clone(), namespace);
                    Controller::StatefulSet(api.get(&name).await.map_err(api_error(reading))?)
                };
                Ok(current.rollout_complete())
            }
        })
        .await
        .map_err(|e| match e {
            ApplyError::Timeout(m) => ApplyError::Timeout(format!(
                "{m}. See `kubectl -n {namespace} describe {} {}` and its pods' events",
                kind.to_lowercase(),
                c.name()
            )),
            e => e,
        })
}

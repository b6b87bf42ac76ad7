//! Waiting: a poll with a timeout that says what it waits for, behind a spinner, and the
//! rollout wait `kubectl rollout status` does.
//!
//! A wait gives up only when nothing moves for the whole timeout: each look may report
//! progress marks (pods updated, pods ready), and one passing its earlier best starts the
//! timeout again, so a StatefulSet whose pods start slowly one after another is not a hang.
//! An API server that throttles (429), fails (500, 502, 503, 504) or drops the connection
//! mid-wait is asked again after a backoff (at least the Retry-After a 429 asks for); only the
//! timeout ends that.

use std::time::{Duration, Instant};

use k8s_openapi::api::apps::v1::{Deployment, StatefulSet};
use kube::api::Api;

use super::{api_error, ApplyError, Cluster, Result};
use crate::inspect::controllers::{Controller, RolloutState};

/// The longest pause between two tries after API errors.
const MAX_BACKOFF: Duration = Duration::from_secs(30);

/// What one look at the cluster says.
pub enum Look<T> {
    Done(T),
    /// Not yet: why, and the progress marks (higher is further along; empty: none to tell).
    Waiting {
        why: String,
        progress: Vec<i64>,
    },
    /// Never, without a fix: stop now.
    Failed(String),
}

impl<T> Look<T> {
    pub fn waiting(why: impl Into<String>) -> Look<T> {
        Look::Waiting { why: why.into(), progress: Vec::new() }
    }
}

/// Whether an API error is worth asking again: throttling, a server-side failure, or the
/// connection itself.
pub fn is_transient(e: &ApplyError) -> bool {
    match e {
        ApplyError::Api { source: kube::Error::Api(s), .. } => matches!(s.code, 429 | 500 | 502 | 503 | 504),
        ApplyError::Api { source: kube::Error::HyperError(_) | kube::Error::Service(_), .. } => true,
        _ => false,
    }
}

/// How long the API server asked to be left alone (429's `details.retryAfterSeconds`, what
/// priority and fairness sends as Retry-After); zero when it did not say.
fn retry_after(e: &ApplyError) -> Duration {
    match e {
        ApplyError::Api { source: kube::Error::Api(s), .. } => {
            Duration::from_secs(s.details.as_ref().map_or(0, |d| u64::from(d.retry_after_seconds)))
        }
        _ => Duration::ZERO,
    }
}

/// Raises `best` to `marks` where they pass it; says whether any did. The first look only
/// sets the marks to beat.
fn passes_best(best: &mut Vec<i64>, marks: &[i64]) -> bool {
    if best.len() != marks.len() {
        *best = marks.to_vec();
        return false;
    }
    let mut passed = false;
    for (b, m) in best.iter_mut().zip(marks) {
        if m > b {
            *b = *m;
            passed = true;
        }
    }
    passed
}

impl Cluster {
    /// Polls `probe` until it returns `Some`, or fails after the timeout with the probe's last
    /// word on what it is waiting for. Shows a spinner with that word meanwhile.
    pub async fn wait_for<T, F, Fut>(&self, what: &str, mut probe: F) -> Result<T>
    where
        F: FnMut() -> Fut,
        Fut: std::future::Future<Output = Result<Result<T, String>>>,
    {
        self.wait_with_progress(what, || {
            let look = probe();
            async move {
                Ok(match look.await? {
                    Ok(done) => Look::Done(done),
                    Err(why) => Look::waiting(why),
                })
            }
        })
        .await
    }

    /// Polls `probe` until it is done or has failed. Gives up after the timeout passes with no
    /// progress (see the module's doc), retrying transient API errors with a backoff meanwhile.
    pub async fn wait_with_progress<T, F, Fut>(&self, what: &str, mut probe: F) -> Result<T>
    where
        F: FnMut() -> Fut,
        Fut: std::future::Future<Output = Result<Look<T>>>,
    {
        let spinner = if self.opts.verbose {
            let s = indicatif::ProgressBar::new_spinner();
            s.enable_steady_tick(Duration::from_millis(120));
            Some(s)
        } else {
            None
        };
        let start = Instant::now();
        let mut moved = start;
        let mut best = Vec::new();
        let mut failures = 0u32;
        let result = loop {
            let pause = match probe().await {
                Ok(Look::Done(done)) => break Ok(done),
                Ok(Look::Failed(why)) => break Err(ApplyError::Failed(why)),
                Ok(Look::Waiting { why, progress }) => {
                    failures = 0;
                    if passes_best(&mut best, &progress) {
                        moved = Instant::now();
                    }
                    if let Some(s) = &spinner {
                        s.set_message(format!("{what}: {why} ({}s)", start.elapsed().as_secs()));
                    }
                    if moved.elapsed() >= self.opts.timeout {
                        break Err(ApplyError::Timeout(format!(
                            "gave up after {}s with no progress {what}: {why}",
                            self.opts.timeout.as_secs()
                        )));
                    }
                    self.opts.poll
                }
                Err(e) if is_transient(&e) => {
                    if moved.elapsed() >= self.opts.timeout {
                        break Err(ApplyError::Timeout(format!(
                            "gave up after {}s {what}: the API server kept failing; the last error: {e}",
                            self.opts.timeout.as_secs()
                        )));
                    }
                    failures += 1;
                    if let Some(s) = &spinner {
                        s.set_message(format!("{what}: retrying after {e}"));
                    }
                    let backoff = self.opts.poll.saturating_mul(1 << failures.min(10)).max(retry_after(&e));
                    // Never past the deadline: the last try comes before giving up.
                    backoff.min(MAX_BACKOFF).min(self.opts.timeout.saturating_sub(moved.elapsed())).max(self.opts.poll)
                }
                Err(e) => break Err(e),
            };
            tokio::time::sleep(pause).await;
        };
        if let Some(s) = spinner {
            s.finish_and_clear();
        }
        result
    }
}

/// Waits until the controller's rollout is complete by kubectl's rules
/// ([`Controller::rollout_state`]); a rollout that has failed for good fails at once.
pub async fn wait_rollout(cluster: &Cluster, namespace: &str, c: &Controller) -> Result<()> {
    let name = c.name().to_string();
    let (kind, is_deployment) = (c.kind().kind, matches!(c, Controller::Deployment(_)));
    let what = format!("waiting for {} to roll out", c.describe());
    let see =
        format!("See `kubectl -n {namespace} describe {} {}` and its pods' events", kind.to_lowercase(), c.name());
    cluster
        .wait_with_progress(&what, || {
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
                Ok(match current.rollout_state() {
                    RolloutState::Complete => Look::Done(()),
                    RolloutState::Waiting(why) => Look::Waiting { why, progress: current.progress_marks() },
                    RolloutState::Failed(why) => Look::Failed(why),
                })
            }
        })
        .await
        .map_err(|e| match e {
            ApplyError::Timeout(m) => ApplyError::Timeout(format!("{m}. {see}")),
            ApplyError::Failed(m) => ApplyError::Failed(format!("{m}. {see}")),
            e => e,
        })
}

#[cfg(test)]
mod tests {
    use super::passes_best;

    #[test]
    fn progress_is_a_mark_passing_its_best_not_a_mark_that_comes_back() {
        let mut best = Vec::new();
        assert!(!passes_best(&mut best, &[2, 0, 3]), "the first look sets the marks");
        assert!(passes_best(&mut best, &[2, 1, 3]), "a pod at the new revision");
        assert!(!passes_best(&mut best, &[2, 1, 2]), "a pod going unready is no progress");
        assert!(!passes_best(&mut best, &[2, 1, 3]), "nor is it coming back");
        assert!(passes_best(&mut best, &[2, 1, 4]), "a new pod ready");
    }
}

//! `kiali install` (applying what [`crate::plan::kiali`] plans, then waiting until the operator
//! has reconciled the CR, the server's Deployment is available and, for a LoadBalancer Service,
//! the load balancer has an address) and `kiali token`.

use k8s_openapi::api::apps::v1::Deployment;
use k8s_openapi::api::authentication::v1::{TokenRequest, TokenRequestSpec};
use k8s_openapi::api::core::v1::{Service, ServiceAccount};
use kube::api::{Api, PostParams};

use super::{api_error, Applied, ApplyError, Cluster, Result};
use crate::inspect::str_at;
use crate::kind::Kind;
use crate::plan::kiali::{
    not_validated_without_crd, reached, server_deployment, LbAddress, Plan, Reached, ServerDeployment, CRD_NAME,
};

/// What `kiali install` did with one manifest.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum Outcome {
    Applied(Applied),
    /// A dry run could not ask the API server about it, and why.
    NotValidated(String),
}

impl std::fmt::Display for Outcome {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        match self {
            Outcome::Applied(applied) => write!(f, "{applied}"),
            Outcome::NotValidated(why) => write!(f, "not validated (dry run): {why}"),
        }
    }
}

/// Whether the API server serves the Kiali CR's group and version (its CRD is installed).
/// Discovery is readable by every authenticated user, unlike the CRD objects themselves.
async fn kiali_api_served(cluster: &Cluster) -> Result<bool> {
    let path = format!("/apis/{}/{}", Kind::KIALI.group, Kind::KIALI.version);
    match cluster.get_text(&path).await {
        Ok(_) => Ok(true),
        Err(kube::Error::Api(s)) if s.code == 404 => Ok(false),
        Err(e) => Err(api_error(format!("asking the API server whether it serves {path}"))(e)),
    }
}

/// Applies the plan's manifests in order (the operator's chart is already installed), telling
/// `progress` each outcome as it happens. On a dry run against a cluster without the operator's
/// CRD the Kiali CR is left out, said so, rather than failing with the API server's 404: the
/// add-ons are still validated server-side.
pub async fn apply_manifests(
    cluster: &Cluster,
    plan: &Plan,
    mut progress: impl FnMut(&str, &Outcome),
) -> Result<Vec<(String, Outcome)>> {
    let crd_missing = cluster.opts.dry_run && !kiali_api_served(cluster).await?;
    let mut outcomes = Vec::new();
    for m in &plan.manifests {
        let outcome = if crd_missing && m.kind == Kind::KIALI {
            Outcome::NotValidated(not_validated_without_crd())
        } else {
            match cluster.apply(m).await {
                Ok(applied) => Outcome::Applied(applied),
                Err(e) if m.kind == Kind::KIALI && is_not_found(&e) => return Err(crd_not_served(plan)),
                Err(e) => return Err(e),
            }
        };
        progress(&m.describe(), &outcome);
        outcomes.push((m.describe(), outcome));
    }
    Ok(outcomes)
}

fn is_not_found(e: &ApplyError) -> bool {
    matches!(e, ApplyError::Api { source: kube::Error::Api(s), .. } if s.code == 404)
}

/// The CR's kind is not served after the operator's chart was installed: helm installs a
/// chart's `crds/` only when it first installs the release (and not with `--skip-crds`), so a
/// release that existed without them leaves the CRD missing.
fn crd_not_served(plan: &Plan) -> ApplyError {
    let release = &plan.operator;
    ApplyError::Failed(format!(
        "applying the Kiali CR: the API server does not serve {CRD_NAME}: the {} release in {} is there, but its \
         CRD is not (helm installs a chart's crds/ only on the release's first install); install it with \
         `helm show crds {} --repo {} --version {} | kubectl apply --server-side -f -` and re-run `deployer kiali install`",
        release.name, release.namespace, release.chart, release.repo, release.version
    ))
}

/// Whether a Deployment serves: the controller has seen its spec, its `Available` condition is
/// true and at least one replica is available. `Err` says why not, and what to look at.
fn availability(d: &Deployment, what: &ServerDeployment) -> Result<(), String> {
    let status = d.status.clone().unwrap_or_default();
    let generation = d.metadata.generation.unwrap_or(0);
    if status.observed_generation.unwrap_or(0) < generation {
        return Err(format!(
            "{} is not available: its controller has not seen generation {generation} yet",
            what.describe()
        ));
    }
    let available = status.conditions.iter().flatten().find(|c| c.type_ == "Available");
    let replicas = status.available_replicas.unwrap_or(0);
    if available.is_some_and(|c| c.status == "True") && replicas > 0 {
        return Ok(());
    }
    let why = available.and_then(|c| c.message.clone()).unwrap_or_else(|| "no Available condition yet".into());
    Err(format!(
        "{} is not available: {why} ({replicas} of {} replicas available); see `kubectl -n {} describe deploy/{}`",
        what.describe(),
        status.replicas.unwrap_or(0),
        what.namespace,
        what.name
    ))
}

/// Waits until the operator reports the CR reconciled and the server's Deployment is
/// available: the operator says `Successful` once it has created the Deployment, before its
/// pod is up (an image that cannot be pulled, a pod that never gets ready). Returns where the
/// server runs.
pub async fn wait_for_kiali(cluster: &Cluster, namespace: &str) -> Result<ServerDeployment> {
    let api = cluster.dynamic_api(&Kind::KIALI, Some(namespace));
    cluster
        .wait_for("waiting for the Kiali operator to deploy Kiali", || {
            let api = api.clone();
            let client = cluster.client.clone();
            async move {
                let cr = api.get("kiali").await.map_err(api_error("reading the Kiali CR"))?;
                let conditions = cr.data["status"]["conditions"].as_array().cloned().unwrap_or_default();
                let status_of = |t: &str| {
                    conditions
                        .iter()
                        .find(|c| c["type"] == t)
                        .map(|c| (str_at(c, &["status"]).to_string(), str_at(c, &["message"]).to_string()))
                };
                if let Some((s, m)) = status_of("Failure") {
                    if s == "True" {
                        return Err(ApplyError::Failed(format!(
                            "the Kiali operator failed: {m}; see `kubectl -n kiali-operator logs deploy/kiali-operator`"
                        )));
                    }
                }
                if !matches!(status_of("Successful"), Some((s, _)) if s == "True") {
                    return Ok(Err("the operator has not reported Successful yet".to_string()));
                }
                let server = server_deployment(&serde_json::to_value(&cr).unwrap_or_default());
                let deployments: Api<Deployment> = Api::namespaced(client, &server.namespace);
                let deployment = deployments
                    .get_opt(&server.name)
                    .await
                    .map_err(api_error(format!("reading Kiali's {}", server.describe())))?;
                Ok(match deployment {
                    None => {
                        Err(format!("the operator reported Successful, but {} does not exist yet", server.describe()))
                    }
                    Some(d) => availability(&d, &server).map(|()| server.clone()),
                })
            }
        })
        .await
}

/// Waits until Kiali is up ([`wait_for_kiali`]) and, for a LoadBalancer Service, until its
/// load balancer has an address; then what to tell the user: the URL to open, the DNS record
/// to create, the login command.
pub async fn wait_until_reachable(cluster: &Cluster, plan: &Plan) -> Result<Reached> {
    let server = wait_for_kiali(cluster, &plan.namespace).await?;
    let address = match plan.access.load_balancer {
        Some(_) => Some(wait_for_load_balancer(cluster, &server).await?),
        None => None,
    };
    Ok(reached(plan, &server, address.as_ref()))
}

/// Waits for the load balancer's address on the Service the operator made for the server
/// (named after the instance, in its namespace): `status.loadBalancer.ingress[0]`, a DNS name
/// on AWS. The cloud controller (or the AWS Load Balancer Controller for an NLB) sets it once
/// the load balancer exists; a certificate it cannot use, or no controller at all, leaves it
/// empty, with the reason in the Service's events.
pub async fn wait_for_load_balancer(cluster: &Cluster, server: &ServerDeployment) -> Result<LbAddress> {
    let services: Api<Service> = Api::namespaced(cluster.client.clone(), &server.namespace);
    let what = format!("Service {}/{}", server.namespace, server.name);
    cluster
        .wait_for("waiting for Kiali's load balancer to get an address", || {
            let services = services.clone();
            let what = what.clone();
            let server = server.clone();
            async move {
                let service =
                    services.get_opt(&server.name).await.map_err(api_error(format!("reading Kiali's {what}")))?;
                let ingress = service
                    .and_then(|s| s.status)
                    .and_then(|s| s.load_balancer)
                    .and_then(|lb| lb.ingress)
                    .and_then(|i| i.into_iter().next());
                let address = ingress.and_then(|i| {
                    i.hostname
                        .filter(|h| !h.is_empty())
                        .map(LbAddress::Hostname)
                        .or_else(|| i.ip.filter(|ip| !ip.is_empty()).map(LbAddress::Ip))
                });
                Ok(address.ok_or_else(|| {
                    format!(
                        "{what} has no load-balancer address yet; its events say why (a certificate in another \
                         region or account, no AWS Load Balancer Controller for an NLB): \
                         `kubectl -n {} describe service {}`",
                        server.namespace, server.name
                    )
                }))
            }
        })
        .await
}

/// The service account the Kiali server runs as, read from the Deployment the operator made
/// for the CR `cr_name` in `namespace` (the operator names it `<instance_name>-service-account`,
/// `kiali-service-account` by default; the kiali-server chart names it `kiali`: reading it
/// beats guessing). Its namespace, then its name.
async fn server_service_account(cluster: &Cluster, namespace: &str, cr_name: &str) -> Result<(String, String)> {
    let crs = cluster.dynamic_api(&Kind::KIALI, Some(namespace));
    // A cluster without the operator's CRD answers 404 too: no CR either way.
    let cr = crs.get_opt(cr_name).await.map_err(api_error(format!("reading the Kiali CR {namespace}/{cr_name}")))?;
    let Some(cr) = cr else {
        return Err(ApplyError::Failed(format!(
            "no Kiali CR {namespace}/{cr_name}: install Kiali with `deployer kiali install`; if Kiali runs without the \
             operator (the kiali-server chart names its service account `kiali`), name the account with --service-account"
        )));
    };
    let server = server_deployment(&serde_json::to_value(&cr).unwrap_or_default());
    let deployments: Api<Deployment> = Api::namespaced(cluster.client.clone(), &server.namespace);
    let deployment = deployments
        .get_opt(&server.name)
        .await
        .map_err(api_error(format!("reading Kiali's {}", server.describe())))?
        .ok_or_else(|| {
            ApplyError::Failed(format!(
                "the Kiali CR {namespace}/{cr_name} is there, but {} does not exist: the operator has not deployed \
                 the server (yet); see `kubectl -n kiali-operator logs deploy/kiali-operator`, or re-run \
                 `deployer kiali install`, which waits for it",
                server.describe()
            ))
        })?;
    let pod = deployment.spec.and_then(|s| s.template.spec).unwrap_or_default();
    // The operator writes the deprecated `serviceAccount`; the API server copies it over.
    let account = pod.service_account_name.or(pod.service_account).filter(|a| !a.is_empty());
    // A pod that names none runs as the namespace's `default` account.
    Ok((server.namespace, account.unwrap_or_else(|| "default".into())))
}

/// A login token for Kiali through the TokenRequest API, for the service account the server
/// runs as (or the one named). Kubernetes 1.24+ creates no long-lived service-account token
/// secrets, so the runbook's `kubectl get secret` finds nothing to read.
pub async fn token(
    cluster: &Cluster,
    namespace: &str,
    cr_name: &str,
    service_account: Option<&str>,
    duration_secs: i64,
) -> Result<String> {
    let (namespace, service_account) = match service_account {
        Some(account) => (namespace.to_string(), account.to_string()),
        None => server_service_account(cluster, namespace, cr_name).await?,
    };
    let api: Api<ServiceAccount> = Api::namespaced(cluster.client.clone(), &namespace);
    let request = TokenRequest {
        spec: TokenRequestSpec { expiration_seconds: Some(duration_secs), ..Default::default() },
        ..Default::default()
    };
    let resp = api
        .create_token_request(&service_account, &PostParams::default(), &request)
        .await
        .map_err(|e| match e {
            kube::Error::Api(s) if s.code == 404 => ApplyError::Failed(format!(
                "service account {namespace}/{service_account} does not exist: is Kiali installed (`deployer kiali install`)?"
            )),
            e => api_error(format!("requesting a token for {namespace}/{service_account}"))(e),
        })?;
    resp.status
        .map(|s| s.token)
        .filter(|t| !t.is_empty())
        .ok_or_else(|| ApplyError::Failed("the API server answered the TokenRequest without a token".into()))
}

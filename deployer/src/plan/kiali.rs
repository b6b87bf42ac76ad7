//! `kiali install`: the Kiali operator's helm release, then Istio's Prometheus and Jaeger
//! add-ons and a Kiali CR (token login, served under /kiali, editable) for it to reconcile; with
//! `--tls-certificate`, the annotations that put the AWS load balancer in front of Kiali on TLS.

use std::collections::BTreeMap;
use std::path::Path;

use serde_json::{json, Value};

use super::helm::{Release, KIALI_REPO};
use super::{Manifest, PlanError, Result};
use crate::inspect::str_at;
use crate::kind::Kind;

/// The add-ons Kiali reads from, as an Istio release ships them (`samples/addons/`).
pub const ADDON_FILES: [&str; 2] = ["prometheus.yaml", "jaeger.yaml"];

/// The kinds Istio's add-on manifests use; anything else is left to kubectl.
const ADDON_KINDS: [Kind; 7] = [
    Kind::SERVICE_ACCOUNT,
    Kind::CONFIG_MAP,
    Kind::SERVICE,
    Kind::DEPLOYMENT,
    Kind::CLUSTER_ROLE,
    Kind::CLUSTER_ROLE_BINDING,
    Kind::ROLE,
];

/// The CRD the kiali-operator chart installs from its `crds/` directory. Helm installs a
/// chart's `crds/` only on a real install, never on `--dry-run`, so a dry run on a cluster
/// without the operator cannot validate the Kiali CR against it.
pub const CRD_NAME: &str = "kialis.kiali.io";

/// The name the operator gives the server's Deployment unless the CR sets
/// `spec.deployment.instance_name` (the operator's defaults).
pub const DEFAULT_INSTANCE_NAME: &str = "kiali";

/// Why a dry run leaves the Kiali CR unvalidated on a cluster without the operator's CRD.
pub fn not_validated_without_crd() -> String {
    format!(
        "the {CRD_NAME} CRD is not installed yet: it comes with the kiali-operator chart, which a dry run does not \
         install; the CR is validated when `deployer kiali install` runs for real, once the chart has installed the CRD"
    )
}

/// Where the operator runs the Kiali server for a CR: the Deployment it creates, named after
/// the instance, in the deployment namespace.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct ServerDeployment {
    pub namespace: String,
    pub name: String,
}

impl ServerDeployment {
    pub fn describe(&self) -> String {
        format!("Deployment {}/{}", self.namespace, self.name)
    }
}

/// The server's Deployment for a Kiali CR (the whole object, as the API server returns it).
/// The operator records what it used in `status.deployment` (`instanceName`, `namespace`) and
/// refuses to change either later, so the status is the truth once reconciled; before that, the
/// spec's `deployment.instance_name` and `deployment.namespace`, which default to `kiali` and
/// the CR's own namespace.
pub fn server_deployment(cr: &Value) -> ServerDeployment {
    let first = |paths: [&[&str]; 2], default: &str| {
        paths.iter().map(|p| str_at(cr, p)).find(|v| !v.is_empty()).unwrap_or(default).to_string()
    };
    let cr_namespace = str_at(cr, &["metadata", "namespace"]);
    ServerDeployment {
        namespace: first([&["status", "deployment", "namespace"], &["spec", "deployment", "namespace"]], cr_namespace),
        name: first(
            [&["status", "deployment", "instanceName"], &["spec", "deployment", "instance_name"]],
            DEFAULT_INSTANCE_NAME,
        ),
    }
}

/// One add-on file's text, and where it was read.
#[derive(Debug, Clone)]
pub struct AddonFile {
    pub origin: String,
    pub text: String,
}

/// What the user asked for.
#[derive(Debug, Clone)]
pub struct Spec {
    /// Where Kiali and the add-ons run.
    pub namespace: String,
    /// The Kiali Service type.
    pub service_type: String,
    /// The kiali-operator chart version.
    pub operator_version: String,
    pub timeout_secs: u64,
    /// [`read_addons`] of an Istio release.
    pub addons: Vec<AddonFile>,
}

/// The operator release, and the manifests to apply once it runs, in order.
#[derive(Debug, Clone)]
pub struct Plan {
    pub operator: Release,
    /// The add-ons, then the Kiali CR.
    pub manifests: Vec<Manifest>,
    /// How users reach Kiali: what to wait for after the install, and the URL to print.
    pub access: Access,
    /// Where the CR is, and so where `kiali token` looks for it.
    pub namespace: String,
}

impl Plan {
    /// The helm command line, then the manifests as one YAML stream.
    pub fn to_yaml(&self) -> String {
        format!("# {}\n{}", self.operator.command_line(false), super::to_yaml(&self.manifests))
    }

    /// The Service type the CR asks for.
    pub fn kiali_service_type(&self) -> &str {
        self.kiali_cr().map(|m| str_at(&m.body, &["spec", "deployment", "service_type"])).unwrap_or_default()
    }

    /// The Kiali CR, the plan's last manifest.
    pub fn kiali_cr(&self) -> Option<&Manifest> {
        self.manifests.last().filter(|m| m.kind == Kind::KIALI)
    }

    /// The Kiali CR alone, as YAML to review or commit (`kiali install --dry-run -o yaml`), with
    /// a comment saying what installs it.
    pub fn kiali_cr_yaml(&self) -> String {
        let header = format!(
            "# The Kiali CR for the kiali-operator chart {version}: `deployer kiali install` installs the chart\n\
             # ({command}),\n\
             # then applies this CR once the chart has installed the {CRD_NAME} CRD.\n",
            version = self.operator.version,
            command = self.operator.command_line(false),
        );
        let cr: &[Manifest] = match self.kiali_cr() {
            Some(m) => std::slice::from_ref(m),
            None => &[],
        };
        format!("{header}{}", super::to_yaml(cr))
    }
}

/// The plan with the Service the type alone gives (`--service-type`, no TLS).
pub fn plan(spec: &Spec) -> Result<Plan> {
    plan_with_access(spec, &Access::plain(&spec.service_type))
}

/// The plan with the load balancer `access` describes (checked by [`access`]).
pub fn plan_with_access(spec: &Spec, access: &Access) -> Result<Plan> {
    let mut manifests = addon_manifests(&spec.addons, &spec.namespace)?;
    manifests.push(kiali_cr_with_access(&spec.namespace, &spec.service_type, access));
    Ok(Plan {
        operator: operator_release(&spec.operator_version, spec.timeout_secs),
        manifests,
        access: access.clone(),
        namespace: spec.namespace.clone(),
    })
}

/// Reads the add-on files of an unpacked Istio release: the one thing here that touches the disk.
pub fn read_addons(istio_dir: &Path) -> Result<Vec<AddonFile>> {
    ADDON_FILES
        .iter()
        .map(|file| {
            let path = istio_dir.join("samples/addons").join(file);
            let text = std::fs::read_to_string(&path).map_err(|e| {
                PlanError::Invalid(format!(
                    "{}: {e}; --istio-dir must be an unpacked Istio release (curl -L https://istio.io/downloadIstio | sh -)",
                    path.display()
                ))
            })?;
            Ok(AddonFile { origin: path.display().to_string(), text })
        })
        .collect()
}

pub fn operator_release(version: &str, timeout_secs: u64) -> Release {
    Release {
        name: "kiali-operator".into(),
        chart: "kiali-operator".into(),
        repo: KIALI_REPO.into(),
        version: version.into(),
        namespace: "kiali-operator".into(),
        create_namespace: true,
        // The Kiali CR is applied by the deployer itself, so it can wait on its status.
        values: vec![("cr.create".into(), "false".into())],
        timeout_secs,
    }
}

/// The Kiali CR: token login, the service type asked for, editable, served under /kiali.
pub fn kiali_cr(namespace: &str, service_type: &str) -> Manifest {
    kiali_cr_with_access(namespace, service_type, &Access::plain(service_type))
}

/// The Kiali CR with the Service annotations `access` needs. The fields are the Kiali CR's, as
/// the kiali-operator 2.17.0 CRD (`crd-docs/crd/kiali.io_kialis.yaml`) and its defaults
/// (`roles/default/kiali-deploy/defaults/main.yml`) define them: `deployment.service_type` and
/// `deployment.service_annotations` (a string map the operator copies onto the Service's
/// annotations); `server.web_schema`, `web_fqdn` and `web_port` tell Kiali the public URL a TLS
/// listener in front of it hides (the operator also writes it to the Service's
/// `kiali.io/external-url` annotation). `deployment.additional_service_yaml` is not needed:
/// every setting here is an annotation.
pub fn kiali_cr_with_access(namespace: &str, service_type: &str, access: &Access) -> Manifest {
    let mut deployment = json!({ "service_type": service_type, "view_only_mode": false });
    let annotations = access.service_annotations();
    if !annotations.is_empty() {
        deployment["service_annotations"] = json!(annotations);
    }
    let mut server = json!({ "web_root": "/kiali" });
    if access.tls.is_some() {
        server["web_schema"] = json!("https");
    }
    if let Some(host) = &access.hostname {
        server["web_fqdn"] = json!(host);
        server["web_port"] = json!(SERVER_PORT.to_string());
        if access.tls.is_none() {
            server["web_schema"] = json!("http");
        }
    }
    Manifest {
        kind: Kind::KIALI,
        name: "kiali".into(),
        namespace: Some(namespace.into()),
        body: json!({
            "apiVersion": Kind::KIALI.api_version(),
            "kind": Kind::KIALI.kind,
            "metadata": { "name": "kiali", "namespace": namespace },
            "spec": {
                "auth": { "strategy": "token" },
                "deployment": deployment,
                "server": server,
            },
        }),
        origin: "kiali install".into(),
    }
}

// Kiali behind the AWS load balancer, on TLS (issue 17): the runbook's hand-edited listener
// (SSL in front, TCP to Kiali, a chosen cipher policy, an ACM certificate, the FQDN pointed at
// the load balancer) as annotations on the Service the operator makes from the CR.

/// Kiali's port: the operator's default `server.port` (kiali-operator 2.17.0,
/// `roles/default/kiali-deploy/defaults/main.yml`), which the CR leaves as it is. The Service
/// exposes it, so the load balancer listens on it too.
pub const SERVER_PORT: u16 = 20001;

/// The annotations the AWS cloud provider's service controller reads for a Classic Load
/// Balancer, <https://cloud-provider-aws.sigs.k8s.io/service_controller/>, which the AWS Load
/// Balancer Controller reads with the same names for a Network Load Balancer,
/// <https://kubernetes-sigs.github.io/aws-load-balancer-controller/latest/guide/service/annotations/>.
pub mod annotation {
    /// The certificate of the TLS (classic: SSL) listener: an ACM or IAM certificate ARN.
    pub const SSL_CERT: &str = "service.beta.kubernetes.io/aws-load-balancer-ssl-cert";
    /// Which Service ports get the TLS listener (default: all of them, Kiali's metrics port too).
    pub const SSL_PORTS: &str = "service.beta.kubernetes.io/aws-load-balancer-ssl-ports";
    /// What the load balancer speaks to the pods: `tcp` behind a certificate is a classic ELB's
    /// "raw" SSL listener (the runbook's SSL in front, TCP to Kiali), and an NLB's TLS listener
    /// with a TCP target group.
    pub const BACKEND_PROTOCOL: &str = "service.beta.kubernetes.io/aws-load-balancer-backend-protocol";
    /// The predefined security policy of the TLS listener (default: ELBSecurityPolicy-2016-08,
    /// which still allows TLS 1.0).
    pub const SSL_NEGOTIATION_POLICY: &str = "service.beta.kubernetes.io/aws-load-balancer-ssl-negotiation-policy";
    /// `external`: the AWS Load Balancer Controller, not the cloud provider, makes an NLB.
    pub const TYPE: &str = "service.beta.kubernetes.io/aws-load-balancer-type";
    /// `ip`: the NLB sends to the pods' VPC addresses (the VPC CNI), not through node ports.
    pub const NLB_TARGET_TYPE: &str = "service.beta.kubernetes.io/aws-load-balancer-nlb-target-type";
    /// `internet-facing`: the controller makes an internal NLB unless told so (since v2.2.0).
    pub const SCHEME: &str = "service.beta.kubernetes.io/aws-load-balancer-scheme";
    /// The DNS name external-dns points at the load balancer, where external-dns runs
    /// (<https://kubernetes-sigs.github.io/external-dns/latest/docs/annotations/annotations/>).
    pub const EXTERNAL_DNS_HOSTNAME: &str = "external-dns.alpha.kubernetes.io/hostname";
}

/// Which AWS load balancer fronts a LoadBalancer Service.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Default)]
pub enum LoadBalancer {
    /// A Classic Load Balancer, made by the AWS cloud provider's service controller (EKS's
    /// default, and the runbook's).
    #[default]
    Classic,
    /// A Network Load Balancer, made by the AWS Load Balancer Controller
    /// (`aws-load-balancer-type: external`), which EKS recommends over the cloud provider's
    /// NLB support, now only receiving critical fixes
    /// (<https://docs.aws.amazon.com/eks/latest/userguide/network-load-balancing.html>). The
    /// controller must run in the cluster.
    Nlb,
}

impl LoadBalancer {
    fn describe(self) -> &'static str {
        match self {
            LoadBalancer::Classic => "Classic Load Balancer",
            LoadBalancer::Nlb => "Network Load Balancer",
        }
    }

    fn policies(self) -> &'static [&'static str] {
        match self {
            LoadBalancer::Classic => CLASSIC_POLICIES,
            LoadBalancer::Nlb => NLB_POLICIES,
        }
    }

    fn policy_page(self) -> &'static str {
        match self {
            LoadBalancer::Classic => CLASSIC_POLICY_PAGE,
            LoadBalancer::Nlb => NLB_POLICY_PAGE,
        }
    }

    /// The policy when `--tls-policy` is not given: TLS 1.2 and later only, where the load
    /// balancer's own default (ELBSecurityPolicy-2016-08) still allows TLS 1.0 and 1.1.
    pub fn default_policy(self) -> &'static str {
        match self {
            // A Classic Load Balancer has no TLS 1.3 policy; this is its TLS 1.2-only one.
            LoadBalancer::Classic => "ELBSecurityPolicy-TLS-1-2-2017-01",
            // TLS 1.3 and 1.2, the policy AWS has long recommended for NLBs and available in
            // every partition.
            LoadBalancer::Nlb => "ELBSecurityPolicy-TLS13-1-2-2021-06",
        }
    }
}

const CLASSIC_POLICY_PAGE: &str =
    "https://docs.aws.amazon.com/elasticloadbalancing/latest/classic/elb-security-policy-table.html";

/// The predefined security policies AWS publishes for Classic Load Balancers, from
/// <https://docs.aws.amazon.com/elasticloadbalancing/latest/classic/elb-security-policy-table.html>
/// ("Predefined SSL security policies for Classic Load Balancers"), as of 2026-12.
pub const CLASSIC_POLICIES: &[&str] = &[
    "ELBSecurityPolicy-TLS-1-2-2017-01",
    "ELBSecurityPolicy-TLS-1-1-2017-01",
    "ELBSecurityPolicy-2016-08",
    "ELBSecurityPolicy-2015-05",
    "ELBSecurityPolicy-2015-03",
    "ELBSecurityPolicy-2015-02",
    "ELBSecurityPolicy-2014-10",
    "ELBSecurityPolicy-2014-01",
    "ELBSecurityPolicy-2011-08",
    "ELBSample-ELBDefaultCipherPolicy",
    "ELBSample-OpenSSLDefaultCipherPolicy",
];

const NLB_POLICY_PAGE: &str =
    "https://docs.aws.amazon.com/elasticloadbalancing/latest/network/describe-ssl-policies.html";

/// The security policies AWS publishes for Network Load Balancer TLS listeners, from
/// <https://docs.aws.amazon.com/elasticloadbalancing/latest/network/describe-ssl-policies.html>
/// ("Security policies for your Network Load Balancer": the TLS 1.3, FIPS, post-quantum (PQ),
/// forward-secrecy and TLS 1.0-1.2 tables), as of 2026-12.
pub const NLB_POLICIES: &[&str] = &[
    // TLS 1.3, post-quantum hybrid key exchange.
    "ELBSecurityPolicy-TLS13-1-2-Res-PQ-2025-09",
    "ELBSecurityPolicy-TLS13-1-2-PQ-2025-09",
    "ELBSecurityPolicy-TLS13-1-2-Ext1-PQ-2025-09",
    "ELBSecurityPolicy-TLS13-1-2-Ext2-PQ-2025-09",
    "ELBSecurityPolicy-TLS13-1-3-PQ-2025-09",
    "ELBSecurityPolicy-TLS13-1-0-PQ-2025-09",
    // TLS 1.3.
    "ELBSecurityPolicy-TLS13-1-2-2021-06",
    "ELBSecurityPolicy-TLS13-1-2-Res-2021-06",
    "ELBSecurityPolicy-TLS13-1-2-Ext1-2021-06",
    "ELBSecurityPolicy-TLS13-1-2-Ext2-2021-06",
    "ELBSecurityPolicy-TLS13-1-1-2021-06",
    "ELBSecurityPolicy-TLS13-1-0-2021-06",
    "ELBSecurityPolicy-TLS13-1-3-2021-06",
    // FIPS.
    "ELBSecurityPolicy-TLS13-1-3-FIPS-2023-04",
    "ELBSecurityPolicy-TLS13-1-2-Res-FIPS-2023-04",
    "ELBSecurityPolicy-TLS13-1-2-FIPS-2023-04",
    "ELBSecurityPolicy-TLS13-1-2-Ext0-FIPS-2023-04",
    "ELBSecurityPolicy-TLS13-1-2-Ext1-FIPS-2023-04",
    "ELBSecurityPolicy-TLS13-1-2-Ext2-FIPS-2023-04",
    "ELBSecurityPolicy-TLS13-1-1-FIPS-2023-04",
    "ELBSecurityPolicy-TLS13-1-0-FIPS-2023-04",
    // FIPS, post-quantum.
    "ELBSecurityPolicy-TLS13-1-3-FIPS-PQ-2025-09",
    "ELBSecurityPolicy-TLS13-1-2-Res-FIPS-PQ-2025-09",
    "ELBSecurityPolicy-TLS13-1-2-FIPS-PQ-2025-09",
    "ELBSecurityPolicy-TLS13-1-2-Ext0-FIPS-PQ-2025-09",
    "ELBSecurityPolicy-TLS13-1-2-Ext1-FIPS-PQ-2025-09",
    "ELBSecurityPolicy-TLS13-1-2-Ext2-FIPS-PQ-2025-09",
    "ELBSecurityPolicy-TLS13-1-0-FIPS-PQ-2025-09",
    // Forward secrecy.
    "ELBSecurityPolicy-FS-1-2-Res-2020-10",
    "ELBSecurityPolicy-FS-1-2-Res-2019-08",
    "ELBSecurityPolicy-FS-1-2-2019-08",
    "ELBSecurityPolicy-FS-1-1-2019-08",
    "ELBSecurityPolicy-FS-2018-06",
    // TLS 1.0 to 1.2.
    "ELBSecurityPolicy-TLS-1-2-Ext-2018-06",
    "ELBSecurityPolicy-TLS-1-2-2017-01",
    "ELBSecurityPolicy-TLS-1-1-2017-01",
    "ELBSecurityPolicy-TLS-1-0-2015-04",
    "ELBSecurityPolicy-2016-08",
    "ELBSecurityPolicy-2015-05",
];

/// What the user asked for on the command line, unchecked.
#[derive(Debug, Clone, Default)]
pub struct AccessRequest {
    /// `--service-type`.
    pub service_type: String,
    /// `--tls-certificate`: an ACM certificate ARN.
    pub tls_certificate: Option<String>,
    /// `--tls-policy`: a predefined security policy's name.
    pub tls_policy: Option<String>,
    /// `--load-balancer`.
    pub load_balancer: Option<LoadBalancer>,
    /// `--hostname`: the DNS name users open.
    pub hostname: Option<String>,
}

/// How users reach Kiali, checked by [`access`].
#[derive(Debug, Clone, Default, PartialEq, Eq)]
pub struct Access {
    /// The load balancer in front of Kiali; `None` when the Service is not a LoadBalancer.
    pub load_balancer: Option<LoadBalancer>,
    pub tls: Option<Tls>,
    /// The DNS name, lower case, without a trailing dot.
    pub hostname: Option<String>,
}

/// A TLS listener on Kiali's port.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Tls {
    pub certificate_arn: String,
    pub policy: String,
}

/// Why [`access`] refused the flags; each says what to write instead.
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
pub enum AccessError {
    #[error(
        "--tls-certificate {arn} is not an ACM certificate ARN: {why}; write arn:aws:acm:REGION:ACCOUNT:certificate/ID \
         (arn:aws-cn:... or arn:aws-us-gov:... in those partitions), as `aws acm list-certificates --region REGION` \
         prints it, REGION being the cluster's"
    )]
    NotAcmArn { arn: String, why: String },
    #[error("--hostname {name} is not a DNS name: {why}; write the name alone, as in --hostname {suggestion}")]
    NotDnsName { name: String, why: String, suggestion: String },
    #[error(
        "--tls-policy {policy} is not a security policy AWS publishes for a {load_balancer} (see {page}); write one \
         of: {}",
        .known.join(", ")
    )]
    UnknownPolicy { policy: String, load_balancer: String, page: String, known: Vec<String> },
    #[error(
        "--tls-policy {policy} is a Network Load Balancer policy, which a Classic Load Balancer does not have; add \
         --load-balancer nlb (the AWS Load Balancer Controller must run in the cluster), or write a Classic Load \
         Balancer policy such as {}",
        LoadBalancer::Classic.default_policy()
    )]
    NlbPolicyOnClassic { policy: String },
    #[error(
        "{flag} needs --service-type LoadBalancer: the Service would be {service_type}, which has no AWS load balancer \
         in front of it; add --service-type LoadBalancer, or leave {flag} out"
    )]
    NeedsLoadBalancer { flag: &'static str, service_type: String },
    #[error(
        "--tls-policy needs --tls-certificate ARN: without a certificate the listener is plain TCP and has no TLS \
         policy; add --tls-certificate, or leave --tls-policy out"
    )]
    PolicyWithoutCertificate,
}

/// Checks the flags before anything is applied: the certificate is an ACM certificate ARN, the
/// hostname a DNS name, the policy one AWS publishes for the load balancer chosen, and each flag
/// meaningful for the Service type.
pub fn access(request: &AccessRequest) -> std::result::Result<Access, AccessError> {
    let is_lb = request.service_type == "LoadBalancer";
    let needs_lb =
        |flag: &'static str| AccessError::NeedsLoadBalancer { flag, service_type: request.service_type.clone() };
    if request.tls_certificate.is_some() && !is_lb {
        return Err(needs_lb("--tls-certificate"));
    }
    if request.load_balancer.is_some() && !is_lb {
        return Err(needs_lb("--load-balancer"));
    }
    if request.hostname.is_some() && !is_lb {
        return Err(needs_lb("--hostname"));
    }
    if request.tls_policy.is_some() && request.tls_certificate.is_none() {
        return Err(AccessError::PolicyWithoutCertificate);
    }
    let load_balancer = is_lb.then(|| request.load_balancer.unwrap_or_default());
    let tls = match (&request.tls_certificate, load_balancer) {
        (Some(arn), Some(lb)) => {
            check_acm_arn(arn)?;
            let policy = match &request.tls_policy {
                Some(p) => check_policy(p, lb)?,
                None => lb.default_policy().to_string(),
            };
            Some(Tls { certificate_arn: arn.clone(), policy })
        }
        _ => None,
    };
    let hostname = request.hostname.as_deref().map(check_hostname).transpose()?;
    Ok(Access { load_balancer, tls, hostname })
}

impl Access {
    /// What the Service type alone gives: a load balancer of the default kind for a
    /// LoadBalancer Service, no TLS, no name.
    pub fn plain(service_type: &str) -> Access {
        Access { load_balancer: (service_type == "LoadBalancer").then_some(LoadBalancer::Classic), ..Access::default() }
    }

    /// The annotations for the Kiali Service (the CR's `deployment.service_annotations`).
    pub fn service_annotations(&self) -> BTreeMap<String, String> {
        let mut out = BTreeMap::new();
        let mut put = |k: &str, v: &str| {
            out.insert(k.to_string(), v.to_string());
        };
        if self.load_balancer == Some(LoadBalancer::Nlb) {
            put(annotation::TYPE, "external");
            put(annotation::NLB_TARGET_TYPE, "ip");
            put(annotation::SCHEME, "internet-facing");
        }
        if let Some(tls) = &self.tls {
            put(annotation::SSL_CERT, &tls.certificate_arn);
            put(annotation::SSL_PORTS, &SERVER_PORT.to_string());
            put(annotation::BACKEND_PROTOCOL, "tcp");
            put(annotation::SSL_NEGOTIATION_POLICY, &tls.policy);
        }
        if let Some(host) = &self.hostname {
            put(annotation::EXTERNAL_DNS_HOSTNAME, host);
        }
        out
    }
}

const ARN_PARTITIONS: [&str; 3] = ["aws", "aws-cn", "aws-us-gov"];

/// An ACM certificate's ARN is `arn:PARTITION:acm:REGION:ACCOUNT:certificate/ID`, the ID a UUID
/// (<https://docs.aws.amazon.com/service-authorization/latest/reference/list_awscertificatemanager.html>).
fn check_acm_arn(arn: &str) -> std::result::Result<(), AccessError> {
    let refuse = |why: String| AccessError::NotAcmArn { arn: arn.to_string(), why };
    let parts: Vec<&str> = arn.split(':').collect();
    let [prefix, partition, service, region, account, resource] = parts[..] else {
        return Err(refuse("it is not an ARN (arn:PARTITION:SERVICE:REGION:ACCOUNT:RESOURCE)".into()));
    };
    if prefix != "arn" {
        return Err(refuse("it is not an ARN (arn:PARTITION:SERVICE:REGION:ACCOUNT:RESOURCE)".into()));
    }
    if !ARN_PARTITIONS.contains(&partition) {
        return Err(refuse(format!("partition {partition} is not one of {}", ARN_PARTITIONS.join(", "))));
    }
    if service == "iam" {
        return Err(refuse(
            "it names an IAM server certificate; import the certificate into ACM (`aws acm import-certificate`) \
             and give the ARN ACM returns"
                .into(),
        ));
    }
    if service != "acm" {
        return Err(refuse(format!("it is an ARN of the {service} service, not of acm")));
    }
    let region_shaped = {
        let pieces: Vec<&str> = region.split('-').collect();
        pieces.len() >= 3
            && pieces[0].len() == 2
            && pieces[..pieces.len() - 1].iter().all(|p| !p.is_empty() && p.bytes().all(|b| b.is_ascii_lowercase()))
            && pieces.last().is_some_and(|p| !p.is_empty() && p.bytes().all(|b| b.is_ascii_digit()))
    };
    if !region_shaped {
        return Err(refuse(format!(
            "region {:?} is not a region name such as us-east-1 (an ACM certificate is regional: it must be in the \
             cluster's region)",
            region
        )));
    }
    let region_partition = if region.starts_with("cn-") {
        "aws-cn"
    } else if region.starts_with("us-gov-") {
        "aws-us-gov"
    } else {
        "aws"
    };
    if region_partition != partition {
        return Err(refuse(format!(
            "region {region} is not in the {partition} partition (it is in {region_partition})"
        )));
    }
    if account.len() != 12 || !account.bytes().all(|b| b.is_ascii_digit()) {
        return Err(refuse(format!("account {account} is not 12 digits")));
    }
    let Some(id) = resource.strip_prefix("certificate/") else {
        return Err(refuse(format!("{resource} is not certificate/ID")));
    };
    if !is_uuid(id) {
        return Err(refuse(format!("certificate id {id} is not a UUID (8-4-4-4-12 hexadecimal digits)")));
    }
    Ok(())
}

fn is_uuid(id: &str) -> bool {
    let groups: Vec<&str> = id.split('-').collect();
    groups.len() == 5
        && groups.iter().zip([8, 4, 4, 4, 12]).all(|(g, n)| g.len() == n && g.bytes().all(|b| b.is_ascii_hexdigit()))
}

/// A host name as DNS allows it (RFC 1123 labels: letters, digits and inner hyphens, at most 63
/// each, 253 in all), fully qualified; returned lower case without a trailing dot.
fn check_hostname(name: &str) -> std::result::Result<String, AccessError> {
    let refuse = |why: String, suggestion: &str| AccessError::NotDnsName {
        name: name.to_string(),
        why,
        suggestion: suggestion.to_string(),
    };
    if let Some((_, rest)) = name.split_once("://") {
        let host = rest.split(['/', ':']).next().unwrap_or_default();
        return Err(refuse("it is a URL; the URL's scheme, port and path are the deployer's to set".into(), host));
    }
    let example = "kiali.example.com";
    if name.contains('/') {
        return Err(refuse("it has a path".into(), example));
    }
    if name.contains(':') {
        return Err(refuse(format!("it has a port; Kiali's is {SERVER_PORT}, added to the URL"), example));
    }
    if let Some(domain) = name.strip_prefix("*.") {
        return Err(refuse(
            "a wildcard names what a certificate covers, not the one host users open".into(),
            &format!("kiali.{domain}"),
        ));
    }
    let host = name.strip_suffix('.').unwrap_or(name).to_ascii_lowercase();
    if host.len() > 253 {
        return Err(refuse(format!("it is {} characters long, more than DNS's 253", host.len()), example));
    }
    let labels: Vec<&str> = host.split('.').collect();
    if labels.len() < 2 {
        return Err(refuse(
            format!("{host} is a single label; a load balancer's DNS record needs the fully qualified name"),
            &format!("{host}.example.com"),
        ));
    }
    for label in &labels {
        if label.is_empty() {
            return Err(refuse("it has an empty label (two dots in a row, or a leading dot)".into(), example));
        }
        if label.len() > 63 {
            return Err(refuse(format!("the label {label} is longer than 63 characters"), example));
        }
        if !label.bytes().all(|b| b.is_ascii_alphanumeric() || b == b'-') {
            return Err(refuse(format!("the label {label} has a character other than a-z, 0-9 and -"), example));
        }
        if label.starts_with('-') || label.ends_with('-') {
            return Err(refuse(format!("the label {label} starts or ends with -"), example));
        }
    }
    if labels.last().is_some_and(|l| l.bytes().all(|b| b.is_ascii_digit())) {
        return Err(refuse(
            "it is an IP address; the load balancer's address is printed after the install, and --hostname is \
             the name to point at it"
                .into(),
            example,
        ));
    }
    Ok(host)
}

fn check_policy(policy: &str, load_balancer: LoadBalancer) -> std::result::Result<String, AccessError> {
    if load_balancer.policies().contains(&policy) {
        return Ok(policy.to_string());
    }
    if load_balancer == LoadBalancer::Classic && NLB_POLICIES.contains(&policy) {
        return Err(AccessError::NlbPolicyOnClassic { policy: policy.to_string() });
    }
    Err(AccessError::UnknownPolicy {
        policy: policy.to_string(),
        load_balancer: load_balancer.describe().to_string(),
        page: load_balancer.policy_page().to_string(),
        known: load_balancer.policies().iter().map(|p| p.to_string()).collect(),
    })
}

/// Where the load balancer in front of Kiali answers: the `status.loadBalancer.ingress[0]` of
/// its Service (an ELB or NLB has a DNS name; other clouds may give an IP).
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum LbAddress {
    Hostname(String),
    Ip(String),
}

impl LbAddress {
    pub fn as_str(&self) -> &str {
        match self {
            LbAddress::Hostname(h) | LbAddress::Ip(h) => h,
        }
    }
}

/// What to tell the user once Kiali is up: the URL to open, the DNS record to create, and how
/// to log in.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Reached {
    pub server: ServerDeployment,
    pub url: String,
    /// A command to run first (a port-forward for a ClusterIP Service).
    pub first: Option<String>,
    /// The record that points `--hostname` at the load balancer, in zone-file form.
    pub dns_record: Option<String>,
    /// The `deployer kiali token` command line.
    pub login: String,
    pub notes: Vec<String>,
}

/// What to print once the server runs and, for a LoadBalancer Service, its load balancer has
/// `address`.
pub fn reached(plan: &Plan, server: &ServerDeployment, address: Option<&LbAddress>) -> Reached {
    let access = &plan.access;
    let scheme = if access.tls.is_some() { "https" } else { "http" };
    let service = format!("-n {} service {}", server.namespace, server.name);
    let (url, first) = match (access.load_balancer, address) {
        (Some(_), Some(address)) => {
            let host = access.hostname.as_deref().unwrap_or(address.as_str());
            (format!("{scheme}://{host}:{SERVER_PORT}/kiali"), None)
        }
        _ if plan.kiali_service_type() == "NodePort" => {
            (format!("http://NODE:NODE_PORT/kiali (`kubectl get {service}` shows the node port)"), None)
        }
        _ => (
            format!("http://localhost:{SERVER_PORT}/kiali"),
            Some(format!("kubectl -n {} port-forward service/{} {SERVER_PORT}", server.namespace, server.name)),
        ),
    };
    let dns_record = match (&access.hostname, address) {
        (Some(host), Some(LbAddress::Hostname(lb))) => Some(format!("{host}. CNAME {lb}.")),
        (Some(host), Some(LbAddress::Ip(ip))) => Some(format!("{host}. A {ip}")),
        _ => None,
    };
    let mut notes = Vec::new();
    if access.tls.is_some() && access.hostname.is_none() {
        notes.push(
            "the browser checks the certificate against the name in the URL, and no ACM certificate covers the load \
             balancer's own name: point a name the certificate covers at it (re-run with --hostname NAME for the \
             record to create) and open that"
                .to_string(),
        );
    }
    let mut login = "deployer kiali token".to_string();
    if plan.namespace != "istio-system" {
        login.push_str(&format!(" --istio-namespace {}", plan.namespace));
    }
    Reached { server: server.clone(), url, first, dns_record, login, notes }
}

impl std::fmt::Display for Reached {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        writeln!(f, "Kiali is up: {} is available.", self.server.describe())?;
        if let Some(first) = &self.first {
            writeln!(f, "  first   {first}")?;
        }
        writeln!(f, "  open    {}", self.url)?;
        if let Some(record) = &self.dns_record {
            writeln!(
                f,
                "  DNS     {record}  (external-dns creates it from the Service's annotation where it runs in the \
                 cluster; otherwise create it in the name's zone)"
            )?;
        }
        writeln!(f, "  log in  {}  (paste the token into the login page)", self.login)?;
        for note in &self.notes {
            writeln!(f, "note: {note}")?;
        }
        Ok(())
    }
}

/// The add-ons' objects, each namespaced one put in `namespace` unless it names its own.
pub fn addon_manifests(files: &[AddonFile], namespace: &str) -> Result<Vec<Manifest>> {
    let mut out = Vec::new();
    for file in files {
        for doc in serde_yaml::Deserializer::from_str(&file.text) {
            let mut body: Value = serde::Deserialize::deserialize(doc)
                .map_err(|e| PlanError::Invalid(format!("{}: not valid YAML: {e}", file.origin)))?;
            if body.is_null() {
                continue;
            }
            let (api_version, kind_name) = (str_at(&body, &["apiVersion"]), str_at(&body, &["kind"]));
            let kind = ADDON_KINDS.iter().find(|k| k.kind == kind_name && k.api_version() == api_version).copied();
            let kind = kind.ok_or_else(|| {
                PlanError::Invalid(format!(
                    "{}: {kind_name} ({api_version}) is not a kind the add-ons are known to use; apply it with kubectl",
                    file.origin
                ))
            })?;
            let name = str_at(&body, &["metadata", "name"]).to_string();
            if kind.namespaced && body["metadata"].get("namespace").is_none() {
                body["metadata"]["namespace"] = json!(namespace);
            }
            let ns = kind.namespaced.then(|| str_at(&body, &["metadata", "namespace"]).to_string());
            out.push(Manifest { kind, name, namespace: ns, body, origin: file.origin.clone() });
        }
    }
    Ok(out)
}

#[cfg(test)]
mod tests {
    use super::*;

    fn file(text: &str) -> Vec<AddonFile> {
        vec![AddonFile { origin: "addons.yaml".into(), text: text.into() }]
    }

    #[test]
    fn namespaced_add_ons_land_in_the_namespace_and_cluster_scoped_ones_stay_cluster_scoped() {
        let text = "apiVersion: v1\nkind: Service\nmetadata: {name: prometheus}\n---\n\
                    apiVersion: rbac.authorization.k8s.io/v1\nkind: ClusterRole\nmetadata: {name: prometheus}\n";
        let manifests = addon_manifests(&file(text), "istio-system").unwrap();
        let names: Vec<String> = manifests.iter().map(Manifest::describe).collect();
        assert_eq!(names, ["Service istio-system/prometheus", "ClusterRole prometheus"]);
        assert_eq!(manifests[0].body["metadata"]["namespace"], "istio-system");
        assert!(manifests[1].body["metadata"].get("namespace").is_none());
    }

    #[test]
    fn the_server_deployment_is_where_the_operator_says_else_where_the_spec_puts_it() {
        let cr = json!({"metadata": {"name": "kiali", "namespace": "istio-system"}, "spec": {}});
        assert_eq!(server_deployment(&cr), ServerDeployment { namespace: "istio-system".into(), name: "kiali".into() });
        let cr = json!({"metadata": {"name": "kiali", "namespace": "kiali-operator"},
                        "spec": {"deployment": {"namespace": "istio-system", "instance_name": "mesh-console"}}});
        assert_eq!(server_deployment(&cr).describe(), "Deployment istio-system/mesh-console");
        let cr = json!({"metadata": {"name": "kiali", "namespace": "istio-system"},
                        "spec": {"deployment": {"instance_name": "renamed-after"}},
                        "status": {"deployment": {"instanceName": "kiali", "namespace": "istio-system"}}});
        assert_eq!(server_deployment(&cr).describe(), "Deployment istio-system/kiali");
    }

    #[test]
    fn an_unknown_add_on_kind_is_refused_with_what_to_do() {
        let err = addon_manifests(&file("apiVersion: v1\nkind: Secret\nmetadata: {name: s}\n"), "ns").unwrap_err();
        assert!(err.to_string().contains("Secret (v1) is not a kind the add-ons are known to use"), "{err}");
    }

    fn lb_request() -> AccessRequest {
        AccessRequest { service_type: "LoadBalancer".into(), ..AccessRequest::default() }
    }

    const ARN: &str = "arn:aws:acm:ap-southeast-2:123456789012:certificate/0b1c2d3e-4f50-6172-8394-a5b6c7d8e9f0";

    #[test]
    fn acm_certificate_arns_of_every_partition_are_accepted() {
        for arn in [
            ARN,
            "arn:aws-cn:acm:cn-north-1:123456789012:certificate/0B1C2D3E-4F50-6172-8394-A5B6C7D8E9F0",
            "arn:aws-us-gov:acm:us-gov-west-1:123456789012:certificate/0b1c2d3e-4f50-6172-8394-a5b6c7d8e9f0",
            "arn:aws:acm:eu-central-2:123456789012:certificate/0b1c2d3e-4f50-6172-8394-a5b6c7d8e9f0",
        ] {
            assert_eq!(check_acm_arn(arn), Ok(()), "{arn}");
        }
    }

    #[test]
    fn arns_that_are_not_acm_certificates_are_refused_naming_what_is_wrong() {
        let cases = [
            ("arn:aws:acm:us-east-1:certificate/0b1c2d3e-4f50-6172-8394-a5b6c7d8e9f0", "is not an ARN"),
            ("acm:aws:acm:us-east-1:123456789012:certificate/0b1c2d3e-4f50-6172-8394-a5b6c7d8e9f0", "is not an ARN"),
            (
                "arn:aws-iso:acm:us-iso-east-1:123456789012:certificate/0b1c2d3e-4f50-6172-8394-a5b6c7d8e9f0",
                "partition aws-iso",
            ),
            ("arn:aws:iam::123456789012:server-certificate/kiali", "IAM server certificate"),
            ("arn:aws:s3:::kiali-certs", "of the s3 service"),
            ("arn:aws:acm::123456789012:certificate/0b1c2d3e-4f50-6172-8394-a5b6c7d8e9f0", "region \"\""),
            (
                "arn:aws:acm:cn-north-1:123456789012:certificate/0b1c2d3e-4f50-6172-8394-a5b6c7d8e9f0",
                "not in the aws partition",
            ),
            ("arn:aws:acm:us-east-1:12345678901a:certificate/0b1c2d3e-4f50-6172-8394-a5b6c7d8e9f0", "not 12 digits"),
            ("arn:aws:acm:us-east-1:123456789012:key/0b1c2d3e-4f50-6172-8394-a5b6c7d8e9f0", "not certificate/ID"),
            ("arn:aws:acm:us-east-1:123456789012:certificate/0b1c2d3e4f5061728394a5b6c7d8e9f0", "not a UUID"),
        ];
        for (arn, why) in cases {
            let err = check_acm_arn(arn).unwrap_err().to_string();
            assert!(
                err.contains(why) && err.contains("write arn:aws:acm:REGION:ACCOUNT:certificate/ID"),
                "{arn}: {err}"
            );
        }
    }

    #[test]
    fn host_names_are_accepted_lower_case_without_the_trailing_dot() {
        assert_eq!(check_hostname("Kiali.Example.COM.").unwrap(), "kiali.example.com");
        assert_eq!(check_hostname("kiali-1.mesh.example.org").unwrap(), "kiali-1.mesh.example.org");
    }

    #[test]
    fn names_that_are_not_dns_host_names_are_refused_naming_what_is_wrong() {
        let cases = [
            ("https://kiali.example.com:20001/kiali", "it is a URL", "--hostname kiali.example.com"),
            ("kiali.example.com:20001", "it has a port", "--hostname kiali.example.com"),
            ("*.example.com", "wildcard", "--hostname kiali.example.com"),
            ("kiali", "single label", "--hostname kiali.example.com"),
            ("kiali..example.com", "empty label", "--hostname kiali.example.com"),
            ("-kiali.example.com", "starts or ends with -", "--hostname kiali.example.com"),
            ("kiali_mesh.example.com", "kiali_mesh has a character", "--hostname kiali.example.com"),
            ("10.0.0.12", "IP address", "--hostname kiali.example.com"),
        ];
        for (name, why, suggestion) in cases {
            let err = check_hostname(name).unwrap_err().to_string();
            assert!(err.contains(why) && err.contains(suggestion), "{name}: {err}");
        }
        let long = format!("{}.example.com", "a".repeat(64));
        assert!(check_hostname(&long).unwrap_err().to_string().contains("longer than 63"));
    }

    #[test]
    fn the_default_policies_are_published_ones_and_allow_only_tls_1_2_and_later() {
        assert!(CLASSIC_POLICIES.contains(&LoadBalancer::Classic.default_policy()));
        assert!(NLB_POLICIES.contains(&LoadBalancer::Nlb.default_policy()));
        let request = AccessRequest { tls_certificate: Some(ARN.into()), ..lb_request() };
        assert_eq!(access(&request).unwrap().tls.unwrap().policy, "ELBSecurityPolicy-TLS-1-2-2017-01");
        let request = AccessRequest { load_balancer: Some(LoadBalancer::Nlb), ..request };
        assert_eq!(access(&request).unwrap().tls.unwrap().policy, "ELBSecurityPolicy-TLS13-1-2-2021-06");
    }

    #[test]
    fn a_published_policy_is_taken_for_the_load_balancer_it_is_published_for() {
        let request = AccessRequest {
            tls_certificate: Some(ARN.into()),
            tls_policy: Some("ELBSecurityPolicy-TLS13-1-2-Res-PQ-2025-09".into()),
            load_balancer: Some(LoadBalancer::Nlb),
            ..lb_request()
        };
        assert_eq!(access(&request).unwrap().tls.unwrap().policy, "ELBSecurityPolicy-TLS13-1-2-Res-PQ-2025-09");
        let request = AccessRequest {
            tls_policy: Some("ELBSecurityPolicy-TLS13-1-2-Res-PQ-2025-09".into()),
            load_balancer: None,
            ..request
        };
        assert_eq!(
            access(&request),
            Err(AccessError::NlbPolicyOnClassic { policy: "ELBSecurityPolicy-TLS13-1-2-Res-PQ-2025-09".into() })
        );
    }

    #[test]
    fn flags_that_need_a_load_balancer_are_refused_on_other_service_types() {
        for service_type in ["ClusterIP", "NodePort"] {
            let base = AccessRequest { service_type: service_type.into(), ..AccessRequest::default() };
            let cases = [
                ("--tls-certificate", AccessRequest { tls_certificate: Some(ARN.into()), ..base.clone() }),
                ("--load-balancer", AccessRequest { load_balancer: Some(LoadBalancer::Nlb), ..base.clone() }),
                ("--hostname", AccessRequest { hostname: Some("kiali.example.com".into()), ..base.clone() }),
            ];
            for (flag, request) in cases {
                assert_eq!(
                    access(&request),
                    Err(AccessError::NeedsLoadBalancer { flag, service_type: service_type.into() })
                );
            }
            assert_eq!(access(&base), Ok(Access::default()), "no flag, no load balancer");
        }
    }

    #[test]
    fn a_plain_nlb_or_a_named_plain_elb_is_allowed_without_tls() {
        let request = AccessRequest { load_balancer: Some(LoadBalancer::Nlb), ..lb_request() };
        let annotations = access(&request).unwrap().service_annotations();
        assert_eq!(annotations[annotation::TYPE], "external");
        assert!(!annotations.contains_key(annotation::SSL_CERT));
        let request = AccessRequest { hostname: Some("kiali.example.com".into()), ..lb_request() };
        let cr = kiali_cr_with_access("istio-system", "LoadBalancer", &access(&request).unwrap());
        assert_eq!(cr.body["spec"]["server"]["web_schema"], "http");
        assert_eq!(
            cr.body["spec"]["deployment"]["service_annotations"][annotation::EXTERNAL_DNS_HOSTNAME],
            "kiali.example.com"
        );
    }

    #[test]
    fn without_flags_the_cr_is_the_runbooks_with_no_annotations() {
        let cr = kiali_cr("istio-system", "LoadBalancer");
        assert!(cr.body["spec"]["deployment"].get("service_annotations").is_none(), "{}", cr.body);
        assert_eq!(cr.body["spec"]["server"], json!({"web_root": "/kiali"}));
    }

    fn plan_for(request: &AccessRequest, namespace: &str) -> Plan {
        let spec = Spec {
            namespace: namespace.into(),
            service_type: request.service_type.clone(),
            operator_version: "2.17.0".into(),
            timeout_secs: 300,
            addons: vec![],
        };
        plan_with_access(&spec, &access(request).unwrap()).unwrap()
    }

    #[test]
    fn what_is_printed_after_the_install_follows_the_service_type() {
        let server = ServerDeployment { namespace: "kiali".into(), name: "kiali".into() };
        let cluster_ip = AccessRequest { service_type: "ClusterIP".into(), ..AccessRequest::default() };
        let r = reached(&plan_for(&cluster_ip, "kiali"), &server, None);
        assert_eq!(r.url, "http://localhost:20001/kiali");
        assert_eq!(r.first.as_deref(), Some("kubectl -n kiali port-forward service/kiali 20001"));
        assert_eq!(r.login, "deployer kiali token --istio-namespace kiali");
        let named = AccessRequest { hostname: Some("kiali.example.com".into()), ..lb_request() };
        let r = reached(&plan_for(&named, "istio-system"), &server, Some(&LbAddress::Ip("203.0.113.7".into())));
        assert_eq!(r.url, "http://kiali.example.com:20001/kiali");
        assert_eq!(r.dns_record.as_deref(), Some("kiali.example.com. A 203.0.113.7"));
        assert_eq!(r.login, "deployer kiali token");
    }
}

//! `kiali install` with TLS on the AWS load balancer (issue 17): the Kiali CR that
//! `kiali install --dry-run -o yaml` prints without a cluster, one golden file per variant; every
//! refusal, before anything runs; and the install against the mock API: the CR applied with the
//! load-balancer annotations, the Service's address awaited, the URL and the login printed.

mod mock_api;
mod support;

use std::process::{Command, Output};

use deployer::apply::kiali;
use deployer::apply::ApplyError;
use deployer::plan::kiali::{access, AccessRequest, LoadBalancer, Spec};
use mock_api::{options, run, Step};
use serde_json::{json, Value};
use support::assert_golden;

const ARN: &str = "arn:aws:acm:ap-southeast-2:123456789012:certificate/0b1c2d3e-4f50-6172-8394-a5b6c7d8e9f0";
const KIALI_CR: &str = "/apis/kiali.io/v1alpha1/namespaces/istio-system/kialis/kiali";
const KIALI_DEPLOYMENT: &str = "/apis/apps/v1/namespaces/istio-system/deployments/kiali";
const KIALI_SERVICE: &str = "/api/v1/namespaces/istio-system/services/kiali";
const ELB: &str = "a1b2c3d4e5f6-1234567890.ap-southeast-2.elb.amazonaws.com";

/// `deployer kiali install ARGS` with no helm on PATH and no kubeconfig: whatever it prints,
/// it printed without a cluster.
fn kiali_install(args: &[&str]) -> Output {
    let dir = tempfile::tempdir().unwrap();
    Command::new(env!("CARGO_BIN_EXE_deployer"))
        .args(["kiali", "install"])
        .args(args)
        .env("PATH", dir.path())
        .env("KUBECONFIG", dir.path().join("no-such-kubeconfig"))
        .env_remove("KUBERNETES_SERVICE_HOST")
        .output()
        .unwrap()
}

fn stdout(out: &Output) -> String {
    assert!(out.status.success(), "exit {:?}: {}", out.status.code(), String::from_utf8_lossy(&out.stderr));
    String::from_utf8(out.stdout.clone()).unwrap()
}

#[test]
fn dry_run_yaml_prints_the_cr_for_a_classic_elb_with_tls_without_a_cluster() {
    let out = kiali_install(&[
        "--dry-run",
        "-o",
        "yaml",
        "--service-type",
        "LoadBalancer",
        "--tls-certificate",
        ARN,
        "--hostname",
        "kiali.example.com",
    ]);
    assert_golden("kiali-tls-elb.yaml", &stdout(&out));
}

#[test]
fn dry_run_yaml_prints_the_cr_for_an_nlb_with_tls_without_a_cluster() {
    let out = kiali_install(&[
        "--dry-run",
        "-o",
        "yaml",
        "--service-type",
        "LoadBalancer",
        "--load-balancer",
        "nlb",
        "--tls-certificate",
        ARN,
        "--hostname",
        "kiali.example.com",
    ]);
    assert_golden("kiali-tls-nlb.yaml", &stdout(&out));
}

#[test]
fn dry_run_yaml_prints_the_runbooks_cr_without_tls_without_a_cluster() {
    let out = kiali_install(&["--dry-run", "-o", "yaml", "--service-type", "LoadBalancer"]);
    assert_golden("kiali-no-tls.yaml", &stdout(&out));
}

#[test]
fn the_printed_cr_is_the_one_the_install_applies() {
    let yaml = stdout(&kiali_install(&[
        "--dry-run",
        "-o",
        "yaml",
        "--service-type",
        "LoadBalancer",
        "--tls-certificate",
        ARN,
    ]));
    let printed: Value = serde_yaml::from_str(&yaml).unwrap();
    let plan = tls_plan(None);
    assert_eq!(&printed, &plan.manifests.last().unwrap().body);
}

/// A refusal: exit status 2, nothing run (no helm on PATH to run, no cluster to ask), and a
/// message saying what is wrong and what to write instead.
fn refused(args: &[&str]) -> String {
    // The Istio directory does not exist either: the flags are checked before anything is read.
    let mut all = vec!["--istio-dir", "/nonexistent/istio-1.28.0"];
    all.extend_from_slice(args);
    let out = kiali_install(&all);
    let stderr = String::from_utf8_lossy(&out.stderr).to_string();
    assert_eq!(out.status.code(), Some(2), "{stderr}");
    assert!(out.stdout.is_empty(), "{}", String::from_utf8_lossy(&out.stdout));
    assert!(!stderr.contains("helm") && !stderr.contains("kubeconfig"), "refused before anything ran: {stderr}");
    stderr
}

#[test]
fn an_iam_server_certificate_is_refused_saying_to_use_acm() {
    let err = refused(&[
        "--service-type",
        "LoadBalancer",
        "--tls-certificate",
        "arn:aws:iam::123456789012:server-certificate/kiali",
    ]);
    assert!(err.contains("is not an ACM certificate ARN"), "{err}");
    assert!(err.contains("arn:aws:acm:REGION:ACCOUNT:certificate/ID"), "{err}");
    assert!(err.contains("aws acm list-certificates"), "{err}");
}

#[test]
fn a_certificate_that_is_not_an_arn_at_all_is_refused() {
    let err = refused(&["--service-type", "LoadBalancer", "--tls-certificate", "kiali.example.com"]);
    assert!(err.contains("--tls-certificate kiali.example.com is not an ACM certificate ARN"), "{err}");
}

#[test]
fn an_acm_arn_with_a_short_account_or_a_malformed_id_is_refused_naming_the_part() {
    let err = refused(&[
        "--service-type",
        "LoadBalancer",
        "--tls-certificate",
        "arn:aws:acm:us-east-1:1234:certificate/0b1c2d3e-4f50-6172-8394-a5b6c7d8e9f0",
    ]);
    assert!(err.contains("account 1234 is not 12 digits"), "{err}");
    let err = refused(&[
        "--service-type",
        "LoadBalancer",
        "--tls-certificate",
        "arn:aws:acm:us-east-1:123456789012:certificate/kiali",
    ]);
    assert!(err.contains("certificate id kiali is not a UUID"), "{err}");
}

#[test]
fn an_acm_arn_whose_region_is_not_in_its_partition_is_refused() {
    let err = refused(&[
        "--service-type",
        "LoadBalancer",
        "--tls-certificate",
        "arn:aws-cn:acm:us-east-1:123456789012:certificate/0b1c2d3e-4f50-6172-8394-a5b6c7d8e9f0",
    ]);
    assert!(err.contains("region us-east-1 is not in the aws-cn partition"), "{err}");
}

#[test]
fn a_hostname_that_is_a_url_is_refused_saying_to_write_the_name_only() {
    let err = refused(&[
        "--service-type",
        "LoadBalancer",
        "--tls-certificate",
        ARN,
        "--hostname",
        "https://kiali.example.com/kiali",
    ]);
    assert!(err.contains("--hostname https://kiali.example.com/kiali is not a DNS name"), "{err}");
    assert!(err.contains("--hostname kiali.example.com"), "{err}");
}

#[test]
fn a_hostname_with_an_invalid_label_or_a_single_label_is_refused() {
    let err = refused(&["--service-type", "LoadBalancer", "--hostname", "kiali_mesh.example.com"]);
    assert!(err.contains("is not a DNS name") && err.contains("kiali_mesh"), "{err}");
    let err = refused(&["--service-type", "LoadBalancer", "--hostname", "kiali"]);
    assert!(err.contains("is not a DNS name") && err.contains("fully qualified"), "{err}");
}

#[test]
fn a_policy_aws_does_not_publish_is_refused_listing_the_published_ones() {
    let err = refused(&[
        "--service-type",
        "LoadBalancer",
        "--tls-certificate",
        ARN,
        "--tls-policy",
        "ELBSecurityPolicy-TLS-1-3-2099-01",
    ]);
    assert!(
        err.contains(
            "ELBSecurityPolicy-TLS-1-3-2099-01 is not a security policy AWS publishes for a Classic Load Balancer"
        ),
        "{err}"
    );
    assert!(err.contains("ELBSecurityPolicy-TLS-1-2-2017-01"), "{err}");
    assert!(err.contains("elb-security-policy-table"), "names the page the list is from: {err}");
}

#[test]
fn an_nlb_policy_on_a_classic_elb_is_refused_saying_to_add_load_balancer_nlb() {
    let err = refused(&[
        "--service-type",
        "LoadBalancer",
        "--tls-certificate",
        ARN,
        "--tls-policy",
        "ELBSecurityPolicy-TLS13-1-2-2021-06",
    ]);
    assert!(err.contains("is a Network Load Balancer policy"), "{err}");
    assert!(err.contains("--load-balancer nlb"), "{err}");
}

#[test]
fn a_policy_unknown_to_the_nlb_is_refused_listing_the_nlb_policies() {
    let err = refused(&[
        "--service-type",
        "LoadBalancer",
        "--load-balancer",
        "nlb",
        "--tls-certificate",
        ARN,
        "--tls-policy",
        "ELBSample-OpenSSLDefaultCipherPolicy",
    ]);
    assert!(err.contains("is not a security policy AWS publishes for a Network Load Balancer"), "{err}");
    assert!(err.contains("ELBSecurityPolicy-TLS13-1-2-2021-06"), "{err}");
}

#[test]
fn tls_on_a_service_that_is_not_a_load_balancer_is_refused_saying_to_add_the_service_type() {
    let err = refused(&["--tls-certificate", ARN]);
    assert!(err.contains("--tls-certificate needs --service-type LoadBalancer"), "{err}");
    assert!(err.contains("ClusterIP"), "{err}");
    let err = refused(&["--service-type", "NodePort", "--tls-certificate", ARN]);
    assert!(err.contains("--tls-certificate needs --service-type LoadBalancer") && err.contains("NodePort"), "{err}");
}

#[test]
fn a_tls_policy_without_a_certificate_is_refused() {
    let err = refused(&["--service-type", "LoadBalancer", "--tls-policy", "ELBSecurityPolicy-TLS-1-2-2017-01"]);
    assert!(err.contains("--tls-policy needs --tls-certificate ARN"), "{err}");
}

#[test]
fn a_load_balancer_kind_or_a_hostname_without_a_load_balancer_is_refused() {
    let err = refused(&["--load-balancer", "nlb"]);
    assert!(err.contains("--load-balancer needs --service-type LoadBalancer"), "{err}");
    let err = refused(&["--hostname", "kiali.example.com"]);
    assert!(err.contains("--hostname needs --service-type LoadBalancer"), "{err}");
}

// The install with TLS, against the mock API.

fn tls_plan(hostname: Option<&str>) -> deployer::plan::kiali::Plan {
    let request = AccessRequest {
        service_type: "LoadBalancer".into(),
        tls_certificate: Some(ARN.into()),
        tls_policy: None,
        load_balancer: Some(LoadBalancer::Classic),
        hostname: hostname.map(String::from),
    };
    let spec = Spec {
        namespace: "istio-system".into(),
        service_type: "LoadBalancer".into(),
        operator_version: "2.17.0".into(),
        timeout_secs: 300,
        addons: vec![],
    };
    deployer::plan::kiali::plan_with_access(&spec, &access(&request).unwrap()).unwrap()
}

fn reconciled_cr() -> Value {
    json!({
        "apiVersion": "kiali.io/v1alpha1", "kind": "Kiali",
        "metadata": {"name": "kiali", "namespace": "istio-system"},
        "status": {
            "deployment": {"instanceName": "kiali", "namespace": "istio-system"},
            "conditions": [{"type": "Successful", "status": "True", "message": "Awaiting next reconciliation"}]
        }
    })
}

fn available_deployment() -> Value {
    json!({
        "apiVersion": "apps/v1", "kind": "Deployment",
        "metadata": {"name": "kiali", "namespace": "istio-system", "generation": 1},
        "spec": {"selector": {"matchLabels": {"app.kubernetes.io/name": "kiali"}},
                 "template": {"metadata": {"labels": {"app.kubernetes.io/name": "kiali"}},
                              "spec": {"containers": [{"name": "kiali", "image": "quay.io/kiali/kiali:v2.17.0"}]}}},
        "status": {"observedGeneration": 1, "replicas": 1, "availableReplicas": 1,
                   "conditions": [{"type": "Available", "status": "True", "message": "Deployment has minimum availability."}]}
    })
}

/// The Service the operator made from the CR: the annotations, and the load balancer's address
/// once the cloud controller has one.
fn kiali_service(ingress: Option<Value>) -> Value {
    let status = match ingress {
        Some(i) => json!({"loadBalancer": {"ingress": [i]}}),
        None => json!({"loadBalancer": {}}),
    };
    json!({
        "apiVersion": "v1", "kind": "Service",
        "metadata": {"name": "kiali", "namespace": "istio-system",
                     "annotations": {"service.beta.kubernetes.io/aws-load-balancer-ssl-cert": ARN}},
        "spec": {"type": "LoadBalancer", "ports": [{"name": "http", "port": 20001, "protocol": "TCP"}]},
        "status": status
    })
}

fn cr_apply_with_the_tls_annotations() -> Step {
    Step::patch(KIALI_CR)
        .query("fieldManager=xnat-guard-deployer")
        .body(|b| {
            let annotations = &b["spec"]["deployment"]["service_annotations"];
            assert_eq!(annotations["service.beta.kubernetes.io/aws-load-balancer-ssl-cert"], ARN, "{b}");
            assert_eq!(annotations["service.beta.kubernetes.io/aws-load-balancer-ssl-ports"], "20001", "{b}");
            assert_eq!(annotations["service.beta.kubernetes.io/aws-load-balancer-backend-protocol"], "tcp", "{b}");
            assert_eq!(
                annotations["service.beta.kubernetes.io/aws-load-balancer-ssl-negotiation-policy"],
                "ELBSecurityPolicy-TLS-1-2-2017-01",
                "{b}"
            );
            assert_eq!(annotations["external-dns.alpha.kubernetes.io/hostname"], "kiali.example.com", "{b}");
            assert_eq!(b["spec"]["deployment"]["service_type"], "LoadBalancer", "{b}");
        })
        .reply(200, json!({"metadata": {"name": "kiali", "resourceVersion": "1"}}))
}

#[tokio::test]
async fn install_with_tls_applies_the_annotations_waits_for_the_elb_and_prints_the_url_and_login() {
    let script = vec![
        Step::get(KIALI_CR).not_found(),
        cr_apply_with_the_tls_annotations(),
        Step::get(KIALI_CR).reply(200, reconciled_cr()),
        Step::get(KIALI_DEPLOYMENT).reply(200, available_deployment()),
        // The cloud controller has not provisioned the ELB yet, then it has.
        Step::get(KIALI_SERVICE).reply(200, kiali_service(None)),
        Step::get(KIALI_SERVICE).reply(200, kiali_service(Some(json!({"hostname": ELB})))),
    ];
    let plan = tls_plan(Some("kiali.example.com"));
    let reached = run(script, options(), |c| async move {
        kiali::apply_manifests(&c, &plan, |_, _| {}).await?;
        kiali::wait_until_reachable(&c, &plan).await
    })
    .await
    .unwrap();
    let printed = reached.to_string();
    assert!(printed.contains("https://kiali.example.com:20001/kiali"), "{printed}");
    assert!(printed.contains(&format!("kiali.example.com. CNAME {ELB}")), "{printed}");
    assert!(printed.contains("external-dns"), "{printed}");
    assert!(printed.contains("deployer kiali token"), "{printed}");
    assert!(printed.contains("Deployment istio-system/kiali"), "{printed}");
}

#[tokio::test]
async fn install_with_tls_and_no_hostname_prints_the_elbs_own_name_and_says_the_certificate_will_not_match() {
    let script = vec![
        Step::get(KIALI_CR).reply(200, reconciled_cr()),
        Step::get(KIALI_DEPLOYMENT).reply(200, available_deployment()),
        Step::get(KIALI_SERVICE).reply(200, kiali_service(None)).times(2),
        Step::get(KIALI_SERVICE).reply(200, kiali_service(Some(json!({"hostname": ELB})))),
    ];
    let plan = tls_plan(None);
    let reached =
        run(script, options(), |c| async move { kiali::wait_until_reachable(&c, &plan).await }).await.unwrap();
    let printed = reached.to_string();
    assert!(printed.contains(&format!("https://{ELB}:20001/kiali")), "{printed}");
    assert!(printed.contains("--hostname"), "says how to get a name the certificate covers: {printed}");
    assert!(!printed.contains("CNAME"), "{printed}");
}

#[tokio::test]
async fn a_load_balancer_that_never_gets_an_address_is_a_timeout_saying_where_to_look() {
    let script = vec![
        Step::get(KIALI_CR).reply(200, reconciled_cr()),
        Step::get(KIALI_DEPLOYMENT).reply(200, available_deployment()),
        Step::get(KIALI_SERVICE).reply(200, kiali_service(None)).repeated(),
    ];
    let plan = tls_plan(Some("kiali.example.com"));
    let err =
        run(script, options(), |c| async move { kiali::wait_until_reachable(&c, &plan).await }).await.unwrap_err();
    let ApplyError::Timeout(message) = &err else { panic!("expected a timeout, got {err}") };
    assert!(message.contains("Service istio-system/kiali has no load-balancer address yet"), "{message}");
    assert!(message.contains("kubectl -n istio-system describe service kiali"), "{message}");
}

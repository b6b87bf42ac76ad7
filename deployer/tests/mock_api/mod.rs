//! An in-process stand-in for the Kubernetes API server, after kube-rs's controller-rs tests:
//! a `tower-test` mock service behind a real `kube::Client`, and a script of the requests the
//! code must make, in order. Each step asserts the method, the path, the query parts and the
//! body, then answers. A step answers once, `times(n)` times, or, marked `repeated`, as long as
//! requests match it (a poll that never sees what it waits for).
#![allow(dead_code)]

use std::future::Future;
use std::time::Duration;

use deployer::apply::{Cluster, Options};
use http::{Method, Request, Response};
use kube::client::Body;
use serde_json::{json, Value};

type Check = Box<dyn Fn(&Value) + Send>;

pub struct Step {
    method: Method,
    path: String,
    query: Vec<String>,
    check: Option<Check>,
    status: u16,
    body: Value,
    text: Option<String>,
    repeated: bool,
    /// Answers this many times before moving on.
    times: usize,
    /// The query string must not contain these (e.g. `force=`).
    query_absent: Vec<String>,
    /// Fails the request at the transport (a connection reset) instead of answering.
    transport_error: Option<String>,
}

impl Step {
    pub fn new(method: Method, path: &str) -> Step {
        Step {
            method,
            path: path.into(),
            query: vec![],
            check: None,
            status: 200,
            body: json!({}),
            text: None,
            repeated: false,
            times: 1,
            query_absent: vec![],
            transport_error: None,
        }
    }
    pub fn get(path: &str) -> Step {
        Step::new(Method::GET, path)
    }
    pub fn patch(path: &str) -> Step {
        Step::new(Method::PATCH, path)
    }
    pub fn post(path: &str) -> Step {
        Step::new(Method::POST, path)
    }
    pub fn delete(path: &str) -> Step {
        Step::new(Method::DELETE, path)
    }
    /// The query string must contain this (e.g. `fieldManager=xnat-guard-deployer`).
    pub fn query(mut self, part: &str) -> Step {
        self.query.push(part.into());
        self
    }
    /// Asserts on the request body (JSON).
    pub fn body(mut self, check: impl Fn(&Value) + Send + 'static) -> Step {
        self.check = Some(Box::new(check));
        self
    }
    /// The query string must not contain this (e.g. `force=`: an apply that does not force).
    pub fn no_query(mut self, part: &str) -> Step {
        self.query_absent.push(part.into());
        self
    }
    pub fn reply(mut self, status: u16, body: Value) -> Step {
        self.status = status;
        self.body = body;
        self
    }
    pub fn reply_text(mut self, text: &str) -> Step {
        self.text = Some(text.into());
        self
    }
    pub fn not_found(self) -> Step {
        self.reply(404, json!({"kind": "Status", "apiVersion": "v1", "status": "Failure", "reason": "NotFound", "code": 404, "message": "not found"}))
    }
    pub fn repeated(mut self) -> Step {
        self.repeated = true;
        self
    }
    /// Answers the next `n` matching requests (a poll that sees the same state `n` times).
    pub fn times(mut self, n: usize) -> Step {
        self.times = n;
        self
    }
    fn describe(&self) -> String {
        format!("{} {}", self.method, self.path)
    }

    /// What the API server says when RBAC refuses `verb` on the resource (`statefulsets`,
    /// group `apps`) named `name`, for the user `alice`.
    pub fn forbidden(self, verb: &str, resource: &str, group: &str, name: &str) -> Step {
        let namespace = namespace_of(&self.path);
        let group_text = if group.is_empty() { "\"\"".to_string() } else { format!("\"{group}\"") };
        let qualified = if group.is_empty() { resource.to_string() } else { format!("{resource}.{group}") };
        let scope = if namespace.is_empty() || resource == "namespaces" {
            " at the cluster scope".to_string()
        } else {
            format!(" in the namespace \"{namespace}\"")
        };
        let message = format!(
            "{qualified} \"{name}\" is forbidden: User \"alice\" cannot {verb} resource \"{resource}\" in API group {group_text}{scope}"
        );
        self.reply(403, status(403, "Forbidden", &message, json!({"name": name, "group": group, "kind": resource})))
    }

    /// A CRD's schema refusing the object: 422 Invalid with one cause per `(field, message)`,
    /// worded as the API server words them.
    pub fn invalid(self, kind: &str, group: &str, name: &str, causes: &[(&str, &str)]) -> Step {
        let summary: Vec<String> = causes.iter().map(|(field, message)| format!("{field}: {message}")).collect();
        let message = if summary.len() == 1 {
            format!("{kind}.{group} \"{name}\" is invalid: {}", summary[0])
        } else {
            format!("{kind}.{group} \"{name}\" is invalid: [{}]", summary.join(", "))
        };
        let causes: Vec<Value> = causes
            .iter()
            .map(|(field, message)| json!({"reason": "FieldValueInvalid", "message": message, "field": field}))
            .collect();
        self.reply(
            422,
            status(422, "Invalid", &message, json!({"name": name, "group": group, "kind": kind, "causes": causes})),
        )
    }

    /// A validating admission webhook refusing the object. The API server prefixes the
    /// webhook's own message, and answers 400 when the webhook gave no code (Istio's gives none).
    pub fn webhook_denied(self, webhook: &str, message: &str) -> Step {
        let message = format!("admission webhook \"{webhook}\" denied the request: {message}");
        self.reply(400, json!({"kind": "Status", "apiVersion": "v1", "metadata": {}, "status": "Failure", "message": message, "code": 400}))
    }

    /// A transient failure: 429 (priority and fairness throttling), 500 or 503 (an API server
    /// restarting behind its load balancer).
    pub fn transient(self, code: u16) -> Step {
        let (reason, message, details) = match code {
            429 => ("TooManyRequests", "Too many requests, please try again later.", json!({"retryAfterSeconds": 1})),
            500 => ("InternalError", "Internal error occurred: etcdserver: request timed out", json!({})),
            503 => ("ServiceUnavailable", "the server is currently unable to handle the request", json!({})),
            other => panic!("{other} is not a transient status the mock knows"),
        };
        self.reply(code, status(code, reason, message, details))
    }

    /// The connection drops before an answer (an API server restarting, a load balancer's idle
    /// timeout): the client sees a transport error, not a Status.
    pub fn connection_reset(mut self) -> Step {
        self.transport_error = Some("connection reset by peer".into());
        self
    }
}

/// A `metav1.Status` failure body as the API server sends it.
pub fn status(code: u16, reason: &str, message: &str, details: Value) -> Value {
    json!({"kind": "Status", "apiVersion": "v1", "metadata": {}, "status": "Failure",
           "message": message, "reason": reason, "details": details, "code": code})
}

/// The namespace in an API path (`.../namespaces/NS/...`), or "" for a cluster-scoped one.
fn namespace_of(path: &str) -> String {
    let mut parts = path.split('/');
    while let Some(part) = parts.next() {
        if part == "namespaces" {
            return parts.next().unwrap_or("").to_string();
        }
    }
    String::new()
}

/// A server-side apply of `path` that does not force, asserting the field manager, answering
/// with the applied body at `resource_version`.
pub fn apply(path: &str, resource_version: &str) -> Step {
    let rv = resource_version.to_string();
    Step::patch(path)
        .query("fieldManager=xnat-guard-deployer")
        .no_query("force=")
        .body(|b| {
            assert!(b.get("apiVersion").is_some() && b.get("kind").is_some(), "apply body is a whole object: {b}")
        })
        .reply(200, json!({"metadata": {"name": path.rsplit('/').next().unwrap(), "resourceVersion": rv}}))
}

/// A server-side apply of `path` that takes conflicting fields over (`--force-conflicts`).
pub fn apply_forced(path: &str, resource_version: &str) -> Step {
    let rv = resource_version.to_string();
    Step::patch(path)
        .query("fieldManager=xnat-guard-deployer")
        .query("force=true")
        .reply(200, json!({"metadata": {"name": path.rsplit('/').next().unwrap(), "resourceVersion": rv}}))
}

/// What the API server answers a server-side apply (without force) that would change fields
/// another manager owns: 409 Conflict, one cause per field, worded as the field manager words
/// them (`conflict with "helm" using apps/v1`, field `.spec.replicas`).
pub fn apply_conflict(path: &str, conflicts: &[(&str, &str, &str)]) -> Step {
    let causes: Vec<Value> = conflicts
        .iter()
        .map(|(manager, api_version, field)| {
            json!({"reason": "FieldManagerConflict", "message": format!("conflict with \"{manager}\" using {api_version}"), "field": field})
        })
        .collect();
    let message = match conflicts {
        [(manager, api_version, field)] => {
            format!("Apply failed with 1 conflict: conflict with \"{manager}\" using {api_version}: {field}")
        }
        _ => format!("Apply failed with {} conflicts", conflicts.len()),
    };
    Step::patch(path).query("fieldManager=xnat-guard-deployer").no_query("force=").reply(
        409,
        json!({"kind": "Status", "apiVersion": "v1", "metadata": {}, "status": "Failure", "message": message,
               "reason": "Conflict", "details": {"causes": causes}, "code": 409}),
    )
}

pub fn list(items: Vec<Value>) -> Value {
    json!({"apiVersion": "v1", "kind": "List", "metadata": {"resourceVersion": "1"}, "items": items})
}

pub fn options() -> Options {
    Options {
        dry_run: false,
        timeout: Duration::from_millis(300),
        poll: Duration::from_millis(5),
        verbose: false,
        force_conflicts: false,
        verify: true,
    }
}

/// Runs `body` against a cluster that answers `script`; fails the test if a request strays
/// from the script or a non-repeated step is never reached.
pub async fn run<T, F, Fut>(script: Vec<Step>, opts: Options, body: F) -> T
where
    F: FnOnce(Cluster) -> Fut,
    Fut: Future<Output = T>,
{
    let (service, mut handle) = tower_test::mock::pair::<Request<Body>, Response<Body>>();
    let client = kube::Client::new(service, "default");
    let server = tokio::spawn(async move {
        let mut steps = script.into_iter().peekable();
        let mut served = Vec::new();
        while let Some((request, send)) = handle.next_request().await {
            let (parts, req_body) = request.into_parts();
            let path = parts.uri.path().to_string();
            let query = parts.uri.query().unwrap_or("").to_string();
            let bytes = req_body.collect_bytes().await.unwrap();
            // Skip past a repeated step once the next one matches.
            loop {
                let Some(step) = steps.peek() else {
                    panic!(
                        "unexpected request {} {path}?{query} after the script ended; served: {served:#?}",
                        parts.method
                    )
                };
                let matches = step.method == parts.method && step.path == path;
                if matches {
                    break;
                }
                if step.repeated {
                    steps.next();
                    continue;
                }
                panic!("expected {}, got {} {path}?{query}; served so far: {served:#?}", step.describe(), parts.method);
            }
            let step = steps.peek_mut().unwrap();
            for part in &step.query {
                assert!(query.contains(part.as_str()), "{} {path}: query {query:?} lacks {part:?}", parts.method);
            }
            for part in &step.query_absent {
                assert!(!query.contains(part.as_str()), "{} {path}: query {query:?} has {part:?}", parts.method);
            }
            if let Some(check) = &step.check {
                let value: Value = serde_json::from_slice(&bytes).unwrap_or(Value::Null);
                check(&value);
            }
            if let Some(error) = &step.transport_error {
                served.push(format!("{} {path}?{query} (connection reset)", parts.method));
                send.send_error(std::io::Error::new(std::io::ErrorKind::ConnectionReset, error.clone()));
                step.times = step.times.saturating_sub(1);
                if !step.repeated && step.times == 0 {
                    steps.next();
                }
                continue;
            }
            let payload = match &step.text {
                Some(t) => t.clone().into_bytes(),
                None => serde_json::to_vec(&step.body).unwrap(),
            };
            let response = Response::builder().status(step.status).body(Body::from(payload)).unwrap();
            served.push(format!("{} {path}?{query}", parts.method));
            send.send_response(response);
            step.times = step.times.saturating_sub(1);
            if !step.repeated && step.times == 0 {
                steps.next();
            }
        }
        let left: Vec<String> = steps.filter(|s| !s.repeated).map(|s| s.describe()).collect();
        assert!(left.is_empty(), "the code never made these requests: {left:?}");
    });
    let cluster = Cluster { client, opts };
    let out = body(cluster).await;
    // The client (and with it the mock service) is gone once `body` returns.
    tokio::time::timeout(Duration::from_secs(5), server)
        .await
        .expect("the mock API server did not finish")
        .unwrap_or_else(|e| std::panic::resume_unwind(e.into_panic()));
    out
}

/// An API group's discovery document (`GET /apis/GROUP`) serving `versions`.
pub fn api_group(group: &str, versions: &[&str]) -> Step {
    let vs: Vec<Value> =
        versions.iter().map(|v| json!({"groupVersion": format!("{group}/{v}"), "version": v})).collect();
    Step::get(&format!("/apis/{group}"))
        .reply(200, json!({"kind": "APIGroup", "apiVersion": "v1", "name": group, "versions": vs}))
}

/// What a recent Istio's cluster answers when a rollout asks which Istio APIs it serves: the
/// discovery documents of Istio's three groups, then the CRDs of the four kinds the deployer
/// writes, taken from `crds` (Istio's own: `support::istio_crds()`), in the order rollout reads them.
pub fn served_recent_istio(crds: &[Value]) -> Vec<Step> {
    let mut steps = vec![
        api_group("security.istio.io", &["v1", "v1beta1"]),
        api_group("networking.istio.io", &["v1", "v1beta1", "v1alpha3"]),
        api_group("extensions.istio.io", &["v1alpha1"]),
    ];
    for kind in deployer::plan::install::REQUIRED_CRDS {
        let name = kind.crd_name();
        let crd = crds.iter().find(|c| c["metadata"]["name"] == name.as_str()).cloned().expect("a shared CRD");
        steps.push(
            Step::get(&format!("/apis/apiextensions.k8s.io/v1/customresourcedefinitions/{name}")).reply(200, crd),
        );
    }
    steps
}

/// `GET /api/v1/namespaces/NS/serviceaccounts`, answered with ServiceAccounts of these names.
pub fn service_accounts(namespace: &str, names: &[&str]) -> Step {
    let items: Vec<Value> = names
        .iter()
        .map(|n| json!({"apiVersion": "v1", "kind": "ServiceAccount", "metadata": {"name": n, "namespace": namespace}}))
        .collect();
    Step::get(&service_accounts_path(namespace)).reply(200, list(items))
}

/// Where a namespace's ServiceAccounts are listed.
pub fn service_accounts_path(namespace: &str) -> String {
    format!("/api/v1/namespaces/{namespace}/serviceaccounts")
}

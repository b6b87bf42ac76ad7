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
}

/// A server-side apply of `path`, asserting the field manager and force, answering with the
/// applied body at `resource_version`.
pub fn apply(path: &str, resource_version: &str) -> Step {
    let rv = resource_version.to_string();
    Step::patch(path)
        .query("fieldManager=xnat-guard-deployer")
        .query("force=true")
        .body(|b| {
            assert!(b.get("apiVersion").is_some() && b.get("kind").is_some(), "apply body is a whole object: {b}")
        })
        .reply(200, json!({"metadata": {"name": path.rsplit('/').next().unwrap(), "resourceVersion": rv}}))
}

pub fn list(items: Vec<Value>) -> Value {
    json!({"apiVersion": "v1", "kind": "List", "metadata": {"resourceVersion": "1"}, "items": items})
}

pub fn options() -> Options {
    Options { dry_run: false, timeout: Duration::from_millis(300), poll: Duration::from_millis(5), verbose: false }
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
            if let Some(check) = &step.check {
                let value: Value = serde_json::from_slice(&bytes).unwrap_or(Value::Null);
                check(&value);
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

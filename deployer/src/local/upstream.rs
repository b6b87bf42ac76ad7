//! A stand-in for XNAT that records every request reaching it, so tests and the tour can show
//! that a denied request never arrived.

use std::convert::Infallible;
use std::net::SocketAddr;
use std::sync::{Arc, Mutex};

use bytes::Bytes;
use http_body_util::{BodyExt, Full};
use hyper::body::Incoming;
use hyper::server::conn::http1;
use hyper::service::service_fn;
use hyper::{Request, Response};
use hyper_util::rt::TokioIo;

/// One request as the upstream saw it.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Recorded {
    pub method: String,
    /// Path and query as received.
    pub target: String,
    pub headers: Vec<(String, Vec<u8>)>,
    pub body_len: usize,
}

impl Recorded {
    pub fn header(&self, name: &str) -> Option<&[u8]> {
        self.headers.iter().find(|(k, _)| k.eq_ignore_ascii_case(name)).map(|(_, v)| v.as_slice())
    }
}

/// A running upstream on its own runtime thread; stopped when dropped.
pub struct RecordingUpstream {
    addr: SocketAddr,
    log: Arc<Mutex<Vec<Recorded>>>,
    shutdown: Option<tokio::sync::oneshot::Sender<()>>,
    thread: Option<std::thread::JoinHandle<()>>,
}

impl RecordingUpstream {
    /// Listens on `addr` (port 0 picks a free one) and records every request.
    pub fn start(addr: SocketAddr) -> std::io::Result<RecordingUpstream> {
        Self::start_with(addr, true)
    }

    /// As [`start`](Self::start); with `record` false it only answers (for load runs, where
    /// keeping every request would distort the measurement).
    pub fn start_with(addr: SocketAddr, record: bool) -> std::io::Result<RecordingUpstream> {
        let std_listener = std::net::TcpListener::bind(addr)?;
        std_listener.set_nonblocking(true)?;
        let addr = std_listener.local_addr()?;
        let log = Arc::new(Mutex::new(Vec::new()));
        let (tx, rx) = tokio::sync::oneshot::channel();
        let runtime = tokio::runtime::Builder::new_multi_thread().worker_threads(1).enable_all().build()?;
        let log_for_server = log.clone();
        let thread = std::thread::Builder::new().name("xnat-stand-in".into()).spawn(move || {
            runtime.block_on(serve(std_listener, record.then_some(log_for_server), rx));
        })?;
        Ok(RecordingUpstream { addr, log, shutdown: Some(tx), thread: Some(thread) })
    }

    pub fn addr(&self) -> SocketAddr {
        self.addr
    }

    /// Everything received so far.
    pub fn requests(&self) -> Vec<Recorded> {
        self.log.lock().map(|l| l.clone()).unwrap_or_default()
    }

    /// Requests carrying `x-request-tag: tag`, the tests' way to find their own request.
    pub fn tagged(&self, tag: &str) -> Vec<Recorded> {
        self.requests().into_iter().filter(|r| r.header("x-request-tag") == Some(tag.as_bytes())).collect()
    }
}

impl Drop for RecordingUpstream {
    fn drop(&mut self) {
        if let Some(tx) = self.shutdown.take() {
            let _ = tx.send(());
        }
        if let Some(t) = self.thread.take() {
            let _ = t.join();
        }
    }
}

async fn serve(
    listener: std::net::TcpListener,
    log: Option<Arc<Mutex<Vec<Recorded>>>>,
    mut stop: tokio::sync::oneshot::Receiver<()>,
) {
    let Ok(listener) = tokio::net::TcpListener::from_std(listener) else {
        return;
    };
    loop {
        tokio::select! {
            _ = &mut stop => return,
            accepted = listener.accept() => {
                let Ok((stream, _)) = accepted else { continue };
                let _ = stream.set_nodelay(true);
                let log = log.clone();
                tokio::spawn(async move {
                    let service = service_fn(move |req| handle(req, log.clone()));
                    let _ = http1::Builder::new().serve_connection(TokioIo::new(stream), service).await;
                });
            }
        }
    }
}

async fn handle(
    req: Request<Incoming>,
    log: Option<Arc<Mutex<Vec<Recorded>>>>,
) -> Result<Response<Full<Bytes>>, Infallible> {
    let method = req.method().to_string();
    let target = req.uri().path_and_query().map(|p| p.to_string()).unwrap_or_default();
    let headers = req.headers().iter().map(|(k, v)| (k.as_str().to_string(), v.as_bytes().to_vec())).collect();
    let body_len = req.into_body().collect().await.map(|b| b.to_bytes().len()).unwrap_or(0);
    let body = format!("XNAT stand-in: {method} {target}\n");
    if let Some(Ok(mut l)) = log.as_ref().map(|l| l.lock()) {
        l.push(Recorded { method, target, headers, body_len });
    }
    Ok(Response::new(Full::new(Bytes::from(body))))
}

//! A small blocking HTTP/1.1 client that writes the request bytes exactly as given (hostile
//! headers included) over plaintext or mutual TLS, and reads one response.

use std::io::{Read, Write};
use std::net::{SocketAddr, TcpStream};
use std::sync::Arc;
use std::time::Duration;

use rustls::pki_types::{CertificateDer, PrivateKeyDer, PrivatePkcs8KeyDer, ServerName};

use super::pki::ClientIdentity;

#[derive(Debug, Clone)]
pub struct RawRequest {
    pub method: String,
    pub path: String,
    pub host: String,
    /// Extra header lines as raw bytes (name, value).
    pub headers: Vec<(Vec<u8>, Vec<u8>)>,
    pub body: Vec<u8>,
}

impl RawRequest {
    pub fn new(method: &str, path: &str) -> RawRequest {
        RawRequest {
            method: method.into(),
            path: path.into(),
            host: "xnat.local".into(),
            headers: vec![],
            body: vec![],
        }
    }

    pub fn get(path: &str) -> RawRequest {
        RawRequest::new("GET", path)
    }

    pub fn header(mut self, name: impl AsRef<[u8]>, value: impl AsRef<[u8]>) -> RawRequest {
        self.headers.push((name.as_ref().to_vec(), value.as_ref().to_vec()));
        self
    }

    pub fn host(mut self, host: &str) -> RawRequest {
        self.host = host.into();
        self
    }

    fn to_bytes(&self, connection: &str) -> Vec<u8> {
        let mut out =
            format!("{} {} HTTP/1.1\r\nhost: {}\r\nconnection: {connection}\r\n", self.method, self.path, self.host)
                .into_bytes();
        for (name, value) in &self.headers {
            out.extend_from_slice(name);
            out.extend_from_slice(b": ");
            out.extend_from_slice(value);
            out.extend_from_slice(b"\r\n");
        }
        if !self.body.is_empty() || matches!(self.method.as_str(), "POST" | "PUT" | "PATCH") {
            out.extend_from_slice(format!("content-length: {}\r\n", self.body.len()).as_bytes());
        }
        out.extend_from_slice(b"\r\n");
        out.extend_from_slice(&self.body);
        out
    }
}

#[derive(Debug, Clone)]
pub struct Response {
    pub status: u16,
    pub headers: Vec<(String, String)>,
    pub body: Vec<u8>,
}

impl Response {
    pub fn body_text(&self) -> String {
        String::from_utf8_lossy(&self.body).into_owned()
    }
}

const TIMEOUT: Duration = Duration::from_secs(10);

/// Sends over plaintext.
pub fn send_plain(target: SocketAddr, request: &RawRequest) -> std::io::Result<Response> {
    let mut stream = TcpStream::connect_timeout(&target, TIMEOUT)?;
    stream.set_read_timeout(Some(TIMEOUT))?;
    stream.write_all(&request.to_bytes("close"))?;
    read_response(&mut stream, &request.method)
}

/// Sends over mutual TLS, presenting `identity`'s certificate and trusting `ca_der`.
pub fn send_mtls(
    target: SocketAddr,
    request: &RawRequest,
    identity: &ClientIdentity,
    ca_der: &[u8],
) -> std::io::Result<Response> {
    let config = tls_config(identity, ca_der)?;
    let server_name = ServerName::try_from("localhost").map_err(std::io::Error::other)?;
    let conn = rustls::ClientConnection::new(Arc::new(config), server_name).map_err(std::io::Error::other)?;
    let tcp = TcpStream::connect_timeout(&target, TIMEOUT)?;
    tcp.set_read_timeout(Some(TIMEOUT))?;
    let mut tls = rustls::StreamOwned::new(conn, tcp);
    tls.write_all(&request.to_bytes("close"))?;
    read_response(&mut tls, &request.method)
}

/// Sends over plaintext when `identity` is `None`, else over mutual TLS.
pub fn send(
    target: SocketAddr,
    request: &RawRequest,
    identity: Option<&ClientIdentity>,
    ca_der: &[u8],
) -> std::io::Result<Response> {
    match identity {
        None => send_plain(target, request),
        Some(id) => send_mtls(target, request, id, ca_der),
    }
}

#[cfg(feature = "testing")]
trait Stream: Read + Write + Send {}
#[cfg(feature = "testing")]
impl<T: Read + Write + Send> Stream for T {}

/// One kept-alive connection, plaintext or mutual TLS, carrying requests one after another:
/// what a pooled client or a peer sidecar does. For the tests (feature `testing`).
#[cfg(feature = "testing")]
pub struct Session {
    stream: Box<dyn Stream>,
}

#[cfg(feature = "testing")]
impl Session {
    /// Connects over plaintext when `identity` is `None`, else over mutual TLS.
    pub fn open(target: SocketAddr, identity: Option<&ClientIdentity>, ca_der: &[u8]) -> std::io::Result<Session> {
        let tcp = TcpStream::connect_timeout(&target, TIMEOUT)?;
        tcp.set_read_timeout(Some(TIMEOUT))?;
        let stream: Box<dyn Stream> = match identity {
            None => Box::new(tcp),
            Some(id) => {
                let config = tls_config(id, ca_der)?;
                let server_name = ServerName::try_from("localhost").map_err(std::io::Error::other)?;
                let conn =
                    rustls::ClientConnection::new(Arc::new(config), server_name).map_err(std::io::Error::other)?;
                Box::new(rustls::StreamOwned::new(conn, tcp))
            }
        };
        Ok(Session { stream })
    }

    /// Sends `request` with `connection: keep-alive` and reads its response.
    pub fn send(&mut self, request: &RawRequest) -> std::io::Result<Response> {
        self.stream.write_all(&request.to_bytes("keep-alive"))?;
        self.stream.flush()?;
        read_response(&mut self.stream, &request.method)
    }
}

fn tls_config(identity: &ClientIdentity, ca_der: &[u8]) -> std::io::Result<rustls::ClientConfig> {
    let provider = Arc::new(rustls::crypto::ring::default_provider());
    let mut roots = rustls::RootCertStore::empty();
    roots.add(CertificateDer::from(ca_der.to_vec())).map_err(std::io::Error::other)?;
    let chain = vec![CertificateDer::from(identity.files.cert_der.clone())];
    let key = PrivateKeyDer::Pkcs8(PrivatePkcs8KeyDer::from(identity.files.key_der.clone()));
    rustls::ClientConfig::builder_with_provider(provider)
        .with_safe_default_protocol_versions()
        .map_err(std::io::Error::other)?
        .with_root_certificates(roots)
        .with_client_auth_cert(chain, key)
        .map_err(std::io::Error::other)
}

/// Reads one response, framed by its headers (so no wait for the server to close: Envoy
/// holds a closing connection open for its delayed-close timeout).
fn read_response(stream: &mut impl Read, method: &str) -> std::io::Result<Response> {
    let mut raw = Vec::new();
    let mut buf = [0u8; 8192];
    loop {
        if let Some(response) = complete_response(&raw, method)? {
            return Ok(response);
        }
        let n = match stream.read(&mut buf) {
            Ok(n) => n,
            // A TLS peer that closes without close_notify: take what arrived.
            Err(e) if e.kind() == std::io::ErrorKind::UnexpectedEof => 0,
            Err(e) => return Err(e),
        };
        if n == 0 {
            return parse_response(&raw, method, true)?.ok_or_else(|| {
                std::io::Error::new(std::io::ErrorKind::UnexpectedEof, "connection closed before a whole response")
            });
        }
        raw.extend_from_slice(&buf[..n]);
    }
}

fn complete_response(raw: &[u8], method: &str) -> std::io::Result<Option<Response>> {
    parse_response(raw, method, false)
}

/// `Ok(None)` while more bytes are needed; at EOF (`eof`) a body without framing ends there.
fn parse_response(raw: &[u8], method: &str, eof: bool) -> std::io::Result<Option<Response>> {
    let bad =
        |what: &str| std::io::Error::new(std::io::ErrorKind::InvalidData, format!("malformed HTTP response: {what}"));
    let Some(head_end) = raw.windows(4).position(|w| w == b"\r\n\r\n") else {
        return if eof { Err(bad("no end of headers")) } else { Ok(None) };
    };
    let head = String::from_utf8_lossy(&raw[..head_end]);
    let mut lines = head.split("\r\n");
    let status_line = lines.next().ok_or_else(|| bad("empty"))?;
    let status: u16 = status_line.split(' ').nth(1).and_then(|s| s.parse().ok()).ok_or_else(|| bad(status_line))?;
    let headers: Vec<(String, String)> = lines
        .filter_map(|l| l.split_once(':'))
        .map(|(k, v)| (k.trim().to_ascii_lowercase(), v.trim().to_string()))
        .collect();
    let rest = &raw[head_end + 4..];
    let header = |name: &str| headers.iter().find(|(k, _)| k == name).map(|(_, v)| v.as_str());
    let body = if method == "HEAD" || status == 204 || status == 304 || (100..200).contains(&status) {
        Some(Vec::new())
    } else if header("transfer-encoding").is_some_and(|v| v.eq_ignore_ascii_case("chunked")) {
        dechunk(rest)
    } else if let Some(len) = header("content-length") {
        let len: usize = len.parse().map_err(|_| bad("content-length"))?;
        rest.get(..len).map(<[u8]>::to_vec)
    } else if eof {
        Some(rest.to_vec())
    } else {
        None
    };
    match body {
        Some(body) => Ok(Some(Response { status, headers, body })),
        None if eof => Err(bad("truncated body")),
        None => Ok(None),
    }
}

fn dechunk(mut data: &[u8]) -> Option<Vec<u8>> {
    let mut out = Vec::new();
    loop {
        let line_end = data.windows(2).position(|w| w == b"\r\n")?;
        let size_text = std::str::from_utf8(&data[..line_end]).ok()?;
        let size = usize::from_str_radix(size_text.split(';').next()?.trim(), 16).ok()?;
        data = &data[line_end + 2..];
        if size == 0 {
            return Some(out);
        }
        out.extend_from_slice(data.get(..size)?);
        data = data.get(size + 2..)?;
    }
}

//! Every fact a request is judged on, in one host call: a CEL expression, written once per
//! configuration from what it reads, that Envoy evaluates per request (its `expr_evaluate`
//! foreign function) and answers as one list. Writing the expression and reading the answer
//! need no host, so both are tested here.
//!
//! The answer is exact or it is not used: Envoy joins a repeated header's values with `,`, so
//! a header value holding a comma (or, where `_` may stand for `-` in a name, any header name
//! holding `_`) makes the answer [`Unread::Ambiguous`], and the glue reads that request the
//! other way.

use crate::address::parse as parse_address;
use crate::headers::Pairs;
use crate::model::Engine;
use crate::request::{HeaderValues, Needs, Request};

/// The expression for one configuration, and how to read its answer.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct FactQuery {
    expression: String,
    /// Which facts the list holds, in this order.
    mtls: bool,
    peer_uri_san: bool,
    port: bool,
    source_address: bool,
    destination_address: bool,
    sni: bool,
    method: bool,
    path: bool,
    host: bool,
    /// Whether the list starts with "some header name holds `_`".
    underscore_guard: bool,
    /// Named headers: each a presence flag, then the (joined) value.
    headers: usize,
}

/// Why an answer was not read.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Unread {
    /// Exact only by another read: a value was joined, or a name may be a variant.
    Ambiguous,
    /// Not the list the expression makes.
    Malformed,
}

// CEL's attributes, each guarded so that an absent one reads as a default instead of failing
// the whole evaluation (a plaintext connection has no peer certificate).
const MTLS: &str = "has(connection.mtls) && connection.mtls";
const PEER_URI_SAN: &str = "has(connection.uri_san_peer_certificate) ? connection.uri_san_peer_certificate : ''";
const PORT: &str = "has(destination.port) ? destination.port : 0";
const SOURCE_ADDRESS: &str = "has(source.address) ? source.address : ''";
const DESTINATION_ADDRESS: &str = "has(destination.address) ? destination.address : ''";
const SNI: &str = "has(connection.requested_server_name) ? connection.requested_server_name : ''";
const METHOD: &str = "has(request.method) ? request.method : ''";
const PATH: &str = "has(request.path) ? request.path : ''";
const HOST: &str = "has(request.host) ? request.host : ''";
const UNDERSCORE_GUARD: &str = "request.headers.exists(name, name.contains('_'))";

/// Header names go into the expression as string literals: only a token's characters, so
/// nothing needs escaping.
fn is_token(name: &str) -> bool {
    !name.is_empty()
        && name.bytes().all(|b| b.is_ascii_alphanumeric() || b"!#$%&*+-.^_`|~:".contains(&b))
        && !name.contains('\'')
}

impl FactQuery {
    /// The query for what `engine` reads ([`Engine::reads`]), or `None` when a header name
    /// cannot be written into an expression (then the glue reads facts one call each).
    pub fn for_engine(engine: &Engine) -> Option<FactQuery> {
        let names: Vec<&str> = engine.header_names().iter().map(|n| &**n).collect();
        let loose = names
            .iter()
            .enumerate()
            .any(|(i, name)| name.contains('-') && engine.is_header(i, name.replace('-', "_").as_bytes()));
        FactQuery::new(&engine.reads(), &names, loose)
    }

    /// The query for `needs` and header `names` (lower case); `loose_names` when a name with
    /// `_` for `-` counts as the same header.
    pub fn new(needs: &Needs, names: &[&str], loose_names: bool) -> Option<FactQuery> {
        if !names.iter().all(|n| is_token(n)) {
            return None;
        }
        let mut query = FactQuery {
            expression: String::new(),
            mtls: needs.peer || needs.identity,
            peer_uri_san: needs.identity,
            port: needs.port || needs.port_for_plaintext,
            source_address: needs.source_ip || needs.remote_ip,
            destination_address: needs.destination_ip,
            sni: needs.sni,
            method: needs.method,
            path: needs.path || needs.query,
            host: needs.host,
            underscore_guard: loose_names && !names.is_empty(),
            headers: names.len(),
        };
        let mut items: Vec<String> = Vec::new();
        if query.underscore_guard {
            items.push(UNDERSCORE_GUARD.to_string());
        }
        let facts = [
            (query.mtls, MTLS),
            (query.peer_uri_san, PEER_URI_SAN),
            (query.port, PORT),
            (query.source_address, SOURCE_ADDRESS),
            (query.destination_address, DESTINATION_ADDRESS),
            (query.sni, SNI),
            (query.method, METHOD),
            (query.path, PATH),
            (query.host, HOST),
        ];
        items.extend(facts.iter().filter(|(read, _)| *read).map(|(_, cel)| cel.to_string()));
        for name in names {
            let name = name.to_ascii_lowercase();
            items.push(format!("'{name}' in request.headers"));
            items.push(format!("'{name}' in request.headers ? request.headers['{name}'] : ''"));
        }
        query.expression = format!("[{}]", items.join(", "));
        Some(query)
    }

    /// Whether the configuration reads nothing from the request (then there is nothing to ask).
    pub fn is_empty(&self) -> bool {
        self.expression == "[]"
    }

    /// The CEL source text, for `expr_create`.
    pub fn expression(&self) -> &str {
        &self.expression
    }

    /// Reads Envoy's answer (a list, in the pairs encoding: each element a key with an empty
    /// value) into a request for `f`. `None` facts stay absent, as when a property is absent.
    pub fn read<R>(&self, answer: &[u8], f: impl FnOnce(&Request<'_>) -> R) -> Result<R, Unread> {
        let mut items = Pairs::of(answer).ok_or(Unread::Malformed)?;
        let mut next = || items.next().map(|(item, _)| item).ok_or(Unread::Malformed);
        if self.underscore_guard && flag(next()?)? {
            return Err(Unread::Ambiguous);
        }
        let mtls = if self.mtls { flag(next()?)? } else { false };
        let san = if self.peer_uri_san { Some(next()?).filter(|s| !s.is_empty()) } else { None };
        let peer = san.or_else(|| mtls.then_some(&[][..]));
        let port = if self.port { integer(next()?)? } else { None };
        let source_ip = if self.source_address { parse_address(next()?) } else { None };
        let destination_ip = if self.destination_address { parse_address(next()?) } else { None };
        let sni = if self.sni { Some(next()?).filter(|s| !s.is_empty()) } else { None };
        let method = if self.method { next()? } else { &[] };
        let path = if self.path { next()? } else { &[] };
        let host = if self.host { Some(next()?) } else { None };
        let mut present = [false; STACK_HEADERS];
        let mut values: [&[u8]; STACK_HEADERS] = [&[]; STACK_HEADERS];
        let mut more: Vec<(bool, &[u8])> = Vec::new();
        for i in 0..self.headers {
            let (is_present, value) = (flag(next()?)?, next()?);
            if value.contains(&b',') {
                return Err(Unread::Ambiguous);
            }
            match (present.get_mut(i), values.get_mut(i)) {
                (Some(p), Some(v)) => (*p, *v) = (is_present, value),
                _ => more.push((is_present, value)),
            }
        }
        if items.next().is_some() {
            return Err(Unread::Malformed);
        }
        let mut groups: [HeaderValues<'_>; STACK_HEADERS] = [&[]; STACK_HEADERS];
        for ((group, value), &is_present) in groups.iter_mut().zip(&values).zip(&present) {
            if is_present {
                *group = std::slice::from_ref(value);
            }
        }
        let base = Request {
            method,
            path,
            host,
            port,
            peer,
            source_ip,
            remote_ip: source_ip,
            destination_ip,
            sni,
            ..Request::default()
        };
        if self.headers <= STACK_HEADERS {
            return Ok(f(&Request { headers: &groups[..self.headers], ..base }));
        }
        let tail: Vec<HeaderValues<'_>> =
            more.iter().map(|(p, v)| if *p { std::slice::from_ref(v) } else { &[][..] }).collect();
        let all: Vec<HeaderValues<'_>> = groups.iter().copied().chain(tail).collect();
        Ok(f(&Request { headers: &all, ..base }))
    }
}

/// Named headers judged from the stack; more allocate.
const STACK_HEADERS: usize = 8;

/// A CEL bool: one byte.
fn flag(item: &[u8]) -> Result<bool, Unread> {
    match item {
        [0] => Ok(false),
        [1] => Ok(true),
        _ => Err(Unread::Malformed),
    }
}

/// A CEL int: eight little-endian bytes; 0 (the guard's default) and what is not a port read
/// as absent.
fn integer(item: &[u8]) -> Result<Option<u16>, Unread> {
    let bytes: [u8; 8] = item.try_into().map_err(|_| Unread::Malformed)?;
    Ok(u16::try_from(i64::from_le_bytes(bytes)).ok().filter(|&port| port != 0))
}

#[cfg(test)]
mod tests {
    use super::*;

    /// A list as Envoy's serializer writes it: each element a key with an empty value.
    fn answer(items: &[&[u8]]) -> Vec<u8> {
        let mut out = (items.len() as u32).to_le_bytes().to_vec();
        for item in items {
            out.extend((item.len() as u32).to_le_bytes());
            out.extend(0u32.to_le_bytes());
        }
        for item in items {
            out.extend(*item);
            out.extend([0, 0]);
        }
        out
    }

    fn needs() -> Needs {
        Needs {
            method: false,
            path: false,
            query: false,
            host: false,
            port: false,
            port_for_plaintext: false,
            peer: false,
            identity: false,
            source_ip: false,
            remote_ip: false,
            destination_ip: false,
            sni: false,
        }
    }

    fn port(n: i64) -> Vec<u8> {
        n.to_le_bytes().to_vec()
    }

    #[test]
    fn the_expression_lists_only_what_is_read_in_a_fixed_order() {
        let query =
            FactQuery::new(&Needs { method: true, port_for_plaintext: true, peer: true, ..needs() }, &[], false)
                .unwrap_or_else(|| unreachable!());
        assert_eq!(query.expression(), format!("[{MTLS}, {PORT}, {METHOD}]"));
        let query = FactQuery::new(&Needs { path: true, ..needs() }, &["x-http-method-override"], true)
            .unwrap_or_else(|| unreachable!());
        assert_eq!(
            query.expression(),
            format!(
                "[{UNDERSCORE_GUARD}, {PATH}, 'x-http-method-override' in request.headers, \
                 'x-http-method-override' in request.headers ? request.headers['x-http-method-override'] : '']"
            )
        );
    }

    #[test]
    fn a_name_that_cannot_be_quoted_has_no_query() {
        assert_eq!(FactQuery::new(&needs(), &["x'y"], false), None);
        assert_eq!(FactQuery::new(&needs(), &["a b"], false), None);
        assert_eq!(FactQuery::new(&needs(), &[""], false), None);
    }

    #[test]
    fn the_answer_reads_as_the_request_the_calls_would_give() {
        let needs =
            Needs { identity: true, peer: true, port: true, method: true, path: true, source_ip: true, ..needs() };
        let query = FactQuery::new(&needs, &["x-a", "x-b"], false).unwrap_or_else(|| unreachable!());
        let buf = answer(&[
            &[1],
            b"spiffe://cluster.local/ns/a/sa/b",
            &port(8443),
            b"10.1.2.3:5555",
            b"GET",
            b"/data/projects",
            &[1],
            b"PUT",
            &[0],
            b"",
        ]);
        let seen = query
            .read(&buf, |r| {
                (
                    r.peer.map(<[u8]>::to_vec),
                    r.port,
                    r.source_ip,
                    r.remote_ip,
                    r.method.to_vec(),
                    r.path.to_vec(),
                    r.headers.iter().map(|v| v.iter().map(|x| x.to_vec()).collect::<Vec<_>>()).collect::<Vec<_>>(),
                )
            })
            .unwrap_or_else(|e| panic!("{e:?}"));
        let ip: std::net::IpAddr = "10.1.2.3".parse().unwrap_or_else(|_| unreachable!());
        assert_eq!(
            seen,
            (
                Some(b"spiffe://cluster.local/ns/a/sa/b".to_vec()),
                Some(8443),
                Some(ip),
                Some(ip),
                b"GET".to_vec(),
                b"/data/projects".to_vec(),
                vec![vec![b"PUT".to_vec()], vec![]],
            )
        );
    }

    #[test]
    fn plaintext_has_no_peer_and_mtls_without_a_san_has_an_empty_one() {
        let needs = Needs { identity: true, peer: true, ..needs() };
        let query = FactQuery::new(&needs, &[], false).unwrap_or_else(|| unreachable!());
        let peer = |mtls: u8, san: &[u8]| query.read(&answer(&[&[mtls], san]), |r| r.peer.map(<[u8]>::to_vec));
        assert_eq!(peer(0, b""), Ok(None));
        assert_eq!(peer(1, b""), Ok(Some(Vec::new())));
        assert_eq!(peer(1, b"spiffe://x"), Ok(Some(b"spiffe://x".to_vec())));
    }

    #[test]
    fn a_joined_value_or_an_underscored_name_is_read_another_way() {
        let query = FactQuery::new(&Needs { method: true, ..needs() }, &["x-http-method"], true)
            .unwrap_or_else(|| unreachable!());
        assert_eq!(query.read(&answer(&[&[0], b"GET", &[1], b"PUT,DELETE"]), |_| ()), Err(Unread::Ambiguous));
        assert_eq!(query.read(&answer(&[&[1], b"GET", &[0], b""]), |_| ()), Err(Unread::Ambiguous));
        assert_eq!(query.read(&answer(&[&[0], b"GET", &[1], b"PUT"]), |r| r.headers[0].len()), Ok(1));
    }

    #[test]
    fn an_answer_of_another_shape_is_malformed() {
        let query = FactQuery::new(&Needs { method: true, port: true, ..needs() }, &[], false)
            .unwrap_or_else(|| unreachable!());
        assert_eq!(query.read(&answer(&[&port(80), b"GET"]), |r| r.port), Ok(Some(80)));
        for bad in [answer(&[&port(80)]), answer(&[&port(80), b"GET", b"extra"]), answer(&[b"80", b"GET"]), vec![1, 0]]
        {
            assert_eq!(query.read(&bad, |_| ()), Err(Unread::Malformed), "{bad:?}");
        }
        let mut cut = answer(&[&port(80), b"GET"]);
        cut.truncate(cut.len() - 3);
        assert_eq!(query.read(&cut, |_| ()), Err(Unread::Malformed));
    }

    #[test]
    fn more_headers_than_the_stack_holds_are_all_read() {
        let names: Vec<String> = (0..12).map(|i| format!("x-h{i}")).collect();
        let names: Vec<&str> = names.iter().map(String::as_str).collect();
        let query = FactQuery::new(&needs(), &names, false).unwrap_or_else(|| unreachable!());
        let mut items: Vec<Vec<u8>> = Vec::new();
        for i in 0..12u8 {
            items.push(vec![i % 2]);
            items.push(vec![b'a' + i]);
        }
        let refs: Vec<&[u8]> = items.iter().map(Vec::as_slice).collect();
        let seen = query
            .read(&answer(&refs), |r| r.headers.iter().map(|v| v.first().map(|x| x[0])).collect::<Vec<_>>())
            .unwrap_or_else(|e| panic!("{e:?}"));
        let want: Vec<Option<u8>> = (0..12u8).map(|i| (i % 2 == 1).then_some(b'a' + i)).collect();
        assert_eq!(seen, want);
    }
}

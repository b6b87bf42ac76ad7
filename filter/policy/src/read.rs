//! Reading a request's facts from a host, fewest first, and judging it: the part of every glue
//! (the Wasm filter, the dynamic module) that needs a host only through [`RequestSource`].
//! Every host read costs about as much as the whole evaluation in a VM, so the order matters:
//! connection facts from the per-connection cache, the port only when it can change the
//! outcome, a STRICT port's plaintext caller refused before anything else is read, and named
//! headers from the whole map in one read.

use crate::connection::{Connection, ConnectionCache, ConnectionSource};
use crate::headers::HeaderMap;
use crate::model::Engine;
use crate::request::{Decision, Request};
use crate::MtlsMode;

/// A host's view of the request being judged.
pub trait RequestSource: ConnectionSource {
    /// A header value as the host hands it over: owned (a VM's copy) or a view into the
    /// host's memory.
    type Value<'s>: AsRef<[u8]>
    where
        Self: 's;

    /// The first value of a request header (a pseudo-header has one).
    fn request_header(&self, name: &[u8]) -> Option<Self::Value<'_>>;

    /// Hands `f` every request header, read in one go.
    fn with_request_headers<R>(&self, f: impl FnOnce(&HeaderMap<'_>) -> R) -> R;
}

/// Reads from `source` only what `engine` needs and hands the request to `judge` (which
/// evaluates, and may record). Connection facts come from `cache` when the configuration reads
/// two or more of them.
#[inline]
pub fn read_and_judge<S: RequestSource>(
    engine: &Engine,
    source: &S,
    cache: &mut ConnectionCache,
    judge: impl Fn(&Request<'_>) -> Decision,
) -> Decision {
    let needs = engine.reads();
    let mut fresh = Connection::default();
    let connection = match ConnectionCache::worth_using(&needs).then(|| source.connection_id()).flatten() {
        Some(id) => cache.entry(id),
        None => &mut fresh,
    };
    let plaintext = connection.peer(&needs, source).is_none();
    let port_needed = needs.port || (needs.port_for_plaintext && plaintext);
    let port = if port_needed { connection.port(source) } else { None };
    // Plaintext on a STRICT port is refused before anything else is read.
    if plaintext && needs.peer && engine.mtls_mode(port) == MtlsMode::Strict {
        return engine.evaluate(&Request { port, ..Request::default() });
    }
    connection.fill_rest(&needs, source);
    let base = Request { port, ..connection.request() };
    let read_path = needs.path || needs.query;
    if engine.header_names().is_empty() {
        // A header or two: one read each is cheapest.
        let method = if needs.method { source.request_header(b":method") } else { None };
        let path = if read_path { source.request_header(b":path") } else { None };
        let authority = if needs.host { source.request_header(b":authority") } else { None };
        return judge(&Request {
            method: method.as_ref().map_or(&[], AsRef::as_ref),
            path: path.as_ref().map_or(&[], AsRef::as_ref),
            host: authority.as_ref().map(AsRef::as_ref),
            ..base
        });
    }
    // Named headers (rules, method overrides): the whole map in one read, which also sees
    // every value of a repeated header; each value is judged on its own, as RBAC does.
    source.with_request_headers(|map| {
        let method = if needs.method { map.first(b":method") } else { None };
        let path = if read_path { map.first(b":path") } else { None };
        let authority = if needs.host { map.first(b":authority") } else { None };
        map.with_values_for(engine, |headers| {
            judge(&Request {
                method: method.unwrap_or_default(),
                path: path.unwrap_or_default(),
                host: authority,
                headers,
                ..base
            })
        })
    })
}

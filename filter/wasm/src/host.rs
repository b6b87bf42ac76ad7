//! The two host calls on the request path, made directly: the SDK's wrappers serialise the
//! property path into a fresh `Vec` on every call and panic on unexpected statuses. Here the
//! paths are constants and every status other than OK reads as "absent".

// Property paths in the ABI's form: segments separated by NUL.
pub const PEER_URI_SAN: &[u8] = b"connection\0uri_san_peer_certificate";
pub const MTLS: &[u8] = b"connection\0mtls";
pub const DESTINATION_PORT: &[u8] = b"destination\0port";
pub const SOURCE_ADDRESS: &[u8] = b"source\0address";
pub const DESTINATION_ADDRESS: &[u8] = b"destination\0address";
pub const SNI: &[u8] = b"connection\0requested_server_name";
pub const CONNECTION_ID: &[u8] = b"connection\0id";

use std::net::{IpAddr, SocketAddr};

const STATUS_OK: u32 = 0;
const HTTP_REQUEST_HEADERS: u32 = 0;

#[link(wasm_import_module = "env")]
extern "C" {
    fn proxy_get_property(
        path_data: *const u8,
        path_size: usize,
        return_data: *mut *mut u8,
        return_size: *mut usize,
    ) -> u32;
    fn proxy_get_header_map_pairs(map_type: u32, return_data: *mut *mut u8, return_size: *mut usize) -> u32;
    fn proxy_get_header_map_value(
        map_type: u32,
        key_data: *const u8,
        key_size: usize,
        return_data: *mut *mut u8,
        return_size: *mut usize,
    ) -> u32;
}

/// Takes ownership of a buffer the host filled through `proxy_on_memory_allocate` (the SDK's
/// allocator export, which hands out `Vec<u8>` storage).
fn adopt(status: u32, data: *mut u8, size: usize) -> Option<Vec<u8>> {
    if status != STATUS_OK || data.is_null() {
        return None;
    }
    // SAFETY: on OK the host returns a buffer of `size` bytes it obtained from our
    // `proxy_on_memory_allocate`, which allocates exactly `size` bytes as a Vec<u8>.
    Some(unsafe { Vec::from_raw_parts(data, size, size) })
}

/// A property, or `None` if the host has none (or refused).
pub fn property(path: &[u8]) -> Option<Vec<u8>> {
    let (mut data, mut size) = (std::ptr::null_mut(), 0usize);
    // SAFETY: the path is a valid slice; the out-pointers are valid for writes.
    let status = unsafe { proxy_get_property(path.as_ptr(), path.len(), &mut data, &mut size) };
    adopt(status, data, size)
}

/// A request header's value, as bytes (never assumed to be UTF-8).
pub fn request_header(name: &[u8]) -> Option<Vec<u8>> {
    let (mut data, mut size) = (std::ptr::null_mut(), 0usize);
    // SAFETY: the name is a valid slice; the out-pointers are valid for writes.
    let status =
        unsafe { proxy_get_header_map_value(HTTP_REQUEST_HEADERS, name.as_ptr(), name.len(), &mut data, &mut size) };
    adopt(status, data, size)
}

/// Whether the connection is mutual TLS.
pub fn is_mtls() -> bool {
    property(MTLS).is_some_and(|b| b.first() == Some(&1))
}

/// All request headers in one host call, in the ABI's serialised form.
pub fn request_headers() -> Option<Vec<u8>> {
    let (mut data, mut size) = (std::ptr::null_mut(), 0usize);
    // SAFETY: the out-pointers are valid for writes.
    let status = unsafe { proxy_get_header_map_pairs(HTTP_REQUEST_HEADERS, &mut data, &mut size) };
    adopt(status, data, size)
}

/// The connection facts, read from Envoy.
pub struct Live;

impl crate::connection::Source for Live {
    fn connection_id(&self) -> Option<u64> {
        property(CONNECTION_ID).and_then(|b| Some(u64::from_le_bytes(b.get(..8)?.try_into().ok()?)))
    }
    fn peer_uri_san(&self) -> Option<Vec<u8>> {
        property(PEER_URI_SAN)
    }
    fn is_mtls(&self) -> bool {
        is_mtls()
    }
    fn port(&self) -> Option<u16> {
        // An 8-byte little-endian integer.
        let value = u64::from_le_bytes(property(DESTINATION_PORT)?.get(..8)?.try_into().ok()?);
        u16::try_from(value).ok()
    }
    fn source_ip(&self) -> Option<IpAddr> {
        address(SOURCE_ADDRESS)
    }
    fn destination_ip(&self) -> Option<IpAddr> {
        address(DESTINATION_ADDRESS)
    }
    fn sni(&self) -> Option<Vec<u8>> {
        property(SNI)
    }
}

/// An address property (`ip:port`, or a bare ip).
fn address(path: &[u8]) -> Option<IpAddr> {
    let raw = property(path)?;
    let text = std::str::from_utf8(&raw).ok()?;
    text.parse::<SocketAddr>().map(|a| a.ip()).or_else(|_| text.parse::<IpAddr>()).ok()
}

/// A view of the serialised header map: a little-endian u32 count, then per header the u32
/// sizes of name and value, then the names and values, each followed by a NUL. The buffer is
/// walked once; the pairs are kept on the stack (on the heap past `STACK_PAIRS` headers).
pub struct Headers<'a> {
    stack: [Pair<'a>; STACK_PAIRS],
    on_stack: usize,
    heap: Vec<Pair<'a>>,
}

type Pair<'a> = (&'a [u8], &'a [u8]);

/// More request headers than this is rare; they then go to the heap.
const STACK_PAIRS: usize = 48;

impl<'a> Headers<'a> {
    /// Reads the host's buffer; a malformed one reads as no headers.
    pub fn parse(buf: &'a [u8]) -> Headers<'a> {
        let mut headers = Headers { stack: [(&[], &[]); STACK_PAIRS], on_stack: 0, heap: Vec::new() };
        let count = buf.get(..4).map_or(0, |w| u32::from_le_bytes([w[0], w[1], w[2], w[3]]) as usize);
        // Sizes follow the count; names and values follow the sizes.
        let data_at = count.checked_mul(8).and_then(|n| n.checked_add(4)).unwrap_or(usize::MAX);
        let mut seen = 0;
        for pair in (Pairs { buf, left: count, sizes_at: 4, data_at }) {
            match headers.stack.get_mut(seen) {
                Some(slot) => {
                    *slot = pair;
                    headers.on_stack += 1;
                }
                None => headers.heap.push(pair),
            }
            seen += 1;
        }
        if seen != count {
            return Headers { stack: [(&[], &[]); STACK_PAIRS], on_stack: 0, heap: Vec::new() };
        }
        headers
    }

    fn pairs(&self) -> impl Iterator<Item = &Pair<'a>> {
        self.stack[..self.on_stack].iter().chain(self.heap.iter())
    }

    /// The first value of a header (pseudo-headers have one).
    pub fn first(&self, name: &[u8]) -> Option<&'a [u8]> {
        self.all(name).next()
    }

    /// Every value of a header, in order.
    pub fn all<'s>(&'s self, name: &'s [u8]) -> impl Iterator<Item = &'a [u8]> + 's {
        self.pairs().filter(move |(k, _)| k.eq_ignore_ascii_case(name)).map(|(_, v)| *v)
    }
}

struct Pairs<'a> {
    buf: &'a [u8],
    left: usize,
    sizes_at: usize,
    data_at: usize,
}

impl<'a> Iterator for Pairs<'a> {
    type Item = (&'a [u8], &'a [u8]);

    fn next(&mut self) -> Option<Self::Item> {
        if self.left == 0 {
            return None;
        }
        self.left -= 1;
        let word = |at: usize| -> Option<usize> {
            let bytes = self.buf.get(at..at.checked_add(4)?)?;
            Some(u32::from_le_bytes([bytes[0], bytes[1], bytes[2], bytes[3]]) as usize)
        };
        let (k, v) = (word(self.sizes_at)?, word(self.sizes_at + 4)?);
        self.sizes_at += 8;
        let key = self.buf.get(self.data_at..self.data_at.checked_add(k)?)?;
        let value_at = self.data_at + k + 1;
        let value = self.buf.get(value_at..value_at.checked_add(v)?)?;
        self.data_at = value_at + v + 1;
        Some((key, value))
    }
}

/// A header map serialised as the host hands it over, for tests.
#[cfg(test)]
pub(crate) fn serialise<K: AsRef<[u8]>, V: AsRef<[u8]>>(pairs: &[(K, V)]) -> Vec<u8> {
    let mut out = (pairs.len() as u32).to_le_bytes().to_vec();
    for (k, v) in pairs {
        out.extend((k.as_ref().len() as u32).to_le_bytes());
        out.extend((v.as_ref().len() as u32).to_le_bytes());
    }
    for (k, v) in pairs {
        out.extend(k.as_ref());
        out.push(0);
        out.extend(v.as_ref());
        out.push(0);
    }
    out
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn every_value_of_a_repeated_header_is_kept() {
        let buf = serialise(&[(":method", "GET"), ("x-team", "a"), ("X-Team", "b"), ("x-one", "1")]);
        let h = Headers::parse(&buf);
        assert_eq!(h.first(b":method"), Some(b"GET".as_slice()));
        assert_eq!(h.all(b"x-team").collect::<Vec<_>>(), [b"a".as_slice(), b"b"]);
        assert_eq!(h.all(b"x-one").collect::<Vec<_>>(), [b"1".as_slice()]);
        assert_eq!(h.all(b"absent").count(), 0);
    }

    #[test]
    fn headers_past_the_stack_are_all_kept_in_order() {
        let names: Vec<String> = (0..STACK_PAIRS + 12).map(|i| format!("h{i}")).collect();
        let mut pairs: Vec<(&str, &str)> = names.iter().map(|n| (n.as_str(), "v")).collect();
        pairs.insert(3, ("x-team", "first"));
        pairs.push(("x-team", "last"));
        let buf = serialise(&pairs);
        let h = Headers::parse(&buf);
        assert_eq!(h.all(b"x-team").collect::<Vec<_>>(), [b"first".as_slice(), b"last"]);
        assert_eq!(h.first(b"h55"), Some(b"v".as_slice()));
        assert_eq!(h.pairs().count(), pairs.len());
    }

    #[test]
    fn a_truncated_buffer_reads_as_no_headers() {
        let buf = serialise(&[(":method", "GET")]);
        assert_eq!(Headers::parse(&buf[..buf.len() - 3]).first(b":method"), None);
        assert_eq!(Headers::parse(&[]).first(b":method"), None);
        // A count larger than the pairs present, and one too large to compute with.
        let mut short = buf.clone();
        short[0] = 2;
        assert_eq!(Headers::parse(&short).first(b":method"), None);
        let mut huge = buf.clone();
        huge[..4].copy_from_slice(&u32::MAX.to_le_bytes());
        assert_eq!(Headers::parse(&huge).first(b":method"), None);
    }
}

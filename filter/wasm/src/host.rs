//! The host calls on the request path, made directly: the SDK's wrappers serialise the
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

use std::net::IpAddr;

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
    #[cfg(feature = "expression-reads")]
    fn proxy_call_foreign_function(
        function_name_data: *const u8,
        function_name_size: usize,
        arguments_data: *const u8,
        arguments_size: usize,
        results_data: *mut *mut u8,
        results_size: *mut usize,
    ) -> u32;
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

/// The ABI's status for a foreign function the host does not have.
#[cfg(feature = "expression-reads")]
pub const STATUS_NOT_FOUND: u32 = 1;

#[cfg(feature = "expression-reads")]
fn call_foreign(name: &[u8], arguments: &[u8]) -> Result<Option<Vec<u8>>, u32> {
    let (mut data, mut size) = (std::ptr::null_mut(), 0usize);
    // SAFETY: name and arguments are valid slices; the out-pointers are valid for writes.
    let status = unsafe {
        proxy_call_foreign_function(
            name.as_ptr(),
            name.len(),
            arguments.as_ptr(),
            arguments.len(),
            &mut data,
            &mut size,
        )
    };
    if status != STATUS_OK {
        return Err(status);
    }
    Ok(adopt(status, data, size))
}

/// Compiles a CEL expression in Envoy (`expr_create`): its token, or the host's status
/// ([`STATUS_NOT_FOUND`] when the host has no CEL).
#[cfg(feature = "expression-reads")]
pub fn create_expression(source: &str) -> Result<u32, u32> {
    let token = call_foreign(b"expr_create", source.as_bytes())?.unwrap_or_default();
    // Envoy answers the token as four native-endian bytes.
    token.get(..4).and_then(|b| b.try_into().ok()).map(u32::from_le_bytes).ok_or(STATUS_NOT_FOUND)
}

/// Evaluates an expression against the current request (`expr_evaluate`): its serialised
/// value, or `None` if the evaluation failed.
#[cfg(feature = "expression-reads")]
pub fn evaluate_expression(token: u32) -> Option<Vec<u8>> {
    call_foreign(b"expr_evaluate", &token.to_le_bytes()).ok().flatten()
}

/// Frees an expression (`expr_delete`).
#[cfg(feature = "expression-reads")]
pub fn delete_expression(token: u32) {
    let _ = call_foreign(b"expr_delete", &token.to_le_bytes());
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

impl xnat_guard_policy::ConnectionSource for Live {
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

impl xnat_guard_policy::RequestSource for Live {
    type Value<'s> = Vec<u8>;

    fn request_header(&self, name: &[u8]) -> Option<Vec<u8>> {
        request_header(name)
    }

    fn with_request_headers<R>(&self, f: impl FnOnce(&xnat_guard_policy::HeaderMap<'_>) -> R) -> R {
        let buf = request_headers().unwrap_or_default();
        f(&xnat_guard_policy::HeaderMap::parse(&buf))
    }
}

/// An address property (`ip:port`, or a bare ip).
fn address(path: &[u8]) -> Option<IpAddr> {
    xnat_guard_policy::address::parse(&property(path)?)
}

//! Safe views of what Envoy hands a dynamic module during one event hook. Every borrowed
//! slice lives no longer than the `Stream` it came from, which lives no longer than the hook:
//! the ABI keeps Envoy's buffers valid until the hook returns, and this filter never calls a
//! setter that would move them.

use std::marker::PhantomData;
use std::net::IpAddr;

use crate::abi::{self, attribute, EnvoyBuffer, EnvoyHeader, EnvoyPtr, ModuleBuffer, ModuleHeader};

/// Writes to Envoy's log under the `dynamic_modules` logger.
pub fn log(level: u32, message: &str) {
    // SAFETY: the message is a valid slice for the duration of the call; Envoy copies it.
    unsafe { abi::envoy_dynamic_module_callback_log(level, ModuleBuffer::of(message.as_bytes())) }
}

/// A filter configuration's side in Envoy, while `envoy_dynamic_module_on_http_filter_config_new`
/// runs: where its metrics are defined.
pub struct ConfigHost {
    config: EnvoyPtr,
}

impl ConfigHost {
    /// # Safety
    /// `config` must be the `filter_config_envoy_ptr` of the running configuration hook.
    pub unsafe fn new(config: EnvoyPtr) -> ConfigHost {
        ConfigHost { config }
    }

    /// Defines a counter without labels: its id, or `None` if Envoy refused.
    pub fn define_counter(&self, name: &str) -> Option<usize> {
        let mut id = 0usize;
        // SAFETY: `config` is the running hook's configuration; the name is valid for the call
        // (Envoy copies it) and the id pointer is valid for writes.
        let result = unsafe {
            abi::envoy_dynamic_module_callback_http_filter_config_define_counter(
                self.config,
                ModuleBuffer::of(name.as_bytes()),
                std::ptr::null(),
                0,
                &mut id,
            )
        };
        (result == abi::METRICS_SUCCESS).then_some(id)
    }

    /// Defines a gauge without labels and sets it to `value`.
    pub fn set_gauge(&self, name: &str, value: u64) {
        let mut id = 0usize;
        // SAFETY: as for `define_counter`.
        let defined = unsafe {
            abi::envoy_dynamic_module_callback_http_filter_config_define_gauge(
                self.config,
                ModuleBuffer::of(name.as_bytes()),
                std::ptr::null(),
                0,
                &mut id,
            )
        };
        if defined == abi::METRICS_SUCCESS {
            // SAFETY: `config` is the running hook's configuration and `id` one it defined.
            unsafe {
                abi::envoy_dynamic_module_callback_http_filter_config_set_gauge(
                    self.config,
                    id,
                    std::ptr::null(),
                    0,
                    value,
                )
            };
        }
    }
}

/// One HTTP stream, for the duration of one event hook.
pub struct Stream<'hook> {
    filter: EnvoyPtr,
    hook: PhantomData<&'hook ()>,
}

impl<'hook> Stream<'hook> {
    /// # Safety
    /// `filter` must be the `filter_envoy_ptr` Envoy passed to the running event hook.
    pub unsafe fn new(filter: EnvoyPtr) -> Stream<'hook> {
        Stream { filter, hook: PhantomData }
    }

    /// Bytes Envoy owns, as a slice for the rest of the hook.
    fn view(buffer: EnvoyBuffer) -> Option<&'hook [u8]> {
        if buffer.ptr.is_null() {
            return None;
        }
        // SAFETY: Envoy filled the buffer with a pointer to `length` bytes it keeps valid until
        // the hook returns ('hook).
        Some(unsafe { std::slice::from_raw_parts(buffer.ptr, buffer.length) })
    }

    /// The first value of a request header (a pseudo-header has one).
    fn header(&self, name: &[u8]) -> Option<&'hook [u8]> {
        let mut value = EnvoyBuffer::NULL;
        // SAFETY: `filter` is the running hook's stream; the key is a valid slice for the call;
        // the out-pointer is valid for writes and the count is optional (null).
        let found = unsafe {
            abi::envoy_dynamic_module_callback_http_get_header(
                self.filter,
                abi::REQUEST_HEADERS,
                ModuleBuffer::of(name),
                &mut value,
                0,
                std::ptr::null_mut(),
            )
        };
        if found {
            Self::view(value)
        } else {
            None
        }
    }

    /// Every request header, in order, as Envoy's views.
    fn headers(&self) -> Vec<EnvoyHeader> {
        // SAFETY: `filter` is the running hook's stream.
        let count =
            unsafe { abi::envoy_dynamic_module_callback_http_get_headers_size(self.filter, abi::REQUEST_HEADERS) };
        let mut headers = vec![EnvoyHeader::NULL; count];
        // SAFETY: `headers` has room for the `count` entries Envoy just reported, and nothing
        // runs between the two calls to change the map.
        let ok = unsafe {
            abi::envoy_dynamic_module_callback_http_get_headers(self.filter, abi::REQUEST_HEADERS, headers.as_mut_ptr())
        };
        if !ok {
            headers.clear();
        }
        headers
    }

    fn string(&self, id: u32) -> Option<&'hook [u8]> {
        let mut value = EnvoyBuffer::NULL;
        // SAFETY: `filter` is the running hook's stream; the out-pointer is valid for writes.
        let found =
            unsafe { abi::envoy_dynamic_module_callback_http_filter_get_attribute_string(self.filter, id, &mut value) };
        if found {
            Self::view(value)
        } else {
            None
        }
    }

    fn int(&self, id: u32) -> Option<u64> {
        let mut value = 0u64;
        // SAFETY: `filter` is the running hook's stream; the out-pointer is valid for writes.
        let found =
            unsafe { abi::envoy_dynamic_module_callback_http_filter_get_attribute_int(self.filter, id, &mut value) };
        found.then_some(value)
    }

    fn bool(&self, id: u32) -> Option<bool> {
        let mut value = false;
        // SAFETY: `filter` is the running hook's stream; the out-pointer is valid for writes.
        let found =
            unsafe { abi::envoy_dynamic_module_callback_http_filter_get_attribute_bool(self.filter, id, &mut value) };
        found.then_some(value)
    }

    /// Adds one to a counter its configuration defined.
    pub fn increment_counter(&self, id: usize) {
        // SAFETY: `filter` is the running hook's stream, created from the configuration that
        // defined `id`; no labels.
        unsafe {
            abi::envoy_dynamic_module_callback_http_filter_increment_counter(self.filter, id, std::ptr::null(), 0, 1)
        };
    }

    /// Answers the request locally: Envoy stops the filter chain and never sends it upstream.
    pub fn send_response(&self, status: u32, content_type: &[u8], body: &[u8], details: &[u8]) {
        let header = ModuleHeader {
            key_ptr: b"content-type".as_ptr(),
            key_length: b"content-type".len(),
            value_ptr: content_type.as_ptr(),
            value_length: content_type.len(),
        };
        // SAFETY: `filter` is the running hook's stream; the header, body and details are valid
        // for the call, and Envoy copies them.
        unsafe {
            abi::envoy_dynamic_module_callback_http_send_response(
                self.filter,
                status,
                &header,
                1,
                ModuleBuffer::of(body),
                ModuleBuffer::of(details),
            )
        }
    }
}

impl<'hook> xnat_guard_policy::RequestSource for Stream<'hook> {
    type Value<'s>
        = &'hook [u8]
    where
        Self: 's;

    fn request_header(&self, name: &[u8]) -> Option<&'hook [u8]> {
        self.header(name)
    }

    fn with_request_headers<R>(&self, f: impl FnOnce(&xnat_guard_policy::HeaderMap<'_>) -> R) -> R {
        let headers = self.headers();
        let pairs = headers.iter().map(|h| {
            let key = Self::view(EnvoyBuffer { ptr: h.key_ptr, length: h.key_length });
            let value = Self::view(EnvoyBuffer { ptr: h.value_ptr, length: h.value_length });
            (key.unwrap_or_default(), value.unwrap_or_default())
        });
        f(&xnat_guard_policy::HeaderMap::from_pairs(pairs))
    }
}

impl xnat_guard_policy::ConnectionSource for Stream<'_> {
    fn connection_id(&self) -> Option<u64> {
        self.int(attribute::CONNECTION_ID)
    }
    fn peer_uri_san(&self) -> Option<Vec<u8>> {
        self.string(attribute::CONNECTION_URI_SAN_PEER_CERTIFICATE).filter(|s| !s.is_empty()).map(<[u8]>::to_vec)
    }
    fn is_mtls(&self) -> bool {
        self.bool(attribute::CONNECTION_MTLS).unwrap_or(false)
    }
    fn port(&self) -> Option<u16> {
        u16::try_from(self.int(attribute::DESTINATION_PORT)?).ok()
    }
    fn source_ip(&self) -> Option<IpAddr> {
        xnat_guard_policy::address::parse(self.string(attribute::SOURCE_ADDRESS)?)
    }
    fn destination_ip(&self) -> Option<IpAddr> {
        xnat_guard_policy::address::parse(self.string(attribute::DESTINATION_ADDRESS)?)
    }
    fn sni(&self) -> Option<Vec<u8>> {
        self.string(attribute::CONNECTION_REQUESTED_SERVER_NAME).filter(|s| !s.is_empty()).map(<[u8]>::to_vec)
    }
}

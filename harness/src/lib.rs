//! Test-only code: what the integration tests (`tests/`) and the benches (`benches/`) share,
//! kept out of the product crates. Never published.
//!
//! - [`native_rbac`]: what Istio generates for a policy (Envoy's RBAC filters), the reference
//!   every comparison runs against;
//! - [`envoy`]: Envoy as the tests drive it (configuration by ECDS, pinned to a CPU, under a
//!   wrapper such as valgrind, asked to quit);
//! - [`sides`]: one request sent to several listeners (native RBAC, ours, a translation) and
//!   what each side's client and upstream saw;
//! - [`alloc`]: a global allocator that counts one thread's allocations;
//! - [`support`]: finding Envoy and the module (failing loudly), loopback addresses of a test's
//!   own, a sidecar with the filter, a reproducible random generator.

pub mod alloc;
pub mod envoy;
pub mod native_rbac;
pub mod sides;
pub mod support;

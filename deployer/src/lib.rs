//! The deployer: turns the Kubernetes policy YAML a user already has into the filter's
//! configuration, and runs the filter locally in a real Envoy.

pub mod check;
pub mod cluster;
pub mod local;
pub mod oci;
pub mod plan;
pub mod resources;

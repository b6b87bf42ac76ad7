//! The deployer: turns the Kubernetes policy YAML a user already has into the filter's
//! configuration, plans what each subcommand changes, applies and verifies it on a cluster, and
//! runs the filter locally in a real Envoy. The CLI itself (`src/main.rs`, `src/commands/`) only
//! parses flags, calls into these modules and prints.
//!
//! Dependencies run one way: [`kind`] and [`resources`] at the bottom; [`check`] and [`plan`]
//! pure on top of them; [`inspect`] judges what [`apply`] reads; [`apply`] and [`local`] do the
//! I/O.

pub mod apply;
pub mod check;
pub mod inspect;
pub mod kind;
pub mod local;
pub mod oci;
pub mod plan;
pub mod resources;

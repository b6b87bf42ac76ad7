//! The deployer: turns the Kubernetes policy YAML a user already has into the filter's
//! configuration, plans what each subcommand changes, applies and verifies it on a cluster, and
//! runs the filter locally in a real Envoy. The CLI itself (`src/main.rs`, `src/commands/`) only
//! parses flags, calls into these modules and prints.
//!
//! Pure, no cluster and no child process: [`kind`] (the Kubernetes kinds), [`yaml`] (reading the
//! user's YAML as kubectl would), [`resources`] (policy YAML selected for one workload), [`check`] (one request's decision), [`plan`] (what each
//! subcommand would change) and [`inspect`] (judging the cluster state [`apply`] reads; its
//! readers of pods and metrics sit below `plan`, its `status` report above `plan::hpa`).
//! I/O: [`apply`] (kube and helm), [`oci`] (the registry), [`local`] (a real Envoy).

pub mod apply;
pub mod check;
pub mod inspect;
pub mod kind;
pub mod local;
pub mod observations;
pub mod oci;
pub mod plan;
pub mod resources;
pub mod suggest;
pub mod yaml;

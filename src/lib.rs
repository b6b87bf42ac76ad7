//! Owner of the workspace-level integration tests and benches; no code of its own.

//! `deployer status`: the troubleshooting report.

use anyhow::Result;
use deployer::apply;
use deployer::inspect::status::status_table;

use super::{runtime, Global, NamespaceArg};

/// The runbook's troubleshooting list in one report.
///
/// Injection label, pods and sidecars,
/// PeerAuthentications and DestinationRules in all namespaces, WasmPlugins and whether their
/// module loaded, HPAs the sidecar skews, and each pod's allowed/denied counters.
#[derive(clap::Args)]
pub struct Args {
    #[command(flatten)]
    namespace: NamespaceArg,
}

pub fn run(args: Args, global: &Global) -> Result<()> {
    let namespace = args.namespace.get()?;
    let rt = runtime()?;
    let cluster = global.connect(&rt)?;
    let status = rt.block_on(apply::status::status(&cluster, &namespace))?;
    global.printer().data(&status, || status_table(&status))
}

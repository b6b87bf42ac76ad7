//! `deployer learn`: what XNAT's callers really do, from the filter in each sidecar.

use std::path::PathBuf;
use std::time::{Duration, Instant};

use anyhow::{Context, Result};
use deployer::apply::learn::{learn_once, Round};
use deployer::observations::Observations;

use deployer::plan::promote::parse_duration;

use super::{runtime, Global, LabelArgs, NamespaceArg};

/// Learn which caller uses which part of XNAT's API, from the filter in each sidecar.
///
/// The first step of least privilege from real traffic:
///   1. deployer rollout NAMESPACE --observe ...   the filter records what it allows
///   2. deployer learn NAMESPACE                    this: collect it into a file
///   3. deployer suggest --observations FILE        the tightest policy that breaks nothing
///   4. deployer check / deployer local             try it on requests of your own
///   5. deployer rollout ... --dry-run-policy FILE  ship it as dry-run beside the enforced one
///   6. deployer status NAMESPACE                   what it would have denied, if anything
///   7. deployer promote NAMESPACE ...              enforce it once nothing would have been denied
///
/// Each selected pod's sidecar (the pods the namespace's WasmPlugins select, or --label)
/// is read through the API server's pod proxy, as `deployer status` reads it (needs `get
/// pods/proxy`), from Envoy's Prometheus endpoint; the proxy's log level is not touched. A
/// record is (caller, port, method, route): the caller is the peer's SPIFFE identity or
/// "plaintext", the route the path as XNAT routes it with every identifier wildcarded
/// (/data/projects/{*}/subjects/{*}); no identifier, query or header value leaves the sidecar.
/// What each pod counted since the file last saw it is added, so running learn again, or
/// with --duration, adds only new traffic, and a sidecar that restarted counts from zero.
/// The ServiceAccounts of each namespace an mTLS caller came from are listed too (needs `list
/// serviceaccounts` there), so that suggest can name a whole namespace where every one of its
/// service accounts was seen doing the same; without it, suggest names each caller on its own.
#[derive(clap::Args)]
pub struct Args {
    #[command(flatten)]
    namespace: NamespaceArg,
    /// The observations file: created if missing, else added to.
    #[arg(long, value_name = "FILE", default_value = "xnat-guard-observations.yaml")]
    observations: PathBuf,
    #[command(flatten)]
    labels: LabelArgs,
    /// Keep collecting this long (90s, 10m, 2h, 1d), sampling every --interval; without it,
    /// one sample.
    #[arg(long, value_name = "DURATION", value_parser = parse_duration)]
    duration: Option<Duration>,
    /// How often to sample while --duration lasts.
    #[arg(long, value_name = "DURATION", value_parser = parse_duration, default_value = "30s")]
    interval: Duration,
}

pub fn run(args: Args, global: &Global) -> Result<()> {
    let namespace = args.namespace.get()?;
    let out = global.printer();
    let mut observations = Observations::load_or_new(&args.observations, &namespace)?;
    let rt = runtime()?;
    let cluster = global.connect(&rt)?;
    let started = Instant::now();
    let mut rounds = 0usize;
    let mut added = 0u64;
    let mut noted = std::collections::BTreeSet::new();
    loop {
        let round = rt.block_on(learn_once(&cluster, &namespace, &args.labels.labels, &mut observations))?;
        observations
            .save(&args.observations)
            .with_context(|| "the sample was taken but not saved; nothing in the file changed")?;
        rounds += 1;
        added += round.sampled.iter().map(|(_, m)| m.requests).sum::<u64>();
        report_round(&out, &round, &namespace, &mut noted);
        let Some(duration) = args.duration else { break };
        let elapsed = started.elapsed();
        if elapsed >= duration {
            break;
        }
        std::thread::sleep(args.interval.min(duration - elapsed));
    }
    let callers: std::collections::BTreeSet<&str> = observations.observed.iter().map(|e| e.caller.as_str()).collect();
    out.data(&observations, || {
        let mut text = format!(
            "{added} request(s) added in {rounds} sample(s); {} now holds {} request(s): {} (caller, port, method, \
             route) from {} caller(s)\n",
            args.observations.display(),
            observations.total(),
            observations.observed.len(),
            callers.len()
        );
        if observations.overflow > 0 {
            text.push_str(&format!(
                "warning: {} request(s) could not be recorded (a sidecar's table of {} records was full); the suggestion \
                 will not cover them\n",
                observations.overflow,
                xnat_guard_policy::observe::MAX_RECORDS
            ));
        }
        text.push_str(&format!("next: deployer suggest --observations {}\n", args.observations.display()));
        text
    })
}

/// Prints what a round did; a note already printed by an earlier round is not printed again.
fn report_round(out: &super::Printer, round: &Round, namespace: &str, noted: &mut std::collections::BTreeSet<String>) {
    for (pod, merged) in &round.sampled {
        let restarted = if merged.restarted { " (its sidecar restarted: counted from zero)" } else { "" };
        out.progress(&format!(
            "{pod}: +{} request(s), {} new (caller, port, method, route){restarted}",
            merged.requests, merged.new_entries
        ));
    }
    for line in &round.skipped {
        out.warning(&format!("skipped {line}"));
    }
    for pod in &round.not_observing {
        out.warning(&format!(
            "{pod}: the filter answers but records nothing: it does not observe. Roll out with --observe \
             (`deployer rollout {namespace} --observe ...`)"
        ));
    }
    for note in &round.notes {
        if noted.insert(note.clone()) {
            out.warning(note);
        }
    }
}

//! `deployer suggest`: the least-privilege AuthorizationPolicy from what was observed, and its
//! proof, offline.

use std::path::PathBuf;
use std::process::ExitCode;

use anyhow::{Context, Result};
use deployer::observations::Observations;
use deployer::resources;
use deployer::suggest::{suggest, Options, Suggestion, DEFAULT_NAME};

use super::{parse_label, Global, MeshArgs};

/// Suggests the tightest AuthorizationPolicy that would have broken nothing XNAT's callers were
/// seen doing, and proves it.
///
/// Prints the policy on stdout (so `> suggested.yaml` keeps it), and on stderr its proof: every
/// observation replayed through the filter's engine must be allowed (else the exit status is 1),
/// and, with --policy, what the policy in force allows that the suggestion would deny.
///
/// One rule per caller: its principal, or `notPrincipals: ["*"]` for plaintext (the load
/// balancer on 8080), which matches only requests without an mTLS identity. Per port, the
/// methods and XNAT routes it used, nothing else. A rule names a whole namespace only where
/// learn listed its service accounts and every one of them was seen doing exactly the same;
/// anywhere else a namespace rule would grant an unseen account what another did. A note on
/// stderr says, for each namespace, which way it went and why.
///
/// The loop, from traffic to enforcement:
///
///   1. deployer rollout NAMESPACE --observe ...    the filter records what it allows
///   2. deployer learn NAMESPACE                    collect it into xnat-guard-observations.yaml
///   3. deployer suggest --policy CURRENT.yaml > suggested.yaml    this: the policy, and its proof
///   4. deployer check --policy suggested.yaml ...  try it on requests of your own
///   5. deployer rollout NAMESPACE --policy CURRENT.yaml --dry-run-policy suggested.yaml
///   6. deployer status NAMESPACE                   what it would have denied, if anything
///   7. deployer promote NAMESPACE --policy CURRENT.yaml --dry-run-policy suggested.yaml
///
/// Exit status 0 when the replay allows every observation, 1 when it does not, 2 on an error.
#[derive(clap::Args)]
#[command(verbatim_doc_comment)]
pub struct Args {
    /// The observations file `deployer learn` (or `deployer local --observe`) wrote.
    #[arg(long, value_name = "FILE", default_value = "xnat-guard-observations.yaml")]
    observations: PathBuf,
    /// The policy YAML in force (a file, or a directory of .yaml, .yml and .json files): its
    /// PeerAuthentications apply to the replay, its selector names the workload, and what it
    /// allows is compared with the suggestion. Repeat for more.
    #[arg(long = "policy", value_name = "FILE")]
    policies: Vec<PathBuf>,
    /// Leave out what was seen fewer than N times (rare noise); they are listed on stderr.
    #[arg(long, value_name = "N", default_value_t = 1)]
    min_count: u64,
    /// The AuthorizationPolicy's name.
    #[arg(long, default_value = DEFAULT_NAME)]
    name: String,
    /// The policy's namespace [default: the observations'].
    #[arg(long, short = 'n')]
    namespace: Option<String>,
    /// A pod label of the workload, KEY=VALUE; repeat for more [default: the --policy selectors].
    #[arg(long = "label", short = 'l', value_name = "KEY=VALUE", value_parser = parse_label)]
    labels: Vec<(String, String)>,
    #[command(flatten)]
    mesh: MeshArgs,
}

pub fn run(args: Args, global: &Global) -> Result<ExitCode> {
    let printer = global.printer();
    let observations = Observations::load(&args.observations).context("the observations were refused")?;
    let current = if args.policies.is_empty() {
        Vec::new()
    } else {
        let mut replaced = Vec::new();
        let objects = resources::replace_repeated(
            resources::load_files(&args.policies).context("the policies were refused")?,
            &mut replaced,
        );
        for note in &replaced {
            printer.note(note);
        }
        objects
    };
    let options = Options {
        name: args.name,
        namespace: args.namespace,
        labels: args.labels,
        min_count: args.min_count,
        mesh: args.mesh.mesh(),
    };
    let suggestion = suggest(&observations, &current, &options).context("nothing was suggested")?;
    printer.data(&suggestion, || suggestion.yaml.clone())?;
    for line in report(&suggestion) {
        eprintln!("{line}");
    }
    if suggestion.replay.all_allowed() {
        Ok(ExitCode::SUCCESS)
    } else {
        eprintln!(
            "error: with the policies in force, the suggestion denies {} of the observations it was made from \
             (listed above): do not apply it. Unless a DENY policy or PeerAuthentication of --policy explains it, \
             it is a bug in deployer suggest: report it with the lines above",
            suggestion.replay.refused.len()
        );
        Ok(ExitCode::from(1))
    }
}

/// What stderr says: notes, what was left out, the replay, the tightening.
fn report(s: &Suggestion) -> Vec<String> {
    let mut out: Vec<String> = s.notes.iter().map(|n| format!("note: {n}")).collect();
    for e in &s.left_out {
        let port = e.port.map(|p| p.to_string()).unwrap_or_else(|| "an unknown port".into());
        out.push(format!(
            "left out, seen fewer than {} times: {} {} {} on {port} ({})",
            s.min_count, e.caller, e.method, e.route, e.count
        ));
    }
    out.push(s.replay.to_string());
    for refused in &s.replay.refused {
        out.push(format!("  DENIED by the suggestion: {refused}"));
    }
    if let Some(t) = &s.tightening {
        if t.findings.is_empty() {
            out.push(format!(
                "tightening: nothing the current policy allows is denied by the suggestion ({} requests probed)",
                t.probed
            ));
        } else {
            out.push(format!(
                "tightening: what the current policy allows and the suggestion denies ({} requests probed: {} callers, \
                 {} ports, {} methods, {} routes, seen and sensitive):",
                t.probed,
                t.callers.len(),
                t.ports.len(),
                t.methods.len(),
                t.routes.len()
            ));
            out.extend(t.findings.iter().map(|f| format!("  {f}")));
        }
    }
    out
}

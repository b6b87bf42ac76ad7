//! The `deployer` CLI: parses the command line and hands it to the subcommand's module
//! (`commands/`). Errors are printed once, here, with their causes, and exit with status 2.

mod commands;

use std::process::ExitCode;

use clap::{Parser, Subcommand};

use commands::Global;

/// Locks down an XNAT deployment inside an Istio mesh with the xnat-guard filter.
#[derive(Parser)]
#[command(name = "deployer", version, about, long_about = None)]
struct Cli {
    #[command(flatten)]
    global: Global,
    #[command(subcommand)]
    command: Command,
}

#[derive(Subcommand)]
enum Command {
    Local(commands::local::Args),
    Check(commands::check::Args),
    Render(commands::render::Args),
    Push(commands::push::Args),
    Rollout(commands::rollout::Args),
    Promote(commands::promote::Args),
    Status(commands::status::Args),
    Install(commands::install::Args),
    #[command(subcommand)]
    Kiali(commands::kiali::Command),
    Hpa(commands::hpa::Args),
    Learn(commands::learn::Args),
    Suggest(commands::suggest::Args),
}

fn main() -> ExitCode {
    let Cli { global, command } = Cli::parse();
    let done = |r: anyhow::Result<()>| r.map(|()| ExitCode::SUCCESS);
    let result = match command {
        Command::Local(args) => done(commands::local::run(args, &global)),
        Command::Check(args) => commands::check::run(args, &global),
        Command::Render(args) => done(commands::render::run(args, &global)),
        Command::Push(args) => done(commands::push::run(args, &global)),
        Command::Rollout(args) => done(commands::rollout::run(args, &global)),
        Command::Promote(args) => done(commands::promote::run(args, &global)),
        Command::Status(args) => done(commands::status::run(args, &global)),
        Command::Install(args) => done(commands::install::run(args, &global)),
        Command::Kiali(cmd) => done(commands::kiali::run(cmd, &global)),
        Command::Hpa(args) => done(commands::hpa::run(args, &global)),
        Command::Learn(args) => done(commands::learn::run(args, &global)),
        Command::Suggest(args) => commands::suggest::run(args, &global),
    };
    match result {
        Ok(code) => code,
        Err(e) => {
            eprintln!("error: {e:#}");
            ExitCode::from(2)
        }
    }
}

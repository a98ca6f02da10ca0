//! The `imaging` binary: runs the imaging daemon on its own, for sites that put it on a machine of
//! its own. `appliance run` starts the same daemon inside the whole stack.

use clap::Parser;
use firmware_runtime::ConfigArgs;

/// Imaging compute server: DICOM in, store, query, and server-side rendering streamed to thin clients. Runs alone here; 'appliance run' runs it beside the rest of the stack.
#[derive(Debug, Parser)]
#[command(name = "imaging", version)]
struct Cli {
    #[command(flatten)]
    config: ConfigArgs,
}

fn main() -> std::process::ExitCode {
    let cli = Cli::parse();
    firmware_runtime::run_daemon(&cli.config, |config, ctx| async move {
        imaging::run(&config, ctx).await
    })
}

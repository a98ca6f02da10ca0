//! The `sfu` binary: runs the sfu daemon on its own, for sites that put it on a machine of
//! its own. `appliance run` starts the same daemon inside the whole stack.

use clap::Parser;
use firmware_runtime::ConfigArgs;

/// Media SFU: multi-party audio/video rooms over WebRTC and QUIC. Runs alone here; 'appliance run' runs it beside the rest of the stack.
#[derive(Debug, Parser)]
#[command(name = "sfu", version)]
struct Cli {
    #[command(flatten)]
    config: ConfigArgs,
}

fn main() -> std::process::ExitCode {
    let cli = Cli::parse();
    firmware_runtime::run_daemon(&cli.config, |config, ctx| async move {
        sfu::run(&config, ctx).await
    })
}

//! The `imaging` binary: runs the imaging daemon on its own, for sites that put it on a machine of
//! its own (`appliance run` starts the same daemon inside the whole stack), and imports DICOM
//! files, folders, DICOMDIRs and zip archives into its store (`imaging import PATH...`).

use std::path::PathBuf;
use std::process::ExitCode;

use clap::{Parser, Subcommand};
use firmware_runtime::ConfigArgs;

/// Imaging compute server: DICOM in, store, query, and server-side rendering streamed to thin clients. Runs alone here; 'appliance run' runs it beside the rest of the stack.
#[derive(Debug, Parser)]
#[command(name = "imaging", version)]
struct Cli {
    #[command(flatten)]
    config: ConfigArgs,
    #[command(subcommand)]
    command: Option<Command>,
}

#[derive(Debug, Subcommand)]
enum Command {
    /// Run the daemon (the default).
    Run,
    /// Import DICOM files, folders (recursively), DICOMDIRs and zip archives into the store
    /// under the data directory. The daemon may be running. Exit status: 0 when every file was
    /// stored or already there, 3 when some were rejected (each is listed with the reason).
    Import {
        /// Files, folders, DICOMDIR files or .zip archives.
        #[arg(required = true, value_name = "PATH")]
        paths: Vec<PathBuf>,
    },
}

fn main() -> ExitCode {
    let cli = Cli::parse();
    match cli.command {
        None | Some(Command::Run) => {
            firmware_runtime::run_daemon(&cli.config, |config, ctx| async move {
                imaging::run(&config, ctx).await
            })
        }
        Some(Command::Import { paths }) => import(&cli.config, &paths),
    }
}

fn import(args: &ConfigArgs, paths: &[PathBuf]) -> ExitCode {
    let config = match args.load_or_report() {
        Ok(c) => c,
        Err(code) => return code,
    };
    let runtime = match tokio::runtime::Builder::new_multi_thread()
        .enable_all()
        .build()
    {
        Ok(rt) => rt,
        Err(e) => {
            eprintln!("cannot start the async runtime: {e}");
            return ExitCode::FAILURE;
        }
    };
    match runtime.block_on(imaging::store::import::import(&config, paths)) {
        Ok(summary) => {
            print!("{summary}");
            if summary.rejected.is_empty() {
                ExitCode::SUCCESS
            } else {
                ExitCode::from(3)
            }
        }
        Err(e) => {
            eprintln!("error: {e}");
            ExitCode::FAILURE
        }
    }
}

//! The `appliance` binary: `run` starts the whole stack (appliance, imaging, sfu) in one
//! process; `config` checks, shows and manages the configuration.

use std::path::PathBuf;
use std::process::ExitCode;

use clap::{Parser, Subcommand};
use firmware_runtime::ConfigArgs;

/// Remote consultation and two-way referral appliance (远程会诊与双向转诊平台).
///
/// With no command, runs the whole stack on the embedded default: data in ./data, SQLite,
/// loopback listeners (web and API 8080, imaging 8081, video rooms 8082).
#[derive(Debug, Parser)]
#[command(name = "appliance", version)]
struct Cli {
    #[command(flatten)]
    config: ConfigArgs,
    #[command(subcommand)]
    command: Option<Command>,
}

#[derive(Debug, Subcommand)]
enum Command {
    /// Run the whole stack until Ctrl-C or SIGTERM (the default).
    Run,
    /// Check, show and manage the configuration.
    #[command(subcommand)]
    Config(ConfigCommand),
}

#[derive(Debug, Subcommand)]
enum ConfigCommand {
    /// Check a configuration file (with the environment and --set overrides); exit 2 if invalid.
    Check {
        /// The TOML file.
        file: PathBuf,
    },
    /// Print the effective configuration, secrets masked, with where each change came from.
    Show,
    /// Print a commented sample with every key and its default.
    Sample,
    /// List the saved versions of the run-time configuration.
    History,
    /// Validate a TOML document and save it as a new run-time version.
    Save {
        /// The TOML document.
        file: PathBuf,
        /// Who makes the change.
        #[arg(long = "by", value_name = "NAME")]
        author: String,
        /// Why.
        #[arg(long, default_value = "")]
        comment: String,
        /// Refuse unless this is still the current version (optimistic locking).
        #[arg(long, value_name = "VERSION")]
        base: Option<u64>,
    },
    /// Restore a saved version (saved again as a new version).
    Rollback {
        /// The version to restore.
        version: u64,
        /// Who makes the change.
        #[arg(long = "by", value_name = "NAME")]
        author: String,
    },
}

fn main() -> ExitCode {
    let cli = Cli::parse();
    let args = &cli.config;
    let output = match cli.command.unwrap_or(Command::Run) {
        Command::Run => return run(args),
        Command::Config(ConfigCommand::Check { file }) => appliance::config_cmd::check(args, &file),
        Command::Config(ConfigCommand::Show) => appliance::config_cmd::show(args),
        Command::Config(ConfigCommand::Sample) => Ok(firmware_config::Config::sample()),
        Command::Config(ConfigCommand::History) => appliance::config_cmd::history(args),
        Command::Config(ConfigCommand::Save {
            file,
            author,
            comment,
            base,
        }) => appliance::config_cmd::save(args, &file, &author, &comment, base),
        Command::Config(ConfigCommand::Rollback { version, author }) => {
            appliance::config_cmd::rollback(args, version, &author)
        }
    };
    match output {
        Ok(text) => {
            print!("{text}");
            ExitCode::SUCCESS
        }
        Err(e) => {
            eprint!("{e}");
            if !e.to_string().ends_with('\n') {
                eprintln!();
            }
            ExitCode::from(e.exit_code())
        }
    }
}

fn run(args: &ConfigArgs) -> ExitCode {
    // The effective configuration includes the run-time store under the data directory.
    let config = match appliance::config_cmd::effective(args) {
        Ok((loaded, _)) => loaded.config,
        Err(e) => {
            eprint!("{e}");
            return ExitCode::from(e.exit_code());
        }
    };
    firmware_runtime::daemon_main(args.log_format.into(), config, appliance::stack::run)
}

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
    /// Manage the institutions of the alliance.
    #[command(subcommand)]
    Institution(InstitutionCommand),
    /// Manage user accounts.
    #[command(subcommand)]
    User(UserCommand),
    /// Check the audit trail.
    #[command(subcommand)]
    Audit(AuditCommand),
    /// TLS certificates for the listeners.
    #[command(subcommand)]
    Tls(TlsCommand),
    /// Signed consultation reports.
    #[command(subcommand)]
    Report(ReportCommand),
    /// Back up the data directory into a new folder under --to (safe while the stack runs
    /// and writes), or check a backup (`backup verify DIR`).
    Backup(BackupArgs),
    /// Verify the backup in DIR and copy it into the data directory (--data-dir), which must
    /// be empty or new.
    Restore {
        /// The backup folder (one `backup --to` made).
        dir: PathBuf,
        /// The passphrase file, when the backup's keys are sealed (default:
        /// backup.key_passphrase_file).
        #[arg(long, value_name = "FILE")]
        key_passphrase_file: Option<PathBuf>,
    },
    /// Fill an empty database with a small demo alliance and print its logins (one-time
    /// passwords), with synthetic studies (head CT, chest CR, carotid ultrasound) stored in
    /// imaging and attached to two consultation drafts; --series imports given DICOM instead.
    DemoData {
        /// DICOM files or folders to import instead of the synthetic studies.
        #[arg(long = "series", value_name = "PATH")]
        series: Vec<PathBuf>,
    },
    /// Import FHIR R4 resources (JSON files, each a resource or a Bundle) into the clinical
    /// record of an institution's patients, patients first; prints what was stored and what
    /// was skipped and why. Importing the same files again updates, never duplicates.
    FhirImport {
        /// The registered institution whose patients these are.
        #[arg(long)]
        institution: String,
        /// The name kept as each row's source.
        #[arg(long, default_value = "file")]
        source: String,
        /// The JSON files.
        #[arg(required = true, value_name = "FILE")]
        files: Vec<PathBuf>,
    },
}

#[derive(Debug, Subcommand)]
enum InstitutionCommand {
    /// Add an institution and print its id.
    Add {
        /// Its name, e.g. 市第一人民医院.
        #[arg(long)]
        name: String,
        /// hospital, campus or clinic.
        #[arg(long, default_value = "hospital")]
        kind: String,
        /// The institution it belongs to (a campus's hospital, a clinic's lead hospital).
        #[arg(long)]
        parent: Option<i64>,
    },
}

#[derive(Debug, Subcommand)]
enum UserCommand {
    /// Add a user and print a one-time password, to be changed at first login.
    Add {
        /// The login name.
        #[arg(long)]
        login: String,
        /// The name shown.
        #[arg(long)]
        name: String,
        /// doctor, expert, coordinator, qc_reviewer, referral_staff, institution_admin,
        /// system_admin, security_admin or audit_admin.
        #[arg(long)]
        role: String,
        /// The user's institution (id).
        #[arg(long)]
        institution: i64,
        /// A mobile number for SMS notices (11 digits).
        #[arg(long, default_value = "")]
        phone: String,
    },
}

#[derive(Debug, clap::Args)]
#[command(args_conflicts_with_subcommands = true)]
struct BackupArgs {
    #[command(subcommand)]
    command: Option<BackupCommand>,
    /// The folder that receives the backup (a new `backup-TIME` folder inside it).
    #[arg(long, value_name = "DIR")]
    to: Option<PathBuf>,
    /// Seal the keys with the passphrase on this file's first line (default:
    /// backup.key_passphrase_file); with `verify`, also check that it opens them.
    #[arg(long, value_name = "FILE", global = true)]
    key_passphrase_file: Option<PathBuf>,
}

#[derive(Debug, Subcommand)]
enum BackupCommand {
    /// Check a backup: every file, both hashes, the databases and the audit chain; exit 1
    /// naming every problem.
    Verify {
        /// The backup folder.
        dir: PathBuf,
    },
}

#[derive(Debug, Subcommand)]
enum ReportCommand {
    /// Check a signed-report bundle (report/signed.zip) without the appliance's database: the
    /// content's SM3 against the statement, the SM2 signature against the certificate and,
    /// with --ca, the certificate against that CA. Exits 1 when anything does not verify.
    Verify {
        /// The bundle (a zip downloaded from the report's signed.zip).
        bundle: PathBuf,
        /// The CA certificate to check the signing certificate against (PEM).
        #[arg(long, value_name = "FILE")]
        ca: Option<PathBuf>,
    },
}

#[derive(Debug, Subcommand)]
enum TlsCommand {
    /// Make a local CA (once, kept in DATA_DIR/tls) and issue a server certificate under it
    /// for the public host, localhost, loopback, the bind address and each --host; save
    /// tls.cert and tls.key in the run-time configuration. Run again to renew: running daemons
    /// load the new certificate without a restart.
    Init {
        /// Another host name or address clients use (repeatable).
        #[arg(long = "host", value_name = "NAME")]
        hosts: Vec<String>,
        /// Days the server certificate is valid, 1-3650.
        #[arg(long, default_value_t = 825, value_parser = clap::value_parser!(u32).range(1..=3650))]
        days: u32,
    },
}

#[derive(Debug, Subcommand)]
enum AuditCommand {
    /// Recompute the hash chain; exit 1 naming every edited or deleted row.
    Verify,
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
        Command::Institution(c) => return admin(args, Admin::Institution(c)),
        Command::User(c) => return admin(args, Admin::User(c)),
        Command::Audit(c) => return admin(args, Admin::Audit(c)),
        Command::DemoData { series } => return admin(args, Admin::Demo(series)),
        Command::FhirImport {
            institution,
            source,
            files,
        } => {
            return admin(
                args,
                Admin::FhirImport {
                    institution,
                    source,
                    files,
                },
            );
        }
        Command::Backup(b) => return backup(args, b),
        Command::Restore {
            dir,
            key_passphrase_file,
        } => return restore(args, &dir, key_passphrase_file),
        Command::Config(ConfigCommand::Check { file }) => appliance::config_cmd::check(args, &file),
        Command::Report(ReportCommand::Verify { bundle, ca }) => {
            return report_verify(&bundle, ca.as_deref());
        }
        Command::Tls(TlsCommand::Init { hosts, days }) => {
            return match appliance::tls_cmd::init(args, &hosts, days) {
                Ok(text) => {
                    print!("{text}");
                    ExitCode::SUCCESS
                }
                Err(e) => {
                    eprintln!("{e}");
                    ExitCode::from(2)
                }
            };
        }
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

fn current_thread() -> Option<tokio::runtime::Runtime> {
    tokio::runtime::Builder::new_current_thread()
        .enable_all()
        .build()
        .inspect_err(|e| eprintln!("cannot start: {e}"))
        .ok()
}

fn backup(args: &ConfigArgs, b: BackupArgs) -> ExitCode {
    let Some(runtime) = current_thread() else {
        return ExitCode::FAILURE;
    };
    let passphrase = match passphrase(b.key_passphrase_file.as_deref(), "--key-passphrase-file") {
        Ok(p) => p,
        Err(code) => return code,
    };
    if let Some(BackupCommand::Verify { dir }) = b.command {
        return match runtime.block_on(appliance::backup::verify(&dir, passphrase.as_deref())) {
            Ok(m) => {
                let keys = match (m.keys_sealed, passphrase.is_some()) {
                    (false, _) => "",
                    (true, true) => "; keys sealed, the passphrase opens them",
                    (true, false) => {
                        "; keys sealed (give --key-passphrase-file to check the passphrase)"
                    }
                };
                println!(
                    "{}: intact ({} files, taken {}; {} audit records, {} instances{keys})",
                    dir.display(),
                    m.files.len(),
                    m.created_at,
                    m.counts.get("audit_log").copied().unwrap_or(0),
                    m.counts.get("instances").copied().unwrap_or(0),
                );
                ExitCode::SUCCESS
            }
            Err(e) => {
                eprintln!("{e}");
                ExitCode::FAILURE
            }
        };
    }
    let Some(to) = b.to else {
        eprintln!("--to: the folder that receives the backup is required");
        return ExitCode::from(2);
    };
    let config = match appliance::config_cmd::effective(args) {
        Ok((loaded, _)) => loaded.config,
        Err(e) => {
            eprint!("{e}");
            return ExitCode::from(e.exit_code());
        }
    };
    let Some(db) = config.sqlite_path() else {
        eprintln!("database.url: backups cover the embedded SQLite database only");
        return ExitCode::from(2);
    };
    let passphrase = match passphrase {
        Some(p) => Some(p),
        None => match self::passphrase(
            config.backup.key_passphrase_file.as_deref(),
            "backup.key_passphrase_file",
        ) {
            Ok(p) => p,
            Err(code) => return code,
        },
    };
    match runtime.block_on(appliance::backup::snapshot(
        &config.storage.data_dir,
        &db,
        &to,
        passphrase.as_deref(),
    )) {
        Ok((dir, m)) => {
            println!(
                "backup written: {} ({} files; {} audit records, {} instances)",
                dir.display(),
                m.files.len(),
                m.counts.get("audit_log").copied().unwrap_or(0),
                m.counts.get("instances").copied().unwrap_or(0),
            );
            ExitCode::SUCCESS
        }
        Err(e) => {
            eprintln!("{e}");
            ExitCode::FAILURE
        }
    }
}

/// The key passphrase in `file`, if one is named; an unreadable or short one is reported
/// under `field` (the flag or the configuration field that named it), exit code 2.
fn passphrase(file: Option<&std::path::Path>, field: &str) -> Result<Option<String>, ExitCode> {
    file.map(appliance::backup::read_passphrase)
        .transpose()
        .map_err(|e| {
            eprintln!("{field}: {e}");
            ExitCode::from(2)
        })
}

fn restore(args: &ConfigArgs, dir: &std::path::Path, passphrase_file: Option<PathBuf>) -> ExitCode {
    // Not the effective configuration: that would open the run-time store inside the (empty)
    // target first.
    let config = match args.load() {
        Ok(l) => l.config,
        Err(errors) => {
            eprint!("{errors}");
            return ExitCode::from(2);
        }
    };
    let Some(runtime) = current_thread() else {
        return ExitCode::FAILURE;
    };
    let (file, field) = match passphrase_file {
        Some(f) => (Some(f), "--key-passphrase-file"),
        None => (
            config.backup.key_passphrase_file.clone(),
            "backup.key_passphrase_file",
        ),
    };
    let passphrase = match passphrase(file.as_deref(), field) {
        Ok(p) => p,
        Err(code) => return code,
    };
    let target = config.storage.data_dir;
    match runtime.block_on(appliance::backup::restore(
        dir,
        &target,
        passphrase.as_deref(),
    )) {
        Ok(m) => {
            println!(
                "restored {} ({} files, taken {}) into {}",
                dir.display(),
                m.files.len(),
                m.created_at,
                target.display()
            );
            ExitCode::SUCCESS
        }
        Err(e) => {
            eprintln!("{e}");
            ExitCode::FAILURE
        }
    }
}

enum Admin {
    Demo(Vec<PathBuf>),
    FhirImport {
        institution: String,
        source: String,
        files: Vec<PathBuf>,
    },
    Institution(InstitutionCommand),
    User(UserCommand),
    Audit(AuditCommand),
}

/// The database commands: open the database of the effective configuration, act, report.
fn admin(args: &ConfigArgs, command: Admin) -> ExitCode {
    let config = match appliance::config_cmd::effective(args) {
        Ok((loaded, _)) => loaded.config,
        Err(e) => {
            eprint!("{e}");
            return ExitCode::from(e.exit_code());
        }
    };
    let runtime = match tokio::runtime::Builder::new_current_thread()
        .enable_all()
        .build()
    {
        Ok(r) => r,
        Err(e) => {
            eprintln!("cannot start: {e}");
            return ExitCode::FAILURE;
        }
    };
    let result: anyhow::Result<ExitCode> = runtime.block_on(async {
        let db = appliance::db::Database::open(&config).await?;
        let pool = db.pool();
        let code = match command {
            Admin::Institution(InstitutionCommand::Add { name, kind, parent }) => {
                let id = appliance::accounts::add_institution(pool, &name, &kind, parent).await?;
                println!("institution {id}: {name}");
                ExitCode::SUCCESS
            }
            Admin::User(UserCommand::Add {
                login,
                name,
                role,
                institution,
                phone,
            }) => {
                let role = appliance::accounts::parse_role(&role)?;
                if !appliance::accounts::valid_phone(&phone) {
                    anyhow::bail!("phone: an 11-digit mobile number");
                }
                let (id, password) =
                    appliance::accounts::add_user(pool, &login, &name, role, institution).await?;
                appliance::accounts::set_phone(pool, db.sealer(), id, &phone).await?;
                println!("user {id}: {login}");
                println!("one-time password (must be changed at first login): {password}");
                ExitCode::SUCCESS
            }
            Admin::Demo(series) => {
                print!(
                    "{}",
                    appliance::demo::build(&config, pool, db.sealer(), &series).await?
                );
                ExitCode::SUCCESS
            }
            Admin::FhirImport {
                institution,
                source,
                files,
            } => {
                let intake = appliance::fhir::intake::FhirIntake {
                    pool: pool.clone(),
                    sealer: db.sealer().clone(),
                    source,
                    institution,
                };
                match appliance::fhir::intake::import_files(&intake, &files).await {
                    Ok(text) => {
                        print!("{text}");
                        ExitCode::SUCCESS
                    }
                    Err(e) => {
                        eprintln!("{e}");
                        ExitCode::from(2)
                    }
                }
            }
            Admin::Audit(AuditCommand::Verify) => {
                let v = appliance::audit::verify(pool).await?;
                for p in &v.problems {
                    println!("{p}");
                }
                let head = v
                    .head
                    .map_or("empty".to_owned(), |(seq, hash)| format!("{seq} {hash}"));
                println!("{} records checked; head: {head}", v.records);
                if v.problems.is_empty() {
                    println!("the audit chain is intact");
                    ExitCode::SUCCESS
                } else {
                    ExitCode::FAILURE
                }
            }
        };
        db.close().await;
        Ok(code)
    });
    result.unwrap_or_else(|e| {
        eprintln!("{e}");
        ExitCode::from(2)
    })
}

/// `appliance report verify`: prints what the bundle states once it verifies.
fn report_verify(bundle: &std::path::Path, ca: Option<&std::path::Path>) -> ExitCode {
    let read = |p: &std::path::Path| std::fs::read(p).map_err(|e| format!("{}: {e}", p.display()));
    let result = read(bundle).and_then(|zip| {
        let ca = ca
            .map(|p| read(p).map(|b| String::from_utf8_lossy(&b).into_owned()))
            .transpose()?;
        appliance::report_sign::check_bundle(&zip, ca.as_deref()).map_err(|e| e.to_string())
    });
    match result {
        Ok(checked) => {
            println!("签名有效 / signature valid (SM2 with SM3)");
            for (k, v) in &checked.fields {
                println!("  {k}: {v}");
            }
            println!("  certificate: {}", checked.subject);
            println!("  certificate-sha256: {}", checked.certificate_sha256);
            if checked.chain_checked {
                println!("证书由所给 CA 签发 / certificate issued by the given CA");
            } else {
                println!(
                    "证书链未核验（用 --ca 指定 CA）/ certificate chain not checked: give --ca"
                );
            }
            ExitCode::SUCCESS
        }
        Err(e) => {
            eprintln!("签名无效 / not valid: {e}");
            ExitCode::from(1)
        }
    }
}

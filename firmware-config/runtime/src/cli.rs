//! Command-line options every daemon shares (`--config`, `--data-dir`, `--set`,
//! `--log-format`), how they become configuration sources, and the daemon context (readiness,
//! shutdown, metrics) a binary hands to its servers.

use std::path::PathBuf;
use std::process::ExitCode;

use firmware_config::{ConfigErrors, Loaded, Sources};
use metrics_exporter_prometheus::PrometheusHandle;

use crate::{LogFormat, Readiness, RuntimeError, Shutdown};

/// Options shared by `appliance`, `imaging` and `sfu`.
#[derive(Debug, Clone, Default, clap::Args)]
pub struct ConfigArgs {
    /// Configuration file (TOML). See docs/config-sample.toml.
    #[arg(long, short = 'c', value_name = "FILE", global = true)]
    pub config: Option<PathBuf>,
    /// Data directory (overrides storage.data_dir; also APPLIANCE_DATA).
    #[arg(long, value_name = "DIR", global = true)]
    pub data_dir: Option<PathBuf>,
    /// Override one field, e.g. --set listeners.http=9090 (repeatable; wins over file and
    /// environment).
    #[arg(long = "set", value_name = "SECTION.KEY=VALUE", global = true)]
    pub overrides: Vec<String>,
    /// Log format on stderr; RUST_LOG sets the filter (default info).
    #[arg(long, value_enum, default_value_t = LogFormatArg::Text, global = true)]
    pub log_format: LogFormatArg,
}

/// `--log-format` values.
#[derive(Debug, Clone, Copy, Default, PartialEq, Eq, clap::ValueEnum)]
pub enum LogFormatArg {
    /// Human-readable lines.
    #[default]
    Text,
    /// One JSON object per line.
    Json,
}

impl From<LogFormatArg> for LogFormat {
    fn from(a: LogFormatArg) -> Self {
        match a {
            LogFormatArg::Text => Self::Text,
            LogFormatArg::Json => Self::Json,
        }
    }
}

impl ConfigArgs {
    /// The configuration sources these options and the process environment name, without the
    /// run-time store.
    pub fn sources(&self) -> Sources {
        let mut s = Sources::with_process_env();
        s.file.clone_from(&self.config);
        s.overrides.clone_from(&self.overrides);
        if let Some(dir) = &self.data_dir {
            s.overrides
                .push(format!("storage.data_dir={}", dir.display()));
        }
        s
    }

    /// Loads and validates the configuration.
    pub fn load(&self) -> Result<Loaded, ConfigErrors> {
        firmware_config::load(&self.sources())
    }

    /// Loads the configuration, or prints every error to stderr and gives exit code 2.
    pub fn load_or_report(&self) -> Result<firmware_config::Config, ExitCode> {
        self.load().map(|l| l.config).map_err(|errors| {
            eprint!("{errors}");
            ExitCode::from(2)
        })
    }
}

/// What a running daemon shares with its servers: who is ready, when to stop, the metrics.
#[derive(Debug, Clone)]
pub struct Context {
    /// Subsystem states for `/readyz`.
    pub readiness: Readiness,
    /// The process-wide shutdown signal.
    pub shutdown: Shutdown,
    /// The process-wide Prometheus recorder.
    pub metrics: PrometheusHandle,
    /// The certificate every HTTP listener serves; `None`: plain HTTP (loopback only, unless
    /// `tls.require_outside_loopback` is turned off).
    pub tls: Option<std::sync::Arc<crate::tls::Tls>>,
    /// What the security headers depend on.
    pub web: crate::headers::WebPolicy,
}

impl Context {
    /// Installs the metrics recorder and the Ctrl-C/SIGTERM handlers, and loads the TLS
    /// certificate (reloaded on SIGHUP or when its files change). Call inside a Tokio runtime.
    pub fn start(config: &firmware_config::Config) -> Result<Self, RuntimeError> {
        let shutdown = Shutdown::new();
        shutdown.on_signals()?;
        let tls = crate::tls::Tls::from_config(config)?;
        if let Some(tls) = &tls {
            tls.watch(shutdown.clone())?;
        }
        Ok(Self {
            readiness: Readiness::new(),
            shutdown,
            metrics: crate::metrics()?,
            tls,
            web: crate::headers::WebPolicy::from_config(config),
        })
    }
}

/// How long a shutdown waits for requests in flight before giving up on them.
pub const DRAIN_TIMEOUT: std::time::Duration = std::time::Duration::from_secs(30);

/// The whole `main` of a daemon that needs nothing but its configuration: loads it (every error
/// printed, exit 2 when invalid), then [`daemon_main`].
pub fn run_daemon<F, Fut, E>(args: &ConfigArgs, daemon: F) -> ExitCode
where
    F: FnOnce(firmware_config::Config, Context) -> Fut,
    Fut: Future<Output = Result<(), E>>,
    E: std::fmt::Display,
{
    match args.load_or_report() {
        Ok(config) => daemon_main(args.log_format.into(), config, daemon),
        Err(code) => code,
    }
}

/// The body of a daemon's `main` once its configuration is loaded: sets up logging, starts a
/// Tokio runtime with the daemon context, and runs `daemon` until shutdown. Exits 0 after a
/// graceful shutdown, 1 on a failure or when requests in flight outlast [`DRAIN_TIMEOUT`].
pub fn daemon_main<F, Fut, E>(
    log_format: LogFormat,
    config: firmware_config::Config,
    daemon: F,
) -> ExitCode
where
    F: FnOnce(firmware_config::Config, Context) -> Fut,
    Fut: Future<Output = Result<(), E>>,
    E: std::fmt::Display,
{
    crate::init_logging(log_format);
    // Before the runtime starts its threads, each of which would get an arena of its own.
    crate::memory::limit_arenas();
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
    let outcome = runtime.block_on(async move {
        let ctx = Context::start(&config).map_err(|e| e.to_string())?;
        tokio::spawn(crate::memory::trim_task());
        let shutdown = ctx.shutdown.clone();
        let drain_deadline = async move {
            shutdown.wait().await;
            tokio::time::sleep(DRAIN_TIMEOUT).await;
        };
        tokio::select! {
            result = daemon(config, ctx) => result.map_err(|e| e.to_string()),
            () = drain_deadline => Err(format!(
                "requests still in flight {} s after the shutdown signal; exiting without them",
                DRAIN_TIMEOUT.as_secs()
            )),
        }
    });
    match outcome {
        Ok(()) => {
            tracing::info!("shut down cleanly");
            ExitCode::SUCCESS
        }
        Err(e) => {
            tracing::error!(error = %e, "stopped on an error");
            eprintln!("error: {e}");
            ExitCode::FAILURE
        }
    }
}

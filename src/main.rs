//! The `guestgate` binary: parses the command line, sets up logging, loads and validates the
//! config, and hands over to the library. Exit codes: 0 clean, 1 runtime failure (for
//! `doctor`: a route has a problem), 2 bad configuration or usage (always before any port is
//! bound). A panic in the browser listener's accept loop ends `serve` at once with exit
//! code 1.

use std::net::SocketAddr;
use std::path::PathBuf;
use std::process::ExitCode;

use clap::{Parser, Subcommand, ValueEnum};
use tracing::info;
use url::Url;

use guestgate::app;
use guestgate::config::Config;

#[derive(Parser)]
#[command(
    name = "guestgate",
    version,
    about = "WebSocket relay that authenticates guest chat sessions upstream on the browser's behalf"
)]
struct Cli {
    #[command(subcommand)]
    command: Command,
    /// Log format.
    #[arg(long, value_enum, default_value_t = LogFormat::Text, global = true)]
    log_format: LogFormat,
    /// Log filter (tracing EnvFilter syntax), e.g. `info` or `guestgate=debug`.
    #[arg(long, default_value = "info", env = "GUESTGATE_LOG", global = true)]
    log: String,
}

#[derive(Clone, Copy, ValueEnum)]
enum LogFormat {
    Text,
    Json,
}

#[derive(Subcommand)]
enum Command {
    /// Relay browser WebSockets: from a config file, or to one upstream with `--upstream`.
    Serve {
        /// TOML config file.
        #[arg(long, conflicts_with = "upstream")]
        config: Option<PathBuf>,
        /// Relay every path to this ws:// or wss:// URL (no config file needed).
        #[arg(long, required_unless_present = "config")]
        upstream: Option<Url>,
        /// Browser listener (overrides the config).
        #[arg(long)]
        listen: Option<SocketAddr>,
        /// Admin listener for /healthz, /readyz, /metrics (overrides the config).
        #[arg(long)]
        admin_listen: Option<SocketAddr>,
        /// With --upstream: an Origin browsers may connect from (repeatable). Without it every
        /// Origin is accepted, with a warning.
        #[arg(long = "allow-origin", requires = "upstream")]
        allow_origins: Vec<String>,
        /// Threads that run connections (overrides the config; default one per CPU).
        #[arg(long, env = "GUESTGATE_WORKER_THREADS")]
        worker_threads: Option<usize>,
    },
    /// Validate a config file and print the effective configuration.
    Check {
        /// TOML config file.
        #[arg(long)]
        config: PathBuf,
    },
    /// Diagnose each Genesys route: fetch the deployment's public config and probe the socket
    /// with the configured Origin. Exit 0 when every route is fine, 1 when one has a problem.
    Doctor {
        /// TOML config file.
        #[arg(long)]
        config: PathBuf,
    },
    /// Run guestgate with an in-process fake upstream on loopback and print the URLs to open.
    Demo {
        /// Browser listener.
        #[arg(long, default_value = "127.0.0.1:8080")]
        listen: SocketAddr,
        /// Admin listener.
        #[arg(long, default_value = "127.0.0.1:9090")]
        admin_listen: SocketAddr,
    },
}

/// Logs to stdout through a writer thread: workers format a line and hand it over instead of
/// writing it themselves (a write to a pipe or a terminal can block). Nothing is dropped: when
/// the writer falls behind by 128k lines, loggers wait. Escape codes only on a terminal. The
/// returned guard flushes what is left when dropped at exit.
fn init_logging(format: LogFormat, filter: &str) -> tracing_appender::non_blocking::WorkerGuard {
    let filter = tracing_subscriber::EnvFilter::try_new(filter)
        .unwrap_or_else(|_| tracing_subscriber::EnvFilter::new("info"));
    let ansi = std::io::IsTerminal::is_terminal(&std::io::stdout());
    let (writer, guard) = tracing_appender::non_blocking::NonBlockingBuilder::default()
        .lossy(false)
        .thread_name("guestgate-log")
        // Buffered: the writer thread writes what queued up in one go and flushes whenever the
        // queue runs empty, so a line never waits longer than the lines before it.
        .finish(std::io::BufWriter::with_capacity(
            64 << 10,
            std::io::stdout(),
        ));
    let builder = tracing_subscriber::fmt()
        .with_env_filter(filter)
        .with_target(false)
        .with_ansi(ansi)
        .with_writer(writer);
    match format {
        LogFormat::Text => builder.init(),
        LogFormat::Json => builder.json().flatten_event(true).init(),
    }
    guard
}

/// Resolves on SIGINT or SIGTERM.
async fn termination() {
    let ctrl_c = tokio::signal::ctrl_c();
    #[cfg(unix)]
    {
        let mut term = tokio::signal::unix::signal(tokio::signal::unix::SignalKind::terminate())
            .expect("installing the SIGTERM handler");
        tokio::select! {
            _ = ctrl_c => {}
            _ = term.recv() => {}
        }
    }
    #[cfg(not(unix))]
    let _ = ctrl_c.await;
}

fn main() -> ExitCode {
    let cli = Cli::parse();
    let _log_writer = init_logging(cli.log_format, &cli.log);
    match cli.command {
        Command::Serve {
            config,
            upstream,
            listen,
            admin_listen,
            allow_origins,
            worker_threads,
        } => {
            let mut config = match (config, upstream) {
                (Some(path), _) => match Config::load(&path) {
                    Ok(c) => c,
                    Err(e) => return config_error(e),
                },
                (None, Some(url)) => Config::one_liner_with_origins(
                    listen.unwrap_or(([127, 0, 0, 1], 8080).into()),
                    url,
                    allow_origins,
                ),
                (None, None) => unreachable!("clap requires one of them"),
            };
            if let Some(addr) = listen {
                config.server.listen = addr;
            }
            if let Some(addr) = admin_listen {
                config.server.admin_listen = addr;
            }
            if let Some(n) = worker_threads {
                config.server.worker_threads = Some(n);
            }
            if let Err(e) = config.validate() {
                return config_error(e);
            }
            // Built after the config is read: its `server.worker_threads` sizes it.
            runtime(config.server.worker_threads).block_on(serve(config))
        }
        command => runtime(None).block_on(async move {
            match command {
                Command::Serve { .. } => unreachable!("served above"),
                Command::Check { config } => match Config::load(&config) {
                    Ok(c) => match app::prepare_routes(&c) {
                        Ok(routes) => {
                            println!("# {} is valid; effective configuration:", config.display());
                            print!("{}", toml::to_string_pretty(&c).expect("config serialises"));
                            for route in &routes {
                                println!();
                                print!("{}", guestgate::explain::route(route));
                            }
                            ExitCode::SUCCESS
                        }
                        Err(e) => config_error(e),
                    },
                    Err(e) => config_error(e),
                },
                Command::Doctor { config } => doctor(&config).await,
                Command::Demo {
                    listen,
                    admin_listen,
                } => guestgate::demo::run(listen, admin_listen, termination()).await,
            }
        }),
    }
}

/// The tokio runtime: `worker_threads` threads, or tokio's default (one per CPU the process
/// may use, or `TOKIO_WORKER_THREADS`).
fn runtime(worker_threads: Option<usize>) -> tokio::runtime::Runtime {
    let mut builder = tokio::runtime::Builder::new_multi_thread();
    if let Some(n) = worker_threads {
        builder.worker_threads(n);
    }
    builder
        .enable_all()
        .build()
        .expect("starting the tokio runtime")
}

/// Reports a bad config once, on stderr (the log may go to a collector that an operator
/// running `check` never sees; a second copy in the log would only repeat it), and exits 2.
fn config_error(e: impl std::fmt::Display) -> ExitCode {
    eprintln!("guestgate: {e}");
    ExitCode::from(2)
}

/// `guestgate doctor`: one report per Genesys route on stdout; 0 all fine, 1 a problem, 2 a
/// bad config.
async fn doctor(path: &std::path::Path) -> ExitCode {
    use guestgate::preset::genesys::doctor;
    let config = match Config::load(path) {
        Ok(c) => c,
        Err(e) => return config_error(e),
    };
    if let Err(e) = app::prepare_routes(&config) {
        return config_error(e);
    }
    let subjects = match doctor::subjects(&config) {
        Ok(s) => s,
        Err(e) => return config_error(e),
    };
    if subjects.is_empty() {
        println!("# {} has no Genesys routes to diagnose", path.display());
        return ExitCode::SUCCESS;
    }
    let mut problems = Vec::new();
    for subject in &subjects {
        let report = doctor::diagnose(subject).await;
        println!("{}", report.render());
        if !report.is_fine() {
            problems.push(report.route);
        }
    }
    if problems.is_empty() {
        println!("# every Genesys route is fine");
        ExitCode::SUCCESS
    } else {
        println!("# routes with a problem: {}", problems.join(", "));
        ExitCode::from(1)
    }
}

async fn serve(config: Config) -> ExitCode {
    for warning in config.warnings() {
        tracing::warn!("{warning}");
    }
    let running = match app::start(&config, None).await {
        Ok(r) => r,
        Err(app::StartError::Route(e)) => return config_error(e),
        Err(app::StartError::Tls(e)) => return config_error(e),
        Err(e) => {
            eprintln!("guestgate: {e}");
            return ExitCode::from(1);
        }
    };
    let worker_threads = tokio::runtime::Handle::current().metrics().num_workers();
    info!(listen = %running.addr, admin = %running.admin_addr, routes = config.routes.len(), worker_threads, "guestgate is serving");
    let report = running.until_stopped(termination()).await;
    if report.server_panicked || report.aborted > 0 {
        ExitCode::from(1)
    } else {
        ExitCode::SUCCESS
    }
}

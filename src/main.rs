//! The `ordergate` command: run the gateway, the emulated backend, or both.

use anyhow::Context;
use clap::{Parser, Subcommand};
use ordergate::config::{Config, LogConfig};
use std::net::SocketAddr;
use std::path::PathBuf;
use tokio::net::TcpListener;

#[derive(Parser)]
#[command(version, about = "An HTTP gateway for the legacy orders API")]
struct Cli {
    /// The gateway's TOML configuration file.
    #[arg(long, short)]
    config: Option<PathBuf>,
    #[command(subcommand)]
    command: Option<Command>,
}

#[derive(Subcommand)]
enum Command {
    /// Run the emulated legacy orders backend.
    EmulateBackend {
        #[arg(long, default_value = "127.0.0.1:9000")]
        listen: SocketAddr,
        /// The internal base URL the backend writes into its links and
        /// Locations (default: http://<listen>).
        #[arg(long)]
        base_url: Option<String>,
    },
    /// Run the emulated backend on the config's upstream address and the
    /// gateway in front of it, in one process.
    Demo {
        #[arg(long, short)]
        config: PathBuf,
        /// The backend's internal base URL (default: the first of
        /// upstream.rewrite_bases, else the upstream URL).
        #[arg(long)]
        base_url: Option<String>,
    },
    /// Check a configuration file: print every problem with its key (exit
    /// status 1), or a one-line summary (exit status 0).
    Check {
        #[arg(long, short)]
        config: PathBuf,
    },
}

async fn shutdown_signal() {
    let ctrl_c = tokio::signal::ctrl_c();
    #[cfg(unix)]
    {
        let mut term =
            match tokio::signal::unix::signal(tokio::signal::unix::SignalKind::terminate()) {
                Ok(s) => s,
                Err(_) => return std::future::pending().await,
            };
        tokio::select! {
            _ = ctrl_c => {}
            _ = term.recv() => {}
        }
    }
    #[cfg(not(unix))]
    let _ = ctrl_c.await;
    tracing::info!("shutting down");
}

fn load(path: &std::path::Path) -> anyhow::Result<Config> {
    Config::check_file(path).map_err(|problems| {
        let lines: Vec<String> = problems.iter().map(|p| format!("  {p}")).collect();
        anyhow::anyhow!(
            "invalid configuration {}:\n{}",
            path.display(),
            lines.join("\n")
        )
    })
}

/// `ordergate check`: every problem, or a summary.
fn check(path: &std::path::Path) -> std::process::ExitCode {
    match Config::check_file(path) {
        Ok(c) => {
            for w in &c.warnings {
                println!("{}: warning: {w}", path.display());
            }
            for o in &c.overrides {
                match &o.value {
                    // Never the value of a secret.
                    None => println!(
                        "{}: {}: set by {} (secret, not shown)",
                        path.display(),
                        o.key,
                        o.var
                    ),
                    Some(v) => println!("{}: {}: set by {} = {v}", path.display(), o.key, o.var),
                }
            }
            let tls = c
                .server
                .listeners
                .iter()
                .filter(|l| l.tls.is_some())
                .count();
            let store = match &c.store.kind {
                ordergate::config::StoreKind::Memory => "memory".to_owned(),
                ordergate::config::StoreKind::Redb { path } => format!("redb {}", path.display()),
                // Not the URL: it may carry a password.
                ordergate::config::StoreKind::Redis(r) => {
                    format!("redis (key prefix {})", r.key_prefix)
                }
            };
            println!(
                "{}: ok: {} listener(s) ({tls} TLS), upstream {}, store {store}, {} rate-limit rule(s), admin {}",
                path.display(),
                c.server.listeners.len(),
                c.upstream.url.as_str(),
                c.rate_limits.rules.len(),
                c.admin
                    .map_or_else(|| "off".to_owned(), |a| a.listen.to_string()),
            );
            std::process::ExitCode::SUCCESS
        }
        Err(problems) => {
            for p in &problems {
                println!("{}: {p}", path.display());
            }
            println!("{}: {} problem(s)", path.display(), problems.len());
            std::process::ExitCode::FAILURE
        }
    }
}

/// Logs what reading the file noted: ignored keys, environment overrides
/// (their variables, never their values).
fn notes(config: &Config) {
    for w in &config.warnings {
        tracing::warn!(key = %w.key, "{}", w.reason);
    }
    for o in &config.overrides {
        tracing::info!(key = %o.key, var = %o.var, "set from the environment");
    }
}

/// Reads the file again on every SIGHUP; a good configuration goes to the
/// gateway, a bad one is refused with its problems in the log.
fn reload_on_hangup(path: PathBuf) -> tokio::sync::mpsc::Receiver<Config> {
    let (tx, rx) = tokio::sync::mpsc::channel(1);
    #[cfg(unix)]
    tokio::spawn(async move {
        use tokio::signal::unix::{SignalKind, signal};
        let Ok(mut hup) = signal(SignalKind::hangup()) else {
            tracing::warn!("cannot listen for SIGHUP; reload is off");
            return;
        };
        while hup.recv().await.is_some() {
            match Config::check_file(&path) {
                Ok(config) => {
                    notes(&config);
                    if tx.send(config).await.is_err() {
                        return;
                    }
                }
                Err(problems) => {
                    for p in &problems {
                        tracing::error!(problem = %p, "reload refused; the running configuration stays");
                    }
                }
            }
        }
    });
    #[cfg(not(unix))]
    drop((path, tx));
    rx
}

async fn serve(config: Config, path: PathBuf) -> anyhow::Result<()> {
    let bound = ordergate::Bound::bind(&config).await?;
    let reloads = reload_on_hangup(path);
    ordergate::run(config, bound, shutdown_signal(), reloads).await?;
    Ok(())
}

async fn bind(addr: SocketAddr) -> anyhow::Result<TcpListener> {
    TcpListener::bind(addr)
        .await
        .with_context(|| format!("cannot listen on {addr}"))
}

/// The runtime: with one worker everything runs on the main thread (no
/// cross-thread wake-ups, the cheapest per request); with more, a
/// multi-thread runtime of that many workers.
fn runtime(workers: Option<usize>) -> anyhow::Result<tokio::runtime::Runtime> {
    let workers = workers.or_else(|| std::env::var("TOKIO_WORKER_THREADS").ok()?.parse().ok());
    let mut builder = match workers {
        Some(1) => tokio::runtime::Builder::new_current_thread(),
        Some(n) => {
            let mut b = tokio::runtime::Builder::new_multi_thread();
            b.worker_threads(n);
            b
        }
        None => tokio::runtime::Builder::new_multi_thread(),
    };
    builder
        .enable_all()
        .build()
        .context("cannot start the runtime")
}

fn main() -> anyhow::Result<std::process::ExitCode> {
    let cli = Cli::parse();
    match (cli.command, cli.config) {
        (Some(Command::Check { config }), _) => return Ok(check(&config)),
        (Some(Command::EmulateBackend { listen, base_url }), _) => {
            ordergate::telemetry::log::init(&LogConfig::default());
            runtime(None)?.block_on(async {
                ordergate::backend::run(bind(listen).await?, base_url, shutdown_signal()).await?;
                anyhow::Ok(())
            })?;
        }
        (
            Some(Command::Demo {
                config: path,
                base_url,
            }),
            _,
        ) => {
            let config = load(&path)?;
            ordergate::telemetry::log::init(&config.log);
            notes(&config);
            runtime(config.server.workers)?.block_on(async {
                let upstream = config.upstream.url.authority().as_str().to_owned();
                let addr: SocketAddr = upstream.parse().with_context(|| {
                    format!("upstream.url host `{upstream}` must be an ip:port for the demo")
                })?;
                let base_url = base_url.or_else(|| {
                    config
                        .upstream
                        .rewrite_bases
                        .first()
                        .map(|b| b.as_str().to_owned())
                });
                let backend = ordergate::backend::Backend::start(bind(addr).await?, base_url)?;
                tracing::info!(listen = %backend.addr, base = backend.state.base(), "emulated orders backend is serving");
                serve(config, path).await
            })?;
        }
        (None, Some(path)) => {
            let config = load(&path)?;
            ordergate::telemetry::log::init(&config.log);
            notes(&config);
            runtime(config.server.workers)?.block_on(serve(config, path))?;
        }
        (None, None) => anyhow::bail!(
            "give --config PATH (see config/ordergate.toml), or a subcommand; --help tells more"
        ),
    }
    Ok(std::process::ExitCode::SUCCESS)
}

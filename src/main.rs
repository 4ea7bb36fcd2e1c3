//! The `ordergate` command: run the gateway, the emulated backend, or both.

use anyhow::Context;
use clap::{Parser, Subcommand};
use ordergate::config::{Config, LogConfig};
use std::net::SocketAddr;
use std::path::PathBuf;
use tokio::net::TcpListener;

/// mimalloc serves the many small, short-lived allocations of a request
/// (header maps, body chunks, futures) in a fraction of the instructions of
/// the system allocator, and returns memory per thread without contention
/// (BENCHMARKS.md has the figures).
#[global_allocator]
static ALLOCATOR: mimalloc::MiMalloc = mimalloc::MiMalloc;

#[derive(Parser)]
#[command(
    version = VERSION,
    about = "An HTTP gateway for the legacy orders API",
    arg_required_else_help = true
)]
struct Cli {
    /// Run the gateway with this TOML configuration file (every key is
    /// described in config/ordergate.toml; ORDERGATE_<SECTION>__<KEY>
    /// variables override it).
    #[arg(long, short, value_name = "FILE")]
    config: Option<PathBuf>,
    #[command(subcommand)]
    command: Option<Command>,
}

/// The version, with the commit it was built from when known.
const VERSION: &str = concat!(
    env!("CARGO_PKG_VERSION"),
    " (commit ",
    env!("BUILD_GIT_COMMIT"),
    ")"
);

#[derive(Subcommand)]
enum Command {
    /// Run the emulated legacy orders backend.
    EmulateBackend {
        /// Address and port to serve on.
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
        /// The gateway's TOML configuration file (config/demo.toml is
        /// made for this); its upstream.url says where the backend listens.
        #[arg(long, short, value_name = "FILE")]
        config: PathBuf,
        /// The backend's internal base URL (default: the first of
        /// upstream.rewrite_bases, else the upstream URL).
        #[arg(long)]
        base_url: Option<String>,
    },
    /// Check a configuration file: print every problem with its key (exit
    /// status 1), or a one-line summary (exit status 0).
    Check {
        /// The TOML configuration file to check, with this environment's
        /// ORDERGATE_* overrides applied.
        #[arg(long, short, value_name = "FILE")]
        config: PathBuf,
    },
    /// Ask a health endpoint (the admin listener's /healthz): exit status 0
    /// when it answers 2xx, 1 otherwise. For container health checks.
    Health {
        /// The URL to ask (http:// only).
        #[arg(long, default_value = "http://127.0.0.1:9901/healthz")]
        url: String,
        /// Seconds to wait for the answer.
        #[arg(long, default_value_t = 5)]
        timeout_secs: u64,
    },
    /// Print a shell completion script to stdout, e.g.
    /// `ordergate completions bash > /etc/bash_completion.d/ordergate`.
    Completions {
        /// The shell to write it for.
        shell: clap_complete::Shell,
    },
    /// Print the manual page (roff) to stdout, e.g. `ordergate man > ordergate.1`.
    Man,
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

/// Every problem of a file on one line, naming the file.
fn problems_line(path: &std::path::Path, problems: &[ordergate::config::ConfigError]) -> String {
    let file = path.display().to_string();
    let each: Vec<String> = problems
        .iter()
        .map(|p| {
            if p.key == file {
                p.reason.clone()
            } else {
                p.to_string()
            }
        })
        .collect();
    format!("{file}: {}", each.join("; "))
}

fn load(path: &std::path::Path) -> anyhow::Result<Config> {
    Config::check_file(path).map_err(|problems| anyhow::anyhow!(problems_line(path, &problems)))
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
            let workers = match (c.server.per_core_workers(), c.server.workers) {
                (Some(n), _) => format!("per_core x{n}"),
                (None, Some(n)) => format!("shared x{n}"),
                (None, None) => "shared".to_owned(),
            };
            println!(
                "{}: ok: {} listener(s) ({tls} TLS), upstream {}, store {store}, {} rate-limit rule(s), admin {}, workers {workers}",
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
                if p.key == path.display().to_string() {
                    println!("{}: {}", path.display(), p.reason);
                } else {
                    println!("{}: {p}", path.display());
                }
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

/// The runtime of the gateway's configuration: in `per_core` mode, the
/// main thread's, for the admin endpoints, reloads and signals (each worker
/// has its own); else [`runtime`] with `server.workers`.
fn gateway_runtime(config: &Config) -> anyhow::Result<tokio::runtime::Runtime> {
    match config.server.worker_mode {
        ordergate::config::WorkerMode::PerCore => runtime(Some(1)),
        ordergate::config::WorkerMode::Shared => runtime(config.server.workers),
    }
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

/// `ordergate health`: one GET, 2xx or not.
fn health(url: &str, timeout: std::time::Duration) -> anyhow::Result<()> {
    let uri: http::Uri = url
        .parse()
        .with_context(|| format!("`{url}` is not a URL"))?;
    if uri.scheme() != Some(&http::uri::Scheme::HTTP) {
        anyhow::bail!("`{url}`: only http:// URLs");
    }
    let rt = tokio::runtime::Builder::new_current_thread()
        .enable_all()
        .build()
        .context("cannot start the runtime")?;
    let status = rt.block_on(async {
        let client =
            hyper_util::client::legacy::Client::builder(hyper_util::rt::TokioExecutor::new())
                .build_http::<http_body_util::Empty<bytes::Bytes>>();
        tokio::time::timeout(timeout, client.get(uri))
            .await
            .map_err(|_| anyhow::anyhow!("{url}: no answer within {} s", timeout.as_secs()))?
            .map_err(|_| anyhow::anyhow!("{url}: cannot connect"))
            .map(|r| r.status())
    })?;
    if !status.is_success() {
        anyhow::bail!("{url}: answered {status}");
    }
    println!("{url}: {status}");
    Ok(())
}

/// An error and its causes on one line, each cause said once (a cause
/// whose text the line already holds is left out).
fn one_line(e: &anyhow::Error) -> String {
    let mut line = String::new();
    for cause in e.chain() {
        let text = cause.to_string();
        if !line.contains(&text) {
            if !line.is_empty() {
                line.push_str(": ");
            }
            line.push_str(&text);
        }
    }
    line.replace('\n', " ")
}

fn main() -> std::process::ExitCode {
    // mimalloc asks for transparent huge pages on its arenas, where the
    // kernel allows them on request (`madvise`, Debian's default): every
    // 2 MiB region touched then counts whole in RSS, about 8 MiB idle and
    // 20 MiB more at 1,000 connections, for a heap that is small and
    // short-lived. Without them it takes pages as it touches them.
    #[cfg(target_os = "linux")]
    let _ = rustix::thread::disable_transparent_huge_pages(true);
    let cli = match Cli::try_parse() {
        Ok(cli) => cli,
        Err(e) => {
            use clap::error::ErrorKind;
            if matches!(
                e.kind(),
                ErrorKind::DisplayHelp
                    | ErrorKind::DisplayVersion
                    | ErrorKind::DisplayHelpOnMissingArgumentOrSubcommand
            ) {
                e.exit();
            }
            // clap's first line says what is wrong; its usage block is what
            // --help prints.
            let rendered = e.render().to_string();
            let first = rendered.lines().next().unwrap_or("bad arguments");
            let first = first.strip_prefix("error: ").unwrap_or(first);
            eprintln!("error: {first} (see ordergate --help)");
            return std::process::ExitCode::from(2);
        }
    };
    match run_command(cli) {
        Ok(code) => code,
        Err(e) => {
            // Display, not Debug: a user error is one line, never a backtrace.
            eprintln!("error: {}", one_line(&e));
            std::process::ExitCode::FAILURE
        }
    }
}

fn run_command(cli: Cli) -> anyhow::Result<std::process::ExitCode> {
    use clap::CommandFactory;
    match (cli.command, cli.config) {
        (Some(Command::Check { config }), _) => return Ok(check(&config)),
        (Some(Command::Health { url, timeout_secs }), _) => {
            health(&url, std::time::Duration::from_secs(timeout_secs))?;
        }
        (Some(Command::Completions { shell }), _) => {
            clap_complete::generate(
                shell,
                &mut Cli::command(),
                "ordergate",
                &mut std::io::stdout(),
            );
        }
        (Some(Command::Man), _) => {
            clap_mangen::Man::new(Cli::command())
                .render(&mut std::io::stdout())
                .context("cannot write the manual page")?;
        }
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
            gateway_runtime(&config)?.block_on(async {
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
            gateway_runtime(&config)?.block_on(serve(config, path))?;
        }
        (None, None) => anyhow::bail!(
            "give --config FILE (see config/ordergate.toml), or a subcommand; --help tells more"
        ),
    }
    Ok(std::process::ExitCode::SUCCESS)
}

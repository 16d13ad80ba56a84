//! The `chat-server` binary: load the configuration, start logging, serve until told to stop.

use std::process::ExitCode;

use chat_server::config;
use chat_server::startup::Application;
use chat_server::telemetry;

const USAGE: &str = "usage: chat-server [serve | migrate]\n\n  serve    run the server (the default); pending \
migrations are applied first\n  migrate  apply pending database migrations and exit\n  health   ask the server on HOST:PORT for /health; exit 0 when it is \
healthy (for container health checks)\n\nConfiguration comes from the \
environment, a .env file in the working directory, and the TOML file named by CONFIG_FILE; see the README.";

/// Reads `./.env` into the environment without overriding variables that are already set.
fn load_dotenv() -> Result<(), String> {
    match dotenvy::from_path(".env") {
        Ok(()) => Ok(()),
        Err(dotenvy::Error::Io(err)) if err.kind() == std::io::ErrorKind::NotFound => Ok(()),
        Err(err) => Err(format!(".env: {err}")),
    }
}

/// `chat-server health`: GET /health on this machine's server, for container health checks.
fn health_check() -> ExitCode {
    use std::io::{Read, Write};
    let _ = load_dotenv();
    let host = std::env::var("HOST").ok().filter(|h| !h.is_empty() && h != "0.0.0.0" && h != "::");
    let host = host.unwrap_or_else(|| "127.0.0.1".to_owned());
    let port = std::env::var("PORT").unwrap_or_else(|_| "8000".to_owned());
    let answer = (|| -> std::io::Result<String> {
        let address = std::net::ToSocketAddrs::to_socket_addrs(&(host.as_str(), port.parse::<u16>().unwrap_or(8000)))?
            .next()
            .ok_or_else(|| std::io::Error::other("no address"))?;
        let timeout = std::time::Duration::from_secs(3);
        let mut stream = std::net::TcpStream::connect_timeout(&address, timeout)?;
        stream.set_read_timeout(Some(timeout))?;
        stream.write_all(format!("GET /health HTTP/1.1\r\nHost: {host}\r\nConnection: close\r\n\r\n").as_bytes())?;
        let mut response = String::new();
        stream.read_to_string(&mut response)?;
        Ok(response)
    })();
    match answer {
        Ok(response) if response.starts_with("HTTP/1.1 200") => ExitCode::SUCCESS,
        Ok(response) => {
            eprintln!("unhealthy: {}", response.lines().last().unwrap_or_default());
            ExitCode::FAILURE
        }
        Err(err) => {
            eprintln!("unhealthy: {host}:{port}: {err}");
            ExitCode::FAILURE
        }
    }
}

#[actix_web::main]
async fn main() -> ExitCode {
    chat_server::memory::fix_mmap_threshold();
    let args: Vec<String> = std::env::args().skip(1).collect();
    let migrate_only = match args.iter().map(String::as_str).collect::<Vec<_>>().as_slice() {
        [] | ["serve"] => false,
        ["migrate"] => true,
        ["health"] => return health_check(),
        ["--version"] => {
            eprintln!("chat-server {}", env!("CARGO_PKG_VERSION"));
            return ExitCode::SUCCESS;
        }
        ["-h" | "--help" | "help"] => {
            eprintln!("{USAGE}");
            return ExitCode::SUCCESS;
        }
        _ => {
            eprintln!("{USAGE}");
            return ExitCode::from(2);
        }
    };
    if let Err(problem) = load_dotenv() {
        eprintln!("invalid configuration:\n  - {problem}");
        return ExitCode::from(2);
    }
    let loaded = match config::load(&|name| std::env::var(name).ok()) {
        Ok(loaded) => loaded,
        Err(err) => {
            eprint!("{err}");
            return ExitCode::from(2);
        }
    };
    telemetry::init(&loaded.settings.log);
    for warning in &loaded.warnings {
        tracing::warn!("{warning}");
    }
    if migrate_only {
        return match chat_server::startup::migrate(&loaded.settings) {
            Ok(applied) => {
                tracing::info!(applied, "the database is up to date");
                ExitCode::SUCCESS
            }
            Err(err) => {
                tracing::error!(error = %err, "migration failed");
                eprintln!("migration failed: {err}");
                ExitCode::FAILURE
            }
        };
    }
    let env = loaded.settings.app_env;
    let app = match Application::build(loaded.settings) {
        Ok(app) => app,
        Err(err) => {
            tracing::error!(error = %err, "start-up failed");
            eprintln!("start-up failed: {err}");
            return ExitCode::FAILURE;
        }
    };
    tracing::info!(environment = ?env, "listening on http://{}", app.address());
    if let Some(address) = app.metrics_address() {
        tracing::info!("metrics on http://{address}/metrics");
    }
    match app.run_until_stopped().await {
        Ok(()) => {
            tracing::info!("server stopped");
            ExitCode::SUCCESS
        }
        Err(err) => {
            tracing::error!(error = %err, "server failed");
            ExitCode::FAILURE
        }
    }
}

/// The server's own allocations go to jemalloc, whose size classes keep a long-running heap from fragmenting: chat
/// at saturation went from 2,180-2,637 to 2,587-3,149 req/s in four alternating runs (`chat-bench --scenarios chat
/// --duration 5`). Its options are built in from `.cargo/config.toml` (`JEMALLOC_SYS_WITH_MALLOC_CONF`), its
/// per-thread caches among them turned off; an operator may override them with `_RJEM_MALLOC_CONF`.
/// SQLite, a C library, still allocates from glibc (see `memory.rs`).
#[cfg(not(target_env = "msvc"))]
#[global_allocator]
static ALLOCATOR: tikv_jemallocator::Jemalloc = tikv_jemallocator::Jemalloc;

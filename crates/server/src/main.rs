//! The `chat-server` binary: load the configuration, start logging, serve until told to stop.

use std::process::ExitCode;

use chat_server::config;
use chat_server::startup::Application;
use chat_server::telemetry;

const USAGE: &str = "usage: chat-server [serve]\n\nConfiguration comes from the environment, a .env file in the \
working directory, and the TOML file named by CONFIG_FILE; see the README.";

/// Reads `./.env` into the environment without overriding variables that are already set.
fn load_dotenv() -> Result<(), String> {
    match dotenvy::from_path(".env") {
        Ok(()) => Ok(()),
        Err(dotenvy::Error::Io(err)) if err.kind() == std::io::ErrorKind::NotFound => Ok(()),
        Err(err) => Err(format!(".env: {err}")),
    }
}

#[actix_web::main]
async fn main() -> ExitCode {
    let args: Vec<String> = std::env::args().skip(1).collect();
    match args.iter().map(String::as_str).collect::<Vec<_>>().as_slice() {
        [] | ["serve"] => {}
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
    }
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

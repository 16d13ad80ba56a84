//! Building the application from settings: database, secrets, hasher, tokens, and the bound HTTP server.

use std::net::{SocketAddr, TcpListener};
use std::path::PathBuf;
use std::time::Duration;

use actix_web::dev::Server;
use actix_web::middleware::from_fn;
use actix_web::{App, HttpServer, web};
use chat_auth::{PasswordHasher, TokenKeys, TokenSettings, secret_file};
use chat_service::{ChatService, ChatSettings, GenerationSettings};
use llm_providers::router::Router;

use crate::dto::ModelResponse;
use chat_storage::{Database, PoolOptions};

use crate::browser::browser_safety;
use crate::config::Settings;
use crate::limits::Limits;
use crate::metrics::Metrics;
use crate::middleware::request_context;
use crate::routes;
use crate::state::AppState;

/// How long requests still in flight may take once running replies are done or interrupted at shutdown.
const REQUESTS_AFTER_GRACE: Duration = Duration::from_secs(5);

/// The blocking threads each HTTP worker's runtime may start. Database calls and password hashes run on threads
/// of their own (`chat-storage`, `chat-auth`); what is left here is rare, such as resolving a provider's host name
/// when a connection to it opens.
const WORKER_BLOCKING_THREADS: usize = 2;

/// Why the server could not start; each names its cause for the operator.
#[derive(Debug, thiserror::Error)]
pub enum StartupError {
    #[error("database: {0}")]
    Database(#[from] chat_storage::StorageError),
    #[error("database: {0}")]
    Recovery(#[from] chat_service::ServiceError),
    #[error("development JWT secret at {path}: {source}")]
    DevSecret { path: PathBuf, source: std::io::Error },
    #[error("password hasher: {0}")]
    Hasher(#[from] chat_auth::AuthError),
    #[error("cannot listen on {address}: {source}")]
    Bind { address: String, source: std::io::Error },
    #[error("model providers: {0}")]
    Models(String),
    #[error("http server: {0}")]
    Server(#[source] std::io::Error),
}

/// A server bound to its port, ready to run.
pub struct Application {
    address: SocketAddr,
    server: Server,
    /// The server of `GET /metrics` on `METRICS_ADDRESS`, and its address.
    metrics: Option<(SocketAddr, Server)>,
    service: ChatService,
    /// How long running replies may take to finish after a shutdown signal.
    grace: Duration,
}

impl std::fmt::Debug for Application {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("Application").field("address", &self.address).finish_non_exhaustive()
    }
}

/// What `GET /models` shows: each alias's first usable target, or its configured first target when
/// none is usable.
fn models_of(router: &Router, settings: &Settings) -> Vec<ModelResponse> {
    router
        .aliases()
        .iter()
        .map(|alias| {
            let default = alias.name == settings.chat.default_model;
            match alias.targets.first() {
                Some(target) => ModelResponse {
                    alias: alias.name.clone(),
                    provider: target.provider.name().to_owned(),
                    model: target.model.clone(),
                    available: true,
                    default,
                    context_window: target.context_window,
                },
                None => {
                    let configured =
                        settings.llm.aliases.iter().find(|a| a.name == alias.name).and_then(|a| a.targets.first());
                    ModelResponse {
                        alias: alias.name.clone(),
                        provider: configured.map_or_else(String::new, |t| t.provider.clone()),
                        model: configured.map_or_else(String::new, |t| t.model.clone()),
                        available: false,
                        default,
                        context_window: configured.map_or(0, |t| t.context_window),
                    }
                }
            }
        })
        .collect()
}

fn cores() -> usize {
    std::thread::available_parallelism().map_or(2, usize::from)
}

fn task_failed(err: tokio::task::JoinError) -> StartupError {
    StartupError::Server(std::io::Error::other(err.to_string()))
}

/// Resolves on SIGTERM or Ctrl-C (SIGINT).
async fn shutdown_signal() {
    let interrupt = tokio::signal::ctrl_c();
    #[cfg(unix)]
    {
        let terminate = async {
            match tokio::signal::unix::signal(tokio::signal::unix::SignalKind::terminate()) {
                Ok(mut signal) => {
                    signal.recv().await;
                }
                Err(err) => {
                    tracing::error!(error = %err, "cannot listen for SIGTERM; only Ctrl-C stops the server");
                    std::future::pending::<()>().await;
                }
            }
        };
        tokio::select! {
            _ = interrupt => {}
            () = terminate => {}
        }
    }
    #[cfg(not(unix))]
    {
        let _ = interrupt.await;
    }
}

fn pool_options(settings: &Settings, exclusive: bool) -> PoolOptions {
    PoolOptions {
        max_connections: settings.database.max_connections,
        acquire_timeout: settings.database.acquire_timeout,
        busy_timeout: settings.database.busy_timeout,
        synchronous: settings.database.sqlite_synchronous,
        exclusive,
    }
}

/// `chat-server migrate`: applies pending migrations to the configured database over one connection (no pool,
/// whose threads could still be connecting when the process exits); returns how many ran.
pub fn migrate(settings: &Settings) -> Result<usize, StartupError> {
    Ok(Database::migrate_alone(&settings.database.url, &pool_options(settings, true))?)
}

impl Application {
    /// Opens the database (running migrations), resolves the JWT secret and binds the listener.
    /// Blocking work here happens once, before any request is served.
    pub fn build(settings: Settings) -> Result<Self, StartupError> {
        let db = Database::open(&settings.database.url, &pool_options(&settings, true))?;
        tracing::info!(database = %db.location(), "database ready");

        let secret = match settings.auth.jwt_secret_key.clone() {
            Some(secret) => secret,
            None => {
                let location = db.location();
                let path = location.directory().join(format!("{}.jwt-secret", location.file_name()));
                let (secret, created) = secret_file::load_or_create(&path)
                    .map_err(|source| StartupError::DevSecret { path: path.clone(), source })?;
                tracing::warn!(
                    path = %path.display(),
                    created,
                    "development mode: JWT secret kept beside the database; set JWT_SECRET_KEY in production"
                );
                secret
            }
        };
        let tokens = TokenKeys::new(&TokenSettings {
            secret,
            algorithm: settings.auth.jwt_algorithm,
            lifetime: chrono::Duration::minutes(settings.auth.access_token_expire_minutes),
            issuer: settings.auth.jwt_issuer.clone(),
            audience: settings.auth.jwt_audience.clone(),
        });
        // By default hashing may take half the cores: a flood of logins slows logins, not chats.
        let hashes = match settings.auth.max_concurrent_hashes {
            0 => (cores() / 2).max(1),
            n => n,
        };
        let hasher = PasswordHasher::new(settings.auth.bcrypt_cost, hashes)?;

        let built = llm_providers::registry::build(&settings.llm).map_err(StartupError::Models)?;
        for note in &built.notes {
            tracing::info!("{note}");
        }
        let models = models_of(&built.router, &settings);
        let chat = ChatSettings {
            refresh_token_lifetime: chrono::Duration::days(settings.auth.refresh_token_expire_days),
            daily_token_budget: Some(settings.chat.daily_token_budget).filter(|&budget| budget > 0),
            system_prompt: settings.chat.system_prompt.clone(),
            default_model: settings.chat.default_model.clone(),
            generation: GenerationSettings {
                flush_interval: settings.chat.flush_interval,
                resume_window: settings.chat.resume_window,
                lease: settings.chat.generation_lease,
                max_per_user: settings.chat.max_replies_per_user,
                ..GenerationSettings::default()
            },
        };
        let service = ChatService::new(db, hasher, tokens, built.router, chat);
        let interrupted = service.recover_interrupted()?;
        if interrupted > 0 {
            tracing::warn!(replies = interrupted, "replies left generating by the previous run are marked interrupted");
        }
        service.start_background();
        let state = web::Data::new(AppState {
            service: service.clone(),
            max_body_bytes: settings.server.max_body_bytes,
            max_message_chars: settings.chat.max_message_chars,
            default_model: settings.chat.default_model.clone(),
            keep_alive: settings.chat.keep_alive,
            models,
            cors: settings.server.cors.clone(),
            metrics: std::sync::Arc::new(Metrics::default()),
            metrics_elsewhere: settings.server.metrics_address.is_some(),
            limits: std::sync::Arc::new(Limits::new(
                settings.server.auth_rate_limit_per_minute,
                settings.server.reply_rate_limit_per_minute,
                settings.server.client_ip_header.clone(),
            )),
        });
        let address = format!("{}:{}", settings.server.host, settings.server.port);
        let listener =
            TcpListener::bind(&address).map_err(|source| StartupError::Bind { address: address.clone(), source })?;
        let bound = listener.local_addr().map_err(|source| StartupError::Bind { address, source })?;
        let workers = match settings.server.workers {
            0 => cores(),
            n => n,
        };
        let metrics = match &settings.server.metrics_address {
            Some(address) => Some(metrics_server(address, state.clone())?),
            None => None,
        };
        let server = HttpServer::new(move || {
            App::new()
                .app_data(state.clone())
                .wrap(from_fn(browser_safety))
                .wrap(from_fn(request_context))
                .configure(routes::configure)
        })
        .workers(workers)
        .worker_max_blocking_threads(WORKER_BLOCKING_THREADS)
        // Streamed events are small writes: Nagle's algorithm would hold each one back for the
        // client's delayed ACK.
        .tcp_nodelay(true)
        // Signals are handled in `run_until_stopped`, so that running replies get their grace period
        // first; by then requests still in flight are short ones, given this long to finish.
        .disable_signals()
        .shutdown_timeout(REQUESTS_AFTER_GRACE.as_secs())
        .listen(listener)
        .map_err(StartupError::Server)?
        .run();
        Ok(Self { address: bound, server, metrics, service, grace: settings.server.shutdown_timeout })
    }

    pub fn address(&self) -> SocketAddr {
        self.address
    }

    /// Where `GET /metrics` is served, when on an address of its own.
    pub fn metrics_address(&self) -> Option<SocketAddr> {
        self.metrics.as_ref().map(|(address, _)| *address)
    }

    /// Serves until SIGTERM or Ctrl-C. Then no new reply starts, running replies get the grace period
    /// to finish (and are stored as `interrupted` after it), and in-flight requests finish within the
    /// shutdown timeout.
    pub async fn run_until_stopped(self) -> Result<(), StartupError> {
        let Self { server, service, grace, metrics, .. } = self;
        let handle = server.handle();
        // The server runs as its own task: it must keep running while the replies are given their grace.
        let mut serving = actix_rt::spawn(server);
        let metrics = metrics.map(|(_, metrics)| {
            let handle = metrics.handle();
            (handle, actix_rt::spawn(metrics))
        });
        crate::memory::release_after_start_up_and_periodically();
        tokio::select! {
            stopped = &mut serving => return stopped.map_err(task_failed)?.map_err(StartupError::Server),
            () = shutdown_signal() => {}
        }
        tracing::info!(grace_seconds = grace.as_secs(), "shutting down: running replies may finish first");
        let interrupted = service.shutdown(grace).await;
        if interrupted > 0 {
            tracing::warn!(
                replies = interrupted,
                "replies still running after the grace period were stored as interrupted"
            );
        }
        handle.stop(true).await;
        if let Some((handle, serving)) = metrics {
            handle.stop(true).await;
            let _ = serving.await;
        }
        serving.await.map_err(task_failed)?.map_err(StartupError::Server)
    }
}

/// The server of `GET /metrics` alone, on `address`, with one worker.
fn metrics_server(address: &str, state: web::Data<AppState>) -> Result<(SocketAddr, Server), StartupError> {
    let listener =
        TcpListener::bind(address).map_err(|source| StartupError::Bind { address: address.to_owned(), source })?;
    let bound = listener.local_addr().map_err(|source| StartupError::Bind { address: address.to_owned(), source })?;
    let server = HttpServer::new(move || {
        App::new().app_data(state.clone()).route("/metrics", web::get().to(crate::metrics::metrics_only))
    })
    .workers(1)
    .disable_signals()
    .shutdown_timeout(1)
    .listen(listener)
    .map_err(StartupError::Server)?
    .run();
    Ok((bound, server))
}

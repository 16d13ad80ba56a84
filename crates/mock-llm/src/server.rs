//! The running mock: the actix server on its own thread, and the handle tests and the binary drive it through.

use std::net::{Ipv4Addr, SocketAddr, TcpListener};
use std::num::NonZeroUsize;
use std::sync::Arc;
use std::thread::JoinHandle;
use std::time::Duration;

use actix_web::dev::ServerHandle;
use actix_web::{App, HttpServer, web};
use serde::Serialize;

use crate::behaviour::{Behaviour, Defaults};
use crate::error::MockError;
use crate::state::{RecordedRequest, Shared};
use crate::{reset, routes};

/// A mock LLM server. It runs on its own thread with its own actix system, so any caller works: a plain `#[test]`,
/// `#[tokio::test]` or `#[actix_web::test]`. Dropping the handle stops the server and closes its connections.
#[derive(Debug)]
pub struct MockLlm {
    addr: SocketAddr,
    shared: Arc<Shared>,
    server: ServerHandle,
    thread: Option<JoinHandle<()>>,
}

/// How the server thread reports that it is serving (or why it is not).
type Ready = Box<dyn FnOnce(Result<ServerHandle, MockError>) + Send>;

impl MockLlm {
    /// Starts a mock on `127.0.0.1` at a free port, with no latency, no pacing and the default reply.
    pub async fn start() -> Result<Self, MockError> {
        Self::start_with(Defaults::default()).await
    }

    /// Starts a mock on `127.0.0.1` at a free port with the given process-wide defaults.
    pub async fn start_with(defaults: Defaults) -> Result<Self, MockError> {
        let listener = local_listener()?;
        let (sender, receiver) = tokio::sync::oneshot::channel();
        let ready: Ready = Box::new(move |started| {
            // The receiver is gone only if the caller stopped waiting; the server then stops with its handle.
            let _ = sender.send(started);
        });
        let spawned = spawn(listener, defaults, NonZeroUsize::MIN, ready)?;
        let started = receiver.await.map_err(|_| MockError::Thread("ended before serving".to_owned()));
        spawned.into_mock(started.and_then(|started| started))
    }

    /// [`MockLlm::start`] for synchronous callers.
    pub fn start_blocking() -> Result<Self, MockError> {
        Self::start_with_blocking(Defaults::default())
    }

    /// [`MockLlm::start_with`] for synchronous callers.
    pub fn start_with_blocking(defaults: Defaults) -> Result<Self, MockError> {
        Self::serve_blocking(local_listener()?, defaults, NonZeroUsize::MIN)
    }

    /// Serves on an already bound listener with `workers` worker threads, blocking until it is serving. This is what
    /// the binary runs; [`MockLlm::wait`] then blocks until the server ends.
    pub fn serve_blocking(listener: TcpListener, defaults: Defaults, workers: NonZeroUsize) -> Result<Self, MockError> {
        let (sender, receiver) = std::sync::mpsc::sync_channel(1);
        let ready: Ready = Box::new(move |started| {
            let _ = sender.send(started);
        });
        let spawned = spawn(listener, defaults, workers, ready)?;
        let started = receiver.recv().map_err(|_| MockError::Thread("ended before serving".to_owned()));
        spawned.into_mock(started.and_then(|started| started))
    }

    /// `http://127.0.0.1:PORT`, without a trailing slash: append `/v1/chat/completions` or `/v1/messages`.
    pub fn base_url(&self) -> String {
        format!("http://{}", self.addr)
    }

    /// The address the server listens on.
    pub fn addr(&self) -> SocketAddr {
        self.addr
    }

    /// Appends behaviours to the script queue; each provider request takes the next one. Accepts [`Behaviour`]s or
    /// their JSON form (`serde_json::json!({"kind": "status", "status": 429})`). Nothing is queued unless all are
    /// valid.
    pub async fn script<T: Serialize>(&self, behaviours: impl IntoIterator<Item = T>) -> Result<(), MockError> {
        self.script_blocking(behaviours)
    }

    /// [`MockLlm::script`] for synchronous callers (it never waits on anything but a short lock).
    pub fn script_blocking<T: Serialize>(&self, behaviours: impl IntoIterator<Item = T>) -> Result<(), MockError> {
        let parsed = behaviours
            .into_iter()
            .enumerate()
            .map(|(index, behaviour)| {
                let value = serde_json::to_value(behaviour)
                    .map_err(|err| MockError::InvalidBehaviour { index, reason: err.to_string() })?;
                Behaviour::from_json(index, value)
            })
            .collect::<Result<Vec<_>, _>>()?;
        self.shared.push_script(parsed);
        Ok(())
    }

    /// Every provider request received since start or the last reset, in order.
    pub async fn requests(&self) -> Vec<RecordedRequest> {
        self.requests_blocking()
    }

    /// [`MockLlm::requests`] for synchronous callers.
    pub fn requests_blocking(&self) -> Vec<RecordedRequest> {
        self.shared.requests()
    }

    /// Clears the script queue and the recorded requests; sequence numbers start again at 1.
    pub async fn reset(&self) {
        self.reset_blocking();
    }

    /// [`MockLlm::reset`] for synchronous callers.
    pub fn reset_blocking(&self) {
        self.shared.reset();
    }

    /// Waits until `done` holds for the recorded requests, re-checking on every change (no polling interval), and
    /// returns them; [`MockError::Timeout`] after `timeout`. Needs a Tokio runtime with its timer, as
    /// `#[tokio::test]` and `#[actix_web::test]` provide.
    pub async fn wait_for_requests(
        &self,
        timeout: Duration,
        done: impl FnMut(&[RecordedRequest]) -> bool,
    ) -> Result<Vec<RecordedRequest>, MockError> {
        self.shared.wait(timeout, done).await
    }

    /// [`MockLlm::wait_for_requests`] for synchronous callers; needs no runtime.
    pub fn wait_for_requests_blocking(
        &self,
        timeout: Duration,
        done: impl FnMut(&[RecordedRequest]) -> bool,
    ) -> Result<Vec<RecordedRequest>, MockError> {
        self.shared.wait_blocking(timeout, done)
    }

    /// Blocks until the server thread ends, which for the binary is until the process is told to stop.
    pub fn wait(mut self) -> Result<(), MockError> {
        match self.thread.take() {
            Some(thread) => thread.join().map_err(|_| MockError::Thread("the server thread panicked".to_owned())),
            None => Ok(()),
        }
    }
}

impl Drop for MockLlm {
    fn drop(&mut self) {
        // The stop command is sent when `stop` is called; the returned future only waits for it to complete, which
        // a destructor must not do (it may run on an async runtime's thread).
        let _completion = self.server.stop(false);
    }
}

fn local_listener() -> Result<TcpListener, MockError> {
    TcpListener::bind((Ipv4Addr::LOCALHOST, 0)).map_err(MockError::Listen)
}

/// A server thread that was started, before it reported whether it is serving.
#[derive(Debug)]
struct Spawned {
    addr: SocketAddr,
    shared: Arc<Shared>,
    thread: JoinHandle<()>,
}

impl Spawned {
    fn into_mock(self, started: Result<ServerHandle, MockError>) -> Result<MockLlm, MockError> {
        Ok(MockLlm { addr: self.addr, shared: self.shared, server: started?, thread: Some(self.thread) })
    }
}

/// Starts the server thread; `ready` hears from it once the server is running or has failed to start.
fn spawn(listener: TcpListener, defaults: Defaults, workers: NonZeroUsize, ready: Ready) -> Result<Spawned, MockError> {
    defaults.validate().map_err(MockError::InvalidDefaults)?;
    let addr = listener.local_addr().map_err(MockError::Listen)?;
    let shared = Arc::new(Shared::new(defaults));
    let data = web::Data::from(Arc::clone(&shared));
    let thread = std::thread::Builder::new()
        .name(format!("mock-llm-{}", addr.port()))
        .spawn(move || {
            actix_web::rt::System::new().block_on(async move {
                match build_server(listener, data, workers) {
                    Ok(server) => {
                        ready(Ok(server.handle()));
                        // An I/O error here can only be reported by the server's own logging; the thread just ends.
                        let _ = server.await;
                    }
                    Err(err) => ready(Err(MockError::Listen(err))),
                }
            });
        })
        .map_err(|err| MockError::Thread(err.to_string()))?;
    Ok(Spawned { addr, shared, thread })
}

fn build_server(
    listener: TcpListener,
    data: web::Data<Shared>,
    workers: NonZeroUsize,
) -> std::io::Result<actix_web::dev::Server> {
    let server = HttpServer::new(move || {
        App::new()
            .app_data(data.clone())
            .app_data(web::PayloadConfig::new(routes::MAX_BODY_BYTES))
            .configure(routes::configure)
    })
    .workers(workers.get())
    // The mock lives inside test processes: Ctrl-C belongs to them, not to the mock.
    .disable_signals()
    // Token pacing must not be blurred by Nagle's algorithm.
    .tcp_nodelay(true)
    // A client closing its side means it gave up: drop the connection, and with it the pending response, so
    // `disconnected` is recorded at once instead of on the next failed write.
    .h1_allow_half_closed(false)
    .shutdown_timeout(1)
    .on_connect(reset::on_connect)
    // HTTP/1.1, or HTTP/2 from the first byte (h2c) for clients that multiplex: thousands of
    // concurrent streams need not hold thousands of connections.
    .listen_auto_h2c(listener)?
    .run();
    Ok(server)
}

//! An emulation of the legacy orders API, for trying ordergate and for tests.
//!
//! A real HTTP server that behaves like the pages in the API reference closely
//! enough to walk every documented example: `POST /orders` (202, `Location`,
//! `Set-Cookie: OwnerId`), order status `new` → `Processing` → `Completed`
//! after a submit, `/quote`, `/account`, `/product/<id>`, validate and submit
//! with the documented faults, the exchange products that create an order as a
//! side effect (`PUT …/emailEncryption`) or create and submit it in one call
//! (`POST …/mailboxes`), and `OPTIONS` with CORS headers. Its links and
//! `Location`s use its own internal base URL, as the real one does.
//!
//! The gateway's modules never use this one.

mod routes;

use bytes::Bytes;
use http::{HeaderMap, Method};
use http_body_util::Full;
use hyper_util::rt::{TokioExecutor, TokioIo};
use hyper_util::server::conn::auto;
use std::collections::HashMap;
use std::future::Future;
use std::net::SocketAddr;
use std::sync::atomic::{AtomicU64, Ordering};
use std::sync::{Arc, Mutex};
use tokio::net::TcpListener;

/// A request as the backend saw it.
#[derive(Clone, Debug)]
pub struct Seen {
    pub method: Method,
    pub path: String,
    pub headers: HeaderMap,
}

#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum Status {
    New,
    Processing,
    Completed,
}

impl Status {
    pub fn as_str(self) -> &'static str {
        match self {
            Status::New => "new",
            Status::Processing => "Processing",
            Status::Completed => "Completed",
        }
    }
}

#[derive(Clone, Debug)]
pub struct Order {
    pub owner: String,
    pub status: Status,
    pub account: Option<serde_json::Value>,
    pub products: HashMap<String, serde_json::Value>,
    pub children: HashMap<String, serde_json::Value>,
}

/// The backend's state, shared with tests that want to look inside.
pub struct State {
    base: String,
    next_id: AtomicU64,
    orders: Mutex<HashMap<String, Order>>,
    seen: Mutex<Vec<Seen>>,
}

impl State {
    fn orders(&self) -> std::sync::MutexGuard<'_, HashMap<String, Order>> {
        self.orders.lock().unwrap_or_else(|p| p.into_inner())
    }

    /// Every request received so far.
    pub fn seen(&self) -> Vec<Seen> {
        self.seen.lock().unwrap_or_else(|p| p.into_inner()).clone()
    }

    /// How many requests matched `method` and `path` exactly.
    pub fn count(&self, method: &Method, path: &str) -> usize {
        self.seen
            .lock()
            .unwrap_or_else(|p| p.into_inner())
            .iter()
            .filter(|s| s.method == method && s.path == path)
            .count()
    }

    pub fn order(&self, id: &str) -> Option<Order> {
        self.orders().get(id).cloned()
    }

    /// Changes an order's status behind everyone's back, as a back-office
    /// tool would.
    pub fn set_status(&self, id: &str, status: Status) -> bool {
        self.orders()
            .get_mut(id)
            .map(|o| o.status = status)
            .is_some()
    }

    pub fn base(&self) -> &str {
        &self.base
    }

    fn new_id(&self) -> String {
        // Shaped like the upstream's ids: 40 hex digits.
        let n = self.next_id.fetch_add(1, Ordering::Relaxed);
        format!("00000145{:016x}{:016x}", rand_u64(), n)
    }
}

fn rand_u64() -> u64 {
    uuid::Uuid::new_v4().as_u64_pair().0
}

/// A running backend.
pub struct Backend {
    pub addr: SocketAddr,
    pub state: Arc<State>,
    task: tokio::task::JoinHandle<()>,
}

impl Backend {
    /// Starts the backend on `listener`; its own URLs use `base` (by default
    /// `http://<listener address>`).
    pub fn start(listener: TcpListener, base: Option<String>) -> std::io::Result<Self> {
        let addr = listener.local_addr()?;
        let state = Arc::new(State {
            base: base
                .unwrap_or_else(|| format!("http://{addr}"))
                .trim_end_matches('/')
                .to_owned(),
            next_id: AtomicU64::new(1),
            orders: Mutex::new(HashMap::new()),
            seen: Mutex::new(Vec::new()),
        });
        let task = tokio::spawn(serve(listener, Arc::clone(&state), std::future::pending()));
        Ok(Self { addr, state, task })
    }

    pub fn stop(&self) {
        self.task.abort();
    }
}

impl Drop for Backend {
    fn drop(&mut self) {
        self.task.abort();
    }
}

/// Serves the emulated API until `shutdown` completes.
pub async fn serve(listener: TcpListener, state: Arc<State>, shutdown: impl Future<Output = ()>) {
    tokio::pin!(shutdown);
    loop {
        let (stream, _) = tokio::select! {
            accepted = listener.accept() => match accepted {
                Ok(c) => c,
                Err(_) => continue,
            },
            () = &mut shutdown => return,
        };
        let state = Arc::clone(&state);
        tokio::spawn(async move {
            let svc = hyper::service::service_fn(move |req| {
                let state = Arc::clone(&state);
                async move { Ok::<_, std::convert::Infallible>(routes::handle(&state, req).await) }
            });
            let _ = auto::Builder::new(TokioExecutor::new())
                .serve_connection(TokioIo::new(stream), svc)
                .await;
        });
    }
}

/// Runs the backend as a process (`ordergate emulate-backend`).
pub async fn run(
    listener: TcpListener,
    base: Option<String>,
    shutdown: impl Future<Output = ()>,
) -> std::io::Result<()> {
    let backend = Backend::start(listener, base)?;
    tracing::info!(listen = %backend.addr, base = backend.state.base(), "emulated orders backend is serving");
    shutdown.await;
    backend.stop();
    Ok(())
}

type Resp = http::Response<Full<Bytes>>;

//! ordergate: an HTTP gateway for the legacy orders API.
//!
//! A request's path through the gateway, layer by layer ([`stack`] orders
//! them, outermost first):
//!
//! 1. [`server`] accepts the connection (HTTP/1.1 or HTTP/2, plain or TLS),
//!    reads bodiless HTTP/1.1 requests with its own codec (hyper the rest)
//!    and puts the connection's [`context::Peer`] on each request;
//! 2. [`telemetry`]'s request id: taken from the client or made, sent
//!    upstream, returned, and the `guid` of any fault;
//! 3. [`context`]: the request facts, worked out once (route, `OwnerId`
//!    cookie, client IP, TLS) and the access record, read by every later layer;
//!    [`telemetry::trace`] then opens the request's span when traces are on;
//! 4. [`telemetry::access_log`]: the access log line and the request metrics,
//!    for every answer as the client gets it;
//! 5. [`compress`]: answers compressed for clients that accept it;
//! 6. [`guards::cors`]: preflights answered, CORS headers on every answer;
//! 7. [`faults`]: every error answer below leaves in the one fault shape;
//! 8. [`guards::framing`]: one `Host` for HTTP/1.1, no `CONNECT` (400, 405);
//! 9. [`guards::rate_limit`]: GCRA quotas per rule (429), the cheapest refusal;
//! 10. [`guards::size`]: request head and body limits (431, 413, 408);
//! 11. [`orders`]: the orders API as a plan ([`orders::plan`]): the `/order`
//!     shorthand, implicit creation, one open order per owner, with
//!     associations in an [`owners`] store;
//! 12. [`upstream`]: forwarding over pooled connections, URLs rewritten to the
//!     public base on the way back, decoded if the upstream compressed.
//!
//! [`app::run`] serves the gateway on every configured listener and the admin
//! endpoints (metrics, health, the status page) on their own, and swaps in a new configuration
//! when one arrives on its reload channel (SIGHUP in the binary), without
//! dropping open connections. With `server.worker_mode = "per_core"` it
//! does so on [`workers`]: a thread per core, each with its own runtime,
//! listening sockets (SO_REUSEPORT) and stack.
//!
//! Several replicas scale out on one Redis ([`redis_pool`]): the owner store
//! ([`owners::RedisStore`]), creation leases ([`owners::lease`]) and
//! `scope = "global"` rate limits live there.
//!
//! [`backend`] is an emulation of the legacy orders API for trying the gateway
//! and for tests; the gateway's own modules never use it.

pub mod app;
pub mod backend;
pub mod body;
pub mod clock;
pub mod compress;
pub mod config;
pub mod context;
pub mod faults;
pub mod guards;
pub mod orders;
pub mod owners;
pub mod redis_pool;
pub mod route;
pub mod server;
pub mod spare;
pub mod stack;
pub mod systemd;
pub mod telemetry;
pub mod upstream;
pub mod workers;

pub use app::{Bound, StartError, open_store, redis_pool, run};

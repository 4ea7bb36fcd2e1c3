//! The orders phase: what ordergate knows about the orders API.
//!
//! Innermost service of the stack. For each request it
//! - resolves `/order[/…]` to the owner's open order (401 without a usable
//!   `OwnerId`, 404 when the owner has no open order and the call would not
//!   create one, 400 for paths that try to climb elsewhere);
//! - creates the order first for a `PUT`/`POST` to a shorthand child when the
//!   owner has none (single flight per owner) and sets the `OwnerId` cookies;
//! - answers `POST /orders` and `POST /order` with 409 when the owner's order
//!   is still `new` upstream;
//! - learns associations from 2xx answers with `Location: …/orders/<id>` and
//!   ends them on submit, delete, upstream 404 or a status other than `new`;
//! - forwards everything through [`Upstream`], rewriting URLs on the way back.

use crate::body::{self, Body};
use crate::config::{CookieConfig, SameSite};
use crate::faults::{self, GatewayError, JSON_UTF8, UpstreamError};
use crate::memo::Memo;
use crate::owners::{
    self, OrderId, OwnerId, OwnerStore, owner_from_headers, owner_from_set_cookie,
};
use crate::policy::lease::{self, Acquired};
use crate::policy::{self, CreationLocks, now_ms};
use crate::proxy::rewrite::Rewriter;
use crate::proxy::{Answer, ClientAddr, Upstream, finish_headers};
use crate::shorthand::{self, Route, explicit_path};
use crate::telemetry::RequestId;
use crate::telemetry::access_log::Record;
use crate::telemetry::trace;
use bytes::Bytes;
use http::header::{self, HeaderMap, HeaderName, HeaderValue};
use http::{Method, Request, Response, StatusCode};
use std::convert::Infallible;
use std::future::Future;
use std::pin::Pin;
use std::sync::Arc;
use std::task::{Context, Poll};
use std::time::Duration;

/// The orders phase as a tower service. Cheap to clone.
#[derive(Clone)]
pub struct OrdersService {
    shared: Arc<Orders>,
}

/// The state and logic behind [`OrdersService`].
pub struct Orders {
    upstream: Upstream,
    store: Arc<dyn OwnerStore>,
    locks: CreationLocks,
    cookies: CookieConfig,
    idle_expiry_ms: u64,
    max_request_body: u64,
    request_id_header: HeaderName,
    /// Longest wait for an owner's creation lease held by another replica.
    lease_wait: Duration,
    /// The last body read of each order and the view made of it, per route
    /// (shorthand or explicit): an order read again unchanged is not parsed
    /// again.
    views: Memo<(OrderId, bool), Arc<Seen>>,
}

/// Most orders whose last view is kept, and the largest body kept.
const VIEWS: usize = 2048;
const MAX_VIEWED_BODY: usize = 4096;

/// An order body as the upstream sent it, and the view made of it.
struct Seen {
    upstream: Bytes,
    view: View,
}

/// What the gateway makes of an order body.
#[derive(Clone)]
struct View {
    /// The body for the client.
    body: Bytes,
    /// The order is no longer `new`: its association ends.
    closed: bool,
    /// The body was rebuilt as JSON: its type is set.
    json: bool,
}

/// Headers of the client's request that go with calls the gateway makes on
/// its behalf (creating an order, checking one).
const DELEGATED: [HeaderName; 4] = [
    header::AUTHORIZATION,
    header::COOKIE,
    header::HOST,
    header::USER_AGENT,
];

/// What [`OrdersService`] needs beside the upstream and the store.
#[derive(Clone)]
pub struct OrdersSettings {
    pub cookies: CookieConfig,
    pub idle_expiry: Duration,
    pub max_request_body: u64,
    pub request_id_header: HeaderName,
    /// Longest wait for an owner's creation lease held by another replica:
    /// longer than a creation can take.
    pub lease_wait: Duration,
}

impl OrdersService {
    pub fn new(upstream: Upstream, store: Arc<dyn OwnerStore>, settings: OrdersSettings) -> Self {
        let OrdersSettings {
            cookies,
            idle_expiry,
            max_request_body,
            request_id_header,
            lease_wait,
        } = settings;
        Self {
            shared: Arc::new(Orders {
                upstream,
                store,
                locks: CreationLocks::default(),
                cookies,
                idle_expiry_ms: idle_expiry.as_millis() as u64,
                max_request_body,
                request_id_header,
                lease_wait,
                views: Memo::new(VIEWS),
            }),
        }
    }
}

impl tower::Service<Request<Body>> for OrdersService {
    type Response = Response<Body>;
    type Error = Infallible;
    type Future = Pin<Box<dyn Future<Output = Result<Response<Body>, Infallible>> + Send>>;

    fn poll_ready(&mut self, _: &mut Context<'_>) -> Poll<Result<(), Infallible>> {
        Poll::Ready(Ok(()))
    }

    fn call(&mut self, req: Request<Body>) -> Self::Future {
        let orders = Arc::clone(&self.shared);
        Box::pin(async move {
            let id = req.extensions().get::<RequestId>().cloned();
            match orders.handle(req).await {
                Ok(resp) => Ok(resp),
                Err(e) => Ok(faults::respond(
                    e,
                    id.as_ref().map_or("", RequestId::as_str),
                )),
            }
        })
    }
}

struct Delegate {
    headers: http::HeaderMap,
    addr: Option<ClientAddr>,
    tls: Option<crate::server::Tls>,
    record: Option<Record>,
}

fn record_of<B>(req: &Request<B>) -> Option<Record> {
    req.extensions().get::<Record>().cloned()
}

fn is_action(rest: &str) -> bool {
    rest == "/action" || rest == "/action/"
}

impl Orders {
    async fn handle(&self, req: Request<Body>) -> Result<Response<Body>, GatewayError> {
        // The borrowed route must not live across an await: take what is needed.
        enum Owned {
            Other,
            Orders,
            Order(OrderId, String),
            Shorthand(String),
        }
        let route = match shorthand::classify(req.uri().path())? {
            Route::Other => Owned::Other,
            Route::Orders => Owned::Orders,
            Route::Order { id, rest } => Owned::Order(id, rest.to_owned()),
            Route::Shorthand { rest } => Owned::Shorthand(rest.to_owned()),
        };
        // The larger futures of creation and the shorthand are boxed, so
        // that each request in flight holds no more than its own path needs.
        match route {
            Owned::Other => self.passthrough(req).await,
            Owned::Orders if req.method() == Method::POST => {
                let owner = owner_from_headers(req.headers()).ok().flatten();
                let create = self.create_explicit(req, owner, false);
                Box::pin(trace::in_span("order.create", create)).await
            }
            Owned::Orders => self.passthrough(req).await,
            Owned::Order(id, rest) => self.explicit_order(req, id, &rest).await,
            Owned::Shorthand(rest) => Box::pin(self.shorthand(req, &rest)).await,
        }
    }

    // ---- passthrough and learning ----------------------------------------

    async fn passthrough(&self, mut req: Request<Body>) -> Result<Response<Body>, GatewayError> {
        // Only calls that change something can make an order as a side effect.
        let learn = !matches!(*req.method(), Method::GET | Method::HEAD | Method::OPTIONS);
        let sent_owner = if learn {
            owner_from_headers(req.headers()).ok().flatten()
        } else {
            None
        };
        self.upstream.prepare(&mut req, None);
        let resp = self.upstream.send(req).await?;
        if learn {
            self.learn(resp.status(), resp.headers(), sent_owner).await;
        }
        Ok(self.upstream.finish(resp, self.upstream.rewriter()))
    }

    /// The order a 2xx answer says was made (`Location: …/orders/<id>`).
    fn created_order(&self, status: StatusCode, headers: &HeaderMap) -> Option<OrderId> {
        if !status.is_success() {
            return None;
        }
        let location = headers.get(header::LOCATION)?.to_str().ok()?;
        let path = self.upstream.own_path(location)?;
        let path = path.split(['?', '#']).next().unwrap_or(path);
        match shorthand::classify(path) {
            Ok(Route::Order { id, rest }) if Route::is_order_itself(rest) => Some(id),
            _ => None,
        }
    }

    /// Records the association an upstream answer shows, if any. A store
    /// failure here is logged, not answered: the order exists upstream and the
    /// client must learn of it.
    async fn learn(
        &self,
        status: StatusCode,
        headers: &HeaderMap,
        sent_owner: Option<OwnerId>,
    ) -> Option<(OwnerId, OrderId)> {
        let order = self.created_order(status, headers)?;
        let owner = sent_owner.or_else(|| owner_from_set_cookie(headers))?;
        if let Err(e) = self.store.put(owner, &order, now_ms()).await {
            tracing::error!(error = %e, order = %order, "cannot record the owner of a new order");
        }
        Some((owner, order))
    }

    // ---- associations ------------------------------------------------------

    /// The owner's open order as far as the store knows (idle ones expire).
    async fn open_order(&self, owner: OwnerId) -> Result<Option<OrderId>, GatewayError> {
        let Some(a) = self.store.get(owner).await? else {
            return Ok(None);
        };
        let now = now_ms();
        let idle = now.saturating_sub(a.touched_ms);
        if idle > self.idle_expiry_ms {
            self.store.end_order(&a.order).await?;
            return Ok(None);
        }
        // Refresh the stamp now and then, not on every use; an association
        // ended meanwhile (on another replica) is not brought back.
        if idle > self.idle_expiry_ms / 16 && !self.store.touch(owner, &a.order, now).await? {
            return Ok(None);
        }
        Ok(Some(a.order))
    }

    async fn end(&self, order: &OrderId) -> Result<(), GatewayError> {
        self.store.end_order(order).await?;
        Ok(())
    }

    /// Asks the upstream whether `order` is still `new`, ending the
    /// association when it is not.
    async fn still_open(
        &self,
        order: &OrderId,
        client: &Delegate,
        owner: OwnerId,
    ) -> Result<bool, GatewayError> {
        let req = self.delegated(
            client,
            Method::GET,
            &explicit_path(order, "", None),
            Some(owner),
        );
        let resp = self.upstream.send(req).await?;
        let status = resp.status();
        let open = if status.is_success() {
            let (parts, body) = resp.into_parts();
            let body = self.upstream.read_body(body, &parts.extensions).await?;
            // An answer without a readable status cannot say the order is closed.
            let json = serde_json::from_slice(&body).unwrap_or(serde_json::Value::Null);
            policy::is_open(policy::order_status(&json))
        } else if matches!(status, StatusCode::NOT_FOUND | StatusCode::GONE) {
            false
        } else {
            return Err(UpstreamError::BadAnswer(format!(
                "status {status} when the gateway checked the owner's open order"
            ))
            .into());
        };
        if !open {
            self.end(order).await?;
        }
        Ok(open)
    }

    /// What the gateway takes from the client's request for calls it makes
    /// on the client's behalf: credentials, request id, client address.
    fn delegate(&self, client: &Request<Body>) -> Delegate {
        let mut headers = http::HeaderMap::new();
        for name in DELEGATED.iter().chain([&self.request_id_header]) {
            for v in client.headers().get_all(name) {
                headers.append(name.clone(), v.clone());
            }
        }
        Delegate {
            headers,
            addr: client.extensions().get::<ClientAddr>().copied(),
            tls: client.extensions().get::<crate::server::Tls>().copied(),
            record: record_of(client),
        }
    }

    fn delegated(
        &self,
        client: &Delegate,
        method: Method,
        path: &str,
        owner: Option<OwnerId>,
    ) -> Request<Body> {
        let mut req = Request::new(body::empty());
        *req.method_mut() = method;
        *req.headers_mut() = client.headers.clone();
        if let Some(owner) = owner {
            owners::set_owner_cookie(req.headers_mut(), owner);
        }
        req.headers_mut()
            .insert(header::ACCEPT, HeaderValue::from_static("application/json"));
        if let Some(addr) = client.addr {
            req.extensions_mut().insert(addr);
        }
        if let Some(tls) = client.tls {
            req.extensions_mut().insert(tls);
        }
        if let Some(record) = &client.record {
            req.extensions_mut().insert(Arc::clone(record));
        }
        self.upstream.prepare(&mut req, Some(path));
        req
    }

    // ---- creation ----------------------------------------------------------

    /// `POST /orders` (or `POST /order`, with `shorthand_cookies`): 409 while
    /// the owner's order is still new upstream, else forwarded and learned.
    async fn create_explicit(
        &self,
        mut req: Request<Body>,
        owner: Option<OwnerId>,
        shorthand_cookies: bool,
    ) -> Result<Response<Body>, GatewayError> {
        let _creating = self.locks.lock_if(owner).await;
        let mut lease = None;
        if let Some(o) = owner {
            // Other replicas too: the check and the creation under the lease.
            if let Acquired::Leased(l) =
                lease::acquire(&self.store, o, false, self.lease_wait).await?
            {
                lease = Some(l);
            }
            if let Some(order) = self.open_order(o).await?
                && self.still_open(&order, &self.delegate(&req), o).await?
            {
                self.upstream.metrics().conflict();
                if let Some(l) = lease {
                    l.release().await;
                }
                return Err(GatewayError::OpenOrderExists);
            }
        }
        self.upstream.prepare(&mut req, Some("/orders"));
        let sent = self.upstream.send(req).await;
        let learned = match &sent {
            Ok(resp) => self.learn(resp.status(), resp.headers(), owner).await,
            Err(_) => None,
        };
        if let Some(l) = lease {
            l.release().await;
        }
        let resp = sent?;
        let mut out = self.upstream.finish(resp, self.upstream.rewriter());
        if let (true, Some((owner, _))) = (shorthand_cookies, learned) {
            out.headers_mut().remove(header::SET_COOKIE);
            self.set_owner_cookies(&mut out, owner);
        }
        Ok(out)
    }

    /// Creates an order upstream for an implicit creation, records it and
    /// returns its owner and id.
    async fn create_for(
        &self,
        client: &Delegate,
        owner: Option<OwnerId>,
    ) -> Result<(OwnerId, OrderId), GatewayError> {
        let mut req = self.delegated(client, Method::POST, "/orders", owner);
        req.headers_mut()
            .insert(header::CONTENT_LENGTH, HeaderValue::from_static("0"));
        let resp = self.upstream.send(req).await?;
        if !resp.status().is_success() {
            return Err(GatewayError::Refused(Box::new(
                self.upstream.finish(resp, self.upstream.rewriter()),
            )));
        }
        let order = self
            .created_order(resp.status(), resp.headers())
            .ok_or(GatewayError::NoOrderCreated)?;
        let owner = owner
            .or_else(|| owner_from_set_cookie(resp.headers()))
            .unwrap_or_else(OwnerId::mint);
        self.store.put(owner, &order, now_ms()).await?;
        self.upstream.metrics().implicit_creation();
        Ok((owner, order))
    }

    /// Implicit creation for a known owner, under the owner's creation lease
    /// when the store is shared: a creation that another replica finishes
    /// while this one waits is used, not repeated.
    async fn create_leased(
        &self,
        client: &Delegate,
        owner: OwnerId,
    ) -> Result<(OwnerId, OrderId), GatewayError> {
        if self.store.lease_ttl().is_none() {
            // This process is the store's only user: its creation lock,
            // held by the caller, is all the exclusion there is to have.
            return self.create_for(client, Some(owner)).await;
        }
        match lease::acquire(&self.store, owner, true, self.lease_wait).await? {
            Acquired::Found(a) => Ok((owner, a.order)),
            Acquired::Leased(lease) => {
                // The holder before this one may have finished just now.
                let created = match self.open_order(owner).await {
                    Ok(Some(order)) => Ok((owner, order)),
                    Ok(None) => self.create_for(client, Some(owner)).await,
                    Err(e) => Err(e),
                };
                lease.release().await;
                created
            }
        }
    }

    fn set_owner_cookies(&self, resp: &mut Response<Body>, owner: OwnerId) {
        for path in ["/order", "/orders"] {
            let mut c = cookie::Cookie::build((owners::OWNER_COOKIE, owner.to_string()))
                .path(path)
                .http_only(self.cookies.http_only)
                .secure(self.cookies.secure);
            if let Some(s) = self.cookies.same_site {
                c = c.same_site(match s {
                    SameSite::Strict => cookie::SameSite::Strict,
                    SameSite::Lax => cookie::SameSite::Lax,
                    SameSite::None => cookie::SameSite::None,
                });
            }
            if let Some(age) = self.cookies.max_age {
                c = c.max_age(cookie::time::Duration::seconds(age.as_secs() as i64));
            }
            if let Ok(v) = HeaderValue::from_str(&c.to_string()) {
                resp.headers_mut().append(header::SET_COOKIE, v);
            }
        }
    }

    // ---- the shorthand -----------------------------------------------------

    async fn shorthand(
        &self,
        req: Request<Body>,
        rest: &str,
    ) -> Result<Response<Body>, GatewayError> {
        let record = record_of(&req);
        if let Some(r) = &record {
            r.shorthand();
        }
        let owner = owner_from_headers(req.headers())?;
        if let (Some(r), Some(o)) = (&record, owner) {
            r.owner(o);
        }
        let method = req.method().clone();
        let itself = Route::is_order_itself(rest);
        if itself && method == Method::POST {
            return trace::in_span("order.create", self.create_explicit(req, owner, true)).await;
        }
        let implicit = !itself && (method == Method::PUT || method == Method::POST);
        let order = match owner {
            Some(o) => self.open_order(o).await?,
            None if implicit => None,
            None => return Err(GatewayError::NoOwner),
        };
        match (owner, order) {
            (Some(owner), Some(order)) => {
                self.forward_shorthand(req, owner, order, rest, false).await
            }
            _ if implicit => {
                let creating = self.locks.lock_if(owner).await;
                // Someone may have created it while this call waited.
                let found = match owner {
                    Some(o) => self.open_order(o).await?.map(|order| (o, order)),
                    None => None,
                };
                let (owner, order) = match (found, owner) {
                    (Some(found), _) => found,
                    // Without an owner id there is no one to race with.
                    (None, None) => {
                        let client = self.delegate(&req);
                        trace::in_span("order.create", self.create_for(&client, None)).await?
                    }
                    (None, Some(o)) => {
                        let client = self.delegate(&req);
                        trace::in_span("order.create", self.create_leased(&client, o)).await?
                    }
                };
                drop(creating);
                self.forward_shorthand(req, owner, order, rest, true).await
            }
            _ => Err(GatewayError::NoOpenOrder),
        }
    }

    async fn forward_shorthand(
        &self,
        req: Request<Body>,
        owner: OwnerId,
        order: OrderId,
        rest: &str,
        implicit: bool,
    ) -> Result<Response<Body>, GatewayError> {
        let method = req.method().clone();
        let itself = Route::is_order_itself(rest);
        let target = explicit_path(&order, rest, req.uri().query());
        let (mut req, submit) = self.read_action(req, rest).await?;
        if implicit {
            owners::set_owner_cookie(req.headers_mut(), owner);
            if let Some(r) = record_of(&req) {
                r.implicit();
                r.owner(owner);
            }
        }
        self.upstream.prepare(&mut req, Some(&target));
        let resp = self.upstream.send(req).await?;
        let status = resp.status();
        if itself && status == StatusCode::NOT_FOUND {
            self.end(&order).await?;
            return Err(GatewayError::NoOpenOrder);
        }
        let rewriter = self.upstream.shorthand_rewriter(order.as_str());
        let mut out = if itself && method == Method::GET && status.is_success() {
            match self.order_view(resp, &order, &rewriter, true).await? {
                Some(view) => view,
                None => return Err(GatewayError::NoOpenOrder),
            }
        } else {
            self.upstream.finish(resp, &rewriter)
        };
        if status.is_success() && (submit || (itself && method == Method::DELETE)) {
            self.end(&order).await?;
            if submit {
                let explicit = format!("{}/orders/{order}/", self.upstream.public_base());
                if let Ok(v) = HeaderValue::from_str(&explicit) {
                    out.headers_mut().insert(header::LOCATION, v);
                }
            }
        }
        if implicit {
            self.set_owner_cookies(&mut out, owner);
        }
        Ok(out)
    }

    /// Reads an order body: ends the association when the order is no longer
    /// `new` (and then answers `None` if `hide_closed`), rewrites its URLs and,
    /// for the shorthand, sets the `self` and `alternate` links.
    async fn order_view(
        &self,
        resp: Answer,
        order: &OrderId,
        rewriter: &Rewriter,
        shorthand: bool,
    ) -> Result<Option<Response<Body>>, GatewayError> {
        let (mut parts, body) = resp.into_parts();
        finish_headers(&mut parts.headers, rewriter);
        let bytes = self.upstream.read_body(body, &parts.extensions).await?;
        let key = (order.clone(), shorthand);
        let view = match self.views.get(&key) {
            Some(seen) if seen.upstream == bytes => seen.view.clone(),
            _ => {
                let view = self.make_view(&bytes, order, rewriter, shorthand);
                if bytes.len() <= MAX_VIEWED_BODY {
                    let seen = Seen {
                        upstream: bytes,
                        view: view.clone(),
                    };
                    self.views.insert(key, Arc::new(seen));
                }
                view
            }
        };
        if view.closed {
            self.end(order).await?;
            if shorthand {
                return Ok(None);
            }
        }
        if view.json {
            parts.headers.insert(header::CONTENT_TYPE, JSON_UTF8);
        }
        parts
            .headers
            .insert(header::CONTENT_LENGTH, HeaderValue::from(view.body.len()));
        Ok(Some(Response::from_parts(parts, body::full(view.body))))
    }

    /// The view of an order body: only the status and the links are read (no
    /// JSON tree of the order), and the body is not copied when there is
    /// nothing to change.
    fn make_view(
        &self,
        bytes: &Bytes,
        order: &OrderId,
        rewriter: &Rewriter,
        shorthand: bool,
    ) -> View {
        let passed = |closed| View {
            body: bytes.clone(),
            closed,
            json: false,
        };
        if !shorthand {
            return match policy::body_is_open(bytes) {
                Some(open) if !rewriter.is_empty() => View {
                    body: rewriter.rewrite_bytes(bytes),
                    closed: !open,
                    json: false,
                },
                Some(open) => passed(!open),
                None => passed(false),
            };
        }
        // One pass over the rewritten body reads the status and sets the
        // links; a body that is not JSON passes as it came.
        let rewritten = rewriter.rewrite_bytes(bytes);
        let public = self.upstream.public_base();
        let links = [
            ("self", &*[public, "/order/"].concat()),
            (
                "alternate",
                &*[public, "/orders/", order.as_str(), "/"].concat(),
            ),
        ];
        match policy::order_view(&rewritten, &links) {
            policy::View::NotJson => passed(false),
            policy::View::Closed => passed(true),
            policy::View::Open(view) => View {
                body: view.map_or(rewritten, Bytes::from),
                closed: false,
                json: true,
            },
        }
    }

    /// For `POST …/action`, reads the (small, capped) body to know whether
    /// the call submits the order; other calls pass untouched.
    async fn read_action(
        &self,
        req: Request<Body>,
        rest: &str,
    ) -> Result<(Request<Body>, bool), GatewayError> {
        if req.method() != Method::POST || !is_action(rest) {
            return Ok((req, false));
        }
        let (mut parts, body) = req.into_parts();
        let cap = self.upstream.max_json_body();
        let bytes = match body::read_capped(body, cap).await {
            Ok(bytes) => bytes,
            Err(body::ReadError::TooLarge(_)) => {
                return Err(GatewayError::BodyTooLarge {
                    limit: (cap as u64).min(self.max_request_body),
                });
            }
            // The request limits trip inside the body as it is read.
            Err(body::ReadError::Failed(e)) => {
                return Err(match crate::proxy::client_body_error(&*e) {
                    Some(UpstreamError::ClientBodyTooLarge) => GatewayError::BodyTooLarge {
                        limit: self.max_request_body,
                    },
                    Some(other) => other.into(),
                    None => GatewayError::BodyRead,
                });
            }
        };
        let submit = policy::is_submit(&bytes);
        parts.headers.remove(header::TRANSFER_ENCODING);
        parts
            .headers
            .insert(header::CONTENT_LENGTH, HeaderValue::from(bytes.len()));
        Ok((Request::from_parts(parts, body::full(bytes)), submit))
    }

    // ---- explicit order paths ------------------------------------------------

    async fn explicit_order(
        &self,
        req: Request<Body>,
        order: OrderId,
        rest: &str,
    ) -> Result<Response<Body>, GatewayError> {
        let method = req.method().clone();
        let itself = Route::is_order_itself(rest);
        let (mut req, submit) = self.read_action(req, rest).await?;
        // A read of a tracked order is where the gateway sees status changes
        // made behind its back; other reads stream through untouched.
        let watch = itself && method == Method::GET && self.store.owner_of(&order).await?.is_some();
        let learn = method == Method::POST || method == Method::PUT;
        let sent_owner = if learn {
            owner_from_headers(req.headers()).ok().flatten()
        } else {
            None
        };
        self.upstream.prepare(&mut req, None);
        let resp = self.upstream.send(req).await?;
        let status = resp.status();
        if learn {
            self.learn(resp.status(), resp.headers(), sent_owner).await;
        }
        if itself && matches!(status, StatusCode::NOT_FOUND | StatusCode::GONE) {
            self.end(&order).await?;
        }
        if status.is_success() && (submit || (itself && method == Method::DELETE)) {
            self.end(&order).await?;
        }
        if watch && status.is_success() {
            let rewriter = Arc::clone(self.upstream.rewriter());
            if let Some(view) = self.order_view(resp, &order, &rewriter, false).await? {
                return Ok(view);
            }
            return Err(GatewayError::NoOpenOrder);
        }
        Ok(self.upstream.finish(resp, self.upstream.rewriter()))
    }
}

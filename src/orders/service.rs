//! The orders service: runs the plans of [`super::plan`] and applies their
//! effects. It decides nothing itself: the plan says what to do with the
//! request, the effects what to do about the answer.

use super::order_body::{self, Views};
use super::plan::{self, AnswerFacts, Exchange, Plan, Refusal, Step};
use super::{CreationLocks, memo::Memo};
use crate::body::{self, Body, Coding, ReadError};
use crate::config::{CookieConfig, SameSite};
use crate::context::Facts;
use crate::faults::{Client, Error, Gateway, JSON_UTF8, Policy};
use crate::owners::lease::Leases;
use crate::owners::{self, OrderId, OwnerId, OwnerStore, owner_from_set_cookie};
use crate::route::{self, Rest, Route};
use crate::telemetry::RequestId;
use crate::telemetry::metrics::Metrics;
use crate::upstream::rewrite::{Bases, Rewriter};
use crate::upstream::{Answer, Upstream, tunnel};
use futures_util::FutureExt;
use http::header::{self, HeaderMap, HeaderName, HeaderValue};
use http::{Method, Request, Response, StatusCode};
use std::convert::Infallible;
use std::future::Future;
use std::pin::{Pin, pin};
use std::sync::Arc;
use std::task::{Context, Poll};
use std::time::Duration;

/// The orders phase as a tower service. Cheap to clone.
#[derive(Clone)]
pub struct OrdersService {
    shared: Arc<Orders>,
}

/// The state behind [`OrdersService`].
pub struct Orders {
    pub(super) upstream: Upstream,
    pub(super) bases: Bases,
    pub(super) store: Arc<dyn OwnerStore>,
    /// Creation leases, when the store is shared with other replicas.
    pub(super) leases: Option<Arc<dyn Leases>>,
    pub(super) metrics: Arc<Metrics>,
    pub(super) locks: CreationLocks,
    cookies: OwnerCookies,
    idle_expiry_ms: u64,
    max_request_body: u64,
    max_json_body: usize,
    request_id_header: HeaderName,
    /// Longest wait for an owner's creation lease held by another replica.
    pub(super) lease_wait: Duration,
    views: Views,
    /// The shorthand rewriter of each order in use: an owner reads its open
    /// order through `/order` again and again.
    rewriters: Memo<OrderId, Arc<Rewriter>>,
}

/// Most orders whose shorthand rewriter is kept.
const SHORTHAND_REWRITERS: usize = 4096;

/// Headers of the client's request that go with calls the gateway makes on
/// its behalf (creating an order, checking one).
const DELEGATED: [HeaderName; 4] = [
    header::AUTHORIZATION,
    header::COOKIE,
    header::HOST,
    header::USER_AGENT,
];

/// The owner's `Set-Cookie` values, one per path (`/order`, `/orders`),
/// made once from the configuration; each answer puts the owner id in.
struct OwnerCookies {
    /// The text before and after the owner id, per path.
    around: Vec<(String, String)>,
}

impl OwnerCookies {
    fn new(config: &CookieConfig) -> Self {
        const PLACEHOLDER: &str = "00000000-0000-0000-0000-000000000000";
        let around = ["/order", "/orders"]
            .into_iter()
            .filter_map(|path| {
                let text = owner_cookie(config, path, PLACEHOLDER);
                let (before, after) = text.split_once(PLACEHOLDER)?;
                Some((before.to_owned(), after.to_owned()))
            })
            .collect();
        Self { around }
    }

    fn append(&self, headers: &mut HeaderMap, owner: OwnerId) {
        let mut buf = [0u8; 36];
        let id = owner.encode(&mut buf);
        for (before, after) in &self.around {
            let text = [before.as_str(), id, after.as_str()].concat();
            if let Ok(v) = HeaderValue::from_maybe_shared(bytes::Bytes::from(text)) {
                headers.append(header::SET_COOKIE, v);
            }
        }
    }
}

/// The owner's cookie for `path`, with `value`, as the configuration
/// makes it.
fn owner_cookie(config: &CookieConfig, path: &str, value: &str) -> String {
    let mut c = cookie::Cookie::build((owners::OWNER_COOKIE, value))
        .path(path)
        .http_only(config.http_only)
        .secure(config.secure);
    if let Some(s) = config.same_site {
        c = c.same_site(match s {
            SameSite::Strict => cookie::SameSite::Strict,
            SameSite::Lax => cookie::SameSite::Lax,
            SameSite::None => cookie::SameSite::None,
        });
    }
    if let Some(age) = config.max_age {
        c = c.max_age(cookie::time::Duration::seconds(age.as_secs() as i64));
    }
    c.to_string()
}

/// What [`OrdersService`] needs beside the upstream and the store.
#[derive(Clone)]
pub struct OrdersSettings {
    pub bases: Bases,
    pub cookies: CookieConfig,
    pub idle_expiry: Duration,
    pub max_request_body: u64,
    /// Cap on the JSON bodies the gateway reads (orders, actions).
    pub max_json_body: usize,
    pub request_id_header: HeaderName,
    /// Longest wait for an owner's creation lease held by another replica:
    /// longer than a creation can take.
    pub lease_wait: Duration,
}

impl OrdersService {
    pub fn new(
        upstream: Upstream,
        store: owners::Store,
        metrics: Arc<Metrics>,
        settings: OrdersSettings,
    ) -> Self {
        let OrdersSettings {
            bases,
            cookies,
            idle_expiry,
            max_request_body,
            max_json_body,
            request_id_header,
            lease_wait,
        } = settings;
        Self {
            shared: Arc::new(Orders {
                upstream,
                bases,
                store: store.owners,
                leases: store.leases,
                metrics,
                locks: CreationLocks::default(),
                cookies: OwnerCookies::new(&cookies),
                idle_expiry_ms: idle_expiry.as_millis() as u64,
                max_request_body,
                max_json_body,
                request_id_header,
                lease_wait,
                views: Views::default(),
                rewriters: Memo::new(SHORTHAND_REWRITERS),
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

    fn call(&mut self, mut req: Request<Body>) -> Self::Future {
        let orders = Arc::clone(&self.shared);
        let facts = match req.extensions_mut().remove::<Facts>() {
            Some(facts) if facts.worked_out() => facts,
            // Without the facts layer in front (the service on its own):
            // worked out here, with what the server knew.
            known => {
                let (peer, request_id) = known.map_or((None, None), |k| (k.peer, k.request_id));
                let mut facts = Facts::new(req.uri().path(), req.headers(), peer, &[], None);
                facts.request_id = request_id;
                facts
            }
        };
        // A call that can make an order upstream runs to its end in a task
        // of its own, even when the client goes away before the answer: the
        // association the answer makes must be learned, or the owner could
        // open a second order (SPEC §3). Reads lose nothing when dropped.
        let id = facts.request_id.clone();
        let answer = move |answer: Result<Response<Body>, Error>| match answer {
            Ok(resp) => Ok(resp),
            Err(e) => Ok(e.respond(RequestId::text(id.as_ref()))),
        };
        // Two futures, not one with both ways in it: each is as large as
        // the way it takes (and is moved into its box whole).
        if plan::learns(req.method()) {
            // Spawned now, not when first polled: the answer's future then
            // holds the task's handle, not the whole call's state as well.
            let task = crate::telemetry::trace::spawn(orders.handle(Box::new(req), facts));
            Box::pin(async move {
                answer(match task.await {
                    Ok(answered) => answered,
                    Err(e) => {
                        tracing::error!(error = %e, "the orders task failed");
                        Err(Error::gateway(
                            Gateway::Internal,
                            "The request could not be completed",
                        ))
                    }
                })
            })
        } else {
            Box::pin(orders.handle(Box::new(req), facts).map(answer))
        }
    }
}

const UPGRADE_ON_ORDERS: &str =
    "Protocol upgrades (WebSocket) are not served on /order and /orders";

/// A request on its way upstream, boxed once as the orders service takes
/// it: every step below moves it (a request is 240 bytes), and the
/// upstream exchange keeps it boxed.
pub(super) type Outgoing = Box<Request<Body>>;

/// What the client's request lends the calls the gateway makes for it.
pub(super) struct Delegate {
    headers: HeaderMap,
}

/// The fault of a refusal.
fn refused(r: Refusal) -> Error {
    match r {
        Refusal::BadPath(e) => Error::client(Client::BadRequest, format!("Bad request path: {e}")),
        Refusal::BadOwner(e) => Error::client(Client::Unauthorized, format!("Unauthorized: {e}")),
        Refusal::NoOwner => Error::client(
            Client::Unauthorized,
            "The OwnerId cookie is required to use /order",
        ),
        Refusal::NoOpenOrder => no_open_order(),
    }
}

pub(super) fn no_open_order() -> Error {
    Error::client(
        Client::NotFound,
        "There is no new order associated with the OwnerId",
    )
}

pub(super) fn conflict() -> Error {
    Error::policy(
        Policy::Conflict,
        "There is already a new order associated with the same OwnerId",
    )
}

/// A call ready to go upstream: where it goes, and what its answer is
/// read and rewritten with.
pub(super) struct Call {
    pub req: Outgoing,
    pub exchange: Exchange,
    /// The path and query upstream; `None`: the client's own.
    pub path: Option<String>,
    /// The order the call is about.
    pub order: Option<OrderId>,
    pub rewriter: Arc<Rewriter>,
    /// The owner the answer's cookies are for.
    pub owner: Option<OwnerId>,
}

/// What the shorthand's resolution came to.
// The call is the usual outcome and moves on at once: boxing it would cost
// an allocation per request to save bytes on a rare one.
#[allow(clippy::large_enum_variant)]
enum Resolved {
    /// The call for the owner's order.
    Send(Call),
    /// The upstream refused an implicit creation: its answer is the client's.
    Answered(Response<Body>),
}

impl Orders {
    /// Runs the plan of a request. An `async` block, not an `async fn`, for
    /// the reason [`Self::exchange`] gives; it owns what it needs, so that no
    /// wrapper holds the request again.
    #[allow(clippy::manual_async_fn)] // an `async fn` would hold its arguments twice
    fn handle(
        self: Arc<Self>,
        req: Outgoing,
        facts: Facts,
    ) -> impl Future<Output = Result<Response<Body>, Error>> + Send + 'static {
        async move {
            let facts = &facts;
            // The larger futures of creation and upgrades are boxed, so that
            // each request in flight holds no more than its own path needs;
            // forwarding and the shorthand resolve their call first, then share
            // one exchange.
            if let Some(protocols) = tunnel::asked(&req)
                && self.upstream.tunnels()
            {
                match &facts.route {
                    Ok(Route::Other) => {
                        let rewriter = self.bases.rewriter();
                        return Box::pin(self.upstream.upgrade(req, protocols, facts, rewriter))
                            .await;
                    }
                    // The orders rules read and rewrite HTTP answers: a tunnel
                    // would carry the orders API past them.
                    Ok(_) => return Err(Error::client(Client::BadRequest, UPGRADE_ON_ORDERS)),
                    Err(_) => {}
                }
            }
            let call = match plan::plan(facts, req.method()) {
                Plan::Refuse(r) => return Err(refused(r)),
                Plan::Forward { learn } => pin!(self.forward(req, facts, learn)).await?,
                Plan::Create { shorthand } => {
                    let create = self.create_explicit(req, facts, shorthand);
                    return Box::pin(crate::telemetry::trace::in_span("order.create", create))
                        .await;
                }
                Plan::Shorthand { implicit } => match self.shorthand(req, facts, implicit).await? {
                    Resolved::Send(call) => call,
                    Resolved::Answered(answer) => return Ok(answer),
                },
            };
            pin!(self.exchange(call, facts)).await
        }
    }

    // ---- forwarding ----------------------------------------------------------

    /// A call the orders API does not reroute: passed on as it is.
    async fn forward(&self, req: Outgoing, facts: &Facts, learn: bool) -> Result<Call, Error> {
        let Ok(route) = &facts.route else {
            return Err(Error::client(Client::BadRequest, "Bad request path"));
        };
        let method = req.method().clone();
        let (req, submit) = self.read_action(req, route.child()).await?;
        let mut exchange = Exchange::forward(route, &method, submit, learn);
        let order = match route {
            Route::Order { id, .. } => Some(id),
            _ => None,
        };
        if let Some(order) = order
            && exchange.asks_tracking()
        {
            // A read of a tracked order is where the gateway sees status
            // changes made behind its back; other reads stream through.
            let owner = match self.store.owner_of_now(order) {
                Some(owner) => owner,
                None => self.store.owner_of(order).await?,
            };
            exchange.tracked = owner.is_some();
        }
        Ok(Call {
            req,
            exchange,
            path: None,
            order: order.cloned(),
            rewriter: Arc::clone(self.bases.rewriter()),
            owner: facts.valid_owner(),
        })
    }

    /// Sends a call upstream and applies the effects of its answer.
    ///
    /// This and [`Self::answer`] return `async` blocks rather than being
    /// `async fn`s: an `async fn` keeps its arguments twice in its state (as
    /// given, and moved into its body), and every request in flight holds
    /// that state.
    #[allow(clippy::manual_async_fn)] // an `async fn` would hold its arguments twice
    pub(super) fn exchange<'a>(
        &'a self,
        mut call: Call,
        facts: &'a Facts,
    ) -> impl Future<Output = Result<Response<Body>, Error>> + Send + 'a {
        async move {
            if let Some(owner) = facts.valid_owner()
                && facts.owner_quoted
            {
                owners::set_owner_cookie(call.req.headers_mut(), owner);
            }
            // The order's path, when it changes, is made of checked parts:
            // written as it is. The calls' futures are pinned where they are
            // made: awaited as values, each would be copied once more (the
            // upstream call's state is 1 KiB).
            let resp = pin!(self.upstream.forward(call.req, call.path.take(), facts)).await?;
            let order = call.order.as_ref();
            pin!(self.answer(resp, &call.exchange, order, &call.rewriter, call.owner)).await
        }
    }

    /// Reads the facts of an upstream answer and applies their effects.
    #[allow(clippy::manual_async_fn)] // an `async fn` would hold its arguments twice
    fn answer<'a>(
        &'a self,
        resp: Answer,
        exchange: &'a Exchange,
        order: Option<&'a OrderId>,
        rewriter: &'a Arc<Rewriter>,
        owner: Option<OwnerId>,
    ) -> impl Future<Output = Result<Response<Body>, Error>> + Send + 'a {
        async move {
            let status = resp.status();
            let (created, set_owner) = if exchange.learn {
                (
                    self.created_order(status, resp.headers()),
                    owner_from_set_cookie(resp.headers()),
                )
            } else {
                (None, None)
            };
            let (mut out, open) = match order {
                Some(order) if exchange.reads_order(status) => {
                    // Read here, not in a function of its own: each async
                    // function would hold the answer once more.
                    let (parts, bytes) = self.upstream.read_body(resp, self.max_json_body).await?;
                    let shorthand = exchange.via == plan::Via::Shorthand;
                    let (resp, open) = self.order_view(parts, bytes, order, rewriter, shorthand);
                    (resp, Some(open))
                }
                _ => (self.upstream.finish(resp, rewriter)?, None),
            };
            let effects = exchange.effects(&AnswerFacts {
                status,
                created: created.clone(),
                open,
            });
            let learned = match (effects.learn, created, owner.or(set_owner)) {
                (true, Some(order), Some(owner)) => {
                    self.learn(owner, &order).await;
                    Some(owner)
                }
                _ => None,
            };
            if effects.end
                && let Some(order) = order
            {
                self.store.end_order(order).await?;
            }
            if effects.hide {
                return Err(no_open_order());
            }
            if effects.explicit_location
                && let Some(order) = order
            {
                let explicit = [self.bases.public(), "/orders/", order.as_str(), "/"].concat();
                if let Ok(v) = HeaderValue::from_maybe_shared(bytes::Bytes::from(explicit)) {
                    out.headers_mut().insert(header::LOCATION, v);
                }
            }
            if effects.set_cookies
                && let Some(owner) = owner.or(learned)
            {
                // A creation's cookies are the gateway's, for both paths.
                if matches!(exchange.via, plan::Via::Create { .. }) {
                    out.headers_mut().remove(header::SET_COOKIE);
                }
                self.cookies.append(out.headers_mut(), owner);
            }
            Ok(out)
        }
    }

    /// Reads an order body once: its status, and through the shorthand its
    /// links; URLs rewritten. Returns the answer for the client and whether
    /// the order is open.
    fn order_view(
        &self,
        mut parts: http::response::Parts,
        bytes: bytes::Bytes,
        order: &OrderId,
        rewriter: &Rewriter,
        shorthand: bool,
    ) -> (Response<Body>, bool) {
        crate::upstream::finish_headers(&mut parts.headers, rewriter);
        let public = self.bases.public();
        let links = shorthand.then_some(|| {
            [
                ("self", [public, "/order/"].concat()),
                (
                    "alternate",
                    [public, "/orders/", order.as_str(), "/"].concat(),
                ),
            ]
        });
        let view = self.views.view(bytes, order, rewriter, links);
        if view.json {
            parts.headers.insert(header::CONTENT_TYPE, JSON_UTF8);
        }
        // The upstream's length goes (an answer through hyper's client has
        // it; a pooled one's is its body's size already): the view's is its
        // body's exact size, which the server writes.
        parts.headers.remove(header::CONTENT_LENGTH);
        (
            Response::from_parts(parts, body::full(view.body)),
            !view.closed,
        )
    }

    /// For `POST …/action`, reads the (small, capped) body to know whether
    /// the call submits the order; other calls pass untouched, at once.
    #[allow(clippy::manual_async_fn)] // an `async fn` would hold its arguments twice
    fn read_action<'a>(
        &'a self,
        req: Outgoing,
        child: Option<&'a Rest>,
    ) -> impl Future<Output = Result<(Outgoing, bool), Error>> + Send + 'a {
        async move {
            if req.method() != Method::POST || !child.is_some_and(Rest::is_action) {
                return Ok((req, false));
            }
            // Boxed: the state of a body being read would make every
            // forwarded request's larger.
            Box::pin(self.read_action_body(req)).await
        }
    }

    /// Reads an action's body whole and puts it back in the same request.
    async fn read_action_body(&self, mut req: Outgoing) -> Result<(Outgoing, bool), Error> {
        let body = std::mem::replace(req.body_mut(), body::empty());
        let cap = self.max_json_body;
        let bytes = match body::read_capped(body, cap).await {
            Ok(bytes) => bytes,
            Err(ReadError::TooLarge(_)) => {
                return Err(Error::body_too_large(
                    (cap as u64).min(self.max_request_body),
                ));
            }
            // The request limits trip inside the body as it is read.
            Err(ReadError::Failed(e)) => {
                return Err(
                    Error::from_client_body(&*e).unwrap_or_else(|| Error::body_broken().because(e))
                );
            }
            Err(e @ ReadError::Undecodable(_)) => return Err(Error::body_broken().because(e)),
        };
        // A client may compress its request: the action is read decoded, and
        // forwarded as it came.
        let submit = match Coding::of(req.headers()) {
            Ok(Coding::Identity) => order_body::is_submit(&bytes),
            Ok(coding) => body::read_decoded(body::full(bytes.clone()), coding, cap)
                .await
                .is_ok_and(|plain| order_body::is_submit(&plain)),
            Err(_) => false,
        };
        let headers = req.headers_mut();
        headers.remove(header::TRANSFER_ENCODING);
        headers.insert(header::CONTENT_LENGTH, HeaderValue::from(bytes.len()));
        *req.body_mut() = body::full(bytes);
        Ok((req, submit))
    }

    // ---- associations ----------------------------------------------------------

    /// The order a 2xx answer says was made (`Location: …/orders/<id>`).
    pub(super) fn created_order(&self, status: StatusCode, headers: &HeaderMap) -> Option<OrderId> {
        if !status.is_success() {
            return None;
        }
        let location = headers.get(header::LOCATION)?.to_str().ok()?;
        let path = self.bases.own_path(location)?;
        let path = path.split(['?', '#']).next().unwrap_or(path);
        match route::classify(path) {
            Ok(Route::Order { id, rest }) if rest.is_itself() => Some(id),
            _ => None,
        }
    }

    /// Records an association an upstream answer shows. A store failure here
    /// is logged, not answered: the order exists upstream and the client
    /// must learn of it.
    pub(super) async fn learn(&self, owner: OwnerId, order: &OrderId) {
        if let Err(e) = self.store.put(owner, order, crate::clock::now_ms()).await {
            tracing::error!(error = %e, order = %order, "cannot record the owner of a new order");
        }
    }

    /// The owner's open order as far as the store knows (idle ones expire).
    pub(super) async fn open_order(&self, owner: OwnerId) -> Result<Option<OrderId>, Error> {
        let Some(a) = self.store.get(owner).await? else {
            return Ok(None);
        };
        let now = crate::clock::now_ms();
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

    /// Asks the upstream whether `order` is still `new`; the answer's
    /// effects end the association when it is not.
    pub(super) async fn still_open(
        &self,
        order: &OrderId,
        facts: &Facts,
        client: &Delegate,
        owner: OwnerId,
    ) -> Result<bool, Error> {
        let path = route::explicit_path(order, &Rest::default(), None);
        let req = self.delegated(client, Method::GET, Some(owner));
        let resp = self.upstream.forward(req, Some(path), facts).await?;
        let mut check = Exchange::forward(
            &Route::Order {
                id: order.clone(),
                rest: Rest::default(),
            },
            &Method::GET,
            false,
            false,
        );
        check.tracked = true;
        let status = resp.status();
        let open = if check.reads_order(status) {
            let (_, bytes) = self.upstream.read_body(resp, self.max_json_body).await?;
            // An answer without a readable status cannot say the order is closed.
            Some(order_body::body_is_open(&bytes).unwrap_or(true))
        } else {
            None
        };
        let effects = check.effects(&AnswerFacts {
            status,
            created: None,
            open,
        });
        if effects.end {
            self.store.end_order(order).await?;
            return Ok(false);
        }
        if status.is_success() {
            return Ok(true);
        }
        Err(
            Error::upstream(crate::faults::Upstream::BadAnswer).because(format!(
                "status {status} when the gateway checked the owner's open order"
            )),
        )
    }

    // ---- calls made for the client ---------------------------------------------

    /// What the gateway takes from the client's request for calls it makes
    /// on the client's behalf: credentials and the request id.
    pub(super) fn delegate(&self, client: &Request<Body>) -> Delegate {
        let mut headers = HeaderMap::new();
        for name in DELEGATED.iter().chain([&self.request_id_header]) {
            for v in client.headers().get_all(name) {
                headers.append(name.clone(), v.clone());
            }
        }
        Delegate { headers }
    }

    /// A request the gateway makes on the client's behalf, forwarded to
    /// its own path ([`crate::upstream::Upstream::forward`]).
    pub(super) fn delegated(
        &self,
        client: &Delegate,
        method: Method,
        owner: Option<OwnerId>,
    ) -> Outgoing {
        let mut req = Box::new(Request::new(body::empty()));
        *req.method_mut() = method;
        *req.headers_mut() = client.headers.clone();
        if let Some(owner) = owner {
            owners::set_owner_cookie(req.headers_mut(), owner);
        }
        req.headers_mut()
            .insert(header::ACCEPT, HeaderValue::from_static("application/json"));
        req
    }

    // ---- the shorthand ---------------------------------------------------------

    /// Resolves `/order…` to the owner's order, creating it when the plan
    /// says so.
    async fn shorthand(
        &self,
        req: Outgoing,
        facts: &Facts,
        implicit: bool,
    ) -> Result<Resolved, Error> {
        let Ok(Route::Shorthand { rest }) = &facts.route else {
            return Err(Error::client(Client::BadRequest, "Bad request path"));
        };
        let owner = facts.valid_owner();
        if let Some(r) = &facts.record {
            r.shorthand();
            if let Some(o) = owner {
                r.owner(o);
            }
        }
        let open = match owner {
            Some(o) => self.open_order(o).await?,
            None => None,
        };
        let (owner, order, created) = match plan::resolve(implicit, open) {
            Step::Use(order) => match owner {
                Some(owner) => (owner, order, false),
                None => return Err(refused(Refusal::NoOwner)),
            },
            Step::Refuse(r) => return Err(refused(r)),
            Step::Create => {
                let client = self.delegate(&req);
                match Box::pin(self.create_implicitly(&client, facts, owner)).await? {
                    super::create::Creation::Made(owner, order) => (owner, order, true),
                    super::create::Creation::Refused(answer) => {
                        return Ok(Resolved::Answered(answer));
                    }
                }
            }
        };
        let method = req.method().clone();
        let (mut req, submit) = self.read_action(req, Some(rest)).await?;
        if created {
            owners::set_owner_cookie(req.headers_mut(), owner);
            if let Some(r) = &facts.record {
                r.implicit();
                r.owner(owner);
            }
        }
        Ok(Resolved::Send(Call {
            exchange: Exchange::shorthand(&method, rest, submit, created),
            path: Some(route::explicit_path(&order, rest, req.uri().query())),
            rewriter: self.shorthand_rewriter(&order),
            order: Some(order),
            owner: Some(owner),
            req,
        }))
    }

    /// The rewriter for answers through the shorthand about `order`, made
    /// once per order and kept.
    fn shorthand_rewriter(&self, order: &OrderId) -> Arc<Rewriter> {
        if let Some(r) = self.rewriters.get(order) {
            return r;
        }
        let made = Arc::new(self.bases.for_shorthand(order.as_str()));
        self.rewriters.insert(order.clone(), Arc::clone(&made));
        made
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    /// The cookies as the cookie crate writes them for `owner`.
    fn built(config: &CookieConfig, owner: OwnerId) -> Vec<String> {
        ["/order", "/orders"]
            .into_iter()
            .map(|path| owner_cookie(config, path, &owner.to_string()))
            .collect()
    }

    #[test]
    fn owner_cookies_are_the_configured_cookies_with_the_owner_put_in() {
        for (http_only, secure, same_site, max_age) in [
            (
                true,
                true,
                Some(SameSite::Lax),
                Some(Duration::from_secs(86_400)),
            ),
            (false, false, None, None),
            (true, false, Some(SameSite::None), None),
            (
                false,
                true,
                Some(SameSite::Strict),
                Some(Duration::from_secs(1)),
            ),
        ] {
            let config = CookieConfig {
                http_only,
                secure,
                same_site,
                max_age,
            };
            let cookies = OwnerCookies::new(&config);
            for owner in [OwnerId::mint(), OwnerId::mint()] {
                let mut headers = HeaderMap::new();
                cookies.append(&mut headers, owner);
                let got: Vec<&str> = headers
                    .get_all(header::SET_COOKIE)
                    .iter()
                    .map(|v| v.to_str().unwrap())
                    .collect();
                assert_eq!(got, built(&config, owner));
                assert!(got[0].contains(&format!("OwnerId={owner}")));
            }
        }
    }
}

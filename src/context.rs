//! Request facts: what every layer needs to know about a request, worked out
//! once.
//!
//! [`FactsLayer`] sits right after the request id. It classifies the path
//! ([`crate::route`]), reads the `OwnerId` cookie, finds the client's address
//! under the trusted-proxy rules and makes the access record, and puts the
//! result, [`Facts`], in the request's extensions. Metrics, CORS, rate limits,
//! the orders phase and the forwarding code read it; none of them parses the
//! cookie or classifies the path again. It answers nothing itself: a path or
//! cookie it cannot use is a fact, and the layer that must refuse it does.
//!
//! The server puts the facts it knows (the connection a request came on,
//! [`Peer`]) on each request as [`Facts::of_peer`], the request-id layer
//! adds the id, and this layer works out the rest in place: one extension
//! a request, boxed once.

use crate::owners::{CookieError, OwnerId, read_owner_cookie};
use crate::route::{PathError, Route, classify};
use http::header::{HeaderMap, HeaderName, HeaderValue};
use http::{Request, Response};
use std::net::{IpAddr, SocketAddr};
use std::sync::Arc;
use std::sync::atomic::{AtomicU8, AtomicU64, Ordering};
use std::task::{Context, Poll};
use std::time::Duration;
use tower::{Layer, Service};

/// The connection a request came on, put on each request by the server.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub struct Peer {
    pub addr: SocketAddr,
    /// The connection is TLS.
    pub tls: bool,
}

/// What a request is, as the gateway's layers see it.
#[derive(Debug, Clone)]
pub struct Facts {
    /// The part of the orders API the path names, or why it cannot be used.
    pub route: Result<Route, PathError>,
    /// The `OwnerId` cookie: none, one, or why it cannot be used.
    pub owner: Result<Option<OwnerId>, CookieError>,
    /// The `OwnerId` cookie came quoted: it goes upstream unquoted.
    pub owner_quoted: bool,
    /// The connection, when the request came from a server.
    pub peer: Option<Peer>,
    /// The peer is one of the configured proxies: its `X-Forwarded-*`
    /// headers are believed.
    pub peer_trusted: bool,
    /// The client's address: the peer's, or behind trusted proxies the last
    /// `X-Forwarded-For` address that is not one of them.
    pub client_ip: Option<IpAddr>,
    /// What the inner phases report to the access log, when it is on.
    pub record: Option<Record>,
    /// The request id the request-id layer settled on: the fault `guid`
    /// and the logs' id.
    pub request_id: Option<HeaderValue>,
    /// Worked out from the request ([`Facts::new`]), not only what the
    /// server knew ([`Facts::of_peer`]).
    worked_out: bool,
}

/// Facts of a request that came through no [`FactsLayer`] (a layer tested
/// on its own): an ordinary path, no cookie, no peer.
static NO_FACTS: Facts = Facts {
    route: Ok(Route::Other),
    owner: Ok(None),
    owner_quoted: false,
    peer: None,
    peer_trusted: false,
    client_ip: None,
    record: None,
    request_id: None,
    worked_out: false,
};

impl Facts {
    /// The facts of a request.
    pub fn of<B>(req: &Request<B>) -> &Facts {
        req.extensions().get::<Facts>().unwrap_or(&NO_FACTS)
    }

    /// Works out the facts of a request.
    pub fn new(
        path: &str,
        headers: &HeaderMap,
        peer: Option<Peer>,
        trusted_proxies: &[IpAddr],
        record: Option<Record>,
    ) -> Self {
        let peer_trusted = peer.is_some_and(|p| trusted_proxies.contains(&p.addr.ip()));
        let client_ip = peer.map(|p| {
            let ip = p.addr.ip();
            if peer_trusted {
                forwarded_client(headers, trusted_proxies).unwrap_or(ip)
            } else {
                ip
            }
        });
        let cookie = read_owner_cookie(headers);
        Self {
            route: classify(path),
            owner: cookie.owner,
            owner_quoted: cookie.quoted,
            peer,
            peer_trusted,
            client_ip,
            record,
            request_id: None,
            worked_out: true,
        }
    }

    /// Whether these are a request's facts worked out, not only the
    /// server's (the facts layer was in front).
    pub fn worked_out(&self) -> bool {
        self.worked_out
    }

    /// What the server knows of a request as it reads it: its connection.
    /// The facts layer works out the rest.
    pub fn of_peer(peer: Option<Peer>) -> Self {
        Self {
            peer,
            ..NO_FACTS.clone()
        }
    }

    /// The request's facts to fill in: the server's, else new ones.
    pub fn settle<B>(req: &mut Request<B>) -> &mut Facts {
        req.extensions_mut()
            .get_or_insert_with(|| Facts::of_peer(None))
    }

    /// Whether the request came over TLS.
    pub fn tls(&self) -> bool {
        self.peer.is_some_and(|p| p.tls)
    }

    /// The owner, when the cookie names one validly.
    pub fn valid_owner(&self) -> Option<OwnerId> {
        self.owner.ok().flatten()
    }
}

static X_FORWARDED_FOR: HeaderName = HeaderName::from_static("x-forwarded-for");

/// The last `X-Forwarded-For` address that is not a trusted proxy.
fn forwarded_client(headers: &HeaderMap, trusted: &[IpAddr]) -> Option<IpAddr> {
    // Several headers are one list, in order; the nearest hop is last.
    let values: Vec<&str> = headers
        .get_all(&X_FORWARDED_FOR)
        .iter()
        .filter_map(|v| v.to_str().ok())
        .collect();
    values
        .iter()
        .rev()
        .flat_map(|v| v.rsplit(','))
        .filter_map(|s| s.trim().parse::<IpAddr>().ok())
        .find(|ip| !trusted.contains(ip))
}

// ---- the access record ----------------------------------------------------

const SHORTHAND: u8 = 1;
const IMPLICIT: u8 = 2;

/// What the inner phases did for one request, for its access-log line.
#[derive(Default, Debug)]
pub struct AccessRecord {
    upstream_us: AtomicU64,
    /// The last upstream answer's status; 0 when none came.
    upstream_status: std::sync::atomic::AtomicU16,
    flags: AtomicU8,
    owner_hash: AtomicU64,
}

/// The record as the request and the access log share it.
pub type Record = Arc<AccessRecord>;

impl AccessRecord {
    pub fn add_upstream(&self, d: Duration) {
        self.upstream_us
            .fetch_add(d.as_micros() as u64, Ordering::Relaxed);
    }
    pub fn shorthand(&self) {
        self.flags.fetch_or(SHORTHAND, Ordering::Relaxed);
    }
    pub fn implicit(&self) {
        self.flags.fetch_or(IMPLICIT, Ordering::Relaxed);
    }
    pub fn owner(&self, owner: OwnerId) {
        self.owner_hash
            .store(owner_hash(owner).max(1), Ordering::Relaxed);
    }
    pub fn upstream_us(&self) -> u64 {
        self.upstream_us.load(Ordering::Relaxed)
    }
    pub fn set_upstream_status(&self, status: http::StatusCode) {
        self.upstream_status
            .store(status.as_u16(), Ordering::Relaxed);
    }
    /// The last upstream answer's status, when one came.
    pub fn upstream_status(&self) -> Option<u16> {
        match self.upstream_status.load(Ordering::Relaxed) {
            0 => None,
            s => Some(s),
        }
    }
    pub fn used_shorthand(&self) -> bool {
        self.flags.load(Ordering::Relaxed) & SHORTHAND != 0
    }
    pub fn created_implicitly(&self) -> bool {
        self.flags.load(Ordering::Relaxed) & IMPLICIT != 0
    }
    /// The owner's hash, when an owner was seen.
    pub fn owner_hash(&self) -> Option<u64> {
        match self.owner_hash.load(Ordering::Relaxed) {
            0 => None,
            h => Some(h),
        }
    }
}

/// A stable, one-way hash of an owner id, so log lines of one owner can be
/// told apart without the id itself (the id is the owner's credential).
pub fn owner_hash(owner: OwnerId) -> u64 {
    use std::hash::{Hash, Hasher};
    let mut h = std::collections::hash_map::DefaultHasher::new();
    ("ordergate-owner", owner.as_u128()).hash(&mut h);
    h.finish()
}

// ---- the layer --------------------------------------------------------------

/// Puts [`Facts`] on every request.
#[derive(Clone)]
pub struct FactsLayer {
    trusted_proxies: Arc<[IpAddr]>,
    records: bool,
}

impl FactsLayer {
    /// `records`: whether requests get an access record (the access log is on).
    pub fn new(trusted_proxies: &[IpAddr], records: bool) -> Self {
        Self {
            trusted_proxies: trusted_proxies.into(),
            records,
        }
    }
}

impl<S> Layer<S> for FactsLayer {
    type Service = FactsService<S>;
    fn layer(&self, inner: S) -> FactsService<S> {
        FactsService {
            inner,
            trusted_proxies: Arc::clone(&self.trusted_proxies),
            records: self.records,
        }
    }
}

#[derive(Clone)]
pub struct FactsService<S> {
    inner: S,
    trusted_proxies: Arc<[IpAddr]>,
    records: bool,
}

impl<S, B, RB> Service<Request<B>> for FactsService<S>
where
    S: Service<Request<B>, Response = Response<RB>>,
{
    type Response = Response<RB>;
    type Error = S::Error;
    type Future = S::Future;

    fn poll_ready(&mut self, cx: &mut Context<'_>) -> Poll<Result<(), S::Error>> {
        self.inner.poll_ready(cx)
    }

    fn call(&mut self, mut req: Request<B>) -> S::Future {
        let (peer, request_id) = match req.extensions_mut().get_mut::<Facts>() {
            Some(known) => (known.peer, known.request_id.take()),
            None => (None, None),
        };
        let record = self.records.then(Record::default);
        let mut facts = Facts::new(
            req.uri().path(),
            req.headers(),
            peer,
            &self.trusted_proxies,
            record,
        );
        facts.request_id = request_id;
        // In the server's place: the request's one extension.
        match req.extensions_mut().get_mut::<Facts>() {
            Some(known) => *known = facts,
            None => {
                req.extensions_mut().insert(facts);
            }
        }
        self.inner.call(req)
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use http::HeaderValue;

    fn peer(ip: &str) -> Option<Peer> {
        Some(Peer {
            addr: SocketAddr::new(ip.parse().unwrap(), 4000),
            tls: false,
        })
    }

    #[test]
    fn client_ip_believes_forwarded_for_only_from_trusted_proxies() {
        let trusted: Vec<IpAddr> = vec!["10.0.0.1".parse().unwrap(), "10.0.0.2".parse().unwrap()];
        let mut h = HeaderMap::new();
        h.append(
            "x-forwarded-for",
            HeaderValue::from_static("1.1.1.1, 2.2.2.2"),
        );
        h.append("x-forwarded-for", HeaderValue::from_static("10.0.0.2"));
        let from = |ip: &str| Facts::new("/", &h, peer(ip), &trusted, None);
        // From a trusted proxy: the last address that is not a proxy.
        let f = from("10.0.0.1");
        assert!(f.peer_trusted);
        assert_eq!(f.client_ip, Some("2.2.2.2".parse().unwrap()));
        // From anyone else: the peer, whatever the header says.
        let f = from("3.3.3.3");
        assert!(!f.peer_trusted);
        assert_eq!(f.client_ip, Some("3.3.3.3".parse().unwrap()));
        // A trusted proxy that forwards nothing usable: the proxy itself.
        let empty = Facts::new("/", &HeaderMap::new(), peer("10.0.0.1"), &trusted, None);
        assert_eq!(empty.client_ip, Some("10.0.0.1".parse().unwrap()));
    }

    #[test]
    fn route_and_owner_are_read_once_into_the_facts() {
        let mut h = HeaderMap::new();
        h.insert(
            http::header::COOKIE,
            HeaderValue::from_static("OwnerId=not-a-uuid"),
        );
        let f = Facts::new("/order/%2e%2e/x", &h, None, &[], None);
        assert_eq!(f.route, Err(PathError::DotSegment));
        assert_eq!(f.owner, Err(CookieError::Invalid));
        assert_eq!(f.valid_owner(), None);
        assert_eq!(f.client_ip, None);
    }

    #[tokio::test]
    async fn the_layer_puts_facts_on_the_request() {
        use tower::ServiceExt;
        let svc =
            FactsLayer::new(&[], true).layer(tower::service_fn(|req: Request<()>| async move {
                let f = Facts::of(&req);
                let out = format!(
                    "{:?} {:?} {} {:?} {}",
                    f.route,
                    f.client_ip,
                    f.record.is_some(),
                    f.request_id,
                    req.extensions().len()
                );
                Ok::<_, std::convert::Infallible>(Response::new(out))
            }));
        // What the server and the request-id layer put on it is kept, and
        // the facts stay the request's one extension.
        let mut req = Request::builder().uri("/orders").body(()).unwrap();
        req.extensions_mut()
            .insert(Facts::of_peer(peer("127.0.0.9")));
        Facts::settle(&mut req).request_id = Some(HeaderValue::from_static("id-1"));
        let resp = svc.clone().oneshot(req).await.unwrap();
        assert_eq!(
            resp.body(),
            "Ok(Orders) Some(127.0.0.9) true Some(\"id-1\") 1"
        );
        // A request with none: facts made here.
        let req = Request::builder().uri("/order").body(()).unwrap();
        let resp = svc.oneshot(req).await.unwrap();
        assert_eq!(resp.body(), "Ok(Shorthand { rest: \"\" }) None true None 1");
    }
}

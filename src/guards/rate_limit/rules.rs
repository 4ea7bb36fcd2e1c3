//! Rate limits: GCRA quotas per route and key, with governor, or in Redis
//! for rules shared by every replica.
//!
//! Each [`Rule`] matches requests by method and path pattern and keys them
//! by owner, client IP, Basic-auth principal or a header (falling back to the
//! client IP when the request has no usable key, so a missing or malformed
//! key never escapes the limit). Memory stays bounded: idle keys are evicted
//! by [`RateLimits::sweep`], and past a rule's key cap new keys share one
//! overflow bucket until a sweep makes room.
//!
//! A `scope = "global"` rule is the same GCRA evaluated by one Lua script in
//! Redis per check, on Redis's own clock, so N replicas together let through
//! the configured quota, not N times it. [`RateLimits::evaluate`] does the
//! local part without I/O (and, with `local_precheck`, refuses what this
//! replica alone already knows is over the quota); [`RateLimits::finish`]
//! asks Redis. Keys in Redis are a SHA-1 of the key's value, never the
//! client's address or name in clear. When Redis fails, `on_redis_error`
//! decides: fail-open counts the request on this replica's own limiter (a
//! warning now and then, and [`RateLimits::fail_open_count`]), fail-closed
//! refuses it with 503.

use crate::config::{KeyKind, OnRedisError, RateLimitsConfig, RuleSpec, Scope};
use crate::owners::OwnerId;
use crate::redis_pool::{RedisError, RedisPool, Throttle};
use base64::Engine;
use governor::clock::{Clock, DefaultClock};
use governor::middleware::StateInformationMiddleware;
use governor::state::keyed::DashMapStateStore;
use governor::{Quota, RateLimiter};
use http::{HeaderMap, HeaderValue, Method};
use std::hash::BuildHasher;
use std::net::IpAddr;
use std::sync::Arc;
use std::sync::atomic::{AtomicU64, Ordering};
use std::time::Duration;

/// A rule's GCRA quota for governor.
fn quota(spec: &RuleSpec) -> Quota {
    Quota::with_period(spec.interval())
        .unwrap_or_else(|| Quota::per_second(spec.rate))
        .allow_burst(spec.burst)
}

/// The answer of one rule.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Decision {
    /// Let through; `remaining` more fit now, the bucket is full again in `reset`.
    Allowed { remaining: u32, reset: Duration },
    /// Over the limit: retry after `wait`.
    Denied { wait: Duration },
}

type Limiter<C> = RateLimiter<u64, DashMapStateStore<u64>, C, StateInformationMiddleware>;

/// The key every request shares once a rule's key cap is reached.
const OVERFLOW: u64 = u64::MAX;

pub struct Rule<C: Clock = DefaultClock> {
    pub spec: RuleSpec,
    limiter: Limiter<C>,
    clock: C,
    /// `RateLimit-Policy` value, built once.
    pub policy: HeaderValue,
    last_sweep: AtomicU64,
}

impl<C: Clock + Clone> Rule<C> {
    pub fn new(spec: RuleSpec, clock: C) -> Self {
        let limiter = RateLimiter::dashmap_with_clock(quota(&spec), clock.clone())
            .with_middleware::<StateInformationMiddleware>();
        let policy = format!(
            "\"{}\";q={};w={}",
            spec.name,
            spec.rate,
            spec.per.as_secs().max(1)
        );
        let policy = HeaderValue::from_str(&policy)
            .unwrap_or_else(|_| HeaderValue::from_static("\"limit\""));
        Self {
            spec,
            limiter,
            clock,
            policy,
            last_sweep: AtomicU64::new(0),
        }
    }

    /// Counts one request for `key`.
    pub fn check(&self, key: u64) -> Decision {
        let key = if self.limiter.len() >= self.spec.max_keys {
            self.make_room();
            if self.limiter.len() >= self.spec.max_keys {
                OVERFLOW
            } else {
                key
            }
        } else {
            key
        };
        match self.limiter.check_key(&key) {
            Ok(snapshot) => {
                let remaining = snapshot.remaining_burst_capacity();
                let missing = self.spec.burst.get().saturating_sub(remaining + 1);
                let reset = (self.spec.per / self.spec.rate.get()) * (missing + 1);
                Decision::Allowed { remaining, reset }
            }
            Err(not_until) => Decision::Denied {
                wait: not_until.wait_time_from(self.clock.now()),
            },
        }
    }

    /// Evicts idle keys, at most once a second from the request path.
    fn make_room(&self) {
        let now = crate::clock::now_ms();
        let last = self.last_sweep.load(Ordering::Relaxed);
        if now.saturating_sub(last) >= 1000
            && self
                .last_sweep
                .compare_exchange(last, now, Ordering::Relaxed, Ordering::Relaxed)
                .is_ok()
        {
            self.sweep();
        }
    }

    /// Forgets keys whose bucket is full again: they hold no information.
    pub fn sweep(&self) {
        self.limiter.retain_recent();
        self.limiter.shrink_to_fit();
    }

    pub fn keys(&self) -> usize {
        self.limiter.len()
    }
}

/// The outcome of every rule that matched a request.
#[derive(Debug, Clone)]
pub struct Verdict {
    /// The rule that decides the headers: the denying one, or the one with
    /// the least room left.
    pub rule: usize,
    pub decision: Decision,
}

/// All configured rules.
pub struct RateLimits<C: Clock = DefaultClock> {
    pub rules: Vec<Rule<C>>,
    hasher: std::collections::hash_map::RandomState,
    /// Where global rules are counted; without it they count locally.
    global: Option<Global>,
}

struct Global {
    pool: RedisPool,
    on_error: OnRedisError,
    local_precheck: bool,
    fail_open: Arc<AtomicU64>,
    warn: Throttle,
}

/// One global rule's check, still to be asked of Redis.
#[derive(Debug)]
pub struct GlobalCheck {
    rule: usize,
    key: String,
    /// The key on this replica's own limiter, for fail-open.
    local_key: u64,
    /// This replica's decision, when the precheck already counted it.
    local: Option<Decision>,
}

/// The local part of a request's check: the verdict so far and the global
/// rules still to ask.
#[derive(Debug)]
pub struct Evaluation {
    pub verdict: Option<Verdict>,
    pub global: Vec<GlobalCheck>,
}

/// Redis could not be asked and the rules fail closed.
#[derive(Debug, thiserror::Error)]
#[error("the shared rate limits cannot be checked: {0}")]
pub struct Unavailable(RedisError);

/// KEYS: the bucket. ARGV: emission interval in µs, burst. Returns
/// `{allowed, remaining, µs}`: µs is the time until the bucket is full again
/// when allowed, the wait before a retry when not. Times are Redis's own
/// (`TIME`), so the replicas' clocks do not matter; numbers are written with
/// `%.0f` as Lua's default formatting would round µs since the epoch.
static GCRA: std::sync::LazyLock<redis::Script> = std::sync::LazyLock::new(|| {
    redis::Script::new(
        r"
local t = redis.call('TIME')
local now = tonumber(t[1]) * 1000000 + tonumber(t[2])
local interval = tonumber(ARGV[1])
local burst = tonumber(ARGV[2])
local tat = tonumber(redis.call('GET', KEYS[1]))
if not tat or tat < now then tat = now end
local new_tat = tat + interval
local allow_at = new_tat - burst * interval
if allow_at > now then
  return {0, 0, allow_at - now}
end
redis.call('SET', KEYS[1], string.format('%.0f', new_tat), 'PX', math.ceil((new_tat - now) / 1000) + 1)
return {1, math.floor((now - allow_at) / interval), new_tat - now}
",
    )
});

impl RateLimits<DefaultClock> {
    pub fn new(specs: Vec<RuleSpec>) -> Self {
        Self::with_clock(specs, DefaultClock::default())
    }
}

/// What the rules read of a request: the request facts' owner and client
/// address, and the head.
#[derive(Clone, Copy)]
pub struct Subject<'a> {
    pub method: &'a Method,
    pub path: &'a str,
    pub headers: &'a HeaderMap,
    pub owner: Option<OwnerId>,
    pub client_ip: Option<IpAddr>,
}

/// Who a request is counted as, before hashing.
enum KeySource<'a> {
    Owner(u128),
    Principal(String),
    Header(&'a [u8]),
    Ip(Option<IpAddr>),
}

impl<C: Clock + Clone> RateLimits<C> {
    pub fn with_clock(specs: Vec<RuleSpec>, clock: C) -> Self {
        Self {
            rules: specs
                .into_iter()
                .map(|s| Rule::new(s, clock.clone()))
                .collect(),
            hasher: Default::default(),
            global: None,
        }
    }

    /// Counts `scope = "global"` rules in Redis (with a pool; without one they
    /// stay local).
    pub fn with_redis(mut self, pool: Option<RedisPool>, config: &RateLimitsConfig) -> Self {
        self.global = pool.map(|pool| Global {
            pool,
            on_error: config.on_redis_error,
            local_precheck: config.local_precheck,
            fail_open: Arc::default(),
            warn: Throttle::new(Duration::from_secs(10)),
        });
        self
    }

    /// Counts fail-open requests in `counter` (shared with the rate limits
    /// of other configurations, so the count survives a reload).
    pub fn counting_fail_opens_in(mut self, counter: Arc<AtomicU64>) -> Self {
        if let Some(g) = &mut self.global {
            g.fail_open = counter;
        }
        self
    }

    /// Whether a request to this rule must be asked of Redis.
    fn is_global(&self, rule: &Rule<C>) -> bool {
        rule.spec.scope == Scope::Global && self.global.is_some()
    }

    pub fn is_empty(&self) -> bool {
        self.rules.is_empty()
    }

    /// Checks a request against every matching rule; `None` when none
    /// match. Global rules are counted locally here: see [`Self::evaluate`]
    /// for the check that asks Redis.
    pub fn check(&self, req: &Subject<'_>) -> Option<Verdict> {
        let mut verdict: Option<Verdict> = None;
        for (i, rule) in self.rules.iter().enumerate() {
            if rule.spec.matches(req.method, req.path) {
                let decision = rule.check(self.key(&rule.spec.key, req));
                tighten(&mut verdict, i, decision);
            }
        }
        verdict
    }

    /// The local part of a request's check, without I/O: local rules are
    /// decided, global ones are listed for [`Self::finish`] (none when a rule
    /// already refuses the request).
    pub fn evaluate(&self, req: &Subject<'_>) -> Evaluation {
        let mut verdict: Option<Verdict> = None;
        let mut global = Vec::new();
        let precheck = self.global.as_ref().is_some_and(|g| g.local_precheck);
        for (i, rule) in self.rules.iter().enumerate() {
            if !rule.spec.matches(req.method, req.path) {
                continue;
            }
            let local_key = self.key(&rule.spec.key, req);
            if !self.is_global(rule) {
                tighten(&mut verdict, i, rule.check(local_key));
                continue;
            }
            // This replica's own count is a lower bound of the global one:
            // over the quota here is over it everywhere.
            let local = precheck.then(|| rule.check(local_key));
            if let Some(d @ Decision::Denied { .. }) = local {
                tighten(&mut verdict, i, d);
                continue;
            }
            let source = Self::source(&rule.spec.key, req);
            global.push(GlobalCheck {
                rule: i,
                key: self.global_key(&rule.spec.name, &source),
                local_key,
                local,
            });
        }
        if matches!(
            verdict,
            Some(Verdict {
                decision: Decision::Denied { .. },
                ..
            })
        ) {
            global.clear();
        }
        Evaluation { verdict, global }
    }

    /// Asks Redis for the global rules of an evaluation, and gives the
    /// request's verdict.
    pub async fn finish(&self, eval: Evaluation) -> Result<Option<Verdict>, Unavailable> {
        let mut verdict = eval.verdict;
        let Some(global) = &self.global else {
            return Ok(verdict);
        };
        for check in eval.global {
            let rule = &self.rules[check.rule];
            let decision = match self.ask(global, rule, &check.key).await {
                Ok(d) => d,
                Err(e) => match global.on_error {
                    OnRedisError::FailClosed => {
                        if global.warn.ready() {
                            tracing::warn!(error = %e, rule = rule.spec.name, "Redis unavailable: requests under global rate limits refused (fail_closed)");
                        }
                        return Err(Unavailable(e));
                    }
                    OnRedisError::FailOpen => {
                        global.fail_open.fetch_add(1, Ordering::Relaxed);
                        if global.warn.ready() {
                            tracing::warn!(error = %e, rule = rule.spec.name, "Redis unavailable: global rate limits counted on this replica only (fail_open)");
                        }
                        check.local.unwrap_or_else(|| rule.check(check.local_key))
                    }
                },
            };
            let denied = matches!(decision, Decision::Denied { .. });
            tighten(&mut verdict, check.rule, decision);
            if denied {
                break;
            }
        }
        Ok(verdict)
    }

    async fn ask(
        &self,
        global: &Global,
        rule: &Rule<C>,
        key: &str,
    ) -> Result<Decision, RedisError> {
        let interval = rule.spec.interval().as_micros().max(1) as u64;
        let (allowed, remaining, micros): (i64, i64, i64) = global
            .pool
            .script(GCRA.key(key).arg(interval).arg(rule.spec.burst.get()))
            .await?;
        let micros = Duration::from_micros(micros.max(0) as u64);
        Ok(if allowed == 1 {
            Decision::Allowed {
                remaining: remaining.clamp(0, i64::from(u32::MAX)) as u32,
                reset: micros,
            }
        } else {
            Decision::Denied { wait: micros }
        })
    }

    /// Whether Redis answers, when global rules use it (for readiness).
    pub async fn ping(&self) -> Result<(), RedisError> {
        match &self.global {
            Some(g) => g.pool.ping().await,
            None => Ok(()),
        }
    }

    /// Requests counted on this replica only because Redis failed (fail-open).
    pub fn fail_open_count(&self) -> u64 {
        self.global
            .as_ref()
            .map_or(0, |g| g.fail_open.load(Ordering::Relaxed))
    }

    /// The Redis key of a global rule's bucket: the rule's name (letters,
    /// digits, `-_.`, checked at load) and a digest of who is counted.
    fn global_key(&self, rule: &str, source: &KeySource<'_>) -> String {
        let prefix = self.global.as_ref().map_or("", |g| g.pool.prefix());
        let mut digest = sha1_smol::Sha1::new();
        match source {
            KeySource::Owner(o) => {
                digest.update(b"o");
                digest.update(&o.to_be_bytes());
            }
            KeySource::Principal(p) => {
                digest.update(b"p");
                digest.update(p.as_bytes());
            }
            KeySource::Header(v) => {
                digest.update(b"h");
                digest.update(v);
            }
            KeySource::Ip(ip) => {
                digest.update(b"i");
                match ip {
                    Some(IpAddr::V4(a)) => digest.update(&a.octets()),
                    Some(IpAddr::V6(a)) => digest.update(&a.octets()),
                    None => {}
                }
            }
        }
        format!("{prefix}rl:{rule}:{}", digest.digest())
    }

    /// Who a rule counts this request as: by its kind of key, or by the
    /// client's address when the request has no usable key of that kind.
    fn source<'h>(kind: &KeyKind, req: &Subject<'h>) -> KeySource<'h> {
        let found = match kind {
            KeyKind::Owner => req.owner.map(|o| KeySource::Owner(o.as_u128())),
            KeyKind::Principal => principal(req.headers).map(KeySource::Principal),
            KeyKind::Header(name) => req
                .headers
                .get(name)
                .map(|v| KeySource::Header(v.as_bytes())),
            KeyKind::ClientIp => None,
        };
        found.unwrap_or(KeySource::Ip(req.client_ip))
    }

    /// The key a rule counts this request by.
    pub fn key(&self, kind: &KeyKind, req: &Subject<'_>) -> u64 {
        match Self::source(kind, req) {
            KeySource::Owner(o) => self.hasher.hash_one((1u8, o)),
            KeySource::Principal(p) => self.hasher.hash_one((2u8, p)),
            KeySource::Header(v) => self.hasher.hash_one((3u8, v)),
            KeySource::Ip(ip) => self.hasher.hash_one((0u8, ip)),
        }
    }

    pub fn sweep(&self) {
        self.rules.iter().for_each(Rule::sweep);
    }

    pub fn keys(&self) -> usize {
        self.rules.iter().map(Rule::keys).sum()
    }
}

/// Keeps in `verdict` the rule that decides the headers: the first denying
/// one, else the one with the least room left.
fn tighten(verdict: &mut Option<Verdict>, rule: usize, decision: Decision) {
    let tighter = match (&*verdict, decision) {
        (None, _) => true,
        (Some(v), Decision::Denied { .. }) => !matches!(v.decision, Decision::Denied { .. }),
        (Some(v), Decision::Allowed { remaining, .. }) => {
            matches!(v.decision, Decision::Allowed { remaining: r, .. } if remaining < r)
        }
    };
    if tighter {
        *verdict = Some(Verdict { rule, decision });
    }
}

/// The user name of a `Basic` Authorization header.
fn principal(headers: &HeaderMap) -> Option<String> {
    let value = headers.get(http::header::AUTHORIZATION)?.to_str().ok()?;
    let (scheme, token) = value.trim().split_once(' ')?;
    if !scheme.eq_ignore_ascii_case("basic") {
        return None;
    }
    let decoded = base64::engine::general_purpose::STANDARD
        .decode(token.trim())
        .ok()?;
    let text = String::from_utf8(decoded).ok()?;
    let user = text.split_once(':').map_or(text.as_str(), |(u, _)| u);
    (!user.is_empty()).then(|| user.to_owned())
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::config::PathPattern;
    use crate::owners::owner_from_headers;
    use governor::clock::FakeRelativeClock;
    use http::HeaderName;
    use http::HeaderValue;
    use std::num::NonZeroU32;

    /// A request as the facts layer would describe it.
    fn subject<'a>(
        method: &'a Method,
        path: &'a str,
        headers: &'a HeaderMap,
        client_ip: Option<IpAddr>,
    ) -> Subject<'a> {
        Subject {
            method,
            path,
            headers,
            owner: owner_from_headers(headers).ok().flatten(),
            client_ip,
        }
    }

    fn spec(key: KeyKind, rate: u32, per_secs: u64, burst: u32) -> RuleSpec {
        RuleSpec {
            name: "test".into(),
            methods: vec![Method::POST],
            paths: vec![
                PathPattern::parse("/orders").unwrap(),
                PathPattern::parse("/order/*").unwrap(),
            ],
            key,
            rate: NonZeroU32::new(rate).unwrap(),
            per: Duration::from_secs(per_secs),
            burst: NonZeroU32::new(burst).unwrap(),
            max_keys: 1000,
            scope: Scope::Local,
        }
    }

    fn ip(n: u8) -> Option<IpAddr> {
        Some(IpAddr::from([10, 0, 0, n]))
    }

    #[test]
    fn patterns() {
        let p = PathPattern::parse("/order/*").unwrap();
        assert!(p.matches("/order") && p.matches("/order/account") && !p.matches("/orders"));
        let e = PathPattern::parse("/orders").unwrap();
        assert!(e.matches("/orders") && e.matches("/orders/") && !e.matches("/orders/x"));
        assert!(PathPattern::parse("*").unwrap().matches("/anything"));
        for bad in ["orders", "/a*b", "/a/*/b/*", "/*x"] {
            assert!(PathPattern::parse(bad).is_none(), "{bad}");
        }
    }

    #[test]
    fn burst_then_refill_with_a_fake_clock() {
        let clock = FakeRelativeClock::default();
        let limits = RateLimits::with_clock(vec![spec(KeyKind::ClientIp, 1, 10, 3)], clock.clone());
        let h = HeaderMap::new();
        let check = || {
            limits
                .check(&subject(&Method::POST, "/orders", &h, ip(1)))
                .unwrap()
                .decision
        };
        for left in [2, 1, 0] {
            assert!(matches!(check(), Decision::Allowed { remaining, .. } if remaining == left));
        }
        let Decision::Denied { wait } = check() else {
            panic!("fourth let through")
        };
        assert_eq!(wait, Duration::from_secs(10));
        clock.advance(Duration::from_secs(10));
        assert!(matches!(check(), Decision::Allowed { remaining: 0, .. }));
        // Other routes and methods are not counted.
        assert!(
            limits
                .check(&subject(&Method::GET, "/orders", &h, ip(1)))
                .is_none()
        );
        assert!(
            limits
                .check(&subject(&Method::POST, "/accounts", &h, ip(1)))
                .is_none()
        );
    }

    #[test]
    fn keys_isolate_clients_and_bad_keys_fall_back_to_the_ip() {
        let clock = FakeRelativeClock::default();
        let limits = RateLimits::with_clock(vec![spec(KeyKind::Owner, 1, 60, 1)], clock);
        let with = |cookie: &str| {
            let mut h = HeaderMap::new();
            h.insert(http::header::COOKIE, HeaderValue::from_str(cookie).unwrap());
            h
        };
        let a = with("OwnerId=4d84cd13-bbb3-46ba-a40c-8988351e3681");
        let b = with("OwnerId=73adb746-2443-4cc8-879e-886348385b9a");
        let bad = with("OwnerId=garbage");
        let allowed = |h: &HeaderMap, n| {
            matches!(
                limits
                    .check(&subject(&Method::POST, "/orders", h, ip(n)))
                    .unwrap()
                    .decision,
                Decision::Allowed { .. }
            )
        };
        assert!(allowed(&a, 1));
        assert!(
            !allowed(&a, 2),
            "same owner from another address is the same key"
        );
        assert!(allowed(&b, 1));
        // A malformed key counts against the client's address.
        assert!(allowed(&bad, 3));
        assert!(!allowed(&bad, 3));
        assert!(!allowed(&HeaderMap::new(), 3));
        assert!(allowed(&HeaderMap::new(), 4));
    }

    #[test]
    fn principal_and_header_keys() {
        let limits = RateLimits::new(vec![]);
        let mut h = HeaderMap::new();
        // "alice:secret"
        h.insert(
            http::header::AUTHORIZATION,
            HeaderValue::from_static("Basic YWxpY2U6c2VjcmV0"),
        );
        let alice = limits.key(&KeyKind::Principal, &subject(&Method::GET, "/", &h, ip(1)));
        h.insert(
            http::header::AUTHORIZATION,
            HeaderValue::from_static("Basic YWxpY2U6b3RoZXI="),
        ); // alice:other
        assert_eq!(
            limits.key(&KeyKind::Principal, &subject(&Method::GET, "/", &h, ip(2))),
            alice
        );
        for bad in ["Basic !!!notbase64", "Bearer abc", "Basic", "Basic Og=="] {
            h.insert(http::header::AUTHORIZATION, HeaderValue::from_static(bad));
            assert_eq!(
                limits.key(&KeyKind::Principal, &subject(&Method::GET, "/", &h, ip(1))),
                limits.key(&KeyKind::ClientIp, &subject(&Method::GET, "/", &h, ip(1))),
                "{bad}"
            );
        }
        let name = HeaderName::from_static("x-api-key");
        h.insert(name.clone(), HeaderValue::from_static("k1"));
        assert_ne!(
            limits.key(
                &KeyKind::Header(name.clone()),
                &subject(&Method::GET, "/", &h, ip(1))
            ),
            limits.key(&KeyKind::ClientIp, &subject(&Method::GET, "/", &h, ip(1)))
        );
    }

    #[test]
    fn without_redis_global_rules_count_locally() {
        let mut s = spec(KeyKind::ClientIp, 1, 60, 1);
        s.scope = Scope::Global;
        let limits = RateLimits::with_clock(vec![s], FakeRelativeClock::default());
        let h = HeaderMap::new();
        let eval = limits.evaluate(&subject(&Method::POST, "/orders", &h, ip(1)));
        assert!(eval.global.is_empty());
        assert!(matches!(
            eval.verdict.unwrap().decision,
            Decision::Allowed { .. }
        ));
        let eval = limits.evaluate(&subject(&Method::POST, "/orders", &h, ip(1)));
        assert!(matches!(
            eval.verdict.unwrap().decision,
            Decision::Denied { .. }
        ));
    }

    #[test]
    fn redis_keys_name_the_rule_and_hide_the_client() {
        let limits = RateLimits::new(vec![]);
        let h = HeaderMap::new();
        let a = limits.global_key(
            "r",
            &RateLimits::<DefaultClock>::source(
                &KeyKind::ClientIp,
                &subject(&Method::GET, "/", &h, ip(7)),
            ),
        );
        let b = limits.global_key(
            "r",
            &RateLimits::<DefaultClock>::source(
                &KeyKind::ClientIp,
                &subject(&Method::GET, "/", &h, ip(8)),
            ),
        );
        assert!(
            a.starts_with("rl:r:") && a.len() == "rl:r:".len() + 40,
            "{a}"
        );
        assert_ne!(a, b);
        assert!(!a.contains("10.0.0.7"));
        // Stable across processes: the same client is the same bucket on
        // every replica.
        let again = RateLimits::new(vec![]);
        assert_eq!(
            again.global_key(
                "r",
                &RateLimits::<DefaultClock>::source(
                    &KeyKind::ClientIp,
                    &subject(&Method::GET, "/", &h, ip(7))
                )
            ),
            a
        );
    }

    #[test]
    fn key_memory_is_capped() {
        let clock = FakeRelativeClock::default();
        let mut s = spec(KeyKind::ClientIp, 1, 60, 1);
        s.max_keys = 100;
        let rule = Rule::new(s, clock);
        for k in 0..10_000u64 {
            rule.check(k);
        }
        assert!(rule.keys() <= 101, "{} keys", rule.keys());
    }
}

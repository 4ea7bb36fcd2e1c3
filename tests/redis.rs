#![allow(clippy::unwrap_used, clippy::expect_used)]
//! Scale-out on Redis: the owner store, creation leases, global rate limits
//! and Redis failures, with several gateway replicas in one test, each
//! against a real `redis-server` started for the test.

mod support;

use http::Method;
use ordergate::config::{OnRedisError, RedisConfig};
use ordergate::owners::lease::Leases;
use ordergate::owners::{OrderId, OwnerId, OwnerStore, RedisStore};
use ordergate::redis_pool::RedisPool;
use std::collections::HashSet;
use std::time::{Duration, Instant};
use support::redis_server::RedisServer;
use support::*;

fn redis_config(url: &str, prefix: &str, on_error: OnRedisError) -> RedisConfig {
    RedisConfig {
        url: url.to_owned(),
        ca_pem: None,
        password: None,
        key_prefix: prefix.to_owned(),
        pool_size: 2,
        order_cache: 1024,
        connect_timeout: Duration::from_millis(300),
        command_timeout: Duration::from_millis(300),
        lease_ttl: Duration::from_secs(10),
        on_error,
    }
}

fn store(config: &RedisConfig) -> RedisStore {
    RedisStore::new(RedisPool::new(config).unwrap(), config)
}

/// The `[store]` table of a replica on `redis`, failing as `on_error` says,
/// with short timeouts so that Redis failures show quickly.
fn store_table(redis: &RedisServer, on_error: &str) -> String {
    format!(
        "[store]\nkind = \"redis\"\nurl = \"{}\"\nkey_prefix = \"og:\"\npool_size = 2\nconnect_timeout_ms = 300\ncommand_timeout_ms = 300\non_redis_error = \"{on_error}\"\n",
        redis.url()
    )
}

async fn timed(f: impl std::future::Future<Output = Answer>) -> Answer {
    let start = Instant::now();
    let a = f.await;
    assert!(
        start.elapsed() < Duration::from_secs(3),
        "answered in {:?}: {a:?}",
        start.elapsed()
    );
    a
}

#[tokio::test]
async fn store_conformance_on_redis() {
    let redis = RedisServer::start().await;
    let store = store(&redis_config(
        &redis.url(),
        "conf:",
        OnRedisError::FailClosed,
    ));
    ordergate::owners::conformance::run(&store).await;
    // Another prefix is another store on the same server.
    let other = self::store(&redis_config(
        &redis.url(),
        "other:",
        OnRedisError::FailClosed,
    ));
    ordergate::owners::conformance::run(&other).await;
    for key in redis.keys().await {
        assert!(
            key.starts_with("conf:") || key.starts_with("other:"),
            "{key}"
        );
    }
    assert_eq!(store.fail_open_count(), 0);
}

#[tokio::test]
async fn associations_written_by_one_replica_are_seen_by_another_at_once() {
    let redis = RedisServer::start().await;
    let config = redis_config(&redis.url(), "og:", OnRedisError::FailClosed);
    let (a, b) = (store(&config), store(&config));
    let owner = OwnerId::mint();
    let order = OrderId::parse("o1").unwrap();
    a.put(owner, &order, 5).await.unwrap();
    assert_eq!(b.get(owner).await.unwrap().unwrap().order, order);
    assert_eq!(b.end_order(&order).await.unwrap(), Some(owner));
    assert_eq!(a.get(owner).await.unwrap(), None);
    assert_eq!(a.owner_of(&order).await.unwrap(), None);
}

/// How many `GET`s the server has run (`INFO commandstats`).
async fn gets(redis: &RedisServer) -> u64 {
    let client = redis::Client::open(redis.url()).unwrap();
    let mut conn = client.get_multiplexed_async_connection().await.unwrap();
    let info: String = redis::cmd("INFO")
        .arg("commandstats")
        .query_async(&mut conn)
        .await
        .unwrap();
    info.lines()
        .find_map(|l| l.strip_prefix("cmdstat_get:calls="))
        .and_then(|rest| rest.split(',').next())
        .map_or(0, |n| n.parse().unwrap())
}

/// Closes, from the server's side, every connection with tracking on;
/// returns how many.
async fn kill_tracking_connections(redis: &RedisServer) -> usize {
    let client = redis::Client::open(redis.url()).unwrap();
    let mut conn = client.get_multiplexed_async_connection().await.unwrap();
    let list: String = redis::cmd("CLIENT")
        .arg("LIST")
        .query_async(&mut conn)
        .await
        .unwrap();
    let ids: Vec<&str> = list
        .lines()
        .filter(|l| {
            l.split(' ')
                .any(|f| f.strip_prefix("flags=").is_some_and(|f| f.contains('t')))
        })
        .filter_map(|l| l.split(' ').find_map(|f| f.strip_prefix("id=")))
        .collect();
    for id in &ids {
        let _: i64 = redis::cmd("CLIENT")
            .arg("KILL")
            .arg("ID")
            .arg(*id)
            .query_async(&mut conn)
            .await
            .unwrap();
    }
    ids.len()
}

/// Waits (at most 3 s) until `store` answers `owner_of(order)` with `want`.
async fn owner_of_becomes(store: &RedisStore, order: &OrderId, want: Option<OwnerId>) {
    let start = Instant::now();
    while store.owner_of(order).await.unwrap() != want {
        assert!(
            start.elapsed() < Duration::from_secs(3),
            "owner_of({order}) never became {want:?}"
        );
        tokio::time::sleep(Duration::from_millis(5)).await;
    }
}

/// Waits until `store` answers `owner_of(order)` without asking Redis
/// (its tracking connection opens in the background).
async fn kept_locally(redis: &RedisServer, store: &RedisStore, order: &OrderId) {
    let start = Instant::now();
    loop {
        let before = gets(redis).await;
        store.owner_of(order).await.unwrap();
        if gets(redis).await == before {
            return;
        }
        assert!(
            start.elapsed() < Duration::from_secs(3),
            "owner_of({order}) still asks Redis"
        );
    }
}

#[tokio::test]
async fn passthrough_lookups_are_kept_locally_until_any_replica_changes_them() {
    let redis = RedisServer::start().await;
    let config = redis_config(&redis.url(), "og:", OnRedisError::FailClosed);
    let (a, b) = (store(&config), store(&config));
    let (o1, o2, o3) = (
        OrderId::parse("o1").unwrap(),
        OrderId::parse("o2").unwrap(),
        OrderId::parse("o3").unwrap(),
    );
    let (x, y) = (OwnerId::mint(), OwnerId::mint());

    // An untracked order, asked about again and again: Redis is asked once.
    kept_locally(&redis, &b, &o1).await;
    let before = gets(&redis).await;
    for _ in 0..100 {
        assert_eq!(b.owner_of(&o1).await.unwrap(), None);
    }
    assert_eq!(gets(&redis).await, before, "kept lookups reach Redis");

    // Another replica tracks it, then ends it: Redis's invalidations reach
    // this replica's copy.
    a.put(x, &o1, 1).await.unwrap();
    owner_of_becomes(&b, &o1, Some(x)).await;
    kept_locally(&redis, &b, &o1).await;
    assert_eq!(b.owner_of(&o1).await.unwrap(), Some(x));
    a.end_order(&o1).await.unwrap();
    owner_of_becomes(&b, &o1, None).await;

    // This replica's own writes count at once.
    kept_locally(&redis, &b, &o2).await;
    b.put(y, &o2, 2).await.unwrap();
    assert_eq!(b.owner_of(&o2).await.unwrap(), Some(y));
    kept_locally(&redis, &b, &o2).await;
    b.end_order(&o2).await.unwrap();
    assert_eq!(b.owner_of(&o2).await.unwrap(), None);

    // A flush invalidates everything read.
    a.put(y, &o2, 3).await.unwrap();
    kept_locally(&redis, &b, &o2).await;
    assert_eq!(redis.command(&["FLUSHALL"]).await.as_deref(), Some("+OK"));
    owner_of_becomes(&b, &o2, None).await;

    // A lost tracking connection forgets everything: a change Redis can no
    // longer announce to it (made after the kill) is still seen.
    kept_locally(&redis, &b, &o3).await;
    assert_eq!(
        kill_tracking_connections(&redis).await,
        2,
        "one per replica"
    );
    let x_text = x.to_string();
    redis
        .command(&["SET", "og:order:o3", &x_text])
        .await
        .unwrap();
    owner_of_becomes(&b, &o3, Some(x)).await;
    // ... and a new tracking connection keeps lookups local again.
    kept_locally(&redis, &b, &o3).await;
    assert_eq!(b.owner_of(&o3).await.unwrap(), Some(x));
}

#[tokio::test]
async fn with_no_order_cache_every_passthrough_lookup_asks_redis() {
    let redis = RedisServer::start().await;
    let mut config = redis_config(&redis.url(), "og:", OnRedisError::FailClosed);
    config.order_cache = 0;
    let store = store(&config);
    let order = OrderId::parse("o1").unwrap();
    tokio::time::sleep(Duration::from_millis(200)).await;
    let before = gets(&redis).await;
    for _ in 0..10 {
        assert_eq!(store.owner_of(&order).await.unwrap(), None);
    }
    assert_eq!(gets(&redis).await, before + 10);
}

#[tokio::test]
async fn leases_exclude_other_replicas_until_released_or_expired() {
    let redis = RedisServer::start().await;
    let mut config = redis_config(&redis.url(), "og:", OnRedisError::FailClosed);
    config.lease_ttl = Duration::from_millis(400);
    let (a, b) = (store(&config), store(&config));
    let owner = OwnerId::mint();
    assert_eq!(a.lease_ttl(), Duration::from_millis(400));
    assert!(a.try_lease(owner, 1).await.unwrap());
    assert!(!b.try_lease(owner, 2).await.unwrap());
    assert!(
        b.try_lease(OwnerId::mint(), 2).await.unwrap(),
        "other owners are free"
    );
    // Only the holder's token releases or renews it.
    b.release_lease(owner, 2).await.unwrap();
    assert!(!b.renew_lease(owner, 2).await.unwrap());
    assert!(!b.try_lease(owner, 2).await.unwrap());
    assert!(a.renew_lease(owner, 1).await.unwrap());
    a.release_lease(owner, 1).await.unwrap();
    assert!(b.try_lease(owner, 2).await.unwrap());
    // A holder that dies: the lease lapses by itself.
    let start = Instant::now();
    while !a.try_lease(owner, 3).await.unwrap() {
        assert!(
            start.elapsed() < Duration::from_secs(3),
            "lease never lapsed"
        );
        tokio::time::sleep(Duration::from_millis(20)).await;
    }
    assert!(start.elapsed() >= Duration::from_millis(200));
}

async fn concurrent_implicit_creations(replicas: usize) {
    let redis = RedisServer::start().await;
    let env = Replicas::start(replicas, &store_table(&redis, "fail_closed")).await;
    let owner = "f9cafb10-2e85-4b1a-bd69-1b1a91437d50";
    let c = cookie(owner);
    let tasks: Vec<_> = (0..200)
        .map(|i| {
            let client = env.clients[i % replicas].clone();
            let c = c.clone();
            tokio::spawn(async move {
                client
                    .send(
                        Method::PUT,
                        &format!("/order/item{i}"),
                        &[("cookie", &c)],
                        r#"{"n": 1}"#,
                    )
                    .await
            })
        })
        .collect();
    let deadline = Instant::now() + Duration::from_secs(60);
    for t in tasks {
        let a = tokio::time::timeout_at(deadline.into(), t)
            .await
            .expect("all answers within a minute")
            .unwrap();
        assert!(a.status.is_success(), "{a:?}");
        // Those that waited for the creation get the cookies too.
        if let Some(set) = a.owner() {
            assert_eq!(set, owner, "{a:?}");
        }
    }
    assert_eq!(env.creations(), 1, "exactly one upstream POST /orders");
    // Every call went to that one order, whichever replica took it.
    let orders: HashSet<String> = env
        .backend
        .state
        .seen()
        .iter()
        .filter(|s| s.method == Method::PUT)
        .map(|s| order_id(&s.path))
        .collect();
    assert_eq!(orders.len(), 1, "{orders:?}");
    let id = orders.into_iter().next().unwrap();
    assert_eq!(env.backend.state.order(&id).unwrap().children.len(), 200);
    for client in &env.clients {
        let g = client.get("/order", &[("cookie", &c)]).await;
        assert_eq!(g.status, 200, "{g:?}");
        assert_eq!(order_id(g.json()["links"][1]["href"].as_str().unwrap()), id);
    }
}

#[tokio::test]
async fn two_replicas_make_one_order_for_200_concurrent_implicit_creations() {
    concurrent_implicit_creations(2).await;
}

#[tokio::test]
async fn three_replicas_make_one_order_for_200_concurrent_implicit_creations() {
    concurrent_implicit_creations(3).await;
}

#[tokio::test]
async fn one_open_order_across_replicas_and_submit_ends_it_everywhere() {
    let redis = RedisServer::start().await;
    let env = Replicas::start(2, &store_table(&redis, "fail_closed")).await;
    let (a, b) = (&env.clients[0], &env.clients[1]);
    let owner = "948ce0d4-7cf0-43b6-88a5-2b3f1331b689";
    let c = cookie(owner);
    let first = a
        .send(
            Method::POST,
            "/orders",
            &[("cookie", &c), ("authorization", AUTH)],
            "",
        )
        .await;
    assert_eq!(first.status, 202, "{first:?}");
    let id = order_id(first.header("location").unwrap());
    // Replica B knows the order replica A created.
    let again = b.send(Method::POST, "/orders", &[("cookie", &c)], "").await;
    assert_eq!(again.status, 409, "{again:?}");
    assert_eq!(again.fault().0, "conflict");
    let view = b.get("/order", &[("cookie", &c)]).await;
    assert_eq!(view.status, 200);
    assert_eq!(
        order_id(view.json()["links"][1]["href"].as_str().unwrap()),
        id
    );
    assert_eq!(env.creations(), 1);
    // A submit through A ends the association on B.
    let account = a
        .send(
            Method::PUT,
            &format!("/orders/{id}/account"),
            &[("cookie", &c)],
            r#"{"a":1}"#,
        )
        .await;
    assert_eq!(account.status, 200, "{account:?}");
    let submit = a
        .send(
            Method::POST,
            "/order/action",
            &[("cookie", &c)],
            r#"{"action": "submit"}"#,
        )
        .await;
    assert_eq!(submit.status, 202, "{submit:?}");
    let gone = b.get("/order", &[("cookie", &c)]).await;
    assert_eq!(gone.status, 404, "{gone:?}");
    assert_eq!(gone.fault().0, "itemNotFound");
    let next = b
        .send(
            Method::POST,
            "/orders",
            &[("cookie", &c), ("authorization", AUTH)],
            "",
        )
        .await;
    assert_eq!(next.status, 202, "{next:?}");
    assert_ne!(order_id(next.header("location").unwrap()), id);
    assert_eq!(env.creations(), 2);
}

#[tokio::test]
async fn a_dead_lease_holder_blocks_the_owner_only_until_the_lease_lapses() {
    let redis = RedisServer::start().await;
    let table = format!("{}lease_ttl_ms = 600\n", store_table(&redis, "fail_closed"));
    let env = Replicas::start(1, &table).await;
    let owner = "5f0c6f34-8a47-4c8c-9d0f-5c1bb7d8a001";
    // A replica that took the lease and died: the key, without its holder.
    assert_eq!(
        redis
            .command(&["SET", &format!("og:lease:{owner}"), "dead", "PX", "600"])
            .await
            .as_deref(),
        Some("+OK")
    );
    let start = Instant::now();
    let put = env.clients[0]
        .send(
            Method::PUT,
            "/order/account",
            &[("cookie", &cookie(owner))],
            "{}",
        )
        .await;
    assert_eq!(put.status, 200, "{put:?}");
    let waited = start.elapsed();
    assert!(
        waited >= Duration::from_millis(400) && waited < Duration::from_secs(3),
        "{waited:?}"
    );
    assert_eq!(env.creations(), 1);
}

/// The Redis store (`on_error`) and one rule of quota `q` a minute on
/// `GET /order/*`, in `scope`.
fn store_and_rule(redis: &RedisServer, on_error: &str, q: u32, scope: &str) -> String {
    format!("{}{}", store_table(redis, on_error), global_rule(q, scope))
}

fn global_rule(q: u32, scope: &str) -> String {
    format!(
        "[[rate_limits.rules]]\nname = \"reads\"\nmethods = [\"GET\"]\npaths = [\"/order/*\"]\nkey = \"client_ip\"\nrate = {q}\nper_secs = 60\nscope = \"{scope}\"\n"
    )
}

/// Sends `n` requests spread over the replicas; how many were let through.
async fn let_through(env: &Replicas, n: usize) -> (usize, Duration) {
    let start = Instant::now();
    let mut allowed = 0;
    for i in 0..n {
        let a = env.clients[i % env.clients.len()].get("/order", &[]).await;
        match a.status.as_u16() {
            401 => allowed += 1,
            429 => {
                assert_eq!(a.fault().0, "overLimit");
                assert!(a.header("retry-after").is_some());
            }
            other => panic!("unexpected {other}: {a:?}"),
        }
    }
    (allowed, start.elapsed())
}

#[tokio::test]
async fn a_global_limit_holds_across_three_replicas() {
    const Q: usize = 20;
    let redis = RedisServer::start().await;
    let table = store_and_rule(&redis, "fail_closed", Q as u32, "global");
    let env = Replicas::start(3, &table).await;
    let (allowed, took) = let_through(&env, 3 * Q + 30).await;
    // Tolerance: what the bucket refills while the test runs, one request
    // per 60 s / Q.
    let refill = (took.as_secs_f64() / (60.0 / Q as f64)).ceil() as usize;
    assert!(
        (Q..=Q + refill).contains(&allowed),
        "{allowed} let through in {took:?}"
    );
    // RateLimit headers come from Redis's count.
    let a = env.clients[0].get("/order", &[]).await;
    assert_eq!(a.status, 429);
    assert!(a.header("ratelimit").unwrap().contains("r=0"), "{a:?}");
}

#[tokio::test]
async fn the_same_rule_local_lets_each_replica_have_the_quota() {
    const Q: usize = 20;
    let redis = RedisServer::start().await;
    let table = store_and_rule(&redis, "fail_closed", Q as u32, "local");
    let env = Replicas::start(3, &table).await;
    let (allowed, _) = let_through(&env, 3 * Q + 30).await;
    assert_eq!(allowed, 3 * Q);
}

#[tokio::test]
async fn redis_down_fail_closed_answers_503_then_recovers_without_restart() {
    let mut redis = RedisServer::start().await;
    let table = format!(
        "{}[rate_limits]\non_redis_error = \"fail_closed\"\n",
        store_and_rule(&redis, "fail_closed", 1000, "global")
    );
    let env = Replicas::start(2, &table).await;
    let (a, b) = (&env.clients[0], &env.clients[1]);
    let owner = "0b6a4f4e-4a57-4c5e-9a9e-0e4f9f0a7c11";
    let c = cookie(owner);
    let put = a
        .send(Method::PUT, "/order/account", &[("cookie", &c)], "{}")
        .await;
    assert_eq!(put.status, 200, "{put:?}");

    redis.stop().await;
    for client in [a, b] {
        // The shared store cannot answer: 503, in the one fault shape.
        let put = timed(client.send(
            Method::PUT,
            "/order/account",
            &[("cookie", &cookie(&OwnerId::mint().to_string()))],
            "{}",
        ))
        .await;
        assert_eq!(put.status, 503, "{put:?}");
        assert_eq!(put.fault().0, "serviceUnavailable");
        // Nor the global limit.
        let get = timed(client.get("/order", &[("cookie", &c)])).await;
        assert_eq!(get.status, 503, "{get:?}");
        assert_eq!(get.fault().0, "serviceUnavailable");
        // What needs neither still works.
        let other = timed(client.get("/nothing-here", &[])).await;
        assert_eq!(other.status, 404, "{other:?}");
    }
    assert_eq!(env.creations(), 1, "nothing created while Redis was down");

    redis.restart().await;
    let start = Instant::now();
    loop {
        let get = timed(b.get("/order", &[("cookie", &c)])).await;
        if get.status == 200 {
            break;
        }
        assert_eq!(get.status, 503, "{get:?}");
        assert!(
            start.elapsed() < Duration::from_secs(10),
            "no recovery: {get:?}"
        );
        tokio::time::sleep(Duration::from_millis(100)).await;
    }
    let put = timed(a.send(Method::PUT, "/order/item", &[("cookie", &c)], "{}")).await;
    assert_eq!(put.status, 200, "{put:?}");
    assert_eq!(
        env.creations(),
        1,
        "the order from before the outage is kept"
    );
}

#[tokio::test]
async fn redis_down_fail_open_serves_locally_and_carries_over_after() {
    let mut redis = RedisServer::start().await;
    let table = store_and_rule(&redis, "fail_open", 5, "global");
    let env = Replicas::start(2, &table).await;
    let (a, b) = (&env.clients[0], &env.clients[1]);
    redis.stop().await;

    let owner = "7d1d7a8e-3c3f-4a7e-a4c5-2f9e5b1f0d22";
    let c = cookie(owner);
    let put = timed(a.send(Method::PUT, "/order/account", &[("cookie", &c)], "{}")).await;
    assert_eq!(put.status, 200, "{put:?}");
    let view = timed(a.get("/order", &[("cookie", &c)])).await;
    assert_eq!(view.status, 200, "{view:?}");
    let id = order_id(view.json()["links"][1]["href"].as_str().unwrap());
    // Limits still hold, per replica: five reads on A so far would be two.
    let mut allowed = 1;
    for _ in 0..10 {
        if timed(a.get("/order", &[("cookie", &c)])).await.status != 429 {
            allowed += 1;
        }
    }
    assert_eq!(allowed, 5, "the local limit of the global rule applies");

    redis.restart().await;
    // Replica A's association reaches Redis the next time A looks it up...
    let start = Instant::now();
    loop {
        let put = timed(a.send(Method::PUT, "/order/item", &[("cookie", &c)], "{}")).await;
        assert_eq!(put.status, 200, "{put:?}");
        if redis
            .command(&["EXISTS", &format!("og:owner:{owner}")])
            .await
            .as_deref()
            == Some(":1")
        {
            break;
        }
        assert!(
            start.elapsed() < Duration::from_secs(10),
            "never carried over"
        );
        tokio::time::sleep(Duration::from_millis(100)).await;
    }
    // ...and from then on B uses the same order.
    let put = timed(b.send(Method::PUT, "/order/other", &[("cookie", &c)], "{}")).await;
    assert_eq!(put.status, 200, "{put:?}");
    assert_eq!(env.creations(), 1);
    assert!(
        env.backend
            .state
            .seen()
            .iter()
            .any(|s| s.path == format!("/orders/{id}/other"))
    );
}

#[tokio::test]
async fn fail_open_counts_and_fail_closed_errors_when_redis_is_unreachable() {
    let mut redis = RedisServer::start().await;
    let url = redis.url();
    redis.stop().await;
    let open = store(&redis_config(&url, "og:", OnRedisError::FailOpen));
    let closed = store(&redis_config(&url, "og:", OnRedisError::FailClosed));
    let owner = OwnerId::mint();
    let order = OrderId::parse("o1").unwrap();
    let start = Instant::now();
    open.put(owner, &order, 1).await.unwrap();
    assert_eq!(open.get(owner).await.unwrap().unwrap().order, order);
    assert!(open.try_lease(owner, 1).await.unwrap());
    assert_eq!(open.fail_open_count(), 3);
    assert!(open.ping().await.is_err(), "readiness sees Redis down");
    assert!(closed.get(owner).await.is_err());
    assert!(closed.put(owner, &order, 1).await.is_err());
    assert!(closed.try_lease(owner, 1).await.is_err());
    assert_eq!(closed.fail_open_count(), 0);
    assert!(
        start.elapsed() < Duration::from_secs(5),
        "{:?}",
        start.elapsed()
    );
    redis.restart().await;
    closed.ping().await.unwrap();
    assert_eq!(closed.get(owner).await.unwrap(), None);
}

#[tokio::test]
async fn a_bad_owner_id_never_reaches_a_key() {
    let redis = RedisServer::start().await;
    let env = Replicas::start(1, &store_table(&redis, "fail_closed")).await;
    let client = &env.clients[0];
    for bad in [
        "OwnerId=*",
        "OwnerId=og:owner:x",
        "OwnerId=../../x",
        "OwnerId=4d84cd13-bbb3-46ba-a40c-8988351e368\r",
        "OwnerId=4d84cd13-bbb3-46ba-a40c-8988351e3681x",
    ] {
        let Ok(value) = http::HeaderValue::from_str(bad) else {
            continue;
        };
        let value = value.to_str().unwrap().to_owned();
        for (method, path) in [(Method::GET, "/order"), (Method::PUT, "/order/account")] {
            let a = client
                .send(method, path, &[("cookie", value.as_str())], "{}")
                .await;
            assert_eq!(a.status, 401, "{bad}: {a:?}");
        }
    }
    let good = OwnerId::mint().to_string();
    let put = client
        .send(
            Method::PUT,
            "/order/account",
            &[("cookie", &cookie(&good))],
            "{}",
        )
        .await;
    assert_eq!(put.status, 200);
    // Only the keys of that one owner and its order exist.
    let keys = redis.keys().await;
    let uuid = |s: &str| OwnerId::parse(s).is_some();
    for key in &keys {
        let rest = key.strip_prefix("og:").expect("namespaced");
        let ok = rest == "touched"
            || rest.strip_prefix("owner:").is_some_and(uuid)
            || rest
                .strip_prefix("order:")
                .is_some_and(|o| OrderId::parse(o).is_some());
        assert!(ok, "{key}");
    }
    assert!(keys.contains(&format!("og:owner:{good}")), "{keys:?}");
}

#[tokio::test]
async fn global_rules_count_fail_open_and_refuse_fail_closed_while_redis_is_down() {
    use ordergate::config::Config;
    use ordergate::guards::rate_limit::{Decision, RateLimits, RuleVerdict, Subject};
    let mut redis = RedisServer::start().await;
    let text = |on_error: &str| {
        format!(
            "[server]\nlisten = \"127.0.0.1:1\"\npublic_base_url = \"http://127.0.0.1:1\"\n[upstream]\nurl = \"http://127.0.0.1:2\"\n{}[rate_limits]\non_redis_error = \"{on_error}\"\nlocal_precheck = false\n{}",
            store_table(&redis, "fail_closed"),
            global_rule(2, "global")
        )
    };
    let limits = |on_error: &str| {
        let config = Config::parse(&text(on_error)).unwrap();
        let pool = ordergate::redis_pool(&config).unwrap();
        RateLimits::new(config.rate_limits.rules.clone()).with_redis(pool, &config.rate_limits)
    };
    let (open, closed) = (limits("fail_open"), limits("fail_closed"));
    let headers = http::HeaderMap::new();
    let peer = Some("127.0.0.1".parse().unwrap());
    async fn check(
        l: &RateLimits,
        headers: &http::HeaderMap,
        peer: Option<std::net::IpAddr>,
    ) -> Result<Option<RuleVerdict>, impl std::fmt::Debug> {
        let eval = l.evaluate(&Subject {
            method: &Method::GET,
            path: "/order",
            headers,
            owner: None,
            client_ip: peer,
        });
        assert_eq!(eval.global.len(), 1, "asked of Redis");
        l.finish(eval).await
    }
    assert!(matches!(
        check(&open, &headers, peer)
            .await
            .unwrap()
            .unwrap()
            .decision,
        Decision::Allowed { remaining: 1, .. }
    ));
    open.ping().await.unwrap();
    redis.stop().await;
    assert!(open.ping().await.is_err());
    // Fail-open: this replica's own limiter, and a count of each such call.
    let mut allowed = 0;
    for _ in 0..4 {
        if matches!(
            check(&open, &headers, peer)
                .await
                .unwrap()
                .unwrap()
                .decision,
            Decision::Allowed { .. }
        ) {
            allowed += 1;
        }
    }
    assert_eq!(allowed, 2);
    assert_eq!(open.fail_open_count(), 4);
    assert!(check(&closed, &headers, peer).await.is_err());
    assert_eq!(closed.fail_open_count(), 0);
    redis.restart().await;
    // Redis's count from before the outage is back: one left.
    assert!(matches!(
        check(&open, &headers, peer)
            .await
            .unwrap()
            .unwrap()
            .decision,
        Decision::Allowed { remaining: 0, .. }
    ));
    assert!(check(&closed, &headers, peer).await.is_ok());
}

#[tokio::test]
async fn readiness_and_the_open_orders_gauge_follow_redis() {
    use ordergate::config::Config;
    let mut redis = RedisServer::start().await;
    let backend =
        ordergate::backend::Backend::start(listener().await, Some(INTERNAL.to_owned())).unwrap();
    let gl = listener().await;
    let text = config_text(
        gl.local_addr().unwrap(),
        backend.addr,
        &store_table(&redis, "fail_open"),
    );
    let config = Config::parse(&text).unwrap();
    let (gw, admin) = Gateway::start_with_admin(config, gl).await;
    let client = HttpClient::new(gw.base.clone());
    assert_eq!(admin.get("/readyz", &[]).await.status, 200);
    let put = client
        .send(
            Method::PUT,
            "/order/account",
            &[("cookie", &cookie(&OwnerId::mint().to_string()))],
            "{}",
        )
        .await;
    assert_eq!(put.status, 200);
    let metrics = admin.get("/metrics", &[]).await.text();
    assert!(
        metrics.lines().any(|l| l == "ordergate_open_orders 1"),
        "{metrics}"
    );

    redis.stop().await;
    // Fail-open serves requests, but readiness says Redis is gone.
    let ready = timed(admin.get("/readyz", &[])).await;
    assert_eq!(ready.status, 503, "{ready:?}");
    assert!(
        ready.text().contains("owner store unavailable"),
        "{ready:?}"
    );
    // A request served from the replica's own store while Redis is down is
    // counted as a fail-open.
    let during = timed(client.get(
        "/order",
        &[("cookie", &cookie(&OwnerId::mint().to_string()))],
    ))
    .await;
    assert_eq!(during.status, 404, "{during:?}");
    let metrics = admin.get("/metrics", &[]).await.text();
    let fail_opens = metrics
        .lines()
        .find_map(|l| l.strip_prefix("ordergate_redis_fail_open_total{function=\"store\"} "))
        .and_then(|v| v.parse::<u64>().ok())
        .unwrap_or(0);
    assert!(fail_opens >= 1, "{metrics}");

    redis.restart().await;
    let start = Instant::now();
    while admin.get("/readyz", &[]).await.status != 200 {
        assert!(
            start.elapsed() < Duration::from_secs(10),
            "never ready again"
        );
        tokio::time::sleep(Duration::from_millis(100)).await;
    }
    gw.stop().await;
}

#[tokio::test]
async fn a_reload_can_make_a_rule_global() {
    use ordergate::config::Config;
    let redis = RedisServer::start().await;
    let backend =
        ordergate::backend::Backend::start(listener().await, Some(INTERNAL.to_owned())).unwrap();
    let gl = listener().await;
    let addr = gl.local_addr().unwrap();
    let text = |scope: &str| {
        config_text(
            addr,
            backend.addr,
            &store_and_rule(&redis, "fail_closed", 3, scope),
        )
    };
    let gw = Gateway::start(Config::parse(&text("local")).unwrap(), gl).await;
    let client = HttpClient::new(gw.base.clone());
    assert_eq!(client.get("/order", &[]).await.status, 401);
    assert!(redis.keys().await.iter().all(|k| !k.starts_with("og:rl:")));
    gw.reload
        .send(Config::parse(&text("global")).unwrap())
        .await
        .unwrap();
    let start = Instant::now();
    while redis.keys().await.iter().all(|k| !k.starts_with("og:rl:")) {
        assert!(start.elapsed() < Duration::from_secs(5), "never reloaded");
        client.get("/order", &[]).await;
        tokio::time::sleep(Duration::from_millis(20)).await;
    }
    // The rule now counts in Redis: new counts, three at most.
    let mut allowed = 0;
    for _ in 0..6 {
        if client.get("/order", &[]).await.status == 401 {
            allowed += 1;
        }
    }
    assert!(allowed < 3, "{allowed} more after the first global one");
    gw.stop().await;
}

#[tokio::test]
async fn an_order_is_created_and_resolved_through_rediss() {
    let redis = RedisServer::start_tls().await;
    let tls = redis.tls();
    let table = format!(
        "[store]\nkind = \"redis\"\nurl = \"{}\"\nca_file = \"{}\"\nkey_prefix = \"tls:\"\nconnect_timeout_ms = 2000\ncommand_timeout_ms = 2000\n",
        redis.tls_url(),
        tls.ca_file.display()
    );
    let env = Env::with_store(&table).await;
    let (_, owner) = env
        .client
        .create_implicitly(&[("authorization", AUTH)])
        .await;
    // The shorthand resolves the owner's order through the store.
    let view = env
        .client
        .get("/order", &[("cookie", &cookie(&owner))])
        .await;
    assert_eq!(view.status, 200, "{view:?}");
    let id = order_id(view.json()["links"][1]["href"].as_str().unwrap());
    assert!(env.backend.state.order(&id).is_some());
    assert_eq!(env.creations(), 1);
    // The association went to Redis, over the TLS port.
    let keys = redis.keys().await;
    assert!(keys.iter().any(|k| k.starts_with("tls:")), "{keys:?}");
    assert!(
        keys.iter().any(|k| k.contains(&owner) || k.contains(&id)),
        "{keys:?}"
    );
}

#[tokio::test]
async fn rediss_checks_the_server_certificate() {
    // The same server, trusted through the webpki roots only: its private
    // CA is not among them, so no command gets through.
    let redis = RedisServer::start_tls().await;
    let mut config = redis_config(&redis.tls_url(), "tls:", OnRedisError::FailClosed);
    let pool = RedisPool::new(&config).unwrap();
    let refused = pool.query::<String>(&redis::cmd("PING")).await;
    assert!(refused.is_err(), "{refused:?}");
    config.ca_pem = Some(std::fs::read(&redis.tls().ca_file).unwrap());
    let pool = RedisPool::new(&config).unwrap();
    let pong = pool.query::<String>(&redis::cmd("PING")).await.unwrap();
    assert_eq!(pong, "PONG");
}

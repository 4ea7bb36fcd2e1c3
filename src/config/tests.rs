use super::*;

const GOOD: &str = r#"
[server]
listen = "127.0.0.1:8080"
public_base_url = "http://127.0.0.1:8080/"
[upstream]
url = "http://127.0.0.1:9000"
[store]
kind = "memory"
"#;

fn err(text: &str) -> ConfigError {
    Config::parse(text).unwrap_err()
}

#[test]
fn good_file_gets_defaults() {
    let c = Config::parse(GOOD).unwrap();
    assert_eq!(c.server.listeners[0].addr.port(), 8080);
    assert_eq!(c.server.public_base_url.as_str(), "http://127.0.0.1:8080");
    assert_eq!(c.store.kind, StoreKind::Memory);
    assert_eq!(c.server.request_id_header, "x-request-id");
    assert!(c.cookies.http_only);
}

#[test]
fn store_defaults_to_redb() {
    let text = GOOD.replace("[store]\nkind = \"memory\"\n", "");
    let c = Config::parse(&text).unwrap();
    assert_eq!(
        c.store.kind,
        StoreKind::Redb {
            path: "data/owners.redb".into()
        }
    );
}

#[test]
fn unknown_key_is_named() {
    let e = err(&GOOD.replace("[store]", "[store]\ncolour = 1"));
    assert_eq!(e.key, "store.colour");
    assert!(e.reason.contains("unknown field"), "{e}");
    let e = err(&format!("{GOOD}\n[extra]\na = 1\n"));
    assert_eq!(e.key, "extra");
}

#[test]
fn missing_key_is_named() {
    let e = err(&GOOD.replace("url = \"http://127.0.0.1:9000\"", ""));
    assert_eq!(e.key, "upstream.url");
    assert!(e.reason.contains("missing"), "{e}");
}

#[test]
fn bad_values_are_named() {
    let cases = [
        (
            GOOD.replace("127.0.0.1:8080\"\npublic", "nowhere\"\npublic"),
            "server.listen",
        ),
        (
            GOOD.replace("http://127.0.0.1:8080/", "ftp://x"),
            "server.public_base_url",
        ),
        (
            GOOD.replace("http://127.0.0.1:8080/", "http://x/path"),
            "server.public_base_url",
        ),
        (
            GOOD.replace("http://127.0.0.1:9000", "not a url"),
            "upstream.url",
        ),
        (GOOD.replace("\"memory\"", "\"cassandra\""), "store.kind"),
        (GOOD.replace("\"memory\"", "5"), "store.kind"),
        (
            format!("{GOOD}idle_expiry_secs = 0\n"),
            "store.idle_expiry_secs",
        ),
        (
            format!("{GOOD}[cookies]\nsame_site = \"sometimes\"\n"),
            "cookies.same_site",
        ),
        (
            format!("{GOOD}[cookies]\nsame_site = \"none\"\n"),
            "cookies.same_site",
        ),
        (
            GOOD.replace("[upstream]", "[upstream]\nrewrite_bases = [\"x\"]"),
            "upstream.rewrite_bases",
        ),
        (
            GOOD.replace("[server]", "[server]\ntrusted_proxies = [\"10.0.0.300\"]"),
            "server.trusted_proxies",
        ),
    ];
    for (text, key) in cases {
        assert_eq!(err(&text).key, key, "{text}");
    }
}

#[test]
fn broken_toml_and_missing_file() {
    assert!(err("[server\nlisten=").reason.contains("invalid TOML"));
    let e = Config::load(Path::new("/nonexistent/ordergate.toml")).unwrap_err();
    assert!(e.reason.contains("cannot read"), "{e}");
}

#[test]
fn fault_types_override_defaults() {
    let c = Config::parse(&format!("{GOOD}[faults.types]\n\"404\" = \"notFound\"\n")).unwrap();
    assert_eq!(c.faults.types.name(http::StatusCode::NOT_FOUND), "notFound");
    assert_eq!(c.faults.types.name(http::StatusCode::CONFLICT), "conflict");
}

const RULE: &str = "[[rate_limits.rules]]\nname = \"create\"\nmethods = [\"POST\"]\npaths = [\"/orders\", \"/order/*\"]\nkey = \"owner\"\nrate = 5\nper_secs = 60\n";

#[test]
fn rate_limit_rules() {
    let c = Config::parse(&format!("{GOOD}{RULE}")).unwrap();
    let r = &c.rate_limits.rules[0];
    assert_eq!(
        (r.name.as_str(), r.rate.get(), r.burst.get()),
        ("create", 5, 5)
    );
    let cases = [
        (
            RULE.replace("\"owner\"", "\"cookie\""),
            "rate_limits.rules[0].key",
        ),
        (
            RULE.replace("\"owner\"", "\"header:bad header\""),
            "rate_limits.rules[0].key",
        ),
        (
            RULE.replace("rate = 5", "rate = 0"),
            "rate_limits.rules[0].rate",
        ),
        (
            RULE.replace("per_secs = 60", "per_secs = 0"),
            "rate_limits.rules[0].per_secs",
        ),
        (
            RULE.replace("\"/order/*\"", "\"order*\""),
            "rate_limits.rules[0].paths",
        ),
        (
            RULE.replace("\"POST\"", "\"PO ST\""),
            "rate_limits.rules[0].methods",
        ),
        (
            RULE.replace("\"create\"", "\"a b\""),
            "rate_limits.rules[0].name",
        ),
        (format!("{RULE}burst = 0\n"), "rate_limits.rules[0].burst"),
        (format!("{RULE}colour = 1\n"), "rate_limits.rules[0].colour"),
    ];
    for (rule, key) in cases {
        assert_eq!(err(&format!("{GOOD}{rule}")).key, key, "{rule}");
    }
}

#[test]
fn workers_and_upstream_connection_cap() {
    let c = Config::parse(GOOD).unwrap();
    assert_eq!(c.server.workers, None);
    assert_eq!(c.upstream.max_connections, None);
    let text = GOOD
        .replace("[server]", "[server]\nworkers = 1")
        .replace("[upstream]", "[upstream]\nmax_connections = 128");
    let c = Config::parse(&text).unwrap();
    assert_eq!(c.server.workers, Some(1));
    assert_eq!(c.upstream.max_connections, Some(128));
    let e = err(&GOOD.replace("[server]", "[server]\nworkers = 0"));
    assert_eq!(e.key, "server.workers");
    let e = err(&GOOD.replace("[upstream]", "[upstream]\nmax_connections = 0"));
    assert_eq!(e.key, "upstream.max_connections");
}

const REDIS: &str = "[store]\nkind = \"redis\"\nurl = \"redis://127.0.0.1:6379/0\"\n";

fn with_store(store: &str) -> String {
    GOOD.replace("[store]\nkind = \"memory\"\n", store)
}

#[test]
fn redis_store_gets_defaults_and_hides_its_url() {
    let c = Config::parse(&with_store(REDIS)).unwrap();
    let r = c.store.redis().unwrap();
    assert_eq!(r.url, "redis://127.0.0.1:6379/0");
    assert_eq!(r.key_prefix, "ordergate:");
    assert_eq!(r.pool_size, 4);
    assert_eq!(r.command_timeout, Duration::from_millis(500));
    assert_eq!(r.lease_ttl, Duration::from_secs(10));
    assert_eq!(r.on_error, OnRedisError::FailClosed);
    assert_eq!(c.rate_limits.on_redis_error, OnRedisError::FailOpen);
    assert!(c.rate_limits.local_precheck);
    let secret = with_store(&REDIS.replace("redis://", "redis://:hunter2@"));
    let c = Config::parse(&secret).unwrap();
    assert!(!format!("{c:?}").contains("hunter2"));
    let full = format!(
        "{REDIS}key_prefix = \"og-1:\"\npool_size = 8\nconnect_timeout_ms = 100\ncommand_timeout_ms = 50\nlease_ttl_ms = 2000\non_redis_error = \"fail_open\"\n"
    );
    let r = Config::parse(&with_store(&full)).unwrap().store;
    let r = r.redis().unwrap();
    assert_eq!((r.key_prefix.as_str(), r.pool_size), ("og-1:", 8));
    assert_eq!(r.on_error, OnRedisError::FailOpen);
}

#[test]
fn bad_redis_settings_are_named() {
    let cases = [
        (
            REDIS.replace("redis://127.0.0.1:6379/0", "127.0.0.1:6379"),
            "store.url",
        ),
        (
            REDIS.replace("redis://127.0.0.1:6379/0", "rediss://h:6380"),
            "store.url",
        ),
        (
            REDIS.replace("redis://127.0.0.1:6379/0", "http://h"),
            "store.url",
        ),
        (REDIS.replace("127.0.0.1:6379/0", "h:6379/x"), "store.url"),
        (REDIS.replace("127.0.0.1:6379/0", "h:notaport"), "store.url"),
        (
            REDIS.replace("url = \"redis://127.0.0.1:6379/0\"\n", ""),
            "store.url",
        ),
        (format!("{REDIS}pool_size = 0\n"), "store.pool_size"),
        (format!("{REDIS}pool_size = 1000\n"), "store.pool_size"),
        (format!("{REDIS}key_prefix = \"a b\"\n"), "store.key_prefix"),
        (format!("{REDIS}key_prefix = \"\"\n"), "store.key_prefix"),
        (
            format!("{REDIS}command_timeout_ms = 0\n"),
            "store.command_timeout_ms",
        ),
        (format!("{REDIS}lease_ttl_ms = 0\n"), "store.lease_ttl_ms"),
        (
            format!("{REDIS}on_redis_error = \"ignore\"\n"),
            "store.on_redis_error",
        ),
        (format!("{REDIS}path = \"x.redb\"\n"), "store.path"),
        (
            "[store]\nkind = \"memory\"\nurl = \"redis://h\"\n".to_owned(),
            "store.url",
        ),
        (
            "[store]\nkind = \"redb\"\non_redis_error = \"fail_open\"\n".to_owned(),
            "store.on_redis_error",
        ),
    ];
    for (store, key) in cases {
        assert_eq!(err(&with_store(&store)).key, key, "{store}");
    }
}

#[test]
fn global_rules_need_the_redis_store() {
    let global = format!("{RULE}scope = \"global\"\n");
    let e = err(&format!("{GOOD}{global}"));
    assert_eq!(e.key, "rate_limits.rules[0].scope");
    let c = Config::parse(&format!("{}{global}", with_store(REDIS))).unwrap();
    assert_eq!(c.rate_limits.rules[0].scope, crate::config::Scope::Global);
    assert_eq!(
        Config::parse(&format!("{GOOD}{RULE}"))
            .unwrap()
            .rate_limits
            .rules[0]
            .scope,
        crate::config::Scope::Local
    );
    let e = err(&format!("{GOOD}{RULE}scope = \"cluster\"\n"));
    assert_eq!(e.key, "rate_limits.rules[0].scope");
    let e = err(&format!(
        "{}[rate_limits]\non_redis_error = \"maybe\"\n",
        with_store(REDIS)
    ));
    assert_eq!(e.key, "rate_limits.on_redis_error");
}

#[test]
fn a_reload_names_the_settings_that_need_a_restart() {
    let running = Config::parse(GOOD).unwrap();
    assert!(running.restart_needed_for(&running.clone()).is_empty());
    // What a reload applies is not listed.
    let applied =
        Config::parse(&GOOD.replace("[store]", "response_timeout_ms = 1234\n[store]")).unwrap();
    assert!(running.restart_needed_for(&applied).is_empty());
    let changed = Config::parse(
        &(GOOD
            .replace(
                "public_base_url",
                "idle_timeout_ms = 1234\nmax_connections = 7\nworkers = 3\npublic_base_url",
            )
            .replace("127.0.0.1:8080\"", "127.0.0.1:8081\"")
            .replace("kind = \"memory\"", "kind = \"redb\"\npath = \"x.redb\"")
            + "[admin]\nlisten = \"127.0.0.1:9901\"\n"),
    )
    .unwrap();
    assert_eq!(
        running.restart_needed_for(&changed),
        [
            "server.listen, server.listeners",
            "server.idle_timeout_ms",
            "server.max_connections",
            "server.workers",
            "store",
            "admin.listen",
        ]
    );
}

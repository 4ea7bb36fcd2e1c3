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

#[test]
fn worker_mode_is_shared_unless_per_core_is_asked_for() {
    let c = Config::parse(GOOD).unwrap();
    assert_eq!(c.server.worker_mode, WorkerMode::Shared);
    assert_eq!(c.server.per_core_workers(), None);
    let per_core = |extra: &str| GOOD.replace("[server]", &format!("[server]\n{extra}"));
    let c = Config::parse(&per_core("worker_mode = \"per_core\"\nworkers = 3")).unwrap();
    assert_eq!(c.server.worker_mode, WorkerMode::PerCore);
    assert_eq!(c.server.per_core_workers(), Some(3));
    // Unset: one worker per CPU the process may run on.
    let c = Config::parse(&per_core("worker_mode = \"per_core\"")).unwrap();
    let cpus = std::thread::available_parallelism().unwrap().get();
    assert_eq!(c.server.per_core_workers(), Some(cpus));
    let c = Config::parse(&per_core("worker_mode = \"shared\"\nworkers = 3")).unwrap();
    assert_eq!(c.server.per_core_workers(), None);
    let e = err(&per_core("worker_mode = \"per_core\"\nworkers = 0"));
    assert_eq!(e.key, "server.workers");
    let e = err(&per_core("worker_mode = \"per-core\""));
    assert_eq!(e.key, "server.worker_mode");
    assert!(e.reason.contains("`per-core`"), "{}", e.reason);
    let e = err(&per_core("worker_mode = 2"));
    assert_eq!(e.key, "server.worker_mode");
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
    assert_eq!(r.order_cache, 65_536);
    assert_eq!(r.command_timeout, Duration::from_millis(500));
    assert_eq!(r.lease_ttl, Duration::from_secs(10));
    assert_eq!(r.on_error, OnRedisError::FailClosed);
    assert_eq!(c.rate_limits.on_redis_error, OnRedisError::FailOpen);
    assert!(c.rate_limits.local_precheck);
    let secret = with_store(&REDIS.replace("redis://", "redis://:hunter2@"));
    let c = Config::parse(&secret).unwrap();
    assert!(!format!("{c:?}").contains("hunter2"));
    let full = format!(
        "{REDIS}key_prefix = \"og-1:\"\npool_size = 8\norder_cache_entries = 0\nconnect_timeout_ms = 100\ncommand_timeout_ms = 50\nlease_ttl_ms = 2000\non_redis_error = \"fail_open\"\n"
    );
    let r = Config::parse(&with_store(&full)).unwrap().store;
    let r = r.redis().unwrap();
    assert_eq!((r.key_prefix.as_str(), r.pool_size), ("og-1:", 8));
    assert_eq!(r.order_cache, 0);
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
            REDIS.replace("redis://127.0.0.1:6379/0", "rediss://h:6380/#insecure"),
            "store.url",
        ),
        (
            format!("{REDIS}ca_file = \"/nonexistent/ca.pem\"\n"),
            "store.ca_file",
        ),
        (
            format!(
                "{}ca_file = \"/nonexistent/ca.pem\"\n",
                REDIS.replace("redis://", "rediss://")
            ),
            "store.ca_file",
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
        (
            format!("{REDIS}order_cache_entries = 20000000\n"),
            "store.order_cache_entries",
        ),
        (
            format!("{REDIS}order_cache_entries = -1\n"),
            "store.order_cache_entries",
        ),
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
        (format!("{REDIS}colour = 1\n"), "store.colour"),
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
                "idle_timeout_ms = 1234\nmax_connections = 7\nworkers = 3\nworker_mode = \"per_core\"\npublic_base_url",
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
            "server.worker_mode",
            "store",
            "admin.listen",
        ]
    );
}

#[test]
fn other_store_kinds_keys_are_ignored_with_a_warning() {
    let c = Config::parse(&with_store(
        "[store]\nkind = \"memory\"\npath = \"x.redb\"\nurl = \"redis://h\"\nidle_expiry_secs = 5\n",
    ))
    .unwrap();
    assert_eq!(c.store.kind, StoreKind::Memory);
    assert_eq!(c.store.idle_expiry, Duration::from_secs(5));
    let warned: Vec<&str> = c.warnings.iter().map(|w| w.key.as_str()).collect();
    assert_eq!(warned, ["store.path", "store.url"]);
    assert!(
        c.warnings[0].reason.contains("kind = \"redb\""),
        "{:?}",
        c.warnings
    );
    let c = Config::parse(&with_store(&format!("{REDIS}path = \"x.redb\"\n"))).unwrap();
    assert!(c.store.redis().is_some());
    assert_eq!(c.warnings[0].key, "store.path");
    let c = Config::parse(GOOD).unwrap();
    assert!(c.warnings.is_empty());
}

#[test]
fn sizes_and_durations_take_units() {
    let text = GOOD
        .replace(
            "[server]",
            "[server]\nmax_request_body_bytes = \"1MB\"\nmax_header_bytes = \"64KiB\"\nidle_timeout_ms = \"2m\"\ndrain_timeout_secs = \"1500ms\"",
        )
        .replace(
            "[upstream]",
            "[upstream]\nmax_json_body_bytes = \"1MiB\"\nconnect_timeout_ms = 250\nresponse_timeout_ms = \"30s\"",
        );
    let c = Config::parse(&format!(
        "{text}[faults]\nmax_upstream_body_bytes = 4096\n{RULE}"
    ))
    .unwrap();
    assert_eq!(c.server.max_request_body, 1_000_000);
    assert_eq!(c.server.limits.max_header_bytes, 64 * 1024);
    assert_eq!(c.server.limits.idle_timeout, Duration::from_secs(120));
    assert_eq!(c.server.drain_timeout, Duration::from_millis(1500));
    assert_eq!(c.upstream.max_json_body, 1 << 20);
    assert_eq!(c.upstream.connect_timeout, Duration::from_millis(250));
    assert_eq!(c.upstream.response_timeout, Duration::from_secs(30));
    assert_eq!(c.faults.max_upstream_body, 4096);
    assert_eq!(c.rate_limits.rules[0].per, Duration::from_secs(60));
    let c = Config::parse(&format!(
        "{GOOD}{}",
        RULE.replace("per_secs = 60", "per_secs = \"1m\"")
    ))
    .unwrap();
    assert_eq!(c.rate_limits.rules[0].per, Duration::from_secs(60));
    let e = err(&GOOD.replace("[server]", "[server]\nmax_request_body_bytes = \"1m\""));
    assert_eq!(e.key, "server.max_request_body_bytes");
    assert!(e.reason.contains("ambiguous"), "{e}");
    let e = err(&GOOD.replace("[server]", "[server]\nidle_timeout_ms = \"soon\""));
    assert_eq!(e.key, "server.idle_timeout_ms");
    let e = err(&format!("{GOOD}[cors]\nmax_age_secs = \"1500ms\"\n"));
    assert_eq!(e.key, "cors.max_age_secs");
}

#[test]
fn check_lists_every_problem_past_type_errors() {
    let text = GOOD
        .replace(
            "[server]",
            "[server]\nmax_headers = \"many\"\nworkers = 0\ncolour = 1",
        )
        .replace(
            "[upstream]",
            "[upstream]\nhttp2 = \"yes\"\nconnect_timeout_ms = 0",
        );
    let rules = format!(
        "{}{}",
        RULE.replace("rate = 5", "rate = \"five\""),
        RULE.replace("\"owner\"", "\"cookie\"")
    );
    let text = format!("{text}[cookies]\nsame_site = \"sometimes\"\nsecure = 1\n{rules}");
    let problems = Config::check(&text).unwrap_err();
    let keys: Vec<&str> = problems.iter().map(|p| p.key.as_str()).collect();
    for key in [
        "server.max_headers",
        "server.colour",
        "server.workers",
        "upstream.http2",
        "upstream.connect_timeout_ms",
        "cookies.secure",
        "cookies.same_site",
        "rate_limits.rules[0].rate",
        "rate_limits.rules[1].key",
    ] {
        assert!(keys.contains(&key), "{key} missing from {keys:?}");
    }
    // A key taken out for its type is not reported missing as well.
    assert_eq!(
        keys.iter().filter(|k| k.contains("rules[0].rate")).count(),
        1,
        "{keys:?}"
    );
}

#[test]
fn a_relative_store_path_is_relative_to_the_file() {
    let text = with_store("[store]\nkind = \"redb\"\npath = \"data/o.redb\"\n");
    let c = Config::check_with(&text, Some(Path::new("/etc/ordergate")), Vec::new()).unwrap();
    assert_eq!(
        c.store.kind,
        StoreKind::Redb {
            path: "/etc/ordergate/data/o.redb".into()
        }
    );
    let text = with_store("[store]\nkind = \"redb\"\npath = \"/var/lib/o.redb\"\n");
    let c = Config::check_with(&text, Some(Path::new("/etc/ordergate")), Vec::new()).unwrap();
    assert_eq!(
        c.store.kind,
        StoreKind::Redb {
            path: "/var/lib/o.redb".into()
        }
    );
    let dir = tempfile::tempdir().unwrap();
    let file = dir.path().join("gw.toml");
    std::fs::write(&file, with_store("[store]\npath = \"owners.redb\"\n")).unwrap();
    let c = Config::check_file(&file).unwrap();
    assert_eq!(
        c.store.kind,
        StoreKind::Redb {
            path: dir.path().join("owners.redb")
        }
    );
}

fn vars(pairs: &[(&str, &str)]) -> Vec<(String, String)> {
    pairs
        .iter()
        .map(|(k, v)| ((*k).to_owned(), (*v).to_owned()))
        .collect()
}

#[test]
fn the_environment_overrides_keys_and_keeps_secrets() {
    let c = Config::check_with(
        &with_store(REDIS),
        None,
        vars(&[
            ("ORDERGATE_STORE__PASSWORD", "hunter2"),
            ("ORDERGATE_SERVER__MAX_REQUEST_BODY_BYTES", "2MiB"),
            ("ORDERGATE_UPSTREAM__URL", "http://127.0.0.1:9100"),
        ]),
    )
    .unwrap();
    let r = c.store.redis().unwrap();
    assert_eq!(r.password.as_deref(), Some("hunter2"));
    assert_eq!(c.server.max_request_body, 2 << 20);
    assert_eq!(c.upstream.url.as_str(), "http://127.0.0.1:9100");
    assert!(!format!("{c:?}").contains("hunter2"));
    let secret = c
        .overrides
        .iter()
        .find(|o| o.key == "store.password")
        .unwrap();
    assert_eq!(secret.var, "ORDERGATE_STORE__PASSWORD");
    assert!(secret.is_secret());
    // A bad value says where it came from, and a secret's is never repeated.
    let problems = Config::check_with(
        &with_store(REDIS),
        None,
        vars(&[
            ("ORDERGATE_STORE__URL", "http://user:hunter2@h"),
            ("ORDERGATE_SERVER__MAX_HEADERS", "lots"),
            ("ORDERGATE_STORE_URL", "x"),
        ]),
    )
    .unwrap_err();
    let text = format!("{problems:?}");
    assert!(!text.contains("hunter2"), "{text}");
    let url = problems.iter().find(|p| p.key == "store.url").unwrap();
    assert!(url.reason.contains("ORDERGATE_STORE__URL"), "{url}");
    assert!(problems.iter().any(|p| p.key == "server.max_headers"));
    assert!(problems.iter().any(|p| p.key == "ORDERGATE_STORE_URL"));
}

#[test]
fn the_shipped_file_switches_to_memory_with_one_edit() {
    let shipped = include_str!("../../config/ordergate.toml");
    let text = shipped.replace("kind = \"redb\"", "kind = \"memory\"");
    assert_ne!(text, shipped);
    let c = Config::parse(&text).unwrap();
    assert_eq!(c.store.kind, StoreKind::Memory);
    assert_eq!(c.warnings.len(), 1, "{:?}", c.warnings);
    assert_eq!(c.warnings[0].key, "store.path");
}

#[test]
fn connection_deadlines_and_http2_limits_have_safe_defaults_and_named_problems() {
    let l = Config::parse(GOOD).unwrap().server.limits;
    assert!(l.listen_backlog >= 1024);
    assert_eq!(l.handshake.first_byte, Duration::from_secs(10));
    assert_eq!(l.handshake.tls, Duration::from_secs(10));
    assert_eq!(l.handshake.http2, Duration::from_secs(10));
    assert_eq!(l.http2.max_concurrent_streams, 128);
    assert_eq!(l.http2.keep_alive_timeout, Duration::from_secs(10));
    let set = |line: &str| GOOD.replace("[server]", &format!("[server]\n{line}"));
    let l = Config::parse(&set(
        "http2_max_concurrent_streams = 7\nlisten_backlog = 4096",
    ))
    .unwrap()
    .server
    .limits;
    assert_eq!(
        (l.http2.max_concurrent_streams, l.listen_backlog),
        (7, 4096)
    );
    for key in [
        "listen_backlog",
        "first_byte_timeout_ms",
        "tls_handshake_timeout_ms",
        "protocol_timeout_ms",
        "http2_handshake_timeout_ms",
        "http2_keep_alive_interval_ms",
        "http2_keep_alive_timeout_ms",
        "http2_max_concurrent_streams",
        "http2_max_pending_reset_streams",
        "http2_max_local_error_reset_streams",
    ] {
        let e = err(&set(&format!("{key} = 0")));
        assert_eq!(e.key, format!("server.{key}"), "{e}");
    }
    assert_eq!(
        err(&set("listen_backlog = 70000")).key,
        "server.listen_backlog"
    );
    let old = Config::parse(GOOD).unwrap();
    let new = Config::parse(&set("http2_keep_alive_interval_ms = 5")).unwrap();
    assert_eq!(old.restart_needed_for(&new), vec!["server.http2_*"]);
}

#[test]
fn upstream_socket_keys_have_defaults_and_can_be_set() {
    let c = Config::parse(GOOD).unwrap();
    assert_eq!(
        c.upstream.connect_attempt_timeout,
        Duration::from_millis(raw::DEFAULT_CONNECT_ATTEMPT_TIMEOUT_MS)
    );
    assert_eq!(
        c.upstream.tcp_keepalive,
        Some(Duration::from_secs(raw::DEFAULT_TCP_KEEPALIVE_SECS))
    );
    let c = Config::parse(&GOOD.replace(
        "[upstream]",
        "[upstream]\nconnect_attempt_timeout_ms = 250\ntcp_keepalive_secs = \"2m\"",
    ))
    .unwrap();
    assert_eq!(
        c.upstream.connect_attempt_timeout,
        Duration::from_millis(250)
    );
    assert_eq!(c.upstream.tcp_keepalive, Some(Duration::from_secs(120)));
    let c =
        Config::parse(&GOOD.replace("[upstream]", "[upstream]\ntcp_keepalive_secs = 0")).unwrap();
    assert_eq!(c.upstream.tcp_keepalive, None);
    let e = err(&GOOD.replace("[upstream]", "[upstream]\nconnect_attempt_timeout_ms = 0"));
    assert_eq!(e.key, "upstream.connect_attempt_timeout_ms");
}

#[test]
fn rediss_urls_are_accepted_with_or_without_a_ca_file() {
    let rediss = REDIS.replace("redis://", "rediss://");
    let c = Config::parse(&with_store(&rediss)).unwrap();
    let r = c.store.redis().unwrap();
    assert!(r.url.starts_with("rediss://"));
    assert_eq!(r.ca_pem, None);
    let dir = tempfile::tempdir().unwrap();
    let ca = dir.path().join("ca.pem");
    let ck = rcgen::generate_simple_self_signed(vec!["localhost".into()]).unwrap();
    std::fs::write(&ca, ck.cert.pem()).unwrap();
    let with_ca = with_store(&format!("{rediss}ca_file = \"{}\"\n", ca.display()));
    let c = Config::parse(&with_ca).unwrap();
    assert_eq!(
        c.store.redis().unwrap().ca_pem.as_deref(),
        Some(ck.cert.pem().as_bytes())
    );
    // A file without a certificate.
    std::fs::write(&ca, "not a certificate").unwrap();
    let e = err(&with_ca);
    assert_eq!(e.key, "store.ca_file");
}

#[test]
fn telemetry_and_the_admin_token_take_units_the_environment_and_keep_the_token_secret() {
    let text = format!(
        "{GOOD}[admin]\nlisten = \"127.0.0.1:9901\"\n[telemetry.otlp]\nendpoint = \"http://127.0.0.1:4318\"\ntimeout_ms = \"2s\"\nsampling_ratio = 0.25\n"
    );
    let token = "env-admin-token-0123456789";
    let c = Config::check_with(&text, None, vars(&[("ORDERGATE_ADMIN__TOKEN", token)])).unwrap();
    let otlp = c.telemetry.otlp.as_ref().unwrap();
    assert_eq!(otlp.traces_url, "http://127.0.0.1:4318/v1/traces");
    assert_eq!(otlp.timeout, Duration::from_secs(2));
    assert_eq!(otlp.sampling_ratio, 0.25);
    assert_eq!(otlp.service_name, "ordergate");
    assert_eq!(c.admin.as_ref().unwrap().token.as_deref(), Some(token));
    assert!(!format!("{c:?}").contains(token));
    let o = c.overrides.iter().find(|o| o.key == "admin.token").unwrap();
    assert!(o.is_secret());
    // Without the table, nothing is exported.
    assert!(Config::parse(GOOD).unwrap().telemetry.otlp.is_none());
    // Every problem of the section at once, past a key of the wrong type,
    // and never the token's value.
    let bad = format!(
        "{GOOD}[admin]\nlisten = \"127.0.0.1:9901\"\ntoken = \"short token\"\n[telemetry.otlp]\nendpoint = \"https://collector:4318\"\nprotocol = \"grpc\"\nsampling_ratio = 2.0\ntimeout_ms = \"soon\"\ncolour = 1\n"
    );
    let problems = Config::check_with(&bad, None, Vec::new()).unwrap_err();
    let keys: Vec<&str> = problems.iter().map(|p| p.key.as_str()).collect();
    for key in [
        "admin.token",
        "telemetry.otlp.endpoint",
        "telemetry.otlp.protocol",
        "telemetry.otlp.sampling_ratio",
        "telemetry.otlp.timeout_ms",
        "telemetry.otlp.colour",
    ] {
        assert!(keys.contains(&key), "{key} in {problems:?}");
    }
    assert!(!format!("{problems:?}").contains("short token"));
}

#[test]
fn hsts_max_age_takes_units_in_whole_seconds() {
    let dir = tempfile::tempdir().unwrap();
    let cert = rcgen::generate_simple_self_signed(vec!["localhost".into()]).unwrap();
    let (cert_path, key_path) = (dir.path().join("c.pem"), dir.path().join("k.pem"));
    std::fs::write(&cert_path, cert.cert.pem()).unwrap();
    std::fs::write(&key_path, cert.signing_key.serialize_pem()).unwrap();
    let with_hsts = |hsts: &str| {
        GOOD.replace(
            "listen = \"127.0.0.1:8080\"",
            &format!(
                "listen = \"127.0.0.1:8080\"\ntls = {{ cert_path = {:?}, key_path = {:?}, hsts_max_age_secs = {hsts} }}",
                cert_path.display().to_string(),
                key_path.display().to_string(),
            ),
        )
    };
    let c = Config::parse(&with_hsts("\"365days\"")).unwrap();
    let hsts = c.server.listeners[0].tls.as_ref().unwrap().settings.hsts;
    assert_eq!(hsts.unwrap().max_age, Duration::from_secs(365 * 86_400));
    let c = Config::parse(&with_hsts("600")).unwrap();
    let hsts = c.server.listeners[0].tls.as_ref().unwrap().settings.hsts;
    assert_eq!(hsts.unwrap().max_age, Duration::from_secs(600));
    let e = err(&with_hsts("\"1500ms\""));
    assert_eq!(e.key, "server.tls.hsts_max_age_secs");
}

/// A folder with `tls/cert.pem`, `tls/key.pem`, `tls/ocsp.der` and
/// `tls/ca.pem`, and a config `gw.toml` beside that names them by relative
/// paths: TLS on `listen` and on a second listener, an https upstream and a
/// rediss store with CA files.
fn relative_files() -> (tempfile::TempDir, std::path::PathBuf, String) {
    let dir = tempfile::tempdir().unwrap();
    let tls = dir.path().join("tls");
    std::fs::create_dir(&tls).unwrap();
    let ck = rcgen::generate_simple_self_signed(vec!["localhost".into()]).unwrap();
    std::fs::write(tls.join("cert.pem"), ck.cert.pem()).unwrap();
    std::fs::write(tls.join("key.pem"), ck.signing_key.serialize_pem()).unwrap();
    std::fs::write(tls.join("ca.pem"), ck.cert.pem()).unwrap();
    // A DER SEQUENCE: all the gateway checks of an OCSP response.
    std::fs::write(tls.join("ocsp.der"), [0x30, 0x03, 0x02, 0x01, 0x00]).unwrap();
    let text = r#"
[server]
listen = "127.0.0.1:8443"
public_base_url = "https://127.0.0.1:8443/"
tls = { cert_path = "tls/cert.pem", key_path = "tls/key.pem", ocsp_path = "tls/ocsp.der" }
[[server.listeners]]
listen = "127.0.0.1:9443"
tls = { cert_path = "./tls/cert.pem", key_path = "tls/../tls/key.pem" }
[upstream]
url = "https://127.0.0.1:9000"
ca_file = "tls/ca.pem"
[store]
kind = "redis"
url = "rediss://127.0.0.1:6380/0"
ca_file = "tls/ca.pem"
"#
    .to_owned();
    let file = dir.path().join("gw.toml");
    std::fs::write(&file, &text).unwrap();
    (dir, file, text)
}

#[test]
fn relative_tls_and_ca_files_are_relative_to_the_config_file() {
    let (dir, file, text) = relative_files();
    let d = dir.path();
    // The tests' working directory is the crate's, which has no `tls/`:
    // only the file's folder makes these paths readable.
    assert!(!Path::new("tls/cert.pem").exists());
    for c in [
        Config::check_file(&file).unwrap(),
        Config::check_with(&text, Some(d), Vec::new()).unwrap(),
    ] {
        let main = &c.server.listeners[0].tls.as_ref().unwrap().settings;
        assert_eq!(main.cert_path, d.join("tls/cert.pem"));
        assert_eq!(main.key_path, d.join("tls/key.pem"));
        assert_eq!(main.ocsp_path, Some(d.join("tls/ocsp.der")));
        let second = &c.server.listeners[1].tls.as_ref().unwrap().settings;
        assert_eq!(second.cert_path, d.join("./tls/cert.pem"));
        assert_eq!(second.key_path, d.join("tls/../tls/key.pem"));
        let ca = std::fs::read(d.join("tls/ca.pem")).unwrap();
        assert_eq!(c.store.redis().unwrap().ca_pem.as_deref(), Some(&ca[..]));
    }
    // A path set from the environment is read the same way.
    let env = vars(&[("ORDERGATE_SERVER__TLS__KEY_PATH", "./tls/key.pem")]);
    let c = Config::check_with(&text, Some(d), env).unwrap();
    let main = &c.server.listeners[0].tls.as_ref().unwrap().settings;
    assert_eq!(main.key_path, d.join("./tls/key.pem"));
    // Absolute paths stay as they are.
    let cert = d.join("tls/cert.pem").display().to_string();
    let absolute = text.replacen("\"tls/cert.pem\"", &format!("{cert:?}"), 1);
    let c = Config::check_with(&absolute, Some(Path::new("/nonexistent")), Vec::new());
    let problems = c.unwrap_err();
    let keys: Vec<&str> = problems.iter().map(|p| p.key.as_str()).collect();
    assert!(!keys.contains(&"server.tls.cert_path"), "{problems:?}");
    assert!(keys.contains(&"server.tls.key_path"), "{problems:?}");
    // Text without a file: relative to the working directory, as before.
    let problems = Config::check(&text).unwrap_err();
    let cert = problems
        .iter()
        .find(|p| p.key == "server.tls.cert_path")
        .unwrap();
    assert!(cert.reason.contains(" tls/cert.pem:"), "{cert}");
}

#[test]
fn a_missing_relative_file_is_named_by_its_resolved_path() {
    let (dir, _file, text) = relative_files();
    let missing = text.replace("tls/", "gone/");
    let problems = Config::check_with(&missing, Some(dir.path()), Vec::new()).unwrap_err();
    for (key, file) in [
        ("server.tls.cert_path", "gone/cert.pem"),
        ("server.listeners[0].tls.cert_path", "./gone/cert.pem"),
        ("upstream.ca_file", "gone/ca.pem"),
        ("store.ca_file", "gone/ca.pem"),
    ] {
        let p = problems
            .iter()
            .find(|p| p.key == key)
            .unwrap_or_else(|| panic!("{key} in {problems:?}"));
        let resolved = dir.path().join(file).display().to_string();
        assert!(p.reason.contains(&resolved), "{key}: {p}");
    }
    // The key and OCSP files of a listener whose certificate is there.
    let (dir, _file, text) = relative_files();
    let missing = text
        .replace("key_path = \"tls/key.pem\"", "key_path = \"gone/key.pem\"")
        .replace("\"tls/ocsp.der\"", "\"gone/ocsp.der\"");
    let problems = Config::check_with(&missing, Some(dir.path()), Vec::new()).unwrap_err();
    let key = problems
        .iter()
        .find(|p| p.key == "server.tls.key_path")
        .unwrap();
    assert!(
        key.reason
            .contains(&dir.path().join("gone/key.pem").display().to_string()),
        "{key}"
    );
    let ocsp = text.replace("\"tls/ocsp.der\"", "\"gone/ocsp.der\"");
    let problems = Config::check_with(&ocsp, Some(dir.path()), Vec::new()).unwrap_err();
    let p = problems
        .iter()
        .find(|p| p.key == "server.tls.ocsp_path")
        .unwrap();
    assert!(
        p.reason
            .contains(&dir.path().join("gone/ocsp.der").display().to_string()),
        "{p}"
    );
}

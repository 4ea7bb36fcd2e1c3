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

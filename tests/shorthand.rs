#![allow(clippy::unwrap_used, clippy::expect_used)]
//! The `/order` shorthand and implicit creation, over real sockets.

mod support;

use http::Method;
use support::*;

const JSON_CT: (&str, &str) = ("content-type", "application/json; charset=UTF-8");

#[tokio::test]
async fn implicit_creation_without_a_cookie_sets_both_cookies() {
    let env = Env::start().await;
    let a = env
        .client
        .send(
            Method::PUT,
            "/order/account",
            &[("authorization", AUTH), JSON_CT],
            r#"{"currency": "USD", "language": "en-US"}"#,
        )
        .await;
    assert_eq!(a.status, 200, "{a:?}");
    let owner = a.owner().expect("OwnerId cookie");
    let cookies = a.set_cookies();
    assert_eq!(cookies.len(), 2, "{cookies:?}");
    for path in ["Path=/order", "Path=/orders"] {
        assert!(
            cookies
                .iter()
                .any(|c| c.starts_with(&format!("OwnerId={owner};"))
                    && c.split("; ").any(|p| p == path)),
            "{path} in {cookies:?}"
        );
    }
    assert!(cookies.iter().all(|c| c.contains("HttpOnly")));
    assert_eq!(env.creations(), 1);
    // The creation went upstream with the caller's credentials.
    let post = env
        .seen(|s| s.method == Method::POST && s.path == "/orders")
        .unwrap();
    assert_eq!(post.headers["authorization"], AUTH);
    // The call itself reached the new order's child resource.
    let id = env.seen(|s| s.method == Method::PUT).unwrap().path;
    assert!(
        id.starts_with("/orders/") && id.ends_with("/account"),
        "{id}"
    );
    // And the association works at once.
    let g = env
        .client
        .get(
            "/order",
            &[("authorization", AUTH), ("cookie", &cookie(&owner))],
        )
        .await;
    assert_eq!(g.status, 200, "{g:?}");
    assert_eq!(g.json()["order"]["OwnerId"], owner);
}

#[tokio::test]
async fn implicit_creation_keeps_the_clients_own_owner_id() {
    let env = Env::start().await;
    let mine = "4d84cd13-bbb3-46ba-a40c-8988351e3681";
    let a = env
        .client
        .send(
            Method::PUT,
            "/order/account",
            &[("cookie", &cookie(mine))],
            r#"{"currency":"USD"}"#,
        )
        .await;
    assert_eq!(a.status, 200, "{a:?}");
    assert_eq!(a.owner().as_deref(), Some(mine));
    let g = env.client.get("/order", &[("cookie", &cookie(mine))]).await;
    assert_eq!(g.status, 200);
    assert_eq!(g.json()["order"]["OwnerId"], mine);
    // A second implicit call uses the same order: no new creation, no cookies.
    let b = env
        .client
        .send(
            Method::POST,
            "/order/product",
            &[("cookie", &cookie(mine))],
            r#"{"x":1}"#,
        )
        .await;
    assert_eq!(b.status, 201, "{b:?}");
    assert!(b.set_cookies().is_empty());
    assert_eq!(env.creations(), 1);
}

#[tokio::test]
async fn get_order_has_self_and_alternate_links_and_rewritten_urls() {
    let env = Env::start().await;
    let a = env
        .client
        .send(Method::PUT, "/order/account", &[], r#"{"currency":"USD"}"#)
        .await;
    let owner = a.owner().unwrap();
    let g = env
        .client
        .get("/order", &[("cookie", &cookie(&owner))])
        .await;
    assert_eq!(g.status, 200);
    assert_eq!(
        g.header("content-type"),
        Some("application/json; charset=UTF-8")
    );
    let v = g.json();
    let links = v["links"].as_array().expect("links array kept as an array");
    let href = |rel: &str| {
        links
            .iter()
            .find(|l| l["rel"] == rel)
            .map(|l| l["href"].as_str().unwrap().to_owned())
    };
    assert_eq!(href("self").unwrap(), format!("{}/order/", env.public()));
    let alternate = href("alternate").unwrap();
    let id = order_id(&alternate);
    assert_eq!(alternate, format!("{}/orders/{id}/", env.public()));
    assert!(env.backend.state.order(&id).is_some());
    assert!(!g.text().contains(INTERNAL), "{}", g.text());
}

#[tokio::test]
async fn child_resources_show_shorthand_links_and_location() {
    let env = Env::start().await;
    let a = env
        .client
        .send(
            Method::POST,
            "/order/product",
            &[JSON_CT],
            r#"{"spec": "x"}"#,
        )
        .await;
    assert_eq!(a.status, 201, "{a:?}");
    let owner = a.owner().unwrap();
    assert_eq!(
        a.header("location"),
        Some(format!("{}/order/product/p1", env.public()).as_str())
    );
    let g = env
        .client
        .get("/order/product/p1", &[("cookie", &cookie(&owner))])
        .await;
    assert_eq!(g.status, 200);
    let v = g.json();
    assert_eq!(v["status"], "new");
    assert_eq!(
        v["services"],
        format!("{}/order/product/p1/services", env.public())
    );
    assert_eq!(
        v["offering"],
        format!(
            "{}/productSpecifications/spec1/offerings/basic",
            env.public()
        )
    );
    assert_eq!(
        v["links"][0]["href"],
        format!("{}/order/product/p1/", env.public())
    );
    // Links object form (the quote) too.
    let q = env
        .client
        .get("/order/quote", &[("cookie", &cookie(&owner))])
        .await;
    assert_eq!(
        q.json()["links"]["self"]["href"],
        format!("{}/order/quote/", env.public())
    );
}

#[tokio::test]
async fn submit_through_the_shorthand_gives_the_explicit_location_and_ends_the_order() {
    let env = Env::start().await;
    let a = env
        .client
        .send(Method::PUT, "/order/account", &[], r#"{"currency":"USD"}"#)
        .await;
    let owner = a.owner().unwrap();
    let c = cookie(&owner);
    let g = env.client.get("/order", &[("cookie", &c)]).await;
    let id = order_id(g.json()["links"][1]["href"].as_str().unwrap());
    let s = env
        .client
        .send(
            Method::POST,
            "/order/action",
            &[("cookie", &c), JSON_CT],
            r#"{"action": "submit"}"#,
        )
        .await;
    assert_eq!(s.status, 202, "{s:?}");
    assert_eq!(
        s.header("location"),
        Some(format!("{}/orders/{id}/", env.public()).as_str())
    );
    // The order is no longer open: the shorthand has nothing.
    let g = env.client.get("/order", &[("cookie", &c)]).await;
    assert_eq!(g.status, 404);
    assert_eq!(g.fault().0, "itemNotFound");
    // Its explicit URL still works.
    let e = env
        .client
        .get(&format!("/orders/{id}"), &[("cookie", &c)])
        .await;
    assert_eq!(e.json()["order"]["Status"], "Processing");
}

#[tokio::test]
async fn validate_does_not_end_the_order() {
    let env = Env::start().await;
    let owner = env
        .client
        .send(Method::PUT, "/order/account", &[], "{}")
        .await
        .owner()
        .unwrap();
    let c = cookie(&owner);
    let v = env
        .client
        .send(
            Method::POST,
            "/order/action",
            &[("cookie", &c)],
            r#"{"action":"validate"}"#,
        )
        .await;
    assert_eq!(v.status, 204);
    assert_eq!(
        env.client.get("/order", &[("cookie", &c)]).await.status,
        200
    );
}

#[tokio::test]
async fn without_an_open_order_reads_get_404_and_create_nothing() {
    let env = Env::start().await;
    let owner = "73adb746-2443-4cc8-879e-886348385b9a";
    for (m, path) in [
        (Method::GET, "/order"),
        (Method::HEAD, "/order"),
        (Method::OPTIONS, "/order"),
        (Method::DELETE, "/order"),
        (Method::GET, "/order/quote"),
        (Method::PATCH, "/order/account"),
        (Method::DELETE, "/order/product/p1"),
    ] {
        let a = env
            .client
            .send(m.clone(), path, &[("cookie", &cookie(owner))], "")
            .await;
        assert_eq!(a.status, 404, "{m} {path}");
        if m != Method::HEAD {
            assert_eq!(a.fault().0, "itemNotFound");
        }
    }
    assert_eq!(env.creations(), 0);
    assert!(
        env.backend.state.seen().is_empty(),
        "the upstream was called"
    );
}

#[tokio::test]
async fn bad_owner_cookies_get_401_and_reach_nothing() {
    let env = Env::start().await;
    let a = "4d84cd13-bbb3-46ba-a40c-8988351e3681";
    let b = "73adb746-2443-4cc8-879e-886348385b9a";
    let two = format!("OwnerId={a}; OwnerId={b}");
    type Case<'a> = (Method, &'a str, Vec<(&'a str, &'a str)>);
    let cases: Vec<Case> = vec![
        (Method::GET, "/order", vec![]),
        (Method::DELETE, "/order", vec![]),
        (Method::GET, "/order", vec![("cookie", "OwnerId=")]),
        (
            Method::GET,
            "/order",
            vec![("cookie", "OwnerId=not-a-uuid")],
        ),
        (
            Method::PUT,
            "/order/account",
            vec![("cookie", "OwnerId=not-a-uuid")],
        ),
        (Method::PUT, "/order/account", vec![("cookie", "OwnerId=")]),
        (Method::POST, "/order/product", vec![("cookie", &two)]),
        (Method::GET, "/order", vec![("cookie", &two)]),
    ];
    for (m, path, headers) in cases {
        let r = env.client.send(m.clone(), path, &headers, "{}").await;
        assert_eq!(r.status, 401, "{m} {path} {headers:?}");
        assert_eq!(r.fault().0, "unauthorized");
    }
    assert!(
        env.backend.state.seen().is_empty(),
        "the upstream was called"
    );
}

#[tokio::test]
async fn path_tricks_are_refused_and_look_alikes_pass_through() {
    let env = Env::start().await;
    // Owner A has an order; owner B tries to reach it through the shorthand.
    let victim = env
        .client
        .send(Method::PUT, "/order/account", &[], "{}")
        .await
        .owner()
        .unwrap();
    let g = env
        .client
        .get("/order", &[("cookie", &cookie(&victim))])
        .await;
    let victim_order = order_id(g.json()["links"][1]["href"].as_str().unwrap());
    let attacker = env
        .client
        .send(Method::PUT, "/order/account", &[], "{}")
        .await
        .owner()
        .unwrap();
    let before = env.backend.state.seen().len();
    let ac = cookie(&attacker);
    for path in [
        format!("/order/../orders/{victim_order}"),
        format!("/order/%2e%2e/orders/{victim_order}"),
        format!("/order/%2E%2E/orders/{victim_order}/account"),
        format!("/order/.%2e/orders/{victim_order}"),
        format!("/order/%2f..%2forders%2f{victim_order}"),
        format!("/order/..%2forders%2f{victim_order}"),
        format!("/order/account%2f..%2f..%2f{victim_order}"),
        "/order/./account".to_owned(),
    ] {
        let r = env.client.get(&path, &[("cookie", &ac)]).await;
        assert_eq!(r.status, 400, "{path}: {r:?}");
        assert_eq!(r.fault().0, "badRequest");
    }
    assert_eq!(
        env.backend.state.seen().len(),
        before,
        "a refused path reached the upstream"
    );
    // The attacker's shorthand is the attacker's own order.
    let mine = env.client.get("/order", &[("cookie", &ac)]).await;
    assert_eq!(mine.json()["order"]["OwnerId"], attacker.as_str());
    // /orderX is not the shorthand: it goes to the upstream as it is.
    let x = env.client.get("/orderX", &[("cookie", &ac)]).await;
    assert_eq!(x.status, 404);
    assert_eq!(env.backend.state.seen().last().unwrap().path, "/orderX");
}

#[tokio::test]
async fn fifty_concurrent_implicit_creations_make_one_order() {
    let env = Env::start().await;
    let owner = "f9cafb10-2e85-4b1a-bd69-1b1a91437d50";
    let c = cookie(owner);
    let calls = (0..50).map(|i| {
        let client = env.client.clone();
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
    });
    let answers: Vec<Answer> = futures_join(calls.collect()).await;
    for a in &answers {
        assert_eq!(a.status, 200, "{a:?}");
        assert_eq!(
            a.owner().as_deref(),
            Some(owner),
            "every waiter gets the cookie"
        );
    }
    assert_eq!(env.creations(), 1);
    let g = env.client.get("/order", &[("cookie", &c)]).await;
    let id = order_id(g.json()["links"][1]["href"].as_str().unwrap());
    assert_eq!(env.backend.state.order(&id).unwrap().children.len(), 50);
}

async fn futures_join(tasks: Vec<tokio::task::JoinHandle<Answer>>) -> Vec<Answer> {
    let mut out = Vec::new();
    for t in tasks {
        out.push(t.await.unwrap());
    }
    out
}

#[tokio::test]
async fn post_order_creates_like_post_orders_then_409() {
    let env = Env::start().await;
    let a = env
        .client
        .send(Method::POST, "/order", &[("authorization", AUTH)], "")
        .await;
    assert_eq!(a.status, 202, "{a:?}");
    let owner = a.owner().unwrap();
    assert_eq!(a.set_cookies().len(), 2, "{:?}", a.set_cookies());
    let loc = a.header("location").unwrap();
    assert!(
        loc.starts_with(&format!("{}/orders/", env.public())),
        "{loc}"
    );
    let b = env
        .client
        .send(Method::POST, "/order", &[("cookie", &cookie(&owner))], "")
        .await;
    assert_eq!(b.status, 409);
    assert_eq!(b.fault().0, "conflict");
    assert_eq!(env.creations(), 1);
}

#[tokio::test]
async fn delete_through_the_shorthand_ends_the_order() {
    let env = Env::start().await;
    let owner = env
        .client
        .send(Method::PUT, "/order/account", &[], "{}")
        .await
        .owner()
        .unwrap();
    let c = cookie(&owner);
    assert_eq!(
        env.client
            .send(Method::DELETE, "/order", &[("cookie", &c)], "")
            .await
            .status,
        204
    );
    assert_eq!(
        env.client.get("/order", &[("cookie", &c)]).await.status,
        404
    );
    // A new implicit creation makes a new order for the same owner.
    let again = env
        .client
        .send(Method::PUT, "/order/account", &[("cookie", &c)], "{}")
        .await;
    assert_eq!(again.status, 200);
    assert_eq!(env.creations(), 2);
}

/// With `http2 = true` the gateway speaks to the upstream through hyper's
/// client, which takes a whole URI: the shorthand's upstream path must be
/// built into it (the pooled HTTP/1.1 exchange writes it as it is).
#[tokio::test]
async fn the_shorthand_reaches_the_owners_order_over_http2_to_the_upstream_too() {
    let env = Env::with_store("http2 = true\n[store]\nkind = \"memory\"").await;
    let (_, owner) = env
        .client
        .create_implicitly(&[("authorization", AUTH), JSON_CT])
        .await;
    let g = env
        .client
        .get(
            "/order/quote?x=1",
            &[("authorization", AUTH), ("cookie", &cookie(&owner))],
        )
        .await;
    let put = env.seen(|s| s.method == Method::PUT).unwrap().path;
    let order = put.trim_end_matches("/account").to_owned();
    let get = env
        .seen(|s| s.method == Method::GET && s.path.ends_with("/quote"))
        .unwrap_or_else(|| panic!("no quote read upstream ({g:?})"));
    assert_eq!(get.path, format!("{order}/quote"));
    let view = env
        .client
        .get(
            "/order",
            &[("authorization", AUTH), ("cookie", &cookie(&owner))],
        )
        .await;
    assert_eq!(view.status, 200, "{view:?}");
    assert_eq!(view.json()["order"]["OwnerId"], owner);
}

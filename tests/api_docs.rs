#![allow(clippy::unwrap_used, clippy::expect_used)]
//! Every request/response example of the legacy API's reference pages,
//! walked through the gateway in front of the emulated backend.

mod support;

use http::Method;
use support::*;

const JSON_CT: (&str, &str) = ("content-type", "application/json; charset=UTF-8");

/// order-exchange-otherproduct.txt: a PUT on an account resource creates the
/// order; quote; submit; status polling.
#[tokio::test]
async fn ordering_other_exchange_products() {
    let env = Env::start().await;
    let put = env
        .client
        .send(
            Method::PUT,
            "/accounts/acct999999/exchange/myexchangedomain.com/emailEncryption",
            &[("authorization", AUTH)],
            r#"{ "adminEmail": "someone@somewhere.com" }"#,
        )
        .await;
    assert_eq!(put.status, 202);
    assert!(put.body.is_empty());
    let owner = put.owner().unwrap();
    let loc = put.header("location").unwrap().to_owned();
    let id = order_id(&loc);
    assert_eq!(loc, format!("{}/orders/{id}", env.public()));
    let c = format!("OwnerId={owner}; Path=/");
    let headers = [("cookie", c.as_str()), ("authorization", AUTH)];

    let q = env
        .client
        .get(&format!("/orders/{id}/quote"), &headers)
        .await;
    assert_eq!(q.status, 200);
    assert_eq!(
        q.header("content-type"),
        Some("application/json; charset=UTF-8")
    );
    let v = q.json();
    assert_eq!(
        v["quote"]["Hash"],
        "b6a714a2ba76b6f15df9e46964df21ca726594a0"
    );
    assert_eq!(v["quote"]["Total"], "0.00");
    assert_eq!(
        v["links"]["self"]["href"],
        format!("{}/orders/{id}/quote/", env.public())
    );

    let s = env
        .client
        .send(
            Method::POST,
            &format!("/orders/{id}/action"),
            &[headers[0], headers[1], JSON_CT],
            r#"{"action": "submit"}"#,
        )
        .await;
    assert_eq!(s.status, 202);
    assert!(s.body.is_empty());

    let st = env.client.get(&format!("/orders/{id}"), &headers).await;
    assert_eq!(st.status, 200);
    let v = st.json();
    assert_eq!(v["order"]["Status"], "Processing");
    assert_eq!(
        v["order"]["Account"],
        format!("{}/accounts/acct999999", env.public())
    );
    assert_eq!(
        v["links"][0],
        serde_json::json!({"href": format!("{}/orders/{id}/", env.public()), "rel": "self"})
    );
    assert_eq!(
        env.client
            .get(&format!("/orders/{id}"), &headers)
            .await
            .json()["order"]["Status"],
        "Completed"
    );
    assert!(!st.text().contains(INTERNAL));
}

/// order-exchange-mailbox-free.txt: created and submitted in one call.
#[tokio::test]
async fn ordering_a_free_mailbox() {
    let env = Env::start().await;
    let body = r#"{"owner": {"username": "a.a", "password": "tester1234"}, "admin": 0, "notes": "some text",
        "recipientLimit": 10, "name": {"name": "John Smith"}, "address": {"city": "Chicago"}, "phones": {"fax": "555-555-5503"}}"#;
    let m = env
        .client
        .send(
            Method::POST,
            "/accounts/acct999999/exchange/myexchangedomain.com/mailboxes",
            &[("authorization", AUTH), JSON_CT],
            body,
        )
        .await;
    assert_eq!(m.status, 202);
    assert!(m.body.is_empty());
    let owner = m.owner().unwrap();
    let id = order_id(m.header("location").unwrap());
    let st = env
        .client
        .get(
            &format!("/orders/{id}"),
            &[("cookie", &cookie(&owner)), ("authorization", AUTH)],
        )
        .await;
    let v = st.json();
    assert_eq!(v["order"]["Status"], "Processing");
    assert_eq!(
        v["order"]["Account"],
        format!("{}/accounts/acct999999", env.public())
    );
    assert_eq!(
        v["links"][0]["href"],
        format!("{}/orders/{id}/", env.public())
    );
}

/// order-shorthand.txt: implicit creation, alternate hypermedia, child resource.
#[tokio::test]
async fn the_order_shorthand_page() {
    let env = Env::start().await;
    let put = env
        .client
        .send(
            Method::PUT,
            "/order/account",
            &[("authorization", AUTH), JSON_CT],
            r#"{"currency": "USD", "language": "en-US"}"#,
        )
        .await;
    assert_eq!(put.status, 200);
    let owner = put.owner().unwrap();
    let cookies = put.set_cookies();
    assert!(
        cookies
            .iter()
            .any(|c| c.starts_with(&format!("OwnerId={owner}")) && c.ends_with("Path=/order")),
        "{cookies:?}"
    );
    assert!(
        cookies
            .iter()
            .any(|c| c.starts_with(&format!("OwnerId={owner}")) && c.ends_with("Path=/orders")),
        "{cookies:?}"
    );

    let c = format!("OwnerId={owner}; Path=/order");
    let g = env
        .client
        .get("/order", &[("authorization", AUTH), ("cookie", &c)])
        .await;
    assert_eq!(g.status, 200);
    assert_eq!(
        g.header("content-type"),
        Some("application/json; charset=UTF-8")
    );
    let v = g.json();
    assert_eq!(v["order"]["OwnerId"], owner);
    let links = v["links"].as_array().unwrap();
    assert!(
        links
            .iter()
            .any(|l| l["rel"] == "self" && l["href"] == format!("{}/order/", env.public()))
    );
    let alt = links.iter().find(|l| l["rel"] == "alternate").unwrap()["href"]
        .as_str()
        .unwrap();
    assert!(alt.starts_with(&format!("{}/orders/", env.public())) && alt.ends_with('/'));

    // A product, then the documented child resource read.
    let p = env
        .client
        .send(
            Method::POST,
            "/order/product",
            &[("cookie", &c), JSON_CT],
            r#"{"spec": 1}"#,
        )
        .await;
    let pid = p
        .header("location")
        .unwrap()
        .rsplit('/')
        .next()
        .unwrap()
        .to_owned();
    let r = env
        .client
        .get(
            &format!("/order/product/{pid}"),
            &[("authorization", AUTH), ("cookie", &c)],
        )
        .await;
    assert_eq!(r.status, 200);
    let v = r.json();
    assert_eq!(v["status"], "new");
    assert_eq!(
        v["services"],
        format!("{}/order/product/{pid}/services", env.public())
    );
    assert!(
        v["offering"]
            .as_str()
            .unwrap()
            .starts_with(&format!("{}/productSpecifications/", env.public()))
    );
    assert_eq!(
        v["links"],
        serde_json::json!([{"href": format!("{}/order/product/{pid}/", env.public()), "rel": "self"}])
    );

    // The additional status code: 409 for a second order.
    let again = env
        .client
        .send(Method::POST, "/orders", &[("cookie", &c)], "")
        .await;
    assert_eq!(again.status, 409);
    // A GET or OPTIONS to a non-existing order is 404 and creates nothing.
    let other = "4d84cd13-bbb3-46ba-a40c-8988351e3681";
    assert_eq!(
        env.client
            .get("/order", &[("cookie", &cookie(other))])
            .await
            .status,
        404
    );
    assert_eq!(
        env.client
            .send(Method::OPTIONS, "/order", &[("cookie", &cookie(other))], "")
            .await
            .status,
        404
    );
    assert_eq!(env.creations(), 1);
}

/// orders-orderId-action-POST.txt: validate, submit, faults, OPTIONS.
#[tokio::test]
async fn the_action_page() {
    let env = Env::start().await;
    let owner = "948ce0d4-7cf0-43b6-88a5-2b3f1331b689";
    let c = format!("OwnerId={owner}; Path=/");
    let created = env
        .client
        .send(Method::POST, "/orders", &[("cookie", &c)], "")
        .await;
    let id = order_id(created.header("location").unwrap());
    let action = |body: &'static str, cookie: Option<&str>| {
        let client = env.client.clone();
        let path = format!("/orders/{id}/action");
        let cookie = cookie.map(str::to_owned);
        async move {
            let mut headers = vec![("content-type", "application/json; Charset=UTF-8")];
            if let Some(c) = &cookie {
                headers.push(("cookie", c.as_str()));
            }
            client.send(Method::POST, &path, &headers, body).await
        }
    };

    // Submit with an invalid quote before an account is set: computeFault.
    let bad = action(
        r#"{ "action" : "submit", "quoteHash" : "invalid_quote_id" }"#,
        Some(&c),
    )
    .await;
    assert_eq!(bad.status, 400);
    assert_eq!(
        bad.fault(),
        (
            "computeFault".to_owned(),
            "Account has not been set".to_owned()
        )
    );

    // Unassociated user without cookie: 403 forbidden.
    let forbidden = action(r#"{ "action": "validate" }"#, None).await;
    assert_eq!(forbidden.status, 403);
    assert_eq!(
        forbidden.fault(),
        (
            "forbidden".to_owned(),
            "Unauthorized: Order failed permission check".to_owned()
        )
    );
    assert!(forbidden.json()["forbidden"]["guid"].is_string());

    env.client
        .send(
            Method::PUT,
            &format!("/orders/{id}/account"),
            &[("cookie", &c)],
            r#"{"a": 1}"#,
        )
        .await;
    let validate = action(r#"{ "action": "validate" }"#, Some(&c)).await;
    assert_eq!(validate.status, 204);
    let submit = action(r#"{ "action": "submit" }"#, Some(&c)).await;
    assert_eq!(submit.status, 202);

    // Unknown order: 404.
    let missing = env
        .client
        .send(
            Method::POST,
            "/orders/0000013ca61880fbfc068b33000a02c9d8ef861c/action",
            &[("cookie", &c)],
            r#"{"action":"submit"}"#,
        )
        .await;
    assert_eq!(missing.status, 404);
    assert_eq!(missing.fault().0, "itemNotFound");

    // OPTIONS for direct browser access.
    let o = env
        .client
        .send(
            Method::OPTIONS,
            &format!("/orders/{id}/action"),
            &[("cookie", &c)],
            "",
        )
        .await;
    assert_eq!(o.status, 200);
    assert_eq!(
        o.header("access-control-allow-methods"),
        Some("POST, OPTIONS")
    );
    assert_eq!(o.header("access-control-allow-origin"), Some("*"));
    let o = env
        .client
        .send(
            Method::OPTIONS,
            "/orders/0000013ca61880fbfc068b33000a02c9d8ef861c/action",
            &[],
            "",
        )
        .await;
    assert_eq!(o.status, 404);
}

//! The emulated API's routes.

use super::{Order, Resp, Seen, State, Status};
use bytes::Bytes;
use http::header::{CONTENT_TYPE, COOKIE, LOCATION, SET_COOKIE};
use http::{HeaderValue, Method, Request, StatusCode};
use http_body_util::{BodyExt, Full};
use serde_json::{Value, json};
use std::collections::HashMap;

const JSON: &str = "application/json; charset=UTF-8";

fn respond(status: StatusCode, body: Option<Value>) -> Resp {
    let mut r = match body {
        Some(v) => {
            let mut r = http::Response::new(Full::new(Bytes::from(
                serde_json::to_vec_pretty(&v).unwrap_or_default(),
            )));
            r.headers_mut()
                .insert(CONTENT_TYPE, HeaderValue::from_static(JSON));
            r
        }
        None => http::Response::new(Full::new(Bytes::new())),
    };
    *r.status_mut() = status;
    r
}

fn fault(status: StatusCode, kind: &str, message: &str) -> Resp {
    let guid = uuid::Uuid::new_v4().to_string();
    respond(
        status,
        Some(
            json!({kind: {"guid": guid, "message": message, "code": status.as_u16(), "details": ""}}),
        ),
    )
}

fn not_found() -> Resp {
    fault(StatusCode::NOT_FOUND, "itemNotFound", "Resource not found")
}

fn owner_cookie(req_headers: &http::HeaderMap) -> Option<String> {
    req_headers
        .get_all(COOKIE)
        .iter()
        .filter_map(|v| v.to_str().ok())
        .flat_map(|v| v.split(';'))
        .filter_map(|p| p.split_once('='))
        .find(|(n, _)| n.trim() == "OwnerId")
        .map(|(_, v)| v.trim().to_owned())
        .filter(|v| uuid::Uuid::try_parse(v).is_ok())
}

/// 202 + Location + Set-Cookie, as the upstream answers every order creation.
fn created(state: &State, id: &str, owner: &str) -> Resp {
    let mut r = respond(StatusCode::ACCEPTED, None);
    if let Ok(v) = HeaderValue::from_str(&format!("{}/orders/{id}", state.base)) {
        r.headers_mut().insert(LOCATION, v);
    }
    if let Ok(v) = HeaderValue::from_str(&format!("OwnerId={owner}; Path=/")) {
        r.headers_mut().insert(SET_COOKIE, v);
    }
    r
}

fn new_order(
    state: &State,
    owner: Option<String>,
    account: Option<Value>,
    status: Status,
) -> (String, String) {
    let owner = owner.unwrap_or_else(|| uuid::Uuid::new_v4().to_string());
    let id = state.new_id();
    let order = Order {
        owner: owner.clone(),
        status,
        account,
        products: HashMap::new(),
        children: HashMap::new(),
    };
    state.orders().insert(id.clone(), order);
    (id, owner)
}

fn allow(methods: &'static str) -> Resp {
    let mut r = respond(StatusCode::OK, None);
    r.headers_mut().insert(
        "access-control-allow-methods",
        HeaderValue::from_static(methods),
    );
    r.headers_mut()
        .insert("access-control-allow-origin", HeaderValue::from_static("*"));
    r
}

pub async fn handle(state: &State, req: Request<hyper::body::Incoming>) -> Resp {
    let (parts, body) = req.into_parts();
    let body = match body.collect().await {
        Ok(b) => b.to_bytes(),
        Err(_) => {
            return fault(
                StatusCode::BAD_REQUEST,
                "badRequest",
                "The request body could not be read",
            );
        }
    };
    state
        .seen
        .lock()
        .unwrap_or_else(|p| p.into_inner())
        .push(Seen {
            method: parts.method.clone(),
            path: parts.uri.path().to_owned(),
            headers: parts.headers.clone(),
        });
    let json_body = || -> Result<Value, Box<Resp>> {
        if body.is_empty() {
            return Ok(json!({}));
        }
        serde_json::from_slice(&body).map_err(|_| {
            Box::new(fault(
                StatusCode::BAD_REQUEST,
                "badRequest",
                "The request body is not valid JSON",
            ))
        })
    };
    let owner = owner_cookie(&parts.headers);
    let segs: Vec<&str> = parts
        .uri
        .path()
        .trim_end_matches('/')
        .split('/')
        .skip(1)
        .collect();
    let m = &parts.method;
    match segs.as_slice() {
        ["orders"] if m == Method::POST => {
            let (id, owner) = new_order(state, owner, None, Status::New);
            created(state, &id, &owner)
        }
        ["orders"] if m == Method::OPTIONS => allow("POST, OPTIONS"),
        ["accounts", acct] if m == Method::GET => respond(
            StatusCode::OK,
            Some(
                json!({"account": {"id": acct}, "links": [{"href": format!("{}/accounts/{acct}", state.base), "rel": "self"}]}),
            ),
        ),
        // Ordering other exchange products: creates an order, not submitted.
        ["accounts", acct, "exchange", _domain, product]
            if m == Method::PUT && *product != "mailboxes" =>
        {
            let data = match json_body() {
                Ok(v) => v,
                Err(r) => return *r,
            };
            let account = json!(format!("{}/accounts/{acct}", state.base));
            let (id, owner) = new_order(state, owner, Some(account), Status::New);
            if let Some(o) = state.orders().get_mut(&id) {
                o.children.insert((*product).to_owned(), data);
            }
            created(state, &id, &owner)
        }
        // A free mailbox: created and already submitted.
        ["accounts", acct, "exchange", _domain, "mailboxes"] if m == Method::POST => {
            if let Err(r) = json_body() {
                return *r;
            }
            let account = json!(format!("{}/accounts/{acct}", state.base));
            let (id, owner) = new_order(state, owner, Some(account), Status::Processing);
            created(state, &id, &owner)
        }
        ["orders", id, rest @ ..] => {
            order_resource(state, m, id, rest, owner.as_deref(), json_body)
        }
        _ => not_found(),
    }
}

fn order_resource(
    state: &State,
    m: &Method,
    id: &str,
    rest: &[&str],
    owner: Option<&str>,
    json_body: impl Fn() -> Result<Value, Box<Resp>>,
) -> Resp {
    let base = &state.base;
    let mut orders = state.orders();
    let Some(order) = orders.get_mut(id) else {
        return not_found();
    };
    if m == Method::OPTIONS {
        return match rest {
            [] => allow("GET, DELETE, OPTIONS"),
            ["action"] => allow("POST, OPTIONS"),
            ["product"] => allow("POST, OPTIONS"),
            _ => allow("GET, PUT, DELETE, OPTIONS"),
        };
    }
    if owner != Some(order.owner.as_str()) {
        return fault(
            StatusCode::FORBIDDEN,
            "forbidden",
            "Unauthorized: Order failed permission check",
        );
    }
    let open = order.status == Status::New;
    let submitted = || {
        fault(
            StatusCode::CONFLICT,
            "conflict",
            "The order has already been submitted",
        )
    };
    let self_link =
        |path: &str| json!([{"href": format!("{base}/orders/{id}{path}/"), "rel": "self"}]);
    match (m.as_str(), rest) {
        ("GET" | "HEAD", []) => {
            let shown = order.status;
            // Provisioning finishes a while after the submit.
            if order.status == Status::Processing {
                order.status = Status::Completed;
            }
            let mut o = json!({"Status": shown.as_str(), "OwnerId": order.owner});
            if let Some(a) = &order.account {
                o["Account"] = a.clone();
            }
            respond(
                StatusCode::OK,
                Some(json!({"order": o, "links": self_link("")})),
            )
        }
        ("DELETE", []) if !open => submitted(),
        ("DELETE", []) => {
            orders.remove(id);
            respond(StatusCode::NO_CONTENT, None)
        }
        ("GET", ["quote"]) => respond(
            StatusCode::OK,
            Some(json!({
                "quote": {"Hash": "b6a714a2ba76b6f15df9e46964df21ca726594a0", "Currency": "USD", "Total": "0.00",
                          "SubTotal": "0.00", "OneTimeFeeAmount": "0", "TaxTotal": "0",
                          "DeferredSubTotals": [], "DeferredTaxes": [], "DeferredTotals": []},
                "links": {"self": {"href": format!("{base}/orders/{id}/quote/"), "rel": "self"}}
            })),
        ),
        ("GET", ["account"]) => match &order.account {
            Some(a) => respond(
                StatusCode::OK,
                Some(json!({"account": a, "links": self_link("/account")})),
            ),
            None => fault(
                StatusCode::NOT_FOUND,
                "itemNotFound",
                "Account has not been set",
            ),
        },
        ("PUT", ["account"]) if open => match json_body() {
            Ok(v) => {
                order.account = Some(v.clone());
                respond(
                    StatusCode::OK,
                    Some(json!({"account": v, "links": self_link("/account")})),
                )
            }
            Err(r) => *r,
        },
        ("POST", ["product"]) if open => match json_body() {
            Ok(v) => {
                let pid = format!("p{}", order.products.len() + 1);
                order.products.insert(pid.clone(), v);
                let mut r = respond(StatusCode::CREATED, Some(product(base, id, &pid)));
                if let Ok(loc) = HeaderValue::from_str(&format!("{base}/orders/{id}/product/{pid}"))
                {
                    r.headers_mut().insert(LOCATION, loc);
                }
                r
            }
            Err(r) => *r,
        },
        ("GET", ["product", pid]) => match order.products.get(*pid) {
            Some(_) => respond(StatusCode::OK, Some(product(base, id, pid))),
            None => not_found(),
        },
        ("PUT", ["product", pid]) if open => match json_body() {
            Ok(v) => {
                order.products.insert((*pid).to_owned(), v);
                respond(StatusCode::OK, Some(product(base, id, pid)))
            }
            Err(r) => *r,
        },
        ("DELETE", ["product", pid]) if open => match order.products.remove(*pid) {
            Some(_) => respond(StatusCode::NO_CONTENT, None),
            None => not_found(),
        },
        ("POST", ["action"]) => {
            let body = match json_body() {
                Ok(v) => v,
                Err(r) => return *r,
            };
            match body.get("action").and_then(Value::as_str) {
                Some("validate") if order.account.is_none() => fault(
                    StatusCode::BAD_REQUEST,
                    "computeFault",
                    "Account has not been set",
                ),
                Some("validate") => respond(StatusCode::NO_CONTENT, None),
                Some("submit") if !open => submitted(),
                Some("submit") if order.account.is_none() => fault(
                    StatusCode::BAD_REQUEST,
                    "computeFault",
                    "Account has not been set",
                ),
                Some("submit") => {
                    order.status = Status::Processing;
                    respond(StatusCode::ACCEPTED, None)
                }
                _ => fault(StatusCode::BAD_REQUEST, "badRequest", "Unknown action"),
            }
        }
        ("PUT" | "POST" | "DELETE" | "PATCH", _) if !open => submitted(),
        ("GET", [child]) => match order.children.get(*child) {
            Some(v) => respond(
                StatusCode::OK,
                Some(json!({*child: v, "links": self_link(&format!("/{child}"))})),
            ),
            None => not_found(),
        },
        ("PUT" | "POST", [child]) => match json_body() {
            Ok(v) => {
                order.children.insert((*child).to_owned(), v.clone());
                respond(
                    StatusCode::OK,
                    Some(json!({*child: v, "links": self_link(&format!("/{child}"))})),
                )
            }
            Err(r) => *r,
        },
        _ => not_found(),
    }
}

fn product(base: &str, id: &str, pid: &str) -> Value {
    json!({
        "status": "new",
        "services": format!("{base}/orders/{id}/product/{pid}/services"),
        "offering": format!("{base}/productSpecifications/spec1/offerings/basic"),
        "links": [{"href": format!("{base}/orders/{id}/product/{pid}/"), "rel": "self"}]
    })
}

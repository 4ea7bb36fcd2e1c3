//! The orders rules as a decision table: pure code, no I/O.
//!
//! [`plan`] reads the request facts and the method and says what the orders
//! phase does with a request; [`resolve`] finishes a shorthand plan once the
//! owner's open order has been looked up. [`Exchange::reads_order`] says
//! whether the upstream's answer must be looked into, and
//! [`Exchange::effects`] turns the facts of that answer into what the gateway
//! does about it: learn an association, end one, hide a closed order behind a
//! 404, set the cookies, set the explicit `Location`. The service
//! ([`super::service`]) runs plans and applies effects, and decides nothing.
//!
//! Every row cites the line of SPEC it implements; the test at the end lists
//! every row. Requests:
//!
//! | route | `OwnerId` | method | plan | SPEC |
//! |---|---|---|---|---|
//! | a climbing path | any | any | 400 | §1 (paths are forwarded only where they point) |
//! | `/order…` | not a UUID, or two | any | 401 | §2 "not a UUID, or two different values, gets 401 whatever the method" |
//! | `/order` | any | `POST` | create (409 check if owner) | §2 "`POST /order` creates an order like `POST /orders`" |
//! | `/order/<child>` | none | `PUT`, `POST` | create, then forward | §3 "or sends no cookie at all" |
//! | `/order…` | none | other | 401 | §2 "without an `OwnerId` gets 401" |
//! | `/order…` | one | any | look up the open order, then [`resolve`] | §2 |
//! | `/orders` | any | `POST` | 409 if the owner's order is still `new` upstream, else forward and learn | §4 |
//! | `/orders/<id>…`, any other path | any | `GET`, `HEAD`, `OPTIONS` | forward | §1 |
//! | `/orders/<id>…`, any other path | any | other | forward and learn | §4 "calls … that make an order as a side effect" |
//!
//! Shorthand, once looked up ([`resolve`]):
//!
//! | open order | `PUT`/`POST` to a child | step | SPEC |
//! |---|---|---|---|
//! | yes | any | forward to `/orders/<id><child>` | §2 |
//! | no | yes | create (single flight), then forward, set cookies | §3 |
//! | no | no | 404 | §2 "`GET`, `HEAD`, `OPTIONS` or `DELETE` … gets 404"; "`PATCH` … gets 404" |
//!
//! Answers ([`Exchange::effects`]):
//!
//! | answer | effect | SPEC |
//! |---|---|---|
//! | 2xx, `Location: …/orders/<id>`, owner sent or set, learning call | learn owner → id | §4 "learns associations from upstream answers" |
//! | 404 or 410 for the order itself, either route | end; through the shorthand, 404 | §4 "the upstream answers 404 for the order itself" |
//! | 2xx to `action: submit`, either route | end | §4 "submitted" |
//! | … through the shorthand | `Location: <public>/orders/<id>/` | §2 "When an order is submitted through the shorthand" |
//! | 2xx to `DELETE` of the order itself | end | §4 "deleted" |
//! | 2xx `GET` of the order itself (shorthand, or a tracked order): its status not `new` | end; through the shorthand, 404 | §4 "reads it from every `GET /order` answer" |
//! | an implicit creation | `Set-Cookie: OwnerId` for `/order` and `/orders` | §3 |
//! | 2xx to `POST /order` that made an order | the same cookies, in place of the upstream's | §2, §3 |

use crate::context::Facts;
use crate::owners::{CookieError, OrderId};
use crate::route::{PathError, Rest, Route};
use http::{Method, StatusCode};

/// Why the orders phase refuses a request without calling the upstream.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Refusal {
    /// 400: a path that climbs out of where it points.
    BadPath(PathError),
    /// 401: an `OwnerId` that cannot be used.
    BadOwner(CookieError),
    /// 401: the shorthand without an `OwnerId`.
    NoOwner,
    /// 404: the shorthand, and the owner has no open order.
    NoOpenOrder,
}

/// What the orders phase does with a request.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum Plan {
    Refuse(Refusal),
    /// Forward the request as it is; `learn` associations from the answer.
    Forward {
        learn: bool,
    },
    /// `POST /orders` (or `POST /order`, `shorthand`): 409 while the owner's
    /// order is still `new` upstream, else forward to `/orders` and learn.
    Create {
        shorthand: bool,
    },
    /// A shorthand call: look up the owner's open order, then [`resolve`].
    /// `implicit`: a `PUT`/`POST` to a child, which creates the order when
    /// there is none.
    Shorthand {
        implicit: bool,
    },
}

/// Calls that can make an order as a side effect: every method but the
/// safe ones.
pub(crate) fn learns(method: &Method) -> bool {
    !matches!(*method, Method::GET | Method::HEAD | Method::OPTIONS)
}

/// The plan for a request.
pub fn plan(facts: &Facts, method: &Method) -> Plan {
    let route = match &facts.route {
        Ok(route) => route,
        Err(e) => return Plan::Refuse(Refusal::BadPath(*e)),
    };
    match route {
        Route::Shorthand { rest } => {
            let owner = match facts.owner {
                Ok(owner) => owner,
                Err(e) => return Plan::Refuse(Refusal::BadOwner(e)),
            };
            let itself = rest.is_itself();
            if itself && *method == Method::POST {
                return Plan::Create { shorthand: true };
            }
            let implicit = !itself && matches!(*method, Method::PUT | Method::POST);
            if owner.is_none() && !implicit {
                return Plan::Refuse(Refusal::NoOwner);
            }
            Plan::Shorthand { implicit }
        }
        Route::Orders if *method == Method::POST => Plan::Create { shorthand: false },
        Route::Orders | Route::Order { .. } | Route::Other => Plan::Forward {
            learn: learns(method),
        },
    }
}

/// The next step of a shorthand plan, once the open order is known.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum Step {
    /// Forward to the owner's open order.
    Use(OrderId),
    /// Create the order (single flight per owner), then forward to it.
    Create,
    Refuse(Refusal),
}

/// Finishes a [`Plan::Shorthand`]: `open` is the owner's open order.
pub fn resolve(implicit: bool, open: Option<OrderId>) -> Step {
    match open {
        Some(order) => Step::Use(order),
        None if implicit => Step::Create,
        None => Step::Refuse(Refusal::NoOpenOrder),
    }
}

/// Which route a forwarded call about an order came by.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Via {
    /// `/order…`: the answer speaks of the order in the shorthand form.
    Shorthand,
    /// `/orders/<id>…`.
    Explicit,
    /// `POST /orders`, or `POST /order` (`shorthand`): a creation.
    Create { shorthand: bool },
    /// Anything else: no order of the gateway's is addressed.
    Other,
}

/// A call forwarded upstream, as far as the answer's rules need it.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Exchange {
    pub via: Via,
    pub method: Method,
    /// The order itself, not a child.
    pub itself: bool,
    /// `POST …/action` with `action: submit`.
    pub submit: bool,
    /// The order was created for this call (cookies to set).
    pub implicit: bool,
    /// Associations may be learned from the answer.
    pub learn: bool,
    /// The gateway tracks the order (an explicit call about a known order).
    pub tracked: bool,
}

impl Exchange {
    /// A call through the shorthand to `rest` of the owner's order.
    pub fn shorthand(method: &Method, rest: &Rest, submit: bool, implicit: bool) -> Self {
        Self {
            via: Via::Shorthand,
            method: method.clone(),
            itself: rest.is_itself(),
            submit,
            implicit,
            learn: false,
            tracked: true,
        }
    }

    /// `POST /orders` (or `POST /order`, `shorthand`) forwarded.
    pub fn create(shorthand: bool) -> Self {
        Self {
            via: Via::Create { shorthand },
            method: Method::POST,
            itself: false,
            submit: false,
            implicit: false,
            learn: true,
            tracked: false,
        }
    }

    /// A forwarded call; `route` as classified.
    pub fn forward(route: &Route, method: &Method, submit: bool, learn: bool) -> Self {
        let (via, itself) = match route {
            Route::Order { rest, .. } => (Via::Explicit, rest.is_itself()),
            _ => (Via::Other, false),
        };
        Self {
            via,
            method: method.clone(),
            itself,
            submit,
            implicit: false,
            learn,
            tracked: false,
        }
    }

    /// Whether the answer would be read if the gateway tracked the order (a
    /// `GET` of an explicit order itself): then the store is asked.
    pub fn asks_tracking(&self) -> bool {
        self.via == Via::Explicit && self.itself && self.method == Method::GET
    }

    /// Whether the body of an answer with `status` must be read for the
    /// order's status (and, through the shorthand, its links): a successful
    /// `GET` of the order itself, through the shorthand or of a tracked order.
    pub fn reads_order(&self, status: StatusCode) -> bool {
        self.itself
            && self.method == Method::GET
            && status.is_success()
            && (self.via == Via::Shorthand || self.tracked)
    }

    /// What the gateway does about an answer.
    pub fn effects(&self, answer: &AnswerFacts) -> Effects {
        let ok = answer.status.is_success();
        let about_order = matches!(self.via, Via::Shorthand | Via::Explicit);
        let gone = about_order
            && self.itself
            && matches!(answer.status, StatusCode::NOT_FOUND | StatusCode::GONE);
        let closed = answer.open == Some(false);
        let ended_by_call =
            about_order && ok && (self.submit || (self.itself && self.method == Method::DELETE));
        let shorthand = self.via == Via::Shorthand;
        let learn = self.learn && ok && answer.created.is_some();
        Effects {
            learn,
            end: gone || closed || ended_by_call,
            hide: shorthand && (gone || closed),
            explicit_location: shorthand && ok && self.submit,
            set_cookies: self.implicit || (self.via == Via::Create { shorthand: true } && learn),
        }
    }
}

/// What the upstream's answer says, read once.
#[derive(Debug, Clone, Default, PartialEq, Eq)]
pub struct AnswerFacts {
    pub status: StatusCode,
    /// The order a `Location: …/orders/<id>` names.
    pub created: Option<OrderId>,
    /// The order's status, when its body was read: `Some(false)` when it is
    /// no longer `new`.
    pub open: Option<bool>,
}

/// What the gateway does about an answer.
#[derive(Debug, Clone, Copy, Default, PartialEq, Eq)]
pub struct Effects {
    /// Record the owner → order association the answer shows.
    pub learn: bool,
    /// End the association of the order the call was about.
    pub end: bool,
    /// Answer 404 (no open order) in place of the upstream's answer.
    pub hide: bool,
    /// `Location: <public base>/orders/<id>/`.
    pub explicit_location: bool,
    /// `Set-Cookie: OwnerId=…` for `/order` and `/orders`.
    pub set_cookies: bool,
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::owners::OwnerId;
    use crate::route::classify;

    const OWNER: &str = "4d84cd13-bbb3-46ba-a40c-8988351e3681";

    fn facts(path: &str, owner: Result<Option<OwnerId>, CookieError>) -> Facts {
        let mut f = Facts::new(path, &http::HeaderMap::new(), None, &[], None);
        f.owner = owner;
        f
    }

    /// The `OwnerId` cookie as the facts have it.
    type Cookie = Result<Option<OwnerId>, CookieError>;

    fn owner() -> Cookie {
        Ok(OwnerId::parse(OWNER))
    }

    /// Every request row of the table, in its order.
    #[test]
    fn request_rules() {
        use Method as M;
        let bad = Err(CookieError::Invalid);
        let two = Err(CookieError::Conflicting);
        let none = Ok(None);
        type Case = (&'static str, &'static str, Cookie, M, Plan);
        let cases: Vec<Case> = vec![
            (
                "§1 a climbing path is refused",
                "/order/%2e%2e/orders/x",
                owner(),
                M::GET,
                Plan::Refuse(Refusal::BadPath(PathError::DotSegment)),
            ),
            (
                "§2 an OwnerId that is not a UUID gets 401 whatever the method",
                "/order/account",
                bad,
                M::PUT,
                Plan::Refuse(Refusal::BadOwner(CookieError::Invalid)),
            ),
            (
                "§2 two different OwnerId values get 401 and create nothing",
                "/order",
                two,
                M::POST,
                Plan::Refuse(Refusal::BadOwner(CookieError::Conflicting)),
            ),
            (
                "§2 POST /order creates like POST /orders",
                "/order",
                owner(),
                M::POST,
                Plan::Create { shorthand: true },
            ),
            (
                "§2 POST /order without a cookie creates too",
                "/order/",
                none,
                M::POST,
                Plan::Create { shorthand: true },
            ),
            (
                "§3 PUT to a child without any cookie creates implicitly",
                "/order/account",
                none,
                M::PUT,
                Plan::Shorthand { implicit: true },
            ),
            (
                "§3 POST to a child creates implicitly",
                "/order/product",
                owner(),
                M::POST,
                Plan::Shorthand { implicit: true },
            ),
            (
                "§2 the shorthand without an OwnerId gets 401",
                "/order",
                none,
                M::GET,
                Plan::Refuse(Refusal::NoOwner),
            ),
            (
                "§2 PATCH without a cookie is not a creation: 401",
                "/order/account",
                none,
                M::PATCH,
                Plan::Refuse(Refusal::NoOwner),
            ),
            (
                "§2 a shorthand read looks up the open order",
                "/order/quote",
                owner(),
                M::GET,
                Plan::Shorthand { implicit: false },
            ),
            (
                "§2 DELETE /order looks up the open order, creates nothing",
                "/order",
                owner(),
                M::DELETE,
                Plan::Shorthand { implicit: false },
            ),
            (
                "§4 POST /orders checks the open order first",
                "/orders",
                owner(),
                M::POST,
                Plan::Create { shorthand: false },
            ),
            (
                "§1 other calls on /orders are forwarded",
                "/orders/",
                owner(),
                M::GET,
                Plan::Forward { learn: false },
            ),
            (
                "§1 a read of an explicit order is forwarded",
                "/orders/o1",
                owner(),
                M::GET,
                Plan::Forward { learn: false },
            ),
            (
                "§4 a change to an explicit order may make one: learn",
                "/orders/o1/account",
                owner(),
                M::PATCH,
                Plan::Forward { learn: true },
            ),
            (
                "§4 side-effect creation (PUT …/emailEncryption): learn",
                "/accounts/a1/exchange/d.com/emailEncryption",
                none,
                M::PUT,
                Plan::Forward { learn: true },
            ),
            (
                "§1 HEAD and OPTIONS learn nothing",
                "/accounts/a1",
                owner(),
                M::OPTIONS,
                Plan::Forward { learn: false },
            ),
        ];
        for (rule, path, owner, method, expected) in cases {
            assert_eq!(plan(&facts(path, owner), &method), expected, "{rule}");
        }
    }

    #[test]
    fn shorthand_steps() {
        let o = OrderId::parse("o1").unwrap();
        for (rule, implicit, open, expected) in [
            (
                "§2 an open order is used",
                false,
                Some(o.clone()),
                Step::Use(o.clone()),
            ),
            (
                "§3 an open order is used, not created again",
                true,
                Some(o.clone()),
                Step::Use(o.clone()),
            ),
            (
                "§3 no open order and a PUT/POST to a child: create",
                true,
                None,
                Step::Create,
            ),
            (
                "§2 no open order otherwise: 404",
                false,
                None,
                Step::Refuse(Refusal::NoOpenOrder),
            ),
        ] {
            assert_eq!(resolve(implicit, open), expected, "{rule}");
        }
    }

    fn exchange(path: &str, method: Method, submit: bool) -> Exchange {
        match classify(path).unwrap() {
            Route::Shorthand { rest } => Exchange::shorthand(&method, &rest, submit, false),
            route => Exchange::forward(&route, &method, submit, learns(&method)),
        }
    }

    fn answer(status: u16, created: Option<&str>, open: Option<bool>) -> AnswerFacts {
        AnswerFacts {
            status: StatusCode::from_u16(status).unwrap(),
            created: created.and_then(OrderId::parse),
            open,
        }
    }

    /// Every answer row of the table, in its order, on both routes where
    /// the rule is the same for both.
    #[test]
    fn answer_rules() {
        let learn = Effects {
            learn: true,
            ..Effects::default()
        };
        let end = Effects {
            end: true,
            ..Effects::default()
        };
        let hide = Effects {
            end: true,
            hide: true,
            ..Effects::default()
        };
        let submitted = Effects {
            end: true,
            explicit_location: true,
            ..Effects::default()
        };
        let none = Effects::default();
        let cases = [
            (
                "§4 learn from a side-effect creation",
                exchange("/accounts/a/mailboxes", Method::POST, false),
                answer(201, Some("o9"), None),
                learn,
            ),
            (
                "§4 no learning from a failure",
                exchange("/accounts/a/mailboxes", Method::POST, false),
                answer(400, Some("o9"), None),
                none,
            ),
            (
                "§4 no learning from a read",
                exchange("/accounts/a", Method::GET, false),
                answer(200, Some("o9"), None),
                none,
            ),
            (
                "§4 a 404 of the order itself ends it (explicit)",
                exchange("/orders/o1", Method::GET, false),
                answer(404, None, None),
                end,
            ),
            (
                "§4 a 410 of the order itself ends it (explicit)",
                exchange("/orders/o1/", Method::PATCH, false),
                answer(410, None, None),
                end,
            ),
            (
                "§4 a 404 of the order itself ends it and hides it (shorthand)",
                exchange("/order", Method::GET, false),
                answer(404, None, None),
                hide,
            ),
            (
                "§4 a 410 of the order itself ends it and hides it (shorthand)",
                exchange("/order/", Method::DELETE, false),
                answer(410, None, None),
                hide,
            ),
            (
                "§4 a 404 of a child (an unset account) ends nothing",
                exchange("/order/account", Method::GET, false),
                answer(404, None, None),
                none,
            ),
            (
                "§4 a 404 of a child ends nothing (explicit)",
                exchange("/orders/o1/account", Method::GET, false),
                answer(404, None, None),
                none,
            ),
            (
                "§4 a 404 elsewhere ends nothing",
                exchange("/accounts/a", Method::GET, false),
                answer(404, None, None),
                none,
            ),
            (
                "§4 submit answered 2xx ends it (explicit)",
                exchange("/orders/o1/action", Method::POST, true),
                answer(202, None, None),
                end,
            ),
            (
                "§2 submit through the shorthand: ends it, explicit Location",
                exchange("/order/action", Method::POST, true),
                answer(202, None, None),
                submitted,
            ),
            (
                "§4 a refused submit ends nothing",
                exchange("/order/action", Method::POST, true),
                answer(400, None, None),
                none,
            ),
            (
                "§4 DELETE of the order answered 2xx ends it (explicit)",
                exchange("/orders/o1", Method::DELETE, false),
                answer(204, None, None),
                end,
            ),
            (
                "§4 DELETE of the order answered 2xx ends it (shorthand)",
                exchange("/order", Method::DELETE, false),
                answer(204, None, None),
                end,
            ),
            (
                "§4 DELETE of a child ends nothing",
                exchange("/order/product/p1", Method::DELETE, false),
                answer(204, None, None),
                none,
            ),
            (
                "§4 a status other than new ends it (explicit)",
                exchange("/orders/o1", Method::GET, false),
                answer(200, None, Some(false)),
                end,
            ),
            (
                "§4 GET /order of a closed order: 404",
                exchange("/order", Method::GET, false),
                answer(200, None, Some(false)),
                hide,
            ),
            (
                "§4 an open order stays",
                exchange("/order", Method::GET, false),
                answer(200, None, Some(true)),
                none,
            ),
        ];
        for (rule, ex, ans, expected) in cases {
            assert_eq!(ex.effects(&ans), expected, "{rule}");
        }
        // §2 POST /order that made an order: the gateway's cookies; through
        // /orders the upstream's stand.
        let made = answer(201, Some("o9"), None);
        assert_eq!(
            Exchange::create(true).effects(&made),
            Effects {
                learn: true,
                set_cookies: true,
                ..Effects::default()
            }
        );
        assert_eq!(Exchange::create(false).effects(&made), learn);
        assert_eq!(
            Exchange::create(true).effects(&answer(500, None, None)),
            none
        );
        // §3 an implicit creation sets the cookies, whatever the answer.
        let mut ex = exchange("/order/account", Method::PUT, false);
        ex.implicit = true;
        assert!(ex.effects(&answer(200, None, None)).set_cookies);
        assert!(ex.effects(&answer(400, None, None)).set_cookies);
    }

    #[test]
    fn which_answers_are_read() {
        let mut tracked = exchange("/orders/o1", Method::GET, false);
        assert!(
            !tracked.reads_order(StatusCode::OK),
            "untracked orders stream through"
        );
        tracked.tracked = true;
        assert!(
            tracked.reads_order(StatusCode::OK),
            "§4 a tracked order's status is read"
        );
        assert!(!tracked.reads_order(StatusCode::NOT_MODIFIED));
        assert!(
            exchange("/order/", Method::GET, false).reads_order(StatusCode::OK),
            "§4 every GET /order"
        );
        assert!(!exchange("/order/quote", Method::GET, false).reads_order(StatusCode::OK));
        assert!(!exchange("/order", Method::HEAD, false).reads_order(StatusCode::OK));
    }
}

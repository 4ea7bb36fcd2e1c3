//! The one place where the layers are ordered, outermost first, with why
//! each stands where it does.

use crate::compress::{Compress, CompressLayer};
use crate::config::Config;
use crate::context::{FactsLayer, FactsService};
use crate::faults::{FaultLayer, FaultService};
use crate::guards::cors::Cors;
use crate::guards::framing::Framing;
use crate::guards::rate_limit::{RateLimit, RateLimits};
use crate::guards::size::SizeLimits;
use crate::guards::{GuardLayer, GuardService};
use crate::orders::{OrdersService, OrdersSettings};
use crate::owners::Store;
use crate::telemetry::access_log::{AccessLog, AccessLogLayer};
use crate::telemetry::metrics::Metrics;
use crate::telemetry::trace::{TraceLayer, TraceService, TracedStore, Traces};
use crate::telemetry::{RequestIdLayer, RequestIdService};
use crate::upstream::Upstream;
use crate::upstream::rewrite::Bases;
use std::sync::Arc;
use tower::ServiceBuilder;

/// The whole gateway as one tower service over any request body.
pub type Gateway = RequestIdService<
    FactsService<
        TraceService<
            AccessLog<
                Compress<
                    GuardService<
                        Cors,
                        FaultService<
                            GuardService<
                                Framing,
                                GuardService<RateLimit, GuardService<SizeLimits, OrdersService>>,
                            >,
                        >,
                    >,
                >,
            >,
        >,
    >,
>;

/// Builds the stack, outermost first. `upstream_slots`: the cap on
/// requests in flight upstream when several stacks share it (per-core
/// workers); `None`: the stack's own, of `upstream.max_connections`.
pub fn build(
    config: &Config,
    store: Store,
    limits: Arc<RateLimits>,
    metrics: Arc<Metrics>,
    traces: Option<&Traces>,
    upstream_slots: Option<Arc<tokio::sync::Semaphore>>,
) -> Gateway {
    // Spans around store calls only when tracing: no cost otherwise.
    let store = match traces {
        Some(_) => Store {
            owners: Arc::new(TracedStore(store.owners)),
            leases: store.leases,
        },
        None => store,
    };
    let lease_ttl = config
        .store
        .redis()
        .map_or(std::time::Duration::ZERO, |r| r.lease_ttl);
    let internal = std::iter::once(&config.upstream.url)
        .chain(&config.upstream.rewrite_bases)
        .map(|b| b.as_str().to_owned())
        .collect();
    let orders = OrdersService::new(
        Upstream::new(&config.upstream, Arc::clone(&metrics))
            .with_tunnel_idle(config.server.limits.idle_timeout)
            .sharing_slots(upstream_slots),
        store,
        Arc::clone(&metrics),
        OrdersSettings {
            bases: Bases::new(internal, config.server.public_base_url.as_str().to_owned()),
            cookies: config.cookies,
            idle_expiry: config.store.idle_expiry,
            max_request_body: config.server.max_request_body,
            max_json_body: config.upstream.max_json_body,
            request_id_header: config.server.request_id_header.clone(),
            // A creation lasts at most one upstream call; the lease may lapse
            // once more if its holder died.
            lease_wait: config.upstream.connect_timeout
                + config.upstream.response_timeout
                + lease_ttl * 2,
        },
    );
    let limits_of_server = config.server.limits;
    ServiceBuilder::new()
        // Request id first: every answer, a fault from any layer included,
        // carries it, and the fault's guid is it.
        .layer(RequestIdLayer::new(config.server.request_id_header.clone()))
        // The request facts next: every layer below reads them (route,
        // owner, client address) instead of working them out again.
        .layer(FactsLayer::new(
            &config.server.trusted_proxies,
            config.log.access_log,
        ))
        // The request's span next: it names the request id and the route
        // group, and every phase below runs in it (with tracing off, one
        // Option check).
        .layer(TraceLayer::new(traces.cloned()))
        // The access log and the request metrics see every answer, as the
        // client gets it.
        .layer(AccessLogLayer {
            enabled: config.log.access_log,
            metrics: Arc::clone(&metrics),
        })
        // Compression of what the client gets, faults and all.
        .layer(CompressLayer::new(config.compression))
        // CORS outside everything else: preflights need no cookie, limit or
        // lookup, and every answer, faults included, carries the headers.
        .layer(GuardLayer::new(Cors::new(config.cors.clone())))
        // Every error answer below, the gateway's or the upstream's, leaves
        // in the one fault shape with the request id as its guid.
        .layer(FaultLayer::new(
            config.faults.types.clone(),
            config.faults.max_upstream_body,
        ))
        // Framing the upstream could read otherwise than the gateway (no
        // Host, two of them), and CONNECT, go no further.
        .layer(GuardLayer::new(Framing))
        // Rate limits next: the cheapest refusal, before any body is read
        // and before the size limits answer a flood of large requests.
        .layer(GuardLayer::new(RateLimit::new(limits, metrics)))
        // Size limits before any work is done for the request.
        .layer(GuardLayer::new(SizeLimits {
            max_body: config.server.max_request_body,
            body_idle: limits_of_server.body_idle_timeout,
            max_headers: limits_of_server.max_headers,
            max_header_bytes: limits_of_server.max_header_bytes,
        }))
        // The orders API: shorthand, creation, associations, forwarding.
        .service(orders)
}

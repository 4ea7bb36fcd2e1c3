//! The one place where the layers are ordered.

use crate::config::Config;
use crate::cors::{Cors, CorsLayer};
use crate::faults::{FaultLayer, FaultService};
use crate::limits::{BodyLimit, BodyLimitLayer, HeadLimits};
use crate::orders::{OrdersService, OrdersSettings};
use crate::owners::OwnerStore;
use crate::policy::rate_limit::RateLimits;
use crate::proxy::Upstream;
use crate::rate_limit::{RateLimit, RateLimitLayer};
use crate::telemetry::access_log::{AccessLog, AccessLogLayer};
use crate::telemetry::metrics::Metrics;
use crate::telemetry::trace::{TraceLayer, TraceService, TracedStore, Traces};
use crate::telemetry::{RequestIdLayer, RequestIdService};
use std::sync::Arc;
use tower::ServiceBuilder;

/// The whole gateway as one tower service over any request body.
pub type Gateway = RequestIdService<
    TraceService<AccessLog<Cors<FaultService<RateLimit<BodyLimit<OrdersService>>>>>>,
>;

/// Builds the stack, outermost first.
pub fn build(
    config: &Config,
    store: Arc<dyn OwnerStore>,
    limits: Arc<RateLimits>,
    metrics: Arc<Metrics>,
    traces: Option<&Traces>,
) -> Gateway {
    // Spans around store calls only when tracing: no cost otherwise.
    let store: Arc<dyn OwnerStore> = match traces {
        Some(_) => Arc::new(TracedStore(store)),
        None => store,
    };
    let lease_ttl = config
        .store
        .redis()
        .map_or(std::time::Duration::ZERO, |r| r.lease_ttl);
    let orders = OrdersService::new(
        Upstream::new(config, Arc::clone(&metrics)),
        store,
        OrdersSettings {
            cookies: config.cookies,
            idle_expiry: config.store.idle_expiry,
            max_request_body: config.server.max_request_body,
            request_id_header: config.server.request_id_header.clone(),
            // A creation lasts at most one upstream call; the lease may lapse
            // once more if its holder died.
            lease_wait: config.upstream.connect_timeout
                + config.upstream.response_timeout
                + lease_ttl * 2,
        },
    );
    ServiceBuilder::new()
        // Request id first: every answer, a fault from any layer included,
        // carries it, and the fault's guid is it.
        .layer(RequestIdLayer::new(config.server.request_id_header.clone()))
        // The request's span next: it names the request id, and every phase
        // below runs in it (with tracing off, one Option check).
        .layer(TraceLayer::new(traces.cloned()))
        // The access log and the request metrics see every answer, as the
        // client gets it.
        .layer(AccessLogLayer {
            enabled: config.log.access_log,
            metrics: Arc::clone(&metrics),
        })
        // CORS outside everything else: preflights need no cookie, limit or
        // lookup, and every answer, faults included, carries the headers.
        .layer(CorsLayer::new(config.cors.clone()))
        // Every error answer below, the gateway's or the upstream's, leaves
        // in the one fault shape with the request id as its guid.
        .layer(FaultLayer::new(
            config.faults.types.clone(),
            config.faults.max_upstream_body,
        ))
        // Size limits before any work is done for the request.
        // Rate limits next: the cheapest refusal, before any body is read.
        .layer(RateLimitLayer::new(limits, metrics))
        .layer(BodyLimitLayer::new(
            config.server.max_request_body,
            config.server.limits.body_idle_timeout,
            HeadLimits {
                max_headers: config.server.limits.max_headers,
                max_header_bytes: config.server.limits.max_header_bytes,
            },
        ))
        // The orders API: shorthand, creation, associations, forwarding.
        .service(orders)
}

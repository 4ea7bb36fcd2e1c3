//! Rate-limit rules as configured: what a rule matches, what it counts
//! requests by, its quota and where its counts live. The guard that applies
//! them is [`crate::guards::rate_limit`].

use http::{HeaderName, Method};
use std::num::NonZeroU32;
use std::time::Duration;

/// Where a rule's counts live.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Scope {
    /// In this process: each replica enforces the quota on its own.
    Local,
    /// In the shared Redis: the replicas together enforce the quota.
    Global,
}

/// What a rule counts requests by.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum KeyKind {
    Owner,
    ClientIp,
    Principal,
    Header(HeaderName),
}

/// A path pattern: exact (`/orders`), prefix (`/order/*` matches `/order`
/// and everything under it) or `*` for every path.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum PathPattern {
    Exact(String),
    Prefix(String),
    Any,
}

impl PathPattern {
    pub fn parse(s: &str) -> Option<Self> {
        if s == "*" {
            return Some(Self::Any);
        }
        if !s.starts_with('/')
            || s.contains("*") && !s.ends_with("/*")
            || s.matches('*').count() > 1
        {
            return None;
        }
        Some(match s.strip_suffix("/*") {
            Some(prefix) => Self::Prefix(prefix.to_owned()),
            None => Self::Exact(s.to_owned()),
        })
    }

    pub fn matches(&self, path: &str) -> bool {
        match self {
            Self::Any => true,
            Self::Exact(p) => path == p || path.strip_prefix(p.as_str()) == Some("/"),
            Self::Prefix(p) => path
                .strip_prefix(p.as_str())
                .is_some_and(|r| r.is_empty() || r.starts_with('/')),
        }
    }
}

/// One configured rule.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct RuleSpec {
    pub name: String,
    /// Empty: every method.
    pub methods: Vec<Method>,
    pub paths: Vec<PathPattern>,
    pub key: KeyKind,
    /// `rate` requests per `per`, with bursts of up to `burst`.
    pub rate: NonZeroU32,
    pub per: Duration,
    pub burst: NonZeroU32,
    pub max_keys: usize,
    pub scope: Scope,
}

impl RuleSpec {
    /// The GCRA emission interval: one request's worth of time.
    pub fn interval(&self) -> Duration {
        (self.per / self.rate.get()).max(Duration::from_nanos(1))
    }

    pub fn matches(&self, method: &Method, path: &str) -> bool {
        (self.methods.is_empty() || self.methods.contains(method))
            && self.paths.iter().any(|p| p.matches(path))
    }
}

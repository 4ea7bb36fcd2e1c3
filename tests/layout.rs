#![allow(clippy::unwrap_used, clippy::expect_used)]
//! The module layout's rules, checked on the source: which top-level module
//! may use which, and that dependencies run one way (no cycles).
//!
//! Only `crate::<module>` paths outside comments and unit-test modules count;
//! that is how every module of the crate names another.

use std::collections::{BTreeMap, BTreeSet};
use std::path::Path;

/// Top-level module → the top-level modules it uses, with where.
fn dependencies() -> BTreeMap<String, BTreeMap<String, String>> {
    let mut deps: BTreeMap<String, BTreeMap<String, String>> = BTreeMap::new();
    let mut stack = vec![Path::new(env!("CARGO_MANIFEST_DIR")).join("src")];
    let src = stack[0].clone();
    while let Some(dir) = stack.pop() {
        for entry in std::fs::read_dir(&dir).unwrap() {
            let path = entry.unwrap().path();
            if path.is_dir() {
                stack.push(path);
                continue;
            }
            if path.extension().is_none_or(|e| e != "rs") {
                continue;
            }
            let rel = path
                .strip_prefix(&src)
                .unwrap()
                .to_string_lossy()
                .into_owned();
            let top = rel
                .split('/')
                .next()
                .unwrap()
                .trim_end_matches(".rs")
                .to_owned();
            let text = std::fs::read_to_string(&path).unwrap();
            // Unit tests may use anything.
            let code = text.split("#[cfg(test)]\nmod tests").next().unwrap();
            for (n, line) in code.lines().enumerate() {
                if line.trim_start().starts_with("//") {
                    continue;
                }
                for used in line.split("crate::").skip(1) {
                    let module: String = used
                        .chars()
                        .take_while(|c| c.is_ascii_lowercase() || *c == '_')
                        .collect();
                    if !module.is_empty() && module != top {
                        deps.entry(top.clone())
                            .or_default()
                            .entry(module)
                            .or_insert_with(|| format!("{rel}:{}", n + 1));
                    }
                }
            }
        }
    }
    deps
}

#[test]
fn layers_depend_only_on_what_they_may() {
    let deps = dependencies();
    // (module, modules it must not use, why)
    let rules: &[(&str, &[&str], &str)] = &[
        (
            "config",
            &[
                "app",
                "stack",
                "server",
                "context",
                "guards",
                "orders",
                "upstream",
                "faults",
                "telemetry",
                "owners",
                "redis_pool",
                "workers",
            ],
            "configuration imports no layer, no orders logic, no transport",
        ),
        (
            "upstream",
            &["server", "orders", "guards", "app", "stack"],
            "the upstream side knows neither the server side nor the orders rules",
        ),
        (
            "faults",
            &["orders", "owners", "route", "guards", "upstream"],
            "the fault renderer knows no orders types",
        ),
        (
            "guards",
            &["orders", "upstream", "server"],
            "the guards read the request facts, not the orders phase",
        ),
        (
            "owners",
            &[
                "orders", "upstream", "server", "guards", "faults", "context",
            ],
            "stores know neither the orders rules nor the transport",
        ),
        (
            "server",
            &["orders", "upstream", "guards", "stack"],
            "the server side only serves",
        ),
        (
            "workers",
            &["app", "stack", "orders", "upstream", "guards", "owners"],
            "the workers run the server's accept loops; the stacks are built by the app",
        ),
    ];
    let mut broken = Vec::new();
    for (module, forbidden, why) in rules {
        for (used, at) in deps.get(*module).into_iter().flatten() {
            if forbidden.contains(&used.as_str()) {
                broken.push(format!("{module} -> {used} ({at}): {why}"));
            }
        }
    }
    for (module, used) in &deps {
        if used.contains_key("backend") && module != "backend" {
            broken.push(format!(
                "{module} -> backend: the gateway never uses the emulated backend"
            ));
        }
    }
    assert!(broken.is_empty(), "{}", broken.join("\n"));
}

#[test]
fn dependencies_run_one_way() {
    let deps = dependencies();
    let reach = |from: &str| {
        let mut seen = BTreeSet::new();
        let mut todo = vec![from.to_owned()];
        while let Some(m) = todo.pop() {
            for next in deps.get(&m).into_iter().flat_map(|d| d.keys()) {
                if seen.insert(next.clone()) {
                    todo.push(next.clone());
                }
            }
        }
        seen
    };
    let cycles: Vec<String> = deps
        .iter()
        .filter(|(m, _)| !matches!(m.as_str(), "lib" | "main"))
        .flat_map(|(m, used)| {
            used.iter()
                .filter(|(u, _)| reach(u).contains(m.as_str()))
                .map(move |(u, at)| format!("{m} -> {u} ({at}) and back"))
        })
        .collect();
    assert!(cycles.is_empty(), "{}", cycles.join("\n"));
    // The check sees the crate: the request path's modules are all there.
    for m in [
        "context", "guards", "orders", "upstream", "faults", "owners",
    ] {
        assert!(deps.contains_key(m), "{m} not found");
    }
}

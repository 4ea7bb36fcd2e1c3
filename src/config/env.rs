//! Environment overrides: `ORDERGATE_<SECTION>__<KEY>=value` sets a key over
//! what the file says, so that a secret (the Redis password or URL) never
//! has to sit in the file, and one file serves every environment.
//!
//! Segments are separated by a double underscore (keys have single ones) and
//! matched in lower case: `ORDERGATE_STORE__PASSWORD` is `store.password`,
//! `ORDERGATE_SERVER__TLS__CERT_PATH` is `server.tls.cert_path`, and a number
//! picks an element of an array already in the file:
//! `ORDERGATE_RATE_LIMITS__RULES__0__RATE`. A value takes the type of the
//! value the file has at that key when that is a string; otherwise it is
//! read as a TOML value (`30`, `true`, `["a", "b"]`) when it is one, else as
//! a string. Secret keys always take the value as a string.
//!
//! Overrides rather than `${VAR}` in the file: every key can be set without
//! editing the file (a container image ships one file), the file stays
//! plain TOML that `check` reads the same way everywhere, and no quoting
//! question arises when a value holds `"` or `\`.

use super::ConfigError;
use super::raw::{SECRET_KEYS, SECTIONS};

pub const PREFIX: &str = "ORDERGATE_";

/// A key whose value came from the environment.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Override {
    /// `store.url`, `rate_limits.rules[0].rate`.
    pub key: String,
    /// The variable that set it.
    pub var: String,
    /// The value as given; `None` for a secret.
    pub value: Option<String>,
}

impl Override {
    pub fn is_secret(&self) -> bool {
        self.value.is_none()
    }
}

/// The `ORDERGATE_*` variables of this process (values that are not UTF-8
/// are left out: no key takes one).
pub fn from_process() -> Vec<(String, String)> {
    let mut vars: Vec<(String, String)> = std::env::vars_os()
        .filter_map(|(k, v)| Some((k.into_string().ok()?, v.into_string().ok()?)))
        .filter(|(k, _)| k.starts_with(PREFIX))
        .collect();
    vars.sort();
    vars
}

/// A secret key, or one that reads like one.
pub fn is_secret(key: &str) -> bool {
    SECRET_KEYS.contains(&key) || key.ends_with("password") || key.ends_with("token")
}

/// Sets every `ORDERGATE_` variable of `env` in `doc`; a variable that
/// names no place in the file's shape is a problem.
pub fn apply(
    doc: &mut toml::Table,
    env: &[(String, String)],
    problem: &mut dyn FnMut(String, String),
) -> Vec<Override> {
    let mut done = Vec::new();
    for (var, value) in env {
        let Some(rest) = var.strip_prefix(PREFIX) else {
            continue;
        };
        let segments: Vec<String> = rest.split("__").map(str::to_ascii_lowercase).collect();
        // A variable without `__` is not an override (other tools may use
        // the prefix), unless it reads like one with a single underscore.
        let like_a_key = SECTIONS
            .iter()
            .any(|s| segments[0].starts_with(&format!("{s}_")));
        if segments.len() < 2 && !like_a_key {
            continue;
        }
        if segments.len() < 2 || segments.iter().any(String::is_empty) {
            problem(
                var.clone(),
                format!("not a key: write {PREFIX}<SECTION>__<KEY>, e.g. {PREFIX}STORE__URL"),
            );
            continue;
        }
        match set(doc, &segments, value) {
            Ok(key) => {
                let secret = is_secret(&key);
                done.push(Override {
                    key,
                    var: var.clone(),
                    value: (!secret).then(|| value.clone()),
                });
            }
            Err(reason) => problem(var.clone(), reason),
        }
    }
    done
}

/// Sets `value` at `segments` (missing tables are made); the dotted key it
/// set.
fn set(doc: &mut toml::Table, segments: &[String], value: &str) -> Result<String, String> {
    let (last, parents) = segments.split_last().ok_or("no key")?;
    let mut key = String::new();
    let mut at = doc;
    let mut i = 0;
    while i < parents.len() {
        let s = &parents[i];
        if !key.is_empty() {
            key.push('.');
        }
        key.push_str(s);
        let mut entry = at
            .entry(s.as_str())
            .or_insert_with(|| toml::Value::Table(toml::Table::new()));
        // An array element: the next segment is its index.
        if let toml::Value::Array(items) = entry {
            i += 1;
            let index: usize = parents
                .get(i)
                .and_then(|n| n.parse().ok())
                .ok_or_else(|| format!("{key} is a list: the next segment is an index"))?;
            key.push_str(&format!("[{index}]"));
            entry = items
                .get_mut(index)
                .ok_or_else(|| format!("{key} is not in the file"))?;
        }
        at = match entry {
            toml::Value::Table(t) => t,
            _ => return Err(format!("{key} is not a table")),
        };
        i += 1;
    }
    if !key.is_empty() {
        key.push('.');
    }
    key.push_str(last);
    let typed = match at.get(last.as_str()) {
        Some(toml::Value::String(_)) => toml::Value::String(value.to_owned()),
        _ if is_secret(&key) => toml::Value::String(value.to_owned()),
        _ => as_toml(value).unwrap_or_else(|| toml::Value::String(value.to_owned())),
    };
    at.insert(last.clone(), typed);
    Ok(key)
}

/// `value` read as one TOML value, if it is one.
fn as_toml(value: &str) -> Option<toml::Value> {
    let mut t: toml::Table = format!("v = {value}").parse().ok()?;
    t.remove("v")
}

/// Notes on a problem whose key came from the environment where it came from.
pub fn attribute(problems: &mut [ConfigError], overrides: &[Override]) {
    for p in problems {
        if let Some(o) = overrides
            .iter()
            .find(|o| p.key == o.key || p.key.starts_with(&format!("{}.", o.key)))
        {
            p.reason.push_str(&format!(" (set by {})", o.var));
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn env(pairs: &[(&str, &str)]) -> Vec<(String, String)> {
        pairs
            .iter()
            .map(|(k, v)| ((*k).to_owned(), (*v).to_owned()))
            .collect()
    }

    #[test]
    fn sets_keys_with_the_files_types() {
        let mut doc: toml::Table =
            "[server]\nlisten = \"a\"\nmax_headers = 5\n[[rate_limits.rules]]\nrate = 1\n"
                .parse()
                .unwrap();
        let mut problems = Vec::new();
        let done = apply(
            &mut doc,
            &env(&[
                ("ORDERGATE_SERVER__LISTEN", "127.0.0.1:1"),
                ("ORDERGATE_SERVER__MAX_HEADERS", "50"),
                ("ORDERGATE_STORE__PASSWORD", "12345"),
                ("ORDERGATE_SERVER__TLS__CERT_PATH", "/x.pem"),
                ("ORDERGATE_RATE_LIMITS__RULES__0__RATE", "7"),
                ("ORDERGATE_RATE_LIMITS__RULES__3__RATE", "7"),
                ("ORDERGATE_NOTHING", "x"),
                ("ORDERGATE_STORE_URL", "x"),
                ("OTHER", "x"),
            ]),
            &mut |k, r| problems.push((k, r)),
        );
        assert_eq!(doc["server"]["listen"].as_str(), Some("127.0.0.1:1"));
        assert_eq!(doc["server"]["max_headers"].as_integer(), Some(50));
        assert_eq!(doc["store"]["password"].as_str(), Some("12345"));
        assert_eq!(doc["server"]["tls"]["cert_path"].as_str(), Some("/x.pem"));
        assert_eq!(doc["rate_limits"]["rules"][0]["rate"].as_integer(), Some(7));
        let keys: Vec<&str> = done.iter().map(|o| o.key.as_str()).collect();
        assert_eq!(
            keys,
            [
                "server.listen",
                "server.max_headers",
                "store.password",
                "server.tls.cert_path",
                "rate_limits.rules[0].rate"
            ]
        );
        assert!(done[2].is_secret() && !done[0].is_secret());
        let vars: Vec<&str> = problems.iter().map(|(k, _)| k.as_str()).collect();
        assert_eq!(
            vars,
            [
                "ORDERGATE_RATE_LIMITS__RULES__3__RATE",
                "ORDERGATE_STORE_URL"
            ]
        );
    }
}

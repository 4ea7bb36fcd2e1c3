//! Path classification: `classify` on any path. A classified route
//! reconstructs the path it came from, an explicit order path round-trips
//! through `explicit_path`, and no accepted shorthand or order path carries
//! a dot segment or an encoded separator, in any case of percent-encoding.
#![no_main]

use libfuzzer_sys::fuzz_target;
use ordergate::route::{PathError, Route, classify, explicit_path};

/// Percent-decodes `.`, `/` and `\` only, as a path normaliser would.
fn decode_separators(s: &str) -> String {
    let mut out = String::with_capacity(s.len());
    let mut rest = s;
    while let Some(c) = rest.chars().next() {
        let code = rest.get(..3).map(str::to_ascii_lowercase);
        match code.as_deref() {
            Some("%2e") => out.push('.'),
            Some("%2f") => out.push('/'),
            Some("%5c") => out.push('\\'),
            _ => {
                out.push(c);
                rest = &rest[c.len_utf8()..];
                continue;
            }
        }
        rest = &rest[3..];
    }
    out
}

fn has_dot_segment(s: &str) -> bool {
    s.split(['/', '\\']).any(|seg| seg == "." || seg == "..")
}

fuzz_target!(|data: &[u8]| {
    let Ok(path) = std::str::from_utf8(data) else {
        return;
    };
    match classify(path) {
        Ok(Route::Shorthand { rest }) => {
            let rest = rest.as_str();
            assert_eq!(format!("/order{rest}"), path);
            assert!(rest.is_empty() || rest.starts_with('/'));
            let decoded = decode_separators(rest);
            assert!(!has_dot_segment(&decoded), "{path:?}");
            assert!(!decoded.contains('\\'), "{path:?}");
            assert_eq!(decoded.matches('/').count(), rest.matches('/').count());
        }
        Ok(Route::Orders) => assert!(path == "/orders" || path == "/orders/", "{path:?}"),
        Ok(Route::Order { id, rest }) => {
            let rebuilt = explicit_path(&id, &rest, None);
            assert_eq!(rebuilt, path);
            assert_eq!(
                classify(&rebuilt),
                Ok(Route::Order {
                    id: id.clone(),
                    rest: rest.clone()
                })
            );
            assert_eq!(
                explicit_path(&id, &rest, Some("a=1")),
                format!("{path}?a=1")
            );
            let rest = rest.as_str();
            assert!(!id.as_str().contains('/'));
            let decoded = decode_separators(rest);
            assert!(!has_dot_segment(&decoded), "{path:?}");
            assert!(!decoded.contains('\\'), "{path:?}");
            assert_eq!(decoded.matches('/').count(), rest.matches('/').count());
        }
        Ok(Route::Other) => {
            assert!(
                path != "/order" && !path.starts_with("/order/"),
                "{path:?} is the shorthand"
            );
            assert!(path != "/orders" && path != "/orders/", "{path:?}");
            assert!(
                path.split('/')
                    .all(|seg| !matches!(decode_separators(seg).as_str(), "." | "..")),
                "{path:?} has a dot segment"
            );
        }
        Err(PathError::DotSegment) => {
            assert!(
                path.split('/')
                    .any(|seg| matches!(decode_separators(seg).as_str(), "." | "..")),
                "{path:?} refused for a dot segment it does not have"
            );
        }
        Err(PathError::EncodedSeparator) => {
            assert!(path.starts_with("/order"), "{path:?}");
            let lower = path.to_ascii_lowercase();
            assert!(
                lower.contains("%2f") || lower.contains("%5c") || path.contains('\\'),
                "{path:?}"
            );
        }
    }
});

//! `OwnerId` cookie parsing: `owner_from_headers` over any `Cookie` headers
//! (one per input line) agrees with a plain reading of the cookie pairs and
//! with uuid's own parser, and an accepted owner prints back as it was sent.
#![no_main]

use http::header::{COOKIE, HeaderMap, HeaderValue};
use libfuzzer_sys::fuzz_target;
use ordergate::owners::{CookieError, OWNER_COOKIE, OwnerId, owner_from_headers};

fuzz_target!(|data: &[u8]| {
    let mut headers = HeaderMap::new();
    for line in data.split(|b| *b == b'\n') {
        if let Ok(v) = HeaderValue::from_bytes(line) {
            headers.append(COOKIE, v);
        }
    }

    // The reference: every `OwnerId=<value>` pair, as uuid reads the value.
    // Cookie headers are read as bytes: other cookies may carry any octets.
    let mut values: Vec<Vec<u8>> = Vec::new();
    for v in headers.get_all(COOKIE) {
        for pair in v.as_bytes().split(|b| *b == b';') {
            if let Some(eq) = pair.iter().position(|b| *b == b'=')
                && pair[..eq].trim_ascii() == OWNER_COOKIE.as_bytes()
            {
                let value = pair[eq + 1..].trim_ascii();
                let start = value.iter().position(|b| *b != b'"').unwrap_or(value.len());
                let end = value
                    .iter()
                    .rposition(|b| *b != b'"')
                    .map_or(start, |i| i + 1);
                values.push(value[start..end.max(start)].to_vec());
            }
        }
    }
    let parsed: Vec<Option<uuid::Uuid>> = values
        .iter()
        .map(|v| {
            // Only the hyphenated form, as the upstream writes it.
            (v.len() == 36)
                .then(|| uuid::Uuid::try_parse_ascii(v).ok())
                .flatten()
        })
        .collect();

    match owner_from_headers(&headers) {
        Ok(None) => assert!(values.is_empty(), "owner missed in {values:?}"),
        Ok(Some(owner)) => {
            assert!(parsed.iter().all(|p| p.is_some()), "{values:?}");
            let text = owner.to_string();
            assert!(
                values
                    .iter()
                    .all(|v| v.eq_ignore_ascii_case(text.as_bytes())),
                "{owner:?} from {values:?}"
            );
            assert_eq!(OwnerId::parse(&text), Some(owner));
        }
        Err(CookieError::Invalid) => {
            assert!(parsed.iter().any(|p| p.is_none()), "{values:?}")
        }
        Err(CookieError::Conflicting) => {
            let first_bad = parsed.iter().position(|p| p.is_none());
            let upto = first_bad.unwrap_or(parsed.len());
            let ok: Vec<_> = parsed[..upto].iter().flatten().collect();
            assert!(ok.windows(2).any(|w| w[0] != w[1]), "{values:?}");
        }
    }

    // Any single value: the gateway and uuid agree.
    if let Ok(s) = std::str::from_utf8(data) {
        let ours = OwnerId::parse(s).map(|o| o.to_string());
        let theirs = (s.len() == 36)
            .then(|| uuid::Uuid::parse_str(s).ok())
            .flatten()
            .map(|u| u.hyphenated().to_string());
        assert_eq!(ours, theirs, "{s:?}");
    }
});

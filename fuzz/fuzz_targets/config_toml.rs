//! The config loader: any text is either accepted as a whole or refused with
//! problems that each name a key and a reason; checking it again says the
//! same; an accepted file's base URLs read back to themselves; and an unknown
//! key added to an accepted file makes it refused, by that key's name.
#![no_main]

use libfuzzer_sys::fuzz_target;
use ordergate::config::{BaseUrl, Config};

fuzz_target!(|data: &[u8]| {
    let Ok(text) = std::str::from_utf8(data) else {
        return;
    };
    let checked = Config::check(text);
    let first = Config::parse(text);
    match (&checked, &first) {
        (Ok(_), Ok(_)) => {}
        (Err(all), Err(one)) => {
            assert!(!all.is_empty());
            assert_eq!(&all[0], one);
            for p in all {
                assert!(!p.key.is_empty() && !p.reason.is_empty(), "{p:?}");
            }
        }
        _ => panic!("check and parse disagree: {checked:?} / {first:?}"),
    }
    let Ok(config) = checked else {
        return;
    };
    let again = Config::check(text);
    assert!(again.is_ok(), "accepted once, refused again: {again:?}");
    assert!(!config.server.listeners.is_empty());
    for url in std::iter::once(&config.server.public_base_url)
        .chain(std::iter::once(&config.upstream.url))
        .chain(&config.upstream.rewrite_bases)
    {
        assert_eq!(BaseUrl::parse("k", url.as_str()).as_ref(), Ok(url));
        assert!(!url.as_str().ends_with('/'));
    }
    let with_unknown = format!("zz_not_a_setting = 1\n{text}");
    match Config::check(&with_unknown) {
        Ok(_) => panic!("an unknown key was accepted"),
        Err(problems) => assert!(
            problems.iter().any(|p| p.key == "zz_not_a_setting"),
            "{problems:?}"
        ),
    }
});

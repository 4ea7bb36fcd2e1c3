//! Any bytes at the start of a client connection's buffer, read by the
//! gateway's own HTTP/1.1 codec (`ordergate::server::read_client_head`).
//! Never a panic; the codec takes only what the prelude's checks take too
//! (a whole, well-framed head: nothing hyper or the checks would refuse);
//! what it takes is a bodiless HTTP/1.1 request whose method, target and
//! fields are the bytes' own, and the bytes after its head stay in the
//! buffer in order; what it leaves, it leaves whole.
#![no_main]

use libfuzzer_sys::fuzz_target;
use ordergate::config::{Config, ServerLimits};
use std::sync::OnceLock;

fn limits() -> &'static ServerLimits {
    static LIMITS: OnceLock<ServerLimits> = OnceLock::new();
    LIMITS.get_or_init(|| {
        let text = "[server]\nlisten = \"127.0.0.1:0\"\npublic_base_url = \"http://x\"\nmax_header_bytes = 8192\nmax_headers = 40\n[upstream]\nurl = \"http://127.0.0.1:1\"\n[store]\nkind = \"memory\"\n";
        Config::parse(text).expect("the fuzz configuration").server.limits
    })
}

fuzz_target!(|input: &[u8]| {
    let read = ordergate::server::read_client_head(input, limits());
    let Some((req, keep_alive)) = read.taken else {
        assert_eq!(read.rest, input, "bytes left must be left whole");
        return;
    };
    assert!(
        read.checked,
        "taken, but the checks refuse or wait: {input:?}"
    );
    assert!(
        input.ends_with(&read.rest),
        "the bytes after the head moved"
    );
    let head = &input[..input.len() - read.rest.len()];
    let mut fields = [httparse::EMPTY_HEADER; 64];
    let mut parsed = httparse::Request::new(&mut fields);
    assert_eq!(
        parsed.parse(head).ok(),
        Some(httparse::Status::Complete(head.len())),
        "the head taken is not one whole head"
    );
    assert_eq!(req.version(), http::Version::HTTP_11);
    assert_eq!(Some(req.method().as_str()), parsed.method);
    // A fragment is no part of a request target: the URI leaves it out.
    let target = parsed.path.and_then(|p| p.split('#').next());
    assert_eq!(Some(req.uri().to_string().as_str()), target);
    assert!(req.uri().path().starts_with('/'));
    assert_eq!(req.headers().len(), parsed.headers.len());
    let mut close = false;
    for field in parsed.headers.iter() {
        let name = field.name.to_ascii_lowercase();
        assert!(
            !matches!(name.as_str(), "transfer-encoding" | "expect" | "upgrade"),
            "taken with {name}"
        );
        if name == "content-length" {
            assert_eq!(field.value, b"0", "taken with a body");
        }
        if name == "connection" {
            close |= field
                .value
                .split(|&b| b == b',')
                .any(|t| t.trim_ascii().eq_ignore_ascii_case(b"close"));
        }
        let values: Vec<&[u8]> = req
            .headers()
            .get_all(&name)
            .iter()
            .map(|v| v.as_bytes())
            .collect();
        assert!(
            values.contains(&field.value),
            "{name}: {:?} not among {values:?}",
            field.value
        );
    }
    assert_eq!(keep_alive, !close);
});

//! The streaming JSON URL rewriter: any body, cut into chunks anywhere
//! (where the input says, and one byte at a time), streams to exactly the
//! one-piece rewrite; rewriting the result again changes nothing (the public
//! base is never taken for the upstream's); and a JSON body stays JSON, with
//! every string that is an upstream URL, and only those, on the public base.
//!
//! Input: a first byte `n`, then `n % 8` chunk lengths, then the body.
#![no_main]

use bytes::Bytes;
use http_body::{Body, Frame};
use libfuzzer_sys::fuzz_target;
use ordergate::upstream::rewrite::{RewriteBody, Rewriter};
use serde_json::Value;
use std::collections::VecDeque;
use std::pin::Pin;
use std::sync::Arc;
use std::task::{Context, Poll};

const UP: &str = "http://coreapi01.ote.chicago.hostway:8092";
const OTHER: &str = "http://10.0.0.7:8092";
const PUB: &str = "https://api.example.com";

fn rewriter() -> Rewriter {
    Rewriter::new([
        (UP.to_owned(), PUB.to_owned()),
        (OTHER.to_owned(), PUB.to_owned()),
    ])
    .with([(format!("{UP}/orders/o1"), format!("{PUB}/order"))])
}

/// A body that yields the given chunks one frame each.
struct Chunks(VecDeque<Bytes>);

impl Body for Chunks {
    type Data = Bytes;
    type Error = std::convert::Infallible;
    fn poll_frame(
        mut self: Pin<&mut Self>,
        _: &mut Context<'_>,
    ) -> Poll<Option<Result<Frame<Bytes>, Self::Error>>> {
        Poll::Ready(self.0.pop_front().map(|b| Ok(Frame::data(b))))
    }
}

fn stream(r: &Arc<Rewriter>, chunks: VecDeque<Bytes>) -> Vec<u8> {
    let mut body = RewriteBody::new(Chunks(chunks), r.clone());
    let mut body = Pin::new(&mut body);
    let mut cx = Context::from_waker(std::task::Waker::noop());
    let mut out = Vec::new();
    loop {
        match body.as_mut().poll_frame(&mut cx) {
            Poll::Ready(Some(Ok(frame))) => {
                if let Ok(data) = frame.into_data() {
                    out.extend_from_slice(&data);
                }
            }
            Poll::Ready(None) => return out,
            Poll::Ready(Some(Err(e))) => match e {},
            Poll::Pending => panic!("a body of ready chunks is pending"),
        }
    }
}

/// The tree rewrite, on keys and values alike (the stream sees no difference).
fn reference(r: &Rewriter, v: &mut Value) {
    match v {
        Value::String(s) => {
            if let Some(new) = r.rewrite(s) {
                *s = new;
            }
        }
        Value::Array(items) => items.iter_mut().for_each(|v| reference(r, v)),
        Value::Object(map) => {
            let old = std::mem::take(map);
            for (k, mut v) in old {
                reference(r, &mut v);
                map.insert(r.rewrite(&k).unwrap_or(k), v);
            }
        }
        _ => {}
    }
}

fuzz_target!(|data: &[u8]| {
    let Some((&n, rest)) = data.split_first() else {
        return;
    };
    let cuts = usize::from(n % 8).min(rest.len());
    let (sizes, body) = rest.split_at(cuts);
    let r = Arc::new(rewriter());
    let whole = r.rewrite_bytes(body);

    let mut chunks = VecDeque::new();
    let mut left = body;
    for &s in sizes {
        let (a, b) = left.split_at(usize::from(s).min(left.len()));
        chunks.push_back(Bytes::copy_from_slice(a));
        left = b;
    }
    chunks.push_back(Bytes::copy_from_slice(left));
    assert_eq!(stream(&r, chunks), whole, "cut at {sizes:?}");
    let bytes = body.iter().map(|b| Bytes::copy_from_slice(&[*b])).collect();
    assert_eq!(stream(&r, bytes), whole, "one byte at a time");

    assert_eq!(r.rewrite_bytes(&whole), whole, "rewritten twice");

    if let Ok(mut tree) = serde_json::from_slice::<Value>(body) {
        let out: Value = serde_json::from_slice(&whole).unwrap_or_else(|e| {
            panic!(
                "JSON rewritten to not JSON ({e}): {}",
                String::from_utf8_lossy(&whole)
            )
        });
        // An escaped quote is inside a string, where the stream cannot tell
        // it from the start of one; only bodies without escapes compare.
        if !body.contains(&b'\\') {
            reference(&r, &mut tree);
            assert_eq!(out, tree);
        }
    }
});

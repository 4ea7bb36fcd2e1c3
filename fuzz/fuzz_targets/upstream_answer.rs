//! An upstream's answer, any bytes, read as the pooled upstream connection
//! reads it (`ordergate::upstream::h1::read_answer`). Never a panic; the
//! reading is the same whether the bytes come whole, one at a time or in
//! pieces of any size; a body framed by `Content-Length` is exactly that
//! long; and no connection is kept when anything follows the answer.
#![no_main]

use http::Method;
use libfuzzer_sys::fuzz_target;
use ordergate::upstream::h1::read_answer;

fuzz_target!(|input: &[u8]| {
    let Some((&control, wire)) = input.split_first() else {
        return;
    };
    let method = if control & 0x80 != 0 {
        Method::HEAD
    } else {
        Method::GET
    };
    let step = usize::from(control & 0x7f).max(1);
    let whole = read_answer(wire, &method, wire.len().max(1));
    let pieces = read_answer(wire, &method, step);
    let bytewise = read_answer(wire, &method, 1);
    match (&whole, &pieces, &bytewise) {
        (Ok(a), Ok(b), Ok(c)) => {
            assert_eq!(a, b);
            assert_eq!(a, c);
            // The length that frames a body (its `Content-Length`, which
            // then stays out of the map) is the body's.
            if let Some(len) = a.length
                && method != Method::HEAD
                && a.status != 204
                && a.status != 304
            {
                assert_eq!(a.body.len() as u64, len);
                assert!(!a.headers.contains_key(http::header::CONTENT_LENGTH));
            }
        }
        (Err(_), Err(_), Err(_)) => {}
        _ => panic!(
            "the reading depends on how the bytes came: {whole:?} / {pieces:?} / {bytewise:?}"
        ),
    }
});

//! The one reader of bodies the gateway must look into: an order's status
//! and links, an action, an upstream fault, a JSON body whose URLs it
//! rewrites whole.
//!
//! Reading is bounded: a body is refused as soon as it grows past its cap,
//! and a compressed body is decoded first ([`Coding`]: `gzip`, `deflate`,
//! `br`, `zstd`), with the cap on what it decodes to, so a compression bomb
//! ends at the cap without its output ever being held.

use super::BoxError;
use async_compression::tokio::bufread::{BrotliDecoder, GzipDecoder, ZlibDecoder, ZstdDecoder};
use bytes::Bytes;
use http::HeaderMap;
use http::header::CONTENT_ENCODING;
use http_body_util::BodyExt;
use tokio::io::{AsyncRead, AsyncReadExt};

/// Why a body could not be read whole.
#[derive(Debug, thiserror::Error)]
pub enum ReadError {
    #[error("the body is larger than {0} bytes")]
    TooLarge(usize),
    #[error("the body could not be read: {0}")]
    Failed(BoxError),
    /// Encoded in a way the gateway cannot decode, or not validly.
    #[error("the body's content encoding cannot be decoded: {0}")]
    Undecodable(String),
}

/// How a body is encoded (`Content-Encoding`).
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Coding {
    Identity,
    Gzip,
    Deflate,
    Brotli,
    Zstd,
}

impl Coding {
    /// The coding of a message by its headers; `Err` with the name of one
    /// the gateway cannot decode (or several layered codings).
    pub fn of(headers: &HeaderMap) -> Result<Self, String> {
        let mut codings = headers
            .get_all(CONTENT_ENCODING)
            .iter()
            .flat_map(|v| v.to_str().unwrap_or("?").split(','))
            .map(str::trim)
            .filter(|c| !c.is_empty() && !c.eq_ignore_ascii_case("identity"));
        let Some(first) = codings.next() else {
            return Ok(Self::Identity);
        };
        if codings.next().is_some() {
            return Err("several codings".to_owned());
        }
        Ok(match first.to_ascii_lowercase().as_str() {
            "gzip" | "x-gzip" => Self::Gzip,
            "deflate" => Self::Deflate,
            "br" => Self::Brotli,
            "zstd" => Self::Zstd,
            other => return Err(other.to_owned()),
        })
    }
}

/// Reads a whole body, refusing it as soon as it grows past `cap` bytes.
pub async fn read_capped<B>(body: B, cap: usize) -> Result<Bytes, ReadError>
where
    B: http_body::Body<Data = Bytes> + Unpin,
    B::Error: Into<BoxError>,
{
    let mut body = body;
    // A body that comes in one piece (most do) is that piece, not a copy.
    let mut first = Bytes::new();
    let mut out = bytes::BytesMut::new();
    while let Some(frame) = body.frame().await {
        let frame = frame.map_err(|e| ReadError::Failed(e.into()))?;
        if let Ok(data) = frame.into_data() {
            if first.len() + out.len() + data.len() > cap {
                return Err(ReadError::TooLarge(cap));
            }
            if first.is_empty() && out.is_empty() {
                first = data;
            } else {
                if !first.is_empty() {
                    out.extend_from_slice(&std::mem::take(&mut first));
                }
                out.extend_from_slice(&data);
            }
        }
    }
    Ok(if out.is_empty() { first } else { out.freeze() })
}

/// Reads a whole body encoded with `coding` and decodes it; neither what
/// comes nor what it decodes to may pass `cap` bytes.
pub async fn read_decoded<B>(body: B, coding: Coding, cap: usize) -> Result<Bytes, ReadError>
where
    B: http_body::Body<Data = Bytes> + Unpin,
    B::Error: Into<BoxError>,
{
    let raw = read_capped(body, cap).await?;
    if coding == Coding::Identity {
        return Ok(raw);
    }
    let raw = &raw[..];
    match coding {
        Coding::Identity | Coding::Gzip => decode(GzipDecoder::new(raw), cap).await,
        Coding::Deflate => decode(ZlibDecoder::new(raw), cap).await,
        Coding::Brotli => decode(BrotliDecoder::new(raw), cap).await,
        Coding::Zstd => decode(ZstdDecoder::new(raw), cap).await,
    }
}

/// A body decoded from `coding` as it streams, for answers passed on rather
/// than read whole (an upstream that compressed although asked not to).
pub fn decoded(body: super::Body, coding: Coding) -> super::Body {
    use futures_util::TryStreamExt;
    use tokio_util::io::{ReaderStream, StreamReader};
    if coding == Coding::Identity {
        return body;
    }
    let stream = http_body_util::BodyDataStream::new(body).map_err(std::io::Error::other);
    let reader = StreamReader::new(stream);
    match coding {
        Coding::Identity | Coding::Gzip => body_of(ReaderStream::new(GzipDecoder::new(reader))),
        Coding::Deflate => body_of(ReaderStream::new(ZlibDecoder::new(reader))),
        Coding::Brotli => body_of(ReaderStream::new(BrotliDecoder::new(reader))),
        Coding::Zstd => body_of(ReaderStream::new(ZstdDecoder::new(reader))),
    }
}

fn body_of<S>(stream: S) -> super::Body
where
    S: futures_util::Stream<Item = std::io::Result<Bytes>> + Send + 'static,
{
    use futures_util::TryStreamExt;
    super::boxed(http_body_util::StreamBody::new(
        stream.map_ok(http_body::Frame::data),
    ))
}

async fn decode(decoder: impl AsyncRead + Unpin, cap: usize) -> Result<Bytes, ReadError> {
    let mut out = Vec::new();
    // One byte past the cap tells a body that fits from one that does not.
    let mut limited = decoder.take(cap as u64 + 1);
    limited
        .read_to_end(&mut out)
        .await
        .map_err(|e| ReadError::Undecodable(e.to_string()))?;
    if out.len() > cap {
        return Err(ReadError::TooLarge(cap));
    }
    Ok(Bytes::from(out))
}

#[cfg(test)]
mod tests {
    use super::*;
    use async_compression::tokio::bufread::{BrotliEncoder, GzipEncoder, ZlibEncoder, ZstdEncoder};
    use http::HeaderValue;

    async fn encode(coding: Coding, plain: &[u8]) -> Vec<u8> {
        let mut out = Vec::new();
        match coding {
            Coding::Identity => out.extend_from_slice(plain),
            Coding::Gzip => GzipEncoder::new(plain)
                .read_to_end(&mut out)
                .await
                .map(drop)
                .unwrap(),
            Coding::Deflate => ZlibEncoder::new(plain)
                .read_to_end(&mut out)
                .await
                .map(drop)
                .unwrap(),
            Coding::Brotli => BrotliEncoder::new(plain)
                .read_to_end(&mut out)
                .await
                .map(drop)
                .unwrap(),
            Coding::Zstd => ZstdEncoder::new(plain)
                .read_to_end(&mut out)
                .await
                .map(drop)
                .unwrap(),
        }
        out
    }

    #[tokio::test]
    async fn every_coding_is_decoded() {
        let plain = br#"{"order": {"Status": "Processing"}}"#;
        for coding in [
            Coding::Identity,
            Coding::Gzip,
            Coding::Deflate,
            Coding::Brotli,
            Coding::Zstd,
        ] {
            let body = super::super::full(encode(coding, plain).await);
            let read = read_decoded(body, coding, 1024).await.unwrap();
            assert_eq!(&read[..], plain, "{coding:?}");
        }
    }

    #[tokio::test]
    async fn a_streamed_body_is_decoded_as_it_comes() {
        let plain = "{\"a\": 1}".repeat(2000);
        for coding in [Coding::Gzip, Coding::Deflate, Coding::Brotli, Coding::Zstd] {
            let packed = encode(coding, plain.as_bytes()).await;
            // In small pieces, as a network delivers it.
            let chunks: Vec<Result<http_body::Frame<Bytes>, std::io::Error>> = packed
                .chunks(7)
                .map(|c| Ok(http_body::Frame::data(Bytes::copy_from_slice(c))))
                .collect();
            let body = super::super::boxed(http_body_util::StreamBody::new(
                futures_util::stream::iter(chunks),
            ));
            let out = decoded(body, coding).collect().await.unwrap().to_bytes();
            assert_eq!(out, plain.as_bytes(), "{coding:?}");
        }
    }

    #[tokio::test]
    async fn a_compression_bomb_ends_at_the_cap() {
        // 16 MiB of zeros in a few kilobytes.
        let zeros = vec![0u8; 16 << 20];
        for coding in [Coding::Gzip, Coding::Brotli, Coding::Zstd] {
            let bomb = encode(coding, &zeros).await;
            assert!(bomb.len() < 64 << 10, "{coding:?}: {}", bomb.len());
            let read = read_decoded(super::super::full(bomb), coding, 64 << 10).await;
            assert!(matches!(read, Err(ReadError::TooLarge(_))), "{coding:?}");
        }
    }

    #[tokio::test]
    async fn bad_encodings_are_undecodable() {
        let read = read_decoded(super::super::full("not gzip"), Coding::Gzip, 1024).await;
        assert!(matches!(read, Err(ReadError::Undecodable(_))));
        let mut h = HeaderMap::new();
        assert_eq!(Coding::of(&h), Ok(Coding::Identity));
        for (value, coding) in [
            ("gzip", Ok(Coding::Gzip)),
            ("BR", Ok(Coding::Brotli)),
            ("identity", Ok(Coding::Identity)),
            ("compress", Err("compress".to_owned())),
            ("gzip, br", Err("several codings".to_owned())),
        ] {
            h.insert(CONTENT_ENCODING, HeaderValue::from_static(value));
            assert_eq!(Coding::of(&h), coding, "{value}");
        }
    }

    fn frames(parts: &[&'static str]) -> crate::body::Body {
        use futures_util::StreamExt;
        let frames = futures_util::stream::iter(parts.to_vec())
            .map(|p| Ok::<_, BoxError>(http_body::Frame::data(Bytes::from_static(p.as_bytes()))));
        crate::body::boxed(http_body_util::StreamBody::new(frames))
    }

    #[tokio::test]
    async fn bodies_are_read_whole_under_the_cap() {
        // One piece: that piece itself, not a copy.
        let piece = Bytes::from_static(b"{\"status\":\"open\"}");
        let read = read_capped(http_body_util::Full::new(piece.clone()), 64)
            .await
            .unwrap();
        assert_eq!(read.as_ptr(), piece.as_ptr());
        // Several, with empty ones between: joined in order.
        let read = read_capped(frames(&["ab", "", "cd", "e"]), 5)
            .await
            .unwrap();
        assert_eq!(&read[..], b"abcde");
        // The cap counts every piece, the first included.
        for parts in [&["abcdef"][..], &["abc", "def"], &["", "abcde", "f"]] {
            assert!(matches!(
                read_capped(frames(parts), 5).await,
                Err(ReadError::TooLarge(5))
            ));
        }
    }
}

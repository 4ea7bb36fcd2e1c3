//! Sizes and durations in the file: a plain integer in the unit the key
//! names (`_bytes`, `_ms`, `_secs`), or a string with its unit.
//!
//! Sizes: `"512KiB"`, `"1MiB"`, `"2GiB"` are powers of two (IEC);
//! `"500KB"`, `"1MB"` are powers of ten (SI, as disk and network sizes are
//! written). A bare `K`, `M` or `G` is refused: nginx reads `1m` as 2^20,
//! the SI prefix says 10^6, and a limit must not depend on which the reader
//! assumed. Parsing is bytesize's. Durations: humantime's units (`"250ms"`,
//! `"30s"`, `"2m"`, `"1h 30m"`).

use serde::de::{self, Deserializer, Visitor};
use std::fmt;
use std::marker::PhantomData;
use std::time::Duration;

/// A number of bytes.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct Size(pub u64);

impl Size {
    pub fn parse(s: &str) -> Result<u64, String> {
        let t = s.trim();
        let unit = t.trim_start_matches(|c: char| c.is_ascii_digit() || c == '.' || c == ' ');
        if matches!(unit.to_ascii_lowercase().as_str(), "k" | "m" | "g" | "t") {
            return Err(format!(
                "`{s}` is ambiguous: write {n}{u}B (powers of ten) or {n}{u}iB (powers of two)",
                n = t[..t.len() - unit.len()].trim(),
                u = unit.to_ascii_uppercase(),
            ));
        }
        if t.contains('.') {
            return Err(format!("`{s}` is not a whole number of bytes"));
        }
        t.parse::<bytesize::ByteSize>()
            .map(|b| b.as_u64())
            .map_err(|_| {
                format!("`{s}` is not a size: bytes, or a number with KB, MB, GB, KiB, MiB or GiB")
            })
    }
}

impl<'de> de::Deserialize<'de> for Size {
    fn deserialize<D: Deserializer<'de>>(d: D) -> Result<Self, D::Error> {
        struct V;
        impl Visitor<'_> for V {
            type Value = Size;
            fn expecting(&self, f: &mut fmt::Formatter) -> fmt::Result {
                f.write_str("a number of bytes, or a size such as \"512KiB\" or \"1MB\"")
            }
            fn visit_i64<E: de::Error>(self, v: i64) -> Result<Size, E> {
                u64::try_from(v)
                    .map(Size)
                    .map_err(|_| E::custom("must not be negative"))
            }
            fn visit_u64<E: de::Error>(self, v: u64) -> Result<Size, E> {
                Ok(Size(v))
            }
            fn visit_str<E: de::Error>(self, v: &str) -> Result<Size, E> {
                Size::parse(v).map(Size).map_err(E::custom)
            }
        }
        d.deserialize_any(V)
    }
}

/// The unit a plain number of a duration key is in.
pub trait Unit {
    const NANOS: u64;
    const NAME: &'static str;
}

pub enum Ms {}
pub enum S {}

impl Unit for Ms {
    const NANOS: u64 = 1_000_000;
    const NAME: &'static str = "milliseconds";
}

impl Unit for S {
    const NANOS: u64 = 1_000_000_000;
    const NAME: &'static str = "seconds";
}

/// A duration: a plain number in `U`, or a string with its unit.
pub struct Dur<U>(pub Duration, PhantomData<U>);

/// A `_ms` key.
pub type Millis = Dur<Ms>;
/// A `_secs` key.
pub type Secs = Dur<S>;

impl<U> Clone for Dur<U> {
    fn clone(&self) -> Self {
        *self
    }
}

impl<U> Copy for Dur<U> {}

impl<U> Dur<U> {
    pub fn get(&self) -> Duration {
        self.0
    }
}

impl<U> fmt::Debug for Dur<U> {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        self.0.fmt(f)
    }
}

impl<'de, U: Unit> de::Deserialize<'de> for Dur<U> {
    fn deserialize<D: Deserializer<'de>>(d: D) -> Result<Self, D::Error> {
        struct V<U>(PhantomData<U>);
        impl<U: Unit> Visitor<'_> for V<U> {
            type Value = Dur<U>;
            fn expecting(&self, f: &mut fmt::Formatter) -> fmt::Result {
                write!(
                    f,
                    "a number of {}, or a duration such as \"250ms\", \"30s\" or \"2m\"",
                    U::NAME
                )
            }
            fn visit_i64<E: de::Error>(self, v: i64) -> Result<Dur<U>, E> {
                let v = u64::try_from(v).map_err(|_| E::custom("must not be negative"))?;
                self.visit_u64(v)
            }
            fn visit_u64<E: de::Error>(self, v: u64) -> Result<Dur<U>, E> {
                let nanos = u128::from(v) * u128::from(U::NANOS);
                let secs =
                    u64::try_from(nanos / 1_000_000_000).map_err(|_| E::custom("is too large"))?;
                Ok(Dur(
                    Duration::new(secs, (nanos % 1_000_000_000) as u32),
                    PhantomData,
                ))
            }
            fn visit_str<E: de::Error>(self, v: &str) -> Result<Dur<U>, E> {
                humantime::parse_duration(v.trim())
                    .map(|d| Dur(d, PhantomData))
                    .map_err(|_| {
                        E::custom(format!(
                            "`{v}` is not a duration: a number of {}, or a number with ms, s, m or h",
                            U::NAME
                        ))
                    })
            }
        }
        d.deserialize_any(V(PhantomData))
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn size(v: &str) -> Result<u64, String> {
        Size::parse(v)
    }

    #[test]
    fn sizes_in_both_unit_systems() {
        assert_eq!(size("1MiB"), Ok(1 << 20));
        assert_eq!(size("512KiB"), Ok(512 << 10));
        assert_eq!(size("1MB"), Ok(1_000_000));
        assert_eq!(size("64 KB"), Ok(64_000));
        assert_eq!(size("2GiB"), Ok(2 << 30));
        assert_eq!(size("100"), Ok(100));
        assert_eq!(size("100B"), Ok(100));
        assert!(size("1m").unwrap_err().contains("ambiguous"));
        assert!(size("1.5MiB").is_err());
        assert!(size("lots").is_err());
        assert!(size("1XB").is_err());
    }

    #[test]
    fn durations_keep_their_keys_unit_for_plain_numbers() {
        let ms: Millis = toml::Value::Integer(250).try_into().unwrap();
        assert_eq!(ms.get(), Duration::from_millis(250));
        let s: Secs = toml::Value::Integer(30).try_into().unwrap();
        assert_eq!(s.get(), Duration::from_secs(30));
        let s: Secs = toml::Value::String("250ms".into()).try_into().unwrap();
        assert_eq!(s.get(), Duration::from_millis(250));
        let ms: Millis = toml::Value::String("2m".into()).try_into().unwrap();
        assert_eq!(ms.get(), Duration::from_secs(120));
        assert!(
            toml::Value::String("soon".into())
                .try_into::<Millis>()
                .is_err()
        );
        assert!(toml::Value::Integer(-1).try_into::<Millis>().is_err());
    }
}

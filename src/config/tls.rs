//! TLS material read from the files the configuration names: the server side
//! of TLS termination (TLS 1.2 and 1.3 only, ALPN `h2` and `http/1.1` on the
//! same listener), and the client side for an `https://` upstream (the webpki
//! roots, or the CA certificates of a configured file instead).
//!
//! A listener's certificate, key and stapled OCSP response sit behind a
//! [`CertResolver`] whose [`CertifiedKey`] is swapped atomically on reload:
//! new handshakes get the new certificate while open connections keep the
//! session they have. The cipher suites and their order are fixed when the
//! listener starts. HSTS, when configured, is added by the server to every
//! answer of the listener's connections (see [`ListenerTls::hsts`]), and
//! reloads too.

use arc_swap::{ArcSwap, ArcSwapOption};
use http::HeaderValue;
use rustls::crypto::CryptoProvider;
use rustls::pki_types::pem::PemObject;
use rustls::pki_types::{CertificateDer, PrivateKeyDer};
use rustls::server::{ClientHello, ResolvesServerCert};
use rustls::sign::CertifiedKey;
use std::path::{Path, PathBuf};
use std::sync::Arc;
use std::time::Duration;

/// What a listener's `tls` table says.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct TlsSettings {
    pub cert_path: PathBuf,
    pub key_path: PathBuf,
    /// A DER OCSP response for the certificate, stapled to handshakes of
    /// clients that ask for one.
    pub ocsp_path: Option<PathBuf>,
    /// Suites offered, in the server's order of preference (names as IANA
    /// writes them); `None`: rustls' safe defaults.
    pub cipher_suites: Option<Vec<String>>,
    /// Choose the TLS 1.2 suite by the server's order, not the client's.
    pub prefer_server_cipher_order: bool,
    pub hsts: Option<Hsts>,
}

/// `Strict-Transport-Security` on the listener's answers.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct Hsts {
    pub max_age: Duration,
    pub include_subdomains: bool,
}

impl Hsts {
    /// The header value, built once.
    pub fn header_value(&self) -> HeaderValue {
        let mut v = format!("max-age={}", self.max_age.as_secs());
        if self.include_subdomains {
            v.push_str("; includeSubDomains");
        }
        // Digits and ASCII only: always a valid value.
        HeaderValue::from_str(&v).unwrap_or(HeaderValue::from_static("max-age=0"))
    }
}

/// Why a listener's TLS could not be built; the variant names the key at fault.
#[derive(Debug, thiserror::Error)]
pub enum TlsError {
    #[error("{0}")]
    Cert(String),
    #[error("{0}")]
    Key(String),
    #[error("{0}")]
    Ocsp(String),
    #[error("{0}")]
    CipherSuites(String),
}

impl TlsError {
    /// The key of the listener's `tls` table the problem is about.
    pub fn field(&self) -> &'static str {
        match self {
            Self::Cert(_) => "cert_path",
            Self::Key(_) => "key_path",
            Self::Ocsp(_) => "ocsp_path",
            Self::CipherSuites(_) => "cipher_suites",
        }
    }
}

/// Answers every handshake with the current certificate, whatever name the
/// client asks for (a listener has one certificate).
#[derive(Debug)]
pub struct CertResolver(ArcSwap<CertifiedKey>);

impl CertResolver {
    pub fn new(key: Arc<CertifiedKey>) -> Self {
        Self(ArcSwap::new(key))
    }

    /// The certificate new handshakes get.
    pub fn current(&self) -> Arc<CertifiedKey> {
        self.0.load_full()
    }

    /// Replaces the certificate for new handshakes; open connections keep
    /// the one they were made with.
    pub fn replace(&self, key: Arc<CertifiedKey>) {
        self.0.store(key);
    }
}

impl ResolvesServerCert for CertResolver {
    fn resolve(&self, _: ClientHello<'_>) -> Option<Arc<CertifiedKey>> {
        Some(self.0.load_full())
    }
}

/// A listener's TLS: the rustls config its handshakes use, the resolver in
/// it, and the HSTS value of its answers. Clones share all three, so the
/// running listener's copy sees what [`ListenerTls::take_reloadable`] puts in.
#[derive(Debug, Clone)]
pub struct ListenerTls {
    pub config: Arc<rustls::ServerConfig>,
    pub certs: Arc<CertResolver>,
    pub hsts: Arc<ArcSwapOption<HeaderValue>>,
    pub settings: TlsSettings,
}

impl ListenerTls {
    /// Reads the files `settings` names and builds the listener's TLS. The
    /// error names the file and what is wrong with it.
    pub fn load(settings: TlsSettings) -> Result<Self, TlsError> {
        let provider = Arc::new(provider(settings.cipher_suites.as_deref())?);
        let key = certified_key(&settings, &provider)?;
        let certs = Arc::new(CertResolver::new(Arc::new(key)));
        let mut config = rustls::ServerConfig::builder_with_provider(provider)
            .with_protocol_versions(&[&rustls::version::TLS13, &rustls::version::TLS12])
            .map_err(|e| TlsError::CipherSuites(format!("no usable cipher suite: {e}")))?
            .with_no_client_auth()
            .with_cert_resolver(Arc::clone(&certs) as Arc<dyn ResolvesServerCert>);
        config.alpn_protocols = vec![b"h2".to_vec(), b"http/1.1".to_vec()];
        config.ignore_client_order = settings.prefer_server_cipher_order;
        let hsts = settings.hsts.map(|h| Arc::new(h.header_value()));
        Ok(Self {
            config: Arc::new(config),
            certs,
            hsts: Arc::new(ArcSwapOption::new(hsts)),
            settings,
        })
    }

    /// Puts `new`'s certificate, key, OCSP response and HSTS into this
    /// (running) listener: what a reload changes without a restart. Says
    /// whether the certificate chain or OCSP response changed.
    pub fn take_reloadable(&self, new: &ListenerTls) -> bool {
        let (old, next) = (self.certs.current(), new.certs.current());
        let changed = old.cert != next.cert || old.ocsp != next.ocsp;
        self.certs.replace(next);
        self.hsts.store(new.hsts.load_full());
        changed
    }

    /// The settings only a restart applies (cipher suites and their order).
    pub fn fixed_at_start(&self) -> (Option<Vec<String>>, bool) {
        (
            self.settings.cipher_suites.clone(),
            self.settings.prefer_server_cipher_order,
        )
    }
}

/// The ring provider, with only the named suites, in that order, when
/// suites are named.
fn provider(suites: Option<&[String]>) -> Result<CryptoProvider, TlsError> {
    let mut provider = rustls::crypto::ring::default_provider();
    let Some(names) = suites else {
        return Ok(provider);
    };
    if names.is_empty() {
        return Err(TlsError::CipherSuites("names no suite".to_owned()));
    }
    let known = std::mem::take(&mut provider.cipher_suites);
    for name in names {
        let suite = known
            .iter()
            .find(|s| s.suite().as_str() == Some(name.as_str()))
            .ok_or_else(|| {
                let names: Vec<&str> = known.iter().filter_map(|s| s.suite().as_str()).collect();
                TlsError::CipherSuites(format!(
                    "`{name}` is not a supported suite (one of {})",
                    names.join(", ")
                ))
            })?;
        if !provider.cipher_suites.contains(suite) {
            provider.cipher_suites.push(*suite);
        }
    }
    Ok(provider)
}

fn certified_key(
    settings: &TlsSettings,
    provider: &CryptoProvider,
) -> Result<CertifiedKey, TlsError> {
    let (cert_path, key_path) = (&settings.cert_path, &settings.key_path);
    let certs = CertificateDer::pem_file_iter(cert_path)
        .and_then(|it| it.collect::<Result<Vec<_>, _>>())
        .map_err(|e| {
            TlsError::Cert(format!(
                "cannot read certificates from {}: {e}",
                cert_path.display()
            ))
        })?;
    if certs.is_empty() {
        return Err(TlsError::Cert(format!(
            "no certificate in {}",
            cert_path.display()
        )));
    }
    let key = PrivateKeyDer::from_pem_file(key_path).map_err(|e| {
        TlsError::Key(format!(
            "cannot read a private key from {}: {e}",
            key_path.display()
        ))
    })?;
    let mut certified = CertifiedKey::from_der(certs, key, provider)
        .map_err(|e| TlsError::Key(format!("the key does not fit the certificate: {e}")))?;
    certified.ocsp = settings.ocsp_path.as_deref().map(ocsp).transpose()?;
    Ok(certified)
}

/// A DER OCSP response (a SEQUENCE), as `openssl ocsp -respout` writes it.
fn ocsp(path: &Path) -> Result<Vec<u8>, TlsError> {
    let der = std::fs::read(path).map_err(|e| {
        TlsError::Ocsp(format!(
            "cannot read an OCSP response from {}: {e}",
            path.display()
        ))
    })?;
    if der.first() != Some(&0x30) {
        return Err(TlsError::Ocsp(format!(
            "{} is not a DER OCSP response",
            path.display()
        )));
    }
    Ok(der)
}

/// Builds the client side of TLS (1.2 and 1.3). The error names the file and
/// what is wrong with it.
pub fn client_config(ca_file: Option<&Path>) -> Result<Arc<rustls::ClientConfig>, String> {
    let mut roots = rustls::RootCertStore::empty();
    match ca_file {
        None => roots.extend(webpki_roots::TLS_SERVER_ROOTS.iter().cloned()),
        Some(path) => {
            let certs = CertificateDer::pem_file_iter(path)
                .and_then(|it| it.collect::<Result<Vec<_>, _>>())
                .map_err(|e| format!("cannot read certificates from {}: {e}", path.display()))?;
            if certs.is_empty() {
                return Err(format!("no certificate in {}", path.display()));
            }
            for cert in certs {
                roots.add(cert).map_err(|e| {
                    format!("a certificate in {} is not usable: {e}", path.display())
                })?;
            }
        }
    }
    let provider = Arc::new(rustls::crypto::ring::default_provider());
    let config = rustls::ClientConfig::builder_with_provider(provider)
        .with_protocol_versions(&[&rustls::version::TLS13, &rustls::version::TLS12])
        .map_err(|e| e.to_string())?
        .with_root_certificates(roots)
        .with_no_client_auth();
    Ok(Arc::new(config))
}

/// A client config for a plain `http://` upstream, where TLS is never used.
pub fn unused_config() -> Result<Arc<rustls::ClientConfig>, String> {
    let provider = Arc::new(rustls::crypto::ring::default_provider());
    let config = rustls::ClientConfig::builder_with_provider(provider)
        .with_safe_default_protocol_versions()
        .map_err(|e| e.to_string())?
        .with_root_certificates(rustls::RootCertStore::empty())
        .with_no_client_auth();
    Ok(Arc::new(config))
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn suites_are_offered_in_the_order_named() {
        let p = provider(Some(&[
            "TLS_ECDHE_RSA_WITH_CHACHA20_POLY1305_SHA256".to_owned(),
            "TLS13_AES_128_GCM_SHA256".to_owned(),
        ]))
        .unwrap();
        let names: Vec<_> = p.cipher_suites.iter().map(|s| s.suite().as_str()).collect();
        assert_eq!(
            names,
            [
                Some("TLS_ECDHE_RSA_WITH_CHACHA20_POLY1305_SHA256"),
                Some("TLS13_AES_128_GCM_SHA256")
            ]
        );
        let e = provider(Some(&["TLS_RSA_WITH_RC4_128_SHA".to_owned()])).unwrap_err();
        assert_eq!(e.field(), "cipher_suites");
        assert!(e.to_string().contains("TLS13_AES_256_GCM_SHA384"), "{e}");
        assert!(provider(Some(&[])).is_err());
    }

    #[test]
    fn hsts_header() {
        let h = Hsts {
            max_age: Duration::from_secs(63_072_000),
            include_subdomains: true,
        };
        assert_eq!(h.header_value(), "max-age=63072000; includeSubDomains");
        let h = Hsts {
            include_subdomains: false,
            ..h
        };
        assert_eq!(h.header_value(), "max-age=63072000");
    }
}

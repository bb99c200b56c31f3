//! HTTPS settings: loads the certificate chain and private key given by `--tls-cert` and
//! `--tls-key` and builds the one rustls server configuration every worker shares (built before
//! any fork, so `processes` and `hybrid` workers share the session-ticket key and a client
//! resumes on whichever worker accepts it).
use std::path::Path;
use std::sync::Arc;

use rustls::crypto::ring as provider;
use rustls::pki_types::pem::PemObject;
use rustls::pki_types::{CertificateDer, PrivateKeyDer};
use rustls::ServerConfig;

/// The server's TLS configuration, cheap to clone (one `Arc`).
#[derive(Debug, Clone)]
pub struct Tls(pub Arc<ServerConfig>);

impl PartialEq for Tls {
    fn eq(&self, other: &Self) -> bool {
        Arc::ptr_eq(&self.0, &other.0)
    }
}

impl Tls {
    /// Reads `cert` (a PEM chain, leaf first) and `key` (PEM, PKCS#8, PKCS#1 or SEC1) and builds
    /// the configuration: rustls' default protocol versions (TLS 1.3 and 1.2) and cipher suites,
    /// ALPN `http/1.1`, stateless session tickets (TLS 1.3 and 1.2) and rustls' default session
    /// cache (TLS 1.2 session IDs). Refuses a missing or unreadable file, a file with no
    /// certificate or key, and a key that does not match the certificate, naming the file.
    pub fn load(cert: &Path, key: &Path) -> Result<Tls, String> {
        let read = |path: &Path| {
            std::fs::read(path).map_err(|e| format!("cannot read {}: {e}", path.display()))
        };
        let cert_pem = read(cert)?;
        let key_pem = read(key)?;
        let chain: Vec<CertificateDer<'static>> = CertificateDer::pem_slice_iter(&cert_pem)
            .collect::<Result<_, _>>()
            .map_err(|e| format!("{}: not a PEM certificate chain: {e}", cert.display()))?;
        if chain.is_empty() {
            return Err(format!("{}: no certificate in it", cert.display()));
        }
        let key_der = PrivateKeyDer::from_pem_slice(&key_pem)
            .map_err(|e| format!("{}: no usable PEM private key: {e}", key.display()))?;
        Self::from_der(chain, key_der).map_err(|e| {
            format!(
                "{} and {} do not go together: {e}",
                cert.display(),
                key.display()
            )
        })
    }

    /// The configuration for a chain and key already parsed (tests build them in memory).
    pub fn from_der(
        chain: Vec<CertificateDer<'static>>,
        key: PrivateKeyDer<'static>,
    ) -> Result<Tls, rustls::Error> {
        let provider = Arc::new(provider::default_provider());
        let mut config = ServerConfig::builder_with_provider(provider)
            .with_safe_default_protocol_versions()?
            .with_no_client_auth()
            // Checks that the key's public half is the certificate's (a mismatched pair).
            .with_single_cert(chain, key)?;
        // http/1.1 first; http/1.0 too, which this server also speaks (curl --http1.0 offers
        // only it, and a server that offers neither ends the handshake with an alert).
        config.alpn_protocols = vec![b"http/1.1".to_vec(), b"http/1.0".to_vec()];
        // Resumption without server-side state per client: a ticket key that rotates every
        // 6 hours (rustls' default). Two tickets per full TLS 1.3 handshake is rustls' default
        // too (`send_tls13_tickets`).
        config.ticketer = provider::Ticketer::new()?;
        Ok(Tls(Arc::new(config)))
    }
}

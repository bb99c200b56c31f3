//! HTTPS settings: loads the certificate chain and private key given by `--tls-cert` and
//! `--tls-key` and builds the one rustls server configuration every worker shares (built before
//! any fork, so `processes` and `hybrid` workers share the session-ticket keys, [`tickets`],
//! and a client resumes on whichever worker accepts it).
//!
//! Every executor takes its sessions from [`Tls::config`]: the buffered ones through
//! `ServerConnection::new`, an io_uring one through `UnbufferedServerConnection::new`, the
//! same configuration either way.
pub mod tickets;

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
        // rustls' default cipher suites, AES-128-GCM first and chosen by the server's order
        // (the clients here, rustls, OpenSSL, curl, offer AES-256-GCM-SHA384 first). A handshake
        // derives a dozen keys through HKDF, and ring hashes SHA-256 with the CPU's SHA
        // extensions but SHA-384 in plain code: on this machine's EPYC SHA-384 was 14.5% of a
        // resumed handshake's CPU (perf, docs/results/tls-*). AES-128-GCM is TLS 1.3's
        // mandatory suite (RFC 8446 §9.1) and also encrypts file bodies faster (10 rounds, not
        // 14). The set offered is unchanged.
        let mut provider = provider::default_provider();
        provider.cipher_suites.sort_by_key(|s| match s.suite() {
            rustls::CipherSuite::TLS13_AES_128_GCM_SHA256 => 0,
            rustls::CipherSuite::TLS_ECDHE_ECDSA_WITH_AES_128_GCM_SHA256
            | rustls::CipherSuite::TLS_ECDHE_RSA_WITH_AES_128_GCM_SHA256 => 1,
            _ => 2,
        });
        let mut config = ServerConfig::builder_with_provider(Arc::new(provider))
            .with_safe_default_protocol_versions()?
            .with_no_client_auth()
            // Checks that the key's public half is the certificate's (a mismatched pair).
            .with_single_cert(chain, key)?;
        // http/1.1 first; http/1.0 too, which this server also speaks (curl --http1.0 offers
        // only it, and a server that offers neither ends the handshake with an alert).
        config.alpn_protocols = vec![b"http/1.1".to_vec(), b"http/1.0".to_vec()];
        config.ignore_client_order = true;
        // Resumption without server-side state per client, across worker processes: ticket
        // keys that rotate every 6 hours in step in every worker (see `tickets`).
        config.ticketer = Arc::new(tickets::Tickets::new().map_err(rustls::Error::General)?);
        Ok(Tls(Arc::new(config)))
    }

    /// The configuration every session of this server is made from.
    pub fn config(&self) -> &Arc<ServerConfig> {
        &self.0
    }
}

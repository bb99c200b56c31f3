//! The clients' HTTPS: a rustls client configuration from the command line (`--cacert FILE`,
//! `--insecure`, session resumption on or off), the server name a URL's host gives (SNI for a
//! name; none for an address, as RFC 6066 says), and one-line messages for TLS failures.
//!
//! Trust: `--cacert FILE` trusts exactly the certificates in FILE; otherwise the system's CA
//! bundle (`SSL_CERT_FILE`, or the usual Debian, Fedora and Alpine paths), as curl does.
//! `--insecure` accepts any certificate (curl's `-k`) but still checks the handshake's
//! signatures, so the session is encrypted, only not authenticated.
use std::path::{Path, PathBuf};
use std::sync::Arc;

use clap::Args;
use rustls::client::danger::{HandshakeSignatureValid, ServerCertVerified, ServerCertVerifier};
use rustls::client::Resumption;
use rustls::crypto::{ring as provider, CryptoProvider};
use rustls::pki_types::pem::PemObject;
use rustls::pki_types::{CertificateDer, ServerName, UnixTime};
use rustls::{ClientConfig, DigitallySignedStruct, RootCertStore, SignatureScheme};

/// CA bundles tried, in order, when neither `--cacert` nor `SSL_CERT_FILE` names one.
const SYSTEM_BUNDLES: [&str; 3] = [
    "/etc/ssl/certs/ca-certificates.crt",
    "/etc/pki/tls/certs/ca-bundle.crt",
    "/etc/ssl/cert.pem",
];

/// The TLS options `send` and `load` share.
#[derive(Debug, Clone, Default, Args)]
pub struct TlsArgs {
    /// Speak HTTPS (implied by an https:// URL).
    #[arg(long)]
    pub tls: bool,
    /// HTTPS: trust only the certificates in this PEM file (e.g. a self-signed one).
    #[arg(long, value_name = "FILE")]
    pub cacert: Option<PathBuf>,
    /// HTTPS: accept any server certificate (curl's -k); the connection is still encrypted.
    #[arg(short = 'k', long)]
    pub insecure: bool,
}

/// What a TLS connection of the clients needs: the configuration and the server's name.
#[derive(Debug, Clone)]
pub struct ClientTls {
    pub config: Arc<ClientConfig>,
    pub name: ServerName<'static>,
    /// Whether the configuration keeps and offers session tickets.
    pub resume: bool,
}

impl ClientTls {
    /// Builds the configuration for `host` (as in the URL, brackets allowed). `resume`: keep
    /// the tickets servers send (up to 256 servers' worth) and offer them on later connections;
    /// otherwise every handshake is a full one.
    pub fn new(args: &TlsArgs, host: &str, resume: bool) -> Result<ClientTls, String> {
        let bare = host.trim_start_matches('[').trim_end_matches(']');
        let name = ServerName::try_from(bare.to_string())
            .map_err(|_| format!("{host:?} is not a valid TLS server name"))?;
        let provider = Arc::new(provider::default_provider());
        let builder = ClientConfig::builder_with_provider(Arc::clone(&provider))
            .with_safe_default_protocol_versions()
            .map_err(|e| e.to_string())?;
        let mut config = if args.insecure {
            builder
                .dangerous()
                .with_custom_certificate_verifier(Arc::new(AnyCertificate(provider)))
                .with_no_client_auth()
        } else {
            builder
                .with_root_certificates(roots(args.cacert.as_deref())?)
                .with_no_client_auth()
        };
        config.alpn_protocols = vec![b"http/1.1".to_vec()];
        config.resumption = if resume {
            Resumption::in_memory_sessions(256)
        } else {
            Resumption::disabled()
        };
        Ok(ClientTls {
            config: Arc::new(config),
            name,
            resume,
        })
    }

    pub fn session(&self) -> Result<rustls::ClientConnection, rustls::Error> {
        rustls::ClientConnection::new(Arc::clone(&self.config), self.name.clone())
    }
}

/// The trusted roots: the certificates of `cacert`, or of the system bundle.
fn roots(cacert: Option<&Path>) -> Result<RootCertStore, String> {
    let env = std::env::var_os("SSL_CERT_FILE").map(PathBuf::from);
    let file = match (cacert, env) {
        (Some(f), _) => f.to_path_buf(),
        (None, Some(f)) => f,
        (None, None) => SYSTEM_BUNDLES
            .iter()
            .map(PathBuf::from)
            .find(|p| p.is_file())
            .ok_or("no system CA bundle found: give --cacert FILE (or --insecure)")?,
    };
    let pem = std::fs::read(&file).map_err(|e| format!("cannot read {}: {e}", file.display()))?;
    let mut store = RootCertStore::empty();
    for cert in CertificateDer::pem_slice_iter(&pem) {
        let cert = cert.map_err(|e| format!("{}: not a PEM certificate: {e}", file.display()))?;
        // A bundle may hold a certificate rustls cannot use as a root; the others still count.
        let _ = store.add(cert);
    }
    if store.is_empty() {
        return Err(format!("{}: no usable certificate in it", file.display()));
    }
    Ok(store)
}

/// `--insecure`: any certificate, but the handshake signatures are still verified.
#[derive(Debug)]
struct AnyCertificate(Arc<CryptoProvider>);

impl ServerCertVerifier for AnyCertificate {
    fn verify_server_cert(
        &self,
        _end_entity: &CertificateDer<'_>,
        _intermediates: &[CertificateDer<'_>],
        _server_name: &ServerName<'_>,
        _ocsp_response: &[u8],
        _now: UnixTime,
    ) -> Result<ServerCertVerified, rustls::Error> {
        Ok(ServerCertVerified::assertion())
    }

    fn verify_tls12_signature(
        &self,
        message: &[u8],
        cert: &CertificateDer<'_>,
        dss: &DigitallySignedStruct,
    ) -> Result<HandshakeSignatureValid, rustls::Error> {
        let algs = &self.0.signature_verification_algorithms;
        rustls::crypto::verify_tls12_signature(message, cert, dss, algs)
    }

    fn verify_tls13_signature(
        &self,
        message: &[u8],
        cert: &CertificateDer<'_>,
        dss: &DigitallySignedStruct,
    ) -> Result<HandshakeSignatureValid, rustls::Error> {
        let algs = &self.0.signature_verification_algorithms;
        rustls::crypto::verify_tls13_signature(message, cert, dss, algs)
    }

    fn supported_verify_schemes(&self) -> Vec<SignatureScheme> {
        self.0.signature_verification_algorithms.supported_schemes()
    }
}

/// One line for a TLS failure, saying what to do about the usual ones.
pub fn describe(e: &rustls::Error) -> String {
    use rustls::{CertificateError, Error};
    match e {
        Error::InvalidCertificate(CertificateError::UnknownIssuer) => {
            "the server's certificate is not signed by a trusted CA (give its CA with --cacert \
             FILE, or --insecure)"
                .into()
        }
        // A CA of the same name as the real issuer, but another key.
        Error::InvalidCertificate(CertificateError::BadSignature) => {
            "the server's certificate is not signed by the given CA (same name, another key)".into()
        }
        Error::InvalidCertificate(CertificateError::NotValidForName)
        | Error::InvalidCertificate(CertificateError::NotValidForNameContext { .. }) => {
            "the server's certificate is not valid for this host name".into()
        }
        Error::InvalidCertificate(CertificateError::Other(o))
            if o.to_string().contains("CaUsedAsEndEntity") =>
        {
            "the server's certificate is a CA certificate (basicConstraints CA:TRUE), which \
             rustls refuses as a server's own: make it with CA:FALSE (or use --insecure)"
                .into()
        }
        Error::InvalidMessage(_) => {
            "the server did not answer with TLS (is it a plain-HTTP port?)".into()
        }
        other => other.to_string(),
    }
}

/// The rustls error inside an I/O error (rustls' stream types wrap it as InvalidData).
pub fn rustls_error(e: &std::io::Error) -> Option<&rustls::Error> {
    e.get_ref()?.downcast_ref::<rustls::Error>()
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn names_and_options() {
        let insecure = TlsArgs {
            insecure: true,
            ..TlsArgs::default()
        };
        let t = ClientTls::new(&insecure, "localhost", true).unwrap();
        assert!(matches!(t.name, ServerName::DnsName(_)));
        assert!(t.session().is_ok());
        let t = ClientTls::new(&insecure, "[::1]", false).unwrap();
        assert!(matches!(t.name, ServerName::IpAddress(_)));
        let missing = TlsArgs {
            cacert: Some("/nonexistent/ca.pem".into()),
            ..TlsArgs::default()
        };
        let e = ClientTls::new(&missing, "localhost", true).unwrap_err();
        assert!(e.starts_with("cannot read /nonexistent/ca.pem"), "{e}");
        let dir = std::env::temp_dir().join(format!("archserve-cacert-{}", std::process::id()));
        std::fs::write(&dir, "not pem").unwrap();
        let empty = TlsArgs {
            cacert: Some(dir.clone()),
            ..TlsArgs::default()
        };
        let e = ClientTls::new(&empty, "localhost", true).unwrap_err();
        let _ = std::fs::remove_file(&dir);
        assert!(e.contains("no usable certificate"), "{e}");
    }

    #[test]
    fn the_usual_failures_read_as_advice() {
        let unknown = rustls::Error::InvalidCertificate(rustls::CertificateError::UnknownIssuer);
        assert!(describe(&unknown).contains("--cacert"));
        let plain = rustls::Error::InvalidMessage(rustls::InvalidMessage::InvalidContentType);
        assert!(describe(&plain).contains("plain-HTTP"));
    }
}

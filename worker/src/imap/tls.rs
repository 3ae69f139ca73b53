//! TLS for IMAP connections: rustls with the ring provider, the system's roots plus an optional
//! CA file, and an explicit, loudly-warned way to skip verification.

use std::sync::Arc;
use std::time::Duration;

use mailferry_proto::ErrorKind;
use mailferry_proto::task::{Endpoint, Side};
use rustls::client::danger::{HandshakeSignatureValid, ServerCertVerified, ServerCertVerifier};
use rustls::pki_types::{CertificateDer, ServerName, UnixTime};
use rustls::{ClientConfig, DigitallySignedStruct, RootCertStore, SignatureScheme};
use rustls_pki_types::pem::PemObject;
use tokio::net::TcpStream;
use tokio_rustls::TlsConnector;
use tokio_rustls::client::TlsStream;

use super::error::{ImapError, ImapResult};

fn provider() -> Arc<rustls::crypto::CryptoProvider> {
    Arc::new(rustls::crypto::ring::default_provider())
}

/// Builds the client configuration for an endpoint.
pub fn client_config(ep: &Endpoint, side: Side) -> ImapResult<ClientConfig> {
    let err = |msg: String| ImapError::new(ErrorKind::Config, side, msg);
    let builder = ClientConfig::builder_with_provider(provider())
        .with_safe_default_protocol_versions()
        .map_err(|e| err(format!("TLS setup failed: {e}")))?;
    if ep.insecure_skip_verify {
        return Ok(builder
            .dangerous()
            .with_custom_certificate_verifier(Arc::new(NoVerification(provider())))
            .with_no_client_auth());
    }
    let mut roots = RootCertStore::empty();
    let native = rustls_native_certs::load_native_certs();
    for cert in native.certs {
        let _ = roots.add(cert);
    }
    if let Some(path) = &ep.ca_file {
        let certs: Vec<CertificateDer<'static>> = CertificateDer::pem_file_iter(path)
            .map_err(|e| err(format!("cannot read the CA file {path}: {e}")))?
            .collect::<Result<_, _>>()
            .map_err(|e| {
                err(format!(
                    "the CA file {path} is not a PEM certificate file: {e}"
                ))
            })?;
        if certs.is_empty() {
            return Err(err(format!("the CA file {path} holds no certificate")));
        }
        for c in certs {
            roots.add(c).map_err(|e| {
                err(format!(
                    "the CA file {path} holds an unusable certificate: {e}"
                ))
            })?;
        }
    }
    Ok(builder.with_root_certificates(roots).with_no_client_auth())
}

/// Runs the TLS handshake over `tcp`.
pub async fn handshake(
    tcp: TcpStream,
    ep: &Endpoint,
    side: Side,
    timeout: Duration,
) -> ImapResult<TlsStream<TcpStream>> {
    let config = client_config(ep, side)?;
    let name = ServerName::try_from(ep.host.clone()).map_err(|_| {
        ImapError::new(
            ErrorKind::Config,
            side,
            format!(
                "{side} {}: {:?} is not a valid host name for TLS",
                ep.display(),
                ep.host
            ),
        )
    })?;
    let connector = TlsConnector::from(Arc::new(config));
    match tokio::time::timeout(timeout, connector.connect(name, tcp)).await {
        Ok(Ok(s)) => Ok(s),
        Ok(Err(e)) => {
            let text = e.to_string();
            let advice = if text.contains("UnknownIssuer") || text.contains("certificate") {
                format!(
                    "the server's certificate is not trusted ({text}); add its CA with --{}-ca FILE",
                    side_flag(side)
                )
            } else {
                format!(
                    "TLS handshake failed ({text}); check the port and the TLS mode (--{}-tls)",
                    side_flag(side)
                )
            };
            Err(ImapError::new(
                ErrorKind::Connect,
                side,
                format!("{side} {}: {advice}", ep.display()),
            ))
        }
        Err(_) => Err(ImapError::new(
            ErrorKind::Connect,
            side,
            format!(
                "{side} {}: the TLS handshake got no answer; check the port and the TLS mode (--{}-tls)",
                ep.display(),
                side_flag(side)
            ),
        )),
    }
}

fn side_flag(side: Side) -> &'static str {
    match side {
        Side::Source => "src",
        Side::Target => "dst",
    }
}

/// Accepts any certificate; signatures are still checked so the session keys are sound.
#[derive(Debug)]
struct NoVerification(Arc<rustls::crypto::CryptoProvider>);

impl ServerCertVerifier for NoVerification {
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
        rustls::crypto::verify_tls12_signature(
            message,
            cert,
            dss,
            &self.0.signature_verification_algorithms,
        )
    }

    fn verify_tls13_signature(
        &self,
        message: &[u8],
        cert: &CertificateDer<'_>,
        dss: &DigitallySignedStruct,
    ) -> Result<HandshakeSignatureValid, rustls::Error> {
        rustls::crypto::verify_tls13_signature(
            message,
            cert,
            dss,
            &self.0.signature_verification_algorithms,
        )
    }

    fn supported_verify_schemes(&self) -> Vec<SignatureScheme> {
        self.0.signature_verification_algorithms.supported_schemes()
    }
}

//! TLS for IMAP connections: rustls with the ring provider, the system's roots plus an optional
//! CA bundle (a local file or PEM text), an explicit, loudly-warned way to skip verification,
//! and handshake failures told as advice that fits the cause (a wrong name is not a missing CA).

use std::sync::Arc;
use std::time::Duration;

use mailferry_proto::ErrorKind;
use mailferry_proto::task::{CaFile, Endpoint, Side};
use rustls::client::danger::{HandshakeSignatureValid, ServerCertVerified, ServerCertVerifier};
use rustls::pki_types::{CertificateDer, ServerName, UnixTime};
use rustls::{
    CertificateError, ClientConfig, DigitallySignedStruct, RootCertStore, SignatureScheme,
};
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
    match &ep.ca_file {
        None => {}
        Some(CaFile::Path(path)) => {
            let certs: Vec<CertificateDer<'static>> = CertificateDer::pem_file_iter(path)
                .map_err(|e| err(format!("cannot read the CA file {}: {e}", shown(path))))?
                .collect::<Result<_, _>>()
                .map_err(|e| {
                    err(format!(
                        "the CA file {} is not a PEM certificate file: {e}",
                        shown(path)
                    ))
                })?;
            add_all(
                &mut roots,
                certs,
                &format!("the CA file {}", shown(path)),
                err,
            )?;
        }
        Some(CaFile::Pem(pem)) => {
            // Checked at the API's edge; a failure here means a store written by another version.
            let certs: Vec<CertificateDer<'static>> =
                CertificateDer::pem_slice_iter(pem.as_bytes())
                    .collect::<Result<_, _>>()
                    .map_err(|e| {
                        err(format!(
                            "the CA bundle sent with the endpoint is not PEM: {e}"
                        ))
                    })?;
            add_all(
                &mut roots,
                certs,
                "the CA bundle sent with the endpoint",
                err,
            )?;
        }
    }
    Ok(builder.with_root_certificates(roots).with_no_client_auth())
}

/// Adds every certificate of a CA bundle (`what` names it in errors) to `roots`.
fn add_all(
    roots: &mut RootCertStore,
    certs: Vec<CertificateDer<'static>>,
    what: &str,
    err: impl Fn(String) -> ImapError,
) -> ImapResult<()> {
    if certs.is_empty() {
        return Err(err(format!("{what} holds no certificate")));
    }
    for c in certs {
        roots
            .add(c)
            .map_err(|e| err(format!("{what} holds an unusable certificate: {e}")))?;
    }
    Ok(())
}

/// A path or name for a message: control characters escaped, so a hostile name cannot forge
/// lines in a terminal or log.
fn shown(s: &str) -> String {
    s.chars().flat_map(char::escape_default).collect()
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
        Ok(Err(e)) => Err(ImapError::new(
            ErrorKind::Connect,
            side,
            format!("{side} {}: {}", ep.display(), advice(&e, ep, side)),
        )),
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

/// What a failed handshake means and what to do about it. A certificate for other names is not
/// cured by trusting a CA, so only an unknown issuer advises `--src-ca`/`--dst-ca`.
fn advice(e: &std::io::Error, ep: &Endpoint, side: Side) -> String {
    let flag = side_flag(side);
    let cert = match e.get_ref().and_then(|i| i.downcast_ref::<rustls::Error>()) {
        Some(rustls::Error::InvalidCertificate(c)) => c,
        _ => {
            return format!(
                "TLS handshake failed ({}); check the port and the TLS mode (--{flag}-tls)",
                shown(&e.to_string())
            );
        }
    };
    let host = shown(&ep.host);
    match cert {
        CertificateError::NotValidForNameContext { presented, .. } => {
            let names = names_text(presented);
            format!(
                "the server's certificate is not valid for {host}: it is for {names}; connect by a name the certificate holds (in --{flag}), or ask the server's operator for a certificate naming {host}"
            )
        }
        CertificateError::NotValidForName => format!(
            "the server's certificate is not valid for {host} (it is for other names); connect by a name the certificate holds (in --{flag}), or ask the server's operator for a certificate naming {host}"
        ),
        CertificateError::UnknownIssuer if ep.ca_file.is_some() => format!(
            "the server's certificate is not signed by a trusted CA, nor by the CA given with --{flag}-ca; give the CA that signed it with --{flag}-ca FILE"
        ),
        CertificateError::UnknownIssuer => format!(
            "the server's certificate is not signed by a trusted CA; add its CA with --{flag}-ca FILE"
        ),
        CertificateError::Expired | CertificateError::ExpiredContext { .. } => format!(
            "the server's certificate has expired ({}); ask the server's operator to renew it",
            shown(&cert.to_string())
        ),
        other => format!(
            "the server's certificate is not accepted ({}); check that --{flag} names the right server",
            shown(&other.to_string())
        ),
    }
}

/// At most a few of the certificate's names (they come from the server), escaped.
fn names_text(presented: &[String]) -> String {
    const SHOWN: usize = 8;
    if presented.is_empty() {
        return "no name at all (no subjectAltName)".into();
    }
    let mut names: Vec<String> = presented
        .iter()
        .take(SHOWN)
        .map(|n| shown(&n.chars().take(255).collect::<String>()))
        .collect();
    if presented.len() > SHOWN {
        names.push(format!("and {} more", presented.len() - SHOWN));
    }
    names.join(", ")
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

#[cfg(test)]
mod tests {
    use mailferry_proto::task::TlsMode;

    use super::*;

    fn endpoint(ca: Option<CaFile>) -> Endpoint {
        Endpoint {
            host: "127.0.0.2".into(),
            port: 993,
            user: "alice".into(),
            tls: TlsMode::Implicit,
            ca_file: ca,
            insecure_skip_verify: false,
            auth_mechanism: None,
        }
    }

    fn failed(c: CertificateError) -> std::io::Error {
        std::io::Error::new(
            std::io::ErrorKind::InvalidData,
            rustls::Error::InvalidCertificate(c),
        )
    }

    #[test]
    fn a_wrong_name_never_advises_a_ca_and_lists_the_names() {
        let with_ca = endpoint(Some(CaFile::Path("/tmp/ca.pem".into())));
        let wrong_name = CertificateError::NotValidForNameContext {
            expected: ServerName::try_from("127.0.0.2").expect("name"),
            presented: vec!["DNS:localhost".into(), "IP:127.0.0.1".into()],
        };
        for (c, ep) in [
            (wrong_name, &with_ca),
            (CertificateError::NotValidForName, &endpoint(None)),
        ] {
            let text = advice(&failed(c), ep, Side::Source);
            assert!(!text.contains("--src-ca"), "{text}");
            assert!(text.contains("not valid for 127.0.0.2"), "{text}");
            assert!(
                text.contains("connect by a name the certificate holds"),
                "{text}"
            );
        }
        let wrong_name = CertificateError::NotValidForNameContext {
            expected: ServerName::try_from("127.0.0.2").expect("name"),
            presented: vec!["DNS:localhost".into(), "IP:127.0.0.1".into()],
        };
        let text = advice(&failed(wrong_name), &with_ca, Side::Target);
        assert!(
            text.contains("it is for DNS:localhost, IP:127.0.0.1;"),
            "{text}"
        );
    }

    #[test]
    fn an_unknown_issuer_advises_the_ca_flag() {
        let text = advice(
            &failed(CertificateError::UnknownIssuer),
            &endpoint(None),
            Side::Target,
        );
        assert!(text.contains("add its CA with --dst-ca FILE"), "{text}");
        let with_ca = endpoint(Some(CaFile::Pem(String::new())));
        let text = advice(
            &failed(CertificateError::UnknownIssuer),
            &with_ca,
            Side::Source,
        );
        assert!(text.contains("nor by the CA given with --src-ca"), "{text}");
    }

    #[test]
    fn server_given_names_are_bounded_and_escaped() {
        let many: Vec<String> = (0..20).map(|i| format!("n{i}\r\n.example")).collect();
        let text = names_text(&many);
        assert!(!text.contains('\r') && !text.contains('\n'), "{text}");
        assert!(text.ends_with("and 12 more"), "{text}");
        assert_eq!(names_text(&[]), "no name at all (no subjectAltName)");
    }

    #[test]
    fn inline_pem_that_is_not_a_certificate_is_a_config_error() {
        let ep = endpoint(Some(CaFile::Pem("not pem at all".into())));
        let e = client_config(&ep, Side::Source).expect_err("no certificate");
        assert_eq!(e.kind, ErrorKind::Config);
    }
}

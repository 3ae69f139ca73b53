//! Extra trusted CA bundles named by API clients: a file of the operator's CA directory
//! (`--ca-dir`) or PEM text sent inline. Both become [`CaFile::Pem`] here, so no worker ever
//! opens a path an API client chose.
//!
//! A name is refused, with one text whatever the cause (outside the directory, a `..`, a
//! symbolic link leading out, missing, unreadable, too large, not PEM), so the answers cannot be
//! used to probe which files exist on the coordinator or what they hold. The cause goes to the
//! coordinator's own log for its operator.

use std::io::Read;
use std::path::{Component, Path, PathBuf};

use mailferry_proto::task::CaFile;
use rustls_pki_types::CertificateDer;
use rustls_pki_types::pem::PemObject;

/// The largest CA bundle taken, inline or from the directory: a few dozen certificates.
pub const MAX_CA_BYTES: usize = 64 * 1024;

/// The one answer to a `ca_file` the coordinator will not use.
pub const REFUSED: &str = "refused: name a PEM CA bundle in the coordinator's CA directory (--ca-dir) by its file name or a relative path inside it, or send the certificates in ca_pem";

/// The operator's CA directory (resolved, symbolic links included), or none: then every
/// `ca_file` is refused and only inline PEM is taken.
#[derive(Debug, Clone, Default)]
pub struct CaDir(Option<PathBuf>);

impl CaDir {
    /// No directory: `ca_file` is always refused.
    pub fn none() -> CaDir {
        CaDir(None)
    }

    /// The directory `dir`, which must exist. Errors are for the operator starting the
    /// coordinator.
    pub fn open(dir: &Path) -> Result<CaDir, String> {
        let real = dir
            .canonicalize()
            .map_err(|e| format!("--ca-dir {}: {e}", dir.display()))?;
        if !real.is_dir() {
            return Err(format!("--ca-dir {}: not a directory", dir.display()));
        }
        Ok(CaDir(Some(real)))
    }

    /// The bundle `name` names, as PEM text; `Err` carries the cause, for the log only.
    pub fn resolve(&self, name: &str) -> Result<CaFile, String> {
        let dir = self.0.as_ref().ok_or("no --ca-dir is configured")?;
        if name.chars().any(char::is_control) {
            return Err("the name holds a control character".into());
        }
        let path = Path::new(name);
        if path.components().any(|c| c == Component::ParentDir) {
            return Err("the name holds '..'".into());
        }
        let real = dir
            .join(path)
            .canonicalize()
            .map_err(|e| format!("cannot resolve it: {e}"))?;
        if !real.starts_with(dir) || real == *dir {
            return Err(format!(
                "it resolves to {}, outside the directory",
                real.display()
            ));
        }
        let file = std::fs::File::open(&real).map_err(|e| format!("cannot open it: {e}"))?;
        let meta = file
            .metadata()
            .map_err(|e| format!("cannot stat it: {e}"))?;
        if !meta.is_file() {
            return Err("not a regular file".into());
        }
        let mut text = String::new();
        file.take(MAX_CA_BYTES as u64 + 1)
            .read_to_string(&mut text)
            .map_err(|e| format!("cannot read it as text: {e}"))?;
        bundle(&text).map(|()| CaFile::Pem(text))
    }
}

/// Inline PEM from the wire; `Err` says what is wrong (the client sent the text, so nothing
/// about the coordinator's files can leak).
pub fn inline(pem: &str) -> Result<CaFile, String> {
    bundle(pem).map(|()| CaFile::Pem(pem.to_owned()))
}

/// Whether `text` is a CA bundle a worker can use: at most [`MAX_CA_BYTES`], one or more PEM
/// certificates, each one a trust anchor.
fn bundle(text: &str) -> Result<(), String> {
    if text.len() > MAX_CA_BYTES {
        return Err(format!("larger than {} KiB", MAX_CA_BYTES / 1024));
    }
    let certs: Vec<CertificateDer<'static>> = CertificateDer::pem_slice_iter(text.as_bytes())
        .collect::<Result<_, _>>()
        .map_err(|e| format!("not PEM: {e}"))?;
    if certs.is_empty() {
        return Err("holds no PEM certificate".into());
    }
    let mut roots = rustls::RootCertStore::empty();
    for (i, c) in certs.into_iter().enumerate() {
        roots
            .add(c)
            .map_err(|e| format!("certificate {} is not usable as a CA: {e}", i + 1))?;
    }
    Ok(())
}

#[cfg(test)]
mod tests {
    use super::*;

    /// A self-signed CA certificate (ECDSA P-256, valid until 2126), made once with openssl.
    const CA: &str = "-----BEGIN CERTIFICATE-----
MIIBmTCCAT+gAwIBAgIUJPIontjQuS8MvVrNVenNq4KBfhwwCgYIKoZIzj0EAwIw
ITEfMB0GA1UEAwwWbWFpbGZlcnJ5IHVuaXQgdGVzdCBDQTAgFw0yNjEyMDQyMzMz
NTNaGA8yMTI2MTExMDIzMzM1M1owITEfMB0GA1UEAwwWbWFpbGZlcnJ5IHVuaXQg
dGVzdCBDQTBZMBMGByqGSM49AgEGCCqGSM49AwEHA0IABB7EU4WIrC0aJyxbExrT
OKmQiyT6PSWTiChiCtXWhD+9gf5uE8nkFqV4L9XaIGTLK1qa17+U7CEEjdfDbivB
9d6jUzBRMB0GA1UdDgQWBBTpkz+NYOnJ9FwSyuvE6DpayrS+vjAfBgNVHSMEGDAW
gBTpkz+NYOnJ9FwSyuvE6DpayrS+vjAPBgNVHRMBAf8EBTADAQH/MAoGCCqGSM49
BAMCA0gAMEUCIHiIZhPVTYxQ48fy1xIz+ZikSCVu3f0gEXT0EYB4g46xAiEA4hJ3
0ZUy1K2Njne7tZvOyZUypT/68E+9u2AnoMVTuLc=
-----END CERTIFICATE-----
";

    #[test]
    fn names_outside_the_directory_are_refused_before_any_read() {
        let dir = tempfile::tempdir().expect("dir");
        let ca = CaDir::open(dir.path()).expect("open");
        for name in ["/etc/passwd", "../x", "a/../../etc/passwd", "a\nb", ""] {
            assert!(ca.resolve(name).is_err(), "{name:?}");
        }
        assert!(CaDir::none().resolve("ca.pem").is_err());
    }

    #[test]
    fn a_bundle_in_the_directory_and_an_inline_one_become_pem() {
        let dir = tempfile::tempdir().expect("dir");
        std::fs::create_dir(dir.path().join("sub")).expect("mkdir");
        std::fs::write(dir.path().join("sub/ca.pem"), CA).expect("write");
        let ca = CaDir::open(dir.path()).expect("open");
        assert_eq!(ca.resolve("sub/ca.pem"), Ok(CaFile::Pem(CA.into())));
        let absolute = dir.path().join("sub/ca.pem");
        assert!(
            ca.resolve(&absolute.to_string_lossy()).is_ok(),
            "inside, absolute"
        );
        assert_eq!(inline(CA), Ok(CaFile::Pem(CA.into())));
    }

    #[test]
    fn symbolic_links_may_not_lead_out() {
        let dir = tempfile::tempdir().expect("dir");
        let outside = tempfile::tempdir().expect("outside");
        std::fs::write(outside.path().join("ca.pem"), CA).expect("write");
        std::os::unix::fs::symlink(outside.path().join("ca.pem"), dir.path().join("link.pem"))
            .expect("link");
        let ca = CaDir::open(dir.path()).expect("open");
        let why = ca.resolve("link.pem").expect_err("outside");
        assert!(why.contains("outside"), "{why}");
    }

    #[test]
    fn bundles_are_bounded_and_must_hold_certificates() {
        assert!(inline("hello").is_err());
        assert!(
            inline(&"x".repeat(MAX_CA_BYTES + 1))
                .unwrap_err()
                .contains("KiB")
        );
        assert!(inline("-----BEGIN CERTIFICATE-----\nAAAA\n-----END CERTIFICATE-----\n").is_err());
    }
}

//! A private CA and a server certificate for `localhost` and `127.0.0.1`, made with `openssl`
//! (as `scripts/test-servers` makes the IMAP servers'), for a coordinator serving gRPC over TLS.

use std::path::{Path, PathBuf};
use std::process::Command;

use anyhow::{Context, Result, bail};

/// PEM files of a server certificate, its key, and the CA that signed it.
#[derive(Debug, Clone)]
pub struct TlsFiles {
    /// The server certificate (`coordinator --tls-cert`).
    pub cert: PathBuf,
    /// Its private key, PKCS#8 (`coordinator --tls-key`).
    pub key: PathBuf,
    /// The CA that signed it (what `ctl --ca` trusts); not in any system store.
    pub ca: PathBuf,
}

impl TlsFiles {
    /// A fresh CA (`CN=<name> CA`) and a certificate it signed for `localhost` and `127.0.0.1`,
    /// written into `dir`. ECDSA P-256, so it takes milliseconds.
    pub fn generate(dir: &Path, name: &str) -> Result<TlsFiles> {
        let path = |f: &str| dir.join(format!("{name}-{f}"));
        let (ca_key, ca, key, csr, ext, cert) = (
            path("ca.key"),
            path("ca.pem"),
            path("server.key"),
            path("server.csr"),
            path("server.ext"),
            path("server.pem"),
        );
        let ec = ["-newkey", "ec", "-pkeyopt", "ec_paramgen_curve:prime256v1"];
        openssl(
            &["req", "-x509", "-nodes", "-days", "30", "-sha256"],
            &ec,
            &[
                "-keyout".as_ref(),
                ca_key.as_os_str(),
                "-out".as_ref(),
                ca.as_os_str(),
                "-subj".as_ref(),
                format!("/CN={name} CA").as_ref(),
                "-addext".as_ref(),
                "basicConstraints=critical,CA:TRUE".as_ref(),
                "-addext".as_ref(),
                "keyUsage=critical,keyCertSign,cRLSign".as_ref(),
            ],
        )?;
        openssl(
            &["req", "-nodes", "-sha256", "-subj", "/CN=localhost"],
            &ec,
            &[
                "-keyout".as_ref(),
                key.as_os_str(),
                "-out".as_ref(),
                csr.as_os_str(),
            ],
        )?;
        std::fs::write(
            &ext,
            "basicConstraints=critical,CA:FALSE\n\
             keyUsage=critical,digitalSignature\n\
             extendedKeyUsage=serverAuth\n\
             subjectAltName=DNS:localhost,IP:127.0.0.1\n",
        )
        .with_context(|| format!("writing {}", ext.display()))?;
        openssl(
            &["x509", "-req", "-days", "30", "-sha256", "-CAcreateserial"],
            &[],
            &[
                "-in".as_ref(),
                csr.as_os_str(),
                "-CA".as_ref(),
                ca.as_os_str(),
                "-CAkey".as_ref(),
                ca_key.as_os_str(),
                "-extfile".as_ref(),
                ext.as_os_str(),
                "-out".as_ref(),
                cert.as_os_str(),
            ],
        )?;
        Ok(TlsFiles { cert, key, ca })
    }
}

fn openssl(fixed: &[&str], more: &[&str], paths: &[&std::ffi::OsStr]) -> Result<()> {
    let out = Command::new("openssl")
        .args(fixed)
        .args(more)
        .args(paths)
        .output()
        .context("running openssl (is it installed?)")?;
    if !out.status.success() {
        bail!(
            "openssl {} failed ({}): {}",
            fixed.join(" "),
            out.status,
            String::from_utf8_lossy(&out.stderr)
        );
    }
    Ok(())
}

//! Certificates made by the test itself, with the `openssl` command-line tool, in their own
//! temp dir: for the Kafka TLS listeners (`kafka_secure`) and for MariaDB with TLS
//! (`MariaDb::start_tls`).
//!
//! [`Certs::generate`] makes a CA (`ca.pem`, what clients trust), a server key and certificate
//! signed by it (subjectAltName `IP:127.0.0.1`, `DNS:localhost`, valid two days), the same as
//! a PEM keystore (key then certificate, Kafka's `ssl.keystore.type=PEM`), a client key and
//! certificate signed by the CA (for servers that require one), and a second CA that signed
//! nothing ([`Certs::wrong_ca`]) for "wrong CA" cases. [`Certs::issue_server`] signs more
//! server certificates (another host name).

use std::path::{Path, PathBuf};
use std::process::Command;

use anyhow::{bail, Context, Result};
use tempfile::TempDir;

use crate::kafka_setup::temp_dir;

/// Subject alternative names of the default server certificate.
pub const SERVER_SAN: &str = "IP:127.0.0.1,DNS:localhost";

/// A certificate and its private key (PEM files).
#[derive(Debug, Clone)]
pub struct KeyPair {
    pub cert: PathBuf,
    /// Unencrypted PKCS#8 (`openssl req -nodes`).
    pub key: PathBuf,
}

/// The test's certificates (PEM files).
pub struct Certs {
    /// The CA that signed the server and client certificates.
    pub ca: PathBuf,
    /// A CA that signed nothing: a client trusting only it must refuse the server.
    pub wrong_ca: PathBuf,
    /// The server's certificate for [`SERVER_SAN`].
    pub server: KeyPair,
    /// The server's private key followed by its certificate (a PEM keystore).
    pub keystore: PathBuf,
    /// A client certificate signed by the CA (CN `fleetsync-client`).
    pub client: KeyPair,
    dir: TempDir,
}

impl Certs {
    /// Makes the CA, the server and client certificates and the unrelated CA.
    pub fn generate() -> Result<Certs> {
        let dir = temp_dir("fleetsync-certs-")?;
        let d = dir.path();
        for (name, cn) in [
            ("ca", "fleetsync-test-ca"),
            ("wrong-ca", "fleetsync-wrong-ca"),
        ] {
            openssl(
                d,
                &[
                    "req",
                    "-x509",
                    "-newkey",
                    "rsa:2048",
                    "-nodes",
                    "-days",
                    "2",
                    "-subj",
                    &format!("/CN={cn}"),
                    "-keyout",
                    &format!("{name}.key"),
                    "-out",
                    &format!("{name}.pem"),
                ],
            )?;
        }
        let server = issue(
            d,
            "server",
            "127.0.0.1",
            &format!("subjectAltName={SERVER_SAN}"),
        )?;
        let client = issue(
            d,
            "client",
            "fleetsync-client",
            "extendedKeyUsage=clientAuth",
        )?;
        // Kafka's PEM keystore takes the unencrypted PKCS#8 key without `ssl.key.password`.
        let key = std::fs::read_to_string(&server.key)?;
        let crt = std::fs::read_to_string(&server.cert)?;
        let keystore = d.join("server-keystore.pem");
        std::fs::write(&keystore, format!("{key}{crt}"))?;
        Ok(Certs {
            ca: d.join("ca.pem"),
            wrong_ca: d.join("wrong-ca.pem"),
            server,
            keystore,
            client,
            dir,
        })
    }

    /// Signs another server certificate with the CA, for the subjectAltNames `san` (e.g.
    /// `DNS:db.invalid`); files `NAME.crt` and `NAME.key`.
    pub fn issue_server(&self, name: &str, san: &str) -> Result<KeyPair> {
        issue(
            self.dir.path(),
            name,
            name,
            &format!("subjectAltName={san}"),
        )
    }
}

/// A key and a certificate signed by `ca.pem`, with the X.509 v3 extension `ext` (OpenSSL's
/// `-extfile` syntax).
fn issue(d: &Path, name: &str, cn: &str, ext: &str) -> Result<KeyPair> {
    let (key, csr, crt) = (
        format!("{name}.key"),
        format!("{name}.csr"),
        format!("{name}.crt"),
    );
    openssl(
        d,
        &[
            "req",
            "-newkey",
            "rsa:2048",
            "-nodes",
            "-subj",
            &format!("/CN={cn}"),
            "-keyout",
            &key,
            "-out",
            &csr,
        ],
    )?;
    let ext_file = format!("{name}.ext");
    std::fs::write(d.join(&ext_file), format!("{ext}\n"))?;
    openssl(
        d,
        &[
            "x509",
            "-req",
            "-in",
            &csr,
            "-CA",
            "ca.pem",
            "-CAkey",
            "ca.key",
            "-CAcreateserial",
            "-days",
            "2",
            "-extfile",
            &ext_file,
            "-out",
            &crt,
        ],
    )?;
    Ok(KeyPair {
        cert: d.join(crt),
        key: d.join(key),
    })
}

fn openssl(dir: &Path, args: &[&str]) -> Result<()> {
    let out = Command::new("openssl")
        .args(args)
        .current_dir(dir)
        .output()
        .context("running openssl (is the openssl package installed?)")?;
    if !out.status.success() {
        bail!(
            "openssl {} failed:\n{}",
            args.join(" "),
            String::from_utf8_lossy(&out.stderr)
        );
    }
    Ok(())
}

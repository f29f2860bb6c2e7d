//! TLS failures of a connection to a server, told apart from lost connections: a certificate
//! that does not verify, a server without TLS, a key the server refuses. Retrying cannot fix
//! them (an operator must change `tls`, `tls_ca` or the server's certificate), so they are
//! never classified as transient, and their message names the TLS setting to look at.
//!
//! mysql_async reports a failed handshake as an I/O error carrying rustls's error, and a
//! failure to build the TLS client (a CA or key file it cannot read) as its own TLS error.

use mysql_async::{DriverError, Error, IoError};

/// The one-line explanation of a TLS failure, or `None` when `e` is not one.
pub fn tls_failure(e: &Error) -> Option<String> {
    match e {
        Error::Driver(DriverError::NoClientSslFlagFromServer) => Some(
            "TLS: the server offers no TLS but the tls setting requires it (give the server \
             ssl_cert and ssl_key, or set tls = \"disabled\" or \"preferred\")"
                .to_string(),
        ),
        Error::Io(IoError::Tls(t)) => Some(format!(
            "TLS: cannot set up the TLS client: {t} (check tls_ca, tls_cert and tls_key)"
        )),
        Error::Io(IoError::Io(io)) => {
            let rustls_error = io.get_ref()?.downcast_ref::<rustls::Error>()?;
            Some(handshake_message(rustls_error))
        }
        _ => None,
    }
}

fn handshake_message(e: &rustls::Error) -> String {
    use rustls::CertificateError as C;
    match e {
        rustls::Error::InvalidCertificate(
            C::NotValidForName | C::NotValidForNameContext { .. },
        ) => {
            format!(
                "TLS: the server's certificate does not name the host of its url: {e} (put a \
                 name the certificate holds in the url, or use tls = \"verify_ca\")"
            )
        }
        rustls::Error::InvalidCertificate(_) => format!(
            "TLS: the server's certificate is not trusted: {e} (is tls_ca the CA that signed \
             the server's certificate?)"
        ),
        rustls::Error::AlertReceived(_) => format!(
            "TLS: the server refused the handshake: {e} (does it require a client certificate \
             (tls_cert, tls_key) signed by a CA it trusts?)"
        ),
        _ => format!("TLS: handshake failed: {e}"),
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn io(e: rustls::Error) -> Error {
        Error::Io(IoError::Io(std::io::Error::new(
            std::io::ErrorKind::InvalidData,
            e,
        )))
    }

    #[test]
    fn tls_failures_are_recognised_and_explained() {
        let unknown = tls_failure(&io(rustls::Error::InvalidCertificate(
            rustls::CertificateError::UnknownIssuer,
        )))
        .expect("a TLS failure");
        assert!(
            unknown.contains("not trusted") && unknown.contains("tls_ca"),
            "{unknown}"
        );
        let name = tls_failure(&io(rustls::Error::InvalidCertificate(
            rustls::CertificateError::NotValidForName,
        )))
        .expect("a TLS failure");
        assert!(name.contains("verify_ca"), "{name}");
        let plain = tls_failure(&Error::Driver(DriverError::NoClientSslFlagFromServer))
            .expect("a TLS failure");
        assert!(plain.contains("offers no TLS"), "{plain}");
        let refused = std::io::Error::from(std::io::ErrorKind::ConnectionRefused);
        assert!(tls_failure(&Error::Io(IoError::Io(refused))).is_none());
        assert!(tls_failure(&Error::Driver(DriverError::ConnectionClosed)).is_none());
    }
}

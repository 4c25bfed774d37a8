//! Trusting the CA file of a sandbox running elsewhere (`rampnow-sandbox --cert-out ca.pem`).

use std::io::{self, Read as _};
use std::path::Path;
use std::sync::Arc;

use rustls::pki_types::pem::{self, PemObject as _};
use rustls::pki_types::CertificateDer;

/// The most a CA file is read: a sandbox's CA certificate is under 1 KiB, a system bundle of
/// every public CA about 250 KiB.
const MAX_CA_FILE_BYTES: u64 = 4 * 1024 * 1024;

/// A rustls client configuration that trusts the certificates in the PEM file at `path`, and
/// nothing else: the one-call way to reach a sandbox started as a program with
/// `rampnow-sandbox --cert-out ca.pem` (in the same process, use
/// [`Sandbox::rustls_client_config`](crate::Sandbox::rustls_client_config)).
///
/// It is built with rustls' default provider, aws-lc-rs (the sandbox's only one), so it works
/// whatever provider the process has installed. Use it with
/// `hyper_rustls::HttpsConnectorBuilder::with_tls_config`, `tokio_rustls::TlsConnector`, or
/// reqwest's `ClientBuilder::tls_backend_preconfigured` (reqwest with its `rustls` feature).
/// With reqwest you can also skip this function:
/// `.tls_certs_only(reqwest::Certificate::from_pem_bundle(&std::fs::read("ca.pem")?)?)`.
///
/// The sandbox makes a new CA at every start: call this again after restarting it.
///
/// # Errors
///
/// An [`io::Error`] naming the file and saying what to do: the file's own error when it cannot
/// be read (kind `NotFound` when it does not exist: start the sandbox with `--cert-out` at that
/// path); kind `InvalidData` when it is larger than 4 MiB, is not PEM, holds no `CERTIFICATE`
/// block (a key alone, say), or holds a certificate rustls cannot use as a root.
///
/// # Example
///
/// ```no_run
/// use hyper_util::client::legacy::Client;
/// use hyper_util::rt::TokioExecutor;
/// use rampnow_auth::{Credentials, RampnowAuthLayer, SignedBody};
/// use tower::Layer;
///
/// # fn main() -> Result<(), Box<dyn std::error::Error>> {
/// // The file a `rampnow-sandbox --cert-out ca.pem` wrote.
/// let tls = rampnow_sandbox::client_config_from_ca_file("ca.pem")?;
/// let https = hyper_rustls::HttpsConnectorBuilder::new()
///     .with_tls_config(tls)
///     .https_only()
///     .enable_http1()
///     .build();
/// let client = RampnowAuthLayer::new(Credentials::from_env()?)
///     .layer(Client::builder(TokioExecutor::new()).build::<_, SignedBody>(https));
/// # let _ = client; Ok(()) }
/// ```
pub fn client_config_from_ca_file(path: impl AsRef<Path>) -> io::Result<rustls::ClientConfig> {
    let path = path.as_ref();
    let shown = path.display();
    let file = std::fs::File::open(path).map_err(|error| {
        let hint = if error.kind() == io::ErrorKind::NotFound {
            "; start the sandbox with `rampnow-sandbox --cert-out PATH` and give the same PATH \
             here (without it, the sandbox writes rampnow-sandbox-ca.pem in the temporary \
             directory and prints where)"
        } else {
            ""
        };
        io::Error::new(
            error.kind(),
            format!("cannot open the CA file {shown}: {error}{hint}"),
        )
    })?;
    let mut bytes = Vec::new();
    file.take(MAX_CA_FILE_BYTES + 1)
        .read_to_end(&mut bytes)
        .map_err(|error| {
            io::Error::new(
                error.kind(),
                format!("cannot read the CA file {shown}: {error}"),
            )
        })?;
    let invalid = |what: String| io::Error::new(io::ErrorKind::InvalidData, what);
    if bytes.len() as u64 > MAX_CA_FILE_BYTES {
        return Err(invalid(format!(
            "the CA file {shown} is larger than {MAX_CA_FILE_BYTES} bytes, far more than a CA \
             certificate; give the file written by `rampnow-sandbox --cert-out`"
        )));
    }
    let mut roots = rustls::RootCertStore::empty();
    for (index, item) in CertificateDer::pem_slice_iter(&bytes).enumerate() {
        let certificate = item.map_err(|error| {
            let what = match error {
                pem::Error::NoItemsFound => return not_pem(&shown.to_string(), &bytes),
                other => other,
            };
            invalid(format!(
                "the CA file {shown} is not valid PEM ({what}); give the file written by \
                 `rampnow-sandbox --cert-out`, unchanged"
            ))
        })?;
        roots.add(certificate).map_err(|error| {
            invalid(format!(
                "certificate {} in the CA file {shown} cannot be trusted as a root ({error}); \
                 give the file written by `rampnow-sandbox --cert-out`, unchanged",
                index + 1
            ))
        })?;
    }
    if roots.is_empty() {
        return Err(not_pem(&shown.to_string(), &bytes));
    }
    let provider = Arc::new(rustls::crypto::aws_lc_rs::default_provider());
    let config = rustls::ClientConfig::builder_with_provider(provider)
        .with_safe_default_protocol_versions()
        .map_err(|error| {
            io::Error::other(format!(
                "rustls refused its own default protocol versions ({error}); this is a bug in \
                 rampnow-sandbox, please report it"
            ))
        })?
        .with_root_certificates(roots)
        .with_no_client_auth();
    Ok(config)
}

/// The error for a file with no certificate in it, saying what it looks like instead.
fn not_pem(shown: &str, bytes: &[u8]) -> io::Error {
    let what = if bytes.is_empty() {
        "is empty".to_owned()
    } else if bytes.windows(11).any(|w| w == b"-----BEGIN ") {
        "holds PEM but no CERTIFICATE block (a key or a request is not a CA certificate)".to_owned()
    } else if bytes.first() == Some(&0x30) {
        "looks like DER (binary), not PEM; convert it with \
         `openssl x509 -inform der -in FILE -out ca.pem`, or use the PEM file the sandbox wrote"
            .to_owned()
    } else {
        "is not PEM (no -----BEGIN CERTIFICATE----- line)".to_owned()
    };
    io::Error::new(
        io::ErrorKind::InvalidData,
        format!(
            "the CA file {shown} {what}; give the file written by `rampnow-sandbox --cert-out`"
        ),
    )
}

#[cfg(test)]
mod tests {
    use super::*;

    fn write(name: &str, contents: &[u8]) -> std::path::PathBuf {
        let dir = std::env::temp_dir().join(format!("rampnow-ca-test-{}", std::process::id()));
        std::fs::create_dir_all(&dir).unwrap();
        let path = dir.join(name);
        std::fs::write(&path, contents).unwrap();
        path
    }

    fn error(path: &Path) -> io::Error {
        client_config_from_ca_file(path).expect_err("refused")
    }

    #[test]
    fn each_bad_file_says_what_is_wrong() {
        let missing = error(Path::new("/nonexistent/ca.pem"));
        assert_eq!(missing.kind(), io::ErrorKind::NotFound);
        assert!(missing.to_string().contains("--cert-out"), "{missing}");
        assert!(
            missing.to_string().contains("/nonexistent/ca.pem"),
            "{missing}"
        );

        for (name, contents, expected) in [
            ("empty.pem", &b""[..], "is empty"),
            ("text.pem", b"hello\n", "is not PEM"),
            ("der.pem", &[0x30, 0x82, 0x01, 0x0a, 0x02], "looks like DER"),
            (
                "key.pem",
                b"-----BEGIN PRIVATE KEY-----\nAAAA\n-----END PRIVATE KEY-----\n",
                "no CERTIFICATE block",
            ),
            (
                "broken.pem",
                b"-----BEGIN CERTIFICATE-----\n!!!not base64!!!\n-----END CERTIFICATE-----\n",
                "not valid PEM",
            ),
            (
                "garbage.pem",
                b"-----BEGIN CERTIFICATE-----\nAAAA\n-----END CERTIFICATE-----\n",
                "cannot be trusted as a root",
            ),
            (
                "unterminated.pem",
                b"-----BEGIN CERTIFICATE-----\nAAAA\n",
                "not valid PEM",
            ),
        ] {
            let path = write(name, contents);
            let error = error(&path);
            assert_eq!(error.kind(), io::ErrorKind::InvalidData, "{name}: {error}");
            let message = error.to_string();
            assert!(message.contains(expected), "{name}: {message}");
            assert!(
                message.contains(&path.display().to_string()),
                "{name}: {message}"
            );
        }
    }

    #[test]
    fn an_oversized_file_is_refused_without_reading_it_all() {
        let path = write("big.pem", &vec![b'a'; MAX_CA_FILE_BYTES as usize + 10]);
        let message = error(&path).to_string();
        assert!(message.contains("larger than"), "{message}");
        // A file without end: read whole, this would never return.
        if cfg!(unix) {
            let message = error(Path::new("/dev/zero")).to_string();
            assert!(message.contains("larger than"), "{message}");
        }
    }
}

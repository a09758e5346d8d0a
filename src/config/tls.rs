//! `[server.tls]` checked as the server will use it: the certificate file holds a PEM
//! certificate chain, the key file one PEM private key, and the key belongs to the first
//! certificate. Pure: the files are read by the caller.

use rustls_pki_types::pem::PemObject as _;
use rustls_pki_types::{CertificateDer, PrivateKeyDer};

/// What is wrong with a certificate and key pair; no variant holds any of their bytes.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum TlsProblem {
    /// The certificate file holds no PEM certificate, or one that does not parse.
    NoCertificate,
    /// The key file holds no PEM private key, or one the crypto provider cannot load.
    NoKey,
    /// The key is not the certificate's.
    Mismatch,
}

/// Checks a PEM certificate chain and private key.
pub fn check_pair(cert_pem: &str, key_pem: &str) -> Result<(), TlsProblem> {
    let certs: Vec<CertificateDer<'static>> = CertificateDer::pem_slice_iter(cert_pem.as_bytes())
        .collect::<Result<_, _>>()
        .map_err(|_| TlsProblem::NoCertificate)?;
    if certs.is_empty() {
        return Err(TlsProblem::NoCertificate);
    }
    let key = PrivateKeyDer::from_pem_slice(key_pem.as_bytes()).map_err(|_| TlsProblem::NoKey)?;
    let provider = rustls::crypto::aws_lc_rs::default_provider();
    let signing_key = provider
        .key_provider
        .load_private_key(key)
        .map_err(|_| TlsProblem::NoKey)?;
    let certified = rustls::sign::CertifiedKey::new(certs, signing_key);
    match certified.keys_match() {
        Ok(()) => Ok(()),
        Err(rustls::Error::InconsistentKeys(rustls::InconsistentKeys::KeyMismatch)) => {
            Err(TlsProblem::Mismatch)
        }
        // The provider cannot tell this key's public half: the handshake will tell.
        Err(rustls::Error::InconsistentKeys(_)) => Ok(()),
        Err(_) => Err(TlsProblem::NoCertificate),
    }
}

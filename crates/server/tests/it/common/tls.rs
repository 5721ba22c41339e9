//! Test certificates made with rcgen: a CA, and server certificates for 127.0.0.1 signed by it,
//! written as `cert.pem`/`key.pem` the way a server configuration's `[tls]` names them.
//!
//! Shared by the server's and the `sift` binary's integration tests (the latter include this
//! file by path), so both make their certificates the same way.

#![allow(dead_code)]

use std::path::Path;

/// A throwaway certificate authority that signs test server certificates.
pub struct TestCa {
    /// The CA's own (self-signed) certificate, to trust in a client.
    pub cert: rcgen::Certificate,
    issuer: rcgen::Issuer<'static, rcgen::KeyPair>,
}

impl TestCa {
    /// A fresh CA with no subject name.
    pub fn new() -> Self {
        Self::with_params(rcgen::CertificateParams::new(Vec::<String>::new()).unwrap())
    }

    /// A fresh CA whose subject's common name is `cn`.
    pub fn named(cn: &str) -> Self {
        let mut params = rcgen::CertificateParams::new(Vec::<String>::new()).unwrap();
        params
            .distinguished_name
            .push(rcgen::DnType::CommonName, cn);
        Self::with_params(params)
    }

    fn with_params(mut params: rcgen::CertificateParams) -> Self {
        let key = rcgen::KeyPair::generate().unwrap();
        params.is_ca = rcgen::IsCa::Ca(rcgen::BasicConstraints::Unconstrained);
        let cert = params.self_signed(&key).unwrap();
        Self {
            cert,
            issuer: rcgen::Issuer::new(params, key),
        }
    }

    /// The CA certificate as PEM.
    pub fn pem(&self) -> String {
        self.cert.pem()
    }

    /// Signs `params` for `key` with this CA.
    pub fn sign(&self, params: &rcgen::CertificateParams, key: &rcgen::KeyPair) -> String {
        params.signed_by(key, &self.issuer).unwrap().pem()
    }

    /// Signs a server certificate for `names` with a fresh key and writes it to `dir` (see
    /// [`write_cert_and_key`]); with `chain`, `cert.pem` carries the CA certificate after the leaf.
    pub fn write_leaf_for(&self, dir: &Path, names: &[&str], chain: bool) {
        let key = rcgen::KeyPair::generate().unwrap();
        let params =
            rcgen::CertificateParams::new(names.iter().map(|n| n.to_string()).collect::<Vec<_>>())
                .unwrap();
        let mut cert = self.sign(&params, &key);
        if chain {
            cert.push_str(&self.pem());
        }
        write_cert_and_key(dir, &cert, &key);
    }
}

/// Writes `cert` (PEM) to `dir/cert.pem` and `key` to `dir/key.pem`.
pub fn write_cert_and_key(dir: &Path, cert: &str, key: &rcgen::KeyPair) {
    std::fs::write(dir.join("cert.pem"), cert).unwrap();
    std::fs::write(dir.join("key.pem"), key.serialize_pem()).unwrap();
}

/// A fresh CA and a leaf for 127.0.0.1 signed by it, written to `dir/cert.pem`, `dir/key.pem`;
/// returns the CA's PEM.
pub fn write_leaf(dir: &Path) -> String {
    let ca = TestCa::new();
    ca.write_leaf_for(dir, &["127.0.0.1"], false);
    ca.pem()
}

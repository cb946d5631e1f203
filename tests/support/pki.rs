//! Certificates made at test time with rcgen (no key is ever committed): a CA and leaf
//! certificates it signs, written as PEM files into a temp dir.

use rcgen::{
    BasicConstraints, CertificateParams, CertifiedIssuer, DnType, ExtendedKeyUsagePurpose, IsCa,
    KeyPair, KeyUsagePurpose,
};
use std::path::PathBuf;

/// A throw-away certificate authority and the directory its files live in.
pub struct Pki {
    pub dir: tempfile::TempDir,
    issuer: CertifiedIssuer<'static, KeyPair>,
    /// The CA certificate (PEM), what clients and servers trust.
    pub ca: PathBuf,
}

/// A certificate and its key, as PEM files.
#[derive(Clone, Debug)]
pub struct CertFiles {
    pub cert: PathBuf,
    pub key: PathBuf,
}

impl Pki {
    /// A new CA named `name` in a fresh temp dir.
    pub fn new(name: &str) -> Pki {
        let dir = tempfile::Builder::new()
            .prefix("respgate-pki-")
            .tempdir()
            .unwrap();
        let mut params = CertificateParams::default();
        params.distinguished_name.push(DnType::CommonName, name);
        params.is_ca = IsCa::Ca(BasicConstraints::Unconstrained);
        params.key_usages = vec![
            KeyUsagePurpose::KeyCertSign,
            KeyUsagePurpose::CrlSign,
            KeyUsagePurpose::DigitalSignature,
        ];
        let ca = CertifiedIssuer::self_signed(params, KeyPair::generate().unwrap()).unwrap();
        let path = dir.path().join(format!("{name}-ca.pem"));
        std::fs::write(&path, ca.pem()).unwrap();
        Pki {
            dir,
            issuer: ca,
            ca: path,
        }
    }

    /// A certificate with common name `cn` and subject alternative names `sans` (IP
    /// addresses become IP SANs), usable for server and client authentication, signed
    /// by this CA and written as `{file}.pem` / `{file}.key`.
    pub fn issue(&self, file: &str, cn: &str, sans: &[&str]) -> CertFiles {
        let sans: Vec<String> = sans.iter().map(|s| s.to_string()).collect();
        let mut params = CertificateParams::new(sans).unwrap();
        params.distinguished_name.push(DnType::CommonName, cn);
        params.extended_key_usages = vec![
            ExtendedKeyUsagePurpose::ServerAuth,
            ExtendedKeyUsagePurpose::ClientAuth,
        ];
        params.key_usages = vec![
            KeyUsagePurpose::DigitalSignature,
            KeyUsagePurpose::KeyEncipherment,
        ];
        let key = KeyPair::generate().unwrap();
        let cert = params.signed_by(&key, &self.issuer).unwrap();
        let files = CertFiles {
            cert: self.dir.path().join(format!("{file}.pem")),
            key: self.dir.path().join(format!("{file}.key")),
        };
        std::fs::write(&files.cert, cert.pem()).unwrap();
        std::fs::write(&files.key, key.serialize_pem()).unwrap();
        files
    }

    /// A server certificate for the loopback listener (`localhost`, `127.0.0.1`).
    pub fn server(&self, file: &str) -> CertFiles {
        self.issue(file, "respgate-test-server", &["localhost", "127.0.0.1"])
    }

    /// The CA certificate as PEM text.
    pub fn ca_pem(&self) -> Vec<u8> {
        std::fs::read(&self.ca).unwrap()
    }
}

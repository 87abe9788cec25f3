//! Certificates for the TLS tests: a CA of our own and a server certificate it signed
//! for 127.0.0.1 and localhost, as PEM files that redis-server and PostgreSQL can read.

use std::path::PathBuf;
use std::process::Command;

use rcgen::{
    BasicConstraints, CertificateParams, CertifiedIssuer, DnType, IsCa, KeyPair, KeyUsagePurpose,
};
use tempfile::TempDir;

pub struct TestCertificates {
    /// The CA's certificate: what clients trust.
    pub ca: PathBuf,
    /// The server's certificate and its private key.
    pub cert: PathBuf,
    pub key: PathBuf,
    _dir: TempDir,
}

impl TestCertificates {
    pub fn generate() -> TestCertificates {
        let dir = tempfile::Builder::new()
            .prefix("redsink-tls-")
            .tempdir()
            .expect("create a temporary folder");
        let mut ca_params = CertificateParams::new(Vec::<String>::new()).unwrap();
        ca_params.is_ca = IsCa::Ca(BasicConstraints::Unconstrained);
        ca_params
            .distinguished_name
            .push(DnType::CommonName, "redsink test CA");
        ca_params.key_usages = vec![KeyUsagePurpose::KeyCertSign, KeyUsagePurpose::CrlSign];
        let ca = CertifiedIssuer::self_signed(ca_params, KeyPair::generate().unwrap()).unwrap();
        let mut params =
            CertificateParams::new(vec!["127.0.0.1".to_owned(), "localhost".to_owned()]).unwrap();
        params
            .distinguished_name
            .push(DnType::CommonName, "127.0.0.1");
        let key = KeyPair::generate().unwrap();
        let cert = params.signed_by(&key, &ca).unwrap();
        let certificates = TestCertificates {
            ca: dir.path().join("ca.pem"),
            cert: dir.path().join("server.pem"),
            key: dir.path().join("server.key"),
            _dir: dir,
        };
        std::fs::write(&certificates.ca, ca.pem()).unwrap();
        std::fs::write(&certificates.cert, cert.pem()).unwrap();
        std::fs::write(&certificates.key, key.serialize_pem()).unwrap();
        // PostgreSQL wants its key private to the user it runs as.
        let (folder, key_file) = (certificates._dir.path(), &certificates.key);
        Command::new("chmod")
            .arg("600")
            .arg(key_file)
            .status()
            .unwrap();
        if crate::pg_server::running_as_root() {
            Command::new("chown")
                .args(["-R", "postgres:postgres"])
                .arg(folder)
                .status()
                .unwrap();
        }
        certificates
    }
}

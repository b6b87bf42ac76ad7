//! A throw-away certificate authority for local runs: a CA, a server certificate for the
//! workload (with its SPIFFE id, as Istio issues them) and client certificates carrying SPIFFE
//! URI SANs, written as PEM files Envoy and curl can read.

use std::path::{Path, PathBuf};

use rcgen::{
    BasicConstraints, CertificateParams, DistinguishedName, DnType, ExtendedKeyUsagePurpose, IsCa, Issuer, KeyPair,
    KeyUsagePurpose, SanType,
};

#[derive(Debug, thiserror::Error)]
pub enum PkiError {
    #[error("generating a certificate for {what}: {source}")]
    Generate { what: String, source: rcgen::Error },
    #[error("writing {path}: {source}")]
    Write { path: PathBuf, source: std::io::Error },
}

type Result<T, E = PkiError> = std::result::Result<T, E>;

/// PEM files of one certificate and its key.
#[derive(Debug, Clone)]
pub struct CertFiles {
    pub cert: PathBuf,
    pub key: PathBuf,
    pub cert_der: Vec<u8>,
    pub key_der: Vec<u8>,
}

/// A client identity for mutual TLS.
#[derive(Debug, Clone)]
pub struct ClientIdentity {
    pub spiffe_id: String,
    pub files: CertFiles,
}

pub struct Pki {
    dir: PathBuf,
    ca_key: KeyPair,
    ca_params: CertificateParams,
    pub ca_cert: PathBuf,
    pub ca_der: Vec<u8>,
    pub server: CertFiles,
}

impl Pki {
    /// Creates the CA and the workload's server certificate in `dir`. The server certificate
    /// names `localhost`, `127.0.0.1` and `server_spiffe_id`.
    pub fn generate(dir: &Path, server_spiffe_id: &str) -> Result<Pki> {
        let gen = |what: &str| {
            let what = what.to_string();
            move |source| PkiError::Generate { what: what.clone(), source }
        };
        let ca_key = KeyPair::generate().map_err(gen("the CA key"))?;
        let mut ca_params = CertificateParams::default();
        ca_params.distinguished_name = name("xnat-guard local CA");
        ca_params.is_ca = IsCa::Ca(BasicConstraints::Unconstrained);
        ca_params.key_usages =
            vec![KeyUsagePurpose::KeyCertSign, KeyUsagePurpose::CrlSign, KeyUsagePurpose::DigitalSignature];
        let ca = ca_params.self_signed(&ca_key).map_err(gen("the CA"))?;
        let ca_cert = dir.join("ca.pem");
        write(&ca_cert, ca.pem().as_bytes())?;
        let mut pki = Pki {
            dir: dir.to_path_buf(),
            ca_key,
            ca_params,
            ca_cert,
            ca_der: ca.der().to_vec(),
            server: placeholder(),
        };
        let sans = vec![
            SanType::DnsName("localhost".try_into().map_err(gen("localhost"))?),
            SanType::IpAddress(std::net::IpAddr::V4(std::net::Ipv4Addr::LOCALHOST)),
            SanType::URI(server_spiffe_id.try_into().map_err(gen(server_spiffe_id))?),
        ];
        pki.server = pki.issue("server", sans, ExtendedKeyUsagePurpose::ServerAuth)?;
        Ok(pki)
    }

    /// Issues a client certificate whose only URI SAN is `spiffe_id`; files are named after
    /// `label`.
    pub fn client(&self, label: &str, spiffe_id: &str) -> Result<ClientIdentity> {
        let uri = spiffe_id.try_into().map_err(|source| PkiError::Generate { what: spiffe_id.to_string(), source })?;
        let files =
            self.issue(&format!("client-{label}"), vec![SanType::URI(uri)], ExtendedKeyUsagePurpose::ClientAuth)?;
        Ok(ClientIdentity { spiffe_id: spiffe_id.to_string(), files })
    }

    fn issue(&self, label: &str, sans: Vec<SanType>, usage: ExtendedKeyUsagePurpose) -> Result<CertFiles> {
        let gen = |source| PkiError::Generate { what: label.to_string(), source };
        let key = KeyPair::generate().map_err(gen)?;
        let mut params = CertificateParams::default();
        params.distinguished_name = name(label);
        params.subject_alt_names = sans;
        params.extended_key_usages = vec![usage];
        params.key_usages = vec![KeyUsagePurpose::DigitalSignature];
        let issuer = Issuer::from_params(&self.ca_params, &self.ca_key);
        let cert = params.signed_by(&key, &issuer).map_err(gen)?;
        let files = CertFiles {
            cert: self.dir.join(format!("{label}.pem")),
            key: self.dir.join(format!("{label}-key.pem")),
            cert_der: cert.der().to_vec(),
            key_der: key.serialize_der(),
        };
        write(&files.cert, cert.pem().as_bytes())?;
        write(&files.key, key.serialize_pem().as_bytes())?;
        Ok(files)
    }
}

fn placeholder() -> CertFiles {
    CertFiles { cert: PathBuf::new(), key: PathBuf::new(), cert_der: Vec::new(), key_der: Vec::new() }
}

fn name(common_name: &str) -> DistinguishedName {
    let mut dn = DistinguishedName::new();
    dn.push(DnType::CommonName, common_name);
    dn
}

fn write(path: &Path, data: &[u8]) -> Result<()> {
    std::fs::write(path, data).map_err(|source| PkiError::Write { path: path.to_path_buf(), source })
}

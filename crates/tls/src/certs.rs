//! Certificates made at start: a throwaway certificate authority (CA) and a
//! server certificate it signs, for `localhost` and `127.0.0.1`.
//!
//! A browser or curl trusts a server because a CA it already trusts signed the
//! server's certificate, and the certificate names the host it dialled. Here
//! we play both parts: [`Ca::new`] makes a CA (a key pair and a self-signed
//! certificate that says "I may sign others"), and [`Ca::server_cert`] signs a
//! certificate for the server's names. The keys live only in this process's
//! memory; only the CA's *certificate* (public) is written to a file, so curl
//! and openssl can be told to trust it. Nothing secret is in the repository.

use std::sync::Arc;
use std::time::{Duration, SystemTime};

use rcgen::{
    BasicConstraints, CertificateParams, CertifiedIssuer, DnType, ExtendedKeyUsagePurpose, IsCa,
    KeyPair, KeyUsagePurpose,
};
use rustls::pki_types::{CertificateDer, PrivateKeyDer, PrivatePkcs8KeyDer};

/// The names the server certificate is valid for: what a client on this
/// machine dials. An IP address goes into the certificate as an IP SAN, which
/// is how `https://127.0.0.1/` can be verified at all.
pub const SERVER_NAMES: [&str; 2] = ["localhost", "127.0.0.1"];

/// How long the certificates made at start are valid. A day is plenty for a
/// lesson's server, and a short life is the habit worth learning: a stolen
/// key is useful only until its certificate expires.
pub const VALIDITY: Duration = Duration::from_secs(24 * 60 * 60);

/// How far back `not_before` is set: clocks on two machines disagree by
/// seconds or minutes, and a certificate "not valid yet" fails as surely as
/// an expired one.
pub const CLOCK_SKEW: Duration = Duration::from_secs(60 * 60);

/// A throwaway certificate authority: its certificate, and the key that signs.
#[derive(Debug)]
pub struct Ca {
    issuer: CertifiedIssuer<'static, KeyPair>,
}

/// A certificate and its private key, ready for a rustls server (or, from
/// [`Ca::client_cert`], for a client that must prove who it is).
#[derive(Debug)]
pub struct ServerCert {
    /// The certificate, DER-encoded: what goes on the wire in the handshake.
    pub cert: CertificateDer<'static>,
    /// Its private key, PKCS#8 DER; it never leaves this process.
    pub key: PrivatePkcs8KeyDer<'static>,
}

impl ServerCert {
    /// The key in the form rustls takes.
    pub fn key_der(&self) -> PrivateKeyDer<'static> {
        PrivateKeyDer::Pkcs8(self.key.clone_key())
    }
}

impl Ca {
    /// Makes a new CA named `name`, with a fresh ECDSA P-256 key.
    pub fn new(name: &str) -> Result<Self, rcgen::Error> {
        let mut params = CertificateParams::default();
        params.distinguished_name.push(DnType::CommonName, name);
        // The two bits that make it an authority: "CA: true" in basic
        // constraints, and key usage that allows signing certificates.
        params.is_ca = IsCa::Ca(BasicConstraints::Unconstrained);
        params.key_usages = vec![KeyUsagePurpose::KeyCertSign, KeyUsagePurpose::CrlSign];
        let now = SystemTime::now();
        params.not_before = (now - CLOCK_SKEW).into();
        params.not_after = (now + VALIDITY).into();
        let issuer = CertifiedIssuer::self_signed(params, KeyPair::generate()?)?;
        Ok(Self { issuer })
    }

    /// The CA's certificate, DER: what a client puts in its trust store.
    pub fn cert_der(&self) -> CertificateDer<'static> {
        self.issuer.der().clone()
    }

    /// The CA's certificate as PEM text: the file curl's `--cacert` and
    /// openssl's `-CAfile` read. Public; safe to write anywhere.
    pub fn cert_pem(&self) -> String {
        self.issuer.pem()
    }

    /// A server certificate for [`SERVER_NAMES`], valid from now for
    /// [`VALIDITY`].
    pub fn server_cert(&self) -> Result<ServerCert, rcgen::Error> {
        let now = SystemTime::now();
        self.sign(&SERVER_NAMES, now - CLOCK_SKEW, now + VALIDITY)
    }

    /// A server certificate for `names`, valid between the two times. A test
    /// makes an expired one with both in the past.
    pub fn sign(
        &self,
        names: &[&str],
        not_before: SystemTime,
        not_after: SystemTime,
    ) -> Result<ServerCert, rcgen::Error> {
        let names: Vec<String> = names.iter().map(|n| (*n).to_owned()).collect();
        let mut params = CertificateParams::new(names)?;
        params.distinguished_name.push(DnType::CommonName, "tls lesson server");
        params.is_ca = IsCa::ExplicitNoCa;
        params.key_usages = vec![KeyUsagePurpose::DigitalSignature];
        // "This key may be used by a TLS server", which clients check.
        params.extended_key_usages = vec![ExtendedKeyUsagePurpose::ServerAuth];
        params.not_before = not_before.into();
        params.not_after = not_after.into();
        let key = KeyPair::generate()?;
        let cert = params.signed_by(&key, &self.issuer)?;
        Ok(ServerCert {
            cert: cert.der().clone(),
            key: PrivatePkcs8KeyDer::from(key.serialize_der()),
        })
    }

    /// A client certificate for mutual TLS: the same CA signs it, for a
    /// client called `name`, usable only to authenticate a client.
    pub fn client_cert(&self, name: &str) -> Result<ServerCert, rcgen::Error> {
        let now = SystemTime::now();
        let mut params = CertificateParams::new(Vec::<String>::new())?;
        params.distinguished_name.push(DnType::CommonName, name);
        params.is_ca = IsCa::ExplicitNoCa;
        params.key_usages = vec![KeyUsagePurpose::DigitalSignature];
        // "This key may be used by a TLS client": a server checks it, so a
        // stolen server certificate cannot log in as a client.
        params.extended_key_usages = vec![ExtendedKeyUsagePurpose::ClientAuth];
        params.not_before = (now - CLOCK_SKEW).into();
        params.not_after = (now + VALIDITY).into();
        let key = KeyPair::generate()?;
        let cert = params.signed_by(&key, &self.issuer)?;
        Ok(ServerCert {
            cert: cert.der().clone(),
            key: PrivatePkcs8KeyDer::from(key.serialize_der()),
        })
    }

    /// A trust store holding only this CA: what a client that trusts it uses.
    pub fn roots(&self) -> Arc<rustls::RootCertStore> {
        let mut roots = rustls::RootCertStore::empty();
        roots.add(self.cert_der()).expect("a certificate rcgen just made parses");
        Arc::new(roots)
    }
}

//! Whether a TLS endpoint serves the certificate a files bridge just
//! installed: the served leaf compared with ours by the SHA-256 of its DER.
//! Pure: the probe's result comes in (`host::tls_probe`), a verdict goes out.

/// What one probe of the endpoint got.
#[derive(Debug, Clone, PartialEq, Eq)]
pub(crate) enum Probe {
    /// The handshake completed; the served leaf certificate's DER.
    Served(Vec<u8>),
    /// No TLS service there (refused, timed out, handshake failed): why.
    NotServing(String),
}

/// What we know of one certificate.
#[derive(Debug, Clone, PartialEq, Eq)]
pub(crate) struct CertFacts {
    /// SHA-256 of the DER, hex.
    pub(crate) sha256: String,
    /// Serial, hex with colons.
    pub(crate) serial: String,
    /// Subject.
    pub(crate) subject: String,
    /// Not after (Unix seconds).
    pub(crate) not_after: i64,
}

impl CertFacts {
    /// The facts of a DER certificate.
    pub(crate) fn of_der(der: &[u8]) -> Result<CertFacts, String> {
        let (_, cert) = x509_parser::parse_x509_certificate(der)
            .map_err(|e| format!("certificate does not parse: {e}"))?;
        Ok(CertFacts {
            sha256: crate::core::plan::Digest::of(der).to_string(),
            serial: cert.raw_serial_as_string(),
            subject: cert.subject().to_string(),
            not_after: cert.validity().not_after.timestamp(),
        })
    }

    /// The facts of the first certificate in a PEM file (the leaf).
    pub(crate) fn of_pem(pem: &[u8]) -> Result<CertFacts, String> {
        use rustls_pki_types::CertificateDer;
        use rustls_pki_types::pem::PemObject;
        let der = CertificateDer::pem_slice_iter(pem)
            .next()
            .ok_or("no PEM certificate found")?
            .map_err(|e| format!("certificate PEM does not parse: {e}"))?;
        CertFacts::of_der(der.as_ref())
    }

    fn said(&self) -> String {
        format!("serial {} ({})", self.serial, self.subject)
    }
}

/// The verdict on one probe.
#[derive(Debug, Clone, PartialEq, Eq)]
pub(crate) enum Verdict {
    /// It serves the installed certificate.
    Serving(CertFacts),
    /// It serves another one (the old one, most likely).
    Other {
        /// What it serves.
        served: CertFacts,
    },
    /// Nothing is served there: why.
    NotServing(String),
}

impl Verdict {
    /// Whether the installed certificate is served.
    pub(crate) fn ok(&self) -> bool {
        matches!(self, Verdict::Serving(_))
    }

    /// One line for logs and the status: "serving serial … (CN=…)", or
    /// what is wrong, naming both certificates.
    pub(crate) fn text(&self, expected: &CertFacts) -> String {
        match self {
            Verdict::Serving(f) => format!("serving {}", f.said()),
            Verdict::Other { served } => format!(
                "serves {}, not the installed {}",
                served.said(),
                expected.said()
            ),
            Verdict::NotServing(why) => format!("not serving: {why}"),
        }
    }
}

/// Judges a probe against the installed certificate.
pub(crate) fn judge(expected: &CertFacts, probe: &Probe) -> Verdict {
    match probe {
        Probe::NotServing(why) => Verdict::NotServing(why.clone()),
        Probe::Served(der) => match CertFacts::of_der(der) {
            Ok(f) if f.sha256 == expected.sha256 => Verdict::Serving(f),
            Ok(served) => Verdict::Other { served },
            Err(e) => Verdict::NotServing(format!("the served certificate: {e}")),
        },
    }
}

#[cfg(test)]
mod tests;

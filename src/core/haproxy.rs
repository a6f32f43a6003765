//! HAProxy's runtime API for a new certificate, with no reload: `set ssl
//! cert PATH <<` with the PEM (certificate, chain and key) as its payload,
//! then `commit ssl cert PATH`. Pure: the commands and the judging of
//! HAProxy's answers; `host::haproxy` talks to the stats socket.
//!
//! A payload ends at HAProxy's first empty line, so the PEM is rebuilt from
//! its BEGIN/END blocks alone: no empty line, no text outside the blocks,
//! nothing a container could make HAProxy read as a command.

/// The payload for `set ssl cert`: every PEM block of `pem`, one base64
/// line after another; at least one certificate and one private key.
pub(crate) fn payload(pem: &[u8]) -> Result<String, String> {
    let text = std::str::from_utf8(pem).map_err(|_| "the PEM is not text".to_string())?;
    let mut out = String::new();
    let mut block: Option<&str> = None;
    let (mut certs, mut keys) = (0, 0);
    for (n, raw) in text.lines().enumerate() {
        let line = raw.trim_end_matches('\r').trim();
        match block {
            None => {
                if let Some(label) = line
                    .strip_prefix("-----BEGIN ")
                    .and_then(|l| l.strip_suffix("-----"))
                {
                    if !label.bytes().all(|b| b.is_ascii_uppercase() || b == b' ') {
                        return Err(format!("line {}: odd PEM label {label:?}", n + 1));
                    }
                    block = Some(label);
                    out.push_str(line);
                    out.push('\n');
                }
                // Text between blocks is left out.
            }
            Some(label) => {
                if line == format!("-----END {label}-----") {
                    if label == "CERTIFICATE" {
                        certs += 1;
                    } else if label.ends_with("PRIVATE KEY") {
                        keys += 1;
                    }
                    block = None;
                    out.push_str(line);
                    out.push('\n');
                } else if line.is_empty() {
                    continue;
                } else if line
                    .bytes()
                    .all(|b| b.is_ascii_alphanumeric() || b == b'+' || b == b'/' || b == b'=')
                {
                    out.push_str(line);
                    out.push('\n');
                } else {
                    return Err(format!(
                        "line {}: not base64 inside {label} (an encrypted key is not supported)",
                        n + 1
                    ));
                }
            }
        }
    }
    if block.is_some() {
        return Err("a PEM block is not closed".into());
    }
    if certs == 0 || keys == 0 {
        return Err(format!(
            "HAProxy needs the certificate and its key in one PEM; found {certs} certificate(s) and {keys} key(s)"
        ));
    }
    Ok(out)
}

/// `set ssl cert PATH <<` and the payload, ended by an empty line.
pub(crate) fn set_command(path: &str, payload: &str) -> String {
    format!("set ssl cert {path} <<\n{payload}\n")
}

/// `commit ssl cert PATH`.
pub(crate) fn commit_command(path: &str) -> String {
    format!("commit ssl cert {path}\n")
}

/// `abort ssl cert PATH`: drops a transaction a failed commit left.
pub(crate) fn abort_command(path: &str) -> String {
    format!("abort ssl cert {path}\n")
}

/// Whether HAProxy took the `set`: "Transaction created for certificate
/// PATH!" or "Transaction updated …"; else its answer is the error.
pub(crate) fn set_ok(answer: &str) -> Result<(), String> {
    if answer.contains("Transaction created") || answer.contains("Transaction updated") {
        Ok(())
    } else {
        Err(format!("set ssl cert: {}", one_line(answer)))
    }
}

/// Whether the commit succeeded ("Success!").
pub(crate) fn commit_ok(answer: &str) -> Result<(), String> {
    if answer.contains("Success!") {
        Ok(())
    } else {
        Err(format!("commit ssl cert: {}", one_line(answer)))
    }
}

fn one_line(answer: &str) -> String {
    let s: Vec<&str> = answer
        .lines()
        .map(str::trim)
        .filter(|l| !l.is_empty())
        .collect();
    let s = s.join(" ");
    if s.is_empty() {
        "no answer (is it the stats socket, at level admin?)".into()
    } else {
        s.chars().take(300).collect()
    }
}

#[cfg(test)]
mod tests;

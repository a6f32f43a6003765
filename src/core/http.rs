//! The little HTTP/1.1 the `http` action speaks to a reload endpoint: its
//! URL (`http://host[:port]/path`), the request (no body, `Connection:
//! close`) and the status of the answer. Pure: bytes in, bytes out; the
//! host layer (`host::http`) moves them.

/// A parsed `http://` URL.
#[derive(Debug, Clone, PartialEq, Eq)]
pub(crate) struct Url {
    /// The host as written (`[::1]` keeps its brackets), for `Host:`.
    pub(crate) host: String,
    /// The port (default 80).
    pub(crate) port: u16,
    /// The path and query (default `/`).
    pub(crate) path: String,
}

impl Url {
    /// Parses `http://host[:port][/path]`; no https, no user info, no
    /// fragment, no spaces or control characters.
    pub(crate) fn parse(url: &str) -> Result<Url, String> {
        let rest = url.strip_prefix("http://").ok_or_else(|| {
            format!(
                "{url:?} is not an http:// URL (https is not supported: reload endpoints are local)"
            )
        })?;
        if url.chars().any(|c| c.is_control() || c == ' ') || url.contains('#') {
            return Err(format!(
                "{url:?} has a space, a control character or a fragment"
            ));
        }
        let (authority, path) = match rest.find('/') {
            Some(i) => (&rest[..i], &rest[i..]),
            None => (rest, "/"),
        };
        if authority.is_empty() || authority.contains('@') {
            return Err(format!("{url:?} needs a host (and no user info)"));
        }
        let (host, port) = split_authority(authority).map_err(|e| format!("{url:?}: {e}"))?;
        let host = host.to_string();
        let port = match port {
            None => 80,
            Some(p) => p
                .parse::<u16>()
                .ok()
                .filter(|p| *p > 0)
                .ok_or_else(|| format!("{url:?}: port {p:?} is not a port"))?,
        };
        Ok(Url {
            host,
            port,
            path: path.to_string(),
        })
    }

    /// `host:port` to connect to (brackets kept for IPv6).
    pub(crate) fn address(&self) -> String {
        format!("{}:{}", self.host, self.port)
    }
}

/// Splits `host[:port]`, or `[v6][:port]`, into the host as written (an
/// IPv6 address keeps its brackets: `Host:` and connect want them) and the
/// port's text, if any.
pub(crate) fn split_authority(authority: &str) -> Result<(&str, Option<&str>), String> {
    let (host, port) = match authority.strip_prefix('[').and_then(|a| a.find(']')) {
        Some(end) => {
            let (host, rest) = authority.split_at(end + 2);
            match rest {
                "" => (host, None),
                _ => match rest.strip_prefix(':') {
                    Some(p) => (host, Some(p)),
                    None => return Err("junk after the IPv6 address".into()),
                },
            }
        }
        None => match authority.split_once(':') {
            Some((h, p)) => (h, Some(p)),
            None => (authority, None),
        },
    };
    if host.is_empty() {
        return Err("needs a host".into());
    }
    Ok((host, port))
}

/// The request: `METHOD path HTTP/1.1`, `Host:`, no body.
pub(crate) fn request(method: &str, url: &Url) -> Vec<u8> {
    let host = if url.port == 80 {
        url.host.clone()
    } else {
        url.address()
    };
    format!(
        "{method} {} HTTP/1.1\r\nHost: {host}\r\nUser-Agent: hostbridge/{}\r\nContent-Length: 0\r\nConnection: close\r\n\r\n",
        url.path,
        env!("CARGO_PKG_VERSION")
    )
    .into_bytes()
}

/// The status code of an answer, and the start of its body (for errors).
pub(crate) fn status_of(answer: &[u8]) -> Result<(u16, String), String> {
    let text = String::from_utf8_lossy(answer);
    let line = text.lines().next().unwrap_or_default();
    let mut parts = line.split(' ');
    let (Some(version), Some(code)) = (parts.next(), parts.next()) else {
        return Err(format!("not an HTTP answer: {:?}", first(&text, 80)));
    };
    if !version.starts_with("HTTP/1.") {
        return Err(format!("not an HTTP/1 answer: {:?}", first(line, 80)));
    }
    let code = code
        .parse::<u16>()
        .ok()
        .filter(|c| (100..600).contains(c))
        .ok_or_else(|| format!("not an HTTP status: {:?}", first(line, 80)))?;
    let body = text.split_once("\r\n\r\n").map_or("", |(_, b)| b);
    Ok((code, first(body.trim(), 200)))
}

fn first(s: &str, n: usize) -> String {
    s.chars().take(n).collect()
}

#[cfg(test)]
mod tests;

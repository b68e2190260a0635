//! Comparing origins (RFC 6454): scheme, host and port, the default port of the scheme filled in,
//! scheme and host compared without case.

/// An origin's parts: scheme, host and port.
#[derive(Debug, PartialEq, Eq)]
struct Origin {
    scheme: String,
    host: String,
    port: Option<u16>,
}

fn default_port(scheme: &str) -> Option<u16> {
    match scheme {
        "http" | "ws" => Some(80),
        "https" | "wss" => Some(443),
        _ => None,
    }
}

/// `scheme://host[:port]` (an Origin header, or a configured origin; a trailing `/` is allowed).
fn parse(origin: &str) -> Option<Origin> {
    let (scheme, authority) = origin.split_once("://")?;
    let scheme = scheme.to_ascii_lowercase();
    let authority = authority.strip_suffix('/').unwrap_or(authority);
    if authority.contains(['/', '?', '#', '@']) {
        return None;
    }
    let (host, port) = authority_parts(authority, default_port(&scheme))?;
    Some(Origin { scheme, host, port })
}

/// `host[:port]` (also `[v6]:port`), with `default` when no port is given.
fn authority_parts(authority: &str, default: Option<u16>) -> Option<(String, Option<u16>)> {
    let (host, port) = if let Some(rest) = authority.strip_prefix('[') {
        let (host, after) = rest.split_once(']')?;
        (format!("[{host}]"), after)
    } else {
        match authority.rsplit_once(':') {
            Some((host, _)) => (host.to_owned(), &authority[host.len()..]),
            None => (authority.to_owned(), ""),
        }
    };
    let port = match port.strip_prefix(':') {
        Some(port) => Some(port.parse::<u16>().ok()?),
        None if port.is_empty() => default,
        None => return None,
    };
    if host.is_empty() {
        return None;
    }
    Some((host.to_ascii_lowercase(), port))
}

/// Why a configured origin can never match, if it cannot: it must be `scheme://host[:port]`.
pub(super) fn invalid(origin: &str) -> Option<&'static str> {
    if origin == "null" {
        Some("`null` is never allowed")
    } else if !origin.contains("://") {
        Some("an origin starts with its scheme, e.g. `http://localhost:5173`")
    } else if parse(origin).is_none() {
        Some("an origin is `scheme://host[:port]`, with no path, query or user")
    } else {
        None
    }
}

/// Whether two origins are the same.
pub(super) fn same(a: &str, b: &str) -> bool {
    match (parse(a), parse(b)) {
        (Some(a), Some(b)) => a == b,
        _ => false,
    }
}

/// Whether `origin` is the server's own, reached at `host` (the request's Host header) over http
/// or https.
pub(super) fn is_own(origin: &str, host: &str) -> bool {
    let Some(origin) = parse(origin) else {
        return false;
    };
    if !matches!(origin.scheme.as_str(), "http" | "https") {
        return false;
    }
    authority_parts(host.trim(), default_port(&origin.scheme))
        .is_some_and(|(host, port)| host == origin.host && port == origin.port)
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn origins_that_can_never_match_are_named() {
        for good in [
            "http://localhost:5173",
            "https://app.example.com/",
            "http://[::1]:8080",
        ] {
            assert_eq!(invalid(good), None, "{good}");
        }
        for bad in [
            "localhost:5173",
            "app.example.com",
            "null",
            "http://a.example/path",
            "http://",
        ] {
            assert!(invalid(bad).is_some(), "{bad}");
        }
    }

    #[test]
    fn origins_compare_by_scheme_host_and_port() {
        assert!(same("http://a.example", "HTTP://A.example:80"));
        assert!(same("https://a.example/", "https://a.example:443"));
        assert!(!same("http://a.example", "https://a.example"));
        assert!(!same("http://a.example", "http://a.example:8080"));
        assert!(!same("http://a.example", "http://a.example.evil.example"));
        assert!(!same("http://a.example", "null"));
        assert!(same("http://[::1]:8000", "http://[::1]:8000"));
    }

    #[test]
    fn the_own_origin_is_the_host_over_http_or_https() {
        assert!(is_own("http://127.0.0.1:8000", "127.0.0.1:8000"));
        assert!(is_own("https://app.example", "app.example"));
        assert!(is_own("http://app.example", "APP.example:80"));
        assert!(!is_own("http://app.example:8000", "app.example"));
        assert!(!is_own("http://127.0.0.1:8001", "127.0.0.1:8000"));
        assert!(!is_own("http://evil.example", "127.0.0.1:8000"));
        assert!(!is_own("ftp://127.0.0.1:8000", "127.0.0.1:8000"));
        assert!(!is_own("http://127.0.0.1:8000/path", "127.0.0.1:8000"));
        assert!(!is_own("null", "127.0.0.1:8000"));
    }
}

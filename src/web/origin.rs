//! Which pages may open a WebSocket: a browser sends the page's origin with every upgrade, and a
//! page from another site must not chat with a visitor's browser as if it were them. Pure, so it
//! is tested without sockets.

/// Whether an upgrade with these `Origin` and `Host` headers may go ahead. No `Origin` is not a
/// browser (netcat-like tools, tests), so it is let through; otherwise the origin's host and port
/// must be the `Host` the request was sent to, or the origin one of `allowed` exactly.
pub fn allowed(origin: Option<&str>, host: Option<&str>, allowed: &[String]) -> bool {
    let Some(origin) = origin else {
        return true;
    };
    let origin = origin.trim();
    if allowed
        .iter()
        .any(|a| a.trim_end_matches('/').eq_ignore_ascii_case(origin))
    {
        return true;
    }
    let Some(host) = host else {
        return false;
    };
    let Some((scheme, authority)) = origin.split_once("://") else {
        // `null` (a sandboxed frame, a file) and anything malformed.
        return false;
    };
    let default_port = match scheme.to_ascii_lowercase().as_str() {
        "http" => "80",
        "https" => "443",
        _ => return false,
    };
    let normal = |authority: &str| -> String {
        let authority = authority.to_ascii_lowercase();
        // An IPv6 literal keeps its colons inside brackets.
        let has_port = match authority.rfind(']') {
            Some(end) => authority[end..].contains(':'),
            None => authority.contains(':'),
        };
        if has_port {
            authority
        } else {
            format!("{authority}:{default_port}")
        }
    };
    normal(authority) == normal(host.trim())
}

#[cfg(test)]
mod tests {
    use super::allowed;

    #[test]
    fn same_host_and_port_is_allowed() {
        assert!(allowed(
            Some("http://127.0.0.1:8080"),
            Some("127.0.0.1:8080"),
            &[]
        ));
        assert!(allowed(
            Some("http://Chat.Example"),
            Some("chat.example"),
            &[]
        ));
        assert!(allowed(
            Some("https://chat.example"),
            Some("chat.example:443"),
            &[]
        ));
        assert!(allowed(Some("http://[::1]:9000"), Some("[::1]:9000"), &[]));
    }

    #[test]
    fn another_site_or_port_is_refused() {
        assert!(!allowed(
            Some("http://evil.example"),
            Some("chat.example"),
            &[]
        ));
        assert!(!allowed(
            Some("http://127.0.0.1:9999"),
            Some("127.0.0.1:8080"),
            &[]
        ));
        assert!(!allowed(Some("null"), Some("chat.example"), &[]));
        assert!(!allowed(Some("http://chat.example"), None, &[]));
        assert!(!allowed(
            Some("ftp://chat.example"),
            Some("chat.example"),
            &[]
        ));
    }

    #[test]
    fn listed_origins_are_allowed_exactly() {
        let list = vec!["https://app.example".to_string()];
        assert!(allowed(
            Some("https://app.example"),
            Some("api.example"),
            &list
        ));
        assert!(!allowed(
            Some("https://app.example.evil"),
            Some("api.example"),
            &list
        ));
    }

    #[test]
    fn no_origin_is_not_a_browser() {
        assert!(allowed(None, None, &[]));
    }
}

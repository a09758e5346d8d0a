//! Types for credentials, tokens and URLs that carry them, whose `Debug` and `Display` never
//! print the value, so a secret cannot reach a log line, an error message or a panic by accident.

use std::fmt;

use url::Url;

/// What a redacted value prints as.
pub const REDACTED: &str = "**REDACTED**";

/// A secret string: a webhook signing key, a token, a header value.
#[derive(Clone, PartialEq, Eq)]
pub struct Secret(String);

impl Secret {
    pub fn new(value: impl Into<String>) -> Self {
        Self(value.into())
    }

    /// The value itself, for the one place that must send it.
    pub fn expose(&self) -> &str {
        &self.0
    }
}

impl fmt::Debug for Secret {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str(REDACTED)
    }
}

impl fmt::Display for Secret {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str(REDACTED)
    }
}

/// A URL that may carry a secret in its path, query or user info (a Slack incoming-webhook
/// URL is a credential by itself). It prints only its scheme, host and port.
#[derive(Clone, PartialEq, Eq)]
pub struct SecretUrl(Url);

impl SecretUrl {
    pub fn new(url: Url) -> Self {
        Self(url)
    }

    /// The full URL, for the one place that must send to it.
    pub fn expose(&self) -> &Url {
        &self.0
    }

    /// Whether the URL's host is a loopback address or `localhost`.
    pub fn is_loopback(&self) -> bool {
        is_loopback(&self.0)
    }
}

impl fmt::Display for SecretUrl {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        let url = &self.0;
        write!(f, "{}://{}", url.scheme(), url.host_str().unwrap_or(""))?;
        if let Some(port) = url.port() {
            write!(f, ":{port}")?;
        }
        let bare = url.path() == "/" && url.query().is_none() && url.username().is_empty();
        if !bare {
            write!(f, "/{REDACTED}")?;
        }
        Ok(())
    }
}

impl fmt::Debug for SecretUrl {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        write!(f, "SecretUrl({self})")
    }
}

/// Whether a URL points at this machine: `localhost`, 127.0.0.0/8 or `[::1]`.
pub fn is_loopback(url: &Url) -> bool {
    match url.host() {
        Some(url::Host::Domain(domain)) => domain.eq_ignore_ascii_case("localhost"),
        Some(url::Host::Ipv4(ip)) => ip.is_loopback(),
        Some(url::Host::Ipv6(ip)) => ip.is_loopback(),
        None => false,
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn secrets_never_print_their_value() {
        let secret = Secret::new("hunter2");
        assert_eq!(format!("{secret}"), REDACTED);
        assert_eq!(format!("{secret:?}"), REDACTED);
        assert_eq!(format!("{:?}", Some(&secret)), format!("Some({REDACTED})"));
        assert_eq!(secret.expose(), "hunter2");
    }

    #[test]
    fn secret_urls_print_only_where_they_go() {
        let url = SecretUrl::new(
            Url::parse("https://hooks.slack.com/services/T000/B000/XXXXSECRET").unwrap(),
        );
        let shown = format!("{url} {url:?}");
        assert!(
            !shown.contains("XXXXSECRET") && !shown.contains("T000"),
            "{shown}"
        );
        assert_eq!(url.to_string(), "https://hooks.slack.com/**REDACTED**");

        let creds = SecretUrl::new(Url::parse("http://user:pw@127.0.0.1:9093/").unwrap());
        assert_eq!(creds.to_string(), "http://127.0.0.1:9093/**REDACTED**");
        assert!(creds.is_loopback());

        let bare = SecretUrl::new(Url::parse("http://am.monitoring:9093").unwrap());
        assert_eq!(bare.to_string(), "http://am.monitoring:9093");
        assert!(!bare.is_loopback());
    }

    #[test]
    fn loopback_hosts() {
        for url in [
            "http://localhost:1",
            "http://127.0.0.1",
            "http://127.9.9.9",
            "http://[::1]:80",
        ] {
            assert!(is_loopback(&Url::parse(url).unwrap()), "{url}");
        }
        for url in [
            "https://eks.us-east-1.amazonaws.com",
            "http://10.0.0.1",
            "http://[::2]",
        ] {
            assert!(!is_loopback(&Url::parse(url).unwrap()), "{url}");
        }
    }
}

//! The operator's host policy (`[email] allowed_hosts`, `denied_hosts`)
//! applied to every host a user names or discovery yields: IMAP and SMTP
//! servers (typed in the registration form, found by autoconfig, in SRV
//! records or guessed), autoconfig URLs and the files an XMPP user shares.
//! Connections go to exactly the addresses the policy returned, so a name
//! cannot point around it; the HTTP client resolves through the policy,
//! redirects included.

use std::net::{IpAddr, SocketAddr};
use std::sync::Arc;

use ferry_bridge::{HostPolicy, HostRefused};

/// Resolves names for the HTTP client through the policy.
struct PolicyResolver(Arc<HostPolicy>);

impl reqwest::dns::Resolve for PolicyResolver {
    fn resolve(&self, name: reqwest::dns::Name) -> reqwest::dns::Resolving {
        let policy = self.0.clone();
        let host = name.as_str().to_owned();
        Box::pin(async move {
            let addrs = policy.check(&host, 0).await?;
            let addrs: reqwest::dns::Addrs = Box::new(addrs.into_iter());
            Ok(addrs)
        })
    }
}

/// Why the policy refuses a host that is an address literal (None for a
/// name: the resolver checks those).
fn literal_refusal(hosts: &HostPolicy, host: &str, port: Option<u16>) -> Option<HostRefused> {
    let ip: IpAddr = host
        .trim_start_matches('[')
        .trim_end_matches(']')
        .parse()
        .ok()?;
    hosts
        .check_resolved(host, [SocketAddr::new(ip, port.unwrap_or(0))])
        .err()
}

/// Checks the host of a URL before it is fetched (an address literal is
/// never given to the resolver, so it is checked here). A malformed URL
/// is left to the request to report.
pub async fn check_url(hosts: &HostPolicy, url: &str) -> Result<(), HostRefused> {
    let Ok(parsed) = reqwest::Url::parse(url) else {
        return Ok(());
    };
    let Some(host) = parsed.host_str() else {
        return Ok(());
    };
    match hosts
        .check(host, parsed.port_or_known_default().unwrap_or(0))
        .await
    {
        Err(HostRefused::Unresolved { .. }) | Ok(_) => Ok(()),
        Err(refused) => Err(refused),
    }
}

/// An HTTP client bound to the policy: names resolve through it and a
/// redirect to a refused address literal is not followed.
pub fn http_client(
    hosts: &HostPolicy,
    builder: reqwest::ClientBuilder,
) -> reqwest::Result<reqwest::Client> {
    let redirect_hosts = hosts.clone();
    let redirects = reqwest::redirect::Policy::custom(move |attempt| {
        let url = attempt.url();
        let refusal = url
            .host_str()
            .and_then(|h| literal_refusal(&redirect_hosts, h, url.port_or_known_default()));
        match refusal {
            Some(refused) => attempt.error(refused),
            None if attempt.previous().len() >= 5 => attempt.error("too many redirects"),
            None => attempt.follow(),
        }
    });
    builder
        .dns_resolver(Arc::new(PolicyResolver(Arc::new(hosts.clone()))))
        .redirect(redirects)
        .build()
}

#[cfg(test)]
mod tests {
    use super::*;

    #[tokio::test]
    async fn literal_urls_are_checked() {
        let strict = HostPolicy::default();
        assert!(check_url(&strict, "http://127.0.0.3:8080/x").await.is_err());
        assert!(check_url(&strict, "not a url").await.is_ok());
        let open = HostPolicy::new(["127.0.0.3"], Vec::<String>::new()).unwrap();
        assert!(check_url(&open, "http://127.0.0.3:8080/x").await.is_ok());
        assert!(check_url(&open, "http://127.0.0.4/x").await.is_err());
    }
}

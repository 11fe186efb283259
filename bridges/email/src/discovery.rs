//! Finding a mailbox's servers from the address alone, as mail clients
//! do: a Mozilla-style autoconfig file (`autoconfig.<domain>`, then
//! `<domain>/.well-known/autoconfig`), RFC 6186 SRV records
//! (`_imaps._tcp`, `_imap._tcp`, `_submissions._tcp`, `_submission._tcp`),
//! then the usual host names. The result is an ordered list of candidates
//! for each protocol; registration logs in to the first that answers.

use std::time::Duration;

use hickory_resolver::config::{NameServerConfigGroup, ResolverConfig};
use hickory_resolver::name_server::TokioConnectionProvider;
use hickory_resolver::{Resolver, TokioResolver};

use ferry_bridge::HostPolicy;

use crate::config::Config;
use crate::settings::{Endpoint, Security};

/// Where the candidates came from (told to the user).
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum Source {
    /// An autoconfig file.
    Autoconfig,
    /// DNS SRV records.
    Srv,
    /// Usual host names.
    Guess,
}

/// Candidate servers, best first.
#[derive(Clone, Debug, Default, PartialEq, Eq)]
pub struct Candidates {
    /// IMAP servers.
    pub imap: Vec<Endpoint>,
    /// Submission servers.
    pub smtp: Vec<Endpoint>,
    /// The login name, when the provider says (`%EMAILADDRESS%` resolved).
    pub username: Option<String>,
    /// Where they came from.
    pub source: Option<Source>,
    /// Autoconfig URLs the operator's host policy refused (told to the
    /// user when nothing was found).
    pub refused: Vec<String>,
}

/// Everything discovery tries, for one address.
pub async fn discover(
    config: &Config,
    http: &reqwest::Client,
    hosts: &HostPolicy,
    email: &str,
) -> Candidates {
    let Some((local, domain)) = email.rsplit_once('@') else {
        return Candidates::default();
    };
    let mut refused = Vec::new();
    for template in &config.autoconfig_urls {
        let url = template
            .replace("{domain}", domain)
            .replace("{email}", &url_encode(email));
        if let Err(r) = crate::hosts::check_url(hosts, &url).await {
            tracing::debug!(%url, "autoconfig refused: {r}");
            refused.push(format!("autoconfig: {r}"));
            continue;
        }
        match fetch(http, &url).await {
            Ok(xml) => match parse_autoconfig(&xml, email, local, domain) {
                Ok(c) if !c.imap.is_empty() && !c.smtp.is_empty() => {
                    tracing::debug!(%url, "autoconfig found");
                    return Candidates {
                        source: Some(Source::Autoconfig),
                        refused,
                        ..c
                    };
                }
                Ok(_) => tracing::debug!(%url, "autoconfig without IMAP and SMTP servers"),
                Err(e) => tracing::debug!(%url, "bad autoconfig file: {e}"),
            },
            Err(e) => tracing::debug!(%url, "no autoconfig: {e}"),
        }
    }
    if config.srv_lookup {
        let c = srv(config, domain).await;
        if !c.imap.is_empty() && !c.smtp.is_empty() {
            return Candidates { refused, ..c };
        }
    }
    if config.guess_hosts {
        return Candidates {
            refused,
            ..guess(domain)
        };
    }
    Candidates {
        refused,
        ..Candidates::default()
    }
}

fn url_encode(s: &str) -> String {
    s.bytes()
        .map(|b| match b {
            b'A'..=b'Z' | b'a'..=b'z' | b'0'..=b'9' | b'-' | b'.' | b'_' | b'~' => {
                (b as char).to_string()
            }
            _ => format!("%{b:02X}"),
        })
        .collect()
}

async fn fetch(http: &reqwest::Client, url: &str) -> Result<String, String> {
    let resp = http
        .get(url)
        .timeout(Duration::from_secs(10))
        .send()
        .await
        .map_err(|e| e.to_string())?;
    if !resp.status().is_success() {
        return Err(format!("HTTP {}", resp.status()));
    }
    let body = resp.bytes().await.map_err(|e| e.to_string())?;
    if body.len() > 256 * 1024 {
        return Err("the autoconfig file is too large".into());
    }
    String::from_utf8(body.to_vec()).map_err(|_| "the autoconfig file is not UTF-8".into())
}

/// Reads a Mozilla autoconfig file (clientConfig version 1.1).
pub fn parse_autoconfig(
    xml: &str,
    email: &str,
    local: &str,
    domain: &str,
) -> Result<Candidates, String> {
    let doc = roxmltree::Document::parse(xml).map_err(|e| e.to_string())?;
    let provider = doc
        .descendants()
        .find(|n| n.has_tag_name("emailProvider"))
        .ok_or("no emailProvider element")?;
    let fill = |s: &str| {
        s.replace("%EMAILADDRESS%", email)
            .replace("%EMAILLOCALPART%", local)
            .replace("%EMAILDOMAIN%", domain)
    };
    let mut out = Candidates::default();
    for server in provider.children().filter(|n| n.is_element()) {
        let incoming = server.has_tag_name("incomingServer");
        let outgoing = server.has_tag_name("outgoingServer");
        if !incoming && !outgoing {
            continue;
        }
        let kind = server.attribute("type").unwrap_or_default();
        if (incoming && kind != "imap") || (outgoing && kind != "smtp") {
            continue;
        }
        let child = |name: &str| {
            server
                .children()
                .find(|n| n.has_tag_name(name))
                .and_then(|n| n.text())
                .map(|t| t.trim().to_owned())
        };
        let Some(host) = child("hostname").map(|h| fill(&h)) else {
            continue;
        };
        let security = match child("socketType").as_deref().map(str::to_ascii_uppercase) {
            Some(s) if s == "SSL" || s == "TLS" => Security::Tls,
            Some(s) if s == "STARTTLS" => Security::Starttls,
            Some(s) if s == "PLAIN" => Security::Plain,
            _ => continue,
        };
        let port = match child("port").map(|p| p.parse::<u16>()) {
            Some(Ok(p)) => p,
            Some(Err(_)) => continue,
            None if incoming => security.imap_port(),
            None => security.smtp_port(),
        };
        if host.is_empty() || host.contains(['/', ' ', '\n']) {
            continue;
        }
        let ep = Endpoint {
            host,
            port,
            security,
        };
        if incoming {
            if out.username.is_none() {
                out.username = child("username")
                    .map(|u| fill(&u))
                    .filter(|u| !u.is_empty());
            }
            out.imap.push(ep);
        } else {
            out.smtp.push(ep);
        }
    }
    Ok(out)
}

async fn srv(config: &Config, domain: &str) -> Candidates {
    let resolver: TokioResolver = if config.nameservers.is_empty() {
        match TokioResolver::builder_tokio() {
            Ok(b) => b.build(),
            Err(e) => {
                tracing::debug!("no DNS configuration: {e}");
                return Candidates::default();
            }
        }
    } else {
        let mut group = NameServerConfigGroup::new();
        for addr in &config.nameservers {
            group.merge(NameServerConfigGroup::from_ips_clear(
                &[addr.ip()],
                addr.port(),
                true,
            ));
        }
        Resolver::builder_with_config(
            ResolverConfig::from_parts(None, Vec::new(), group),
            TokioConnectionProvider::default(),
        )
        .build()
    };
    let mut out = Candidates {
        source: Some(Source::Srv),
        ..Candidates::default()
    };
    for (service, security, imap) in [
        ("_imaps._tcp", Security::Tls, true),
        ("_imap._tcp", Security::Starttls, true),
        ("_submissions._tcp", Security::Tls, false),
        ("_submission._tcp", Security::Starttls, false),
    ] {
        let name = format!("{service}.{domain}.");
        let Ok(lookup) = resolver.srv_lookup(name.as_str()).await else {
            continue;
        };
        let mut records: Vec<_> = lookup
            .iter()
            .map(|r| {
                (
                    r.priority(),
                    u16::MAX - r.weight(),
                    r.target().to_utf8(),
                    r.port(),
                )
            })
            .collect();
        records.sort();
        for (_, _, target, port) in records {
            let host = target.trim_end_matches('.').to_owned();
            // "." means the service is decidedly not offered (RFC 2782).
            if host.is_empty() || port == 0 {
                continue;
            }
            let ep = Endpoint {
                host,
                port,
                security,
            };
            if imap {
                out.imap.push(ep);
            } else {
                out.smtp.push(ep);
            }
        }
    }
    out
}

/// The usual host names, TLS first.
pub fn guess(domain: &str) -> Candidates {
    let ep = |host: String, port, security| Endpoint {
        host,
        port,
        security,
    };
    Candidates {
        imap: vec![
            ep(format!("imap.{domain}"), 993, Security::Tls),
            ep(format!("mail.{domain}"), 993, Security::Tls),
            ep(format!("imap.{domain}"), 143, Security::Starttls),
            ep(format!("mail.{domain}"), 143, Security::Starttls),
        ],
        smtp: vec![
            ep(format!("smtp.{domain}"), 465, Security::Tls),
            ep(format!("mail.{domain}"), 465, Security::Tls),
            ep(format!("smtp.{domain}"), 587, Security::Starttls),
            ep(format!("mail.{domain}"), 587, Security::Starttls),
        ],
        username: None,
        source: Some(Source::Guess),
        refused: Vec::new(),
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    const XML: &str = r#"<?xml version="1.0"?>
<clientConfig version="1.1">
  <emailProvider id="example.com">
    <domain>example.com</domain>
    <incomingServer type="pop3"><hostname>pop.example.com</hostname><port>995</port><socketType>SSL</socketType></incomingServer>
    <incomingServer type="imap">
      <hostname>imap.example.com</hostname><port>993</port><socketType>SSL</socketType>
      <username>%EMAILLOCALPART%</username><authentication>password-cleartext</authentication>
    </incomingServer>
    <incomingServer type="imap">
      <hostname>imap2.%EMAILDOMAIN%</hostname><port>143</port><socketType>STARTTLS</socketType>
    </incomingServer>
    <outgoingServer type="smtp">
      <hostname>smtp.example.com</hostname><port>587</port><socketType>STARTTLS</socketType>
      <username>%EMAILADDRESS%</username>
    </outgoingServer>
  </emailProvider>
</clientConfig>"#;

    #[test]
    fn autoconfig_files_are_read() {
        let c = parse_autoconfig(XML, "me@example.com", "me", "example.com").unwrap();
        assert_eq!(c.imap.len(), 2);
        assert_eq!(c.imap[0].host, "imap.example.com");
        assert_eq!(c.imap[0].security, Security::Tls);
        assert_eq!(c.imap[1].host, "imap2.example.com");
        assert_eq!(c.smtp[0].port, 587);
        assert_eq!(c.smtp[0].security, Security::Starttls);
        assert_eq!(c.username.as_deref(), Some("me"));
        assert!(parse_autoconfig("<x/>", "a@b.c", "a", "b.c").is_err());
        assert!(parse_autoconfig("not xml", "a@b.c", "a", "b.c").is_err());
    }

    #[test]
    fn guesses_and_encoding() {
        let g = guess("example.org");
        assert_eq!(g.imap[0].host, "imap.example.org");
        assert_eq!(g.smtp[2].port, 587);
        assert_eq!(url_encode("a+b@c.d"), "a%2Bb%40c.d");
    }
}

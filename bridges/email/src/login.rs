//! Registration: the form (DESIGN.md §3 field names, every field typed),
//! reading it, finding the servers when the advanced fields are empty, and
//! checking the account for real — an IMAP login and an SMTP
//! authentication — before anything is stored. Each failure has its own
//! clear error: wrong password, unreachable host, a certificate that does
//! not verify, no servers found. A server without IDLE is accepted (the
//! inbox is then polled, and the user is told).

use std::time::Duration;

use ferry_bridge::{BridgeError, ErrorKind, Field, FieldKind, Form, FormValues, LoginError};

use crate::Shared;
use crate::address;
use crate::discovery::{self, Candidates, Source};
use crate::imap::{self, ImapError, Timeouts};
use crate::settings::{Endpoint, Security, ServerSettings, StoredAccount};
use crate::smtp::{self, SmtpError};
use crate::tls::TlsError;

/// Form variables.
pub const EMAIL: &str = "email";
/// The password.
pub const PASSWORD: &str = "password";
/// IMAP host (advanced).
pub const IMAP_HOST: &str = "imap_host";
/// IMAP port (advanced).
pub const IMAP_PORT: &str = "imap_port";
/// IMAP security (advanced).
pub const IMAP_SECURITY: &str = "imap_security";
/// SMTP host (advanced).
pub const SMTP_HOST: &str = "smtp_host";
/// SMTP port (advanced).
pub const SMTP_PORT: &str = "smtp_port";
/// SMTP security (advanced).
pub const SMTP_SECURITY: &str = "smtp_security";
/// Login name (advanced).
pub const USERNAME: &str = "username";

fn security_field(var: &str, label: &str) -> Field {
    Field::new(var, FieldKind::ListSingle)
        .label(label)
        .option("TLS (implicit, ports 993/465)", "tls")
        .option("STARTTLS (ports 143/587)", "starttls")
        .option("None (plain text; only on a trusted network)", "plain")
}

/// The registration form.
pub fn form() -> Form {
    Form::new("Email account")
        .instructions(
            "Your email address and password. The servers are found from the address; \
             fill in the advanced fields only if that fails. The account is checked by \
             logging in to IMAP and SMTP before it is saved; the password is stored encrypted.",
        )
        .field(Field::text(EMAIL, "Email address").required())
        .field(Field::private(PASSWORD, "Password").required())
        .field(
            Field::text(IMAP_HOST, "IMAP server (advanced)")
                .desc("Leave empty to find it from the address"),
        )
        .field(Field::text(IMAP_PORT, "IMAP port (advanced)"))
        .field(security_field(IMAP_SECURITY, "IMAP security (advanced)"))
        .field(
            Field::text(SMTP_HOST, "SMTP server (advanced)")
                .desc("Leave empty to find it from the address"),
        )
        .field(Field::text(SMTP_PORT, "SMTP port (advanced)"))
        .field(security_field(SMTP_SECURITY, "SMTP security (advanced)"))
        .field(
            Field::text(USERNAME, "Login name (advanced)")
                .desc("Leave empty to log in with the email address"),
        )
}

fn invalid(field: &str, message: impl Into<String>) -> LoginError {
    LoginError::InvalidField {
        field: field.into(),
        message: message.into(),
    }
}

/// What the user typed, checked.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct Request {
    /// The address.
    pub email: String,
    /// The password.
    pub password: String,
    /// IMAP server given by the user.
    pub imap: Option<Endpoint>,
    /// SMTP server given by the user.
    pub smtp: Option<Endpoint>,
    /// Login name given by the user.
    pub username: Option<String>,
}

fn host_of(values: &FormValues, var: &str) -> Result<Option<String>, LoginError> {
    let Some(h) = values.get(var).map(str::trim).filter(|h| !h.is_empty()) else {
        return Ok(None);
    };
    let ok = h.len() <= 253
        && h.chars()
            .all(|c| c.is_ascii_alphanumeric() || matches!(c, '.' | '-' | ':' | '[' | ']'));
    if !ok {
        return Err(invalid(var, format!("{h:?} is not a host name")));
    }
    Ok(Some(
        h.trim_start_matches('[')
            .trim_end_matches(']')
            .to_ascii_lowercase(),
    ))
}

fn endpoint(
    values: &FormValues,
    host: &str,
    port: &str,
    security: &str,
    imap: bool,
) -> Result<Option<Endpoint>, LoginError> {
    let sec = match values.get(security) {
        Some(s) => Some(
            Security::parse(s).ok_or_else(|| invalid(security, "choose tls, starttls or plain"))?,
        ),
        None => None,
    };
    let p = match values.get(port).map(str::trim).filter(|p| !p.is_empty()) {
        Some(p) => Some(
            p.parse::<u16>()
                .ok()
                .filter(|p| *p != 0)
                .ok_or_else(|| invalid(port, format!("{p:?} is not a port number")))?,
        ),
        None => None,
    };
    let Some(h) = host_of(values, host)? else {
        if p.is_some() || sec.is_some() {
            return Err(invalid(
                host,
                "a port or security setting needs the server's host name",
            ));
        }
        return Ok(None);
    };
    // The security follows the port when only the port is given.
    let security = sec.unwrap_or(match (imap, p) {
        (true, Some(143)) | (false, Some(587)) => Security::Starttls,
        _ => Security::Tls,
    });
    let port = p.unwrap_or(if imap {
        security.imap_port()
    } else {
        security.smtp_port()
    });
    Ok(Some(Endpoint {
        host: h,
        port,
        security,
    }))
}

impl Request {
    /// Reads the submitted form.
    pub fn from_form(values: &FormValues) -> Result<Self, LoginError> {
        let email = address::normalize(values.get(EMAIL).unwrap_or_default())
            .map_err(|e| invalid(EMAIL, e.0))?;
        let password = values
            .get(PASSWORD)
            .ok_or_else(|| invalid(PASSWORD, "the password is required"))?
            .to_owned();
        if password.contains(['\r', '\n', '\0']) {
            return Err(invalid(
                PASSWORD,
                "the password contains a line break or NUL",
            ));
        }
        let username = values
            .get(USERNAME)
            .map(str::trim)
            .filter(|u| !u.is_empty())
            .map(str::to_owned);
        if username
            .as_deref()
            .is_some_and(|u| u.chars().any(char::is_control))
        {
            return Err(invalid(
                USERNAME,
                "the login name contains control characters",
            ));
        }
        Ok(Request {
            email,
            password,
            imap: endpoint(values, IMAP_HOST, IMAP_PORT, IMAP_SECURITY, true)?,
            smtp: endpoint(values, SMTP_HOST, SMTP_PORT, SMTP_SECURITY, false)?,
            username,
        })
    }
}

fn timeouts(shared: &Shared) -> Timeouts {
    Timeouts {
        connect: Duration::from_secs(shared.config.connect_timeout),
        command: Duration::from_secs(shared.config.command_timeout),
    }
}

fn certificate_error(what: &str, endpoint: &str, reason: &str) -> LoginError {
    LoginError::Other(BridgeError::new(
        ErrorKind::NotAllowed,
        format!(
            "The TLS certificate of the {what} server {endpoint} does not verify ({reason}). \
             Ferry does not log in to a server it cannot authenticate: check the host name, \
             or ask the gateway's operator to trust the server's certificate authority."
        ),
    ))
}

/// Every server found (or given) is one the operator does not let the
/// gateway connect to.
fn host_refused(field: &str, what: &str, via: &str, reasons: &[String]) -> LoginError {
    invalid(
        field,
        format!(
            "Ferry may not connect to the {what} server{via}: {}",
            reasons.join("; ")
        ),
    )
}

/// Finds the servers, logs in to both, and returns the account to store.
pub async fn register(shared: &Shared, req: Request) -> Result<StoredAccount, LoginError> {
    let discovered = if req.imap.is_none() || req.smtp.is_none() {
        discovery::discover(&shared.config, &shared.http, &shared.hosts, &req.email).await
    } else {
        Candidates::default()
    };
    let imap_candidates: Vec<Endpoint> = match &req.imap {
        Some(ep) => vec![ep.clone()],
        None => discovered.imap.clone(),
    };
    let smtp_candidates: Vec<Endpoint> = match &req.smtp {
        Some(ep) => vec![ep.clone()],
        None => discovered.smtp.clone(),
    };
    let domain = req.email.rsplit_once('@').map_or("", |(_, d)| d);
    if imap_candidates.is_empty() || smtp_candidates.is_empty() {
        let refused = if discovered.refused.is_empty() {
            String::new()
        } else {
            format!(" ({})", discovered.refused.join("; "))
        };
        return Err(invalid(
            IMAP_HOST,
            format!(
                "No mail servers were found for {domain}{refused}: fill in the IMAP and SMTP \
                 servers in the advanced fields"
            ),
        ));
    }
    let mut usernames = Vec::new();
    if let Some(u) = &req.username {
        usernames.push(u.clone());
    } else {
        if let Some(u) = &discovered.username {
            usernames.push(u.clone());
        }
        if !usernames.contains(&req.email) {
            usernames.push(req.email.clone());
        }
        if let Some((local, _)) = req.email.rsplit_once('@')
            && !usernames.iter().any(|u| u == local)
        {
            usernames.push(local.to_owned());
        }
    }

    // IMAP: the first candidate that answers decides.
    let t = timeouts(shared);
    let mut unreachable = Vec::new();
    let mut refused = Vec::new();
    let mut found = None;
    'servers: for ep in &imap_candidates {
        for (i, user) in usernames.iter().enumerate() {
            match imap::login(&shared.tls, &shared.hosts, ep, user, &req.password, t).await {
                Ok(conn) => {
                    found = Some((ep.clone(), user.clone(), conn));
                    break 'servers;
                }
                Err(ImapError::BadCredentials(text)) => {
                    if i + 1 < usernames.len() {
                        continue;
                    }
                    return Err(LoginError::BadCredentials(format!(
                        "the IMAP server {ep} refused the login of {}: {text}",
                        usernames.join(" / ")
                    )));
                }
                Err(ImapError::Tls {
                    endpoint,
                    error: TlsError::Certificate(reason),
                }) => return Err(certificate_error("IMAP", &endpoint, &reason)),
                Err(ImapError::HostRefused(r)) => {
                    refused.push(r.to_string());
                    continue 'servers;
                }
                Err(e) => {
                    unreachable.push(e.to_string());
                    continue 'servers;
                }
            }
        }
    }
    let Some((imap_ep, username, conn)) = found else {
        let via = match discovered.source {
            Some(Source::Autoconfig) => " (found by autoconfig)",
            Some(Source::Srv) => " (found in DNS SRV records)",
            Some(Source::Guess) => " (guessed from the domain)",
            None => "",
        };
        if unreachable.is_empty() && !refused.is_empty() {
            return Err(host_refused(IMAP_HOST, "IMAP", via, &refused));
        }
        return Err(LoginError::Unreachable(format!(
            "no IMAP server answered{via}: {}",
            unreachable.join("; ")
        )));
    };
    let idle = conn.caps.idle;
    conn.logout().await;

    // SMTP with the same login name.
    let timeout = Duration::from_secs(shared.config.command_timeout);
    let mut errors = Vec::new();
    let mut refused = Vec::new();
    let mut smtp_ep = None;
    for ep in &smtp_candidates {
        let addr = match smtp::resolve(&shared.hosts, ep).await {
            Ok(addr) => addr,
            Err(SmtpError::HostRefused(r)) => {
                refused.push(r.to_string());
                continue;
            }
            Err(e) => {
                errors.push(e.to_string());
                continue;
            }
        };
        let transport = smtp::transport(&shared.tls, ep, addr, &username, &req.password, timeout)
            .map_err(|e| LoginError::Other(BridgeError::internal(e.to_string())))?;
        match smtp::check(&transport, ep).await {
            Ok(()) => {
                smtp_ep = Some(ep.clone());
                break;
            }
            Err(SmtpError::BadCredentials(text)) => {
                return Err(LoginError::BadCredentials(format!(
                    "the SMTP server {ep} refused the login of {username}: {text}"
                )));
            }
            Err(SmtpError::Certificate { endpoint, reason }) => {
                return Err(certificate_error("SMTP", &endpoint, &reason));
            }
            Err(e) => errors.push(e.to_string()),
        }
    }
    let Some(smtp_ep) = smtp_ep else {
        if errors.is_empty() && !refused.is_empty() {
            return Err(host_refused(SMTP_HOST, "SMTP", "", &refused));
        }
        return Err(LoginError::Unreachable(format!(
            "no SMTP server answered: {}",
            errors.join("; ")
        )));
    };
    Ok(StoredAccount {
        email: req.email,
        password: req.password,
        servers: ServerSettings {
            imap: imap_ep,
            smtp: smtp_ep,
            username,
        },
        idle,
    })
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn form_fields_are_typed_and_named_as_designed() {
        let f = form();
        for var in [
            EMAIL,
            PASSWORD,
            IMAP_HOST,
            IMAP_PORT,
            IMAP_SECURITY,
            SMTP_HOST,
            SMTP_PORT,
            SMTP_SECURITY,
            USERNAME,
        ] {
            assert!(f.get(var).is_some(), "{var}");
        }
        assert_eq!(f.get(PASSWORD).unwrap().kind, FieldKind::TextPrivate);
        assert_eq!(f.get(IMAP_SECURITY).unwrap().kind, FieldKind::ListSingle);
        let opts: Vec<_> = f
            .get(SMTP_SECURITY)
            .unwrap()
            .options
            .iter()
            .map(|o| o.value.as_str())
            .collect();
        assert_eq!(opts, ["tls", "starttls", "plain"]);
    }

    #[test]
    fn requests_are_checked() {
        let v = FormValues::new()
            .with(EMAIL, "Me@Example.org")
            .with(PASSWORD, "pw")
            .with(IMAP_HOST, "Mail.Example.org")
            .with(IMAP_PORT, "143");
        let r = Request::from_form(&v).unwrap();
        assert_eq!(r.email, "me@example.org");
        let imap = r.imap.unwrap();
        assert_eq!(
            (imap.host.as_str(), imap.port, imap.security),
            ("mail.example.org", 143, Security::Starttls)
        );
        assert!(r.smtp.is_none());
        for (var, bad) in [
            (EMAIL, "not-an-address"),
            (IMAP_PORT, "99999"),
            (IMAP_HOST, "evil host\r\n"),
            (SMTP_SECURITY, "ssl3"),
        ] {
            let v = FormValues::new()
                .with(EMAIL, "me@example.org")
                .with(PASSWORD, "pw")
                .with(IMAP_HOST, "imap.example.org")
                .with(SMTP_HOST, "smtp.example.org")
                .with(var, bad);
            match Request::from_form(&v) {
                Err(LoginError::InvalidField { field, .. }) => assert_eq!(field, var),
                other => panic!("{var}={bad:?}: {other:?}"),
            }
        }
        let v = FormValues::new()
            .with(EMAIL, "me@example.org")
            .with(PASSWORD, "pw")
            .with(SMTP_PORT, "25");
        assert!(Request::from_form(&v).is_err(), "a port without a host");
    }
}

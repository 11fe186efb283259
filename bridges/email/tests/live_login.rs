//! Registration against the real servers: the servers found by autoconfig
//! over HTTP and by SRV records, given by hand (IMAPS, STARTTLS, plain),
//! and each failure with its own clear error — wrong password, unreachable
//! host, a certificate that does not verify — plus a server without IDLE,
//! which is accepted — and the operator's host policy on every server a
//! user names or discovery finds.

mod common;

use common::{Mailbox, config, env, network, network_with, port};
use ferry_bridge::{ErrorKind, FormValues, HostPolicy, LoginError, Network as _, UserId};
use ferry_email::settings::{Security, StoredAccount};

fn user() -> UserId {
    UserId::new("tester@localhost")
}

async fn register(cfg: ferry_email::Config, v: FormValues) -> Result<StoredAccount, LoginError> {
    let net = network(cfg);
    let account = net.login(&user(), &v).await?;
    Ok(StoredAccount::from_account(&account).expect("stored account reads back"))
}

fn by_hand(mb: &Mailbox) -> FormValues {
    FormValues::new()
        .with("email", mb.address.as_str())
        .with("password", mb.password.as_str())
        .with("imap_host", "127.0.0.1")
        .with("imap_port", env("IMAPS_PORT"))
        .with("imap_security", "tls")
        .with("smtp_host", "localhost")
        .with("smtp_port", env("SUBMISSIONS_PORT"))
        .with("smtp_security", "tls")
        .with("username", mb.user.as_str())
}

#[tokio::test]
async fn servers_given_by_hand_over_tls() {
    let mb = Mailbox::create("hand");
    let a = register(config(), by_hand(&mb)).await.expect("registers");
    assert_eq!(a.email, mb.address);
    assert_eq!(a.servers.imap.port, port("IMAPS_PORT"));
    assert_eq!(a.servers.smtp.security, Security::Tls);
    assert!(a.idle, "Dovecot has IDLE");
    // STARTTLS on both, and plain IMAP.
    let v = by_hand(&mb)
        .with("imap_port", env("IMAP_PORT"))
        .with("imap_security", "starttls")
        .with("smtp_port", env("SUBMISSION_PORT"))
        .with("smtp_security", "starttls");
    let a = register(config(), v.clone())
        .await
        .expect("STARTTLS registers");
    assert_eq!(a.servers.imap.security, Security::Starttls);
    let v = v.with("imap_security", "plain");
    register(config(), v).await.expect("plain IMAP registers");
}

#[tokio::test]
async fn wrong_password_unreachable_host_and_bad_certificate_are_told_apart() {
    let mb = Mailbox::create("bad");
    let v = by_hand(&mb).with("password", "not the password");
    match register(config(), v).await {
        Err(LoginError::BadCredentials(m)) => assert!(m.contains("refused the login"), "{m}"),
        other => panic!("wrong password: {other:?}"),
    }
    // Nothing listens on port 9 of 127.0.0.1.
    let v = by_hand(&mb).with("imap_port", "9");
    match register(config(), v).await {
        Err(LoginError::Unreachable(m)) => assert!(m.contains("127.0.0.1:9"), "{m}"),
        other => panic!("unreachable: {other:?}"),
    }
    // Without the test CA the server's certificate does not verify.
    let cfg = ferry_email::Config {
        ca_file: None,
        ..config()
    };
    match register(cfg.clone(), by_hand(&mb)).await {
        Err(LoginError::Other(e)) => {
            assert_eq!(e.kind, ErrorKind::NotAllowed);
            assert!(e.message.contains("does not verify"), "{}", e.message);
            assert!(e.message.contains("IMAP"), "{}", e.message);
        }
        other => panic!("bad certificate: {other:?}"),
    }
    // The same for SMTP (IMAP in plain text gets through).
    let v = by_hand(&mb)
        .with("imap_port", env("IMAP_PORT"))
        .with("imap_security", "plain");
    match register(cfg, v).await {
        Err(LoginError::Other(e)) => {
            assert!(
                e.message.contains("SMTP") && e.message.contains("does not verify"),
                "{}",
                e.message
            )
        }
        other => panic!("bad SMTP certificate: {other:?}"),
    }
}

#[tokio::test]
async fn a_server_without_idle_is_accepted_for_polling() {
    let mb = Mailbox::create("noidle");
    let v = by_hand(&mb)
        .with("imap_host", env("IMAP_NOIDLE_HOST"))
        .with("imap_port", env("IMAP_PORT"))
        .with("imap_security", "starttls");
    let a = register(config(), v).await.expect("registers");
    assert!(!a.idle, "127.0.0.2 has no IDLE");
}

#[tokio::test]
async fn servers_found_by_autoconfig_over_http() {
    let mb = Mailbox::create("auto");
    // Dovecot logs in `user@any.domain` as `user`.
    let email = format!("{}@{}", mb.user, env("AUTOCONFIG_DOMAIN"));
    let v = FormValues::new()
        .with("email", email.as_str())
        .with("password", mb.password.as_str());
    let a = register(config(), v)
        .await
        .expect("registers from the address alone");
    assert_eq!(a.servers.imap.host, "localhost");
    assert_eq!(a.servers.imap.port, port("IMAPS_PORT"));
    assert_eq!(a.servers.imap.security, Security::Tls);
    assert_eq!(a.servers.smtp.port, port("SUBMISSION_PORT"));
    assert_eq!(a.servers.smtp.security, Security::Starttls);
    assert_eq!(
        a.servers.username, email,
        "%EMAILADDRESS% of the autoconfig file"
    );
}

#[tokio::test]
async fn servers_found_by_srv_records() {
    let mb = Mailbox::create("srv");
    let email = format!("{}@{}", mb.user, env("MAIL_SRV_DOMAIN"));
    let cfg = ferry_email::Config {
        autoconfig_urls: Vec::new(),
        ..config()
    };
    let v = FormValues::new()
        .with("email", email.as_str())
        .with("password", mb.password.as_str());
    let a = register(cfg, v).await.expect("registers from SRV records");
    assert_eq!(a.servers.imap.port, port("IMAPS_PORT"));
    assert_eq!(a.servers.imap.security, Security::Tls);
    assert_eq!(a.servers.smtp.port, port("SUBMISSION_PORT"));
    assert_eq!(a.servers.smtp.security, Security::Starttls);
}

#[tokio::test]
async fn no_servers_found_says_what_to_fill_in() {
    let cfg = ferry_email::Config {
        autoconfig_urls: Vec::new(),
        srv_lookup: false,
        guess_hosts: false,
        ..config()
    };
    let v = FormValues::new()
        .with("email", "someone@nowhere.invalid")
        .with("password", "x");
    match register(cfg, v).await {
        Err(LoginError::InvalidField { field, message }) => {
            assert_eq!(field, "imap_host");
            assert!(message.contains("advanced fields"), "{message}");
        }
        other => panic!("{other:?}"),
    }
}

#[tokio::test]
async fn hosts_the_operator_does_not_allow_are_refused_however_they_are_found() {
    let mb = Mailbox::create("policy");
    // The default policy: no loopback address.
    let strict = || network_with(config(), HostPolicy::default());
    let refused = |r: Result<ferry_bridge::Account, LoginError>, field: &str, what: &str| match r {
        Err(LoginError::InvalidField { field: f, message }) => {
            assert_eq!(f, field, "{message}");
            assert!(
                message.contains("does not connect to") && message.contains(what),
                "{message}"
            );
        }
        other => panic!("{what}: {other:?}"),
    };
    // Typed in the form.
    refused(
        strict().login(&user(), &by_hand(&mb)).await,
        "imap_host",
        "127.0.0.1 is a loopback address",
    );
    // The autoconfig URL (on 127.0.0.1).
    let email = format!("{}@{}", mb.user, env("AUTOCONFIG_DOMAIN"));
    let alone = FormValues::new()
        .with("email", email.as_str())
        .with("password", mb.password.as_str());
    let no_srv = ferry_email::Config {
        srv_lookup: false,
        ..config()
    };
    refused(
        network_with(no_srv, HostPolicy::default())
            .login(&user(), &alone)
            .await,
        "imap_host",
        "autoconfig",
    );
    // Servers named in SRV records (localhost).
    let email = format!("{}@{}", mb.user, env("MAIL_SRV_DOMAIN"));
    let srv_only = ferry_email::Config {
        autoconfig_urls: Vec::new(),
        ..config()
    };
    let v = FormValues::new()
        .with("email", email.as_str())
        .with("password", mb.password.as_str());
    refused(
        network_with(srv_only, HostPolicy::default())
            .login(&user(), &v)
            .await,
        "imap_host",
        "found in DNS SRV records",
    );
    // IMAP allowed, the SMTP server not.
    let imap_only = HostPolicy::new(["127.0.0.2"], Vec::<String>::new()).expect("patterns");
    let v = by_hand(&mb)
        .with("imap_host", env("IMAP_NOIDLE_HOST"))
        .with("imap_port", env("IMAP_PORT"))
        .with("imap_security", "plain");
    refused(
        network_with(config(), imap_only).login(&user(), &v).await,
        "smtp_host",
        "localhost resolves to",
    );
}

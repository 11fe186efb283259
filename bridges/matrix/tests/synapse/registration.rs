//! Registration: a real login, clear errors, unregistering logs the device
//! out.

use ferry_bridge::{FormValues, LoginError, Network, UserId};
use ferry_matrix::MatrixNetwork;
use ferry_matrix::account::StoredSession;

use crate::common::{self, Ferry};

fn values(hs: &str, user: &str, pw: &str) -> FormValues {
    FormValues::new()
        .with("homeserver", hs)
        .with("username", user)
        .with("password", pw)
}

#[tokio::test]
async fn good_login_stores_a_session_not_the_password() {
    let (user, pw) = common::register("reg").await;
    let net = MatrixNetwork::new(common::config()).expect("valid config");
    // The local part alone works as user name.
    let local = user
        .trim_start_matches('@')
        .split(':')
        .next()
        .expect("local");
    let account = net
        .login(&UserId::new("u@x"), &values(&common::url(), local, &pw))
        .await
        .expect("login");
    assert_eq!(account.name, user);
    let secret = String::from_utf8_lossy(&account.secret.0).into_owned();
    assert!(!secret.contains(&pw), "the password must not be stored");
    let stored = StoredSession::from_account(&account).expect("readable");
    assert_eq!(stored.user_id.as_str(), user);
    assert!(!stored.access_token.is_empty());
    // The device got the name from the form's default.
    assert!(!stored.device_id.as_str().is_empty());
}

#[tokio::test]
async fn bad_password_is_refused_clearly() {
    let (user, _) = common::register("bad").await;
    let net = MatrixNetwork::new(common::config()).expect("valid config");
    let err = net
        .login(&UserId::new("u@x"), &values(&common::url(), &user, "wrong"))
        .await
        .expect_err("refused");
    match err {
        LoginError::BadCredentials(m) => assert!(m.contains("refused"), "{m}"),
        other => panic!("expected BadCredentials, got {other:?}"),
    }
}

#[tokio::test]
async fn unreachable_homeserver_is_reported() {
    let net = MatrixNetwork::new(common::config()).expect("valid config");
    let err = net
        .login(&UserId::new("u@x"), &values("http://127.0.0.1:9", "a", "b"))
        .await
        .expect_err("unreachable");
    assert!(matches!(err, LoginError::Unreachable(_)), "{err:?}");
    assert!(err.to_string().contains("127.0.0.1:9"), "{err}");
}

#[tokio::test]
async fn plain_http_needs_the_config_switch_and_garbage_is_refused() {
    let net = MatrixNetwork::new(ferry_matrix::Config::default()).expect("valid config");
    let err = net
        .login(&UserId::new("u@x"), &values(&common::url(), "a", "b"))
        .await
        .expect_err("http refused");
    assert!(
        matches!(&err, LoginError::InvalidField { field, .. } if field == "homeserver"),
        "{err:?}"
    );
    let net = MatrixNetwork::new(common::config()).expect("valid config");
    let err = net
        .login(&UserId::new("u@x"), &values("not a server name!", "a", "b"))
        .await
        .expect_err("garbage");
    assert!(
        matches!(&err, LoginError::InvalidField { field, .. } if field == "homeserver"),
        "{err:?}"
    );
    let err = net
        .login(
            &UserId::new("u@x"),
            &FormValues::new().with("homeserver", common::url()),
        )
        .await
        .expect_err("missing fields");
    assert!(matches!(err, LoginError::InvalidField { .. }), "{err:?}");
}

#[tokio::test]
async fn unregister_logs_the_device_out() {
    let mut f = Ferry::new("unreg").await;
    f.connected().await;
    f.close().await;
    let stored = StoredSession::from_account(&f.account).expect("stored");
    f.network
        .unregister(&UserId::new("tester@localhost"), Some(&f.account))
        .await
        .expect("logout");
    let status = matrix_sdk::reqwest::Client::new()
        .get(format!(
            "{}/_matrix/client/v3/account/whoami",
            common::url()
        ))
        .bearer_auth(&stored.access_token)
        .send()
        .await
        .expect("synapse answers")
        .status();
    assert_eq!(status.as_u16(), 401, "the token no longer works");
    // Unregistering again (already logged out) is not an error.
    f.network
        .unregister(&UserId::new("tester@localhost"), Some(&f.account))
        .await
        .expect("idempotent");
}

/// A web server for a Matrix server name: answers
/// `/.well-known/matrix/client` with `base_url` as the homeserver, 404 to
/// anything else; counts the well-known requests.
async fn well_known_server(
    base_url: String,
) -> (String, std::sync::Arc<std::sync::atomic::AtomicUsize>) {
    use tokio::io::{AsyncReadExt, AsyncWriteExt};
    let hits = std::sync::Arc::new(std::sync::atomic::AtomicUsize::new(0));
    let listener = tokio::net::TcpListener::bind("127.0.0.1:0")
        .await
        .expect("bind");
    let addr = listener.local_addr().expect("addr");
    let counter = hits.clone();
    tokio::spawn(async move {
        loop {
            let Ok((mut sock, _)) = listener.accept().await else {
                return;
            };
            let base_url = base_url.clone();
            let counter = counter.clone();
            tokio::spawn(async move {
                let mut buf = [0u8; 4096];
                let n = sock.read(&mut buf).await.unwrap_or(0);
                let head = String::from_utf8_lossy(&buf[..n]).into_owned();
                let (status, body) = if head.starts_with("GET /.well-known/matrix/client ") {
                    counter.fetch_add(1, std::sync::atomic::Ordering::SeqCst);
                    let body = serde_json::json!({"m.homeserver": {"base_url": base_url}});
                    ("200 OK", body.to_string())
                } else {
                    (
                        "404 Not Found",
                        r#"{"errcode":"M_UNRECOGNIZED"}"#.to_owned(),
                    )
                };
                let reply = format!(
                    "HTTP/1.1 {status}\r\ncontent-type: application/json\r\n\
                     access-control-allow-origin: *\r\ncontent-length: {}\r\n\
                     connection: close\r\n\r\n{body}",
                    body.len()
                );
                let _ = sock.write_all(reply.as_bytes()).await;
            });
        }
    });
    (addr.to_string(), hits)
}

#[tokio::test]
async fn server_name_is_resolved_through_well_known() {
    let (user, pw) = common::register("wk").await;
    let (server_name, hits) = well_known_server(common::url()).await;
    let net = MatrixNetwork::new(common::config()).expect("valid config");
    // The user types the server's name (its web address), not the
    // homeserver's: ferry finds the homeserver through .well-known.
    let account = net
        .login(
            &UserId::new("u@x"),
            &values(&format!("http://{server_name}"), &user, &pw),
        )
        .await
        .expect("login through .well-known");
    assert!(hits.load(std::sync::atomic::Ordering::SeqCst) >= 1);
    let stored = StoredSession::from_account(&account).expect("readable");
    assert_eq!(stored.user_id.as_str(), user);
    assert_eq!(
        stored.homeserver.trim_end_matches('/'),
        common::url().trim_end_matches('/'),
        "the session talks to the homeserver .well-known named"
    );
    // A server name whose .well-known points nowhere is a clear error.
    let (dead, _) = well_known_server("http://127.0.0.1:9".into()).await;
    let err = net
        .login(
            &UserId::new("u@x"),
            &values(&format!("http://{dead}"), &user, &pw),
        )
        .await
        .expect_err("nowhere");
    assert!(matches!(err, LoginError::Unreachable(_)), "{err:?}");
    assert!(err.to_string().contains(&dead), "{err}");
}

/// A listener on 127.0.0.3 (an address the test policy does not allow)
/// that counts the connections it gets.
async fn trap() -> (
    std::net::SocketAddr,
    std::sync::Arc<std::sync::atomic::AtomicUsize>,
) {
    let listener = tokio::net::TcpListener::bind("127.0.0.3:0")
        .await
        .expect("bind 127.0.0.3");
    let addr = listener.local_addr().expect("addr");
    let hits = std::sync::Arc::new(std::sync::atomic::AtomicUsize::new(0));
    let counter = hits.clone();
    tokio::spawn(async move {
        while let Ok((_sock, _)) = listener.accept().await {
            counter.fetch_add(1, std::sync::atomic::Ordering::SeqCst);
        }
    });
    (addr, hits)
}

#[tokio::test]
async fn homeservers_the_host_policy_refuses_are_never_contacted() {
    // The operator allows 127.0.0.1 and 127.0.0.2 only: a homeserver on
    // 127.0.0.3, typed by the user, named by .well-known, or written as a
    // number the resolver reads as 127.0.0.3, is refused with a clear error
    // and never contacted.
    let (addr, hits) = trap().await;
    let net = MatrixNetwork::new(common::config()).expect("valid config");
    let (named, _) = well_known_server(format!("http://{addr}")).await;
    for typed in [
        format!("http://{addr}"),
        format!("http://{named}"),
        format!("http://2130706435:{}", addr.port()),
    ] {
        let err = net
            .login(&UserId::new("u@x"), &values(&typed, "a", "b"))
            .await
            .expect_err("refused");
        match &err {
            LoginError::InvalidField { field, message } => {
                assert_eq!(field, "homeserver");
                assert!(
                    message.contains("127.0.0.3") && message.contains("loopback"),
                    "{typed}: {message}"
                );
            }
            other => panic!("{typed}: {other:?}"),
        }
    }
    assert_eq!(hits.load(std::sync::atomic::Ordering::SeqCst), 0);
}

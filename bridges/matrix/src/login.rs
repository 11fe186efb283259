//! Registration: the form, the password login that creates ferry's Matrix
//! device, and logging that device out again.
//!
//! The login is a plain `POST /login` on a client without a session, so no
//! end-to-end encryption state is created before the session's own client
//! opens its store: the device's keys are generated once, in that store.

use ferry_bridge::{BridgeError, Field, Form, FormValues, LoginError};
use matrix_sdk::ruma::OwnedDeviceId;
use matrix_sdk::ruma::api::client::session::login;
use matrix_sdk::ruma::api::client::uiaa::{MatrixUserIdentifier, UserIdentifier};

use crate::account::{StoredSession, new_store_passphrase};
use crate::client::{self, login_error};
use crate::config::Config;

/// Form field: homeserver.
pub const HOMESERVER: &str = "homeserver";
/// Form field: user name.
pub const USERNAME: &str = "username";
/// Form field: password.
pub const PASSWORD: &str = "password";
/// Form field: device name.
pub const DEVICE: &str = "device";

/// The registration form.
pub fn registration_form(config: &Config) -> Form {
    Form::new("Log in to Matrix")
        .instructions(
            "Ferry logs in to your own Matrix account as a new device. Your password is \
             used once and never stored.",
        )
        .field(
            Field::text(HOMESERVER, "Homeserver")
                .desc("Server name (matrix.org) or URL (https://matrix.example.org)")
                .required(),
        )
        .field(
            Field::text(USERNAME, "User name")
                .desc("alice, or @alice:example.org")
                .required(),
        )
        .field(Field::private(PASSWORD, "Password").required())
        .field(
            Field::text(DEVICE, "Device name")
                .desc("How this session appears in your other Matrix clients")
                .value(config.device_name.clone()),
        )
}

/// What a password login needs.
#[derive(Clone)]
pub struct Credentials {
    /// Homeserver as typed (or the stored base URL).
    pub homeserver: String,
    /// User name or full user id.
    pub username: String,
    /// Password.
    pub password: String,
    /// Display name of the new device.
    pub device_name: String,
    /// Log in again as this existing device (after a soft logout).
    pub device_id: Option<OwnedDeviceId>,
}

impl Credentials {
    /// Reads the registration form.
    pub fn from_form(config: &Config, values: &FormValues) -> Result<Credentials, LoginError> {
        let get = |var: &str| -> Result<String, LoginError> {
            values
                .get(var)
                .map(|s| s.trim().to_owned())
                .filter(|s| !s.is_empty())
                .ok_or_else(|| LoginError::InvalidField {
                    field: var.into(),
                    message: "this field is required".into(),
                })
        };
        let password =
            values
                .get(PASSWORD)
                .map(str::to_owned)
                .ok_or_else(|| LoginError::InvalidField {
                    field: PASSWORD.into(),
                    message: "this field is required".into(),
                })?;
        Ok(Credentials {
            homeserver: get(HOMESERVER)?,
            username: get(USERNAME)?,
            password,
            device_name: values
                .get(DEVICE)
                .map(|s| s.trim().to_owned())
                .filter(|s| !s.is_empty())
                .unwrap_or_else(|| config.device_name.clone()),
            device_id: None,
        })
    }
}

/// Logs in with a password and returns the session to store.
pub async fn password_login(
    config: &Config,
    http: &matrix_sdk::reqwest::Client,
    creds: &Credentials,
) -> Result<StoredSession, LoginError> {
    let client = client::discover(config, http, &creds.homeserver).await?;
    let identifier = UserIdentifier::Matrix(MatrixUserIdentifier::new(creds.username.clone()));
    let mut request = login::v3::Request::new(login::v3::LoginInfo::Password(
        login::v3::Password::new(identifier, creds.password.clone()),
    ));
    request.initial_device_display_name = Some(creds.device_name.clone());
    request.device_id = creds.device_id.clone();
    let response = client
        .send(request)
        .await
        .map_err(|e| login_error(&creds.homeserver, e))?;
    // The homeserver may advertise a different base URL after login (used
    // when the operator's host policy allows it).
    let advertised = response
        .well_known
        .as_ref()
        .map(|w| w.homeserver.base_url.clone())
        .filter(|u| u.starts_with("https://") || config.allow_insecure_http);
    let homeserver = match advertised {
        Some(u) if client::check_url(&config.hosts, &u).await.is_ok() => u,
        _ => client.homeserver().to_string(),
    };
    Ok(StoredSession {
        version: 1,
        homeserver,
        user_id: response.user_id,
        device_id: response.device_id,
        access_token: response.access_token,
        store_passphrase: new_store_passphrase()?,
    })
}

/// Logs a stored device out (its access token and its keys disappear from
/// the homeserver). A plain authenticated `POST /logout`: no session is
/// restored, so no encryption state is created for a device that is going
/// away.
pub async fn logout(
    config: &Config,
    http: &matrix_sdk::reqwest::Client,
    session: &StoredSession,
) -> Result<(), BridgeError> {
    client::check_homeserver(config, &session.homeserver).await?;
    let url = format!(
        "{}/_matrix/client/v3/logout",
        session.homeserver.trim_end_matches('/')
    );
    let response = http
        .post(&url)
        .bearer_auth(&session.access_token)
        .header("content-type", "application/json")
        .body("{}")
        .timeout(config.request_timeout())
        .send()
        .await
        .map_err(|e| {
            BridgeError::unavailable(format!("Matrix: logging the device out failed: {e}"))
        })?;
    let status = response.status();
    if status.is_success() || status.as_u16() == 401 {
        // 401: the token was already revoked, nothing left to undo.
        return Ok(());
    }
    let body = response.text().await.unwrap_or_default();
    Err(BridgeError::remote(format!(
        "Matrix: logging the device out failed: HTTP {status}: {body}"
    )))
}

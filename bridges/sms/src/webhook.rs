//! The bridge's HTTP endpoints, under `/bridge/sms` on the gateway's
//! listener:
//!
//! | request | from | authenticated by |
//! |---|---|---|
//! | `GET /kannel/mo?secret=…&from=%p&to=%P&text=%a&charset=%C` | Kannel's `sms-service` get-url: a text from a phone | the secret (`[sms] webhook_secret`) |
//! | `GET /kannel/dlr?secret=…&id=…&state=%d&smsc_id=%F&reply=%A` | Kannel's dlr-url (Ferry writes it) | the secret |
//! | `POST /twilio/sms` | Twilio's messaging webhook: an SMS or MMS | `X-Twilio-Signature` |
//! | `POST /twilio/status?id=…` | Twilio's StatusCallback (Ferry sets it) | `X-Twilio-Signature` |
//!
//! Answers: 200 once the text or report is stored (the backend retries
//! anything else); 400 for a request that cannot be read (missing fields,
//! text that is not UTF-8, control characters in a number); 403 for a
//! missing or wrong secret or signature (logged for the operator); 404 for
//! a number nobody owns (logged); 503 while the bridge is not running or
//! cannot store.

use ferry_bridge::{WebhookRequest, WebhookResponse};

use crate::backend::kannel;
use crate::backend::twilio;
use crate::backend::{Inbound, IncomingText};
use crate::inbound::{self, Refused};
use crate::number::Party;
use crate::state::Shared;

/// Answers a request to `/bridge/sms/…`.
pub(crate) async fn handle(shared: &Shared, request: WebhookRequest) -> WebhookResponse {
    let kannel = matches!(request.path.as_str(), "/kannel/mo" | "/kannel/dlr");
    let twilio = matches!(request.path.as_str(), "/twilio/sms" | "/twilio/status");
    if !kannel && !twilio {
        return WebhookResponse::status(404, &format!("no endpoint {}", request.path));
    }
    let Ok(rt) = shared.runtime() else {
        return WebhookResponse::status(503, "the SMS bridge is not running");
    };
    if kannel {
        let Some(secret) = shared.config.webhook_secret.as_deref() else {
            return WebhookResponse::status(404, "Kannel is not this bridge's backend");
        };
        if !kannel::authentic(&request.query, secret) {
            tracing::warn!(path = %request.path, "SMS webhook refused: wrong or missing secret (a forged Kannel callback?)");
            return WebhookResponse::status(403, "wrong or missing secret");
        }
        let parsed = if request.path == "/kannel/mo" {
            kannel::parse_mo(&request.query).map(Inbound::Text)
        } else {
            kannel::parse_dlr(&request.query).map(Inbound::Report)
        };
        return match parsed.and_then(checked) {
            Ok(inbound) => answer(inbound::handle(&rt, inbound).await, "ok", "text/plain"),
            Err(e) => bad(&request.path, &e),
        };
    }
    if request.method != "POST" {
        return WebhookResponse::status(405, "use POST");
    }
    let params = match twilio_form(&request.body) {
        Ok(p) => p,
        Err(e) => return bad(&request.path, &e),
    };
    let url = if request.query.is_empty() {
        format!("{}{}", rt.public_url, request.path)
    } else {
        format!("{}{}?{}", rt.public_url, request.path, request.query)
    };
    let given = request
        .headers
        .iter()
        .find(|(k, _)| k == "x-twilio-signature")
        .map(|(_, v)| v.as_str())
        .unwrap_or_default();
    // The number on the user's side: the receiver of a text, the sender of
    // a text whose status is reported.
    let ours = if request.path == "/twilio/sms" {
        "To"
    } else {
        "From"
    };
    let token = match shared.config.accounts {
        crate::config::AccountMode::Operator => Some(shared.config.twilio.auth_token.clone()),
        crate::config::AccountMode::Own => {
            let number = params
                .iter()
                .find(|(k, _)| k == ours)
                .map(|(_, v)| crate::number::Party::from_backend(v));
            let owner = match number.as_ref().and_then(|n| n.address()) {
                Some(n) => rt.ctx.users.owner(n).await.ok().flatten(),
                None => None,
            };
            owner
                .and_then(|u| shared.own_account(u.as_str()))
                .map(|a| a.auth_token)
        }
    };
    if !token.is_some_and(|t| twilio::verify(&t, &url, &params, given)) {
        tracing::warn!(path = %request.path, "SMS webhook refused: bad X-Twilio-Signature (a forged Twilio request?)");
        return WebhookResponse::status(403, "bad signature");
    }
    let parsed = if request.path == "/twilio/sms" {
        twilio::parse_incoming(&params).map(|t| Some(Inbound::Text(t)))
    } else {
        let id = kannel::query_bytes(&request.query)
            .into_iter()
            .find(|(k, _)| k == "id")
            .map(|(_, v)| String::from_utf8_lossy(&v).into_owned())
            .unwrap_or_default();
        twilio::parse_status(&id, &params).map(|r| r.map(Inbound::Report))
    };
    match parsed {
        Ok(None) => WebhookResponse::status(200, "ok"),
        Ok(Some(inbound)) => match checked(inbound) {
            Ok(inbound) => answer(
                inbound::handle(&rt, inbound).await,
                "<Response/>",
                "text/xml",
            ),
            Err(e) => bad(&request.path, &e),
        },
        Err(e) => bad(&request.path, &e),
    }
}

/// Refuses what a person could not have sent: control characters in a
/// number.
fn checked(inbound: Inbound) -> Result<Inbound, String> {
    if let Inbound::Text(IncomingText { from, to, .. }) = &inbound {
        for party in [from, to] {
            let raw = match party {
                Party::Number(n) => n.as_str(),
                Party::ShortCode(d) => d,
                Party::Alphanumeric(name) => name,
            };
            if raw.chars().any(char::is_control) {
                return Err("a number contains control characters".into());
            }
        }
    }
    Ok(inbound)
}

/// A form body whose values are UTF-8 (Twilio's are).
fn twilio_form(body: &[u8]) -> Result<Vec<(String, String)>, String> {
    let mut out = Vec::new();
    for (k, v) in kannel::query_bytes(&String::from_utf8_lossy(body)) {
        let v = String::from_utf8(v).map_err(|_| format!("the value of {k} is not UTF-8"))?;
        out.push((k, v));
    }
    if std::str::from_utf8(body).is_err() {
        return Err("the body is not UTF-8".into());
    }
    Ok(out)
}

fn bad(path: &str, e: &str) -> WebhookResponse {
    tracing::warn!(path, error = e, "SMS webhook refused: unreadable request");
    WebhookResponse::status(400, e)
}

fn answer(r: Result<(), Refused>, ok: &str, content_type: &str) -> WebhookResponse {
    match r {
        Ok(()) => WebhookResponse {
            status: 200,
            content_type: content_type.into(),
            body: ok.as_bytes().to_vec(),
        },
        Err(Refused::NoOwner(e)) => {
            tracing::warn!(error = %e, "SMS refused: nobody to deliver it to");
            WebhookResponse::status(404, &e)
        }
        Err(Refused::Later(e)) => {
            tracing::warn!(error = %e, "SMS not stored: the backend will send it again");
            WebhookResponse::status(503, &e)
        }
    }
}

//! HTTP endpoints of the test network, under `/bridge/test/` on the
//! gateway's HTTP listener. Tests use them to make things happen on the
//! network while the XMPP user is offline or without an XMPP client.
//!
//! | request | effect |
//! |---|---|
//! | `POST /say?to=ACCOUNT&from=CONTACT`, body = text | CONTACT (any valid name) writes to ACCOUNT; kept until ACCOUNT connects if it has no session |
//! | `POST /say?room=%23ROOM&from=NICK`, body = text | NICK says the text in the room (to every member) |
//! | `POST /password?account=ACCOUNT`, body = new password | changes the password; the account's sessions report `LoginRequired` |
//! | `POST /disconnect?account=ACCOUNT` | the account's sessions report `Reconnecting`, then `Connected` again |
//! | `POST /deliver?to=ACCOUNT&from=CONTACT`, body = text | CONTACT writes to ACCOUNT through the bridge-wide part: handed to the XMPP user who registered ACCOUNT with `UserRouter::deliver` (whose session starts if it is not running); 200 once the core stored it |
//! | `POST /fail?account=ACCOUNT&contact=CONTACT[&permanent=0]`, body = reason | the last message ACCOUNT sent to CONTACT (remembered in the bridge's own store, so also after a restart) failed: `Event::DeliveryFailed` through `UserRouter::deliver` |
//!
//! Answers: 200 with the new message id (`/say`) or `ok`; 400 for a bad
//! parameter or a body that is not UTF-8; 404 for an unknown path, account
//! or room; 405 for a method other than POST.

use ferry_bridge::{
    Address, BridgeError, ConnectionState, ContactId, Event, IncomingMessage, MessageId, RoomId,
    RouteError, Sender, WebhookRequest, WebhookResponse,
};

use crate::config::valid_name;
use crate::state::{Carried, Chat, Shared};

fn param<'a>(query: &'a [(String, String)], name: &str) -> Option<&'a str> {
    query
        .iter()
        .find(|(k, _)| k == name)
        .map(|(_, v)| v.as_str())
}

/// Answers a request to `/bridge/test/…`.
pub(crate) fn handle(shared: &Shared, request: WebhookRequest) -> WebhookResponse {
    let known = ["/say", "/password", "/disconnect"];
    if !known.contains(&request.path.as_str()) {
        return WebhookResponse::status(404, &format!("no endpoint {}", request.path));
    }
    if request.method != "POST" {
        return WebhookResponse::status(405, "use POST");
    }
    let query: Vec<(String, String)> = form_urlencoded::parse(request.query.as_bytes())
        .into_owned()
        .collect();
    let Ok(body) = String::from_utf8(request.body) else {
        return WebhookResponse::status(400, "the body is not UTF-8");
    };
    match request.path.as_str() {
        "/say" => say(shared, &query, body),
        "/password" => password(shared, &query, body),
        _ => disconnect(shared, &query),
    }
}

fn say(shared: &Shared, query: &[(String, String)], body: String) -> WebhookResponse {
    let Some(from) = param(query, "from").filter(|f| !f.is_empty()) else {
        return WebhookResponse::status(400, "missing from=");
    };
    if body.is_empty() {
        return WebhookResponse::status(400, "empty message");
    }
    let id = shared.new_id();
    let mut st = shared.lock();
    if let Some(room) = param(query, "room") {
        let room = RoomId::new(room);
        if !st.rooms.contains_key(&room) {
            return WebhookResponse::status(404, &format!("no room {room}"));
        }
        st.carried.insert(
            id.clone(),
            Carried {
                author: from.to_owned(),
                chat: Chat::Room(room.clone()),
                body: body.clone(),
            },
        );
        let mut m = IncomingMessage::text(
            Address::Room(room.clone()),
            Sender::Occupant(from.to_owned()),
            body,
        );
        m.id = Some(id.clone());
        st.to_room(&room, &Event::Message(m), None);
        return WebhookResponse::status(200, id.as_str());
    }
    let Some(to) = param(query, "to") else {
        return WebhookResponse::status(400, "missing to= (or room=)");
    };
    if !st.accounts.contains_key(to) {
        return WebhookResponse::status(404, &format!("no account {to}"));
    }
    if !valid_name(from) || from == to {
        return WebhookResponse::status(400, &format!("{from:?} cannot write to {to}"));
    }
    st.carried.insert(
        id.clone(),
        Carried {
            author: from.to_owned(),
            chat: Chat::direct(from, to),
            body: body.clone(),
        },
    );
    let contact = ContactId::new(from);
    let mut m = IncomingMessage::text(
        Address::Contact(contact.clone()),
        Sender::Contact(contact),
        body,
    );
    m.id = Some(id.clone());
    st.message_to_account(to, Event::Message(m), None);
    WebhookResponse::status(200, id.as_str())
}

/// The endpoints that go through the bridge-wide part (`/deliver`,
/// `/fail`).
pub(crate) async fn route(shared: &Shared, request: WebhookRequest) -> WebhookResponse {
    if request.method != "POST" {
        return WebhookResponse::status(405, "use POST");
    }
    let Some(ctx) = shared.bridge() else {
        return WebhookResponse::status(503, "the bridge has not started");
    };
    let query: Vec<(String, String)> = form_urlencoded::parse(request.query.as_bytes())
        .into_owned()
        .collect();
    let Ok(body) = String::from_utf8(request.body) else {
        return WebhookResponse::status(400, "the body is not UTF-8");
    };
    let account = if request.path == "/deliver" {
        param(&query, "to")
    } else {
        param(&query, "account")
    };
    let Some(account) = account.filter(|a| !a.is_empty()) else {
        return WebhookResponse::status(400, "missing the account (to= or account=)");
    };
    let owner = match ctx.users.owner(account).await {
        Ok(Some(o)) => o,
        Ok(None) => {
            return WebhookResponse::status(404, &format!("no XMPP user registered {account}"));
        }
        Err(e) => return WebhookResponse::status(500, &e.to_string()),
    };
    let (event, id) = if request.path == "/deliver" {
        let Some(from) = param(&query, "from").filter(|f| valid_name(f) && *f != account) else {
            return WebhookResponse::status(400, "missing or bad from=");
        };
        if body.is_empty() {
            return WebhookResponse::status(400, "empty message");
        }
        let id = shared.new_id();
        let contact = ContactId::new(from);
        let mut m = IncomingMessage::text(
            Address::Contact(contact.clone()),
            Sender::Contact(contact),
            body,
        );
        m.id = Some(id.clone());
        (Event::Message(m), id)
    } else {
        let Some(contact) = param(&query, "contact").filter(|c| valid_name(c)) else {
            return WebhookResponse::status(400, "missing or bad contact=");
        };
        let last = match ctx.store.get(&Shared::last_key(account, contact)) {
            Ok(Some(id)) => MessageId::new(String::from_utf8_lossy(&id).into_owned()),
            Ok(None) => {
                return WebhookResponse::status(
                    404,
                    &format!("{account} sent nothing to {contact}"),
                );
            }
            Err(e) => return WebhookResponse::status(500, &e.to_string()),
        };
        let event = Event::DeliveryFailed {
            chat: Address::Contact(ContactId::new(contact)),
            id: last.clone(),
            error: BridgeError::remote(if body.is_empty() {
                "the test network could not deliver it".to_owned()
            } else {
                body
            }),
            permanent: param(&query, "permanent") != Some("0"),
        };
        (event, last)
    };
    match ctx.users.deliver(&owner, vec![event]).await {
        Ok(()) => WebhookResponse::status(200, id.as_str()),
        Err(e @ (RouteError::NotRegistered(_) | RouteError::NotAllowed(_))) => {
            WebhookResponse::status(404, &e.to_string())
        }
        Err(e) => WebhookResponse::status(503, &e.to_string()),
    }
}

fn password(shared: &Shared, query: &[(String, String)], body: String) -> WebhookResponse {
    let Some(account) = param(query, "account") else {
        return WebhookResponse::status(400, "missing account=");
    };
    if body.is_empty() {
        return WebhookResponse::status(400, "empty password");
    }
    let mut st = shared.lock();
    match st.accounts.get_mut(account) {
        None => WebhookResponse::status(404, &format!("no account {account}")),
        Some(p) => {
            *p = body;
            st.event_to_account(
                account,
                &Event::Connection(ConnectionState::LoginRequired(
                    "the password of your test network account changed".into(),
                )),
            );
            WebhookResponse::status(200, "ok")
        }
    }
}

fn disconnect(shared: &Shared, query: &[(String, String)]) -> WebhookResponse {
    let Some(account) = param(query, "account") else {
        return WebhookResponse::status(400, "missing account=");
    };
    let st = shared.lock();
    if !st.accounts.contains_key(account) {
        return WebhookResponse::status(404, &format!("no account {account}"));
    }
    st.event_to_account(
        account,
        &Event::Connection(ConnectionState::Reconnecting(
            "connection reset by the test network".into(),
        )),
    );
    st.event_to_account(
        account,
        &Event::Connection(ConnectionState::Connected(Some(format!(
            "Logged in as {account}"
        )))),
    );
    WebhookResponse::status(200, "ok")
}

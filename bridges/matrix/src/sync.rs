//! The sync loop of one user: long-polls `/sync`, turns what arrives into
//! events, and only then moves the delivered position forward.
//!
//! **Nothing lost, nothing doubled.** Ferry keeps its own sync position
//! (`sync/token` in the core's store), separate from matrix-sdk's: each
//! response is converted, sent to the core, [`EventSink::flush`]ed (the core
//! has stored everything), and only then is its `next_batch` saved. After a
//! restart the next sync starts from the saved position, so events that
//! arrived while ferry was down come in that sync, and events already
//! delivered do not. When a room had more news than one sync carries
//! (`limited` timeline), the gap back to the saved position is filled from
//! `/messages` before the sync's own events. A brand-new store (first
//! start after a re-login as a new device) asks for the full room state
//! from the saved position.
//!
//! The very first sync of a new registration delivers no old messages: it
//! announces the user's rooms (bookmarks), direct-chat partners (roster)
//! and pending invitations.
//!
//! [`EventSink::flush`]: ferry_bridge::EventSink::flush

use std::collections::{BTreeSet, HashMap};
use std::sync::Arc;
use std::time::{Duration, UNIX_EPOCH};

use ferry_bridge::{
    Avatar, ChatState, ConnectionState, ContactId, ContactInfo, Event, MessageId, Presence, Sender,
    Show,
};
use matrix_sdk::config::SyncSettings;
use matrix_sdk::deserialized_responses::ProcessedToDeviceEvent;
use matrix_sdk::room::MessagesOptions;
use matrix_sdk::ruma::api::Direction;
use matrix_sdk::ruma::api::client::filter::{
    FilterDefinition, LazyLoadOptions, RoomEventFilter, RoomFilter,
};
use matrix_sdk::ruma::api::client::sync::sync_events::v3::Filter;
use matrix_sdk::ruma::events::presence::PresenceEvent;
use matrix_sdk::ruma::events::receipt::ReceiptType;
use matrix_sdk::ruma::events::room::MediaSource;
use matrix_sdk::ruma::events::{AnyGlobalAccountDataEvent, AnySyncEphemeralRoomEvent};
use matrix_sdk::ruma::presence::PresenceState;
use matrix_sdk::ruma::{OwnedUserId, UInt};
use matrix_sdk::sync::SyncResponse;
use matrix_sdk::{Room, RoomState};
use tokio::sync::watch;

use crate::client::unknown_token;
use crate::ctx::{Chat, Ctx};
use crate::incoming::{Converter, Mode};
use crate::kv;
use crate::stores::StoreGate;

/// Largest avatar forwarded to the roster, in bytes.
const MAX_AVATAR: u64 = 512 * 1024;

/// How the loop ended.
#[derive(Debug, PartialEq, Eq)]
pub enum Exit {
    /// The access token is no longer valid.
    LoginRequired,
    /// Asked to stop (between two syncs), or the core went away.
    Stopped,
}

fn filter(limit: u32) -> Filter {
    Filter::FilterDefinition(filter_definition(limit))
}

/// What one sync asks for: `limit` timeline events per room, members lazily.
fn filter_definition(limit: u32) -> FilterDefinition {
    let mut timeline = RoomEventFilter::default();
    timeline.limit = Some(UInt::from(limit));
    timeline.lazy_load_options = LazyLoadOptions::Enabled {
        include_redundant_members: false,
    };
    let mut state = RoomEventFilter::default();
    state.lazy_load_options = LazyLoadOptions::Enabled {
        include_redundant_members: false,
    };
    let mut room = RoomFilter::default();
    room.timeline = timeline;
    room.state = state;
    let mut def = FilterDefinition::default();
    def.room = room;
    def
}

/// Runs the sync loop until the login stops working or `stop` turns true.
/// A stop request interrupts the long-poll but never the delivery of a
/// response: a batch is either delivered and its position saved, or not
/// started. `fresh_store`: the matrix-sdk store was just created.
pub async fn run(gate: Arc<StoreGate>, fresh_store: bool, mut stop: watch::Receiver<bool>) -> Exit {
    let shared = gate.shared().clone();
    let config = shared.config.clone();
    shared
        .emit(Event::Connection(ConnectionState::Connecting))
        .await;
    let mut token = match shared.kv.get(kv::SYNC_TOKEN).await {
        Ok(t) => t,
        Err(e) => {
            tracing::error!(error = %e, "cannot read the sync position");
            None
        }
    };
    let mut full_state = fresh_store && token.is_some();
    let mut first = true;
    let mut backoff = Duration::from_secs(1);
    loop {
        if *stop.borrow() {
            return Exit::Stopped;
        }
        let mut wait = if first {
            Duration::ZERO
        } else {
            config.sync_timeout()
        };
        // An idle account waits for news without its client.
        if !first
            && let Some(since) = &token
            && gate.close_if_idle().await
        {
            let news = tokio::select! {
                n = wait_for_news(&gate, since, wait) => n,
                _ = stop.changed() => return Exit::Stopped,
            };
            match news {
                Ok(false) => continue,
                Ok(true) => wait = Duration::ZERO,
                Err(e) => {
                    // The real sync below meets the same error and says it.
                    tracing::debug!(user = %shared.user, error = %e, "waiting for Matrix news failed");
                    wait = Duration::ZERO;
                }
            }
        }
        let open = match gate.hold().await {
            Ok(open) => open,
            Err(e) => {
                tracing::warn!(user = %shared.user, "{}", e.message);
                shared
                    .emit(Event::Connection(ConnectionState::Reconnecting(e.message)))
                    .await;
                tokio::select! {
                    _ = tokio::time::sleep(backoff) => {}
                    _ = stop.changed() => return Exit::Stopped,
                }
                backoff = (backoff * 2).min(Duration::from_secs(60));
                first = true;
                continue;
            }
        };
        let ctx: &Ctx = &open;
        let mut settings = SyncSettings::new()
            .filter(filter(config.timeline_limit))
            .set_presence(PresenceState::Offline)
            .full_state(full_state)
            .timeout(wait);
        if let Some(t) = &token {
            settings = settings.token(t.clone());
        }
        let result = tokio::select! {
            r = ctx.client.sync_once(settings) => r,
            _ = stop.changed() => return Exit::Stopped,
        };
        match result {
            Ok(response) => {
                backoff = Duration::from_secs(1);
                let news = has_news(&response);
                let next = response.next_batch.clone();
                let initial = token.is_none();
                process(ctx, response, token.as_deref(), initial).await;
                shared.synced();
                if first {
                    announce(ctx).await;
                    shared
                        .emit(Event::Connection(ConnectionState::Connected(Some(
                            format!("Logged in as {}", ctx.own()),
                        ))))
                        .await;
                    first = false;
                }
                if shared.events.flush().await.is_err() {
                    // The core is going away; do not move the position.
                    return Exit::Stopped;
                }
                if let Err(e) = shared.kv.put(kv::SYNC_TOKEN, next.clone()).await {
                    tracing::error!(error = %e, "cannot save the sync position");
                }
                token = Some(next);
                full_state = false;
                if !news {
                    open.quiet();
                }
            }
            Err(e) => {
                drop(open);
                if let Some(soft) = unknown_token(&e) {
                    let why = if soft {
                        "the homeserver asks ferry to log in again"
                    } else {
                        "ferry's Matrix device was logged out or its token revoked"
                    };
                    shared
                        .emit(Event::Connection(ConnectionState::LoginRequired(
                            why.into(),
                        )))
                        .await;
                    shared
                        .emit(Event::Notice(format!(
                            "Matrix: {why}. Run the \"re-login\" command with your password \
                             to continue; nothing that arrives meanwhile is lost."
                        )))
                        .await;
                    return Exit::LoginRequired;
                }
                let msg = crate::client::action_error("syncing", e).message;
                tracing::warn!(user = %shared.user, "{msg}");
                shared
                    .emit(Event::Connection(ConnectionState::Reconnecting(msg)))
                    .await;
                tokio::select! {
                    _ = tokio::time::sleep(backoff) => {}
                    _ = stop.changed() => return Exit::Stopped,
                }
                backoff = (backoff * 2).min(Duration::from_secs(60));
                first = true;
            }
        }
    }
}

/// Whether a sync response carries anything (a long-poll that timed out
/// carries nothing, and does not keep the client).
fn has_news(response: &SyncResponse) -> bool {
    !(response.rooms.is_empty()
        && response.presence.is_empty()
        && response.account_data.is_empty()
        && response.to_device.is_empty())
}

/// Why waiting for news failed.
#[derive(Debug, thiserror::Error)]
enum NewsError {
    #[error("{0}")]
    Http(#[from] matrix_sdk::reqwest::Error),
    #[error("the homeserver URL {0:?} cannot be used: {1}")]
    Url(String, url::ParseError),
    #[error("the homeserver answered {0}")]
    Status(matrix_sdk::reqwest::StatusCode),
}

/// Long-polls `/sync` from `since` without a matrix-sdk client: only the
/// stored access token, the homeserver's URL and the bridge's shared HTTP
/// client (whose connection pool all idle sessions share). Says whether
/// the homeserver has anything for this account; the answer itself is
/// only a signal (the real sync that follows fetches it again from
/// `since`, with the client built, so to-device messages and the position
/// are never lost: the homeserver deletes to-device messages only once a
/// later position is asked for). The same filter as the real sync, so the
/// same things wake it. An answer the homeserver refuses (a revoked token)
/// counts as news: the real sync meets it and tells the user.
async fn wait_for_news(gate: &StoreGate, since: &str, wait: Duration) -> Result<bool, NewsError> {
    let config = &gate.shared().config;
    let account = gate.account();
    let base = account.homeserver.trim_end_matches('/');
    let mut url = url::Url::parse(&format!("{base}/_matrix/client/v3/sync"))
        .map_err(|e| NewsError::Url(account.homeserver.clone(), e))?;
    let filter = serde_json::to_string(&filter_definition(config.timeline_limit))
        .unwrap_or_else(|_| "{}".to_owned());
    url.query_pairs_mut()
        .append_pair("filter", &filter)
        .append_pair("since", since)
        .append_pair("set_presence", "offline")
        .append_pair("timeout", &wait.as_millis().to_string())
        .append_pair("use_state_after", "true");
    let mut response = gate
        .http()
        .get(url)
        .bearer_auth(&account.access_token)
        .timeout(config.request_timeout() + wait)
        .send()
        .await?;
    let status = response.status();
    if status == matrix_sdk::reqwest::StatusCode::UNAUTHORIZED
        || status == matrix_sdk::reqwest::StatusCode::FORBIDDEN
    {
        return Ok(true);
    }
    if !status.is_success() {
        return Err(NewsError::Status(status));
    }
    let mut body = Vec::new();
    while let Some(chunk) = response.chunk().await? {
        body.extend_from_slice(&chunk);
        if body.len() > MAX_EMPTY_ANSWER {
            return Ok(true);
        }
    }
    Ok(answer_has_news(&body))
}

/// An answer to the bare long-poll larger than this carries something (one
/// with nothing new is well under 1 KiB); it is not read further.
const MAX_EMPTY_ANSWER: usize = 64 * 1024;

/// Whether the body of a `/sync` answer means the real sync should run: it
/// carries something, or it is not a sync answer at all (the real sync
/// meets the same answer, says what is wrong and backs off, where
/// treating it as "nothing new" would poll again at once).
fn answer_has_news(body: &[u8]) -> bool {
    match serde_json::from_slice::<serde_json::Value>(body) {
        Ok(answer) if answer.get("next_batch").is_some_and(|b| b.is_string()) => {
            carries_news(&answer)
        }
        _ => true,
    }
}

/// Whether the JSON of a `/sync` answer carries anything: rooms, presence,
/// account data, to-device messages or device-list changes.
fn carries_news(body: &serde_json::Value) -> bool {
    use serde_json::Value;
    [
        "/rooms/join",
        "/rooms/invite",
        "/rooms/leave",
        "/rooms/knock",
        "/presence/events",
        "/account_data/events",
        "/to_device/events",
        "/device_lists/changed",
        "/device_lists/left",
    ]
    .iter()
    .any(|p| match body.pointer(p) {
        Some(Value::Object(m)) => !m.is_empty(),
        Some(Value::Array(a)) => !a.is_empty(),
        _ => false,
    })
}

/// Delivers everything one sync response carries.
async fn process(ctx: &Ctx, response: SyncResponse, since: Option<&str>, initial: bool) {
    let shared = &ctx.shared;

    // Invitations.
    for room_id in response.rooms.invited.keys() {
        if let Some(room) = ctx.client.get_room(room_id) {
            invitation(ctx, &room).await;
        }
    }

    // Joined rooms: messages, state, typing, receipts.
    for (room_id, update) in &response.rooms.joined {
        let Some(room) = ctx.client.get_room(room_id) else {
            continue;
        };
        let conv = Converter::new(ctx, &room).await;
        if !initial {
            let events = &update.timeline.events;
            // Joined in this batch (here or elsewhere): what came before
            // the join is the room's history, not news, and there is no gap
            // to fill.
            let joined_at = events.iter().position(|e| is_own_join(ctx, e));
            let group = matches!(conv.chat(), Chat::Group(_));
            if joined_at.is_none()
                && update.timeline.limited
                && let (Some(prev), Some(since)) = (&update.timeline.prev_batch, since)
            {
                for ev in fill_gap(ctx, &room, prev, since).await {
                    for out in conv.event(&ev, Mode::Live).await {
                        shared.emit(out).await;
                    }
                }
            }
            for (i, ev) in events.iter().enumerate() {
                let mode = match joined_at {
                    Some(j) if group && i < j => Mode::History,
                    _ => Mode::Live,
                };
                for out in conv.event(ev, mode).await {
                    shared.emit(out).await;
                }
            }
            if let Chat::Direct(partner) = conv.chat()
                && events
                    .iter()
                    .any(|e| e.sender().as_deref() == Some(partner))
            {
                ctx.note_dm(partner, room_id).await;
            }
        }
        for raw in &update.ephemeral {
            match raw.deserialize() {
                Ok(AnySyncEphemeralRoomEvent::Typing(t)) => {
                    typing(ctx, &conv, &room, t.content.user_ids).await;
                }
                Ok(AnySyncEphemeralRoomEvent::Receipt(r)) if !initial => {
                    for (event_id, receipts) in r.content.0 {
                        for (kind, users) in receipts {
                            if !matches!(kind, ReceiptType::Read | ReceiptType::ReadPrivate) {
                                continue;
                            }
                            for user in users.keys() {
                                if user == ctx.own()
                                    && ctx.shared.mem().own_receipt_is(room_id, &event_id)
                                {
                                    continue;
                                }
                                shared
                                    .emit(Event::Displayed {
                                        chat: conv.chat().address(),
                                        by: conv.sender(user).await,
                                        up_to: MessageId::new(event_id.as_str()),
                                    })
                                    .await;
                            }
                        }
                    }
                }
                _ => {}
            }
        }
    }

    // Rooms the user left (elsewhere) or was removed from.
    if !initial {
        for (room_id, update) in &response.rooms.left {
            let Some(room) = ctx.client.get_room(room_id) else {
                continue;
            };
            let conv = Converter::new(ctx, &room).await;
            for ev in &update.timeline.events {
                for out in conv.event(ev, Mode::Live).await {
                    shared.emit(out).await;
                }
            }
        }
    }

    // Direct-chat partners (m.direct may have changed, or a room may have
    // been joined).
    let direct_changed = response
        .account_data
        .iter()
        .any(|raw| matches!(raw.deserialize(), Ok(AnyGlobalAccountDataEvent::Direct(_))));
    let new_rooms = {
        let mut mem = ctx.shared.mem();
        response
            .rooms
            .joined
            .keys()
            .filter(|r| mem.known_rooms.insert((*r).clone()))
            .count()
    };
    if direct_changed || new_rooms > 0 {
        contacts(ctx, false).await;
    }

    // Presence of contacts.
    for raw in &response.presence {
        if let Ok(p) = raw.deserialize() {
            presence(ctx, p).await;
        }
    }

    // Verification requests from the user's other devices.
    for ev in &response.to_device {
        let raw = match ev {
            ProcessedToDeviceEvent::Decrypted { raw, .. }
            | ProcessedToDeviceEvent::PlainText(raw) => raw,
            _ => continue,
        };
        if raw.get_field::<String>("type").ok().flatten().as_deref()
            == Some("m.key.verification.request")
        {
            let sender: Option<OwnedUserId> = raw.get_field("sender").ok().flatten();
            let flow: Option<String> = raw
                .get_field::<serde_json::Value>("content")
                .ok()
                .flatten()
                .and_then(|c| {
                    c.get("transaction_id")
                        .and_then(|t| t.as_str())
                        .map(str::to_owned)
                });
            if let (Some(sender), Some(flow)) = (sender, flow) {
                ctx.shared.verifying();
                ctx.shared
                    .mem()
                    .verification_requests
                    .push((sender.clone(), flow));
                shared
                    .emit(Event::Notice(format!(
                        "Matrix: {sender} asks to verify this session (ferry). Run the \
                         \"verify\" command to compare the emojis."
                    )))
                    .await;
            }
        }
    }
}

/// Whether an event is the user's own joining of the room.
fn is_own_join(ctx: &Ctx, ev: &matrix_sdk::deserialized_responses::TimelineEvent) -> bool {
    if ev.kind.event_type().as_deref() != Some("m.room.member") {
        return false;
    }
    let raw = ev.raw();
    let state_key: Option<String> = raw.get_field("state_key").ok().flatten();
    if state_key.as_deref() != Some(ctx.own().as_str()) {
        return false;
    }
    let membership = |v: Option<serde_json::Value>| {
        v.and_then(|c| {
            c.get("membership")
                .and_then(|m| m.as_str())
                .map(str::to_owned)
        })
    };
    let now = membership(raw.get_field("content").ok().flatten());
    let before = membership(
        raw.get_field::<serde_json::Value>("unsigned")
            .ok()
            .flatten()
            .and_then(|u| u.get("prev_content").cloned()),
    );
    now.as_deref() == Some("join") && before.as_deref() != Some("join")
}

/// Fetches the events between the saved position and the start of a
/// limited timeline, oldest first.
async fn fill_gap(
    ctx: &Ctx,
    room: &Room,
    prev_batch: &str,
    since: &str,
) -> Vec<matrix_sdk::deserialized_responses::TimelineEvent> {
    let limit = ctx.shared.config.gap_fill_limit;
    let mut out = Vec::new();
    let mut from = Some(prev_batch.to_owned());
    while let Some(token) = from.take() {
        if out.len() as u32 >= limit {
            break;
        }
        let mut options = MessagesOptions::new(Direction::Backward);
        options.from = Some(token);
        options.to = Some(since.to_owned());
        options.limit = UInt::from(100u32.min(limit - out.len() as u32));
        match room.messages(options).await {
            Ok(page) => {
                let n = page.chunk.len();
                out.extend(page.chunk);
                if n > 0 {
                    from = page.end;
                }
            }
            Err(e) => {
                tracing::warn!(room = %room.room_id(), error = %e, "could not fill a gap in the timeline");
                ctx.shared
                    .emit(Event::Notice(format!(
                        "Matrix: some messages of {} that arrived while ferry was away could \
                         not be fetched: {e}",
                        room.room_id()
                    )))
                    .await;
                break;
            }
        }
    }
    out.reverse();
    out
}

async fn typing(ctx: &Ctx, conv: &Converter<'_>, room: &Room, users: Vec<OwnedUserId>) {
    let now: BTreeSet<OwnedUserId> = users
        .into_iter()
        .filter(|u| u.as_str() != ctx.own().as_str())
        .collect();
    let before = ctx
        .shared
        .mem()
        .typing
        .insert(room.room_id().to_owned(), now.clone())
        .unwrap_or_default();
    for user in now.difference(&before) {
        ctx.shared
            .emit(Event::ChatState {
                chat: conv.chat().address(),
                from: conv.sender(user).await,
                state: ChatState::Composing,
            })
            .await;
    }
    for user in before.difference(&now) {
        ctx.shared
            .emit(Event::ChatState {
                chat: conv.chat().address(),
                from: conv.sender(user).await,
                state: ChatState::Paused,
            })
            .await;
    }
}

async fn invitation(ctx: &Ctx, room: &Room) {
    if room.state() != RoomState::Invited {
        return;
    }
    let details = room.invite_details().await.ok();
    let inviter = details.as_ref().map(|d| d.inviter_id.clone());
    let is_direct = details
        .as_ref()
        .and_then(|d| match &**d.invitee.event() {
            matrix_sdk::deserialized_responses::SyncOrStrippedState::Stripped(s) => {
                s.content.is_direct
            }
            matrix_sdk::deserialized_responses::SyncOrStrippedState::Sync(
                matrix_sdk::ruma::events::SyncStateEvent::Original(o),
            ) => o.content.is_direct,
            _ => None,
        })
        .unwrap_or(false);
    if is_direct && ctx.shared.auto_accept_direct() {
        // A direct chat is a 1:1 conversation, not a room to accept.
        let joined = match inviter.as_deref() {
            Some(partner) => ctx.accept_direct(room, partner).await,
            None => room.join().await,
        };
        if let Err(e) = joined {
            ctx.shared
                .emit(Event::Notice(format!(
                    "Matrix: could not accept the direct chat from {}: {e}",
                    inviter.as_deref().map(|u| u.as_str()).unwrap_or("someone")
                )))
                .await;
        }
        return;
    }
    let from = inviter.map(|u| Sender::Contact(ContactId::new(u.as_str())));
    ctx.shared
        .emit(Event::Invited {
            room: ctx.view_of(room.room_id()),
            from,
            reason: None,
            password: None,
        })
        .await;
}

/// Announces every joined room (bookmarks) and direct-chat partner
/// (roster), once per session start.
async fn announce(ctx: &Ctx) {
    for room in ctx.client.joined_rooms() {
        ctx.shared
            .mem()
            .known_rooms
            .insert(room.room_id().to_owned());
        if room.is_space() || ctx.dm_partner(&room).await.is_some() {
            continue;
        }
        let view = ctx.view_of(room.room_id());
        let name = crate::rooms::room_info(&room, view.clone()).await.name;
        ctx.shared
            .emit(Event::RoomAvailable {
                room: view,
                name,
                autojoin: true,
            })
            .await;
    }
    contacts(ctx, true).await;
}

/// Sends the direct-chat partners not announced yet in this session (all
/// of them when `all`).
pub async fn contacts(ctx: &Ctx, all: bool) {
    let mut partners: HashMap<OwnedUserId, Room> = HashMap::new();
    for room in ctx.client.joined_rooms() {
        if let Some(p) = ctx.dm_partner(&room).await {
            partners.entry(p).or_insert(room);
        }
    }
    for (user, room) in partners {
        let known = !ctx.shared.mem().contacts.insert(user.clone());
        if known && !all {
            continue;
        }
        let info = contact_info(ctx, &user, Some(&room)).await;
        ctx.shared.emit(Event::Contact(info)).await;
    }
}

/// Name and avatar of a Matrix user, as a roster entry.
pub async fn contact_info(ctx: &Ctx, user: &OwnedUserId, room: Option<&Room>) -> ContactInfo {
    let mut name = None;
    let mut avatar_url = None;
    if let Some(room) = room
        && let Ok(Some(m)) = room.get_member_no_sync(user).await
    {
        name = m.display_name().map(str::to_owned);
        avatar_url = m.avatar_url().map(ToOwned::to_owned);
    }
    if name.is_none()
        && let Ok(profile) = ctx.client.account().fetch_user_profile_of(user).await
    {
        name = profile
            .get_static::<matrix_sdk::ruma::api::client::profile::DisplayName>()
            .ok()
            .flatten();
        avatar_url = profile
            .get_static::<matrix_sdk::ruma::api::client::profile::AvatarUrl>()
            .ok()
            .flatten();
    }
    let mut avatar = None;
    if let Some(url) = avatar_url
        && let Some(data) =
            crate::media::download_small(&ctx.client, MediaSource::Plain(url), MAX_AVATAR).await
    {
        let mime = sniff_image(&data).to_owned();
        avatar = Some(Avatar { data, mime });
    }
    ContactInfo {
        contact: ContactId::new(user.as_str()),
        name,
        avatar,
        in_roster: true,
        groups: vec!["Matrix".into()],
    }
}

fn sniff_image(data: &[u8]) -> &'static str {
    if data.starts_with(&[0x89, b'P', b'N', b'G']) {
        "image/png"
    } else if data.starts_with(&[0xff, 0xd8]) {
        "image/jpeg"
    } else if data.starts_with(b"GIF8") {
        "image/gif"
    } else if data.len() > 12 && &data[0..4] == b"RIFF" && &data[8..12] == b"WEBP" {
        "image/webp"
    } else {
        "application/octet-stream"
    }
}

async fn presence(ctx: &Ctx, p: PresenceEvent) {
    if !ctx.shared.mem().contacts.contains(&p.sender) {
        return;
    }
    let show = match p.content.presence {
        PresenceState::Online => Show::Available,
        PresenceState::Unavailable => Show::Away,
        PresenceState::Offline => Show::Offline,
        _ => Show::Available,
    };
    let last_active = p
        .content
        .last_active_ago
        .and_then(|ago| {
            std::time::SystemTime::now().checked_sub(Duration::from_millis(u64::from(ago)))
        })
        .filter(|t| *t > UNIX_EPOCH);
    ctx.shared
        .emit(Event::ContactPresence {
            contact: ContactId::new(p.sender.as_str()),
            presence: Presence {
                show,
                status: p.content.status_msg.filter(|s| !s.is_empty()),
                last_active: if show == Show::Available {
                    None
                } else {
                    last_active
                },
            },
        })
        .await;
}

#[cfg(test)]
mod tests {
    use super::{answer_has_news, carries_news};
    use serde_json::json;

    #[test]
    fn a_timed_out_long_poll_carries_no_news() {
        // What Synapse answers when the timeout passes with nothing new.
        let empty = json!({
            "next_batch": "s2_1",
            "account_data": {"events": []},
            "presence": {"events": []},
            "to_device": {"events": []},
            "device_lists": {"changed": [], "left": []},
            "device_one_time_keys_count": {"signed_curve25519": 50},
            "rooms": {"join": {}, "invite": {}, "leave": {}, "knock": {}}
        });
        assert!(!carries_news(&empty));
        assert!(!answer_has_news(empty.to_string().as_bytes()));
        assert!(!answer_has_news(br#"{"next_batch": "s2_1"}"#));
    }

    #[test]
    fn an_answer_that_is_not_a_sync_answer_wakes_the_real_sync() {
        // Otherwise a server that answers at once with something else
        // would be polled again and again without a pause.
        for body in [
            &b""[..],
            b"null",
            b"<html>502 Bad Gateway</html>",
            b"{}",
            br#"{"next_batch": 5}"#,
            b"\xff\xfe not UTF-8",
        ] {
            assert!(answer_has_news(body), "{}", String::from_utf8_lossy(body));
        }
    }

    #[test]
    fn anything_for_the_account_is_news() {
        for news in [
            json!({"rooms": {"join": {"!a:x": {}}}}),
            json!({"rooms": {"invite": {"!a:x": {}}}}),
            json!({"rooms": {"leave": {"!a:x": {}}}}),
            json!({"to_device": {"events": [{"type": "m.room.encrypted"}]}}),
            json!({"device_lists": {"changed": ["@b:x"]}}),
            json!({"device_lists": {"left": ["@b:x"]}}),
            json!({"presence": {"events": [{"type": "m.presence"}]}}),
            json!({"account_data": {"events": [{"type": "m.direct"}]}}),
        ] {
            assert!(carries_news(&news), "{news}");
        }
    }
}

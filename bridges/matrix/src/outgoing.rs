//! What the user does, done on Matrix: messages (formatted, replies,
//! threads, files), edits, redactions, reactions, typing, read receipts,
//! joins, room moderation, presence and history fetches.

use ferry_bridge::{
    Address, Affiliation, BridgeError, ChatState, ContactId, ErrorKind, Event, IncomingMessage,
    MessageId, MessageKind, Occupant, Outcome, OutgoingMessage, Presence, Role, RoomId,
    RoomListing, Show,
};
use matrix_sdk::attachment::AttachmentConfig;
use matrix_sdk::room::MessagesOptions;
use matrix_sdk::room::reply::Reply as SdkReply;
use matrix_sdk::ruma::api::Direction;
use matrix_sdk::ruma::api::client::presence::set_presence;
use matrix_sdk::ruma::api::client::receipt::create_receipt::v3::ReceiptType;
use matrix_sdk::ruma::events::reaction::ReactionEventContent;
use matrix_sdk::ruma::events::receipt::ReceiptThread;
use matrix_sdk::ruma::events::relation::{Annotation, InReplyTo, Reply, Thread};
use matrix_sdk::ruma::events::room::message::{
    Relation, ReplacementMetadata, RoomMessageEventContent, TextMessageEventContent,
};
use matrix_sdk::ruma::presence::PresenceState;
use matrix_sdk::ruma::{EventId, OwnedEventId, OwnedTransactionId, UInt, UserId};
use matrix_sdk::{Room, RoomState};

use crate::address::{RoomRef, parse_user};
use crate::client::{action_error, http_action_error};
use crate::ctx::Ctx;
use crate::html::rich_to_html;
use crate::incoming::{Converter, Mode};
use crate::kv;
use crate::media;
use crate::rooms;

fn event_id(id: &MessageId) -> Result<OwnedEventId, BridgeError> {
    EventId::parse(id.as_str()).map_err(|_| {
        BridgeError::not_found(format!(
            "{:?} is not a Matrix message ferry knows",
            id.as_str()
        ))
    })
}

fn txn(client_id: &str) -> OwnedTransactionId {
    if client_id.is_empty() || client_id.len() > 200 {
        matrix_sdk::ruma::TransactionId::new()
    } else {
        // The homeserver ignores a repeated transaction id: a message the
        // core re-sends after a restart is not posted twice.
        OwnedTransactionId::from(format!("ferry.{client_id}"))
    }
}

/// The text content of an outgoing message.
fn content(msg: &OutgoingMessage) -> RoomMessageEventContent {
    let html = msg
        .rich
        .as_ref()
        .filter(|r| r.is_styled())
        .map(rich_to_html);
    let body = msg.body.clone();
    match (msg.kind, html) {
        (MessageKind::Normal, Some(h)) => RoomMessageEventContent::text_html(body, h),
        (MessageKind::Normal, None) => RoomMessageEventContent::text_plain(body),
        (MessageKind::Notice, Some(h)) => RoomMessageEventContent::notice_html(body, h),
        (MessageKind::Notice, None) => RoomMessageEventContent::notice_plain(body),
        (MessageKind::Emote, Some(h)) => RoomMessageEventContent::emote_html(body, h),
        (MessageKind::Emote, None) => RoomMessageEventContent::emote_plain(body),
    }
}

/// The Matrix thread root an XMPP thread id stands for, if any. Only
/// threads that came from Matrix are continued: XMPP clients that put a
/// fresh `<thread/>` on every message must not split a chat into threads.
async fn thread_root(ctx: &Ctx, room: &Room, thread: &str) -> Option<OwnedEventId> {
    if let Ok(Some(root)) = ctx
        .shared
        .kv
        .get(kv::thread_key(room.room_id().as_str(), thread))
        .await
    {
        return EventId::parse(root).ok();
    }
    if thread.starts_with('$') {
        return EventId::parse(thread).ok();
    }
    None
}

/// Sends a message; answers its event id.
pub async fn send_message(ctx: &Ctx, msg: OutgoingMessage) -> Result<Outcome, BridgeError> {
    let room = ctx.room_for(&msg.to).await?;
    if let Address::Contact(c) = &msg.to
        && let Ok(user) = parse_user(c)
    {
        ctx.note_dm(&user, room.room_id()).await;
    }
    let reply_to = match &msg.reply_to {
        Some(r) => Some(event_id(&r.id)?),
        None => None,
    };
    let thread = match &msg.thread {
        Some(t) => thread_root(ctx, &room, t).await,
        None => None,
    };
    let mut last = None;
    // Files first, each with the text as caption when it is more than the
    // file's URL.
    let max = ctx.shared.config.max_media_bytes;
    let mut caption_used = false;
    for (i, attachment) in msg.attachments.iter().enumerate() {
        let fetched = media::fetch(
            ctx.client.http_client(),
            &ctx.shared.config.hosts,
            attachment,
            max,
            ctx.shared.config.request_timeout(),
        )
        .await?;
        let is_url_only = match &attachment.source {
            ferry_bridge::AttachmentSource::Url(u) => msg.body.trim() == u.trim(),
            ferry_bridge::AttachmentSource::Bytes(_) => false,
        };
        let caption = attachment.caption.clone().or_else(|| {
            (i == 0 && !is_url_only && !msg.body.trim().is_empty()).then(|| msg.body.clone())
        });
        if caption.is_some() && attachment.caption.is_none() {
            caption_used = true;
        }
        let mut config = AttachmentConfig::new()
            .caption(caption.map(TextMessageEventContent::plain))
            .txn_id(txn(&format!("{}.{i}", msg.client_id)));
        if let Some(r) = &reply_to {
            config.reply = Some(SdkReply {
                event_id: r.clone(),
                enforce_thread: matrix_sdk::room::reply::EnforceThread::MaybeThreaded,
                add_mentions: matrix_sdk::ruma::events::room::message::AddMentions::No,
            });
        }
        let response = room
            .send_attachment(&fetched.name, &fetched.mime, fetched.data, config)
            .await
            .map_err(|e| action_error("sending the file", e))?;
        ctx.shared.mem().remember_sent(response.event_id.clone());
        last = Some(response.event_id);
    }
    let body_sent_as_file = msg.attachments.iter().any(|a| match &a.source {
        ferry_bridge::AttachmentSource::Url(u) => msg.body.trim() == u.trim(),
        ferry_bridge::AttachmentSource::Bytes(_) => false,
    });
    if !msg.attachments.is_empty()
        && (caption_used || body_sent_as_file || msg.body.trim().is_empty())
    {
        return Ok(Outcome::Sent(
            last.map(|e| MessageId::new(e.as_str()))
                .into_iter()
                .collect(),
        ));
    }
    let mut content = content(&msg);
    content.relates_to = match (thread, reply_to) {
        (Some(root), Some(r)) => Some(Relation::Thread(Thread::reply(root, r))),
        (Some(root), None) => Some(Relation::Thread(Thread::plain(root.clone(), root))),
        (None, Some(r)) => Some(Relation::Reply(Reply::new(InReplyTo::new(r)))),
        (None, None) => None,
    };
    let sent = room
        .send(content)
        .with_transaction_id(txn(&msg.client_id))
        .await
        .map_err(|e| action_error("sending the message", e))?;
    let id = sent.response.event_id;
    ctx.shared.mem().remember_sent(id.clone());
    Ok(Outcome::sent(MessageId::new(id.as_str())))
}

/// Replaces the text of an earlier message.
pub async fn edit(
    ctx: &Ctx,
    msg: OutgoingMessage,
    replaces: MessageId,
) -> Result<Outcome, BridgeError> {
    let room = ctx.existing_room_for(&msg.to).await?;
    let original = event_id(&replaces)?;
    let new = content(&msg).make_replacement(ReplacementMetadata::new(original, None));
    let sent = room
        .send(new)
        .with_transaction_id(txn(&msg.client_id))
        .await
        .map_err(|e| action_error("editing the message", e))?;
    let id = sent.response.event_id;
    ctx.shared.mem().remember_sent(id.clone());
    Ok(Outcome::sent(MessageId::new(id.as_str())))
}

/// Redacts a message.
pub async fn retract(
    ctx: &Ctx,
    chat: &Address,
    target: &MessageId,
    moderate: Option<Option<String>>,
) -> Result<Outcome, BridgeError> {
    let room = ctx.existing_room_for(chat).await?;
    let id = event_id(target)?;
    let reason = moderate.flatten();
    let response = room
        .redact(&id, reason.as_deref(), None)
        .await
        .map_err(|e| http_action_error("deleting the message", e))?;
    ctx.shared.mem().remember_sent(response.event_id);
    Ok(Outcome::Done)
}

/// Makes the user's reactions to a message exactly `emojis`.
pub async fn react(
    ctx: &Ctx,
    chat: &Address,
    target: &MessageId,
    emojis: Vec<String>,
) -> Result<Outcome, BridgeError> {
    let room = ctx.existing_room_for(chat).await?;
    let target_id = event_id(target)?;
    let prefix = kv::reactions_prefix(target_id.as_str(), ctx.own().as_str());
    let current = ctx
        .shared
        .kv
        .list(prefix.clone())
        .await
        .map_err(kv::store_err)?;
    // Take back what is no longer wanted.
    for (key, emoji) in &current {
        if emojis.contains(emoji) {
            continue;
        }
        let Some(reaction) = key.strip_prefix(&prefix) else {
            continue;
        };
        let reaction_id = event_id(&MessageId::new(reaction))?;
        let response = room
            .redact(&reaction_id, None, None)
            .await
            .map_err(|e| http_action_error("removing the reaction", e))?;
        ctx.shared.mem().remember_sent(response.event_id);
        let _ = ctx.shared.kv.delete(key.clone()).await;
        let _ = ctx.shared.kv.delete(kv::reaction_key(reaction)).await;
    }
    // Add what is new.
    let have: Vec<&String> = current.iter().map(|(_, e)| e).collect();
    for emoji in &emojis {
        if have.contains(&emoji) {
            continue;
        }
        let content = ReactionEventContent::new(Annotation::new(target_id.clone(), emoji.clone()));
        let sent = room
            .send(content)
            .await
            .map_err(|e| action_error("reacting", e))?;
        let id = sent.response.event_id;
        ctx.shared.mem().remember_sent(id.clone());
        ctx.shared
            .kv
            .put(
                kv::reaction_key(id.as_str()),
                format!("{}\n{}\n{}", target_id, ctx.own(), emoji),
            )
            .await
            .map_err(kv::store_err)?;
        ctx.shared
            .kv
            .put(format!("{prefix}{id}"), emoji.clone())
            .await
            .map_err(kv::store_err)?;
    }
    Ok(Outcome::Done)
}

/// Typing notifications.
pub async fn chat_state(
    ctx: &Ctx,
    chat: &Address,
    state: ChatState,
) -> Result<Outcome, BridgeError> {
    // Typing to someone without a direct chat yet does not create one.
    let Ok(room) = ctx.existing_room_for(chat).await else {
        return Ok(Outcome::Done);
    };
    let typing = state == ChatState::Composing;
    room.typing_notice(typing)
        .await
        .map_err(|e| action_error("sending the typing notification", e))?;
    Ok(Outcome::Done)
}

/// Read receipt.
pub async fn displayed(
    ctx: &Ctx,
    chat: &Address,
    up_to: &MessageId,
) -> Result<Outcome, BridgeError> {
    let room = ctx.existing_room_for(chat).await?;
    let id = event_id(up_to)?;
    ctx.shared
        .mem()
        .own_receipts
        .insert(room.room_id().to_owned(), id.clone());
    room.send_single_receipt(ReceiptType::Read, ReceiptThread::Unthreaded, id)
        .await
        .map_err(|e| action_error("sending the read receipt", e))?;
    Ok(Outcome::Done)
}

/// Joins a room (if needed) and reports what a joining client needs.
pub async fn join(ctx: &Ctx, id: &RoomId) -> Event {
    match join_inner(ctx, id).await {
        Ok(ev) => ev,
        Err(error) => Event::RoomJoinFailed {
            room: id.clone(),
            error,
        },
    }
}

async fn join_inner(ctx: &Ctx, id: &RoomId) -> Result<Event, BridgeError> {
    let target = RoomRef::parse(id.as_str()).map_err(|e| BridgeError::bad_request(e.0))?;
    let room_id = match ctx.resolve(id, true).await {
        Ok(r) => r,
        Err(e) => {
            return Err(BridgeError::new(
                ErrorKind::NotFound,
                format!("no Matrix room {id}: {}", e.message),
            ));
        }
    };
    let room = match ctx.client.get_room(&room_id) {
        Some(r) if r.state() == RoomState::Joined => r,
        _ => {
            let via = Ctx::via(id.as_str());
            let alias_or_id: matrix_sdk::ruma::OwnedRoomOrAliasId = match &target {
                RoomRef::Alias(a) => a.clone().into(),
                RoomRef::Id(r) => r.clone().into(),
            };
            ctx.client
                .join_room_by_id_or_alias(&alias_or_id, &via)
                .await
                .map_err(|e| action_error(&format!("joining {id}"), e))?
        }
    };
    // A room joined just now: let the sync bring its state (name, topic,
    // members) before describing it. `sync_up` alone can wait for nothing:
    // when the sync that carried the join is processed before the join's own
    // answer, the room stays "partially synced" until something else happens
    // in it; the first sync processed after the join has its state either way.
    let wait = std::time::Duration::from_secs(15);
    tokio::select! {
        _ = tokio::time::timeout(wait, room.sync_up()) => {}
        _ = ctx.shared.next_sync(wait) => {}
    }
    if ctx.dm_partner(&room).await.is_some() {
        return Err(BridgeError::bad_request(format!(
            "{id} is a direct chat: write to the person's own address instead"
        )));
    }
    if let RoomRef::Alias(alias) = &target
        && ctx.view_of(room.room_id()).as_str() != alias.as_str()
    {
        ctx.set_view(room.room_id(), alias.as_str()).await;
    }
    room_joined(ctx, &room, id.clone()).await
}

/// The [`Event::RoomJoined`] of a joined room.
pub async fn room_joined(ctx: &Ctx, room: &Room, view: RoomId) -> Result<Event, BridgeError> {
    let (fresh, members) = rooms::load_members(room)
        .await
        .map_err(|e| action_error("loading the room's members", e))?;
    // Keep nicknames already handed out; add everyone else.
    let table = {
        let mut mem = ctx.shared.mem();
        let table = mem.nicks.entry(room.room_id().to_owned()).or_default();
        for m in &members {
            if table.nick(m.user_id()).is_none() {
                let name = fresh
                    .nick(m.user_id())
                    .map(str::to_owned)
                    .unwrap_or_else(|| rooms::member_name(m));
                table.assign(m.user_id(), &name);
            }
        }
        table.complete = true;
        table.clone()
    };
    let levels = room.power_levels_or_default().await;
    let own = ctx.own().to_owned();
    let mut occupants: Vec<Occupant> = Vec::with_capacity(members.len());
    let mut standing = Vec::with_capacity(members.len());
    for m in &members {
        let nick = table
            .nick(m.user_id())
            .map(str::to_owned)
            .unwrap_or_else(|| m.user_id().to_string());
        let o = rooms::occupant(nick, m.user_id(), &levels, &own);
        standing.push((m.user_id().to_owned(), (o.role, o.affiliation)));
        occupants.push(o);
    }
    if !occupants.iter().any(|o| o.is_self) {
        let nick = table
            .nick(&own)
            .map(str::to_owned)
            .unwrap_or_else(|| own.localpart().to_owned());
        occupants.push(rooms::occupant(nick, &own, &levels, &own));
    }
    {
        let mut mem = ctx.shared.mem();
        if let Some(t) = mem.nicks.get_mut(room.room_id()) {
            t.standing.extend(standing);
        }
    }
    let nick = occupants
        .iter()
        .find(|o| o.is_self)
        .map(|o| o.nick.clone())
        .unwrap_or_else(|| own.localpart().to_owned());
    let subject = rooms::subject(room, &table).await;
    Ok(Event::RoomJoined {
        info: rooms::room_info(room, view).await,
        nick,
        occupants,
        subject,
    })
}

/// The member behind a nickname (or contact address) in a room.
async fn member_of(
    ctx: &Ctx,
    room: &Room,
    who: &Address,
) -> Result<matrix_sdk::ruma::OwnedUserId, BridgeError> {
    match who {
        Address::Contact(c) => parse_user(c).map_err(|e| BridgeError::bad_request(e.0)),
        Address::Occupant { nick, .. } => nick_user(ctx, room, nick).await,
        _ => Err(BridgeError::bad_request(
            "name a room member or a Matrix user",
        )),
    }
}

async fn nick_user(
    ctx: &Ctx,
    room: &Room,
    nick: &str,
) -> Result<matrix_sdk::ruma::OwnedUserId, BridgeError> {
    if let Some(u) = ctx
        .shared
        .mem()
        .nicks
        .get(room.room_id())
        .and_then(|t| t.user(nick).cloned())
    {
        return Ok(u);
    }
    if let Ok(u) = UserId::parse(nick) {
        return Ok(u);
    }
    Err(BridgeError::not_found(format!(
        "nobody is called {nick:?} in this room"
    )))
}

/// Sets the room's topic.
pub async fn set_subject(ctx: &Ctx, room: &RoomId, subject: &str) -> Result<Outcome, BridgeError> {
    let room = ctx.joined_room(room).await?;
    room.set_room_topic(subject)
        .await
        .map_err(|e| action_error("changing the topic", e))?;
    Ok(Outcome::Done)
}

/// Sets the user's display name in one room.
pub async fn change_nick(ctx: &Ctx, room: &RoomId, nick: &str) -> Result<Outcome, BridgeError> {
    let room = ctx.joined_room(room).await?;
    room.set_own_member_display_name(Some(nick.to_owned()))
        .await
        .map_err(|e| action_error("changing your name in the room", e))?;
    Ok(Outcome::Done)
}

/// Removes someone from a room.
pub async fn kick(
    ctx: &Ctx,
    room: &RoomId,
    nick: &str,
    reason: Option<&str>,
) -> Result<Outcome, BridgeError> {
    let room = ctx.joined_room(room).await?;
    let user = nick_user(ctx, &room, nick).await?;
    room.kick_user(&user, reason)
        .await
        .map_err(|e| action_error(&format!("removing {nick}"), e))?;
    Ok(Outcome::Done)
}

/// Changes a role (power level, or kick).
pub async fn set_role(
    ctx: &Ctx,
    room: &RoomId,
    nick: &str,
    role: Role,
    reason: Option<&str>,
) -> Result<Outcome, BridgeError> {
    if role == Role::None {
        return kick(ctx, room, nick, reason).await;
    }
    let room = ctx.joined_room(room).await?;
    let user = nick_user(ctx, &room, nick).await?;
    let levels = room.power_levels_or_default().await;
    let level = rooms::level_for_role(&levels, role);
    room.update_power_levels(vec![(&user, level)])
        .await
        .map_err(|e| action_error(&format!("changing the power level of {nick}"), e))?;
    Ok(Outcome::Done)
}

/// Changes an affiliation (power level, ban, unban).
pub async fn set_affiliation(
    ctx: &Ctx,
    room: &RoomId,
    target: &Address,
    affiliation: Affiliation,
    reason: Option<&str>,
) -> Result<Outcome, BridgeError> {
    let room = ctx.joined_room(room).await?;
    let user = member_of(ctx, &room, target).await?;
    match affiliation {
        Affiliation::Outcast => room
            .ban_user(&user, reason)
            .await
            .map_err(|e| action_error(&format!("banning {user}"), e))?,
        other => {
            let banned = matches!(
                room.get_member_no_sync(&user).await,
                Ok(Some(m)) if *m.membership() == matrix_sdk::ruma::events::room::member::MembershipState::Ban
            );
            if banned {
                room.unban_user(&user, reason)
                    .await
                    .map_err(|e| action_error(&format!("unbanning {user}"), e))?;
            }
            if other == Affiliation::None && banned {
                return Ok(Outcome::Done);
            }
            let levels = room.power_levels_or_default().await;
            let level = rooms::level_for_affiliation(&levels, other);
            room.update_power_levels(vec![(&user, level)])
                .await
                .map_err(|e| action_error(&format!("changing the power level of {user}"), e))?;
        }
    }
    Ok(Outcome::Done)
}

/// Invites someone.
pub async fn invite(ctx: &Ctx, room: &RoomId, invitee: &Address) -> Result<Outcome, BridgeError> {
    let room = ctx.joined_room(room).await?;
    let user = match invitee {
        Address::Contact(c) => parse_user(c).map_err(|e| BridgeError::bad_request(e.0))?,
        _ => {
            return Err(BridgeError::bad_request(
                "invite a Matrix user by their address (alice\\3aexample.org@gateway)",
            ));
        }
    };
    room.invite_user_by_id(&user)
        .await
        .map_err(|e| action_error(&format!("inviting {user}"), e))?;
    Ok(Outcome::Done)
}

/// Sets the user's Matrix presence.
pub async fn set_presence(ctx: &Ctx, presence: &Presence) -> Result<Outcome, BridgeError> {
    let state = match presence.show {
        Show::Available | Show::Chat => PresenceState::Online,
        Show::Away | Show::ExtendedAway | Show::DoNotDisturb => PresenceState::Unavailable,
        Show::Offline => PresenceState::Offline,
    };
    let mut request = set_presence::v3::Request::new(ctx.own().to_owned(), state);
    request.status_msg = presence.status.clone();
    ctx.client
        .send(request)
        .await
        .map_err(|e| http_action_error("setting your presence", e))?;
    Ok(Outcome::Done)
}

/// Older messages of a conversation, newest first, for the archive.
pub async fn fetch_history(
    ctx: &Ctx,
    chat: &Address,
    before: Option<&MessageId>,
    limit: u32,
) -> Result<Outcome, BridgeError> {
    let room = ctx.existing_room_for(chat).await?;
    let limit = limit.min(ctx.shared.config.history_fetch_limit).max(1);
    let from = match before {
        Some(id) => {
            let id = event_id(id)?;
            let context = room
                .event_with_context(&id, true, UInt::from(0u32), None)
                .await
                .map_err(|e| action_error("finding the message in the history", e))?;
            Some(context.prev_batch_token.ok_or_else(|| {
                BridgeError::remote("the homeserver gave no history position for that message")
            })?)
        }
        None => None,
    };
    let conv = Converter::new(ctx, &room).await;
    let mut out: Vec<IncomingMessage> = Vec::new();
    let mut token = from;
    // A page can hold state events and reactions: page on until enough
    // messages are found or the history ends.
    for _ in 0..10 {
        let mut options = MessagesOptions::new(Direction::Backward);
        options.from = token.take();
        options.limit = UInt::from(limit);
        let page = room
            .messages(options)
            .await
            .map_err(|e| action_error("fetching the history", e))?;
        for ev in &page.chunk {
            for event in conv.event(ev, Mode::History).await {
                if let Event::Message(m) = event {
                    out.push(m);
                }
            }
            if out.len() as u32 >= limit {
                break;
            }
        }
        if out.len() as u32 >= limit || page.chunk.is_empty() {
            break;
        }
        match page.end {
            Some(end) => token = Some(end),
            None => break,
        }
    }
    Ok(Outcome::History(out))
}

/// The rooms the user is in.
pub async fn list_rooms(ctx: &Ctx) -> Result<Outcome, BridgeError> {
    let mut out = Vec::new();
    for room in ctx.client.joined_rooms() {
        if room.is_space() || ctx.dm_partner(&room).await.is_some() {
            continue;
        }
        let view = ctx.view_of(room.room_id());
        let info = rooms::room_info(&room, view.clone()).await;
        out.push(RoomListing {
            room: view,
            name: info.name,
            topic: info.description,
            occupants: info.occupant_count,
        });
    }
    out.sort_by(|a, b| a.name.cmp(&b.name));
    Ok(Outcome::Rooms(out))
}

/// The user added a Matrix contact: report their name and avatar.
pub async fn add_contact(ctx: &Ctx, contact: &ContactId) -> Result<Outcome, BridgeError> {
    let user = parse_user(contact).map_err(|e| BridgeError::bad_request(e.0))?;
    let room = ctx.dm_room(&user).await;
    let info = crate::sync::contact_info(ctx, &user, room.as_ref()).await;
    ctx.shared.mem().contacts.insert(user);
    ctx.shared.emit(Event::Contact(info)).await;
    Ok(Outcome::Done)
}

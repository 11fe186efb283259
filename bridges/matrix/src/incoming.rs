//! Matrix room events to bridge [`Event`]s: messages (text, notices,
//! emotes, formatted bodies, media, locations), edits, replies, threads,
//! reactions, redactions, undecryptable messages, and the membership,
//! topic, name and power-level changes of group rooms.
//!
//! Who wrote something: the user themself is [`Sender::Own`] (from another
//! Matrix client; what ferry itself sent is recognised by the transaction id
//! the homeserver echoes to the sending device, or by its event id, and
//! dropped), the partner of a direct chat is [`Sender::Contact`], a member
//! of a group room is [`Sender::Occupant`] with their nickname.

use std::time::{Duration, SystemTime};

use ferry_bridge::{Event, IncomingMessage, MessageId, MessageKind, ReplyTo, RoomExit, Sender};
use matrix_sdk::Room;
use matrix_sdk::deserialized_responses::{TimelineEvent, TimelineEventKind, UnableToDecryptReason};
use matrix_sdk::ruma::events::reaction::ReactionEventContent;
use matrix_sdk::ruma::events::room::MediaSource;
use matrix_sdk::ruma::events::room::member::{MembershipState, RoomMemberEventContent};
use matrix_sdk::ruma::events::room::message::{MessageType, Relation, RoomMessageEventContent};
use matrix_sdk::ruma::events::room::redaction::SyncRoomRedactionEvent;
use matrix_sdk::ruma::events::sticker::StickerMediaSource;
use matrix_sdk::ruma::events::{
    AnySyncMessageLikeEvent, AnySyncStateEvent, AnySyncTimelineEvent, SyncMessageLikeEvent,
    SyncStateEvent,
};
use matrix_sdk::ruma::{EventId, OwnedEventId, UserId};

use crate::ctx::{Chat, Ctx};
use crate::html::{html_to_rich, strip_plain_reply_fallback};
use crate::kv;
use crate::media::{self, MediaRef};
use crate::rooms::{self, system_time};

/// How converted events will be used.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum Mode {
    /// Happening now (or missed while ferry was down): delivered.
    Live,
    /// Older history for the archive: messages only, archive-only.
    History,
}

/// Messages older than this carry their timestamp (a delay mark).
const DELAY_THRESHOLD: Duration = Duration::from_secs(30);

/// Converts the events of one room.
pub struct Converter<'a> {
    ctx: &'a Ctx,
    room: &'a Room,
    chat: Chat,
}

impl<'a> Converter<'a> {
    /// A converter for one room.
    pub async fn new(ctx: &'a Ctx, room: &'a Room) -> Converter<'a> {
        let chat = ctx.chat_of(room).await;
        Converter { ctx, room, chat }
    }

    /// Which conversation this room is.
    pub fn chat(&self) -> &Chat {
        &self.chat
    }

    /// The nickname of a member of this (group) room.
    pub async fn nick(&self, user: &UserId) -> String {
        let room_id = self.room.room_id().to_owned();
        if let Some(n) = self
            .ctx
            .shared
            .mem()
            .nicks
            .get(&room_id)
            .and_then(|t| t.nick(user).map(str::to_owned))
        {
            return n;
        }
        let name = match self.room.get_member_no_sync(user).await {
            Ok(Some(m)) => rooms::member_name(&m),
            _ => user.localpart().to_owned(),
        };
        self.ctx
            .shared
            .mem()
            .nicks
            .entry(room_id)
            .or_default()
            .assign(user, &name)
    }

    /// Who someone is in this conversation.
    pub async fn sender(&self, user: &UserId) -> Sender {
        if user == self.ctx.own() {
            return Sender::Own;
        }
        match &self.chat {
            Chat::Direct(_) => Sender::Contact(ferry_bridge::ContactId::new(user.as_str())),
            Chat::Group(_) => Sender::Occupant(self.nick(user).await),
        }
    }

    /// Converts one timeline event.
    pub async fn event(&self, ev: &TimelineEvent, mode: Mode) -> Vec<Event> {
        let echo = self.is_echo(ev);
        if let TimelineEventKind::UnableToDecrypt { utd_info, .. } = &ev.kind {
            if echo {
                return Vec::new();
            }
            let (Some(id), Some(sender)) = (ev.event_id(), ev.sender()) else {
                return Vec::new();
            };
            return vec![
                self.undecryptable(id, &sender, &utd_info.reason, ev, mode)
                    .await,
            ];
        }
        let parsed = match ev.raw().deserialize() {
            Ok(p) => p,
            Err(e) => {
                tracing::debug!(error = %e, "skipping an event that does not parse");
                return Vec::new();
            }
        };
        let ts = ev.timestamp.map(system_time);
        match parsed {
            AnySyncTimelineEvent::MessageLike(AnySyncMessageLikeEvent::RoomMessage(
                SyncMessageLikeEvent::Original(m),
            )) => {
                if echo {
                    return Vec::new();
                }
                self.message(m.event_id, &m.sender, m.content, ts, mode)
                    .await
                    .into_iter()
                    .collect()
            }
            AnySyncTimelineEvent::MessageLike(AnySyncMessageLikeEvent::Sticker(
                SyncMessageLikeEvent::Original(s),
            )) => {
                if echo {
                    return Vec::new();
                }
                let source = match s.content.source.clone() {
                    StickerMediaSource::Plain(url) => MediaSource::Plain(url),
                    StickerMediaSource::Encrypted(file) => MediaSource::Encrypted(file),
                    _ => return Vec::new(),
                };
                let media = MediaRef {
                    source,
                    name: Some(s.content.body.clone()),
                    mime: s.content.info.mimetype.clone(),
                    size: s.content.info.size.map(u64::from),
                    caption: None,
                };
                let mut msg = self.base_message(s.event_id, &s.sender, ts, mode).await;
                self.attach(&mut msg, media).await;
                vec![Event::Message(msg)]
            }
            AnySyncTimelineEvent::MessageLike(AnySyncMessageLikeEvent::Reaction(
                SyncMessageLikeEvent::Original(r),
            )) => {
                if mode == Mode::History {
                    return Vec::new();
                }
                self.reaction(r.event_id, &r.sender, r.content, echo)
                    .await
                    .into_iter()
                    .collect()
            }
            AnySyncTimelineEvent::MessageLike(AnySyncMessageLikeEvent::RoomRedaction(
                SyncRoomRedactionEvent::Original(r),
            )) => {
                if mode == Mode::History {
                    return Vec::new();
                }
                let Some(target) = r.redacts.clone().or_else(|| r.content.redacts.clone()) else {
                    return Vec::new();
                };
                self.redaction(&r.sender, &target, r.content.reason.clone(), echo)
                    .await
                    .into_iter()
                    .collect()
            }
            AnySyncTimelineEvent::State(state) if mode == Mode::Live => self.state(state).await,
            _ => Vec::new(),
        }
    }

    /// Whether ferry itself sent this event (its echo).
    fn is_echo(&self, ev: &TimelineEvent) -> bool {
        if ev.sender().as_deref() != Some(self.ctx.own()) {
            return false;
        }
        if let Some(id) = ev.event_id()
            && self.ctx.shared.mem().was_sent(&id)
        {
            return true;
        }
        // The homeserver tells the sending device its transaction id.
        ev.raw()
            .get_field::<serde_json::Value>("unsigned")
            .ok()
            .flatten()
            .and_then(|u| u.get("transaction_id").cloned())
            .is_some()
    }

    async fn base_message(
        &self,
        id: OwnedEventId,
        sender: &UserId,
        ts: Option<SystemTime>,
        mode: Mode,
    ) -> IncomingMessage {
        let timestamp = match (mode, ts) {
            (Mode::History, t) => t,
            (Mode::Live, Some(t)) => {
                let age = SystemTime::now().duration_since(t).unwrap_or_default();
                (age > DELAY_THRESHOLD).then_some(t)
            }
            (Mode::Live, None) => None,
        };
        IncomingMessage {
            chat: self.chat.address(),
            from: self.sender(sender).await,
            id: Some(MessageId::new(id.as_str())),
            body: String::new(),
            subject: None,
            rich: None,
            kind: MessageKind::Normal,
            timestamp,
            replaces: None,
            reply_to: None,
            thread: None,
            attachments: Vec::new(),
            archive_only: mode == Mode::History,
        }
    }

    async fn attach(&self, msg: &mut IncomingMessage, media: MediaRef) {
        let max = self.ctx.shared.config.max_media_bytes;
        let caption = media.caption.clone();
        match media::download(&self.ctx.client, &media, max).await {
            Ok(a) => {
                msg.attachments.push(a);
                if let Some(c) = caption {
                    msg.body = c;
                }
            }
            Err(note) => {
                msg.body = match caption {
                    Some(c) => format!("{c}\n{note}"),
                    None => note,
                };
            }
        }
    }

    /// A message (or an edit of one).
    pub async fn message(
        &self,
        id: OwnedEventId,
        sender: &UserId,
        content: RoomMessageEventContent,
        ts: Option<SystemTime>,
        mode: Mode,
    ) -> Option<Event> {
        let mut msg = self.base_message(id, sender, ts, mode).await;
        let mut msgtype = content.msgtype;
        let mut is_reply = false;
        match content.relates_to {
            Some(Relation::Replacement(r)) => {
                msg.replaces = Some(MessageId::new(r.event_id.as_str()));
                msgtype = r.new_content.msgtype;
            }
            Some(Relation::Reply(r)) => {
                is_reply = true;
                msg.reply_to = Some(self.reply_to(&r.in_reply_to.event_id).await);
            }
            Some(Relation::Thread(t)) => {
                msg.thread = Some(self.thread_id(&t.event_id).await);
                if let (Some(in_reply_to), false) = (&t.in_reply_to, t.is_falling_back) {
                    is_reply = true;
                    msg.reply_to = Some(self.reply_to(&in_reply_to.event_id).await);
                }
            }
            _ => {}
        }
        let text = |body: &str, formatted: Option<&matrix_sdk::ruma::events::room::message::FormattedBody>| {
            let body = if is_reply {
                strip_plain_reply_fallback(body).to_owned()
            } else {
                body.to_owned()
            };
            let rich = formatted
                .filter(|f| f.format == matrix_sdk::ruma::events::room::message::MessageFormat::Html)
                .and_then(|f| html_to_rich(&f.body));
            (body, rich)
        };
        match msgtype {
            MessageType::Text(t) => {
                (msg.body, msg.rich) = text(&t.body, t.formatted.as_ref());
            }
            MessageType::Notice(n) => {
                (msg.body, msg.rich) = text(&n.body, n.formatted.as_ref());
                msg.kind = MessageKind::Notice;
            }
            MessageType::Emote(e) => {
                (msg.body, msg.rich) = text(&e.body, e.formatted.as_ref());
                msg.kind = MessageKind::Emote;
            }
            MessageType::ServerNotice(s) => {
                msg.body = s.body;
                msg.kind = MessageKind::Notice;
            }
            MessageType::Location(l) => {
                msg.body = format!("{} ({})", l.body, l.geo_uri);
            }
            MessageType::Image(i) => {
                let media = media_ref(
                    i.source,
                    i.filename,
                    i.body,
                    i.info.as_ref().and_then(|i| i.mimetype.clone()),
                    i.info.as_ref().and_then(|i| i.size).map(u64::from),
                );
                self.attach(&mut msg, media).await;
            }
            MessageType::File(f) => {
                let media = media_ref(
                    f.source,
                    f.filename,
                    f.body,
                    f.info.as_ref().and_then(|i| i.mimetype.clone()),
                    f.info.as_ref().and_then(|i| i.size).map(u64::from),
                );
                self.attach(&mut msg, media).await;
            }
            MessageType::Audio(a) => {
                let media = media_ref(
                    a.source,
                    a.filename,
                    a.body,
                    a.info.as_ref().and_then(|i| i.mimetype.clone()),
                    a.info.as_ref().and_then(|i| i.size).map(u64::from),
                );
                self.attach(&mut msg, media).await;
            }
            MessageType::Video(v) => {
                let media = media_ref(
                    v.source,
                    v.filename,
                    v.body,
                    v.info.as_ref().and_then(|i| i.mimetype.clone()),
                    v.info.as_ref().and_then(|i| i.size).map(u64::from),
                );
                self.attach(&mut msg, media).await;
            }
            MessageType::VerificationRequest(_) => {
                if sender == self.ctx.own() || mode == Mode::History {
                    return None;
                }
                msg.kind = MessageKind::Notice;
                msg.body = format!(
                    "{sender} asks to verify you. Run the gateway's \"verify\" command to \
                     compare emojis with them."
                );
                if let Some(id) = msg.id.as_ref() {
                    self.ctx.shared.verifying();
                    self.ctx
                        .shared
                        .mem()
                        .verification_requests
                        .push((sender.to_owned(), id.as_str().to_owned()));
                }
            }
            other => {
                msg.body = other.body().to_owned();
            }
        }
        if msg.body.is_empty() && msg.attachments.is_empty() {
            return None;
        }
        Some(Event::Message(msg))
    }

    async fn reply_to(&self, target: &EventId) -> ReplyTo {
        let mut reply = ReplyTo {
            id: MessageId::new(target.as_str()),
            author: None,
            quote: None,
        };
        if let Ok(original) = self.room.load_or_fetch_event(target, None).await {
            if let Some(sender) = original.sender() {
                reply.author = Some(self.sender(&sender).await);
            }
            if let Ok(AnySyncTimelineEvent::MessageLike(AnySyncMessageLikeEvent::RoomMessage(
                SyncMessageLikeEvent::Original(m),
            ))) = original.raw().deserialize()
            {
                let body = strip_plain_reply_fallback(m.content.body());
                let first: String = body
                    .lines()
                    .next()
                    .unwrap_or("")
                    .chars()
                    .take(100)
                    .collect();
                if !first.is_empty() {
                    reply.quote = Some(first);
                }
            }
        }
        reply
    }

    /// The XMPP thread id for a Matrix thread root.
    async fn thread_id(&self, root: &EventId) -> String {
        match self
            .ctx
            .shared
            .kv
            .get(kv::thread_root_key(root.as_str()))
            .await
        {
            Ok(Some(t)) => t,
            _ => root.to_string(),
        }
    }

    async fn reaction(
        &self,
        id: OwnedEventId,
        sender: &UserId,
        content: ReactionEventContent,
        echo: bool,
    ) -> Option<Event> {
        let target = content.relates_to.event_id;
        let key = content.relates_to.key;
        let kvs = &self.ctx.shared.kv;
        let index = format!("{}\n{}\n{}", target, sender, key);
        if let Err(e) = kvs.put(kv::reaction_key(id.as_str()), index).await {
            tracing::warn!(error = %e, "could not index a reaction");
        }
        let prefix = kv::reactions_prefix(target.as_str(), sender.as_str());
        if let Err(e) = kvs.put(format!("{prefix}{id}"), key).await {
            tracing::warn!(error = %e, "could not index a reaction");
        }
        if echo {
            return None;
        }
        Some(self.reaction_set(&target, sender).await)
    }

    async fn reaction_set(&self, target: &EventId, sender: &UserId) -> Event {
        let prefix = kv::reactions_prefix(target.as_str(), sender.as_str());
        let mut emojis: Vec<String> = self
            .ctx
            .shared
            .kv
            .list(prefix)
            .await
            .unwrap_or_default()
            .into_iter()
            .map(|(_, v)| v)
            .collect();
        emojis.sort();
        emojis.dedup();
        Event::Reactions {
            chat: self.chat.address(),
            from: self.sender(sender).await,
            target: MessageId::new(target.as_str()),
            emojis,
        }
    }

    async fn redaction(
        &self,
        by: &UserId,
        target: &EventId,
        reason: Option<String>,
        echo: bool,
    ) -> Option<Event> {
        let kvs = &self.ctx.shared.kv;
        if let Ok(Some(index)) = kvs.get(kv::reaction_key(target.as_str())).await {
            // A reaction was taken back.
            let mut parts = index.splitn(3, '\n');
            let (Some(t), Some(s)) = (parts.next(), parts.next()) else {
                return None;
            };
            let (Ok(reacted_to), Ok(reactor)) =
                (EventId::parse(t), matrix_sdk::ruma::UserId::parse(s))
            else {
                return None;
            };
            let _ = kvs.delete(kv::reaction_key(target.as_str())).await;
            let prefix = kv::reactions_prefix(reacted_to.as_str(), reactor.as_str());
            let _ = kvs.delete(format!("{prefix}{target}")).await;
            if echo {
                return None;
            }
            return Some(self.reaction_set(&reacted_to, &reactor).await);
        }
        if echo {
            return None;
        }
        let author = match self.room.load_or_fetch_event(target, None).await {
            Ok(ev) => ev.sender(),
            Err(_) => None,
        };
        let moderated = match author {
            Some(a) if a != by => Some(reason),
            _ => None,
        };
        Some(Event::Retracted {
            chat: self.chat.address(),
            by: self.sender(by).await,
            target: MessageId::new(target.as_str()),
            moderated,
        })
    }

    async fn undecryptable(
        &self,
        id: OwnedEventId,
        sender: &UserId,
        reason: &UnableToDecryptReason,
        ev: &TimelineEvent,
        mode: Mode,
    ) -> Event {
        let why = match reason {
            UnableToDecryptReason::MissingMegolmSession {
                withheld_code: Some(code),
            } => {
                format!("the sender's device withheld the key ({code})")
            }
            UnableToDecryptReason::MissingMegolmSession { .. }
            | UnableToDecryptReason::UnknownMegolmMessageIndex => {
                "this device did not receive the key for it (yet)".to_owned()
            }
            UnableToDecryptReason::SenderIdentityNotTrusted(_) => {
                "it comes from a device that is not verified, and this account only accepts \
                 messages from verified devices (preference \"trust_unverified_devices\")"
                    .to_owned()
            }
            other => format!("{other:?}"),
        };
        let mut msg = self
            .base_message(id, sender, ev.timestamp.map(system_time), mode)
            .await;
        msg.kind = MessageKind::Notice;
        msg.body = format!(
            "🔒 This encrypted message could not be decrypted: {why}. Verifying ferry's \
             device (the \"verify\" command) or importing your recovery key (\"recovery-key\") \
             helps."
        );
        Event::Message(msg)
    }

    async fn state(&self, state: AnySyncStateEvent) -> Vec<Event> {
        let view = match self.chat.clone() {
            Chat::Group(view) => view,
            Chat::Direct(partner) => return self.partner_profile(&partner, state).await,
        };
        match state {
            AnySyncStateEvent::RoomMember(SyncStateEvent::Original(ev)) => {
                let target = ev.state_key.clone();
                let prev = ev.unsigned.prev_content.as_ref();
                let was_joined = prev.is_some_and(|p| p.membership == MembershipState::Join);
                let prev_name = prev.and_then(|p| p.displayname.clone());
                self.member(
                    &view,
                    &ev.sender,
                    &target,
                    &ev.content,
                    was_joined,
                    prev_name,
                )
                .await
            }
            AnySyncStateEvent::RoomTopic(SyncStateEvent::Original(ev)) => {
                vec![Event::Subject {
                    room: view,
                    subject: ferry_bridge::Subject {
                        text: ev.content.topic,
                        by: Some(self.nick(&ev.sender).await),
                        at: Some(system_time(ev.origin_server_ts)),
                    },
                }]
            }
            AnySyncStateEvent::RoomName(_) | AnySyncStateEvent::RoomEncryption(_) => {
                vec![Event::RoomInfo(rooms::room_info(self.room, view).await)]
            }
            AnySyncStateEvent::RoomPowerLevels(_) => self.power_levels(&view).await,
            _ => Vec::new(),
        }
    }

    async fn member(
        &self,
        view: &ferry_bridge::RoomId,
        sender: &UserId,
        target: &UserId,
        content: &RoomMemberEventContent,
        was_joined: bool,
        prev_name: Option<String>,
    ) -> Vec<Event> {
        let own = target == self.ctx.own();
        let room_id = self.room.room_id().to_owned();
        let name = content
            .displayname
            .clone()
            .unwrap_or_else(|| target.localpart().to_owned());
        match &content.membership {
            MembershipState::Join if !was_joined => {
                if own {
                    return vec![Event::RoomAvailable {
                        room: view.clone(),
                        name: rooms::room_info(self.room, view.clone()).await.name,
                        autojoin: true,
                    }];
                }
                let nick = self
                    .ctx
                    .shared
                    .mem()
                    .nicks
                    .entry(room_id)
                    .or_default()
                    .assign(target, &name);
                let levels = self.room.power_levels_or_default().await;
                let occupant = rooms::occupant(nick, target, &levels, self.ctx.own());
                self.ctx
                    .shared
                    .mem()
                    .nicks
                    .entry(self.room.room_id().to_owned())
                    .or_default()
                    .standing
                    .insert(target.to_owned(), (occupant.role, occupant.affiliation));
                vec![Event::Occupant {
                    room: view.clone(),
                    occupant,
                }]
            }
            MembershipState::Join => {
                if prev_name == content.displayname {
                    return Vec::new();
                }
                let (old, new) = {
                    let mut mem = self.ctx.shared.mem();
                    let table = mem.nicks.entry(room_id).or_default();
                    let old = table.nick(target).map(str::to_owned);
                    (old, table.assign(target, &name))
                };
                match old {
                    Some(old) if old != new => vec![Event::NickChanged {
                        room: view.clone(),
                        old,
                        new,
                    }],
                    _ => Vec::new(),
                }
            }
            MembershipState::Leave | MembershipState::Ban => {
                let banned = content.membership == MembershipState::Ban;
                let by = if sender == target {
                    None
                } else {
                    Some(self.nick(sender).await)
                };
                let reason = content.reason.clone();
                let exit = match (banned, &by) {
                    (true, _) => RoomExit::Banned { by, reason },
                    (false, Some(_)) => RoomExit::Kicked { by, reason },
                    (false, None) => RoomExit::Left(reason),
                };
                if own {
                    self.ctx.shared.mem().nicks.remove(&room_id);
                    return vec![Event::RoomLeft {
                        room: view.clone(),
                        exit,
                    }];
                }
                if !was_joined {
                    return Vec::new();
                }
                let nick = self
                    .ctx
                    .shared
                    .mem()
                    .nicks
                    .get_mut(&room_id)
                    .and_then(|t| t.remove(target))
                    .unwrap_or_else(|| name.clone());
                vec![Event::OccupantLeft {
                    room: view.clone(),
                    nick,
                    exit,
                }]
            }
            _ => Vec::new(),
        }
    }

    /// Direct chats have no room state to show, but the partner changing
    /// their display name or avatar updates their roster entry (name,
    /// vCard / XEP-0084 avatar).
    async fn partner_profile(&self, partner: &UserId, state: AnySyncStateEvent) -> Vec<Event> {
        let AnySyncStateEvent::RoomMember(SyncStateEvent::Original(ev)) = state else {
            return Vec::new();
        };
        if ev.state_key != partner || ev.content.membership != MembershipState::Join {
            return Vec::new();
        }
        let Some(prev) = ev.unsigned.prev_content.as_ref() else {
            return Vec::new();
        };
        if prev.membership != MembershipState::Join
            || (prev.displayname == ev.content.displayname
                && prev.avatar_url == ev.content.avatar_url)
        {
            return Vec::new();
        }
        let user = partner.to_owned();
        vec![Event::Contact(
            crate::sync::contact_info(self.ctx, &user, Some(self.room)).await,
        )]
    }

    /// Occupants whose role or affiliation changed with new power levels.
    async fn power_levels(&self, view: &ferry_bridge::RoomId) -> Vec<Event> {
        let levels = self.room.power_levels_or_default().await;
        let room_id = self.room.room_id().to_owned();
        let users: Vec<_> = match self.ctx.shared.mem().nicks.get(&room_id) {
            Some(t) => t.users().cloned().collect(),
            None => return Vec::new(),
        };
        let mut out = Vec::new();
        for user in users {
            let now = rooms::standing(&levels, &user);
            let (changed, nick) = {
                let mut mem = self.ctx.shared.mem();
                let Some(table) = mem.nicks.get_mut(&room_id) else {
                    break;
                };
                let before = table.standing.insert(user.clone(), now);
                (before != Some(now), table.nick(&user).map(str::to_owned))
            };
            if let (true, Some(nick)) = (changed, nick) {
                out.push(Event::Occupant {
                    room: view.clone(),
                    occupant: rooms::occupant(nick, &user, &levels, self.ctx.own()),
                });
            }
        }
        out
    }
}

fn media_ref(
    source: matrix_sdk::ruma::events::room::MediaSource,
    filename: Option<String>,
    body: String,
    mime: Option<String>,
    size: Option<u64>,
) -> MediaRef {
    // Since Matrix 1.10: with a `filename`, the body is a caption.
    let caption = match &filename {
        Some(f) if *f != body && !body.is_empty() => Some(body.clone()),
        _ => None,
    };
    MediaRef {
        source,
        name: Some(filename.unwrap_or(body)),
        mime,
        size,
        caption,
    }
}

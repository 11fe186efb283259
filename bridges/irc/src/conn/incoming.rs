//! Everything a server sends once we are in: channel membership (JOIN,
//! PART, QUIT, KICK, NICK, NAMES, MODE, netsplit batches), topics,
//! messages (PRIVMSG, NOTICE, CTCP, TAGMSG, REDACT, multiline and history
//! batches, echoes of our own messages), invitations, away and account
//! changes, MONITOR, and error numerics matched to the request they
//! answer.

use std::sync::Arc;
use std::time::{Duration, Instant, SystemTime, UNIX_EPOCH};

use ferry_bridge::{
    Address, BridgeError, ChatState, ErrorKind, Event, IncomingMessage, MessageId, MessageKind,
    Occupant, Outcome, Presence, ReplyTo, RoomExit, RoomInfo, RoomListing, Sender, Show, Subject,
};

use super::channel::{ChanState, Channel, Member, muc_standing, parse_modes, parse_names_entry};
use super::{Batch, Conn, PendingKind, Phase, SPLIT_GRACE, Split};
use crate::ctcp;
use crate::intern::{intern, intern_opt};
use crate::proto::Message;

/// Messages older than this (by server-time) are shown with their date.
const LIVE_SKEW: Duration = Duration::from_secs(10);

/// The error kind a numeric stands for.
pub fn numeric_kind(code: &str) -> ErrorKind {
    match code {
        "401" | "402" | "403" | "406" => ErrorKind::NotFound,
        "404" | "481" | "482" | "473" | "474" | "484" | "485" | "489" | "520" => {
            ErrorKind::NotAllowed
        }
        "433" | "436" | "437" | "443" => ErrorKind::Conflict,
        "432" | "411" | "412" | "421" | "441" | "442" | "461" | "472" | "476" => {
            ErrorKind::BadRequest
        }
        "464" | "475" | "477" => ErrorKind::NotAuthorized,
        "405" | "407" | "471" => ErrorKind::ResourceConstraint,
        _ => ErrorKind::Remote,
    }
}

fn is_error_numeric(cmd: &str) -> bool {
    cmd.len() == 3
        && (cmd.starts_with('4') || cmd.starts_with('5'))
        && cmd.bytes().all(|b| b.is_ascii_digit())
}

/// Whether a QUIT reason is a classic netsplit ("server1 server2").
fn looks_like_netsplit(reason: &str) -> bool {
    let words: Vec<&str> = reason.split(' ').collect();
    words.len() == 2
        && words
            .iter()
            .all(|w| w.contains('.') && !w.starts_with('.') && !w.ends_with('.') && w.len() > 2)
}

impl Conn {
    /// A line arrived from the server.
    pub fn on_line(&mut self, line: &[u8], now: Instant) {
        self.last_read = now;
        self.ping_sent = None;
        let Some(msg) = Message::parse(line, self.fallback) else {
            return;
        };
        self.on_message(msg, now);
    }

    fn batch_of(&self, msg: &Message) -> Option<&Batch> {
        msg.tag("batch").and_then(|id| self.batches.get(id))
    }

    fn batch_kind(&self, msg: &Message) -> Option<&str> {
        self.batch_of(msg).map(|b| b.kind.as_str())
    }

    fn label_of(&self, msg: &Message) -> Option<String> {
        msg.tag("label")
            .map(str::to_owned)
            .or_else(|| self.batch_of(msg).and_then(|b| b.label.clone()))
    }

    /// Handles one parsed message.
    pub fn on_message(&mut self, msg: Message, now: Instant) {
        // Lines of a multiline batch are assembled at its end.
        if let Some(id) = msg.tag("batch")
            && let Some(b) = self.batches.get_mut(id)
            && b.kind == "draft/multiline"
            && (msg.command == "PRIVMSG" || msg.command == "NOTICE")
        {
            let concat = msg.tag("draft/multiline-concat").is_some();
            b.lines.push((msg.trailing().to_owned(), concat));
            if b.source.is_none() {
                b.source = msg.source.clone();
                b.command = msg.command.clone();
            }
            return;
        }
        if let Some(src) = &msg.source
            && src.user.is_some()
            && src.host.is_some()
            && self.is_me(&src.nick)
        {
            self.me = Some(src.clone());
        }
        if let Some(label) = self.label_of(&msg) {
            self.on_labeled(&label, &msg);
        }
        let cmd = msg.command.clone();
        match cmd.as_str() {
            "PING" => {
                let token = msg.param(0).to_owned();
                self.line_urgent("PONG", &[&token]);
            }
            "PONG" => {}
            "CAP" => self.on_cap(&msg),
            "AUTHENTICATE" => self.on_authenticate(&msg),
            "900" | "901" | "902" | "903" | "904" | "905" | "906" | "907" | "908" => {
                self.on_sasl_numeric(&msg)
            }
            "001" => self.on_welcome(&msg),
            "005" => self.on_isupport(&msg),
            "432" | "433" | "436" | "437" if self.phase == Phase::Registering && !self.welcomed => {
                self.on_nick_refused_registering(&msg)
            }
            "375" | "372" => self.on_motd(&msg),
            "376" | "422" => self.on_ready(),
            "ERROR" => self.server_error = Some(msg.trailing().to_owned()),
            "KILL" => self.on_kill(&msg),
            "BATCH" => self.on_batch(msg, now),
            "JOIN" => self.on_join(&msg),
            "PART" => self.on_part(&msg),
            "QUIT" => self.on_quit(&msg, now),
            "KICK" => self.on_kick(&msg),
            "NICK" => self.on_nick(&msg),
            "MODE" => self.on_mode(&msg),
            "TOPIC" => self.on_topic(&msg),
            "331" | "332" | "333" => self.on_topic_numeric(&msg),
            "353" => self.on_names(&msg),
            "366" => self.on_end_of_names(&msg),
            "PRIVMSG" | "NOTICE" => self.on_privmsg(msg, now),
            "TAGMSG" => self.on_tagmsg(&msg),
            "REDACT" => self.on_redact(&msg),
            "INVITE" => self.on_invite(&msg),
            "AWAY" => self.on_away(&msg),
            "ACCOUNT" => self.on_account(&msg),
            "CHGHOST" => self.on_chghost(&msg),
            "SETNAME" | "ACK" => {}
            "FAIL" | "WARN" | "NOTE" => self.on_standard_reply(&msg),
            "321" => {}
            "322" => self.on_list_entry(&msg),
            "323" => self.on_list_end(),
            "341" => self.resolve_generic(None, Ok(Outcome::Done)),
            "730" | "731" => self.on_monitor(&msg),
            "396" => {
                if let (Some(me), Some(host)) = (self.me.as_mut(), msg.params.get(1)) {
                    me.host = Some(host.clone());
                }
            }
            "002" | "003" | "004" | "042" | "250" | "251" | "252" | "253" | "254" | "255"
            | "265" | "266" | "315" | "324" | "329" | "352" | "354" | "732" | "733" | "734" => {}
            c if is_error_numeric(c) => self.on_error_numeric(&msg),
            c if c.len() == 3 && c.bytes().all(|b| b.is_ascii_digit()) => {
                if self.phase == Phase::Ready {
                    let text = msg.params.get(1..).map(|p| p.join(" ")).unwrap_or_default();
                    self.service_message(text);
                }
            }
            other => tracing::trace!(command = other, "ignored"),
        }
    }

    // --------------------------------------------------------- replies

    fn on_labeled(&mut self, label: &str, msg: &Message) {
        let Some(i) = self
            .pending
            .iter()
            .position(|p| p.label.as_deref() == Some(label))
        else {
            // A labeled echo of a message we sent.
            return;
        };
        let is_error = is_error_numeric(&msg.command) || msg.command == "FAIL";
        if is_error {
            let p = self.pending.remove(i);
            let text = msg.trailing().to_owned();
            if let Some(r) = p.reply {
                let kind = if msg.command == "FAIL" {
                    ErrorKind::Remote
                } else {
                    numeric_kind(&msg.command)
                };
                let _ = r.send(Err(BridgeError::new(kind, text)));
            }
            return;
        }
        let resolves = matches!(
            self.pending[i].kind,
            PendingKind::Generic { .. } | PendingKind::Nick { .. }
        );
        if resolves && (msg.command == "ACK" || msg.command != "BATCH") {
            let p = self.pending.remove(i);
            if let Some(r) = p.reply {
                let _ = r.send(Ok(Outcome::Done));
            }
        }
    }

    /// Resolves the oldest unlabeled generic request (of a channel).
    fn resolve_generic(&mut self, channel: Option<&str>, result: Result<Outcome, BridgeError>) {
        let folded = channel.map(|c| self.fold(c));
        let i = self.pending.iter().position(|p| {
            p.label.is_none()
                && match &p.kind {
                    PendingKind::Generic { channel: c } => {
                        folded.is_none() || c.as_deref() == folded.as_deref()
                    }
                    _ => false,
                }
        });
        if let Some(i) = i {
            let p = self.pending.remove(i);
            if let Some(r) = p.reply {
                let _ = r.send(result);
            }
        }
    }

    fn on_error_numeric(&mut self, msg: &Message) {
        let code = msg.command.as_str();
        let subject = msg.param(1).to_owned();
        let text = msg.trailing().to_owned();
        let kind = numeric_kind(code);
        // A labeled error was answered in on_labeled already.
        if msg.tag("label").is_some() || self.batch_of(msg).and_then(|b| b.label.as_ref()).is_some()
        {
            return;
        }
        let folded = self.fold(&subject);
        // Join failures.
        if let Some(ch) = self.channels.get(&folded)
            && ch.state == ChanState::Joining
            && matches!(
                code,
                "403"
                    | "405"
                    | "437"
                    | "471"
                    | "473"
                    | "474"
                    | "475"
                    | "477"
                    | "479"
                    | "489"
                    | "520"
            )
        {
            let room = ch.room.clone();
            let name = ch.name.clone();
            self.channels.remove(&folded);
            let why = match code {
                "475" => format!(
                    "Cannot join {name}: the channel needs a key (give it as the room password)"
                ),
                "474" => format!("Cannot join {name}: you are banned ({text})"),
                "473" => format!("Cannot join {name}: invitation only ({text})"),
                "471" => format!("Cannot join {name}: the channel is full ({text})"),
                _ => format!("Cannot join {name}: {text}"),
            };
            self.emit(Event::RoomJoinFailed {
                room,
                error: BridgeError::new(kind, why),
            });
            return;
        }
        // Messages that could not be delivered.
        if matches!(code, "401" | "404" | "406" | "407" | "412" | "489") {
            if let Some(i) = self.echoes.iter().position(|e| e.target == folded)
                && let Some(e) = self.echoes.remove(i)
                && let Some(r) = e.reply
            {
                let _ = r.send(Err(BridgeError::new(kind, format!("{subject}: {text}"))));
                return;
            }
            if let Some(i) = self.pending.iter().position(|p| matches!(&p.kind, PendingKind::Ctcp { nick, .. } if self.isupport.casemapping.eq(nick, &subject))) {
                let p = self.pending.remove(i);
                if let Some(r) = p.reply {
                    let _ = r.send(Err(BridgeError::new(kind, format!("{subject}: {text}"))));
                }
                return;
            }
        }
        if matches!(code, "432" | "433" | "436" | "437" | "484")
            && let Some(i) = self
                .pending
                .iter()
                .position(|p| matches!(p.kind, PendingKind::Nick { .. }))
        {
            let p = self.pending.remove(i);
            if let Some(r) = p.reply {
                let _ = r.send(Err(BridgeError::new(kind, format!("{subject}: {text}"))));
            }
            return;
        }
        if self.channels.contains_key(&folded) {
            let before = self.pending.len();
            self.resolve_generic(Some(&subject), Err(BridgeError::new(kind, text.clone())));
            if self.pending.len() < before {
                return;
            }
            if let Some(room) = self.channels.get(&folded).map(|c| c.room.clone()) {
                self.room_notice(room, format!("{subject}: {text}"));
                return;
            }
        }
        let detail = msg.params.get(1..).map(|p| p.join(" ")).unwrap_or_default();
        self.service_message(format!("Error {code}: {detail}"));
    }

    fn on_standard_reply(&mut self, msg: &Message) {
        if msg.tag("label").is_some() {
            return;
        }
        let text = format!("{} {}: {}", msg.command, msg.param(0), msg.trailing());
        self.service_message(text);
    }

    // ---------------------------------------------------------- batches

    fn on_batch(&mut self, msg: Message, now: Instant) {
        let reference = msg.param(0);
        if let Some(id) = reference.strip_prefix('+') {
            let kind = msg.param(1).to_owned();
            let params = msg.params.get(2..).map(|p| p.to_vec()).unwrap_or_default();
            let label = msg
                .tag("label")
                .map(str::to_owned)
                .or_else(|| self.batch_of(&msg).and_then(|b| b.label.clone()));
            self.batches.insert(
                id.to_owned(),
                Batch {
                    kind,
                    params,
                    tags: msg.tags.clone(),
                    label,
                    lines: Vec::new(),
                    source: msg.source.clone(),
                    command: String::new(),
                },
            );
            return;
        }
        let Some(id) = reference.strip_prefix('-') else {
            return;
        };
        let Some(batch) = self.batches.remove(id) else {
            return;
        };
        match batch.kind.as_str() {
            "draft/multiline" => {
                let mut text = String::new();
                for (i, (line, concat)) in batch.lines.iter().enumerate() {
                    if i > 0 && !concat {
                        text.push('\n');
                    }
                    text.push_str(line);
                }
                let target = batch.params.first().cloned().unwrap_or_default();
                let mut tags = batch.tags.clone();
                if let Some(l) = &batch.label
                    && !tags.iter().any(|(k, _)| k == "label")
                {
                    tags.push(("label".into(), l.clone()));
                }
                let synthetic = Message {
                    tags,
                    source: batch.source.clone(),
                    command: if batch.command.is_empty() {
                        "PRIVMSG".into()
                    } else {
                        batch.command.clone()
                    },
                    params: vec![target, text],
                };
                self.on_privmsg(synthetic, now);
            }
            "chathistory" => {
                let target = batch
                    .params
                    .first()
                    .map(|t| self.fold(t))
                    .unwrap_or_default();
                let label = batch.label.clone();
                let i = self.pending.iter().position(|p| match &p.kind {
                    PendingKind::History { target: t, .. } => {
                        (label.is_some() && p.label == label) || (p.label.is_none() && *t == target)
                    }
                    _ => false,
                });
                if let Some(i) = i {
                    let p = self.pending.remove(i);
                    if let (Some(r), PendingKind::History { mut msgs, .. }) = (p.reply, p.kind) {
                        msgs.reverse();
                        let _ = r.send(Ok(Outcome::History(msgs)));
                    }
                }
            }
            "labeled-response" => {
                if let Some(label) = &batch.label
                    && let Some(i) = self
                        .pending
                        .iter()
                        .position(|p| p.label.as_deref() == Some(label.as_str()))
                    && matches!(
                        self.pending[i].kind,
                        PendingKind::Generic { .. } | PendingKind::Nick { .. }
                    )
                {
                    let p = self.pending.remove(i);
                    if let Some(r) = p.reply {
                        let _ = r.send(Ok(Outcome::Done));
                    }
                }
            }
            "netsplit" => {
                let servers = batch.params.join(" ↔ ");
                let mut per_channel: std::collections::BTreeMap<String, usize> = Default::default();
                for s in &self.splits {
                    if s.reason == batch.params.join(" ") {
                        for c in &s.channels {
                            *per_channel.entry(c.clone()).or_default() += 1;
                        }
                    }
                }
                for (ch, n) in per_channel {
                    if let Some(room) = self
                        .channels
                        .get(&ch)
                        .filter(|c| c.synced)
                        .map(|c| c.room.clone())
                    {
                        self.room_notice(
                            room,
                            format!("Netsplit between {servers}: {n} users are gone for now"),
                        );
                    }
                }
            }
            _ => {}
        }
    }

    // --------------------------------------------------------- channels

    fn occupant_of(&self, m: &Member) -> Occupant {
        let (affiliation, role) = muc_standing(&m.modes, &self.isupport);
        let presence = match &m.away {
            Some(text) => Presence {
                show: Show::Away,
                status: (!text.is_empty()).then(|| text.to_string()),
                last_active: None,
            },
            None => Presence::available(),
        };
        Occupant {
            nick: m.nick.to_string(),
            role,
            affiliation,
            presence,
            contact: Some(self.contact(&m.nick)),
            stable_id: m.account.as_deref().map(str::to_owned),
            is_self: self.is_me(&m.nick),
        }
    }

    fn emit_occupant(&mut self, channel: &str, nick_folded: &str) {
        let Some(ch) = self.channels.get(channel) else {
            return;
        };
        if !ch.synced {
            return;
        }
        let Some(m) = ch.members.get(nick_folded) else {
            return;
        };
        let occupant = self.occupant_of(&m);
        let room = ch.room.clone();
        self.emit(Event::Occupant { room, occupant });
    }

    /// What the core shows about a channel.
    pub(super) fn room_info(&self, key: &str) -> Option<RoomInfo> {
        let ch = self.channels.get(key)?;
        Some(RoomInfo {
            room: ch.room.clone(),
            name: Some(ch.name.clone()),
            description: None,
            public: true,
            encrypted: false,
            non_anonymous: true,
            password_protected: ch.key.is_some(),
            occupant_count: Some(ch.members.len() as u32),
            history: ch.history,
            members: None,
        })
    }

    /// Reports a channel to the core as joined, with all it needs.
    pub(super) fn emit_room_joined(&mut self, key: &str) {
        let Some(info) = self.room_info(key) else {
            return;
        };
        let Some(ch) = self.channels.get(key) else {
            return;
        };
        let occupants: Vec<Occupant> = ch
            .members
            .all()
            .iter()
            .map(|m| self.occupant_of(m))
            .collect();
        let subject = ch.topic.clone();
        let nick = self.nick.clone();
        self.emit(Event::RoomJoined {
            info,
            nick,
            occupants,
            subject,
        });
    }

    fn on_join(&mut self, msg: &Message) {
        let Some(src) = msg.source.clone() else {
            return;
        };
        let name = msg.param(0).to_owned();
        let key = self.fold(&name);
        let account = if self.has_cap("extended-join") {
            msg.params.get(1).filter(|a| a.as_str() != "*").cloned()
        } else {
            None
        };
        if self.is_me(&src.nick) {
            match self.channels.get_mut(&key) {
                Some(ch) => {
                    ch.name = name;
                    ch.state = ChanState::Joined;
                    ch.synced = false;
                    ch.members.clear();
                    ch.names = Some(Default::default());
                }
                None => {
                    // Joined without a request of ours (a raw JOIN, a
                    // server-side join): keep it, and tell the user.
                    let room = self.env.addresses.room_id(&self.settings.server, &name);
                    let mut ch = Channel::new(&name, room.clone(), None, &self.env.members);
                    ch.state = ChanState::Joined;
                    ch.xmpp = false;
                    ch.persistent = true;
                    ch.names = Some(Default::default());
                    self.channels.insert(key.clone(), ch);
                    self.emit(Event::RoomAvailable {
                        room,
                        name: Some(name),
                        autojoin: true,
                    });
                }
            }
            return;
        }
        let nick_key = self.fold(&src.nick);
        let returning = self
            .splits
            .iter_mut()
            .find(|s| self.isupport.casemapping.eq(&s.nick, &src.nick));
        let mut silent = false;
        if let Some(split) = returning
            && let Some(pos) = split.channels.iter().position(|c| *c == key)
        {
            split.channels.remove(pos);
            silent = true;
        }
        self.splits.retain(|s| !s.channels.is_empty());
        let Some(ch) = self.channels.get_mut(&key) else {
            return;
        };
        let member = Member {
            nick: intern(&src.nick),
            modes: Arc::default(),
            away: None,
            account: intern_opt(account.as_deref()),
            user: intern_opt(src.user.as_deref()),
            host: intern_opt(src.host.as_deref()),
        };
        let shared_key = intern(&nick_key);
        if let Some(names) = ch.names.as_mut() {
            names.insert(Arc::clone(&shared_key), member.clone());
        }
        ch.members.insert(shared_key, member);
        if !silent {
            self.emit_occupant(&key, &nick_key);
        }
    }

    fn on_part(&mut self, msg: &Message) {
        let nick = msg.nick().to_owned();
        let name = msg.param(0);
        let key = self.fold(name);
        let reason = msg.params.get(1).cloned().filter(|r| !r.is_empty());
        if self.is_me(&nick) {
            if self
                .channels
                .get(&key)
                .is_some_and(|c| matches!(c.state, ChanState::Wanted | ChanState::Joining))
            {
                // The echo of an earlier leave: the user joins it again.
                return;
            }
            if let Some(ch) = self.channels.remove(&key)
                && !ch.leaving
                && ch.xmpp
                && ch.synced
            {
                self.emit(Event::RoomLeft {
                    room: ch.room,
                    exit: RoomExit::Left(reason),
                });
            }
            return;
        }
        let nick_key = self.fold(&nick);
        let Some(ch) = self.channels.get_mut(&key) else {
            return;
        };
        if ch.members.remove(nick_key.as_str()).is_some() && ch.synced {
            let room = ch.room.clone();
            self.emit(Event::OccupantLeft {
                room,
                nick,
                exit: RoomExit::Left(reason),
            });
        }
    }

    fn on_quit(&mut self, msg: &Message, now: Instant) {
        let nick = msg.nick().to_owned();
        if self.is_me(&nick) {
            return;
        }
        let reason = msg.params.first().cloned().filter(|r| !r.is_empty());
        let nick_key = self.fold(&nick);
        let split_reason = match self.batch_of(msg) {
            Some(b) if b.kind == "netsplit" => Some(b.params.join(" ")),
            _ => reason.clone().filter(|r| looks_like_netsplit(r)),
        };
        let mut gone_from = Vec::new();
        for (key, ch) in self.channels.iter_mut() {
            if ch.members.remove(nick_key.as_str()).is_some() && ch.synced {
                gone_from.push((key.clone(), ch.room.clone()));
            }
        }
        if let Some(split) = split_reason {
            if !gone_from.is_empty() {
                self.splits.push(Split {
                    nick,
                    channels: gone_from.into_iter().map(|(k, _)| k).collect(),
                    reason: split,
                    deadline: now + SPLIT_GRACE,
                });
            }
            return;
        }
        for (_, room) in gone_from {
            self.emit(Event::OccupantLeft {
                room,
                nick: nick.clone(),
                exit: RoomExit::Quit(reason.clone()),
            });
        }
    }

    fn on_kick(&mut self, msg: &Message) {
        let by = msg.nick().to_owned();
        let key = self.fold(msg.param(0));
        let victim = msg.param(1).to_owned();
        let reason = msg
            .params
            .get(2)
            .cloned()
            .filter(|r| !r.is_empty() && *r != victim);
        if self.is_me(&by) {
            self.resolve_generic(Some(msg.param(0)), Ok(Outcome::Done));
        }
        if self.is_me(&victim) {
            if let Some(ch) = self.channels.remove(&key)
                && ch.xmpp
                && ch.synced
            {
                self.emit(Event::RoomLeft {
                    room: ch.room,
                    exit: RoomExit::Kicked {
                        by: Some(by),
                        reason,
                    },
                });
            }
            return;
        }
        let victim_key = self.fold(&victim);
        let Some(ch) = self.channels.get_mut(&key) else {
            return;
        };
        if let Some(m) = ch.members.remove(victim_key.as_str())
            && ch.synced
        {
            let room = ch.room.clone();
            self.emit(Event::OccupantLeft {
                room,
                nick: m.nick.to_string(),
                exit: RoomExit::Kicked {
                    by: Some(by),
                    reason,
                },
            });
        }
    }

    /// `KILL nick :reason`: an operator (or the server) ends a connection.
    /// Ours is recorded for the operator's log and the reason shown when
    /// the connection drops right after.
    fn on_kill(&mut self, msg: &Message) {
        if !self.is_me(msg.param(0)) {
            return;
        }
        let by = msg.nick();
        let reason = msg.trailing();
        let text = if by.is_empty() {
            format!("killed: {reason}")
        } else {
            format!("killed by {by}: {reason}")
        };
        self.log_info("KILLed", &text);
        self.killed = Some(text);
    }

    fn on_nick(&mut self, msg: &Message) {
        let mut old = msg.nick().to_owned();
        let new = msg.param(0).to_owned();
        if new.is_empty() {
            return;
        }
        // InspIRCd answers a labeled NICK from the new mask
        // (`:new!u@h NICK new`): that is our own change.
        if old == new && new != self.nick {
            old = self.nick.clone();
        }
        let old_key = self.fold(&old);
        let new_key = self.fold(&new);
        let me = self.is_me(&old);
        if me {
            self.nick = new.clone();
            self.renote_nick();
            if let Some(src) = self.me.as_mut() {
                src.nick = new.clone();
            }
            let folded = self.fold(&new);
            let fold = self.isupport.casemapping;
            if let Some(i) = self.pending.iter().position(
                |p| matches!(&p.kind, PendingKind::Nick { new: n } if fold.fold(n) == folded),
            ) {
                let p = self.pending.remove(i);
                if let Some(r) = p.reply {
                    let _ = r.send(Ok(Outcome::Done));
                }
            }
        }
        let mut changed = Vec::new();
        let (new_shared, new_key_shared) = (intern(&new), intern(&new_key));
        for ch in self.channels.values_mut() {
            let renamed = ch.members.rename(
                old_key.as_str(),
                Arc::clone(&new_key_shared),
                Arc::clone(&new_shared),
            );
            if renamed && ch.synced {
                changed.push(ch.room.clone());
            }
        }
        for room in changed {
            self.emit(Event::NickChanged {
                room,
                old: old.clone(),
                new: new.clone(),
            });
        }
        if let Some(route) = self.pm_routes.remove(&old_key)
            && !matches!(route, Address::Occupant { .. })
        {
            self.pm_routes.insert(new_key, route);
        }
    }

    fn on_mode(&mut self, msg: &Message) {
        let target = msg.param(0);
        if !self.isupport.is_channel(target) {
            return;
        }
        let key = self.fold(target);
        let by = msg.nick().to_owned();
        let modestr = msg.param(1).to_owned();
        let args: Vec<String> = msg.params.get(2..).map(|p| p.to_vec()).unwrap_or_default();
        if self.is_me(&by) {
            self.resolve_generic(Some(target), Ok(Outcome::Done));
        }
        let changes = parse_modes(&modestr, &args, &self.isupport);
        let mut touched = Vec::new();
        let isupport = self.isupport.clone();
        let fold = self.isupport.casemapping;
        let Some(ch) = self.channels.get_mut(&key) else {
            return;
        };
        for (adding, mode, param) in &changes {
            if isupport.rank_of_mode(*mode).is_none() {
                continue;
            }
            let Some(p) = param else { continue };
            let pk = fold.fold(p);
            let present = ch
                .members
                .update(pk.as_str(), |m| m.set_mode(*mode, *adding))
                .is_some();
            if present && !touched.contains(&pk) {
                touched.push(pk);
            }
        }
        let synced = ch.synced;
        let room = ch.room.clone();
        for pk in touched {
            self.emit_occupant(&key, &pk);
        }
        if synced {
            let args = if args.is_empty() {
                String::new()
            } else {
                format!(" [{}]", args.join(" "))
            };
            self.room_notice(
                room,
                format!("Mode {} [{modestr}]{args} by {by}", msg.param(0)),
            );
        }
    }

    fn on_topic(&mut self, msg: &Message) {
        let key = self.fold(msg.param(0));
        let by = msg.nick().to_owned();
        if self.is_me(&by) {
            self.resolve_generic(Some(msg.param(0)), Ok(Outcome::Done));
        }
        let text = crate::format::strip(msg.params.get(1).map(String::as_str).unwrap_or(""));
        let Some(ch) = self.channels.get_mut(&key) else {
            return;
        };
        ch.topic = Subject {
            text,
            by: Some(by),
            at: Some(SystemTime::now()),
        };
        if ch.synced {
            let (room, subject) = (ch.room.clone(), ch.topic.clone());
            self.emit(Event::Subject { room, subject });
        }
    }

    fn on_topic_numeric(&mut self, msg: &Message) {
        let key = self.fold(msg.param(1));
        let code = msg.command.clone();
        let Some(ch) = self.channels.get_mut(&key) else {
            return;
        };
        match code.as_str() {
            "331" => ch.topic = Subject::default(),
            "332" => ch.topic.text = crate::format::strip(msg.trailing()),
            _ => {
                let setter = msg.param(2);
                ch.topic.by = Some(setter.split('!').next().unwrap_or(setter).to_owned());
                ch.topic.at = msg
                    .param(3)
                    .parse::<u64>()
                    .ok()
                    .map(|s| UNIX_EPOCH + Duration::from_secs(s));
            }
        }
        if ch.synced && code != "333" {
            let (room, subject) = (ch.room.clone(), ch.topic.clone());
            self.emit(Event::Subject { room, subject });
        }
    }

    fn on_names(&mut self, msg: &Message) {
        // 353 me = #chan :names…
        let key = self.fold(msg.param(2));
        let isupport = self.isupport.clone();
        let fold = self.isupport.casemapping;
        let Some(ch) = self.channels.get_mut(&key) else {
            return;
        };
        let names = ch.names.get_or_insert_with(Default::default);
        for entry in msg.trailing().split(' ').filter(|e| !e.is_empty()) {
            if let Some(m) = parse_names_entry(entry, &isupport) {
                let k = fold.fold(&m.nick);
                match names.get_mut(k.as_str()) {
                    Some(existing) => {
                        existing.modes = m.modes;
                        if m.host.is_some() {
                            existing.user = m.user;
                            existing.host = m.host;
                        }
                    }
                    None => {
                        names.insert(intern(&k), m);
                    }
                }
            }
        }
    }

    fn on_end_of_names(&mut self, msg: &Message) {
        let key = self.fold(msg.param(1));
        let Some(ch) = self.channels.get_mut(&key) else {
            return;
        };
        if let Some(mut names) = ch.names.take() {
            // Keep what JOIN/AWAY told us (account, away) about members.
            for (k, m) in names.iter_mut() {
                if let Some(old) = ch.members.get(k) {
                    if m.account.is_none() {
                        m.account = old.account;
                    }
                    if m.away.is_none() {
                        m.away = old.away;
                    }
                }
            }
            ch.members.replace(names);
        }
        if ch.synced {
            return;
        }
        ch.synced = true;
        let me = self.isupport.casemapping.fold(&self.nick);
        if !ch.members.contains(&me) {
            ch.members.insert(
                intern(&me),
                Member {
                    nick: intern(&self.nick),
                    ..Member::default()
                },
            );
        }
        if ch.xmpp {
            self.emit_room_joined(&key);
        }
    }

    fn on_invite(&mut self, msg: &Message) {
        let inviter = msg.nick().to_owned();
        let invitee = msg.param(0).to_owned();
        let channel = msg.param(1).to_owned();
        if self.is_me(&invitee) {
            let room = self.env.addresses.room_id(&self.settings.server, &channel);
            let from = Some(Sender::Contact(self.contact(&inviter)));
            self.emit(Event::Invited {
                room,
                from,
                reason: None,
                password: None,
            });
            return;
        }
        if self.is_me(&inviter) {
            self.resolve_generic(Some(&channel), Ok(Outcome::Done));
            return;
        }
        let key = self.fold(&channel);
        if let Some(room) = self
            .channels
            .get(&key)
            .filter(|c| c.synced)
            .map(|c| c.room.clone())
        {
            self.room_notice(room, format!("{inviter} invited {invitee} to {channel}"));
        }
    }

    fn on_away(&mut self, msg: &Message) {
        let nick = msg.nick().to_owned();
        let away = msg.params.first().cloned();
        let away_shared = intern_opt(away.as_deref());
        let nick_key = self.fold(&nick);
        let mut touched = Vec::new();
        for (key, ch) in self.channels.iter_mut() {
            if ch
                .members
                .update(nick_key.as_str(), |m| m.away = away_shared.clone())
                == Some(true)
            {
                touched.push(key.clone());
            }
        }
        for key in touched {
            self.emit_occupant(&key, &nick_key);
        }
        if self.monitor.contains(&nick_key) {
            let presence = match &away {
                Some(t) => Presence {
                    show: Show::Away,
                    status: Some(t.clone()),
                    last_active: None,
                },
                None => Presence::available(),
            };
            let contact = self.contact(&nick);
            self.emit(Event::ContactPresence { contact, presence });
        }
    }

    fn on_account(&mut self, msg: &Message) {
        let nick_key = self.fold(msg.nick());
        let account = msg
            .params
            .first()
            .filter(|a| a.as_str() != "*")
            .map(|a| intern(a));
        let mut touched = Vec::new();
        for (key, ch) in self.channels.iter_mut() {
            if ch
                .members
                .update(nick_key.as_str(), |m| m.account = account.clone())
                .is_some()
            {
                touched.push(key.clone());
            }
        }
        for key in touched {
            self.emit_occupant(&key, &nick_key);
        }
    }

    fn on_chghost(&mut self, msg: &Message) {
        let nick = msg.nick().to_owned();
        let (user, host) = (msg.param(0).to_owned(), msg.param(1).to_owned());
        let nick_key = self.fold(&nick);
        for ch in self.channels.values_mut() {
            ch.members.update(nick_key.as_str(), |m| {
                m.user = Some(intern(&user));
                m.host = Some(intern(&host));
            });
        }
        if self.is_me(&nick)
            && let Some(me) = self.me.as_mut()
        {
            me.user = Some(user);
            me.host = Some(host);
        }
    }

    fn on_monitor(&mut self, msg: &Message) {
        let online = msg.command == "730";
        for target in msg.trailing().split(',').filter(|t| !t.is_empty()) {
            let nick = target.split('!').next().unwrap_or(target);
            let contact = self.contact(nick);
            let presence = if online {
                Presence::available()
            } else {
                Presence::offline()
            };
            self.emit(Event::ContactPresence { contact, presence });
        }
    }

    fn on_list_entry(&mut self, msg: &Message) {
        let name = msg.param(1).to_owned();
        let users = msg.param(2).parse().ok();
        let topic = crate::format::strip(msg.params.get(3).map(String::as_str).unwrap_or(""));
        // InspIRCd puts the channel modes first: "[+nt] topic".
        let topic = match topic.strip_prefix("[+").and_then(|t| t.split_once("] ")) {
            Some((modes, rest)) if !modes.contains(']') => rest.to_owned(),
            _ => topic,
        };
        let room = self.env.addresses.room_id(&self.settings.server, &name);
        if let Some(p) = self
            .pending
            .iter_mut()
            .find(|p| matches!(p.kind, PendingKind::List { .. }))
            && let PendingKind::List { rooms } = &mut p.kind
            && rooms.len() < 10_000
        {
            rooms.push(RoomListing {
                room,
                name: Some(name),
                topic: (!topic.is_empty()).then_some(topic),
                occupants: users,
            });
        }
    }

    fn on_list_end(&mut self) {
        if let Some(i) = self
            .pending
            .iter()
            .position(|p| matches!(p.kind, PendingKind::List { .. }))
        {
            let p = self.pending.remove(i);
            if let (Some(r), PendingKind::List { rooms }) = (p.reply, p.kind) {
                let _ = r.send(Ok(Outcome::Rooms(rooms)));
            }
        }
    }

    // --------------------------------------------------------- messages

    /// The conversation and sender of a message from `nick` to `target`.
    fn conversation(&self, nick: &str, target: &str) -> Option<(Address, Sender)> {
        let (_, chan) = self.isupport.strip_statusmsg(target);
        let from_me = self.is_me(nick);
        if self.isupport.is_channel(chan) {
            let ch = self.channels.get(&self.fold(chan))?;
            let from = if from_me {
                Sender::Own
            } else {
                Sender::Occupant(nick.to_owned())
            };
            return Some((Address::Room(ch.room.clone()), from));
        }
        // A private message: to us, or our own echo to someone.
        let peer = if from_me { target } else { nick };
        let peer_key = self.fold(peer);
        let chat = match self.pm_routes.get(&peer_key) {
            Some(Address::Occupant { room, nick: n }) => {
                let still_there = self
                    .channels
                    .values()
                    .any(|c| c.room == *room && c.members.contains(peer_key.as_str()));
                if still_there {
                    Address::Occupant {
                        room: room.clone(),
                        nick: n.clone(),
                    }
                } else {
                    Address::Contact(self.contact(peer))
                }
            }
            _ => Address::Contact(self.contact(peer)),
        };
        let from = if from_me {
            Sender::Own
        } else {
            match &chat {
                Address::Occupant { nick: n, .. } => Sender::Occupant(n.clone()),
                _ => Sender::Contact(self.contact(nick)),
            }
        };
        Some((chat, from))
    }

    fn on_privmsg(&mut self, msg: Message, now: Instant) {
        let is_notice = msg.command == "NOTICE";
        let target = msg.param(0).to_owned();
        let text = msg.trailing().to_owned();
        let source = msg.source.clone().unwrap_or_default();
        let nick = source.nick.clone();
        // Server notices, and notices before we are in.
        if nick.is_empty()
            || source.is_server()
            || (self.phase != Phase::Ready && !self.registered_once)
        {
            if self.phase == Phase::Ready || !is_notice {
                let text = crate::format::strip(&text);
                self.service_message(text);
            }
            return;
        }
        let mut kind = if is_notice {
            MessageKind::Notice
        } else {
            MessageKind::Normal
        };
        let mut body = text.clone();
        if let Some(c) = ctcp::parse(&text) {
            if c.is("ACTION") {
                kind = MessageKind::Emote;
                body = c.args.to_owned();
            } else if is_notice {
                let (command, args) = (c.command.to_ascii_uppercase(), c.args.to_owned());
                self.on_ctcp_reply(&nick, &command, &args);
                return;
            } else {
                if !self.is_me(&nick) {
                    let (command, args) = (c.command.to_ascii_uppercase(), c.args.to_owned());
                    self.answer_ctcp(&nick, &command, &args, now);
                }
                return;
            }
        }
        // ChanServ's "[#chan] welcome" notices belong to the channel.
        if is_notice
            && !self.isupport.is_channel(&target)
            && let Some(rest) = body.strip_prefix('[')
            && let Some((chan, tail)) = rest.split_once("] ")
            && let Some(room) = self
                .channels
                .get(&self.fold(chan))
                .filter(|c| c.synced)
                .map(|c| c.room.clone())
        {
            let text = format!("{nick}: {}", crate::format::strip(tail));
            self.room_notice(room, text);
            return;
        }
        let Some((chat, from)) = self.conversation(&nick, &target) else {
            // A message to a channel we are not in ($* broadcasts …).
            let text = format!("{nick} → {target}: {}", crate::format::strip(&body));
            self.service_message(text);
            return;
        };
        let msgid = msg.tag("msgid").map(str::to_owned);
        let from_me = matches!(from, Sender::Own);
        // The echo of a message we sent: the session already has it.
        if from_me
            && self.has_cap("echo-message")
            && self.take_echo(&target, self.label_of(&msg).as_deref(), msgid.as_deref())
        {
            if !matches!(chat, Address::Room(_)) {
                self.private_activity(now);
            }
            if let Some(id) = &msgid {
                let me = self.nick.clone();
                self.remember_message(id, &me);
            }
            return;
        }
        if !matches!(chat, Address::Room(_)) {
            // Notices (services, bots) keep an open connection a while but
            // are no conversation to reconnect for.
            if is_notice {
                self.last_activity = now;
            } else {
                self.private_activity(now);
            }
        }
        let rich = crate::format::parse(&body);
        let mut m = IncomingMessage::text(chat, from, rich.to_plain());
        if rich.is_styled() {
            m.rich = Some(rich);
        }
        m.kind = kind;
        m.id = msgid.clone().map(MessageId::new);
        let in_history = self.batch_kind(&msg) == Some("chathistory");
        if let Some(t) = msg.tag("time").and_then(crate::time::parse_server_time) {
            let old = SystemTime::now()
                .duration_since(t)
                .map(|d| d > LIVE_SKEW)
                .unwrap_or(false);
            if old || in_history {
                m.timestamp = Some(t);
            }
        }
        if let Some(reply) = msg.tag("+draft/reply").or_else(|| msg.tag("+reply")) {
            m.reply_to = Some(ReplyTo {
                id: MessageId::new(reply),
                author: self
                    .author_of(reply)
                    .map(|n| Sender::Occupant(n.to_owned())),
                quote: None,
            });
        }
        if let Some(id) = &msgid {
            self.remember_message(id, &nick);
        }
        if in_history {
            m.archive_only = true;
            let batch_label = self.batch_of(&msg).and_then(|b| b.label.clone());
            let batch_target = self
                .batch_of(&msg)
                .and_then(|b| b.params.first().cloned())
                .map(|t| self.fold(&t));
            if let Some(p) = self.pending.iter_mut().find(|p| match &p.kind {
                PendingKind::History { target, .. } => {
                    (batch_label.is_some() && p.label == batch_label)
                        || Some(target) == batch_target.as_ref()
                }
                _ => false,
            }) {
                if let PendingKind::History { msgs, .. } = &mut p.kind {
                    msgs.push(m);
                }
                return;
            }
        }
        self.emit(Event::Message(m));
    }

    /// Matches an echo to one of our messages; true when it was ours.
    fn take_echo(&mut self, target: &str, label: Option<&str>, msgid: Option<&str>) -> bool {
        let folded = self.fold(target);
        let i = match label {
            Some(l) => self
                .echoes
                .iter()
                .position(|e| e.label.as_deref() == Some(l)),
            None => self
                .echoes
                .iter()
                .position(|e| e.label.is_none() && e.target == folded),
        };
        let Some(i) = i else { return false };
        let Some(e) = self.echoes.get_mut(i) else {
            return false;
        };
        if let Some(r) = e.reply.take() {
            let _ = r.send(Ok(Outcome::Sent(
                msgid.map(MessageId::new).into_iter().collect(),
            )));
        }
        e.remaining = e.remaining.saturating_sub(1);
        if e.remaining == 0 {
            self.echoes.remove(i);
        }
        true
    }

    fn on_ctcp_reply(&mut self, nick: &str, command: &str, args: &str) {
        let i = self.pending.iter().position(|p| match &p.kind {
            PendingKind::Ctcp {
                nick: n,
                query,
                token,
            } => {
                self.isupport.casemapping.eq(n, nick)
                    && match query {
                        super::CtcpQuery::Version => command == "VERSION",
                        super::CtcpQuery::Ping => command == "PING" && args.trim() == token,
                    }
            }
            _ => false,
        });
        let Some(i) = i else { return };
        let p = self.pending.remove(i);
        let Some(r) = p.reply else { return };
        let outcome = if command == "VERSION" {
            let text = crate::format::strip(args).trim().to_owned();
            let (name, version) = match text.split_once(' ') {
                Some((n, v)) => (n.to_owned(), v.trim().to_owned()),
                None => (text.clone(), String::new()),
            };
            Outcome::Version {
                name,
                version,
                os: None,
            }
        } else {
            Outcome::Done
        };
        let _ = r.send(Ok(outcome));
    }

    fn answer_ctcp(&mut self, nick: &str, command: &str, args: &str, now: Instant) {
        // One answer per two seconds: CTCP floods must not flood us off.
        if self
            .ctcp_answered
            .is_some_and(|t| now < t + Duration::from_secs(2))
        {
            return;
        }
        let answer = match command {
            "VERSION" => Some(self.env.version.clone()),
            "PING" => Some(args.to_owned()),
            "TIME" => Some(crate::time::ctcp_time(SystemTime::now())),
            "CLIENTINFO" => Some("ACTION CLIENTINFO PING TIME VERSION".to_owned()),
            _ => None,
        };
        if let Some(a) = answer {
            self.ctcp_answered = Some(now);
            let text = ctcp::format(command, &a);
            self.line("NOTICE", &[nick, &text]);
        }
    }

    fn on_tagmsg(&mut self, msg: &Message) {
        let nick = msg.nick().to_owned();
        if self.is_me(&nick) {
            return;
        }
        let Some((chat, from)) = self.conversation(&nick, msg.param(0)) else {
            return;
        };
        if let Some(t) = msg.tag("+typing").or_else(|| msg.tag("+draft/typing")) {
            let state = match t {
                "active" => ChatState::Composing,
                "paused" => ChatState::Paused,
                _ => ChatState::Active,
            };
            self.emit(Event::ChatState {
                chat: chat.clone(),
                from: from.clone(),
                state,
            });
        }
        let reply = msg
            .tag("+draft/reply")
            .or_else(|| msg.tag("+reply"))
            .map(str::to_owned);
        if let Some(target) = reply {
            let key = (target.clone(), self.fold(&nick));
            let mut changed = false;
            if let Some(emoji) = msg.tag("+draft/react").filter(|e| !e.is_empty()) {
                let set = self.reactions.entry(key.clone()).or_default();
                if !set.iter().any(|e| e == emoji) {
                    set.push(emoji.to_owned());
                    changed = true;
                }
            }
            if let Some(emoji) = msg.tag("+draft/unreact").filter(|e| !e.is_empty())
                && let Some(set) = self.reactions.get_mut(&key)
            {
                let before = set.len();
                set.retain(|e| e != emoji);
                changed |= set.len() != before;
            }
            if changed {
                let emojis = self.reactions.get(&key).cloned().unwrap_or_default();
                self.emit(Event::Reactions {
                    chat,
                    from,
                    target: MessageId::new(target),
                    emojis,
                });
            }
        }
    }

    fn on_redact(&mut self, msg: &Message) {
        let nick = msg.nick().to_owned();
        let target = msg.param(0).to_owned();
        let msgid = msg.param(1).to_owned();
        let reason = msg.params.get(2).cloned();
        if self.is_me(&nick) && self.label_of(msg).is_some() {
            return;
        }
        let Some((chat, by)) = self.conversation(&nick, &target) else {
            return;
        };
        let author_is_redacter = self
            .author_of(&msgid)
            .map(|a| a == self.fold(&nick))
            .unwrap_or(true);
        self.emit(Event::Retracted {
            chat,
            by,
            target: MessageId::new(msgid),
            moderated: (!author_is_redacter).then_some(reason),
        });
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn netsplit_reasons() {
        assert!(looks_like_netsplit("irc.a.net irc.b.net"));
        assert!(!looks_like_netsplit("Quit: bye"));
        assert!(!looks_like_netsplit("see you.later"));
        assert!(!looks_like_netsplit("a. b."));
    }

    #[test]
    fn numerics_map_to_kinds() {
        assert_eq!(numeric_kind("475"), ErrorKind::NotAuthorized);
        assert_eq!(numeric_kind("401"), ErrorKind::NotFound);
        assert_eq!(numeric_kind("433"), ErrorKind::Conflict);
        assert_eq!(numeric_kind("999"), ErrorKind::Remote);
    }
}

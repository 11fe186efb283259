//! The session's requests: joining and leaving (persistent channels stay),
//! sending, topics, nick changes, kicks, MUC roles and affiliations as
//! MODE, invitations, AWAY, CTCP queries, LIST, CHATHISTORY, MONITOR.

use std::time::Instant;

use ferry_bridge::{Affiliation, BridgeError, ErrorKind, Outcome, Role};

use super::channel::{affiliation_modes, mode_commands, role_modes};
use super::{
    ChanState, Channel, Conn, ConnInfo, CtcpQuery, Pending, PendingKind, Phase, REPLY_TIMEOUT,
    Reply, Request, Target,
};
use crate::proto::Line;

impl Conn {
    /// Handles one request of the session.
    pub fn on_request(&mut self, req: Request, now: Instant) {
        match req {
            Request::Join {
                channel,
                room,
                nick,
                key,
                history,
                persistent,
            } => {
                if !self.registered_once
                    && self.phase == Phase::Offline
                    && self.settings.nick.is_none()
                {
                    self.base_nick = nick.clone();
                    self.nick = nick;
                }
                let k = self.fold(&channel);
                match self.channels.get_mut(&k) {
                    Some(ch) if ch.xmpp && ch.room != room => {
                        // The same IRC channel under another spelling
                        // (`\` and `|` are one on most servers).
                        let error = BridgeError::new(
                            ErrorKind::Conflict,
                            format!(
                                "{} on {} is the channel you are already in as {}: IRC does not \
                                 tell the two names apart; use that room",
                                channel, self.settings.server, ch.name
                            ),
                        );
                        self.emit(ferry_bridge::Event::RoomJoinFailed { room, error });
                    }
                    Some(ch) => {
                        // A channel joined without the user's client (a
                        // server-side join, a persistent one) takes the
                        // room the user joins it as.
                        ch.room = room;
                        ch.xmpp = true;
                        ch.history = history;
                        ch.persistent = persistent;
                        if key.is_some() {
                            ch.key = key;
                        }
                        if ch.synced {
                            self.emit_room_joined(&k);
                        }
                    }
                    None => {
                        let mut ch = Channel::new(&channel, room, key, &self.env.members);
                        ch.history = history;
                        ch.persistent = persistent;
                        self.channels.insert(k, ch);
                        self.join_wanted();
                    }
                }
            }
            Request::Leave { channel, reason } => {
                let k = self.fold(&channel);
                let Some(ch) = self.channels.get_mut(&k) else {
                    return;
                };
                if ch.persistent {
                    // Bouncer mode: stay, keep reporting for the archive.
                    ch.xmpp = false;
                    return;
                }
                self.part(&k, reason, now);
            }
            Request::ChannelSettings {
                channel,
                persistent,
                history,
            } => {
                let k = self.fold(&channel);
                let Some(ch) = self.channels.get_mut(&k) else {
                    return;
                };
                ch.persistent = persistent;
                ch.history = history;
                if !persistent && !ch.xmpp {
                    self.part(&k, None, now);
                } else if ch.synced
                    && ch.xmpp
                    && let Some(info) = self.room_info(&k)
                {
                    self.emit(ferry_bridge::Event::RoomInfo(info));
                }
            }
            Request::Send { to, msg, reply } => match to {
                Target::Channel(name) => match self.joined_name(&name) {
                    Ok(wire) => self.send_message(&wire, &msg, reply, now),
                    Err(e) => {
                        let _ = reply.send(Err(e));
                    }
                },
                Target::Nick { nick, room } => {
                    let key = self.fold(&nick);
                    match room {
                        Some(room) => {
                            self.pm_routes.insert(
                                key,
                                ferry_bridge::Address::Occupant {
                                    room,
                                    nick: nick.clone(),
                                },
                            );
                        }
                        None => {
                            self.pm_routes.remove(&key);
                        }
                    }
                    self.private_activity(now);
                    self.send_message(&nick, &msg, reply, now);
                }
                Target::Server => {
                    self.last_activity = now;
                    let mut lines = Vec::new();
                    for l in msg
                        .body
                        .replace("\r\n", "\n")
                        .split('\n')
                        .filter(|l| !l.trim().is_empty())
                    {
                        match Line::raw(l) {
                            Ok(line) => lines.push(line),
                            Err(e) => {
                                let _ = reply
                                    .send(Err(BridgeError::bad_request(format!("Not sent: {e}"))));
                                return;
                            }
                        }
                    }
                    if lines.is_empty() {
                        let _ = reply.send(Err(BridgeError::bad_request(
                            "Type an IRC command, e.g. WHOIS nick",
                        )));
                        return;
                    }
                    for l in lines {
                        self.send_when_ready(l);
                    }
                    let _ = reply.send(Ok(Outcome::sent_none()));
                }
            },
            Request::Typing { to, state } => {
                if let Some(t) = self.wire_target(&to) {
                    self.send_typing(&t, state, now);
                }
            }
            Request::React {
                to,
                target,
                emojis,
                reply,
            } => match self.wire_target(&to) {
                Some(t) => self.send_reactions(&t, &target, emojis, reply),
                None => {
                    let _ = reply.send(Err(BridgeError::new(
                        ErrorKind::NotAllowed,
                        "Not in that channel",
                    )));
                }
            },
            Request::Redact {
                to,
                target,
                reason,
                reply,
            } => match self.wire_target(&to) {
                Some(t) => self.send_redaction(&t, &target, reason, reply, now),
                None => {
                    let _ = reply.send(Err(BridgeError::new(
                        ErrorKind::NotAllowed,
                        "Not in that channel",
                    )));
                }
            },
            Request::Topic {
                channel,
                topic,
                reply,
            } => {
                let wire = match self.joined_name(&channel) {
                    Ok(w) => w,
                    Err(e) => {
                        let _ = reply.send(Err(e));
                        return;
                    }
                };
                let reply = Some(reply);
                let topic = topic
                    .replace("\r\n", " ")
                    .replace(['\r', '\n'], " ")
                    .replace('\0', "");
                self.command_with_reply("TOPIC", &[&wire, &topic], Some(&wire), reply, now, false);
            }
            Request::Nick { nick, reply } => {
                if let Err(e) = crate::address::valid_nick(&nick) {
                    let _ = reply.send(Err(BridgeError::bad_request(e.0)));
                    return;
                }
                if self.phase != Phase::Ready {
                    self.base_nick = nick.clone();
                    if self.phase == Phase::Offline {
                        self.nick = nick;
                    } else {
                        self.line_urgent("NICK", &[&nick]);
                    }
                    let _ = reply.send(Ok(Outcome::Done));
                    return;
                }
                if self.is_me(&nick) && self.nick == nick {
                    let _ = reply.send(Ok(Outcome::Done));
                    return;
                }
                self.base_nick = nick.clone();
                let label = self.next_label();
                let tags: Vec<(&str, Option<&str>)> =
                    label.iter().map(|l| ("label", Some(l.as_str()))).collect();
                if let Ok(l) = Line::tagged(&tags, "NICK", &[&nick]) {
                    self.send(l);
                }
                self.pending.push(Pending {
                    label,
                    kind: PendingKind::Nick { new: nick },
                    reply: Some(reply),
                    deadline: now + REPLY_TIMEOUT,
                });
            }
            Request::Kick {
                channel,
                nick,
                reason,
                reply,
            } => {
                let wire = match self.joined_name(&channel) {
                    Ok(w) => w,
                    Err(e) => {
                        let _ = reply.send(Err(e));
                        return;
                    }
                };
                let reply = Some(reply);
                let reason = clean(reason.unwrap_or_default());
                let mut params = vec![wire.as_str(), nick.as_str()];
                if !reason.is_empty() {
                    params.push(&reason);
                }
                self.command_with_reply("KICK", &params, Some(&wire), reply, now, false);
            }
            Request::Role {
                channel,
                nick,
                role,
                reason,
                reply,
            } => {
                if role == Role::None {
                    self.on_request(
                        Request::Kick {
                            channel,
                            nick,
                            reason,
                            reply,
                        },
                        now,
                    );
                    return;
                }
                let wire = match self.joined_name(&channel) {
                    Ok(w) => w,
                    Err(e) => {
                        let _ = reply.send(Err(e));
                        return;
                    }
                };
                let reply = Some(reply);
                let changes = role_modes(role, &self.isupport);
                self.mode_changes(&wire, &changes, &nick, reply, now);
            }
            Request::Affiliation {
                channel,
                nick,
                affiliation,
                reason,
                reply,
            } => {
                let wire = match self.joined_name(&channel) {
                    Ok(w) => w,
                    Err(e) => {
                        let _ = reply.send(Err(e));
                        return;
                    }
                };
                let reply = Some(reply);
                if affiliation == Affiliation::Outcast {
                    // Ban by host when we know it, then kick.
                    let host = self
                        .channels
                        .get(&self.fold(&wire))
                        .and_then(|c| c.members.get(self.fold(&nick).as_str()))
                        .and_then(|m| m.host);
                    let mask = match host {
                        Some(h) => format!("*!*@{h}"),
                        None => format!("{nick}!*@*"),
                    };
                    self.line("MODE", &[&wire, "+b", &mask]);
                    let reason = clean(reason.unwrap_or_default());
                    let mut params = vec![wire.as_str(), nick.as_str()];
                    if !reason.is_empty() {
                        params.push(&reason);
                    }
                    self.command_with_reply("KICK", &params, Some(&wire), reply, now, false);
                    return;
                }
                let changes = affiliation_modes(affiliation, &self.isupport);
                self.mode_changes(&wire, &changes, &nick, reply, now);
            }
            Request::Invite {
                channel,
                nick,
                reply,
            } => {
                let wire = match self.joined_name(&channel) {
                    Ok(w) => w,
                    Err(e) => {
                        let _ = reply.send(Err(e));
                        return;
                    }
                };
                let reply = Some(reply);
                self.command_with_reply("INVITE", &[&nick, &wire], Some(&wire), reply, now, false);
            }
            Request::Away(text) => {
                let text = text.map(clean);
                self.away = text.clone();
                if self.phase == Phase::Ready {
                    match text {
                        Some(t) => self.line("AWAY", &[&t]),
                        None => self.line("AWAY", &[]),
                    }
                }
            }
            Request::Ctcp { nick, query, reply } => {
                let token = format!(
                    "{}",
                    now.elapsed().as_nanos() ^ (self.label_seq as u128 * 7919)
                );
                self.label_seq += 1;
                let text = match query {
                    CtcpQuery::Version => crate::ctcp::format("VERSION", ""),
                    CtcpQuery::Ping => crate::ctcp::format("PING", &token),
                };
                match Line::new("PRIVMSG", &[&nick, &text]) {
                    Ok(l) => self.send_when_ready(l),
                    Err(e) => {
                        let _ = reply.send(Err(BridgeError::bad_request(e.to_string())));
                        return;
                    }
                }
                self.last_activity = now;
                self.pending.push(Pending {
                    label: None,
                    kind: PendingKind::Ctcp { nick, query, token },
                    reply: Some(reply),
                    deadline: now + REPLY_TIMEOUT,
                });
            }
            Request::List { reply } => {
                self.last_activity = now;
                if let Ok(l) = Line::new("LIST", &[]) {
                    self.send_when_ready(l);
                }
                self.pending.push(Pending {
                    label: None,
                    kind: PendingKind::List { rooms: Vec::new() },
                    reply: Some(reply),
                    deadline: now + REPLY_TIMEOUT * 3,
                });
            }
            Request::History {
                to,
                before,
                limit,
                reply,
            } => {
                let Some(target) = self.wire_target(&to) else {
                    let _ = reply.send(Ok(Outcome::History(Vec::new())));
                    return;
                };
                if !self.has_cap("draft/chathistory") || self.phase != Phase::Ready {
                    let _ = reply.send(Ok(Outcome::History(Vec::new())));
                    return;
                }
                let limit = limit
                    .min(self.isupport.chathistory.unwrap_or(100) as u32)
                    .max(1)
                    .to_string();
                let label = self.next_label();
                let tags: Vec<(&str, Option<&str>)> =
                    label.iter().map(|l| ("label", Some(l.as_str()))).collect();
                let line = match &before {
                    Some(id) => {
                        let r = format!("msgid={}", id.as_str());
                        Line::tagged(&tags, "CHATHISTORY", &["BEFORE", &target, &r, &limit])
                    }
                    None => Line::tagged(&tags, "CHATHISTORY", &["LATEST", &target, "*", &limit]),
                };
                match line {
                    Ok(l) => self.send(l),
                    Err(e) => {
                        let _ = reply.send(Err(BridgeError::bad_request(e.to_string())));
                        return;
                    }
                }
                self.pending.push(Pending {
                    label,
                    kind: PendingKind::History {
                        target: self.fold(&target),
                        msgs: Vec::new(),
                    },
                    reply: Some(reply),
                    deadline: now + REPLY_TIMEOUT,
                });
            }
            Request::Monitor { nick, add } => {
                let key = self.fold(&nick);
                let changed = if add {
                    self.monitor.insert(key)
                } else {
                    self.monitor.remove(&key)
                };
                if changed && self.phase == Phase::Ready && self.isupport.monitor.is_some() {
                    self.line("MONITOR", &[if add { "+" } else { "-" }, &nick]);
                }
            }
            Request::Info { reply } => {
                let _ = reply.send(self.info());
            }
            Request::Resume { at, wall } => self.resume_at(at, wall),
            Request::Settings(s) => {
                self.fallback = crate::proto::encoding_for(&s.encoding_in).unwrap_or(self.fallback);
                self.out_encoding = s
                    .encoding_out
                    .as_deref()
                    .and_then(crate::proto::encoding_for);
                self.settings = *s;
            }
            Request::Quit {
                message,
                done,
                leave_rooms,
            } => {
                if let Some(d) = done {
                    self.quit_waiters.push(d);
                }
                self.quit(message, leave_rooms);
            }
        }
    }

    /// The wire name of a joined channel, or the error for the user.
    fn joined_name(&self, name: &str) -> Result<String, BridgeError> {
        match self.channels.get(&self.fold(name)) {
            Some(ch) if ch.state == ChanState::Joined => Ok(ch.name.clone()),
            Some(_) => Err(BridgeError::unavailable(format!(
                "Not in {name} yet: the IRC connection is not ready"
            ))),
            None => Err(BridgeError::new(
                ErrorKind::NotAllowed,
                format!("You are not in {name} on {}", self.settings.server),
            )),
        }
    }

    /// The wire target of a conversation (None for a channel not joined).
    fn wire_target(&self, to: &Target) -> Option<String> {
        match to {
            Target::Channel(name) => self
                .channels
                .get(&self.fold(name))
                .filter(|c| c.state == ChanState::Joined)
                .map(|c| c.name.clone()),
            Target::Nick { nick, .. } => Some(nick.clone()),
            Target::Server => None,
        }
    }

    fn part(&mut self, key: &str, reason: Option<String>, now: Instant) {
        let Some(ch) = self.channels.remove(key) else {
            return;
        };
        if matches!(ch.state, ChanState::Joining | ChanState::Joined) && self.phase == Phase::Ready
        {
            let reason = reason.map(clean).filter(|r| !r.is_empty());
            match reason {
                Some(r) => self.line("PART", &[&ch.name, &r]),
                None => self.line("PART", &[&ch.name]),
            }
        }
        let _ = now;
    }

    /// Sends a command and answers `reply` when the server confirms (with
    /// labeled-response), or at once (errors then show in the room).
    fn command_with_reply(
        &mut self,
        command: &str,
        params: &[&str],
        channel: Option<&str>,
        reply: Option<Reply>,
        now: Instant,
        wait_unlabeled: bool,
    ) {
        let Some(reply) = reply else { return };
        let label = self.next_label();
        let tags: Vec<(&str, Option<&str>)> =
            label.iter().map(|l| ("label", Some(l.as_str()))).collect();
        match Line::tagged(&tags, command, params) {
            Ok(l) => self.send_when_ready(l),
            Err(e) => {
                let _ = reply.send(Err(BridgeError::bad_request(e.to_string())));
                return;
            }
        }
        if label.is_some() || wait_unlabeled {
            let channel = channel.map(|c| self.fold(c));
            self.pending.push(Pending {
                label,
                kind: PendingKind::Generic { channel },
                reply: Some(reply),
                deadline: now + REPLY_TIMEOUT,
            });
        } else {
            let _ = reply.send(Ok(Outcome::Done));
        }
    }

    fn mode_changes(
        &mut self,
        channel: &str,
        changes: &[(bool, char)],
        nick: &str,
        reply: Option<Reply>,
        now: Instant,
    ) {
        let Some(reply) = reply else { return };
        if changes.is_empty() {
            let _ = reply.send(Err(BridgeError::unsupported(format!(
                "{} has no channel mode for that",
                self.settings.server
            ))));
            return;
        }
        let cmds = mode_commands(changes, nick, self.isupport.modes);
        let n = cmds.len();
        let mut reply = Some(reply);
        for (i, (modes, args)) in cmds.into_iter().enumerate() {
            let mut params: Vec<&str> = vec![channel, &modes];
            params.extend(args.iter().map(String::as_str));
            if i + 1 == n {
                self.command_with_reply("MODE", &params, Some(channel), reply.take(), now, false);
            } else {
                self.line("MODE", &params);
            }
        }
    }

    /// The connection's state for get-irc-connection-info.
    pub fn info(&self) -> ConnInfo {
        ConnInfo {
            connected: self.phase == Phase::Ready,
            endpoint: self.endpoint.as_ref().map(|(h, p, _)| (h.clone(), *p)),
            tls: self.endpoint.as_ref().is_some_and(|(_, _, t)| *t),
            since: self.connected_since,
            nick: self.nick.clone(),
            channels: self
                .channels
                .values()
                .filter(|c| c.state == ChanState::Joined)
                .map(|c| (c.name.clone(), c.persistent))
                .collect(),
            caps: self.caps.enabled_names(),
            status: self.status.clone(),
            fingerprint: self.fingerprint.clone(),
        }
    }
}

/// Text for a parameter: line breaks become spaces, NUL goes.
fn clean(s: String) -> String {
    s.replace("\r\n", " ")
        .replace(['\r', '\n'], " ")
        .replace('\0', "")
}

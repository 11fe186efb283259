//! Rooms of the test network.
//!
//! * `#lounge` exists from the start (subject set by the bot), `#secret`
//!   needs the password `letmein`; any other `#name` is created when first
//!   joined. The bot `echo` is in every room as owner and moderator.
//! * Joining answers `RoomJoined` with the occupants (the bot first, then
//!   the others in join order, the user last) and the subject; the others
//!   see an `Occupant` event. A taken nickname, a wrong password or a ban
//!   answer `RoomJoinFailed` (`Conflict`, `NotAllowed`, `NotAllowed`).
//! * Messages go to every other member (the core reflects the sender's own
//!   message); the bot repeats lines starting with `echo:` to everyone.
//!   Private messages go to the occupant; the bot answers its own.
//! * Subject and nickname changes, kicks, bans, role and affiliation
//!   changes and moderation (retracting another's message) are reported to
//!   every member, the actor included. Only the account `admin` (the room's
//!   moderator and admin) may kick, ban, change roles or affiliations and
//!   moderate; others get `NotAllowed`.
//! * Leaving leaves, unless the user configured the room `persistent` with
//!   the room command `configure`: the session then stays in, keeps getting
//!   the room's events, and after a restart of the session it is back in
//!   (it reports `RoomJoined` by itself).
//! * History: 50 old messages "history N" (N = 1 … 50) per conversation,
//!   newest first, ids `hist:<chat>:<N>`, paged with `before`.
//! * Group conversations (`Action::OpenGroup`) are rooms `#group-N` with a
//!   fixed set of members (the opener included); opening one with exactly
//!   the members of an existing group gives that group again. The opener
//!   joins at once (nickname = account name); the members appear as
//!   occupants, and those with a session join it too.

use std::time::{Duration, SystemTime, UNIX_EPOCH};

use ferry_bridge::{
    Address, Affiliation, BridgeError, ContactId, ErrorKind, Event, Feature, HistoryPolicy,
    IncomingMessage, MessageId, Occupant, Outcome, OutgoingMessage, Presence, Role, RoomExit,
    RoomId, RoomInfo, RoomListing, Sender, Subject,
};

use crate::echo::ECHO;
use crate::session::TestSession;
use crate::state::{Carried, Chat, Member, NetState, Room};

/// How many old messages every conversation has.
pub const HISTORY_LEN: u32 = 50;

/// The account that moderates every room.
pub const MODERATOR: &str = "admin";

fn no_room(room: &RoomId) -> BridgeError {
    BridgeError::not_found(format!("there is no room {room} on the test network"))
}

fn not_in(room: &RoomId) -> BridgeError {
    BridgeError::new(
        ErrorKind::NotAllowed,
        format!("you are not in {room}: join it first"),
    )
}

/// The user's nickname in a room they are in.
pub(crate) fn my_nick(st: &NetState, room: &RoomId, session: u64) -> Result<String, BridgeError> {
    let r = st.rooms.get(room).ok_or_else(|| no_room(room))?;
    r.member(session)
        .map(|m| m.nick.clone())
        .ok_or_else(|| not_in(room))
}

/// The user's nickname and the session of the occupant `nick` (None: the
/// bot) for a private message.
pub(crate) fn pm_target(
    st: &NetState,
    room: &RoomId,
    nick: &str,
    session: u64,
) -> Result<(String, Option<u64>), BridgeError> {
    let mine = my_nick(st, room, session)?;
    if nick == ECHO {
        return Ok((mine, None));
    }
    let r = st.rooms.get(room).ok_or_else(|| no_room(room))?;
    let target = r
        .by_nick(nick)
        .ok_or_else(|| BridgeError::not_found(format!("nobody is called {nick} in {room}")))?;
    Ok((mine, Some(target.session)))
}

/// Per-user settings of a room (the room command `configure`).
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub(crate) struct RoomSettings {
    pub persistent: bool,
    pub record_history: bool,
}

impl Default for RoomSettings {
    fn default() -> Self {
        RoomSettings {
            persistent: false,
            record_history: true,
        }
    }
}

fn settings_key(room: &RoomId) -> String {
    format!("roomcfg/{room}")
}

fn joined_key(room: &RoomId) -> String {
    format!("joined/{room}")
}

impl TestSession {
    /// The user's settings of a room.
    pub(crate) fn room_settings(&self, room: &RoomId) -> Result<RoomSettings, BridgeError> {
        let mut s = RoomSettings::default();
        if let Some(raw) = self.store.get(&settings_key(room))? {
            for line in String::from_utf8_lossy(&raw).lines() {
                match line.split_once('=') {
                    Some(("persistent", v)) => s.persistent = v == "1",
                    Some(("record_history", v)) => s.record_history = v == "1",
                    _ => {}
                }
            }
        }
        Ok(s)
    }

    /// Saves the user's settings of a room.
    pub(crate) fn save_room_settings(
        &self,
        room: &RoomId,
        s: RoomSettings,
    ) -> Result<(), BridgeError> {
        let raw = format!(
            "persistent={}\nrecord_history={}\n",
            u8::from(s.persistent),
            u8::from(s.record_history)
        );
        self.store.put(&settings_key(room), raw.as_bytes())?;
        Ok(())
    }

    /// The room's info as this user sees it.
    pub(crate) fn room_info(&self, r: &Room) -> RoomInfo {
        let settings = self.room_settings(&r.id).unwrap_or_default();
        RoomInfo {
            room: r.id.clone(),
            name: Some(room_name(&r.id)),
            description: Some(format!("The room {} of the test network", r.id)),
            public: r.password.is_none(),
            encrypted: false,
            non_anonymous: true,
            password_protected: r.password.is_some(),
            occupant_count: Some(r.members.len() as u32 + 1),
            history: HistoryPolicy {
                record: settings.record_history,
                on_join: 20,
            },
            members: r.group.as_ref().map(|g| {
                g.iter()
                    .filter(|a| **a != self.account)
                    .map(|a| ContactId::new(a.clone()))
                    .collect()
            }),
        }
    }

    /// After a restart of the session: back into the persistent rooms the
    /// user was in.
    pub(crate) fn rejoin_persistent_rooms(&self) {
        let joined = match self.store.list("joined/") {
            Ok(j) => j,
            Err(e) => {
                self.emit(Event::Notice(format!(
                    "the test network could not read your rooms: {e}"
                )));
                return;
            }
        };
        for (key, nick) in joined {
            let room = RoomId::new(key.trim_start_matches("joined/"));
            if !self.room_settings(&room).unwrap_or_default().persistent {
                let _ = self.store.delete(&key);
                continue;
            }
            let nick = String::from_utf8_lossy(&nick).into_owned();
            // (a failed join is reported as RoomJoinFailed by join itself)
            let _ = join(self, &room, &nick, None);
        }
    }
}

/// "#lounge" -> "Lounge".
fn room_name(room: &RoomId) -> String {
    crate::session::display_name(room.as_str().trim_start_matches('#'))
}

fn valid_nick(nick: &str) -> Result<(), BridgeError> {
    if nick.trim().is_empty() || nick.chars().count() > 64 || nick.chars().any(char::is_control) {
        return Err(BridgeError::bad_request(format!(
            "{nick:?} is not a valid nickname on the test network (1 to 64 characters, no control characters)"
        )));
    }
    Ok(())
}

/// Joins a room (reports `RoomJoined` or `RoomJoinFailed`).
pub(crate) fn join(
    s: &TestSession,
    room: &RoomId,
    nick: &str,
    password: Option<&str>,
) -> Result<Outcome, BridgeError> {
    let mut st = s.shared.lock();
    let result = join_locked(s, &mut st, room, nick, password);
    if let Err(error) = result {
        s.emit(Event::RoomJoinFailed {
            room: room.clone(),
            error,
        });
    }
    Ok(Outcome::Done)
}

fn join_locked(
    s: &TestSession,
    st: &mut NetState,
    room: &RoomId,
    nick: &str,
    password: Option<&str>,
) -> Result<(), BridgeError> {
    if !crate::config::valid_name(room.as_str().trim_start_matches('#'))
        || !room.as_str().starts_with('#')
    {
        return Err(BridgeError::bad_request(format!(
            "{room} is not a room name of the test network"
        )));
    }
    valid_nick(nick)?;
    let r = st
        .rooms
        .entry(room.clone())
        .or_insert_with(|| Room::new(room.clone()));
    if let Some(me) = r.member(s.id) {
        // already in (another client of the user): the same view again
        let nick = me.nick.clone();
        let event = joined_event(s, r, &nick);
        s.emit(event);
        return Ok(());
    }
    if let Some(expected) = &r.password
        && password != Some(expected.as_str())
    {
        return Err(BridgeError::new(
            ErrorKind::NotAllowed,
            format!("{room} needs a password, and that was not it"),
        ));
    }
    if r.banned.contains(&s.account) {
        return Err(BridgeError::new(
            ErrorKind::NotAllowed,
            format!("you are banned from {room}"),
        ));
    }
    if r.nick_taken(nick) {
        return Err(BridgeError::new(
            ErrorKind::Conflict,
            format!("the nickname {nick} is already in use in {room}"),
        ));
    }
    let admin = s.account == MODERATOR;
    let member = Member {
        session: s.id,
        account: s.account.clone(),
        nick: nick.to_owned(),
        role: if admin {
            Role::Moderator
        } else {
            Role::Participant
        },
        affiliation: if admin {
            Affiliation::Admin
        } else {
            Affiliation::Member
        },
        presence: st.presence.get(&s.account).cloned().unwrap_or_default(),
    };
    let r = st.rooms.get_mut(room).ok_or_else(|| no_room(room))?;
    r.members.push(member.clone());
    let event = joined_event(s, r, nick);
    s.emit(event);
    st.to_room(
        room,
        &Event::Occupant {
            room: room.clone(),
            occupant: member.occupant(false),
        },
        Some(s.id),
    );
    let _ = s.store.put(&joined_key(room), nick.as_bytes());
    Ok(())
}

fn joined_event(s: &TestSession, r: &Room, nick: &str) -> Event {
    let mut occupants: Vec<Occupant> = vec![Room::echo_occupant()];
    occupants.extend(
        r.members
            .iter()
            .filter(|m| m.session != s.id)
            .map(|m| m.occupant(false)),
    );
    // A group's members are in it even without a session.
    for account in r.group.iter().flatten() {
        if *account != s.account
            && account != ECHO
            && !r.members.iter().any(|m| m.account == *account)
        {
            let mut o = Occupant::new(account.clone());
            o.contact = Some(ContactId::new(account.clone()));
            o.stable_id = Some(account.clone());
            occupants.push(o);
        }
    }
    if let Some(me) = r.member(s.id) {
        occupants.push(me.occupant(true));
    }
    Event::RoomJoined {
        info: s.room_info(r),
        nick: nick.to_owned(),
        occupants,
        subject: r.subject.clone(),
    }
}

/// Removes a member and tells the others how they left. Returns the
/// member.
pub(crate) fn remove_member(
    st: &mut NetState,
    room: &RoomId,
    session: u64,
    exit: RoomExit,
) -> Option<Member> {
    let r = st.rooms.get_mut(room)?;
    let pos = r.members.iter().position(|m| m.session == session)?;
    let member = r.members.remove(pos);
    st.to_room(
        room,
        &Event::OccupantLeft {
            room: room.clone(),
            nick: member.nick.clone(),
            exit,
        },
        None,
    );
    Some(member)
}

/// Leaves a room, unless it is persistent for this user.
pub(crate) fn leave(
    s: &TestSession,
    room: &RoomId,
    reason: Option<String>,
) -> Result<Outcome, BridgeError> {
    if s.room_settings(room)?.persistent {
        return Ok(Outcome::Done);
    }
    let mut st = s.shared.lock();
    remove_member(&mut st, room, s.id, RoomExit::Left(reason));
    let _ = s.store.delete(&joined_key(room));
    Ok(Outcome::Done)
}

/// A message to a room.
pub(crate) fn send(
    s: &TestSession,
    room: &RoomId,
    msg: OutgoingMessage,
) -> Result<Outcome, BridgeError> {
    let id = s.shared.new_id();
    let mut st = s.shared.lock();
    let r = st.rooms.get(room).ok_or_else(|| no_room(room))?;
    let me = r.member(s.id).ok_or_else(|| not_in(room))?;
    if me.role == Role::Visitor {
        return Err(BridgeError::new(
            ErrorKind::NotAllowed,
            format!("you have no voice in {room}"),
        ));
    }
    let nick = me.nick.clone();
    st.carried.insert(
        id.clone(),
        Carried {
            author: s.account.clone(),
            chat: Chat::Room(room.clone()),
            body: msg.body.clone(),
        },
    );
    let mut m = s.incoming(
        &msg,
        Address::Room(room.clone()),
        Sender::Occupant(nick),
        &id,
    );
    if s.shared.caps.has(Feature::Replies) {
        m.reply_to = msg.reply_to.clone();
    }
    st.to_room(room, &Event::Message(m), Some(s.id));
    if let Some(text) = msg.body.strip_prefix("echo:") {
        let eid = s.shared.new_id();
        let text = format!("{}{}", s.echo_prefix(), text.trim());
        st.carried.insert(
            eid.clone(),
            Carried {
                author: ECHO.into(),
                chat: Chat::Room(room.clone()),
                body: text.clone(),
            },
        );
        let mut answer = IncomingMessage::text(
            Address::Room(room.clone()),
            Sender::Occupant(ECHO.into()),
            text,
        );
        answer.id = Some(eid);
        st.to_room(room, &Event::Message(answer), None);
    }
    Ok(Outcome::sent(id))
}

/// A private message to an occupant.
pub(crate) fn send_private(
    s: &TestSession,
    room: &RoomId,
    nick: &str,
    msg: OutgoingMessage,
) -> Result<Outcome, BridgeError> {
    let id = s.shared.new_id();
    let mut st = s.shared.lock();
    let (mine, target) = pm_target(&st, room, nick, s.id)?;
    let target_account = match target {
        Some(t) => st
            .sessions
            .get(&t)
            .map(|e| e.account.clone())
            .unwrap_or_default(),
        None => ECHO.to_owned(),
    };
    st.carried.insert(
        id.clone(),
        Carried {
            author: s.account.clone(),
            chat: Chat::private(room, &s.account, &target_account),
            body: msg.body.clone(),
        },
    );
    match target {
        None => {
            let eid = s.shared.new_id();
            let mut answer = IncomingMessage::text(
                Address::Occupant {
                    room: room.clone(),
                    nick: ECHO.into(),
                },
                Sender::Occupant(ECHO.into()),
                format!("{}{}", s.echo_prefix(), msg.body),
            );
            answer.id = Some(eid.clone());
            st.carried.insert(
                eid,
                Carried {
                    author: ECHO.into(),
                    chat: Chat::private(room, &s.account, ECHO),
                    body: answer.body.clone(),
                },
            );
            s.emit(Event::Message(answer));
        }
        Some(session) => {
            let m = s.incoming(
                &msg,
                Address::Occupant {
                    room: room.clone(),
                    nick: mine.clone(),
                },
                Sender::Occupant(mine),
                &id,
            );
            let receipt = s.shared.caps.has(Feature::DeliveryReceipts).then(|| {
                Box::new(crate::state::Receipt {
                    tx: s.tx.clone(),
                    event: Event::Delivered {
                        chat: Address::Occupant {
                            room: room.clone(),
                            nick: nick.to_owned(),
                        },
                        id: id.clone(),
                    },
                })
            });
            st.to_session(
                session,
                crate::state::Queued::Message {
                    event: Event::Message(m),
                    receipt,
                },
            );
        }
    }
    Ok(Outcome::sent(id))
}

/// Changes the subject (everyone may).
pub(crate) fn set_subject(
    s: &TestSession,
    room: &RoomId,
    text: String,
) -> Result<Outcome, BridgeError> {
    let mut st = s.shared.lock();
    let nick = my_nick(&st, room, s.id)?;
    let subject = Subject {
        text,
        by: Some(nick),
        at: Some(SystemTime::now()),
    };
    if let Some(r) = st.rooms.get_mut(room) {
        r.subject = subject.clone();
    }
    st.to_room(
        room,
        &Event::Subject {
            room: room.clone(),
            subject,
        },
        None,
    );
    Ok(Outcome::Done)
}

/// Changes the user's nickname in a room.
pub(crate) fn change_nick(
    s: &TestSession,
    room: &RoomId,
    nick: &str,
) -> Result<Outcome, BridgeError> {
    valid_nick(nick)?;
    let mut st = s.shared.lock();
    let old = my_nick(&st, room, s.id)?;
    if old == nick {
        return Ok(Outcome::Done);
    }
    let r = st.rooms.get_mut(room).ok_or_else(|| no_room(room))?;
    if r.nick_taken(nick) {
        return Err(BridgeError::new(
            ErrorKind::Conflict,
            format!("the nickname {nick} is already in use in {room}"),
        ));
    }
    if let Some(m) = r.member_mut(s.id) {
        m.nick = nick.to_owned();
    }
    st.to_room(
        room,
        &Event::NickChanged {
            room: room.clone(),
            old,
            new: nick.to_owned(),
        },
        None,
    );
    let _ = s.store.put(&joined_key(room), nick.as_bytes());
    Ok(Outcome::Done)
}

/// The user's nickname, checked to be a moderator's.
fn moderator_nick(
    st: &NetState,
    s: &TestSession,
    room: &RoomId,
    what: &str,
) -> Result<String, BridgeError> {
    let r = st.rooms.get(room).ok_or_else(|| no_room(room))?;
    let me = r.member(s.id).ok_or_else(|| not_in(room))?;
    if me.role != Role::Moderator {
        return Err(BridgeError::new(
            ErrorKind::NotAllowed,
            format!("only moderators may {what} in {room}"),
        ));
    }
    Ok(me.nick.clone())
}

/// Kicks (`Role::None`) or changes the role of an occupant.
pub(crate) fn set_role(
    s: &TestSession,
    room: &RoomId,
    nick: &str,
    role: Role,
    reason: Option<String>,
) -> Result<Outcome, BridgeError> {
    let mut st = s.shared.lock();
    let what = if role == Role::None {
        "kick"
    } else {
        "change roles"
    };
    let by = moderator_nick(&st, s, room, what)?;
    if nick == ECHO {
        return Err(BridgeError::new(
            ErrorKind::NotAllowed,
            "the echo bot owns every room and cannot be changed",
        ));
    }
    let r = st.rooms.get_mut(room).ok_or_else(|| no_room(room))?;
    let target = r
        .by_nick(nick)
        .map(|m| m.session)
        .ok_or_else(|| BridgeError::not_found(format!("nobody is called {nick} in {room}")))?;
    if role == Role::None {
        kick_out(
            &mut st,
            room,
            target,
            RoomExit::Kicked {
                by: Some(by),
                reason,
            },
        );
        return Ok(Outcome::Done);
    }
    let occupant = r.member_mut(target).map(|m| {
        m.role = role;
        m.clone()
    });
    if let Some(m) = occupant {
        for member in st
            .rooms
            .get(room)
            .map(|r| r.members.clone())
            .unwrap_or_default()
        {
            st.event_to_session(
                member.session,
                Event::Occupant {
                    room: room.clone(),
                    occupant: m.occupant(member.session == m.session),
                },
            );
        }
    }
    Ok(Outcome::Done)
}

/// Removes a member who did not leave by themselves: they get `RoomLeft`,
/// the others `OccupantLeft`.
fn kick_out(st: &mut NetState, room: &RoomId, session: u64, exit: RoomExit) {
    let Some(r) = st.rooms.get_mut(room) else {
        return;
    };
    let Some(pos) = r.members.iter().position(|m| m.session == session) else {
        return;
    };
    let member = r.members.remove(pos);
    st.event_to_session(
        session,
        Event::RoomLeft {
            room: room.clone(),
            exit: exit.clone(),
        },
    );
    st.to_room(
        room,
        &Event::OccupantLeft {
            room: room.clone(),
            nick: member.nick,
            exit,
        },
        None,
    );
}

/// Changes an affiliation; `Outcast` bans (and removes) the account.
pub(crate) fn set_affiliation(
    s: &TestSession,
    room: &RoomId,
    target: &Address,
    affiliation: Affiliation,
    reason: Option<String>,
) -> Result<Outcome, BridgeError> {
    let mut st = s.shared.lock();
    let by = moderator_nick(&st, s, room, "change affiliations")?;
    if is_echo(target) {
        return Err(BridgeError::new(
            ErrorKind::NotAllowed,
            "the echo bot owns every room and cannot be changed",
        ));
    }
    let account = match target {
        Address::Occupant { nick, .. } => st
            .rooms
            .get(room)
            .and_then(|r| r.by_nick(nick))
            .map(|m| m.account.clone())
            .ok_or_else(|| BridgeError::not_found(format!("nobody is called {nick} in {room}")))?,
        Address::Contact(c) => {
            if !st.accounts.contains_key(c.as_str()) {
                return Err(BridgeError::not_found(format!(
                    "there is no user {c} on the test network"
                )));
            }
            c.as_str().to_owned()
        }
        other => {
            return Err(BridgeError::bad_request(format!(
                "{other} cannot have an affiliation"
            )));
        }
    };
    let r = st.rooms.get_mut(room).ok_or_else(|| no_room(room))?;
    if affiliation == Affiliation::Outcast {
        r.banned.insert(account.clone());
        let sessions: Vec<u64> = r
            .members
            .iter()
            .filter(|m| m.account == account)
            .map(|m| m.session)
            .collect();
        for session in sessions {
            kick_out(
                &mut st,
                room,
                session,
                RoomExit::Banned {
                    by: Some(by.clone()),
                    reason: reason.clone(),
                },
            );
        }
        return Ok(Outcome::Done);
    }
    r.banned.remove(&account);
    let mut changed = Vec::new();
    for m in r.members.iter_mut().filter(|m| m.account == account) {
        m.affiliation = affiliation;
        changed.push(m.clone());
    }
    let members = r.members.clone();
    for m in changed {
        for member in &members {
            st.event_to_session(
                member.session,
                Event::Occupant {
                    room: room.clone(),
                    occupant: m.occupant(member.session == m.session),
                },
            );
        }
    }
    Ok(Outcome::Done)
}

fn is_echo(a: &Address) -> bool {
    nick_of(a) == Some(ECHO)
}

fn nick_of(a: &Address) -> Option<&str> {
    match a {
        Address::Occupant { nick, .. } => Some(nick),
        Address::Contact(c) => Some(c.as_str()),
        _ => None,
    }
}

/// Invites a user (reports `Invited` to their sessions).
pub(crate) fn invite(
    s: &TestSession,
    room: &RoomId,
    invitee: &Address,
    reason: Option<String>,
) -> Result<Outcome, BridgeError> {
    let st = s.shared.lock();
    let r = st.rooms.get(room).ok_or_else(|| no_room(room))?;
    if r.member(s.id).is_none() {
        return Err(not_in(room));
    }
    let account = match invitee {
        Address::Contact(c) if c.as_str() == ECHO => {
            return Err(BridgeError::bad_request(
                "the echo bot is in every room already",
            ));
        }
        Address::Contact(c) => {
            if !st.accounts.contains_key(c.as_str()) {
                return Err(BridgeError::not_found(format!(
                    "there is no user {c} on the test network"
                )));
            }
            c.as_str().to_owned()
        }
        other => {
            return Err(BridgeError::bad_request(format!(
                "{other} cannot be invited: invite a user of the test network"
            )));
        }
    };
    st.event_to_account(
        &account,
        &Event::Invited {
            room: room.clone(),
            from: Some(Sender::Contact(ContactId::new(s.account.clone()))),
            reason,
            password: r.password.clone(),
        },
    );
    Ok(Outcome::Done)
}

/// A moderator retracts someone's message in a room.
pub(crate) fn moderate(
    s: &TestSession,
    chat: &Address,
    target: &MessageId,
    reason: Option<String>,
) -> Result<Outcome, BridgeError> {
    let Address::Room(room) = chat else {
        return Err(BridgeError::bad_request(
            "only room messages can be moderated",
        ));
    };
    let st = s.shared.lock();
    let by = moderator_nick(&st, s, room, "moderate messages")?;
    match st.carried.get(target) {
        Some(c) if c.chat == Chat::Room(room.clone()) => {}
        _ => {
            return Err(BridgeError::not_found(format!(
                "there is no message {target} in {room}"
            )));
        }
    }
    st.to_room(
        room,
        &Event::Retracted {
            chat: chat.clone(),
            by: Sender::Occupant(by),
            target: target.clone(),
            moderated: Some(reason),
        },
        None,
    );
    Ok(Outcome::Done)
}

/// The user's presence changed: every room they are in sees it.
pub(crate) fn presence_changed(st: &mut NetState, session: u64, presence: &Presence) {
    let rooms = st.rooms_of(session);
    for room in rooms {
        let Some(r) = st.rooms.get_mut(&room) else {
            continue;
        };
        let Some(m) = r.member_mut(session) else {
            continue;
        };
        m.presence = presence.clone();
        let occupant = m.clone();
        let members = r.members.clone();
        for member in members {
            st.event_to_session(
                member.session,
                Event::Occupant {
                    room: room.clone(),
                    occupant: occupant.occupant(member.session == session),
                },
            );
        }
    }
}

/// Whether an id is one of the generated history messages.
pub(crate) fn is_history_id(id: &MessageId) -> bool {
    parse_history_id(id).is_some()
}

fn parse_history_id(id: &MessageId) -> Option<(&str, u32)> {
    let rest = id.as_str().strip_prefix("hist:")?;
    let (chat, n) = rest.rsplit_once(':')?;
    let n: u32 = n.parse().ok()?;
    (1..=HISTORY_LEN).contains(&n).then_some((chat, n))
}

/// Old messages of a conversation, newest first.
pub(crate) fn history(
    s: &TestSession,
    chat: &Address,
    before: Option<&MessageId>,
    limit: u32,
) -> Result<Outcome, BridgeError> {
    let st = s.shared.lock();
    let (key, from): (String, Box<dyn Fn(u32) -> Sender>) = match chat {
        Address::Room(room) => {
            if !st.rooms.contains_key(room) {
                return Err(no_room(room));
            }
            (
                room.as_str().to_owned(),
                Box::new(|n| {
                    Sender::Occupant(if n % 2 == 0 {
                        ECHO.into()
                    } else {
                        "bob".into()
                    })
                }),
            )
        }
        Address::Contact(c) => {
            if !st.is_contact(c.as_str()) {
                return Err(BridgeError::not_found(format!(
                    "there is no user {c} on the test network"
                )));
            }
            let c = c.clone();
            (
                c.as_str().to_owned(),
                Box::new(move |n| {
                    if n % 2 == 0 {
                        Sender::Contact(c.clone())
                    } else {
                        Sender::Own
                    }
                }),
            )
        }
        Address::Occupant { .. } | Address::Service(_) => return Ok(Outcome::History(Vec::new())),
    };
    let start = match before {
        None => HISTORY_LEN + 1,
        Some(id) => match parse_history_id(id) {
            Some((c, n)) if c == key => n,
            _ => {
                return Err(BridgeError::bad_request(format!(
                    "{id} is not a message of the history of {key}"
                )));
            }
        },
    };
    let base = UNIX_EPOCH + Duration::from_secs(1_700_000_000);
    let messages = (1..start)
        .rev()
        .take(limit as usize)
        .map(|n| {
            let mut m = IncomingMessage::text(chat.clone(), from(n), format!("history {n}"));
            m.id = Some(MessageId::new(format!("hist:{key}:{n}")));
            m.timestamp = Some(base + Duration::from_secs(u64::from(n) * 60));
            m.archive_only = true;
            m
        })
        .collect();
    Ok(Outcome::History(messages))
}

/// Every room of the network.
pub(crate) fn list(s: &TestSession) -> Outcome {
    let st = s.shared.lock();
    Outcome::Rooms(
        st.rooms
            .values()
            .map(|r| RoomListing {
                room: r.id.clone(),
                name: Some(room_name(&r.id)),
                topic: (!r.subject.text.is_empty()).then(|| r.subject.text.clone()),
                occupants: Some(r.members.len() as u32 + 1),
            })
            .collect(),
    )
}

/// Opens a group conversation with `members` (answers its room id; the
/// user joins it at once).
pub(crate) fn open_group(
    s: &TestSession,
    members: &[ContactId],
    subject: Option<String>,
) -> Result<Outcome, BridgeError> {
    if members.is_empty() {
        return Err(BridgeError::bad_request(
            "a group conversation needs at least one other member",
        ));
    }
    let mut st = s.shared.lock();
    let mut group = std::collections::BTreeSet::new();
    group.insert(s.account.clone());
    for c in members {
        group.insert(s.contact(&st, c)?);
    }
    let existing = st
        .rooms
        .values()
        .find(|r| r.group.as_ref() == Some(&group))
        .map(|r| r.id.clone());
    let room = match existing {
        Some(room) => room,
        None => {
            let others: Vec<String> = group
                .iter()
                .filter(|a| **a != s.account && *a != ECHO)
                .cloned()
                .collect();
            let room = create_group(s, &mut st, group, subject);
            // The other members' sessions are in it too, unasked.
            for account in others {
                for session in st.sessions_of(&account) {
                    add_group_member(&mut st, &room, &account, session);
                }
            }
            room
        }
    };
    join_locked(s, &mut st, &room, &s.account.clone(), None)?;
    Ok(Outcome::Room(room))
}

fn create_group(
    s: &TestSession,
    st: &mut NetState,
    group: std::collections::BTreeSet<String>,
    subject: Option<String>,
) -> RoomId {
    let n = st
        .rooms
        .keys()
        .filter(|r| r.as_str().starts_with("#group-"))
        .count()
        + 1;
    let room = RoomId::new(format!("#group-{n}"));
    let mut r = Room::new(room.clone());
    r.group = Some(group);
    if let Some(subject) = subject.filter(|t| !t.trim().is_empty()) {
        r.subject = Subject {
            text: subject,
            by: Some(s.account.clone()),
            at: Some(SystemTime::now()),
        };
    }
    st.rooms.insert(room.clone(), r);
    room
}

/// Puts another member's session in a group it did not open, and tells it
/// (`RoomJoined`, as the network does for a group mail) and the others.
fn add_group_member(st: &mut NetState, room: &RoomId, account: &str, session: u64) {
    let member = Member {
        session,
        account: account.to_owned(),
        nick: account.to_owned(),
        role: Role::Participant,
        affiliation: Affiliation::Member,
        presence: st.presence.get(account).cloned().unwrap_or_default(),
    };
    let Some(r) = st.rooms.get_mut(room) else {
        return;
    };
    if r.member(session).is_some() {
        return;
    }
    r.members.push(member.clone());
    let mut occupants = vec![Room::echo_occupant()];
    occupants.extend(
        r.members
            .iter()
            .filter(|m| m.session != session)
            .map(|m| m.occupant(false)),
    );
    for a in r.group.iter().flatten() {
        if a != account && a != ECHO && !r.members.iter().any(|m| m.account == *a) {
            let mut o = Occupant::new(a.clone());
            o.contact = Some(ContactId::new(a.clone()));
            o.stable_id = Some(a.clone());
            occupants.push(o);
        }
    }
    occupants.push(member.occupant(true));
    let info = RoomInfo {
        room: room.clone(),
        name: Some(room_name(room)),
        description: None,
        public: false,
        encrypted: false,
        non_anonymous: true,
        password_protected: false,
        occupant_count: Some(r.members.len() as u32 + 1),
        history: HistoryPolicy::default(),
        members: r.group.as_ref().map(|g| {
            g.iter()
                .filter(|a| *a != account)
                .map(|a| ContactId::new(a.clone()))
                .collect()
        }),
    };
    let joined = Event::RoomJoined {
        info,
        nick: account.to_owned(),
        occupants,
        subject: r.subject.clone(),
    };
    st.event_to_session(session, joined);
    st.to_room(
        room,
        &Event::Occupant {
            room: room.clone(),
            occupant: member.occupant(false),
        },
        Some(session),
    );
}

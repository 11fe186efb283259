//! The bot `echo`, every user's contact and the owner of every room.
//!
//! For each message written to it, the bot first confirms delivery
//! (`Delivered`, when the network has receipts), then answers, then marks
//! the message read (`Displayed`, when the network has markers). Its
//! answer is the same text (with the user's preference `echo_prefix` in
//! front) as a new message with its own id, keeping the formatting, kind,
//! thread and attachments; a reply is answered with a reply to the user's
//! message. It follows up on what the user does to a message it answered:
//! an edit edits its answer, a retraction retracts it, reactions are
//! mirrored on the other message of the pair; composing is answered with
//! composing.
//!
//! Some messages are commands (the first word, the rest is the argument):
//!
//! | body | what the bot does |
//! |---|---|
//! | `panic` | the session's `act` panics (crash isolation) |
//! | `spawn-panic` | a task started with the session's spawner panics |
//! | `notice TEXT` / `emote TEXT` | answers TEXT as a notice / an emote |
//! | `presence SHOW [STATUS]` | its presence becomes SHOW (available, chat, away, xa, dnd, offline) |
//! | `burst N` | sends N messages (at most 1000) at once |
//! | `file` | sends a PNG image as an attachment (`AttachmentSource::Bytes`) |
//! | `bad-xml` | a body with characters XML 1.0 forbids and a lone CR |
//! | `huge` | a 200 KiB body |
//! | `formatted` | bold, italic, colour, link, quote and preformatted text |
//! | `unfriend` / `friend` | leaves / rejoins the user's contact list |
//! | `view ROOM +NICK` / `view ROOM -NICK` | tells only this user's session that NICK came into / left ROOM (a network that shows each user a list of its own) |
//! | `help` | lists these |

use ferry_bridge::{
    Address, Attachment, AttachmentSource, ChatState, Color, ContactId, Event, Feature,
    IncomingMessage, MessageId, MessageKind, OutgoingMessage, Presence, ReplyTo, Rich, Sender,
    Show, Style,
};

use crate::session::{TestSession, contact_info};
use crate::state::{Carried, Chat, NetState, Queued};

/// The bot's name (its contact id and its nickname in rooms).
pub const ECHO: &str = "echo";

/// The bot's avatar (32×32 PNG).
pub const AVATAR_PNG: &[u8] = include_bytes!("../assets/echo-avatar.png");

/// The image the bot sends for `file` (16×16 PNG).
pub const FILE_PNG: &[u8] = include_bytes!("../assets/file.png");

/// Size of the `huge` answer.
pub const HUGE_BYTES: usize = 200 * 1024;

/// Most messages of one `burst`.
pub const MAX_BURST: u32 = 1000;

/// The body of the `bad-xml` answer: C0 controls, U+FFFE, U+FFFF, a lone CR.
pub const BAD_XML_BODY: &str = "bad xml: [\u{1}] [\u{1b}] [\u{fffe}] [\u{ffff}] lone CR:[\r] end";

fn echo_id() -> ContactId {
    ContactId::new(ECHO)
}

fn chat() -> Address {
    Address::Contact(echo_id())
}

fn from() -> Sender {
    Sender::Contact(echo_id())
}

/// The formatted text of `formatted`.
pub fn formatted() -> Rich {
    let mut r = Rich::default();
    let plain = Style::default();
    r.push(
        "bold",
        &Style {
            bold: true,
            ..Style::default()
        },
    );
    r.push(" ", &plain);
    r.push(
        "italic",
        &Style {
            italic: true,
            ..Style::default()
        },
    );
    r.push(" ", &plain);
    r.push(
        "red",
        &Style {
            fg: Some(Color(255, 0, 0)),
            ..Style::default()
        },
    );
    r.push(" ", &plain);
    r.push(
        "link",
        &Style {
            link: Some("https://example.org/".into()),
            ..Style::default()
        },
    );
    r.push("\n", &plain);
    r.push(
        "a quote",
        &Style {
            quote: 1,
            ..Style::default()
        },
    );
    r.push("\n", &plain);
    r.push(
        "pre  formatted",
        &Style {
            pre: true,
            ..Style::default()
        },
    );
    r
}

/// Queues the bot's events for every session of the user, after the
/// configured delay.
fn bot_emit(s: &TestSession, st: &NetState, events: Vec<Event>) {
    if events.is_empty() {
        return;
    }
    for id in st.sessions_of(&s.account) {
        if !s.shared.echo_delay.is_zero() {
            st.to_session(id, Queued::Sleep(s.shared.echo_delay));
        }
        for e in &events {
            st.event_to_session(id, e.clone());
        }
    }
}

/// A new message of the bot to the user, recorded by the network.
fn say(s: &TestSession, st: &mut NetState, body: String, kind: MessageKind) -> IncomingMessage {
    let id = s.shared.new_id();
    st.carried.insert(
        id.clone(),
        Carried {
            author: ECHO.into(),
            chat: Chat::direct(&s.account, ECHO),
            body: body.clone(),
        },
    );
    let mut m = IncomingMessage::text(chat(), from(), body);
    m.id = Some(id);
    m.kind = kind;
    m
}

fn parse_show(word: &str) -> Option<Show> {
    Some(match word {
        "available" | "online" => Show::Available,
        "chat" => Show::Chat,
        "away" => Show::Away,
        "xa" => Show::ExtendedAway,
        "dnd" => Show::DoNotDisturb,
        "offline" => Show::Offline,
        _ => return None,
    })
}

/// The bot got a message (`id` is its network id).
pub(crate) fn answer(s: &TestSession, st: &mut NetState, msg: &OutgoingMessage, id: &MessageId) {
    let caps = s.shared.caps;
    let prefix = s.echo_prefix();
    let mut out = Vec::new();
    if caps.has(Feature::DeliveryReceipts) {
        out.push(Event::Delivered {
            chat: chat(),
            id: id.clone(),
        });
    }
    let body = msg.body.trim();
    let (word, arg) = body.split_once(' ').unwrap_or((body, ""));
    let arg = arg.trim();
    match word {
        "spawn-panic" => {
            s.spawner.spawn("test-network-panic", async {
                panic!("test network: a background task was asked to panic")
            });
        }
        "notice" => {
            let m = say(s, st, format!("{prefix}{arg}"), MessageKind::Notice);
            out.push(Event::Message(m));
        }
        "emote" => {
            let m = say(s, st, format!("{prefix}{arg}"), MessageKind::Emote);
            out.push(Event::Message(m));
        }
        "presence" => {
            let (show, status) = arg.split_once(' ').unwrap_or((arg, ""));
            match parse_show(show) {
                Some(show) => {
                    let presence = Presence {
                        show,
                        status: (!status.trim().is_empty()).then(|| status.trim().to_owned()),
                        last_active: None,
                    };
                    st.echo_presence = presence.clone();
                    if caps.has(Feature::ContactPresence) {
                        // everyone has the bot as a contact
                        let event = Event::ContactPresence {
                            contact: echo_id(),
                            presence,
                        };
                        for sid in st.sessions.keys() {
                            st.event_to_session(*sid, event.clone());
                        }
                    }
                }
                None => {
                    let m = say(
                        s,
                        st,
                        "presence takes one of: available, chat, away, xa, dnd, offline".into(),
                        MessageKind::Normal,
                    );
                    out.push(Event::Message(m));
                }
            }
        }
        "burst" => match arg.parse::<u32>() {
            Ok(n) if (1..=MAX_BURST).contains(&n) => {
                for i in 1..=n {
                    let m = say(s, st, format!("{prefix}burst {i}/{n}"), MessageKind::Normal);
                    out.push(Event::Message(m));
                }
            }
            _ => {
                let m = say(
                    s,
                    st,
                    format!("burst takes a number from 1 to {MAX_BURST}"),
                    MessageKind::Normal,
                );
                out.push(Event::Message(m));
            }
        },
        "file" => {
            let mut m = say(
                s,
                st,
                format!("{prefix}here is a file"),
                MessageKind::Normal,
            );
            m.attachments.push(Attachment {
                source: AttachmentSource::Bytes(FILE_PNG.to_vec()),
                name: Some("red.png".into()),
                mime: Some("image/png".into()),
                size: Some(FILE_PNG.len() as u64),
                caption: Some("a red square".into()),
            });
            out.push(Event::Message(m));
        }
        "bad-xml" => {
            let m = say(
                s,
                st,
                format!("{prefix}{BAD_XML_BODY}"),
                MessageKind::Normal,
            );
            out.push(Event::Message(m));
        }
        "huge" => {
            let mut text = String::with_capacity(HUGE_BYTES);
            text.push_str("huge ");
            while text.len() < HUGE_BYTES {
                text.push_str("0123456789");
            }
            text.truncate(HUGE_BYTES);
            let m = say(s, st, text, MessageKind::Normal);
            out.push(Event::Message(m));
        }
        "formatted" => {
            let rich = formatted();
            let mut m = say(s, st, rich.to_plain(), MessageKind::Normal);
            if caps.has(Feature::Formatting) {
                m.rich = Some(rich);
            }
            out.push(Event::Message(m));
        }
        "view" => {
            let (room, change) = arg.split_once(' ').unwrap_or((arg, ""));
            let room = ferry_bridge::RoomId::new(room);
            let change = change.trim();
            if let Some(nick) = change.strip_prefix('+').filter(|n| !n.is_empty()) {
                out.push(Event::Occupant {
                    room,
                    occupant: ferry_bridge::Occupant::new(nick),
                });
            } else if let Some(nick) = change.strip_prefix('-').filter(|n| !n.is_empty()) {
                out.push(Event::OccupantLeft {
                    room,
                    nick: nick.to_owned(),
                    exit: ferry_bridge::RoomExit::Left(None),
                });
            } else {
                let m = say(
                    s,
                    st,
                    "view takes a room and +NICK or -NICK".into(),
                    MessageKind::Normal,
                );
                out.push(Event::Message(m));
            }
        }
        "unfriend" => out.push(Event::ContactRemoved(echo_id())),
        "friend" => out.push(Event::Contact(contact_info(ECHO))),
        "help" => {
            let m = say(
                s,
                st,
                "I repeat what you write. Commands: panic, spawn-panic, notice TEXT, emote TEXT, \
                 presence SHOW [STATUS], burst N, file, bad-xml, huge, formatted, view ROOM +NICK|-NICK, \
                 unfriend, friend"
                    .into(),
                MessageKind::Normal,
            );
            out.push(Event::Message(m));
        }
        _ => {
            let mut m = say(s, st, format!("{prefix}{}", msg.body), msg.kind);
            if caps.has(Feature::Formatting) {
                m.rich = msg.rich.clone().map(|r| {
                    let mut with = Rich::default();
                    with.push(&prefix, &Style::default());
                    for span in r.spans {
                        with.push(&span.text, &span.style);
                    }
                    with
                });
            }
            if caps.has(Feature::Threads) {
                m.thread = msg.thread.clone();
            }
            m.attachments = msg.attachments.clone();
            if caps.has(Feature::Replies) && msg.reply_to.is_some() {
                m.reply_to = Some(ReplyTo {
                    id: id.clone(),
                    author: Some(Sender::Own),
                    quote: Some(msg.body.clone()),
                });
            }
            if let Some(eid) = m.id.clone() {
                st.echo_pairs.insert(id.clone(), eid.clone());
                st.echo_pairs.insert(eid, id.clone());
            }
            out.push(Event::Message(m));
        }
    }
    if caps.has(Feature::DisplayedMarkers) {
        out.push(Event::Displayed {
            chat: chat(),
            by: from(),
            up_to: id.clone(),
        });
    }
    bot_emit(s, st, out);
}

/// The user corrected a message the bot answered: the bot corrects its
/// answer.
pub(crate) fn edit(
    s: &TestSession,
    st: &mut NetState,
    msg: &OutgoingMessage,
    replaces: &MessageId,
) {
    let Some(answer) = st.echo_pairs.get(replaces).cloned() else {
        return;
    };
    let mut m = say(s, st, format!("{}{}", s.echo_prefix(), msg.body), msg.kind);
    m.replaces = Some(answer);
    bot_emit(s, st, vec![Event::Message(m)]);
}

/// The user retracted a message the bot answered: the bot retracts its
/// answer.
pub(crate) fn retract(s: &TestSession, st: &mut NetState, target: &MessageId) {
    let Some(answer) = st.echo_pairs.get(target).cloned() else {
        return;
    };
    bot_emit(
        s,
        st,
        vec![Event::Retracted {
            chat: chat(),
            by: from(),
            target: answer,
            moderated: None,
        }],
    );
}

/// The user reacted to a message of a pair (theirs or the bot's answer):
/// the bot reacts the same to the other one.
pub(crate) fn react(s: &TestSession, st: &mut NetState, target: &MessageId, emojis: &[String]) {
    let Some(other) = st.echo_pairs.get(target).cloned() else {
        return;
    };
    bot_emit(
        s,
        st,
        vec![Event::Reactions {
            chat: chat(),
            from: from(),
            target: other,
            emojis: emojis.to_vec(),
        }],
    );
}

/// The user is typing to the bot: so is the bot.
pub(crate) fn chat_state(s: &TestSession, st: &NetState, state: ChatState) {
    if matches!(state, ChatState::Composing | ChatState::Paused) {
        bot_emit(
            s,
            st,
            vec![Event::ChatState {
                chat: chat(),
                from: from(),
                state,
            }],
        );
    }
}

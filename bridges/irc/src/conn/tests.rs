//! The state machine fed with scripted server lines: registration and
//! capabilities, joins, membership changes, batches (netsplit, multiline,
//! history), echo matching, error numerics, reconnection, idle close.

use std::collections::BTreeSet;
use std::sync::{Arc, Mutex};
use std::time::{Duration, Instant};

use ferry_bridge::{
    Address, ErrorKind, Event, HistoryPolicy, MessageKind, Outcome, OutgoingMessage, RoomExit,
    RoomId, Sender,
};
use tokio::sync::oneshot;

use super::*;
use crate::address::IrcAddresses;
use crate::casemap::TraitsRegistry;
use crate::config::Config;
use crate::settings::{ConnSettings, Defaults, ServerOptions};

struct Sm {
    conn: Conn,
    now: Instant,
    lines: Vec<String>,
    events: Vec<Event>,
}

fn settings(opts: ServerOptions) -> ConnSettings {
    ConnSettings::resolve(
        &Config::default(),
        &ferry_bridge::UserId::new("u@x"),
        "irc.x",
        &Defaults::default(),
        &opts,
    )
}

impl Sm {
    fn new(opts: ServerOptions) -> Sm {
        Sm::build(opts, "me", MemberTables::default())
    }

    /// A registered connection as `nick` whose channels' members are kept
    /// in `tables` (shared with other connections of the test).
    fn sharing(nick: &str, tables: &MemberTables) -> Sm {
        let mut sm = Sm::build(ServerOptions::default(), nick, tables.clone());
        sm.conn.on_connected("irc.x", 6667, false, None, sm.now);
        sm.feed(":irc.x CAP * LS :away-notify multi-prefix");
        sm.feed(&format!(":irc.x CAP {nick} ACK :away-notify multi-prefix"));
        sm.feed(&format!(":irc.x 001 {nick} :Welcome {nick}!~u@host.x"));
        sm.feed(&format!(
            ":irc.x 005 {nick} CHANTYPES=# PREFIX=(qaohv)~&@%+ CASEMAPPING=rfc1459 :are supported"
        ));
        sm.feed(&format!(":irc.x 422 {nick} :No MOTD"));
        sm.take_lines();
        sm.take_events();
        sm
    }

    /// Joins `chan`, whose NAMES list is `names`.
    fn join_with(&mut self, chan: &str, names: &str) -> RoomId {
        let nick = self.conn.nick().to_owned();
        let room = RoomId::new(format!("{}%irc.x", chan.to_ascii_lowercase()));
        self.req(Request::Join {
            channel: chan.into(),
            room: room.clone(),
            nick: nick.clone(),
            key: None,
            history: HistoryPolicy::default(),
            persistent: false,
        });
        self.feed(&format!(":{nick}!~u@host.x JOIN {chan}"));
        self.feed(&format!(":irc.x 353 {nick} = {chan} :{names}"));
        self.feed(&format!(":irc.x 366 {nick} {chan} :End"));
        self.take_lines();
        room
    }

    /// The members of `chan` this connection sees: nick and modes, sorted.
    fn members(&self, chan: &str) -> Vec<String> {
        let mut v: Vec<String> = self
            .conn
            .channels
            .get(chan)
            .map(|c| c.members.all())
            .unwrap_or_default()
            .iter()
            .map(|m| {
                format!(
                    "{}{}",
                    m.nick,
                    if m.modes.is_empty() {
                        String::new()
                    } else {
                        format!("+{}", m.modes)
                    }
                )
            })
            .collect();
        v.sort();
        v
    }

    fn build(opts: ServerOptions, nick: &str, members: MemberTables) -> Sm {
        let traits = TraitsRegistry::default();
        let env = ConnEnv {
            addresses: IrcAddresses::new(None, traits.clone()),
            traits,
            idle_timeout: Duration::from_secs(60),
            ping_interval: Duration::from_secs(120),
            version: "Ferry test".into(),
            down: Arc::new(Mutex::new(BTreeSet::new())),
            user: "alice@localhost".into(),
            closing: Default::default(),
            members,
        };
        let now = Instant::now();
        Sm {
            conn: Conn::new(settings(opts), env, nick, now),
            now,
            lines: vec![],
            events: vec![],
        }
    }

    fn pump(&mut self) {
        self.lines
            .extend(self.conn.take_lines().iter().map(|l| l.as_str().to_owned()));
        self.events.extend(self.conn.take_events());
    }

    fn feed(&mut self, line: &str) {
        self.conn.on_line(line.as_bytes(), self.now);
        self.pump();
    }

    fn req(&mut self, r: Request) {
        self.conn.on_request(r, self.now);
        self.pump();
    }

    fn advance(&mut self, d: Duration) {
        self.now += d;
        self.conn.on_tick(self.now);
        self.pump();
    }

    fn take_lines(&mut self) -> Vec<String> {
        std::mem::take(&mut self.lines)
    }

    fn take_events(&mut self) -> Vec<Event> {
        std::mem::take(&mut self.events)
    }

    /// Registration with the given CAP LS answer.
    fn register(&mut self, caps: &str) {
        self.conn.on_connected("irc.x", 6667, false, None, self.now);
        self.pump();
        self.feed(&format!(":irc.x CAP * LS :{caps}"));
        let req = self
            .lines
            .iter()
            .find(|l| l.starts_with("CAP REQ"))
            .cloned();
        if let Some(r) = req {
            let list = r
                .trim_start_matches("CAP REQ ")
                .trim_start_matches(':')
                .to_owned();
            self.feed(&format!(":irc.x CAP me ACK :{list}"));
        }
        self.feed(":irc.x 001 me :Welcome to the X Network me!~u@host.x");
        self.feed(":irc.x 005 me CHANTYPES=# PREFIX=(qaohv)~&@%+ CASEMAPPING=rfc1459 STATUSMSG=@+ MONITOR=10 :are supported");
        self.feed(":irc.x 422 me :No MOTD");
        self.take_lines();
        self.take_events();
    }

    fn join(&mut self, chan: &str) -> RoomId {
        let room = RoomId::new(format!("{}%irc.x", chan.to_ascii_lowercase()));
        self.req(Request::Join {
            channel: chan.into(),
            room: room.clone(),
            nick: "me".into(),
            key: None,
            history: HistoryPolicy::default(),
            persistent: false,
        });
        self.feed(&format!(":me!~u@host.x JOIN {chan}"));
        self.feed(&format!(":irc.x 353 me = {chan} :me @+op ~boss %+voice"));
        self.feed(&format!(":irc.x 366 me {chan} :End"));
        self.take_lines();
        room
    }
}

fn text(to: Address, body: &str) -> OutgoingMessage {
    OutgoingMessage::text(to, "cid", body)
}

#[test]
fn registration_negotiates_caps_and_ends() {
    let mut sm = Sm::new(ServerOptions::default());
    sm.conn.on_connected("irc.x", 6667, false, None, sm.now);
    sm.pump();
    assert_eq!(
        sm.take_lines(),
        vec!["CAP LS 302", "NICK me", "USER u 0 * u"]
    );
    sm.feed(":irc.x CAP * LS * :multi-prefix batch unknown-cap");
    assert!(sm.take_lines().is_empty(), "waits for the last LS line");
    sm.feed(":irc.x CAP * LS :echo-message sasl=PLAIN draft/multiline=max-bytes=4096,max-lines=5");
    let req = sm.take_lines();
    assert_eq!(
        req,
        vec!["CAP REQ :batch draft/multiline echo-message multi-prefix"]
    );
    sm.feed(":irc.x CAP me ACK :batch draft/multiline echo-message multi-prefix");
    assert_eq!(sm.take_lines(), vec!["CAP END"]);
    assert!(sm.conn.has_cap("echo-message"));
    // cap-notify
    sm.feed(":irc.x CAP me NEW :away-notify");
    assert_eq!(sm.take_lines(), vec!["CAP REQ away-notify"]);
    sm.feed(":irc.x CAP me DEL :echo-message");
    assert!(!sm.conn.has_cap("echo-message"));
}

#[test]
fn sasl_plain_and_failure() {
    let opts = ServerOptions {
        sasl_password: Some("pw".into()),
        nick: Some("me".into()),
        ..Default::default()
    };
    let mut sm = Sm::new(opts.clone());
    sm.conn.on_connected("irc.x", 6667, false, None, sm.now);
    sm.pump();
    sm.take_lines();
    sm.feed(":irc.x CAP * LS :sasl");
    assert_eq!(sm.take_lines(), vec!["CAP REQ sasl"]);
    sm.feed(":irc.x CAP me ACK :sasl");
    assert_eq!(sm.take_lines(), vec!["AUTHENTICATE PLAIN"]);
    sm.feed("AUTHENTICATE +");
    assert_eq!(
        sm.take_lines(),
        vec![format!(
            "AUTHENTICATE {}",
            crate::conn::registration::base64(b"me\0me\0pw")
        )]
    );
    sm.feed(":irc.x 903 me :SASL authentication successful");
    assert_eq!(sm.take_lines(), vec!["CAP END"]);

    let mut sm = Sm::new(opts);
    sm.req(Request::Join {
        channel: "#a".into(),
        room: RoomId::new("#a%irc.x"),
        nick: "me".into(),
        key: None,
        history: HistoryPolicy::default(),
        persistent: false,
    });
    sm.conn.on_connected("irc.x", 6667, false, None, sm.now);
    sm.feed(":irc.x CAP * LS :sasl");
    sm.feed(":irc.x CAP me ACK :sasl");
    sm.feed("AUTHENTICATE +");
    sm.feed(":irc.x 904 me :SASL authentication failed");
    assert!(matches!(sm.conn.finished(), Some(Down::Fatal(m)) if m.contains("SASL")));
    assert!(sm.events.iter().any(|e| matches!(e, Event::RoomJoinFailed { error, .. } if error.kind == ErrorKind::NotAuthorized)));
}

#[test]
fn nick_collision_while_registering() {
    let mut sm = Sm::new(ServerOptions::default());
    sm.conn.on_connected("irc.x", 6667, false, None, sm.now);
    sm.pump();
    sm.take_lines();
    sm.feed(":irc.x 433 * me :Nickname is already in use");
    assert_eq!(sm.take_lines(), vec!["NICK me_"]);
    sm.feed(":irc.x 001 me_ :Welcome");
    assert_eq!(sm.conn.nick(), "me_");
}

#[test]
fn join_reports_occupants_with_every_prefix() {
    let mut sm = Sm::new(ServerOptions::default());
    sm.register("multi-prefix");
    let room = sm.join("#Chan");
    let ev = sm.take_events();
    let Some(Event::RoomJoined {
        info,
        nick,
        occupants,
        ..
    }) = ev.first()
    else {
        panic!("{ev:?}")
    };
    assert_eq!(info.room, room);
    assert_eq!(info.name.as_deref(), Some("#Chan"));
    assert_eq!(nick, "me");
    let get = |n: &str| occupants.iter().find(|o| o.nick == n).unwrap();
    assert_eq!(get("op").affiliation, ferry_bridge::Affiliation::Admin);
    assert_eq!(get("boss").affiliation, ferry_bridge::Affiliation::Owner);
    assert_eq!(get("voice").role, ferry_bridge::Role::Moderator);
    assert!(get("me").is_self);
}

#[test]
fn membership_changes() {
    let mut sm = Sm::new(ServerOptions::default());
    sm.register("extended-join away-notify account-notify");
    let room = sm.join("#c");
    sm.take_events();
    sm.feed(":new!n@h JOIN #c acct :Real Name");
    sm.feed(":op NICK op2");
    sm.feed(":op2 PART #c :bye");
    sm.feed(":new AWAY :gone");
    sm.feed(":boss QUIT :Quit: zzz");
    let ev = sm.take_events();
    assert!(
        matches!(&ev[0], Event::Occupant { occupant, .. } if occupant.nick == "new" && occupant.stable_id.as_deref() == Some("acct"))
    );
    assert_eq!(
        ev[1],
        Event::NickChanged {
            room: room.clone(),
            old: "op".into(),
            new: "op2".into()
        }
    );
    assert_eq!(
        ev[2],
        Event::OccupantLeft {
            room: room.clone(),
            nick: "op2".into(),
            exit: RoomExit::Left(Some("bye".into()))
        }
    );
    assert!(
        matches!(&ev[3], Event::Occupant { occupant, .. } if occupant.presence.show == ferry_bridge::Show::Away)
    );
    assert_eq!(
        ev[4],
        Event::OccupantLeft {
            room: room.clone(),
            nick: "boss".into(),
            exit: RoomExit::Quit(Some("Quit: zzz".into()))
        }
    );
}

#[test]
fn netsplits_are_quiet_and_netjoins_silent() {
    let mut sm = Sm::new(ServerOptions::default());
    sm.register("batch");
    let room = sm.join("#c");
    sm.take_events();
    sm.feed(":irc.x BATCH +s1 netsplit irc.a irc.b");
    sm.feed("@batch=s1 :op QUIT :irc.a irc.b");
    sm.feed("@batch=s1 :boss QUIT :irc.a irc.b");
    sm.feed(":irc.x BATCH -s1");
    let ev = sm.take_events();
    assert_eq!(ev.len(), 1, "one notice, no presence storm: {ev:?}");
    assert!(
        matches!(&ev[0], Event::Message(m) if m.body.contains("Netsplit") && m.body.contains("2 users"))
    );
    // op comes back: silently.
    sm.feed(":irc.x BATCH +j1 netjoin irc.a irc.b");
    sm.feed("@batch=j1 :op!o@h JOIN #c");
    sm.feed(":irc.x BATCH -j1");
    assert!(sm.take_events().is_empty());
    // boss does not: reported after the grace period.
    sm.advance(Duration::from_secs(61));
    let ev = sm.take_events();
    assert_eq!(
        ev,
        vec![Event::OccupantLeft {
            room,
            nick: "boss".into(),
            exit: RoomExit::Quit(Some("irc.a irc.b".into()))
        }]
    );
}

#[test]
fn echoes_answer_sends_and_are_not_reported() {
    let mut sm = Sm::new(ServerOptions::default());
    sm.register("echo-message message-tags");
    let room = sm.join("#c");
    sm.take_events();
    let (tx, mut rx) = oneshot::channel();
    sm.req(Request::Send {
        to: Target::Channel("#c".into()),
        msg: Box::new(text(Address::Room(room.clone()), "hi")),
        reply: tx,
    });
    assert_eq!(sm.take_lines(), vec!["PRIVMSG #c hi"]);
    assert!(rx.try_recv().is_err(), "waits for the echo");
    sm.feed("@msgid=abc :me!~u@host.x PRIVMSG #c :hi");
    assert_eq!(
        rx.try_recv().unwrap(),
        Ok(Outcome::sent(ferry_bridge::MessageId::new("abc")))
    );
    assert!(sm.take_events().is_empty());
    // A message of ours not sent through the session (raw command): shown as own.
    sm.feed("@msgid=def :me!~u@host.x PRIVMSG #c :typed elsewhere");
    let ev = sm.take_events();
    assert!(
        matches!(&ev[0], Event::Message(m) if m.from == Sender::Own && m.body == "typed elsewhere")
    );
    // An error instead of an echo fails the send.
    let (tx, mut rx) = oneshot::channel();
    sm.req(Request::Send {
        to: Target::Nick {
            nick: "ghost".into(),
            room: None,
        },
        msg: Box::new(text(Address::Room(room), "x")),
        reply: tx,
    });
    sm.feed(":irc.x 401 me ghost :No such nick/channel");
    let err = rx.try_recv().unwrap().unwrap_err();
    assert_eq!(err.kind, ErrorKind::NotFound);
}

#[test]
fn multiline_batches_both_ways() {
    let mut sm = Sm::new(ServerOptions::default());
    sm.conn.on_connected("irc.x", 6667, false, None, sm.now);
    sm.feed(":irc.x CAP * LS :batch draft/multiline=max-bytes=4096,max-lines=10 echo-message");
    sm.feed(":irc.x CAP me ACK :batch draft/multiline echo-message");
    sm.feed(":irc.x 001 me :Welcome me!~u@h");
    sm.feed(":irc.x 422 me :No MOTD");
    let room = sm.join("#c");
    sm.take_lines();
    sm.take_events();
    let (tx, mut rx) = oneshot::channel();
    sm.req(Request::Send {
        to: Target::Channel("#c".into()),
        msg: Box::new(text(Address::Room(room.clone()), "one\ntwo")),
        reply: tx,
    });
    let lines = sm.take_lines();
    assert_eq!(lines.len(), 4, "{lines:?}");
    assert!(lines[0].starts_with("BATCH +") && lines[0].ends_with(" draft/multiline #c"));
    assert!(lines[1].starts_with("@batch=") && lines[1].ends_with("PRIVMSG #c one"));
    assert!(lines[3].starts_with("BATCH -"));
    // The echo comes back as a batch.
    sm.feed("@msgid=m1 :me!~u@h BATCH +e1 draft/multiline #c");
    sm.feed("@batch=e1 :me!~u@h PRIVMSG #c :one");
    sm.feed("@batch=e1 :me!~u@h PRIVMSG #c :two");
    sm.feed(":irc.x BATCH -e1");
    assert_eq!(
        rx.try_recv().unwrap(),
        Ok(Outcome::sent(ferry_bridge::MessageId::new("m1")))
    );
    // Someone else's multiline message is one message.
    sm.feed("@msgid=m2 :op!o@h BATCH +e2 draft/multiline #c");
    sm.feed("@batch=e2 :op!o@h PRIVMSG #c :hello");
    sm.feed("@batch=e2;draft/multiline-concat :op!o@h PRIVMSG #c : world");
    sm.feed("@batch=e2 :op!o@h PRIVMSG #c :line two");
    sm.feed(":irc.x BATCH -e2");
    let ev = sm.take_events();
    assert!(
        matches!(&ev[0], Event::Message(m) if m.body == "hello world\nline two" && m.id.as_ref().map(|i| i.as_str()) == Some("m2")),
        "{ev:?}"
    );
}

#[test]
fn chathistory_answers_fetches() {
    let mut sm = Sm::new(ServerOptions::default());
    sm.register("batch draft/chathistory server-time labeled-response message-tags");
    let room = sm.join("#c");
    sm.take_lines();
    let (tx, mut rx) = oneshot::channel();
    sm.req(Request::History {
        to: Target::Channel("#c".into()),
        before: None,
        limit: 50,
        reply: tx,
    });
    let l = sm.take_lines();
    assert_eq!(l.len(), 1);
    assert!(l[0].ends_with("CHATHISTORY LATEST #c * 50"), "{l:?}");
    let label = l[0]
        .split(' ')
        .next()
        .unwrap()
        .trim_start_matches("@label=")
        .to_owned();
    sm.feed(&format!("@label={label} :irc.x BATCH +h1 chathistory #c"));
    sm.feed("@batch=h1;time=2020-01-01T00:00:00.000Z;msgid=a :op!o@h PRIVMSG #c :old one");
    sm.feed("@batch=h1;time=2020-01-01T00:00:01.000Z;msgid=b :op!o@h PRIVMSG #c :old two");
    sm.feed(":irc.x BATCH -h1");
    let Ok(Outcome::History(msgs)) = rx.try_recv().unwrap() else {
        panic!()
    };
    assert_eq!(msgs.len(), 2);
    assert_eq!(msgs[0].body, "old two", "newest first");
    assert!(
        msgs.iter().all(|m| m.archive_only
            && m.timestamp.is_some()
            && m.chat == Address::Room(room.clone()))
    );
}

#[test]
fn typing_reactions_and_replies() {
    let mut sm = Sm::new(ServerOptions::default());
    sm.register("message-tags");
    let room = sm.join("#c");
    sm.take_events();
    sm.feed("@+typing=active :op!o@h TAGMSG #c");
    sm.feed("@+draft/react=👍;+draft/reply=m9 :op!o@h TAGMSG #c");
    sm.feed("@+draft/reply=m9;msgid=m10 :op!o@h PRIVMSG #c :agreed");
    let ev = sm.take_events();
    assert!(matches!(
        &ev[0],
        Event::ChatState {
            state: ferry_bridge::ChatState::Composing,
            ..
        }
    ));
    assert!(
        matches!(&ev[1], Event::Reactions { emojis, target, .. } if emojis == &vec!["👍".to_string()] && target.as_str() == "m9")
    );
    assert!(
        matches!(&ev[2], Event::Message(m) if m.reply_to.as_ref().map(|r| r.id.as_str()) == Some("m9"))
    );
    sm.req(Request::Typing {
        to: Target::Channel("#c".into()),
        state: ferry_bridge::ChatState::Composing,
    });
    sm.req(Request::Typing {
        to: Target::Channel("#c".into()),
        state: ferry_bridge::ChatState::Composing,
    });
    sm.req(Request::Typing {
        to: Target::Channel("#c".into()),
        state: ferry_bridge::ChatState::Active,
    });
    assert_eq!(
        sm.take_lines(),
        vec!["@+typing=active TAGMSG #c", "@+typing=done TAGMSG #c"]
    );
    let (tx, mut rx) = oneshot::channel();
    sm.req(Request::React {
        to: Target::Channel("#c".into()),
        target: ferry_bridge::MessageId::new("m10"),
        emojis: vec!["🎉".into()],
        reply: tx,
    });
    assert_eq!(rx.try_recv().unwrap(), Ok(Outcome::Done));
    assert_eq!(
        sm.take_lines(),
        vec!["@+draft/react=🎉;+draft/reply=m10 TAGMSG #c"]
    );
    let _ = room;
}

#[test]
fn disconnection_shows_in_rooms_and_rejoins_with_keys() {
    let mut sm = Sm::new(ServerOptions::default());
    sm.register("");
    sm.req(Request::Join {
        channel: "#k".into(),
        room: RoomId::new("#k%irc.x"),
        nick: "me".into(),
        key: Some("sesame".into()),
        history: HistoryPolicy::default(),
        persistent: false,
    });
    sm.feed(":me!~u@h JOIN #k");
    sm.feed(":irc.x 366 me #k :End");
    let room = sm.join("#c");
    sm.take_events();
    sm.take_lines();
    sm.conn.on_disconnected("connection reset", sm.now);
    sm.pump();
    let ev = sm.take_events();
    let left: Vec<_> = ev
        .iter()
        .filter(|e| {
            matches!(
                e,
                Event::RoomLeft {
                    exit: RoomExit::Disconnected(_),
                    ..
                }
            )
        })
        .collect();
    assert_eq!(left.len(), 2);
    assert!(ev.iter().any(|e| matches!(
        e,
        Event::Connection(ferry_bridge::ConnectionState::Reconnecting(_))
    )));
    assert!(sm.conn.wants_connection(sm.now));
    sm.register("");
    // register() drained lines: rejoin happened at 422.
    sm.conn.on_disconnected("again", sm.now);
    sm.pump();
    sm.take_events();
    sm.conn.on_connected("irc.x", 6667, false, None, sm.now);
    sm.feed(":irc.x 001 me :Welcome");
    sm.feed(":irc.x 422 me :No MOTD");
    let lines = sm.take_lines();
    assert!(
        lines.contains(&"JOIN #k,#c sesame".to_string()),
        "{lines:?}"
    );
    sm.feed(":me!~u@h JOIN #c");
    sm.feed(":irc.x 366 me #c :End");
    assert!(
        sm.take_events()
            .iter()
            .any(|e| matches!(e, Event::RoomJoined { info, .. } if info.room == room))
    );
}

fn join_failed(events: &[Event]) -> Vec<(RoomId, String)> {
    events
        .iter()
        .filter_map(|e| match e {
            Event::RoomJoinFailed { room, error } => Some((room.clone(), error.message.clone())),
            _ => None,
        })
        .collect()
}

#[test]
fn a_server_refusing_reconnections_ends_the_rooms() {
    // The core keeps the user's clients in a room after RoomLeft
    // Disconnected until RoomJoined or RoomJoinFailed: a server that keeps
    // refusing us (K-line) must end with RoomJoinFailed for every room.
    let mut sm = Sm::new(ServerOptions::default());
    sm.register("");
    let a = sm.join("#a");
    let b = sm.join("#b");
    sm.take_events();
    sm.feed("ERROR :Closing link: (me@h) [K-Lined: go away]");
    sm.conn
        .on_disconnected("the server closed the connection", sm.now);
    sm.pump();
    let ev = sm.take_events();
    assert_eq!(
        ev.iter()
            .filter(|e| matches!(e, Event::RoomLeft { exit: RoomExit::Disconnected(why), .. } if why.contains("K-Lined")))
            .count(),
        2,
        "{ev:?}"
    );
    assert!(sm.conn.finished().is_none(), "a first loss reconnects");
    for attempt in 1..=3 {
        sm.conn.on_connected("irc.x", 6667, false, None, sm.now);
        sm.feed("ERROR :Closing link: (me@h) [K-Lined: go away]");
        sm.conn
            .on_disconnected("the server closed the connection", sm.now);
        sm.pump();
        let ev = sm.take_events();
        if attempt < 3 {
            assert!(join_failed(&ev).is_empty(), "attempt {attempt}: {ev:?}");
            assert!(sm.conn.finished().is_none());
        } else {
            let failed = join_failed(&ev);
            let rooms: BTreeSet<_> = failed.iter().map(|(r, _)| r.clone()).collect();
            assert_eq!(rooms, BTreeSet::from([a.clone(), b.clone()]), "{ev:?}");
            assert!(
                failed.iter().all(|(_, m)| m.contains("K-Lined")),
                "{failed:?}"
            );
            assert!(matches!(sm.conn.finished(), Some(Down::Fatal(_))));
        }
    }
}

#[test]
fn refusals_are_counted_in_a_row_only() {
    let mut sm = Sm::new(ServerOptions::default());
    sm.register("");
    sm.join("#a");
    sm.conn.on_disconnected("reset", sm.now);
    for _ in 0..5 {
        // Refused twice, then a server restart: connection refused (no
        // ERROR), then welcomed again.
        for _ in 0..2 {
            sm.conn.on_connected("irc.x", 6667, false, None, sm.now);
            sm.feed("ERROR :Trying to reconnect too fast");
            sm.conn.on_disconnected("closed", sm.now);
        }
        sm.conn.on_connect_failed(
            &crate::transport::ConnectError::Failed("connection refused".into()),
            sm.now,
        );
        sm.register("");
        sm.conn.on_disconnected("reset", sm.now);
        sm.pump();
    }
    assert!(sm.conn.finished().is_none());
    assert!(join_failed(&sm.take_events()).is_empty());
}

#[test]
fn a_nick_taken_on_rejoin_comes_back_under_another_nick() {
    let mut sm = Sm::new(ServerOptions::default());
    sm.register("");
    let room = sm.join("#c");
    sm.conn.on_disconnected("reset", sm.now);
    sm.pump();
    sm.take_events();
    sm.take_lines();
    sm.conn.on_connected("irc.x", 6667, false, None, sm.now);
    sm.feed(":irc.x 433 * me :Nickname is already in use");
    let lines = sm.take_lines();
    let retry = lines
        .iter()
        .rev()
        .find(|l| l.starts_with("NICK "))
        .cloned()
        .expect("another nick");
    let nick = retry.trim_start_matches("NICK ").to_owned();
    assert_ne!(nick, "me");
    sm.feed(&format!(":irc.x 001 {nick} :Welcome"));
    sm.feed(&format!(":irc.x 422 {nick} :No MOTD"));
    assert!(sm.take_lines().iter().any(|l| l == "JOIN #c"));
    sm.feed(&format!(":{nick}!~u@h JOIN #c"));
    sm.feed(&format!(":irc.x 353 {nick} = #c :{nick} @op"));
    sm.feed(&format!(":irc.x 366 {nick} #c :End"));
    let ev = sm.take_events();
    assert!(
        ev.iter().any(|e| matches!(e, Event::RoomJoined { info, nick: n, .. } if info.room == room && *n == nick)),
        "{ev:?}"
    );
}

#[test]
fn disconnecting_from_a_server_ends_its_rooms() {
    // Joined: the user left the room (not Disconnected, which would keep
    // the clients waiting for a reconnection that will not come).
    let mut sm = Sm::new(ServerOptions::default());
    sm.register("");
    let room = sm.join("#c");
    sm.take_events();
    sm.req(Request::Quit {
        message: Some("bye".into()),
        done: None,
        leave_rooms: true,
    });
    assert!(sm.take_lines().contains(&"QUIT bye".to_string()));
    sm.conn.on_disconnected("closed", sm.now);
    sm.pump();
    let ev = sm.take_events();
    assert!(
        ev.iter().any(|e| matches!(e, Event::RoomLeft { room: r, exit: RoomExit::Left(Some(why)) } if *r == room && why.contains("bye"))),
        "{ev:?}"
    );
    // Waiting for a reconnection: the join cannot happen any more.
    let mut sm = Sm::new(ServerOptions::default());
    sm.register("");
    let room = sm.join("#c");
    sm.conn.on_disconnected("reset", sm.now);
    sm.pump();
    sm.take_events();
    sm.req(Request::Quit {
        message: None,
        done: None,
        leave_rooms: true,
    });
    assert_eq!(join_failed(&sm.take_events()).len(), 1);
    let _ = room;
    // The session closing: no events, the core ends the rooms itself.
    let mut sm = Sm::new(ServerOptions::default());
    sm.register("");
    sm.join("#c");
    sm.take_events();
    sm.req(Request::Quit {
        message: None,
        done: None,
        leave_rooms: false,
    });
    sm.conn.on_disconnected("closed", sm.now);
    sm.pump();
    let ev = sm.take_events();
    assert!(
        !ev.iter()
            .any(|e| matches!(e, Event::RoomLeft { .. } | Event::RoomJoinFailed { .. })),
        "{ev:?}"
    );
}

#[test]
fn idle_connections_close_even_after_private_messages() {
    let mut sm = Sm::new(ServerOptions::default());
    sm.register("");
    let room = sm.join("#c");
    let (tx, _rx) = oneshot::channel();
    sm.req(Request::Send {
        to: Target::Nick {
            nick: "op".into(),
            room: None,
        },
        msg: Box::new(text(Address::Room(room), "hi")),
        reply: tx,
    });
    sm.feed(":op!o@h PRIVMSG me :hi back");
    sm.req(Request::Leave {
        channel: "#c".into(),
        reason: None,
    });
    sm.take_lines();
    sm.advance(Duration::from_secs(30));
    assert!(
        sm.take_lines().is_empty(),
        "a private conversation keeps it open for a while"
    );
    sm.advance(Duration::from_secs(31));
    assert_eq!(sm.take_lines(), vec!["QUIT Idle"]);
}

#[test]
fn private_messages_follow_the_address_used() {
    let mut sm = Sm::new(ServerOptions::default());
    sm.register("");
    let room = sm.join("#c");
    sm.take_events();
    sm.feed(":op!o@h PRIVMSG me :hello");
    let ev = sm.take_events();
    assert!(
        matches!(&ev[0], Event::Message(m) if m.chat == Address::Contact(ferry_bridge::ContactId::new("op%irc.x")))
    );
    let (tx, _rx) = oneshot::channel();
    sm.req(Request::Send {
        to: Target::Nick {
            nick: "op".into(),
            room: Some(room.clone()),
        },
        msg: Box::new(text(Address::Room(room.clone()), "in room")),
        reply: tx,
    });
    sm.feed(":op!o@h PRIVMSG me :answer");
    let ev = sm.take_events();
    assert!(
        matches!(&ev[0], Event::Message(m) if m.chat == Address::Occupant { room: room.clone(), nick: "op".into() } && m.from == Sender::Occupant("op".into()))
    );
    // ChanServ's [#chan] notices belong to the channel.
    sm.feed(":ChanServ!s@services NOTICE me :[#c] Welcome!");
    let ev = sm.take_events();
    assert!(
        matches!(&ev[0], Event::Message(m) if m.chat == Address::Room(room.clone()) && m.kind == MessageKind::Notice && m.body == "ChanServ: Welcome!")
    );
}

#[test]
fn errors_of_joins_and_channel_commands() {
    let mut sm = Sm::new(ServerOptions::default());
    sm.register("");
    sm.req(Request::Join {
        channel: "#b".into(),
        room: RoomId::new("#b%irc.x"),
        nick: "me".into(),
        key: None,
        history: HistoryPolicy::default(),
        persistent: false,
    });
    sm.feed(":irc.x 474 me #b :Cannot join channel (+b)");
    let ev = sm.take_events();
    assert!(
        matches!(&ev[0], Event::RoomJoinFailed { error, .. } if error.kind == ErrorKind::NotAllowed && error.message.contains("banned"))
    );
    // Not joined: a message is refused by the session with a reason.
    let (tx, mut rx) = oneshot::channel();
    sm.req(Request::Send {
        to: Target::Channel("#b".into()),
        msg: Box::new(text(Address::Room(RoomId::new("#b%irc.x")), "x")),
        reply: tx,
    });
    let err = rx.try_recv().unwrap().unwrap_err();
    assert_eq!(err.kind, ErrorKind::NotAllowed);
}

#[test]
fn ping_keepalive_and_timeout() {
    let mut sm = Sm::new(ServerOptions::default());
    sm.register("");
    sm.join("#c");
    sm.feed("PING :tok");
    assert_eq!(sm.take_lines(), vec!["PONG tok"]);
    sm.advance(Duration::from_secs(121));
    assert_eq!(sm.take_lines(), vec!["PING irc.x"]);
    sm.advance(Duration::from_secs(121));
    assert!(sm.conn.take_lost().is_some());
}

#[test]
fn a_client_certificate_alone_does_not_require_sasl() {
    let opts = ServerOptions {
        client_cert: Some("PEM".into()),
        ..Default::default()
    };
    let mut sm = Sm::new(opts.clone());
    assert!(sm.conn.settings.sasl_external && !sm.conn.settings.sasl_required);
    sm.conn.on_connected("irc.x", 6697, true, None, sm.now);
    sm.pump();
    sm.take_lines();
    sm.feed(":irc.x CAP * LS :multi-prefix");
    sm.feed(":irc.x CAP me ACK :multi-prefix");
    assert_eq!(sm.take_lines(), vec!["CAP REQ multi-prefix", "CAP END"]);
    assert!(sm.conn.finished().is_none());
    // Offered but refused: go on without, and say so.
    let mut sm = Sm::new(opts);
    sm.conn.on_connected("irc.x", 6697, true, None, sm.now);
    sm.feed(":irc.x CAP * LS :sasl");
    sm.feed(":irc.x CAP me ACK :sasl");
    sm.take_lines();
    sm.feed("AUTHENTICATE +");
    assert_eq!(sm.take_lines(), vec!["AUTHENTICATE +"]);
    sm.feed(":irc.x 904 me :SASL authentication failed");
    assert_eq!(sm.take_lines(), vec!["CAP END"]);
    assert!(sm.conn.finished().is_none());
    assert!(
        sm.events
            .iter()
            .any(|e| matches!(e, Event::Message(m) if m.body.contains("continuing without")))
    );
}

#[test]
fn a_kill_is_the_reason_and_an_unused_connection_stays_down() {
    // Used for a raw command only: no room, no private message.
    let mut sm = Sm::new(ServerOptions::default());
    sm.register("");
    let (reply, _wait) = oneshot::channel();
    sm.req(Request::Send {
        to: Target::Server,
        msg: Box::new(text(Address::Service(ServiceId::new("irc.x")), "WHOIS x")),
        reply,
    });
    sm.feed(":op!o@h KILL me :Killed (op (go away))");
    sm.conn.on_disconnected("closed", sm.now);
    sm.pump();
    assert!(matches!(sm.conn.finished(), Some(Down::Lost(why)) if why.contains("killed by op")));
    let offline = sm.take_events().into_iter().find_map(|e| match e {
        Event::ServicePresence { presence, .. } => presence.status,
        _ => None,
    });
    assert!(offline.is_some_and(|s| s.contains("go away")));
}

#[test]
fn a_private_conversation_brings_the_connection_back_but_notices_do_not() {
    let mut sm = Sm::new(ServerOptions::default());
    sm.register("");
    sm.feed(":NickServ!s@services NOTICE me :This nickname is registered");
    sm.conn.on_disconnected("closed", sm.now);
    sm.pump();
    assert!(sm.conn.finished().is_some(), "a notice is no conversation");

    let mut sm = Sm::new(ServerOptions::default());
    sm.register("");
    sm.feed(":bob!b@h PRIVMSG me :hi");
    assert!(matches!(
        sm.conn.take_resume().as_slice(),
        [ResumeChange::Active { nick, .. }] if nick == "me"
    ));
    sm.conn.on_disconnected("closed", sm.now);
    sm.pump();
    assert!(
        sm.conn.finished().is_none(),
        "reconnects for the conversation"
    );
    assert!(sm.conn.wants_connection(sm.now));
    assert!(!sm.conn.wants_connection(sm.now + Duration::from_secs(61)));
}

#[test]
fn idle_close_forgets_the_conversation_to_restore() {
    let mut sm = Sm::new(ServerOptions::default());
    sm.register("");
    sm.feed(":bob!b@h PRIVMSG me :hi");
    sm.feed(":bob!b@h PRIVMSG me :again");
    // One note, not one per message.
    assert_eq!(sm.conn.take_resume().len(), 1);
    sm.advance(Duration::from_secs(61));
    assert_eq!(sm.conn.take_resume(), vec![ResumeChange::Clear]);
    assert!(sm.take_lines().iter().any(|l| l.starts_with("QUIT")));
}

#[test]
fn a_second_spelling_of_a_joined_channel_is_refused() {
    let mut sm = Sm::new(ServerOptions::default());
    sm.register("");
    let room = sm.join("#a\\b");
    sm.take_events();
    let other = RoomId::new("#a|b%irc.x");
    sm.req(Request::Join {
        channel: "#a|b".into(),
        room: other.clone(),
        nick: "me".into(),
        key: None,
        history: HistoryPolicy::default(),
        persistent: false,
    });
    let failed = join_failed(&sm.take_events());
    assert_eq!(failed.len(), 1);
    assert_eq!(failed[0].0, other);
    assert!(failed[0].1.contains("already in as #a\\b"), "{failed:?}");
    // The same room again is fine (a second client).
    sm.req(Request::Join {
        channel: "#a\\b".into(),
        room: room.clone(),
        nick: "me".into(),
        key: None,
        history: HistoryPolicy::default(),
        persistent: false,
    });
    assert!(join_failed(&sm.take_events()).is_empty());
}

#[test]
fn the_users_requests_are_urgent_housekeeping_is_not() {
    let (reply, _w) = oneshot::channel();
    assert!(
        Request::List { reply }.is_urgent()
            && !Request::Away(None).is_urgent()
            && !Request::Monitor {
                nick: "x".into(),
                add: true
            }
            .is_urgent()
    );
}

/// The occupant `nick` of the last `Event::Occupant` about it in `events`.
fn occupant<'e>(events: &'e [Event], nick: &str) -> Option<&'e ferry_bridge::Occupant> {
    events.iter().rev().find_map(|e| match e {
        Event::Occupant { occupant, .. } if occupant.nick == nick => Some(occupant),
        _ => None,
    })
}

#[test]
fn connections_in_one_channel_share_members_but_not_their_views() {
    use ferry_bridge::{Role, Show};
    let tables = MemberTables::default();
    let mut a = Sm::sharing("alice", &tables);
    a.join_with("#c", "alice bob carol");
    a.take_events();
    // Alice's connection reads bob's PART before bridget's joins.
    a.feed(":bob!u@h PART #c :bye");
    a.feed(":bridget!u@h JOIN #c");
    let mut b = Sm::sharing("bridget", &tables);
    b.join_with("#c", "alice bridget carol");
    let ev = b.take_events();
    let Some(Event::RoomJoined { occupants, .. }) = ev.first() else {
        panic!("{ev:?}")
    };
    let mut nicks: Vec<&str> = occupants.iter().map(|o| o.nick.as_str()).collect();
    nicks.sort();
    assert_eq!(
        nicks,
        ["alice", "bridget", "carol"],
        "bob parted before bridget came"
    );
    assert_eq!(a.members("#c"), ["alice", "bridget", "carol"]);
    assert_eq!(tables.live(), 1, "one table for the channel");

    // carol is opped: alice's connection has read it, bridget's not yet.
    a.feed(":alice!u@h MODE #c +o carol");
    assert_eq!(
        occupant(&a.take_events(), "carol").map(|o| o.role),
        Some(Role::Moderator)
    );
    b.feed(":carol!u@h AWAY :lunch");
    let ev = b.take_events();
    let seen = occupant(&ev, "carol").expect("carol's away");
    assert_eq!(
        seen.role,
        Role::Participant,
        "bridget has not seen the MODE"
    );
    assert_eq!(seen.presence.show, Show::Away);
    assert_eq!(a.members("#c"), ["alice", "bridget", "carol+o"]);
    assert_eq!(b.members("#c"), ["alice", "bridget", "carol"]);
    // And the away is bridget's alone until alice's connection reads it.
    a.feed(":dave!u@h JOIN #c");
    a.feed(":dave!u@h PART #c");
    a.feed(":carol!u@h NICK carla");
    assert_eq!(a.members("#c"), ["alice", "bridget", "carla+o"]);
    assert_eq!(b.members("#c"), ["alice", "bridget", "carol"]);
    assert_eq!(
        a.conn.channels["#c"]
            .members
            .get("carla")
            .and_then(|m| m.away),
        None
    );
    b.feed(":alice!u@h MODE #c +o carol");
    b.feed(":dave!u@h JOIN #c");
    b.feed(":dave!u@h PART #c");
    b.feed(":carol!u@h NICK carla");
    assert_eq!(b.members("#c"), ["alice", "bridget", "carla+o"]);
    assert_eq!(
        b.conn.channels["#c"]
            .members
            .get("carla")
            .and_then(|m| m.away)
            .as_deref(),
        Some("lunch")
    );

    // Alice leaves: her view goes, bridget's stays until her connection
    // reads the PART.
    a.req(Request::Leave {
        channel: "#c".into(),
        reason: None,
    });
    a.feed(":alice!u@h PART #c");
    assert!(a.members("#c").is_empty());
    assert_eq!(b.members("#c"), ["alice", "bridget", "carla+o"]);
    b.feed(":alice!u@h PART #c");
    assert_eq!(b.members("#c"), ["bridget", "carla+o"]);
    // Back in, alice sees what the server tells her now, not what she had.
    a.join_with("#c", "alice bridget @carla");
    assert_eq!(a.members("#c"), ["alice", "bridget", "carla+o"]);
    drop(a);
    assert_eq!(b.members("#c"), ["bridget", "carla+o"]);
    drop(b);
    assert_eq!(tables.live(), 0, "the table goes with its last connection");
}

#[test]
fn modes_of_each_connection_stay_its_own() {
    use ferry_bridge::{Affiliation, Role};
    let tables = MemberTables::default();
    let mut a = Sm::sharing("alice", &tables);
    let mut b = Sm::sharing("bridget", &tables);
    a.join_with("#c", "@alice bridget");
    b.join_with("#c", "@alice bridget");
    a.take_events();
    b.take_events();
    // Alice gives bridget voice and takes her own op; only alice's
    // connection has read it.
    a.feed(":alice!u@h MODE #c +v-o bridget alice");
    let ev = a.take_events();
    assert_eq!(
        occupant(&ev, "bridget").map(|o| o.role),
        Some(Role::Participant)
    );
    assert_eq!(
        occupant(&ev, "alice").map(|o| o.affiliation),
        Some(Affiliation::None)
    );
    assert_eq!(a.members("#c"), ["alice", "bridget+v"]);
    assert_eq!(b.members("#c"), ["alice+o", "bridget"]);
    // bridget's connection reconnects meanwhile: it forgets the channel's
    // members, alice's do not change.
    b.conn.on_disconnected("gone", b.now);
    b.pump();
    assert!(b.members("#c").is_empty());
    assert_eq!(a.members("#c"), ["alice", "bridget+v"]);
}

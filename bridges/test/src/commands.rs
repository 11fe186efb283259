//! The test network's own commands (XEP-0050 through the core):
//!
//! * `configure` on a room: booleans `persistent` (stay in the room when
//!   leaving it, and be back in after a restart) and `record_history`;
//!   one form, saved per user; the room's info is reported again.
//! * `wizard` on the gateway: step 1 a text field `name`, step 2 a
//!   list-single `colour` (red, green, blue), then done with a note naming
//!   both. Stateless between steps (the stage carries the name), so the
//!   core may go back by calling an earlier stage again.
//! * `shout` on the gateway, administrators only: a text `message` sent as
//!   a notice to every session of the network.
//! * `whois` on a contact: done at once, with a result form.
//! * `motd` on the service: done at once.

use ferry_bridge::{
    Address, BridgeError, CommandCall, CommandReply, CommandScope, CommandSpec, ErrorKind, Event,
    Field, FieldKind, Form, Outcome, RoomId,
};

use crate::echo::ECHO;
use crate::room::RoomSettings;
use crate::session::{TestSession, display_name};

/// The commands of the test network.
pub fn specs() -> Vec<CommandSpec> {
    vec![
        CommandSpec::new("configure", "Configure this room", CommandScope::Room),
        CommandSpec::new("wizard", "A two-step wizard", CommandScope::Gateway),
        CommandSpec::new("shout", "Send a notice to everyone", CommandScope::Gateway).admin(),
        CommandSpec::new("whois", "Who is this?", CommandScope::Contact),
        CommandSpec::new("motd", "Message of the day", CommandScope::Service),
    ]
}

/// The colours of the wizard.
pub const COLOURS: &[(&str, &str)] = &[("Red", "red"), ("Green", "green"), ("Blue", "blue")];

fn form_error(e: ferry_bridge::FormError) -> BridgeError {
    BridgeError::bad_request(e.to_string())
}

fn configure_form(room: &RoomId, s: RoomSettings) -> Form {
    Form::new(format!("Configuration of {room}"))
        .instructions("Your settings of this room on the test network.")
        .field(Field::boolean(
            "persistent",
            "Stay in the room when you leave it",
            s.persistent,
        ))
        .field(Field::boolean(
            "record_history",
            "Record the room's history",
            s.record_history,
        ))
}

fn wizard_step1() -> Form {
    Form::new("Wizard: step 1 of 2")
        .instructions("Who are you?")
        .field(Field::text("name", "Your name").required())
}

fn wizard_step2(name: &str) -> Form {
    let mut colour = Field::new("colour", FieldKind::ListSingle)
        .label("Favourite colour")
        .required();
    for (label, value) in COLOURS {
        colour = colour.option(*label, *value);
    }
    Form::new("Wizard: step 2 of 2")
        .instructions(format!("Hello {name}, pick a colour."))
        .field(colour)
}

fn shout_form() -> Form {
    Form::new("Shout")
        .instructions("Sends a notice to every session of the test network.")
        .field(Field::text("message", "Message").required())
}

/// Runs one step of a command.
pub(crate) fn run(s: &mut TestSession, call: CommandCall) -> Result<Outcome, BridgeError> {
    let reply = match call.node.as_str() {
        "configure" => configure(s, &call)?,
        "wizard" => wizard(&call)?,
        "shout" => shout(s, &call)?,
        "whois" => whois(s, &call)?,
        "motd" => CommandReply::done("Welcome to the test network"),
        other => {
            return Err(BridgeError::not_found(format!(
                "the test network has no command {other:?}"
            )));
        }
    };
    Ok(Outcome::Command(reply))
}

fn configure(s: &TestSession, call: &CommandCall) -> Result<CommandReply, BridgeError> {
    let Some(Address::Room(room)) = &call.target else {
        return Err(BridgeError::bad_request("configure works on a room"));
    };
    if !s.shared.lock().rooms.contains_key(room) {
        return Err(BridgeError::not_found(format!(
            "there is no room {room} on the test network"
        )));
    }
    let current = s.room_settings(room)?;
    let form = configure_form(room, current);
    match call.stage.as_deref() {
        None => Ok(CommandReply::Form {
            form,
            stage: "configure".into(),
            last: true,
        }),
        Some("configure") => {
            let values = form.validate(&call.values).map_err(form_error)?;
            let new = RoomSettings {
                persistent: values.bool("persistent").unwrap_or(current.persistent),
                record_history: values
                    .bool("record_history")
                    .unwrap_or(current.record_history),
            };
            s.save_room_settings(room, new)?;
            let st = s.shared.lock();
            if let Some(r) = st.rooms.get(room).filter(|r| r.member(s.id).is_some()) {
                s.emit(Event::RoomInfo(s.room_info(r)));
            }
            let yes = |b: bool| if b { "yes" } else { "no" };
            Ok(CommandReply::done(format!(
                "Settings of {room} saved: persistent {}, record history {}",
                yes(new.persistent),
                yes(new.record_history)
            )))
        }
        Some(other) => Err(unknown_stage(other)),
    }
}

fn unknown_stage(stage: &str) -> BridgeError {
    BridgeError::bad_request(format!("unknown step {stage:?} of this command"))
}

fn wizard(call: &CommandCall) -> Result<CommandReply, BridgeError> {
    match call.stage.as_deref() {
        None => Ok(CommandReply::Form {
            form: wizard_step1(),
            stage: "wizard/1".into(),
            last: false,
        }),
        Some("wizard/1") => {
            let values = wizard_step1().validate(&call.values).map_err(form_error)?;
            let name = values.get("name").unwrap_or_default().trim().to_owned();
            if name.is_empty() {
                return Err(BridgeError::bad_request("Your name: a value is required"));
            }
            Ok(CommandReply::Form {
                form: wizard_step2(&name),
                stage: format!("wizard/2/{name}"),
                last: true,
            })
        }
        Some(stage) => {
            let name = stage
                .strip_prefix("wizard/2/")
                .ok_or_else(|| unknown_stage(stage))?;
            let values = wizard_step2(name)
                .validate(&call.values)
                .map_err(form_error)?;
            let colour = values.get("colour").unwrap_or_default();
            Ok(CommandReply::done(format!(
                "Hello {name}, your favourite colour is {colour}."
            )))
        }
    }
}

fn shout(s: &TestSession, call: &CommandCall) -> Result<CommandReply, BridgeError> {
    if !call.admin {
        return Err(BridgeError::new(
            ErrorKind::NotAllowed,
            "only administrators may shout",
        ));
    }
    match call.stage.as_deref() {
        None => Ok(CommandReply::Form {
            form: shout_form(),
            stage: "shout".into(),
            last: true,
        }),
        Some("shout") => {
            let values = shout_form().validate(&call.values).map_err(form_error)?;
            let text = values.get("message").unwrap_or_default();
            let st = s.shared.lock();
            let event = Event::Notice(format!("{} shouts: {text}", s.account));
            for id in st.sessions.keys() {
                st.event_to_session(*id, event.clone());
            }
            Ok(CommandReply::done(format!(
                "Sent to {} sessions",
                st.sessions.len()
            )))
        }
        Some(other) => Err(unknown_stage(other)),
    }
}

fn whois(s: &TestSession, call: &CommandCall) -> Result<CommandReply, BridgeError> {
    let Some(Address::Contact(c)) = &call.target else {
        return Err(BridgeError::bad_request("whois works on a contact"));
    };
    let st = s.shared.lock();
    if !st.is_contact(c.as_str()) && c.as_str() != s.account {
        return Err(BridgeError::not_found(format!(
            "there is no user {c} on the test network"
        )));
    }
    let presence = st.presence_of(c.as_str());
    let online = presence.show != ferry_bridge::Show::Offline;
    let kind = if c.as_str() == ECHO { "bot" } else { "user" };
    let result = Form::new(format!("Who is {c}"))
        .field(Field::text("name", "Name").value(display_name(c.as_str())))
        .field(Field::text("kind", "Kind").value(kind))
        .field(Field::boolean("online", "Online", online));
    Ok(CommandReply::Done {
        note: Some(format!(
            "{c} is a {kind} of the test network, {}",
            if online { "online" } else { "offline" }
        )),
        result: Some(result),
    })
}

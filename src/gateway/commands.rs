//! The core's commands (registration, preferences, status and the
//! administrators' commands) and the step runner shared by XEP-0050 and
//! the chat fallback. Bridge commands run through the user's session as
//! [`Action::Command`]; core commands answer with the same
//! [`CommandReply`] model.

use std::sync::atomic::Ordering;

use ferry_bridge::{
    Action, Address, BridgeError, CloseReason, CommandCall, CommandReply, ErrorKind, Field,
    FieldKind, Form, FormValues, Outcome, UserId,
};

use super::router::Gateway;

/// A command of the core.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum CoreCommand {
    /// `jabber:iq:register`.
    Register,
    /// `unregister`.
    Unregister,
    /// `preferences`.
    Preferences,
    /// `status`.
    Status,
    /// `admin/users`.
    Users,
    /// `admin/delete-user`.
    DeleteUser,
    /// `admin/stats`.
    Stats,
    /// `admin/announce`.
    Announce,
    /// `admin/disconnect-user` (also `disconnect-user`).
    DisconnectUser,
    /// `new-group`: a group conversation with a set of people (networks
    /// with `Feature::Groups`).
    NewGroup,
}

impl CoreCommand {
    /// The command's node.
    pub fn node(self) -> &'static str {
        match self {
            CoreCommand::Register => "jabber:iq:register",
            CoreCommand::Unregister => "unregister",
            CoreCommand::Preferences => "preferences",
            CoreCommand::Status => "status",
            CoreCommand::Users => "admin/users",
            CoreCommand::DeleteUser => "admin/delete-user",
            CoreCommand::Stats => "admin/stats",
            CoreCommand::Announce => "admin/announce",
            CoreCommand::DisconnectUser => "admin/disconnect-user",
            CoreCommand::NewGroup => "new-group",
        }
    }

    /// Whether only administrators may run it.
    pub fn admin_only(self) -> bool {
        matches!(
            self,
            CoreCommand::Users
                | CoreCommand::DeleteUser
                | CoreCommand::Stats
                | CoreCommand::Announce
                | CoreCommand::DisconnectUser
        )
    }
}

/// What runs a command.
#[derive(Clone, Debug)]
pub enum Runner {
    /// A core command.
    Core(CoreCommand),
    /// A bridge command, run by the user's session (or the bridge itself
    /// when `bridge_wide`).
    Bridge {
        /// Its node.
        node: String,
        /// On what (None: the gateway).
        target: Option<Address>,
        /// Run by the bridge as a whole, not the session.
        bridge_wide: bool,
    },
}

/// The continuation of a step.
pub type StepDone = Box<dyn FnOnce(&mut Gateway, Result<CommandReply, BridgeError>) + Send>;

fn form(form: Form, stage: &str) -> CommandReply {
    CommandReply::Form {
        form,
        stage: stage.to_owned(),
        last: true,
    }
}

fn result_table(title: &str, rows: Vec<(&str, &str, String)>) -> Form {
    let mut f = Form::new(title);
    for (var, label, value) in rows {
        f = f.field(
            Field::new(var, FieldKind::TextSingle)
                .label(label)
                .value(value),
        );
    }
    f
}

impl Gateway {
    /// Runs one step of a command. `stage` is None on the first step;
    /// `values` have been validated against the form of the previous step.
    pub fn run_step(
        &mut self,
        user: &UserId,
        admin: bool,
        runner: &Runner,
        stage: Option<String>,
        values: FormValues,
        k: StepDone,
    ) {
        match runner {
            Runner::Bridge {
                node,
                target,
                bridge_wide,
            } => {
                let call = CommandCall {
                    node: node.clone(),
                    target: target.clone(),
                    stage,
                    values,
                    admin,
                };
                if *bridge_wide {
                    let admin_only = self
                        .network
                        .commands()
                        .iter()
                        .any(|c| c.node == *node && c.admin_only);
                    if admin_only && !admin {
                        return k(
                            self,
                            Err(BridgeError::new(
                                ErrorKind::NotAllowed,
                                "This command is for administrators only.",
                            )),
                        );
                    }
                    let (network, ctx, user) =
                        (self.network.clone(), self.bridge.clone(), user.clone());
                    return self
                        .spawn_then(async move { network.command(&ctx, &user, call).await }, k);
                }
                self.act(user, Action::Command(call), move |gw, r| {
                    let r = r.and_then(|o| match o {
                        Outcome::Command(c) => Ok(c),
                        _ => Err(BridgeError::internal(
                            "The bridge answered the command with something else than a command step.",
                        )),
                    });
                    k(gw, r)
                });
            }
            Runner::Core(c) => {
                if c.admin_only() && !admin {
                    return k(
                        self,
                        Err(BridgeError::new(
                            ErrorKind::NotAllowed,
                            "This command is for administrators only.",
                        )),
                    );
                }
                self.core_step(user, *c, stage.as_deref(), values, k)
            }
        }
    }

    fn core_step(
        &mut self,
        user: &UserId,
        c: CoreCommand,
        stage: Option<&str>,
        values: FormValues,
        k: StepDone,
    ) {
        match (c, stage) {
            (CoreCommand::Register, None) => {
                let mut f = self.network.registration();
                if f.title.is_empty() {
                    f.title = format!("Register with {}", self.info.name);
                }
                if let Some(current) = self.registration_values(user) {
                    for field in &mut f.fields {
                        if field.kind != FieldKind::TextPrivate
                            && let Some(v) = current.all(&field.var)
                        {
                            field.values = v.to_vec();
                        }
                    }
                }
                k(self, Ok(form(f, "register")))
            }
            (CoreCommand::Register, Some(_)) => {
                let name = self.info.name.clone();
                self.register_user(user, values, move |gw, r| match r {
                    Ok(a) => k(
                        gw,
                        Ok(CommandReply::done(format!(
                            "Registered with {name} as {}.",
                            a.name
                        ))),
                    ),
                    Err(e) => k(gw, Err(e.bridge_error())),
                })
            }
            (CoreCommand::Unregister, None) => {
                if !self.is_registered(user) {
                    return k(self, Err(BridgeError::not_found("You are not registered.")));
                }
                let f = Form::new(format!("Unregister from {}", self.info.name))
                    .instructions(
                        "This deletes your account data, your archives and the contacts the gateway added to your roster.",
                    )
                    .field(Field::boolean("confirm", "Yes, unregister me", false).required());
                k(self, Ok(form(f, "confirm")))
            }
            (CoreCommand::Unregister, Some(_)) => {
                if values.bool("confirm") != Some(true) {
                    return k(self, Ok(CommandReply::done("Nothing was changed.")));
                }
                self.unregister_user(user, false, move |gw, r| match r {
                    Ok(()) => k(gw, Ok(CommandReply::done("You are unregistered."))),
                    Err(e) => k(gw, Err(BridgeError::remote(e))),
                })
            }
            (CoreCommand::Preferences, None) => {
                let current = self.preferences_of(user);
                let mut f = Form::new(format!("{} preferences", self.info.name));
                for mut field in self.preference_fields() {
                    if let Some(v) = current.all(&field.var) {
                        field.values = v.to_vec();
                    }
                    f = f.field(field);
                }
                k(self, Ok(form(f, "save")))
            }
            (CoreCommand::Preferences, Some(_)) => {
                if let Err(e) = self.store.set_preferences(user, &values) {
                    return k(self, Err(BridgeError::internal(e.to_string())));
                }
                let running = self.users.get(user).is_some_and(|u| u.session.is_some());
                if running {
                    let all = self.preferences_of(user);
                    self.act_quiet(user, Action::PreferencesChanged(all));
                }
                // Presence sync may have been switched on or off.
                self.user_presence_changed(user);
                k(self, Ok(CommandReply::done("Preferences saved.")))
            }
            (CoreCommand::Status, _) => {
                let reply = self.status_reply(user);
                k(self, Ok(reply))
            }
            (CoreCommand::Users, _) => {
                let mut users: Vec<&UserId> = self.registered.iter().collect();
                users.sort();
                let mut f = Form::new("Registered users").field(
                    Field::new("count", FieldKind::TextSingle)
                        .label("Number of users")
                        .value(users.len().to_string()),
                );
                f = f.field(
                    Field::new("users", FieldKind::JidMulti)
                        .label("Users")
                        .values(users.iter().map(|u| u.to_string())),
                );
                k(
                    self,
                    Ok(CommandReply::Done {
                        note: Some(format!("{} registered users.", users.len())),
                        result: Some(f),
                    }),
                )
            }
            (CoreCommand::DeleteUser, None) => {
                let f = Form::new("Delete a user")
                    .instructions("Unregisters the user and deletes everything stored for them.")
                    .field(
                        Field::new("jid", FieldKind::JidSingle)
                            .label("User (bare JID)")
                            .required(),
                    );
                k(self, Ok(form(f, "delete")))
            }
            (CoreCommand::DeleteUser, Some(_)) => {
                let target = UserId::new(values.get("jid").unwrap_or_default().trim());
                if !self.is_registered(&target) {
                    return k(
                        self,
                        Err(BridgeError::not_found(format!(
                            "{target} is not registered."
                        ))),
                    );
                }
                let t = target.clone();
                self.unregister_user(&t, true, move |gw, _| {
                    k(gw, Ok(CommandReply::done(format!("{target} was deleted."))))
                })
            }
            (CoreCommand::Stats, _) => {
                let m = &self.metrics;
                let sessions = self.users.values().filter(|u| u.session.is_some()).count();
                let online = self
                    .users
                    .values()
                    .filter(|u| !u.presence.resources.is_empty())
                    .count();
                let rows = vec![
                    (
                        "users",
                        "Registered users",
                        self.registered.len().to_string(),
                    ),
                    ("online", "Users online", online.to_string()),
                    ("sessions", "Running sessions", sessions.to_string()),
                    (
                        "rooms",
                        "Joined rooms",
                        self.rooms.joined_count().to_string(),
                    ),
                    (
                        "stanzas_in",
                        "Stanzas received",
                        m.stanzas_in.load(Ordering::Relaxed).to_string(),
                    ),
                    (
                        "stanzas_out",
                        "Stanzas sent",
                        m.stanzas_out.load(Ordering::Relaxed).to_string(),
                    ),
                    (
                        "errors",
                        "Errors",
                        m.errors.load(Ordering::Relaxed).to_string(),
                    ),
                    (
                        "session_restarts",
                        "Session restarts",
                        m.session_restarts.load(Ordering::Relaxed).to_string(),
                    ),
                    (
                        "outbox",
                        "Outbox depth",
                        m.outbox_depth.load(Ordering::Relaxed).to_string(),
                    ),
                    (
                        "commands",
                        "Open command sessions",
                        self.adhoc.len().to_string(),
                    ),
                    (
                        "uptime",
                        "Uptime (seconds)",
                        self.started.elapsed().as_secs().to_string(),
                    ),
                ];
                let summary = format!(
                    "{} users, {} sessions, {} stanzas in, {} out, outbox {}",
                    self.registered.len(),
                    sessions,
                    m.stanzas_in.load(Ordering::Relaxed),
                    m.stanzas_out.load(Ordering::Relaxed),
                    m.outbox_depth.load(Ordering::Relaxed)
                );
                k(
                    self,
                    Ok(CommandReply::Done {
                        note: Some(summary),
                        result: Some(result_table("Statistics", rows)),
                    }),
                )
            }
            (CoreCommand::NewGroup, None) => {
                let f = Form::new("New group conversation")
                    .instructions(format!(
                        "The people of {} to write to together: their addresses on {} (one a line), or as you would type them.",
                        self.info.name,
                        self.jids.domain()
                    ))
                    .field(
                        Field::new("members", FieldKind::TextMulti)
                            .label("Members")
                            .required(),
                    )
                    .field(Field::new("subject", FieldKind::TextSingle).label("Subject"));
                k(self, Ok(form(f, "open")))
            }
            (CoreCommand::NewGroup, Some(_)) => {
                let lines: Vec<String> = values
                    .all("members")
                    .unwrap_or_default()
                    .iter()
                    .flat_map(|v| v.split(['\n', ',']))
                    .map(str::trim)
                    .filter(|v| !v.is_empty())
                    .map(str::to_owned)
                    .collect();
                let members = match self.group_members(user, &lines) {
                    Ok(m) => m,
                    Err(text) => return k(self, Err(BridgeError::bad_request(text))),
                };
                let subject = values
                    .get("subject")
                    .map(str::trim)
                    .filter(|s| !s.is_empty())
                    .map(str::to_owned);
                self.open_group(user, members, subject, None, move |gw, r| {
                    let r = r.map(|room| {
                        let jid = gw
                            .jids
                            .room(&room)
                            .map_or_else(|| room.to_string(), |j| j.to_string());
                        CommandReply::done(format!(
                            "The group conversation is {jid}: join it (an invitation is on its way)."
                        ))
                    });
                    k(gw, r)
                });
            }
            (CoreCommand::Announce, None) => {
                let f = Form::new("Announce to all users").field(
                    Field::new("message", FieldKind::TextMulti)
                        .label("Message")
                        .required(),
                );
                k(self, Ok(form(f, "send")))
            }
            (CoreCommand::Announce, Some(_)) => {
                let text = values
                    .all("message")
                    .map(|v| v.join("\n"))
                    .unwrap_or_default();
                let users: Vec<UserId> = self.registered.iter().cloned().collect();
                for u in &users {
                    self.notify(u, &text);
                }
                k(
                    self,
                    Ok(CommandReply::done(format!(
                        "Sent to {} users.",
                        users.len()
                    ))),
                )
            }
            (CoreCommand::DisconnectUser, None) => {
                let mut connected: Vec<&UserId> = self
                    .users
                    .iter()
                    .filter(|(_, u)| u.session.is_some())
                    .map(|(id, _)| id)
                    .collect();
                connected.sort();
                let mut jids = Field::new("jids", FieldKind::ListMulti)
                    .label("Users to disconnect")
                    .required();
                jids.open = true;
                for u in connected {
                    jids = jids.option(u.to_string(), u.to_string());
                }
                let f = Form::new("Disconnect users")
                    .field(jids)
                    .field(Field::text("quit-message", "Message"));
                k(self, Ok(form(f, "disconnect")))
            }
            (CoreCommand::DisconnectUser, Some(_)) => {
                let message = values.get("quit-message").map(str::to_owned);
                let targets: Vec<UserId> = values
                    .all("jids")
                    .unwrap_or_default()
                    .iter()
                    .flat_map(|v| v.split([',', '\n', ' ']))
                    .filter(|s| !s.is_empty())
                    .map(UserId::new)
                    .collect();
                let mut n = 0;
                for t in &targets {
                    if self.users.get(t).is_some_and(|u| u.session.is_some()) {
                        n += 1;
                        let text = match &message {
                            Some(m) => format!("An administrator disconnected you: {m}"),
                            None => "An administrator disconnected you.".to_owned(),
                        };
                        self.notify(t, &text);
                        let t2 = t.clone();
                        self.close_session(
                            t,
                            CloseReason::Disconnected(message.clone()),
                            move |gw| {
                                let u = gw.user_mut(&t2);
                                u.connection = Some(ferry_bridge::ConnectionState::Disconnected(
                                    "Disconnected by an administrator".into(),
                                ));
                                gw.send_gateway_presence(&t2);
                            },
                        );
                    }
                }
                k(
                    self,
                    Ok(CommandReply::done(format!("Disconnected {n} users."))),
                )
            }
        }
    }

    fn status_reply(&self, user: &UserId) -> CommandReply {
        let registered = self.is_registered(user);
        let account = if registered {
            self.store
                .user(user)
                .ok()
                .flatten()
                .map(|r| r.account_name)
                .unwrap_or_default()
        } else {
            String::new()
        };
        let u = self.users.get(user);
        let session = match u.and_then(|u| u.session.as_ref()) {
            Some(_) => "running",
            None => "not running",
        };
        let connection = u
            .and_then(|u| u.connection.as_ref())
            .map(super::presence::connection_text)
            .unwrap_or_else(|| "not connected".into());
        let rooms = self.rooms.of_user(user).count();
        let rows = vec![
            (
                "registered",
                "Registered",
                if registered { "yes" } else { "no" }.to_owned(),
            ),
            ("account", "Account", account.clone()),
            ("session", "Session", session.to_owned()),
            ("connection", "Connection", connection.clone()),
            ("rooms", "Rooms", rooms.to_string()),
        ];
        let note = if registered {
            format!("Registered as {account}; session {session}; {connection}.")
        } else {
            format!("Not registered with {}.", self.info.name)
        };
        CommandReply::Done {
            note: Some(note),
            result: Some(result_table("Status", rows)),
        }
    }
}

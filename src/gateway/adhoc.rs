//! The XEP-0050 ad-hoc command engine: which commands each JID offers to
//! whom, multi-step sessions with `prev`/`next`/`complete`/`cancel`, and
//! the wire format. The commands themselves (core ones in
//! [`super::commands`], the bridge's through the user's session) answer
//! with the bridge API's [`CommandReply`], the same model the chat
//! fallback drives.

use std::collections::HashMap;
use std::time::{Duration, Instant};

use ferry_bridge::{
    Address, BridgeError, CommandReply, CommandScope, ErrorKind, Form, FormValues, UserId,
};
use xmpp_parsers::jid::Jid;
use xmpp_parsers::minidom::Element;
use xmpp_parsers::stanza_error::{DefinedCondition, ErrorType};

use super::commands::{CoreCommand, Runner};
use super::router::Gateway;
use crate::xmpp::forms::{self, Secrets, Submitted};
use crate::xmpp::jids::Target;
use crate::xmpp::xml::{self, B, ns};

/// A command offered somewhere.
#[derive(Clone, Debug)]
pub struct CommandDef {
    /// Node.
    pub node: String,
    /// Name shown.
    pub name: String,
    /// What runs it.
    pub runner: Runner,
    /// Only for administrators.
    pub admin_only: bool,
}

/// One form shown in a command session.
#[derive(Clone, Debug)]
pub struct Step {
    /// The form.
    pub form: Form,
    /// The runner's bookmark for the next submission.
    pub stage: String,
    /// Whether submitting it completes the command.
    pub last: bool,
}

/// A command session (XEP-0050 `sessionid`).
pub struct CmdSession {
    /// Who runs it (full JID).
    pub owner: Jid,
    /// The JID the command runs on.
    pub target: Jid,
    /// The command.
    pub node: String,
    /// What runs it.
    pub runner: Runner,
    /// Forms shown so far (the last is current).
    pub steps: Vec<Step>,
    /// Last use.
    pub touched: Instant,
    /// A step is being computed.
    pub busy: bool,
}

/// All command sessions of a gateway.
#[derive(Default)]
pub struct Sessions {
    map: HashMap<String, CmdSession>,
    expired: HashMap<String, Instant>,
    counter: u64,
}

impl Sessions {
    /// Drops sessions idle for longer than `idle`.
    pub fn expire(&mut self, idle: Duration) {
        let now = Instant::now();
        let gone: Vec<String> = self
            .map
            .iter()
            .filter(|(_, s)| now.duration_since(s.touched) > idle)
            .map(|(k, _)| k.clone())
            .collect();
        for k in gone {
            self.map.remove(&k);
            self.expired.insert(k, now);
        }
        self.expired
            .retain(|_, t| now.duration_since(*t) < Duration::from_secs(24 * 3600));
    }

    /// Drops every session of a user.
    pub fn forget_user(&mut self, user: &UserId) {
        self.map
            .retain(|_, s| s.owner.to_bare().as_str() != user.as_str());
    }

    /// Whether a user has a command session open.
    pub fn has_user(&self, user: &UserId) -> bool {
        self.map
            .values()
            .any(|s| s.owner.to_bare().as_str() == user.as_str())
    }

    fn new_id(&mut self) -> String {
        self.counter += 1;
        format!("{}-{}", xml::new_id(), self.counter)
    }

    /// Number of open sessions.
    pub fn len(&self) -> usize {
        self.map.len()
    }
}

/// Builds a `<command/>` answer.
fn command_el(node: &str, sessionid: &str, status: &str) -> B {
    B::new("command", ns::COMMANDS)
        .a("node", node)
        .a("sessionid", sessionid)
        .a("status", status)
}

fn note(kind: &str, text: &str) -> Element {
    B::new("note", ns::COMMANDS).a("type", kind).t(text).build()
}

fn cmd_error(
    cond: DefinedCondition,
    type_: ErrorType,
    app: Option<&str>,
    text: &str,
) -> xmpp_parsers::stanza_error::StanzaError {
    let e = xml::error(type_, cond, text);
    match app {
        Some(a) => xml::with_app_condition(e, a, ns::COMMANDS),
        None => e,
    }
}

impl Gateway {
    /// Every command offered at `to` (including admin-only ones).
    pub fn commands_at(&self, user: &UserId, to: &Jid) -> Vec<CommandDef> {
        let registered = self.is_registered(user);
        let optional = self.info.registration == ferry_bridge::Registration::Optional;
        let (scope, address) = match self.target_of(user, to) {
            Ok(Target::Gateway) => (CommandScope::Gateway, None),
            Ok(Target::Address(a)) => {
                let scope = match &a {
                    Address::Contact(_) | Address::Occupant { .. } => CommandScope::Contact,
                    Address::Room(_) => CommandScope::Room,
                    Address::Service(_) => CommandScope::Service,
                };
                (scope, Some(a))
            }
            Err(_) => return Vec::new(),
        };
        let mut out = Vec::new();
        if scope == CommandScope::Gateway {
            let core = |c: CoreCommand, name: &str| CommandDef {
                node: c.node().to_owned(),
                name: name.to_owned(),
                runner: Runner::Core(c),
                admin_only: c.admin_only(),
            };
            out.push(core(
                CoreCommand::Register,
                if registered {
                    "Change registration"
                } else {
                    "Register"
                },
            ));
            if registered {
                out.push(core(CoreCommand::Unregister, "Unregister"));
            }
            if registered || optional {
                out.push(core(CoreCommand::Preferences, "Preferences"));
            }
            out.push(core(CoreCommand::Status, "Status"));
            if (registered || optional) && self.info.capabilities.has(ferry_bridge::Feature::Groups)
            {
                out.push(core(CoreCommand::NewGroup, "New group conversation"));
            }
            out.push(core(CoreCommand::Users, "List users"));
            out.push(core(CoreCommand::DeleteUser, "Delete a user"));
            out.push(core(CoreCommand::Stats, "Statistics"));
            out.push(core(CoreCommand::Announce, "Announce to all users"));
            out.push(core(CoreCommand::DisconnectUser, "Disconnect users"));
            out.push(CommandDef {
                node: "disconnect-user".into(),
                name: "Disconnect users".into(),
                runner: Runner::Core(CoreCommand::DisconnectUser),
                admin_only: true,
            });
        }
        let may_use_bridge = registered || optional;
        {
            for spec in self.network.commands() {
                if spec.scope != scope
                    || out.iter().any(|c| c.node == spec.node)
                    || !(may_use_bridge || spec.bridge_wide)
                {
                    continue;
                }
                out.push(CommandDef {
                    node: spec.node.clone(),
                    name: spec.name.clone(),
                    runner: Runner::Bridge {
                        node: spec.node,
                        target: address.clone(),
                        bridge_wide: spec.bridge_wide,
                    },
                    admin_only: spec.admin_only,
                });
            }
        }
        out
    }

    /// The (node, name) of the commands `user` may run at `to`.
    pub fn command_list(&self, user: &UserId, to: &Jid) -> Vec<(String, String)> {
        if !self.allowed(user) {
            return Vec::new();
        }
        let admin = self.is_admin(user);
        self.commands_at(user, to)
            .into_iter()
            .filter(|c| admin || !c.admin_only)
            .map(|c| (c.node, c.name))
            .collect()
    }

    /// Handles an XEP-0050 `<command/>` request.
    pub fn on_command(&mut self, from: &Jid, to: &Jid, id: &str, cmd: &Element) {
        let user = UserId::new(from.to_bare().to_string());
        let node = cmd.attr("node").unwrap_or_default().to_owned();
        let action = cmd.attr("action").unwrap_or("execute").to_owned();
        let sessionid = cmd.attr("sessionid").map(str::to_owned);
        let reply_error = |gw: &Gateway, e| gw.send_error(xml::iq_error(to, from, id, e));
        if !matches!(
            action.as_str(),
            "execute" | "next" | "prev" | "complete" | "cancel"
        ) {
            return reply_error(
                self,
                cmd_error(
                    DefinedCondition::BadRequest,
                    ErrorType::Modify,
                    Some("malformed-action"),
                    &format!("Unknown action {action:?}."),
                ),
            );
        }
        let Some(sid) = sessionid else {
            if action != "execute" {
                return reply_error(
                    self,
                    cmd_error(
                        DefinedCondition::BadRequest,
                        ErrorType::Modify,
                        Some("bad-sessionid"),
                        &format!(
                            "Action {action:?} needs a session id; start the command with 'execute'."
                        ),
                    ),
                );
            }
            return self.start_command(from, to, id, &user, &node);
        };
        // An existing session.
        let known = self.adhoc.map.get(&sid);
        let Some(s) = known else {
            let (cond, app, text) = if self.adhoc.expired.contains_key(&sid) {
                (
                    DefinedCondition::NotAllowed,
                    "session-expired",
                    "This command session expired; start the command again.",
                )
            } else {
                (
                    DefinedCondition::BadRequest,
                    "bad-sessionid",
                    "There is no command session with this id.",
                )
            };
            let t = if cond == DefinedCondition::NotAllowed {
                ErrorType::Cancel
            } else {
                ErrorType::Modify
            };
            return reply_error(self, cmd_error(cond, t, Some(app), text));
        };
        if s.owner != *from || s.node != node || s.target != *to {
            return reply_error(
                self,
                cmd_error(
                    DefinedCondition::BadRequest,
                    ErrorType::Modify,
                    Some("bad-sessionid"),
                    "This command session belongs to another command or requester.",
                ),
            );
        }
        if s.busy {
            return reply_error(
                self,
                cmd_error(
                    DefinedCondition::UnexpectedRequest,
                    ErrorType::Wait,
                    None,
                    "The previous step of this command is still running.",
                ),
            );
        }
        match action.as_str() {
            "cancel" => {
                self.adhoc.map.remove(&sid);
                let el = command_el(&node, &sid, "canceled").build();
                self.send(xml::iq_result(to, from, id, Some(el)));
            }
            "prev" => {
                let Some(s) = self.adhoc.map.get_mut(&sid) else {
                    return;
                };
                if s.steps.len() < 2 {
                    return reply_error(
                        self,
                        cmd_error(
                            DefinedCondition::BadRequest,
                            ErrorType::Modify,
                            Some("bad-action"),
                            "There is no previous step.",
                        ),
                    );
                }
                s.steps.pop();
                s.touched = Instant::now();
                let el = executing(&node, &sid, &s.steps, None);
                self.send(xml::iq_result(to, from, id, Some(el)));
            }
            _ => {
                let Some(s) = self.adhoc.map.get_mut(&sid) else {
                    return;
                };
                let Some(step) = s.steps.last().cloned() else {
                    return;
                };
                let allowed = match action.as_str() {
                    "next" => !step.last,
                    "complete" => step.last,
                    _ => true, // execute: the default action
                };
                if !allowed {
                    return reply_error(
                        self,
                        cmd_error(
                            DefinedCondition::BadRequest,
                            ErrorType::Modify,
                            Some("bad-action"),
                            &format!("Action {action:?} is not offered at this step."),
                        ),
                    );
                }
                let submitted = match forms::find_form(cmd) {
                    Some(x) => forms::read_submitted(x, &step.form),
                    None => Ok(Submitted::Values(FormValues::new())),
                };
                let values = match submitted {
                    Ok(Submitted::Values(v)) => v,
                    Ok(Submitted::Cancel) => {
                        self.adhoc.map.remove(&sid);
                        let el = command_el(&node, &sid, "canceled").build();
                        return self.send(xml::iq_result(to, from, id, Some(el)));
                    }
                    Err(e) => {
                        return reply_error(
                            self,
                            cmd_error(
                                DefinedCondition::BadRequest,
                                ErrorType::Modify,
                                Some("bad-payload"),
                                &e.to_string(),
                            ),
                        );
                    }
                };
                let validated = step.form.validate(&values).map(|mut v| {
                    // A field the user submitted empty is empty, not its
                    // shown (current) value.
                    for (var, given) in values.iter() {
                        if given.iter().all(String::is_empty) {
                            v.set(var, Vec::new());
                        }
                    }
                    v
                });
                let values = match validated {
                    Ok(v) => v,
                    Err(e) => {
                        // Show the same form again, saying what is wrong.
                        let el = executing(&node, &sid, &s.steps, Some(("error", &e.to_string())));
                        s.touched = Instant::now();
                        return self.send(xml::iq_result(to, from, id, Some(el)));
                    }
                };
                s.busy = true;
                s.touched = Instant::now();
                let runner = s.runner.clone();
                let admin = self.is_admin(&user);
                let (from, to, id) = (from.clone(), to.clone(), id.to_owned());
                let sid2 = sid.clone();
                self.run_step(
                    &user,
                    admin,
                    &runner,
                    Some(step.stage),
                    values,
                    Box::new(move |gw, r| gw.command_answer(&from, &to, &id, &node, &sid2, r)),
                );
            }
        }
    }

    fn start_command(&mut self, from: &Jid, to: &Jid, id: &str, user: &UserId, node: &str) {
        let err = |cond, t, text: &str| xml::error(t, cond, text);
        if !self.allowed(user) {
            let e = err(
                DefinedCondition::NotAllowed,
                ErrorType::Cancel,
                &format!(
                    "{user} is not allowed to use this gateway (the operator's [access] users list does not include it)."
                ),
            );
            return self.send_error(xml::iq_error(to, from, id, e));
        }
        let all = self.commands_at(user, to);
        let Some(def) = all.into_iter().find(|c| c.node == node) else {
            let e = err(
                DefinedCondition::ItemNotFound,
                ErrorType::Cancel,
                &format!(
                    "There is no command {node:?} here; list the commands to see what there is."
                ),
            );
            return self.send_error(xml::iq_error(to, from, id, e));
        };
        let admin = self.is_admin(user);
        if def.admin_only && !admin {
            let e = err(
                DefinedCondition::Forbidden,
                ErrorType::Auth,
                &format!("The command {node:?} is for the gateway's administrators only."),
            );
            return self.send_error(xml::iq_error(to, from, id, e));
        }
        let sid = self.adhoc.new_id();
        self.adhoc.map.insert(
            sid.clone(),
            CmdSession {
                owner: from.clone(),
                target: to.clone(),
                node: node.to_owned(),
                runner: def.runner.clone(),
                steps: Vec::new(),
                touched: Instant::now(),
                busy: true,
            },
        );
        let (from, to, id, node) = (from.clone(), to.clone(), id.to_owned(), node.to_owned());
        let sid2 = sid.clone();
        self.run_step(
            user,
            admin,
            &def.runner,
            None,
            FormValues::new(),
            Box::new(move |gw, r| gw.command_answer(&from, &to, &id, &node, &sid2, r)),
        );
    }

    /// Sends the answer of a command step.
    fn command_answer(
        &mut self,
        from: &Jid,
        to: &Jid,
        id: &str,
        node: &str,
        sid: &str,
        r: Result<CommandReply, BridgeError>,
    ) {
        match r {
            Ok(CommandReply::Form { form, stage, last }) => {
                let Some(s) = self.adhoc.map.get_mut(sid) else {
                    return;
                };
                s.busy = false;
                s.touched = Instant::now();
                s.steps.push(Step { form, stage, last });
                let el = executing(node, sid, &s.steps, None);
                self.send(xml::iq_result(to, from, id, Some(el)));
            }
            Ok(CommandReply::Done { note: n, result }) => {
                self.adhoc.map.remove(sid);
                let el = command_el(node, sid, "completed")
                    .oc(n.map(|t| note("info", &t)))
                    .oc(result.map(|f| forms::to_result_form(&f)))
                    .build();
                self.send(xml::iq_result(to, from, id, Some(el)));
            }
            Err(e) => {
                self.adhoc.map.remove(sid);
                if e.kind == ErrorKind::Internal {
                    ferry_bridge_error_metric(self);
                }
                let el = command_el(node, sid, "completed")
                    .c(note("error", &e.message))
                    .build();
                self.send(xml::iq_result(to, from, id, Some(el)));
            }
        }
    }
}

fn ferry_bridge_error_metric(gw: &Gateway) {
    crate::metrics::BridgeMetrics::inc(&gw.metrics.errors);
}

/// The `executing` answer showing the current step's form.
fn executing(node: &str, sid: &str, steps: &[Step], n: Option<(&str, &str)>) -> Element {
    let Some(step) = steps.last() else {
        return command_el(node, sid, "executing").build();
    };
    let mut actions =
        B::new("actions", ns::COMMANDS).a("execute", if step.last { "complete" } else { "next" });
    if steps.len() > 1 {
        actions = actions.c(Element::bare("prev", ns::COMMANDS));
    }
    actions = actions.c(Element::bare(
        if step.last { "complete" } else { "next" },
        ns::COMMANDS,
    ));
    command_el(node, sid, "executing")
        .c(actions)
        .oc(n.map(|(k, t)| note(k, t)))
        .c(forms::to_data_form(&step.form, None, Secrets::Show))
        .build()
}

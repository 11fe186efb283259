//! The chat fallback for clients without ad-hoc command support: messages
//! to the gateway JID run the same commands, one question per field.
//!
//! `help` lists the commands the sender may run, a command's node (or
//! `register`) starts it, `cancel` aborts the dialog in progress. Answers
//! are never repeated back, so nothing typed into a private field shows
//! up again in the conversation.

use std::time::Instant;

use ferry_bridge::{BridgeError, CommandReply, Field, FieldKind, FormError, FormValues, UserId};
use xmpp_parsers::jid::Jid;

use super::adhoc::Step;
use super::commands::Runner;
use super::router::Gateway;

/// A command being run by chat.
pub struct Dialog {
    /// The command's node.
    pub node: String,
    /// What runs it.
    pub runner: Runner,
    /// The form being filled in.
    pub step: Step,
    /// Index (in the form's fields) of the field asked for.
    pub asking: Option<usize>,
    /// Values given so far.
    pub values: FormValues,
    /// Waiting for the command's next step.
    pub waiting: bool,
    /// Last activity.
    pub touched: Instant,
}

fn askable(f: &Field) -> bool {
    !matches!(f.kind, FieldKind::Fixed | FieldKind::Hidden)
}

/// The question for one field.
pub fn question(f: &Field) -> String {
    let mut q = f.display_label().to_owned();
    if f.required {
        q.push_str(" (required)");
    }
    q.push('?');
    if let Some(d) = &f.desc {
        q.push_str(&format!(" {d}"));
    }
    match f.kind {
        FieldKind::Boolean => q.push_str("\nAnswer yes or no."),
        FieldKind::ListSingle | FieldKind::ListMulti => {
            for (i, o) in f.options.iter().enumerate() {
                q.push_str(&format!("\n  {}. {}", i + 1, o.label));
            }
            if f.kind == FieldKind::ListMulti {
                q.push_str("\nSeveral choices: separate them with commas.");
            } else {
                q.push_str("\nAnswer with the number or the value.");
            }
        }
        FieldKind::TextMulti | FieldKind::JidMulti => q.push_str("\nSeveral values: one per line."),
        FieldKind::TextPrivate => q.push_str("\n(Your answer is not repeated.)"),
        _ => {}
    }
    if f.kind != FieldKind::TextPrivate && !f.values.is_empty() {
        let current = if f.kind == FieldKind::Boolean {
            match ferry_bridge::form::parse_bool(&f.values[0]) {
                Some(true) => "yes".to_owned(),
                Some(false) => "no".to_owned(),
                None => f.values.join(", "),
            }
        } else {
            f.values.join(", ")
        };
        q.push_str(&format!("\nSend . to keep: {current}"));
    } else if !f.required {
        q.push_str("\nSend . to leave it empty.");
    }
    q
}

/// Reads an answer for a field.
pub fn answer(f: &Field, text: &str) -> Result<Option<Vec<String>>, String> {
    let t = text.trim();
    if t == "." {
        if f.required && f.values.is_empty() {
            return Err(format!("{} is required.", f.display_label()));
        }
        return Ok(None);
    }
    let one = |v: &str| -> Result<String, String> {
        if f.options.is_empty() {
            return Ok(v.to_owned());
        }
        if let Ok(n) = v.parse::<usize>()
            && let Some(o) = n.checked_sub(1).and_then(|i| f.options.get(i))
        {
            return Ok(o.value.clone());
        }
        if let Some(o) = f
            .options
            .iter()
            .find(|o| o.value == v || o.label.eq_ignore_ascii_case(v))
        {
            return Ok(o.value.clone());
        }
        if f.open {
            Ok(v.to_owned())
        } else {
            Err(format!("{v:?} is not one of the choices."))
        }
    };
    let values = match f.kind {
        FieldKind::Boolean => match t.to_ascii_lowercase().as_str() {
            "yes" | "y" | "true" | "1" | "on" => vec!["true".to_owned()],
            "no" | "n" | "false" | "0" | "off" => vec!["false".to_owned()],
            _ => return Err("Please answer yes or no.".into()),
        },
        FieldKind::ListSingle => vec![one(t)?],
        FieldKind::ListMulti => t
            .split([',', '\n'])
            .map(str::trim)
            .filter(|s| !s.is_empty())
            .map(one)
            .collect::<Result<_, _>>()?,
        FieldKind::TextMulti | FieldKind::JidMulti => {
            text.lines().map(|l| l.trim_end().to_owned()).collect()
        }
        FieldKind::TextPrivate => vec![text.to_owned()],
        _ => vec![t.to_owned()],
    };
    if f.required && values.iter().all(|v| v.is_empty()) {
        return Err(format!("{} is required.", f.display_label()));
    }
    Ok(Some(values))
}

impl Gateway {
    /// A chat message to the gateway JID.
    pub fn on_gateway_chat(&mut self, from: &Jid, body: &str) {
        let user = UserId::new(from.to_bare().to_string());
        let text = body.trim();
        if text.is_empty() {
            return;
        }
        let word = text
            .split_whitespace()
            .next()
            .unwrap_or_default()
            .to_ascii_lowercase();
        if let Some(d) = self.users.get(&user).and_then(|u| u.dialog.as_ref()) {
            if word == "cancel" && text.split_whitespace().count() == 1 {
                let node = d.node.clone();
                self.user_mut(&user).dialog = None;
                return self.notify(&user, &format!("Cancelled {node}."));
            }
            if d.waiting {
                return self.notify(&user, "One moment: the previous answer is being handled.");
            }
            return self.dialog_answer(&user, body);
        }
        if !self.allowed(&user) {
            return self.notify(&user, &format!(
                "{user} is not allowed to use this gateway (the operator's [access] users list does not include it)."
            ));
        }
        match word.as_str() {
            "help" | "?" | "commands" => return self.chat_help(&user),
            "cancel" => return self.notify(&user, "There is nothing to cancel."),
            _ => {}
        }
        let node = if word == "register" {
            "jabber:iq:register".to_owned()
        } else {
            word.clone()
        };
        let admin = self.is_admin(&user);
        let defs = self.commands_at(&user, &self.gw_jid());
        let def = defs
            .into_iter()
            .find(|c| c.node == node || c.node.strip_prefix("admin/") == Some(node.as_str()));
        let Some(def) = def else {
            return self.notify(
                &user,
                &format!("I do not know {word:?}. Send 'help' for the list of commands."),
            );
        };
        if def.admin_only && !admin {
            return self.notify(
                &user,
                &format!("{} is for the gateway's administrators only.", def.node),
            );
        }
        let (node, runner) = (def.node.clone(), def.runner.clone());
        let u = user.clone();
        self.run_step(
            &u,
            admin,
            &runner.clone(),
            None,
            FormValues::new(),
            Box::new(move |gw, r| gw.dialog_reply(&user, &node, runner, r)),
        );
    }

    fn chat_help(&mut self, user: &UserId) {
        let list = self.command_list(user, &self.gw_jid());
        let mut text = format!(
            "{} gateway. Send one of these commands here (or run them as ad-hoc commands); 'cancel' stops a command in progress:",
            self.info.name
        );
        for (node, name) in list {
            let word = if node == "jabber:iq:register" {
                "register".to_owned()
            } else {
                node.strip_prefix("admin/").unwrap_or(&node).to_owned()
            };
            let word = if node.starts_with("admin/") {
                node.clone()
            } else {
                word
            };
            text.push_str(&format!("\n  {word} — {name}"));
        }
        self.notify(user, &text);
    }

    /// A command step's answer in a chat dialog.
    fn dialog_reply(
        &mut self,
        user: &UserId,
        node: &str,
        runner: Runner,
        r: Result<CommandReply, BridgeError>,
    ) {
        match r {
            Ok(CommandReply::Form { form, stage, last }) => {
                let mut intro = String::new();
                if !form.title.is_empty() {
                    intro.push_str(&form.title);
                }
                if let Some(i) = &form.instructions {
                    intro.push_str(&format!("\n{i}"));
                }
                for f in form.fields.iter().filter(|f| f.kind == FieldKind::Fixed) {
                    intro.push_str(&format!("\n{}", f.values.join("\n")));
                }
                let mut values = FormValues::new();
                for f in form.fields.iter().filter(|f| f.kind == FieldKind::Hidden) {
                    values.set(f.var.clone(), f.values.clone());
                }
                let d = Dialog {
                    node: node.to_owned(),
                    runner,
                    step: Step { form, stage, last },
                    asking: None,
                    values,
                    waiting: false,
                    touched: Instant::now(),
                };
                intro.push_str("\n(Send 'cancel' to stop.)");
                self.notify(user, intro.trim_start());
                self.user_mut(user).dialog = Some(d);
                self.dialog_next(user, None);
            }
            Ok(CommandReply::Done { note, result }) => {
                if let Some(u) = self.users.get_mut(user) {
                    u.dialog = None;
                }
                let mut text = note.unwrap_or_else(|| "Done.".into());
                if let Some(f) = result {
                    for field in &f.fields {
                        if field.kind == FieldKind::TextPrivate {
                            continue;
                        }
                        text.push_str(&format!(
                            "\n{}: {}",
                            field.display_label(),
                            field.values.join(", ")
                        ));
                    }
                }
                self.notify(user, &text);
            }
            Err(e) => {
                if let Some(u) = self.users.get_mut(user) {
                    u.dialog = None;
                }
                self.notify(user, &format!("{node} failed: {}", e.message));
            }
        }
    }

    /// Asks the next field after `after`, or submits the form.
    fn dialog_next(&mut self, user: &UserId, after: Option<usize>) {
        let Some(d) = self.users.get_mut(user).and_then(|u| u.dialog.as_mut()) else {
            return;
        };
        let start = after.map_or(0, |i| i + 1);
        let next = d
            .step
            .form
            .fields
            .iter()
            .enumerate()
            .skip(start)
            .find(|(_, f)| askable(f));
        match next {
            Some((i, f)) => {
                d.asking = Some(i);
                let q = question(f);
                self.notify(user, &q);
            }
            None => self.dialog_submit(user),
        }
    }

    fn dialog_answer(&mut self, user: &UserId, body: &str) {
        let Some(d) = self.users.get_mut(user).and_then(|u| u.dialog.as_mut()) else {
            return;
        };
        d.touched = Instant::now();
        let Some(i) = d.asking else { return };
        let Some(field) = d.step.form.fields.get(i).cloned() else {
            return;
        };
        match answer(&field, body) {
            Ok(Some(v)) => {
                d.values.set(field.var.clone(), v);
                self.dialog_next(user, Some(i));
            }
            Ok(None) => self.dialog_next(user, Some(i)),
            Err(e) => self.notify(user, &format!("{e} {}", question(&field))),
        }
    }

    fn dialog_submit(&mut self, user: &UserId) {
        let admin = self.is_admin(user);
        let Some(d) = self.users.get_mut(user).and_then(|u| u.dialog.as_mut()) else {
            return;
        };
        let values = match d.step.form.validate(&d.values) {
            Ok(v) => v,
            Err(e) => {
                let var = match &e {
                    FormError::Missing { var, .. } | FormError::Invalid { var, .. } => var.clone(),
                    FormError::UnknownField(v) => v.clone(),
                };
                let pos = d.step.form.fields.iter().position(|f| f.var == var);
                let text = e.to_string();
                self.notify(user, &text);
                let before = pos.and_then(|p| p.checked_sub(1));
                return self.dialog_next(user, before);
            }
        };
        d.waiting = true;
        let runner = d.runner.clone();
        let node = d.node.clone();
        let stage = d.step.stage.clone();
        let u = user.clone();
        self.run_step(
            user,
            admin,
            &runner.clone(),
            Some(stage),
            values,
            Box::new(move |gw, r| gw.dialog_reply(&u, &node, runner, r)),
        );
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn answers_are_read_per_field_kind() {
        let b = Field::boolean("tls", "TLS", true);
        assert_eq!(answer(&b, "Yes"), Ok(Some(vec!["true".into()])));
        assert_eq!(answer(&b, "."), Ok(None));
        assert!(answer(&b, "maybe").is_err());
        let l = Field::new("s", FieldKind::ListSingle)
            .label("Server")
            .option("One", "one")
            .option("Two", "two");
        assert_eq!(answer(&l, "2"), Ok(Some(vec!["two".into()])));
        assert_eq!(answer(&l, "one"), Ok(Some(vec!["one".into()])));
        assert!(answer(&l, "three").is_err());
        let r = Field::text("nick", "Nick").required();
        assert!(answer(&r, ".").is_err());
        assert!(answer(&r, "  ").is_err());
        let m = Field::new("ports", FieldKind::TextMulti);
        assert_eq!(
            answer(&m, "6667\n6697"),
            Ok(Some(vec!["6667".into(), "6697".into()]))
        );
    }

    #[test]
    fn private_questions_never_show_values() {
        let p = Field::private("password", "Password").value("hunter2");
        let q = question(&p);
        assert!(!q.contains("hunter2"), "{q}");
    }
}

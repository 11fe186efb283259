//! What a user's message to a contact and to a room have in common,
//! dispatched in one place: a retraction, reactions, typing and read
//! markers, each checked against the network's features and mapped to the
//! network's message ids. Text (and files) differ — a room reflects it, a
//! 1:1 conversation tracks its receipt — and stay with their callers
//! ([`super::direct`], [`super::rooms`]).

use ferry_bridge::{Action, Address, Feature, UserId};
use xmpp_parsers::jid::Jid;
use xmpp_parsers::stanza_error::{DefinedCondition, ErrorType};

use super::router::Gateway;
use crate::xmpp::message::Inbound;
use crate::xmpp::xml;

impl Gateway {
    /// Handles a retraction or reactions in `p` (answering an error to the
    /// sender when the network cannot, or the message is unknown). Returns
    /// whether it was one: the caller is done then.
    pub fn dispatch_edit(
        &mut self,
        user: &UserId,
        p: &Inbound,
        from: &Jid,
        to: &Jid,
        chat: &Address,
    ) -> bool {
        let (target, feature, unknown) = match (&p.retract, &p.reactions) {
            (Some(t), _) => (
                t,
                Feature::Retractions,
                "The message to retract is not known to the gateway.",
            ),
            (None, Some((t, _))) => (
                t,
                Feature::Reactions,
                "The message reacted to is not known to the gateway.",
            ),
            (None, None) => return false,
        };
        let refuse = |gw: &Gateway, t: ErrorType, c: DefinedCondition, text: &str| {
            let err = xml::error(t, c, text);
            gw.send_error(xml::message_error(to, from, p.id.as_deref(), err));
        };
        if !self.info.capabilities.has(feature) {
            let text = format!(
                "{} does not support {}.",
                self.info.name,
                feature.describe()
            );
            refuse(
                self,
                ErrorType::Cancel,
                DefinedCondition::FeatureNotImplemented,
                &text,
            );
            return true;
        }
        let Some(fid) = self.foreign_of(user, chat, target) else {
            refuse(
                self,
                ErrorType::Cancel,
                DefinedCondition::ItemNotFound,
                unknown,
            );
            return true;
        };
        let action = match &p.reactions {
            Some((_, emojis)) if p.retract.is_none() => Action::React {
                chat: chat.clone(),
                target: fid,
                emojis: emojis.clone(),
            },
            _ => Action::Retract {
                chat: chat.clone(),
                target: fid,
                moderate: None,
            },
        };
        self.act_or_bounce(user, action, from, to, p.id.clone());
        true
    }

    /// Passes on typing and read markers in `p`, when the network has them
    /// (and the user wants typing sent). Failures are not worth a message.
    pub fn dispatch_signals(&mut self, user: &UserId, p: &Inbound, chat: &Address) {
        let caps = self.info.capabilities;
        if let Some(state) = p.chat_state
            && caps.has(Feature::ChatStates)
            && self.pref_on(user, "send_typing")
        {
            self.act_silent(
                user,
                Action::ChatState {
                    chat: chat.clone(),
                    state,
                },
            );
        }
        if let Some(id) = &p.displayed
            && caps.has(Feature::DisplayedMarkers)
            && let Some(fid) = self.foreign_of(user, chat, id)
        {
            self.act_silent(
                user,
                Action::Displayed {
                    chat: chat.clone(),
                    up_to: fid,
                },
            );
        }
    }
}

//! What a network can do, as a typed set of [`Feature`]s that a bridge
//! declares once (in its [`NetworkInfo`]).
//!
//! Every [`Action`] names the feature it needs ([`Action::feature`]); the
//! core refuses an action whose feature the bridge did not declare before it
//! reaches the session, with an error that names the network and the
//! feature. So a declaration and the code that handles it cannot disagree:
//! an undeclared feature never reaches the bridge, and the core's service
//! discovery, its checks and the bridge's handlers all read the same set.
//!
//! [`NetworkInfo`]: crate::NetworkInfo
//! [`Action`]: crate::Action
//! [`Action::feature`]: crate::Action::feature

use std::fmt;

macro_rules! features {
    ($($(#[$doc:meta])* $variant:ident = $name:literal, $what:literal;)*) => {
        /// One thing a network can do.
        #[derive(Clone, Copy, Debug, PartialEq, Eq, Hash, PartialOrd, Ord)]
        pub enum Feature {
            $($(#[$doc])* $variant,)*
        }

        impl Feature {
            /// Every feature, in declaration order.
            pub const ALL: &'static [Feature] = &[$(Feature::$variant,)*];

            /// The feature's name in configuration and logs (`reactions`).
            pub fn name(self) -> &'static str {
                match self {
                    $(Feature::$variant => $name,)*
                }
            }

            /// What the feature is, for a sentence such as "IRC does not
            /// support reactions".
            pub fn describe(self) -> &'static str {
                match self {
                    $(Feature::$variant => $what,)*
                }
            }

            /// The feature of a name given by [`Feature::name`].
            pub fn from_name(name: &str) -> Option<Feature> {
                match name {
                    $($name => Some(Feature::$variant),)*
                    _ => None,
                }
            }
        }
    };
}

features! {
    /// Group conversations the core hosts as rooms (joining, leaving,
    /// messages in rooms).
    Rooms = "rooms", "rooms";
    /// Opening a group conversation with a set of addresses
    /// ([`Action::OpenGroup`](crate::Action::OpenGroup)): group mail
    /// threads, group SMS.
    Groups = "groups", "opening group conversations";
    /// Private messages to room occupants.
    PrivateMessages = "private_messages", "private messages to room occupants";
    /// Editing sent messages.
    Corrections = "corrections", "message corrections";
    /// Deleting one's own sent messages.
    Retractions = "retractions", "retracting messages";
    /// Deleting others' messages as a moderator.
    Moderation = "moderation", "moderating messages";
    /// Reactions.
    Reactions = "reactions", "reactions";
    /// Replies.
    Replies = "replies", "replies";
    /// Threads.
    Threads = "threads", "threads";
    /// A subject on 1:1 messages (email). Without it the core puts a
    /// subject the user wrote at the top of the body.
    Subjects = "subjects", "message subjects";
    /// Typing notifications.
    ChatStates = "chat_states", "typing notifications";
    /// The network confirms delivery ([`Event::Delivered`] and
    /// [`Event::DeliveryFailed`]); without it the core confirms delivery
    /// when the session has sent the message.
    ///
    /// [`Event::Delivered`]: crate::Event::Delivered
    /// [`Event::DeliveryFailed`]: crate::Event::DeliveryFailed
    DeliveryReceipts = "delivery_receipts", "delivery receipts";
    /// Read markers.
    DisplayedMarkers = "displayed_markers", "read markers";
    /// Files.
    Attachments = "attachments", "files";
    /// Formatted text.
    Formatting = "formatting", "formatted text";
    /// Setting a room's subject.
    SubjectChange = "subject_change", "changing the subject";
    /// Changing nickname in rooms.
    NickChange = "nick_change", "changing nicknames";
    /// Inviting people to rooms.
    Invites = "invites", "invitations";
    /// Kicking, bans, roles and affiliations.
    ModerationRoles = "moderation_roles", "kicking, banning and changing roles";
    /// Fetching older messages
    /// ([`Action::FetchHistory`](crate::Action::FetchHistory)).
    History = "history", "fetching older messages";
    /// Listing rooms ([`Action::ListRooms`](crate::Action::ListRooms)).
    RoomList = "room_list", "listing rooms";
    /// Contacts have presence.
    ContactPresence = "contact_presence", "contact presence";
    /// A contact list to put in the roster.
    ContactList = "contact_list", "contact lists";
    /// Software version of contacts
    /// ([`Action::QueryVersion`](crate::Action::QueryVersion)).
    VersionQuery = "version_query", "software version queries";
    /// Pinging contacts ([`Action::Ping`](crate::Action::Ping)).
    Ping = "ping", "pings";
}

impl fmt::Display for Feature {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str(self.name())
    }
}

/// The set of features a network has.
#[derive(Clone, Copy, Default, PartialEq, Eq, Hash)]
pub struct Capabilities(u64);

impl Capabilities {
    /// No feature at all.
    pub const fn none() -> Capabilities {
        Capabilities(0)
    }

    /// Exactly these features.
    pub const fn of(features: &[Feature]) -> Capabilities {
        let mut bits = 0u64;
        let mut i = 0;
        while i < features.len() {
            bits |= 1 << features[i] as u32;
            i += 1;
        }
        Capabilities(bits)
    }

    /// Every feature (the test network's starting point).
    pub fn all() -> Capabilities {
        Capabilities::of(Feature::ALL)
    }

    /// Whether the network has a feature.
    pub const fn has(self, feature: Feature) -> bool {
        self.0 & (1 << feature as u32) != 0
    }

    /// With one more feature.
    #[must_use]
    pub const fn with(self, feature: Feature) -> Capabilities {
        Capabilities(self.0 | (1 << feature as u32))
    }

    /// Without a feature.
    #[must_use]
    pub const fn without(self, feature: Feature) -> Capabilities {
        Capabilities(self.0 & !(1 << feature as u32))
    }

    /// With or without a feature.
    #[must_use]
    pub const fn set(self, feature: Feature, on: bool) -> Capabilities {
        if on {
            self.with(feature)
        } else {
            self.without(feature)
        }
    }

    /// The features, in declaration order.
    pub fn iter(self) -> impl Iterator<Item = Feature> {
        Feature::ALL.iter().copied().filter(move |f| self.has(*f))
    }
}

impl fmt::Debug for Capabilities {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.debug_set()
            .entries(self.iter().map(Feature::name))
            .finish()
    }
}

impl FromIterator<Feature> for Capabilities {
    fn from_iter<I: IntoIterator<Item = Feature>>(iter: I) -> Self {
        iter.into_iter()
            .fold(Capabilities::none(), Capabilities::with)
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn sets_hold_what_was_declared() {
        let caps = Capabilities::of(&[Feature::Rooms, Feature::Reactions]);
        assert!(caps.has(Feature::Rooms) && caps.has(Feature::Reactions));
        assert!(!caps.has(Feature::Ping));
        let caps = caps.without(Feature::Rooms).with(Feature::Ping);
        assert_eq!(
            caps.iter().collect::<Vec<_>>(),
            vec![Feature::Reactions, Feature::Ping]
        );
        assert_eq!(format!("{caps:?}"), "{\"reactions\", \"ping\"}");
        assert_eq!(Capabilities::all().iter().count(), Feature::ALL.len());
        assert!(Feature::ALL.len() < 64);
    }

    #[test]
    fn names_round_trip() {
        for f in Feature::ALL {
            assert_eq!(Feature::from_name(f.name()), Some(*f));
            assert!(!f.describe().is_empty());
        }
        assert_eq!(Feature::from_name("teleport"), None);
    }
}

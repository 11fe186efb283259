//! The user's preferences for the email bridge (the core stores them and
//! shows them in its `preferences` command).

use ferry_bridge::{Field, FieldKind, FormValues};

/// Show only the new text of a mail.
pub const STRIP_QUOTES: &str = "strip_quotes";
/// Mark a mail `\Seen` on the server when the user has read it.
pub const MARK_SEEN: &str = "mark_seen";
/// The name on outgoing mail.
pub const DISPLAY_NAME: &str = "display_name";
/// Append sent mail to the Sent folder.
pub const SENT_COPY: &str = "sent_copy";
/// Ask for read receipts on the mails the user sends.
pub const READ_RECEIPTS: &str = "read_receipts";
/// What to do with mailing-list mail.
pub const MAILING_LISTS: &str = "mailing_lists";

/// The preference fields.
pub fn fields() -> Vec<Field> {
    vec![
        Field::boolean(
            STRIP_QUOTES,
            "Show only the new text of a mail (quoted history and signature removed; \
             the 'show-full-text' command on a contact shows the whole mail)",
            true,
        ),
        Field::boolean(
            MARK_SEEN,
            "Mark mails as read on the mail server when you have read them",
            true,
        ),
        Field::text(DISPLAY_NAME, "Your name on the mails you send"),
        Field::boolean(
            SENT_COPY,
            "Keep a copy of the mails you send in the Sent folder",
            true,
        ),
        Field::boolean(
            READ_RECEIPTS,
            "Ask the people you write to for read receipts (shown as read markers when \
             their mail program sends them)",
            false,
        ),
        Field::new(MAILING_LISTS, FieldKind::ListSingle)
            .label("Mailing-list mail")
            .option("One room per list", "room")
            .option("Show it like any mail", "show")
            .option("Ignore it (muted)", "mute")
            .value("room"),
    ]
}

/// The preferences as values.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct Prefs {
    /// See [`STRIP_QUOTES`].
    pub strip_quotes: bool,
    /// See [`MARK_SEEN`].
    pub mark_seen: bool,
    /// See [`DISPLAY_NAME`].
    pub display_name: Option<String>,
    /// See [`SENT_COPY`].
    pub sent_copy: bool,
    /// See [`READ_RECEIPTS`].
    pub read_receipts: bool,
    /// See [`MAILING_LISTS`].
    pub lists: Lists,
}

/// What becomes of mailing-list mail (List-Id).
#[derive(Clone, Copy, Debug, Default, PartialEq, Eq)]
pub enum Lists {
    /// One read-mostly room per list.
    #[default]
    Room,
    /// Like any mail: a chat from its sender.
    Show,
    /// Not shown.
    Mute,
}

impl Default for Prefs {
    fn default() -> Self {
        Self::from_values(&FormValues::new())
    }
}

impl Prefs {
    /// Reads the values (defaults for what is missing).
    pub fn from_values(v: &FormValues) -> Self {
        Self {
            strip_quotes: v.bool(STRIP_QUOTES).unwrap_or(true),
            mark_seen: v.bool(MARK_SEEN).unwrap_or(true),
            display_name: v
                .get(DISPLAY_NAME)
                .map(str::trim)
                .filter(|s| !s.is_empty())
                .map(str::to_owned),
            sent_copy: v.bool(SENT_COPY).unwrap_or(true),
            read_receipts: v.bool(READ_RECEIPTS).unwrap_or(false),
            lists: match v.get(MAILING_LISTS) {
                Some("show") => Lists::Show,
                Some("mute") => Lists::Mute,
                _ => Lists::Room,
            },
        }
    }
}

//! Getting in: IRCv3 capability negotiation (`CAP LS 302`, REQ/ACK/NAK,
//! cap-notify's NEW/DEL), SASL (PLAIN, EXTERNAL), the welcome and
//! ISUPPORT numerics, nickname collisions while registering, the MOTD,
//! and what happens once the server is ready (after-connect commands,
//! AWAY, MONITOR, joining every wanted channel).

use std::time::SystemTime;

use ferry_bridge::{ErrorKind, Event, Presence};

use super::{ChanState, Conn, Phase};
use crate::proto::{Line, Message, Source};

impl Conn {
    fn wanted(&self, cap: &str) -> bool {
        if cap == "sasl" {
            return self.settings.sasl_plain.is_some() || self.settings.sasl_external;
        }
        super::caps::WANTED.contains(&cap)
    }

    fn request_caps(&mut self, caps: Vec<String>) {
        // CAP REQ lines stay well under 512 bytes.
        let mut chunk = String::new();
        let mut chunks = Vec::new();
        for cap in caps {
            if chunk.len() + cap.len() + 1 > 400 {
                chunks.push(std::mem::take(&mut chunk));
            }
            if !chunk.is_empty() {
                chunk.push(' ');
            }
            chunk.push_str(&cap);
        }
        if !chunk.is_empty() {
            chunks.push(chunk);
        }
        for c in chunks {
            self.caps_outstanding += 1;
            self.line_urgent("CAP", &["REQ", &c]);
        }
    }

    fn end_cap(&mut self) {
        if !self.cap_ended {
            self.cap_ended = true;
            self.line_urgent("CAP", &["END"]);
        }
    }

    /// After the last ACK/NAK: SASL if wanted, else CAP END.
    fn caps_settled(&mut self) {
        if self.caps_outstanding > 0 || self.cap_ended || self.sasl_started {
            return;
        }
        let want_sasl = self.settings.sasl_plain.is_some() || self.settings.sasl_external;
        if want_sasl && self.phase == Phase::Registering {
            if !self.caps.enabled("sasl") {
                if !self.settings.sasl_required {
                    self.end_cap();
                    return;
                }
                let msg = format!(
                    "{} does not offer SASL authentication, which is configured for it",
                    self.settings.server
                );
                self.fatal(ErrorKind::NotAuthorized, msg);
                return;
            }
            self.sasl_started = true;
            let mech = if self.settings.sasl_external {
                "EXTERNAL"
            } else {
                "PLAIN"
            };
            self.line_urgent("AUTHENTICATE", &[mech]);
            return;
        }
        self.end_cap();
    }

    pub(super) fn on_cap(&mut self, msg: &Message) {
        let sub = msg.param(1).to_ascii_uppercase();
        let list = msg.trailing();
        match sub.as_str() {
            "LS" => {
                let more = msg.params.len() > 3 && msg.param(2) == "*";
                for tok in list.split(' ').filter(|t| !t.is_empty()) {
                    let (k, v) = tok.split_once('=').unwrap_or((tok, ""));
                    // Only what we may ask for is kept (memory per connection).
                    self.caps.offer(k, v);
                }
                if !more && !self.caps_ls_done {
                    self.caps_ls_done = true;
                    let mut want: Vec<String> = self
                        .caps
                        .offered()
                        .filter(|k| self.wanted(k))
                        .map(str::to_owned)
                        .collect();
                    want.sort();
                    if want.is_empty() {
                        self.caps_settled();
                    } else {
                        self.request_caps(want);
                    }
                }
            }
            "ACK" => {
                for tok in list.split(' ').filter(|t| !t.is_empty()) {
                    match tok.strip_prefix('-') {
                        Some(off) => self.caps.set_enabled(off, false),
                        None => self.caps.set_enabled(tok, true),
                    }
                }
                self.caps_outstanding = self.caps_outstanding.saturating_sub(1);
                self.caps_settled();
            }
            "NAK" => {
                self.caps_outstanding = self.caps_outstanding.saturating_sub(1);
                self.caps_settled();
            }
            "NEW" => {
                let mut want = Vec::new();
                for tok in list.split(' ').filter(|t| !t.is_empty()) {
                    let (k, v) = tok.split_once('=').unwrap_or((tok, ""));
                    self.caps.offer(k, v);
                    if k != "sasl" && self.wanted(k) && !self.caps.enabled(k) {
                        want.push(k.to_owned());
                    }
                }
                if !want.is_empty() {
                    self.request_caps(want);
                }
            }
            "DEL" => {
                for tok in list.split(' ').filter(|t| !t.is_empty()) {
                    self.caps.withdraw(tok);
                }
            }
            _ => {}
        }
    }

    pub(super) fn on_authenticate(&mut self, msg: &Message) {
        if msg.param(0) != "+" {
            return;
        }
        let payload = if self.settings.sasl_external {
            Vec::new()
        } else if let Some((account, password)) = &self.settings.sasl_plain {
            format!("{account}\0{account}\0{password}").into_bytes()
        } else {
            Vec::new()
        };
        if payload.is_empty() {
            self.line_urgent("AUTHENTICATE", &["+"]);
            return;
        }
        let encoded = base64(&payload);
        let chunks: Vec<String> = encoded
            .as_bytes()
            .chunks(400)
            .map(|c| String::from_utf8_lossy(c).into_owned())
            .collect();
        let last_full = encoded.len().is_multiple_of(400);
        for c in chunks {
            self.line_urgent("AUTHENTICATE", &[&c]);
        }
        if last_full {
            self.line_urgent("AUTHENTICATE", &["+"]);
        }
    }

    pub(super) fn on_sasl_numeric(&mut self, msg: &Message) {
        match msg.command.as_str() {
            "900" => {
                if let Some(account) = msg.params.get(2) {
                    tracing::debug!(server = %self.settings.server, %account, "SASL logged in");
                }
            }
            "903" => {
                self.end_cap();
            }
            "902" | "904" | "905" | "906" | "908"
                if self.phase == Phase::Registering
                    && !self.cap_ended
                    && !self.settings.sasl_required =>
            {
                let text = format!(
                    "SASL EXTERNAL with your client certificate failed on {} ({}); continuing without",
                    self.settings.server,
                    msg.trailing()
                );
                self.service_message(text);
                self.end_cap();
            }
            "902" | "904" | "905" | "906" | "908"
                if self.phase == Phase::Registering && !self.cap_ended =>
            {
                let msg = format!(
                    "SASL authentication with {} failed: {}",
                    self.settings.server,
                    msg.trailing()
                );
                self.fatal(ErrorKind::NotAuthorized, msg);
            }
            _ => {}
        }
    }

    pub(super) fn on_welcome(&mut self, msg: &Message) {
        self.welcomed = true;
        self.refusals = 0;
        if let Some(n) = msg.params.first() {
            self.nick = n.clone();
        }
        // "Welcome to the X Network nick!user@host"
        if let Some(last) = msg.trailing().split(' ').next_back()
            && last.contains('!')
            && last.contains('@')
        {
            let src = Source::parse(last);
            if self.is_me(&src.nick) {
                self.me = Some(src);
            }
        }
    }

    pub(super) fn on_isupport(&mut self, msg: &Message) {
        if msg.params.len() < 3 {
            return;
        }
        let before = self.isupport.casemapping;
        let tokens = &msg.params[1..msg.params.len() - 1];
        self.isupport.apply(tokens.iter().map(String::as_str));
        if self.isupport.casemapping != before {
            let chans = std::mem::take(&mut self.channels);
            for (_, ch) in chans {
                let key = self.fold(&ch.name);
                self.channels.insert(key, ch);
            }
        }
        self.publish_traits();
    }

    /// 432/433/436/437 before we are registered: try another nickname.
    pub(super) fn on_nick_refused_registering(&mut self, msg: &Message) {
        if msg.command == "432" {
            let text = format!(
                "The nickname {} was refused by {}: {}",
                msg.param(1),
                self.settings.server,
                msg.trailing()
            );
            self.fatal(ErrorKind::BadRequest, text);
            return;
        }
        self.nick_attempts += 1;
        if self.nick_attempts > 8 {
            let text = format!(
                "No free nickname like {} on {}",
                self.base_nick, self.settings.server
            );
            self.fatal(ErrorKind::Conflict, text);
            return;
        }
        let max = self.isupport.nicklen.unwrap_or(30).max(3);
        let suffix = if self.nick_attempts <= 3 {
            "_".repeat(self.nick_attempts as usize)
        } else {
            format!("{}", self.nick_attempts * 7 + (std::process::id() % 97))
        };
        let mut base: String = self.base_nick.chars().collect();
        while base.chars().count() + suffix.len() > max && !base.is_empty() {
            base.pop();
        }
        let nick = format!("{base}{suffix}");
        self.nick = nick.clone();
        self.line_urgent("NICK", &[&nick]);
    }

    pub(super) fn on_motd(&mut self, msg: &Message) {
        match msg.command.as_str() {
            "375" => self.motd.clear(),
            "372" => {
                let line = msg.trailing();
                let line = line.strip_prefix("- ").unwrap_or(line);
                // Shown once per connection's life: a reconnection's MOTD
                // is not kept.
                if !self.motd_shown && self.motd.len() < 500 {
                    self.motd.push(line.to_owned());
                }
            }
            _ => {}
        }
    }

    /// End of MOTD (or no MOTD): the server is ready.
    pub(super) fn on_ready(&mut self) {
        if self.phase == Phase::Ready {
            return;
        }
        self.end_cap();
        self.phase = Phase::Ready;
        let endpoint = match &self.endpoint {
            Some((h, p, tls)) => format!(
                "{h}:{p}{} as {}",
                if *tls { " (TLS)" } else { "" },
                self.nick
            ),
            None => format!("as {}", self.nick),
        };
        self.log_info(
            if self.registered_once {
                "back"
            } else {
                "opened"
            },
            &endpoint,
        );
        self.renote_nick();
        self.registered_once = true;
        if !self.has_cap("echo-message") {
            // No echo will come for the lines written before the connection.
            self.echoes.retain(|e| e.reply.is_some());
        }
        self.connected_since = Some(SystemTime::now());
        self.status = None;
        self.publish_traits();
        if !self.motd_shown && !self.motd.is_empty() {
            self.motd_shown = true;
            let text = std::mem::take(&mut self.motd).join("\n");
            self.service_message(text);
        }
        self.motd = Vec::new();
        let status = match &self.endpoint {
            Some((h, p, tls)) => format!(
                "Connected to {h}:{p} ({}) as {}",
                if *tls { "TLS" } else { "plain text" },
                self.nick
            ),
            None => format!("Connected as {}", self.nick),
        };
        self.emit(Event::ServicePresence {
            service: self.service.clone(),
            presence: Presence::available().with_status(status),
        });
        self.set_down(false);
        for cmd in self.settings.after_connect.clone() {
            let cmd = cmd.trim();
            if cmd.is_empty() {
                continue;
            }
            match Line::raw(cmd) {
                Ok(l) => self.send(l),
                Err(e) => {
                    self.service_message(format!("After-connect command {cmd:?} not sent: {e}"))
                }
            }
        }
        if let Some(away) = self.away.clone() {
            self.line("AWAY", &[&away]);
        }
        if self.isupport.monitor.is_some() && !self.monitor.is_empty() {
            let nicks: Vec<String> = self.monitor.iter().cloned().collect();
            for chunk in nicks.chunks(20) {
                self.line("MONITOR", &["+", &chunk.join(",")]);
            }
        }
        for l in std::mem::take(&mut self.deferred) {
            self.send(l);
        }
        self.join_wanted();
    }

    /// Sends JOIN for every channel waiting to be joined, several per line,
    /// channels with keys first.
    pub(super) fn join_wanted(&mut self) {
        if self.phase != Phase::Ready {
            return;
        }
        let mut keyed = Vec::new();
        let mut open = Vec::new();
        for ch in self.channels.values_mut() {
            if ch.state == ChanState::Wanted {
                ch.state = ChanState::Joining;
                match &ch.key {
                    Some(k) => keyed.push((ch.name.clone(), k.clone())),
                    None => open.push(ch.name.clone()),
                }
            }
        }
        let mut names = Vec::new();
        let mut keys = Vec::new();
        let mut len = 0;
        let all = keyed
            .into_iter()
            .map(|(n, k)| (n, Some(k)))
            .chain(open.into_iter().map(|n| (n, None)));
        for (name, key) in all {
            if len + name.len() + key.as_ref().map_or(0, |k| k.len()) > 350 || names.len() >= 10 {
                self.send_join(&names, &keys);
                names.clear();
                keys.clear();
                len = 0;
            }
            len += name.len() + 2 + key.as_ref().map_or(0, |k| k.len());
            names.push(name);
            if let Some(k) = key {
                keys.push(k);
            }
        }
        if !names.is_empty() {
            self.send_join(&names, &keys);
        }
    }

    fn send_join(&mut self, names: &[String], keys: &[String]) {
        let n = names.join(",");
        if keys.is_empty() {
            self.line("JOIN", &[&n]);
        } else {
            let k = keys.join(",");
            self.line("JOIN", &[&n, &k]);
        }
    }
}

/// Standard base64 (RFC 4648, with padding).
pub fn base64(data: &[u8]) -> String {
    const T: &[u8; 64] = b"ABCDEFGHIJKLMNOPQRSTUVWXYZabcdefghijklmnopqrstuvwxyz0123456789+/";
    let mut out = String::with_capacity(data.len().div_ceil(3) * 4);
    for chunk in data.chunks(3) {
        let b = [
            chunk[0],
            *chunk.get(1).unwrap_or(&0),
            *chunk.get(2).unwrap_or(&0),
        ];
        let n = (b[0] as u32) << 16 | (b[1] as u32) << 8 | b[2] as u32;
        out.push(T[(n >> 18) as usize & 63] as char);
        out.push(T[(n >> 12) as usize & 63] as char);
        out.push(if chunk.len() > 1 {
            T[(n >> 6) as usize & 63] as char
        } else {
            '='
        });
        out.push(if chunk.len() > 2 {
            T[n as usize & 63] as char
        } else {
            '='
        });
    }
    out
}

#[cfg(test)]
mod tests {
    use super::base64;

    #[test]
    fn base64_matches_rfc4648() {
        assert_eq!(base64(b""), "");
        assert_eq!(base64(b"f"), "Zg==");
        assert_eq!(base64(b"fo"), "Zm8=");
        assert_eq!(base64(b"foo"), "Zm9v");
        assert_eq!(base64(b"foobar"), "Zm9vYmFy");
        assert_eq!(base64(b"u\0u\0pw"), "dQB1AHB3");
    }
}

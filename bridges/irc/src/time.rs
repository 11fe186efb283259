//! Time stamps: IRCv3 `server-time` (`2024-01-31T12:00:00.000Z`) and the
//! CTCP TIME answer.

use std::time::SystemTime;

use chrono::{DateTime, SecondsFormat, Utc};

/// Parses a `server-time` tag value.
pub fn parse_server_time(s: &str) -> Option<SystemTime> {
    DateTime::parse_from_rfc3339(s)
        .ok()
        .map(|t| SystemTime::from(t.with_timezone(&Utc)))
}

/// Formats a time as IRCv3 does (`timestamp=` of CHATHISTORY).
pub fn format_server_time(t: SystemTime) -> String {
    DateTime::<Utc>::from(t).to_rfc3339_opts(SecondsFormat::Millis, true)
}

/// The CTCP TIME answer (RFC 2822 style, UTC).
pub fn ctcp_time(t: SystemTime) -> String {
    DateTime::<Utc>::from(t)
        .format("%a, %d %b %Y %H:%M:%S +0000")
        .to_string()
}

#[cfg(test)]
mod tests {
    use super::*;
    use std::time::{Duration, UNIX_EPOCH};

    #[test]
    fn server_time_round_trips() {
        let t = parse_server_time("2019-01-04T14:33:32.123Z").unwrap();
        assert_eq!(
            t.duration_since(UNIX_EPOCH).unwrap(),
            Duration::from_millis(1_546_612_412_123)
        );
        assert_eq!(format_server_time(t), "2019-01-04T14:33:32.123Z");
        assert!(parse_server_time("yesterday").is_none());
    }

    #[test]
    fn ctcp_time_is_readable() {
        let t = UNIX_EPOCH + Duration::from_secs(86_400);
        assert_eq!(ctcp_time(t), "Fri, 02 Jan 1970 00:00:00 +0000");
    }
}

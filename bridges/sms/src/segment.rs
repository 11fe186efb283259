//! One text as one or more short messages: the coding (GSM 03.38 7-bit when
//! every character allows it, UCS-2 otherwise — an emoji forces UCS-2, sent
//! as UTF-16 so that it survives), the split into concatenated parts with a
//! user data header (3GPP TS 23.040 §9.2.3.24.1), and back: decoding what a
//! part carries and putting the parts of a long text together again.

use crate::gsm7;

/// A single message holds 160 septets in GSM 7-bit …
pub const GSM_SINGLE: usize = 160;
/// … or 153 per part once the 6-octet concatenation header takes its room.
pub const GSM_PART: usize = 153;
/// A single message holds 70 UTF-16 units in UCS-2 …
pub const UCS2_SINGLE: usize = 70;
/// … or 67 per part with the header.
pub const UCS2_PART: usize = 67;
/// The most parts a concatenated message can have (the count is one octet).
pub const MAX_PARTS: usize = 255;

/// How the text of a message is coded.
#[derive(Clone, Copy, Debug, PartialEq, Eq, serde::Serialize, serde::Deserialize)]
pub enum Coding {
    /// GSM 03.38 default alphabet, one septet per octet (SMPP data_coding 0).
    Gsm7,
    /// UCS-2 / UTF-16 big-endian (SMPP data_coding 8).
    Ucs2,
}

impl Coding {
    /// The coding a text needs.
    pub fn for_text(text: &str) -> Coding {
        if gsm7::is_gsm(text) {
            Coding::Gsm7
        } else {
            Coding::Ucs2
        }
    }

    /// SMPP's data_coding value.
    pub fn data_coding(self) -> u8 {
        match self {
            Coding::Gsm7 => 0x00,
            Coding::Ucs2 => 0x08,
        }
    }
}

/// A text cut into the payloads of its short messages (without headers).
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct Split {
    /// The coding of every part.
    pub coding: Coding,
    /// Each part's payload: septets (GSM) or UTF-16BE octets (UCS-2).
    pub parts: Vec<Vec<u8>>,
}

/// Why a text cannot be sent.
#[derive(Clone, Debug, PartialEq, Eq, thiserror::Error)]
pub enum SplitError {
    /// Nothing to send.
    #[error("the message is empty")]
    Empty,
    /// More parts than allowed.
    #[error("the message is too long for SMS: {parts} parts, at most {max} allowed")]
    TooLong {
        /// Parts it would take.
        parts: usize,
        /// The limit.
        max: usize,
    },
}

/// Cuts `text` into parts, never between an escape and its character nor
/// between the two halves of a surrogate pair. `max_parts` is the
/// operator's limit (at most [`MAX_PARTS`]).
pub fn split(text: &str, max_parts: usize) -> Result<Split, SplitError> {
    if text.is_empty() {
        return Err(SplitError::Empty);
    }
    let max = max_parts.min(MAX_PARTS);
    let coding = Coding::for_text(text);
    // Units of each character: septets, or UTF-16 units (two bytes each).
    let units: Vec<Vec<u8>> = text
        .chars()
        .map(|c| match coding {
            Coding::Gsm7 => gsm7::encode_char(c).map(<[u8]>::to_vec).unwrap_or_default(),
            Coding::Ucs2 => {
                let mut buf = [0u16; 2];
                c.encode_utf16(&mut buf)
                    .iter()
                    .flat_map(|u| u.to_be_bytes())
                    .collect()
            }
        })
        .collect();
    let (single, part, unit) = match coding {
        Coding::Gsm7 => (GSM_SINGLE, GSM_PART, 1),
        Coding::Ucs2 => (UCS2_SINGLE * 2, UCS2_PART * 2, 2),
    };
    let total: usize = units.iter().map(Vec::len).sum();
    if total <= single {
        return Ok(Split {
            coding,
            parts: vec![units.concat()],
        });
    }
    let _ = unit;
    let mut parts: Vec<Vec<u8>> = Vec::new();
    let mut current: Vec<u8> = Vec::with_capacity(part);
    for u in units {
        if current.len() + u.len() > part {
            parts.push(std::mem::take(&mut current));
        }
        current.extend_from_slice(&u);
    }
    if !current.is_empty() {
        parts.push(current);
    }
    if parts.len() > max {
        return Err(SplitError::TooLong {
            parts: parts.len(),
            max,
        });
    }
    Ok(Split { coding, parts })
}

/// How many parts `text` takes (0 for an empty text), without the limit.
pub fn count_parts(text: &str) -> usize {
    split(text, MAX_PARTS).map_or_else(
        |e| match e {
            SplitError::Empty => 0,
            SplitError::TooLong { parts, .. } => parts,
        },
        |s| s.parts.len(),
    )
}

/// The 6-octet user data header of part `seq` (1-based) of `total`, with an
/// 8-bit reference shared by all parts of one message.
pub fn concat_header(reference: u8, total: u8, seq: u8) -> [u8; 6] {
    [0x05, 0x00, 0x03, reference, total, seq]
}

/// Where a part belongs, read from its user data header.
#[derive(Clone, Copy, Debug, PartialEq, Eq, Hash)]
pub struct PartInfo {
    /// Shared by all parts of one message (8 or 16 bits).
    pub reference: u16,
    /// How many parts the message has.
    pub total: u8,
    /// This part's place, from 1.
    pub seq: u8,
}

/// Splits a short message that starts with a user data header into the
/// concatenation information (if the header has it) and the rest.
/// None when the header is malformed.
pub fn parse_header(data: &[u8]) -> Option<(Option<PartInfo>, &[u8])> {
    let udhl = usize::from(*data.first()?);
    let header = data.get(1..1 + udhl)?;
    let rest = &data[1 + udhl..];
    let mut info = None;
    let mut i = 0;
    while i + 2 <= header.len() {
        let (id, len) = (header[i], usize::from(header[i + 1]));
        let value = header.get(i + 2..i + 2 + len)?;
        match (id, value) {
            (0x00, &[reference, total, seq]) => {
                info = Some(PartInfo {
                    reference: u16::from(reference),
                    total,
                    seq,
                })
            }
            (0x08, &[hi, lo, total, seq]) => {
                info = Some(PartInfo {
                    reference: u16::from_be_bytes([hi, lo]),
                    total,
                    seq,
                })
            }
            _ => {}
        }
        i += 2 + len;
    }
    Some((
        info.filter(|p| p.total >= 1 && p.seq >= 1 && p.seq <= p.total),
        rest,
    ))
}

/// Decodes a payload by its SMPP data_coding. Text that cannot be decoded
/// is kept with replacement characters, never dropped.
pub fn decode(data_coding: u8, payload: &[u8]) -> String {
    match data_coding {
        // SMSC default alphabet; also the "GSM 7-bit, message class" group.
        0x00 | 0xF0..=0xF3 => gsm7::decode(payload),
        // IA5 (ASCII)
        0x01 => payload.iter().map(|&b| char::from(b & 0x7F)).collect(),
        // Latin-1
        0x03 => payload.iter().map(|&b| char::from(b)).collect(),
        // UCS-2; read as UTF-16, which phones send for emoji
        0x08 => {
            let units: Vec<u16> = payload
                .chunks(2)
                .map(|c| u16::from_be_bytes([c[0], *c.get(1).unwrap_or(&0)]))
                .collect();
            String::from_utf16_lossy(&units)
        }
        // 8-bit data or anything else: best effort as UTF-8
        _ => String::from_utf8_lossy(payload).into_owned(),
    }
}

/// Decodes one part's payload (header removed) and joins parts in order.
pub fn join(data_coding: u8, parts: &[Vec<u8>]) -> String {
    if data_coding == 0x08 {
        // UTF-16 surrogate pairs may not be split, but decode as one to be safe.
        decode(data_coding, &parts.concat())
    } else {
        parts.iter().map(|p| decode(data_coding, p)).collect()
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn short_gsm_text_is_one_part() {
        let s = split("hello", 10).expect("splits");
        assert_eq!(s.coding, Coding::Gsm7);
        assert_eq!(s.parts, vec![b"hello".to_vec()]);
        let full = "a".repeat(160);
        assert_eq!(split(&full, 10).expect("fits").parts.len(), 1);
    }

    #[test]
    fn four_hundred_gsm_characters_take_three_parts() {
        let text: String = "0123456789".repeat(40);
        let s = split(&text, 10).expect("splits");
        assert_eq!(s.coding, Coding::Gsm7);
        assert_eq!(
            s.parts.iter().map(Vec::len).collect::<Vec<_>>(),
            vec![153, 153, 94]
        );
        assert_eq!(join(0, &s.parts), text);
    }

    #[test]
    fn escapes_are_never_cut_in_half() {
        // 152 plain characters then a two-septet euro sign at the boundary.
        let text = format!("{}€{}", "a".repeat(152), "b".repeat(100));
        let s = split(&text, 10).expect("splits");
        assert_eq!(s.parts[0].len(), 152);
        assert_eq!(s.parts[1][..2], [gsm7::ESCAPE, 0x65]);
        assert_eq!(join(0, &s.parts), text);
    }

    #[test]
    fn emoji_force_ucs2_and_surrogates_stay_together() {
        assert_eq!(Coding::for_text("hi 😀"), Coding::Ucs2);
        let single = split("hi 😀", 10).expect("splits");
        assert_eq!(
            single.parts,
            vec![vec![0, b'h', 0, b'i', 0, b' ', 0xD8, 0x3D, 0xDE, 0x00]]
        );
        // 66 units then an emoji (two units) at the 67-unit boundary.
        let text = format!("{}😀{}", "ж".repeat(66), "ж".repeat(20));
        let s = split(&text, 10).expect("splits");
        assert_eq!(s.parts[0].len(), 132);
        assert_eq!(s.parts[1][..4], [0xD8, 0x3D, 0xDE, 0x00]);
        assert_eq!(join(8, &s.parts), text);
    }

    #[test]
    fn four_hundred_ucs2_characters_take_six_parts() {
        let text: String = "привет мир".repeat(40);
        let s = split(&text, 10).expect("splits");
        assert_eq!(s.coding, Coding::Ucs2);
        assert_eq!(s.parts.len(), 6);
        assert!(s.parts.iter().all(|p| p.len() <= UCS2_PART * 2));
        assert_eq!(join(8, &s.parts), text);
    }

    #[test]
    fn limits_are_enforced() {
        assert_eq!(split("", 5), Err(SplitError::Empty));
        let long = "x".repeat(153 * 3 + 1);
        assert_eq!(
            split(&long, 3),
            Err(SplitError::TooLong { parts: 4, max: 3 })
        );
        assert_eq!(count_parts(&long), 4);
        assert_eq!(count_parts(""), 0);
    }

    #[test]
    fn headers_round_trip() {
        let mut data = concat_header(7, 3, 2).to_vec();
        data.extend_from_slice(b"abc");
        let (info, rest) = parse_header(&data).expect("parses");
        assert_eq!(
            info,
            Some(PartInfo {
                reference: 7,
                total: 3,
                seq: 2
            })
        );
        assert_eq!(rest, b"abc");
        // 16-bit reference
        let data = [0x06, 0x08, 0x04, 0x12, 0x34, 2, 1, b'x'];
        let (info, rest) = parse_header(&data).expect("parses");
        assert_eq!(info.map(|i| i.reference), Some(0x1234));
        assert_eq!(rest, b"x");
        // Truncated or nonsense headers
        assert_eq!(parse_header(&[0x05, 0x00, 0x03]), None);
        assert_eq!(parse_header(&[]), None);
        let (info, _) = parse_header(&[0x05, 0x00, 0x03, 1, 2, 3]).expect("parses");
        assert_eq!(info, None, "seq 3 of 2 is refused");
    }

    #[test]
    fn decodes_the_usual_codings() {
        assert_eq!(decode(0, &gsm7::encode("Grüße €").expect("gsm")), "Grüße €");
        assert_eq!(decode(1, b"plain"), "plain");
        assert_eq!(decode(3, &[0x63, 0x61, 0x66, 0xE9]), "café");
        assert_eq!(decode(8, &[0xD8, 0x3D, 0xDE, 0x00]), "😀");
        assert_eq!(decode(8, &[0x00]), "\u{0}");
        assert_eq!(decode(4, "ok".as_bytes()), "ok");
    }
}

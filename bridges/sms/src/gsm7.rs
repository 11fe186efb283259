//! The GSM 03.38 (3GPP TS 23.038 §6.2.1) default alphabet and its extension
//! table: text ↔ septets, one septet per octet ("unpacked", as SMPP and
//! Kannel carry them). Packing septets into octets is the SMSC's business.
//!
//! [`encode`] refuses text with any character outside the two tables (the
//! caller then sends UCS-2); [`decode`] never fails: an escape followed by a
//! code the extension table does not define shows the default character of
//! that code, as the specification asks of a receiving entity.

/// The escape to the extension table.
pub const ESCAPE: u8 = 0x1B;

/// The default alphabet, by septet. 0x1B (the escape) maps to itself here
/// and is never produced or accepted as a character.
#[rustfmt::skip]
const BASIC: [char; 128] = [
    '@', '£', '$', '¥', 'è', 'é', 'ù', 'ì', 'ò', 'Ç', '\n', 'Ø', 'ø', '\r', 'Å', 'å', //
    'Δ', '_', 'Φ', 'Γ', 'Λ', 'Ω', 'Π', 'Ψ', 'Σ', 'Θ', 'Ξ', '\u{1B}', 'Æ', 'æ', 'ß', 'É', //
    ' ', '!', '"', '#', '¤', '%', '&', '\'', '(', ')', '*', '+', ',', '-', '.', '/', //
    '0', '1', '2', '3', '4', '5', '6', '7', '8', '9', ':', ';', '<', '=', '>', '?', //
    '¡', 'A', 'B', 'C', 'D', 'E', 'F', 'G', 'H', 'I', 'J', 'K', 'L', 'M', 'N', 'O', //
    'P', 'Q', 'R', 'S', 'T', 'U', 'V', 'W', 'X', 'Y', 'Z', 'Ä', 'Ö', 'Ñ', 'Ü', '§', //
    '¿', 'a', 'b', 'c', 'd', 'e', 'f', 'g', 'h', 'i', 'j', 'k', 'l', 'm', 'n', 'o', //
    'p', 'q', 'r', 's', 't', 'u', 'v', 'w', 'x', 'y', 'z', 'ä', 'ö', 'ñ', 'ü', 'à', //
];

/// The extension table (each preceded by [`ESCAPE`]): septet, character.
const EXTENSION: [(u8, char); 10] = [
    (0x0A, '\u{0C}'), // form feed (page break)
    (0x14, '^'),
    (0x28, '{'),
    (0x29, '}'),
    (0x2F, '\\'),
    (0x3C, '['),
    (0x3D, '~'),
    (0x3E, ']'),
    (0x40, '|'),
    (0x65, '€'),
];

/// The septets of one character: one from the default alphabet, or the
/// escape and one from the extension table. None: not in GSM 03.38.
pub fn encode_char(c: char) -> Option<&'static [u8]> {
    // The tables are small: a scan is as fast as a map and needs no set-up.
    static SEPTETS: [u8; 128] = {
        let mut s = [0u8; 128];
        let mut i = 0;
        while i < 128 {
            s[i] = i as u8;
            i += 1;
        }
        s
    };
    static ESCAPED: [[u8; 2]; 10] = {
        let mut s = [[0u8; 2]; 10];
        let mut i = 0;
        while i < 10 {
            s[i] = [ESCAPE, EXTENSION[i].0];
            i += 1;
        }
        s
    };
    if c == '\u{1B}' {
        return None;
    }
    if let Some(i) = BASIC.iter().position(|&b| b == c) {
        return Some(std::slice::from_ref(&SEPTETS[i]));
    }
    EXTENSION
        .iter()
        .position(|&(_, e)| e == c)
        .map(|i| &ESCAPED[i][..])
}

/// How many septets `c` takes (1 or 2), None if it is not in GSM 03.38.
pub fn septets(c: char) -> Option<usize> {
    encode_char(c).map(<[u8]>::len)
}

/// Whether every character of `text` is in GSM 03.38.
pub fn is_gsm(text: &str) -> bool {
    text.chars().all(|c| encode_char(c).is_some())
}

/// `text` as septets, or the first character that GSM 03.38 lacks.
pub fn encode(text: &str) -> Result<Vec<u8>, char> {
    let mut out = Vec::with_capacity(text.len());
    for c in text.chars() {
        out.extend_from_slice(encode_char(c).ok_or(c)?);
    }
    Ok(out)
}

/// Septets (one per octet; the high bit is ignored) as text.
pub fn decode(septets: &[u8]) -> String {
    let mut out = String::with_capacity(septets.len());
    let mut i = 0;
    while i < septets.len() {
        let s = septets[i] & 0x7F;
        if s == ESCAPE {
            match septets.get(i + 1).map(|n| n & 0x7F) {
                Some(next) => {
                    match EXTENSION.iter().find(|&&(code, _)| code == next) {
                        Some(&(_, c)) => out.push(c),
                        // Unknown extension: the default character (23.038 §6.2.1.1);
                        // a second escape reads as a space.
                        None if next == ESCAPE => out.push(' '),
                        None => out.push(BASIC[usize::from(next)]),
                    }
                    i += 2;
                }
                // A trailing escape stands for nothing.
                None => i += 1,
            }
        } else {
            out.push(BASIC[usize::from(s)]);
            i += 1;
        }
    }
    out
}

#[cfg(test)]
mod tests {
    use super::*;

    /// 3GPP TS 23.038 figure 6.2.1.1, written out by code point, so that a
    /// slip in the table above cannot hide in the same slip here.
    #[rustfmt::skip]
    const SPEC_BASIC: [(u8, u32); 127] = [
        (0x00, 0x40), (0x01, 0xA3), (0x02, 0x24), (0x03, 0xA5), (0x04, 0xE8), (0x05, 0xE9),
        (0x06, 0xF9), (0x07, 0xEC), (0x08, 0xF2), (0x09, 0xC7), (0x0A, 0x0A), (0x0B, 0xD8),
        (0x0C, 0xF8), (0x0D, 0x0D), (0x0E, 0xC5), (0x0F, 0xE5), (0x10, 0x394), (0x11, 0x5F),
        (0x12, 0x3A6), (0x13, 0x393), (0x14, 0x39B), (0x15, 0x3A9), (0x16, 0x3A0), (0x17, 0x3A8),
        (0x18, 0x3A3), (0x19, 0x398), (0x1A, 0x39E), (0x1C, 0xC6), (0x1D, 0xE6), (0x1E, 0xDF),
        (0x1F, 0xC9), (0x20, 0x20), (0x21, 0x21), (0x22, 0x22), (0x23, 0x23), (0x24, 0xA4),
        (0x25, 0x25), (0x26, 0x26), (0x27, 0x27), (0x28, 0x28), (0x29, 0x29), (0x2A, 0x2A),
        (0x2B, 0x2B), (0x2C, 0x2C), (0x2D, 0x2D), (0x2E, 0x2E), (0x2F, 0x2F), (0x30, 0x30),
        (0x31, 0x31), (0x32, 0x32), (0x33, 0x33), (0x34, 0x34), (0x35, 0x35), (0x36, 0x36),
        (0x37, 0x37), (0x38, 0x38), (0x39, 0x39), (0x3A, 0x3A), (0x3B, 0x3B), (0x3C, 0x3C),
        (0x3D, 0x3D), (0x3E, 0x3E), (0x3F, 0x3F), (0x40, 0xA1), (0x41, 0x41), (0x42, 0x42),
        (0x43, 0x43), (0x44, 0x44), (0x45, 0x45), (0x46, 0x46), (0x47, 0x47), (0x48, 0x48),
        (0x49, 0x49), (0x4A, 0x4A), (0x4B, 0x4B), (0x4C, 0x4C), (0x4D, 0x4D), (0x4E, 0x4E),
        (0x4F, 0x4F), (0x50, 0x50), (0x51, 0x51), (0x52, 0x52), (0x53, 0x53), (0x54, 0x54),
        (0x55, 0x55), (0x56, 0x56), (0x57, 0x57), (0x58, 0x58), (0x59, 0x59), (0x5A, 0x5A),
        (0x5B, 0xC4), (0x5C, 0xD6), (0x5D, 0xD1), (0x5E, 0xDC), (0x5F, 0xA7), (0x60, 0xBF),
        (0x61, 0x61), (0x62, 0x62), (0x63, 0x63), (0x64, 0x64), (0x65, 0x65), (0x66, 0x66),
        (0x67, 0x67), (0x68, 0x68), (0x69, 0x69), (0x6A, 0x6A), (0x6B, 0x6B), (0x6C, 0x6C),
        (0x6D, 0x6D), (0x6E, 0x6E), (0x6F, 0x6F), (0x70, 0x70), (0x71, 0x71), (0x72, 0x72),
        (0x73, 0x73), (0x74, 0x74), (0x75, 0x75), (0x76, 0x76), (0x77, 0x77), (0x78, 0x78),
        (0x79, 0x79), (0x7A, 0x7A), (0x7B, 0xE4), (0x7C, 0xF6), (0x7D, 0xF1), (0x7E, 0xFC),
        (0x7F, 0xE0),
    ];
    /// Figure 6.2.1.2 (the extension table, after the escape).
    #[rustfmt::skip]
    const SPEC_EXTENSION: [(u8, u32); 10] = [
        (0x0A, 0x0C), (0x14, 0x5E), (0x28, 0x7B), (0x29, 0x7D), (0x2F, 0x5C),
        (0x3C, 0x5B), (0x3D, 0x7E), (0x3E, 0x5D), (0x40, 0x7C), (0x65, 0x20AC),
    ];

    fn ch(cp: u32) -> char {
        char::from_u32(cp).expect("valid code point")
    }

    #[test]
    fn every_default_character_matches_the_specification() {
        for &(septet, cp) in &SPEC_BASIC {
            let c = ch(cp);
            assert_eq!(encode_char(c), Some(&[septet][..]), "{c:?}");
            assert_eq!(decode(&[septet]), c.to_string(), "septet {septet:#04x}");
        }
        // Every septet except the escape is in the spec table.
        for s in 0u8..128 {
            assert_eq!(
                s == ESCAPE,
                !SPEC_BASIC.iter().any(|&(x, _)| x == s),
                "{s:#04x}"
            );
        }
    }

    #[test]
    fn every_extension_character_matches_the_specification() {
        for &(septet, cp) in &SPEC_EXTENSION {
            let c = ch(cp);
            assert_eq!(encode_char(c), Some(&[ESCAPE, septet][..]), "{c:?}");
            assert_eq!(septets(c), Some(2));
            assert_eq!(decode(&[ESCAPE, septet]), c.to_string());
        }
    }

    #[test]
    fn nothing_else_encodes() {
        let known: Vec<char> = SPEC_BASIC
            .iter()
            .chain(SPEC_EXTENSION.iter())
            .map(|&(_, cp)| ch(cp))
            .collect();
        // Every code point of the BMP and the first supplementary plane.
        for cp in 0u32..0x2_0000 {
            let Some(c) = char::from_u32(cp) else {
                continue;
            };
            assert_eq!(
                encode_char(c).is_some(),
                known.contains(&c),
                "U+{cp:04X} {c:?}"
            );
        }
    }

    #[test]
    fn agrees_with_rusmpp_extra_on_every_character() {
        use rusmpp_extra::encoding::gsm7bit::Gsm7BitUnpacked;
        let theirs = Gsm7BitUnpacked::new();
        for cp in 0u32..0x3000 {
            let Some(c) = char::from_u32(cp) else {
                continue;
            };
            // rusmpp-extra leaves out the extension table's form feed.
            if c == '\u{0C}' {
                continue;
            }
            let s = c.to_string();
            assert_eq!(
                encode(&s).ok(),
                theirs.encode_to_vec(&s).ok(),
                "U+{cp:04X} {c:?}"
            );
        }
    }

    #[test]
    fn text_round_trips_and_counts_escapes() {
        let text = "Hello {world} €5 [a|b] ~^\\ äöü ÆØÅ @£$¥";
        let septets = encode(text).expect("all GSM");
        assert_eq!(decode(&septets), text);
        let escaped = text.chars().filter(|c| "{}€[]|~^\\".contains(*c)).count();
        assert_eq!(septets.len(), text.chars().count() + escaped);
        assert_eq!(encode("naïve"), Err('ï'));
        assert_eq!(encode("hi 😀"), Err('😀'));
        assert!(!is_gsm("ç"));
        assert!(is_gsm("Ç"));
    }

    #[test]
    fn odd_escapes_decode_as_the_specification_says() {
        // Unknown extension code: the default character.
        assert_eq!(decode(&[ESCAPE, 0x41]), "A");
        // Escape escape: a space; a trailing escape: nothing.
        assert_eq!(decode(&[ESCAPE, ESCAPE, 0x41]), " A");
        assert_eq!(decode(&[0x41, ESCAPE]), "A");
        // The high bit is ignored.
        assert_eq!(decode(&[0xC1]), "A");
    }
}

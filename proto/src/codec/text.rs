//! MySQL's `latin1`, which is Windows-1252 with the five code points cp1252 leaves undefined
//! (0x81, 0x8D, 0x8F, 0x90, 0x9D) mapped to the C1 controls of the same value, as MySQL does.
//! That makes it a bijection between all 256 bytes and 256 Unicode scalar values.

/// Unicode for bytes 0x80..=0x9F.
const CP1252_80_9F: [char; 32] = [
    '\u{20AC}', '\u{0081}', '\u{201A}', '\u{0192}', '\u{201E}', '\u{2026}', '\u{2020}', '\u{2021}',
    '\u{02C6}', '\u{2030}', '\u{0160}', '\u{2039}', '\u{0152}', '\u{008D}', '\u{017D}', '\u{008F}',
    '\u{0090}', '\u{2018}', '\u{2019}', '\u{201C}', '\u{201D}', '\u{2022}', '\u{2013}', '\u{2014}',
    '\u{02DC}', '\u{2122}', '\u{0161}', '\u{203A}', '\u{0153}', '\u{009D}', '\u{017E}', '\u{0178}',
];

pub(super) fn latin1_decode(bytes: &[u8]) -> String {
    bytes
        .iter()
        .map(|&b| match b {
            0x80..=0x9F => CP1252_80_9F[usize::from(b - 0x80)],
            _ => char::from(b),
        })
        .collect()
}

/// Inverse of [`latin1_decode`]; the error is the first character latin1 cannot represent.
pub(super) fn latin1_encode(s: &str) -> Result<Vec<u8>, char> {
    s.chars()
        .map(|c| match u32::from(c) {
            n @ (0..=0x7F | 0xA0..=0xFF) => Ok(n as u8),
            _ => CP1252_80_9F
                .iter()
                .position(|&x| x == c)
                .map(|i| 0x80 + i as u8)
                .ok_or(c),
        })
        .collect()
}

pub(super) fn is_latin1(charset: Option<&str>) -> bool {
    charset.is_some_and(|c| c.eq_ignore_ascii_case("latin1"))
}

//! Text forms of the temporal values and the UTC calendar arithmetic behind TIMESTAMP.
//!
//! Fractions are printed with exactly six digits, and only when the microseconds are not zero;
//! parsing accepts one to six fraction digits.

use std::fmt::Write;

/// `.ffffff` when `micros` is not zero.
fn push_micros(out: &mut String, micros: u32) {
    if micros != 0 {
        let _ = write!(out, ".{micros:06}");
    }
}

pub(super) fn format_date(year: u16, month: u8, day: u8) -> String {
    format!("{year:04}-{month:02}-{day:02}")
}

pub(super) fn format_time(
    negative: bool,
    hours: u32,
    minutes: u8,
    seconds: u8,
    micros: u32,
) -> String {
    let sign = if negative { "-" } else { "" };
    let mut out = format!("{sign}{hours:02}:{minutes:02}:{seconds:02}");
    push_micros(&mut out, micros);
    out
}

pub(super) struct DateTimeParts {
    pub year: u16,
    pub month: u8,
    pub day: u8,
    pub hour: u8,
    pub minute: u8,
    pub second: u8,
    pub micros: u32,
}

pub(super) fn format_datetime(p: &DateTimeParts) -> String {
    let mut out = format!(
        "{:04}-{:02}-{:02} {:02}:{:02}:{:02}",
        p.year, p.month, p.day, p.hour, p.minute, p.second
    );
    push_micros(&mut out, p.micros);
    out
}

/// `YYYY-MM-DDTHH:MM:SS[.ffffff]Z` in UTC; `0000-00-00T00:00:00Z` for the zero timestamp.
pub(super) fn format_timestamp(secs: u64, micros: u32) -> String {
    if secs == 0 && micros == 0 {
        return "0000-00-00T00:00:00Z".to_owned();
    }
    let days = secs / 86_400;
    let rem = secs % 86_400;
    let (year, month, day) = civil_from_days(days);
    let mut out = format!(
        "{year:04}-{month:02}-{day:02}T{:02}:{:02}:{:02}",
        rem / 3600,
        rem / 60 % 60,
        rem % 60
    );
    push_micros(&mut out, micros);
    out.push('Z');
    out
}

/// Unsigned decimal made of ASCII digits only (no sign, no whitespace, no empty string).
pub(super) fn parse_digits<T: std::str::FromStr>(s: &str) -> Option<T> {
    if s.is_empty() || !s.bytes().all(|b| b.is_ascii_digit()) {
        return None;
    }
    s.parse().ok()
}

/// Splits `HH:MM:SS[.f{1,6}]` style text into the part before the fraction and the micros.
fn split_fraction(s: &str) -> Option<(&str, u32)> {
    match s.split_once('.') {
        None => Some((s, 0)),
        Some((main, frac)) => {
            if frac.len() > 6 {
                return None;
            }
            let digits: u32 = parse_digits(frac)?;
            Some((main, digits * 10u32.pow(6 - frac.len() as u32)))
        }
    }
}

/// Three `sep`-separated unsigned fields.
fn three<A, B, C>(s: &str, sep: char) -> Option<(A, B, C)>
where
    A: std::str::FromStr,
    B: std::str::FromStr,
    C: std::str::FromStr,
{
    let mut it = s.split(sep);
    let a = parse_digits(it.next()?)?;
    let b = parse_digits(it.next()?)?;
    let c = parse_digits(it.next()?)?;
    match it.next() {
        None => Some((a, b, c)),
        Some(_) => None,
    }
}

/// `YYYY-MM-DD` (field widths are not enforced; ranges are those of the types).
pub(super) fn parse_date(s: &str) -> Option<(u16, u8, u8)> {
    three(s, '-')
}

/// `[-]H+:MM:SS[.f{1,6}]`.
pub(super) fn parse_time(s: &str) -> Option<(bool, u32, u8, u8, u32)> {
    let (negative, rest) = match s.strip_prefix('-') {
        Some(rest) => (true, rest),
        None => (false, s),
    };
    let (main, micros) = split_fraction(rest)?;
    let (h, m, sec) = three(main, ':')?;
    Some((negative, h, m, sec, micros))
}

/// `YYYY-MM-DD HH:MM:SS[.f{1,6}]`; a `T` is accepted in place of the space.
pub(super) fn parse_datetime(s: &str) -> Option<DateTimeParts> {
    let (date, time) = s.split_once([' ', 'T'])?;
    let (year, month, day) = parse_date(date)?;
    let (main, micros) = split_fraction(time)?;
    let (hour, minute, second) = three(main, ':')?;
    Some(DateTimeParts {
        year,
        month,
        day,
        hour,
        minute,
        second,
        micros,
    })
}

/// Inverse of [`format_timestamp`]: `YYYY-MM-DDTHH:MM:SS[.f{1,6}]Z` (a space is accepted in
/// place of the `T`) as seconds and micros since the epoch. Calendar fields must be in range.
pub(super) fn parse_timestamp(s: &str) -> Option<(u64, u32)> {
    let s = s.strip_suffix('Z')?;
    let (date, time) = s.split_once([' ', 'T'])?;
    let (main, micros) = split_fraction(time)?;
    let (hour, minute, second): (u64, u64, u64) = three(main, ':')?;
    let (year, month, day): (i64, u32, u32) = three(date, '-')?;
    if (year, month, day, hour, minute, second) == (0, 0, 0, 0, 0, 0) {
        return Some((0, micros));
    }
    if !(1..=12).contains(&month) || day < 1 || day > days_in_month(year, month) {
        return None;
    }
    if hour > 23 || minute > 59 || second > 59 {
        return None;
    }
    let days = days_from_civil(year, month, day);
    let secs = i128::from(days) * 86_400 + i128::from(hour * 3600 + minute * 60 + second);
    Some((u64::try_from(secs).ok()?, micros))
}

fn is_leap(year: i64) -> bool {
    year % 4 == 0 && (year % 100 != 0 || year % 400 == 0)
}

fn days_in_month(year: i64, month: u32) -> u32 {
    match month {
        4 | 6 | 9 | 11 => 30,
        2 if is_leap(year) => 29,
        2 => 28,
        _ => 31,
    }
}

/// Proleptic Gregorian date of `days` days after 1970-01-01 (every `u64` seconds value has a
/// representable date).
pub(super) fn civil_from_days(days: u64) -> (u64, u32, u32) {
    let (year, month, day) = crate::calendar::civil_from_days(days as i64);
    (year as u64, month, day)
}

pub(super) use crate::calendar::days_from_civil;

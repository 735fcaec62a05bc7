//! The validation rules of `scm_batch.records.validate`, over decoded string values.
//!
//! Each function answers exactly what the Python rule answers for the same string; the
//! differential test in `tests/unit/test_native_engine.py` keeps them so.

/// The statuses a record may have.
const STATUSES: [&str; 5] = ["active", "inactive", "pending", "suspended", "deleted"];
pub const NAME_MIN: usize = 2;
pub const NAME_MAX: usize = 255;

pub fn status_ok(value: &str) -> bool {
    STATUSES.contains(&value)
}

/// Python's `str.isspace()` for one character: the characters of bidirectional class WS, B or S
/// or of category Zs (29 of them), which `str.strip()` removes. Not Rust's `char::is_whitespace`:
/// the two disagree on U+001C..U+001F (Python: space) and U+0085 is space in both.
pub fn is_python_space(c: char) -> bool {
    matches!(
        c,
        '\t' | '\n'
            | '\u{0b}'
            | '\u{0c}'
            | '\r'
            | '\u{1c}'..='\u{1f}'
            | ' '
            | '\u{85}'
            | '\u{a0}'
            | '\u{1680}'
            | '\u{2000}'..='\u{200a}'
            | '\u{2028}'
            | '\u{2029}'
            | '\u{202f}'
            | '\u{205f}'
            | '\u{3000}'
    )
}

/// `NAME_MIN <= len(name.strip()) <= NAME_MAX`, length in code points.
pub fn name_ok(value: &str) -> bool {
    let trimmed = value.trim_matches(is_python_space);
    let length = if trimmed.is_ascii() {
        trimmed.len()
    } else {
        trimmed.chars().count()
    };
    (NAME_MIN..=NAME_MAX).contains(&length)
}

/// A string id is valid when it holds a character that is not white space.
pub fn string_id_ok(value: &str) -> bool {
    value.chars().any(|c| !is_python_space(c))
}

fn email_local(b: u8) -> bool {
    b.is_ascii_alphanumeric() || matches!(b, b'.' | b'_' | b'%' | b'+' | b'-')
}

fn email_domain(b: u8) -> bool {
    b.is_ascii_alphanumeric() || matches!(b, b'.' | b'-')
}

/// `[a-zA-Z0-9._%+-]+@[a-zA-Z0-9.-]+\.[a-zA-Z]{2,}`, matched in full. The local part cannot
/// hold `@`, so the address splits at its only `@`; the top-level domain is made of letters
/// only, so it follows the domain's last dot, which must leave at least one character before it.
pub fn email_ok(value: &str) -> bool {
    let bytes = value.as_bytes();
    let Some(at) = memchr::memchr(b'@', bytes) else {
        return false;
    };
    let (local, domain) = (&bytes[..at], &bytes[at + 1..]);
    if local.is_empty() || !local.iter().all(|&b| email_local(b)) {
        return false;
    }
    if !domain.iter().all(|&b| email_domain(b)) {
        return false;
    }
    match memchr::memrchr(b'.', domain) {
        Some(dot) if dot >= 1 => {
            let top = &domain[dot + 1..];
            top.len() >= 2 && top.iter().all(u8::is_ascii_alphabetic)
        }
        _ => false,
    }
}

fn digits(bytes: &[u8]) -> bool {
    bytes.iter().all(u8::is_ascii_digit)
}

/// `[0-9]{4}-[0-9]{2}-[0-9]{2}T[0-9]{2}:[0-9]{2}:[0-9]{2}(?:\.[0-9]{3})?(?:Z|[+-][0-9]{2}:[0-9]{2})`
/// matched in full.
pub fn timestamp_ok(value: &str) -> bool {
    let b = value.as_bytes();
    if b.len() < 20 {
        return false;
    }
    let date_time = digits(&b[0..4])
        && b[4] == b'-'
        && digits(&b[5..7])
        && b[7] == b'-'
        && digits(&b[8..10])
        && b[10] == b'T'
        && digits(&b[11..13])
        && b[13] == b':'
        && digits(&b[14..16])
        && b[16] == b':'
        && digits(&b[17..19]);
    if !date_time {
        return false;
    }
    let mut rest = &b[19..];
    if rest.first() == Some(&b'.') {
        if rest.len() < 4 || !digits(&rest[1..4]) {
            return false;
        }
        rest = &rest[4..];
    }
    match rest {
        [b'Z'] => true,
        [sign, h1, h2, b':', m1, m2] => {
            matches!(sign, b'+' | b'-') && digits(&[*h1, *h2, *m1, *m2])
        }
        _ => false,
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn emails() {
        assert!(email_ok("a.b@example.com"));
        assert!(email_ok("a@b.c.de"));
        assert!(!email_ok("a@.de"));
        assert!(email_ok("a@..de"));
        assert!(!email_ok("a@de"));
        assert!(!email_ok("@b.de"));
        assert!(!email_ok("a@b.d"));
        assert!(!email_ok("a@b.d1"));
        assert!(!email_ok("a@b@c.de"));
        assert!(!email_ok("a@b.de\n"));
        assert!(!email_ok("é@b.de"));
    }

    #[test]
    fn timestamps() {
        assert!(timestamp_ok("2024-01-31T12:00:00Z"));
        assert!(timestamp_ok("2024-01-31T12:00:00.123+01:00"));
        assert!(!timestamp_ok("2024-01-31T12:00:00.12Z"));
        assert!(!timestamp_ok("2024-01-31 12:00:00Z"));
        assert!(!timestamp_ok("2024-01-31T12:00:00Z\n"));
        assert!(!timestamp_ok("2024-01-31T12:00:00+0100"));
    }

    #[test]
    fn names_and_ids() {
        assert!(name_ok(" ab "));
        assert!(!name_ok("\u{1c}a\u{1f}"));
        assert!(name_ok("é\u{301}"));
        assert!(!name_ok(&"x".repeat(256)));
        assert!(string_id_ok(" x"));
        assert!(!string_id_ok("\u{3000} \u{85}"));
        assert!(!string_id_ok(""));
    }
}

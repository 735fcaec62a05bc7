//! A block of a chunk's records in, the result part's lines out.
//!
//! The engine decides what it is sure of and hands back the rest: a line is **valid** (written
//! out, transformed, byte for byte as the Python engine writes it), **blank** (counted), or
//! **deferred** to the Python engine, which is the reference. It is sure of a line when it is
//! UTF-8, a JSON object that serde_json reads with every key free of escapes and no key twice, no
//! `\uD800`-style escape anywhere (which msgspec checks and serde_json skips), and when every rule
//! passes. Everything else — malformed JSON, a record some rule rejects, a line over the length
//! limit, a number too long to be sure of — goes back to Python, which decides it and writes its
//! error entry. Errors are rare, so the Python path costs little; and deferring can never make the
//! two engines disagree, which is what lets a batch switch engines on resume.

use serde::de::{Deserialize, Deserializer, MapAccess, Visitor};
use serde_json::value::RawValue;
use std::borrow::Cow;
use std::fmt;

use crate::rules;

/// The values the transform stamps on every record of a chunk, JSON-encoded by the caller
/// (Python's msgspec) so that their escaping is the Python engine's. The two prefixes are JSON
/// strings without their closing quote: the id's 12 hex digits and the quote follow.
pub struct Stamps {
    pub processed_at: Vec<u8>,
    pub customer_id: Vec<u8>,
    pub tenant_id: Vec<u8>,
    pub gss_prefix: Vec<u8>,
    pub id_prefix: Vec<u8>,
}

/// A line or element the engine leaves to the Python engine.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Deferred {
    /// Its index in the block.
    pub index: usize,
    /// Its byte offset in the input.
    pub offset: u64,
    /// Its length in bytes, without its newline.
    pub length: usize,
    /// Where its result line, if it has one, goes in `Sorted::out`.
    pub out_pos: usize,
    /// Over the length limit: its bytes are not to be read.
    pub too_long: bool,
}

/// What delivery needs of each record the engine wrote: its index in the block, its offset
/// (the ids' suffix) and whether it has a `gssId`.
#[derive(Debug, Default)]
pub struct Marks {
    pub index: Vec<u32>,
    pub offset: Vec<u64>,
    pub gss: Vec<bool>,
}

/// A block sorted.
#[derive(Debug, Default)]
pub struct Sorted {
    /// The valid records transformed, one JSON object per line, each ending in `\n`.
    pub out: Vec<u8>,
    pub lines: usize,
    pub blanks: usize,
    pub valid: usize,
    pub deferred: Vec<Deferred>,
    pub marks: Option<Marks>,
}

impl Sorted {
    /// A block's answer, written into `out` (emptied first: a caller sorting block after block
    /// passes the same vector back, so that its memory is not allocated and faulted in again).
    fn new(mut out: Vec<u8>, capacity: usize, marks: bool) -> Self {
        out.clear();
        out.reserve(capacity);
        Sorted {
            out,
            marks: marks.then(Marks::default),
            ..Sorted::default()
        }
    }

    fn mark(&mut self, index: usize, offset: u64, gss: bool) {
        self.valid += 1;
        if let Some(marks) = &mut self.marks {
            marks.index.push(index as u32);
            marks.offset.push(offset);
            marks.gss.push(gss);
        }
    }

    fn defer(&mut self, index: usize, offset: u64, length: usize, too_long: bool) {
        let out_pos = self.out.len();
        self.deferred.push(Deferred {
            index,
            offset,
            length,
            out_pos,
            too_long,
        });
    }
}

/// The number of `\n` bytes: CalculateChunks counts the lines of the whole input.
pub fn count_newlines(bytes: &[u8]) -> usize {
    memchr::memchr_iter(b'\n', bytes).count()
}

/// JSON's white space; a line of nothing else is blank.
fn is_blank(line: &[u8]) -> bool {
    line.iter()
        .all(|b| matches!(b, b' ' | b'\t' | b'\r' | b'\n'))
}

/// Sort a buffer of whole lines (each ending in `\n`, but perhaps the input's last) whose first
/// byte is at `base` in the input.
pub fn sort_lines(
    buf: &[u8],
    base: u64,
    max_line: usize,
    stamps: &Stamps,
    marks: bool,
    out: Vec<u8>,
) -> Sorted {
    let mut sorted = Sorted::new(out, buf.len() + buf.len() / 4, marks);
    let mut start = 0;
    let mut index = 0;
    let mut ends = memchr::memchr_iter(b'\n', buf);
    loop {
        let end = match ends.next() {
            Some(end) => end,
            None if start < buf.len() => buf.len(),
            None => break,
        };
        let line = &buf[start..end];
        let offset = base + start as u64;
        if line.len() > max_line {
            sorted.defer(index, offset, line.len(), true);
        } else if is_blank(line) {
            sorted.blanks += 1;
        } else {
            match transform(line, offset, stamps, &mut sorted.out) {
                Some(gss) => sorted.mark(index, offset, gss),
                None => sorted.defer(index, offset, line.len(), false),
            }
        }
        index += 1;
        start = end + 1;
    }
    sorted.lines = index;
    sorted
}

/// Sort a JSON array's elements (each with the white space around it), the i-th at
/// `starts[i]` in the input. An empty element is the Python engine's to report. A pretty-printed
/// element is written on one line: its values that hold a newline are compacted (see
/// [`push_compact`]), as the Python engine does.
pub fn sort_elements(
    elements: &[&[u8]],
    starts: &[u64],
    stamps: &Stamps,
    marks: bool,
    out: Vec<u8>,
) -> Sorted {
    let size = elements.iter().map(|e| e.len()).sum::<usize>();
    let mut sorted = Sorted::new(out, size + size / 4, marks);
    for (index, (element, &offset)) in elements.iter().zip(starts).enumerate() {
        let trimmed = trim(element);
        if trimmed.is_empty() {
            sorted.defer(index, offset, element.len(), false);
            continue;
        }
        match transform(trimmed, offset, stamps, &mut sorted.out) {
            Some(gss) => sorted.mark(index, offset, gss),
            None => sorted.defer(index, offset, element.len(), false),
        }
    }
    sorted.lines = elements.len();
    sorted
}

fn trim(bytes: &[u8]) -> &[u8] {
    let space = |b: &u8| matches!(b, b' ' | b'\t' | b'\r' | b'\n');
    let start = bytes.iter().position(|b| !space(b)).unwrap_or(bytes.len());
    let end = bytes
        .iter()
        .rposition(|b| !space(b))
        .map_or(start, |e| e + 1);
    &bytes[start..end]
}

/// A `\uD800`..`\uDFFF` escape: msgspec checks surrogate pairs in every string, serde_json only
/// in the strings it decodes, so a line holding one is left to Python. (An escaped backslash
/// followed by `uD8..` is caught too: deferred, never wrong.)
fn has_surrogate_escape(line: &[u8]) -> bool {
    if memchr::memchr(b'\\', line).is_none() {
        return false;
    }
    memchr::memmem::find_iter(line, b"\\u").any(|i| {
        matches!(line.get(i + 2), Some(b'd' | b'D'))
            && matches!(
                line.get(i + 3),
                Some(b'8'..=b'9' | b'a'..=b'f' | b'A'..=b'F')
            )
    })
}

/// A record's top-level fields in their order, each value as the input wrote it. Keys are
/// borrowed, so a key with an escape fails the read (and the line is deferred): the key is then
/// written back exactly as it was read.
struct Fields<'a>(Vec<(&'a str, &'a RawValue)>);

impl<'de> Deserialize<'de> for Fields<'de> {
    fn deserialize<D: Deserializer<'de>>(deserializer: D) -> Result<Self, D::Error> {
        struct FieldsVisitor;
        impl<'de> Visitor<'de> for FieldsVisitor {
            type Value = Fields<'de>;
            fn expecting(&self, f: &mut fmt::Formatter) -> fmt::Result {
                f.write_str("a JSON object")
            }
            fn visit_map<A: MapAccess<'de>>(self, mut map: A) -> Result<Self::Value, A::Error> {
                let mut fields = Vec::with_capacity(map.size_hint().unwrap_or(16));
                while let Some(entry) = map.next_entry::<&'de str, &'de RawValue>()? {
                    fields.push(entry);
                }
                Ok(Fields(fields))
            }
        }
        deserializer.deserialize_map(FieldsVisitor)
    }
}

fn has_duplicate(fields: &[(&str, &RawValue)]) -> bool {
    if fields.len() > 64 {
        let mut seen = std::collections::HashSet::with_capacity(fields.len());
        return !fields.iter().all(|(key, _)| seen.insert(*key));
    }
    fields
        .iter()
        .enumerate()
        .any(|(i, (key, _))| fields[..i].iter().any(|(other, _)| other == key))
}

/// A JSON string value decoded, or `None` for any other value.
fn string_value(raw: &RawValue) -> Option<Cow<'_, str>> {
    let text = raw.get();
    let inner = text.strip_prefix('"')?.strip_suffix('"')?;
    if memchr::memchr(b'\\', inner.as_bytes()).is_none() {
        return Some(Cow::Borrowed(inner));
    }
    serde_json::from_str::<String>(text).ok().map(Cow::Owned)
}

/// The most `[` and `{` bytes a line the engine writes may hold. msgspec (the Python engine's
/// reader) refuses values nested about as deep as Python's recursion limit (near a thousand,
/// less when the stack is deeper already) and serde_json's reading of raw values has no limit at
/// all: a line with more openings than this (its depth can be no greater) is left to Python.
const MAX_OPENINGS: usize = 128;

/// The ids end in 12 hex digits of the line's offset (Python writes more past 2**48, which no
/// UUID holds: such a line is left to it).
const MAX_OFFSET: u64 = 1 << 48;

/// The longest integer literal taken as sure to be a Python int (msgspec reads longer ones too;
/// they are left to it).
const MAX_INTEGER_DIGITS: usize = 18;

fn id_ok(raw: &RawValue) -> bool {
    let text = raw.get();
    if text.starts_with('"') {
        return string_value(raw).is_some_and(|id| rules::string_id_ok(&id));
    }
    let digits = text.strip_prefix('-').unwrap_or(text);
    !digits.is_empty()
        && digits.len() <= MAX_INTEGER_DIGITS
        && digits.bytes().all(|b| b.is_ascii_digit())
}

fn string_ok(raw: Option<&RawValue>, rule: fn(&str) -> bool) -> bool {
    raw.and_then(string_value).is_some_and(|value| rule(&value))
}

fn push_hex12(out: &mut Vec<u8>, value: u64) {
    const HEX: &[u8; 16] = b"0123456789abcdef";
    for shift in (0..12).rev() {
        out.push(HEX[((value >> (shift * 4)) & 0xf) as usize]);
    }
}

fn push_id(out: &mut Vec<u8>, prefix: &[u8], offset: u64) {
    out.extend_from_slice(prefix);
    push_hex12(out, offset);
    out.push(b'"');
}

/// A value without the white space between its tokens, every token as written: what msgspec's
/// `json.format(value, indent=-1)` makes of it, which the Python engine applies to a value that
/// holds a newline (a pretty-printed array's) so that a record stays on one line. The value is
/// JSON that serde_json has read, so its strings end where an unescaped quote does.
fn push_compact(out: &mut Vec<u8>, value: &[u8]) {
    let mut in_string = false;
    let mut escaped = false;
    for &byte in value {
        if in_string {
            out.push(byte);
            if escaped {
                escaped = false;
            } else if byte == b'\\' {
                escaped = true;
            } else if byte == b'"' {
                in_string = false;
            }
        } else if !matches!(byte, b' ' | b'\t' | b'\n' | b'\r') {
            out.push(byte);
            in_string = byte == b'"';
        }
    }
}

fn push_field(out: &mut Vec<u8>, first: &mut bool, key: &str, value: &[u8]) {
    if !*first {
        out.push(b',');
    }
    *first = false;
    out.push(b'"');
    out.extend_from_slice(key.as_bytes());
    out.extend_from_slice(b"\":");
    out.extend_from_slice(value);
}

/// Validate and transform one record, appending its result line to `out`: `Some(has_gss_id)`
/// when it is valid and written, `None` (and `out` untouched) when it is left to Python.
pub fn transform(line: &[u8], offset: u64, stamps: &Stamps, out: &mut Vec<u8>) -> Option<bool> {
    if offset >= MAX_OFFSET
        || has_surrogate_escape(line)
        || memchr::memchr2_iter(b'[', b'{', line).count() > MAX_OPENINGS
    {
        return None;
    }
    let text = std::str::from_utf8(line).ok()?;
    let Fields(fields) = serde_json::from_str(text).ok()?;
    if has_duplicate(&fields) {
        return None;
    }
    let (mut id, mut name, mut email, mut status, mut created, mut updated) =
        (None, None, None, None, None, None);
    let (mut has_processed, mut has_customer, mut has_tenant, mut has_gss, mut has_original) =
        (false, false, false, false, false);
    for &(key, value) in &fields {
        match key {
            "id" => id = Some(value),
            "name" => name = Some(value),
            "email" => email = Some(value),
            "status" => status = Some(value),
            "createdAt" => created = Some(value),
            "updatedAt" => updated = Some(value),
            "processedAt" => has_processed = true,
            "customerId" => has_customer = true,
            "tenantId" => has_tenant = true,
            "gssId" => has_gss = true,
            "originalId" => has_original = true,
            _ => {}
        }
    }
    let id = id?;
    let valid = string_ok(status, rules::status_ok)
        && string_ok(email, rules::email_ok)
        && string_ok(created, rules::timestamp_ok)
        && string_ok(updated, rules::timestamp_ok)
        && string_ok(name, rules::name_ok)
        && id_ok(id);
    if !valid {
        return None;
    }
    // The Python engine's dict: stamped keys keep their place, new ones follow in the order
    // the transform sets them (processedAt, customerId, tenantId, originalId).
    let original = id.get().as_bytes();
    out.push(b'{');
    let mut first = true;
    for &(key, value) in &fields {
        match key {
            "processedAt" => push_field(out, &mut first, key, &stamps.processed_at),
            "customerId" => push_field(out, &mut first, key, &stamps.customer_id),
            "tenantId" => push_field(out, &mut first, key, &stamps.tenant_id),
            "originalId" => push_field(out, &mut first, key, original),
            "id" => {
                push_field(out, &mut first, key, b"");
                push_id(out, &stamps.id_prefix, offset);
            }
            "gssId" => {
                push_field(out, &mut first, key, b"");
                push_id(out, &stamps.gss_prefix, offset);
            }
            _ => {
                let raw = value.get().as_bytes();
                if memchr::memchr(b'\n', raw).is_some() {
                    push_field(out, &mut first, key, b"");
                    push_compact(out, raw);
                } else {
                    push_field(out, &mut first, key, raw);
                }
            }
        }
    }
    if !has_processed {
        push_field(out, &mut first, "processedAt", &stamps.processed_at);
    }
    if !has_customer {
        push_field(out, &mut first, "customerId", &stamps.customer_id);
    }
    if !has_tenant {
        push_field(out, &mut first, "tenantId", &stamps.tenant_id);
    }
    if !has_original {
        push_field(out, &mut first, "originalId", original);
    }
    out.extend_from_slice(b"}\n");
    Some(has_gss)
}

#[cfg(test)]
mod tests {
    use super::*;

    fn stamps() -> Stamps {
        Stamps {
            processed_at: b"\"2024-01-01T00:00:00Z\"".to_vec(),
            customer_id: b"\"C\"".to_vec(),
            tenant_id: b"\"T\"".to_vec(),
            gss_prefix: b"\"g-".to_vec(),
            id_prefix: b"\"C_T_i-".to_vec(),
        }
    }

    const GOOD: &str = r#"{"id":"R1","name":"Ada","email":"a@b.io","status":"active","createdAt":"2024-01-02T03:04:05Z","updatedAt":"2024-01-02T03:04:05Z","gssId":"x","n":[1, 2]}"#;

    #[test]
    fn transforms_a_valid_record() {
        let mut out = Vec::new();
        assert_eq!(
            transform(GOOD.as_bytes(), 0x1f, &stamps(), &mut out),
            Some(true)
        );
        let expected = concat!(
            r#"{"id":"C_T_i-00000000001f","name":"Ada","email":"a@b.io","status":"active","#,
            r#""createdAt":"2024-01-02T03:04:05Z","updatedAt":"2024-01-02T03:04:05Z","#,
            r#""gssId":"g-00000000001f","n":[1, 2],"processedAt":"2024-01-01T00:00:00Z","#,
            r#""customerId":"C","tenantId":"T","originalId":"R1"}"#,
            "\n"
        );
        assert_eq!(String::from_utf8(out).unwrap(), expected);
    }

    #[test]
    fn defers_what_it_is_not_sure_of() {
        let cases = [
            GOOD.replace("\"active\"", "\"gone\""),
            GOOD.replace("\"n\"", "\"name\""),
            GOOD.replace("\"n\"", "\"n\\u0041\""),
            GOOD.replace("[1, 2]", "\"\\ud800\""),
            GOOD.replace("\"R1\"", "12345678901234567890"),
            GOOD.replace("\"R1\"", "1.0"),
            GOOD.replace("[1, 2]", &format!("{}{}", "[".repeat(128), "]".repeat(128))),
            format!("{GOOD}x"),
            "[1]".to_string(),
        ];
        for case in cases {
            let mut out = Vec::new();
            assert_eq!(
                transform(case.as_bytes(), 0, &stamps(), &mut out),
                None,
                "{case}"
            );
            assert!(out.is_empty());
        }
    }

    #[test]
    fn compacts_a_pretty_value_as_msgspec_does() {
        let mut out = Vec::new();
        push_compact(
            &mut out,
            b"[1,\n 2.50, 1E2,\n \"a \\\" \\\\\" ,\r\n\t{\"k\" :\n null}]",
        );
        assert_eq!(out, b"[1,2.50,1E2,\"a \\\" \\\\\",{\"k\":null}]");
    }

    #[test]
    fn counts_newlines() {
        let text = "a\nbc\n\n".repeat(1000);
        assert_eq!(count_newlines(text.as_bytes()), 3000);
        assert_eq!(count_newlines(b""), 0);
    }

    #[test]
    fn sorts_lines_with_offsets_and_limits() {
        let buf = format!("{GOOD}\n \r\n{{}}\n{}\n{GOOD}", "x".repeat(1001));
        let sorted = sort_lines(buf.as_bytes(), 100, 1000, &stamps(), true, Vec::new());
        assert_eq!((sorted.lines, sorted.blanks, sorted.valid), (5, 1, 2));
        let deferred: Vec<_> = sorted
            .deferred
            .iter()
            .map(|d| (d.index, d.too_long))
            .collect();
        assert_eq!(deferred, vec![(2, false), (3, true)]);
        let marks = sorted.marks.unwrap();
        let second = 100 + (GOOD.len() + 1 + 3 + 3 + 1002) as u64;
        assert_eq!(marks.offset, vec![100, second]);
        assert_eq!(marks.index, vec![0, 4]);
    }
}

//! The structural scan of a JSON array, byte by byte: `scm_batch.records.structure.scan_block`
//! (numpy, simdjson's first stage) answered the same way, a few times as fast. The differential
//! test in `tests/unit/test_json_array.py` holds the two to one answer.

/// Where a scan stands between blocks (`ScanState` in Python).
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct ScanState {
    pub position: u64,
    pub depth: i64,
    pub in_string: bool,
    /// The parity of the backslashes just before the next byte (odd: it is escaped).
    pub backslashes: u8,
}

/// What a block held (`BlockScan` in Python): the offsets of the commas at depth 1 outside
/// strings, and the bracket that closed the array with its byte, if one did.
#[derive(Debug, Default, PartialEq, Eq)]
pub struct BlockScan {
    pub commas: Vec<i64>,
    pub close: Option<(u64, u8)>,
}

/// Scan the next block from `state`, updated to the block's end; once the array closes,
/// nothing more is scanned and the position is left where the block began (as in Python).
pub fn scan_block(block: &[u8], state: &mut ScanState) -> BlockScan {
    let start = state.position;
    let mut depth = state.depth;
    let mut in_string = state.in_string;
    let mut escaped = state.backslashes & 1 == 1; // the next byte follows an odd run
    let mut scan = BlockScan::default();
    let mut i = 0;
    while i < block.len() {
        if in_string && !escaped {
            // Inside a string only a quote or a backslash matters: jump to the next one.
            match memchr::memchr2(b'"', b'\\', &block[i..]) {
                Some(skip) => i += skip,
                None => break,
            }
        }
        let byte = block[i];
        i += 1;
        let after_odd_run = escaped;
        escaped = byte == b'\\' && !after_odd_run;
        if byte == b'"' {
            if !after_odd_run {
                in_string = !in_string;
            }
            continue;
        }
        if in_string {
            continue;
        }
        // The bytes the numpy scan takes as structural: brackets, commas, and (one comparison
        // finds them all) `Y _ y DEL`, which never change the depth.
        let step = match byte {
            b'[' | b'{' => 1,
            b']' | b'}' => -1,
            b',' | b'Y' | b'_' | b'y' | 0x7f => 0,
            _ => continue,
        };
        depth += step;
        if depth <= 0 {
            state.depth = 0;
            scan.close = Some((start + (i - 1) as u64, byte));
            return scan;
        }
        if byte == b',' && depth == 1 {
            scan.commas.push((start + (i - 1) as u64) as i64);
        }
    }
    state.position = start + block.len() as u64;
    state.depth = depth;
    state.in_string = in_string;
    state.backslashes = u8::from(escaped);
    scan
}

#[cfg(test)]
mod tests {
    use super::*;

    fn state() -> ScanState {
        ScanState {
            position: 10,
            depth: 1,
            in_string: false,
            backslashes: 0,
        }
    }

    #[test]
    fn finds_commas_between_elements_and_the_close() {
        let mut s = state();
        let scan = scan_block(br#"{"a":[1,2]},"x,\"]",3]  "#, &mut s);
        assert_eq!(scan.commas, vec![21, 29]);
        assert_eq!(scan.close, Some((31, b']')));
        assert_eq!(s.depth, 0);
    }

    #[test]
    fn carries_strings_and_backslashes_across_blocks() {
        let mut s = state();
        assert!(scan_block(br#"1,"ab\"#, &mut s).commas == vec![11]);
        assert_eq!((s.in_string, s.backslashes, s.position), (true, 1, 16));
        let scan = scan_block(br#"",c",2"#, &mut s); // the quote is escaped: still a string
        assert_eq!(scan.commas, vec![20]);
        assert!(!s.in_string);
    }
}

//! Times the engine on a file of JSON Lines: `cargo run --release --example sort_file -- FILE`.
use scm_batch_native::engine::{sort_lines, Stamps};
use std::time::Instant;

fn main() {
    let path = std::env::args().nth(1).expect("a JSON Lines file");
    let data = std::fs::read(path).expect("readable");
    let stamps = Stamps {
        processed_at: b"\"2026-01-01T00:00:00Z\"".to_vec(),
        customer_id: b"\"C\"".to_vec(),
        tenant_id: b"\"T\"".to_vec(),
        gss_prefix: b"\"0123abcd-0123-8abc-9abc-".to_vec(),
        id_prefix: b"\"C_T_0123abcd-0123-8abc-9abc-".to_vec(),
    };
    let started = Instant::now();
    let mut lines = 0;
    let mut valid = 0;
    for block in data.chunks(1 << 20) {
        let sorted = sort_lines(block, 0, 1 << 20, &stamps, false, Vec::new());
        lines += sorted.lines;
        valid += sorted.valid;
    }
    let seconds = started.elapsed().as_secs_f64();
    println!(
        "{lines} lines, {valid} valid, {seconds:.3} s, {:.0} MB/s, {:.0} ns/line",
        data.len() as f64 / seconds / 1e6,
        seconds * 1e9 / lines as f64
    );
}

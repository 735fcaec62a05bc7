//! The Python module `scm_batch_native`: the engine's two entry points, run without the GIL.

use std::sync::Mutex;

use pyo3::prelude::*;
use pyo3::types::{PyBytes, PyList, PyTuple};

use crate::engine::{self, Sorted};
use crate::structure;

/// The run's stamped values, JSON-encoded (see `engine::Stamps`), and the output vector reused
/// from block to block of the chunk.
#[pyclass(frozen)]
struct Stamps {
    stamps: engine::Stamps,
    scratch: Mutex<Vec<u8>>,
}

impl Stamps {
    fn scratch(&self) -> Vec<u8> {
        self.scratch
            .lock()
            .map(|mut v| std::mem::take(&mut *v))
            .unwrap_or_default()
    }

    fn keep(&self, out: Vec<u8>) {
        if let Ok(mut v) = self.scratch.lock() {
            *v = out;
        }
    }
}

#[pymethods]
impl Stamps {
    #[new]
    fn new(
        processed_at: &[u8],
        customer_id: &[u8],
        tenant_id: &[u8],
        gss_prefix: &[u8],
        id_prefix: &[u8],
    ) -> Self {
        Stamps {
            stamps: engine::Stamps {
                processed_at: processed_at.to_vec(),
                customer_id: customer_id.to_vec(),
                tenant_id: tenant_id.to_vec(),
                gss_prefix: gss_prefix.to_vec(),
                id_prefix: id_prefix.to_vec(),
            },
            scratch: Mutex::new(Vec::new()),
        }
    }
}

/// `(out, lines, blanks, valid, deferred, marks)`: deferred as `(index, offset, length,
/// out_pos, too_long)` tuples; marks `(indices, offsets, gss)` or None.
fn answer<'py>(
    py: Python<'py>,
    mut sorted: Sorted,
    stamps: &Stamps,
) -> PyResult<Bound<'py, PyTuple>> {
    let deferred = PyList::empty(py);
    for d in &sorted.deferred {
        deferred.append((d.index, d.offset, d.length, d.out_pos, d.too_long))?;
    }
    let marks = match sorted.marks {
        Some(marks) => {
            let gss: Vec<u8> = marks.gss.iter().map(|&g| u8::from(g)).collect();
            (marks.index, marks.offset, PyBytes::new(py, &gss))
                .into_pyobject(py)?
                .into_any()
        }
        None => py.None().into_bound(py),
    };
    let encoded = PyBytes::new(py, &sorted.out);
    stamps.keep(std::mem::take(&mut sorted.out));
    (
        encoded,
        sorted.lines,
        sorted.blanks,
        sorted.valid,
        deferred,
        marks,
    )
        .into_pyobject(py)
}

/// Sort a buffer of whole lines starting at byte `base` of the input.
#[pyfunction]
fn sort_lines<'py>(
    py: Python<'py>,
    buf: &[u8],
    base: u64,
    max_line: usize,
    stamps: &Stamps,
    marks: bool,
) -> PyResult<Bound<'py, PyTuple>> {
    let out = stamps.scratch();
    let run = &stamps.stamps;
    let sorted = py.detach(|| engine::sort_lines(buf, base, max_line, run, marks, out));
    answer(py, sorted, stamps)
}

/// Sort a JSON array's elements, the i-th starting at byte `starts[i]` of the input.
#[pyfunction]
fn sort_elements<'py>(
    py: Python<'py>,
    elements: &Bound<'py, PyList>,
    starts: Vec<u64>,
    stamps: &Stamps,
    marks: bool,
) -> PyResult<Bound<'py, PyTuple>> {
    let held: Vec<Bound<'py, PyBytes>> = elements
        .iter()
        .map(|e| e.cast_into::<PyBytes>().map_err(PyErr::from))
        .collect::<PyResult<_>>()?;
    let slices: Vec<&[u8]> = held.iter().map(|e| e.as_bytes()).collect();
    if slices.len() != starts.len() {
        return Err(pyo3::exceptions::PyValueError::new_err(
            "elements and starts differ in length",
        ));
    }
    let out = stamps.scratch();
    let run = &stamps.stamps;
    let sorted = py.detach(|| engine::sort_elements(&slices, &starts, run, marks, out));
    answer(py, sorted, stamps)
}

/// The number of `\n` bytes in `buf[start..end]` (counted with SIMD, without the GIL).
#[pyfunction]
fn count_newlines(py: Python<'_>, buf: &[u8], start: usize, end: usize) -> PyResult<usize> {
    let part = buf.get(start..end).ok_or_else(|| {
        pyo3::exceptions::PyIndexError::new_err("the range is not within the buffer")
    })?;
    Ok(py.detach(|| engine::count_newlines(part)))
}

/// zlib's CRC-32 of `buf`, continuing from `value` (as `zlib.crc32(buf, value)`), computed with
/// the processor's carry-less multiplication where it has it, without the GIL.
#[pyfunction]
fn crc32(py: Python<'_>, buf: &[u8], value: u32) -> u32 {
    py.detach(|| {
        let mut hasher = crc32fast::Hasher::new_with_initial(value);
        hasher.update(buf);
        hasher.finalize()
    })
}

/// The structural scan of a JSON array's next block from `(position, depth, in_string,
/// backslashes)`: `(commas, close, close_byte, state)`, the commas' offsets as little-endian
/// int64 bytes (numpy reads them without a copy), `close` `None` while the array is open.
#[allow(clippy::type_complexity)]
#[pyfunction]
fn scan_structure<'py>(
    py: Python<'py>,
    block: &[u8],
    position: u64,
    depth: i64,
    in_string: bool,
    backslashes: u8,
) -> (Bound<'py, PyBytes>, Option<u64>, u8, (u64, i64, bool, u8)) {
    let mut state = structure::ScanState {
        position,
        depth,
        in_string,
        backslashes,
    };
    let scan = py.detach(|| structure::scan_block(block, &mut state));
    let commas: Vec<u8> = scan.commas.iter().flat_map(|c| c.to_le_bytes()).collect();
    let (close, close_byte) = scan.close.map_or((None, 0), |(at, byte)| (Some(at), byte));
    (
        PyBytes::new(py, &commas),
        close,
        close_byte,
        (
            state.position,
            state.depth,
            state.in_string,
            state.backslashes,
        ),
    )
}

#[pymodule]
fn scm_batch_native(m: &Bound<'_, PyModule>) -> PyResult<()> {
    m.add_class::<Stamps>()?;
    m.add_function(wrap_pyfunction!(sort_lines, m)?)?;
    m.add_function(wrap_pyfunction!(sort_elements, m)?)?;
    m.add_function(wrap_pyfunction!(count_newlines, m)?)?;
    m.add_function(wrap_pyfunction!(crc32, m)?)?;
    m.add_function(wrap_pyfunction!(scan_structure, m)?)?;
    m.add("ENGINE_VERSION", env!("CARGO_PKG_VERSION"))?;
    Ok(())
}

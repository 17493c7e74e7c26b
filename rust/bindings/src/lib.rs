//! The Python module `clickjax._native`: click-log readers that yield pyarrow RecordBatches.
//!
//! This crate only converts arguments and results, releases the GIL while the core parses, and
//! maps errors to exception classes. Parsing, session rules and batching live in `clickjax-core`.
//!
//! NOTE: the core reports skipped sessions and corrupt files through the `log` crate, and nothing
//! forwards those records to Python's `logging` yet, so Python users see them only in `stats`.

use std::path::PathBuf;
use std::sync::{Arc, Mutex, MutexGuard, PoisonError};

use arrow_pyarrow::ToPyArrow;
use clickjax_core::{BatchReader, Format, ReaderOptions, SharedVocabulary, Vocabulary};
use pyo3::prelude::*;
use pyo3::types::PyDict;

mod errors;

use errors::{to_py_err, ClickjaxError, CorruptInputError, ParseError};

/// Locks a mutex and ignores poisoning. A vocabulary stays consistent after a panic because
/// each insert is a single map operation.
fn lock<T>(mutex: &Mutex<T>) -> MutexGuard<'_, T> {
    mutex.lock().unwrap_or_else(PoisonError::into_inner)
}

/// Dense ids of queries, documents and query-document pairs, shared by readers.
#[pyclass(module = "clickjax._native", name = "Vocabulary", frozen)]
struct PyVocabulary {
    inner: SharedVocabulary,
}

#[pymethods]
impl PyVocabulary {
    #[new]
    fn new() -> Self {
        PyVocabulary {
            inner: Arc::new(Mutex::new(Vocabulary::new())),
        }
    }

    fn freeze(&self) {
        lock(&self.inner).freeze();
    }

    #[getter]
    fn frozen(&self) -> bool {
        lock(&self.inner).is_frozen()
    }

    #[getter]
    fn query_table_size(&self) -> usize {
        lock(&self.inner).query_table_size()
    }

    #[getter]
    fn document_table_size(&self) -> usize {
        lock(&self.inner).document_table_size()
    }

    #[getter]
    fn pair_table_size(&self) -> usize {
        lock(&self.inner).pair_table_size()
    }

    fn __len__(&self) -> usize {
        lock(&self.inner).len()
    }

    fn __repr__(&self) -> String {
        let vocabulary = lock(&self.inner);
        format!(
            "Vocabulary(queries={}, documents={}, pairs={}, frozen={})",
            vocabulary.query_table_size() - 2,
            vocabulary.document_table_size() - 2,
            vocabulary.len(),
            if vocabulary.is_frozen() {
                "True"
            } else {
                "False"
            },
        )
    }
}

/// An iterator of pyarrow RecordBatches over click-log files.
#[pyclass(module = "clickjax._native", name = "BatchReader", frozen)]
struct PyBatchReader {
    inner: Mutex<BatchReader>,
}

#[pymethods]
impl PyBatchReader {
    #[new]
    #[pyo3(signature = (
        format, paths, vocabulary, *, positions = 10, batch_size = 1024, on_error = "strict",
        drop_sessions_without_clicks = false
    ))]
    #[allow(clippy::too_many_arguments)]
    fn new(
        py: Python<'_>,
        format: &str,
        paths: Vec<PathBuf>,
        vocabulary: PyRef<'_, PyVocabulary>,
        positions: i64,
        batch_size: i64,
        on_error: &str,
        drop_sessions_without_clicks: bool,
    ) -> PyResult<Self> {
        let create = || {
            let format: Format = format.parse()?;
            let options = ReaderOptions::new(
                positions,
                batch_size,
                on_error,
                drop_sessions_without_clicks,
            )?;
            BatchReader::new(format, paths, vocabulary.inner.clone(), options)
        };
        let reader = create().map_err(|error| to_py_err(py, error))?;
        Ok(PyBatchReader {
            inner: Mutex::new(reader),
        })
    }

    fn __iter__(slf: PyRef<'_, Self>) -> PyRef<'_, Self> {
        slf
    }

    fn __next__<'py>(&self, py: Python<'py>) -> PyResult<Option<Bound<'py, PyAny>>> {
        let next = py.detach(|| lock(&self.inner).next());
        match next {
            None => Ok(None),
            Some(Ok(batch)) => batch.to_pyarrow(py).map(Some),
            Some(Err(error)) => Err(to_py_err(py, error)),
        }
    }

    #[getter]
    fn stats<'py>(&self, py: Python<'py>) -> PyResult<Bound<'py, PyDict>> {
        let stats = lock(&self.inner).stats().clone();
        let dict = PyDict::new(py);
        for (name, value) in stats.entries() {
            dict.set_item(name, value)?;
        }
        Ok(dict)
    }
}

#[pymodule]
fn _native(module: &Bound<'_, PyModule>) -> PyResult<()> {
    let py = module.py();
    module.add("ClickjaxError", py.get_type::<ClickjaxError>())?;
    module.add("ParseError", py.get_type::<ParseError>())?;
    module.add("CorruptInputError", py.get_type::<CorruptInputError>())?;
    module.add_class::<PyVocabulary>()?;
    module.add_class::<PyBatchReader>()?;
    Ok(())
}

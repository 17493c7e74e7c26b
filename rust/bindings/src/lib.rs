//! The Python module `clickjax._native`: click-log readers that yield pyarrow RecordBatches.
//!
//! This crate only converts arguments and results, releases the GIL while the core parses, and
//! maps errors to exception classes. Parsing, session rules and batching live in `clickjax-core`.
//!
//! NOTE: the core reports skipped sessions and corrupt files through the `log` crate, and nothing
//! forwards those records to Python's `logging` yet, so Python users see them only in `stats`.

use std::path::PathBuf;
use std::sync::{Arc, Mutex, MutexGuard, PoisonError};

use arrow_array::cast::AsArray;
use arrow_array::types::{Float32Type, Int32Type, Int64Type, UInt64Type, UInt8Type};
use arrow_array::{
    make_array, Array, ArrayRef, ArrowPrimitiveType, LargeBinaryArray, RecordBatch, UInt64Array,
};
use arrow_data::ArrayData;
use arrow_pyarrow::{PyArrowType, ToPyArrow};
use clickjax_core::behaviour::{behaviour_names, ValueKind};
use clickjax_core::columnar::{
    batch_columnar_sessions, extra_column, fingerprint_keys, key_texts, session_column,
    ColumnarSessions, KeyRole, MAX_FEATURES,
};
use clickjax_core::input::decompressed_size;
use clickjax_core::{
    read_relevance_labels, BatchLayout, BatchReader, ErrorPolicy, Format, IdOrder, QueryKey,
    ReaderOptions, SharedVocabulary, Vocabulary,
};
use pyo3::exceptions::PyValueError;
use pyo3::prelude::*;
use pyo3::types::{PyDict, PyList};

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
    #[pyo3(signature = (*, keys = false))]
    fn new(keys: bool) -> Self {
        PyVocabulary {
            inner: Arc::new(Mutex::new(Vocabulary::with_keys(keys))),
        }
    }

    /// Whether new query and document ids store the key text they were read from.
    #[getter]
    fn records_keys(&self) -> bool {
        lock(&self.inner).records_keys()
    }

    /// Heap memory of the stored key texts, in bytes.
    #[getter]
    fn key_bytes(&self) -> usize {
        lock(&self.inner).key_bytes()
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

    /// Returns a frozen copy that leaves out entries seen fewer than `min_count` times and
    /// numbers the rest by `order`: "frequency" (descending count) or "appearance".
    #[pyo3(signature = (*, order = "frequency", min_count = 1))]
    fn reindex(&self, py: Python<'_>, order: &str, min_count: i64) -> PyResult<Self> {
        let order: IdOrder = order.parse().map_err(|error| to_py_err(py, error))?;
        let Ok(min_count) = u64::try_from(min_count) else {
            return Err(PyValueError::new_err(format!(
                "invalid min_count {min_count}: expected a count of at least 0"
            )));
        };
        let source = Arc::clone(&self.inner);
        let vocabulary = py.detach(|| lock(&source).reindexed(order, min_count));
        Ok(PyVocabulary {
            inner: Arc::new(Mutex::new(vocabulary)),
        })
    }

    /// Returns every real id as a pyarrow RecordBatch: kind, id, fingerprint, count, query_id,
    /// doc_id, with the frozen flag and the format version in the schema metadata.
    fn to_arrow<'py>(&self, py: Python<'py>) -> PyResult<Bound<'py, PyAny>> {
        let batch = lock(&self.inner)
            .to_record_batch()
            .map_err(|error| to_py_err(py, error))?;
        batch.to_pyarrow(py)
    }

    /// Rebuilds a vocabulary from the RecordBatch of `to_arrow`; raises ValueError if invalid.
    #[staticmethod]
    fn from_arrow(py: Python<'_>, batch: PyArrowType<RecordBatch>) -> PyResult<Self> {
        let vocabulary = py
            .detach(|| Vocabulary::from_record_batch(&batch.0))
            .map_err(|error| to_py_err(py, error))?;
        Ok(PyVocabulary {
            inner: Arc::new(Mutex::new(vocabulary)),
        })
    }

    /// Returns the query and document ids of every pair id as a pyarrow RecordBatch with int32
    /// columns query_doc_id, query_id and doc_id, and with `keys` the large_binary columns
    /// query_key and doc_key.
    #[pyo3(signature = (*, keys = false))]
    fn pairs<'py>(&self, py: Python<'py>, keys: bool) -> PyResult<Bound<'py, PyAny>> {
        let batch = lock(&self.inner)
            .pairs_record_batch(keys)
            .map_err(|error| to_py_err(py, error))?;
        batch.to_pyarrow(py)
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
        format, paths, vocabulary, *, positions = Some(10), batch_size = 1024, on_error = "strict",
        drop_sessions_without_clicks = false, min_results = 1, min_sessions_per_query = 1,
        behaviour = None, document_key = None, query_key = None, threads = None,
        lookahead_bytes = None
    ))]
    #[allow(clippy::too_many_arguments)]
    fn new(
        py: Python<'_>,
        format: &str,
        paths: Vec<PathBuf>,
        vocabulary: PyRef<'_, PyVocabulary>,
        positions: Option<i64>,
        batch_size: i64,
        on_error: &str,
        drop_sessions_without_clicks: bool,
        min_results: i64,
        min_sessions_per_query: i64,
        behaviour: Option<Vec<String>>,
        document_key: Option<&str>,
        query_key: Option<&str>,
        threads: Option<i64>,
        lookahead_bytes: Option<i64>,
    ) -> PyResult<Self> {
        let create = || {
            let format: Format = format.parse()?;
            let mut options = ReaderOptions::new(
                positions,
                batch_size,
                on_error,
                drop_sessions_without_clicks,
            )?
            .with_min_results(min_results)?
            .with_min_sessions_per_query(min_sessions_per_query)?
            .with_behaviour(&behaviour.unwrap_or_default())?
            .with_threads(threads)?
            .with_lookahead_bytes(lookahead_bytes)?;
            if let Some(name) = document_key {
                options = options.with_document_key(name)?;
            }
            if let Some(name) = query_key {
                options = options.with_query_key(name)?;
            }
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
        let entries = lock(&self.inner).stats().entries();
        counters_dict(py, entries)
    }

    #[getter]
    fn positions(&self) -> Option<usize> {
        lock(&self.inner).positions()
    }
}

fn counters_dict<'py>(
    py: Python<'py>,
    entries: Vec<(&'static str, u64)>,
) -> PyResult<Bound<'py, PyDict>> {
    let dict = PyDict::new(py);
    for (name, value) in entries {
        dict.set_item(name, value)?;
    }
    Ok(dict)
}

/// Reads a Yandex relevance-label file; returns a pyarrow RecordBatch and a dict of counters.
#[pyfunction]
#[pyo3(signature = (path, *, query_key = "query_region", on_error = "strict", vocabulary = None))]
fn read_labels<'py>(
    py: Python<'py>,
    path: PathBuf,
    query_key: &str,
    on_error: &str,
    vocabulary: Option<PyRef<'_, PyVocabulary>>,
) -> PyResult<(Bound<'py, PyAny>, Bound<'py, PyDict>)> {
    let shared = vocabulary.map(|vocabulary| vocabulary.inner.clone());
    let read = || {
        let query_key: QueryKey = query_key.parse()?;
        let on_error: ErrorPolicy = on_error.parse()?;
        let labels = read_relevance_labels(&path, query_key, on_error)?;
        let vocabulary = shared.as_ref().map(|shared| lock(shared));
        let batch = labels.to_record_batch(vocabulary.as_deref())?;
        Ok((batch, labels.stats))
    };
    let (batch, stats) = py.detach(read).map_err(|error| to_py_err(py, error))?;
    Ok((batch.to_pyarrow(py)?, counters_dict(py, stats.entries())?))
}

/// Decompresses a gzip file on the calling thread and returns the number of decompressed bytes.
#[pyfunction]
fn gzip_decompressed_size(py: Python<'_>, path: PathBuf) -> PyResult<u64> {
    py.detach(|| decompressed_size(&path))
        .map_err(|error| to_py_err(py, error))
}

/// Fingerprints the keys of a pyarrow array as a query or document column; returns a uint64 array.
#[pyfunction]
fn fingerprint<'py>(
    py: Python<'py>,
    array: PyArrowType<ArrayData>,
    role: &str,
    column: &str,
) -> PyResult<Bound<'py, PyAny>> {
    let role = match role {
        "query" => KeyRole::Query,
        "document" => KeyRole::Document,
        _ => {
            return Err(PyValueError::new_err(format!(
                "invalid role {role:?}: expected \"query\" or \"document\""
            )))
        }
    };
    let array = make_array(array.0);
    let keys = py
        .detach(|| fingerprint_keys(array.as_ref(), role, column))
        .map_err(|error| to_py_err(py, error))?;
    UInt64Array::from(keys).into_data().to_pyarrow(py)
}

/// Returns the key text of every entry of a pyarrow key column, the bytes that `fingerprint`
/// hashes, as a large_binary array.
#[pyfunction]
fn key_text<'py>(
    py: Python<'py>,
    array: PyArrowType<ArrayData>,
    column: &str,
) -> PyResult<Bound<'py, PyAny>> {
    let array = make_array(array.0);
    let texts = py
        .detach(|| key_texts(array.as_ref(), column))
        .map_err(|error| to_py_err(py, error))?;
    texts.into_data().to_pyarrow(py)
}

/// Returns a pyarrow large_binary array as an Arrow array, or a ValueError naming `column`.
fn large_binary(array: PyArrowType<ArrayData>, column: &str) -> PyResult<LargeBinaryArray> {
    let array = make_array(array.0);
    match array.as_binary_opt::<i64>() {
        Some(values) if values.null_count() == 0 => Ok(values.clone()),
        _ => Err(PyValueError::new_err(format!(
            "invalid column {column}: expected large_binary without nulls, got {}",
            array.data_type()
        ))),
    }
}

/// Returns the values of a pyarrow array of type `T`, or a ValueError naming `column`.
fn values<T: ArrowPrimitiveType>(array: &ArrayRef, column: &str) -> PyResult<Vec<T::Native>> {
    match array.as_primitive_opt::<T>() {
        Some(values) if values.null_count() == 0 => Ok(values.values().to_vec()),
        _ => Err(PyValueError::new_err(format!(
            "invalid column {column}: expected {} without nulls, got {}",
            T::DATA_TYPE,
            array.data_type()
        ))),
    }
}

/// Values of the optional columns of columnar sessions, owned, with their batch layout.
#[derive(Default)]
struct OptionalColumns {
    layout: BatchLayout,
    floats: Vec<Vec<f32>>,
    ints: Vec<Vec<i32>>,
    sessions: Vec<Vec<i32>>,
    features: Vec<f32>,
}

impl OptionalColumns {
    /// Resolves the column names and checks each array's type: float32 or int32 as the column
    /// requires, int32 session columns, float32 features of `feature_width` values per result.
    fn new(
        extra: Vec<(String, PyArrowType<ArrayData>)>,
        session_columns: Vec<(String, PyArrowType<ArrayData>)>,
        features: Option<PyArrowType<ArrayData>>,
        feature_width: usize,
    ) -> PyResult<Self> {
        let value_error = |error: clickjax_core::Error| PyValueError::new_err(error.to_string());
        let mut columns = OptionalColumns::default();
        for (name, array) in extra {
            let column = extra_column(&name).map_err(value_error)?;
            let array = make_array(array.0);
            match column.kind {
                ValueKind::Float32 => columns.floats.push(values::<Float32Type>(&array, &name)?),
                ValueKind::Int32 => columns.ints.push(values::<Int32Type>(&array, &name)?),
            }
            columns.layout.extra.push(column);
        }
        for (name, array) in session_columns {
            let column = session_column(&name).map_err(value_error)?;
            columns
                .sessions
                .push(values::<Int32Type>(&make_array(array.0), &name)?);
            columns.layout.session_columns.push(column);
        }
        if let Some(array) = features {
            if feature_width == 0 || feature_width > MAX_FEATURES {
                return Err(PyValueError::new_err(format!(
                    "invalid feature_width {feature_width}: expected 1 to {MAX_FEATURES}"
                )));
            }
            columns.features = values::<Float32Type>(&make_array(array.0), "features")?;
            columns.layout.features = feature_width;
        }
        Ok(columns)
    }
}

/// Returns the names of the Baidu behaviour columns a reader can add, in the order of a line.
#[pyfunction]
fn behaviour_columns() -> Vec<&'static str> {
    behaviour_names()
}

/// Pads columnar sessions into batches; returns the batches, the counters and the slots per row.
#[pyfunction]
#[pyo3(signature = (
    vocabulary, query, offsets, document, position, click, *, positions = Some(10),
    batch_size = 1024, drop_sessions_without_clicks = false, min_results = 1,
    min_sessions_per_query = 1, extra = Vec::new(), session_columns = Vec::new(),
    features = None, feature_width = 0, query_keys = None, document_keys = None
))]
#[allow(clippy::too_many_arguments)]
fn batch_columns<'py>(
    py: Python<'py>,
    vocabulary: PyRef<'_, PyVocabulary>,
    query: PyArrowType<ArrayData>,
    offsets: PyArrowType<ArrayData>,
    document: PyArrowType<ArrayData>,
    position: PyArrowType<ArrayData>,
    click: PyArrowType<ArrayData>,
    positions: Option<i64>,
    batch_size: i64,
    drop_sessions_without_clicks: bool,
    min_results: i64,
    min_sessions_per_query: i64,
    extra: Vec<(String, PyArrowType<ArrayData>)>,
    session_columns: Vec<(String, PyArrowType<ArrayData>)>,
    features: Option<PyArrowType<ArrayData>>,
    feature_width: usize,
    query_keys: Option<PyArrowType<ArrayData>>,
    document_keys: Option<PyArrowType<ArrayData>>,
) -> PyResult<(Bound<'py, PyList>, Bound<'py, PyDict>, usize)> {
    let optional = OptionalColumns::new(extra, session_columns, features, feature_width)?;
    let keys = match (query_keys, document_keys) {
        (Some(query), Some(document)) => Some((
            large_binary(query, "query_keys")?,
            large_binary(document, "document_keys")?,
        )),
        (None, None) => None,
        _ => {
            return Err(PyValueError::new_err(
                "query_keys and document_keys go together: pass both or neither",
            ))
        }
    };
    let query = values::<UInt64Type>(&make_array(query.0), "query")?;
    let offsets = values::<Int64Type>(&make_array(offsets.0), "offsets")?;
    let document = values::<UInt64Type>(&make_array(document.0), "document")?;
    let position = values::<Int32Type>(&make_array(position.0), "position")?;
    let click = values::<UInt8Type>(&make_array(click.0), "click")?;
    let shared = vocabulary.inner.clone();
    let run = || {
        let options = ReaderOptions::new(
            positions,
            batch_size,
            "strict",
            drop_sessions_without_clicks,
        )?
        .with_min_results(min_results)?
        .with_min_sessions_per_query(min_sessions_per_query)?;
        let floats: Vec<&[f32]> = optional.floats.iter().map(Vec::as_slice).collect();
        let ints: Vec<&[i32]> = optional.ints.iter().map(Vec::as_slice).collect();
        let session_ints: Vec<&[i32]> = optional.sessions.iter().map(Vec::as_slice).collect();
        let sessions = ColumnarSessions {
            query: &query,
            offsets: &offsets,
            document: &document,
            position: &position,
            click: &click,
            float_columns: &floats,
            int_columns: &ints,
            session_columns: &session_ints,
            features: &optional.features,
            keys: keys.as_ref().map(|(query, document)| (query, document)),
        };
        batch_columnar_sessions(&sessions, &optional.layout, &mut lock(&shared), &options)
    };
    let result = py.detach(run).map_err(|error| to_py_err(py, error))?;
    let batches = PyList::empty(py);
    for batch in &result.batches {
        batches.append(batch.to_pyarrow(py)?)?;
    }
    Ok((
        batches,
        counters_dict(py, result.stats.entries())?,
        result.positions,
    ))
}

#[pymodule]
fn _native(module: &Bound<'_, PyModule>) -> PyResult<()> {
    let py = module.py();
    module.add("ClickjaxError", py.get_type::<ClickjaxError>())?;
    module.add("ParseError", py.get_type::<ParseError>())?;
    module.add("CorruptInputError", py.get_type::<CorruptInputError>())?;
    module.add_class::<PyVocabulary>()?;
    module.add_class::<PyBatchReader>()?;
    module.add_function(wrap_pyfunction!(read_labels, module)?)?;
    module.add_function(wrap_pyfunction!(fingerprint, module)?)?;
    module.add_function(wrap_pyfunction!(key_text, module)?)?;
    module.add_function(wrap_pyfunction!(gzip_decompressed_size, module)?)?;
    module.add_function(wrap_pyfunction!(batch_columns, module)?)?;
    module.add_function(wrap_pyfunction!(behaviour_columns, module)?)?;
    Ok(())
}

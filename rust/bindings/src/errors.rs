//! Python exception classes of `clickjax._native` and the mapping from core errors to them.
//!
//! Parse and corrupt-input errors become `ParseError` and `CorruptInputError` with the error's
//! fields as attributes, so that Python code can read the file, line and field without parsing
//! the message. Missing files raise `FileNotFoundError` and other I/O failures `OSError`, both
//! with the path as `filename`; invalid options raise `ValueError`.

use std::io;

use clickjax_core::Error;
use pyo3::create_exception;
use pyo3::exceptions::{
    PyBaseException, PyException, PyFileNotFoundError, PyOSError, PyValueError,
};
use pyo3::prelude::*;

create_exception!(
    clickjax._native,
    ClickjaxError,
    PyException,
    "Base class of the errors raised by the clickjax readers."
);
create_exception!(
    clickjax._native,
    ParseError,
    ClickjaxError,
    "A malformed line or field in a click log; attributes: path, lineno, field, text."
);
create_exception!(
    clickjax._native,
    CorruptInputError,
    ClickjaxError,
    "A truncated or corrupt gzip file; attributes: path, offset, lineno."
);

/// POSIX errno of a missing file, used for `FileNotFoundError.errno`.
const ENOENT: i32 = 2;

/// Converts a core error into the matching Python exception.
pub fn to_py_err(py: Python<'_>, error: Error) -> PyErr {
    let message = error.to_string();
    match error {
        Error::Parse(parse) => with_attributes(py, ParseError::new_err(message), |exception| {
            exception.setattr("path", parse.path.as_os_str())?;
            exception.setattr("lineno", parse.lineno)?;
            exception.setattr("field", parse.field.name())?;
            exception.setattr("text", &parse.text)
        }),
        Error::CorruptInput {
            path,
            offset,
            lineno,
            ..
        } => with_attributes(py, CorruptInputError::new_err(message), |exception| {
            exception.setattr("path", path.as_os_str())?;
            exception.setattr("offset", offset)?;
            exception.setattr("lineno", lineno)
        }),
        // OSError(errno, strerror, filename) picks the subclass for the errno, as Python does.
        Error::NotFound { path } => PyFileNotFoundError::new_err((
            ENOENT,
            "No such file or directory",
            path.into_os_string(),
        )),
        Error::Io { path, source } => match source.raw_os_error() {
            Some(errno) => {
                PyOSError::new_err((errno, os_error_text(&source), path.into_os_string()))
            }
            None => PyOSError::new_err(message),
        },
        Error::InvalidOption { .. }
        | Error::InvalidColumn { .. }
        | Error::InvalidVocabulary { .. } => PyValueError::new_err(message),
        Error::VocabularyFull { .. } | Error::Arrow(_) => ClickjaxError::new_err(message),
    }
}

/// Returns the system's description of an OS error without Rust's " (os error N)" suffix.
fn os_error_text(error: &io::Error) -> String {
    let text = error.to_string();
    match text.rfind(" (os error ") {
        Some(suffix) => text[..suffix].to_string(),
        None => text,
    }
}

/// Sets attributes on the exception instance; if that fails, the failure is raised instead.
fn with_attributes(
    py: Python<'_>,
    exception: PyErr,
    set: impl FnOnce(&Bound<'_, PyBaseException>) -> PyResult<()>,
) -> PyErr {
    match set(exception.value(py)) {
        Ok(()) => exception,
        Err(failure) => failure,
    }
}

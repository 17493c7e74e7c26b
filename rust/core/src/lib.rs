//! Parses search-engine click logs into padded Arrow record batches for click models.
//!
//! A [`BatchReader`] reads Baidu-ULTR (click logs and annotation files), Yandex, WSCD or
//! ClickModels log files, plain or gzip-compressed, and yields one row per search session with `P`
//! result slots. A row has dense query, document and
//! query-document ids from a shared [`Vocabulary`], the displayed positions, the clicks, and a
//! mask of real results; the [`batch`] module describes the columns. This crate has no Python
//! dependency, and the bindings crate exposes it as `clickjax._native`.
//!
//! ```no_run
//! use std::sync::{Arc, Mutex};
//! use clickjax_core::{BatchReader, Format, ReaderOptions, Vocabulary};
//!
//! let vocabulary = Arc::new(Mutex::new(Vocabulary::new()));
//! let paths = vec!["trainSample".into()];
//! let reader = BatchReader::new(Format::Wscd, paths, vocabulary, ReaderOptions::default())?;
//! for batch in reader {
//!     let batch = batch?;
//!     println!("{} sessions", batch.num_rows());
//! }
//! # Ok::<(), clickjax_core::Error>(())
//! ```

#![forbid(unsafe_code)]

pub mod annotation;
pub mod baidu;
pub mod batch;
pub mod behaviour;
mod block;
pub mod clickmodels;
pub mod columnar;
pub mod error;
pub mod fields;
pub mod input;
pub mod labels;
pub mod options;
mod pipeline;
pub mod reader;
pub mod session;
pub mod stats;
pub mod vocabulary;
pub mod wscd;
pub mod yandex;

#[cfg(test)]
mod test_files;

pub use batch::{batch_schema, BatchBuilder, BatchLayout};
pub use error::{Error, ErrorPolicy, Field, ParseError, Result};
pub use labels::{read_relevance_labels, LabelStats, RelevanceLabels};
pub use options::{DocumentKey, Format, QueryKey, ReaderOptions};
pub use reader::{BatchReader, SharedVocabulary};
pub use stats::Stats;
pub use vocabulary::{IdOrder, Vocabulary};

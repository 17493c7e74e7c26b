//! Log formats and the checked options of a batch reader.

use std::str::FromStr;
use std::sync::Arc;

use crate::batch::BatchLayout;
use crate::behaviour::{behaviour_column, behaviour_names, BehaviourColumn, ValueKind};
use crate::error::{invalid_choice, Error, ErrorPolicy, Result};

/// Largest number of positions per row.
pub const MAX_POSITIONS: usize = 1000;

/// Largest number of rows per batch.
pub const MAX_BATCH_SIZE: usize = 1 << 24;

/// Log formats that the reader parses.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum Format {
    /// Baidu-ULTR raw training sessions.
    Baidu,
    /// Baidu-ULTR expert annotation file and the WSDM Cup test files.
    BaiduAnnotation,
    /// Yandex Relevance Prediction Challenge click log.
    Yandex,
    /// The WSCD sample format of PyClick's examples.
    Wscd,
    /// ClickModels TSV, with JSON lists or JSON objects.
    ClickModels,
}

impl Format {
    /// Names accepted by [`Format::from_str`].
    pub const NAMES: [&'static str; 5] =
        ["baidu", "baidu-annotation", "yandex", "wscd", "clickmodels"];

    pub fn name(self) -> &'static str {
        match self {
            Format::Baidu => "baidu",
            Format::BaiduAnnotation => "baidu-annotation",
            Format::Yandex => "yandex",
            Format::Wscd => "wscd",
            Format::ClickModels => "clickmodels",
        }
    }
}

impl FromStr for Format {
    type Err = Error;

    fn from_str(name: &str) -> Result<Self> {
        match name {
            "baidu" => Ok(Format::Baidu),
            "baidu-annotation" => Ok(Format::BaiduAnnotation),
            "yandex" => Ok(Format::Yandex),
            "wscd" => Ok(Format::Wscd),
            "clickmodels" => Ok(Format::ClickModels),
            _ => Err(invalid_choice("format", name, &Format::NAMES)),
        }
    }
}

/// Key that identifies a document.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum DocumentKey {
    /// The URL MD5 (Baidu) or URL id (other formats).
    Url,
    /// The title and abstract token fields, joined by a 0x00 byte. Annotation files have no URL,
    /// so joining click logs with them needs this key.
    Text,
}

impl FromStr for DocumentKey {
    type Err = Error;

    fn from_str(name: &str) -> Result<Self> {
        match name {
            "url" => Ok(DocumentKey::Url),
            "text" => Ok(DocumentKey::Text),
            _ => Err(invalid_choice("document_key", name, &["url", "text"])),
        }
    }
}

/// Key that identifies a Yandex query.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum QueryKey {
    /// The query id alone.
    Query,
    /// The query id and the region id, keyed as the text `QUERYID_REGIONID` like WSCD keys.
    QueryRegion,
}

impl FromStr for QueryKey {
    type Err = Error;

    fn from_str(name: &str) -> Result<Self> {
        match name {
            "query" => Ok(QueryKey::Query),
            "query_region" => Ok(QueryKey::QueryRegion),
            _ => Err(invalid_choice(
                "query_key",
                name,
                &["query", "query_region"],
            )),
        }
    }
}

/// Name of the int32 `[batch]` column with the search-frequency bucket (0 to 9) of an
/// annotated query.
pub const FREQUENCY_BUCKET_COLUMN: &str = "frequency_bucket";

/// A column beyond the batch contract, `[batch, positions]`.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub struct ExtraColumn {
    pub name: &'static str,
    pub kind: ValueKind,
}

/// Format-specific settings that a parser needs, resolved from the reader options.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct ParserConfig {
    pub document_key: DocumentKey,
    pub query_key: QueryKey,
    /// Baidu behaviour columns in the order requested.
    pub behaviour: Arc<[BehaviourColumn]>,
    /// Whether parsers fill [`Session::keys`](crate::session::Session::keys) with key texts.
    /// The reader sets it when its vocabulary records keys and is open.
    pub keys: bool,
}

impl ParserConfig {
    /// Optional columns of a batch: the behaviour columns as requested, or the label and the
    /// frequency bucket of an annotation file.
    pub fn layout(&self, format: Format) -> BatchLayout {
        let mut layout = BatchLayout::with_extra(self.extra_columns(format));
        if format == Format::BaiduAnnotation {
            layout.session_columns.push(FREQUENCY_BUCKET_COLUMN);
        }
        layout
    }

    /// Extra `[batch, positions]` columns of a batch in their order: the behaviour columns as
    /// requested, or the label of an annotation file.
    pub fn extra_columns(&self, format: Format) -> Vec<ExtraColumn> {
        if format == Format::BaiduAnnotation {
            return vec![ExtraColumn {
                name: "label",
                kind: ValueKind::Int32,
            }];
        }
        self.behaviour
            .iter()
            .map(|column| ExtraColumn {
                name: column.name(),
                kind: column.kind,
            })
            .collect()
    }
}

/// Checked options of a [`BatchReader`](crate::BatchReader).
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct ReaderOptions {
    /// Slots per row, P; None pads every row to the longest session in the input, found by a
    /// first pass over the files.
    pub positions: Option<usize>,
    /// Rows per batch; the last batch can be shorter.
    pub batch_size: usize,
    pub on_error: ErrorPolicy,
    pub drop_sessions_without_clicks: bool,
    /// Sessions with fewer results than this, after truncation to P, are dropped.
    pub min_results: usize,
    /// Sessions of a query with fewer sessions than this are dropped. Above 1 the reader counts
    /// sessions per query in a first pass over the files.
    pub min_sessions_per_query: u64,
    /// None takes the format's default: the URL, or the text for annotation files.
    pub document_key: Option<DocumentKey>,
    /// None takes the format's default; only Yandex logs have a choice.
    pub query_key: Option<QueryKey>,
    /// Baidu behaviour columns to emit, in this order.
    pub behaviour: Vec<BehaviourColumn>,
    /// Worker threads of the reader, decompression included: files parsed at once, up to this
    /// many, and the rest decompress gzip files being parsed. The calling thread is not counted.
    pub threads: usize,
    /// Bytes of finished rows that the worker of a file may hold before the reader reaches that
    /// file. At least one block of rows is always allowed. Peak memory grows by up to this much
    /// per worker.
    pub lookahead_bytes: usize,
}

impl ReaderOptions {
    /// Checks raw option values as a caller passes them.
    pub fn new(
        positions: Option<i64>,
        batch_size: i64,
        on_error: &str,
        drop_sessions_without_clicks: bool,
    ) -> Result<Self> {
        let positions = match positions {
            Some(positions) => Some(checked_count("positions", positions, MAX_POSITIONS)?),
            None => None,
        };
        Ok(ReaderOptions {
            positions,
            batch_size: checked_count("batch_size", batch_size, MAX_BATCH_SIZE)?,
            on_error: on_error.parse()?,
            drop_sessions_without_clicks,
            ..ReaderOptions::default()
        })
    }

    /// Sets `min_results`, from 1 to [`MAX_POSITIONS`].
    pub fn with_min_results(mut self, min_results: i64) -> Result<Self> {
        self.min_results = checked_count("min_results", min_results, MAX_POSITIONS)?;
        Ok(self)
    }

    /// Sets `min_sessions_per_query`, from 1 to `u32::MAX`.
    pub fn with_min_sessions_per_query(mut self, count: i64) -> Result<Self> {
        let max = u32::MAX as usize;
        self.min_sessions_per_query = checked_count("min_sessions_per_query", count, max)? as u64;
        Ok(self)
    }

    /// Sets the number of files parsed at once, from 1 to [`MAX_THREADS`]; None takes the number
    /// of cores available to the process.
    pub fn with_threads(mut self, threads: Option<i64>) -> Result<Self> {
        self.threads = match threads {
            Some(threads) => checked_count("threads", threads, MAX_THREADS)?,
            None => available_cores(),
        };
        Ok(self)
    }

    /// Sets the lookahead budget per file in bytes, from 1 to [`MAX_LOOKAHEAD_BYTES`]; None
    /// takes [`DEFAULT_LOOKAHEAD_BYTES`].
    pub fn with_lookahead_bytes(mut self, bytes: Option<i64>) -> Result<Self> {
        self.lookahead_bytes = match bytes {
            Some(bytes) => checked_count("lookahead_bytes", bytes, MAX_LOOKAHEAD_BYTES)?,
            None => DEFAULT_LOOKAHEAD_BYTES,
        };
        Ok(self)
    }

    /// Sets the document key by name, `"url"` or `"text"`.
    pub fn with_document_key(mut self, name: &str) -> Result<Self> {
        self.document_key = Some(name.parse()?);
        Ok(self)
    }

    /// Sets the query key by name, `"query"` or `"query_region"`.
    pub fn with_query_key(mut self, name: &str) -> Result<Self> {
        self.query_key = Some(name.parse()?);
        Ok(self)
    }

    /// Selects Baidu behaviour columns by name; each name at most once.
    pub fn with_behaviour<S: AsRef<str>>(mut self, names: &[S]) -> Result<Self> {
        let mut columns: Vec<BehaviourColumn> = Vec::with_capacity(names.len());
        for name in names {
            let name = name.as_ref();
            let column = behaviour_column(name)
                .ok_or_else(|| invalid_choice("behaviour column", name, &behaviour_names()))?;
            if columns.contains(&column) {
                return Err(Error::InvalidOption {
                    name: "behaviour column",
                    value: format!("{name:?}"),
                    allowed: "each column at most once".to_string(),
                });
            }
            columns.push(column);
        }
        self.behaviour = columns;
        Ok(self)
    }

    /// Checks the options against a format and resolves the format's defaults.
    pub fn parser_config(&self, format: Format) -> Result<ParserConfig> {
        if !self.behaviour.is_empty() && format != Format::Baidu {
            return Err(Error::InvalidOption {
                name: "behaviour",
                value: format!("{:?}", self.behaviour_names()),
                allowed: format!(
                    "no behaviour columns for format {:?}; only \"baidu\" and \"hf-baidu\" logs have them",
                    format.name()
                ),
            });
        }

        let document_key = match (format, self.document_key) {
            (Format::BaiduAnnotation, None | Some(DocumentKey::Text)) => DocumentKey::Text,
            (Format::BaiduAnnotation, Some(DocumentKey::Url)) => {
                return Err(unsupported_key(
                    "document_key",
                    "url",
                    format,
                    "\"text\" (annotation files have no URL)",
                ))
            }
            (Format::Baidu, key) => key.unwrap_or(DocumentKey::Url),
            (_, None | Some(DocumentKey::Url)) => DocumentKey::Url,
            (_, Some(DocumentKey::Text)) => {
                return Err(unsupported_key(
                    "document_key",
                    "text",
                    format,
                    "\"url\" (only Baidu logs have title and abstract text)",
                ))
            }
        };

        let query_key = match (format, self.query_key) {
            (Format::Yandex, key) => key.unwrap_or(QueryKey::QueryRegion),
            (_, None) => QueryKey::QueryRegion,
            (_, Some(key)) => {
                let name = match key {
                    QueryKey::Query => "query",
                    QueryKey::QueryRegion => "query_region",
                };
                return Err(unsupported_key(
                    "query_key",
                    name,
                    format,
                    "no query_key: it applies to \"yandex\" logs only",
                ));
            }
        };

        Ok(ParserConfig {
            document_key,
            query_key,
            behaviour: self.behaviour.clone().into(),
            keys: false,
        })
    }

    fn behaviour_names(&self) -> Vec<&'static str> {
        self.behaviour.iter().map(BehaviourColumn::name).collect()
    }
}

impl Default for ReaderOptions {
    fn default() -> Self {
        ReaderOptions {
            positions: Some(10),
            batch_size: 1024,
            on_error: ErrorPolicy::Strict,
            drop_sessions_without_clicks: false,
            min_results: 1,
            min_sessions_per_query: 1,
            document_key: None,
            query_key: None,
            behaviour: Vec::new(),
            threads: available_cores(),
            lookahead_bytes: DEFAULT_LOOKAHEAD_BYTES,
        }
    }
}

/// Default of [`ReaderOptions::lookahead_bytes`]: 64 MiB, about 300,000 rows of ten results
/// without optional columns.
pub const DEFAULT_LOOKAHEAD_BYTES: usize = 64 << 20;

/// Maximum of [`ReaderOptions::lookahead_bytes`]: 1 TiB.
pub const MAX_LOOKAHEAD_BYTES: usize = 1 << 40;

/// Maximum of the `threads` option.
pub const MAX_THREADS: usize = 256;

/// Returns the number of cores the process may use, or 1 when the system does not report it.
pub fn available_cores() -> usize {
    std::thread::available_parallelism().map_or(1, usize::from)
}

fn unsupported_key(name: &'static str, value: &str, format: Format, allowed: &str) -> Error {
    Error::InvalidOption {
        name,
        value: format!("{value:?} for format {:?}", format.name()),
        allowed: allowed.to_string(),
    }
}

fn checked_count(name: &'static str, value: i64, max: usize) -> Result<usize> {
    match usize::try_from(value) {
        Ok(count) if (1..=max).contains(&count) => Ok(count),
        _ => Err(Error::InvalidOption {
            name,
            value: value.to_string(),
            allowed: format!("an integer from 1 to {max}"),
        }),
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn message(result: Result<impl std::fmt::Debug>) -> String {
        result.unwrap_err().to_string()
    }

    #[test]
    fn format_names_round_trip() {
        for name in Format::NAMES {
            assert_eq!(name.parse::<Format>().unwrap().name(), name);
        }
        let text = message("csv".parse::<Format>());
        assert!(
            text.contains("baidu-annotation") && text.contains("clickmodels"),
            "{text}"
        );
    }

    #[test]
    fn lookahead_bytes_checked() {
        let options = ReaderOptions::default();
        assert_eq!(options.lookahead_bytes, 64 * 1024 * 1024);
        let small = options.clone().with_lookahead_bytes(Some(1)).unwrap();
        assert_eq!(small.lookahead_bytes, 1);
        let default = small.with_lookahead_bytes(None).unwrap();
        assert_eq!(default.lookahead_bytes, DEFAULT_LOOKAHEAD_BYTES);
        let error = message(options.clone().with_lookahead_bytes(Some(0)));
        assert!(error.contains("lookahead_bytes"), "{error}");
        assert!(error.contains("from 1 to 1099511627776"), "{error}");
        let error = message(options.with_lookahead_bytes(Some(-5)));
        assert!(error.contains("-5"), "{error}");
    }

    #[test]
    fn defaults_resolved_per_format() {
        let options = ReaderOptions::default();
        let annotation = options.parser_config(Format::BaiduAnnotation).unwrap();
        assert_eq!(annotation.document_key, DocumentKey::Text);
        let yandex = options.parser_config(Format::Yandex).unwrap();
        assert_eq!(yandex.query_key, QueryKey::QueryRegion);
        let baidu = options.parser_config(Format::Baidu).unwrap();
        assert_eq!(baidu.document_key, DocumentKey::Url);
        assert!(baidu.extra_columns(Format::Baidu).is_empty());
        assert_eq!(
            annotation.extra_columns(Format::BaiduAnnotation)[0].name,
            "label"
        );
        let layout = annotation.layout(Format::BaiduAnnotation);
        assert_eq!(layout.session_columns, vec![FREQUENCY_BUCKET_COLUMN]);
        assert_eq!(layout.features, 0);
        assert!(baidu.layout(Format::Baidu).session_columns.is_empty());
    }

    #[test]
    fn keys_rejected_where_format_lacks_them() {
        let text = ReaderOptions::default().with_document_key("text").unwrap();
        assert!(text.parser_config(Format::Baidu).is_ok());
        let error = message(text.parser_config(Format::Wscd));
        assert!(
            error.contains("document_key") && error.contains("wscd"),
            "{error}"
        );

        let url = ReaderOptions::default().with_document_key("url").unwrap();
        assert!(message(url.parser_config(Format::BaiduAnnotation)).contains("no URL"));

        let query = ReaderOptions::default().with_query_key("query").unwrap();
        assert_eq!(
            query.parser_config(Format::Yandex).unwrap().query_key,
            QueryKey::Query
        );
        assert!(message(query.parser_config(Format::ClickModels)).contains("yandex"));
        assert!(message(ReaderOptions::default().with_query_key("region")).contains("query_region"));
    }

    #[test]
    fn behaviour_names_checked() {
        let options = ReaderOptions::default()
            .with_behaviour(&["dwelling_time", "multimedia_type"])
            .unwrap();
        let config = options.parser_config(Format::Baidu).unwrap();
        let columns = config.extra_columns(Format::Baidu);
        assert_eq!(columns[0].name, "dwelling_time");
        assert_eq!(columns[0].kind, ValueKind::Float32);
        assert_eq!(columns[1].kind, ValueKind::Int32);
        assert!(message(options.parser_config(Format::Wscd)).contains("only \"baidu\""));

        let unknown = message(ReaderOptions::default().with_behaviour(&["dwell"]));
        assert!(
            unknown.contains("dwell") && unknown.contains("dwelling_time"),
            "{unknown}"
        );
        let twice = message(ReaderOptions::default().with_behaviour(&["skip", "skip"]));
        assert!(twice.contains("at most once"), "{twice}");
    }

    #[test]
    fn counts_checked() {
        assert!(message(ReaderOptions::default().with_min_results(0)).contains("min_results"));
        assert!(ReaderOptions::default().with_min_results(1000).is_ok());
        let error = message(ReaderOptions::default().with_min_sessions_per_query(-1));
        assert!(error.contains("min_sessions_per_query"), "{error}");
        let none = ReaderOptions::new(None, 5, "skip", false).unwrap();
        assert_eq!(none.positions, None);
    }
}

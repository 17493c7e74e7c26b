//! The Baidu-ULTR behaviour signals that a reader can emit as extra `[batch, positions]` columns.
//!
//! Names are the snake_case forms of the dataset README's column names. The README names two
//! columns "Displayed Count": field 13 is `displayed_count` and field 26 (internally
//! `full_view_count`) is `full_displayed_count`. The undisclosed fields, named `-` in the README
//! (6, 7, 22, 27 and 31), cannot be selected. A `-` in any selected column is a missing
//! value: NaN in a float column, -1 in `multimedia_type`.

use crate::error::Field;
use crate::fields::{parse_f32, parse_u32};

/// Arrow type of an extra column and its value for `-` and for padding slots.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum ValueKind {
    /// Float32; NaN for a missing value and in padding slots.
    Float32,
    /// Int32; -1 for a missing value and in padding slots.
    Int32,
}

/// One selectable behaviour column of a Baidu document line.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub struct BehaviourColumn {
    /// Field of the document line, 0-based.
    pub index: usize,
    pub field: Field,
    pub kind: ValueKind,
}

impl BehaviourColumn {
    /// Column name in the batch, the same as the field name in errors.
    pub fn name(&self) -> &'static str {
        self.field.name()
    }
}

const fn float(index: usize, field: Field) -> BehaviourColumn {
    BehaviourColumn {
        index,
        field,
        kind: ValueKind::Float32,
    }
}

/// Every selectable column, in the order of the document line.
pub const BEHAVIOUR_COLUMNS: [BehaviourColumn; 22] = [
    BehaviourColumn {
        index: 4,
        field: Field::MultimediaType,
        kind: ValueKind::Int32,
    },
    float(8, Field::Skip),
    float(9, Field::SerpHeight),
    float(10, Field::DisplayedTime),
    float(11, Field::DisplayedTimeMiddle),
    float(12, Field::FirstClick),
    float(13, Field::DisplayedCount),
    float(14, Field::SerpMaxShowHeight),
    float(15, Field::SlipoffCountAfterClick),
    float(16, Field::DwellingTime),
    float(17, Field::DisplayedTimeTop),
    float(18, Field::SerpToTop),
    float(19, Field::DisplayedCountTop),
    float(20, Field::DisplayedCountBottom),
    float(21, Field::SlipoffCount),
    float(23, Field::FinalClick),
    float(24, Field::DisplayedTimeBottom),
    float(25, Field::ClickCount),
    float(26, Field::FullDisplayedCount),
    float(28, Field::LastClick),
    float(29, Field::ReverseDisplayCount),
    float(30, Field::DisplayedCountMiddle),
];

/// Finds a behaviour column by name.
pub fn behaviour_column(name: &str) -> Option<BehaviourColumn> {
    BEHAVIOUR_COLUMNS
        .iter()
        .find(|column| column.name() == name)
        .copied()
}

/// Names of every behaviour column, for error messages.
pub fn behaviour_names() -> Vec<&'static str> {
    BEHAVIOUR_COLUMNS
        .iter()
        .map(BehaviourColumn::name)
        .collect()
}

/// Parses a float behaviour value: `-` is NaN, anything else a finite decimal number.
pub fn parse_float_value(text: &[u8]) -> Option<f32> {
    match text {
        b"-" => Some(f32::NAN),
        _ => parse_f32(text),
    }
}

/// Parses an integer behaviour value: `-` is -1, anything else a non-negative int32.
pub fn parse_int_value(text: &[u8]) -> Option<i32> {
    match text {
        b"-" => Some(-1),
        _ => parse_u32(text).and_then(|value| i32::try_from(value).ok()),
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn names_are_unique_and_found() {
        let mut names = behaviour_names();
        names.sort_unstable();
        names.dedup();
        assert_eq!(names.len(), BEHAVIOUR_COLUMNS.len());
        let column = behaviour_column("full_displayed_count").unwrap();
        assert_eq!(column.index, 26);
        assert_eq!(behaviour_column("displayed_count").unwrap().index, 13);
        assert_eq!(behaviour_column("dwelling_time").unwrap().index, 16);
        assert!(behaviour_column("click").is_none());
        assert!(behaviour_column("-").is_none());
    }

    #[test]
    fn undisclosed_fields_not_selectable() {
        for column in BEHAVIOUR_COLUMNS {
            assert!(![6, 7, 22, 27, 31].contains(&column.index));
        }
    }

    #[test]
    fn values_parse_with_missing_sentinels() {
        assert!(parse_float_value(b"-").unwrap().is_nan());
        assert_eq!(parse_float_value(b"2.5"), Some(2.5));
        assert_eq!(parse_float_value(b"x"), None);
        assert_eq!(parse_int_value(b"-"), Some(-1));
        assert_eq!(parse_int_value(b"11"), Some(11));
        assert_eq!(parse_int_value(b"3.0"), None);
        assert_eq!(parse_int_value(b"2147483648"), None);
    }
}

//! The one rule for inputs that must agree: every input of a stage (and every stream of a
//! concatenated IPC input) has the columns the stage reads, with the same types.
//!
//! ```text
//! let schema = common_schema(&[("a.parquet".into(), a), ("b.arrows".into(), b)], None)?;
//! // b.arrows: column `rtt_ms` has type Float32, but a.parquet has Float64; all inputs must share one schema
//! let keys = common_schema(&named, Some(&["src_addr".into(), "event_time".into()]))?;
//! ```
//!
//! - Columns are matched by name, so their order may differ (readers project by name, into
//!   the first input's order); names are case-sensitive, like Arrow's.
//! - Types must be equal, nested types compared whole (`Float32` is not `Float64`, a
//!   dictionary-encoded string is not a string): a stage never casts silently.
//! - Top-level nullability may differ; the common field is nullable if any input's is.
//! - Without a column list every column counts: a column in one input and not in another is an
//!   error both ways, because a stage that reads all columns would drop it or fail later. With a
//!   list (`--columns`, or only key and time), only the listed columns must agree.
//! - Schema metadata is taken from the first input. Keys this project writes (see
//!   [`is_probe_metadata`]) must agree where either side has them; others (pandas, Spark) may
//!   differ, since they describe how a file was written, not what its columns mean.

use std::sync::Arc;

use arrow::datatypes::{DataType, Schema, SchemaRef};

use crate::error::{Error, Result};
use crate::input::column_index;

/// Metadata keys whose values must agree across inputs: those this project writes into the
/// schemas of its outputs (`probe_rows.key`, `probe_rows.time`), which say how the rows are to
/// be read.
pub fn is_probe_metadata(key: &str) -> bool {
    key.starts_with("probe_rows.")
}

/// Check `other` against `first` (see the module rules) for the columns in `columns`, or
/// for all columns when `None`.
pub fn check_agree(
    first: &Schema,
    first_name: &str,
    other: &Schema,
    other_name: &str,
    columns: Option<&[String]>,
) -> Result<()> {
    let rule = if columns.is_some() {
        "all inputs must agree on the columns read"
    } else {
        "all inputs must share one schema"
    };
    let names: Vec<&str> = match columns {
        Some(cols) => cols.iter().map(String::as_str).collect(),
        None => first.fields().iter().map(|f| f.name().as_str()).collect(),
    };
    for name in names {
        let f = first.field(column_index(first, name, first_name)?);
        match other.field_with_name(name) {
            Ok(o) if o.data_type() == f.data_type() => {}
            Ok(o) => {
                // Types that differ only in what their list items are called print alike.
                let hint = if item_names(o.data_type()) != item_names(f.data_type())
                    && unnamed_items(o.data_type()) == unnamed_items(f.data_type())
                {
                    format!(
                        " (list items named {} here, {} there: write the file with items named `item`, e.g. \
                         pyarrow's `use_compliant_nested_type=False`)",
                        item_names(o.data_type()).join(", "),
                        item_names(f.data_type()).join(", ")
                    )
                } else {
                    String::new()
                };
                return Err(Error::data(format!(
                    "{other_name}: column `{name}` has type {}, but {first_name} has {}{hint}; {rule}",
                    o.data_type(),
                    f.data_type()
                )));
            }
            Err(_) => {
                return Err(Error::data(format!("{other_name}: no column `{name}`, which {first_name} has; {rule}")))
            }
        }
    }
    if columns.is_none() {
        if let Some(extra) = other.fields().iter().find(|f| first.field_with_name(f.name()).is_err()) {
            return Err(Error::data(format!("{other_name}: column `{}` is not in {first_name}; {rule}", extra.name())));
        }
    }
    check_probe_metadata(first, first_name, other, other_name)
}

/// The names of a type's list item fields, outermost first, quoted.
fn item_names(t: &DataType) -> Vec<String> {
    match t {
        DataType::List(f) | DataType::LargeList(f) => {
            let mut v = vec![format!("`{}`", f.name())];
            v.extend(item_names(f.data_type()));
            v
        }
        DataType::Struct(fields) => fields.iter().flat_map(|f| item_names(f.data_type())).collect(),
        _ => Vec::new(),
    }
}

/// The type with every list item field named `item`.
fn unnamed_items(t: &DataType) -> DataType {
    match t {
        DataType::List(f) => {
            DataType::List(Arc::new(f.as_ref().clone().with_name("item").with_data_type(unnamed_items(f.data_type()))))
        }
        DataType::LargeList(f) => DataType::LargeList(Arc::new(
            f.as_ref().clone().with_name("item").with_data_type(unnamed_items(f.data_type())),
        )),
        DataType::Struct(fields) => DataType::Struct(
            fields.iter().map(|f| Arc::new(f.as_ref().clone().with_data_type(unnamed_items(f.data_type())))).collect(),
        ),
        other => other.clone(),
    }
}

/// The metadata this project writes must agree (a file grouped by another key or time column
/// must not be mixed in unnoticed).
pub fn check_probe_metadata(first: &Schema, first_name: &str, other: &Schema, other_name: &str) -> Result<()> {
    let keys = first.metadata().keys().chain(other.metadata().keys()).filter(|k| is_probe_metadata(k));
    for key in keys {
        let (a, b) = (first.metadata().get(key), other.metadata().get(key));
        if a != b {
            let show = |v: Option<&String>| v.map(|v| format!("`{v}`")).unwrap_or_else(|| "none".to_string());
            return Err(Error::data(format!(
                "{other_name}: schema metadata `{key}` is {}, but {first_name} has {}; the inputs were made with \
                 different settings, so rerun the stage that made one of them",
                show(b),
                show(a)
            )));
        }
    }
    Ok(())
}

/// Check every input against the first and return the schema they share: the listed columns in
/// that order (all of the first input's columns in its order when `None`), each nullable if any
/// input's is, with the first input's metadata.
pub fn common_schema(inputs: &[(String, SchemaRef)], columns: Option<&[String]>) -> Result<SchemaRef> {
    let Some((first_name, first)) = inputs.first() else {
        return Err(Error::data("no inputs"));
    };
    let fields: Vec<_> = match columns {
        Some(cols) => cols
            .iter()
            .map(|c| Ok(first.field(column_index(first, c, first_name)?).clone()))
            .collect::<Result<Vec<_>>>()?,
        None => first.fields().iter().map(|f| f.as_ref().clone()).collect(),
    };
    let mut nullable: Vec<bool> = fields.iter().map(|f| f.is_nullable()).collect();
    for (name, other) in &inputs[1..] {
        check_agree(first, first_name, other, name, columns)?;
        for (f, n) in fields.iter().zip(nullable.iter_mut()) {
            if other.field_with_name(f.name()).is_ok_and(|o| o.is_nullable()) {
                *n = true;
            }
        }
    }
    let fields: Vec<_> = fields.into_iter().zip(nullable).map(|(f, n)| Arc::new(f.with_nullable(n))).collect();
    Ok(Arc::new(Schema::new_with_metadata(fields, first.metadata().clone())))
}

#[cfg(test)]
mod tests {
    use super::*;
    use arrow::datatypes::{DataType, Field};
    use std::collections::HashMap;

    fn named(name: &str, fields: &[(&str, DataType, bool)]) -> (String, SchemaRef) {
        let s = Schema::new(fields.iter().map(|(n, t, null)| Field::new(*n, t.clone(), *null)).collect::<Vec<_>>());
        (name.to_string(), Arc::new(s))
    }

    fn msg(v: &[(String, SchemaRef)], cols: Option<&[String]>) -> Option<String> {
        common_schema(v, cols).err().map(|e| e.to_string())
    }

    #[test]
    fn nullability_and_order_may_differ() -> Result<()> {
        let a = named("a", &[("k", DataType::Utf8, false), ("v", DataType::Float64, false)]);
        let b = named("b", &[("v", DataType::Float64, true), ("k", DataType::Utf8, false)]);
        let s = common_schema(&[a, b], None)?;
        assert_eq!(s.field(0).name(), "k");
        assert!(!s.field(0).is_nullable());
        assert!(s.field(1).is_nullable());
        Ok(())
    }

    #[test]
    fn names_the_first_differing_input_and_column() {
        let a = named("a.parquet", &[("k", DataType::Utf8, false), ("rtt_ms", DataType::Float64, true)]);
        let same = named("same.arrows", &[("k", DataType::Utf8, false), ("rtt_ms", DataType::Float64, true)]);
        let b = named("b.arrows", &[("k", DataType::Utf8, false), ("rtt_ms", DataType::Float32, true)]);
        let c = named("c.arrows", &[("k", DataType::Utf8, false)]);
        let d = named(
            "d.arrows",
            &[("k", DataType::Utf8, false), ("rtt_ms", DataType::Float64, true), ("ttl", DataType::Int32, true)],
        );
        assert_eq!(
            msg(&[a.clone(), same.clone(), b.clone(), c.clone()], None).as_deref(),
            Some("b.arrows: column `rtt_ms` has type Float32, but a.parquet has Float64; all inputs must share one schema")
        );
        assert_eq!(
            msg(&[a.clone(), c.clone()], None).as_deref(),
            Some("c.arrows: no column `rtt_ms`, which a.parquet has; all inputs must share one schema")
        );
        assert_eq!(
            msg(&[a.clone(), same, d.clone()], None).as_deref(),
            Some("d.arrows: column `ttl` is not in a.parquet; all inputs must share one schema")
        );
        // A list whose items another writer named `element` (pyarrow's default): said so.
        let list = |item: &str| DataType::List(Arc::new(Field::new(item, DataType::Int64, true)));
        let e = msg(
            &[named("a.parquet", &[("l", list("item"), true)]), named("p.parquet", &[("l", list("element"), true)])],
            None,
        )
        .unwrap_or_default();
        assert!(
            e.contains("items named `element` here, `item` there") && e.contains("use_compliant_nested_type"),
            "{e}"
        );
        // With a column list only those columns count.
        let k = ["k".to_string()];
        assert_eq!(msg(&[a.clone(), c, d], Some(&k)), None);
        assert_eq!(
            msg(&[a, b], Some(&["rtt_ms".to_string()])).as_deref(),
            Some("b.arrows: column `rtt_ms` has type Float32, but a.parquet has Float64; all inputs must agree on the columns read")
        );
    }

    #[test]
    fn projected_schema_follows_the_column_list() -> Result<()> {
        let a =
            named("a", &[("k", DataType::Utf8, false), ("v", DataType::Float64, false), ("w", DataType::Int8, true)]);
        let b = named("b", &[("v", DataType::Float64, true), ("k", DataType::Utf8, false)]);
        let s = common_schema(&[a, b], Some(&["v".to_string(), "k".to_string()]))?;
        let names: Vec<&str> = s.fields().iter().map(|f| f.name().as_str()).collect();
        assert_eq!(names, ["v", "k"]);
        assert!(s.field(0).is_nullable());
        Ok(())
    }

    #[test]
    fn probe_metadata_must_agree_other_metadata_may_differ() {
        let with = |pairs: &[(&str, &str)]| {
            let md: HashMap<String, String> = pairs.iter().map(|(k, v)| (k.to_string(), v.to_string())).collect();
            Arc::new(Schema::new_with_metadata(vec![Field::new("k", DataType::Utf8, true)], md))
        };
        let a = ("a".to_string(), with(&[("probe_rows.key", "src_addr"), ("pandas", "1")]));
        let b = ("b".to_string(), with(&[("probe_rows.key", "src_addr"), ("pandas", "2")]));
        let c = ("c".to_string(), with(&[("probe_rows.key", "dst_addr")]));
        let d = ("d".to_string(), with(&[]));
        assert_eq!(msg(&[a.clone(), b], None), None);
        let e = msg(&[a.clone(), c], None).unwrap_or_default();
        assert!(e.starts_with("c: schema metadata `probe_rows.key` is `dst_addr`, but a has `src_addr`"), "{e}");
        let e = msg(&[a, d], None).unwrap_or_default();
        assert!(e.starts_with("d: schema metadata `probe_rows.key` is none, but a has `src_addr`"), "{e}");
    }
}

//! The one schema every input must share, checked before anything is written.
//!
//! ```text
//! let schema = common_schema(&[("a.parquet".into(), a), ("b.arrows".into(), b)])?;
//! // b.arrows: column `rtt_ms` has type Float32, but a.parquet has Float64; all inputs must share one schema
//! ```
//!
//! Same column names and types (nested types compared whole); top-level nullability may differ
//! and the output column is nullable if any input's is; column order may differ and follows
//! the first input (the readers project into that order).

use std::sync::Arc;

use arrow::datatypes::{Schema, SchemaRef};
use probe_core::columns::check_same_types;
use probe_core::{Error, Result};

/// Check every schema against the first (both ways) and return the output schema.
pub fn common_schema(schemas: &[(String, SchemaRef)]) -> Result<SchemaRef> {
    let Some((first_name, first)) = schemas.first() else {
        return Err(Error::data("no inputs"));
    };
    let mut nullable: Vec<bool> = first.fields().iter().map(|f| f.is_nullable()).collect();
    for (name, other) in &schemas[1..] {
        check_same_types(first, first_name, other, name)?;
        if let Some(extra) = other.fields().iter().find(|f| first.field_with_name(f.name()).is_err()) {
            return Err(Error::data(format!(
                "{name}: column `{}` is not in {first_name}; all inputs must share one schema",
                extra.name()
            )));
        }
        for (i, f) in first.fields().iter().enumerate() {
            if other.field_with_name(f.name()).is_ok_and(|o| o.is_nullable()) {
                nullable[i] = true;
            }
        }
    }
    let fields: Vec<_> =
        first.fields().iter().zip(&nullable).map(|(f, &n)| Arc::new(f.as_ref().clone().with_nullable(n))).collect();
    Ok(Arc::new(Schema::new_with_metadata(fields, first.metadata().clone())))
}

#[cfg(test)]
mod tests {
    use super::*;
    use arrow::datatypes::{DataType, Field};

    fn schema(fields: &[(&str, DataType, bool)]) -> (String, SchemaRef) {
        let s = Schema::new(fields.iter().map(|(n, t, null)| Field::new(*n, t.clone(), *null)).collect::<Vec<_>>());
        (String::new(), Arc::new(s))
    }

    fn named(name: &str, s: (String, SchemaRef)) -> (String, SchemaRef) {
        (name.to_string(), s.1)
    }

    #[test]
    fn nullability_and_order_may_differ() -> Result<()> {
        let a = named("a", schema(&[("k", DataType::Utf8, false), ("v", DataType::Float64, false)]));
        let b = named("b", schema(&[("v", DataType::Float64, true), ("k", DataType::Utf8, false)]));
        let s = common_schema(&[a, b])?;
        assert_eq!(s.field(0).name(), "k");
        assert!(!s.field(0).is_nullable());
        assert!(s.field(1).is_nullable());
        Ok(())
    }

    #[test]
    fn names_the_first_differing_input_and_column() {
        let a = named("a.parquet", schema(&[("k", DataType::Utf8, false), ("rtt_ms", DataType::Float64, true)]));
        let same = named("same.arrows", schema(&[("k", DataType::Utf8, false), ("rtt_ms", DataType::Float64, true)]));
        let b = named("b.arrows", schema(&[("k", DataType::Utf8, false), ("rtt_ms", DataType::Float32, true)]));
        let c = named("c.arrows", schema(&[("k", DataType::Utf8, false)]));
        let d = named(
            "d.arrows",
            schema(&[
                ("k", DataType::Utf8, false),
                ("rtt_ms", DataType::Float64, true),
                ("ttl", DataType::Int32, true),
            ]),
        );
        let msg = |v: Vec<(String, SchemaRef)>| common_schema(&v).map(|_| ()).err().map(|e| e.to_string());
        assert_eq!(
            msg(vec![a.clone(), same.clone(), b, c.clone()]).as_deref(),
            Some("b.arrows: column `rtt_ms` has type Float32, but a.parquet has Float64; all inputs must share one schema")
        );
        assert_eq!(
            msg(vec![a.clone(), c]).as_deref(),
            Some("c.arrows: no column `rtt_ms`, which a.parquet has; all inputs must share one schema")
        );
        assert_eq!(
            msg(vec![a, same, d]).as_deref(),
            Some("d.arrows: column `ttl` is not in a.parquet; all inputs must share one schema")
        );
    }
}

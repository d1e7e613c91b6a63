//! Which columns are the key and the time: the one check of the column lists a user gives,
//! and the names `probe-group` records in its output so later stages need not be told again.
//!
//! ```
//! use probe_core::meta::{check_columns, record, resolve_keys, KEY_METADATA};
//! use arrow::datatypes::{DataType, Field, Schema};
//!
//! let keys = vec!["src_addr".to_string(), "dst_port".to_string()];
//! check_columns(&keys, Some("event_time"), None).unwrap();
//! let schema = Schema::new(vec![Field::new("src_addr", DataType::Utf8, true)]);
//! let schema = record(schema, &keys, "event_time");
//! assert_eq!(schema.metadata()[KEY_METADATA], r#"["src_addr","dst_port"]"#);
//! // A later stage given no --key takes the recorded key.
//! assert_eq!(resolve_keys(&[], &schema, "grouped.arrows").unwrap(), keys);
//! ```
//!
//! The names live in the Arrow schema metadata, which Arrow IPC keeps and Parquet keeps too
//! (arrow-rs stores the Arrow schema in the Parquet footer), so they survive every stage:
//!
//! | key | value |
//! |---|---|
//! | `probe_rows.key` | the key column names as a JSON array, in key order: `["src_addr","dst_port"]` |
//! | `probe_rows.time` | the time column name (in probe rows, the time field of `measurements`) |
//!
//! An explicit `--key`/`--time` that disagrees with the recorded names is a usage error (exit
//! 2): the command line contradicts what the input says it is, and taking either side
//! silently would group, split or window by the wrong columns.

use arrow::datatypes::{Metadata, Schema};

use crate::error::{Error, Result};

/// Schema metadata key holding the key column names, a JSON array of strings.
pub const KEY_METADATA: &str = "probe_rows.key";

/// Schema metadata key holding the time column name.
pub const TIME_METADATA: &str = "probe_rows.time";

/// The key used when neither `--key` nor the input's metadata names one.
pub const DEFAULT_KEY: &str = "src_addr";

/// The time column used when neither `--time` nor the input's metadata names one.
pub const DEFAULT_TIME: &str = "event_time";

/// Check the column lists a user gave, before any input is read: no empty or repeated name in
/// `--key` or `--columns`, the time column not in the key, and no key or time column in
/// `--columns` (they are always kept). Every error is a usage error naming the column.
///
/// `keys` may be empty (not given: taken from the input later); `time` is `None` when not
/// given, `columns` when the stage has no `--columns` or it was not given.
pub fn check_columns(keys: &[String], time: Option<&str>, columns: Option<&[String]>) -> Result<()> {
    check_list("--key", keys)?;
    if let Some(t) = time {
        if t.is_empty() {
            return Err(Error::usage("--time: the column name is empty"));
        }
        if keys.iter().any(|k| k == t) {
            return Err(Error::usage(format!(
                "`{t}` is given as both a key column (--key) and the time column (--time); a column can be only one"
            )));
        }
    }
    if let Some(cols) = columns {
        check_list("--columns", cols)?;
        if let Some(c) = cols.iter().find(|c| keys.contains(c) || Some(c.as_str()) == time) {
            return Err(Error::usage(format!(
                "--columns: `{c}` is the key or time column, which is always kept; leave it out"
            )));
        }
    }
    Ok(())
}

fn check_list(option: &str, names: &[String]) -> Result<()> {
    if names.iter().any(String::is_empty) {
        return Err(Error::usage(format!("{option}: a column name is empty; check the commas")));
    }
    if let Some((_, dup)) = names.iter().enumerate().find(|(i, n)| names[..*i].contains(n)) {
        return Err(Error::usage(format!("{option}: column `{dup}` is given more than once")));
    }
    Ok(())
}

/// `schema` with the key and time column names recorded in its metadata (other metadata kept).
pub fn record(schema: Schema, keys: &[String], time: &str) -> Schema {
    let mut metadata = schema.metadata().clone();
    let mut json = String::from("[");
    for (i, k) in keys.iter().enumerate() {
        if i > 0 {
            json.push(',');
        }
        // serde_json's string escaping: names may hold quotes, commas or anything else.
        json.push_str(&serde_json::Value::from(k.as_str()).to_string());
    }
    json.push(']');
    metadata.insert(KEY_METADATA.to_string(), json);
    metadata.insert(TIME_METADATA.to_string(), time.to_string());
    schema.with_metadata(metadata)
}

/// Only the `probe_rows.*` entries of `metadata`: what a stage carries from its input to its
/// output (other entries, such as a pandas schema, describe the input file, not the output).
pub fn carried(metadata: &Metadata) -> Metadata {
    let mut kept = metadata.clone();
    kept.retain(|k, _| k.starts_with("probe_rows."));
    kept
}

/// The key column names recorded in `schema`, if any.
pub fn recorded_keys(schema: &Schema, file: &str) -> Result<Option<Vec<String>>> {
    let Some(text) = schema.metadata().get(KEY_METADATA) else {
        return Ok(None);
    };
    match serde_json::from_str::<Vec<String>>(text) {
        Ok(keys) if !keys.is_empty() && !keys.iter().any(String::is_empty) => Ok(Some(keys)),
        _ => Err(Error::data(format!(
            "{file}: schema metadata `{KEY_METADATA}` is `{text}`, not a JSON array of column names; \
             re-create the file with probe-group, or remove that metadata entry"
        ))),
    }
}

/// The time column name recorded in `schema`, if any.
pub fn recorded_time(schema: &Schema) -> Option<&str> {
    schema.metadata().get(TIME_METADATA).map(String::as_str).filter(|t| !t.is_empty())
}

/// The key columns to use: `--key` when given (it must match a recorded key), else the key
/// recorded in the input's schema metadata, else [`DEFAULT_KEY`].
pub fn resolve_keys(given: &[String], schema: &Schema, file: &str) -> Result<Vec<String>> {
    match (given.is_empty(), recorded_keys(schema, file)?) {
        (true, Some(recorded)) => Ok(recorded),
        (true, None) => Ok(vec![DEFAULT_KEY.to_string()]),
        (false, Some(recorded)) if recorded != given => Err(Error::usage(format!(
            "--key {} disagrees with the key {} that {file} records (schema metadata `{KEY_METADATA}`); \
             leave --key out to use the recorded key",
            given.join(","),
            recorded.join(","),
        ))),
        (false, _) => Ok(given.to_vec()),
    }
}

/// The time column to use: `--time` when given (it must match a recorded one), else the one
/// recorded in the input's schema metadata, else [`DEFAULT_TIME`].
pub fn resolve_time(given: Option<&str>, schema: &Schema, file: &str) -> Result<String> {
    match (given, recorded_time(schema)) {
        (None, Some(recorded)) => Ok(recorded.to_string()),
        (None, None) => Ok(DEFAULT_TIME.to_string()),
        (Some(given), Some(recorded)) if given != recorded => Err(Error::usage(format!(
            "--time {given} disagrees with the time column `{recorded}` that {file} records (schema metadata \
             `{TIME_METADATA}`); leave --time out to use the recorded one"
        ))),
        (Some(given), _) => Ok(given.to_string()),
    }
}

#[cfg(test)]
#[allow(clippy::unwrap_used)] // tests: a panic is the failure report
mod tests {
    use super::*;
    use arrow::datatypes::{DataType, Field};

    fn names(s: &[&str]) -> Vec<String> {
        s.iter().map(|s| s.to_string()).collect()
    }

    #[test]
    fn repeated_and_overlapping_columns_are_usage_errors() {
        let err = |k: &[&str], t: Option<&str>, c: Option<&[&str]>| {
            let c = c.map(names);
            let e = check_columns(&names(k), t, c.as_deref()).unwrap_err();
            assert_eq!(e.code(), 2);
            e.to_string()
        };
        assert!(err(&["a", "a"], None, None).contains("`a` is given more than once"));
        assert!(err(&["a"], None, Some(&["rid", "rid"])).contains("--columns: column `rid`"));
        assert!(err(&["a"], Some("t"), Some(&["a"])).contains("`a` is the key or time column"));
        assert!(err(&["a"], Some("t"), Some(&["t"])).contains("`t` is the key or time column"));
        assert!(err(&["a", "t"], Some("t"), None).contains("both a key column"));
        assert!(err(&["a", ""], None, None).contains("empty"));
        assert!(check_columns(&names(&["a", "b"]), Some("t"), Some(&names(&["c"]))).is_ok());
    }

    #[test]
    fn recorded_names_are_defaults_and_contradictions_are_refused() {
        let plain = Schema::new(vec![Field::new("x", DataType::Utf8, true)]);
        assert_eq!(resolve_keys(&[], &plain, "f").unwrap(), names(&[DEFAULT_KEY]));
        assert_eq!(resolve_time(None, &plain, "f").unwrap(), DEFAULT_TIME);
        assert_eq!(resolve_keys(&names(&["x"]), &plain, "f").unwrap(), names(&["x"]));

        let keys = names(&["a,b", "c\"d"]);
        let recorded = record(plain, &keys, "ts");
        assert_eq!(resolve_keys(&[], &recorded, "f").unwrap(), keys);
        assert_eq!(resolve_keys(&keys, &recorded, "f").unwrap(), keys);
        assert_eq!(resolve_time(None, &recorded, "f").unwrap(), "ts");
        let e = resolve_keys(&names(&["a,b"]), &recorded, "f").unwrap_err();
        assert_eq!(e.code(), 2);
        assert!(e.to_string().contains(KEY_METADATA), "{e}");
        assert_eq!(resolve_time(Some("t2"), &recorded, "f").unwrap_err().code(), 2);
    }

    #[test]
    fn malformed_key_metadata_is_a_data_error() {
        let md = Metadata::default().with(KEY_METADATA, "src_addr");
        let schema = Schema::new(vec![Field::new("x", DataType::Utf8, true)]).with_metadata(md);
        let e = resolve_keys(&[], &schema, "f.arrows").unwrap_err();
        assert_eq!(e.code(), 1);
        assert!(e.to_string().starts_with("f.arrows: schema metadata"), "{e}");
    }
}

//! `--ratios NAME=RATIO,...`: parsing and validation of the named splits.
//!
//! ```
//! # fn main() -> probe_core::Result<()> {
//! use probe_split::ratios::parse_ratios;
//! let splits = parse_ratios("train=0.8,val=0.1,test=0.1")?; // in the order given
//! assert_eq!(splits.iter().map(|s| s.name.as_str()).collect::<Vec<_>>(), ["train", "val", "test"]);
//! # Ok(())
//! # }
//! ```
//!
//! The order matters: it is the order in which cumulative ratios are walked by
//! [`probe_core::keyhash::split_index`], so `train=0.9,test=0.1` and `test=0.1,train=0.9` are
//! different (equally valid) assignments.

use probe_core::{Error, Result};

/// How far the ratios may sum from 1 (decimal fractions like 0.7 + 0.2 + 0.1 are not exact).
pub const SUM_TOLERANCE: f64 = 1e-9;

/// One named split and its share of the keys.
#[derive(Debug, Clone, PartialEq)]
pub struct SplitSpec {
    /// Name: the file name stem with --out-dir, the `split` value with --tag.
    pub name: String,
    /// Share of the keys, in (0, 1].
    pub ratio: f64,
}

/// Parse and check `NAME=RATIO,...`.
pub fn parse_ratios(s: &str) -> Result<Vec<SplitSpec>> {
    let mut out: Vec<SplitSpec> = Vec::new();
    for item in s.split(',').map(str::trim) {
        if item.is_empty() {
            return Err(Error::config(format!(
                "--ratios `{s}`: empty entry; write NAME=RATIO pairs separated by commas, like train=0.9,test=0.1"
            )));
        }
        let Some((name, value)) = item.split_once('=') else {
            return Err(Error::config(format!(
                "--ratios: `{item}` is not NAME=RATIO; write it like train=0.9,test=0.1"
            )));
        };
        let (name, value) = (name.trim(), value.trim());
        check_name(name)?;
        let ratio: f64 =
            value.parse().map_err(|_| Error::config(format!("--ratios: `{value}` (for `{name}`) is not a number")))?;
        if !ratio.is_finite() || ratio <= 0.0 {
            return Err(Error::config(format!(
                "--ratios: `{name}` has ratio {value}; every ratio must be above 0 (leave the split out instead)"
            )));
        }
        if out.iter().any(|sp| sp.name == name) {
            return Err(Error::config(format!("--ratios: split `{name}` is named twice")));
        }
        out.push(SplitSpec { name: name.to_string(), ratio });
    }
    let sum: f64 = out.iter().map(|sp| sp.ratio).sum();
    if (sum - 1.0).abs() > SUM_TOLERANCE {
        return Err(Error::config(format!(
            "--ratios `{s}`: the ratios sum to {sum}, not 1; make them add up to 1, like train=0.9,test=0.1"
        )));
    }
    Ok(out)
}

/// A split name becomes a file name, and discovery skips `_`/`.` names: keep it plain.
fn check_name(name: &str) -> Result<()> {
    if name.is_empty() {
        return Err(Error::config("--ratios: a split has an empty name; write NAME=RATIO"));
    }
    if let Some(c) = name.chars().find(|c| !(c.is_ascii_alphanumeric() || matches!(c, '-' | '_' | '.'))) {
        return Err(Error::config(format!(
            "--ratios: split name `{name}` contains `{c}`; use letters, digits, `-`, `_` and `.` (it becomes a file name)"
        )));
    }
    if name.starts_with(['_', '.']) {
        return Err(Error::config(format!(
            "--ratios: split name `{name}` starts with `{}`, and input discovery skips such files; rename the split",
            &name[..1]
        )));
    }
    Ok(())
}

#[cfg(test)]
mod tests {
    use super::*;

    fn err(s: &str) -> String {
        match parse_ratios(s) {
            Ok(v) => panic!("`{s}` was accepted as {v:?}"),
            Err(e) => e.to_string(),
        }
    }

    #[test]
    fn parses_in_order() -> Result<()> {
        let v = parse_ratios("train=0.8, val=0.1 ,test=0.1")?;
        let names: Vec<&str> = v.iter().map(|s| s.name.as_str()).collect();
        assert_eq!(names, ["train", "val", "test"]);
        assert_eq!(v[0].ratio, 0.8);
        assert_eq!(parse_ratios("all=1")?.len(), 1);
        // 0.7 + 0.2 + 0.1 is not exactly 1 in binary; the tolerance accepts it.
        assert_eq!(parse_ratios("a=0.7,b=0.2,c=0.1")?.len(), 3);
        Ok(())
    }

    #[test]
    fn refuses_bad_ratios() {
        assert!(err("train=0.9,test=0.2").contains("sum to"), "{}", err("train=0.9,test=0.2"));
        assert!(err("train=0.9").contains("not 1"));
        assert!(err("train=1,test=0").contains("above 0"));
        assert!(err("train=1.1,test=-0.1").contains("above 0"));
        assert!(err("train=0.5,train=0.5").contains("named twice"));
        assert!(err("train=x,test=0.1").contains("not a number"));
        assert!(err("train").contains("not NAME=RATIO"));
        assert!(err("=1").contains("empty name"));
        assert!(err("train=0.9,,test=0.1").contains("empty entry"));
        assert!(err("a/b=1").contains("contains `/`"));
        assert!(err("_x=1").contains("starts with `_`"));
        assert!(err("a=NaN").contains("above 0"));
    }
}

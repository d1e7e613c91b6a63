//! Golden tests of every stage's `--help`: the help is the user-facing contract, so a change to
//! it must be deliberate. Regenerate with `UPDATE_GOLDEN=1 cargo test -p probe-tests --test help`.
#![allow(clippy::unwrap_used)] // tests: a panic is the failure report

use std::path::Path;

use probe_tests::harness::run;

const STAGES: &[&str] =
    &["probe-check-order", "probe-group", "probe-split", "probe-batch", "probe-merge", "probe-partition", "probe-gen"];

#[test]
fn help_texts_match_golden_files() {
    let dir = Path::new(env!("CARGO_MANIFEST_DIR")).join("golden");
    let update = std::env::var_os("UPDATE_GOLDEN").is_some();
    let mut stale = Vec::new();
    for stage in STAGES {
        let out = run(stage, &["--help"], None);
        out.assert_ok();
        let text = String::from_utf8(out.stdout.clone()).unwrap();
        assert!(text.contains("Usage:"), "{stage} --help lacks a usage line");
        assert!(text.contains("Example"), "{stage} --help lacks an example");
        let path = dir.join(format!("{stage}.help"));
        if update {
            std::fs::write(&path, &text).unwrap();
        } else if std::fs::read_to_string(&path).ok().as_deref() != Some(text.as_str()) {
            stale.push(stage.to_string());
        }
    }
    assert!(stale.is_empty(), "--help changed for {stale:?}; review and run with UPDATE_GOLDEN=1");
}

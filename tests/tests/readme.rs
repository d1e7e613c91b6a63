//! The README's claims that tests can hold it to: the DuckDB query that `probe-group`'s output
//! equals is the one the DuckDB oracle test runs, tie-breakers included.
#![allow(clippy::unwrap_used)] // tests: a panic is the failure report

use std::path::Path;

fn read(rel: &str) -> String {
    std::fs::read_to_string(Path::new(env!("CARGO_MANIFEST_DIR")).join(rel)).unwrap()
}

/// `ORDER BY time` alone leaves DuckDB's tie order arbitrary: the README must name the
/// tie-breakers the oracle uses (`file_idx` there is the position of `filename` in the list).
#[test]
fn readme_states_the_duckdb_query_with_its_tie_breakers() {
    let readme = read("../README.md");
    let oracle = read("tests/duckdb_oracle.rs");
    assert!(
        oracle.contains(r#"ORDER BY \"{time}\" NULLS LAST, file_idx, file_row_number"#),
        "the DuckDB oracle's query changed: update the README and this test"
    );
    assert!(
        readme.contains("ORDER BY time NULLS LAST, filename, file_row_number)")
            && readme.contains("filename = true, file_row_number = true")
            && readme.contains("list_position([files...], filename)"),
        "the README must state the tie-broken query"
    );
    assert!(
        !readme.contains("LIST(STRUCT_PACK(...) ORDER BY time)"),
        "the README still equates the output with the query without tie-breakers"
    );
}

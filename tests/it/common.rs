//! Shared helpers: fixture paths and the expected values written by make_fixtures.py.

use std::path::PathBuf;

use serde_json::Value;

pub fn data_dir() -> PathBuf {
    PathBuf::from(env!("CARGO_MANIFEST_DIR")).join("tests/data")
}

pub fn fixture(name: &str) -> PathBuf {
    data_dir().join(name)
}

pub fn expected() -> Value {
    let text = std::fs::read_to_string(fixture("expected.json")).expect("tests/data/expected.json");
    serde_json::from_str(&text).expect("valid JSON")
}

pub fn strings(v: &Value) -> Vec<String> {
    v.as_array()
        .expect("array")
        .iter()
        .map(|x| x.as_str().expect("string").to_string())
        .collect()
}

pub fn floats(v: &Value) -> Vec<f32> {
    v.as_array()
        .expect("array")
        .iter()
        .map(|x| x.as_f64().expect("number") as f32)
        .collect()
}

pub fn cartscope() -> assert_cmd::Command {
    assert_cmd::Command::cargo_bin("cartscope").expect("binary built")
}

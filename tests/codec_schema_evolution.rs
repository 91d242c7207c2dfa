//! Schema evolution rule: BACKWARD (transitively). The current schema of every record must
//! read data written with every earlier version: each version committed to git, and the frozen
//! v1 copies under `tests/fixtures/golden/schemas_v1/`, which are checked even without git.

use std::path::{Path, PathBuf};
use std::process::Command;

use apache_avro::schema_compatibility::SchemaCompatibility;
use apache_avro::Schema;

fn root() -> PathBuf {
    PathBuf::from(env!("CARGO_MANIFEST_DIR"))
}

fn current_schemas() -> Vec<(String, Schema)> {
    let mut out = Vec::new();
    for entry in std::fs::read_dir(root().join("schemas")).unwrap() {
        let path = entry.unwrap().path();
        if path.extension().is_some_and(|e| e == "avsc") {
            let name = path.file_name().unwrap().to_string_lossy().into_owned();
            let text = std::fs::read_to_string(&path).unwrap();
            let schema = Schema::parse_str(&text).unwrap_or_else(|e| panic!("{name}: {e}"));
            out.push((name, schema));
        }
    }
    out.sort_by(|a, b| a.0.cmp(&b.0));
    assert!(!out.is_empty(), "no schemas in schemas/");
    out
}

fn git(args: &[&str]) -> Option<String> {
    let out = Command::new("git")
        .args(args)
        .current_dir(root())
        .output()
        .ok()?;
    out.status
        .success()
        .then(|| String::from_utf8_lossy(&out.stdout).into_owned())
}

fn assert_reads(writer: &Schema, reader: &Schema, what: &str) {
    if let Err(e) = SchemaCompatibility::can_read(writer, reader) {
        panic!(
            "{what}: the current schema cannot read data written with it (BACKWARD broken): {e}"
        );
    }
}

#[test]
fn current_schemas_read_every_committed_version() {
    if git(&["rev-parse", "--git-dir"]).is_none() {
        println!("note: git unavailable or not a repository; committed versions not checked");
        return;
    }
    for (name, current) in current_schemas() {
        let rel = format!("schemas/{name}");
        let commits = git(&["log", "--format=%H", "--", &rel]).unwrap_or_default();
        let mut checked = 0;
        for commit in commits.lines() {
            // The file may have been deleted in that commit.
            let Some(text) = git(&["show", &format!("{commit}:{rel}")]) else {
                continue;
            };
            let old = Schema::parse_str(&text).unwrap_or_else(|e| panic!("{rel}@{commit}: {e}"));
            assert_reads(&old, &current, &format!("{rel} at {commit}"));
            checked += 1;
        }
        if checked == 0 {
            println!("note: {rel} has no committed previous version yet; nothing to compare");
        }
    }
}

#[test]
fn current_schemas_read_frozen_v1() {
    let frozen = root().join("tests/fixtures/golden/schemas_v1");
    for (name, current) in current_schemas() {
        let path: &Path = &frozen.join(&name);
        let text = std::fs::read_to_string(path).unwrap_or_else(|e| {
            panic!(
                "{}: {e}; a new schema must get its first version frozen there",
                path.display()
            )
        });
        let v1 = Schema::parse_str(&text).unwrap();
        assert_reads(&v1, &current, &path.display().to_string());
    }
}

#[test]
fn the_checker_does_catch_a_breaking_change() {
    // A sanity check of the tool itself: a new required field without default is not BACKWARD.
    let v1 = Schema::parse_str(
        r#"{"type":"record","name":"R","fields":[{"name":"a","type":"string"}]}"#,
    )
    .unwrap();
    let added_with_default = Schema::parse_str(
        r#"{"type":"record","name":"R","fields":[{"name":"a","type":"string"},{"name":"b","type":["null","string"],"default":null}]}"#,
    )
    .unwrap();
    let added_required = Schema::parse_str(
        r#"{"type":"record","name":"R","fields":[{"name":"a","type":"string"},{"name":"b","type":"string"}]}"#,
    )
    .unwrap();
    assert!(SchemaCompatibility::can_read(&v1, &added_with_default).is_ok());
    assert!(SchemaCompatibility::can_read(&v1, &added_required).is_err());
}

#[test]
fn every_record_and_field_is_documented() {
    fn walk(v: &serde_json::Value, path: &str) {
        match v {
            serde_json::Value::Object(o) => {
                let is_named = matches!(
                    o.get("type").and_then(|t| t.as_str()),
                    Some("record" | "enum")
                );
                let is_field = path.ends_with(']')
                    && o.contains_key("name")
                    && !is_named
                    && o.contains_key("type");
                if is_named || is_field {
                    assert!(
                        o.get("doc")
                            .and_then(|d| d.as_str())
                            .is_some_and(|d| !d.is_empty()),
                        "{path} ({:?}) has no doc",
                        o.get("name")
                    );
                }
                for (k, child) in o {
                    walk(child, &format!("{path}.{k}"));
                }
            }
            serde_json::Value::Array(a) => {
                for (i, child) in a.iter().enumerate() {
                    walk(child, &format!("{path}[{i}]"));
                }
            }
            _ => {}
        }
    }
    for (name, _) in current_schemas() {
        let text = std::fs::read_to_string(root().join("schemas").join(&name)).unwrap();
        walk(&serde_json::from_str(&text).unwrap(), &name);
    }
}

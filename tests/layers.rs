//! The crate's layers, as `src/lib.rs` states them, hold in the code: every module imports
//! only from layers below its own. Read from the sources' `crate::` paths (test code, which
//! may build fixtures from any layer, and comments aside), so a new upward import fails here
//! with the file, the line and the two layers named.

use std::collections::HashMap;
use std::fs;
use std::path::{Path, PathBuf};

/// The numbered `//! N. `module`, `module`` lines of lib.rs's "Layers" section.
fn layers(lib: &str) -> HashMap<String, usize> {
    let mut layer_of = HashMap::new();
    let section = lib
        .split("//! # Layers")
        .nth(1)
        .expect("lib.rs states its layers under `//! # Layers`");
    for line in section.lines().skip(1).take_while(|l| l.starts_with("//!")) {
        let text = line.trim_start_matches("//!").trim();
        let Some((number, rest)) = text.split_once(". ") else {
            continue;
        };
        let Ok(number) = number.parse::<usize>() else {
            continue;
        };
        for name in rest.split('`').skip(1).step_by(2) {
            assert!(
                layer_of.insert(name.to_owned(), number).is_none(),
                "{name} is in two layers"
            );
        }
    }
    assert!(
        layer_of.len() > 10,
        "too few modules in lib.rs's layers: {layer_of:?}"
    );
    layer_of
}

fn sources(dir: &Path, out: &mut Vec<PathBuf>) {
    for entry in fs::read_dir(dir).unwrap() {
        let path = entry.unwrap().path();
        if path.is_dir() {
            sources(&path, out);
        } else if path.extension().is_some_and(|e| e == "rs") {
            out.push(path);
        }
    }
}

/// The top-level modules a line names through `crate::`, braces included
/// (`use crate::{a, b::c}` names `a` and `b`).
fn named(line: &str) -> Vec<String> {
    let mut names = Vec::new();
    for (i, _) in line.match_indices("crate::") {
        let rest = &line[i + "crate::".len()..];
        if let Some(group) = rest.strip_prefix('{') {
            let group = group.split('}').next().unwrap_or("");
            for item in group.split(',') {
                let name: String = item
                    .trim()
                    .chars()
                    .take_while(|c| c.is_alphanumeric() || *c == '_')
                    .collect();
                names.push(name);
            }
        } else {
            names.push(
                rest.chars()
                    .take_while(|c| c.is_alphanumeric() || *c == '_')
                    .collect(),
            );
        }
    }
    names.retain(|n| !n.is_empty() && n.chars().next().is_some_and(|c| c.is_lowercase()));
    names
}

#[test]
fn every_import_points_down() {
    let root = Path::new(env!("CARGO_MANIFEST_DIR"));
    let layer_of = layers(&fs::read_to_string(root.join("src/lib.rs")).unwrap());
    let mut files = Vec::new();
    sources(&root.join("src"), &mut files);
    let mut upward = Vec::new();
    for file in &files {
        let relative = file.strip_prefix(root.join("src")).unwrap();
        let top = relative
            .components()
            .next()
            .unwrap()
            .as_os_str()
            .to_string_lossy();
        let module = top.trim_end_matches(".rs");
        let name = file.file_name().unwrap().to_string_lossy();
        // The binary and its CLI sit above every layer; test files and conformance suites
        // are test code.
        if matches!(module, "main" | "lib" | "cli")
            || name == "tests.rs"
            || name.ends_with("_tests.rs")
            || name == "conformance.rs"
        {
            continue;
        }
        let own = *layer_of
            .get(module)
            .unwrap_or_else(|| panic!("src/{module} is in no layer of lib.rs"));
        let text = fs::read_to_string(file).unwrap();
        let lines: Vec<&str> = text.lines().collect();
        for (n, line) in lines.iter().enumerate() {
            let code = line.trim_start();
            // A test module (inline or in a file of its own) ends what the layers govern; a
            // single test-only item does not.
            let next = lines.get(n + 1).map_or("", |l| l.trim_start());
            if code.starts_with("#[cfg(test)]")
                && (next.starts_with("mod ") || next.starts_with("#[path"))
            {
                break;
            }
            if code.starts_with("//") {
                continue;
            }
            for dep in named(code) {
                let Some(&theirs) = layer_of.get(&dep) else {
                    continue; // a macro or item at the crate root
                };
                if dep != module && theirs >= own {
                    upward.push(format!(
                        "src/{}:{}: {module} (layer {own}) uses {dep} (layer {theirs})",
                        relative.display(),
                        n + 1
                    ));
                }
            }
        }
    }
    assert!(
        upward.is_empty(),
        "imports that do not point down:\n{}",
        upward.join("\n")
    );
}

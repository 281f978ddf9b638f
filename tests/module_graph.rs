//! The import graph between wsd's top-level modules has no cycle (docs/STYLE.md, docs/ARCHITECTURE.md):
//! every `crate::<module>` path in `src/` (outside comments and string literals) is an edge from
//! the file's top-level module to `<module>`, and the test fails naming the first cycle it finds.
//!
//! The cycle finder and the path extraction are tested on synthetic input too, so a finder that
//! never reports anything cannot pass.

use std::collections::{BTreeMap, BTreeSet};
use std::path::{Path, PathBuf};

/// Directed graph: module → the modules it names.
type Graph = BTreeMap<String, BTreeSet<String>>;

/// `text` with comments and the contents of string and character literals blanked out, so only
/// code is searched. Raw strings (`r"…"`, `r#"…"#`) are handled; nested block comments too.
fn code_only(text: &str) -> String {
    let b = text.as_bytes();
    let mut out = String::with_capacity(text.len());
    let mut i = 0;
    while i < b.len() {
        match b[i] {
            b'/' if b.get(i + 1) == Some(&b'/') => {
                while i < b.len() && b[i] != b'\n' {
                    i += 1;
                }
            }
            b'/' if b.get(i + 1) == Some(&b'*') => {
                let mut depth = 0;
                while i < b.len() {
                    if b[i] == b'/' && b.get(i + 1) == Some(&b'*') {
                        depth += 1;
                        i += 2;
                    } else if b[i] == b'*' && b.get(i + 1) == Some(&b'/') {
                        depth -= 1;
                        i += 2;
                        if depth == 0 {
                            break;
                        }
                    } else {
                        i += 1;
                    }
                }
                out.push(' ');
            }
            b'r' if matches!(b.get(i + 1), Some(b'"' | b'#'))
                && (i == 0 || !(b[i - 1].is_ascii_alphanumeric() || b[i - 1] == b'_')) =>
            {
                let mut j = i + 1;
                let mut hashes = 0;
                while b.get(j) == Some(&b'#') {
                    hashes += 1;
                    j += 1;
                }
                if b.get(j) != Some(&b'"') {
                    out.push('r');
                    i += 1;
                    continue;
                }
                j += 1;
                let close: Vec<u8> = std::iter::once(b'"')
                    .chain(std::iter::repeat_n(b'#', hashes))
                    .collect();
                while j < b.len() && !b[j..].starts_with(&close) {
                    j += 1;
                }
                i = j + close.len();
                out.push_str("\"\"");
            }
            b'"' => {
                i += 1;
                while i < b.len() && b[i] != b'"' {
                    i += if b[i] == b'\\' { 2 } else { 1 };
                }
                i += 1;
                out.push_str("\"\"");
            }
            b'\'' => {
                // A char literal ('x', '\n', '\u{..}') or a lifetime ('a): skip the literal only.
                let end = if b.get(i + 1) == Some(&b'\\') {
                    b[i + 2..]
                        .iter()
                        .position(|&c| c == b'\'')
                        .map(|p| i + 2 + p)
                } else if b.get(i + 2) == Some(&b'\'') {
                    Some(i + 2)
                } else {
                    None
                };
                match end {
                    Some(end) => {
                        out.push_str("' '");
                        i = end + 1;
                    }
                    None => {
                        out.push('\'');
                        i += 1;
                    }
                }
            }
            c => {
                out.push(c as char);
                i += 1;
            }
        }
    }
    out
}

fn ident_at(s: &str) -> &str {
    let end = s
        .find(|c: char| !(c.is_ascii_alphanumeric() || c == '_'))
        .unwrap_or(s.len());
    &s[..end]
}

/// The top-level modules named by `crate::` paths in the code of `text`, including the groups of
/// `use crate::{a::X, b};`.
fn crate_paths(text: &str) -> BTreeSet<String> {
    let code = code_only(text);
    let mut found = BTreeSet::new();
    let mut rest = code.as_str();
    while let Some(at) = rest.find("crate::") {
        let before = rest[..at].chars().next_back();
        rest = &rest[at + "crate::".len()..];
        if before.is_some_and(|c| c.is_ascii_alphanumeric() || c == '_') {
            continue; // e.g. `$crate::` or `my_crate::`
        }
        let rest_trim = rest.trim_start();
        if let Some(group) = rest_trim.strip_prefix('{') {
            // Top-level items of the group: split at depth-0 commas.
            let mut depth = 0;
            let mut start = 0;
            let mut items = Vec::new();
            for (k, c) in group.char_indices() {
                match c {
                    '{' => depth += 1,
                    '}' if depth == 0 => {
                        items.push(&group[start..k]);
                        break;
                    }
                    '}' => depth -= 1,
                    ',' if depth == 0 => {
                        items.push(&group[start..k]);
                        start = k + 1;
                    }
                    _ => {}
                }
            }
            for item in items {
                let name = ident_at(item.trim_start());
                if !name.is_empty() && name != "self" {
                    found.insert(name.to_owned());
                }
            }
        } else {
            let name = ident_at(rest_trim);
            if !name.is_empty() {
                found.insert(name.to_owned());
            }
        }
    }
    found
}

/// A cycle in `graph` as its list of modules (first repeated at the end), if there is one.
fn find_cycle(graph: &Graph) -> Option<Vec<String>> {
    #[derive(Clone, Copy, PartialEq)]
    enum Mark {
        New,
        Open,
        Done,
    }
    fn visit(
        node: &str,
        graph: &Graph,
        marks: &mut BTreeMap<String, Mark>,
        stack: &mut Vec<String>,
    ) -> Option<Vec<String>> {
        marks.insert(node.to_owned(), Mark::Open);
        stack.push(node.to_owned());
        for next in graph.get(node).into_iter().flatten() {
            match marks.get(next.as_str()).copied().unwrap_or(Mark::New) {
                Mark::Open => {
                    let from = stack.iter().position(|n| n == next).unwrap_or(0);
                    let mut cycle = stack[from..].to_vec();
                    cycle.push(next.clone());
                    return Some(cycle);
                }
                Mark::New => {
                    if let Some(cycle) = visit(next, graph, marks, stack) {
                        return Some(cycle);
                    }
                }
                Mark::Done => {}
            }
        }
        stack.pop();
        marks.insert(node.to_owned(), Mark::Done);
        None
    }
    let mut marks = BTreeMap::new();
    for node in graph.keys() {
        if marks.get(node.as_str()).copied().unwrap_or(Mark::New) == Mark::New
            && let Some(cycle) = visit(node, graph, &mut marks, &mut Vec::new())
        {
            return Some(cycle);
        }
    }
    None
}

fn rust_files(dir: &Path, into: &mut Vec<PathBuf>) {
    for entry in std::fs::read_dir(dir).expect("read src/") {
        let path = entry.expect("dir entry").path();
        if path.is_dir() {
            rust_files(&path, into);
        } else if path.extension().is_some_and(|e| e == "rs") {
            into.push(path);
        }
    }
}

/// The import graph of the crate in `src`: top-level module → top-level modules it names.
fn module_graph(src: &Path) -> Graph {
    let mut files = Vec::new();
    rust_files(src, &mut files);
    let mut graph = Graph::new();
    for file in files {
        let rel = file.strip_prefix(src).expect("under src/");
        let first = rel
            .components()
            .next()
            .and_then(|c| c.as_os_str().to_str())
            .expect("a path component");
        let module = first.strip_suffix(".rs").unwrap_or(first);
        if module == "lib" || module == "main" {
            continue; // the crate root names every module; main.rs uses `wsd::`
        }
        let text = std::fs::read_to_string(&file).expect("read a source file");
        let edges = graph.entry(module.to_owned()).or_default();
        edges.extend(crate_paths(&text).into_iter().filter(|m| m != module));
    }
    graph
}

fn graph_of(edges: &[(&str, &str)]) -> Graph {
    let mut g = Graph::new();
    for (a, b) in edges {
        g.entry((*a).to_owned())
            .or_default()
            .insert((*b).to_owned());
        g.entry((*b).to_owned()).or_default();
    }
    g
}

#[test]
fn no_cycle_between_top_level_modules() {
    let src = Path::new(env!("CARGO_MANIFEST_DIR")).join("src");
    let graph = module_graph(&src);
    // The graph is real: the layers the architecture names are there.
    for (from, to) in [
        ("server", "worker"),
        ("worker", "proto"),
        ("worker", "app"),
        ("worker", "io"),
        ("worker", "http"),
        ("server", "uring"),
        ("server", "epoll"),
    ] {
        assert!(
            graph.get(from).is_some_and(|e| e.contains(to)),
            "expected {from} → {to} in {graph:#?}"
        );
    }
    if let Some(cycle) = find_cycle(&graph) {
        panic!(
            "import cycle between top-level modules: {}\nfull graph: {graph:#?}",
            cycle.join(" → ")
        );
    }
}

#[test]
fn finder_reports_a_cycle_and_only_a_cycle() {
    let acyclic = graph_of(&[
        ("main", "server"),
        ("server", "worker"),
        ("worker", "proto"),
        ("worker", "app"),
        ("app", "proto"),
        ("server", "proto"),
    ]);
    assert_eq!(find_cycle(&acyclic), None);
    let cyclic = graph_of(&[
        ("server", "worker"),
        ("worker", "metrics"),
        ("metrics", "server"),
        ("worker", "proto"),
    ]);
    let cycle = find_cycle(&cyclic).expect("a cycle");
    assert_eq!(cycle.first(), cycle.last());
    let members: BTreeSet<&str> = cycle.iter().map(String::as_str).collect();
    assert_eq!(members, BTreeSet::from(["metrics", "server", "worker"]));
    // A self-loop is a cycle too (the graph builder drops a module's paths to itself).
    assert!(find_cycle(&graph_of(&[("a", "a")])).is_some());
}

#[test]
fn paths_are_read_from_code_only() {
    let text = r####"
//! Docs mention [`crate::docs_only`].
use crate::{alpha::X, beta, gamma::{self, Y}};
use crate::delta::Z; // crate::comment_only
/* crate::block_only /* nested crate::nested_only */ */
fn f() -> u8 {
    let s = "crate::string_only";
    let r = r#"crate::raw_only"#;
    let c = '"';
    let _ = crate::epsilon::call();
    let _ = my_crate::not_ours::x();
    0
}
"####;
    let found = crate_paths(text);
    let expected: BTreeSet<String> = ["alpha", "beta", "delta", "epsilon", "gamma"]
        .into_iter()
        .map(String::from)
        .collect();
    assert_eq!(found, expected);
}

#[test]
fn a_cycle_in_source_files_is_found() {
    let dir = std::env::temp_dir().join(format!("wsd-module-graph-{}", std::process::id()));
    let _ = std::fs::remove_dir_all(&dir);
    std::fs::create_dir_all(dir.join("worker")).expect("mkdir");
    std::fs::write(dir.join("lib.rs"), "pub mod server; pub mod worker;").expect("write");
    std::fs::write(dir.join("server.rs"), "use crate::worker::Worker;").expect("write");
    std::fs::write(dir.join("worker/mod.rs"), "mod helper;").expect("write");
    std::fs::write(dir.join("worker/helper.rs"), "use crate::server::Shared;").expect("write");
    let graph = module_graph(&dir);
    let cycle = find_cycle(&graph);
    let _ = std::fs::remove_dir_all(&dir);
    let cycle = cycle.expect("server ↔ worker is a cycle");
    assert!(cycle.contains(&"server".to_owned()) && cycle.contains(&"worker".to_owned()));
}

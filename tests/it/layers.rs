//! The library's modules form layers and imports point down only: a module uses what lies
//! below it and nothing above or beside it, so a layer can be read, tested and changed without
//! the ones above it, and shared helpers move down rather than sideways.
//!
//! This test reads every `src/**/*.rs` file the library compiles and checks each path into
//! another top-level module against [`LAYERS`]: `use crate::x::...` lines, `use crate::{a, b}`
//! groups (every leaf), inline `crate::x::y(...)` paths, root re-exports (`crate::Result` is
//! `error`'s) and `super::` paths that climb out of a top-level module. It also checks that no
//! modules import each other, directly or round a longer cycle, whatever the table says.
//!
//! Not counted: comments and string literals (they import nothing); `#[cfg(test)]` items and
//! the files of test-only modules (unit tests are compiled only into the test binary, never
//! into the library, and may build their fixtures from any layer); the binary (`main.rs` and
//! its modules: a separate crate on top of the library, whose `crate::` is its own).

use std::collections::{BTreeMap, BTreeSet};
use std::path::{Path, PathBuf};

/// The layers, bottom first, with what each holds. A module may import modules of lower layers
/// only; the modules of one layer are independent of each other.
const LAYERS: &[(&[&str], &str)] = &[
    (
        &["error", "matrix", "crash", "cancel"],
        "the error type; the CSR chunk; the crash report of the C libraries; cancellation",
    ),
    (
        &["io", "rng"],
        "readers and writers; every random generator",
    ),
    // simulate writes its files through io and seeds from rng, and nothing in the library
    // uses it (the binary and the tests do).
    (&["backend", "simulate"], "numeric kernels; the simulator"),
    // bench times backend kernels on generated chunks and needs nothing above them; vdj reads
    // contig tables and defines clonotypes with the error type alone.
    (
        &["pp", "tl", "bench", "vdj"],
        "scanpy's pp and tl; kernel benchmarks; scirpy's clonotypes",
    ),
    (&["cart"], "CAR-T interpretation"),
    // info inspects an input through io and names its CAR candidates through cart.
    (&["pipeline", "info"], "`cartscope run`; `cartscope info`"),
    (&["report"], "report.html and the cells.parquet table"),
    // ops runs the stages and renders the report for the Python bindings, without files.
    (
        &["outputs", "ops"],
        "every file of a run, published whole; the in-memory entry points of the bindings",
    ),
    (&["run"], "the one entry point: a run from its options"),
    (&["batch"], "`cartscope batch` and `aggregate`"),
    (&["cli", "main"], "the binary"),
];

/// One path from a file into another module.
#[derive(Debug, Clone)]
struct Import {
    /// The file, relative to the repository.
    file: String,
    /// 1-based line.
    line: usize,
    /// The importing top-level module.
    from: String,
    /// The imported top-level module.
    to: String,
    /// The full path below `crate::`, `::`-joined.
    path: String,
}

impl std::fmt::Display for Import {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        write!(f, "{}:{}: crate::{}", self.file, self.line, self.path)
    }
}

fn is_ident(c: char) -> bool {
    c.is_alphanumeric() || c == '_'
}

/// The source with comments, string literals and char literals blanked (newlines kept, so
/// offsets keep their lines).
fn strip(src: &str) -> Vec<char> {
    let s: Vec<char> = src.chars().collect();
    let mut out = s.clone();
    let blank = |out: &mut Vec<char>, from: usize, to: usize| {
        for c in &mut out[from..to.min(s.len())] {
            if *c != '\n' {
                *c = ' ';
            }
        }
    };
    let mut i = 0;
    while i < s.len() {
        let next = s.get(i + 1).copied();
        let prev_ident = i > 0 && is_ident(s[i - 1]);
        if s[i] == '/' && next == Some('/') {
            let end = (i..s.len()).find(|&k| s[k] == '\n').unwrap_or(s.len());
            blank(&mut out, i, end);
            i = end;
        } else if s[i] == '/' && next == Some('*') {
            let (mut depth, mut k) = (0usize, i);
            while k < s.len() {
                if s[k] == '/' && s.get(k + 1) == Some(&'*') {
                    depth += 1;
                    k += 2;
                } else if s[k] == '*' && s.get(k + 1) == Some(&'/') {
                    depth -= 1;
                    k += 2;
                    if depth == 0 {
                        break;
                    }
                } else {
                    k += 1;
                }
            }
            blank(&mut out, i, k);
            i = k;
        } else if s[i] == 'r' && !prev_ident && matches!(next, Some('"' | '#')) {
            // A raw string r"..." or r#"..."#, else an identifier starting with r.
            let hashes = (i + 1..s.len()).take_while(|&k| s[k] == '#').count();
            if s.get(i + 1 + hashes) != Some(&'"') {
                i += 1;
                continue;
            }
            let mut k = i + 2 + hashes;
            while k < s.len() && !(s[k] == '"' && (1..=hashes).all(|h| s.get(k + h) == Some(&'#')))
            {
                k += 1;
            }
            let end = k + 1 + hashes;
            blank(&mut out, i, end);
            i = end;
        } else if s[i] == '"' {
            let mut k = i + 1;
            while k < s.len() && s[k] != '"' {
                k += if s[k] == '\\' { 2 } else { 1 };
            }
            blank(&mut out, i, k + 1);
            i = k + 1;
        } else if s[i] == '\'' {
            // A char literal ('x', '\n', '\u{..}') or a lifetime ('a), which stays.
            if next == Some('\\') {
                let end = (i + 3..s.len()).find(|&k| s[k] == '\'').unwrap_or(s.len());
                blank(&mut out, i, end + 1);
                i = end + 1;
            } else if s.get(i + 2) == Some(&'\'') {
                blank(&mut out, i, i + 3);
                i += 3;
            } else {
                i += 1;
            }
        } else {
            i += 1;
        }
    }
    out
}

fn skip_ws(s: &[char], mut i: usize) -> usize {
    while i < s.len() && s[i].is_whitespace() {
        i += 1;
    }
    i
}

fn ident_at(s: &[char], i: usize) -> Option<(String, usize)> {
    let first = *s.get(i)?;
    if !(first.is_alphabetic() || first == '_') || (i > 0 && is_ident(s[i - 1])) {
        return None;
    }
    let end = (i..s.len()).find(|&k| !is_ident(s[k])).unwrap_or(s.len());
    Some((s[i..end].iter().collect(), end))
}

fn starts_with(s: &[char], i: usize, word: &str) -> bool {
    word.chars()
        .enumerate()
        .all(|(k, c)| s.get(i + k) == Some(&c))
}

/// The end of the item that starts at `i`: its first `;`, or the `}` closing its first `{`.
fn item_end(s: &[char], i: usize) -> usize {
    let mut k = i;
    // Further attributes of the same item.
    loop {
        k = skip_ws(s, k);
        if !starts_with(s, k, "#[") {
            break;
        }
        k = bracket_end(s, k + 1, '[', ']');
    }
    while k < s.len() {
        match s[k] {
            ';' => return k + 1,
            '{' => return bracket_end(s, k, '{', '}'),
            '(' => k = bracket_end(s, k, '(', ')'),
            '[' => k = bracket_end(s, k, '[', ']'),
            _ => k += 1,
        }
    }
    s.len()
}

/// The position after the bracket closing the one at `open`.
fn bracket_end(s: &[char], open: usize, l: char, r: char) -> usize {
    let mut depth = 0usize;
    for (k, &c) in s.iter().enumerate().skip(open) {
        if c == l {
            depth += 1;
        } else if c == r {
            depth -= 1;
            if depth == 0 {
                return k + 1;
            }
        }
    }
    s.len()
}

/// The code with every `#[cfg(test)]` item blanked.
fn without_test_items(mut s: Vec<char>) -> Vec<char> {
    let mut i = 0;
    while i < s.len() {
        if starts_with(&s, i, "#[cfg(test)]") {
            let end = item_end(&s, i + "#[cfg(test)]".len());
            for c in &mut s[i..end] {
                if *c != '\n' {
                    *c = ' ';
                }
            }
            i = end;
        } else {
            i += 1;
        }
    }
    s
}

/// The modules a file declares with `mod name;` (its module files).
fn mod_decls(s: &[char]) -> Vec<String> {
    let mut found = Vec::new();
    for i in 0..s.len() {
        if starts_with(s, i, "mod ")
            && (i == 0 || !is_ident(s[i - 1]))
            && let Some((name, end)) = ident_at(s, skip_ws(s, i + 4))
            && s.get(skip_ws(s, end)) == Some(&';')
        {
            found.push(name);
        }
    }
    found
}

/// Every leaf of the use-tree (or plain path) at `i`, each after `prefix`; the position after.
fn use_tree(s: &[char], i: usize, prefix: &[String], out: &mut Vec<Vec<String>>) -> usize {
    let mut i = skip_ws(s, i);
    let mut path = prefix.to_vec();
    loop {
        match s.get(i) {
            Some('{') => return group(s, i + 1, &path, out),
            Some('*') => {
                out.push(path);
                return i + 1;
            }
            _ => {}
        }
        let Some((id, end)) = ident_at(s, i) else {
            break;
        };
        if id != "self" {
            path.push(id);
        }
        i = end;
        let k = skip_ws(s, i);
        if starts_with(s, k, "::") {
            let after = skip_ws(s, k + 2);
            if matches!(s.get(after), Some('{' | '*')) || ident_at(s, after).is_some() {
                i = after;
                continue;
            }
        }
        break;
    }
    out.push(path);
    i
}

fn group(s: &[char], mut i: usize, prefix: &[String], out: &mut Vec<Vec<String>>) -> usize {
    loop {
        i = skip_ws(s, i);
        match s.get(i) {
            None => return i,
            Some('}') => return i + 1,
            _ => {}
        }
        i = skip_ws(s, use_tree(s, i, prefix, out));
        if let Some((word, end)) = ident_at(s, i)
            && word == "as"
        {
            i = skip_ws(s, ident_at(s, skip_ws(s, end)).map_or(end, |(_, e)| e));
        }
        match s.get(i) {
            Some(',') => i += 1,
            Some('}') => return i + 1,
            _ => return i,
        }
    }
}

/// Paths from the crate root in code `s` of a module `depth` levels below the root:
/// `crate::` paths, and `super::` chains that climb to the root (inline `mod x { }` blocks
/// count as a level). Each leaf with the offset where its path starts.
fn root_paths(s: &[char], depth: usize) -> Vec<(usize, Vec<String>)> {
    // Inline module blocks, for the depth of a `super` inside them.
    let mut blocks = Vec::new();
    for i in 0..s.len() {
        if starts_with(s, i, "mod ")
            && (i == 0 || !is_ident(s[i - 1]))
            && let Some((_, end)) = ident_at(s, skip_ws(s, i + 4))
            && s.get(skip_ws(s, end)) == Some(&'{')
        {
            let open = skip_ws(s, end);
            blocks.push((open, bracket_end(s, open, '{', '}')));
        }
    }
    let mut found = Vec::new();
    let mut i = 0;
    while i < s.len() {
        let path_start = i == 0 || !(is_ident(s[i - 1]) || s[i - 1] == ':' || s[i - 1] == '$');
        let mut leaves = Vec::new();
        if path_start && starts_with(s, i, "crate::") && ident_at(s, i).is_some() {
            let end = use_tree(s, i + "crate::".len(), &[], &mut leaves);
            found.extend(leaves.drain(..).map(|l| (i, l)));
            i = end;
            continue;
        }
        if path_start && starts_with(s, i, "super::") && ident_at(s, i).is_some() {
            let level = depth + blocks.iter().filter(|&&(a, b)| a < i && i < b).count();
            let (mut k, mut climbed) = (i, 0);
            while starts_with(s, k, "super::") {
                k = skip_ws(s, k + "super::".len());
                climbed += 1;
            }
            if climbed == level {
                let end = use_tree(s, k, &[], &mut leaves);
                found.extend(leaves.drain(..).map(|l| (i, l)));
                i = end;
                continue;
            }
            i = k;
            continue;
        }
        i += 1;
    }
    found.retain(|(_, l)| !l.is_empty());
    found
}

/// The file of module `name` declared in `file` (relative to `src`).
fn child_file(src: &Path, file: &Path, name: &str) -> Option<PathBuf> {
    let stem = file.file_stem()?.to_str()?;
    let parent = file.parent()?;
    let dir = if matches!(stem, "mod" | "lib" | "main") {
        parent.to_path_buf()
    } else {
        parent.join(stem)
    };
    [
        dir.join(format!("{name}.rs")),
        dir.join(name).join("mod.rs"),
    ]
    .into_iter()
    .find(|p| src.join(p).is_file())
}

/// Module depth below the crate root of a library file (relative to `src`).
fn depth(file: &Path) -> usize {
    let n = file.components().count();
    match file.file_stem().and_then(|s| s.to_str()) {
        Some("mod" | "lib") => n - 1,
        _ => n,
    }
}

fn read(src: &Path, file: &Path) -> Vec<char> {
    let text = std::fs::read_to_string(src.join(file))
        .unwrap_or_else(|e| panic!("src/{}: {e}", file.display()));
    without_test_items(strip(&text))
}

fn layer_of(module: &str) -> Option<usize> {
    LAYERS.iter().position(|(mods, _)| mods.contains(&module))
}

fn describe(module: &str) -> String {
    match layer_of(module) {
        Some(l) => format!("`{module}` (layer {l}: {})", LAYERS[l].1),
        None => format!("`{module}`"),
    }
}

/// Every import between top-level modules of the library, and the top-level modules.
fn library_imports() -> (Vec<Import>, BTreeSet<String>) {
    let src = Path::new(env!("CARGO_MANIFEST_DIR")).join("src");
    let lib = PathBuf::from("lib.rs");
    let lib_code = read(&src, &lib);
    let modules: BTreeSet<String> = mod_decls(&lib_code).into_iter().collect();
    // Root re-exports (`pub use error::{Error, Result};`): name -> module.
    let mut reexports = BTreeMap::new();
    for i in 0..lib_code.len() {
        if starts_with(&lib_code, i, "pub use ") {
            let mut leaves = Vec::new();
            use_tree(&lib_code, i + "pub use ".len(), &[], &mut leaves);
            for l in leaves {
                if let (Some(m), Some(name)) = (l.first(), l.last()) {
                    reexports.insert(name.clone(), m.clone());
                }
            }
        }
    }
    // The files compiled into the library, outside tests: those reached from lib.rs through
    // `mod name;` declarations that are not `#[cfg(test)]`.
    let mut files = Vec::new();
    let mut todo = vec![lib];
    while let Some(file) = todo.pop() {
        let code = read(&src, &file);
        for name in mod_decls(&code) {
            let child = child_file(&src, &file, &name)
                .unwrap_or_else(|| panic!("src/{}: no file for `mod {name};`", file.display()));
            todo.push(child);
        }
        if file != Path::new("lib.rs") {
            files.push((file, code));
        }
    }
    files.sort();
    let mut imports = Vec::new();
    for (file, code) in &files {
        let from = file
            .components()
            .next()
            .and_then(|c| c.as_os_str().to_str())
            .map(|c| c.trim_end_matches(".rs").to_string())
            .unwrap_or_default();
        for (offset, leaf) in root_paths(code, depth(file)) {
            let to = reexports.get(&leaf[0]).unwrap_or(&leaf[0]).clone();
            if to == from {
                continue;
            }
            imports.push(Import {
                file: format!("src/{}", file.display()),
                line: 1 + code[..offset].iter().filter(|&&c| c == '\n').count(),
                from: from.clone(),
                to,
                path: leaf.join("::"),
            });
        }
    }
    assert!(
        files.len() > 30 && imports.len() > 100,
        "the scan found {} files and {} imports: it is broken",
        files.len(),
        imports.len()
    );
    (imports, modules)
}

#[test]
fn imports_point_down_the_layers() {
    let (imports, modules) = library_imports();
    let mut failures = Vec::new();
    for m in &modules {
        if layer_of(m).is_none() {
            failures.push(format!(
                "src/lib.rs: module `{m}` has no layer: place it in LAYERS"
            ));
        }
    }
    for imp in &imports {
        if !modules.contains(&imp.to) {
            failures.push(format!(
                "{imp}: `{}` is not a module of the library",
                imp.to
            ));
            continue;
        }
        let (Some(from), Some(to)) = (layer_of(&imp.from), layer_of(&imp.to)) else {
            continue;
        };
        if to < from {
            continue;
        }
        let how = if to == from { "beside" } else { "above" };
        failures.push(format!(
            "{imp}: {} imports {}, which lies {how} it: imports point down only (move what both \
             need down a layer)",
            describe(&imp.from),
            describe(&imp.to)
        ));
    }
    assert!(failures.is_empty(), "\n{}\n", failures.join("\n"));
}

#[test]
fn no_modules_import_each_other() {
    let (imports, _) = library_imports();
    // One example import per edge.
    let mut edges: BTreeMap<&str, BTreeMap<&str, &Import>> = BTreeMap::new();
    for imp in &imports {
        edges
            .entry(&imp.from)
            .or_default()
            .entry(&imp.to)
            .or_insert(imp);
    }
    // Depth-first search; an edge back to a module on the path closes a cycle.
    fn visit<'a>(
        m: &'a str,
        edges: &BTreeMap<&'a str, BTreeMap<&'a str, &'a Import>>,
        path: &mut Vec<&'a str>,
        done: &mut BTreeSet<&'a str>,
        cycles: &mut BTreeSet<Vec<&'a str>>,
    ) {
        if let Some(at) = path.iter().position(|&p| p == m) {
            let mut cycle = path[at..].to_vec();
            let start = (0..cycle.len()).min_by_key(|&k| cycle[k]).unwrap_or(0);
            cycle.rotate_left(start);
            cycles.insert(cycle);
            return;
        }
        if !done.insert(m) {
            return;
        }
        path.push(m);
        for &to in edges.get(m).into_iter().flat_map(|e| e.keys()) {
            visit(to, edges, path, done, cycles);
        }
        path.pop();
    }
    let mut cycles = BTreeSet::new();
    let mut done = BTreeSet::new();
    for &m in edges.keys() {
        visit(m, &edges, &mut Vec::new(), &mut done, &mut cycles);
    }
    let report: Vec<String> = cycles
        .iter()
        .map(|c| {
            let steps: Vec<String> = (0..c.len())
                .map(|k| {
                    let (a, b) = (c[k], c[(k + 1) % c.len()]);
                    format!("  {a} -> {b}: {}", edges[a][b])
                })
                .collect();
            format!(
                "cycle {} -> {}:\n{}",
                c.join(" -> "),
                c[0],
                steps.join("\n")
            )
        })
        .collect();
    assert!(report.is_empty(), "\n{}\n", report.join("\n"));
}

#[test]
fn the_scan_reads_every_form_of_path_and_skips_the_rest() {
    let src = r##"use crate::{error::Error, io::{self, Column as Col}};
use crate::rng::*;
// crate::pipeline::in_a_comment
/* crate::pipeline::in_a_block /* nested */ crate::pipeline::still */
fn f<'a>(x: &'a str) {
    let s = "crate::report::in_a_string \" crate::report::escaped";
    let r = r#"crate::report::raw " "#;
    let c = '"';
    crate::tl::umap::umap_on::<f32>(x);
    super::super::pipeline::run();
    super::sibling();
}
#[cfg(test)]
mod tests {
    use crate::batch::in_a_test;
}
mod inner {
    fn g() {
        super::super::super::cart::score();
    }
}
"##;
    let code = without_test_items(strip(src));
    let got: Vec<(usize, String)> = root_paths(&code, 2)
        .into_iter()
        .map(|(at, l)| {
            (
                1 + code[..at].iter().filter(|&&c| c == '\n').count(),
                l.join("::"),
            )
        })
        .collect();
    let want = [
        (1, "error::Error"),
        (1, "io"),
        (1, "io::Column"),
        (2, "rng"),
        (9, "tl::umap::umap_on"),
        (10, "pipeline::run"),
        (19, "cart::score"),
    ];
    let want: Vec<(usize, String)> = want.iter().map(|&(l, p)| (l, p.to_string())).collect();
    assert_eq!(got, want);
    assert_eq!(mod_decls(&code), Vec::<String>::new());
    assert_eq!(
        mod_decls(&strip("pub mod a;\n#[cfg(test)]\nmod b;\n")),
        ["a", "b"]
    );
    assert_eq!(
        mod_decls(&without_test_items(strip(
            "pub mod a;\n#[cfg(test)]\nmod b;\n"
        ))),
        ["a"]
    );
}

/// Lines a function may span, signature to closing brace: a function longer than this is doing
/// several things and reads better as one function per step.
const MAX_FUNCTION_LINES: usize = 150;

/// Every `.rs` file under `dir`.
fn rust_files(dir: &Path, out: &mut Vec<PathBuf>) {
    for entry in std::fs::read_dir(dir).expect("src is readable").flatten() {
        let p = entry.path();
        if p.is_dir() {
            rust_files(&p, out);
        } else if p.extension().is_some_and(|e| e == "rs") {
            out.push(p);
        }
    }
}

/// (first line, lines spanned, name) of every function with a body in `s` (comments and
/// strings blanked).
fn functions(s: &[char]) -> Vec<(usize, usize, String)> {
    let line_of = |i: usize| s[..i].iter().filter(|&&c| c == '\n').count() + 1;
    let mut out = Vec::new();
    let mut i = 0;
    while i < s.len() {
        let at_word = i == 0 || !is_ident(s[i - 1]);
        if at_word
            && starts_with(s, i, "fn")
            && s.get(i + 2).is_some_and(|c| c.is_whitespace())
            && let Some((name, after)) = ident_at(s, skip_ws(s, i + 2))
        {
            // The body is the first `{` before any `;` (a declaration without a body).
            let open = (after..s.len()).find(|&k| s[k] == '{' || s[k] == ';');
            if let Some(open) = open.filter(|&k| s[k] == '{') {
                let close = bracket_end(s, open, '{', '}');
                out.push((line_of(i), line_of(close) - line_of(i) + 1, name));
            }
        }
        i += 1;
    }
    out
}

#[test]
fn no_function_is_longer_than_a_few_screens() {
    let src = Path::new(env!("CARGO_MANIFEST_DIR")).join("src");
    let mut files = Vec::new();
    rust_files(&src, &mut files);
    files.sort();
    let mut long = Vec::new();
    for file in &files {
        let code = strip(&std::fs::read_to_string(file).expect("readable source"));
        for (line, n, name) in functions(&code) {
            if n > MAX_FUNCTION_LINES {
                let rel = file
                    .strip_prefix(&src)
                    .unwrap_or(file)
                    .display()
                    .to_string();
                long.push(format!("src/{rel}:{line}: fn {name} spans {n} lines"));
            }
        }
    }
    assert!(
        long.is_empty(),
        "\nsplit these into one function per step (limit {MAX_FUNCTION_LINES} lines):\n{}\n",
        long.join("\n")
    );
}

#[test]
fn function_spans_are_counted_from_signature_to_closing_brace() {
    let code = strip(
        "fn a() {\n    let s = \"}\";\n}\n\ntrait T { fn b(&self); }\nfn c() -> u8 {\n    { 1 }\n}\n",
    );
    let fns = functions(&code);
    let found: Vec<(usize, usize, &str)> =
        fns.iter().map(|(l, n, f)| (*l, *n, f.as_str())).collect();
    assert_eq!(found, [(1, 3, "a"), (6, 3, "c")]);
}

/// The HDF5 C library is not thread-safe; the hdf5 crate serialises its own calls with a global
/// lock. A raw call into the C API (`hdf5_sys`) that does not take that lock races every other
/// thread reading or writing HDF5 (a segfault under the test harness's threads). Every `unsafe`
/// block in the library that calls an `H5*` function must be the body of `hdf5::sync::sync`.
#[test]
fn raw_hdf5_calls_hold_the_library_lock() {
    let src = Path::new(env!("CARGO_MANIFEST_DIR")).join("src");
    let mut files = Vec::new();
    rust_files(&src, &mut files);
    let mut report = Vec::new();
    let mut raw_calls = 0;
    for file in &files {
        let s = strip(&std::fs::read_to_string(file).expect("source is readable"));
        let mut i = 0;
        while i < s.len() {
            if (i == 0 || !is_ident(s[i - 1]))
                && starts_with(&s, i, "unsafe")
                && let Some(open) = (i + 6..s.len()).find(|&k| !s[k].is_whitespace())
                && s[open] == '{'
            {
                let close = bracket_end(&s, open, '{', '}');
                let body: String = s[open..close].iter().collect();
                let calls_h5 = body
                    .split(|c: char| !is_ident(c))
                    .any(|w| w.len() > 3 && w.starts_with("H5") && w[2..3] != *"_");
                if calls_h5 {
                    raw_calls += 1;
                    let before: String = s[i.saturating_sub(40)..i].iter().collect();
                    if !before.trim_end().ends_with("sync(||") {
                        let line = s[..i].iter().filter(|&&c| c == '\n').count() + 1;
                        report.push(format!("{}:{line}", file.display()));
                    }
                }
                i = close;
            }
            i += 1;
        }
    }
    assert!(raw_calls >= 3, "the scan found {raw_calls} raw HDF5 calls");
    assert!(
        report.is_empty(),
        "raw HDF5 calls outside hdf5::sync::sync:\n{}",
        report.join("\n")
    );
}

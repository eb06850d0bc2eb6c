//! The layering rules of ARCHITECTURE.md ("Invariants"), checked on the
//! source text: every `crate::…` path (in `use` lines and inline), every
//! `super::` path that climbs out of a top-level module, and every mention of
//! `iced` in `src/**/*.rs`.
//!
//! - `proto` imports nothing of ours;
//! - `server`, `client`, `media`, `net`, `lanif`, `transport`, `schedule` and
//!   `stats` never import `ui`;
//! - `client` never imports `server`, and `server` never imports `client`
//!   (test code, `#[cfg(test)] mod … { … }` blocks and files named
//!   `*tests.rs`, may: a client test starts a real host);
//! - `stats` imports nothing of ours;
//! - nothing outside `ui` mentions `iced`;
//! - the top-level modules import each other without a cycle.
//!
//! Comments are ignored; the scan is textual, so a path spelt inside a string
//! literal would count too (none does).

use std::collections::{BTreeMap, BTreeSet};
use std::path::{Path, PathBuf};

/// One reference from a file to a top-level module of the crate.
#[derive(Debug, Clone, PartialEq, Eq)]
struct Reference {
    line: usize,
    target: String,
    in_test: bool,
}

/// The module path of a file below `src/`: `client/bot.rs` → [client, bot],
/// `client/mod.rs` → [client], `net.rs` → [net].
fn module_path(rel: &Path) -> Vec<String> {
    let mut parts: Vec<String> =
        rel.iter().map(|c| c.to_string_lossy().trim_end_matches(".rs").to_string()).collect();
    if parts.last().is_some_and(|p| p == "mod") {
        parts.pop();
    }
    parts
}

/// The code of a line without its `//` comment.
fn code_of(line: &str) -> &str {
    match line.find("//") {
        Some(i) => &line[..i],
        None => line,
    }
}

fn is_ident(c: char) -> bool {
    c.is_ascii_alphanumeric() || c == '_'
}

/// The identifiers a path continues with after `at` in `code`: `x` for
/// `x::…`, or every top-level name of a `{a, b::c}` group.
fn heads_after(code: &str, at: usize) -> Vec<String> {
    let rest = &code[at..];
    if let Some(group) = rest.strip_prefix('{') {
        let mut depth = 0;
        let mut out = Vec::new();
        let mut current = String::new();
        let mut take = true;
        for c in group.chars() {
            match c {
                '{' => depth += 1,
                '}' if depth == 0 => break,
                '}' => depth -= 1,
                ',' if depth == 0 => {
                    take = true;
                    continue;
                }
                _ => {}
            }
            if depth == 0 && take {
                if is_ident(c) {
                    current.push(c);
                    continue;
                } else if !current.is_empty() {
                    out.push(std::mem::take(&mut current));
                    take = false;
                }
            }
        }
        if !current.is_empty() {
            out.push(current);
        }
        out
    } else {
        let name: String = rest.chars().take_while(|&c| is_ident(c)).collect();
        if name.is_empty() { vec![] } else { vec![name] }
    }
}

/// Every top-level module `source` (the file at module path `module`)
/// refers to, with the line and whether the line is test code.
fn references(module: &[String], source: &str, whole_file_is_test: bool) -> Vec<Reference> {
    let mut out = Vec::new();
    let mut in_test_block = false;
    let mut cfg_test_pending = false;
    for (n, raw) in source.lines().enumerate() {
        let code = code_of(raw);
        // Test modules in this crate are `#[cfg(test)]\nmod name {` at
        // column 0, closed by a `}` at column 0.
        if raw.starts_with("#[cfg(test)]") {
            cfg_test_pending = true;
            continue;
        }
        if cfg_test_pending {
            cfg_test_pending = false;
            if raw.starts_with("mod ") && raw.trim_end().ends_with('{') {
                in_test_block = true;
            }
        }
        if in_test_block && raw == "}" {
            in_test_block = false;
            continue;
        }
        let in_test = whole_file_is_test || in_test_block;
        let mut push = |target: String| {
            if target != "self" && target != "super" && target != "crate" {
                out.push(Reference { line: n + 1, target, in_test });
            }
        };
        // crate::x
        for (i, _) in code.match_indices("crate::") {
            if i > 0 && code[..i].ends_with(|c: char| is_ident(c)) {
                continue; // e.g. `$crate::` or `mycrate::`
            }
            for head in heads_after(code, i + "crate::".len()) {
                push(head);
            }
        }
        // super::super::x climbing to the crate root.
        for (i, _) in code.match_indices("super::") {
            if i > 0 && code[..i].ends_with(|c: char| is_ident(c) || c == ':') {
                continue; // counted from the first `super`
            }
            // Inside a test module the path starts one level deeper.
            let mut depth = module.len() + usize::from(in_test_block);
            let mut at = i;
            while code[at..].starts_with("super::") {
                depth = depth.saturating_sub(1);
                at += "super::".len();
            }
            if depth == 0 {
                for head in heads_after(code, at) {
                    push(head);
                }
            }
        }
        // iced, as a word (not "noticed").
        for (i, _) in code.match_indices("iced") {
            let before = code[..i].chars().next_back();
            let after = code[i + 4..].chars().next();
            let word_start = before.is_none_or(|c| !is_ident(c));
            let word_end = after.is_none_or(|c| !is_ident(c) || c == '_');
            if word_start && word_end {
                out.push(Reference { line: n + 1, target: "iced".into(), in_test });
            }
        }
    }
    out
}

/// The rule a reference from top-level module `from` breaks, if any.
fn violation(from: &str, r: &Reference) -> Option<&'static str> {
    let to = r.target.as_str();
    if to == from {
        return None;
    }
    if to == "iced" {
        return (from != "ui").then_some("nothing outside ui mentions iced");
    }
    // Every other target is one of our own top-level modules: a `crate::`
    // or root-climbing `super::` path cannot name anything else.
    match from {
        "proto" => return Some("proto imports nothing of ours"),
        "stats" => return Some("stats imports nothing of ours"),
        _ => {}
    }
    // `cli` is not here: it is the top (the runners of `sapora host` and
    // `sapora join` open the desktop app); the cycle check keeps `ui` from
    // importing it back.
    const BELOW_UI: [&str; 9] =
        ["server", "client", "media", "net", "lanif", "transport", "schedule", "stats", "guest"];
    if to == "ui" && BELOW_UI.contains(&from) {
        return Some("nothing below ui imports ui");
    }
    if !r.in_test && ((from == "client" && to == "server") || (from == "server" && to == "client"))
    {
        return Some("client and server never import each other (outside tests)");
    }
    None
}

/// Every `.rs` file under `src` with its path relative to `src`, its module
/// path and its references, skipping the binary and the crate root (they sit
/// above every layer).
fn sources(src: &Path) -> Vec<(PathBuf, Vec<String>, Vec<Reference>)> {
    let mut files = Vec::new();
    let mut stack = vec![src.to_path_buf()];
    while let Some(dir) = stack.pop() {
        for entry in std::fs::read_dir(&dir).unwrap() {
            let path = entry.unwrap().path();
            if path.is_dir() {
                stack.push(path);
            } else if path.extension().is_some_and(|e| e == "rs") {
                files.push(path);
            }
        }
    }
    files.sort();
    let mut out = Vec::new();
    for path in files {
        let rel: PathBuf = path.strip_prefix(src).unwrap().to_path_buf();
        let module = module_path(&rel);
        if module[0] == "main" || module[0] == "lib" {
            continue;
        }
        let name = rel.file_name().unwrap().to_string_lossy();
        let test_file = name.ends_with("tests.rs");
        let source = std::fs::read_to_string(&path).unwrap();
        let refs = references(&module, &source, test_file);
        out.push((rel, module, refs));
    }
    out
}

/// Every violation in the files under `src`, as "path:line: rule (-> target)".
fn scan(src: &Path) -> Vec<String> {
    let mut out = Vec::new();
    for (rel, module, refs) in sources(src) {
        for r in &refs {
            if let Some(rule) = violation(&module[0], r) {
                out.push(format!("src/{}:{}: {rule} (-> {})", rel.display(), r.line, r.target));
            }
        }
    }
    out
}

/// A cycle among `edges` (module → modules it imports), as the path of
/// module names that closes it, if there is one.
fn find_cycle(edges: &BTreeMap<String, BTreeSet<String>>) -> Option<Vec<String>> {
    fn visit(
        node: &str,
        edges: &BTreeMap<String, BTreeSet<String>>,
        done: &mut BTreeSet<String>,
        path: &mut Vec<String>,
    ) -> Option<Vec<String>> {
        if let Some(at) = path.iter().position(|n| n == node) {
            let mut cycle = path[at..].to_vec();
            cycle.push(node.to_string());
            return Some(cycle);
        }
        if done.contains(node) {
            return None;
        }
        path.push(node.to_string());
        for next in edges.get(node).into_iter().flatten() {
            if let Some(c) = visit(next, edges, done, path) {
                return Some(c);
            }
        }
        path.pop();
        done.insert(node.to_string());
        None
    }
    let mut done = BTreeSet::new();
    edges.keys().find_map(|n| visit(n, edges, &mut done, &mut Vec::new()))
}

#[test]
fn the_crate_keeps_its_layers() {
    let src = Path::new(env!("CARGO_MANIFEST_DIR")).join("src");
    let found = scan(&src);
    assert!(found.is_empty(), "layering violations:\n{}", found.join("\n"));
}

/// The top-level modules import each other without a cycle (test code
/// aside), so each layer builds on the ones below it only.
#[test]
fn top_level_modules_form_no_cycle() {
    let src = Path::new(env!("CARGO_MANIFEST_DIR")).join("src");
    let mut edges: BTreeMap<String, BTreeSet<String>> = BTreeMap::new();
    for (_, module, refs) in sources(&src) {
        let from = edges.entry(module[0].clone()).or_default();
        for r in refs {
            if !r.in_test && r.target != "iced" && r.target != module[0] {
                from.insert(r.target);
            }
        }
    }
    assert!(edges.contains_key("proto") && edges.contains_key("ui"), "{edges:?}");
    assert!(edges["ui"].contains("client"), "the scan sees ui's imports: {edges:?}");
    assert_eq!(find_cycle(&edges), None, "import cycle between top-level modules");
    // The cycle finder itself.
    let e = |pairs: &[(&str, &str)]| {
        let mut m: BTreeMap<String, BTreeSet<String>> = BTreeMap::new();
        for (a, b) in pairs {
            m.entry((*a).into()).or_default().insert((*b).into());
        }
        m
    };
    assert_eq!(find_cycle(&e(&[("a", "b"), ("b", "c"), ("a", "c")])), None);
    assert_eq!(find_cycle(&e(&[("a", "b"), ("b", "c"), ("c", "a")])).map(|c| c.len()), Some(4));
}

/// The checker itself: each rule catches a violation in every spelling the
/// crate uses, and leaves allowed references alone.
#[test]
fn the_checker_catches_each_kind_of_violation() {
    let m = |s: &str| s.split('/').map(String::from).collect::<Vec<_>>();
    let check = |module: &str, source: &str| -> Vec<&'static str> {
        let module = m(module);
        references(&module, source, false).iter().filter_map(|r| violation(&module[0], r)).collect()
    };
    assert_eq!(
        check("proto/messages", "HostKey(crate::net::random_u64())"),
        ["proto imports nothing of ours"]
    );
    assert_eq!(check("proto/messages", "use crate::{net, proto::Ports};").len(), 1);
    assert!(check("proto/messages", "use super::{DecodeError, MsgType};").is_empty());
    assert_eq!(
        check("proto/files", "use super::super::net::x;"),
        ["proto imports nothing of ours"]
    );
    assert_eq!(
        check("client/video", "let s = crate::server::video::bind(a);"),
        ["client and server never import each other (outside tests)"]
    );
    assert_eq!(check("server/host", "use crate::client::session::Client;").len(), 1);
    assert_eq!(check("server", "use super::client::Client;").len(), 1);
    assert_eq!(
        check("media/audio/device", "use crate::ui::Message;"),
        ["nothing below ui imports ui"]
    );
    assert_eq!(check("net", "use iced::widget;"), ["nothing outside ui mentions iced"]);
    assert!(check("ui/call", "use iced::widget; use crate::client::Client;").is_empty());
    // Comments and words that merely contain "iced" do not count.
    assert!(
        check("server/core", "// crate::ui and iced::x in a comment\nlet noticed = 1;").is_empty()
    );
    // Test modules may reach across client/server, but not up to ui.
    let test_block = "fn f() {}\n#[cfg(test)]\nmod tests {\n    use crate::server::beacon::run_beacon;\n    use crate::ui::X;\n}\nuse crate::server::Y;\n";
    assert_eq!(
        check("client/discover", test_block),
        [
            "nothing below ui imports ui",
            "client and server never import each other (outside tests)"
        ]
    );
}

//! Checks the chapters' diagrams against the code, the way `lessons.rs`
//! checks their excerpts.
//!
//! A diagram is a fenced ```` ```mermaid ```` block (GitHub draws it, and the
//! book draws it through mdbook-mermaid). Each one follows a line
//! `<!-- diagram: path/a.rs path/b.rs -->` naming the files whose behaviour
//! it draws. What a diagram can get wrong without anyone noticing is its
//! names and numbers, so every such token in it must still appear in one of
//! those files:
//!
//! * numbers of three or four digits (status codes such as 304 and 412,
//!   close codes such as 1001, durations such as 200 ms);
//! * header names (`If-Match`, `Last-Event-ID`), matched without regard to
//!   case, or in the constant's spelling (`IF_MATCH`);
//! * code names: `CamelCase` types and variants (`ClientClosed`), and
//!   `snake_case` or `UPPER_CASE` items (`pong_timeout`, `REPLY_TIMEOUT`).
//!
//! The JSON in a diagram is not checked token by token: its field names are
//! lower case single words, which say little on their own. A diagram without
//! the comment line is reported (on stderr) and not checked. And every
//! chapter that `docs/SUMMARY.md` lists under a number has at least one
//! diagram.

use std::fs;
use std::path::{Path, PathBuf};

fn root() -> PathBuf {
    Path::new(env!("CARGO_MANIFEST_DIR")).join("../..").canonicalize().expect("repo root")
}

/// Each diagram of `chapter`: (files named in its comment, its lines).
fn diagrams(chapter: &str) -> Vec<(Vec<String>, String)> {
    let mut out = Vec::new();
    let mut named: Option<Vec<String>> = None;
    let mut lines = chapter.lines();
    while let Some(line) = lines.next() {
        if let Some(rest) = line.trim().strip_prefix("<!-- diagram:") {
            let files = rest.trim_end_matches("-->").split_whitespace().map(str::to_owned);
            named = Some(files.collect());
            continue;
        }
        if line.trim_start().starts_with("```mermaid") {
            let body: Vec<&str> = lines.by_ref().take_while(|l| !l.starts_with("```")).collect();
            out.push((named.take().unwrap_or_default(), body.join("\n")));
        } else if !line.trim().is_empty() {
            // The comment names the diagram right below it, nothing further.
            named = None;
        }
    }
    out
}

/// The tokens of `diagram` that must stand in its files.
fn tokens(diagram: &str) -> Vec<String> {
    let mut out: Vec<String> = Vec::new();
    let words = diagram.split(|c: char| !(c.is_ascii_alphanumeric() || c == '_' || c == '-'));
    for word in words.map(|w| w.trim_matches('-')).filter(|w| !w.is_empty()) {
        let number = word.len() >= 3 && word.len() <= 4 && word.bytes().all(|b| b.is_ascii_digit());
        let snake = word.contains('_')
            && !word.starts_with('_')
            && word.bytes().all(|b| b.is_ascii_alphanumeric() || b == b'_');
        let header = word.contains('-')
            && word.split('-').all(|p| p.starts_with(|c: char| c.is_ascii_uppercase()))
            && word.split('-').next().is_some_and(|p| p.bytes().any(|b| b.is_ascii_lowercase()));
        let camel = word.starts_with(|c: char| c.is_ascii_uppercase())
            && word.bytes().all(|b| b.is_ascii_alphanumeric())
            && word.bytes().any(|b| b.is_ascii_lowercase())
            && word.bytes().skip(1).any(|b| b.is_ascii_uppercase());
        if (number || snake || header || camel) && !out.iter().any(|t| t == word) {
            out.push(word.to_owned());
        }
    }
    out
}

/// Whether `token` stands in `source`: exactly, or for a header name in any
/// case or as a constant (`If-Match`, `if-match`, `IF_MATCH`).
fn stands_in(token: &str, source: &str) -> bool {
    if as_a_word(token, source) {
        return true;
    }
    if token.contains('-') {
        let lower = source.to_ascii_lowercase();
        return as_a_word(&token.to_ascii_lowercase(), &lower)
            || as_a_word(&token.to_ascii_uppercase().replace('-', "_"), source);
    }
    false
}

/// Whether `token` occurs in `source` with no letter, digit or `_` glued to
/// either end: "200" does not stand in "2000", nor "1001" in "10010".
fn as_a_word(token: &str, source: &str) -> bool {
    let glued = |c: Option<char>| c.is_some_and(|c| c.is_ascii_alphanumeric() || c == '_');
    source.match_indices(token).any(|(at, _)| {
        !glued(source[..at].chars().next_back())
            && !glued(source[at + token.len()..].chars().next())
    })
}

/// The chapters SUMMARY.md lists whose names start with a number.
fn numbered_chapters(root: &Path) -> Vec<String> {
    let summary = fs::read_to_string(root.join("docs/SUMMARY.md")).expect("docs/SUMMARY.md");
    summary
        .split("](")
        .skip(1)
        .filter_map(|p| p.split_once(')').map(|(t, _)| t.to_owned()))
        .filter(|t| t.len() > 3 && t.as_bytes()[..2].iter().all(u8::is_ascii_digit))
        .collect()
}

#[test]
fn every_numbered_chapter_has_a_diagram_and_each_names_real_things() {
    let root = root();
    let chapters = numbered_chapters(&root);
    assert!(chapters.len() >= 13, "SUMMARY.md lists only {chapters:?}");
    let mut problems = Vec::new();
    let mut checked = 0;
    for chapter in &chapters {
        let text = fs::read_to_string(root.join("docs").join(chapter)).expect("a listed chapter");
        let found = diagrams(&text);
        if found.is_empty() {
            problems.push(format!("{chapter}: no ```mermaid diagram"));
        }
        for (i, (files, body)) in found.iter().enumerate() {
            let n = i + 1;
            if files.is_empty() {
                // Said, not failed: a diagram may draw what no file of ours
                // spells out (a protocol default, say).
                eprintln!(
                    "{chapter}: diagram {n} is not checked against the code: it has no \
                     `<!-- diagram: files -->` line above it"
                );
                continue;
            }
            checked += 1;
            let mut sources = String::new();
            for file in files {
                match fs::read_to_string(root.join(file)) {
                    Ok(text) => sources.push_str(&text),
                    Err(e) => problems.push(format!("{chapter}: diagram {n} names {file}: {e}")),
                }
            }
            for token in tokens(body) {
                if !stands_in(&token, &sources) {
                    problems.push(format!(
                        "{chapter}: diagram {n} says {token:?}, which none of {files:?} does"
                    ));
                }
            }
        }
    }
    assert!(problems.is_empty(), "diagrams out of step:\n  {}", problems.join("\n  "));
    // Chapters 1 to 13 have a checked diagram each (chapter 4 two); losing
    // the comment lines must not quietly turn the check off.
    assert!(checked >= 14, "only {checked} diagrams are checked against the code");
}

#[test]
fn the_diagram_check_can_fail() {
    let chapter = "text\n<!-- diagram: a.rs -->\n```mermaid\nsequenceDiagram\n    \
                   C->>S: PATCH, If-Match \"v1\"\n    S->>C: 412 Precondition Failed, \
                   ClientClosed, pong_timeout, REPLY_TIMEOUT (200 ms, 12 s)\n```\n\
                   ```mermaid\nflowchart LR\n```\n";
    let found = diagrams(chapter);
    assert_eq!(found.len(), 2);
    assert_eq!(found[0].0, vec!["a.rs".to_owned()]);
    assert!(found[1].0.is_empty(), "a comment names only the diagram right below it");
    let t = tokens(&found[0].1);
    for want in ["If-Match", "412", "ClientClosed", "pong_timeout", "REPLY_TIMEOUT", "200"] {
        assert!(t.contains(&want.to_owned()), "{want} missing from {t:?}");
    }
    assert!(!t.contains(&"12".to_owned()) && !t.contains(&"PATCH".to_owned()), "{t:?}");
    assert!(stands_in("If-Match", "headers.get(IF_MATCH)"));
    assert!(stands_in("If-Match", "\"if-match\""));
    assert!(!stands_in("If-None-Match", "IF_MATCH"));
    assert!(!stands_in("412", "StatusCode::PRECONDITION_FAILED"));
    assert!(!stands_in("200", "RETRY_MS: u64 = 2000"), "a number inside a longer one");
    assert!(!stands_in("1001", "10010"));
    assert!(stands_in("200", "assert_eq!(resp.status, 200);"));
}

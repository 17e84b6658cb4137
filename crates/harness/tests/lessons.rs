//! Checks the lessons themselves, the way rustlings checks its exercises.
//!
//! A lesson is a crate under `crates/` with a `src/main.rs` (the demo), other
//! than `bench`. For every lesson this test asks:
//!
//! * is there a chapter `docs/NN-<crate>.md`, listed in `docs/README.md`?
//! * does README.md's table have a row with `cargo run -p <crate>` and a link
//!   to that chapter?
//! * does `src/lib.rs` open with a `//!` header whose run command names this
//!   package (and no other)?
//! * does the justfile have a recipe named after it?
//! * is there at least one test under `tests/`?
//!
//! And for every chapter: every relative link points at a file that exists,
//! and every excerpt still stands in the file it names. An excerpt is a fenced
//! code block right after a line `<!-- excerpt: path/from/repo/root -->`; its
//! lines must appear in that file in order and contiguously, except that a
//! line `// ...` in the excerpt stands for lines left out.

use std::fs;
use std::path::{Path, PathBuf};

fn root() -> PathBuf {
    Path::new(env!("CARGO_MANIFEST_DIR")).join("../..").canonicalize().expect("repo root")
}

fn read(path: &Path) -> String {
    fs::read_to_string(path).unwrap_or_else(|e| panic!("reading {}: {e}", path.display()))
}

/// The lesson crates: every crate with a demo binary, except the bench.
fn lessons() -> Vec<String> {
    let mut out: Vec<String> = fs::read_dir(root().join("crates"))
        .expect("crates/ exists")
        .filter_map(|e| e.ok())
        .filter(|e| e.path().join("src/main.rs").exists())
        .map(|e| e.file_name().to_string_lossy().into_owned())
        .filter(|name| name != "bench")
        .collect();
    out.sort();
    out
}

/// `docs/NN-<lesson>.md`, if there is exactly one.
fn chapter_of(lesson: &str) -> Option<String> {
    let mut found: Vec<String> = fs::read_dir(root().join("docs"))
        .ok()?
        .filter_map(|e| e.ok())
        .map(|e| e.file_name().to_string_lossy().into_owned())
        .filter(|f| {
            f.len() > 3
                && f.as_bytes()[..2].iter().all(u8::is_ascii_digit)
                && f[2..].strip_prefix('-') == Some(&format!("{lesson}.md"))
        })
        .collect();
    (found.len() == 1).then(|| found.remove(0))
}

#[test]
fn there_are_lessons() {
    let l = lessons();
    assert!(l.contains(&"tcp-echo".to_owned()), "found lessons: {l:?}");
}

#[test]
fn every_lesson_is_complete() {
    let root = root();
    let readme = read(&root.join("README.md"));
    let reading_order = read(&root.join("docs/README.md"));
    let justfile = read(&root.join("justfile"));
    let mut problems = Vec::new();
    for lesson in lessons() {
        let dir = root.join("crates").join(&lesson);
        match chapter_of(&lesson) {
            None => problems.push(format!("{lesson}: no chapter docs/NN-{lesson}.md")),
            Some(ch) => {
                if !readme.contains(&format!("docs/{ch}")) {
                    problems.push(format!("{lesson}: README.md does not link docs/{ch}"));
                }
                if !reading_order.contains(&format!("({ch})")) {
                    problems.push(format!("{lesson}: docs/README.md does not list {ch}"));
                }
            }
        }
        let run = format!("`cargo run -p {lesson}`");
        if !readme.lines().any(|l| l.starts_with('|') && l.contains(&run)) {
            problems.push(format!("{lesson}: no README table row with {run}"));
        }
        let lib = dir.join("src/lib.rs");
        if lib.exists() {
            let header: String = read(&lib)
                .lines()
                .take_while(|l| l.starts_with("//!"))
                .collect::<Vec<_>>()
                .join("\n");
            if header.is_empty() {
                problems.push(format!("{lesson}: src/lib.rs has no //! header"));
            }
            if !header.contains(&format!("cargo run -p {lesson}")) {
                problems
                    .push(format!("{lesson}: the //! header does not say `cargo run -p {lesson}`"));
            }
            for other in header.split("cargo run -p ").skip(1) {
                let named: String =
                    other.chars().take_while(|c| c.is_ascii_alphanumeric() || *c == '-').collect();
                if named != lesson && named != "bench" {
                    problems
                        .push(format!("{lesson}: the //! header runs another package: {named}"));
                }
            }
        } else {
            problems.push(format!("{lesson}: no src/lib.rs"));
        }
        if !justfile
            .lines()
            .any(|l| l.starts_with(&format!("{lesson} ")) || l.starts_with(&format!("{lesson}:")))
        {
            problems.push(format!("{lesson}: no justfile recipe named {lesson}"));
        }
        let has_test = fs::read_dir(dir.join("tests")).into_iter().flatten().flatten().any(|e| {
            let text = fs::read_to_string(e.path()).unwrap_or_default();
            text.contains("#[test]") || text.contains("#[tokio::test")
        });
        if !has_test {
            problems.push(format!("{lesson}: no test under tests/"));
        }
    }
    assert!(problems.is_empty(), "lessons are incomplete:\n  {}", problems.join("\n  "));
}

#[test]
fn readme_rows_name_real_crates() {
    let root = root();
    let readme = read(&root.join("README.md"));
    for line in readme.lines().filter(|l| l.starts_with('|')) {
        for part in line.split("cargo run -p ").skip(1) {
            let name: String =
                part.chars().take_while(|c| c.is_ascii_alphanumeric() || *c == '-').collect();
            assert!(
                root.join("crates").join(&name).is_dir(),
                "README row names crate {name}, which does not exist"
            );
        }
    }
}

/// Every `[text](target)` whose target is a relative path.
fn relative_links(markdown: &str) -> Vec<String> {
    let mut out = Vec::new();
    for piece in markdown.split("](").skip(1) {
        let Some(end) = piece.find(')') else { continue };
        let target = &piece[..end];
        let target = target.split('#').next().unwrap_or("");
        if target.is_empty() || target.contains("://") || target.starts_with("mailto:") {
            continue;
        }
        out.push(target.to_owned());
    }
    out
}

fn markdown_files() -> Vec<PathBuf> {
    let root = root();
    let mut files = vec![root.join("README.md")];
    files.extend(
        fs::read_dir(root.join("docs"))
            .expect("docs/")
            .filter_map(|e| e.ok())
            .map(|e| e.path())
            .filter(|p| p.extension().is_some_and(|x| x == "md")),
    );
    files
}

#[test]
fn relative_links_point_at_files_that_exist() {
    let mut broken = Vec::new();
    for file in markdown_files() {
        let base = file.parent().expect("a file has a folder");
        for link in relative_links(&read(&file)) {
            if !base.join(&link).exists() {
                broken.push(format!("{} -> {link}", file.display()));
            }
        }
    }
    assert!(broken.is_empty(), "broken links:\n  {}", broken.join("\n  "));
}

/// Each excerpt: (chapter, named file, lines of the code block).
fn excerpts(chapter: &str) -> Vec<(String, Vec<String>)> {
    let mut out = Vec::new();
    let mut lines = chapter.lines();
    while let Some(line) = lines.next() {
        let Some(rest) = line.trim().strip_prefix("<!-- excerpt:") else { continue };
        let path = rest.trim_end_matches("-->").trim().to_owned();
        let fence = lines.next().unwrap_or("");
        assert!(fence.starts_with("```"), "excerpt of {path} must be followed by a code fence");
        let body: Vec<String> =
            lines.by_ref().take_while(|l| !l.starts_with("```")).map(str::to_owned).collect();
        out.push((path, body));
    }
    out
}

/// Whether `excerpt` stands in `source`: each run of lines between `// ...`
/// markers appears contiguously, and the runs appear in order.
fn stands_in(source: &str, excerpt: &[String]) -> bool {
    let src: Vec<&str> = source.lines().map(str::trim_end).collect();
    let mut from = 0;
    for run in excerpt.split(|l| l.trim() == "// ...") {
        let run: Vec<&str> = run.iter().map(|l| l.trim_end()).collect();
        if run.is_empty() {
            continue;
        }
        if from + run.len() > src.len() {
            return false;
        }
        match (from..=src.len() - run.len()).find(|&i| src[i..i + run.len()] == run[..]) {
            Some(i) => from = i + run.len(),
            None => return false,
        }
    }
    true
}

#[test]
fn every_excerpt_still_stands_in_its_file() {
    let root = root();
    let mut stale = Vec::new();
    let mut count = 0;
    for file in markdown_files() {
        for (path, body) in excerpts(&read(&file)) {
            count += 1;
            let source = fs::read_to_string(root.join(&path)).unwrap_or_default();
            if !stands_in(&source, &body) {
                stale.push(format!("{}: excerpt of {path} no longer matches", file.display()));
            }
        }
    }
    assert!(count > 0, "the chapters quote no excerpts at all; did the marker change?");
    assert!(stale.is_empty(), "stale excerpts:\n  {}", stale.join("\n  "));
}

#[test]
fn excerpt_matching_can_fail() {
    let src = "fn a() {\n    one();\n    two();\n}\n";
    let ok = |lines: &[&str]| lines.iter().map(|s| s.to_string()).collect::<Vec<_>>();
    assert!(stands_in(src, &ok(&["    one();", "    two();"])));
    assert!(stands_in(src, &ok(&["fn a() {", "// ...", "}"])));
    assert!(!stands_in(src, &ok(&["    two();", "    one();"])));
    assert!(!stands_in(src, &ok(&["    three();"])));
    // A file that is gone (or shorter than the excerpt) is a stale excerpt,
    // not a crash of the checker.
    assert!(!stands_in("", &ok(&["    one();"])));
    assert!(!stands_in(src, &ok(&["fn a() {", "    one();", "    two();", "}", "extra"])));
}

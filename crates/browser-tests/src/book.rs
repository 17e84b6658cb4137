//! The book's one preprocessor of its own: links that leave `docs/`.
//!
//! The chapters link to the code with relative paths such as
//! `../crates/tcp-echo/src/lib.rs`, which is right in the repository (on a
//! code-hosting site, or in an editor). mdBook copies only `docs/` into the
//! book, which it writes to `target/book/`, so from there the same link
//! would point at `target/crates/...`: nothing. This preprocessor rewrites
//! each link that leaves `docs/` so that it leads from the built page to the
//! same file in the repository (`../../crates/...` from `target/book/`).
//! The book then reaches the code when it is opened from disk (`mdbook build
//! docs --open`) or served from the repository's root, as the browser test
//! does.
//!
//! Inside the book it fixes one thing mdBook leaves broken: a chapter named
//! `README.md` becomes the page `index.html`, but a link to it becomes
//! `README.html`; so such a link is pointed at `index.md` first.
//!
//! A link to a Markdown file outside the book (`../README.md`) would be
//! turned into `.html` by mdBook, which rewrites every relative `.md` link it
//! sees; so its dot is written `%2E`, which the browser decodes back when it
//! asks for the file.
//!
//! mdBook runs it as `book-links supports html` (answer: yes, by exiting 0),
//! then `book-links` with `[context, book]` as JSON on stdin, and reads the
//! book back on stdout.

use std::path::{Component, Path, PathBuf};

use serde_json::Value;

/// Rewrites every chapter of the book in `input` (mdBook's `[context, book]`)
/// and returns the book.
pub fn preprocess(input: &str) -> Result<Value, String> {
    let v: Value = serde_json::from_str(input).map_err(|e| format!("mdBook's input: {e}"))?;
    let [ctx, book]: [Value; 2] = serde_json::from_value(v)
        .map_err(|e| format!("mdBook's input is not [context, book]: {e}"))?;
    let root = ctx["root"].as_str().ok_or("no root in mdBook's context")?;
    let root = Path::new(root);
    let src = root.join(ctx["config"]["book"]["src"].as_str().unwrap_or("src"));
    let build = root.join(ctx["config"]["build"]["build-dir"].as_str().unwrap_or("book"));
    let mut book = book;
    rewrite_items(&mut book["items"], &normalize(&src), &normalize(&build));
    Ok(book)
}

fn rewrite_items(items: &mut Value, src: &Path, build: &Path) {
    let Some(items) = items.as_array_mut() else { return };
    for item in items {
        let Some(chapter) = item.get_mut("Chapter") else { continue };
        let dir = chapter["path"].as_str().map(|p| Path::new(p).parent().unwrap_or(Path::new("")));
        if let (Some(dir), Some(content)) =
            (dir.map(Path::to_path_buf), chapter["content"].as_str())
        {
            let new = rewrite_links(content, &src.join(&dir), &build.join(&dir), src);
            chapter["content"] = Value::String(new);
        }
        rewrite_items(&mut chapter["sub_items"], src, build);
    }
}

/// `markdown` (a chapter that stands in `chapter_dir` of the source tree
/// `src`, and whose page will be written to `page_dir`) with every inline
/// link `](target)` that leaves `src` rewritten to reach the same file from
/// `page_dir`. Links inside fenced code blocks are left alone.
pub fn rewrite_links(markdown: &str, chapter_dir: &Path, page_dir: &Path, src: &Path) -> String {
    let mut out = String::with_capacity(markdown.len());
    let mut in_fence = false;
    for line in markdown.split_inclusive('\n') {
        let t = line.trim_start();
        if t.starts_with("```") || t.starts_with("~~~") {
            in_fence = !in_fence;
        }
        if in_fence {
            out.push_str(line);
            continue;
        }
        let mut rest = line;
        while let Some(at) = rest.find("](") {
            let (before, after) = rest.split_at(at + 2);
            out.push_str(before);
            let end = after.find(')').unwrap_or(after.len());
            let target = &after[..end];
            match rewrite_target(target, chapter_dir, page_dir, src) {
                Some(new) => out.push_str(&new),
                None => out.push_str(target),
            }
            rest = &after[end..];
        }
        out.push_str(rest);
    }
    out
}

/// The rewritten target, if `target` is a relative path that leaves `src`
/// or names a `README.md` in it.
fn rewrite_target(target: &str, chapter_dir: &Path, page_dir: &Path, src: &Path) -> Option<String> {
    if target.contains("://") || target.starts_with(['/', '#', '<']) || target.contains(' ') {
        return None;
    }
    let (path, fragment) = match target.split_once('#') {
        Some((p, f)) => (p, Some(f)),
        None => (target, None),
    };
    let file = normalize(&chapter_dir.join(path));
    if file.starts_with(src) {
        let dir = path.strip_suffix("README.md").filter(|d| d.is_empty() || d.ends_with('/'))?;
        return Some(format!(
            "{dir}index.md{}",
            fragment.map(|f| format!("#{f}")).unwrap_or_default()
        ));
    }
    let mut new = relative(page_dir, &file).to_string_lossy().replace('\\', "/");
    if path.ends_with('/') {
        new.push('/');
    }
    if let Some(stem) = new.strip_suffix(".md") {
        new = format!("{stem}%2Emd");
    }
    if let Some(f) = fragment {
        new.push('#');
        new.push_str(f);
    }
    Some(new)
}

/// `path` with `.` and `..` taken out, without asking the file system.
pub fn normalize(path: &Path) -> PathBuf {
    let mut out = PathBuf::new();
    for c in path.components() {
        match c {
            Component::CurDir => {}
            Component::ParentDir => {
                if !out.pop() {
                    out.push("..");
                }
            }
            other => out.push(other),
        }
    }
    out
}

/// The relative path from directory `from` to `to` (both normalized).
fn relative(from: &Path, to: &Path) -> PathBuf {
    let from: Vec<_> = from.components().collect();
    let to: Vec<_> = to.components().collect();
    let common = from.iter().zip(&to).take_while(|(a, b)| a == b).count();
    let mut out = PathBuf::new();
    for _ in common..from.len() {
        out.push("..");
    }
    for c in &to[common..] {
        out.push(c);
    }
    out
}

#[cfg(test)]
mod tests {
    use super::*;

    fn rw(md: &str, chapter_dir: &str) -> String {
        let src = Path::new("/repo/docs");
        let build = Path::new("/repo/target/book");
        rewrite_links(md, &src.join(chapter_dir), &build.join(chapter_dir), src)
    }

    #[test]
    fn links_into_the_code_reach_it_from_the_built_page() {
        assert_eq!(
            rw("see [lib.rs](../crates/tcp-echo/src/lib.rs), then", ""),
            "see [lib.rs](../../crates/tcp-echo/src/lib.rs), then"
        );
        assert_eq!(rw("[h](../crates/harness)", ""), "[h](../../crates/harness)");
        // One level deeper in the book is one more step up.
        assert_eq!(rw("[x](../../Cargo.toml)", "numbers"), "[x](../../../Cargo.toml)");
    }

    #[test]
    fn links_inside_the_book_are_left_for_mdbook() {
        for md in [
            "[c](02-udp-echo.md#the-wire)",
            "[n](numbers/chat.md)",
            "[up](../03-threads-vs-epoll.md)",
            "[web](https://example.org/a/../b)",
            "[here](#what-goes-wrong)",
        ] {
            let dir = if md.contains("(../03") { "numbers" } else { "" };
            assert_eq!(rw(md, dir), md);
        }
    }

    #[test]
    fn markdown_outside_the_book_keeps_its_name_and_anchor() {
        assert_eq!(
            rw("[map](../README.md#the-notes-and-the-lessons)", ""),
            "[map](../../README%2Emd#the-notes-and-the-lessons)"
        );
    }

    #[test]
    fn a_readme_in_the_book_is_reached_as_its_index_page() {
        assert_eq!(rw("[n](numbers/README.md)", ""), "[n](numbers/index.md)");
        assert_eq!(rw("[up](../README.md#x)", "numbers"), "[up](../index.md#x)");
        assert_eq!(rw("[n](numbers/NOT-README.md)", ""), "[n](numbers/NOT-README.md)");
    }

    #[test]
    fn code_blocks_are_not_touched() {
        let md = "```text\n[a](../crates/x)\n```\n[a](../crates/x)\n";
        assert_eq!(rw(md, ""), "```text\n[a](../crates/x)\n```\n[a](../../crates/x)\n");
    }

    #[test]
    fn the_whole_book_comes_back_with_its_chapters_rewritten() {
        let input = serde_json::json!([
            {"root": "/repo/docs", "config": {"book": {"src": "."},
             "build": {"build-dir": "../target/book"}}},
            {"items": [{"Chapter": {"name": "A", "content": "[l](../crates/a/src/lib.rs)",
              "path": "01-a.md", "sub_items": [{"Chapter": {"name": "B",
              "content": "[l](../../crates/b)", "path": "numbers/b.md", "sub_items": []}}]}},
              {"PartTitle": "Part 2"}]}
        ]);
        let book = preprocess(&input.to_string()).expect("a valid input");
        let a = &book["items"][0]["Chapter"];
        assert_eq!(a["content"], "[l](../../crates/a/src/lib.rs)");
        assert_eq!(a["sub_items"][0]["Chapter"]["content"], "[l](../../../crates/b)");
        assert_eq!(book["items"][1]["PartTitle"], "Part 2");
    }
}

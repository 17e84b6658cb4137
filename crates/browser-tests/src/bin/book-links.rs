//! The book's preprocessor for links that leave `docs/` (see
//! `browser_tests::book`). mdBook runs it from `docs/book.toml`:
//! `book-links supports html` first, then `book-links` with the book on stdin.

use std::io::Read;
use std::process::ExitCode;

fn main() -> ExitCode {
    // Every renderer is fine: the rewritten links are plain relative paths.
    if std::env::args().nth(1).as_deref() == Some("supports") {
        return ExitCode::SUCCESS;
    }
    let mut input = String::new();
    if let Err(e) = std::io::stdin().read_to_string(&mut input) {
        eprintln!("book-links: reading the book from stdin: {e}");
        return ExitCode::FAILURE;
    }
    match browser_tests::book::preprocess(&input) {
        Ok(book) => {
            println!("{book}");
            ExitCode::SUCCESS
        }
        Err(e) => {
            eprintln!("book-links: {e}");
            ExitCode::FAILURE
        }
    }
}

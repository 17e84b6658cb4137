//! The browser driver itself works: a page served from a test opens in
//! headless Chromium, a click runs the page's script, and the text it writes
//! is seen from Rust.

use browser_tests::Browser;
use harness::TaskServer;
use tokio::io::{AsyncReadExt, AsyncWriteExt};

const PAGE: &str = "<!doctype html><title>smoke</title>\
<input id=name><button id=go onclick=\"document.getElementById('out').textContent = \
'hello, ' + document.getElementById('name').value\">go</button><p id=out></p>";

/// Serves PAGE to every request on the connection it gets, until cancelled.
async fn page_server() -> TaskServer<()> {
    TaskServer::start(|listener, token| async move {
        loop {
            let (mut s, _) = tokio::select! {
                () = token.cancelled() => return,
                r = listener.accept() => match r { Ok(a) => a, Err(_) => continue },
            };
            tokio::spawn(async move {
                let mut buf = vec![0u8; 8192];
                let _ = s.read(&mut buf).await;
                let resp = format!(
                    "HTTP/1.1 200 OK\r\nContent-Type: text/html\r\nContent-Length: {}\r\n\
                     Connection: close\r\n\r\n{PAGE}",
                    PAGE.len()
                );
                let _ = s.write_all(resp.as_bytes()).await;
            });
        }
    })
    .await
    .expect("start the page server")
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
#[ignore = "needs Debian's chromium and chromium-driver; run `just browser`"]
async fn a_click_in_headless_chromium_is_seen_from_rust() {
    let server = page_server().await;
    let browser = Browser::start().await;
    browser.goto(&format!("http://{}/", server.addr())).await;
    browser.fill("#name", "browser").await;
    browser.click("#go").await;
    browser.wait_for_text("hello, browser").await;
    drop(browser);
    server.shutdown().await;
}

//! The web console: its HTTP surface (page and assets with their content types, cache headers
//! and Content-Security-Policy; sign-in, the session cookie and the CSRF header the API
//! requires with it; sign-out) over raw HTTP, and the end-to-end test in real headless
//! Chromium (`tests/console/e2e.mjs`, playwright-core driving Debian's `/usr/bin/chromium`)
//! against `stepline dev` started in-process with access keys on a free port.
//!
//! The modules without DOM (layout, graph model, history analysis) also have unit tests under
//! Node's test runner (`tests/console/unit.test.mjs`). The browser test needs Node.js, `/usr/bin/chromium` and `tests/console/node_modules`
//! (`npm ci` is run when it is missing; it downloads no browser). It fails loudly, never
//! skips, when any of them is missing (`.ci/services` installs them). Screenshots go to
//! `target/console-screenshots/`.

use std::net::SocketAddr;
use std::path::{Path, PathBuf};
use std::process::Command;
use std::time::Duration;
use stepline_engine::api::ApiConfig;
use stepline_engine::runtime::coordinator::CoordinatorConfig;
use stepline_engine::server::{run_dev, ServerConfig};
use tokio::io::{AsyncReadExt, AsyncWriteExt};
use tokio_util::sync::CancellationToken;

const KEY_ID: &str = "console-test";
const SECRET: &str = "console-s3cr3t";

/// A local address nothing listens on (shared by the tests that start servers).
pub(crate) fn free_port() -> SocketAddr {
    let l = std::net::TcpListener::bind("127.0.0.1:0").expect("bind a free port");
    l.local_addr().expect("local addr")
}

fn config(listen: SocketAddr, open: bool) -> ServerConfig {
    ServerConfig {
        listen,
        coordinator: CoordinatorConfig {
            partitions: 4,
            owner: format!("console-{}", listen.port()),
            token_key: b"console-test-key".to_vec(),
            timer_poll_ms: 50,
            ..Default::default()
        },
        retention: Duration::from_secs(3600),
        api: ApiConfig {
            access_keys: if open {
                Default::default()
            } else {
                [(KEY_ID.to_string(), SECRET.to_string())].into()
            },
            open,
        },
        namespace: None,
    }
}

async fn start(open: bool) -> (SocketAddr, CancellationToken, tokio::task::JoinHandle<()>) {
    let addr = free_port();
    let shutdown = CancellationToken::new();
    let server = tokio::spawn({
        let (config, shutdown) = (config(addr, open), shutdown.clone());
        async move { run_dev(config, shutdown).await.expect("dev server") }
    });
    for _ in 0..200 {
        if tokio::net::TcpStream::connect(addr).await.is_ok() {
            return (addr, shutdown, server);
        }
        tokio::time::sleep(Duration::from_millis(50)).await;
    }
    panic!("the Stepline server did not start listening on {addr}");
}

pub(crate) struct Answer {
    pub status: u16,
    headers: Vec<(String, String)>,
    pub body: String,
}

impl Answer {
    fn header(&self, name: &str) -> Option<&str> {
        self.headers
            .iter()
            .find(|(k, _)| k.eq_ignore_ascii_case(name))
            .map(|(_, v)| v.as_str())
    }
}

/// One HTTP/1.1 request on a fresh connection.
pub(crate) async fn http(
    addr: SocketAddr,
    method: &str,
    path: &str,
    headers: &[(&str, &str)],
    body: &str,
) -> Answer {
    let mut stream = tokio::net::TcpStream::connect(addr).await.expect("connect");
    let mut req = format!(
        "{method} {path} HTTP/1.1\r\nhost: {addr}\r\nconnection: close\r\ncontent-length: {}\r\n",
        body.len()
    );
    for (k, v) in headers {
        req.push_str(&format!("{k}: {v}\r\n"));
    }
    req.push_str("\r\n");
    req.push_str(body);
    stream.write_all(req.as_bytes()).await.expect("write");
    let mut raw = Vec::new();
    stream.read_to_end(&mut raw).await.expect("read");
    let text = String::from_utf8_lossy(&raw).to_string();
    let (head, body) = text.split_once("\r\n\r\n").unwrap_or((&text, ""));
    let mut lines = head.lines();
    let status = lines
        .next()
        .and_then(|l| l.split_whitespace().nth(1))
        .and_then(|s| s.parse().ok())
        .expect("status line");
    let headers = lines
        .filter_map(|l| l.split_once(':'))
        .map(|(k, v)| (k.trim().to_ascii_lowercase(), v.trim().to_string()))
        .collect();
    Answer {
        status,
        headers,
        body: body.to_string(),
    }
}

fn api_headers<'a>(extra: &[(&'a str, &'a str)]) -> Vec<(&'a str, &'a str)> {
    let mut h = vec![
        ("x-amz-target", "AWSStepFunctions.ListStateMachines"),
        ("content-type", "application/x-amz-json-1.0"),
    ];
    h.extend_from_slice(extra);
    h
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn the_console_is_served_with_its_headers_and_cookie_sessions_authorize_the_api() {
    let (addr, shutdown, server) = start(false).await;

    // The page and an asset: types, CSP, revalidation with ETags.
    let page = http(addr, "GET", "/", &[], "").await;
    assert_eq!(page.status, 200);
    assert_eq!(
        page.header("content-type"),
        Some("text/html; charset=utf-8")
    );
    assert!(page
        .header("content-security-policy")
        .is_some_and(|c| c.starts_with("default-src 'self'")));
    assert_eq!(page.header("cache-control"), Some("no-cache"));
    assert!(page.body.contains("/console/app.js"));
    for inline in ["onclick=", "onload=", "onsubmit=", "style=", "<script>"] {
        assert!(!page.body.contains(inline), "the page has inline {inline}");
    }
    for (path, ty) in [
        ("/console/app.js", "text/javascript; charset=utf-8"),
        ("/console/graph.js", "text/javascript; charset=utf-8"),
        ("/console/style.css", "text/css; charset=utf-8"),
        ("/console/favicon.svg", "image/svg+xml"),
    ] {
        let a = http(addr, "GET", path, &[], "").await;
        assert_eq!(a.status, 200, "{path}");
        assert_eq!(a.header("content-type"), Some(ty), "{path}");
        let etag = a.header("etag").expect("etag").to_string();
        let again = http(addr, "GET", path, &[("if-none-match", &etag)], "").await;
        assert_eq!(again.status, 304, "{path} revalidates");
    }
    assert_eq!(
        http(addr, "GET", "/console/nope.js", &[], "").await.status,
        404
    );

    // Not signed in yet.
    let status = http(addr, "GET", "/console/session", &[], "").await;
    assert!(
        status.body.contains("\"authRequired\":true"),
        "{}",
        status.body
    );
    assert!(
        status.body.contains("\"signedIn\":false"),
        "{}",
        status.body
    );

    // Sign-in needs the console header, and the right secret.
    let creds = format!(r#"{{"accessKeyId":"{KEY_ID}","secretAccessKey":"{SECRET}"}}"#);
    let no_header = http(addr, "POST", "/console/session", &[], &creds).await;
    assert_eq!(no_header.status, 403);
    let wrong = http(
        addr,
        "POST",
        "/console/session",
        &[("x-stepline-console", "1")],
        &format!(r#"{{"accessKeyId":"{KEY_ID}","secretAccessKey":"nope"}}"#),
    )
    .await;
    assert!(wrong.body.contains("\"signedIn\":false"), "{}", wrong.body);
    assert!(wrong.header("set-cookie").is_none());
    let ok = http(
        addr,
        "POST",
        "/console/session",
        &[("x-stepline-console", "1")],
        &creds,
    )
    .await;
    assert_eq!(ok.status, 200, "{}", ok.body);
    let set = ok
        .header("set-cookie")
        .expect("a session cookie")
        .to_string();
    assert!(set.contains("HttpOnly") && set.contains("SameSite=Strict") && set.contains("Path=/"));
    let cookie = set.split(';').next().unwrap().to_string();
    assert!(cookie.starts_with("stepline_session="));

    // The API: the cookie alone is refused (CSRF guard), cookie + header is accepted.
    let unsigned = http(addr, "POST", "/", &api_headers(&[]), "{}").await;
    assert_eq!(unsigned.status, 403, "{}", unsigned.body);
    let cookie_only = http(
        addr,
        "POST",
        "/",
        &api_headers(&[("cookie", &cookie)]),
        "{}",
    )
    .await;
    assert_eq!(cookie_only.status, 403, "{}", cookie_only.body);
    let console = http(
        addr,
        "POST",
        "/",
        &api_headers(&[("cookie", &cookie), ("x-stepline-console", "1")]),
        "{}",
    )
    .await;
    assert_eq!(console.status, 200, "{}", console.body);
    assert!(console.body.contains("stateMachines"));
    let forged = cookie.replace("stepline_session=", "stepline_session=x");
    let bad = http(
        addr,
        "POST",
        "/",
        &api_headers(&[("cookie", &forged), ("x-stepline-console", "1")]),
        "{}",
    )
    .await;
    assert_eq!(bad.status, 403);
    let status = http(addr, "GET", "/console/session", &[("cookie", &cookie)], "").await;
    assert!(status.body.contains("\"signedIn\":true"), "{}", status.body);

    // Sign-out clears the cookie.
    let out = http(
        addr,
        "DELETE",
        "/console/session",
        &[("x-stepline-console", "1"), ("cookie", &cookie)],
        "",
    )
    .await;
    assert_eq!(out.status, 200);
    assert!(out
        .header("set-cookie")
        .is_some_and(|c| c.starts_with("stepline_session=;") && c.contains("Max-Age=0")));

    shutdown.cancel();
    server.await.expect("join");

    // An open server needs no sign-in.
    let (addr, shutdown, server) = start(true).await;
    let status = http(addr, "GET", "/console/session", &[], "").await;
    assert!(
        status.body.contains("\"authRequired\":false"),
        "{}",
        status.body
    );
    assert!(status.body.contains("\"signedIn\":true"), "{}", status.body);
    shutdown.cancel();
    server.await.expect("join");
}

fn root() -> PathBuf {
    Path::new(env!("CARGO_MANIFEST_DIR")).join("..")
}

fn require(program: &str, args: &[&str], why: &str) {
    match Command::new(program).args(args).output() {
        Ok(o) if o.status.success() => {}
        Ok(o) => panic!(
            "`{program} {}` failed ({why}):\n{}",
            args.join(" "),
            String::from_utf8_lossy(&o.stderr)
        ),
        Err(e) => panic!("{program} is required ({why}): {e}. Run .ci/services to install it."),
    }
}

#[test]
fn console_modules_pass_their_node_unit_tests() {
    require(
        "node",
        &["--version"],
        "the console's unit tests run on Node.js",
    );
    let out = Command::new("node")
        .args(["--test", "unit.test.mjs"])
        .current_dir(root().join("tests/console"))
        .output()
        .expect("run node --test");
    let stdout = String::from_utf8_lossy(&out.stdout);
    assert!(
        out.status.success() && stdout.contains("# fail 0") && !stdout.contains("# pass 0"),
        "the console unit tests failed:\n{stdout}\n{}",
        String::from_utf8_lossy(&out.stderr)
    );
}

#[tokio::test(flavor = "multi_thread", worker_threads = 4)]
async fn console_end_to_end_in_headless_chromium() {
    let dir = root().join("tests/console");
    require(
        "node",
        &["--version"],
        "the console e2e test runs on Node.js",
    );
    let chromium =
        std::env::var("CHROMIUM_PATH").unwrap_or_else(|_| "/usr/bin/chromium".to_string());
    assert!(
        Path::new(&chromium).exists(),
        "{chromium} is missing: install Debian's chromium (apt-get install chromium; .ci/services does)"
    );
    if !dir.join("node_modules/playwright-core").exists() {
        let out = Command::new("npm")
            .args(["ci", "--no-audit", "--no-fund"])
            .current_dir(&dir)
            .output()
            .unwrap_or_else(|e| panic!("npm is required to install playwright-core: {e}"));
        assert!(
            out.status.success(),
            "npm ci in tests/console failed:\n{}",
            String::from_utf8_lossy(&out.stderr)
        );
    }
    let shots = root().join("target/console-screenshots");
    std::fs::create_dir_all(&shots).expect("screenshot directory");

    let (addr, shutdown, server) = start(false).await;
    let output = tokio::task::spawn_blocking({
        let (dir, shots) = (dir.clone(), shots.clone());
        move || {
            Command::new("node")
                .arg("e2e.mjs")
                .current_dir(&dir)
                .env("STEPLINE_ENDPOINT", format!("http://{addr}"))
                .env("STEPLINE_ACCESS_KEY_ID", KEY_ID)
                .env("STEPLINE_SECRET_ACCESS_KEY", SECRET)
                .env("SCREENSHOT_DIR", &shots)
                .env("CHROMIUM_PATH", &chromium)
                .output()
        }
    })
    .await
    .expect("join")
    .expect("run node tests/console/e2e.mjs");
    shutdown.cancel();
    server.await.expect("join");
    let stdout = String::from_utf8_lossy(&output.stdout);
    let stderr = String::from_utf8_lossy(&output.stderr);
    println!("{stdout}");
    assert!(
        output.status.success(),
        "the console e2e test failed:\n{stdout}\n{stderr}\n(screenshots in {})",
        shots.display()
    );
    assert!(
        stdout.contains(" passed, 0 failed"),
        "unexpected e2e output:\n{stdout}"
    );
    for shot in [
        "execution-laptop.png",
        "execution-narrow.png",
        "definition.png",
    ] {
        assert!(shots.join(shot).exists(), "{shot} was not saved");
    }
}

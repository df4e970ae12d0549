//! Test harness: a real broker on a real socket, driven over HTTP.
//!
//! `store_tests!` runs each listed test against every store: once on the embedded store and once
//! on PostgreSQL (when the `postgres` store is built and reachable; `.ci/run` makes it mandatory
//! with `HANBAT_REQUIRE_POSTGRES=1`).
#![allow(dead_code)]

use axum::extract::State;
use axum::http::{HeaderMap, StatusCode};
use hanbat::serve::{ServeArgs, start};
use reqwest::{Method, RequestBuilder, Response};
use serde_json::Value;
use std::sync::Arc;
use std::sync::atomic::{AtomicU16, AtomicUsize, Ordering};
use std::time::{Duration, Instant};
use tokio::sync::{Mutex, mpsc};

pub struct TestBroker {
    pub origin: String,
    pub http: reqwest::Client,
    pub notifier: Arc<hanbat_notify::Notifier>,
    server: tokio::task::JoinHandle<std::io::Result<()>>,
    data: Arc<tempfile::TempDir>,
    /// The test's own PostgreSQL database, when the broker runs on PostgreSQL.
    database: Option<Arc<hanbat_store_postgres::testing::TestDatabase>>,
    postgres: Option<Arc<hanbat_store_postgres::PgStore>>,
    args: ServeArgs,
}

impl Drop for TestBroker {
    fn drop(&mut self) {
        self.server.abort();
        if let Some(pg) = &self.postgres {
            pg.stop();
        }
    }
}

pub const CORE: &str = "https://uri.etsi.org/ngsi-ld/v1/ngsi-ld-core-context-v1.8.jsonld";

impl TestBroker {
    pub async fn embedded() -> Self {
        Self::embedded_with(|_| {}).await
    }

    /// A broker on the embedded store with options of the test's (`--mqtt-topic-prefix`, …).
    pub async fn embedded_with(configure: impl FnOnce(&mut ServeArgs)) -> Self {
        Self::launch(None, configure).await
    }

    /// A broker on a fresh PostgreSQL database; `None` when PostgreSQL is not there (skipped).
    pub async fn postgres() -> Option<Self> {
        let database = Arc::new(hanbat_store_postgres::testing::TestDatabase::create().await?);
        Some(Self::launch(Some(database), |_| {}).await)
    }

    async fn launch(
        database: Option<Arc<hanbat_store_postgres::testing::TestDatabase>>,
        configure: impl FnOnce(&mut ServeArgs),
    ) -> Self {
        let data = Arc::new(tempfile::tempdir().expect("temp dir"));
        let mut args = ServeArgs::new(data.path().to_path_buf(), "127.0.0.1:0".parse().expect("addr"));
        args.store = database.as_ref().map(|d| d.url.clone());
        args.max_body = 1 << 20;
        configure(&mut args);
        Self::start_on(data, database, args).await
    }

    async fn start_on(
        data: Arc<tempfile::TempDir>,
        database: Option<Arc<hanbat_store_postgres::testing::TestDatabase>>,
        args: ServeArgs,
    ) -> Self {
        let running = start(args.clone()).await.expect("broker starts");
        Self {
            origin: format!("http://{}", running.addr),
            http: reqwest::Client::new(),
            notifier: running.notifier,
            server: running.server,
            data,
            database,
            postgres: running.postgres,
            args,
        }
    }

    /// Stops this broker as `hanbat serve` stops on SIGTERM and starts a new one on the same
    /// data folder or database, with the same options (another port).
    pub async fn restart(&self) -> Self {
        self.server.abort();
        self.notifier.shutdown().await;
        if let Some(pg) = &self.postgres {
            pg.leave().await.expect("the stopped node leaves the cluster");
        }
        Self::start_on(self.data.clone(), self.database.clone(), self.args.clone()).await
    }

    pub fn url(&self, path: &str) -> String {
        format!("{}/ngsi-ld/v1{}", self.origin, path)
    }

    pub fn request(&self, method: Method, path: &str) -> RequestBuilder {
        self.http.request(method, self.url(path))
    }

    /// Sends `body` as `application/json` (Content-Length set by reqwest).
    pub async fn send(&self, method: Method, path: &str, body: &Value) -> Response {
        self.request(method, path)
            .header("Content-Type", "application/json")
            .body(body.to_string())
            .send()
            .await
            .expect("request sent")
    }

    pub async fn post(&self, path: &str, body: &Value) -> Response {
        self.send(Method::POST, path, body).await
    }

    pub async fn patch(&self, path: &str, body: &Value) -> Response {
        self.send(Method::PATCH, path, body).await
    }

    pub async fn put(&self, path: &str, body: &Value) -> Response {
        self.send(Method::PUT, path, body).await
    }

    pub async fn get(&self, path: &str) -> Response {
        self.request(Method::GET, path).send().await.expect("request sent")
    }

    pub async fn delete(&self, path: &str) -> Response {
        self.request(Method::DELETE, path).send().await.expect("request sent")
    }

    /// GET expecting 200 and a JSON body.
    pub async fn get_json(&self, path: &str) -> Value {
        let r = self.get(path).await;
        let status = r.status();
        let body = r.text().await.expect("body");
        assert_eq!(status, 200, "GET {path}: {body}");
        serde_json::from_str(&body).expect("JSON body")
    }
}

/// `hanbat serve` as a process of its own (to kill it with SIGKILL), stopped when dropped.
pub struct ProcessBroker {
    pub child: std::process::Child,
    /// `http://127.0.0.1:<port>/ngsi-ld/v1`
    pub base: String,
    pub http: reqwest::Client,
}

impl Drop for ProcessBroker {
    fn drop(&mut self) {
        let _ = self.child.kill();
        let _ = self.child.wait();
    }
}

pub fn free_port() -> u16 {
    std::net::TcpListener::bind("127.0.0.1:0").and_then(|l| l.local_addr()).expect("a free port").port()
}

impl ProcessBroker {
    /// Starts `hanbat serve` with `args` (`--data <dir>` or `--store <url>`, …) on `port`;
    /// returns once it answers.
    pub async fn start(args: &[String], port: u16) -> Self {
        let child = std::process::Command::new(env!("CARGO_BIN_EXE_hanbat"))
            .arg("serve")
            .args(args)
            .args(["--listen", &format!("127.0.0.1:{port}")])
            .env("RUST_LOG", std::env::var("HANBAT_TEST_LOG").unwrap_or_else(|_| "warn".into()))
            .stdout(std::process::Stdio::null())
            .stderr(std::process::Stdio::inherit())
            .spawn()
            .expect("hanbat starts");
        // Owned by the guard from here on: a failed start still reaps the process.
        let broker = Self { child, base: format!("http://127.0.0.1:{port}/ngsi-ld/v1"), http: reqwest::Client::new() };
        let deadline = Instant::now() + Duration::from_secs(30);
        while Instant::now() < deadline {
            if broker.http.get(format!("{}/types", broker.base)).send().await.is_ok_and(|r| r.status().is_success()) {
                return broker;
            }
            tokio::time::sleep(Duration::from_millis(20)).await;
        }
        panic!("broker did not start");
    }

    /// Sends `body` as `application/json`.
    pub async fn send(&self, method: Method, path: &str, body: &Value) -> Response {
        self.http
            .request(method, format!("{}{path}", self.base))
            .header("Content-Type", "application/json")
            .body(body.to_string())
            .send()
            .await
            .expect("request sent")
    }

    pub async fn get(&self, path: &str) -> Response {
        self.http.get(format!("{}{path}", self.base)).send().await.expect("request sent")
    }
}

/// Asserts a ProblemDetails error with `status` and the NGSI-LD error `kind`.
/// Creates a Vehicle with a `speed`, asserting 201.
pub async fn vehicle(b: &TestBroker, id: &str, speed: i64) {
    let body = serde_json::json!({"id": id, "type": "Vehicle", "speed": {"type": "Property", "value": speed}});
    let r = b.post("/entities", &body).await;
    assert_eq!(r.status(), 201, "create {id}");
}

pub async fn assert_problem(r: Response, status: u16, kind: &str) -> Value {
    assert_eq!(r.status().as_u16(), status, "unexpected status");
    assert_eq!(r.headers()["content-type"], "application/json");
    let body: Value = r.json().await.expect("ProblemDetails JSON");
    assert_eq!(body["type"], format!("https://uri.etsi.org/ngsi-ld/errors/{kind}"), "{body}");
    assert!(body["detail"].as_str().is_some_and(|d| !d.is_empty()), "ProblemDetails without detail: {body}");
    body
}

/// One notification as the receiver saw it.
#[derive(Debug)]
pub struct Received {
    pub headers: HeaderMap,
    pub body: Value,
    pub at: Instant,
}

/// How the receiver answers.
#[derive(Clone)]
pub struct Behaviour {
    /// Status to answer with (0: never answer).
    pub status: Arc<AtomicU16>,
    /// Answer with 500 to this many requests first.
    pub fail_first: Arc<AtomicUsize>,
}

/// An HTTP notification receiver on a free port.
pub struct Receiver {
    pub url: String,
    rx: Mutex<mpsc::UnboundedReceiver<Received>>,
    pub behaviour: Behaviour,
    _server: tokio::task::JoinHandle<()>,
}

impl Receiver {
    pub async fn start() -> Self {
        let (tx, rx) = mpsc::unbounded_channel();
        let behaviour = Behaviour { status: Arc::new(AtomicU16::new(200)), fail_first: Arc::new(AtomicUsize::new(0)) };
        let state = (tx, behaviour.clone());
        let app = axum::Router::new().route(
            "/notify",
            axum::routing::post(
                |State((tx, b)): State<(mpsc::UnboundedSender<Received>, Behaviour)>,
                 headers: HeaderMap,
                 body: String| async move {
                    let body: Value = serde_json::from_str(&body).unwrap_or(Value::Null);
                    let _ = tx.send(Received { headers, body, at: Instant::now() });
                    let status = b.status.load(Ordering::SeqCst);
                    if status == 0 {
                        tokio::time::sleep(Duration::from_secs(3600)).await;
                    }
                    if b.fail_first.load(Ordering::SeqCst) > 0 {
                        b.fail_first.fetch_sub(1, Ordering::SeqCst);
                        return StatusCode::INTERNAL_SERVER_ERROR;
                    }
                    StatusCode::from_u16(status).unwrap_or(StatusCode::OK)
                },
            ),
        );
        let listener = tokio::net::TcpListener::bind("127.0.0.1:0").await.expect("bind receiver");
        let addr = listener.local_addr().expect("addr");
        let server = tokio::spawn(async move {
            let _ = axum::serve(listener, app.with_state(state)).await;
        });
        Self { url: format!("http://{addr}/notify"), rx: Mutex::new(rx), behaviour, _server: server }
    }

    /// The next notification, waiting at most `timeout`.
    pub async fn next(&self, timeout: Duration) -> Option<Received> {
        tokio::time::timeout(timeout, self.rx.lock().await.recv()).await.ok().flatten()
    }

    pub async fn expect(&self) -> Received {
        self.next(Duration::from_secs(10)).await.expect("a notification within 10 s")
    }

    /// Asserts that nothing arrives within `window`.
    pub async fn expect_none(&self, window: Duration) {
        if let Some(r) = self.next(window).await {
            panic!("unexpected notification: {}", r.body);
        }
    }
}

/// Declares tests that run once per store.
#[macro_export]
macro_rules! store_tests {
    ($($name:ident),* $(,)?) => {
        mod embedded {
            $(
                #[tokio::test(flavor = "multi_thread", worker_threads = 2)]
                async fn $name() {
                    let broker = $crate::common::TestBroker::embedded().await;
                    super::$name(&broker).await;
                }
            )*
        }
        mod postgres {
            $(
                #[tokio::test(flavor = "multi_thread", worker_threads = 2)]
                async fn $name() {
                    let Some(broker) = $crate::common::TestBroker::postgres().await else { return };
                    super::$name(&broker).await;
                }
            )*
        }
    };
}

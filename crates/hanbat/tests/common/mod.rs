//! Test harness: a real broker on a real socket, driven over HTTP.
//!
//! `store_tests!` runs each listed test against every store: once on the embedded store and once
//! on PostgreSQL (when the `postgres` store is built and reachable; `.ci/run` makes it mandatory
//! with `HANBAT_REQUIRE_POSTGRES=1`).
#![allow(dead_code)]

use hanbat::serve::{ServeArgs, start};
use reqwest::{Method, RequestBuilder, Response};
use serde_json::Value;
use std::sync::Arc;

pub struct TestBroker {
    pub origin: String,
    pub http: reqwest::Client,
    pub notifier: Arc<hanbat_notify::Notifier>,
    server: tokio::task::JoinHandle<std::io::Result<()>>,
    data: Arc<tempfile::TempDir>,
}

impl Drop for TestBroker {
    fn drop(&mut self) {
        self.server.abort();
    }
}

pub const CORE: &str = "https://uri.etsi.org/ngsi-ld/v1/ngsi-ld-core-context-v1.8.jsonld";

impl TestBroker {
    pub async fn embedded() -> Self {
        Self::start_on(Arc::new(tempfile::tempdir().expect("temp dir"))).await
    }

    async fn start_on(data: Arc<tempfile::TempDir>) -> Self {
        let mut args = ServeArgs::new(data.path().to_path_buf(), "127.0.0.1:0".parse().expect("addr"));
        args.max_body = 1 << 20;
        let running = start(args).await.expect("broker starts");
        Self {
            origin: format!("http://{}", running.addr),
            http: reqwest::Client::new(),
            notifier: running.notifier,
            server: running.server,
            data,
        }
    }

    /// Stops this broker as `hanbat serve` stops on SIGTERM and starts a new one on the same
    /// data folder (another port).
    pub async fn restart(&self) -> Self {
        self.server.abort();
        self.notifier.shutdown().await;
        Self::start_on(self.data.clone()).await
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

/// Asserts a ProblemDetails error with `status` and the NGSI-LD error `kind`.
pub async fn assert_problem(r: Response, status: u16, kind: &str) -> Value {
    assert_eq!(r.status().as_u16(), status, "unexpected status");
    assert_eq!(r.headers()["content-type"], "application/json");
    let body: Value = r.json().await.expect("ProblemDetails JSON");
    assert_eq!(body["type"], format!("https://uri.etsi.org/ngsi-ld/errors/{kind}"), "{body}");
    assert!(body["detail"].as_str().is_some_and(|d| !d.is_empty()), "ProblemDetails without detail: {body}");
    body
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
    };
}

impl TestBroker {
    /// An embedded broker with options of `hanbat serve` changed by `configure` (e.g. history
    /// retention), for tests of one option.
    pub async fn embedded_with(configure: impl FnOnce(&mut ServeArgs)) -> Self {
        let data = Arc::new(tempfile::tempdir().expect("temp dir"));
        let mut args = ServeArgs::new(data.path().to_path_buf(), "127.0.0.1:0".parse().expect("addr"));
        args.max_body = 1 << 20;
        configure(&mut args);
        let running = start(args).await.expect("broker starts");
        Self {
            origin: format!("http://{}", running.addr),
            http: reqwest::Client::new(),
            notifier: running.notifier,
            server: running.server,
            data,
        }
    }
}

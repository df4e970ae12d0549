//! Test support: a fresh database per test, so tests on PostgreSQL run in parallel and leave
//! nothing behind. Used by this crate's tests and the broker's integration tests.

use std::sync::atomic::{AtomicU64, Ordering};
use std::time::Duration;

/// The server tests use unless `HANBAT_TEST_POSTGRES` names another.
pub const DEFAULT_ADMIN_URL: &str = "postgres://postgres@127.0.0.1:5432/test";

/// A database `hanbat_test_<unique>` created for one test and dropped with this value.
pub struct TestDatabase {
    /// URL of the new database.
    pub url: String,
    admin: String,
    name: String,
}

static NEXT: AtomicU64 = AtomicU64::new(0);

impl TestDatabase {
    /// Creates a database on the server of `HANBAT_TEST_POSTGRES`. When that server is not
    /// reachable: `None`, after printing `SKIP postgres: <reason>`, unless
    /// `HANBAT_REQUIRE_POSTGRES=1`, which makes it a failure.
    pub async fn create() -> Option<Self> {
        let admin = std::env::var("HANBAT_TEST_POSTGRES").unwrap_or_else(|_| DEFAULT_ADMIN_URL.to_string());
        match Self::create_on(&admin).await {
            Ok(db) => Some(db),
            Err(reason) if std::env::var("HANBAT_REQUIRE_POSTGRES").as_deref() != Ok("1") => {
                eprintln!("SKIP postgres: {reason}");
                None
            }
            Err(reason) => panic!("PostgreSQL is required (HANBAT_REQUIRE_POSTGRES=1): {reason}"),
        }
    }

    async fn create_on(admin: &str) -> Result<Self, String> {
        let config: tokio_postgres::Config = admin.parse().map_err(|e| format!("HANBAT_TEST_POSTGRES: {e}"))?;
        let nanos = std::time::SystemTime::now().duration_since(std::time::UNIX_EPOCH).unwrap_or_default().as_nanos();
        let name = format!(
            "hanbat_test_{}_{}_{}",
            std::process::id(),
            nanos % 1_000_000_000,
            NEXT.fetch_add(1, Ordering::Relaxed)
        );
        exec(admin, &format!("CREATE DATABASE {name}")).await?;
        let mut url = String::from("postgres://");
        if let Some(user) = config.get_user() {
            url.push_str(user);
            url.push('@');
        }
        let host = match config.get_hosts().first() {
            Some(tokio_postgres::config::Host::Tcp(h)) => h.clone(),
            _ => "127.0.0.1".to_string(),
        };
        let port = config.get_ports().first().copied().unwrap_or(5432);
        url.push_str(&format!("{host}:{port}/{name}"));
        Ok(Self { url, admin: admin.to_string(), name })
    }
}

impl Drop for TestDatabase {
    fn drop(&mut self) {
        // Drop may run inside a runtime: a thread with its own runtime does the async work.
        // FORCE: brokers of the test may still hold pooled connections.
        let (admin, sql) = (self.admin.clone(), format!("DROP DATABASE IF EXISTS {} WITH (FORCE)", self.name));
        let dropped = std::thread::spawn(move || {
            let runtime =
                tokio::runtime::Builder::new_current_thread().enable_all().build().map_err(|e| e.to_string())?;
            runtime.block_on(exec(&admin, &sql))
        })
        .join();
        if let Ok(Err(e)) = dropped {
            eprintln!("test database left behind: {e}");
        }
    }
}

/// Runs `sql` on its own connection to `url`.
pub async fn exec(url: &str, sql: &str) -> Result<(), String> {
    let (client, connection) =
        tokio::time::timeout(Duration::from_secs(5), tokio_postgres::connect(url, tokio_postgres::NoTls))
            .await
            .map_err(|_| format!("connecting to {url} timed out"))?
            .map_err(|e| format!("connecting to {url}: {e}"))?;
    let connection = tokio::spawn(connection);
    let result = client.batch_execute(sql).await.map_err(|e| format!("{sql}: {e}"));
    drop(client);
    let _ = connection.await;
    result
}

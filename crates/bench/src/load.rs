//! The load generator: `clients` concurrent HTTP/1.1 keep-alive connections, each sending its
//! next request as soon as the previous answer is read, for a fixed duration.

use bytes::Bytes;
use hdrhistogram::Histogram;
use http::{Request, StatusCode};
use http_body_util::{BodyExt, Full};
use hyper_util::rt::TokioIo;
use std::net::SocketAddr;
use std::sync::Arc;
use std::time::{Duration, Instant};

/// Builds the request a client sends: (client index, sequence number within the client).
pub type MakeRequest = Arc<dyn Fn(usize, u64) -> Request<Full<Bytes>> + Send + Sync>;

pub struct Stats {
    pub requests: u64,
    pub errors: u64,
    pub elapsed: Duration,
    /// Latency in microseconds.
    pub latency: Histogram<u64>,
    pub first_error: Option<String>,
}

impl Stats {
    pub fn rps(&self) -> f64 {
        self.requests as f64 / self.elapsed.as_secs_f64()
    }

    pub fn ms(&self, quantile: f64) -> f64 {
        self.latency.value_at_quantile(quantile) as f64 / 1000.0
    }
}

/// Runs `clients` connections against `addr` for `duration`. A response whose status is not
/// in `expect` counts as an error (and still as a request).
pub async fn drive(
    addr: SocketAddr,
    clients: usize,
    duration: Duration,
    expect: &'static [StatusCode],
    make: MakeRequest,
) -> anyhow::Result<Stats> {
    let start = Instant::now();
    let deadline = start + duration;
    let mut tasks = Vec::with_capacity(clients);
    for client in 0..clients {
        let make = make.clone();
        tasks.push(tokio::spawn(async move { client_loop(addr, client, deadline, expect, make).await }));
    }
    let mut total =
        Stats { requests: 0, errors: 0, elapsed: Duration::ZERO, latency: new_histogram()?, first_error: None };
    for task in tasks {
        let s = task.await??;
        total.requests += s.requests;
        total.errors += s.errors;
        total.latency.add(&s.latency)?;
        if total.first_error.is_none() {
            total.first_error = s.first_error;
        }
    }
    total.elapsed = start.elapsed();
    Ok(total)
}

fn new_histogram() -> anyhow::Result<Histogram<u64>> {
    Ok(Histogram::new_with_bounds(1, 60_000_000, 3)?)
}

async fn client_loop(
    addr: SocketAddr,
    client: usize,
    deadline: Instant,
    expect: &'static [StatusCode],
    make: MakeRequest,
) -> anyhow::Result<Stats> {
    let stream = tokio::net::TcpStream::connect(addr).await?;
    stream.set_nodelay(true)?;
    let (mut sender, conn) = hyper::client::conn::http1::handshake(TokioIo::new(stream)).await?;
    tokio::spawn(conn);
    let mut stats =
        Stats { requests: 0, errors: 0, elapsed: Duration::ZERO, latency: new_histogram()?, first_error: None };
    let mut seq = 0u64;
    while Instant::now() < deadline {
        let request = make(client, seq);
        seq += 1;
        let sent = Instant::now();
        sender.ready().await?;
        let response = sender.send_request(request).await?;
        let status = response.status();
        let body = response.into_body().collect().await?.to_bytes();
        let micros = sent.elapsed().as_micros() as u64;
        stats.latency.record(micros.max(1))?;
        stats.requests += 1;
        if !expect.contains(&status) {
            stats.errors += 1;
            if stats.first_error.is_none() {
                let text = String::from_utf8_lossy(&body);
                stats.first_error = Some(format!("{status}: {}", text.chars().take(300).collect::<String>()));
            }
        }
    }
    Ok(stats)
}

/// Sends one request on a fresh connection and returns status and body (setup steps).
pub async fn once(addr: SocketAddr, request: Request<Full<Bytes>>) -> anyhow::Result<(StatusCode, Bytes)> {
    let stream = tokio::net::TcpStream::connect(addr).await?;
    let (mut sender, conn) = hyper::client::conn::http1::handshake(TokioIo::new(stream)).await?;
    tokio::spawn(conn);
    let response = sender.send_request(request).await?;
    let status = response.status();
    Ok((status, response.into_body().collect().await?.to_bytes()))
}

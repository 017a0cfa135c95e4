//! `CountingProxy`: a TCP relay in front of a server that counts the bytes the server sent, to measure what a client read.

use std::io::{Read, Write};
use std::net::{TcpListener, TcpStream};
use std::sync::atomic::{AtomicU64, Ordering};
use std::sync::Arc;

/// Relays every connection to `upstream` unchanged; `from_upstream` counts
/// every byte the server sent towards the client (headers included), whether
/// the client read it or not.
pub struct CountingProxy {
    /// `http://127.0.0.1:PORT`: the endpoint to use instead of the server's.
    pub endpoint: String,
    pub from_upstream: Arc<AtomicU64>,
}

impl CountingProxy {
    /// `upstream` as `http://HOST:PORT` or `HOST:PORT`.
    pub fn start(upstream: &str) -> CountingProxy {
        let listener = TcpListener::bind("127.0.0.1:0").unwrap();
        let endpoint = format!("http://{}", listener.local_addr().unwrap());
        let upstream = upstream.trim_start_matches("http://").to_string();
        let count = Arc::new(AtomicU64::new(0));
        let c = count.clone();
        std::thread::spawn(move || {
            for client in listener.incoming() {
                let Ok(client) = client else { return };
                let Ok(server) = TcpStream::connect(&upstream) else { return };
                let (mut c_read, mut s_write) = (client.try_clone().unwrap(), server.try_clone().unwrap());
                std::thread::spawn(move || {
                    let _ = std::io::copy(&mut c_read, &mut s_write);
                    let _ = s_write.shutdown(std::net::Shutdown::Write);
                });
                let count = c.clone();
                std::thread::spawn(move || {
                    let (mut s_read, mut c_write) = (server, client);
                    let mut buf = vec![0u8; 64 * 1024];
                    loop {
                        let n = match s_read.read(&mut buf) {
                            Ok(0) | Err(_) => break,
                            Ok(n) => n,
                        };
                        count.fetch_add(n as u64, Ordering::SeqCst);
                        if c_write.write_all(&buf[..n]).is_err() {
                            break;
                        }
                    }
                    let _ = c_write.shutdown(std::net::Shutdown::Both);
                });
            }
        });
        CountingProxy { endpoint, from_upstream: count }
    }

    /// Bytes the server has sent so far.
    pub fn bytes(&self) -> u64 {
        self.from_upstream.load(Ordering::SeqCst)
    }
}

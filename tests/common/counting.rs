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

/// What a relay does with bytes the server sent.
pub enum Pass {
    /// Forward them.
    On,
    /// Forward this many of them, then drop both connections.
    Cut(usize),
}

/// A TCP relay on 127.0.0.1 in front of `upstream` (`HOST:PORT`): client
/// bytes pass unchanged; each connection's server bytes go through a `judge`
/// made for that connection. Returns the relay's `HOST:PORT`.
pub fn relay<J>(upstream: &str, judge: impl Fn() -> J + Send + 'static) -> String
where
    J: FnMut(&[u8]) -> Pass + Send + 'static,
{
    let listener = TcpListener::bind("127.0.0.1:0").unwrap();
    let host = listener.local_addr().unwrap().to_string();
    let upstream = upstream.to_string();
    std::thread::spawn(move || {
        for client in listener.incoming() {
            let Ok(client) = client else { return };
            let Ok(server) = TcpStream::connect(&upstream) else { return };
            let (mut c_read, mut s_write) = (client.try_clone().unwrap(), server.try_clone().unwrap());
            std::thread::spawn(move || {
                let _ = std::io::copy(&mut c_read, &mut s_write);
                let _ = s_write.shutdown(std::net::Shutdown::Write);
            });
            let mut judge = judge();
            std::thread::spawn(move || {
                let (mut s_read, mut c_write) = (server, client);
                let mut buf = vec![0u8; 64 * 1024];
                loop {
                    let n = match s_read.read(&mut buf) {
                        Ok(0) | Err(_) => break,
                        Ok(n) => n,
                    };
                    match judge(&buf[..n]) {
                        Pass::On if c_write.write_all(&buf[..n]).is_ok() => {}
                        Pass::On => break,
                        Pass::Cut(k) => {
                            let _ = c_write.write_all(&buf[..k]);
                            let _ = s_read.shutdown(std::net::Shutdown::Both);
                            break;
                        }
                    }
                }
                let _ = c_write.shutdown(std::net::Shutdown::Both);
            });
        }
    });
    host
}

impl CountingProxy {
    /// `upstream` as `http://HOST:PORT` or `HOST:PORT`.
    pub fn start(upstream: &str) -> CountingProxy {
        let count = Arc::new(AtomicU64::new(0));
        let c = count.clone();
        let host = relay(upstream.trim_start_matches("http://"), move || {
            let count = c.clone();
            move |b: &[u8]| {
                count.fetch_add(b.len() as u64, Ordering::SeqCst);
                Pass::On
            }
        });
        CountingProxy { endpoint: format!("http://{host}"), from_upstream: count }
    }

    /// Bytes the server has sent so far.
    pub fn bytes(&self) -> u64 {
        self.from_upstream.load(Ordering::SeqCst)
    }
}

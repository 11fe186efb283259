//! A small RFC 1413 identd: IRC servers ask it who owns a connection and
//! get a hash of the user's bare JID (SHA-1, as biboumi answers), so that
//! network bans can hit one user instead of the whole gateway.

use std::collections::HashMap;
use std::net::SocketAddr;
use std::sync::{Arc, Mutex};
use std::time::Duration;

use tokio::io::{AsyncBufReadExt, AsyncWriteExt, BufReader};
use tokio::net::TcpListener;

/// Who owns which connection: (local port, remote port) -> ident.
#[derive(Clone, Debug, Default)]
pub struct IdentRegistry {
    map: Arc<Mutex<HashMap<(u16, u16), String>>>,
}

impl IdentRegistry {
    /// Records a connection.
    pub fn register(&self, local_port: u16, remote_port: u16, ident: String) {
        if let Ok(mut m) = self.map.lock() {
            m.insert((local_port, remote_port), ident);
        }
    }

    /// Forgets a connection.
    pub fn unregister(&self, local_port: u16, remote_port: u16) {
        if let Ok(mut m) = self.map.lock() {
            m.remove(&(local_port, remote_port));
        }
    }

    /// The answer to one query line (`"6193, 23"`).
    pub fn answer(&self, query: &str) -> String {
        let q = query.trim();
        let parsed = q.split_once(',').and_then(|(a, b)| {
            Some((a.trim().parse::<u16>().ok()?, b.trim().parse::<u16>().ok()?))
        });
        let Some((local, remote)) = parsed else {
            return format!("{q} : ERROR : INVALID-PORT\r\n");
        };
        let ident = self
            .map
            .lock()
            .ok()
            .and_then(|m| m.get(&(local, remote)).cloned());
        match ident {
            Some(id) => format!("{local}, {remote} : USERID : OTHER : {id}\r\n"),
            None => format!("{local}, {remote} : ERROR : NO-USER\r\n"),
        }
    }
}

/// The ident of a user: SHA-1 of the bare JID, hex.
pub fn ident_of(bare_jid: &str) -> String {
    crate::transport::sha1_hex(bare_jid.as_bytes())
}

/// Listens on `addr` and serves identd in a task of its own until that
/// task is aborted (tests; the bridge serves from its supervised spawner,
/// [`serve_on`]).
pub async fn serve(
    addr: SocketAddr,
    registry: IdentRegistry,
) -> std::io::Result<(SocketAddr, tokio::task::JoinHandle<()>)> {
    let listener = TcpListener::bind(addr).await?;
    let local = listener.local_addr()?;
    Ok((local, tokio::spawn(serve_on(listener, registry))))
}

/// Serves identd on a bound listener until the future is dropped.
pub async fn serve_on(listener: TcpListener, registry: IdentRegistry) {
    loop {
        let Ok((stream, _)) = listener.accept().await else {
            tokio::time::sleep(Duration::from_millis(100)).await;
            continue;
        };
        let registry = registry.clone();
        tokio::spawn(async move {
            let (r, mut w) = stream.into_split();
            let mut lines = BufReader::new(r.take_limited()).lines();
            // One query per connection is the norm; serve a few.
            for _ in 0..4 {
                let line =
                    match tokio::time::timeout(Duration::from_secs(10), lines.next_line()).await {
                        Ok(Ok(Some(l))) => l,
                        _ => break,
                    };
                if w.write_all(registry.answer(&line).as_bytes())
                    .await
                    .is_err()
                {
                    break;
                }
            }
        });
    }
}

trait TakeLimited: Sized {
    fn take_limited(self) -> tokio::io::Take<Self>;
}

impl<R: tokio::io::AsyncRead> TakeLimited for R {
    fn take_limited(self) -> tokio::io::Take<Self> {
        tokio::io::AsyncReadExt::take(self, 1024)
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use tokio::io::AsyncReadExt;

    #[test]
    fn answers_known_and_unknown_ports() {
        let r = IdentRegistry::default();
        r.register(50000, 6667, ident_of("alice@example.org"));
        assert_eq!(
            r.answer("50000 , 6667\r\n"),
            format!(
                "50000, 6667 : USERID : OTHER : {}\r\n",
                ident_of("alice@example.org")
            )
        );
        assert_eq!(r.answer("1, 2"), "1, 2 : ERROR : NO-USER\r\n");
        assert_eq!(r.answer("junk"), "junk : ERROR : INVALID-PORT\r\n");
        r.unregister(50000, 6667);
        assert!(r.answer("50000,6667").contains("NO-USER"));
    }

    #[tokio::test]
    async fn serves_over_tcp() {
        let r = IdentRegistry::default();
        r.register(4000, 6667, "abc".into());
        let (addr, task) = serve("127.0.0.1:0".parse().unwrap(), r).await.unwrap();
        let mut s = tokio::net::TcpStream::connect(addr).await.unwrap();
        s.write_all(b"4000, 6667\r\n").await.unwrap();
        let mut buf = vec![0; 128];
        let n = s.read(&mut buf).await.unwrap();
        assert_eq!(&buf[..n], b"4000, 6667 : USERID : OTHER : abc\r\n");
        task.abort();
    }
}

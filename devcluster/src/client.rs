//! The blocking RESP2 client the dev cluster uses to build and inspect itself: plain TCP,
//! or TLS through rustls' blocking stream for a TLS cluster.

use std::io::{self, BufRead, BufReader, Write};
use std::net::{SocketAddr, TcpStream};
use std::path::Path;
use std::sync::Arc;
use std::time::Duration;

use crate::error::{DevClusterError, Result};
use crate::options::DevTls;

/// A RESP2 reply. A null array (`*-1`) is reported as `Bulk(None)`.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum Reply {
    Simple(String),
    Error(String),
    Int(i64),
    Bulk(Option<Vec<u8>>),
    Array(Vec<Reply>),
}

impl Reply {
    /// The payload of a simple or non-null bulk string.
    pub fn as_bytes(&self) -> Option<&[u8]> {
        match self {
            Reply::Simple(s) => Some(s.as_bytes()),
            Reply::Bulk(Some(b)) => Some(b),
            _ => None,
        }
    }

    /// [`Reply::as_bytes`] if it is UTF-8.
    pub fn as_str(&self) -> Option<&str> {
        self.as_bytes().and_then(|b| std::str::from_utf8(b).ok())
    }

    /// The value of an integer reply.
    pub fn as_int(&self) -> Option<i64> {
        match self {
            Reply::Int(i) => Some(*i),
            _ => None,
        }
    }
}

#[derive(Debug)]
pub(crate) enum Conn {
    Plain(TcpStream),
    Tls(Box<rustls::StreamOwned<rustls::ClientConnection, TcpStream>>),
}

impl io::Read for Conn {
    fn read(&mut self, buf: &mut [u8]) -> io::Result<usize> {
        match self {
            Conn::Plain(s) => s.read(buf),
            Conn::Tls(s) => s.read(buf),
        }
    }
}

impl Write for Conn {
    fn write(&mut self, buf: &[u8]) -> io::Result<usize> {
        match self {
            Conn::Plain(s) => s.write(buf),
            Conn::Tls(s) => s.write(buf),
        }
    }

    fn flush(&mut self) -> io::Result<()> {
        match self {
            Conn::Plain(s) => s.flush(),
            Conn::Tls(s) => s.flush(),
        }
    }
}

/// The dev cluster's own TLS client: trusts `ca`, presents the nodes' certificate (the
/// nodes require one). Built here with rustls directly, not with the proxy's TLS code.
pub(crate) fn tls_client_config(t: &DevTls) -> Result<Arc<rustls::ClientConfig>> {
    use rustls::pki_types::pem::PemObject;
    use rustls::pki_types::{CertificateDer, PrivateKeyDer};
    let bad = |what: &Path, e: &dyn std::fmt::Display| {
        DevClusterError::Setup(format!("TLS file {}: {e}", what.display()))
    };
    let certs = |p: &Path| {
        CertificateDer::pem_file_iter(p)
            .and_then(|i| i.collect::<std::result::Result<Vec<_>, _>>())
            .map_err(|e| bad(p, &e))
    };
    let mut roots = rustls::RootCertStore::empty();
    for c in certs(&t.ca)? {
        roots.add(c).map_err(|e| bad(&t.ca, &e))?;
    }
    let key = PrivateKeyDer::from_pem_file(&t.key).map_err(|e| bad(&t.key, &e))?;
    let provider = Arc::new(rustls::crypto::ring::default_provider());
    let config = rustls::ClientConfig::builder_with_provider(provider)
        .with_safe_default_protocol_versions()
        .map_err(|e| bad(&t.ca, &e))?
        .with_root_certificates(roots)
        .with_client_auth_cert(certs(&t.cert)?, key)
        .map_err(|e| bad(&t.key, &e))?;
    Ok(Arc::new(config))
}

pub(crate) fn connect(
    addr: SocketAddr,
    timeout: Duration,
    tls: Option<&Arc<rustls::ClientConfig>>,
) -> io::Result<BufReader<Conn>> {
    let s = TcpStream::connect_timeout(&addr, timeout)?;
    s.set_read_timeout(Some(timeout))?;
    s.set_write_timeout(Some(timeout))?;
    s.set_nodelay(true)?;
    let conn = match tls {
        None => Conn::Plain(s),
        Some(config) => {
            let name = rustls::pki_types::ServerName::IpAddress(addr.ip().into());
            let session = rustls::ClientConnection::new(config.clone(), name)
                .map_err(|e| io::Error::other(format!("TLS: {e}")))?;
            let mut stream = rustls::StreamOwned::new(session, s);
            // Handshake now, so a certificate problem is reported at connect.
            while stream.conn.is_handshaking() {
                stream.conn.complete_io(&mut stream.sock)?;
            }
            Conn::Tls(Box::new(stream))
        }
    };
    Ok(BufReader::new(conn))
}

pub(crate) fn round_trip(conn: &mut BufReader<Conn>, args: &[&str]) -> io::Result<Reply> {
    let mut out = format!("*{}\r\n", args.len()).into_bytes();
    for a in args {
        out.extend_from_slice(format!("${}\r\n", a.len()).as_bytes());
        out.extend_from_slice(a.as_bytes());
        out.extend_from_slice(b"\r\n");
    }
    conn.get_mut().write_all(&out)?;
    conn.get_mut().flush()?;
    read_reply(conn)
}

pub(crate) fn read_reply(r: &mut impl BufRead) -> io::Result<Reply> {
    let bad = |what: &str| io::Error::new(io::ErrorKind::InvalidData, format!("bad RESP: {what}"));
    let mut line = Vec::new();
    r.read_until(b'\n', &mut line)?;
    if line.len() < 3 || !line.ends_with(b"\r\n") {
        return Err(io::Error::new(
            io::ErrorKind::UnexpectedEof,
            "connection closed mid-reply",
        ));
    }
    let text =
        std::str::from_utf8(&line[1..line.len() - 2]).map_err(|_| bad("non-UTF-8 header"))?;
    let num = || text.parse::<i64>().map_err(|_| bad(text));
    Ok(match line[0] {
        b'+' => Reply::Simple(text.to_owned()),
        b'-' => Reply::Error(text.to_owned()),
        b':' => Reply::Int(num()?),
        b'$' | b'*' if num()? < 0 => Reply::Bulk(None),
        b'$' => {
            let mut buf = vec![0; num()? as usize + 2];
            r.read_exact(&mut buf)?;
            buf.truncate(buf.len() - 2);
            Reply::Bulk(Some(buf))
        }
        b'*' => Reply::Array(
            (0..num()?)
                .map(|_| read_reply(r))
                .collect::<io::Result<_>>()?,
        ),
        _ => return Err(bad("unknown type byte")),
    })
}

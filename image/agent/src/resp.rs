//! A tiny synchronous RESP2 client over `std::net::TcpStream`.

use std::fmt;
use std::io::{self, BufRead, BufReader, Write};
use std::net::{TcpStream, ToSocketAddrs};
use std::time::Duration;

/// Largest bulk string accepted from the server (512 MiB, Redis' own limit).
const MAX_BULK: i64 = 512 * 1024 * 1024;

/// A RESP2 value.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum Value {
    Simple(String),
    Error(String),
    Int(i64),
    Bulk(Vec<u8>),
    Array(Vec<Value>),
    /// Null bulk string (`$-1`) or null array (`*-1`).
    Nil,
}

impl Value {
    /// The value as text (simple or bulk string).
    pub fn as_string(&self) -> Option<String> {
        match self {
            Value::Simple(s) => Some(s.clone()),
            Value::Bulk(b) => Some(String::from_utf8_lossy(b).into_owned()),
            _ => None,
        }
    }

    pub fn as_array(&self) -> Option<&[Value]> {
        match self {
            Value::Array(a) => Some(a),
            _ => None,
        }
    }

    pub fn as_int(&self) -> Option<i64> {
        match self {
            Value::Int(i) => Some(*i),
            Value::Simple(_) | Value::Bulk(_) => self.as_string()?.parse().ok(),
            _ => None,
        }
    }
}

/// Encodes a command as a RESP array of bulk strings.
pub fn encode<A: AsRef<[u8]>>(args: &[A]) -> Vec<u8> {
    let mut out = format!("*{}\r\n", args.len()).into_bytes();
    for a in args {
        let a = a.as_ref();
        out.extend_from_slice(format!("${}\r\n", a.len()).as_bytes());
        out.extend_from_slice(a);
        out.extend_from_slice(b"\r\n");
    }
    out
}

fn bad(msg: impl Into<String>) -> io::Error {
    io::Error::new(io::ErrorKind::InvalidData, msg.into())
}

fn read_line<R: BufRead>(r: &mut R) -> io::Result<String> {
    let mut buf = Vec::new();
    let n = r.read_until(b'\n', &mut buf)?;
    if n == 0 {
        return Err(io::Error::new(
            io::ErrorKind::UnexpectedEof,
            "connection closed by server",
        ));
    }
    if !buf.ends_with(b"\r\n") {
        return Err(bad("RESP line not terminated by CRLF"));
    }
    buf.truncate(buf.len() - 2);
    String::from_utf8(buf).map_err(|_| bad("RESP line is not UTF-8"))
}

fn parse_len(s: &str) -> io::Result<i64> {
    s.parse::<i64>()
        .map_err(|_| bad(format!("bad RESP length {s:?}")))
}

/// Decodes one RESP2 value.
pub fn decode<R: BufRead>(r: &mut R) -> io::Result<Value> {
    let line = read_line(r)?;
    let mut chars = line.chars();
    let kind = chars.next().ok_or_else(|| bad("empty RESP line"))?;
    let rest = chars.as_str();
    match kind {
        '+' => Ok(Value::Simple(rest.to_string())),
        '-' => Ok(Value::Error(rest.to_string())),
        ':' => Ok(Value::Int(parse_len(rest)?)),
        '$' => {
            let n = parse_len(rest)?;
            if n < 0 {
                return Ok(Value::Nil);
            }
            if n > MAX_BULK {
                return Err(bad("RESP bulk string too large"));
            }
            let mut buf = vec![0u8; n as usize + 2];
            r.read_exact(&mut buf)?;
            if !buf.ends_with(b"\r\n") {
                return Err(bad("RESP bulk string not terminated by CRLF"));
            }
            buf.truncate(n as usize);
            Ok(Value::Bulk(buf))
        }
        '*' => {
            let n = parse_len(rest)?;
            if n < 0 {
                return Ok(Value::Nil);
            }
            let mut items = Vec::with_capacity((n as usize).min(1024));
            for _ in 0..n {
                items.push(decode(r)?);
            }
            Ok(Value::Array(items))
        }
        other => Err(bad(format!("unexpected RESP type byte {other:?}"))),
    }
}

/// Errors of the client.
#[derive(Debug)]
pub enum RedisError {
    Io(io::Error),
    /// An error reply (`-ERR ...`).
    Server(String),
    /// A reply of an unexpected shape.
    Protocol(String),
}

impl fmt::Display for RedisError {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        match self {
            RedisError::Io(e) => write!(f, "I/O error: {e}"),
            RedisError::Server(e) => write!(f, "server error: {e}"),
            RedisError::Protocol(e) => write!(f, "protocol error: {e}"),
        }
    }
}

impl std::error::Error for RedisError {}

impl From<io::Error> for RedisError {
    fn from(e: io::Error) -> Self {
        RedisError::Io(e)
    }
}

/// Default read timeout of a command (blocking commands add their block time).
pub const COMMAND_TIMEOUT: Duration = Duration::from_secs(30);

/// One connection to Redis.
pub struct Conn {
    reader: BufReader<TcpStream>,
    writer: TcpStream,
}

impl Conn {
    /// Connects (trying every resolved address) and authenticates when a
    /// password is given.
    pub fn connect(
        host: &str,
        port: u16,
        password: Option<&str>,
        timeout: Duration,
    ) -> Result<Conn, RedisError> {
        let mut last: Option<io::Error> = None;
        for addr in (host, port).to_socket_addrs()? {
            match TcpStream::connect_timeout(&addr, timeout) {
                Ok(s) => {
                    s.set_nodelay(true)?;
                    s.set_read_timeout(Some(timeout.max(COMMAND_TIMEOUT)))?;
                    s.set_write_timeout(Some(timeout.max(COMMAND_TIMEOUT)))?;
                    let mut conn = Conn {
                        reader: BufReader::new(s.try_clone()?),
                        writer: s,
                    };
                    if let Some(pw) = password {
                        conn.cmd(&["AUTH", pw]).map_err(|e| match e {
                            // never echo the password; the server does not either
                            RedisError::Server(m) => {
                                RedisError::Server(format!("AUTH failed: {m}"))
                            }
                            other => other,
                        })?;
                    }
                    return Ok(conn);
                }
                Err(e) => last = Some(e),
            }
        }
        Err(RedisError::Io(last.unwrap_or_else(|| {
            io::Error::new(io::ErrorKind::NotFound, format!("{host}: no address"))
        })))
    }

    /// Sends a command and reads its reply; an error reply becomes `Err`.
    pub fn cmd<A: AsRef<[u8]>>(&mut self, args: &[A]) -> Result<Value, RedisError> {
        self.writer.write_all(&encode(args))?;
        self.writer.flush()?;
        match decode(&mut self.reader)? {
            Value::Error(e) => Err(RedisError::Server(e)),
            v => Ok(v),
        }
    }

    /// Like `cmd` for a command that blocks up to `block` on the server.
    pub fn cmd_blocking<A: AsRef<[u8]>>(
        &mut self,
        args: &[A],
        block: Duration,
    ) -> Result<Value, RedisError> {
        let s = self.reader.get_ref();
        s.set_read_timeout(Some(COMMAND_TIMEOUT + block))?;
        let r = self.cmd(args);
        let _ = self
            .reader
            .get_ref()
            .set_read_timeout(Some(COMMAND_TIMEOUT));
        r
    }
}

/// One stream entry: its id and field/value pairs.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Entry {
    pub id: String,
    pub fields: Vec<(String, String)>,
}

impl Entry {
    pub fn field(&self, name: &str) -> Option<&str> {
        self.fields
            .iter()
            .find(|(k, _)| k == name)
            .map(|(_, v)| v.as_str())
    }
}

fn proto(msg: &str) -> RedisError {
    RedisError::Protocol(msg.to_string())
}

/// Parses `[id, [field, value, ...]]`; a nil field list (an entry deleted
/// while pending, Redis 6.2) gives an entry without fields.
pub fn parse_entry(v: &Value) -> Result<Entry, RedisError> {
    let a = v
        .as_array()
        .ok_or_else(|| proto("stream entry is not an array"))?;
    let id = a
        .first()
        .and_then(Value::as_string)
        .ok_or_else(|| proto("stream entry without id"))?;
    let mut fields = Vec::new();
    match a.get(1) {
        None | Some(Value::Nil) => {}
        Some(Value::Array(kv)) => {
            for pair in kv.chunks(2) {
                let k = pair[0].as_string().ok_or_else(|| proto("bad field name"))?;
                let v = pair
                    .get(1)
                    .and_then(Value::as_string)
                    .ok_or_else(|| proto("bad field value"))?;
                fields.push((k, v));
            }
        }
        Some(_) => return Err(proto("stream entry fields are not an array")),
    }
    Ok(Entry { id, fields })
}

fn parse_entries(v: &Value) -> Result<Vec<Entry>, RedisError> {
    match v {
        Value::Nil => Ok(Vec::new()),
        Value::Array(items) => items.iter().map(parse_entry).collect(),
        _ => Err(proto("stream entries are not an array")),
    }
}

/// Parses an XREADGROUP reply: nil (timeout) or `[[stream, [entry...]]...]`.
pub fn parse_xreadgroup(v: &Value) -> Result<Vec<Entry>, RedisError> {
    match v {
        Value::Nil => Ok(Vec::new()),
        Value::Array(streams) => {
            let mut out = Vec::new();
            for s in streams {
                let pair = s
                    .as_array()
                    .ok_or_else(|| proto("XREADGROUP stream is not an array"))?;
                let entries = pair
                    .get(1)
                    .ok_or_else(|| proto("XREADGROUP stream without entries"))?;
                out.extend(parse_entries(entries)?);
            }
            Ok(out)
        }
        _ => Err(proto("unexpected XREADGROUP reply")),
    }
}

/// Parses an XAUTOCLAIM reply: `[next-cursor, [entry...], [deleted-id...]]`
/// (Redis 7) or `[next-cursor, [entry...]]` (Redis 6.2).
pub fn parse_xautoclaim(v: &Value) -> Result<(String, Vec<Entry>), RedisError> {
    let a = v
        .as_array()
        .ok_or_else(|| proto("XAUTOCLAIM reply is not an array"))?;
    let cursor = a
        .first()
        .and_then(Value::as_string)
        .ok_or_else(|| proto("XAUTOCLAIM reply without cursor"))?;
    let entries = match a.get(1) {
        Some(v) => parse_entries(v)?,
        None => Vec::new(),
    };
    Ok((cursor, entries))
}

#[cfg(test)]
mod tests {
    use super::*;

    fn dec(s: &str) -> io::Result<Value> {
        decode(&mut io::Cursor::new(s.as_bytes().to_vec()))
    }

    fn bulk(s: &str) -> Value {
        Value::Bulk(s.as_bytes().to_vec())
    }

    #[test]
    fn encodes_commands() {
        assert_eq!(encode(&["PING"]), b"*1\r\n$4\r\nPING\r\n");
        assert_eq!(
            encode(&["SET", "k", "v\r\nx", ""]),
            b"*4\r\n$3\r\nSET\r\n$1\r\nk\r\n$4\r\nv\r\nx\r\n$0\r\n\r\n"
        );
    }

    #[test]
    fn decodes_scalars() {
        assert_eq!(dec("+OK\r\n").unwrap(), Value::Simple("OK".into()));
        assert_eq!(
            dec("-BUSYGROUP Consumer Group name already exists\r\n").unwrap(),
            Value::Error("BUSYGROUP Consumer Group name already exists".into())
        );
        assert_eq!(dec(":-42\r\n").unwrap(), Value::Int(-42));
        assert_eq!(dec("$5\r\nhe\r\nl\r\n").unwrap(), bulk("he\r\nl"));
        assert_eq!(dec("$0\r\n\r\n").unwrap(), bulk(""));
        assert_eq!(dec("$-1\r\n").unwrap(), Value::Nil);
        assert_eq!(dec("*-1\r\n").unwrap(), Value::Nil);
        assert_eq!(dec("*0\r\n").unwrap(), Value::Array(vec![]));
    }

    #[test]
    fn decodes_nested_arrays() {
        let v = dec("*3\r\n:1\r\n*2\r\n$1\r\na\r\n$-1\r\n+x\r\n").unwrap();
        assert_eq!(
            v,
            Value::Array(vec![
                Value::Int(1),
                Value::Array(vec![bulk("a"), Value::Nil]),
                Value::Simple("x".into())
            ])
        );
    }

    #[test]
    fn rejects_garbage() {
        assert!(dec("").is_err());
        assert!(dec("+OK\n").is_err());
        assert!(dec("?x\r\n").is_err());
        assert!(dec("$5\r\nab\r\n").is_err());
        assert!(dec(":abc\r\n").is_err());
        assert!(dec("*2\r\n:1\r\n").is_err());
    }

    #[test]
    fn parses_xautoclaim_redis7() {
        let raw =
            "*3\r\n$3\r\n0-0\r\n*1\r\n*2\r\n$3\r\n1-0\r\n*2\r\n$3\r\njob\r\n$2\r\n{}\r\n*0\r\n";
        let (cursor, entries) = parse_xautoclaim(&dec(raw).unwrap()).unwrap();
        assert_eq!(cursor, "0-0");
        assert_eq!(entries.len(), 1);
        assert_eq!(entries[0].id, "1-0");
        assert_eq!(entries[0].field("job"), Some("{}"));
    }

    #[test]
    fn parses_xautoclaim_empty_and_62() {
        let raw = "*3\r\n$3\r\n0-0\r\n*0\r\n*0\r\n";
        let (cursor, entries) = parse_xautoclaim(&dec(raw).unwrap()).unwrap();
        assert_eq!(cursor, "0-0");
        assert!(entries.is_empty());
        // Redis 6.2: two elements, deleted entry with nil fields
        let raw = "*2\r\n$3\r\n5-1\r\n*1\r\n*2\r\n$3\r\n2-0\r\n*-1\r\n";
        let (cursor, entries) = parse_xautoclaim(&dec(raw).unwrap()).unwrap();
        assert_eq!(cursor, "5-1");
        assert_eq!(entries[0].id, "2-0");
        assert!(entries[0].fields.is_empty());
        assert!(parse_xautoclaim(&Value::Int(1)).is_err());
    }

    #[test]
    fn parses_xreadgroup() {
        assert!(parse_xreadgroup(&Value::Nil).unwrap().is_empty());
        let raw = "*1\r\n*2\r\n$4\r\njobs\r\n*1\r\n*2\r\n$3\r\n7-1\r\n*4\r\n$3\r\njob\r\n$1\r\nx\r\n$1\r\ny\r\n$1\r\nz\r\n";
        let e = parse_xreadgroup(&dec(raw).unwrap()).unwrap();
        assert_eq!(
            e,
            vec![Entry {
                id: "7-1".into(),
                fields: vec![("job".into(), "x".into()), ("y".into(), "z".into())]
            }]
        );
    }

    #[test]
    fn value_helpers() {
        assert_eq!(bulk("12").as_int(), Some(12));
        assert_eq!(Value::Int(3).as_int(), Some(3));
        assert_eq!(Value::Nil.as_string(), None);
    }
}

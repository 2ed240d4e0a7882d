//! QMP on the wire: one JSON object per line, read with a size limit and sorted into
//! responses and events without trusting any field to be there.

use serde_json::{Map, Value};
use tokio::io::{AsyncBufRead, AsyncBufReadExt, AsyncReadExt};

use super::types::{QmpEvent, Timestamp};

/// The longest QMP line accepted; QEMU's largest replies (the QAPI schema) are far smaller.
pub const MAX_LINE: usize = 16 << 20;

/// One message from QEMU after the greeting.
#[derive(Debug, PartialEq)]
pub enum Incoming {
    /// A command's reply.
    Reply {
        /// The id we sent, when QEMU echoed one that is a number.
        id: Option<u64>,
        /// The result or QEMU's error.
        result: Result<Value, CommandFailure>,
    },
    /// An asynchronous event.
    Event(QmpEvent),
}

/// QEMU's `error` member.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct CommandFailure {
    /// The error class, e.g. `GenericError`.
    pub class: String,
    /// The description.
    pub desc: String,
}

/// Reads one line into `buf` (without the newline). `Ok(false)` at a clean end of
/// stream; an error for an over-long line or a stream that ends mid-line.
pub async fn read_line<R>(reader: &mut R, buf: &mut Vec<u8>) -> Result<bool, String>
where
    R: AsyncBufRead + Unpin,
{
    buf.clear();
    let limit = MAX_LINE as u64 + 1;
    let read = (&mut *reader)
        .take(limit)
        .read_until(b'\n', buf)
        .await
        .map_err(|e| format!("read failed: {e}"))?;
    if read == 0 {
        return Ok(false);
    }
    if buf.last() == Some(&b'\n') {
        buf.pop();
        return Ok(true);
    }
    if buf.len() > MAX_LINE {
        Err(format!("a line longer than {MAX_LINE} bytes"))
    } else {
        Err(format!(
            "the stream ended inside a message ({} bytes without a newline)",
            buf.len()
        ))
    }
}

/// Parses one line of QMP output.
pub fn parse_message(line: &[u8]) -> Result<Incoming, String> {
    let value: Value =
        serde_json::from_slice(line).map_err(|e| format!("not JSON ({e}): {}", excerpt(line)))?;
    let Value::Object(object) = value else {
        return Err(format!("not a JSON object: {}", excerpt(line)));
    };
    if let Some(result) = object.get("return") {
        return Ok(Incoming::Reply {
            id: reply_id(&object),
            result: Ok(result.clone()),
        });
    }
    if let Some(error) = object.get("error") {
        let field = |name: &str| error.get(name).and_then(Value::as_str).map(str::to_string);
        let (Some(class), Some(desc)) = (field("class"), field("desc")) else {
            return Err(format!(
                "an error without class and desc: {}",
                excerpt(line)
            ));
        };
        return Ok(Incoming::Reply {
            id: reply_id(&object),
            result: Err(CommandFailure { class, desc }),
        });
    }
    if let Some(event) = object.get("event") {
        let Some(name) = event.as_str() else {
            return Err(format!(
                "an event whose name is not a string: {}",
                excerpt(line)
            ));
        };
        let timestamp = object.get("timestamp").and_then(|t| {
            Some(Timestamp {
                seconds: t.get("seconds")?.as_i64()?,
                microseconds: t.get("microseconds")?.as_i64()?,
            })
        });
        return Ok(Incoming::Event(QmpEvent {
            event: name.to_string(),
            data: object.get("data").cloned().unwrap_or(Value::Null),
            timestamp,
        }));
    }
    Err(format!("neither a reply nor an event: {}", excerpt(line)))
}

fn reply_id(object: &Map<String, Value>) -> Option<u64> {
    object.get("id").and_then(Value::as_u64)
}

/// The start of a line, for error messages.
pub fn excerpt(line: &[u8]) -> String {
    const MAX: usize = 120;
    let text = String::from_utf8_lossy(&line[..line.len().min(MAX)]).into_owned();
    if line.len() > MAX {
        format!("{text}…")
    } else {
        text
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use serde_json::json;

    #[test]
    fn replies_errors_events() {
        assert_eq!(
            parse_message(br#"{"return": {"a": 1}, "id": 7}"#).unwrap(),
            Incoming::Reply {
                id: Some(7),
                result: Ok(json!({"a": 1}))
            }
        );
        assert_eq!(
            parse_message(br#"{"error": {"class": "GenericError", "desc": "no"}}"#).unwrap(),
            Incoming::Reply {
                id: None,
                result: Err(CommandFailure {
                    class: "GenericError".into(),
                    desc: "no".into()
                }),
            }
        );
        let Incoming::Event(event) =
            parse_message(br#"{"event": "STOP", "timestamp": {"seconds": 1, "microseconds": 2}}"#)
                .unwrap()
        else {
            panic!("not an event");
        };
        assert_eq!(event.event, "STOP");
        assert_eq!(event.data, Value::Null);
        assert_eq!(
            event.timestamp,
            Some(Timestamp {
                seconds: 1,
                microseconds: 2
            })
        );
    }

    #[test]
    fn malformed_messages_are_errors() {
        for bad in [
            &b"garbage"[..],
            b"[1, 2]",
            b"{}",
            br#"{"error": {"class": 3}}"#,
            br#"{"event": 5}"#,
            b"",
            b"\xff\xfe",
        ] {
            assert!(
                parse_message(bad).is_err(),
                "{:?}",
                String::from_utf8_lossy(bad)
            );
        }
    }

    #[tokio::test]
    async fn lines_are_bounded() {
        let mut buf = Vec::new();
        let mut input: &[u8] = b"one\ntwo";
        assert_eq!(read_line(&mut input, &mut buf).await, Ok(true));
        assert_eq!(buf, b"one");
        assert!(
            read_line(&mut input, &mut buf)
                .await
                .unwrap_err()
                .contains("ended inside")
        );
        let mut empty: &[u8] = b"";
        assert_eq!(read_line(&mut empty, &mut buf).await, Ok(false));
        let long = vec![b'x'; MAX_LINE + 10];
        let mut input = &long[..];
        assert!(
            read_line(&mut input, &mut buf)
                .await
                .unwrap_err()
                .contains("longer than")
        );
    }

    #[test]
    fn excerpts_are_short() {
        assert_eq!(excerpt(b"abc"), "abc");
        assert_eq!(excerpt(&[b'a'; 500]).chars().count(), 121);
    }
}

//! A minimal QMP client: QEMU's JSON monitor protocol on a Unix socket,
//! enough to take screenshots, type on the PS/2 keyboard and see what the
//! machine did (events such as `RESET` and `SHUTDOWN`).

use std::io::{BufRead, BufReader, Write};
use std::os::unix::net::UnixStream;
use std::path::Path;
use std::time::{Duration, Instant};

use serde_json::{json, Value};

use crate::fail;
use crate::process::TaskResult;

pub struct Qmp {
    reader: BufReader<UnixStream>,
    writer: UnixStream,
    /// Events that arrived while a command waited for its answer.
    events: Vec<Value>,
}

impl Qmp {
    /// Connects to the socket QEMU was started with (`-qmp unix:PATH,server,nowait`),
    /// retrying until QEMU has created it, and leaves capability negotiation.
    pub fn connect(socket: &Path, wait: Duration) -> TaskResult<Qmp> {
        let deadline = Instant::now() + wait;
        let stream = loop {
            match UnixStream::connect(socket) {
                Ok(s) => break s,
                Err(e) if Instant::now() >= deadline => {
                    return Err(fail!("QMP socket {}: {e}", socket.display()))
                }
                Err(_) => std::thread::sleep(Duration::from_millis(50)),
            }
        };
        stream.set_read_timeout(Some(Duration::from_secs(30)))?;
        let mut qmp = Qmp {
            reader: BufReader::new(stream.try_clone()?),
            writer: stream,
            events: Vec::new(),
        };
        let greeting = qmp.read_message()?;
        if greeting.get("QMP").is_none() {
            return Err(fail!("QMP: unexpected greeting {greeting}"));
        }
        qmp.execute("qmp_capabilities", json!({}))?;
        Ok(qmp)
    }

    /// Runs one command and returns its `return` value (events that arrive
    /// meanwhile are kept for [`Qmp::events_until_closed`]).
    pub fn execute(&mut self, command: &str, arguments: Value) -> TaskResult<Value> {
        let request = json!({ "execute": command, "arguments": arguments });
        writeln!(self.writer, "{request}")?;
        loop {
            let reply = self.read_message()?;
            if let Some(ret) = reply.get("return") {
                return Ok(ret.clone());
            }
            if let Some(err) = reply.get("error") {
                return Err(fail!("QMP {command}: {err}"));
            }
            if reply.get("event").is_some() {
                self.events.push(reply);
            }
        }
    }

    /// Every event so far and every one until QEMU closes the monitor (it
    /// exits) or `deadline` passes, in order.
    pub fn events_until_closed(&mut self, deadline: Instant) -> Vec<Value> {
        let mut events = std::mem::take(&mut self.events);
        while Instant::now() < deadline {
            match self.read_message() {
                Ok(message) if message.get("event").is_some() => events.push(message),
                Ok(_) => {}
                Err(_) => break,
            }
        }
        events
    }

    /// Writes the screen to `ppm` (QEMU writes binary PPM, RGB).
    pub fn screendump(&mut self, ppm: &Path) -> TaskResult<()> {
        let filename = ppm.to_string_lossy();
        self.execute("screendump", json!({ "filename": filename }))
            .map(|_| ())
    }

    fn read_message(&mut self) -> TaskResult<Value> {
        let mut line = String::new();
        if self.reader.read_line(&mut line)? == 0 {
            return Err(fail!("QMP: QEMU closed the monitor"));
        }
        serde_json::from_str(&line).map_err(|e| fail!("QMP: bad JSON `{}`: {e}", line.trim()))
    }
}

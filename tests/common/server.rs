//! A real `facegate serve` on a free loopback port, fed frames as an MJPEG stream on its stdin,
//! and a small HTTP client for it.
#![allow(dead_code)]

use std::io::{BufRead, BufReader, Read, Write};
use std::path::{Path, PathBuf};
use std::process::{Child, ChildStdin, Command, Stdio};
use std::sync::mpsc::{channel, Receiver};
use std::sync::{Arc, Mutex};
use std::time::{Duration, Instant};

use image::{imageops, RgbImage};

pub struct Server {
    child: Child,
    pub stdin: Option<ChildStdin>,
    pub base: String,
    pub token: String,
    pub state: PathBuf,
    pub stderr: Arc<Mutex<String>>,
}

/// Seconds a test waits for something the server should do in well under that.
pub const PATIENCE: Duration = Duration::from_secs(90);

impl Server {
    /// Starts `facegate serve --mjpeg -` with `args` added; waits until it listens.
    pub fn start(state: &Path, gallery: &Path, args: &[&str]) -> Server {
        Server::start_with_source(state, gallery, &["--mjpeg", "-"], args)
    }

    /// [`Server::start`] with another frame source than standard input.
    pub fn start_with_source(
        state: &Path,
        gallery: &Path,
        source: &[&str],
        args: &[&str],
    ) -> Server {
        let mut child = super::facegate()
            .args(["serve", "--listen", "127.0.0.1:0"])
            .args(source)
            .args(["--min-face", "40"])
            .arg("--state-dir")
            .arg(state)
            .arg("--gallery")
            .arg(gallery)
            .args(args)
            .stdin(Stdio::piped())
            .stdout(Stdio::null())
            .stderr(Stdio::piped())
            .spawn()
            .unwrap();
        let stderr = Arc::new(Mutex::new(String::new()));
        let (tx, rx) = channel();
        let mut lines = BufReader::new(child.stderr.take().unwrap());
        let log = stderr.clone();
        std::thread::spawn(move || {
            let mut line = String::new();
            while lines.read_line(&mut line).map(|n| n > 0).unwrap_or(false) {
                if let Some(rest) = line.split("on http://").nth(1) {
                    let _ = tx.send(rest.split_whitespace().next().unwrap_or("").to_string());
                }
                log.lock().unwrap().push_str(&line);
                line.clear();
            }
        });
        let addr = rx.recv_timeout(PATIENCE).unwrap_or_else(|_| {
            let _ = child.kill();
            panic!("serve did not start: {}", stderr.lock().unwrap())
        });
        let token_file = state.join("token");
        let token = std::fs::read_to_string(&token_file)
            .map(|t| t.trim().to_string())
            .unwrap_or_default();
        Server {
            stdin: child.stdin.take(),
            child,
            base: format!("http://{addr}"),
            token,
            state: state.to_path_buf(),
            stderr,
        }
    }

    pub fn url(&self, path: &str) -> String {
        format!("{}{path}", self.base)
    }

    /// Sends frames as JPEGs on the MJPEG stream.
    pub fn feed(&mut self, frames: &[RgbImage]) {
        let stdin = self.stdin.as_mut().expect("stdin still open");
        for f in frames {
            stdin.write_all(&jpeg(f)).unwrap();
        }
        stdin.flush().unwrap();
    }

    /// Closes the MJPEG stream: the source ends.
    pub fn end_stream(&mut self) {
        self.stdin.take();
    }

    pub fn log(&self) -> String {
        self.stderr.lock().unwrap().clone()
    }

    /// Stops the server as Ctrl-C would, and waits for it.
    pub fn stop(mut self) -> String {
        self.stdin.take();
        unsafe_interrupt(self.child.id());
        let started = Instant::now();
        while started.elapsed() < PATIENCE {
            if let Ok(Some(_)) = self.child.try_wait() {
                std::thread::sleep(Duration::from_millis(100));
                return self.log();
            }
            std::thread::sleep(Duration::from_millis(50));
        }
        panic!("serve did not stop on SIGINT: {}", self.log());
    }
}

fn unsafe_interrupt(pid: u32) {
    let _ = Command::new("kill")
        .args(["-INT", &pid.to_string()])
        .status();
}

impl Drop for Server {
    fn drop(&mut self) {
        let _ = self.child.kill();
        let _ = self.child.wait();
    }
}

pub fn jpeg(frame: &RgbImage) -> Vec<u8> {
    let mut c = mozjpeg::Compress::new(mozjpeg::ColorSpace::JCS_RGB);
    c.set_size(frame.width() as usize, frame.height() as usize);
    c.set_quality(92.0);
    let mut started = c.start_compress(Vec::new()).unwrap();
    started.write_scanlines(frame.as_raw()).unwrap();
    started.finish().unwrap()
}

/// A photo shrunk to fit `side` pixels, on a grey 640x480 frame at (x, y).
pub fn frame_with(photo_path: &str, side: u32, x: i64, y: i64) -> RgbImage {
    let rgb = facegate::imaging::photo::load(Path::new(photo_path))
        .unwrap()
        .rgb;
    let s = side as f32 / rgb.width().max(rgb.height()) as f32;
    let small = imageops::resize(
        &rgb,
        (rgb.width() as f32 * s) as u32,
        (rgb.height() as f32 * s) as u32,
        imageops::FilterType::Triangle,
    );
    let mut f = blank();
    imageops::overlay(&mut f, &small, x, y);
    f
}

pub fn blank() -> RgbImage {
    RgbImage::from_pixel(640, 480, image::Rgb([96, 96, 96]))
}

/// A reply: status, content type and body.
pub struct Reply {
    pub status: u16,
    pub kind: String,
    pub body: Vec<u8>,
    pub cookie: Option<String>,
}

impl Reply {
    pub fn json(&self) -> serde_json::Value {
        serde_json::from_slice(&self.body).unwrap_or_else(|e| {
            panic!(
                "{e}: {} {}",
                self.status,
                String::from_utf8_lossy(&self.body)
            )
        })
    }
    pub fn text(&self) -> String {
        String::from_utf8_lossy(&self.body).into_owned()
    }
}

fn agent() -> ureq::Agent {
    ureq::AgentBuilder::new()
        .timeout(Duration::from_secs(120))
        .build()
}

/// One request; `auth` is the whole Authorization header value, or none.
pub fn call(method: &str, url: &str, auth: Option<&str>, body: Option<(&str, &[u8])>) -> Reply {
    // A server refusing a request before reading its body (401) closes the connection with
    // the rest unread, and the client may see that as a broken pipe before it reads the
    // answer: such a request is sent again (the refusal did nothing).
    call_tries(method, url, auth, body, 5)
}

fn call_tries(
    method: &str,
    url: &str,
    auth: Option<&str>,
    body: Option<(&str, &[u8])>,
    tries: u32,
) -> Reply {
    let mut attempts = 0;
    let res = loop {
        attempts += 1;
        let mut req = agent().request(method, url);
        if let Some(a) = auth {
            req = req.set("Authorization", a);
        }
        let result = match body {
            Some((kind, bytes)) => req.set("Content-Type", kind).send_bytes(bytes),
            None => req.call(),
        };
        match result {
            Ok(r) => break r,
            Err(ureq::Error::Status(_, r)) => break r,
            Err(e) if attempts < tries && body.is_some() => {
                eprintln!("{method} {url}: {e}; again");
                std::thread::sleep(Duration::from_millis(100));
            }
            Err(e) => panic!("{method} {url}: {e}"),
        }
    };
    let status = res.status();
    let kind = res.content_type().to_string();
    let cookie = res.header("set-cookie").map(str::to_string);
    let mut body = Vec::new();
    res.into_reader()
        .take(64 << 20)
        .read_to_end(&mut body)
        .unwrap();
    Reply {
        status,
        kind,
        body,
        cookie,
    }
}

impl Server {
    pub fn bearer(&self) -> String {
        format!("Bearer {}", self.token)
    }
    pub fn get(&self, path: &str) -> Reply {
        call("GET", &self.url(path), Some(&self.bearer()), None)
    }
    pub fn send(&self, method: &str, path: &str, kind: &str, body: &[u8]) -> Reply {
        call(
            method,
            &self.url(path),
            Some(&self.bearer()),
            Some((kind, body)),
        )
    }
    /// As `send`, but a broken connection fails the test instead of being tried again.
    pub fn send_once(&self, method: &str, path: &str, kind: &str, body: &[u8]) -> Reply {
        call_tries(
            method,
            &self.url(path),
            Some(&self.bearer()),
            Some((kind, body)),
            1,
        )
    }
    pub fn json(&self, method: &str, path: &str, value: serde_json::Value) -> Reply {
        self.send(
            method,
            path,
            "application/json",
            value.to_string().as_bytes(),
        )
    }
    pub fn delete(&self, path: &str) -> Reply {
        call("DELETE", &self.url(path), Some(&self.bearer()), None)
    }

    /// Server-Sent Events from `/api/v1/events/stream`: the data of each `face` event.
    pub fn events(&self) -> Receiver<serde_json::Value> {
        let res = agent()
            .get(&self.url("/api/v1/events/stream"))
            .set("Authorization", &self.bearer())
            .call()
            .unwrap();
        assert_eq!(res.content_type(), "text/event-stream");
        let (tx, rx) = channel();
        let reader = BufReader::new(res.into_reader());
        std::thread::spawn(move || {
            let mut kind = String::new();
            for line in reader.lines() {
                let Ok(line) = line else { return };
                if let Some(k) = line.strip_prefix("event:") {
                    kind = k.trim().to_string();
                } else if let Some(d) = line.strip_prefix("data:") {
                    if kind == "face" {
                        let v = serde_json::from_str(d.trim()).unwrap();
                        if tx.send(v).is_err() {
                            return;
                        }
                    }
                }
            }
        });
        rx
    }
}

/// A multipart/form-data body: (field, file name, bytes); a text field has no file name.
pub fn multipart(parts: &[(&str, Option<&str>, &[u8])]) -> (String, Vec<u8>) {
    let boundary = "facegate-test-boundary-7f3a";
    let mut body = Vec::new();
    for (field, file, bytes) in parts {
        body.extend_from_slice(format!("--{boundary}\r\n").as_bytes());
        match file {
            Some(name) => body.extend_from_slice(
                format!(
                    "Content-Disposition: form-data; name=\"{field}\"; filename=\"{name}\"\r\nContent-Type: application/octet-stream\r\n\r\n"
                )
                .as_bytes(),
            ),
            None => body.extend_from_slice(
                format!("Content-Disposition: form-data; name=\"{field}\"\r\n\r\n").as_bytes(),
            ),
        }
        body.extend_from_slice(bytes);
        body.extend_from_slice(b"\r\n");
    }
    body.extend_from_slice(format!("--{boundary}--\r\n").as_bytes());
    (format!("multipart/form-data; boundary={boundary}"), body)
}

/// Waits for an SSE event that `wanted` accepts.
pub fn wait_for(
    rx: &Receiver<serde_json::Value>,
    what: &str,
    wanted: impl Fn(&serde_json::Value) -> bool,
) -> serde_json::Value {
    let deadline = Instant::now() + PATIENCE;
    let mut seen = Vec::new();
    while let Some(left) = deadline.checked_duration_since(Instant::now()) {
        match rx.recv_timeout(left) {
            Ok(v) if wanted(&v) => return v,
            Ok(v) => seen.push(v.to_string()),
            Err(_) => break,
        }
    }
    panic!("no {what} event arrived; saw: {seen:?}");
}

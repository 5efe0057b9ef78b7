//! The web UI in a real browser: Debian's chromium, headless, driven over WebDriver by
//! chromedriver (installed by tools/setup.sh). Log in, add a person by uploading three photos on
//! the People page, watch the Events page show them identified from the frame source with a
//! snapshot. Screenshots of every page are saved in target/browser-screenshots/ to look at.

use std::path::{Path, PathBuf};
use std::process::{Child, Command, Stdio};
use std::time::{Duration, Instant};

use serde_json::{json, Value};

use crate::common::server::{blank, frame_with, jpeg, Server, PATIENCE};
use crate::common::{photo, scratch};

/// The W3C WebDriver protocol's name for an element reference.
const ELEMENT: &str = "element-6066-11e4-a52e-4f735466cecf";

struct Browser {
    driver: Child,
    base: String,
    session: String,
}

impl Browser {
    fn start() -> Browser {
        let port = std::net::TcpListener::bind("127.0.0.1:0")
            .unwrap()
            .local_addr()
            .unwrap()
            .port();
        let driver = Command::new(which("chromedriver"))
            .arg(format!("--port={port}"))
            .stdout(Stdio::null())
            .stderr(Stdio::null())
            .spawn()
            .expect("chromedriver runs");
        let base = format!("http://127.0.0.1:{port}");
        let started = Instant::now();
        while ureq::get(&format!("{base}/status")).call().is_err() {
            assert!(started.elapsed() < PATIENCE, "chromedriver did not start");
            std::thread::sleep(Duration::from_millis(100));
        }
        let caps = json!({"capabilities": {"alwaysMatch": {
            "browserName": "chrome",
            "goog:chromeOptions": {
                "binary": which("chromium"),
                // Root in a container needs --no-sandbox; a phone-sized window would hide nothing
                // here, the layout is checked at desktop width.
                "args": ["--headless=new", "--no-sandbox", "--disable-gpu", "--disable-dev-shm-usage",
                         "--window-size=1280,1000"]
            }
        }}});
        let mut b = Browser {
            driver,
            base,
            session: String::new(),
        };
        let v = b.post("/session", caps);
        b.session = v["sessionId"].as_str().expect("a session").to_string();
        b
    }

    fn post(&self, path: &str, body: Value) -> Value {
        let url = format!("{}{path}", self.base);
        match ureq::post(&url).send_json(body) {
            Ok(r) => r.into_json::<Value>().unwrap()["value"].clone(),
            Err(ureq::Error::Status(code, r)) => {
                panic!(
                    "WebDriver {path}: {code} {}",
                    r.into_string().unwrap_or_default()
                )
            }
            Err(e) => panic!("WebDriver {path}: {e}"),
        }
    }

    fn get(&self, path: &str) -> Value {
        let url = format!("{}{path}", self.base);
        ureq::get(&url)
            .call()
            .unwrap()
            .into_json::<Value>()
            .unwrap()["value"]
            .clone()
    }

    fn session(&self, rest: &str) -> String {
        format!("/session/{}{rest}", self.session)
    }

    fn open(&self, url: &str) {
        self.post(&self.session("/url"), json!({ "url": url }));
    }

    /// Runs JavaScript in the page and returns its result.
    fn script(&self, code: &str, args: Value) -> Value {
        self.post(
            &self.session("/execute/sync"),
            json!({"script": code, "args": args}),
        )
    }

    /// Waits until `code` (a JavaScript expression) is truthy; `what` says what was awaited.
    fn wait(&self, what: &str, code: &str) {
        let started = Instant::now();
        loop {
            if self
                .script(&format!("return !!({code});"), json!([]))
                .as_bool()
                == Some(true)
            {
                return;
            }
            if started.elapsed() > PATIENCE {
                let text = self.script("return document.body.innerText;", json!([]));
                panic!("waited in vain for {what}; the page says: {text}");
            }
            std::thread::sleep(Duration::from_millis(200));
        }
    }

    fn find(&self, css: &str) -> String {
        let v = self.post(
            &self.session("/element"),
            json!({"using": "css selector", "value": css}),
        );
        v[ELEMENT]
            .as_str()
            .unwrap_or_else(|| panic!("no element {css}: {v}"))
            .to_string()
    }

    fn type_into(&self, css: &str, text: &str) {
        let e = self.find(css);
        self.post(
            &self.session(&format!("/element/{e}/value")),
            json!({ "text": text }),
        );
    }

    fn click(&self, css: &str) {
        let e = self.find(css);
        self.post(&self.session(&format!("/element/{e}/click")), json!({}));
    }

    fn screenshot(&self, name: &str) -> PathBuf {
        let b64 = self.get(&self.session("/screenshot"));
        let png = base64_decode(b64.as_str().unwrap());
        let dir = Path::new(env!("CARGO_MANIFEST_DIR")).join("target/browser-screenshots");
        std::fs::create_dir_all(&dir).unwrap();
        let path = dir.join(format!("{name}.png"));
        std::fs::write(&path, &png).unwrap();
        let img = image::load_from_memory(&png).unwrap();
        // A real screenshot of the window: desktop-wide, or exactly the phone's width.
        let phone = name.ends_with("-phone");
        assert!(
            if phone {
                img.width() == 390
            } else {
                img.width() >= 800
            },
            "a real screenshot: {}x{}",
            img.width(),
            img.height()
        );
        path
    }
}

impl Drop for Browser {
    fn drop(&mut self) {
        if !self.session.is_empty() {
            let _ = ureq::delete(&format!("{}/session/{}", self.base, self.session)).call();
        }
        let _ = self.driver.kill();
        let _ = self.driver.wait();
    }
}

/// A program the test needs, with what to do when it is missing.
fn which(program: &str) -> String {
    for dir in ["/usr/bin", "/usr/local/bin", "/usr/lib/chromium"] {
        let p = Path::new(dir).join(program);
        if p.exists() {
            return p.display().to_string();
        }
    }
    panic!(
        "the browser test needs `{program}`: install Debian's chromium and chromium-driver \
         (tools/setup.sh does)"
    );
}

/// Standard base64 (the screenshots WebDriver returns), without a crate for one call.
fn base64_decode(text: &str) -> Vec<u8> {
    let value = |c: u8| -> Option<u32> {
        Some(match c {
            b'A'..=b'Z' => c - b'A',
            b'a'..=b'z' => c - b'a' + 26,
            b'0'..=b'9' => c - b'0' + 52,
            b'+' => 62,
            b'/' => 63,
            _ => return None,
        } as u32)
    };
    let mut out = Vec::with_capacity(text.len() * 3 / 4);
    let (mut acc, mut bits) = (0u32, 0);
    for v in text.bytes().filter_map(value) {
        acc = (acc << 6) | v;
        bits += 6;
        if bits >= 8 {
            bits -= 8;
            out.push((acc >> bits) as u8);
            acc &= (1 << bits) - 1;
        }
    }
    out
}

#[test]
fn a_person_added_in_the_browser_is_identified_on_the_events_page() {
    let dir = scratch("browser", "ui");
    // A door that asks for a PIN besides the face: Obama's visit waits, then is denied, and the
    // Access page shows both decisions with the factor that was missing.
    let rules = dir.join("rules.toml");
    std::fs::write(
        &rules,
        "[factors.pin]\npin = { within = 30 }\n[[rules]]\nname = \"door\"\nwho = [\"Obama\"]\n\
         require = [\"face\", \"pin\"]\nwait = 2\ndo = []\n",
    )
    .unwrap();
    let mut server = Server::start(
        &dir.join("state"),
        &dir.join("gallery"),
        &["--rules", rules.to_str().unwrap()],
    );
    let browser = Browser::start();

    // Log in with the token.
    browser.open(&server.url("/"));
    browser.wait(
        "the login form",
        "document.querySelector('#token') && document.querySelector('#token').offsetParent",
    );
    browser.screenshot("login");
    browser.type_into("#token", &server.token);
    browser.click("#login");
    browser.wait(
        "the pages after login",
        "document.querySelector('nav a[href=\"#people\"]').offsetParent",
    );

    // People: upload three shots (the third is a mirrored copy, as a slight turn).
    let third = dir.join("obama-mirrored.jpg");
    let rgb = facegate::imaging::photo::load(Path::new(&photo("obama.jpg")))
        .unwrap()
        .rgb;
    std::fs::write(&third, jpeg(&image::imageops::flip_horizontal(&rgb))).unwrap();
    browser.open(&server.url("/#people"));
    browser.wait(
        "the People page",
        "document.querySelector('#new-name').offsetParent",
    );
    browser.type_into("#new-name", "Obama");
    let files = [
        photo("obama.jpg"),
        photo("obama2.jpg"),
        third.display().to_string(),
    ];
    browser.type_into("#new-photos", &files.join("\n"));
    browser.click("#add-person");
    browser.wait(
        "Obama on the People page with three shots",
        "[...document.querySelectorAll('.person')].some(p => p.querySelector('.person-name').textContent === 'Obama' \
         && [...p.querySelectorAll('img.shot')].filter(i => i.complete && i.naturalWidth > 0).length === 3)",
    );
    let people = browser.screenshot("people");
    assert_eq!(server.get("/api/v1/people").json()["people"][0]["shots"], 3);

    // Events: Obama walks past the camera.
    browser.open(&server.url("/#events"));
    browser.wait("the Events page", "document.querySelector('#events-list') && document.querySelector('#events-list').offsetParent");
    std::thread::sleep(Duration::from_millis(500));
    let mut frames: Vec<_> = (0..8)
        .map(|i| frame_with(&photo("obama2.jpg"), 560, 20 + 2 * i, 0))
        .collect();
    server.feed(&frames);
    browser.wait(
        "an identified event for Obama with its snapshot",
        "[...document.querySelectorAll('.event')].some(e => e.querySelector('.event-name').textContent.includes('Obama') \
         && e.querySelector('.event-kind').textContent.includes('identified') \
         && e.querySelector('img.snapshot') && e.querySelector('img.snapshot').complete \
         && e.querySelector('img.snapshot').naturalWidth > 0)",
    );
    let events = browser.screenshot("events");
    let shown = browser.script(
        "const zone = new Intl.DateTimeFormat(undefined, { timeZoneName: 'short' }) \
           .formatToParts(new Date()).find(p => p.type === 'timeZoneName').value; \
         return [document.querySelector('.event .event-time').textContent, zone];",
        json!([]),
    );
    let (text, zone) = (shown[0].as_str().unwrap(), shown[1].as_str().unwrap());
    assert!(text.contains(zone), "times say their zone ({zone}): {text}");

    // Live: the annotated stream with Obama in view.
    browser.open(&server.url("/#live"));
    frames = (0..20)
        .map(|i| frame_with(&photo("obama2.jpg"), 560, 30 + i, 0))
        .collect();
    server.feed(&frames);
    browser.wait(
        "the live stream and Obama in view",
        "document.querySelector('#live-stream').naturalWidth > 0 && document.querySelector('#in-view').textContent.includes('Obama')",
    );
    let live = browser.screenshot("live");
    browser.open(&server.url("/#access"));
    browser.wait(
        "the waiting and the denied decision, with the missing PIN",
        "[...document.querySelectorAll('.decision')].some(d => d.querySelector('.badge').textContent === 'denied' \
         && d.querySelector('.factors .missing') && d.textContent.includes('their PIN not entered')) \
         && [...document.querySelectorAll('.decision .badge')].some(b => b.textContent === 'waiting')",
    );
    let access = browser.screenshot("access");
    browser.open(&server.url("/#status"));
    browser.wait(
        "the status table",
        "document.querySelector('#status-table').textContent.includes('sface')",
    );
    let status = browser.screenshot("status");

    // The same pages on a phone-sized window.
    browser.post(
        &browser.session("/window/rect"),
        json!({"width": 390, "height": 844}),
    );
    let mut shots = vec![people, events, live, access, status];
    for page in ["live", "people", "events", "access", "status"] {
        browser.open(&server.url(&format!("/#{page}")));
        browser.wait(
            &format!("the {page} page on a phone"),
            &format!("document.querySelector('#page-{page}').offsetParent"),
        );
        std::thread::sleep(Duration::from_millis(500));
        let width = browser.script("return document.documentElement.scrollWidth;", json!([]));
        assert!(
            width.as_i64().unwrap() <= 390,
            "{page}: no sideways scrolling on a phone, {width}"
        );
        shots.push(browser.screenshot(&format!("{page}-phone")));
    }
    server.feed(&[blank()]);

    // "Not Obama" on an event whose face is Obama's own shot: the card offers to drop the shot
    // that keeps giving the name to faces like it, and one click drops it.
    browser.open(&server.url("/#events"));
    browser.wait(
        "a Not Obama button",
        "document.querySelector('.event .correct-not') && document.querySelector('.event .correct-not').offsetParent",
    );
    browser.click(".event .correct-not");
    browser.wait(
        "the suspect shot with its drop button",
        "document.querySelector('.suspect .drop-suspect')          && document.querySelector('.suspect img.suspect-shot').complete          && document.querySelector('.suspect img.suspect-shot').naturalWidth > 0",
    );
    shots.push(browser.screenshot("events-suspect-phone"));
    browser.post(
        &browser.session("/window/rect"),
        json!({"width": 1280, "height": 900}),
    );
    std::thread::sleep(Duration::from_millis(300));
    shots.push(browser.screenshot("events-suspect"));
    browser.click(".suspect .drop-suspect");
    browser.wait(
        "the shot dropped",
        "document.querySelector('.suspect').textContent.includes('Dropped shot')",
    );
    assert_eq!(server.get("/api/v1/people").json()["people"][0]["shots"], 2);
    browser.post(
        &browser.session("/window/rect"),
        json!({"width": 390, "height": 844}),
    );
    for p in shots {
        eprintln!("screenshot: {}", p.display());
    }

    // Cross-origin forgery from the same site: a page on another port of the board's address,
    // opened in the browser that holds the owner's session cookie, posts a photo to enroll
    // "Forged" (a CORS-simple multipart request, so the browser sends it with the cookie). The
    // server refuses it; the owner's own page could do the same.
    let attacker = attacker_page(&server.base);
    browser.open(&attacker);
    browser.wait(
        "the forged request to finish",
        "window.forgeryDone === true",
    );
    let names: Vec<String> = server.get("/api/v1/people").json()["people"]
        .as_array()
        .unwrap()
        .iter()
        .map(|p| p["name"].as_str().unwrap_or("").to_string())
        .collect();
    assert!(!names.iter().any(|n| n == "Forged"), "{names:?}");

    // The camera dies: the Live page says so instead of showing the last picture as if live.
    server.end_stream();
    browser.open(&server.url("/#live"));
    browser.wait(
        "the banner that the source is down",
        "document.querySelector('#source-banner').offsetParent \
         && document.querySelector('#source-banner').textContent.includes('ended')",
    );
    let mut down = vec![browser.screenshot("live-source-down-phone")];
    browser.post(
        &browser.session("/window/rect"),
        json!({"width": 1280, "height": 800}),
    );
    std::thread::sleep(Duration::from_millis(500));
    down.push(browser.screenshot("live-source-down"));
    for p in down {
        eprintln!("screenshot: {}", p.display());
    }
}

/// Serves, on a port of its own, a page that posts a photo to `target`'s enrollment route with
/// the browser's cookies, the way a hostile page on the same host would. Returns its address.
fn attacker_page(target: &str) -> String {
    use crate::common::http::response;
    let page = format!(
        "<!doctype html><title>forgery</title><script>\
         fetch('/obama.jpg').then(r => r.blob()).then(photo => {{\
           const form = new FormData();\
           form.append('name', 'Forged');\
           form.append('photo', photo, 'obama.jpg');\
           return fetch('{target}/api/v1/people', {{method: 'POST', body: form, mode: 'no-cors', credentials: 'include'}});\
         }}).catch(() => null).finally(() => {{ window.forgeryDone = true; }});\
         </script>"
    );
    let photo_bytes = std::fs::read(photo("obama.jpg")).unwrap();
    let (port, _) = crate::common::http::serve(move |request| {
        if request.starts_with("GET /obama.jpg") {
            response("200 OK", "image/jpeg", &photo_bytes)
        } else {
            response("200 OK", "text/html", page.as_bytes())
        }
    });
    format!("http://127.0.0.1:{port}/")
}
